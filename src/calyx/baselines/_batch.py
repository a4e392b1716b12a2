"""A baseline codec applied to every note of a library, each note a separate file (as in SF3)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calyx.baselines._codecs import CODECS, run_codec
from calyx.errors import ParameterError
from calyx.metrics import lmd, lsd_db

__all__ = ["BatchResult", "ItemResult", "evaluate_codec_on_items"]


@dataclass(frozen=True)
class ItemResult:
    """One item's round trip: its size, duration, quality and timings."""

    n_channels: int
    n_samples: int
    duration_s: float
    n_bytes: int
    lmd: float
    lsd_db: float
    encode_s: float
    decode_s: float
    lag_samples: int
    measured_lag_samples: int
    lag_correlation: float

    @property
    def alignment_verified(self) -> bool:
        """Whether the codec output's alignment was verified (see :class:`calyx.baselines.CodecResult`)."""
        return self.lag_samples == self.measured_lag_samples

    @property
    def pcm16_bytes(self) -> int:
        """Size of the item as 16-bit PCM, all channels: ``n_channels * n_samples * 2``."""
        return self.n_channels * self.n_samples * 2


@dataclass(frozen=True)
class BatchResult:
    """A codec's figures over a set of items, following the evaluation guide's library figures.

    Attributes
    ----------
    name : str
        Codec name.
    items : tuple of ItemResult
        Per-item results, in input order.
    duration_s : float
        Total audio duration in seconds.
    n_bytes : int
        Total compressed size in bytes (every item a separate file, headers included).
    pcm16_bytes : int
        Total size as 16-bit PCM, all channels.
    size_ratio : float
        ``pcm16_bytes / n_bytes``.
    kbps : float
        ``8 * n_bytes / duration_s / 1000``.
    lmd, lsd_db : float
        Duration-weighted means of the per-item LMD and LSD (dB).
    encode_x_realtime, decode_x_realtime : float
        Seconds of audio per second of encoder (decoder) process wall time, one process at a time:
        ``duration_s`` over the sum of per-item process times, process start-up included.
    """

    name: str
    items: tuple[ItemResult, ...]
    duration_s: float
    n_bytes: int
    pcm16_bytes: int
    size_ratio: float
    kbps: float
    lmd: float
    lsd_db: float
    encode_x_realtime: float
    decode_x_realtime: float

    @property
    def n_unverified(self) -> int:
        """Items whose alignment could not be verified (worth a footnote in a benchmark table)."""
        return sum(not item.alignment_verified for item in self.items)


def _evaluate_one(
    name: str, y: NDArray[np.float64], sample_rate: int, workdir: str | os.PathLike[str] | None
) -> ItemResult:
    result = run_codec(name, y, sample_rate=sample_rate, workdir=workdir)
    a = y if y.ndim == 2 else y[None, :]
    return ItemResult(
        n_channels=int(a.shape[0]),
        n_samples=int(a.shape[1]),
        duration_s=a.shape[1] / float(sample_rate),
        n_bytes=result.n_bytes,
        lmd=lmd(y, result.decoded, sample_rate=sample_rate),
        lsd_db=lsd_db(y, result.decoded, sample_rate=sample_rate),
        encode_s=result.encode_s,
        decode_s=result.decode_s,
        lag_samples=result.lag_samples,
        measured_lag_samples=result.measured_lag_samples,
        lag_correlation=result.lag_correlation,
    )


def evaluate_codec_on_items(
    name: str,
    items: Iterable[NDArray[np.floating]],
    *,
    sample_rate: int,
    max_workers: int = 2,
    workdir: str | os.PathLike[str] | None = None,
) -> BatchResult:
    """Run codec ``name`` on every item separately and summarise size, quality and speed.

    Parameters
    ----------
    name : str
        A key of :data:`calyx.baselines.CODECS`.
    items : iterable of np.ndarray [shape=(n_channels, n_samples) or (n_samples,)]
        The notes (or clips), all at ``sample_rate``; consumed lazily, a few at a time.
    sample_rate : int
        Sample rate of every item in Hz.
    max_workers : int
        Items encoded concurrently (each item runs its encoder and decoder processes in turn).
        The results do not depend on it.
    workdir : path, optional
        Where the temporary files go (see :func:`calyx.baselines.run_codec`).

    Returns
    -------
    BatchResult
        Totals and duration-weighted means over the items, with the per-item results in input order.
    """
    if name not in CODECS:
        raise ParameterError(f"unknown codec {name!r}; choose one of {', '.join(CODECS)}")
    if max_workers < 1:
        raise ParameterError(f"max_workers must be >= 1, got {max_workers}")

    results: list[ItemResult] = []
    pending: deque[Future[ItemResult]] = deque()
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        for item in items:
            y = np.asarray(item, dtype=np.float64)
            pending.append(pool.submit(_evaluate_one, name, y, sample_rate, workdir))
            if len(pending) >= 2 * max_workers:
                results.append(pending.popleft().result())
        while pending:
            results.append(pending.popleft().result())
    if not results:
        raise ParameterError("items is empty; pass at least one array")

    duration_s = sum(r.duration_s for r in results)
    n_bytes = sum(r.n_bytes for r in results)
    pcm16_bytes = sum(r.pcm16_bytes for r in results)
    weights = np.array([r.duration_s for r in results])
    encode_s = sum(r.encode_s for r in results)
    decode_s = sum(r.decode_s for r in results)
    return BatchResult(
        name=name,
        items=tuple(results),
        duration_s=duration_s,
        n_bytes=n_bytes,
        pcm16_bytes=pcm16_bytes,
        size_ratio=pcm16_bytes / n_bytes,
        kbps=8.0 * n_bytes / duration_s / 1000.0,
        lmd=float(np.average([r.lmd for r in results], weights=weights)),
        lsd_db=float(np.average([r.lsd_db for r in results], weights=weights)),
        encode_x_realtime=duration_s / encode_s if encode_s > 0 else float("inf"),
        decode_x_realtime=duration_s / decode_s if decode_s > 0 else float("inf"),
    )
