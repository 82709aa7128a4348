# Sourced by the benchmarks that run nodes in network namespaces (needs root): two namespaces
# joined by a veth pair, nodes started in them pinned to a core, and their teardown.
#
# The caller sets RENDERMESH (the binary), WORK (a work dir) and KEY (a pre-shared key file),
# and defines log and die. After netns_up: NS_A, NS_B, ADDR_A, ADDR_B; start_node, stop_nodes,
# wait_peer and now. The namespaces are deleted on exit; no traffic leaves them, mDNS is off.

TAG=rms$$
NS_A=${TAG}a NS_B=${TAG}b
ADDR_A=10.213.$(($$ % 250)).1 ADDR_B=10.213.$(($$ % 250)).2
PIDS=()

netns_cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
}

netns_up() {
    trap netns_cleanup EXIT
    ip netns add "$NS_A"
    ip netns add "$NS_B"
    ip link add "${TAG}va" type veth peer name "${TAG}vb"
    ip link set "${TAG}va" netns "$NS_A"
    ip link set "${TAG}vb" netns "$NS_B"
    ip -n "$NS_A" addr add "$ADDR_A/24" dev "${TAG}va"
    ip -n "$NS_B" addr add "$ADDR_B/24" dev "${TAG}vb"
    for ns in "$NS_A" "$NS_B"; do
        ip -n "$ns" link set lo up
    done
    ip -n "$NS_A" link set "${TAG}va" up
    ip -n "$NS_B" link set "${TAG}vb" up
}

# start_node NAME NS CORES ADDR [PEER] -> starts it in the background (CORES as taskset
# takes them, e.g. "0" or "0,1"), waits until its capabilities are ready (the calibration
# is done before the clock starts)
start_node() {
    local name=$1 ns=$2 core=$3 addr=$4 peer=${5:-} dir=$WORK/$1
    mkdir -p "$dir"
    {
        echo "name = \"$name\""
        echo "listen = \"/ip4/$addr/tcp/7879\""
        echo "mdns = false"
        echo "slots = ${SLOTS:-1}"
        echo "key_file = \"$KEY\""
        [[ -n $peer ]] && echo "peers = [\"/ip4/$peer/tcp/7879\"]"
    } >"$dir/node.toml"
    ip netns exec "$ns" taskset -c "$core" "$RENDERMESH" --config "$dir/node.toml" \
        --data-dir "$dir" node --control-listen 127.0.0.1:0 2>"$dir/node.log" &
    PIDS+=($!)
    for _ in $(seq 600); do
        grep -q "capabilities ready" "$dir/node.log" 2>/dev/null && return 0
        sleep 0.1
    done
    die "node $name did not get ready: $(tail -5 "$dir/node.log")"
}

stop_nodes() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

# wait_peer DIR NAME -> until the node in DIR lists NAME among its peers
wait_peer() {
    for _ in $(seq 300); do
        ip netns exec "$NS_A" "$RENDERMESH" --data-dir "$1" peers 2>/dev/null | grep -qw "$2" && return 0
        sleep 0.1
    done
    die "peer $2 not seen"
}

now() { date +%s.%N; }
