#!/usr/bin/env bash
# A node's resident memory over many jobs (issue 22, finding 5): one node on loopback runs
# JOBS scene jobs and JOBS transcodes of distinct 1080p30 clips (each its own content, so
# nothing is answered from the cache) and prints its VmRSS and store size after each pair.
#   bash bench/memory.sh [JOBS]          (default 20; RENDERMESH=BIN to use a built binary;
#                                         KINDS="scenes" or "transcode" runs one kind only)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
JOBS=${1:-20}
KINDS=${KINDS:-scenes transcode}
BENCH_DIR=${BENCH_DIR:-$REPO/target/bench}
BIN=${RENDERMESH:-$REPO/target/release/rendermesh}
mkdir -p "$BENCH_DIR/memory"
[[ -n ${RENDERMESH:-} ]] || cargo build --release -q -p rendermesh-node

WORK=$(mktemp -d)
trap '[[ -n ${NODE:-} ]] && kill "$NODE" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
DATA=$WORK/data
mkdir -p "$DATA"
cat > "$WORK/node.toml" <<TOML
mdns = false
listen = "/ip4/127.0.0.1/tcp/0"
TOML
RENDERMESH_LOG=warn "$BIN" --config "$WORK/node.toml" --data-dir "$DATA" node \
    --control-listen 127.0.0.1:0 2> "$WORK/node.log" &
NODE=$!
for _ in $(seq 100); do [[ -s $DATA/control.json ]] && break; sleep 0.1; done

rss() { awk '/^VmRSS/ {print int($2/1024)}' "/proc/$NODE/status"; }
echo "job  rss_MB  store_MB  cache_db_MB"
echo "0    $(rss)  0  0"
for i in $(seq "$JOBS"); do
    clip=$BENCH_DIR/memory/clip-$i.mp4
    if [[ ! -s $clip ]]; then
        # 10 s with 4 scenes, tinted per clip: distinct content, the same work
        ffmpeg -v error -y -f lavfi -i "testsrc2=s=1920x1080:r=30:d=10,hue=h=$((i * 17))" \
            -vf "drawbox=x=mod(t*200\,1800):y=100:w=120:h=120:c=white@0.8:t=fill" \
            -c:v libx264 -preset ultrafast -g 60 "$clip.tmp.mp4"
        mv "$clip.tmp.mp4" "$clip"
    fi
    for kind in $KINDS; do
        case $kind in
        scenes) "$BIN" --data-dir "$DATA" submit scenes "$clip" -q --detector content \
            --json "$WORK/s.json" >/dev/null ;;
        transcode) "$BIN" --data-dir "$DATA" submit transcode "$clip" -o "$WORK/out.mp4" -q \
            --preset ultrafast >/dev/null ;;
        esac
    done
    store=$(du -sm "$DATA/cache" | cut -f1)
    db=$(du -sm "$DATA/cache/db" | cut -f1)
    echo "$i    $(rss)  $store  $db"
done
