"""Calyx rows of the library benchmark for the per-note model (analysis → resynthesis, uncompressed)."""

from __future__ import annotations

import time

import numpy as np

from bench.library import Row
from calyx.io import Library, NoteSample
from calyx.parallel import parallel_map


def _analyse_one(note: NoteSample) -> tuple[float, float, float, float, float]:
    """(LMD, LSD dB, duration s, analysis CPU s, synthesis CPU s) of one note's round trip."""
    import warnings

    from calyx.analysis import analyze_note, synthesize
    from calyx.metrics import lmd, lsd_db

    y = note.load()
    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unpitched fall-backs are expected on drum kits
        model = analyze_note(y, sample_rate=note.sample_rate, pitch_midi=note.pitch_midi)
    t1 = time.process_time()
    z = synthesize(model)
    t2 = time.process_time()
    return (lmd(y, z, sample_rate=note.sample_rate), lsd_db(y, z, sample_rate=note.sample_rate),
            note.duration_s, t1 - t0, t2 - t1)


def analysis_rows(lib: Library) -> list[Row]:
    """Uncompressed resynthesis quality, analysis speed per core (CPU time), and the wall-time
    throughput with 1 and 2 worker processes (the scaling of the per-note map)."""
    t0 = time.perf_counter()
    one = parallel_map(_analyse_one, lib.notes, workers=1)
    wall_1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    parallel_map(_analyse_one, lib.notes, workers=2)
    wall_2 = time.perf_counter() - t0
    lmds, lsds, durs, ana, syn = (list(x) for x in zip(*one, strict=True))
    total = float(sum(durs))
    lmd_w = float(np.average(lmds, weights=durs))
    lsd_w = float(np.average(lsds, weights=durs))
    nan = float("nan")
    return [
        Row("calyx note model, uncompressed (enc = analysis ×RT per core, CPU)", len(durs), nan, nan,
            lmd_w, lsd_w, total / sum(ana), total / sum(syn)),
        Row("  same, analysis + resynthesis wall ×RT: 1 worker", len(durs), nan, nan, lmd_w, lsd_w,
            total / wall_1, nan),
        Row("  same, analysis + resynthesis wall ×RT: 2 workers", len(durs), nan, nan, lmd_w, lsd_w,
            total / wall_2, nan),
    ]


__all__ = ["analysis_rows"]
