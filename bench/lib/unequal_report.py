"""The report of bench/unequal.sh, from its work dir (it can be run again on a kept one).

usage: unequal_report.py WORK FRAMES ROUNDS SIMULATE "JOBS" "MIXES" LOAD DURATION CHUNK PERIOD

Per job and mix: the wall time of `submit`, speed (frames / wall), ideal (the sum of the mix's
nodes' speeds alone), the split of shards, each node's idle time at the tail (from its last
shard's end to the end of the job's last shard, from the shard table's end times), a check of
the output, and the simulation's prediction. The simulation (examples/mix.rs: the coordinator's
rules in mesh::sched::sim) is given what the scheduler cannot choose: each node's shard speed as
it ran in that mix (frames / seconds of its shards), what its calibration told the coordinator
at the start (relative to the first node's), the job's shards, and the serial part of the job
(the first node alone: its wall time minus its shards' time). What it predicts is then what
the rules make of them: the split, the tail, the wall time.
"""
import json
import statistics
import subprocess
import sys

(work, frames, rounds, simulate, jobs, mixes, load, duration, chunk, period) = sys.argv[1:11]
frames, rounds = int(frames), int(rounds)
jobs, mixes = jobs.split(), mixes.split()


def time_of(label):
    return float(open(f"{work}/{label}.time").read())


def report(label):
    return json.load(open(f"{work}/{label}.json"))


def shards_of(rep):
    rows = rep.get("status", {}).get("shards") or []
    return [r for r in rows if r.get("state") == "Done"]


def speed_by_node(rows):
    frames_of, secs = {}, {}
    for r in rows:
        p = r.get("peer", "?")
        frames_of[p] = frames_of.get(p, 0) + r.get("frames", 0)
        secs[p] = secs.get(p, 0) + r.get("millis", 0) / 1000
    return {p: frames_of[p] / secs[p] for p in frames_of if secs[p] > 0}


def calibrated(d, job):
    try:
        caps = json.load(open(f"{work}/{d}/caps.json"))
    except (OSError, ValueError):
        return 0.0
    key = "scenes@1080p" if job == "scenes" else "encode/libx264@1080p"
    return float(caps.get("speeds", {}).get(key, 0.0))


def output_frames(label):
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0",
                          "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0",
                          f"{work}/{label}.mp4"], capture_output=True, text=True).stdout
    return int(out.strip().strip(",") or 0)


print(f"## Unequal boxes: {duration} s 1080p30 source ({frames} frames), shards of {chunk} s, "
      f"quota period {period} µs")
print()
print(f"Load average at the start {load}; {rounds} round(s), fresh nodes for every run (each "
      "core and share calibrated once per run; later nodes of it start from that calibration). "
      "Speed = frames ÷ wall time of `submit`; ideal = the sum of the mix's nodes' speeds alone.")
print()
print("| job | mix | round | wall | speed | ideal | **of ideal** | vs first node alone "
      "| simulated | sim vs real | shards per node (simulated) | tail idle per node | check |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
figures = {}  # (job, mix) -> [(of ideal, vs first node alone, sim vs real %)] by round
for job in jobs:
    for mix in mixes:
        shares = mix.split("+")
        for r in range(1, rounds + 1):
            alone_a = frames / time_of(f"{job}.{r}.alone-A")
            speeds = [alone_a] + [frames / time_of(f"{job}.{r}.alone-B{s}") for s in shares[1:]]
            label = f"{job}.{r}.mix-{mix}"
            try:
                wall = time_of(label)
            except OSError:
                print(f"| {job} | {mix} | {r} | not run | | | | | | | | | |")
                continue
            speed, ideal = frames / wall, sum(speeds)
            rows = shards_of(report(label))
            per, ends = {}, {}
            for row in rows:
                p = row.get("peer", "?")
                per[p] = per.get(p, 0) + 1
                if row.get("end_ms") is not None:
                    ends[p] = max(ends.get(p, 0), row["end_ms"])
            names = [f"n{i}" for i in range(1, len(shares) + 1)]
            last = max(ends.values()) if ends else None
            idle = ", ".join(f"{p} {(last - ends[p]) / 1000:.2f} s" if p in ends else f"{p} (none)"
                             for p in names) if ends else "n/a"
            split = ", ".join(f"{p} {per.get(p, 0)}" for p in names)
            # the simulation (see the module notes)
            ran = speed_by_node(rows)
            alone_rows = shards_of(report(f"{job}.{r}.alone-A"))
            alone_speed = speed_by_node(alone_rows).get("n1", 0.0)
            true = [ran.get(p, 0.0) for p in names]
            # a node that ran no shard of the mix: its speed alone, scaled as the first node's
            for i, s in enumerate(shares):
                if true[i] <= 0:
                    lbl = f"{job}.{r}.alone-A" if i == 0 else f"{job}.{r}.alone-B{s}"
                    true[i] = speed_by_node(shards_of(report(lbl))).get("n1", alone_speed)
            calib = [calibrated(f"{label}.d{i}", job) for i in range(1, len(shares) + 1)]
            believed = [true[0] * c / calib[0] if calib[0] > 0 and c > 0 else 0.0 for c in calib]
            serial = time_of(f"{job}.{r}.alone-A") - sum(x.get("millis", 0) for x in alone_rows) / 1000
            sizes = ",".join(str(x.get("frames", 0)) for x in sorted(rows, key=lambda x: x["index"]))
            sim = subprocess.run([simulate, "--speeds", ",".join(f"{v:.3f}" for v in true),
                                  "--believed", ",".join(f"{v:.3f}" for v in believed),
                                  "--shards", sizes, "--serial", f"{max(serial, 0):.3f}"],
                                 capture_output=True, text=True)
            off = None
            try:
                predicted = float(sim.stdout.split()[0])
                simcol = f"{predicted:.2f} s"
                off = (predicted - wall) / wall * 100
                diff = f"{off:+.1f} %"
                simsplit = sim.stdout.split()[2]
            except (ValueError, IndexError):
                simcol, diff, simsplit = "failed", sim.stderr.strip()[:60], ""
            figures.setdefault((job, mix), []).append((speed / ideal, speed / alone_a, off))
            if job == "transcode":
                check = f"{output_frames(label)}/{frames} frames"
            else:
                same = (open(f"{work}/{label}.csv").read()
                        == open(f"{work}/{job}.{r}.alone-A.csv").read())
                check = "same cut list as alone" if same else "CUT LIST DIFFERS"
            print(f"| {job} | {mix} | {r} | {wall:.2f} s | {speed:.1f} fps | {ideal:.1f} fps | "
                  f"**{speed / ideal:.3f}×** | {speed / alone_a:.2f}× | {simcol} | {diff} | "
                  f"{split} ({simsplit}) | {idle} | {check} |")
pairs = []
for job in jobs:
    for r in range(1, rounds + 1):
        try:
            ta, tb = time_of(f"{job}.{r}.pair-A"), time_of(f"{job}.{r}.pair-B")
            mix = time_of(f"{job}.{r}.mix-1+1")
        except OSError:
            continue
        alone_a = frames / time_of(f"{job}.{r}.alone-A")
        both = frames / ta + frames / tb
        pairs.append((job, r, ta, tb, both / alone_a, frames / mix / both))
if pairs:
    print()
    print("Two busy cores, the ceiling of 1+1: two separate one-core nodes, each running the job "
          "alone, both at once (after the 1+1 mix of the same round):")
    print()
    print("| job | round | node A | node B | both ÷ A alone | **1+1 mesh ÷ both** |")
    print("|---|---:|---:|---:|---:|---:|")
    for job, r, ta, tb, ceiling, share in pairs:
        print(f"| {job} | {r} | {ta:.2f} s | {tb:.2f} s | {ceiling:.2f}× | **{share:.3f}×** |")
print()
print("Nodes alone (frames ÷ wall):")
print()
all_shares = sorted({s for m in mixes for s in m.split("+")[1:]}, key=float)
for job in jobs:
    for r in range(1, rounds + 1):
        a = time_of(f"{job}.{r}.alone-A")
        parts = [f"A {frames / a:.1f} fps ({a:.2f} s)"]
        for s in all_shares:
            t = time_of(f"{job}.{r}.alone-B{s}")
            parts.append(f"B at {s} {frames / t:.1f} fps ({t:.2f} s)")
        print(f"- {job}, round {r}: " + "; ".join(parts))

if rounds > 1:
    # each round measures the nodes alone and the mixes again, minutes apart: the machine's
    # drift moves a round's figure by as much as the goals' margins, so the median is the figure
    goals = {"1+1": 0.9, "1+0.5": 0.9, "1+0.25": 0.85}
    print()
    print(f"Median of the {rounds} rounds:")
    print()
    print("| job | mix | of ideal, by round | **median of ideal** | goal | vs first node alone "
          "(median) | sim vs real (median) |")
    print("|---|---|---|---:|---|---:|---:|")
    for (job, mix), rows in figures.items():
        of = [x[0] for x in rows]
        med = statistics.median(of)
        goal = goals.get(mix)
        if mix == "1+1":
            vs = statistics.median(x[1] for x in rows)
            verdict = f"≥ 1.9× one node: {'met' if vs >= 1.9 else 'NOT MET'}"
            ceil = [p[4] for p in pairs if p[0] == job]
            if ceil:
                verdict += f" (two busy cores give {statistics.median(ceil):.2f}×)"
        elif goal is not None:
            verdict = f"≥ {goal}×: {'met' if med >= goal else 'NOT MET'}"
        else:
            verdict = "none"
        offs = [x[2] for x in rows if x[2] is not None]
        sim = f"{statistics.median(offs):+.1f} %" if offs else "n/a"
        print(f"| {job} | {mix} | {', '.join(f'{x:.3f}' for x in of)} | **{med:.3f}×** | "
              f"{verdict} | {statistics.median(x[1] for x in rows):.2f}× | {sim} |")
