"""One error hierarchy for Calyx.

Every error names the offending file or value and says what would work. ``ParameterError`` is
also a ``ValueError`` so that callers using the standard idiom keep working.
"""

from __future__ import annotations

__all__ = ["AudioFileError", "CalyxError", "FormatError", "ParameterError", "ToolMissingError"]


class CalyxError(Exception):
    """Base class of every error Calyx raises on purpose."""


class ParameterError(CalyxError, ValueError):
    """A value given by the caller is out of range or inconsistent."""


class AudioFileError(CalyxError, OSError):
    """An audio or instrument file cannot be read (missing, corrupt, truncated, unsupported)."""


class FormatError(CalyxError, ValueError):
    """A Calyx container (``.calyx``, ``.cxe``) is corrupt, truncated or of a future version."""


class ToolMissingError(CalyxError, RuntimeError):
    """An external program (a codec, FluidSynth) is not installed."""
