#!/usr/bin/env bash
# Benchmark for issue 23: meshes of unequal boxes built on one machine. Every node runs in its
# own network namespace (one bridge joins them), pinned to a core, and a node may run under a
# CPU quota (the cgroup cpu controller): "0.5" is a box at half the speed of a core.
#
# A mix is written as shares of one core joined by "+": the first node runs on core A without
# a quota and coordinates the jobs; every other node runs on core B under its share. So
#   1+1        two equal one-core nodes;
#   1+0.5      a box and one at half its speed;
#   1+0.25     a box and one at a quarter of its speed;
#   1+0.5+0.5  three nodes on two cores: core B is split between two half-speed nodes (what
#              this measures is the scheduler with three bidders of 1, 0.5 and 0.5, not a
#              third core).
#
# For each job (scene detection, x264 transcode), the script measures every distinct node
# alone (the job on that node only), then each mix. After the 1+1 mix it runs the job on two
# separate one-core nodes at once, each alone on its own copy of the job: what the machine's
# two cores give when both are busy, the ceiling of a 1+1 mesh on it. Ideal of a mix = the sum of its nodes'
# speeds alone (frames ÷ seconds); a mix's figure = its speed ÷ that ideal. It also reports
# the split of shards, each node's idle time at the tail (from its last shard's end to the
# end of the job's last shard), and the simulation's prediction for the mix (the auction and
# the coordinator's rules in `mesh::sched::sim`, fed each node's shard speed in that mix, what
# its calibration told the coordinator, the job's shards and its serial part; see
# bench/lib/unequal_report.py, which can be run again on a kept work dir).
#
# Usage: sudo bench/unequal.sh [--mixes "1+1 1+0.5 1+0.25 1+0.5+0.5"] [--jobs "scenes transcode"]
#                              [--duration SECS] [--chunk-seconds S] [--preset P] [--crf N]
#                              [--period-us US] [--rounds N] [--bench-dir DIR] [--no-build]
#
# Environment (command-line options win): MIXES, JOBS, DURATION (60), CHUNK_SECONDS (4),
# PRESET (veryfast), CRF (23), PERIOD_US (the quota's period, 10000: a short period spreads a
# throttled node's time evenly, as a slower CPU would; 100000 is the kernel's default), ROUNDS
# (1: each round measures everything again on fresh nodes; with more than one, the report
# ends with each mix's median), CORES ("0 1"), BENCH_DIR,
# RENDERMESH (the release binary, built if missing).
#
# Needs root (namespaces, cgroups) and an otherwise idle machine. Namespaces and cgroups are
# removed at the end; no traffic leaves the namespaces and mDNS is off.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MIXES=${MIXES:-"1+1 1+0.5 1+0.25 1+0.5+0.5"}
JOBS=${JOBS:-"scenes transcode"}
DURATION=${DURATION:-60}
CHUNK_SECONDS=${CHUNK_SECONDS:-4}
PRESET=${PRESET:-veryfast}
CRF=${CRF:-23}
PERIOD_US=${PERIOD_US:-10000}
ROUNDS=${ROUNDS:-1}
CORES=${CORES:-"0 1"}
BENCH_DIR=${BENCH_DIR:-$REPO_ROOT/target/bench}
RENDERMESH=${RENDERMESH:-$REPO_ROOT/target/release/rendermesh}
BUILD=1

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while (($#)); do
    case $1 in
        --mixes) MIXES=${2:?}; shift ;;
        --jobs) JOBS=${2:?}; shift ;;
        --duration) DURATION=${2:?}; shift ;;
        --chunk-seconds) CHUNK_SECONDS=${2:?}; shift ;;
        --preset) PRESET=${2:?}; shift ;;
        --crf) CRF=${2:?}; shift ;;
        --period-us) PERIOD_US=${2:?}; shift ;;
        --rounds) ROUNDS=${2:?}; shift ;;
        --bench-dir) BENCH_DIR=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unequal.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[unequal] %s\n' "$*" >&2; }
die() { printf '[unequal] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root for network namespaces and cgroups (run with sudo)"
for tool in ip taskset ffmpeg ffprobe python3; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH"
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a number of at least 1"
[[ $PERIOD_US =~ ^[0-9]+$ ]] && ((PERIOD_US >= 1000 && PERIOD_US <= 1000000)) \
    || die "--period-us must be 1000 to 1000000"
for mix in $MIXES; do
    [[ $mix =~ ^1(\+(1|0?\.[0-9]+))+$ ]] || die "a mix is 1 then '+share' terms of at most 1, e.g. 1+0.5: $mix"
done
for job in $JOBS; do
    [[ $job == scenes || $job == transcode ]] || die "jobs are scenes and transcode: $job"
done
read -r CORE_A CORE_B <<<"$CORES"
[[ -n ${CORE_B:-} ]] || die "CORES needs two CPU numbers"

if [[ ! -x $RENDERMESH ]]; then
    ((BUILD)) || die "$RENDERMESH is missing and --no-build was given"
    log "building the release binary"
    (cd "$REPO_ROOT" && cargo build --release -q -p rendermesh-node)
fi
RENDERMESH=$(readlink -f "$RENDERMESH")
SIMULATE=$REPO_ROOT/target/release/examples/mix
log "building the simulation"
(cd "$REPO_ROOT" && cargo build --release -q -p rendermesh-mesh --example mix) \
    || die "the simulation did not build"

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(readlink -f "$BENCH_DIR")
WORK=$(mktemp -d "$BENCH_DIR/unequal.XXXXXX")

# shellcheck source=lib/cpuquota.sh
source "$REPO_ROOT/bench/lib/cpuquota.sh"
cpuquota_root >/dev/null || die "no cgroup cpu controller is writable here"

# ------------------------------------------------------------------ source ---
# The source of bench/mesh-speedup.sh at DURATION (a cut every 5 s, a keyframe every 2 s).
# shellcheck source=lib/mesh-source.sh
source "$REPO_ROOT/bench/lib/mesh-source.sh"
mesh_source "$DURATION" "$BENCH_DIR"

# ------------------------------------------------------------- namespaces ---
# One namespace per node, each with a veth to a bridge in a namespace of its own.
TAG=rmu$$
NET=10.214.$(($$ % 250))
NS_BR=${TAG}br
PIDS=()
NSES=()

cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    ip netns del "$NS_BR" 2>/dev/null || true
    cpuquota_cleanup
}
trap cleanup EXIT

ip netns add "$NS_BR"
ip -n "$NS_BR" link add br0 type bridge
ip -n "$NS_BR" link set br0 up
MAX_NODES=0
for mix in $MIXES; do
    n=$(tr '+' '\n' <<<"$mix" | wc -l)
    ((n > MAX_NODES)) && MAX_NODES=$n
done
for ((i = 1; i <= MAX_NODES; i++)); do
    ns=${TAG}n$i
    NSES+=("$ns")
    ip netns add "$ns"
    ip link add "${TAG}v$i" type veth peer name "${TAG}p$i"
    ip link set "${TAG}v$i" netns "$ns"
    ip link set "${TAG}p$i" netns "$NS_BR"
    ip -n "$ns" addr add "$NET.$i/24" dev "${TAG}v$i"
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "${TAG}v$i" up
    ip -n "$NS_BR" link set "${TAG}p$i" master br0
    ip -n "$NS_BR" link set "${TAG}p$i" up
done

KEY=$WORK/swarm.key
"$RENDERMESH" keygen >"$KEY" 2>/dev/null
[[ -s $KEY ]] || die "keygen wrote no key"

now() { date +%s.%N; }

# start_node I CORE SHARE DIR [PEER_ADDR] -> node I (namespace I) in the background, ready
start_node() {
    local i=$1 core=$2 share=$3 dir=$4 peer=${5:-}
    mkdir -p "$dir"
    {
        echo "name = \"n$i\""
        echo "listen = \"/ip4/$NET.$i/tcp/7879\""
        echo "mdns = false"
        echo "slots = 1"
        echo "key_file = \"$KEY\""
        [[ -n $peer ]] && echo "peers = [\"/ip4/$peer/tcp/7879\"]"
    } >"$dir/node.toml"
    # a node calibrates once per core and share in a run; later nodes of the same core and
    # share start from its caps.json, as a restarted service does (same fingerprint: same
    # box, same quota)
    local caps=$WORK/caps.$core.$share.json
    [[ -f $caps ]] && cp "$caps" "$dir/caps.json"
    (cpuquota_run "$share" "$PERIOD_US" ip netns exec "${TAG}n$i" taskset -c "$core" \
        "$RENDERMESH" --config "$dir/node.toml" --data-dir "$dir" node \
        --control-listen 127.0.0.1:0) 2>"$dir/node.log" &
    PIDS+=($!)
    # a node under a quota calibrates at its share of a core: minutes at a quarter
    for _ in $(seq 3000); do
        if grep -q "capabilities ready" "$dir/node.log" 2>/dev/null; then
            [[ -f $caps ]] || cp "$dir/caps.json" "$caps"
            return 0
        fi
        sleep 0.1
    done
    die "node n$i did not get ready: $(tail -5 "$dir/node.log")"
}

stop_nodes() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

# wait_peers DIR N -> until the node in DIR lists N peers
wait_peers() {
    for _ in $(seq 300); do
        local seen
        seen=$(ip netns exec "${TAG}n1" "$RENDERMESH" --data-dir "$1" peers --json 2>/dev/null \
            | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)
        ((seen >= $2)) && return 0
        sleep 0.1
    done
    die "the first node did not see $2 peers"
}

# run_job JOB LABEL DIR [NS] -> submits JOB on the node in DIR (namespace NS, 1 by default);
# LABEL.time, LABEL.json
run_job() {
    local job=$1 label=$2 dir=$3 ns=${4:-1} t0 t1 out=$WORK/$2
    t0=$(now)
    if [[ $job == transcode ]]; then
        ip netns exec "${TAG}n$ns" "$RENDERMESH" --data-dir "$dir" submit transcode "$SRC" \
            -o "$out.mp4" --codec h264 --crf "$CRF" --preset "$PRESET" \
            --chunk-seconds "$CHUNK_SECONDS" --report "$out.json" -q >"$out.out" 2>&1 \
            || die "$label failed: $(tail -5 "$out.out")"
    else
        ip netns exec "${TAG}n$ns" "$RENDERMESH" --data-dir "$dir" submit scenes --detector content "$SRC" \
            --csv "$out.csv" --chunk-seconds "$CHUNK_SECONDS" --report "$out.json" -q \
            >"$out.out" 2>&1 || die "$label failed: $(tail -5 "$out.out")"
    fi
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }' >"$out.time"
}

# alone JOB CORE SHARE LABEL -> the job on one node (core, share) alone
alone() {
    local dir=$WORK/$4.d
    log "$4: $1 on one node, core $2, share $3"
    start_node 1 "$2" "$3" "$dir"
    run_job "$1" "$4" "$dir"
    stop_nodes
}

# mix_run JOB MIX LABEL -> the job on the mix (node 1 on core A, the others on core B)
mix_run() {
    local job=$1 mix=$2 label=$3 i=0 share
    log "$label: $job on $mix"
    for share in ${mix//+/ }; do
        i=$((i + 1))
        if ((i == 1)); then
            start_node 1 "$CORE_A" "$share" "$WORK/$label.d1"
        else
            start_node "$i" "$CORE_B" "$share" "$WORK/$label.d$i" "$NET.1"
        fi
    done
    wait_peers "$WORK/$label.d1" $((i - 1))
    run_job "$job" "$label" "$WORK/$label.d1"
    stop_nodes
}

# pair JOB LABEL -> with 1+1 among the mixes: two one-core nodes that do not know each other,
# each running the job alone, both at once (cores A and B, no quota): what two busy cores of
# this machine do side by side, the ceiling of a 1+1 mesh (LABEL-A, LABEL-B)
pair() {
    log "$2: $1 on two separate nodes at once"
    start_node 1 "$CORE_A" 1 "$WORK/$2-A.d"
    start_node 2 "$CORE_B" 1 "$WORK/$2-B.d"
    run_job "$1" "$2-A" "$WORK/$2-A.d" &
    local a=$!
    run_job "$1" "$2-B" "$WORK/$2-B.d" 2
    wait "$a" || die "$2-A failed"
    stop_nodes
}

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $LOAD_AT_START ($(nproc) cores); quota period ${PERIOD_US} µs"

# the distinct nodes: "A" (core A, no quota) and "B<share>" (core B under share)
SHARES=$(for mix in $MIXES; do tr '+' '\n' <<<"${mix#1+}"; done | sort -u -g)
for ((r = 1; r <= ROUNDS; r++)); do
    for job in $JOBS; do
        alone "$job" "$CORE_A" 1 "$job.$r.alone-A"
        for s in $SHARES; do
            alone "$job" "$CORE_B" "$s" "$job.$r.alone-B$s"
        done
        for mix in $MIXES; do
            mix_run "$job" "$mix" "$job.$r.mix-$mix"
            if [[ $mix == 1+1 ]]; then pair "$job" "$job.$r.pair"; fi
        done
    done
done

# ------------------------------------------------------------------ report ---
python3 "$REPO_ROOT/bench/lib/unequal_report.py" "$WORK" "$SRC_FRAMES" "$ROUNDS" "$SIMULATE" \
    "$JOBS" "$MIXES" "$LOAD_AT_START" "$DURATION" "$CHUNK_SECONDS" "$PERIOD_US" \
    | tee "$BENCH_DIR/unequal-results.md"
log "work files in $WORK"
