"""``calyx events edit|export|stream-encode|stream-decode``: events edited in codec space, exported,
and recordings of any length encoded and decoded in windows.

The verbs join the ``events`` command registered by :mod:`calyx.cli.events_cmds` (or create it
when that module is absent).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _refuse_existing(path: str, force: bool) -> None:
    if Path(path).exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")


def _span(text: str) -> tuple[float, float]:
    """``"A:B"`` -> ``(A, B)``; either end may be omitted (``":4"``, ``"60:"``)."""
    if text.count(":") != 1:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH (for instance 2.5:4), got {text!r}")
    lo_s, hi_s = text.split(":")
    try:
        lo = float(lo_s) if lo_s.strip() else float("-inf")
        hi = float(hi_s) if hi_s.strip() else float("inf")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW:HIGH, got {text!r}") from None
    if not lo <= hi:
        raise argparse.ArgumentTypeError(f"LOW must not exceed HIGH in {text!r}")
    return lo, hi


def _indices(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers (for instance 0,3,7), got {text!r}") from None


def _cmd_edit(args: argparse.Namespace) -> int:
    from calyx.events import edit as ed
    from calyx.events import load, save

    _refuse_existing(args.output, args.force)
    events = load(args.input)
    n_in = len(events)
    steps: list[str] = []
    if args.delete_index:
        events = ed.delete_events(events, indices=[i for group in args.delete_index for i in group])
        steps.append("delete-index")
    for span in args.solo_time or []:
        events = ed.solo_events(events, time_range_s=span)
        steps.append("solo-time")
    for span in args.delete_time or []:
        events = ed.delete_events(events, time_range_s=span)
        steps.append("delete-time")
    for span in args.solo_pitch or []:
        events = ed.solo_events(events, pitch_range_midi=span)
        steps.append("solo-pitch")
    for span in args.delete_pitch or []:
        events = ed.delete_events(events, pitch_range_midi=span)
        steps.append("delete-pitch")
    if args.randomize_vectors:
        events = ed.randomize_vectors(events, seed=args.seed, how=args.randomize_vectors)
        steps.append("randomize-vectors")
    if args.randomize_times:
        events = ed.randomize_times(events, seed=args.seed, how=args.randomize_times)
        steps.append("randomize-times")
    if args.perturb is not None:
        events = ed.perturb(events, magnitude=args.perturb, seed=args.seed)
        steps.append("perturb")
    if args.transpose is not None:
        events = ed.transpose(events, semitones=args.transpose, timbre=args.timbre)
        steps.append("transpose")
    if args.stretch is not None:
        events = ed.time_stretch(events, factor=args.stretch, scale_decays=args.stretch_decays)
        steps.append("stretch")
    if args.gain_db is not None:
        events = ed.gain(events, db=args.gain_db)
        steps.append("gain")
    n_bytes = save(events, args.output, force=args.force)
    summary = {"input": args.input, "output": args.output, "edits": steps, "n_events_in": n_in,
               "n_events_out": len(events), "n_bytes": n_bytes, "duration_s": round(events.duration_s, 4)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.output}: {len(events)} of {n_in} events, {n_bytes} bytes, {events.duration_s:.2f} s "
              f"({', '.join(steps) or 'no edit'})")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from calyx.errors import ParameterError
    from calyx.events import load
    from calyx.events.export import to_csv, to_json, to_midi

    suffix = Path(args.output).suffix.lower()
    if suffix not in (".json", ".csv", ".mid", ".midi"):
        raise ParameterError(f"{args.output}: cannot tell the format from {suffix!r}; use .json, .csv or .mid")
    _refuse_existing(args.output, args.force)
    events = load(args.input)
    if suffix == ".json":
        to_json(events, args.output, force=args.force)
        what = f"{len(events)} events as JSON"
    elif suffix == ".csv":
        to_csv(events, args.output, force=args.force)
        what = f"{len(events)} events as CSV"
    else:
        export = to_midi(events, args.output, force=args.force, program=args.program,
                         bend_range_semitones=args.bend_range)
        what = (f"{export.n_notes} notes on {export.channels_used} channels"
                + (f", {export.bend_conflicts} sharing a bent channel" if export.bend_conflicts else ""))
    print(f"{args.output}: {what}")
    return 0


def _cmd_stream_encode(args: argparse.Namespace) -> int:
    from calyx.events.stream import encode_file

    _refuse_existing(args.output, args.force)
    events = encode_file(args.input, args.output, window_s=args.window_s, overlap_s=args.overlap_s,
                         kbps=args.kbps, max_events_per_s=args.max_events_per_s, force=args.force,
                         progress=not args.quiet)
    info: dict[str, Any] = events.info.get("stream", {})
    n_bytes = int(events.info.get("n_bytes", 0))
    kbps = 8.0 * n_bytes / max(events.duration_s, 1e-9) / 1000.0
    if args.json:
        print(json.dumps({
            "input": args.input, "output": args.output, "sample_rate": events.sample_rate,
            "duration_s": round(events.duration_s, 4), "n_events": len(events), "n_bytes": n_bytes,
            "kbps": round(kbps, 3), "n_windows": info.get("n_windows"), "n_encodes": info.get("n_encodes"),
            "n_split": info.get("n_split"), "n_merged": info.get("n_merged"),
            "boundaries_s": info.get("boundaries_s"), "seconds": round(float(info.get("seconds", 0.0)), 2),
        }, indent=2))
    else:
        print(f"{args.output}: {len(events)} events, {n_bytes} bytes, {kbps:.3f} kbit/s "
              f"({events.duration_s:.2f} s of audio in {info.get('n_windows')} windows)")
    return 0


def _cmd_stream_decode(args: argparse.Namespace) -> int:
    from calyx.events.stream import decode_file

    _refuse_existing(args.output, args.force)
    n = decode_file(args.input, args.output, block_s=args.block_s, bit_depth=args.bit_depth, force=args.force)
    print(f"{args.output}: {n} samples written")
    return 0


def _events_verbs(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The verb table of the ``events`` command, created when no module registered it."""
    events = subparsers.choices.get("events")
    if events is None:
        events = subparsers.add_parser("events", help="the sparse event codec (.cxe)",
                                       description="Edit, export and stream-code event files.")
        verbs = events.add_subparsers(dest="events_command", metavar="VERB")
        verbs.required = True
        return verbs
    for action in events._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the 'events' command has no verb table")  # pragma: no cover - a programming error


def _add_edit(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = verbs.add_parser(
        "edit", help="edit a .cxe file in codec space (delete, solo, transpose, stretch, randomise...)",
        description="Apply edits to the events of a .cxe file and save the result. Edits run in this order: "
                    "--delete-index (indices as printed by `calyx events show`), --solo-time, --delete-time, "
                    "--solo-pitch, --delete-pitch, --randomize-vectors, --randomize-times, --perturb, "
                    "--transpose, --stretch, --gain-db. Ranges are LOW:HIGH, both ends included; an end may "
                    "be left out. Random edits are deterministic under --seed.",
    )
    e.add_argument("input", help="the .cxe file to edit")
    e.add_argument("-o", "--output", required=True, help="the .cxe file to write")
    e.add_argument("--transpose", type=float, metavar="SEMITONES", help="shift every pitch (may be fractional)")
    e.add_argument("--timbre", choices=("envelope", "partials"), default="envelope",
                   help="with --transpose: keep the spectral envelope in place (default) or move it with the pitch")
    e.add_argument("--stretch", type=float, metavar="FACTOR",
                   help="play FACTOR times slower (onsets and note lengths scale; pitch and decays do not)")
    e.add_argument("--stretch-decays", action="store_true", help="with --stretch: scale the decay times too")
    e.add_argument("--gain-db", type=float, metavar="DB", help="add DB decibels to every event")
    e.add_argument("--delete-time", type=_span, action="append", metavar="A:B", help="remove onsets in [A, B] s")
    e.add_argument("--solo-time", type=_span, action="append", metavar="A:B", help="keep only onsets in [A, B] s")
    e.add_argument("--delete-pitch", type=_span, action="append", metavar="LO:HI",
                   help="remove pitches in [LO, HI] (MIDI numbers)")
    e.add_argument("--solo-pitch", type=_span, action="append", metavar="LO:HI",
                   help="keep only pitches in [LO, HI] (MIDI numbers)")
    e.add_argument("--delete-index", type=_indices, action="append", metavar="I,J",
                   help="remove the events at these positions")
    e.add_argument("--randomize-vectors", nargs="?", const="rows", choices=("rows", "columns", "uniform"),
                   help="keep the times, draw new parameter vectors (rows: whole vectors of the file, "
                        "the default; columns: each parameter from its own column; uniform: within each "
                        "parameter's span in the file)")
    e.add_argument("--randomize-times", nargs="?", const="uniform", choices=("uniform", "permute"),
                   help="keep the vectors, draw new times (uniform over the recording, the default; or permute)")
    e.add_argument("--perturb", type=float, metavar="MAGNITUDE",
                   help="move every event by one common random direction of this length (normalised units)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random edits (default 0)")
    e.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    e.add_argument("--json", action="store_true", help="print a JSON summary")
    e.set_defaults(handler=_cmd_edit)


def _add_export(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    x = verbs.add_parser(
        "export", help="export a .cxe file as JSON, CSV or a standard MIDI file",
        description="The format follows the output's suffix: .json and .csv hold every parameter in physical "
                    "units with its unit; .mid holds one note per event, with pitch bends for fractional pitch.",
    )
    x.add_argument("input", help="the .cxe file")
    x.add_argument("-o", "--output", required=True, help="OUT.json, OUT.csv or OUT.mid")
    x.add_argument("--program", type=int, default=0, help="MIDI: General MIDI program, 0-127 (default 0, piano)")
    x.add_argument("--bend-range", type=float, default=2.0, help="MIDI: pitch-bend range in semitones (default 2)")
    x.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    x.set_defaults(handler=_cmd_export)


def _add_stream(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = verbs.add_parser(
        "stream-encode", help="encode a recording of any length in overlapping windows (bounded memory)",
        description="Read the recording one window at a time, encode each window with the event encoder "
                    "after removing the tails of the events already found, keep the events of each window's "
                    "core, and write one .cxe file.",
    )
    s.add_argument("input", help="audio file (WAV, FLAC, Ogg); channels are mixed to mono")
    s.add_argument("-o", "--output", required=True, help="the .cxe file to write")
    s.add_argument("--window-s", type=float, default=10.0, help="window length in seconds (default 10)")
    s.add_argument("--overlap-s", type=float, default=2.0, help="overlap of consecutive windows (default 2)")
    budget = s.add_mutually_exclusive_group()
    budget.add_argument("--kbps", type=float, default=None, help="bitrate budget in kbit/s (headers included)")
    budget.add_argument("--max-events-per-s", type=float, default=None, help="at most this many events per second")
    s.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    s.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    s.add_argument("--json", action="store_true", help="print a JSON summary")
    s.set_defaults(handler=_cmd_stream_encode)

    d = verbs.add_parser("stream-decode", help="render a .cxe file to audio block by block (bounded memory)")
    d.add_argument("input", help="the .cxe file")
    d.add_argument("-o", "--output", required=True, help="audio file to write (.wav or .flac)")
    d.add_argument("--block-s", type=float, default=10.0, help="seconds rendered at a time (default 10)")
    d.add_argument("--bit-depth", type=int, default=16, choices=(16, 24, 32), help="sample format (32: float WAV)")
    d.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    d.set_defaults(handler=_cmd_stream_decode)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``edit``, ``export``, ``stream-encode`` and ``stream-decode`` to the ``events`` command."""
    verbs = _events_verbs(subparsers)
    if "edit" not in verbs.choices:
        _add_edit(verbs)
    if "export" not in verbs.choices:
        _add_export(verbs)
    if "stream-encode" not in verbs.choices:
        _add_stream(verbs)


if __name__ == "__main__":  # pragma: no cover - convenience for `python -m calyx.cli.events_edit_cmds`
    from calyx.cli.main import main

    sys.exit(main(["events", *sys.argv[1:]]))
