#!/usr/bin/env bash
# The traffic adapter's per-line work without Kafka: N gateway lines
# (bench/gen_traffic.py, the traffic benchmark's own) parsed by the flat-line
# path and, as the baseline in the same run, by yajl (the parser with its
# flat-line path off), then each record's point looked up in the world map of
# the tests; ROUNDS rounds, medians and the ratio printed by
# bench_traffic_parse.
# Usage: bench/run-traffic-parse.sh [BUILD_DIR] [N] [ROUNDS]   (defaults: build/, 1000000, 5)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
n=${2:-1000000}
rounds=${3:-5}
bench="$build/bench/bench_traffic_parse"
[[ -x $bench ]] || bench="$build/bench_traffic_parse"
[[ -x $bench ]] || { echo "run-traffic-parse.sh: no bench_traffic_parse in $build (build first)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/blockhub-bench-parse.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
python3 "$root/bench/gen_traffic.py" "$n" "$tmp/traffic.ndjson"
echo "input: $n lines, $(du -h "$tmp/traffic.ndjson" | cut -f1); machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$bench" "$tmp/traffic.ndjson" "$root/tests/data/world/blocks.geojson" "$rounds"
