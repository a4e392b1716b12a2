"""Calyx: recorded acoustic sound as small, interpretable, editable models.

Stages (imports run one way, from top to bottom of this list):

- :mod:`calyx.core`      shared signal processing (STFT, mel, synthesis primitives, audio I/O)
- :mod:`calyx.metrics`   the measuring stick (LMD, LSD, note/onset F1, PESQ, STOI)
- :mod:`calyx.io`        importing instrument libraries (SF2/SF3, SFZ, WAV folders)
- :mod:`calyx.analysis`  per-note harmonic-plus-noise models
- :mod:`calyx.hypercube` the spectral hypercube and its decompositions
- :mod:`calyx.format`    the ``.calyx`` container
- :mod:`calyx.synth`     the real-time spectral synthesizer
- :mod:`calyx.events`    the sparse event codec
- :mod:`calyx.baselines` classic codecs run side by side for comparison
- :mod:`calyx.cli`       the ``calyx`` command line
"""

from __future__ import annotations

from calyx.errors import AudioFileError, CalyxError, FormatError, ParameterError, ToolMissingError

__version__ = "0.1.0"

__all__ = [
    "AudioFileError",
    "CalyxError",
    "FormatError",
    "ParameterError",
    "ToolMissingError",
    "__version__",
]
