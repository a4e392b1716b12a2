"""Quantisation of a factor model by a distortion budget, and its exact inverse.

Each factor array is quantised uniformly with one step per *column* (a component of PCA/NMF, a
column of a Tucker/CP factor; one step for a mean or a Tucker core). The steps are set so that
every array contributes an equal share of a target mean squared error ``distortion_db2`` (dB²)
to the reconstructed values, using how an error in each column propagates through the others
(orthonormal Tucker factors and PCA components propagate it unchanged; a column that multiplies
more energy gets a finer step). This spends bits where they matter, instead of giving every
factor the same number of bits; the entropy coder then turns the small integers into few bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calyx.errors import FormatError
from calyx.hypercube._entropy import MAX_ABS_INT
from calyx.hypercube._factors import FactorModel

__all__ = ["QuantisedArray", "QuantisedFactors", "quantise_factors"]

FloatArray = NDArray[np.float64]

#: Axis carrying one step per index, for each factor name (None: one step for the whole array).
STEP_AXIS: dict[str, int | None] = {
    "mean": None,
    "core": None,
    "basis": 0,
    "scores": 1,
    "pitch": 1,
    "layer": 1,
    "time": 1,
    "feature": 1,
}


@dataclass(frozen=True)
class QuantisedArray:
    """Integers and their steps: ``value = q * step`` along ``STEP_AXIS[name]``.

    Attributes
    ----------
    q : np.ndarray [dtype=int64]
    steps : np.ndarray [shape=(n_steps,), dtype=float32]
        One step (whole array) or one per index of the step axis.
    """

    q: NDArray[np.int64]
    steps: NDArray[np.float32]

    def values(self, name: str) -> FloatArray:
        axis = STEP_AXIS.get(name)
        s = self.steps.astype(np.float64)
        if axis is None:
            if s.size != 1:
                raise FormatError(f"factor {name!r} needs one step, got {s.size}")
            return self.q.astype(np.float64) * s[0]
        if s.size != self.q.shape[axis]:
            raise FormatError(f"factor {name!r} needs {self.q.shape[axis]} steps, got {s.size}")
        shape = [1] * self.q.ndim
        shape[axis] = s.size
        return self.q.astype(np.float64) * s.reshape(shape)


@dataclass
class QuantisedFactors:
    """A factor model in quantised form (what a ``.calyx`` file stores for one articulation)."""

    method: str
    arrays: dict[str, QuantisedArray]
    offset_db: float

    def dequantised(self, template: FactorModel) -> FactorModel:
        """The factor model the decoder sees (``template`` gives the shape and grid)."""
        return FactorModel(
            self.method,
            {name: qa.values(name) for name, qa in self.arrays.items()},
            template.shape,
            template.grid,
            offset_db=self.offset_db,
        )


def _quantise(x: FloatArray, steps: FloatArray, axis: int | None) -> QuantisedArray:
    s = np.asarray(steps, dtype=np.float64)
    # never let an integer leave the 16-bit range: widen the step where needed
    if axis is None:
        peak = np.array([np.max(np.abs(x)) if x.size else 0.0])
    else:
        moved = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
        peak = np.max(np.abs(moved), axis=1) if moved.shape[1] else np.zeros(x.shape[axis])
    s = np.maximum(s, peak / (MAX_ABS_INT - 0.5))
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
    s32 = s.astype(np.float32)
    s32 = np.where(s32 > 0, s32, np.float32(1e-30)).astype(np.float32)
    if axis is None:
        q = np.round(x / float(s32[0]))
    else:
        shape = [1] * x.ndim
        shape[axis] = s32.size
        q = np.round(x / s32.astype(np.float64).reshape(shape))
    qi: NDArray[np.int64] = np.clip(q, -MAX_ABS_INT, MAX_ABS_INT).astype(np.int64)
    return QuantisedArray(qi, s32)


def _step(share_mse: float, energy_gain: FloatArray | float) -> FloatArray:
    """Step giving an error of ``share_mse`` per output entry when one unit of error energy in
    the array costs ``energy_gain`` per output entry: ``step^2 / 12 * gain = share``."""
    g = np.maximum(np.asarray(energy_gain, dtype=np.float64), 1e-30)
    return np.sqrt(12.0 * share_mse / g)


def quantise_factors(fm: FactorModel, *, distortion_db2: float) -> QuantisedFactors:
    """Quantise every factor so that the reconstruction's added MSE is about ``distortion_db2``.

    Parameters
    ----------
    fm : FactorModel
    distortion_db2 : float
        Target mean squared error (dB²) that quantisation adds to each reconstructed value.
    """
    a = fm.arrays
    names = list(a)
    share = distortion_db2 / len(names)
    out: dict[str, QuantisedArray] = {}
    t, c, f = fm.shape
    n_feat = t * c * f
    if fm.method in ("pca", "nmf"):
        scores, basis = a["scores"], a["basis"]
        n = scores.shape[0]
        r = basis.shape[0]
        # an error e in basis row j reaches every note n scaled by score[n, j]: per output entry
        # its energy is sum_n score^2 * e^2 / (n * ...) -> gain = sum_n s_nj^2 / n / r
        g_basis = np.sum(scores**2, axis=0) / n * r
        out["basis"] = _quantise(basis, _step(share, g_basis), 0)
        g_scores = np.sum(basis**2, axis=1) / n_feat * r
        out["scores"] = _quantise(scores, _step(share, g_scores), 1)
        if "mean" in a:
            out["mean"] = _quantise(a["mean"], _step(share, 1.0), None)
        return QuantisedFactors(fm.method, out, fm.offset_db)
    # Tucker / CP: sizes of the full grid tensor (pitch, layer, time, channel x feature)
    dims = [a[m].shape[0] for m in ("pitch", "layer", "time", "feature")]
    total = float(np.prod(dims))
    out["mean"] = _quantise(a["mean"], _step(share, 1.0), None)
    if fm.method == "tucker":
        core = a["core"]
        out["core"] = _quantise(core, _step(share, core.size / total), None)
        for mode, name in enumerate(("pitch", "layer", "time", "feature")):
            u = a[name]
            r = u.shape[1]
            unf = np.moveaxis(core, mode, 0).reshape(r, -1)
            energy = np.sum(unf**2, axis=1)  # error in column j is amplified by this core energy
            gain = energy * u.shape[0] * r / total
            out[name] = _quantise(u, _step(share, gain), 1)
        return QuantisedFactors(fm.method, out, fm.offset_db)
    modes = ("pitch", "layer", "time", "feature")
    norms2 = {m: np.sum(a[m] ** 2, axis=0) for m in modes}
    r = a["pitch"].shape[1]
    for m in modes:
        others = np.prod([norms2[o] for o in modes if o != m], axis=0)
        gain = others * a[m].shape[0] * r / total
        out[m] = _quantise(a[m], _step(share, gain), 1)
    return QuantisedFactors(fm.method, out, fm.offset_db)


def effective_bits(qf: QuantisedFactors, n_bytes: int) -> float:
    """Average bits per stored value."""
    n = sum(qa.q.size for qa in qf.arrays.values())
    return 8.0 * n_bytes / max(n, 1) if n else math.nan
