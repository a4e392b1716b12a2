"""The real-time spectral synthesizer: voices that evaluate an instrument model at a continuous point.

:class:`Engine` follows the ``process`` / ``reset`` shape of real-time processors. Events (note on/off,
controllers, pitch bend, articulation changes) are timestamped in absolute samples and queued;
:meth:`Engine.process` renders up to each event, applies it, and continues. Controls are evaluated
on a fixed grid of control points (every ``control_period`` samples, in absolute time) and noise
frames on a fixed grid too, so the output does not depend on how the audio is cut into blocks.

A voice evaluates the source at its pitch and at every sampled dynamic (the *anchors*; at most
:data:`MAX_ANCHORS`), converts each evaluation into a table (:mod:`calyx.synth._tables`, cached and
shared between voices), and at every control point interpolates between the two anchors around its
current dynamic in log amplitude, applies gain, release and pitch bend, and drives its partial
oscillators and its share of the engine's noise.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.analysis.model import NoteModel
from calyx.errors import ParameterError
from calyx.synth import _kernels as K
from calyx.synth._source import ModelSource, as_model_source
from calyx.synth._tables import PreparedTable, engine_noise_bands, prepare_table

__all__ = ["MAX_ANCHORS", "Engine"]

FloatArray = NDArray[np.float64]

#: Most dynamic anchors a voice interpolates between.
MAX_ANCHORS = 4
#: Voice slots beyond the polyphony, for voices fading out after being stolen.
STEAL_MARGIN = 8
#: Smallest loudness change per unit of dynamic when extrapolating beyond the anchors, dB.
MIN_DYNAMIC_RANGE_DB = 24.0
#: Default control period, seconds (128 samples at 48 kHz).
CONTROL_PERIOD_S = 128.0 / 48000.0
#: Most tables the cache may hold at once.
MAX_TABLES = 4096

_NOTE_ON, _NOTE_OFF, _CC, _BEND, _ARTICULATION, _ALL_NOTES_OFF = range(6)


@dataclass
class _Channel:
    bend: int = 0
    bend_range: float = 2.0
    dynamics_cc: int | None = None
    volume: int = 100
    expression: int = 127
    sustain: bool = False
    articulation: str | None = None
    rpn: tuple[int, int] = (127, 127)
    round_robin: dict[int, int] = field(default_factory=dict)

    def gain_ln(self) -> float:
        g = (self.volume / 127.0) ** 2 * (self.expression / 127.0) ** 2
        return math.log(max(g, 1e-6))

    def bend_ln(self) -> float:
        return math.log(2.0) * (self.bend / 8192.0) * self.bend_range / 12.0


def _bracket_weights(values: list[float], x: float) -> list[tuple[int, float]]:
    """Indices and linear weights of the sorted ``values`` around ``x`` (held at the ends)."""
    if len(values) == 1 or x <= values[0]:
        return [(0, 1.0)]
    if x >= values[-1]:
        return [(len(values) - 1, 1.0)]
    j = next(i for i in range(1, len(values)) if values[i] >= x)
    w = (x - values[j - 1]) / (values[j] - values[j - 1]) if values[j] > values[j - 1] else 0.0
    return [(j - 1, 1.0 - w), (j, w)]


def _check_time(time_samples: int | None, now: int) -> int:
    if time_samples is None:
        return now
    if isinstance(time_samples, bool) or not isinstance(time_samples, int | np.integer):
        raise ParameterError(f"time_samples must be an integer sample index, got {time_samples!r}")
    if time_samples < 0:
        raise ParameterError(f"time_samples must be >= 0, got {time_samples}")
    return int(time_samples)


def _check_midi(name: str, value: int, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
        raise ParameterError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


class Engine:
    """Polyphonic real-time synthesizer over a :class:`~calyx.synth.ModelSource`.

    Parameters
    ----------
    source : ModelSource
        The instrument (a :class:`calyx.hypercube.Instrument`, a :class:`calyx.synth.ModelGrid`, ...).
    sample_rate : float
        Output rate in Hz.
    polyphony : int
        Most voices sounding at once; beyond it the quietest (released voices first), then the
        oldest voice is faded out in 12 ms to make room.
    control_period : int, optional
        Samples between control points (amplitudes, frequencies and gains are interpolated linearly
        in between); about 2.7 ms by default (128 samples at 48 kHz).
    bend_range_semitones : float
        Pitch-bend range (RPN 0 changes it per channel).
    release_s : float, optional
        Time for a released note to fall 60 dB at middle C (higher partials faster, as under a
        damper). Defaults to the source's ``release_s`` attribute, else 0.3 s.
    articulation_crossfade_s : float
        Length of the cross-fade when a sounding note changes articulation.
    max_partials : int
        Partials per voice beyond this are dropped.
    noise : bool
        Render the noise part of the models.
    transient : bool
        Play the kept attack waveforms of models that have one.
    cache_mb : float
        Memory for cached note tables (least recently used tables not sounding are dropped).
    seed : int
        Seed of the noise generator (the output is deterministic).
    smoothing_s : float
        Time constant of the smoothing of gain, dynamic and bend changes.
    gain_db : float
        Master gain (0 dB plays a note at the level of its model, with the channel volume at 127).
    dynamic_anchors : str
        ``"auto"``: a note is evaluated once, at its own dynamic, and re-evaluated at the sampled
        dynamics only if the channel's dynamics controller moves (or is in use at the note-on);
        ``"grid"``: always at the sampled dynamics, so that after :meth:`preload` no note-on
        evaluates anything (live playback).

    Notes
    -----
    Voices start sample-accurately; a control change takes effect from the next control point and
    is smoothed over ``smoothing_s``. Noise frames (``n_fft`` = about 11 ms, sine window, hop half a
    frame) are shaped by the band gains the voices will have at the frame centre.
    """

    def __init__(
        self,
        source: Any,
        *,
        sample_rate: float = 48000.0,
        polyphony: int = 64,
        control_period: int | None = None,
        bend_range_semitones: float = 2.0,
        release_s: float | None = None,
        articulation_crossfade_s: float = 0.05,
        max_partials: int = 96,
        noise: bool = True,
        transient: bool = True,
        cache_mb: float = 512.0,
        seed: int = 0,
        smoothing_s: float = 0.005,
        gain_db: float = 0.0,
        dynamic_anchors: str = "auto",
    ) -> None:
        self.source: ModelSource = as_model_source(source)
        if not (isinstance(sample_rate, int | float) and math.isfinite(sample_rate) and 4000 <= sample_rate <= 768000):
            raise ParameterError(f"sample_rate must be a number of Hz in 4000..768000, got {sample_rate!r}")
        _check_midi("polyphony", polyphony, 1, 4096)
        if control_period is None:
            control_period = max(1, round(sample_rate * CONTROL_PERIOD_S))
        _check_midi("control_period", control_period, 1, 4096)
        _check_midi("max_partials", max_partials, 1, 1024)
        for name, value, lo in (
            ("bend_range_semitones", bend_range_semitones, 0.0),
            ("articulation_crossfade_s", articulation_crossfade_s, 0.0),
            ("cache_mb", cache_mb, 0.0),
            ("smoothing_s", smoothing_s, 0.0),
            ("gain_db", gain_db, -math.inf),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= lo):
                raise ParameterError(f"{name} must be a finite number >= {lo}, got {value!r}")
        if release_s is None:
            release_s = float(getattr(self.source, "release_s", 0.3) or 0.3)
        if not (math.isfinite(release_s) and release_s > 0):
            raise ParameterError(f"release_s must be > 0, got {release_s}")
        self.sample_rate = float(sample_rate)
        self.polyphony = int(polyphony)
        self.control_period = int(control_period)
        self.bend_range_semitones = float(bend_range_semitones)
        self.release_s = float(release_s)
        self.articulation_crossfade_s = float(articulation_crossfade_s)
        self.max_partials = int(max_partials)
        self.seed = int(seed)
        self._play_transients = bool(transient)
        if dynamic_anchors not in ("auto", "grid"):
            raise ParameterError(f"dynamic_anchors must be 'auto' or 'grid', got {dynamic_anchors!r}")
        self.dynamic_anchors = dynamic_anchors
        self.gain_db = float(gain_db)
        self._master_ln = self.gain_db * math.log(10.0) / 20.0
        self._cache_bytes = int(cache_mb * 2**20)
        #: Tables evaluated and prepared (cache misses), the seconds spent on them, and events that
        #: arrived after their time (applied at the next sample rendered).
        self.stats: dict[str, float] = {"tables": 0, "table_s": 0.0, "late_events": 0}
        self._sustained = getattr(self.source, "sustained", None)
        lo, hi = self.source.pitch_range_midi
        self._pitch_range = (float(lo), float(hi))
        self._grid_dynamics = tuple(sorted(float(d) for d in self.source.dynamics))
        self._articulations = tuple(self.source.articulations) or ("default",)
        self._n_variations = max(1, int(self.source.n_variations))

        # the noise layout comes from a first evaluation of the source (which also warms the cache)
        probe_pitch = float(min(max(round(0.5 * (lo + hi)), lo), hi))
        probe_dyn = self._grid_dynamics[0] if self._grid_dynamics else 0.5
        probe = self.source.evaluate(pitch_midi=probe_pitch, dynamic=probe_dyn, articulation=None, variation=0)
        self._n_fft = int(2 ** round(math.log2(0.0107 * self.sample_rate)))
        self._bands = engine_noise_bands(probe, sample_rate=self.sample_rate, n_fft=self._n_fft) if noise else None
        n_bands = 0 if self._bands is None else self._bands.centres_hz.size

        n_slots = self.polyphony + STEAL_MARGIN
        width = max(self.max_partials, n_bands, 1)
        self._vi = np.zeros((n_slots, K.N_VI), dtype=np.int64)
        self._vf = np.zeros((n_slots, K.N_VF))
        self._vp = np.zeros((n_slots, K.N_PL, self.max_partials))
        self._vt = np.zeros((n_slots, 2, MAX_ANCHORS), dtype=np.int64)
        self._vd = np.zeros((n_slots, 2, MAX_ANCHORS))
        self._vo = np.zeros((n_slots, 2, MAX_ANCHORS))
        self._v_channel = np.zeros(n_slots, dtype=np.int64)
        self._v_key = np.zeros(n_slots, dtype=np.int64)
        self._v_pitch = np.zeros(n_slots)
        self._v_variation = np.zeros(n_slots, dtype=np.int64)
        self._v_pedal = np.zeros(n_slots, dtype=bool)
        self._v_grid = np.zeros(n_slots, dtype=bool)  # anchors are the sampled dynamics
        self._v_art = [""] * n_slots
        self._ti = np.zeros((MAX_TABLES, K.N_TI))
        # tables live in one float32 arena (reserved, not touched: only what is used is resident)
        self._arena = np.empty(max(self._cache_bytes // 4, 1 << 16), dtype=np.float32)
        self._arena_top = 0
        self._spans: dict[int, tuple[int, int]] = {}  # table id -> (offset, size) in the arena
        self._cache: OrderedDict[tuple[float, float, str, int], int] = OrderedDict()
        self._free_tables: list[int] = []
        self._next_table = 0
        self._band_hz = np.ascontiguousarray(self._bands.centres_hz if self._bands is not None else np.zeros(0))
        self._cfg = np.zeros(K.N_CF)
        self._cfg[K.CF_SR] = self.sample_rate
        self._cfg[K.CF_CTRL] = self.control_period
        tau = smoothing_s * self.sample_rate / self.control_period
        self._cfg[K.CF_ALPHA] = 1.0 if tau <= 0 else 1.0 - math.exp(-1.0 / tau)
        self._cfg[K.CF_NFFT] = self._n_fft
        self._cfg[K.CF_HOP] = self._n_fft // 2
        self._cfg[K.CF_DONE] = 1e-6
        self._sc = np.zeros((K.N_SC, width))
        self._cov = np.zeros((3, n_bands))
        n_bins = self._n_fft // 2 + 1
        self._bin_map = np.ascontiguousarray(
            self._bands.bin_map if self._bands is not None else np.zeros((n_bins, 0))
        )
        self._bin_bands = np.zeros((n_bins, 2), dtype=np.int64)
        if n_bands:
            nz = self._bin_map != 0.0
            has = nz.any(axis=1)
            self._bin_bands[has, 0] = np.argmax(nz[has], axis=1)
            self._bin_bands[has, 1] = n_bands - np.argmax(nz[has, ::-1], axis=1)
        # sine window: its square (a periodic Hann) overlap-adds to 1 at half-frame hops
        self._window = np.sin(np.pi * np.arange(self._n_fft) / self._n_fft)
        self._rng_state = np.zeros(4, dtype=np.uint64)
        self._deviates = np.zeros(2 * (self._n_fft + 2))
        self._fre = np.zeros(self._n_fft)
        self._fim = np.zeros(self._n_fft)
        bits = int(math.log2(self._n_fft))
        idx = np.arange(self._n_fft)
        self._bitrev = np.zeros(self._n_fft, dtype=np.int64)
        for b in range(bits):
            self._bitrev |= ((idx >> b) & 1) << (bits - 1 - b)
        ang = 2.0 * np.pi * np.arange(self._n_fft // 2) / self._n_fft
        self._tw_re = np.cos(ang)
        self._tw_im = np.sin(ang)
        self._ring = np.zeros((2, self._n_fft))
        self._marks = np.full(2, -1, dtype=np.int64)
        self._junk = np.zeros((2, self.control_period))
        self._events: list[tuple[int, int, int, tuple[Any, ...]]] = []
        self._seq = 0
        self._now = 0
        self._channels = [self._new_channel() for _ in range(16)]
        probe_key = (round(probe_pitch, 6), round(probe_dyn, 6), self._articulations[0], 0)
        self._store(probe_key, self._prepare(probe))
        self.reset()

    # ---- state ----------------------------------------------------------------------------------
    def _new_channel(self) -> _Channel:
        return _Channel(bend_range=self.bend_range_semitones)

    def reset(self) -> None:
        """Silence every voice, drop pending events, return to sample 0 (the table cache is kept)."""
        self._vi[:] = 0
        self._vi[:, K.VI_REL] = -1
        self._vi[:, K.VI_KILL] = -1
        self._vi[:, K.VI_XF] = -1
        self._vi[:, K.VI_TR0] = -1
        self._vf[:] = 0.0
        self._vp[:] = 0.0
        self._v_pedal[:] = False
        self._ring[:] = 0.0
        self._marks[:] = -1
        K.seed_state(self.seed, self._rng_state)
        self._events.clear()
        self._seq = 0
        self._now = 0
        self._channels = [self._new_channel() for _ in range(16)]

    @property
    def time_samples(self) -> int:
        """Absolute sample index of the next sample :meth:`process` will render."""
        return self._now

    @property
    def n_active_voices(self) -> int:
        """Voices sounding now (including released ones still ringing)."""
        return int(np.count_nonzero(self._vi[:, K.VI_STATE]))

    @property
    def pending_events(self) -> int:
        """Events scheduled but not yet reached."""
        return len(self._events)

    def voice_partial_counts(self) -> NDArray[np.int64]:
        """Partials of every sounding voice (what the oscillator bank renders per voice)."""
        busy = self._vi[:, K.VI_STATE] != 0
        return self._vi[busy, K.VI_K].copy()

    def sounding_notes(self) -> list[tuple[int, int, bool]]:
        """``(channel, key, released)`` of every voice sounding now, oldest first (fading stolen
        voices excluded)."""
        vi = self._vi
        live = np.nonzero((vi[:, K.VI_STATE] != 0) & (vi[:, K.VI_KILL] < 0))[0]
        live = live[np.argsort(vi[live, K.VI_START], kind="stable")]
        return [
            (int(self._v_channel[v]), int(self._v_key[v]), bool(vi[v, K.VI_REL] >= 0 or self._v_pedal[v]))
            for v in live
        ]

    @property
    def pitch_range_midi(self) -> tuple[float, float]:
        return self._pitch_range

    # ---- event scheduling -----------------------------------------------------------------------
    def _push(self, time_samples: int | None, kind: int, args: tuple[Any, ...]) -> None:
        t = _check_time(time_samples, self._now)
        heapq.heappush(self._events, (t, self._seq, kind, args))
        self._seq += 1

    def note_on(
        self,
        key: int,
        velocity: int,
        *,
        time_samples: int | None = None,
        channel: int = 0,
        pitch_midi: float | None = None,
        dynamic: float | None = None,
        articulation: str | None = None,
        variation: int | None = None,
    ) -> None:
        """Start a note.

        Parameters
        ----------
        key : int
            MIDI key 0..127 (identifies the note for :meth:`note_off`; also its pitch by default).
        velocity : int
            1..127; sets the dynamic ``velocity / 127`` unless ``dynamic`` is given or the
            channel's dynamics controller (CC1) has been moved.
        time_samples : int, optional
            Absolute sample of the onset (now by default; earlier times play now).
        channel : int
            MIDI channel 0..15.
        pitch_midi : float, optional
            Fractional pitch (e.g. 61.5), for notes between the keys.
        dynamic : float, optional
            0..1, overriding the velocity.
        articulation : str, optional
            Overrides the channel's articulation.
        variation : int, optional
            Round-robin variation; cycles per key when omitted.

        Raises
        ------
        ParameterError
            For a pitch outside the instrument's range, a NaN, or a value out of range.
        """
        _check_midi("key", key, 0, 127)
        _check_midi("velocity", velocity, 1, 127)
        _check_midi("channel", channel, 0, 15)
        pitch = float(key) if pitch_midi is None else pitch_midi
        lo, hi = self._pitch_range
        if not (isinstance(pitch, int | float) and math.isfinite(pitch) and lo <= pitch <= hi):
            raise ParameterError(f"pitch_midi must be within the instrument's range {lo:.2f}..{hi:.2f}, got {pitch!r}")
        if dynamic is not None and not (isinstance(dynamic, int | float) and math.isfinite(dynamic) and 0 <= dynamic <= 1):
            raise ParameterError(f"dynamic must be within 0..1, got {dynamic!r}")
        if articulation is not None and articulation not in self._articulations:
            raise ParameterError(f"no articulation {articulation!r}; available: {list(self._articulations)}")
        if variation is not None:
            _check_midi("variation", variation, 0, self._n_variations - 1)
        self._push(time_samples, _NOTE_ON, (channel, key, velocity, float(pitch), dynamic, articulation, variation))

    def note_off(self, key: int, *, time_samples: int | None = None, channel: int = 0) -> None:
        """Release every sounding note of ``key`` on ``channel`` (held on while the sustain pedal is down)."""
        _check_midi("key", key, 0, 127)
        _check_midi("channel", channel, 0, 15)
        self._push(time_samples, _NOTE_OFF, (channel, key))

    def control_change(self, controller: int, value: int, *, time_samples: int | None = None, channel: int = 0) -> None:
        """A MIDI controller: 1 dynamics (0..127 -> 0..1, follows during notes), 7 volume, 11 expression,
        64 sustain pedal, 120 all sound off, 121 reset controllers, 123 all notes off, and the RPN 0
        (pitch-bend range) messages 101/100/6/38. Others are ignored."""
        _check_midi("controller", controller, 0, 127)
        _check_midi("value", value, 0, 127)
        _check_midi("channel", channel, 0, 15)
        self._push(time_samples, _CC, (channel, controller, value))

    def pitch_bend(self, value: int, *, time_samples: int | None = None, channel: int = 0) -> None:
        """Pitch wheel, -8192..8191 (mido's convention); +-``bend_range_semitones`` at the ends."""
        _check_midi("channel", channel, 0, 15)
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or not -8192 <= value <= 8191:
            raise ParameterError(f"pitch bend must be an integer in -8192..8191, got {value!r}")
        self._push(time_samples, _BEND, (channel, int(value)))

    def set_articulation(self, articulation: str, *, time_samples: int | None = None, channel: int = 0) -> None:
        """Switch the channel's articulation; sounding notes cross-fade to it."""
        _check_midi("channel", channel, 0, 15)
        if articulation not in self._articulations:
            raise ParameterError(f"no articulation {articulation!r}; available: {list(self._articulations)}")
        self._push(time_samples, _ARTICULATION, (channel, articulation))

    def all_notes_off(self, *, time_samples: int | None = None) -> None:
        """Release every note on every channel (the sustain pedal is lifted)."""
        self._push(time_samples, _ALL_NOTES_OFF, ())

    def midi_message(self, message: Any, *, time_samples: int | None = None) -> bool:
        """Schedule a ``mido.Message``; returns False for message types the engine ignores."""
        kind = getattr(message, "type", None)
        if kind == "note_on" and message.velocity > 0:
            self.note_on(message.note, message.velocity, time_samples=time_samples, channel=message.channel)
        elif kind == "note_off" or (kind == "note_on" and message.velocity == 0):
            self.note_off(message.note, time_samples=time_samples, channel=message.channel)
        elif kind == "control_change":
            self.control_change(message.control, message.value, time_samples=time_samples, channel=message.channel)
        elif kind == "pitchwheel":
            self.pitch_bend(message.pitch, time_samples=time_samples, channel=message.channel)
        else:
            return False
        return True

    def preload(
        self,
        pitches_midi: Any,
        *,
        articulations: Any = None,
        variations: Any = None,
    ) -> int:
        """Evaluate and cache the tables of these pitches at the sampled dynamics ahead of playing
        (with ``dynamic_anchors="grid"``, note-ons then find everything ready); returns the number of
        tables now cached for them."""
        arts = self._articulations[:1] if articulations is None else tuple(articulations)
        vars_ = (0,) if variations is None else tuple(variations)
        n = 0
        for p in pitches_midi:
            for a in arts:
                for v in vars_:
                    n += len(self._tables_for(float(p), a, int(v), 0.5, True))
        return n

    # ---- rendering ------------------------------------------------------------------------------
    def process(self, n_samples: int | None = None, *, out: FloatArray | None = None) -> FloatArray:
        """Render the next block.

        Parameters
        ----------
        n_samples : int, optional
            Block length (not needed with ``out``).
        out : np.ndarray [shape=(2, n_samples), dtype=float64], optional
            Written in place (no allocation); a new array is returned otherwise.

        Returns
        -------
        np.ndarray [shape=(2, n_samples)]
            Left and right.
        """
        if out is None:
            if n_samples is None:
                raise ParameterError("give n_samples or an out array")
            _check_midi("n_samples", n_samples, 0, 1 << 30)
            out = np.zeros((2, int(n_samples)))
        else:
            if not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.ndim == 2 and out.shape[0] == 2):
                raise ParameterError("out must be a float64 array of shape (2, n_samples)")
            if n_samples is not None and n_samples != out.shape[1]:
                raise ParameterError(f"n_samples {n_samples} does not match out.shape[1] = {out.shape[1]}")
            if not out.flags.c_contiguous:
                raise ParameterError("out must be C-contiguous")
            out.fill(0.0)
        start = self._now
        end = start + out.shape[1]
        t = start
        while t < end:
            while self._events and self._events[0][0] <= t:
                self._apply(heapq.heappop(self._events), t)
            stop = min(end, self._events[0][0]) if self._events else end
            self._render(out, t - start, t, stop)
            t = stop
        self._now = end
        return out

    def _render(self, out: FloatArray, o0: int, n0: int, n1: int) -> None:
        K.render(
            out,
            o0,
            n0,
            n1,
            self._vi,
            self._vf,
            self._vp,
            self._vt,
            self._vd,
            self._vo,
            self._ti,
            self._arena,
            self._band_hz,
            self._cfg,
            self._sc,
            self._cov,
            self._bin_map,
            self._bin_bands,
            self._window,
            self._rng_state,
            self._deviates,
            self._fre,
            self._fim,
            self._bitrev,
            self._tw_re,
            self._tw_im,
            self._ring,
            self._marks,
            self._junk,
        )

    # ---- events ---------------------------------------------------------------------------------
    def _voices_on(self, channel: int) -> NDArray[np.intp]:
        busy = self._vi[:, K.VI_STATE] != 0
        return np.nonzero(busy & (self._v_channel == channel))[0]

    def _update_channel_voices(self, channel: int) -> None:
        ch = self._channels[channel]
        voices = self._voices_on(channel)
        if voices.size == 0:
            return
        self._vf[voices, K.VF_GAIN_T] = ch.gain_ln() + self._master_ln
        self._vf[voices, K.VF_BEND_T] = ch.bend_ln()
        if ch.dynamics_cc is not None:
            self._vf[voices, K.VF_DYN_T] = ch.dynamics_cc / 127.0

    def _release(self, voices: NDArray[np.intp], t: int) -> None:
        for v in voices:
            if self._vi[v, K.VI_REL] < 0:
                self._vi[v, K.VI_REL] = t
            self._v_pedal[v] = False

    def _apply(self, event: tuple[int, int, int, tuple[Any, ...]], now: int) -> None:
        t_event, _, kind, args = event
        t = max(t_event, now)
        if t_event < now:
            self.stats["late_events"] += 1
        if kind == _NOTE_ON:
            self._start_note(t, *args)
        elif kind == _NOTE_OFF:
            channel, key = args
            busy = self._vi[:, K.VI_STATE] != 0
            match = np.nonzero(
                busy & (self._v_channel == channel) & (self._v_key == key) & (self._vi[:, K.VI_REL] < 0) & ~self._v_pedal
            )[0]
            if self._channels[channel].sustain:
                self._v_pedal[match] = True
            else:
                self._release(match, t)
        elif kind == _CC:
            self._control(t, *args)
        elif kind == _BEND:
            channel, value = args
            self._channels[channel].bend = value
            self._update_channel_voices(channel)
        elif kind == _ARTICULATION:
            self._change_articulation(t, *args)
        elif kind == _ALL_NOTES_OFF:
            for c, ch in enumerate(self._channels):
                ch.sustain = False
                self._release(self._voices_on(c), t)

    def _to_grid_anchors(self, v: int) -> None:
        """Re-evaluate a sounding note at the sampled dynamics, so that its dynamic can move."""
        vi = self._vi
        if self._v_grid[v] or vi[v, K.VI_STATE] == 0:
            return
        if vi[v, K.VI_XF] >= 0:  # an articulation cross-fade in progress jumps to its end
            self._vt[v, 0] = self._vt[v, 1]
            self._vd[v, 0] = self._vd[v, 1]
            self._vo[v, 0] = self._vo[v, 1]
            vi[v, K.VI_NA0] = vi[v, K.VI_NA1]
            vi[v, K.VI_XF] = -1
        art = self._v_art[v]
        dynamic = float(self._vf[v, K.VF_DYN])
        anchors = self._tables_for(float(self._v_pitch[v]), art, int(self._v_variation[v]), dynamic, True)
        tids = [tid for _, tid in anchors]
        if any(int(self._ti[tid, K.TI_LAYOUT]) != vi[v, K.VI_LAYOUT] for tid in tids):
            raise ParameterError("the source's models mix channel layouts across dynamics")
        k_old = int(vi[v, K.VI_K])
        k_new = min(self.max_partials, max(k_old, int(max(self._ti[tid, K.TI_K] for tid in tids))))
        if k_new > k_old:
            self._vp[v, K.PL_PHI : K.PL_FT + 1, k_old:k_new] = 0.0
            vi[v, K.VI_K] = k_new
        onset = vi[v, K.VI_ONSET] - vi[v, K.VI_START]
        self._vt[v, 0] = 0
        self._vd[v, 0] = 0.0
        self._vo[v, 0] = 0.0
        for j, (d, tid) in enumerate(anchors):
            self._vt[v, 0, j] = tid
            self._vd[v, 0, j] = d
            self._vo[v, 0, j] = (self._ti[tid, K.TI_ONSET] - onset) / self.sample_rate
        vi[v, K.VI_NA0] = len(anchors)
        vi[v, K.VI_MAIN] = int(np.argmin([abs(d - dynamic) for d, _ in anchors]))
        lo, hi = self._level_slopes(anchors)
        self._vf[v, K.VF_SLOPE_LO] = lo
        self._vf[v, K.VF_SLOPE_HI] = hi
        self._v_grid[v] = True

    def _control(self, t: int, channel: int, controller: int, value: int) -> None:
        ch = self._channels[channel]
        if controller == 1:
            ch.dynamics_cc = value
            for v in self._voices_on(channel):
                self._to_grid_anchors(int(v))
        elif controller == 7:
            ch.volume = value
        elif controller == 11:
            ch.expression = value
        elif controller == 64:
            down = value >= 64
            if ch.sustain and not down:
                voices = self._voices_on(channel)
                self._release(voices[self._v_pedal[voices]], t)
            ch.sustain = down
        elif controller == 120:
            voices = self._voices_on(channel)
            self._vi[voices[self._vi[voices, K.VI_KILL] < 0], K.VI_KILL] = t
        elif controller == 121:
            if ch.sustain:
                voices = self._voices_on(channel)
                self._release(voices[self._v_pedal[voices]], t)
            ch.bend = 0
            ch.dynamics_cc = None
            ch.expression = 127
            ch.sustain = False
            ch.rpn = (127, 127)
        elif controller == 123:
            voices = self._voices_on(channel)
            voices = voices[self._vi[voices, K.VI_REL] < 0]
            if ch.sustain:
                self._v_pedal[voices] = True
            else:
                self._release(voices, t)
        elif controller == 101:
            ch.rpn = (value, ch.rpn[1])
        elif controller == 100:
            ch.rpn = (ch.rpn[0], value)
        elif controller == 6 and ch.rpn == (0, 0):
            ch.bend_range = float(value) + (ch.bend_range % 1.0)
        elif controller == 38 and ch.rpn == (0, 0):
            ch.bend_range = math.floor(ch.bend_range) + value / 100.0
        else:
            return
        self._update_channel_voices(channel)

    # ---- voices ---------------------------------------------------------------------------------
    def _allocate(self, t: int) -> int:
        vi = self._vi
        busy = vi[:, K.VI_STATE] != 0
        counted = np.nonzero(busy & (vi[:, K.VI_KILL] < 0))[0]
        if counted.size >= self.polyphony:
            # quietest released voice first, then the quietest, oldest held one
            released = vi[counted, K.VI_REL] >= 0
            level = self._vf[counted, K.VF_LEVEL]
            start = vi[counted, K.VI_START]
            order = np.lexsort((start, level, ~released))
            vi[counted[order[: counted.size - self.polyphony + 1]], K.VI_KILL] = t
        free = np.nonzero(~busy)[0]
        if free.size:
            return int(free[0])
        # no slot left even for fading voices: cut the quietest of them
        killing = np.nonzero(busy & (vi[:, K.VI_KILL] >= 0))[0]
        pool = killing if killing.size else np.nonzero(busy)[0]
        v = int(pool[np.argmin(self._vf[pool, K.VF_LEVEL])])
        vi[v, K.VI_STATE] = 0
        return v

    def _anchor_dynamics(self, dynamic: float, grid_anchors: bool) -> list[float]:
        grid = list(self._grid_dynamics)
        if not grid:
            return [dynamic]
        if not grid_anchors:
            # beyond the sampled layers the timbre is held and the loudness extrapolated (by the
            # voice, from its anchor): evaluate at the nearest sampled dynamic
            return [min(max(dynamic, grid[0]), grid[-1])]
        if len(grid) <= MAX_ANCHORS:
            return grid
        nearest = sorted(sorted(range(len(grid)), key=lambda i: abs(grid[i] - dynamic))[:MAX_ANCHORS])
        return [grid[i] for i in nearest]

    def _tables_for(
        self,
        pitch: float,
        articulation: str,
        variation: int,
        dynamic: float,
        grid_anchors: bool = True,
    ) -> list[tuple[float, int]]:
        """Tables of a note: at the source's sampled dynamics (the anchors a moving dynamic is
        interpolated between), or only at ``dynamic`` itself when it will not move."""
        out: list[tuple[float, int]] = []
        for d in self._anchor_dynamics(dynamic, grid_anchors):
            key = (round(pitch, 6), round(d, 6), articulation, variation)
            tid = self._cache.get(key)
            if tid is None:
                t0 = time.perf_counter()
                model = self.source.evaluate(pitch_midi=pitch, dynamic=d, articulation=articulation, variation=variation)
                # the anchors already found are not yet played by a voice: keep them from eviction
                tid = self._store(key, self._prepare(model), keep={t for _, t in out})
                self.stats["tables"] += 1
                self.stats["table_s"] += time.perf_counter() - t0
            else:
                self._cache.move_to_end(key)
            out.append((d, tid))
        return out

    def _prepare(self, model: NoteModel) -> PreparedTable:
        if not isinstance(model, NoteModel):
            raise ParameterError(f"the source returned {type(model).__name__}, not a NoteModel")
        return prepare_table(
            model,
            sample_rate=self.sample_rate,
            bands=self._bands,
            max_partials=self.max_partials,
            sustained=self._sustained,
        )

    def _store(self, key: tuple[float, float, str, int], table: PreparedTable, *, keep: set[int] | None = None) -> int:
        n_rows = table.rows.size
        size = n_rows + table.transient.size
        off = self._alloc(size, keep or set())
        self._arena[off : off + n_rows] = table.rows.ravel()
        self._arena[off + n_rows : off + size] = table.transient.ravel()
        if self._free_tables:
            tid = self._free_tables.pop()
        else:
            tid = self._next_table
            if tid >= MAX_TABLES:
                raise ParameterError(f"more than {MAX_TABLES} distinct notes are sounding; lower the polyphony")
            self._next_table += 1
        self._ti[tid] = table.info
        self._ti[tid, K.TI_OFF] = off
        self._ti[tid, K.TI_ROWS] = table.rows.shape[1]
        self._ti[tid, K.TI_TR_OFF] = off + n_rows
        self._spans[tid] = (off, size)
        self._cache[key] = tid
        return tid

    def _alloc(self, size: int, keep: set[int]) -> int:
        """Room for ``size`` floats in the arena: at its top, else after dropping the least recently
        used tables that no voice plays (and not in ``keep``) and compacting, else in a larger arena."""
        if self._arena_top + size > self._arena.size:
            self._evict(size, keep)
            self._compact()
        if self._arena_top + size > self._arena.size:
            bigger = np.empty(max(2 * self._arena.size, self._arena_top + size), dtype=np.float32)
            bigger[: self._arena_top] = self._arena[: self._arena_top]
            self._arena = bigger
        off = self._arena_top
        self._arena_top += size
        return off

    def _evict(self, incoming: int, keep: set[int]) -> None:
        live = sum(size for _, size in self._spans.values())
        busy = self._vi[:, K.VI_STATE] != 0
        in_use = set(self._vt[busy].ravel().tolist()) | set(self._vi[busy, K.VI_TR0].tolist()) | keep
        for key in list(self._cache):
            if live + incoming <= self._arena.size:
                break
            tid = self._cache[key]
            if tid in in_use:
                continue
            del self._cache[key]
            live -= self._spans.pop(tid)[1]
            self._free_tables.append(tid)

    def _compact(self) -> None:
        pos = 0
        for tid, (off, size) in sorted(self._spans.items(), key=lambda item: item[1][0]):
            if off != pos:
                self._arena[pos : pos + size] = self._arena[off : off + size]
                self._ti[tid, K.TI_OFF] += pos - off
                self._ti[tid, K.TI_TR_OFF] += pos - off
                self._spans[tid] = (pos, size)
            pos += size
        self._arena_top = pos

    def _level_slopes(self, anchors: list[tuple[float, int]]) -> tuple[float, float]:
        floor = MIN_DYNAMIC_RANGE_DB * math.log(10.0) / 20.0
        if len(anchors) < 2:
            return floor, floor
        (d0, t0), (d1, t1) = anchors[0], anchors[1]
        (e0, u0), (e1, u1) = anchors[-2], anchors[-1]
        lo = (self._ti[t1, K.TI_LEVEL] - self._ti[t0, K.TI_LEVEL]) / max(d1 - d0, 1e-6)
        hi = (self._ti[u1, K.TI_LEVEL] - self._ti[u0, K.TI_LEVEL]) / max(e1 - e0, 1e-6)
        return max(lo, floor), max(hi, floor)

    def _start_note(
        self,
        t: int,
        channel: int,
        key: int,
        velocity: int,
        pitch: float,
        dynamic: float | None,
        articulation: str | None,
        variation: int | None,
    ) -> None:
        ch = self._channels[channel]
        if dynamic is None:
            dynamic = ch.dynamics_cc / 127.0 if ch.dynamics_cc is not None else velocity / 127.0
        art = articulation or ch.articulation or self._articulations[0]
        if variation is None:
            variation = ch.round_robin.get(key, 0) % self._n_variations
            ch.round_robin[key] = variation + 1
        # a note whose dynamic will not move needs one evaluation, at its own dynamic; with the
        # dynamics controller in use, the sampled layers are evaluated for interpolation
        grid_anchors = self.dynamic_anchors == "grid" or ch.dynamics_cc is not None
        anchors = self._tables_for(pitch, art, variation, dynamic, grid_anchors)
        # a repeated key releases its previous voice
        busy = self._vi[:, K.VI_STATE] != 0
        same = np.nonzero(busy & (self._v_channel == channel) & (self._v_key == key) & (self._vi[:, K.VI_KILL] < 0))[0]
        self._release(same, t)
        v = self._allocate(t)
        vi, vf = self._vi, self._vf
        vi[v] = 0
        vi[v, K.VI_START] = t
        vi[v, K.VI_REL] = -1
        vi[v, K.VI_KILL] = -1
        vi[v, K.VI_CTRL] = -1
        tids = [tid for _, tid in anchors]
        vi[v, K.VI_K] = min(self.max_partials, int(max(self._ti[tid, K.TI_K] for tid in tids)))
        layouts = {int(self._ti[tid, K.TI_LAYOUT]) for tid in tids}
        if len(layouts) != 1:
            raise ParameterError("the source's models mix channel layouts (left/right, mid/side, mono) across dynamics")
        vi[v, K.VI_LAYOUT] = layouts.pop()
        vi[v, K.VI_NA0] = len(anchors)
        vi[v, K.VI_NA1] = 0
        vi[v, K.VI_XF] = -1
        main = int(np.argmin([abs(d - dynamic) for d, _ in anchors]))
        tid_main = tids[main]
        vi[v, K.VI_MAIN] = main
        vi[v, K.VI_TR0] = tid_main if self._play_transients and self._ti[tid_main, K.TI_TR_LEN] > 0 else -1
        # the anchors are aligned on their onsets, at the onset interpolated at the note's dynamic
        onset = round(sum(w * self._ti[tids[j], K.TI_ONSET] for j, w in _bracket_weights([d for d, _ in anchors], dynamic)))
        vi[v, K.VI_ONSET] = t + onset
        self._vt[v] = 0
        self._vd[v] = 0.0
        self._vo[v] = 0.0
        for j, (d, tid) in enumerate(anchors):
            self._vt[v, 0, j] = tid
            self._vd[v, 0, j] = d
            self._vo[v, 0, j] = (self._ti[tid, K.TI_ONSET] - onset) / self.sample_rate
        lo, hi = self._level_slopes(anchors)
        vf[v] = 0.0
        vf[v, K.VF_GAIN_T] = ch.gain_ln() + self._master_ln
        vf[v, K.VF_DYN_T] = dynamic
        vf[v, K.VF_BEND_T] = ch.bend_ln()
        vf[v, K.VF_SLOPE_LO] = lo
        vf[v, K.VF_SLOPE_HI] = hi
        vf[v, K.VF_REL_S] = self.release_s
        vf[v, K.VF_XF_LEN] = self.articulation_crossfade_s * self.sample_rate
        self._vp[v, K.PL_LT : K.PL_FT + 1] = 0.0
        self._v_channel[v] = channel
        self._v_key[v] = key
        self._v_pitch[v] = pitch
        self._v_variation[v] = variation
        self._v_pedal[v] = False
        self._v_grid[v] = grid_anchors or not self._grid_dynamics
        self._v_art[v] = art
        vi[v, K.VI_STATE] = 2

    def _change_articulation(self, t: int, channel: int, articulation: str) -> None:
        ch = self._channels[channel]
        ch.articulation = articulation
        vi = self._vi
        for v in self._voices_on(channel):
            if vi[v, K.VI_KILL] >= 0 or vi[v, K.VI_STATE] == 0:
                continue
            if vi[v, K.VI_XF] >= 0:  # a cross-fade in progress jumps to its end
                self._vt[v, 0] = self._vt[v, 1]
                self._vd[v, 0] = self._vd[v, 1]
                self._vo[v, 0] = self._vo[v, 1]
                vi[v, K.VI_NA0] = vi[v, K.VI_NA1]
            anchors = self._tables_for(
                float(self._v_pitch[v]),
                articulation,
                int(self._v_variation[v]),
                float(self._vf[v, K.VF_DYN_T]),
                bool(self._v_grid[v]),
            )
            tids = [tid for _, tid in anchors]
            if any(int(self._ti[tid, K.TI_LAYOUT]) != vi[v, K.VI_LAYOUT] for tid in tids):
                raise ParameterError(f"articulation {articulation!r} has another channel layout than the sounding note")
            k_old = int(vi[v, K.VI_K])
            k_new = min(self.max_partials, max(k_old, int(max(self._ti[tid, K.TI_K] for tid in tids))))
            if k_new > k_old:
                self._vp[v, K.PL_PHI : K.PL_FT + 1, k_old:k_new] = 0.0
                vi[v, K.VI_K] = k_new
            onset = vi[v, K.VI_ONSET] - vi[v, K.VI_START]
            for j, (d, tid) in enumerate(anchors):
                self._vt[v, 1, j] = tid
                self._vd[v, 1, j] = d
                self._vo[v, 1, j] = (self._ti[tid, K.TI_ONSET] - onset) / self.sample_rate
            vi[v, K.VI_NA1] = len(anchors)
            vi[v, K.VI_XF] = t
            self._v_art[v] = articulation
