"""Real-time synthesis benchmark: polyphony at 48 kHz, block 128, one core; the wall time and peak
memory of rendering a chorale against FluidSynth rendering it from the original SoundFont, in the
same run; and the LMD between the two renderings.

The instrument is the development piano (MuseScore General's Grand Piano, 40 pitches x MF/FF),
encoded once into ``data/cache/synth-piano.calyx`` with the encoder's defaults and timed as
``calyx render piano.calyx chorale.mid``. Where the ``.calyx`` codec is not available, its notes
are analysed into note models instead (cached under ``data/cache/synth-piano/``) and played
through a :class:`calyx.synth.ModelGrid`:

    python bench/synth.py render --cache DIR --midi IN.mid --out OUT.wav   (the timed child process)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import environment_note, md_table
from calyx.analysis import NoteModel
from calyx.synth import Engine, GridNote, ModelGrid

PIANO_PRESET = "Grand Piano"
SAMPLE_RATE = 48000
BLOCK = 128
LOAD_LIMIT = 0.5  # render time per block, as a share of the block's duration
MAX_VOICES = 512
FLUIDSYNTH_ARGS = ["-ni", "-q", "-R", "0", "-C", "0", "-g", "0.8", "-r", str(SAMPLE_RATE)]


# ---- the piano as analysed notes, cached --------------------------------------------------------


def _save_model(path: Path, model: NoteModel) -> None:
    """One folder per note: ``meta.json`` and one ``.npy`` per array (memory-mapped when loaded)."""
    arrays, meta = model.to_arrays()
    arrays.pop("phase", None)  # the engine regenerates phases
    tmp = path.with_name(path.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, a in arrays.items():
        np.save(tmp / f"{name}.npy", np.ascontiguousarray(a, dtype=np.float64))
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def load_model(path: Path) -> NoteModel:
    meta = json.loads((path / "meta.json").read_text())
    arrays = {f.stem: np.load(f, mmap_mode="r") for f in path.glob("*.npy")}
    return NoteModel.from_arrays(arrays, meta)


class _Loader:
    """Loads one cached note model when the grid needs it (picklable)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> NoteModel:
        return load_model(self.path)


def _index_file(cache_dir: Path) -> Path:
    return cache_dir / "index.json"


def analyse_piano(cache_dir: Path, *, log: Any = print) -> None:
    """Analyse every note of the development piano into ``cache_dir`` (skipping cached notes)."""
    import warnings

    from calyx import datasets
    from calyx.analysis import analyze_note
    from calyx.io import load_library

    cache_dir.mkdir(parents=True, exist_ok=True)
    lib = load_library(datasets.soundfont_path(), preset=PIANO_PRESET)
    index = []
    t0 = time.perf_counter()
    for i, note in enumerate(lib):
        path = cache_dir / f"{i:03d}_{note.pitch_midi:.2f}_{note.velocity_lo}-{note.velocity_hi}"
        if not path.exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = analyze_note(note.load(), sample_rate=note.sample_rate, pitch_midi=note.pitch_midi)
            _save_model(path, model)
            log(f"  analysed {i + 1}/{len(lib)} ({time.perf_counter() - t0:.0f} s)")
        index.append(
            {
                "file": path.name,
                "pitch_midi": note.pitch_midi,
                "dynamic": note.dynamic,
                "dynamic_hi": note.velocity_hi / 127.0,
                "key_lo": note.key_lo,
                "key_hi": note.key_hi,
                "duration_s": note.duration_s,
            }
        )
    _index_file(cache_dir).write_text(json.dumps({"preset": PIANO_PRESET, "notes": index}, indent=1))


def piano_grid(cache_dir: Path) -> ModelGrid:
    """The cached analysed piano as a ModelGrid whose models load on demand."""
    index = json.loads(_index_file(cache_dir).read_text())
    notes = [
        GridNote(
            pitch_midi=n["pitch_midi"],
            dynamic=n["dynamic"],
            model=_Loader(cache_dir / n["file"]),
            dynamic_hi=n["dynamic_hi"],
            key_lo=float(n["key_lo"]),
            key_hi=float(n["key_hi"]),
        )
        for n in index["notes"]
    ]
    return ModelGrid(notes, sustained=False, name=PIANO_PRESET)


def encoded_piano(cache: Path, *, log: Any = print) -> Path | None:
    """The development piano as a ``.calyx`` file (encoded once with the defaults), or None when
    this tree has no ``.calyx`` codec."""
    try:
        from calyx.hypercube import encode_library
        from calyx.instrument import load  # noqa: F401 - the reader must exist too
    except ImportError:
        return None
    path = cache / "synth-piano.calyx"
    if path.exists():
        from calyx.errors import CalyxError
        from calyx.instrument import load as load_instrument

        try:  # a file written by an earlier version of the format is encoded again
            inst = load_instrument(path, lazy=False)
            inst.evaluate(60.0, 0.5)
        except CalyxError as exc:
            log(f"{path} cannot be read by this version ({exc}); encoding it again")
            path.unlink()
    if not path.exists():
        import warnings

        from calyx import datasets
        from calyx.io import load_library

        log("encoding the development piano (once; cached in data/cache/synth-piano.calyx)")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inst = encode_library(load_library(datasets.soundfont_path(), preset=PIANO_PRESET), workers=1)
        cache.mkdir(parents=True, exist_ok=True)
        inst.save(path, force=True)
        log(f"  encoded in {time.perf_counter() - t0:.0f} s")
    return path


def piano_source(cache: Path) -> tuple[Any, str, Any]:
    """The instrument, a sentence describing it, and a function ``(midi, out) -> command`` that
    renders a MIDI file with it in a fresh process."""
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    path = encoded_piano(cache, log=log)
    if path is not None:
        from calyx.instrument import load

        inst = load(path)
        size = path.stat().st_size
        ratio = inst.pcm16_bytes() / size
        art = inst.articulations[0]
        desc = (
            f"Instrument: MuseScore General's {PIANO_PRESET} ({len(inst.notes)} notes, 40 pitches x MF/FF) encoded by "
            f"`calyx.hypercube.encode_library` with its defaults into a {size / 1024:.0f} KiB `.calyx` file "
            f"({inst.method}, ranks {inst.ranks(art)}, {ratio:.0f}x smaller than its PCM), played from the file "
            "(`calyx.instrument.load`; the engine interpolates the dynamics between the MF and FF layers)."
        )

        def command(midi: Path, out: Path) -> list[str]:
            return [sys.executable, "-m", "calyx", "render", str(path), str(midi), "-o", str(out), "--force"]

        return inst, desc, command
    cache_dir = cache / "synth-piano"
    analyse_piano(cache_dir, log=log)
    index = json.loads(_index_file(cache_dir).read_text())
    desc = (
        f"Instrument: MuseScore General's {PIANO_PRESET} ({len(index['notes'])} notes, 40 pitches x MF/FF), "
        "analysed into note models and played through `calyx.synth.ModelGrid` (this tree has no `.calyx` "
        "codec: the models of the needed notes are loaded from the analysis cache on demand and "
        "interpolated in pitch; the engine interpolates the dynamics between the MF and FF layers)."
    )

    def grid_command(midi: Path, out: Path) -> list[str]:
        script = str(Path(__file__).resolve())
        return [sys.executable, script, "render", "--cache", str(cache_dir), "--midi", str(midi), "--out", str(out)]

    return piano_grid(cache_dir), desc, grid_command


# ---- polyphony ------------------------------------------------------------------------------------


def _block_load(engine: Engine, n_voices: int, *, runs: int, blocks: int) -> tuple[float, float, float, int]:
    """Render time per block with ``n_voices`` sounding, as a share of the block's duration: median over
    ``runs`` of the mean over ``blocks``, in the thread's CPU time and in wall time; also the mean
    partials per voice and the voices actually sounding."""
    engine.reset()  # keeps the table cache: only the first scan evaluates the notes
    lo, hi = engine.pitch_range_midi
    keys = list(range(int(np.ceil(lo)), int(np.floor(hi)) + 1))
    for ch in range(16):
        engine.control_change(64, 127, channel=ch)
    for i in range(n_voices):
        key = keys[(i * 37) % len(keys)]  # spread over the keyboard; repeats go to other channels
        engine.note_on(key, 90, channel=(i // len(keys)) % 16)
    out = np.zeros((2, BLOCK))
    for _ in range(int(0.1 * SAMPLE_RATE / BLOCK)):  # past the attacks
        engine.process(out=out)
    cpu, wall = [], []
    block_s = BLOCK / SAMPLE_RATE
    for _ in range(runs):
        c0, w0 = time.thread_time(), time.perf_counter()
        for _ in range(blocks):
            engine.process(out=out)
        cpu.append((time.thread_time() - c0) / blocks / block_s)
        wall.append((time.perf_counter() - w0) / blocks / block_s)
    partials = engine.voice_partial_counts()
    return statistics.median(cpu), statistics.median(wall), float(partials.mean()), int(partials.size)


def polyphony(source: Any, *, quick: bool) -> tuple[int, int, list[list[Any]]]:
    """Largest voice counts under the load limit, by CPU time and by wall time: a coarse scan, then
    steps of 8 below the first failure (by CPU time)."""
    runs, blocks = 5, (40 if quick else 150)
    engine = Engine(source, sample_rate=SAMPLE_RATE, polyphony=MAX_VOICES)
    rows: list[list[Any]] = []
    best_wall = 0

    def measure(n: int) -> float:
        nonlocal best_wall
        cpu, wall, partials, sounding = _block_load(engine, n, runs=runs, blocks=blocks)
        rows.append([n, sounding, partials, 1e6 * cpu * BLOCK / SAMPLE_RATE, 100.0 * cpu, 100.0 * wall])
        if wall < LOAD_LIMIT:
            best_wall = max(best_wall, n)
        return cpu

    passed = 0
    failed = None
    for n in (16, 32, 64, 96, 128, 192, 256, 384, MAX_VOICES):
        if measure(n) < LOAD_LIMIT:
            passed = n
        else:
            failed = n
            break
    if failed is not None:
        n = passed + 8
        while n < failed:
            if measure(n) < LOAD_LIMIT:
                passed = n
            else:
                break
            n += 8
    rows.sort(key=lambda r: r[0])
    return passed, best_wall, rows


# ---- MIDI rendering against FluidSynth ----------------------------------------------------------------


def _timed(cmd: list[str]) -> tuple[float, float, float]:
    """Wall time (s), CPU time (user + system, s) and peak RSS (MB) of a command, from
    ``/usr/bin/time -v``."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        t0 = time.perf_counter()
        proc = subprocess.run([time_bin, "-v", "-o", report.name, *cmd], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        rss_kb = cpu = 0.0
        for line in report.read().splitlines():
            key, _, value = line.strip().rpartition(": ")
            if key == "Maximum resident set size (kbytes)":
                rss_kb = float(value)
            elif key in ("User time (seconds)", "System time (seconds)"):
                cpu += float(value)
    return wall, cpu, rss_kb / 1024.0


def render_breakdown(source: Any, midi: Path) -> str:
    """In one process: the seconds spent evaluating and preparing note tables, and in the rest of
    rendering (the compiled voices), for the chorale."""
    from calyx.synth import render_events, schedule_midi

    engine = Engine(source, sample_rate=SAMPLE_RATE, gain_db=-12.0)
    t0 = time.perf_counter()
    end = schedule_midi(engine, midi)
    render_events(engine, end_samples=end)
    total = time.perf_counter() - t0
    tables = float(engine.stats["table_s"])
    return (
        f"in-process: {total:.2f} s, of which {tables:.2f} s evaluating {int(engine.stats['tables'])} note "
        f"tables and {total - tables:.2f} s rendering"
    )


def render_child(cache_dir: Path, midi: Path, out: Path) -> dict[str, float]:
    """What the timed Calyx process does: load the instrument, render the MIDI file, write the WAV."""
    from calyx.core.audio import write_audio
    from calyx.synth import render_midi

    t0 = time.perf_counter()
    grid = piano_grid(cache_dir)
    t1 = time.perf_counter()
    y = render_midi(grid, midi, sample_rate=SAMPLE_RATE)
    t2 = time.perf_counter()
    write_audio(out, y, sample_rate=SAMPLE_RATE, force=True)
    return {"load_s": t1 - t0, "render_s": t2 - t1, "audio_s": y.shape[1] / SAMPLE_RATE, "peak": float(np.abs(y).max())}


def midi_comparison(command: Any, midi: Path, sf2: Path, *, runs: int, work: Path) -> dict[str, Any]:
    calyx_wav = work / "calyx.wav"
    fluid_wav = work / "fluidsynth.wav"
    calyx_cmd = command(midi, calyx_wav)
    fluid_cmd = ["fluidsynth", *FLUIDSYNTH_ARGS, "-F", str(fluid_wav), str(sf2), str(midi)]
    _timed(calyx_cmd)  # compiled kernels and the file cache warm for both
    _timed(fluid_cmd)
    calyx_runs: list[tuple[float, float, float]] = []
    fluid_runs: list[tuple[float, float, float]] = []
    for _ in range(runs):  # interleaved, so that load on the shared machine hits both alike
        calyx_runs.append(_timed(calyx_cmd))
        fluid_runs.append(_timed(fluid_cmd))
    from calyx.core.audio import read_audio
    from calyx.metrics import lmd, lsd_db

    ref, sr = read_audio(fluid_wav)
    test, _ = read_audio(calyx_wav)
    n = min(ref.shape[1], test.shape[1])
    gain = math.sqrt(float(np.mean(ref[:, :n] ** 2)) / max(float(np.mean(test[:, :n] ** 2)), 1e-20))
    return {
        "calyx_wall_s": statistics.median(r[0] for r in calyx_runs),
        "fluid_wall_s": statistics.median(r[0] for r in fluid_runs),
        "calyx_cpu_s": statistics.median(r[1] for r in calyx_runs),
        "fluid_cpu_s": statistics.median(r[1] for r in fluid_runs),
        "calyx_rss_mb": statistics.median(r[2] for r in calyx_runs),
        "fluid_rss_mb": statistics.median(r[2] for r in fluid_runs),
        "fluid_audio_s": ref.shape[1] / sr,
        "lmd": lmd(ref, test, sample_rate=sr),
        "lsd_db": lsd_db(ref, test, sample_rate=sr),
        "lmd_level_matched": lmd(ref, gain * test, sample_rate=sr),
        "level_db": 20.0 * float(np.log10(1.0 / gain)),
    }


# ---- the report -----------------------------------------------------------------------------------------


def run(*, cache: Path | None = None, quick: bool = False) -> str:
    """Run the benchmark and return its markdown section."""
    from calyx import datasets

    cache = cache or datasets.data_root().parent / "cache"
    source, description, command = piano_source(cache)
    lines = [
        "# Real-time synthesis",
        "",
        description,
        "",
        environment_note(),
        "",
        f"## Polyphony (48 kHz, block {BLOCK}, one core)",
        "",
        f"Median of 5 runs of {40 if quick else 150} blocks per voice count; notes spread over the keyboard, "
        "velocity 90, held by the sustain pedal; noise and partials rendered.",
        "",
    ]
    best, best_wall, rows = polyphony(source, quick=quick)
    lines.append(
        md_table(["voices", "sounding", "partials per voice", "CPU us per block", "% of block (CPU)", "% of block (wall)"], rows)
    )
    lines += [
        "",
        f"**Polyphony: {best} voices** stay under {100 * LOAD_LIMIT:.0f} % of the block duration in CPU time of the "
        f"rendering thread (acceptance: >= 64); by wall-clock time, {best_wall} voices. This machine is shared "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores during the run): wall time includes the time "
        "other processes take from the core, CPU time is the engine's own cost.",
        "",
    ]

    chorale = datasets.chorales()[0]
    sf2 = datasets.soundfont_path()
    if shutil.which("fluidsynth") is None:
        lines += ["FluidSynth is not installed (Debian package `fluidsynth`): the MIDI comparison is skipped.", ""]
        return "\n".join(lines)
    with tempfile.TemporaryDirectory() as tmp:
        r = midi_comparison(command, chorale.piano_mid, sf2, runs=3 if quick else 5, work=Path(tmp))
        breakdown = render_breakdown(source, chorale.piano_mid)
    ratio = r["calyx_wall_s"] / r["fluid_wall_s"]
    lines += [
        f"## Rendering a chorale ({chorale.name}, piano MIDI, {r['fluid_audio_s']:.1f} s) against FluidSynth",
        "",
        "Whole processes, median of "
        f"{3 if quick else 5} interleaved runs: `python {' '.join(Path(c).name for c in command(Path('in.mid'), Path('out.wav'))[1:])}` "
        "(start-up, loading the instrument, rendering, writing the WAV) against "
        f"`fluidsynth {' '.join(FLUIDSYNTH_ARGS)} -F out.wav MuseScore_General_Full.sf2 in.mid`; peak "
        "resident memory from `/usr/bin/time -v`.",
        "",
        md_table(
            ["renderer", "wall time (s)", "CPU time (s)", "peak RSS (MB)", "note"],
            [
                ["Calyx engine", r["calyx_wall_s"], r["calyx_cpu_s"], r["calyx_rss_mb"], breakdown],
                ["FluidSynth", r["fluid_wall_s"], r["fluid_cpu_s"], r["fluid_rss_mb"], "loads the whole SoundFont"],
            ],
        ),
        "",
        f"**Render time ratio Calyx / FluidSynth: {ratio:.2f}** in wall time (acceptance: <= 2), "
        f"{r['calyx_cpu_s'] / r['fluid_cpu_s']:.2f} in CPU time. "
        f"Memory ratio: {r['calyx_rss_mb'] / r['fluid_rss_mb']:.2f}.",
        "",
        f"LMD of the Calyx rendering against FluidSynth's: **{r['lmd']:.3f}** (LSD {r['lsd_db']:.1f} dB); "
        f"Calyx is {r['level_db']:+.1f} dB against FluidSynth overall, and with the level matched the LMD is "
        f"{r['lmd_level_matched']:.3f}. The two differ by design in velocity response (FluidSynth applies the "
        "SoundFont's velocity-to-attenuation curve to peak-normalised samples; Calyx interpolates the MF and "
        "FF recordings), in release (SoundFont release envelope vs the engine's damper model) and in phases.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="the timed child process")
    r.add_argument("--cache", type=Path, required=True)
    r.add_argument("--midi", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("run", help="run the benchmark and print its markdown")
    b.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "render":
        print(json.dumps(render_child(args.cache, args.midi, args.out)))
    else:
        print(run(quick=args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
