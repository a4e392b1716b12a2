"""Reading SoundFont 2 (``.sf2``) and SoundFont 3 (``.sf3``, Ogg Vorbis samples) instrument banks.

The RIFF structure is parsed here directly (record layouts live in :mod:`calyx.io._sf2_spec`). Only
the chunk table, ``INFO`` and the small ``pdta`` (preset data) chunk are read at import; the sample
data chunk ``smpl`` is never read as a whole: each :class:`~calyx.io.library.NoteSample` receives a
loader pointing at its own byte range, read on :meth:`~calyx.io.library.NoteSample.load`.

How a preset becomes notes
--------------------------
1. *Zones.* A preset is a list of preset zones, each naming an instrument; an instrument is a list of
   instrument zones, each naming a sample. A first zone without an instrument (sample) generator is
   the global zone of the preset (instrument); its generators are defaults that the local zone's own
   generators replace. Non-first zones without a terminal generator are ignored, as the
   specification requires.
2. *Generators.* Key and velocity ranges intersect across the preset and instrument levels (an empty
   intersection never sounds and yields no note). Other preset-level generators *add* to the
   instrument-level value (coarseTune, fineTune, pan, ...). Sample-address offsets, sampleModes and
   overridingRootKey are instrument-only; a preset-level value is ignored.
3. *Pitch.* The root key is overridingRootKey when set, else the sample header's original pitch
   (255 = unpitched reads as 60). The synthesiser plays the sample at the root key transposed by
   ``coarseTune * 100 + fineTune + pitchCorrection`` cents, so the pitch recorded in the audio is
   ``pitch_midi = root - (coarseTune + (fineTune + pitchCorrection) / 100)``.
4. *Addresses and loops.* Start, end and loop points are the sample header's plus the instrument's
   address offsets (fine + 32768 × coarse), clamped to the sample's own range. A loop is kept only for
   sampleModes 1 and 3 and when it falls inside the note. In SF3 the header's start/end are byte
   offsets of the Ogg stream in ``smpl``, loop points count decoded frames from the sample's start,
   and the decoded length is the stream's last granule position (read from its final page).
5. *Stereo pairs.* Zones of the same preset zone with identical key and velocity ranges are paired
   into one two-channel note (channel 0 left, channel 1 right), in this order of preference:

   a. the left sample's ``sampleLink`` names the right sample of another zone and the types are
      complementary (left 0x4 / right 0x2);
   b. broken or missing links: sample names equal after removing a trailing ``L``/``R`` marker
      (``"Piano C4 L"``/``"Piano C4 R"``, ``"Vln_A3_L"``, ``"Pad(R)"``);
   c. exactly two zones left unpaired in the group, one panned left (pan < 0) and the other right.

   Both sides must be single-channel and share a sample rate; a pair whose lengths differ is padded
   with zeros to the longer one. Anything else stays a one-channel note.
6. *Layered zones and dynamics.* Presets often map the same sample several times: overlapping
   zones that differ only in envelope or filter, or key splits. All mappings of the same audio
   (same sample, offsets, pitch and articulation) whose velocity ranges *overlap* are one note, whose
   key and velocity ranges are the hulls of theirs. Mappings whose velocity ranges are *disjoint*
   stay separate notes, one per velocity layer, even when they share the audio (a loud layer that
   borrows the soft layer's top-octave samples keeps a note on the loud layer). ``dynamic`` is the
   centre of the resulting velocity range normalised to 0..1, so a velocity split at preset or
   instrument level produces the dynamic axis.
7. *Articulation.* Instruments are taken in order of first appearance and stacked into layers: an
   instrument joins the first layer none of whose instruments it overlaps on the key × velocity
   plane, else it opens a new layer. Layer 0 is ``"default"``; every further layer (an instrument
   that would sound *together* with the main one, such as an attack or release layer or a second
   section stacked in one preset) is labelled with its instrument's name, or the common prefix of
   its instruments' names. Instruments that merely split the keyboard or the velocity range
   therefore stay ``"default"``.
8. *Variations.* SoundFont has no round robin. Distinct audio that lands on the same pitch,
   velocity range and articulation is numbered 0, 1, ... in file order.

Corrupt files raise :class:`~calyx.errors.AudioFileError` naming the file, the chunk and the value;
every size and index is checked against the file before anything is allocated.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from calyx.errors import AudioFileError, ParameterError
from calyx.io import _sf2_spec as spec
from calyx.io._sf2_spec import Generator as G
from calyx.io.library import (
    MAX_SAMPLES_PER_NOTE,
    AudioLoader,
    Library,
    NoteSample,
    OggVorbisSlice,
    PcmSlice,
    StackedChannels,
    velocity_to_dynamic,
)

__all__ = ["PresetInfo", "list_presets", "read_sf2", "read_sf2_info"]

#: How many presets an error message lists before eliding the rest.
_MAX_LISTED_PRESETS = 20
#: Largest number of (preset zone × instrument zone) combinations one preset may expand to.
_MAX_VOICES_PER_PRESET = 100_000
#: INFO strings longer than this are skipped rather than read (the specification caps them at 64 KiB).
_MAX_INFO_STRING_BYTES = 65536
#: Bytes read from the end of an Ogg stream when looking for its last granule position.
_OGG_TAIL_BYTES = 65536 + 512


@dataclass(frozen=True)
class PresetInfo:
    """One preset of a SoundFont bank."""

    name: str
    bank: int
    program: int

    @property
    def key(self) -> str:
        """The ``"BANK:PROGRAM"`` string accepted by :func:`read_sf2`."""
        return f"{self.bank}:{self.program}"

    def __str__(self) -> str:
        return f"{self.key} {self.name}"


@dataclass(frozen=True)
class _Chunk:
    """Position of a chunk's data in the file."""

    offset: int
    size: int


@dataclass
class _Structure:
    """What the reader keeps of a SoundFont file: the chunk table and the raw pdta records."""

    path: str
    file_bytes: int
    version: tuple[int, int]
    info: dict[str, str]
    smpl: _Chunk | None
    sm24: _Chunk | None
    pdta: dict[bytes, bytes] = field(repr=False)


@dataclass(frozen=True)
class _SampleHeader:
    index: int
    name: str
    start: int
    end: int
    loop_start: int
    loop_end: int
    sample_rate: int
    original_pitch: int
    pitch_correction: int
    link: int
    sample_type: int


@dataclass
class _Voice:
    """One instrument zone as heard through one preset zone, with its generators resolved."""

    preset_zone: int
    instrument_index: int
    instrument_name: str
    sample: _SampleHeader
    key_lo: int
    key_hi: int
    vel_lo: int
    vel_hi: int
    pan: int
    tune_cents: int
    gens: dict[int, int]


@dataclass
class _Part:
    """A resolved voice with its audio location: one side of a future note."""

    voice: _Voice
    pitch_midi: float
    channels: int
    n_samples: int
    loop_start: int | None
    loop_end: int | None
    loader: AudioLoader


# --- RIFF scanning ----------------------------------------------------------------------------------


def _fail(path: str, message: str) -> AudioFileError:
    return AudioFileError(f"{path}: {message}")


def _fourcc(cid: bytes) -> str:
    return cid.decode("latin-1")


_KNOWN_IDS = frozenset({
    spec.LIST_ID, spec.SMPL_ID, spec.SM24_ID, b"phdr", b"pbag", b"pmod", b"pgen", b"inst", b"ibag",
    b"imod", b"igen", b"shdr",
})


def _is_chunk_id(raw: bytes) -> bool:
    return len(raw) == 4 and all(32 <= b < 127 for b in raw)


def _walk(
    fh: BinaryIO, path: str, start: int, end: int, parent: str
) -> Iterator[tuple[bytes, int, int, int]]:
    """Yield ``(id, data_offset, size, declared_size)`` of each chunk in ``[start, end)``.

    A chunk whose declared size runs past ``end`` is an error, except a LIST chunk: it is yielded with
    the size that is available so that the caller can name the truncated sub-chunk inside it, and
    must itself report the shortfall when ``size < declared_size``.
    """
    pos = start
    while end - pos >= 8:
        fh.seek(pos)
        header = fh.read(8)
        if len(header) != 8:
            raise _fail(
                path,
                f"truncated: {parent}: chunk header at byte {pos} needs 8 bytes, {len(header)} available",
            )
        cid, declared = struct.unpack("<4sI", header)
        data = pos + 8
        size = declared
        if declared > end - data:
            if cid != spec.LIST_ID:
                name = _fourcc(cid) if parent == "RIFF" else f"{parent}/{_fourcc(cid)}"
                raise _fail(path, f"truncated: {name} declares {declared} bytes, {end - data} available")
            size = end - data
        yield cid, data, size, declared
        pos = data + size
        if size & 1:
            # RIFF pads odd-sized chunks to an even length, but some writers (sf3convert for the
            # Ogg data of an SF3) omit the pad byte: take the pad only when a chunk id follows it.
            fh.seek(pos + 1)
            after_pad = fh.read(4)
            fh.seek(pos)
            unpadded = fh.read(4)
            if not (unpadded in _KNOWN_IDS or (_is_chunk_id(unpadded) and not _is_chunk_id(after_pad))):
                pos += 1


def _scan(path: str | os.PathLike[str]) -> _Structure:
    """Read the chunk table, INFO and pdta of a SoundFont without touching the sample data."""
    p = str(Path(path))
    if not os.path.isfile(p):
        raise AudioFileError(f"{p}: no such SoundFont file")
    try:
        fh = open(p, "rb")
    except OSError as exc:
        raise AudioFileError(f"{p}: cannot be opened ({exc})") from exc
    with fh:
        file_bytes = os.fstat(fh.fileno()).st_size
        header = fh.read(12)
        if len(header) < 12:
            raise _fail(p, f"truncated: the RIFF header needs 12 bytes, {len(header)} available")
        magic, riff_size, form = struct.unpack("<4sI4s", header)
        if magic != spec.RIFF_ID:
            raise _fail(p, f"not a SoundFont: the file starts with {magic!r}, expected b'RIFF'")
        if form != spec.SFBK_FORM:
            raise _fail(p, f"not a SoundFont: RIFF form {form!r}, expected b'sfbk'")
        riff_short = riff_size > file_bytes - 8
        end = min(8 + riff_size, file_bytes)

        lists: dict[bytes, tuple[int, int]] = {}
        short_lists: list[str] = []
        for cid, data, size, declared in _walk(fh, p, 12, end, "RIFF"):
            if cid != spec.LIST_ID:
                continue
            if size < 4:
                raise _fail(
                    p, f"truncated: LIST chunk at byte {data - 8} has {size} bytes, too few for its type"
                )
            fh.seek(data)
            ltype = fh.read(4)
            lists.setdefault(ltype, (data + 4, data + size))
            if size < declared:
                short_lists.append(
                    f"truncated: LIST '{_fourcc(ltype)}' declares {declared} bytes, {size} available"
                )

        version = (2, 1)
        info: dict[str, str] = {}
        if spec.INFO_LIST in lists:
            lo, hi = lists[spec.INFO_LIST]
            for cid, data, size, _ in _walk(fh, p, lo, hi, "INFO"):
                if cid == spec.IFIL_ID:
                    if size != 4:
                        raise _fail(p, f"INFO/ifil is {size} bytes, expected 4")
                    fh.seek(data)
                    major, minor = struct.unpack("<HH", fh.read(4))
                    version = (major, minor)
                elif cid in spec.INFO_STRING_IDS and size <= _MAX_INFO_STRING_BYTES:
                    fh.seek(data)
                    info[spec.INFO_STRING_IDS[cid]] = _cstring(fh.read(size))

        smpl = sm24 = None
        lo, hi = lists.get(spec.SDTA_LIST, (0, 0))
        for cid, data, size, _ in _walk(fh, p, lo, hi, "sdta"):
            if cid == spec.SMPL_ID:
                smpl = _Chunk(data, size)
            elif cid == spec.SM24_ID:
                sm24 = _Chunk(data, size)

        pdta: dict[bytes, bytes] = {}
        lo, hi = lists.get(spec.PDTA_LIST, (0, 0))
        for cid, data, size, _ in _walk(fh, p, lo, hi, "pdta"):
            if cid in spec.PDTA_RECORDS and cid not in pdta:
                fh.seek(data)
                raw = fh.read(size)
                if len(raw) != size:
                    raise _fail(
                        p, f"truncated: pdta/{_fourcc(cid)} declares {size} bytes, {len(raw)} available"
                    )
                pdta[cid] = raw

    # the most specific complaint first: a cut sub-chunk (raised above), a missing list, a cut list
    for required in (spec.SDTA_LIST, spec.PDTA_LIST):
        if required not in lists:
            hint = (
                f" (truncated: RIFF declares {riff_size} bytes, {file_bytes - 8} available)"
                if riff_short
                else ""
            )
            raise _fail(p, f"no LIST '{_fourcc(required)}' chunk{hint}")
    if short_lists:
        raise _fail(p, short_lists[0])
    for cid, record in spec.PDTA_RECORDS.items():
        if cid not in pdta:
            if cid in (b"pmod", b"imod"):
                pdta[cid] = b""  # modulators are not used by the import; tolerate their absence
                continue
            raise _fail(p, f"the pdta list has no '{_fourcc(cid)}' chunk")
        if len(pdta[cid]) % record.size:
            raise _fail(
                p,
                f"pdta/{_fourcc(cid)} is {len(pdta[cid])} bytes, not a multiple of its {record.size}-byte record",
            )

    # sm24 is only defined from version 2.04 on and must hold one byte per 16-bit sample point
    if sm24 is not None and (
        smpl is None or version < (2, 4) or version[0] != 2 or sm24.size < smpl.size // 2
    ):
        sm24 = None
    return _Structure(p, file_bytes, version, info, smpl, sm24, pdta)


def _cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


class _Table:
    """Random access to the fixed-size records of one pdta chunk, with bounds checks."""

    def __init__(self, path: str, cid: bytes, raw: bytes) -> None:
        self.path = path
        self.name = f"pdta/{_fourcc(cid)}"
        self.record = spec.PDTA_RECORDS[cid]
        self.raw = raw
        self.count = len(raw) // self.record.size

    def __len__(self) -> int:
        return self.count

    def get(self, index: int, referrer: str) -> tuple[Any, ...]:
        if not 0 <= index < self.count:
            raise _fail(
                self.path, f"{referrer} refers to {self.name} record {index}, the chunk holds {self.count}"
            )
        return self.record.unpack_from(self.raw, index * self.record.size)


# --- public entry points ----------------------------------------------------------------------------


def read_sf2_info(path: str | os.PathLike[str]) -> dict[str, str]:
    """The INFO strings of a SoundFont (``name``, ``copyright``, ``comment``, ...) and its ``version``."""
    st = _scan(path)
    return {**st.info, "version": f"{st.version[0]}.{st.version[1]:02d}"}


def list_presets(path: str | os.PathLike[str]) -> list[PresetInfo]:
    """The presets of a SoundFont bank, sorted by bank then program.

    Raises
    ------
    AudioFileError
        When the file is missing, not a SoundFont, truncated or corrupt.
    """
    st = _scan(path)
    return sorted(_presets(st), key=lambda pr: (pr.bank, pr.program, pr.name))


def _presets(st: _Structure) -> list[PresetInfo]:
    phdr = _Table(st.path, b"phdr", st.pdta[b"phdr"])
    out = []
    for i in range(len(phdr) - 1):  # the last record is the terminal "EOP"
        name, program, bank, *_ = phdr.get(i, "the preset list")
        out.append(PresetInfo(_cstring(name), int(bank), int(program)))
    return out


def read_sf2(path: str | os.PathLike[str], *, preset: str | None = None) -> Library:
    """Import one preset of a SoundFont 2 or 3 bank as a :class:`~calyx.io.library.Library`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.sf2`` or ``.sf3`` file.
    preset : str or None
        The preset's name (case-insensitive) or ``"BANK:PROGRAM"`` (e.g. ``"0:0"``). May be omitted
        when the file holds a single preset.

    Returns
    -------
    Library
        One note per sampled zone (stereo pairs merged into two-channel notes); audio is read lazily.
        See the module documentation for how zones map to pitch, dynamic, articulation and variation.

    Raises
    ------
    ParameterError
        When ``preset`` is missing for a multi-preset file or names no preset; the message lists the
        available presets.
    AudioFileError
        When the file is missing, not a SoundFont, truncated or corrupt; the message names the chunk
        and the offending value.
    """
    st = _scan(path)
    presets = _presets(st)
    index = _choose_preset(st.path, presets, preset)
    chosen = presets[index]
    voices = _resolve_preset(st, index, chosen.name)
    parts = [_locate(st, v, chosen.name) for v in voices]
    notes = _assemble(st.path, chosen.name, parts)
    if not notes:
        raise AudioFileError(f"{st.path}: preset {chosen.key} {chosen.name!r} maps no samples")
    return Library(name=chosen.name, notes=notes, source=st.path)


def _choose_preset(path: str, presets: list[PresetInfo], preset: str | None) -> int:
    if not presets:
        raise AudioFileError(f"{path}: the SoundFont holds no presets")

    def listing() -> str:
        shown = sorted(presets, key=lambda pr: (pr.bank, pr.program))[:_MAX_LISTED_PRESETS]
        more = len(presets) - len(shown)
        text = "; ".join(f"{pr.key} {pr.name!r}" for pr in shown)
        return text + (f"; ... and {more} more (calyx.io.list_presets lists them all)" if more else "")

    if preset is None:
        if len(presets) == 1:
            return 0
        raise ParameterError(
            f"{path} holds {len(presets)} presets; choose one with preset=NAME or preset='BANK:PROGRAM': "
            + listing()
        )
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", preset)
    if m:
        bank, program = int(m.group(1)), int(m.group(2))
        for i, pr in enumerate(presets):
            if pr.bank == bank and pr.program == program:
                return i
    wanted = preset.strip().casefold()
    matches = [i for i, pr in enumerate(presets) if pr.name.casefold() == wanted]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        keys = ", ".join(presets[i].key for i in matches)
        raise ParameterError(
            f"{path}: several presets are named {preset!r} ({keys}); choose one by 'BANK:PROGRAM'"
        )
    raise ParameterError(f"{path}: no preset {preset!r}; available: " + listing())


# --- zones and generators ---------------------------------------------------------------------------


def _signed(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw


def _range(raw: int) -> tuple[int, int]:
    return raw & 0xFF, raw >> 8


def _zones(
    path: str,
    bags: _Table,
    gens: _Table,
    bag_lo: int,
    bag_hi: int,
    terminal: int,
    owner: str,
) -> tuple[dict[int, int], list[dict[int, int]]]:
    """The global zone's generators and each local zone's generators (raw 16-bit amounts).

    A local zone's dict holds its terminal generator (instrument or sample index) under ``terminal``.
    """
    if bag_hi < bag_lo:
        raise _fail(path, f"{owner}: zone index {bag_hi} of the next header is before its own {bag_lo}")
    if bag_hi >= len(bags):
        raise _fail(
            path,
            f"{owner}: zones end at {bags.name} record {bag_hi}, the chunk holds {len(bags)} "
            "(including the terminal record)",
        )
    global_zone: dict[int, int] = {}
    local: list[dict[int, int]] = []
    for b in range(bag_lo, bag_hi):
        g0 = bags.get(b, owner)[0]
        g1 = bags.get(b + 1, owner)[0]
        if g1 < g0:
            raise _fail(
                path,
                f"{owner}: {bags.name} record {b + 1} starts at generator {g1}, before {g0} of record {b}",
            )
        if g1 > len(gens):
            raise _fail(
                path, f"{owner}: {bags.name} record {b} ends at generator {g1}, {gens.name} holds {len(gens)}"
            )
        zone: dict[int, int] = {}
        ended = False
        for g in range(g0, g1):
            oper, amount = gens.get(g, owner)
            zone[oper] = amount
            if oper == terminal:
                ended = True
                break  # generators after the terminal one are ignored
        if ended:
            local.append(zone)
        elif b == bag_lo:
            global_zone = zone
        # a non-first zone without a terminal generator is ignored
    return global_zone, local


def _resolve_preset(st: _Structure, index: int, preset_name: str) -> list[_Voice]:
    """Expand one preset into voices: every (preset zone, instrument zone) pair that can sound."""
    path = st.path
    phdr = _Table(path, b"phdr", st.pdta[b"phdr"])
    pbag = _Table(path, b"pbag", st.pdta[b"pbag"])
    pgen = _Table(path, b"pgen", st.pdta[b"pgen"])
    inst = _Table(path, b"inst", st.pdta[b"inst"])
    ibag = _Table(path, b"ibag", st.pdta[b"ibag"])
    igen = _Table(path, b"igen", st.pdta[b"igen"])
    shdr = _Table(path, b"shdr", st.pdta[b"shdr"])
    n_instruments = len(inst) - 1
    n_samples = len(shdr) - 1

    owner = f"preset {preset_name!r}"
    bag_lo = phdr.get(index, owner)[3]
    bag_hi = phdr.get(index + 1, owner)[3]
    p_global, p_zones = _zones(path, pbag, pgen, bag_lo, bag_hi, G.INSTRUMENT, owner)

    instruments: dict[int, tuple[str, dict[int, int], list[dict[int, int]]]] = {}
    samples: dict[int, _SampleHeader] = {}
    voices: list[_Voice] = []
    for pz_index, pz_local in enumerate(p_zones):
        pz = {**p_global, **pz_local}
        i_index = pz.pop(G.INSTRUMENT)
        if i_index >= n_instruments:
            raise _fail(
                path,
                f"{owner} zone {pz_index} refers to instrument {i_index}, pdta/inst holds {n_instruments}",
            )
        if i_index not in instruments:
            name_raw, ib_lo = inst.get(i_index, owner)
            ib_hi = inst.get(i_index + 1, owner)[1]
            i_name = _cstring(name_raw)
            i_global, i_zones = _zones(path, ibag, igen, ib_lo, ib_hi, G.SAMPLE_ID, f"instrument {i_name!r}")
            instruments[i_index] = (i_name, i_global, i_zones)
        i_name, i_global, i_zones = instruments[i_index]
        p_key = _range(pz.get(G.KEY_RANGE, 0x7F00))
        p_vel = _range(pz.get(G.VEL_RANGE, 0x7F00))
        for iz_local in i_zones:
            iz = {**i_global, **iz_local}
            s_index = iz[G.SAMPLE_ID]
            if s_index >= n_samples:
                raise _fail(
                    path, f"instrument {i_name!r} refers to sample {s_index}, pdta/shdr holds {n_samples}"
                )
            i_key = _range(iz.get(G.KEY_RANGE, 0x7F00))
            i_vel = _range(iz.get(G.VEL_RANGE, 0x7F00))
            key_lo, key_hi = max(p_key[0], i_key[0]), min(p_key[1], i_key[1], 127)
            vel_lo, vel_hi = max(p_vel[0], i_vel[0]), min(p_vel[1], i_vel[1], 127)
            if key_lo > key_hi or vel_lo > vel_hi:
                continue  # the two levels' ranges do not intersect: this zone never sounds
            if s_index not in samples:
                samples[s_index] = _sample_header(shdr, s_index)
            tune_cents = 0
            for level in (pz, iz):
                tune_cents += 100 * _signed(level.get(G.COARSE_TUNE, 0)) + _signed(level.get(G.FINE_TUNE, 0))
            pan = _signed(pz.get(G.PAN, 0)) + _signed(iz.get(G.PAN, 0))
            voices.append(
                _Voice(
                    preset_zone=pz_index,
                    instrument_index=i_index,
                    instrument_name=i_name,
                    sample=samples[s_index],
                    key_lo=key_lo,
                    key_hi=key_hi,
                    vel_lo=vel_lo,
                    vel_hi=vel_hi,
                    pan=pan,
                    tune_cents=tune_cents,
                    gens=iz,
                )
            )
            if len(voices) > _MAX_VOICES_PER_PRESET:
                raise _fail(
                    path, f"{owner} expands to more than {_MAX_VOICES_PER_PRESET} zones; the file is corrupt"
                )
    return voices


def _sample_header(shdr: _Table, index: int) -> _SampleHeader:
    name, start, end, loop_start, loop_end, rate, pitch, correction, link, stype = shdr.get(index, "a zone")
    return _SampleHeader(
        index=index,
        name=_cstring(name),
        start=start,
        end=end,
        loop_start=loop_start,
        loop_end=loop_end,
        sample_rate=rate,
        original_pitch=pitch,
        pitch_correction=correction,
        link=link,
        sample_type=stype,
    )


# --- sample data ------------------------------------------------------------------------------------


def _ogg_layout(path: str, offset: int, n_bytes: int, what: str) -> tuple[int, int]:
    """``(channels, n_frames)`` of an Ogg Vorbis stream stored at ``offset`` without decoding it.

    The channel count comes from the Vorbis identification header in the first page; the length is
    the granule position of the last page that carries one.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            head = fh.read(min(n_bytes, 27 + 255 + 30))
            tail_start = offset + max(0, n_bytes - _OGG_TAIL_BYTES)
            fh.seek(tail_start)
            tail = fh.read(offset + n_bytes - tail_start)
    except OSError as exc:
        raise _fail(path, f"{what}: cannot be read ({exc})") from exc
    if len(head) < 28 or head[:4] != b"OggS" or head[4] != 0:
        raise _fail(path, f"{what}: no Ogg page at the start of the sample data (found {head[:4]!r})")
    n_segments = head[26]
    packet = head[27 + n_segments :]
    if len(packet) < 16 or packet[:7] != b"\x01vorbis":
        raise _fail(path, f"{what}: the Ogg stream does not start with a Vorbis identification header")
    channels = packet[11]
    pos = len(tail)
    while True:
        pos = tail.rfind(b"OggS", 0, pos)
        if pos < 0:
            raise _fail(
                path, f"{what}: no Ogg page with a granule position in the stream's last {len(tail)} bytes"
            )
        if pos + 14 <= len(tail) and tail[pos + 4] == 0:
            granule = struct.unpack_from("<q", tail, pos + 6)[0]
            if granule >= 0:
                break
    if channels < 1 or not 0 < granule <= MAX_SAMPLES_PER_NOTE:
        raise _fail(path, f"{what}: implausible Ogg Vorbis stream ({channels} channels, {granule} frames)")
    return channels, int(granule)


def _locate(st: _Structure, voice: _Voice, preset_name: str) -> _Part:
    """Find the audio of a voice and compute its pitch, length and loop."""
    path = st.path
    s = voice.sample
    what = f"pdta/shdr sample {s.name!r} (#{s.index})"
    if s.sample_type & spec.SampleType.ROM:
        raise _fail(path, f"{what} is a ROM sample; its audio is not stored in the file")
    if st.smpl is None:
        raise _fail(path, f"{what} needs sample data but the sdta list has no 'smpl' chunk")
    if s.sample_rate <= 0:
        raise _fail(path, f"{what} has sample rate {s.sample_rate} Hz")

    gens = voice.gens
    compressed = bool(s.sample_type & spec.SampleType.OGG_VORBIS)
    if compressed:
        if not s.start < s.end <= st.smpl.size:
            raise _fail(
                path,
                f"{what} spans bytes {s.start}..{s.end}, outside sdta/smpl ({st.smpl.size} bytes)",
            )
        channels, n_frames = _ogg_layout(path, st.smpl.offset + s.start, s.end - s.start, what)
        base_start, base_end = 0, n_frames
        base_loop = (s.loop_start, s.loop_end)
    else:
        n_points = st.smpl.size // 2
        if s.start >= s.end:
            raise _fail(path, f"{what} is empty (start {s.start}, end {s.end})")
        if not s.end <= n_points:
            raise _fail(
                path,
                f"{what} spans sample points {s.start}..{s.end}, outside sdta/smpl ({n_points} sample points)",
            )
        channels = 1
        base_start, base_end = s.start, s.end
        base_loop = (s.loop_start, s.loop_end)

    def offset(fine: G, coarse: G) -> int:
        return _signed(gens.get(fine, 0)) + spec.ADDRESS_COARSE_FACTOR * _signed(gens.get(coarse, 0))

    start = min(
        max(base_start + offset(G.START_ADDRS_OFFSET, G.START_ADDRS_COARSE_OFFSET), base_start), base_end
    )
    end = min(max(base_end + offset(G.END_ADDRS_OFFSET, G.END_ADDRS_COARSE_OFFSET), base_start), base_end)
    if end <= start:
        raise _fail(path, f"{what}: the zone's address offsets leave no audio (start {start}, end {end})")
    n = end - start

    loop_start: int | None = None
    loop_end: int | None = None
    mode = _signed(gens.get(G.SAMPLE_MODES, 0)) & 3
    if mode in (spec.SampleMode.LOOP_CONTINUOUS, spec.SampleMode.LOOP_UNTIL_RELEASE):
        ls = base_loop[0] + offset(G.STARTLOOP_ADDRS_OFFSET, G.STARTLOOP_ADDRS_COARSE_OFFSET) - start
        le = base_loop[1] + offset(G.ENDLOOP_ADDRS_OFFSET, G.ENDLOOP_ADDRS_COARSE_OFFSET) - start
        if 0 <= ls < le <= n:
            loop_start, loop_end = ls, le

    override = _signed(gens.get(G.OVERRIDING_ROOT_KEY, -1))
    if 0 <= override <= 127:
        root = override
    elif s.original_pitch <= 127:
        root = s.original_pitch
    else:
        root = 60  # 255 marks an unpitched sample; the specification says to treat 128..254 alike
    pitch_midi = root - (voice.tune_cents + s.pitch_correction) / 100.0

    loader: AudioLoader
    if compressed:
        loader = OggVorbisSlice(path, st.smpl.offset + s.start, s.end - s.start, start, n)
    else:
        lsb = st.sm24.offset + start if st.sm24 is not None else None
        loader = PcmSlice(path, st.smpl.offset + 2 * start, n, lsb)
    return _Part(voice, pitch_midi, channels, n, loop_start, loop_end, loader)


# --- stereo pairing, articulations, variations ------------------------------------------------------

#: A trailing upper-case L or R, optionally after a separator or inside brackets: "C4 L", "C4_R", "C4(L)".
_SIDE_SUFFIX = re.compile(r"^(?P<stem>.*?)[\s_\-.]*[(\[]?(?P<side>[LR])[)\]]?$")


def _side_from_name(name: str) -> tuple[str, str] | None:
    """``(stem, "L"|"R")`` when a sample name ends with a left/right marker, else None."""
    m = _SIDE_SUFFIX.match(name.strip())
    if m is None or not m.group("stem"):
        return None
    return m.group("stem").casefold(), m.group("side")


def _pairable(left: _Part, right: _Part) -> bool:
    return (
        left.channels == 1
        and right.channels == 1
        and left.voice.sample.sample_rate == right.voice.sample.sample_rate
        and left.voice.sample.index != right.voice.sample.index
    )


def _pair_group(group: list[_Part]) -> list[tuple[_Part, ...]]:
    """Split one group of parts (same preset zone, key and velocity range) into notes."""
    used: set[int] = set()
    notes: list[tuple[_Part, ...]] = []
    left_t, right_t = spec.SampleType.LEFT, spec.SampleType.RIGHT

    # a. sample links between complementary left/right samples
    for i, a in enumerate(group):
        if i in used or not a.voice.sample.sample_type & left_t:
            continue
        for j, b in enumerate(group):
            if (
                j not in used
                and j != i
                and b.voice.sample.index == a.voice.sample.link
                and b.voice.sample.sample_type & right_t
                and _pairable(a, b)
            ):
                used.update((i, j))
                notes.append((a, b))
                break

    # b. names that differ only by a trailing L/R marker
    sides = {i: _side_from_name(p.voice.sample.name) for i, p in enumerate(group) if i not in used}
    for i, si in sides.items():
        if i in used or si is None or si[1] != "L":
            continue
        for j, sj in sides.items():
            if j not in used and j != i and sj == (si[0], "R") and _pairable(group[i], group[j]):
                used.update((i, j))
                notes.append((group[i], group[j]))
                break

    # c. the last two, panned to opposite sides
    rest = [i for i in range(len(group)) if i not in used]
    if len(rest) == 2:
        a, b = group[rest[0]], group[rest[1]]
        if a.voice.pan > 0 > b.voice.pan:
            a, b = b, a
        if a.voice.pan < 0 < b.voice.pan and _pairable(a, b):
            used.update(rest)
            notes.append((a, b))

    notes.extend((group[i],) for i in range(len(group)) if i not in used)
    return notes


def _common_prefix(names: list[str]) -> str:
    first, last = min(names), max(names)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def _articulation_labels(parts: list[_Part]) -> dict[int, str]:
    """Articulation label of each instrument (by index) of a preset.

    Instruments are taken in order of first appearance and stacked into *layers*: an instrument joins
    the first layer none of whose instruments it overlaps on the key × velocity plane, else it opens a
    new layer. Layer 0 (the main one, normally the only one) is ``"default"``; another layer is named
    after its instrument, or the common prefix of its instruments' names.
    """
    grids: dict[int, NDArray[np.bool_]] = {}
    names: dict[int, str] = {}
    for part in parts:
        v = part.voice
        grid = grids.setdefault(v.instrument_index, np.zeros((128, 128), dtype=bool))
        grid[v.key_lo : v.key_hi + 1, v.vel_lo : v.vel_hi + 1] = True
        names[v.instrument_index] = v.instrument_name
    layers: list[tuple[NDArray[np.bool_], list[int]]] = []
    for index, grid in grids.items():
        for occupied, members in layers:
            if not np.any(occupied & grid):
                occupied |= grid
                members.append(index)
                break
        else:
            layers.append((grid.copy(), [index]))
    labels: dict[int, str] = {}
    taken: set[str] = set()
    for k, (_, members) in enumerate(layers):
        if k == 0:
            label = "default"
        else:
            member_names = [names[m] for m in members]
            prefix = _common_prefix(member_names).rstrip(" _-.([")
            label = prefix if len(member_names) > 1 and len(prefix) >= 3 else member_names[0]
            label = label or f"layer {k}"
        unique, n = label, 2
        while unique in taken:
            unique, n = f"{label} ({n})", n + 1
        taken.add(unique)
        labels.update(dict.fromkeys(members, unique))
    return labels


def _assemble(path: str, preset_name: str, parts: list[_Part]) -> list[NoteSample]:
    """Pair, label, merge and number the parts of one preset into notes."""
    groups: dict[tuple[int, int, int, int, int], list[_Part]] = {}
    for part in parts:
        v = part.voice
        groups.setdefault((v.preset_zone, v.key_lo, v.key_hi, v.vel_lo, v.vel_hi), []).append(part)
    labels = _articulation_labels(parts)

    # candidate notes, grouped by identical audio: the same sample mapped by several zones
    same_audio: dict[tuple[object, ...], list[NoteSample]] = {}
    for group in groups.values():
        for sides in _pair_group(group):
            first = sides[0]
            v = first.voice
            articulation = labels[v.instrument_index]
            n_samples = max(p.n_samples for p in sides)
            loader: AudioLoader = (
                first.loader
                if len(sides) == 1
                else StackedChannels(tuple(p.loader for p in sides), n_samples)
            )
            names = " + ".join(p.voice.sample.name for p in sides)
            note = NoteSample(
                pitch_midi=first.pitch_midi,
                key_lo=v.key_lo,
                key_hi=v.key_hi,
                velocity_lo=v.vel_lo,
                velocity_hi=v.vel_hi,
                dynamic=velocity_to_dynamic(v.vel_lo, v.vel_hi),
                articulation=articulation,
                variation=0,
                sample_rate=v.sample.sample_rate,
                channels=sum(p.channels for p in sides),
                n_samples=n_samples,
                loop_start=first.loop_start,
                loop_end=first.loop_end,
                source=f"{path} [{preset_name} / {v.instrument_name} / {names}]",
                loader=loader,
            )
            same_audio.setdefault((loader, round(first.pitch_midi, 9), articulation), []).append(note)

    # zones of the same audio whose velocity ranges overlap are layered copies of one note: merge them
    # (hull of their ranges); disjoint velocity ranges stay separate notes, one per velocity layer
    merged: list[NoteSample] = []
    for candidates in same_audio.values():
        candidates.sort(key=lambda n: (n.velocity_lo, n.velocity_hi))
        current = candidates[0]
        for note in candidates[1:]:
            if note.velocity_lo <= current.velocity_hi:
                hi = max(current.velocity_hi, note.velocity_hi)
                current = replace(
                    current,
                    key_lo=min(current.key_lo, note.key_lo),
                    key_hi=max(current.key_hi, note.key_hi),
                    velocity_hi=hi,
                    dynamic=velocity_to_dynamic(current.velocity_lo, hi),
                )
            else:
                merged.append(current)
                current = note
        merged.append(current)

    # number distinct samples that land on the same axis point, in file order
    counters: dict[tuple[object, ...], int] = {}
    notes: list[NoteSample] = []
    for note in merged:
        slot = (round(note.pitch_midi, 9), note.velocity_lo, note.velocity_hi, note.articulation)
        variation = counters.get(slot, 0)
        counters[slot] = variation + 1
        notes.append(replace(note, variation=variation))
    notes.sort(key=lambda n: (n.articulation, n.dynamic, n.pitch_midi, n.variation, n.key_lo))
    return notes
