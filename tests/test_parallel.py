from __future__ import annotations

import math

import pytest

from calyx.errors import ParameterError
from calyx.parallel import parallel_map


def _square_root(x: float) -> float:
    return math.sqrt(x)


def test_local_pool_keeps_order() -> None:
    items = [float(i * i) for i in range(20)]
    assert parallel_map(_square_root, items, workers=2) == [float(i) for i in range(20)]
    assert parallel_map(_square_root, items, workers=1) == [float(i) for i in range(20)]


def test_errors_propagate() -> None:
    with pytest.raises(ValueError):
        parallel_map(_square_root, [1.0, -1.0], workers=2)


def test_bad_arguments() -> None:
    with pytest.raises(ParameterError):
        parallel_map(_square_root, [1.0], workers=0)
    with pytest.raises(ParameterError, match="tcp://"):
        parallel_map(_square_root, [1.0], scheduler="http://nowhere")


def test_dask_local_cluster_gives_same_results() -> None:
    pytest.importorskip("dask.distributed")
    items = [float(i) for i in range(12)]
    assert parallel_map(_square_root, items, scheduler="local", workers=2) == parallel_map(
        _square_root, items, workers=1
    )
