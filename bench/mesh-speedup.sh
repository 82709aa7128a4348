#!/usr/bin/env bash
# Benchmark for issue 4: two nodes, each in its own network namespace and pinned to one core,
# against one node pinned to one core, on the same 1080p30 source: a transcode and a scene
# detection job submitted on the first node. Checks that the two-node output is frame-exact
# (same frame count and the same decoded frames, by framemd5, as the one-node output) and that
# both scene lists are the same.
#
# Usage: sudo bench/mesh-speedup.sh [--duration SECS] [--chunk-seconds S] [--preset P]
#                                   [--crf N] [--rounds N] [--bench-dir DIR] [--no-build]
#                                   [--skip-transcode] [--skip-scenes]
#
# --rounds N measures N rounds of (1 node, 2 nodes), every round on fresh nodes, the order
# alternating (1 then 2, then 2 then 1, …) so that a machine getting slower or faster
# between the two halves of a round does not favour one side; it reports every round and
# the medians. Each output is checked. Before each round a core check times a decode on one
# core alone and on both at once: the ceiling it gives is what the machine allows then.
#
# Environment (command-line options win over these):
#   DURATION       length of the generated clip in seconds (default 120)
#   CHUNK_SECONDS  shard length asked of the jobs (default 4; the clip has a keyframe every 2 s)
#   PRESET, CRF    x264 settings of the transcode (default medium, 23)
#   BENCH_DIR      work dir (default <repo>/target/bench)
#   RENDERMESH     binary (default <repo>/target/release/rendermesh, built if missing)
#   CORES          two CPU numbers for the two nodes (default "0 1")
#   ROUNDS         as --rounds (default 1)
#
# Needs root (ip netns) and the machine otherwise idle: other work skews every figure, so the
# load average is printed. The namespaces, a veth pair between them, are deleted at the end;
# no traffic leaves them and mDNS is off.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-120}
CHUNK_SECONDS=${CHUNK_SECONDS:-4}
PRESET=${PRESET:-medium}
CRF=${CRF:-23}
BENCH_DIR=${BENCH_DIR:-$REPO_ROOT/target/bench}
RENDERMESH=${RENDERMESH:-$REPO_ROOT/target/release/rendermesh}
CORES=${CORES:-"0 1"}
ROUNDS=${ROUNDS:-1}
BUILD=1
DO_TRANSCODE=1
DO_SCENES=1

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while (($#)); do
    case $1 in
        --duration) DURATION=${2:?}; shift ;;
        --chunk-seconds) CHUNK_SECONDS=${2:?}; shift ;;
        --preset) PRESET=${2:?}; shift ;;
        --crf) CRF=${2:?}; shift ;;
        --rounds) ROUNDS=${2:?}; shift ;;
        --bench-dir) BENCH_DIR=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        --skip-transcode) DO_TRANSCODE=0 ;;
        --skip-scenes) DO_SCENES=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "mesh-speedup.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[mesh-speedup] %s\n' "$*" >&2; }
die() { printf '[mesh-speedup] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root for network namespaces (run with sudo)"
for tool in ip taskset ffmpeg ffprobe; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH"
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a number of at least 1"
read -r CORE_A CORE_B <<<"$CORES"
[[ -n ${CORE_B:-} ]] || die "CORES needs two CPU numbers"

if [[ ! -x $RENDERMESH ]]; then
    ((BUILD)) || die "$RENDERMESH is missing and --no-build was given"
    log "building the release binary"
    (cd "$REPO_ROOT" && cargo build --release -q -p rendermesh-node)
fi
RENDERMESH=$(readlink -f "$RENDERMESH")

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(readlink -f "$BENCH_DIR")
WORK=$(mktemp -d "$BENCH_DIR/mesh-speedup.XXXXXX")

# ------------------------------------------------------------------ source ---
# shellcheck source=lib/mesh-source.sh
source "$REPO_ROOT/bench/lib/mesh-source.sh"
mesh_source "$DURATION" "$BENCH_DIR"

# ------------------------------------------------------------- namespaces ---
# shellcheck source=lib/netns.sh
source "$REPO_ROOT/bench/lib/netns.sh"
netns_up

KEY=$WORK/swarm.key
"$RENDERMESH" keygen >"$KEY" 2>/dev/null
[[ -s $KEY ]] || die "keygen wrote no key"

# run_jobs LABEL -> submits the jobs on node a, records wall times in $WORK/LABEL.times
run_jobs() {
    local label=$1 dir=$WORK/a t0 t1
    : >"$WORK/$label.times"
    if ((DO_TRANSCODE)); then
        log "$label: transcode (x264 $PRESET, crf $CRF, shards of ${CHUNK_SECONDS}s)"
        t0=$(now)
        ip netns exec "$NS_A" taskset -c "$CORE_A" "$RENDERMESH" --data-dir "$dir" submit \
            transcode "$SRC" -o "$WORK/$label.mp4" --codec h264 --crf "$CRF" --preset "$PRESET" \
            --chunk-seconds "$CHUNK_SECONDS" --report "$WORK/$label.transcode.json" -q \
            >"$WORK/$label.transcode.out" 2>&1 \
            || die "transcode failed: $(tail -5 "$WORK/$label.transcode.out")"
        t1=$(now)
        echo "transcode $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" >>"$WORK/$label.times"
    fi
    if ((DO_SCENES)); then
        log "$label: scene detection"
        t0=$(now)
        ip netns exec "$NS_A" taskset -c "$CORE_A" "$RENDERMESH" --data-dir "$dir" submit \
            scenes "$SRC" --csv "$WORK/$label.csv" --chunk-seconds "$CHUNK_SECONDS" \
            --report "$WORK/$label.scenes.json" -q \
            >"$WORK/$label.scenes.out" 2>&1 \
            || die "scenes failed: $(tail -5 "$WORK/$label.scenes.out")"
        t1=$(now)
        echo "scenes $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" >>"$WORK/$label.times"
    fi
}

# core_check LABEL: what this machine allows right now. One single-thread decode of the
# source's first 20 s on core A alone, then one on each core at the same time; written to
# LABEL.cores as "alone SECS" and "both SECS SECS". On a virtual machine the two cores may
# share a physical core or its caches with each other or with other guests, so two busy cores
# each run slower than one alone; the speed-up two nodes can reach is at most
# 2 × alone / (mean of both), whatever the scheduler does.
core_check() {
    local clip=$WORK/core-check.mp4 f=$WORK/$1.cores
    [[ -s $clip ]] || ffmpeg -v error -nostdin -i "$SRC" -t 20 -an -c copy "$clip"
    decode_on() {
        local t0 t1
        t0=$(now)
        taskset -c "$1" ffmpeg -v error -nostdin -threads 1 -i "$clip" -f null - \
            || die "core check: decode failed"
        t1=$(now)
        awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
    }
    echo "alone $(decode_on "$CORE_A")" >"$f"
    decode_on "$CORE_A" >"$f.a" &
    decode_on "$CORE_B" >"$f.b"
    wait
    echo "both $(cat "$f.a") $(cat "$f.b")" >>"$f"
    rm -f "$f.a" "$f.b"
}

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $LOAD_AT_START ($(nproc) cores)"

# one_node LABEL / two_nodes LABEL -> a measured run on fresh nodes; the data dirs are kept
# as LABEL-a (and LABEL-b)
one_node() {
    log "$1: one node on core $CORE_A"
    start_node a "$NS_A" "$CORE_A" "$ADDR_A"
    run_jobs "$1"
    stop_nodes
    mv "$WORK/a" "$WORK/$1-a"
}
two_nodes() {
    log "$1: two nodes, a on core $CORE_A, b on core $CORE_B"
    start_node a "$NS_A" "$CORE_A" "$ADDR_A"
    start_node b "$NS_B" "$CORE_B" "$ADDR_B" "$ADDR_A"
    wait_peer "$WORK/a" b
    run_jobs "$1"
    stop_nodes
    mv "$WORK/a" "$WORK/$1-a"
    mv "$WORK/b" "$WORK/$1-b"
}

# round r: "one.r" and "two.r"; odd rounds start with one node, even rounds with two
LABELS=()
for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r: core check"
    core_check "round.$r"
    if ((r % 2)); then
        one_node "one.$r"
        two_nodes "two.$r"
    else
        two_nodes "two.$r"
        one_node "one.$r"
    fi
    LABELS+=("$r")
done

time_of() { awk -v k="$2" '$1 == k { print $2 }' "$WORK/$1.times"; }
frames_of() {
    ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
        -of csv=p=0 "$1" | tr -d ','
}
# ceiling_of R -> "alone s, both at once s / s, ceiling X×" from the round's core check
ceiling_of() {
    awk '$1 == "alone" { a = $2 } $1 == "both" { b1 = $2; b2 = $3 }
        END { printf "alone %.2f s, both %.2f / %.2f s: ceiling %.2f×", a, b1, b2, 4 * a / (b1 + b2) }' \
        "$WORK/round.$1.cores"
}
# work_of FILE -> the seconds all the job's shard runs took together
work_of() {
    grep -o '"millis": *[0-9]*' "$1" | awk -F: '{ s += $2 } END { printf "%.1f", s / 1000 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
shards_of() {
    grep -o '"peer": *"[^"]*"' "$1" | sed 's/.*"\([^"]*\)"$/\1/' | sort | uniq -c \
        | awk '{ printf "%s%s %s", sep, $2, $1; sep = ", " }'
}

{
    echo "## 2 nodes (one core each, network namespaces) against 1 node (one core)"
    echo
    echo "Source: ${DURATION} s 1080p30, $SRC_FRAMES frames, keyframe every 2 s; shards of ${CHUNK_SECONDS} s;"
    echo "load average at start $LOAD_AT_START, $(nproc) cores; $ROUNDS round(s), fresh nodes each."
    echo
    echo "| job | round | 1 node | 2 nodes | speed-up | check | shards per node (2 nodes) | shard time, all runs (1 → 2 nodes) |"
    echo "|---|---:|---:|---:|---:|---|---|---|"
    for job in transcode scenes; do
        [[ $job == transcode ]] && ((!DO_TRANSCODE)) && continue
        [[ $job == scenes ]] && ((!DO_SCENES)) && continue
        ones="" twos="" ratios=""
        for r in "${LABELS[@]}"; do
            one=$(time_of "one.$r" "$job") two=$(time_of "two.$r" "$job")
            ones+=" $one" twos+=" $two" ratios+=" $(ratio "$one" "$two")"
            if [[ $job == transcode ]]; then
                f1=$(frames_of "$WORK/one.$r.mp4") f2=$(frames_of "$WORK/two.$r.mp4")
                m1=$(ffmpeg -v error -i "$WORK/one.$r.mp4" -map 0:v -f framemd5 - | grep -v '^#' | md5sum | cut -c1-12)
                m2=$(ffmpeg -v error -i "$WORK/two.$r.mp4" -map 0:v -f framemd5 - | grep -v '^#' | md5sum | cut -c1-12)
                check="frames $f1 / $f2 of $SRC_FRAMES"
                if [[ $f1 == "$SRC_FRAMES" && $f2 == "$SRC_FRAMES" && $m1 == "$m2" ]]; then
                    check+=", decoded frames identical (framemd5 $m2)"
                else
                    check+=", MISMATCH (framemd5 $m1 / $m2)"
                fi
                name="transcode (x264 $PRESET crf $CRF)"
            else
                n=$(grep -c '^[0-9]' "$WORK/two.$r.csv" || true)
                if cmp -s "$WORK/one.$r.csv" "$WORK/two.$r.csv"; then
                    check="same scene list ($n rows)"
                else
                    check="scene lists DIFFER"
                fi
                name="scene detection"
            fi
            echo "| $name | $r | ${one} s | ${two} s | $(ratio "$one" "$two")× | $check | $(shards_of "$WORK/two.$r.$job.json") | $(work_of "$WORK/one.$r.$job.json") → $(work_of "$WORK/two.$r.$job.json") s |"
        done
        if ((ROUNDS > 1)); then
            m1=$(median <<<"${ones# }") m2=$(median <<<"${twos# }") mr=$(median <<<"${ratios# }")
            echo "| $name | **median** | ${m1} s | ${m2} s | **${mr}×** (median of the rounds' speed-ups; medians' ratio $(ratio "$m1" "$m2")×) | | | |"
        fi
    done
    echo
    echo "Core check before each round (single-thread decode of 20 s of the source; the ceiling is"
    echo "2 × alone / mean of both at once, the most two one-core nodes can gain on this machine then):"
    echo
    for r in "${LABELS[@]}"; do
        echo "- round $r: $(ceiling_of "$r")"
    done
    echo
} | tee "$BENCH_DIR/mesh-speedup-results.md"
log "work files in $WORK"
