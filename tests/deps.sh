#!/usr/bin/env bash
# Install what rendermesh needs to build and test on Debian/Ubuntu, skipping what is there.
# Run as root or with sudo available. Safe to run again.
set -euo pipefail

pkgs=(ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
      libavfilter-dev libavdevice-dev libclang-dev clang pkg-config ca-certificates curl systemd
      fretsonfire-songs-sectoid)
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
echo "deps: ok" >&2
