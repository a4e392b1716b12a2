"""Compiled (numba) kernels of the real-time engine: control updates, partial oscillators, shared noise.

Everything the audio path does per sample or per control period lives here, in ``@njit`` functions
that work on arrays preallocated by :class:`calyx.synth.Engine`; nothing here allocates.

Oscillators
-----------
Each partial follows the definition of :func:`calyx.core.synthesis.oscillator_bank`:
``phi[n] = phi[n - 1] + 2 pi f[n] / sr`` and ``y[n] = a[n] sin(phi[n])``, with ``f`` and ``a``
interpolated linearly between control points every ``control_period`` samples (the convention of
:func:`calyx.core.synthesis.upsample_controls`). Within a control period the phase increment grows
linearly, so ``exp(i phi)`` is advanced by a second-order complex recursion (two complex products
per sample instead of a ``sin``); at every control point the phase is recomputed in closed form and
the recursion restarted, so rounding never accumulates beyond one period. Partials whose frequency
reaches Nyquist during a period are rendered by a slower loop that silences them sample by sample,
as the reference does.

State layout
------------
Per voice ``v``: integer scalars ``vi[v, VI_*]``, float scalars ``vf[v, VF_*]``, per-partial planes
``vp[v, PL_*, k]``, table ids ``vt[v, slot, anchor]``, anchor dynamics ``vd[v, slot, anchor]`` and
time offsets ``vo[v, slot, anchor]`` (seconds added to the voice's time to read each table, which
aligns the anchors' onsets on the main anchor's); slot 0 is the sounding articulation, slot 1 the
one being cross-faded in.

Tables live in one float32 *arena* (so that no container of arrays crosses into compiled code);
table ``t`` starts at ``ti[t, TI_OFF]`` and is ``(n_frames + 2, 3 K + 2 B)``, one contiguous row per
frame: ln amplitude of channel 0 and 1 per partial, partial frequency in Hz, ln noise gain of
channel 0 and 1 per band. Row ``n_frames`` holds each column's decay slope per frame, row
``n_frames + 1`` the initial phase of each partial. The kept attack (left, right, noise gate;
``(3, n)``) starts at ``ti[t, TI_TR_OFF]``. The other scalars of a table are ``ti[t, TI_*]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

__all__: list[str] = []

#: Integer arguments: compiled callers pass ``np.int64(...)`` where a literal would make numba
#: compile one specialisation per value.
IntLike = int | np.integer[Any]

# ---- voice integer scalars -----------------------------------------------------------------------
VI_STATE = 0  # 0 free, 1 sounding, 2 waiting for its first sample
VI_START = 1  # absolute sample of the note-on
VI_REL = 2  # absolute sample of the release, -1 while held
VI_KILL = 3  # absolute sample of a fast fade (stolen voice), -1 otherwise
VI_CTRL = 4  # last control point whose period has been set up
VI_K = 5  # number of partials
VI_LAYOUT = 6  # 0 left/right, 1 mid/side, 2 mono
VI_NA0 = 7  # anchors in slot 0
VI_NA1 = 8  # anchors in slot 1
VI_XF = 9  # absolute sample where an articulation cross-fade starts, -1 when none
VI_NFAST = 10  # running partials below Nyquist for the whole period
VI_NACT = 11  # running partials in all (fast ones first, then those crossing Nyquist)
VI_TR0 = 12  # table whose kept attack is played (the main anchor's), -1 when none
VI_MAIN = 13  # the main anchor (nearest to the dynamic at note-on): onset, phases, kept attack
VI_ONSET = 14  # absolute sample before which the partials are silent (the model's onset)
N_VI = 15

# ---- voice float scalars -------------------------------------------------------------------------
VF_GAIN_T = 0  # target ln gain (volume x expression)
VF_GAIN = 1  # smoothed ln gain
VF_DYN_T = 2  # target dynamic 0..1
VF_DYN = 3  # smoothed dynamic
VF_BEND_T = 4  # target ln frequency factor (pitch bend)
VF_BEND = 5  # smoothed ln frequency factor
VF_SLOPE_LO = 6  # ln gain per unit dynamic below the lowest anchor
VF_SLOPE_HI = 7  # ln gain per unit dynamic above the highest anchor
VF_REL_S = 8  # release time to -60 dB at middle C, seconds
VF_LEVEL = 9  # largest partial amplitude at the last control point
VF_XF_LEN = 10  # articulation cross-fade length, samples
VF_TR_GAIN = 11  # linear gain of the kept attack over the current period
N_VF = 12

# ---- per-partial planes --------------------------------------------------------------------------
PL_PHI = 0  # exact phase before the first sample of the next period, per partial
PL_LT = 1  # left amplitude at the end of the current period, per partial
PL_RT = 2  # right amplitude at the end of the current period
PL_FT = 3  # frequency (Hz, bent) at the end of the current period
PL_ZR = 4  # running exp(i phi), compacted (index j, not k)
PL_ZI = 5
PL_RR = 6  # running exp(i dphi)
PL_RI = 7
PL_ER = 8  # exp(i ddphi), constant over the period
PL_EI = 9
PL_AL = 10  # running amplitudes and their per-sample increments
PL_AR = 11
PL_DAL = 12
PL_DAR = 13
PL_D = 14  # running phase increment (for the Nyquist test of crossing partials)
PL_DD = 15
PL_IDX = 16  # partial index k of compact entry j
PL_KZR = 17  # running exp(i phi) and exp(i dphi) saved per partial k at the end of a period
PL_KZI = 18
PL_KRR = 19
PL_KRI = 20
PL_KACT = 21  # 1 where partial k was running in the last period (its saved state continues)
N_PL = 22

#: Every this many control periods (in absolute time) the oscillators restart from the exact
#: phase; in between, the running recursion continues (no trigonometric call per period).
RESYNC_PERIODS = 32

# ---- table scalars -------------------------------------------------------------------------------
TI_FPS = 0  # model frames per second
TI_NF = 1  # frame columns
TI_K = 2  # partials
TI_B = 3  # noise bands (the engine's)
TI_LS = 4  # loop start frame (sustained), 0
TI_LE = 5  # loop end frame (exclusive); <= TI_LS when the table does not loop
TI_LAST = 6  # last usable frame; beyond it rows decay by their slope
TI_LAYOUT = 7
TI_LEVEL = 8  # ln of the peak RMS amplitude of the model
TI_TR_START = 9  # kept attack: first sample after the note-on, at the engine's rate
TI_TR_LEN = 10  # kept attack length at the engine's rate (0 when none)
TI_ONSET = 11  # the model's onset, samples after the note-on at the engine's rate
TI_OFF = 12  # offset of the table in the arena (float32 elements)
TI_ROWS = 13  # values per frame (3 K + 2 B)
TI_TR_OFF = 14  # offset of the kept attack in the arena
N_TI = 15

# ---- scratch rows --------------------------------------------------------------------------------
SC_C0 = 0
SC_C1 = 1
SC_F = 2
SC_FW = 3
SC_N0 = 4
SC_N1 = 5
SC_BL = 6  # slot-1 linear results while cross-fading
SC_BR = 7
SC_BF = 8
SC_BW = 9
SC_LC = 10  # amplitudes and frequencies at the start of the period being set up
SC_RC = 11
SC_FC = 12
SC_G0 = 13  # noise gains (linear) of one voice
SC_G1 = 14
SC_H0 = 15
SC_H1 = 16
N_SC = 17

# ---- engine float settings (array ``cfg``) -------------------------------------------------------
CF_SR = 0
CF_CTRL = 1  # control period, samples
CF_ALPHA = 2  # one-pole smoothing coefficient per control period
CF_NFFT = 3  # noise frame size
CF_HOP = 4  # noise hop
CF_DONE = 5  # level below which a released voice is freed
N_CF = 6

LN_SILENT = -23.0  # amplitudes below exp(-23) ~ 1e-10 are not rendered
LN_FLOOR = -30.0  # ln amplitude stored for silence
LN_1000 = math.log(1000.0)
KILL_RATE = math.log(1e5) / 0.012  # a stolen voice falls 100 dB in 12 ms
TWO_PI = 2.0 * math.pi
MIDDLE_C_HZ = 261.6255653005986


@njit(cache=True, nogil=True)
def _table(arena: np.ndarray, ti: np.ndarray, t: int) -> np.ndarray:
    """View of table ``t``: ``(n_frames + 2, 3 K + 2 B)`` float32 (see the module docstring)."""
    off = int(ti[t, TI_OFF])
    rows = int(ti[t, TI_ROWS])
    n = int(ti[t, TI_NF]) + 2
    return arena[off : off + n * rows].reshape((n, rows))


@njit(cache=True, nogil=True)
def _transient(arena: np.ndarray, ti: np.ndarray, t: int) -> np.ndarray:
    """View of the kept attack of table ``t``: ``(3, n)`` float32 (left, right, noise gate)."""
    off = int(ti[t, TI_TR_OFF])
    n = int(ti[t, TI_TR_LEN])
    return arena[off : off + 3 * n].reshape((3, n))


@njit(cache=True, nogil=True)
def _release_rate(f_hz: float, release_s: float) -> float:
    """ln-amplitude decay per second after note-off: -60 dB in ``release_s`` at middle C,
    faster for higher partials (a damper stops the upper partials first)."""
    f = max(f_hz, 20.0)
    t60 = release_s * math.sqrt(MIDDLE_C_HZ / f)
    t60 = min(max(t60, 0.125 * release_s), 4.0 * release_s)
    return LN_1000 / max(t60, 1e-3)


@njit(cache=True, nogil=True, fastmath=True)
def _frame_position(tau_s: float, info: np.ndarray) -> tuple[int, int, float, float]:
    """Frame pair, interpolation weight and frames of extrapolated decay at ``tau_s`` after the onset."""
    p = tau_s * info[TI_FPS]
    if p < 0.0:
        p = 0.0
    ls = info[TI_LS]
    le = info[TI_LE]
    last = info[TI_LAST]
    looping = le > ls + 1.0
    if looping and p >= le:
        span = le - ls
        p = ls + (p - ls) - span * math.floor((p - ls) / span)
    extra = 0.0
    if p > last:
        extra = p - last
        p = last
    i0 = int(p)
    frac = p - i0
    i1 = i0 + 1
    if looping and i1 >= le:
        i1 = int(ls)
    if i1 > int(last):
        i1 = int(last)
    return i0, i1, frac, extra


@njit(cache=True, nogil=True, fastmath=True)
def _accumulate(
    tab: np.ndarray,
    info: np.ndarray,
    tau_s: float,
    weight: float,
    n_partials: int,
    n_bands: int,
    want_partials: bool,
    want_noise: bool,
    sc: np.ndarray,
) -> None:
    """Add ``weight`` x the table's ln values at ``tau_s`` into the scratch accumulators."""
    i0, i1, frac, extra = _frame_position(tau_s, info)
    nf = int(info[TI_NF])
    kt = int(info[TI_K])
    g = 1.0 - frac
    row0 = tab[i0]
    row1 = tab[i1]
    slope = tab[nf]
    if want_partials:
        kk = min(n_partials, kt)
        for k in range(kk):
            r0 = k
            r1 = kt + k
            rf = 2 * kt + k
            sc[SC_C0, k] += weight * (g * row0[r0] + frac * row1[r0] + extra * slope[r0])
            sc[SC_C1, k] += weight * (g * row0[r1] + frac * row1[r1] + extra * slope[r1])
            sc[SC_F, k] += weight * (g * row0[rf] + frac * row1[rf])
            sc[SC_FW, k] += weight
        for k in range(kk, n_partials):
            sc[SC_C0, k] += weight * LN_FLOOR
            sc[SC_C1, k] += weight * LN_FLOOR
    if want_noise:
        base = 3 * kt
        for b in range(n_bands):
            r0 = base + b
            r1 = base + n_bands + b
            sc[SC_N0, b] += weight * (g * row0[r0] + frac * row1[r0] + extra * slope[r0])
            sc[SC_N1, b] += weight * (g * row0[r1] + frac * row1[r1] + extra * slope[r1])


@njit(cache=True, nogil=True)
def _anchor_weights(v: int, slot: IntLike, vi: np.ndarray, vf: np.ndarray, vd: np.ndarray) -> tuple[int, int, float, float]:
    """The two anchors bracketing the voice's dynamic, the weight of the second, and the ln gain
    extrapolated beyond the outermost anchors."""
    n = vi[v, VI_NA0] if slot == 0 else vi[v, VI_NA1]
    d = vf[v, VF_DYN]
    if n <= 1:
        d0 = vd[v, slot, 0]
        slope = vf[v, VF_SLOPE_LO] if d < d0 else vf[v, VF_SLOPE_HI]
        return 0, 0, 0.0, (d - d0) * slope
    if d <= vd[v, slot, 0]:
        return 0, 0, 0.0, (d - vd[v, slot, 0]) * vf[v, VF_SLOPE_LO]
    if d >= vd[v, slot, n - 1]:
        return n - 1, n - 1, 0.0, (d - vd[v, slot, n - 1]) * vf[v, VF_SLOPE_HI]
    j = 0
    while j < n - 2 and d > vd[v, slot, j + 1]:
        j += 1
    lo = vd[v, slot, j]
    hi = vd[v, slot, j + 1]
    w = (d - lo) / (hi - lo) if hi > lo else 0.0
    return j, j + 1, w, 0.0


@njit(cache=True, nogil=True, fastmath=True)
def _slot_values(
    v: int,
    slot: IntLike,
    t_abs: int,
    mode: IntLike,
    vi: np.ndarray,
    vf: np.ndarray,
    vt: np.ndarray,
    vd: np.ndarray,
    vo: np.ndarray,
    ti: np.ndarray,
    arena: np.ndarray,
    band_hz: np.ndarray,
    cfg: np.ndarray,
    sc: np.ndarray,
) -> bool:
    """Linear amplitudes (into ``SC_C0/C1``) and frequencies (``SC_F``) when ``mode & 1``, noise gains
    (``SC_N0/N1``) when ``mode & 2``, of one articulation slot at absolute sample ``t_abs``.
    Returns False before the note starts. (Flags travel as one integer: numba would compile a
    specialisation per literal boolean.)"""
    want_partials = (mode & 1) != 0
    want_noise = (mode & 2) != 0
    sr = cfg[CF_SR]
    n_partials = vi[v, VI_K]
    n_bands = band_hz.shape[0]
    if want_partials:
        for k in range(n_partials):
            sc[SC_C0, k] = 0.0
            sc[SC_C1, k] = 0.0
            sc[SC_F, k] = 0.0
            sc[SC_FW, k] = 0.0
    if want_noise:
        for b in range(n_bands):
            sc[SC_N0, b] = 0.0
            sc[SC_N1, b] = 0.0
    rel_t = t_abs - vi[v, VI_START]
    tau = rel_t / sr
    j0, j1, w, extra_ln = _anchor_weights(v, slot, vi, vf, vd)
    t0 = vt[v, slot, j0]
    tau0 = tau + vo[v, slot, j0]
    _accumulate(_table(arena, ti, t0), ti[t0], tau0, 1.0 - w, n_partials, n_bands, want_partials, want_noise, sc)
    if w > 0.0:
        t1 = vt[v, slot, j1]
        tau1 = tau + vo[v, slot, j1]
        _accumulate(_table(arena, ti, t1), ti[t1], tau1, w, n_partials, n_bands, want_partials, want_noise, sc)
    started = rel_t >= 0
    gain = vf[v, VF_GAIN] + extra_ln
    rel_el = 0.0
    if vi[v, VI_REL] >= 0 and t_abs > vi[v, VI_REL]:
        rel_el = (t_abs - vi[v, VI_REL]) / sr
    kill_ln = 0.0
    if vi[v, VI_KILL] >= 0 and t_abs > vi[v, VI_KILL]:
        kill_ln = KILL_RATE * (t_abs - vi[v, VI_KILL]) / sr
    rel_s = vf[v, VF_REL_S]
    if want_partials:
        f_first = sc[SC_F, 0] / sc[SC_FW, 0] if n_partials > 0 and sc[SC_FW, 0] > 0.0 else 100.0
        for k in range(n_partials):
            f = sc[SC_F, k] / sc[SC_FW, k] if sc[SC_FW, k] > 0.0 else f_first * (k + 1)
            sc[SC_F, k] = f
            if not started:
                sc[SC_C0, k] = 0.0
                sc[SC_C1, k] = 0.0
                continue
            g = gain - kill_ln
            if rel_el > 0.0:
                g -= _release_rate(f, rel_s) * rel_el
            x0 = sc[SC_C0, k] + g
            x1 = sc[SC_C1, k] + g
            sc[SC_C0, k] = math.exp(x0) if x0 > LN_SILENT else 0.0
            sc[SC_C1, k] = math.exp(x1) if x1 > LN_SILENT else 0.0
    if want_noise:
        gate_ln = 0.0
        tr = vi[v, VI_TR0]
        if tr >= 0:
            i = rel_t - int(ti[tr, TI_TR_START])
            if 0 <= i < int(ti[tr, TI_TR_LEN]):
                gate_ln = math.log(max(1.0 - _transient(arena, ti, tr)[2, i], 1e-9))
        for b in range(n_bands):
            if not started:
                sc[SC_N0, b] = 0.0
                sc[SC_N1, b] = 0.0
                continue
            g = gain - kill_ln + gate_ln
            if rel_el > 0.0:
                g -= _release_rate(band_hz[b], rel_s) * rel_el
            x0 = sc[SC_N0, b] + g
            x1 = sc[SC_N1, b] + g
            sc[SC_N0, b] = math.exp(x0) if x0 > LN_SILENT else 0.0
            sc[SC_N1, b] = math.exp(x1) if x1 > LN_SILENT else 0.0
    return started


@njit(cache=True, nogil=True)
def _xfade_weight(v: int, t_abs: int, vi: np.ndarray, vf: np.ndarray) -> float:
    if vi[v, VI_XF] < 0:
        return 0.0
    length = vf[v, VF_XF_LEN]
    if length <= 0.0:
        return 1.0
    return min(max((t_abs - vi[v, VI_XF]) / length, 0.0), 1.0)


@njit(cache=True, nogil=True, fastmath=True)
def voice_partials(
    v: int,
    t_abs: int,
    out_l: np.ndarray,
    out_r: np.ndarray,
    out_f: np.ndarray,
    vi: np.ndarray,
    vf: np.ndarray,
    vt: np.ndarray,
    vd: np.ndarray,
    vo: np.ndarray,
    ti: np.ndarray,
    arena: np.ndarray,
    band_hz: np.ndarray,
    cfg: np.ndarray,
    sc: np.ndarray,
) -> float:
    """Left/right amplitudes and bent frequencies of every partial of voice ``v`` at ``t_abs``.

    Returns the largest amplitude."""
    n_partials = vi[v, VI_K]
    x = _xfade_weight(v, t_abs, vi, vf)
    slot = 1 if x >= 1.0 else 0
    _slot_values(v, slot, t_abs, np.int64(1), vi, vf, vt, vd, vo, ti, arena, band_hz, cfg, sc)
    layout = vi[v, VI_LAYOUT]
    for k in range(n_partials):
        c0 = sc[SC_C0, k]
        c1 = sc[SC_C1, k]
        if layout == 1:
            out_l[k] = c0 + c1
            out_r[k] = c0 - c1
        else:
            out_l[k] = c0
            out_r[k] = c1
        out_f[k] = sc[SC_F, k]
    if 0.0 < x < 1.0:
        for k in range(n_partials):
            sc[SC_BL, k] = out_l[k]
            sc[SC_BR, k] = out_r[k]
            sc[SC_BF, k] = out_f[k]
        _slot_values(v, np.int64(1), t_abs, np.int64(1), vi, vf, vt, vd, vo, ti, arena, band_hz, cfg, sc)
        for k in range(n_partials):
            c0 = sc[SC_C0, k]
            c1 = sc[SC_C1, k]
            bl = c0 + c1 if layout == 1 else c0
            br = c0 - c1 if layout == 1 else c1
            out_l[k] = (1.0 - x) * sc[SC_BL, k] + x * bl
            out_r[k] = (1.0 - x) * sc[SC_BR, k] + x * br
            out_f[k] = (1.0 - x) * sc[SC_BF, k] + x * sc[SC_F, k]
    bend = math.exp(vf[v, VF_BEND])
    level = 0.0
    for k in range(n_partials):
        out_f[k] *= bend
        level = max(level, abs(out_l[k]), abs(out_r[k]))
    return level


@njit(cache=True, nogil=True, fastmath=True)
def _voice_noise(
    v: int,
    t_abs: int,
    cov: np.ndarray,
    vi: np.ndarray,
    vf: np.ndarray,
    vt: np.ndarray,
    vd: np.ndarray,
    vo: np.ndarray,
    ti: np.ndarray,
    arena: np.ndarray,
    band_hz: np.ndarray,
    cfg: np.ndarray,
    sc: np.ndarray,
) -> float:
    """Add voice ``v``'s noise power at ``t_abs`` into the left/right covariance ``cov`` (3, n_bands).

    Returns the voice's largest band gain."""
    n_bands = band_hz.shape[0]
    x = _xfade_weight(v, t_abs, vi, vf)
    layout = vi[v, VI_LAYOUT]
    peak = 0.0
    for slot in range(2):
        wt = 1.0 - x if slot == 0 else x
        if wt <= 0.0:
            continue
        _slot_values(v, slot, t_abs, np.int64(2), vi, vf, vt, vd, vo, ti, arena, band_hz, cfg, sc)
        for b in range(n_bands):
            g0 = sc[SC_N0, b]
            g1 = sc[SC_N1, b]
            peak = max(peak, g0, g1)
            p0 = wt * g0 * g0
            p1 = wt * g1 * g1
            if layout == 0:
                cov[0, b] += p0
                cov[1, b] += p1
            elif layout == 1:
                cov[0, b] += p0 + p1
                cov[1, b] += p0 + p1
                cov[2, b] += p0 - p1
            else:
                cov[0, b] += p0
                cov[1, b] += p0
                cov[2, b] += p0
    return peak


@njit(cache=True, nogil=True)
def _cis_small(x: float) -> tuple[float, float]:
    """``(cos x, sin x)``; a short series for the tiny per-sample frequency slopes."""
    if abs(x) < 1e-3:
        x2 = x * x
        return 1.0 - x2 * (0.5 - x2 / 24.0), x * (1.0 - x2 * (1.0 / 6.0 - x2 / 120.0))
    return math.cos(x), math.sin(x)


@njit(cache=True, nogil=True, fastmath=True)
def setup_period(
    vp_v: np.ndarray,
    n_partials: int,
    n_running: int,
    lc: np.ndarray,
    rc: np.ndarray,
    fc: np.ndarray,
    phase_before: np.ndarray,
    offset: IntLike,
    control_period: int,
    sample_rate: float,
    resync: bool,
) -> tuple[int, int]:
    """Start the oscillators of one voice for a control period.

    Amplitudes and frequencies go linearly from ``lc/rc/fc`` (at the period's first sample) to the
    targets ``vp_v[PL_LT/PL_RT/PL_FT]`` (at the next control point). ``phase_before`` is the phase
    before sample ``offset`` of the period (the first one rendered); ``vp_v[PL_PHI]`` receives the
    exact phase before the next period. ``n_running`` partials ran in the previous period: unless
    ``resync``, those that continue keep their running ``exp(i phi)`` and ``exp(i dphi)`` (which
    the recursion has brought to this period's start), renormalised; the others start from the
    exact phase. Returns ``(n_fast, n_active)``.
    """
    step = TWO_PI / sample_rate
    nyq = 0.5 * sample_rate
    c = float(control_period)
    m = float(offset)
    # save the running state of the previous period per partial
    for k in range(n_partials):
        vp_v[PL_KACT, k] = 0.0
    if not resync:
        for j in range(n_running):
            k = int(vp_v[PL_IDX, j])
            if k < n_partials:
                vp_v[PL_KZR, k] = vp_v[PL_ZR, j]
                vp_v[PL_KZI, k] = vp_v[PL_ZI, j]
                vp_v[PL_KRR, k] = vp_v[PL_RR, j]
                vp_v[PL_KRI, k] = vp_v[PL_RI, j]
                vp_v[PL_KACT, k] = 1.0
    n_fast = 0
    n_active = 0
    for rnd in range(2):
        j = n_fast if rnd == 1 else 0
        for k in range(n_partials):
            f0 = fc[k]
            f1 = vp_v[PL_FT, k]
            l0 = lc[k]
            r0 = rc[k]
            l1 = vp_v[PL_LT, k]
            r1 = vp_v[PL_RT, k]
            if l0 == 0.0 and r0 == 0.0 and l1 == 0.0 and r1 == 0.0:
                continue
            below0 = f0 < nyq
            below1 = f1 < nyq
            if not (below0 or below1):
                continue
            crossing = not (below0 and below1)
            if crossing != (rnd == 1):
                continue
            d0 = step * f0
            dl = step * (f1 - f0) / c
            d_first = d0 + m * dl
            if vp_v[PL_KACT, k] > 0.0 and offset == 0:
                zr = vp_v[PL_KZR, k]
                zi = vp_v[PL_KZI, k]
                rr = vp_v[PL_KRR, k]
                ri = vp_v[PL_KRI, k]
                gz = 1.5 - 0.5 * (zr * zr + zi * zi)
                gr = 1.5 - 0.5 * (rr * rr + ri * ri)
                vp_v[PL_ZR, j] = zr * gz
                vp_v[PL_ZI, j] = zi * gz
                vp_v[PL_RR, j] = rr * gr
                vp_v[PL_RI, j] = ri * gr
            else:
                ph = phase_before[k]
                vp_v[PL_ZR, j] = math.cos(ph)
                vp_v[PL_ZI, j] = math.sin(ph)
                vp_v[PL_RR, j] = math.cos(d_first)
                vp_v[PL_RI, j] = math.sin(d_first)
            er, ei = _cis_small(dl)
            vp_v[PL_ER, j] = er
            vp_v[PL_EI, j] = ei
            dal = (l1 - l0) / c
            dar = (r1 - r0) / c
            vp_v[PL_AL, j] = l0 + m * dal
            vp_v[PL_AR, j] = r0 + m * dar
            vp_v[PL_DAL, j] = dal
            vp_v[PL_DAR, j] = dar
            vp_v[PL_D, j] = d_first
            vp_v[PL_DD, j] = dl
            vp_v[PL_IDX, j] = k
            j += 1
        if rnd == 0:
            n_fast = j
        else:
            n_active = j
    # exact phase before the next control point, for every partial (running or not)
    for k in range(n_partials):
        d0 = step * fc[k]
        dl = step * (vp_v[PL_FT, k] - fc[k]) / c
        ph = phase_before[k] + (c - m) * d0 + dl * (0.5 * c * (c - 1.0) - 0.5 * m * (m - 1.0))
        vp_v[PL_PHI, k] = ph - TWO_PI * math.floor(ph / TWO_PI)
    return n_fast, n_active


@njit(cache=True, nogil=True, fastmath=True)
def run_oscillators(
    vp_v: np.ndarray, n_fast: int, n_active: int, out: np.ndarray, o0: IntLike, n_samples: int
) -> None:
    """Render ``n_samples`` of the running partials of one voice, adding into ``out[:, o0:o0+n]``."""
    zr = vp_v[PL_ZR]
    zi = vp_v[PL_ZI]
    rr = vp_v[PL_RR]
    ri = vp_v[PL_RI]
    er = vp_v[PL_ER]
    ei = vp_v[PL_EI]
    al = vp_v[PL_AL]
    ar = vp_v[PL_AR]
    dal = vp_v[PL_DAL]
    dar = vp_v[PL_DAR]
    out_l = out[0]
    out_r = out[1]
    for n in range(n_samples):
        s_l = 0.0
        s_r = 0.0
        for j in range(n_fast):
            a = zr[j] * rr[j] - zi[j] * ri[j]
            b = zr[j] * ri[j] + zi[j] * rr[j]
            zr[j] = a
            zi[j] = b
            s_l += al[j] * b
            s_r += ar[j] * b
            c = rr[j] * er[j] - ri[j] * ei[j]
            ri[j] = rr[j] * ei[j] + ri[j] * er[j]
            rr[j] = c
            al[j] += dal[j]
            ar[j] += dar[j]
        out_l[o0 + n] += s_l
        out_r[o0 + n] += s_r
    if n_active > n_fast:
        d = vp_v[PL_D]
        dd = vp_v[PL_DD]
        for n in range(n_samples):
            s_l = 0.0
            s_r = 0.0
            for j in range(n_fast, n_active):
                a = zr[j] * rr[j] - zi[j] * ri[j]
                b = zr[j] * ri[j] + zi[j] * rr[j]
                zr[j] = a
                zi[j] = b
                if d[j] < math.pi:
                    s_l += al[j] * b
                    s_r += ar[j] * b
                c = rr[j] * er[j] - ri[j] * ei[j]
                ri[j] = rr[j] * ei[j] + ri[j] * er[j]
                rr[j] = c
                d[j] += dd[j]
                al[j] += dal[j]
                ar[j] += dar[j]
            out_l[o0 + n] += s_l
            out_r[o0 + n] += s_r


@njit(cache=True, nogil=True)
def oscillator_bank_controls(
    freq_ctrl: np.ndarray,
    amp_ctrl: np.ndarray,
    control_period: int,
    n_samples: int,
    sample_rate: float,
    initial_phase: np.ndarray,
    out: np.ndarray,
    vp_v: np.ndarray,
    lc: np.ndarray,
    fc: np.ndarray,
) -> None:
    """Mono oscillator bank from control-point values, rendered with the engine's recursion.

    Equals ``oscillator_bank(upsample_controls(freq_ctrl, ...), upsample_controls(amp_ctrl, ...))``
    (the values hold after the last control point). ``out`` has shape ``(2, n_samples)``; both rows
    receive the same signal. ``vp_v`` (N_PL, n_partials), ``lc``/``fc`` (n_partials,) are work space.
    """
    n_partials, n_ctrl = freq_ctrl.shape
    phase = initial_phase.copy()
    for k in range(n_partials):
        vp_v[PL_PHI, k] = phase[k]
    p = 0
    i = 0
    n_act = 0
    while p < n_samples:
        nxt = min(i + 1, n_ctrl - 1)
        for k in range(n_partials):
            lc[k] = amp_ctrl[k, i]
            fc[k] = freq_ctrl[k, i]
            vp_v[PL_LT, k] = amp_ctrl[k, nxt]
            vp_v[PL_RT, k] = amp_ctrl[k, nxt]
            vp_v[PL_FT, k] = freq_ctrl[k, nxt]
        for k in range(n_partials):
            phase[k] = vp_v[PL_PHI, k]
        resync = p == 0 or (p // control_period) % RESYNC_PERIODS == 0
        n_fast, n_act = setup_period(
            vp_v, n_partials, n_act, lc, lc, fc, phase, np.int64(0), control_period, sample_rate, resync
        )
        n = min(control_period, n_samples - p)
        run_oscillators(vp_v, n_fast, n_act, out, p, n)
        p += n
        i = nxt if i < n_ctrl - 1 else i


@njit(cache=True, nogil=True)
def _control_update(
    v: int,
    p_abs: int,
    offset: IntLike,
    vi: np.ndarray,
    vf: np.ndarray,
    vp: np.ndarray,
    vt: np.ndarray,
    vd: np.ndarray,
    vo: np.ndarray,
    ti: np.ndarray,
    arena: np.ndarray,
    band_hz: np.ndarray,
    cfg: np.ndarray,
    sc: np.ndarray,
) -> None:
    """Set up voice ``v`` for the control period starting at ``p_abs``.

    ``offset > 0`` only for a voice whose note starts inside the period (at ``p_abs + offset``)."""
    ctrl = int(cfg[CF_CTRL])
    sr = cfg[CF_SR]
    n_partials = vi[v, VI_K]
    vp_v = vp[v]
    starting = vi[v, VI_STATE] == 2
    a = cfg[CF_ALPHA]
    if starting:
        vf[v, VF_GAIN] = vf[v, VF_GAIN_T]
        vf[v, VF_DYN] = vf[v, VF_DYN_T]
        vf[v, VF_BEND] = vf[v, VF_BEND_T]
    else:
        vf[v, VF_GAIN] += a * (vf[v, VF_GAIN_T] - vf[v, VF_GAIN])
        vf[v, VF_DYN] += a * (vf[v, VF_DYN_T] - vf[v, VF_DYN])
        vf[v, VF_BEND] += a * (vf[v, VF_BEND_T] - vf[v, VF_BEND])
    # a finished articulation cross-fade: slot 1 becomes slot 0
    if vi[v, VI_XF] >= 0 and _xfade_weight(v, p_abs, vi, vf) >= 1.0:
        for j in range(vt.shape[2]):
            vt[v, 0, j] = vt[v, 1, j]
            vd[v, 0, j] = vd[v, 1, j]
            vo[v, 0, j] = vo[v, 1, j]
        vi[v, VI_NA0] = vi[v, VI_NA1]
        vi[v, VI_XF] = -1
    lc = sc[SC_LC]
    rc = sc[SC_RC]
    fc = sc[SC_FC]
    if starting:
        # values at the period start (silent when the note starts later in the period)
        voice_partials(v, p_abs, lc, rc, fc, vi, vf, vt, vd, vo, ti, arena, band_hz, cfg, sc)
        t0 = vt[v, 0, vi[v, VI_MAIN]]
        tab = _table(arena, ti, t0)
        nf = int(ti[t0, TI_NF])
        kt = int(ti[t0, TI_K])
        for k in range(n_partials):
            vp_v[PL_PHI, k] = tab[nf + 1, k] if k < kt else 0.0
    else:
        for k in range(n_partials):
            lc[k] = vp_v[PL_LT, k]
            rc[k] = vp_v[PL_RT, k]
            fc[k] = vp_v[PL_FT, k]
    level = voice_partials(
        v, p_abs + ctrl, vp_v[PL_LT], vp_v[PL_RT], vp_v[PL_FT], vi, vf, vt, vd, vo, ti, arena, band_hz, cfg, sc
    )
    for k in range(n_partials):
        level = max(level, abs(lc[k]), abs(rc[k]))
    vf[v, VF_LEVEL] = level
    # the phase buffer: PL_PHI is rewritten by setup_period, so pass a copy in the scratch rows
    ph = sc[SC_G0]
    for k in range(n_partials):
        ph[k] = vp_v[PL_PHI, k]
    resync = starting or (p_abs // ctrl) % RESYNC_PERIODS == 0
    n_fast, n_act = setup_period(vp_v, n_partials, vi[v, VI_NACT], lc, rc, fc, ph, offset, ctrl, sr, resync)
    vi[v, VI_NFAST] = n_fast
    vi[v, VI_NACT] = n_act
    vi[v, VI_CTRL] = p_abs
    # the kept attack's gain over this period (slot 0, the voice's gain and envelopes)
    tr = vi[v, VI_TR0]
    if tr >= 0:
        # the main anchor's attack, scaled by the interpolated level relative to its own
        j0, j1, w, extra_ln = _anchor_weights(v, np.int64(0), vi, vf, vd)
        level = (1.0 - w) * ti[vt[v, 0, j0], TI_LEVEL] + w * ti[vt[v, 0, j1], TI_LEVEL]
        g = vf[v, VF_GAIN] + extra_ln + level - ti[tr, TI_LEVEL]
        if vi[v, VI_REL] >= 0 and p_abs > vi[v, VI_REL]:
            g -= _release_rate(1000.0, vf[v, VF_REL_S]) * (p_abs - vi[v, VI_REL]) / sr
        if vi[v, VI_KILL] >= 0 and p_abs > vi[v, VI_KILL]:
            g -= KILL_RATE * (p_abs - vi[v, VI_KILL]) / sr
        vf[v, VF_TR_GAIN] = math.exp(g)
    if starting:
        vi[v, VI_STATE] = 1


@njit(cache=True, nogil=True)
def _voice_finished(
    v: int,
    p_abs: int,
    vi: np.ndarray,
    vf: np.ndarray,
    vt: np.ndarray,
    vd: np.ndarray,
    vo: np.ndarray,
    ti: np.ndarray,
    arena: np.ndarray,
    band_hz: np.ndarray,
    cfg: np.ndarray,
    sc: np.ndarray,
    cov: np.ndarray,
) -> bool:
    """Whether a released, stolen or run-out voice has become inaudible."""
    sr = cfg[CF_SR]
    t0 = vt[v, 0, vi[v, VI_MAIN]]
    past_end = (p_abs - vi[v, VI_START]) / sr * ti[t0, TI_FPS] > ti[t0, TI_LAST] and ti[t0, TI_LE] <= ti[t0, TI_LS] + 1.0
    if not (vi[v, VI_REL] >= 0 or vi[v, VI_KILL] >= 0 or past_end):
        return False
    done = cfg[CF_DONE]
    if vf[v, VF_LEVEL] >= done:
        return False
    if band_hz.shape[0] > 0:
        for b in range(band_hz.shape[0]):
            cov[0, b] = 0.0
            cov[1, b] = 0.0
            cov[2, b] = 0.0
        peak = _voice_noise(v, p_abs, cov, vi, vf, vt, vd, vo, ti, arena, band_hz, cfg, sc)
        if peak >= done:
            return False
    if vi[v, VI_TR0] >= 0:
        tr = vi[v, VI_TR0]
        if p_abs - vi[v, VI_START] < int(ti[tr, TI_TR_START] + ti[tr, TI_TR_LEN]):
            return False
    return True


# ---- noise ---------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _rotl(x: np.uint64, k: IntLike) -> np.uint64:
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True, nogil=True)
def _next_u64(s: np.ndarray) -> np.uint64:
    """xoshiro256** (state: 4 uint64 words)."""
    result = _rotl(s[1] * np.uint64(5), np.int64(7)) * np.uint64(9)
    t = s[1] << np.uint64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], np.int64(45))
    return result


@njit(cache=True, nogil=True)
def _uniform(s: np.ndarray) -> float:
    """Uniform in (0, 1]."""
    return (float(_next_u64(s) >> np.uint64(11)) + 1.0) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def unit_deviates(s: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` with independent deviates of zero mean and unit variance (uniform on
    ``[-sqrt(3), sqrt(3)]``, two per 64-bit draw of xoshiro256**). Used as the real and imaginary
    parts of noise spectra: the time signal, a sum over many bins, is Gaussian all the same."""
    n = out.shape[0]
    scale = 2.0 * math.sqrt(3.0) / 4294967296.0
    lo_mask = np.uint64(0xFFFFFFFF)
    i = 0
    while i < n:
        x = _next_u64(s)
        out[i] = float(x & lo_mask) * scale - math.sqrt(3.0)
        if i + 1 < n:
            out[i + 1] = float(x >> np.uint64(32)) * scale - math.sqrt(3.0)
        i += 2


@njit(cache=True, nogil=True)
def seed_state(seed: int, s: np.ndarray) -> None:
    """Initialise a xoshiro256** state from an integer seed (splitmix64)."""
    x = np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15)
    for i in range(4):
        x += np.uint64(0x9E3779B97F4A7C15)
        z = x
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        s[i] = z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _ifft_inplace(re: np.ndarray, im: np.ndarray, bitrev: np.ndarray, tw_re: np.ndarray, tw_im: np.ndarray) -> None:
    """In-place radix-2 inverse DFT with 1/N scaling: ``x[n] = 1/N sum_k X[k] exp(+2 pi i k n / N)``."""
    n = re.shape[0]
    for i in range(n):
        j = bitrev[i]
        if j > i:
            t = re[i]
            re[i] = re[j]
            re[j] = t
            t = im[i]
            im[i] = im[j]
            im[j] = t
    size = 2
    while size <= n:
        half = size // 2
        stride = n // size
        for k in range(half):
            wr = tw_re[k * stride]
            wi = tw_im[k * stride]
            for a in range(k, n, size):
                b = a + half
                xr = re[b] * wr - im[b] * wi
                xi = re[b] * wi + im[b] * wr
                re[b] = re[a] - xr
                im[b] = im[a] - xi
                re[a] += xr
                im[a] += xi
        size *= 2
    inv = 1.0 / n
    for i in range(n):
        re[i] *= inv
        im[i] *= inv


@njit(cache=True, nogil=True)
def noise_frame(
    cov: np.ndarray,
    bin_map: np.ndarray,
    bin_bands: np.ndarray,
    window: np.ndarray,
    rng_state: np.ndarray,
    deviates: np.ndarray,
    fre: np.ndarray,
    fim: np.ndarray,
    bitrev: np.ndarray,
    tw_re: np.ndarray,
    tw_im: np.ndarray,
    ring: np.ndarray,
    ring_pos: int,
) -> None:
    """One stereo frame of band-shaped noise, overlap-added into ``ring`` at ``ring_pos``.

    ``cov`` (3, n_bands) holds the band powers of the left and right channels and their
    cross-power; ``bin_map`` (n_bins, n_bands) spreads band power over FFT bins, and
    ``bin_bands`` (n_bins, 2) gives the range of bands with a non-zero entry for each bin. Two independent
    unit-variance white spectra ``X1, X2`` become ``L = a X1`` and ``R = b X1 + c X2`` with
    ``(a, b, c)`` the Cholesky factor of each bin's 2x2 covariance; both inverse transforms come
    from one complex IFFT of ``L + i R``.
    """
    n_fft = fre.shape[0]
    n_bins = n_fft // 2 + 1
    unit_deviates(rng_state, deviates)  # 2 * (n_fft + 2) deviates: X1 then X2
    half = math.sqrt(0.5 * n_fft)
    full = math.sqrt(float(n_fft))
    for k in range(n_bins):
        pll = 0.0
        prr = 0.0
        plr = 0.0
        for b in range(bin_bands[k, 0], bin_bands[k, 1]):
            m = bin_map[k, b]
            pll += m * cov[0, b]
            prr += m * cov[1, b]
            plr += m * cov[2, b]
        ca = math.sqrt(max(pll, 0.0))
        cb = plr / ca if ca > 0.0 else 0.0
        cc = math.sqrt(max(prr - cb * cb, 0.0))
        if k == 0 or k == n_bins - 1:
            x1r = full * deviates[2 * k]
            x1i = 0.0
            x2r = full * deviates[n_fft + 2 + 2 * k]
            x2i = 0.0
        else:
            x1r = half * deviates[2 * k]
            x1i = half * deviates[2 * k + 1]
            x2r = half * deviates[n_fft + 2 + 2 * k]
            x2i = half * deviates[n_fft + 3 + 2 * k]
        lr = ca * x1r
        li = ca * x1i
        rr_ = cb * x1r + cc * x2r
        ri_ = cb * x1i + cc * x2i
        # Z = L + i R at bin k, and the conjugate-symmetric image at n_fft - k
        fre[k] = lr - ri_
        fim[k] = li + rr_
        if 0 < k < n_bins - 1:
            fre[n_fft - k] = lr + ri_
            fim[n_fft - k] = -li + rr_
    _ifft_inplace(fre, fim, bitrev, tw_re, tw_im)
    size = ring.shape[1]
    for i in range(n_fft):
        pos = (ring_pos + i) % size
        ring[0, pos] += window[i] * fre[i]
        ring[1, pos] += window[i] * fim[i]


# ---- the render loop -----------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def render(
    out: np.ndarray,
    o0: int,
    n0: int,
    n1: int,
    vi: np.ndarray,
    vf: np.ndarray,
    vp: np.ndarray,
    vt: np.ndarray,
    vd: np.ndarray,
    vo: np.ndarray,
    ti: np.ndarray,
    arena: np.ndarray,
    band_hz: np.ndarray,
    cfg: np.ndarray,
    sc: np.ndarray,
    cov: np.ndarray,
    bin_map: np.ndarray,
    bin_bands: np.ndarray,
    window: np.ndarray,
    rng_state: np.ndarray,
    deviates: np.ndarray,
    fre: np.ndarray,
    fim: np.ndarray,
    bitrev: np.ndarray,
    tw_re: np.ndarray,
    tw_im: np.ndarray,
    ring: np.ndarray,
    marks: np.ndarray,
    junk: np.ndarray,
) -> int:
    """Render absolute samples ``[n0, n1)`` into ``out[:, o0 : o0 + n1 - n0]`` (added).

    ``marks`` holds the last control point and the last noise frame already handled, so that a span
    may end and the next begin anywhere. ``junk`` (2, control_period) receives the partials of a
    voice before its onset (rendered to keep the oscillators running, then discarded). Voices that became inaudible are freed (state 0). Returns
    the number of voices freed.
    """
    ctrl = int(cfg[CF_CTRL])
    hop = int(cfg[CF_HOP])
    n_fft = int(cfg[CF_NFFT])
    n_voices = vi.shape[0]
    has_noise = band_hz.shape[0] > 0
    freed = 0
    # notes starting at n0 (the engine splits spans at every event)
    for v in range(n_voices):
        if vi[v, VI_STATE] == 2:
            p = (n0 // ctrl) * ctrl
            _control_update(v, p, n0 - p, vi, vf, vp, vt, vd, vo, ti, arena, band_hz, cfg, sc)
    n = n0
    while n < n1:
        if n % ctrl == 0 and marks[0] != n:
            marks[0] = n
            for v in range(n_voices):
                if vi[v, VI_STATE] == 1 and vi[v, VI_CTRL] != n:
                    if _voice_finished(v, n, vi, vf, vt, vd, vo, ti, arena, band_hz, cfg, sc, cov):
                        vi[v, VI_STATE] = 0
                        freed += 1
                        continue
                    _control_update(v, n, np.int64(0), vi, vf, vp, vt, vd, vo, ti, arena, band_hz, cfg, sc)
        if has_noise and n % hop == 0 and marks[1] != n:
            marks[1] = n
            any_voice = False
            for b in range(band_hz.shape[0]):
                cov[0, b] = 0.0
                cov[1, b] = 0.0
                cov[2, b] = 0.0
            for v in range(n_voices):
                if vi[v, VI_STATE] == 1:
                    any_voice = True
                    _voice_noise(v, n + n_fft // 2, cov, vi, vf, vt, vd, vo, ti, arena, band_hz, cfg, sc)
            if any_voice:
                noise_frame(cov, bin_map, bin_bands, window, rng_state, deviates, fre, fim, bitrev, tw_re, tw_im, ring, n % ring.shape[1])
        stop = min(n1, (n // ctrl + 1) * ctrl)
        if has_noise:
            stop = min(stop, (n // hop + 1) * hop)
        count = stop - n
        base = o0 + n - n0
        for v in range(n_voices):
            if vi[v, VI_STATE] != 1:
                continue
            onset = vi[v, VI_ONSET]
            if onset > n:
                pre = min(onset, stop) - n
                run_oscillators(vp[v], vi[v, VI_NFAST], vi[v, VI_NACT], junk, np.int64(0), pre)
                if stop > onset:
                    run_oscillators(vp[v], vi[v, VI_NFAST], vi[v, VI_NACT], out, base + pre, count - pre)
            else:
                run_oscillators(vp[v], vi[v, VI_NFAST], vi[v, VI_NACT], out, base, count)
            tr = vi[v, VI_TR0]
            if tr >= 0:
                trw = _transient(arena, ti, tr)
                start = vi[v, VI_START] + int(ti[tr, TI_TR_START])
                length = int(ti[tr, TI_TR_LEN])
                lo = max(n, start)
                hi = min(stop, start + length)
                if hi > lo:
                    g = vf[v, VF_TR_GAIN]
                    for i in range(lo, hi):
                        out[0, base + i - n] += g * trw[0, i - start]
                        out[1, base + i - n] += g * trw[1, i - start]
        if has_noise:
            size = ring.shape[1]
            for i in range(count):
                pos = (n + i) % size
                out[0, base + i] += ring[0, pos]
                out[1, base + i] += ring[1, pos]
                ring[0, pos] = 0.0
                ring[1, pos] = 0.0
        n = stop
    return freed
