"""Synthetic instruments for the hypercube, format and decode tests, and the format test vector.

Nothing here reads audio: note models are built from closed-form envelopes (so the tests know the
answer), and the test-vector instrument is built from explicit integer factors (so that
``make_vectors.py`` regenerates ``tiny.calyx`` byte for byte on any platform).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calyx.analysis.model import NoteModel
from calyx.hypercube import ArticulationData, GridNote, Instrument, InstrumentSettings, TimeBase
from calyx.hypercube._quantise import QuantisedArray, QuantisedFactors
from calyx.io.library import Library, NoteSample, velocity_to_dynamic

SAMPLE_RATE = 16000
HOP = 64
N_PARTIALS = 6
N_BANDS = 8
NOISE_N_FFT = 256
FMAX_HZ = 7000.0


def synthetic_model(pitch_midi: float, velocity: tuple[int, int], *, n_samples: int, channels: int = 2, variation: int = 0) -> NoteModel:
    """A struck-string-like note: partials decaying linearly in dB, quieter with k, louder with velocity."""
    n_frames = n_samples // HOP + 1
    t = np.arange(n_frames) * HOP / SAMPLE_RATE
    onset = 32
    f0 = 440.0 * 2.0 ** ((pitch_midi - 69.0) / 12.0)
    k = np.arange(1, N_PARTIALS + 1)
    n_part = int(np.sum(k * f0 < min(FMAX_HZ, 0.95 * SAMPLE_RATE / 2)))
    dyn = velocity_to_dynamic(*velocity)
    level = -14.0 + 10.0 * dyn + 0.5 * variation
    decay = 20.0 + 0.5 * (pitch_midi - 60.0)  # dB per second
    amp_db = level - 5.0 * (k[:n_part, None] - 1) * (1.0 - 0.3 * dyn) - decay * t[None, :]
    attack = np.clip((np.arange(n_frames) * HOP - onset) / 160.0, 0.0, 1.0)
    amp = 10.0 ** (amp_db / 20.0) * attack[None, :]
    amp[:, : max(0, (onset - 1) // HOP)] = 0.0
    pan = np.array([1.0, 0.8])[:channels]
    noise_db = -45.0 + 6.0 * dyn - 2.0 * np.arange(N_BANDS)[:, None] - 30.0 * t[None, :]
    noise = 10.0 ** (noise_db / 20.0)
    return NoteModel(
        sample_rate=float(SAMPLE_RATE),
        n_samples=n_samples,
        hop_length=HOP,
        onset_sample=onset,
        f0_hz=f0 if n_part else 0.0,
        inharmonicity=1e-4,
        f0_cents=np.zeros(n_frames),
        amplitude=pan[:, None, None] * amp[None],
        freq_cents=np.zeros((n_part, n_frames)),
        noise_gain=np.repeat(noise[None], channels, axis=0),
        noise_fmin_hz=50.0,
        noise_n_fft=NOISE_N_FFT,
        transient=np.zeros((channels, 0)),
        pitch_midi=pitch_midi,
    )


@dataclass(frozen=True)
class SyntheticAudio:
    """Picklable loader: the audio of :func:`synthetic_model` rendered by ``calyx.analysis.synthesize``."""

    pitch_midi: float
    velocity: tuple[int, int]
    n_samples: int
    channels: int
    variation: int

    def model(self) -> NoteModel:
        return synthetic_model(self.pitch_midi, self.velocity, n_samples=self.n_samples, channels=self.channels, variation=self.variation)

    def __call__(self) -> NDArray[np.float64]:
        from calyx.analysis import synthesize

        return synthesize(self.model())


def synthetic_library(
    *,
    pitches: tuple[float, ...] = (55.0, 60.0, 64.0, 67.0, 72.0),
    velocities: tuple[tuple[int, int], ...] = ((1, 63), (64, 127)),
    missing: tuple[tuple[float, tuple[int, int]], ...] = (),
    articulations: tuple[str, ...] = ("sustain",),
    variations: int = 1,
    seconds: float = 0.4,
) -> tuple[Library, list[NoteModel]]:
    """A library of synthetic notes (and their models); ``missing`` grid points are left out."""
    notes: list[NoteSample] = []
    models: list[NoteModel] = []
    for a_index, art in enumerate(articulations):
        for vel in velocities:
            for p in pitches:
                if (p, vel) in missing:
                    continue
                for v in range(variations):
                    n = int(seconds * SAMPLE_RATE) + 97 * a_index + int(3 * (p - 60))
                    loader = SyntheticAudio(p, vel, n, 2, v)
                    notes.append(NoteSample(
                        pitch_midi=p, key_lo=int(p) - 1, key_hi=int(p) + 1, velocity_lo=vel[0], velocity_hi=vel[1],
                        dynamic=velocity_to_dynamic(*vel), articulation=art, variation=v, sample_rate=SAMPLE_RATE,
                        channels=2, n_samples=n, loop_start=n // 2 if a_index == 0 else None,
                        loop_end=n - 10 if a_index == 0 else None, source=f"synthetic [{art} p{p} v{vel[1]} rr{v}]",
                        loader=loader,
                    ))
                    models.append(loader.model())
    return Library(name="synthetic", notes=notes, source="synthetic"), models


# --- the test vector ------------------------------------------------------------------------------


def _ints(shape: tuple[int, ...], salt: int, spread: int) -> NDArray[np.int64]:
    """Deterministic integers in [-spread, spread] (a fixed formula, identical on every platform)."""
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    return ((i * 7919 + salt * 104729 + (i * i) % 977) % (2 * spread + 1) - spread).reshape(shape)


def vector_instrument() -> Instrument:
    """The instrument of ``tiny.calyx``: Tucker factors given as integers, two articulations, a
    missing grid point, a mono note, round robins, a loop."""
    timebase = TimeBase(step_s=HOP / SAMPLE_RATE, attack_s=0.02, points_per_octave=2.0, duration_s=0.25)
    settings = InstrumentSettings(
        sample_rate=SAMPLE_RATE, hop_length=HOP, n_channels=2, n_partials_max=3, n_noise_bands=2,
        noise_fmin_hz=50.0, noise_n_fft=NOISE_N_FFT, fmax_hz=FMAX_HZ, db_range=90.0, timebase=timebase,
    )
    t_n = timebase.n_times
    feat = 2 * (3 + 2)
    notes = [
        GridNote(60.0, 1, 63, 59, 61, "sustain", 0, 3000, 2, 1000, 2900, "vector [sustain 60 soft]"),
        GridNote(64.0, 1, 63, 62, 65, "sustain", 0, 3100, 2, None, None, "vector [sustain 64 soft]"),
        GridNote(60.0, 64, 127, 59, 61, "sustain", 0, 3200, 2, None, None, "vector [sustain 60 loud]"),
        # (64, loud) is missing: a hole in the grid
        GridNote(62.5, 1, 127, 60, 64, "staccato", 0, 2000, 1, None, None, "vector [staccato 62.5 rr1]"),
        GridNote(62.5, 1, 127, 60, 64, "staccato", 1, 2100, 1, None, None, "vector [staccato 62.5 rr2]"),
    ]
    arts: dict[str, ArticulationData] = {}
    layout = {"sustain": ([0, 1, 2], (2, 2)), "staccato": ([3, 4], (1, 2))}
    for a_index, (name, (idx, (p_n, l_n))) in enumerate(layout.items()):
        ranks = (min(2, p_n), min(2, l_n), 3, 4)
        mean_q = np.full((t_n * feat,), -60, dtype=np.int64) + _ints((t_n * feat,), 1 + a_index, 6)
        arrays = {
            "mean": QuantisedArray(mean_q, np.array([0.5], dtype=np.float32)),
            "core": QuantisedArray(_ints(ranks, 2 + a_index, 40), np.array([0.05], dtype=np.float32)),
            "pitch": QuantisedArray(_ints((p_n, ranks[0]), 3 + a_index, 100), np.full(ranks[0], 0.01, dtype=np.float32)),
            "layer": QuantisedArray(_ints((l_n, ranks[1]), 4 + a_index, 100), np.full(ranks[1], 0.01, dtype=np.float32)),
            "time": QuantisedArray(_ints((t_n, ranks[2]), 5 + a_index, 100), np.full(ranks[2], 0.01, dtype=np.float32)),
            "feature": QuantisedArray(_ints((feat, ranks[3]), 6 + a_index, 100), np.full(ranks[3], 0.01, dtype=np.float32)),
        }
        scalars = np.array([[-6.0 - 2.0 * j, 0.002, 3.0 * j - 2.0, 1e-4] for j in range(len(idx))])
        n_partials = np.array([3 if name == "sustain" else 2] * len(idx), dtype=np.int64)
        arts[name] = ArticulationData(name, np.array(idx, dtype=np.int64), scalars.astype(np.float32).astype(np.float64), n_partials, QuantisedFactors("tucker", arrays, 0.0))
    return Instrument(
        name="tiny", settings=settings, notes=notes, method="tucker", articulations=arts,
        provenance={"encoder": "tests/data/calyx-vectors/make_vectors.py", "source": "synthetic"},
    )


def vector_summary(inst: Instrument) -> dict[str, object]:
    """What a decoder must find in the test vector: header facts, factor sums, per-note levels."""
    out: dict[str, object] = {
        "name": inst.name,
        "method": inst.method,
        "n_notes": len(inst.notes),
        "articulations": list(inst.articulations),
        "n_times": inst.settings.timebase.n_times,
        "ranks": {a: inst.ranks(a) for a in inst.articulations},
        "factor_sums": {
            a: {k: int(v.q.sum()) for k, v in inst.articulation(a).factors.arrays.items()} for a in inst.articulations
        },
        "notes": [],
    }
    notes = []
    for i, n in enumerate(inst.notes):
        m = inst.note_model(i)
        peak_db = 20.0 * math.log10(max(float(np.max(m.amplitude)), 1e-12)) if m.n_partials else None
        noise_db = 20.0 * math.log10(max(float(np.max(m.noise_gain)), 1e-12))
        notes.append({
            "pitch_midi": n.pitch_midi, "articulation": n.articulation, "variation": n.variation,
            "n_samples": m.n_samples, "n_partials": m.n_partials, "f0_hz": round(m.f0_hz, 6),
            "peak_partial_db": None if peak_db is None else round(peak_db, 4), "peak_noise_db": round(noise_db, 4),
        })
    out["notes"] = notes
    return out
