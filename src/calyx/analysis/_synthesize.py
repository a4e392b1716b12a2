"""Rendering a :class:`NoteModel` back to audio with the shared synthesis core."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from calyx.analysis.model import NoteModel, transient_gate
from calyx.core.synthesis import filtered_noise, oscillator_bank, upsample_controls
from calyx.errors import ParameterError

__all__ = ["render_harmonic", "synthesize"]

FloatArray = NDArray[np.float64]

_FRAMES_PER_BLOCK = 64  # frames rendered at a time (bounds the (n_partials, n_samples) temporaries)
_TWO_PI = 2.0 * np.pi


def _wrap(x: FloatArray) -> FloatArray:
    return (x + np.pi) % _TWO_PI - np.pi


def render_harmonic(
    freq_hz: FloatArray,
    amplitude: FloatArray,
    *,
    phase: FloatArray | None,
    hop_length: int,
    n_samples: int,
    sample_rate: float,
    initial_phase: FloatArray | None = None,
) -> FloatArray:
    """Sum of partials given at frame rate, phase-locked to ``phase`` at every frame centre if given.

    Frequencies and amplitudes are interpolated linearly between frames
    (:func:`calyx.core.synthesis.upsample_controls`). With ``phase``, the frequency within each hop
    gets a smooth raised-sine correction whose integral brings the oscillator exactly onto the
    measured phase at the next frame centre; without it, phases start at ``initial_phase`` (zeros
    by default) and follow the frequencies.

    Parameters
    ----------
    freq_hz, amplitude : np.ndarray [shape=(n_partials, n_frames)]
    phase : np.ndarray [shape=(n_partials, n_frames)] or None
        Sine phase at frame centres.
    hop_length, n_samples : int
    sample_rate : float
    initial_phase : np.ndarray [shape=(n_partials,)], optional
        Phase at sample 0 when ``phase`` is not given.

    Returns
    -------
    np.ndarray [shape=(n_samples,)]
    """
    n_partials, n_frames = freq_hz.shape
    out = np.zeros(n_samples)
    if n_partials == 0 or n_samples == 0:
        return out
    step = _TWO_PI / sample_rate
    if phase is not None:
        # phase that linear frequency interpolation would add over each hop, and the correction
        f_next = np.concatenate([freq_hz[:, 1:], freq_hz[:, -1:]], axis=1)
        advance = step * (hop_length * freq_hz + 0.5 * (hop_length + 1) * (f_next - freq_hz))
        error = np.zeros_like(freq_hz)
        error[:, :-1] = _wrap(phase[:, 1:] - phase[:, :-1] - advance[:, :-1])
        j = np.arange(hop_length)
        bump = np.sin(np.pi * j / hop_length) ** 2 / (0.5 * hop_length * step)  # sums to 1 / step
        start_phase = phase[:, 0] - step * freq_hz[:, 0]
    else:
        start_phase = np.zeros(n_partials) if initial_phase is None else np.asarray(initial_phase, dtype=np.float64)
    osc_phase = start_phase
    block = _FRAMES_PER_BLOCK * hop_length
    for s0 in range(0, n_samples, block):
        s1 = min(s0 + block, n_samples)
        t0 = s0 // hop_length
        t1 = min(n_frames, -(-s1 // hop_length) + 1)
        f = upsample_controls(freq_hz[:, t0:t1], hop_length=hop_length, n_samples=s1 - s0)
        a = upsample_controls(amplitude[:, t0:t1], hop_length=hop_length, n_samples=s1 - s0)
        if phase is not None:
            i = np.arange(s1 - s0)
            hop_idx = np.minimum(t0 + i // hop_length - (i % hop_length == 0), n_frames - 1)
            # sample t*hop + j (j = 1..hop) belongs to hop t; j = 0 closes hop t - 1 with weight 0
            shape = bump[i % hop_length]
            valid = hop_idx >= 0
            f = f + np.where(valid, error[:, np.maximum(hop_idx, 0)] * shape, 0.0)
        y, osc_phase = oscillator_bank(f, a, sample_rate=sample_rate, initial_phase=osc_phase)
        out[s0:s1] = y
    return out


def synthesize(
    model: NoteModel,
    *,
    phase: str = "locked",
    harmonic: bool = True,
    noise: bool = True,
    transient: bool = True,
) -> FloatArray:
    """Render a note model to audio, time-aligned with the analysed recording.

    Deterministic: the noise uses the model's seed. The partials are silent before
    ``model.onset_sample``; the kept attack (if any) replaces the noise where its gate is 1.

    Parameters
    ----------
    model : NoteModel
    phase : str
        ``"locked"``: the partials follow the stored phases at every frame (waveform-coherent with
        the recording); ``"onset"``: they start from the stored phases at the onset frame and then
        follow their frequencies (what a real-time engine that keeps only ``(n_channels,
        n_partials)`` onset phases does); ``"free"``: the start phases at sample 0 are
        ``numpy.random.default_rng(model.noise_seed).uniform(0, 2 pi, n_partials)`` in every
        channel (an engine that drops phases). Models without phases render as ``"free"``.
    harmonic, noise, transient : bool
        Components to render (all by default; the others are for inspection).

    Returns
    -------
    np.ndarray [shape=(n_channels, n_samples)]
        Left/right (or the single channel), whatever the model's channel layout.
    """
    if phase not in ("locked", "onset", "free"):
        raise ParameterError(f"phase must be 'locked', 'onset' or 'free', got {phase!r}")
    n_ch, n = model.n_channels, model.n_samples
    out = np.zeros((n_ch, n))
    gate_full = np.zeros(n)
    n_tr = model.transient.shape[1]
    if n_tr:
        g = transient_gate(n_tr, fade_in=model.transient_fade_in, fade_out=model.transient_fade_out)
        lo = max(model.transient_start, 0)
        hi = min(model.transient_start + n_tr, n)
        if hi > lo:
            gate_full[lo:hi] = g[lo - model.transient_start : hi - model.transient_start]
    mode = phase if model.phase is not None else "free"
    if harmonic and model.n_partials:
        freq = model.partial_freq_hz()
        hop = model.hop_length
        first = max(model.onset_sample, 0) // hop if mode == "onset" else 0
        step = _TWO_PI / model.sample_rate
        for c in range(n_ch):
            if mode == "free":
                init = np.random.default_rng(model.noise_seed).uniform(0.0, _TWO_PI, model.n_partials)
            elif mode == "onset":
                assert model.phase is not None
                init = model.phase[c][:, first] - step * freq[:, first]
            else:
                init = None
            h = np.zeros(n)
            h[first * hop :] = render_harmonic(
                freq[:, first:],
                model.amplitude[c][:, first:],
                phase=model.phase[c] if mode == "locked" and model.phase is not None else None,
                hop_length=hop,
                n_samples=n - first * hop,
                sample_rate=model.sample_rate,
                initial_phase=init,
            )
            h[: max(model.onset_sample, 0)] = 0.0
            out[c] += h
    if noise and model.n_noise_bands:
        edges = model.noise_band_edges_hz
        for c in range(n_ch):
            nz = filtered_noise(
                model.noise_gain[c],
                band_edges=edges,
                hop_length=model.hop_length,
                n_samples=n,
                sample_rate=model.sample_rate,
                seed=model.noise_seed + c,
                n_fft=model.noise_n_fft,
            )
            out[c] += nz * (1.0 - gate_full) if n_tr and transient else nz
    if transient and n_tr:
        lo = max(model.transient_start, 0)
        hi = min(model.transient_start + n_tr, n)
        if hi > lo:
            out[:, lo:hi] += model.transient[:, lo - model.transient_start : hi - model.transient_start]
    if model.stereo == "mid_side":
        mid, side = out[0], out[1]
        out = np.stack([mid + side, mid - side])
    return out
