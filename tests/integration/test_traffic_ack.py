"""The traffic hello, its tokens and acknowledgements (docs/feeds.md 4.4), against a real broker.

A gateway's first line may be a hello; with auth token it must be one, naming one of the
adapter's tokens, or the connection gets one error line and is closed with nothing of it
published. A hello with "ack": true gets {"ack": N} lines back: every line up to N of the
connection is in Kafka or dead-lettered. The last test kills the hub with SIGKILL five
times under four acknowledging gateways (the simulator): every line each of them sent is
in the topic, counted against what it says it sent.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import bhcat
from conftest import SRC, WAIT_SCALE, WORLD, deadline_after, free_port, wait_until
from test_traffic import event, ndjson, traffic_hub

SIM = os.path.join(SRC, "tools", "blockhub-sim")
GW_TOKEN = "gw-token-7f3a"


def read_lines(sock, until, timeout=60):
    """JSON lines SOCK sends until UNTIL(lines) holds or it closes; (lines, closed)."""
    sock.settimeout(timeout * WAIT_SCALE)
    buf, lines = b"", []
    deadline = deadline_after(timeout)
    while not until(lines):
        assert time.monotonic() < deadline, "timed out; got %r" % lines
        data = sock.recv(65536)
        if not data:
            return lines, True
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            lines.append(json.loads(line))
    return lines, False


def closed_after_error(sock):
    lines, closed = read_lines(sock, lambda ls: False)
    assert closed and len(lines) == 1 and lines[0]["error"] == "refused", lines
    return lines[0]["detail"]


def gateway(hub, hello=None):
    s = socket.create_connection(("127.0.0.1", hub.traffic_port), timeout=60)
    if hello is not None:
        s.sendall(json.dumps(hello).encode() + b"\n")
    return s


def ids_in(kafka, topic):
    return [m["headers"]["blockhub.event_id"].decode() for m in bhcat.consume_all(kafka, topic)]


def test_auth_token_refuses_whoever_has_no_token(kafka, hub_factory):
    hub = traffic_hub(hub_factory, kafka, auth="token", tokens=[GW_TOKEN, "second-token"],
                      hello_timeout="500ms").start()
    assert "auth is none" not in hub.logtext()
    # no hello: the first line is an event
    s = gateway(hub)
    s.sendall(ndjson([event(1, "AU-NOHELLO")]))
    assert "hello" in closed_after_error(s)
    # a wrong token, no token, a version this blockhub does not speak
    for hello, why in (({"hello": 1, "token": "wrong"}, "token"),
                       ({"hello": 1, "ack": True}, "no token"),
                       ({"hello": 2, "token": GW_TOKEN}, "version")):
        s = gateway(hub, hello)
        s.sendall(ndjson([event(2, "AU-BAD")]))
        assert why in closed_after_error(s), hello
    # nothing at all within hello_timeout
    s = gateway(hub)
    assert "hello_timeout" in closed_after_error(s)
    # the right token (either of them): served, answered, no acks asked for
    good = []
    for k, tok in enumerate((GW_TOKEN, "second-token")):
        s = gateway(hub, {"hello": 1, "token": tok, "gateway": "jj-gw-%d" % k})
        evs = [event(100 * k + i, "AU-OK") for i in range(50)]
        s.sendall(ndjson(evs))
        lines, closed = read_lines(s, lambda ls: len(ls) >= 1)
        assert lines == [{"hello": 1, "ack": False}] and not closed
        good += [e["event_id"] for e in evs]
        s.shutdown(socket.SHUT_WR)
        assert read_lines(s, lambda ls: False) == ([], True)  # no acks: none asked for
    wait_until(lambda: len(ids_in(kafka, hub.traffic_topic)) >= len(good), "the events", hub=hub)
    assert sorted(ids_in(kafka, hub.traffic_topic)) == sorted(good)
    assert hub.logtext().count("refusing gateway") >= 1
    assert hub.stop() == 0


def test_auth_must_be_said(kafka, hub_factory):
    """No auth key: refused with the key and the reason; none with tokens: refused too."""
    for settings, why in (({}, "adapters[traffic].auth"),
                          ({"auth": "none", "tokens": ["x"]}, "adapters[traffic].tokens"),
                          ({"auth": "token"}, "adapters[traffic].tokens"),
                          ({"auth": "sometimes"}, "adapters[traffic].auth")):
        hub = traffic_hub(hub_factory, kafka, **settings)
        if "auth" not in settings:
            # traffic_hub says auth: none; take it out again
            with open(hub.config, encoding="utf-8") as f:
                text = f.read().replace('    auth: "none"\n', "")
            with open(hub.config, "w", encoding="utf-8") as f:
                f.write(text)
        out = subprocess.run([hub.binary, "--config", hub.config, "--check"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and why in out.stderr, (settings, out.stderr)
    hub = traffic_hub(hub_factory, kafka).start()
    assert "auth is none: any host that reaches" in hub.logtext()
    assert hub.stop() == 0


def test_acks_cover_every_line_once_published(kafka, hub_factory, decoder):
    hub = traffic_hub(hub_factory, kafka).start()  # auth none: a hello is optional
    s = gateway(hub, {"hello": 1, "gateway": "ack-test", "ack": True})
    evs = [event(i, "AK") for i in range(2000)]
    body = ndjson(evs[:1000]) + b'{"type": "heartbeat"}\n' + b"\n" + b"not json\n" + \
        ndjson(evs[1000:])
    s.sendall(body)
    last = 1 + body.count(b"\n")  # the hello is line 1; the blank line counts
    lines, closed = read_lines(s, lambda ls: ls and ls[-1].get("ack") == last)
    assert not closed and lines[0] == {"hello": 1, "ack": True}, lines[:3]
    acks = [m["ack"] for m in lines[1:]]
    assert acks == sorted(set(acks)) and acks[-1] == last, acks  # cumulative, rising
    # everything acknowledged is there: every event, and the bad line as a dead letter
    assert sorted(ids_in(kafka, hub.traffic_topic)) == sorted(e["event_id"] for e in evs)
    dead = [decoder.decode(m["value"])[1] for m in bhcat.consume_all(kafka, hub.dlq_topic)]
    assert [(d["reason"], d["payload"]) for d in dead] == [("invalid_json", b"not json")]
    # a gateway that is done sending waits for its last acks, then blockhub closes
    s.sendall(ndjson([event(5000 + i, "AK-END") for i in range(300)]))
    s.shutdown(socket.SHUT_WR)
    lines, closed = read_lines(s, lambda ls: False)
    assert closed and lines and lines[-1] == {"ack": last + 300}, lines[-3:]
    assert hub.stop() == 0


def test_sigterm_acknowledges_every_line_read_before_closing(kafka, hub_factory):
    """At SIGTERM an acknowledging connection is drained of what its socket holds, and stays
    open until those lines are in Kafka: its last ack covers every line, then it closes."""
    from test_traffic_shutdown import freeze, unsent, wait_until as wait_for
    hub = traffic_hub(hub_factory, kafka).start()
    s = gateway(hub, {"hello": 1, "ack": True})
    assert read_lines(s, lambda ls: ls)[0][0] == {"hello": 1, "ack": True}
    evs = [event(i, "AK-TERM") for i in range(300)]
    # frozen, blockhub reads nothing: at the stop every line is read and none acknowledged
    freeze(hub.proc.pid)
    s.sendall(ndjson(evs))
    wait_for(lambda: unsent(s) == 0, "blockhub's kernel to hold every byte")
    hub.proc.send_signal(signal.SIGTERM)
    hub.proc.send_signal(signal.SIGCONT)
    lines, closed = read_lines(s, lambda ls: False)
    assert closed and lines[-1] == {"ack": 301}, lines[-3:]
    assert hub.stop(None) == 0
    assert sorted(ids_in(kafka, hub.traffic_topic)) == sorted(e["event_id"] for e in evs)


def restart(hub):
    """Start HUB's process again after a kill and wait for its new ready line."""
    seen = len(hub.logtext())
    hub.log = open(hub.logpath, "ab")
    args = [hub.binary, "--config", hub.config] + [a for s in hub.sets for a in ("--set", s)]
    hub.proc = subprocess.Popen(args, stdout=hub.log, stderr=subprocess.STDOUT)
    wait_until(lambda: "hub: ready" in hub.logtext()[seen:] or
               '"msg":"ready:' in hub.logtext()[seen:], "blockhub ready again", timeout=60)


def test_kill9_five_times_loses_no_acknowledged_line(kafka, hub_factory, decoder, tmp_path):
    """Show: kill -9 of the hub 5 times during acknowledged traffic streams from 4 gateways:
    every line is in the topic (or, bad, dead-lettered), counted against the gateways' own
    account of what they sent and had acknowledged."""
    hub = traffic_hub(hub_factory, kafka, auth="token", tokens=[GW_TOKEN]).start()
    truth_path = tmp_path / "truth.json"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    sim = subprocess.Popen(
        [sys.executable, SIM, "--blocks", os.path.join(WORLD, "blocks.geojson"), "--seed", "12",
         "--mix", "traffic=1", "--traffic", "127.0.0.1:%d" % hub.traffic_port,
         "--connections", "4", "--traffic-ack", "--traffic-token", GW_TOKEN,
         "--count", "40000", "--rate", "2000", "--bad", "0.01", "--heartbeat", "1",
         "--connect-timeout", "60", "--truth", str(truth_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        kills, since = 0, 0
        while kills < 5:
            # once the four gateways are back, a kill after 1.5 to 3.5 s of traffic (the
            # seed is printed on failure)
            wait_until(lambda: hub.logtext()[since:].count("hello, acknowledgements on") >= 4,
                       "four gateways connected", timeout=60)
            time.sleep(rng.uniform(1.5, 3.5))
            assert sim.poll() is None, "seed %d: the run ended before kill %d" % (seed, kills + 1)
            hub.proc.kill()
            hub.proc.wait()
            hub.log.close()
            kills += 1
            since = len(hub.logtext())
            restart(hub)
        out, _ = sim.communicate(timeout=300)
    finally:
        if sim.poll() is None:
            sim.kill()
    assert sim.returncode == 0, "seed %d:\n%s" % (seed, out)
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    stats = truth["stats"]["traffic"]
    assert stats["reconnects"] >= 5 * 4 and stats["resent_lines"] > 0, (seed, stats)
    sent = set(truth["event_ids"]["traffic"])
    assert truth["totals"]["traffic"]["sent"] == 40000 and len(sent) > 39000
    # every line each gateway had acknowledged is in the topic
    got = set(ids_in(kafka, hub.traffic_topic))
    lost = sent - got
    assert not lost, "seed %d: %d acknowledged line(s) lost, e.g. %s" % (
        seed, len(lost), sorted(lost)[:5])
    assert got <= sent
    # and every bad line is dead-lettered (resent copies of one count once)
    dead = {}
    for m in bhcat.consume_all(kafka, hub.dlq_topic):
        _, rec = decoder.decode(m["value"])
        dead.setdefault(rec["reason"], set()).add(rec["payload"])
    assert {r: len(p) for r, p in dead.items()} == truth["bad"]["traffic"], seed
    assert hub.stop() == 0
