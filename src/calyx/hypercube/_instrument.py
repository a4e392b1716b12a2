"""An encoded instrument: the notes of the library, their axes, and one factor model per articulation.

:class:`Instrument` is what ``calyx encode`` produces and a ``.calyx`` file stores, and what a
sampler or the real-time engine plays: :meth:`Instrument.evaluate` returns the
:class:`~calyx.analysis.model.NoteModel` at *any* point of pitch × dynamic × articulation ×
variation, grid notes and points between them through the same code:

1. the coefficient rows of the notes around the point are blended with bilinear weights (linear
   in pitch within a dynamic layer, then linear between the two nearest layers; outside the
   sampled range the nearest note is held, never extrapolated; a missing grid point is bridged
   by its neighbours in the same layer);
2. the factor model expands the blended row into dB values on the common axes (linear, so this
   is linear interpolation of the pitch and dynamic factor rows);
3. the per-note scalars (gain, onset, tuning, inharmonicity, length) are blended with the same
   weights, f0 is the requested pitch shifted by the blended tuning, and the values are turned
   into a frame-rate model.

Per-articulation data can be loaded lazily (a ``.calyx`` file is read one articulation at a time).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.analysis.model import NoteModel
from calyx.errors import ParameterError
from calyx.hypercube._decode import model_from_values, n_partials_below
from calyx.hypercube._factors import FactorModel, GridIndex
from calyx.hypercube._quantise import QuantisedFactors
from calyx.hypercube._render import render_model
from calyx.hypercube._timebase import TimeBase

__all__ = ["SCALAR_NAMES", "ArticulationData", "GridNote", "Instrument", "InstrumentSettings", "midi_to_hz"]

FloatArray = NDArray[np.float64]

#: Columns of :attr:`ArticulationData.scalars`.
SCALAR_NAMES = ("gain_db", "onset_s", "tuning_cents", "inharmonicity")


def midi_to_hz(pitch_midi: float) -> float:
    """Equal-tempered frequency of a (fractional) MIDI pitch, A4 = 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((pitch_midi - 69.0) / 12.0)


@dataclass(frozen=True)
class GridNote:
    """One note of the encoded library: its place on the axes, its sampler mapping and provenance.

    Attributes
    ----------
    pitch_midi : float
        Pitch recorded in the source audio.
    velocity_lo, velocity_hi, key_lo, key_hi : int
        MIDI ranges the source maps the note to (inclusive).
    articulation : str
    variation : int
        Round-robin index.
    n_samples : int
        Length of the source note in samples.
    channels : int
        Channels of the source note.
    loop_start, loop_end : int or None
        The source's sustain loop (half-open), if any.
    source : str
        The source sample(s): file and zone or file name.
    """

    pitch_midi: float
    velocity_lo: int
    velocity_hi: int
    key_lo: int
    key_hi: int
    articulation: str
    variation: int
    n_samples: int
    channels: int
    loop_start: int | None
    loop_end: int | None
    source: str

    @property
    def dynamic(self) -> float:
        """Centre of the velocity range normalised to 0..1, as :func:`calyx.io.velocity_to_dynamic`."""
        return (self.velocity_lo + self.velocity_hi) / 254.0


@dataclass(frozen=True)
class InstrumentSettings:
    """Axes and conventions shared by every note of an instrument.

    Attributes
    ----------
    sample_rate : int
        Hz.
    hop_length : int
        Frame advance of the decoded models, samples.
    n_channels : int
        Channels of the tensor (the most any note has).
    n_partials_max : int
        Partial features per channel.
    n_noise_bands : int
        Noise-band features per channel (ERB-spaced, see :func:`calyx.core.synthesis.band_edges_hz`).
    noise_fmin_hz : float
    noise_n_fft : int
    fmax_hz : float
        Partials at or above ``min(fmax_hz, 0.95 Nyquist)`` are not rendered.
    db_range : float
        Values are dB relative to each note's gain, floored at ``-db_range`` (silence).
    timebase : TimeBase
    """

    sample_rate: int
    hop_length: int
    n_channels: int
    n_partials_max: int
    n_noise_bands: int
    noise_fmin_hz: float
    noise_n_fft: int
    fmax_hz: float
    db_range: float
    timebase: TimeBase

    @property
    def n_features(self) -> int:
        return self.n_partials_max + self.n_noise_bands

    @property
    def value_shape(self) -> tuple[int, int, int]:
        """``(n_times, n_channels, n_features)`` of one note's values."""
        return (self.timebase.n_times, self.n_channels, self.n_features)


@dataclass
class ArticulationData:
    """The factor model and per-note scalars of one articulation.

    Attributes
    ----------
    name : str
    note_indices : np.ndarray [shape=(n_notes,), dtype=int]
        Indices into :attr:`Instrument.notes`, in the order of the rows below.
    scalars : np.ndarray [shape=(n_notes, 4)]
        ``gain_db``, ``onset_s``, ``tuning_cents``, ``inharmonicity`` of every note.
    n_partials : np.ndarray [shape=(n_notes,), dtype=int]
        Partials each note has (0 for an unpitched note).
    factors : QuantisedFactors
        What the file stores; the decoder uses its dequantised values.
    """

    name: str
    note_indices: NDArray[np.int64]
    scalars: FloatArray
    n_partials: NDArray[np.int64]
    factors: QuantisedFactors
    _model: FactorModel | None = field(default=None, repr=False)
    _coef: FloatArray | None = field(default=None, repr=False)


def grid_index(notes: Sequence[GridNote]) -> GridIndex:
    """Positions of notes on their sorted pitch × dynamic × variation grid.

    Notes that share a pitch, velocity range and variation (a source that layers several samples
    on one key, say) get distinct slots of the variation axis, in file order, so that no grid point
    holds two notes.
    """
    pitches = sorted({n.pitch_midi for n in notes})
    dynamics = sorted({(n.velocity_lo, n.velocity_hi) for n in notes}, key=lambda v: ((v[0] + v[1]), v))
    seen: dict[tuple[float, int, int, int], int] = {}
    slots_of: list[tuple[int, int]] = []
    for n in notes:
        key = (n.pitch_midi, n.velocity_lo, n.velocity_hi, n.variation)
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        slots_of.append((n.variation, occurrence))
    slots = sorted(set(slots_of))
    return GridIndex(
        np.array([pitches.index(n.pitch_midi) for n in notes], dtype=np.int64),
        np.array([dynamics.index((n.velocity_lo, n.velocity_hi)) for n in notes], dtype=np.int64),
        np.array([slots.index(sl) for sl in slots_of], dtype=np.int64),
        (len(pitches), len(dynamics), len(slots)),
    )


def _bracket(values: FloatArray, x: float) -> list[tuple[int, float]]:
    """Indices and linear weights of the sorted ``values`` around ``x`` (held at the ends)."""
    if values.size == 1 or x <= values[0]:
        return [(0, 1.0)]
    if x >= values[-1]:
        return [(values.size - 1, 1.0)]
    j = int(np.searchsorted(values, x, side="right"))
    lo, hi = values[j - 1], values[j]
    if hi == lo:
        return [(j - 1, 1.0)]
    t = (x - lo) / (hi - lo)
    return [(j - 1, 1.0 - t), (j, t)] if t > 0 else [(j - 1, 1.0)]


class Instrument:
    """An encoded instrument; see the module documentation.

    Parameters
    ----------
    name : str
    settings : InstrumentSettings
    notes : sequence of GridNote
        Every note of the library, in file order.
    method : str
        ``"pca"``, ``"nmf"``, ``"tucker"`` or ``"cp"``.
    articulations : mapping of str to ArticulationData or a callable returning it
        A callable is called (once) when the articulation is first needed: lazy loading.
    provenance : dict
        JSON-serialisable description of the source and the encoding options.
    """

    def __init__(
        self,
        *,
        name: str,
        settings: InstrumentSettings,
        notes: Sequence[GridNote],
        method: str,
        articulations: Mapping[str, ArticulationData | Callable[[], ArticulationData]],
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.notes: tuple[GridNote, ...] = tuple(notes)
        self.method = method
        self.provenance: dict[str, Any] = dict(provenance or {})
        self._articulations: dict[str, ArticulationData | Callable[[], ArticulationData]] = dict(articulations)
        if not self._articulations:
            raise ParameterError("an instrument needs at least one articulation")

    # ---- axes -----------------------------------------------------------------------------------
    @property
    def articulations(self) -> tuple[str, ...]:
        """Articulation names, in file order."""
        return tuple(self._articulations)

    @property
    def sample_rate(self) -> int:
        return self.settings.sample_rate

    def pcm16_bytes(self) -> int:
        """Size of the source notes as 16-bit PCM: ``sum(2 * channels * n_samples)``."""
        return int(sum(2 * n.channels * n.n_samples for n in self.notes))

    def total_duration_s(self) -> float:
        return float(sum(n.n_samples for n in self.notes)) / self.sample_rate

    def is_loaded(self, articulation: str) -> bool:
        """Whether an articulation's factors are in memory."""
        return isinstance(self._articulations.get(articulation), ArticulationData)

    def articulation(self, name: str) -> ArticulationData:
        """The data of one articulation, loading it on first use."""
        if name not in self._articulations:
            raise ParameterError(f"{self.name}: no articulation {name!r}; available: {list(self._articulations)}")
        item = self._articulations[name]
        if not isinstance(item, ArticulationData):
            item = item()
            self._articulations[name] = item
        return item

    def ranks(self, articulation: str) -> dict[str, int]:
        return self._factor_model(self.articulation(articulation)).ranks

    # ---- decoding -------------------------------------------------------------------------------
    def _factor_model(self, art: ArticulationData) -> FactorModel:
        if art._model is None:
            grid = grid_index([self.notes[i] for i in art.note_indices])
            template = FactorModel(art.factors.method, {}, self.settings.value_shape, grid)
            art._model = art.factors.dequantised(template)
            art._coef = art._model.coefficients()
        return art._model

    def _weights(self, art: ArticulationData, pitch_midi: float, dynamic: float, variation: float) -> dict[int, float]:
        """Weights of the articulation's notes (local row indices) at a point."""
        local = [self.notes[i] for i in art.note_indices]
        variations = np.array(sorted({n.variation for n in local}), dtype=np.float64)
        out: dict[int, float] = {}
        for vi, wv in _bracket(variations, float(variation)):
            v = int(variations[vi])
            rows = [j for j, n in enumerate(local) if n.variation == v]
            dyns = np.array(sorted({local[j].dynamic for j in rows}))
            for di, wd in _bracket(dyns, float(dynamic)):
                layer = [j for j in rows if local[j].dynamic == dyns[di]]
                pitches = np.array(sorted({local[j].pitch_midi for j in layer}))
                for pi, wp in _bracket(pitches, float(pitch_midi)):
                    same = [j for j in layer if local[j].pitch_midi == pitches[pi]]  # layered copies share
                    for j in same:
                        out[j] = out.get(j, 0.0) + wv * wd * wp / len(same)
        return out

    def evaluate(
        self,
        pitch_midi: float,
        dynamic: float,
        articulation: str | Mapping[str, float] | None = None,
        variation: float = 0,
        *,
        n_samples: int | None = None,
        duration_s: float | None = None,
        noise_seed: int = 0,
    ) -> NoteModel:
        """The note model at a point of the instrument's axes.

        Parameters
        ----------
        pitch_midi : float
            Requested pitch (fractional MIDI number); the partials follow it exactly.
        dynamic : float
            0..1 (velocity-range centre / 127 convention of :class:`GridNote`).
        articulation : str, mapping of str to weight, or None
            One articulation, a blend (weights are normalised), or None for the first one.
        variation : float
            Round-robin index; fractional values blend neighbouring variations.
        n_samples, duration_s : int or float, optional
            Length of the note; by default the blended length of the neighbouring notes.
        noise_seed : int
            Seed of the rendered noise.

        Returns
        -------
        NoteModel
        """
        if not (math.isfinite(pitch_midi) and math.isfinite(dynamic) and math.isfinite(variation)):
            raise ParameterError(f"pitch_midi, dynamic and variation must be finite, got {pitch_midi}, {dynamic}, {variation}")
        if articulation is None:
            blend = {self.articulations[0]: 1.0}
        elif isinstance(articulation, str):
            blend = {articulation: 1.0}
        else:
            blend = {k: float(v) for k, v in articulation.items() if float(v) > 0}
            total = sum(blend.values())
            if not blend or not math.isfinite(total):
                raise ParameterError(f"an articulation blend needs positive weights, got {dict(articulation)}")
            blend = {k: v / total for k, v in blend.items()}
        weights = {}
        for name, wa in blend.items():
            art = self.articulation(name)
            weights[name] = {j: wa * wj for j, wj in self._weights(art, pitch_midi, dynamic, variation).items()}
        length = n_samples
        if length is None and duration_s is not None:
            length = round(duration_s * self.settings.sample_rate)
        return self._model_from_weights(weights, pitch_midi, n_samples=length, noise_seed=noise_seed)

    def _model_from_weights(
        self, weights: Mapping[str, Mapping[int, float]], pitch_midi: float, *, n_samples: int | None, noise_seed: int
    ) -> NoteModel:
        """Blend the coefficient rows and scalars of notes (articulation -> local row -> weight)."""
        s = self.settings
        values = np.zeros(s.value_shape)
        scalars = np.zeros(len(SCALAR_NAMES))
        length = 0.0
        best: tuple[float, int] = (-1.0, 0)
        pitched_w = 0.0
        tuning = 0.0
        inharm = 0.0
        for name, w in weights.items():
            art = self.articulation(name)
            fm = self._factor_model(art)
            coef = fm.coefficients()
            z = sum(wj * coef[j] for j, wj in w.items())
            values += fm.expand(np.asarray(z))
            for j, ww in w.items():
                scalars += ww * art.scalars[j]
                length += ww * self.notes[int(art.note_indices[j])].n_samples
                k = int(art.n_partials[j])
                if ww > best[0]:
                    best = (ww, k)
                if k > 0:
                    pitched_w += ww
                    tuning += ww * art.scalars[j, 2]
                    inharm += ww * art.scalars[j, 3]
        if pitched_w > 0:
            tuning /= pitched_w
            inharm /= pitched_w
        if n_samples is None:
            n_samples = round(length)
        if n_samples < 1:
            raise ParameterError(f"a note needs at least one sample, got n_samples={n_samples}")
        f0_hz = midi_to_hz(pitch_midi) * 2.0 ** (tuning / 1200.0)
        k = 0
        if best[1] > 0:
            k = min(best[1], n_partials_below(
                f0_hz=f0_hz, inharmonicity=max(inharm, 0.0), n_partials_max=s.n_partials_max,
                fmax_hz=s.fmax_hz, sample_rate=s.sample_rate,
            ))
        return model_from_values(
            values,
            times_s=s.timebase.times_s,
            gain_db=float(scalars[0]),
            onset_s=max(float(scalars[1]), 0.0),
            f0_hz=f0_hz,
            inharmonicity=max(inharm, 0.0),
            n_partials=k,
            n_partials_max=s.n_partials_max,
            n_samples=int(n_samples),
            sample_rate=s.sample_rate,
            hop_length=s.hop_length,
            noise_fmin_hz=s.noise_fmin_hz,
            noise_n_fft=s.noise_n_fft,
            db_range=s.db_range,
            noise_seed=noise_seed,
            pitch_midi=float(pitch_midi),
        )

    def render(
        self,
        pitch_midi: float,
        dynamic: float,
        articulation: str | Mapping[str, float] | None = None,
        variation: float = 0,
        *,
        n_samples: int | None = None,
        duration_s: float | None = None,
        noise_seed: int = 0,
        engine: str = "fast",
    ) -> FloatArray:
        """PCM of the note at a point: :meth:`evaluate`, then synthesis.

        ``engine="fast"`` uses the closed-form renderer of :mod:`calyx.hypercube._render` (the
        same signal as the oscillator bank); ``"reference"`` uses :func:`calyx.analysis.synthesize`.

        Returns
        -------
        np.ndarray [shape=(n_channels, n_samples)]
        """
        model = self.evaluate(
            pitch_midi, dynamic, articulation, variation, n_samples=n_samples, duration_s=duration_s, noise_seed=noise_seed
        )
        return synthesize_model(model, engine=engine)

    def note_model(self, index: int) -> NoteModel:
        """The model of grid note ``index``: its own coefficient row and scalars, its own length.

        The same values :meth:`evaluate` gives at the note's point (unless another note shares that
        point, which :meth:`evaluate` then averages).
        """
        n = self.notes[index]
        art = self.articulation(n.articulation)
        rows = np.nonzero(art.note_indices == index)[0]
        if rows.size != 1:
            raise ParameterError(f"note {index} is not listed in articulation {n.articulation!r}")
        return self._model_from_weights({n.articulation: {int(rows[0]): 1.0}}, n.pitch_midi, n_samples=n.n_samples, noise_seed=index)

    def decode_note(self, index: int, *, engine: str = "fast") -> FloatArray:
        """PCM of grid note ``index`` with the source's length and channel count, shape ``(channels, n_samples)``."""
        y = synthesize_model(self.note_model(index), engine=engine)
        # a note with fewer channels than the instrument was repeated on every channel: keep its own
        return y[: self.notes[index].channels]

    def save(self, path: str | os.PathLike[str], *, force: bool = False) -> int:
        """Write a ``.calyx`` file (see ``docs/format.md``); returns its size in bytes.

        A convenience over :func:`calyx.format.calyx_file.save` (imported when called: the format
        stage comes after this one).
        """
        from calyx.format.calyx_file import save

        return save(self, path, force=force)


def synthesize_model(model: NoteModel, *, engine: str = "fast") -> FloatArray:
    """Render a note model with the fast renderer or :func:`calyx.analysis.synthesize`."""
    if engine == "fast":
        return render_model(model)
    if engine == "reference":
        from calyx.analysis import synthesize

        return np.asarray(synthesize(model), dtype=np.float64)
    raise ParameterError(f"engine must be 'fast' or 'reference', got {engine!r}")
