"""Parameters of the per-note analysis, as one frozen, picklable value."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from calyx.errors import ParameterError

__all__ = ["DEFAULT_HOP_S", "AnalysisParams", "AnalysisWarning", "resolve_params"]

#: Default frame period: 256 samples at 44.1 kHz (about 5.8 ms), scaled to other rates.
DEFAULT_HOP_S = 256.0 / 44100.0
#: Default FFT size of the noise model: 1024 samples at 44.1 kHz, scaled (power of two) to other rates.
DEFAULT_NOISE_FFT_S = 1024.0 / 44100.0


class AnalysisWarning(UserWarning):
    """The analysis met a note it can only model partly (unpitched, clipped, pitch prior overruled)."""


@dataclass(frozen=True)
class AnalysisParams:
    """Settings of :func:`calyx.analysis.analyze_note`; every field has a measured default.

    Frozen and made of plain values, so it pickles to process pools and Dask workers. The figures
    quoted below are duration-weighted log-mel distances (LMD) of the resynthesis on 19 notes of
    the development piano (MuseScore General Grand Piano, both dynamics) with the defaults otherwise.

    Attributes
    ----------
    n_partials : int
        Largest number of harmonic partials tracked; fewer when partials would pass ``fmax_hz``.
        (32 partials cost +0.01 LMD on 6 of the notes; 96 or 128 gain nothing measurable.)
    hop_length : int or None
        Frame advance of the model in samples; ``None`` gives 256 samples at 44.1 kHz, the same
        frame period (about 5.8 ms) at other rates. (512 samples cost about +0.001 LMD.)
    fmax_hz : float
        Partials above this frequency (or above 0.95 x Nyquist) are left to the noise model.
    window_periods : float
        Length of the partial-tracking window in periods of f0 (a Hann window), clipped to
        ``[min_window_s, max_window_s]``. Three periods measured best (2.5, 4 and 6 are worse):
        time resolution matters more than the last bit of separation between partials.
    min_window_s, max_window_s : float
        Bounds of the partial-tracking window, in seconds.
    f0_search_cents : float
        Half-width of the f0 search around the nominal pitch (``pitch_midi``), in cents.
    max_inharmonicity : float
        Largest inharmonicity coefficient ``B`` considered (``f_k = k f0 sqrt(1 + B k^2)``).
    harmonicity_threshold : float
        Share of the note's spectral energy (0..1) that the harmonic partials must explain; below it
        the note is treated as unpitched (noise and transient only) and an
        :class:`AnalysisWarning` is issued.
    n_noise_bands : int
        Number of ERB-spaced bands of the noise model (LMD keeps falling with more bands:
        32 -> 48 -> 64 -> 96 -> 128 gave 0.074, 0.070, 0.067, 0.065, 0.064 on 6 notes).
    noise_fmin_hz : float
        Lower edge of the first noise band above 0 Hz (see :func:`calyx.core.synthesis.band_edges_hz`).
    noise_n_fft : int or None
        FFT size of the noise analysis and synthesis; ``None`` gives 1024 samples at 44.1 kHz
        (512 and 2048 are both worse).
    noise_smoothing_frames : int
        Length (frames) of the moving average applied to the noise band energies over time, to
        lower the variance of the estimate; 1 (the default, measured best) disables it.
    transient_s : float
        Length of the attack kept as a waveform (the residual after the harmonic model, from the
        onset), in seconds; 0 models the attack with partials and noise only. Kept beats modelled:
        0 / 0.05 / 0.1 s give LMD 0.0667 / 0.0658 / 0.0651 over whole notes and 0.111 / 0.089 /
        0.073 over their first 0.3 s.
    transient_fade_s : float
        Raised-cosine fade at the end of the kept attack, in seconds (inside ``transient_s``).
    stereo : str
        ``"channels"`` models each channel separately; ``"mid_side"`` models mid and side signals
        (0.071 against 0.066, and far worse when a renderer drops the phases).
    noise_seed : int
        Seed of the noise generator used by the synthesis (stored in the model).
    silence_threshold : float
        A note whose absolute peak is at or below this value is rejected as silent.
    """

    n_partials: int = 64
    hop_length: int | None = None
    fmax_hz: float = 20000.0
    window_periods: float = 3.0
    min_window_s: float = 0.02
    max_window_s: float = 0.08
    f0_search_cents: float = 100.0
    max_inharmonicity: float = 0.05
    harmonicity_threshold: float = 0.5
    n_noise_bands: int = 64
    noise_fmin_hz: float = 20.0
    noise_n_fft: int | None = None
    noise_smoothing_frames: int = 1
    transient_s: float = 0.05
    transient_fade_s: float = 0.02
    stereo: str = "channels"
    noise_seed: int = 0
    silence_threshold: float = 1e-7

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.n_partials >= 0, f"n_partials must be >= 0, got {self.n_partials}"),
            (
                self.hop_length is None or self.hop_length >= 1,
                f"hop_length must be >= 1 or None, got {self.hop_length}",
            ),
            (self.fmax_hz > 0, f"fmax_hz must be > 0, got {self.fmax_hz}"),
            (self.window_periods >= 2.0, f"window_periods must be >= 2, got {self.window_periods}"),
            (
                0 < self.min_window_s <= self.max_window_s,
                f"need 0 < min_window_s <= max_window_s, got {self.min_window_s}, {self.max_window_s}",
            ),
            (
                0 < self.f0_search_cents <= 600,
                f"f0_search_cents must be in (0, 600], got {self.f0_search_cents}",
            ),
            (
                0 <= self.max_inharmonicity <= 1,
                f"max_inharmonicity must be in [0, 1], got {self.max_inharmonicity}",
            ),
            (
                0 <= self.harmonicity_threshold < 1,
                f"harmonicity_threshold must be in [0, 1), got {self.harmonicity_threshold}",
            ),
            (self.n_noise_bands >= 1, f"n_noise_bands must be >= 1, got {self.n_noise_bands}"),
            (self.noise_fmin_hz > 0, f"noise_fmin_hz must be > 0, got {self.noise_fmin_hz}"),
            (
                self.noise_n_fft is None or self.noise_n_fft >= 16,
                f"noise_n_fft must be >= 16 or None, got {self.noise_n_fft}",
            ),
            (
                self.noise_smoothing_frames >= 1,
                f"noise_smoothing_frames must be >= 1, got {self.noise_smoothing_frames}",
            ),
            (self.transient_s >= 0, f"transient_s must be >= 0, got {self.transient_s}"),
            (
                0 <= self.transient_fade_s and (self.transient_s == 0 or self.transient_fade_s <= self.transient_s),
                f"transient_fade_s must be in [0, transient_s], got {self.transient_fade_s}",
            ),
            (
                self.stereo in ("channels", "mid_side"),
                f"stereo must be 'channels' or 'mid_side', got {self.stereo!r}",
            ),
            (self.silence_threshold >= 0, f"silence_threshold must be >= 0, got {self.silence_threshold}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ParameterError(message)
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ParameterError(f"{f.name} must be finite, got {v}")

    def hop_for(self, sample_rate: float) -> int:
        """Frame advance in samples at ``sample_rate``."""
        if self.hop_length is not None:
            return int(self.hop_length)
        return max(1, round(sample_rate * DEFAULT_HOP_S))

    def noise_fft_for(self, sample_rate: float) -> int:
        """FFT size of the noise model at ``sample_rate`` (a power of two by default)."""
        if self.noise_n_fft is not None:
            return int(self.noise_n_fft)
        return int(2 ** round(math.log2(sample_rate * DEFAULT_NOISE_FFT_S)))


def resolve_params(params: AnalysisParams | None, overrides: dict[str, Any]) -> AnalysisParams:
    """``params`` (or the defaults) with the keyword ``overrides`` applied; unknown names are an error."""
    base = AnalysisParams() if params is None else params
    if not isinstance(base, AnalysisParams):
        raise TypeError(f"params must be an AnalysisParams, got {type(base).__name__}")
    known = {f.name for f in fields(AnalysisParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ParameterError(f"unknown analysis parameter(s) {unknown}; valid names: {sorted(known)}")
    return replace(base, **overrides) if overrides else base
