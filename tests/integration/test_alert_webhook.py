"""The alerts adapter: BlockAlert records POSTed, signed, to webhook subscribers.

The test writes the alerts itself (fastavro, Avro single-object encoding) to a topic of its
own, runs blockhub with the alerts adapter, and answers the webhooks with Python's own HTTP
server: retries with backoff until a 2xx, the HMAC-SHA256 signature over the exact body,
dead letters (delivery_failed) once the attempts run out while the rest flows on, the
subscribers' filters, and at-least-once across a restart without redelivering what was
acknowledged.
"""
import hashlib
import hmac
import http.server
import io
import json
import os
import socket
import struct
import threading
import uuid

import fastavro
import requests
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import bhcat
from conftest import SCHEMAS, free_port, start_refused, wait_until

with open(os.path.join(SCHEMAS, "block_alert.avsc"), encoding="utf-8") as _f:
    ALERT_SCHEMA = fastavro.parse_schema(json.load(_f))
ALERT_FP = int.from_bytes(bytes.fromhex(fastavro.schema.fingerprint(
    fastavro.schema.to_parsing_canonical_form(ALERT_SCHEMA), "CRC-64-AVRO")), "little")


def encode(rec):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, ALERT_SCHEMA, rec)
    return b"\xc3\x01" + struct.pack("<Q", ALERT_FP) + buf.getvalue()


def make_alert(n, unit="福田-派出所", name="plate-watch", block="440303-017", events=2):
    tag = uuid.uuid4().hex[:8]
    return {
        "alert_id": "%s:%s:%d:%s" % (name, block, n, tag),
        "block_id": block,
        "block_name": "福田 %d" % n,
        "unit": unit,
        "kind": "WATCH",
        "name": name,
        "detail": "field plate equals 粤B1234%d" % n,
        "events": [{"department": "traffic", "event_id": "ev-%d-%d" % (n, k),
                    "event_type": "violation", "event_at": 1764547200000 + 1000 * n + k}
                   for k in range(events)],
        "detected_at": 1764547300000 + n,
    }


def expected_json(a):
    """The alert as the adapter POSTs it: every field, times as integer ms."""
    return {k: v for k, v in a.items()}


def make_topic(kafka, partitions=1):
    name = "block.alerts.test.%s" % uuid.uuid4().hex[:10]
    admin = AdminClient({"bootstrap.servers": kafka})
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(30)
    return name


def produce(kafka, topic, values):
    p = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})
    for v in values:
        p.produce(topic, value=v if isinstance(v, bytes) else encode(v), key=b"440303-017",
                  partition=0)
    assert p.flush(30) == 0


class Subscriber:
    """A webhook receiver. ANSWER(alert_id, attempt, n) gives the status of the N-th request
    (from 1) of that alert; every request is recorded (headers, raw body, status)."""

    def __init__(self, answer=lambda alert_id, attempt, n: 200):
        self.answer = answer
        self.requests = []
        self.lock = threading.Lock()
        sub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                alert_id = self.headers.get("X-Blockhub-Alert-Id")
                with sub.lock:
                    n = 1 + sum(1 for r in sub.requests if r["alert_id"] == alert_id)
                    status = sub.answer(alert_id, int(self.headers.get("X-Blockhub-Attempt", 0)), n)
                    sub.requests.append({"alert_id": alert_id, "headers": dict(self.headers),
                                         "body": body, "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self):
        with self.lock:
            return [r["alert_id"] for r in self.requests if 200 <= r["status"] < 300]

    def of(self, alert_id):
        with self.lock:
            return [r for r in self.requests if r["alert_id"] == alert_id]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def sub_entry(name, sub_or_url, secret, **kw):
    url = sub_or_url if isinstance(sub_or_url, str) else sub_or_url.url
    return dict(name=name, type="webhook", url=url, secret=secret, **kw)


def alerts_hub(hub_factory, kafka, topic, subscribers, **kw):
    entry = {"name": "alerts", "type": "alerts", "topic": topic,
             "group": "alerts-test-%s" % uuid.uuid4().hex[:8], "subscribers": subscribers,
             "max_attempts": 8, "backoff": "50ms", "max_backoff": "200ms", "timeout": "5s"}
    entry.update(kw)
    return hub_factory(kafka, fire=False, adapters=[entry])


def signature_ok(req, secret):
    want = "sha256=" + hmac.new(secret.encode(), req["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(req["headers"].get("X-Blockhub-Signature", ""), want)


def dead_letters(kafka, hub, n):
    dec = bhcat.Decoder(SCHEMAS)

    def read():
        got = [dec.decode(m["value"])[1] for m in bhcat.consume_all(kafka, hub.dlq_topic)]
        return got if len(got) >= n else None
    return wait_until(read, "%d dead letter(s)" % n, timeout=30, hub=hub)


def test_retried_until_delivered_and_signed(kafka, hub_factory):
    topic = make_topic(kafka)
    secret = "s3cret-ключ"
    flaky = Subscriber(lambda alert_id, attempt, n: 503 if n <= 3 else 200)
    try:
        a = make_alert(1)
        produce(kafka, topic, [a])
        hub = alerts_hub(hub_factory, kafka, topic, [sub_entry("flaky", flaky, secret)]).start()
        wait_until(lambda: a["alert_id"] in flaky.delivered(), "the alert delivered", timeout=30,
                   hub=hub)
        reqs = flaky.of(a["alert_id"])
        assert [r["status"] for r in reqs] == [503, 503, 503, 200]
        assert [r["headers"]["X-Blockhub-Attempt"] for r in reqs] == ["1", "2", "3", "4"]
        for r in reqs:
            assert r["headers"]["Content-Type"] == "application/json"
            assert signature_ok(r, secret), r["headers"]
            assert not signature_ok(r, secret + "x")
            body = json.loads(r["body"].decode("utf-8"))
            assert body == expected_json(a)
            assert r["body"] == reqs[0]["body"]
        assert hub.stop() == 0
    finally:
        flaky.close()


def test_dead_letter_after_attempts_and_the_rest_flows(kafka, hub_factory):
    topic = make_topic(kafka)
    down = Subscriber(lambda alert_id, attempt, n: 503)
    healthy = Subscriber()
    closed_port = "http://127.0.0.1:%d/hook" % free_port()
    try:
        alerts = [make_alert(i, name="gone-watch" if i == 0 else "plate-watch") for i in range(3)]
        produce(kafka, topic, [alerts[0], b"not avro at all", alerts[1], alerts[2]])
        hub = alerts_hub(hub_factory, kafka, topic,
                         [sub_entry("down", down, "k1", rules=["plate-watch"]),
                          sub_entry("gone", closed_port, "k2", rules=["gone-watch"]),
                          sub_entry("healthy", healthy, "k3")],
                         max_attempts=3).start()
        want = {a["alert_id"] for a in alerts}
        wait_until(lambda: want <= set(healthy.delivered()), "every alert delivered to healthy",
                   timeout=30, hub=hub)
        got = dead_letters(kafka, hub, 4)
        failed = [d for d in got if d["reason"] == "delivery_failed"]
        bad = [d for d in got if d["reason"] == "invalid_encoding"]
        assert len(failed) == 3 and len(bad) == 1, got
        by_id = {json.loads(d["payload"])["alert_id"]: d for d in failed}
        assert set(by_id) == want
        for a in alerts:
            d = by_id[a["alert_id"]]
            assert d["adapter"] == "alerts" and d["adapter_type"] == "alerts"
            assert json.loads(d["payload"]) == expected_json(a)
            assert "3 attempt" in d["detail"], d["detail"]
            if a["name"] == "gone-watch":
                assert "'gone'" in d["detail"], d["detail"]
            else:
                assert "'down'" in d["detail"] and "503" in d["detail"], d["detail"]
                assert [r["headers"]["X-Blockhub-Attempt"] for r in down.of(a["alert_id"])] == \
                    ["1", "2", "3"]
        assert "unknown framing" in bad[0]["detail"]
        assert bad[0]["payload"] == b"not avro at all"
        assert hub.stop() == 0
    finally:
        down.close()
        healthy.close()


def test_subscribers_filtered_by_unit_and_rule(kafka, hub_factory):
    topic = make_topic(kafka)
    north, plates, everyone = Subscriber(), Subscriber(), Subscriber()
    try:
        alerts = [make_alert(0, unit="north", name="plate-watch"),
                  make_alert(1, unit="south", name="plate-watch"),
                  make_alert(2, unit="north", name="block-watch"),
                  make_alert(3, unit=None, name="other-rule")]
        alerts[3]["kind"] = "RULE"
        produce(kafka, topic, alerts)
        hub = alerts_hub(hub_factory, kafka, topic,
                         [sub_entry("north", north, "a", units=["north", "east"]),
                          sub_entry("plates", plates, "b", rules=["plate-watch"]),
                          sub_entry("everyone", everyone, "c")]).start()
        ids = [a["alert_id"] for a in alerts]
        wait_until(lambda: len(everyone.delivered()) >= 4 and len(north.delivered()) >= 2
                   and len(plates.delivered()) >= 2, "the filtered deliveries", timeout=30,
                   hub=hub)
        assert sorted(everyone.delivered()) == sorted(ids)
        assert sorted(north.delivered()) == sorted([ids[0], ids[2]])
        assert sorted(plates.delivered()) == sorted([ids[0], ids[1]])
        rule = json.loads(everyone.of(ids[3])[0]["body"])
        assert rule["kind"] == "RULE" and rule["unit"] is None
        assert hub.stop() == 0
    finally:
        for s in (north, plates, everyone):
            s.close()


def test_restart_delivers_the_rest_only(kafka, hub_factory):
    topic = make_topic(kafka)
    allowed = set()
    gate = Subscriber(lambda alert_id, attempt, n: 200 if alert_id in allowed else 503)
    try:
        alerts = [make_alert(i) for i in range(6)]
        ids = [a["alert_id"] for a in alerts]
        allowed.update(ids[:3])
        produce(kafka, topic, alerts)
        hub = alerts_hub(hub_factory, kafka, topic, [sub_entry("gate", gate, "g")],
                         max_attempts=1000).start()
        wait_until(lambda: set(ids[:3]) <= set(gate.delivered())
                   and all(len(gate.of(i)) >= 2 for i in ids[3:]),
                   "three delivered and the others retried", timeout=30, hub=hub)
        assert hub.stop() == 0
        with gate.lock:
            before = len(gate.requests)
        allowed.update(ids)
        hub.start()
        wait_until(lambda: set(ids) <= set(gate.delivered()), "the rest delivered after a restart",
                   timeout=30, hub=hub)
        with gate.lock:
            after = [r["alert_id"] for r in gate.requests[before:]]
        assert not set(after) & set(ids[:3]), "acknowledged alerts sent again: %r" % after
        assert sorted(gate.delivered()) == sorted(ids)
        assert hub.stop() == 0
    finally:
        gate.close()


class RawSubscriber:
    """A subscriber that misbehaves by path: /garbage answers bytes that are not HTTP, /reset
    resets the connection, /slow never answers, /huge answers 200 with an 8 MiB body."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.hits = {}
        self.lock = threading.Lock()
        self.open = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            path = data.split(b" ", 2)[1].decode()
            with self.lock:
                self.hits[path] = self.hits.get(path, 0) + 1
            if path == "/garbage":
                conn.sendall(b"\x00\xffnot http at all\r\n\r\n" * 10)
            elif path == "/reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif path == "/slow":
                with self.lock:
                    self.open.append(conn)
                return
            elif path == "/huge":
                size = 8 << 20
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                             % size)
                block = b"x" * 65536
                for _ in range(size // len(block)):
                    conn.sendall(block)
        except OSError:
            pass
        conn.close()

    def close(self):
        self.sock.close()
        with self.lock:
            for c in self.open:
                c.close()


def test_misbehaving_subscribers_cost_only_their_alerts(kafka, hub_factory):
    topic = make_topic(kafka)
    raw = RawSubscriber()
    try:
        a = make_alert(7)
        produce(kafka, topic, [a])
        names = ["garbage", "reset", "slow", "huge"]
        hub = alerts_hub(hub_factory, kafka, topic,
                         [sub_entry(n, raw.base + "/" + n, "k") for n in names],
                         max_attempts=2, timeout="500ms").start()
        got = dead_letters(kafka, hub, 3)
        failed = sorted(d["detail"].split("'")[1] for d in got if d["reason"] == "delivery_failed")
        assert failed == ["garbage", "reset", "slow"], [d["detail"] for d in got]
        with raw.lock:
            assert raw.hits == {"/garbage": 2, "/reset": 2, "/slow": 2, "/huge": 1}, raw.hits
        assert hub.proc.poll() is None
        # SIGTERM while a POST waits for its answer: a clean exit all the same.
        produce(kafka, topic, [make_alert(8)])
        wait_until(lambda: raw.hits.get("/slow") == 3, "a POST under way", timeout=30, hub=hub)
        assert hub.stop() == 0
        assert "delivery(ies) not finished" in hub.logtext()
    finally:
        raw.close()


def test_held_alerts_bounded_while_a_subscriber_is_down(kafka, hub_factory):
    topic = make_topic(kafka)
    is_open = threading.Event()
    gate = Subscriber(lambda alert_id, attempt, n: 200 if is_open.is_set() else 503)
    admin_port = free_port()
    try:
        alerts = [make_alert(i) for i in range(20)]
        produce(kafka, topic, alerts)
        hub = hub_factory(kafka, fire=False, extra_sets=[
            "admin.listen=127.0.0.1:%d" % admin_port, "admin.tokens=[adm]"], adapters=[
            {"name": "alerts", "type": "alerts", "topic": topic,
             "group": "alerts-test-%s" % uuid.uuid4().hex[:8], "max_pending": 4,
             "max_attempts": 1000, "backoff": "20ms", "max_backoff": "50ms",
             "subscribers": [sub_entry("gate", gate, "g")]}]).start()

        def counters():
            r = requests.get("http://127.0.0.1:%d/components" % admin_port,
                             headers={"Authorization": "Bearer adm"}, timeout=10)
            assert r.status_code == 200, r.text
            return next(c for c in r.json()["components"] if c["name"] == "alerts")["counters"]

        wait_until(lambda: counters()["alerts_received"] == 4 and counters()["flow_pauses"] >= 1,
                   "four alerts held and the partitions paused", timeout=30, hub=hub)
        with gate.lock:
            seen = len(gate.requests)
        wait_until(lambda: len(gate.requests) >= seen + 40, "more failed attempts", timeout=30,
                   hub=hub)
        c = counters()
        assert c["alerts_received"] == 4 and c["alerts_pending"] == 4, c
        is_open.set()
        ids = {a["alert_id"] for a in alerts}
        wait_until(lambda: ids <= set(gate.delivered()), "every alert once the subscriber is up",
                   timeout=30, hub=hub)
        wait_until(lambda: counters()["alerts_pending"] == 0, "nothing held", timeout=30, hub=hub)
        assert counters()["alerts_received"] == 20
        assert hub.stop() == 0
    finally:
        gate.close()


def test_bad_settings_refused_with_key_and_reason(kafka, hub_factory):
    topic = make_topic(kafka)
    cases = [
        ({"subscribers": [sub_entry("a", "ftp://example", "k")]},
         "adapters[alerts].subscribers[a].url", "http:// or https://"),
        ({"subscribers": [sub_entry("a", "http://example/", "")]},
         "adapters[alerts].subscribers[a].secret", "must not be empty"),
        ({"subscribers": [sub_entry("a", "http://example/", "k")], "backoff": "2s",
          "max_backoff": "1s"}, "adapters[alerts].max_backoff", "below backoff"),
        ({"subscribers": []}, "adapters[alerts].subscribers", "at least one subscriber"),
    ]
    for settings, key, why in cases:
        entry = {"name": "alerts", "type": "alerts", "topic": topic}
        entry.update(settings)
        hub = hub_factory(kafka, fire=False, adapters=[entry])
        rc, err = start_refused(hub)
        assert rc == 2 and key in err and why in err, err
