"""The event vector: what each number means, in physical units, and the :class:`EventList`.

An event is a time plus ``N_PARAMS`` numbers (layout version :data:`LAYOUT_VERSION`), rendered by
the fixed decoder of :mod:`calyx.events.render`. A recording adds ``N_ROOM_PARAMS`` numbers that
describe the one room shared by all events.

Event vector (``EventList.params[:, i]``)
-----------------------------------------

=====  ===========================  ==================  =================  ==========
index  name                         unit                range              step
=====  ===========================  ==================  =================  ==========
0      ``pitch_midi``               MIDI note number    12 .. 120          0.005 (0.5 cent)
1      ``inharmonicity_log10``      log10 B             -6 .. -2           0.005
2      ``level_db``                 dB re full scale    -100 .. 20         0.5
3      ``tilt_db_per_octave``       dB / octave         -48 .. 24          0.5
4-15   ``shape_1`` .. ``shape_12``  dB                  -40 .. 40          0.5
16-19  ``t60_log10_s_<f>``          log10 seconds       -2.5 .. 1.5        0.02
20     ``aftersound_db``            dB                  -80 .. 0           1.0
21     ``aftersound_ratio_log10``   log10 ratio         0 .. 1.5           0.05
22     ``duration_s``               seconds             0.005 .. 30        0.005
23     ``release_t60_log10_s``      log10 seconds       -2.5 .. 1          0.02
24     ``attack_log10_s``           log10 seconds       -4 .. -1           0.05
25     ``noise_level_db``           dB re full scale    -140 .. 0          1.0
26     ``noise_t60_log10_s``        log10 seconds       -3 .. 0            0.05
27     ``noise_tilt_db_per_octave`` dB / octave         -24 .. 24          1.0
=====  ===========================  ==================  =================  ==========

``<f>`` are the anchor frequencies :data:`DECAY_ANCHORS_HZ` (100, 400, 1600, 6400 Hz); a partial's
T60 is the interpolation of the anchors' ``log10 T60`` over ``log2`` frequency (held beyond the
outer anchors). See ``docs/events.md`` for the full model.

Room vector (``EventList.room``)
--------------------------------

=====  ===========================  ==================  =================  ==========
index  name                         unit                range              step
=====  ===========================  ==================  =================  ==========
0      ``room_wet_db``              dB                  -120 .. 0          0.5
1-4    ``room_t60_log10_s_<f>``     log10 seconds       -2 .. 0.45         0.02
=====  ===========================  ==================  =================  ==========

A wet level at (or below) -120 dB means a dry room: the impulse response is a unit impulse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.errors import ParameterError

__all__ = [
    "DECAY_ANCHORS_HZ",
    "EVENT_PARAMS",
    "F_MAX_HZ",
    "LAYOUT_VERSION",
    "N_NOISE_BANDS",
    "N_PARAMS",
    "N_PARTIALS",
    "N_ROOM_PARAMS",
    "N_SHAPE",
    "ROOM_PARAMS",
    "EventList",
    "ParamSpec",
    "clip_params",
    "clip_room",
    "default_params",
    "default_room",
    "hz_to_midi",
    "midi_to_hz",
    "param_index",
]

#: Version of the layout below; the bitstream records it and readers refuse other values.
LAYOUT_VERSION = 1
#: Partials per event (harmonic index k = 1 .. N_PARTIALS), silenced above :data:`F_MAX_HZ`.
N_PARTIALS = 64
#: Partials fade out between 0.9 * F_MAX_HZ and F_MAX_HZ (and are never rendered above Nyquist).
F_MAX_HZ = 10000.0
#: Cosine coefficients of the spectral shape.
N_SHAPE = 12
#: Frequencies at which the decay times are given.
DECAY_ANCHORS_HZ: tuple[float, ...] = (100.0, 400.0, 1600.0, 6400.0)
#: Bands of the noise tables (ERB-spaced, :func:`calyx.core.synthesis.band_edges_hz`).
N_NOISE_BANDS = 8


@dataclass(frozen=True)
class ParamSpec:
    """One number of the event (or room) vector."""

    name: str
    unit: str
    low: float
    high: float
    step: float
    default: float
    doc: str


def _event_specs() -> tuple[ParamSpec, ...]:
    specs = [
        ParamSpec("pitch_midi", "MIDI note", 12.0, 120.0, 0.005, 60.0,
                  "fundamental f0 = 440 * 2**((pitch_midi - 69) / 12) Hz"),
        ParamSpec("inharmonicity_log10", "log10", -6.0, -2.0, 0.005, -4.0,
                  "stiffness B: partial k sounds at k * f0 * sqrt(1 + B k^2)"),
        ParamSpec("level_db", "dB", -100.0, 20.0, 0.5, -20.0,
                  "20 log10 of the root-sum-square of the partials' peak amplitudes at the onset"),
        ParamSpec("tilt_db_per_octave", "dB/octave", -48.0, 24.0, 0.5, -6.0,
                  "slope of the partial amplitudes over log2(k)"),
    ]
    for j in range(1, N_SHAPE + 1):
        specs.append(ParamSpec(f"shape_{j}", "dB", -40.0, 40.0, 0.5, 0.0,
                               f"coefficient of cos(pi * {j} * log2(k) / log2({N_PARTIALS})) in the partial levels"))
    for f in DECAY_ANCHORS_HZ:
        specs.append(ParamSpec(f"t60_log10_s_{int(f)}", "log10 s", -2.5, 1.5, 0.02, 0.0,
                               f"log10 of the time a partial at {int(f)} Hz takes to decay by 60 dB"))
    specs += [
        ParamSpec("aftersound_db", "dB", -80.0, 0.0, 1.0, -80.0,
                  "level of the slow second decay stage relative to the first"),
        ParamSpec("aftersound_ratio_log10", "log10", 0.0, 1.5, 0.05, 0.5,
                  "log10 of the second stage's T60 over the first stage's"),
        ParamSpec("duration_s", "s", 0.005, 30.0, 0.005, 1.0,
                  "time from the onset to the damper (note off)"),
        ParamSpec("release_t60_log10_s", "log10 s", -2.5, 1.0, 0.02, -0.7,
                  "log10 of the T60 added by the damper after duration_s"),
        ParamSpec("attack_log10_s", "log10 s", -4.0, -1.0, 0.05, -3.0,
                  "log10 of the attack time constant: the envelope rises as 1 - exp(-t / attack)"),
        ParamSpec("noise_level_db", "dB", -140.0, 0.0, 1.0, -140.0,
                  "RMS of the noise burst at its envelope peak, dB re full scale"),
        ParamSpec("noise_t60_log10_s", "log10 s", -3.0, 0.0, 0.05, -1.5,
                  "log10 of the noise burst's T60"),
        ParamSpec("noise_tilt_db_per_octave", "dB/octave", -24.0, 24.0, 1.0, -3.0,
                  "slope of the burst's band levels over log2(band centre / 1 kHz)"),
    ]
    return tuple(specs)


def _room_specs() -> tuple[ParamSpec, ...]:
    specs = [ParamSpec("room_wet_db", "dB", -120.0, 0.0, 0.5, -120.0,
                       "gain of the reverberant tail: RMS per sample of each of its noise bands at "
                       "t = 0, relative to the unit direct impulse")]
    for f in DECAY_ANCHORS_HZ:
        specs.append(ParamSpec(f"room_t60_log10_s_{int(f)}", "log10 s", -2.0, 0.45, 0.02, -0.5,
                               f"log10 of the room's T60 at {int(f)} Hz"))
    return tuple(specs)


#: The event vector, in order.
EVENT_PARAMS: tuple[ParamSpec, ...] = _event_specs()
#: The room vector, in order.
ROOM_PARAMS: tuple[ParamSpec, ...] = _room_specs()
N_PARAMS = len(EVENT_PARAMS)
N_ROOM_PARAMS = len(ROOM_PARAMS)

_INDEX = {p.name: i for i, p in enumerate(EVENT_PARAMS)}


def param_index(name: str) -> int:
    """Index of the event parameter ``name`` (see the table in this module's docstring)."""
    try:
        return _INDEX[name]
    except KeyError:
        raise ParameterError(f"unknown event parameter {name!r}; known: {', '.join(_INDEX)}") from None


def midi_to_hz(pitch_midi: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """``440 * 2 ** ((pitch_midi - 69) / 12)``."""
    return 440.0 * 2.0 ** ((np.asarray(pitch_midi, dtype=np.float64) - 69.0) / 12.0)


def hz_to_midi(f_hz: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """``69 + 12 * log2(f_hz / 440)``."""
    return 69.0 + 12.0 * np.log2(np.asarray(f_hz, dtype=np.float64) / 440.0)


def _bounds(specs: tuple[ParamSpec, ...]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return np.array([p.low for p in specs]), np.array([p.high for p in specs])


def default_params(n_events: int = 1) -> NDArray[np.float64]:
    """Parameter rows holding every default value, shape ``(n_events, N_PARAMS)``."""
    return np.tile(np.array([p.default for p in EVENT_PARAMS]), (n_events, 1))


def default_room() -> NDArray[np.float64]:
    """The dry room, shape ``(N_ROOM_PARAMS,)``."""
    return np.array([p.default for p in ROOM_PARAMS])


def clip_params(params: NDArray[np.floating]) -> NDArray[np.float64]:
    """Clip event parameters into their ranges (shape ``(..., N_PARAMS)``)."""
    lo, hi = _bounds(EVENT_PARAMS)
    return np.clip(np.asarray(params, dtype=np.float64), lo, hi)


def clip_room(room: NDArray[np.floating]) -> NDArray[np.float64]:
    """Clip room parameters into their ranges."""
    lo, hi = _bounds(ROOM_PARAMS)
    return np.clip(np.asarray(room, dtype=np.float64), lo, hi)


@dataclass
class EventList:
    """A recording as events: times, parameter rows, one room, and the output's rate and length.

    Attributes
    ----------
    times_s : np.ndarray [shape=(n_events,)]
        Onset of each event in seconds from the start of the recording (sub-sample precision).
    params : np.ndarray [shape=(n_events, N_PARAMS)]
        One row per event, laid out as in :data:`EVENT_PARAMS`.
    room : np.ndarray [shape=(N_ROOM_PARAMS,)]
        The room shared by all events, laid out as in :data:`ROOM_PARAMS`.
    sample_rate : int
        Output sample rate in Hz.
    n_samples : int
        Output length in samples.
    info : dict
        Free-form notes about the encoding (measurements, settings); not stored in files.
    """

    times_s: NDArray[np.float64]
    params: NDArray[np.float64]
    room: NDArray[np.float64]
    sample_rate: int
    n_samples: int
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.times_s = np.asarray(self.times_s, dtype=np.float64).reshape(-1)
        self.params = np.asarray(self.params, dtype=np.float64)
        if self.params.size == 0:
            self.params = self.params.reshape(0, N_PARAMS)
        self.room = np.asarray(self.room, dtype=np.float64).reshape(-1)
        if self.params.ndim != 2 or self.params.shape[1] != N_PARAMS:
            raise ParameterError(f"params must have shape (n_events, {N_PARAMS}), got {self.params.shape}")
        if self.params.shape[0] != self.times_s.shape[0]:
            raise ParameterError(
                f"{self.times_s.shape[0]} times for {self.params.shape[0]} parameter rows; they must match"
            )
        if self.room.shape != (N_ROOM_PARAMS,):
            raise ParameterError(f"room must have shape ({N_ROOM_PARAMS},), got {self.room.shape}")
        if int(self.sample_rate) <= 0 or int(self.n_samples) < 0:
            raise ParameterError(
                f"need sample_rate > 0 and n_samples >= 0, got {self.sample_rate}, {self.n_samples}"
            )
        if not (np.all(np.isfinite(self.times_s)) and np.all(np.isfinite(self.params)) and np.all(
            np.isfinite(self.room)
        )):
            raise ParameterError("event times and parameters must be finite")
        self.sample_rate = int(self.sample_rate)
        self.n_samples = int(self.n_samples)

    def __len__(self) -> int:
        return int(self.times_s.shape[0])

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""
        return self.n_samples / self.sample_rate

    def column(self, name: str) -> NDArray[np.float64]:
        """One parameter for every event, shape ``(n_events,)``."""
        return self.params[:, param_index(name)].copy()

    @property
    def pitch_midi(self) -> NDArray[np.float64]:
        """Pitch of each event as a (fractional) MIDI note number."""
        return self.column("pitch_midi")

    @property
    def f0_hz(self) -> NDArray[np.float64]:
        """Fundamental of each event in Hz."""
        return midi_to_hz(self.pitch_midi)

    @property
    def level_db(self) -> NDArray[np.float64]:
        """Tonal level of each event in dB re full scale."""
        return self.column("level_db")

    @property
    def duration_s_per_event(self) -> NDArray[np.float64]:
        """Time from each onset to its damper, in seconds."""
        return self.column("duration_s")

    @property
    def t60_s(self) -> NDArray[np.float64]:
        """Decay time (first stage) of each event at the anchor frequencies, shape ``(n_events, 4)``."""
        i = param_index(f"t60_log10_s_{int(DECAY_ANCHORS_HZ[0])}")
        return np.asarray(10.0 ** self.params[:, i : i + len(DECAY_ANCHORS_HZ)])

    def sorted(self) -> EventList:
        """A copy with events in time order (then by pitch)."""
        order = np.lexsort((self.params[:, 0], self.times_s))
        return EventList(self.times_s[order], self.params[order], self.room.copy(), self.sample_rate,
                         self.n_samples, dict(self.info))

    def subset(self, keep: NDArray[np.bool_] | NDArray[np.integer]) -> EventList:
        """A copy holding only the events selected by ``keep`` (mask or indices)."""
        k = np.asarray(keep)
        return EventList(self.times_s[k].copy(), self.params[k].copy(), self.room.copy(), self.sample_rate,
                         self.n_samples, dict(self.info))

    def to_notes(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Onsets, offsets (onset + duration) and pitches: the events read as notes."""
        return self.times_s.copy(), self.times_s + self.duration_s_per_event, self.pitch_midi
