#!/usr/bin/env bash
# Fire path benchmark: HTTP webhooks into blockhub's fire adapter against a
# real broker, the answer of each request waiting for Kafka's acknowledgement
# of every event in it; side by side in the same run with its two baselines.
#
# One blockhub process (build/tests/blockhub_test_adapters: the real adapters
# plus the test-only ones) runs a fire adapter and a nullhttp adapter
# (tests/adapters/nullhttp: the same h2o server of hub/http.c answering every
# POST as fire answers one accepted event, with no parsing and no Kafka work).
# bench_fire_load (bench/bench_fire_load.c, one libuv thread, closed loop: one
# request in flight per keep-alive connection) drives each for SECONDS after a
# WARMUP, in this order, each round:
#
#   null-cN      nullhttp, one-event bodies, N connections      baseline A
#   null-h2load-cN   the same with h2load (nghttp2-client), when installed: a
#                second generator, to show bench_fire_load is not the limit
#   fire-1-cN    fire, one event a POST, N connections          (for each N of CONNS)
#   fire-1-lingerV-cN   the same on fire-lingerV, a fire adapter with a producer of
#                its own whose linger.ms is V (kafka_properties), for each V of
#                FIRE_LINGER_MS (none by default); traffic keeps the hub's producer
#   fire-100     fire, arrays of 100 events, BATCH100_CONNS connections
#   fire-1000    fire, arrays of 1,000 events, BATCH1000_CONNS connections
#   traffic      bench/run-traffic.sh on the same broker, TRAFFIC_N lines: blockhub's
#                records/s on the traffic path                  baseline B
#
# and prints, per run: requests/s, records/s (events accepted a second), p50
# and p99 of the answer's latency, errors (non-200 answers or rejected items),
# the cores used by the generator and by blockhub; then the ratios: fire single
# to null answers at each N, every fire run to traffic. The generator's CPU
# against nullhttp shows whether it, not blockhub, was the limit. At the end
# the fire topic's end offsets are checked to hold at least every event
# counted accepted.
#
# Usage: bench/run-fire.sh [BUILD_DIR] [ROUNDS] [SECONDS]   (defaults: build/, 1, 10)
# Environment: BOOTSTRAP=host:port uses that broker; otherwise one is started
# with deploy/kafka/local-kafka in a temporary directory and stopped at the
# end. CONNS (default "64 256"), BATCH100_CONNS (16), BATCH1000_CONNS (4),
# (0 skips either batch run), WARMUP (2 s), PARTITIONS (6), TRAFFIC_N (1000000; 0 skips baseline B),
# BH_PYTHON: a Python with confluent-kafka (default: the test venv), LINGER_MS: the
# producer's linger.ms for this blockhub (kafka.properties; default: blockhub's 5),
# FIRE_LINGER_MS: linger.ms values ("0 1") of further fire adapters, each with its
# own producer (kafka_properties: {linger.ms: V}) and run beside fire at every N.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=$(cd "${1:-$root/build}" && pwd)
rounds=${2:-1}
seconds=${3:-10}
conns=${CONNS:-64 256}
b100_conns=${BATCH100_CONNS:-16}
b1000_conns=${BATCH1000_CONNS:-4}
warmup=${WARMUP:-2}
partitions=${PARTITIONS:-6}
traffic_n=${TRAFFIC_N:-1000000}
linger=${LINGER_MS:-}
fire_lingers=${FIRE_LINGER_MS:-}
py=${BH_PYTHON:-${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/venv/bin/python}
hubbin="$build/tests/blockhub_test_adapters"
load="$build/bench/bench_fire_load"
helper="$root/bench/fire_bench.py"
token=bench-fire-token
for f in "$hubbin" "$load" "$build/blockhub"; do
    [[ -x $f ]] || { echo "run-fire.sh: no $f (build first)" >&2; exit 1; }
done
"$py" -c 'import confluent_kafka' 2>/dev/null \
    || { echo "run-fire.sh: $py lacks confluent-kafka (deploy/install-deps.sh venv)" >&2; exit 1; }

hub_pid=
bench_tmp_broker fire
cleanup() {
    [[ -n $hub_pid ]] && kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null || true
    bench_tmp_cleanup
}
trap cleanup EXIT

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
free_port() {
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "machine: $(nproc) CPUs, load $(loadavg); $(git -C "$root" describe --always --dirty 2>/dev/null)${linger:+; linger.ms $linger}${fire_lingers:+; fire adapters with their own linger.ms: $fire_lingers}"
echo "generating bodies..."
python3 "$helper" bodies 1 50000 "$tmp/b1.txt" --seed 1
python3 "$helper" bodies 100 500 "$tmp/b100.txt" --seed 2
python3 "$helper" bodies 1000 40 "$tmp/b1000.txt" --seed 3
head -n 1 "$tmp/b1.txt" | tr -d '\n' >"$tmp/one.json"
echo "bodies: one event $(($(wc -c <"$tmp/b1.txt") / 50000)) bytes, 100 events" \
    "$(($(wc -c <"$tmp/b100.txt") / 500 / 1024)) KiB, 1,000 events" \
    "$(($(wc -c <"$tmp/b1000.txt") / 40 / 1024)) KiB"

# The schemas of the hub plus the null adapter's own.
mkdir "$tmp/schemas"
cp "$root"/schemas/*.avsc "$root"/tests/adapters/nullhttp/nullhttp.avsc "$tmp/schemas/"

tag="bench-fire-$(date +%s)-$$"
fport=$(free_port)
nport=$(free_port)
cat >"$tmp/blockhub.yaml" <<YAML
kafka:
  brokers: $bs
  partitions: $partitions
  replication: 1
$(bench_kafka_properties)
blocks:
  map: $root/tests/data/world/blocks.geojson
schemas:
  dir: $tmp/schemas
dead_letter:
  topic: hub.dlq.$tag
adapters:
  - name: fire
    type: fire
    listen: 127.0.0.1:$fport
    tokens: [$token]
    topic: dept.fire.$tag
  - name: nullhttp
    type: nullhttp
    listen: 127.0.0.1:$nport
    path: /v1/fire/events
YAML
declare -A lport
for v in $fire_lingers; do
    lport[$v]=$(free_port)
    cat >>"$tmp/blockhub.yaml" <<YAML
  - name: fire-linger$v
    type: fire
    listen: 127.0.0.1:${lport[$v]}
    tokens: [$token]
    topic: dept.fire.$tag
    kafka_properties:
      linger.ms: "$v"
YAML
done
"$hubbin" --config "$tmp/blockhub.yaml" >"$tmp/blockhub.log" 2>&1 &
hub_pid=$!
bench_wait_ready "$hub_pid" "$tmp/blockhub.log"

results="$tmp/results"
: >"$results"
# run NAME PORT BODIES CONNECTIONS: one load run, its line appended to the results.
run() {
    local name=$1 port=$2 bodies=$3 c=$4 out
    out=$("$load" "127.0.0.1:$port" /v1/fire/events "$token" "$bodies" "$c" "$warmup" \
        "$seconds" "$hub_pid")
    echo "$name $out" >>"$results"
    echo "  $name: $out"
}
# run_h2load NAME PORT CONNECTIONS: the same with h2load and the first one-event body.
run_h2load() {
    local name=$1 port=$2 c=$3 out
    command -v h2load >/dev/null || return 0
    out=$(h2load --h1 -c "$c" -D "${seconds}s" --warm-up-time "${warmup}s" -d "$tmp/one.json" \
        -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
        "http://127.0.0.1:$port/v1/fire/events" 2>&1 | awk '
        /^finished in/ {rps = $4}
        /^requests:/ {ok = $8; failed = $10}
        /^status codes:/ {other = $5 + $7 + $9}
        END {printf "rps=%s succeeded=%s failed=%s non2xx=%s\n", rps, ok, failed, other}')
    echo "$name $out" >>"$results"
    echo "  $name: $out"
}

for round in $(seq 1 "$rounds"); do
    echo "round $round: load $(loadavg)"
    for c in $conns; do
        run "null-c$c" "$nport" "$tmp/b1.txt" "$c"
        run_h2load "null-h2load-c$c" "$nport" "$c"
        run "fire-1-c$c" "$fport" "$tmp/b1.txt" "$c"
        for v in $fire_lingers; do
            run "fire-1-linger$v-c$c" "${lport[$v]}" "$tmp/b1.txt" "$c"
        done
    done
    [[ $b100_conns == 0 ]] || run "fire-100-c$b100_conns" "$fport" "$tmp/b100.txt" "$b100_conns"
    [[ $b1000_conns == 0 ]] || run "fire-1000-c$b1000_conns" "$fport" "$tmp/b1000.txt" "$b1000_conns"
    if ((traffic_n > 0)); then
        echo "  traffic (bench/run-traffic.sh, $traffic_n lines, same broker), load $(loadavg):"
        tout=$(LINGER_MS= BOOTSTRAP=$bs PARTITIONS=$partitions BH_PYTHON=$py \
            "$root/bench/run-traffic.sh" "$build" "$traffic_n" 2>&1) \
            || { echo "$tout" >&2; exit 1; }
        echo "$tout" | grep -E '^(blockhub|kcat|ratio)' | sed 's/^/    /'
        echo "traffic eps=$(echo "$tout" | awk '/^blockhub: /{print $2}')" >>"$results"
    fi
    echo "round $round done: load $(loadavg)"

    echo
    echo "round $round (load $(loadavg)):"
    grep -v '^#' "$results" >"$tmp/round"
    "$py" "$helper" report "$tmp/round"
    : >"$results"
    cat "$tmp/round" >>"$tmp/all"
    echo
done

kill -TERM "$hub_pid"
wait "$hub_pid" || { echo "blockhub exited $?" >&2; tail "$tmp/blockhub.log" >&2; exit 1; }
hub_pid=
if grep -q " error " "$tmp/blockhub.log"; then grep " error " "$tmp/blockhub.log" | head -5 >&2; fi
counted=$(awk '/^fire-/{for (i = 2; i <= NF; i++) if ($i ~ /^events=/) s += substr($i, 8)} END {print s + 0}' "$tmp/all")
have=$("$py" "$helper" count "$bs" "dept.fire.$tag")
echo "dept.fire.$tag holds $have records; the runs counted $counted accepted in their windows" \
    "$( ((have >= counted)) && echo "(ok)" || echo "(MISSING RECORDS)")"
echo "load at the end: $(loadavg)"
((have >= counted))
