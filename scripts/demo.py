"""``make demo``: the main job on a real default.

1. the instrument codec on the development piano ("Grand Piano" of MuseScore_General_Full.sf2,
   installed by the Debian package musescore-general-soundfont-lossless): encode to .calyx, show
   ``calyx info``, play a few notes from the model (one between sampled pitches);
2. the event codec on the first 10 s of Bach's chorale BWV 253 rendered on that piano by FluidSynth:
   encode to .cxe, decode, and compare with Opus 6 kbps;
3. an HTML report for each, written under ``out/demo/``.

Without the SoundFont (no root to install it) the instrument part falls back to the committed
six-note piano excerpt in tests/data/piano-excerpt/.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "demo"
SOUNDFONT = Path("/usr/share/sounds/sf2/MuseScore_General_Full.sf2")
EXCERPT = ROOT / "tests" / "data" / "piano-excerpt"
CHORALE_MID = ROOT / "tests" / "data" / "bwv253_piano.mid"


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def calyx(*args: str) -> None:
    from calyx.cli.main import main

    print("$ calyx " + " ".join(f'"{a}"' if " " in a else a for a in args), flush=True)
    rc = main(list(args))
    if rc != 0:
        raise SystemExit(f"calyx {args[0]} failed with exit code {rc}")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    have_sf2 = SOUNDFONT.is_file()
    calyx_file = OUT / "piano.calyx"

    step("1. instrument codec")
    t0 = time.perf_counter()
    if have_sf2:
        calyx("encode", str(SOUNDFONT), "--preset", "Grand Piano", "-o", str(calyx_file), "--force")
        source = [str(SOUNDFONT), "--preset", "Grand Piano"]
    else:
        print(f"{SOUNDFONT} is missing (install musescore-general-soundfont-lossless); using {EXCERPT}")
        calyx("encode", str(EXCERPT), "-o", str(calyx_file), "--force")
        source = [str(EXCERPT)]
    print(f"(encoded in {time.perf_counter() - t0:.1f} s)")
    calyx("info", str(calyx_file))
    for pitch, dynamic in (("60", "0.8"), ("61.5", "0.6"), ("72", "0.3")):
        calyx("note", str(calyx_file), "--pitch", pitch, "--dynamic", dynamic, "--duration", "3",
              "-o", str(OUT / f"note_{pitch}_{dynamic}.wav"), "--force")

    step("2. event codec")
    clip = OUT / "bwv253_10s.wav"
    if have_sf2 and shutil.which("fluidsynth"):
        full = OUT / "bwv253_piano.wav"
        subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.8", "-r", "44100",
                        "-F", str(full), str(SOUNDFONT), str(CHORALE_MID)], check=True)
        from calyx.core.audio import read_audio, write_audio

        y, sr = read_audio(full)
        write_audio(clip, y.mean(axis=0)[: 10 * sr], sample_rate=sr, force=True)
    else:
        from calyx.core.audio import read_audio, write_audio

        y, sr = read_audio(EXCERPT / "piano_mf_60.flac")
        write_audio(clip, y.mean(axis=0), sample_rate=sr, force=True)
    cxe = OUT / "bwv253_10s.cxe"
    decoded = OUT / "bwv253_10s.decoded.wav"
    calyx("events", "encode", str(clip), "-o", str(cxe), "--force")
    calyx("events", "decode", str(cxe), "-o", str(decoded), "--force")
    calyx("events", "show", str(cxe))
    calyx("eval", str(clip), str(decoded))
    from calyx.baselines import available_codecs, run_codec
    from calyx.core.audio import read_audio
    from calyx.metrics import lmd

    if available_codecs().get("opus6"):
        y, sr = read_audio(clip)
        r = run_codec("opus6", y, sample_rate=sr)
        print(f"peer: Opus 6 kbps on the same clip: {r.kbps:.2f} kbps, LMD {lmd(y, r.decoded, sample_rate=sr):.3f}; "
              f"the .cxe file: {8 * cxe.stat().st_size / (y.shape[-1] / sr) / 1000:.2f} kbps")

    step("3. reports")
    calyx("report", str(calyx_file), "--source", *source, "-o", str(OUT / "report-piano"), "--force")
    calyx("events", "report", str(clip), str(cxe), "-o", str(OUT / "report-chorale"), "--force")
    print(f"\nInstrument report: {OUT / 'report-piano' / 'index.html'}")
    print(f"Events report:     {OUT / 'report-chorale' / 'index.html'}")
    print(f"Browse both:       .venv/bin/calyx serve {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
