#!/usr/bin/env bash
# What the encoder settings that make a shard's bytes reproducible cost, and what they buy
# (issue 22, the soak's wrong transcodes). The same FFmpeg libraries the node links, driven by
# the ffmpeg command with the node's settings for a shard on 2 threads:
#   x264  default (AVX-512 where the CPU has it)  against  asm=AVX2,Cache64 (what the node sets)
#   x265  x265's defaults (wavefront rows, weighted prediction)
#         against  wpp=0:weightp=0 (what the node sets)
# Two 60-frame shards: 480x270 with a Game of Life scene (frames 210-269 of the soak's clip
# that showed it, made the same way: three scenes through x264) and 1280x720 testsrc2. Per
# setting: wall time, median of RUNS runs taken turn about with the other setting; distinct
# outputs among DET_RUNS encodes of the 270p shard, each run under another MALLOC_PERTURB_
# byte (the first under none), as a long-running node's memory differs from a fresh
# process's; x265 runs three at a time too, as threads race.
#   bash bench/encoder-determinism.sh     (RUNS=3 DET_RUNS=12 CODECS="x264 x265")
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3} DET_RUNS=${DET_RUNS:-12} CODECS=${CODECS:-x264 x265}
for c in $CODECS; do
    [[ $c == x264 || $c == x265 ]] || { echo "encoder-determinism: unknown codec '$c' in CODECS (x264, x265)" >&2; exit 2; }
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

scene() { echo "$1s=480x270:r=30,trim=end_frame=90,setpts=PTS-STARTPTS,setsar=1,format=yuv420p"; }
ffmpeg -v error -y -filter_complex "$(scene testsrc2=),hue=h=60[a];$(scene testsrc=)[b];$(scene \
    life=ratio=0.3:seed=5:mold=8:)[c];[a][b][c]concat=n=3:v=1:a=0[v]" -map '[v]' -c:v libx264 \
    -preset veryfast -crf 20 -bf 2 -x264-params keyint=30:min-keyint=30:scenecut=0 \
    -fflags +bitexact "$WORK/scenes.mp4"
ffmpeg -v error -y -i "$WORK/scenes.mp4" -vf "select=between(n\,210\,269),setpts=N/30/TB" \
    -c:v rawvideo "$WORK/life270.nut"
ffmpeg -v error -y -f lavfi -i "testsrc2=s=1280x720:r=30" -frames:v 60 \
    -pix_fmt yuv420p -c:v rawvideo "$WORK/ts720.nut"

enc() { # CODEC SETTING IN OUT: one encode with the node's options for that codec and setting
    case $1/$2 in
    x264/default) set -- "$@" -c:v libx264 -preset slower -crf 20 -threads 2 ;;
    x264/capped) set -- "$@" -c:v libx264 -preset slower -crf 20 -threads 2 -x264-params asm=AVX2,Cache64 ;;
    x265/default) set -- "$@" -c:v libx265 -preset slow -crf 26 -x265-params log-level=error:pools=2 ;;
    x265/capped) set -- "$@" -c:v libx265 -preset slow -crf 26 -x265-params log-level=error:pools=2:wpp=0:weightp=0 ;;
    esac
    local mux=h264
    [[ $1 == x265 ]] && mux=hevc
    ffmpeg -v error -nostdin -y -i "$3" "${@:5}" -f "$mux" "$4"
}
secs() { # CODEC SETTING IN: wall seconds of one encode
    local t0 t1
    t0=$(date +%s.%N)
    enc "$1" "$2" "$3" /dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
distinct() { # CODEC SETTING: distinct outputs of DET_RUNS encodes of the 270p shard
    local i
    for ((i = 0; i < DET_RUNS; i++)); do
        if [[ $1 == x264 ]]; then
            MALLOC_PERTURB_=$((i * 37 % 256)) enc "$1" "$2" "$WORK/life270.nut" "$WORK/o$i"
        else
            MALLOC_PERTURB_=$((i * 37 % 256)) enc "$1" "$2" "$WORK/life270.nut" "$WORK/o$i" &
            (((i + 1) % 3)) || wait
        fi
    done
    wait
    md5sum "$WORK"/o* | awk '{print $1}' | sort -u | wc -l
}

printf '%-6s %-26s %10s %10s %10s\n' codec setting 270p_s 720p_s distinct
for codec in $CODECS; do
    declare -A T=()
    for ((r = 0; r < RUNS; r++)); do
        for setting in default capped; do
            for clip in life270 ts720; do
                T[$setting/$clip]+="$(secs "$codec" "$setting" "$WORK/$clip.nut") "
            done
        done
    done
    for setting in default capped; do
        case $codec/$setting in
        x264/default) name="default (AVX-512)" ;;
        x264/capped) name="asm=AVX2,Cache64 (node)" ;;
        x265/default) name="default (wpp, weightp)" ;;
        x265/capped) name="wpp=0:weightp=0 (node)" ;;
        esac
        printf '%-6s %-26s %10.2f %10.2f %7s/%s\n' "$codec" "$name" \
            "$(tr ' ' '\n' <<<"${T[$setting/life270]}" | grep . | median)" \
            "$(tr ' ' '\n' <<<"${T[$setting/ts720]}" | grep . | median)" \
            "$(distinct "$codec" "$setting")" "$DET_RUNS"
    done
    unset T
done
grep -o 'avx512[a-z]*' /proc/cpuinfo | sort -u | tr '\n' ' ' | sed 's/^/cpu: /; s/ $/\n/' || echo "cpu: no AVX-512"
echo "cores: $(nproc)"
