#!/usr/bin/env bash
# The join with many remembered ids (20,000,000 by default), killed with -9:
# the time to resume from the local checkpoint on the same disk, the time to
# rebuild from the changelog on an empty one, the views checked exact after
# each (every copy counted once), and the RSS under join.memory_limit, on
# topics of its own, with the test venv's Python. See bench/join_restore_bench.py.
# Environment: BOOTSTRAP=host:port uses that broker; otherwise one is started
# with deploy/kafka/local-kafka in a temporary directory and stopped at the
# end (bench/lib.sh).
# Usage: bench/run-join-restore.sh [BUILD_DIR] [IDS] [BLOCKS] [join_restore_bench.py options]
#        (defaults: build/, 20000000, 20000; e.g. --memory-rss, --memory-limit 128MiB)
# Build first: cmake --build BUILD_DIR --target blockhub bench_join_feed
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${1:-$root/build}
ids=${2:-20000000}
blocks=${3:-20000}
python=${BH_PYTHON:-${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/venv/bin/python}
if [[ ! -x $build/blockhub || ! -x $build/bench/bench_join_feed ]]; then
    echo "run-join-restore.sh: build blockhub and bench_join_feed in $build first" >&2
    exit 1
fi
bench_tmp_broker join-restore
BH_KAFKA_BOOTSTRAP=$bs "$python" -u "$root/bench/join_restore_bench.py" --build "$build" --ids "$ids" \
    --blocks "$blocks" "${@:4}"
