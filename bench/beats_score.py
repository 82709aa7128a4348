"""Scores the beat trackers of bench/beats.sh against the Frets on Fire charts.

beats_score.py SONGS.tsv RESULTS_DIR OUT.md
  SONGS.tsv    rows of: slug, song folder (with notes.mid), mixed audio, its duration in s
  RESULTS_DIR  holds <slug>.<tracker>.json and walls.tsv (rows of: slug, tracker, seconds)
Prints a Markdown table (also written to OUT.md), then a check of each chart against
the trackers; the slugs of songs whose chart looks doubtful go to RESULTS_DIR/doubtful.txt.

Reference grid: every quarter note from tick 0 to the end of the audio, downbeats every
bar from tick 0, read from the MIDI file's tempo map and time signatures (4/4 if none).
F-measure as mir_eval's: 70 ms window, one-to-one matching. "F" columns use the whole
song; "≥5 s" columns drop beats before 5 s from both sides first, as mir_eval.beat.evaluate
does. When mir_eval is installed, its f_measure is checked to agree with ours.
"""
import json
import os
import statistics
import sys

import numpy as np

try:  # optional: only to check our F-measure against the reference implementation
    import mir_eval as MIR_EVAL
except ImportError:
    MIR_EVAL = None

WINDOW = 0.07
SHIFT = float(os.environ.get("CHART_OFFSET_MS", "0")) / 1000
TRACKERS = ("librosa", "madmom", "rendermesh")


def read_midi(path):
    """Ticks per quarter, tempo changes [(tick, us/quarter)], meters [(tick, num, den)],
    note-on ticks."""
    data = open(path, "rb").read()
    assert data[:4] == b"MThd", "not a standard MIDI file"
    hlen = int.from_bytes(data[4:8], "big")
    ntracks = int.from_bytes(data[10:12], "big")
    tpq = int.from_bytes(data[12:14], "big")
    assert tpq < 0x8000, "SMPTE time division is not handled"
    tempos, meters, notes = [], [], []
    pos = 8 + hlen
    for _ in range(ntracks):
        assert data[pos:pos + 4] == b"MTrk"
        end = pos + 8 + int.from_bytes(data[pos + 4:pos + 8], "big")
        pos, tick, status = pos + 8, 0, 0
        while pos < end:
            delta, pos = _varlen(data, pos)
            tick += delta
            if data[pos] & 0x80:
                status, pos = data[pos], pos + 1
            if status == 0xFF:  # meta event: type, length, body
                kind = data[pos]
                size, pos = _varlen(data, pos + 1)
                body = data[pos:pos + size]
                if kind == 0x51:
                    tempos.append((tick, int.from_bytes(body, "big")))
                elif kind == 0x58:
                    meters.append((tick, body[0], 2 ** body[1]))
                pos += size
            elif status in (0xF0, 0xF7):  # sysex
                size, pos = _varlen(data, pos)
                pos += size
            else:  # channel message; running status reuses the last status byte
                nbytes = 1 if status & 0xF0 in (0xC0, 0xD0) else 2
                if status & 0xF0 == 0x90 and data[pos + 1] > 0:
                    notes.append(tick)
                pos += nbytes
        pos = end
    return tpq, sorted(tempos) or [(0, 500000)], sorted(meters) or [(0, 4, 4)], sorted(notes)


def _varlen(data, pos):
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos


def tick_to_seconds(ticks, tpq, tempos):
    ticks = np.asarray(ticks, dtype=float)
    out = np.zeros_like(ticks)
    start_s = 0.0
    for i, (tick, us) in enumerate(tempos):
        nxt = tempos[i + 1][0] if i + 1 < len(tempos) else np.inf
        seg = (ticks >= tick) & (ticks < nxt)
        out[seg] = start_s + (ticks[seg] - tick) * us / 1e6 / tpq
        if nxt < np.inf:
            start_s += (nxt - tick) * us / 1e6 / tpq
    return out


def chart_grid(mid_path, duration, shift=0.0):
    """Chart beats and downbeats (s) up to duration, tempo (first), meter (first), notes (s);
    shift (s) moves all of them later, for a chart known to lead its audio."""
    tpq, tempos, meters, notes = read_midi(mid_path)
    # enough ticks to pass the end of the audio at the slowest tempo of the map
    last = int(duration * 1e6 / min(us for _, us in tempos) * tpq) + tpq
    beats = tick_to_seconds(np.arange(0, last, tpq), tpq, tempos) + shift
    bar_ticks = []
    for i, (tick, num, den) in enumerate(meters):
        nxt = meters[i + 1][0] if i + 1 < len(meters) else last
        bar_ticks.extend(range(tick, nxt, num * tpq * 4 // den))
    downbeats = tick_to_seconds(bar_ticks, tpq, tempos) + shift
    inside = lambda t: t[(t >= 0) & (t <= duration)]  # noqa: E731
    return (inside(beats), inside(downbeats), 60e6 / tempos[0][1], f"{meters[0][1]}/{meters[0][2]}",
            tick_to_seconds(notes, tpq, tempos) + shift)


def matches(ref, est, window=WINDOW):
    """Largest one-to-one matching of sorted event lists within ±window. On a line, taking
    the earliest possible pair first is optimal."""
    i = j = count = 0
    while i < len(ref) and j < len(est):
        if est[j] < ref[i] - window:
            j += 1
        elif est[j] > ref[i] + window:
            i += 1
        else:
            count, i, j = count + 1, i + 1, j + 1
    return count


def f_measure(ref, est, trim=0.0):
    ref, est = np.asarray(ref, float), np.asarray(est, float)
    ref, est = ref[ref >= trim], est[est >= trim]
    if not len(ref) or not len(est):
        return 0.0
    m = matches(ref, est)
    precision, recall = m / len(est), m / len(ref)
    score = 0.0 if m == 0 else 2 * precision * recall / (precision + recall)
    if MIR_EVAL is not None:
        theirs = MIR_EVAL.beat.f_measure(ref, est, WINDOW)
        if abs(theirs - score) > 1e-9:
            print(f"warning: mir_eval's F {theirs:.4f} differs from ours {score:.4f}", file=sys.stderr)
    return score


def offsets(ref, est):
    """Signed offsets (s) of each estimated beat from the nearest chart beat."""
    ref, est = np.asarray(ref, float), np.asarray(est, float)
    idx = np.clip(np.searchsorted(ref, est), 1, len(ref) - 1)
    nearest = np.where(est - ref[idx - 1] < ref[idx] - est, ref[idx - 1], ref[idx])
    return est - nearest


def audio_offset(mix, beats, limit=0.08):
    """Where the chart's beats sit against the audio: the shift within ±limit s that puts
    them on the largest rises of the mix's energy (10 ms frames, log energy, positive
    changes) — the same check as tests/beats.rs, independent of every tracker."""
    import subprocess
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", mix, "-ac", "1", "-ar",
                          "24000", "-f", "f32le", "-"], capture_output=True, check=True).stdout
    x = np.frombuffer(raw, dtype=np.float32)
    n = len(x) // 240
    energy = np.log((x[:n * 240].astype(np.float64) ** 2).reshape(n, 240).mean(1) + 1e-10)
    rise = np.concatenate([[0.0], np.maximum(0.0, np.diff(energy))])
    frames = np.arange(n) / 100.0 + 0.005  # a rise in a frame happened, on average, mid-frame
    b = np.asarray(beats)
    shifts = np.arange(-limit, limit + 1e-9, 0.001)
    scores = [np.interp(b + d, frames, rise, left=0.0, right=0.0).sum() for d in shifts]
    return float(shifts[int(np.argmax(scores))])


def fmt(x, spec):
    return "" if x is None else format(x, spec)


def main():
    songs_tsv, results, out_md = sys.argv[1:4]
    walls = {}
    with open(os.path.join(results, "walls.tsv")) as f:
        for line in f:
            slug, tracker, secs = line.split("\t")
            walls.setdefault((slug, tracker), []).append(float(secs))
    rows, checks, doubtful, totals, versions = [], [], [], {}, {}
    for line in open(songs_tsv):
        slug, folder, mix, duration = line.rstrip("\n").split("\t")
        mid = os.path.join(folder, "notes.mid")
        beats, downs, bpm, meter, notes = chart_grid(mid, float(duration), SHIFT)
        shift = audio_offset(mix, beats)
        aligned = [t + shift for t in beats]
        aligned_downs = [t + shift for t in downs]
        rows.append(f"| {slug} | chart | | | {bpm:.1f} ({meter}) | | | | {shift * 1000:+.0f} ms | |")
        best, found = 0.0, {}
        for tracker in TRACKERS:
            if (slug, tracker) not in walls:  # not run this time
                continue
            found[tracker] = est = json.load(open(os.path.join(results, f"{slug}.{tracker}.json")))
            versions[tracker] = est.get("version", "")
            fb, fb5 = f_measure(beats, est["beats"]), f_measure(beats, est["beats"], 5.0)
            fa = f_measure(aligned, est["beats"])
            fd = fd5 = fda = None
            if "downbeats" in est:
                fd, fd5 = f_measure(downs, est["downbeats"]), f_measure(downs, est["downbeats"], 5.0)
                fda = f_measure(aligned_downs, est["downbeats"])
            wall = statistics.median(walls[(slug, tracker)])
            totals.setdefault(tracker, {})[slug] = wall
            best = max(best, fb)
            rows.append(f"| {slug} | {tracker} | {fb:.3f} | {fmt(fd, '.3f')} | "
                        f"{fmt(est.get('tempo_bpm'), '.1f')} | {wall:.2f} | {fb5:.3f} | {fmt(fd5, '.3f')} "
                        f"| {fa:.3f} | {fmt(fda, '.3f')} |")
        checks.append(chart_check(slug, beats, downs, bpm, meter, notes, found))
        if best < 0.8:
            doubtful.append(slug)
    head = ("| song | tracker | F beats | F downbeats | tempo (BPM) | wall s (median) "
            "| F beats ≥5 s | F downbeats ≥5 s | F beats, chart aligned | F downbeats, aligned |"
            "\n|---|---|---|---|---|---|---|---|---|---|")
    table = [head] + rows
    for tracker, by_song in totals.items():
        table.append(f"| all songs | {tracker} | | | | {sum(by_song.values()):.2f} | | | | |")
    if "rendermesh" in totals and "librosa" in totals:
        for slug, wall in totals["rendermesh"].items():
            table.append(f"| {slug} | rendermesh / librosa wall | | | | "
                         f"{wall / totals['librosa'][slug]:.2f}× | | | | |")
    text = "\n".join(table) + "\n"
    note = ("\nF: 70 ms window, one-to-one matching, whole song (no trimming); ≥5 s: beats before"
            f" 5 s dropped first, as mir_eval.beat.evaluate does. Chart moved {SHIFT * 1000:+.0f} ms"
            " (CHART_OFFSET_MS). Aligned: the chart moved by the shift (its own row) that puts its"
            " beats on the mix's largest energy rises, within ±80 ms. mir_eval cross-check: "
            f"{'on (' + MIR_EVAL.__version__ + ')' if MIR_EVAL else 'off (not installed)'}. Versions: "
            + ", ".join(f"{t} {v}".strip() for t, v in versions.items()) + ".\n")
    check_text = "\n## Chart check\n\n" + "\n".join(checks) + "\n"
    print(text + note + check_text)
    with open(out_md, "w") as f:
        f.write("# Beat trackers vs Frets on Fire charts\n\n" + text + note + check_text)
    with open(os.path.join(results, "doubtful.txt"), "w") as f:
        f.write("".join(s + "\n" for s in doubtful))


def chart_check(slug, beats, downs, bpm, meter, notes, found):
    """How each tracker sits against the chart: metrical level, offset, beat and bar phase
    (at the chart's first tempo and meter)."""
    period = 60.0 / bpm
    num, den = map(int, meter.split("/"))
    bar = period * num * 4 / den
    parts = [f"- **{slug}**: chart {bpm:.1f} BPM, first note at {notes[0]:.3f} s = chart beat "
             f"{notes[0] / period:.2f}" if len(notes) else f"- **{slug}**"]
    for tracker, est in found.items():
        b = np.asarray(est["beats"], float)
        if len(b) < 2:
            parts.append(f"{tracker}: too few beats")
            continue
        off = offsets(beats, b)
        close = off[np.abs(off) <= WINDOW]
        close_mean = fmt(close.mean() * 1000 if len(close) else None, "+.0f")
        line = (f"{tracker}: beat period ×{np.median(np.diff(b)) / period:.2f} the chart's; offset "
                f"to the nearest chart beat median {np.median(off) * 1000:+.0f} ms, "
                f"{len(close)}/{len(b)} within 70 ms (their mean {close_mean} ms), "
                f"{np.mean(np.abs(off) > period / 4):.0%} nearer the chart's off-beats")
        if est.get("downbeats"):
            # where in the chart's bar its downbeats fall, to the half beat: 1, 1+, 2, 2+, ...
            halves = round(2 * bar / period)
            pos = np.round(2 * ((np.asarray(est["downbeats"]) - downs[0]) % bar) / period) % halves
            counts = np.bincount(pos.astype(int), minlength=halves)
            names = [f"{k // 2 + 1}{'+' if k % 2 else ''}" for k in range(halves)]
            line += "; downbeats on chart beat " + ", ".join(
                f"{n}: {c}" for n, c in zip(names, counts) if c)
        parts.append(line)
    return ";\n  ".join(parts)


if __name__ == "__main__":
    main()
