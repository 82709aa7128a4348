#!/usr/bin/env bash
# Soak (issue 22): a mesh of three nodes on loopback runs JOBS jobs (transcodes to H.264,
# H.265, VP9 and AV1, scene lists, beat grids, checksums; bench/lib/soak_media.sh) submitted
# INFLIGHT at a time, each to a random live node, while a chaos loop picks a random node
# every CHAOS_MIN..CHAOS_MAX s and either SIGKILLs it (and restarts it a few seconds later
# with the same config and data dir) or SIGSTOPs it for 10-20 s. A submit that fails is made
# again on another live node (3 submits at most, else the job is lost); every output is
# checked against a one-box reference made first, in-process with no node running
# (bench/lib/soak_check.py). A node that dies by itself is restarted and counted as a crash.
# Every 10 s each node's VmRSS and store size go to rss.csv.
#   bash bench/soak.sh     (JOBS=100 INFLIGHT=3 SEED=1 CHAOS_MIN=10 CHAOS_MAX=25 RSS_BOUND_MB=400;
#                           RENDERMESH=BIN to use a built binary, else target/release/rendermesh)
# Exit 1 when an output is wrong, a job is lost, a node crashed or one ends above RSS_BOUND_MB
# resident.
# Node logs, one log per submit, results, events, rss.csv and the summary stay in
# target/bench/soak/<time>/; data dirs and media live in a temp dir removed at exit.
# No traffic leaves loopback: mDNS off, mesh and control API on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
JOBS=${JOBS:-100} INFLIGHT=${INFLIGHT:-3} SEED=${SEED:-1} RSS_BOUND_MB=${RSS_BOUND_MB:-400}
CHAOS_MIN=${CHAOS_MIN:-10} CHAOS_MAX=${CHAOS_MAX:-25}
BIN=${RENDERMESH:-$REPO/target/release/rendermesh}
[[ -n ${RENDERMESH:-} || -x $BIN ]] || cargo build --release -q -p rendermesh-node
[[ -x $BIN ]] || { echo "soak: no binary at $BIN" >&2; exit 2; }
CHECK=$REPO/bench/lib/soak_check.py
# shellcheck source=lib/soak_media.sh
source "$REPO/bench/lib/soak_media.sh"
OUT=${OUT_DIR:-$REPO/target/bench/soak}/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT/submits"
WORK=$(mktemp -d)
NODES=(a b c)
log() { printf '[soak %s] %s\n' "$(date +%T)" "$*" | tee -a "$OUT/log" >&2; }

# every process this script started, children before parents' exit: the nodes by their pid
# files (their parent may be the chaos loop), then the tree under this shell
descendants() { local c; for c in $(ps -o pid= --ppid "$1"); do echo "$c"; descendants "$c"; done; }
cleanup() {
    local n p
    touch "$WORK/stop"
    for n in "${NODES[@]}"; do
        p=$(cat "$WORK/$n/pid" 2>/dev/null) || continue
        kill -CONT "$p" 2>/dev/null || true
        kill -KILL "$p" 2>/dev/null || true
    done
    p=$(descendants $$ | tr '\n' ' ')
    [[ -z ${p// /} ]] || kill -KILL $p 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'log "interrupted (SIGINT)"; exit 130' INT
trap 'log "stopped by SIGTERM"; exit 143' TERM
trap 'log "hung up (SIGHUP)"; exit 129' HUP

# the binary under test is copied: a rebuild during the run does not change what restarts
cp "$BIN" "$WORK/rendermesh"
RM=$WORK/rendermesh
log "binary $("$RM" --version)${RUST_MIN_STACK:+, RUST_MIN_STACK=$RUST_MIN_STACK}, results in $OUT"

# ------------------------------------------------------------ media and one-box reference
soak_media "$WORK/media"
# JOB_ARGS from KIND, INPUTS, OPTIONS, OUTPUT: the words after `submit`
job_args() {
    local f
    JOB_ARGS=("$1" -q)
    for f in $2; do JOB_ARGS+=("$WORK/media/$f"); done
    [[ $1 == transcode ]] && JOB_ARGS+=(-o "$4") || JOB_ARGS+=(--json "$4")
    read -r -a f <<<"$3"
    JOB_ARGS+=("${f[@]}")
}
# every node: one slot (three nodes share 2 cores), the other settings their defaults
printf 'mdns = false\nslots = 1\n' >"$WORK/ref.toml"
mkdir -p "$WORK/ref" "$WORK/out" "$WORK/done"
log "one-box reference of ${#SOAK_SPECS[@]} jobs, in-process (no node running)"
for spec in "${SOAK_SPECS[@]}"; do
    IFS=';' read -r id kind ext inputs opts <<<"$spec"
    job_args "$kind" "$inputs" "$opts" "$WORK/ref/$id.$ext"
    "$RM" --config "$WORK/ref.toml" --data-dir "$WORK/ref/data" submit "${JOB_ARGS[@]}" --local \
        >"$OUT/submits/ref-$id.log" 2>&1 || { log "reference $id failed"; cat "$OUT/submits/ref-$id.log"; exit 1; }
done
rm -rf "$WORK/ref/data"

# ------------------------------------------------------------------------------ the mesh
# Fixed free loopback ports (outside the ephemeral range): with port 0 a restarted node would
# come back on another port, which the other nodes' static peer lists do not name.
read -r -a PORTS <<<"$(python3 -c 'import random, socket
random.seed(); ports = []
while len(ports) < 3:
    p = random.randrange(20000, 30000); s = socket.socket()
    try: s.bind(("127.0.0.1", p)); ports.append(str(p))
    except OSError: pass
    finally: s.close()
print(" ".join(ports))')"
"$RM" keygen >"$WORK/swarm.key"
chmod 600 "$WORK/swarm.key"
printf 'mdns = false\n' >"$WORK/cli.toml"
for i in 0 1 2; do
    n=${NODES[i]} peers=""
    for j in 0 1 2; do ((j == i)) || peers+="\"/ip4/127.0.0.1/tcp/${PORTS[j]}\", "; done
    mkdir -p "$WORK/$n/data" "$WORK/cli/$n"
    cat >"$WORK/$n/node.toml" <<TOML
name = "$n"
mdns = false
listen = "/ip4/127.0.0.1/tcp/${PORTS[i]}"
peers = [${peers%, }]
key_file = "$WORK/swarm.key"
control_listen = "127.0.0.1:0"
slots = 1
TOML
    # What the CLI reads to reach node n: its control address and token. Its `cache` is a
    # file, so a submit that finds the node dead fails at once instead of running the job
    # in-process (with the node's own data dir it would take the store's lock from the
    # restarting node).
    ln -s "$WORK/$n/data/control.json" "$WORK/cli/$n/control.json"
    ln -s "$WORK/$n/data/control.token" "$WORK/cli/$n/control.token"
    : >"$WORK/cli/$n/cache"
    echo 0 >"$WORK/$n/gen"
done

start_node() { # NAME: start it (again) with its config and data dir; one log across restarts
    rm -f "$WORK/$1/data/control.json"
    echo "=== soak: start $(date +%T)" >>"$OUT/node-$1.log"
    RENDERMESH_LOG=${RENDERMESH_LOG:-info} "$RM" --config "$WORK/$1/node.toml" \
        --data-dir "$WORK/$1/data" node >>"$OUT/node-$1.log" 2>&1 &
    echo $! >"$WORK/$1/pid"
    disown # followed by its pid file: no "Killed" lines from bash
}
cli() { "$RM" --config "$WORK/cli.toml" --data-dir "$WORK/cli/$1" "${@:2}"; }
wait_up() { # NAME: until its control API answers (5 min at most)
    local k
    for ((k = 0; k < 600; k++)); do
        [[ -s $WORK/$1/data/control.json ]] && cli "$1" peers >/dev/null 2>&1 && return 0
        alive "$(<"$WORK/$1/pid")" || return 1
        sleep 0.5
    done
    return 1
}
peer_count() { cli "$1" peers --json 2>/dev/null | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' || echo 0; }

log "starting node a (it calibrates once; b and c copy its caps.json, as the tests do)"
start_node a
for ((k = 0; k < 600; k++)); do [[ -s $WORK/a/data/caps.json ]] && break; sleep 0.5; done
wait_up a || { log "node a did not start"; tail "$OUT/node-a.log"; exit 1; }
for n in b c; do cp "$WORK/a/data/caps.json" "$WORK/$n/data/"; start_node "$n"; done
for n in "${NODES[@]}"; do wait_up "$n" || { log "node $n did not start"; exit 1; }; echo up >"$WORK/$n/state"; done
for ((k = 0; k < 60; k++)); do
    [[ $(peer_count a)$(peer_count b)$(peer_count c) == 222 ]] && break # each lists the other two
    sleep 1
done
log "mesh up: a b c on ports ${PORTS[*]}, peers seen $(peer_count a) $(peer_count b) $(peer_count c)"

# ----------------------------------------------------------------------- jobs and chaos
pick_live() { # PICKED: a random node that is up (neither killed nor frozen)
    local up=() n
    while :; do
        for n in "${NODES[@]}"; do [[ $(<"$WORK/$n/state") == up ]] && up+=("$n"); done
        ((${#up[@]})) && break
        sleep 1
    done
    PICKED=${up[RANDOM % ${#up[@]}]}
}
run_job() { # N: the Nth job of the cycle, up to 3 submits; one tab-separated line to results
    local i=$1 try n gen out sl res why="" id kind ext inputs opts
    IFS=';' read -r id kind ext inputs opts <<<"${SOAK_SPECS[(i - 1) % ${#SOAK_SPECS[@]}]}"
    RANDOM=$((SEED * 10007 + i))
    for try in 1 2 3; do
        pick_live
        n=$PICKED gen=$(<"$WORK/$PICKED/gen") out=$WORK/out/$i-$try.$ext sl=$OUT/submits/$i-$try-$PICKED.log
        job_args "$kind" "$inputs" "$opts" "$out"
        if timeout 900 "$RM" --config "$WORK/cli.toml" --data-dir "$WORK/cli/$n" submit "${JOB_ARGS[@]}" >"$sl" 2>&1; then
            why=$(python3 "$CHECK" check "$kind" "$out" "$WORK/ref/$id.$ext") && res=ok || res=wrong
            [[ $res == ok ]] && rm -f "$out" || mv "$out" "$OUT/" 2>/dev/null
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$id" "$kind" "$try" "$res" "$n" "${why#* }" >>"$OUT/results"
            return 0
        fi
        if [[ $(<"$WORK/$n/gen") != "$gen" ]]; then why="$n went down during the job: $(<"$WORK/$n/cause")"
        elif grep -q 'no node answers' "$sl"; then why="$n did not answer"
        else why="$(grep -v '^[[:space:]]*$' "$sl" | tail -n 1)"; fi
        log "job $i ($id, $kind) submit $try on $n failed: $why"
        ((try == 3)) || sleep 10 # time for a killed or crashed node to be seen down or back
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$id" "$kind" 3 lost "$n" "$why" >>"$OUT/results"
}
alive() { local st; st=$(awk '/^State/ {print $2}' "/proc/$1/status" 2>/dev/null); [[ -n $st && $st != Z ]]; }
stopped() { # NAME CAUSE: the node is going down (killed, or it died): jobs on it fail
    echo down >"$WORK/$1/state"
    echo "$2" >"$WORK/$1/cause"
    echo $(($(<"$WORK/$1/gen") + 1)) >"$WORK/$1/gen"
}
restart() { # NAME: start it again (3 tries), then it takes jobs again
    local k
    for k in 1 2 3; do start_node "$1"; wait_up "$1" && break; log "$1 did not come back (try $k)"; done
    echo up >"$WORK/$1/state"
}
reap() { # a node that died by itself (not killed here) is a crash: counted, logged, restarted
    local n
    for n in "${NODES[@]}"; do
        [[ $(<"$WORK/$n/state") == up ]] && ! alive "$(<"$WORK/$n/pid")" || continue
        stopped "$n" "crashed"
        echo "$(date +%s) crash $n" >>"$OUT/events"
        log "node $n died by itself: $(grep -v '^[[:space:]]*$' "$OUT/node-$n.log" | tail -n 2 | tr '\n' ' ')"
        restart "$n"
    done
}
guard() { # SECONDS: wait, reaping crashes every second; fails once $WORK/stop exists
    local k
    for ((k = 0; k < $1; k++)); do reap; [[ -e $WORK/stop ]] && return 1; sleep 1; done
}
chaos() { # until $WORK/stop: a kill or a freeze of a random node, one at a time
    local n pid s
    RANDOM=$SEED
    while guard $((CHAOS_MIN + RANDOM % (CHAOS_MAX - CHAOS_MIN + 1))); do
        n=${NODES[RANDOM % 3]} pid=$(<"$WORK/$n/pid")
        [[ $(<"$WORK/$n/state") == up ]] && alive "$pid" || continue # a crash is reap's
        if ((RANDOM % 2)); then
            s=$((3 + RANDOM % 5))
            stopped "$n" "killed by the chaos loop"
            kill -KILL "$pid"
            echo "$(date +%s) kill $n $s" >>"$OUT/events"
            log "chaos: SIGKILL $n, restart in $s s"
            guard "$s" || true
            restart "$n"
        else
            s=$((10 + RANDOM % 11))
            echo frozen >"$WORK/$n/state"
            kill -STOP "$pid"
            echo "$(date +%s) freeze $n $s" >>"$OUT/events"
            log "chaos: SIGSTOP $n for $s s"
            guard "$s" || true
            kill -CONT "$pid"
            echo up >"$WORK/$n/state"
        fi
    done
}
sample() { # one row: seconds since the jobs began, each node's VmRSS in MB (empty while down), store MB
    local row=$(($(date +%s) - T0)) n
    for n in "${NODES[@]}"; do
        row+=",$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$(<"$WORK/$n/pid")/status" 2>/dev/null || true)"
    done
    for n in "${NODES[@]}"; do row+=",$(du -sm "$WORK/$n/data/cache" 2>/dev/null | cut -f1 || true)"; done
    echo "$row" >>"$OUT/rss.csv"
}

T0=$(date +%s)
echo "t_s,rss_a,rss_b,rss_c,store_a,store_b,store_c" >"$OUT/rss.csv"
: >"$OUT/events"
: >"$OUT/results"
(set +e; while sample; [[ ! -e $WORK/stop ]]; do sleep 10; done) &
(set +e; chaos) &
CHAOS=$!
log "$JOBS jobs, $INFLIGHT at a time; chaos every $CHAOS_MIN-$CHAOS_MAX s (seed $SEED)"
shopt -s nullglob
count_done() { local f=("$WORK"/done/*); DONE=${#f[@]}; } # no subprocess: cannot come back empty
for ((i = 1; i <= JOBS; i++)); do
    while count_done && ((i - 1 - DONE >= INFLIGHT)); do sleep 1; done
    (run_job "$i" || true; touch "$WORK/done/$i") &
    ((i % 10)) || log "submitted $i jobs"
done
while count_done && ((DONE < JOBS)); do sleep 2; done
echo $(($(date +%s) - T0)) >"$OUT/duration"
log "all jobs ended; the chaos loop finishes its last event"
touch "$WORK/stop"
wait "$CHAOS" || true
sleep 10
reap
sample
for n in "${NODES[@]}"; do
    p=$(grep -c 'panicked' "$OUT/node-$n.log" || true)
    ((p == 0)) || log "node $n: $p panics in its log (node-$n.log)"
done
python3 "$CHECK" summary "$OUT" "$RSS_BOUND_MB" | tee "$OUT/summary"
