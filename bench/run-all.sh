#!/usr/bin/env bash
# Every benchmark of bench/ in one command, one after the other against one
# broker, then one table of their ratios (each against the baseline its own
# script measures in the same run; see bench/RESULTS.md for what each is).
# Each script's whole output is kept in OUT/NAME.log; the table takes from it
# the lines that carry a ratio or a target figure, and where a script prints
# the same figure once per run, the median of the runs beside every value.
#
# Usage: bench/run-all.sh [BUILD_DIR] [OUT]   (defaults: build/, a new
#   /tmp/blockhub-bench-all.XXXXXX)
# Environment: BOOTSTRAP=host:port uses that broker, else one is started with
# deploy/kafka/local-kafka and stopped at the end. RUNS (default 3): runs or
# rounds of each benchmark that takes a count. ONLY="traffic market ...": a
# subset, by the names below. N (default 1000000): records of the traffic
# and market runs. The fire run adds a fire adapter with a producer of its
# own at linger.ms 1 (FIRE_LINGER_MS=1) and sends batches of 100 on 64
# connections (BATCH100_CONNS=64); join-3s is the join at 50,000 blocks
# with a 3 s commit_interval and a 1 GiB memory_limit (the city-scale sizing
# of the README).
#
# Not run here: run-compare.sh (two builds of blockhub against each other,
# a before/after tool, not a benchmark of one tree), run-traffic-rf.sh (three
# brokers of its own) and run-join-store-choice.sh (the one-off study that
# chose the join's disk store).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=$(cd "${1:-$root/build}" && pwd)
out=${2:-$(mktemp -d /tmp/blockhub-bench-all.XXXXXX)}
mkdir -p "$out"
runs=${RUNS:-3}
n=${N:-1000000}

tmp=$(mktemp -d /tmp/blockhub-bench-all-broker.XXXXXX)
own_broker=
cleanup() {
    if [[ -n $own_broker ]]; then "$root/deploy/kafka/local-kafka" stop "$tmp/kafka" >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
bench_broker "$tmp"
export BOOTSTRAP=$bs

# name | command (run from the source root)
benches=(
    "blockmap|bench/run-blockmap.sh $build 50000"
    "traffic|bench/run-traffic.sh $build $n $runs"
    "market|bench/run-market.sh $build $n $runs"
    "traffic-parse|bench/run-traffic-parse.sh $build $n 5"
    "latency|bench/run-latency.sh $build $runs"
    "fire|FIRE_LINGER_MS=1 BATCH100_CONNS=64 bench/run-fire.sh $build $runs 10"
    "fire-tls|bench/run-fire-tls.sh $build $runs 5"
    "traffic-modes|bench/run-traffic-modes.sh $build 500000 $runs"
    "market-eos|bench/run-market-eos.sh $build 300000 $runs"
    "registry|bench/run-registry.sh $build 500000 $runs"
    "join|bench/run-join.sh $build 1000000 50000 6 --rounds $runs"
    "join-3s|bench/run-join.sh $build 1000000 50000 6 --rounds $runs --commit-interval 3s --memory-limit 1GiB"
    "alert-latency|bench/run-alert-latency.sh $build"
)

{
    echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ); tree: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "build: $build; broker: $bs"
} >"$out/machine.txt"
cat "$out/machine.txt"

failed=()
for entry in "${benches[@]}"; do
    name=${entry%%|*}
    cmd=${entry#*|}
    if [[ -n ${ONLY:-} && " $ONLY " != *" $name "* ]]; then continue; fi
    words=($cmd)
    i=0
    while [[ ${words[i]} == *=* ]]; do ((i += 1)); done # VAR=VALUE before the script
    script=${words[i]}
    if [[ ! -x $root/$script ]]; then
        echo "=== $name: $script is missing" | tee "$out/$name.log"
        failed+=("$name")
        continue
    fi
    echo "=== $name: $cmd (load $(cut -d' ' -f1-3 /proc/loadavg))"
    start=$(date +%s)
    if (cd "$root" && env $cmd) >"$out/$name.log" 2>&1; then
        echo "    done in $(($(date +%s) - start)) s"
    else
        echo "    FAILED (exit $?) after $(($(date +%s) - start)) s: see $out/$name.log"
        failed+=("$name")
    fi
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/$name.log"
done

python3 "$root/bench/summarize.py" "$out" "${benches[@]}"
echo "logs: $out"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
