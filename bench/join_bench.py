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
   it reports and its peak RSS. Once per join.state_store of --stores (memory, then disk by
   default), --rounds times alternating, each on fresh output topics and a fresh group: the
   ratio of the disk store's throughput to the memory store's is printed at the end. Every
   run's throughput is also put against the ceiling of the same run (join / ceiling, and
   their median per store), with the views and changelog records a commit wrote.
4. Watches and rules (issue 11): a store written STORE+watches (e.g. --stores
   memory,memory+watches) runs the same join with --watches N watches (all but 100 on an event
   id of the input, each firing once; 100 on blocks for the market's events) and --rules N
   rules (half pair rules of a market type and a traffic type within 10 minutes, half spike
   rules of more than 10 fire events of a type within 10 minutes); the alerts fired are counted, and
   the throughput is put against the same store's without them.
"""
import argparse
import json
import os
import re
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


def block_map(tmp, blocks):
    """A generated map of BLOCKS blocks in TMP (bench/gen_blocks.py): its path, and block id ->
    name."""
    path = os.path.join(tmp, "blocks.geojson")
    subprocess.run([sys.executable, os.path.join(HERE, "gen_blocks.py"), str(blocks), path],
                   check=True)
    with open(path, encoding="utf-8") as f:
        return path, {ft["properties"]["block_id"]: ft["properties"]["name"]
                      for ft in json.load(f)["features"]}


def delete_topics(bootstrap, names):
    """Deletes NAMES (those that do not exist are no error)."""
    from confluent_kafka.admin import AdminClient
    for f in AdminClient({"bootstrap.servers": bootstrap}).delete_topics(list(names)).values():
        try:
            f.result(60)
        except Exception:
            pass


def alert_config(events, names, depts, watches, rules):
    """The join config lines of WATCHES watches (all but 100 on an event id of EVENTS, each
    firing once; 100 on blocks of NAMES for the market's events) and RULES rules (half pair
    rules of a market type and a traffic type within 10 minutes, half spike rules of more than
    10 fire events of a type within 10 minutes), and the alerts the watches must fire."""
    rnd_ = __import__("random").Random(9)
    watch_ids = [e[1] for e in rnd_.sample(events, max(0, watches - 100))]
    watch_blocks = rnd_.sample(sorted(names), min(100, len(names)))
    lines = ["  watches:"]
    for i, eid in enumerate(watch_ids):
        lines += ["    - name: id-%d" % i, "      type: field",
                  "      field: %s" % ("record_id" if eid.startswith("MA") else "event_id"),
                  "      equals: %s" % json.dumps(eid)]
    for i, b in enumerate(watch_blocks):
        lines += ["    - name: block-%d" % i, "      type: blocks",
                  "      blocks: [%s]" % json.dumps(b), "      department: market"]
    watched = set(watch_blocks)
    expected = len(watch_ids) + sum(1 for e in events if e[0] == "market" and e[2] in watched)
    if rules > 0:
        ttypes = next(d for d in depts if d.name == "traffic").types
        ftypes = next(d for d in depts if d.name == "fire").types
        lines += ["  rules:"]
        for i in range(rules):
            if i % 2 == 0:
                lines += [
                    "    - name: pair-%d" % i, "      type: pair", "      a_department: market",
                    "      a_types: [%s]" % json.dumps(jh.MARKET_TYPES[i // 2 % 7],
                                                       ensure_ascii=False),
                    "      b_department: traffic",
                    "      b_types: [%s]" % ttypes[(i // 2 // 7) % len(ttypes)],
                    "      within: 10m"]
            else:
                lines += [
                    "    - name: spike-%d" % i, "      type: spike", "      department: fire",
                    "      types: [%s]" % ftypes[i // 2 % len(ftypes)], "      more_than: 10",
                    "      within: 10m"]
    return lines, expected


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
    ap.add_argument("--perf", metavar="FILE", help="perf record the join into FILE.STORE")
    ap.add_argument("--stores", default="memory,disk",
                    help="join.state_store of each run, in order (default: memory,disk)")
    ap.add_argument("--rounds", type=int, default=1, help="runs of every store, alternating")
    ap.add_argument("--memory-limit", default="256MiB", help="join.memory_limit")
    ap.add_argument("--watches", type=int, default=10000,
                    help="watches of a STORE+watches run (default 10000)")
    ap.add_argument("--rules", type=int, default=0,
                    help="rules of a STORE+watches run (default 0; the issue's figure: 100)")
    args = ap.parse_args()
    bootstrap = args.bootstrap
    blockhub = os.path.join(args.build, "blockhub")
    consume = os.path.join(args.build, "bench", "bench_join_consume")
    if not os.path.exists(consume):
        consume = os.path.join(args.build, "bench_join_consume")

    tmp = tempfile.mkdtemp(prefix="blockhub-join-bench.")
    tag = args.reuse or uuid.uuid4().hex[:8]
    blocks_path, names = block_map(tmp, args.blocks)
    schemas = jh.schema_dir(tmp)
    depts = [jh.Department(d, schemas) for d in jh.DEPTS]
    topics = {d: "bench.dept.%s.%s" % (d, tag) for d in jh.DEPTS}
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
    m = re.search(r"([0-9.]+) records/s", out)
    args.ceiling = float(m.group(1)) if m else None
    if broker:
        print("ceiling: the broker (same machine) used %.2f s CPU in those %.2f s"
              % (proc_cpu(broker) - b0, time.monotonic() - w0))

    args.watch_lines, args.watch_alerts = alert_config(events, names, depts, args.watches,
                                                       args.rules)
    results = {}
    for rnd in range(args.rounds):
        for store in args.stores.split(","):
            r = run_join(args, store, "%d" % rnd, tmp, bootstrap, blockhub, blocks_path, schemas,
                         depts, topics, len(sent), len(events), broker)
            results.setdefault(store, []).append(r)
    print()
    for store, rs in results.items():
        print("%-6s records/s: %s; CPU-s per million: %s; peak RSS MiB: %s"
              % (store, ", ".join("%.0f" % r["rate"] for r in rs),
                 ", ".join("%.2f" % r["cpu_per_m"] for r in rs),
                 ", ".join("%.1f" % r["rss_mib"] for r in rs)))
        if args.ceiling:
            ratios = [r["rate"] / args.ceiling for r in rs]
            v = sorted(ratios)
            mid = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
            print("%-6s / ceiling (%.0f records/s, same run): %s; median %.3f"
                  % (store, args.ceiling, ", ".join("%.3f" % x for x in ratios), mid))
    if "memory" in results and "disk" in results:
        mem = sorted(r["rate"] for r in results["memory"])
        disk = sorted(r["rate"] for r in results["disk"])
        med = lambda v: v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
        print("disk / memory throughput (medians): %.2f" % (med(disk) / med(mem)))
        for i, (m, d) in enumerate(zip(results["memory"], results["disk"])):
            print("  round %d: %.2f" % (i, d["rate"] / m["rate"]))
    for store in [k for k in results if k.endswith("+watches")]:
        base = store.split("+")[0]
        if base in results:
            med = lambda v: sorted(v)[len(v) // 2]
            print("%s / %s throughput (medians): %.2f, with %d watches, %d rules and %d alerts "
                  "a run" % (store, base, med([r["rate"] for r in results[store]]) /
                             med([r["rate"] for r in results[base]]), args.watches, args.rules,
                             results[store][0]["alerts"]))
    if args.keep:
        print("input topics kept: --reuse %s" % tag)
    else:
        delete_topics(bootstrap, topics.values())


def peak_rss_mib(pid):
    """VmHWM of PID in MiB (the most resident memory so far)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_config(args, store, label, tmp, bootstrap, blocks_path, schemas, depts, topics, run):
    """A join-only config of run RUN with STORE (STORE+watches: with args.watch_lines, alerts
    on bench.alerts.RUN, the rules' state on bench.rules.RUN); returns (path, admin port, view
    topic, state topic, group)."""
    view, state, group = "bench.view.%s" % run, "bench.view.state.%s" % run, "bench-%s" % run
    port = free_port()
    cfg = os.path.join(tmp, "blockhub-%s-%s.yaml" % (store, label))
    lines = ["log:", "  level: info", "kafka:", "  brokers: %s" % bootstrap,
             "  partitions: %d" % args.partitions, "  replication: 1",
             "blocks:", "  map: %s" % blocks_path, "schemas:", "  dir: %s" % schemas,
             "dead_letter:", "  topic: bench.dlq.%s" % run, "adapters: []",
             "join:", "  enabled: true", "  group: %s" % group, "  view_topic: %s" % view,
             "  state_topic: %s" % state, "  window: 1h",
             "  commit_interval: %s" % args.commit_interval,
             "  state_store: %s" % store.split("+")[0],
             "  state_dir: %s" % os.path.join(tmp, "state-%s" % run),
             "  memory_limit: %s" % args.memory_limit, "  inputs:"]
    for d in depts:
        first = True
        for k, v in d.input_conf(topics[d.name]).items():
            lines.append("%s%s: %s" % ("    - " if first else "      ", k,
                                       json.dumps(v, ensure_ascii=False)))
            first = False
    if store.endswith("+watches"):  # alerts and the rules' state: topics of this run's own
        lines += ["  alerts_topic: bench.alerts.%s" % run, "  rules_topic: bench.rules.%s" % run]
        lines += args.watch_lines
    lines += ["admin:", "  listen: 127.0.0.1:%d" % port]
    with open(cfg, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return cfg, port, view, state, group


def run_join(args, store, label, tmp, bootstrap, blockhub, blocks_path, schemas, depts, topics,
             total, distinct, broker):
    """One blockhub process joining every input record from the beginning with STORE."""
    run = uuid.uuid4().hex[:8]
    cfg, port, view, state, group = write_config(args, store, label, tmp, bootstrap, blocks_path,
                                                  schemas, depts, topics, run)
    logpath = os.path.join(tmp, "blockhub-%s-%s.log" % (store, label))
    log = open(logpath, "wb")
    proc = subprocess.Popen([blockhub, "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
    pid = proc.pid
    perf = None
    if args.perf:
        perf = subprocess.Popen(["perf", "record", "--call-graph", "dwarf,8192", "-F", "299",
                                 "-o", args.perf + "." + store + label, "-p", str(pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d/join" % port
    t0 = c0 = None
    status = None
    rss = 0.0
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            try:
                status = requests.get(url, timeout=5).json()
            except requests.RequestException:
                time.sleep(0.05)
                continue
            consumed = status["stats"]["consumed"]
            if t0 is None and consumed > 0:
                t0, c0, n0 = time.monotonic(), proc_cpu(pid), consumed
                bj0 = proc_cpu(broker) if broker else 0
            if consumed >= total:
                t1, c1 = time.monotonic(), proc_cpu(pid)
                bj1 = proc_cpu(broker) if broker else 0
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the join did not read everything: %r" % status)
        while not jh.consumed_up_to_end(bootstrap, group, topics.values()):
            time.sleep(0.05)
        t2, c2 = time.monotonic(), proc_cpu(pid)
        status = requests.get(url, timeout=5).json()
        rss = peak_rss_mib(pid)
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
    print("join (%s store, round %s): %d records in %.2f s wall, %.2f s CPU: %.0f records/s, "
          "%.2f CPU-s per million" % (store, label, n, t1 - t0, c1 - c0, n / (t1 - t0),
                                      (c1 - c0) / (n / 1e6)))
    if broker:
        print("  the broker (same machine) used %.2f s CPU in those %.2f s"
              % (bj1 - bj0, t1 - t0))
    print("  last commit %.2f s after the last record read; all: %.2f s CPU per million input "
          "records" % (t2 - t1, (c2 - c0) / (n / 1e6)))
    print("  %d counted, %d duplicates; %d views and %d changelog records in %d commits "
          "(commit %.1f ms last, %.1f ms max; store write %.1f ms max)"
          % (st["counted"], st["duplicates"], st["views"], st["changelog_records"],
             st["commits"], st["commit_ms_last"], st["commit_ms_max"], st["store_write_ms_max"]))
    commits = max(st["commits"], 1)
    print("  a commit: %.0f views, %.0f changelog records (%.2f a view)"
          % (st["views"] / commits, st["changelog_records"] / commits,
             st["changelog_records"] / max(st["views"], 1)))
    if getattr(args, "ceiling", None):
        print("  join / ceiling (same run): %.3f" % (n / (t1 - t0) / args.ceiling))
    print("  state: %d blocks, %d windowed event times, %.1f MB of blocks (%.0f bytes per block); "
          "store %s: %r; peak RSS %.1f MiB"
          % (s["blocks"], s["windowed_events"], s["bytes"] / 1e6, s["bytes_per_block"],
             s["store"]["kind"], s["store"], rss))
    assert st["counted"] == distinct and st["duplicates"] == total - distinct
    if store.endswith("+watches"):
        print("  alerts: %d (%d from watches expected), %.0f a second of the run"
              % (st["alerts"], args.watch_alerts, st["alerts"] / (t2 - t0)))
        if args.rules == 0:
            assert st["alerts"] == args.watch_alerts, (st["alerts"], args.watch_alerts)
        else:
            assert st["alerts"] >= args.watch_alerts, (st["alerts"], args.watch_alerts)
    delete_topics(bootstrap, [view, state, "bench.dlq.%s" % run, "bench.alerts.%s" % run,
                              "bench.rules.%s" % run])
    print("  log: %s" % logpath)
    return {"rate": n / (t1 - t0), "cpu_per_m": (c1 - c0) / (n / 1e6), "rss_mib": rss,
            "alerts": st.get("alerts", 0)}


if __name__ == "__main__":
    main()
