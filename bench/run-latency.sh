#!/usr/bin/env bash
# End-to-end latency benchmark: from the moment a sender hands a record to
# blockhub to the broker's append time, per adapter, at half of the maximum
# rate and at the maximum.
#
# One blockhub process (build/blockhub) runs the three adapters against a real
# broker: traffic (auth none), market (settle_time 0: a renamed file is taken
# at once; done_action delete) and fire. Their topics are created beforehand
# with message.timestamp.type=LogAppendTime and the hub's partition count, so
# a record's timestamp is the broker's clock when it appended it. The senders
# run on the broker's machine and note the wall-clock time (CLOCK_REALTIME, the
# broker's clock) at which they hand each record over:
#
#   traffic  the write() of the line on one TCP connection (Python; a paced
#            sender writes every millisecond the lines due by then)
#   market   the rename() of a GB18030 file of MARKET_ROWS rows into the spool
#            directory (Python; one file every MARKET_ROWS / RATE seconds)
#   fire     the first byte of a POST of one event (bench/bench_latency_fire.c,
#            keep-alive connections, at most one request in flight on each:
#            FIRE_CONNS flat out, FIRE_PACED_CONNS paced, enough that a request
#            due finds an idle connection)
#
# Each round, for each adapter:
#   max    flat out for SECONDS_PER_PHASE: the records/s blockhub took
#          (traffic: the socket as fast as it takes the lines; market: a file
#          always waiting behind the one being read; fire: closed loop on
#          FIRE_CONNS connections, so its maximum is FIRE_CONNS / the answer's
#          latency), until the topic held them all
#   half   paced at half that rate for SECONDS_PER_PHASE
#   full   paced at that rate (times FULL_FRACTION, default 1): at
#          the maximum a queue may grow over the phase, so its figures depend
#          on the phase's length
# With BASELINE=1 (the default), each round also runs, right after traffic's
# half phase, a librdkafka producer alone (bench/bench_latency_produce.c, C,
# blockhub's producer settings, records of traffic's size and headers;
# hand-off = rd_kafka_producev()) paced at the same rate, to its own
# LogAppendTime topic: what the producer and the broker give on this machine
# without blockhub. BASELINE=python runs the same producer in Python
# (confluent-kafka), which falls behind its schedule above about 200,000
# records/s (the report says when it did); BASELINE=0 none.
# The paced phases' records are read back from the topic and matched to their
# send times by the blockhub.event_id header; latency = append time - send
# time, for the records sent after WARMUP seconds: p50, p99, p999, max. The
# table gives every round and the medians, linger.ms beside them, and the
# verdict for the goal: p99 at half load <= linger.ms + 5 ms for traffic and
# market (fire: reported). LogAppendTime has millisecond resolution: each
# latency reads 0 to 1 ms low. LATENCY_SERIES=1 also prints, on stderr, p50
# and p99 per half second of each paced phase. See bench/latency_bench.py.
#
# Usage: bench/run-latency.sh [BUILD_DIR] [RUNS]   (defaults: build/, 3)
# Environment: BOOTSTRAP=host:port uses that broker; otherwise one is started
# with deploy/kafka/local-kafka in a temporary directory and stopped at the
# end (bench/lib.sh). SECONDS_PER_PHASE (default 5), WARMUP (1 s), PARTITIONS
# (6), MARKET_ROWS (rows a market file, 100), FIRE_CONNS (256),
# FIRE_PACED_CONNS (1024), FULL_FRACTION (1), BASELINE (1), ADAPTERS
# (default "traffic market fire"), LINGER_MS (default: blockhub's own, 5 ms;
# else passed as kafka.properties.linger.ms), BH_PYTHON: a Python with
# confluent-kafka (default: the test venv).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=$(cd "${1:-$root/build}" && pwd)
runs=${2:-3}
secs=${SECONDS_PER_PHASE:-5}
warmup=${WARMUP:-1}
partitions=${PARTITIONS:-6}
market_rows=${MARKET_ROWS:-100}
fire_conns=${FIRE_CONNS:-256}
fire_paced=${FIRE_PACED_CONNS:-1024}
adapters=${ADAPTERS:-traffic market fire}
full_fraction=${FULL_FRACTION:-1}
baseline=${BASELINE:-1}
py=${BH_PYTHON:-${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/venv/bin/python}
helper="$root/bench/latency_bench.py"
sender="$build/bench/bench_latency_fire"
token=bench-latency-token
for f in "$build/blockhub" "$sender" "$build/bench/bench_latency_produce"; do
    [[ -x $f ]] || { echo "run-latency.sh: no $f (build first)" >&2; exit 1; }
done
"$py" -c 'import confluent_kafka' 2>/dev/null \
    || { echo "run-latency.sh: $py lacks confluent-kafka (deploy/install-deps.sh venv)" >&2; exit 1; }

hub_pid=
bench_tmp_broker latency
cleanup() {
    [[ -n $hub_pid ]] && kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null || true
    bench_tmp_cleanup
}
trap cleanup EXIT

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
free_port() {
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "machine: $(nproc) CPUs, load $(loadavg); $(date -u '+%Y-%m-%d %H:%M UTC');" \
    "$(git -C "$root" describe --always --dirty 2>/dev/null)"
echo "generating inputs..."
python3 "$root/bench/gen_traffic.py" 200000 "$tmp/traffic.ndjson"
python3 "$root/bench/gen_market.py" 100000 "$tmp/market.csv"
python3 "$root/bench/fire_bench.py" bodies 1 50000 "$tmp/fire.txt" --seed 1

tag="bench-lat-$(date +%s)-$$"
"$py" "$helper" topics "$bs" "$partitions" "dept.traffic.$tag" "dept.market.$tag" \
    "dept.fire.$tag" "baseline.$tag"
linger=${LINGER_MS:-5} # blockhub's default (hub/kafka.c)
tport=$(free_port)
fport=$(free_port)
mkdir "$tmp/spool"
cat >"$tmp/blockhub.yaml" <<YAML
kafka:
  brokers: $bs
  partitions: $partitions
  replication: 1
$(bench_kafka_properties)
blocks:
  map: $root/tests/data/world/blocks.geojson
schemas:
  dir: $root/schemas
dead_letter:
  topic: hub.dlq.$tag
adapters:
  - name: traffic
    type: traffic
    auth: none
    listen: 127.0.0.1:$tport
    topic: dept.traffic.$tag
  - name: market
    type: market
    spool_dir: $tmp/spool
    settle_time: 0s
    done_action: delete
    topic: dept.market.$tag
  - name: fire
    type: fire
    listen: 127.0.0.1:$fport
    tokens: [$token]
    topic: dept.fire.$tag
YAML
"$build/blockhub" --config "$tmp/blockhub.yaml" >"$tmp/blockhub.log" 2>&1 &
hub_pid=$!
bench_wait_ready "$hub_pid" "$tmp/blockhub.log"
echo "broker: $bs; blockhub: $partitions partitions, linger.ms $linger; $secs s a phase" \
    "(warm-up $warmup s), market files of $market_rows rows, fire $fire_conns connections" \
    "flat out, $fire_paced paced"

# phase ADAPTER RATE: one phase of latency_bench.py, its line on stdout.
phase() {
    local a=$1 rate=$2
    case $a in
    traffic)
        "$py" "$helper" traffic "$bs" "dept.traffic.$tag" "127.0.0.1:$tport" \
            "$tmp/traffic.ndjson" "$rate" "$secs" "$warmup" "$hub_pid"
        ;;
    market)
        "$py" "$helper" market "$bs" "dept.market.$tag" "$tmp/spool" "$tmp/market.csv" \
            "$market_rows" "$rate" "$secs" "$warmup" "$hub_pid"
        ;;
    fire)
        local conns=$fire_conns
        [[ $rate == 0 ]] || conns=$fire_paced
        "$py" "$helper" fire "$bs" "dept.fire.$tag" "$sender" "127.0.0.1:$fport" "$token" \
            "$tmp/fire.txt" "$conns" "$rate" "$secs" "$warmup" "$hub_pid"
        ;;
    esac
}

results="$tmp/results"
: >"$results"
for run in $(seq 1 "$runs"); do
    for a in $adapters; do
        echo "round $run, $a: load $(loadavg)"
        out=$(phase "$a" 0)
        echo "  max:  $out"
        echo "$a $run flat $out" >>"$results"
        max=$(echo "$out" | sed -n 's/^rate=\([0-9.]*\).*/\1/p')
        half=$(awk -v m="$max" 'BEGIN { printf "%.0f", m / 2 }')
        full=$(awk -v m="$max" -v f="$full_fraction" 'BEGIN { printf "%.0f", m * f }')
        out=$(phase "$a" "$half")
        echo "  half: $out"
        echo "$a $run half $out" >>"$results"
        if [[ $a == traffic && $baseline == python ]]; then
            out=$("$py" "$helper" producer "$bs" "baseline.$tag" "$half" "$secs" "$warmup")
            echo "  baseline (librdkafka producer alone, Python) at $half/s: $out"
            echo "baseline $run half $out" >>"$results"
        elif [[ $a == traffic && $baseline == 1 ]]; then
            out=$("$py" "$helper" producer-c "$bs" "baseline.$tag" \
                "$build/bench/bench_latency_produce" "$half" "$secs" "$warmup")
            echo "  baseline (librdkafka producer alone) at $half/s: $out"
            echo "baseline $run half $out" >>"$results"
        fi
        out=$(phase "$a" "$full")
        echo "  full: $out"
        echo "$a $run full $out" >>"$results"
    done
done

kill -TERM "$hub_pid"
wait "$hub_pid" || { echo "blockhub exited $?" >&2; tail "$tmp/blockhub.log" >&2; exit 1; }
hub_pid=
if grep -q " error " "$tmp/blockhub.log"; then grep " error " "$tmp/blockhub.log" | head -5 >&2; fi
echo
echo "load at the end: $(loadavg)"
echo
"$py" "$helper" report "$results" "$linger"
