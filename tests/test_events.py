"""The event codec: decoder, torch twin, encoder, bitstream and command line."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calyx.cli.main import main
from calyx.core.audio import read_audio, write_audio
from calyx.core.synthesis import oscillator_bank
from calyx.errors import FormatError, ParameterError
from calyx.events import EncoderSettings, decode, encode, from_bytes, load, quantise, save, to_bytes
from calyx.events._refine import RefineSettings
from calyx.events.bitstream import FORMAT_VERSION, MAGIC
from calyx.events.params import (
    EVENT_PARAMS,
    N_PARAMS,
    EventList,
    default_params,
    default_room,
    param_index,
)
from calyx.events.render import (
    damped_partials,
    event_lengths,
    render,
    render_event,
    render_events,
    window_length,
)

torch = pytest.importorskip("torch")

P = {p.name: i for i, p in enumerate(EVENT_PARAMS)}


def _note(pitch_midi: float, level_db: float = -20.0, **overrides: float) -> np.ndarray:
    row = default_params(1)[0]
    row[P["pitch_midi"]] = pitch_midi
    row[P["inharmonicity_log10"]] = -3.7
    row[P["level_db"]] = level_db
    row[P["tilt_db_per_octave"]] = -9.0
    row[P["t60_log10_s_100"] : P["t60_log10_s_6400"] + 1] = [0.6, 0.4, 0.1, -0.3]
    row[P["aftersound_db"]] = -20.0
    row[P["duration_s"]] = 0.3
    row[P["release_t60_log10_s"]] = -1.0
    row[P["noise_level_db"]] = level_db - 40.0
    for name, value in overrides.items():
        row[P[name]] = value
    return row


def _synthetic(sample_rate: int, seed: int = 3) -> tuple[EventList, np.ndarray]:
    """Single notes and two two-note chords, rendered by the decoder itself."""
    rng = np.random.default_rng(seed)
    layout = [(0.10, [48.0]), (0.45, [60.0, 67.0]), (0.80, [55.0]), (1.15, [64.0, 52.0]), (1.50, [70.0])]
    rows, times = [], []
    for t, pitches in layout:
        for pitch in pitches:
            row = _note(pitch + rng.uniform(-0.3, 0.3), level_db=rng.uniform(-24.0, -18.0))
            row[P["shape_1"] : P["shape_12"] + 1] = rng.normal(0.0, 2.0, 12)
            rows.append(row)
            times.append(t + rng.uniform(0.0, 0.002))
    events = EventList(np.array(times), np.array(rows), default_room(), sample_rate, int(2.0 * sample_rate))
    return events, render(events)


# --------------------------------------------------------------------------------------------------
# Decoder


def test_damped_partials_equals_the_core_oscillator_bank() -> None:
    sr = 16000
    n = 3000
    amp = np.array([0.5, 0.2, 0.05])
    freq = np.array([220.0, 661.0, 1500.0])
    rate = np.array([3.0, 8.0, 20.0])
    start_s = 0.37 / sr
    t = start_s + np.arange(n) / sr
    envelopes = amp[:, None] * np.exp(-rate[:, None] * t[None, :])
    # oscillator_bank advances the phase before the first sample: start one step back
    phase0 = 2 * np.pi * freq * start_s - 2 * np.pi * freq / sr
    expected, _ = oscillator_bank(np.repeat(freq[:, None], n, axis=1), envelopes, sample_rate=sr,
                                  initial_phase=phase0)
    got = damped_partials(amp, freq, rate, n_samples=n, sample_rate=sr, start_s=start_s)
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_event_window_holds_the_event_until_minus_60_db() -> None:
    sr = 16000
    row = _note(57.0, duration_s=0.2)
    n = int(event_lengths(row[None, :], sample_rate=sr)[0])
    assert n == window_length(n)
    long = render_event(row, sample_rate=sr, n_samples=4 * n)
    peak = np.max(np.abs(long))
    assert np.max(np.abs(long[n:])) < 1e-3 * peak
    np.testing.assert_allclose(render_event(row, sample_rate=sr), long[:n], atol=1e-12)


def test_sub_sample_placement_is_a_time_shift() -> None:
    sr = 16000
    row = _note(60.0)
    a = render_events(np.array([0.01]), row[None, :], sample_rate=sr, n_samples=2000)
    b = render_events(np.array([0.01 + 0.5 / sr]), row[None, :], sample_rate=sr, n_samples=2000)
    # half a sample later: the zero crossing of the fundamental moves by half a sample
    spec_a = np.fft.rfft(a[200:1800])
    spec_b = np.fft.rfft(b[200:1800])
    k = int(np.argmax(np.abs(spec_a)))
    shift = np.angle(spec_a[k] / spec_b[k]) / (2 * np.pi * k / 1600)
    assert shift == pytest.approx(0.5, abs=0.02)


def test_level_is_the_root_sum_square_of_partial_amplitudes() -> None:
    sr = 32000
    row = _note(45.0, level_db=-12.0, aftersound_db=-80.0, attack_log10_s=-4.0, noise_level_db=-140.0)
    row[P["t60_log10_s_100"] : P["t60_log10_s_6400"] + 1] = 1.5  # every partial: T60 = 31.6 s
    y = render_event(row, sample_rate=sr, n_samples=8192)
    # the mean power of a sum of sinusoids is sum(a_k^2) / 2, here times the mean of the decay
    t = np.arange(64, 8064) / sr
    decay = np.mean(np.exp(-2.0 * np.log(1000.0) / 10**1.5 * t))
    power = np.mean(y[64:8064] ** 2)
    assert 10 * np.log10(2 * power / decay) == pytest.approx(-12.0, abs=0.05)


def test_event_list_rejects_inconsistent_shapes() -> None:
    with pytest.raises(ParameterError, match="times"):
        EventList(np.zeros(2), default_params(3), default_room(), 16000, 100)
    with pytest.raises(ParameterError, match="room"):
        EventList(np.zeros(1), default_params(1), np.zeros(3), 16000, 100)


def test_event_list_helpers() -> None:
    ev = EventList(np.array([0.5]), _note(69.0)[None, :], default_room(), 16000, 16000)
    assert ev.f0_hz[0] == pytest.approx(440.0)
    assert ev.level_db[0] == pytest.approx(-20.0)
    _, offsets, _ = ev.to_notes()
    assert offsets[0] == pytest.approx(0.8)
    assert len(ev.subset(np.array([False]))) == 0


# --------------------------------------------------------------------------------------------------
# The torch twin


def _torch_case(sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times = np.array([0.0123, 0.05 + 0.37 / sr, 0.0])
    params = np.stack([
        _note(57.3, duration_s=0.08, noise_level_db=-50.0),
        _note(64.1, level_db=-26.0, aftersound_db=-6.0, duration_s=0.05),
        _note(40.0, level_db=-30.0, duration_s=0.03, attack_log10_s=-2.5),
    ])
    room = default_room()
    room[0] = -20.0
    room[1:] = [-1.03, -1.11, -1.27, -1.49]  # (impulse-response lengths away from whole samples)
    return times, params, room


def test_torch_renderer_matches_numpy_in_float64() -> None:
    from calyx.events.torch_render import render_t

    sr = 16000
    times, params, room = _torch_case(sr)
    n = 6000
    expected = render(EventList(times, params, room, sr, n))
    got = render_t(torch.tensor(times), torch.tensor(params), torch.tensor(room), sample_rate=sr, n_samples=n)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-10 * np.max(np.abs(expected)))


def test_torch_renderer_gradcheck() -> None:
    from calyx.events.torch_render import render_t

    sr = 4000
    times, params, room = _torch_case(sr)
    params = params[:2]
    times = times[:2]
    n = 600
    lengths = event_lengths(params, sample_rate=sr)
    t = torch.tensor(times, requires_grad=True)
    p = torch.tensor(params, requires_grad=True)
    r = torch.tensor(room, requires_grad=True)
    probe = torch.tensor(np.random.default_rng(0).standard_normal(n))

    def f(t_: Any, p_: Any, r_: Any) -> Any:
        y = render_t(t_, p_, r_, sample_rate=sr, n_samples=n, lengths=lengths)
        return torch.stack([torch.dot(y, probe), torch.sum(y**2)])

    assert torch.autograd.gradcheck(f, (t, p, r), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


# --------------------------------------------------------------------------------------------------
# Encoder


@pytest.fixture(scope="module")
def synthetic_encoding() -> tuple[EventList, EventList, np.ndarray]:
    truth, y = _synthetic(44100)
    events = encode(y, sample_rate=44100, settings=EncoderSettings(refine=RefineSettings(n_iter=25)))
    return truth, events, y


def test_encoder_recovers_synthetic_events(synthetic_encoding: tuple[EventList, EventList, np.ndarray]) -> None:
    truth, events, _ = synthetic_encoding
    for t, pitch in zip(truth.times_s, truth.pitch_midi, strict=True):
        near = np.abs(events.times_s - t) < 0.005
        cents = np.abs(events.pitch_midi[near] - pitch) * 100.0
        assert near.any() and np.min(cents) < 10.0, f"event at {t:.4f} s, pitch {pitch:.2f} not recovered"
    # no more than one stray event per two true ones
    assert len(events) <= 1.5 * len(truth)


def test_encoder_output_sounds_like_the_input(synthetic_encoding: tuple[EventList, EventList, np.ndarray]) -> None:
    from calyx.metrics import lmd

    _, events, y = synthetic_encoding
    assert lmd(y, decode(events), sample_rate=44100) < 0.2


def test_encode_is_deterministic_and_quantised() -> None:
    sr = 16000
    events = EventList(np.array([0.05, 0.3]), np.stack([_note(55.0), _note(62.0)]), default_room(), sr,
                       int(0.7 * sr))
    y = render(events)
    fast = EncoderSettings(refine=RefineSettings(n_iter=5))
    a = encode(y, sample_rate=sr, settings=fast)
    b = encode(y, sample_rate=sr, settings=fast)
    assert to_bytes(a) == to_bytes(b)
    again = from_bytes(to_bytes(a))
    np.testing.assert_array_equal(again.params, a.params)
    np.testing.assert_array_equal(again.times_s, a.times_s)


def test_encode_respects_max_events_and_kbps() -> None:
    _, y = _synthetic(16000, seed=5)
    fast = EncoderSettings(refine=RefineSettings(n_iter=3))
    assert len(encode(y, sample_rate=16000, max_events=3, settings=fast)) <= 3
    full = encode(y, sample_rate=16000, settings=fast)
    small = encode(y, sample_rate=16000, kbps=1.0, settings=fast)
    assert 8 * len(to_bytes(small)) / 2.0 / 1000.0 <= 1.0 < 8 * len(to_bytes(full)) / 2.0 / 1000.0
    assert 0 < len(small) < len(full)
    with pytest.raises(ParameterError, match="empty event file"):
        encode(y, sample_rate=16000, kbps=0.1, settings=fast)


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(ParameterError, match="NaN"):
        encode(np.array([0.0, np.nan, 0.0]), sample_rate=16000)
    with pytest.raises(ParameterError, match="kbps"):
        encode(np.zeros(100), sample_rate=16000, kbps=-1.0)


# --------------------------------------------------------------------------------------------------
# Bitstream


def _some_events(n: int = 7, seed: int = 0) -> EventList:
    rng = np.random.default_rng(seed)
    lo = np.array([p.low for p in EVENT_PARAMS])
    hi = np.array([p.high for p in EVENT_PARAMS])
    params = lo + (hi - lo) * rng.random((n, N_PARAMS))
    room = default_room()
    room[0] = -30.0
    return EventList(np.sort(rng.uniform(0, 2.0, n)), params, room, 22050, 44100)


def test_bitstream_round_trip_is_exact_at_the_quantised_values() -> None:
    q = quantise(_some_events())
    back = from_bytes(to_bytes(q))
    np.testing.assert_array_equal(back.times_s, q.times_s)
    np.testing.assert_array_equal(back.params, q.params)
    np.testing.assert_array_equal(back.room, q.room)
    assert (back.sample_rate, back.n_samples) == (22050, 44100)
    # quantisation steps as documented
    err = np.abs(_some_events().sorted().params - q.params)
    steps = np.array([p.step for p in EVENT_PARAMS])
    assert np.all(err <= steps / 2 + 1e-9)


def test_bitstream_of_no_events() -> None:
    empty = EventList(np.zeros(0), np.zeros((0, N_PARAMS)), default_room(), 16000, 0)
    back = from_bytes(to_bytes(empty))
    assert len(back) == 0 and back.n_samples == 0


def test_truncated_files_are_rejected() -> None:
    data = to_bytes(_some_events())
    for n in range(len(data)):
        with pytest.raises(FormatError):
            from_bytes(data[:n])


def test_corrupted_bytes_are_rejected() -> None:
    data = to_bytes(_some_events())
    for i in range(len(data)):
        broken = bytearray(data)
        broken[i] ^= 0x41
        with pytest.raises(FormatError):
            from_bytes(bytes(broken))


def test_future_version_is_rejected_by_name() -> None:
    data = bytearray(to_bytes(_some_events()))
    data[len(MAGIC)] = FORMAT_VERSION + 1
    with pytest.raises(FormatError, match="newer"):
        from_bytes(bytes(data))
    with pytest.raises(FormatError, match="not a Calyx event file"):
        from_bytes(b"RIFF" + bytes(data[4:]))


def test_unknown_chunks_are_skipped() -> None:
    data = to_bytes(_some_events())
    end = data.rindex(b"END ")
    payload = b"anything a later version adds"
    extra = b"XTRA" + struct.pack("<I", len(payload)) + payload + struct.pack("<I", zlib.crc32(b"XTRA" + payload))
    back = from_bytes(data[:end] + extra + data[end:])
    np.testing.assert_array_equal(back.params, from_bytes(data).params)


def test_huge_declared_lengths_do_not_allocate() -> None:
    data = bytearray(to_bytes(_some_events()))
    # the first chunk length field follows magic, version, header length, header and its CRC
    (hlen,) = struct.unpack("<I", data[5:9])
    pos = 9 + hlen + 4 + 4
    data[pos : pos + 4] = struct.pack("<I", 0xFFFFFFF0)
    with pytest.raises(FormatError, match="claims"):
        from_bytes(bytes(data))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_files_raise_only_format_errors(data: st.DataObject) -> None:
    clean = to_bytes(_some_events(n=data.draw(st.integers(0, 5))))
    blob = bytearray(clean)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    candidate = bytes(blob[:cut]) if data.draw(st.booleans()) else bytes(blob)
    try:
        events = from_bytes(candidate)
    except FormatError:
        return
    assert candidate == clean or len(events) >= 0


def test_save_refuses_to_overwrite_and_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.cxe"
    ev = _some_events()
    save(ev, path)
    with pytest.raises(FileExistsError):
        save(ev, path)
    save(ev, path, force=True)
    assert np.array_equal(load(path).params, quantise(ev).params)
    bad = tmp_path / "bad.cxe"
    bad.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(FormatError, match=r"bad\.cxe"):
        load(bad)


# --------------------------------------------------------------------------------------------------
# Command line


def test_cli_encode_decode_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sr = 16000
    events = EventList(np.array([0.05]), _note(57.0)[None, :], default_room(), sr, int(0.4 * sr))
    wav = tmp_path / "in.wav"
    write_audio(wav, render(events), sample_rate=sr)
    cxe = tmp_path / "out.cxe"
    assert main(["events", "encode", str(wav), "-o", str(cxe), "--max-events", "4"]) == 0
    assert cxe.is_file()
    before = cxe.read_bytes()
    assert main(["events", "encode", str(wav), "-o", str(cxe)]) == 2
    assert "exists" in capsys.readouterr().err
    assert cxe.read_bytes() == before
    out_wav = tmp_path / "out.wav"
    assert main(["events", "decode", str(cxe), "-o", str(out_wav)]) == 0
    y, sr_out = read_audio(out_wav)
    assert sr_out == sr and y.shape == (1, int(0.4 * sr))
    assert main(["events", "decode", str(cxe), "-o", str(out_wav)]) == 2
    assert main(["events", "decode", str(cxe), "-o", str(out_wav), "--force"]) == 0
    capsys.readouterr()
    assert main(["events", "show", str(cxe)]) == 0
    table = capsys.readouterr().out
    assert "A3" in table and "f0_hz" in table
    assert main(["events", "show", str(cxe), "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["n_events"] >= 1
    assert abs(doc["events"][0]["pitch_midi"] - 57.0) < 0.1
    broken = tmp_path / "broken.cxe"
    broken.write_bytes(before[:10])
    assert main(["events", "show", str(broken)]) == 2
    assert "truncated" in capsys.readouterr().err


def test_param_index_names_the_unknown() -> None:
    assert param_index("pitch_midi") == 0
    with pytest.raises(ParameterError, match="unknown"):
        param_index("loudness")
