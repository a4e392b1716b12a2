"""Locating the development corpora, and the MIDI handling that prepares the music among them.

The corpora are fetched and prepared by ``make data`` (``scripts/fetch_data.py``) into
``data/corpora/`` at the repository root, or into the folder named by the environment variable
``CALYX_DATA``. A ``manifest.json`` there lists every product; the locators below read it and
raise :class:`~calyx.errors.AudioFileError` saying "run `make data`" when a product is missing.

Music products are MIDI files in which every part has its own channel and program, rendered with
FluidSynth, plus their ground-truth note list (CSV ``onset_s,offset_s,pitch_midi,velocity,part``)
computed from the very MIDI file that was rendered, so it matches the audio exactly.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calyx.errors import AudioFileError, ParameterError
from calyx.metrics import NoteList

__all__ = [
    "DATA_ENV_VAR",
    "MANIFEST_NAME",
    "NOTES_CSV_HEADER",
    "SOUNDFONT_DEFAULT_PATH",
    "SOUNDFONT_PACKAGE",
    "Chorale",
    "NoteRow",
    "QuartetMovement",
    "assign_part_channels",
    "channel_part",
    "chorales",
    "data_root",
    "load_notes",
    "manifest",
    "midi_notes",
    "notes_csv_text",
    "part_channel",
    "quartet_movement",
    "read_note_rows",
    "soundfont_path",
    "speech_clip",
    "speech_labels",
]

DATA_ENV_VAR = "CALYX_DATA"
MANIFEST_NAME = "manifest.json"
SOUNDFONT_DEFAULT_PATH = Path("/usr/share/sounds/sf2/MuseScore_General_Full.sf2")
SOUNDFONT_PACKAGE = "musescore-general-soundfont-lossless"
NOTES_CSV_HEADER = ("onset_s", "offset_s", "pitch_midi", "velocity", "part")

_PERCUSSION_CHANNEL = 9
_MAX_PARTS = 15
_HINT = "run `make data` (scripts/fetch_data.py) to fetch and prepare the development corpora"


# --------------------------------------------------------------------------------------------------
# Locating the products
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chorale:
    """A Bach chorale rendered twice: all parts on grand piano, and as a string quartet."""

    name: str
    piano_wav: Path
    piano_mono_wav: Path
    quartet_wav: Path
    quartet_mono_wav: Path
    piano_mid: Path
    quartet_mid: Path
    notes_csv: Path


@dataclass(frozen=True)
class QuartetMovement:
    """A string-quartet movement (two violins, viola, cello) rendered from MIDI."""

    name: str
    wav: Path
    mono_wav: Path
    mid: Path
    notes_csv: Path


def data_root() -> Path:
    """Folder holding the development corpora: ``$CALYX_DATA`` if set, else ``data/corpora``.

    ``data/corpora`` is taken at the repository root when Calyx runs from a source checkout, and
    in the current directory otherwise.
    """
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    base = repo if (repo / "pyproject.toml").is_file() else Path.cwd()
    return base / "data" / "corpora"


def manifest() -> dict[str, Any]:
    """The parsed ``manifest.json`` of the corpora folder."""
    path = data_root() / MANIFEST_NAME
    if not path.is_file():
        raise AudioFileError(f"{path}: no corpora manifest; {_HINT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AudioFileError(f"{path}: unreadable corpora manifest ({exc}); {_HINT}") from exc
    if not isinstance(data, dict):
        raise AudioFileError(f"{path}: corpora manifest is not a JSON object; {_HINT}")
    return data


def _existing(relative: str, what: str) -> Path:
    path = data_root() / relative
    if not path.is_file():
        raise AudioFileError(f"{path}: {what} is missing; {_HINT}")
    return path


def _product(key: str, what: str) -> Any:
    entry = manifest().get(key)
    if not entry:
        raise AudioFileError(f"{data_root() / MANIFEST_NAME}: no {what} listed; {_HINT}")
    return entry


def soundfont_path() -> Path:
    """Path of the MuseScore General SoundFont (from the manifest, else the Debian default path)."""
    try:
        entry = manifest().get("soundfont") or {}
    except AudioFileError:
        entry = {}
    path = Path(entry.get("path", SOUNDFONT_DEFAULT_PATH))
    if not path.is_file():
        raise AudioFileError(
            f"{path}: SoundFont is missing; install the Debian package {SOUNDFONT_PACKAGE} or {_HINT}"
        )
    return path


def chorales() -> list[Chorale]:
    """The rendered Bach chorales, in the fixed order in which they were prepared."""
    entries = _product("chorales", "chorales")
    out = []
    for entry in entries:
        name = str(entry["name"])
        piano = entry["variants"]["piano"]
        quartet = entry["variants"]["quartet"]
        out.append(
            Chorale(
                name=name,
                piano_wav=_existing(piano["wav"], f"chorale {name} (piano)"),
                piano_mono_wav=_existing(piano["mono_wav"], f"chorale {name} (piano, mono)"),
                quartet_wav=_existing(quartet["wav"], f"chorale {name} (quartet)"),
                quartet_mono_wav=_existing(quartet["mono_wav"], f"chorale {name} (quartet, mono)"),
                piano_mid=_existing(piano["mid"], f"chorale {name} MIDI (piano)"),
                quartet_mid=_existing(quartet["mid"], f"chorale {name} MIDI (quartet)"),
                notes_csv=_existing(entry["notes_csv"], f"chorale {name} note list"),
            )
        )
    return out


def quartet_movement() -> QuartetMovement:
    """The rendered string-quartet movement (an optional product of ``make data``)."""
    entry = _product("quartet_movement", "string-quartet movement")
    name = str(entry["name"])
    variant = entry["variants"]["quartet"]
    return QuartetMovement(
        name=name,
        wav=_existing(variant["wav"], f"quartet movement {name}"),
        mono_wav=_existing(variant["mono_wav"], f"quartet movement {name} (mono)"),
        mid=_existing(variant["mid"], f"quartet movement {name} MIDI"),
        notes_csv=_existing(entry["notes_csv"], f"quartet movement {name} note list"),
    )


def speech_clip() -> Path:
    """``arctic_a0009.wav``: CMU ARCTIC speech, mono 16 kHz."""
    return _existing(_product("speech", "speech clip")["wav"], "speech clip")


def speech_labels() -> Path:
    """Phone labels of :func:`speech_clip` (HTS full-context format, times in 100 ns units)."""
    labels = _product("speech", "speech clip").get("labels", {})
    if "phone" not in labels:
        raise AudioFileError(f"{data_root() / MANIFEST_NAME}: no phone labels listed; {_HINT}")
    return _existing(labels["phone"], "speech phone labels")


# --------------------------------------------------------------------------------------------------
# MIDI: one channel and program per part, and the ground-truth note list
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteRow:
    """One note of the ground truth: times in seconds, MIDI pitch and velocity, part index."""

    onset_s: float
    offset_s: float
    pitch_midi: int
    velocity: int
    part: int


def part_channel(part: int) -> int:
    """MIDI channel of part number ``part``: channels 0, 1, … in order, skipping 9 (GM percussion)."""
    if not 0 <= part < _MAX_PARTS:
        raise ParameterError(f"part index {part} out of range; at most {_MAX_PARTS} parts fit on 16 channels")
    return part if part < _PERCUSSION_CHANNEL else part + 1


def channel_part(channel: int) -> int:
    """Inverse of :func:`part_channel`."""
    if not 0 <= channel < 16 or channel == _PERCUSSION_CHANNEL:
        raise ParameterError(f"channel {channel} carries no part; parts use channels 0-15 except 9")
    return channel if channel < _PERCUSSION_CHANNEL else channel - 1


def _is_note_on(msg: Any) -> bool:
    return bool(msg.type == "note_on" and msg.velocity > 0)


def _is_note_off(msg: Any) -> bool:
    return bool(msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0))


def _part_track(track: Any, channel: int, program: int) -> Any:
    """Copy of ``track`` on ``channel`` with one program change at its start.

    Existing program changes are dropped. Notes are made unambiguous per key: re-striking a key
    that still sounds ends the sounding note first, and a key is released only when every note
    struck on it has ended, so any synthesizer and the note-list extraction agree on the timing.
    """
    import mido

    absolute: list[tuple[int, Any]] = []
    tick = 0
    for msg in track:
        tick += msg.time
        absolute.append((tick, msg))
    end_tick = tick

    events: list[tuple[int, Any]] = [(0, mido.Message("program_change", channel=channel, program=program))]
    sounding: dict[int, int] = defaultdict(int)
    for tick, msg in absolute:
        if msg.is_meta:
            if msg.type != "end_of_track":
                events.append((tick, msg.copy(time=0)))
        elif msg.type == "program_change":
            continue
        elif _is_note_on(msg):
            if sounding[msg.note] > 0:
                events.append((tick, mido.Message("note_off", channel=channel, note=msg.note, velocity=0)))
            sounding[msg.note] += 1
            events.append((tick, msg.copy(channel=channel, time=0)))
        elif _is_note_off(msg):
            if sounding[msg.note] == 0:
                continue  # a release without a note: nothing to end
            sounding[msg.note] -= 1
            if sounding[msg.note] == 0:
                events.append((tick, mido.Message("note_off", channel=channel, note=msg.note, velocity=0)))
        elif hasattr(msg, "channel"):
            events.append((tick, msg.copy(channel=channel, time=0)))
        else:
            events.append((tick, msg.copy(time=0)))
    for note, count in sorted(sounding.items()):
        if count > 0:
            events.append((end_tick, mido.Message("note_off", channel=channel, note=note, velocity=0)))

    out = mido.MidiTrack()
    previous = 0
    for tick, msg in events:  # already in time order: built by walking the track
        out.append(msg.copy(time=tick - previous))
        previous = tick
    out.append(mido.MetaMessage("end_of_track", time=end_tick - previous))
    return out


def assign_part_channels(midi: Any, programs: Sequence[int]) -> Any:
    """Give every part of a standard MIDI file its own channel and program.

    A part is a track with at least one note; part ``i`` (in track order) goes to channel
    :func:`part_channel` ``(i)`` with program ``programs[i]`` (0-127, General MIDI numbering from 0).
    Tracks without notes (tempo map, time signatures) are kept, minus any channel messages, which
    would otherwise act on a part's channel. Timing, tempo and the notes themselves are unchanged.
    Returns a new type-1 ``mido.MidiFile``.
    """
    import mido

    if midi.type == 2:
        raise ParameterError("type-2 MIDI files (independent sequences) are not supported; use type 0 or 1")
    part_tracks = [i for i, track in enumerate(midi.tracks) if any(_is_note_on(m) for m in track)]
    if len(programs) != len(part_tracks):
        raise ParameterError(
            f"{len(programs)} programs given for a MIDI file with {len(part_tracks)} parts (tracks with notes)"
        )
    bad = [p for p in programs if not 0 <= int(p) <= 127]
    if bad:
        raise ParameterError(f"MIDI programs must lie in 0-127, got {bad}")
    out = mido.MidiFile(type=1, ticks_per_beat=midi.ticks_per_beat)
    part_of_track = {t: i for i, t in enumerate(part_tracks)}
    for t, track in enumerate(midi.tracks):
        if t in part_of_track:
            part = part_of_track[t]
            out.tracks.append(_part_track(track, part_channel(part), int(programs[part])))
        else:
            kept = mido.MidiTrack()
            carry_ticks = 0
            for msg in track:
                if msg.is_meta:
                    kept.append(msg.copy(time=msg.time + carry_ticks))
                    carry_ticks = 0
                else:
                    carry_ticks += msg.time
            out.tracks.append(kept)
    return out


def midi_notes(midi: Any) -> list[NoteRow]:
    """Notes of a MIDI file with times in seconds, following its tempo map.

    Uses the merged, tempo-aware playback order of ``mido``; a note-off ends the earliest sounding
    note of its channel and key, and notes still sounding at the end end with the file. The part
    index comes from the channel (:func:`channel_part`). Sorted by onset, then pitch, then part.
    """
    now_s = 0.0
    sounding: dict[tuple[int, int], deque[tuple[float, int]]] = defaultdict(deque)
    rows: list[NoteRow] = []
    for msg in midi:  # merged tracks, msg.time in seconds
        now_s += msg.time
        if msg.is_meta:
            continue
        if _is_note_on(msg):
            sounding[(msg.channel, msg.note)].append((now_s, int(msg.velocity)))
        elif _is_note_off(msg):
            queue = sounding.get((msg.channel, msg.note))
            if queue:
                onset_s, velocity = queue.popleft()
                rows.append(NoteRow(onset_s, now_s, int(msg.note), velocity, channel_part(msg.channel)))
    for (channel, note), queue in sounding.items():
        for onset_s, velocity in queue:
            rows.append(NoteRow(onset_s, now_s, note, velocity, channel_part(channel)))
    rows.sort(key=lambda r: (r.onset_s, r.pitch_midi, r.part))
    return rows


def notes_csv_text(rows: Sequence[NoteRow]) -> str:
    """The note list as CSV text with header ``onset_s,offset_s,pitch_midi,velocity,part``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(NOTES_CSV_HEADER)
    for r in rows:
        writer.writerow([f"{r.onset_s:.6f}", f"{r.offset_s:.6f}", r.pitch_midi, r.velocity, r.part])
    return buf.getvalue()


def read_note_rows(csv_path: str | os.PathLike[str]) -> list[NoteRow]:
    """Read a note-list CSV written by :func:`notes_csv_text`."""
    path = Path(csv_path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such note list; {_HINT}")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = tuple(next(reader, ()))
            if header != NOTES_CSV_HEADER:
                raise ValueError(f"header {','.join(header)!r}, expected {','.join(NOTES_CSV_HEADER)!r}")
            return [
                NoteRow(float(row[0]), float(row[1]), int(row[2]), int(row[3]), int(row[4]))
                for row in reader
                if row
            ]
    except (ValueError, IndexError) as exc:
        raise AudioFileError(f"{path}: not a valid note list ({exc}); {_HINT}") from exc


def load_notes(csv_path: str | os.PathLike[str]) -> NoteList:
    """Read a note-list CSV as a :class:`~calyx.metrics.NoteList` (onset, offset, pitch)."""
    rows = read_note_rows(csv_path)
    return NoteList(
        np.array([r.onset_s for r in rows], dtype=np.float64),
        np.array([r.offset_s for r in rows], dtype=np.float64),
        np.array([r.pitch_midi for r in rows], dtype=np.float64),
    )
