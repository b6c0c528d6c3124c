#!/usr/bin/env bash
# Traffic path with the schema registry on (Confluent wire format: 0x00,
# 4-byte schema id, Avro body) against single-object encoding (no registry:
# 0xC3 0x01, 8-byte fingerprint, Avro body), in the same run, on the same
# broker, with the same input bytes.
#
# N gateway lines (bench/gen_traffic.py, generated once) are replayed over one
# TCP connection as fast as the socket takes them into blockhub running one
# traffic adapter; timed until the topic holds all N records, blockhub's CPU
# seconds (all threads) over the same span (bench/traffic_bench.py, as
# bench/run-traffic.sh does). Each run is a fresh blockhub and a fresh topic.
# ROUNDS rounds, each one run of both modes, the order swapped every round
# (single, registry; registry, single; ...) so that a drift of the machine's
# load does not favour one mode, after one uncounted warm-up run of each mode
# (a fresh broker is slow at first). The registry runs during both modes.
#
# Registry mode: `schema_registry: url:` (framing confluent, subject strategy
# topic); blockhub registers the topic's schema at start, before "hub: ready",
# so the timed span holds only the cached id. After every run the first
# records of every partition (up to CHECK records in all) are read back and
# their framing checked: 0x00 and the id the registry gives for the subject
# <topic>-value, or 0xC3 0x01 without the registry; the script fails
# otherwise.
#
# Printed: records/s and CPU seconds per million records of every run, the
# medians of each mode, the ratio registry / single-object of the medians (and
# the median of the rounds' ratios), the load average before and after each
# round.
#
# Usage: bench/run-registry.sh [BUILD_DIR] [N] [ROUNDS]
#        (defaults: build/, 1000000, 3)
# Environment: BOOTSTRAP=host:port uses that broker, else one is started with
# deploy/kafka/local-kafka (stopped at the end). REGISTRY_URL=http://.../
# apis/ccompat/v7 uses that registry, else one is started with
# deploy/registry/local-registry (stopped at the end). PARTITIONS (default
# 6), CHECK (records checked a run, default 10000), BH_PYTHON (a Python with
# confluent-kafka; default: the test venv).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${1:-$root/build}
n=${2:-1000000}
rounds=${3:-3}
partitions=${PARTITIONS:-6}
check=${CHECK:-10000}
py=${BH_PYTHON:-${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/venv/bin/python}
blockhub="$build/blockhub"
helper="$root/bench/traffic_bench.py"
[[ -x $blockhub ]] || { echo "run-registry.sh: no $blockhub (build first)" >&2; exit 1; }
"$py" -c 'import confluent_kafka' 2>/dev/null \
    || { echo "run-registry.sh: $py lacks confluent-kafka (deploy/install-deps.sh venv)" >&2; exit 1; }
command -v curl >/dev/null || { echo "run-registry.sh: curl is not installed" >&2; exit 1; }

tmp=$(mktemp -d /tmp/blockhub-bench-registry.XXXXXX)
hub_pid=
own_broker=
own_registry=
cleanup() {
    [[ -n $hub_pid ]] && kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null || true
    [[ -n $own_registry ]] && "$root/deploy/registry/local-registry" stop "$tmp/registry" >/dev/null 2>&1 || true
    [[ -n $own_broker ]] && "$root/deploy/kafka/local-kafka" stop "$tmp/kafka" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "generating $n lines..."
python3 "$root/bench/gen_traffic.py" "$n" "$tmp/traffic.ndjson"
echo "input: $n lines, $(du -h "$tmp/traffic.ndjson" | cut -f1)"

bench_broker "$tmp"
echo "broker: $bs${own_broker:+ (started for this run)}, $partitions partitions"
bench_registry "$tmp"
echo "registry: $registry_url${own_registry:+ (started for this run)}"
echo "machine: $(nproc) CPUs, load $(load)"

# check_framing MODE TOPIC: the first records of TOPIC (up to $check) carry
# MODE's framing; prints what was checked.
check_framing() {
    local mode=$1 topic=$2 id=-1
    if [[ $mode == registry ]]; then
        id=$(curl -fsS "$registry_url/subjects/$topic-value/versions/latest" \
            | "$py" -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    fi
    "$py" - "$bs" "$topic" "$check" "$id" <<'PY'
import os, struct, sys
from confluent_kafka import Consumer, TopicPartition
bs, topic, want, sid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = Consumer({"bootstrap.servers": bs, "group.id": "bench-check-%d" % os.getpid(),
              "enable.auto.commit": False})
parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
c.assign([TopicPartition(topic, p, 0) for p in parts])
got, heads = 0, set()
while got < want:
    msgs = c.consume(min(10000, want - got), timeout=10)
    if not msgs:
        break
    for m in msgs:
        if m.error():
            sys.exit("check: %s" % m.error())
        v = m.value()
        if sid >= 0:
            if len(v) < 5 or v[0] != 0 or struct.unpack(">i", v[1:5])[0] != sid:
                sys.exit("check: %s offset %d starts %s, not 00 + id %d"
                         % (topic, m.offset(), v[:5].hex(), sid))
            heads.add(v[:5].hex())
        else:
            if len(v) < 10 or v[:2] != b"\xc3\x01":
                sys.exit("check: %s offset %d starts %s, not c301" % (topic, m.offset(), v[:10].hex()))
            heads.add(v[:10].hex())
        got += 1
c.close()
if got < min(want, 1):
    sys.exit("check: nothing read from %s" % topic)
print("%d records checked, all start %s%s"
      % (got, " ".join(sorted(heads)), " (0x00 + schema id %d)" % sid if sid >= 0 else
         " (0xC3 0x01 + fingerprint)"))
PY
}

# run_one MODE ROUND: one blockhub run; appends to `results` (not for ROUND
# "warm-up").
results=()
run_one() {
    local mode=$1 round=$2 tag topic lport out
    tag="bench-$mode-$(date +%s)-$$-$round"
    topic="dept.traffic.$tag"
    lport=$(free_port)
    cat >"$tmp/blockhub.yaml" <<YAML
kafka:
  brokers: $bs
  partitions: $partitions
  replication: 1
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
    if [[ $mode == registry ]]; then
        cat >>"$tmp/blockhub.yaml" <<YAML
schema_registry:
  url: $registry_url
  framing: confluent
  subject_strategy: topic
YAML
    fi
    "$blockhub" --config "$tmp/blockhub.yaml" >"$tmp/blockhub.log" 2>&1 &
    hub_pid=$!
    bench_wait_ready "$hub_pid" "$tmp/blockhub.log"
    out=$("$py" "$helper" blockhub "$bs" "$topic" "$n" "$hub_pid" "127.0.0.1:$lport" \
        "$tmp/traffic.ndjson")
    kill -TERM "$hub_pid"
    wait "$hub_pid" || { echo "blockhub exited $?" >&2; tail "$tmp/blockhub.log" >&2; exit 1; }
    hub_pid=
    if grep -q " error " "$tmp/blockhub.log"; then grep " error " "$tmp/blockhub.log" | head -5 >&2; fi
    "$py" - "$n" "$round" "$mode" "$out" <<'PY'
import sys
n, rnd, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
kv = dict(x.split("=") for x in sys.argv[4].split())
print("round %s, %-8s %8.0f records/s  (%.2f s; sender done after %s s); CPU %.2f s per million"
      % (rnd, mode + ":", n / float(kv["seconds"]), float(kv["seconds"]), kv["sent_after"],
         float(kv["cpu_seconds"]) * 1e6 / n))
PY
    echo "          framing: $(check_framing "$mode" "$topic")"
    [[ $round == warm-up ]] || results+=("mode=$mode round=$round $out")
}

echo "warm-up (not counted): load $(load)"
run_one single warm-up
run_one registry warm-up
for round in $(seq 1 "$rounds"); do
    echo "round $round: load $(load)"
    if ((round % 2)); then order="single registry"; else order="registry single"; fi
    for mode in $order; do
        run_one "$mode" "$round"
    done
done
echo "after: load $(load)"

"$py" - "$n" "${results[@]}" <<'PY'
import statistics
import sys
n = int(sys.argv[1])
rate = {"single": {}, "registry": {}}
cpu = {"single": [], "registry": []}
for r in sys.argv[2:]:
    kv = dict(x.split("=") for x in r.split())
    rate[kv["mode"]][kv["round"]] = n / float(kv["seconds"])
    cpu[kv["mode"]].append(float(kv["cpu_seconds"]) * 1e6 / n)
rounds = sorted(rate["single"], key=int)
print("round  single-object  registry  registry/single")
for r in rounds:
    s, g = rate["single"][r], rate["registry"][r]
    print("%5s  %13.0f  %8.0f  %15.3f" % (r, s, g, g / s))
ms = statistics.median(rate["single"].values())
mg = statistics.median(rate["registry"].values())
print("medians: single-object %.0f records/s, registry %.0f records/s" % (ms, mg))
print("ratio registry / single-object: %.3f (medians); %.3f (median of the rounds' ratios)"
      % (mg / ms, statistics.median(rate["registry"][r] / rate["single"][r] for r in rounds)))
print("blockhub CPU per million records (medians): single-object %.2f s, registry %.2f s"
      % (statistics.median(cpu["single"]), statistics.median(cpu["registry"])))
PY
