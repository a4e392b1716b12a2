"""SoundFont 2/3 import: files built byte by byte in the test, then read back."""

from __future__ import annotations

import io
import pickle
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from calyx.errors import AudioFileError, ParameterError
from calyx.io import list_presets, load_library, read_sf2, read_sf2_info
from calyx.io._sf2_spec import GEN, INST, PHDR, SHDR, Generator, SampleType

RATE_HZ = 22050
MUSESCORE = Path("/usr/share/sounds/sf2/MuseScore_General_Full.sf2")


# --- a tiny SoundFont writer ------------------------------------------------------------------------


def midi_to_hz(pitch_midi: float) -> float:
    return 440.0 * 2.0 ** ((pitch_midi - 69.0) / 12.0)


def sine(
    pitch_midi: float, *, amplitude: float = 0.5, n_samples: int = RATE_HZ, rate_hz: int = RATE_HZ
) -> np.ndarray:
    t = np.arange(n_samples) / rate_hz
    return amplitude * np.sin(2 * np.pi * midi_to_hz(pitch_midi) * t)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.round(x * 32767).astype("<i2")


def rng_(lo: int, hi: int) -> int:
    """Amount of a key/velocity range generator."""
    return lo | (hi << 8)


def s16(value: int) -> int:
    """Amount of a signed generator."""
    return value & 0xFFFF


@dataclass
class Sample:
    name: str
    data: np.ndarray | bytes  # int16 points, or an Ogg Vorbis blob (SF3)
    root: int = 60
    correction: int = 0
    link: int = 0
    kind: int = SampleType.MONO
    loop: tuple[int, int] = (0, 0)  # relative to the sample's start
    rate_hz: int = RATE_HZ


@dataclass
class Bank:
    samples: list[Sample] = field(default_factory=list)
    instruments: list[tuple[str, list[list[tuple[int, int]]]]] = field(default_factory=list)
    presets: list[tuple[str, int, int, list[list[tuple[int, int]]]]] = field(default_factory=list)
    version: tuple[int, int] = (2, 1)
    sm24: bool = False
    sm24_bytes: bytes = b""


def chunk(cid: bytes, data: bytes) -> bytes:
    return cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def riff_list(kind: bytes, chunks: list[bytes]) -> bytes:
    return chunk(b"LIST", kind + b"".join(chunks))


def zone_tables(zones_by_owner: list[list[list[tuple[int, int]]]]) -> tuple[bytes, bytes, list[int]]:
    bags, gens, first_bag = [], [], []
    n_gens = 0
    for zones in zones_by_owner:
        first_bag.append(len(bags))
        for zone in zones:
            bags.append(struct.pack("<HH", n_gens, 0))
            for oper, amount in zone:
                gens.append(GEN.pack(oper, amount))
                n_gens += 1
    first_bag.append(len(bags))
    bags.append(struct.pack("<HH", n_gens, 0))
    gens.append(GEN.pack(0, 0))
    return b"".join(bags), b"".join(gens), first_bag


def build(bank: Bank, *, compressed: bool = False) -> bytes:
    smpl = bytearray()
    headers = []
    for s in bank.samples:
        if compressed:
            assert isinstance(s.data, bytes)
            start = len(smpl)
            smpl += s.data
            end = len(smpl)
            loop = s.loop  # SF3: loop points count decoded frames from the sample's start
            kind = s.kind | SampleType.OGG_VORBIS
        else:
            assert isinstance(s.data, np.ndarray)
            start = len(smpl) // 2
            smpl += s.data.astype("<i2").tobytes()
            end = len(smpl) // 2
            smpl += b"\0" * 92  # 46 zero points after each sample, as the specification asks
            loop = (start + s.loop[0], start + s.loop[1])
            kind = s.kind
        headers.append(
            SHDR.pack(
                s.name.encode(), start, end, loop[0], loop[1], s.rate_hz, s.root, s.correction, s.link, kind
            )
        )
    headers.append(SHDR.pack(b"EOS", 0, 0, 0, 0, 0, 0, 0, 0, 0))

    pbag, pgen, p_first = zone_tables([zones for *_, zones in bank.presets])
    ibag, igen, i_first = zone_tables([zones for _, zones in bank.instruments])
    phdr = b"".join(
        PHDR.pack(name.encode(), program, bank_no, p_first[k], 0, 0, 0)
        for k, (name, bank_no, program, _) in enumerate(bank.presets)
    ) + PHDR.pack(b"EOP", 0, 0, p_first[-1], 0, 0, 0)
    inst = b"".join(INST.pack(name.encode(), i_first[k]) for k, (name, _) in enumerate(bank.instruments))
    inst += INST.pack(b"EOI", i_first[-1])
    mod_terminal = b"\0" * 10

    info = riff_list(
        b"INFO",
        [chunk(b"ifil", struct.pack("<HH", *bank.version)), chunk(b"INAM", b"Test bank\0\0")],
    )
    sdta_chunks = [chunk(b"smpl", bytes(smpl))]
    if bank.sm24:
        sdta_chunks.append(chunk(b"sm24", bank.sm24_bytes))
    sdta = riff_list(b"sdta", sdta_chunks)
    pdta = riff_list(
        b"pdta",
        [
            chunk(b"phdr", phdr),
            chunk(b"pbag", pbag),
            chunk(b"pmod", mod_terminal),
            chunk(b"pgen", pgen),
            chunk(b"inst", inst),
            chunk(b"ibag", ibag),
            chunk(b"imod", mod_terminal),
            chunk(b"igen", igen),
            chunk(b"shdr", b"".join(headers)),
        ],
    )
    body = b"sfbk" + info + sdta + pdta
    return b"RIFF" + struct.pack("<I", len(body)) + body


G = Generator

# recorded pitches (what the audio really contains) of the test bank, derived by hand from the
# generators below: pitch = root - (coarse*100 + fine + correction) / 100
PITCH_SOFT_C4 = 60.10  # preset global fine -20, instrument global fine +10 -> tune -10 cents
PITCH_SOFT_E4 = 65.17  # overridingRootKey 65, tune -10, correction -7 -> 65 + 0.17
PITCH_LOUD_C4 = 60.30  # preset zone fine -30 replaces the preset global -20
PITCH_LOUD_E4 = 65.30  # root 64, preset fine -30, instrument coarse -1 -> 64 + 1.30


def piano_bank() -> Bank:
    """Two velocity layers split at preset level, stereo pairs, a broken link, inheritance."""
    n = RATE_HZ // 2
    samples = [
        Sample(
            "Soft C4 L", to_int16(sine(PITCH_SOFT_C4, amplitude=0.5, n_samples=n)), 60, 0, 1, SampleType.LEFT
        ),
        Sample(
            "Soft C4 R",
            to_int16(sine(PITCH_SOFT_C4, amplitude=0.25, n_samples=n)),
            60,
            0,
            0,
            SampleType.RIGHT,
        ),
        Sample("Soft E4", to_int16(sine(PITCH_SOFT_E4, n_samples=n)), 64, -7),
        # broken link (points nowhere); paired by name instead
        Sample(
            "Loud C4 L",
            to_int16(sine(PITCH_LOUD_C4, amplitude=0.8, n_samples=n)),
            60,
            0,
            99,
            SampleType.LEFT,
            (1000, 9000),
        ),
        Sample(
            "Loud C4 R",
            to_int16(sine(PITCH_LOUD_C4, amplitude=0.4, n_samples=n)),
            60,
            0,
            2,
            SampleType.RIGHT,
            (1000, 9000),
        ),
        Sample("Loud E4", to_int16(sine(PITCH_LOUD_E4, n_samples=n)), 64),
    ]
    soft = (
        "soft",
        [
            [(G.FINE_TUNE, s16(10))],  # instrument global zone
            [(G.KEY_RANGE, rng_(0, 62)), (G.PAN, s16(-500)), (G.SAMPLE_ID, 0)],
            [(G.KEY_RANGE, rng_(0, 62)), (G.PAN, s16(500)), (G.SAMPLE_ID, 1)],
            [(G.KEY_RANGE, rng_(63, 127)), (G.OVERRIDING_ROOT_KEY, 65), (G.SAMPLE_ID, 2)],
        ],
    )
    loud = (
        "loud",
        [
            [(G.KEY_RANGE, rng_(0, 62)), (G.PAN, s16(-500)), (G.SAMPLE_MODES, 1), (G.SAMPLE_ID, 3)],
            [(G.KEY_RANGE, rng_(0, 62)), (G.PAN, s16(500)), (G.SAMPLE_MODES, 1), (G.SAMPLE_ID, 4)],
            [
                (G.KEY_RANGE, rng_(63, 127)),
                (G.COARSE_TUNE, s16(-1)),
                (G.START_ADDRS_OFFSET, 100),
                (G.END_ADDRS_OFFSET, s16(-50)),
                (G.SAMPLE_ID, 5),
            ],
        ],
    )
    presets = [
        (
            "Test Piano",
            0,
            0,
            [
                [(G.FINE_TUNE, s16(-20))],  # preset global zone
                [(G.VEL_RANGE, rng_(0, 63)), (G.INSTRUMENT, 0)],
                [
                    (G.KEY_RANGE, rng_(0, 100)),
                    (G.VEL_RANGE, rng_(64, 127)),
                    (G.FINE_TUNE, s16(-30)),
                    (G.INSTRUMENT, 1),
                ],
            ],
        ),
        ("Other", 8, 1, [[(G.KEY_RANGE, rng_(60, 60)), (G.INSTRUMENT, 0)]]),
    ]
    return Bank(samples=samples, instruments=[soft, loud], presets=presets)


@pytest.fixture
def piano_path(tmp_path: Path) -> Path:
    path = tmp_path / "piano.sf2"
    path.write_bytes(build(piano_bank()))
    return path


def estimate_pitch_midi(x: np.ndarray, rate_hz: int) -> float:
    """Frequency of the strongest peak (Hann window, parabolic interpolation on log magnitude)."""
    n_fft = 1 << (len(x) - 1).bit_length() + 2
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n_fft)) + 1e-300
    k = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    f_hz = (k + offset) * rate_hz / n_fft
    return 69.0 + 12.0 * np.log2(f_hz / 440.0)


def by_source(lib, text: str):
    (note,) = [n for n in lib.notes if text in n.source]
    return note


# --- structure, pitch, ranges ------------------------------------------------------------------------


def test_presets_are_listed_and_one_must_be_chosen(piano_path: Path) -> None:
    presets = list_presets(piano_path)
    assert [(p.bank, p.program, p.name) for p in presets] == [(0, 0, "Test Piano"), (8, 1, "Other")]
    with pytest.raises(ParameterError, match=r"holds 2 presets.*0:0 'Test Piano'.*8:1 'Other'"):
        read_sf2(piano_path)
    with pytest.raises(ParameterError, match="no preset 'Nope'"):
        read_sf2(piano_path, preset="Nope")
    assert read_sf2(piano_path, preset="test piano").name == "Test Piano"
    assert read_sf2(piano_path, preset="8:1").name == "Other"
    assert read_sf2_info(piano_path) == {"name": "Test bank", "version": "2.01"}


def test_preset_velocity_split_gives_two_dynamics_with_stereo_pairs(piano_path: Path) -> None:
    lib = read_sf2(piano_path, preset="Test Piano")
    assert len(lib) == 4
    axes = lib.axes()
    assert axes.dynamics == pytest.approx((63 / 254, 191 / 254))
    assert axes.articulations == ("default",)
    assert axes.variations == (0,)
    assert axes.pitches_midi == pytest.approx(
        sorted([PITCH_SOFT_C4, PITCH_SOFT_E4, PITCH_LOUD_C4, PITCH_LOUD_E4])
    )

    soft_c4 = by_source(lib, "Soft C4 L + Soft C4 R")  # linked pair
    assert soft_c4.pitch_midi == pytest.approx(PITCH_SOFT_C4, abs=1e-9)
    assert (soft_c4.key_lo, soft_c4.key_hi, soft_c4.velocity_lo, soft_c4.velocity_hi) == (0, 62, 0, 63)
    assert soft_c4.channels == 2 and soft_c4.sample_rate == RATE_HZ and soft_c4.n_samples == RATE_HZ // 2
    assert soft_c4.loop_start is None  # sampleModes 0

    soft_e4 = by_source(lib, "Soft E4")
    assert soft_e4.pitch_midi == pytest.approx(PITCH_SOFT_E4, abs=1e-9)
    assert (soft_e4.key_lo, soft_e4.key_hi, soft_e4.channels) == (63, 127, 1)

    loud_c4 = by_source(lib, "Loud C4 L + Loud C4 R")  # broken link, paired by name
    assert loud_c4.pitch_midi == pytest.approx(PITCH_LOUD_C4, abs=1e-9)
    assert (loud_c4.key_lo, loud_c4.key_hi, loud_c4.velocity_lo, loud_c4.velocity_hi) == (0, 62, 64, 127)
    assert (loud_c4.loop_start, loud_c4.loop_end) == (1000, 9000)

    loud_e4 = by_source(lib, "Loud E4")
    assert loud_e4.pitch_midi == pytest.approx(PITCH_LOUD_E4, abs=1e-9)
    assert (loud_e4.key_lo, loud_e4.key_hi) == (63, 100)  # preset range 0..100 intersects 63..127
    assert loud_e4.n_samples == RATE_HZ // 2 - 150  # start offset +100, end offset -50


def test_audio_content_matches_the_recorded_pitch_and_channels(piano_path: Path) -> None:
    lib = read_sf2(piano_path, preset="Test Piano")
    for note in lib.notes:
        audio = note.load()
        assert audio.dtype == np.float64 and audio.shape == (note.channels, note.n_samples)
        cents = 100 * (estimate_pitch_midi(audio[0], note.sample_rate) - note.pitch_midi)
        assert abs(cents) < 1.0, note.source
    soft = by_source(lib, "Soft C4 L").load()
    assert np.max(np.abs(soft[0])) == pytest.approx(0.5, abs=1e-3)  # left channel first
    assert np.max(np.abs(soft[1])) == pytest.approx(0.25, abs=1e-3)
    loud_e4 = by_source(lib, "Loud E4").load()[0]
    expected = to_int16(sine(PITCH_LOUD_E4, n_samples=RATE_HZ // 2))[100:-50] / 32768.0
    np.testing.assert_array_equal(loud_e4, expected)


def test_preset_and_instrument_ranges_intersect(piano_path: Path) -> None:
    lib = read_sf2(piano_path, preset="Other")  # key 60 only: the E4 zone (63..127) never sounds
    assert len(lib) == 1
    (note,) = lib.notes
    assert (note.key_lo, note.key_hi, note.channels) == (60, 60, 2)
    assert note.pitch_midi == pytest.approx(59.90, abs=1e-9)  # instrument fine +10 only
    assert load_library(piano_path, preset="Other").notes == lib.notes


def test_library_is_picklable_and_loads_after_a_round_trip(piano_path: Path) -> None:
    lib = read_sf2(piano_path, preset="Test Piano")
    clone = pickle.loads(pickle.dumps(lib))
    assert clone.notes == lib.notes
    np.testing.assert_array_equal(clone.notes[0].load(), lib.notes[0].load())


# --- stereo pairing rules ---------------------------------------------------------------------------


def pair_bank(left: Sample, right: Sample, pans: tuple[int, int] = (0, 0)) -> Bank:
    zones = [
        [(G.PAN, s16(pans[0])), (G.SAMPLE_ID, 0)],
        [(G.PAN, s16(pans[1])), (G.SAMPLE_ID, 1)],
    ]
    return Bank(
        samples=[left, right], instruments=[("pair", zones)], presets=[("Pair", 0, 0, [[(G.INSTRUMENT, 0)]])]
    )


def read_bank(tmp_path: Path, bank: Bank, name: str = "bank.sf2"):
    path = tmp_path / name
    path.write_bytes(build(bank))
    return read_sf2(path)


def test_broken_link_pairs_by_pan(tmp_path: Path) -> None:
    a = Sample("first", to_int16(sine(60, amplitude=0.3)), link=7, kind=SampleType.RIGHT)
    b = Sample("second", to_int16(sine(60, amplitude=0.6)), link=7, kind=SampleType.RIGHT)
    lib = read_bank(tmp_path, pair_bank(a, b, pans=(400, -400)))
    (note,) = lib.notes
    assert note.channels == 2
    audio = note.load()
    assert np.max(np.abs(audio[0])) == pytest.approx(0.6, abs=1e-3)  # the left-panned one comes first
    assert np.max(np.abs(audio[1])) == pytest.approx(0.3, abs=1e-3)


def test_left_linked_to_a_mono_sample_stays_two_mono_notes(tmp_path: Path) -> None:
    left = Sample("alpha", to_int16(sine(60)), link=1, kind=SampleType.LEFT)
    mono = Sample("beta", to_int16(sine(60)), link=0, kind=SampleType.MONO)
    lib = read_bank(tmp_path, pair_bank(left, mono))
    assert [n.channels for n in lib.notes] == [1, 1]
    assert [n.variation for n in lib.notes] == [0, 1]  # same pitch and velocity: numbered


def test_pair_with_different_sample_rates_is_not_merged(tmp_path: Path) -> None:
    left = Sample("x L", to_int16(sine(60)), link=1, kind=SampleType.LEFT)
    right = Sample("x R", to_int16(sine(60, rate_hz=44100)), link=0, kind=SampleType.RIGHT, rate_hz=44100)
    lib = read_bank(tmp_path, pair_bank(left, right))
    assert sorted((n.channels, n.sample_rate) for n in lib.notes) == [(1, RATE_HZ), (1, 44100)]


def test_pair_with_different_lengths_is_padded_to_the_longer(tmp_path: Path) -> None:
    left = Sample("x L", to_int16(sine(60, n_samples=1000)), link=1, kind=SampleType.LEFT)
    right = Sample("x R", to_int16(sine(60, n_samples=1500)), link=0, kind=SampleType.RIGHT)
    (note,) = read_bank(tmp_path, pair_bank(left, right)).notes
    audio = note.load()
    assert audio.shape == (2, 1500)
    assert np.all(audio[0, 1000:] == 0) and np.any(audio[1, 1000:] != 0)


def test_same_sample_in_two_velocity_layers_gives_two_notes_and_overlaps_merge(tmp_path: Path) -> None:
    sample = Sample("only", to_int16(sine(60)))
    inst = ("i", [[(G.SAMPLE_ID, 0)]])
    zones = [
        [(G.VEL_RANGE, rng_(0, 40)), (G.INSTRUMENT, 0)],
        [(G.VEL_RANGE, rng_(30, 80)), (G.INSTRUMENT, 0)],  # overlaps the first: the same layer
        [(G.VEL_RANGE, rng_(100, 127)), (G.INSTRUMENT, 0)],  # disjoint: a layer of its own
    ]
    lib = read_bank(tmp_path, Bank(samples=[sample], instruments=[inst], presets=[("P", 0, 0, zones)]))
    assert [(n.velocity_lo, n.velocity_hi) for n in lib.notes] == [(0, 80), (100, 127)]


def test_overlapping_instruments_become_articulations(tmp_path: Path) -> None:
    samples = [Sample("sus", to_int16(sine(60))), Sample("stac", to_int16(sine(60, amplitude=0.2)))]
    instruments = [("Violin Sustain", [[(G.SAMPLE_ID, 0)]]), ("Violin Staccato", [[(G.SAMPLE_ID, 1)]])]
    presets = [("V", 0, 0, [[(G.INSTRUMENT, 0)], [(G.INSTRUMENT, 1)]])]
    lib = read_bank(tmp_path, Bank(samples=samples, instruments=instruments, presets=presets))
    assert lib.axes().articulations == ("Violin Staccato", "default")
    assert len(lib.select(articulation="default")) == 1


def test_24_bit_samples_use_the_sm24_low_bytes(tmp_path: Path) -> None:
    hi = np.array([1000, -2000, 32767, -32768, 0], dtype="<i2")
    lo = bytes([0x80, 0x01, 0xFF, 0x00, 0x7F])
    sample = Sample("s24", hi)
    bank = Bank(
        samples=[sample],
        instruments=[("i", [[(G.SAMPLE_ID, 0)]])],
        presets=[("P", 0, 0, [[(G.INSTRUMENT, 0)]])],
        version=(2, 4),
        sm24=True,
        sm24_bytes=lo + b"\0" * 46 + b"\0",  # one byte per point of smpl, padded to even
    )
    (note,) = read_bank(tmp_path, bank).notes
    expected = (hi.astype(np.float64) * 256 + np.frombuffer(lo, np.uint8)) / 2**23
    np.testing.assert_array_equal(note.load()[0], expected)


# --- SF3 -----------------------------------------------------------------------------------------


def ogg_blob(x: np.ndarray, rate_hz: int = RATE_HZ) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate_hz, format="OGG", subtype="VORBIS")
    return buf.getvalue()


def test_sf3_ogg_samples_decode_with_their_pitch_and_length(tmp_path: Path) -> None:
    n = RATE_HZ // 2
    left, right = sine(62.0, amplitude=0.5, n_samples=n), sine(62.0, amplitude=0.25, n_samples=n)
    samples = [
        Sample("D4 L", ogg_blob(left), 62, 0, 1, SampleType.LEFT, (2000, 9000)),
        Sample("D4 R", ogg_blob(right), 62, 0, 0, SampleType.RIGHT, (2000, 9000)),
        Sample("A4", ogg_blob(sine(69.25, n_samples=n)), 69, -25),
    ]
    zones = [
        [(G.KEY_RANGE, rng_(0, 64)), (G.SAMPLE_MODES, 1), (G.SAMPLE_ID, 0)],
        [(G.KEY_RANGE, rng_(0, 64)), (G.SAMPLE_MODES, 1), (G.SAMPLE_ID, 1)],
        [(G.KEY_RANGE, rng_(65, 127)), (G.SAMPLE_ID, 2)],
    ]
    bank = Bank(samples=samples, instruments=[("i", zones)], presets=[("Comp", 0, 0, [[(G.INSTRUMENT, 0)]])])
    path = tmp_path / "bank.sf3"
    path.write_bytes(build(bank, compressed=True))
    lib = load_library(path)
    d4 = by_source(lib, "D4 L + D4 R")
    a4 = by_source(lib, "A4")
    assert (d4.channels, d4.n_samples, d4.loop_start, d4.loop_end) == (2, n, 2000, 9000)
    assert a4.pitch_midi == pytest.approx(69.25, abs=1e-9) and a4.n_samples == n
    audio = d4.load()
    assert audio.shape == (2, n)
    assert np.sqrt(np.mean((audio[0] - left) ** 2)) < 0.01  # lossy, but close
    assert np.max(np.abs(audio[1])) == pytest.approx(0.25, abs=0.02)
    assert abs(100 * (estimate_pitch_midi(a4.load()[0], RATE_HZ) - 69.25)) < 1.0


# --- corrupt and hostile files ----------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 4, 11, 12, 30, 200, 5000, 20000, -600, -300, -100, -47, -1])
def test_truncated_file_raises_naming_the_chunk(piano_path: Path, tmp_path: Path, keep: int) -> None:
    data = piano_path.read_bytes()
    cut = tmp_path / "cut.sf2"
    cut.write_bytes(data[:keep])
    with pytest.raises(AudioFileError) as info:
        read_sf2(cut, preset="Test Piano")
    message = str(info.value)
    assert str(cut) in message
    assert "truncated" in message or "no LIST" in message


def test_truncated_pdta_message_names_sizes(piano_path: Path, tmp_path: Path) -> None:
    data = piano_path.read_bytes()
    shdr_at = data.index(b"shdr")
    declared = struct.unpack_from("<I", data, shdr_at + 4)[0]
    cut = tmp_path / "cut.sf2"
    cut.write_bytes(data[: shdr_at + 8 + 20])
    with pytest.raises(
        AudioFileError, match=rf"truncated: pdta/shdr declares {declared} bytes, 20 available"
    ):
        read_sf2(cut, preset="Test Piano")


@pytest.mark.parametrize(
    ("head", "message"),
    [(b"RIFX", "expected b'RIFF'"), (b"OggS", "expected b'RIFF'")],
)
def test_wrong_magic(piano_path: Path, tmp_path: Path, head: bytes, message: str) -> None:
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(head + piano_path.read_bytes()[4:])
    with pytest.raises(AudioFileError, match=message):
        list_presets(bad)


def test_wrong_riff_form(piano_path: Path, tmp_path: Path) -> None:
    data = bytearray(piano_path.read_bytes())
    data[8:12] = b"WAVE"
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(bytes(data))
    with pytest.raises(AudioFileError, match="RIFF form b'WAVE'"):
        read_sf2(bad)


def test_sample_header_beyond_smpl_is_rejected(tmp_path: Path) -> None:
    bank = piano_bank()
    path = tmp_path / "beyond.sf2"
    data = bytearray(build(bank))
    shdr = data.index(b"Loud E4\0")
    smpl_points = struct.unpack_from("<I", data, data.index(b"smpl") + 4)[0] // 2
    struct.pack_into("<I", data, shdr + 24, smpl_points + 10)  # dwEnd
    path.write_bytes(bytes(data))
    with pytest.raises(
        AudioFileError, match=rf"'Loud E4'.*outside sdta/smpl \({smpl_points} sample points\)"
    ):
        read_sf2(path, preset="Test Piano")


def test_record_size_and_index_errors(tmp_path: Path) -> None:
    data = build(piano_bank())
    # an instrument index beyond the instrument list
    pgen = data.index(b"pgen") + 8
    broken = bytearray(data)
    for k in range(0, 100, 4):
        oper, _ = struct.unpack_from("<HH", broken, pgen + k)
        if oper == G.INSTRUMENT:
            struct.pack_into("<HH", broken, pgen + k, oper, 500)
            break
    path = tmp_path / "index.sf2"
    path.write_bytes(bytes(broken))
    with pytest.raises(AudioFileError, match="refers to instrument 500"):
        read_sf2(path, preset="Test Piano")

    # a pdta chunk whose size is not a whole number of records
    broken = bytearray(data)
    at = broken.index(b"pbag")
    size = struct.unpack_from("<I", broken, at + 4)[0]
    broken[at : at + 8] = b"pbag" + struct.pack("<I", size - 2)
    broken[at + 8 + size - 2 : at + 8 + size] = b""  # keep the chunk table consistent
    body_size = len(broken) - 8
    struct.pack_into("<I", broken, 4, body_size)
    pdta = broken.index(b"pdta") - 8
    struct.pack_into("<I", broken, pdta + 4, struct.unpack_from("<I", broken, pdta + 4)[0] - 2)
    path.write_bytes(bytes(broken))
    with pytest.raises(AudioFileError, match=r"pdta/pbag is \d+ bytes, not a multiple of its 4-byte record"):
        read_sf2(path, preset="Test Piano")


def test_random_corruption_of_pdta_never_escapes_as_another_error(tmp_path: Path) -> None:
    data = build(piano_bank())
    pdta = data.index(b"pdta")
    rng = np.random.default_rng(1234)
    path = tmp_path / "fuzz.sf2"
    started = time.perf_counter()
    for _ in range(300):
        mutated = bytearray(data)
        for at in rng.integers(pdta, len(data), size=3):
            mutated[at] = int(rng.integers(0, 256))
        path.write_bytes(bytes(mutated))
        try:
            lib = read_sf2(path, preset="0:0")
            for note in lib.notes:
                assert note.load().shape == (note.channels, note.n_samples)
        except (AudioFileError, ParameterError):
            pass
    assert time.perf_counter() - started < 30


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="no such SoundFont file"):
        read_sf2(tmp_path / "absent.sf2")


# --- the real bank, when installed -------------------------------------------------------------------


@pytest.mark.skipif(not MUSESCORE.exists(), reason=f"{MUSESCORE} is not installed")
def test_musescore_grand_piano_has_40_pitches_by_2_dynamics_in_stereo() -> None:
    lib = read_sf2(MUSESCORE, preset="Grand Piano")
    axes = lib.axes()
    assert len(lib) == 80
    assert len(axes.pitches_midi) == 40 and len(axes.dynamics) == 2
    assert axes.articulations == ("default",) and axes.variations == (0,)
    assert all(n.channels == 2 and n.sample_rate == 44100 for n in lib.notes)
    note = lib.notes[0]
    audio = note.load()  # one note only: the test stays fast
    assert audio.shape == (2, note.n_samples) and 0.01 < np.max(np.abs(audio)) <= 1.0
