"""The chunked container shared by Calyx's file formats (``.calyx`` instruments, ``.cxe`` events).

Layout (all integers little-endian)::

    magic        4 bytes   b"CLYX" (instrument) or b"CXEV" (events)
    version      u8        format major version; readers reject a newer major version
    minor        u8        minor version; newer minors only add chunk types (skippable)
    reserved     u16       0
    header_len   u32       length of the JSON header in bytes (at most MAX_HEADER_BYTES)
    header_crc   u32       CRC-32 of the header bytes
    header       JSON, UTF-8
    chunk*       fourcc (4 ASCII bytes) | length u64 | crc32 u32 | payload (length bytes)
    end chunk    fourcc b"END " with length 0 and crc 0

A reader indexes the chunks without reading their payloads, so it can load only what it needs
(one articulation, say). Unknown chunk types are skipped. Any inconsistency - bad magic, a future
version, a length beyond the end of the file, a checksum mismatch, a missing end chunk - raises
:class:`calyx.errors.FormatError` naming the file, the chunk and the offending value. Nothing is
allocated before its size has been checked against the file's size.

Arrays are stored with :func:`pack_array` / :func:`unpack_array`: a small descriptor (dtype code,
shape) then the raw little-endian data, optionally compressed (zlib or lzma). Never pickle.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from calyx.core.audio import atomic_output
from calyx.errors import FormatError, ParameterError

__all__ = [
    "MAX_HEADER_BYTES",
    "ChunkInfo",
    "ContainerReader",
    "container_bytes",
    "pack_array",
    "read_container_bytes",
    "unpack_array",
    "write_container",
]

MAX_HEADER_BYTES = 16 << 20
_PREAMBLE = struct.Struct("<4sBBHII")
_CHUNK = struct.Struct("<4sQI")
_END = b"END "
_DTYPES: dict[int, str] = {1: "<u1", 2: "<i1", 3: "<u2", 4: "<i2", 5: "<u4", 6: "<i4", 7: "<f4", 8: "<f8", 9: "<i8"}
_DTYPE_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}
_COMPRESSION = {0: "none", 1: "zlib", 2: "lzma"}
_ARRAY_HEAD = struct.Struct("<BBB")  # dtype code, compression, ndim
MAX_ARRAY_BYTES = 1 << 34


@dataclass(frozen=True)
class ChunkInfo:
    """Where a chunk's payload lies in the file."""

    fourcc: str
    offset: int
    length: int
    crc32: int


def _fourcc(tag: str) -> bytes:
    b = tag.encode("ascii")
    if len(b) != 4:
        raise ParameterError(f"chunk type must be 4 ASCII characters, got {tag!r}")
    return b


def write_container(
    path: str | os.PathLike[str],
    *,
    magic: bytes,
    version: int,
    header: dict[str, Any],
    chunks: Iterable[tuple[str, bytes]],
    minor: int = 0,
    force: bool = False,
) -> int:
    """Write a container atomically; returns its size in bytes.

    The JSON header is serialised with sorted keys and no whitespace so that identical input gives
    byte-identical files.
    """
    data = container_bytes(magic=magic, version=version, header=header, chunks=chunks, minor=minor)
    with atomic_output(path, force=force) as fh:
        fh.write(data)
    return len(data)


def container_bytes(
    *, magic: bytes, version: int, header: dict[str, Any], chunks: Iterable[tuple[str, bytes]], minor: int = 0
) -> bytes:
    if len(magic) != 4:
        raise ParameterError(f"magic must be 4 bytes, got {magic!r}")
    head = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(head) > MAX_HEADER_BYTES:
        raise ParameterError(f"header of {len(head)} bytes exceeds {MAX_HEADER_BYTES}")
    out = io.BytesIO()
    out.write(_PREAMBLE.pack(magic, version, minor, 0, len(head), zlib.crc32(head)))
    out.write(head)
    for tag, payload in chunks:
        fourcc = _fourcc(tag)
        if fourcc == _END:
            raise ParameterError("chunk type 'END ' is reserved")
        out.write(_CHUNK.pack(fourcc, len(payload), zlib.crc32(payload)))
        out.write(payload)
    out.write(_CHUNK.pack(_END, 0, 0))
    return out.getvalue()


class ContainerReader:
    """Index a container and read chunks on demand.

    Parameters
    ----------
    source : path or binary file object (seekable)
    magic : bytes
        Expected magic bytes.
    max_version : int
        Newest major version this reader understands.
    name : str, optional
        How to name the source in error messages (defaults to the path).
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        *,
        magic: bytes,
        max_version: int,
        name: str | None = None,
    ) -> None:
        if isinstance(source, (str, os.PathLike)):
            p = Path(source)
            if not p.is_file():
                raise FormatError(f"{p}: no such file")
            self._fh: IO[bytes] = open(p, "rb")  # closed by close() / __exit__
            self._owned = True
            self.name = name or str(p)
        else:
            self._fh = source
            self._owned = False
            self.name = name or str(getattr(source, "name", "<stream>"))
        try:
            self._index(magic, max_version)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ContainerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._fh.close()

    def _fail(self, message: str) -> FormatError:
        return FormatError(f"{self.name}: {message}")

    def _read(self, n: int, what: str) -> bytes:
        data = self._fh.read(n)
        if len(data) != n:
            raise self._fail(f"truncated: {what} needs {n} bytes, {len(data)} available")
        return data

    def _index(self, magic: bytes, max_version: int) -> None:
        fh = self._fh
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(0)
        self.file_size = size
        pre = self._read(_PREAMBLE.size, "the preamble")
        got_magic, version, minor, _reserved, head_len, head_crc = _PREAMBLE.unpack(pre)
        if got_magic != magic:
            raise self._fail(f"not a {magic.decode('ascii', 'replace')} file (magic bytes {got_magic!r})")
        if version > max_version:
            raise self._fail(
                f"format version {version}.{minor} is newer than this reader (up to {max_version}.x); "
                "upgrade calyx to read it"
            )
        if version == 0:
            raise self._fail("format version 0 is invalid")
        self.version = version
        self.minor = minor
        if head_len > MAX_HEADER_BYTES or head_len > size - fh.tell():
            raise self._fail(f"header length {head_len} is larger than the file or the {MAX_HEADER_BYTES}-byte limit")
        raw = self._read(head_len, "the header")
        if zlib.crc32(raw) != head_crc:
            raise self._fail("header checksum mismatch (the file is corrupt)")
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._fail(f"header is not valid JSON ({exc})") from exc
        if not isinstance(header, dict):
            raise self._fail("header must be a JSON object")
        self.header: dict[str, Any] = header
        chunks: list[ChunkInfo] = []
        pos = fh.tell()
        while True:
            if size - pos < _CHUNK.size:
                raise self._fail(f"truncated: no end chunk (file ends at byte {size})")
            fh.seek(pos)
            tag, length, crc = _CHUNK.unpack(self._read(_CHUNK.size, "a chunk header"))
            pos += _CHUNK.size
            if tag == _END:
                break
            try:
                fourcc = tag.decode("ascii")
            except UnicodeDecodeError as exc:
                raise self._fail(f"chunk type {tag!r} at byte {pos - _CHUNK.size} is not ASCII") from exc
            if length > size - pos:
                raise self._fail(
                    f"truncated: chunk {fourcc!r} at byte {pos - _CHUNK.size} declares {length} bytes, "
                    f"{size - pos} available"
                )
            chunks.append(ChunkInfo(fourcc, pos, length, crc))
            pos += length
        self.chunks = chunks

    def find(self, fourcc: str) -> list[ChunkInfo]:
        """All chunks of a type, in file order."""
        return [c for c in self.chunks if c.fourcc == fourcc]

    def read(self, chunk: ChunkInfo) -> bytes:
        """A chunk's payload, checksum verified."""
        self._fh.seek(chunk.offset)
        data = self._read(chunk.length, f"chunk {chunk.fourcc!r}")
        if zlib.crc32(data) != chunk.crc32:
            raise self._fail(f"checksum mismatch in chunk {chunk.fourcc!r} at byte {chunk.offset} (the file is corrupt)")
        return data

    def read_one(self, fourcc: str) -> bytes:
        found = self.find(fourcc)
        if len(found) != 1:
            raise self._fail(f"expected exactly one {fourcc!r} chunk, found {len(found)}")
        return self.read(found[0])


def read_container_bytes(data: bytes, *, magic: bytes, max_version: int, name: str = "<bytes>") -> ContainerReader:
    """A :class:`ContainerReader` over bytes in memory."""
    return ContainerReader(io.BytesIO(data), magic=magic, max_version=max_version, name=name)


def pack_array(a: NDArray[Any], *, compression: str = "zlib", level: int = 9) -> bytes:
    """Serialise a numeric array: ``dtype code u8 | compression u8 | ndim u8 | shape u64*ndim | data``."""
    arr = np.ascontiguousarray(a)
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    code = _DTYPE_CODES.get(np.dtype(dt))
    if code is None:
        raise ParameterError(f"cannot store arrays of dtype {arr.dtype}; use one of {sorted(_DTYPES.values())}")
    comp = {v: k for k, v in _COMPRESSION.items()}.get(compression)
    if comp is None:
        raise ParameterError(f"compression must be one of {list(_COMPRESSION.values())}, got {compression!r}")
    raw = arr.astype(_DTYPES[code], copy=False).tobytes()
    if comp == 1:
        raw = zlib.compress(raw, level)
    elif comp == 2:
        raw = lzma.compress(raw, preset=min(level, 9) | lzma.PRESET_EXTREME)
    return _ARRAY_HEAD.pack(code, comp, arr.ndim) + struct.pack(f"<{arr.ndim}Q", *arr.shape) + raw


def unpack_array(data: bytes, *, what: str = "array") -> NDArray[Any]:
    """Inverse of :func:`pack_array`; raises :class:`FormatError` on any inconsistency."""
    if len(data) < _ARRAY_HEAD.size:
        raise FormatError(f"{what}: truncated array descriptor")
    code, comp, ndim = _ARRAY_HEAD.unpack_from(data)
    if code not in _DTYPES or comp not in _COMPRESSION or ndim > 8:
        raise FormatError(f"{what}: invalid array descriptor (dtype code {code}, compression {comp}, ndim {ndim})")
    end = _ARRAY_HEAD.size + 8 * ndim
    if len(data) < end:
        raise FormatError(f"{what}: truncated array shape")
    shape = struct.unpack_from(f"<{ndim}Q", data, _ARRAY_HEAD.size)
    dtype = np.dtype(_DTYPES[code])
    n_items = 1
    for s in shape:
        n_items *= int(s)
    n_bytes = n_items * dtype.itemsize
    if n_bytes > MAX_ARRAY_BYTES:
        raise FormatError(f"{what}: declared shape {shape} would need {n_bytes} bytes")
    raw = data[end:]
    try:
        if comp == 1:
            d = zlib.decompressobj()
            raw = d.decompress(raw, n_bytes + 1)
        elif comp == 2:
            dl = lzma.LZMADecompressor()
            raw = dl.decompress(raw, max_length=n_bytes + 1)
    except (zlib.error, lzma.LZMAError) as exc:
        raise FormatError(f"{what}: compressed data is corrupt ({exc})") from exc
    if len(raw) != n_bytes:
        raise FormatError(f"{what}: shape {shape} needs {n_bytes} bytes of data, found {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
