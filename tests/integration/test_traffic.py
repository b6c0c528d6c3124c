"""The traffic feed end to end against a real broker (docs/feeds.md, section 4): JSON lines."""
import bisect
import datetime
import itertools
import json
import os
import random
import re
import select
import socket
import time
import uuid

import bhcat
from confluent_kafka import Consumer, TopicPartition
from conftest import Threads, WORLD, deadline_after, free_port

SAMPLE = os.path.join(WORLD, "samples", "traffic", "gateway.ndjson")
TYPES = {"accident", "congestion", "ebike_violation", "motorcycle_violation",
         "illegal_parking", "signal_fault", "red_light"}
UTC = datetime.timezone.utc
MiB = 1024 * 1024
MAX_PAYLOAD = 64 * 1024  # dead_letter.max_payload's default


def traffic_hub(hub_factory, brokers, fire=False, extra_sets=(), **settings):
    """A hub with one traffic adapter on a port and topic of its own."""
    port = free_port()
    topic = "dept.traffic.%s" % uuid.uuid4().hex[:10]
    entry = {"name": "traffic", "type": "traffic", "auth": "none", "listen": "127.0.0.1:%d" % port,
             "topic": topic}
    entry.update(settings)
    hub = hub_factory(brokers, adapters=[entry], fire=fire, extra_sets=list(extra_sets))
    hub.traffic_port = port
    hub.traffic_topic = topic
    return hub


def connect(hub):
    s = socket.create_connection(("127.0.0.1", hub.traffic_port), timeout=60)
    return s, "%s:%d" % s.getsockname()


def lines_of(data):
    """(line number, bytes) of each non-blank line, framed as docs/feeds.md, section 4.2 says."""
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    out = []
    for number, raw in enumerate(parts, 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw.strip(b" \t"):
            out.append((number, raw))
    return out


def event(i, prefix, lon=114.130019, lat=22.546712):
    return {"event_id": "%s-%07d" % (prefix, i), "device": "CAM-T-%03d" % (i % 400),
            "type": sorted(TYPES)[i % len(TYPES)], "lon": lon, "lat": lat,
            "severity": 1 + i % 5, "ts": 1795737600000 + i, "plate": "粤B%05d" % (i % 100000)}


def ndjson(events):
    return b"".join(json.dumps(e, ensure_ascii=False).encode() + b"\n" for e in events)


def topic_size(bootstrap, topic):
    """Messages now in TOPIC (the sum of its partitions' end offsets)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "size-%s" % uuid.uuid4().hex})
    try:
        md = c.list_topics(topic, timeout=30).topics.get(topic)
        if md is None or md.error is not None:
            return 0
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                   for p in md.partitions)
    finally:
        c.close()


def wait_for_sizes(bootstrap, wants, timeout=120):
    """Wait until each topic holds at least its count; returns the counts."""
    deadline = deadline_after(timeout)
    while True:
        got = {t: topic_size(bootstrap, t) for t in wants}
        if all(got[t] >= n for t, n in wants.items()):
            return got
        assert time.monotonic() < deadline, "timed out: have %r, want %r" % (got, wants)
        time.sleep(0.3)


def decoded(bootstrap, topic, decoder, schema):
    out = []
    for m in bhcat.consume_all(bootstrap, topic, timeout=120):
        name, rec = decoder.decode(m["value"])
        assert name == schema
        out.append((m, rec))
    return out


def proc_status(pid, field):
    """VmRSS, VmHWM... of PID in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def test_sample_over_tcp(kafka, hub_factory, decoder, blocks):
    with open(SAMPLE, "rb") as f:
        raw = f.read()
    # What docs/feeds.md (section 4) implies for each line, worked out here independently.
    want_records, want_dead = {}, {}
    for number, line in lines_of(raw):
        try:
            obj = json.loads(line)
        except ValueError:
            want_dead[number] = "invalid_json"
            continue
        if obj.get("type") == "heartbeat":
            continue
        if obj["type"] not in TYPES:
            want_dead[number] = "invalid_field"
            continue
        block = blocks.resolve(lon=obj["lon"], lat=obj["lat"])
        if block is None:
            want_dead[number] = "unresolved_block"
            continue
        want_records[obj["event_id"]] = (obj, block)
    assert want_dead == {27: "invalid_json", 28: "invalid_field", 29: "unresolved_block"}
    assert len(want_records) == 25

    hub = traffic_hub(hub_factory, kafka).start()
    t0 = datetime.datetime.now(UTC) - datetime.timedelta(seconds=1)
    s, peer = connect(hub)
    for i in range(0, len(raw), 97):  # small writes: lines split across reads
        s.sendall(raw[i:i + 97])
        time.sleep(0.002)
    s.close()
    wait_for_sizes(kafka, {hub.traffic_topic: 25, hub.dlq_topic: 3})
    assert hub.stop() == 0
    t1 = datetime.datetime.now(UTC)

    msgs = decoded(kafka, hub.traffic_topic, decoder, "blockhub.traffic.TrafficEvent")
    assert sorted(rec["event_id"] for _, rec in msgs) == sorted(want_records)
    for m, rec in msgs:
        obj, block = want_records[rec["event_id"]]
        assert m["key"].decode() == block
        assert m["headers"]["blockhub.event_id"].decode() == obj["event_id"]
        assert m["headers"]["blockhub.adapter"] == b"traffic"
        assert rec["block_id"] == block
        assert rec["device"] == obj["device"]
        assert rec["type"] == obj["type"]
        assert rec["lon"] == obj["lon"] and rec["lat"] == obj["lat"]
        assert rec["severity"] == obj["severity"]
        assert rec["occurred_at"] == datetime.datetime.fromtimestamp(obj["ts"] / 1000, UTC)
        assert rec["occurred_at"].utcoffset() == datetime.timedelta(0)
        assert rec["plate"] == obj.get("plate")
        assert rec["road"] == obj.get("road")
        assert rec["peer"] == peer
        assert t0 <= rec["received_at"] <= t1

    dlq = decoded(kafka, hub.dlq_topic, decoder, "blockhub.DeadLetter")
    lines = dict(lines_of(raw))
    dead = {rec["origin"]["position"]: rec for _, rec in dlq}
    assert {p: d["reason"] for p, d in dead.items()} == want_dead
    for position, d in dead.items():
        assert d["adapter"] == "traffic" and d["adapter_type"] == "traffic"
        assert d["origin"] == {"transport": "tcp", "source": "127.0.0.1:%d" % hub.traffic_port,
                               "peer": peer, "position": position}
        assert d["payload"] == lines[position]
        assert d["payload_truncated"] is False
    assert "not valid JSON" in dead[27]["detail"]
    assert "ufo_sighting" in dead[28]["detail"]
    assert "no block" in dead[29]["detail"]
    # the heartbeat (line 11) is neither a record nor a dead letter
    assert b"heartbeat" in lines[11]
    assert 11 not in dead
    assert all(b"heartbeat" not in m["value"] for m, _ in msgs)


def test_daemon_allocates_with_mimalloc(kafka, hub_factory, monkeypatch):
    """The daemon's allocator is mimalloc (CMakeLists.txt, BH_MIMALLOC): it is mapped into the
    running process, and at exit it reports the heap it served (MIMALLOC_SHOW_STATS), memory
    that lines, records and librdkafka's messages were allocated from. The sanitizer builds keep
    their own allocator instead."""
    monkeypatch.setenv("MIMALLOC_SHOW_STATS", "1")
    hub = traffic_hub(hub_factory, kafka).start()
    with open(SAMPLE, "rb") as f, socket.create_connection(("127.0.0.1", hub.traffic_port)) as s:
        s.sendall(f.read())
    with open("/proc/%d/maps" % hub.proc.pid) as f:
        mapped = "libmimalloc" in f.read()
    assert hub.stop() == 0
    if os.environ.get("BH_SANITIZED", "").lower() in ("1", "on", "true"):
        assert not mapped and "heap stats:" not in hub.logtext()
        return
    assert mapped
    m = re.search(r"^ *committed: +([0-9.]+) (KiB|MiB|GiB)", hub.logtext(), re.M)
    assert m is not None, hub.logtext()[-3000:]
    assert float(m.group(1)) * {"KiB": 1, "MiB": 1024, "GiB": 1 << 20}[m.group(2)] >= 1024


def test_broker_stopped_holds_gateway_back(own_broker, hub_factory, decoder):
    # librdkafka gives up on a message after 4 s: with the broker down longer
    # than that, deliveries fail and the adapter must publish those lines again.
    hub = traffic_hub(hub_factory, own_broker.bootstrap, max_in_flight=2000,
                      extra_sets=["kafka.properties.message.timeout.ms=4000"]).start()
    pid = hub.proc.pid
    events = [event(i, "JJ-BP") for i in range(400000)]
    lines = [json.dumps(e, ensure_ascii=False).encode() + b"\n" for e in events]
    data = b"".join(lines)
    ends = list(itertools.accumulate(map(len, lines)))  # where each line ends in DATA

    s, _ = connect(hub)
    s.sendall(data[:ends[999]])  # a first thousand flow while the broker is up
    wait_for_sizes(own_broker.bootstrap, {hub.traffic_topic: 1000})
    base = proc_status(pid, "VmRSS")

    own_broker.stop()
    s.setblocking(False)
    sent = down_at = ends[999]
    # Write as fast as possible until the gateway is held back for good: 3 s in a
    # row in which every send is refused (EAGAIN). The kernel's socket buffers
    # take their share first (while blockhub has stopped reading it may still
    # compact its receive queue and take a little more); they cannot take more
    # than tcp_wmem's and tcp_rmem's maxima, far less than the 70 MB on offer.
    with open("/proc/sys/net/ipv4/tcp_rmem") as f:
        kernel = int(f.read().split()[2])
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        kernel += int(f.read().split()[2])
    deadline = deadline_after(120)
    refused_since = None
    while refused_since is None or time.monotonic() - refused_since < 3:
        assert time.monotonic() < deadline, "the gateway was never held back"
        try:
            sent += s.send(data[sent:sent + 65536])
            refused_since = None
        except BlockingIOError:
            refused_since = refused_since or time.monotonic()
            time.sleep(0.05)
        assert sent - down_at < kernel + 4 * MiB, \
            "%d bytes taken with the broker down" % (sent - down_at)
    # Held back. blockhub holds at most max_in_flight lines (each a ~200-byte
    # copy in a 512-byte slot, plus librdkafka's copy of its record and headers:
    # under 4 KiB together), one 64 KiB read buffer and one line buffer of at
    # most max_line (64 KiB): 2000 * 4 KiB + 128 KiB < 9 MiB over what it used
    # before. 16 MiB leaves room for allocator slack; a reader without
    # back-pressure would hold the 70 MB the gateway wants to write.
    rss = []
    for _ in range(10):
        try:
            s.send(data[sent:sent + 65536])
            raise AssertionError("the gateway could write again with the broker down")
        except BlockingIOError:
            pass
        rss.append(proc_status(pid, "VmRSS"))
        time.sleep(0.2)
    bound = base + 16 * MiB
    assert max(rss) < bound, "RSS %d > %d (before: %d)" % (max(rss), bound, base)
    print("held back after %d bytes; RSS %d before, %d at most after" % (sent - down_at, base, max(rss)))

    own_broker.start()
    s.setblocking(True)
    s.settimeout(300)
    n = bisect.bisect_left(ends, sent) + 1  # finish the line being written, then close
    s.sendall(data[sent:ends[n - 1]])
    s.close()
    wait_for_sizes(own_broker.bootstrap, {hub.traffic_topic: n}, timeout=300)
    assert hub.stop() == 0
    assert "publishing" in hub.logtext() and "again" in hub.logtext()  # retries happened
    msgs = bhcat.consume_all(own_broker.bootstrap, hub.traffic_topic, timeout=120)
    ids = {m["headers"]["blockhub.event_id"].decode() for m in msgs}
    assert ids == {e["event_id"] for e in events[:n]}
    assert bhcat.consume_all(own_broker.bootstrap, hub.dlq_topic) == []
    for m in msgs[:100]:
        _, rec = decoder.decode(m["value"])
        assert rec["event_id"] == m["headers"]["blockhub.event_id"].decode()


def test_ten_mebibyte_line(kafka, hub_factory, decoder):
    hub = traffic_hub(hub_factory, kafka).start()
    pid = hub.proc.pid
    before = proc_status(pid, "VmHWM")
    big = b'{"event_id": "JJ-BIG-1", "pad": "' + b"x" * (10 * MiB) + b'"}'
    s, peer = connect(hub)
    s.sendall(ndjson([event(1, "JJ-BIG")]) + big + b"\n" + ndjson([event(3, "JJ-BIG")]))
    s.close()
    wait_for_sizes(kafka, {hub.traffic_topic: 2, hub.dlq_topic: 1})
    grown = proc_status(pid, "VmHWM") - before
    assert grown < 4 * MiB, "the 10 MiB line grew blockhub's memory by %d bytes" % grown
    assert hub.stop() == 0
    msgs = decoded(kafka, hub.traffic_topic, decoder, "blockhub.traffic.TrafficEvent")
    assert sorted(rec["event_id"] for _, rec in msgs) == ["JJ-BIG-0000001", "JJ-BIG-0000003"]
    [(_, d)] = decoded(kafka, hub.dlq_topic, decoder, "blockhub.DeadLetter")
    assert d["reason"] == "too_large"
    assert str(len(big)) in d["detail"]
    assert d["origin"]["position"] == 2 and d["origin"]["peer"] == peer
    assert d["payload"] == big[:MAX_PAYLOAD]
    assert d["payload_truncated"] is True


def test_binary_garbage_and_others_go_on(kafka, hub_factory, decoder):
    hub = traffic_hub(hub_factory, kafka, fire=True).start()
    good, good_peer = connect(hub)
    bad, bad_peer = connect(hub)
    rng = random.Random(20261127)
    garbage = bytes(rng.getrandbits(8) for _ in range(256 * 1024)) + b"\x00\xff"
    bad.sendall(garbage)
    bad.close()
    good.sendall(ndjson(event(i, "JJ-GOOD") for i in range(100)))
    r = hub.post({"id": "XF-G-1", "category": "alarm", "unit": "u", "level": "low",
                  "occurred_at": "2026-11-27T00:00:00Z", "grid_code": "440303-001"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    good.sendall(ndjson(event(i, "JJ-GOOD") for i in range(100, 200)))
    good.close()

    expected = {}
    for number, line in lines_of(garbage):
        try:
            line.decode("utf-8")
            expected[number] = ("invalid_json", line)
        except UnicodeDecodeError:
            expected[number] = ("invalid_encoding", line)
    assert len(expected) > 100
    wait_for_sizes(kafka, {hub.traffic_topic: 200, hub.dlq_topic: len(expected)})
    assert hub.proc.poll() is None
    assert hub.stop() == 0
    msgs = decoded(kafka, hub.traffic_topic, decoder, "blockhub.traffic.TrafficEvent")
    assert sorted(rec["event_id"] for _, rec in msgs) == ["JJ-GOOD-%07d" % i for i in range(200)]
    assert {rec["peer"] for _, rec in msgs} == {good_peer}
    dead = {}
    for _, d in decoded(kafka, hub.dlq_topic, decoder, "blockhub.DeadLetter"):
        assert d["origin"]["peer"] == bad_peer
        dead[d["origin"]["position"]] = (d["reason"], d["payload"])
    assert dead == expected
    assert len(bhcat.consume_all(kafka, hub.fire_topic)) == 1


def test_fifty_connections_at_once(kafka, hub_factory, decoder, blocks):
    hub = traffic_hub(hub_factory, kafka).start()
    with open(SAMPLE, "rb") as f:
        points = [(o["lon"], o["lat"]) for o in map(json.loads, f.read().splitlines()[:10])]
    conns = [connect(hub) for _ in range(50)]
    per_conn = 200
    peers = {}

    def gateway(k):
        s, peer = conns[k]
        evs = [event(k * per_conn + i, "JJ-MANY", *points[i % len(points)])
               for i in range(per_conn)]
        for e in evs:
            peers[e["event_id"]] = (peer, blocks.resolve(lon=e["lon"], lat=e["lat"]))
        data = ndjson(evs)
        for i in range(0, len(data), 1000):
            s.sendall(data[i:i + 1000])
            time.sleep(0.001)
        s.close()

    threads = Threads()  # an error in any gateway fails the test
    for k in range(50):
        threads.start(gateway, k)
    threads.join(120)
    wait_for_sizes(kafka, {hub.traffic_topic: 50 * per_conn})
    assert hub.stop() == 0
    msgs = decoded(kafka, hub.traffic_topic, decoder, "blockhub.traffic.TrafficEvent")
    assert len(msgs) == 50 * per_conn
    assert {rec["event_id"] for _, rec in msgs} == set(peers)
    for m, rec in msgs:
        peer, block = peers[rec["event_id"]]
        assert rec["peer"] == peer
        assert m["key"].decode() == block
    assert bhcat.consume_all(kafka, hub.dlq_topic) == []


def test_connections_that_end_mid_line(kafka, hub_factory, decoder):
    hub = traffic_hub(hub_factory, kafka, idle_timeout="1s").start()
    # closed by the gateway in the middle of its second line
    a, a_peer = connect(hub)
    a.sendall(ndjson([event(1, "JJ-END")]) + b'{"event_id": "JJ-END-CUT", "dev')
    a.close()
    # a whole object, but the connection closes before its newline: still a record
    b, _ = connect(hub)
    b.sendall(ndjson([event(2, "JJ-END")]).rstrip(b"\n"))
    b.close()
    # silent for longer than idle_timeout, in the middle of a line
    c, c_peer = connect(hub)
    c.sendall(b'{"event_id": "JJ-END-IDLE"')
    c.settimeout(20)
    t0 = time.monotonic()
    assert c.recv(1) == b""  # closed by blockhub
    assert 0.9 <= time.monotonic() - t0 < 15
    c.close()
    wait_for_sizes(kafka, {hub.traffic_topic: 2, hub.dlq_topic: 2})
    # blockhub stops while a gateway is in the middle of a line
    d, d_peer = connect(hub)
    d.sendall(b'{"event_id": "JJ-END-STOP"')
    time.sleep(0.5)
    assert hub.stop() == 0
    d.close()
    msgs = decoded(kafka, hub.traffic_topic, decoder, "blockhub.traffic.TrafficEvent")
    assert sorted(rec["event_id"] for _, rec in msgs) == ["JJ-END-0000001", "JJ-END-0000002"]
    dead = {d["origin"]["peer"]: d
            for _, d in decoded(kafka, hub.dlq_topic, decoder, "blockhub.DeadLetter")}
    assert set(dead) == {a_peer, c_peer, d_peer}
    assert dead[a_peer]["reason"] == "invalid_json"
    assert dead[a_peer]["origin"]["position"] == 2
    assert dead[a_peer]["payload"] == b'{"event_id": "JJ-END-CUT", "dev'
    assert "closed the connection before the end of the line" in dead[a_peer]["detail"]
    assert dead[c_peer]["reason"] == "invalid_json"
    assert "idle" in dead[c_peer]["detail"]
    assert dead[d_peer]["reason"] == "invalid_json"
    assert "stopped before the end of the line" in dead[d_peer]["detail"]


def test_max_connections(kafka, hub_factory, decoder):
    hub = traffic_hub(hub_factory, kafka, max_connections=2).start()
    first = [connect(hub) for _ in range(2)]
    time.sleep(0.3)
    extra, _ = connect(hub)
    extra.settimeout(10)
    assert extra.recv(1) == b""  # closed at once
    extra.close()
    for k, (s, _) in enumerate(first):
        s.sendall(ndjson([event(k, "JJ-MAX")]))
        s.close()
    wait_for_sizes(kafka, {hub.traffic_topic: 2})
    assert "max_connections" in hub.logtext()
    assert hub.stop() == 0
