#!/usr/bin/env bash
# Installs the Debian tools that Calyx's tests, demo and benchmarks call (real codecs for the
# baselines, FluidSynth to render and check SoundFonts, headless Chromium and its WebDriver to test
# the HTML reports). Installs only what is missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have fluidsynth || need+=(fluidsynth)
have opusenc || need+=(opus-tools)
have oggenc || need+=(vorbis-tools)
have lame || need+=(lame)
have flac || need+=(flac)
have sf3convert || need+=(sf3convert)
have chromium || need+=(chromium)
have chromedriver || need+=(chromium-driver)
if [ "${CALYX_WITH_SOUNDFONT:-0}" = 1 ] && [ ! -f /usr/share/sounds/sf2/MuseScore_General_Full.sf2 ]; then
  need+=(musescore-general-soundfont-lossless)
fi
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if have sudo; then SUDO="sudo"; else
    echo "error: missing ${need[*]} and not root; install them with apt-get" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
