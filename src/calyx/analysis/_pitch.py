"""Fundamental frequency, inharmonicity and harmonicity of a note, from one long-window spectrum.

The f0 search is a harmonic sum over a log-frequency *salience* (dB above the local spectral
floor, max-filtered over a few cents) evaluated jointly over f0 and the stiff-string coefficient
``B`` (``f_k = k f0 sqrt(1 + B k^2)``). Partials are weighted by ``1 / sqrt(k)`` and the salience midway
between predicted partials is subtracted, which settles octave errors (see :func:`_grid_scores`). The winning pair is
then refined by a weighted least-squares fit of ``(f_k / k)^2 = f0^2 (1 + B k^2)`` to the
interpolated spectral peaks, widening the set of partials as the prediction improves.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import maximum_filter1d

__all__ = ["PitchEstimate", "estimate_pitch", "midi_to_hz"]

FloatArray = NDArray[np.float64]

_GRID_CENTS = 2.0  # resolution of the log-frequency salience and of the f0 grid
_TOLERANCE_CENTS = 20.0  # a partial counts when a peak lies within this distance
_SALIENCE_MARGIN_DB = 6.0  # salience is dB above (floor + margin)
_SALIENCE_CAP_DB = 40.0  # one very strong partial cannot outweigh many ordinary ones
_DYNAMIC_RANGE_DB = 90.0  # ignore everything this far below the spectral peak
_OCTAVE_MARGIN = 2.0  # an octave below the nominal one must score this much better
_MAX_STRETCH_BK2 = 3.0  # B k^2 at the highest modelled partial: sqrt(1 + 3) = 2x stretch
_SUBOCTAVE_RATIO = 0.3  # odd partials this much weaker than even ones: f0 is really twice as high
_NO_PRIOR_RANGE_HZ = (25.0, 4500.0)


def midi_to_hz(pitch_midi: float) -> float:
    """Equal-tempered frequency of a (fractional) MIDI pitch, A4 = 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((pitch_midi - 69.0) / 12.0)


@dataclass(frozen=True)
class PitchEstimate:
    """Result of :func:`estimate_pitch`.

    Attributes
    ----------
    f0_hz : float
    inharmonicity : float
        ``B`` >= 0.
    harmonicity : float
        Share of the spectral energy (0..1) near the fitted partials, corrected for the share a
        noise spectrum would have by chance (0 for noise, 1 for a clean harmonic tone).
    octave_shift : int
        Octaves by which the estimate departs from the nominal pitch (0 without a prior).
    n_matched : int
        Partials found within tolerance of the fitted law.
    """

    f0_hz: float
    inharmonicity: float
    harmonicity: float
    octave_shift: int
    n_matched: int


def _spectrum(x: FloatArray, *, sample_rate: float, start: int, length: int) -> tuple[FloatArray, float, int]:
    """Power spectrum (summed over channels) of a Hann-windowed segment, zero-padded at least 2x.

    Returns the power, the bin spacing in Hz and the half-width of the window's main lobe in bins.
    """
    seg = x[:, start : start + length]
    n = seg.shape[-1]
    n_fft = 1 << math.ceil(math.log2(max(2 * n, 4096)))
    win = np.hanning(n + 2)[1:-1]
    spec = np.fft.rfft(seg * win, n=n_fft, axis=-1)
    power = np.sum(spec.real**2 + spec.imag**2, axis=0)
    return power, sample_rate / n_fft, math.ceil(2.0 * n_fft / n)


def _floor_db(p_db: FloatArray, *, df: float) -> FloatArray:
    """Local spectral floor: median dB over sixth-octave bands, interpolated on log frequency."""
    n = p_db.size
    freqs = np.arange(n) * df
    edges = [0.0, 40.0]
    while edges[-1] < freqs[-1]:
        edges.append(edges[-1] * 2.0 ** (1.0 / 6.0))
    idx = np.unique(np.clip(np.searchsorted(freqs, edges), 0, n))
    centres, medians = [], []
    for lo, hi in itertools.pairwise(idx):
        if hi - lo >= 3:
            centres.append(0.5 * (freqs[lo] + freqs[hi - 1]))
            medians.append(float(np.median(p_db[lo:hi])))
    if not centres:
        return np.full(n, float(np.median(p_db)))
    return np.interp(freqs, np.asarray(centres), np.asarray(medians))


def _salience(power: FloatArray, *, df: float, main_lobe_bins: int) -> FloatArray:
    """Spectral peaks as dB above floor + margin, capped; zero elsewhere and far below the peak.

    Only bins that are the maximum within ``+- main_lobe_bins`` count, which keeps the window's
    side lobes (and the skirts of a strong partial) from adding salience around it.
    """
    p_db = 10.0 * np.log10(power + power.max() * 1e-20 + 1e-300)
    floor = _floor_db(p_db, df=df)
    sal = np.clip(p_db - floor - _SALIENCE_MARGIN_DB, 0.0, _SALIENCE_CAP_DB)
    sal[p_db < p_db.max() - _DYNAMIC_RANGE_DB] = 0.0
    sal[p_db < maximum_filter1d(p_db, size=2 * main_lobe_bins + 1, mode="nearest")] = 0.0
    sal[: max(1, int(15.0 / df))] = 0.0  # below 15 Hz: DC and rumble, never a partial
    return sal


def _log_salience(sal: FloatArray, *, df: float, f_lo: float, f_hi: float) -> tuple[FloatArray, float]:
    """Salience resampled to a grid of ``_GRID_CENTS`` from ``f_lo``, max-filtered by the tolerance."""
    n_cells = math.ceil(1200.0 * math.log2(f_hi / f_lo) / _GRID_CENTS) + 1
    cell_f = f_lo * 2.0 ** (np.arange(n_cells + 1) * _GRID_CENTS / 1200.0)
    bounds = np.clip(np.round(cell_f / df).astype(np.int64), 0, sal.size - 1)
    cells = np.maximum.reduceat(sal, bounds[:-1]) if bounds.size > 1 else sal[bounds]
    # reduceat returns sal[b] for empty cells (b_i == b_{i+1}): the bin under the cell, as wanted
    width = round(_TOLERANCE_CENTS / _GRID_CENTS)
    return maximum_filter1d(cells[:n_cells], size=2 * width + 1, mode="constant"), f_lo


def _grid_scores(
    log_sal: FloatArray, f_lo: float, f0: FloatArray, b_grid: FloatArray, *, f_lim: float, max_k: int
) -> FloatArray:
    """Weighted harmonic sum minus the salience midway between partials; shape (n_f0, n_b).

    Partial ``k`` has weight ``1 / sqrt(k)``, so a sub-octave (whose partials are the true ones
    at even indices) scores about ``1 / sqrt(2)`` of the true f0, and the penalty midway between
    predicted partials sinks an octave-too-high candidate (the true odd partials lie there).
    """
    k = np.arange(1, max_k + 1, dtype=np.float64)
    weight = 1.0 / np.sqrt(k)
    ratio = k[None, :] * np.sqrt(1.0 + b_grid[:, None] * k[None, :] ** 2)  # (n_b, K)
    prev = np.concatenate([np.full((b_grid.size, 1), 0.5), ratio[:, :-1]], axis=1)
    mid = 0.5 * (ratio + prev)
    total = np.zeros((f0.size, b_grid.size))
    for r in (ratio, mid):
        freqs = f0[:, None, None] * r[None, :, :]  # (n_f0, n_b, K)
        valid = (freqs < f_lim) & (freqs > f_lo)
        idx = np.round(1200.0 * np.log2(np.maximum(freqs, f_lo) / f_lo) / _GRID_CENTS).astype(np.int64)
        idx = np.clip(idx, 0, log_sal.size - 1)
        part = np.einsum("fbk,k->fb", np.where(valid, log_sal[idx], 0.0), weight)
        total = total + part if r is ratio else total - part
    return total


def _stretch_cap(f0: FloatArray | float, *, f_lim: float, max_b: float) -> FloatArray:
    """Largest plausible ``B`` for each f0: the stretch ``sqrt(1 + B k^2)`` stays below 2 at the
    highest partial (at most the 64th) below ``f_lim``. Real strings stay well inside this
    (piano: ``B k^2`` about 1 at most); without it, a huge ``B`` lets a few drum modes pose as a
    stretched harmonic series."""
    k_top = np.clip(np.floor(f_lim / np.asarray(f0, dtype=np.float64)), 1.0, 64.0)
    return np.minimum(max_b, _MAX_STRETCH_BK2 / k_top**2)


def _b_grid(max_b: float, n: int) -> FloatArray:
    """0 and ``n`` geometrically spaced values from 1e-6 to ``max_b``."""
    if max_b <= 1e-6:
        return np.zeros(1)
    return np.concatenate([[0.0], np.geomspace(1e-6, max_b, n)])


def _best_on_grid(
    log_sal: FloatArray, f_lo: float, f0_grid: FloatArray, b_grid: FloatArray, *, f_lim: float, b_cap_lim: float
) -> tuple[float, float, float]:
    """(f0, B, score) of the best pair on the grid, B within :func:`_stretch_cap` of each f0."""
    max_k = int(min(64, max(2, math.ceil(f_lim / f0_grid.min()))))
    scores = _grid_scores(log_sal, f_lo, f0_grid, b_grid, f_lim=f_lim, max_k=max_k)
    cap = _stretch_cap(f0_grid, f_lim=b_cap_lim, max_b=float(b_grid.max()))
    scores = np.where(b_grid[None, :] <= cap[:, None] * (1.0 + 1e-9), scores, -np.inf)
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(f0_grid[i]), float(b_grid[j]), float(scores[i, j])


def _top_local_maxima(x: FloatArray, n: int) -> list[int]:
    """Indices of the ``n`` largest local maxima of ``x`` (plateaus count once)."""
    if x.size < 3:
        return [int(np.argmax(x))]
    inner = np.nonzero((x[1:-1] >= x[:-2]) & (x[1:-1] > x[2:]))[0] + 1
    cand = np.concatenate([inner, [int(np.argmax(x))]])
    cand = np.unique(cand)
    return [int(i) for i in cand[np.argsort(x[cand])[::-1][:n]]]


def _odd_partials_missing(log_sal: FloatArray, f_lo: float, f0: float, b: float, *, f_lim: float) -> bool:
    """True when the odd partials of (f0, B) are far weaker than the even ones (f0 is a sub-octave)."""
    k = np.arange(1, 65, dtype=np.float64)
    f = k * f0 * np.sqrt(1.0 + b * k * k)
    ok = (f < f_lim) & (f > f_lo)
    if ok.sum() < 4:
        return False
    idx = np.clip(np.round(1200.0 * np.log2(f[ok] / f_lo) / _GRID_CENTS).astype(np.int64), 0, log_sal.size - 1)
    sal = log_sal[idx]
    odd = (k[ok] % 2) == 1
    if not np.any(~odd):
        return False
    return bool(sal[odd].mean() < _SUBOCTAVE_RATIO * sal[~odd].mean())


def _peak_near(
    p_db: FloatArray, centre_bin: FloatArray, half_width: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Interpolated peak (bin, dB) of the largest bin within ``centre +- half_width`` for each centre."""
    n = p_db.size
    hw = np.maximum(np.round(half_width).astype(np.int64), 1)
    max_hw = int(hw.max())
    offs = np.arange(-max_hw, max_hw + 1)
    c = np.round(centre_bin).astype(np.int64)
    idx = np.clip(c[:, None] + offs[None, :], 1, n - 2)
    vals = np.where(np.abs(offs)[None, :] <= hw[:, None], p_db[idx], -np.inf)
    best = idx[np.arange(c.size), np.argmax(vals, axis=1)]
    a, b, cc = p_db[best - 1], p_db[best], p_db[best + 1]
    den = a - 2.0 * b + cc
    delta = np.where(den < 0, 0.5 * (a - cc) / np.where(den < 0, den, -1.0), 0.0)
    delta = np.clip(delta, -0.5, 0.5)
    return best + delta, b - 0.25 * (a - cc) * delta


def _solve_f0_b(
    f_meas: FloatArray, k: FloatArray, w: FloatArray, *, b: float, max_b: float
) -> tuple[float, float]:
    """Weighted least squares of ``(f_k / k)^2 = f0^2 (1 + B k^2)``; B kept when it cannot be fitted.

    With one partial, or partials of a single index, only f0 is fitted. A B outside
    ``[0, max_b]`` is clipped and f0 refitted with it fixed.
    """
    yk = (f_meas / k) ** 2
    xk = k * k
    if np.ptp(xk) > 0:
        sw, sx, sy = w.sum(), (w * xk).sum(), (w * yk).sum()
        sxx, sxy = (w * xk * xk).sum(), (w * xk * yk).sum()
        det = sw * sxx - sx * sx
        if det > 0:
            slope = (sw * sxy - sx * sy) / det
            icpt = (sy - slope * sx) / sw
            if icpt > 0 and 0.0 <= slope / icpt <= max_b:
                return math.sqrt(icpt), float(slope / icpt)
            if icpt > 0:
                b = float(np.clip(slope / icpt, 0.0, max_b))
    stretch = 1.0 + b * xk
    f0_sq = float(np.sum(w * yk * stretch) / np.sum(w * stretch * stretch))
    return math.sqrt(max(f0_sq, 1e-12)), b


def _fit(
    p_db: FloatArray,
    sal: FloatArray,
    *,
    df: float,
    f0: float,
    b: float,
    f_lim: float,
    max_b: float,
) -> tuple[float, float, int]:
    """Least-squares refinement of (f0, B) on interpolated peaks, widening the partial set."""
    n_matched = 0
    for k_max in (8, 16, 32, 64, 128):
        k = np.arange(1, k_max + 1, dtype=np.float64)
        pred = k * f0 * np.sqrt(1.0 + b * k * k)
        keep = pred < f_lim
        if not np.any(keep):
            break
        k, pred = k[keep], pred[keep]
        half = np.minimum(0.2 * f0, pred * (2.0 ** (30.0 / 1200.0) - 1.0)) / df
        peak_bin, _ = _peak_near(p_db, pred / df, np.maximum(half, 2.0))
        w = sal[np.clip(np.round(peak_bin).astype(np.int64), 0, sal.size - 1)]
        f_meas = peak_bin * df
        for _ in range(2):
            cents = 1200.0 * np.log2(np.maximum(f_meas, 1e-9) / pred)
            use = (w > 0) & (np.abs(cents) < 25.0)
            n_matched = int(use.sum())
            if n_matched == 0:
                break
            f0, b = _solve_f0_b(f_meas[use], k[use], w[use], b=b, max_b=max_b)
            pred = k * f0 * np.sqrt(1.0 + b * k * k)
    return f0, b, n_matched


def _harmonicity(power: FloatArray, *, df: float, f0: float, b: float, f_lim: float) -> float:
    """Chance-corrected share of the energy in ``[f0 / 2, f_lim]`` that lies near the partials."""
    lo = math.floor(0.5 * f0 / df)
    hi = min(math.ceil(f_lim / df), power.size)
    if hi - lo < 8:
        return 0.0
    k = np.arange(1, int(f_lim / f0) + 2, dtype=np.float64)
    pred = k * f0 * np.sqrt(1.0 + b * k * k)
    pred = pred[pred < f_lim]
    if pred.size == 0:
        return 0.0
    half = max(0.1 * f0, 3.0 * df)
    bins = np.arange(lo, hi) * df
    pos = np.searchsorted(pred, bins)
    d_lo = np.abs(bins - pred[np.clip(pos - 1, 0, pred.size - 1)])
    d_hi = np.abs(bins - pred[np.clip(pos, 0, pred.size - 1)])
    near = np.minimum(d_lo, d_hi) <= half
    total = power[lo:hi].sum()
    if total <= 0:
        return 0.0
    share = float(power[lo:hi][near].sum() / total)
    chance = float(near.mean())
    return max(0.0, (share - chance) / max(1.0 - chance, 1e-9))


def estimate_pitch(
    y: FloatArray,
    *,
    sample_rate: float,
    onset_sample: int = 0,
    pitch_midi: float | None = None,
    search_cents: float = 100.0,
    max_inharmonicity: float = 0.05,
    fmax_hz: float = 20000.0,
    segment_s: float = 1.0,
    skip_s: float = 0.03,
) -> PitchEstimate:
    """Estimate f0, inharmonicity and harmonicity of a note.

    Parameters
    ----------
    y : np.ndarray [shape=(n_channels, n_samples)]
    sample_rate : float
    onset_sample : int
        The analysed segment starts ``skip_s`` after the onset (past the hammer or pluck).
    pitch_midi : float, optional
        Nominal pitch; f0 is searched within ``+- search_cents`` of it and of the octaves on either
        side, and the nominal octave is kept unless another explains the spectrum clearly better.
        Without it, f0 is searched from 25 Hz to 4.5 kHz.
    max_inharmonicity : float
        Largest ``B`` considered.
    fmax_hz : float
        Partials above this frequency are not used.
    segment_s : float
        Length of the analysed segment (shorter notes use what there is).
    """
    n = y.shape[-1]
    start = min(onset_sample + round(skip_s * sample_rate), max(n - int(0.1 * sample_rate), onset_sample))
    start = max(0, min(start, n - 1))
    length = max(1, min(round(segment_s * sample_rate), n - start))
    power, df, lobe = _spectrum(y, sample_rate=sample_rate, start=start, length=length)
    if power.max() <= 0.0:
        return PitchEstimate(0.0, 0.0, 0.0, 0, 0)
    sal = _salience(power, df=df, main_lobe_bins=lobe)
    nyq_lim = min(0.95 * sample_rate / 2.0, fmax_hz)
    f_lo = 15.0
    log_sal, _ = _log_salience(sal, df=df, f_lo=f_lo, f_hi=nyq_lim)
    b_fine = _b_grid(max_inharmonicity, 60)
    step = 2.0 ** (_GRID_CENTS / 1200.0)
    if pitch_midi is not None:
        f_nom = midi_to_hz(pitch_midi)
        f_lim = min(nyq_lim, max(24.0 * f_nom, 1500.0))
        half = math.ceil(search_cents / _GRID_CENTS)
        rel = step ** np.arange(-half, half + 1)
        best: dict[int, tuple[float, float, float]] = {}
        for octave in (-1, 0, 1):
            best[octave] = _best_on_grid(
                log_sal, f_lo, f_nom * 2.0**octave * rel, b_fine, f_lim=f_lim, b_cap_lim=nyq_lim
            )
        octave_shift = 0
        if best[-1][2] >= _OCTAVE_MARGIN * max(best[0][2], 0.0) and best[-1][2] > 0:
            octave_shift = -1
        f0, b, score = best[octave_shift]
        if octave_shift == 0 and _odd_partials_missing(log_sal, f_lo, f0, b, f_lim=f_lim) and best[1][2] > 0:
            octave_shift = 1
            f0, b, score = best[1]
    else:
        lo, hi = _NO_PRIOR_RANGE_HZ
        hi = min(hi, nyq_lim / 2.0)
        f_lim = nyq_lim
        coarse_step = step * step
        f0_grid = lo * coarse_step ** np.arange(int(math.log(hi / lo) / math.log(coarse_step)) + 1)
        b_coarse = _b_grid(max_inharmonicity, 8)
        scores = _grid_scores(log_sal, f_lo, f0_grid, b_coarse, f_lim=f_lim, max_k=64)
        cap = _stretch_cap(f0_grid, f_lim=nyq_lim, max_b=max_inharmonicity)
        scores = np.where(b_coarse[None, :] <= cap[:, None] * (1.0 + 1e-9), scores, -np.inf)
        s_f0 = scores.max(axis=1)
        f0, b, score = 0.0, 0.0, -np.inf
        for i in _top_local_maxima(s_f0, 3):
            rel = step ** np.arange(-25, 26)
            cand = _best_on_grid(log_sal, f_lo, f0_grid[i] * rel, b_fine, f_lim=f_lim, b_cap_lim=nyq_lim)
            if cand[2] > score:
                f0, b, score = cand
        octave_shift = 0
        for _ in range(4):
            if f0 <= 0 or 2.0 * f0 > hi or not _odd_partials_missing(log_sal, f_lo, f0, b, f_lim=f_lim):
                break
            f0, b = 2.0 * f0, 4.0 * b
    if score <= 0:
        return PitchEstimate(float(midi_to_hz(pitch_midi)) if pitch_midi is not None else 0.0, 0.0, 0.0, 0, 0)
    p_db = 10.0 * np.log10(power + power.max() * 1e-20 + 1e-300)
    b_cap = float(_stretch_cap(f0, f_lim=nyq_lim, max_b=max_inharmonicity))
    f0, b, n_matched = _fit(p_db, sal, df=df, f0=f0, b=b, f_lim=nyq_lim, max_b=b_cap)
    harm = _harmonicity(power, df=df, f0=f0, b=b, f_lim=min(nyq_lim, 64 * f0 * math.sqrt(1 + b * 4096)))
    return PitchEstimate(f0, b, harm, octave_shift, n_matched)
