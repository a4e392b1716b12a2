"""Calyx rows of the recordings benchmark: the sparse event codec on each clip."""

from __future__ import annotations

import statistics
import time

from bench.recordings import Clip, ClipResult, speech_extras
from calyx.metrics import events_per_note, lmd, lsd_db, note_f1, onset_f1


def event_results(clip: Clip) -> list[ClipResult]:
    from calyx.datasets import load_notes
    from calyx.events import decode, encode_with_report
    from calyx.metrics import NoteList

    t0 = time.perf_counter()
    events, report = encode_with_report(clip.audio, sample_rate=clip.sample_rate, measure=True)
    enc_s = time.perf_counter() - t0
    dec_times = []
    decoded = None
    for _ in range(5):
        t0 = time.perf_counter()
        decoded = decode(events)
        dec_times.append(time.perf_counter() - t0)
    assert decoded is not None
    extra: dict[str, float] = {"lmd_pursuit": report.lmd_pursuit}
    if clip.notes_csv:
        truth = load_notes(clip.notes_csv)
        keep = truth.onset_s < clip.duration_s
        ref = NoteList(truth.onset_s[keep], truth.offset_s[keep], truth.pitch_midi[keep])
        est = NoteList(events.times_s, events.times_s + events.duration_s_per_event, events.pitch_midi)
        extra["note_f1"] = note_f1(ref, est)["f1"]
        extra["onset_f1"] = onset_f1(ref.onset_s, events.times_s)["f1"]
        extra["events_per_note"] = events_per_note(len(events), len(ref))
    extra.update(speech_extras(clip, decoded))
    return [ClipResult(
        "calyx events (default)", clip.name, report.kbps,
        lmd(clip.audio, decoded, sample_rate=clip.sample_rate),
        lsd_db(clip.audio, decoded, sample_rate=clip.sample_rate),
        clip.duration_s / enc_s, clip.duration_s / statistics.median(dec_times), extra,
    )]


__all__ = ["event_results"]
