"""Baseline codecs through their real tools: shapes, alignment, sizes, quality ordering, failures."""

from __future__ import annotations

import dataclasses
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import chirp

import calyx.baselines._codecs as codecs_module
from calyx.baselines import (
    CODECS,
    TOOL_PACKAGES,
    available_codecs,
    evaluate_codec_on_items,
    measure_lag,
    missing_tools_message,
    run_codec,
    sf3_roundtrip,
)
from calyx.baselines._codecs import _lag_is_trusted, _mp3_has_info_tag
from calyx.errors import AudioFileError, CalyxError, ParameterError, ToolMissingError
from calyx.metrics import lmd

ALL_CODECS = list(CODECS)


def needs(*tools: str) -> pytest.MarkDecorator:
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not installed (make system-deps)")


def codec_params(names: list[str]) -> list[object]:
    return [pytest.param(name, marks=needs(*CODECS[name].tools), id=name) for name in names]


CODEC_PARAMS = codec_params(ALL_CODECS)


def click_train(sample_rate: int, dur_s: float = 1.0, seed: int = 3) -> np.ndarray:
    """Short Hann pulses (~0.25 ms) at irregular intervals, so the correlation has one clear peak."""
    rng = np.random.default_rng(seed)
    n = int(dur_s * sample_rate)
    y = np.zeros(n)
    pos = np.cumsum(rng.integers(sample_rate // 16, sample_rate // 8, 32))
    pulse = np.hanning(max(4, sample_rate // 4000) + 2)[1:-1]
    for p in pos[pos < n - pulse.size]:
        y[p : p + pulse.size] += 0.8 * pulse
    return y


def log_chirp(sample_rate: int, dur_s: float = 1.0) -> np.ndarray:
    t = np.arange(int(dur_s * sample_rate)) / sample_rate
    return 0.4 * chirp(t, 60.0, dur_s, 3500.0, method="logarithmic")


def harmonic_tone(sample_rate: int, f0_hz: float, dur_s: float = 1.0) -> np.ndarray:
    t = np.arange(int(dur_s * sample_rate)) / sample_rate
    partials = sum(0.3 / h * np.sin(2 * np.pi * f0_hz * h * t + h) for h in range(1, 9))
    return np.exp(-2.0 * t) * np.minimum(1.0, t / 0.005) * partials


def stereo(y: np.ndarray) -> np.ndarray:
    return np.stack([y, 0.7 * y])


# --------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("name", CODEC_PARAMS)
@pytest.mark.parametrize(("sample_rate", "n_channels"), [(44100, 2), (48000, 2), (16000, 1)])
def test_click_train_round_trip_is_aligned(name: str, sample_rate: int, n_channels: int) -> None:
    y = click_train(sample_rate)
    y = stereo(y) if n_channels == 2 else y[None, :]
    r = run_codec(name, y, sample_rate=sample_rate)
    assert r.decoded.shape == y.shape
    assert r.decoded.dtype == np.float64
    assert r.sample_rate == sample_rate
    # The known delays (Opus pre-skip, LAME's 576-sample encoder delay) were removed: what is left is
    # a codec's filter group delay of a few samples, never a bulk delay.
    assert abs(r.lag_samples) <= sample_rate // 1000
    assert r.alignment_verified
    assert r.lag_correlation > 0.4
    lag, corr = measure_lag(y, r.decoded)
    assert lag == 0
    assert corr >= r.lag_correlation - 0.01


@pytest.mark.parametrize("name", codec_params([n for n in ALL_CODECS if n != "opus6"]))
@pytest.mark.parametrize("sample_rate", [44100, 16000])
def test_chirp_round_trip_is_aligned(name: str, sample_rate: int) -> None:
    # Opus at 6 kbit/s (SILK) does not keep a chirp's waveform (correlation ~0.3): its alignment is
    # checked on the click train above.
    y = stereo(log_chirp(sample_rate))
    r = run_codec(name, y, sample_rate=sample_rate)
    assert r.decoded.shape == y.shape
    assert r.alignment_verified
    assert abs(r.lag_samples) <= sample_rate // 1000
    assert measure_lag(y, r.decoded)[0] == 0


@needs("lame")
@pytest.mark.parametrize(("sample_rate", "has_tag"), [(8000, True), (16000, False), (44100, False)])
def test_mp3_encoder_delay_is_removed_with_and_without_lame_tag(
    sample_rate: int, has_tag: bool, tmp_path: Path
) -> None:
    # At 32 kbit/s LAME writes its tag (which lets `lame --decode` remove the encoder delay) only when
    # the frame is big enough: at 8 kHz but not at 16 kHz.
    y = click_train(sample_rate)[None, :]
    r = run_codec("mp3-32", y, sample_rate=sample_rate, workdir=tmp_path)
    assert r.lag_samples == 0
    assert measure_lag(y, r.decoded)[0] == 0
    wav, mp3 = tmp_path / "x.wav", tmp_path / "x.mp3"
    sf.write(wav, y.T, sample_rate, subtype="PCM_16")
    subprocess.run(["lame", "--quiet", "-b", "32", str(wav), str(mp3)], check=True, capture_output=True)
    assert _mp3_has_info_tag(mp3) is has_tag


@needs("lame")
def test_lag_search_corrects_a_bulk_delay_the_known_compensation_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pretend LAME's encoder delay were unknown: the 576 samples at 16 kHz it leaves (1587.6 at
    # 44.1 kHz) must then be found and removed by the cross-correlation check.
    codecs = dict(CODECS)
    codecs["mp3-32"] = dataclasses.replace(CODECS["mp3-32"], encoder_delay_samples=None)
    monkeypatch.setattr(codecs_module, "CODECS", codecs)
    y = stereo(click_train(44100))
    r = run_codec("mp3-32", y, sample_rate=44100)
    assert 1585 <= r.lag_samples <= 1590
    assert r.alignment_verified
    assert measure_lag(y, r.decoded)[0] == 0


def test_lag_correction_policy() -> None:
    sr = 44100  # 1 ms = 44 samples
    assert _lag_is_trusted(3, 0.35, sr)  # a few samples of group delay, even at low correlation
    assert not _lag_is_trusted(3, 0.2, sr)  # waveform too unlike the input to measure anything
    assert not _lag_is_trusted(150, 0.5, sr)  # a spurious peak a few ms away (low-rate codec, chirp)
    assert _lag_is_trusted(1588, 0.95, sr)  # an unmistakable bulk delay
    assert _lag_is_trusted(-44, 0.31, sr) and not _lag_is_trusted(-45, 0.69, sr)


def test_measure_lag_finds_known_shifts(rng: np.random.Generator) -> None:
    x = rng.standard_normal(8000)
    for shift in (0, 37, -250, 4000):
        z = np.roll(x, shift)
        lag, corr = measure_lag(x, z)
        assert lag == shift
        assert corr > 0.45  # the wrapped part does not overlap
    assert measure_lag(x, np.zeros_like(x)) == (0, 0.0)
    # a lag beyond the search range is not found
    assert measure_lag(x, np.roll(x, 500), max_lag_samples=100)[0] != 500


def test_measure_lag_resolves_period_ties_towards_zero() -> None:
    # A slowly decaying tone delayed by exactly one period correlates within 1 % with its undelayed
    # self: the peaks tie and the one nearest 0 wins. The same delay on a fast decay is unambiguous.
    sr, period = 48000, 48
    t = np.arange(sr // 2) / sr
    tone = np.sin(2 * np.pi * (sr / period) * t) + 0.5 * np.sin(2 * np.pi * 2 * (sr / period) * t + 1.0)

    def delay(y: np.ndarray) -> np.ndarray:
        return np.concatenate([np.zeros(period), y[:-period]])

    slow = tone * np.exp(-1.0 * t)
    lag, corr = measure_lag(slow, delay(slow))
    assert lag == 0 and corr > 0.99
    assert measure_lag(slow, delay(slow), peak_tolerance=0.0)[0] == period
    fast = tone * np.exp(-40.0 * t)
    assert measure_lag(fast, delay(fast)) == (period, pytest.approx(1.0, abs=1e-9))


@needs("flac")
def test_flac_is_bit_exact_for_16_bit_input(rng: np.random.Generator, tmp_path: Path) -> None:
    pcm = rng.integers(-32768, 32768, size=(2, 44100))
    pcm[:, :2] = [[-32768, 32767], [32767, -32768]]  # both extremes
    y = pcm / 32768.0
    r = run_codec("flac", y, sample_rate=44100, workdir=tmp_path)
    assert np.max(np.abs(r.decoded - y)) < 1.0 / 32768.0
    assert np.array_equal(r.decoded, y)
    assert list(tmp_path.iterdir()) == []  # temporary files removed


@needs("opusenc", "opusdec")
def test_opus_quality_increases_with_bitrate() -> None:
    # Measured with libopus 1.3.1: LMD 0.60 / 0.45 / 0.31 for 6 / 12 / 24 kbit/s on this signal
    # (a pure harmonic tone is hard on LMD: codec noise lands in otherwise empty mel bands).
    sr = 44100
    y = np.stack([harmonic_tone(sr, 220.0), harmonic_tone(sr, 330.0)])
    d = {
        name: lmd(y, run_codec(name, y, sample_rate=sr).decoded, sample_rate=sr)
        for name in ("opus6", "opus12", "opus24")
    }
    assert d["opus24"] < 0.85 * d["opus12"] < 0.85 * 0.85 * d["opus6"]
    assert 0.1 < d["opus24"] < 0.45
    assert d["opus6"] < 1.0


# Sizes of a 1 s signal, whole file: the payload (bitrate x 1 s) plus an Ogg Opus header of about
# 330-380 bytes with libopusenc 0.2 (--padding 0); MP3 is 30-34 frames of 104-144 bytes; the Vorbis
# setup header alone is ~3-4 kB at q -1.
SIZE_RANGES = {
    "opus6": (750 + 200, 750 + 600),
    "opus12": (1500 + 200, 1500 + 600),
    "opus24": (3000 + 200, 3000 + 600),
    "vorbis-q-1": (3000, 12000),
    "mp3-32": (4000, 4800),
    "flac": (1000, 2 * 44100 * 2),
}


@pytest.mark.parametrize("name", CODEC_PARAMS)
def test_compressed_sizes_are_plausible(name: str) -> None:
    sr = 44100
    y = stereo(harmonic_tone(sr, 220.0))
    r = run_codec(name, y, sample_rate=sr)
    lo, hi = SIZE_RANGES[name]
    assert lo <= r.n_bytes <= hi
    assert r.kbps == pytest.approx(8 * r.n_bytes / 1000.0)
    assert r.encode_s > 0 and r.decode_s > 0


@needs("opusenc", "opusdec")
def test_one_dimensional_input_gives_one_dimensional_output() -> None:
    y = click_train(16000)
    r = run_codec("opus24", y, sample_rate=16000)
    assert r.decoded.shape == y.shape
    assert r.decoded_sample_rate == 16000


@needs("lame")
def test_mp3_is_resampled_back_to_the_input_rate() -> None:
    y = stereo(harmonic_tone(44100, 220.0))
    r = run_codec("mp3-32", y, sample_rate=44100)
    assert r.decoded_sample_rate == 16000  # LAME's choice for 32 kbit/s stereo
    assert r.decoded.shape == y.shape
    assert lmd(y, r.decoded, sample_rate=44100) < 0.5


# --------------------------------------------------------------------------------------------------
# Bad input, missing and failing tools


def test_bad_input_is_rejected() -> None:
    y = np.zeros((2, 1000))
    with pytest.raises(ParameterError, match="unknown codec"):
        run_codec("aac", y, sample_rate=44100)
    with pytest.raises(ParameterError, match="1 or 2 channels"):
        run_codec("flac", np.zeros((3, 1000)), sample_rate=44100)
    with pytest.raises(ParameterError, match="beyond the 16-bit range"):
        run_codec("flac", y + 1.5, sample_rate=44100)
    with pytest.raises(ParameterError, match="sample_rate"):
        run_codec("flac", y, sample_rate=0)


def test_missing_tool_raises_tool_missing_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match=r"opusenc not found; install Debian package opus-tools"):
        run_codec("opus12", np.zeros((1, 1000)), sample_rate=16000)
    with pytest.raises(ToolMissingError, match=r"sf3convert not found; install Debian package sf3convert"):
        sf2 = tmp_path / "x.sf2"
        sf2.write_bytes(b"RIFF")
        sf3_roundtrip(sf2, tmp_path / "out")
    assert available_codecs() == dict.fromkeys(ALL_CODECS, False)
    msg = missing_tools_message()
    for package in ("opus-tools", "vorbis-tools", "lame", "flac", "sf3convert", "make system-deps"):
        assert package in msg


@needs(*TOOL_PACKAGES)
def test_missing_tools_message_is_empty_when_all_are_installed() -> None:
    assert all(available_codecs().values())
    assert missing_tools_message() == ""


def test_failing_tool_raises_calyx_error_with_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "opusenc"
    fake.write_text("#!/bin/sh\necho 'opusenc: cannot open input: broken pipe of doom' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "opusdec").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "opusdec").chmod(fake.stat().st_mode)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(CalyxError, match="broken pipe of doom") as info:
        run_codec("opus12", np.zeros((1, 1000)), sample_rate=16000, workdir=tmp_path / "work")
    assert not isinstance(info.value, ToolMissingError)
    assert "exit status 3" in str(info.value) and str(fake) in str(info.value)


# --------------------------------------------------------------------------------------------------
# Batches


@needs("flac")
def test_batch_figures_for_lossless_codec() -> None:
    sr = 16000
    items = [
        harmonic_tone(sr, 220.0, 0.5),
        stereo(harmonic_tone(sr, 330.0, 0.25)),
        harmonic_tone(sr, 440.0, 1.0),
    ]
    items = [np.round(y * 32768.0) / 32768.0 for y in items]  # 16-bit representable: FLAC is exact
    b = evaluate_codec_on_items("flac", iter(items), sample_rate=sr)
    assert [it.n_samples for it in b.items] == [8000, 4000, 16000]  # input order kept
    assert [it.n_channels for it in b.items] == [1, 2, 1]
    assert b.duration_s == pytest.approx(1.75)
    assert b.pcm16_bytes == 2 * (8000 + 2 * 4000 + 16000)
    singles = [run_codec("flac", y, sample_rate=sr).n_bytes for y in items]
    assert b.n_bytes == sum(singles)
    assert b.size_ratio == pytest.approx(b.pcm16_bytes / b.n_bytes)
    assert b.kbps == pytest.approx(8 * b.n_bytes / 1.75 / 1000)
    assert b.lmd == 0.0 and b.lsd_db == 0.0
    assert b.encode_x_realtime > 0 and b.decode_x_realtime > 0
    assert b.n_unverified == 0


@needs("opusenc", "opusdec")
def test_batch_is_duration_weighted_and_independent_of_workers() -> None:
    sr = 16000
    items = [harmonic_tone(sr, 220.0, 0.5), click_train(sr, 0.25), harmonic_tone(sr, 523.0, 1.0)]
    one = evaluate_codec_on_items("opus12", items, sample_rate=sr, max_workers=1)
    two = evaluate_codec_on_items("opus12", items, sample_rate=sr, max_workers=2)
    assert [it.lmd for it in one.items] == [it.lmd for it in two.items]
    assert one.n_bytes == two.n_bytes
    weights = np.array([0.5, 0.25, 1.0])
    assert one.lmd == pytest.approx(np.average([it.lmd for it in one.items], weights=weights))
    direct = lmd(items[1], run_codec("opus12", items[1], sample_rate=sr).decoded, sample_rate=sr)
    assert one.items[1].lmd == pytest.approx(direct)
    with pytest.raises(ParameterError, match="empty"):
        evaluate_codec_on_items("opus12", [], sample_rate=sr)


# --------------------------------------------------------------------------------------------------
# SF3


def _chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _list(kind: bytes, *chunks: bytes) -> bytes:
    body = kind + b"".join(chunks)
    return b"LIST" + struct.pack("<I", len(body)) + body


def _name20(s: str) -> bytes:
    return s.encode("ascii").ljust(20, b"\0")


def write_minimal_sf2(path: Path, *, sample_rate: int = 44100, n_samples: int = 44100) -> None:
    """One 16-bit mono sample, one instrument, one preset: the smallest valid SoundFont 2.01."""
    t = np.arange(n_samples) / sample_rate
    pcm = (0.5 * np.sin(2 * np.pi * 440.0 * t) * np.exp(-2.0 * t) * 32767).astype("<i2")
    smpl = pcm.tobytes() + b"\0" * (2 * 46)  # 46 zero samples must follow each sample
    shdr_fmt = "<20sIIIIIBbHH"
    pdta = _list(
        b"pdta",
        _chunk(
            b"phdr",
            struct.pack("<20sHHHIII", _name20("Tone"), 0, 0, 0, 0, 0, 0)
            + struct.pack("<20sHHHIII", _name20("EOP"), 0, 0, 1, 0, 0, 0),
        ),
        _chunk(b"pbag", struct.pack("<HHHH", 0, 0, 1, 0)),
        _chunk(b"pmod", b"\0" * 10),
        _chunk(b"pgen", struct.pack("<HHHH", 41, 0, 0, 0)),  # instrument 0
        _chunk(
            b"inst", struct.pack("<20sH", _name20("ToneInst"), 0) + struct.pack("<20sH", _name20("EOI"), 1)
        ),
        _chunk(b"ibag", struct.pack("<HHHH", 0, 0, 1, 0)),
        _chunk(b"imod", b"\0" * 10),
        _chunk(b"igen", struct.pack("<HHHH", 53, 0, 0, 0)),  # sampleID 0
        _chunk(
            b"shdr",
            struct.pack(
                shdr_fmt, _name20("tone"), 0, n_samples, 1000, n_samples - 1000, sample_rate, 69, 0, 0, 1
            )
            + struct.pack(shdr_fmt, _name20("EOS"), 0, 0, 0, 0, 0, 0, 0, 0, 0),
        ),
    )
    info = _list(
        b"INFO",
        _chunk(b"ifil", struct.pack("<HH", 2, 1)),
        _chunk(b"isng", b"EMU8000\0"),
        _chunk(b"INAM", b"Test\0\0"),
    )
    body = b"sfbk" + info + _list(b"sdta", _chunk(b"smpl", smpl)) + pdta
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@needs("sf3convert")
def test_sf3_conversion_compresses_the_samples(tmp_path: Path) -> None:
    sf2 = tmp_path / "tone.sf2"
    write_minimal_sf2(sf2)
    r = sf3_roundtrip(sf2, tmp_path / "out")
    assert r.sf3_path == tmp_path / "out" / "tone.sf3"
    data = r.sf3_path.read_bytes()
    assert r.n_bytes == len(data)
    assert data[:4] == b"RIFF" and data[8:12] == b"sfbk"
    ifil = data.index(b"ifil")
    assert struct.unpack("<H", data[ifil + 8 : ifil + 10])[0] == 3  # SoundFont 3
    assert b"OggS" in data  # the sample is Ogg Vorbis now
    assert r.sf2_n_bytes == sf2.stat().st_size
    assert 5 < r.file_ratio < 100  # 1 s of a decaying tone: ~88 kB -> a few kB
    with pytest.raises(FileExistsError):
        sf3_roundtrip(sf2, tmp_path / "out")
    assert sf3_roundtrip(sf2, tmp_path / "out", force=True).n_bytes == r.n_bytes


@needs("sf3convert")
def test_sf3_conversion_of_a_corrupt_file_raises(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"this is not a soundfont")
    with pytest.raises(CalyxError, match="sf3convert failed"):
        sf3_roundtrip(bad, tmp_path / "out")
    with pytest.raises(AudioFileError):
        sf3_roundtrip(tmp_path / "missing.sf2", tmp_path / "out")
