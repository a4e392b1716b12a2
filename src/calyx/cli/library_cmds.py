"""``calyx encode | decode | info | analyze``: the instrument codec on the command line.

Thin over the library: :func:`calyx.hypercube.encode_library`, :mod:`calyx.format.calyx_file`,
:func:`calyx.hypercube._export.decode_to_folder` and :func:`calyx.analysis.analyze_note`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return v


def _ranks(text: str) -> int | tuple[int, ...]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"ranks must be integers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"ranks must be positive, got {text!r}")
    return values[0] if len(values) == 1 else values


def _print(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=2, sort_keys=True))
        return
    for key, value in obj.items():
        if isinstance(value, float):
            print(f"{key:>16}: {value:.4g}")
        elif isinstance(value, (dict, list)):
            print(f"{key:>16}: {json.dumps(value)}")
        else:
            print(f"{key:>16}: {value}")


# --- encode ---------------------------------------------------------------------------------------


def _cmd_encode(args: argparse.Namespace) -> int:
    from calyx.format.calyx_file import instrument_size, save
    from calyx.hypercube import EncodeOptions, encode_library
    from calyx.io import load_library

    out = Path(args.output)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    t0 = time.perf_counter()
    lib = load_library(args.source, preset=args.preset)
    options = EncodeOptions(
        method=args.method, target_ratio=args.target_ratio, max_lmd=args.max_lmd, ranks=args.ranks,
    )
    inst = encode_library(
        lib, options=options, preset=args.preset, workers=args.workers, scheduler=args.scheduler,
        progress=not args.quiet, file_size=instrument_size,
    )
    size = save(inst, out, force=args.force)
    wall = time.perf_counter() - t0
    result = {
        "output": str(out),
        "notes": len(inst.notes),
        "duration_s": inst.total_duration_s(),
        "method": inst.method,
        "ranks": {a: inst.ranks(a) for a in inst.articulations},
        "file_bytes": size,
        "pcm16_bytes": inst.pcm16_bytes(),
        "ratio_vs_pcm16": inst.pcm16_bytes() / size,
        "encode_s": wall,
        "x_realtime": inst.total_duration_s() / max(wall, 1e-9),
    }
    _print(result, args.json)
    return 0


# --- info -----------------------------------------------------------------------------------------


def _cmd_info(args: argparse.Namespace) -> int:
    from calyx.format.calyx_file import info

    data = info(args.file)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    print(f"{data['path']}: {data['name']!r}, {data['n_notes']} notes, {data['duration_s']:.1f} s, {data['sample_rate']} Hz, "
          f"{data['channels']} channel(s)")
    print(f"  size {data['file_bytes']} bytes; as 16-bit PCM {data['pcm16_bytes']} bytes; ratio {data['ratio_vs_pcm16']:.1f}x")
    print(f"  method {data['method']}")
    for a in data["articulations"]:
        print(f"  articulation {a['name']!r}: {a['notes']} notes, ranks {a['ranks']}")
    ax = data["axes"]
    print(f"  pitches (MIDI) {ax['pitch_midi']}")
    print(f"  dynamics {[round(d, 4) for d in ax['dynamic']]}; variations {ax['variation']}")
    t = data["time"]
    print(f"  time axis: {t['n_times']} points, {t['step_s'] * 1000:.2f} ms steps up to {t['attack_s']} s, "
          f"{t['points_per_octave']} per octave up to {t['duration_s']:.2f} s")
    f = data["features"]
    print(f"  features: {f['n_partials']} partials + {f['n_noise_bands']} noise bands per channel")
    print(f"  header {data['header_bytes']} bytes; chunks: " + ", ".join(f"{k} {v} bytes" for k, v in data["chunk_bytes"].items()))
    return 0


# --- decode ---------------------------------------------------------------------------------------


def _cmd_decode(args: argparse.Namespace) -> int:
    from calyx.format.calyx_file import load
    from calyx.hypercube._export import decode_to_folder

    inst = load(args.file)
    res = decode_to_folder(inst, args.output, fmt=args.format, force=args.force, progress=not args.quiet)
    result = {
        "output": str(res.folder),
        "format": args.format,
        "files": len(res.files),
        "audio_s": res.audio_s,
        "wall_s": res.wall_s,
        "x_realtime": res.audio_s / max(res.wall_s, 1e-9),
    }
    _print(result, args.json)
    return 0


# --- analyze --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AnalyzeJob:
    note: Any
    index: int
    folder: str
    file: str


def _analyze_job(job: _AnalyzeJob) -> dict[str, Any]:
    import warnings

    from calyx.analysis import AnalysisWarning, analyze_note, synthesize
    from calyx.core.audio import write_audio
    from calyx.metrics import lmd, lsd_db

    y = job.note.load()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        model = analyze_note(y, sample_rate=job.note.sample_rate, pitch_midi=job.note.pitch_midi)
    z = synthesize(model)
    write_audio(Path(job.folder) / job.file, z, sample_rate=job.note.sample_rate, bit_depth=16, force=True)
    return {
        "file": job.file,
        "lmd": lmd(y, z, sample_rate=job.note.sample_rate),
        "lsd_db": lsd_db(y, z, sample_rate=job.note.sample_rate),
        "duration_s": job.note.duration_s,
        "f0_hz": model.f0_hz,
        "n_partials": model.n_partials,
        "warnings": [str(w.message) for w in caught if issubclass(w.category, AnalysisWarning)],
    }


def _cmd_analyze(args: argparse.Namespace) -> int:
    import csv
    import io

    from calyx.core.audio import atomic_output
    from calyx.hypercube._encode import _grid_note
    from calyx.hypercube._export import manifest_text, note_file_name
    from calyx.io import load_library
    from calyx.parallel import parallel_map

    lib = load_library(args.source, preset=args.preset)
    dest = Path(args.output)
    notes = [_grid_note(n) for n in lib.notes]
    files = [note_file_name(i, n) for i, n in enumerate(notes)]
    extra = ["manifest.csv", "lmd.csv"]
    if dest.exists() and not dest.is_dir():
        raise FileExistsError(f"{dest} exists and is not a folder")
    if dest.is_dir() and not args.force:
        clash = [f for f in files + extra if (dest / f).exists()]
        if clash:
            raise FileExistsError(f"{dest} already holds {clash[0]} (and {len(clash) - 1} more); pass --force to replace them")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    t0 = time.perf_counter()
    try:
        jobs = [_AnalyzeJob(n, i, str(stage), files[i]) for i, n in enumerate(lib.notes)]
        rows = parallel_map(_analyze_job, jobs, workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
        with atomic_output(stage / "manifest.csv", force=True) as fh:
            fh.write(manifest_text(notes, files, title=f"{lib.name}: resynthesised by calyx analyze").encode("utf-8"))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["file", "pitch", "velocity_lo", "velocity_hi", "articulation", "variation", "duration_s", "lmd", "lsd_db", "f0_hz", "n_partials", "warnings"])
        for n, r in zip(notes, rows, strict=True):
            w.writerow([r["file"], n.pitch_midi, n.velocity_lo, n.velocity_hi, n.articulation, n.variation,
                        f"{r['duration_s']:.4f}", f"{r['lmd']:.5f}", f"{r['lsd_db']:.4f}", f"{r['f0_hz']:.4f}", r["n_partials"], " | ".join(r["warnings"])])
        with atomic_output(stage / "lmd.csv", force=True) as fh:
            fh.write(buf.getvalue().encode("utf-8"))
        dest.mkdir(parents=True, exist_ok=True)
        for f in files + extra:
            os.replace(stage / f, dest / f)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    durs = [r["duration_s"] for r in rows]
    total = sum(durs)
    result = {
        "output": str(dest),
        "notes": len(rows),
        "duration_s": total,
        "lmd_weighted": sum(r["lmd"] * r["duration_s"] for r in rows) / max(total, 1e-12),
        "lsd_db_weighted": sum(r["lsd_db"] * r["duration_s"] for r in rows) / max(total, 1e-12),
        "lmd_worst": max(r["lmd"] for r in rows),
        "worst_note": max(rows, key=lambda r: r["lmd"])["file"],
        "warnings": sum(1 for r in rows if r["warnings"]),
        "wall_s": time.perf_counter() - t0,
    }
    _print(result, args.json)
    return 0


# --- registration ---------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``encode``, ``decode``, ``info`` and ``analyze`` (unless another module already did)."""
    taken = set(getattr(subparsers, "choices", {}) or {})

    def common_pool(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workers", type=_positive_int, help="local worker processes (default: every core)")
        p.add_argument("--scheduler", help="Dask scheduler address tcp://HOST:PORT, or 'local' for a local Dask cluster")

    if "encode" not in taken:
        p = subparsers.add_parser("encode", help="analyse an instrument library and write a .calyx file")
        p.add_argument("source", help="a SoundFont (.sf2/.sf3), an .sfz file, or a folder with manifest.csv")
        p.add_argument("--preset", help="SoundFont preset: its name or BANK:PROGRAM")
        p.add_argument("-o", "--output", required=True, help="the .calyx file to write")
        p.add_argument("--method", choices=("pca", "nmf", "tucker", "cp"), default="tucker", help="factoring (default tucker)")
        goal = p.add_mutually_exclusive_group()
        goal.add_argument("--target-ratio", type=_positive_float, help="aim at this size ratio vs 16-bit PCM (default 200)")
        goal.add_argument("--max-lmd", type=_positive_float, help="smallest model whose evaluation notes have at most this LMD")
        goal.add_argument("--ranks", type=_ranks, help="explicit ranks: N (PCA/NMF/CP) or P,L,T,F (Tucker)")
        common_pool(p)
        p.add_argument("--force", action="store_true", help="overwrite the output")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--json", action="store_true", help="print a JSON object")
        p.set_defaults(handler=_cmd_encode)

    if "info" not in taken:
        p = subparsers.add_parser("info", help="describe a .calyx file: size, ratio, method, ranks, axes, chunks")
        p.add_argument("file")
        p.add_argument("--json", action="store_true", help="print a JSON object")
        p.set_defaults(handler=_cmd_info)

    if "decode" not in taken:
        p = subparsers.add_parser("decode", help="decode every note of a .calyx file to WAV, with an SFZ or SF2 map")
        p.add_argument("file")
        p.add_argument("-o", "--output", required=True, help="folder to write")
        p.add_argument("--format", choices=("wav", "sfz", "sf2"), default="wav", help="map to write beside the WAV files")
        p.add_argument("--force", action="store_true", help="replace existing files")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--json", action="store_true", help="print a JSON object")
        p.set_defaults(handler=_cmd_decode)

    if "analyze" not in taken:
        p = subparsers.add_parser("analyze", help="analyse and resynthesise every note of a library, with per-note LMD")
        p.add_argument("source", help="a SoundFont (.sf2/.sf3), an .sfz file, or a folder with manifest.csv")
        p.add_argument("--preset", help="SoundFont preset: its name or BANK:PROGRAM")
        p.add_argument("-o", "--output", required=True, help="folder for the resynthesised notes, manifest.csv and lmd.csv")
        common_pool(p)
        p.add_argument("--force", action="store_true", help="replace existing files")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--json", action="store_true", help="print a JSON object")
        p.set_defaults(handler=_cmd_analyze)
