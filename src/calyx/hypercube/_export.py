"""Decoding an instrument to files existing samplers read: WAV notes with an SFZ or SoundFont 2 map.

Every grid note is decoded at its own pitch, dynamic, articulation, variation and length and
written as a 16-bit WAV file, with ``manifest.csv`` in the folder format of
``docs/folder-format.md`` (each row preceded by a ``# source:`` comment naming the sample the note
was encoded from, which the folder reader skips). Then, by format:

- ``wav``: the notes and the manifest only (readable back with :func:`calyx.io.read_folder`);
- ``sfz``: an ``.sfz`` file with one ``<group>`` per articulation (``group_label``) and one
  ``<region>`` per note (``lokey``/``hikey``/``lovel``/``hivel``/``pitch_keycenter``/``tune``,
  round robins as ``seq_length``/``seq_position``, the source's loop as ``loop_mode``/``loop_start``/
  ``loop_end``);
- ``sf2``: a SoundFont 2 file (:func:`calyx.io.sf2_write.write_sf2`) with one preset per
  articulation (program = articulation index); SoundFont has no round robin, so only variation 0
  of each slot is mapped.

The output is built in a staging folder beside the destination and moved into place at the end:
an interrupted decode leaves the destination untouched, and existing files are replaced only with
``force``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from calyx.core.audio import atomic_output, write_audio
from calyx.errors import ParameterError
from calyx.hypercube._instrument import GridNote, Instrument

__all__ = ["FORMATS", "DecodeResult", "decode_to_folder", "manifest_text", "note_file_name", "sfz_text"]

FORMATS = ("wav", "sfz", "sf2")


@dataclass(frozen=True)
class DecodeResult:
    """What a decode wrote.

    Attributes
    ----------
    folder : Path
    files : list of Path
        Every file written (notes, manifest, map).
    audio_s : float
        Seconds of audio decoded.
    decode_s : float
        Wall time spent decoding notes (model evaluation and synthesis), seconds.
    wall_s : float
        Total wall time, seconds.
    """

    folder: Path
    files: list[Path]
    audio_s: float
    decode_s: float
    wall_s: float


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s or "x"


def note_file_name(index: int, note: GridNote) -> str:
    """``0001_<articulation>_p<pitch>_v<lo>-<hi>_rr<variation>.wav``."""
    return f"{index:04d}_{_slug(note.articulation)}_p{note.pitch_midi:.2f}_v{note.velocity_lo}-{note.velocity_hi}_rr{note.variation}.wav"


def manifest_text(notes: Sequence[GridNote], files: Sequence[str], *, title: str = "") -> str:
    """``manifest.csv`` in the folder format, each row preceded by a ``# source:`` comment."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if title:
        w.writerow([f"# {title}"])
    w.writerow(["file", "pitch", "velocity_lo", "velocity_hi", "articulation", "variation", "key_lo", "key_hi"])
    for n, f in zip(notes, files, strict=True):
        w.writerow([f"# source: {n.source}"])
        w.writerow([f, repr(float(n.pitch_midi)), n.velocity_lo, n.velocity_hi, n.articulation, n.variation, n.key_lo, n.key_hi])
    return buf.getvalue()


def sfz_text(notes: Sequence[GridNote], files: Sequence[str], *, name: str) -> str:
    """An SFZ map of the decoded notes: a group per articulation, a region per note."""
    lines = [f"// {name}: decoded by calyx from a .calyx instrument", "// pitch_midi = pitch_keycenter - tune / 100", ""]
    slots: dict[tuple[str, float, int, int], int] = {}
    for n in notes:
        key = (n.articulation, n.pitch_midi, n.velocity_lo, n.velocity_hi)
        slots[key] = slots.get(key, 0) + 1
    arts: list[str] = []
    for n in notes:
        if n.articulation not in arts:
            arts.append(n.articulation)
    for art in arts:
        label = re.sub(r"[\r\n]", " ", art)
        lines.append(f"<group> group_label={label}")
        for n, f in zip(notes, files, strict=True):
            if n.articulation != art:
                continue
            center = int(min(127, max(0, round(n.pitch_midi))))
            tune = round(100.0 * (center - n.pitch_midi))
            ops = [
                f"sample={f}", f"lokey={n.key_lo}", f"hikey={n.key_hi}", f"lovel={n.velocity_lo}", f"hivel={n.velocity_hi}",
                f"pitch_keycenter={center}", f"tune={tune}",
            ]
            count = slots[(n.articulation, n.pitch_midi, n.velocity_lo, n.velocity_hi)]
            if count > 1:
                ops += [f"seq_length={count}", f"seq_position={n.variation + 1}"]
            if n.loop_start is not None and n.loop_end is not None:
                ops += ["loop_mode=loop_continuous", f"loop_start={n.loop_start}", f"loop_end={n.loop_end - 1}"]
            else:
                ops += ["loop_mode=no_loop"]
            lines.append("<region> " + " ".join(ops))
        lines.append("")
    return "\n".join(lines)


def _decode_one(args: tuple[Instrument, int, str, str]) -> tuple[float, int]:
    inst, index, folder, fname = args
    t0 = time.perf_counter()
    y = inst.decode_note(index)
    dt = time.perf_counter() - t0
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    write_audio(Path(folder) / fname, y, sample_rate=inst.sample_rate, bit_depth=16, force=True)
    return dt, int(peak > 1.0)


def decode_to_folder(
    inst: Instrument,
    folder: str | os.PathLike[str],
    *,
    fmt: str = "wav",
    force: bool = False,
    progress: bool = False,
    release_s: float | None = 0.3,
) -> DecodeResult:
    """Decode every grid note into ``folder`` (see the module documentation).

    Parameters
    ----------
    inst : Instrument
    folder : path
        Created if missing; files already there are replaced only with ``force``.
    fmt : str
        ``"wav"``, ``"sfz"`` or ``"sf2"``.
    force : bool
        Replace existing files.
    progress : bool
        A progress bar on stderr.
    release_s : float or None
        SoundFont only: release time of every zone (``releaseVolEnv``); None keeps the format's
        instant release.

    Raises
    ------
    FileExistsError
        When a file to write exists and ``force`` is false (nothing is written then).
    """
    if fmt not in FORMATS:
        raise ParameterError(f"format must be one of {FORMATS}, got {fmt!r}")
    t_start = time.perf_counter()
    dest = Path(folder)
    files = [note_file_name(i, n) for i, n in enumerate(inst.notes)]
    stem = _slug(inst.name)
    extra = ["manifest.csv"] + ([f"{stem}.sfz"] if fmt == "sfz" else []) + ([f"{stem}.sf2"] if fmt == "sf2" else [])
    if dest.exists() and not dest.is_dir():
        raise FileExistsError(f"{dest} exists and is not a folder")
    if dest.is_dir() and not force:
        clash = [f for f in files + extra if (dest / f).exists()]
        if clash:
            raise FileExistsError(
                f"{dest} already holds {len(clash)} of the files to write (e.g. {clash[0]}); pass force=True (--force) to replace them"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        from tqdm import tqdm

        decode_s = 0.0
        audio_s = 0.0
        from threadpoolctl import threadpool_limits

        # one BLAS thread: the per-note products are small, and threads only contend on a shared machine
        with threadpool_limits(1), tqdm(total=len(files), desc="decoding", unit="note", disable=not progress, dynamic_ncols=True) as bar:
            for i, fname in enumerate(files):
                dt, _ = _decode_one((inst, i, str(stage), fname))
                decode_s += dt
                audio_s += inst.notes[i].n_samples / inst.sample_rate
                bar.update(1)
        title = f"{inst.name}: decoded by calyx ({inst.method}); pitch is the recorded pitch in MIDI numbers"
        with atomic_output(stage / "manifest.csv", force=True, mode="wb") as fh:
            fh.write(manifest_text(inst.notes, files, title=title).encode("utf-8"))
        if fmt == "sfz":
            with atomic_output(stage / f"{stem}.sfz", force=True) as fh:
                fh.write(sfz_text(inst.notes, files, name=inst.name).encode("utf-8"))
        if fmt == "sf2":
            _write_sf2(inst, stage, files, stage / f"{stem}.sf2", release_s=release_s)
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for f in files + extra:
            os.replace(stage / f, dest / f)
            written.append(dest / f)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return DecodeResult(dest, written, audio_s, decode_s, time.perf_counter() - t_start)


def _wav_loader(path: Path) -> Callable[[], NDArray[np.float64]]:
    def load() -> NDArray[np.float64]:
        import soundfile as sf

        data, _ = sf.read(str(path), dtype="float64", always_2d=True)
        return np.ascontiguousarray(data.T)

    return load


def _write_sf2(inst: Instrument, stage: Path, files: Sequence[str], target: Path, *, release_s: float | None) -> None:
    from calyx.io.sf2_write import SF2Preset, SF2Zone, write_sf2

    presets = []
    for a_index, art in enumerate(inst.articulations):
        zones = []
        for i, n in enumerate(inst.notes):
            if n.articulation != art or n.variation != 0:
                continue
            name = f"{_slug(art)[:6]} {n.pitch_midi:.0f} v{n.velocity_hi}"
            zones.append(SF2Zone(
                audio=_wav_loader(stage / files[i]), name=name, sample_rate=inst.sample_rate,
                pitch_midi=min(127.0, max(0.0, n.pitch_midi)), key_lo=n.key_lo, key_hi=n.key_hi,
                velocity_lo=n.velocity_lo, velocity_hi=n.velocity_hi, loop_start=n.loop_start, loop_end=n.loop_end,
                release_s=release_s,
            ))
        if zones:
            presets.append(SF2Preset(name=art if len(inst.articulations) > 1 else inst.name, zones=zones, program=a_index % 128, bank=a_index // 128))
    comment = f"Decoded by calyx from a .calyx instrument ({inst.method}); source: {inst.provenance.get('source', '')}"
    write_sf2(target, presets=presets, name=inst.name, comment=comment, force=True)
