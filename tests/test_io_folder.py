"""Folder + manifest.csv import, and the load_library dispatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from calyx.errors import AudioFileError, ParameterError
from calyx.io import load_library, read_folder


def sine(pitch_midi: float, rate_hz: int, *, amplitude: float = 0.5, duration_s: float = 0.5) -> np.ndarray:
    t = np.arange(round(duration_s * rate_hz)) / rate_hz
    return amplitude * np.sin(2 * np.pi * 440.0 * 2 ** ((pitch_midi - 69) / 12) * t)


def write(path: Path, x: np.ndarray, rate_hz: int, subtype: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.T if x.ndim == 2 else x, rate_hz, subtype=subtype)


def peak_pitch_midi(x: np.ndarray, rate_hz: int) -> float:
    n_fft = 1 << (len(x) - 1).bit_length() + 2
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n_fft)) + 1e-300
    k = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    f_hz = (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate_hz / n_fft
    return 69 + 12 * np.log2(f_hz / 440)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "Harp"
    write(root / "u8.wav", sine(60, 22050), 22050, "PCM_U8")
    write(root / "s24.wav", sine(64.5, 48000), 48000, "PCM_24")
    write(root / "hi" / "k96.wav", sine(67, 96000), 96000, "PCM_16")
    write(root / "k96_rr2.flac", sine(67, 96000, amplitude=0.25), 96000, "PCM_16")
    write(root / "stereo.wav", np.stack([sine(72, 44100), sine(72, 44100, amplitude=0.2)]), 44100, "FLOAT")
    (root / "manifest.csv").write_text(
        "file,pitch,velocity_lo,velocity_hi,articulation,variation\n"
        "# a comment row\n"
        "u8.wav,C4,,,,\n"
        "s24.wav,64.5,0,63,,\n"
        "hi\\k96.wav,G4,64,127,pluck,0\n"
        "k96_rr2.flac,67,64,127,pluck,1\n"
        "\n"
        "stereo.wav,c5,64,127,pluck,\n"
    )
    return root


def test_manifest_rows_become_notes(folder: Path) -> None:
    lib = read_folder(folder)
    assert lib.name == "Harp" and len(lib) == 5
    axes = lib.axes()
    assert axes.pitches_midi == (60.0, 64.5, 67.0, 72.0)
    assert axes.articulations == ("default", "pluck")
    assert axes.variations == (0, 1)
    assert axes.dynamics == pytest.approx((63 / 254, 127 / 254, 191 / 254))
    u8 = next(n for n in lib.notes if "u8.wav" in n.source)
    assert (u8.velocity_lo, u8.velocity_hi, u8.key_lo, u8.key_hi, u8.articulation) == (
        0,
        127,
        60,
        60,
        "default",
    )
    s24 = next(n for n in lib.notes if "s24.wav" in n.source)
    assert (s24.sample_rate, s24.key_lo, s24.n_samples) == (48000, 64, 24000)  # 64.5 rounds to even
    rr = sorted((n.variation, n.sample_rate) for n in lib.notes if n.pitch_midi == 67.0)
    assert rr == [(0, 96000), (1, 96000)]
    assert lib.select(articulation="pluck", variation=1).notes[0].source.endswith("k96_rr2.flac]")
    assert lib.pcm16_bytes() == 2 * (11025 + 24000 + 48000 + 48000 + 2 * 22050)
    assert lib.total_duration_s() == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("name", "pitch", "rate_hz", "amplitude", "tolerance"),
    [
        ("u8.wav", 60, 22050, 0.5, 1 / 64),
        ("s24.wav", 64.5, 48000, 0.5, 1e-6),
        ("k96.wav", 67, 96000, 0.5, 1e-4),
    ],
)
def test_bit_depths_and_rates_load_with_float_scaling(
    folder: Path, name: str, pitch: float, rate_hz: int, amplitude: float, tolerance: float
) -> None:
    note = next(n for n in read_folder(folder).notes if n.source.endswith(f"{name}]"))
    audio = note.load()
    assert audio.dtype == np.float64 and audio.shape == (1, note.n_samples)
    expected = sine(pitch, rate_hz, amplitude=amplitude)
    assert np.max(np.abs(audio[0] - expected)) <= tolerance
    assert abs(100 * (peak_pitch_midi(audio[0], rate_hz) - note.pitch_midi)) < 1.0


def test_stereo_file_keeps_both_channels(folder: Path) -> None:
    note = next(n for n in read_folder(folder).notes if n.source.endswith("stereo.wav]"))
    audio = note.load()
    assert note.channels == 2 and audio.shape == (2, 22050)
    assert np.max(np.abs(audio[1])) == pytest.approx(0.2, abs=1e-4)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("u8.wav,C%4", r"manifest\.csv:2: pitch 'C%4' is not a MIDI number in 0..127 or a note name"),
        ("u8.wav,140", r"manifest\.csv:2: pitch '140' is not a MIDI number"),
        ("u8.wav,nan", r"manifest\.csv:2: pitch 'nan'"),
        ("u8.wav,60,90,10", r"manifest\.csv:2: velocity_lo 90 is above velocity_hi 10"),
        ("u8.wav,60,0,128", r"manifest\.csv:2: velocity_hi 128 is outside 0..127"),
        ("u8.wav,60,,,,x", r"manifest\.csv:2: variation 'x' is not an integer"),
        ("gone.wav,60", r"manifest\.csv:2: audio file 'gone.wav' not found"),
        ("u8.wav,60,,,,,extra", r"manifest\.csv:2: 7 cells, the header has 6 columns"),
    ],
)
def test_bad_rows_name_the_line_and_value(folder: Path, row: str, message: str) -> None:
    (folder / "manifest.csv").write_text(
        f"file,pitch,velocity_lo,velocity_hi,articulation,variation\n{row}\n"
    )
    with pytest.raises(AudioFileError, match=message):
        read_folder(folder)


def test_bad_header_duplicates_and_empty_manifest(folder: Path) -> None:
    manifest = folder / "manifest.csv"
    manifest.write_text("file,pitch,velocity\nu8.wav,60,1\n")
    with pytest.raises(AudioFileError, match=r"unknown columns \['velocity'\]"):
        read_folder(folder)
    manifest.write_text("file,velocity_lo\nu8.wav,1\n")
    with pytest.raises(AudioFileError, match=r"missing columns \['pitch'\]"):
        read_folder(folder)
    manifest.write_text("file,pitch\nu8.wav,60\ns24.wav,C4\n")
    with pytest.raises(AudioFileError, match=r"manifest\.csv:3: same pitch 60.0.*as line 2"):
        read_folder(folder)
    manifest.write_text("file,pitch\n")
    with pytest.raises(AudioFileError, match="no notes"):
        read_folder(folder)
    (folder / "junk.wav").write_bytes(b"not audio at all")
    manifest.write_text("file,pitch\njunk.wav,60\n")
    with pytest.raises(AudioFileError, match=r"manifest\.csv:2: .*junk\.wav cannot be read as audio"):
        read_folder(folder)


def test_load_library_dispatch(folder: Path, tmp_path: Path) -> None:
    assert load_library(folder).notes == read_folder(folder).notes
    assert len(load_library(folder / "manifest.csv")) == 5
    with pytest.raises(ParameterError, match=r"this folder has no manifest\.csv.*\.sf2, \.sf3.*\.sfz"):
        load_library(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ParameterError, match=r"notes\.txt: not an instrument library; use a SoundFont"):
        load_library(tmp_path / "notes.txt")
    with pytest.raises(ParameterError, match=r"does not exist"):
        load_library(tmp_path / "nothing.xyz")
    with pytest.raises(ParameterError, match="preset='x' applies to SoundFont"):
        load_library(folder, preset="x")
    with pytest.raises(AudioFileError, match="no such SoundFont file"):
        load_library(tmp_path / "absent.sf3")
    with pytest.raises(AudioFileError, match="no such SFZ file"):
        load_library(tmp_path / "absent.sfz")
