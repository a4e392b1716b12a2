"""SFZ import: instruments and samples written in the test, then read back."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from calyx.errors import AudioFileError
from calyx.io import load_library, read_sfz

RATE_HZ = 22050
N_SAMPLES = 4000


def tone(path: Path, *, amplitude: float = 0.5, n_samples: int = N_SAMPLES, channels: int = 1) -> np.ndarray:
    """Write a ramp-modulated tone whose samples are easy to locate; return it as (channels, n)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n_samples)
    x = amplitude * np.sin(2 * np.pi * 440.0 * t / RATE_HZ) * (t / n_samples)
    audio = np.stack([x * (1 - 0.5 * c) for c in range(channels)])
    sf.write(path, audio.T, RATE_HZ, subtype="PCM_16")
    return sf.read(path, dtype="float64", always_2d=True)[0].T


def by_source(lib, text: str):
    matches = [n for n in lib.notes if text in n.source]
    assert len(matches) == 1, [n.source for n in lib.notes]
    return matches[0]


INSTRUMENT = """\
// a test instrument
<control> default_path=Samples\\
#define $LOUD 100
#define $SOFT 40
/* a block comment
   spanning two lines */
<global> lovel=1 hivel=127 tune=10
<master> transpose=0
<group> group_label=Sustain seq_length=2 lokey=c4 hikey=d4 pitch_keycenter=c#4
<region> sample=sus rr1.wav seq_position=1 lovel=1 hivel=$SOFT
<region> sample=sus rr2.wav seq_position=2 lovel=1 hivel=$SOFT
<region> sample=sus rr1.wav seq_position=1 lovel=41 hivel=$LOUD tune=-25 transpose=12
<group> sw_lokey=24 sw_hikey=25 sw_last=24 sw_label=Staccato key=a4
<region> sample=stac.wav offset=100 end=2099 loop_start=500 loop_end=1499
<group> sw_last=25 key=69
<region> sample=sub/Pizz.WAV loopstart=10 loopend=19 loop_mode=no_loop
<region> sample=*sine key=80
"""


@pytest.fixture
def instrument(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    audio = {
        "sus rr1": tone(tmp_path / "Samples" / "sus rr1.wav", amplitude=0.5),
        "sus rr2": tone(tmp_path / "Samples" / "sus rr2.wav", amplitude=0.4),
        "stac": tone(tmp_path / "Samples" / "stac.wav", amplitude=0.3, channels=2),
        "pizz": tone(tmp_path / "Samples" / "sub" / "pizz.wav", amplitude=0.2),
    }
    path = tmp_path / "strings.sfz"
    path.write_text(INSTRUMENT)
    return path, audio


def test_regions_inherit_and_map_to_axes(instrument: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = instrument
    lib = read_sfz(path)
    assert lib.name == "strings" and len(lib) == 5  # the *sine region is skipped
    axes = lib.axes()
    assert axes.articulations == ("Staccato", "Sustain", "ks25")
    assert axes.variations == (0, 1)

    rr1_soft = [n for n in lib.notes if "sus rr1" in n.source and n.velocity_hi == 40]
    rr2 = by_source(lib, "sus rr2")
    (soft,) = rr1_soft
    # pitch_keycenter c#4 = 61, global tune +10 cents -> recorded 60.90
    assert soft.pitch_midi == pytest.approx(60.90, abs=1e-9)
    assert (soft.key_lo, soft.key_hi, soft.velocity_lo, soft.velocity_hi) == (60, 62, 1, 40)
    assert (soft.articulation, soft.variation, rr2.variation) == ("Sustain", 0, 1)
    assert soft.dynamic == pytest.approx(41 / 254)

    (loud,) = [n for n in lib.notes if "sus rr1" in n.source and n.velocity_hi == 100]
    # region tune -25 replaces the global +10, transpose 12 -> 61 - 12 + 0.25
    assert loud.pitch_midi == pytest.approx(49.25, abs=1e-9)
    assert (loud.velocity_lo, loud.velocity_hi) == (41, 100)

    stac = by_source(lib, "stac.wav")
    assert (stac.key_lo, stac.key_hi, stac.pitch_midi) == (69, 69, pytest.approx(68.90))
    assert (stac.n_samples, stac.channels, stac.loop_start, stac.loop_end) == (2000, 2, 400, 1400)

    pizz = by_source(lib, "pizz.wav")  # "sub/Pizz.WAV" is found case-insensitively
    assert (pizz.articulation, pizz.loop_start, pizz.velocity_lo) == ("ks25", None, 1)


def test_audio_is_the_trimmed_sample(instrument: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, audio = instrument
    lib = read_sfz(path)
    stac = by_source(lib, "stac.wav").load()
    np.testing.assert_array_equal(stac, audio["stac"][:, 100:2100])
    rr2 = by_source(lib, "sus rr2")
    np.testing.assert_array_equal(rr2.load(), audio["sus rr2"])
    clone = pickle.loads(pickle.dumps(lib))
    np.testing.assert_array_equal(by_source(clone, "stac.wav").load(), stac)
    assert load_library(path).notes == lib.notes


def test_missing_sample_names_the_sfz_line_and_path(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav")
    path = tmp_path / "broken.sfz"
    path.write_text(
        "<group> lokey=60\n/* two\nlines */\n<region> sample=a.wav\n<region> sample=nested\\gone.wav\n"
    )
    with pytest.raises(AudioFileError) as info:
        read_sfz(path)
    message = str(info.value)
    assert f"{path}:5" in message and "'nested\\\\gone.wav'" in message and "nested/gone.wav" in message


def test_bad_opcode_value_names_the_line(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav")
    path = tmp_path / "bad.sfz"
    path.write_text("<region>\nsample=a.wav\nlokey=zz\n")
    with pytest.raises(
        AudioFileError, match=r"bad\.sfz:3: lokey='zz' is neither a MIDI key number nor a note name"
    ):
        read_sfz(path)


def test_group_opcodes_do_not_leak_into_the_next_group(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav")
    path = tmp_path / "leak.sfz"
    path.write_text(
        "<global> hivel=90\n<group> lovel=50 group_label=Loud\n<region> sample=a.wav\n"
        "<group>\n<region> sample=a.wav key=62\n<master> lovel=5\n<region> sample=a.wav\n"
    )
    lib = read_sfz(path)
    got = sorted((n.velocity_lo, n.velocity_hi, n.articulation, n.key_lo) for n in lib.notes)
    assert got == [(0, 90, "default", 62), (5, 90, "default", 0), (50, 90, "Loud", 0)]


def test_include_define_note_offset_and_random_round_robin(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav")
    tone(tmp_path / "b.wav")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "regions.sfz").write_text(
        "<region> sample=$S1 lorand=0.5 hirand=1\n<region> sample=b.wav lorand=0 hirand=0.5\n"
    )
    path = tmp_path / "main.sfz"
    path.write_text(
        '<control> note_offset=2\n#define $S1 a.wav\n<group> key=60\n#include "parts/regions.sfz"\n'
    )
    lib = read_sfz(path)
    assert [(n.key_lo, n.pitch_midi) for n in lib.notes] == [(62, 62.0), (62, 62.0)]
    assert {Path(n.source.split("[")[1].rstrip("]")).name: n.variation for n in lib.notes} == {
        "a.wav": 1,
        "b.wav": 0,
    }


def test_pitch_keycenter_sample_and_loops_from_the_wav_smpl_chunk(tmp_path: Path) -> None:
    wav = tmp_path / "looped.wav"
    tone(wav)
    loops = struct.pack("<IIIIII", 0, 0, 1000, 2999, 0, 0)
    smpl = struct.pack("<IIIIIIIII", 0, 0, 0, 67, 2**31, 0, 0, 1, 0) + loops
    data = bytearray(wav.read_bytes()) + b"smpl" + struct.pack("<I", len(smpl)) + smpl
    struct.pack_into("<I", data, 4, len(data) - 8)
    wav.write_bytes(bytes(data))
    path = tmp_path / "s.sfz"
    path.write_text("<region> sample=looped.wav pitch_keycenter=sample\n")
    (note,) = read_sfz(path).notes
    assert note.pitch_midi == pytest.approx(67.5)
    assert (note.loop_start, note.loop_end) == (1000, 3000)


def test_unreadable_sample(tmp_path: Path) -> None:
    (tmp_path / "junk.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    path = tmp_path / "j.sfz"
    path.write_text("<region> sample=junk.wav\n")
    with pytest.raises(AudioFileError, match=r"j\.sfz:1: sample .*junk\.wav cannot be read"):
        read_sfz(path)


def test_key_triggered_regions_only_and_an_empty_instrument(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav")
    path = tmp_path / "cc.sfz"
    path.write_text(
        "<region> sample=a.wav hikey=-1 on_locc64=64\n<region> sample=a.wav key=60 locc1=0 hicc1=63 label_cc1=Mod\n"
    )
    (note,) = read_sfz(path).notes
    assert (note.key_lo, note.articulation) == (60, "Mod 0-63")
    path.write_text("// nothing but a comment\n<region> sample=*sine\n")
    with pytest.raises(AudioFileError, match="no region with a recorded sample"):
        read_sfz(path)
