"""Quantisation and the ``.cxe`` container of the event codec.

Layout (all integers little-endian; see ``docs/events.md`` for the normative text)::

    magic    4 bytes   b"\\x89CXE"
    version  1 byte    FORMAT_VERSION
    hlen     u32       length of the header
    header   hlen      UTF-8 JSON object
    hcrc     u32       CRC-32 of the header bytes
    chunks   ...       tag (4 ASCII bytes), u32 payload length, payload, u32 CRC-32 of tag + payload
                       ending with the empty chunk b"END "

Chunks: ``ROOM`` (the room vector, quantised), ``EVTS`` (the events, quantised and entropy coded).
Readers skip chunks they do not know (after checking their CRC) and reject a file that is corrupt,
truncated or of a newer version with :class:`calyx.errors.FormatError` naming the problem.

Event payload (``EVTS``): one coder byte (0 = stored, 1 = zlib raw deflate, 2 = lzma raw LZMA2)
then the coded bytes of a stream of unsigned LEB128 varints: the onset codes as differences between
consecutive (sorted) onsets, then for every parameter (in layout order) its reference value (the
column's median code) and one zig-zag-coded difference from it per event. The stream's decoded length is bounded by
``n_events * (N_PARAMS + 1) * 10 + 1024`` bytes, and readers never inflate more than that.
"""

from __future__ import annotations

import io
import json
import lzma
import struct
import zlib
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from calyx.errors import FormatError
from calyx.events.params import EVENT_PARAMS, LAYOUT_VERSION, N_PARAMS, N_ROOM_PARAMS, ROOM_PARAMS, EventList

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_EVENTS",
    "TIME_STEP_S",
    "dequantise",
    "from_bytes",
    "quantise",
    "quantise_indices",
    "read",
    "to_bytes",
    "write",
]

MAGIC = b"\x89CXE"
FORMAT_VERSION = 1
#: Quantisation step of onset times (0.1 ms: events of a chord interfere, and their relative
#: timing shapes the beating of shared partials).
TIME_STEP_S = 0.0001
#: Largest number of events a reader accepts.
MAX_EVENTS = 1_000_000
_MAX_HEADER = 1 << 16
_MAX_SAMPLES = 1 << 40
_CODER_STORED, _CODER_ZLIB, _CODER_LZMA = 0, 1, 2
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _steps_lows(specs: tuple[Any, ...]) -> tuple[FloatArray, FloatArray, IntArray]:
    step = np.array([p.step for p in specs])
    low = np.array([p.low for p in specs])
    n_levels = np.rint((np.array([p.high for p in specs]) - low) / step).astype(np.int64)
    return step, low, n_levels


def quantise_indices(events: EventList) -> tuple[IntArray, IntArray, IntArray]:
    """Integer codes of an event list: time indices, parameter indices, room indices.

    Values are clipped into their ranges first. Returns arrays of shapes ``(n_events,)``,
    ``(n_events, N_PARAMS)`` and ``(N_ROOM_PARAMS,)``.
    """
    step, low, n_levels = _steps_lows(EVENT_PARAMS)
    q = np.clip(np.rint((events.params - low) / step), 0, n_levels).astype(np.int64)
    r_step, r_low, r_levels = _steps_lows(ROOM_PARAMS)
    rq = np.clip(np.rint((events.room - r_low) / r_step), 0, r_levels).astype(np.int64)
    max_t = int(np.ceil(events.n_samples / events.sample_rate / TIME_STEP_S)) + 1
    tq = np.clip(np.rint(events.times_s / TIME_STEP_S), 0, max_t).astype(np.int64)
    return tq, q.reshape(-1, N_PARAMS), rq


def dequantise(
    tq: IntArray, q: IntArray, rq: IntArray, *, sample_rate: int, n_samples: int, info: dict[str, Any] | None = None
) -> EventList:
    """The event list whose values are the given integer codes (events sorted by time, then pitch)."""
    step, low, _ = _steps_lows(EVENT_PARAMS)
    r_step, r_low, _ = _steps_lows(ROOM_PARAMS)
    params = low + np.asarray(q, dtype=np.float64).reshape(-1, N_PARAMS) * step
    times = np.asarray(tq, dtype=np.float64) * TIME_STEP_S
    room = r_low + np.asarray(rq, dtype=np.float64) * r_step
    return EventList(times, params, room, sample_rate, n_samples, dict(info or {})).sorted()


def quantise(events: EventList) -> EventList:
    """Snap every value to the grid the bitstream stores (and sort the events).

    ``from_bytes(to_bytes(quantise(e)))`` equals ``quantise(e)`` exactly.
    """
    tq, q, rq = quantise_indices(events)
    return dequantise(tq, q, rq, sample_rate=events.sample_rate, n_samples=events.n_samples, info=events.info)


# --------------------------------------------------------------------------------------------------
# Varints


def _zigzag(v: IntArray) -> IntArray:
    return np.where(v >= 0, 2 * v, -2 * v - 1).astype(np.int64)


def _unzigzag(u: IntArray) -> IntArray:
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2).astype(np.int64)


def _put_varints(values: IntArray, out: bytearray) -> None:
    for v in np.asarray(values, dtype=np.int64).tolist():
        if v < 0:
            raise FormatError(f"cannot store the negative varint {v}")
        while True:
            byte = v & 0x7F
            v >>= 7
            if v:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break


class _VarintReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> IntArray:
        out = np.empty(n, dtype=np.int64)
        data, pos = self.data, self.pos
        for i in range(n):
            v = 0
            shift = 0
            while True:
                if pos >= len(data):
                    raise FormatError("event payload ends in the middle of a number (truncated or corrupt)")
                b = data[pos]
                pos += 1
                v |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
                shift += 7
                if shift > 56:
                    raise FormatError("event payload holds a number longer than 8 bytes (corrupt)")
            out[i] = v
        self.pos = pos
        return out


def _encode_events(tq: IntArray, q: IntArray) -> bytes:
    n = tq.size
    raw = bytearray()
    if n:
        order = np.lexsort((q[:, 0], tq))
        tq, q = tq[order], q[order]
        _put_varints(np.diff(tq, prepend=0), raw)
        for c in range(N_PARAMS):
            col = q[:, c]
            ref = int(np.median(col))
            _put_varints(np.array([ref]), raw)
            _put_varints(_zigzag(col - ref), raw)
    candidates = [
        bytes([_CODER_STORED]) + bytes(raw),
        bytes([_CODER_ZLIB]) + zlib.compress(bytes(raw), 9, wbits=-15),
        bytes([_CODER_LZMA]) + lzma.compress(bytes(raw), format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS),
    ]
    return min(candidates, key=len)


def _decode_events(payload: bytes, n_events: int) -> tuple[IntArray, IntArray]:
    if not payload:
        raise FormatError("EVTS chunk is empty; it must hold at least the coder byte")
    coder, body = payload[0], payload[1:]
    limit = n_events * (N_PARAMS + 1) * 10 + 1024
    try:
        if coder == _CODER_STORED:
            raw = body
        elif coder == _CODER_ZLIB:
            d = zlib.decompressobj(wbits=-15)
            raw = d.decompress(body, limit)
            if not d.eof or d.unconsumed_tail or d.unused_data:
                raise FormatError("EVTS deflate stream is unterminated or longer than its events allow (corrupt)")
        elif coder == _CODER_LZMA:
            dl = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
            raw = dl.decompress(body, limit)
            if not dl.eof or dl.unused_data:
                raise FormatError("EVTS lzma stream is unterminated or longer than its events allow (corrupt)")
        else:
            raise FormatError(f"EVTS uses the unknown coder {coder}; this reader knows 0 (stored), 1 (zlib), 2 (lzma)")
    except (zlib.error, lzma.LZMAError) as exc:
        raise FormatError(f"EVTS payload cannot be decompressed ({exc}); the file is corrupt") from exc
    if len(raw) > limit:
        raise FormatError("EVTS payload is larger than its events allow (corrupt)")
    reader = _VarintReader(bytes(raw))
    if n_events == 0:
        if raw:
            raise FormatError("EVTS payload holds data but the header declares no events")
        return np.zeros(0, dtype=np.int64), np.zeros((0, N_PARAMS), dtype=np.int64)
    tq = np.cumsum(reader.take(n_events))
    _, _, n_levels = _steps_lows(EVENT_PARAMS)
    q = np.empty((n_events, N_PARAMS), dtype=np.int64)
    for c in range(N_PARAMS):
        ref = int(reader.take(1)[0])
        q[:, c] = ref + _unzigzag(reader.take(n_events))
        bad = (q[:, c] < 0) | (q[:, c] > n_levels[c])
        if np.any(bad):
            raise FormatError(
                f"event parameter {EVENT_PARAMS[c].name} holds a code outside 0..{n_levels[c]} (corrupt)"
            )
    if reader.pos != len(raw):
        raise FormatError(f"EVTS payload has {len(raw) - reader.pos} bytes after its last event (corrupt)")
    return tq, q


# --------------------------------------------------------------------------------------------------
# Container


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("<I", len(payload)) + payload + struct.pack("<I", zlib.crc32(tag + payload))


def to_bytes(events: EventList) -> bytes:
    """Serialise (quantising first) an event list to ``.cxe`` bytes."""
    tq, q, rq = quantise_indices(events)
    header = {
        "format": "calyx-events",
        "layout": LAYOUT_VERSION,
        "sample_rate": int(events.sample_rate),
        "n_samples": int(events.n_samples),
        "n_events": int(tq.size),
    }
    hbytes = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    room = bytearray()
    _put_varints(rq, room)
    out = bytearray(MAGIC)
    out.append(FORMAT_VERSION)
    out += struct.pack("<I", len(hbytes)) + hbytes + struct.pack("<I", zlib.crc32(hbytes))
    out += _chunk(b"ROOM", bytes(room))
    out += _chunk(b"EVTS", _encode_events(tq, q))
    out += _chunk(b"END ", b"")
    return bytes(out)


def _read_exact(fh: IO[bytes], n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise FormatError(f"file is truncated: {what} needs {n} bytes, only {len(data)} remain")
    return data


def _int_field(header: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = header.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise FormatError(f"header field {key!r} must be an integer in {lo}..{hi}, got {v!r}")
    return v


def read(fh: IO[bytes]) -> EventList:
    """Read a ``.cxe`` stream from a binary file object."""
    magic = fh.read(len(MAGIC))
    if magic != MAGIC:
        raise FormatError(f"not a Calyx event file: starts with {magic!r}, expected {MAGIC!r}")
    version = _read_exact(fh, 1, "version byte")[0]
    if version > FORMAT_VERSION:
        raise FormatError(
            f"file format version {version} is newer than this reader (version {FORMAT_VERSION}); upgrade Calyx"
        )
    if version < 1:
        raise FormatError(f"file format version {version} does not exist")
    (hlen,) = struct.unpack("<I", _read_exact(fh, 4, "header length"))
    if hlen > _MAX_HEADER:
        raise FormatError(f"header length {hlen} exceeds the limit of {_MAX_HEADER} bytes (corrupt)")
    hbytes = _read_exact(fh, hlen, "header")
    (hcrc,) = struct.unpack("<I", _read_exact(fh, 4, "header CRC"))
    if zlib.crc32(hbytes) != hcrc:
        raise FormatError("header CRC mismatch: the file is corrupt")
    try:
        header = json.loads(hbytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"header is not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != "calyx-events":
        raise FormatError("header does not describe a calyx-events file")
    layout = _int_field(header, "layout", 0, 1 << 16)
    if layout != LAYOUT_VERSION:
        raise FormatError(f"event layout {layout} is not supported by this reader (it reads layout {LAYOUT_VERSION})")
    sample_rate = _int_field(header, "sample_rate", 1000, 768000)
    n_samples = _int_field(header, "n_samples", 0, _MAX_SAMPLES)
    n_events = _int_field(header, "n_events", 0, MAX_EVENTS)
    chunks: dict[bytes, bytes] = {}
    while True:
        tag = _read_exact(fh, 4, "chunk tag")
        (length,) = struct.unpack("<I", _read_exact(fh, 4, f"length of chunk {tag!r}"))
        limit = n_events * (N_PARAMS + 1) * 10 + 4096
        if length > limit:
            raise FormatError(f"chunk {tag!r} claims {length} bytes, more than {n_events} events can need (corrupt)")
        payload = _read_exact(fh, length, f"chunk {tag!r}")
        (crc,) = struct.unpack("<I", _read_exact(fh, 4, f"CRC of chunk {tag!r}"))
        if zlib.crc32(tag + payload) != crc:
            raise FormatError(f"CRC mismatch in chunk {tag!r}: the file is corrupt")
        if tag == b"END ":
            break
        if tag in chunks:
            raise FormatError(f"chunk {tag!r} appears twice")
        chunks[tag] = payload  # unknown chunks are kept aside and ignored
    for need in (b"ROOM", b"EVTS"):
        if need not in chunks:
            raise FormatError(f"required chunk {need.decode()!r} is missing")
    rreader = _VarintReader(chunks[b"ROOM"])
    rq = rreader.take(N_ROOM_PARAMS)
    if rreader.pos != len(chunks[b"ROOM"]):
        raise FormatError("ROOM chunk has trailing bytes (corrupt)")
    _, _, r_levels = _steps_lows(ROOM_PARAMS)
    if np.any(rq > r_levels):
        raise FormatError("ROOM chunk holds a code out of range (corrupt)")
    tq, q = _decode_events(chunks[b"EVTS"], n_events)
    return dequantise(tq, q, rq, sample_rate=sample_rate, n_samples=n_samples)


def from_bytes(data: bytes) -> EventList:
    """Parse ``.cxe`` bytes (see :func:`read`); trailing bytes after the END chunk are an error."""
    fh = io.BytesIO(data)
    events = read(fh)
    if fh.tell() != len(data):
        raise FormatError(f"{len(data) - fh.tell()} unexpected bytes after the END chunk")
    return events


def write(events: EventList, fh: IO[bytes]) -> int:
    """Write ``events`` to a binary file object; returns the number of bytes written."""
    data = to_bytes(events)
    fh.write(data)
    return len(data)
