"""Per-note analysis and synthesis: a recorded note as partials + noise + kept attack.

Three entry points, as for any model here: :func:`analyze_note` (recording -> :class:`NoteModel`),
:func:`synthesize` (model -> recording) and :func:`roundtrip` (both). The model is frame-rate,
f0-relative and interpretable (see ``docs/note-model.md``), ready to be stacked into the
spectral hypercube of an instrument.
"""

from __future__ import annotations

from calyx.analysis._analyze import analyze_note, roundtrip
from calyx.analysis._onset import detect_onset
from calyx.analysis._params import AnalysisParams, AnalysisWarning
from calyx.analysis._synthesize import synthesize
from calyx.analysis.model import NoteModel

__all__ = [
    "AnalysisParams",
    "AnalysisWarning",
    "NoteModel",
    "analyze_note",
    "detect_onset",
    "roundtrip",
    "synthesize",
]
