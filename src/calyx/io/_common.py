"""Helpers shared by the SFZ and folder readers: note names, audio-file metadata, WAV ``smpl`` loops."""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "AudioInfo",
    "WavSamplerInfo",
    "audio_info",
    "find_file",
    "parse_note_name",
    "parse_pitch",
    "wav_sampler_info",
]

_NOTE_NAME = re.compile(r"^\s*([A-Ga-g])([#♯sb♭]?)(-?\d{1,2})\s*$")
_PITCH_CLASS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_ACCIDENTAL = {"": 0, "#": 1, "♯": 1, "s": 1, "b": -1, "♭": -1}

#: Largest number of chunks walked in a WAV file when looking for its ``smpl`` chunk.
_MAX_WAV_CHUNKS = 4096


def parse_note_name(text: str) -> int | None:
    """MIDI number of a note name such as ``c4``, ``C#4``, ``Db3``, ``a-1`` (C4 = 60), else None.

    Octaves follow scientific pitch notation with middle C = C4 = 60, the SFZ convention.
    """
    m = _NOTE_NAME.match(text)
    if m is None:
        return None
    letter, accidental, octave = m.groups()
    return 12 * (int(octave) + 1) + _PITCH_CLASS[letter.lower()] + _ACCIDENTAL[accidental]


def parse_pitch(text: str) -> float | None:
    """A pitch given as a (fractional) MIDI number or a note name; None when it is neither."""
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        note = parse_note_name(s)
        return None if note is None else float(note)
    return value if value == value and abs(value) != float("inf") else None


def find_file(base: Path, relative: str) -> Path | None:
    """Resolve ``relative`` (``/`` or ``\\`` separators) against ``base``; None when it does not exist.

    When the exact spelling is not found, each path component is matched case-insensitively, as
    libraries authored on case-insensitive file systems often need.
    """
    rel = relative.strip().replace("\\", "/")
    candidate = Path(rel) if os.path.isabs(rel) else base / rel
    if candidate.is_file():
        return candidate
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    here = Path("/") if os.path.isabs(rel) else base
    for i, part in enumerate(parts):
        if part == "..":
            here = here.parent
            continue
        nxt = here / part
        if not nxt.exists():
            try:
                matches = [e for e in os.listdir(here) if e.casefold() == part.casefold()]
            except OSError:
                return None
            if len(matches) != 1:
                return None
            nxt = here / matches[0]
        here = nxt
        if i == len(parts) - 1:
            return here if here.is_file() else None
    return None


@dataclass(frozen=True)
class AudioInfo:
    """Metadata of an audio file as libsndfile reports it."""

    n_frames: int
    sample_rate: int
    channels: int


@lru_cache(maxsize=4096)
def _audio_info_cached(path: str, mtime_ns: int, size: int) -> AudioInfo:
    import soundfile as sf

    info = sf.info(path)
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels))


def audio_info(path: Path) -> AudioInfo:
    """Frames, sample rate and channels of an audio file (cached by path, size and mtime).

    Raises whatever libsndfile raises for an unreadable file; callers wrap it with their context.
    """
    st = path.stat()
    return _audio_info_cached(str(path), st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class WavSamplerInfo:
    """The sampler (``smpl``) chunk of a WAV file: unity note, fine pitch and loops."""

    unity_note: int
    pitch_fraction: float
    loops: tuple[tuple[int, int], ...]  # (first frame, last frame inclusive)


def wav_sampler_info(path: Path) -> WavSamplerInfo | None:
    """Read the ``smpl`` chunk of a WAV file with seeks only; None when absent or not a WAV file."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            header = fh.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return None
            pos = 12
            for _ in range(_MAX_WAV_CHUNKS):
                if pos + 8 > size:
                    return None
                fh.seek(pos)
                cid, csize = struct.unpack("<4sI", fh.read(8))
                if cid == b"smpl":
                    if csize < 36 or pos + 8 + csize > size:
                        return None
                    body = fh.read(min(csize, 36 + 24 * 64))
                    unity, fraction = struct.unpack_from("<II", body, 12)
                    n_loops = struct.unpack_from("<I", body, 28)[0]
                    loops = []
                    for k in range(min(n_loops, (len(body) - 36) // 24)):
                        _, _, start, end, _, _ = struct.unpack_from("<IIIIII", body, 36 + 24 * k)
                        loops.append((int(start), int(end)))
                    return WavSamplerInfo(
                        unity_note=int(unity) if unity <= 127 else 60,
                        pitch_fraction=fraction / 2.0**32,
                        loops=tuple(loops),
                    )
                pos += 8 + csize + (csize & 1)
    except OSError:
        return None
    return None
