"""Importing instrument libraries: SoundFont 2/3, SFZ, and folders of audio files with a manifest.

Every reader returns a :class:`Library` of :class:`NoteSample` records whose audio is loaded lazily,
so importing a large library costs only its metadata. :func:`load_library` picks the reader from
the path.
"""

from __future__ import annotations

import os
from pathlib import Path

from calyx.errors import ParameterError
from calyx.io.folder import MANIFEST_NAME, read_folder
from calyx.io.library import (
    AudioLoader,
    Library,
    LibraryAxes,
    NoteSample,
    OggVorbisSlice,
    PcmSlice,
    SoundFileSlice,
    StackedChannels,
    velocity_to_dynamic,
)
from calyx.io.sf2 import PresetInfo, list_presets, read_sf2, read_sf2_info
from calyx.io.sfz import read_sfz

__all__ = [
    "AudioLoader",
    "Library",
    "LibraryAxes",
    "NoteSample",
    "OggVorbisSlice",
    "PcmSlice",
    "PresetInfo",
    "SoundFileSlice",
    "StackedChannels",
    "list_presets",
    "load_library",
    "read_folder",
    "read_sf2",
    "read_sf2_info",
    "read_sfz",
    "velocity_to_dynamic",
]

_WHAT_WORKS = (
    "a SoundFont (.sf2, .sf3), an SFZ file (.sfz), or a folder holding a manifest.csv "
    "(see docs/folder-format.md)"
)


def load_library(source: str | os.PathLike[str], *, preset: str | None = None) -> Library:
    """Import an instrument library, choosing the reader from the path.

    Parameters
    ----------
    source : str or os.PathLike
        A ``.sf2``/``.sf3`` file, an ``.sfz`` file, or a folder with a ``manifest.csv`` (the
        manifest's own path works too).
    preset : str or None
        For SoundFonts: the preset's name or ``"BANK:PROGRAM"``; required when the bank holds
        several presets. Not accepted for other sources.

    Returns
    -------
    Library

    Raises
    ------
    ParameterError
        When the source is of no supported kind, or ``preset`` is given for a non-SoundFont source.
    AudioFileError
        When the source is of a supported kind but missing, corrupt or refers to missing audio.
    """
    p = Path(source)
    suffix = p.suffix.lower()
    if suffix in (".sf2", ".sf3"):
        return read_sf2(p, preset=preset)
    if preset is not None:
        raise ParameterError(f"{p}: preset={preset!r} applies to SoundFont (.sf2, .sf3) files only")
    if suffix == ".sfz":
        return read_sfz(p)
    if p.is_dir():
        if (p / MANIFEST_NAME).is_file():
            return read_folder(p)
        raise ParameterError(
            f"{p}: this folder has no {MANIFEST_NAME}; an instrument library is {_WHAT_WORKS}"
        )
    if p.name.lower() == MANIFEST_NAME:
        return read_folder(p)
    state = "" if p.exists() else " (and it does not exist)"
    raise ParameterError(f"{p}{state}: not an instrument library; use {_WHAT_WORKS}")
