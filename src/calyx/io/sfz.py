"""Reading SFZ instrument definitions (``.sfz`` text plus WAV/FLAC/Ogg sample files).

Supported syntax
----------------
- Headers ``<control>``, ``<global>``, ``<master>``, ``<group>``, ``<region>``; opcodes of a region are
  those of the enclosing global, master and group, overridden level by level. A new ``<global>``
  clears the master and group opcodes, a new ``<master>`` clears the group's. Opcodes under other
  headers (``<curve>``, ``<effect>``, ``<midi>``, ``<sample>``) are ignored.
- ``//`` line comments and ``/* ... */`` block comments; ``#define $NAME value`` with ``$NAME``
  substitution; ``#include "file.sfz"`` (relative to the including file, nested at most 16 deep).
- ``<control>``: ``default_path`` (prefixed to every sample path), ``note_offset``, ``octave_offset``.
- Sample paths are relative to the .sfz file's folder (plus ``default_path``); ``\\`` separators are
  accepted, and a path that does not match exactly is matched case-insensitively component by
  component. Paths may contain spaces. Samples of the form ``*sine`` (built-in generators) are
  skipped, since they are no recordings.

How opcodes map to a :class:`~calyx.io.library.NoteSample`
-----------------------------------------------------------
- ``lokey``/``hikey``/``key`` (numbers or note names, ``c4`` = 60) give the key range; ``key`` also
  sets ``pitch_keycenter`` (default 60; ``pitch_keycenter=sample`` reads the WAV ``smpl`` chunk).
  Regions with ``key=-1`` or ``hikey=-1`` (triggered by controllers, not keys) are skipped.
- ``pitch_midi = pitch_keycenter - transpose - tune / 100``: the pitch recorded in the file, assuming
  the region's tuning makes each key sound at its own pitch.
- ``lovel``/``hivel`` (default 0..127) give the velocity range and ``dynamic``.
- ``offset`` and ``end`` (inclusive, in frames) trim the sample; ``loop_start``/``loop_end`` (or
  ``loopstart``/``loopend``, ``end`` inclusive) give the loop, else the WAV ``smpl`` chunk's first
  loop; ``loop_mode=no_loop`` or ``one_shot`` drops it.
- ``variation``: ``seq_position - 1`` (round robin); regions using ``lorand``/``hirand`` instead are
  numbered by the rank of their ``lorand`` among the instrument's distinct values.
- ``articulation``, first that applies: ``sw_label``; ``group_label``; ``"ks<N>"`` for a region
  selected by key switch ``sw_last=N`` (or ``sw_down``; ``sw_lokey``/``sw_hikey`` only declare the
  switch range and do not change the label); ``"<label_ccN or ccN> <lo>-<hi>"`` for a
  region restricted by ``loccN``/``hiccN``; else ``"default"``. Regions with ``trigger=release``
  get ``" release"`` appended (``"release"`` alone for the default articulation).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from calyx.errors import AudioFileError
from calyx.io._common import audio_info, find_file, parse_note_name, wav_sampler_info
from calyx.io.library import Library, NoteSample, SoundFileSlice, velocity_to_dynamic

__all__ = ["read_sfz"]

_MAX_INCLUDE_DEPTH = 16
_MAX_SFZ_BYTES = 64 * 1024 * 1024
_HEADERS_USED = {"control", "global", "master", "group", "region"}
#: Opcodes whose value may contain spaces: it runs up to the next opcode or header on the line.
_FREE_TEXT_OPCODES = {"sample", "default_path", "sw_label", "group_label", "master_label", "global_label"}
_TOKEN = re.compile(r"<\s*([A-Za-z_]+)\s*>|([A-Za-z_][A-Za-z0-9_]*)=")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_DEFINE = re.compile(r"^\s*#define\s+(\$[A-Za-z0-9_]+)\s+(.*?)\s*$")
_INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$')
_CC_OPCODE = re.compile(r"^(lo|hi)cc(\d+)$")


@dataclass(frozen=True)
class _Opcode:
    value: str
    file: str
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}"


_Level = dict[str, _Opcode]


def _strip_comments(text: str) -> str:
    # keep line numbers: a block comment is replaced by as many newlines as it spans
    text = _BLOCK_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return "\n".join(line.split("//", 1)[0] for line in text.split("\n"))


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > _MAX_SFZ_BYTES:
            raise AudioFileError(f"{path}: {size} bytes is too large for an SFZ text file")
        raw = path.read_bytes()
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot be read ({exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _lines(path: Path, defines: dict[str, str], depth: int) -> list[tuple[str, str, int]]:
    """``(text, file, line)`` of every line after comments, ``#define`` and ``#include``."""
    if depth > _MAX_INCLUDE_DEPTH:
        raise AudioFileError(f"{path}: #include nested more than {_MAX_INCLUDE_DEPTH} deep (a cycle?)")
    out: list[tuple[str, str, int]] = []
    for number, line in enumerate(_strip_comments(_read_text(path)).split("\n"), start=1):
        m = _DEFINE.match(line)
        if m:
            defines[m.group(1)] = m.group(2)
            continue
        m = _INCLUDE.match(line)
        if m:
            target = find_file(path.parent, m.group(1))
            if target is None:
                raise AudioFileError(f"{path}:{number}: #include {m.group(1)!r} not found")
            out.extend(_lines(target, defines, depth + 1))
            continue
        if "$" in line:
            for name in sorted(defines, key=len, reverse=True):
                line = line.replace(name, defines[name])
        out.append((line, str(path), number))
    return out


def _parse(path: Path) -> list[tuple[_Level, _Level]]:
    """Each region's ``<control>`` opcodes in force and its merged global/master/group/region opcodes."""
    control: _Level = {}
    levels: dict[str, _Level] = {"global": {}, "master": {}, "group": {}}
    current: _Level | None = None
    region_levels: list[tuple[_Level, _Level, _Level, _Level, _Level]] = []
    for text, file, number in _lines(path, {}, 0):
        tokens = list(_TOKEN.finditer(text))
        for k, tok in enumerate(tokens):
            if tok.group(1) is not None:
                header = tok.group(1).lower()
                if header == "control":
                    control = dict(control)
                    current = control
                elif header == "global":
                    levels = {"global": {}, "master": {}, "group": {}}
                    current = levels["global"]
                elif header == "master":
                    levels = {**levels, "master": {}, "group": {}}
                    current = levels["master"]
                elif header == "group":
                    levels = {**levels, "group": {}}
                    current = levels["group"]
                elif header == "region":
                    current = {}
                    region_levels.append(
                        (control, levels["global"], levels["master"], levels["group"], current)
                    )
                else:
                    current = None
                continue
            if current is None:
                continue
            name = tok.group(2).lower()
            stop = tokens[k + 1].start() if k + 1 < len(tokens) else len(text)
            value = text[tok.end() : stop].strip()
            if name not in _FREE_TEXT_OPCODES:
                value = value.split()[0] if value.split() else ""
            op = _Opcode(value, file, number)
            if name == "key":
                current.update({"lokey": op, "hikey": op, "pitch_keycenter": op})
            elif name in ("loopstart", "loopend"):
                current["loop_" + name[4:]] = op
            elif name == "loopmode":
                current["loop_mode"] = op
            else:
                current[name] = op
    return [
        (ctrl, {**glob, **master, **group, **region}) for ctrl, glob, master, group, region in region_levels
    ]


def _int(op: _Opcode, name: str, lo: int, hi: int) -> int:
    try:
        value = int(float(op.value))
    except ValueError:
        raise AudioFileError(f"{op.where()}: {name}={op.value!r} is not a number") from None
    if not lo <= value <= hi:
        raise AudioFileError(f"{op.where()}: {name}={op.value} is outside {lo}..{hi}")
    return value


def _float(op: _Opcode, name: str) -> float:
    try:
        value = float(op.value)
    except ValueError:
        raise AudioFileError(f"{op.where()}: {name}={op.value!r} is not a number") from None
    if value != value or abs(value) == float("inf"):
        raise AudioFileError(f"{op.where()}: {name}={op.value!r} is not a finite number")
    return value


def _key(op: _Opcode, name: str, shift: int) -> int:
    note = parse_note_name(op.value)
    if note is None:
        try:
            note = int(float(op.value))
        except ValueError:
            raise AudioFileError(
                f"{op.where()}: {name}={op.value!r} is neither a MIDI key number nor a note name like c4 or f#3"
            ) from None
    note += shift
    if not 0 <= note <= 127:
        raise AudioFileError(f"{op.where()}: {name}={op.value} is outside the MIDI key range 0..127")
    return note


def _articulation(ops: _Level, shift: int) -> str:
    if "sw_label" in ops and ops["sw_label"].value:
        label = ops["sw_label"].value
    elif "group_label" in ops and ops["group_label"].value:
        label = ops["group_label"].value
    elif "sw_last" in ops:
        label = f"ks{_key(ops['sw_last'], 'sw_last', shift)}"
    elif "sw_down" in ops:
        label = f"ks{_key(ops['sw_down'], 'sw_down', shift)}"
    else:
        label = "default"
        for name, op in sorted(ops.items()):
            m = _CC_OPCODE.match(name)
            if m is None or m.group(1) != "lo":
                continue
            cc = m.group(2)
            lo = _int(op, name, 0, 127)
            hi = _int(ops[f"hicc{cc}"], f"hicc{cc}", 0, 127) if f"hicc{cc}" in ops else 127
            if (lo, hi) != (0, 127):
                cc_name = ops[f"label_cc{cc}"].value if f"label_cc{cc}" in ops else f"cc{cc}"
                label = f"{cc_name} {lo}-{hi}"
                break
    trigger = ops["trigger"].value.lower() if "trigger" in ops else "attack"
    if trigger == "release" or trigger == "release_key":
        label = "release" if label == "default" else f"{label} release"
    return label


def read_sfz(path: str | os.PathLike[str]) -> Library:
    """Import an SFZ instrument as a :class:`~calyx.io.library.Library`; audio is read lazily.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.sfz`` file.

    Returns
    -------
    Library
        One note per region with a recorded sample; see the module documentation for the mapping.

    Raises
    ------
    AudioFileError
        When the .sfz file or a sample it names is missing or unreadable, or an opcode value is
        invalid; the message names the .sfz file, the line and the value.
    """
    sfz = Path(path)
    if not sfz.is_file():
        raise AudioFileError(f"{sfz}: no such SFZ file")
    regions = _parse(sfz)
    drafts: list[tuple[NoteSample, float | None]] = []
    for control, ops in regions:
        shift = 0
        if "note_offset" in control:
            shift += _int(control["note_offset"], "note_offset", -127, 127)
        if "octave_offset" in control:
            shift += 12 * _int(control["octave_offset"], "octave_offset", -10, 10)
        if "sample" not in ops:
            continue  # a region without a sample plays nothing
        sample_op = ops["sample"]
        if sample_op.value.startswith("*"):
            continue  # built-in oscillators (*sine, *noise, ...) are not recordings
        default_path = control["default_path"].value if "default_path" in control else ""
        relative = default_path.replace("\\", "/") + sample_op.value
        sample_path = find_file(sfz.parent, relative)
        if sample_path is None:
            raise AudioFileError(
                f"{sample_op.where()}: sample {sample_op.value!r} not found "
                f"(looked for {sfz.parent / relative.replace(chr(92), '/')})"
            )
        try:
            info = audio_info(sample_path)
        except Exception as exc:  # libsndfile reports unreadable files with several exception types
            raise AudioFileError(f"{sample_op.where()}: sample {sample_path} cannot be read ({exc})") from exc
        if info.n_frames <= 0:
            raise AudioFileError(f"{sample_op.where()}: sample {sample_path} holds no audio")

        if any(name in ops and ops[name].value == "-1" for name in ("lokey", "hikey", "key")):
            continue  # key=-1 / hikey=-1: never triggered by a key (CC-triggered regions)
        key_lo = _key(ops["lokey"], "lokey", shift) if "lokey" in ops else 0
        key_hi = _key(ops["hikey"], "hikey", shift) if "hikey" in ops else 127
        vel_lo = _int(ops["lovel"], "lovel", 0, 127) if "lovel" in ops else 0
        vel_hi = _int(ops["hivel"], "hivel", 0, 127) if "hivel" in ops else 127
        if key_lo > key_hi or vel_lo > vel_hi:
            continue  # an empty range never sounds
        smpl = wav_sampler_info(sample_path)
        if "pitch_keycenter" in ops and ops["pitch_keycenter"].value.lower() == "sample":
            keycenter: float = (smpl.unity_note + smpl.pitch_fraction) if smpl else 60.0
        elif "pitch_keycenter" in ops:
            keycenter = _key(ops["pitch_keycenter"], "pitch_keycenter", shift)
        else:
            keycenter = 60
        tune_cents = _float(ops["tune"], "tune") if "tune" in ops else 0.0
        transpose = _int(ops["transpose"], "transpose", -127, 127) if "transpose" in ops else 0
        pitch_midi = keycenter - transpose - tune_cents / 100.0

        offset = _int(ops["offset"], "offset", 0, 2**40) if "offset" in ops else 0
        last = _int(ops["end"], "end", 0, 2**40) if "end" in ops else info.n_frames - 1
        last = min(last, info.n_frames - 1)
        if offset > last:
            raise AudioFileError(
                f"{ops.get('offset', sample_op).where()}: offset {offset} leaves no audio in {sample_path} "
                f"({info.n_frames} frames, end {last})"
            )
        n_samples = last - offset + 1

        loop_mode = ops["loop_mode"].value.lower() if "loop_mode" in ops else ""
        loop: tuple[int, int] | None = None
        if loop_mode not in ("no_loop", "one_shot"):
            if "loop_start" in ops and "loop_end" in ops:
                loop = (
                    _int(ops["loop_start"], "loop_start", 0, 2**40),
                    _int(ops["loop_end"], "loop_end", 0, 2**40),
                )
            elif smpl is not None and smpl.loops:
                loop = smpl.loops[0]
        loop_start = loop_end = None
        if loop is not None:
            ls, le = loop[0] - offset, loop[1] + 1 - offset
            if 0 <= ls < le <= n_samples:
                loop_start, loop_end = ls, le

        variation = _int(ops["seq_position"], "seq_position", 1, 10_000) - 1 if "seq_position" in ops else 0
        lorand = _float(ops["lorand"], "lorand") if "lorand" in ops and "seq_position" not in ops else None
        note = NoteSample(
            pitch_midi=float(pitch_midi),
            key_lo=key_lo,
            key_hi=key_hi,
            velocity_lo=vel_lo,
            velocity_hi=vel_hi,
            dynamic=velocity_to_dynamic(vel_lo, vel_hi),
            articulation=_articulation(ops, shift),
            variation=variation,
            sample_rate=info.sample_rate,
            channels=info.channels,
            n_samples=n_samples,
            loop_start=loop_start,
            loop_end=loop_end,
            source=f"{sample_op.where()} [{sample_path}]",
            loader=SoundFileSlice(str(sample_path), offset, offset + n_samples),
        )
        drafts.append((note, lorand))

    if not drafts:
        raise AudioFileError(f"{sfz}: no region with a recorded sample")
    ranks = {value: k for k, value in enumerate(sorted({r for _, r in drafts if r is not None}))}
    notes = [note if r is None else replace(note, variation=ranks[r]) for note, r in drafts]
    notes.sort(key=lambda n: (n.articulation, n.dynamic, n.pitch_midi, n.variation, n.key_lo))
    return Library(name=sfz.stem, notes=notes, source=str(sfz))
