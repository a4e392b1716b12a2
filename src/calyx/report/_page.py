"""Building blocks of the report pages: staged output folders, WAV clips, HTML and the page frame.

A report is a folder: ``index.html`` plus the PNG, SVG and WAV files it refers to by relative
paths, so it works opened from disk (``file://``) as well as through :mod:`calyx.report._server`.
Nothing is fetched from anywhere else: the style sheet and the scripts are inline.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.errors import ParameterError

__all__ = [
    "attr",
    "esc",
    "fade_out",
    "format_bytes",
    "markdown_tables_html",
    "page",
    "staged_dir",
    "write_wav",
]


@contextlib.contextmanager
def staged_dir(out_dir: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out_dir``; move it to ``out_dir`` when the block succeeds.

    An existing ``out_dir`` is refused (``FileExistsError``) unless ``force`` is true, in which
    case it is replaced only once the new report is complete. On any error the temporary folder
    is removed and ``out_dir`` is left as it was.
    """
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise ParameterError(f"{target} is a file, not a report folder; choose another output folder")
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass force=True (--force on the command line) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        if target.exists():
            old = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fade_out(y: NDArray[np.floating], *, n_fade: int) -> NDArray[np.float64]:
    """``y`` (``(..., n_samples)``) with a raised-cosine fade over its last ``n_fade`` samples."""
    a = np.array(y, dtype=np.float64, copy=True)
    n = min(int(n_fade), a.shape[-1])
    if n > 0:
        a[..., -n:] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(1, n + 1) / n)
    return a


def write_wav(path: Path, y: NDArray[np.floating], *, sample_rate: int) -> float:
    """Write ``y`` (``(n_samples,)`` or ``(n_channels, n_samples)``) as 16-bit PCM WAV; returns its peak.

    Samples beyond full scale are clipped (the returned peak tells whether that happened).
    Chromium decodes 16-bit PCM WAV everywhere, which is why the reports use it.
    """
    import soundfile as sf

    a = np.asarray(y, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[-1] == 0:
        raise ParameterError(f"{path.name}: audio must have shape (n_channels, n_samples > 0), got {a.shape}")
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.max(np.abs(a)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(a, -1.0, 1.0).T, int(sample_rate), format="WAV", subtype="PCM_16")
    return peak


def esc(value: object) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def attr(value: object) -> str:
    """A double-quoted HTML attribute value."""
    return f'"{html.escape(str(value), quote=True)}"'


def format_bytes(n_bytes: float) -> str:
    """``1536 -> '1.5 KiB'``."""
    value = float(n_bytes)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(value) < 1024.0 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024.0
    return f"{value:.1f} GiB"  # pragma: no cover - the loop always returns


def markdown_tables_html(text: str, *, max_tables: int = 8) -> str:
    """The headings, paragraphs and pipe tables of a Markdown text as HTML (everything escaped).

    Enough for the benchmark summaries in ``bench/results/*.md``; other Markdown is shown as text.
    """
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    n_tables = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{esc(' '.join(para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i].strip())
                i += 1
            rows = [[c.strip() for c in r.strip("|").split("|")] for r in block]
            rows = [r for r in rows if not all(set(c) <= set("-: ") for c in r)]
            if rows and n_tables < max_tables:
                head = "".join(f"<th>{esc(c)}</th>" for c in rows[0])
                body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
                out.append(f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
                n_tables += 1
            continue
        if line.startswith("#"):
            flush()
            level = min(6, len(line) - len(line.lstrip("#")) + 2)
            out.append(f"<h{level}>{esc(line.lstrip('#').strip())}</h{level}>")
        elif not line:
            flush()
        else:
            para.append(line)
        i += 1
    flush()
    return "\n".join(out)


_CSS = """
:root { --fg: #1d232b; --muted: #5b6673; --line: #d5dbe2; --accent: #1f6feb; --bg: #ffffff; --panel: #f5f7fa; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; max-width: 1180px; padding: 16px 24px 64px; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.25em; margin: 1.6em 0 0.5em; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 1.1em 0 0.4em; }
p.lead, .muted { color: var(--muted); }
.note { color: var(--muted); font-size: 0.92em; }
nav.toc a { margin-right: 14px; }
table.data { border-collapse: collapse; margin: 6px 0 12px; font-size: 0.92em; }
table.data th, table.data td { border: 1px solid var(--line); padding: 3px 8px; text-align: right; }
table.data th:first-child, table.data td:first-child, table.data .text { text-align: left; }
table.data thead th { background: var(--panel); }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 8px 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
.player { position: sticky; top: 0; z-index: 5; background: var(--panel); border: 1px solid var(--line);
          border-radius: 6px; padding: 8px 12px; display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
.player audio { height: 36px; min-width: 320px; }
.player .now { font-variant-numeric: tabular-nums; }
.players { display: flex; gap: 24px; flex-wrap: wrap; }
.players figure { margin: 0; }
.players figcaption { font-size: 0.9em; color: var(--muted); }
table.grid { border-collapse: collapse; margin: 8px 0 16px; }
table.grid th { font-weight: 600; padding: 4px 8px; color: var(--muted); }
table.grid td { padding: 2px; }
button { font: inherit; cursor: pointer; }
.cell { display: flex; flex-direction: column; gap: 2px; min-width: 84px; }
.cell button { border: 1px solid var(--line); border-radius: 4px; background: #fff; padding: 3px 6px;
               font-size: 0.88em; text-align: left; }
.cell button.decoded { background: var(--cellbg, #eef4ff); }
.cell button:hover, .cell button.playing { outline: 2px solid var(--accent); }
.cell .lmd { font-size: 0.78em; color: var(--muted); }
img.plot { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
.slider { display: grid; grid-template-columns: 6em 1fr 22em; align-items: center; gap: 10px; margin: 8px 0; }
.slider input[type=range] { width: 100%; }
.stepper { display: flex; align-items: center; gap: 10px; margin: 6px 0; }
.stepper input[type=range] { flex: 1; }
svg.scatter { border: 1px solid var(--line); border-radius: 4px; background: #fff; max-width: 100%; height: auto; }
svg.scatter circle.ev { cursor: pointer; stroke: #222; stroke-width: 0.6; }
svg.scatter circle.ev:hover, svg.scatter circle.ev.playing { stroke: var(--accent); stroke-width: 2.5; }
svg.scatter .axis { stroke: #888; stroke-width: 1; }
svg.scatter text { font: 11px system-ui, sans-serif; fill: #555; }
footer { margin-top: 40px; color: var(--muted); font-size: 0.85em; }
"""

_JS_COMMON = """
"use strict";
function calyxPlay(player, src, label) {
  if (!player.getAttribute("src") || player.getAttribute("src") !== src) { player.src = src; }
  else { player.currentTime = 0; }
  var now = document.getElementById(player.id + "-now");
  if (now && label) { now.textContent = label; }
  var p = player.play();
  if (p && p.catch) { p.catch(function (e) { if (e && e.name !== "AbortError") { console.warn(e.message); } }); }
}
function calyxMark(el, cls) {
  document.querySelectorAll("." + cls).forEach(function (x) { x.classList.remove(cls); });
  if (el) { el.classList.add(cls); }
}
"""


def page(*, title: str, body: str, script: str = "", data: dict[str, Any] | None = None) -> str:
    """A complete, self-contained HTML page.

    ``data`` is embedded as JSON in ``<script id="calyx-data" type="application/json">`` for the
    page's own script (and for tests that want to read it).
    """
    blob = ""
    if data is not None:
        text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        blob = f'<script id="calyx-data" type="application/json">{text}</script>\n'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"{body}\n"
        '<footer>Made by <code>calyx report</code>. Everything this page uses lies in its folder; '
        "it works offline, opened as a file.</footer>\n"
        f"{blob}<script>{_JS_COMMON}\n{script}</script>\n</body>\n</html>\n"
    )
