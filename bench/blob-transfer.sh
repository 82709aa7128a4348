#!/usr/bin/env bash
# Benchmark for issue 4: blob transfer throughput between two nodes over
# 127.0.0.1 (TCP + noise (keyed prologue) + yamux), verified (blake3) and stored.
# The blob comes over blob streams (--streams N at once, default 8, 2 MiB each); with --pieces,
# as pipelined piece requests (how peers that serve no blob streams are fetched from).
#
# Usage: bench/blob-transfer.sh [--size MIB] [--runs N] [--streams N] [--pieces]
#                               [--piece KIB] [--depth N] [--dir DIR]
#
# Environment (command-line options win over these):
#   SIZE_MIB  blob size in MiB (default 512)
#   RUNS      transfers; the best is reported (default 3)
#   PIECE_KIB with --pieces: piece size in KiB (default 1024; at most 4096)
#   DEPTH     with --pieces: piece requests in flight (default 8)
#   BENCH_DIR where the two blob stores live (default: the system temp dir)
#
# Builds the example in release mode (a few minutes from clean) and runs it.
# Other work on the machine skews the figures: the load average is printed.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

ARGS=(--size "${SIZE_MIB:-512}" --runs "${RUNS:-3}" --piece "${PIECE_KIB:-1024}" --depth "${DEPTH:-8}")
[[ -n ${BENCH_DIR:-} ]] && ARGS+=(--dir "$BENCH_DIR")
for a in "$@"; do
    case $a in -h|--help) usage; exit 0 ;; esac
done

echo "[blob-transfer] load average at start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a), $(nproc) cores" >&2
cd "$REPO_ROOT"
exec cargo run --release -q -p rendermesh-mesh --example blob_transfer -- "${ARGS[@]}" "$@"
