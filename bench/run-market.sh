#!/usr/bin/env bash
# Market adapter benchmark: a ROWS-row GB18030 CSV file (bench/gen_market.py,
# valid rows, two thirds with a grid code and one third with a point inside a
# block) is renamed into the spool directory of blockhub running one market
# adapter (settle_time 0: a renamed file is whole) against a real broker;
# timed until the file reaches done/, that is until Kafka acknowledged every
# row. blockhub's CPU seconds (all threads, /proc/PID/stat) over that span and
# its peak RSS (VmHWM) are read from /proc.
#
# Baseline, same run, same broker: kcat -P producing ROWS values of the very
# sizes blockhub's records have (the generator computes each record's Avro
# length) with the same keys, the same two headers, blockhub's producer
# settings (enable.idempotence=true acks=all partitioner=murmur2_random
# linger.ms=5) to a topic with the same partition count; timed from kcat's
# start to its exit (kcat -P exits once every message is acknowledged).
#
# Usage: bench/run-market.sh [BUILD_DIR] [ROWS] [RUNS]   (defaults: build/, 1000000, 1;
# the same file and baseline input each run, a fresh hub and topics)
# Environment: LINGER_MS: linger.ms of blockhub's producer (kafka.properties)
# and of kcat's (default 5, blockhub's). HUB_ARGS: more arguments of
# blockhub's (--set adapters.NAME.KEY=VALUE ...). BOOTSTRAP=host:port uses
# that broker; otherwise one is started with deploy/kafka/local-kafka in a
# temporary directory and stopped at the end. PARTITIONS (default 6).
# BH_PYTHON: a Python with confluent-kafka to create the baseline topic
# (default: the test venv; without it kcat relies on the broker creating the
# topic). PERF_OUT=FILE: a perf record of blockhub over each run's file into
# FILE.RUN (PERF_CALLGRAPH: its call-graph mode, default fp).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${1:-$root/build}
rows=${2:-1000000}
runs=${3:-1}
partitions=${PARTITIONS:-6}
py=${BH_PYTHON:-${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/venv/bin/python}
blockhub="$build/blockhub"
[[ -x $blockhub ]] || { echo "run-market.sh: no $blockhub (build first)" >&2; exit 1; }
command -v kcat >/dev/null || { echo "run-market.sh: kcat is not installed" >&2; exit 1; }

tmp=$(mktemp -d /tmp/blockhub-bench-market.XXXXXX)
hub_pid=
own_broker=
cleanup() {
    if [[ -n $hub_pid ]]; then kill "$hub_pid" 2>/dev/null; wait "$hub_pid" 2>/dev/null || true; fi
    if [[ -n $own_broker ]]; then "$root/deploy/kafka/local-kafka" stop "$tmp/kafka" >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

cpu_s() { # utime + stime of PID, all threads, in seconds
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}

echo "generating $rows rows..."
mkdir -p "$tmp/spool" "$tmp/in"
python3 "$root/bench/gen_market.py" "$rows" "$tmp/in/scjg_bench.csv" --kcat "$tmp/kcat.tsv" \
    --blocks "$root/tests/data/world/blocks.geojson"
echo "input: $rows rows, $(du -h "$tmp/in/scjg_bench.csv" | cut -f1) of GB18030"

bench_broker "$tmp"
echo "broker: $bs, $partitions partitions; machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

for run in $(seq 1 "$runs"); do
tag="bench-$(date +%s)-$$-$run"
ln -f "$tmp/in/scjg_bench.csv" "$tmp/in/scjg_bench.run"
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
  - name: market
    type: market
    spool_dir: $tmp/spool
    topic: dept.market.$tag
    settle_time: 0   # the file arrives whole by rename: no 2 s wait in the figure
YAML
"$blockhub" --config "$tmp/blockhub.yaml" ${HUB_ARGS:-} >"$tmp/blockhub.log" 2>&1 &
hub_pid=$!
bench_wait_ready "$hub_pid" "$tmp/blockhub.log"

bench_perf_start "$hub_pid" "$run"
cpu0=$(cpu_s "$hub_pid")
t0=$(date +%s.%N)
mv "$tmp/in/scjg_bench.run" "$tmp/spool/scjg_bench.csv"
for _ in $(seq 1 36000); do
    [[ -f $tmp/spool/done/scjg_bench.csv ]] && break
    kill -0 "$hub_pid" 2>/dev/null || { cat "$tmp/blockhub.log" >&2; exit 1; }
    sleep 0.01
done
t1=$(date +%s.%N)
[[ -f $tmp/spool/done/scjg_bench.csv ]] || { echo "run-market.sh: the file never reached done/" >&2; exit 1; }
cpu1=$(cpu_s "$hub_pid")
bench_perf_stop
rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$hub_pid/status")
kill -TERM "$hub_pid"
wait "$hub_pid" || { echo "blockhub exited $?" >&2; tail "$tmp/blockhub.log" >&2; exit 1; }
hub_pid=
grep -q "scjg_bench.csv: $rows records, 0 dead letters" "$tmp/blockhub.log" \
    || { grep "market" "$tmp/blockhub.log" | tail -3 >&2; echo "run-market.sh: not every row was published" >&2; exit 1; }
rm -rf "$tmp/spool"
mkdir -p "$tmp/spool"

if "$py" -c 'import confluent_kafka' 2>/dev/null; then
    "$py" - "$bs" "kcat.$tag" "$partitions" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1)]).values():
    f.result()
PY
fi
k0=$(date +%s.%N)
kcat -b "$bs" -P -t "kcat.$tag" -K $'\t' -H blockhub.event_id=SCJG-2026-0000000 \
    -H blockhub.adapter=market -X enable.idempotence=true -X acks=all \
    -X partitioner=murmur2_random -X linger.ms=${LINGER_MS:-5} -l "$tmp/kcat.tsv"
k1=$(date +%s.%N)

python3 - "$rows" "$t0" "$t1" "$cpu0" "$cpu1" "$rss" "$k0" "$k1" <<'PY'
import sys
rows = int(sys.argv[1])
t0, t1, c0, c1, rss, k0, k1 = map(float, sys.argv[2:])
hub, base = rows / (t1 - t0), rows / (k1 - k0)
print("blockhub: %8.0f rows/s  (%.2f s until the file was in done/)" % (hub, t1 - t0))
print("kcat -P:  %8.0f rows/s  (%.2f s, same count, sizes, keys and headers)" % (base, k1 - k0))
print("ratio:    %.2f of the kcat baseline (target >= 0.9)" % (hub / base))
print("blockhub CPU: %.2f s (all threads) for %d rows" % (c1 - c0, rows))
print("blockhub peak RSS: %.1f MiB (target < 64 on a 1 GB file)" % (rss / 1024.0))
PY
done
