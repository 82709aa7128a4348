#!/usr/bin/env bash
# Every decoder of untrusted bytes, fed generated and mutated inputs (issue 22): the mesh's
# (wire codec, stream frames, blob piece header, cache records, mDNS TXT records, key file)
# by the `fuzz` example of the mesh crate, the node's (its config file, the control API's job
# requests) by the node's fuzz test on the same harness. N inputs per decoder; one table.
#   bash bench/fuzz.sh [N]            (default 1000000; release builds)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
cargo build --release -q -p rendermesh-mesh --example fuzz
cargo test --release -q -p rendermesh-node --bin rendermesh --no-run 2>/dev/null
./target/release/examples/fuzz "$N"
FUZZ_INPUTS=$N cargo test --release -q -p rendermesh-node --bin rendermesh \
    api::fuzz -- --nocapture --test-threads 1 | grep '^| '
