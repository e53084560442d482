#!/usr/bin/env bash
# Sets up everything the voicebot needs on a Debian or Ubuntu machine:
# system packages (when run as root or with sudo), a Python 3.10 virtual
# environment in .venv, and the package with its pinned dependencies.
# Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Speech (espeak-ng), sound devices (PortAudio, and PulseAudio through ALSA,
# which the sound-card tests also start on their own), and the browser the
# console's tests drive (Debian's chromium; Playwright never downloads one).
# The phone-line tests call the bot with a real SIP phone (baresip) and probe
# its SIP edges with sipp; nsenter and ip (util-linux, iproute2) give them a
# private network.
SYSTEM_PACKAGES=(espeak-ng libespeak-ng1 libportaudio2 pulseaudio libasound2-plugins alsa-utils
  chromium baresip-core sip-tester iproute2 util-linux)
VENV=.venv

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${SYSTEM_PACKAGES[@]}" ${EXTRA_SYSTEM_PACKAGES:-}; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt_get=(apt-get)
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    apt_get=(sudo apt-get)
  else
    apt_get=()
  fi
  if [ ${#apt_get[@]} -gt 0 ]; then
    echo "install: installing system packages: ${missing[*]}" >&2
    "${apt_get[@]}" update -qq
    DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq "${missing[@]}" >&2
  else
    echo "install: these system packages are missing: ${missing[*]}" >&2
    echo "install: run as root or with sudo, or: sudo apt-get install ${missing[*]}" >&2
    echo "install: (text chat works without them; speech needs them)" >&2
  fi
fi

is_py310() { "$@" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

find_python() {
  if [ -n "${PYTHON:-}" ] && is_py310 "$PYTHON"; then echo "$PYTHON"; return; fi
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.|$)' | sort -rV); do
      candidate="$(pyenv prefix "$v")/bin/python3.10"
      if is_py310 "$candidate"; then echo "$candidate"; return; fi
    done
  fi
  for candidate in python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10 python3; do
    if is_py310 "$candidate"; then command -v "$candidate"; return; fi
  done
  return 1
}

if [ -x "$VENV/bin/python" ] && ! is_py310 "$VENV/bin/python"; then
  echo "install: $VENV is not a Python 3.10 environment; recreating it" >&2
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! python=$(find_python); then
    echo "install: Python 3.10 is needed (Rasa 3.6 supports 3.10 at most) and none was found." >&2
    echo "install: install python3.10 (e.g. with pyenv: pyenv install 3.10) or set PYTHON=/path/to/python3.10" >&2
    exit 1
  fi
  echo "install: creating $VENV with $python" >&2
  "$python" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip "setuptools<70" wheel >&2
fi

echo "install: installing the voicebot and its pinned dependencies into $VENV" >&2
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[dev]" >&2
