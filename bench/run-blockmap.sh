#!/usr/bin/env bash
# Block map benchmark: generates a 50,000-block map into a temporary directory
# and runs bench_blockmap on it: the load time (CPU and wall, min / median /
# max of several runs) against a baseline measured in the same run (reading
# the file and scanning it with the loader's own JSON scanner, building
# nothing), their ratio, then point lookups two ways in the same run (the
# lookup grid, and the plain STRtree + GEOS lookup it replaced, the baseline)
# and grid-code lookups. For reference it also times `jq -c .` on the same
# file, when jq is installed. Then the same on the 121-block world map of the
# tests (tests/data/world/blocks.geojson).
# Usage: bench/run-blockmap.sh [BUILD_DIR] [BLOCKS]   (defaults: build/, 50000)
# Build first: cmake --build BUILD_DIR --target bench_blockmap
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
blocks=${2:-50000}

bench="$build/bench/bench_blockmap"
[[ -x $bench ]] || bench="$build/bench_blockmap"
if [[ ! -x $bench ]]; then
    echo "run-blockmap.sh: no bench_blockmap in $build (cmake --build $build --target bench_blockmap)" >&2
    exit 1
fi

tmp=$(mktemp -d /tmp/blockhub-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
python3 "$root/bench/gen_blocks.py" "$blocks" "$tmp/blocks.geojson"
echo "map: $blocks blocks, $(du -h "$tmp/blocks.geojson" | cut -f1) of GeoJSON"
"$bench" "$tmp/blocks.geojson"
if command -v jq >/dev/null 2>&1; then
    TIMEFORMAT="for reference, jq -c . on the same file (builds a whole tree; not the floor): CPU %U s user + %S s system, wall %R s"
    { time jq -c . "$tmp/blocks.geojson" >/dev/null; } 2>&1
fi
echo
echo "map: the world map of the tests, tests/data/world/blocks.geojson"
"$bench" "$root/tests/data/world/blocks.geojson"
