"""Fast rendering of the note models an :class:`~calyx.hypercube.Instrument` evaluates.

A decoded hypercube note has no stored phases, no kept attack and constant partial frequencies
(``f0_cents`` and ``freq_cents`` are zero). For such a model the oscillator bank of
:func:`calyx.analysis.synthesize` (``phase="free"``: start phases drawn from the model's seed,
amplitudes linearly interpolated between frames) has a closed form per frame segment: for samples
``n = j H + m``, ``0 <= m < H``,

``y(n) = Im( sum_k [ (1 - m/H) c_k[j] + (m/H) c'_k[j] ] e^{i w_k (m + 1)} )``,
``c_k[j] = a_k[j] e^{i (w_k j H + phi_k)}``, ``c'_k[j] = a_k[j + 1] e^{i (w_k j H + phi_k)}``,

which is one real matrix product per channel, ``(n_frames, 4 K) @ (4 K, H)``: the same partials as
the reference synthesis (to float32 rounding) at a small fraction of its cost. The noise is shaped
like :func:`calyx.core.synthesis.filtered_noise` but drawn from a fixed table of random noise
spectra instead of the STFT of fresh noise (:func:`_noise_fast`): the same band levels, another
realisation. Any other model is rendered by :func:`calyx.analysis.synthesize`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from calyx.analysis.model import NoteModel
from calyx.core.spectrum import hann_window
from calyx.core.synthesis import filtered_noise

__all__ = ["is_constant_frequency", "render_model"]

FloatArray = NDArray[np.float64]

#: Frames of random noise spectra the fast noise cycles through (a prime, about 6 s at 44.1 kHz).
NOISE_TABLE_FRAMES = 1031
#: Table rows between the starting points of consecutive seeds (coprime with the table length).
_SEED_STRIDE = 389


def is_constant_frequency(model: NoteModel) -> bool:
    """Whether every partial keeps one frequency (no vibrato, glide or per-frame deviation)."""
    if model.n_partials == 0:
        return True
    if np.any(model.f0_cents != model.f0_cents[0]):
        return False
    return bool(np.all(model.freq_cents == model.freq_cents[:, :1]))


def _partials_fast(model: NoteModel) -> FloatArray:
    hop = model.hop_length
    n = model.n_samples
    n_frames = model.n_frames
    freqs = model.partial_freq_hz()[:, 0]
    keep = (freqs < model.sample_rate / 2.0) & (np.max(model.amplitude, axis=(0, 2)) > 0)
    out = np.zeros((model.n_channels, n))
    if not np.any(keep):
        return out
    w = 2.0 * np.pi * freqs[keep] / model.sample_rate  # (K,)
    # the reference synthesis draws the start phases of all partials from the model's seed
    phi = np.random.default_rng(model.noise_seed).uniform(0.0, 2.0 * np.pi, model.n_partials)[keep]
    amp = model.amplitude[:, keep, :]  # (C, K, F)
    n_seg = -(-n // hop)  # segments j = 0 .. n_seg - 1 cover samples j*hop .. j*hop + hop - 1
    m = np.arange(hop, dtype=np.float64)
    e = np.exp(1j * np.outer(w, m + 1.0))  # (K, H)
    ramp = m / hop
    # basis rows: [Im E (1-r); Re E (1-r); Im E r; Re E r] matching [Re c, Im c, Re c', Im c']
    basis = np.concatenate([e.imag * (1.0 - ramp), e.real * (1.0 - ramp), e.imag * ramp, e.real * ramp], axis=0)
    basis32 = basis.astype(np.float32)
    j = np.arange(n_seg, dtype=np.float64)
    rot = np.exp(1j * (np.outer(j * hop, w) + phi[None, :]))  # (J, K)
    idx0 = np.minimum(np.arange(n_seg), n_frames - 1)
    idx1 = np.minimum(idx0 + 1, n_frames - 1)
    for ch in range(model.n_channels):
        c0 = amp[ch][:, idx0].T * rot  # (J, K)
        c1 = amp[ch][:, idx1].T * rot
        coef = np.concatenate([c0.real, c0.imag, c1.real, c1.imag], axis=1).astype(np.float32)  # (J, 4K)
        seg = coef @ basis32  # (J, H)
        out[ch] = seg.reshape(-1)[:n]
    out[:, : model.onset_sample] = 0.0  # the oscillator bank silences the partials before the onset
    return out


@lru_cache(maxsize=4)
def _noise_table(n_fft: int) -> NDArray[np.complex64]:
    """Spectra of :data:`NOISE_TABLE_FRAMES` frames of unit-variance white noise (Hann window).

    One fixed table (seed 0) per FFT size; a model's ``noise_seed`` and the channel choose where
    in the table its frames start, so notes and channels get different (decorrelated) noise.
    """
    rng = np.random.default_rng(0)
    n_bins = n_fft // 2 + 1
    win = hann_window(n_fft)
    # twice the STFT-of-white-noise level: independent frames lose half their amplitude in the
    # window-normalised overlap-add (output variance (3/8) / 1.5 = 1/4 for a periodic Hann window)
    sigma = 2.0 * np.sqrt(np.sum(win**2) / 2.0)
    spec = (rng.standard_normal((NOISE_TABLE_FRAMES, n_bins)) + 1j * rng.standard_normal((NOISE_TABLE_FRAMES, n_bins))) * sigma
    spec[:, 0] = spec[:, 0].real * np.sqrt(2.0)
    spec[:, -1] = spec[:, -1].real * np.sqrt(2.0)
    return spec.astype(np.complex64)


def _noise_fast(model: NoteModel) -> FloatArray:
    """Shaped noise like :func:`calyx.core.synthesis.filtered_noise`, from a table of noise spectra.

    The white noise's STFT is not computed: its frames are drawn from a fixed table of random
    spectra (cycled every :data:`NOISE_TABLE_FRAMES` frames, about 6 s), shaped by the band gains
    and overlap-added; the band RMS values equal those of ``filtered_noise`` (tested).
    """
    n = model.n_samples
    n_fft = model.noise_n_fft
    syn_hop = n_fft // 4
    out = np.zeros((model.n_channels, n))
    if n_fft % 4 or not np.any(model.noise_gain > 0):
        return _noise(model) if n_fft % 4 else out
    n_frames = 1 + n // syn_hop
    n_bins = n_fft // 2 + 1
    edges = model.noise_band_edges_hz
    freqs = np.linspace(0.0, model.sample_rate / 2.0, n_bins)
    n_bands = model.n_noise_bands
    band_of_bin = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, n_bands - 1)
    width = np.bincount(band_of_bin, minlength=n_bands).astype(np.float64)
    frac_w = width / width.sum()
    scale = np.where(frac_w > 0, 1.0 / np.sqrt(np.maximum(frac_w, 1e-12)), 0.0)
    pos = np.arange(n_frames) * syn_hop / model.hop_length
    i0 = np.minimum(np.floor(pos).astype(np.int64), model.n_frames - 1)
    i1 = np.minimum(i0 + 1, model.n_frames - 1)
    fr = np.clip(pos - i0, 0.0, 1.0)
    win = hann_window(n_fft)
    # window-power normalisation of the overlap-add, as calyx.core.synthesis.istft computes it
    total = n_fft + syn_hop * (n_frames - 1)
    norm = np.zeros(total)
    w2 = (win**2).reshape(4, syn_hop)
    norm_blocks = np.zeros((n_frames + 3, syn_hop))
    for r in range(4):
        norm_blocks[r : r + n_frames] += w2[r]
    norm = norm_blocks.reshape(-1)[:total]
    inv_norm = 1.0 / np.where(norm > 1e-10, norm, 1.0)
    start = n_fft // 2
    for ch in range(model.n_channels):
        g = model.noise_gain[ch]
        g_syn = g[:, i0] * (1.0 - fr) + g[:, i1] * fr  # (B, frames)
        gain_bins = (g_syn.T * scale[None, :]).astype(np.float32)[:, band_of_bin]  # (frames, bins)
        table = _noise_table(n_fft)
        start_row = ((model.noise_seed + ch) * _SEED_STRIDE) % NOISE_TABLE_FRAMES
        rows = (start_row + np.arange(n_frames)) % NOISE_TABLE_FRAMES
        spec = table[rows] * gain_bins
        frames = scipy.fft.irfft(spec, n=n_fft, axis=-1, workers=1) * win.astype(np.float32)  # (frames, n_fft)
        blocks = np.zeros((n_frames + 3, syn_hop), dtype=np.float32)
        f4 = frames.reshape(n_frames, 4, syn_hop)
        for r in range(4):
            blocks[r : r + n_frames] += f4[:, r, :]
        y = blocks.reshape(-1)[:total] * inv_norm
        seg = y[start : start + n]
        out[ch, : seg.size] = seg
    return out


def _noise(model: NoteModel) -> FloatArray:
    out = np.zeros((model.n_channels, model.n_samples))
    if model.n_noise_bands == 0 or not np.any(model.noise_gain > 0):
        return out
    edges = model.noise_band_edges_hz
    for ch in range(model.n_channels):
        out[ch] = filtered_noise(
            model.noise_gain[ch], band_edges=edges, hop_length=model.hop_length, n_samples=model.n_samples,
            sample_rate=model.sample_rate, seed=model.noise_seed + ch, n_fft=model.noise_n_fft,
        )
    return out


def render_model(model: NoteModel) -> FloatArray:
    """Render a note model to PCM.

    Parameters
    ----------
    model : NoteModel

    Returns
    -------
    np.ndarray [shape=(n_channels, n_samples)]
        In the model's channel layout (mid/side models are converted to left/right).
    """
    simple = model.phase is None and model.transient.shape[1] == 0 and is_constant_frequency(model)
    if not simple:
        from calyx.analysis import synthesize

        return np.asarray(synthesize(model), dtype=np.float64)
    y = _partials_fast(model) + _noise_fast(model)
    if model.stereo == "mid_side":
        mid, side = y[0], y[1]
        y = np.stack([mid + side, mid - side])
    return y
