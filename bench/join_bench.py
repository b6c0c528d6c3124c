#!/usr/bin/env python3
"""The join benchmark (bench/run-join.sh runs it; see there for the usage).

1. Topics of its own (three departments, P partitions) on the broker --bootstrap;
   N events produced to them first (Avro single-object, keyed by block with murmur2, over a
   generated map of B blocks; 20% of fire and traffic events sent twice, as senders resend).
2. The ceiling: bench_join_consume, librdkafka's consumer alone with the join's settings,
   reads the same topics from the beginning: records/s and CPU-seconds per million.
3. The join: a blockhub process with the join only, a fresh group, reads the same topics
   from the beginning; throughput from its first consumed record to its last (GET /join),
   CPU from /proc (all its threads), then the time until the last commit; the state memory
   it reports (bytes per block and per remembered event id).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("BH_SOURCE_DIR", ROOT)

import requests  # noqa: E402

import join_helpers as jh  # noqa: E402
from conftest import free_port  # noqa: E402


def proc_cpu(pid):
    """User + system CPU seconds of PID (all threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def broker_pid(bootstrap):
    """The pid of the broker listening on BOOTSTRAP's port on this machine, or None."""
    port = bootstrap.split(",")[0].rsplit(":", 1)[1]
    try:
        out = subprocess.run(["ss", "-ltnpH", "sport = :%s" % port], stdout=subprocess.PIPE,
                             text=True, timeout=10).stdout
        return int(out.split("pid=")[1].split(",")[0])
    except (OSError, IndexError, ValueError, subprocess.SubprocessError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True, help="the broker (host:port)")
    ap.add_argument("--build", required=True)
    ap.add_argument("--events", type=int, default=1000000)
    ap.add_argument("--blocks", type=int, default=10000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--commit-interval", default="100ms")
    ap.add_argument("--keep", action="store_true", help="keep the input topics (print their tag)")
    ap.add_argument("--reuse", metavar="TAG", help="input topics kept by an earlier --keep run")
    ap.add_argument("--perf", metavar="FILE", help="perf record the join into FILE")
    args = ap.parse_args()
    bootstrap = args.bootstrap
    blockhub = os.path.join(args.build, "blockhub")
    consume = os.path.join(args.build, "bench", "bench_join_consume")
    if not os.path.exists(consume):
        consume = os.path.join(args.build, "bench_join_consume")

    tmp = tempfile.mkdtemp(prefix="blockhub-join-bench.")
    tag = args.reuse or uuid.uuid4().hex[:8]
    blocks_path = os.path.join(tmp, "blocks.geojson")
    subprocess.run([sys.executable, os.path.join(HERE, "gen_blocks.py"), str(args.blocks),
                    blocks_path], check=True)
    with open(blocks_path, encoding="utf-8") as f:
        names = {ft["properties"]["block_id"]: ft["properties"]["name"]
                 for ft in json.load(f)["features"]}
    schemas = jh.schema_dir(tmp)
    depts = [jh.Department(d, schemas) for d in jh.DEPTS]
    topics = {d: "bench.dept.%s.%s" % (d, tag) for d in jh.DEPTS}
    run = uuid.uuid4().hex[:8]
    view, state, group = "bench.view.%s" % run, "bench.view.state.%s" % run, "bench-%s" % run
    if not args.reuse:
        jh.create_topics(bootstrap, {t: args.partitions for t in topics.values()})

    print("machine: %d CPUs, load average %.2f %.2f %.2f" % ((os.cpu_count(),) + os.getloadavg()))
    print("input: %d events (+20%% of fire and traffic sent twice) over %d blocks, %d partitions"
          % (args.events, args.blocks, args.partitions))
    events = jh.make_events(depts, args.events, seed=7, blocks=names, span_ms=86400000)
    sent = jh.with_copies(events, 0.2, seed=8)
    t = time.monotonic()
    if not args.reuse:
        jh.produce(bootstrap, topics, depts, sent)
        print("produced %d records in %.1f s" % (len(sent), time.monotonic() - t))

    broker = broker_pid(bootstrap)
    b0 = proc_cpu(broker) if broker else 0
    w0 = time.monotonic()
    out = subprocess.run([consume, bootstrap, *topics.values()], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip()
    print(out)
    if broker:
        print("ceiling: the broker (same machine) used %.2f s CPU in those %.2f s"
              % (proc_cpu(broker) - b0, time.monotonic() - w0))

    port = free_port()
    cfg = os.path.join(tmp, "blockhub.yaml")
    lines = ["log:", "  level: info", "kafka:", "  brokers: %s" % bootstrap,
             "  partitions: %d" % args.partitions, "  replication: 1",
             "blocks:", "  map: %s" % blocks_path, "schemas:", "  dir: %s" % schemas,
             "dead_letter:", "  topic: bench.dlq.%s" % run, "adapters: []",
             "join:", "  enabled: true", "  group: %s" % group, "  view_topic: %s" % view,
             "  state_topic: %s" % state, "  window: 1h",
             "  commit_interval: %s" % args.commit_interval, "  inputs:"]
    for d in depts:
        first = True
        for k, v in d.input_conf(topics[d.name]).items():
            lines.append("%s%s: %s" % ("    - " if first else "      ", k,
                                       json.dumps(v, ensure_ascii=False)))
            first = False
    lines += ["admin:", "  listen: 127.0.0.1:%d" % port]
    with open(cfg, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    log = open(os.path.join(tmp, "blockhub.log"), "wb")
    proc = subprocess.Popen([blockhub, "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
    perf = None
    if args.perf:
        perf = subprocess.Popen(["perf", "record", "--call-graph", "dwarf,16384", "-F", "499", "-o", args.perf, "-p", str(proc.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d/join" % port
    total = len(sent)
    t0 = c0 = None
    status = None
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                status = requests.get(url, timeout=5).json()
            except requests.RequestException:
                time.sleep(0.05)
                continue
            consumed = status["stats"]["consumed"]
            if t0 is None and consumed > 0:
                t0, c0, n0 = time.monotonic(), proc_cpu(proc.pid), consumed
                bj0 = proc_cpu(broker) if broker else 0
            if consumed >= total:
                t1, c1 = time.monotonic(), proc_cpu(proc.pid)
                bj1 = proc_cpu(broker) if broker else 0
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the join did not read everything: %r" % status)
        while not jh.consumed_up_to_end(bootstrap, group, topics.values()):
            time.sleep(0.05)
        t2, c2 = time.monotonic(), proc_cpu(proc.pid)
        status = requests.get(url, timeout=5).json()
    finally:
        if perf is not None:
            perf.send_signal(2)
            perf.wait(60)
        proc.terminate()
        proc.wait(60)
        log.close()
    n = total - n0
    if n == 0:
        raise SystemExit("the join read all %d records before the first look at it: too few "
                         "events to time (give more)" % total)
    st, s = status["stats"], status["state"]
    print("join: %d records in %.2f s wall, %.2f s CPU: %.0f records/s, %.2f CPU-s per million"
          % (n, t1 - t0, c1 - c0, n / (t1 - t0), (c1 - c0) / (n / 1e6)))
    if broker:
        print("join: the broker (same machine) used %.2f s CPU in those %.2f s" % (bj1 - bj0, t1 - t0))
    print("join: last commit %.2f s after the last record read; all: %.2f s CPU per million "
          "input records" % (t2 - t1, (c2 - c0) / (n / 1e6)))
    print("join: %d counted, %d duplicates; %d views and %d changelog records in %d commits "
          "(commit %.1f ms last, %.1f ms max)"
          % (st["counted"], st["duplicates"], st["views"], st["changelog_records"],
             st["commits"], st["commit_ms_last"], st["commit_ms_max"]))
    print("state: %d blocks, %d remembered event ids, %d windowed event times, %.1f MB: "
          "%.0f bytes per block, %.1f bytes of dedup table per remembered event id"
          % (s["blocks"], s["remembered_events"], s["windowed_events"], s["bytes"] / 1e6,
             s["bytes_per_block"], s["dedup_bytes_per_remembered_event"]))
    assert st["counted"] == len(events) and st["duplicates"] == total - len(events)
    from confluent_kafka.admin import AdminClient
    a = AdminClient({"bootstrap.servers": bootstrap})
    drop = [view, state, "bench.dlq.%s" % run] + ([] if args.keep else list(topics.values()))
    if args.keep:
        print("input topics kept: --reuse %s" % tag)
    if drop:
        for f in a.delete_topics(drop).values():
            try:
                f.result(60)
            except Exception:
                pass
    print("log: %s" % os.path.join(tmp, "blockhub.log"))


if __name__ == "__main__":
    main()
