"""Matching pursuit on the residual spectrogram: pick, fit, render, subtract, repeat.

The residual is kept as power spectrograms (the input's minus the sum of the rendered events'),
so events add as energies and a slightly wrong phase never leaves energy behind. Each step picks
the onset candidate whose residual gained the most energy (the energy after the onset minus the
energy before it), finds the fundamental that best explains that new energy with a harmonic
template, fits the event's parameters in closed form or by least squares, renders it, subtracts
its spectrogram, and repeats; chords come out as several events at one onset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from calyx.core.spectrum import hann_window, mel_filterbank, stft
from calyx.events.params import (
    DECAY_ANCHORS_HZ,
    N_PARTIALS,
    N_SHAPE,
    clip_params,
    default_params,
    hz_to_midi,
    midi_to_hz,
    param_index,
)
from calyx.events.render import (
    _I,
    event_lengths,
    placement,
    render_event,
    top_frequency_hz,
)

__all__ = ["PursuitSettings", "PursuitState", "detect_onsets", "fft_size", "onset_after_silence", "pursue"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PursuitSettings:
    """Knobs of the pursuit (defaults suit music at 22-48 kHz).

    ``window_s`` / ``onset_window_s``: analysis and onset-detection windows (rounded to powers of two
    samples); ``gap_s``: the new energy of an onset compares the frames this far after and before it;
    ``stop_energy_ratio``: stop when the best onset's new energy falls this far below the first
    one's; ``min_explained``: a further event at an onset must account for this share of its new
    energy; ``shape_ridge``: regularisation of the spectral-shape fit.
    """

    window_s: float = 0.093
    onset_window_s: float = 0.0232
    min_pitch_midi: float = 28.0
    max_pitch_midi: float = 100.0
    pitch_step: float = 0.1
    max_harmonics: int = 24
    max_events: int = 400
    max_events_per_onset: int = 6
    stop_energy_ratio: float = 10.0 ** (-32.0 / 10.0)
    min_explained: float = 0.12
    gap_s: float = 0.05
    onset_bias_s: float = 0.0
    analysis_f_max_hz: float = 10000.0
    shape_ridge: float = 2.0


@dataclass
class PursuitState:
    """The residual and what the pursuit decided so far."""

    sample_rate: int
    n_samples: int
    power: FloatArray  # input power spectrogram (n_bins, n_frames)
    model: FloatArray  # sum of the events' power spectrograms
    residual: FloatArray  # max(power - model, 0), kept up to date by add_event_power
    times_s: list[float] = field(default_factory=list)
    params: list[FloatArray] = field(default_factory=list)
    onset_of_event: list[int] = field(default_factory=list)

    def add_event_power(self, first_frame: int, block: FloatArray) -> None:
        """Add an event's power spectrogram (starting at ``first_frame``) to the model."""
        sl = slice(first_frame, first_frame + block.shape[1])
        self.model[:, sl] += block
        self.residual[:, sl] = np.maximum(self.power[:, sl] - self.model[:, sl], 0.0)


# --------------------------------------------------------------------------------------------------
# Onset candidates


def fft_size(seconds: float, sample_rate: float) -> int:
    """The power of two nearest to ``seconds * sample_rate`` (at least 64)."""
    return int(2 ** max(6, round(np.log2(max(seconds * sample_rate, 1.0)))))


def onset_strength(
    y: NDArray[np.floating], *, sample_rate: float, n_fft: int, hop_length: int, lag: int = 2
) -> FloatArray:
    """Positive log-mel spectral flux (one value per frame, frame ``t`` centred on ``t * hop``)."""
    spec = np.abs(stft(y, n_fft=n_fft, hop_length=hop_length))
    fb = mel_filterbank(sample_rate=float(sample_rate), n_fft=n_fft, n_mels=64)
    mel = fb @ spec**2
    ref = max(float(np.max(mel)), 1e-20)
    log_mel = 10.0 * np.log10(np.maximum(mel, ref * 1e-8))
    flux = np.zeros(log_mel.shape[1])
    flux[lag:] = np.sum(np.maximum(log_mel[:, lag:] - log_mel[:, :-lag], 0.0), axis=0)
    return flux


def detect_onsets(
    y: NDArray[np.floating],
    *,
    sample_rate: float,
    n_fft: int = 1024,
    hop_length: int = 128,
    min_gap_s: float = 0.03,
    threshold: float = 0.06,
) -> tuple[FloatArray, FloatArray]:
    """Onset candidates: peaks of the positive spectral flux.

    A frame is a candidate when its flux is the largest within ``min_gap_s`` on either side and
    exceeds ``threshold`` times the largest flux plus the local mean over 0.2 s.

    Returns
    -------
    times_s : np.ndarray [shape=(n_onsets,)]
        Candidate onset times (the start of the rise).
    strength : np.ndarray [shape=(n_onsets,)]
        Flux at each candidate.
    """
    flux = onset_strength(y, sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length)
    if flux.size == 0 or np.max(flux) <= 0.0:
        return np.zeros(0), np.zeros(0)
    w = max(1, round(min_gap_s * sample_rate / hop_length))
    w_mean = max(1, round(0.1 * sample_rate / hop_length))
    padded = np.pad(flux, w, mode="constant")
    local_max = np.lib.stride_tricks.sliding_window_view(padded, 2 * w + 1).max(axis=1)
    kernel = np.ones(2 * w_mean + 1) / (2 * w_mean + 1)
    local_mean = np.convolve(flux, kernel, mode="same")
    peaks = np.nonzero((flux >= local_max) & (flux > threshold * np.max(flux) + local_mean) & (flux > 0))[0]
    # calibrated on struck notes, with sharp and gradual attacks alike: a flux peak at frame t
    # (which compares frames t and t - 2) means an onset about 0.21 window before frame t - 2
    times = (peaks * hop_length - 0.21 * n_fft + 2 * hop_length) / sample_rate
    return np.maximum(times, 0.0), flux[peaks]


def onset_after_silence(
    y: NDArray[np.floating], time_s: float, *, sample_rate: float, quiet_db: float = 40.0
) -> float:
    """The first sample of a sound that starts out of (near) silence, near ``time_s``.

    When the 25 ms before ``time_s - 15 ms`` are at least ``quiet_db`` below the 40 ms after
    ``time_s``, the onset is the first sample within [-15, +20] ms whose magnitude exceeds the
    later level less 30 dB; otherwise ``time_s`` is kept (the flux estimate is the better one over
    other sounds).
    """
    sr = float(sample_rate)
    x = np.asarray(y, dtype=np.float64)

    def rms(a_s: float, b_s: float) -> float:
        a, b = max(0, int(a_s * sr)), min(x.size, int(b_s * sr))
        return float(np.sqrt(np.mean(x[a:b] ** 2))) if b > a else 0.0

    level = rms(time_s, time_s + 0.04)
    if level <= 0.0 or rms(time_s - 0.04, time_s - 0.015) > level * 10.0 ** (-quiet_db / 20.0):
        return time_s
    a, b = max(0, int((time_s - 0.015) * sr)), min(x.size, int((time_s + 0.02) * sr))
    loud = np.nonzero(np.abs(x[a:b]) > level * 10.0 ** (-30.0 / 20.0))[0]
    return (a + int(loud[0])) / sr if loud.size else time_s


# --------------------------------------------------------------------------------------------------
# Harmonic templates


def _whiten(mag: FloatArray, freqs: NDArray[np.floating], *, nu: float = 0.33) -> FloatArray:
    """Klapuri's spectral whitening: divide by a smooth band envelope raised to ``1 - nu``."""
    centres = 229.0 * (10.0 ** (np.linspace(np.log10(1 + 50 / 229.0), np.log10(1 + 8000 / 229.0), 30)) - 1.0)
    gains = np.empty(centres.size)
    for i, c in enumerate(centres):
        lo = centres[i - 1] if i > 0 else 0.0
        hi = centres[i + 1] if i + 1 < centres.size else freqs[-1]
        w = np.clip(np.minimum((freqs - lo) / max(c - lo, 1e-9), (hi - freqs) / max(hi - c, 1e-9)), 0.0, None)
        sigma = np.sqrt(np.sum(w * mag**2) / max(np.sum(w), 1e-9))
        gains[i] = (sigma + 1e-12) ** (nu - 1.0)
    return mag * np.interp(freqs, centres, gains)


def _harmonic_freqs(f0_hz: FloatArray, b: float, n_harm: int) -> FloatArray:
    k = np.arange(1, n_harm + 1, dtype=np.float64)
    return np.asarray(f0_hz)[:, None] * k * np.sqrt(1.0 + b * k**2)


def salience(
    mag: FloatArray,
    *,
    sample_rate: float,
    n_fft: int,
    pitches_midi: FloatArray,
    max_harmonics: int,
    f_max_hz: float,
    inharmonicities: tuple[float, ...] = (0.0, 1e-4, 4e-4),
) -> tuple[FloatArray, FloatArray]:
    """Weighted harmonic sums of a (whitened) magnitude spectrum, for every candidate pitch.

    ``s(f0) = sum_k g_k max_{|f - f_k| < tol} |X(f)|`` with ``g_k = (f0 + 52) / (k f0 + 320)``
    (Klapuri 2006), maximised over a few inharmonicities.

    Returns the salience and the best inharmonicity per pitch.
    """
    f0 = midi_to_hz(pitches_midi)
    bin_hz = sample_rate / n_fft
    # max over +-1 bin makes the lookup tolerant of a partial between bins
    m = mag.copy()
    m[1:] = np.maximum(m[1:], mag[:-1])
    m[:-1] = np.maximum(m[:-1], mag[1:])
    best = np.full(f0.size, -np.inf)
    best_b = np.zeros(f0.size)
    k = np.arange(1, max_harmonics + 1, dtype=np.float64)
    g = (f0[:, None] + 52.0) / (k[None, :] * f0[:, None] + 320.0)
    for b in inharmonicities:
        fk = _harmonic_freqs(f0, b, max_harmonics)
        ok = fk < f_max_hz
        idx = np.clip(np.rint(fk / bin_hz).astype(np.int64), 0, mag.size - 1)
        s = np.sum(np.where(ok, g * m[idx], 0.0), axis=1)
        better = s > best
        best = np.where(better, s, best)
        best_b = np.where(better, b, best_b)
    return best, best_b


def _peak(mag_db: FloatArray, f_hz: float, bin_hz: float, tol_bins: float) -> tuple[float, float]:
    """Frequency and level (dB) of the largest peak within ``tol_bins`` of ``f_hz`` (parabolic)."""
    c = f_hz / bin_hz
    lo = max(1, int(np.floor(c - tol_bins)))
    hi = min(mag_db.size - 2, int(np.ceil(c + tol_bins)))
    if hi < lo:
        return f_hz, -np.inf
    i = lo + int(np.argmax(mag_db[lo : hi + 1]))
    a, b, cc = mag_db[i - 1], mag_db[i], mag_db[i + 1]
    den = a - 2 * b + cc
    delta = 0.5 * (a - cc) / den if den < 0 else 0.0
    delta = float(np.clip(delta, -0.5, 0.5))
    # a Hann main lobe loses at most 1.42 dB between bins; more is an artefact of a ragged spectrum
    gain = float(np.clip(-0.25 * (a - cc) * delta, 0.0, 1.5))
    return (i + delta) * bin_hz, float(b + gain)


# --------------------------------------------------------------------------------------------------
# Fitting one event


def _shape_basis(k: FloatArray) -> FloatArray:
    log2k = np.log2(k)
    cols = [log2k] + [np.cos(np.pi * j * log2k / np.log2(N_PARTIALS)) for j in range(1, N_SHAPE + 1)]
    return np.stack(cols, axis=1)


def fit_shape(k: FloatArray, level_db: FloatArray, weight: FloatArray, *, ridge: float = 0.5) -> FloatArray:
    """Least-squares tilt and cosine coefficients for partial levels (dB) at indices ``k``.

    Returns ``[offset_db, tilt, c_1 .. c_N_SHAPE]``.
    """
    basis = np.concatenate([np.ones((k.size, 1)), _shape_basis(k)], axis=1)
    w = np.sqrt(np.maximum(weight, 0.0))
    a = basis * w[:, None]
    rhs = level_db * w
    reg = np.diag([0.0, 0.01] + [ridge] * N_SHAPE)
    coef = np.linalg.solve(a.T @ a + reg, a.T @ rhs)
    return np.asarray(coef)


def _fit_anchors(log2_f: FloatArray, log_t60: FloatArray, weight: FloatArray, prior: FloatArray) -> FloatArray:
    """Anchor values (log10 T60) whose interpolation fits ``log_t60`` at ``log2_f``, pulled to ``prior``."""
    x0 = np.log2(DECAY_ANCHORS_HZ[0])
    dx = np.log2(DECAY_ANCHORS_HZ[1]) - x0
    n_a = len(DECAY_ANCHORS_HZ)
    u = np.clip((log2_f - x0) / dx, 0.0, n_a - 1.0)
    i0 = np.clip(np.floor(u), 0, n_a - 2).astype(np.int64)
    frac = u - i0
    basis = np.zeros((u.size, n_a))
    basis[np.arange(u.size), i0] = 1.0 - frac
    basis[np.arange(u.size), i0 + 1] += frac
    w = np.maximum(weight, 0.0)
    lam = 0.3
    lhs = basis.T @ (basis * w[:, None]) + lam * np.eye(n_a)
    # neighbouring anchors should not differ wildly
    dmat = np.diff(np.eye(n_a), axis=0)
    lhs += 0.2 * dmat.T @ dmat
    rhs = basis.T @ (w * log_t60) + lam * prior
    return np.asarray(np.linalg.solve(lhs, rhs))


def default_t60_log10(pitch_midi: float) -> FloatArray:
    """A generic starting point for the decay anchors: long low partials, shorter high ones."""
    base = 1.0 - 0.02 * (pitch_midi - 40.0)
    return np.clip(np.array([base, base - 0.2, base - 0.5, base - 0.9]), -1.5, 1.3)


class _Analysis:
    """Spectrogram geometry shared by the pursuit steps."""

    def __init__(self, sample_rate: int, settings: PursuitSettings) -> None:
        self.sr = float(sample_rate)
        self.s = settings
        self.n_fft = fft_size(settings.window_s, self.sr)
        self.hop = self.n_fft // 16
        self.bin_hz = self.sr / self.n_fft
        self.freqs = np.arange(self.n_fft // 2 + 1) * self.bin_hz
        # a sinusoid of amplitude A peaks at A * sum(window) / 2 in the magnitude spectrum
        self.amp_scale = float(np.sum(hann_window(self.n_fft))) / 2.0

    def frame_of(self, time_s: float) -> int:
        return int(np.rint(time_s * self.sr / self.hop))

    def event_power(self, y_event: FloatArray, i0: int, n_frames: int) -> tuple[int, FloatArray]:
        """Power spectrogram of an event placed at sample ``i0``, on the global frame grid.

        Returns the first frame index and the ``(n_bins, n_covered)`` block.
        """
        half = self.n_fft // 2
        f_lo = max(0, (i0 - half) // self.hop)
        f_hi = min(n_frames, (i0 + y_event.size + half) // self.hop + 2)
        if f_hi <= f_lo:
            return f_lo, np.zeros((self.n_fft // 2 + 1, 0))
        seg_start = f_lo * self.hop - half
        seg = np.zeros((f_hi - f_lo - 1) * self.hop + self.n_fft)
        a = i0 - seg_start
        lo = max(a, 0)
        hi = min(a + y_event.size, seg.size)
        if hi > lo:
            seg[lo:hi] = y_event[lo - a : hi - a]
        spec = stft(seg, n_fft=self.n_fft, hop_length=self.hop, center=False)
        return f_lo, np.abs(spec[:, : f_hi - f_lo]) ** 2


def _fit_event(
    an: _Analysis,
    state: PursuitState,
    time_s: float,
    pitch_midi: float,
    b_guess: float,
    new_mag: FloatArray,
    next_onsets: FloatArray,
) -> tuple[FloatArray, float] | None:
    """Closed-form / least-squares parameters of the event at ``time_s`` with fundamental ``pitch_midi``.

    ``new_mag`` is the magnitude of the energy that appeared at the onset. Returns the parameter
    row and the share of the new energy its template explains, or None if nothing fits.
    """
    s = an.s
    sr = an.sr
    f0 = float(midi_to_hz(pitch_midi))
    n_harm = int(min(N_PARTIALS, max(1, np.floor(min(s.analysis_f_max_hz, top_frequency_hz(sr)) / f0))))
    k = np.arange(1, n_harm + 1, dtype=np.float64)
    new_db = 20.0 * np.log10(np.maximum(new_mag, 1e-5 * max(float(np.max(new_mag)), 1e-30)))
    # 1. partial frequencies: refine f0 and B from the peaks of the new energy
    fk_guess = k * f0 * np.sqrt(1.0 + b_guess * k**2)
    tol = np.maximum(1.5, 0.03 * fk_guess / an.bin_hz)
    peaks = [_peak(new_db, f, an.bin_hz, t) for f, t in zip(fk_guess, np.minimum(tol, 0.4 * f0 / an.bin_hz), strict=True)]
    pf = np.array([p[0] for p in peaks])
    pdb = np.array([p[1] for p in peaks])
    floor_db = float(np.max(pdb)) - 45.0
    strong = pdb > floor_db
    f0_fit, b_fit = f0, b_guess
    if np.sum(strong) >= 3:
        kk = k[strong]
        yv = (pf[strong] / kk) ** 2
        w = 10.0 ** ((pdb[strong] - np.max(pdb)) / 20.0)
        a = np.stack([np.ones_like(kk), kk**2], axis=1) * w[:, None]
        sol, *_ = np.linalg.lstsq(a, yv * w, rcond=None)
        if sol[0] > 0:
            f0_c = float(np.sqrt(sol[0]))
            b_c = float(sol[1] / sol[0])
            if abs(12 * np.log2(f0_c / f0)) < 0.6:
                f0_fit = f0_c
                b_fit = float(np.clip(b_c, 1e-6, 5e-3))
    elif np.sum(strong) >= 1:
        kk = k[strong][0]
        f0_c = float(pf[strong][0] / (kk * np.sqrt(1 + b_guess * kk**2)))
        if abs(12 * np.log2(f0_c / f0)) < 0.6:
            f0_fit = f0_c
    fk = k * f0_fit * np.sqrt(1.0 + b_fit * k**2)

    # 2. trajectories of the partials in the residual after the onset
    res = state.residual
    n_frames = res.shape[1]
    j0 = an.frame_of(time_s + s.gap_s)
    if j0 >= n_frames:
        return None
    later = next_onsets[next_onsets > time_s + 0.02]
    horizon_s = min(3.0, (state.n_samples / sr) - time_s)
    j1 = min(n_frames, an.frame_of(time_s + horizon_s) + 1)
    bins = np.clip(np.rint(fk / an.bin_hz).astype(np.int64), 1, res.shape[0] - 2)
    track = np.sqrt(np.maximum(np.maximum(res[bins, j0:j1], res[bins - 1, j0:j1]), res[bins + 1, j0:j1]))
    track_db = 20.0 * np.log10(track + 1e-12)
    t_track = (np.arange(j0, j1) * an.hop) / sr - time_s

    # 3. the damper: when the strongest partials' energy falls clearly below its initial decay
    amp0_db = pdb - 20.0 * np.log10(an.amp_scale)
    order = np.argsort(amp0_db)[::-1][: min(6, n_harm)]
    total_db = 10.0 * np.log10(np.sum(10.0 ** (track_db[order] / 10.0), axis=0) + 1e-24)
    duration = horizon_s
    n_fit = max(3, round(0.15 * sr / an.hop))
    if total_db.size > n_fit + 2:
        slope0, icpt0 = np.polyfit(t_track[:n_fit], total_db[:n_fit], 1)
        slope0 = min(slope0, 0.0)
        line = icpt0 + slope0 * t_track
        below = np.nonzero(total_db < line - 10.0)[0]
        below = below[below >= n_fit // 2]
        if below.size:
            # the 4096-sample window sees a drop about half a window before its centre
            duration = max(0.03, t_track[below[0]] - 0.5 * an.n_fft / sr)
    # a piano-like part rarely holds a note far past the next onset: a cap that refinement can undo
    following = later[later > time_s + 0.05]
    if following.size:
        duration = min(duration, float(following[0] - time_s) + 0.2)
    duration = float(np.clip(duration, 0.03, 30.0))

    # 4. decays: slope of each partial before the damper
    t_end = duration - 0.5 * an.n_fft / sr
    use = t_track <= max(t_end, t_track[min(2, t_track.size - 1)])
    log_t60 = np.zeros(n_harm)
    wts = np.zeros(n_harm)
    for i in range(n_harm):
        tr = track_db[i, use]
        tt = t_track[use]
        if tr.size >= 3 and pdb[i] > floor_db:
            sl, _ = np.polyfit(tt, tr, 1)
            if sl < -0.5:
                log_t60[i] = np.log10(60.0 / -sl)
                wts[i] = float(10.0 ** ((pdb[i] - np.max(pdb)) / 40.0)) * min(1.0, tt[-1] / 0.3)
    prior = default_t60_log10(float(hz_to_midi(f0_fit)))
    anchors = _fit_anchors(np.log2(fk), np.clip(log_t60, -2.0, 1.4), wts, prior)
    anchors = np.clip(anchors, -2.0, 1.4)

    # 5. amplitudes at the onset: the new energy, extrapolated back over the gap with the decay
    x0 = np.log2(DECAY_ANCHORS_HZ[0])
    dx = np.log2(DECAY_ANCHORS_HZ[1]) - x0
    t60_k = 10.0 ** np.interp((np.log2(fk) - x0) / dx, np.arange(len(DECAY_ANCHORS_HZ)), anchors)
    gap_gain_db = np.minimum(60.0 * s.gap_s / np.maximum(t60_k, 0.1), 6.0)
    level_k = np.maximum(amp0_db + gap_gain_db, floor_db - 20.0 * np.log10(an.amp_scale) - 15.0)
    weight = np.where(pdb > floor_db, 1.0, 0.15)
    # a partial far above the smooth envelope is probably shared with another note: fit the lower
    # envelope by reweighting such outliers (iteratively)
    coef = fit_shape(k, level_k, weight, ridge=s.shape_ridge)
    for _ in range(4):
        fit = coef[0] + _shape_basis(k) @ coef[1:]
        over = level_k - fit
        w_it = weight * np.where(over > 3.0, 0.05, 1.0)
        coef = fit_shape(k, level_k, w_it, ridge=s.shape_ridge)

    row = default_params(1)[0]
    row[_I["pitch"]] = float(hz_to_midi(f0_fit))
    row[_I["inharm"]] = float(np.log10(max(b_fit, 1e-6)))
    row[_I["tilt"]] = coef[1]
    row[_I["shape"] : _I["shape"] + N_SHAPE] = coef[2:]
    row[_I["t60"] : _I["t60"] + len(DECAY_ANCHORS_HZ)] = anchors
    row[_I["after_db"]] = -20.0
    row[_I["after_ratio"]] = 0.5
    row[_I["duration"]] = duration
    row[_I["release"]] = -0.6
    row[_I["attack"]] = -3.0
    row[_I["noise_t60"]] = -1.5
    row[_I["noise_tilt"]] = -3.0
    # level: root-sum-square of the fitted partial amplitudes (as the decoder normalises them)
    k_all = np.arange(1, N_PARTIALS + 1, dtype=np.float64)
    f_all = k_all * f0_fit * np.sqrt(1.0 + b_fit * k_all**2)
    fitted_db = coef[0] + _shape_basis(k_all) @ coef[1:]
    rss = float(np.sqrt(np.sum((10.0 ** (fitted_db / 20.0) * _taper(f_all, sr)) ** 2)))
    if rss <= 0.0:
        return None
    row[_I["level"]] = 20.0 * np.log10(rss)
    row[_I["noise_db"]] = row[_I["level"]] - 45.0
    # share of the new energy that the template's partials account for
    total = float(np.sum(new_mag**2))
    near = np.zeros(new_mag.size, dtype=bool)
    for f in fk:
        b0 = int(np.rint(f / an.bin_hz))
        near[max(0, b0 - 2) : b0 + 3] = True
    explained = float(np.sum(new_mag[near] ** 2)) / max(total, 1e-30)
    return clip_params(row[None, :])[0], explained


def _taper(freq_hz: FloatArray, sample_rate: float) -> FloatArray:
    f_top = top_frequency_hz(sample_rate)
    t = np.clip((f_top - freq_hz) / (0.1 * f_top), 0.0, 1.0)
    return np.asarray(t * t * (3.0 - 2.0 * t))


# --------------------------------------------------------------------------------------------------
# The loop


def pursue(
    y: NDArray[np.floating],
    *,
    sample_rate: int,
    settings: PursuitSettings | None = None,
    max_events: int | None = None,
) -> tuple[FloatArray, FloatArray, dict[str, float]]:
    """Events found by matching pursuit on the residual spectrogram.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,)]
    sample_rate : int
    settings : PursuitSettings, optional
    max_events : int, optional
        Stop after this many events (default ``settings.max_events``).

    Returns
    -------
    times_s : np.ndarray [shape=(n_events,)]
    params : np.ndarray [shape=(n_events, N_PARAMS)]
    stats : dict
        ``n_candidates``, ``residual_energy_ratio`` (residual over input energy, in the analysis
        spectrogram) and ``n_events``.
    """
    s = settings or PursuitSettings()
    limit = s.max_events if max_events is None else int(max_events)
    x = np.asarray(y, dtype=np.float64)
    an = _Analysis(sample_rate, s)
    power = np.abs(stft(x, n_fft=an.n_fft, hop_length=an.hop)) ** 2
    state = PursuitState(sample_rate=sample_rate, n_samples=x.size, power=power, model=np.zeros_like(power),
                         residual=power.copy())
    onset_n_fft = fft_size(s.onset_window_s, float(sample_rate))
    cand_t, _ = detect_onsets(x, sample_rate=sample_rate, n_fft=onset_n_fft, hop_length=onset_n_fft // 8)
    cand_t = np.array([onset_after_silence(x, t, sample_rate=sample_rate) for t in cand_t]) + s.onset_bias_s
    cand_t = np.maximum(cand_t, 0.0)
    n_frames = power.shape[1]
    alive = np.ones(cand_t.size, dtype=bool)
    per_onset = np.zeros(cand_t.size, dtype=np.int64)
    pitches = np.arange(s.min_pitch_midi, s.max_pitch_midi + 1e-9, s.pitch_step)
    total_energy = float(np.sum(power))
    first_new: float | None = None
    found_at: dict[int, list[float]] = {}

    def new_energy(i: int) -> FloatArray:
        res = state.residual
        ja = an.frame_of(cand_t[i] + s.gap_s)
        jb = an.frame_of(cand_t[i] - s.gap_s)
        if ja >= n_frames:
            return np.zeros(res.shape[0])
        after = res[:, ja]
        before = res[:, jb] if jb >= 0 else np.zeros(res.shape[0])
        return np.asarray(np.maximum(after - before, 0.0))

    scores = np.array([float(np.sum(new_energy(i))) for i in range(cand_t.size)])
    cand_frames = np.array([an.frame_of(t) for t in cand_t], dtype=np.int64)
    gap_frames = an.frame_of(s.gap_s) + 1
    while len(state.times_s) < limit and np.any(alive):
        scores = np.where(alive, scores, -1.0)
        i = int(np.argmax(scores))
        if first_new is None:
            first_new = max(scores[i], 1e-30)
        if scores[i] < s.stop_energy_ratio * first_new or scores[i] <= 0.0:
            break
        new_pow = new_energy(i)
        new_mag = np.sqrt(new_pow)
        white = _whiten(new_mag, an.freqs)
        sal, best_b = salience(
            white, sample_rate=an.sr, n_fft=an.n_fft, pitches_midi=pitches, max_harmonics=s.max_harmonics,
            f_max_hz=s.analysis_f_max_hz,
        )
        # do not find the same pitch twice at one onset
        for p_done in found_at.get(i, []):
            sal[np.abs(pitches - p_done) < 0.7] = -np.inf
        j = int(np.argmax(sal))
        if not np.isfinite(sal[j]):
            alive[i] = False
            continue
        fitted = _fit_event(an, state, float(cand_t[i]), float(pitches[j]), float(best_b[j]), new_mag, cand_t)
        if fitted is None:
            alive[i] = False
            continue
        row, explained = fitted
        if explained < s.min_explained and per_onset[i] > 0:
            alive[i] = False
            continue
        i0, start_s = placement(float(cand_t[i]), sample_rate=an.sr)
        n_win = int(event_lengths(row[None, :], sample_rate=an.sr)[0])
        y_ev = render_event(row, sample_rate=an.sr, n_samples=n_win, start_s=start_s)
        f_lo, block = an.event_power(y_ev, i0, n_frames)
        state.add_event_power(f_lo, block)
        touched = (cand_frames + gap_frames >= f_lo) & (cand_frames - gap_frames < f_lo + block.shape[1])
        for c_i in np.nonzero(touched & alive)[0]:
            scores[c_i] = float(np.sum(new_energy(int(c_i))))
        state.times_s.append(float(cand_t[i]))
        state.params.append(row)
        state.onset_of_event.append(i)
        found_at.setdefault(i, []).append(float(row[param_index("pitch_midi")]))
        per_onset[i] += 1
        if per_onset[i] >= s.max_events_per_onset:
            alive[i] = False
    times = np.array(state.times_s, dtype=np.float64)
    params = np.array(state.params, dtype=np.float64).reshape(-1, default_params(1).shape[1])
    stats = {
        "n_candidates": float(cand_t.size),
        "n_events": float(times.size),
        "residual_energy_ratio": float(np.sum(state.residual)) / max(total_energy, 1e-30),
    }
    return times, params, stats
