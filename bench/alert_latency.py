#!/usr/bin/env python3
"""The alerts benchmark (bench/run-alert-latency.sh runs it; see there for the usage).

Two joins side by side in each round, on the same input: WATCHES (--watches watches, no rules)
and RULES (the same watches and --rules rules), each a blockhub process with the join only.

1. Full rate: each reads a backlog of --events events from the beginning (bench/join_bench.py's
   run_join): its records/s. The cost of the rules is RULES' rate over WATCHES'.
2. Latency: each joins a live input, produced at a fraction of RULES' full rate of the same
   round (--fractions, default 0.5 and 0.9: the same input rate for both joins) into topics of
   its own, while a read_committed consumer reads the alerts topic. The latency of an alert is
   the time it was read (committed and fetched) minus the time the producer handed over the
   event that completed it (same clock): p50, p99 and max, and alerts per second of the input.
   The producer sends records it encoded beforehand, in 1 ms slices of the rate; the rate it
   achieved is printed beside the one asked for.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
os.environ.setdefault("BH_SOURCE_DIR", ROOT)

import requests  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

import bhcat  # noqa: E402
import join_bench as jb  # noqa: E402
import join_helpers as jh  # noqa: E402


def pct(v, q):
    """The Q quantile (0..1) of sorted V, nearest rank."""
    if not v:
        return float("nan")
    return v[min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))]


def med(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


class AlertReader(threading.Thread):
    """Reads TOPIC read_committed from its beginning, noting when each record arrived."""

    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True)
        self.topic = topic
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "lat-%s" % uuid.uuid4().hex,
                           "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                           "enable.auto.commit": False, "fetch.wait.max.ms": 5,
                           "fetch.error.backoff.ms": 5})
        self.got = []  # (arrival time, value)
        self.stop = False

    def run(self):
        self.c.subscribe([self.topic])
        while not self.stop:
            m = self.c.poll(0.05)
            if m is None or m.error():
                continue
            self.got.append((time.time(), m.value()))

def live_run(args, conf_name, watch_lines, rate, label, tmp, bootstrap, blockhub, blocks_path,
             schemas, depts, events, decoder):
    """One join with WATCH_LINES on fresh topics fed EVENTS live at RATE events/s."""
    run = uuid.uuid4().hex[:8]
    topics = {d.name: "bench.live.%s.%s" % (d.name, run) for d in depts}
    alerts = "bench.alerts.%s" % run
    jh.create_topics(bootstrap, {t: args.partitions for t in topics.values()})
    jh.create_topics(bootstrap, {alerts: args.partitions})  # write_config's name for it
    a = argparse.Namespace(**vars(args))
    a.watch_lines = watch_lines
    cfg, port, view, state, group = jb.write_config(a, "memory+watches", "live-%s-%s" % (
        conf_name, label), tmp, bootstrap, blocks_path, schemas, depts, topics, run)
    # encoded before the clock starts: the producer only hands records over
    by = {d.name: d for d in depts}
    recs = [(topics[e[0]], e[2].encode(), by[e[0]].encode(by[e[0]].record(e[1], e[2], e[3], e[4])),
             e[1]) for e in events]
    index = {e[1]: i for i, e in enumerate(events)}
    sent_at = [0.0] * len(recs)
    logpath = os.path.join(tmp, "blockhub-live-%s-%s.log" % (conf_name, label))
    log = open(logpath, "wb")
    proc = subprocess.Popen([blockhub, "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
    reader = AlertReader(bootstrap, alerts)
    url = "http://127.0.0.1:%d/join" % port
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "the join exited %d (log %s)" % (proc.returncode, logpath)
            assert time.monotonic() < deadline, "the join did not go live (log %s)" % logpath
            try:
                s = requests.get(url, timeout=5).json()
                if not s["restoring"] and len(s["live"]) == args.partitions:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        reader.start()
        perf = None
        if args.live_perf:
            perf = subprocess.Popen(["perf", "record", "-g", "-F", "499", "-o", "%s.%s.%s" % (
                args.live_perf, conf_name, label), "-p", str(proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                      "linger.ms": 1, "acks": "all", "enable.idempotence": True,
                      "queue.buffering.max.messages": 2000000})
        c0 = jb.proc_cpu(proc.pid)
        start = time.time()
        i, n = 0, len(recs)
        while i < n:
            now = time.time()
            due = min(n, int((now - start) * rate) + 1)
            while i < due:
                t, k, v, eid = recs[i]
                sent_at[i] = time.time()
                p.produce(t, key=k, value=v, headers=[("blockhub.event_id", eid.encode())])
                i += 1
            p.poll(0)
            ahead = start + i / rate - time.time()
            if ahead > 0:
                time.sleep(min(ahead, 0.001))
        sent_s = time.time() - start
        assert p.flush(120) == 0
        while not jh.consumed_up_to_end(bootstrap, group, topics.values()):
            assert proc.poll() is None, "the join exited (log %s)" % logpath
            time.sleep(0.05)
        cpu = jb.proc_cpu(proc.pid) - c0
        if perf is not None:
            perf.send_signal(2)
            perf.wait(60)
        st = requests.get(url, timeout=5).json()["stats"]
        # every alert is committed with the input it came from: read them all
        deadline = time.monotonic() + 60
        while len(reader.got) < st["alerts"]:
            assert time.monotonic() < deadline, "%d of the join's %d alerts read" % (
                len(reader.got), st["alerts"])
            time.sleep(0.05)
    finally:
        reader.stop = True
        proc.terminate()
        proc.wait(60)
        log.close()
    reader.join(10)
    reader.c.close()
    lat, seen, commit = [], [], []  # all; until the join applied it; from then to read
    for t, value in reader.got:
        _, rec = decoder.decode(value)
        sent = sent_at[index[rec["events"][-1]["event_id"]]]
        det = rec["detected_at"]
        det = det.timestamp() if hasattr(det, "timestamp") else det / 1000.0
        lat.append((t - sent) * 1000)
        seen.append((det - sent) * 1000)
        commit.append((t - det) * 1000)
    lat.sort()
    seen.sort()
    commit.sort()
    r = {"conf": conf_name, "rate": rate, "achieved": n / sent_s, "alerts": len(lat),
         "alerts_per_s": len(lat) / sent_s, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
         "max": lat[-1] if lat else float("nan"), "cpu_per_m": cpu / (n / 1e6),
         "counted": st["counted"], "seen_p50": pct(seen, 0.5), "seen_p99": pct(seen, 0.99),
         "commit_p50": pct(commit, 0.5), "commit_p99": pct(commit, 0.99),
         "commits": st["commits"], "commit_ms_max": st["commit_ms_max"]}
    print("live %-7s at %6.0f events/s (achieved %6.0f): %5d alerts, %6.0f a second; latency "
          "p50 %.1f ms, p99 %.1f ms, max %.1f ms; join %.2f CPU-s per million; log %s"
          % (conf_name, rate, r["achieved"], r["alerts"], r["alerts_per_s"], r["p50"], r["p99"],
             r["max"], r["cpu_per_m"], logpath))
    print("  applied by the join p50 %.1f ms, p99 %.1f ms after it was handed over; read "
          "p50 %.1f ms, p99 %.1f ms after that; %d commits, the longest %.1f ms"
          % (r["seen_p50"], r["seen_p99"], r["commit_p50"], r["commit_p99"], r["commits"],
             r["commit_ms_max"]))
    assert st["counted"] == n and len(lat) == st["alerts"], (st["counted"], n, len(lat))
    jb.delete_topics(bootstrap, list(topics.values()) + [alerts, view, state,
                                                         "bench.dlq.%s" % run,
                                                         "bench.rules.%s" % run])
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True, help="the broker (host:port)")
    ap.add_argument("--build", required=True)
    ap.add_argument("--events", type=int, default=400000)
    ap.add_argument("--blocks", type=int, default=10000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--commit-interval", default="100ms")
    ap.add_argument("--memory-limit", default="256MiB", help="join.memory_limit")
    ap.add_argument("--watches", type=int, default=10000)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fractions", default="0.5,0.9",
                    help="live input rates, as fractions of the rules join's full rate")
    ap.add_argument("--perf", metavar="FILE",
                    help="perf record each live join into FILE.CONF.ROUND-FRACTION")
    args = ap.parse_args()
    live_perf, args.perf = args.perf, None  # the full-rate runs: not profiled
    bootstrap = args.bootstrap
    blockhub = os.path.join(args.build, "blockhub")
    tmp = tempfile.mkdtemp(prefix="blockhub-alert-bench.")
    tag = uuid.uuid4().hex[:8]
    blocks_path, names = jb.block_map(tmp, args.blocks)
    schemas = jh.schema_dir(tmp)
    decoder = bhcat.Decoder(schemas)
    depts = [jh.Department(d, schemas) for d in jh.DEPTS]
    topics = {d: "bench.dept.%s.%s" % (d, tag) for d in jh.DEPTS}
    jh.create_topics(bootstrap, {t: args.partitions for t in topics.values()})
    print("machine: %d CPUs, load average %.2f %.2f %.2f" % ((os.cpu_count(),) + os.getloadavg()))
    events = jh.make_events(depts, args.events, seed=7, blocks=names, span_ms=86400000)
    jh.produce(bootstrap, topics, depts, events)
    print("input: %d events over %d blocks, %d partitions; %d watches; %d rules"
          % (len(events), args.blocks, args.partitions, args.watches, args.rules))
    broker = jb.broker_pid(bootstrap)
    confs = {}
    for name, nrules in (("watches", 0), ("rules", args.rules)):
        confs[name] = jb.alert_config(events, names, depts, args.watches, nrules)
    fractions = [float(x) for x in args.fractions.split(",")]
    full = {"watches": [], "rules": []}
    live = {}
    for rnd in range(args.rounds):
        for name in ("watches", "rules"):
            a = argparse.Namespace(**vars(args))
            a.watch_lines, a.watch_alerts = confs[name]
            a.rules = 0 if name == "watches" else args.rules
            r = jb.run_join(a, "memory+watches", "%s-%d" % (name, rnd), tmp, bootstrap, blockhub,
                            blocks_path, schemas, depts, topics, len(events), len(events), broker)
            full[name].append(r)
        rate_full = full["rules"][-1]["rate"]
        for f in fractions:
            for name in ("watches", "rules"):
                args.live_perf = live_perf
                r = live_run(args, name, confs[name][0], f * rate_full, "%d-%g" % (rnd, f), tmp,
                             bootstrap, blockhub, blocks_path, schemas, depts, events, decoder)
                live.setdefault((f, name), []).append(r)
    print()
    fw = med([r["rate"] for r in full["watches"]])
    fr = med([r["rate"] for r in full["rules"]])
    print("full rate (medians of %d rounds): watches %.0f records/s, rules %.0f records/s, "
          "alerts a run: watches %d, rules %d; the rules' cost: %.2f of the throughput"
          % (args.rounds, fw, fr, full["watches"][0]["alerts"], full["rules"][0]["alerts"],
             fr / fw))
    for f in fractions:
        w, r = live[(f, "watches")], live[(f, "rules")]
        print("live at %.1f of the rules join's full rate (%.0f events/s asked, %.0f achieved): "
              "alerts/s watches %.0f, rules %.0f; latency p50 watches %.1f ms, rules %.1f ms; "
              "p99 watches %.1f ms, rules %.1f ms (rules/watches p99 %.2f)"
              % (f, med([x["rate"] for x in r]), med([x["achieved"] for x in r]),
                 med([x["alerts_per_s"] for x in w]), med([x["alerts_per_s"] for x in r]),
                 med([x["p50"] for x in w]), med([x["p50"] for x in r]),
                 med([x["p99"] for x in w]), med([x["p99"] for x in r]),
                 med([x["p99"] for x in r]) / med([x["p99"] for x in w])))
    jb.delete_topics(bootstrap, topics.values())


if __name__ == "__main__":
    main()
