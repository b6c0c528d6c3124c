#!/usr/bin/env bash
# blockhub's main job on a fresh machine, with nothing else running: builds
# blockhub and starts it on the embedded Kafka default with the example config
# (fire, traffic and market adapters); feeds it each department's sample
# (with the known bad records docs/feeds.md lists in section 7) and then 10
# seconds of simulated traffic from all three departments (tools/blockhub-sim);
# shows what was published, decoded by fastavro; stops it cleanly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/deploy/install-deps.sh" >/dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

cache=${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}
py="$cache/venv/bin/python"
fire_port=${BH_DEMO_PORT:-8080}
traffic_port=${BH_DEMO_TRAFFIC_PORT:-9400}
work=$(mktemp -d /tmp/blockhub-demo.XXXXXX)
mkdir -p "$work/spool"
log="$work/blockhub.log"
./build/blockhub --config deploy/examples/blockhub.yaml \
  --set adapters.fire.listen=127.0.0.1:"$fire_port" \
  --set adapters.traffic.listen=127.0.0.1:"$traffic_port" \
  --set adapters.market.spool_dir="$work/spool" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "hub: ready" "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
bootstrap=$(sed -n 's/.*mock Kafka cluster at \([^;]*\);.*/\1/p' "$log" | head -n 1)
samples=tests/data/world/samples

echo "== blockhub started"
cat "$log"
echo
echo "== fire: POST $samples/fire/webhook-batch.json"
curl -sS -X POST "http://127.0.0.1:$fire_port/v1/fire/events" \
  -H "Authorization: Bearer fire-demo-token" -H "Content-Type: application/json" \
  --data-binary @"$samples/fire/webhook-batch.json"
echo
echo "== traffic: $samples/traffic/gateway.ndjson over TCP to 127.0.0.1:$traffic_port"
"$py" - "$traffic_port" "$samples/traffic/gateway.ndjson" <<'PY'
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as s, open(sys.argv[2], "rb") as f:
    s.sendall(f.read())
PY
echo "== market: $samples/market/scjg_20261127_0800.csv dropped into the spool"
cp "$samples/market/scjg_20261127_0800.csv" "$work/spool/scjg_20261127_0800.csv.part"
mv "$work/spool/scjg_20261127_0800.csv.part" "$work/spool/scjg_20261127_0800.csv"

echo "== 10 seconds of all three departments from tools/blockhub-sim (100 events/s, 2% bad)"
"$py" tools/blockhub-sim --blocks tests/data/world/blocks.geojson --seed 1 --base-time now \
  --rate 100 --duration 10 --bad 0.02 --spool "$work/spool" \
  --traffic 127.0.0.1:"$traffic_port" \
  --fire "http://127.0.0.1:$fire_port/v1/fire/events" --fire-token fire-demo-token \
  --truth "$work/truth.json"
for _ in $(seq 1 100); do
  [ -z "$(find "$work/spool" -maxdepth 1 -name '*.csv')" ] && break
  sleep 0.1
done
sleep 1 # the last traffic lines and market rows reach Kafka

echo
echo "== published (decoded by fastavro; the simulator's ground truth is in $work/truth.json)"
"$py" tools/bhcat.py --bootstrap "$bootstrap" --schemas schemas --limit 3 \
  dept.fire dept.traffic dept.market
echo
echo "== dead letters: the samples' known bad records, then the simulator's"
"$py" tools/bhcat.py --bootstrap "$bootstrap" --schemas schemas hub.dlq |
  "$py" -c 'import json,sys
for line in sys.stdin:
    r = json.loads(line)["value"]
    print("%-8s %-17s %s:%s  %s" % (r["adapter"], r["reason"], r["origin"]["source"],
          r["origin"]["position"], r["detail"][:80]))'
kill -TERM "$pid"
wait "$pid"
trap - EXIT
echo
echo "== blockhub stopped cleanly (exit 0); its log: $log"
