"""Short-time Fourier transform and mel filterbank.

Conventions follow librosa so that figures are comparable with the field: periodic Hann window,
centred frames (the signal is padded by ``n_fft // 2`` on both sides), and the Slaney mel scale
with Slaney area normalisation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from calyx.errors import ParameterError

__all__ = ["hann_window", "hz_to_mel", "mel_filterbank", "mel_to_hz", "stft"]

FloatArray = NDArray[np.float64]


@lru_cache(maxsize=32)
def hann_window(n: int) -> FloatArray:
    """Periodic Hann window of length ``n`` (the DFT-even form used for spectral analysis)."""
    if n < 1:
        raise ParameterError(f"window length must be >= 1, got {n}")
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    w.setflags(write=False)
    return w


def stft(
    y: NDArray[np.floating],
    *,
    n_fft: int,
    hop_length: int,
    center: bool = True,
    window: NDArray[np.floating] | None = None,
) -> NDArray[np.complex128]:
    """Complex STFT.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n_samples)]
        Real signal; leading axes (channels) are kept.
    n_fft : int
        FFT and window length in samples.
    hop_length : int
        Frame advance in samples.
    center : bool
        Pad ``n_fft // 2`` zeros at both ends so frame ``t`` is centred on sample ``t * hop_length``.
    window : np.ndarray [shape=(n_fft,)], optional
        Analysis window; periodic Hann by default.

    Returns
    -------
    np.ndarray [shape=(..., 1 + n_fft // 2, n_frames)]
    """
    if n_fft < 2 or hop_length < 1:
        raise ParameterError(f"need n_fft >= 2 and hop_length >= 1, got n_fft={n_fft}, hop_length={hop_length}")
    x = np.asarray(y, dtype=np.float64)
    if x.ndim == 0:
        raise ParameterError("stft needs a signal with at least one axis, got a scalar")
    win = hann_window(n_fft) if window is None else np.asarray(window, dtype=np.float64)
    if win.shape != (n_fft,):
        raise ParameterError(f"window must have shape ({n_fft},), got {win.shape}")
    if center:
        pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        x = np.pad(x, pad, mode="constant")
    n = x.shape[-1]
    if n < n_fft:
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n_fft - n)], mode="constant")
        n = n_fft
    n_frames = 1 + (n - n_fft) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[..., ::hop_length, :][..., :n_frames, :]
    spec = np.fft.rfft(frames * win, axis=-1)
    return np.swapaxes(spec, -1, -2)


def hz_to_mel(f_hz: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """Slaney mel scale: linear below 1 kHz (3 mel per 200 Hz), logarithmic above."""
    f = np.asarray(f_hz, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mel = f / f_sp
    above = f >= min_log_hz
    return np.where(above, min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, mel)


def mel_to_hz(mel: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=32)
def mel_filterbank(
    *, sample_rate: float, n_fft: int, n_mels: int, fmin_hz: float = 0.0, fmax_hz: float | None = None
) -> FloatArray:
    """Slaney-normalised triangular mel filterbank, shape ``(n_mels, 1 + n_fft // 2)``.

    Matches ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)`` (``htk=False``,
    ``norm="slaney"``).
    """
    if fmax_hz is None:
        fmax_hz = sample_rate / 2.0
    if not (0.0 <= fmin_hz < fmax_hz <= sample_rate / 2.0 + 1e-9):
        raise ParameterError(
            f"need 0 <= fmin_hz < fmax_hz <= sample_rate/2, got fmin_hz={fmin_hz}, fmax_hz={fmax_hz}, "
            f"sample_rate={sample_rate}"
        )
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    mel_pts = np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n_mels + 2)
    hz_pts = mel_to_hz(mel_pts)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (hz_pts[2 : n_mels + 2] - hz_pts[:n_mels])
    weights *= enorm[:, None]
    weights.setflags(write=False)
    return weights
