"""Onset strength of a mix against its chart's beats and the trackers' beats, to check a
chart by eye and by ear: beats_plot.py MIX notes.mid RESULTS_DIR OUT.png

Panels: the first 12 s, 12 s in the middle, the last 12 s (chart beats grey lines,
downbeats black, each tracker's beats marks along the top, chart notes red ticks), then the
onset strength of the whole song folded on the chart's bar: a chart in phase with the
music peaks on its beat lines. Also writes OUT-clicks.flac: the mix with a click on each
chart beat (a higher one on each bar) to listen to.
"""
import json
import os
import sys

import librosa
import matplotlib
import soundfile

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from beats_score import TRACKERS, chart_grid  # noqa: E402

SPAN = 12.0


def main():
    mix, mid, results, out = sys.argv[1:5]
    slug = os.path.basename(mix).rsplit(".", 1)[0]
    y, sr = librosa.load(mix, sr=22050)
    duration = len(y) / sr
    hop = 128
    env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop)
    times = librosa.times_like(env, sr=sr, hop_length=hop)
    beats, downs, bpm, meter, notes = chart_grid(mid, duration)
    found = {}
    for tracker in TRACKERS:
        path = os.path.join(results, f"{slug}.{tracker}.json")
        if os.path.exists(path):
            found[tracker] = np.asarray(json.load(open(path))["beats"], float)
    starts = [0.0, duration / 2 - SPAN / 2, duration - SPAN]
    fig, axes = plt.subplots(len(starts) + 1, 1, figsize=(14, 3 * (len(starts) + 1)))
    for ax, start in zip(axes, starts):
        end = start + SPAN
        sel = (times >= start) & (times <= end)
        ax.plot(times[sel], env[sel], color="tab:blue", lw=0.8, label="onset strength")
        top = env[sel].max() if sel.any() else 1.0
        for b in beats[(beats >= start) & (beats <= end)]:
            ax.axvline(b, color="0.6", lw=0.8)
        for d in downs[(downs >= start) & (downs <= end)]:
            ax.axvline(d, color="black", lw=1.4)
        for k, (tracker, est) in enumerate(found.items()):
            pts = est[(est >= start) & (est <= end)]
            ax.plot(pts, np.full(len(pts), top * (1.05 + 0.07 * k)), "v", ms=6, label=tracker)
        n = notes[(notes >= start) & (notes <= end)]
        ax.plot(n, np.full(len(n), -0.05 * top), "|", color="tab:red", ms=8, label="chart notes")
        ax.set_xlim(start, end)
        ax.set_xlabel("s")
    fold(axes[-1], times, env, bpm, meter)
    axes[0].legend(loc="upper right", fontsize=8, ncol=5)
    axes[0].set_title(f"{slug}: chart {bpm:.1f} BPM {meter} (grey: chart beats, black: bars)")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    clicks = librosa.clicks(times=beats, sr=sr, length=len(y), click_freq=1000.0)
    clicks += librosa.clicks(times=downs, sr=sr, length=len(y), click_freq=2000.0)
    soundfile.write(out.rsplit(".", 1)[0] + "-clicks.flac", 0.5 * y + 0.3 * clicks, sr)


def fold(ax, times, env, bpm, meter):
    """Mean onset strength against position in the chart's bar (constant tempo assumed)."""
    num, den = map(int, meter.split("/"))
    beats_in_bar = num * 4 / den
    pos = (times * bpm / 60.0) % beats_in_bar
    bins = np.linspace(0, beats_in_bar, int(48 * beats_in_bar) + 1)
    which = np.digitize(pos, bins) - 1
    profile = np.bincount(which, env, len(bins) - 1) / np.maximum(np.bincount(which, None, len(bins) - 1), 1)
    ax.plot(bins[:-1], profile, color="tab:blue")
    for b in range(int(beats_in_bar) + 1):
        ax.axvline(b, color="black" if b % beats_in_bar == 0 else "0.6")
    ax.set_xlabel("position in the chart's bar (beats); mean onset strength over the song")


if __name__ == "__main__":
    main()
