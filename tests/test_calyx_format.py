"""The ``.calyx`` file: round trip, byte-identical output, lazy loading, the committed test vector,
and rejection of corrupt, truncated, oversized and future-version files (including a fuzz test)."""

from __future__ import annotations

import importlib.util
import io
import json
import struct
import sys
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calyx.errors import FormatError, ParameterError
from calyx.format import calyx_file
from calyx.format.calyx_file import info, instrument_bytes, load, save
from calyx.format.container import ContainerReader

VECTORS = Path(__file__).resolve().parent / "data" / "calyx-vectors"


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
TINY = (VECTORS / "tiny.calyx").read_bytes()


# --- helpers that rewrite a file with valid checksums, so that corruption reaches the decoders ------


def _split(data: bytes) -> tuple[bytes, dict[str, object], list[tuple[bytes, bytes]]]:
    pre = data[:16]
    head_len = struct.unpack_from("<I", data, 8)[0]
    header = json.loads(data[16 : 16 + head_len])
    chunks = []
    pos = 16 + head_len
    while True:
        tag, length, _ = struct.unpack_from("<4sQI", data, pos)
        pos += 16
        if tag == b"END ":
            break
        chunks.append((tag, data[pos : pos + length]))
        pos += length
    return pre, header, chunks


def _join(pre: bytes, header: dict[str, object] | bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    head = header if isinstance(header, bytes) else json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    out = io.BytesIO()
    out.write(pre[:8] + struct.pack("<II", len(head), zlib.crc32(head)) + head)
    for tag, payload in chunks:
        out.write(struct.pack("<4sQI", tag, len(payload), zlib.crc32(payload)) + payload)
    out.write(struct.pack("<4sQI", b"END ", 0, 0))
    return out.getvalue()


def _load_all(data: bytes) -> None:
    inst = load(data, lazy=False)
    for i in range(len(inst.notes)):
        inst.note_model(i)


# --- round trip, determinism, laziness --------------------------------------------------------------


def test_the_test_vector_decodes_to_its_expected_summary() -> None:
    expected = json.loads((VECTORS / "tiny.expected.json").read_text())
    got = json.loads(json.dumps(SYN.vector_summary(load(VECTORS / "tiny.calyx"))))
    for note_got, note_exp in zip(got.pop("notes"), expected.pop("notes"), strict=True):
        for k, v in note_exp.items():
            if isinstance(v, float):
                assert note_got[k] == pytest.approx(v, abs=1e-3), k
            else:
                assert note_got[k] == v, k
    assert got == expected


def test_the_test_vector_regenerates_byte_for_byte() -> None:
    assert instrument_bytes(SYN.vector_instrument()) == TINY


def test_save_load_round_trip(tmp_path: Path) -> None:
    inst = SYN.vector_instrument()
    path = tmp_path / "x.calyx"
    size = save(inst, path)
    assert size == path.stat().st_size == len(TINY)
    back = load(path)
    assert back.notes == inst.notes and back.settings == inst.settings and back.method == inst.method
    for a in inst.articulations:
        for name, qa in inst.articulation(a).factors.arrays.items():
            np.testing.assert_array_equal(back.articulation(a).factors.arrays[name].q, qa.q)
        np.testing.assert_allclose(back.articulation(a).scalars, inst.articulation(a).scalars)
    for i in range(len(inst.notes)):
        np.testing.assert_array_equal(back.note_model(i).amplitude, inst.note_model(i).amplitude)
    summary = info(path)
    assert summary["file_bytes"] == size and summary["method"] == "tucker"
    assert summary["ratio_vs_pcm16"] == pytest.approx(inst.pcm16_bytes() / size)


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "x.calyx"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        save(SYN.vector_instrument(), path)
    assert path.read_bytes() == b"precious"
    save(SYN.vector_instrument(), path, force=True)
    assert path.read_bytes() == TINY


def test_loading_is_lazy_and_can_select_one_articulation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.calyx"
    path.write_bytes(TINY)
    read: list[int] = []
    original = ContainerReader.read

    def spy(self: ContainerReader, chunk):
        read.append(chunk.offset)
        return original(self, chunk)

    monkeypatch.setattr(ContainerReader, "read", spy)
    inst = load(path)
    assert read == [] and not inst.is_loaded("sustain")
    only = load(path, articulation="staccato")
    assert only.articulations == ("staccato",)
    only.note_model(3)
    staccato_chunks = set(read)
    with ContainerReader(path, magic=b"CLYX", max_version=1) as r:
        all_chunks = {c.offset for c in r.chunks}
    assert staccato_chunks and staccato_chunks < all_chunks  # only its own chunks were read
    with pytest.raises(ParameterError):
        only.note_model(0)  # a sustain note: that articulation was not loaded
    with pytest.raises(ParameterError):
        load(path, articulation="legato")


# --- rejection -------------------------------------------------------------------------------------


def test_rejects_a_future_major_version() -> None:
    data = bytearray(TINY)
    data[4] = 2
    with pytest.raises(FormatError, match="newer"):
        load(bytes(data))


def test_accepts_a_newer_minor_version_and_unknown_chunks() -> None:
    pre, header, chunks = _split(TINY)
    data = _join(pre[:5] + b"\x07" + pre[6:], header, [*chunks, (b"XTRA", b"future data")])
    _load_all(data)


@pytest.mark.parametrize("cut", [0, 3, 15, 40, 1000, len(TINY) // 2, len(TINY) - 17, len(TINY) - 1])
def test_rejects_truncated_files(cut: int) -> None:
    with pytest.raises(FormatError):
        _load_all(TINY[:cut])


def _edit_header(fn) -> bytes:
    pre, header, chunks = _split(TINY)
    fn(header)
    return _join(pre, header, chunks)


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h.pop("method"),
        lambda h: h.update(method="svd"),
        lambda h: h.update(sample_rate=-1),
        lambda h: h.update(channels=True),
        lambda h: h["time"].update(n_times=999),
        lambda h: h["time"].update(step_s=1e-9, attack_s=1e3),
        lambda h: h["features"].update(n_partials=5000),
        lambda h: h["notes"]["n_samples"].__setitem__(0, 0),
        lambda h: h["notes"]["loop"].__setitem__(0, [5, 99999]),
        lambda h: h["notes"]["velocity"].__setitem__(1, [90, 10]),
        lambda h: h["notes"]["pitch_midi"].append(60.0),
        lambda h: h["articulations"][0]["notes"].append(3),
        lambda h: h["articulations"][1].update(name="sustain"),
        lambda h: h["articulations"][0]["ranks"].update(time=999),
        lambda h: h["articulations"][0]["chunks"].update(NOTE=7),
        lambda h: h["articulations"][0]["chunks"]["FACT"].pop(),
        lambda h: h.update(notes=[]),
        lambda h: h.update(articulations={}),
    ],
)
def test_rejects_inconsistent_headers(edit) -> None:
    with pytest.raises(FormatError):
        _load_all(_edit_header(edit))


def test_rejects_inconsistent_chunks() -> None:
    pre, header, chunks = _split(TINY)
    facts = [i for i, (t, _) in enumerate(chunks) if t == b"FACT"]
    notes = [i for i, (t, _) in enumerate(chunks) if t == b"NOTE"]

    def variant(index: int, payload: bytes) -> bytes:
        c = list(chunks)
        c[index] = (c[index][0], payload)
        return _join(pre, header, c)

    first = chunks[facts[0]][1]
    cases = [
        variant(facts[0], first[:-3]),  # coded data cut
        variant(facts[0], first + b"\0"),  # trailing byte
        variant(facts[0], first[:2] + b"\x09" + first[3:]),  # unknown factor id
        variant(facts[0], first[:3] + b"\x05" + first[4:]),  # unknown coder
        variant(facts[0], first[:8] + struct.pack("<I", 12345) + first[12:]),  # wrong shape
        variant(facts[1], chunks[facts[2]][1]),  # a factor in the wrong place
        variant(notes[0], chunks[notes[1]][1]),  # another articulation's note scalars
        _join(pre, header, [c for i, c in enumerate(chunks) if i != facts[-1]]),  # a chunk missing
    ]
    for data in cases:
        with pytest.raises(FormatError):
            _load_all(data)


def test_rejects_non_finite_steps() -> None:
    pre, header, chunks = _split(TINY)
    i = next(i for i, (t, _) in enumerate(chunks) if t == b"FACT")
    payload = bytearray(chunks[i][1])
    ndim = payload[4]
    at = 6 + 4 * ndim + 8  # first step
    payload[at : at + 4] = struct.pack("<f", float("nan"))
    c = list(chunks)
    c[i] = (c[i][0], bytes(payload))
    with pytest.raises(FormatError, match="steps"):
        _load_all(_join(pre, header, c))


def test_rejects_oversized_declarations() -> None:
    pre, header, chunks = _split(TINY)
    huge = _join(pre, header, chunks)
    # a chunk that declares more bytes than the file holds
    bad = bytearray(huge)
    pos = 16 + struct.unpack_from("<I", huge, 8)[0]
    bad[pos + 4 : pos + 12] = struct.pack("<Q", 1 << 40)
    with pytest.raises(FormatError, match="truncated"):
        load(bytes(bad))
    # a header length beyond the file
    bad = bytearray(huge)
    bad[8:12] = struct.pack("<I", 1 << 30)
    with pytest.raises(FormatError):
        load(bytes(bad))
    # ranks that would need an enormous array
    h = json.loads(json.dumps(header))
    h["articulations"][0]["ranks"] = {"pitch": 2, "layer": 2, "time": 14, "feature": 10}
    h["time"]["n_times"] = 14
    with pytest.raises(FormatError):
        _load_all(_join(pre, h, chunks))


# --- fuzz ------------------------------------------------------------------------------------------


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=0, max_value=len(TINY)),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=len(TINY) - 1), st.integers(min_value=1, max_value=255)), max_size=4),
)
def test_fuzz_mutated_files_raise_only_format_errors(cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(TINY)
    for pos, xor in flips:
        data[pos] ^= xor
    try:
        _load_all(bytes(data[:cut]) if cut < len(TINY) else bytes(data))
    except FormatError:
        pass


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=st.integers(min_value=0, max_value=64),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=1 << 16), st.integers(min_value=1, max_value=255)), min_size=1, max_size=6),
    cut=st.integers(min_value=0, max_value=1 << 16),
)
def test_fuzz_mutations_behind_valid_checksums_raise_only_format_errors(target: int, flips: list[tuple[int, int]], cut: int) -> None:
    """Corrupt the header text or one chunk, then fix the checksums so that the decoders see it."""
    pre, header, chunks = _split(TINY)
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    parts = [head] + [p for _, p in chunks]
    k = target % len(parts)
    part = bytearray(parts[k])
    for pos, xor in flips:
        part[pos % len(part)] ^= xor
    if cut % 3 == 0:
        part = part[: cut % (len(part) + 1)]
    new_chunks = list(chunks)
    new_head: bytes = head
    if k == 0:
        new_head = bytes(part)
    else:
        new_chunks[k - 1] = (chunks[k - 1][0], bytes(part))
    try:
        _load_all(_join(pre, new_head, new_chunks))
    except FormatError:
        pass


def test_module_exports() -> None:
    assert set(calyx_file.__all__) >= {"save", "load", "info", "instrument_bytes"}
