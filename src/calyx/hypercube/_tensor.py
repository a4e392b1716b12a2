"""From per-note models to the aligned tensor of one articulation, with its mask of known entries.

Alignment that exposes redundancy (each step measured in ``docs/format.md``, "Design measurements"):

- *onsets aligned*: every note is resampled onto one :class:`~calyx.hypercube._timebase.TimeBase`
  of times after its own onset;
- *loudness normalised*: values are dB relative to the note's *gain* (the peak frame RMS of its
  model), which is kept as a per-note scalar;
- *partials relative to f0*: the feature axis is the harmonic number ``k`` (frequency ``k f0
  sqrt(1 + B k^2)``), then the ERB noise bands, which are fixed in absolute frequency;
- *log amplitude*: dB, floored at ``-db_range`` below the gain.

Entries a note does not have are *missing*, never silence: time points after its end, partials
above its highest one (or all partials of an unpitched note) and channels it lacks. The factor
models are fitted to the known entries only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calyx.analysis.model import NoteModel
from calyx.errors import ParameterError
from calyx.hypercube._timebase import TimeBase, fit_matrix

__all__ = ["NoteRecord", "record_from_model", "stack_records"]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Values are clipped to this many dB above the note's gain (a partial louder than the whole note's
#: peak frame is an analysis artefact).
DB_CEILING = 12.0


@dataclass(frozen=True)
class NoteRecord:
    """One analysed note on the common axes: what the encoder keeps of it (no PCM, no frame-rate arrays).

    Attributes
    ----------
    values_db : np.ndarray [shape=(n_times, n_channels, n_features), dtype=float32]
        dB relative to ``gain_db``; features are ``n_partials_max`` partials then the noise bands.
    known : np.ndarray [shape=(n_times, n_channels, n_features), dtype=bool]
        Which entries the note has.
    gain_db : float
        Peak frame RMS of the model, dB re full scale.
    onset_s : float
        Onset after the start of the recording, seconds.
    tuning_cents : float
        f0 relative to the nominal pitch, cents (0 for an unpitched note).
    inharmonicity : float
        Stiff-string coefficient ``B``.
    n_partials : int
        Partials the analysis tracked (0 when unpitched).
    warnings : tuple of str
        What the analysis warned about (unpitched, clipped, octave), for the encoder's report.
    """

    values_db: NDArray[np.float32]
    known: BoolArray
    gain_db: float
    onset_s: float
    tuning_cents: float
    inharmonicity: float
    n_partials: int
    warnings: tuple[str, ...] = ()


def _db(x: FloatArray) -> FloatArray:
    return 20.0 * np.log10(np.maximum(x, 1e-12))


def model_gain_db(model: NoteModel) -> float:
    """Peak over frames of the model's RMS amplitude (partials + noise), averaged over channels, dB."""
    power = 0.5 * np.sum(model.amplitude**2, axis=1) + np.sum(model.noise_gain**2, axis=1)  # (C, frames)
    peak = float(np.max(np.mean(power, axis=0))) if power.size else 0.0
    return 10.0 * math.log10(max(peak, 1e-24))


def record_from_model(
    model: NoteModel,
    *,
    timebase: TimeBase,
    n_channels: int,
    n_partials_max: int,
    n_noise_bands: int,
    db_range: float,
    nominal_pitch_midi: float,
) -> NoteRecord:
    """Resample a note model onto the common axes.

    Parameters
    ----------
    model : NoteModel
    timebase : TimeBase
    n_channels : int
        Channels of the tensor; a mono model is repeated on every channel.
    n_partials_max : int
        Size of the partial part of the feature axis; partials beyond it are dropped.
    n_noise_bands : int
        Must equal the model's number of noise bands.
    db_range : float
        Floor of the values, dB below the gain.
    nominal_pitch_midi : float
        Pitch the library gives the note (the reference of ``tuning_cents``).
    """
    if model.n_noise_bands != n_noise_bands:
        raise ParameterError(
            f"every note must have {n_noise_bands} noise bands, this one has {model.n_noise_bands}; "
            "analyse all notes with the same parameters"
        )
    if model.n_channels not in (1, n_channels):
        raise ParameterError(f"a note has {model.n_channels} channels, the instrument {n_channels}")
    if model.stereo != "channels":
        raise ParameterError("the hypercube expects channel-layout models (AnalysisParams(stereo='channels'))")
    gain_db = model_gain_db(model)
    k = min(model.n_partials, n_partials_max)
    n_features = n_partials_max + n_noise_bands
    frames = model.frame_times_s() - model.onset_sample / model.sample_rate
    after = frames >= -0.5 * model.hop_length / model.sample_rate
    proj, supported = fit_matrix(timebase.times_s, np.where(after, frames, -1.0))
    # per-frame normalised dB, (frames, C, F)
    amp = model.amplitude[:, :k, :]
    x = np.full((model.n_frames, model.n_channels, n_features), -float(db_range))
    x[:, :, :k] = np.transpose(_db(amp), (2, 0, 1)) - gain_db
    x[:, :, n_partials_max:] = np.transpose(_db(model.noise_gain), (2, 0, 1)) - gain_db
    np.clip(x, -db_range, DB_CEILING, out=x)
    v = np.tensordot(proj, x, axes=(1, 0))  # (T, C, F)
    np.clip(v, -db_range, DB_CEILING, out=v)
    if model.n_channels != n_channels:
        v = np.repeat(v, n_channels, axis=1)
    known = np.zeros(v.shape, dtype=bool)
    known[supported] = True
    known[:, :, k:n_partials_max] = False
    v[~known] = 0.0
    tuning = 0.0
    if model.n_partials > 0 and model.f0_hz > 0:
        f_nom = 440.0 * 2.0 ** ((nominal_pitch_midi - 69.0) / 12.0)
        tuning = 1200.0 * math.log2(model.f0_hz / f_nom)
    return NoteRecord(
        values_db=v.astype(np.float32),
        known=known,
        gain_db=gain_db,
        onset_s=model.onset_sample / model.sample_rate,
        tuning_cents=tuning,
        inharmonicity=float(model.inharmonicity),
        n_partials=int(k),
    )


def stack_records(records: list[NoteRecord]) -> tuple[FloatArray, BoolArray]:
    """Stack notes into ``(n_notes, n_times, n_channels, n_features)`` values and known-entry mask."""
    if not records:
        raise ParameterError("no notes to stack")
    values = np.stack([r.values_db.astype(np.float64) for r in records])
    known = np.stack([r.known for r in records])
    return values, known
