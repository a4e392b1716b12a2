"""The report of one recording encoded as events: hear it, see the events, watch the pursuit.

:func:`events_report` writes a folder holding ``index.html`` with

- players for the recording and its reconstruction, with their spectrograms and the LMD;
- the events as an inline SVG scatter plot (time across, a one-dimensional embedding of the
  event vectors up, colour from a fixed random projection of the vectors to RGB); clicking a
  point plays that event alone (each event is pre-rendered to a short WAV file);
- the residual spectrogram after each step of the matching pursuit, as a stepper;
- the event vectors as an image;
- three manipulated versions made in codec space (random vectors at the original times, the
  original vectors at random times, one common random perturbation of every vector).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.core.spectrum import stft
from calyx.errors import ParameterError
from calyx.report._page import attr, esc, fade_out, format_bytes, page, staged_dir, write_wav
from calyx.report._plots import display_stft, matrix_png, mel_power, power_to_mel, spectrogram_png

__all__ = ["embed_1d", "event_colours", "events_report", "manipulations", "pursuit_residuals"]

FloatArray = NDArray[np.float64]

#: Seed of the fixed projection of event vectors to colours (the same in every report).
COLOUR_SEED = 0x5EED
#: Longest pre-rendered single-event clip, seconds.
MAX_CLIP_S = 3.0
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def _note_name(pitch_midi: float) -> str:
    nearest = round(pitch_midi)
    cents = round(100.0 * (pitch_midi - nearest))
    name = f"{_NOTE_NAMES[nearest % 12]}{nearest // 12 - 1}"
    return f"{name}{cents:+d}c" if cents else name


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - only slower without it
        yield
        return
    with threadpool_limits(limits=1):
        yield


# --------------------------------------------------------------------------------------------------
# Pure functions (tested on their own)


def _ranges() -> tuple[FloatArray, FloatArray]:
    from calyx.events import EVENT_PARAMS

    return np.array([p.low for p in EVENT_PARAMS]), np.array([p.high for p in EVENT_PARAMS])


def normalised_params(params: NDArray[np.floating]) -> FloatArray:
    """Event vectors scaled to 0..1 by each parameter's range (see :data:`calyx.events.EVENT_PARAMS`)."""
    lo, hi = _ranges()
    return np.asarray((np.asarray(params, dtype=np.float64) - lo) / (hi - lo))


def event_colours(params: NDArray[np.floating]) -> FloatArray:
    """RGB (0..1) of each event: a fixed random projection of its range-normalised vector.

    The projection is the same for every recording; its three outputs are then standardised over
    the recording's events (so that the events of one page differ visibly) and squashed into
    0.12..0.88.

    Returns
    -------
    np.ndarray [shape=(n_events, 3)]
    """
    u = normalised_params(params)
    if u.shape[0] == 0:
        return np.zeros((0, 3))
    proj = np.random.default_rng(COLOUR_SEED).standard_normal((u.shape[1], 3)) / math.sqrt(u.shape[1])
    c = (u - 0.5) @ proj
    if u.shape[0] > 1:
        c = (c - c.mean(axis=0)) / (c.std(axis=0) + 1e-9)
    else:
        c = c / (np.abs(c).max() + 1e-9)
    return np.asarray(0.12 + 0.76 / (1.0 + np.exp(-1.4 * c)))


def embed_1d(params: NDArray[np.floating], *, seed: int = 0, tsne_min_events: int = 30) -> tuple[FloatArray, str]:
    """One coordinate per event placing similar event vectors near each other.

    t-SNE (scikit-learn, one component) from ``tsne_min_events`` events on, the first principal
    component below that (or when scikit-learn is missing). Each parameter is first scaled by its
    range (:func:`normalised_params`), so that one that barely moves does not count as much as one
    that spans its range.

    Returns the coordinates (``(n_events,)``) and the method's name.
    """
    z = normalised_params(params)
    n = z.shape[0]
    if n == 0:
        return np.zeros(0), "none"
    if n == 1:
        return np.zeros(1), "a single event"
    if not np.any(z.std(axis=0) > 1e-12):
        return np.zeros(n), "all events are equal"
    # distances in units of each parameter's range: a parameter that barely moves stays small
    zs = z - z.mean(axis=0)
    if n >= tsne_min_events:
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            pass
        else:
            perplexity = float(min(30.0, max(5.0, (n - 1) / 3.0)))
            with _single_thread():
                y = TSNE(n_components=1, perplexity=perplexity, init="pca", random_state=seed,
                         learning_rate="auto").fit_transform(zs)
            return np.asarray(y[:, 0], dtype=np.float64), "t-SNE (1 component)"
    _, _, vt = np.linalg.svd(zs, full_matrices=False)
    first = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
    return np.asarray(zs @ first), "PCA (first component)"


@dataclass(frozen=True)
class Manipulation:
    """One edit of an event list made in codec space."""

    key: str
    title: str
    description: str
    events: Any  # calyx.events.EventList


def manipulations(events: Any, *, seed: int = 0) -> list[Manipulation]:
    """Three edits of ``events`` (an :class:`calyx.events.EventList`), reproducible from ``seed``.

    1. ``random-vectors``: every event gets a random vector, drawn from a Gaussian with the mean
       and covariance of the recording's own event vectors, at its original time;
    2. ``random-times``: every event keeps its vector but sounds at a uniformly random time;
    3. ``perturbed``: one random offset (8 % of each parameter's range, Gaussian) is added to
       every vector.

    Values are clipped into the parameters' ranges.
    """
    from calyx.events import EventList
    from calyx.events.params import clip_params, default_params

    rng = np.random.default_rng(seed)
    lo, hi = _ranges()
    p = np.asarray(events.params, dtype=np.float64)
    n = p.shape[0]
    if n >= 2:
        mean = p.mean(axis=0)
        cov = np.cov(p.T) + np.diag((0.01 * (hi - lo)) ** 2)
    else:
        mean = p[0] if n else default_params(1)[0]
        cov = np.diag(((hi - lo) / 16.0) ** 2)
    random_rows = clip_params(rng.multivariate_normal(mean, cov, size=n, method="eigh")) if n else p.copy()
    duration = events.duration_s
    random_times = np.sort(rng.uniform(0.0, max(duration - 0.05, 0.0), size=n))
    delta = rng.standard_normal(p.shape[1]) * 0.08 * (hi - lo)
    perturbed = clip_params(p + delta) if n else p.copy()

    def edited(times: FloatArray, rows: FloatArray) -> Any:
        return EventList(times, rows, events.room.copy(), events.sample_rate, events.n_samples)

    from calyx.events import EVENT_PARAMS

    order = np.argsort(-np.abs(delta) / (hi - lo))[:5]
    biggest = ", ".join(f"{EVENT_PARAMS[i].name} {delta[i]:+.3g} {EVENT_PARAMS[i].unit}" for i in order)
    return [
        Manipulation("random-vectors", "Random vectors at the original times",
                     "Each event's vector is replaced by a random one drawn from a Gaussian with the mean and "
                     "covariance of this recording's event vectors; the times are kept.",
                     edited(events.times_s.copy(), random_rows)),
        Manipulation("random-times", "Original vectors at random times",
                     "Each event keeps its vector and sounds at a uniformly random time in the recording.",
                     edited(random_times, p.copy())),
        Manipulation("perturbed", "One common random perturbation",
                     "The same random offset (Gaussian, 8 % of each parameter's range) is added to every "
                     f"event vector. Largest changes: {biggest}.",
                     edited(events.times_s.copy(), perturbed)),
    ]


def _event_power_block(
    y_event: FloatArray, i0: int, *, n_frames: int, n_fft: int, hop: int
) -> tuple[int, FloatArray]:
    """Power spectrogram of a sound starting at sample ``i0`` on the centred frame grid of the recording."""
    half = n_fft // 2
    f_lo = max(0, (i0 - half) // hop)
    f_hi = min(n_frames, (i0 + y_event.size + half) // hop + 2)
    if f_hi <= f_lo:
        return f_lo, np.zeros((n_fft // 2 + 1, 0))
    seg_start = f_lo * hop - half
    seg = np.zeros((f_hi - f_lo - 1) * hop + n_fft)
    a = i0 - seg_start
    lo = max(a, 0)
    hi = min(a + y_event.size, seg.size)
    if hi > lo:
        seg[lo:hi] = y_event[lo - a : hi - a]
    spec = stft(seg, n_fft=n_fft, hop_length=hop, center=False)
    return f_lo, np.abs(spec[:, : f_hi - f_lo]) ** 2


def _chosen_steps(n_events: int, max_frames: int) -> list[int]:
    """Steps to show: 0 (the input), the first ones one by one, then log-spaced up to the last."""
    if n_events <= max_frames - 1:
        return list(range(n_events + 1))
    first = list(range(0, max(2, (max_frames - 1) // 2)))
    rest = np.unique(np.round(np.geomspace(first[-1] + 1, n_events, max_frames - len(first))).astype(int))
    return sorted({*first, *map(int, rest), n_events})


@dataclass(frozen=True)
class ResidualFrame:
    """The residual after one step of the pursuit (or after the whole encoder)."""

    label: str
    mel_power: FloatArray
    energy_ratio: float


def pursuit_residuals(
    x: NDArray[np.floating], *, sample_rate: int, max_frames: int = 24
) -> tuple[list[ResidualFrame], int]:
    """Residual power spectrograms after steps of a matching pursuit of ``x``.

    The pursuit is run again with the encoder's default settings
    (:func:`calyx.events._pursuit.pursue`); its events are then subtracted one at a time, in the
    order it found them, from the power spectrogram of ``x`` — the pursuit's own definition of
    the residual, ``max(|X|^2 - sum |E_k|^2, 0)``, on the display's STFT grid.

    Returns the frames (step 0 is the input) and the number of events the pursuit found.
    """
    from calyx.events._pursuit import pursue
    from calyx.events.render import placement, render_event

    sig = np.asarray(x, dtype=np.float64)
    times, params, _ = pursue(sig, sample_rate=sample_rate)
    n_fft, hop = display_stft(sample_rate)
    power = np.abs(stft(sig, n_fft=n_fft, hop_length=hop)) ** 2
    total = max(float(np.sum(power)), 1e-30)
    model = np.zeros_like(power)
    steps = set(_chosen_steps(int(times.size), max_frames))
    frames = [ResidualFrame("input (step 0)", power_to_mel(power, sample_rate=sample_rate, n_fft=n_fft), 1.0)]
    for e in range(times.size):
        y_ev = render_event(params[e], sample_rate=sample_rate)
        i0, start_s = placement(float(times[e]), sample_rate=sample_rate)
        y_ev = render_event(params[e], sample_rate=sample_rate, n_samples=y_ev.size, start_s=start_s)
        f_lo, block = _event_power_block(y_ev, i0, n_frames=power.shape[1], n_fft=n_fft, hop=hop)
        model[:, f_lo : f_lo + block.shape[1]] += block
        if e + 1 in steps:
            res = np.maximum(power - model, 0.0)
            label = (f"step {e + 1}: event at {times[e]:.3f} s, {_note_name(float(params[e, 0]))}")
            frames.append(ResidualFrame(label, power_to_mel(res, sample_rate=sample_rate, n_fft=n_fft),
                                        float(np.sum(res)) / total))
    return frames, int(times.size)


# --------------------------------------------------------------------------------------------------
# The page


def _ticks(span: float, target: int = 8) -> list[float]:
    if span <= 0:
        return [0.0]
    raw = span / target
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(span / step) + 1)]


@dataclass(frozen=True)
class _Geometry:
    width: int = 960
    height: int = 320
    left: int = 56
    right: int = 16
    top: int = 14
    bottom: int = 40


def _scatter_svg(
    times_s: FloatArray, coord: FloatArray, rgb: FloatArray, level_db: FloatArray, labels: list[str],
    srcs: list[str | None], *, duration_s: float, method: str, g: _Geometry,
) -> str:
    plot_w = g.width - g.left - g.right
    plot_h = g.height - g.top - g.bottom
    dur = max(duration_s, 1e-6)
    parts = [f'<svg class="scatter" id="event-map" xmlns="http://www.w3.org/2000/svg" width="{g.width}" '
             f'height="{g.height}" viewBox="0 0 {g.width} {g.height}" role="img" '
             'aria-label="events: time across, embedding up">']
    x0, y0 = g.left, g.top + plot_h
    parts.append(f'<line class="axis" x1="{x0}" y1="{y0}" x2="{g.left + plot_w}" y2="{y0}"/>')
    parts.append(f'<line class="axis" x1="{x0}" y1="{g.top}" x2="{x0}" y2="{y0}"/>')
    for t in _ticks(dur):
        x = g.left + t / dur * plot_w
        parts.append(f'<line class="axis" x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 4}"/>')
        parts.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{g.left + plot_w / 2:.0f}" y="{g.height - 6}" text-anchor="middle">time (s)</text>')
    parts.append(f'<text transform="translate(14 {g.top + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle">'
                 f"{esc(method)}</text>")
    if coord.size:
        c_lo, c_hi = float(coord.min()), float(coord.max())
        span = c_hi - c_lo
        l_lo, l_hi = float(level_db.min()), float(level_db.max())
        order = np.argsort(level_db)[::-1]  # quiet events drawn last, on top
        for i in order:
            x = g.left + float(np.clip(times_s[i] / dur, 0.0, 1.0)) * plot_w
            v = 0.5 if span <= 1e-12 else (float(coord[i]) - c_lo) / span
            y = g.top + 6 + (1.0 - v) * (plot_h - 12)
            r = 3.5 + (5.0 * (float(level_db[i]) - l_lo) / (l_hi - l_lo) if l_hi > l_lo else 2.5)
            colour = "#" + "".join(f"{round(255 * c):02x}" for c in rgb[i])
            src = srcs[i]
            data = f' data-src={attr(src)}' if src else ""
            parts.append(f'<circle class="ev" id="ev-{i}" data-i="{i}"{data} data-label={attr(labels[i])} '
                         f'cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{colour}"><title>{esc(labels[i])}</title></circle>')
    parts.append(f'<line id="playhead" x1="{g.left}" y1="{g.top}" x2="{g.left}" y2="{y0}" stroke="#1f6feb" '
                 'stroke-width="1.5" visibility="hidden"/>')
    parts.append("</svg>")
    return "\n".join(parts)


_EVENTS_JS = """
var data = JSON.parse(document.getElementById("calyx-data").textContent);
var eventPlayer = document.getElementById("event-player");
document.querySelectorAll("circle.ev").forEach(function (c) {
  c.addEventListener("click", function () {
    if (!c.dataset.src) { return; }
    calyxPlay(eventPlayer, c.dataset.src, c.dataset.label);
    calyxMark(c, "playing");
  });
});
var head = document.getElementById("playhead");
function followHead(player) {
  function tick() {
    var g = data.geometry;
    var w = g.width - g.left - g.right;
    var x = g.left + Math.min(player.currentTime / data.duration_s, 1) * w;
    head.setAttribute("x1", x); head.setAttribute("x2", x);
    head.setAttribute("visibility", player.paused ? "hidden" : "visible");
    if (!player.paused) { window.requestAnimationFrame(tick); }
  }
  player.addEventListener("play", function () { window.requestAnimationFrame(tick); });
  player.addEventListener("pause", tick);
  player.addEventListener("seeked", tick);
}
["original", "reconstruction"].forEach(function (id) {
  var el = document.getElementById(id); if (el && head) { followHead(el); }
});
var step = document.getElementById("step");
if (step) {
  var img = document.getElementById("residual-img");
  var cap = document.getElementById("residual-caption");
  function show(i) {
    var f = data.residuals[i];
    step.value = i; img.src = f.src; img.alt = f.label;
    cap.textContent = (i + 1) + " / " + data.residuals.length + " \u2014 " + f.label +
      " \u2014 residual energy " + (100 * f.energy_ratio).toFixed(1) + " % of the input (" +
      (10 * Math.log10(Math.max(f.energy_ratio, 1e-12))).toFixed(1) + " dB)";
  }
  step.addEventListener("input", function () { show(parseInt(step.value, 10)); });
  document.getElementById("step-prev").addEventListener("click", function () { show(Math.max(0, parseInt(step.value, 10) - 1)); });
  document.getElementById("step-next").addEventListener("click", function () { show(Math.min(data.residuals.length - 1, parseInt(step.value, 10) + 1)); });
  show(parseInt(step.value, 10));
}
"""


def _render_alone(events: Any, index: int, *, lead_s: float, max_s: float) -> FloatArray:
    """Event ``index`` of ``events`` alone (in the recording's room), starting ``lead_s`` into the clip."""
    from calyx.events import EventList, decode
    from calyx.events.render import event_lengths, room_impulse_response

    sr = events.sample_rate
    row = events.params[index : index + 1]
    ir = room_impulse_response(events.room, sample_rate=sr)
    n = int(lead_s * sr) + int(event_lengths(row, sample_rate=sr)[0]) + (0 if ir is None else ir.size)
    n = max(1, min(n, int(max_s * sr)))
    # keep the onset's position within a sample, as in the recording
    frac = events.times_s[index] * sr - math.floor(events.times_s[index] * sr)
    one = EventList(np.array([lead_s + frac / sr]), row.copy(), events.room.copy(), sr, n)
    return fade_out(decode(one), n_fade=int(0.02 * sr))


def events_report(
    wav_path: str | os.PathLike[str],
    cxe_path: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str],
    force: bool = False,
    seed: int = 0,
    residual_steps: int = 24,
    max_event_clips: int = 500,
) -> Path:
    """Write the HTML report of a recording and its event encoding; returns ``out_dir``.

    Parameters
    ----------
    wav_path : str or os.PathLike
        The recording the events were encoded from (any format :func:`calyx.core.audio.read_audio`
        reads).
    cxe_path : str or os.PathLike
        Its ``.cxe`` file.
    out_dir : str or os.PathLike
        The report folder to create (written into a temporary folder beside it, then renamed).
    force : bool
        Replace an existing ``out_dir``.
    seed : int
        Seed of the manipulated versions and of the embedding.
    residual_steps : int
        At most this many pursuit steps in the residual stepper (0: leave the stepper out and
        skip re-running the pursuit).
    max_event_clips : int
        Pre-render at most this many single-event clips (the loudest); other points do not play.

    Raises
    ------
    FileExistsError
        ``out_dir`` exists and ``force`` is false.
    calyx.errors.AudioFileError, calyx.errors.FormatError
        An input cannot be read.
    calyx.errors.ParameterError
        The recording's sample rate differs from the events'.
    """
    from calyx.core.audio import read_audio
    from calyx.events import EVENT_PARAMS, decode, load
    from calyx.metrics import lmd

    out = Path(out_dir)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass force=True (--force on the command line) to replace it")
    y, sr = read_audio(wav_path)
    events = load(cxe_path)
    if sr != events.sample_rate:
        raise ParameterError(
            f"{wav_path} is at {sr} Hz but {cxe_path} holds events at {events.sample_rate} Hz; "
            "give the recording the events were encoded from"
        )
    x = y.mean(axis=0)
    n_events = len(events)
    y_hat = decode(events)
    cxe_bytes = Path(cxe_path).stat().st_size
    duration = events.duration_s
    quality = lmd(x, y_hat, sample_rate=sr)

    with staged_dir(out, force=force) as tmp:
        # ---- players and spectrograms
        write_wav(tmp / "audio" / "original.wav", y, sample_rate=sr)
        peak_rec = write_wav(tmp / "audio" / "reconstruction.wav", y_hat, sample_rate=sr)
        mel_x, mel_y = mel_power(x, sample_rate=sr), mel_power(y_hat, sample_rate=sr)
        _, hop = display_stft(sr)
        spectrogram_png(tmp / "img" / "spectrograms.png",
                        [("original", mel_x), ("reconstruction from events", mel_y)],
                        sample_rate=sr, hop_length=hop)

        # ---- single-event clips
        level = events.level_db
        loudest = set(np.argsort(-level)[: max(int(max_event_clips), 0)].tolist())
        srcs: list[str | None] = []
        for i in range(n_events):
            if i in loudest:
                name = f"events/e{i:04d}.wav"
                clip = _render_alone(events, i, lead_s=0.01, max_s=MAX_CLIP_S)
                peak = float(np.max(np.abs(clip))) if clip.size else 0.0
                write_wav(tmp / name, clip / peak * 0.9 if peak > 0.99 else clip, sample_rate=sr)
                srcs.append(name)
            else:
                srcs.append(None)
        labels = [f"#{i}  {events.times_s[i]:.3f} s  {_note_name(float(events.pitch_midi[i]))}  "
                  f"{level[i]:.1f} dB" for i in range(n_events)]
        coord, method = embed_1d(events.params, seed=seed)
        rgb = event_colours(events.params)
        geom = _Geometry()
        svg = _scatter_svg(events.times_s, coord, rgb, level, labels, srcs, duration_s=duration, method=method,
                           g=geom)

        # ---- event vectors as an image
        order = np.argsort(events.times_s, kind="stable")
        matrix_png(tmp / "img" / "event-vectors.png", normalised_params(events.params[order]),
                   title="event vectors, each parameter scaled to its range (0 = low end, 1 = high end)",
                   xlabels=[p.name for p in EVENT_PARAMS], ylabel="events in time order",
                   colorbar_label="position in range", height_in=max(3.0, min(9.0, 1.5 + 0.04 * n_events)))

        # ---- residuals after the pursuit's steps
        residual_items: list[dict[str, Any]] = []
        n_pursuit = 0
        if residual_steps > 0:
            frames, n_pursuit = pursuit_residuals(x, sample_rate=sr, max_frames=int(residual_steps))
            power_y = np.abs(stft(x, n_fft=display_stft(sr)[0], hop_length=hop)) ** 2
            power_hat = np.abs(stft(y_hat, n_fft=display_stft(sr)[0], hop_length=hop)) ** 2
            final = np.maximum(power_y - power_hat, 0.0)
            frames.append(ResidualFrame(
                f"after refinement and pruning: the {n_events} events of the file (room included)",
                power_to_mel(final, sample_rate=sr, n_fft=display_stft(sr)[0]),
                float(np.sum(final)) / max(float(np.sum(power_y)), 1e-30)))
            ref = float(np.max(frames[0].mel_power)) if frames[0].mel_power.size else 1.0
            for k, f in enumerate(frames):
                name = f"img/residual-{k:03d}.png"
                spectrogram_png(tmp / name, [(f.label, f.mel_power)], sample_rate=sr, hop_length=hop, ref_power=ref,
                                panel_height_in=2.6)
                residual_items.append({"src": name, "label": f.label, "energy_ratio": round(f.energy_ratio, 6)})

        # ---- manipulated versions
        edits = manipulations(events, seed=seed)
        edit_rows = []
        for m in edits:
            z = decode(m.events)
            peak = float(np.max(np.abs(z))) if z.size else 0.0
            gain_note = ""
            if peak > 0.99:
                z = z * (0.99 / peak)
                gain_note = f" Scaled by {20 * math.log10(0.99 / peak):.1f} dB to avoid clipping."
            write_wav(tmp / "audio" / f"{m.key}.wav", z, sample_rate=sr)
            edit_rows.append((m, gain_note))

        # ---- the page
        kbps = 8.0 * cxe_bytes / max(duration, 1e-9) / 1000.0
        facts = [
            ("recording", Path(wav_path).name), ("events file", f"{Path(cxe_path).name}, {format_bytes(cxe_bytes)}"),
            ("duration", f"{duration:.2f} s at {sr} Hz"), ("events", f"{n_events} ({n_events / max(duration, 1e-9):.1f} per second)"),
            ("bitrate", f"{kbps:.2f} kbit/s"), ("LMD (reconstruction vs original)", f"{quality:.3f}"),
        ]
        if peak_rec > 1.0:
            facts.append(("note", f"the reconstruction peaks at {peak_rec:.2f} and is clipped in the player"))
        body = [
            f"<h1>{esc(Path(wav_path).name)} as events</h1>",
            '<p class="lead">A recording encoded by the sparse event codec: each event is a time and a vector of '
            "physical parameters rendered by a fixed decoder.</p>",
            '<nav class="toc"><a href="#listen">Listen</a><a href="#map">Event map</a><a href="#pursuit">Pursuit</a>'
            '<a href="#vectors">Vectors</a><a href="#edits">Edits</a></nav>',
            '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts) + "</dl>",
            '<h2 id="listen">Original and reconstruction</h2><div class="players">',
            '<figure><figcaption>original</figcaption><audio id="original" controls preload="metadata" '
            'src="audio/original.wav"></audio></figure>',
            '<figure><figcaption>reconstruction from the events</figcaption><audio id="reconstruction" controls '
            'preload="metadata" src="audio/reconstruction.wav"></audio></figure></div>',
            '<img class="plot" src="img/spectrograms.png" alt="spectrograms of the original and the reconstruction">',
            '<h2 id="map">Event map</h2>',
            f'<p class="note">One point per event: time across; up, a {esc(method)} of the event vectors '
            "(each parameter scaled by its range), so that similar events lie at similar heights; colour, a fixed "
            "random projection of the vectors to RGB; size, the event's level. Click a point to hear that "
            "event alone (in the recording's room).</p>",
        ]
        first_src = next((s for s in srcs if s), None)
        if first_src is not None:
            body.append('<div class="player"><strong>event</strong><audio id="event-player" controls preload="metadata" '
                        f'src={attr(first_src)}></audio><span class="now" id="event-player-now">click a point</span></div>')
        if len(loudest) < n_events:
            body.append(f'<p class="note">Only the {len(loudest)} loudest events were pre-rendered; the others do not play.</p>')
        body.append(svg)
        body.append('<h2 id="pursuit">Residual after each pursuit step</h2>')
        if residual_items:
            body.append(
                '<p class="note">The encoder\'s matching pursuit removes one event at a time from the residual '
                "power spectrogram. The pursuit does not keep its intermediate residuals, so it is run again here "
                f"with the encoder's default settings (it finds {n_pursuit} events; the file holds {n_events} "
                "after joint refinement and pruning, which can differ), and its events are subtracted in the "
                "order it found them. The last frame is the residual of the file's own events.</p>"
                '<div class="stepper"><button id="step-prev" type="button">&larr;</button>'
                f'<input id="step" type="range" min="0" max="{len(residual_items) - 1}" value="{len(residual_items) - 1}" '
                'aria-label="pursuit step"><button id="step-next" type="button">&rarr;</button></div>'
                '<div id="residual-caption" class="muted"></div>'
                f'<img id="residual-img" class="plot" src={attr(residual_items[-1]["src"])} alt="residual spectrogram">'
            )
        else:
            body.append('<p class="note">Left out (residual_steps=0).</p>')
        body.append('<h2 id="vectors">Event vectors</h2>'
                    '<img class="plot" src="img/event-vectors.png" alt="event vectors as an image">')
        body.append('<h2 id="edits">Edits in codec space</h2>'
                    f'<p class="note">Made with numpy on the event list (seed {seed}) and decoded by the same '
                    "decoder.</p>")
        for m, gain_note in edit_rows:
            body.append(f"<h3>{esc(m.title)}</h3><p class=\"note\">{esc(m.description + gain_note)}</p>"
                        f'<audio id="edit-{m.key}" controls preload="metadata" src="audio/{m.key}.wav"></audio>')
        data = {
            "kind": "events",
            "duration_s": duration,
            "geometry": geom.__dict__,
            "n_events": n_events,
            "events": [{"i": i, "time_s": round(float(events.times_s[i]), 6), "src": srcs[i]} for i in range(n_events)],
            "residuals": residual_items,
            "lmd": quality,
        }
        (tmp / "index.html").write_text(
            page(title=f"{Path(wav_path).name} as events — calyx", body="\n".join(body), script=_EVENTS_JS, data=data),
            encoding="utf-8",
        )
        (tmp / "report.json").write_text(json.dumps({k: v for k, v in data.items() if k != "geometry"}, indent=1),
                                         encoding="utf-8")
    return out
