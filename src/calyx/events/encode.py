"""The event encoder: matching pursuit, joint refinement, pruning, quantisation.

1. :func:`calyx.events._pursuit.pursue` finds events one by one on the residual spectrogram
   (onset-aware pick, harmonic template match, closed-form / least-squares fit, render, subtract).
2. :func:`calyx.events._refine.refine` adjusts all events and the room jointly by Adam on the
   multi-resolution log-mel distance, through the differentiable torch decoder (skipped, and said
   so in ``EventList.info``, when torch is not installed).
3. :func:`calyx.events._refine.prune` removes the events that do not pay for their bits.
4. Values are snapped to the bitstream's grid; with a bitrate budget, the least useful events are
   dropped until the file fits.

:func:`encode_with_report` also measures LMD after each stage.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.errors import ParameterError
from calyx.events._pursuit import PursuitSettings, pursue
from calyx.events._refine import RefineSettings, prune, refine
from calyx.events.bitstream import quantise, to_bytes
from calyx.events.params import N_PARAMS, EventList, clip_params, clip_room, default_room
from calyx.events.render import blas_single_thread, render

__all__ = ["EncodeReport", "EncoderSettings", "as_mono", "encode", "encode_with_report"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class EncoderSettings:
    """Everything the encoder can be told; the defaults are the codec's reference settings.

    ``prune_lmd_s_per_kbit``: an event stays only if removing it would raise LMD by at least
    this much times (its size in kbit) / (the clip's duration in seconds), i.e. each kilobit must
    buy this many LMD-seconds. ``pre_prune``: before refinement, events below this fraction of
    that threshold are dropped already (0 disables).
    """

    pursuit: PursuitSettings = field(default_factory=PursuitSettings)
    refine: RefineSettings = field(default_factory=RefineSettings)
    use_refinement: bool = True
    prune_lmd_s_per_kbit: float = 0.03
    pre_prune: float = 0.5


@dataclass
class EncodeReport:
    """What each stage of one encoding did (LMD against the input, counts, seconds)."""

    duration_s: float
    n_events_pursuit: int = 0
    n_events_final: int = 0
    lmd_pursuit: float = float("nan")
    lmd_refined: float = float("nan")
    lmd_pruned: float = float("nan")
    lmd_final: float = float("nan")
    n_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    refined: bool = False
    refine_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def kbps(self) -> float:
        """Bitrate of the file: ``8 * n_bytes / duration / 1000``."""
        return 8.0 * self.n_bytes / max(self.duration_s, 1e-9) / 1000.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kbps"] = self.kbps
        d["refine_stats"] = {k: v for k, v in self.refine_stats.items() if k != "history"}
        return d


def as_mono(y: NDArray[np.floating]) -> FloatArray:
    """``(n_samples,)`` or ``(n_channels, n_samples)`` audio as a mono float64 signal (channel mean)."""
    a = np.asarray(y, dtype=np.float64)
    if a.ndim == 2:
        a = a.mean(axis=0)
    if a.ndim != 1:
        raise ParameterError(f"audio must have shape (n_samples,) or (n_channels, n_samples), got {np.shape(y)}")
    if a.size == 0:
        raise ParameterError("audio is empty (0 samples)")
    if not np.all(np.isfinite(a)):
        raise ParameterError("audio contains NaN or infinite samples")
    return a


def _prune_threshold(
    s: EncoderSettings, x: FloatArray, times: FloatArray, params: FloatArray, room: FloatArray, sr: int,
    overhead: int,
) -> float:
    """LMD rise below which an event does not pay for its bits (its share of the file, in kbit)."""
    events = EventList(times, params, room, sr, x.size)
    bytes_per_event = max(8.0, (len(to_bytes(events)) - overhead) / max(len(events), 1))
    return s.prune_lmd_s_per_kbit * (8.0 * bytes_per_event / 1000.0) / max(x.size / sr, 1e-9)


def _lmd(x: FloatArray, events: EventList) -> float:
    from calyx.metrics import lmd

    return lmd(x, render(events), sample_rate=events.sample_rate)


def encode_with_report(
    y: NDArray[np.floating],
    *,
    sample_rate: int,
    kbps: float | None = None,
    max_events: int | None = None,
    settings: EncoderSettings | None = None,
    measure: bool = True,
) -> tuple[EventList, EncodeReport]:
    """Encode ``y`` as events and report what each stage contributed.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
        The recording (channels are averaged).
    sample_rate : int
        Its sample rate in Hz.
    kbps : float, optional
        Bitrate budget of the ``.cxe`` file in kbit/s (headers included); events are dropped,
        least useful first, until the file fits.
    max_events : int, optional
        At most this many events.
    settings : EncoderSettings, optional
    measure : bool
        Compute LMD after each stage (a few decodes more).

    Returns
    -------
    events : EventList
        Already quantised: saving and loading it returns exactly these values.
    report : EncodeReport
    """
    s = settings or EncoderSettings()
    x = as_mono(y)
    sr = int(sample_rate)
    if sr <= 0:
        raise ParameterError(f"sample_rate must be a positive integer, got {sample_rate}")
    if kbps is not None and not kbps > 0:
        raise ParameterError(f"kbps must be positive, got {kbps}")
    if max_events is not None and int(max_events) < 0:
        raise ParameterError(f"max_events must be >= 0, got {max_events}")
    duration = x.size / sr
    report = EncodeReport(duration_s=duration)
    limit = s.pursuit.max_events if max_events is None else int(max_events)
    overhead = len(to_bytes(EventList(np.zeros(0), np.zeros((0, N_PARAMS)), default_room(), sr, x.size)))
    if kbps is not None:
        budget_bytes = kbps * 1000.0 / 8.0 * duration
        if budget_bytes < overhead:
            raise ParameterError(
                f"{kbps} kbit/s allows {budget_bytes:.0f} bytes for {duration:.2f} s, less than the "
                f"{overhead} bytes of an empty event file; ask for at least {8 * overhead / duration / 1000:.3f}"
            )
        # a first guess of the size of one event; the exact fit is made on the real bytes below
        limit = min(limit, max(0, int((budget_bytes - overhead) / 16.0)))
    info: dict[str, Any] = {}
    with blas_single_thread():
        t0 = time.perf_counter()
        times, params, _ = pursue(x, sample_rate=sr, settings=s.pursuit, max_events=limit)
        room = default_room()
        report.seconds["pursuit"] = time.perf_counter() - t0
        report.n_events_pursuit = int(times.size)
        if measure:
            report.lmd_pursuit = _lmd(x, EventList(times, params, room, sr, x.size))
        t0 = time.perf_counter()
        threshold = _prune_threshold(s, x, times, params, room, sr, overhead)
        if s.pre_prune > 0.0 and times.size:
            # events the pursuit found that are already not worth their bits are not refined
            keep, _ = prune(x, times, params, room, sample_rate=sr, threshold=s.pre_prune * threshold)
            times, params = times[keep], params[keep]
        report.seconds["pre_prune"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if s.use_refinement and times.size:
            try:
                import torch  # noqa: F401 - only to learn whether refinement is possible
            except ImportError:
                info["refined"] = "no (torch is not installed; pip install 'calyx[events]')"
            else:
                times, params, room, stats = refine(x, times, params, room, sample_rate=sr, settings=s.refine)
                report.refined = True
                report.refine_stats = stats
                info["refined"] = "yes"
        params = clip_params(params)
        room = clip_room(room)
        times = np.clip(times, 0.0, duration)
        report.seconds["refine"] = time.perf_counter() - t0
        if measure and report.refined:
            report.lmd_refined = _lmd(x, EventList(times, params, room, sr, x.size))
        t0 = time.perf_counter()
        events = EventList(times, params, room, sr, x.size)
        threshold = _prune_threshold(s, x, times, params, room, sr, overhead)
        keep, _ = prune(x, times, params, room, sample_rate=sr, threshold=threshold,
                        max_events=None if max_events is None else int(max_events))
        events = quantise(events.subset(keep))
        if kbps is not None:
            budget = kbps * 1000.0 / 8.0 * duration
            while len(events) and len(to_bytes(events)) > budget:
                n_fit = int(len(events) * budget / len(to_bytes(events)))
                n_fit = min(n_fit, len(events) - 1)
                keep, _ = prune(x, events.times_s, events.params, events.room, sample_rate=sr,
                                threshold=threshold, max_events=n_fit)
                events = quantise(events.subset(keep))
        report.seconds["prune"] = time.perf_counter() - t0
        if measure:
            report.lmd_pruned = _lmd(x, events)
            report.lmd_final = report.lmd_pruned
    report.n_events_final = len(events)
    report.n_bytes = len(to_bytes(events))
    events.info = dict(info, **{"n_bytes": report.n_bytes})
    return events, report


def encode(
    y: NDArray[np.floating],
    *,
    sample_rate: int,
    kbps: float | None = None,
    max_events: int | None = None,
    settings: EncoderSettings | None = None,
) -> EventList:
    """Encode a recording as a sparse list of events (see :func:`encode_with_report`)."""
    events, _ = encode_with_report(y, sample_rate=sample_rate, kbps=kbps, max_events=max_events,
                                   settings=settings, measure=False)
    return events
