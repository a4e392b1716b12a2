"""Interpretability of events against a MIDI ground truth: note F1, onset F1, events per note."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calyx.errors import ParameterError

__all__ = ["NoteList", "events_per_note", "merge_onsets", "note_f1", "onset_f1"]

ONSET_TOLERANCE_S = 0.05
PITCH_TOLERANCE_CENTS = 50.0
ONSET_MERGE_S = 0.03


@dataclass(frozen=True)
class NoteList:
    """Notes as parallel arrays: onset and offset in seconds, pitch as (fractional) MIDI number."""

    onset_s: NDArray[np.float64]
    offset_s: NDArray[np.float64]
    pitch_midi: NDArray[np.float64]

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[float, float, float]]) -> NoteList:
        a = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
        return cls(a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy())

    def __len__(self) -> int:
        return int(self.onset_s.shape[0])


def _midi_to_hz(p: NDArray[np.float64]) -> NDArray[np.float64]:
    return 440.0 * 2.0 ** ((p - 69.0) / 12.0)


def note_f1(reference: NoteList, estimate: NoteList) -> dict[str, float]:
    """Note precision/recall/F1 (``mir_eval`` transcription, onset 50 ms, pitch 50 cents, offsets ignored).

    Every estimated event that carries a pitch counts as a note.
    """
    from mir_eval.transcription import precision_recall_f1_overlap

    if len(reference) == 0:
        raise ParameterError("the reference note list is empty; note F1 is undefined")
    if len(estimate) == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}

    def intervals(n: NoteList) -> NDArray[np.float64]:
        # mir_eval requires strictly positive durations; offsets are ignored (offset_ratio=None).
        return np.stack([n.onset_s, np.maximum(n.offset_s, n.onset_s + 1e-3)], axis=1)

    p, r, f, _ = precision_recall_f1_overlap(
        intervals(reference),
        _midi_to_hz(reference.pitch_midi),
        intervals(estimate),
        _midi_to_hz(estimate.pitch_midi),
        onset_tolerance=ONSET_TOLERANCE_S,
        pitch_tolerance=PITCH_TOLERANCE_CENTS,
        offset_ratio=None,
    )
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def merge_onsets(times_s: NDArray[np.floating] | Sequence[float], *, within_s: float = ONSET_MERGE_S) -> NDArray[np.float64]:
    """Sort onset times and merge those closer than ``within_s`` to the first of their cluster."""
    t = np.sort(np.asarray(times_s, dtype=np.float64).ravel())
    if t.size == 0:
        return t
    keep = [t[0]]
    for x in t[1:]:
        if x - keep[-1] >= within_s:
            keep.append(x)
    return np.asarray(keep)


def onset_f1(
    reference_onsets_s: NDArray[np.floating] | Sequence[float],
    estimate_onsets_s: NDArray[np.floating] | Sequence[float],
) -> dict[str, float]:
    """Onset precision/recall/F1 (``mir_eval.onset.f_measure``, window 50 ms), both sides merged within 30 ms."""
    from mir_eval.onset import f_measure

    ref = merge_onsets(reference_onsets_s)
    est = merge_onsets(estimate_onsets_s)
    if ref.size == 0:
        raise ParameterError("the reference has no onsets; onset F1 is undefined")
    if est.size == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    f, p, r = f_measure(ref, est, window=ONSET_TOLERANCE_S)
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def events_per_note(n_events: int, n_reference_notes: int) -> float:
    """Number of events divided by the number of MIDI notes in the clip."""
    if n_reference_notes <= 0:
        raise ParameterError(f"n_reference_notes must be positive, got {n_reference_notes}")
    return float(n_events) / float(n_reference_notes)
