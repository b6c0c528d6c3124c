# Sourced by the bench scripts.
#
# bench_broker DIR: the broker to measure against. With BOOTSTRAP set, that
# one; otherwise a broker of the script's own is started with local-kafka in
# DIR/kafka on a free pair of loopback ports (broker, controller). Sets
# `bs` (the bootstrap) and `own_broker` (1 when started here: stop it with
# `local-kafka stop DIR/kafka`).
bench_broker() {
    local dir=$1 port
    if [[ -n ${BOOTSTRAP:-} ]]; then
        bs=$BOOTSTRAP
        return
    fi
    port=$(bench_free_port_pair)
    own_broker=1
    bs=$("$root/deploy/kafka/local-kafka" start "$dir/kafka" "$port" | tail -n 1)
}

# bench_wait_ready PID LOG: until blockhub PID logs "hub: ready" in LOG (60 s at
# most); if it exits first, its log goes to stderr and the script fails.
bench_wait_ready() {
    local pid=$1 log=$2
    for _ in $(seq 1 600); do
        grep -q "hub: ready" "$log" && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.1
    done
}

# bench_tmp_broker NAME: a temporary directory `tmp` (removed at exit) and the
# broker of bench_broker in it (stopped at exit when started here). For the
# scripts with nothing else to clean up.
bench_tmp_broker() {
    tmp=$(mktemp -d "/tmp/blockhub-bench-$1.XXXXXX")
    own_broker=
    trap bench_tmp_cleanup EXIT
    bench_broker "$tmp"
    echo "broker: $bs${own_broker:+ (started for this run)}"
}

bench_tmp_cleanup() {
    [[ -n $own_broker ]] && "$root/deploy/kafka/local-kafka" stop "$tmp/kafka" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}

# bench_free_port_pair: the first P (from 20000, even) with 127.0.0.1:P and
# P+1 both free, on stdout.
bench_free_port_pair() {
    python3 -c '
import socket
for p in range(20000, 60000, 2):
    a, b = socket.socket(), socket.socket()
    try:
        a.bind(("127.0.0.1", p)); b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()'
}

# bench_registry DIR: the schema registry to measure against. With
# REGISTRY_URL set, that one; otherwise one of the script's own is started
# with deploy/registry/local-registry in DIR/registry on a free pair of
# loopback ports (API, management). Sets `registry_url` (the Confluent API's
# base URL) and `own_registry` (1 when started here: stop it with
# `local-registry stop DIR/registry`).
bench_registry() {
    local dir=$1
    if [[ -n ${REGISTRY_URL:-} ]]; then
        registry_url=$REGISTRY_URL
        return
    fi
    own_registry=1
    registry_url=$("$root/deploy/registry/local-registry" start "$dir/registry" \
        "$(bench_free_port_pair)" | tail -n 1)
}

# bench_kafka_properties: the `kafka.properties` lines of a hub config (under
# `kafka:`) for LINGER_MS, blockhub's producer linger.ms; nothing without it.
bench_kafka_properties() {
    if [[ -n ${LINGER_MS:-} ]]; then printf '  properties:\n    linger.ms: "%s"\n' "$LINGER_MS"; fi
}

# bench_perf_start PID RUN: with PERF_OUT set, a `perf record` of PID with call
# graphs (PERF_CALLGRAPH: perf's --call-graph mode, default fp) into
# PERF_OUT.RUN, until bench_perf_stop.
bench_perf_start() {
    perf_pid=
    [[ -n ${PERF_OUT:-} ]] || return 0
    perf record -q -F 1999 --call-graph "${PERF_CALLGRAPH:-fp}" -p "$1" -o "$PERF_OUT.$2" \
        >/dev/null 2>&1 &
    perf_pid=$!
}

bench_perf_stop() {
    if [[ -n ${perf_pid:-} ]]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    perf_pid=
}
