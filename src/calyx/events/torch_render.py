"""The differentiable twin of :mod:`calyx.events.render`, in torch.

Same model, same formulas, same noise tables and windows; tested against the numpy decoder in
float64. Events are batched by window length: each batch is one batched matrix product (the
block evaluation of the damped partials), and all batches are added into the output with one
``index_add``. Gradients reach every event parameter, the event times (through the sub-sample
part of the placement, evaluated analytically) and the room.

torch is imported only by this module and the encoder's refinement.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from numpy.typing import NDArray

from calyx.errors import ParameterError
from calyx.events.params import DECAY_ANCHORS_HZ, N_PARAMS, N_PARTIALS, N_ROOM_PARAMS, N_SHAPE
from calyx.events.render import (
    _I,
    BLOCK,
    BURST_SEED,
    DRY_ROOM_DB,
    LN1000,
    NOISE_TABLE_S,
    ROOM_SEED,
    ROOM_TABLE_S,
    event_lengths,
    noise_band_centres_hz,
    noise_table,
    top_frequency_hz,
)

__all__ = [
    "TorchControls",
    "event_controls_t",
    "fft_convolve_t",
    "render_events_t",
    "render_t",
    "room_impulse_response_t",
]

Tensor = torch.Tensor

#: Events are rendered in batches of about this many samples in all.
BATCH_SAMPLES = 1 << 20


def _interp_anchors_t(log2_f: Tensor, values: Tensor) -> Tensor:
    x0 = math.log2(DECAY_ANCHORS_HZ[0])
    dx = math.log2(DECAY_ANCHORS_HZ[1]) - x0
    n_a = len(DECAY_ANCHORS_HZ)
    u = torch.clamp((log2_f - x0) / dx, 0.0, n_a - 1.0)
    i0 = torch.clamp(torch.floor(u.detach()), 0, n_a - 2).long()
    frac = u - i0.to(u.dtype)
    v0 = torch.gather(values, -1, i0)
    v1 = torch.gather(values, -1, i0 + 1)
    return v0 * (1.0 - frac) + v1 * frac


class TorchControls:
    """Physical controls of events as tensors (see :class:`calyx.events.render.EventControls`)."""

    def __init__(self, params: Tensor, *, sample_rate: float) -> None:
        p = params
        if p.ndim != 2 or p.shape[1] != N_PARAMS:
            raise ParameterError(f"params must have shape (n_events, {N_PARAMS}), got {tuple(p.shape)}")
        dt = p.dtype
        k = torch.arange(1, N_PARTIALS + 1, dtype=dt)
        f0 = 440.0 * torch.pow(2.0, (p[:, _I["pitch"]] - 69.0) / 12.0)[:, None]
        b = torch.pow(10.0, p[:, _I["inharm"]])[:, None]
        self.freq_hz = k * f0 * torch.sqrt(1.0 + b * k**2)
        f_top = top_frequency_hz(sample_rate)
        t = torch.clamp((f_top - self.freq_hz) / (0.1 * f_top), 0.0, 1.0)
        taper = t * t * (3.0 - 2.0 * t)
        log2k = torch.log2(k)
        basis = torch.cos(math.pi * torch.arange(1, N_SHAPE + 1, dtype=dt)[:, None] * log2k[None, :]
                          / math.log2(N_PARTIALS))
        shape_db = p[:, _I["tilt"]][:, None] * log2k + p[:, _I["shape"] : _I["shape"] + N_SHAPE] @ basis
        raw = torch.pow(10.0, shape_db / 20.0) * taper
        norm = torch.sqrt(torch.sum(raw**2, dim=1, keepdim=True) + 1e-30)
        self.amp = torch.pow(10.0, p[:, _I["level"]][:, None] / 20.0) * raw / norm
        n_a = len(DECAY_ANCHORS_HZ)
        log_t60 = _interp_anchors_t(torch.log2(self.freq_hz), p[:, _I["t60"] : _I["t60"] + n_a])
        self.rate1 = LN1000 / torch.pow(10.0, log_t60)
        self.rate2 = self.rate1 / torch.pow(10.0, p[:, _I["after_ratio"]])[:, None]
        w = torch.pow(10.0, p[:, _I["after_db"]] / 20.0)
        self.weight2 = w / (1.0 + w)
        self.attack_s = torch.pow(10.0, p[:, _I["attack"]])
        self.duration_s = p[:, _I["duration"]]
        self.release_rate = LN1000 / torch.pow(10.0, p[:, _I["release"]])
        centres = torch.tensor(np.array(noise_band_centres_hz(float(sample_rate))), dtype=dt)
        h = torch.pow(10.0, p[:, _I["noise_tilt"]][:, None] * torch.log2(centres / 1000.0)[None, :] / 20.0)
        h = h / torch.sqrt(torch.sum(h**2, dim=1, keepdim=True))
        self.noise_gain = torch.pow(10.0, p[:, _I["noise_db"]][:, None] / 20.0) * h
        self.noise_rate = LN1000 / torch.pow(10.0, p[:, _I["noise_t60"]])


def event_controls_t(params: Tensor, *, sample_rate: float) -> TorchControls:
    """Torch twin of :func:`calyx.events.render.event_controls`."""
    return TorchControls(params, sample_rate=sample_rate)


@lru_cache(maxsize=8)
def _cached_table(sample_rate: float, seed: int, seconds: float) -> Tensor:
    return torch.tensor(np.array(noise_table(sample_rate, seconds, seed)), dtype=torch.float64)


def _noise_table_t(sample_rate: float, dtype: torch.dtype, seed: int, seconds: float) -> Tensor:
    return _cached_table(float(sample_rate), seed, seconds).to(dtype)


def _render_batch(
    c: TorchControls,
    sel: Tensor,
    start_s: Tensor,
    n: int,
    sample_rate: float,
    block: int,
    noise_tab: Tensor,
    dtype: torch.dtype,
) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Events ``sel`` of ``c`` over ``n`` samples each.

    Returns the bulk ``(len(sel), n)`` and sparse additions ``(offsets, values)`` (offsets in
    samples from each event's first sample, shape ``(len(sel), m)`` each) that complete it: the
    attack, the block in which the damper falls, and the noise burst. Splitting it so keeps the
    per-sample work to one product: inside a block the damper is either absent or a product of a
    per-block and a per-sample factor.
    """
    sr = float(sample_rate)
    n_ev = int(sel.numel())
    freq = c.freq_hz[sel]
    amp1 = c.amp[sel]
    # partials with nothing to say (faded out, above the top) are a suffix: drop it for the batch
    active = max(1, int(torch.max(torch.sum((amp1.detach() > 0).long(), dim=1)).item()))
    freq = freq[:, :active]
    amp1 = amp1[:, :active]
    w2 = c.weight2[sel][:, None]
    amp = torch.cat([amp1 * (1.0 - w2), amp1 * w2], dim=1).to(torch.float64)
    freq2 = torch.cat([freq, freq], dim=1).to(torch.float64)
    rate = torch.cat([c.rate1[sel][:, :active], c.rate2[sel][:, :active]], dim=1).to(torch.float64)
    amp = torch.where(freq2 < sr / 2.0, amp, torch.zeros_like(amp))
    n_blocks = -(-n // block)
    two_pi = 2.0 * math.pi
    # U[e, b, k] = amp z^(t_b), t_b = start + b block / sr; the phase is reduced modulo 2 pi in float64
    # so that float32 batches keep their precision far from the onset
    tb = start_s.to(torch.float64)[:, None] + torch.arange(n_blocks, dtype=torch.float64)[None, :] * (block / sr)
    phase_u = torch.remainder(two_pi * freq2[:, None, :] * tb[:, :, None], two_pi).to(dtype)
    mag_u = amp.to(dtype)[:, None, :] * torch.exp(-rate.to(dtype)[:, None, :] * tb.to(dtype)[:, :, None])
    ur = torch.cat([mag_u * torch.cos(phase_u), mag_u * torch.sin(phase_u)], dim=2)  # (E, nb, 2P)
    tm = torch.arange(block, dtype=dtype) / sr
    phase_v = two_pi * freq2.to(dtype)[:, :, None] * tm
    mag_v = torch.exp(-rate.to(dtype)[:, :, None] * tm)
    vr = torch.cat([mag_v * torch.sin(phase_v), mag_v * torch.cos(phase_v)], dim=1)  # (E, 2P, block)
    raw = torch.bmm(ur, vr)  # (E, nb, block): the partials, without attack or damper

    # damper: 1 in blocks that end before it, exp(-beta (t_b - d)) exp(-beta m / sr) in blocks that
    # start after it; the one block it falls inside is completed below
    dur = c.duration_s[sel][:, None].to(torch.float64)
    beta = c.release_rate[sel][:, None]
    after = (tb >= dur).detach()
    per_block = torch.exp(-beta.to(dtype) * torch.relu(tb - dur).to(dtype))  # (E, nb)
    per_sample = torch.exp(-beta.to(dtype) * tm[None, :])  # (E, block)
    factor = torch.where(after[:, :, None], per_block[:, :, None] * per_sample[:, None, :],
                         torch.ones((), dtype=dtype))
    y = (raw * factor).reshape(n_ev, n_blocks * block)
    if n_blocks * block != n:
        y = y[:, :n]
    extras: list[tuple[Tensor, Tensor]] = []

    # the attack envelope differs from 1 (by more than 1e-16) only over its first 37 time constants
    tau_a = c.attack_s[sel][:, None].to(dtype)
    n_att = min(n, math.ceil(37.0 * float(torch.max(tau_a.detach())) * sr) + 2)
    t_att = start_s.to(dtype)[:, None] + torch.arange(n_att, dtype=dtype)[None, :] / sr
    attack = -torch.expm1(-t_att / tau_a)
    extras.append((torch.arange(n_att).expand(n_ev, n_att), y[:, :n_att] * (attack - 1.0)))

    # the block holding the damper time: exact envelope there (times the attack where it overlaps)
    inside = ((tb < dur) & (tb + (block - 1) / sr > dur)).detach()
    has = inside.any(dim=1)
    if bool(has.any()):
        b_star = torch.argmax(inside.long(), dim=1)  # (E,), meaningless where ~has
        rows = torch.arange(n_ev)
        t_blk = tb[rows, b_star][:, None] + tm.to(torch.float64)[None, :]
        exact = torch.exp(-(beta * torch.relu(t_blk - dur)).to(dtype))
        offs = b_star[:, None] * block + torch.arange(block)[None, :]
        att_blk = -torch.expm1(-(t_blk.to(dtype)) / tau_a)
        att_blk = torch.where(offs < n_att, att_blk, torch.ones((), dtype=dtype))
        vals = raw[rows, b_star] * (exact - 1.0) * att_blk * has[:, None].to(dtype)
        keep = offs < n
        extras.append((torch.where(keep, offs, torch.zeros_like(offs)), torch.where(keep, vals, 0.0 * vals)))

    gains = c.noise_gain[sel].to(dtype)
    if float(torch.max(gains.detach())) > 0.0:
        rate_n = c.noise_rate[sel][:, None].to(dtype)
        n_noise = min(n, noise_tab.shape[1], math.ceil(4.0 * LN1000 / float(torch.min(rate_n.detach())) * sr) + 1)
        t_n = start_s.to(dtype)[:, None] + torch.arange(n_noise, dtype=dtype)[None, :] / sr
        a_n = -torch.expm1(-t_n / tau_a)
        noise = (gains @ noise_tab[:, :n_noise]) * a_n * torch.exp(-rate_n * t_n)
        extras.append((torch.arange(n_noise).expand(n_ev, n_noise), noise))
    return y, extras


def render_events_t(
    times_s: Tensor,
    params: Tensor,
    *,
    sample_rate: float,
    n_samples: int,
    lengths: NDArray[np.integer] | None = None,
    block: int = BLOCK,
) -> Tensor:
    """Torch twin of :func:`calyx.events.render.render_events` (dry mixture).

    Parameters
    ----------
    times_s : torch.Tensor [shape=(n_events,)]
    params : torch.Tensor [shape=(n_events, N_PARAMS)]
    sample_rate : float
    n_samples : int
    lengths : np.ndarray [shape=(n_events,)], optional
        Windows in samples (held fixed while optimising); by default from the current parameters.

    Returns
    -------
    torch.Tensor [shape=(n_samples,)], the dtype of ``params``
    """
    dtype = params.dtype
    n_events = params.shape[0]
    if n_events == 0:
        return torch.zeros(int(n_samples), dtype=dtype)
    if times_s.shape != (n_events,):
        raise ParameterError(f"times_s must have shape ({n_events},), got {tuple(times_s.shape)}")
    if lengths is None:
        lengths = event_lengths(params.detach().cpu().numpy().astype(np.float64), sample_rate=sample_rate)
    lens = np.asarray(lengths, dtype=np.int64)
    c = TorchControls(params, sample_rate=sample_rate)
    sr = float(sample_rate)
    pos = times_s.to(torch.float64) * sr
    i0 = torch.ceil(pos.detach())
    start_s = (i0 - pos) / sr
    noise_tab = _noise_table_t(sr, dtype, BURST_SEED, NOISE_TABLE_S)
    i0_np = i0.long().numpy()
    # a margin on both sides keeps every index valid: no masking
    margin = int(lens.max())
    idx_all: list[Tensor] = []
    val_all: list[Tensor] = []
    n_active = torch.sum((c.amp.detach() > 0).long(), dim=1).numpy()
    for n in np.unique(lens):
        sel_np = np.nonzero((lens == n) & (i0_np < n_samples) & (i0_np + n > 0))[0]
        if sel_np.size == 0:
            continue
        # events with similar numbers of audible partials batch together (each batch renders as
        # many partials as its richest event); batches of about BATCH_SAMPLES samples keep the
        # temporaries in cache
        sel_np = sel_np[np.argsort(n_active[sel_np], kind="stable")]
        per = max(1, BATCH_SAMPLES // int(n))
        for lo in range(0, sel_np.size, per):
            part = sel_np[lo : lo + per]
            sel = torch.as_tensor(part)
            first = torch.as_tensor(i0_np[part] + margin)[:, None]
            bulk, extras = _render_batch(c, sel, start_s[sel], int(n), sr, block, noise_tab, dtype)
            idx_all.append((first + torch.arange(int(n))[None, :]).reshape(-1))
            val_all.append(bulk.reshape(-1))
            for offs, vals in extras:
                idx_all.append((first + offs).reshape(-1))
                val_all.append(vals.reshape(-1))
    out = torch.zeros(int(n_samples) + 2 * margin, dtype=dtype)
    if idx_all:
        out = out.index_add(0, torch.cat(idx_all), torch.cat(val_all))
    return out[margin : margin + int(n_samples)]


def room_impulse_response_t(room: Tensor, *, sample_rate: float) -> Tensor | None:
    """Torch twin of :func:`calyx.events.render.room_impulse_response` (None when dry)."""
    if room.shape != (N_ROOM_PARAMS,):
        raise ParameterError(f"room must have shape ({N_ROOM_PARAMS},), got {tuple(room.shape)}")
    if float(room[0].detach()) <= DRY_ROOM_DB:
        return None
    dt = room.dtype
    centres = torch.tensor(np.array(noise_band_centres_hz(float(sample_rate))), dtype=dt)
    log_t60 = _interp_anchors_t(torch.log2(centres)[None, :], room[None, 1:])[0]
    t60 = torch.pow(10.0, log_t60)
    n = min(math.ceil(float(torch.max(t60.detach())) * sample_rate), int(ROOM_TABLE_S * sample_rate))
    table = _noise_table_t(float(sample_rate), dt, ROOM_SEED, ROOM_TABLE_S)[:, :n]
    tt = torch.arange(n, dtype=dt) / float(sample_rate)
    ir = torch.pow(10.0, room[0] / 20.0) * torch.sum(table * torch.exp(-LN1000 * tt[None, :] / t60[:, None]), dim=0)
    direct = torch.zeros(n, dtype=dt)
    direct[0] = 1.0
    return ir + direct


def fft_convolve_t(x: Tensor, h: Tensor) -> Tensor:
    """``len(x)`` samples of the linear convolution ``x ⊛ h`` (causal, aligned with ``x``)."""
    n = x.shape[-1] + h.shape[-1] - 1
    n_fft = 1 << (n - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(x, n=n_fft) * torch.fft.rfft(h, n=n_fft), n=n_fft)
    return y[..., : x.shape[-1]]


def render_t(
    times_s: Tensor,
    params: Tensor,
    room: Tensor,
    *,
    sample_rate: float,
    n_samples: int,
    lengths: NDArray[np.integer] | None = None,
) -> Tensor:
    """Torch twin of :func:`calyx.events.render.render`: the events, then the room.

    Returns
    -------
    torch.Tensor [shape=(n_samples,)]
    """
    dry = render_events_t(times_s, params, sample_rate=sample_rate, n_samples=n_samples, lengths=lengths)
    ir = room_impulse_response_t(room.to(params.dtype), sample_rate=sample_rate)
    if ir is None or dry.numel() == 0:
        return dry
    return fft_convolve_t(dry, ir)
