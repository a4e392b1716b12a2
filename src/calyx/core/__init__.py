"""Shared signal processing: the one core every other stage builds on."""

from __future__ import annotations

from calyx.core.spectrum import hann_window, mel_filterbank, stft

__all__ = ["hann_window", "mel_filterbank", "stft"]
