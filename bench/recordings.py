"""Recordings benchmark: 10 s excerpts of the development chorales (piano and string quartet, mono
44.1 kHz) and the speech utterance, each codec on each clip, all in the same run.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench._common import environment_note, md_table
from calyx.baselines import available_codecs, missing_tools_message, run_codec
from calyx.core.audio import read_audio
from calyx.metrics import lmd, lsd_db

EXCERPT_S = 10.0
BASELINES = ("opus6", "opus12", "opus24", "vorbis-q-1", "mp3-32", "flac")


@dataclass(frozen=True)
class Clip:
    name: str
    audio: np.ndarray  # (n_channels, n_samples)
    sample_rate: int
    notes_csv: str | None = None  # ground truth, when the clip has one
    speech: bool = False  # also measure PESQ and STOI

    @property
    def duration_s(self) -> float:
        return self.audio.shape[-1] / self.sample_rate


@dataclass
class ClipResult:
    codec: str
    clip: str
    kbps: float
    lmd: float
    lsd_db: float
    enc_x: float
    dec_x: float
    extra: dict[str, float]


def excerpt(path: str, seconds: float = EXCERPT_S) -> tuple[np.ndarray, int]:
    y, sr = read_audio(path)
    y = y.mean(axis=0, keepdims=True)
    return y[:, : int(seconds * sr)], sr


def baseline_results(clip: Clip) -> list[ClipResult]:
    out = []
    have = available_codecs()
    for codec in BASELINES:
        if not have.get(codec, False):
            continue
        r = run_codec(codec, clip.audio, sample_rate=clip.sample_rate)
        out.append(ClipResult(
            codec, clip.name, 8 * r.n_bytes / clip.duration_s / 1000,
            lmd(clip.audio, r.decoded, sample_rate=clip.sample_rate),
            lsd_db(clip.audio, r.decoded, sample_rate=clip.sample_rate),
            clip.duration_s / max(r.encode_s, 1e-9), clip.duration_s / max(r.decode_s, 1e-9),
            speech_extras(clip, r.decoded),
        ))
    return out


def speech_extras(clip: Clip, decoded: np.ndarray) -> dict[str, float]:
    """PESQ (wide band) and STOI for speech clips; nothing for music."""
    if not clip.speech:
        return {}
    from calyx.metrics import pesq_wb, stoi

    return {
        "pesq_wb": pesq_wb(clip.audio, decoded, sample_rate=clip.sample_rate),
        "stoi": stoi(clip.audio, decoded, sample_rate=clip.sample_rate),
    }


#: Calyx rows: functions (clip) -> list[ClipResult], added by the codec stages.
CALYX_RESULTS: list[Callable[[Clip], list[ClipResult]]] = []


def _event_rows(clip: Clip) -> list[ClipResult]:
    try:
        from bench.calyx_events import event_results
    except ImportError:
        return []
    return event_results(clip)


CALYX_RESULTS.append(_event_rows)


def summarise(results: list[ClipResult], extra_keys: tuple[str, ...]) -> list[tuple[object, ...]]:
    """Per codec: median over clips of each figure (and the per-clip values in the detail table)."""
    rows = []
    for codec in dict.fromkeys(r.codec for r in results):
        rs = [r for r in results if r.codec == codec]
        row: list[object] = [codec, len(rs)]
        row += [float(np.median([getattr(r, k) for r in rs])) for k in ("kbps", "lmd", "lsd_db", "enc_x", "dec_x")]
        for k in extra_keys:
            vals = [r.extra[k] for r in rs if k in r.extra]
            row.append(float(np.median(vals)) if vals else float("nan"))
        rows.append(tuple(row))
    return rows


def run(sets: dict[str, list[Clip]]) -> str:
    parts = [
        "# Recordings benchmark",
        "",
        f"Each codec on each clip ({EXCERPT_S:.0f} s excerpts, mono), medians over the clips of a set. "
        "kbps = 8 × bytes of everything the decoder needs / duration; LMD/LSD lower is better; speed is "
        "seconds of audio per second of wall time. All rows measured in the same run.",
        "",
        environment_note(),
    ]
    missing = missing_tools_message()
    if missing:
        parts += ["", f"**Missing codec tools:** {missing}"]
    extra_keys = ("onset_f1", "note_f1", "events_per_note", "pesq_wb", "stoi", "lmd_pursuit")
    for set_name, clips in sets.items():
        results: list[ClipResult] = []
        failures: list[str] = []
        for clip in clips:
            print(f"[recordings] {set_name}: {clip.name}", flush=True)
            results += baseline_results(clip)
            for fn in CALYX_RESULTS:
                try:
                    results += fn(clip)
                except Exception:
                    failures.append(f"`{fn.__name__}` on {clip.name} failed:\n\n```\n{traceback.format_exc(limit=3)}\n```")
        keys = tuple(k for k in extra_keys if any(k in r.extra for r in results))
        headers = ("codec", "clips", "kbps", "LMD", "LSD dB", "enc ×RT", "dec ×RT", *keys)
        parts += ["", f"## {set_name}", "", f"Clips: {', '.join(c.name for c in clips)}.", ""]
        parts.append(md_table(headers, summarise(results, keys)))
        if failures:
            parts += [""] + [f"- {t}" for t in failures]
    return "\n".join(parts) + "\n"


__all__ = ["CALYX_RESULTS", "Clip", "ClipResult", "excerpt", "run", "speech_extras"]
