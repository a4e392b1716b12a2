"""The in-memory model of an imported instrument library: notes with metadata and lazily loaded audio.

A :class:`Library` is a list of :class:`NoteSample` records. Each record carries everything the
analysis needs to place the note on the axes of the spectral hypercube (pitch, dynamic, articulation,
variation) and a *loader*: a small, picklable description of where its audio lives (a file, a byte
range, an encoding). Nothing is decoded until :meth:`NoteSample.load` is called, so a library of
many gigabytes costs only its metadata in memory, and notes can be shipped to process pools or Dask
workers, which then read their own audio.

Conventions
-----------
- Audio is float64 with shape ``(n_channels, n_samples)``, full scale at ±1.
- ``pitch_midi`` is the pitch actually recorded in the audio, as a fractional MIDI number (69.0 is
  A4 = 440 Hz): the root key minus the playback tuning the source format applies to it.
- ``dynamic`` is the centre of the velocity range normalised to 0..1:
  ``(velocity_lo + velocity_hi) / 254``.
- ``loop_start`` is the first sample of the sustain loop and ``loop_end`` the first sample after it
  (half-open, Python convention), both counted from the first sample of the note; ``None`` when the
  note does not loop.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from calyx.errors import AudioFileError, ParameterError

__all__ = [
    "AudioLoader",
    "Library",
    "LibraryAxes",
    "NoteSample",
    "OggVorbisSlice",
    "PcmSlice",
    "SoundFileSlice",
    "StackedChannels",
    "velocity_to_dynamic",
]

#: Largest number of sample points a single loader will allocate (about 6 h of 44.1 kHz audio);
#: a bigger request is a corrupt header, not a recording.
MAX_SAMPLES_PER_NOTE = 1 << 30


def velocity_to_dynamic(velocity_lo: int, velocity_hi: int) -> float:
    """Centre of a MIDI velocity range normalised to 0..1: ``(lo + hi) / 254``."""
    return (int(velocity_lo) + int(velocity_hi)) / 254.0


@runtime_checkable
class AudioLoader(Protocol):
    """Anything that returns a note's audio when called: float64 ``(n_channels, n_samples)``.

    Implementations must be picklable (plain frozen dataclasses of paths and integers) so that a
    :class:`NoteSample` can be sent to another process.
    """

    def __call__(self) -> NDArray[np.float64]: ...


def _read_exact(path: str, offset_bytes: int, n_bytes: int, what: str) -> bytes:
    """Read ``n_bytes`` at ``offset_bytes`` from ``path``; a short read or missing file is an error."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset_bytes)
            data = fh.read(n_bytes)
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot read {what} ({exc})") from exc
    if len(data) != n_bytes:
        raise AudioFileError(
            f"{path}: truncated: {what} needs {n_bytes} bytes at offset {offset_bytes}, {len(data)} available"
        )
    return data


@dataclass(frozen=True)
class SoundFileSlice:
    """Frames ``[start_frame, stop_frame)`` of an audio file readable by libsndfile (WAV, FLAC, Ogg).

    Returns all channels of the file, float64 ``(n_channels, stop_frame - start_frame)``; integer
    formats are scaled by libsndfile to ±1 (8-bit, 16-bit, 24-bit and 32-bit PCM alike).
    """

    path: str
    start_frame: int
    stop_frame: int

    def __call__(self) -> NDArray[np.float64]:
        import soundfile as sf

        if not os.path.isfile(self.path):
            raise AudioFileError(f"{self.path}: no such audio file")
        try:
            data = sf.read(
                self.path, start=self.start_frame, stop=self.stop_frame, dtype="float64", always_2d=True
            )[0]
        except Exception as exc:  # libsndfile reports corrupt data with several exception types
            raise AudioFileError(f"{self.path}: cannot be decoded as audio ({exc})") from exc
        n_expected = self.stop_frame - self.start_frame
        if data.shape[0] != n_expected:
            raise AudioFileError(
                f"{self.path}: truncated: frames {self.start_frame}..{self.stop_frame} requested, "
                f"{data.shape[0]} available"
            )
        return np.ascontiguousarray(data.T)


@dataclass(frozen=True)
class PcmSlice:
    """One channel of raw little-endian 16-bit PCM inside a file, optionally extended to 24 bits.

    Parameters
    ----------
    path : str
        The file holding the samples.
    offset_bytes : int
        File offset of the first 16-bit sample.
    n_samples : int
        Number of sample points.
    lsb_offset_bytes : int or None
        File offset of the matching low bytes (the SoundFont ``sm24`` chunk), one unsigned byte per
        sample point; ``None`` for plain 16-bit audio.

    Returns float64 ``(1, n_samples)`` scaled so that full scale is ±1 (``/ 2**15``, or ``/ 2**23``
    with the low byte).
    """

    path: str
    offset_bytes: int
    n_samples: int
    lsb_offset_bytes: int | None = None

    def __call__(self) -> NDArray[np.float64]:
        if not 0 <= self.n_samples <= MAX_SAMPLES_PER_NOTE:
            raise AudioFileError(f"{self.path}: implausible sample count {self.n_samples}")
        raw = _read_exact(self.path, self.offset_bytes, 2 * self.n_samples, "16-bit sample data")
        hi = np.frombuffer(raw, dtype="<i2").astype(np.float64)
        if self.lsb_offset_bytes is None:
            return (hi / 32768.0)[None, :]
        lsb = _read_exact(self.path, self.lsb_offset_bytes, self.n_samples, "24-bit low bytes (sm24)")
        lo = np.frombuffer(lsb, dtype=np.uint8).astype(np.float64)
        return ((hi * 256.0 + lo) / 8388608.0)[None, :]


@dataclass(frozen=True)
class OggVorbisSlice:
    """An Ogg Vorbis stream stored as a byte range inside a larger file (a SoundFont 3 sample).

    The stream is decoded with libsndfile from memory; frames ``[start_frame, start_frame +
    n_samples)`` of the decoded audio are returned as float64 ``(n_channels, n_samples)``, padded with
    zeros if the decoder delivers fewer frames than the stream's last granule position announced.
    """

    path: str
    offset_bytes: int
    n_bytes: int
    start_frame: int
    n_samples: int

    def __call__(self) -> NDArray[np.float64]:
        import soundfile as sf

        if not 0 <= self.n_samples <= MAX_SAMPLES_PER_NOTE:
            raise AudioFileError(f"{self.path}: implausible sample count {self.n_samples}")
        blob = _read_exact(self.path, self.offset_bytes, self.n_bytes, "Ogg Vorbis sample")
        try:
            data = sf.read(io.BytesIO(blob), dtype="float64", always_2d=True)[0]
        except Exception as exc:  # libsndfile reports corrupt data with several exception types
            raise AudioFileError(
                f"{self.path}: the Ogg Vorbis stream at byte {self.offset_bytes} ({self.n_bytes} bytes) "
                f"cannot be decoded ({exc})"
            ) from exc
        audio = data.T[:, self.start_frame : self.start_frame + self.n_samples]
        if audio.shape[1] < self.n_samples:
            audio = np.pad(audio, ((0, 0), (0, self.n_samples - audio.shape[1])))
        return np.ascontiguousarray(audio)


@dataclass(frozen=True)
class StackedChannels:
    """Several loaders whose channels are stacked into one multichannel note (a stereo pair).

    Parts shorter than ``n_samples`` are padded with zeros at the end and longer ones are cut, so the
    result is always float64 ``(sum of the parts' channels, n_samples)``.
    """

    parts: tuple[AudioLoader, ...]
    n_samples: int

    def __call__(self) -> NDArray[np.float64]:
        blocks = []
        for part in self.parts:
            a = part()[:, : self.n_samples]
            if a.shape[1] < self.n_samples:
                a = np.pad(a, ((0, 0), (0, self.n_samples - a.shape[1])))
            blocks.append(a)
        return np.ascontiguousarray(np.concatenate(blocks, axis=0))


@dataclass(frozen=True)
class NoteSample:
    """One recorded note of an instrument library, with its audio loaded on demand.

    Attributes
    ----------
    pitch_midi : float
        Pitch recorded in the audio, fractional MIDI number (root key minus playback tuning).
    key_lo, key_hi : int
        MIDI key range (inclusive) the source maps this note to.
    velocity_lo, velocity_hi : int
        MIDI velocity range (inclusive) the source maps this note to.
    dynamic : float
        Dynamic layer, the velocity-range centre normalised to 0..1 (see :func:`velocity_to_dynamic`).
    articulation : str
        Articulation label ("default" when the source has only one).
    variation : int
        Round-robin index, 0-based.
    sample_rate : int
        Sample rate in Hz.
    channels : int
        Number of audio channels (1 mono, 2 stereo).
    n_samples : int
        Length in sample points per channel.
    loop_start, loop_end : int or None
        Sustain loop as a half-open range of sample indices from the start of the note.
    source : str
        Provenance: the file and the name of the sample(s) or region inside it.
    loader : AudioLoader
        Picklable callable returning the audio; use :meth:`load`.
    """

    pitch_midi: float
    key_lo: int
    key_hi: int
    velocity_lo: int
    velocity_hi: int
    dynamic: float
    articulation: str
    variation: int
    sample_rate: int
    channels: int
    n_samples: int
    loop_start: int | None
    loop_end: int | None
    source: str
    loader: AudioLoader = field(repr=False)

    def __post_init__(self) -> None:
        if not (0 <= self.key_lo <= self.key_hi <= 127):
            raise ParameterError(f"{self.source}: key range {self.key_lo}..{self.key_hi} not within 0..127")
        if not (0 <= self.velocity_lo <= self.velocity_hi <= 127):
            raise ParameterError(
                f"{self.source}: velocity range {self.velocity_lo}..{self.velocity_hi} not within 0..127"
            )
        if not math.isfinite(self.pitch_midi):
            raise ParameterError(f"{self.source}: pitch_midi must be finite, got {self.pitch_midi}")
        if self.sample_rate <= 0 or self.channels <= 0 or self.n_samples <= 0:
            raise ParameterError(
                f"{self.source}: sample_rate, channels and n_samples must be positive, got "
                f"{self.sample_rate}, {self.channels}, {self.n_samples}"
            )
        if (self.loop_start is None) != (self.loop_end is None):
            raise ParameterError(f"{self.source}: give both loop_start and loop_end, or neither")
        if self.loop_start is not None and self.loop_end is not None:
            if not (0 <= self.loop_start < self.loop_end <= self.n_samples):
                raise ParameterError(
                    f"{self.source}: loop {self.loop_start}..{self.loop_end} not within 0..{self.n_samples}"
                )

    @property
    def duration_s(self) -> float:
        """Length of the note in seconds."""
        return self.n_samples / self.sample_rate

    def load(self) -> NDArray[np.float64]:
        """Read and decode the audio.

        Returns
        -------
        np.ndarray [shape=(channels, n_samples), dtype=float64]
            The note, full scale ±1.

        Raises
        ------
        AudioFileError
            When the file is missing, unreadable, or no longer matches the imported metadata.
        """
        audio = np.asarray(self.loader(), dtype=np.float64)
        if audio.shape != (self.channels, self.n_samples):
            raise AudioFileError(
                f"{self.source}: decoded audio has shape {audio.shape}, expected "
                f"({self.channels}, {self.n_samples}); has the file changed since it was imported?"
            )
        return audio


@dataclass(frozen=True)
class LibraryAxes:
    """Sorted distinct values of each axis a library spans."""

    pitches_midi: tuple[float, ...]
    dynamics: tuple[float, ...]
    articulations: tuple[str, ...]
    variations: tuple[int, ...]


@dataclass
class Library:
    """An imported instrument library: a name and its notes.

    Attributes
    ----------
    name : str
        Human-readable name (the preset, the .sfz stem, the folder name).
    notes : list of NoteSample
        The notes, in a stable order (articulation, dynamic, pitch, variation).
    source : str
        The file or folder the library was read from.
    """

    name: str
    notes: list[NoteSample]
    source: str = ""

    def __len__(self) -> int:
        return len(self.notes)

    def __iter__(self) -> Iterator[NoteSample]:
        return iter(self.notes)

    def axes(self) -> LibraryAxes:
        """Sorted distinct pitches (MIDI), dynamics (0..1), articulations and variations."""
        return LibraryAxes(
            pitches_midi=tuple(sorted({n.pitch_midi for n in self.notes})),
            dynamics=tuple(sorted({n.dynamic for n in self.notes})),
            articulations=tuple(sorted({n.articulation for n in self.notes})),
            variations=tuple(sorted({n.variation for n in self.notes})),
        )

    def total_duration_s(self) -> float:
        """Summed length of all notes in seconds (each note counted once, whatever its channels)."""
        return float(sum(n.duration_s for n in self.notes))

    def pcm16_bytes(self) -> int:
        """Size of all the audio stored as 16-bit PCM, all channels: ``sum(2 * channels * n_samples)``."""
        return int(sum(2 * n.channels * n.n_samples for n in self.notes))

    def select(
        self,
        *,
        articulation: str | None = None,
        dynamic: float | None = None,
        variation: int | None = None,
    ) -> Library:
        """A new library holding only the notes that match every given value.

        Raises
        ------
        ParameterError
            When a given value is not on the corresponding axis; the message lists the values that are.
        """
        axes = self.axes()
        notes = self.notes
        if articulation is not None:
            if articulation not in axes.articulations:
                raise ParameterError(
                    f"{self.name}: no articulation {articulation!r}; available: {list(axes.articulations)}"
                )
            notes = [n for n in notes if n.articulation == articulation]
        if dynamic is not None:
            if not any(math.isclose(dynamic, d, abs_tol=1e-9) for d in axes.dynamics):
                raise ParameterError(f"{self.name}: no dynamic {dynamic}; available: {list(axes.dynamics)}")
            notes = [n for n in notes if math.isclose(n.dynamic, dynamic, abs_tol=1e-9)]
        if variation is not None:
            if variation not in axes.variations:
                raise ParameterError(
                    f"{self.name}: no variation {variation}; available: {list(axes.variations)}"
                )
            notes = [n for n in notes if n.variation == variation]
        return replace(self, notes=list(notes))
