"""Edits in codec space, exports (JSON, CSV, MIDI) and their command line."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest

from calyx.cli.main import main
from calyx.errors import FormatError, ParameterError
from calyx.events import edit as ed
from calyx.events import load, quantise, save
from calyx.events.export import (
    MIDI_CHANNELS,
    csv_units,
    from_csv,
    from_json,
    midi_file,
    note_lengths_s,
    read_midi_notes,
    to_csv,
    to_json,
    to_midi,
    velocities,
)
from calyx.events.params import EVENT_PARAMS, N_PARAMS, EventList, default_params, default_room
from calyx.events.render import event_controls

P = {p.name: i for i, p in enumerate(EVENT_PARAMS)}
LOW = np.array([p.low for p in EVENT_PARAMS])
HIGH = np.array([p.high for p in EVENT_PARAMS])


def _events(n: int = 24, seed: int = 0, sample_rate: int = 44100) -> EventList:
    """Piano-like events with varied pitch, level, shape and times on the 0.5 ms grid."""
    rng = np.random.default_rng(seed)
    p = default_params(n)
    p[:, P["pitch_midi"]] = rng.uniform(40.0, 84.0, n)
    p[:, P["inharmonicity_log10"]] = rng.uniform(-4.5, -3.0, n)
    p[:, P["level_db"]] = rng.uniform(-40.0, -10.0, n)
    p[:, P["tilt_db_per_octave"]] = rng.uniform(-12.0, -3.0, n)
    p[:, P["shape_1"] : P["shape_12"] + 1] = rng.normal(0.0, 3.0, (n, 12))
    p[:, P["t60_log10_s_100"] : P["t60_log10_s_6400"] + 1] = [0.6, 0.4, 0.1, -0.3]
    p[:, P["duration_s"]] = rng.uniform(0.1, 1.5, n)
    p[:, P["noise_level_db"]] = p[:, P["level_db"]] - 40.0
    t = np.round(rng.uniform(0.0, 9.5, n) / 0.0005) * 0.0005
    return EventList(t, p, default_room(), sample_rate, 10 * sample_rate)


# --------------------------------------------------------------------------------------------------
# Random edits


def test_randomized_times_keep_the_vectors() -> None:
    ev = _events()
    for how in ("uniform", "permute"):
        out = ed.randomize_times(ev, seed=5, how=how)
        assert np.array_equal(out.params, ev.params)  # same vectors, in the same order
        assert not np.array_equal(out.times_s, ev.times_s)
        assert np.all((out.times_s >= 0.0) & (out.times_s < ev.duration_s))
    permuted = ed.randomize_times(ev, seed=5, how="permute")
    assert np.array_equal(np.sort(permuted.times_s), np.sort(ev.times_s))


def test_randomized_vectors_keep_the_times() -> None:
    ev = _events()
    rows = ed.randomize_vectors(ev, seed=1, how="rows")
    assert np.array_equal(rows.times_s, ev.times_s)
    assert not np.array_equal(rows.params, ev.params)
    known = {tuple(r) for r in ev.params}
    assert all(tuple(r) in known for r in rows.params)  # every vector is one of the recording's
    cols = ed.randomize_vectors(ev, seed=1, how="columns")
    assert np.array_equal(cols.times_s, ev.times_s)
    for c in range(N_PARAMS):
        assert set(cols.params[:, c]) <= set(ev.params[:, c])
    uni = ed.randomize_vectors(ev, seed=1, how="uniform")
    assert np.all(uni.params >= ev.params.min(axis=0) - 1e-12)
    assert np.all(uni.params <= ev.params.max(axis=0) + 1e-12)
    with pytest.raises(ParameterError):
        ed.randomize_vectors(ev, seed=1, how="gaussian")  # type: ignore[arg-type]


def test_random_edits_are_deterministic_under_a_seed_and_pure() -> None:
    ev = _events()
    before = (ev.times_s.copy(), ev.params.copy())
    for fn in (
        lambda s: ed.randomize_vectors(ev, seed=s),
        lambda s: ed.randomize_times(ev, seed=s),
        lambda s: ed.perturb(ev, magnitude=0.1, seed=s),
    ):
        a, b, c = fn(7), fn(7), fn(8)
        assert np.array_equal(a.times_s, b.times_s) and np.array_equal(a.params, b.params)
        assert not (np.array_equal(a.times_s, c.times_s) and np.array_equal(a.params, c.params))
    assert np.array_equal(ev.times_s, before[0]) and np.array_equal(ev.params, before[1])


def test_perturb_moves_every_event_by_one_direction_of_the_given_length() -> None:
    ev = _events()
    # keep the events away from the range limits so nothing is clipped
    p = ev.params.copy()
    p[:, P["aftersound_db"]] = -40.0
    p[:, P["noise_level_db"]] = -70.0
    ev = EventList(ev.times_s, p, ev.room, ev.sample_rate, ev.n_samples)
    out = ed.perturb(ev, magnitude=0.05, seed=3, exclude=("pitch_midi",))
    moves = (out.params - ev.params) / (HIGH - LOW)
    assert np.allclose(moves, moves[0], atol=1e-12)  # one common direction
    assert np.linalg.norm(moves[0]) == pytest.approx(0.05, rel=1e-9)
    assert np.array_equal(out.pitch_midi, ev.pitch_midi)
    assert np.array_equal(out.times_s, ev.times_s)
    with pytest.raises(ParameterError):
        ed.perturb(ev, magnitude=-1.0, seed=0)


# --------------------------------------------------------------------------------------------------
# Musical edits


@pytest.mark.parametrize("timbre", ["envelope", "partials"])
def test_transpose_octave_doubles_f0(timbre: str) -> None:
    ev = _events()
    out = ed.transpose(ev, semitones=12.0, timbre=timbre)  # type: ignore[arg-type]
    cents = 1200.0 * np.log2(out.f0_hz / (2.0 * ev.f0_hz))
    assert np.max(np.abs(cents)) < 1.0
    assert np.array_equal(out.times_s, ev.times_s)
    assert np.allclose(out.level_db, ev.level_db)
    # the quantised file keeps the octave too (pitch step: 2 cents)
    q = quantise(out)
    assert np.max(np.abs(1200.0 * np.log2(q.f0_hz / (2.0 * quantise(ev).f0_hz)))) < 1.0


def test_transpose_keeps_the_spectral_envelope_in_place() -> None:
    ev = _events(seed=4)
    for semitones in (2.0, -3.0):
        out = ed.transpose(ev, semitones=semitones, timbre="envelope")
        moved = ed.transpose(ev, semitones=semitones, timbre="partials")
        a = event_controls(ev.params, sample_rate=ev.sample_rate)
        errors = {}
        for name, test in (("envelope", out), ("partials", moved)):
            b = event_controls(test.params, sample_rate=ev.sample_rate)
            err = []
            for e in range(len(ev)):
                live = a.amp[e] > 0
                inside = (b.amp[e] > 0) & (b.freq_hz[e] > a.freq_hz[e, 0]) & (b.freq_hz[e] < a.freq_hz[e, live][-1])
                old_db = np.interp(np.log2(b.freq_hz[e, inside]), np.log2(a.freq_hz[e, live]),
                                   20.0 * np.log10(a.amp[e, live]))
                new_db = 20.0 * np.log10(b.amp[e, inside])
                w = 10.0 ** ((old_db - old_db.max()) / 20.0)
                diff = new_db - old_db
                diff -= np.sum(w * diff) / np.sum(w)
                err.append(np.sqrt(np.sum(w * diff**2) / np.sum(w)))
            errors[name] = float(np.median(err))
        assert errors["envelope"] < 1.0  # dB, amplitude-weighted
        assert errors["envelope"] < 0.25 * errors["partials"]
    # transposing by nothing changes nothing
    same = ed.transpose(ev, semitones=0.0)
    assert np.allclose(same.params, ev.params, atol=1e-9)


def test_time_stretch_scales_times_and_note_lengths_exactly() -> None:
    ev = _events()
    out = ed.time_stretch(ev, factor=1.25)
    assert np.array_equal(out.times_s, ev.times_s * 1.25)
    assert out.n_samples == round(ev.n_samples * 1.25)
    assert np.allclose(out.duration_s_per_event, ev.duration_s_per_event * 1.25)
    assert np.array_equal(out.pitch_midi, ev.pitch_midi)
    assert np.array_equal(out.t60_s, ev.t60_s)  # the instrument's decays do not follow the tempo
    tape = ed.time_stretch(ev, factor=2.0, scale_decays=True)
    assert np.allclose(tape.t60_s, 2.0 * ev.t60_s)
    with pytest.raises(ParameterError):
        ed.time_stretch(ev, factor=0.0)


def test_gain_adds_decibels_to_tone_and_noise() -> None:
    ev = _events()
    out = ed.gain(ev, db=-6.0)
    assert np.allclose(out.level_db, ev.level_db - 6.0)
    assert np.allclose(out.column("noise_level_db"), ev.column("noise_level_db") - 6.0)


# --------------------------------------------------------------------------------------------------
# Selection


def test_delete_and_solo_by_time_pitch_and_index() -> None:
    ev = _events(n=40)
    gone = ed.delete_events(ev, time_range_s=(2.0, 5.0))
    assert not np.any((gone.times_s >= 2.0) & (gone.times_s <= 5.0))
    solo = ed.solo_events(ev, time_range_s=(2.0, 5.0))
    assert np.all((solo.times_s >= 2.0) & (solo.times_s <= 5.0))
    assert len(gone) + len(solo) == len(ev) and len(solo) > 0
    low = ed.delete_events(ev, pitch_range_midi=(40.0, 60.0))
    assert np.all(low.pitch_midi > 60.0)
    only = ed.solo_events(ev, pitch_range_midi=(40.0, 60.0))
    assert np.all(only.pitch_midi <= 60.0) and len(low) + len(only) == len(ev)
    both = ed.delete_events(ev, time_range_s=(2.0, 5.0), pitch_range_midi=(40.0, 60.0))
    assert len(both) == len(ev) - int(np.sum((ev.times_s >= 2) & (ev.times_s <= 5) & (ev.pitch_midi <= 60)))
    picked = ed.delete_events(ev, indices=[0, 3, -1])
    keep = np.ones(len(ev), bool)
    keep[[0, 3, len(ev) - 1]] = False
    assert np.array_equal(picked.times_s, ev.times_s[keep])
    assert np.array_equal(ed.solo_events(ev, indices=[5]).params, ev.params[5:6])
    with pytest.raises(ParameterError, match="out of range"):
        ed.delete_events(ev, indices=[len(ev)])
    with pytest.raises(ParameterError):
        ed.delete_events(ev, time_range_s=(5.0, 2.0))
    with pytest.raises(ParameterError):
        ed.solo_events(ev)


# --------------------------------------------------------------------------------------------------
# JSON and CSV


def test_json_round_trip_keeps_values_names_and_units(tmp_path: Path) -> None:
    ev = _events()
    ev.room[:] = [-30.0, -0.5, -0.6, -0.7, -0.8]
    path = tmp_path / "ev.json"
    to_json(ev, path)
    back = from_json(path)
    assert np.array_equal(back.times_s, ev.times_s) and np.array_equal(back.params, ev.params)
    assert np.array_equal(back.room, ev.room)
    assert (back.sample_rate, back.n_samples) == (ev.sample_rate, ev.n_samples)
    doc = json.loads(path.read_text())
    units = {p["name"]: p["unit"] for p in doc["parameters"]}
    assert units["time_s"] == "s"
    assert all(units[p.name] == p.unit for p in EVENT_PARAMS)
    assert doc["events"][0]["pitch_midi"] == ev.params[0, P["pitch_midi"]]
    assert {r["name"]: r["unit"] for r in doc["room"]}["room_wet_db"] == "dB"
    with pytest.raises(FileExistsError):
        to_json(ev, path)
    with pytest.raises(FormatError):
        from_json('{"format": "something else"}')


def test_csv_round_trip_keeps_values_names_and_units(tmp_path: Path) -> None:
    ev = _events()
    path = tmp_path / "ev.csv"
    to_csv(ev, path)
    text = path.read_text()
    back = from_csv(path)
    assert np.array_equal(back.times_s, ev.times_s) and np.array_equal(back.params, ev.params)
    assert np.array_equal(back.room, ev.room) and back.n_samples == ev.n_samples
    units = csv_units(text)
    assert units["time_s"] == "s" and all(units[p.name] == p.unit for p in EVENT_PARAMS)
    header = next(line for line in text.splitlines() if not line.startswith("#"))
    assert header.split(",") == ["time_s"] + [p.name for p in EVENT_PARAMS]
    with pytest.raises(FormatError):
        from_csv(text.replace("time_s,pitch_midi", "t,pitch"))


# --------------------------------------------------------------------------------------------------
# MIDI


def _midi_case() -> EventList:
    """Three overlapping notes with different bends, one re-strike, one chord of equal bends."""
    p = default_params(6)
    p[:, P["duration_s"]] = 0.5
    p[:, P["release_t60_log10_s"]] = -2.0
    p[:, P["t60_log10_s_100"] : P["t60_log10_s_6400"] + 1] = 1.0
    p[:, P["pitch_midi"]] = [60.0, 64.25, 66.9, 60.0, 72.1, 76.1]
    p[:, P["level_db"]] = [-10.0, -20.0, -30.0, -10.0, -50.0, -50.0]
    t = np.array([0.0, 0.1, 0.2, 1.0, 2.0, 2.0])
    return EventList(t, p, default_room(), 44100, 3 * 44100)


def test_midi_export_is_exact_on_a_synthetic_list(tmp_path: Path) -> None:
    ev = _midi_case()
    export = to_midi(ev, tmp_path / "ev.mid")
    midi = mido.MidiFile(str(tmp_path / "ev.mid"))
    assert export.n_notes == 6 and export.bend_conflicts == 0
    tick_s = 0.5 / midi.ticks_per_beat
    now, bend = 0, dict.fromkeys(range(16), 0)
    ons: list[tuple[float, int, int, int]] = []  # (time, key, bend, channel)
    offs: dict[tuple[int, int], float] = {}
    for msg in midi.tracks[1]:
        now += msg.time
        if msg.type == "pitchwheel":
            bend[msg.channel] = msg.pitch
        elif msg.type == "note_on":
            ons.append((now * tick_s, msg.note, bend[msg.channel], msg.channel))
        elif msg.type == "note_off":
            offs[(msg.channel, msg.note)] = now * tick_s
    assert [o[1] for o in ons] == [60, 64, 67, 60, 72, 76]
    assert [o[0] for o in ons] == [0.0, 0.1, 0.2, 1.0, 2.0, 2.0]
    assert [o[2] for o in ons] == [0, 1024, -410, 0, 410, 410]  # round(bend / 2 semitones * 8192)
    # concurrent notes with different bends sit on different channels, all melodic
    assert len({o[3] for o in ons[:3]}) == 3
    assert all(o[3] in MIDI_CHANNELS for o in ons)
    # the two notes of equal bend at 2.0 s may share a channel; no bend message between them
    assert velocities(ev).tolist() == [127, 71, 40, 127, 13, 13]
    # read back with bends: pitches within the bend resolution, onsets exact
    notes = read_midi_notes(tmp_path / "ev.mid")
    order = np.lexsort((ev.pitch_midi, ev.times_s))
    assert np.array_equal(notes.onset_s, ev.times_s[order])
    assert np.max(np.abs(notes.pitch_midi - ev.pitch_midi[order])) < 2.0 / 8192 + 1e-9
    # note length: the damper at 0.5 s with a 10 ms release T60 ends each note ~ 7 ms later
    lengths = note_lengths_s(ev)
    assert np.all((lengths > 0.5) & (lengths < 0.52))
    assert np.allclose(notes.offset_s - notes.onset_s, lengths[order], atol=tick_s)


def test_midi_channels_rotate_beyond_fifteen_voices() -> None:
    n = 20
    p = default_params(n)
    p[:, P["pitch_midi"]] = 40.0 + np.arange(n) + 0.3 * (np.arange(n) % 3)
    p[:, P["duration_s"]] = 5.0
    p[:, P["t60_log10_s_100"] : P["t60_log10_s_6400"] + 1] = 1.5
    ev = EventList(np.arange(n, dtype=np.float64) * 0.01, p, default_room(), 44100, 6 * 44100)
    export = midi_file(ev)
    assert export.channels_used == 15
    notes = read_midi_notes(export.midi)
    assert len(notes) == n
    # three bend values over 20 sustained notes: sharing a channel with an equal bend is free
    assert export.bend_conflicts == 0
    assert np.max(np.abs(np.sort(notes.pitch_midi) - np.sort(ev.pitch_midi))) < 1e-3


# --------------------------------------------------------------------------------------------------
# Command line


def test_cli_edit_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ev = quantise(_events(n=12))
    src = tmp_path / "in.cxe"
    save(ev, src)
    out = tmp_path / "out.cxe"
    assert main(["events", "edit", str(src), "-o", str(out), "--transpose", "12", "--stretch", "1.25",
                 "--gain-db", "-3", "--delete-time", "0:2", "--seed", "3"]) == 0
    edited = load(out)
    kept = ev.times_s > 2.0
    assert len(edited) == int(kept.sum())
    assert np.allclose(np.sort(edited.times_s), np.sort(ev.times_s[kept] * 1.25), atol=0.00026)
    assert np.allclose(np.sort(edited.pitch_midi), np.sort(ev.pitch_midi[kept] + 12.0), atol=0.011)
    # refuses to overwrite without --force, names the file, exit status 2
    assert main(["events", "edit", str(src), "-o", str(out), "--gain-db", "1"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["events", "edit", str(src), "-o", str(out), "--solo-pitch", "60:", "--force"]) == 0
    assert np.all(load(out).pitch_midi >= 60.0)
    # deterministic random edits from the command line
    a, b = tmp_path / "a.cxe", tmp_path / "b.cxe"
    for path in (a, b):
        assert main(["events", "edit", str(src), "-o", str(path), "--randomize-times", "--perturb", "0.05",
                     "--seed", "9"]) == 0
    assert a.read_bytes() == b.read_bytes()
    for suffix in (".json", ".csv", ".mid"):
        target = tmp_path / f"out{suffix}"
        assert main(["events", "export", str(src), "-o", str(target)]) == 0
        assert target.is_file()
        assert main(["events", "export", str(src), "-o", str(target)]) == 2
    assert np.array_equal(from_json(tmp_path / "out.json").params, ev.params)
    assert len(read_midi_notes(tmp_path / "out.mid")) == len(ev)
    assert main(["events", "export", str(src), "-o", str(tmp_path / "out.txt")]) == 2
