"""The alerts adapter's routes on the admin API: GET /alerts and GET /alerts/stream.

The alerts are written by the test itself (the helpers of test_alert_webhook.py) to a topic of
its own; the adapter keeps a history of them with a consumer of its own (no group offsets), from
the topic's offsets of now - history_for, so alerts written before it started are in the
answers. The stream is read as server-sent events by a thread per client.
"""
import datetime
import http.client
import json
import socket
import struct
import threading
import time
import uuid

import requests

from conftest import free_port, wait_until
from test_alert_webhook import Subscriber, make_alert, make_topic, produce, sub_entry

ADMIN = "adm-token-7"


def api_hub(hub_factory, kafka, topic, sub, tokens=(ADMIN,), **kw):
    port = free_port()
    entry = {"name": "alerts", "type": "alerts", "topic": topic,
             "group": "alerts-api-%s" % uuid.uuid4().hex[:8],
             "subscribers": [sub_entry("all", sub, "k")]}
    entry.update(kw)
    sets = ["admin.listen=127.0.0.1:%d" % port]
    if tokens:
        sets.append("admin.tokens=[%s]" % ",".join(tokens))
    h = hub_factory(kafka, fire=False, extra_sets=sets, adapters=[entry])
    h.admin_port = port
    h.admin = "http://127.0.0.1:%d" % port
    return h


class Raw:
    def __init__(self, status, text):
        self.status_code = status
        self.text = text

    def json(self):
        return json.loads(self.text)


def get(h, path, token=ADMIN, params=None, raw_query=None):
    headers = {"Authorization": "Bearer " + token} if token is not None else {}
    if raw_query is not None:  # the bytes as they are (requests would escape a bad escape)
        c = http.client.HTTPConnection("127.0.0.1", h.admin_port, timeout=30)
        c.request("GET", path + "?" + raw_query, headers=headers)
        r = c.getresponse()
        out = Raw(r.status, r.read().decode("utf-8"))
        c.close()
        return out
    return requests.get(h.admin + path, params=params, headers=headers, timeout=30)


def alerts(h, **params):
    r = get(h, "/alerts", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def ids(body):
    return [a["alert_id"] for a in body["alerts"]]


def counters(h):
    r = get(h, "/components")
    assert r.status_code == 200, r.text
    return next(c for c in r.json()["components"] if c["name"] == "alerts")["counters"]


def rfc3339(ms, hours=8):
    tz = datetime.timezone(datetime.timedelta(hours=hours))
    return datetime.datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="milliseconds")


class Stream:
    """One client of GET /alerts/stream: a thread collects its events (id, event, data)."""

    def __init__(self, h, token=ADMIN, **params):
        q = requests.models.RequestEncodingMixin._encode_params(params) if params else ""
        self.conn = http.client.HTTPConnection("127.0.0.1", h.admin_port, timeout=60)
        self.conn.request("GET", "/alerts/stream" + ("?" + q if q else ""),
                          headers={"Authorization": "Bearer " + token})
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        self.events = []
        self.comments = 0
        self.ended = False
        self.lock = threading.Lock()
        if self.resp.status == 200:
            self.thread = threading.Thread(target=self.read, daemon=True)
            self.thread.start()

    def read(self):
        ev = {}
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode("utf-8").rstrip("\n")
                if line == "":
                    if ev:
                        with self.lock:
                            self.events.append(ev)
                    ev = {}
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    k, _, v = line.partition(": ")
                    ev[k] = v
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass
        self.ended = True

    def ids(self):
        with self.lock:
            return [e["id"] for e in self.events]

    def alerts(self):
        with self.lock:
            return [json.loads(e["data"]) for e in self.events]

    def close(self):
        # The reader thread is blocked in a read of the response: only a shutdown of the
        # socket ends it at once (closing the response would wait for the read's lock, that
        # is for the next keep-alive or event).
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


def test_history_answers_filtered_and_limited(kafka, hub_factory):
    topic = make_topic(kafka)
    sub = Subscriber()
    try:
        kept = [make_alert(0, unit="福田派出所", block="440303-017", name="plate-watch"),
                make_alert(1, unit="福田派出所", block="440303-018", name="plate-watch"),
                make_alert(2, unit="南园 派出所", block="440303-017", name="block-watch"),
                make_alert(3, unit=None, block="440303-019", name="spike"),
                make_alert(4, unit="福田派出所", block="440303-017", name="spike"),
                make_alert(5, unit="南园 派出所", block="440303-018", name="plate-watch")]
        kept[3]["kind"] = "RULE"
        # Written before the adapter starts: within history_for, so kept all the same.
        produce(kafka, topic, kept)
        h = api_hub(hub_factory, kafka, topic, sub).start()
        every = [a["alert_id"] for a in kept]
        wait_until(lambda: len(alerts(h)["alerts"]) == 6, "six alerts kept", timeout=30, hub=h)
        body = alerts(h)
        assert body["alerts"] == kept  # oldest first, the webhook's JSON
        assert body["history_from"] == kept[0]["detected_at"]
        assert body["truncated"] is False

        def pick(*n):
            return [every[i] for i in n]

        assert ids(alerts(h, block="440303-017")) == pick(0, 2, 4)
        assert ids(alerts(h, block="440303-020")) == []
        assert ids(alerts(h, unit="福田派出所")) == pick(0, 1, 4)
        assert ids(alerts(h, unit="南园 派出所")) == pick(2, 5)  # a space as '+'
        assert ids(get(h, "/alerts", raw_query="unit=%E5%8D%97%E5%9B%AD%20%E6%B4%BE%E5%87%BA%E6%89%80")
                   .json()) == pick(2, 5)
        assert ids(alerts(h, name="spike")) == pick(3, 4)
        assert ids(alerts(h, since=kept[3]["detected_at"])) == pick(3, 4, 5)
        assert ids(alerts(h, since=rfc3339(kept[2]["detected_at"]))) == pick(2, 3, 4, 5)
        # An offset's '+' sent unescaped arrives as a space: taken all the same.
        assert ids(get(h, "/alerts", raw_query="since=" + rfc3339(kept[4]["detected_at"]))
                   .json()) == pick(4, 5)
        assert ids(alerts(h, since=rfc3339(kept[4]["detected_at"], hours=0).replace("+00:00", "Z"))) \
            == pick(4, 5)
        assert ids(alerts(h, block="440303-017", since=kept[1]["detected_at"])) == pick(2, 4)
        assert ids(alerts(h, block="440303-017", unit="福田派出所", name="plate-watch")) == pick(0)
        lim = alerts(h, limit=2)
        assert ids(lim) == pick(0, 1) and lim["truncated"] is True
        lim = alerts(h, limit=6)
        assert ids(lim) == every and lim["truncated"] is False
        lim = alerts(h, unit="福田派出所", limit=3)
        assert ids(lim) == pick(0, 1, 4) and lim["truncated"] is False

        for query, key in [({"since": "yesterday"}, "since"),
                           ({"since": "2026-12-07T10:00:00"}, "since"),  # no offset
                           ({"since": "2026-13-07T10:00:00Z"}, "since"),
                           ({"limit": "0"}, "limit"), ({"limit": "10001"}, "limit"),
                           ({"limit": "ten"}, "limit"), ({"block": ""}, "block"),
                           ({"colour": "red"}, "colour")]:
            r = get(h, "/alerts", params=query)
            assert r.status_code == 400, (query, r.text)
            assert r.json()["key"] == key, (query, r.text)
            assert r.json()["error"]
        for raw, key in [("block=%ff%fe", "block"), ("unit=%E5%8D", "unit"), ("name=%zz", "name"),
                         ("since=1&since=2", "since"), ("name=a%00b", "name")]:
            r = get(h, "/alerts", raw_query=raw)
            assert r.status_code == 400, (raw, r.text)
            assert r.json()["key"] == key, (raw, r.text)
        r = get(h, "/alerts/stream", params={"since": "soon"})
        assert r.status_code == 400 and r.json()["key"] == "since"
        assert counters(h)["history_alerts"] == 6
        r = requests.post(h.admin + "/alerts", headers={"Authorization": "Bearer " + ADMIN},
                          timeout=30)
        assert r.status_code == 405
        assert h.stop() == 0
    finally:
        sub.close()


def test_history_bounded(kafka, hub_factory):
    topic = make_topic(kafka)
    sub = Subscriber()
    try:
        sent = [make_alert(i) for i in range(7)]
        produce(kafka, topic, sent)
        h = api_hub(hub_factory, kafka, topic, sub, history=3).start()
        wait_until(lambda: counters(h)["history_read"] == 7, "seven alerts read", timeout=30,
                   hub=h)
        body = alerts(h)
        assert ids(body) == [a["alert_id"] for a in sent[4:]]
        assert body["history_from"] == sent[4]["detected_at"]
        assert h.stop() == 0
    finally:
        sub.close()


def test_stream_delivers_each_new_alert_once_in_order(kafka, hub_factory):
    topic = make_topic(kafka)
    sub = Subscriber()
    streams = []
    try:
        before = [make_alert(i, unit="north") for i in range(2)]
        produce(kafka, topic, before)
        h = api_hub(hub_factory, kafka, topic, sub).start()
        wait_until(lambda: len(alerts(h)["alerts"]) == 2, "two alerts kept", timeout=30, hub=h)
        every = Stream(h)
        assert every.resp.status == 200
        assert every.resp.getheader("Content-Type").startswith("text/event-stream")
        assert every.resp.getheader("Cache-Control") == "no-cache"
        north = Stream(h, unit="north")
        plates = Stream(h, name="plate-watch", block="440303-017")
        replay = Stream(h, since=before[1]["detected_at"], unit="north")
        streams = [every, north, plates, replay]
        wait_until(lambda: counters(h)["stream_clients"] == 4, "four clients", timeout=30, hub=h)
        after = [make_alert(10, unit="north"), make_alert(11, unit="south"),
                 make_alert(12, unit="north", name="block-watch"),
                 make_alert(13, unit="south", block="440303-018"),
                 make_alert(14, unit="north")]
        produce(kafka, topic, after[:2])
        produce(kafka, topic, after[2:])
        want = [a["alert_id"] for a in after]
        # Promptly: a stream is written to when an alert comes, not at its next keep-alive
        # (15 s after the last write).
        wait_until(lambda: len(every.ids()) >= 5, "five events", timeout=10, hub=h)
        wait_until(lambda: len(replay.ids()) >= 4, "the replay and three events", timeout=10, hub=h)
        time.sleep(1)  # nothing more comes
        assert every.ids() == want
        assert every.alerts() == after
        assert north.ids() == [want[0], want[2], want[4]]
        assert plates.ids() == [want[0], want[1], want[4]]
        assert replay.ids() == [before[1]["alert_id"], want[0], want[2], want[4]]
        assert all(e["event"] == "alert" for e in every.events)
        assert h.stop() == 0
        # The adapter ended every stream at stop: the clients saw their end.
        wait_until(lambda: all(s.ended for s in streams), "every stream ended", timeout=10)
        assert "still open at exit" not in h.logtext()
    finally:
        for s in streams:
            s.close()
        sub.close()


def reset_client(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
               % (path, ADMIN)).encode())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return s


def test_clients_that_go_away_leave_it_serving(kafka, hub_factory):
    topic = make_topic(kafka)
    sub = Subscriber()
    try:
        h = api_hub(hub_factory, kafka, topic, sub).start()
        wait_log(h)
        quitter = Stream(h)
        produce(kafka, topic, [make_alert(0)])
        wait_until(lambda: len(quitter.ids()) == 1, "one event", timeout=10, hub=h)
        quitter.close()  # mid-stream
        socks = [reset_client(h.admin_port, "/alerts/stream") for _ in range(25)]
        socks += [reset_client(h.admin_port, "/alerts/stream?since=0") for _ in range(25)]
        produce(kafka, topic, [make_alert(1)])
        time.sleep(0.3)
        for s in socks:
            s.close()  # SO_LINGER 0: a reset
        produce(kafka, topic, [make_alert(2)])
        r = get(h, "/healthz")
        assert r.status_code == 200
        wait_until(lambda: counters(h)["stream_clients"] == 0, "every client gone", timeout=30,
                   hub=h)
        late = Stream(h, since=0)
        a = make_alert(3)
        produce(kafka, topic, [a])
        wait_until(lambda: a["alert_id"] in late.ids(), "the stream still works", timeout=10,
                   hub=h)
        assert len(late.ids()) == 4 and len(set(late.ids())) == 4
        assert counters(h)["stream_clients"] == 1
        assert h.proc.poll() is None
        assert h.stop() == 0
        late.close()
    finally:
        sub.close()


def wait_log(h):
    wait_until(lambda: "history of alerts:" in h.logtext(), "the history consumer assigned",
               timeout=30, hub=h)


def test_admin_tokens_enforced_on_both_routes(kafka, hub_factory):
    topic = make_topic(kafka)
    sub = Subscriber()
    try:
        h = api_hub(hub_factory, kafka, topic, sub).start()
        for path in ("/alerts", "/alerts/stream"):
            for token in (None, "wrong", ADMIN + "x", ""):
                r = get(h, path, token=token)
                assert r.status_code == 401, (path, token, r.status_code)
                assert r.headers["WWW-Authenticate"] == "Bearer"
        assert get(h, "/alerts").status_code == 200
        s = Stream(h)
        assert s.resp.status == 200
        s.close()
        assert h.stop() == 0
    finally:
        sub.close()


def test_no_routes_without_history(kafka, hub_factory):
    topic = make_topic(kafka)
    sub = Subscriber()
    try:
        h = api_hub(hub_factory, kafka, topic, sub, history=0).start()
        assert get(h, "/alerts").status_code == 404
        assert "history 0: GET /alerts" in h.logtext()
        assert h.stop() == 0
    finally:
        sub.close()


def test_idle_stream_gets_keep_alives(kafka, hub_factory):
    """stream_keep_alive 1s: an idle stream hears a comment line within 4/3 s of the last
    thing sent; three of them (greeting included) come long before the default 15 s once."""
    topic = make_topic(kafka)
    sub = Subscriber()
    try:
        h = api_hub(hub_factory, kafka, topic, sub, stream_keep_alive="1s").start()
        s = Stream(h)
        wait_until(lambda: s.comments >= 3, "two keep-alives after the greeting", timeout=12,
                   hub=h)
        assert s.events == [] and not s.ended
        s.close()
        assert h.stop() == 0
    finally:
        sub.close()


def test_a_slow_client_is_bounded_and_blocks_no_one(kafka, hub_factory):
    topic = make_topic(kafka)
    sub = Subscriber()
    try:
        h = api_hub(hub_factory, kafka, topic, sub, history=40).start()
        wait_log(h)
        # Connects and never reads: its socket buffers fill, then its cursor falls out of the
        # history and its stream is ended.
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", h.admin_port))
        slow.sendall(("GET /alerts/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                      % ADMIN).encode())
        fast = Stream(h)
        wait_until(lambda: counters(h)["stream_clients"] == 2, "two clients", timeout=30, hub=h)
        sent = []
        for batch in range(6):
            alerts_ = [make_alert(100 * batch + i) for i in range(25)]
            for a in alerts_:
                a["detail"] = "x" * 100000
            produce(kafka, topic, alerts_)
            sent += [a["alert_id"] for a in alerts_]
            # The client that reads has each batch (fewer alerts than the history holds) before
            # the next comes: however loaded the machine, it never falls out of the history,
            # while the one that never reads does.
            wait_until(lambda: len(fast.ids()) == len(sent),
                       "every alert to the client that reads", timeout=60, hub=h)
        assert fast.ids() == sent
        c = wait_until(lambda: (lambda c: c if c["streams_ended_slow"] == 1 else None)(counters(h)),
                       "the slow client's stream ended", timeout=30, hub=h)
        assert c["history_alerts"] == 40
        assert get(h, "/healthz").status_code == 200
        slow.close()
        fast.close()
        assert h.stop() == 0
    finally:
        sub.close()
