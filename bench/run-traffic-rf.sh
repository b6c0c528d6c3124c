#!/usr/bin/env bash
# Traffic path at replication factor 3 against replication factor 1, on one
# three-node cluster (deploy/kafka/local-kafka start DIR --nodes 3), in the
# same run: N gateway lines (bench/gen_traffic.py) replayed over one TCP
# connection into blockhub running one traffic adapter, timed until the topic
# holds all N records (bench/traffic_bench.py, as bench/run-traffic.sh does).
#
# The topic of each run is made beforehand with PARTITIONS partitions: at RF 3
# with the cluster's min.insync.replicas=2 (an acks=all write is on two nodes
# before blockhub hears of it), at RF 1 with min.insync.replicas=1 (the leader
# alone). Runs alternate RF 1, RF 3 (RUNS pairs), each with a fresh blockhub
# and topic. Printed: records/s of every run, the medians and their ratio
# RF3/RF1, blockhub's CPU seconds per million records.
#
# Usage: bench/run-traffic-rf.sh [BUILD_DIR] [N] [RUNS]
#        (defaults: build/, 200000, 3)
# Environment: PARTITIONS (default 6), BH_PYTHON (a Python with
# confluent-kafka; default: the test venv), PORT (the cluster's first port;
# default: a free range from 20000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${1:-$root/build}
n=${2:-200000}
runs=${3:-3}
partitions=${PARTITIONS:-6}
py=${BH_PYTHON:-${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/venv/bin/python}
blockhub="$build/blockhub"
helper="$root/bench/traffic_bench.py"
lk="$root/deploy/kafka/local-kafka"
[[ -x $blockhub ]] || { echo "run-traffic-rf.sh: no $blockhub (build first)" >&2; exit 1; }
"$py" -c 'import confluent_kafka' 2>/dev/null \
    || { echo "run-traffic-rf.sh: $py lacks confluent-kafka (deploy/install-deps.sh venv)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/blockhub-bench-traffic-rf.XXXXXX)
hub_pid=
cleanup() {
    [[ -n $hub_pid ]] && kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null || true
    "$lk" stop "$tmp/kafka" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The first of six free consecutive loopback ports (three brokers, three controllers).
port=${PORT:-$(python3 -c '
import socket
for p in range(20000, 32000, 8):
    socks = []
    try:
        for q in range(p, p + 6):
            s = socket.socket(); socks.append(s); s.bind(("127.0.0.1", q))
        print(p); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()')}

echo "generating $n lines..."
python3 "$root/bench/gen_traffic.py" "$n" "$tmp/traffic.ndjson"
echo "input: $n lines, $(du -h "$tmp/traffic.ndjson" | cut -f1)"
bs=$("$lk" start "$tmp/kafka" --nodes 3 "$port" | tail -n 1)
echo "cluster: $bs, $partitions partitions; machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

# make_topic TOPIC RF MIN_ISR
make_topic() {
    "$py" - "$bs" "$1" "$partitions" "$2" "$3" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
bs, topic, parts, rf, isr = sys.argv[1:]
a = AdminClient({"bootstrap.servers": bs})
for f in a.create_topics([NewTopic(topic, int(parts), int(rf),
                                   config={"min.insync.replicas": isr})]).values():
    f.result(60)
PY
}

results=()
for run in $(seq 1 "$runs"); do
    for rf in 1 3; do
        tag="bench-rf$rf-$(date +%s)-$$-$run"
        topic="dept.traffic.$tag"
        make_topic "$topic" "$rf" $((rf == 1 ? 1 : 2))
        lport=$(free_port)
        cat >"$tmp/blockhub.yaml" <<YAML
kafka:
  brokers: $bs
  partitions: $partitions
  replication: $rf
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
    listen: 127.0.0.1:$lport
    topic: $topic
YAML
        "$blockhub" --config "$tmp/blockhub.yaml" >"$tmp/blockhub.log" 2>&1 &
        hub_pid=$!
        bench_wait_ready "$hub_pid" "$tmp/blockhub.log"
        out=$("$py" "$helper" blockhub "$bs" "$topic" "$n" "$hub_pid" "127.0.0.1:$lport" \
            "$tmp/traffic.ndjson")
        kill -TERM "$hub_pid"
        wait "$hub_pid" || { echo "blockhub exited $?" >&2; tail "$tmp/blockhub.log" >&2; exit 1; }
        hub_pid=
        if grep -q " error " "$tmp/blockhub.log"; then grep " error " "$tmp/blockhub.log" | head -5 >&2; fi
        echo "run $run, RF $rf: $out"
        results+=("rf=$rf $out")
    done
done

"$py" - "$n" "${results[@]}" <<'PY'
import statistics
import sys
n = int(sys.argv[1])
rate, cpu = {1: [], 3: []}, {1: [], 3: []}
for r in sys.argv[2:]:
    kv = dict(x.split("=") for x in r.split())
    rate[int(kv["rf"])].append(n / float(kv["seconds"]))
    cpu[int(kv["rf"])].append(float(kv["cpu_seconds"]) * 1e6 / n)
for rf in (1, 3):
    print("RF %d: %s records/s (median %.0f); blockhub CPU %.2f s per million records (median)"
          % (rf, " ".join("%.0f" % x for x in rate[rf]), statistics.median(rate[rf]),
             statistics.median(cpu[rf])))
print("ratio RF3/RF1: %.2f (medians)" % (statistics.median(rate[3]) / statistics.median(rate[1])))
PY
