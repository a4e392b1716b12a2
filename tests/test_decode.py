"""Decoding to WAV + manifest, SFZ and SoundFont 2 (read back by our readers, rendered by FluidSynth),
the command line (encode, info, decode, analyze), and a real end-to-end run on the piano excerpt."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import mido
import numpy as np
import pytest

from calyx.cli.main import main
from calyx.core.audio import read_audio
from calyx.format.calyx_file import load
from calyx.hypercube._export import decode_to_folder, note_file_name
from calyx.io import read_folder, read_sf2, read_sfz
from calyx.io.sf2_write import SF2Preset, SF2Zone, write_sf2
from calyx.metrics import lmd

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "data" / "calyx-vectors"
EXCERPT = HERE / "data" / "piano-excerpt"


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


@pytest.fixture(scope="module")
def tiny():
    return load(VECTORS / "tiny.calyx")


def _key_of(n) -> tuple[float, int, int, str, int]:
    return (round(n.pitch_midi, 2), n.velocity_lo, n.velocity_hi, n.articulation, n.variation)


def test_wav_folder_reads_back_with_the_manifest(tiny, tmp_path: Path) -> None:
    res = decode_to_folder(tiny, tmp_path / "out", fmt="wav")
    assert {p.name for p in res.files} == {note_file_name(i, n) for i, n in enumerate(tiny.notes)} | {"manifest.csv"}
    lib = read_folder(tmp_path / "out")
    assert sorted(_key_of(n) for n in lib.notes) == sorted(_key_of(n) for n in tiny.notes)
    for i, n in enumerate(tiny.notes):
        y, sr = read_audio(tmp_path / "out" / note_file_name(i, n))
        assert sr == tiny.sample_rate and y.shape == (n.channels, n.n_samples)
        np.testing.assert_allclose(y, np.clip(tiny.decode_note(i), -1, 1), atol=1.5 / 32768)
    text = (tmp_path / "out" / "manifest.csv").read_text()
    rows = [r for r in csv.reader(text.splitlines()) if r]
    sources = [r[0] for r in rows if r[0].startswith("# source: ")]
    assert sources == [f"# source: {n.source}" for n in tiny.notes]  # every note names its source sample
    assert not list(tmp_path.glob(".*part*"))  # no staging folder left behind


def test_sfz_regions_groups_and_round_robins(tiny, tmp_path: Path) -> None:
    res = decode_to_folder(tiny, tmp_path / "sfz", fmt="sfz")
    sfz = next(p for p in res.files if p.suffix == ".sfz")
    text = sfz.read_text()
    assert "<group> group_label=sustain" in text and "<group> group_label=staccato" in text
    assert "seq_length=2 seq_position=1" in text and "seq_length=2 seq_position=2" in text
    assert "loop_mode=loop_continuous loop_start=1000 loop_end=2899" in text
    lib = read_sfz(sfz)
    assert sorted(_key_of(n) for n in lib.notes) == sorted(_key_of(n) for n in tiny.notes)
    by_key = {_key_of(n): n for n in lib.notes}
    for n in tiny.notes:
        m = by_key[_key_of(n)]
        assert (m.key_lo, m.key_hi, m.n_samples, m.channels) == (n.key_lo, n.key_hi, n.n_samples, n.channels)
        assert (m.loop_start, m.loop_end) == (n.loop_start, n.loop_end)
        assert m.pitch_midi == pytest.approx(n.pitch_midi, abs=0.005)


def test_sf2_reads_back_and_plays_in_fluidsynth(tiny, tmp_path: Path) -> None:
    res = decode_to_folder(tiny, tmp_path / "sf2", fmt="sf2")
    sf2 = next(p for p in res.files if p.suffix == ".sf2")
    sustain = read_sf2(sf2, preset="0:0")
    staccato = read_sf2(sf2, preset="0:1")
    assert sorted(_key_of(n)[:3] for n in sustain.notes) == sorted(_key_of(n)[:3] for n in tiny.notes if n.articulation == "sustain")
    assert [n.variation for n in staccato.notes] == [0]  # SoundFont has no round robin: variation 0 only
    loud = next(n for n in sustain.notes if n.velocity_lo == 64)
    assert loud.channels == 2 and loud.pitch_midi == pytest.approx(60.0)
    soft60 = next(n for n in sustain.notes if n.velocity_lo == 1 and n.pitch_midi == 60.0)
    assert (soft60.loop_start, soft60.loop_end) == (1000, 2900)
    wav = tmp_path / "sf2" / note_file_name(2, tiny.notes[2])
    np.testing.assert_allclose(loud.load(), read_audio(wav)[0], atol=1.5 / 32768)
    # FluidSynth plays the bank: a note on key 60 sounds with its strongest peaks on harmonics of 261.6 Hz
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track += [mido.Message("note_on", note=60, velocity=110, time=0), mido.Message("note_off", note=60, velocity=0, time=240)]
    mid.save(tmp_path / "one.mid")
    out = tmp_path / "fluid.wav"
    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.8", "-r", "16000", "-F", str(out), str(sf2), str(tmp_path / "one.mid")],
        check=True, capture_output=True, timeout=60,
    )
    y, sr = read_audio(out)
    assert np.sqrt(np.mean(y**2)) > 1e-4
    spec = np.abs(np.fft.rfft(y.mean(axis=0)[: sr // 4]))
    freqs = np.fft.rfftfreq(sr // 4, 1 / sr)
    band = (freqs > 100) & (freqs < 2000)
    peak_hz = freqs[band][np.argmax(spec[band])]
    harmonic = peak_hz / 261.63
    assert round(harmonic) >= 1 and abs(harmonic - round(harmonic)) < 0.03 * round(harmonic)


def test_sf2_writer_round_trip_of_a_mono_and_a_stereo_zone(tmp_path: Path) -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(4000) / 16000) * 0.5
    zones = [
        SF2Zone(audio=lambda: tone[None, :], name="mono A4", sample_rate=16000, pitch_midi=69.2, key_lo=60, key_hi=75,
                velocity_lo=0, velocity_hi=80, loop_start=100, loop_end=3000),
        SF2Zone(audio=lambda: np.stack([tone, -tone]), name="stereo A4", sample_rate=16000, pitch_midi=68.8, key_lo=60,
                key_hi=75, velocity_lo=81, velocity_hi=127, release_s=0.2, attenuation_db=3.0),
    ]
    path = tmp_path / "x.sf2"
    write_sf2(path, presets=[SF2Preset("Test", zones)], name="test")
    notes = sorted(read_sf2(path).notes, key=lambda n: n.velocity_lo)
    assert [(n.channels, n.velocity_lo, n.velocity_hi) for n in notes] == [(1, 0, 80), (2, 81, 127)]
    assert notes[0].pitch_midi == pytest.approx(69.2) and notes[1].pitch_midi == pytest.approx(68.8)
    assert (notes[0].loop_start, notes[0].loop_end) == (100, 3000) and notes[1].loop_start is None
    np.testing.assert_allclose(notes[1].load(), np.stack([tone, -tone]), atol=1 / 32768)
    with pytest.raises(FileExistsError):
        write_sf2(path, presets=[SF2Preset("Test", zones)], name="test")


def test_decode_refuses_to_overwrite_without_force(tiny, tmp_path: Path) -> None:
    decode_to_folder(tiny, tmp_path / "out", fmt="sfz")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    with pytest.raises(FileExistsError):
        decode_to_folder(tiny, tmp_path / "out", fmt="sfz")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == before
    decode_to_folder(tiny, tmp_path / "out", fmt="sfz", force=True)


def test_cli_info_and_decode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(VECTORS / "tiny.calyx"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "tucker" and data["n_notes"] == 5 and data["chunk_bytes"]["FACT"] > 0
    assert data["articulations"][0]["ranks"] == {"feature": 4, "layer": 2, "pitch": 2, "time": 3}
    out = tmp_path / "dec"
    assert main(["decode", str(VECTORS / "tiny.calyx"), "-o", str(out), "--format", "sf2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["decode", str(VECTORS / "tiny.calyx"), "-o", str(out), "--format", "sf2", "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["decode", str(VECTORS / "tiny.calyx"), "-o", str(out), "--format", "sf2", "--quiet", "--force"]) == 0
    bad = tmp_path / "bad.calyx"
    bad.write_bytes((VECTORS / "tiny.calyx").read_bytes()[:500])
    assert main(["info", str(bad)]) == 2
    assert "larger than the file" in capsys.readouterr().err


def test_real_excerpt_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Six real piano notes: encode (analysis included), inspect, decode, compare with the source."""
    out = tmp_path / "piano.calyx"
    assert main(["encode", str(EXCERPT), "-o", str(out), "--target-ratio", "40", "--workers", "1", "--quiet", "--json"]) == 0
    enc = json.loads(capsys.readouterr().out)
    assert enc["ratio_vs_pcm16"] >= 40
    assert main(["encode", str(EXCERPT), "-o", str(out), "--workers", "1", "--quiet"]) == 2  # exists
    capsys.readouterr()
    assert main(["decode", str(out), "-o", str(tmp_path / "wav"), "--quiet"]) == 0
    capsys.readouterr()
    source = read_folder(EXCERPT)
    decoded = read_folder(tmp_path / "wav")
    by_key = {_key_of(n): n for n in decoded.notes}
    scores = [lmd(n.load(), by_key[_key_of(n)].load(), sample_rate=n.sample_rate) for n in source.notes]
    assert np.mean(scores) < 0.2, scores  # the analysis alone scores about 0.09 on these notes
    # the analysis command writes resynthesised notes, the manifest and per-note LMD
    assert main(["analyze", str(EXCERPT), "-o", str(tmp_path / "an"), "--workers", "1", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["notes"] == 6 and summary["lmd_weighted"] < 0.15
    assert len(read_folder(tmp_path / "an").notes) == 6
    rows = list(csv.DictReader((tmp_path / "an" / "lmd.csv").read_text().splitlines()))
    assert len(rows) == 6 and all(float(r["lmd"]) < 0.3 for r in rows)
