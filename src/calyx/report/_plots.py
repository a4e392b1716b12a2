"""Figures of the reports, drawn with matplotlib's object API on the Agg canvas (no pyplot state).

Every function writes one PNG and returns nothing; sizes are small (about 100 dpi) so that a
report of a large instrument stays a few megabytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from calyx.core.spectrum import hz_to_mel, mel_filterbank, stft
from calyx.errors import ParameterError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DISPLAY_N_MELS",
    "LinePanel",
    "display_stft",
    "factor_lines_png",
    "factor_maps_png",
    "lines_png",
    "matrix_png",
    "mel_power",
    "power_to_mel",
    "spectrogram_png",
]

FloatArray = NDArray[np.float64]
#: One panel of :func:`factor_lines_png`: title, x label, x values, matrix (len(x), rank), tick labels.
LinePanel = tuple[str, str, NDArray[Any], NDArray[Any], Sequence[str] | None]

#: Bands of the displayed mel spectrograms.
DISPLAY_N_MELS = 128
_DPI = 100


def _figure(width_in: float, height_in: float, *, layout: Literal["constrained"] | None = "constrained") -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is in the report extra
        raise ParameterError("reports need matplotlib; install it with pip install 'calyx[report]'") from exc
    return Figure(figsize=(width_in, height_in), dpi=_DPI, layout=layout)


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), format="png", dpi=_DPI)


def display_stft(sample_rate: float) -> tuple[int, int]:
    """``(n_fft, hop_length)`` of the displayed spectrograms: about 46 ms windows, 11.6 ms hops."""
    n_fft = int(2 ** round(np.log2(max(0.046 * sample_rate, 64.0))))
    return n_fft, n_fft // 4


def power_to_mel(power: NDArray[np.floating], *, sample_rate: float, n_fft: int) -> FloatArray:
    """Mel power ``(DISPLAY_N_MELS, n_frames)`` of a power spectrogram ``(1 + n_fft // 2, n_frames)``."""
    fb = mel_filterbank(sample_rate=float(sample_rate), n_fft=int(n_fft), n_mels=DISPLAY_N_MELS)
    return np.asarray(fb @ np.asarray(power, dtype=np.float64))


def mel_power(y: NDArray[np.floating], *, sample_rate: float) -> FloatArray:
    """Mel power spectrogram of ``y`` (channels are summed as powers), shape ``(DISPLAY_N_MELS, n_frames)``."""
    a = np.asarray(y, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    n_fft, hop = display_stft(sample_rate)
    power = np.sum(np.abs(stft(a, n_fft=n_fft, hop_length=hop)) ** 2, axis=0) / a.shape[0]
    return power_to_mel(power, sample_rate=sample_rate, n_fft=n_fft)


def _mel_axis(ax: Axes, sample_rate: float) -> None:
    top = float(hz_to_mel(sample_rate / 2.0))
    ticks_hz = [f for f in (0, 250, 500, 1000, 2000, 4000, 8000, 16000) if f < sample_rate / 2.0]
    # band j's centre lies at mel (j + 1) * top / (n_mels + 1)
    pos = [max(-0.5, float(hz_to_mel(f)) / top * (DISPLAY_N_MELS + 1) - 1.0) for f in ticks_hz]
    ax.set_yticks(pos)
    ax.set_yticklabels([f"{f / 1000:g}k" if f >= 1000 else f"{f}" for f in ticks_hz])
    ax.set_ylabel("Hz (mel scale)")


def spectrogram_png(
    path: Path,
    panels: Sequence[tuple[str, NDArray[np.floating]]],
    *,
    sample_rate: float,
    hop_length: int,
    top_db: float = 80.0,
    ref_power: float | None = None,
    width_in: float = 11.0,
    panel_height_in: float = 2.1,
) -> None:
    """Mel spectrograms (``(DISPLAY_N_MELS, n_frames)`` powers) stacked with one colour scale.

    The scale spans ``top_db`` below ``ref_power`` (default: the loudest bin of all panels), so
    panels compare directly.
    """
    if not panels:
        raise ParameterError("spectrogram_png needs at least one panel")
    peak = ref_power if ref_power is not None else max(float(np.max(p)) if p.size else 0.0 for _, p in panels)
    peak = max(peak, 1e-20)
    # fixed margins (in inches) instead of a layout engine: these figures are drawn by the dozen
    left, right, top, bottom, gap = 0.75, 1.05, 0.28, 0.45, 0.3
    height_in = bottom + top + len(panels) * panel_height_in + (len(panels) - 1) * gap
    fig = _figure(width_in, height_in, layout=None)
    image = None
    axes: list[Axes] = []
    for k, (title, p) in enumerate(panels):
        y_top = height_in - top - k * (panel_height_in + gap)
        rect = (left / width_in, (y_top - panel_height_in) / height_in, 1.0 - (left + right) / width_in,
                panel_height_in / height_in)
        ax = fig.add_axes(rect, sharex=axes[0] if axes else None)
        axes.append(ax)
        db = 10.0 * np.log10(np.maximum(np.asarray(p, dtype=np.float64), peak * 10.0 ** (-top_db / 10.0)) / peak)
        n_frames = max(db.shape[1], 1)
        extent = (0.0, n_frames * hop_length / sample_rate, -0.5, DISPLAY_N_MELS - 0.5)
        image = ax.imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=-top_db, vmax=0.0,
                          interpolation="nearest")
        ax.set_title(title, fontsize=9, loc="left", pad=3)
        ax.tick_params(labelsize=8)
        _mel_axis(ax, sample_rate)
        if k < len(panels) - 1:
            ax.tick_params(labelbottom=False)
    axes[-1].set_xlabel("time (s)", fontsize=9)
    if image is not None:
        cax = fig.add_axes((1.0 - (right - 0.15) / width_in, bottom / height_in, 0.12 / width_in,
                            (height_in - top - bottom) / height_in))
        fig.colorbar(image, cax=cax, label="dB")
        cax.tick_params(labelsize=8)
    _save(fig, path)


def lines_png(
    path: Path,
    curves: Sequence[tuple[str, NDArray[np.floating], NDArray[np.floating]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    width_in: float = 7.0,
    height_in: float = 3.0,
) -> None:
    """Curves ``(label, x, y)`` in one panel, with markers at the points."""
    fig = _figure(width_in, height_in)
    ax = fig.subplots()
    for label, x, y in curves:
        ax.plot(np.asarray(x), np.asarray(y), marker="o", ms=4, lw=1.2, label=label)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if 1 < len(curves) <= 12:
        ax.legend(fontsize=8)
    _save(fig, path)


def factor_lines_png(
    path: Path,
    panels: Sequence[LinePanel],
    *,
    max_columns: int = 6,
    width_in: float = 10.0,
    panel_height_in: float = 2.4,
    x_split: float | None = None,
) -> None:
    """Factor matrices as curves, one panel per matrix.

    Each panel is ``(title, xlabel, x, matrix (len(x), rank), xticklabels or None)``; the first
    ``max_columns`` columns are drawn, one curve each. ``x_split`` draws a dashed vertical line
    at that x in every panel (e.g. between partials and noise bands).
    """
    if not panels:
        raise ParameterError("factor_lines_png needs at least one panel")
    n_cols = 2 if len(panels) > 1 else 1
    n_rows = (len(panels) + n_cols - 1) // n_cols
    fig = _figure(width_in, panel_height_in * n_rows + 0.3)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (title, xlabel, x, m, ticklabels) in zip(axes, panels, strict=False):
        mat = np.asarray(m, dtype=np.float64)
        if mat.ndim == 1:
            mat = mat[:, None]
        xs = np.asarray(x, dtype=np.float64)
        for r in range(min(mat.shape[1], max_columns)):
            ax.plot(xs, mat[:, r], marker="o" if xs.size <= 40 else None, ms=3, lw=1.2, label=f"{r + 1}")
        if ticklabels is not None and len(ticklabels) == xs.size and xs.size <= 24:
            ax.set_xticks(xs)
            ax.set_xticklabels(list(ticklabels), fontsize=7, rotation=45 if xs.size > 8 else 0)
        if x_split is not None:
            ax.axvline(x_split, color="k", lw=0.8, ls="--")
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(alpha=0.3)
        if 1 < min(mat.shape[1], max_columns):
            ax.legend(fontsize=7, ncols=3, title="component", title_fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    _save(fig, path)


def factor_maps_png(
    path: Path,
    maps: Sequence[tuple[str, NDArray[np.floating]]],
    *,
    xlabel: str,
    ylabel: str,
    x_split: int | None = None,
    y_extent: tuple[float, float] | None = None,
    width_in: float = 10.0,
    panel_height_in: float = 2.2,
    symmetric: bool = True,
) -> None:
    """Two-dimensional factors (e.g. a component over time × feature) as images, one panel each.

    ``x_split`` draws a vertical line before that column (e.g. between partials and noise bands).
    """
    from matplotlib.ticker import MaxNLocator

    if not maps:
        raise ParameterError("factor_maps_png needs at least one map")
    n_cols = 2 if len(maps) > 1 else 1
    n_rows = (len(maps) + n_cols - 1) // n_cols
    fig = _figure(width_in, panel_height_in * n_rows + 0.3)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (title, m) in zip(axes, maps, strict=False):
        mat = np.asarray(m, dtype=np.float64)
        lim = float(np.max(np.abs(mat))) if mat.size else 1.0
        lim = lim if lim > 0 else 1.0
        kw = {"vmin": -lim, "vmax": lim, "cmap": "RdBu_r"} if symmetric else {"cmap": "viridis"}
        extent = None
        if y_extent is not None:
            extent = (-0.5, mat.shape[1] - 0.5, y_extent[0], y_extent[1])
        im = ax.imshow(mat, origin="lower", aspect="auto", interpolation="nearest", extent=extent, **kw)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if y_extent is None:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if x_split is not None and 0 < x_split < mat.shape[1]:
            ax.axvline(x_split - 0.5, color="k", lw=0.8, ls="--")
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.85, pad=0.01)
    for ax in axes[len(maps):]:
        ax.set_visible(False)
    _save(fig, path)


def matrix_png(
    path: Path,
    matrix: NDArray[np.floating],
    *,
    title: str,
    xlabels: Sequence[str],
    ylabel: str,
    y_values: NDArray[np.floating] | None = None,
    colorbar_label: str = "",
    width_in: float = 10.0,
    height_in: float = 4.0,
) -> None:
    """A matrix (rows × labelled columns) as an image with values in 0..1."""
    mat = np.asarray(matrix, dtype=np.float64)
    fig = _figure(width_in, height_in)
    ax = fig.subplots()
    extent = None
    if y_values is not None and mat.shape[0] > 0:
        yv = np.asarray(y_values, dtype=np.float64)
        extent = (-0.5, mat.shape[1] - 0.5, float(yv.min()), float(yv.max()) + 1e-9)
    if mat.shape[0] == 0:
        mat = np.full((1, len(xlabels)), np.nan)
    im = ax.imshow(mat, origin="lower", aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0,
                   extent=extent)
    ax.set_xticks(np.arange(len(xlabels)))
    ax.set_xticklabels(list(xlabels), rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10, loc="left")
    fig.colorbar(im, ax=ax, label=colorbar_label, shrink=0.9, pad=0.01)
    _save(fig, path)
