"""Encoding a library: per-note analysis (the parallel map), then the factoring (the reduce).

``encode_library`` streams: each worker loads one note's audio, analyses it and returns only the
note's values on the common axes (:class:`~calyx.hypercube._tensor.NoteRecord`, a few hundred
kilobytes), so the PCM of the library is never in memory at once. The factor models are then fitted
per articulation, with ranks chosen to meet a size target (``target_ratio``, size of the library
as 16-bit PCM over the size of the ``.calyx`` file) or a quality target (``max_lmd``, the
duration-weighted log-mel distance of a few decoded notes, measured against their source).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx import __version__
from calyx.analysis import AnalysisParams, analyze_note
from calyx.errors import ParameterError
from calyx.hypercube._entropy import encoded_size, lag_candidates
from calyx.hypercube._factors import METHODS, FactorModel, fit_factors, n_factor_values, rank_candidates
from calyx.hypercube._instrument import ArticulationData, GridNote, Instrument, InstrumentSettings, grid_index
from calyx.hypercube._quantise import quantise_factors
from calyx.hypercube._tensor import NoteRecord, record_from_model, stack_records
from calyx.hypercube._timebase import TimeBase
from calyx.io.library import Library, NoteSample
from calyx.parallel import parallel_map

__all__ = [
    "DEFAULT_TARGET_RATIO",
    "EncodeOptions",
    "analyse_library",
    "encode_library",
    "encode_records",
    "estimated_size",
    "instrument_settings",
    "subset_lmd",
]

FloatArray = NDArray[np.float64]

#: Size ratio aimed at when neither a ratio, a quality nor ranks are given.
DEFAULT_TARGET_RATIO = 200.0
#: Fits tried while searching for a size or quality target (each fit is a full factoring).
_MAX_SEARCH_FITS = 7


@dataclass(frozen=True)
class EncodeOptions:
    """How to factor and quantise; every field has a measured default (``docs/format.md``).

    Attributes
    ----------
    method : str
        ``"pca"``, ``"nmf"``, ``"tucker"`` or ``"cp"``.
    target_ratio : float or None
        Size of the library as 16-bit PCM over the size of the file to aim at.
    max_lmd : float or None
        Largest duration-weighted LMD of the evaluation notes to accept (smallest model meeting it).
    ranks : int, tuple of int or None
        Explicit ranks (PCA/NMF components, CP rank, Tucker ranks of pitch, layer, time, feature);
        used for every articulation, skipping the search.
    distortion : float
        Mean squared error that quantisation may add, as a fraction of the factoring's own error.
        With ``target_ratio`` it is tuned further to meet the size.
    points_per_octave : float
        Density of the log-spaced decay segment of the time axis.
    attack_s : float
        Length of the dense attack segment of the time axis, seconds.
    db_range : float
        Floor of the values below each note's gain, dB.
    n_eval_notes : int
        Notes decoded and measured per step of the ``max_lmd`` search.
    seed : int
        Seed of every randomised step (the output is byte-identical for identical input).
    """

    method: str = "tucker"
    target_ratio: float | None = None
    max_lmd: float | None = None
    ranks: int | tuple[int, ...] | None = None
    distortion: float = 0.1
    points_per_octave: float = 8.0
    attack_s: float = 0.1
    db_range: float = 100.0
    n_eval_notes: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ParameterError(f"method must be one of {METHODS}, got {self.method!r}")
        given = [x for x in (self.target_ratio, self.max_lmd, self.ranks) if x is not None]
        if len(given) > 1:
            raise ParameterError("give at most one of target_ratio, max_lmd and ranks")
        if self.target_ratio is not None and not (math.isfinite(self.target_ratio) and self.target_ratio > 1):
            raise ParameterError(f"target_ratio must be a finite number > 1, got {self.target_ratio}")
        if self.max_lmd is not None and not (math.isfinite(self.max_lmd) and self.max_lmd > 0):
            raise ParameterError(f"max_lmd must be a finite number > 0, got {self.max_lmd}")
        if not (math.isfinite(self.distortion) and self.distortion > 0):
            raise ParameterError(f"distortion must be > 0, got {self.distortion}")
        if not (self.db_range >= 20 and math.isfinite(self.db_range)):
            raise ParameterError(f"db_range must be >= 20 dB, got {self.db_range}")
        if self.n_eval_notes < 1:
            raise ParameterError(f"n_eval_notes must be >= 1, got {self.n_eval_notes}")

    def goal(self) -> tuple[str, Any]:
        """``("ratio", r)``, ``("lmd", l)`` or ``("ranks", r)``."""
        if self.max_lmd is not None:
            return "lmd", self.max_lmd
        if self.ranks is not None:
            return "ranks", self.ranks
        return "ratio", self.target_ratio if self.target_ratio is not None else DEFAULT_TARGET_RATIO


def _analysis_params(params: AnalysisParams | None) -> AnalysisParams:
    p = params if params is not None else AnalysisParams()
    if p.stereo != "channels":
        p = replace(p, stereo="channels")
    return p


def instrument_settings(lib: Library, *, params: AnalysisParams | None = None, options: EncodeOptions | None = None) -> InstrumentSettings:
    """The common axes of a library: sample rate, frame rate, features and time axis."""
    if not lib.notes:
        raise ParameterError(f"{lib.name}: the library has no notes")
    rates = sorted({n.sample_rate for n in lib.notes})
    if len(rates) != 1:
        raise ParameterError(f"{lib.name}: notes have several sample rates {rates}; resample the library to one rate")
    sr = rates[0]
    p = _analysis_params(params)
    o = options or EncodeOptions()
    hop = p.hop_for(sr)
    longest = max(n.n_samples for n in lib.notes) / sr
    timebase = TimeBase(step_s=hop / sr, attack_s=max(o.attack_s, hop / sr), points_per_octave=o.points_per_octave, duration_s=longest)
    return InstrumentSettings(
        sample_rate=int(sr),
        hop_length=int(hop),
        n_channels=max(n.channels for n in lib.notes),
        n_partials_max=int(p.n_partials),
        n_noise_bands=int(p.n_noise_bands),
        noise_fmin_hz=float(p.noise_fmin_hz),
        noise_n_fft=int(p.noise_fft_for(sr)),
        fmax_hz=float(p.fmax_hz),
        db_range=float(o.db_range),
        timebase=timebase,
    )


@dataclass(frozen=True)
class _Job:
    note: NoteSample
    params: AnalysisParams
    settings: InstrumentSettings


def _analyse_job(job: _Job) -> NoteRecord:
    """Load, analyse and resample one note (runs in a worker process)."""
    from calyx.analysis import AnalysisWarning

    s = job.settings
    y = job.note.load()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        try:
            model = analyze_note(y, sample_rate=job.note.sample_rate, pitch_midi=job.note.pitch_midi, params=job.params)
        except ParameterError as exc:
            raise ParameterError(f"{job.note.source}: {exc}") from exc
    record = record_from_model(
        model,
        timebase=s.timebase,
        n_channels=s.n_channels,
        n_partials_max=s.n_partials_max,
        n_noise_bands=s.n_noise_bands,
        db_range=s.db_range,
        nominal_pitch_midi=job.note.pitch_midi,
    )
    messages = tuple(str(w.message) for w in caught if issubclass(w.category, AnalysisWarning))
    return replace(record, warnings=messages)


def analyse_library(
    lib: Library,
    *,
    settings: InstrumentSettings,
    params: AnalysisParams | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
) -> list[NoteRecord]:
    """Analyse every note (in parallel) and return their values on the common axes, in library order."""
    p = _analysis_params(params)
    jobs = [_Job(n, p, settings) for n in lib.notes]
    return parallel_map(_analyse_job, jobs, workers=workers, scheduler=scheduler, progress=progress, desc="analysing")


def _grid_note(n: NoteSample) -> GridNote:
    return GridNote(
        pitch_midi=float(n.pitch_midi),
        velocity_lo=int(n.velocity_lo),
        velocity_hi=int(n.velocity_hi),
        key_lo=int(n.key_lo),
        key_hi=int(n.key_hi),
        articulation=n.articulation,
        variation=int(n.variation),
        n_samples=int(n.n_samples),
        channels=int(n.channels),
        loop_start=n.loop_start,
        loop_end=n.loop_end,
        source=n.source,
    )


@dataclass
class _Group:
    name: str
    indices: NDArray[np.int64]
    values: FloatArray
    known: NDArray[np.bool_]
    scalars: FloatArray
    n_partials: NDArray[np.int64]
    candidates: list[int | tuple[int, ...]]
    fitted: dict[Any, FactorModel]
    mse: dict[int, float] = field(default_factory=dict)


def _groups(notes: Sequence[GridNote], records: Sequence[NoteRecord], method: str, db_range: float) -> list[_Group]:
    order: list[str] = []
    for n in notes:
        if n.articulation not in order:
            order.append(n.articulation)
    out = []
    for name in order:
        idx = np.array([i for i, n in enumerate(notes) if n.articulation == name], dtype=np.int64)
        recs = [records[i] for i in idx]
        values, known = stack_records(recs)
        scalars = np.array([[r.gain_db, r.onset_s, r.tuning_cents, r.inharmonicity] for r in recs], dtype=np.float64)
        n_partials = np.array([r.n_partials for r in recs], dtype=np.int64)
        grid = grid_index([notes[i] for i in idx])
        cands = rank_candidates(values, known, method=method, grid=grid, db_range=db_range)
        out.append(_Group(name, idx, values, known, scalars, n_partials, cands, {}))
    return out


def _fit(group: _Group, notes: Sequence[GridNote], rank: int | tuple[int, ...], options: EncodeOptions) -> FactorModel:
    key = rank
    if key not in group.fitted:
        grid = grid_index([notes[i] for i in group.indices])
        group.fitted[key] = fit_factors(
            group.values, group.known, method=options.method, rank=rank, grid=grid,
            db_range=options.db_range, seed=options.seed,
        )
    return group.fitted[key]


def _mse(fm: FactorModel, group: _Group) -> float:
    """Mean squared error (dB²) of the fitted model on the known entries (cached per model)."""
    cached = group.mse.get(id(fm))
    if cached is None:
        rec = fm.reconstruct()
        err = (rec - group.values)[group.known]
        cached = float(np.mean(err**2)) if err.size else 1.0
        group.mse[id(fm)] = cached
    return cached


def _assemble(
    lib: Library,
    notes: Sequence[GridNote],
    settings: InstrumentSettings,
    groups: Sequence[_Group],
    models: Sequence[FactorModel],
    distortion: float,
    options: EncodeOptions,
    params: AnalysisParams | None,
    preset: str | None,
    goal: tuple[str, Any],
) -> Instrument:
    arts: dict[str, ArticulationData] = {}
    for g, fm in zip(groups, models, strict=True):
        qf = quantise_factors(fm, distortion_db2=distortion * _mse(fm, g))
        arts[g.name] = ArticulationData(g.name, g.indices, g.scalars.copy(), g.n_partials.copy(), qf)
    provenance = {
        "encoder": f"calyx {__version__}",
        "source": lib.source,
        "library": lib.name,
        "preset": preset,
        "analysis": asdict(_analysis_params(params)),
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()},
        "goal": {"kind": goal[0], "value": list(goal[1]) if isinstance(goal[1], tuple) else goal[1]},
        "distortion": distortion,
    }
    return Instrument(name=lib.name, settings=settings, notes=notes, method=options.method, articulations=arts, provenance=provenance)


#: Size of an instrument's file in bytes; called as ``f(inst)`` and ``f(inst, factors=False)`` (the
#: part that does not depend on the ranks). ``calyx.format.calyx_file.instrument_size`` is exact.
SizeFunction = Callable[..., int]


def estimated_size(inst: Instrument, *, factors: bool = True) -> int:
    """Size of an instrument's ``.calyx`` file, estimated without the format module.

    The factor data are exact (the entropy coder's output sizes); the header and note scalars are
    estimated from their JSON and raw sizes (within a few hundred bytes). The encoders use
    ``calyx.format.calyx_file.instrument_size`` instead when it is passed as ``file_size``.
    """
    notes = {
        "pitch_midi": [n.pitch_midi for n in inst.notes],
        "velocity": [[n.velocity_lo, n.velocity_hi] for n in inst.notes],
        "key": [[n.key_lo, n.key_hi] for n in inst.notes],
        "articulation": [0 for _ in inst.notes],
        "variation": [n.variation for n in inst.notes],
        "n_samples": [n.n_samples for n in inst.notes],
        "channels": [n.channels for n in inst.notes],
        "loop": [None if n.loop_start is None else [n.loop_start, n.loop_end] for n in inst.notes],
        "source": [n.source for n in inst.notes],
    }
    total = 1024 + len(json.dumps({"notes": notes, "provenance": inst.provenance}, separators=(",", ":")))
    for name in inst.articulations:
        art = inst.articulation(name)
        total += 300 + 17 * art.note_indices.size  # articulation entry, NOTE chunk
        if factors:
            for fname, qa in art.factors.arrays.items():
                lags = lag_candidates(fname, qa.q.shape, n_features=inst.settings.n_channels * inst.settings.n_features)
                total += 40 + 4 * qa.q.ndim + 4 * qa.steps.size + encoded_size(qa.q, lags=lags)
    return total


def _eval_subset(notes: Sequence[GridNote], n_eval: int) -> list[int]:
    order = sorted(range(len(notes)), key=lambda i: (notes[i].articulation, notes[i].dynamic, notes[i].pitch_midi, notes[i].variation))
    if len(order) <= n_eval:
        return order
    pos = np.linspace(0, len(order) - 1, n_eval)
    return sorted({order[round(p)] for p in pos})


def subset_lmd(inst: Instrument, indices: Sequence[int], references: dict[int, FloatArray]) -> float:
    """Duration-weighted LMD of decoded grid notes against their source audio."""
    from calyx.metrics import lmd

    vals, durs = [], []
    for i in indices:
        y = inst.decode_note(i)
        vals.append(lmd(references[i], y, sample_rate=inst.sample_rate))
        durs.append(inst.notes[i].n_samples)
    return float(np.average(vals, weights=durs))


def encode_records(
    lib: Library,
    records: Sequence[NoteRecord],
    *,
    settings: InstrumentSettings,
    options: EncodeOptions | None = None,
    params: AnalysisParams | None = None,
    preset: str | None = None,
    file_size: SizeFunction | None = None,
) -> Instrument:
    """Factor, quantise and assemble an instrument from analysed notes (see :func:`encode_library`)."""
    from threadpoolctl import threadpool_limits

    # one BLAS thread: deterministic results (byte-identical files), and no contention on shared cores
    with threadpool_limits(1):
        return _encode_records(lib, records, settings=settings, options=options, params=params, preset=preset,
                               file_size=file_size)


def _encode_records(
    lib: Library,
    records: Sequence[NoteRecord],
    *,
    settings: InstrumentSettings,
    options: EncodeOptions | None,
    params: AnalysisParams | None,
    preset: str | None,
    file_size: SizeFunction | None,
) -> Instrument:
    o = options or EncodeOptions()
    if len(records) != len(lib.notes):
        raise ParameterError(f"{len(records)} records for {len(lib.notes)} notes")
    notes = [_grid_note(n) for n in lib.notes]
    groups = _groups(notes, records, o.method, o.db_range)
    goal = o.goal()

    def at(fraction: float) -> list[FactorModel]:
        out = []
        for g in groups:
            idx = round(fraction * (len(g.candidates) - 1))
            out.append(_fit(g, notes, g.candidates[idx], o))
        return out

    def build(models: Sequence[FactorModel], distortion: float) -> Instrument:
        return _assemble(lib, notes, settings, groups, models, distortion, o, params, preset, goal)

    if goal[0] == "ranks":
        models = [_fit(g, notes, goal[1], o) for g in groups]
        return build(models, o.distortion)

    if goal[0] == "ratio":
        target_bytes = lib.pcm16_bytes() / float(goal[1])
        return _search_size(at, build, groups, notes, settings, o, target_bytes, file_size or estimated_size)

    # quality target: smallest fraction whose evaluation notes meet max_lmd
    subset = _eval_subset(notes, o.n_eval_notes)
    refs = {i: lib.notes[i].load() for i in subset}
    lo, hi = 0.0, 1.0
    best: Instrument | None = None
    inst_hi = build(at(hi), o.distortion)
    if subset_lmd(inst_hi, subset, refs) > float(goal[1]):
        return inst_hi  # the largest model does not meet the target: return it (the caller reports the figure)
    best = inst_hi
    for _ in range(_MAX_SEARCH_FITS - 1):
        mid = 0.5 * (lo + hi)
        inst = build(at(mid), o.distortion)
        if subset_lmd(inst, subset, refs) <= float(goal[1]):
            hi, best = mid, inst
        else:
            lo = mid
        if all(round(lo * (len(g.candidates) - 1)) == round(hi * (len(g.candidates) - 1)) for g in groups):
            break
    return best


def _search_size(
    at: Callable[[float], list[FactorModel]],
    build: Callable[[Sequence[FactorModel], float], Instrument],
    groups: Sequence[_Group],
    notes: Sequence[GridNote],
    settings: InstrumentSettings,
    o: EncodeOptions,
    target_bytes: float,
    file_size: SizeFunction,
) -> Instrument:
    """Largest model whose file fits ``target_bytes``: predict the rank from bytes per value, fit,
    correct the prediction, then tune the quantisation to land on the target."""

    def predicted_values(fraction: float) -> int:
        total = 0
        for g in groups:
            idx = round(fraction * (len(g.candidates) - 1))
            total += n_factor_values(o.method, g.candidates[idx], n_notes=g.indices.size,
                                     grid=grid_index([notes[i] for i in g.indices]), shape=settings.value_shape)
        return total

    fractions = np.linspace(0.0, 1.0, 201)
    nvals = np.array([predicted_values(f) for f in fractions], dtype=np.float64)
    tried: dict[float, tuple[Instrument, int]] = {}
    points: list[tuple[float, float]] = []  # (log values, log factor bytes) of each fit
    overhead = 0.0
    for _ in range(4):
        budget = target_bytes - overhead
        if not points:
            pred = np.log(np.maximum(nvals * 0.4, 1.0))  # first guess: about 3 bits per value
        elif len(points) == 1:
            pred = points[0][1] + (np.log(nvals) - points[0][0])  # bytes proportional to values
        else:
            (x0, y0), (x1, y1) = points[-2], points[-1]
            slope = (y1 - y0) / (x1 - x0) if abs(x1 - x0) > 1e-9 else 1.0
            pred = y1 + min(max(slope, 0.5), 2.0) * (np.log(nvals) - x1)  # a power law through the last two fits
        ok = np.nonzero(pred <= math.log(max(budget, 1.0)))[0]
        f = float(fractions[ok[-1]]) if ok.size else 0.0
        if f in tried:
            break
        inst = build(at(f), o.distortion)
        size = file_size(inst)
        tried[f] = (inst, size)
        overhead = float(file_size(inst, factors=False))
        points.append((math.log(max(predicted_values(f), 1)), math.log(max(size - overhead, 1.0))))
        if abs(size - target_bytes) <= 0.05 * target_bytes:
            break
    def bracket() -> tuple[float | None, float | None]:
        under = [f for f, (_, size) in tried.items() if size <= target_bytes]
        f_lo = max(under) if under else None
        over = [f for f, (_, size) in tried.items() if size > target_bytes and (f_lo is None or f > f_lo)]
        return f_lo, (min(over) if over else None)

    def key(f: float) -> tuple[int, ...]:
        return tuple(round(f * (len(g.candidates) - 1)) for g in groups)

    # make sure a fit over the target brackets the best one under it (when the prediction undershot)
    f_under, f_over = bracket()
    for _ in range(2):
        if f_over is not None or f_under is None or tried[f_under][1] >= 0.9 * target_bytes:
            break
        grow = math.sqrt(target_bytes / max(tried[f_under][1], 1.0))
        larger = [f for f in fractions if f > f_under and nvals[round(f * 200)] >= grow * predicted_values(f_under)]
        if not larger:
            break
        f = float(larger[0])
        inst = build(at(f), o.distortion)
        tried[f] = (inst, file_size(inst))
        f_under, f_over = bracket()
    # bisect between the best fit under the target and the smallest over it, while models differ
    for _ in range(3):
        if f_under is None or f_over is None:
            break
        between = [f for f in fractions if f_under < f < f_over and key(f) not in (key(f_under), key(f_over))]
        if not between or tried[f_under][1] >= 0.9 * target_bytes:
            break
        f = float(between[len(between) // 2])
        inst = build(at(f), o.distortion)
        tried[f] = (inst, file_size(inst))
        f_under, f_over = bracket()

    def squeeze(f: float, lo_mult: float, hi_mult: float) -> tuple[Instrument, int] | None:
        """Smallest quantisation distortion in [lo, hi] x default whose file fits the target."""
        models = at(f)
        lo, hi = math.log(o.distortion * lo_mult), math.log(o.distortion * hi_mult)
        inst = build(models, math.exp(hi))
        size = file_size(inst)
        if size > target_bytes:
            return None
        found = (inst, size)
        for _ in range(10):
            mid = 0.5 * (lo + hi)
            inst = build(models, math.exp(mid))
            size = file_size(inst)
            if size <= target_bytes:
                found, hi = (inst, size), mid
            else:
                lo = mid
            if hi - lo < 0.05:
                break
        return found

    # measured: a smaller model quantised finely beats a larger one quantised coarsely (quantisation
    # beyond about the default distortion costs LMD faster than it saves bytes), so fill the budget
    # with the largest model that fits, refining its quantisation; a larger one only if none fits
    under_got = squeeze(f_under, 1.0 / 16.0, 1.0) if f_under is not None else None
    if under_got is not None and under_got[1] >= 0.75 * target_bytes:
        return under_got[0]
    over_got = squeeze(f_over, 1.0, 4.0) if f_over is not None else None
    if over_got is not None:
        return over_got[0]
    if under_got is not None:
        return under_got[0]
    smallest = min(tried, key=lambda f: tried[f][1])
    got = squeeze(smallest, 1.0, 64.0)
    return got[0] if got is not None else tried[smallest][0]


def encode_library(
    lib: Library,
    *,
    options: EncodeOptions | None = None,
    params: AnalysisParams | None = None,
    preset: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    file_size: SizeFunction | None = None,
) -> Instrument:
    """Analyse a library note by note and encode it as an :class:`Instrument`.

    Parameters
    ----------
    lib : Library
    options : EncodeOptions, optional
        Method and size/quality target (default: Tucker, 200x smaller than 16-bit PCM).
    params : AnalysisParams, optional
        Per-note analysis settings (``stereo`` is forced to ``"channels"``).
    preset : str, optional
        The SoundFont preset the library came from (recorded as provenance).
    workers, scheduler, progress
        As :func:`calyx.parallel.parallel_map`: local processes, a Dask scheduler address, a
        progress bar on stderr.
    file_size : callable, optional
        The size of an instrument's file for the ``target_ratio`` search (``f(inst)`` and
        ``f(inst, factors=False)``): ``calyx.format.calyx_file.instrument_size`` for the exact
        figure; by default :func:`estimated_size`.

    Returns
    -------
    Instrument
    """
    o = options or EncodeOptions()
    settings = instrument_settings(lib, params=params, options=o)
    records = analyse_library(lib, settings=settings, params=params, workers=workers, scheduler=scheduler, progress=progress)
    return encode_records(lib, records, settings=settings, options=o, params=params, preset=preset, file_size=file_size)
