#!/usr/bin/env bash
# Market adapter, exactly_once against the plain path: the same ROWS-row
# GB18030 CSV file (bench/gen_market.py) is renamed into the spool of a
# blockhub running one market adapter, once with exactly_once: false (the
# hub's idempotent producer, the checkpoint file) and once with
# exactly_once: true (the adapter's transactional producer: rows and position
# committed every checkpoint_interval / checkpoint_rows / max_in_flight rows),
# alternating, ROUNDS rounds on one broker; each run is timed from the rename
# until the file is in done/ (every row acknowledged, or committed). Prints
# each run, the median rows/s of each path and their ratio (exactly-once over
# plain). Both use the defaults (checkpoint_interval 1s, checkpoint_rows 20000,
# max_in_flight 10000).
#
# Usage: bench/run-market-eos.sh [BUILD_DIR] [ROWS] [ROUNDS]   (defaults: build/, 300000, 3)
# Environment: BOOTSTRAP=host:port uses that broker; otherwise one is started
# with deploy/kafka/local-kafka in a temporary directory and stopped at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${1:-$root/build}
rows=${2:-300000}
rounds=${3:-3}
blockhub="$build/blockhub"
[[ -x $blockhub ]] || { echo "run-market-eos.sh: no $blockhub (build first)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/blockhub-bench-market-eos.XXXXXX)
hub_pid=
own_broker=
cleanup() {
    if [[ -n $hub_pid ]]; then kill "$hub_pid" 2>/dev/null; wait "$hub_pid" 2>/dev/null || true; fi
    if [[ -n $own_broker ]]; then "$root/deploy/kafka/local-kafka" stop "$tmp/kafka" >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "generating $rows rows..."
mkdir -p "$tmp/in"
python3 "$root/bench/gen_market.py" "$rows" "$tmp/in/scjg_bench.csv" \
    --blocks "$root/tests/data/world/blocks.geojson"
echo "input: $rows rows, $(du -h "$tmp/in/scjg_bench.csv" | cut -f1) of GB18030"
bench_broker "$tmp"
echo "broker: $bs; machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

# run MODE (plain|eos) N: one timed run; prints its rows/s
run() {
    local mode=$1 n=$2 tag dir extra=
    tag="bench-eos-$(date +%s)-$$-$mode-$n"
    dir="$tmp/$mode-$n"
    mkdir -p "$dir/spool"
    [[ $mode == eos ]] && extra=$'\n    exactly_once: true\n    position_topic: pos.'"$tag"
    cat >"$dir/blockhub.yaml" <<YAML
kafka:
  brokers: $bs
  partitions: 3
  replication: 1
blocks:
  map: $root/tests/data/world/blocks.geojson
schemas:
  dir: $root/schemas
dead_letter:
  topic: hub.dlq.$tag
adapters:
  - name: market
    type: market
    spool_dir: $dir/spool
    topic: dept.market.$tag$extra
YAML
    "$blockhub" --config "$dir/blockhub.yaml" >"$dir/blockhub.log" 2>&1 &
    hub_pid=$!
    bench_wait_ready "$hub_pid" "$dir/blockhub.log"
    if [[ $mode == eos ]]; then # the transactional producer is up once it logs its position
        for _ in $(seq 1 600); do grep -q "exactly once: transactional.id" "$dir/blockhub.log" && break; sleep 0.1; done
    fi
    cp "$tmp/in/scjg_bench.csv" "$dir/scjg_bench.csv"
    local t0 t1
    t0=$(date +%s.%N)
    mv "$dir/scjg_bench.csv" "$dir/spool/"
    for _ in $(seq 1 60000); do
        [[ -f $dir/spool/done/scjg_bench.csv ]] && break
        kill -0 "$hub_pid" 2>/dev/null || { cat "$dir/blockhub.log" >&2; exit 1; }
        sleep 0.01
    done
    t1=$(date +%s.%N)
    [[ -f $dir/spool/done/scjg_bench.csv ]] || { echo "run-market-eos.sh: $mode: the file never reached done/" >&2; exit 1; }
    kill -TERM "$hub_pid"
    wait "$hub_pid" || { echo "blockhub exited $?" >&2; tail "$dir/blockhub.log" >&2; exit 1; }
    hub_pid=
    grep -q "scjg_bench.csv: $rows records, 0 dead letters" "$dir/blockhub.log" \
        || { grep "market" "$dir/blockhub.log" | tail -3 >&2; echo "run-market-eos.sh: not every row was published" >&2; exit 1; }
    python3 -c "import sys; print('%.0f' % ($rows / ($t1 - $t0)))"
}

plain=() eos=()
for r in $(seq 1 "$rounds"); do
    p=$(run plain "$r"); e=$(run eos "$r")
    echo "round $r: plain $p rows/s, exactly_once $e rows/s"
    plain+=("$p"); eos+=("$e")
done
python3 - "${plain[*]}" "${eos[*]}" <<'PY'
import statistics, sys
p = [float(x) for x in sys.argv[1].split()]
e = [float(x) for x in sys.argv[2].split()]
mp, me = statistics.median(p), statistics.median(e)
print("median plain:        %8.0f rows/s" % mp)
print("median exactly_once: %8.0f rows/s" % me)
print("ratio exactly_once / plain: %.2f" % (me / mp))
PY
