"""From an evaluated :class:`~calyx.analysis.model.NoteModel` to the compact table a voice reads.

A table holds, per model frame, the natural log of every partial's amplitude on both channels, the
partial frequencies in Hz and the log noise gains on the engine's noise bands, in float32 (half the
memory; ample precision for control values). It also records how to play the note beyond its end:

- *decaying* notes (piano, plucked, percussive) continue from their last usable frame with each row
  decaying at the rate it had over the last second (at least half the note's overall decay rate);
- *sustained* notes (bowed, blown) loop a segment of their steady part, cross-faded in the table so
  that the loop has no seam.

A trailing fade-out in the recording (an edited sample end) is detected and not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calyx.analysis.model import NoteModel, partial_ratios, transient_gate
from calyx.core.synthesis import band_edges_hz
from calyx.errors import ParameterError
from calyx.synth import _kernels as K

__all__ = ["NoiseBands", "PreparedTable", "classify_envelope", "prepare_table"]

FloatArray = NDArray[np.float64]

#: A decay faster than this (dB per second, after the attack) makes a note "decaying".
DECAY_THRESHOLD_DB_S = -1.5
#: Length of the cross-fade that closes a sustain loop, seconds (at most a third of the loop).
LOOP_CROSSFADE_S = 0.15
#: Fastest per-row decay used beyond the end of a decaying note, dB per second.
MAX_DECAY_DB_S = 200.0


@dataclass(frozen=True)
class NoiseBands:
    """The engine's noise bands and how they spread over the bins of its noise FFT.

    Attributes
    ----------
    edges_hz : np.ndarray [shape=(n_bands + 1,)]
    centres_hz : np.ndarray [shape=(n_bands,)]
        Geometric centres (used for the frequency-dependent release).
    n_fft : int
        Frame size of the engine's noise synthesis.
    bin_map : np.ndarray [shape=(n_fft // 2 + 1, n_bands)]
        Power of each bin per unit band power (a band of RMS ``g`` gives bins of power
        ``bin_map[:, b] * g**2`` on a unit-variance white spectrum).
    """

    edges_hz: FloatArray
    centres_hz: FloatArray
    n_fft: int
    bin_map: FloatArray

    @classmethod
    def create(cls, edges_hz: FloatArray, *, sample_rate: float, n_fft: int) -> NoiseBands:
        edges = np.asarray(edges_hz, dtype=np.float64)
        n_bins = n_fft // 2 + 1
        nyq = sample_rate / 2.0
        delta = sample_rate / n_fft
        centre = np.arange(n_bins) * delta
        lo = np.clip(centre - delta / 2.0, 0.0, nyq)
        hi = np.clip(centre + delta / 2.0, 0.0, nyq)
        width_bin = hi - lo
        width_band = np.maximum(np.diff(edges), 1e-9)
        ov = np.clip(np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1]), 0.0, None)
        bin_map = ov * nyq / (np.maximum(width_bin, 1e-12)[:, None] * width_band[None, :])
        centres = np.sqrt(np.maximum(edges[:-1], 10.0) * np.maximum(edges[1:], 10.0))
        return cls(edges, centres, int(n_fft), np.ascontiguousarray(bin_map))

    def remap_power(self, edges_hz: FloatArray) -> FloatArray | None:
        """Matrix taking band powers on ``edges_hz`` to band powers on these bands (None if equal)."""
        src = np.asarray(edges_hz, dtype=np.float64)
        if src.shape == self.edges_hz.shape and np.allclose(src, self.edges_hz, rtol=1e-9, atol=1e-6):
            return None
        ov = np.clip(
            np.minimum(self.edges_hz[1:, None], src[None, 1:]) - np.maximum(self.edges_hz[:-1, None], src[None, :-1]),
            0.0,
            None,
        )
        return ov / np.maximum(np.diff(src), 1e-9)[None, :]


@dataclass(frozen=True)
class PreparedTable:
    """What the compiled kernels need of one evaluated note (see :mod:`calyx.synth._kernels`)."""

    rows: NDArray[np.float32]
    info: FloatArray
    transient: NDArray[np.float32]
    sustained: bool

    @property
    def nbytes(self) -> int:
        return int(self.rows.nbytes + self.transient.nbytes + self.info.nbytes)


def _fit_slopes(x: FloatArray) -> FloatArray:
    """Least-squares slope of every row of ``x`` (rows, n) against 0..n-1."""
    n = x.shape[1]
    if n < 2:
        return np.zeros(x.shape[0])
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    return (x - x.mean(axis=1, keepdims=True)) @ t / float(t @ t)


def classify_envelope(energy_db: FloatArray, *, frames_per_s: float) -> tuple[bool, int, float]:
    """Decide whether a note decays, where its usable part ends, and its decay rate.

    Parameters
    ----------
    energy_db : np.ndarray [shape=(n_frames,)]
        Total power per frame, dB.
    frames_per_s : float

    Returns
    -------
    decaying : bool
        True when the level after the attack falls faster than ``DECAY_THRESHOLD_DB_S``.
    last : int
        Last frame before a trailing fade-out (an edited end), or the last frame.
    slope_db_s : float
        Decay rate over the middle of the note, dB per second (negative when decaying).
    """
    e = np.asarray(energy_db, dtype=np.float64)
    n = e.size
    peak = int(np.argmax(e))
    a = peak + int(0.3 * (n - peak))
    b = peak + int(0.8 * (n - peak))
    if b - a < 4:
        return False, n - 1, 0.0
    t = np.arange(a, b, dtype=np.float64)
    slope, intercept = np.polyfit(t, e[a:b], 1)
    line = slope * np.arange(n) + intercept
    below = np.nonzero(e[b:] < line[b:] - 6.0)[0]
    last = n - 1
    if below.size:
        last = max(b, b + int(below[0]) - int(0.05 * frames_per_s))
    slope_db_s = float(slope * frames_per_s)
    return slope_db_s < DECAY_THRESHOLD_DB_S, int(min(last, n - 1)), slope_db_s


def _resample(x: FloatArray, ratio: float) -> FloatArray:
    """Band-limited resampling of the last axis by ``ratio`` (in the frequency domain; the kept attack
    it is used for is faded at both ends, so the transform's periodicity does no harm)."""
    a = np.asarray(x, dtype=np.float64)
    n = a.shape[-1]
    if abs(ratio - 1.0) < 1e-12 or n == 0:
        return a
    n_out = max(1, round(n * ratio))
    spec = np.fft.rfft(a, axis=-1)
    out = np.zeros((*a.shape[:-1], n_out // 2 + 1), dtype=complex)
    m = min(spec.shape[-1], out.shape[-1])
    out[..., :m] = spec[..., :m]
    return np.fft.irfft(out, n=n_out, axis=-1) * (n_out / n)


def prepare_table(
    model: NoteModel,
    *,
    sample_rate: float,
    bands: NoiseBands | None,
    max_partials: int,
    sustained: bool | None = None,
) -> PreparedTable:
    """Convert an evaluated note into the engine's table.

    Parameters
    ----------
    model : NoteModel
        Mono or stereo (left/right or mid/side).
    sample_rate : float
        The engine's sample rate (the kept attack is resampled to it).
    bands : NoiseBands or None
        The engine's noise bands (None: the engine renders no noise).
    max_partials : int
        Partials beyond this are dropped.
    sustained : bool, optional
        Whether the instrument sustains (loop) or decays; detected from the note when None.
    """
    if model.n_channels not in (1, 2):
        raise ParameterError(f"the engine plays mono or stereo models, got {model.n_channels} channels")
    n_frames = model.n_frames
    k = min(model.n_partials, max_partials)
    if model.n_channels == 1:
        layout = 2
        amp = np.concatenate([model.amplitude[:, :k], model.amplitude[:, :k]], axis=0)
        noise = np.concatenate([model.noise_gain, model.noise_gain], axis=0)
    else:
        layout = 1 if model.stereo == "mid_side" else 0
        amp = model.amplitude[:, :k]
        noise = model.noise_gain
    remap = None
    n_b = 0 if bands is None else bands.edges_hz.size - 1
    if bands is not None and model.n_noise_bands:
        remap = bands.remap_power(model.noise_band_edges_hz)
        if remap is not None:
            noise = np.sqrt(np.einsum("eb,cbf->cef", remap, noise**2))
    elif n_b:
        noise = np.zeros((2, n_b, n_frames))
    if n_b == 0:
        noise = np.zeros((2, 0, n_frames))

    # envelope: decaying or sustained, usable end, loop or decay slopes
    power_frames = 0.5 * np.einsum("ckf,ckf->f", amp, amp) + np.einsum("cbf,cbf->f", noise, noise)
    energy_db = 10.0 * np.log10(np.maximum(power_frames / amp.shape[0], 1e-20))
    fps = model.sample_rate / model.hop_length
    decaying, last, slope_db_s = classify_envelope(energy_db, frames_per_s=fps)
    if sustained is not None:
        decaying = not sustained
    n_cols = last + 1

    # the table, one contiguous float32 row per frame, filled in place
    n_values = 3 * k + 2 * n_b
    table = np.empty((n_cols + 2, n_values), dtype=np.float32)
    body = table[:n_cols]
    tiny = math.exp(K.LN_FLOOR)
    for c in range(2):
        np.log(np.maximum(amp[c, :, :n_cols], tiny).T, out=body[:, c * k : (c + 1) * k])
        if n_b:
            np.log(np.maximum(noise[c, :, :n_cols], tiny).T, out=body[:, 3 * k + c * n_b : 3 * k + (c + 1) * n_b])
    if k:
        f0 = model.f0_hz * np.exp2(model.f0_cents[:n_cols] / 1200.0)
        ratios = partial_ratios(k, model.inharmonicity)
        body[:, 2 * k : 3 * k] = (ratios[:, None] * f0[None, :] * np.exp2(model.freq_cents[:k, :n_cols] / 1200.0)).T
    ln_cols = np.r_[0 : 2 * k, 3 * k : 3 * k + 2 * n_b]
    slopes = np.zeros(n_values)
    loop_start = loop_end = 0
    if decaying:
        lo = max(0, last - round(1.0 * fps), int(np.argmax(energy_db)))
        fit = _fit_slopes(body[lo:n_cols, ln_cols].T.astype(np.float64))
        overall = min(slope_db_s, DECAY_THRESHOLD_DB_S) * math.log(10.0) / 20.0 / fps  # ln per frame
        fastest = -MAX_DECAY_DB_S * math.log(10.0) / 20.0 / fps
        slopes[ln_cols] = np.clip(np.minimum(fit, 0.5 * overall), fastest, 0.0)
    else:
        peak = int(np.argmax(energy_db))
        ls = peak + int(0.3 * (last - peak))
        le = last
        if le - ls < int(0.2 * fps):
            ls = max(peak, le - int(0.2 * fps))
        if le - ls >= 4:
            xf = min(int(LOOP_CROSSFADE_S * fps), (le - ls) // 3, ls)
            if xf > 0:
                w = ((np.arange(xf) + 1.0) / (xf + 1.0))[:, None]
                body[le - xf : le] = (1.0 - w) * body[le - xf : le] + w * body[ls - xf : ls]
            loop_start, loop_end = ls, le
    table[n_cols] = slopes
    table[n_cols + 1] = 0.0
    init = np.random.default_rng(model.noise_seed).uniform(0.0, 2.0 * np.pi, model.n_partials)[:k]
    table[n_cols + 1, :k] = init
    # peak RMS amplitude (the level that sets how loudness extrapolates beyond the dynamic anchors)
    level_ln = 0.5 * math.log(max(float(np.max(power_frames)) / amp.shape[0], 1e-24))

    # kept attack, resampled to the engine's rate, with the gate that ducks the noise under it
    n_tr = model.transient.shape[1]
    if n_tr:
        ratio = sample_rate / model.sample_rate
        wave = model.transient
        if model.n_channels == 1:
            wave = np.concatenate([wave, wave], axis=0)
        elif model.stereo == "mid_side":
            wave = np.stack([wave[0] + wave[1], wave[0] - wave[1]])
        gate = transient_gate(n_tr, fade_in=model.transient_fade_in, fade_out=model.transient_fade_out)
        wave_r = _resample(wave, ratio)
        gate_r = np.clip(_resample(gate[None, :], ratio)[0], 0.0, 1.0)
        n = min(wave_r.shape[1], gate_r.size)
        transient = np.empty((3, n), dtype=np.float32)
        transient[:2] = wave_r[:, :n]
        transient[2] = gate_r[:n]
        tr_start = round(model.transient_start * ratio)
    else:
        transient = np.zeros((3, 0), dtype=np.float32)
        tr_start = 0
    info = np.zeros(K.N_TI)
    info[K.TI_FPS] = fps
    info[K.TI_NF] = n_cols
    info[K.TI_K] = k
    info[K.TI_B] = n_b
    info[K.TI_LS] = loop_start
    info[K.TI_LE] = loop_end
    info[K.TI_LAST] = n_cols - 1
    info[K.TI_LAYOUT] = layout
    info[K.TI_LEVEL] = level_ln
    info[K.TI_TR_START] = tr_start
    info[K.TI_TR_LEN] = transient.shape[1]
    info[K.TI_ONSET] = round(max(model.onset_sample, 0) * sample_rate / model.sample_rate)
    return PreparedTable(np.ascontiguousarray(table), info, np.ascontiguousarray(transient), not decaying)


def engine_noise_bands(model: NoteModel, *, sample_rate: float, n_fft: int) -> NoiseBands | None:
    """The engine's noise bands, taken from a model's (None when the model has no noise bands)."""
    if model.n_noise_bands == 0:
        return None
    edges = band_edges_hz(n_bands=model.n_noise_bands, sample_rate=model.sample_rate, fmin_hz=model.noise_fmin_hz)
    return NoiseBands.create(edges, sample_rate=sample_rate, n_fft=n_fft)
