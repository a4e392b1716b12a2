"""MuseScore's SF3: a SoundFont whose samples are Ogg Vorbis, made by ``sf3convert``.

Only the conversion and its size are measured here; decoding the note samples back is the
SoundFont reader's job (:func:`calyx.io.load_library` reads SF3 as well as SF2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from calyx.baselines._codecs import run_tool
from calyx.errors import AudioFileError, CalyxError, ParameterError

__all__ = ["Sf3Result", "sf3_roundtrip"]


@dataclass(frozen=True)
class Sf3Result:
    """A SoundFont compressed to SF3.

    Attributes
    ----------
    sf3_path : Path
        The SF3 file written.
    n_bytes : int
        Its size in bytes (the whole file: samples, headers and preset data).
    encode_s : float
        Wall time of ``sf3convert`` in seconds.
    sf2_n_bytes : int
        Size of the source SF2 file in bytes.
    """

    sf3_path: Path
    n_bytes: int
    encode_s: float
    sf2_n_bytes: int

    @property
    def file_ratio(self) -> float:
        """``sf2_n_bytes / n_bytes``; the library ratio vs 16-bit PCM needs the notes' PCM size instead."""
        return self.sf2_n_bytes / self.n_bytes


def sf3_roundtrip(
    sf2_path: str | os.PathLike[str],
    workdir: str | os.PathLike[str],
    *,
    quality: float | None = None,
    force: bool = False,
) -> Sf3Result:
    """Compress ``sf2_path`` with ``sf3convert -z`` into ``workdir/<stem>.sf3`` and measure it.

    Parameters
    ----------
    sf2_path : path
        The source SoundFont (SF2).
    workdir : path
        Folder for the SF3 file (created if needed).
    quality : float, optional
        Ogg Vorbis quality passed as ``-q``; default: sf3convert's own default, as MuseScore ships it.
    force : bool
        Replace an existing SF3 file of the same name.

    Raises
    ------
    AudioFileError
        ``sf2_path`` does not exist.
    ToolMissingError
        ``sf3convert`` is not installed.
    CalyxError
        ``sf3convert`` fails (a corrupt SoundFont, say) or writes nothing.
    """
    src = Path(sf2_path)
    if not src.is_file():
        raise AudioFileError(f"{src}: no such SoundFont file")
    out_dir = Path(workdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{src.stem}.sf3"
    if dst.exists() and not force:
        raise FileExistsError(f"{dst} exists; pass force=True to overwrite it")
    if quality is not None and not -1.0 <= quality <= 10.0:
        raise ParameterError(f"quality must be an Ogg Vorbis quality in [-1, 10], got {quality}")
    args = ["-z"] + (["-q", f"{quality:g}"] if quality is not None else []) + [str(src), str(dst)]
    if dst.exists():
        dst.unlink()
    encode_s = run_tool("sf3convert", args)
    if not dst.is_file() or dst.stat().st_size == 0:
        raise CalyxError(f"sf3convert exited normally but wrote no SF3 file at {dst}")
    return Sf3Result(
        sf3_path=dst, n_bytes=dst.stat().st_size, encode_s=encode_s, sf2_n_bytes=src.stat().st_size
    )
