# Sourced by bench/soak.sh: its small deterministic test media and the jobs made of them.
#
# soak_media DIR -> writes (if missing) into DIR four clips with hard cuts and a tone
# (c1 320x240 25 fps 6 s, c2 480x270 30 fps 12 s, c3 640x360 25 fps 12 s, c4 640x360 30 fps
# 8 s with B-frames and open GOPs; a keyframe every second) and two metronome "songs" with
# an accented bar start (song1 120 BPM 16 s FLAC, song2 96 BPM 20 s AAC). ffmpeg's lavfi
# sources and filters are deterministic, so every run makes the same files.
#
# SOAK_SPECS: the jobs, "id;kind;output extension;inputs;options", cycled in this order
# (kinds alternate). Every option that changes a result is given, chunk lengths included.
# Transcodes (9 of the 17) take 1-27 s each on one box of 2 cores (slow presets: the clips
# are small), about 2.5 minutes a cycle, so that 100 jobs keep a 2-core box busy for about
# 20 minutes; analysis jobs are answered from the replicated cache after their first run.

# clip OUT SIZE FPS SECONDS_PER_SCENE TONE_HZ X264_EXTRA SOURCE… (one scene per source)
soak_clip() {
    local out=$1 size=$2 fps=$3 secs=$4 hz=$5 x264=$6 graph="" ins="" n=0 src
    shift 6
    [[ -s $out ]] && return 0
    for src in "$@"; do # NAME[=OPTS][,FILTERS]: the size and rate go after NAME's options
        local name=${src%%,*} filters=""
        [[ $src == *,* ]] && filters=",${src#*,}"
        [[ $name == *=* ]] && name+=":" || name+="="
        graph+="${name}s=$size:r=$fps$filters,trim=end_frame=$((secs * fps)),setpts=PTS-STARTPTS,setsar=1,format=yuv420p[v$n];"
        ins+="[v$n]"
        n=$((n + 1))
    done
    ffmpeg -y -hide_banner -loglevel error -nostdin -filter_complex "${graph}${ins}concat=n=$n:v=1:a=0[v]" \
        -f lavfi -i "sine=frequency=$hz:sample_rate=48000:duration=$((n * secs))" \
        -map '[v]' -map 0:a -c:v libx264 -preset veryfast -crf 20 -bf 2 \
        -x264-params "keyint=$fps:min-keyint=$fps:scenecut=0$x264" -pix_fmt yuv420p \
        -c:a aac -b:a 96k -fflags +bitexact "$out.part.mp4"
    mv -f "$out.part.mp4" "$out"
}

# song OUT BPM SECONDS: a click per beat, louder and higher on each bar's first beat, and a
# low thump under every beat
soak_song() {
    local out=$1 bpm=$2 secs=$3 p bar
    [[ -s $out ]] && return 0
    p=$(awk -v b="$bpm" 'BEGIN { print 60 / b }')
    bar="lt(mod(t\\,4*$p)\\,$p)"
    ffmpeg -y -hide_banner -loglevel error -nostdin -f lavfi -i \
        "aevalsrc='(0.5+0.4*$bar)*sin(2*PI*(1000+500*$bar)*t)*exp(-mod(t\\,$p)*120)+0.4*sin(2*PI*60*t)*exp(-mod(t\\,$p)*30)':s=44100:d=$secs" \
        "${@:4}" "$out.part.${out##*.}"
    mv -f "$out.part.${out##*.}" "$out"
}

soak_media() {
    local d=$1
    mkdir -p "$d"
    soak_clip "$d/c1.mp4" 320x240 25 2 330 "" "testsrc2" "smptehdbars" "rgbtestsrc,hue=h=t*90"
    soak_clip "$d/c2.mp4" 480x270 30 3 440 "" "testsrc2,hue=h=60" "testsrc" \
        "life=ratio=0.3:seed=5:mold=8" "smptebars"
    soak_clip "$d/c3.mp4" 640x360 25 4 550 "" "testsrc2" "gradients=seed=7:n=5:speed=0.03" \
        "cellauto=rule=110:seed=11:ratio=0.5,negate"
    soak_clip "$d/c4.mp4" 640x360 30 4 660 ":bframes=3:open-gop=1" "testsrc2,hue=h=200" \
        "smptehdbars,hue=h=t*40"
    soak_song "$d/song1.flac" 120 16 -c:a flac
    soak_song "$d/song2.m4a" 96 20 -c:a aac -b:a 128k
}

SOAK_SPECS=(
    "t1;transcode;mp4;c1.mp4;--codec h264 --preset veryslow --crf 23 --chunk-seconds 2"
    "s2;scenes;json;c2.mp4;--detector content --chunk-seconds 2"
    "t3;transcode;mkv;c3.mp4;--codec h265 --preset slow --crf 28 --chunk-seconds 3"
    "b1;beats;json;song1.flac;"
    "t2;transcode;mov;c2.mp4;--codec h264 --preset slower --crf 20 --chunk-seconds 2"
    "k1;checksum;json;c1.mp4 c2.mp4 c3.mp4 c4.mp4;--rounds 200000"
    "t4;transcode;webm;c4.mp4;--codec vp9 --crf 34 --preset 0 --chunk-seconds 2"
    "s3;scenes;json;c3.mp4;--detector adaptive --chunk-seconds 3"
    "t5;transcode;mp4;c4.mp4;--codec h264 --preset placebo --crf 22 --chunk-seconds 2"
    "b2;beats;json;song2.m4a;--min-bpm 60 --max-bpm 180"
    "t6;transcode;mp4;c3.mp4;--codec h265 --preset slow --crf 24 --chunk-seconds 2"
    "k2;checksum;json;song1.flac song2.m4a c3.mp4;--rounds 0"
    "t7;transcode;mkv;c1.mp4;--codec av1 --preset 3 --crf 35 --chunk-seconds 2"
    "s4;scenes;json;c4.mp4;--detector content --threshold 20 --chunk-seconds 2"
    "t8;transcode;mkv;c2.mp4;--codec h265 --preset slow --crf 26 --chunk-seconds 3"
    "t9;transcode;mp4;c3.mp4;--codec h264 --preset placebo --crf 20 --chunk-seconds 2"
    "s1;scenes;json;c1.mp4;--detector content --chunk-seconds 1"
)
