"""The measuring stick: every quality figure Calyx reports is computed here.

Definitions follow the project's evaluation guide exactly; see ``docs/metrics.md``.
"""

from __future__ import annotations

from calyx.metrics._spectral import LMD_SCALES, align_to_reference, lmd, lsd_db
from calyx.metrics._speech import pesq_wb, stoi
from calyx.metrics._transcription import NoteList, events_per_note, merge_onsets, note_f1, onset_f1

__all__ = [
    "LMD_SCALES",
    "NoteList",
    "align_to_reference",
    "events_per_note",
    "lmd",
    "lsd_db",
    "merge_onsets",
    "note_f1",
    "onset_f1",
    "pesq_wb",
    "stoi",
]
