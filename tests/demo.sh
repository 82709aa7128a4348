#!/usr/bin/env bash
# Demo: build rendermesh, make a sample clip with hard cuts, start a node (a mesh of one) on
# loopback with its own data dir, then transcode the sample and detect its scenes through
# that node. Everything goes under target/demo; the node is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release -p rendermesh-node
BIN=target/release/rendermesh
DEMO=target/demo
rm -rf "$DEMO/data" && mkdir -p "$DEMO"

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

# the demo node stays on loopback: control API and mesh port both on 127.0.0.1, no mDNS
mkdir -p "$DEMO/data"
printf 'listen = "/ip4/127.0.0.1/tcp/0"\nmdns = false\n' > "$DEMO/node.toml"
"$BIN" --config "$DEMO/node.toml" --data-dir "$DEMO/data" node --control-listen 127.0.0.1:0 2>"$DEMO/node.log" &
NODE=$!
trap 'kill -TERM $NODE 2>/dev/null; wait $NODE 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -f "$DEMO/data/control.json" ] && break; sleep 0.1; done
echo "demo: node $(cat "$DEMO/data/control.json" | tr -d '\n ')" >&2

"$BIN" --data-dir "$DEMO/data" submit transcode "$SAMPLE" -o "$DEMO/sample-h264.mp4" --crf 23 --chunk-seconds 4
"$BIN" --data-dir "$DEMO/data" submit scenes "$SAMPLE" --csv "$DEMO/scenes.csv" --edl "$DEMO/scenes.edl" --chunk-seconds 4
echo "demo: again, answered from the cache:" >&2
"$BIN" --data-dir "$DEMO/data" submit scenes "$SAMPLE" --json "$DEMO/scenes.json"
"$BIN" --data-dir "$DEMO/data" status
"$BIN" --data-dir "$DEMO/data" peers
echo "demo: results in $DEMO (sample-h264.mp4, scenes.csv, scenes.edl, scenes.json)" >&2
