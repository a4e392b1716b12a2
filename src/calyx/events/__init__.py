"""The sparse event codec: a recording as a short list of events rendered by a fixed decoder.

Each event is a time plus a small vector of physical parameters (pitch, inharmonicity, level,
spectral shape, decay times, damper, attack, noise burst; see :mod:`calyx.events.params`); the
recording adds one room shared by all events. The decoder (:mod:`calyx.events.render`, with a
differentiable torch twin in :mod:`calyx.events.torch_render`) renders each event as an excitation
convolved with a resonance of decaying partials, places it at its time with sub-sample precision
and applies the room once. The encoder (:mod:`calyx.events.encode`) finds events by matching
pursuit, refines them jointly by gradient descent and prunes those that do not pay for their bits;
:mod:`calyx.events.bitstream` quantises them into a ``.cxe`` file.

torch is needed only to refine while encoding; decoding, saving and loading are numpy only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from calyx.core.audio import atomic_output
from calyx.errors import FormatError
from calyx.events.bitstream import from_bytes, quantise, to_bytes
from calyx.events.encode import EncodeReport, EncoderSettings, encode, encode_with_report
from calyx.events.params import EVENT_PARAMS, N_PARAMS, ROOM_PARAMS, EventList
from calyx.events.render import render

__all__ = [
    "EVENT_PARAMS",
    "N_PARAMS",
    "ROOM_PARAMS",
    "EncodeReport",
    "EncoderSettings",
    "EventList",
    "decode",
    "encode",
    "encode_with_report",
    "from_bytes",
    "load",
    "quantise",
    "save",
    "to_bytes",
]

#: A ``.cxe`` file larger than this is refused before reading (no event list comes near it).
MAX_FILE_BYTES = 1 << 30


def decode(events: EventList) -> NDArray[np.float64]:
    """Render an event list to mono audio.

    Returns
    -------
    np.ndarray [shape=(events.n_samples,)]
        At ``events.sample_rate``.
    """
    return render(events)


def save(events: EventList, path: str | os.PathLike[str], *, force: bool = False) -> int:
    """Write ``events`` (quantised) to a ``.cxe`` file atomically; returns its size in bytes.

    Refuses to replace an existing file unless ``force`` is true.
    """
    data = to_bytes(events)
    with atomic_output(path, force=force) as fh:
        fh.write(data)
    return len(data)


def load(path: str | os.PathLike[str]) -> EventList:
    """Read a ``.cxe`` file.

    Raises
    ------
    FileNotFoundError
        No such file.
    calyx.errors.FormatError
        The file is not an event file, or is corrupt, truncated or of a newer version.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such event file")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise FormatError(f"{p}: {size} bytes is larger than any event file ({MAX_FILE_BYTES} at most)")
    try:
        return from_bytes(p.read_bytes())
    except FormatError as exc:
        raise FormatError(f"{p}: {exc}") from exc
