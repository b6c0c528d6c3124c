#!/usr/bin/env python3
"""The join with many remembered ids, killed and restarted (bench/run-join-restore.sh runs it).

1. One input topic (P partitions) on the broker BH_KAFKA_BOOTSTRAP gets IDS distinct events
   (bench_join_feed: ids EV-0..., 7 types, over BLOCKS blocks, 300 days of event time), read as
   the traffic department by one blockhub process with the join only (join.state_store: disk,
   join.memory_limit as given). Timed until every record is consumed and committed; then its
   RSS and what GET /join says of the state and the store.
2. 300,000 more events, kill -9 halfway through them, and a start on the same state_dir: the
   time until every partition is live again (resumed from the local checkpoint, replaying only
   the changelog after it).
3. Exactness: copies of a million old events and 100,000 new ones; the join must count only
   the new ones, and every block's view (GET /blocks/{id}) must equal the truth bench_join_feed
   computes for the distinct events.
4. kill -9, the state_dir deleted (a lost disk), a start: the time until every partition is live
   again (rebuilt from the whole changelog); exactness again with other copies and new events.
5. With --memory-rss: the same IDS events read by a process with join.state_store: memory, for
   its RSS.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("BH_SOURCE_DIR", ROOT)

import fastavro  # noqa: E402
import requests  # noqa: E402

import join_helpers as jh  # noqa: E402
from conftest import free_port  # noqa: E402

BASE = 1767225600000  # 2026-01-01T00:00:00Z
EVENT_SCHEMA = {"type": "record", "name": "Event", "namespace": "blockhub.bench", "fields": [
    {"name": "event_id", "type": "string"}, {"name": "type", "type": "string"},
    {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}


def status_of(proc_pid):
    out = {}
    with open("/proc/%d/status" % proc_pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) / 1024
    return out


class Join:
    def __init__(self, args, tmp, store, name):
        self.args, self.tmp, self.name = args, tmp, name
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.state_dir = os.path.join(tmp, "state-" + name)
        self.cfg = os.path.join(tmp, "blockhub-%s.yaml" % name)
        self.logpath = os.path.join(tmp, "blockhub-%s.log" % name)
        run = uuid.uuid4().hex[:8]
        self.group = "bench-restore-%s" % run
        self.view, self.state = "bench.restore.view.%s" % run, "bench.restore.state.%s" % run
        lines = ["log:", "  level: info", "kafka:", "  brokers: %s" % args.bootstrap,
                 "  partitions: %d" % args.partitions, "  replication: 1"]
        if args.kafka_prop:
            lines.append("  properties:")
            lines += ["    %s: %s" % tuple(json.dumps(x) for x in kv.split("=", 1))
                      for kv in args.kafka_prop]
        lines += ["blocks:", "  map: %s" % os.path.join(jh.WORLD, "blocks.geojson"),
                 "schemas:", "  dir: %s" % args.schemas,
                 "dead_letter:", "  topic: bench.restore.dlq.%s" % run, "adapters: []",
                 "join:", "  enabled: true", "  group: %s" % self.group,
                 "  view_topic: %s" % self.view, "  state_topic: %s" % self.state,
                 "  window: %s" % args.window, "  commit_interval: %s" % args.commit_interval,
                 "  state_store: %s" % store, "  state_dir: %s" % self.state_dir,
                 "  memory_limit: %s" % args.memory_limit, "  instance_id: %s" % name,
                 "  inputs:",
                 "    - {name: traffic, type: avro, topic: %s, type_field: type, "
                 "id_field: event_id, time_field: occurred_at}" % args.topic,
                 "admin:", "  listen: 127.0.0.1:%d" % self.port]
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.log = open(self.logpath, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([self.args.blockhub, "--config", self.cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def status(self):
        return requests.get(self.url + "/join", timeout=30).json()

    def wait_live(self, timeout=3600):
        """Seconds from the start until every partition is live."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("blockhub exited %d; see %s" % (self.proc.returncode,
                                                                 self.logpath))
            try:
                s = self.status()
                if not s["restoring"] and len(s["live"]) == self.args.partitions:
                    return time.monotonic() - self.started
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise SystemExit("not live in %d s" % timeout)

    def wait_consumed(self, n, timeout=7200):
        """Until this process consumed N records and the group committed them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.status()
            if s["stats"]["consumed"] >= n:
                break
            time.sleep(0.5)
        else:
            raise SystemExit("consumed %d of %d" % (s["stats"]["consumed"], n))
        while not jh.consumed_up_to_end(self.args.bootstrap, self.group, [self.args.topic]):
            time.sleep(0.2)
        return self.status()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(300)
        self.log.close()

    def restored_lines(self):
        with open(self.logpath, errors="replace") as f:
            text = f.read()
        text = text[text.rfind(" schemas from "):]
        return [line.split("join: ", 1)[1] for line in text.splitlines() if " restored: " in line]


def feed(args, first, count):
    subprocess.run([args.feed, "produce", args.bootstrap, args.topic, "%016x" % args.fp,
                    str(args.blocks), str(BASE), str(args.step), str(first), str(count)],
                   check=True)


def check_copies(args, join, first, copies, new_first, new):
    """COPIES old events and NEW new ones: only the new ones counted."""
    join.wait_consumed(0)  # what is there already, committed
    before = join.status()["stats"]
    feed(args, first, copies)
    feed(args, new_first, new)
    after = join.wait_consumed(before["consumed"] + copies + new)["stats"]
    counted = after["counted"] - before["counted"]
    dups = after["duplicates"] - before["duplicates"]
    print("  then %d copies and %d new events: %d counted, %d duplicates"
          % (copies, new, counted, dups))
    assert counted == new and dups == copies, (before, after)


def check_views(args, join, ranges):
    """Every block's view (GET /blocks/{id}) against bench_join_feed's truth of RANGES."""
    out = os.path.join(join.tmp, "truth.txt")
    cmd = [args.feed, "truth", out, str(args.blocks), str(BASE), str(args.step),
           str(args.window_ms)]
    for first, count in ranges:
        cmd += [str(first), str(count)]
    subprocess.run(cmd, check=True)
    sess = requests.Session()
    bad, n = [], 0
    with open(out) as f:
        for line in f:
            v = line.split()
            block, total, types, window, last_id, last_at = (v[0], int(v[1]), v[2:9], int(v[9]),
                                                            v[10], int(v[11]))
            r = sess.get(join.url + "/blocks/" + block, timeout=30)
            got = r.json()["traffic"]
            want = {"total": total, "window_total": window, "last_event_id": last_id,
                    "last_event_at": last_at,
                    "by_type": {"t%d" % k: int(c) for k, c in enumerate(types) if int(c) > 0}}
            if {k: got[k] for k in want} != want:
                bad.append((block, got, want))
            n += 1
    if bad:
        raise SystemExit("%d of %d views differ from the truth; first: %r" % (len(bad), n, bad[0]))
    print("  views: all %d blocks equal the truth" % n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--ids", type=int, default=20000000)
    ap.add_argument("--blocks", type=int, default=20000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--memory-limit", default="256MiB")
    ap.add_argument("--commit-interval", default="2s")
    ap.add_argument("--window", default="1h")
    ap.add_argument("--memory-rss", action="store_true",
                    help="also read the events with the memory store, for its RSS")
    ap.add_argument("--kafka-prop", action="append", default=[], metavar="NAME=VALUE",
                    help="a kafka.properties entry (e.g. queued.min.messages=20000: the consumer's "
                         "read-ahead, which is most of the RSS beside the state)")
    ap.add_argument("--keep", action="store_true", help="keep the input topic (print its name)")
    ap.add_argument("--reuse", metavar="TOPIC", help="an input topic kept by an earlier --keep")
    args = ap.parse_args()
    args.bootstrap = os.environ.get("BH_KAFKA_BOOTSTRAP", "127.0.0.1:39092")
    args.blockhub = os.path.join(args.build, "blockhub")
    args.feed = os.path.join(args.build, "bench", "bench_join_feed")
    args.window_ms = 3600 * 1000 if args.window == "1h" else int(args.window)
    args.step = 300 * 86400000 // (args.ids + 600000)  # 300 days of event time, all included
    tmp = tempfile.mkdtemp(prefix="blockhub-join-restore.")
    args.schemas = jh.schema_dir(tmp)
    with open(os.path.join(args.schemas, "bench_event.avsc"), "w") as f:
        json.dump(EVENT_SCHEMA, f)
    args.fp = jh.fingerprint(fastavro.parse_schema(EVENT_SCHEMA))
    args.topic = args.reuse or "bench.restore.in.%s" % uuid.uuid4().hex[:8]
    print("machine: %d CPUs, load average %.2f %.2f %.2f" % ((os.cpu_count(),) + os.getloadavg()))
    print("%d events over %d blocks, %d partitions, memory_limit %s, commit_interval %s%s"
          % (args.ids, args.blocks, args.partitions, args.memory_limit, args.commit_interval,
             "".join(", " + kv for kv in args.kafka_prop)))
    if not args.reuse:
        jh.create_topics(args.bootstrap, {args.topic: args.partitions})
        feed(args, 0, args.ids)

    j = Join(args, tmp, "disk", "disk")
    j.start()
    j.wait_live()
    t0 = time.monotonic()
    s = j.wait_consumed(args.ids)
    took = time.monotonic() - t0
    rss = status_of(j.proc.pid)
    st = s["stats"]
    print("ingest: %d events in %.1f s (%.0f/s); %d counted, %d commits, %d store flushes"
          % (args.ids, took, args.ids / took, st["counted"], st["commits"], st["store_writes"]))
    print("  RSS %.0f MiB (anonymous %.0f, file %.0f), peak %.0f MiB; state %s"
          % (rss["VmRSS"], rss["RssAnon"], rss["RssFile"], rss["VmHWM"], json.dumps(s["state"])))
    assert st["counted"] == args.ids, st

    # more input, and kill -9 in the middle of it; start again on the same disk
    more = 300000
    feed(args, args.ids, more)
    while j.status()["stats"]["consumed"] < args.ids + more // 2:
        time.sleep(0.05)
    j.kill9()
    j.start()
    resume = j.wait_live()
    rss2 = status_of(j.proc.pid)
    print("kill -9 while consuming, then resume from the local checkpoint: %.2f s until every "
          "partition is live; RSS %.0f MiB" % (resume, rss2["VmRSS"]))
    replayed = j.restored_lines()
    for line in replayed:
        print("  " + line)
    top = args.ids + more
    copies = min(1000000, args.ids // 2)
    check_copies(args, j, 0, copies, top, 100000)
    top += 100000
    check_views(args, j, [(0, top)])

    # kill -9, and a lost disk
    j.kill9()
    shutil.rmtree(j.state_dir)
    j.start()
    rebuild = j.wait_live()
    rss3 = status_of(j.proc.pid)
    print("kill -9 and an empty disk, rebuild from the changelog: %.2f s until every partition "
          "is live; RSS %.0f MiB, peak %.0f MiB" % (rebuild, rss3["VmRSS"], rss3["VmHWM"]))
    for line in j.restored_lines():
        print("  " + line)
    check_copies(args, j, args.ids // 2, copies, top, 100000)
    top += 100000
    check_views(args, j, [(0, top)])
    j.stop()
    print("resume / rebuild time: %.3f" % (resume / rebuild))

    if args.memory_rss:
        m = Join(args, tmp, "memory", "memory")
        m.start()
        m.wait_live()
        t0 = time.monotonic()
        total = top + 2 * copies
        s = m.wait_consumed(total)
        took = time.monotonic() - t0
        rss = status_of(m.proc.pid)
        print("memory store: %d events in %.1f s; RSS %.0f MiB (anonymous %.0f), peak %.0f MiB; "
              "store %s" % (total, took, rss["VmRSS"], rss["RssAnon"], rss["VmHWM"],
                            json.dumps(s["state"]["store"])))
        m.stop()

    from confluent_kafka.admin import AdminClient
    a = AdminClient({"bootstrap.servers": args.bootstrap})
    drop = [j.view, j.state] + ([] if args.keep else [args.topic])
    if args.memory_rss:
        drop += [m.view, m.state]
    for f in a.delete_topics(drop).values():
        try:
            f.result(60)
        except Exception:
            pass
    if args.keep:
        print("input topic kept: --reuse %s" % args.topic)
    print("logs and state: %s" % tmp)


if __name__ == "__main__":
    main()
