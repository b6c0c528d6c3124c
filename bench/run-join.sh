#!/usr/bin/env bash
# Join benchmark: the join's throughput in input records/s and CPU-seconds per
# million, beside librdkafka's consumer alone reading the same topics in the
# same run (the ceiling, bench_join_consume), with the memory state store and
# with the disk one (join.state_store) on the same input, their ratio, the
# state memory and the peak RSS, on topics of its own (deleted at the end),
# with the test venv's Python (fastavro, confluent-kafka). See bench/join_bench.py.
# Usage: bench/run-join.sh [BUILD_DIR] [EVENTS] [BLOCKS] [PARTITIONS] [join_bench.py options]
#        (defaults: build/, 1000000, 10000, 6; e.g. --rounds 2, --stores disk)
# Environment: BOOTSTRAP=host:port uses that broker; otherwise one is started
# with deploy/kafka/local-kafka in a temporary directory and stopped at the
# end (bench/lib.sh). BH_PYTHON: a Python with confluent-kafka and fastavro
# (default: the test venv).
# Build first: cmake --build BUILD_DIR --target blockhub bench_join_consume
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${1:-$root/build}
events=${2:-1000000}
blocks=${3:-10000}
partitions=${4:-6}
python=${BH_PYTHON:-${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/venv/bin/python}
if [[ ! -x $build/blockhub ]]; then
    echo "run-join.sh: no blockhub in $build (cmake --build $build)" >&2
    exit 1
fi
"$python" -c 'import confluent_kafka, fastavro' 2>/dev/null \
    || { echo "run-join.sh: $python lacks confluent-kafka or fastavro (deploy/install-deps.sh venv)" >&2; exit 1; }

bench_tmp_broker join
"$python" "$root/bench/join_bench.py" --bootstrap "$bs" --build "$build" --events "$events" \
    --blocks "$blocks" --partitions "$partitions" "${@:5}"
