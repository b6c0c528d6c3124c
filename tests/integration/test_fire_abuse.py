"""The fire ingress under abuse: what once crashed the daemon or poisoned a topic.

Each test here failed before its fix (issue 7, items 1-5 and 11): a crash, an
answer that could never succeed, or a record nobody could decode.
"""
import json
import socket
import struct
import threading
import time

import bhcat
from conftest import TOKEN, Threads


def event(i, **over):
    ev = {"id": "abuse-%d" % i, "category": "alarm", "unit": "unit-%d" % i,
          "grid_code": "440303-047", "level": "low", "occurred_at": "2026-11-27T08:15:00+08:00"}
    ev.update(over)
    return ev


def raw_request(body, extra_headers=(), content_length=True):
    head = ["POST /v1/fire/events HTTP/1.1", "Host: 127.0.0.1",
            "Authorization: Bearer " + TOKEN, "Content-Type: application/json"]
    if content_length:
        head.append("Content-Length: %d" % len(body))
    head.extend(extra_headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def read_answer(sock, timeout=30):
    """Everything the server sends until it closes or goes quiet after one answer."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = [int(h.split(b":")[1]) for h in head.split(b"\r\n")
                      if h.lower().startswith(b"content-length:")]
            if length and len(rest) >= length[0]:
                sock.settimeout(2)
    return data


def status_of(answer):
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None


def assert_alive(hub):
    assert hub.proc.poll() is None, "blockhub died (%s):\n%s" % (hub.proc.returncode,
                                                                 hub.logtext())
    r = hub.post(event(999999))
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


def dead_letters(kafka, hub, decoder):
    out = []
    for m in bhcat.consume_all(kafka, hub.dlq_topic):
        name, rec = decoder.decode(m["value"])  # fastavro: fails on invalid UTF-8
        assert name == "blockhub.DeadLetter"
        out.append(rec)
    return out


def test_cut_utf8_after_escape_is_a_clear_400(kafka, hub_factory):
    """Item 1: a \\u escape followed by a multi-byte character crashed the daemon."""
    hub = hub_factory(kafka).start()
    bodies = ['{"unit":"\\u中文"}', '{"unit":"\\u0中"}', '["\\u中"]', '{"\\u中":1}',
              '{"unit":"中文\\', '{"unit":"\\ud800"}', '{"unit":"\\u12中3"}']
    for b in bodies:
        r = hub.post(b.encode("utf-8"))
        assert r.status_code == 400, (b, r.status_code, r.text)
        msg = r.json()["error"]  # valid JSON, valid UTF-8
        assert msg.startswith("malformed JSON"), msg
    # invalid UTF-8 bytes in the body itself
    for b in (b'{"unit":"\xe4\xb8"}', b'{"unit":"\xff"}', b'{"\xc3":1}'):
        r = hub.post(b)
        assert r.status_code == 400 and r.json()["error"], (b, r.text)
    assert_alive(hub)
    assert hub.stop() == 0


def test_pipelined_posts_then_reset(kafka, hub_factory):
    """Item 2: two pipelined POSTs then an abortive close killed the daemon by SIGPIPE."""
    hub = hub_factory(kafka).start()
    body = json.dumps(event(1)).encode()
    one = raw_request(body)
    for i in range(100):
        s = socket.create_connection(("127.0.0.1", hub.port))
        s.sendall(one + one)
        if i % 2:
            s.recv(1)  # the first answer has started: the second is still to be written
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST
    assert_alive(hub)
    assert hub.stop() == 0


def test_event_too_large_for_kafka_is_rejected_not_503(kafka, hub_factory, decoder):
    """Item 3: an event over message.max.bytes (under body_limit) got 503 forever."""
    hub = hub_factory(kafka).start()
    big = event(2, description="x" * 1_000_100)
    body = json.dumps([event(1), big]).encode()
    assert len(body) < 1024 * 1024
    for attempt in range(2):
        r = hub.post(body)
        assert r.status_code == 200, r.text
        ans = r.json()
        assert ans["accepted"] == 1
        assert [(x["index"], x["code"]) for x in ans["rejected"]] == [(1, "too_large")]
    dl = dead_letters(kafka, hub, decoder)
    assert [d["reason"] for d in dl] == ["too_large", "too_large"]
    for d in dl:
        assert d["payload_truncated"] and len(d["payload"]) == 64 * 1024
        assert d["origin"]["position"] == 1
    assert hub.stop() == 0


def test_message_max_bytes_warning(kafka, hub_factory):
    """Item 3: a body_limit over the producer's message.max.bytes is said at start."""
    hub = hub_factory(kafka, extra_sets=["kafka.properties.message.max.bytes=100000"]).start()
    log = hub.logtext()
    assert "body_limit" in log and "too_large" in log and "100000" in log, log
    assert hub.stop() == 0


def test_empty_array_is_accepted(kafka, hub_factory):
    """Item 4: [] and [ ] got 503 "cannot split the request body" forever."""
    hub = hub_factory(kafka).start()
    for b in (b"[]", b"[ ]", b" [\n\t] ", b"[\r\n]"):
        r = hub.post(b)
        assert r.status_code == 200, (b, r.text)
        assert r.json() == {"accepted": 0, "rejected": []}
    assert hub.stop() == 0


def test_long_cjk_fields_are_rejected_with_valid_utf8(kafka, hub_factory, decoder):
    """Item 5: 22+ CJK characters in a checked field lost the rejection and poisoned the DLQ."""
    hub = hub_factory(kafka).start()
    cjk = "火災隱患檢查整改通知書" * 4  # 44 characters, 132 bytes
    items = [event(10, category=cjk), event(11, level=cjk), event(12, occurred_at=cjk),
             event(13, grid_code=cjk), event(14, unit=cjk, description=cjk)]
    r = hub.post(items)
    assert r.status_code == 200, r.text
    ans = r.json()
    assert ans["accepted"] == 1
    got = {x["index"]: x for x in ans["rejected"]}
    assert sorted(got) == [0, 1, 2, 3]
    assert got[0]["code"] == got[1]["code"] == got[2]["code"] == "invalid_field"
    assert got[3]["code"] == "unresolved_block"
    for x in got.values():
        assert "火災" in x["reason"]  # the quote is cut between characters, not dropped
    dl = dead_letters(kafka, hub, decoder)
    assert sorted(d["origin"]["position"] for d in dl) == [0, 1, 2, 3]
    for d in dl:
        d["detail"].encode("utf-8")
        assert "火災" in d["detail"]
    msgs = bhcat.consume_all(kafka, hub.fire_topic)
    assert [decoder.decode(m["value"])[1]["unit"] for m in msgs] == [cjk]
    assert hub.stop() == 0


def test_duplicate_keys_and_nul_refused_per_item(kafka, hub_factory, decoder):
    """Item 11: one rule for both adapters: duplicate keys and \\u0000 are refused."""
    hub = hub_factory(kafka).start()
    good = json.dumps(event(20))
    dup = '{"id":"abuse-21","id":"abuse-22","category":"alarm","unit":"u","grid_code":"440303-047",' \
          '"level":"low","occurred_at":"2026-11-27T08:15:00+08:00"}'
    nul = json.dumps(event(23, unit="a\u0000b"))
    # at any depth, in a member no field reads
    deep_nul = json.dumps(event(24, extra={"note": ["x", "a\u0000"]}))
    deep_dup = json.dumps(event(25))[:-1] + ',"extra":{"a":1,"a":2}}'
    # each rule in a body of its own (a body breaking either is read another way)
    r = hub.post(("[%s,%s,%s]" % (good, nul, deep_nul)).encode())
    assert r.status_code == 200, r.text
    ans = r.json()
    assert ans["accepted"] == 1
    got = {x["index"]: x for x in ans["rejected"]}
    assert sorted(got) == [1, 2]
    for i in (1, 2):
        assert got[i]["code"] == "invalid_field"
        assert got[i]["reason"] == "invalid_field: a string holds \\u0000, which no field accepts"
    r = hub.post(("[%s,%s]" % (dup, deep_dup)).encode())
    assert r.status_code == 200, r.text
    ans = r.json()
    assert ans["accepted"] == 0
    got = {x["index"]: x for x in ans["rejected"]}
    assert sorted(got) == [0, 1]
    for i in (0, 1):
        assert got[i]["code"] == "invalid_json" and "duplicate" in got[i]["reason"]
    # a single-object body with a duplicate key is one rejected item too
    r = hub.post(dup.encode())
    assert r.status_code == 200 and r.json()["rejected"][0]["code"] == "invalid_json"
    dl = dead_letters(kafka, hub, decoder)
    assert sorted(d["payload"] for d in dl) == sorted(
        x.encode() for x in (dup, nul, deep_nul, deep_dup, dup))
    msgs = bhcat.consume_all(kafka, hub.fire_topic)
    assert [decoder.decode(m["value"])[1]["event_id"] for m in msgs] == ["abuse-20"]
    assert hub.stop() == 0


def test_duplicate_content_length_is_400_and_close(kafka, hub_factory):
    """Item 11: a second Content-Length was parsed as a second request."""
    hub = hub_factory(kafka).start()
    body = json.dumps(event(30)).encode()
    smuggled = raw_request(b"", extra_headers=()).replace(b"\r\n\r\n", b"\r\n")
    cases = [
        raw_request(body, extra_headers=["Content-Length: %d" % len(body)]),
        raw_request(body + smuggled, extra_headers=["Content-Length: %d" % (len(body) + 1)]),
        raw_request(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
                    extra_headers=["Transfer-Encoding: chunked"], content_length=False)
        .replace(b"Transfer-Encoding", b"Content-Length: 5\r\nTransfer-Encoding"),
    ]
    for req in cases:
        s = socket.create_connection(("127.0.0.1", hub.port))
        s.sendall(req)
        ans = read_answer(s)
        s.close()
        assert status_of(ans) == 400, ans
        assert ans.count(b"HTTP/1.1") == 1, ans  # nothing after it is taken as a request
        assert b"ambiguous framing" in ans
    assert not bhcat.consume_all(kafka, hub.fire_topic)
    assert_alive(hub)
    assert hub.stop() == 0


def test_live_abuse_while_a_good_client_posts(kafka, hub_factory, decoder):
    """Abuse of every kind at once; a well-behaved sender's POSTs keep succeeding."""
    hub = hub_factory(kafka).start()
    stop = threading.Event()
    errors = []
    good_ids = []

    def good_client():
        i = 0
        while not stop.is_set():
            ids = ["good-%d-%d" % (i, k) for k in range(3)]
            r = hub.post([event(0, id=x) for x in ids])
            if r.status_code != 200 or r.json()["accepted"] != 3:
                errors.append((r.status_code, r.text))
                return
            good_ids.extend(ids)
            i += 1

    def resetter():
        one = raw_request(json.dumps(event(1)).encode())
        while not stop.is_set():
            s = socket.create_connection(("127.0.0.1", hub.port))
            s.sendall(one + one + one[:40])
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

    cut = "中".encode()[:2]

    def garbage():
        fields = ["id", "category", "unit", "building_id", "grid_code", "level", "description",
                  "occurred_at"]
        while not stop.is_set():
            for f in fields:
                ev = json.dumps(event(2)).encode()
                bad = ev.replace(b'"%s": "' % f.encode(), b'"%s": "%s' % (f.encode(), cut), 1)
                hub.post(bad)
                hub.post(json.dumps(event(3, **{f: "漢字" * 30})).encode())
                hub.post(b'{"%s":"\\u%s"}' % (f.encode(), "中".encode()))
            hub.post(b"[]")
            hub.post(b"[ ]")
            hub.post(json.dumps([event(4, description="y" * 1_000_100)]).encode())
            hub.post(b"[" + b",".join([json.dumps(event(5)).encode()] * 1001) + b"]")

    threads = Threads()  # an exception in any of them fails the test
    for f in (good_client, resetter, garbage):
        threads.start(f)
    deadline = time.monotonic() + 20  # 20 s of abuse
    while (time.monotonic() < deadline and not errors and not threads.errors
           and hub.proc.poll() is None):
        time.sleep(0.2)
    stop.set()
    threads.join(60)
    assert hub.proc.poll() is None, hub.logtext()
    assert not errors, errors
    assert len(good_ids) > 30
    assert hub.stop() == 0
    published = set()
    for m in bhcat.consume_all(kafka, hub.fire_topic):
        published.add(decoder.decode(m["value"])[1]["event_id"])
    assert set(good_ids) <= published
    dead_letters(kafka, hub, decoder)  # every dead letter decodes
