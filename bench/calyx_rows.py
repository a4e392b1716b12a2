"""Calyx rows of the library benchmark (``bench/library.py`` registers them in ``CALYX_ROWS``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # bench.library imports this module at its end; import Row lazily at run time
    from bench.library import Row
    from calyx.hypercube import Instrument
    from calyx.io import Library

__all__ = ["CURVE_LIBRARIES", "codec_rows", "fluidsynth_roundtrip_lmd"]

#: Libraries (by name) that get the full ratio–LMD curve of all four methods; others get the main row.
CURVE_LIBRARIES = ("Grand Piano",)


@dataclass(frozen=True)
class _Config:
    label: str
    options: dict[str, Any]


_MAIN = _Config("calyx tucker 200x (default)", {"method": "tucker", "target_ratio": 200.0})
_CURVE = (
    *(_Config(f"calyx tucker {r:g}x", {"method": "tucker", "target_ratio": float(r)}) for r in (100, 400, 800, 1600)),
    _Config("calyx tucker max LMD 0.13 (8-note search)", {"method": "tucker", "max_lmd": 0.13}),
    *(_Config(f"calyx pca r={r}", {"method": "pca", "ranks": r}) for r in (4, 8, 16, 32, 64)),
    *(_Config(f"calyx nmf r={r}", {"method": "nmf", "ranks": r}) for r in (4, 8, 16, 32)),
    *(_Config(f"calyx cp R={r}", {"method": "cp", "ranks": r}) for r in (32, 64, 128, 256)),
)


def _measure(lib: Library, inst: Instrument, *, label: str, encode_s: float, size: int, to_wav: bool) -> Row:
    """Decode every note (timed, one process), then the duration-weighted LMD/LSD against the source."""
    from bench.library import Row
    from calyx.metrics import lmd, lsd_db

    dur = lib.total_duration_s()
    decoded: dict[int, Any] = {}
    if to_wav:
        from calyx.core.audio import read_audio
        from calyx.hypercube._export import decode_to_folder, note_file_name

        tmp = Path(tempfile.mkdtemp(prefix="calyx-bench-"))
        try:
            res = decode_to_folder(inst, tmp / "wav", fmt="wav")
            dec_s = res.wall_s
            for i, grid_note in enumerate(inst.notes):
                decoded[i] = read_audio(tmp / "wav" / note_file_name(i, grid_note))[0]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        from threadpoolctl import threadpool_limits

        t0 = time.perf_counter()
        with threadpool_limits(1):
            for i in range(len(inst.notes)):
                decoded[i] = inst.decode_note(i)
        dec_s = time.perf_counter() - t0
    lmds, lsds, durs = [], [], []
    for i, n in enumerate(lib.notes):
        ref = n.load()
        lmds.append(lmd(ref, decoded[i], sample_rate=n.sample_rate))
        lsds.append(lsd_db(ref, decoded[i], sample_rate=n.sample_rate))
        durs.append(n.duration_s)
    return Row(
        label, len(lib.notes), lib.pcm16_bytes() / size, 8 * size / dur / 1000,
        float(np.average(lmds, weights=durs)), float(np.average(lsds, weights=durs)),
        dur / max(encode_s, 1e-9), dur / max(dec_s, 1e-9),
    )


def codec_rows(lib: Library) -> list[Row]:
    """Calyx's instrument codec on one library, measured like the baselines.

    The notes are analysed once (all cores); every configuration then factors, quantises and
    codes them (``enc ×RT`` counts the analysis plus that configuration's factoring). The default
    configuration decodes to 16-bit WAV files (``dec ×RT``: evaluation, synthesis and writing, one
    process); the curve rows decode in memory. For the piano, a last row gives the FluidSynth
    round trip: a chorale rendered with the exported SF2 against the same MIDI rendered with the
    source SoundFont (LMD between the two renders; size columns not applicable).
    """
    from calyx.format.calyx_file import instrument_bytes, instrument_size
    from calyx.hypercube import EncodeOptions, analyse_library, encode_records, instrument_settings

    settings = instrument_settings(lib)
    t0 = time.perf_counter()
    records = analyse_library(lib, settings=settings)
    analysis_s = time.perf_counter() - t0
    configs = [_MAIN] + (list(_CURVE) if lib.name in CURVE_LIBRARIES else [])
    rows = []
    main_inst = None
    for cfg in configs:
        t1 = time.perf_counter()
        inst = encode_records(lib, records, settings=settings, options=EncodeOptions(**cfg.options), file_size=instrument_size)
        data = instrument_bytes(inst)
        encode_s = analysis_s + time.perf_counter() - t1
        rows.append(_measure(lib, inst, label=cfg.label, encode_s=encode_s, size=len(data), to_wav=cfg is _MAIN))
        if cfg is _MAIN:
            main_inst = inst
    if lib.name in CURVE_LIBRARIES and main_inst is not None and shutil.which("fluidsynth"):
        rows += _roundtrip_row(lib, main_inst)
    return rows


def _roundtrip_row(lib: Library, inst: Instrument) -> list[Row]:
    from bench.library import Row

    r = fluidsynth_roundtrip_lmd(inst, source_sf2=Path(lib.source), source_library=lib)
    nan = float("nan")
    clip = r["clip"]
    return [
        Row(f"FluidSynth {clip}: calyx-exported SF2 vs source SF2", 1, nan, nan, r["lmd"], nan, nan, nan),
        Row(f"FluidSynth {clip}: same, level-matched ({r['level_db']:+.1f} dB)", 1, nan, nan, r["lmd_level_matched"], nan, nan, nan),
        Row(f"FluidSynth {clip} control: source PCM through the same SF2 writer, level-matched", 1, nan, nan,
            r["control_lmd_level_matched"], nan, nan, nan),
    ]


def _render(sf2: Path, midi: Path, out: Path) -> np.ndarray:
    from calyx.core.audio import read_audio

    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.8", "-r", "44100", "-F", str(out), str(sf2), str(midi)],
        check=True, capture_output=True,
    )
    return read_audio(out)[0]


def _level_db(x: np.ndarray) -> float:
    return float(10.0 * np.log10(np.mean(x**2) + 1e-20))


def fluidsynth_roundtrip_lmd(
    inst: Instrument, *, source_sf2: Path, midi: Path | None = None, source_library: Library | None = None
) -> dict[str, Any]:
    """A MIDI file rendered by FluidSynth with the instrument exported as SF2 and with the source
    SoundFont (the reference): their LMD, raw and after matching the overall level.

    The exported SF2 carries pitch, ranges and loops but none of the source preset's envelopes,
    filters and attenuation (the imported library does not hold them), so with ``source_library``
    a control is measured too: the source notes' own PCM written by the same SF2 writer.
    Uses the first Bach chorale of the development corpora (piano MIDI) unless ``midi`` is given.

    Returns
    -------
    dict
        ``clip``, ``lmd``, ``level_db`` (gain applied to the export to match the reference's RMS),
        ``lmd_level_matched``, and with a source library ``control_lmd``,
        ``control_lmd_level_matched``.
    """
    from calyx import datasets
    from calyx.hypercube._export import decode_to_folder
    from calyx.io.sf2_write import SF2Preset, SF2Zone, write_sf2
    from calyx.metrics import lmd

    if midi is None:
        chorale = datasets.chorales()[0]
        midi, clip = chorale.piano_mid, f"chorale {chorale.name}"
    else:
        clip = midi.name
    tmp = Path(tempfile.mkdtemp(prefix="calyx-fluid-"))
    out: dict[str, Any] = {"clip": clip}
    try:
        res = decode_to_folder(inst, tmp / "sf2", fmt="sf2")
        exported = next(p for p in res.files if p.suffix == ".sf2")
        ref = _render(source_sf2, midi, tmp / "source.wav")
        test = _render(exported, midi, tmp / "exported.wav")
        gain_db = _level_db(ref) - _level_db(test)
        out["lmd"] = lmd(ref, test, sample_rate=44100)
        out["level_db"] = gain_db
        out["lmd_level_matched"] = lmd(ref, test * 10.0 ** (gain_db / 20.0), sample_rate=44100)
        if source_library is not None:
            zones = [
                SF2Zone(audio=n.load, name=f"p{n.pitch_midi:.0f} v{n.velocity_hi}", sample_rate=n.sample_rate,
                        pitch_midi=n.pitch_midi, key_lo=n.key_lo, key_hi=n.key_hi, velocity_lo=n.velocity_lo,
                        velocity_hi=n.velocity_hi, loop_start=n.loop_start, loop_end=n.loop_end, release_s=0.3)
                for n in source_library.notes if n.variation == 0
            ]
            write_sf2(tmp / "control.sf2", presets=[SF2Preset(source_library.name, zones)], name="control")
            ctrl = _render(tmp / "control.sf2", midi, tmp / "control.wav")
            g = _level_db(ref) - _level_db(ctrl)
            out["control_lmd"] = lmd(ref, ctrl, sample_rate=44100)
            out["control_lmd_level_matched"] = lmd(ref, ctrl * 10.0 ** (g / 20.0), sample_rate=44100)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
