"""The real-time spectral synthesizer: exactness against the synthesis core, block-size invariance,
continuity across sampled boundaries, MIDI behaviour, offline rendering and the command line."""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from calyx.analysis import NoteModel, synthesize
from calyx.cli.main import main
from calyx.core.spectrum import stft
from calyx.core.synthesis import oscillator_bank, upsample_controls
from calyx.errors import ParameterError
from calyx.io import load_library
from calyx.metrics import lmd
from calyx.synth import (
    Engine,
    GridNote,
    ModelGrid,
    as_model_source,
    oscillator_bank_controls,
    render_midi,
    render_note,
)
from calyx.synth import _kernels as K
from calyx.synth._live import LivePlayer, run_live

SR = 48000
EXCERPT = Path(__file__).parent / "data" / "piano-excerpt"


# ---- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid() -> ModelGrid:
    """The six analysed notes of the committed piano excerpt (pitches 40.05, 60.05, 83.05 x MF, FF)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ModelGrid.from_library(load_library(EXCERPT))


def tone_model(
    *,
    f0_hz: float = 220.0,
    n_partials: int = 8,
    duration_s: float = 1.0,
    sample_rate: float = 48000.0,
    hop: int = 256,
    decay_db_s: float = 0.0,
    fade_s: float = 0.0,
    level: float = 0.2,
    noise: float = 0.0,
    n_bands: int = 8,
    stereo: str = "channels",
    side: float = 0.0,
) -> NoteModel:
    """A synthetic note: partials ``level / k``, an exponential decay, an optional fade at the end."""
    n = int(duration_s * sample_rate)
    n_frames = n // hop + 1
    t = np.arange(n_frames) * hop / sample_rate
    env = 10.0 ** (decay_db_s * t / 20.0)
    if fade_s > 0:
        env *= np.clip((duration_s - t) / fade_s, 0.0, 1.0)
    k = np.arange(1, n_partials + 1)[:, None]
    amp = np.stack([level / k * env, (side if stereo == "mid_side" else level) / k * env])
    return NoteModel(
        sample_rate=sample_rate,
        n_samples=n,
        hop_length=hop,
        onset_sample=0,
        f0_hz=f0_hz,
        inharmonicity=0.0,
        f0_cents=np.zeros(n_frames),
        amplitude=amp,
        freq_cents=np.zeros((n_partials, n_frames)),
        noise_gain=np.full((2, n_bands, n_frames), noise) * env,
        noise_fmin_hz=20.0,
        noise_n_fft=1024,
        transient=np.zeros((2, 0)),
        stereo=stereo,
    )


def tone_grid(model: NoteModel, *, pitch_midi: float = 57.0, sustained: bool | None = None) -> ModelGrid:
    return ModelGrid([GridNote(pitch_midi, 0.5, model)], sustained=sustained, pitch_range_midi=(21.0, 108.0))


def peak_hz(y: np.ndarray, sr: float, near_hz: float) -> float:
    """Frequency of the strongest spectral peak within a semitone of ``near_hz`` (parabolic interpolation)."""
    n = y.size
    spec = np.abs(np.fft.rfft(y * np.hanning(n), n=8 * n))
    f = np.arange(spec.size) * sr / (8 * n)
    band = np.nonzero((f > near_hz * 2 ** (-1 / 12)) & (f < near_hz * 2 ** (1 / 12)))[0]
    k = int(band[np.argmax(spec[band])])
    a, b, c = np.log(spec[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / (8 * n)


def band_envelope_db(y: np.ndarray, *, hop: int = 480) -> np.ndarray:
    """Third-octave band levels (dB) per 10 ms frame of the mono sum, shape (n_bands, n_frames)."""
    s = np.abs(stft(y.mean(axis=0), n_fft=2048, hop_length=hop)) ** 2
    f = np.arange(s.shape[0]) * SR / 2048
    edges = 100.0 * 2.0 ** (np.arange(24) / 3.0)
    e = np.stack([s[(f >= lo) & (f < hi)].sum(axis=0) for lo, hi in itertools.pairwise(edges)])
    return 10.0 * np.log10(e + 1e-12)


def max_flux_db(y: np.ndarray, t0: float, t1: float) -> float:
    """Largest frame-to-frame change of the band envelope (mean over bands, dB) between t0 and t1."""
    e = band_envelope_db(y)
    d = np.mean(np.abs(np.diff(e, axis=1)), axis=0)
    return float(np.max(d[int(t0 * 100) : int(t1 * 100)]))


def max_step(y: np.ndarray, t0: float, t1: float) -> float:
    return float(np.max(np.abs(np.diff(y[:, int(t0 * SR) : int(t1 * SR)], axis=1))))


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(y**2)))


# ---- the oscillator kernel against the synthesis core ------------------------------------------------


@pytest.mark.parametrize("control_period", [64, 17])
def test_numba_oscillators_match_core_oscillator_bank(control_period: int) -> None:
    rng = np.random.default_rng(0)
    n = 20000
    n_ctrl = n // control_period + 2
    f = 100 + 5000 * rng.random((12, 1)) * np.exp(np.cumsum(rng.normal(0, 0.01, (12, n_ctrl)), axis=1))
    f[0] = np.linspace(20000, 26000, n_ctrl)  # crosses Nyquist: silenced sample by sample
    a = rng.random((12, n_ctrl))
    a[3, 10:40] = 0.0  # a partial that stops and restarts
    phase = rng.uniform(0, 2 * np.pi, 12)
    ref, _ = oscillator_bank(
        upsample_controls(f, hop_length=control_period, n_samples=n),
        upsample_controls(a, hop_length=control_period, n_samples=n),
        sample_rate=SR,
        initial_phase=phase,
    )
    y = oscillator_bank_controls(f, a, control_period=control_period, n_samples=n, sample_rate=SR, initial_phase=phase)
    np.testing.assert_allclose(y, ref, atol=1e-9)


def test_noise_ifft_matches_numpy() -> None:
    n = 64
    rng = np.random.default_rng(1)
    z = rng.normal(size=n) + 1j * rng.normal(size=n)
    re, im = z.real.copy(), z.imag.copy()
    bits = int(math.log2(n))
    idx = np.arange(n)
    bitrev = np.zeros(n, dtype=np.int64)
    for b in range(bits):
        bitrev |= ((idx >> b) & 1) << (bits - 1 - b)
    ang = 2 * np.pi * np.arange(n // 2) / n
    K._ifft_inplace(re, im, bitrev, np.cos(ang), np.sin(ang))
    np.testing.assert_allclose(re + 1j * im, np.fft.ifft(z), atol=1e-12)


def test_noise_band_levels_are_calibrated() -> None:
    """An unpitched model with band gains g_b gives noise of RMS sqrt(sum g_b^2) per channel."""
    m = tone_model(n_partials=0, f0_hz=0.0, noise=0.01, n_bands=16, duration_s=2.0)
    y = render_note(tone_grid(m, sustained=True), pitch_midi=57.0, dynamic=0.5, duration_s=1.5, sample_rate=SR, tail_s=0)
    expected = 0.01 * math.sqrt(16)
    for ch in y:
        got = rms(ch[int(0.3 * SR) : int(1.4 * SR)])
        assert 20 * math.log10(got / expected) == pytest.approx(0.0, abs=0.5)
    left, right = y[:, int(0.3 * SR) : int(1.4 * SR)]
    assert abs(np.corrcoef(left, right)[0, 1]) < 0.1  # independent left/right noise


def test_mid_side_models_render_left_and_right() -> None:
    m = tone_model(n_partials=1, stereo="mid_side", level=0.3, side=0.1, duration_s=1.0)
    y = render_note(tone_grid(m, sustained=True), pitch_midi=57.0, dynamic=0.5, duration_s=0.8, sample_rate=SR, tail_s=0)
    seg = y[:, int(0.2 * SR) : int(0.7 * SR)]
    assert rms(seg[0]) == pytest.approx(0.4 / math.sqrt(2), rel=0.02)  # mid + side
    assert rms(seg[1]) == pytest.approx(0.2 / math.sqrt(2), rel=0.02)  # mid - side


def test_mono_models_play_on_both_channels() -> None:
    stereo = tone_model(n_partials=3, level=0.3, duration_s=1.0, noise=0.001)
    mono = dataclasses.replace(
        stereo, amplitude=stereo.amplitude[:1], noise_gain=stereo.noise_gain[:1], transient=np.zeros((1, 0))
    )
    y = render_note(tone_grid(mono, sustained=True), pitch_midi=57.0, dynamic=0.5, duration_s=0.8, sample_rate=SR, tail_s=0)
    np.testing.assert_allclose(y[0], y[1], atol=1e-9)  # partials and noise fully correlated
    ref = render_note(tone_grid(stereo, sustained=True), pitch_midi=57.0, dynamic=0.5, duration_s=0.8, sample_rate=SR, tail_s=0)
    assert rms(y[0]) == pytest.approx(rms(ref[0]), rel=0.02)


def test_articulation_change_cross_fades_a_sounding_note() -> None:
    plain = tone_model(n_partials=6, level=0.2, duration_s=1.0)
    bright = dataclasses.replace(plain, amplitude=plain.amplitude * np.linspace(1.0, 4.0, 6)[None, :, None])
    source = ModelGrid(
        [GridNote(57.0, 0.5, plain, articulation="plain"), GridNote(57.0, 0.5, bright, articulation="bright")],
        sustained=True,
        pitch_range_midi=(21.0, 108.0),
    )
    e = Engine(source, sample_rate=SR, articulation_crossfade_s=0.05)
    e.control_change(7, 127, time_samples=0)
    e.note_on(57, 64, time_samples=0, dynamic=0.5)
    switch = int(0.5 * SR)
    e.set_articulation("bright", time_samples=switch)
    y = e.process(SR)
    # no jump at the switch: no step beyond those of the steady notes on either side
    assert max_step(y, 0.45, 0.6) <= 1.05 * max(max_step(y, 0.3, 0.45), max_step(y, 0.6, 0.95))
    sixth = 6 * 220.0
    before = np.abs(np.fft.rfft(y[0, switch - 9600 : switch]))
    after = np.abs(np.fft.rfft(y[0, switch + 4800 : switch + 14400]))
    k6 = round(sixth * 9600 / SR)
    peak_level = 20 * np.log10(after[k6 - 2 : k6 + 3].max() / before[k6 - 2 : k6 + 3].max())
    assert peak_level == pytest.approx(20 * math.log10(4.0), abs=1.0)  # the sixth partial now 4x louder
    with pytest.raises(ParameterError, match="articulation"):
        e.set_articulation("pizzicato")


def test_rpn_sets_the_pitch_bend_range(grid: ModelGrid) -> None:
    e = Engine(grid, sample_rate=SR)
    for controller, value in ((101, 0), (100, 0), (6, 12), (38, 0)):
        e.control_change(controller, value, time_samples=0)
    e.pitch_bend(8191, time_samples=0)
    e.note_on(48, 100, time_samples=0)
    y = e.process(int(0.8 * SR))
    target = 440.0 * 2 ** ((60.0 - 69) / 12) * 2 ** ((8191 / 8192 * 12 - 12) / 12)
    f = peak_hz(y[0, int(0.2 * SR) : int(0.75 * SR)], SR, target)
    assert abs(1200 * math.log2(f / target)) < 10.0


# ---- block-size invariance ------------------------------------------------------------------------


def _two_articulations(grid: ModelGrid) -> ModelGrid:
    soft = [
        dataclasses.replace(
            n, articulation="soft", model=dataclasses.replace(grid.model_of(n), amplitude=0.3 * grid.model_of(n).amplitude)
        )
        for n in grid.notes
    ]
    return ModelGrid([*grid.notes, *soft])


def _scripted(source: ModelGrid, block: int, n: int = 19200) -> np.ndarray:
    e = Engine(source, sample_rate=SR, polyphony=3)
    e.note_on(60, 100, time_samples=0)
    e.note_on(64, 70, time_samples=1001, pitch_midi=64.3)
    e.control_change(64, 127, time_samples=2000)
    e.pitch_bend(3000, time_samples=3333)
    e.note_off(60, time_samples=5000)
    e.control_change(1, 30, time_samples=6100)
    e.set_articulation("soft", time_samples=6500)
    e.note_on(67, 90, time_samples=7001)
    e.note_on(72, 90, time_samples=8003)  # a fourth note: steals at polyphony 3
    e.control_change(11, 60, time_samples=9000)
    e.control_change(7, 90, time_samples=9500)
    e.control_change(64, 0, time_samples=12000)
    e.note_off(64, time_samples=15000)
    e.pitch_bend(-8192, time_samples=16000)
    out = np.zeros((2, n))
    for t in range(0, n, block):
        m = min(block, n - t)
        out[:, t : t + m] = e.process(m)
    return out


@pytest.fixture(scope="module")
def scripted_reference(grid: ModelGrid) -> tuple[ModelGrid, np.ndarray]:
    source = _two_articulations(grid)
    return source, _scripted(source, 4096)


@pytest.mark.parametrize("block", [1, 16, 64, 65, 128])
def test_block_size_invariance(scripted_reference: tuple[ModelGrid, np.ndarray], block: int) -> None:
    source, ref = scripted_reference
    assert np.max(np.abs(ref)) > 0.1
    np.testing.assert_allclose(_scripted(source, block), ref, atol=1e-9)


def test_process_into_a_preallocated_block_equals_process(grid: ModelGrid) -> None:
    a = Engine(grid, sample_rate=SR)
    b = Engine(grid, sample_rate=SR)
    for e in (a, b):
        e.note_on(60, 90, time_samples=10)
    out = np.zeros((2, 256))
    got = np.concatenate([b.process(out=out).copy() for _ in range(4)], axis=1)
    np.testing.assert_array_equal(got, a.process(1024))


def test_small_table_cache_evicts_and_compacts_without_changing_the_output(grid: ModelGrid) -> None:
    """Many distinct pitches through a cache too small for them: least recently used tables that no
    voice plays are dropped and the others moved; the output is that of an ample cache."""

    def play(cache_mb: float) -> np.ndarray:
        e = Engine(grid, sample_rate=SR, cache_mb=cache_mb)
        for i, p in enumerate(np.linspace(41.0, 80.0, 12)):
            t = i * 2400
            e.note_on(40 + i, 90, time_samples=t, pitch_midi=float(p))
            e.note_off(40 + i, time_samples=t + 4000)
        return e.process(12 * 2400 + 4800)

    np.testing.assert_array_equal(play(1.0), play(512.0))


# ---- agreement with the offline rendering at grid points ----------------------------------------------


@pytest.mark.parametrize("index", [1, 3])  # 60.05 MF, 40.05 FF
def test_grid_point_matches_offline_synthesis(grid: ModelGrid, index: int) -> None:
    """At a sampled pitch and dynamic the engine renders the analysed model itself.

    Compared with ``synthesize(model, phase="free")`` (phases regenerated from the same seed) over the
    1.8 s before the excerpt's edited fade-out. The partials alone agree to 5 % of their RMS and
    LMD < 0.05 (what remains is the control-rate re-interpolation and the log-domain interpolation
    between frames). With noise and the kept attack, the LMD stays below 1.5x the LMD between two
    noise realisations of the offline synthesis (the engine's noise is another realisation) and the
    level within 0.5 dB.
    """
    note = grid.notes[index]
    m = grid.model_of(note)
    sr = int(m.sample_rate)
    n = int(1.8 * sr)
    opts: dict[str, Any] = {
        "pitch_midi": note.pitch_midi,
        "dynamic": note.dynamic,
        "duration_s": 1.9,
        "sample_rate": sr,
        "tail_s": 0.0,
    }
    ref = synthesize(m, phase="free")[:, :n]
    noise_and_attack = synthesize(m, phase="free", harmonic=False)[:, :n]
    ref_h = ref - noise_and_attack  # the partials alone
    got_h = render_note(grid, noise=False, transient=False, **opts)[:, :n]
    assert rms(ref_h - got_h) / rms(ref_h) < 0.05
    assert lmd(ref_h, got_h, sample_rate=sr) < 0.05
    if index != 1:
        return
    got = render_note(grid, **opts)[:, :n]
    other_noise = synthesize(dataclasses.replace(m, noise_seed=m.noise_seed + 7), phase="free", harmonic=False)[:, :n]
    floor = lmd(ref, ref_h + other_noise, sample_rate=sr)
    assert lmd(ref, got, sample_rate=sr) < 1.5 * floor
    assert 20 * math.log10(rms(got) / rms(ref)) == pytest.approx(0.0, abs=0.5)


def test_fractional_pitch_known_answer(grid: ModelGrid) -> None:
    """A note at pitch 61.5 (between the sampled 60.05 and 83.05) has its fundamental at 61.5 +- 5 cents."""
    y = render_note(grid, pitch_midi=61.5, dynamic=0.5, duration_s=1.0, sample_rate=SR, tail_s=0)
    target = 440.0 * 2 ** ((61.5 - 69) / 12)
    f = peak_hz(y[0, int(0.2 * SR) : int(0.9 * SR)], SR, target)
    assert abs(1200 * math.log2(f / target)) < 5.0


# ---- continuity: where a layer-switching sampler jumps, the engine does not ---------------------------


def test_dynamic_sweep_across_the_layer_split_is_continuous(grid: ModelGrid) -> None:
    """CC1 moves the dynamic of a held note from 0.6 to 0.95 across the MF/FF split (velocity 107/108).

    The engine interpolates the two layers: its spectral envelope changes no faster than a steady
    note's does (beating, noise), and no sample step exceeds the steady note's. A layer-switching
    sampler swaps the recording at the split: a 10 dB envelope jump and a step of several times the
    steady maximum.
    """
    n = int(1.2 * SR)
    e = Engine(grid, sample_rate=SR)
    e.control_change(7, 127, time_samples=0)
    e.control_change(1, 76, time_samples=0)
    e.note_on(60, 100, time_samples=0, pitch_midi=60.05)
    for i in range(61):
        e.control_change(1, round(76 + 45 * i / 60), time_samples=int((0.2 + 0.6 * i / 60) * SR))
    swept = e.process(n)
    steady = render_note(grid, pitch_midi=60.05, dynamic=0.95, duration_s=1.2, sample_rate=SR, tail_s=0)[:, :n]
    sampler = grid.with_interpolation(False)
    mf = render_note(sampler, pitch_midi=60.05, dynamic=0.6, duration_s=1.2, sample_rate=SR, tail_s=0)[:, :n]
    ff = render_note(sampler, pitch_midi=60.05, dynamic=0.95, duration_s=1.2, sample_rate=SR, tail_s=0)[:, :n]
    switch = int(0.5 * SR)
    switched = np.concatenate([mf[:, :switch], ff[:, switch:]], axis=1)

    flux_swept, flux_steady, flux_switched = (max_flux_db(y, 0.2, 0.85) for y in (swept, steady, switched))
    assert flux_swept < 1.3 * flux_steady
    assert flux_switched > 3.0 * flux_swept
    step_steady = max_step(steady, 0.2, 0.85)
    assert max_step(swept, 0.2, 0.85) < 1.2 * step_steady
    assert max_step(switched, 0.2, 0.85) > 2.0 * step_steady
    # and the sweep does move the timbre: at its end the note is brighter than MF (the samples are
    # peak-normalised, so brightness, not level, tells the layers apart)
    env_swept, env_mf = band_envelope_db(swept), band_envelope_db(mf)
    assert env_swept[-6:, 90].mean() > env_mf[-6:, 90].mean() + 3.0


def test_a_note_switches_to_the_sampled_layers_seamlessly(grid: ModelGrid) -> None:
    """A note is evaluated once, at its own dynamic; when the dynamics controller moves, it is
    re-evaluated at the sampled layers and interpolated between them: at the same dynamic, the
    two agree to -60 dB."""

    def play(move: bool) -> np.ndarray:
        e = Engine(grid, sample_rate=SR, noise=False)
        e.note_on(61, 90, time_samples=0, pitch_midi=61.5)
        if move:
            e.control_change(1, 90, time_samples=int(0.4 * SR))  # the same dynamic, 90 / 127
        return e.process(SR)

    still, moved = play(False), play(True)
    assert rms(moved - still) < 1e-3 * rms(still)


def test_preloaded_sampled_layers_need_no_evaluation_at_note_on(grid: ModelGrid) -> None:
    """``dynamic_anchors="grid"`` (live playback): after ``preload`` a note-on evaluates nothing,
    and the notes sound as with one evaluation per note, also beyond the sampled dynamics."""

    def play(mode: str) -> tuple[np.ndarray, Engine]:
        e = Engine(grid, sample_rate=SR, noise=False, dynamic_anchors=mode)
        if mode == "grid":
            e.preload([60, 61])
        before = e.stats["tables"]
        e.note_on(60, 90, time_samples=0)
        e.note_on(61, 20, time_samples=0)  # below the lowest layer: quieter, the same timbre
        y = e.process(9600)
        e.stats["new_tables"] = e.stats["tables"] - before
        return y, e

    y_grid, e_grid = play("grid")
    y_auto, e_auto = play("auto")
    assert e_grid.stats["new_tables"] == 0 and e_auto.stats["new_tables"] == 2
    # the same spectra (the interpolation between layers and the source's own differ in detail:
    # partial frequencies a fraction of a cent apart, so the waveforms drift apart in phase)
    assert lmd(y_auto, y_grid, sample_rate=SR) < 0.05
    quiet = Engine(grid, sample_rate=SR, noise=False)
    quiet.note_on(61, 20, time_samples=0)
    loud = Engine(grid, sample_rate=SR, noise=False)
    loud.note_on(61, 55, time_samples=0)  # 55 / 127 = the lowest layer
    level_db = 20 * math.log10(rms(quiet.process(9600)) / rms(loud.process(9600)))
    assert level_db == pytest.approx(-24.0 * (55 - 20) / 127, abs=0.5)


def test_pitch_steps_across_a_zone_boundary_are_continuous(grid: ModelGrid) -> None:
    """Notes from 48 to 52 in quarter tones: the nearest-zone sampler's envelope jumps at 50.05
    (where the 40.05 sample hands over to the 60.05 one); the interpolating engine's does not."""

    def envelope(source: ModelGrid, p: float) -> np.ndarray:
        y = render_note(source, pitch_midi=p, dynamic=0.6, duration_s=0.45, sample_rate=SR, tail_s=0)
        return band_envelope_db(y[:, : int(0.45 * SR)])[:, 10:40].mean(axis=1)

    pitches = np.arange(48.0, 52.01, 0.5)
    steps = {}
    for name, source in (("engine", grid), ("sampler", grid.with_interpolation(False))):
        env = np.stack([envelope(source, p) for p in pitches])
        steps[name] = np.mean(np.abs(np.diff(env, axis=0)), axis=1)
    assert np.max(steps["engine"]) < 2.5
    assert np.max(steps["sampler"]) > 3.0 * np.max(steps["engine"])


def test_pitch_bend_sweep_is_continuous(grid: ModelGrid) -> None:
    e = Engine(grid, sample_rate=SR)
    e.note_on(60, 100, time_samples=0)
    for i in range(101):
        e.pitch_bend(round(8191 * i / 100), time_samples=int((0.2 + 0.5 * i / 100) * SR))
    y = e.process(int(1.0 * SR))
    steady = Engine(grid, sample_rate=SR)
    steady.note_on(60, 100, time_samples=0)
    ref = steady.process(int(1.0 * SR))
    assert max_step(y, 0.2, 0.75) < 1.2 * max_step(ref, 0.2, 0.75)
    assert max_flux_db(y, 0.2, 0.75) < 1.5 * max_flux_db(ref, 0.2, 0.75) + 1.0
    # +2 semitones at the end of the sweep
    target = 261.6256 * 2 ** (2 / 12)
    f = peak_hz(y[0, int(0.75 * SR) : int(0.95 * SR)], SR, target)
    assert abs(1200 * math.log2(f / target)) < 10.0


# ---- note-off, stealing, pedal, long notes -----------------------------------------------------------


def test_note_off_releases_without_a_click(grid: ModelGrid) -> None:
    off = int(0.4 * SR) + 17
    e = Engine(grid, sample_rate=SR)
    e.note_on(60, 110, time_samples=0)
    e.note_off(60, time_samples=off)
    y = e.process(int(1.5 * SR))
    before = float(np.max(np.abs(np.diff(y[:, off - 480 : off], axis=1))))
    after = float(np.max(np.abs(np.diff(y[:, off : off + 480], axis=1))))
    assert after <= 1.1 * before  # no step larger than the note's own
    # a natural release: about -60 dB within half a second, not an instant cut
    r0 = rms(y[:, off - 2400 : off])
    assert r0 > 0.02
    assert rms(y[:, off + 240 : off + 720]) > 0.05 * r0
    assert rms(y[:, off + int(0.5 * SR) : off + int(0.6 * SR)]) < 3e-3 * r0
    assert e.n_active_voices == 0


def test_voice_stealing_at_the_polyphony_limit(grid: ModelGrid) -> None:
    e = Engine(grid, sample_rate=SR, polyphony=2)
    e.note_on(40, 100, time_samples=0)
    e.note_on(60, 100, time_samples=100)
    e.note_off(40, time_samples=2000)  # released: the first to go
    e.note_on(83, 100, time_samples=4000)
    y = e.process(8000)
    assert [(k, r) for _, k, r in e.sounding_notes()] == [(60, False), (83, False)]
    e.note_on(72, 100, time_samples=8000)  # none released: the oldest held note (60) goes
    y = np.concatenate([y, e.process(8000)], axis=1)
    assert [k for _, k, _ in e.sounding_notes()] == [83, 72]
    assert e.n_active_voices == 2  # the stolen voices have faded out
    # the stolen voice fades out in about 12 ms, without a click (noise off: the voices then add
    # exactly, and the difference of two renderings is the stolen voice alone)
    def render(steal: bool) -> np.ndarray:
        e = Engine(grid, sample_rate=SR, polyphony=2 if steal else 8, noise=False)
        if steal:
            e.note_on(40, 100, time_samples=0)
        e.note_on(60, 100, time_samples=100)
        e.note_on(83, 100, time_samples=4000)
        return e.process(6000)

    stolen = render(True) - render(False)
    before = max_step(stolen, 3000 / SR, 4000 / SR)
    assert max_step(stolen, 4000 / SR, 5000 / SR) <= 1.1 * before
    assert np.max(np.abs(stolen[:, 4000 + int(0.015 * SR) :])) < 1e-3 * np.max(np.abs(stolen[:, 3000:4000]))


def test_sustain_pedal_holds_released_notes(grid: ModelGrid) -> None:
    def level_after(pedal: bool) -> tuple[float, float]:
        e = Engine(grid, sample_rate=SR)
        if pedal:
            e.control_change(64, 127, time_samples=0)
        e.note_on(60, 100, time_samples=0)
        e.note_off(60, time_samples=int(0.2 * SR))
        e.control_change(64, 0, time_samples=int(0.8 * SR))
        y = e.process(int(1.5 * SR))
        return rms(y[:, int(0.6 * SR) : int(0.75 * SR)]), rms(y[:, int(1.35 * SR) : int(1.5 * SR)])

    held, after_pedal = level_after(True)
    free, _ = level_after(False)
    assert held > 100 * free
    assert after_pedal < 1e-2 * held


def test_decaying_note_held_beyond_the_model_keeps_decaying(grid: ModelGrid) -> None:
    """The excerpt notes last 2 s and end with an edited fade: a held note ignores the fade and
    continues the natural decay."""
    y = render_note(grid, pitch_midi=60.05, dynamic=0.43, duration_s=4.0, sample_rate=SR, tail_s=0)
    w = int(0.1 * SR)
    levels = np.array([20 * math.log10(rms(y[:, i : i + w]) + 1e-12) for i in range(int(1.7 * SR), int(3.9 * SR), w)])
    steps = np.diff(levels)
    assert np.all(steps < 1.0) and np.all(steps > -2.0)  # no gap and no fade to silence at 2 s
    assert -25.0 < levels[-1] - levels[0] < -5.0  # still decaying, still audible


def test_sustained_note_held_beyond_the_model_loops(grid: ModelGrid) -> None:
    m = tone_model(duration_s=1.0, fade_s=0.1, noise=0.002)
    y = render_note(tone_grid(m), pitch_midi=57.0, dynamic=0.5, duration_s=3.5, sample_rate=SR, tail_s=0)
    w = int(0.1 * SR)
    levels = np.array([20 * math.log10(rms(y[:, i : i + w])) for i in range(int(0.3 * SR), int(3.4 * SR), w)])
    assert np.ptp(levels) < 1.0


def test_unknown_sustain_is_detected_from_the_envelope() -> None:
    decaying = tone_model(decay_db_s=-12.0, duration_s=1.5)
    y = render_note(tone_grid(decaying), pitch_midi=57.0, dynamic=0.5, duration_s=3.0, sample_rate=SR, tail_s=0)
    late = rms(y[:, int(2.6 * SR) : int(2.9 * SR)])
    early = rms(y[:, int(0.2 * SR) : int(0.5 * SR)])
    assert 20 * math.log10(late / early) == pytest.approx(-12.0 * 2.4, abs=4.0)


# ---- bad inputs ---------------------------------------------------------------------------------------


def test_bad_inputs_raise_parameter_error(grid: ModelGrid) -> None:
    e = Engine(grid, sample_rate=SR)
    with pytest.raises(ParameterError, match="range"):
        e.note_on(100, 90)
    with pytest.raises(ParameterError, match="range"):
        e.note_on(60, 90, pitch_midi=float("nan"))
    with pytest.raises(ParameterError, match="velocity"):
        e.note_on(60, 0)
    with pytest.raises(ParameterError, match="dynamic"):
        e.note_on(60, 90, dynamic=1.5)
    with pytest.raises(ParameterError, match="time_samples"):
        e.note_on(60, 90, time_samples=-1)
    with pytest.raises(ParameterError, match="articulation"):
        e.note_on(60, 90, articulation="pizzicato")
    with pytest.raises(ParameterError, match="bend"):
        e.pitch_bend(9000)
    with pytest.raises(ParameterError, match="out"):
        e.process(out=np.zeros((1, 64)))
    with pytest.raises(ParameterError, match="sample_rate"):
        Engine(grid, sample_rate=float("nan"))
    with pytest.raises(ParameterError):
        grid.evaluate(pitch_midi=float("nan"), dynamic=0.5)
    with pytest.raises(ParameterError):
        render_note(grid, pitch_midi=20.0, dynamic=0.5, duration_s=1.0)
    assert e.pending_events == 0


# ---- sources: the instrument protocol and its adapter ------------------------------------------------


class InstrumentLike:
    """Has the surface of ``calyx.hypercube.Instrument`` (notes with key ranges, an ``articulations``
    property, a positional ``evaluate``) but none of the ModelSource attributes."""

    def __init__(self, grid: ModelGrid) -> None:
        self._grid = grid
        self.name = "instrument-like"
        self.notes = [
            SimpleNamespace(pitch_midi=n.pitch_midi, key_lo=n.key_lo, key_hi=n.key_hi, dynamic=n.dynamic, variation=0)
            for n in grid.notes
        ]
        self.calls = 0

    @property
    def articulations(self) -> tuple[str, ...]:
        return ("sustain",)

    def evaluate(
        self, pitch_midi: float, dynamic: float, articulation: str | None = None, variation: float = 0, *, noise_seed: int = 0
    ) -> NoteModel:
        self.calls += 1
        return self._grid.evaluate(pitch_midi=pitch_midi, dynamic=dynamic, variation=int(variation))


def test_an_instrument_without_the_protocol_attributes_is_adapted(grid: ModelGrid) -> None:
    inst = InstrumentLike(grid)
    source = as_model_source(inst)
    assert source is not inst
    assert source.pitch_range_midi == pytest.approx((39.5, 83.55))
    assert source.dynamics == pytest.approx(grid.dynamics)
    assert source.articulations == ("sustain",) and source.n_variations == 1

    def play(src: object) -> np.ndarray:
        e = Engine(src, sample_rate=SR)
        e.note_on(61, 80, time_samples=0, pitch_midi=61.5)
        e.note_on(45, 110, time_samples=100)
        return e.process(9600)

    np.testing.assert_array_equal(play(inst), play(grid))
    assert inst.calls == 3  # the probe, then each note once, at its own dynamic
    with pytest.raises(ParameterError, match="evaluate"):
        as_model_source(object())


@pytest.fixture(scope="module")
def instrument_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The excerpt encoded into a ``.calyx`` file when this tree has the codec, else the excerpt
    folder itself (which the command line analyses on loading)."""
    import importlib

    try:
        hypercube = importlib.import_module("calyx.hypercube")
        importlib.import_module("calyx.instrument")
        encode_library, options = hypercube.encode_library, hypercube.EncodeOptions(method="pca", ranks=4)
    except (ImportError, AttributeError):
        return EXCERPT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inst = encode_library(load_library(EXCERPT), workers=1, options=options)  # explicit ranks: no search
    path = tmp_path_factory.mktemp("instrument") / "piano.calyx"
    inst.save(path)
    return path


def test_the_encoded_instrument_plays(instrument_file: Path) -> None:
    """End to end with :class:`calyx.hypercube.Instrument` read from its ``.calyx`` file."""
    if instrument_file.suffix != ".calyx":
        pytest.skip("the .calyx instrument codec is not available in this tree yet")
    from calyx.synth import load_source

    source = load_source(instrument_file)
    assert source.dynamics == pytest.approx((0.4331, 0.9252), abs=1e-3)
    y = render_note(source, pitch_midi=61.5, dynamic=0.6, duration_s=0.5, sample_rate=SR, tail_s=0.2)
    target = 440.0 * 2 ** ((61.5 - 69) / 12)
    assert abs(1200 * math.log2(peak_hz(y[0, int(0.1 * SR) : int(0.45 * SR)], SR, target) / target)) < 5.0


# ---- MIDI files, command line, live callback ------------------------------------------------------------


def _write_midi(path: Path) -> None:
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120), time=0))
    track.append(mido.Message("note_on", note=60, velocity=90, channel=0, time=0))
    track.append(mido.Message("note_on", note=36, velocity=90, channel=9, time=0))  # drums: ignored
    track.append(mido.Message("note_off", note=60, velocity=0, channel=0, time=240))  # 0.25 s
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(60), time=0))
    track.append(mido.Message("note_on", note=64, velocity=90, channel=1, time=0))
    track.append(mido.Message("note_on", note=100, velocity=90, channel=1, time=0))  # out of range
    track.append(mido.Message("note_off", note=64, velocity=0, channel=1, time=240))  # 0.5 s at 60 bpm
    mid.save(str(path))


def test_render_midi_follows_the_tempo_map(grid: ModelGrid, tmp_path: Path) -> None:
    midi = tmp_path / "song.mid"
    _write_midi(midi)
    with pytest.warns(UserWarning, match="outside the instrument's range"):
        y = render_midi(grid, midi, sample_rate=SR, tail_s=0.5)
    assert y.shape[0] == 2 and 0.75 * SR <= y.shape[1] <= 1.3 * SR
    e = Engine(grid, sample_rate=SR, gain_db=-12.0)  # render_midi's default headroom
    e.note_on(60, 90, time_samples=0)
    e.note_off(60, time_samples=int(0.25 * SR))
    e.note_on(64, 90, time_samples=int(0.25 * SR), channel=1)
    e.note_off(64, time_samples=int(0.75 * SR), channel=1)
    np.testing.assert_allclose(y, e.process(y.shape[1]), atol=1e-9)


def test_cli_note_and_render(instrument_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import soundfile as sf

    note = tmp_path / "note.wav"
    args = ["note", str(instrument_file), "--pitch", "61.5", "--dynamic", "0.42", "--duration", "0.5", "--tail", "0.5"]
    assert main([*args, "-o", str(note), "--sample-rate", "44100"]) == 0
    info = sf.info(str(note))
    assert info.samplerate == 44100 and info.channels == 2 and 0.5 <= info.duration <= 1.01
    assert main([*args, "-o", str(note)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err
    assert main([*args, "-o", str(note), "--force", "--json"]) == 0
    assert main(["note", str(instrument_file), "--pitch", "100", "-o", str(tmp_path / "x.wav")]) == 2
    midi = tmp_path / "song.mid"
    _write_midi(midi)
    out = tmp_path / "song.wav"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["render", str(instrument_file), str(midi), "-o", str(out)]) == 0
    assert sf.info(str(out)).samplerate == 48000
    assert main(["render", str(instrument_file), str(tmp_path / "missing.mid"), "-o", str(tmp_path / "m.wav")]) == 2
    assert main(["note", str(tmp_path / "missing.calyx"), "--pitch", "60", "-o", str(tmp_path / "y.wav")]) == 2


def test_cli_play_says_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    """No audio device and no MIDI port here: exit code 2 naming the missing part and how to list devices."""
    try:
        from calyx.synth._live import check_live

        check_live()
    except Exception:
        pass
    else:  # pragma: no cover - a machine with audio and MIDI
        pytest.skip("this machine has an audio output and a MIDI input")
    assert main(["play", str(EXCERPT)]) == 2
    err = capsys.readouterr().err
    assert ("audio" in err or "MIDI" in err) and ("--list-devices" in err or "pip install" in err or "PortAudio" in err)
    assert main(["play", "--list-devices"]) in (0, 2)


class FakeStream:
    """Stands in for ``sounddevice.OutputStream``: calls the callback for a few blocks on entry,
    feeding MIDI messages between blocks as a MIDI thread would."""

    def __init__(self, script: dict[int, list[object]], n_blocks: int, port: FakePort, **kwargs: object) -> None:
        self.kwargs = kwargs
        self.script = script
        self.n_blocks = n_blocks
        self.port = port
        self.blocks: list[np.ndarray] = []

    def __enter__(self) -> FakeStream:
        block = int(self.kwargs["blocksize"])  # type: ignore[call-overload]
        callback = self.kwargs["callback"]
        for i in range(self.n_blocks):
            for msg in self.script.get(i, []):
                assert self.port.callback is not None
                self.port.callback(msg)
            outdata = np.zeros((block, 2), dtype=np.float32)
            callback(outdata, block, None, None)  # type: ignore[operator]
            self.blocks.append(outdata.copy())
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class FakePort:
    callback: Callable[[object], None] | None = None


def test_live_callback_with_a_fake_stream(grid: ModelGrid) -> None:
    import mido

    block = 128
    script = {
        2: [mido.Message("note_on", note=60, velocity=100)],
        5: [mido.Message("control_change", control=64, value=127), mido.Message("note_off", note=60)],
        9: [mido.Message("note_on", note=120, velocity=100)],  # out of range: skipped, playback goes on
        12: [mido.Message("control_change", control=64, value=0)],
    }
    port = FakePort()
    streams: list[FakeStream] = []

    def factory(**kwargs: object) -> FakeStream:
        streams.append(FakeStream(script, 40, port, **kwargs))
        return streams[0]

    engine = Engine(grid, sample_rate=SR)
    player = run_live(engine, stream_factory=factory, midi_port=port, block=block, duration_s=0.0)
    assert isinstance(player, LivePlayer) and player.blocks == 40 and player.errors == 1
    assert port.callback is None
    live = np.concatenate(streams[0].blocks, axis=0).T
    # the same messages applied at the block starts, offline
    ref = Engine(grid, sample_rate=SR)
    ref.note_on(60, 100, time_samples=2 * block)
    ref.control_change(64, 127, time_samples=5 * block)
    ref.note_off(60, time_samples=5 * block)
    ref.control_change(64, 0, time_samples=12 * block)
    expected = ref.process(40 * block)
    np.testing.assert_allclose(live, expected, atol=1e-6)  # float32 output
    assert np.max(np.abs(live)) > 0.05
