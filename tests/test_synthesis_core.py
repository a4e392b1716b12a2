"""Known-answer tests for the shared synthesis core."""

from __future__ import annotations

import numpy as np
import pytest

from calyx.core.spectrum import stft
from calyx.core.synthesis import (
    band_edges_hz,
    fft_convolve,
    filtered_noise,
    istft,
    oscillator_bank,
    schedule,
    upsample_controls,
)
from calyx.errors import ParameterError

SR = 48000


def _peak_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size), n=8 * y.size))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1 : k + 2])
    delta = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + delta) * sr / (8 * y.size)


def test_oscillator_frequency_and_amplitude_known_answer() -> None:
    n = SR
    f = np.full((1, n), 1000.0)
    a = np.full((1, n), 0.25)
    y, _ = oscillator_bank(f, a, sample_rate=SR)
    cents = 1200 * np.log2(_peak_hz(y, SR) / 1000.0)
    assert abs(cents) < 0.5
    assert np.sqrt(np.mean(y**2)) == pytest.approx(0.25 / np.sqrt(2), rel=1e-3)


@pytest.mark.parametrize("block", [1, 16, 64, 65, 128, 4096])
def test_oscillator_block_invariance(block: int) -> None:
    rng = np.random.default_rng(0)
    n = 5000
    f = 200 + 3000 * rng.random((3, 1)) + np.linspace(0, 50, n)[None, :]
    a = rng.random((3, n))
    whole, _ = oscillator_bank(f, a, sample_rate=SR)
    parts = []
    phase = None
    for s in range(0, n, block):
        y, phase = oscillator_bank(f[:, s : s + block], a[:, s : s + block], sample_rate=SR, initial_phase=phase)
        parts.append(y)
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-9)


def test_oscillator_silences_partials_above_nyquist() -> None:
    f = np.full((1, 1000), SR * 0.6)
    y, _ = oscillator_bank(f, np.ones((1, 1000)), sample_rate=SR)
    assert np.max(np.abs(y)) == 0.0


def test_upsample_controls_hits_frames_and_interpolates() -> None:
    frames = np.array([[0.0, 1.0, 3.0]])
    y = upsample_controls(frames, hop_length=4, n_samples=12)
    np.testing.assert_allclose(y[0, [0, 4, 8, 11]], [0.0, 1.0, 3.0, 3.0])
    assert y[0, 2] == pytest.approx(0.5)


def test_istft_inverts_stft() -> None:
    x = np.random.default_rng(1).standard_normal(10000)
    for n_fft, hop in ((1024, 256), (512, 128)):
        y = istft(stft(x, n_fft=n_fft, hop_length=hop), n_fft=n_fft, hop_length=hop, n_samples=x.size)
        np.testing.assert_allclose(y, x, atol=1e-9)


def test_filtered_noise_band_levels_in_db() -> None:
    edges = band_edges_hz(n_bands=8, sample_rate=SR)
    gains = np.zeros((8, 50))
    gains[3] = 0.1
    gains[6] = 0.01
    y = filtered_noise(gains, band_edges=edges, hop_length=480, n_samples=SR, sample_rate=SR, seed=3)
    spec = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / SR)

    def band_rms(b: int) -> float:
        m = (freqs >= edges[b]) & (freqs < edges[b + 1])
        return float(np.sqrt(2 * spec[m].sum()) / y.size)

    assert 20 * np.log10(band_rms(3) / 0.1) == pytest.approx(0.0, abs=1.0)
    assert 20 * np.log10(band_rms(6) / 0.01) == pytest.approx(0.0, abs=1.0)
    assert 20 * np.log10(band_rms(0) / 0.1) < -40.0  # an empty band stays 40 dB down


def test_filtered_noise_is_deterministic_per_seed() -> None:
    edges = band_edges_hz(n_bands=4, sample_rate=SR)
    g = np.ones((4, 10)) * 0.1
    a = filtered_noise(g, band_edges=edges, hop_length=256, n_samples=3000, sample_rate=SR, seed=7)
    b = filtered_noise(g, band_edges=edges, hop_length=256, n_samples=3000, sample_rate=SR, seed=7)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ParameterError):
        filtered_noise(g[:3], band_edges=edges, hop_length=256, n_samples=3000, sample_rate=SR)


def test_fft_convolve_matches_direct() -> None:
    rng = np.random.default_rng(2)
    x, h = rng.standard_normal(3000), rng.standard_normal(300)
    np.testing.assert_allclose(fft_convolve(x, h), np.convolve(x, h), atol=1e-9)
    assert fft_convolve(x, h, mode="same_start").shape == x.shape


def test_schedule_subsample_delay() -> None:
    # a band-limited pulse delayed by 10.5 samples peaks between samples 10 and 11
    t = np.arange(-32, 33)
    pulse = np.sinc(t / 2.0) * np.hanning(t.size)
    out = np.zeros(200)
    schedule(out, pulse, start_s=(50.5 - 32) / SR, sample_rate=SR)
    ref = np.zeros(200)
    schedule(ref, pulse, start_s=(50 - 32) / SR, sample_rate=SR)
    assert int(np.argmax(ref)) == 50
    assert out[50] == pytest.approx(out[51], rel=1e-3)
    # integer placement is exact
    np.testing.assert_allclose(ref[18:83], pulse)
