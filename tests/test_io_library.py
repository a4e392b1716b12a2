"""The in-memory library model: validation, axes, selection, lazy picklable loaders."""

from __future__ import annotations

import io
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from calyx.errors import AudioFileError, ParameterError
from calyx.io import Library, NoteSample, OggVorbisSlice, PcmSlice, SoundFileSlice, StackedChannels


def make_note(path: Path, **overrides: object) -> NoteSample:
    fields: dict[str, object] = {
        "pitch_midi": 60.0,
        "key_lo": 60,
        "key_hi": 60,
        "velocity_lo": 0,
        "velocity_hi": 127,
        "dynamic": 0.5,
        "articulation": "default",
        "variation": 0,
        "sample_rate": 8000,
        "channels": 1,
        "n_samples": 100,
        "loop_start": None,
        "loop_end": None,
        "source": str(path),
        "loader": SoundFileSlice(str(path), 0, 100),
    }
    fields.update(overrides)
    return NoteSample(**fields)  # type: ignore[arg-type]


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "ramp.wav"
    sf.write(path, np.linspace(-0.5, 0.5, 200), 8000, subtype="FLOAT")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key_lo": 70}, "key range 70..60"),
        ({"velocity_hi": 128}, "velocity range 0..128"),
        ({"pitch_midi": float("nan")}, "pitch_midi must be finite"),
        ({"sample_rate": 0}, "must be positive"),
        ({"loop_start": 5}, "both loop_start and loop_end"),
        ({"loop_start": 50, "loop_end": 101}, "loop 50..101 not within 0..100"),
    ],
)
def test_note_sample_rejects_inconsistent_metadata(
    wav: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        make_note(wav, **change)


def test_load_checks_shape_against_metadata(wav: Path) -> None:
    note = make_note(wav, loader=SoundFileSlice(str(wav), 50, 150))
    np.testing.assert_allclose(note.load()[0], np.linspace(-0.5, 0.5, 200)[50:150])
    with pytest.raises(AudioFileError, match=r"decoded audio has shape \(1, 100\), expected \(2, 100\)"):
        replace(note, channels=2).load()
    with pytest.raises(AudioFileError, match=r"truncated: frames 150\.\.350"):
        SoundFileSlice(str(wav), 150, 350)()
    wav.unlink()
    with pytest.raises(AudioFileError, match="no such audio file"):
        note.load()


def test_axes_select_and_sizes(wav: Path) -> None:
    notes = [
        make_note(wav, pitch_midi=p, dynamic=d, articulation=a, variation=v)
        for p in (60.0, 62.5)
        for d in (0.25, 0.75)
        for a in ("legato", "default")
        for v in (0, 1)
    ]
    lib = Library(name="grid", notes=notes)
    axes = lib.axes()
    assert axes.pitches_midi == (60.0, 62.5) and axes.dynamics == (0.25, 0.75)
    assert axes.articulations == ("default", "legato") and axes.variations == (0, 1)
    assert len(lib.select(articulation="legato", dynamic=0.75)) == 4
    assert lib.total_duration_s() == pytest.approx(16 * 100 / 8000)
    assert lib.pcm16_bytes() == 16 * 100 * 2
    with pytest.raises(ParameterError, match=r"no articulation 'pizz'; available: \['default', 'legato'\]"):
        lib.select(articulation="pizz")
    with pytest.raises(ParameterError, match=r"no dynamic 0\.5"):
        lib.select(dynamic=0.5)
    with pytest.raises(ParameterError, match="no variation 3"):
        lib.select(variation=3)


def _load_in_worker(note: NoteSample) -> np.ndarray:
    return note.load()


def test_loaders_are_picklable_and_work_in_another_process(tmp_path: Path) -> None:
    raw = tmp_path / "raw.bin"
    points = np.array([0, 16384, -32768, 32767], dtype="<i2")
    raw.write_bytes(b"xx" + points.tobytes() + bytes([0, 128, 0, 255]))
    pcm = PcmSlice(str(raw), 2, 4)
    pcm24 = PcmSlice(str(raw), 2, 4, lsb_offset_bytes=10)
    np.testing.assert_array_equal(pcm()[0], points / 32768.0)
    np.testing.assert_array_equal(pcm24()[0], (points * 256.0 + np.array([0, 128, 0, 255])) / 2**23)
    stacked = StackedChannels((pcm, PcmSlice(str(raw), 2, 2)), 4)
    np.testing.assert_array_equal(stacked()[1], [0.0, 0.5, 0.0, 0.0])  # the short part is zero-padded

    buf = io.BytesIO()
    sf.write(buf, 0.5 * np.sin(np.arange(4000) * 0.05), 8000, format="OGG", subtype="VORBIS")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"0123" + buf.getvalue())
    ogg = OggVorbisSlice(str(blob), 4, len(buf.getvalue()), 100, 3000)
    assert ogg().shape == (1, 3000)

    note = make_note(raw, n_samples=4, loader=stacked, channels=2)
    assert pickle.loads(pickle.dumps(note)) == note
    with ProcessPoolExecutor(max_workers=1) as pool:
        np.testing.assert_array_equal(pool.submit(_load_in_worker, note).result(), note.load())

    with pytest.raises(
        AudioFileError, match=r"truncated: 16-bit sample data needs 20 bytes at offset 2, 12 available"
    ):
        PcmSlice(str(raw), 2, 10)()
    with pytest.raises(AudioFileError, match="cannot be decoded"):
        OggVorbisSlice(str(blob), 0, 100, 0, 10)()
