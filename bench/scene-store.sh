#!/usr/bin/env bash
# What a scene analysis leaves in the store, per analysed minute (issue 22, finding 5): a
# 60 s 1080p30 clip with moving content is analysed by `submit scenes --detector content`
# (2 s shards, no node running: a mesh of one inside the command) in a fresh data dir; prints
# the scene-shard entries (count, bytes), all entries' bytes and the entry database on disk.
# Cache entries are what the mesh replicates; chunk blobs are dropped when the job ends.
#   bash bench/scene-store.sh [BIN ...]   (default target/release/rendermesh; several binaries
#                                          are measured one after the other on the same clip)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BENCH_DIR=${BENCH_DIR:-$REPO/target/bench}
mkdir -p "$BENCH_DIR/scene-store"
if [[ $# -eq 0 ]]; then
    cargo build --release -q -p rendermesh-node
    set -- "$REPO/target/release/rendermesh"
fi
clip=$BENCH_DIR/scene-store/1080p-60s.mp4
if [[ ! -s $clip ]]; then
    ffmpeg -v error -y -f lavfi -i "testsrc2=s=1920x1080:r=30:d=60" \
        -vf "hue=h=t*6,drawbox=x=mod(t*300\,1800):y=200:w=160:h=160:c=white@0.8:t=fill" \
        -c:v libx264 -preset ultrafast -g 60 "$clip.tmp.mp4"
    mv "$clip.tmp.mp4" "$clip"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf '%-40s %8s %14s %14s %10s\n' binary shards shard_bytes entry_bytes db_MB
for bin in "$@"; do
    data=$WORK/data-$RANDOM
    mkdir -p "$data"
    RENDERMESH_LOG=warn "$bin" --data-dir "$data" submit scenes "$clip" -q --detector content \
        --chunk-seconds 2 --json "$WORK/cuts.json" >/dev/null 2>"$WORK/err" ||
        { cat "$WORK/err" >&2; exit 1; }
    read -r shards shard_bytes < <("$bin" --data-dir "$data" cache ls --kind scene-shard --long |
        awk '{n++; b += $3} END {print n + 0, b + 0}')
    entry_bytes=$("$bin" --data-dir "$data" cache stat --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"]["bytes"])')
    db=$(du -sm "$data/cache/db" | cut -f1)
    printf '%-40s %8s %14s %14s %10s\n' "$(basename "$bin")" "$shards" "$shard_bytes" \
        "$entry_bytes" "$db"
done
