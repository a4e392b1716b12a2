"""Onset of a recorded note: where its energy first rises clearly above the lead-in."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from calyx.errors import ParameterError

__all__ = ["detect_onset"]


def detect_onset(
    y: NDArray[np.floating],
    *,
    sample_rate: float,
    block_s: float = 0.001,
    rise_db: float = 15.0,
    max_below_peak_db: float = 50.0,
) -> int:
    """First sample of a note (the start of its attack).

    The energy of all channels together is measured in blocks of ``block_s`` seconds. The lead-in
    level is the median block energy before the signal first comes within 20 dB of its peak; the
    onset is the first block whose energy exceeds both ``lead-in + rise_db`` and
    ``peak - max_below_peak_db``, refined to the first sample in that block whose magnitude
    exceeds the same threshold.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
    sample_rate : float
    block_s : float
        Block length in seconds (precision of the first search).
    rise_db : float
        Rise above the lead-in level that marks the onset, dB.
    max_below_peak_db : float
        The onset threshold is never lower than the peak block energy minus this, dB.

    Returns
    -------
    int
        Sample index in ``[0, n_samples)``; 0 for a note that starts at once or a silent signal.
    """
    x = np.asarray(y, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[-1] == 0:
        raise ParameterError(f"y must have shape (n_samples,) or (n_channels, n_samples), got {x.shape}")
    power = np.sum(x * x, axis=0)
    n = power.size
    block = max(1, round(block_s * sample_rate))
    n_blocks = -(-n // block)
    padded = np.zeros(n_blocks * block)
    padded[:n] = power
    energy = padded.reshape(n_blocks, block).mean(axis=1)
    peak = energy.max()
    if peak <= 0.0:
        return 0
    e_db = 10.0 * np.log10(energy + peak * 1e-15)
    peak_db = 10.0 * np.log10(peak)
    first_loud = int(np.argmax(e_db >= peak_db - 20.0))
    lead_in = e_db[:first_loud]
    floor_db = float(np.median(lead_in)) if lead_in.size else -np.inf
    threshold_db = max(floor_db + rise_db, peak_db - max_below_peak_db)
    i = int(np.argmax(e_db >= threshold_db))
    seg = power[i * block : (i + 1) * block]
    above = np.nonzero(seg >= 10.0 ** (threshold_db / 10.0))[0]
    return int(i * block + (above[0] if above.size else 0))
