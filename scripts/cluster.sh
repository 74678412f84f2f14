#!/usr/bin/env bash
# Run a local three-node Ottla cluster on loopback (config/cluster.properties):
# client ports 9092, 9094, 9096; CONTROLLER ports 9093, 9095, 9097; data in
# ./cluster-data/node-N, logs in ./cluster-data/node-N.log.
#
# Usage: scripts/cluster.sh start | stop | kill N | restart N | status
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${OTTLA_BIN:-$ROOT/target/release/ottla}"
DATA="${OTTLA_CLUSTER_DATA:-$ROOT/cluster-data}"
NODES=(1 2 3)

client_port() { echo $((9090 + 2 * $1)); }
controller_port() { echo $((9091 + 2 * $1)); }
pid_file() { echo "$DATA/node-$1.pid"; }

running() {
    local f
    f="$(pid_file "$1")"
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

start_node() {
    local n=$1
    if running "$n"; then
        echo "node $n already running (pid $(cat "$(pid_file "$n")"))"
        return
    fi
    mkdir -p "$DATA/node-$n"
    # First start: one cluster id for the three nodes, each node's directory formatted
    # (Kafka's kafka-storage random-uuid / format).
    [ -f "$DATA/cluster.id" ] || "$BIN" random-uuid >"$DATA/cluster.id"
    if [ ! -f "$DATA/node-$n/meta.properties" ]; then
        "$BIN" format -t "$(cat "$DATA/cluster.id")" -c "$ROOT/config/cluster.properties" \
            --override "node.id=$n" --override "log.dirs=$DATA/node-$n" \
            --override "listeners=PLAINTEXT://127.0.0.1:$(client_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")"
    fi
    "$BIN" serve --config "$ROOT/config/cluster.properties" \
        --override "node.id=$n" \
        --override "listeners=PLAINTEXT://127.0.0.1:$(client_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")" \
        --override "log.dirs=$DATA/node-$n" \
        >>"$DATA/node-$n.log" 2>&1 &
    echo $! >"$(pid_file "$n")"
    echo "node $n started (pid $!): 127.0.0.1:$(client_port "$n")"
}

stop_node() {
    local n=$1 signal=$2
    if running "$n"; then
        kill "-$signal" "$(cat "$(pid_file "$n")")"
        echo "node $n: sent SIG$signal"
    else
        echo "node $n is not running"
    fi
}

[ -x "$BIN" ] || { echo "no ottla binary at $BIN: run cargo build --release" >&2; exit 1; }
case "${1:-}" in
start)
    for n in "${NODES[@]}"; do start_node "$n"; done
    echo "bootstrap servers: 127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    ;;
stop)
    for n in "${NODES[@]}"; do stop_node "$n" TERM; done
    ;;
kill)
    stop_node "${2:?node number}" KILL
    ;;
restart)
    start_node "${2:?node number}"
    ;;
status)
    for n in "${NODES[@]}"; do
        if running "$n"; then
            echo "node $n: running (pid $(cat "$(pid_file "$n")")), 127.0.0.1:$(client_port "$n")"
        else
            echo "node $n: stopped"
        fi
    done
    ;;
*)
    echo "usage: $0 start | stop | kill N | restart N | status" >&2
    exit 2
    ;;
esac
