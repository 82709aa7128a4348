#!/usr/bin/env bash
# Install what rendermesh needs to build and test on Debian/Ubuntu, skipping what is there.
# Run as root or with sudo available. Safe to run again.
set -euo pipefail

pkgs=(ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
      libavfilter-dev libavdevice-dev libclang-dev clang pkg-config ca-certificates curl systemd
      fretsonfire-songs-sectoid python3-venv chromium prometheus fonts-dejavu-core)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] || {
        echo "deps: installing the Rust toolchain (rustup)" >&2
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
    }
    echo "deps: add \$HOME/.cargo/bin to PATH (source \$HOME/.cargo/env)" >&2
fi
# The reference OpenTimelineIO library for the timeline export check (tests/timeline_check.py),
# in a venv of its own, target/py-otio. Under sudo it is made as the calling user, so that
# target/ stays theirs. Wheels only: 0.17.0 has them for Python 3.7-3.12, 0.18.1 for
# 3.10-3.13; pip takes the newest one there is for this Python.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/py-otio"
as_user=()
if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    as_user=(sudo -u "$SUDO_USER" -H)
fi
if ! "$venv/bin/python" -c 'import opentimelineio' >/dev/null 2>&1; then
    echo "deps: installing opentimelineio in target/py-otio" >&2
    ${as_user[@]+"${as_user[@]}"} mkdir -p "$root/target"
    ${as_user[@]+"${as_user[@]}"} python3 -m venv --clear "$venv" >/dev/null
    ${as_user[@]+"${as_user[@]}"} "$venv/bin/pip" install -q --disable-pip-version-check \
        --only-binary=:all: 'opentimelineio>=0.17,<0.19' >/dev/null
fi
echo "deps: ok" >&2
