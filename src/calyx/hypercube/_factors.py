"""The four factor models of the hypercube: PCA, NMF, Tucker and CP, fitted to known entries only.

Every model is fitted to the aligned values of one articulation, ``X[n, t, c, f]`` (notes × time ×
channel × feature, normalised dB) with a boolean mask of known entries, and is decoded through
the same two steps, which is what :class:`~calyx.hypercube.Instrument` interpolates between:

1. ``coefficients()``: one row ``z_n`` per note (PCA scores, NMF activations, the Tucker core
   contracted with the note's pitch/dynamic/variation factor rows, or the CP weights times those
   rows);
2. ``expand(z)``: the values ``(n_times, n_channels, n_features)`` of any coefficient row.

Since ``expand`` is linear (affine), interpolating ``z`` linearly between grid notes interpolates
the factor rows of the pitch and dynamic modes linearly, as the real-time engine will.

Missing entries are handled by expectation-maximisation: they are filled with the current
reconstruction and the factoring is repeated (PCA, NMF), or passed as tensorly's ``mask``
(Tucker, CP; tensorly does the same filling inside its iterations). The libraries used:
scikit-learn (``PCA``, ``NMF``) and tensorly (``tucker``, ``parafac``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.errors import ParameterError

__all__ = [
    "METHODS",
    "FactorModel",
    "GridIndex",
    "fit_factors",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

METHODS = ("pca", "nmf", "tucker", "cp")

_EM_ITERATIONS = 20
_EM_TOL = 1e-4
_CP_ITERATIONS = 25
_TUCKER_ITERATIONS = 3
_TUCKER_ITERATIONS_SPARSE = 15
#: Modes of the Tucker and CP tensors: pitch, layer (dynamic x variation), time, channel x feature.
_MODES = ("pitch", "layer", "time", "feature")


@dataclass(frozen=True)
class GridIndex:
    """Where each note of an articulation lies on its pitch × dynamic × variation grid.

    Attributes
    ----------
    pitch, dynamic, variation : np.ndarray [shape=(n_notes,), dtype=int]
        Index of the note on each grid axis.
    shape : tuple of int
        ``(n_pitches, n_dynamics, n_variations)``.
    """

    pitch: NDArray[np.int64]
    dynamic: NDArray[np.int64]
    variation: NDArray[np.int64]
    shape: tuple[int, int, int]

    @property
    def present(self) -> BoolArray:
        """Grid points that hold a note, shape ``shape`` (the grid mask)."""
        m = np.zeros(self.shape, dtype=bool)
        m[self.pitch, self.dynamic, self.variation] = True
        return m


@dataclass
class FactorModel:
    """Factors of one articulation (float64), with their decoding.

    Attributes
    ----------
    method : str
        ``"pca"``, ``"nmf"``, ``"tucker"`` or ``"cp"``.
    arrays : dict[str, np.ndarray]
        The factors, by name (see :data:`FACTOR_NAMES`).
    shape : tuple of int
        ``(n_times, n_channels, n_features)`` of one note's values.
    grid : GridIndex
    offset_db : float
        Added to every expanded value (NMF works on values shifted to be non-negative).
    """

    method: str
    arrays: dict[str, FloatArray]
    shape: tuple[int, int, int]
    grid: GridIndex
    offset_db: float = 0.0
    _coef: FloatArray | None = field(default=None, repr=False)
    _basis: FloatArray | None = field(default=None, repr=False)

    @property
    def ranks(self) -> dict[str, int]:
        a = self.arrays
        if self.method in ("pca", "nmf"):
            return {"components": int(a["basis"].shape[0])}
        if self.method == "cp":
            return {"rank": int(a["time"].shape[1])}
        return dict(zip(_MODES, map(int, a["core"].shape), strict=True))

    def coefficients(self) -> FloatArray:
        """Coefficient row of every note, shape ``(n_notes, n_coefficients)``."""
        if self._coef is None:
            a, g = self.arrays, self.grid
            if self.method in ("pca", "nmf"):
                coef = a["scores"]
            elif self.method == "cp":
                layer = g.dynamic * g.shape[2] + g.variation
                coef = a["pitch"][g.pitch] * a["layer"][layer]
            else:
                layer = g.dynamic * g.shape[2] + g.variation
                c = np.einsum("plxy,np->nlxy", a["core"], a["pitch"][g.pitch])
                c = np.einsum("nlxy,nl->nxy", c, a["layer"][layer])
                coef = c.reshape(c.shape[0], -1)
            self._coef = np.ascontiguousarray(coef, dtype=np.float64)
        return self._coef

    def _dense_basis(self) -> FloatArray:
        """``(n_coefficients, n_times * n_channels * n_features)`` for PCA, NMF and CP."""
        if self._basis is None:
            a = self.arrays
            if self.method in ("pca", "nmf"):
                basis = a["basis"]
            elif self.method == "cp":
                basis = np.einsum("tr,fr->rtf", a["time"], a["feature"]).reshape(a["time"].shape[1], -1)
            else:
                raise ParameterError("the Tucker model has no dense basis")
            self._basis = np.ascontiguousarray(basis)
        return self._basis

    def mean(self) -> FloatArray:
        """The values every note shares (PCA/Tucker/CP mean; zeros for NMF), shape ``shape``."""
        m = self.arrays.get("mean")
        return np.zeros(self.shape) if m is None else m.reshape(self.shape)

    def expand(self, z: FloatArray) -> FloatArray:
        """Values of a coefficient row (or rows), shape ``(..., n_times, n_channels, n_features)``."""
        zz = np.asarray(z, dtype=np.float64)
        if self.method == "tucker":
            a = self.arrays
            rt, rf = a["core"].shape[2:]
            lead = zz.shape[:-1]
            c = zz.reshape(-1, rt, rf)
            x = (c.reshape(-1, rf) @ a["feature"].T).reshape(c.shape[0], rt, -1)  # (n, rt, C*F)
            x = np.tensordot(a["time"], x, axes=(1, 1))  # (T, n, C*F)
            out = np.moveaxis(x, 1, 0).reshape(*lead, *self.shape)
        else:
            out = (zz @ self._dense_basis()).reshape(*zz.shape[:-1], *self.shape)
        return out + self.mean() + self.offset_db

    def reconstruct(self) -> FloatArray:
        """Values of every note, shape ``(n_notes, *shape)``."""
        return self.expand(self.coefficients())

    def n_values(self) -> int:
        """Number of stored factor values (before quantisation)."""
        return int(sum(v.size for v in self.arrays.values()))


def _masked_mean(values: FloatArray, known: BoolArray, floor: float) -> FloatArray:
    """Mean over notes of the known entries, ``floor`` where no note is known."""
    cnt = known.sum(axis=0)
    s = np.where(known, values, 0.0).sum(axis=0)
    return np.where(cnt > 0, s / np.maximum(cnt, 1), floor)


def _em_matrix(
    x: FloatArray,
    known: BoolArray,
    fit_reconstruct: Callable[[FloatArray, Any], tuple[FloatArray, Any]],
    *,
    initial: FloatArray,
) -> tuple[FloatArray, Any]:
    filled = np.where(known, x, initial)
    state = None
    prev = None
    for _ in range(_EM_ITERATIONS):
        recon, state = fit_reconstruct(filled, state)
        missing_new = recon[~known]
        if prev is not None:
            change = float(np.sqrt(np.mean((missing_new - prev) ** 2))) if missing_new.size else 0.0
            if change < _EM_TOL * 100:
                filled[~known] = missing_new
                break
        filled[~known] = missing_new
        prev = missing_new
        if not (~known).any():
            break
    return filled, state


def fit_factors(
    values: FloatArray,
    known: BoolArray,
    *,
    method: str,
    rank: int | tuple[int, ...],
    grid: GridIndex,
    db_range: float,
    seed: int = 0,
) -> FactorModel:
    """Fit one articulation's factor model.

    Parameters
    ----------
    values : np.ndarray [shape=(n_notes, n_times, n_channels, n_features)]
        Normalised dB (see :mod:`calyx.hypercube._tensor`).
    known : np.ndarray [shape=values.shape, dtype=bool]
    method : str
        One of :data:`METHODS`.
    rank : int or tuple of int
        PCA/NMF: components; CP: rank; Tucker: ranks of the pitch, dynamic, variation, time,
        channel and feature modes (each clipped to its dimension).
    grid : GridIndex
    db_range : float
        Floor of the values below the gain (NMF shifts by it to be non-negative).
    seed : int
        Seed of every random initialisation (the fit is deterministic).
    """
    if method not in METHODS:
        raise ParameterError(f"method must be one of {METHODS}, got {method!r}")
    n, t, c, f = values.shape
    shape = (t, c, f)
    x = values.reshape(n, -1)
    k = known.reshape(n, -1)
    mean = _masked_mean(values, known, -db_range)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter of scikit-learn and tensorly
        if method == "pca":
            return _fit_pca(x, k, int(rank), mean, shape, grid, seed)  # type: ignore[arg-type]
        if method == "nmf":
            return _fit_nmf(x, k, int(rank), shape, grid, db_range, seed)  # type: ignore[arg-type]
        return _fit_tensor(values, known, method, rank, mean, grid, seed)


def _fit_pca(
    x: FloatArray, known: BoolArray, rank: int, mean: FloatArray, shape: tuple[int, int, int], grid: GridIndex, seed: int
) -> FactorModel:
    from sklearn.decomposition import PCA

    n = x.shape[0]
    r = max(1, min(rank, n - 1 if n > 1 else 1, x.shape[1]))
    init = np.broadcast_to(mean.reshape(1, -1), x.shape)

    def step(filled: FloatArray, state: Any) -> tuple[FloatArray, Any]:
        if n == 1:
            return filled.copy(), None
        pca = PCA(n_components=r, svd_solver="randomized", random_state=seed)
        scores = pca.fit_transform(filled)
        return pca.inverse_transform(scores), pca

    filled, _ = _em_matrix(x, known, step, initial=init)
    mu = filled.mean(axis=0)
    if n == 1:
        return FactorModel("pca", {"mean": mu, "basis": np.zeros((1, x.shape[1])), "scores": np.zeros((1, 1))}, shape, grid)
    pca = PCA(n_components=r, svd_solver="randomized", random_state=seed).fit(filled)
    comps = pca.components_
    scores = (filled - mu) @ comps.T
    # deterministic signs: the largest-magnitude entry of each component is positive
    sign = np.sign(comps[np.arange(r), np.argmax(np.abs(comps), axis=1)])
    sign[sign == 0] = 1.0
    comps = comps * sign[:, None]
    scores = scores * sign[None, :]
    return FactorModel("pca", {"mean": mu, "basis": comps, "scores": scores}, shape, grid)


def _fit_nmf(
    x: FloatArray, known: BoolArray, rank: int, shape: tuple[int, int, int], grid: GridIndex, db_range: float, seed: int
) -> FactorModel:
    from sklearn.decomposition import NMF

    xp = np.clip(x + db_range, 0.0, None)
    n = x.shape[0]
    r = max(1, min(rank, n, x.shape[1]))
    col = np.where(known, xp, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    init = np.broadcast_to(col.reshape(1, -1), xp.shape)

    def step(filled: FloatArray, state: Any) -> tuple[FloatArray, Any]:
        if state is None:
            model = NMF(n_components=r, init="nndsvda", solver="cd", max_iter=400, tol=1e-5, random_state=seed)
            w_new = model.fit_transform(filled)
        else:
            w0, h0 = state
            model = NMF(n_components=r, init="custom", solver="cd", max_iter=100, tol=1e-5, random_state=seed)
            w_new = model.fit_transform(filled, W=w0, H=h0)
        h_new = model.components_
        return w_new @ h_new, (w_new, h_new)

    _, state = _em_matrix(xp, known, step, initial=init)
    w: FloatArray = state[0]
    h: FloatArray = state[1]
    # scale so that every basis row has unit maximum: the activations carry the level
    peak = np.maximum(h.max(axis=1), 1e-12)
    return FactorModel("nmf", {"basis": h / peak[:, None], "scores": w * peak[None, :]}, shape, grid, offset_db=-db_range)


def _fit_tensor(
    values: FloatArray,
    known: BoolArray,
    method: str,
    rank: int | tuple[int, ...],
    mean: FloatArray,
    grid: GridIndex,
    seed: int,
) -> FactorModel:
    import tensorly as tl
    from tensorly.decomposition import parafac, tucker

    tl.set_backend("numpy")
    _n, t, c, f = values.shape
    p_n, d_n, v_n = grid.shape
    full = np.zeros((p_n, d_n, v_n, t, c, f))
    mask = np.zeros(full.shape, dtype=bool)
    centred = np.where(known, values - mean[None], 0.0)
    full[grid.pitch, grid.dynamic, grid.variation] = centred
    mask[grid.pitch, grid.dynamic, grid.variation] = known
    shape = (t, c, f)
    full4 = full.reshape(p_n, d_n * v_n, t, c * f)
    mask4 = mask.reshape(full4.shape).astype(np.float64)
    if method == "tucker":
        ranks = _tucker_ranks(rank, full4.shape)
        # a sparse grid (a drum kit's few notes per dynamic) leaves most of the tensor to the
        # imputation, which needs more alternating sweeps to settle (measured: docs/format.md)
        fill = float(grid.present.mean())
        iterations = _TUCKER_ITERATIONS if fill >= 0.5 else _TUCKER_ITERATIONS_SPARSE
        core, factors = tucker(
            full4, rank=list(ranks), mask=mask4, init=_hosvd_init(full4, ranks), n_iter_max=iterations,
            tol=1e-6, random_state=seed,
        )
        core = np.asarray(core)
        factors = [np.asarray(u) for u in factors]
        # deterministic signs: the largest-magnitude entry of each factor column is positive
        for mode, u in enumerate(factors):
            sign = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])])
            sign[sign == 0] = 1.0
            factors[mode] = u * sign[None, :]
            core = np.moveaxis(np.moveaxis(core, mode, -1) * sign, -1, mode)
        arrays = {"mean": mean.reshape(-1), "core": core, **dict(zip(_MODES, factors, strict=True))}
        return FactorModel("tucker", arrays, shape, grid)
    r = int(rank) if not isinstance(rank, tuple) else int(rank[0])
    r = max(1, r)
    weights, factors = parafac(
        full4, rank=r, mask=mask4, init=_svd_init(full4, r, seed), n_iter_max=_CP_ITERATIONS, tol=1e-6,
        random_state=seed, normalize_factors=True, l2_reg=1e-6 * float(np.mean(full4**2) + 1e-12),
    )
    factors = [np.asarray(u) for u in factors]
    weights = np.asarray(weights)
    for mode in range(1, 4):
        u = factors[mode]
        sign = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(r)])
        sign[sign == 0] = 1.0
        factors[mode] = u * sign[None, :]
        weights = weights * sign
    factors[0] = factors[0] * weights[None, :]
    order = np.argsort(-np.linalg.norm(factors[0], axis=0), kind="stable")
    factors = [u[:, order] for u in factors]
    arrays = {"mean": mean.reshape(-1), **dict(zip(_MODES, factors, strict=True))}
    return FactorModel("cp", arrays, shape, grid)


def _gram_eigvecs(tensor: FloatArray, mode: int) -> tuple[FloatArray, FloatArray]:
    """Eigenvalues (descending) and eigenvectors of the mode-``mode`` unfolding's Gram matrix."""
    unf = np.moveaxis(tensor, mode, 0).reshape(tensor.shape[mode], -1)
    w, v = np.linalg.eigh(unf @ unf.T)
    return w[::-1], v[:, ::-1]


def _hosvd_init(tensor: FloatArray, ranks: tuple[int, ...]) -> Any:
    """Truncated HOSVD (leading eigenvectors of every mode's Gram matrix) as a Tucker initialisation;
    equivalent to tensorly's ``init="svd"`` without its repeated SVDs of the large unfoldings."""
    from tensorly.tucker_tensor import TuckerTensor

    factors = [_gram_eigvecs(tensor, mode)[1][:, :r] for mode, r in enumerate(ranks)]
    core = tensor
    for mode, u in enumerate(factors):
        core = np.moveaxis(np.tensordot(u.T, np.moveaxis(core, mode, 0), axes=1), 0, mode)
    return TuckerTensor((core, factors))


def _svd_init(tensor: FloatArray, rank: int, seed: int) -> Any:
    """CP initialisation from the leading eigenvectors of every mode's Gram matrix (as tensorly's
    ``init="svd"``, but through ``eigh`` of the small Gram matrices, which is much faster for the
    hypercube's very unequal mode sizes); columns beyond a mode's size are random."""
    from tensorly.cp_tensor import CPTensor

    rng = np.random.default_rng(seed)
    factors = []
    for mode in range(tensor.ndim):
        w, v = _gram_eigvecs(tensor, mode)
        k = min(rank, int(np.sum(w > w[0] * 1e-12)) if w.size and w[0] > 0 else 0)
        u = rng.standard_normal((tensor.shape[mode], rank)) / math.sqrt(tensor.shape[mode])
        u[:, :k] = v[:, :k]
        factors.append(u)
    return CPTensor((np.ones(rank), factors))


def _tucker_ranks(rank: int | tuple[int, ...], dims: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(rank, tuple):
        if len(rank) != 4:
            raise ParameterError(f"Tucker ranks are (pitch, layer, time, feature), got {rank}")
        return tuple(max(1, min(int(r), d)) for r, d in zip(rank, dims, strict=True))
    r = int(rank)
    return tuple(max(1, min(r, d)) for d in dims)


def rank_candidates(values: FloatArray, known: BoolArray, *, method: str, grid: GridIndex, db_range: float) -> list[int | tuple[int, ...]]:
    """Rank settings to search over, from the smallest model to the largest.

    PCA and NMF: every number of components up to the number of notes. CP: a geometric series of
    ranks. Tucker: for a geometric series of relative errors ``eps``, the smallest rank of every
    mode whose discarded singular values hold at most ``eps^2`` of the mode's energy (the
    truncated-HOSVD rule), computed on the centred tensor with missing entries at the mean.
    """
    n = values.shape[0]
    if method in ("pca", "nmf"):
        top = max(1, n - 1 if method == "pca" else n)
        return list(range(1, top + 1))
    if method == "cp":
        return [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
    t, c, f = values.shape[1:]
    mean = _masked_mean(values, known, -db_range)
    p_n, d_n, v_n = grid.shape
    full = np.zeros((p_n, d_n * v_n, t, c * f))
    layer = grid.dynamic * v_n + grid.variation
    full[grid.pitch, layer] = np.where(known, values - mean[None], 0.0).reshape(n, t, c * f)
    spectra = []
    for mode in range(4):
        unf = np.moveaxis(full, mode, 0).reshape(full.shape[mode], -1)
        ev = np.clip(np.linalg.eigvalsh(unf @ unf.T)[::-1], 0.0, None)
        spectra.append(ev)
    out: list[int | tuple[int, ...]] = []
    for eps in np.geomspace(0.7, 0.001, 200):
        ranks = []
        for ev in spectra:
            total = ev.sum()
            tail = total - np.cumsum(ev)
            r = int(np.argmax(tail <= eps**2 * total)) + 1 if total > 0 else 1
            ranks.append(ev.size if ev.size <= 4 else max(1, min(r, ev.size)))
        cand = tuple(ranks)
        if cand not in out:
            out.append(cand)
    return out


def n_factor_values(method: str, rank: int | tuple[int, ...], *, n_notes: int, grid: GridIndex, shape: tuple[int, int, int]) -> int:
    """Number of stored factor values of a rank setting (before quantisation)."""
    t, c, f = shape
    d = t * c * f
    if method == "pca":
        r = int(rank)  # type: ignore[arg-type]
        return d + r * d + n_notes * r
    if method == "nmf":
        r = int(rank)  # type: ignore[arg-type]
        return r * d + n_notes * r
    p_n, d_n, v_n = grid.shape
    dims = (p_n, d_n * v_n, t, c * f)
    if method == "cp":
        r = int(rank)  # type: ignore[arg-type]
        return d + r * sum(dims)
    ranks = _tucker_ranks(rank, dims)
    return d + int(np.prod(ranks)) + sum(a * b for a, b in zip(ranks, dims, strict=True))
