"""``make demo``: the main job on a real default.

Loads the committed piano excerpt (six real notes, two dynamics), runs every baseline codec on each
note and Calyx's own per-note model, and prints one table of size ratio and quality. With
``--source`` any library Calyx can import (SF2/SF3 preset, SFZ, WAV folder) is used instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT / "tests" / "data" / "piano-excerpt"


def _table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[f"{v:.3f}" if isinstance(v, float) and abs(v) < 10 else f"{v:.1f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from calyx.baselines import available_codecs, evaluate_codec_on_items, missing_tools_message
    from calyx.io import load_library
    from calyx.metrics import lmd, lsd_db

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--preset", default=None)
    args = p.parse_args(argv)

    lib = load_library(args.source, preset=args.preset)
    sr = lib.notes[0].sample_rate
    audio = [n.load() for n in lib.notes]
    ax = lib.axes()
    print(f"{lib.name}: {len(lib)} notes, {lib.total_duration_s():.1f} s, pitches {list(ax.pitches_midi)}, "
          f"{len(ax.dynamics)} dynamics, {sr} Hz\n")
    rows: list[list[object]] = []
    have = available_codecs()
    for codec in ("opus6", "opus12", "opus24", "vorbis-q-1", "mp3-32", "flac"):
        if not have.get(codec):
            continue
        r = evaluate_codec_on_items(codec, audio, sample_rate=sr)
        rows.append([codec, r.size_ratio, r.kbps, r.lmd, r.lsd_db])
    try:
        from calyx.analysis import roundtrip
    except ImportError:
        roundtrip = None
    if roundtrip is not None:
        t0 = time.perf_counter()
        lmds, lsds, durs = [], [], []
        for n, y in zip(lib.notes, audio, strict=True):
            z = roundtrip(y, sample_rate=n.sample_rate, pitch_midi=n.pitch_midi)
            lmds.append(lmd(y, z, sample_rate=n.sample_rate))
            lsds.append(lsd_db(y, z, sample_rate=n.sample_rate))
            durs.append(n.duration_s)
        took = time.perf_counter() - t0
        rows.append(["calyx note model (uncompressed)", float("nan"), float("nan"),
                     float(np.average(lmds, weights=durs)), float(np.average(lsds, weights=durs))])
        print(f"(note models analysed and resynthesised at {sum(durs) / took:.1f}× real time)\n")
    print(_table(["codec", "ratio vs PCM16", "kbps", "LMD", "LSD dB"], rows))
    missing = missing_tools_message()
    if missing:
        print(f"\nnot measured: {missing}")
    print("\nLMD/LSD: lower is better (see docs/metrics.md). Full tables: bench/results/ (make bench).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
