"""``make bench``: run the benchmarks and write ``bench/results/*.md``.

    python bench/run.py [--only library|recordings|synth] [--instruments piano,celli] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# One thread per process: "per core" figures must not borrow a second core through BLAS threads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import library, recordings, synth  # noqa: E402
from bench._common import write_result  # noqa: E402
from calyx import datasets  # noqa: E402
from calyx.core.audio import read_audio  # noqa: E402


def recording_sets(quick: bool) -> dict[str, list[recordings.Clip]]:
    chorales = datasets.chorales()
    if quick:
        chorales = chorales[:2]
    sets: dict[str, list[recordings.Clip]] = {"chorales, piano": [], "chorales, string quartet": []}
    for ch in chorales:
        y, sr = recordings.excerpt(str(ch.piano_mono_wav))
        sets["chorales, piano"].append(recordings.Clip(ch.name, y, sr, str(ch.notes_csv)))
        y, sr = recordings.excerpt(str(ch.quartet_mono_wav))
        sets["chorales, string quartet"].append(recordings.Clip(ch.name, y, sr, str(ch.notes_csv)))
    y, sr = read_audio(datasets.speech_clip())
    sets["speech"] = [recordings.Clip("arctic_a0009", y.mean(axis=0, keepdims=True), sr, speech=True)]
    return sets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--only", choices=("library", "recordings", "synth", "events-extra"))
    p.add_argument("--instruments", help="comma-separated keys of bench.library.INSTRUMENTS")
    p.add_argument("--quick", action="store_true", help="a subset of notes and clips (for a smoke run)")
    p.add_argument("--library-output", default="library.md", help="file name of the library table in bench/results/")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    cache = datasets.data_root().parent / "cache"
    if args.only in (None, "library"):
        insts = tuple(args.instruments.split(",")) if args.instruments else None
        text = library.run(datasets.soundfont_path(), instruments=insts, cache=cache, quick=args.quick)
        print(f"wrote {write_result(args.library_output, text)}")
    if args.only in (None, "recordings"):
        text = recordings.run(recording_sets(args.quick))
        print(f"wrote {write_result('recordings.md', text)}")
    if args.only in (None, "synth"):
        text = synth.run(cache=cache, quick=args.quick)
        print(f"wrote {write_result('synth.md', text)}")
    if args.only in (None, "events-extra"):
        from bench import events_extra

        text = events_extra.run()
        print(f"wrote {write_result('events-extra.md', text)}")
    print(f"benchmarks done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
