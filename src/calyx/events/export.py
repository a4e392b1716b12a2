"""Events out of the codec: JSON, CSV and standard MIDI files.

JSON and CSV hold every number of every event in physical units, named and with its unit as in
the layout (:data:`calyx.events.params.EVENT_PARAMS`), plus the room, the sample rate and the
length; :func:`from_json` and :func:`from_csv` read them back to the same values (floats are
written with Python's shortest round-trip representation).

JSON (``"format": "calyx-events-json"``)::

    {"format": "calyx-events-json", "version": 1, "layout": 1, "sample_rate": 44100,
     "n_samples": 441000, "duration_s": 10.0,
     "parameters": [{"name": "time_s", "unit": "s", ...}, {"name": "pitch_midi", "unit": "MIDI note",
                    "low": 12.0, "high": 120.0, "step": 0.02, "doc": "..."}, ...],
     "room": [{"name": "room_wet_db", "unit": "dB", "value": -120.0}, ...],
     "events": [{"time_s": 0.5, "pitch_midi": 60.02, ...}, ...]}

CSV: ``#`` comment lines first (read them with ``pandas.read_csv(path, comment="#")``), then one
header row of names and one row per event::

    # calyx-events-csv; version=1; layout=1; sample_rate=44100; n_samples=441000
    # units: time_s=s; pitch_midi=MIDI note; inharmonicity_log10=log10; ...
    # room: room_wet_db=-120.0 dB; room_t60_log10_s_100=-0.5 log10 s; ...
    time_s,pitch_midi,inharmonicity_log10,...
    0.5,60.02,-3.7,...

MIDI (:func:`to_midi`): one note per event, in a type-1 file (a tempo track, then one track of
notes) at 120 beats per minute and 1000 ticks per beat, so one tick is 0.5 ms, the onset step of
the ``.cxe`` bitstream: onsets of a decoded ``.cxe`` file are exact. Each note is the nearest
MIDI key with a pitch bend for the rest (at most ±50 cents; the bend range is set on every channel
with RPN 0, ±2 semitones by default). Bends apply to a whole channel, so notes rotate over the 15
melodic channels (all but 9, General MIDI percussion): a note goes to a channel on which nothing
sounds (preferring one already bent as it needs, then the one silent longest), so concurrent notes
never share a bend; only when all 15 channels sound does a note share one, with a note of the same
bend if there is one (``bend_conflicts`` counts the notes that had to move a sounding note's bend).
The velocity follows the level as in General MIDI's ``40 log10(velocity / 127)`` dB curve,
relative to the loudest event (or to ``velocity_ref_db``). The note lasts until the event's tonal
part has decayed by ``note_end_db`` (-40 dB) from its onset (decays, aftersound and damper
included), at most ``max_note_s``. :func:`read_midi_notes` reads such a file back, bends included.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.core.audio import atomic_output
from calyx.errors import FormatError, ParameterError
from calyx.events.params import EVENT_PARAMS, LAYOUT_VERSION, N_PARAMS, ROOM_PARAMS, EventList
from calyx.events.render import event_controls
from calyx.metrics import NoteList

__all__ = [
    "CSV_FORMAT",
    "JSON_FORMAT",
    "MIDI_CHANNELS",
    "MidiExport",
    "csv_units",
    "from_csv",
    "from_json",
    "json_document",
    "midi_file",
    "note_lengths_s",
    "read_midi_notes",
    "to_csv",
    "to_json",
    "to_midi",
    "velocities",
]

FloatArray = NDArray[np.float64]

JSON_FORMAT = "calyx-events-json"
CSV_FORMAT = "calyx-events-csv"
_VERSION = 1
#: Channels notes rotate over: all but 9 (General MIDI percussion).
MIDI_CHANNELS: tuple[int, ...] = tuple(c for c in range(16) if c != 9)
_TIME = {"name": "time_s", "unit": "s", "doc": "onset of the event from the start of the recording"}


def _write_text(path: str | os.PathLike[str], text: str, force: bool) -> None:
    with atomic_output(path, force=force) as fh:
        fh.write(text.encode("utf-8"))


# --------------------------------------------------------------------------------------------------
# JSON


def json_document(events: EventList) -> dict[str, Any]:
    """The JSON export of ``events`` as a Python object (see the module's docstring)."""
    params = [dict(_TIME)] + [
        {"name": p.name, "unit": p.unit, "low": p.low, "high": p.high, "step": p.step, "doc": p.doc}
        for p in EVENT_PARAMS
    ]
    return {
        "format": JSON_FORMAT,
        "version": _VERSION,
        "layout": LAYOUT_VERSION,
        "sample_rate": events.sample_rate,
        "n_samples": events.n_samples,
        "duration_s": events.duration_s,
        "parameters": params,
        "room": [{"name": p.name, "unit": p.unit, "value": float(v), "doc": p.doc}
                 for p, v in zip(ROOM_PARAMS, events.room, strict=True)],
        "events": [
            {"time_s": float(t), **{p.name: float(v) for p, v in zip(EVENT_PARAMS, row, strict=True)}}
            for t, row in zip(events.times_s, events.params, strict=True)
        ],
    }


def to_json(events: EventList, path: str | os.PathLike[str] | None = None, *, force: bool = False) -> str:
    """The events as JSON text; also written (atomically) to ``path`` when given."""
    text = json.dumps(json_document(events), indent=1) + "\n"
    if path is not None:
        _write_text(path, text, force)
    return text


def _need(doc: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FormatError(f"JSON events: field {key!r} is missing or not a {kind}")
    return value


def from_json(source: str | os.PathLike[str]) -> EventList:
    """Read events written by :func:`to_json` (a path, or the JSON text itself if it starts with ``{``)."""
    text = source if isinstance(source, str) and source.lstrip().startswith("{") else Path(source).read_text("utf-8")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise FormatError(f"JSON events: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
        raise FormatError(f"JSON events: 'format' must be {JSON_FORMAT!r}")
    if _need(doc, "layout", int) != LAYOUT_VERSION:
        raise FormatError(f"JSON events: layout {doc['layout']} is not the layout this reader knows ({LAYOUT_VERSION})")
    names = ["time_s"] + [p.name for p in EVENT_PARAMS]
    rows = []
    for i, ev in enumerate(_need(doc, "events", list)):
        if not isinstance(ev, dict):
            raise FormatError(f"JSON events: event {i} is not an object")
        try:
            rows.append([float(ev[name]) for name in names])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"JSON events: event {i} lacks a number for {exc}") from exc
    room_items: dict[Any, Any] = {r.get("name"): r.get("value") for r in _need(doc, "room", list)
                                  if isinstance(r, dict)}
    try:
        room = [float(room_items[p.name]) for p in ROOM_PARAMS]
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"JSON events: room lacks a number for {exc}") from exc
    a = np.asarray(rows, dtype=np.float64).reshape(-1, N_PARAMS + 1)
    try:
        return EventList(a[:, 0], a[:, 1:], np.array(room), _need(doc, "sample_rate", int),
                         _need(doc, "n_samples", int))
    except ParameterError as exc:
        raise FormatError(f"JSON events: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# CSV


def to_csv(events: EventList, path: str | os.PathLike[str] | None = None, *, force: bool = False) -> str:
    """The events as CSV text; also written (atomically) to ``path`` when given."""
    buf = io.StringIO()
    buf.write(f"# {CSV_FORMAT}; version={_VERSION}; layout={LAYOUT_VERSION}; "
              f"sample_rate={events.sample_rate}; n_samples={events.n_samples}\n")
    buf.write("# units: " + "; ".join([f"time_s={_TIME['unit']}"] + [f"{p.name}={p.unit}" for p in EVENT_PARAMS])
              + "\n")
    buf.write("# room: " + "; ".join(f"{p.name}={float(v)!r} {p.unit}" for p, v in zip(ROOM_PARAMS, events.room,
                                                                                          strict=True)) + "\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["time_s"] + [p.name for p in EVENT_PARAMS])
    for t, row in zip(events.times_s, events.params, strict=True):
        writer.writerow([repr(float(t))] + [repr(float(v)) for v in row])
    text = buf.getvalue()
    if path is not None:
        _write_text(path, text, force)
    return text


def _fields(line: str, prefix: str) -> dict[str, str]:
    if not line.startswith(prefix):
        raise FormatError(f"CSV events: expected a line starting with {prefix!r}, got {line[:40]!r}")
    out = {}
    for item in line[len(prefix):].split(";"):
        if "=" in item:
            key, value = item.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def csv_units(text: str) -> dict[str, str]:
    """The unit of every column of a CSV export (from its ``# units:`` line)."""
    for line in text.splitlines():
        if line.startswith("# units:"):
            return _fields(line, "# units:")
    raise FormatError("CSV events: no '# units:' line")


def from_csv(source: str | os.PathLike[str]) -> EventList:
    """Read events written by :func:`to_csv` (a path, or the CSV text itself if it starts with ``#``)."""
    text = source if isinstance(source, str) and source.startswith("#") else Path(source).read_text("utf-8")
    lines = text.splitlines()
    if len(lines) < 4:
        raise FormatError("CSV events: too short (3 comment lines and a header are required)")
    head = _fields(lines[0], f"# {CSV_FORMAT};")
    try:
        layout, sr, n = int(head["layout"]), int(head["sample_rate"]), int(head["n_samples"])
    except (KeyError, ValueError) as exc:
        raise FormatError(f"CSV events: first line lacks layout, sample_rate or n_samples ({exc})") from exc
    if layout != LAYOUT_VERSION:
        raise FormatError(f"CSV events: layout {layout} is not the layout this reader knows ({LAYOUT_VERSION})")
    room_fields = _fields(lines[2], "# room:")
    try:
        room = [float(room_fields[p.name].split()[0]) for p in ROOM_PARAMS]
    except (KeyError, ValueError, IndexError) as exc:
        raise FormatError(f"CSV events: room line lacks a number for {exc}") from exc
    reader = csv.reader(lines[3:])
    header = next(reader)
    names = ["time_s"] + [p.name for p in EVENT_PARAMS]
    if header != names:
        raise FormatError(f"CSV events: header must be {','.join(names)}")
    try:
        rows = [[float(v) for v in row] for row in reader if row]
    except ValueError as exc:
        raise FormatError(f"CSV events: {exc}") from exc
    if any(len(r) != len(names) for r in rows):
        raise FormatError(f"CSV events: every row needs {len(names)} numbers")
    a = np.asarray(rows, dtype=np.float64).reshape(-1, len(names))
    try:
        return EventList(a[:, 0], a[:, 1:], np.array(room), sr, n)
    except ParameterError as exc:
        raise FormatError(f"CSV events: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# MIDI


def velocities(events: EventList, *, ref_db: float | None = None) -> NDArray[np.int64]:
    """MIDI velocity of each event: ``127 * 10 ** ((level_db - ref_db) / 40)`` in 1..127.

    ``ref_db`` (the level of velocity 127) defaults to the loudest event's level.
    """
    level = events.level_db
    if level.size == 0:
        return np.zeros(0, dtype=np.int64)
    ref = float(np.max(level)) if ref_db is None else float(ref_db)
    return np.clip(np.rint(127.0 * 10.0 ** ((level - ref) / 40.0)), 1, 127).astype(np.int64)


def note_lengths_s(
    events: EventList, *, end_db: float = -40.0, max_s: float = 8.0, min_s: float = 0.02, step_s: float = 0.005
) -> FloatArray:
    """Time from each onset until the event's tonal part is ``end_db`` below its onset level.

    The energy envelope is ``sum_k a_k^2 [(1 - w) e^(-r1_k t) + w e^(-r2_k t)]^2 D(t)^2`` with the
    decoder's partial amplitudes, both decay stages and the damper ``D`` (see ``docs/events.md``),
    evaluated every ``step_s``; the result lies in ``[min_s, max_s]``.
    """
    if not (end_db < 0.0 and 0.0 < min_s <= max_s and step_s > 0.0):
        raise ParameterError(f"need end_db < 0 and 0 < min_s <= max_s, got {end_db}, {min_s}, {max_s}")
    n = len(events)
    if n == 0:
        return np.zeros(0)
    c = event_controls(events.params, sample_rate=events.sample_rate)
    t = np.arange(0.0, max_s + step_s, step_s)
    out = np.empty(n)
    for e in range(n):
        a2 = c.amp[e] ** 2
        w = c.weight2[e]
        stages = (1.0 - w) * np.exp(-np.outer(c.rate1[e], t)) + w * np.exp(-np.outer(c.rate2[e], t))
        energy = a2 @ stages**2
        energy *= np.exp(-2.0 * c.release_rate[e] * np.maximum(t - c.duration_s[e], 0.0))
        below = np.nonzero(energy <= energy[0] * 10.0 ** (end_db / 10.0))[0]
        out[e] = t[below[0]] if below.size else max_s
    return np.clip(out, min_s, max_s)


@dataclass(frozen=True)
class MidiExport:
    """A MIDI export and what it took: ``bend_conflicts`` notes moved the bend of a sounding note."""

    midi: Any  # mido.MidiFile
    n_notes: int
    channels_used: int
    bend_conflicts: int


def _bend_value(bend_semitones: float, range_semitones: float) -> int:
    return int(np.clip(round(bend_semitones / range_semitones * 8192.0), -8192, 8191))


def midi_file(
    events: EventList,
    *,
    program: int = 0,
    bend_range_semitones: float = 2.0,
    ticks_per_beat: int = 1000,
    tempo_us_per_beat: int = 500_000,
    velocity_ref_db: float | None = None,
    note_end_db: float = -40.0,
    max_note_s: float = 8.0,
) -> MidiExport:
    """The events as a ``mido.MidiFile`` (see the module's docstring for the mapping).

    Parameters
    ----------
    events : EventList
    program : int
        General MIDI program (0-127) set on every channel (0: acoustic grand piano).
    bend_range_semitones : float
        Pitch-bend range written with RPN 0 (0.5 to 24 semitones).
    ticks_per_beat, tempo_us_per_beat : int
        Time grid: one tick is ``tempo_us_per_beat / ticks_per_beat`` microseconds (0.5 ms by default).
    velocity_ref_db : float, optional
        Level of velocity 127 (default: the loudest event).
    note_end_db, max_note_s : float
        Note length: see :func:`note_lengths_s`.
    """
    import mido

    if not 0 <= int(program) <= 127:
        raise ParameterError(f"program must lie in 0-127, got {program}")
    if not 0.5 <= bend_range_semitones <= 24.0:
        raise ParameterError(f"bend_range_semitones must lie in 0.5-24, got {bend_range_semitones}")
    if ticks_per_beat < 1 or tempo_us_per_beat < 1:
        raise ParameterError("ticks_per_beat and tempo_us_per_beat must be positive")
    s_per_tick = tempo_us_per_beat / 1e6 / ticks_per_beat
    order = np.lexsort((events.pitch_midi, events.times_s))
    times = events.times_s[order]
    pitch = events.pitch_midi[order]
    vel = velocities(events, ref_db=velocity_ref_db)[order]
    length = note_lengths_s(events, end_db=note_end_db, max_s=max_note_s)[order]
    keys = np.clip(np.rint(pitch), 0, 127).astype(np.int64)
    bends = np.array([_bend_value(float(p - k), bend_range_semitones) for p, k in zip(pitch, keys, strict=True)],
                     dtype=np.int64)
    on_tick = np.maximum(np.rint(times / s_per_tick), 0).astype(np.int64)
    off_tick = np.maximum(np.rint((times + length) / s_per_tick).astype(np.int64), on_tick + 1)

    # channel rotation: notes[i] = [channel, key, on_tick, off_tick]
    notes: list[list[int]] = []
    last_off = dict.fromkeys(MIDI_CHANNELS, -1)  # when each channel last fell silent
    bend_of = dict.fromkeys(MIDI_CHANNELS, 0)
    sounding: dict[int, list[int]] = {c: [] for c in MIDI_CHANNELS}  # indices into notes
    bend_msgs: list[tuple[int, int, int, int]] = []  # (tick, order, channel, value)
    conflicts = 0
    for i in range(times.size):
        tick, key, bend = int(on_tick[i]), int(keys[i]), int(bends[i])
        for c in MIDI_CHANNELS:
            sounding[c] = [j for j in sounding[c] if notes[j][3] > tick]
        free = [c for c in MIDI_CHANNELS if not sounding[c]]
        if free:
            pool = [c for c in free if bend_of[c] == bend] or free
            ch = min(pool, key=lambda c: (last_off[c], c))
        else:
            busy = {c: max(notes[j][3] for j in sounding[c]) for c in MIDI_CHANNELS}
            holds_key = {c: any(notes[j][1] == key for j in sounding[c]) for c in MIDI_CHANNELS}
            pool = [c for c in MIDI_CHANNELS if bend_of[c] == bend and not holds_key[c]]
            if not pool:
                pool = [c for c in MIDI_CHANNELS if not holds_key[c]] or list(MIDI_CHANNELS)
                conflicts += 1
            ch = min(pool, key=lambda c: (busy[c], c))
        # MIDI cannot hold one key twice on a channel: a sounding note of this key ends here
        for j in sounding[ch]:
            if notes[j][1] == key:
                notes[j][3] = tick
        sounding[ch] = [j for j in sounding[ch] if notes[j][3] > tick]
        if bend_of[ch] != bend:
            bend_msgs.append((tick, i, ch, bend))
            bend_of[ch] = bend
        notes.append([ch, key, tick, int(off_tick[i])])
        sounding[ch].append(i)
        last_off[ch] = max(last_off[ch], int(off_tick[i]))
    used = {n[0] for n in notes}
    # (tick, priority, order, message): at one tick note-offs come first, then bends, then note-ons
    final: list[tuple[int, int, int, Any]] = []
    for i, (ch, key, on, off) in enumerate(notes):
        if off <= on:  # cut to nothing by a later note of the same key on its channel
            continue
        final.append((on, 2, i, mido.Message("note_on", channel=ch, note=key, velocity=int(vel[i]))))
        final.append((off, 0, i, mido.Message("note_off", channel=ch, note=key, velocity=0)))
    final += [(t, 1, i, mido.Message("pitchwheel", channel=ch, pitch=v)) for t, i, ch, v in bend_msgs]
    final.sort(key=lambda x: (x[0], x[1], x[2]))

    setup: list[Any] = []
    whole = int(np.floor(bend_range_semitones))
    cents = round((bend_range_semitones - whole) * 100.0)
    for ch in sorted(used) or [MIDI_CHANNELS[0]]:
        setup += [
            mido.Message("program_change", channel=ch, program=int(program)),
            mido.Message("control_change", channel=ch, control=101, value=0),
            mido.Message("control_change", channel=ch, control=100, value=0),
            mido.Message("control_change", channel=ch, control=6, value=whole),
            mido.Message("control_change", channel=ch, control=38, value=cents),
            mido.Message("control_change", channel=ch, control=101, value=127),
            mido.Message("control_change", channel=ch, control=100, value=127),
            mido.Message("pitchwheel", channel=ch, pitch=0),
        ]
    midi = mido.MidiFile(type=1, ticks_per_beat=int(ticks_per_beat))
    tempo = mido.MidiTrack()
    tempo.append(mido.MetaMessage("track_name", name="calyx events", time=0))
    tempo.append(mido.MetaMessage("set_tempo", tempo=int(tempo_us_per_beat), time=0))
    end_tick = max(int(np.ceil(events.duration_s / s_per_tick)), int(off_tick.max()) if off_tick.size else 0)
    tempo.append(mido.MetaMessage("end_of_track", time=end_tick))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name="events", time=0))
    for m in setup:
        track.append(m.copy(time=0))
    previous = 0
    for tick, _, _, m in final:
        track.append(m.copy(time=int(tick - previous)))
        previous = int(tick)
    track.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - previous)))
    midi.tracks += [tempo, track]
    return MidiExport(midi=midi, n_notes=int(times.size), channels_used=len(used), bend_conflicts=conflicts)


def to_midi(
    events: EventList, path: str | os.PathLike[str], *, force: bool = False, **options: Any
) -> MidiExport:
    """Write the events as a standard MIDI file (atomically); ``options`` as in :func:`midi_file`."""
    export = midi_file(events, **options)
    buf = io.BytesIO()
    export.midi.save(file=buf)
    with atomic_output(path, force=force) as fh:
        fh.write(buf.getvalue())
    return export


def read_midi_notes(source: str | os.PathLike[str] | Any) -> NoteList:
    """Notes of a MIDI file with fractional pitches: each note's key plus its channel's pitch bend
    at its onset, scaled by the channel's bend range (RPN 0; 2 semitones until set).

    ``source`` is a path or a ``mido.MidiFile``. Times follow the file's tempo map; a note-off
    ends the earliest sounding note of its channel and key; notes still sounding at the end end
    with the file. Sorted by onset, then pitch.
    """
    import mido

    midi = source if isinstance(source, mido.MidiFile) else mido.MidiFile(str(source))
    now = 0.0
    bend = [0] * 16
    bend_range = [2.0] * 16
    rpn = [(127, 127)] * 16
    coarse = [2] * 16
    sounding: dict[tuple[int, int], list[tuple[float, float]]] = {}
    rows: list[tuple[float, float, float]] = []
    for msg in midi:
        now += msg.time
        if msg.is_meta:
            continue
        if msg.type == "pitchwheel":
            bend[msg.channel] = msg.pitch
        elif msg.type == "control_change":
            ch = msg.channel
            if msg.control == 101:
                rpn[ch] = (msg.value, rpn[ch][1])
            elif msg.control == 100:
                rpn[ch] = (rpn[ch][0], msg.value)
            elif msg.control == 6 and rpn[ch] == (0, 0):
                coarse[ch] = msg.value
                bend_range[ch] = float(msg.value)
            elif msg.control == 38 and rpn[ch] == (0, 0):
                bend_range[ch] = coarse[ch] + msg.value / 100.0
        elif msg.type == "note_on" and msg.velocity > 0:
            pitch = msg.note + bend[msg.channel] / 8192.0 * bend_range[msg.channel]
            sounding.setdefault((msg.channel, msg.note), []).append((now, pitch))
        elif msg.type in ("note_off", "note_on"):
            queue = sounding.get((msg.channel, msg.note))
            if queue:
                onset, pitch = queue.pop(0)
                rows.append((onset, now, pitch))
    for queue in sounding.values():
        rows += [(onset, now, pitch) for onset, pitch in queue]
    rows.sort(key=lambda r: (r[0], r[2]))
    return NoteList.from_rows(rows)
