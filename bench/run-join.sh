#!/usr/bin/env bash
# Join benchmark: the join's throughput in input records/s and CPU-seconds per
# million, beside librdkafka's consumer alone reading the same topics in the
# same run (the ceiling, bench_join_consume), and the state memory in bytes per
# block and per remembered event id. Runs against the broker BH_KAFKA_BOOTSTRAP
# (default 127.0.0.1:39092) on topics of its own (deleted at the end), with the
# test venv's Python (fastavro, confluent-kafka). See bench/join_bench.py.
# Usage: bench/run-join.sh [BUILD_DIR] [EVENTS] [BLOCKS] [PARTITIONS]
#        (defaults: build/, 1000000, 10000, 6)
# Build first: cmake --build BUILD_DIR --target blockhub bench_join_consume
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
events=${2:-1000000}
blocks=${3:-10000}
partitions=${4:-6}
python=${BH_PYTHON:-${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/venv/bin/python}
if [[ ! -x $build/blockhub ]]; then
    echo "run-join.sh: no blockhub in $build (cmake --build $build)" >&2
    exit 1
fi
exec "$python" "$root/bench/join_bench.py" --build "$build" --events "$events" \
    --blocks "$blocks" --partitions "$partitions"
