"""The ``.calyx`` instrument file: writing and (lazily) reading an :class:`~calyx.hypercube.Instrument`.

The byte layout is specified in ``docs/format.md``; this module implements that specification on
top of the shared chunked container (:mod:`calyx.format.container`). In short: magic ``b"CLYX"``,
major version 1, a JSON header (axes, units, method, ranks, notes, provenance), then per
articulation one ``NOTE`` chunk (per-note scalars) and one ``FACT`` chunk per quantised,
entropy-coded factor array. Everything is little-endian. A reader validates every value it
decodes against the header and raises :class:`calyx.errors.FormatError` on any inconsistency.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from calyx.errors import FormatError, ParameterError
from calyx.format.container import (
    ContainerReader,
    container_bytes,
    pack_array,
    unpack_array,
    write_container,
)
from calyx.hypercube._entropy import MAX_ABS_INT, decode_ints, encode_ints, encoded_size, lag_candidates
from calyx.hypercube._factors import METHODS
from calyx.hypercube._instrument import (
    SCALAR_NAMES,
    ArticulationData,
    GridNote,
    Instrument,
    InstrumentSettings,
    grid_index,
)
from calyx.hypercube._quantise import STEP_AXIS, QuantisedArray, QuantisedFactors
from calyx.hypercube._timebase import MAX_TIME_POINTS, TimeBase

__all__ = ["FORMAT_VERSION", "MAGIC", "info", "instrument_bytes", "instrument_size", "load", "save"]

MAGIC = b"CLYX"
#: Major version written and the newest read.
FORMAT_VERSION = 1
FORMAT_MINOR = 0

FACTOR_IDS = {"mean": 1, "core": 2, "basis": 3, "scores": 4, "pitch": 5, "layer": 6, "time": 7, "feature": 8}
_FACTOR_NAMES = {v: k for k, v in FACTOR_IDS.items()}
#: Factors each method stores, in file order.
METHOD_FACTORS = {
    "pca": ("mean", "basis", "scores"),
    "nmf": ("basis", "scores"),
    "tucker": ("mean", "core", "pitch", "layer", "time", "feature"),
    "cp": ("mean", "pitch", "layer", "time", "feature"),
}
_FACT_HEAD = struct.Struct("<HBBBB")  # articulation, factor id, coder id, ndim, reserved
_NOTE_HEAD = struct.Struct("<HH")  # articulation, reserved

#: Limits a reader enforces before allocating anything (a larger value is a corrupt file).
MAX_NOTES = 100_000
MAX_FEATURES = 4096
MAX_CHANNELS = 16
MAX_FACTOR_VALUES = 1 << 27
MAX_NOTE_SAMPLES = 1 << 31
#: Largest magnitude of a dequantised factor value (dB-scale quantities and unit-scale factors).
MAX_FACTOR_MAGNITUDE = 1e6


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------


def _note_columns(inst: Instrument, arts: list[str]) -> dict[str, list[Any]]:
    notes = inst.notes
    return {
        "pitch_midi": [float(n.pitch_midi) for n in notes],
        "velocity": [[int(n.velocity_lo), int(n.velocity_hi)] for n in notes],
        "key": [[int(n.key_lo), int(n.key_hi)] for n in notes],
        "articulation": [arts.index(n.articulation) for n in notes],
        "variation": [int(n.variation) for n in notes],
        "n_samples": [int(n.n_samples) for n in notes],
        "channels": [int(n.channels) for n in notes],
        "loop": [None if n.loop_start is None else [int(n.loop_start), int(n.loop_end or 0)] for n in notes],
        "source": [str(n.source) for n in notes],
    }


def _lp(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def _lags(name: str, shape: tuple[int, ...], settings: InstrumentSettings) -> tuple[int, ...]:
    return lag_candidates(name, shape, n_features=settings.n_channels * settings.n_features)


def _fact_payload(art_index: int, name: str, qa: QuantisedArray, settings: InstrumentSettings) -> bytes:
    coder, lag, coded = encode_ints(qa.q, lags=_lags(name, qa.q.shape, settings))
    head = _FACT_HEAD.pack(art_index, FACTOR_IDS[name], coder, qa.q.ndim, 0)
    shape = struct.pack(f"<{qa.q.ndim}I", *qa.q.shape)
    steps = struct.pack("<I", qa.steps.size) + qa.steps.astype("<f4").tobytes()
    return head + shape + struct.pack("<I", lag) + steps + _lp(coded)


def _note_payload(art_index: int, art: ArticulationData) -> bytes:
    scal = pack_array(art.scalars.astype("<f4"), compression="zlib")
    npar = pack_array(art.n_partials.astype(np.uint8), compression="zlib")
    return _NOTE_HEAD.pack(art_index, 0) + _lp(scal) + _lp(npar)


def _header_and_chunks(inst: Instrument, *, estimate: bool = False) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    arts = list(inst.articulations)
    s = inst.settings
    chunks: list[tuple[str, bytes]] = []
    art_entries = []
    n_note_chunks = n_fact_chunks = 0
    for a_index, name in enumerate(arts):
        art = inst.articulation(name)
        if art.factors.method != inst.method:
            raise ParameterError(f"articulation {name!r} uses {art.factors.method}, the instrument {inst.method}")
        if int(np.max(art.n_partials, initial=0)) > 255:
            raise ParameterError("at most 255 partials per note can be stored")
        if not estimate:
            chunks.append(("NOTE", _note_payload(a_index, art)))
        fact_idx = []
        for fname in METHOD_FACTORS[inst.method]:
            if fname not in art.factors.arrays:
                raise ParameterError(f"articulation {name!r} lacks its {fname!r} factor")
            if not estimate:
                chunks.append(("FACT", _fact_payload(a_index, fname, art.factors.arrays[fname], s)))
            fact_idx.append(n_fact_chunks)
            n_fact_chunks += 1
        art_entries.append({
            "name": name,
            "notes": [int(i) for i in art.note_indices],
            "ranks": inst.ranks(name),
            "offset_db": float(art.factors.offset_db),
            "chunks": {"NOTE": n_note_chunks, "FACT": fact_idx},
        })
        n_note_chunks += 1
    axes = {
        "pitch_midi": sorted({float(n.pitch_midi) for n in inst.notes}),
        "dynamic": sorted({float(n.dynamic) for n in inst.notes}),
        "articulation": arts,
        "variation": sorted({int(n.variation) for n in inst.notes}),
    }
    header = {
        "format": "calyx-instrument",
        "name": inst.name,
        "method": inst.method,
        "sample_rate": int(s.sample_rate),
        "hop_length": int(s.hop_length),
        "channels": int(s.n_channels),
        "features": {
            "n_partials": int(s.n_partials_max),
            "n_noise_bands": int(s.n_noise_bands),
            "noise_fmin_hz": float(s.noise_fmin_hz),
            "noise_n_fft": int(s.noise_n_fft),
            "fmax_hz": float(s.fmax_hz),
        },
        "values": {"unit": "dB re note gain", "db_range": float(s.db_range)},
        "time": {"unit": "s after onset", **s.timebase.to_json(), "n_times": int(s.timebase.n_times)},
        "scalars": list(SCALAR_NAMES),
        "axes": axes,
        "notes": _note_columns(inst, arts),
        "articulations": art_entries,
        "provenance": inst.provenance,
    }
    return header, chunks


def instrument_size(inst: Instrument, *, factors: bool = True) -> int:
    """The file size, computed without building the file (no Rice stream is packed).

    ``factors=False`` leaves out the factor data (what does not depend on the ranks)."""
    header, _ = _header_and_chunks(inst, estimate=True)
    head = container_bytes(magic=MAGIC, version=FORMAT_VERSION, minor=FORMAT_MINOR, header=header, chunks=[])
    total = len(head)
    for name in inst.articulations:
        art = inst.articulation(name)
        total += 16 + len(_note_payload(0, art))
        for fname in METHOD_FACTORS[inst.method] if factors else ():
            qa = art.factors.arrays[fname]
            body = encoded_size(qa.q, lags=_lags(fname, qa.q.shape, inst.settings))
            total += 16 + _FACT_HEAD.size + 4 * qa.q.ndim + 8 + 4 * qa.steps.size + 4 + body
    return total


def instrument_bytes(inst: Instrument) -> bytes:
    """The ``.calyx`` file of an instrument, in memory."""
    header, chunks = _header_and_chunks(inst)
    return container_bytes(magic=MAGIC, version=FORMAT_VERSION, minor=FORMAT_MINOR, header=header, chunks=chunks)


def save(instrument: Instrument, path: str | os.PathLike[str], *, force: bool = False) -> int:
    """Write an instrument as a ``.calyx`` file, atomically; returns the file size in bytes.

    Identical instruments give byte-identical files (sorted JSON keys, no timestamps).

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``force`` is false.
    """
    header, chunks = _header_and_chunks(instrument)
    return write_container(path, magic=MAGIC, version=FORMAT_VERSION, minor=FORMAT_MINOR, header=header, chunks=chunks, force=force)


# --------------------------------------------------------------------------------------------------
# reading: header validation
# --------------------------------------------------------------------------------------------------


class _Check:
    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, message: str) -> FormatError:
        return FormatError(f"{self.name}: {message}")

    def obj(self, d: Any, key: str) -> dict[str, Any]:
        v = d.get(key) if isinstance(d, dict) else None
        if not isinstance(v, dict):
            raise self.fail(f"header field {key!r} must be an object")
        return v

    def lst(self, d: dict[str, Any], key: str, n: int | None = None) -> list[Any]:
        v = d.get(key)
        if not isinstance(v, list) or (n is not None and len(v) != n):
            raise self.fail(f"header field {key!r} must be a list" + (f" of {n} items" if n is not None else ""))
        return v

    def int_(self, v: Any, what: str, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(f"{what} must be an integer within {lo}..{hi}, got {v!r}")
        return int(v)

    def num(self, v: Any, what: str, lo: float = -math.inf, hi: float = math.inf) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise self.fail(f"{what} must be a finite number within {lo}..{hi}, got {v!r}")
        return float(v)

    def str_(self, v: Any, what: str) -> str:
        if not isinstance(v, str):
            raise self.fail(f"{what} must be a string, got {type(v).__name__}")
        return v


def _parse_header(h: dict[str, Any], name: str) -> tuple[InstrumentSettings, list[GridNote], list[dict[str, Any]], str]:
    c = _Check(name)
    if h.get("format") != "calyx-instrument":
        raise c.fail(f"header 'format' is {h.get('format')!r}, expected 'calyx-instrument'")
    method = h.get("method")
    if method not in METHODS:
        raise c.fail(f"unknown method {method!r}; this reader knows {list(METHODS)}")
    sr = c.int_(h.get("sample_rate"), "sample_rate", 1, 10_000_000)
    hop = c.int_(h.get("hop_length"), "hop_length", 1, 1 << 20)
    channels = c.int_(h.get("channels"), "channels", 1, MAX_CHANNELS)
    feat = c.obj(h, "features")
    n_partials = c.int_(feat.get("n_partials"), "features.n_partials", 0, 255)
    n_bands = c.int_(feat.get("n_noise_bands"), "features.n_noise_bands", 1, MAX_FEATURES)
    if n_partials + n_bands > MAX_FEATURES:
        raise c.fail(f"{n_partials + n_bands} features exceed the limit of {MAX_FEATURES}")
    values = c.obj(h, "values")
    db_range = c.num(values.get("db_range"), "values.db_range", 1.0, 1000.0)
    t = c.obj(h, "time")
    try:
        timebase = TimeBase(
            step_s=c.num(t.get("step_s"), "time.step_s", 1e-6, 10.0),
            attack_s=c.num(t.get("attack_s"), "time.attack_s", 1e-6, 1e4),
            points_per_octave=c.num(t.get("points_per_octave"), "time.points_per_octave", 1e-3, 1e4),
            duration_s=c.num(t.get("duration_s"), "time.duration_s", 1e-6, 1e6),
        )
        n_times = timebase.n_times
    except ParameterError as exc:
        raise c.fail(f"invalid time axis ({exc})") from exc
    if t.get("n_times") != n_times or n_times > MAX_TIME_POINTS:
        raise c.fail(f"time.n_times is {t.get('n_times')!r}, the time axis has {n_times} points")
    settings = InstrumentSettings(
        sample_rate=sr,
        hop_length=hop,
        n_channels=channels,
        n_partials_max=n_partials,
        n_noise_bands=n_bands,
        noise_fmin_hz=c.num(feat.get("noise_fmin_hz"), "features.noise_fmin_hz", 1e-3, sr / 2.0),
        noise_n_fft=c.int_(feat.get("noise_n_fft"), "features.noise_n_fft", 16, 1 << 20),
        fmax_hz=c.num(feat.get("fmax_hz"), "features.fmax_hz", 1.0, 1e7),
        db_range=db_range,
        timebase=timebase,
    )
    notes_h = c.obj(h, "notes")
    n = len(c.lst(notes_h, "pitch_midi"))
    if not 1 <= n <= MAX_NOTES:
        raise c.fail(f"{n} notes; a file holds 1..{MAX_NOTES}")
    arts_h = c.lst(h, "articulations")
    if not 1 <= len(arts_h) <= 65535:
        raise c.fail("the file must hold 1..65535 articulations")
    art_names = [c.str_(c.obj({"a": a}, "a").get("name"), "articulation name") for a in arts_h]
    if len(set(art_names)) != len(art_names):
        raise c.fail(f"articulation names repeat: {art_names}")
    cols = {k: c.lst(notes_h, k, n) for k in ("pitch_midi", "velocity", "key", "articulation", "variation", "n_samples", "channels", "loop", "source")}
    notes: list[GridNote] = []
    for i in range(n):
        vel, key, loop = cols["velocity"][i], cols["key"][i], cols["loop"][i]
        if not (isinstance(vel, list) and len(vel) == 2 and isinstance(key, list) and len(key) == 2):
            raise c.fail(f"note {i}: velocity and key must be [lo, hi] pairs")
        vlo, vhi = (c.int_(v, f"note {i} velocity", 0, 127) for v in vel)
        klo, khi = (c.int_(v, f"note {i} key", 0, 127) for v in key)
        if vlo > vhi or klo > khi:
            raise c.fail(f"note {i}: ranges must be [lo, hi] with lo <= hi")
        n_samples = c.int_(cols["n_samples"][i], f"note {i} n_samples", 1, MAX_NOTE_SAMPLES)
        if loop is None:
            ls = le = None
        else:
            if not (isinstance(loop, list) and len(loop) == 2):
                raise c.fail(f"note {i}: loop must be null or [start, end]")
            ls = c.int_(loop[0], f"note {i} loop start", 0, n_samples - 1)
            le = c.int_(loop[1], f"note {i} loop end", ls + 1, n_samples)
        a_idx = c.int_(cols["articulation"][i], f"note {i} articulation", 0, len(art_names) - 1)
        notes.append(GridNote(
            pitch_midi=c.num(cols["pitch_midi"][i], f"note {i} pitch_midi", 0.0, 127.0),
            velocity_lo=vlo, velocity_hi=vhi, key_lo=klo, key_hi=khi,
            articulation=art_names[a_idx],
            variation=c.int_(cols["variation"][i], f"note {i} variation", 0, 65535),
            n_samples=n_samples,
            channels=c.int_(cols["channels"][i], f"note {i} channels", 1, channels),
            loop_start=ls, loop_end=le,
            source=c.str_(cols["source"][i], f"note {i} source"),
        ))
    seen: set[int] = set()
    for a_index, a in enumerate(arts_h):
        idx = c.lst(a, "notes")
        for i in idx:
            j = c.int_(i, f"articulation {art_names[a_index]!r} note index", 0, n - 1)
            if j in seen or notes[j].articulation != art_names[a_index]:
                raise c.fail(f"note {j} is listed under the wrong articulation or twice")
            seen.add(j)
        if not idx:
            raise c.fail(f"articulation {art_names[a_index]!r} has no notes")
        ch = c.obj(a, "chunks")
        c.int_(ch.get("NOTE"), "chunks.NOTE", 0, 65535)
        facts = c.lst(ch, "FACT", len(METHOD_FACTORS[method]))
        for v in facts:
            c.int_(v, "chunks.FACT index", 0, 1 << 20)
        c.num(a.get("offset_db"), "offset_db", -1000.0, 1000.0)
        c.obj(a, "ranks")
    if len(seen) != n:
        raise c.fail(f"{n - len(seen)} note(s) belong to no articulation")
    return settings, notes, arts_h, method


# --------------------------------------------------------------------------------------------------
# reading: chunks
# --------------------------------------------------------------------------------------------------


def _expected_shapes(method: str, settings: InstrumentSettings, notes: list[GridNote], ranks: dict[str, Any], c: _Check) -> dict[str, tuple[int, ...]]:
    t, ch, f = settings.value_shape
    d = t * ch * f
    grid = grid_index(notes)
    p_n, d_n, v_n = grid.shape
    dims = {"pitch": p_n, "layer": d_n * v_n, "time": t, "feature": ch * f}
    n = len(notes)
    if method in ("pca", "nmf"):
        r = c.int_(ranks.get("components"), "ranks.components", 1, max(n, 1))
        shapes: dict[str, tuple[int, ...]] = {"basis": (r, d), "scores": (n, r)}
        if method == "pca":
            shapes["mean"] = (d,)
        return shapes
    if method == "cp":
        r = c.int_(ranks.get("rank"), "ranks.rank", 1, 1 << 16)
        return {"mean": (d,), **{m: (dims[m], r) for m in ("pitch", "layer", "time", "feature")}}
    rk = {m: c.int_(ranks.get(m), f"ranks.{m}", 1, dims[m]) for m in ("pitch", "layer", "time", "feature")}
    return {
        "mean": (d,),
        "core": (rk["pitch"], rk["layer"], rk["time"], rk["feature"]),
        **{m: (dims[m], rk[m]) for m in ("pitch", "layer", "time", "feature")},
    }


def _take(data: bytes, pos: int, n: int, what: str, c: _Check) -> tuple[bytes, int]:
    if n < 0 or pos + n > len(data):
        raise c.fail(f"{what}: truncated ({n} bytes needed at {pos}, {len(data) - pos} available)")
    return data[pos : pos + n], pos + n


def _read_fact(data: bytes, a_index: int, name: str, shape: tuple[int, ...], c: _Check) -> QuantisedArray:
    what = f"FACT chunk {name!r} of articulation {a_index}"
    head, pos = _take(data, 0, _FACT_HEAD.size, what, c)
    art, fid, coder, ndim, _ = _FACT_HEAD.unpack(head)
    if art != a_index or _FACTOR_NAMES.get(fid) != name:
        raise c.fail(f"{what}: the chunk holds factor id {fid} of articulation {art}")
    if ndim != len(shape):
        raise c.fail(f"{what}: {ndim} dimensions, expected {len(shape)}")
    raw, pos = _take(data, pos, 4 * ndim, what, c)
    got = struct.unpack(f"<{ndim}I", raw)
    if tuple(got) != shape:
        raise c.fail(f"{what}: shape {tuple(got)}, the header implies {shape}")
    n_values = int(np.prod(shape))
    if n_values > MAX_FACTOR_VALUES:
        raise c.fail(f"{what}: {n_values} values exceed the limit of {MAX_FACTOR_VALUES}")
    raw, pos = _take(data, pos, 8, what, c)
    lag, n_steps = struct.unpack("<II", raw)
    axis = STEP_AXIS[name]
    want_steps = 1 if axis is None else shape[axis]
    if n_steps != want_steps:
        raise c.fail(f"{what}: {n_steps} quantisation steps, expected {want_steps}")
    raw, pos = _take(data, pos, 4 * n_steps, what, c)
    steps = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(steps)) or np.any(steps <= 0):
        raise c.fail(f"{what}: quantisation steps must be finite and positive")
    raw, pos = _take(data, pos, 4, what, c)
    (n_coded,) = struct.unpack("<I", raw)
    coded, pos = _take(data, pos, n_coded, what, c)
    if pos != len(data):
        raise c.fail(f"{what}: {len(data) - pos} trailing bytes")
    q = decode_ints(coder, coded, n_values, lag=lag, what=f"{c.name}: {what}")
    if q.size and int(np.max(np.abs(q))) > MAX_ABS_INT:
        raise c.fail(f"{what}: quantised values beyond +-{MAX_ABS_INT}")
    if q.size and float(np.max(steps)) * float(np.max(np.abs(q))) > MAX_FACTOR_MAGNITUDE:
        raise c.fail(f"{what}: values beyond +-{MAX_FACTOR_MAGNITUDE:g} (steps up to {float(np.max(steps)):.3g})")
    return QuantisedArray(q.reshape(shape), steps)


def _read_note(data: bytes, a_index: int, n: int, n_partials_max: int, c: _Check) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    what = f"NOTE chunk of articulation {a_index}"
    head, pos = _take(data, 0, _NOTE_HEAD.size, what, c)
    art, _ = _NOTE_HEAD.unpack(head)
    if art != a_index:
        raise c.fail(f"{what}: the chunk belongs to articulation {art}")
    raw, pos = _take(data, pos, 4, what, c)
    scal_b, pos = _take(data, pos, struct.unpack("<I", raw)[0], what, c)
    raw, pos = _take(data, pos, 4, what, c)
    npar_b, pos = _take(data, pos, struct.unpack("<I", raw)[0], what, c)
    if pos != len(data):
        raise c.fail(f"{what}: {len(data) - pos} trailing bytes")
    scal = unpack_array(scal_b, what=f"{c.name}: {what} scalars")
    npar = unpack_array(npar_b, what=f"{c.name}: {what} partial counts")
    if scal.shape != (n, len(SCALAR_NAMES)) or scal.dtype != np.float32 or npar.shape != (n,) or npar.dtype != np.uint8:
        raise c.fail(f"{what}: arrays of shapes {scal.shape}, {npar.shape}; expected ({n}, {len(SCALAR_NAMES)}) float32 and ({n},) uint8")
    s64 = scal.astype(np.float64)
    if not np.all(np.isfinite(s64)):
        raise c.fail(f"{what}: non-finite note scalars")
    if np.any(np.abs(s64[:, 0]) > 400) or np.any(s64[:, 1] < 0) or np.any(np.abs(s64[:, 2]) > 2400) or np.any(s64[:, 3] < 0) or np.any(s64[:, 3] > 1):
        raise c.fail(f"{what}: note scalars out of range (gain within +-400 dB, onset >= 0, tuning within +-2400 cents, inharmonicity 0..1)")
    if np.any(npar > n_partials_max):
        raise c.fail(f"{what}: a note has more partials than the {n_partials_max} features")
    return s64, npar.astype(np.int64)


def _load_articulation(
    source: str | os.PathLike[str] | IO[bytes] | bytes,
    name: str,
    a_index: int,
    entry: dict[str, Any],
    method: str,
    settings: InstrumentSettings,
    notes: list[GridNote],
    expected_header: dict[str, Any],
) -> ArticulationData:
    reader = _open(source)
    c = _Check(reader.name)
    try:
        if reader.header != expected_header:
            raise c.fail("the file changed since it was opened")
        idx = [int(i) for i in entry["notes"]]
        art_notes = [notes[i] for i in idx]
        shapes = _expected_shapes(method, settings, art_notes, entry["ranks"], c)
        note_chunks = reader.find("NOTE")
        fact_chunks = reader.find("FACT")
        k = int(entry["chunks"]["NOTE"])
        if k >= len(note_chunks):
            raise c.fail(f"articulation {name!r} refers to NOTE chunk {k}, the file has {len(note_chunks)}")
        scalars, n_partials = _read_note(reader.read(note_chunks[k]), a_index, len(idx), settings.n_partials_max, c)
        arrays: dict[str, QuantisedArray] = {}
        for fname, j in zip(METHOD_FACTORS[method], entry["chunks"]["FACT"], strict=True):
            if j >= len(fact_chunks):
                raise c.fail(f"articulation {name!r} refers to FACT chunk {j}, the file has {len(fact_chunks)}")
            arrays[fname] = _read_fact(reader.read(fact_chunks[j]), a_index, fname, shapes[fname], c)
    finally:
        reader.close()
    qf = QuantisedFactors(method, arrays, float(entry["offset_db"]))
    art = ArticulationData(name, np.asarray(idx, dtype=np.int64), scalars, n_partials, qf)
    return art


def _open(source: str | os.PathLike[str] | IO[bytes] | bytes) -> ContainerReader:
    import io

    if isinstance(source, (bytes, bytearray)):
        return ContainerReader(io.BytesIO(bytes(source)), magic=MAGIC, max_version=FORMAT_VERSION, name="<bytes>")
    return ContainerReader(source, magic=MAGIC, max_version=FORMAT_VERSION)


def load(
    path: str | os.PathLike[str] | bytes,
    *,
    articulation: str | None = None,
    lazy: bool = True,
) -> Instrument:
    """Read a ``.calyx`` file.

    Parameters
    ----------
    path : path or bytes
        The file (or its content).
    articulation : str, optional
        Read only this articulation's factors; the instrument then offers only it.
    lazy : bool
        Read an articulation's chunks when it is first used (default); ``False`` reads and
        validates everything now.

    Returns
    -------
    Instrument

    Raises
    ------
    FormatError
        For a file that is not a ``.calyx`` file, of a future major version, truncated, corrupt
        (a checksum mismatch), or whose header or chunks are inconsistent or out of range.
    """
    reader = _open(path)
    try:
        header = reader.header
        name = reader.name
    finally:
        reader.close()
    try:
        settings, notes, arts_h, method = _parse_header(header, name)
    except (KeyError, TypeError, AttributeError) as exc:
        raise FormatError(f"{name}: malformed header ({exc!r})") from exc
    names = [str(a["name"]) for a in arts_h]
    if articulation is not None and articulation not in names:
        raise ParameterError(f"{name}: no articulation {articulation!r}; available: {names}")
    source: str | os.PathLike[str] | bytes = path if isinstance(path, (bytes, bytearray)) else Path(path)
    loaders: dict[str, ArticulationData | Callable[[], ArticulationData]] = {}
    for a_index, entry in enumerate(arts_h):
        a_name = names[a_index]
        if articulation is not None and a_name != articulation:
            continue

        def loader(a_name: str = a_name, a_index: int = a_index, entry: dict[str, Any] = entry) -> ArticulationData:
            try:
                return _load_articulation(source, a_name, a_index, entry, method, settings, notes, header)
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, FormatError):
                    raise
                raise FormatError(f"{name}: malformed articulation {a_name!r} ({exc!r})") from exc

        loaders[a_name] = loader if lazy else loader()
    provenance = header.get("provenance")
    inst = Instrument(
        name=str(header.get("name", "")),
        settings=settings,
        notes=notes,
        method=method,
        articulations=loaders,
        provenance=provenance if isinstance(provenance, dict) else {},
    )
    if not lazy:
        for a in inst.articulations:
            inst._factor_model(inst.articulation(a))
    return inst


def info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``calyx info`` prints: size, ratio, method, ranks, axes and per-chunk sizes (JSON-able)."""
    p = Path(path)
    reader = _open(p)
    try:
        header = reader.header
        settings, notes, arts_h, method = _parse_header(header, reader.name)
        chunk_sizes: dict[str, int] = {}
        per_chunk = []
        for ch in reader.chunks:
            chunk_sizes[ch.fourcc] = chunk_sizes.get(ch.fourcc, 0) + ch.length
            per_chunk.append({"type": ch.fourcc, "offset": ch.offset, "bytes": ch.length})
        file_size = reader.file_size
    finally:
        reader.close()
    pcm = int(sum(2 * n.channels * n.n_samples for n in notes))
    header_bytes = len(json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8"))
    return {
        "path": str(p),
        "name": header.get("name"),
        "format_version": FORMAT_VERSION,
        "method": method,
        "file_bytes": file_size,
        "pcm16_bytes": pcm,
        "ratio_vs_pcm16": pcm / max(file_size, 1),
        "duration_s": sum(n.n_samples for n in notes) / settings.sample_rate,
        "sample_rate": settings.sample_rate,
        "channels": settings.n_channels,
        "n_notes": len(notes),
        "axes": header["axes"],
        "time": header["time"],
        "features": header["features"],
        "articulations": [{"name": a["name"], "notes": len(a["notes"]), "ranks": a["ranks"]} for a in arts_h],
        "header_bytes": header_bytes,
        "chunk_bytes": chunk_sizes,
        "chunks": per_chunk,
        "provenance": header.get("provenance", {}),
    }
