"""Edits in codec space: pure functions from an :class:`EventList` to a new one.

Every function returns a new list (the input is never modified), keeps the events in their order
(so an index means the same event before and after, except where events are removed), clips
parameters into the ranges of the layout (:data:`calyx.events.params.EVENT_PARAMS`) and records a
short description of itself in ``info["edits"]``. Random edits are deterministic under ``seed``
(numpy's PCG64 through ``np.random.default_rng``).

=========================  =========================================================================
function                   what it does
=========================  =========================================================================
:func:`randomize_vectors`  keep the times, draw new parameter vectors
:func:`randomize_times`    keep the vectors, draw new times
:func:`perturb`            move every event by one common random direction in normalised space
:func:`transpose`          shift pitch by semitones (keeping the spectral envelope, or not)
:func:`time_stretch`       scale onsets and note lengths, not pitch (decays kept, or scaled)
:func:`gain`               add decibels to every event
:func:`delete_events`      remove the events in a time range, pitch range and/or index set
:func:`solo_events`        keep only those
=========================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from calyx.errors import ParameterError
from calyx.events.params import (
    DECAY_ANCHORS_HZ,
    EVENT_PARAMS,
    F_MAX_HZ,
    N_PARTIALS,
    N_SHAPE,
    EventList,
    clip_params,
    midi_to_hz,
    param_index,
)

__all__ = [
    "delete_events",
    "gain",
    "perturb",
    "randomize_times",
    "randomize_vectors",
    "select_events",
    "solo_events",
    "time_stretch",
    "transpose",
]

FloatArray = NDArray[np.float64]

_PITCH = param_index("pitch_midi")
_INHARM = param_index("inharmonicity_log10")
_LEVEL = param_index("level_db")
_TILT = param_index("tilt_db_per_octave")
_SHAPE = param_index("shape_1")
_T60 = param_index(f"t60_log10_s_{int(DECAY_ANCHORS_HZ[0])}")
_DURATION = param_index("duration_s")
_RELEASE = param_index("release_t60_log10_s")
_NOISE_DB = param_index("noise_level_db")
_NOISE_T60 = param_index("noise_t60_log10_s")
_LOW = np.array([p.low for p in EVENT_PARAMS])
_HIGH = np.array([p.high for p in EVENT_PARAMS])


def _with(events: EventList, *, times_s: FloatArray | None = None, params: FloatArray | None = None,
          n_samples: int | None = None, note: str) -> EventList:
    """A new list with the given parts replaced (parameters clipped into range) and ``note`` recorded."""
    info = dict(events.info)
    info["edits"] = [*list(info.get("edits", [])), note]
    return EventList(
        events.times_s.copy() if times_s is None else np.asarray(times_s, dtype=np.float64),
        events.params.copy() if params is None else clip_params(params),
        events.room.copy(),
        events.sample_rate,
        events.n_samples if n_samples is None else int(n_samples),
        info,
    )


# --------------------------------------------------------------------------------------------------
# Random edits


def randomize_vectors(
    events: EventList, *, seed: int, how: Literal["rows", "columns", "uniform"] = "rows"
) -> EventList:
    """Keep every time, draw every parameter vector anew.

    Parameters
    ----------
    events : EventList
    seed : int
    how : {"rows", "columns", "uniform"}
        ``"rows"``: each event gets a whole vector of the list, drawn with replacement (the
        empirical distribution of vectors: every new event is one that the recording contains,
        at another time). ``"columns"``: each parameter is drawn independently from its own
        column (the empirical marginals: new combinations of known values). ``"uniform"``: each
        parameter uniformly within the range the list spans for it (its minimum to maximum).

    Returns
    -------
    EventList
    """
    rng = np.random.default_rng(seed)
    n = len(events)
    if n == 0:
        return _with(events, note=f"randomize_vectors(how={how}, seed={seed})")
    p = events.params
    if how == "rows":
        new = p[rng.integers(0, n, size=n)]
    elif how == "columns":
        new = np.stack([p[rng.integers(0, n, size=n), c] for c in range(p.shape[1])], axis=1)
    elif how == "uniform":
        lo, hi = p.min(axis=0), p.max(axis=0)
        new = lo + (hi - lo) * rng.random(p.shape)
    else:
        raise ParameterError(f"how must be 'rows', 'columns' or 'uniform', got {how!r}")
    return _with(events, params=new, note=f"randomize_vectors(how={how}, seed={seed})")


def randomize_times(
    events: EventList, *, seed: int, how: Literal["uniform", "permute"] = "uniform"
) -> EventList:
    """Keep every parameter vector, draw every time anew.

    ``how="uniform"``: independent times uniform over ``[0, duration)``; ``"permute"``: the list's
    own times, shuffled among the events (the rhythm stays, the notes move).
    """
    rng = np.random.default_rng(seed)
    n = len(events)
    if how == "uniform":
        t = rng.random(n) * events.duration_s
    elif how == "permute":
        t = events.times_s[rng.permutation(n)]
    else:
        raise ParameterError(f"how must be 'uniform' or 'permute', got {how!r}")
    return _with(events, times_s=t, note=f"randomize_times(how={how}, seed={seed})")


def perturb(
    events: EventList, *, magnitude: float, seed: int, exclude: Iterable[str] = ()
) -> EventList:
    """Move every event by one common random direction in normalised parameter space.

    Each parameter is normalised by its range in the layout (``high - low``); a direction ``d`` is
    drawn uniformly on the unit sphere of the parameters not in ``exclude``, and every event's
    vector moves by ``magnitude * d * (high - low)`` (then is clipped into range). Magnitude 0.05
    moves each parameter by about ``0.05 / sqrt(28) ~ 1 %`` of its range on average (the pitch by
    about one semitone): the same timbre change applied to the whole recording.

    Parameters
    ----------
    events : EventList
    magnitude : float
        Length of the move in normalised units (>= 0).
    seed : int
    exclude : iterable of str
        Parameter names to leave alone (for instance ``("pitch_midi",)``).
    """
    if not magnitude >= 0.0:
        raise ParameterError(f"magnitude must be >= 0, got {magnitude}")
    skip = [param_index(name) for name in exclude]
    rng = np.random.default_rng(seed)
    d = rng.standard_normal(len(EVENT_PARAMS))
    d[skip] = 0.0
    norm = float(np.linalg.norm(d))
    if norm == 0.0:
        raise ParameterError("every parameter is excluded: there is no direction to move in")
    step = magnitude * (d / norm) * (_HIGH - _LOW)
    return _with(events, params=events.params + step[None, :],
                 note=f"perturb(magnitude={magnitude:g}, seed={seed})")


# --------------------------------------------------------------------------------------------------
# Musical edits


def _shape_basis() -> FloatArray:
    """Columns ``[log2 k, cos(pi j log2 k / log2 N)]`` over k = 1 .. N_PARTIALS (the decoder's shape)."""
    log2k = np.log2(np.arange(1, N_PARTIALS + 1, dtype=np.float64))
    cols = [log2k] + [np.cos(np.pi * j * log2k / np.log2(N_PARTIALS)) for j in range(1, N_SHAPE + 1)]
    return np.stack(cols, axis=1)


def _partial_freqs(pitch_midi: float, inharm_log10: float) -> FloatArray:
    k = np.arange(1, N_PARTIALS + 1, dtype=np.float64)
    return np.asarray(float(midi_to_hz(pitch_midi)) * k * np.sqrt(1.0 + 10.0**inharm_log10 * k**2))


def _refit_envelope(row: FloatArray, new_pitch: float, *, sample_rate: float, ridge: float = 0.05) -> FloatArray:
    """Tilt and shape of ``row`` refitted so that its partials at ``new_pitch`` sample the same
    spectral envelope (level over frequency) as its partials at the old pitch.

    The old envelope is the partials' shape in dB, interpolated over log frequency and held flat
    below the first and above the last partial. The new tilt and cosines are the weighted least-
    squares fit of it at the new partial frequencies (weights: the partials' amplitude, so the
    audible ones count), regularised towards the old coefficients where few partials constrain
    them (a high note has only a few partials below 10 kHz).
    """
    basis = _shape_basis()
    coef_old = np.concatenate([[row[_TILT]], row[_SHAPE : _SHAPE + N_SHAPE]])
    shape_old = basis @ coef_old
    f_old = _partial_freqs(float(row[_PITCH]), float(row[_INHARM]))
    f_new = _partial_freqs(new_pitch, float(row[_INHARM]))
    target = np.interp(np.log2(f_new), np.log2(f_old), shape_old)
    w = 10.0 ** ((target - target.max()) / 20.0) + 1e-3
    w = np.where(f_new < min(F_MAX_HZ, 0.45 * sample_rate), w, 1e-3)
    a = np.concatenate([np.ones((N_PARTIALS, 1)), basis], axis=1) * np.sqrt(w)[:, None]
    rhs = target * np.sqrt(w)
    reg = ridge * float(np.sum(w)) / N_PARTIALS
    lam = np.diag([0.0] + [reg] * (N_SHAPE + 1))
    prior = np.concatenate([[0.0], coef_old])
    coef = np.linalg.solve(a.T @ a + lam, a.T @ rhs + lam @ prior)
    out = row.copy()
    out[_TILT] = coef[1]
    out[_SHAPE : _SHAPE + N_SHAPE] = coef[2:]
    return out


def transpose(
    events: EventList, *, semitones: float, timbre: Literal["envelope", "partials"] = "envelope"
) -> EventList:
    """Shift every event's pitch by ``semitones`` (f0 times ``2 ** (semitones / 12)``).

    Parameters
    ----------
    events : EventList
    semitones : float
        May be fractional or negative; pitches are clipped into the layout's range (MIDI 12-120).
    timbre : {"envelope", "partials"}
        ``"envelope"`` (default): the spectral envelope stays where it is in frequency (tilt and
        shape are refitted so that the new partials sample the old envelope; the body, formants
        and brightness of the instrument do not move), as when a player plays another note.
        ``"partials"``: every partial keeps its relative level (the whole spectrum moves with the
        pitch, as when a recording is played faster).

    Decay times are given by frequency (T60 at 100 Hz ... 6.4 kHz), so partials keep the decay of
    their new frequency either way; the level (root-sum-square of the partials) and the
    inharmonicity are kept.
    """
    if timbre not in ("envelope", "partials"):
        raise ParameterError(f"timbre must be 'envelope' or 'partials', got {timbre!r}")
    p = events.params.copy()
    new_pitch = np.clip(p[:, _PITCH] + float(semitones), EVENT_PARAMS[_PITCH].low, EVENT_PARAMS[_PITCH].high)
    if timbre == "envelope":
        for e in range(p.shape[0]):
            p[e] = _refit_envelope(p[e], float(new_pitch[e]), sample_rate=events.sample_rate)
    p[:, _PITCH] = new_pitch
    return _with(events, params=p, note=f"transpose(semitones={semitones:g}, timbre={timbre})")


def time_stretch(events: EventList, *, factor: float, scale_decays: bool = False) -> EventList:
    """Play the events ``factor`` times slower (``factor > 1``) or faster, at the same pitch.

    Onsets and the recording's length are multiplied by ``factor``, and so is each note's length
    (``duration_s``, the time to the damper): a note held for a beat is held for the stretched
    beat, as a player would at the new tempo. The decay times (T60s, the two-stage aftersound,
    the damper's release, the attack and the noise burst) are properties of the instrument, not of
    the tempo, and are kept by default: a piano string rings the same at any tempo. With
    ``scale_decays`` they are multiplied by ``factor`` too (a tape-like slow-down without its pitch
    change, whose resonances ring longer).

    Parameters
    ----------
    events : EventList
    factor : float
        Positive; ``duration_s`` is clipped to the layout's 30 s.
    scale_decays : bool
    """
    if not (np.isfinite(factor) and factor > 0.0):
        raise ParameterError(f"factor must be a positive number, got {factor}")
    p = events.params.copy()
    p[:, _DURATION] *= factor
    if scale_decays:
        shift = float(np.log10(factor))
        p[:, _T60 : _T60 + len(DECAY_ANCHORS_HZ)] += shift
        p[:, _RELEASE] += shift
        p[:, _NOISE_T60] += shift
    return _with(events, times_s=events.times_s * factor, params=p,
                 n_samples=round(events.n_samples * factor),
                 note=f"time_stretch(factor={factor:g}, scale_decays={scale_decays})")


def gain(events: EventList, *, db: float) -> EventList:
    """Add ``db`` decibels to every event (tonal level and noise burst; the room is linear)."""
    if not np.isfinite(db):
        raise ParameterError(f"db must be finite, got {db}")
    p = events.params.copy()
    p[:, _LEVEL] += db
    p[:, _NOISE_DB] += db
    return _with(events, params=p, note=f"gain(db={db:g})")


# --------------------------------------------------------------------------------------------------
# Selection


def _range(value: tuple[float, float] | None, what: str) -> tuple[float, float] | None:
    if value is None:
        return None
    lo, hi = (float(v) for v in value)
    if not lo <= hi:
        raise ParameterError(f"{what} range must be (low, high) with low <= high, got ({lo}, {hi})")
    return lo, hi


def select_events(
    events: EventList,
    *,
    time_range_s: tuple[float, float] | None = None,
    pitch_range_midi: tuple[float, float] | None = None,
    indices: Sequence[int] | NDArray[np.integer] | None = None,
) -> NDArray[np.bool_]:
    """Mask of the events matching every criterion given.

    Parameters
    ----------
    time_range_s : (float, float), optional
        Onset within ``[low, high]`` seconds (both ends included).
    pitch_range_midi : (float, float), optional
        Pitch within ``[low, high]`` (fractional MIDI numbers; both ends included).
    indices : sequence of int, optional
        Positions in the list (as numbered by ``calyx events show``); negative counts from the end.

    Returns
    -------
    np.ndarray [shape=(n_events,), bool]
    """
    tr = _range(time_range_s, "time")
    pr = _range(pitch_range_midi, "pitch")
    if tr is None and pr is None and indices is None:
        raise ParameterError("give at least one of time_range_s, pitch_range_midi or indices")
    mask = np.ones(len(events), dtype=bool)
    if tr is not None:
        mask &= (events.times_s >= tr[0]) & (events.times_s <= tr[1])
    if pr is not None:
        pitch = events.pitch_midi
        mask &= (pitch >= pr[0]) & (pitch <= pr[1])
    if indices is not None:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = idx[(idx >= len(events)) | (idx < -len(events))]
        if bad.size:
            raise ParameterError(
                f"event index {int(bad[0])} is out of range: the list has {len(events)} events (0-{len(events) - 1})"
            )
        chosen = np.zeros(len(events), dtype=bool)
        chosen[idx] = True
        mask &= chosen
    return mask


def delete_events(
    events: EventList,
    *,
    time_range_s: tuple[float, float] | None = None,
    pitch_range_midi: tuple[float, float] | None = None,
    indices: Sequence[int] | NDArray[np.integer] | None = None,
) -> EventList:
    """Remove the events matching every criterion given (see :func:`select_events`)."""
    mask = select_events(events, time_range_s=time_range_s, pitch_range_midi=pitch_range_midi, indices=indices)
    out = events.subset(~mask)
    out.info["edits"] = [*list(events.info.get("edits", [])), f"delete({int(mask.sum())} events)"]
    return out


def solo_events(
    events: EventList,
    *,
    time_range_s: tuple[float, float] | None = None,
    pitch_range_midi: tuple[float, float] | None = None,
    indices: Sequence[int] | NDArray[np.integer] | None = None,
) -> EventList:
    """Keep only the events matching every criterion given (see :func:`select_events`)."""
    mask = select_events(events, time_range_s=time_range_s, pitch_range_midi=pitch_range_midi, indices=indices)
    out = events.subset(mask)
    out.info["edits"] = [*list(events.info.get("edits", [])), f"solo({int(mask.sum())} events)"]
    return out
