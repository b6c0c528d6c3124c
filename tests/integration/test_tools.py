"""The tools beside the daemon, and what its log says about Kafka.

- tools/bhcat.py reads a transactional topic to its end: the committed records,
  none of an aborted or an open transaction, and it exits 0 although the last
  offsets of the partitions are transaction markers no consumer receives.
- tools/blockhub-sim started the way a shell's `&` starts it (SIGINT ignored)
  stops cleanly on SIGINT and on SIGTERM, and its truth is what it delivered;
  killed with SIGKILL it leaves the truth of what it delivered up to its last
  rewrite.
- blockhub's log: brokers refusing or dropping connections are warnings, never
  errors, and a report repeated within the window is written once and counted.
"""
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

import fastavro
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import bhcat
from conftest import SRC, TOKEN, WORLD, deadline_after, free_port
from test_sim import FireServer, LineServer

SIM = os.path.join(SRC, "tools", "blockhub-sim")
BHCAT = os.path.join(SRC, "tools", "bhcat.py")
SCHEMAS = os.path.join(SRC, "schemas")
BLOCKS = os.path.join(WORLD, "blocks.geojson")


def wait_for(what, cond, timeout):
    deadline = deadline_after(timeout)
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("not within %g s: %s" % (timeout, what))
        time.sleep(0.05)


# --- bhcat ---------------------------------------------------------------------

def dead_letter(decoder, n):
    """A DeadLetter record as blockhub publishes it (single-object Avro)."""
    fp, parsed = decoder.by_name["blockhub.DeadLetter"]
    rec = {"adapter": "tools", "adapter_type": "fire", "reason": "invalid_json",
           "detail": "record %s" % n,
           "origin": {"transport": "http", "source": "/", "peer": None, "position": None},
           "payload": n.encode(), "payload_truncated": False, "received_at": 1790000000000}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, rec)
    return b"\xc3\x01" + struct.pack("<Q", fp) + buf.getvalue()


def test_bhcat_reads_a_transactional_topic_to_its_end(kafka, decoder):
    topic = "tools.txn." + uuid.uuid4().hex[:10]
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(60)
    p = Producer({"bootstrap.servers": kafka, "transactional.id": "tools-" + topic})
    p.init_transactions(60)
    committed = []

    def txn(records, commit):
        p.begin_transaction()
        for part, name in records:
            p.produce(topic, dead_letter(decoder, name), name.encode(), partition=part)
        if commit is None:
            p.flush(60)  # left open
        elif commit:
            p.commit_transaction(60)
            committed.extend(records)
        else:
            p.abort_transaction(60)

    txn([(0, "c1"), (1, "c2"), (0, "c3")], True)
    txn([(0, "a1"), (1, "a2")], False)
    txn([(1, "c4"), (0, "c5")], True)
    txn([(0, "a3")], False)
    # partition 0 ends with an abort marker, 1 with a commit marker, 2 is empty
    try:
        txn([(1, "open1")], None)  # an open transaction: past the last stable offset
        out = subprocess.run([sys.executable, BHCAT, "--bootstrap", kafka, "--schemas", SCHEMAS,
                              "--timeout", "15", topic], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        got = [json.loads(line) for line in out.stdout.splitlines()]
        assert [(r["partition"], r["key"]) for r in got] == sorted(
            committed, key=lambda r: (r[0], [n for _, n in committed].index(r[1])))
        assert [r["value"]["detail"] for r in got] == ["record " + r["key"] for r in got]
        assert all(r["schema"] == "blockhub.DeadLetter" for r in got)
        # the library call the tests use reads the same, the open transaction still open
        msgs = bhcat.consume_all(kafka, topic, timeout=15)
        assert [(m["partition"], m["key"].decode()) for m in msgs] == \
            [(r["partition"], r["key"]) for r in got]
    finally:
        p.abort_transaction(60)
    # once it is aborted, still exactly the committed records
    msgs = bhcat.consume_all(kafka, topic, timeout=15)
    assert sorted(m["key"].decode() for m in msgs) == sorted(n for _, n in committed)


# --- blockhub-sim ----------------------------------------------------------------

def ignore_sigint():
    """What a shell's `&` does to a background job without job control."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_sim(tmp_path, *args):
    log = open(tmp_path / "sim.out", "wb")
    proc = subprocess.Popen([sys.executable, SIM, "--blocks", BLOCKS, *map(str, args)],
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=ignore_sigint)
    log.close()
    return proc


def read_truth(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def stop_sim(proc, sig, tmp_path, timeout=20):
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("blockhub-sim ignored %s:\n%s" % (
            signal.Signals(sig).name, (tmp_path / "sim.out").read_text()))
    out = (tmp_path / "sim.out").read_text()
    assert rc == 0, out
    assert "stopped by %s" % signal.Signals(sig).name in out, out
    return out


def valid_ids(truth):
    return {d: set(v) for d, v in truth["event_ids"].items()}


def test_sim_stops_on_sigint_in_the_background_and_its_truth_is_what_kafka_got(
        kafka, hub_factory, tmp_path):
    tag = uuid.uuid4().hex[:10]
    topics = {"market": "dept.market.tools-" + tag, "traffic": "dept.traffic.tools-" + tag}
    spool = tmp_path / "spool"
    spool.mkdir()
    tport = free_port()
    hub = hub_factory(kafka, adapters=[
        {"name": "market", "type": "market", "spool_dir": str(spool), "topic": topics["market"],
         "settle_time": "0s", "rescan_interval": "200ms"},
        {"name": "traffic", "type": "traffic", "auth": "none", "listen": "127.0.0.1:%d" % tport,
         "topic": topics["traffic"]},
    ]).start()
    topics["fire"] = hub.fire_topic
    truth_path = str(tmp_path / "truth.json")
    proc = start_sim(tmp_path, "--seed", 5, "--rate", 300, "--duration", 3600,
                     "--spool", spool, "--roll-rows", 40, "--traffic", "127.0.0.1:%d" % tport,
                     "--connections", 2, "--fire", hub.url, "--fire-token", TOKEN,
                     "--fire-linger", 0.1, "--truth", truth_path, "--truth-interval", 0.2)
    try:
        # running: a rewrite of the truth has every department delivered
        wait_for("the simulator's truth shows every department delivered", lambda: (
            (t := read_truth(truth_path)) is not None and not t["final"]
            and all(t["totals"][d]["sent"] >= 20 for d in topics)), 60)
        stop_sim(proc, signal.SIGINT, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
    truth = read_truth(truth_path)
    assert truth["final"] and truth["stopped"]["signal"] == "SIGINT"
    assert truth["stats"]["error"] is None
    assert all(not v for v in truth["anomalies"].values()), truth["anomalies"]
    # a clean stop sends what it had queued: nothing is left in doubt
    assert truth["stopped"]["unconfirmed"] == {d: [] for d in topics}
    assert not [n for n in os.listdir(spool) if n.endswith(".part")]
    want = valid_ids(truth)

    def published():
        got = {}
        for dept, topic in topics.items():
            got[dept] = {m["headers"]["blockhub.event_id"].decode()
                         for m in bhcat.consume_all(kafka, topic)}
        return got if all(want[d] <= got[d] for d in topics) else None
    got = wait_for("Kafka has every event the truth lists", published, 90)
    # exactly what the simulator says it delivered, no more
    assert got == want
    assert hub.stop() == 0


def received_ids(lines, fire, spool):
    """Event ids the local sinks got: traffic per connection in order, fire answered 200, market files."""
    streams = []
    for buf in lines.conns:
        data = bytes(buf)
        ids = []
        whole = data.split(b"\n")[:-1]  # a line cut by a crash is not delivered
        for raw in whole:
            if raw and b'"heartbeat"' not in raw:
                ids.append(json.loads(raw)["event_id"])
        streams.append(ids)
    fire_ids = set()
    with fire.lock:
        reqs = list(fire.requests)
    for status, body in reqs:
        if status == 200:
            items = json.loads(body)
            fire_ids.update(it["id"] for it in (items if isinstance(items, list) else [items]))
    market_ids = set()
    for n in os.listdir(spool):
        if n.endswith(".csv"):
            text = (spool / n).read_bytes().decode("gb18030")
            market_ids.update(re.findall(r"SCJG-S\d+-\d+", text))
    return streams, fire_ids, market_ids


def test_sim_stops_on_sigterm_and_leaves_its_truth_on_sigkill(tmp_path, blocks):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        run = tmp_path / signal.Signals(sig).name
        spool = run / "spool"
        run.mkdir()
        lines = LineServer()
        fire = FireServer(blocks)
        truth_path = str(run / "truth.json")
        proc = start_sim(run, "--seed", 9, "--rate", 400, "--duration", 3600,
                         "--spool", spool, "--roll-rows", 30, "--traffic",
                         "127.0.0.1:%d" % lines.port, "--connections", 1, "--heartbeat", 0.5,
                         "--fire", fire.url, "--fire-token", TOKEN, "--fire-linger", 0.1,
                         "--truth", truth_path, "--truth-interval", 0.2)
        try:
            first = wait_for("a rewrite of the truth with every department delivered", lambda: (
                (t := read_truth(truth_path)) is not None
                and all(t["totals"][d]["sent"] >= 20 for d in ("market", "traffic", "fire"))
                and t), 20)
            assert first["final"] is False and first["stopped"] is None
            if sig == signal.SIGTERM:
                stop_sim(proc, sig, run)
            else:
                # another rewrite, then a crash
                wait_for("a later rewrite of the truth", lambda: (
                    (t := read_truth(truth_path)) is not None
                    and t["stats"]["generated"] > first["stats"]["generated"]), 30)
                proc.kill()
                proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            lines.close()
            fire.shutdown()
            fire.server_close()
        truth = read_truth(truth_path)
        streams, fire_ids, market_ids = received_ids(lines, fire, spool)
        ids = valid_ids(truth)
        assert len(streams) == 1
        if sig == signal.SIGTERM:
            assert truth["final"] and truth["stopped"]["signal"] == "SIGTERM"
            assert all(not v for v in truth["anomalies"].values()), truth["anomalies"]
            # what the sinks got is what the truth says was delivered
            assert ids["traffic"] == set(streams[0])
            assert ids["fire"] == fire_ids
            assert ids["market"] == market_ids
        else:
            # the last rewrite before the crash: a prefix of what was delivered
            assert truth["final"] is False
            assert sum(truth["totals"][d]["sent"] for d in ids) >= sum(
                first["totals"][d]["sent"] for d in ids)
            n = len(ids["traffic"])
            assert n > 0 and set(streams[0][:n]) == ids["traffic"], "not a prefix of the stream"
            assert ids["fire"] and ids["fire"] <= fire_ids
            assert ids["market"] and ids["market"] <= market_ids


# --- blockhub's log about Kafka ---------------------------------------------------

class DroppingBroker:
    """Accepts connections and drops them at once, by turns closing and resetting
    them: a broker going up and down. Counts the connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            if self.count % 2 == 0:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()

    def close(self):
        self.sock.close()


LINE = re.compile(r"^(\S+Z) (error|warn|info|debug)\s+(\S+): (.*)$")


def parse_time(stamp):
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(stamp[19:-1] or 0)


def test_broker_outage_is_warnings_rate_limited(hub_factory, tmp_path):
    dead = free_port()  # nothing listens: connection refused
    dropping = DroppingBroker()
    try:
        hub = hub_factory("127.0.0.1:%d,127.0.0.1:%d" % (dead, dropping.port), extra_sets=[
            "kafka.create_timeout=1s",
            "kafka.properties.reconnect.backoff.ms=10",
            "kafka.properties.reconnect.backoff.max.ms=50",
        ]).start()
        # both brokers failed, the dropping one many times over since the hub is up
        wait_for("connection refused reported",
                 lambda: "Connection refused" in hub.logtext(), 30)
        since_ready = dropping.count
        wait_for("the dropping broker reconnected to 24 more times",
                 lambda: dropping.count >= since_ready + 24, 30)
        # the client itself folds identical reports at times: wait for a copy the
        # hub left out and counted (its window is 10 s)
        wait_for("a report left out and counted", lambda: "(repeated" in hub.logtext(), 40)
        assert hub.stop() == 0
    finally:
        dropping.close()
    lines = [LINE.match(x) for x in hub.logtext().splitlines()]
    assert all(lines), hub.logtext()
    kafka_lines = [m for m in lines if m.group(3) in ("kafka", "librdkafka")]
    # a broker that refuses or drops connections is the client's to retry: warnings
    assert not [m.group(0) for m in lines if m.group(2) == "error"], hub.logtext()
    refused = [m for m in kafka_lines if "Connection refused" in m.group(4)]
    assert refused and all(m.group(2) == "warn" for m in refused)
    # one line per report: not the client's log line beside its error report
    assert not [m for m in kafka_lines if m.group(3) == "librdkafka" and "FAIL" in m.group(4)]

    # a report is written at most once per 10 s window; the copies are counted
    # in the next line of that report or, at the latest, at shutdown
    stop_at = next(i for i, m in enumerate(lines) if "shutting down" in m.group(4))
    by_key = {}
    for i, m in enumerate(lines):
        if m.group(3) not in ("kafka", "librdkafka"):
            continue
        text = re.sub(r" \(repeated (\d+) times\)$", "", m.group(4))
        key = re.sub(r" \(after \d+ms[^()]*(\([^()]*\)[^()]*)*\)$", "", text)
        rep = re.search(r" \(repeated (\d+) times\)$", m.group(4))
        by_key.setdefault((m.group(2), key), []).append(
            (i, parse_time(m.group(1)), int(rep.group(1)) if rep else 0))
    dropped_reports = [k for k in by_key if "127.0.0.1:%d" % dropping.port in k[1]]
    assert dropped_reports, hub.logtext()
    for key, seen in by_key.items():
        before_stop = [s for s in seen if s[0] < stop_at]
        for a, b in zip(before_stop, before_stop[1:]):
            assert b[1] - a[1] >= 9.9, "%r written twice within the window:\n%s" % (
                key, hub.logtext())
    # the dropping broker's reports came many times over: counted, not written
    total = sum(1 + k for key in dropped_reports for _, _, k in by_key[key])
    written = sum(len(by_key[key]) for key in dropped_reports)
    assert total >= 2 and written < total, hub.logtext()
    assert any(k > 0 for key in dropped_reports for _, _, k in by_key[key]), hub.logtext()
