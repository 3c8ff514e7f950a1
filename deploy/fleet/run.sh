#!/usr/bin/env bash
# A three-node Karl fleet on this one machine, Redis included: `make fleet`.
#
#   redis-server  127.0.0.1:$FLEET_REDIS_PORT (data in a temporary directory, gone on exit)
#   karl node-1..3  NG 127.0.0.1:$FLEET_BASE_PORT+1..3, media on 127.0.0.11..13
#   karl-router   NG 127.0.0.1:$FLEET_NG_PORT (point Kamailio/OpenSIPS here)
#   karl-operator failover (moves the calls of a node that dies; metrics on $FLEET_BASE_PORT+4)
#
# Every process stops on Ctrl-C (or SIGTERM to this script). The nodes share one host, so they differ
# by media address; a real fleet puts each node on its own host (docs/clustering.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${VENV:-.venv}
FLEET_NG_PORT=${FLEET_NG_PORT:-22222}
FLEET_REDIS_PORT=${FLEET_REDIS_PORT:-6399}
FLEET_BASE_PORT=${FLEET_BASE_PORT:-22300}
FLEET_RTP_MIN=${FLEET_RTP_MIN:-30000}
FLEET_RTP_MAX=${FLEET_RTP_MAX:-30999}
FLEET_NODES=${FLEET_NODES:-3}
FLEET_LOG_FORMAT=${FLEET_LOG_FORMAT:-text}

command -v redis-server >/dev/null || { echo "fleet: redis-server is missing (apt-get install redis-server)"; exit 1; }
[ -x "$VENV/bin/karl" ] || { echo "fleet: $VENV/bin/karl is missing (make venv)"; exit 1; }

workdir=$(mktemp -d -t karl-fleet-XXXXXX)
pids=()
stop() {
    trap - INT TERM EXIT
    echo "fleet: stopping"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$workdir"
}
trap stop INT TERM EXIT

redis-server --port "$FLEET_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$workdir" \
    --logfile "$workdir/redis.log" &
pids+=($!)

# Settings every process of this fleet shares; the rest differ per process below.
common=(
    KARL_CONFIG_PATH=/nonexistent/karl-fleet.json
    KARL_REDIS_ENABLED=true
    KARL_REDIS_ADDR="127.0.0.1:$FLEET_REDIS_PORT"
    KARL_CLUSTER_ID=local-fleet
    KARL_LOG_FORMAT="$FLEET_LOG_FORMAT"
    KARL_CDR_PATH="$workdir/cdr.jsonl"
    KARL_CDR_SPOOL_DIR="$workdir/cdr-spool"
)
for n in $(seq 1 "$FLEET_NODES"); do
    base=$((FLEET_BASE_PORT + 10 * n))
    env "${common[@]}" \
        KARL_NODE_ID="node-$n" \
        KARL_NG_ADDRESS=127.0.0.1 KARL_NG_PORT=$((FLEET_BASE_PORT + n)) \
        KARL_MEDIA_IP="127.0.0.1$n" \
        KARL_RTP_MIN_PORT="$FLEET_RTP_MIN" KARL_RTP_MAX_PORT="$FLEET_RTP_MAX" \
        KARL_API_PORT=$((base + 1)) KARL_HEALTH_PORT=$((base + 2)) KARL_METRICS_PORT=$((base + 3)) \
        "$VENV/bin/karl" &
    pids+=($!)
done
env "${common[@]}" \
    KARL_NODE_ID=router-1 \
    KARL_NG_ADDRESS=127.0.0.1 KARL_NG_PORT="$FLEET_NG_PORT" \
    KARL_HEALTH_PORT=$((FLEET_BASE_PORT + 2)) KARL_METRICS_PORT=$((FLEET_BASE_PORT + 3)) \
    "$VENV/bin/karl-router" &
pids+=($!)
env "${common[@]}" \
    KARL_NODE_ID=failover-1 KARL_FAILOVER_RESTART_GRACE=2 \
    KARL_METRICS_PORT=$((FLEET_BASE_PORT + 4)) \
    "$VENV/bin/karl-operator" failover &
pids+=($!)

echo "fleet: $FLEET_NODES nodes, Redis on 127.0.0.1:$FLEET_REDIS_PORT, a failover controller;" \
     "NG router on 127.0.0.1:$FLEET_NG_PORT" \
     "(health http://127.0.0.1:$((FLEET_BASE_PORT + 2))/health/detail); Ctrl-C stops everything"
# The fleet runs until one of its processes ends (or a signal arrives): then everything stops.
wait -n "${pids[@]}" || true
