"""The traffic adapter under valgrind: connections taken, refused per peer, drained at SIGTERM.

ASan does not see inside libuv, whose handles the adapter opens, reads directly at shutdown and
closes; valgrind does. Plain build only: tests/integration/CMakeLists.txt leaves it out of the
ASan build (valgrind cannot run an ASan binary).
"""
import contextlib
import json
import os
import signal
import subprocess
import uuid


from conftest import BLOCKHUB, VALGRIND, SRC, Hub, free_port
from test_traffic import decoded, event, ndjson
from test_traffic_abuse import connect_from, settle
from test_traffic_shutdown import unsent, wait_until


@contextlib.contextmanager
def traffic_under_valgrind(kafka, tmp_path, **settings):
    """A hub with one traffic adapter (SETTINGS on top of a port and topic of its own) under
    valgrind, ready; yields (hub, proc). The body ends by sending the signal that stops it;
    then the exit must be 0 and valgrind's report empty."""
    port = free_port()
    entry = {"name": "traffic", "type": "traffic", "listen": "127.0.0.1:%d" % port,
             "topic": "dept.traffic.%s" % uuid.uuid4().hex[:10]}
    entry.update(settings)
    hub = Hub(tmp_path, kafka, fire=False, adapters=[entry])
    hub.traffic_port = port
    hub.traffic_topic = entry["topic"]
    log = tmp_path / "valgrind.log"
    args = VALGRIND + [
            "--suppressions=%s" % os.path.join(SRC, "tests", "valgrind.supp"),
            "--log-file=%s" % log, BLOCKHUB, "--config", hub.config]
    with open(hub.logpath, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: proc.poll() is None and "hub: ready" in hub.logtext(),
                       "blockhub under valgrind to start", timeout=120)
            yield hub, proc
            rc = proc.wait(180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    report = log.read_text()
    assert rc == 0, "exit %d\n%s\n%s" % (rc, report, hub.logtext())
    assert report.strip() == "", report


def test_traffic_start_refuse_drain_under_valgrind(kafka, tmp_path, decoder):
    with traffic_under_valgrind(kafka, tmp_path, auth="none", max_connections_per_peer=2,
                                max_in_flight=50, max_line=4096) as (hub, proc):
        gateways = []
        for address in ("127.0.0.1", "127.0.0.1", "127.0.0.2"):
            s, peer = connect_from(hub, address)
            assert settle(hub, s, peer, timeout=60) == "accepted"
            gateways.append((s, peer))
        extra, extra_peer = connect_from(hub, "127.0.0.1")
        assert settle(hub, extra, extra_peer, timeout=60) == "refused"
        extra.close()
        want = []
        for k, (s, _) in enumerate(gateways):
            evs = [event(k * 1000 + i, "JJ-VG") for i in range(300)]
            data = ndjson(evs)
            if k == 1:
                data += json.dumps({"pad": "x" * 5000}).encode() + b"\n"  # too long
            if k == 2:
                data += b'{"event_id": "JJ-VG-CUT"'  # cut off by the stop
            s.sendall(data)
            want += [e["event_id"] for e in evs]
        wait_until(lambda: all(unsent(s) == 0 for s, _ in gateways), "the lines to arrive")
        proc.send_signal(signal.SIGTERM)
    msgs = decoded(kafka, hub.traffic_topic, decoder, "blockhub.traffic.TrafficEvent")
    assert sorted(rec["event_id"] for _, rec in msgs) == sorted(want)
    dead = sorted(d["reason"] for _, d in decoded(kafka, hub.dlq_topic, decoder,
                                                  "blockhub.DeadLetter"))
    assert dead == ["invalid_json", "too_large"]
    for s, _ in gateways:
        s.close()


def test_traffic_tls_and_acks_under_valgrind(kafka, tmp_path, decoder):
    """TLS sessions over memory BIOs, acknowledgement writes and refusals: the buffers handed
    to libuv's writes live until libuv is done with them."""
    from tls_helpers import make_pki
    from test_traffic_ack import read_lines
    from test_traffic_tls import refused, tls_gateway
    pki = make_pki(tmp_path / "pki")
    tls = {"cert_file": pki["server.pem"], "key_file": pki["server.key"],
           "client_ca_file": pki["ca.pem"], "client_cert": "required"}
    with traffic_under_valgrind(kafka, tmp_path, auth="tls", tls=tls) as (hub, proc):
        assert refused(hub, pki, "stranger")
        assert refused(hub, pki, None)
        plain, _ = connect_from(hub, "127.0.0.1")
        plain.sendall(ndjson([event(1, "JJ-VG-PLAIN")]))
        plain.close()
        want = []
        gws = [tls_gateway(hub, pki) for _ in range(2)]
        for k, s in enumerate(gws):
            evs = [event(k * 1000 + i, "JJ-VGT") for i in range(200)]
            s.sendall(b'{"hello": 1, "ack": true}\n' + ndjson(evs) + b"not json\n")
            want += [e["event_id"] for e in evs]
        for s in gws:
            assert read_lines(s, lambda ls: ls and ls[-1].get("ack") == 202)[0]
        gws[0].close()  # one leaves, the other is open at the stop
        proc.send_signal(signal.SIGTERM)
    msgs = decoded(kafka, hub.traffic_topic, decoder, "blockhub.traffic.TrafficEvent")
    assert sorted(rec["event_id"] for _, rec in msgs) == sorted(want)
    for s in gws:
        s.close()
