"""Joint refinement of all events by gradient descent, and pruning of events that do not pay.

Refinement renders the whole recording with the torch decoder and lowers a multi-resolution
log-mel distance (the scales of LMD, :data:`calyx.metrics.LMD_SCALES`) with Adam. Pruning then
removes, greedily, the event whose removal costs the least, as long as that cost is below the
value of the bits it occupies (``lambda * bits``): an L0 sparsity penalty on the number of events,
measured exactly with the numpy decoder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from calyx.core.spectrum import mel_filterbank, stft
from calyx.core.synthesis import fft_convolve
from calyx.events.params import EVENT_PARAMS, ROOM_PARAMS, param_index
from calyx.events.render import (
    event_lengths,
    placement,
    render_event,
    room_impulse_response,
)
from calyx.metrics import LMD_SCALES

if TYPE_CHECKING:
    import torch

__all__ = ["RefineSettings", "prune", "refine"]

FloatArray = NDArray[np.float64]

_LOG_FLOOR = 1e-5
_ATTACK = param_index("attack_log10_s")

#: Typical step of each event parameter (Adam moves about ``lr * step`` per iteration).
_STEP = {
    "pitch_midi": 0.02, "inharmonicity_log10": 0.03, "level_db": 0.3, "tilt_db_per_octave": 0.3,
    "aftersound_db": 1.0, "aftersound_ratio_log10": 0.03, "duration_s": 0.008,
    "release_t60_log10_s": 0.03, "attack_log10_s": 0.04, "noise_level_db": 1.0,
    "noise_t60_log10_s": 0.04, "noise_tilt_db_per_octave": 0.5,
}


def _steps() -> FloatArray:
    out = []
    for p in EVENT_PARAMS:
        if p.name in _STEP:
            out.append(_STEP[p.name])
        elif p.name.startswith("shape_"):
            out.append(0.5)
        elif p.name.startswith("t60_"):
            out.append(0.03)
        else:
            out.append(0.1)
    return np.array(out)


@dataclass(frozen=True)
class RefineSettings:
    """Knobs of the refinement."""

    n_iter: int = 40
    time_budget_s: float | None = None
    lr: float = 1.0
    lr_final: float = 0.1
    time_step_s: float = 0.0004
    relength_every: int = 10
    fit_room: bool = True
    room_start_db: float = -40.0
    room_probe_iters: int = 8
    rate_divisor: int = 1
    attack_prior: float = 0.002
    threads: int = 1


def _torch_mel_banks(
    sample_rate: float, dtype: torch.dtype, divisor: int = 1
) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """LMD's mel filterbanks for a signal at ``sample_rate / divisor``.

    With ``divisor > 1`` the FFT shrinks by the same factor (same resolution in Hz and seconds),
    and only the mel filters that lie entirely below the reduced Nyquist frequency are kept: the
    loss is then LMD restricted to those bands.
    """
    import torch

    banks = []
    for n_fft, n_mels in LMD_SCALES:
        full = np.array(mel_filterbank(sample_rate=float(sample_rate), n_fft=n_fft, n_mels=n_mels))
        n_small = n_fft // divisor
        n_bins = n_small // 2 + 1
        rows = np.nonzero(np.all(full[:, n_bins:] == 0.0, axis=1))[0] if divisor > 1 else np.arange(n_mels)
        fb = torch.tensor(full[rows][:, :n_bins], dtype=dtype)
        win = torch.hann_window(n_small, periodic=True, dtype=dtype)
        banks.append((n_small, fb, win))
    return banks


def _log_mels(y: torch.Tensor, banks: list[tuple[int, torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    import torch

    out = []
    for n_fft, fb, win in banks:
        spec = torch.stft(y, n_fft=n_fft, hop_length=n_fft // 4, window=win, center=True,
                          pad_mode="constant", return_complex=True)
        mag = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-18)
        out.append(torch.log10(fb @ mag + _LOG_FLOOR))
    return out


def refine(
    x: NDArray[np.floating],
    times_s: FloatArray,
    params: FloatArray,
    room: FloatArray,
    *,
    sample_rate: int,
    settings: RefineSettings | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, dict[str, Any]]:
    """Refine every event (and the room) jointly by Adam on the multi-resolution log-mel distance.

    Parameters
    ----------
    x : np.ndarray [shape=(n_samples,)]
        The recording.
    times_s, params, room : the starting point (see :class:`calyx.events.params.EventList`).
    sample_rate : int
    settings : RefineSettings, optional

    Returns
    -------
    times_s, params, room : the refined values (the best iterate seen)
    stats : dict
        ``loss_start``, ``loss_end``, ``iterations``, ``seconds``.
    """
    import torch

    s = settings or RefineSettings()
    previous_threads = torch.get_num_threads()
    # small tensors and busy machines: one thread is faster than several fighting for the cores
    torch.set_num_threads(max(1, int(s.threads)))
    try:
        return _refine(x, times_s, params, room, sample_rate=sample_rate, s=s)
    finally:
        torch.set_num_threads(previous_threads)


def _refine(
    x: NDArray[np.floating],
    times_s: FloatArray,
    params: FloatArray,
    room: FloatArray,
    *,
    sample_rate: int,
    s: RefineSettings,
) -> tuple[FloatArray, FloatArray, FloatArray, dict[str, Any]]:
    import torch

    started = time.perf_counter()
    if params.shape[0] == 0:
        return times_s, params, room, {"loss_start": float("nan"), "loss_end": float("nan"),
                                       "iterations": 0.0, "seconds": 0.0}
    from calyx.events.torch_render import render_t

    dtype = torch.float32
    div = max(1, int(s.rate_divisor))
    rate = sample_rate // div if sample_rate % div == 0 else sample_rate
    div = sample_rate // rate
    xr = np.asarray(x, dtype=np.float64)
    if div > 1:
        from scipy.signal import resample_poly

        xr = resample_poly(xr, 1, div)
    n_render = xr.size
    banks = _torch_mel_banks(sample_rate, dtype, div)
    with torch.no_grad():
        target = _log_mels(torch.tensor(xr, dtype=dtype), banks)
    lo = torch.tensor([p.low for p in EVENT_PARAMS], dtype=torch.float64)
    hi = torch.tensor([p.high for p in EVENT_PARAMS], dtype=torch.float64)
    r_lo = torch.tensor([p.low for p in ROOM_PARAMS], dtype=torch.float64)
    r_hi = torch.tensor([p.high for p in ROOM_PARAMS], dtype=torch.float64)
    step = torch.tensor(_steps(), dtype=torch.float64)
    p0 = torch.tensor(params, dtype=torch.float64)
    t0 = torch.tensor(times_s, dtype=torch.float64)
    room0 = np.array(room, dtype=np.float64)
    fit_room = s.fit_room and room0[0] <= -119.0
    if fit_room:
        room0[0] = s.room_start_db
    r0 = torch.tensor(room0, dtype=torch.float64)
    u_p = torch.zeros_like(p0, requires_grad=True)
    u_t = torch.zeros_like(t0, requires_grad=True)
    u_r = torch.zeros_like(r0, requires_grad=True)
    groups = [{"params": [u_p, u_t]}]
    if s.fit_room or room0[0] > -119.0:
        groups.append({"params": [u_r]})
    opt = torch.optim.Adam(groups, lr=s.lr)

    def current() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = torch.minimum(torch.maximum(p0 + step * u_p, lo), hi)
        t = t0 + s.time_step_s * u_t
        r = torch.minimum(torch.maximum(r0 + 0.05 * u_r * torch.tensor([20.0, 1, 1, 1, 1], dtype=torch.float64),
                                        r_lo), r_hi)
        return p, t, r

    best = (float("inf"), times_s.copy(), params.copy(), room0.copy())
    loss_start = float("nan")
    lengths = None
    it = 0
    history: list[float] = []
    room_on = fit_room or room0[0] > -119.0
    dry = torch.tensor(np.concatenate([[-120.0], room0[1:]]), dtype=torch.float64)
    for it in range(s.n_iter):
        p, t, r = current()
        if fit_room and room_on and it == s.room_probe_iters and float(r[0].detach()) < s.room_start_db:
            # the loss pushed the room's level down from where it started: the recording is dry,
            # and the room (an FFT convolution per iteration) is switched off
            room_on = False
        if not room_on:
            r = dry
        if lengths is None or it % s.relength_every == 0:
            lengths = event_lengths(p.detach().numpy(), sample_rate=rate)
        y = render_t(t, p.to(dtype), r.to(dtype), sample_rate=rate, n_samples=n_render, lengths=lengths)
        mels = _log_mels(y, banks)
        loss = torch.stack([torch.mean(torch.abs(m - g)) for m, g in zip(mels, target, strict=True)]).mean()
        value = float(loss.detach())
        # onset time and attack time trade off at the loss's time resolution; a weak prior towards
        # a short (1 ms, hammer-like) attack keeps the onset at the start of the sound
        loss = loss + s.attack_prior * torch.mean((p[:, _ATTACK] + 3.0) ** 2)
        history.append(value)
        if it == 0:
            loss_start = value
        if value < best[0]:
            best = (value, t.detach().numpy().copy(), p.detach().numpy().copy(), r.detach().numpy().copy())
        opt.zero_grad()
        loss.backward()
        frac = it / max(1, s.n_iter - 1)
        for g in opt.param_groups:
            g["lr"] = s.lr * (s.lr_final / s.lr) ** frac
        opt.step()
        if s.time_budget_s is not None and time.perf_counter() - started > s.time_budget_s:
            break
    _, t_best, p_best, r_best = best
    if (fit_room and r_best[0] < -60.0) or not room_on:
        r_best = r_best.copy()
        r_best[0] = -120.0
    stats = {"loss_start": loss_start, "loss_end": best[0], "iterations": float(it + 1),
             "seconds": time.perf_counter() - started, "history": history}
    return t_best, p_best, r_best, stats


# --------------------------------------------------------------------------------------------------
# Pruning


class _LocalLmd:
    """LMD of a mixture against a reference, kept per frame so that local changes are cheap."""

    def __init__(self, x: FloatArray, mix: FloatArray, sample_rate: int) -> None:
        self.sr = float(sample_rate)
        self.mix = mix.copy()
        self.scales = []
        for n_fft, n_mels in LMD_SCALES:
            fb = mel_filterbank(sample_rate=self.sr, n_fft=n_fft, n_mels=n_mels)
            hop = n_fft // 4
            ref = np.log10(np.maximum(fb @ np.abs(stft(x, n_fft=n_fft, hop_length=hop)), _LOG_FLOOR))
            cur = np.log10(np.maximum(fb @ np.abs(stft(self.mix, n_fft=n_fft, hop_length=hop)), _LOG_FLOOR))
            per_frame = np.sum(np.abs(ref - cur), axis=0)
            norm = float(ref.shape[1] * n_mels * len(LMD_SCALES))
            self.scales.append([n_fft, hop, fb, ref, per_frame, norm])

    def frames(self, lo_sample: int, hi_sample: int, scale: int) -> tuple[int, int]:
        n_fft, hop, _, ref, _, _ = self.scales[scale]
        f_lo = max(0, (lo_sample - n_fft // 2) // hop)
        f_hi = min(ref.shape[1], (hi_sample + n_fft // 2) // hop + 2)
        return f_lo, f_hi

    def _frame_costs(
        self, y: FloatArray, f_lo: int, f_hi: int, scale: int, minus: tuple[int, FloatArray] | None = None
    ) -> FloatArray:
        """Per-frame log-mel differences of ``y`` (less ``minus = (i0, signal)``) over [f_lo, f_hi)."""
        n_fft, hop, fb, ref, _, _ = self.scales[scale]
        start = f_lo * hop - n_fft // 2
        seg = np.zeros((f_hi - f_lo - 1) * hop + n_fft)
        a, b = max(start, 0), min(start + seg.size, y.size)
        if b > a:
            seg[a - start : b - start] = y[a:b]
        if minus is not None:
            i0, y_e = minus
            a, b = max(i0, start), min(i0 + y_e.size, start + seg.size)
            if b > a:
                seg[a - start : b - start] -= y_e[a - i0 : b - i0]
        m = fb @ np.abs(stft(seg, n_fft=n_fft, hop_length=hop, center=False)[:, : f_hi - f_lo])
        return np.asarray(np.sum(np.abs(np.log10(np.maximum(m, _LOG_FLOOR)) - ref[:, f_lo:f_hi]), axis=0))

    def removal_cost(self, i0: int, y_e: FloatArray) -> float:
        """Increase of the clip's LMD if ``y_e`` (placed at sample ``i0``) left the mixture."""
        lo, hi = max(i0, 0), min(i0 + y_e.size, self.mix.size)
        if hi <= lo:
            return 0.0
        delta = 0.0
        for sc in range(len(self.scales)):
            f_lo, f_hi = self.frames(lo, hi, sc)
            if f_hi <= f_lo:
                continue
            new = self._frame_costs(self.mix, f_lo, f_hi, sc, minus=(i0, y_e))
            delta += float(np.sum(new) - np.sum(self.scales[sc][4][f_lo:f_hi])) / self.scales[sc][5]
        return delta

    def remove(self, i0: int, y_e: FloatArray) -> None:
        """Take ``y_e`` out of the mixture and update the per-frame costs it touched."""
        lo, hi = max(i0, 0), min(i0 + y_e.size, self.mix.size)
        if hi <= lo:
            return
        self.mix[lo:hi] -= y_e[lo - i0 : hi - i0]
        for sc in range(len(self.scales)):
            f_lo, f_hi = self.frames(lo, hi, sc)
            if f_hi > f_lo:
                self.scales[sc][4][f_lo:f_hi] = self._frame_costs(self.mix, f_lo, f_hi, sc)


def _event_signal(times_s: FloatArray, params: FloatArray, e: int, ir: FloatArray | None,
                  sample_rate: int) -> tuple[int, FloatArray]:
    i0, start_s = placement(float(times_s[e]), sample_rate=sample_rate)
    n = int(event_lengths(params[e : e + 1], sample_rate=sample_rate)[0])
    y = render_event(params[e], sample_rate=sample_rate, n_samples=n, start_s=start_s)
    if ir is not None:
        y = fft_convolve(y, ir)
    return i0, y


def prune(
    x: NDArray[np.floating],
    times_s: FloatArray,
    params: FloatArray,
    room: FloatArray,
    *,
    sample_rate: int,
    threshold: float,
    max_events: int | None = None,
) -> tuple[NDArray[np.bool_], dict[str, float]]:
    """Greedy backward elimination of events whose removal raises LMD by less than ``threshold``.

    Repeats: take the event whose removal costs least; if its cost is out of date (a neighbour
    left since it was measured), measure it again; otherwise remove it when it costs less than
    ``threshold`` (or while more than ``max_events`` remain), else stop. Costs are exact changes
    of the clip's LMD, measured with the numpy decoder on the frames the event touches.

    Returns
    -------
    keep : np.ndarray [shape=(n_events,), bool]
    stats : dict
        ``n_removed`` and ``lmd_increase`` (sum of the measured costs of the removed events).
    """
    xs = np.asarray(x, dtype=np.float64)
    n_ev = params.shape[0]
    keep = np.ones(n_ev, dtype=bool)
    if n_ev == 0:
        return keep, {"n_removed": 0.0, "lmd_increase": 0.0}
    ir = room_impulse_response(room, sample_rate=sample_rate)
    signals = [_event_signal(times_s, params, e, ir, sample_rate) for e in range(n_ev)]
    mix = np.zeros(xs.size)
    for i0, y_e in signals:
        lo, hi = max(i0, 0), min(i0 + y_e.size, mix.size)
        if hi > lo:
            mix[lo:hi] += y_e[lo - i0 : hi - i0]
    loc = _LocalLmd(xs, mix, sample_rate)
    costs = np.array([loc.removal_cost(i0, y_e) for i0, y_e in signals])
    stale = np.zeros(n_ev, dtype=bool)
    spans = np.array([(i0, i0 + y_e.size) for i0, y_e in signals], dtype=np.int64)
    limit = n_ev if max_events is None else max(0, int(max_events))
    guard = 2048
    increase = 0.0
    while np.any(keep):
        live = np.nonzero(keep)[0]
        j = live[int(np.argmin(costs[live]))]
        if costs[j] >= threshold and live.size <= limit:
            if not stale[j]:
                break
        if stale[j]:
            costs[j] = loc.removal_cost(*signals[j])
            stale[j] = False
            continue
        keep[j] = False
        increase += float(costs[j])
        loc.remove(*signals[j])
        lo, hi = spans[j]
        stale |= keep & (spans[:, 0] < hi + guard) & (spans[:, 1] > lo - guard)
    return keep, {"n_removed": float(n_ev - int(np.sum(keep))), "lmd_increase": increase}
