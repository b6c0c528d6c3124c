#!/usr/bin/env bash
# Two builds side by side (before and after a change): the traffic and market
# benchmarks alternating between BUILD_A and BUILD_B for ROUNDS rounds against
# one broker, then the block map benchmark of each. Each run prints its own
# kcat baseline; compare the builds round by round.
# Usage: bench/run-compare.sh BUILD_A BUILD_B [ROUNDS] [N]   (defaults: 3 rounds, 1000000)
# Environment: BOOTSTRAP=host:port uses that broker; otherwise one is started
# for the whole comparison (bench/lib.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
a=$1
b=$2
rounds=${3:-3}
n=${4:-1000000}
bench_tmp_broker compare
export BOOTSTRAP=$bs
for r in $(seq 1 "$rounds"); do
    for build in "$a" "$b"; do
        echo "=== traffic round $r: $build"
        "$root/bench/run-traffic.sh" "$build" "$n" 1 | grep -E "blockhub:|kcat -P:|ratio|CPU:|RSS"
    done
    for build in "$a" "$b"; do
        echo "=== market round $r: $build"
        "$root/bench/run-market.sh" "$build" "$n" | grep -E "blockhub:|kcat -P:|ratio|CPU:|RSS"
    done
done
for build in "$a" "$b"; do
    echo "=== block map: $build"
    "$root/bench/run-blockmap.sh" "$build" 50000 | grep -E "^load:|^baseline|ratio|grid \(|STRtree \+|grid-code"
done
