#!/usr/bin/env bash
# What the traffic path's guarantees cost: the same N gateway lines
# (bench/gen_traffic.py) written over one connection the way a gateway writes
# them (bench/traffic_bench.py gateway), into blockhub running one traffic
# adapter against a real broker, in four modes, one after the other in every
# round on the same broker:
#   plain    today's protocol, no hello
#   ack      a hello asking for acknowledgements; the gateway reads them
#   tls      TLS with a client certificate (auth tls), no acknowledgements
#   tls+ack  both
# Each run is timed from the first byte until the topic holds all N records
# (for ack modes the last ack is printed too). Printed: each run's records/s
# and blockhub's CPU seconds per million, then per mode the median records/s
# of the rounds and its ratio against the plain mode's median of the same
# rounds. Certificates are made for the run (tests/integration/tls_helpers.py).
#
# Usage: bench/run-traffic-modes.sh [BUILD_DIR] [N] [ROUNDS]   (defaults: build/, 500000, 3)
# Environment: BOOTSTRAP=host:port uses that broker; otherwise one is started
# with deploy/kafka/local-kafka in a temporary directory and stopped at the
# end. BH_PYTHON: a Python with confluent-kafka (default: the test venv).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${1:-$root/build}
n=${2:-500000}
rounds=${3:-3}
py=${BH_PYTHON:-${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}/venv/bin/python}
blockhub="$build/blockhub"
helper="$root/bench/traffic_bench.py"
[[ -x $blockhub ]] || { echo "run-traffic-modes.sh: no $blockhub (build first)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/blockhub-bench-traffic-modes.XXXXXX)
hub_pid=
own_broker=
cleanup() {
    if [[ -n $hub_pid ]]; then kill "$hub_pid" 2>/dev/null; wait "$hub_pid" 2>/dev/null || true; fi
    if [[ -n $own_broker ]]; then "$root/deploy/kafka/local-kafka" stop "$tmp/kafka" >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "generating $n lines..."
python3 "$root/bench/gen_traffic.py" "$n" "$tmp/traffic.ndjson"
echo "input: $n lines, $(du -h "$tmp/traffic.ndjson" | cut -f1)"
"$py" -c "import sys; sys.path.insert(0, '$root/tests/integration'); import tls_helpers; tls_helpers.make_pki('$tmp/pki')"
bench_broker "$tmp"
echo "broker: $bs; machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

results="$tmp/results"
: >"$results"
for round in $(seq 1 "$rounds"); do
    for mode in plain ack tls tls+ack; do
        tag="bench-modes-$(date +%s)-$$-$round-${mode/+/-}"
        lport=$(bench_free_port_pair)
        auth=none tls= opts=()
        if [[ $mode == tls* ]]; then
            auth=tls
            tls=$'\n    tls: {cert_file: '"$tmp/pki/server.pem"', key_file: '"$tmp/pki/server.key"', client_ca_file: '"$tmp/pki/ca.pem"', client_cert: required}'
            opts+=(tls "$tmp/pki/ca.pem" "$tmp/pki/client.pem" "$tmp/pki/client.key")
        fi
        [[ $mode == *ack ]] && opts+=(ack)
        cat >"$tmp/blockhub.yaml" <<YAML
kafka:
  brokers: $bs
  partitions: 6
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
    auth: $auth
    listen: 127.0.0.1:$lport
    topic: dept.traffic.$tag$tls
YAML
        "$blockhub" --config "$tmp/blockhub.yaml" >"$tmp/blockhub.log" 2>&1 &
        hub_pid=$!
        bench_wait_ready "$hub_pid" "$tmp/blockhub.log"
        out=$("$py" "$helper" gateway "$bs" "dept.traffic.$tag" "$n" "$hub_pid" "127.0.0.1:$lport" \
            "$tmp/traffic.ndjson" "${opts[@]}")
        kill -TERM "$hub_pid"
        wait "$hub_pid" || { echo "blockhub exited $?" >&2; tail "$tmp/blockhub.log" >&2; exit 1; }
        hub_pid=
        echo "$round $mode $out" | tee -a "$results"
    done
done

"$py" - "$n" "$results" <<'PY'
import statistics
import sys
n = int(sys.argv[1])
runs = {}
for line in open(sys.argv[2]):
    round_, mode, *kv = line.split()
    d = dict(x.split("=") for x in kv)
    runs.setdefault(mode, []).append((n / float(d["seconds"]), float(d["cpu_seconds"]) * 1e6 / n,
                                      float(d["acked_after"])))
base = statistics.median(r[0] for r in runs["plain"])
print("%-8s %12s %8s %14s %16s" % ("mode", "records/s", "ratio", "CPU s/million", "last ack after s"))
for mode in ("plain", "ack", "tls", "tls+ack"):
    rs = runs[mode]
    med = statistics.median(r[0] for r in rs)
    acked = [r[2] for r in rs if r[2] > 0]
    print("%-8s %12.0f %8.2f %14.2f %16s" % (mode, med, med / base, statistics.median(r[1] for r in rs),
                                              "%.2f" % statistics.median(acked) if acked else "-"))
PY
