"""Events at any length, edited in codec space: streaming, edits and MIDI export, measured.

    python -m bench.events_extra [--quick]      # writes bench/results/events-extra.md

(a) The string-quartet movement of the development corpora (173 s) is encoded and decoded with one
    command each (``calyx events stream-encode`` / ``stream-decode``, each in a child process whose
    peak resident memory is read with ``resource.getrusage``), beside Opus 6/12/24 kbit/s on the
    same file; LMD on 1 s stretches around the window boundaries against 1 s stretches elsewhere,
    for Calyx and (as a control: it has no boundaries there) for Opus. In-memory ``events encode``
    of 10 s and 30 s excerpts and in-memory ``events decode`` of the whole movement give the memory
    the streaming replaces.
(b) Chorale piano excerpts (10 s, mono) are encoded; the events are transposed by +2 semitones and
    time-stretched by 1.25, decoded, and the results encoded again: note F1 of the re-encoded
    events against the ground truth moved the same way, beside the events' own note F1 and the
    F1 after a plain decode and re-encode (the round trip alone).
(c) The events of each excerpt exported as a standard MIDI file, read back (with the pitch bends,
    and with a reader that ignores them), against the ground-truth MIDI file: note F1 beside the
    events' own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from bench._common import environment_note, md_table, write_result  # noqa: E402

__all__ = ["run"]

EXCERPT_S = 10.0
N_CHORALES = 3
TRANSPOSE_SEMITONES = 2.0
STRETCH = 1.25
OPUS = ("opus6", "opus12", "opus24")
_REPO = Path(__file__).resolve().parent.parent

_CHILD = (
    "import json, resource, sys, time\n"
    "t0 = time.perf_counter()\n"
    "from calyx.cli.main import main\n"
    "rc = main(sys.argv[1:])\n"
    "r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "print('@@' + json.dumps({'rc': rc, 'wall_s': time.perf_counter() - t0, 'cpu_s': r.ru_utime + r.ru_stime,"
    " 'peak_mb': r.ru_maxrss / 1024.0}))\n"
)
_FLOOR = (
    "import json, resource\n"
    "import calyx.cli.main, calyx.events.stream, calyx.events._refine, torch\n"
    "print('@@' + json.dumps({'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))\n"
)


@dataclass
class ChildRun:
    """One command run in a child process: wall and CPU seconds, peak resident memory, its output."""

    wall_s: float
    cpu_s: float
    peak_mb: float
    stdout: str


def _child(code: str, *argv: str) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_REPO / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(lines[-1][2:])
    out["stdout"] = "\n".join(ln for ln in proc.stdout.splitlines() if not ln.startswith("@@"))
    return out


def _calyx(*argv: str) -> ChildRun:
    r = _child(_CHILD, *argv)
    if r["rc"] != 0:
        raise RuntimeError(f"calyx {' '.join(argv)} exited with {r['rc']}")
    return ChildRun(r["wall_s"], r["cpu_s"], r["peak_mb"], r["stdout"])


def _notes_in(notes: Any, seconds: float) -> Any:
    from calyx.metrics import NoteList

    keep = notes.onset_s < seconds
    return NoteList(notes.onset_s[keep], notes.offset_s[keep], notes.pitch_midi[keep])


def _moved(notes: Any, *, semitones: float = 0.0, factor: float = 1.0) -> Any:
    from calyx.metrics import NoteList

    return NoteList(notes.onset_s * factor, notes.offset_s * factor, notes.pitch_midi + semitones)


def _event_notes(events: Any) -> Any:
    from calyx.metrics import NoteList

    on, off, pitch = events.to_notes()
    return NoteList(on, off, pitch)


# --------------------------------------------------------------------------------------------------
# (a) streaming the string-quartet movement


def _part_a(tmp: Path, *, quick: bool) -> list[str]:
    from calyx import datasets
    from calyx.baselines import available_codecs, run_codec
    from calyx.core.audio import read_audio, write_audio
    from calyx.events import load
    from calyx.events.stream import boundary_lmd
    from calyx.metrics import events_per_note, lmd, note_f1, onset_f1

    mv = datasets.quartet_movement()
    y, sr = read_audio(mv.mono_wav)
    x = y[0]
    if quick:
        x = x[: 40 * sr]
    src = tmp / "movement.wav"
    write_audio(src, x, sample_rate=sr, bit_depth=16)
    x, _ = read_audio(src)
    x = x[0]
    duration = x.size / sr
    cxe, out_wav = tmp / "movement.cxe", tmp / "movement_decoded.wav"
    print(f"[events-extra] stream-encode {mv.name} ({duration:.0f} s)", flush=True)
    enc = _calyx("events", "stream-encode", str(src), "-o", str(cxe), "--json", "--quiet")
    summary = json.loads(enc.stdout[enc.stdout.index("{"):])
    dec = _calyx("events", "stream-decode", str(cxe), "-o", str(out_wav), "--bit-depth", "32")
    mem_dec = _calyx("events", "decode", str(cxe), "-o", str(tmp / "movement_inmem.wav"), "--bit-depth", "32")
    floor = _child(_FLOOR)["peak_mb"]
    events = load(cxe)
    decoded, _ = read_audio(out_wav)
    n_bytes = cxe.stat().st_size
    boundaries = summary["boundaries_s"]
    seams = boundary_lmd(x, decoded[0], sample_rate=sr, boundaries_s=boundaries)
    gt = _notes_in(datasets.load_notes(mv.notes_csv), duration)
    rows: list[tuple[Any, ...]] = [(
        "Calyx events (stream, 10 s windows, 2 s overlap)", 8 * n_bytes / duration / 1000,
        lmd(x, decoded[0], sample_rate=sr), seams["boundary"], seams["elsewhere"],
    )]
    have = available_codecs()
    missing = [c for c in OPUS if not have.get(c)]
    for codec in OPUS:
        if not have.get(codec):
            continue
        r = run_codec(codec, x, sample_rate=sr)
        s = boundary_lmd(x, r.decoded, sample_rate=sr, boundaries_s=boundaries)
        rows.append((codec.replace("opus", "Opus ") + " kbit/s", 8 * r.n_bytes / duration / 1000,
                     lmd(x, r.decoded, sample_rate=sr), s["boundary"], s["elsewhere"]))
    f1 = note_f1(gt, _event_notes(events))["f1"]
    of1 = onset_f1(gt.onset_s, events.times_s)["f1"]
    epn = events_per_note(len(events), len(gt))

    mem_rows: list[tuple[Any, ...]] = [
        (f"stream-encode, {duration:.0f} s", enc.wall_s, enc.cpu_s, duration / enc.wall_s, enc.peak_mb),
        (f"stream-decode, {duration:.0f} s (blocks of 10 s)", dec.wall_s, dec.cpu_s, duration / dec.wall_s,
         dec.peak_mb),
        (f"in-memory decode, {duration:.0f} s", mem_dec.wall_s, mem_dec.cpu_s, duration / mem_dec.wall_s,
         mem_dec.peak_mb),
    ]
    for seconds in (() if quick else (10.0, 30.0)):
        clip = tmp / f"movement_{seconds:.0f}s.wav"
        write_audio(clip, x[: int(seconds * sr)], sample_rate=sr, bit_depth=16)
        print(f"[events-extra] in-memory encode of {seconds:.0f} s", flush=True)
        inmem = _calyx("events", "encode", str(clip), "-o", str(tmp / f"movement_{seconds:.0f}s.cxe"))
        mem_rows.append((f"in-memory encode, {seconds:.0f} s", inmem.wall_s, inmem.cpu_s, seconds / inmem.wall_s,
                         inmem.peak_mb))
    mem_rows.append(("import floor (calyx + torch, nothing run)", float("nan"), float("nan"), float("nan"), floor))

    windows = summary["n_windows"]
    lines = [
        "## (a) A 173 s string-quartet movement, streamed",
        "",
        f"{mv.name}: {duration:.1f} s, mono 44.1 kHz, {len(gt)} notes. One command each way; "
        f"{windows} windows of 10 s, {summary['n_split']} of whose cores were split (a loud attack hid the "
        f"other onsets), {summary['n_encodes']} window encodes in all; {summary['n_merged']} events merged "
        f"across boundaries; {len(events)} events "
        f"({epn:.2f} per note; note F1 {f1:.2f}, onset F1 {of1:.2f} — bowed strings are outside the "
        "struck-string model, see docs/events.md). Boundary LMD: mean over 1 s stretches centred on the "
        f"{len(boundaries)} window boundaries; elsewhere: the {int(seams['n_elsewhere'])} 1 s stretches that "
        "touch none. Opus is its own control: it has no boundaries there.",
        "",
        md_table(("codec", "kbit/s", "LMD", "LMD at boundaries", "LMD elsewhere"), rows),
        "",
        "Time and peak resident memory of each command in its own process (`resource.getrusage`, one "
        "thread); the in-memory rows are what streaming replaces:",
        "",
        md_table(("command", "wall s", "CPU s", "× real time", "peak MB"), mem_rows),
    ]
    if missing:
        lines += ["", f"**Missing:** {', '.join(missing)} (install opus-tools)."]
    return lines


# --------------------------------------------------------------------------------------------------
# (b) and (c): edits and MIDI export on chorale excerpts


def _part_bc(tmp: Path, *, quick: bool) -> list[str]:
    import mido

    from calyx import datasets
    from calyx.core.audio import read_audio
    from calyx.events import decode, encode
    from calyx.events.edit import time_stretch, transpose
    from calyx.events.export import midi_file, read_midi_notes
    from calyx.metrics import NoteList, note_f1

    chorales = datasets.chorales()[: 1 if quick else N_CHORALES]
    edit_rows: list[tuple[Any, ...]] = []
    midi_rows: list[tuple[Any, ...]] = []
    ratios_t, ratios_s = [], []
    for ch in chorales:
        y, sr = read_audio(ch.piano_mono_wav)
        x = y[0, : int(EXCERPT_S * sr)]
        gt = _notes_in(datasets.load_notes(ch.notes_csv), EXCERPT_S)
        print(f"[events-extra] {ch.name}: encode, then transposed, stretched and round-trip re-encodes", flush=True)
        t0 = time.process_time()
        ev = encode(x, sample_rate=sr)
        cpu = time.process_time() - t0
        f1 = note_f1(gt, _event_notes(ev))["f1"]
        up = transpose(ev, semitones=TRANSPOSE_SEMITONES)
        slow = time_stretch(ev, factor=STRETCH)
        f1_up_events = note_f1(_moved(gt, semitones=TRANSPOSE_SEMITONES), _event_notes(up))["f1"]
        f1_round = note_f1(gt, _event_notes(encode(decode(ev), sample_rate=sr)))["f1"]
        f1_up = note_f1(_moved(gt, semitones=TRANSPOSE_SEMITONES),
                        _event_notes(encode(decode(up), sample_rate=sr)))["f1"]
        f1_slow = note_f1(_moved(gt, factor=STRETCH), _event_notes(encode(decode(slow), sample_rate=sr)))["f1"]
        ratios_t.append(f1_up / f1)
        ratios_s.append(f1_slow / f1)
        edit_rows.append((ch.name, len(gt), len(ev), f1, f1_round, f1_up_events, f1_up, f1_up / f1, f1_slow,
                          f1_slow / f1, cpu))

        # (c) MIDI export against the ground-truth MIDI file
        rows = datasets.midi_notes(mido.MidiFile(str(ch.piano_mid)))
        ref = _notes_in(NoteList.from_rows([(r.onset_s, r.offset_s, float(r.pitch_midi)) for r in rows]), EXCERPT_S)
        export = midi_file(ev)
        path = tmp / f"{ch.name}.mid"
        export.midi.save(str(path))
        bent = read_midi_notes(path)
        plain_rows = datasets.midi_notes(mido.MidiFile(str(path)))
        plain = NoteList.from_rows([(r.onset_s, r.offset_s, float(r.pitch_midi)) for r in plain_rows])
        midi_rows.append((ch.name, len(ref), note_f1(ref, _event_notes(ev))["f1"], export.n_notes,
                          export.channels_used, export.bend_conflicts, note_f1(ref, bent)["f1"],
                          note_f1(ref, plain)["f1"], float(np.max(np.abs(np.sort(bent.onset_s) - np.sort(ev.times_s))))))
    lines = [
        f"## (b) Edits: transpose +{TRANSPOSE_SEMITONES:g} semitones, time-stretch ×{STRETCH:g}",
        "",
        f"First {len(chorales)} chorales, piano, first {EXCERPT_S:.0f} s, mono 44.1 kHz. Each edit is applied to "
        "the events, the result decoded and encoded again; note F1 (50 ms, 50 cents) of those events against "
        "the ground truth moved the same way (pitches +2, or onsets ×1.25). \"F1 of edited events\" reads the "
        "transposed events directly (it only checks the bookkeeping); \"round trip\" is decode + re-encode "
        "without an edit, the loss of the re-encoding itself. Goal: the edited re-encodes keep ≥ 0.9 × the "
        "events' own F1.",
        "",
        md_table(("clip", "notes", "events", "F1 events", "F1 round trip", "F1 of edited events (+2)",
                  "F1 transposed re-encode", "ratio", "F1 stretched re-encode", "ratio", "encode CPU s"),
                 edit_rows),
        "",
        f"Median ratio: transposed {float(np.median(ratios_t)):.3f}, stretched {float(np.median(ratios_s)):.3f} "
        f"(minimum {min(ratios_t):.3f} and {min(ratios_s):.3f}).",
        "",
        "## (c) MIDI export against the ground-truth MIDI",
        "",
        "The same events exported with `calyx.events.export.midi_file` (one note per event, per-note channel "
        "rotation, pitch bends for the fractional pitch, 0.5 ms ticks) and read back with the bends "
        "(`read_midi_notes`) and with a reader that ignores them (`calyx.datasets.midi_notes`, integer keys). "
        "Reference: the notes of the chorale's ground-truth MIDI file in the excerpt.",
        "",
        md_table(("clip", "reference notes", "F1 events", "MIDI notes", "channels", "bend conflicts",
                  "F1 MIDI (bends)", "F1 MIDI (keys only)", "max onset error s"), midi_rows),
    ]
    return lines


def run(*, quick: bool = False) -> str:
    """Measure (a), (b) and (c) and return the markdown report."""
    from calyx.errors import CalyxError

    started = time.perf_counter()
    parts = [
        "# Events at any length, edited in codec space",
        "",
        "Streaming encode/decode of a long recording, edits in codec space and MIDI export, measured with "
        "`calyx.metrics` (LMD, note F1) and beside Opus in the same run.",
        "",
        environment_note(),
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="calyx-events-extra-") as d:
        tmp = Path(d)
        try:
            parts += _part_a(tmp, quick=quick)
        except CalyxError as exc:
            parts += ["## (a) streaming", "", f"Not measured: {exc}"]
        parts.append("")
        parts += _part_bc(tmp, quick=quick)
    parts += ["", f"Total benchmark time {time.perf_counter() - started:.0f} s."]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="40 s of the movement and one chorale; prints the report instead of writing it")
    args = p.parse_args(argv)
    text = run(quick=args.quick)
    if args.quick:  # a smoke run is not a result
        print(text)
    else:
        print(f"wrote {write_result('events-extra.md', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
