#!/usr/bin/env python3
"""bench/soak.sh's two helpers.

  soak_check.py check KIND OUT REF   one job's output against its one-box reference: prints
                                     "ok HOW" (exit 0) or "wrong WHY" (exit 1)
  soak_check.py summary DIR BOUND_MB the run's figures from DIR/results, DIR/events and
                                     DIR/rss.csv; exit 1 when an output was wrong, a job lost,
                                     a node died by itself (crash) or a node's last resident
                                     memory is above BOUND_MB

Scene lists, beat grids and checksums must be equal (the arrays of their JSON). A transcode
passes when its bytes are the reference's, or else when every decoded frame of every stream
(video and audio, by ffmpeg's framemd5: timestamps, sizes, MD5 of the pixels or samples) is
the reference's: a Matroska or WebM file carries a random segment id, so two runs of the same
job differ in those bytes alone.
"""
import csv
import hashlib
import json
import os
import subprocess
import sys

KEYS = {
    "scenes": ["frames", "fps_rational", "cuts"],
    "beats": ["tempo_bpm", "meter", "beats", "downbeats", "sections"],
}


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def framemd5(path):
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-map", "0", "-f", "framemd5", "-"],
        capture_output=True, text=True, check=True,
    ).stdout
    return [l.replace(" ", "") for l in out.splitlines() if l and not l.startswith("#")]


def check(kind, out, ref):
    if kind == "transcode":
        if sha(out) == sha(ref):
            return True, "same bytes"
        a, b = framemd5(out), framemd5(ref)
        if a == b:
            return True, f"same {len(a)} decoded frames (bytes differ)"
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return False, f"{len(a)} decoded frames against {len(b)}, first difference at frame line {first}"
    x, y = json.load(open(out)), json.load(open(ref))
    if kind == "checksum":
        x = [x["combined"]] + [f["digest"] for f in x["files"]]
        y = [y["combined"]] + [f["digest"] for f in y["files"]]
        return x == y, f"{len(x) - 1} digests and the combined one"
    for k in KEYS[kind]:
        if x.get(k) != y.get(k):
            return False, f"{k}: {str(x.get(k))[:120]} against {str(y.get(k))[:120]}"
    n = len(x.get("cuts", x.get("beats", [])))
    return True, f"same {'cuts' if kind == 'scenes' else 'beats'} ({n})"


def summary(d, bound):
    jobs = [l.split("\t") for l in open(os.path.join(d, "results")) if l.strip()]
    events = [l.split() for l in open(os.path.join(d, "events")) if l.strip()]
    rows = list(csv.DictReader(open(os.path.join(d, "rss.csv"))))
    names = [k[4:] for k in rows[0] if k.startswith("rss_")]
    # results: job, spec, kind, submits, outcome (ok/wrong/lost), node, detail
    count = lambda o: sum(1 for j in jobs if j[4] == o)
    kinds = {}
    for j in jobs:
        kinds[j[2]] = kinds.get(j[2], 0) + 1
    resub = sum(int(j[3]) - 1 for j in jobs)
    resub_jobs = sum(1 for j in jobs if int(j[3]) > 1)
    kills = sum(1 for e in events if e[1] == "kill")
    freezes = sum(1 for e in events if e[1] == "freeze")
    crashes = [e[2] for e in events if e[1] == "crash"]
    print(f"jobs            {len(jobs)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})")
    print(f"finished        {count('ok') + count('wrong')} (right {count('ok')})")
    print(f"resubmitted     {resub_jobs} jobs ({resub} extra submits)")
    print(f"lost            {count('lost')}")
    print(f"wrong outputs   {count('wrong')}")
    print(f"kills           {kills}")
    print(f"freezes         {freezes}")
    if kills + freezes < 20:
        print(f"  (only {kills + freezes} kills and freezes: the issue asks for 20; lower CHAOS_MIN/CHAOS_MAX)")
    print(f"crashes         {len(crashes)}" + (f" ({', '.join(crashes)}: died by themselves, restarted)" if crashes else ""))
    for j in jobs:
        if j[4] != "ok":
            print(f"  job {j[0]} ({j[1]}, {j[2]}) {j[4]} on {j[5]}: {j[6].strip()}")
    secs = float(open(os.path.join(d, "duration")).read())
    print(f"duration        {secs / 60:.1f} min of jobs and chaos")
    bad = count("wrong") + count("lost") + len(crashes)
    print("node  rss_MB start  peak  end   store_MB end")
    for n in names:
        vals = [int(r[f"rss_{n}"]) for r in rows if r[f"rss_{n}"]]
        end = vals[-1] if vals else 0
        print(f"{n:5} {vals[0]:12} {max(vals):5} {end:5}   {rows[-1][f'store_{n}']:>8}")
        if end > bound:
            print(f"  node {n}: {end} MB resident at the end, above the bound of {bound} MB")
            bad += 1
    print("PASS" if bad == 0 else "FAIL")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    if sys.argv[1] == "check":
        try:
            ok, how = check(*sys.argv[2:5])
        except Exception as e:  # a missing or unreadable output is a wrong one
            ok, how = False, f"cannot compare: {e}"
        print(("ok " if ok else "wrong ") + how)
        sys.exit(0 if ok else 1)
    sys.exit(summary(sys.argv[2], int(sys.argv[3])))
