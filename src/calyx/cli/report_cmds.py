"""``calyx report``, ``calyx events report`` and ``calyx serve``: HTML reports and a loopback server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register"]


def _cmd_report(args: argparse.Namespace) -> int:
    from calyx.errors import ParameterError

    inputs = [Path(p) for p in args.inputs]
    if len(inputs) == 1 and inputs[0].suffix.lower() == ".calyx":
        from calyx.report import instrument_report

        out = instrument_report(inputs[0], source=args.source, out_dir=args.output, force=args.force,
                                preset=args.preset)
    elif len(inputs) == 2 and inputs[1].suffix.lower() == ".cxe":
        if args.source is not None or args.preset is not None:
            raise ParameterError("--source and --preset apply to instrument reports (a .calyx file), not to events")
        from calyx.report import events_report

        out = events_report(inputs[0], inputs[1], out_dir=args.output, force=args.force)
    else:
        raise ParameterError(
            f"cannot tell what to report from {' '.join(map(str, inputs))}: give an instrument (X.calyx) or a "
            "recording and its events (IN.wav IN.cxe)"
        )
    print(f"{out}/index.html")
    return 0


def _cmd_events_report(args: argparse.Namespace) -> int:
    from calyx.report import events_report

    out = events_report(args.input, args.events, out_dir=args.output, force=args.force,
                        residual_steps=args.residual_steps)
    print(f"{out}/index.html")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from calyx.report import serve
    from calyx.report._server import ReportServer, is_loopback

    def ready(server: ReportServer) -> None:
        if not is_loopback(args.host):
            print(f"warning: serving {args.folder} on {args.host}, reachable from other machines",
                  file=sys.stderr)
        print(f"serving {args.folder} read-only at {server.url} (Ctrl+C to stop)", flush=True)

    try:
        serve(args.folder, host=args.host, port=args.port, quiet=args.quiet, ready=ready)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        from calyx.errors import ParameterError

        raise ParameterError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                             "choose another --port (0 picks a free one)") from exc
    return 0


def _add_events_report(events_verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = events_verbs.add_parser("report", help="write an HTML report of a recording and its events",
                                description="Players, the event map, the pursuit's residuals, the event "
                                            "vectors and edits made in codec space, as one folder.")
    r.add_argument("input", help="the recording the events were encoded from")
    r.add_argument("events", help="its .cxe file")
    r.add_argument("-o", "--output", required=True, help="report folder to create")
    r.add_argument("--residual-steps", type=int, default=24,
                   help="pursuit steps shown in the residual stepper (0 leaves it out)")
    r.add_argument("--force", action="store_true", help="replace the report folder if it exists")
    r.set_defaults(handler=_cmd_events_report)


def _events_verbs(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    """The verb table of an already registered ``events`` command, if any."""
    events = subparsers.choices.get("events")
    if events is None:
        return None
    for action in events._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report`` and ``serve`` to ``subparsers``, and ``report`` to ``events`` when it is registered."""
    p = subparsers.add_parser(
        "report",
        help="write an HTML report of an instrument (X.calyx) or of a recording and its events (IN.wav IN.cxe)",
        description="Write a self-contained report folder (index.html, PNG and WAV files) that works offline.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="X.calyx, or IN.wav IN.cxe")
    p.add_argument("--source", default=None, help="the library the instrument was encoded from (originals, LMD)")
    p.add_argument("--preset", default=None, help="SoundFont preset of --source")
    p.add_argument("-o", "--output", required=True, help="report folder to create")
    p.add_argument("--force", action="store_true", help="replace the report folder if it exists")
    p.set_defaults(handler=_cmd_report)

    s = subparsers.add_parser("serve", help="serve a folder of reports read-only over HTTP (loopback by default)",
                              description="A GET/HEAD-only HTTP server for report folders; Ctrl+C stops it.")
    s.add_argument("folder", help="the folder to serve")
    s.add_argument("--port", type=int, default=9999, help="TCP port (default 9999; 0 picks a free one)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else is reachable from other machines)")
    s.add_argument("--quiet", action="store_true", help="do not log requests")
    s.set_defaults(handler=_cmd_serve)

    verbs = _events_verbs(subparsers)
    if verbs is not None and "report" not in verbs.choices:
        _add_events_report(verbs)


if __name__ == "__main__":  # pragma: no cover - convenience for `python -m calyx.cli.report_cmds`
    from calyx.cli.main import main

    sys.exit(main(["report", *sys.argv[1:]]))
