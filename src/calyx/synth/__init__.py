"""The real-time spectral synthesizer: play an instrument model directly, with continuous interpolation.

- :class:`Engine` — polyphonic voices with ``process`` / ``reset``, timestamped MIDI-like events,
  block-size invariant output; each voice evaluates the instrument at its (fractional) pitch and
  interpolates between the sampled dynamics at control rate, drives a partial oscillator bank and
  its share of one band-shaped noise generator (compiled kernels in ``_kernels``);
- :class:`ModelSource` — what the engine plays (a :class:`calyx.hypercube.Instrument`, or a
  :class:`ModelGrid` of analysed notes);
- :func:`render_midi`, :func:`render_note` (and :func:`schedule_midi`, :func:`render_events`) —
  offline rendering;
- :func:`oscillator_bank_controls` — the engine's oscillator recursion as a plain function (tested
  against :func:`calyx.core.synthesis.oscillator_bank`).

Live playback (``calyx play``, the optional extra ``calyx[live]``) is in ``_live``.

Example
-------
>>> from calyx.synth import Engine, load_source                      # doctest: +SKIP
>>> engine = Engine(load_source("piano.calyx"), sample_rate=48000)     # doctest: +SKIP
>>> engine.note_on(60, 100, pitch_midi=61.5)                           # doctest: +SKIP
>>> block = engine.process(128)   # (2, 128), left and right           # doctest: +SKIP
"""

from __future__ import annotations

from calyx.synth._engine import MAX_ANCHORS, Engine
from calyx.synth._render import (
    oscillator_bank_controls,
    render_events,
    render_midi,
    render_note,
    schedule_midi,
)
from calyx.synth._source import GridNote, ModelGrid, ModelSource, as_model_source, blend_models, load_source

__all__ = [
    "MAX_ANCHORS",
    "Engine",
    "GridNote",
    "ModelGrid",
    "ModelSource",
    "as_model_source",
    "blend_models",
    "load_source",
    "oscillator_bank_controls",
    "render_events",
    "render_midi",
    "render_note",
    "schedule_midi",
]
