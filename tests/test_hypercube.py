"""The spectral hypercube: time axis, alignment, the four factor models, quantisation, entropy
coding, interpolation, missing grid points, the fast renderer and encode round trips."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from calyx.analysis import synthesize
from calyx.core.synthesis import filtered_noise
from calyx.errors import ParameterError
from calyx.hypercube import (
    METHODS,
    EncodeOptions,
    GridIndex,
    TimeBase,
    encode_records,
    fit_factors,
    instrument_settings,
    record_from_model,
    render_model,
)
from calyx.hypercube._decode import model_from_values
from calyx.hypercube._entropy import decode_ints, encode_ints, entropy_bits, quantise, rice_bytes
from calyx.hypercube._render import _noise_fast, _partials_fast
from calyx.hypercube._timebase import fit_matrix, interpolation_matrix
from calyx.metrics import lmd

VECTORS = Path(__file__).resolve().parent / "data" / "calyx-vectors"


def _synthetic() -> ModuleType:
    name = "calyx_vectors_synthetic"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, VECTORS / "synthetic.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


SYN = _synthetic()


def _records(lib, models, settings):
    return [
        record_from_model(
            m, timebase=settings.timebase, n_channels=settings.n_channels, n_partials_max=settings.n_partials_max,
            n_noise_bands=settings.n_noise_bands, db_range=settings.db_range, nominal_pitch_midi=n.pitch_midi,
        )
        for m, n in zip(models, lib.notes, strict=True)
    ]


def _settings(lib):
    from calyx.analysis import AnalysisParams

    params = AnalysisParams(n_partials=SYN.N_PARTIALS, n_noise_bands=SYN.N_BANDS, noise_fmin_hz=50.0,
                            noise_n_fft=SYN.NOISE_N_FFT, hop_length=SYN.HOP, fmax_hz=SYN.FMAX_HZ)
    return instrument_settings(lib, params=params, options=EncodeOptions(points_per_octave=8.0, attack_s=0.05))


# --- time axis ------------------------------------------------------------------------------------


def test_timebase_is_dense_then_geometric() -> None:
    tb = TimeBase(step_s=0.01, attack_s=0.1, points_per_octave=4.0, duration_s=3.0)
    t = tb.times_s
    assert t[0] == 0.0 and t[-1] == pytest.approx(3.0)
    assert np.all(np.diff(t) > 0)
    np.testing.assert_allclose(np.diff(t[:10]), 0.01, atol=1e-12)
    ratios = t[1:-1][t[1:-1] > 0.2][1:] / t[1:-1][t[1:-1] > 0.2][:-1]
    np.testing.assert_allclose(ratios, 2 ** 0.25, rtol=1e-9)
    with pytest.raises(ParameterError):
        TimeBase(step_s=1e-9, attack_s=10.0, points_per_octave=4.0, duration_s=20.0)


def test_fit_matrix_reproduces_piecewise_linear_tracks() -> None:
    knots = np.array([0.0, 0.1, 0.3, 0.7, 1.5])
    frames = np.arange(0, 1.5, 0.005)
    v = np.array([[-3.0, 0.0, -10.0, -22.0, -40.0], [1.0, 2.0, 3.0, 4.0, 5.0]]).T  # (knots, tracks)
    x = interpolation_matrix(knots, frames) @ v
    p, supported = fit_matrix(knots, frames)
    assert supported.all()
    np.testing.assert_allclose(p @ x, v, atol=0.01)  # the light smoothing penalty biases by < 0.01 dB
    # a note shorter than the axis: knots beyond its end are missing
    p, supported = fit_matrix(knots, frames[frames < 0.5])
    assert supported.tolist() == [True, True, True, True, False]
    assert np.all(p[~supported] == 0)


# --- alignment ------------------------------------------------------------------------------------


def test_record_round_trip_recovers_the_model() -> None:
    lib, models = SYN.synthetic_library(pitches=(60.0, 67.0), velocities=((64, 127),))
    s = _settings(lib)
    recs = _records(lib, models, s)
    for rec, model, note in zip(recs, models, lib.notes, strict=True):
        assert rec.n_partials == model.n_partials
        assert rec.tuning_cents == pytest.approx(0.0, abs=1e-9)
        # partials above a note's highest are missing, not silent
        assert not rec.known[:, :, model.n_partials : s.n_partials_max].any()
        back = model_from_values(
            rec.values_db.astype(np.float64), times_s=s.timebase.times_s, gain_db=rec.gain_db, onset_s=rec.onset_s,
            f0_hz=model.f0_hz, inharmonicity=model.inharmonicity, n_partials=rec.n_partials,
            n_partials_max=s.n_partials_max, n_samples=note.n_samples, sample_rate=s.sample_rate,
            hop_length=s.hop_length, noise_fmin_hz=50.0, noise_n_fft=SYN.NOISE_N_FFT, db_range=s.db_range,
        )
        loud = model.amplitude > model.amplitude.max() * 1e-3
        loud[:, :, : 3] = False  # the attack ramp is shorter than the first knot spacing
        err = 20 * np.log10(back.amplitude[loud] / model.amplitude[loud])
        assert np.sqrt(np.mean(err**2)) < 0.5  # dB; envelopes are linear in dB, so nearly exact


# --- factor models --------------------------------------------------------------------------------


def _grid(p: int, d: int, v: int) -> GridIndex:
    pp, dd, vv = np.meshgrid(np.arange(p), np.arange(d), np.arange(v), indexing="ij")
    return GridIndex(pp.ravel(), dd.ravel(), vv.ravel(), (p, d, v))


def _low_rank_tensor(method: str, rng: np.random.Generator) -> tuple[np.ndarray, GridIndex, int | tuple[int, ...]]:
    p_n, d_n, t, c, f = 6, 2, 9, 2, 7
    grid = _grid(p_n, d_n, 1)
    n = p_n * d_n
    mean = rng.normal(-40.0, 5.0, (t, c, f))
    if method in ("pca", "nmf"):
        r = 3
        if method == "nmf":
            w, h = rng.uniform(0.2, 1.0, (n, r)), rng.uniform(0.0, 30.0, (r, t * c * f))
            x = (w @ h).reshape(n, t, c, f) - 100.0  # nonnegative once shifted by db_range
        else:
            scores = rng.normal(size=(n, r))
            scores -= scores.mean(axis=0)  # the note mean is the model's mean: centred scores
            x = mean[None] + (scores @ rng.normal(size=(r, t * c * f)) * 5).reshape(n, t, c, f)
        return x, grid, r
    if method == "tucker":
        ranks = (2, 2, 3, 4)
        core = rng.normal(size=ranks) * 5
        us = [np.linalg.qr(rng.normal(size=(dim, r)))[0] for dim, r in zip((p_n, d_n, t, c * f), ranks, strict=True)]
        us[0] = np.linalg.qr(us[0] - us[0].mean(axis=0))[0]  # zero mean over pitch: the note mean is the model's mean
        full = np.einsum("abcd,pa,lb,tc,fd->pltf", core, *us).reshape(p_n, d_n, t, c, f)
        x = full.reshape(n, t, c, f) + mean[None]
        return x, grid, ranks
    r = 3
    us = [rng.normal(size=(dim, r)) for dim in (p_n, d_n, t, c * f)]
    us[0] -= us[0].mean(axis=0)  # zero mean over pitch: the note mean is the model's mean
    full = np.einsum("pr,lr,tr,fr->pltf", *us).reshape(p_n, d_n, t, c, f) * 3
    return full.reshape(n, t, c, f) + mean[None], grid, r


@pytest.mark.parametrize("method", METHODS)
def test_a_matching_rank_reproduces_a_low_rank_tensor(method: str) -> None:
    rng = np.random.default_rng(3)
    x, grid, rank = _low_rank_tensor(method, rng)
    known = np.ones(x.shape, dtype=bool)
    fm = fit_factors(x, known, method=method, rank=rank, grid=grid, db_range=100.0, seed=0)
    err = np.sqrt(np.mean((fm.reconstruct() - x) ** 2))
    tol = {"pca": 1e-6, "tucker": 1e-6, "cp": 1e-2, "nmf": 0.3}[method]
    assert err < tol, f"{method}: rms error {err:.3g} dB"


@pytest.mark.parametrize("method", ["pca", "tucker"])
def test_missing_entries_do_not_steer_the_fit(method: str) -> None:
    rng = np.random.default_rng(5)
    x, grid, rank = _low_rank_tensor(method, rng)
    known = rng.uniform(size=x.shape) > 0.2
    poisoned = np.where(known, x, 500.0)  # what a missing entry holds must not matter
    fm = fit_factors(poisoned, known, method=method, rank=rank, grid=grid, db_range=100.0)
    err = np.sqrt(np.mean((fm.reconstruct() - x)[known] ** 2))
    assert err < 0.5, f"rms error on known entries {err:.3g} dB"
    assert np.abs(fm.reconstruct()[~known]).max() < 200  # and the holes are filled from the model


# --- quantisation and entropy coding ---------------------------------------------------------------


def test_quantisation_error_is_bounded_by_half_a_step() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)) * np.array([1, 10, 100, 0.1, 0, 3])
    q, steps = quantise(x, bits=10, axis=1)
    assert np.abs(q).max() <= 511
    back = q * steps.astype(np.float64)[None, :]
    assert np.all(np.abs(back - x) <= steps.astype(np.float64)[None, :] / 2 + 1e-9)


@pytest.mark.parametrize("coder", ["rice", "lzma"])
@pytest.mark.parametrize("lags", [(), (7,)])
def test_entropy_coders_round_trip(coder: str, lags: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    q = np.concatenate([np.round(rng.laplace(0, 20, 900)), [0, 32767, -32767], np.zeros(50)]).astype(np.int64)
    cid, lag, data = encode_ints(q, lags=lags, coder=coder)
    np.testing.assert_array_equal(decode_ints(cid, data, q.size, lag=lag), q)


def test_rice_is_near_the_order0_entropy_of_laplacian_integers() -> None:
    q = np.round(np.random.default_rng(2).laplace(0, 12, 50_000)).astype(np.int64)
    assert rice_bytes(q) <= 1.06 * entropy_bits(q) / 8
    assert rice_bytes(q) == len(encode_ints(q, coder="rice")[2])


def test_a_lag_shrinks_smooth_data() -> None:
    t = np.arange(200)
    q = np.round(np.outer(200 - t, np.linspace(1, 3, 16))).astype(np.int64).ravel()  # smooth along time
    _, lag, data = encode_ints(q, lags=(16,), coder="rice")
    assert lag == 16 and len(data) < rice_bytes(q) / 2.5


# --- renderer -------------------------------------------------------------------------------------


def test_fast_partials_equal_the_reference_synthesis() -> None:
    m = SYN.synthetic_model(57.0, (64, 127), n_samples=5000)
    ref = synthesize(m, noise=False, transient=False)
    np.testing.assert_allclose(_partials_fast(m), ref, atol=2e-6 * np.abs(ref).max())


def test_fast_noise_has_the_band_levels_of_filtered_noise() -> None:
    m = SYN.synthetic_model(57.0, (64, 127), n_samples=32000, channels=1)
    ref = filtered_noise(m.noise_gain[0], band_edges=m.noise_band_edges_hz, hop_length=m.hop_length,
                         n_samples=m.n_samples, sample_rate=m.sample_rate, n_fft=m.noise_n_fft)
    fast = _noise_fast(m)[0]

    def band_db(y: np.ndarray) -> np.ndarray:
        spec = np.abs(np.fft.rfft(y[: 16000])) ** 2
        freqs = np.fft.rfftfreq(16000, 1 / m.sample_rate)
        edges = m.noise_band_edges_hz
        return np.array([10 * np.log10(spec[(freqs >= lo) & (freqs < hi)].sum() + 1e-30) for lo, hi in itertools.pairwise(edges)])

    np.testing.assert_allclose(band_db(fast), band_db(ref), atol=2.0)
    assert lmd(synthesize(m), render_model(m), sample_rate=m.sample_rate) < 0.12


# --- instrument: interpolation, missing points, encode round trips -----------------------------------


@pytest.fixture(scope="module")
def holey() -> tuple[object, list[object], object]:
    lib, models = SYN.synthetic_library(missing=((64.0, (64, 127)),))
    s = _settings(lib)
    return lib, models, s


def test_missing_grid_point_is_masked_and_bridged(holey) -> None:
    lib, models, s = holey
    inst = encode_records(lib, _records(lib, models, s), settings=s, options=EncodeOptions(method="tucker", ranks=(5, 2, 8, 10)))
    art = inst.articulation("sustain")
    fm = inst._factor_model(art)
    present = fm.grid.present
    assert present.shape == (5, 2, 1) and present.sum() == 9 and not present[2, 1, 0]
    # the hole (64, loud) is evaluated from its neighbours in the same layer, 60 and 67: in between
    hole = inst.evaluate(64.0, (64 + 127) / 254, "sustain", n_samples=4000)
    lo = inst.evaluate(60.0, (64 + 127) / 254, "sustain", n_samples=4000)
    hi = inst.evaluate(67.0, (64 + 127) / 254, "sustain", n_samples=4000)
    k = min(hole.n_partials, lo.n_partials, hi.n_partials)
    a, b, c = (20 * np.log10(np.maximum(x.amplitude[:, :k, 40:], 1e-9)) for x in (lo, hole, hi))
    assert np.all(b >= np.minimum(a, c) - 1e-6) and np.all(b <= np.maximum(a, c) + 1e-6)


def test_interpolation_hits_grid_notes_and_lies_between_them(holey) -> None:
    lib, models, s = holey
    inst = encode_records(lib, _records(lib, models, s), settings=s, options=EncodeOptions(method="pca", ranks=4))
    i = 3
    n = inst.notes[i]
    at_grid = inst.evaluate(n.pitch_midi, n.dynamic, n.articulation, n.variation, n_samples=n.n_samples, noise_seed=i)
    grid_note = inst.note_model(i)
    np.testing.assert_array_equal(at_grid.amplitude, grid_note.amplitude)
    np.testing.assert_array_equal(at_grid.noise_gain, grid_note.noise_gain)
    assert at_grid.f0_hz == grid_note.f0_hz
    # between two pitches and between two dynamics: every level lies between the corners' levels
    corners = [inst.evaluate(p, d, n_samples=4000) for p in (60.0, 64.0) for d in (64 / 254, 191 / 254)]
    mid = inst.evaluate(62.0, 0.5, n_samples=4000)
    assert 440 * 2 ** ((62 - 69) / 12) == pytest.approx(mid.f0_hz, rel=1e-6)  # f0 follows the requested pitch
    k = min(c.n_partials for c in corners)
    stack = np.stack([20 * np.log10(np.maximum(c.amplitude[:, :k, 40:], 1e-9)) for c in corners])
    m = 20 * np.log10(np.maximum(mid.amplitude[:, :k, 40:], 1e-9))
    assert np.all(m >= stack.min(axis=0) - 1e-6) and np.all(m <= stack.max(axis=0) + 1e-6)
    with pytest.raises(ParameterError):
        inst.evaluate(60.0, 0.5, "legato")


@pytest.mark.parametrize("method", METHODS)
def test_encode_round_trip_within_tolerance(method: str) -> None:
    lib, models = SYN.synthetic_library(pitches=(55.0, 60.0, 64.0, 67.0), seconds=0.3)
    s = _settings(lib)
    all_ranks: dict[str, int | tuple[int, ...]] = {"pca": 4, "nmf": 5, "tucker": (4, 2, 10, 12), "cp": 8}
    ranks = all_ranks[method]
    inst = encode_records(lib, _records(lib, models, s), settings=s, options=EncodeOptions(method=method, ranks=ranks))
    errs = []
    for i, (m, note) in enumerate(zip(models, lib.notes, strict=True)):
        y = synthesize(m)
        errs.append(lmd(y, inst.decode_note(i), sample_rate=SYN.SAMPLE_RATE))
        assert inst.decode_note(i).shape == (note.channels, note.n_samples)
    assert np.mean(errs) < 0.2, f"{method}: mean LMD {np.mean(errs):.3f}"


def test_target_ratio_is_met() -> None:
    lib, models = SYN.synthetic_library(seconds=0.5)
    s = _settings(lib)
    from calyx.format.calyx_file import instrument_bytes, instrument_size

    inst = encode_records(lib, _records(lib, models, s), settings=s, options=EncodeOptions(target_ratio=75.0),
                          file_size=instrument_size)
    size = len(instrument_bytes(inst))
    assert lib.pcm16_bytes() / size >= 75.0  # the models of this library span about 65x..92x
    assert lib.pcm16_bytes() / size < 75.0 * 1.1


def test_max_lmd_picks_the_smallest_model_that_meets_it() -> None:
    lib, models = SYN.synthetic_library(pitches=(55.0, 62.0, 69.0), seconds=0.3)
    s = _settings(lib)
    recs = _records(lib, models, s)
    loose = encode_records(lib, recs, settings=s, options=EncodeOptions(max_lmd=0.5, n_eval_notes=3))
    tight = encode_records(lib, recs, settings=s, options=EncodeOptions(max_lmd=0.1, n_eval_notes=3))
    size = {name: int(np.prod(list(inst.ranks("sustain").values()))) for name, inst in (("loose", loose), ("tight", tight))}
    assert size["loose"] < size["tight"]
    refs = {i: n.load() for i, n in enumerate(lib.notes)}
    from calyx.hypercube import subset_lmd

    assert subset_lmd(tight, list(refs), refs) < subset_lmd(loose, list(refs), refs)


def test_options_are_checked() -> None:
    with pytest.raises(ParameterError):
        EncodeOptions(method="svd")
    with pytest.raises(ParameterError):
        EncodeOptions(target_ratio=100.0, max_lmd=0.2)
    with pytest.raises(ParameterError):
        EncodeOptions(target_ratio=0.5)
