"""``calyx render``, ``calyx note`` and ``calyx play``: the spectral synthesizer on the command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from calyx.errors import ParameterError

__all__ = ["register"]


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _check_output(path: str, force: bool) -> Path:
    out = Path(path)
    if out.suffix.lower() not in (".wav", ".flac"):
        raise ParameterError(f"{out}: unsupported output suffix {out.suffix!r}; use .wav or .flac")
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    return out


def _write(out: Path, y: Any, *, sample_rate: int, force: bool) -> dict[str, Any]:
    import numpy as np

    from calyx.core.audio import write_audio

    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 1.0:
        print(f"warning: peak {peak:.2f} exceeds full scale; the output is clipped", file=sys.stderr)
    write_audio(out, y, sample_rate=sample_rate, force=force)
    return {"output": str(out), "sample_rate": sample_rate, "duration_s": y.shape[1] / sample_rate, "peak": peak}


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(f"wrote {result['output']} ({result['duration_s']:.2f} s at {result['sample_rate']} Hz, peak {result['peak']:.3f})")


def _cmd_render(args: argparse.Namespace) -> int:
    from calyx.synth import load_source, render_midi

    out = _check_output(args.output, args.force)
    source = load_source(args.instrument)
    y = render_midi(source, args.midi, sample_rate=args.sample_rate, polyphony=args.polyphony, gain_db=args.gain_db)
    _report(_write(out, y, sample_rate=args.sample_rate, force=args.force), args.json)
    return 0


def _cmd_note(args: argparse.Namespace) -> int:
    from calyx.synth import load_source, render_note

    out = _check_output(args.output, args.force)
    source = load_source(args.instrument)
    y = render_note(
        source,
        pitch_midi=args.pitch,
        dynamic=args.dynamic,
        articulation=args.articulation,
        variation=args.variation,
        duration_s=args.duration,
        sample_rate=args.sample_rate,
        tail_s=args.tail,
    )
    _report(_write(out, y, sample_rate=args.sample_rate, force=args.force), args.json)
    return 0


def _cmd_play(args: argparse.Namespace) -> int:
    from calyx.synth._live import check_live, describe_devices, play

    if args.list_devices:
        print(describe_devices())
        return 0
    if args.instrument is None:
        raise ParameterError("give an instrument file to play (or --list-devices)")
    device: int | str | None = args.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    setup = check_live(midi_in=args.midi_in, device=device)  # before the (slow) loading
    from calyx.synth import load_source

    source = load_source(args.instrument)
    player = play(
        source,
        setup,
        block=args.block,
        sample_rate=args.sample_rate,
        polyphony=args.polyphony,
        log=lambda line: print(line, file=sys.stderr),
    )
    print(f"stopped after {player.blocks} blocks ({player.underflows} underflows)", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``render``, ``note`` and ``play`` to the ``calyx`` command line."""
    instrument_help = "a .calyx instrument (or a sample library: SF2/SF3, SFZ, manifest folder, analysed on load)"

    p = subparsers.add_parser("render", help="render a MIDI file with an instrument, through the spectral synthesizer")
    p.add_argument("instrument", help=instrument_help)
    p.add_argument("midi", help="standard MIDI file (all channels; channel 10 only for drum kits)")
    p.add_argument("-o", "--output", required=True, help="output .wav or .flac")
    p.add_argument("--sample-rate", type=int, default=48000, help="output rate in Hz (default 48000)")
    p.add_argument("--polyphony", type=int, default=64, help="most voices at once (default 64)")
    p.add_argument("--gain-db", type=float, default=-12.0, help="master gain, headroom for chords (default -12)")
    p.add_argument("--force", action="store_true", help="overwrite the output")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=_cmd_render)

    p = subparsers.add_parser("note", help="render one note at any pitch, dynamic, articulation and variation")
    p.add_argument("instrument", help=instrument_help)
    p.add_argument("--pitch", type=float, required=True, help="fractional MIDI pitch, e.g. 61.5")
    p.add_argument("--dynamic", type=float, default=0.7, help="0..1 (default 0.7)")
    p.add_argument("--articulation", help="articulation name (default: the instrument's first)")
    p.add_argument("--variation", type=int, default=0, help="round-robin variation (default 0)")
    p.add_argument("--duration", type=_positive_float, default=2.0, help="seconds held before release (default 2)")
    p.add_argument("--tail", type=float, default=3.0, help="most seconds of release tail (default 3)")
    p.add_argument("-o", "--output", required=True, help="output .wav or .flac")
    p.add_argument("--sample-rate", type=int, default=48000, help="output rate in Hz (default 48000)")
    p.add_argument("--force", action="store_true", help="overwrite the output")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=_cmd_note)

    p = subparsers.add_parser("play", help="play an instrument live from a MIDI input (needs calyx[live])")
    p.add_argument("instrument", nargs="?", help=instrument_help)
    p.add_argument("--midi-in", help="MIDI input port name (default: the first one)")
    p.add_argument("--device", help="audio output device index or name (default: the system's)")
    p.add_argument("--block", type=int, default=128, help="audio block size in samples (default 128)")
    p.add_argument("--sample-rate", type=int, help="output rate in Hz (default: the device's)")
    p.add_argument("--polyphony", type=int, default=64, help="most voices at once (default 64)")
    p.add_argument("--list-devices", action="store_true", help="list audio outputs and MIDI inputs, then exit")
    p.set_defaults(handler=_cmd_play)
