#!/usr/bin/env bash
# Fire over HTTPS against plain HTTP, in the same run: one blockhub with two fire
# adapters on one broker, one plain (fire-plain) and one with a `tls` section
# (fire-tls: a test CA's EC P-256 certificate, made here with openssl), each
# driven in turn by h2load (HTTP/1.1, keep-alive connections, one event a POST,
# every answer waiting for Kafka's acknowledgement), ROUNDS times, alternating,
# so that both see the same machine. Prints requests/s of each run and the
# ratio tls/plain of the medians. h2load offers no client certificate, so
# fire-tls has `client_cert: none` (a client certificate costs once per
# connection, in the handshake; these connections are kept alive).
#
# Usage: bench/run-fire-tls.sh [BUILD_DIR] [ROUNDS] [SECONDS]   (defaults: build/, 3, 5)
# Environment: BOOTSTRAP=host:port uses that broker (else one is started with
# local-kafka and stopped at the end); CONNS (default 32), WARMUP (1 s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=$(cd "${1:-$root/build}" && pwd)
rounds=${2:-3}
seconds=${3:-5}
conns=${CONNS:-32}
warmup=${WARMUP:-1}
token=bench-fire-token
command -v h2load >/dev/null || { echo "run-fire-tls.sh: needs h2load (nghttp2-client)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "run-fire-tls.sh: needs openssl" >&2; exit 1; }
[[ -x $build/blockhub ]] || { echo "run-fire-tls.sh: no $build/blockhub (build first)" >&2; exit 1; }

hub_pid=
bench_tmp_broker fire-tls
cleanup() {
    [[ -n $hub_pid ]] && kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null || true
    bench_tmp_cleanup
}
trap cleanup EXIT
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

(
    cd "$tmp"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.pem -days 1 -subj "/CN=bench CA" >/dev/null 2>&1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
        -out server.csr -subj "/CN=127.0.0.1" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days 1 -extfile server.ext >/dev/null 2>&1
)
printf '{"id":"XF-B","category":"alarm","unit":"u","level":"high","occurred_at":"2026-11-27T08:00:00+08:00","grid_code":"440303-001"}' >"$tmp/one.json"

tag="bench-fire-tls-$(date +%s)-$$"
pport=$(free_port)
tport=$(free_port)
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
  - name: fire-plain
    type: fire
    listen: 127.0.0.1:$pport
    tokens: [$token]
    topic: dept.fire.plain.$tag
  - name: fire-tls
    type: fire
    listen: 127.0.0.1:$tport
    tokens: [$token]
    topic: dept.fire.tls.$tag
    tls:
      cert_file: $tmp/server.pem
      key_file: $tmp/server.key
      client_cert: none
YAML
"$build/blockhub" --config "$tmp/blockhub.yaml" >"$tmp/blockhub.log" 2>&1 &
hub_pid=$!
bench_wait_ready "$hub_pid" "$tmp/blockhub.log"
echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $(git -C "$root" describe --always --dirty 2>/dev/null)"

# run NAME URL: requests/s of one h2load run (fails on any error or non-2xx answer).
run() {
    local name=$1 url=$2 out rps
    out=$(h2load --h1 -c "$conns" -D "${seconds}s" --warm-up-time "${warmup}s" -d "$tmp/one.json" \
        -H "Authorization: Bearer $token" -H "Content-Type: application/json" "$url" 2>&1)
    rps=$(echo "$out" | awk '/^finished in/ {print $4}')
    read -r failed errored non2xx < <(echo "$out" | awk '/^requests:/ {f = $10; e = $12}
        /^status codes:/ {n = $5 + $7 + $9} END {print f, e, n}')
    if [[ -z $rps || $failed != 0 || $non2xx != 0 ]]; then
        echo "$name: h2load failed:" >&2
        echo "$out" >&2
        exit 1
    fi
    echo "  $name: $rps req/s" >&2
    echo "$rps"
}

plain=()
tls=()
for round in $(seq 1 "$rounds"); do
    echo "round $round ($conns connections, ${seconds}s each):"
    plain+=("$(run plain "http://127.0.0.1:$pport/v1/fire/events")")
    tls+=("$(run tls "https://127.0.0.1:$tport/v1/fire/events")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
mp=$(median "${plain[@]}")
mt=$(median "${tls[@]}")
echo "plain median: $mp req/s; tls median: $mt req/s"
awk -v p="$mp" -v t="$mt" 'BEGIN {printf "ratio tls/plain: %.2f\n", t / p}'
grep -q "fire webhooks on https://" "$tmp/blockhub.log" || { echo "fire-tls did not serve HTTPS" >&2; exit 1; }
