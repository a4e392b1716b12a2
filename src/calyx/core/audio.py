"""Reading and writing audio files, and writing any output atomically.

Audio arrays are float64 with shape ``(n_channels, n_samples)`` throughout Calyx.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray

from calyx.errors import AudioFileError, ParameterError

__all__ = ["atomic_output", "read_audio", "write_audio"]

_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}


def read_audio(path: str | os.PathLike[str]) -> tuple[NDArray[np.float64], int]:
    """Read a WAV/FLAC/OGG file as float64 ``(n_channels, n_samples)`` and its sample rate in Hz.

    Raises :class:`AudioFileError` naming the file for a missing, empty, corrupt or unsupported file.
    """
    import soundfile as sf

    p = Path(path)
    if not p.is_file():
        raise AudioFileError(f"{p}: no such audio file")
    try:
        data, sr = sf.read(str(p), dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises several unrelated types for bad files
        raise AudioFileError(
            f"{p}: cannot be decoded as audio ({exc}); WAV, FLAC and Ogg Vorbis files are supported"
        ) from exc
    if data.shape[0] == 0:
        raise AudioFileError(f"{p}: contains no samples")
    return np.ascontiguousarray(data.T), int(sr)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, force: bool = False, mode: str = "wb") -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path`` and rename it over ``path`` only when the block succeeds.

    Refuses to replace an existing file unless ``force`` is true. On any error the temporary file is
    removed and ``path`` is untouched.
    """
    target = Path(path)
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass force=True (--force on the command line) to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_audio(
    path: str | os.PathLike[str],
    y: NDArray[np.floating],
    *,
    sample_rate: int,
    bit_depth: int = 16,
    force: bool = False,
) -> None:
    """Write ``y`` (``(n_channels, n_samples)`` or ``(n_samples,)``) atomically; format from the suffix.

    ``.wav`` and ``.flac`` are supported; ``bit_depth`` is 16, 24 or 32 (float, WAV only).
    Samples beyond [-1, 1] are clipped for integer formats.
    """
    import soundfile as sf

    p = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(p.suffix.lower())
    if fmt is None:
        raise ParameterError(f"{p}: unsupported output suffix {p.suffix!r}; use .wav or .flac")
    if bit_depth not in _SUBTYPES or (fmt == "FLAC" and bit_depth == 32):
        raise ParameterError(f"bit_depth {bit_depth} not supported for {fmt}; use 16 or 24 (or 32 for WAV)")
    a = np.asarray(y, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ParameterError(f"audio must have shape (n_samples,) or (n_channels, n_samples), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ParameterError(f"{p}: refusing to write NaN or infinite samples")
    if bit_depth != 32:
        a = np.clip(a, -1.0, 1.0)
    with atomic_output(p, force=force) as fh:
        sf.write(fh, a.T, int(sample_rate), format=fmt, subtype=_SUBTYPES[bit_depth])
