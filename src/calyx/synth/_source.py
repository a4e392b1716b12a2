"""What the engine plays: any object that evaluates a note model at a continuous point.

:class:`ModelSource` is the protocol; :class:`calyx.hypercube.Instrument` (a decoded ``.calyx``
file) satisfies it, directly or through :func:`as_model_source`. :class:`ModelGrid` is a small
source built from analysed notes (no ``.calyx`` file needed): it interpolates between the
neighbouring notes of a pitch x dynamic grid, or, with ``interpolate=False``, behaves like a
layer-switching sampler (nearest sampled pitch transposed, velocity layer by range) for comparison.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numba import njit
from numpy.typing import NDArray

from calyx.analysis.model import NoteModel
from calyx.errors import FormatError, ParameterError

__all__ = [
    "GridNote",
    "ModelGrid",
    "ModelSource",
    "as_model_source",
    "load_source",
]

FloatArray = NDArray[np.float64]

_AMP_FLOOR = 1e-7  # amplitudes are interpolated in the log domain, floored here (-140 dB)
#: Grid notes given as loaders that a ModelGrid keeps loaded at once.
LOADED_MODELS = 32


def _midi_to_hz(pitch_midi: float) -> float:
    return 440.0 * 2.0 ** ((pitch_midi - 69.0) / 12.0)


@runtime_checkable
class ModelSource(Protocol):
    """A playable instrument: note models at any continuous point of its axes.

    Attributes
    ----------
    pitch_range_midi : tuple of float
        Lowest and highest playable pitch (fractional MIDI numbers, inclusive).
    dynamics : tuple of float
        The sampled dynamics (0..1), sorted. The engine evaluates a note at these *anchors* and
        interpolates between them (in log amplitude) at control rate, so that the dynamic can move
        during the note. Empty when the source has no grid: the note's own dynamic is then the only
        anchor and later changes scale the level only.
    articulations : tuple of str
        Articulation names; the first is the default.
    n_variations : int
        Number of round-robin variations (>= 1).
    """

    pitch_range_midi: tuple[float, float]
    dynamics: tuple[float, ...]
    articulations: tuple[str, ...]
    n_variations: int

    def evaluate(
        self, *, pitch_midi: float, dynamic: float, articulation: str | None = None, variation: int = 0
    ) -> NoteModel: ...


@dataclass(frozen=True)
class GridNote:
    """One analysed note placed on the grid of a :class:`ModelGrid`.

    Attributes
    ----------
    pitch_midi : float
        Pitch of the recording (fractional MIDI).
    dynamic : float
        Dynamic of its layer, 0..1.
    model : NoteModel or callable
        The model, or a function of no argument that returns it (loaded on first use; the grid
        keeps only the few most recently used).
    articulation : str
    variation : int
    dynamic_hi : float or None
        Upper edge of the layer's dynamic range (velocity_hi / 127), used by the sampler mode.
    key_lo, key_hi : float or None
        Key range the note is mapped to (for the playable range).
    """

    pitch_midi: float
    dynamic: float
    model: NoteModel | Callable[[], NoteModel]
    articulation: str = "default"
    variation: int = 0
    dynamic_hi: float | None = None
    key_lo: float | None = None
    key_hi: float | None = None


def _shifted(x: FloatArray, shift: float, n_frames: int) -> FloatArray:
    """Frames ``i + shift`` (i = 0..n_frames-1) of ``x`` (..., F) by linear interpolation, held at the ends."""
    f = x.shape[-1]
    i0 = math.floor(shift)
    w = shift - i0
    # x extended by its edge values, so that frames i0 .. i0 + n_frames are one contiguous slice
    lo = max(0, -i0)
    hi = max(0, i0 + n_frames + 1 - (f - 1))
    ext = np.concatenate([np.repeat(x[..., :1], lo, axis=-1), x, np.repeat(x[..., -1:], hi, axis=-1)], axis=-1)
    a = ext[..., i0 + lo : i0 + lo + n_frames]
    if w == 0.0:
        return np.array(a)
    b = ext[..., i0 + lo + 1 : i0 + lo + 1 + n_frames]
    return a * (1.0 - w) + b * w


@njit(cache=True, nogil=True)
def _add_log_shifted(dst: FloatArray, src: FloatArray, shift: float, weight: float, floor: float) -> None:
    """``dst[c, k, i] += weight * log(max(src[c, k, i + shift], floor))`` with ``src`` interpolated
    linearly between frames and held at its ends; rows ``k`` beyond ``src``'s get ``log(floor)``."""
    n_ch, n_rows, n_frames = dst.shape
    n_src_rows = src.shape[1]
    last = src.shape[2] - 1
    ln_floor = math.log(floor)
    for c in range(n_ch):
        for k in range(n_rows):
            if k >= n_src_rows:
                for i in range(n_frames):
                    dst[c, k, i] += weight * ln_floor
                continue
            for i in range(n_frames):
                pos = min(max(i + shift, 0.0), float(last))
                i0 = int(pos)
                i1 = min(i0 + 1, last)
                frac = pos - i0
                x = src[c, k, i0] * (1.0 - frac) + src[c, k, i1] * frac
                dst[c, k, i] += weight * math.log(max(x, floor))


def blend_models(corners: Sequence[tuple[NoteModel, float, float]], *, pitch_midi: float) -> NoteModel:
    """Weighted interpolation of note models, in log amplitude, aligned on their onsets.

    Parameters
    ----------
    corners : sequence of (model, weight, grid_pitch_midi)
        Weights sum to 1. The onset is the weighted mean of the models' onsets (each model's frames
        are shifted to it); the heaviest model sets the length and the kept attack.
    pitch_midi : float
        Target pitch; each model's tuning (its f0 against its grid pitch) is interpolated.

    Returns
    -------
    NoteModel
        Without stored phases.
    """
    if not corners:
        raise ParameterError("no models to blend")
    order = sorted(range(len(corners)), key=lambda i: -corners[i][1])
    primary, w_primary, p_primary = corners[order[0]]
    tuning = 0.0
    for model, w, p in corners:
        if model.f0_hz > 0:
            tuning += w * 1200.0 * math.log2(model.f0_hz / _midi_to_hz(p))
    f0_out = _midi_to_hz(pitch_midi) * 2.0 ** (tuning / 1200.0)
    if len(corners) == 1 or w_primary >= 1.0 - 1e-12:
        if abs(pitch_midi - p_primary) < 1e-9:
            return primary
        return replace(primary, f0_hz=f0_out if primary.n_partials else 0.0, phase=None, pitch_midi=pitch_midi)
    for model, _, _ in corners:
        if (model.sample_rate, model.hop_length, model.n_noise_bands, model.n_channels, model.stereo) != (
            primary.sample_rate,
            primary.hop_length,
            primary.n_noise_bands,
            primary.n_channels,
            primary.stereo,
        ):
            raise ParameterError(
                "grid notes must share sample rate, hop length, noise bands and channel layout to be interpolated"
            )
    n_frames = primary.n_frames
    n_partials = max(m.n_partials for m, _, _ in corners)
    # onsets blend like the other scalars; every model is shifted to put its onset there
    onset = min(max(round(sum(w * m.onset_sample for m, w, _ in corners)), 0), primary.n_samples - 1)
    n_ch = primary.n_channels
    ln_amp = np.zeros((n_ch, n_partials, n_frames))
    ln_noise = np.zeros((n_ch, primary.n_noise_bands, n_frames))
    f0_cents = np.zeros(n_frames)
    freq_cents = np.zeros((n_partials, n_frames))
    fc_weight = np.zeros((n_partials, 1))
    ln_b = 0.0
    for model, w, _ in corners:
        shift = (model.onset_sample - onset) / model.hop_length
        k = model.n_partials
        _add_log_shifted(ln_amp, model.amplitude, shift, w, _AMP_FLOOR)
        _add_log_shifted(ln_noise, model.noise_gain, shift, w, _AMP_FLOOR)
        f0_cents += w * _shifted(model.f0_cents, shift, n_frames)
        if k:
            freq_cents[:k] += w * _shifted(model.freq_cents, shift, n_frames)
            fc_weight[:k] += w
        ln_b += w * math.log(max(model.inharmonicity, 1e-12))
    freq_cents /= np.maximum(fc_weight, 1e-12)
    amp_out = np.exp(ln_amp, out=ln_amp)
    amp_out[amp_out <= _AMP_FLOOR * 1.0001] = 0.0
    noise_out = np.exp(ln_noise, out=ln_noise)
    noise_out[noise_out <= _AMP_FLOOR * 1.0001] = 0.0
    inharmonicity = math.exp(ln_b) if ln_b > math.log(1e-12) + 1e-9 else 0.0
    first = math.ceil(onset / primary.hop_length)
    amp_out[:, :, : max(first - 1, 0)] = 0.0
    return NoteModel(
        sample_rate=primary.sample_rate,
        n_samples=primary.n_samples,
        hop_length=primary.hop_length,
        onset_sample=onset,
        f0_hz=f0_out if n_partials else 0.0,
        inharmonicity=inharmonicity,
        f0_cents=f0_cents,
        amplitude=amp_out,
        freq_cents=freq_cents,
        noise_gain=noise_out,
        noise_fmin_hz=primary.noise_fmin_hz,
        noise_n_fft=primary.noise_n_fft,
        phase=None,
        noise_seed=primary.noise_seed,
        transient=primary.transient,
        transient_start=primary.transient_start + onset - primary.onset_sample,
        transient_fade_in=primary.transient_fade_in,
        transient_fade_out=primary.transient_fade_out,
        stereo=primary.stereo,
        pitch_midi=pitch_midi,
        harmonicity=primary.harmonicity,
    )


def _bracket(values: Sequence[float], x: float) -> tuple[int, int, float]:
    """Indices of the sorted ``values`` around ``x`` and the weight of the upper one (held at the ends)."""
    n = len(values)
    if n == 1 or x <= values[0]:
        return 0, 0, 0.0
    if x >= values[-1]:
        return n - 1, n - 1, 0.0
    j = int(np.searchsorted(values, x, side="right")) - 1
    lo, hi = values[j], values[j + 1]
    return j, j + 1, (x - lo) / (hi - lo)


class ModelGrid:
    """A :class:`ModelSource` over analysed notes on a pitch x dynamic grid (per articulation, variation).

    Parameters
    ----------
    notes : sequence of GridNote
    interpolate : bool
        True: :meth:`evaluate` interpolates between the neighbouring pitches and dynamics (in log
        amplitude) and the engine interpolates dynamics between the grid's layers. False: a
        layer-switching sampler — the nearest sampled pitch, transposed, and the velocity layer whose
        range holds the dynamic — for comparison.
    sustained : bool, optional
        Whether the instrument sustains (loops) or decays; detected per note when None.
    pitch_range_midi : tuple of float, optional
        Playable range; by default the notes' key ranges (or pitches) widened by half a semitone.
    name : str
    """

    def __init__(
        self,
        notes: Sequence[GridNote],
        *,
        interpolate: bool = True,
        sustained: bool | None = None,
        pitch_range_midi: tuple[float, float] | None = None,
        name: str = "",
    ) -> None:
        if not notes:
            raise ParameterError("a ModelGrid needs at least one note")
        self.notes = list(notes)
        self.interpolate = bool(interpolate)
        self.sustained = sustained
        self.name = name
        arts: list[str] = []
        for n in self.notes:
            if not (math.isfinite(n.pitch_midi) and math.isfinite(n.dynamic)):
                raise ParameterError(f"grid note pitch and dynamic must be finite, got {n.pitch_midi}, {n.dynamic}")
            if n.articulation not in arts:
                arts.append(n.articulation)
        self.articulations: tuple[str, ...] = tuple(arts)
        self.n_variations = 1 + max(n.variation for n in self.notes)
        grid_dyn = tuple(sorted({round(n.dynamic, 9) for n in self.notes}))
        self.dynamics: tuple[float, ...] = grid_dyn if self.interpolate else ()
        if pitch_range_midi is None:
            lo = min(min(n.pitch_midi, n.key_lo if n.key_lo is not None else n.pitch_midi) for n in self.notes)
            hi = max(max(n.pitch_midi, n.key_hi if n.key_hi is not None else n.pitch_midi) for n in self.notes)
            pitch_range_midi = (lo - 0.5, hi + 0.5)
        self.pitch_range_midi: tuple[float, float] = (float(pitch_range_midi[0]), float(pitch_range_midi[1]))
        self._loaded: OrderedDict[int, NoteModel] = OrderedDict()

    @classmethod
    def from_library(
        cls,
        library: Any,
        *,
        interpolate: bool = True,
        sustained: bool | None = None,
        workers: int | None = 1,
        **analysis: Any,
    ) -> ModelGrid:
        """Analyse every note of a :class:`calyx.io.Library` (``analysis`` goes to ``analyze_note``)."""
        from functools import partial

        from calyx.parallel import parallel_map

        notes = list(library)
        models = parallel_map(partial(_analyse_sample, analysis=analysis), notes, workers=workers)
        grid = [
            GridNote(
                pitch_midi=n.pitch_midi,
                dynamic=n.dynamic,
                model=m,
                articulation=n.articulation,
                variation=n.variation,
                dynamic_hi=n.velocity_hi / 127.0,
                key_lo=float(n.key_lo),
                key_hi=float(n.key_hi),
            )
            for n, m in zip(notes, models, strict=True)
        ]
        return cls(grid, interpolate=interpolate, sustained=sustained, name=getattr(library, "name", ""))

    def with_interpolation(self, interpolate: bool) -> ModelGrid:
        """The same notes as an interpolating source or as a layer-switching sampler."""
        return ModelGrid(
            self.notes,
            interpolate=interpolate,
            sustained=self.sustained,
            pitch_range_midi=self.pitch_range_midi,
            name=self.name,
        )

    def model_of(self, note: GridNote) -> NoteModel:
        """The note's model, loading it if it is given as a loader."""
        if isinstance(note.model, NoteModel):
            return note.model
        key = id(note)
        model = self._loaded.get(key)
        if model is None:
            model = note.model()
            if not isinstance(model, NoteModel):
                raise ParameterError(f"the loader of the grid note at {note.pitch_midi} returned {type(model).__name__}")
            self._loaded[key] = model
            while len(self._loaded) > LOADED_MODELS:
                self._loaded.popitem(last=False)
        else:
            self._loaded.move_to_end(key)
        return model

    def _candidates(self, articulation: str | None, variation: int) -> list[GridNote]:
        art = self.articulations[0] if articulation is None else articulation
        if art not in self.articulations:
            raise ParameterError(f"no articulation {art!r}; available: {list(self.articulations)}")
        notes = [n for n in self.notes if n.articulation == art]
        variations = sorted({n.variation for n in notes})
        var = variation if variation in variations else variations[variation % len(variations)]
        return [n for n in notes if n.variation == var]

    def evaluate(
        self, *, pitch_midi: float, dynamic: float, articulation: str | None = None, variation: int = 0
    ) -> NoteModel:
        """The note model at ``pitch_midi`` and ``dynamic`` (see the class docstring)."""
        p = float(pitch_midi)
        d = float(dynamic)
        lo, hi = self.pitch_range_midi
        if not (math.isfinite(p) and lo <= p <= hi):
            raise ParameterError(f"pitch_midi must be within {lo:.2f}..{hi:.2f}, got {pitch_midi}")
        if not (math.isfinite(d) and 0.0 <= d <= 1.0):
            raise ParameterError(f"dynamic must be within 0..1, got {dynamic}")
        notes = self._candidates(articulation, int(variation))
        layers = sorted({round(n.dynamic, 9) for n in notes})
        if self.interpolate:
            j0, j1, wd = _bracket(layers, d)
            chosen = [(layers[j0], 1.0 - wd)] + ([(layers[j1], wd)] if wd > 0 else [])
        else:
            # the layer whose velocity range holds the dynamic (midpoints when ranges are unknown)
            his = [max((n.dynamic_hi or 0.0) for n in notes if round(n.dynamic, 9) == lay) for lay in layers]
            if all(h > 0.0 for h in his):
                layer = next((lay for lay, h in zip(layers, his, strict=True) if d <= h), layers[-1])
            else:
                mids = [0.5 * (a + b) for a, b in itertools.pairwise(layers)]
                layer = layers[int(np.searchsorted(mids, d))]
            chosen = [(layer, 1.0)]
        corners: list[tuple[NoteModel, float, float]] = []
        for layer, wl in chosen:
            row = sorted((n for n in notes if round(n.dynamic, 9) == layer), key=lambda n: n.pitch_midi)
            pitches = [n.pitch_midi for n in row]
            if self.interpolate:
                i0, i1, wp = _bracket(pitches, p)
                corners.append((self.model_of(row[i0]), wl * (1.0 - wp), pitches[i0]))
                if wp > 0:
                    corners.append((self.model_of(row[i1]), wl * wp, pitches[i1]))
            else:
                i = int(np.argmin([abs(q - p) for q in pitches]))
                corners.append((self.model_of(row[i]), wl, pitches[i]))
        return blend_models(corners, pitch_midi=p)


def _analyse_sample(note: Any, *, analysis: dict[str, Any]) -> NoteModel:
    from calyx.analysis import analyze_note

    return analyze_note(note.load(), sample_rate=note.sample_rate, pitch_midi=note.pitch_midi, **analysis)


class _Adapter:
    """Gives an instrument-like object the :class:`ModelSource` attributes it spells differently.

    Axes it does not state are derived from its ``notes`` when it has them (objects with
    ``pitch_midi``, ``key_lo``/``key_hi``, ``dynamic``, ``variation``, as
    :class:`calyx.hypercube.Instrument` holds); ``evaluate`` is called with keywords.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = str(getattr(inner, "name", ""))
        notes = list(getattr(inner, "notes", None) or [])
        self.pitch_range_midi = _find_pitch_range(inner, notes)
        dyn = _find_attr(inner, ("dynamics", "dynamics_grid", "dynamic_grid"), None)
        if dyn is None:
            dyn = sorted({round(float(n.dynamic), 9) for n in notes if hasattr(n, "dynamic")})
        self.dynamics = tuple(float(d) for d in dyn)
        arts = _find_attr(inner, ("articulations", "articulation_names"), ())
        self.articulations = tuple(str(a) for a in arts) or ("default",)
        n_var = _find_attr(inner, ("n_variations",), None)
        if n_var is None:
            variations = _find_attr(inner, ("variations",), None)
            if variations is None:
                variations = sorted({int(n.variation) for n in notes if hasattr(n, "variation")}) or [0]
            n_var = len(tuple(variations)) if not isinstance(variations, int) else variations
        self.n_variations = max(1, int(n_var))
        self.sustained = _find_attr(inner, ("sustained",), None)
        self.is_kit = bool(_find_attr(inner, ("is_kit",), False))
        self.release_s = _find_attr(inner, ("release_s",), None)

    def evaluate(
        self, *, pitch_midi: float, dynamic: float, articulation: str | None = None, variation: int = 0
    ) -> NoteModel:
        model = self.inner.evaluate(pitch_midi=pitch_midi, dynamic=dynamic, articulation=articulation, variation=variation)
        if not isinstance(model, NoteModel):
            raise FormatError(f"{type(self.inner).__name__}.evaluate returned {type(model).__name__}, not a NoteModel")
        return model


def _find_attr(obj: Any, names: Sequence[str], default: Any) -> Any:
    for name in names:
        if hasattr(obj, name):
            value = getattr(obj, name)
            return value() if callable(value) else value
    return default


def _find_pitch_range(obj: Any, notes: Sequence[Any]) -> tuple[float, float]:
    rng = _find_attr(obj, ("pitch_range_midi", "pitch_range"), None)
    if rng is not None:
        return float(rng[0]), float(rng[1])
    lows = [float(getattr(n, "key_lo", n.pitch_midi)) for n in notes if hasattr(n, "pitch_midi")]
    highs = [float(getattr(n, "key_hi", n.pitch_midi)) for n in notes if hasattr(n, "pitch_midi")]
    lows += [float(n.pitch_midi) for n in notes if hasattr(n, "pitch_midi")]
    highs += [float(n.pitch_midi) for n in notes if hasattr(n, "pitch_midi")]
    if lows:
        return min(lows) - 0.5, max(highs) + 0.5
    return 0.0, 127.0


def as_model_source(obj: Any) -> ModelSource:
    """``obj`` itself when it satisfies :class:`ModelSource`, else a thin adapter around it.

    Raises
    ------
    ParameterError
        When ``obj`` has no ``evaluate`` method.
    """
    if not callable(getattr(obj, "evaluate", None)):
        raise ParameterError(f"{type(obj).__name__} cannot be played: it has no evaluate(pitch_midi=..., dynamic=...)")
    if isinstance(obj, ModelSource):
        return obj
    return _Adapter(obj)


def load_source(path: str | os.PathLike[str]) -> ModelSource:
    """Open an instrument for playing: a ``.calyx`` file (through the instrument loader) or a sample
    library (SF2/SF3, SFZ, manifest folder), whose notes are then analysed into a :class:`ModelGrid`.

    Raises
    ------
    calyx.errors.AudioFileError, calyx.errors.FormatError
        For a missing or unreadable file.
    """
    from pathlib import Path

    from calyx.errors import AudioFileError

    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"{p}: no such instrument file")
    if p.suffix.lower() == ".calyx":
        return as_model_source(_load_calyx(p))
    from calyx.io import load_library

    return ModelGrid.from_library(load_library(p), workers=None)


def _load_calyx(path: os.PathLike[str]) -> Any:
    """Read a ``.calyx`` instrument with :func:`calyx.instrument.load` (lazily, one articulation at a time)."""
    from calyx.instrument import load

    return load(path)
