"""Beat tracking with librosa, for bench/beats.sh: beats_librosa.py IN OUT.json

Writes {"tracker", "version", "tempo_bpm", "beats": [s...]}; librosa has no downbeats.
"""
import json
import sys

import librosa
import numpy as np


def main():
    src, out = sys.argv[1], sys.argv[2]
    y, sr = librosa.load(src, sr=22050)
    tempo, beats = librosa.beat.beat_track(y=y, sr=sr, units="time")
    result = {
        "tracker": "librosa",
        "version": librosa.__version__,
        "tempo_bpm": float(np.atleast_1d(tempo)[0]),
        "beats": [round(float(b), 4) for b in beats],
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
