"""``calyx events encode|decode|show``: the sparse event codec on the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def _note_name(pitch_midi: float) -> str:
    """``61.23`` -> ``"C#4+23c"`` (nearest note and the deviation in cents)."""
    nearest = round(pitch_midi)
    cents = round(100.0 * (pitch_midi - nearest))
    name = f"{_NOTE_NAMES[nearest % 12]}{nearest // 12 - 1}"
    return f"{name}{cents:+d}c" if cents else name


def _refuse_existing(path: str, force: bool) -> None:
    if Path(path).exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")


def _cmd_encode(args: argparse.Namespace) -> int:
    from calyx.core.audio import read_audio
    from calyx.events import encode_with_report, save

    _refuse_existing(args.output, args.force)
    y, sample_rate = read_audio(args.input)
    events, report = encode_with_report(
        y, sample_rate=sample_rate, kbps=args.kbps, max_events=args.max_events, measure=args.json
    )
    n_bytes = save(events, args.output, force=args.force)
    summary: dict[str, Any] = {
        "input": str(args.input),
        "output": str(args.output),
        "sample_rate": sample_rate,
        "duration_s": round(report.duration_s, 4),
        "n_events": len(events),
        "n_bytes": n_bytes,
        "kbps": round(8.0 * n_bytes / max(report.duration_s, 1e-9) / 1000.0, 3),
        "refined": report.refined,
        "seconds": {k: round(v, 2) for k, v in report.seconds.items()},
    }
    if args.json:
        summary["lmd"] = {
            "pursuit": report.lmd_pursuit,
            "refined": report.lmd_refined,
            "final": report.lmd_final,
        }
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.output}: {len(events)} events, {n_bytes} bytes, {summary['kbps']} kbit/s "
            f"({report.duration_s:.2f} s of audio at {sample_rate} Hz)"
        )
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from calyx.core.audio import write_audio
    from calyx.events import decode, load

    _refuse_existing(args.output, args.force)
    events = load(args.input)
    y = decode(events)
    write_audio(args.output, y, sample_rate=events.sample_rate, bit_depth=args.bit_depth, force=args.force)
    print(f"{args.output}: {y.size / events.sample_rate:.2f} s at {events.sample_rate} Hz from {len(events)} events")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from calyx.events import EVENT_PARAMS, ROOM_PARAMS, load

    events = load(args.input)
    if args.json:
        doc = {
            "file": str(args.input),
            "sample_rate": events.sample_rate,
            "n_samples": events.n_samples,
            "duration_s": events.duration_s,
            "n_events": len(events),
            "room": {p.name: round(float(v), 6) for p, v in zip(ROOM_PARAMS, events.room, strict=True)},
            "events": [
                {"time_s": round(float(t), 6),
                 **{p.name: round(float(v), 6) for p, v in zip(EVENT_PARAMS, row, strict=True)}}
                for t, row in zip(events.times_s, events.params, strict=True)
            ],
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"{args.input}: {len(events)} events, {events.duration_s:.3f} s at {events.sample_rate} Hz, "
        f"room wet {events.room[0]:.1f} dB"
    )
    header = (
        f"{'#':>4} {'time_s':>8} {'pitch':>9} {'f0_hz':>8} {'level_dB':>8} {'dur_s':>6} "
        f"{'T60@100':>7} {'T60@400':>7} {'T60@1k6':>7} {'T60@6k4':>7} {'B':>8} {'noise_dB':>8}"
    )
    print(header)
    t60 = events.t60_s
    b = 10.0 ** events.column("inharmonicity_log10")
    noise = events.column("noise_level_db")
    for i in range(len(events)):
        print(
            f"{i:>4} {events.times_s[i]:>8.4f} {_note_name(float(events.pitch_midi[i])):>9} "
            f"{events.f0_hz[i]:>8.2f} {events.level_db[i]:>8.1f} {events.duration_s_per_event[i]:>6.3f} "
            f"{t60[i, 0]:>7.2f} {t60[i, 1]:>7.2f} {t60[i, 2]:>7.2f} {t60[i, 3]:>7.2f} {b[i]:>8.1e} "
            f"{noise[i]:>8.1f}"
        )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``events`` with its verbs ``encode``, ``decode`` and ``show`` to ``subparsers``."""
    p = subparsers.add_parser(
        "events",
        help="the sparse event codec: a recording as a short list of events (.cxe)",
        description="Encode a recording as events, decode events to audio, or list them.",
    )
    verbs = p.add_subparsers(dest="events_command", metavar="VERB")
    verbs.required = True

    e = verbs.add_parser("encode", help="encode an audio file as events (.cxe)")
    e.add_argument("input", help="audio file (WAV, FLAC, Ogg); channels are mixed to mono")
    e.add_argument("-o", "--output", required=True, help="the .cxe file to write")
    budget = e.add_mutually_exclusive_group()
    budget.add_argument("--kbps", type=float, default=None, help="bitrate budget in kbit/s (headers included)")
    budget.add_argument("--max-events", type=int, default=None, help="at most this many events")
    e.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    e.add_argument("--json", action="store_true", help="print a JSON summary, with LMD after each stage")
    e.set_defaults(handler=_cmd_encode)

    d = verbs.add_parser("decode", help="render a .cxe file to audio")
    d.add_argument("input", help="the .cxe file")
    d.add_argument("-o", "--output", required=True, help="audio file to write (.wav or .flac)")
    d.add_argument("--bit-depth", type=int, default=16, choices=(16, 24, 32), help="sample format (32: float WAV)")
    d.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    d.set_defaults(handler=_cmd_decode)

    s = verbs.add_parser("show", help="list the events of a .cxe file")
    s.add_argument("input", help="the .cxe file")
    s.add_argument("--json", action="store_true", help="print every parameter as JSON")
    s.set_defaults(handler=_cmd_show)


if __name__ == "__main__":  # pragma: no cover - convenience for `python -m calyx.cli.events_cmds`
    from calyx.cli.main import main

    sys.exit(main(["events", *sys.argv[1:]]))
