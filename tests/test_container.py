"""The shared chunked container: round trips, determinism, and rejection of bad files."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calyx.errors import FormatError
from calyx.format.container import (
    ContainerReader,
    container_bytes,
    pack_array,
    read_container_bytes,
    unpack_array,
    write_container,
)

MAGIC = b"TEST"


def _sample() -> bytes:
    a = np.arange(12, dtype=np.int16).reshape(3, 4)
    return container_bytes(
        magic=MAGIC, version=1, header={"b": 2, "a": [1, 2]},
        chunks=[("ARR1", pack_array(a)), ("XTRA", b"unknown payload"), ("ARR2", pack_array(np.ones(5, np.float32), compression="lzma"))],
    )


def test_round_trip_and_lazy_index(tmp_path) -> None:
    path = tmp_path / "x.bin"
    n = write_container(path, magic=MAGIC, version=1, header={"k": "v"}, chunks=[("DATA", b"abc")])
    assert path.stat().st_size == n
    with ContainerReader(path, magic=MAGIC, max_version=1) as r:
        assert r.header == {"k": "v"}
        assert [c.fourcc for c in r.chunks] == ["DATA"]
        assert r.read_one("DATA") == b"abc"


def test_arrays_round_trip_exactly() -> None:
    r = read_container_bytes(_sample(), magic=MAGIC, max_version=1)
    np.testing.assert_array_equal(unpack_array(r.read_one("ARR1")), np.arange(12, dtype=np.int16).reshape(3, 4))
    np.testing.assert_array_equal(unpack_array(r.read_one("ARR2")), np.ones(5, np.float32))
    assert r.read_one("XTRA") == b"unknown payload"  # unknown chunks are indexed and skippable


def test_identical_input_gives_identical_bytes() -> None:
    assert _sample() == _sample()


def test_refuses_to_overwrite_without_force(tmp_path) -> None:
    path = tmp_path / "x.bin"
    write_container(path, magic=MAGIC, version=1, header={}, chunks=[])
    with pytest.raises(FileExistsError):
        write_container(path, magic=MAGIC, version=1, header={}, chunks=[])
    write_container(path, magic=MAGIC, version=1, header={"x": 1}, chunks=[], force=True)
    assert ContainerReader(path, magic=MAGIC, max_version=1).header == {"x": 1}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"NOPE" + b[4:], "magic"),
        (lambda b: b[:4] + bytes([9]) + b[5:], "newer"),
        (lambda b: b[:20] + b"X" + b[21:], "checksum"),
        (lambda b: b[:-20], "truncated"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b[:8] + struct.pack("<I", 1 << 30) + b[12:], "header length"),
    ],
)
def test_bad_files_raise_format_error(mutate, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        r = read_container_bytes(mutate(_sample()), magic=MAGIC, max_version=1)
        for c in r.chunks:
            r.read(c)


def test_corrupt_payload_is_detected_on_read() -> None:
    data = bytearray(_sample())
    data[-30] ^= 0xFF
    r = read_container_bytes(bytes(data), magic=MAGIC, max_version=1)
    with pytest.raises(FormatError, match="checksum"):
        for c in r.chunks:
            r.read(c)


def test_array_with_huge_declared_shape_is_rejected_without_allocating() -> None:
    bad = pack_array(np.zeros(4, np.float32))
    bad = bad[:3] + struct.pack("<Q", 1 << 60) + bad[11:]
    with pytest.raises(FormatError, match=r"would need|needs"):
        unpack_array(bad)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_containers_raise_only_format_error(data: st.DataObject) -> None:
    raw = bytearray(_sample())
    n_flips = data.draw(st.integers(0, 4))
    for _ in range(n_flips):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    blob = bytes(raw[:cut])
    try:
        r = read_container_bytes(blob, magic=MAGIC, max_version=1)
        for c in r.chunks:
            payload = r.read(c)
            if c.fourcc.startswith("ARR"):
                unpack_array(payload)
    except FormatError:
        pass
