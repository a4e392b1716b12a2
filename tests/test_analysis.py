"""Known-answer tests for the per-note analysis/synthesis (calyx.analysis).

Synthetic notes with set partial amplitudes, frequencies, inharmonicity, decay rates and noise;
tolerances in musical units (cents, dB). Quality thresholds on resynthesis are tied to a floor
measured in the same test: the log-mel distance between two renderings of the model that differ
only in their noise seed (what a stochastic noise model cannot go below).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import warnings

import numpy as np
import pytest

from calyx.analysis import (
    AnalysisParams,
    AnalysisWarning,
    NoteModel,
    analyze_note,
    detect_onset,
    roundtrip,
    synthesize,
)
from calyx.analysis._analyze import harmonic_spectrum, noise_band_gains
from calyx.analysis._synthesize import render_harmonic
from calyx.core.spectrum import stft
from calyx.core.synthesis import band_edges_hz, filtered_noise
from calyx.errors import FormatError, ParameterError
from calyx.metrics import lmd

SR = 44100


def harmonic_note(
    *,
    f0_hz: float = 220.0,
    inharmonicity: float = 4e-4,
    n_partials: int = 12,
    sample_rate: int = SR,
    duration_s: float = 1.0,
    amplitudes: np.ndarray | None = None,
    decay_db_per_s: np.ndarray | None = None,
    noise_rms: float = 0.0,
    vibrato_cents: float = 0.0,
    vibrato_hz: float = 5.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y (1, n), partial frequencies (K,), partial amplitudes (K,)) of a stiff-string-like tone."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * sample_rate)
    t = np.arange(n) / sample_rate
    k = np.arange(1, n_partials + 1)
    amps = 0.5 / k if amplitudes is None else np.asarray(amplitudes, dtype=float)
    decay = np.zeros(n_partials) if decay_db_per_s is None else np.asarray(decay_db_per_s, dtype=float)
    freqs = k * f0_hz * np.sqrt(1.0 + inharmonicity * k * k)
    cents = vibrato_cents * np.sin(2 * np.pi * vibrato_hz * t)
    phase = 2 * np.pi * np.cumsum(freqs[:, None] * 2.0 ** (cents[None, :] / 1200.0), axis=1) / sample_rate
    phase += rng.uniform(0, 2 * np.pi, n_partials)[:, None]
    env = 10.0 ** (-decay[:, None] * t[None, :] / 20.0)
    y = np.sum(amps[:, None] * env * np.sin(phase), axis=0)
    if noise_rms:
        y = y + noise_rms * rng.standard_normal(n)
    return y[None, :], freqs, amps


def middle(model: NoteModel) -> slice:
    return slice(model.n_frames // 4, 3 * model.n_frames // 4)


def db(x: np.ndarray) -> np.ndarray:
    return 20.0 * np.log10(x)


def cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1200.0 * np.log2(a / b)


def seed_floor(model: NoteModel) -> float:
    """LMD between two renderings that differ only in the noise seed."""
    other = dataclasses.replace(model, noise_seed=model.noise_seed + 101)
    return lmd(synthesize(model), synthesize(other), sample_rate=model.sample_rate)


# ---- known answers -------------------------------------------------------------------------------


def test_partials_inharmonicity_known_answer() -> None:
    y, freqs, amps = harmonic_note(f0_hz=220.0, inharmonicity=4e-4, n_partials=12)
    model = analyze_note(y, sample_rate=SR, pitch_midi=57)
    assert abs(cents(np.array(model.f0_hz), np.array(220.0))) < 1.0
    assert model.inharmonicity == pytest.approx(4e-4, rel=0.10)
    mid = middle(model)
    est_amp = np.median(model.amplitude[0, :12, mid], axis=1)
    est_freq = np.median(model.partial_freq_hz()[:12, mid], axis=1)
    np.testing.assert_array_less(np.abs(db(est_amp / amps)), 0.5)
    np.testing.assert_array_less(np.abs(cents(est_freq, freqs)), 5.0)


def test_treble_stretch_and_bass_without_fundamental() -> None:
    # a treble note with strong stretch, and a bass note whose fundamental is 30 dB down
    y, freqs, _ = harmonic_note(f0_hz=2093.0, inharmonicity=5e-3, n_partials=8)
    model = analyze_note(y, sample_rate=SR, pitch_midi=96)
    assert model.inharmonicity == pytest.approx(5e-3, rel=0.10)
    est = np.median(model.partial_freq_hz()[: freqs.size, middle(model)], axis=1)
    np.testing.assert_array_less(np.abs(cents(est, freqs)), 5.0)
    amps = np.full(30, 0.1)
    amps[0] = 0.1 * 10 ** (-30 / 20)
    y, _, _ = harmonic_note(f0_hz=55.0, inharmonicity=2e-4, n_partials=30, amplitudes=amps)
    for prior in (33, None):
        model = analyze_note(y, sample_rate=SR, pitch_midi=prior)
        assert abs(cents(np.array(model.f0_hz), np.array(55.0))) < 2.0


@pytest.mark.parametrize(("prior", "shift"), [(45, r"\+1"), (69, "-1")])
def test_wrong_octave_prior_is_corrected_with_a_warning(prior: int, shift: str) -> None:
    y, _, _ = harmonic_note(f0_hz=220.0, inharmonicity=0.0, n_partials=12)
    with pytest.warns(AnalysisWarning, match=f"{shift} octave"):
        model = analyze_note(y, sample_rate=SR, pitch_midi=prior)
    assert abs(cents(np.array(model.f0_hz), np.array(220.0))) < 1.0


def test_prior_a_few_cents_off_and_no_prior() -> None:
    y, _, _ = harmonic_note(f0_hz=440.0 * 2 ** (40 / 1200), inharmonicity=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with_prior = analyze_note(y, sample_rate=SR, pitch_midi=69)
        without = analyze_note(y, sample_rate=SR)
    for m in (with_prior, without):
        assert abs(cents(np.array(m.f0_hz), np.array(440.0)) - 40.0) < 1.0


def test_pure_sine_and_a_prior_far_off() -> None:
    t = np.arange(SR) / SR
    model = analyze_note(0.5 * np.sin(2 * np.pi * 440.0 * t), sample_rate=SR, pitch_midi=69)
    assert abs(cents(np.array(model.f0_hz), np.array(440.0))) < 0.5
    # a label wrong by far more than the search range: found without it, with a warning
    y, _, _ = harmonic_note(f0_hz=1000.0, inharmonicity=0.0, n_partials=5)
    with pytest.warns(AnalysisWarning, match="does not fit its nominal pitch"):
        model = analyze_note(y, sample_rate=SR, pitch_midi=69)
    assert abs(cents(np.array(model.f0_hz), np.array(1000.0))) < 1.0


def test_decay_rates_recovered() -> None:
    decay = 5.0 + 3.0 * np.arange(10)  # dB per second
    y, _, _ = harmonic_note(n_partials=10, duration_s=2.0, decay_db_per_s=decay)
    model = analyze_note(y, sample_rate=SR, pitch_midi=57)
    t = model.frame_times_s()
    sel = (t > 0.3) & (t < 1.7)
    for k in range(10):
        slope = np.polyfit(t[sel], db(model.amplitude[0, k, sel]), 1)[0]
        assert -slope == pytest.approx(decay[k], abs=0.1)


def test_vibrato_f0_track() -> None:
    y, _, _ = harmonic_note(f0_hz=392.0, inharmonicity=0.0, n_partials=8, vibrato_cents=30.0, duration_s=1.5)
    model = analyze_note(y, sample_rate=SR, pitch_midi=67)
    t = model.frame_times_s()
    truth = 1200 * np.log2(392.0 / model.f0_hz) + 30.0 * np.sin(2 * np.pi * 5.0 * t)
    sel = (t > 0.1) & (t < 1.4)
    assert np.max(np.abs(model.f0_cents[sel] - truth[sel])) < 5.0


# ---- round trips ---------------------------------------------------------------------------------


def test_roundtrip_with_noise_reaches_the_noise_floor() -> None:
    y, _, _ = harmonic_note(duration_s=1.5, noise_rms=10 ** (-50 / 20))
    model, out = roundtrip(y, sample_rate=SR, pitch_midi=57)
    assert out.shape == y.shape
    # a well-calibrated noise model is as close to the recording as two of its own renderings are
    # to each other (about 0.07 here); the harmonic part adds almost nothing on top
    assert lmd(y, out, sample_rate=SR) < 1.2 * seed_floor(model)
    # and it is waveform-coherent: the partials cancel in the difference
    snr = 10 * np.log10(np.sum(y**2) / np.sum((y - synthesize(model, noise=False)) ** 2))
    assert snr > 25.0


def test_resynthesis_is_time_aligned() -> None:
    rng = np.random.default_rng(3)
    y, _, _ = harmonic_note(duration_s=0.8)
    y = np.concatenate([np.zeros((1, 5000)), y * np.exp(-np.arange(y.shape[1]) / SR * 3)], axis=1)
    y = y + 1e-4 * rng.standard_normal(y.shape)
    model, out = roundtrip(y, sample_rate=SR, pitch_midi=57, transient_s=0.0)
    assert abs(model.onset_sample - 5000) < SR * 0.001
    seg = slice(4000, 20000)
    lags = np.arange(-40, 41)
    xc = [np.dot(np.roll(out[0], -lag)[seg], y[0, seg]) for lag in lags]
    assert lags[int(np.argmax(xc))] == 0


def test_stereo_channels_keep_their_own_amplitudes() -> None:
    y, _, amps = harmonic_note(n_partials=10)
    right, _, _ = harmonic_note(n_partials=10, amplitudes=amps * np.linspace(1.0, 0.25, 10), seed=7)
    stereo = np.concatenate([y, right])
    model, out = roundtrip(stereo, sample_rate=SR, pitch_midi=57)
    assert model.n_channels == 2 and model.stereo == "channels"
    est = np.median(model.amplitude[:, :10, middle(model)], axis=2)
    np.testing.assert_array_less(np.abs(db(est[0] / amps)), 0.5)
    np.testing.assert_array_less(np.abs(db(est[1] / (amps * np.linspace(1.0, 0.25, 10)))), 0.5)
    for c in range(2):
        assert lmd(stereo[c], out[c], sample_rate=SR) < 0.1
    ms = analyze_note(stereo, sample_rate=SR, pitch_midi=57, stereo="mid_side")
    assert ms.stereo == "mid_side"
    assert lmd(stereo, synthesize(ms), sample_rate=SR) < 0.1


def test_unpitched_burst_falls_back_to_noise_with_a_warning() -> None:
    rng = np.random.default_rng(5)
    n = SR
    burst = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.15 * SR)) * 0.3
    y = np.concatenate([np.zeros(2000), burst])[None, :]
    with pytest.warns(AnalysisWarning, match="not harmonic"):
        model, out = roundtrip(y, sample_rate=SR)
    assert model.n_partials == 0 and not model.is_harmonic
    assert np.all(np.isfinite(out)) and out.shape == y.shape
    assert lmd(y, out, sample_rate=SR) < 1.2 * seed_floor(model)


def test_silent_note_is_an_error() -> None:
    with pytest.raises(ParameterError, match="silent"):
        analyze_note(np.zeros((2, 4000)), sample_rate=SR)
    with pytest.raises(ParameterError, match="silent"):
        analyze_note(np.full((1, 4000), 1e-9), sample_rate=SR)


def test_clipped_note_is_modelled_as_recorded_with_a_warning() -> None:
    y, _, _ = harmonic_note(n_partials=6)
    clipped = np.clip(4.0 * y, -1.0, 1.0)
    with pytest.warns(AnalysisWarning, match="clipped"):
        model, out = roundtrip(clipped, sample_rate=SR, pitch_midi=57)
    # intermodulation of the stretched partials pulls the fit a little
    assert abs(cents(np.array(model.f0_hz), np.array(220.0))) < 5.0
    # the distortion products are partials too: the clipped waveform itself is what comes back
    assert lmd(clipped, out, sample_rate=SR) < 0.1


def test_eight_bit_quantised_note() -> None:
    y, _freqs, amps = harmonic_note(n_partials=8)
    q = np.round(y * 127.0) / 127.0
    model, out = roundtrip(q, sample_rate=SR, pitch_midi=57)
    est = np.median(model.amplitude[0, :4, middle(model)], axis=1)
    np.testing.assert_array_less(np.abs(db(est / amps[:4])), 0.5)
    assert lmd(q, out, sample_rate=SR) < 1.2 * seed_floor(model)


def test_96khz_note() -> None:
    sr = 96000
    y, _freqs, amps = harmonic_note(sample_rate=sr, n_partials=12)
    model, out = roundtrip(y, sample_rate=sr, pitch_midi=57)
    assert model.hop_length == round(96000 * 256 / 44100)
    assert model.inharmonicity == pytest.approx(4e-4, rel=0.10)
    est = np.median(model.amplitude[0, :12, middle(model)], axis=1)
    np.testing.assert_array_less(np.abs(db(est / amps)), 0.5)
    assert lmd(y, out, sample_rate=sr) < 0.1


def test_very_short_note() -> None:
    y, _, _ = harmonic_note(duration_s=0.03)
    _model, out = roundtrip(y, sample_rate=SR, pitch_midi=57)
    assert out.shape == y.shape and np.all(np.isfinite(out))


def test_deterministic() -> None:
    y, _, _ = harmonic_note(noise_rms=1e-3)
    a = analyze_note(y, sample_rate=SR, pitch_midi=57)
    b = analyze_note(y, sample_rate=SR, pitch_midi=57)
    for name, arr in a.to_arrays()[0].items():
        np.testing.assert_array_equal(arr, b.to_arrays()[0][name])
    np.testing.assert_array_equal(synthesize(a), synthesize(b))
    for mode in ("onset", "free"):
        np.testing.assert_array_equal(synthesize(a, phase=mode), synthesize(a, phase=mode))


# ---- the model as plain arrays -------------------------------------------------------------------


def test_to_arrays_from_arrays_round_trip() -> None:
    y, _, _ = harmonic_note(noise_rms=1e-3)
    stereo = np.concatenate([y, 0.5 * y])
    model = analyze_note(stereo, sample_rate=SR, pitch_midi=57)
    arrays, meta = model.to_arrays()
    meta2 = json.loads(json.dumps(meta))
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in arrays.values())
    back = NoteModel.from_arrays(arrays, meta2)
    np.testing.assert_array_equal(synthesize(back), synthesize(model))
    with pytest.raises(FormatError, match="version"):
        NoteModel.from_arrays(arrays, {**meta2, "version": 999})
    with pytest.raises(FormatError, match="missing"):
        NoteModel.from_arrays({k: v for k, v in arrays.items() if k != "amplitude"}, meta2)
    bad = dict(arrays, f0_cents=arrays["f0_cents"][:-1])
    with pytest.raises(FormatError, match="f0_cents"):
        NoteModel.from_arrays(bad, meta2)
    # phases are optional: a model without them renders with regenerated phases
    no_phase = NoteModel.from_arrays({k: v for k, v in arrays.items() if k != "phase"}, meta2)
    assert no_phase.phase is None
    assert lmd(stereo, synthesize(no_phase), sample_rate=SR) < 0.15


def test_params_are_picklable_and_validated() -> None:
    p = AnalysisParams(n_partials=10, hop_length=128)
    assert pickle.loads(pickle.dumps(p)) == p
    with pytest.raises(ParameterError, match="unknown analysis parameter"):
        analyze_note(np.ones((1, 100)), sample_rate=SR, n_partial=3)
    with pytest.raises(ParameterError, match="stereo"):
        AnalysisParams(stereo="left")
    y, _, _ = harmonic_note()
    model = analyze_note(y, sample_rate=SR, pitch_midi=57, params=p, n_partials=6)
    assert model.n_partials == 6 and model.hop_length == 128


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ParameterError, match="NaN"):
        analyze_note(np.full((1, 1000), np.nan), sample_rate=SR)
    with pytest.raises(ParameterError, match="shape"):
        analyze_note(np.ones((1, 2, 3)), sample_rate=SR)
    with pytest.raises(ParameterError, match="sample_rate"):
        analyze_note(np.ones((1, 1000)), sample_rate=0)


# ---- building blocks -----------------------------------------------------------------------------


def test_detect_onset() -> None:
    rng = np.random.default_rng(1)
    y = 1e-4 * rng.standard_normal((2, 30000))
    y[:, 12345:] += np.sin(2 * np.pi * 440 * np.arange(30000 - 12345) / SR) * 0.5
    assert abs(detect_onset(y, sample_rate=SR) - 12345) <= 5
    assert detect_onset(np.zeros(100), sample_rate=SR) == 0


def test_harmonic_spectrum_matches_stft_of_rendered_partials() -> None:
    hop, n = 256, SR // 2
    n_frames = n // hop + 1
    freq = np.array([[30.0], [440.0], [3001.7]]) * np.ones((1, n_frames))
    amp = np.array([[0.5], [0.2], [0.1]]) * np.ones((1, n_frames))
    t = np.arange(n_frames) * hop / SR
    phase = np.mod(np.array([[0.3], [1.0], [2.0]]) + 2 * np.pi * freq * t, 2 * np.pi)
    y = render_harmonic(freq, amp, phase=phase, hop_length=hop, n_samples=n, sample_rate=SR)
    ref = np.sum(amp[:, :1] * np.sin(phase[:, :1] + 2 * np.pi * freq[:, :1] * np.arange(n) / SR), axis=0)
    np.testing.assert_allclose(y, ref, atol=1e-8)
    spec = stft(y[None], n_fft=1024, hop_length=hop)
    resid = spec - harmonic_spectrum(freq, amp[None], phase[None], n_fft=1024, sample_rate=SR)
    inner = (slice(None), slice(None), slice(8, -8))
    assert np.sum(np.abs(resid[inner]) ** 2) / np.sum(np.abs(spec[inner]) ** 2) < 10 ** (-45 / 10)


def test_noise_band_gains_invert_filtered_noise() -> None:
    edges = band_edges_hz(n_bands=16, sample_rate=SR, fmin_hz=20.0)
    gains = np.geomspace(0.01, 0.1, 16)[:, None] * np.ones((1, 200))
    hop, n_fft = 256, 1024
    noise = filtered_noise(gains, band_edges=edges, hop_length=hop, n_samples=199 * hop, sample_rate=SR, n_fft=n_fft)
    spec = stft(noise[None], n_fft=n_fft, hop_length=hop)
    est = noise_band_gains(np.abs(spec) ** 2, band_edges=edges, n_fft=n_fft, sample_rate=SR)
    measured = np.sqrt(np.mean(est[0, :, 10:-10] ** 2, axis=1))
    np.testing.assert_array_less(np.abs(db(measured / gains[:, 0])), 1.0)
