#!/usr/bin/env bash
# Benchmark for issue 18: a 30 s montage from 10 minutes of 1080p30 footage (10 generated clips
# of 60 s, a hard cut every 5 s) and a 3-minute song ("War of freedom" from Debian's
# fretsonfire-songs-sectoid).
#
#   1. one box, cold cache: `submit` in-process (a mesh of one, every core);
#   2. one box, warm cache: the same data dir, another seed: re-plan and render only;
#   3. one node on one core, cold (network namespace a);
#   4. two nodes on one core each, cold (namespaces a and b, a veth between them).
#
# Reports wall times, 3 ÷ 4 (goal ≥ 1.8×), 2 ÷ 1, the shards per node and checks every output
# (900 frames, the plan's frame count). Results go to BENCH_DIR/montage-results.md.
#
# Usage: sudo bench/montage.sh [--bench-dir DIR] [--no-build]
# Environment: BENCH_DIR (default <repo>/target/bench), RENDERMESH (default the release
# binary, built if missing), CORES (two CPU numbers, default "0 1"), PRESET (x264 preset of
# the render, default medium).
#
# Needs root (ip netns) and an otherwise idle machine: the load average is printed.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$REPO_ROOT/target/bench}
RENDERMESH=${RENDERMESH:-$REPO_ROOT/target/release/rendermesh}
CORES=${CORES:-"0 1"}
PRESET=${PRESET:-medium}
SONG="/usr/share/games/fretsonfire/data/songs/sectoid/War of freedom/song.ogg"
BUILD=1

while (($#)); do
    case $1 in
        --bench-dir) BENCH_DIR=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "montage.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[montage] %s\n' "$*" >&2; }
die() { printf '[montage] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root for network namespaces (run with sudo)"
[[ -s $SONG ]] || die "the song is missing: install fretsonfire-songs-sectoid (tests/deps.sh does)"
read -r CORE_A CORE_B <<<"$CORES"
if [[ ! -x $RENDERMESH ]]; then
    ((BUILD)) || die "$RENDERMESH is missing and --no-build was given"
    (cd "$REPO_ROOT" && cargo build --release -q -p rendermesh-node)
fi
RENDERMESH=$(readlink -f "$RENDERMESH")
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(readlink -f "$BENCH_DIR")
WORK=$(mktemp -d "$BENCH_DIR/montage.XXXXXX")

# ------------------------------------------------------------------ footage ---
# Ten 60 s clips, each a different order and tint of moving 1080p patterns, a cut every 5 s.
FOOTAGE=$BENCH_DIR/montage-footage-v1
PATTERNS=(
    "testsrc2=s=1920x1080:r=30"
    "smptehdbars=s=1920x1080:r=30,scroll=h=0.004"
    "gradients=s=1920x1080:r=30:seed=7:n=5:speed=0.03"
    "rgbtestsrc=s=1920x1080:r=30"
    "testsrc2=s=960x540:r=30,rotate=a=0.35*t:c=navy,scale=1920:1080"
    "cellauto=s=640x360:r=30:rule=110:seed=11:ratio=0.5,scale=1920:1080:flags=neighbor"
    "life=s=480x270:r=30:seed=5:ratio=0.3:mold=8,scale=1920:1080:flags=neighbor"
    "testsrc=s=1920x1080:r=30"
)
make_clip() {
    local i=$1 out=$FOOTAGE/clip-$1.mp4 graph="" inputs="" n
    for ((n = 0; n < 12; n++)); do
        graph+="${PATTERNS[(i * 3 + n * 5) % ${#PATTERNS[@]}]},hue=h=$(((i * 37 + n * 71) % 360)),trim=end_frame=150,setpts=PTS-STARTPTS,setsar=1,format=yuv420p[v$n];"
        inputs+="[v$n]"
    done
    graph+="${inputs}concat=n=12:v=1:a=0[v]"
    ffmpeg -y -hide_banner -loglevel error -nostdin -filter_complex "$graph" \
        -f lavfi -i "sine=frequency=$((200 + i * 30)):sample_rate=48000:duration=60" \
        -map '[v]' -map 0:a -threads 1 -c:v libx264 -preset veryfast -crf 22 -g 60 \
        -pix_fmt yuv420p -c:a aac -b:a 96k "$out.partial.mp4"
    mv -f "$out.partial.mp4" "$out"
}
mkdir -p "$FOOTAGE"
for i in 0 2 4 6 8; do
    for j in "$i" $((i + 1)); do
        [[ -s $FOOTAGE/clip-$j.mp4 ]] || { log "generating footage clip $j of 10"; make_clip "$j" & }
    done
    wait
done

# ------------------------------------------------------------------- runs ---
KEY=$WORK/swarm.key
"$RENDERMESH" keygen >"$KEY" 2>/dev/null
# shellcheck source=lib/netns.sh
source "$REPO_ROOT/bench/lib/netns.sh"
netns_up

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $LOAD_AT_START ($(nproc) cores)"

# submit LABEL DATA SEED [ns core] -> wall seconds into LABEL.time
submit() {
    local label=$1 data=$2 seed=$3 t0 t1
    local -a pre=()
    [[ -n ${4:-} ]] && pre=(ip netns exec "$4" taskset -c "$5")
    log "$label"
    t0=$(now)
    "${pre[@]}" "$RENDERMESH" --data-dir "$data" submit montage "$FOOTAGE" --music "$SONG" \
        -o "$WORK/$label.mp4" --length 30 --start 40 --seed "$seed" --preset "$PRESET" \
        --plan "$WORK/$label.plan.json" --report "$WORK/$label.report.json" -q \
        >"$WORK/$label.out" 2>&1 || die "$label failed: $(tail -5 "$WORK/$label.out")"
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }' >"$WORK/$label.time"
}

submit box-cold "$WORK/box" 1
submit box-warm "$WORK/box" 2

start_node a "$NS_A" "$CORE_A" "$ADDR_A"
submit one-core "$WORK/a" 1 "$NS_A" "$CORE_A"
stop_nodes
mv "$WORK/a" "$WORK/one-core-a"

start_node a "$NS_A" "$CORE_A" "$ADDR_A"
start_node b "$NS_B" "$CORE_B" "$ADDR_B" "$ADDR_A"
wait_peer "$WORK/a" b
submit two-nodes "$WORK/a" 1 "$NS_A" "$CORE_A"
stop_nodes

t() { cat "$WORK/$1.time"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
frames_of() {
    ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets \
        -of csv=p=0 "$1" | tr -d ','
}
check() {
    local f p
    f=$(frames_of "$WORK/$1.mp4")
    p=$(grep -o '"frames": *[0-9]*' "$WORK/$1.plan.json" | head -1 | grep -o '[0-9]*$')
    [[ $f == 900 && $p == 900 ]] && echo "900 frames" || echo "MISMATCH: $f frames, plan $p"
}
shards_of() {
    grep -o '"peer": *"[^"]*"' "$WORK/$1.report.json" | sed 's/.*"\([^"]*\)"$/\1/' | sort | uniq -c \
        | awk '{ printf "%s%s %s", sep, $2, $1; sep = ", " }'
}
stages_of() {
    grep -o '"stage_name": *"[^"]*"' "$WORK/$1.report.json" | head -1 | sed 's/.*"\([^"]*\)"$/\1/'
}

{
    echo "## Montage: 30 s from 10 min of 1080p30 footage and a 3-minute song"
    echo
    echo "10 clips × 60 s 1080p30 (H.264, a cut every 5 s), song \"War of freedom\" (2:55) from"
    echo "--start 40; output 1920x1080 at 30 fps, x264 $PRESET. Load average at start $LOAD_AT_START,"
    echo "$(nproc) cores."
    echo
    echo "| run | wall | check | shards per node | last stage |"
    echo "|---|---:|---|---|---|"
    for l in box-cold box-warm one-core two-nodes; do
        echo "| $l | $(t $l) s | $(check $l) | $(shards_of $l) | $(stages_of $l) |"
    done
    echo
    echo "- two nodes (one core each) against one node on one core, cold: **$(ratio "$(t one-core)" "$(t two-nodes)")×**"
    echo "- one box, warm (re-plan + render) against cold: $(ratio "$(t box-warm)" "$(t box-cold)") of the time"
    echo
} | tee "$BENCH_DIR/montage-results.md"
log "work files in $WORK"
