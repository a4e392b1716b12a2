"""Classic codecs (Opus, Vorbis, MP3, FLAC, SF3) run side by side with Calyx through their real tools.

Each round trip returns audio time-aligned with the input and the size of the whole compressed file,
so that the project's metrics compare like with like. See the evaluation guide's "Baselines".
"""

from __future__ import annotations

from calyx.baselines._batch import BatchResult, ItemResult, evaluate_codec_on_items
from calyx.baselines._codecs import (
    CODECS,
    MAX_LAG_SAMPLES,
    MIN_ALIGNMENT_CORRELATION,
    MIN_BULK_LAG_CORRELATION,
    PEAK_TOLERANCE,
    SMALL_LAG_S,
    TOOL_PACKAGES,
    Codec,
    CodecResult,
    available_codecs,
    measure_lag,
    missing_tools_message,
    require_tool,
    run_codec,
    run_tool,
)
from calyx.baselines._sf3 import Sf3Result, sf3_roundtrip

__all__ = [
    "CODECS",
    "MAX_LAG_SAMPLES",
    "MIN_ALIGNMENT_CORRELATION",
    "MIN_BULK_LAG_CORRELATION",
    "PEAK_TOLERANCE",
    "SMALL_LAG_S",
    "TOOL_PACKAGES",
    "BatchResult",
    "Codec",
    "CodecResult",
    "ItemResult",
    "Sf3Result",
    "available_codecs",
    "evaluate_codec_on_items",
    "measure_lag",
    "missing_tools_message",
    "require_tool",
    "run_codec",
    "run_tool",
    "sf3_roundtrip",
]
