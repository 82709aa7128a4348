# Sourced by the mesh benchmarks: their generated 1080p30 source, made once per length.
#
# mesh_source DURATION DIR -> sets SRC (DIR/mesh-src-1080p30-<DURATION>s-v1.mp4, generated if
# missing: eight moving patterns in turn, a hard cut every 5 s, a keyframe every 2 s so jobs
# can cut shards of 2 s and more, a stereo tone) and SRC_FRAMES. The caller defines log.

mesh_source() {
    local duration=$1 dir=$2 graph="" inputs="" n=0 t d
    local kinds=(
        "testsrc2=s=1920x1080:r=30"
        "smptehdbars=s=1920x1080:r=30,scroll=h=0.004"
        "gradients=s=1920x1080:r=30:seed=7:n=5:speed=0.03"
        "rgbtestsrc=s=1920x1080:r=30,hue=h=t*120"
        "testsrc2=s=960x540:r=30,rotate=a=0.35*t:c=navy,scale=1920:1080,hue=s=0.4"
        "cellauto=s=640x360:r=30:rule=110:seed=11:ratio=0.5,scale=1920:1080:flags=neighbor,negate"
        "life=s=480x270:r=30:seed=5:ratio=0.3:mold=8,scale=1920:1080:flags=neighbor"
        "testsrc=s=1920x1080:r=30,hue=h=90"
    )
    SRC=$dir/mesh-src-1080p30-${duration}s-v1.mp4
    if [[ ! -s $SRC ]]; then
        log "generating a ${duration}s 1080p30 source (a minute or two) -> $SRC"
        for ((t = 0; t < duration; t += 5)); do
            d=$((duration - t < 5 ? duration - t : 5))
            graph+="${kinds[n % ${#kinds[@]}]},trim=start_frame=30:end_frame=$(((d + 1) * 30)),setpts=PTS-STARTPTS,setsar=1,format=yuv420p[v$n];"
            inputs+="[v$n]"
            n=$((n + 1))
        done
        graph+="${inputs}concat=n=$n:v=1:a=0[v]"
        ffmpeg -y -hide_banner -loglevel error -nostdin -filter_complex "$graph" \
            -f lavfi -i "sine=frequency=330:sample_rate=48000:duration=$duration" \
            -map '[v]' -map 0:a -c:v libx264 -preset veryfast -crf 20 \
            -x264-params "keyint=60:min-keyint=60:scenecut=0" -pix_fmt yuv420p \
            -c:a aac -b:a 128k -fflags +bitexact "$SRC.partial.mp4"
        mv -f "$SRC.partial.mp4" "$SRC"
    fi
    SRC_FRAMES=$(ffprobe -v error -count_packets -select_streams v:0 \
        -show_entries stream=nb_read_packets -of csv=p=0 "$SRC" | tr -d ',')
    log "source: $SRC_FRAMES frames, $(du -m "$SRC" | cut -f1) MB"
}
