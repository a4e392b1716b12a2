"""Live playback: MIDI input -> :class:`~calyx.synth.Engine` -> audio output (PortAudio).

``sounddevice`` and ``mido`` with ``python-rtmidi`` are the optional extra ``calyx[live]``; they are
imported only here, inside the functions that need them. The audio callback itself
(:class:`LivePlayer`) depends on neither and is tested with a fake stream.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.errors import CalyxError, ParameterError
from calyx.synth._engine import Engine

__all__ = ["LivePlayer", "LiveSetup", "LiveUnavailableError", "check_live", "describe_devices", "play", "run_live"]

_LIST_HINT = "list them with `calyx play --list-devices`"


class LiveUnavailableError(CalyxError, RuntimeError):
    """Live playback is impossible here: no audio output, no MIDI input, or the ``live`` extra is missing."""


class LivePlayer:
    """The audio callback: drains queued MIDI messages into the engine and renders one block.

    Parameters
    ----------
    engine : Engine
    block : int
        Expected block size (buffers for other sizes are made on first use).

    Notes
    -----
    :meth:`push` may be called from any thread (the MIDI input's); messages are applied at the
    start of the next block. :meth:`callback` has the signature sounddevice expects
    (``outdata`` of shape ``(frames, channels)``).
    """

    def __init__(self, engine: Engine, *, block: int = 128) -> None:
        if block < 1:
            raise ParameterError(f"block must be >= 1, got {block}")
        self.engine = engine
        self._queue: collections.deque[Any] = collections.deque()
        self._buffers: dict[int, NDArray[np.float64]] = {block: np.zeros((2, block))}
        self.blocks = 0
        self.underflows = 0
        self.errors = 0

    def push(self, message: Any) -> None:
        """Queue a MIDI message (thread-safe)."""
        self._queue.append(message)

    def callback(self, outdata: NDArray[np.floating], frames: int, time_info: Any, status: Any) -> None:
        """Render ``frames`` samples into ``outdata`` (``(frames, n_channels)``)."""
        if status:
            self.underflows += 1
        while self._queue:
            try:
                self.engine.midi_message(self._queue.popleft())
            except ParameterError:
                self.errors += 1  # a note outside the range: skip it, keep playing
        buf = self._buffers.get(frames)
        if buf is None:
            buf = self._buffers[frames] = np.zeros((2, frames))
        self.engine.process(out=buf)
        n_out = outdata.shape[1]
        if n_out == 1:
            outdata[:, 0] = 0.5 * (buf[0] + buf[1])
        else:
            outdata[:, 0] = buf[0]
            outdata[:, 1] = buf[1]
            if n_out > 2:
                outdata[:, 2:] = 0.0
        self.blocks += 1


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError as exc:
        raise LiveUnavailableError(
            "live playback (audio output and MIDI input) needs the optional packages sounddevice and "
            "python-rtmidi: pip install 'calyx[live]'"
        ) from exc
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library is missing
        raise LiveUnavailableError(
            f"no audio output: the PortAudio library cannot be loaded ({exc}); install it "
            "(Debian/Ubuntu: apt install libportaudio2)"
        ) from exc
    return sounddevice


def _midi_inputs() -> list[str]:
    import mido

    try:
        return list(mido.get_input_names())
    except ImportError as exc:
        raise LiveUnavailableError(
            f"MIDI input needs python-rtmidi ({exc}): pip install 'calyx[live]'"
        ) from exc
    except OSError as exc:  # rtmidi's errors (no ALSA sequencer, ...) are OSErrors
        raise LiveUnavailableError(f"no MIDI input system ({exc})") from exc


def _output_devices(sd: Any) -> list[tuple[int, dict[str, Any]]]:
    try:
        devices = list(sd.query_devices())
    except Exception as exc:  # PortAudio reports a missing audio system in several ways
        raise LiveUnavailableError(f"no audio output device ({exc}); {_LIST_HINT}") from exc
    return [(i, dict(d)) for i, d in enumerate(devices) if int(d.get("max_output_channels", 0)) > 0]


def describe_devices() -> str:
    """Audio output devices and MIDI input ports, one per line (saying why a list is empty)."""
    lines = ["audio output devices:"]
    try:
        outputs = _output_devices(_import_sounddevice())
        lines += [
            f"  {i}: {d['name']} ({int(d['max_output_channels'])} ch, {float(d.get('default_samplerate', 0)):.0f} Hz)"
            for i, d in outputs
        ] or ["  (none)"]
    except LiveUnavailableError as exc:
        lines.append(f"  (none: {exc})")
    lines.append("MIDI input ports:")
    try:
        lines += [f"  {name}" for name in _midi_inputs()] or ["  (none)"]
    except LiveUnavailableError as exc:
        lines.append(f"  (none: {exc})")
    return "\n".join(lines)


def run_live(
    engine: Engine,
    *,
    stream_factory: Callable[..., Any],
    midi_port: Any = None,
    block: int = 128,
    device: int | str | None = None,
    duration_s: float | None = None,
    poll_s: float = 0.05,
) -> LivePlayer:
    """Play ``engine`` through an output stream until interrupted (or for ``duration_s``).

    Parameters
    ----------
    engine : Engine
    stream_factory : callable
        ``sounddevice.OutputStream`` or a stand-in taking the same keyword arguments
        (``samplerate``, ``blocksize``, ``channels``, ``dtype``, ``device``, ``callback``) and
        returning a context manager.
    midi_port : object, optional
        An open MIDI input whose ``callback`` attribute can be set (``mido`` ports), or None.
    block : int
    device : int or str, optional
    duration_s : float, optional
        Stop after this long (run until Ctrl-C otherwise).

    Returns
    -------
    LivePlayer
        With its counters (blocks rendered, underflows, skipped notes).
    """
    player = LivePlayer(engine, block=block)
    if midi_port is not None:
        midi_port.callback = player.push
    stream = stream_factory(
        samplerate=engine.sample_rate,
        blocksize=block,
        channels=2,
        dtype="float32",
        device=device,
        callback=player.callback,
    )
    stop = threading.Event()
    with stream:
        t0 = time.monotonic()
        try:
            while not stop.is_set():
                if duration_s is not None and time.monotonic() - t0 >= duration_s:
                    break
                stop.wait(poll_s)
        except KeyboardInterrupt:  # Ctrl-C ends live playback normally
            pass
        finally:
            if midi_port is not None:
                midi_port.callback = None
    return player


@dataclass(frozen=True)
class LiveSetup:
    """The audio output and MIDI input that :func:`check_live` found."""

    sounddevice: Any
    device: int | str | None
    sample_rate: float
    midi_port: str


def check_live(*, midi_in: str | None = None, device: int | str | None = None) -> LiveSetup:
    """Find the audio output and MIDI input for live playback, before anything is loaded.

    Raises
    ------
    LiveUnavailableError
        When the ``live`` extra, an audio output device or a MIDI input port is missing (the message
        names what is missing and how to list the devices).
    """
    sd = _import_sounddevice()
    if not _output_devices(sd):
        raise LiveUnavailableError(f"no audio output device found; {_LIST_HINT}")
    try:
        info = dict(sd.query_devices(device, "output") if device is not None else sd.query_devices(kind="output"))
    except Exception as exc:
        raise LiveUnavailableError(f"audio output device {device!r} not found ({exc}); {_LIST_HINT}") from exc
    ports = _midi_inputs()
    if midi_in is not None and midi_in not in ports:
        raise LiveUnavailableError(f"MIDI input port {midi_in!r} not found (available: {ports or 'none'}); {_LIST_HINT}")
    if not ports:
        raise LiveUnavailableError(
            f"no MIDI input port found; connect a MIDI device or start a virtual port, then {_LIST_HINT}"
        )
    return LiveSetup(sd, device, float(info.get("default_samplerate") or 48000.0), midi_in or ports[0])


def play(
    source: Any,
    setup: LiveSetup,
    *,
    block: int = 128,
    sample_rate: float | None = None,
    polyphony: int = 64,
    duration_s: float | None = None,
    log: Callable[[str], None] = print,
) -> LivePlayer:
    """Play ``source`` live through the devices of ``setup`` until Ctrl-C (or ``duration_s``)."""
    import mido

    sr = float(sample_rate or setup.sample_rate)
    engine = Engine(source, sample_rate=sr, polyphony=polyphony, dynamic_anchors="grid")
    lo, hi = engine.pitch_range_midi
    t0 = time.monotonic()
    n = engine.preload(range(math.ceil(lo), math.floor(hi) + 1))  # no evaluation in the audio callback
    log(f"prepared {n} note tables in {time.monotonic() - t0:.1f} s")
    log(f"playing at {sr:.0f} Hz, block {block}, MIDI from {setup.midi_port!r}; Ctrl-C stops")
    with mido.open_input(setup.midi_port) as port:
        return run_live(
            engine,
            stream_factory=setup.sounddevice.OutputStream,
            midi_port=port,
            block=block,
            device=setup.device,
            duration_s=duration_s,
        )
