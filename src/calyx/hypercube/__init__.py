"""The spectral hypercube: aligned per-note models of a library, factored by PCA, NMF, Tucker or CP.

Data flow: ``Library`` → per-note analysis (parallel) → :class:`NoteRecord` (values on common
axes) → factor model per articulation → quantised factors → :class:`Instrument`, which a
``.calyx`` file stores (:mod:`calyx.format.calyx_file`) and which evaluates a
:class:`~calyx.analysis.model.NoteModel` at any point of pitch × dynamic × articulation ×
variation.
"""

from __future__ import annotations

from calyx.hypercube._encode import (
    DEFAULT_TARGET_RATIO,
    EncodeOptions,
    analyse_library,
    encode_library,
    encode_records,
    estimated_size,
    instrument_settings,
    subset_lmd,
)
from calyx.hypercube._factors import METHODS, FactorModel, GridIndex, fit_factors
from calyx.hypercube._instrument import (
    ArticulationData,
    GridNote,
    Instrument,
    InstrumentSettings,
    synthesize_model,
)
from calyx.hypercube._render import render_model
from calyx.hypercube._tensor import NoteRecord, record_from_model, stack_records
from calyx.hypercube._timebase import TimeBase

__all__ = [
    "DEFAULT_TARGET_RATIO",
    "METHODS",
    "ArticulationData",
    "EncodeOptions",
    "FactorModel",
    "GridIndex",
    "GridNote",
    "Instrument",
    "InstrumentSettings",
    "NoteRecord",
    "TimeBase",
    "analyse_library",
    "encode_library",
    "encode_records",
    "estimated_size",
    "fit_factors",
    "instrument_settings",
    "record_from_model",
    "render_model",
    "stack_records",
    "subset_lmd",
    "synthesize_model",
]
