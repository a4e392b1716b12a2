"""Classic codecs run through their real command-line tools, time-aligned with the input.

Every codec round trip writes the input as a 16-bit WAV file, encodes it with the codec's own
encoder, measures the whole compressed file (headers included), decodes it with the codec's own
decoder and reads it back. The decoded signal is then brought back to the input's sample rate,
channel count and length, and its alignment with the input is verified by a cross-correlation lag
search so that quality metrics compare like with like.

Known delays, measured with the Debian tools (opus-tools 0.2 / libopus 1.3.1, vorbis-tools 1.4.2,
LAME 3.100, flac 1.4.2):

- ``opusdec`` removes the pre-skip; a residual of -2 to 0 samples at 44.1/48 kHz (12 and 24 kbps)
  and +1 to +5 samples (6 kbps, SILK; up to ~20 on a low chirp) is left, which the lag search
  corrects. At 6 kbps the waveform of high notes and chirps is not kept well enough for any lag to
  be measured (correlation ~0.3-0.6): those outputs are left as decoded and flagged unverified.
- ``oggdec`` and ``flac -d`` are sample-exact (granule positions / lossless).
- ``lame --decode`` always removes the decoder delay (529 samples) but removes the encoder delay
  (576 samples) and the end padding only when the file has a LAME/Info tag. At 32 kbps the frames are
  too small to hold the tag (LAME then omits it), so the encoder delay is trimmed here. ``lame -b 32``
  also resamples 44.1 and 48 kHz input to 16 kHz (22.05 kHz for mono 44.1 kHz); the decoded signal
  is resampled back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from calyx.errors import AudioFileError, CalyxError, ParameterError, ToolMissingError

__all__ = [
    "CODECS",
    "MAX_LAG_SAMPLES",
    "MIN_ALIGNMENT_CORRELATION",
    "MIN_BULK_LAG_CORRELATION",
    "PEAK_TOLERANCE",
    "SMALL_LAG_S",
    "TOOL_PACKAGES",
    "Codec",
    "CodecResult",
    "available_codecs",
    "measure_lag",
    "missing_tools_message",
    "require_tool",
    "run_codec",
    "run_tool",
]

#: Debian package that provides each external program.
TOOL_PACKAGES: Mapping[str, str] = MappingProxyType(
    {
        "opusenc": "opus-tools",
        "opusdec": "opus-tools",
        "oggenc": "vorbis-tools",
        "oggdec": "vorbis-tools",
        "lame": "lame",
        "flac": "flac",
        "sf3convert": "sf3convert",
    }
)

#: Largest lag, in input samples, that the alignment check searches in either direction.
MAX_LAG_SAMPLES = 4096
#: Correlation peaks within this fraction of the highest are ties, resolved towards lag 0 (see
#: :func:`measure_lag`): a pitched note correlates almost as well with itself a period away.
PEAK_TOLERANCE = 0.01
#: Smallest normalised cross-correlation at which a measured lag is trusted at all. Below it the
#: decoded waveform is too unlike the input (a low-rate codec on noise or a chirp, say) for a waveform
#: lag to mean anything, and the output is left as the known delay compensation made it.
MIN_ALIGNMENT_CORRELATION = 0.3
#: Lags up to this duration are a codec's filter group delay (a few samples for Opus) and are corrected
#: whenever the correlation passes :data:`MIN_ALIGNMENT_CORRELATION`.
SMALL_LAG_S = 0.001
#: A longer lag would be a bulk delay the known compensation missed (an encoder delay is several ms);
#: it is corrected only when the waveforms match this well, since low-rate codecs can produce spurious
#: correlation peaks a few ms away on chirps. Otherwise it is left and reported as unverified.
MIN_BULK_LAG_CORRELATION = 0.7
#: LAME's encoder delay in samples at the MP3 stream's rate (``ENCDELAY`` in LAME's sources).
LAME_ENCODER_DELAY_SAMPLES = 576
#: Sample rates at which the Opus decoder can output directly.
OPUS_SAMPLE_RATES_HZ: tuple[int, ...] = (8000, 12000, 16000, 24000, 48000)

_STDERR_TAIL_CHARS = 2000

#: Builds a command line from (input file, output file, sample rate of the input in Hz).
ArgsBuilder = Callable[[Path, Path, int], list[str]]


@dataclass(frozen=True)
class Codec:
    """One baseline codec: how to encode and decode a WAV file with its command-line tools.

    ``encode_args`` and ``decode_args`` return the argument lists (without the program) for
    ``(input path, output path, input sample rate in Hz)``. ``encoder_delay_samples`` returns how many
    leading samples of the decoded file, at the decoded rate, are encoder delay the decoder left in,
    given the compressed file.
    """

    name: str
    description: str
    suffix: str
    encoder: str
    decoder: str
    encode_args: ArgsBuilder
    decode_args: ArgsBuilder
    lossless: bool = False
    encoder_delay_samples: Callable[[Path], int] | None = None

    @property
    def tools(self) -> tuple[str, ...]:
        """The programs this codec needs, without repeats."""
        return tuple(dict.fromkeys((self.encoder, self.decoder)))


@dataclass(frozen=True)
class CodecResult:
    """The outcome of one codec round trip.

    Attributes
    ----------
    name : str
        Codec name (a key of :data:`CODECS`).
    decoded : np.ndarray [shape=(n_channels, n_samples) or (n_samples,), float64]
        The decoded signal with the input's shape and sample rate, time-aligned with the input.
    n_bytes : int
        Size of the whole compressed file in bytes, headers included.
    encode_s, decode_s : float
        Wall time of the encoder and decoder processes in seconds.
    sample_rate : int
        The input's (and ``decoded``'s) sample rate in Hz.
    decoded_sample_rate : int
        The rate at which the decoder produced audio, before resampling back (e.g. 16000 for MP3 32 kbps).
    lag_samples : int
        The lag corrected in ``decoded``, in input samples (positive: the decoder output was late):
        what the alignment check found after the known delays were removed, or 0 when it found none
        or could not trust what it found (then ``alignment_verified`` is false).
    measured_lag_samples : int
        The lag at which the cross-correlation of the mono mixdowns peaks, within ±:data:`MAX_LAG_SAMPLES`.
    lag_correlation : float
        Normalised cross-correlation at ``measured_lag_samples`` (1 for a perfect match).
    """

    name: str
    decoded: NDArray[np.float64]
    n_bytes: int
    encode_s: float
    decode_s: float
    sample_rate: int
    decoded_sample_rate: int
    lag_samples: int
    measured_lag_samples: int
    lag_correlation: float

    @property
    def duration_s(self) -> float:
        """Duration of the input in seconds."""
        return float(self.decoded.shape[-1]) / float(self.sample_rate)

    @property
    def kbps(self) -> float:
        """Bitrate in kbit/s: ``8 * n_bytes / duration / 1000``."""
        return 8.0 * self.n_bytes / self.duration_s / 1000.0

    @property
    def alignment_verified(self) -> bool:
        """Whether the lag check was conclusive and ``decoded`` now peaks in correlation at lag 0."""
        return self.lag_samples == self.measured_lag_samples


# --------------------------------------------------------------------------------------------------
# The codecs


def _opus_encode(bitrate_kbps: int) -> ArgsBuilder:
    # --padding 0: libopusenc otherwise reserves 512 bytes in the comment header for later tag
    # editing; the decoder does not need them and they would dominate short per-note files.
    def build(src: Path, dst: Path, sample_rate: int) -> list[str]:
        return ["--quiet", "--bitrate", str(bitrate_kbps), "--hard-cbr", "--padding", "0", str(src), str(dst)]

    return build


def _opus_decode(src: Path, dst: Path, sample_rate: int) -> list[str]:
    rate = sample_rate if sample_rate in OPUS_SAMPLE_RATES_HZ else 48000
    # --float: no 16-bit quantisation or dither added by the decoder.
    return ["--quiet", "--float", "--rate", str(rate), str(src), str(dst)]


def _vorbis_encode(src: Path, dst: Path, sample_rate: int) -> list[str]:
    return ["-Q", "-q", "-1", "-o", str(dst), str(src)]


def _vorbis_decode(src: Path, dst: Path, sample_rate: int) -> list[str]:
    return ["-Q", "-o", str(dst), str(src)]


def _mp3_encode(src: Path, dst: Path, sample_rate: int) -> list[str]:
    return ["--quiet", "-b", "32", str(src), str(dst)]


def _mp3_decode(src: Path, dst: Path, sample_rate: int) -> list[str]:
    return ["--quiet", "--decode", str(src), str(dst)]


def _flac_encode(src: Path, dst: Path, sample_rate: int) -> list[str]:
    # --no-padding: flac otherwise reserves an 8 KiB PADDING block the decoder does not need.
    return ["--silent", "--force", "-8", "--no-padding", "-o", str(dst), str(src)]


def _flac_decode(src: Path, dst: Path, sample_rate: int) -> list[str]:
    return ["--silent", "--force", "--decode", "-o", str(dst), str(src)]


def _mp3_has_info_tag(path: Path) -> bool:
    """Whether the first MPEG audio frame of ``path`` is a Xing/Info (LAME) tag frame."""
    data = path.read_bytes()[:65536]
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:  # ID3v2 header: syncsafe size in bytes 6..9
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        pos = 10 + size + (10 if data[5] & 0x10 else 0)
    while pos + 4 <= len(data):
        if data[pos] == 0xFF and (data[pos + 1] & 0xE0) == 0xE0:
            break
        pos += 1
    else:
        return False
    version_bits = (data[pos + 1] >> 3) & 0x03  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    mono = (data[pos + 3] >> 6) == 0x03
    if version_bits == 3:
        side_info = 17 if mono else 32
    else:
        side_info = 9 if mono else 17
    tag = data[pos + 4 + side_info : pos + 8 + side_info]
    return tag in (b"Xing", b"Info")


def _lame_encoder_delay(path: Path) -> int:
    return 0 if _mp3_has_info_tag(path) else LAME_ENCODER_DELAY_SAMPLES


def _make_registry() -> dict[str, Codec]:
    codecs: dict[str, Codec] = {}
    for kbps in (6, 12, 24):
        codecs[f"opus{kbps}"] = Codec(
            name=f"opus{kbps}",
            description=f"Opus {kbps} kbit/s hard CBR (opusenc --bitrate {kbps} --hard-cbr --padding 0)",
            suffix=".opus",
            encoder="opusenc",
            decoder="opusdec",
            encode_args=_opus_encode(kbps),
            decode_args=_opus_decode,
        )
    codecs["vorbis-q-1"] = Codec(
        name="vorbis-q-1",
        description="Ogg Vorbis quality -1 (oggenc -q -1)",
        suffix=".ogg",
        encoder="oggenc",
        decoder="oggdec",
        encode_args=_vorbis_encode,
        decode_args=_vorbis_decode,
    )
    codecs["mp3-32"] = Codec(
        name="mp3-32",
        description="MP3 32 kbit/s CBR (lame -b 32)",
        suffix=".mp3",
        encoder="lame",
        decoder="lame",
        encode_args=_mp3_encode,
        decode_args=_mp3_decode,
        encoder_delay_samples=_lame_encoder_delay,
    )
    codecs["flac"] = Codec(
        name="flac",
        description="FLAC level 8 (flac -8 --no-padding), lossless",
        suffix=".flac",
        encoder="flac",
        decoder="flac",
        encode_args=_flac_encode,
        decode_args=_flac_decode,
        lossless=True,
    )
    return codecs


#: The baseline codecs by name, in the order benchmarks list them.
CODECS: Mapping[str, Codec] = MappingProxyType(_make_registry())


# --------------------------------------------------------------------------------------------------
# Running the tools


def require_tool(program: str) -> str:
    """Return the absolute path of ``program`` on ``PATH``; raise :class:`ToolMissingError` if absent."""
    path = shutil.which(program)
    if path is None:
        package = TOOL_PACKAGES.get(program, program)
        raise ToolMissingError(f"{program} not found; install Debian package {package} (make system-deps)")
    return path


def run_tool(program: str, args: list[str]) -> float:
    """Run ``program`` with ``args`` (no shell) and return its wall time in seconds.

    Raises :class:`ToolMissingError` when the program is not installed and :class:`CalyxError`, naming
    the command and the end of its standard error, when it exits with a non-zero status.
    """
    cmd = [require_tool(program), *args]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as exc:  # e.g. found on PATH but not executable
        raise CalyxError(f"cannot run {' '.join(cmd)}: {exc}") from exc
    elapsed_s = time.perf_counter() - start
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", errors="replace").strip()
        if len(stderr) > _STDERR_TAIL_CHARS:
            stderr = "..." + stderr[-_STDERR_TAIL_CHARS:]
        raise CalyxError(
            f"{program} failed with exit status {proc.returncode}: {' '.join(cmd)}\n"
            f"stderr: {stderr or '(empty)'}"
        )
    return elapsed_s


def available_codecs() -> dict[str, bool]:
    """For each codec name in :data:`CODECS`, whether all its programs are on ``PATH``."""
    return {
        name: all(shutil.which(tool) is not None for tool in codec.tools) for name, codec in CODECS.items()
    }


def missing_tools_message() -> str:
    """A one-paragraph note for benchmark headers naming the missing programs; ``""`` when none is.

    Covers every codec in :data:`CODECS` and ``sf3convert``.
    """
    missing = [tool for tool in TOOL_PACKAGES if shutil.which(tool) is None]
    if not missing:
        return ""
    packages = sorted({TOOL_PACKAGES[t] for t in missing})
    skipped = [name for name, ok in available_codecs().items() if not ok]
    if "sf3convert" in missing:
        skipped.append("sf3")
    return (
        f"missing programs: {', '.join(missing)}; install Debian package(s) {' '.join(packages)} "
        f"(make system-deps). Baselines skipped: {', '.join(skipped)}."
    )


# --------------------------------------------------------------------------------------------------
# Alignment


def measure_lag(
    ref: NDArray[np.floating],
    test: NDArray[np.floating],
    *,
    max_lag_samples: int = MAX_LAG_SAMPLES,
    peak_tolerance: float = PEAK_TOLERANCE,
) -> tuple[int, float]:
    """Lag of ``test`` behind ``ref`` at which their cross-correlation peaks, on the mono mixdowns.

    A pitched note correlates almost equally well with itself shifted by whole periods, so the
    highest peak alone is arbitrary: of the local maxima within ``peak_tolerance`` (relative) of the
    highest, the one nearest lag 0 is returned.

    Parameters
    ----------
    ref, test : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
        Signals at the same sample rate; they may differ in length and channel count.
    max_lag_samples : int
        Lags from ``-max_lag_samples`` to ``+max_lag_samples`` are searched.
    peak_tolerance : float
        Peaks whose correlation is at least ``(1 - peak_tolerance)`` times the highest count as ties.

    Returns
    -------
    lag_samples : int
        Positive when ``test`` is late: ``test[t + lag]`` lines up with ``ref[t]``.
    correlation : float
        The cross-correlation at that lag divided by the product of the two signals' norms
        (1 for a delayed copy, 0 when either signal is silent).
    """
    from scipy.signal import correlate

    if max_lag_samples < 0:
        raise ParameterError(f"max_lag_samples must be >= 0, got {max_lag_samples}")
    if not 0.0 <= peak_tolerance < 1.0:
        raise ParameterError(f"peak_tolerance must be in [0, 1), got {peak_tolerance}")
    x = np.asarray(ref, dtype=np.float64)
    z = np.asarray(test, dtype=np.float64)
    x = x.mean(axis=0) if x.ndim == 2 else x
    z = z.mean(axis=0) if z.ndim == 2 else z
    if x.ndim != 1 or z.ndim != 1 or x.size == 0 or z.size == 0:
        raise ParameterError(
            f"ref and test must be non-empty (n_samples,) or (n_channels, n_samples) arrays, "
            f"got shapes {np.shape(ref)} and {np.shape(test)}"
        )
    norm = float(np.sqrt(np.dot(x, x) * np.dot(z, z)))
    if norm == 0.0:
        return 0, 0.0
    c = correlate(z, x, mode="full", method="fft")  # c[i] = sum_t x[t] z[t + i - (len(x) - 1)]
    lags = np.arange(-(x.size - 1), z.size)
    keep = np.abs(lags) <= max_lag_samples
    rho, lags = c[keep] / norm, lags[keep]
    best = int(np.argmax(rho))
    if rho[best] > 0.0:
        padded = np.concatenate(([-np.inf], rho, [-np.inf]))
        is_peak = (rho >= padded[:-2]) & (rho >= padded[2:])
        near_tie = np.flatnonzero(is_peak & (rho >= (1.0 - peak_tolerance) * rho[best]))
        # nearest to lag 0; between +L and -L the higher correlation
        best = int(near_tie[np.lexsort((-rho[near_tie], np.abs(lags[near_tie])))[0]])
    return int(lags[best]), float(rho[best])


def _lag_is_trusted(lag_samples: int, correlation: float, sample_rate: int) -> bool:
    """The correction policy: see :data:`MIN_ALIGNMENT_CORRELATION` and :data:`MIN_BULK_LAG_CORRELATION`."""
    if correlation < MIN_ALIGNMENT_CORRELATION:
        return False
    small_lag_samples = max(1, round(SMALL_LAG_S * sample_rate))
    return abs(lag_samples) <= small_lag_samples or correlation >= MIN_BULK_LAG_CORRELATION


def _fit_length(y: NDArray[np.float64], n_samples: int) -> NDArray[np.float64]:
    if y.shape[-1] >= n_samples:
        return y[:, :n_samples]
    return np.pad(y, ((0, 0), (0, n_samples - y.shape[-1])))


def _shift(y: NDArray[np.float64], lag_samples: int) -> NDArray[np.float64]:
    """``out[:, t] = y[:, t + lag_samples]``, zero where that index falls outside ``y``."""
    if lag_samples >= 0:
        return y[:, lag_samples:]
    return np.pad(y, ((0, 0), (-lag_samples, 0)))


def _resample(y: NDArray[np.float64], *, from_hz: int, to_hz: int) -> NDArray[np.float64]:
    if from_hz == to_hz:
        return y
    from scipy.signal import resample_poly

    ratio = Fraction(to_hz, from_hz)
    return np.asarray(resample_poly(y, ratio.numerator, ratio.denominator, axis=-1), dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# The round trip


def _validate_input(y: NDArray[np.floating], sample_rate: int) -> NDArray[np.float64]:
    a = np.asarray(y, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] not in (1, 2):
        raise ParameterError(
            f"y must have shape (n_samples,) or (n_channels, n_samples) with 1 or 2 channels, got {np.shape(y)}"
        )
    if a.shape[1] == 0:
        raise ParameterError("y is empty (0 samples)")
    if not np.all(np.isfinite(a)):
        raise ParameterError("y contains NaN or infinite samples")
    peak = float(np.max(np.abs(a)))
    if peak > 1.0:
        raise ParameterError(
            f"y peaks at {peak:.6g}, beyond the 16-bit range [-1, 1]; scale it down before encoding"
        )
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or not 1000 <= sample_rate <= 384000:
        raise ParameterError(
            f"sample_rate must be an integer number of Hz in [1000, 384000], got {sample_rate!r}"
        )
    return a


def _write_pcm16(path: Path, y: NDArray[np.float64], sample_rate: int) -> None:
    """Write ``y`` as 16-bit WAV with the scale ``round(y * 32768)`` that reading back inverts exactly."""
    import soundfile as sf

    pcm = np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)
    sf.write(str(path), pcm.T, int(sample_rate), format="WAV", subtype="PCM_16")


def _read_decoded(path: Path, program: str) -> tuple[NDArray[np.float64], int]:
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises several unrelated types for bad files
        raise AudioFileError(f"{path}: the output of {program} cannot be read ({exc})") from exc
    return np.ascontiguousarray(data.T), int(rate)


def run_codec(
    name: str,
    y: NDArray[np.floating],
    *,
    sample_rate: int,
    workdir: str | os.PathLike[str] | None = None,
) -> CodecResult:
    """Encode and decode ``y`` with the codec ``name`` and return the aligned result and its size.

    Parameters
    ----------
    name : str
        A key of :data:`CODECS`: ``"opus6"``, ``"opus12"``, ``"opus24"``, ``"vorbis-q-1"``,
        ``"mp3-32"`` or ``"flac"``.
    y : np.ndarray [shape=(n_channels, n_samples) or (n_samples,)]
        Mono or stereo audio in [-1, 1]; it is quantised to 16 bits (``round(y * 32768)``) for the
        encoder, so 16-bit-representable input goes through FLAC unchanged.
    sample_rate : int
        Sample rate of ``y`` in Hz.
    workdir : path, optional
        Folder in which a temporary subfolder holds the files; removed afterwards. Default: the
        system's temporary folder.

    Returns
    -------
    CodecResult
        ``decoded`` has ``y``'s shape and rate and lines up with it sample for sample: the decoder's
        rate is converted back, known encoder delays are removed, the residual lag found by
        :func:`measure_lag` (within ±:data:`MAX_LAG_SAMPLES`) is corrected when it can be trusted
        (up to 1 ms with correlation >= :data:`MIN_ALIGNMENT_CORRELATION`, longer with correlation
        >= :data:`MIN_BULK_LAG_CORRELATION`; otherwise ``alignment_verified`` is false), and the
        length is trimmed or zero-padded to ``y``'s.

    Raises
    ------
    ParameterError
        Unknown codec name, or ``y`` / ``sample_rate`` unusable.
    ToolMissingError
        An encoder or decoder program is not installed.
    CalyxError
        A program exits with an error or changes the channel count.
    """
    codec = CODECS.get(name)
    if codec is None:
        raise ParameterError(f"unknown codec {name!r}; choose one of {', '.join(CODECS)}")
    a = _validate_input(y, sample_rate)
    sample_rate = int(sample_rate)
    n_channels, n_samples = a.shape
    for tool in codec.tools:
        require_tool(tool)

    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"calyx-{name}-", dir=workdir) as tmp:
        src = Path(tmp) / "input.wav"
        encoded = Path(tmp) / f"encoded{codec.suffix}"
        out = Path(tmp) / "decoded.wav"
        _write_pcm16(src, a, sample_rate)
        encode_s = run_tool(codec.encoder, codec.encode_args(src, encoded, sample_rate))
        if not encoded.is_file():
            raise CalyxError(f"{codec.encoder} exited normally but wrote no {encoded.name}")
        n_bytes = encoded.stat().st_size
        decode_s = run_tool(codec.decoder, codec.decode_args(encoded, out, sample_rate))
        decoded, decoded_rate = _read_decoded(out, codec.decoder)
        delay = codec.encoder_delay_samples(encoded) if codec.encoder_delay_samples is not None else 0

    if decoded.shape[0] != n_channels:
        raise CalyxError(
            f"{codec.decoder} returned {decoded.shape[0]} channel(s) for {n_channels}-channel input ({name})"
        )
    decoded = _resample(decoded[:, delay:], from_hz=decoded_rate, to_hz=sample_rate)
    measured, corr = measure_lag(
        a, _fit_length(decoded, n_samples), max_lag_samples=min(MAX_LAG_SAMPLES, n_samples - 1)
    )
    lag = measured if _lag_is_trusted(measured, corr, sample_rate) else 0
    aligned = _fit_length(_shift(decoded, lag), n_samples)
    if np.ndim(y) == 1:
        aligned = aligned[0]
    return CodecResult(
        name=name,
        decoded=np.ascontiguousarray(aligned),
        n_bytes=int(n_bytes),
        encode_s=encode_s,
        decode_s=decode_s,
        sample_rate=sample_rate,
        decoded_sample_rate=decoded_rate,
        lag_samples=lag,
        measured_lag_samples=measured,
        lag_correlation=corr,
    )
