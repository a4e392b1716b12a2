"""Known-answer tests for the corpora helpers: per-part channels and programs, note lists, locators.

Nothing here downloads anything; MIDI files are built in the test with ``mido``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest

from calyx import datasets
from calyx.datasets import (
    NoteRow,
    assign_part_channels,
    channel_part,
    load_notes,
    midi_notes,
    notes_csv_text,
    part_channel,
    read_note_rows,
)
from calyx.errors import AudioFileError, ParameterError

TPB = 480


def track(events: list[tuple[int, Any]], name: str | None = None) -> Any:
    """A track from ``(absolute_tick, message)`` pairs in time order."""
    out = mido.MidiTrack()
    if name is not None:
        out.append(mido.MetaMessage("track_name", name=name, time=0))
    previous = 0
    for tick, msg in events:
        out.append(msg.copy(time=tick - previous))
        previous = tick
    out.append(mido.MetaMessage("end_of_track", time=0))
    return out


def note(tick_on: int, tick_off: int, pitch: int, velocity: int = 80) -> list[tuple[int, Any]]:
    return [
        (tick_on, mido.Message("note_on", channel=0, note=pitch, velocity=velocity)),
        (tick_off, mido.Message("note_off", channel=0, note=pitch, velocity=0)),
    ]


def chorale_like() -> Any:
    """Conductor track plus four parts, all on channel 0 with program 0, as music21 writes them.

    Soprano and alto share a unison (C5) at beat 0, so on one channel they would collide.
    """
    conductor = track([(0, mido.MetaMessage("set_tempo", tempo=500000))])
    parts = [
        sorted(note(0, 480, 72) + note(480, 960, 74), key=lambda e: e[0]),
        sorted(note(0, 960, 72, 70), key=lambda e: e[0]),
        note(0, 960, 64),
        sorted(note(0, 480, 48) + note(480, 960, 48), key=lambda e: e[0]),  # repeated key
    ]
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    mid.tracks.append(conductor)
    for i, events in enumerate(parts):
        head = [
            (0, mido.Message("pitchwheel", channel=0, pitch=0)),
            (0, mido.Message("program_change", channel=0, program=0)),
        ]
        mid.tracks.append(track(head + events, name=f"part{i}"))
    return mid


def roundtrip(mid: Any, tmp_path: Path, name: str) -> Any:
    path = tmp_path / name
    mid.save(str(path))
    return mido.MidiFile(str(path))


def test_part_channel_skips_percussion() -> None:
    assert [part_channel(i) for i in range(11)] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11]
    assert all(channel_part(part_channel(i)) == i for i in range(15))
    with pytest.raises(ParameterError):
        part_channel(15)
    with pytest.raises(ParameterError):
        channel_part(9)


@pytest.mark.parametrize("programs", [(0, 0, 0, 0), (40, 41, 42, 43)])
def test_assign_part_channels(tmp_path: Path, programs: tuple[int, ...]) -> None:
    original = chorale_like()
    out = roundtrip(assign_part_channels(original, programs), tmp_path, "out.mid")

    assert out.type == 1 and out.ticks_per_beat == TPB
    assert len(out.tracks) == 5
    assert [m.tempo for m in out.tracks[0] if m.type == "set_tempo"] == [500000]
    for part, trk in enumerate(out.tracks[1:]):
        channel_msgs = [m for m in trk if not m.is_meta]
        assert {m.channel for m in channel_msgs} == {part}
        changes = [m for m in channel_msgs if m.type == "program_change"]
        assert [m.program for m in changes] == [programs[part]]
        assert channel_msgs[0].type == "program_change"  # before any note
        original_ons = [m for m in original.tracks[part + 1] if m.type == "note_on" and m.velocity > 0]
        ons = [m for m in trk if m.type == "note_on" and m.velocity > 0]
        assert [(m.note, m.velocity) for m in ons] == [(m.note, m.velocity) for m in original_ons]

    assert out.length == pytest.approx(original.length, abs=1e-9)
    before = [(r.onset_s, r.offset_s, r.pitch_midi, r.velocity) for r in midi_notes(original)]
    after = midi_notes(out)
    assert sorted(before) == sorted((r.onset_s, r.offset_s, r.pitch_midi, r.velocity) for r in after)
    # The unison at beat 0 is two notes on two channels, each a full beat or longer.
    unison = [r for r in after if r.pitch_midi == 72]
    assert sorted((r.part, r.offset_s) for r in unison) == [(0, pytest.approx(0.5)), (1, pytest.approx(1.0))]


def test_assign_part_channels_rejects_wrong_program_count() -> None:
    with pytest.raises(ParameterError, match="4 parts"):
        assign_part_channels(chorale_like(), (0, 0, 0))
    with pytest.raises(ParameterError, match="0-127"):
        assign_part_channels(chorale_like(), (0, 0, 0, 128))


def test_overlapping_same_key_is_made_unambiguous() -> None:
    """A key struck again while sounding (two voices in one part) ends the first note there."""
    events = [
        (0, mido.Message("note_on", channel=0, note=60, velocity=90)),
        (480, mido.Message("note_on", channel=0, note=60, velocity=70)),
        (960, mido.Message("note_off", channel=0, note=60, velocity=0)),
        (1440, mido.Message("note_off", channel=0, note=60, velocity=0)),
        (1500, mido.Message("note_off", channel=0, note=61, velocity=0)),  # stray release
    ]
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    mid.tracks.append(track([(0, mido.MetaMessage("set_tempo", tempo=500000))]))
    mid.tracks.append(track(events))
    out = assign_part_channels(mid, (0,))
    keys = [(m.type, m.velocity) for m in out.tracks[1] if m.type in ("note_on", "note_off")]
    assert keys == [("note_on", 90), ("note_off", 0), ("note_on", 70), ("note_off", 0)]
    rows = midi_notes(out)
    assert [(r.onset_s, r.offset_s, r.velocity) for r in rows] == [(0.0, 0.5, 90), (0.5, 1.5, 70)]


def test_midi_notes_follow_tempo_changes() -> None:
    """Known onsets across two tempo changes: 120 bpm, then 60 bpm at beat 2, then 240 bpm at beat 4."""
    conductor = track(
        [
            (0, mido.MetaMessage("set_tempo", tempo=500000)),
            (2 * TPB, mido.MetaMessage("set_tempo", tempo=1000000)),
            (4 * TPB, mido.MetaMessage("set_tempo", tempo=250000)),
        ]
    )
    beats = [0, 1, 2, 3, 4, 5, 6]
    expected_onsets_s = [0.0, 0.5, 1.0, 2.0, 3.0, 3.25, 3.5]
    events = []
    for i, beat in enumerate(beats):
        events += note(beat * TPB, beat * TPB + TPB // 2, 60 + i, velocity=50 + i)
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    mid.tracks.append(conductor)
    mid.tracks.append(track(sorted(events, key=lambda e: e[0])))
    rows = midi_notes(assign_part_channels(mid, (0,)))
    assert len(rows) == len(beats)
    onsets = np.array([r.onset_s for r in rows])
    offsets = np.array([r.offset_s for r in rows])
    np.testing.assert_allclose(onsets, expected_onsets_s, atol=1e-3)
    expected_durations_s = [0.25, 0.25, 0.5, 0.5, 0.125, 0.125, 0.125]
    np.testing.assert_allclose(offsets - onsets, expected_durations_s, atol=1e-3)
    assert [r.pitch_midi for r in rows] == [60 + i for i in range(7)]
    assert [r.velocity for r in rows] == [50 + i for i in range(7)]


def test_notes_csv_roundtrip(tmp_path: Path) -> None:
    rows = [NoteRow(0.0, 0.5, 60, 90, 0), NoteRow(0.25, 1.125, 67, 64, 3)]
    path = tmp_path / "x.notes.csv"
    path.write_text(notes_csv_text(rows), encoding="utf-8")
    assert path.read_text().splitlines()[0] == "onset_s,offset_s,pitch_midi,velocity,part"
    assert read_note_rows(path) == rows
    notes = load_notes(path)
    assert len(notes) == 2
    np.testing.assert_array_equal(notes.onset_s, [0.0, 0.25])
    np.testing.assert_array_equal(notes.offset_s, [0.5, 1.125])
    np.testing.assert_array_equal(notes.pitch_midi, [60.0, 67.0])

    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(AudioFileError, match="not a valid note list"):
        load_notes(bad)
    with pytest.raises(AudioFileError, match="make data"):
        load_notes(tmp_path / "missing.csv")


def test_locators_say_run_make_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALYX_DATA", str(tmp_path / "nowhere"))
    assert datasets.data_root() == tmp_path / "nowhere"
    for locate in (
        datasets.chorales,
        datasets.speech_clip,
        datasets.speech_labels,
        datasets.quartet_movement,
    ):
        with pytest.raises(AudioFileError, match="run `make data`"):
            locate()


def test_locators_read_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALYX_DATA", str(tmp_path))
    files = {
        "piano_mid": "chorales/c/c_piano.mid",
        "piano_wav": "chorales/c/c_piano.wav",
        "piano_mono_wav": "chorales/c/c_piano_mono.wav",
        "quartet_mid": "chorales/c/c_quartet.mid",
        "quartet_wav": "chorales/c/c_quartet.wav",
        "quartet_mono_wav": "chorales/c/c_quartet_mono.wav",
        "notes_csv": "chorales/c/c.notes.csv",
        "speech": "speech/s.wav",
        "phone": "speech/s_phone.lab",
    }
    for rel in files.values():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    sf2 = tmp_path / "font.sf2"
    sf2.write_bytes(b"x")
    manifest = {
        "soundfont": {"path": str(sf2)},
        "chorales": [
            {
                "name": "c",
                "notes_csv": files["notes_csv"],
                "variants": {
                    v: {
                        "mid": files[f"{v}_mid"],
                        "wav": files[f"{v}_wav"],
                        "mono_wav": files[f"{v}_mono_wav"],
                    }
                    for v in ("piano", "quartet")
                },
            }
        ],
        "speech": {"wav": files["speech"], "labels": {"phone": files["phone"]}},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    assert datasets.soundfont_path() == sf2
    (chorale,) = datasets.chorales()
    assert chorale.name == "c"
    assert chorale.quartet_mono_wav == tmp_path / files["quartet_mono_wav"]
    assert chorale.notes_csv == tmp_path / files["notes_csv"]
    assert datasets.speech_clip() == tmp_path / files["speech"]
    assert datasets.speech_labels() == tmp_path / files["phone"]
    with pytest.raises(AudioFileError, match="make data"):
        datasets.quartet_movement()

    (tmp_path / files["piano_wav"]).unlink()
    with pytest.raises(AudioFileError, match="make data"):
        datasets.chorales()
