"""The event decoder in numpy: excitation ⊛ resonance per event, placed in time, then one room.

Every event is rendered over its own bounded window (until it has decayed by 60 dB), placed at its
time with sub-sample precision (the event is a function of continuous time, evaluated at the
output's sample times), and the mixture goes once through the room's impulse response with
:func:`calyx.core.synthesis.fft_convolve`. Noise comes from fixed band-limited tables made by
:func:`calyx.core.synthesis.filtered_noise`, so rendering is deterministic.

The resonance's partials are exponentially decaying sinusoids; they are summed by
:func:`damped_partials`, a primitive of this package (not of the core) that evaluates a bank of
constant-frequency, exponentially decaying oscillators as one complex matrix product per block of
samples. It equals :func:`calyx.core.synthesis.oscillator_bank` driven by exponential amplitude
envelopes (tested), at a small fraction of its cost.

The model of one event (times ``t`` in seconds from its onset)::

    f_k      = k f0 sqrt(1 + B k^2),                          k = 1 .. N_PARTIALS
    a_k      = level * shape_k / ||shape||, shape_k = 10^(s_k / 20) * taper(f_k)
    s_k      = tilt log2 k + sum_j c_j cos(pi j log2 k / log2 N_PARTIALS)             [dB]
    tonal(t) = (1 - exp(-t / attack)) * damper(t)
               * sum_k a_k [(1 - w) exp(-a t) + w exp(-a t / r)] sin(2 pi f_k t),  a = ln 1000 / T60(f_k)
    damper(t)= exp(-ln 1000 * max(0, t - duration) / release_T60)
    noise(t) = (1 - exp(-t / attack)) exp(-ln 1000 t / noise_T60) sum_b g_b n_b(t)
    event    = tonal + noise

and the recording is ``room_ir ⊛ sum_e event_e(t - time_e)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from calyx.core.synthesis import band_edges_hz, fft_convolve, filtered_noise
from calyx.errors import ParameterError
from calyx.events.params import (
    DECAY_ANCHORS_HZ,
    F_MAX_HZ,
    N_NOISE_BANDS,
    N_PARAMS,
    N_PARTIALS,
    N_ROOM_PARAMS,
    N_SHAPE,
    EventList,
    midi_to_hz,
)

__all__ = [
    "BLOCK",
    "LN1000",
    "MAX_EVENT_S",
    "NOISE_TABLE_S",
    "EventControls",
    "add_at",
    "blas_single_thread",
    "damped_partials",
    "event_controls",
    "event_lengths",
    "noise_band_centres_hz",
    "noise_table",
    "placement",
    "render",
    "render_event",
    "render_events",
    "room_impulse_response",
    "top_frequency_hz",
    "window_length",
]

FloatArray = NDArray[np.float64]

#: ln(1000): a decay rate of LN1000 / T60 loses 60 dB in T60 seconds.
LN1000 = float(np.log(1000.0))
#: Block length of :func:`damped_partials`.
BLOCK = 256
#: Longest event window in seconds.
MAX_EVENT_S = 20.0
#: Length of the noise tables in seconds (the burst's T60 is at most 1 s).
NOISE_TABLE_S = 1.0
#: Longest room impulse response in seconds (10 ** 0.45 rounded up).
ROOM_TABLE_S = 3.0
#: Seeds of the two fixed noise tables (burst, room).
BURST_SEED = 1
ROOM_SEED = 2
#: Wet levels at or below this are a dry room.
DRY_ROOM_DB = -119.999

_I = {
    "pitch": 0, "inharm": 1, "level": 2, "tilt": 3, "shape": 4, "t60": 4 + N_SHAPE,
    "after_db": 4 + N_SHAPE + 4, "after_ratio": 4 + N_SHAPE + 5, "duration": 4 + N_SHAPE + 6,
    "release": 4 + N_SHAPE + 7, "attack": 4 + N_SHAPE + 8, "noise_db": 4 + N_SHAPE + 9,
    "noise_t60": 4 + N_SHAPE + 10, "noise_tilt": 4 + N_SHAPE + 11,
}
if _I["noise_tilt"] != N_PARAMS - 1:  # pragma: no cover - guards the layout table above
    raise ImportError("calyx.events.render is out of step with the event layout in calyx.events.params")


def top_frequency_hz(sample_rate: float) -> float:
    """Partials fade out below this frequency: ``min(F_MAX_HZ, 0.45 * sample_rate)``."""
    return float(min(F_MAX_HZ, 0.45 * sample_rate))


def _interp_anchors(log2_f: FloatArray, values: FloatArray) -> FloatArray:
    """Piecewise-linear interpolation of anchor values over log2 frequency, held outside.

    ``log2_f`` (..., K) and ``values`` (..., n_anchors) broadcast over the leading axes.
    """
    x0 = np.log2(DECAY_ANCHORS_HZ[0])
    dx = np.log2(DECAY_ANCHORS_HZ[1]) - x0
    n_a = len(DECAY_ANCHORS_HZ)
    u = np.clip((log2_f - x0) / dx, 0.0, n_a - 1.0)
    i0 = np.clip(np.floor(u), 0, n_a - 2).astype(np.int64)
    frac = u - i0
    v0 = np.take_along_axis(values, i0, axis=-1)
    v1 = np.take_along_axis(values, i0 + 1, axis=-1)
    return v0 * (1.0 - frac) + v1 * frac


@lru_cache(maxsize=8)
def noise_band_centres_hz(sample_rate: float) -> FloatArray:
    """Geometric centres of the noise bands, shape ``(N_NOISE_BANDS,)``."""
    edges = band_edges_hz(n_bands=N_NOISE_BANDS, sample_rate=sample_rate)
    c = np.sqrt(np.maximum(edges[:-1], 20.0) * edges[1:])
    c.setflags(write=False)
    return c


@lru_cache(maxsize=8)
def noise_table(sample_rate: float, seconds: float, seed: int) -> FloatArray:
    """Deterministic band-limited noise, one unit-RMS row per band, shape ``(N_NOISE_BANDS, n)``.

    Made with :func:`calyx.core.synthesis.filtered_noise` from one white-noise draw (``seed``), so
    the bands add up to (nearly) that white noise.
    """
    n = int(np.ceil(seconds * sample_rate))
    edges = band_edges_hz(n_bands=N_NOISE_BANDS, sample_rate=sample_rate)
    rows = []
    for b in range(N_NOISE_BANDS):
        gains = np.zeros((N_NOISE_BANDS, 1))
        gains[b, 0] = 1.0
        rows.append(filtered_noise(gains, band_edges=edges, hop_length=256, n_samples=n,
                                   sample_rate=sample_rate, seed=seed))
    table = np.stack(rows)
    table.setflags(write=False)
    return table


@dataclass(frozen=True)
class EventControls:
    """Physical controls of events (the decoder's inputs), one row per event.

    Attributes
    ----------
    freq_hz, amp, rate1, rate2 : np.ndarray [shape=(n_events, N_PARTIALS)]
        Partial frequencies, peak amplitudes at the onset, and decay rates (1/s) of both stages.
    weight2 : np.ndarray [shape=(n_events,)]
        Share of the second (slow) stage in each partial's onset amplitude.
    attack_s, duration_s, release_rate : np.ndarray [shape=(n_events,)]
        Attack time constant, damper time and the damper's extra decay rate (1/s).
    noise_gain : np.ndarray [shape=(n_events, N_NOISE_BANDS)]
        RMS of the burst in each band at its envelope peak.
    noise_rate : np.ndarray [shape=(n_events,)]
        Decay rate of the burst (1/s).
    """

    freq_hz: FloatArray
    amp: FloatArray
    rate1: FloatArray
    rate2: FloatArray
    weight2: FloatArray
    attack_s: FloatArray
    duration_s: FloatArray
    release_rate: FloatArray
    noise_gain: FloatArray
    noise_rate: FloatArray


def event_controls(params: NDArray[np.floating], *, sample_rate: float) -> EventControls:
    """Map parameter rows (physical units) to the decoder's controls.

    Parameters
    ----------
    params : np.ndarray [shape=(n_events, N_PARAMS)]
    sample_rate : float

    Returns
    -------
    EventControls
    """
    p = np.asarray(params, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != N_PARAMS:
        raise ParameterError(f"params must have shape (n_events, {N_PARAMS}), got {p.shape}")
    k = np.arange(1, N_PARTIALS + 1, dtype=np.float64)
    f0 = midi_to_hz(p[:, _I["pitch"]])[:, None]
    b = 10.0 ** p[:, _I["inharm"]][:, None]
    freq = k * f0 * np.sqrt(1.0 + b * k**2)
    f_top = top_frequency_hz(sample_rate)
    t = np.clip((f_top - freq) / (0.1 * f_top), 0.0, 1.0)
    taper = t * t * (3.0 - 2.0 * t)
    log2k = np.log2(k)
    basis = np.cos(np.pi * np.arange(1, N_SHAPE + 1)[:, None] * log2k[None, :] / np.log2(N_PARTIALS))
    shape_db = p[:, _I["tilt"]][:, None] * log2k + p[:, _I["shape"] : _I["shape"] + N_SHAPE] @ basis
    raw = 10.0 ** (shape_db / 20.0) * taper
    norm = np.sqrt(np.sum(raw**2, axis=1, keepdims=True) + 1e-30)
    amp = 10.0 ** (p[:, _I["level"]][:, None] / 20.0) * raw / norm
    log_t60 = _interp_anchors(np.log2(freq), p[:, _I["t60"] : _I["t60"] + len(DECAY_ANCHORS_HZ)])
    rate1 = LN1000 / 10.0**log_t60
    rate2 = rate1 / 10.0 ** p[:, _I["after_ratio"]][:, None]
    w = 10.0 ** (p[:, _I["after_db"]] / 20.0)
    weight2 = w / (1.0 + w)
    centres = noise_band_centres_hz(float(sample_rate))
    h = 10.0 ** (p[:, _I["noise_tilt"]][:, None] * np.log2(centres / 1000.0)[None, :] / 20.0)
    h = h / np.sqrt(np.sum(h**2, axis=1, keepdims=True))
    noise_gain = 10.0 ** (p[:, _I["noise_db"]][:, None] / 20.0) * h
    return EventControls(
        freq_hz=freq,
        amp=amp,
        rate1=rate1,
        rate2=rate2,
        weight2=weight2,
        attack_s=10.0 ** p[:, _I["attack"]],
        duration_s=p[:, _I["duration"]].copy(),
        release_rate=LN1000 / 10.0 ** p[:, _I["release"]],
        noise_gain=noise_gain,
        noise_rate=LN1000 / 10.0 ** p[:, _I["noise_t60"]],
    )


def window_length(n_needed: int) -> int:
    """Smallest window of the form ``2**m`` or ``3 * 2**(m-1)`` (at least ``2 * BLOCK``) holding ``n_needed``.

    Windows come in a few sizes so that events batch together in the torch renderer (and every
    window is a whole number of :data:`BLOCK` samples).
    """
    n = max(int(n_needed), 2 * BLOCK)
    m = int(np.ceil(np.log2(n)))
    three = 3 * 2 ** (m - 2)
    return three if three >= n else 2**m


def event_lengths(params: NDArray[np.floating], *, sample_rate: float) -> NDArray[np.int64]:
    """Window length in samples of each event: until its tonal part and its burst are 60 dB down.

    The tonal part ends at the earlier of (damper time + release T60) and the time its slowest
    partial stage has decayed by 60 dB below the onset; the burst ends after its T60. At most
    :data:`MAX_EVENT_S`.
    """
    c = event_controls(params, sample_rate=sample_rate)
    audible = c.amp > 1e-3 * np.max(c.amp, axis=1, keepdims=True)
    slow1 = np.max(np.where(audible, LN1000 / c.rate1, 0.0), axis=1)
    slow2 = np.max(np.where(audible, 1.0 / c.rate2, 0.0), axis=1) * np.log(
        np.maximum(1000.0 * c.weight2, 1.0)
    )
    natural = np.maximum(slow1, slow2)
    damped = c.duration_s + LN1000 / c.release_rate
    tonal = np.minimum(natural, damped)
    noise = np.where(np.max(c.noise_gain, axis=1) > 1e-7, LN1000 / c.noise_rate, 0.0)
    end_s = np.minimum(np.maximum(tonal, noise), MAX_EVENT_S)
    return np.array([window_length(int(np.ceil(e * sample_rate)) + 1) for e in end_s], dtype=np.int64)


def damped_partials(
    amp: NDArray[np.floating],
    freq_hz: NDArray[np.floating],
    rate: NDArray[np.floating],
    *,
    n_samples: int,
    sample_rate: float,
    start_s: float = 0.0,
    block: int = BLOCK,
) -> FloatArray:
    """Sum of exponentially decaying sinusoids, sampled from time ``start_s`` on.

    ``y[n] = sum_k amp_k exp(-rate_k t_n) sin(2 pi freq_k t_n)`` with ``t_n = start_s + n / sr``,
    computed per block of ``block`` samples as ``Im(U @ V)`` with ``U[b, k] = c_k z_k^(b block)``,
    ``V[k, m] = z_k^m``, ``z_k = exp((-rate_k + 2 pi i freq_k) / sr)`` and
    ``c_k = amp_k exp((-rate_k + 2 pi i freq_k) start_s)``. Partials at or above Nyquist are silenced.

    Parameters
    ----------
    amp, freq_hz, rate : np.ndarray [shape=(n_partials,)]
        Peak amplitudes at ``t = 0``, frequencies in Hz and decay rates in 1/s.
    n_samples : int
    sample_rate : float
    start_s : float
        Time of sample 0 (a fraction of a sample places the bank with sub-sample precision).

    Returns
    -------
    np.ndarray [shape=(n_samples,)]
    """
    a = np.asarray(amp, dtype=np.float64)
    f = np.asarray(freq_hz, dtype=np.float64)
    r = np.asarray(rate, dtype=np.float64)
    if a.ndim != 1 or a.shape != f.shape or a.shape != r.shape:
        raise ParameterError(f"amp, freq_hz and rate must be equal 1-D arrays, got {a.shape}, {f.shape}, {r.shape}")
    if n_samples < 0 or block < 1:
        raise ParameterError(f"need n_samples >= 0 and block >= 1, got {n_samples}, {block}")
    a = np.where(f < sample_rate / 2.0, a, 0.0)
    pole = -r + 2j * np.pi * f
    log_z = pole / sample_rate
    n_blocks = -(-n_samples // block)
    u = (a * np.exp(pole * start_s))[None, :] * np.exp(np.outer(np.arange(n_blocks) * float(block), log_z))
    v = np.exp(np.outer(log_z, np.arange(block, dtype=np.float64)))
    # Im(U V) = Re(U) Im(V) + Im(U) Re(V): one real product of twice the inner size
    y = np.hstack([u.real, u.imag]) @ np.vstack([v.imag, v.real])
    return y.reshape(-1)[:n_samples]


def _attack_envelope(t: FloatArray, attack_s: float) -> FloatArray:
    """``1 - exp(-t / attack_s)``, computed only where it differs from 1 by more than 1e-16."""
    env = np.ones_like(t)
    m = int(np.searchsorted(t, 37.0 * attack_s))
    env[:m] = -np.expm1(-t[:m] / attack_s)
    return env


def _render_controls(c: EventControls, e: int, n: int, sample_rate: float, start_s: float) -> FloatArray:
    """Event ``e`` of ``c`` over ``n`` samples, sample 0 lying ``start_s`` seconds after its onset."""
    amp = np.concatenate([c.amp[e] * (1.0 - c.weight2[e]), c.amp[e] * c.weight2[e]])
    freq = np.concatenate([c.freq_hz[e], c.freq_hz[e]])
    rate = np.concatenate([c.rate1[e], c.rate2[e]])
    keep = amp > 0.0
    y = damped_partials(amp[keep], freq[keep], rate[keep], n_samples=n, sample_rate=sample_rate,
                        start_s=start_s)
    t = start_s + np.arange(n, dtype=np.float64) / sample_rate
    attack = _attack_envelope(t, float(c.attack_s[e]))
    off = int(np.searchsorted(t, c.duration_s[e], side="right"))
    damper = attack.copy()
    damper[off:] *= np.exp(-c.release_rate[e] * (t[off:] - c.duration_s[e]))
    y *= damper
    if np.max(c.noise_gain[e]) > 0.0:
        table = noise_table(float(sample_rate), NOISE_TABLE_S, BURST_SEED)
        m = min(n, table.shape[1], int(np.ceil(4.0 * LN1000 / c.noise_rate[e] * sample_rate)) + 1)
        y[:m] += (c.noise_gain[e] @ table[:, :m]) * attack[:m] * np.exp(-c.noise_rate[e] * t[:m])
    return y


def render_event(
    params: NDArray[np.floating], *, sample_rate: float, n_samples: int | None = None, start_s: float = 0.0
) -> FloatArray:
    """One event from its onset, over its window (or ``n_samples`` samples).

    Parameters
    ----------
    params : np.ndarray [shape=(N_PARAMS,)]
    sample_rate : float
    n_samples : int, optional
        Window length; by default :func:`event_lengths`.
    start_s : float
        Time after the onset of the first sample (0 <= start_s < 1 / sample_rate places the event
        with sub-sample precision).

    Returns
    -------
    np.ndarray [shape=(n_samples,)]
    """
    row = np.asarray(params, dtype=np.float64).reshape(1, N_PARAMS)
    n = int(event_lengths(row, sample_rate=sample_rate)[0]) if n_samples is None else int(n_samples)
    return _render_controls(event_controls(row, sample_rate=sample_rate), 0, n, sample_rate, start_s)


def placement(time_s: float, *, sample_rate: float) -> tuple[int, float]:
    """First output sample of an event at ``time_s`` and that sample's time after the onset.

    Returns ``(i0, start_s)`` with ``i0 = ceil(time_s * sample_rate)`` and
    ``start_s = i0 / sample_rate - time_s`` in ``[0, 1 / sample_rate)``.
    """
    pos = float(time_s) * float(sample_rate)
    i0 = int(np.ceil(pos))
    return i0, (i0 - pos) / float(sample_rate)


def add_at(out: NDArray[np.float64], sound: NDArray[np.floating], *, start: int) -> None:
    """Add ``sound`` into ``out`` from sample ``start`` on (an integer start), dropping what falls outside."""
    s = np.asarray(sound, dtype=np.float64)
    lo = max(start, 0)
    hi = min(start + s.shape[-1], out.shape[-1])
    if hi > lo:
        out[..., lo:hi] += s[..., lo - start : hi - start]


def render_events(
    times_s: NDArray[np.floating],
    params: NDArray[np.floating],
    *,
    sample_rate: float,
    n_samples: int,
    lengths: NDArray[np.integer] | None = None,
) -> FloatArray:
    """Dry mixture of events, each placed at its time with sub-sample precision.

    Each event is evaluated at the exact times of the output samples after its onset (its model is
    a function of continuous time), so the fractional part of the onset costs nothing; the integer
    part is a plain add (:func:`add_at`).

    Parameters
    ----------
    times_s : np.ndarray [shape=(n_events,)]
    params : np.ndarray [shape=(n_events, N_PARAMS)]
    sample_rate : float
    n_samples : int
        Length of the mixture.
    lengths : np.ndarray [shape=(n_events,)], optional
        Window of each event in samples; by default :func:`event_lengths`.

    Returns
    -------
    np.ndarray [shape=(n_samples,)]
    """
    p = np.asarray(params, dtype=np.float64).reshape(-1, N_PARAMS)
    t = np.asarray(times_s, dtype=np.float64).reshape(-1)
    if t.shape[0] != p.shape[0]:
        raise ParameterError(f"{t.shape[0]} times for {p.shape[0]} parameter rows")
    out = np.zeros(int(n_samples))
    if p.shape[0] == 0:
        return out
    c = event_controls(p, sample_rate=sample_rate)
    n_win = event_lengths(p, sample_rate=sample_rate) if lengths is None else np.asarray(lengths)
    for e in range(p.shape[0]):
        i0, start_s = placement(float(t[e]), sample_rate=sample_rate)
        if i0 >= n_samples or i0 + int(n_win[e]) <= 0:
            continue
        add_at(out, _render_controls(c, e, int(n_win[e]), sample_rate, start_s), start=i0)
    return out


def room_impulse_response(room: NDArray[np.floating], *, sample_rate: float) -> FloatArray | None:
    """The room's impulse response (a unit impulse plus a decaying band-noise tail), or None when dry.

    ``ir[0] = 1``; ``ir[n] += wet * sum_b n_b[n] exp(-ln1000 n / (sr T60_b))`` with the room noise
    table ``n_b`` and ``T60_b`` interpolated from the anchors at each band's centre.
    """
    r = np.asarray(room, dtype=np.float64).reshape(-1)
    if r.shape != (N_ROOM_PARAMS,):
        raise ParameterError(f"room must have shape ({N_ROOM_PARAMS},), got {r.shape}")
    if r[0] <= DRY_ROOM_DB:
        return None
    centres = noise_band_centres_hz(float(sample_rate))
    t60 = 10.0 ** _interp_anchors(np.log2(centres)[None, :], r[None, 1:])[0]
    n = min(int(np.ceil(np.max(t60) * sample_rate)), int(ROOM_TABLE_S * sample_rate))
    table = noise_table(float(sample_rate), ROOM_TABLE_S, ROOM_SEED)[:, :n]
    tt = np.arange(n, dtype=np.float64) / sample_rate
    ir = 10.0 ** (r[0] / 20.0) * np.sum(table * np.exp(-LN1000 * tt[None, :] / t60[:, None]), axis=0)
    ir[0] += 1.0
    return ir


@contextlib.contextmanager
def blas_single_thread() -> Iterator[None]:
    """Run the block below with one BLAS thread (when ``threadpoolctl`` is installed).

    The decoder's matrix products are small; a threaded BLAS spends more time synchronising its
    threads than computing them, and much more on a loaded machine.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the decoder is only slower
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def render(events: EventList) -> FloatArray:
    """Decode an :class:`EventList` to a mono signal of ``events.n_samples`` samples.

    Returns
    -------
    np.ndarray [shape=(n_samples,)]
    """
    with blas_single_thread():
        dry = render_events(events.times_s, events.params, sample_rate=events.sample_rate,
                            n_samples=events.n_samples)
    ir = room_impulse_response(events.room, sample_rate=events.sample_rate)
    if ir is None or dry.size == 0:
        return dry
    return fft_convolve(dry, ir, mode="same_start")
