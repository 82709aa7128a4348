#!/usr/bin/env bash
# Benchmark for issue 19: many files at once.
#
#   1. batch transcode of 24 generated files × 20 s 1080p30 (H.264 + AAC): one node pinned
#      to one core (network namespace a), then two nodes pinned to one core each
#      (namespaces a and b, a veth between them), both submitted on node a; goal ≥ 1.85×;
#   2. proxies of the same 24 files on one box (every core, in-process, a fresh data dir),
#      against a shell loop of ffmpeg with the same settings (scale to 540 lines, the same
#      scaler, x264 at the same preset and CRF, audio copied); goal ≤ 1.0× the loop's time;
#      then ProRes proxies against the same kind of loop (prores_ks proxy, PCM audio).
#
# Every output is checked (frame count = the source's). Results go to
# BENCH_DIR/batch-results.md.
#
# Usage: sudo bench/batch.sh [--bench-dir DIR] [--no-build] [--skip-mesh] [--skip-proxy]
# Environment: BENCH_DIR (default <repo>/target/bench), RENDERMESH (default the release
# binary, built if missing), CORES (two CPU numbers, default "0 1"), PRESET (x264 preset of
# the transcode, default ultrafast), FILES (default 24), SECONDS_EACH (default 20).
#
# Needs root (ip netns) and an otherwise idle machine: the load average is printed.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$REPO_ROOT/target/bench}
RENDERMESH=${RENDERMESH:-$REPO_ROOT/target/release/rendermesh}
CORES=${CORES:-"0 1"}
PRESET=${PRESET:-ultrafast}
FILES=${FILES:-24}
SECONDS_EACH=${SECONDS_EACH:-20}
BUILD=1
DO_MESH=1
DO_PROXY=1

while (($#)); do
    case $1 in
        --bench-dir) BENCH_DIR=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        --skip-mesh) DO_MESH=0 ;;
        --skip-proxy) DO_PROXY=0 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "batch.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[batch] %s\n' "$*" >&2; }
die() { printf '[batch] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root for network namespaces (run with sudo)"
read -r CORE_A CORE_B <<<"$CORES"
if [[ ! -x $RENDERMESH ]]; then
    ((BUILD)) || die "$RENDERMESH is missing and --no-build was given"
    (cd "$REPO_ROOT" && cargo build --release -q -p rendermesh-node)
fi
RENDERMESH=$(readlink -f "$RENDERMESH")
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(readlink -f "$BENCH_DIR")
WORK=$(mktemp -d "$BENCH_DIR/batch.XXXXXX")

# ------------------------------------------------------------------ footage ---
LIB=$BENCH_DIR/batch-library-v1-${FILES}x${SECONDS_EACH}s
PATTERNS=(
    "testsrc2=s=1920x1080:r=30"
    "smptehdbars=s=1920x1080:r=30,scroll=h=0.004"
    "gradients=s=1920x1080:r=30:seed=7:n=5:speed=0.03"
    "testsrc=s=1920x1080:r=30"
)
make_file() {
    local i=$1 out=$LIB/clip-$(printf %02d "$1").mp4
    ffmpeg -y -hide_banner -loglevel error -nostdin \
        -f lavfi -i "${PATTERNS[i % ${#PATTERNS[@]}]},hue=h=$((i * 15)),format=yuv420p" \
        -f lavfi -i "sine=frequency=$((200 + i * 20)):sample_rate=48000" -t "$SECONDS_EACH" \
        -threads 1 -c:v libx264 -preset veryfast -crf 22 -g 60 -c:a aac -b:a 96k \
        -timecode "01:00:$(printf %02d "$i"):00" "$out.partial.mp4"
    mv -f "$out.partial.mp4" "$out"
}
mkdir -p "$LIB"
for ((i = 0; i < FILES; i += 2)); do
    for j in "$i" $((i + 1)); do
        ((j < FILES)) || continue
        [[ -s $LIB/clip-$(printf %02d "$j").mp4 ]] || { log "generating file $((j + 1)) of $FILES"; make_file "$j" & }
    done
    wait
done
SOURCES=("$LIB"/clip-*.mp4)

frames_of() {
    ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets \
        -of csv=p=0 "$1" | tr -dc '0-9'
}
# check DIR SUFFIX -> "24/24 frame-exact" or the mismatches
check() {
    local dir=$1 suffix=$2 ok=0 bad="" s base
    for s in "${SOURCES[@]}"; do
        base=$(basename "$s" .mp4)
        if [[ -s $dir/$base$suffix && $(frames_of "$dir/$base$suffix") == "$(frames_of "$s")" ]]; then
            ok=$((ok + 1))
        else
            bad+=" $base"
        fi
    done
    echo "$ok/${#SOURCES[@]} frame-exact${bad:+ (wrong:$bad)}"
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $LOAD_AT_START ($(nproc) cores)"
REPORT=$BENCH_DIR/batch-results.md
: >"$REPORT"

# ------------------------------------------------------------------- mesh ---
if ((DO_MESH)); then
    KEY=$WORK/swarm.key
    "$RENDERMESH" keygen >"$KEY" 2>/dev/null
    # shellcheck source=lib/netns.sh
    source "$REPO_ROOT/bench/lib/netns.sh"
    netns_up
    # submit LABEL -> wall seconds in LABEL.time
    submit() {
        local label=$1 t0
        log "$label"
        t0=$(now)
        ip netns exec "$NS_A" taskset -c "$CORE_A" "$RENDERMESH" --data-dir "$WORK/a" \
            submit transcode "${SOURCES[@]}" -o "$WORK/$label/" --preset "$PRESET" \
            --report "$WORK/$label.report.json" -q >"$WORK/$label.out" 2>&1 \
            || die "$label failed: $(tail -5 "$WORK/$label.out")"
        since "$t0" >"$WORK/$label.time"
    }
    shards_of() {
        grep -o '"peer": *"[^"]*"' "$WORK/$1.report.json" | sed 's/.*"\([^"]*\)"$/\1/' \
            | sort | uniq -c | awk '{ printf "%s%s %s", sep, $2, $1; sep = ", " }'
    }
    start_node a "$NS_A" "$CORE_A" "$ADDR_A"
    submit one-node
    stop_nodes
    rm -rf "$WORK/a"
    start_node a "$NS_A" "$CORE_A" "$ADDR_A"
    start_node b "$NS_B" "$CORE_B" "$ADDR_B" "$ADDR_A"
    wait_peer "$WORK/a" b
    submit two-nodes
    stop_nodes
    one=$(cat "$WORK/one-node.time") two=$(cat "$WORK/two-nodes.time")
    {
        echo "## Batch transcode: $FILES files × $SECONDS_EACH s 1080p30, x264 $PRESET"
        echo
        echo "Load average at start $LOAD_AT_START, $(nproc) cores."
        echo
        echo "| run | wall | check | shards per node |"
        echo "|---|---:|---|---|"
        echo "| one node, one core | $one s | $(check "$WORK/one-node" .mp4) | $(shards_of one-node) |"
        echo "| two nodes, one core each | $two s | $(check "$WORK/two-nodes" .mp4) | $(shards_of two-nodes) |"
        echo
        echo "- two nodes against one: **$(ratio "$one" "$two")×** (goal ≥ 1.85×)"
        echo
    } | tee -a "$REPORT"
fi

# ------------------------------------------------------------------ proxy ---
if ((DO_PROXY)); then
    # loop LABEL SUFFIX FFMPEG-ARGS… -> one ffmpeg per file, every core
    loop() {
        local label=$1 suffix=$2 t0 s
        shift 2
        mkdir -p "$WORK/$label"
        log "$label"
        t0=$(now)
        for s in "${SOURCES[@]}"; do
            ffmpeg -y -hide_banner -loglevel error -nostdin -i "$s" "$@" \
                "$WORK/$label/$(basename "$s" .mp4)$suffix" || die "$label: ffmpeg failed on $s"
        done
        since "$t0" >"$WORK/$label.time"
    }
    # proxy LABEL CODEC -> rendermesh in-process, a fresh data dir
    proxy() {
        local label=$1 codec=$2 t0
        log "$label"
        t0=$(now)
        "$RENDERMESH" --data-dir "$WORK/$label.data" submit proxy "${SOURCES[@]}" \
            -o "$WORK/$label/" --codec "$codec" --local -q >"$WORK/$label.out" 2>&1 \
            || die "$label failed: $(tail -5 "$WORK/$label.out")"
        since "$t0" >"$WORK/$label.time"
    }
    # the same scaler as rendermesh's proxies (bilinear)
    SCALE="scale=-2:540:flags=${PROXY_SCALER:-bilinear}"
    loop ffmpeg-h264 _proxy.mp4 -vf "$SCALE" -c:v libx264 -preset veryfast -crf 23 -c:a copy
    proxy rendermesh-h264 h264
    loop ffmpeg-prores _proxy.mov -vf "$SCALE" -c:v prores_ks -profile:v proxy -c:a pcm_s16le
    proxy rendermesh-prores prores
    t() { cat "$WORK/$1.time"; }
    {
        echo "## Proxies of the same $FILES files on one box ($(nproc) cores), 540 lines"
        echo
        echo "| run | wall | check |"
        echo "|---|---:|---|"
        echo "| ffmpeg loop, x264 veryfast crf 23, audio copied | $(t ffmpeg-h264) s | $(check "$WORK/ffmpeg-h264" _proxy.mp4) |"
        echo "| \`rendermesh submit proxy --codec h264\` | $(t rendermesh-h264) s | $(check "$WORK/rendermesh-h264" _proxy.mp4) |"
        echo "| ffmpeg loop, prores_ks proxy, PCM audio | $(t ffmpeg-prores) s | $(check "$WORK/ffmpeg-prores" _proxy.mov) |"
        echo "| \`rendermesh submit proxy --codec prores\` | $(t rendermesh-prores) s | $(check "$WORK/rendermesh-prores" _proxy.mov) |"
        echo
        echo "- h264 proxies: **$(ratio "$(t rendermesh-h264)" "$(t ffmpeg-h264)")×** the loop's time (goal ≤ 1.0×)"
        echo "- ProRes proxies: **$(ratio "$(t rendermesh-prores)" "$(t ffmpeg-prores)")×** the loop's time"
        echo
    } | tee -a "$REPORT"
fi
log "work files in $WORK"
