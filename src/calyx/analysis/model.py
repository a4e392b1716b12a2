"""The per-note harmonic-plus-noise model: frame-rate, f0-relative, interpretable parameters.

A :class:`NoteModel` describes one recorded note as

- ``K`` harmonic partials whose frequencies follow the stiff-string law
  ``f_k(t) = k f0(t) sqrt(1 + B k^2) 2^(dev_k(t) / 1200)`` with ``f0(t) = f0_hz 2^(f0_cents(t) / 1200)``
  and whose linear peak amplitudes are given per frame and per channel;
- optional per-frame partial phases, which make the resynthesis waveform-coherent with the
  original (needed only to subtract the model from the recording and to splice the kept attack;
  a real-time engine may drop them and regenerate phases by integrating the frequencies);
- a noise model: RMS amplitude per ERB-spaced band and frame, rendered by
  :func:`calyx.core.synthesis.filtered_noise` with a fixed seed;
- an optional attack transient: the first few tens of milliseconds of what the partials do not
  explain, kept as a waveform and cross-faded into the noise model;
- the onset sample, before which the partials are silent.

Frame ``i`` is centred on sample ``i * hop_length`` (the convention of
:func:`calyx.core.synthesis.upsample_controls`); there are ``n_samples // hop_length + 1`` frames.
Channel arrays are either the recording's channels (``stereo == "channels"``) or mid and side
(``stereo == "mid_side"``: mid ``(L + R) / 2`` first, side ``(L - R) / 2`` second).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.core.synthesis import band_edges_hz
from calyx.errors import FormatError, ParameterError

__all__ = ["MODEL_VERSION", "NoteModel", "partial_ratios", "transient_gate"]

FloatArray = NDArray[np.float64]

#: Version of the array layout written by :meth:`NoteModel.to_arrays`.
MODEL_VERSION = 1

_ARRAY_FIELDS = ("f0_cents", "amplitude", "freq_cents", "phase", "noise_gain", "transient")
_META_FIELDS = (
    "sample_rate",
    "n_samples",
    "hop_length",
    "onset_sample",
    "f0_hz",
    "inharmonicity",
    "noise_fmin_hz",
    "noise_n_fft",
    "noise_seed",
    "transient_start",
    "transient_fade_in",
    "transient_fade_out",
    "stereo",
    "pitch_midi",
    "harmonicity",
)


def partial_ratios(n_partials: int, inharmonicity: float) -> FloatArray:
    """Frequency of partial ``k`` over f0: ``k sqrt(1 + B k^2)`` for ``k = 1..n_partials``."""
    k = np.arange(1, n_partials + 1, dtype=np.float64)
    return k * np.sqrt(1.0 + inharmonicity * k * k)


def transient_gate(n_transient: int, *, fade_in: int, fade_out: int) -> FloatArray:
    """Weight (0..1) of the kept attack over its ``n_transient`` samples.

    Raised-cosine fade-in over the first ``fade_in`` samples, 1 in the middle, raised-cosine
    fade-out over the last ``fade_out`` samples. The synthesis adds the kept attack (already
    multiplied by this gate) and scales the noise by ``1 - gate`` over the same samples, so that
    where the gate is 1 the output equals the analysed recording.
    """
    g = np.ones(max(n_transient, 0))
    if n_transient <= 0:
        return g
    fi = min(max(fade_in, 0), n_transient)
    fo = min(max(fade_out, 0), n_transient - fi)
    if fi:
        g[:fi] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fi) + 0.5) / fi)
    if fo:
        g[n_transient - fo :] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(fo) + 0.5) / fo)
    return g


def _arr(x: Any, name: str, ndim: int) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise ParameterError(f"NoteModel.{name} must have {ndim} dimension(s), got shape {a.shape}")
    return a


@dataclass(frozen=True, eq=False)
class NoteModel:
    """One note as partials + noise + kept attack, at frame rate. See the module docstring.

    Attributes
    ----------
    sample_rate : float
        Sample rate of the modelled recording, Hz.
    n_samples : int
        Length of the recording in samples.
    hop_length : int
        Frame advance in samples; frame ``i`` is centred on sample ``i * hop_length``.
    onset_sample : int
        First sample of the note; the partials are silent before it.
    f0_hz : float
        Nominal fundamental frequency (the analysed f0 averaged over the note); 0 when unpitched.
    inharmonicity : float
        Stiff-string coefficient ``B`` (``f_k = k f0 sqrt(1 + B k^2)``), >= 0.
    f0_cents : np.ndarray [shape=(n_frames,)]
        Deviation of f0 from ``f0_hz`` per frame, in cents (vibrato, pitch glide, drift).
    amplitude : np.ndarray [shape=(n_channels, n_partials, n_frames)]
        Linear peak amplitude of each partial per frame (full scale 1).
    freq_cents : np.ndarray [shape=(n_partials, n_frames)]
        Deviation of each partial from ``k f0(t) sqrt(1 + B k^2)``, in cents (shared by channels).
    phase : np.ndarray [shape=(n_channels, n_partials, n_frames)] or None
        Phase in radians of each partial at each frame centre (sine phase: the partial is
        ``a sin(phase)``). Optional: with it the resynthesis is waveform-coherent; without it
        the phases are regenerated by integrating the frequencies (perceptually equivalent).
    noise_gain : np.ndarray [shape=(n_channels, n_noise_bands, n_frames)]
        RMS amplitude of the noise in each ERB band per frame.
    noise_fmin_hz : float
        Lower edge parameter of the bands (:func:`calyx.core.synthesis.band_edges_hz`).
    noise_n_fft : int
        FFT size with which the noise is analysed and rendered.
    noise_seed : int
        Seed of the rendered noise (channel ``c`` uses ``noise_seed + c``).
    transient : np.ndarray [shape=(n_channels, n_transient)]
        Kept attack waveform, already multiplied by :func:`transient_gate`; ``n_transient`` may be 0.
    transient_start : int
        Sample of the recording at which ``transient`` starts.
    transient_fade_in, transient_fade_out : int
        Fade lengths of the gate, in samples.
    stereo : str
        ``"channels"`` or ``"mid_side"`` (layout of the channel axis, see the module docstring).
    pitch_midi : float or None
        The nominal pitch given to the analysis, if any.
    harmonicity : float
        Share of the note's spectral energy (0..1) found at the partials during analysis.
    """

    sample_rate: float
    n_samples: int
    hop_length: int
    onset_sample: int
    f0_hz: float
    inharmonicity: float
    f0_cents: FloatArray
    amplitude: FloatArray
    freq_cents: FloatArray
    noise_gain: FloatArray
    noise_fmin_hz: float
    noise_n_fft: int
    phase: FloatArray | None = None
    noise_seed: int = 0
    transient: FloatArray = field(default_factory=lambda: np.zeros((1, 0)))
    transient_start: int = 0
    transient_fade_in: int = 0
    transient_fade_out: int = 0
    stereo: str = "channels"
    pitch_midi: float | None = None
    harmonicity: float = 1.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "f0_cents", _arr(self.f0_cents, "f0_cents", 1))
        set_(self, "amplitude", _arr(self.amplitude, "amplitude", 3))
        set_(self, "freq_cents", _arr(self.freq_cents, "freq_cents", 2))
        set_(self, "noise_gain", _arr(self.noise_gain, "noise_gain", 3))
        set_(self, "transient", _arr(self.transient, "transient", 2))
        if self.phase is not None:
            set_(self, "phase", _arr(self.phase, "phase", 3))
        if not (self.sample_rate > 0 and math.isfinite(self.sample_rate)):
            raise ParameterError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.n_samples < 1 or self.hop_length < 1:
            raise ParameterError(
                f"need n_samples >= 1 and hop_length >= 1, got {self.n_samples}, {self.hop_length}"
            )
        n_frames = self.n_samples // self.hop_length + 1
        n_ch, n_partials = self.amplitude.shape[0], self.amplitude.shape[1]
        expected = {
            "f0_cents": (n_frames,),
            "amplitude": (n_ch, n_partials, n_frames),
            "freq_cents": (n_partials, n_frames),
            "noise_gain": (n_ch, self.noise_gain.shape[1], n_frames),
        }
        if self.phase is not None:
            expected["phase"] = (n_ch, n_partials, n_frames)
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ParameterError(
                    f"NoteModel.{name} has shape {got}, expected {shape} "
                    f"(n_frames = n_samples // hop_length + 1 = {n_frames})"
                )
        if self.transient.shape[0] != n_ch:
            raise ParameterError(f"NoteModel.transient must have {n_ch} channel(s), got {self.transient.shape}")
        if self.stereo not in ("channels", "mid_side"):
            raise ParameterError(f"stereo must be 'channels' or 'mid_side', got {self.stereo!r}")
        if self.stereo == "mid_side" and n_ch != 2:
            raise ParameterError(f"a mid/side model needs 2 channels, got {n_ch}")
        if self.inharmonicity < 0 or not math.isfinite(self.inharmonicity):
            raise ParameterError(f"inharmonicity must be >= 0, got {self.inharmonicity}")
        if self.f0_hz < 0 or not math.isfinite(self.f0_hz) or (n_partials > 0 and self.f0_hz == 0):
            raise ParameterError(f"f0_hz must be > 0 when there are partials, got {self.f0_hz}")
        if self.noise_n_fft < 2:
            raise ParameterError(f"noise_n_fft must be >= 2, got {self.noise_n_fft}")
        for name in _ARRAY_FIELDS:
            a = getattr(self, name)
            if a is not None and not np.all(np.isfinite(a)):
                raise ParameterError(f"NoteModel.{name} contains NaN or infinite values")
        if np.any(self.amplitude < 0) or np.any(self.noise_gain < 0):
            raise ParameterError("amplitudes and noise gains must be >= 0")

    def __repr__(self) -> str:
        return (
            f"NoteModel(f0_hz={self.f0_hz:.3f}, inharmonicity={self.inharmonicity:.3g}, "
            f"n_channels={self.n_channels}, n_partials={self.n_partials}, n_frames={self.n_frames}, "
            f"n_noise_bands={self.n_noise_bands}, duration_s={self.duration_s:.3f}, "
            f"onset_sample={self.onset_sample}, phase={'yes' if self.phase is not None else 'no'}, "
            f"n_transient={self.transient.shape[1]}, stereo={self.stereo!r})"
        )

    # ---- shapes ---------------------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        """Channels of the model (2 for stereo, in either layout)."""
        return int(self.amplitude.shape[0])

    @property
    def n_partials(self) -> int:
        """Number of modelled partials ``K`` (0 for an unpitched note)."""
        return int(self.amplitude.shape[1])

    @property
    def n_frames(self) -> int:
        """Frames ``T = n_samples // hop_length + 1``."""
        return int(self.amplitude.shape[2])

    @property
    def n_noise_bands(self) -> int:
        """ERB bands of the noise model."""
        return int(self.noise_gain.shape[1])

    @property
    def is_harmonic(self) -> bool:
        """Whether the note has partials (False for the unpitched fall-back)."""
        return self.n_partials > 0

    @property
    def duration_s(self) -> float:
        """Length of the modelled recording in seconds."""
        return self.n_samples / self.sample_rate

    # ---- derived physical quantities -----------------------------------------------------------
    @property
    def noise_band_edges_hz(self) -> FloatArray:
        """Edges of the noise bands in Hz, shape ``(n_noise_bands + 1,)``."""
        return band_edges_hz(n_bands=self.n_noise_bands, sample_rate=self.sample_rate, fmin_hz=self.noise_fmin_hz)

    def f0_track_hz(self) -> FloatArray:
        """f0 per frame in Hz, shape ``(n_frames,)``."""
        return self.f0_hz * 2.0 ** (self.f0_cents / 1200.0)

    def partial_freq_hz(self) -> FloatArray:
        """Frequency of every partial per frame in Hz, shape ``(n_partials, n_frames)``."""
        ratios = partial_ratios(self.n_partials, self.inharmonicity)
        return ratios[:, None] * self.f0_track_hz()[None, :] * 2.0 ** (self.freq_cents / 1200.0)

    def frame_times_s(self) -> FloatArray:
        """Centre of every frame in seconds, shape ``(n_frames,)``."""
        return np.arange(self.n_frames, dtype=np.float64) * float(self.hop_length / self.sample_rate)

    # ---- plain-array round trip ----------------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, FloatArray], dict[str, Any]]:
        """Plain numpy arrays plus JSON-serialisable metadata (no pickle), for a file format.

        Returns
        -------
        arrays : dict[str, np.ndarray]
            ``f0_cents``, ``amplitude``, ``freq_cents``, ``noise_gain``, ``transient`` and, when
            present, ``phase`` (float64, shapes as the attributes).
        meta : dict
            Scalars (``json.dumps``-able), including ``"version"``.
        """
        arrays = {name: np.array(getattr(self, name)) for name in _ARRAY_FIELDS if getattr(self, name) is not None}
        meta: dict[str, Any] = {"version": MODEL_VERSION}
        for name in _META_FIELDS:
            v = getattr(self, name)
            meta[name] = v.item() if isinstance(v, np.generic) else v
        json.dumps(meta)  # fail here, not in a writer, if anything is not JSON-able
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> NoteModel:
        """Rebuild a model from :meth:`to_arrays` output.

        Raises
        ------
        calyx.errors.FormatError
            For a missing field, an unknown version or inconsistent shapes.
        """
        version = meta.get("version")
        if version != MODEL_VERSION:
            raise FormatError(f"note model version {version!r} is not supported (this reader knows {MODEL_VERSION})")
        missing = [n for n in _META_FIELDS if n not in meta] + [
            n for n in _ARRAY_FIELDS if n != "phase" and n not in arrays
        ]
        if missing:
            raise FormatError(f"note model is missing field(s) {missing}")
        kwargs: dict[str, Any] = {n: meta[n] for n in _META_FIELDS}
        kwargs.update({n: np.asarray(arrays[n], dtype=np.float64) for n in _ARRAY_FIELDS if n in arrays})
        for n in ("n_samples", "hop_length", "onset_sample", "noise_n_fft", "noise_seed", "transient_start",
                  "transient_fade_in", "transient_fade_out"):
            kwargs[n] = int(kwargs[n])
        try:
            return cls(**kwargs)
        except ParameterError as exc:
            raise FormatError(f"inconsistent note model: {exc}") from exc
