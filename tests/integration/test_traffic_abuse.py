"""The traffic port under abuse: hogged connections, NUL characters, long non-ASCII values,
records too large for Kafka, and configs that start would refuse."""
import json
import re
import select
import socket
import subprocess
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BLOCKHUB, deadline_after
from test_traffic import decoded, event, ndjson, topic_size, traffic_hub

TRAFFIC = "blockhub.traffic.TrafficEvent"
DEAD = "blockhub.DeadLetter"


def connect_from(hub, address):
    """A gateway connection from loopback ADDRESS (127.0.0.0/8 is all ours)."""
    s = socket.socket()
    s.settimeout(30)
    s.bind((address, 0))
    s.connect(("127.0.0.1", hub.traffic_port))
    return s, "%s:%d" % s.getsockname()


def settle(hub, s, peer, timeout=20):
    """'accepted' once blockhub logs the connection, 'refused' once it closes it."""
    deadline = deadline_after(timeout)
    while True:
        if "gateway %s connected" % peer in hub.logtext():
            return "accepted"
        if select.select([s], [], [], 0.05)[0]:
            try:
                data = s.recv(1)
            except ConnectionResetError:
                data = b""
            assert data == b"", "blockhub wrote to a gateway"
            return "refused"
        assert time.monotonic() < deadline, "connection from %s neither taken nor closed" % peer


def wait_for_sizes(bootstrap, wants, timeout=120, exact=False):
    """Wait until each topic holds at least its count (a topic just created may not answer
    at once: asked again). EXACT: the counts are exact, so a topic that holds more than
    its count (which never shrinks) fails at once instead of at the deadline."""
    deadline = deadline_after(timeout)
    while True:
        try:
            got = {t: topic_size(bootstrap, t) for t in wants}
        except KafkaException as e:
            got = {"error": str(e)}
        if exact:
            over = {t: got[t] for t, n in wants.items() if got.get(t, -1) > n}
            assert not over, "more than wanted: have %r, want %r" % (got, wants)
        if all(got.get(t, -1) >= n for t, n in wants.items()):
            return got
        assert time.monotonic() < deadline, "timed out: have %r, want %r" % (got, wants)
        time.sleep(0.3)


def line(obj):
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def test_one_address_cannot_lock_others_out(kafka, hub_factory, decoder):
    hub = traffic_hub(hub_factory, kafka, max_connections=8, max_connections_per_peer=4).start()
    # one host opens more connections than max_connections and sends nothing
    hog = []
    for _ in range(12):
        s, peer = connect_from(hub, "127.0.0.2")
        hog.append((s, peer, settle(hub, s, peer)))
    assert [state for _, _, state in hog] == ["accepted"] * 4 + ["refused"] * 8
    # another host still gets in and is served, and so are the hog's connections it kept
    good, good_peer = connect_from(hub, "127.0.0.1")
    assert settle(hub, good, good_peer) == "accepted"
    good.sendall(ndjson(event(i, "JJ-PEER") for i in range(10)))
    for k, (s, _, _) in enumerate(hog[:4]):
        s.sendall(ndjson([event(100 + k, "JJ-PEER")]))
    wait_for_sizes(kafka, {hub.traffic_topic: 14})
    log = hub.logtext()
    assert re.search(r"refusing gateway 127\.0\.0\.2:\d+: 4 connections from 127\.0\.0\.2 is "
                     r"max_connections_per_peer", log), log

    # a flood of refused connections is logged at most once a second
    before = log.count("refusing gateway")
    t0 = time.monotonic()
    flood = [connect_from(hub, "127.0.0.2") for _ in range(150)]
    assert all(settle(hub, s, peer) == "refused" for s, peer in flood)
    elapsed = time.monotonic() - t0
    logged = hub.logtext().count("refusing gateway") - before
    assert 0 <= logged <= 2 + elapsed, "%d lines about refusals in %.1f s" % (logged, elapsed)
    # and the next line after a quiet second says how many went unlogged
    deadline = deadline_after(15)
    while not re.search(r"more refused since the last such line", hub.logtext()):
        assert time.monotonic() < deadline, "the unlogged refusals were never counted"
        s, peer = connect_from(hub, "127.0.0.2")
        assert settle(hub, s, peer) == "refused"
        s.close()
        time.sleep(0.25)
    for s, _ in flood:
        s.close()

    good.sendall(ndjson(event(i, "JJ-PEER") for i in range(10, 20)))
    good.close()
    for s, _, _ in hog:
        s.close()
    wait_for_sizes(kafka, {hub.traffic_topic: 24})
    assert hub.stop() == 0
    msgs = decoded(kafka, hub.traffic_topic, decoder, TRAFFIC)
    assert sorted(rec["event_id"] for _, rec in msgs) == sorted(
        ["JJ-PEER-%07d" % i for i in range(20)] + ["JJ-PEER-%07d" % (100 + k) for k in range(4)])


def test_idle_timeout_and_per_peer_limit_by_default():
    ref = subprocess.run([BLOCKHUB, "--config-reference"], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"^\| `adapters\[\]\.(\w+)` \| \w+ \| `([^`]*)` \|", ref, re.M)}
    assert rows["idle_timeout"] == "5m"  # silent sockets do not hold the port for ever
    assert rows["max_connections_per_peer"] == "64"
    assert rows["max_connections"] == "256"


def test_nul_is_refused(kafka, hub_factory, decoder):
    hub = traffic_hub(hub_factory, kafka).start()
    good = event(1, "JJ-NUL")
    bad = [
        dict(event(2, "JJ-NUL"), event_id="JJ-NUL-2\x00"),
        dict(event(3, "JJ-NUL"), plate="粤B\x0012345"),
        dict(event(4, "JJ-NUL"), note="a\x00b"),
        dict(event(5, "JJ-NUL"), extra={"deep": ["\x00"]}),
        dict(event(6, "JJ-NUL"), **{"k\x00ey": 1}),
        dict(event(7, "JJ-NUL"), **{"交" * 40 + "\x00": 1}),  # named in the detail, cut
    ]
    text = dict(event(8, "JJ-NUL"), road="\\u0000")  # the six characters, no NUL
    raw = [line(good)] + [line(b) for b in bad] + [line(text)]
    assert all(b"\\u0000" in r for r in raw[1:7])
    s = socket.create_connection(("127.0.0.1", hub.traffic_port), timeout=30)
    s.sendall(b"".join(raw))
    s.close()
    wait_for_sizes(kafka, {hub.traffic_topic: 2, hub.dlq_topic: 6}, exact=True)
    assert hub.stop() == 0
    msgs = decoded(kafka, hub.traffic_topic, decoder, TRAFFIC)
    assert sorted(rec["event_id"] for _, rec in msgs) == ["JJ-NUL-0000001", "JJ-NUL-0000008"]
    assert [rec["road"] for _, rec in msgs if rec["event_id"] == "JJ-NUL-0000008"] == ["\\u0000"]
    assert all("\x00" not in str(rec) for _, rec in msgs)
    dead = {d["origin"]["position"]: d for _, d in decoded(kafka, hub.dlq_topic, decoder, DEAD)}
    assert sorted(dead) == [2, 3, 4, 5, 6, 7]
    for pos, d in dead.items():
        assert d["reason"] == "invalid_field", d
        assert "\\u0000" in d["detail"], d
        assert d["payload"] == raw[pos - 1].rstrip(b"\n")
    assert dead[2]["detail"].startswith("event_id: ")
    assert dead[3]["detail"].startswith("plate: ")
    assert dead[4]["detail"].startswith("note: ")
    assert dead[5]["detail"].startswith("extra: ")
    assert dead[6]["detail"].startswith("the key 'k\\x00ey'")
    # a long key is cut between characters (21 of 40 CJK characters: 63 bytes)
    assert dead[7]["detail"].startswith("the key '%s' holds" % ("交" * 21)), dead[7]["detail"]


def test_long_non_ascii_values_in_reasons(kafka, hub_factory, decoder):
    hub = traffic_hub(hub_factory, kafka).start()
    values = ["交通事故" * 10, "a" + "交" * 40, "ab" + "交" * 40, "\U0001F697" * 30,
              "é" * 45, "深南" * 30]
    raw = [line(dict(event(i, "JJ-CJK"), type=v)) for i, v in enumerate(values)]
    s = socket.create_connection(("127.0.0.1", hub.traffic_port), timeout=30)
    s.sendall(b"".join(raw))
    s.close()
    wait_for_sizes(kafka, {hub.dlq_topic: len(raw)})
    assert hub.stop() == 0
    # fastavro decodes every string strictly as UTF-8
    dead = {d["origin"]["position"]: d for _, d in decoded(kafka, hub.dlq_topic, decoder, DEAD)}
    assert sorted(dead) == list(range(1, len(raw) + 1))
    for pos, value in enumerate(values, 1):
        d = dead[pos]
        assert d["reason"] == "invalid_field"
        assert "\\x" not in d["detail"], d["detail"]
        shown = re.match(r"type: '(.*)' is not one of", d["detail"]).group(1)
        # the longest run of whole characters of at most 64 bytes
        assert value.startswith(shown), (shown, value)
        assert 64 - 3 <= len(shown.encode()) <= 64, shown


def test_record_too_large_for_the_producer(kafka, hub_factory, decoder):
    hub = traffic_hub(hub_factory, kafka, extra_sets=[
        "kafka.properties.message.max.bytes=20000", "dead_letter.max_payload=4KiB"]).start()
    log = hub.logtext()
    assert re.search(r"adapters\.traffic\.max_line \(65536 bytes\) does not fit under kafka "
                     r"message\.max\.bytes \(20000 bytes\).*too_large", log), log
    big = line(dict(event(2, "JJ-SIZE"), road="深" * 17000))  # 51 KB, under max_line
    a = socket.create_connection(("127.0.0.1", hub.traffic_port), timeout=30)
    a.sendall(ndjson([event(1, "JJ-SIZE")]) + big + ndjson([event(3, "JJ-SIZE")]))
    b = socket.create_connection(("127.0.0.1", hub.traffic_port), timeout=30)
    b.sendall(big + ndjson([event(4, "JJ-SIZE")]))
    a.close()
    b.close()
    wait_for_sizes(kafka, {hub.traffic_topic: 3, hub.dlq_topic: 2}, timeout=60, exact=True)
    assert hub.stop(timeout=60) == 0
    msgs = decoded(kafka, hub.traffic_topic, decoder, TRAFFIC)
    assert sorted(rec["event_id"] for _, rec in msgs) == ["JJ-SIZE-%07d" % i for i in (1, 3, 4)]
    dead = decoded(kafka, hub.dlq_topic, decoder, DEAD)
    assert len(dead) == 2
    for _, d in dead:
        assert d["reason"] == "too_large"
        assert "message.max.bytes is 20000" in d["detail"], d["detail"]
        assert d["payload"] == big[:4096] and d["payload_truncated"] is True
        assert d["origin"]["position"] in (1, 2)
    assert "again" not in hub.logtext()  # never retried


def test_record_too_large_for_the_topic(kafka, hub_factory, decoder):
    # The broker's own limit is lower: it refuses the whole batch the big record travels in.
    hub = traffic_hub(hub_factory, kafka, extra_sets=["kafka.properties.linger.ms=50"])
    admin = AdminClient({"bootstrap.servers": kafka})
    fs = admin.create_topics([NewTopic(hub.traffic_topic, 3, 1,
                                       config={"max.message.bytes": "20000"})])
    fs[hub.traffic_topic].result(30)
    hub.start()
    small = [event(i, "JJ-TOPIC") for i in range(41) if i != 20]
    big = line(dict(event(20, "JJ-TOPIC"), road="x" * 50000))
    s = socket.create_connection(("127.0.0.1", hub.traffic_port), timeout=30)
    s.sendall(ndjson(small[:20]) + big + ndjson(small[20:]))  # one block: one partition
    s.close()
    wait_for_sizes(kafka, {hub.traffic_topic: 40, hub.dlq_topic: 1}, timeout=60, exact=True)
    assert hub.stop(timeout=60) == 0
    msgs = decoded(kafka, hub.traffic_topic, decoder, TRAFFIC)
    assert sorted(rec["event_id"] for _, rec in msgs) == sorted(e["event_id"] for e in small)
    [(_, d)] = decoded(kafka, hub.dlq_topic, decoder, DEAD)
    assert d["reason"] == "too_large" and d["origin"]["position"] == 21
    assert "also when sent alone" in d["detail"], d["detail"]
    assert d["payload"] == big.rstrip(b"\n") and d["payload_truncated"] is False


def check(hub, **settings):
    """blockhub --check on HUB's config with the traffic entry's SETTINGS changed."""
    with open(hub.config, encoding="utf-8") as f:
        text = f.read()
    for key, value in settings.items():
        text, n = re.subn(r"^(    %s: ).*$" % key, lambda m: m.group(1) + json.dumps(value),
                          text, flags=re.M)
        if n == 0:
            text += "    %s: %s\n" % (key, json.dumps(value))
    path = hub.config + ".check.yaml"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    out = subprocess.run([BLOCKHUB, "--config", path, "--check"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=60)
    lines = text.splitlines()
    where = {k: next(i for i, l in enumerate(lines, 1) if l.startswith("    %s: " % k))
             for k in settings}
    return out, path, where


def test_check_refuses_what_start_would(kafka, hub_factory):
    hub = traffic_hub(hub_factory, kafka)
    out, _, _ = check(hub)
    assert out.returncode == 0, out.stderr
    for key, value in [("listen", ":70000"), ("listen", "127.0.0.1:-1"),
                       ("listen", "no-port-here"), ("topic", "dept traffic"),
                       ("topic", "")]:
        out, path, where = check(hub, **{key: value})
        assert out.returncode == 2, (key, value, out.stdout, out.stderr)
        assert "%s:%d:" % (path, where[key]) in out.stderr, out.stderr
        assert "adapters[traffic].%s" % key in out.stderr, out.stderr
