"""Constants of the SoundFont 2.04 file format (and its Ogg Vorbis SF3 variant), in one place.

The reader (:mod:`calyx.io.sf2`) and any writer share these record layouts, chunk identifiers,
generator numbers and defaults so that the two cannot drift apart.

Layout of a SoundFont file (all integers little-endian)::

    RIFF <size> 'sfbk'
      LIST <size> 'INFO'   ifil (version), INAM (name), isng, irom, iver, ICRD, IENG, IPRD, ICOP, ICMT, ISFT
      LIST <size> 'sdta'   smpl (16-bit PCM, or concatenated Ogg Vorbis streams in SF3), sm24 (optional)
      LIST <size> 'pdta'   phdr pbag pmod pgen inst ibag imod igen shdr (fixed-size records, each list
                           closed by a terminal record)
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag

__all__ = [
    "ADDRESS_COARSE_FACTOR",
    "BAG",
    "GEN",
    "GENERATOR_DEFAULTS",
    "IFIL_ID",
    "INFO_LIST",
    "INFO_STRING_IDS",
    "INST",
    "INSTRUMENT_ONLY_GENERATORS",
    "LIST_ID",
    "MOD",
    "PDTA_CHUNK_IDS",
    "PDTA_LIST",
    "PDTA_RECORDS",
    "PHDR",
    "RANGE_GENERATORS",
    "RIFF_ID",
    "SDTA_LIST",
    "SFBK_FORM",
    "SHDR",
    "SM24_ID",
    "SMPL_ID",
    "TERMINAL_INSTRUMENT_NAME",
    "TERMINAL_PRESET_NAME",
    "TERMINAL_SAMPLE_NAME",
    "UNSIGNED_GENERATORS",
    "Generator",
    "SampleMode",
    "SampleType",
]

# --- chunk identifiers ------------------------------------------------------------------------------
RIFF_ID = b"RIFF"
LIST_ID = b"LIST"
SFBK_FORM = b"sfbk"
INFO_LIST = b"INFO"
SDTA_LIST = b"sdta"
PDTA_LIST = b"pdta"
IFIL_ID = b"ifil"
SMPL_ID = b"smpl"
SM24_ID = b"sm24"

#: INFO sub-chunks holding zero-terminated strings, with the key used in the parsed ``info`` mapping.
INFO_STRING_IDS: dict[bytes, str] = {
    b"INAM": "name",
    b"isng": "sound_engine",
    b"irom": "rom_name",
    b"ICRD": "creation_date",
    b"IENG": "engineers",
    b"IPRD": "product",
    b"ICOP": "copyright",
    b"ICMT": "comment",
    b"ISFT": "software",
}

#: The nine pdta sub-chunks in the order the specification requires them.
PDTA_CHUNK_IDS: tuple[bytes, ...] = (
    b"phdr",
    b"pbag",
    b"pmod",
    b"pgen",
    b"inst",
    b"ibag",
    b"imod",
    b"igen",
    b"shdr",
)

# --- fixed-size pdta records -----------------------------------------------------------------------
#: phdr: achPresetName[20], wPreset, wBank, wPresetBagNdx, dwLibrary, dwGenre, dwMorphology (38 bytes)
PHDR = struct.Struct("<20sHHHIII")
#: pbag / ibag: wGenNdx, wModNdx (4 bytes)
BAG = struct.Struct("<HH")
#: pmod / imod: sfModSrcOper, sfModDestOper, modAmount, sfModAmtSrcOper, sfModTransOper (10 bytes)
MOD = struct.Struct("<HHhHH")
#: pgen / igen: sfGenOper, genAmount (raw 16 bits; meaning depends on the generator) (4 bytes)
GEN = struct.Struct("<HH")
#: inst: achInstName[20], wInstBagNdx (22 bytes)
INST = struct.Struct("<20sH")
#: shdr: achSampleName[20], dwStart, dwEnd, dwStartloop, dwEndloop, dwSampleRate,
#: byOriginalPitch, chPitchCorrection, wSampleLink, sfSampleType (46 bytes)
SHDR = struct.Struct("<20sIIIIIBbHH")

#: Record layout of each pdta sub-chunk.
PDTA_RECORDS: dict[bytes, struct.Struct] = {
    b"phdr": PHDR,
    b"pbag": BAG,
    b"pmod": MOD,
    b"pgen": GEN,
    b"inst": INST,
    b"ibag": BAG,
    b"imod": MOD,
    b"igen": GEN,
    b"shdr": SHDR,
}

TERMINAL_PRESET_NAME = "EOP"
TERMINAL_INSTRUMENT_NAME = "EOI"
TERMINAL_SAMPLE_NAME = "EOS"

#: Sample-address generators count in units of this many sample points for their "coarse" variants.
ADDRESS_COARSE_FACTOR = 32768


class Generator(IntEnum):
    """SoundFont 2.04 generator operators (section 8.1.2 of the specification)."""

    START_ADDRS_OFFSET = 0
    END_ADDRS_OFFSET = 1
    STARTLOOP_ADDRS_OFFSET = 2
    ENDLOOP_ADDRS_OFFSET = 3
    START_ADDRS_COARSE_OFFSET = 4
    MOD_LFO_TO_PITCH = 5
    VIB_LFO_TO_PITCH = 6
    MOD_ENV_TO_PITCH = 7
    INITIAL_FILTER_FC = 8
    INITIAL_FILTER_Q = 9
    MOD_LFO_TO_FILTER_FC = 10
    MOD_ENV_TO_FILTER_FC = 11
    END_ADDRS_COARSE_OFFSET = 12
    MOD_LFO_TO_VOLUME = 13
    UNUSED1 = 14
    CHORUS_EFFECTS_SEND = 15
    REVERB_EFFECTS_SEND = 16
    PAN = 17
    UNUSED2 = 18
    UNUSED3 = 19
    UNUSED4 = 20
    DELAY_MOD_LFO = 21
    FREQ_MOD_LFO = 22
    DELAY_VIB_LFO = 23
    FREQ_VIB_LFO = 24
    DELAY_MOD_ENV = 25
    ATTACK_MOD_ENV = 26
    HOLD_MOD_ENV = 27
    DECAY_MOD_ENV = 28
    SUSTAIN_MOD_ENV = 29
    RELEASE_MOD_ENV = 30
    KEYNUM_TO_MOD_ENV_HOLD = 31
    KEYNUM_TO_MOD_ENV_DECAY = 32
    DELAY_VOL_ENV = 33
    ATTACK_VOL_ENV = 34
    HOLD_VOL_ENV = 35
    DECAY_VOL_ENV = 36
    SUSTAIN_VOL_ENV = 37
    RELEASE_VOL_ENV = 38
    KEYNUM_TO_VOL_ENV_HOLD = 39
    KEYNUM_TO_VOL_ENV_DECAY = 40
    INSTRUMENT = 41
    RESERVED1 = 42
    KEY_RANGE = 43
    VEL_RANGE = 44
    STARTLOOP_ADDRS_COARSE_OFFSET = 45
    KEYNUM = 46
    VELOCITY = 47
    INITIAL_ATTENUATION = 48
    RESERVED2 = 49
    ENDLOOP_ADDRS_COARSE_OFFSET = 50
    COARSE_TUNE = 51
    FINE_TUNE = 52
    SAMPLE_ID = 53
    SAMPLE_MODES = 54
    RESERVED3 = 55
    SCALE_TUNING = 56
    EXCLUSIVE_CLASS = 57
    OVERRIDING_ROOT_KEY = 58
    UNUSED5 = 59
    END_OPER = 60


class SampleType(IntFlag):
    """``sfSampleType`` bits of a sample header; ``OGG_VORBIS`` is the SF3 extension."""

    MONO = 0x0001
    RIGHT = 0x0002
    LEFT = 0x0004
    LINKED = 0x0008
    OGG_VORBIS = 0x0010
    ROM = 0x8000


class SampleMode(IntEnum):
    """Values of the ``sampleModes`` generator."""

    NO_LOOP = 0
    LOOP_CONTINUOUS = 1
    UNUSED_NO_LOOP = 2
    LOOP_UNTIL_RELEASE = 3


#: Generators whose amount is a (lo, hi) byte pair.
RANGE_GENERATORS = frozenset({Generator.KEY_RANGE, Generator.VEL_RANGE})

#: Generators whose amount is an unsigned 16-bit index (all others are signed 16-bit).
UNSIGNED_GENERATORS = frozenset({Generator.INSTRUMENT, Generator.SAMPLE_ID})

#: Generators that are only meaningful at instrument level; a preset-level value is ignored.
INSTRUMENT_ONLY_GENERATORS = frozenset(
    {
        Generator.START_ADDRS_OFFSET,
        Generator.END_ADDRS_OFFSET,
        Generator.STARTLOOP_ADDRS_OFFSET,
        Generator.ENDLOOP_ADDRS_OFFSET,
        Generator.START_ADDRS_COARSE_OFFSET,
        Generator.END_ADDRS_COARSE_OFFSET,
        Generator.STARTLOOP_ADDRS_COARSE_OFFSET,
        Generator.ENDLOOP_ADDRS_COARSE_OFFSET,
        Generator.KEYNUM,
        Generator.VELOCITY,
        Generator.SAMPLE_ID,
        Generator.SAMPLE_MODES,
        Generator.EXCLUSIVE_CLASS,
        Generator.OVERRIDING_ROOT_KEY,
    }
)

#: Default amounts of the generators that differ from zero (section 8.1.3); ranges as (lo, hi).
GENERATOR_DEFAULTS: dict[Generator, int | tuple[int, int]] = {
    Generator.INITIAL_FILTER_FC: 13500,
    Generator.DELAY_MOD_LFO: -12000,
    Generator.DELAY_VIB_LFO: -12000,
    Generator.DELAY_MOD_ENV: -12000,
    Generator.ATTACK_MOD_ENV: -12000,
    Generator.HOLD_MOD_ENV: -12000,
    Generator.DECAY_MOD_ENV: -12000,
    Generator.RELEASE_MOD_ENV: -12000,
    Generator.DELAY_VOL_ENV: -12000,
    Generator.ATTACK_VOL_ENV: -12000,
    Generator.HOLD_VOL_ENV: -12000,
    Generator.DECAY_VOL_ENV: -12000,
    Generator.RELEASE_VOL_ENV: -12000,
    Generator.KEY_RANGE: (0, 127),
    Generator.VEL_RANGE: (0, 127),
    Generator.KEYNUM: -1,
    Generator.VELOCITY: -1,
    Generator.SCALE_TUNING: 100,
    Generator.OVERRIDING_ROOT_KEY: -1,
}
