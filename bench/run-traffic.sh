#!/usr/bin/env bash
# Traffic adapter benchmark: N gateway lines (bench/gen_traffic.py, points
# inside the blocks of the map) replayed over one TCP connection as fast as
# the socket takes them, into blockhub running one traffic adapter against a
# real broker; timed until the topic holds all N records. blockhub's CPU
# seconds (every thread, /proc/PID/stat) and peak RSS (VmHWM) are taken over
# the same span.
#
# Then the baseline, in the same run against the same broker: kcat -P with
# the very values and keys blockhub produced (read back from its topic), two
# headers of the same size as blockhub's, to a topic with the same partition
# count, with blockhub's producer settings (enable.idempotence=true acks=all
# partitioner=murmur2_random linger.ms=5), timed from kcat's start until the
# topic holds all N, watched the same way as blockhub's run (end offsets
# polled every 20 ms while it runs). Printed: records/s of both, the ratio,
# CPU seconds per million records, peak RSS.
#
# Usage: bench/run-traffic.sh [BUILD_DIR] [N] [RUNS]   (defaults: build/, 1000000, 1)
# Environment: WARMUP (default 1): rounds run first and not counted.
# LINGER_MS: linger.ms of blockhub's producer (kafka.properties)
# and of kcat's (default 5, blockhub's). HUB_ARGS: more arguments of
# blockhub's (--set adapters.NAME.KEY=VALUE ...). HUB_PRELOAD: LD_PRELOAD of
# blockhub alone (to compare allocators: libjemalloc.so.2, ...).
# BOOTSTRAP=host:port uses that broker; otherwise one is started with
# deploy/kafka/local-kafka in a temporary directory and stopped at the end.
# PARTITIONS (default 6, the hub's default). BH_PYTHON: a Python with
# confluent-kafka (default: the test venv). PERF_OUT=FILE: a perf record of
# blockhub over each run's send into FILE.RUN (PERF_CALLGRAPH: its call-graph
# mode, default fp).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${1:-$root/build}
n=${2:-1000000}
runs=${3:-1}
partitions=${PARTITIONS:-6}
py=${BH_PYTHON:-${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/venv/bin/python}
blockhub="$build/blockhub"
helper="$root/bench/traffic_bench.py"
[[ -x $blockhub ]] || { echo "run-traffic.sh: no $blockhub (build first)" >&2; exit 1; }
"$py" -c 'import confluent_kafka' 2>/dev/null \
    || { echo "run-traffic.sh: $py lacks confluent-kafka (deploy/install-deps.sh venv)" >&2; exit 1; }
command -v kcat >/dev/null || { echo "run-traffic.sh: kcat is not installed" >&2; exit 1; }

tmp=$(mktemp -d /tmp/blockhub-bench-traffic.XXXXXX)
hub_pid=
own_broker=
cleanup() {
    [[ -n $hub_pid ]] && kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null || true
    [[ -n $own_broker ]] && "$root/deploy/kafka/local-kafka" stop "$tmp/kafka" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "generating $n lines..."
python3 "$root/bench/gen_traffic.py" "$n" "$tmp/traffic.ndjson"
echo "input: $n lines, $(du -h "$tmp/traffic.ndjson" | cut -f1)"

bench_broker "$tmp"
echo "broker: $bs, $partitions partitions; machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
read -r kdelim mdelim < <("$py" "$helper" delims)

# A first round, not counted (WARMUP=0 skips it): a broker just started, or
# idle since, runs its first million records slower (its JVM warms up), and
# would give the first run's blockhub a slower broker than its kcat.
for run in $(seq $((1 - ${WARMUP:-1})) "$runs"); do
    tag="bench-$(date +%s)-$$-$run"
    lport=$(free_port)
    cat >"$tmp/blockhub.yaml" <<YAML
kafka:
  brokers: $bs
  partitions: $partitions
  replication: 1
$(bench_kafka_properties)
blocks:
  map: $root/tests/data/world/blocks.geojson
schemas:
  dir: $root/schemas
dead_letter:
  topic: hub.dlq.$tag
adapters:
  - name: traffic
    type: traffic
    auth: none
    listen: 127.0.0.1:$lport
    topic: dept.traffic.$tag
YAML
    LD_PRELOAD=${HUB_PRELOAD:-} "$blockhub" --config "$tmp/blockhub.yaml" ${HUB_ARGS:-} >"$tmp/blockhub.log" 2>&1 &
    hub_pid=$!
    bench_wait_ready "$hub_pid" "$tmp/blockhub.log"
    bench_perf_start "$hub_pid" "$run"
    hub=$("$py" "$helper" blockhub "$bs" "dept.traffic.$tag" "$n" "$hub_pid" "127.0.0.1:$lport" \
        "$tmp/traffic.ndjson")
    bench_perf_stop
    kill -TERM "$hub_pid"
    wait "$hub_pid" || { echo "blockhub exited $?" >&2; tail "$tmp/blockhub.log" >&2; exit 1; }
    hub_pid=
    if grep -q " error " "$tmp/blockhub.log"; then grep " error " "$tmp/blockhub.log" | head -5 >&2; fi

    "$py" "$helper" dump "$bs" "dept.traffic.$tag" "$n" "$tmp/kcat.in"
    "$py" "$helper" create "$bs" "kcat.$tag" "$partitions"
    base=$("$py" "$helper" kcat "$bs" "kcat.$tag" "$n" -- kcat -b "$bs" -P -t "kcat.$tag" \
        -K "$kdelim" -D "$mdelim" -H blockhub.event_id=JJ-BENCH-0000000000 \
        -H blockhub.adapter=traffic -X enable.idempotence=true -X acks=all \
        -X partitioner=murmur2_random -X linger.ms=${LINGER_MS:-5} -l "$tmp/kcat.in")
    rm -f "$tmp/kcat.in"

    "$py" - "$n" "$hub" "$base" "$run" <<'PY'
import sys
n = int(sys.argv[1])
hub = dict(kv.split("=") for kv in sys.argv[2].split())
base = dict(kv.split("=") for kv in sys.argv[3].split())
hr, br = n / float(hub["seconds"]), n / float(base["seconds"])
if int(sys.argv[4]) <= 0:
    print("warm-up round, not counted: blockhub %.0f, kcat %.0f records/s" % (hr, br))
    sys.exit(0)
print("blockhub: %8.0f records/s  (%.2f s for %d; the sender was done after %s s)"
      % (hr, float(hub["seconds"]), n, hub["sent_after"]))
print("kcat -P:  %8.0f records/s  (%.2f s; kcat itself used %.2f CPU s)"
      % (br, float(base["seconds"]), float(base["cpu_seconds"])))
print("ratio:    %.2f of the kcat baseline (target >= 0.8)" % (hr / br))
print("blockhub CPU: %.2f s per million records, all threads (target <= 1.6)"
      % (float(hub["cpu_seconds"]) * 1e6 / n))
print("blockhub peak RSS: %.1f MiB (target < 64)" % (int(hub["vmhwm"]) / 1048576.0))
PY
done
