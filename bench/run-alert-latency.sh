#!/usr/bin/env bash
# Alerts benchmark (issue 11): the join with --watches watches against the same
# join with --rules rules as well, in the same rounds: each one's full rate on a
# backlog (the rules' cost as a ratio of throughput), then each fed live at
# fractions of the rules join's full rate while a read_committed consumer reads
# the alerts: alerts per second and the latency from the producer handing over
# the event to the alert being read, committed (p50, p99, max). On topics of its
# own (deleted at the end), with the test venv's Python. See bench/alert_latency.py.
# Usage: bench/run-alert-latency.sh [BUILD_DIR] [alert_latency.py options]
#        (defaults: build/, --events 400000 --blocks 10000 --watches 10000
#        --rules 100 --rounds 3 --fractions 0.5,0.9)
# Environment: BOOTSTRAP=host:port uses that broker; otherwise one is started
# with deploy/kafka/local-kafka in a temporary directory and stopped at the end
# (bench/lib.sh). BH_PYTHON: a Python with confluent-kafka and fastavro.
# Build first: cmake --build BUILD_DIR --target blockhub
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${1:-$root/build}
python=${BH_PYTHON:-${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/venv/bin/python}
if [[ ! -x $build/blockhub ]]; then
    echo "run-alert-latency.sh: no blockhub in $build (cmake --build $build)" >&2
    exit 1
fi
"$python" -c 'import confluent_kafka, fastavro' 2>/dev/null \
    || { echo "run-alert-latency.sh: $python lacks confluent-kafka or fastavro (deploy/install-deps.sh venv)" >&2; exit 1; }

bench_tmp_broker alerts
"$python" "$root/bench/alert_latency.py" --bootstrap "$bs" --build "$build" "${@:2}"
