"""Analysis of one recorded note into a :class:`NoteModel`, and the analysis/synthesis round trip."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calyx.analysis._onset import detect_onset
from calyx.analysis._params import AnalysisParams, AnalysisWarning, resolve_params
from calyx.analysis._pitch import estimate_pitch, midi_to_hz
from calyx.analysis._synthesize import render_harmonic, synthesize
from calyx.analysis._tracking import hann_transform, track_partials, tracking_window
from calyx.analysis.model import NoteModel, partial_ratios, transient_gate
from calyx.core.spectrum import hann_window, stft
from calyx.core.synthesis import band_edges_hz
from calyx.errors import ParameterError

__all__ = ["analyze_note", "harmonic_spectrum", "noise_band_gains", "roundtrip"]

FloatArray = NDArray[np.float64]

_CLIP_RUN = 3  # this many equal samples at the peak magnitude count as one clipped run
_TRANSIENT_PRE_ROLL_S = 0.002  # the kept attack starts at least this long before the onset
_WEAK_FRAME_DB = 60.0  # frames this far below the loudest one keep no f0 deviation of their own


def _is_real(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _as_signal(y: NDArray[np.floating], sample_rate: float) -> FloatArray:
    x = np.asarray(y, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] < 1:
        raise ParameterError(f"y must have shape (n_channels, n_samples) or (n_samples,), got {np.shape(y)}")
    if x.shape[1] < 2:
        raise ParameterError(f"y must have at least 2 samples, got {x.shape[1]}")
    if not np.all(np.isfinite(x)):
        raise ParameterError("y contains NaN or infinite samples")
    if not (_is_real(sample_rate) and math.isfinite(sample_rate) and sample_rate > 0):
        raise ParameterError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    return x


def _clipped_runs(x: FloatArray) -> int:
    """Number of runs of >= _CLIP_RUN consecutive samples sitting at the channel's peak magnitude."""
    runs = 0
    for ch in x:
        peak = np.max(np.abs(ch))
        if peak <= 0:
            continue
        at_peak = np.abs(ch) >= peak * (1.0 - 1e-9)
        if at_peak.sum() < _CLIP_RUN:
            continue
        edges = np.diff(np.concatenate([[0], at_peak.astype(np.int8), [0]]))
        starts, stops = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
        runs += int(np.sum(stops - starts >= _CLIP_RUN))
    return runs


def harmonic_spectrum(
    freq_hz: FloatArray,
    amplitude: FloatArray,
    phase: FloatArray,
    *,
    n_fft: int,
    sample_rate: float,
    n_bins_each_side: int = 4,
) -> NDArray[np.complex128]:
    """STFT of the partials, computed from their frame parameters instead of rendering them.

    Matches :func:`calyx.core.spectrum.stft` (periodic Hann, centred frames) of steady partials:
    bin ``b`` of a partial with amplitude ``A``, sine phase ``theta`` at the frame centre and
    frequency ``x`` bins is ``A / (2j) e^(j theta) (-1)^b W(b - x)`` plus the mirror image at
    ``-x``, where ``W`` is the window's real transform (:func:`hann_transform`); only the
    ``n_bins_each_side`` bins either side of ``x`` are filled.

    Parameters
    ----------
    freq_hz : np.ndarray [shape=(n_partials, n_frames)]
    amplitude, phase : np.ndarray [shape=(n_channels, n_partials, n_frames)]

    Returns
    -------
    np.ndarray [shape=(n_channels, 1 + n_fft // 2, n_frames)]
    """
    n_ch, n_partials, n_frames = amplitude.shape
    n_bins = 1 + n_fft // 2
    out = np.zeros((n_ch, n_bins * n_frames), dtype=np.complex128)
    if n_partials == 0:
        return out.reshape(n_ch, n_bins, n_frames)
    x = freq_hz * (n_fft / sample_rate)  # (K, T)
    width = n_bins_each_side
    offs = np.arange(-width, width + 1)
    table_step = 1.0 / 256.0
    table_x = np.arange(-(width + 1), width + 1 + table_step, table_step)
    table = hann_transform(table_x, period=n_fft, n_fft=n_fft)
    # (A / 2j) e^{j theta} = (A / 2) e^{j (theta - pi / 2)}: the positive-frequency image; the
    # mirror at -x is its conjugate
    coef = amplitude * 0.5 * np.exp(1j * (phase - 0.5 * np.pi))  # (C, K, T)
    audible = (x < n_fft / 2.0) & np.any(amplitude > 0.0, axis=0)
    for sign in (1.0, -1.0):
        near = audible if sign > 0 else audible & (x < width + 1)
        k_idx, t_sel = np.nonzero(near)
        if k_idx.size == 0:
            continue
        xs = sign * x[k_idx, t_sel]
        b = np.round(xs).astype(np.int64)[:, None] + offs  # (M, W)
        w = np.interp(b - xs[:, None], table_x, table) * np.where(b % 2 == 0, 1.0, -1.0)
        w[(b < 0) | (b >= n_bins)] = 0.0
        idx = (np.clip(b, 0, n_bins - 1) * n_frames + t_sel[:, None]).ravel()
        for c in range(n_ch):
            cc = coef[c, k_idx, t_sel]
            if sign < 0:
                cc = np.conj(cc)
            re = np.bincount(idx, weights=(cc.real[:, None] * w).ravel(), minlength=n_bins * n_frames)
            im = np.bincount(idx, weights=(cc.imag[:, None] * w).ravel(), minlength=n_bins * n_frames)
            out[c] += re + 1j * im
    return out.reshape(n_ch, n_bins, n_frames)


def noise_band_gains(
    power: FloatArray,
    *,
    band_edges: FloatArray,
    n_fft: int,
    sample_rate: float,
    smoothing_frames: int = 1,
) -> FloatArray:
    """RMS amplitude per band and frame, in the convention of :func:`calyx.core.synthesis.filtered_noise`.

    A band's gain is the RMS amplitude it contributes to the signal: with the power ``|R_k|^2``
    of a periodic-Hann STFT of ``n_fft`` points, ``g_b^2 = sum_{k in b} |R_k|^2 / (sum w^2 * n_bins)``.

    Parameters
    ----------
    power : np.ndarray [shape=(n_channels, 1 + n_fft // 2, n_frames)]
    band_edges : np.ndarray [shape=(n_bands + 1,)]

    Returns
    -------
    np.ndarray [shape=(n_channels, n_bands, n_frames)]
    """
    n_bands = band_edges.size - 1
    n_bins = power.shape[1]
    freqs = np.linspace(0.0, sample_rate / 2.0, n_bins)
    band_of_bin = np.clip(np.searchsorted(band_edges, freqs, side="right") - 1, 0, n_bands - 1)
    starts = np.searchsorted(band_of_bin, np.arange(n_bands))  # bands are runs of bins
    band_power = np.add.reduceat(power, np.minimum(starts, n_bins - 1), axis=1)
    band_power[:, np.bincount(band_of_bin, minlength=n_bands) == 0, :] = 0.0  # bands without bins
    win = hann_window(n_fft)
    band_power /= float(np.sum(win * win)) * n_bins
    if smoothing_frames > 1:
        kernel = np.ones(smoothing_frames) / smoothing_frames
        pad = smoothing_frames // 2
        padded = np.pad(band_power, ((0, 0), (0, 0), (pad, smoothing_frames - 1 - pad)), mode="edge")
        band_power = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), -1, padded)
    return np.sqrt(np.maximum(band_power, 0.0))


def _fill_f0_deviation(amplitude: FloatArray, f0_cents: FloatArray) -> FloatArray:
    """Frames with (almost) no harmonic energy take the f0 deviation of the nearest frame that has some.

    Their measured deviation is that of noise; holding the neighbour's value keeps the f0 track
    smooth (and compressible). The caller moves the difference into the partial deviations, so the
    partial frequencies do not change.
    """
    frame_power = np.sum(amplitude**2, axis=(0, 1))
    if frame_power.size == 0 or frame_power.max() <= 0.0:
        return np.zeros_like(f0_cents)
    valid = np.nonzero(frame_power > frame_power.max() * 10.0 ** (-_WEAK_FRAME_DB / 10.0))[0]
    return np.interp(np.arange(f0_cents.size), valid, f0_cents[valid])


def analyze_note(
    y: NDArray[np.floating],
    *,
    sample_rate: float,
    pitch_midi: float | None = None,
    params: AnalysisParams | None = None,
    **overrides: Any,
) -> NoteModel:
    """Analyse one recorded note into partials, noise and a kept attack.

    Parameters
    ----------
    y : np.ndarray [shape=(n_channels, n_samples) or (n_samples,)]
        The note, full scale +-1 (float64; other float types are converted).
    sample_rate : float
        Hz.
    pitch_midi : float, optional
        Nominal pitch (a library sample's root key, fractional MIDI, 69 = A4 = 440 Hz). f0 is
        searched within ``params.f0_search_cents`` of it; another octave is taken only when it
        explains the spectrum clearly better, and when nothing near it is harmonic the search runs
        without it (both with an :class:`AnalysisWarning`). Without it, f0 is estimated from 25 Hz
        to 4.5 kHz.
    params : AnalysisParams, optional
        All settings; defaults when omitted.
    **overrides
        Any :class:`AnalysisParams` field (``n_partials=32``, ``hop_length=512``, ...), applied on
        top of ``params``.

    Returns
    -------
    NoteModel

    Raises
    ------
    calyx.errors.ParameterError
        For a malformed signal or parameter, and for a silent note (peak at or below
        ``params.silence_threshold``): there is nothing to model.

    Warns
    -----
    AnalysisWarning
        When the note is unpitched (harmonicity below ``params.harmonicity_threshold``: it is then
        modelled by noise and the kept attack alone, with no partials), when it is clipped (runs of
        samples at the peak magnitude; it is modelled as recorded, distortion included), and when
        the f0 found lies in another octave than ``pitch_midi`` or away from it.
    """
    p = resolve_params(params, overrides)
    x = _as_signal(y, sample_rate)
    sr = float(sample_rate)
    if pitch_midi is not None and not (_is_real(pitch_midi) and math.isfinite(pitch_midi)):
        raise ParameterError(f"pitch_midi must be a finite MIDI number or None, got {pitch_midi!r}")
    peak = float(np.max(np.abs(x)))
    if peak <= p.silence_threshold:
        raise ParameterError(
            f"the note is silent (peak {peak:.3g} <= silence_threshold {p.silence_threshold:.3g}); "
            "there is nothing to model: skip it, or lower silence_threshold for a very quiet recording"
        )
    n_ch, n = x.shape
    runs = _clipped_runs(x)
    if runs:
        warnings.warn(
            f"the note looks clipped ({runs} run(s) of >= {_CLIP_RUN} samples at the peak magnitude "
            f"{peak:.4g}); it is modelled as recorded, distortion included",
            AnalysisWarning,
            stacklevel=2,
        )
    if p.stereo == "mid_side" and n_ch == 2:
        work = np.stack([0.5 * (x[0] + x[1]), 0.5 * (x[0] - x[1])])
        layout = "mid_side"
    else:
        work = x
        layout = "channels"
    hop = p.hop_for(sr)
    n_frames = n // hop + 1
    onset = detect_onset(x, sample_rate=sr)

    est = estimate_pitch(
        x,
        sample_rate=sr,
        onset_sample=onset,
        pitch_midi=pitch_midi,
        search_cents=p.f0_search_cents,
        max_inharmonicity=p.max_inharmonicity,
        fmax_hz=p.fmax_hz,
    )
    if pitch_midi is not None and est.harmonicity < p.harmonicity_threshold:
        # the nominal pitch may be wrong by more than an octave's worth of search: look everywhere
        free = estimate_pitch(
            x,
            sample_rate=sr,
            onset_sample=onset,
            search_cents=p.f0_search_cents,
            max_inharmonicity=p.max_inharmonicity,
            fmax_hz=p.fmax_hz,
        )
        if free.harmonicity >= p.harmonicity_threshold:
            warnings.warn(
                f"the note does not fit its nominal pitch {pitch_midi} ({midi_to_hz(pitch_midi):.2f} Hz); "
                f"f0 {free.f0_hz:.2f} Hz was found without it",
                AnalysisWarning,
                stacklevel=2,
            )
            est = free
    f_limit = min(p.fmax_hz, 0.95 * sr / 2.0)
    harmonic = est.f0_hz > 0 and est.harmonicity >= p.harmonicity_threshold
    if not harmonic:
        warnings.warn(
            f"the note is not harmonic enough to track partials (harmonicity {est.harmonicity:.2f} < "
            f"{p.harmonicity_threshold:.2f}); it is modelled by noise and the kept attack only",
            AnalysisWarning,
            stacklevel=2,
        )
    elif pitch_midi is not None and est.octave_shift != 0:
        warnings.warn(
            f"f0 {est.f0_hz:.2f} Hz is {est.octave_shift:+d} octave(s) from the nominal pitch "
            f"{pitch_midi} ({midi_to_hz(pitch_midi):.2f} Hz); the spectrum fits it clearly better",
            AnalysisWarning,
            stacklevel=2,
        )
    if harmonic:
        ratios = partial_ratios(p.n_partials, est.inharmonicity)
        n_partials = int(np.sum(ratios * est.f0_hz < f_limit))
    else:
        n_partials = 0

    if n_partials:
        window_length, n_fft = tracking_window(
            f0_hz=est.f0_hz,
            sample_rate=sr,
            window_periods=p.window_periods,
            min_window_s=p.min_window_s,
            max_window_s=p.max_window_s,
        )
        tracks = track_partials(
            work,
            sample_rate=sr,
            f0_hz=est.f0_hz,
            inharmonicity=est.inharmonicity,
            n_partials=n_partials,
            hop_length=hop,
            window_length=window_length,
            n_fft=n_fft,
        )
        amplitude, phase = tracks.amplitude, tracks.phase
        f0_cents, freq_cents = tracks.f0_cents, tracks.freq_cents
        # the partials are silent before the onset (the last frame before it keeps its value so
        # that the interpolated amplitude rises across the onset)
        amplitude[..., : max(0, (onset - 1) // hop)] = 0.0
        filled = _fill_f0_deviation(amplitude, f0_cents)
        freq_cents = freq_cents + (f0_cents - filled)[None, :]  # the partial frequencies stay as measured
        f0_cents = filled
    else:
        amplitude = np.zeros((n_ch, 0, n_frames))
        phase = np.zeros((n_ch, 0, n_frames))
        f0_cents = np.zeros(n_frames)
        freq_cents = np.zeros((0, n_frames))
    freq = partial_ratios(n_partials, est.inharmonicity if harmonic else 0.0)[:, None] * est.f0_hz
    freq = freq * 2.0 ** ((f0_cents[None, :] + freq_cents) / 1200.0)

    # noise: band energies of what the partials leave, computed in the STFT domain
    noise_n_fft = p.noise_fft_for(sr)
    spec = stft(work, n_fft=noise_n_fft, hop_length=hop)[..., :n_frames]
    spec -= harmonic_spectrum(freq, amplitude, phase, n_fft=noise_n_fft, sample_rate=sr)
    edges = band_edges_hz(n_bands=p.n_noise_bands, sample_rate=sr, fmin_hz=p.noise_fmin_hz)
    noise_gain = noise_band_gains(
        spec.real**2 + spec.imag**2,
        band_edges=edges,
        n_fft=noise_n_fft,
        sample_rate=sr,
        smoothing_frames=p.noise_smoothing_frames,
    )

    # kept attack: the waveform residual around the onset, gated
    n_tr = round(p.transient_s * sr)
    if n_tr > 0:
        start = max(0, onset - max(round(_TRANSIENT_PRE_ROLL_S * sr), noise_n_fft // 2))
        stop = min(n, onset + n_tr)
        fade_in = onset - start
        fade_out = min(round(p.transient_fade_s * sr), stop - onset)
        t_a = start // hop
        t_b = min(n_frames, stop // hop + 2)
        seg0 = t_a * hop
        seg_len = stop - seg0
        part = np.zeros((n_ch, seg_len))
        if n_partials:
            for c in range(n_ch):
                part[c] = render_harmonic(
                    freq[:, t_a:t_b],
                    amplitude[c][:, t_a:t_b],
                    phase=phase[c][:, t_a:t_b],
                    hop_length=hop,
                    n_samples=seg_len,
                    sample_rate=sr,
                )
            part[:, : max(0, onset - seg0)] = 0.0
        gate = transient_gate(stop - start, fade_in=fade_in, fade_out=fade_out)
        transient = (work[:, start:stop] - part[:, start - seg0 :]) * gate
    else:
        start, fade_in, fade_out = 0, 0, 0
        transient = np.zeros((n_ch, 0))

    return NoteModel(
        sample_rate=sr,
        n_samples=n,
        hop_length=hop,
        onset_sample=onset,
        f0_hz=float(est.f0_hz) if harmonic else (midi_to_hz(pitch_midi) if pitch_midi is not None else 0.0),
        inharmonicity=float(est.inharmonicity) if harmonic else 0.0,
        f0_cents=f0_cents,
        amplitude=amplitude,
        freq_cents=freq_cents,
        phase=phase,
        noise_gain=noise_gain,
        noise_fmin_hz=p.noise_fmin_hz,
        noise_n_fft=noise_n_fft,
        noise_seed=p.noise_seed,
        transient=transient,
        transient_start=start,
        transient_fade_in=fade_in,
        transient_fade_out=fade_out,
        stereo=layout,
        pitch_midi=None if pitch_midi is None else float(pitch_midi),
        harmonicity=float(est.harmonicity),
    )


def roundtrip(
    y: NDArray[np.floating],
    *,
    sample_rate: float,
    pitch_midi: float | None = None,
    params: AnalysisParams | None = None,
    **overrides: Any,
) -> tuple[NoteModel, FloatArray]:
    """Analyse and resynthesise a note: ``(model, resynthesis)``.

    The resynthesis has the input's shape ``(n_channels, n_samples)`` and is time-aligned with it.
    Arguments as :func:`analyze_note`.
    """
    model = analyze_note(y, sample_rate=sample_rate, pitch_midi=pitch_midi, params=params, **overrides)
    return model, synthesize(model)
