"""Map a function over many items (notes of a library) on local processes or a Dask cluster.

The per-note analysis is a *map*; the decomposition that follows is the *reduce*. The same code
runs in three places:

- ``workers=1``: in this process (debugging, tiny libraries);
- default: a local process pool with one worker per core;
- ``scheduler="tcp://HOST:PORT"``: a Dask distributed cluster (``scheduler="local"`` starts a
  :class:`dask.distributed.LocalCluster` on this machine, which is how the Dask path is tested).

Results come back in input order. Only picklable callables and items travel to workers: pass a
module-level function and plain data (a note's *loader*, not its samples, so memory stays bounded).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

from calyx.errors import ParameterError

__all__ = ["default_workers", "parallel_map"]

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="note", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    desc: str = "analysing",
) -> list[R]:
    """Apply ``fn`` to every item and return the results in input order.

    Parameters
    ----------
    fn : callable
        A picklable (module-level) function of one argument.
    items : iterable
        Picklable items.
    workers : int, optional
        Local processes; ``None`` uses every core, ``1`` runs in this process. Ignored with a scheduler.
    scheduler : str, optional
        ``"tcp://HOST:PORT"`` of a running Dask scheduler, or ``"local"`` for a fresh LocalCluster.
    progress : bool
        Show a progress bar (items done / total, with ETA) on stderr.
    """
    seq: Sequence[T] = list(items)
    if workers is not None and workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    if scheduler is not None:
        return _dask_map(fn, seq, scheduler=scheduler, progress=progress, desc=desc, workers=workers)
    n_workers = min(workers or default_workers(), max(1, len(seq)))
    results: list[Any] = [None] * len(seq)
    with _progress(len(seq), desc, progress) as bar:
        if n_workers == 1:
            for i, item in enumerate(seq):
                results[i] = fn(item)
                bar.update(1)
            return results
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(seq)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update(1)
    return results


def _dask_map(
    fn: Callable[[T], R], seq: Sequence[T], *, scheduler: str, progress: bool, desc: str, workers: int | None
) -> list[R]:
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_as_completed
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ParameterError(
            f"scheduler={scheduler!r} needs dask.distributed; install the 'dask' extra (pip install 'calyx[dask]')"
        ) from exc
    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(
            n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
            dashboard_address=None, host="127.0.0.1",
        )
        address: Any = cluster
    elif scheduler.startswith(("tcp://", "tls://", "inproc://")):
        address = scheduler
    else:
        raise ParameterError(f"scheduler must be 'tcp://HOST:PORT' or 'local', got {scheduler!r}")
    try:
        with Client(address, timeout="30s") as client:
            futures = client.map(fn, seq, pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            results: list[Any] = [None] * len(seq)
            with _progress(len(seq), desc, progress) as bar:
                for fut in dask_as_completed(futures):
                    results[index[fut.key]] = fut.result()
                    bar.update(1)
            return results
    finally:
        if cluster is not None:
            cluster.close()
