"""SIGTERM during a traffic stream: what the gateways' bytes reached blockhub's kernel is published.

A gateway cannot know which of its lines blockhub took when it stops, so blockhub takes all
that the kernel has delivered: connections already accepted, connections still in the listen
backlog, and connections paused by back-pressure. Each test makes sure the bytes are in
blockhub's socket buffers and not read (the kernel's queues say so) before the SIGTERM, so
blockhub cannot have read them by luck; then every line sent must be in the topic (or, for a
line cut off, the dead-letter topic), counted by event id.
"""
import fcntl
import os
import signal
import struct
import termios
import time

from conftest import deadline_after
from test_traffic import connect, decoded, event, ndjson, traffic_hub
from test_traffic_abuse import wait_for_sizes


def tcp_queues(local_port, remote_port):
    """(tx, rx) bytes queued on the socket LOCAL_PORT -> REMOTE_PORT (any loopback address)."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote = fields[1].split(":"), fields[2].split(":")
                if int(local[1], 16) == local_port and int(remote[1], 16) == remote_port:
                    tx, rx = fields[4].split(":")
                    return int(tx, 16), int(rx, 16)
    return None


def unsent(sock):
    """Bytes SOCK has not yet had acknowledged by the other side's kernel."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def wait_until(cond, what, timeout=30):
    deadline = deadline_after(timeout)
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.02)


def freeze(pid):
    """SIGSTOP PID and wait until it is stopped (the signal takes effect asynchronously)."""
    os.kill(pid, signal.SIGSTOP)

    def stopped():
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")

    wait_until(stopped, "process %d to stop" % pid)


def unread(hub, sock):
    """Bytes from SOCK that sit in blockhub's receive queue, not read."""
    q = tcp_queues(hub.traffic_port, sock.getsockname()[1])
    return q[1] if q is not None else -1


def test_sigterm_reads_what_the_kernel_holds(kafka, hub_factory, decoder):
    hub = traffic_hub(hub_factory, kafka).start()
    pid = hub.proc.pid
    # one gateway accepted and reading before blockhub is stopped...
    gateways = [connect(hub)]
    wait_until(lambda: "gateway %s connected" % gateways[0][1] in hub.logtext(), "the accept")
    per_gateway = 120
    want = {}  # event id -> peer
    cut = b'{"event_id": "JJ-TERM-CUT", "device": "CAM-'
    try:
        freeze(pid)
        # ... and four whose connections the kernel completes while blockhub is frozen
        gateways += [connect(hub) for _ in range(4)]
        sizes = []
        for k, (s, peer) in enumerate(gateways):
            evs = [event(k * 1000 + i, "JJ-TERM") for i in range(per_gateway)]
            data = ndjson(evs) + (cut if k == len(gateways) - 1 else b"")
            s.sendall(data)
            sizes.append(len(data))
            want.update((e["event_id"], peer) for e in evs)
        # every byte sent is in blockhub's receive queues, none of it read
        wait_until(lambda: all(unsent(s) == 0 and unread(hub, s) == n
                               for (s, _), n in zip(gateways, sizes)),
                   "the lines to reach blockhub's socket buffers")
        os.kill(pid, signal.SIGTERM)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert hub.stop(sig=None) == 0
    for s, _ in gateways:
        s.close()

    msgs = decoded(kafka, hub.traffic_topic, decoder, "blockhub.traffic.TrafficEvent")
    got = [rec["event_id"] for _, rec in msgs]
    assert len(got) == len(set(got))
    missing = set(want) - set(got)
    assert not missing, "%d of %d lines lost at SIGTERM, e.g. %s" % (
        len(missing), len(want), sorted(missing)[:5])
    assert set(got) == set(want)
    assert all(rec["peer"] == want[rec["event_id"]] for _, rec in msgs)
    [(_, d)] = decoded(kafka, hub.dlq_topic, decoder, "blockhub.DeadLetter")
    assert d["reason"] == "invalid_json" and d["payload"] == cut
    assert d["origin"]["peer"] == gateways[-1][1]
    assert d["origin"]["position"] == per_gateway + 1
    assert "stopped before the end of the line" in d["detail"]
    assert "lost" not in hub.logtext()


def test_sigterm_drains_connections_paused_by_back_pressure(own_broker, hub_factory, decoder):
    hub = traffic_hub(hub_factory, own_broker.bootstrap, max_in_flight=20).start()
    s, peer = connect(hub)
    lines = [event(i, "JJ-PAUSED") for i in range(250)]
    s.sendall(ndjson(lines[:10]))
    wait_for_sizes(own_broker.bootstrap, {hub.traffic_topic: 10})

    with open(os.path.join(own_broker.dir, "kafka.pid")) as f:
        broker = int(f.read().strip())
    try:
        freeze(broker)  # from now on nothing is acknowledged
        first = ndjson(lines[10:110])
        s.sendall(first)
        # blockhub has read at least 20 of them: max_in_flight is reached for good
        enough = len(ndjson(lines[10:30]))
        wait_until(lambda: unsent(s) == 0 and 0 <= unread(hub, s) <= len(first) - enough,
                   "blockhub to read up to max_in_flight")
        second = ndjson(lines[110:])
        s.sendall(second)
        # paused: the rest stays in blockhub's receive queue
        wait_until(lambda: unsent(s) == 0 and unread(hub, s) >= len(second),
                   "the paused connection's queue to fill")
        hub.proc.send_signal(signal.SIGTERM)
    finally:
        os.kill(broker, signal.SIGCONT)
    assert hub.stop(sig=None) == 0
    s.close()

    msgs = decoded(own_broker.bootstrap, hub.traffic_topic, decoder,
                   "blockhub.traffic.TrafficEvent")
    got = sorted(rec["event_id"] for _, rec in msgs)
    assert got == sorted(e["event_id"] for e in lines), \
        "%d of %d lines published" % (len(got), len(lines))
    assert {rec["peer"] for _, rec in msgs} == {peer}
    assert decoded(own_broker.bootstrap, hub.dlq_topic, decoder, "blockhub.DeadLetter") == []
    assert "lost" not in hub.logtext()


def test_shutdown_is_bounded_when_kafka_never_acknowledges(own_broker, hub_factory):
    hub = traffic_hub(hub_factory, own_broker.bootstrap, max_in_flight=20,
                      extra_sets=["kafka.flush_timeout=2s"]).start()
    s, _ = connect(hub)
    s.sendall(ndjson(event(i, "JJ-HUNG") for i in range(5)))
    wait_for_sizes(own_broker.bootstrap, {hub.traffic_topic: 5})
    with open(os.path.join(own_broker.dir, "kafka.pid")) as f:
        broker = int(f.read().strip())
    try:
        freeze(broker)
        first = ndjson(event(i, "JJ-HUNG") for i in range(5, 105))
        s.sendall(first)
        enough = len(ndjson(event(i, "JJ-HUNG") for i in range(5, 25)))
        wait_until(lambda: unsent(s) == 0 and 0 <= unread(hub, s) <= len(first) - enough,
                   "blockhub to read up to max_in_flight")
        second = ndjson(event(i, "JJ-HUNG") for i in range(105, 200))
        s.sendall(second)
        wait_until(lambda: unsent(s) == 0 and unread(hub, s) >= len(second),
                   "the paused connection's queue to fill")
        t0 = time.monotonic()
        # kafka.flush_timeout bounds the drain, then the hub's flush: exit 1, what was lost logged
        assert hub.stop(timeout=60) == 1
        assert time.monotonic() - t0 < 30
    finally:
        os.kill(broker, signal.SIGCONT)
        s.close()
    log = hub.logtext()
    assert "1 connection(s) not drained" in log, log
    assert "closed at shutdown with bytes not read" in log, log
