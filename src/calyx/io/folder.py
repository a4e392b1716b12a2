"""Reading a folder of audio files described by a ``manifest.csv`` (see ``docs/folder-format.md``).

The manifest is a CSV file with a header row. Columns:

==============  ========  ==================================================================
column          required  meaning
==============  ========  ==================================================================
``file``        yes       audio file (WAV, FLAC, Ogg), relative to the folder; ``/`` or ``\\``
``pitch``       yes       recorded pitch: fractional MIDI number (``60.3``) or note name (``C4``)
``velocity_lo`` no        lowest MIDI velocity of the note's layer, 0..127 (default 0)
``velocity_hi`` no        highest MIDI velocity of the note's layer, 0..127 (default 127)
``articulation`` no       articulation label (default ``default``)
``variation``   no        round-robin index, integer from 0 (default 0)
``key_lo``      no        lowest MIDI key the note is mapped to (default: pitch rounded)
``key_hi``      no        highest MIDI key the note is mapped to (default: pitch rounded)
==============  ========  ==================================================================

Empty cells take the default. Rows whose first cell starts with ``#`` are comments. Loop points
come from a WAV file's ``smpl`` chunk when it has one. Two rows on the same pitch, velocity range,
articulation and variation are an error, as is any cell that does not parse; the message names the
manifest line.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from calyx.errors import AudioFileError
from calyx.io._common import audio_info, find_file, parse_pitch, wav_sampler_info
from calyx.io.library import Library, NoteSample, SoundFileSlice, velocity_to_dynamic

__all__ = ["MANIFEST_COLUMNS", "MANIFEST_NAME", "read_folder"]

MANIFEST_NAME = "manifest.csv"
#: Every column a manifest may have; ``file`` and ``pitch`` are required.
MANIFEST_COLUMNS = (
    "file",
    "pitch",
    "velocity_lo",
    "velocity_hi",
    "articulation",
    "variation",
    "key_lo",
    "key_hi",
)
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def _cell_int(row: dict[str, str], name: str, default: int, lo: int, hi: int, where: str) -> int:
    text = (row.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise AudioFileError(f"{where}: {name} {text!r} is not an integer") from None
    if not lo <= value <= hi:
        raise AudioFileError(f"{where}: {name} {value} is outside {lo}..{hi}")
    return value


def read_folder(path: str | os.PathLike[str]) -> Library:
    """Import a folder of audio files described by its ``manifest.csv``.

    Parameters
    ----------
    path : str or os.PathLike
        The folder (holding ``manifest.csv``), or the manifest file itself.

    Returns
    -------
    Library
        One note per manifest row, named after the folder; audio is read lazily.

    Raises
    ------
    AudioFileError
        When the manifest is missing or malformed, or a file it names is missing or unreadable; the
        message names the manifest line and the offending value.
    """
    p = Path(path)
    manifest = p if p.is_file() else p / MANIFEST_NAME
    folder = manifest.parent
    if not manifest.is_file():
        raise AudioFileError(f"{manifest}: no such manifest; see docs/folder-format.md for the format")
    try:
        size = manifest.stat().st_size
        if size > _MAX_MANIFEST_BYTES:
            raise AudioFileError(f"{manifest}: {size} bytes is too large for a manifest")
        text = manifest.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AudioFileError(f"{manifest}: not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise AudioFileError(f"{manifest}: cannot be read ({exc})") from exc

    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    notes: list[NoteSample] = []
    seen: dict[tuple[float, int, int, str, int], int] = {}
    try:
        for record in reader:
            line = reader.line_num
            where = f"{manifest}:{line}"
            if not record or all(not c.strip() for c in record) or record[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [c.strip().lower() for c in record]
                unknown = [c for c in header if c not in MANIFEST_COLUMNS]
                missing = [c for c in ("file", "pitch") if c not in header]
                if unknown or missing or len(set(header)) != len(header):
                    raise AudioFileError(
                        f"{where}: bad header {record}: "
                        + (f"unknown columns {unknown}; " if unknown else "")
                        + (f"missing columns {missing}; " if missing else "")
                        + f"the columns are {list(MANIFEST_COLUMNS)} (file and pitch required)"
                    )
                continue
            if len(record) > len(header):
                raise AudioFileError(f"{where}: {len(record)} cells, the header has {len(header)} columns")
            row = dict(zip(header, (c.strip() for c in record), strict=False))
            notes.append(_note(folder, row, where, seen, line))
    except csv.Error as exc:
        raise AudioFileError(f"{manifest}:{reader.line_num}: malformed CSV ({exc})") from exc
    if header is None or not notes:
        raise AudioFileError(f"{manifest}: no notes; expected a header row and one row per audio file")
    notes.sort(key=lambda n: (n.articulation, n.dynamic, n.pitch_midi, n.variation, n.key_lo))
    return Library(name=folder.resolve().name, notes=notes, source=str(folder))


def _note(
    folder: Path,
    row: dict[str, str],
    where: str,
    seen: dict[tuple[float, int, int, str, int], int],
    line: int,
) -> NoteSample:
    file_text = row.get("file", "")
    if not file_text:
        raise AudioFileError(f"{where}: the file cell is empty")
    audio_path = find_file(folder, file_text)
    if audio_path is None:
        raise AudioFileError(f"{where}: audio file {file_text!r} not found in {folder}")
    pitch_text = row.get("pitch", "")
    pitch = parse_pitch(pitch_text)
    if pitch is None or not 0.0 <= pitch <= 127.0:
        raise AudioFileError(
            f"{where}: pitch {pitch_text!r} is not a MIDI number in 0..127 or a note name like C4, F#3 or Bb2"
        )
    vel_lo = _cell_int(row, "velocity_lo", 0, 0, 127, where)
    vel_hi = _cell_int(row, "velocity_hi", 127, 0, 127, where)
    if vel_lo > vel_hi:
        raise AudioFileError(f"{where}: velocity_lo {vel_lo} is above velocity_hi {vel_hi}")
    key_default = min(127, max(0, round(pitch)))
    key_lo = _cell_int(row, "key_lo", key_default, 0, 127, where)
    key_hi = _cell_int(row, "key_hi", key_default, 0, 127, where)
    if key_lo > key_hi:
        raise AudioFileError(f"{where}: key_lo {key_lo} is above key_hi {key_hi}")
    articulation = row.get("articulation") or "default"
    variation = _cell_int(row, "variation", 0, 0, 1_000_000, where)

    slot = (pitch, vel_lo, vel_hi, articulation, variation)
    if slot in seen:
        raise AudioFileError(
            f"{where}: same pitch {pitch}, velocities {vel_lo}..{vel_hi}, articulation {articulation!r} and "
            f"variation {variation} as line {seen[slot]}; give one of them another variation"
        )
    seen[slot] = line

    try:
        info = audio_info(audio_path)
    except Exception as exc:  # libsndfile reports unreadable files with several exception types
        raise AudioFileError(f"{where}: {audio_path} cannot be read as audio ({exc})") from exc
    if info.n_frames <= 0:
        raise AudioFileError(f"{where}: {audio_path} holds no audio")
    loop_start = loop_end = None
    smpl = wav_sampler_info(audio_path)
    if smpl is not None and smpl.loops:
        ls, le = smpl.loops[0][0], smpl.loops[0][1] + 1
        if 0 <= ls < le <= info.n_frames:
            loop_start, loop_end = ls, le
    return NoteSample(
        pitch_midi=pitch,
        key_lo=key_lo,
        key_hi=key_hi,
        velocity_lo=vel_lo,
        velocity_hi=vel_hi,
        dynamic=velocity_to_dynamic(vel_lo, vel_hi),
        articulation=articulation,
        variation=variation,
        sample_rate=info.sample_rate,
        channels=info.channels,
        n_samples=info.n_frames,
        loop_start=loop_start,
        loop_end=loop_end,
        source=f"{where} [{audio_path}]",
        loader=SoundFileSlice(str(audio_path), 0, info.n_frames),
    )
