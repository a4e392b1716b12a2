"""Offline rendering with the real-time engine: one note, an event list, a MIDI file."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.errors import AudioFileError, ParameterError
from calyx.synth import _kernels as K
from calyx.synth._engine import Engine

__all__ = ["oscillator_bank_controls", "render_events", "render_midi", "render_note", "schedule_midi"]

FloatArray = NDArray[np.float64]

#: MIDI channel of General MIDI percussion (0-based), ignored unless the instrument is a kit.
DRUM_CHANNEL = 9


def oscillator_bank_controls(
    freq_hz: NDArray[np.floating],
    amplitude: NDArray[np.floating],
    *,
    control_period: int,
    n_samples: int,
    sample_rate: float,
    initial_phase: NDArray[np.floating] | None = None,
) -> FloatArray:
    """The engine's partial oscillators, driven by values at control points.

    Computes the same signal as ``calyx.core.synthesis.oscillator_bank(upsample_controls(freq_hz,
    hop_length=control_period, n_samples=n_samples), upsample_controls(amplitude, ...),
    sample_rate=sample_rate, initial_phase=initial_phase)[0]`` with the engine's recursion.

    Parameters
    ----------
    freq_hz, amplitude : np.ndarray [shape=(n_partials, n_controls)]
        Value at sample ``i * control_period`` (held after the last one).
    control_period, n_samples : int
    sample_rate : float
    initial_phase : np.ndarray [shape=(n_partials,)], optional

    Returns
    -------
    np.ndarray [shape=(n_samples,)]
    """
    f = np.ascontiguousarray(freq_hz, dtype=np.float64)
    a = np.ascontiguousarray(amplitude, dtype=np.float64)
    if f.ndim != 2 or f.shape != a.shape or f.shape[1] < 1:
        raise ParameterError(f"freq_hz and amplitude must be equal (n_partials, n_controls) arrays, got {f.shape}, {a.shape}")
    if control_period < 1 or n_samples < 0:
        raise ParameterError(f"need control_period >= 1 and n_samples >= 0, got {control_period}, {n_samples}")
    n_partials = f.shape[0]
    phase = np.zeros(n_partials) if initial_phase is None else np.asarray(initial_phase, dtype=np.float64)
    if phase.shape != (n_partials,):
        raise ParameterError(f"initial_phase must have shape ({n_partials},), got {phase.shape}")
    out = np.zeros((2, n_samples))
    work = np.zeros((K.N_PL, max(n_partials, 1)))
    K.oscillator_bank_controls(
        f, a, int(control_period), int(n_samples), float(sample_rate), phase, out, work, np.zeros(n_partials), np.zeros(n_partials)
    )
    return out[0].copy()


def render_events(
    engine: Engine,
    *,
    end_samples: int,
    tail_s: float = 5.0,
    block: int = 4096,
) -> FloatArray:
    """Render an engine whose events are already scheduled.

    Renders until ``end_samples`` and then until every voice has died away, at most ``tail_s``
    seconds more.

    Returns
    -------
    np.ndarray [shape=(2, n_samples)]
    """
    if block < 1:
        raise ParameterError(f"block must be >= 1, got {block}")
    limit = end_samples + round(tail_s * engine.sample_rate)
    blocks = []
    t = engine.time_samples
    while t < limit:
        n = min(block, limit - t)
        blocks.append(engine.process(n))
        t += n
        if t >= end_samples and engine.n_active_voices == 0 and engine.pending_events == 0:
            break
    if not blocks:
        return np.zeros((2, 0))
    return np.concatenate(blocks, axis=1)


def render_note(
    source: Any,
    *,
    pitch_midi: float,
    dynamic: float,
    duration_s: float,
    articulation: str | None = None,
    variation: int = 0,
    sample_rate: float = 48000.0,
    tail_s: float = 3.0,
    **engine_options: Any,
) -> FloatArray:
    """One note held for ``duration_s``, then released, with its release tail (at most ``tail_s``).

    The channel volume is at full scale (CC7 = 127), so the note has the model's own level.

    Returns
    -------
    np.ndarray [shape=(2, n_samples)]

    Raises
    ------
    ParameterError
        For a pitch outside the instrument's range, a NaN or a non-positive duration.
    """
    if not (isinstance(duration_s, int | float) and math.isfinite(duration_s) and duration_s > 0):
        raise ParameterError(f"duration_s must be > 0, got {duration_s!r}")
    if not (isinstance(pitch_midi, int | float) and math.isfinite(pitch_midi)):
        raise ParameterError(f"pitch_midi must be a finite number, got {pitch_midi!r}")
    if not (isinstance(dynamic, int | float) and math.isfinite(dynamic) and 0 <= dynamic <= 1):
        raise ParameterError(f"dynamic must be within 0..1, got {dynamic!r}")
    engine = Engine(source, sample_rate=sample_rate, **engine_options)
    key = min(max(round(pitch_midi), 0), 127)
    velocity = min(max(round(dynamic * 127), 1), 127)
    engine.control_change(7, 127, time_samples=0)
    engine.note_on(
        key,
        velocity,
        time_samples=0,
        pitch_midi=float(pitch_midi),
        dynamic=float(dynamic),
        articulation=articulation,
        variation=variation,
    )
    end = round(duration_s * sample_rate)
    engine.note_off(key, time_samples=end)
    return render_events(engine, end_samples=end, tail_s=tail_s)


def _midi_events(midi: Any) -> Iterable[tuple[float, Any]]:
    """(time in seconds, message) over all tracks, following the tempo map."""
    t = 0.0
    for msg in midi:
        t += float(msg.time)
        yield t, msg


def render_midi(
    source: Any,
    midi_path: str | os.PathLike[str],
    *,
    sample_rate: float = 48000.0,
    gain_db: float = -12.0,
    tail_s: float = 5.0,
    block: int = 4096,
    **engine_options: Any,
) -> FloatArray:
    """Render a standard MIDI file with the instrument on every channel.

    All tracks and channels are played through one engine, following the file's tempo map; channel
    10 (GM percussion) is skipped unless the source says it is a kit (``is_kit``). Program changes
    are ignored. Notes outside the instrument's range are skipped with one warning.

    Parameters
    ----------
    source : ModelSource
    midi_path : path
    sample_rate : float
    gain_db : float
        Master gain: headroom for many notes at once, as a synthesizer's (FluidSynth's default is
        -14 dB). Channel volume (CC7) starts at the General MIDI default of 100.
    tail_s : float
        Most time rendered after the last event while notes die away.
    block : int
        Block size used internally (the output does not depend on it).
    **engine_options
        Passed to :class:`Engine` (``polyphony``, ``release_s``, ...).

    Returns
    -------
    np.ndarray [shape=(2, n_samples)]

    Raises
    ------
    AudioFileError
        When the MIDI file is missing or cannot be parsed.
    """
    engine = Engine(source, sample_rate=sample_rate, gain_db=gain_db, **engine_options)
    end = schedule_midi(engine, midi_path)
    return render_events(engine, end_samples=end, tail_s=tail_s, block=block)


def schedule_midi(engine: Engine, midi_path: str | os.PathLike[str]) -> int:
    """Schedule every event of a standard MIDI file on ``engine`` (see :func:`render_midi`).

    Returns
    -------
    int
        The sample of the file's last event (its end).

    Raises
    ------
    AudioFileError
        When the MIDI file is missing or cannot be parsed.
    """
    import mido

    path = Path(midi_path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such MIDI file")
    try:
        midi = mido.MidiFile(str(path))
    except (OSError, ValueError, EOFError, KeyError, IndexError) as exc:
        raise AudioFileError(f"{path}: cannot be read as a standard MIDI file ({exc})") from exc
    sample_rate = engine.sample_rate
    kit = bool(getattr(engine.source, "is_kit", False))
    lo, hi = engine.pitch_range_midi
    skipped = 0
    end = 0
    for t_s, msg in _midi_events(midi):
        if msg.is_meta:
            end = max(end, round(t_s * sample_rate))
            continue
        if getattr(msg, "channel", None) == DRUM_CHANNEL and not kit:
            continue
        time_samples = round(t_s * sample_rate)
        end = max(end, time_samples)
        if msg.type == "note_on" and msg.velocity > 0 and not lo <= msg.note <= hi:
            skipped += 1
            continue
        engine.midi_message(msg, time_samples=time_samples)
    if skipped:
        warnings.warn(
            f"{path}: skipped {skipped} note(s) outside the instrument's range {lo:.1f}..{hi:.1f}",
            stacklevel=3,
        )
    return end
