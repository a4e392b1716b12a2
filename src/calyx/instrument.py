"""The encoded instrument a sampler or the real-time engine plays (see :mod:`calyx.hypercube`).

``Instrument.evaluate(pitch_midi, dynamic, articulation, variation)`` returns the note model at any
point of the instrument's axes and ``Instrument.render(...)`` its PCM; ``calyx.instrument.load``
reads a ``.calyx`` file.
"""

from __future__ import annotations

from calyx.format.calyx_file import load, save
from calyx.hypercube._instrument import GridNote, Instrument, InstrumentSettings

__all__ = ["GridNote", "Instrument", "InstrumentSettings", "load", "save"]
