"""The common time axis of the hypercube: dense attack frames, then log-spaced decay points.

Notes of one library differ in length (a piano's low notes ring for 15 s, its top notes for 2 s)
and their envelopes change fast at the attack and slowly later. Every note is therefore resampled,
after aligning its onset, onto one axis of times ``tau`` (seconds after the onset):

- an *attack* segment ``0, step_s, 2 step_s, ...`` up to ``attack_s`` (the analysis frame period, so
  the attack is kept at full time resolution);
- a *decay* segment whose points are spaced geometrically, ``points_per_octave`` per doubling of
  ``tau``, up to the longest note.

A note's frame-rate track ``x(t)`` is represented by values ``v_j`` at these points and rebuilt by
linear interpolation; the values are the least-squares fit of that piecewise-linear curve to the
note's frames (:func:`fit_matrix`), which averages fast fluctuations (beating) that a coarse point
cannot follow instead of aliasing them. Points after a note's end are *missing* for that note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from calyx.errors import ParameterError

__all__ = ["TimeBase", "fit_matrix", "interpolation_matrix"]

FloatArray = NDArray[np.float64]

#: Weight of the second-difference penalty in the least-squares fit (keeps points with little support stable).
_SMOOTHING = 1e-3
#: Most points a time axis may have (a guard against absurd parameters and corrupt files).
MAX_TIME_POINTS = 4096


@dataclass(frozen=True)
class TimeBase:
    """Canonical times after the onset.

    Attributes
    ----------
    step_s : float
        Spacing of the attack segment, seconds (the analysis frame period).
    attack_s : float
        End of the attack segment, seconds.
    points_per_octave : float
        Density of the geometric decay segment (points per doubling of the time since the onset).
    duration_s : float
        The last point (the longest note's length after its onset), seconds.
    """

    step_s: float
    attack_s: float
    points_per_octave: float
    duration_s: float

    def __post_init__(self) -> None:
        ok = all(math.isfinite(v) for v in (self.step_s, self.attack_s, self.points_per_octave, self.duration_s))
        if not ok or self.step_s <= 0 or self.attack_s < self.step_s or self.points_per_octave <= 0 or self.duration_s <= 0:
            raise ParameterError(
                "TimeBase needs finite step_s > 0, attack_s >= step_s, points_per_octave > 0 and duration_s > 0; "
                f"got {self.step_s}, {self.attack_s}, {self.points_per_octave}, {self.duration_s}"
            )
        n_attack = self.attack_s / self.step_s
        n_decay = self.points_per_octave * math.log2(max(self.duration_s, self.attack_s) / self.attack_s)
        if n_attack + n_decay + 2 > MAX_TIME_POINTS:
            raise ParameterError(
                f"this time base would have about {n_attack + n_decay:.0f} points (limit {MAX_TIME_POINTS}); "
                "use a larger step_s, a shorter attack_s or fewer points_per_octave"
            )

    @cached_property
    def times_s(self) -> FloatArray:
        """The points, seconds after the onset, shape ``(n_times,)``, increasing, first 0."""
        n_attack = math.floor(self.attack_s / self.step_s + 1e-9)
        dense = np.arange(n_attack + 1, dtype=np.float64) * self.step_s
        if dense[-1] >= self.duration_s:
            keep = dense[dense < self.duration_s]
            return np.append(keep, self.duration_s) if keep[-1] < self.duration_s else keep
        ratio = 2.0 ** (1.0 / self.points_per_octave)
        # the decay segment starts where its spacing first exceeds the attack step
        start = max(dense[-1], self.step_s / (ratio - 1.0))
        pts = list(dense)
        t = pts[-1]
        while t < self.duration_s:
            t = t + self.step_s if t < start else t * ratio
            pts.append(min(t, self.duration_s))
        return np.asarray(pts, dtype=np.float64)

    @property
    def n_times(self) -> int:
        return int(self.times_s.size)

    def to_json(self) -> dict[str, float]:
        return {
            "step_s": self.step_s,
            "attack_s": self.attack_s,
            "points_per_octave": self.points_per_octave,
            "duration_s": self.duration_s,
        }


def interpolation_matrix(times_s: NDArray[np.floating], query_s: NDArray[np.floating]) -> FloatArray:
    """Dense matrix ``L`` with ``L @ v`` the piecewise-linear interpolation of ``v`` at ``query_s``.

    Parameters
    ----------
    times_s : np.ndarray [shape=(n_times,)]
        Increasing knots.
    query_s : np.ndarray [shape=(n_query,)]
        Query times; values before the first knot hold the first value, after the last the last.

    Returns
    -------
    np.ndarray [shape=(n_query, n_times)]
    """
    t = np.asarray(times_s, dtype=np.float64)
    q = np.clip(np.asarray(query_s, dtype=np.float64), t[0], t[-1])
    j1 = np.clip(np.searchsorted(t, q, side="right"), 1, t.size - 1) if t.size > 1 else np.zeros(q.size, dtype=np.int64)
    out = np.zeros((q.size, t.size))
    if t.size == 1:
        out[:, 0] = 1.0
        return out
    j0 = j1 - 1
    frac = (q - t[j0]) / (t[j1] - t[j0])
    rows = np.arange(q.size)
    out[rows, j0] = 1.0 - frac
    out[rows, j1] += frac
    return out


def fit_matrix(times_s: FloatArray, frame_times_s: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Least-squares projection of frame values onto the knots, and which knots the frames support.

    ``P @ x`` (``x`` of shape ``(n_frames, ...)``) gives knot values ``v`` minimising
    ``|L v - x|^2 + s |D2 v|^2`` over the supported knots, where ``L`` is
    :func:`interpolation_matrix` at ``frame_times_s`` and ``D2`` the second difference (a light
    smoothing that keeps knots with little support stable). A knot is supported when a frame lies
    strictly inside the interval reaching to its neighbours; unsupported knots are missing (their
    rows of ``P`` are zero).

    Returns
    -------
    P : np.ndarray [shape=(n_times, n_frames)]
    supported : np.ndarray [shape=(n_times,), dtype=bool]
    """
    t = np.asarray(times_s, dtype=np.float64)
    f = np.asarray(frame_times_s, dtype=np.float64)
    f = f[(f >= t[0]) & (f <= t[-1])] if f.size else f
    n = t.size
    supported = np.zeros(n, dtype=bool)
    if f.size:
        lo = np.concatenate([[t[0] - 1e-12], t[:-1]])
        hi = np.concatenate([t[1:], [t[-1] + 1e-12]])
        first, last = f.min(), f.max()
        supported = (hi > first) & (lo < last)
        # a knot beyond the last frame but whose left interval holds frames is supported
    idx = np.nonzero(supported)[0]
    p = np.zeros((n, np.asarray(frame_times_s).size))
    if idx.size == 0:
        return p, supported
    ts = t[idx]
    ft = np.asarray(frame_times_s, dtype=np.float64)
    inside = (ft >= ts[0]) & (ft <= ts[-1])
    lmat = interpolation_matrix(ts, ft[inside])
    m = idx.size
    d2 = np.zeros((max(m - 2, 0), m))
    for i in range(m - 2):
        d2[i, i : i + 3] = (1.0, -2.0, 1.0)
    a = lmat.T @ lmat + _SMOOTHING * (d2.T @ d2) + 1e-9 * np.eye(m)
    proj = np.linalg.solve(a, lmat.T)  # (m, n_inside)
    p[np.ix_(idx, np.nonzero(inside)[0])] = proj
    return p, supported
