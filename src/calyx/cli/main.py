"""``calyx`` entry point: a parser builder, ``main(argv) -> int``, errors on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from calyx import __version__
from calyx.errors import CalyxError

__all__ = ["build_parser", "entry", "main"]

Handler = Callable[[argparse.Namespace], int]


def _cmd_eval(args: argparse.Namespace) -> int:
    from calyx.core.audio import read_audio
    from calyx.metrics import lmd, lsd_db

    ref, sr = read_audio(args.reference)
    test, sr_test = read_audio(args.test)
    result: dict[str, float | int | str] = {
        "reference": str(args.reference),
        "test": str(args.test),
        "sample_rate": sr,
        "lmd": lmd(ref, test, sample_rate=sr, test_sample_rate=sr_test),
        "lsd_db": lsd_db(ref, test, sample_rate=sr, test_sample_rate=sr_test),
    }
    if args.speech:
        from calyx.metrics import align_to_reference, pesq_wb, stoi

        r, t = align_to_reference(ref, test, sample_rate=sr, test_sample_rate=sr_test)
        result["pesq_wb"] = pesq_wb(r, t, sample_rate=sr)
        result["stoi"] = stoi(r, t, sample_rate=sr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>12}: {value:.4f}" if isinstance(value, float) else f"{key:>12}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calyx",
        description="Recorded acoustic sound as small, interpretable, editable models.",
    )
    parser.add_argument("--version", action="version", version=f"calyx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("eval", help="compare a test signal with a reference (LMD, LSD, optionally PESQ/STOI)")
    p.add_argument("reference", help="reference audio file (its sample rate is used)")
    p.add_argument("test", help="test audio file (resampled, padded or truncated to the reference)")
    p.add_argument("--speech", action="store_true", help="also compute wide-band PESQ and STOI")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(handler=_cmd_eval)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Subcommands contributed by later stages (each module exposes ``register(subparsers)``)."""
    import importlib

    found = []
    for name in ("calyx.cli.library_cmds", "calyx.cli.events_cmds", "calyx.cli.events_edit_cmds", "calyx.cli.report_cmds", "calyx.cli.synth_cmds"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.append(module.register)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (CalyxError, FileExistsError, FileNotFoundError) as exc:
        print(f"calyx {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
