"""Library benchmark: per-note codecs on instruments of the development SoundFont.

For every instrument: each baseline codec on every note as a separate file (as SF3 does), SF3 for
the whole preset where sf3convert can extract it, and Calyx's rows, all in the same run.
Figures follow the evaluation guide: duration-weighted mean LMD/LSD, size ratio vs 16-bit PCM.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench._common import environment_note, md_table
from calyx.baselines import available_codecs, evaluate_codec_on_items, missing_tools_message
from calyx.io import Library, NoteSample, load_library
from calyx.metrics import lmd, lsd_db


@dataclass(frozen=True)
class Instrument:
    key: str
    presets: tuple[str, ...]
    family: str
    sf3_program: int | None = None  # sf3convert -p selects a program of bank 0


INSTRUMENTS = (
    Instrument("piano", ("Grand Piano",), "piano (struck), 2 dynamics", sf3_program=0),
    Instrument(
        "celli",
        ("Celli Fast", "Celli Slow", "Celli Tremolo", "Celli Pizzicato"),
        "bowed string, 4 articulations",
    ),
    Instrument("flute", ("Flute",), "wind", sf3_program=73),
    Instrument("guitar", ("Nylon String Guitar",), "plucked string", sf3_program=24),
    Instrument("drums", ("Standard",), "drum kit (unpitched)"),
)

BASELINES = ("opus6", "opus12", "opus24", "vorbis-q-1", "mp3-32", "flac")
HEADERS = ("codec", "notes", "ratio vs PCM16", "kbps", "LMD", "LSD dB", "enc ×RT", "dec ×RT")


def load_instrument(sf2: Path, inst: Instrument) -> Library:
    """One library; several presets become the articulations of one instrument."""
    if len(inst.presets) == 1:
        return load_library(sf2, preset=inst.presets[0])
    notes: list[NoteSample] = []
    for preset in inst.presets:
        lib = load_library(sf2, preset=preset)
        label = preset.split()[-1].lower()
        notes += [dataclasses.replace(n, articulation=label) for n in lib.notes]
    return Library(name=inst.key, notes=notes, source=str(sf2))


@dataclass
class Row:
    codec: str
    notes: int
    ratio: float
    kbps: float
    lmd: float
    lsd_db: float
    enc_x: float
    dec_x: float

    def cells(self) -> tuple[object, ...]:
        return (self.codec, self.notes, self.ratio, self.kbps, self.lmd, self.lsd_db, self.enc_x, self.dec_x)


def weighted(values: list[float], weights: list[float]) -> float:
    return float(np.average(np.asarray(values), weights=np.asarray(weights)))


def baseline_rows(lib: Library) -> list[Row]:
    rows = []
    sr = lib.notes[0].sample_rate
    have = available_codecs()
    for codec in BASELINES:
        if not have.get(codec, False):
            continue
        res = evaluate_codec_on_items(codec, (n.load() for n in lib.notes), sample_rate=sr)
        rows.append(
            Row(codec, len(res.items), res.size_ratio, res.kbps, res.lmd, res.lsd_db,
                res.encode_x_realtime, res.decode_x_realtime)
        )
    return rows


def _zone(source: str) -> str:
    """The preset/instrument/sample part of a note's provenance, without the file name."""
    return source.split(" [", 1)[-1]


def sf3_row(sf2: Path, inst: Instrument, lib: Library, cache: Path) -> Row | str:
    """SF3 (sf3convert -s -p PROGRAM -z) of the preset, decoded by our SF3 reader, note by note."""
    if inst.sf3_program is None:
        return "sf3convert -p selects bank-0 programs only; not measured for this instrument"
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{inst.key}.sf3"
    t0 = time.perf_counter()
    if not out.exists():
        tmp = out.with_suffix(".part.sf3")
        subprocess.run(
            ["sf3convert", "-s", "-p", str(inst.sf3_program), "-z", str(sf2), str(tmp)],
            check=True, capture_output=True,
        )
        tmp.replace(out)
    enc_s = time.perf_counter() - t0
    try:
        sf3 = load_library(out, preset=inst.presets[0])
    except Exception as exc:
        return f"SF3 file written ({out.stat().st_size} bytes) but not readable: {exc}"
    by_source = {_zone(n.source): n for n in sf3.notes}
    lmds, lsds, durs = [], [], []
    t0 = time.perf_counter()
    for n in lib.notes:
        m = by_source.get(_zone(n.source))
        if m is None:
            continue
        ref, test = n.load(), m.load()
        lmds.append(lmd(ref, test, sample_rate=n.sample_rate))
        lsds.append(lsd_db(ref, test, sample_rate=n.sample_rate))
        durs.append(n.duration_s)
    dec_s = time.perf_counter() - t0
    if not durs:
        return "SF3 decoded but no note matched the source samples by name"
    dur = sum(durs)
    pcm = lib.pcm16_bytes()
    # SF3 stores every sample as its own Ogg Vorbis stream: count the streams this preset uses
    n_bytes = sum(_ogg_bytes(by_source[_zone(n.source)].loader) for n in lib.notes if _zone(n.source) in by_source)
    _ = enc_s  # sf3convert converts more than this preset; its speed is not comparable per note
    return Row("sf3 (sf3convert, Ogg per sample)", len(durs), pcm / n_bytes, 8 * n_bytes / dur / 1000,
               weighted(lmds, durs), weighted(lsds, durs), float("nan"), dur / dec_s if dec_s else float("nan"))


def _ogg_bytes(loader: object) -> int:
    """Compressed bytes behind a note's loader (the Ogg streams of its channels)."""
    from calyx.io.library import OggVorbisSlice, StackedChannels

    if isinstance(loader, OggVorbisSlice):
        return loader.n_bytes
    if isinstance(loader, StackedChannels):
        return sum(_ogg_bytes(p) for p in loader.parts)
    raise TypeError(f"not an SF3 sample loader: {type(loader).__name__}")


#: Calyx rows: functions (library) -> list[Row], added by the codec stages.
CALYX_ROWS: list[Callable[[Library], list[Row]]] = []


def _resynthesis_rows(lib: Library) -> list[Row]:
    try:
        from bench.calyx_analysis import analysis_rows
    except ImportError:
        return []
    return analysis_rows(lib)


CALYX_ROWS.append(_resynthesis_rows)
from bench.calyx_rows import codec_rows  # noqa: E402, I001  (after Row, which it uses)
CALYX_ROWS.append(codec_rows)


def run(sf2: Path, *, instruments: tuple[str, ...] | None, cache: Path, quick: bool = False) -> str:
    parts = [
        "# Library benchmark",
        "",
        "Per-note codecs on instruments of the development SoundFont "
        f"(`{sf2.name}`), every note a separate file. Ratio = library as 16-bit PCM (all channels) / "
        "compressed bytes; LMD/LSD are duration-weighted means over notes (lower is better); speed is "
        "seconds of audio per second of wall time, one process. All rows measured in the same run.",
        "",
        environment_note(),
    ]
    missing = missing_tools_message()
    if missing:
        parts += ["", f"**Missing codec tools:** {missing}"]
    for inst in INSTRUMENTS:
        if instruments and inst.key not in instruments:
            continue
        print(f"[library] {inst.key}: loading", flush=True)
        lib = load_instrument(sf2, inst)
        if quick:
            lib = Library(name=lib.name, notes=lib.notes[:: max(1, len(lib.notes) // 8)], source=lib.source)
        ax = lib.axes()
        parts += [
            "",
            f"## {inst.key} — {inst.family}",
            "",
            f"Presets {', '.join(inst.presets)}: {len(lib)} notes, {lib.total_duration_s():.1f} s, "
            f"{len(ax.pitches_midi)} pitches × {len(ax.dynamics)} dynamics × {len(ax.articulations)} "
            f"articulation(s), {lib.notes[0].sample_rate} Hz, channels {sorted({n.channels for n in lib})}.",
            "",
        ]
        rows: list[Row] = []
        notes_text: list[str] = []
        print(f"[library] {inst.key}: baselines", flush=True)
        rows += baseline_rows(lib)
        print(f"[library] {inst.key}: sf3", flush=True)
        try:
            r = sf3_row(sf2, inst, lib, cache)
            if isinstance(r, Row):
                rows.append(r)
            else:
                notes_text.append(f"SF3: {r}")
        except Exception as exc:
            notes_text.append(f"SF3 failed: {exc}")
        for fn in CALYX_ROWS:
            print(f"[library] {inst.key}: {fn.__name__}", flush=True)
            try:
                rows += fn(lib)
            except Exception:
                notes_text.append(f"`{fn.__name__}` failed:\n\n```\n{traceback.format_exc(limit=3)}\n```")
        parts.append(md_table(HEADERS, [r.cells() for r in rows]))
        if notes_text:
            parts += [""] + [f"- {t}" for t in notes_text]
    return "\n".join(parts) + "\n"


__all__ = ["CALYX_ROWS", "INSTRUMENTS", "Instrument", "Row", "load_instrument", "run"]

if __name__ == "__main__":  # pragma: no cover
    import sys

    print(run(Path(sys.argv[1]), instruments=None, cache=Path(tempfile.gettempdir())))
