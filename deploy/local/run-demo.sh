#!/usr/bin/env bash
# The whole pipeline on this machine, end to end, with simulated scanners:
#
#   local Kafka + Redis  ->  topics  ->  worker  ->  simulated scanner feed  ->  flags, live
#
# Ctrl-C stops the feed, the worker and the flag display; `bordermon stack down` stops Kafka,
# Redis and Prometheus. Options (environment): DEMO_RATE events/s (default 200), DEMO_CONSIGNMENTS
# (default 5000), BORDERMON_METRICS_PORT (default 9108).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$repo_root"

rate=${DEMO_RATE:-200}
consignments=${DEMO_CONSIGNMENTS:-5000}
logs="${BORDERMON_RUN_DIR:-$repo_root/run}/logs"
mkdir -p "$logs"

bordermon stack up
bordermon topics apply

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo stopped; Kafka, Redis and Prometheus keep running (bordermon stack down stops them)" >&2
}
trap cleanup INT TERM EXIT

bordermon worker >"$logs/worker.log" 2>&1 &
pids+=($!)
echo "worker started (log: $logs/worker.log); metrics: http://127.0.0.1:${BORDERMON_METRICS_PORT:-9108}/metrics," \
  "Prometheus (scraping it, with the alert rules): http://127.0.0.1:${BORDERMON_STACK_PROMETHEUS_PORT:-9090}" >&2

# A live scanner feed: simulated crossings at a steady rate, published like a scanner does.
# --raw keeps the simulator's deliberately malformed lines, so the dead-letter path is live too.
# --interval 3600: consignments an hour apart in event time, so a transit of a few days
# completes within seconds of wall time and flags start to show at once.
(bordermon simulate --consignments "$consignments" --rate "$rate" --interval 3600 --seed "$RANDOM" |
  bordermon publish --raw - >"$logs/scanner-feed.log" 2>&1) &
pids+=($!)
echo "scanner feed: $rate events/s (log: $logs/scanner-feed.log)" >&2
echo "flags as they arrive (Ctrl-C to stop):" >&2

bordermon flags --follow
