"""Partial tracking: amplitude, frequency and phase of every partial at every frame.

Frames are zero-phase Hann windows of ``window_length`` samples (a few periods of f0), zero-padded
to ``n_fft`` and centred on multiples of the tracking hop (the model hop, or a multiple of it for
long windows, which need fewer frames). Partial ``k`` is the largest peak of the channel-summed
power spectrum within a quarter of the partial spacing of its prediction
``k f0(t) sqrt(1 + B k^2)``. Quadratic interpolation of the log power gives a first frequency;
the phase advance of the peak between neighbouring frames refines it (unbiased for a steady
sinusoid); the amplitude is the peak magnitude divided by the window's transform at the refined
offset, and the phase is that of the centre-referenced peak bin (flat across the main lobe of a
zero-phase window). A first pass predicts with the global f0 and measures the per-frame f0
deviation (vibrato, drift); the second predicts with it. Tracking frames are then interpolated to
the model frames (phases by integrating the interpolated frequency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.typing import NDArray

__all__ = ["PartialTracks", "hann_transform", "track_partials", "tracking_window"]

FloatArray = NDArray[np.float64]

_SEARCH_SPACING = 0.25  # search +- this share of the partial spacing around the prediction
_SAMPLES_PER_CHUNK = 1 << 22  # frames x n_fft transformed at a time (bounds memory)
_ZERO_PAD = 1.5  # n_fft >= _ZERO_PAD * window_length
_TRACK_FRAMES_PER_WINDOW = 4  # tracking hop <= window_length / this (the window's envelope needs >= 4)


@dataclass(frozen=True)
class PartialTracks:
    """Per-frame partial measurements at the model frames.

    Attributes
    ----------
    amplitude : np.ndarray [shape=(n_channels, n_partials, n_frames)]
        Linear peak amplitude.
    phase : np.ndarray [shape=(n_channels, n_partials, n_frames)]
        Sine phase (radians) at the frame centre.
    f0_cents : np.ndarray [shape=(n_frames,)]
        Deviation of f0 from the global estimate, cents.
    freq_cents : np.ndarray [shape=(n_partials, n_frames)]
        Deviation of each partial from ``k f0(t) sqrt(1 + B k^2)``, cents.
    """

    amplitude: FloatArray
    phase: FloatArray
    f0_cents: FloatArray
    freq_cents: FloatArray


def tracking_window(
    *, f0_hz: float, sample_rate: float, window_periods: float, min_window_s: float, max_window_s: float
) -> tuple[int, int]:
    """(window_length, n_fft): an even length of a few periods of f0, and a power of two."""
    periods = window_periods * sample_rate / f0_hz if f0_hz > 0 else max_window_s * sample_rate
    length = float(np.clip(periods, min_window_s * sample_rate, max_window_s * sample_rate))
    window_length = max(4, 2 * round(length / 2.0))
    n_fft = 1 << math.ceil(math.log2(_ZERO_PAD * window_length + 1))
    return window_length, n_fft


def hann_transform(x_bins: NDArray[np.floating], *, period: int, n_fft: int) -> FloatArray:
    """Real transform of the symmetric Hann ``0.5 + 0.5 cos(2 pi u / period)``, ``|u| <= period / 2``.

    Evaluated ``x_bins`` bins of an ``n_fft``-point DFT away from a sinusoid; its value at 0 is the
    window's sum. This is the zero-phase tracking window (``period = window_length``) and, up to
    the phase term of the frame start, the periodic Hann of :func:`calyx.core.spectrum.stft`
    (``period = n_fft``).
    """
    m = period // 2
    nu = 2.0 * np.pi * np.asarray(x_bins, dtype=np.float64) / n_fft
    shift = 2.0 * np.pi / period

    def dirichlet(v: FloatArray) -> FloatArray:
        s = np.sin(0.5 * v)
        small = np.abs(s) < 1e-12
        return np.where(small, 2.0 * m + 1.0, np.sin((m + 0.5) * v) / np.where(small, 1.0, s))

    return 0.5 * dirichlet(nu) + 0.25 * dirichlet(nu - shift) + 0.25 * dirichlet(nu + shift)


def _window(window_length: int, n_fft: int) -> NDArray[np.float32]:
    """Symmetric Hann of ``window_length + 1`` points (zero ends) centred on index ``n_fft // 2``."""
    w = np.zeros(n_fft, dtype=np.float32)
    half = window_length // 2
    u = np.arange(-half, half + 1)
    w[n_fft // 2 + u] = 0.5 + 0.5 * np.cos(np.pi * u / half)
    return w


def _frames_spectrum(
    x: NDArray[np.float32], *, t0: int, t1: int, hop: int, window: NDArray[np.float32]
) -> NDArray[np.complex64]:
    """Centre-referenced spectra of frames ``t0..t1-1``: shape (n_channels, t1 - t0, n_bins)."""
    n_fft = window.size
    half = n_fft // 2
    n = x.shape[-1]
    start = t0 * hop - half
    stop = (t1 - 1) * hop + half
    lo, hi = max(start, 0), min(stop, n)
    seg = np.zeros((x.shape[0], stop - start), dtype=np.float32)
    seg[:, lo - start : hi - start] = x[:, lo:hi]
    frames = np.lib.stride_tricks.sliding_window_view(seg, n_fft, axis=-1)[:, ::hop][:, : t1 - t0]
    spec = scipy.fft.rfft(frames * window, axis=-1, workers=1)
    spec[..., 1::2] *= -1.0  # phase reference: the frame centre instead of its first sample
    return spec


def _peaks(
    spec: NDArray[np.complex64], pred_bin: FloatArray, half_width: int
) -> tuple[NDArray[np.int64], FloatArray, NDArray[np.complex128]]:
    """Peak bin, its interpolated fractional position and the per-channel complex value there.

    ``spec`` has shape (C, T, bins), ``pred_bin`` (K, T). Returns best (K, T), position (K, T) and
    values (C, K, T).
    """
    _n_ch, n_t, n_bins = spec.shape
    offs = np.arange(-half_width, half_width + 1)
    centre = np.clip(np.round(pred_bin).astype(np.int64), 1 + half_width, n_bins - 2 - half_width)
    t_idx = np.arange(n_t)[None, :]
    cand = spec[:, t_idx[..., None], centre[..., None] + offs]  # (C, K, T, W)
    power = np.sum(cand.real.astype(np.float64) ** 2 + cand.imag.astype(np.float64) ** 2, axis=0)
    j = np.argmax(power, axis=-1)
    best = centre + offs[j]
    tiny = 1e-30
    trio = spec[:, t_idx[..., None], best[..., None] + np.arange(-1, 2)]  # (C, K, T, 3)
    p3 = np.sum(trio.real.astype(np.float64) ** 2 + trio.imag.astype(np.float64) ** 2, axis=0)
    la, lb, lc = (np.log(p3[..., i] + tiny) for i in range(3))
    den = la - 2.0 * lb + lc
    delta = np.where(den < 0, 0.5 * (la - lc) / np.where(den < 0, den, -1.0), 0.0)
    delta = np.clip(delta, -0.5, 0.5)
    return best, best + delta, trio[..., 1].astype(np.complex128)


def _refine_frequency(z: NDArray[np.complex128], coarse_hz: FloatArray, *, hop_s: float, df: float) -> FloatArray:
    """Frequency from the phase advance of the peak between neighbouring frames (K, T)."""
    n_t = z.shape[-1]
    if n_t < 2:
        return coarse_hz
    fine = coarse_hz.copy()
    # cross-channel phase difference over two hops (centred), one hop at the ends
    lo = np.concatenate([[0], np.arange(n_t - 2), [n_t - 2]])
    hi = np.concatenate([[1], np.arange(2, n_t), [n_t - 1]])
    span = (hi - lo) * hop_s
    cross = np.sum(z[:, :, hi] * np.conj(z[:, :, lo]), axis=0)
    predicted = 2.0 * np.pi * coarse_hz * span
    measured = predicted + np.angle(cross * np.exp(-1j * predicted))
    candidate = measured / (2.0 * np.pi * span)
    ok = np.abs(candidate - coarse_hz) < 0.5 * df
    fine[ok] = candidate[ok]
    return fine


def track_partials(
    y: FloatArray,
    *,
    sample_rate: float,
    f0_hz: float,
    inharmonicity: float,
    n_partials: int,
    hop_length: int,
    window_length: int,
    n_fft: int,
) -> PartialTracks:
    """Measure ``n_partials`` partials of ``y`` (shape ``(n_channels, n_samples)``) at every frame.

    Model frames are centred on ``t * hop_length`` for ``t = 0 .. n_samples // hop_length``.
    """
    n_ch, n = y.shape
    n_frames = n // hop_length + 1
    ratio_hop = max(1, window_length // (_TRACK_FRAMES_PER_WINDOW * hop_length))
    hop = ratio_hop * hop_length
    n_track = -(-(n_frames - 1) // ratio_hop) + 1
    window = _window(window_length, n_fft)
    gain = float(window.astype(np.float64).sum())
    df = sample_rate / n_fft
    k = np.arange(1, n_partials + 1, dtype=np.float64)
    ratio = k * np.sqrt(1.0 + inharmonicity * k * k)
    half_width = max(1, math.floor(_SEARCH_SPACING * f0_hz / df))
    x32 = y.astype(np.float32)

    dev = np.zeros(n_track)
    pos = np.zeros((n_partials, n_track))
    z = np.zeros((n_ch, n_partials, n_track), dtype=np.complex128)
    per_chunk = max(1, _SAMPLES_PER_CHUNK // (n_fft * n_ch))
    for t0 in range(0, n_track, per_chunk):
        t1 = min(t0 + per_chunk, n_track)
        spec = _frames_spectrum(x32, t0=t0, t1=t1, hop=hop, window=window)
        pred = ratio[:, None] * np.full((1, t1 - t0), f0_hz / df)
        _, p1, z1 = _peaks(spec, pred, half_width)
        cents = 1200.0 * np.log2(np.maximum(p1, 1e-9) / pred)
        w = np.sum(np.abs(z1) ** 2, axis=0) * (np.abs(cents) < 1200.0 * _SEARCH_SPACING / k[:, None])
        wsum = w.sum(axis=0)
        d = np.where(wsum > 0, (w * cents).sum(axis=0) / np.where(wsum > 0, wsum, 1.0), 0.0)
        dev[t0:t1] = d
        pred = pred * 2.0 ** (d[None, :] / 1200.0)
        _, pos[:, t0:t1], z[:, :, t0:t1] = _peaks(spec, pred, half_width)

    freq = _refine_frequency(z, pos * df, hop_s=hop / sample_rate, df=df)
    offset = np.round(pos) - freq / df  # peak bin minus the refined position, in bins
    response = hann_transform(offset, period=window_length, n_fft=n_fft)
    amp = 2.0 * np.abs(z) / np.maximum(response, 1e-3 * gain)[None]
    phase = np.angle(z) + 0.5 * np.pi

    if ratio_hop > 1 and n_track >= 2:
        i = np.arange(n_frames)
        j = np.minimum(i // ratio_hop, n_track - 2)
        frac = (i - j * ratio_hop) / ratio_hop
        f_j, f_next = freq[:, j], freq[:, j + 1]
        amp = amp[..., j] * (1.0 - frac) + amp[..., j + 1] * frac
        dt = (i - j * ratio_hop) * hop_length / sample_rate
        advance = 2.0 * np.pi * (f_j * dt + (f_next - f_j) * dt * frac / 2.0)
        phase = phase[..., j] + advance[None]
        freq = f_j * (1.0 - frac) + f_next * frac
        dev = dev[j] * (1.0 - frac) + dev[j + 1] * frac
    phase = np.mod(phase, 2.0 * np.pi)
    nominal = ratio[:, None] * f0_hz * 2.0 ** (dev[None, :] / 1200.0)
    freq_cents = 1200.0 * np.log2(np.maximum(freq, 1e-9) / nominal)
    return PartialTracks(amplitude=amp, phase=phase, f0_cents=dev, freq_cents=freq_cents)
