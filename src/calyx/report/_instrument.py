"""The report of one encoded instrument: hear every note, compare it, see the factors, cross the grid.

:func:`instrument_report` loads a ``.calyx`` file and writes a folder holding ``index.html`` with

- the instrument's axes as a clickable grid (pitch across, dynamic down, one grid per
  articulation); each cell plays the decoded note and, when the source library is given, the
  original beside it, and shows their spectrograms;
- the learned factors, drawn from whatever the file holds (PCA/NMF components and scores,
  Tucker/CP factor matrices along pitch, layer, time and feature);
- size and quality: the ratio to 16-bit PCM, LMD per note, and the library benchmark's tables
  when ``bench/results/library.md`` exists;
- sliders that play notes *between* the grid points (pre-rendered every quarter semitone over
  an octave, and at even steps across the dynamic range), and glides made of them.

The page is built from an :class:`InstrumentData` (a small read-only interface);
:class:`CalyxInstrumentData` adapts a decoded :class:`calyx.hypercube.Instrument` to it.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from calyx.errors import ParameterError
from calyx.report._page import (
    attr,
    esc,
    fade_out,
    format_bytes,
    markdown_tables_html,
    page,
    staged_dir,
    write_wav,
)
from calyx.report._plots import (
    LinePanel,
    display_stft,
    factor_lines_png,
    factor_maps_png,
    lines_png,
    mel_power,
    spectrogram_png,
)

__all__ = [
    "CalyxInstrumentData",
    "FactorView",
    "InstrumentData",
    "NoteEntry",
    "build_instrument_report",
    "find_bench_summary",
    "instrument_report",
]

FloatArray = NDArray[np.float64]
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def _note_name(pitch_midi: float) -> str:
    nearest = round(pitch_midi)
    cents = round(100.0 * (pitch_midi - nearest))
    name = f"{_NOTE_NAMES[nearest % 12]}{nearest // 12 - 1}"
    return f"{name}{cents:+d}c" if cents else name


# --------------------------------------------------------------------------------------------------
# The data a page is built from


@dataclass(frozen=True)
class NoteEntry:
    """One grid note: where it lies on the axes and what it was made from."""

    pitch_midi: float
    dynamic: float
    articulation: str
    variation: int
    source: str = ""
    velocity_lo: int = 0
    velocity_hi: int = 127


@dataclass
class FactorView:
    """The learned factors of one articulation, as plain arrays.

    Attributes
    ----------
    method : str
        ``"pca"``, ``"nmf"``, ``"tucker"`` or ``"cp"``.
    arrays : dict[str, np.ndarray]
        The factors by name (PCA/NMF: ``basis``, ``scores``, ``mean``; CP: ``pitch``, ``layer``,
        ``time``, ``feature``; Tucker: those and ``core``).
    value_shape : tuple of int
        ``(n_times, n_channels, n_features)`` of one note's values.
    n_partials : int
        The first ``n_partials`` features are partial levels, the rest noise bands.
    times_s : np.ndarray [shape=(n_times,)]
        The instrument's common time axis (seconds after the onset).
    pitches_midi : np.ndarray [shape=(n_grid_pitches,)]
        The articulation's grid pitches, ascending (rows of a ``pitch`` factor).
    layer_labels : list of str
        Labels of the rows of a ``layer`` factor (dynamic × variation).
    note_indices : list of int
        Instrument note of each coefficient row.
    coefficients : np.ndarray [shape=(n_notes, n_coefficients)]
        The row each note is decoded from.
    ranks : dict[str, int]
    """

    method: str
    arrays: dict[str, FloatArray]
    value_shape: tuple[int, int, int]
    n_partials: int
    times_s: FloatArray
    pitches_midi: FloatArray
    layer_labels: list[str]
    note_indices: list[int]
    coefficients: FloatArray
    ranks: dict[str, int] = field(default_factory=dict)


class InstrumentData(Protocol):
    """What the instrument page needs to know and to render."""

    @property
    def name(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def file_bytes(self) -> int: ...
    @property
    def pcm16_bytes(self) -> int:
        """Size of the source notes as 16-bit PCM."""
        ...
    @property
    def duration_s(self) -> float:
        """Summed length of the notes, seconds."""
        ...
    @property
    def notes(self) -> Sequence[NoteEntry]: ...
    @property
    def articulations(self) -> Sequence[str]: ...

    def facts(self) -> list[tuple[str, str]]:
        """Extra (label, value) lines for the summary."""
        ...

    def decode_note(self, index: int) -> FloatArray:
        """Grid note ``index`` decoded, shape ``(n_channels, n_samples)``."""
        ...

    def render(self, pitch_midi: float, dynamic: float, articulation: str, *, duration_s: float) -> FloatArray:
        """A note at any point of the axes, shape ``(n_channels, n_samples)``."""
        ...

    def factors(self, articulation: str) -> FactorView | None:
        """The articulation's factors, or None when they cannot be shown."""
        ...


class CalyxInstrumentData:
    """:class:`InstrumentData` of a decoded :class:`calyx.hypercube.Instrument` (and its file's size)."""

    def __init__(self, instrument: Any, *, file_bytes: int) -> None:
        self.inst = instrument
        self.name = str(instrument.name)
        self.method = str(instrument.method)
        self.sample_rate = int(instrument.sample_rate)
        self.file_bytes = int(file_bytes)
        self.pcm16_bytes = int(instrument.pcm16_bytes())
        self.duration_s = float(instrument.total_duration_s())
        self.notes = [
            NoteEntry(float(n.pitch_midi), float(n.dynamic), str(n.articulation), int(n.variation), str(n.source),
                      int(n.velocity_lo), int(n.velocity_hi))
            for n in instrument.notes
        ]
        self.articulations = list(instrument.articulations)

    def facts(self) -> list[tuple[str, str]]:
        s = self.inst.settings
        out = [
            ("factor model", self.method),
            ("ranks", "; ".join(f"{a}: " + ", ".join(f"{k} {v}" for k, v in self.inst.ranks(a).items())
                                for a in self.articulations)),
            ("partials × noise bands", f"{s.n_partials_max} × {s.n_noise_bands}, {s.n_channels} channel(s)"),
            ("time axis", f"{s.timebase.n_times} points over {s.timebase.duration_s:.2f} s"),
        ]
        return out

    def decode_note(self, index: int) -> FloatArray:
        return np.asarray(self.inst.decode_note(index), dtype=np.float64)

    def render(self, pitch_midi: float, dynamic: float, articulation: str, *, duration_s: float) -> FloatArray:
        y = np.asarray(self.inst.render(pitch_midi, dynamic, articulation, duration_s=duration_s), dtype=np.float64)
        return y if y.ndim == 2 else y[None, :]

    def _factor_model(self, articulation: str) -> Any:
        public = getattr(self.inst, "factor_model", None)
        if callable(public):
            return public(articulation)
        return self.inst._factor_model(self.inst.articulation(articulation))

    def factors(self, articulation: str) -> FactorView | None:
        art = self.inst.articulation(articulation)
        fm = self._factor_model(articulation)
        notes = [self.inst.notes[int(i)] for i in art.note_indices]
        pitches = np.array(sorted({n.pitch_midi for n in notes}), dtype=np.float64)
        dyn_keys = sorted({(n.velocity_lo, n.velocity_hi) for n in notes}, key=lambda v: (v[0] + v[1], v))
        variations = sorted({n.variation for n in notes})
        labels = [f"vel {lo}-{hi}" + (f" v{v}" if len(variations) > 1 else "") for lo, hi in dyn_keys for v in variations]
        s = self.inst.settings
        return FactorView(
            method=str(fm.method),
            arrays={k: np.asarray(v, dtype=np.float64) for k, v in fm.arrays.items()},
            value_shape=tuple(fm.shape),
            n_partials=int(s.n_partials_max),
            times_s=np.asarray(s.timebase.times_s, dtype=np.float64),
            pitches_midi=pitches,
            layer_labels=labels,
            note_indices=[int(i) for i in art.note_indices],
            coefficients=np.asarray(fm.coefficients(), dtype=np.float64),
            ranks=dict(fm.ranks),
        )


# --------------------------------------------------------------------------------------------------
# Helpers


def find_bench_summary(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``bench/results/library.md``: the given path, else in the working folder, else in the source tree."""
    if explicit is not None:
        p = Path(explicit)
        return p if p.is_file() else None
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        p = base / "bench" / "results" / "library.md"
        if p.is_file():
            return p
    return None


def _originals(source: str | os.PathLike[str], notes: Sequence[NoteEntry], *, preset: str | None,
               sample_rate: int) -> tuple[list[Callable[[], FloatArray] | None], str]:
    """A loader of the original audio for each grid note (None where the library has no match)."""
    from calyx.io import load_library

    lib = load_library(source, preset=preset)
    by_key: dict[tuple[str, int, int, int], list[Any]] = {}
    for n in lib.notes:
        by_key.setdefault((n.articulation, n.variation, n.velocity_lo, n.velocity_hi), []).append(n)
    out: list[Callable[[], FloatArray] | None] = []
    n_rate = 0
    for e in notes:
        cands = by_key.get((e.articulation, e.variation, e.velocity_lo, e.velocity_hi), [])
        best = min(cands, key=lambda n: abs(n.pitch_midi - e.pitch_midi), default=None)
        if best is None or abs(best.pitch_midi - e.pitch_midi) > 0.01:
            out.append(None)
        elif best.sample_rate != sample_rate:
            n_rate += 1
            out.append(None)
        else:
            out.append(best.load)
    missing = sum(o is None for o in out)
    note = ""
    if missing:
        note = f"{missing} of {len(notes)} notes have no original in {source}"
        if n_rate:
            note += f" ({n_rate} at another sample rate)"
    return out, note


def _clip(y: FloatArray, *, sample_rate: int, max_s: float) -> FloatArray:
    n = int(max_s * sample_rate)
    if y.shape[-1] <= n:
        return y
    return fade_out(y[..., :n], n_fade=int(0.05 * sample_rate))


def _glide(clips: Sequence[FloatArray], *, sample_rate: int, step_s: float) -> FloatArray:
    """The first ``step_s`` seconds of each clip, one after the other, with short fades."""
    n = int(step_s * sample_rate)
    n_fade = int(0.008 * sample_rate)
    parts = []
    for c in clips:
        seg = np.array(c[..., :n], dtype=np.float64)
        if seg.shape[-1] < n:
            seg = np.pad(seg, [(0, 0)] * (seg.ndim - 1) + [(0, n - seg.shape[-1])])
        parts.append(fade_out(seg, n_fade=n_fade))
    width = max(p.shape[0] for p in parts)
    parts = [np.repeat(p, width, axis=0) if p.shape[0] < width else p for p in parts]
    return np.concatenate(parts, axis=-1)


def _lmd_colour(value: float, lo: float, hi: float) -> str:
    """Pale green (good) to pale red (bad)."""
    t = 0.5 if hi <= lo else float(np.clip((value - lo) / (hi - lo), 0.0, 1.0))
    r, g, b = (0.86 + 0.12 * t, 0.97 - 0.12 * t, 0.88 - 0.02 * t)
    return f"rgb({int(255 * r)},{int(255 * g)},{int(255 * b)})"


def _factor_figures(fv: FactorView, notes: Sequence[NoteEntry], out: Path, stem: str) -> list[tuple[str, str]]:
    """PNG files drawing ``fv``; returns ``(relative path, caption)`` pairs."""
    figs: list[tuple[str, str]] = []
    a = fv.arrays
    n_t, n_c, n_f = fv.value_shape
    feat_x = np.arange(n_f)
    split = fv.n_partials
    coef = fv.coefficients
    if fv.method in ("pca", "nmf") and "basis" in a:
        basis = a["basis"].reshape(a["basis"].shape[0], n_t, n_c, n_f)
        k = min(basis.shape[0], 6)
        # scores along pitch, one curve per component, one panel per dynamic layer
        name = f"img/{stem}-scores.png"
        groups: dict[str, list[int]] = {}
        for r, i in enumerate(fv.note_indices):
            n = notes[i]
            groups.setdefault(f"dynamic {n.dynamic:.2f}" + (f" v{n.variation}" if n.variation else ""), []).append(r)
        panels: list[LinePanel] = []
        for label, rs in sorted(groups.items(), reverse=True)[:4]:
            rs = sorted(rs, key=lambda r: notes[fv.note_indices[r]].pitch_midi)
            x = np.array([notes[fv.note_indices[r]].pitch_midi for r in rs])
            panels.append((f"scores along pitch — {label}", "pitch (MIDI)", x, coef[rs][:, :k], None))
        factor_lines_png(out / name, panels)
        figs.append((name, f"{fv.method.upper()} scores (the coefficient row of each note) along pitch, one panel "
                           "per dynamic layer; the decoder interpolates these rows linearly between grid notes."))
        name = f"img/{stem}-spectra.png"
        early = fv.times_s <= max(0.3, float(fv.times_s[min(3, n_t - 1)]))
        curves = [(f"component {i + 1}", basis[i][early].mean(axis=(0, 1))) for i in range(k)]
        feature_label = "feature: partials | noise bands"
        panels2: list[LinePanel] = [("components as spectra (mean over the first 0.3 s and channels)", feature_label,
                                     feat_x, np.stack([c for _, c in curves], axis=1), None)]
        if "mean" in a:
            m = a["mean"].reshape(n_t, n_c, n_f)
            panels2.append(("mean note (dB re note gain), first 0.3 s", feature_label, feat_x,
                            m[early].mean(axis=(0, 1))[:, None], None))
        factor_lines_png(out / name, panels2, x_split=split - 0.5)
        figs.append((name, f"The first {k} components averaged over the attack as spectra over the features "
                           f"(partials 1..{split}, then {n_f - split} noise bands)."))
        name = f"img/{stem}-maps.png"
        maps = [(f"component {i + 1} (channel 1)", basis[i][:, 0, :]) for i in range(min(k, 4))]
        if "mean" in a:
            maps.append(("mean (channel 1)", a["mean"].reshape(n_t, n_c, n_f)[:, 0, :]))
        factor_maps_png(out / name, maps, xlabel="feature: partials | noise bands", ylabel="time point",
                        x_split=split)
        figs.append((name, "Components as maps over time point (dense attack, then log-spaced decay) × feature."))
    elif fv.method in ("cp", "tucker"):
        panels = []
        if "pitch" in a:
            panels.append(("pitch factor", "pitch (MIDI)", fv.pitches_midi[: a["pitch"].shape[0]], a["pitch"], None))
        if "layer" in a:
            ll = a["layer"]
            labels = fv.layer_labels if len(fv.layer_labels) == ll.shape[0] else None
            panels.append(("layer factor (dynamic × variation)", "layer", np.arange(ll.shape[0]), ll, labels))
        if "time" in a:
            tt = a["time"]
            panels.append(("time factor", "time after onset (s)", fv.times_s[: tt.shape[0]], tt, None))
        if "feature" in a:
            ff = a["feature"]
            panels.append(("feature factor (channel × feature)", "feature index", np.arange(ff.shape[0]), ff, None))
        if panels:
            name = f"img/{stem}-factors.png"
            factor_lines_png(out / name, panels)
            figs.append((name, f"{fv.method.upper()} factor matrices: one curve per column (first six). The decoder "
                               "interpolates the pitch and layer rows linearly between grid points."))
        if "mean" in a:
            name = f"img/{stem}-mean.png"
            factor_maps_png(out / name, [("mean (channel 1)", a["mean"].reshape(n_t, n_c, n_f)[:, 0, :])],
                            xlabel="feature: partials | noise bands", ylabel="time point", x_split=split,
                            symmetric=False, width_in=6.0)
            figs.append((name, "The values every note shares (dB re the note's gain)."))
        if "core" in a:
            core = a["core"]
            name = f"img/{stem}-core.png"
            energy = np.sqrt(np.sum(core**2, axis=tuple(range(2, core.ndim)))) if core.ndim > 2 else np.abs(core)
            factor_maps_png(out / name, [("core energy: pitch × layer components", energy.T)], xlabel="pitch component",
                            ylabel="layer component", symmetric=False, width_in=5.0)
            figs.append((name, f"Tucker core {tuple(core.shape)}: energy of each (pitch, layer) pair of components."))
    return figs


# --------------------------------------------------------------------------------------------------
# The page


_INSTRUMENT_JS = """
var data = JSON.parse(document.getElementById("calyx-data").textContent);
var player = document.getElementById("player");
var detailImg = document.getElementById("note-spectrogram");
var detailCap = document.getElementById("note-caption");
function showNote(i) {
  var n = data.notes[i];
  if (!n || !detailImg) { return; }
  detailImg.src = n.spectrogram; detailImg.alt = "spectrogram of " + n.label;
  detailCap.textContent = n.label + (n.lmd !== null ? " \u2014 LMD " + n.lmd.toFixed(3) : "");
}
document.querySelectorAll("button[data-src]").forEach(function (b) {
  b.addEventListener("click", function () {
    calyxPlay(player, b.dataset.src, b.dataset.label);
    calyxMark(b, "playing");
    if (b.dataset.note !== undefined) { showNote(parseInt(b.dataset.note, 10)); }
  });
});
function wireSlider(id, steps, fmt) {
  var s = document.getElementById(id);
  if (!s) { return; }
  var out = document.getElementById(id + "-value");
  var timer = null;
  function label() { var st = steps[parseInt(s.value, 10)]; out.textContent = fmt(st); return st; }
  s.addEventListener("input", function () {
    var st = label();
    if (timer) { window.clearTimeout(timer); }
    timer = window.setTimeout(function () { calyxPlay(player, st.src, fmt(st)); }, 120);
  });
  label();
}
wireSlider("pitch-slider", data.pitch_steps, function (st) { return "pitch " + st.pitch_midi.toFixed(2) + " (" + st.name + "), dynamic " + st.dynamic.toFixed(2); });
wireSlider("dynamic-slider", data.dynamic_steps, function (st) { return "dynamic " + st.dynamic.toFixed(2) + ", pitch " + st.pitch_midi.toFixed(2) + " (" + st.name + ")"; });
if (data.notes.length) { showNote(0); }
"""


def build_instrument_report(
    data: InstrumentData,
    *,
    out_dir: str | os.PathLike[str],
    force: bool = False,
    originals: Sequence[Callable[[], FloatArray] | None] | None = None,
    originals_note: str = "",
    source_label: str = "",
    bench_summary: Path | None = None,
    max_note_s: float = 4.0,
    slider_note_s: float = 1.5,
    pitch_step: float = 0.25,
    n_dynamic_steps: int = 11,
    title: str | None = None,
) -> Path:
    """Write the report of ``data`` into ``out_dir`` (see :func:`instrument_report`); returns ``out_dir``."""
    from calyx.metrics import lmd

    out = Path(out_dir)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass force=True (--force on the command line) to replace it")
    if not data.notes:
        raise ParameterError(f"{data.name}: the instrument has no notes to report")
    if not (max_note_s > 0 and slider_note_s > 0 and pitch_step > 0 and n_dynamic_steps >= 2):
        raise ParameterError(
            "need max_note_s > 0, slider_note_s > 0, pitch_step > 0 and n_dynamic_steps >= 2, got "
            f"{max_note_s}, {slider_note_s}, {pitch_step}, {n_dynamic_steps}"
        )
    sr = int(data.sample_rate)
    notes = list(data.notes)
    if originals is not None and len(originals) != len(notes):
        raise ParameterError(f"{len(originals)} originals for {len(notes)} notes; they must match")
    _, hop = display_stft(sr)

    with staged_dir(out, force=force) as tmp:
        # ---- every grid note: decoded, original, spectrograms, LMD
        note_items: list[dict[str, Any]] = []
        lmds: list[float | None] = []
        for i, n in enumerate(notes):
            dec = data.decode_note(i)
            orig = originals[i]() if originals is not None and originals[i] is not None else None  # type: ignore[misc]
            dec_name = f"notes/n{i:04d}-decoded.wav"
            write_wav(tmp / dec_name, _clip(dec, sample_rate=sr, max_s=max_note_s), sample_rate=sr)
            panels = []
            orig_name = None
            value: float | None = None
            if orig is not None:
                orig_name = f"notes/n{i:04d}-original.wav"
                write_wav(tmp / orig_name, _clip(orig, sample_rate=sr, max_s=max_note_s), sample_rate=sr)
                value = lmd(orig, dec, sample_rate=sr)
                panels.append(("original", mel_power(orig, sample_rate=sr)))
            panels.append(("decoded from the .calyx file", mel_power(dec, sample_rate=sr)))
            spec_name = f"img/n{i:04d}-spectrogram.png"
            label = (f"{_note_name(n.pitch_midi)} ({n.pitch_midi:.2f}), dynamic {n.dynamic:.2f}, {n.articulation}"
                     + (f" v{n.variation}" if n.variation else ""))
            spectrogram_png(tmp / spec_name, panels, sample_rate=sr, hop_length=hop, panel_height_in=1.9)
            lmds.append(value)
            note_items.append({"i": i, "label": label, "decoded": dec_name, "original": orig_name,
                               "spectrogram": spec_name, "lmd": None if value is None else round(value, 4),
                               "pitch_midi": n.pitch_midi, "dynamic": n.dynamic, "articulation": n.articulation,
                               "variation": n.variation, "source": n.source})

        # ---- factors
        factor_blocks: list[tuple[str, list[tuple[str, str]], str]] = []
        for k, art in enumerate(data.articulations):
            try:
                fv = data.factors(art)
            except (AttributeError, KeyError, ValueError, TypeError) as exc:
                factor_blocks.append((art, [], f"the factors could not be drawn ({exc})"))
                continue
            if fv is None:
                factor_blocks.append((art, [], "this file holds no factors to draw"))
                continue
            factor_blocks.append((art, _factor_figures(fv, notes, tmp, f"factors-{k}"), ""))

        # ---- between the grid points
        pitch_steps, dynamic_steps, sweep_note = _between(data, tmp, notes, slider_note_s=slider_note_s,
                                                          pitch_step=pitch_step, n_dynamic_steps=n_dynamic_steps)

        # ---- LMD along pitch, one curve per dynamic layer and articulation
        quality_png = ""
        if any(v is not None for v in lmds):
            layers: dict[str, list[tuple[float, float]]] = {}
            for n, v in zip(notes, lmds, strict=True):
                if v is not None:
                    key = f"{n.articulation}, dynamic {n.dynamic:.2f}" + (f" v{n.variation}" if n.variation else "")
                    layers.setdefault(key, []).append((n.pitch_midi, v))
            curves = []
            for key, pts in sorted(layers.items())[:12]:
                pts.sort()
                curves.append((key, np.array([p for p, _ in pts]), np.array([v for _, v in pts])))
            quality_png = "img/lmd-per-note.png"
            lines_png(tmp / quality_png, curves, title="LMD of each decoded note against its original",
                      xlabel="pitch (MIDI)", ylabel="LMD (lower is better)")

        # ---- benchmark summary
        bench_html = ""
        if bench_summary is not None and bench_summary.is_file():
            shutil.copyfile(bench_summary, tmp / "library-benchmark.md")
            bench_html = markdown_tables_html(bench_summary.read_text(encoding="utf-8", errors="replace"))

        html_text = _instrument_page(data, notes, note_items, lmds, factor_blocks, pitch_steps, dynamic_steps,
                                     sweep_note=sweep_note, bench_html=bench_html, originals_note=originals_note,
                                     quality_png=quality_png,
                                     source_label=source_label, max_note_s=max_note_s, title=title)
        (tmp / "index.html").write_text(html_text, encoding="utf-8")
    return out


def _between(
    data: InstrumentData, tmp: Path, notes: Sequence[NoteEntry], *, slider_note_s: float, pitch_step: float,
    n_dynamic_steps: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Pre-render the pitch and dynamic sliders' notes and their glides."""
    sr = int(data.sample_rate)
    art = data.articulations[0]
    local = [n for n in notes if n.articulation == art]
    pitches = sorted({n.pitch_midi for n in local})
    dynamics = sorted({n.dynamic for n in local})
    p_lo, p_hi = pitches[0], pitches[-1]
    middle = 0.5 * (p_lo + p_hi)
    # start on the grid pitch nearest the middle, so that the slider passes through grid points
    start = float(min(pitches, key=lambda p: abs(p - middle)))
    if start + 12.0 > p_hi:
        start = float(max(p_lo, p_hi - 12.0))
    d_mid = 0.5 * (dynamics[0] + dynamics[-1])
    n_pitch = math.floor(12.0 / pitch_step + 0.5) + 1
    pitch_steps: list[dict[str, Any]] = []
    clips = []
    for k in range(n_pitch):
        p = start + k * pitch_step
        y = fade_out(data.render(p, d_mid, art, duration_s=slider_note_s), n_fade=int(0.05 * sr))
        name = f"between/pitch-{k:03d}.wav"
        write_wav(tmp / name, y, sample_rate=sr)
        clips.append(y)
        pitch_steps.append({"src": name, "pitch_midi": round(p, 4), "dynamic": round(d_mid, 4),
                            "name": _note_name(p), "on_grid": bool(any(abs(p - g) < 1e-6 for g in pitches))})
    write_wav(tmp / "between/pitch-glide.wav", _glide(clips, sample_rate=sr, step_s=0.22), sample_rate=sr)
    dynamic_steps: list[dict[str, Any]] = []
    p_dyn = float(min(pitches, key=lambda p: abs(p - middle)))
    if len(dynamics) > 1:
        clips = []
        for k, d in enumerate(np.linspace(dynamics[0], dynamics[-1], n_dynamic_steps)):
            y = fade_out(data.render(p_dyn, float(d), art, duration_s=slider_note_s), n_fade=int(0.05 * sr))
            name = f"between/dynamic-{k:03d}.wav"
            write_wav(tmp / name, y, sample_rate=sr)
            clips.append(y)
            dynamic_steps.append({"src": name, "pitch_midi": round(p_dyn, 4), "dynamic": round(float(d), 4),
                                  "name": _note_name(p_dyn), "on_grid": bool(any(abs(d - g) < 1e-6 for g in dynamics))})
        write_wav(tmp / "between/dynamic-sweep.wav", _glide(clips, sample_rate=sr, step_s=0.4), sample_rate=sr)
    note = (f"articulation {art}; pitch slider from {start:g} to {start + 12:g} in steps of {pitch_step:g} semitone "
            f"at dynamic {d_mid:.2f}; dynamic slider at pitch {p_dyn:.2f}.")
    return pitch_steps, dynamic_steps, note


def _grid_html(notes: Sequence[NoteEntry], items: Sequence[dict[str, Any]], art: str,
               lmd_range: tuple[float, float]) -> str:
    local = [i for i, n in enumerate(notes) if n.articulation == art]
    pitches = sorted({notes[i].pitch_midi for i in local})
    dynamics = sorted({notes[i].dynamic for i in local}, reverse=True)
    rows = ['<div style="overflow-x:auto"><table class="grid" data-articulation=' + attr(art) + ">",
            "<thead><tr><th>dynamic \\ pitch</th>" + "".join(
                f'<th title="{p:.2f}">{esc(_note_name(p))}</th>' for p in pitches) + "</tr></thead><tbody>"]
    for d in dynamics:
        cells = [f"<th>{d:.2f}</th>"]
        for p in pitches:
            here = sorted((i for i in local if notes[i].pitch_midi == p and notes[i].dynamic == d),
                          key=lambda i: notes[i].variation)
            if not here:
                cells.append('<td class="empty" title="no note at this grid point"></td>')
                continue
            buttons = []
            for i in here:
                it = items[i]
                v = f" v{notes[i].variation}" if len(here) > 1 else ""
                style = ""
                if it["lmd"] is not None:
                    style = f' style="--cellbg:{_lmd_colour(it["lmd"], *lmd_range)}"'
                buttons.append(f'<button type="button" class="decoded" data-note="{i}" data-src={attr(it["decoded"])} '
                               f'data-label={attr("decoded: " + it["label"])}{style}>&#9654; decoded{v}</button>')
                if it["original"]:
                    buttons.append(f'<button type="button" class="original" data-note="{i}" '
                                   f'data-src={attr(it["original"])} data-label={attr("original: " + it["label"])}>'
                                   f"&#9654; original{v}</button>")
                if it["lmd"] is not None:
                    buttons.append(f'<span class="lmd">LMD {it["lmd"]:.3f}</span>')
            cells.append(f'<td><div class="cell">{"".join(buttons)}</div></td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</tbody></table></div>")
    return "\n".join(rows)


def _slider_html(key: str, steps: Sequence[dict[str, Any]], title: str, glide_src: str, glide_text: str) -> str:
    if not steps:
        return ""
    marks = "".join(f'<option value="{k}"></option>' for k, st in enumerate(steps) if st["on_grid"])
    return (f'<h3>{esc(title)}</h3><div class="slider"><label for="{key}">{esc(title)}</label>'
            f'<input id="{key}" type="range" min="0" max="{len(steps) - 1}" value="0" step="1" list="{key}-marks">'
            f'<span id="{key}-value" class="muted"></span></div><datalist id="{key}-marks">{marks}</datalist>'
            f'<p class="note">{esc(glide_text)}</p><audio id="{key}-glide" controls preload="metadata" '
            f"src={attr(glide_src)}></audio>")


def _instrument_page(
    data: InstrumentData, notes: Sequence[NoteEntry], items: list[dict[str, Any]], lmds: Sequence[float | None],
    factor_blocks: list[tuple[str, list[tuple[str, str]], str]], pitch_steps: list[dict[str, Any]],
    dynamic_steps: list[dict[str, Any]], *, sweep_note: str, bench_html: str, originals_note: str,
    quality_png: str, source_label: str, max_note_s: float, title: str | None,
) -> str:
    known = [v for v in lmds if v is not None]
    lmd_range = (min(known), max(known)) if known else (0.0, 1.0)
    ratio = data.pcm16_bytes / max(data.file_bytes, 1)
    kbps = 8.0 * data.file_bytes / max(data.duration_s, 1e-9) / 1000.0
    facts: list[tuple[str, str]] = [
        ("notes", f"{len(notes)} ({len({n.pitch_midi for n in notes})} pitches × "
                  f"{len({n.dynamic for n in notes})} dynamics × {len(data.articulations)} articulation(s)), "
                  f"{data.duration_s:.1f} s at {data.sample_rate} Hz"),
        ("file size", f"{format_bytes(data.file_bytes)} ({data.file_bytes} bytes)"),
        ("source as 16-bit PCM", format_bytes(data.pcm16_bytes)),
        ("ratio vs PCM16", f"{ratio:.1f} : 1 ({kbps:.2f} kbit/s over the notes' total duration)"),
    ]
    if known:
        weights = [items[i]["lmd"] is not None for i in range(len(items))]
        mean = float(np.mean(known))
        facts.append(("LMD per note", f"mean {mean:.3f}, best {min(known):.3f}, worst {max(known):.3f} "
                                      f"({sum(weights)} notes compared with the source)"))
    facts += data.facts()
    if source_label:
        facts.append(("source library", source_label))
    head = title or f"{data.name} — instrument report"
    first = items[0]
    body = [
        f"<h1>{esc(data.name)}</h1>",
        '<p class="lead">An instrument encoded as a spectral hypercube: every note below is decoded from the '
        "<code>.calyx</code> file" + (", beside the original it was made from." if known else ".") + "</p>",
        '<nav class="toc"><a href="#grid">Notes</a><a href="#between">Between the grid points</a>'
        '<a href="#factors">Factors</a><a href="#quality">Size and quality</a></nav>',
        '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts) + "</dl>",
        '<div class="player"><strong>player</strong><audio id="player" controls preload="metadata" '
        f'src={attr(first["decoded"])}></audio><span class="now" id="player-now">click a note</span></div>',
        '<h2 id="grid">Notes on the grid</h2>',
        '<p class="note">Pitch across, dynamic down (loudest first). Each cell plays the decoded note'
        + (" and the original" if known else "") + f" (the first {max_note_s:g} s) and shows their spectrograms "
        "below." + (" Cell colour: LMD against the original, green best, red worst." if known else "")
        + (f" {esc(originals_note)}." if originals_note else "") + "</p>",
    ]
    for art in data.articulations:
        if len(data.articulations) > 1:
            body.append(f"<h3>Articulation {esc(art)}</h3>")
        body.append(_grid_html(notes, items, art, lmd_range))
    body.append('<div id="note-caption" class="muted"></div>'
                f'<img id="note-spectrogram" class="plot" src={attr(first["spectrogram"])} alt="note spectrogram">')
    body.append('<h2 id="between">Between the grid points</h2>'
                '<p class="note">Notes rendered from the model at points where nothing was recorded: move a slider '
                "to hear the note at that point (tick marks are grid points). Pre-rendered: "
                f"{esc(sweep_note)} The glides play the first fraction of a second of every step in turn.</p>")
    body.append(_slider_html("pitch-slider", pitch_steps, "Pitch", "between/pitch-glide.wav",
                             "Pitch glide: every step of the slider in turn."))
    body.append(_slider_html("dynamic-slider", dynamic_steps, "Dynamic", "between/dynamic-sweep.wav",
                             "Dynamic sweep: every step of the slider in turn, softest first."))
    if not dynamic_steps:
        body.append('<p class="note">One dynamic layer only: no dynamic slider.</p>')
    body.append('<h2 id="factors">Learned factors</h2>')
    for art, figs, why in factor_blocks:
        if len(factor_blocks) > 1:
            body.append(f"<h3>Articulation {esc(art)}</h3>")
        if why:
            body.append(f'<p class="note">{esc(why)}</p>')
        for src, caption in figs:
            body.append(f'<figure><img class="plot" src={attr(src)} alt={attr(caption)}>'
                        f'<figcaption class="note">{esc(caption)}</figcaption></figure>')
    body.append('<h2 id="quality">Size and quality</h2>')
    rows = []
    for it in sorted(items, key=lambda it: (it["articulation"], it["dynamic"], it["pitch_midi"], it["variation"])):
        lm = "" if it["lmd"] is None else f"{it['lmd']:.3f}"
        rows.append(f"<tr><td>{esc(it['label'])}</td><td>{esc(lm)}</td><td class=\"text\">{esc(it['source'])}</td></tr>")
    body.append(f'<p>{esc(format_bytes(data.file_bytes))} for {len(notes)} notes: {ratio:.1f} times smaller than '
                "16-bit PCM of the source notes.</p>"
                + (f'<figure><img class="plot" src={attr(quality_png)} alt="LMD per note along pitch">'
                   '<figcaption class="note">LMD of each decoded note against its original, along pitch, '
                   "per dynamic layer (lower is better).</figcaption></figure>" if quality_png else "")
                + '<table class="data"><thead><tr><th>note</th><th>LMD</th><th class="text">source</th></tr></thead><tbody>'
                + "".join(rows) + "</tbody></table>")
    if bench_html:
        body.append('<p class="note">Below, for comparison: <a href="library-benchmark.md">bench/results/library.md</a> '
                    "(other codecs measured on a development library; LMD lower is better).</p>" + bench_html)
    page_data = {"kind": "instrument", "notes": items, "pitch_steps": pitch_steps, "dynamic_steps": dynamic_steps,
                 "file_bytes": data.file_bytes, "pcm16_bytes": data.pcm16_bytes}
    return page(title=head, body="\n".join(body), script=_INSTRUMENT_JS, data=page_data)


def instrument_report(
    calyx_path: str | os.PathLike[str],
    *,
    source: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str],
    force: bool = False,
    preset: str | None = None,
    bench_summary: str | os.PathLike[str] | None = None,
    max_note_s: float = 4.0,
    slider_note_s: float = 1.5,
) -> Path:
    """Write the HTML report of a ``.calyx`` instrument; returns ``out_dir``.

    Parameters
    ----------
    calyx_path : str or os.PathLike
        The instrument file.
    source : str or os.PathLike, optional
        The library it was encoded from (anything :func:`calyx.io.load_library` reads); its notes
        are played beside the decoded ones and compared with them (LMD).
    out_dir : str or os.PathLike
        The report folder to create (written into a temporary folder beside it, then renamed).
    force : bool
        Replace an existing ``out_dir``.
    preset : str, optional
        The SoundFont preset of ``source`` (default: the one recorded in the file, if any).
    bench_summary : str or os.PathLike, optional
        A ``library.md`` benchmark table to summarise (default: ``bench/results/library.md`` in
        the working folder or the source tree, when it exists).
    max_note_s : float
        Grid notes are played for at most this long (the LMD uses the whole note).
    slider_note_s : float
        Length of the notes rendered between the grid points.

    Raises
    ------
    FileExistsError
        ``out_dir`` exists and ``force`` is false.
    FileNotFoundError, calyx.errors.FormatError, calyx.errors.AudioFileError
        An input cannot be read.
    """
    from calyx.instrument import load

    out = Path(out_dir)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass force=True (--force on the command line) to replace it")
    path = Path(calyx_path)
    inst = load(path)
    data = CalyxInstrumentData(inst, file_bytes=path.stat().st_size)
    originals = None
    note = ""
    label = ""
    if source is not None:
        chosen = preset if preset is not None else inst.provenance.get("preset")
        originals, note = _originals(source, data.notes, preset=chosen, sample_rate=data.sample_rate)
        label = str(source)
    return build_instrument_report(
        data, out_dir=out, force=force, originals=originals, originals_note=note, source_label=label,
        bench_summary=find_bench_summary(bench_summary), max_note_s=max_note_s, slider_note_s=slider_note_s,
    )
