"""Known-answer tests for the measuring stick (LMD, LSD, note/onset F1, PESQ, STOI)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calyx.core.spectrum import mel_filterbank, stft
from calyx.errors import ParameterError
from calyx.metrics import (
    NoteList,
    align_to_reference,
    events_per_note,
    lmd,
    lsd_db,
    merge_onsets,
    note_f1,
    onset_f1,
    pesq_wb,
    stoi,
)

SR = 44100


def tone(f_hz: float, dur_s: float = 1.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(dur_s * sr)) / sr
    return amp * np.sin(2 * np.pi * f_hz * t)


def lmd_librosa(ref: np.ndarray, test: np.ndarray, sr: int) -> float:
    """Independent implementation of the LMD definition with librosa."""
    librosa = pytest.importorskip("librosa")
    out = []
    for n_fft, n_mels in ((2048, 128), (512, 64)):
        fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
        kw = dict(n_fft=n_fft, hop_length=n_fft // 4, center=True, pad_mode="constant", window="hann")
        mr = fb @ np.abs(librosa.stft(ref, **kw))
        mt = fb @ np.abs(librosa.stft(test, **kw))
        out.append(np.mean(np.abs(np.log10(np.maximum(mr, 1e-5)) - np.log10(np.maximum(mt, 1e-5)))))
    return float(np.mean(out))


def test_stft_matches_librosa(rng: np.random.Generator) -> None:
    librosa = pytest.importorskip("librosa")
    x = rng.standard_normal(5000)
    for n_fft, hop in ((2048, 512), (512, 128), (256, 100)):
        ours = stft(x, n_fft=n_fft, hop_length=hop)
        theirs = librosa.stft(x, n_fft=n_fft, hop_length=hop, center=True, pad_mode="constant")
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("sr", "n_fft", "n_mels"), [(44100, 2048, 128), (16000, 512, 64), (48000, 512, 64)])
def test_mel_filterbank_matches_librosa(sr: int, n_fft: int, n_mels: int) -> None:
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(sample_rate=sr, n_fft=n_fft, n_mels=n_mels)
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)


def test_identical_signals_give_zero(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, SR // 2)) * 0.1
    assert lmd(x, x, sample_rate=SR) == 0.0
    assert lsd_db(x, x, sample_rate=SR) == 0.0


def test_known_gain_gives_known_distances(rng: np.random.Generator) -> None:
    # White noise keeps every mel bin far above the 1e-5 floor, so LMD = |log10 g| exactly,
    # and every STFT bin far above the LSD floor, so LSD = |20 log10 g| dB.
    x = rng.standard_normal(SR) * 0.1
    g = 0.5
    assert lmd(x, g * x, sample_rate=SR) == pytest.approx(np.log10(2.0), abs=1e-6)
    assert lsd_db(x, g * x, sample_rate=SR) == pytest.approx(20 * np.log10(2.0), abs=0.01)


def test_lmd_agrees_with_independent_implementation(rng: np.random.Generator) -> None:
    ref = tone(440.0) + 0.01 * rng.standard_normal(SR)
    test = tone(445.0, amp=0.4) + 0.02 * rng.standard_normal(SR)
    ours = lmd(ref, test, sample_rate=SR)
    theirs = lmd_librosa(ref, test, SR)
    assert ours == pytest.approx(theirs, rel=1e-4)


def test_semitone_shift_is_worse_than_small_detune() -> None:
    ref = tone(440.0)
    close = lmd(ref, tone(440.0 * 2 ** (5 / 1200)), sample_rate=SR)  # 5 cents
    semitone = lmd(ref, tone(440.0 * 2 ** (1 / 12)), sample_rate=SR)
    octave = lmd(ref, tone(880.0), sample_rate=SR)
    assert close < 0.05
    assert semitone > 3 * close
    assert octave > semitone * 0.9
    # symmetry of the absolute log difference
    assert lmd(tone(440.0 * 2 ** (1 / 12)), ref, sample_rate=SR) == pytest.approx(semitone, rel=1e-9)


def test_short_test_is_zero_padded_and_long_truncated(rng: np.random.Generator) -> None:
    ref = rng.standard_normal(SR // 2) * 0.1
    short = ref[: SR // 4]
    padded = np.concatenate([short, np.zeros(SR // 2 - SR // 4)])
    assert lmd(ref, short, sample_rate=SR) == pytest.approx(lmd(ref, padded, sample_rate=SR), abs=1e-12)
    longer = np.concatenate([ref, rng.standard_normal(1000)])
    assert lmd(ref, longer, sample_rate=SR) == pytest.approx(0.0, abs=1e-12)


def test_channels_are_averaged(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, SR // 2)) * 0.1
    y = x.copy()
    y[1] *= 0.5
    assert lmd(x, y, sample_rate=SR) == pytest.approx(np.log10(2.0) / 2, abs=1e-6)
    # a mono test is compared against every channel of a stereo reference
    r, t = align_to_reference(x, x[0])
    assert t.shape == r.shape


def test_test_at_another_rate_is_resampled() -> None:
    ref = tone(440.0, sr=44100)
    test48 = tone(440.0, sr=48000)
    d = lmd(ref, test48, sample_rate=44100, test_sample_rate=48000)
    assert d < 0.05
    assert d < lmd(ref, test48, sample_rate=44100) / 3  # unresampled it is pitched wrong


def test_lsd_ignores_frames_far_below_the_loudest() -> None:
    ref = np.concatenate([tone(440.0, 0.5), np.zeros(SR // 2)])
    test = ref.copy()
    test[SR // 2 + 4096 :] = 1e-3 * np.random.default_rng(0).standard_normal(SR // 2 - 4096)
    # the silent reference frames fall outside the 60 dB window, so noise there is not counted
    assert lsd_db(ref, test, sample_rate=SR) == pytest.approx(0.0, abs=0.5)
    assert lmd(ref, test, sample_rate=SR) > 0.1  # while LMD does see it


@pytest.mark.parametrize(
    "bad",
    [np.zeros(0), np.zeros((2, 2, 10)), np.array([0.0, np.nan, 0.0] * 1000)],
)
def test_bad_inputs_raise_parameter_error(bad: np.ndarray) -> None:
    with pytest.raises(ParameterError):
        lmd(bad, np.zeros(3000), sample_rate=SR)


def test_channel_mismatch_is_an_error(rng: np.random.Generator) -> None:
    with pytest.raises(ParameterError, match="channel"):
        lmd(rng.standard_normal(3000), rng.standard_normal((2, 3000)), sample_rate=SR)


def test_note_f1_tolerances() -> None:
    ref = NoteList.from_rows([(0.0, 0.5, 60), (0.5, 1.0, 64), (1.0, 1.5, 67)])
    assert note_f1(ref, ref)["f1"] == pytest.approx(1.0)
    within = NoteList.from_rows([(0.04, 0.3, 60.4), (0.5, 1.0, 64), (1.0, 1.5, 67)])
    assert note_f1(ref, within)["f1"] == pytest.approx(1.0)
    pitch_off = NoteList.from_rows([(0.0, 0.5, 60.6), (0.5, 1.0, 64), (1.0, 1.5, 67)])
    assert note_f1(ref, pitch_off)["f1"] == pytest.approx(2 / 3)
    late = NoteList.from_rows([(0.06, 0.5, 60), (0.5, 1.0, 64), (1.0, 1.5, 67)])
    assert note_f1(ref, late)["f1"] == pytest.approx(2 / 3)
    extra = NoteList.from_rows([(0.0, 0.5, 60), (0.5, 1.0, 64), (1.0, 1.5, 67), (1.2, 1.3, 72)])
    r = note_f1(ref, extra)
    assert r["recall"] == pytest.approx(1.0) and r["precision"] == pytest.approx(0.75)
    assert note_f1(ref, NoteList.from_rows([]))["f1"] == 0.0


def test_onset_f1_merges_within_30ms() -> None:
    assert list(merge_onsets([0.0, 0.01, 0.5, 0.52, 0.56])) == [0.0, 0.5, 0.56]
    ref = [0.0, 0.01, 0.5, 1.0]  # a chord spread over 10 ms is one onset
    est = [0.02, 0.52, 0.95, 1.5]
    r = onset_f1(ref, est)
    assert r["recall"] == pytest.approx(1.0)
    assert r["precision"] == pytest.approx(0.75)
    with pytest.raises(ParameterError):
        onset_f1([], est)


def test_events_per_note() -> None:
    assert events_per_note(30, 20) == 1.5
    with pytest.raises(ParameterError):
        events_per_note(3, 0)


def _speechlike(sr: int = 16000, dur_s: float = 3.0) -> np.ndarray:
    t = np.arange(int(sr * dur_s)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum((1.0 / k) * np.sin(k * phase) for k in range(1, 30))
    syllables = np.clip(np.sin(2 * np.pi * 1.0 * t), 0, None) ** 2
    return 0.3 * voiced * syllables


def test_speech_metrics_rank_degradation() -> None:
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    x = _speechlike()
    noisy = x + 0.05 * np.random.default_rng(0).standard_normal(x.size)
    assert stoi(x, x, sample_rate=16000) == pytest.approx(1.0, abs=1e-6)
    assert stoi(x, noisy, sample_rate=16000) < 0.95
    assert pesq_wb(x, x, sample_rate=16000) > 4.0
    assert pesq_wb(x, noisy, sample_rate=16000) < pesq_wb(x, x, sample_rate=16000) - 1.0
    with pytest.raises(ParameterError, match="utterance"):
        pesq_wb(np.zeros(16000), np.zeros(16000), sample_rate=16000)
    # a 44.1 kHz pair is resampled to 16 kHz first
    from scipy.signal import resample_poly

    x44 = resample_poly(x, 441, 160)
    assert stoi(x44, x44, sample_rate=44100) == pytest.approx(1.0, abs=1e-6)


def test_cli_eval_json(tmp_path, capsys, rng: np.random.Generator) -> None:
    import soundfile as sf

    from calyx.cli.main import main

    x = rng.standard_normal(SR // 2) * 0.1
    sf.write(tmp_path / "ref.wav", x, SR, subtype="FLOAT")
    sf.write(tmp_path / "test.wav", 0.5 * x, SR, subtype="FLOAT")
    assert main(["eval", str(tmp_path / "ref.wav"), str(tmp_path / "test.wav"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lmd"] == pytest.approx(np.log10(2.0), abs=1e-5)
    assert out["lsd_db"] == pytest.approx(6.02, abs=0.02)


def test_cli_eval_missing_file_is_a_clear_error(tmp_path, capsys) -> None:
    from calyx.cli.main import main

    assert main(["eval", str(tmp_path / "nope.wav"), str(tmp_path / "nope2.wav")]) == 2
    err = capsys.readouterr().err
    assert "nope.wav" in err and "no such audio file" in err


def test_lmd_of_an_opus_round_trip_of_a_real_piano_note_matches_librosa() -> None:
    """Acceptance: ``calyx eval`` on an Opus 12 kbps round trip of a real piano note is within 2 % of
    an independent (librosa-based) implementation of the definition."""
    import shutil
    from pathlib import Path

    import soundfile as sf

    from calyx.baselines import run_codec

    if shutil.which("opusenc") is None or shutil.which("opusdec") is None:
        pytest.fail("opus-tools missing: `make test` installs it (scripts/install-system-deps.sh)")
    path = Path(__file__).parent / "data" / "piano-excerpt" / "piano_mf_60.flac"
    y, sr = sf.read(path, always_2d=True)
    ref = y.T
    dec = run_codec("opus12", ref, sample_rate=sr).decoded
    ours = lmd(ref, dec, sample_rate=sr)
    theirs = float(np.mean([lmd_librosa(ref[c], dec[c], sr) for c in range(ref.shape[0])]))
    assert ours > 0.05  # a lossy round trip, not a copy
    assert ours == pytest.approx(theirs, rel=0.02)
