#!/usr/bin/env bash
# Benchmark for issue 2: rendermesh scene detection and transcode versus the
# usual tools (ffmpeg, PySceneDetect) on a generated 1080p30 clip with hard cuts.
#
# Usage: bench/issue2.sh [--quick] [--duration SECS] [--runs N]
#                        [--bench-dir DIR] [--rendermesh PATH] [--no-build]
#
# Environment (command-line options win over these):
#   RENDERMESH  rendermesh binary (default: <repo>/target/release/rendermesh,
#               built with `cargo build --release -p rendermesh-node` if missing)
#   BUILD       set to 0 to never build; rendermesh rows are then skipped when
#               the binary is not executable
#   BENCH_DIR   work dir for the source clip, venv and outputs
#               (default: <repo>/target/bench)
#   DURATION    length of the generated clip in seconds (default 120;
#               --quick sets 20 for a smoke run)
#   RUNS        runs per measurement; the best wall time is kept (default 1)
#   PYTHON      interpreter used to create the venv (default python3)
#   SCENEDETECT_VERSION  PySceneDetect version to install (default 0.7.2)
#   SKIP_TRANSCODE  set to 1 to measure only decoding and scene detection
#
# Progress goes to stderr; the Markdown report goes to stdout and to
# $BENCH_DIR/issue2-results.md.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEFAULT_RENDERMESH="$REPO_ROOT/target/release/rendermesh"

RENDERMESH=${RENDERMESH:-}
BENCH_DIR=${BENCH_DIR:-}
DURATION=${DURATION:-120}
RUNS=${RUNS:-1}
BUILD=${BUILD:-1}
PYTHON=${PYTHON:-python3}
SCENEDETECT_VERSION=${SCENEDETECT_VERSION:-0.7.2}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while (($#)); do
    case $1 in
        --quick) DURATION=20 ;;
        --duration) DURATION=${2:?--duration needs a value}; shift ;;
        --duration=*) DURATION=${1#*=} ;;
        --runs) RUNS=${2:?--runs needs a value}; shift ;;
        --runs=*) RUNS=${1#*=} ;;
        --bench-dir) BENCH_DIR=${2:?--bench-dir needs a value}; shift ;;
        --bench-dir=*) BENCH_DIR=${1#*=} ;;
        --rendermesh) RENDERMESH=${2:?--rendermesh needs a value}; shift ;;
        --rendermesh=*) RENDERMESH=${1#*=} ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "issue2.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[issue2] %s\n' "$*" >&2; }
die() { printf '[issue2] error: %s\n' "$*" >&2; exit 1; }

[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 4)) || die "DURATION must be an integer >= 4 (got '$DURATION')"
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 1)) || die "RUNS must be an integer >= 1 (got '$RUNS')"

# User-given relative paths are taken from the current directory; the defaults
# live under the repository root.
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
RENDERMESH=$(abspath "${RENDERMESH:-$DEFAULT_RENDERMESH}")
BENCH_DIR=$(abspath "${BENCH_DIR:-$REPO_ROOT/target/bench}")

for tool in ffmpeg ffprobe awk "$PYTHON"; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH"
done

# Other work on the machine skews every figure: the report records the load.
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "n/a")

mkdir -p "$BENCH_DIR/out" "$BENCH_DIR/logs"
OUT=$BENCH_DIR/out
LOGS=$BENCH_DIR/logs

TMP_DIRS=()
cleanup() { ((${#TMP_DIRS[@]})) && rm -rf -- "${TMP_DIRS[@]}"; return 0; }
trap cleanup EXIT

# ---------------------------------------------------------------- helpers ---

now() { date +%s.%N; }
# fdiv A B [DECIMALS] -> A/B, or "n/a" when either side is missing or B is 0
fdiv() {
    awk -v a="${1:-}" -v b="${2:-}" -v d="${3:-2}" 'BEGIN {
        if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) { print "n/a"; exit }
        printf "%.*f\n", d, a / b }'
}
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }
fmin() { awk -v a="${1:-}" -v b="$2" 'BEGIN { if (a == "" || b + 0 < a + 0) print b; else print a }'; }
# fcmp A OP B -> exit status of the numeric comparison
fcmp() { awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN {
    if (op == ">=") exit !(a + 0 >= b + 0); if (op == "<=") exit !(a + 0 <= b + 0); exit 1 }'; }

# timed LOGFILE CMD... : runs CMD with its output in LOGFILE; sets LAST_TIME
# (wall seconds) and returns the command's exit status.
LAST_TIME=
timed() {
    local logfile=$1 t0 t1 rc=0
    shift
    t0=$(now)
    "$@" </dev/null >"$logfile" 2>&1 || rc=$?
    t1=$(now)
    LAST_TIME=$(fsub "$t0" "$t1")
    if ((rc != 0)); then
        log "command failed (exit $rc, ${LAST_TIME}s): $*"
        tail -n 20 "$logfile" | sed 's/^/    /' >&2
    fi
    return "$rc"
}

# count_frames FILE -> number of video packets in the first video stream
count_frames() {
    ffprobe -v error -select_streams v:0 -count_packets \
        -show_entries stream=nb_read_packets -of csv=p=0 "$1" | tr -d ' \r,'
}

# count_scene_rows CSV -> rows whose first field is a number (one per scene).
# Works for PySceneDetect's list-scenes CSV (a "Timecode List" line and a
# header precede the rows) and any plain CSV with one scene per line.
count_scene_rows() {
    [[ -f $1 ]] || { echo "n/a"; return; }
    awk -F, '{ f = $1; gsub(/[ "\r]/, "", f) } f ~ /^[0-9]+(\.[0-9]+)?$/ { n++ } END { print n + 0 }' "$1"
}

fresh_dir() { mktemp -d "$BENCH_DIR/$1.XXXXXX"; }

# ---------------------------------------------------------- source clip ---

# Segment kinds: each is a lavfi video source with motion, turned into a
# 1920x1080 yuv420p 30 fps stream. The first second of every source is
# dropped (life and cellauto start from a random fill that settles at once).
# Per segment, @SEED@ becomes a fixed seed and @F@ the source's frame count
# including that second; mandelbrot's end_pts counts frames, so it zooms over
# the whole segment (a fast zoom makes it flicker and render very slowly).
SEG_KINDS=(
    "testsrc2=s=1920x1080:r=30"
    "smptehdbars=s=1920x1080:r=30,scroll=h=0.004"
    "mandelbrot=s=640x360:r=30:maxiter=200:end_pts=@F@:end_scale=0.02,scale=1920:1080:flags=bicubic"
    "life=s=480x270:r=30:seed=@SEED@:ratio=0.3:mold=8:life_color=#30ff90:death_color=#a01040:mold_color=#202060,scale=1920:1080:flags=neighbor"
    "gradients=s=1920x1080:r=30:seed=@SEED@:n=5:speed=0.03"
    "rgbtestsrc=s=1920x1080:r=30,hue=h=t*120"
    "cellauto=s=640x360:r=30:rule=110:seed=@SEED@:ratio=0.5,scale=1920:1080:flags=neighbor,negate"
    "testsrc2=s=960x540:r=30,rotate=a=0.35*t:c=navy,scale=1920:1080,hue=s=0.4"
)
SEG_NAMES=(testsrc2 smptehdbars+scroll mandelbrot life gradients rgbtestsrc+hue cellauto rotated-testsrc2)
# Segment lengths (seconds), cycled; a different cycle length from SEG_KINDS
# so the kind/length pairs vary.
SEG_LENGTHS=(7 5 11 4 9 6 12 8 10)
GEN_VERSION=1   # bump when the generator changes, to invalidate cached clips

# plan_segments -> "kind length" lines summing to exactly $DURATION, every
# length within 4..12 s (the last one is shortened or grown to fit).
plan_segments() {
    local remaining=$DURATION i=0 d
    while ((remaining > 0)); do
        d=${SEG_LENGTHS[i % ${#SEG_LENGTHS[@]}]}
        if ((remaining - d < 4)); then
            if ((remaining <= 12)); then d=$remaining; else d=$((remaining - 4)); fi
        fi
        echo "$((i % ${#SEG_KINDS[@]})) $d"
        remaining=$((remaining - d))
        i=$((i + 1))
    done
}

generate_source() {
    local dst=$1 graph="" inputs="" n=0 kind d src seed freq
    while read -r kind d; do
        seed=$((1000 + 37 * n))
        freq=$((220 + 55 * (n % 12)))
        src=${SEG_KINDS[kind]//@SEED@/$seed}
        src=${src//@F@/$(((d + 1) * 30))}
        graph+="$src,trim=start_frame=30:end_frame=$(((d + 1) * 30)),setpts=PTS-STARTPTS,fps=30,scale=1920:1080,setsar=1,format=yuv420p[v$n];"
        graph+="sine=frequency=$freq:sample_rate=48000:duration=$d,aformat=sample_fmts=fltp:channel_layouts=stereo,asetpts=PTS-STARTPTS[a$n];"
        inputs+="[v$n][a$n]"
        n=$((n + 1))
    done < <(plan_segments)
    graph+="${inputs}concat=n=$n:v=1:a=1[v][a]"
    log "generating ${DURATION}s 1080p30 source with $n segments (this takes a while) -> $dst"
    local tmp="$dst.partial.mp4"
    timed "$LOGS/generate.log" ffmpeg -y -hide_banner -loglevel error -nostdin \
        -filter_complex "$graph" -map '[v]' -map '[a]' \
        -c:v libx264 -preset veryfast -crf 20 -g 250 -pix_fmt yuv420p -r 30 \
        -c:a aac -b:a 128k -fflags +bitexact -movflags +faststart "$tmp" \
        || die "source generation failed (see $LOGS/generate.log)"
    mv -f "$tmp" "$dst"
    log "generated in ${LAST_TIME}s"
}

SRC=$BENCH_DIR/src-1080p30-${DURATION}s-g${GEN_VERSION}.mp4
PLAN=${SRC%.mp4}.plan.txt
if [[ ! -s $SRC ]]; then
    generate_source "$SRC"
else
    log "using cached source $SRC"
fi
plan_segments | awk -v names="${SEG_NAMES[*]}" 'BEGIN { split(names, nm, " ") }
    { printf "%d %s %ds start=%ds\n", NR, nm[$1 + 1], $2, t; t += $2 }' >"$PLAN"
SEGMENTS=$(wc -l <"$PLAN" | tr -d ' ')

SRC_FRAMES=$(count_frames "$SRC")
[[ $SRC_FRAMES =~ ^[0-9]+$ ]] || die "could not count frames of $SRC"
SRC_INFO=$(ffprobe -v error -select_streams v:0 \
    -show_entries stream=width,height,r_frame_rate,codec_name -of default=nw=1 "$SRC")
SRC_W=$(sed -n 's/^width=//p' <<<"$SRC_INFO")
SRC_H=$(sed -n 's/^height=//p' <<<"$SRC_INFO")
SRC_VCODEC=$(sed -n 's/^codec_name=//p' <<<"$SRC_INFO")
SRC_FPS=$(sed -n 's/^r_frame_rate=//p' <<<"$SRC_INFO" | awk -F/ '{ printf "%g", ($2 ? $1 / $2 : $1) }')
SRC_ACODEC=$(ffprobe -v error -select_streams a:0 -show_entries stream=codec_name -of csv=p=0 "$SRC" | tr -d ',')
SRC_DUR=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$SRC" | awk '{ printf "%.2f", $1 }')
log "source: ${SRC_W}x${SRC_H} ${SRC_FPS} fps, $SRC_FRAMES frames, ${SRC_DUR}s, $SEGMENTS segments"

# ---------------------------------------------------------- PySceneDetect ---

VENV=$BENCH_DIR/venv
VENV_STAMP=$VENV/.issue2-ready
SD_NOTE=""
setup_venv() {
    if [[ -f $VENV_STAMP && -x $VENV/bin/scenedetect ]]; then
        return
    fi
    log "setting up venv in $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    local want=$SCENEDETECT_VERSION use=$SCENEDETECT_VERSION avail
    avail=$("$VENV/bin/python" -m pip index versions scenedetect 2>/dev/null \
        | sed -n 's/^Available versions: //p' | tr -d ' ' | tr ',' '\n' || true)
    if [[ -n $avail ]] && ! grep -qxF "$want" <<<"$avail"; then
        local minor=${want%.*}
        use=$(grep -E "^${minor//./\\.}(\.|$)" <<<"$avail" | sort -V | tail -n 1 || true)
        [[ -n $use ]] || die "scenedetect $want is not available and neither is any $minor.x (available: $(tr '\n' ' ' <<<"$avail"))"
        log "WARNING: scenedetect $want is NOT available from the package index; using the closest $minor.x release, $use"
        echo "requested $want, not available; used $use" >"$VENV/.issue2-note"
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "scenedetect==$use" opencv-python-headless >&2
    touch "$VENV_STAMP"
}
setup_venv
[[ -f $VENV/.issue2-note ]] && SD_NOTE=$(cat "$VENV/.issue2-note")
SD_VERSION=$("$VENV/bin/python" -c 'import scenedetect; print(scenedetect.__version__)')
CV_VERSION=$("$VENV/bin/python" -c 'import cv2; print(cv2.__version__)')
if [[ $SD_VERSION != "$SCENEDETECT_VERSION" && -z $SD_NOTE ]]; then
    SD_NOTE="requested $SCENEDETECT_VERSION, venv has $SD_VERSION"
    log "WARNING: $SD_NOTE (delete $VENV to reinstall)"
fi

# ------------------------------------------------------------- rendermesh ---

RM_OK=1
RM_NOTE=""
if [[ ! -x $RENDERMESH ]]; then
    if [[ $BUILD == 0 ]]; then
        RM_OK=0
        RM_NOTE="rendermesh binary not found: $RENDERMESH (BUILD=0, rendermesh rows skipped)"
        log "$RM_NOTE"
    elif [[ $RENDERMESH == "$DEFAULT_RENDERMESH" ]]; then
        command -v cargo >/dev/null 2>&1 || die "rendermesh binary not found and cargo is not on PATH"
        log "rendermesh binary not found; running cargo build --release -p rendermesh-node"
        (cd "$REPO_ROOT" && cargo build --release -p rendermesh-node) >&2
        [[ -x $RENDERMESH ]] || die "rendermesh binary not found at $RENDERMESH after the build"
    else
        die "rendermesh binary not found: $RENDERMESH (set BUILD=0 to skip the rendermesh rows)"
    fi
fi
RM_VERSION="n/a"
if ((RM_OK)); then
    RM_VERSION=$(timeout 20 "$RENDERMESH" --version 2>/dev/null | head -n 1 || true)
    RM_VERSION=${RM_VERSION:-unknown}
fi

# ----------------------------------------------------------- measurements ---

# Each measurement keeps the best wall time over RUNS runs; "failed" when a
# run exits non-zero.

log "a. ffmpeg decode (x$RUNS)"
DEC_T=""
for ((r = 1; r <= RUNS; r++)); do
    if timed "$LOGS/ffmpeg-decode.log" ffmpeg -hide_banner -loglevel error -nostdin -i "$SRC" -f null -; then
        DEC_T=$(fmin "$DEC_T" "$LAST_TIME")
    else DEC_T=failed; break; fi
done

log "b. PySceneDetect detect-content (x$RUNS)"
SD_T=""
SD_CSV=$OUT/pyscenedetect-scenes.csv
for ((r = 1; r <= RUNS; r++)); do
    rm -f "$SD_CSV"
    if timed "$LOGS/pyscenedetect.log" "$VENV/bin/scenedetect" -i "$SRC" -q -o "$OUT" \
        detect-content list-scenes -f "$(basename "$SD_CSV")"; then
        SD_T=$(fmin "$SD_T" "$LAST_TIME")
    else SD_T=failed; break; fi
done
SD_SCENES=$(count_scene_rows "$SD_CSV")

RM_SC_T="" RM_HIT_T="" RM_SCENES="n/a" RM_CUTS_MATCH="" RM_TC_T="" RM_TC_CHECK="n/a" RM_TC_FRAMES="n/a"
FF_TC_T=""
RM_SC_CSV=$OUT/rendermesh-scenes.csv
if ((RM_OK)); then
    log "c. rendermesh scenes, fresh data dir (x$RUNS)"
    dd=""
    for ((r = 1; r <= RUNS; r++)); do
        dd=$(fresh_dir rm-data-scenes); TMP_DIRS+=("$dd")
        rm -f "$RM_SC_CSV"
        if timed "$LOGS/rendermesh-scenes.log" "$RENDERMESH" --data-dir "$dd" submit scenes --local -q --detector content "$SRC" --csv "$RM_SC_CSV"; then
            RM_SC_T=$(fmin "$RM_SC_T" "$LAST_TIME")
        else RM_SC_T=failed; break; fi
    done
    RM_SCENES=$(count_scene_rows "$RM_SC_CSV")
    # Both CSVs use PySceneDetect's list-scenes layout: line 1 lists the cuts.
    if [[ -s $RM_SC_CSV && -s $SD_CSV ]]; then
        if [[ $(head -n 1 "$RM_SC_CSV" | tr -d '\r') == "$(head -n 1 "$SD_CSV" | tr -d '\r')" ]]; then
            RM_CUTS_MATCH="same cut timecodes"
        else
            RM_CUTS_MATCH="cut timecodes differ"
        fi
    fi
    if [[ $RM_SC_T != failed ]]; then
        log "c'. rendermesh scenes, same data dir again (cache hit) (x$RUNS)"
        for ((r = 1; r <= RUNS; r++)); do
            if timed "$LOGS/rendermesh-scenes-cached.log" "$RENDERMESH" --data-dir "$dd" submit scenes --local -q --detector content "$SRC" --csv "$OUT/rendermesh-scenes-cached.csv"; then
                RM_HIT_T=$(fmin "$RM_HIT_T" "$LAST_TIME")
            else RM_HIT_T=failed; break; fi
        done
    fi
fi

if [[ ${SKIP_TRANSCODE:-0} != 1 ]]; then
log "d. ffmpeg libx264 medium crf 23 (x$RUNS)"
FF_OUT=$OUT/OUT_ffmpeg.mp4
for ((r = 1; r <= RUNS; r++)); do
    if timed "$LOGS/ffmpeg-transcode.log" ffmpeg -y -hide_banner -loglevel error -nostdin -i "$SRC" \
        -c:v libx264 -preset medium -crf 23 -c:a copy "$FF_OUT"; then
        FF_TC_T=$(fmin "$FF_TC_T" "$LAST_TIME")
    else FF_TC_T=failed; break; fi
done

RM_OUT=$OUT/OUT_rm.mp4
if ((RM_OK)); then
    log "e. rendermesh transcode, fresh data dir (x$RUNS)"
    for ((r = 1; r <= RUNS; r++)); do
        dd=$(fresh_dir rm-data-transcode); TMP_DIRS+=("$dd")
        rm -f "$RM_OUT"
        if timed "$LOGS/rendermesh-transcode.log" "$RENDERMESH" --data-dir "$dd" submit transcode --local -q "$SRC" \
            -o "$RM_OUT" --codec h264 --crf 23 --preset medium; then
            RM_TC_T=$(fmin "$RM_TC_T" "$LAST_TIME")
        else RM_TC_T=failed; break; fi
    done
    if [[ -s $RM_OUT ]]; then
        RM_TC_FRAMES=$(count_frames "$RM_OUT" || echo "n/a")
        if [[ $RM_TC_FRAMES == "$SRC_FRAMES" ]]; then RM_TC_CHECK=OK; else RM_TC_CHECK=MISMATCH; fi
    else
        RM_TC_CHECK="MISMATCH (no output file)"
    fi
fi

fi # SKIP_TRANSCODE

# ------------------------------------------------------------------ report ---

fps_of() { [[ ${1:-} =~ ^[0-9.]+$ ]] && fdiv "$SRC_FRAMES" "$1" 1 || echo "n/a"; }
secs() { [[ ${1:-} =~ ^[0-9.]+$ ]] && printf '%.2f s' "$1" || printf '%s' "${1:-n/a}"; }
size_mb() { [[ -s $1 ]] && awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f MB", b / 1e6 }' || echo "n/a"; }
skipped="skipped (binary not found)"

SPEEDUP="n/a" SPEEDUP_OK="" TC_RATIO="n/a" TC_OK=""
times() { [[ $1 == n/a ]] && echo "n/a" || echo "$1×"; }
if [[ $SD_T =~ ^[0-9.]+$ && $RM_SC_T =~ ^[0-9.]+$ ]]; then
    SPEEDUP=$(fdiv "$SD_T" "$RM_SC_T" 2)
    if fcmp "$SPEEDUP" ">=" 1.8; then SPEEDUP_OK=PASS; else SPEEDUP_OK=FAIL; fi
fi
if [[ $FF_TC_T =~ ^[0-9.]+$ && $RM_TC_T =~ ^[0-9.]+$ ]]; then
    TC_RATIO=$(fdiv "$RM_TC_T" "$FF_TC_T" 3)
    if fcmp "$TC_RATIO" "<=" 1.02; then TC_OK=PASS; else TC_OK=FAIL; fi
fi
[[ $RM_TC_CHECK == MISMATCH* ]] && TC_OK="FAIL (frame count)"

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
FFMPEG_VERSION=$(ffmpeg -hide_banner -version 2>/dev/null | head -n 1 | sed 's/ Copyright.*//')
GIT_REV=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "none")
if ((RM_OK)); then
    rm_cell() { printf '%s' "$1"; }
else
    rm_cell() { printf '%s' "$skipped"; }
fi

REPORT=$BENCH_DIR/issue2-results.md
{
    echo "## rendermesh benchmark (issue 2)"
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| date | $(date -u +%Y-%m-%dT%H:%M:%SZ) |"
    echo "| machine | $(nproc) cores, ${CPU_MODEL:-unknown CPU}; load average at start $LOAD_AT_START |"
    echo "| ffmpeg | $FFMPEG_VERSION |"
    echo "| PySceneDetect | $SD_VERSION (OpenCV $CV_VERSION)${SD_NOTE:+ — $SD_NOTE} |"
    echo "| rendermesh | $RM_VERSION (repo rev $GIT_REV) |"
    echo "| source | ${SRC_W}x${SRC_H} ${SRC_FPS} fps $SRC_VCODEC + $SRC_ACODEC, $SRC_FRAMES frames, ${SRC_DUR} s, $SEGMENTS segments with hard cuts |"
    echo "| runs | best of $RUNS |"
    echo
    echo "| measurement | wall time | fps | comparison | goal |"
    echo "|---|---:|---:|---|---|"
    echo "| ffmpeg decode (\`-f null\`) | $(secs "$DEC_T") | $(fps_of "$DEC_T") | | |"
    echo "| PySceneDetect detect-content | $(secs "$SD_T") | $(fps_of "$SD_T") | | |"
    echo "| rendermesh scenes (fresh data dir) | $(rm_cell "$(secs "$RM_SC_T")") | $(rm_cell "$(fps_of "$RM_SC_T")") | $(rm_cell "$(times "$SPEEDUP") vs PySceneDetect") | ≥ 1.8× ${SPEEDUP_OK} |"
    echo "| rendermesh scenes (cache hit) | $(rm_cell "$(secs "$RM_HIT_T")") | | | |"
    echo "| ffmpeg libx264 medium crf 23 | $(secs "$FF_TC_T") | $(fps_of "$FF_TC_T") | output $(size_mb "$FF_OUT") | |"
    echo "| rendermesh transcode h264 medium crf 23 | $(rm_cell "$(secs "$RM_TC_T")") | $(rm_cell "$(fps_of "$RM_TC_T")") | $(rm_cell "$(times "$TC_RATIO") of ffmpeg time, output $(size_mb "$RM_OUT"), frames $RM_TC_FRAMES/$SRC_FRAMES $RM_TC_CHECK") | ≤ 1.02× ${TC_OK} |"
    echo "| scenes found | | | PySceneDetect $SD_SCENES, rendermesh $(rm_cell "$RM_SCENES${RM_CUTS_MATCH:+, $RM_CUTS_MATCH}") (segments generated: $SEGMENTS) | |"
    if [[ -n $RM_NOTE ]]; then
        echo
        echo "$RM_NOTE"
    fi
} | tee "$REPORT"
log "report written to $REPORT"
