#!/usr/bin/env bash
# blockhub's main job on a fresh machine, with nothing else running: builds
# blockhub and starts it on the embedded Kafka default with the example config
# (fire, traffic and market adapters, and the join with its admin API); feeds
# it each department's sample (with the known bad records docs/feeds.md lists
# in section 7) and then 10 seconds of simulated traffic from all three
# departments (tools/blockhub-sim); shows what was published and the joined
# view of the busiest blocks, decoded by fastavro, and one block through the
# admin API; stops it cleanly.
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
admin_port=${BH_DEMO_ADMIN_PORT:-8081}
work=$(mktemp -d /tmp/blockhub-demo.XXXXXX)
mkdir -p "$work/spool"
log="$work/blockhub.log"
./build/blockhub --config deploy/examples/blockhub.yaml \
  --set adapters.fire.listen=127.0.0.1:"$fire_port" \
  --set adapters.traffic.listen=127.0.0.1:"$traffic_port" \
  --set adapters.market.spool_dir="$work/spool" \
  --set join.state_dir="$work/join-state" \
  --set admin.listen=127.0.0.1:"$admin_port" >"$log" 2>&1 &
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

echo
echo "== the joined view: every department's events of a block in one record (block.view)"
# The join has caught up when it has consumed every record of the department topics.
"$py" - "$bootstrap" "$admin_port" <<'PY'
import json, sys, time, urllib.request
from confluent_kafka import Consumer, TopicPartition
bootstrap, admin = sys.argv[1], sys.argv[2]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "blockhub-demo-count"})
total = 0
for t in ("dept.fire", "dept.traffic", "dept.market"):
    for p in c.list_topics(t, timeout=10).topics[t].partitions:
        total += c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
c.close()
deadline = time.monotonic() + 60
while True:
    s = json.load(urllib.request.urlopen("http://127.0.0.1:%s/join" % admin, timeout=10))
    if s["stats"]["consumed"] >= total and s["stats"]["commits"] > 0:
        break
    if time.monotonic() > deadline:
        sys.exit("the join consumed %d of %d records in 60 s" % (s["stats"]["consumed"], total))
    time.sleep(0.2)
st = s["stats"]
print("join: %d records consumed, %d counted, %d duplicates, %d views in %d commits"
      % (st["consumed"], st["counted"], st["duplicates"], st["views"], st["commits"]))
PY
"$py" tools/bhcat.py --bootstrap "$bootstrap" --schemas schemas block.view |
  "$py" -c 'import json,sys
last = {}
for line in sys.stdin:
    m = json.loads(line)
    last[m["key"]] = m["value"]
print("%d blocks have a view; the five busiest:" % len(last))
def n(v):
    return sum(v[d]["total"] for d in ("market", "traffic", "fire"))
for k, v in sorted(last.items(), key=lambda kv: -n(kv[1]))[:5]:
    print("%s %s  market %3d  traffic %3d  fire %3d" % (k, v["block_name"], v["market"]["total"],
          v["traffic"]["total"], v["fire"]["total"]))'
echo "== GET http://127.0.0.1:$admin_port/blocks/440303-048"
curl -sS "http://127.0.0.1:$admin_port/blocks/440303-048"
echo
echo "== tools/blockhubctl status (the admin API: every component, its state and counters)"
BLOCKHUB_ADMIN="http://127.0.0.1:$admin_port" python3 "$root/tools/blockhubctl" status
kill -TERM "$pid"
wait "$pid"
trap - EXIT
echo
echo "== blockhub stopped cleanly (exit 0); its log: $log"
