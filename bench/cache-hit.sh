#!/usr/bin/env bash
# Cache-hit latency versus compute for scene detection (issue 5), on a 2-minute 1080p30 clip:
# node A analyses it; node B, a peer on loopback, is then asked about its own copy of the
# same file and answers from its replica; A is asked again and answers from its own cache.
#   bash bench/cache-hit.sh            (BENCH_DIR defaults to target/bench; RUNS=3 hit runs)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BENCH_DIR=${BENCH_DIR:-$REPO/target/bench}
RUNS=${RUNS:-3}
BIN=${RENDERMESH:-$REPO/target/release/rendermesh}
mkdir -p "$BENCH_DIR"
[[ -n ${RENDERMESH:-} ]] || cargo build --release -q -p rendermesh-node

# CLIP=FILE uses a clip of your own (e.g. the one bench/issue2.sh made)
CLIP=${CLIP:-$BENCH_DIR/cachehit-1080p30-120s.mp4}
if [[ ! -s $CLIP ]]; then
    echo "[cache-hit] generating $CLIP (120 s, 1080p30, 3 hard cuts)" >&2
    ffmpeg -v error -y \
        -f lavfi -i "testsrc2=s=1920x1080:r=30:d=30" \
        -f lavfi -i "smptehdbars=s=1920x1080:r=30:d=30" \
        -f lavfi -i "smptebars=s=1920x1080:r=30:d=30,hue=H=t" \
        -f lavfi -i "rgbtestsrc=s=1920x1080:r=30:d=30,hue=h=t*60" \
        -filter_complex "[0][1][2][3]concat=n=4:v=1:a=0,format=yuv420p" -t 120 \
        -c:v libx264 -preset veryfast -g 60 "$CLIP.tmp.mp4"
    mv "$CLIP.tmp.mp4" "$CLIP"
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" keygen > "$WORK/swarm.key"
start_node() { # name peers...
    local name=$1; shift
    local peers=""
    for p in "$@"; do peers+="\"$p\","; done
    mkdir -p "$WORK/$name"
    printf 'name = "%s"\nmdns = false\nlisten = "/ip4/127.0.0.1/tcp/0"\nkey_file = "%s"\npeers = [%s]\n' \
        "$name" "$WORK/swarm.key" "$peers" > "$WORK/$name/node.toml"
    RENDERMESH_LOG=warn "$BIN" --config "$WORK/$name/node.toml" --data-dir "$WORK/$name" node \
        --control-listen 127.0.0.1:0 2>"$WORK/$name.log" &
    PIDS+=($!)
    for _ in $(seq 100); do [[ -s $WORK/$name/mesh.json ]] && break; sleep 0.1; done
}
addr_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listen"][0])' "$WORK/$1/mesh.json"; }

start_node a
start_node b "$(addr_of a)"
for _ in $(seq 100); do "$BIN" --data-dir "$WORK/b" peers --json | grep -c peer_id >/dev/null && break; sleep 0.1; done

secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
submit() { "$BIN" --data-dir "$WORK/$1" submit scenes --detector content "$2" -q --json "$WORK/$1-$3.json"; }

COMPUTE=$(secs submit a "$CLIP" compute)
cp "$CLIP" "$WORK/copy-on-b.mp4"
# B must hold A's entries before it is asked
for _ in $(seq 100); do
    [[ $("$BIN" --data-dir "$WORK/b" cache ls | wc -l) -ge $("$BIN" --data-dir "$WORK/a" cache ls | wc -l) ]] && break
    sleep 0.1
done
best() { sort -g | head -1; }
# the first hit on B hashes B's copy (content addressing); later ones know the file
FIRST=$(secs submit b "$WORK/copy-on-b.mp4" r1)
REPLICA=$(for i in $(seq 2 $((RUNS + 1))); do secs submit b "$WORK/copy-on-b.mp4" "r$i"; done | tee "$WORK/b-runs" | best)
LOCAL=$(for i in $(seq "$RUNS"); do secs submit a "$CLIP" "l$i"; done | tee "$WORK/a-runs" | best)
echo "[cache-hit] runs on b: $(tr '\n' ' ' < "$WORK/b-runs"); on a: $(tr '\n' ' ' < "$WORK/a-runs")" >&2
cmp <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cuts"])' "$WORK/a-compute.json") \
    <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cuts"])' "$WORK/b-r1.json") \
    || { echo "replica answer differs from the computed one" >&2; exit 1; }
printf '| scenes of a 120 s 1080p30 clip | wall time | vs compute |\n|---|---|---|\n'
printf '| computed on node A | %.2f s | 1× |\n' "$COMPUTE"
printf '| first hit on node B (its own copy: hashed once, then answered from its replica) | %.3f s | %.0f× faster |\n' "$FIRST" "$(echo "$COMPUTE / $FIRST" | bc -l)"
printf '| cache hit on node B (same copy again) | %.3f s | %.0f× faster |\n' "$REPLICA" "$(echo "$COMPUTE / $REPLICA" | bc -l)"
printf '| cache hit on node A (same file again) | %.3f s | %.0f× faster |\n' "$LOCAL" "$(echo "$COMPUTE / $LOCAL" | bc -l)"
echo "(hits: best of $RUNS; each includes the CLI start, the file identity check and the API round trip)"
