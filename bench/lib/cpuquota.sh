# Sourced by benchmarks that run nodes under a CPU quota (needs root): a cgroup per node with
# the cpu controller's bandwidth limit, on cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us).
#
# cpuquota_run SHARE PERIOD_US CMD… -> (in a subshell: it execs) runs CMD in a fresh cgroup limited to SHARE of one CPU
# (e.g. 0.5) per PERIOD_US; a SHARE of 1 or more runs CMD without a limit. Prints nothing;
# the cgroup is removed by cpuquota_cleanup (called from the caller's EXIT trap).

CPUQUOTA_GROUPS=()

# the directory under which this script may make groups with a cpu controller
cpuquota_root() {
    if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
        # v2: a child of the root needs the cpu controller enabled in the root's subtree
        grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null \
            || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || return 1
        echo /sys/fs/cgroup
    elif [[ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]]; then
        echo /sys/fs/cgroup/cpu
    else
        return 1
    fi
}

cpuquota_make() { # NAME SHARE PERIOD_US -> prints the group's dir
    local root dir quota
    root=$(cpuquota_root) || { echo "no cgroup cpu controller is writable here" >&2; return 1; }
    dir=$root/rendermesh-bench-$$-$1
    mkdir -p "$dir"
    CPUQUOTA_GROUPS+=("$dir")
    quota=$(awk -v s="$2" -v p="$3" 'BEGIN { printf "%d", s * p }')
    if [[ -f $dir/cpu.max ]]; then
        echo "$quota $3" >"$dir/cpu.max"
    else
        echo "$3" >"$dir/cpu.cfs_period_us"
        echo "$quota" >"$dir/cpu.cfs_quota_us"
    fi
    echo "$dir"
}

cpuquota_run() {
    local share=$1 period=$2 dir
    shift 2
    if awk -v s="$share" 'BEGIN { exit !(s >= 1) }'; then
        exec "$@"
    fi
    dir=$(cpuquota_make "q${#CPUQUOTA_GROUPS[@]}-$RANDOM" "$share" "$period") || exit 1
    echo "$BASHPID" >"$dir/cgroup.procs"
    exec "$@"
}

cpuquota_cleanup() {
    local d
    for d in /sys/fs/cgroup/rendermesh-bench-$$-* /sys/fs/cgroup/cpu/rendermesh-bench-$$-*; do
        [[ -d $d ]] && rmdir "$d" 2>/dev/null || true
    done
}
