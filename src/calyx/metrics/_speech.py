"""Speech intelligibility and quality: PESQ (wide band) and STOI, at 16 kHz."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from calyx.errors import ParameterError

__all__ = ["pesq_wb", "stoi"]

SPEECH_RATE_HZ = 16000


def _mono_16k(x: NDArray[np.floating], sample_rate: float, name: str) -> NDArray[np.float64]:
    from scipy.signal import resample_poly

    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a.mean(axis=0)
    if a.ndim != 1 or a.size == 0:
        raise ParameterError(f"{name} must be a non-empty mono or (channels, samples) signal, got shape {a.shape}")
    if sample_rate != SPEECH_RATE_HZ:
        frac = Fraction(SPEECH_RATE_HZ / float(sample_rate)).limit_denominator(1000)
        a = resample_poly(a, frac.numerator, frac.denominator)
    return a


def _pair(ref: NDArray[np.floating], test: NDArray[np.floating], sample_rate: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r = _mono_16k(ref, sample_rate, "ref")
    t = _mono_16k(test, sample_rate, "test")
    if t.size < r.size:
        t = np.pad(t, (0, r.size - t.size))
    return r, t[: r.size]


def pesq_wb(ref: NDArray[np.floating], test: NDArray[np.floating], *, sample_rate: float) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0–4.6) after resampling both signals to 16 kHz."""
    from pesq import pesq

    r, t = _pair(ref, test, sample_rate)
    try:
        return float(pesq(SPEECH_RATE_HZ, r, t, "wb"))
    except Exception as exc:  # the pesq package raises its own types (NoUtterancesError, ...)
        raise ParameterError(
            f"PESQ cannot score this pair ({exc!s}); it needs at least one voiced utterance in the reference"
        ) from exc


def stoi(ref: NDArray[np.floating], test: NDArray[np.floating], *, sample_rate: float) -> float:
    """Short-time objective intelligibility (0–1) at 16 kHz."""
    from pystoi import stoi as _stoi

    r, t = _pair(ref, test, sample_rate)
    return float(_stoi(r, t, SPEECH_RATE_HZ, extended=False))
