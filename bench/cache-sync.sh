#!/usr/bin/env bash
# How long a new node takes to receive N cache entries from a peer (issue 5).
# Two nodes in one process, sled caches on disk, real TCP + noise (keyed prologue) + yamux on loopback.
#   bash bench/cache-sync.sh [ENTRIES] [RUNS]      (defaults: 10000 3)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -q -p rendermesh-mesh --example cache_sync -- "${1:-10000}" "${2:-3}"
