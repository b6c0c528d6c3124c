#!/usr/bin/env bash
# blockhub's main job on a fresh machine, with nothing else running: builds
# blockhub, starts it on the embedded Kafka default with the example config,
# posts the fire department's sample batch to its webhook, shows the response
# and what was published (decoded by fastavro), then stops it cleanly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/deploy/install-deps.sh" >/dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

cache=${BLOCKHUB_CACHE:-$HOME/.cache/blockhub}
port=${BH_DEMO_PORT:-8080}
log=$(mktemp /tmp/blockhub-demo.XXXXXX.log)
./build/blockhub --config deploy/examples/blockhub.yaml \
  --set adapters.fire.listen=127.0.0.1:"$port" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "hub: ready" "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
bootstrap=$(sed -n 's/.*mock Kafka cluster at \([^;]*\);.*/\1/p' "$log" | head -n 1)

echo "== blockhub log"
cat "$log"
echo
echo "== POST tests/data/world/samples/fire/webhook-batch.json"
curl -sS -X POST "http://127.0.0.1:$port/v1/fire/events" \
  -H "Authorization: Bearer fire-demo-token" -H "Content-Type: application/json" \
  --data-binary @tests/data/world/samples/fire/webhook-batch.json
echo
echo
echo "== published to dept.fire and hub.dlq (decoded by fastavro)"
"$cache/venv/bin/python" tools/bhcat.py --bootstrap "$bootstrap" --schemas schemas dept.fire hub.dlq
kill -TERM "$pid"
wait "$pid"
trap - EXIT
echo
echo "== blockhub stopped cleanly (exit 0); full log in $log"
