"""Streaming encode and decode of the event codec: windows, seams, bounded decoding, command line."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from calyx.cli.main import main
from calyx.core.audio import read_audio, write_audio
from calyx.errors import ParameterError
from calyx.events import EncoderSettings, load, save
from calyx.events.params import EVENT_PARAMS, EventList, default_params, default_room
from calyx.events.render import render
from calyx.events.stream import (
    boundary_lmd,
    decode_file,
    encode_file,
    plan_windows,
    render_blocks,
    spectral_subtract,
)

pytest.importorskip("torch")

P = {p.name: i for i, p in enumerate(EVENT_PARAMS)}
SR = 22050
#: Pursuit, pruning and quantisation only: the stream logic is under test, not the refinement.
FAST = EncoderSettings(use_refinement=False)


def _note(pitch_midi: float, level_db: float, duration_s: float) -> np.ndarray:
    row = default_params(1)[0]
    row[P["pitch_midi"]] = pitch_midi
    row[P["inharmonicity_log10"]] = -3.7
    row[P["level_db"]] = level_db
    row[P["tilt_db_per_octave"]] = -9.0
    row[P["t60_log10_s_100"] : P["t60_log10_s_6400"] + 1] = [0.6, 0.4, 0.1, -0.3]
    row[P["aftersound_db"]] = -20.0
    row[P["duration_s"]] = duration_s
    row[P["release_t60_log10_s"]] = -1.0
    row[P["noise_level_db"]] = level_db - 40.0
    return row


def _music(seed: int = 0, seconds: float = 8.0, duration_s: float = 1.5) -> EventList:
    """A note every 0.55 s and a two-note chord every third, notes held across window boundaries."""
    rng = np.random.default_rng(seed)
    times = np.arange(0.25, seconds - 0.4, 0.55) + rng.uniform(0.0, 0.05, len(np.arange(0.25, seconds - 0.4, 0.55)))
    rows = [_note(p, rng.uniform(-24.0, -18.0), duration_s) for p in rng.uniform(50.0, 76.0, times.size)]
    extra = rng.uniform(40.0, 80.0, times.size)[::3]
    times = np.concatenate([times, times[::3] + 0.001])
    rows += [_note(p, -22.0, duration_s) for p in extra]
    return EventList(times, np.array(rows), default_room(), SR, int(seconds * SR))


def _unmatched(a: EventList, b: EventList, *, ms: float = 5.0, cents: float = 10.0) -> list[tuple[float, float]]:
    """Events of ``a`` with no event of ``b`` within ``ms`` and ``cents``."""
    out = []
    for t, p in zip(a.times_s, a.pitch_midi, strict=True):
        near = (np.abs(b.times_s - t) <= ms / 1000.0) & (np.abs(b.pitch_midi - p) * 100.0 <= cents)
        if not near.any():
            out.append((float(t), float(p)))
    return out


# --------------------------------------------------------------------------------------------------
# Windows


def test_windows_tile_the_recording_with_margins() -> None:
    n = int(31.3 * 44100)
    for offset in (0.0, 3.0):
        ws = plan_windows(n, sample_rate=44100, window_s=10.0, overlap_s=2.0, offset_s=offset)
        assert ws[0].core_start == 0 and ws[-1].core_stop == n
        assert all(a.core_stop == b.core_start for a, b in itertools.pairwise(ws))
        for w in ws:
            assert w.start == max(0, w.core_start - 44100) and w.stop == min(n, w.core_stop + 44100)
            assert w.stop - w.start <= 10 * 44100
            assert w.core_start % 441 == 0  # on the .cxe onset grid (0.5 ms = 22.05 samples)
    shifted = plan_windows(n, sample_rate=44100, window_s=10.0, overlap_s=2.0, offset_s=3.0)
    assert [w.core_start / 44100 for w in shifted[1:]] == [5.0, 13.0, 21.0, 29.0]
    with pytest.raises(ParameterError):
        plan_windows(n, sample_rate=44100, window_s=2.0, overlap_s=2.0)
    with pytest.raises(ParameterError):
        plan_windows(n, sample_rate=44100, window_s=10.0, overlap_s=2.0, offset_s=8.0)


# --------------------------------------------------------------------------------------------------
# Decoding


def _wet_events() -> EventList:
    ev = _music(seed=2, seconds=4.0)
    ev.room[:] = [-30.0, -0.4, -0.5, -0.6, -0.8]
    return ev


@pytest.mark.parametrize("block", [1000, 4097, 22050, 10**6])
def test_block_decoding_equals_the_whole_decode(block: int) -> None:
    ev = _wet_events()
    whole = render(ev)
    blocks = list(render_blocks(ev, block_samples=block))
    assert all(b.size == block for b in blocks[:-1])
    joined = np.concatenate(blocks)
    assert joined.shape == whole.shape
    assert np.max(np.abs(joined - whole)) < 1e-6 * max(1.0, float(np.max(np.abs(whole))))


def test_decode_file_writes_the_in_memory_decode_atomically(tmp_path: Path) -> None:
    ev = _wet_events()
    src = tmp_path / "in.cxe"
    save(ev, src)
    events = load(src)
    whole = render(events)
    wav = tmp_path / "out.wav"
    n = decode_file(src, wav, block_s=0.3, bit_depth=32)
    assert n == events.n_samples
    y, sr = read_audio(wav)
    assert sr == events.sample_rate
    assert np.max(np.abs(y[0] - whole)) < 1e-6  # float32 output of the same samples
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.cxe", "out.wav"]  # no temporary left
    with pytest.raises(FileExistsError):
        decode_file(src, wav)
    decode_file(src, wav, block_s=1.0, force=True)  # 16-bit
    y16, _ = read_audio(wav)
    assert np.max(np.abs(y16[0] - np.clip(whole, -1, 1))) <= 1.0 / 32768 + 1e-9
    with pytest.raises(ParameterError):
        decode_file(src, tmp_path / "out.mp3")


# --------------------------------------------------------------------------------------------------
# Encoding


def test_spectral_subtraction_removes_the_tails_energy_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SR)
    assert np.allclose(spectral_subtract(x, np.zeros(SR), sample_rate=SR), x, atol=1e-12)
    t = np.arange(SR) / SR
    low = 0.5 * np.sin(2 * np.pi * 220.0 * t)
    high = 0.3 * np.sin(2 * np.pi * 3520.0 * t + 1.0)
    # the tail with another phase than the recording's: only its energy is taken out
    out = spectral_subtract(low + high, 0.5 * np.sin(2 * np.pi * 220.0 * t + 2.0), sample_rate=SR)
    mid = slice(2048, SR - 2048)
    assert np.sqrt(np.mean((out[mid] - high[mid]) ** 2)) < 0.02 * np.sqrt(np.mean(high[mid] ** 2)) + 0.01


@pytest.fixture(scope="module")
def streamed(tmp_path_factory: pytest.TempPathFactory) -> tuple[EventList, Path, dict[float, EventList]]:
    tmp = tmp_path_factory.mktemp("stream")
    truth = _music(seed=0)
    wav = tmp / "music.wav"
    write_audio(wav, render(truth), sample_rate=SR, bit_depth=32)
    runs = {}
    for offset in (0.0, 1.1):
        runs[offset] = encode_file(wav, tmp / f"music{offset}.cxe", window_s=3.0, overlap_s=1.0, offset_s=offset,
                                   settings=FAST)
    return truth, wav, runs


def test_stream_encoding_does_not_depend_on_where_the_windows_fall(
    streamed: tuple[EventList, Path, dict[float, EventList]],
) -> None:
    truth, _, runs = streamed
    a, b = runs[0.0], runs[1.1]
    assert a.info["stream"]["boundaries_s"] == [2.0, 4.0, 6.0]
    assert b.info["stream"]["boundaries_s"] == [0.9, 2.9, 4.9, 6.9]
    assert _unmatched(a, b) == [] and _unmatched(b, a) == []
    # and both find every note, including those held across a boundary and the chords
    assert _unmatched(truth, a) == []
    assert len(a) <= len(truth) + 2


def test_stream_encoding_has_no_seam(streamed: tuple[EventList, Path, dict[float, EventList]]) -> None:
    _truth, wav, runs = streamed
    ev = runs[0.0]
    y, _ = read_audio(wav)
    seams = boundary_lmd(y[0], render(ev), sample_rate=SR, boundaries_s=ev.info["stream"]["boundaries_s"])
    assert seams["n_boundary"] == 3 and seams["n_elsewhere"] >= 3
    assert seams["boundary"] < 1.5 * seams["elsewhere"] + 0.05
    same = boundary_lmd(y[0], y[0], sample_rate=SR, boundaries_s=[2.0])
    assert same["boundary"] == 0.0 and same["elsewhere"] == 0.0


def test_stream_encoding_respects_its_limits(tmp_path: Path) -> None:
    truth = _music(seed=1, seconds=5.0)
    wav = tmp_path / "m.wav"
    write_audio(wav, render(truth), sample_rate=SR, bit_depth=32)
    few = encode_file(wav, tmp_path / "few.cxe", window_s=3.0, overlap_s=1.0, max_events_per_s=1.0, settings=FAST)
    assert len(few) <= 5
    small = encode_file(wav, tmp_path / "small.cxe", window_s=3.0, overlap_s=1.0, kbps=0.5, settings=FAST)
    assert 8 * (tmp_path / "small.cxe").stat().st_size / 5.0 / 1000 <= 0.5
    assert small.info["n_bytes"] == (tmp_path / "small.cxe").stat().st_size
    with pytest.raises(FileExistsError):
        encode_file(wav, tmp_path / "few.cxe", settings=FAST)


def test_stream_encoding_reads_multichannel_files(tmp_path: Path) -> None:
    truth = _music(seed=3, seconds=3.0)
    y = render(truth)
    wav = tmp_path / "stereo.wav"
    sf.write(str(wav), np.stack([y, y], axis=1), SR, subtype="FLOAT")
    ev = encode_file(wav, tmp_path / "s.cxe", window_s=2.0, overlap_s=0.5, settings=FAST)
    assert ev.n_samples == y.size and ev.sample_rate == SR
    assert _unmatched(truth, ev) == []


def test_cli_stream_encode_and_decode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = _music(seed=4, seconds=2.0, duration_s=0.4)
    wav = tmp_path / "in.wav"
    write_audio(wav, render(truth), sample_rate=SR, bit_depth=32)
    cxe = tmp_path / "out.cxe"
    assert main(["events", "stream-encode", str(wav), "-o", str(cxe), "--window-s", "1.5", "--overlap-s", "0.5",
                 "--max-events-per-s", "4", "--quiet", "--json"]) == 0
    assert '"n_windows": 2' in capsys.readouterr().out
    assert len(load(cxe)) <= 8
    out = tmp_path / "out.wav"
    assert main(["events", "stream-decode", str(cxe), "-o", str(out), "--block-s", "0.25", "--bit-depth", "32"]) == 0
    y, _ = read_audio(out)
    assert np.max(np.abs(y[0] - render(load(cxe)))) < 1e-6
    assert main(["events", "stream-decode", str(cxe), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["events", "stream-encode", str(wav), "-o", str(cxe), "--quiet"]) == 2


def test_a_core_left_unexplained_is_encoded_again_in_shorter_windows(tmp_path: Path) -> None:
    # five quiet notes, then an attack 42 dB louder in the same window: the encoder's stopping rule
    # (32 dB below the strongest onset) leaves the quiet ones out of that window
    times = np.array([0.3, 0.8, 1.3, 1.8, 2.3, 3.6, 4.5, 5.2])
    rows = [_note(p, -45.0, 0.3) for p in (60.0, 64.0, 67.0, 62.0, 65.0)]
    rows += [_note(55.0, -3.0, 0.3), _note(70.0, -25.0, 0.3), _note(52.0, -25.0, 0.3)]
    truth = EventList(times, np.array(rows), default_room(), SR, 6 * SR)
    wav = tmp_path / "loud.wav"
    write_audio(wav, render(truth), sample_rate=SR, bit_depth=32)
    plain = encode_file(wav, tmp_path / "plain.cxe", window_s=5.0, overlap_s=1.0, settings=FAST, split_gap=0.0)
    split = encode_file(wav, tmp_path / "split.cxe", window_s=5.0, overlap_s=1.0, settings=FAST)
    assert plain.info["stream"]["n_split"] == 0 and split.info["stream"]["n_split"] == 1
    assert len(_unmatched(truth, plain)) == 5
    missed = _unmatched(truth, split)
    assert len(missed) <= 1 and all(t > 2.0 for t, _ in missed)  # the core [0, 2] s is recovered
    assert split.info["stream"]["boundaries_s"] == [2.0, 4.0]
