"""The one synthesis core: partial oscillators, filtered noise, FFT convolution, scheduling.

The offline decoder, the real-time engine and the event decoder all render through these
functions; the differentiable (torch) renderer of the event codec is tested against them.
Control signals are given either per sample or per frame (then linearly interpolated with
:func:`upsample_controls`, frame ``i`` centred on sample ``i * hop_length``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from calyx.core.spectrum import hann_window, stft
from calyx.errors import ParameterError

__all__ = [
    "band_edges_hz",
    "fft_convolve",
    "filtered_noise",
    "istft",
    "oscillator_bank",
    "schedule",
    "upsample_controls",
]

FloatArray = NDArray[np.float64]


def upsample_controls(frames: NDArray[np.floating], *, hop_length: int, n_samples: int) -> FloatArray:
    """Linearly interpolate frame-rate controls to sample rate.

    Parameters
    ----------
    frames : np.ndarray [shape=(..., n_frames)]
        Frame ``i`` is the value at sample ``i * hop_length``; values beyond the last frame hold.
    hop_length : int
    n_samples : int

    Returns
    -------
    np.ndarray [shape=(..., n_samples)]
    """
    f = np.asarray(frames, dtype=np.float64)
    if hop_length < 1 or n_samples < 0:
        raise ParameterError(f"need hop_length >= 1 and n_samples >= 0, got {hop_length}, {n_samples}")
    n_frames = f.shape[-1]
    if n_frames == 0:
        raise ParameterError("cannot upsample zero frames")
    pos = np.arange(n_samples, dtype=np.float64) / hop_length
    i0 = np.minimum(np.floor(pos).astype(np.int64), n_frames - 1)
    i1 = np.minimum(i0 + 1, n_frames - 1)
    frac = np.clip(pos - i0, 0.0, 1.0)
    return f[..., i0] * (1.0 - frac) + f[..., i1] * frac


def oscillator_bank(
    freq_hz: NDArray[np.floating],
    amplitude: NDArray[np.floating],
    *,
    sample_rate: float,
    initial_phase: NDArray[np.floating] | None = None,
    chunk: int = 16384,
) -> tuple[FloatArray, FloatArray]:
    """Sum of sinusoids with per-sample frequency and amplitude.

    ``y[n] = sum_k a_k[n] * sin(phi_k[n])`` with ``phi_k[n] = phi_k[-1] + 2 pi f_k[n] / sr`` (the
    phase advances by the current frequency, so block-by-block rendering with the returned phase
    carried over is identical to rendering in one go). Partials at or above Nyquist are silenced.

    Parameters
    ----------
    freq_hz, amplitude : np.ndarray [shape=(n_partials, n_samples)]
    sample_rate : float
    initial_phase : np.ndarray [shape=(n_partials,)], optional
        Phase in radians before the first sample (zeros by default).
    chunk : int
        Samples processed at a time, bounding temporary memory.

    Returns
    -------
    y : np.ndarray [shape=(n_samples,)]
    final_phase : np.ndarray [shape=(n_partials,)]
        Phase after the last sample, wrapped to [0, 2 pi), to pass as ``initial_phase`` next block.
    """
    f = np.asarray(freq_hz, dtype=np.float64)
    a = np.asarray(amplitude, dtype=np.float64)
    if f.ndim != 2 or f.shape != a.shape:
        raise ParameterError(f"freq_hz and amplitude must be equal (n_partials, n_samples) arrays, got {f.shape}, {a.shape}")
    n_partials, n_samples = f.shape
    phase = np.zeros(n_partials) if initial_phase is None else np.asarray(initial_phase, dtype=np.float64).copy()
    if phase.shape != (n_partials,):
        raise ParameterError(f"initial_phase must have shape ({n_partials},), got {phase.shape}")
    y = np.zeros(n_samples)
    nyquist = sample_rate / 2.0
    step = 2.0 * np.pi / sample_rate
    for start in range(0, n_samples, chunk):
        stop = min(start + chunk, n_samples)
        fc = f[:, start:stop]
        ph = phase[:, None] + step * np.cumsum(fc, axis=1)
        ac = np.where(fc < nyquist, a[:, start:stop], 0.0)
        y[start:stop] = np.einsum("kn,kn->n", ac, np.sin(ph))
        phase = np.mod(ph[:, -1], 2.0 * np.pi) if stop > start else phase
    return y, phase


def band_edges_hz(*, n_bands: int, sample_rate: float, fmin_hz: float = 20.0) -> FloatArray:
    """Edges of ``n_bands`` bands equally spaced on the ERB-rate scale from ``fmin_hz`` to Nyquist.

    Returns ``n_bands + 1`` increasing frequencies in Hz.
    """
    if n_bands < 1:
        raise ParameterError(f"n_bands must be >= 1, got {n_bands}")

    def erb(f: NDArray[np.float64] | float) -> NDArray[np.float64]:
        return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(f, dtype=np.float64))

    def erb_inv(e: NDArray[np.float64]) -> NDArray[np.float64]:
        return (10.0 ** (e / 21.4) - 1.0) / 0.00437

    e = np.linspace(erb(fmin_hz), erb(sample_rate / 2.0), n_bands + 1)
    edges = erb_inv(e)
    edges[0] = 0.0
    edges[-1] = sample_rate / 2.0
    return edges


def istft(
    spec: NDArray[np.complexfloating], *, n_fft: int, hop_length: int, n_samples: int
) -> FloatArray:
    """Inverse of :func:`calyx.core.spectrum.stft` (centred, periodic Hann) by weighted overlap-add.

    Parameters
    ----------
    spec : np.ndarray [shape=(..., 1 + n_fft // 2, n_frames)]
    n_samples : int
        Length of the signal to return.
    """
    s = np.asarray(spec)
    win = hann_window(n_fft)
    frames = np.fft.irfft(np.swapaxes(s, -1, -2), n=n_fft, axis=-1) * win
    n_frames = frames.shape[-2]
    total = n_fft + hop_length * (n_frames - 1)
    out = np.zeros((*frames.shape[:-2], total))
    norm = np.zeros(total)
    for i in range(n_frames):
        sl = slice(i * hop_length, i * hop_length + n_fft)
        out[..., sl] += frames[..., i, :]
        norm[sl] += win**2
    out /= np.where(norm > 1e-10, norm, 1.0)
    start = n_fft // 2
    y = out[..., start : start + n_samples]
    if y.shape[-1] < n_samples:
        y = np.concatenate([y, np.zeros((*y.shape[:-1], n_samples - y.shape[-1]))], axis=-1)
    return y


def filtered_noise(
    band_gains: NDArray[np.floating],
    *,
    band_edges: NDArray[np.floating],
    hop_length: int,
    n_samples: int,
    sample_rate: float,
    seed: int = 0,
    n_fft: int | None = None,
) -> FloatArray:
    """White noise shaped by per-frame band gains (RMS amplitude per band), in the STFT domain.

    Each band's gain is the RMS amplitude that band contributes to the output signal; gains are
    interpolated across frames, held flat within a band, and imposed on the STFT of deterministic
    white noise (``seed``), which is then overlap-added back.

    Parameters
    ----------
    band_gains : np.ndarray [shape=(n_bands, n_frames)]
        Frame ``i`` is centred on sample ``i * hop_length``.
    band_edges : np.ndarray [shape=(n_bands + 1,)]
        Band edges in Hz (see :func:`band_edges_hz`).

    Returns
    -------
    np.ndarray [shape=(n_samples,)]
    """
    g = np.asarray(band_gains, dtype=np.float64)
    edges = np.asarray(band_edges, dtype=np.float64)
    if g.ndim != 2 or edges.shape != (g.shape[0] + 1,):
        raise ParameterError(
            f"band_gains must be (n_bands, n_frames) with band_edges of n_bands + 1 values, got {g.shape}, {edges.shape}"
        )
    if n_samples == 0:
        return np.zeros(0)
    if n_fft is None:
        n_fft = max(2 * hop_length, 256)
    syn_hop = n_fft // 4
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(n_samples)
    spec = stft(noise, n_fft=n_fft, hop_length=syn_hop)
    n_frames = spec.shape[-1]
    # gains at the synthesis frames
    frame_pos = np.arange(n_frames) * syn_hop / hop_length
    src = np.arange(g.shape[1], dtype=np.float64)
    g_syn = np.stack([np.interp(frame_pos, src, band) for band in g])  # (n_bands, n_frames)
    freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    band_of_bin = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, g.shape[0] - 1)
    # white noise of unit variance spreads its power evenly over the bins: a band covering a
    # fraction w of the spectrum has RMS sqrt(w); rescale so that the band's RMS equals its gain
    width = np.bincount(band_of_bin, minlength=g.shape[0]).astype(np.float64)
    frac = width / width.sum()
    scale = np.where(frac > 0, 1.0 / np.sqrt(np.maximum(frac, 1e-12)), 0.0)
    spec = spec * (g_syn[band_of_bin] * scale[band_of_bin][:, None])
    return istft(spec, n_fft=n_fft, hop_length=syn_hop, n_samples=n_samples)


def fft_convolve(x: NDArray[np.floating], h: NDArray[np.floating], *, mode: str = "full") -> FloatArray:
    """Linear convolution along the last axis by overlap-add FFT (``scipy.signal.oaconvolve``).

    ``mode="full"`` returns ``len(x) + len(h) - 1`` samples; ``"same_start"`` returns ``len(x)``
    samples aligned with the start of ``x`` (a causal filter's output without its tail).
    """
    from scipy.signal import oaconvolve

    xa = np.asarray(x, dtype=np.float64)
    ha = np.asarray(h, dtype=np.float64)
    if mode not in ("full", "same_start"):
        raise ParameterError(f"mode must be 'full' or 'same_start', got {mode!r}")
    y = oaconvolve(xa, ha, mode="full", axes=-1) if xa.ndim == ha.ndim else oaconvolve(
        xa, np.broadcast_to(ha, (*xa.shape[:-1], ha.shape[-1])), mode="full", axes=-1
    )
    return y[..., : xa.shape[-1]] if mode == "same_start" else y


def schedule(
    out: NDArray[np.float64], sound: NDArray[np.floating], *, start_s: float, sample_rate: float
) -> None:
    """Add ``sound`` into ``out`` starting at ``start_s`` seconds, with sub-sample precision.

    The fractional part of the start is applied as a linear-phase delay in the frequency domain, so
    an event placed at 0.5 samples is the band-limited half-sample shift of the sound. Both arrays
    have shape ``(..., n)``; samples beyond the end of ``out`` are dropped.
    """
    pos = start_s * sample_rate
    i0 = int(np.floor(pos))
    frac = pos - i0
    s = np.asarray(sound, dtype=np.float64)
    if frac > 1e-9:
        n = s.shape[-1] + 1
        n_fft = 1 << int(np.ceil(np.log2(n)))
        spec = np.fft.rfft(s, n=n_fft, axis=-1)
        k = np.arange(spec.shape[-1])
        spec *= np.exp(-2j * np.pi * k * frac / n_fft)
        s = np.fft.irfft(spec, n=n_fft, axis=-1)[..., :n]
    lo = max(i0, 0)
    hi = min(i0 + s.shape[-1], out.shape[-1])
    if hi > lo:
        out[..., lo:hi] += s[..., lo - i0 : hi - i0]
