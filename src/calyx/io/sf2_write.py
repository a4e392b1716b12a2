"""Writing SoundFont 2 (``.sf2``) files: 16-bit samples, one instrument per preset, key/velocity zones.

The record layouts, chunk identifiers and generator numbers come from :mod:`calyx.io._sf2_spec`,
which the reader (:mod:`calyx.io.sf2`) uses too, so the two cannot drift apart. The writer streams:
the audio of each zone is obtained from a callable when it is written, so a library of any size
costs one note of memory at a time.

What is written
---------------
- ``INFO``: ``ifil`` 2.01, ``isng`` ``EMU8000``, ``INAM`` (the bank name), ``ISFT``, optionally ``ICMT``.
- ``sdta/smpl``: every channel of every zone as 16-bit little-endian PCM, each sample followed by 46
  zero sample points (the specification's minimum).
- ``pdta``: one preset per :class:`SF2Preset`, each with a single preset zone naming its own
  instrument; the instrument has one zone per channel of each :class:`SF2Zone`, carrying (in this
  order) ``keyRange``, ``velRange``, ``pan`` (stereo only: -50 % / +50 %), ``initialAttenuation``,
  ``releaseVolEnv``, ``overridingRootKey``, ``fineTune``, ``sampleModes`` and ``sampleID``.
  Two-channel zones become a linked pair of samples (left type 4 and right type 2, each naming the
  other in ``wSampleLink``). Loops are written as sample-header loop points with ``sampleModes`` 1
  (continuous loop).

The pitch of a zone is expressed as ``overridingRootKey = round(pitch_midi)`` and
``fineTune = round(100 * (root - pitch_midi))`` cents, so that a reader computing
``root - fineTune / 100`` recovers ``pitch_midi`` to within half a cent.
"""

from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np
from numpy.typing import NDArray

from calyx.core.audio import atomic_output
from calyx.errors import ParameterError
from calyx.io import _sf2_spec as spec
from calyx.io._sf2_spec import Generator as G

__all__ = ["SF2Preset", "SF2Zone", "write_sf2"]

#: Zero sample points written after every sample (section 6.1 of the specification asks for 46).
_GUARD_POINTS = 46
#: Largest value of a 16-bit record index (bags, generators, samples are counted in 16 bits).
_MAX_RECORDS = 0xFFFF
_MAX_SMPL_BYTES = 0xFFFFFFFF - 1024


@dataclass(frozen=True)
class SF2Zone:
    """One note to map: its audio (loaded when written), pitch, ranges and loop.

    Attributes
    ----------
    audio : callable
        Returns float64 ``(n_channels, n_samples)`` with full scale ±1; 1 or 2 channels.
    name : str
        Sample name (ASCII; cut to 19 characters and made unique in the file; ``L``/``R`` appended
        for stereo pairs).
    sample_rate : int
        Hz.
    pitch_midi : float
        Pitch recorded in the audio (fractional MIDI number).
    key_lo, key_hi, velocity_lo, velocity_hi : int
        Inclusive MIDI ranges, 0..127.
    loop_start, loop_end : int or None
        Sustain loop, half-open sample range from the start of the note; ``None`` for no loop.
    attenuation_db : float
        ``initialAttenuation`` in dB (0 writes no generator).
    release_s : float or None
        ``releaseVolEnv`` in seconds; ``None`` keeps the format's default (instant release).
    """

    audio: Callable[[], NDArray[np.float64]]
    name: str
    sample_rate: int
    pitch_midi: float
    key_lo: int
    key_hi: int
    velocity_lo: int
    velocity_hi: int
    loop_start: int | None = None
    loop_end: int | None = None
    attenuation_db: float = 0.0
    release_s: float | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.key_lo <= self.key_hi <= 127 and 0 <= self.velocity_lo <= self.velocity_hi <= 127):
            raise ParameterError(
                f"zone {self.name!r}: key range {self.key_lo}..{self.key_hi} and velocity range "
                f"{self.velocity_lo}..{self.velocity_hi} must lie within 0..127, low <= high"
            )
        if not (0.0 <= self.pitch_midi <= 127.0):
            raise ParameterError(f"zone {self.name!r}: pitch_midi must be within 0..127, got {self.pitch_midi}")
        if self.sample_rate <= 0:
            raise ParameterError(f"zone {self.name!r}: sample_rate must be positive, got {self.sample_rate}")
        if (self.loop_start is None) != (self.loop_end is None):
            raise ParameterError(f"zone {self.name!r}: give both loop_start and loop_end, or neither")
        if not (0.0 <= self.attenuation_db <= 144.0):
            raise ParameterError(f"zone {self.name!r}: attenuation_db must be within 0..144, got {self.attenuation_db}")
        if self.release_s is not None and not (0.001 <= self.release_s <= 100.0):
            raise ParameterError(f"zone {self.name!r}: release_s must be within 0.001..100 s, got {self.release_s}")


@dataclass(frozen=True)
class SF2Preset:
    """A preset (and its one instrument): a name, a bank/program number and zones."""

    name: str
    zones: Sequence[SF2Zone]
    bank: int = 0
    program: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.bank <= 128 and 0 <= self.program <= 127):
            raise ParameterError(f"preset {self.name!r}: bank must be 0..128 and program 0..127")
        if not self.zones:
            raise ParameterError(f"preset {self.name!r} has no zones")


def _ascii(text: str, n: int) -> bytes:
    clean = re.sub(r"[^\x20-\x7e]", "_", text)
    return clean.encode("ascii")[:n]


def _name20(text: str) -> bytes:
    return _ascii(text, 19).ljust(20, b"\0")


def _zstr(text: str, limit: int = 255) -> bytes:
    b = _ascii(text, limit) + b"\0"
    return b + (b"\0" if len(b) & 1 else b"")


def _sub(cid: bytes, payload: bytes) -> bytes:
    pad = b"\0" if len(payload) & 1 else b""
    return cid + struct.pack("<I", len(payload)) + payload + pad


def _list(kind: bytes, body: bytes) -> bytes:
    return spec.LIST_ID + struct.pack("<I", 4 + len(body)) + kind + body


def _gen(oper: G, amount: int) -> bytes:
    return spec.GEN.pack(int(oper), amount & 0xFFFF)


def _range_amount(lo: int, hi: int) -> int:
    return (lo & 0xFF) | ((hi & 0xFF) << 8)


def _timecents(seconds: float) -> int:
    return round(1200.0 * math.log2(seconds))


@dataclass
class _SampleRecord:
    index: int
    name: bytes
    start: int
    end: int
    loop_start: int
    loop_end: int
    sample_rate: int
    root: int
    sample_type: int
    link: int


def _pcm16(x: NDArray[np.float64]) -> bytes:
    q = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype("<i2")
    return q.tobytes()


def write_sf2(
    path: str | os.PathLike[str],
    *,
    presets: Sequence[SF2Preset],
    name: str,
    comment: str = "",
    force: bool = False,
) -> int:
    """Write a SoundFont 2.01 bank atomically; returns the file size in bytes.

    Parameters
    ----------
    path : path
        The ``.sf2`` file to write.
    presets : sequence of SF2Preset
        At least one; (bank, program) pairs must be distinct.
    name : str
        Bank name (``INAM``).
    comment : str
        Written to ``ICMT`` when not empty (provenance).
    force : bool
        Replace an existing file.

    Raises
    ------
    ParameterError
        For an empty preset list, duplicate programs, audio of more than 2 channels or an unusable
        loop, or a bank beyond the format's 16-bit record counts / 4 GiB sample chunk.
    FileExistsError
        When ``path`` exists and ``force`` is false.
    """
    if not presets:
        raise ParameterError("write_sf2 needs at least one preset")
    keys = [(p.bank, p.program) for p in presets]
    if len(set(keys)) != len(keys):
        raise ParameterError(f"presets must have distinct (bank, program) pairs, got {keys}")
    with atomic_output(path, force=force) as fh:
        return _write(fh, presets=presets, name=name, comment=comment)


def _write(fh: IO[bytes], *, presets: Sequence[SF2Preset], name: str, comment: str) -> int:
    info = _sub(spec.IFIL_ID, struct.pack("<HH", 2, 1))
    info += _sub(b"isng", _zstr("EMU8000"))
    info += _sub(b"INAM", _zstr(name or "Calyx"))
    info += _sub(b"ISFT", _zstr("calyx"))
    if comment:
        info += _sub(b"ICMT", _zstr(comment, 65000))
    info_list = _list(spec.INFO_LIST, info)

    # RIFF header and INFO, then stream the sample data with placeholder sizes
    fh.write(spec.RIFF_ID + b"\0\0\0\0" + spec.SFBK_FORM)
    fh.write(info_list)
    sdta_pos = fh.tell()
    fh.write(spec.LIST_ID + b"\0\0\0\0" + spec.SDTA_LIST + spec.SMPL_ID + b"\0\0\0\0")
    smpl_points = 0
    samples: list[_SampleRecord] = []
    used_names: set[bytes] = set()
    instrument_zones: list[list[tuple[_SampleRecord, SF2Zone, int]]] = []  # (sample, zone, pan)
    guard = b"\0\0" * _GUARD_POINTS

    def unique(stem: str, suffix: str) -> bytes:
        base = _ascii(stem, 19 - len(suffix))
        candidate = base + suffix.encode("ascii")
        k = 2
        while candidate in used_names:
            tag = f"~{k}{suffix}".encode("ascii")
            candidate = base[: 19 - len(tag)] + tag
            k += 1
        used_names.add(candidate)
        return candidate

    for preset in presets:
        zones_out: list[tuple[_SampleRecord, SF2Zone, int]] = []
        for zone in preset.zones:
            audio = np.asarray(zone.audio(), dtype=np.float64)
            if audio.ndim == 1:
                audio = audio[None, :]
            if audio.ndim != 2 or audio.shape[0] not in (1, 2) or audio.shape[1] == 0:
                raise ParameterError(
                    f"zone {zone.name!r}: audio must be (1 or 2 channels, n_samples > 0), got {audio.shape}"
                )
            n = audio.shape[1]
            loop = None
            if zone.loop_start is not None and zone.loop_end is not None:
                if not 0 <= zone.loop_start < zone.loop_end <= n:
                    raise ParameterError(
                        f"zone {zone.name!r}: loop {zone.loop_start}..{zone.loop_end} is not within 0..{n}"
                    )
                loop = (zone.loop_start, zone.loop_end)
            root = int(min(127, max(0, round(zone.pitch_midi))))
            stereo = audio.shape[0] == 2
            first_index = len(samples)
            for ch in range(audio.shape[0]):
                start = smpl_points
                fh.write(_pcm16(audio[ch]))
                fh.write(guard)
                smpl_points += n + _GUARD_POINTS
                if 2 * smpl_points > _MAX_SMPL_BYTES:
                    raise ParameterError("the sample data exceed the 4 GiB limit of a SoundFont 2 file")
                ls, le = (start + loop[0], start + loop[1]) if loop else (start, start + n - 1)
                if stereo:
                    stype = int(spec.SampleType.LEFT if ch == 0 else spec.SampleType.RIGHT)
                    link = first_index + 1 - ch
                    suffix = "L" if ch == 0 else "R"
                else:
                    stype, link, suffix = int(spec.SampleType.MONO), 0, ""
                rec = _SampleRecord(
                    index=len(samples),
                    name=unique(zone.name, suffix),
                    start=start,
                    end=start + n,
                    loop_start=ls,
                    loop_end=le,
                    sample_rate=int(zone.sample_rate),
                    root=root,
                    sample_type=stype,
                    link=link,
                )
                samples.append(rec)
                pan = (-500 if ch == 0 else 500) if stereo else 0
                zones_out.append((rec, zone, pan))
        instrument_zones.append(zones_out)
    if len(samples) >= _MAX_RECORDS:
        raise ParameterError(f"{len(samples)} samples exceed the SoundFont limit of {_MAX_RECORDS - 1}")
    smpl_bytes = 2 * smpl_points
    pdta_pos = fh.tell()
    pdta = _pdta(presets, instrument_zones, samples)
    fh.write(pdta)
    total = fh.tell()
    # patch the sizes: RIFF, LIST sdta, smpl
    fh.seek(4)
    fh.write(struct.pack("<I", total - 8))
    fh.seek(sdta_pos + 4)
    fh.write(struct.pack("<I", pdta_pos - sdta_pos - 8))
    fh.seek(sdta_pos + 16)
    fh.write(struct.pack("<I", smpl_bytes))
    fh.seek(total)
    return total


def _pdta(
    presets: Sequence[SF2Preset],
    instrument_zones: list[list[tuple[_SampleRecord, SF2Zone, int]]],
    samples: list[_SampleRecord],
) -> bytes:
    phdr = bytearray()
    pbag = bytearray()
    pgen = bytearray()
    inst = bytearray()
    ibag = bytearray()
    igen = bytearray()
    n_pbag = n_pgen = n_ibag = n_igen = 0
    for i, preset in enumerate(presets):
        phdr += spec.PHDR.pack(_name20(preset.name), preset.program, preset.bank, n_pbag, 0, 0, 0)
        pbag += spec.BAG.pack(n_pgen, 0)
        n_pbag += 1
        pgen += _gen(G.INSTRUMENT, i)
        n_pgen += 1
        inst += spec.INST.pack(_name20(preset.name), n_ibag)
        for rec, zone, pan in instrument_zones[i]:
            ibag += spec.BAG.pack(n_igen, 0)
            n_ibag += 1
            gens = [
                _gen(G.KEY_RANGE, _range_amount(zone.key_lo, zone.key_hi)),
                _gen(G.VEL_RANGE, _range_amount(zone.velocity_lo, zone.velocity_hi)),
            ]
            if pan:
                gens.append(_gen(G.PAN, pan))
            if zone.attenuation_db > 0:
                gens.append(_gen(G.INITIAL_ATTENUATION, round(10.0 * zone.attenuation_db)))
            if zone.release_s is not None:
                gens.append(_gen(G.RELEASE_VOL_ENV, _timecents(zone.release_s)))
            fine = round(100.0 * (rec.root - zone.pitch_midi))
            gens.append(_gen(G.OVERRIDING_ROOT_KEY, rec.root))
            if fine:
                gens.append(_gen(G.FINE_TUNE, max(-99, min(99, fine))))
            if zone.loop_start is not None:
                gens.append(_gen(G.SAMPLE_MODES, int(spec.SampleMode.LOOP_CONTINUOUS)))
            gens.append(_gen(G.SAMPLE_ID, rec.index))
            igen += b"".join(gens)
            n_igen += len(gens)
        if n_ibag >= _MAX_RECORDS or n_igen >= _MAX_RECORDS:
            raise ParameterError("too many zones for the 16-bit record indices of a SoundFont 2 file")
    phdr += spec.PHDR.pack(_name20(spec.TERMINAL_PRESET_NAME), 0, 0, n_pbag, 0, 0, 0)
    pbag += spec.BAG.pack(n_pgen, 0)
    pgen += spec.GEN.pack(0, 0)
    inst += spec.INST.pack(_name20(spec.TERMINAL_INSTRUMENT_NAME), n_ibag)
    ibag += spec.BAG.pack(n_igen, 0)
    igen += spec.GEN.pack(0, 0)
    mod_terminal = spec.MOD.pack(0, 0, 0, 0, 0)
    shdr = bytearray()
    for rec in samples:
        shdr += spec.SHDR.pack(
            rec.name.ljust(20, b"\0"), rec.start, rec.end, rec.loop_start, rec.loop_end,
            rec.sample_rate, rec.root, 0, rec.link, rec.sample_type,
        )
    shdr += spec.SHDR.pack(_name20(spec.TERMINAL_SAMPLE_NAME), 0, 0, 0, 0, 0, 0, 0, 0, 0)
    body = b"".join(
        _sub(cid, bytes(payload))
        for cid, payload in (
            (b"phdr", phdr), (b"pbag", pbag), (b"pmod", mod_terminal), (b"pgen", pgen),
            (b"inst", inst), (b"ibag", ibag), (b"imod", mod_terminal), (b"igen", igen), (b"shdr", shdr),
        )
    )
    return _list(spec.PDTA_LIST, body)
