"""The admin API (hub/admin.h): tokens, components, pause and resume, metrics, health.

One hub runs a fire and a traffic adapter with admin.listen and admin.tokens.
Pausing is shown from outside: a paused fire adapter answers 503 with
Retry-After; a paused traffic adapter stops reading, so the gateway's socket
fills until the kernel refuses more bytes (TCP holds it back); after resume
every line and event sent is in Kafka. The metrics are checked against what a
consumer counts in the topics.
"""
import json
import socket
import uuid

import bhcat
import requests
from conftest import free_port, wait_until

ADMIN_TOKEN = "admin-token-1"
GRID = "440303-010"


def admin_hub(hub_factory, kafka, tokens=(ADMIN_TOKEN,)):
    port = free_port()
    traffic_port = free_port()
    tag = uuid.uuid4().hex[:10]
    traffic_topic = "dept.traffic.%s" % tag
    sets = ["admin.listen=127.0.0.1:%d" % port]
    if tokens:
        sets.append("admin.tokens=[%s]" % ",".join(tokens))
    h = hub_factory(kafka, extra_sets=sets, adapters=[
        {"name": "traffic", "type": "traffic", "auth": "none", "listen": "127.0.0.1:%d" % traffic_port,
         "topic": traffic_topic}])
    h.admin = "http://127.0.0.1:%d" % port
    h.traffic_port = traffic_port
    h.traffic_topic = traffic_topic
    return h


def call(h, method, path, token=ADMIN_TOKEN, **kw):
    headers = {"Authorization": "Bearer " + token} if token is not None else {}
    return requests.request(method, h.admin + path, headers=headers, timeout=30, **kw)


def component(h, name):
    r = call(h, "GET", "/components")
    assert r.status_code == 200, r.text
    return next(c for c in r.json()["components"] if c["name"] == name)


def fire_events(tag, n, bad=0):
    good = [{"id": "XF-%s-%04d" % (tag, i), "category": "drill", "unit": "u", "level": "low",
             "occurred_at": "2026-11-27T08:15:00+08:00", "grid_code": GRID} for i in range(n)]
    return good + [{"id": "XF-%s-bad-%d" % (tag, i), "category": "drill"} for i in range(bad)]


def traffic_lines(tag, n, bad=0):
    out = []
    for i in range(n):
        out.append(json.dumps({"event_id": "%s-%06d" % (tag, i), "device": "CAM-1",
                               "type": "red_light", "lon": 114.130019, "lat": 22.546712,
                               "severity": 2, "ts": 1795737600000 + i}).encode() + b"\n")
    out += [b"{not json %d\n" % i for i in range(bad)]
    return b"".join(out)


def metrics(h):
    r = call(h, "GET", "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value) if "." in value or "e" in value else int(value)
    return out


def test_every_endpoint_refuses_a_missing_or_wrong_token(kafka, hub_factory):
    h = admin_hub(hub_factory, kafka).start()
    endpoints = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/components"),
                 ("GET", "/metrics"), ("POST", "/components/fire/pause"),
                 ("POST", "/components/fire/resume"), ("PUT", "/admin/log-level"),
                 ("GET", "/blocks/" + GRID), ("GET", "/join"), ("GET", "/alerts"),
                 ("GET", "/alerts/stream"), ("GET", "/nothing")]
    for method, path in endpoints:
        for token in (None, "wrong", ADMIN_TOKEN + "x", ""):
            r = call(h, method, path, token=token, data=b"info")
            assert r.status_code == 401, (method, path, token, r.status_code)
            assert r.headers["WWW-Authenticate"] == "Bearer"
        r = call(h, method, path, data=b"info")
        assert r.status_code != 401, (method, path)
    assert call(h, "GET", "/healthz").json() == {"status": "alive"}
    assert not component(h, "fire")["state"] == "paused"  # the POSTs above paused and resumed it
    assert h.stop() == 0, h.logtext()


def test_components_health_and_log_level(kafka, hub_factory):
    h = admin_hub(hub_factory, kafka).start()
    wait_until(lambda: call(h, "GET", "/readyz").status_code == 200, "ready")
    assert call(h, "GET", "/readyz").json() == {"status": "ready"}
    comps = call(h, "GET", "/components").json()["components"]
    assert [(c["name"], c["type"], c["state"], c["can_pause"]) for c in comps] == [
        ("fire", "fire", "running", True), ("traffic", "traffic", "running", True)]
    assert comps[1]["counters"]["connections"] == 0
    r = call(h, "POST", "/components/nobody/pause")
    assert r.status_code == 404 and "nobody" in r.json()["error"]
    assert call(h, "POST", "/components/fire/stop").status_code == 404
    assert call(h, "GET", "/components/fire/pause").status_code == 405
    assert call(h, "PUT", "/admin/log-level", data=b"loud").status_code == 400
    r = call(h, "PUT", "/admin/log-level", data=b'{"level": "debug"}')
    assert r.status_code == 200 and r.json() == {"level": "debug"}
    h.post(fire_events("dbg", 1))
    wait_until(lambda: " debug " in h.logtext(), "a debug line once the level is debug")
    assert h.stop() == 0, h.logtext()


def test_paused_fire_answers_503_and_resumes(kafka, hub_factory, decoder):
    h = admin_hub(hub_factory, kafka).start()
    r = call(h, "POST", "/components/fire/pause")
    assert r.status_code == 200 and r.json()["state"] == "paused", r.text
    assert call(h, "POST", "/components/fire/pause").json()["state"] == "paused"  # idempotent
    refused = h.post(fire_events("p", 5))
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert "paused" in refused.json()["error"]
    assert component(h, "fire")["counters"]["answered_503"] == 1
    assert call(h, "POST", "/components/fire/resume").json()["state"] == "running"
    ok = h.post(fire_events("p", 5))
    assert ok.status_code == 200 and ok.json()["accepted"] == 5
    ids = sorted(decoder.decode(m["value"])[1]["event_id"]
                 for m in bhcat.consume_all(kafka, h.fire_topic))
    assert ids == ["XF-p-%04d" % i for i in range(5)]  # once each: the 503 published nothing
    assert h.stop() == 0, h.logtext()


def test_paused_traffic_holds_the_gateway_back(kafka, hub_factory):
    h = admin_hub(hub_factory, kafka).start()
    assert call(h, "POST", "/components/traffic/pause").status_code == 200
    s = socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60)
    wait_until(lambda: component(h, "traffic")["counters"]["connections"] == 1, "connected")
    data = traffic_lines("held", 200000)
    s.setblocking(False)
    sent = 0
    while sent < len(data):
        try:
            sent += s.send(data[sent:sent + 65536])
        except BlockingIOError:
            break
    # The kernel stopped taking bytes: nobody reads them. Nothing was published meanwhile.
    assert 0 < sent < len(data), "the socket took everything: the paused adapter read it"
    c = component(h, "traffic")
    assert c["state"] == "paused" and c["counters"]["published"] == 0
    assert call(h, "POST", "/components/traffic/resume").status_code == 200
    s.setblocking(True)
    s.sendall(data[sent:])
    s.shutdown(socket.SHUT_WR)
    wait_until(lambda: component(h, "traffic")["counters"]["acknowledged"] == 200000,
               "every line in Kafka after resume", timeout=120)
    assert bhcat_count(kafka, h.traffic_topic) == 200000
    s.close()
    assert h.stop() == 0, h.logtext()


def bhcat_count(kafka, topic):
    return len(bhcat.consume_all(kafka, topic, timeout=120))


def test_metrics_equal_what_consumers_count(kafka, hub_factory, decoder):
    h = admin_hub(hub_factory, kafka).start()
    for k in range(3):
        r = h.post(fire_events("m%d" % k, 40, bad=3))
        assert r.status_code == 200 and r.json()["accepted"] == 40
    s = socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60)
    s.sendall(traffic_lines("m", 500, bad=7))
    s.shutdown(socket.SHUT_WR)
    wait_until(lambda: component(h, "traffic")["counters"]["acknowledged"] == 507,
               "the traffic lines acknowledged")
    s.close()
    m = metrics(h)
    dead = bhcat.consume_all(kafka, h.dlq_topic)
    dead_by = {}
    for d in dead:
        name, rec = decoder.decode(d["value"])
        dead_by[rec["adapter"]] = dead_by.get(rec["adapter"], 0) + 1
    for name, topic in (("fire", h.fire_topic), ("traffic", h.traffic_topic)):
        labels = '{component="%s",type="%s"}' % (name, name)
        assert m["blockhub_component_published_total" + labels] == \
            len(bhcat.consume_all(kafka, topic))
        assert m["blockhub_component_dead_lettered_total" + labels] == dead_by[name]
        assert m["blockhub_component_acknowledged_total" + labels] == \
            m["blockhub_component_published_total" + labels] + dead_by[name]
        assert m["blockhub_component_delivery_errors_total" + labels] == 0
        assert m["blockhub_component_paused" + labels] == 0
    assert m['blockhub_component_published_total{component="fire",type="fire"}'] == 120
    assert dead_by == {"fire": 9, "traffic": 7}
    assert m['blockhub_component_requests_total{component="fire",type="fire"}'] == 3
    assert m["blockhub_up"] == 1 and m["blockhub_ready"] == 1
    assert m["blockhub_kafka_in_flight"] == 0
    # Dead letters by reason equal what the dead-letter topic holds by reason.
    by_reason = {}
    for d in dead:
        rec = decoder.decode(d["value"])[1]
        key = 'blockhub_dead_letters_total{component="%s",reason="%s"}' % (rec["adapter"],
                                                                           rec["reason"])
        by_reason[key] = by_reason.get(key, 0) + 1
    assert by_reason == {k: v for k, v in m.items() if k.startswith("blockhub_dead_letters_total")}
    # The latency histogram holds every acknowledgement, cumulative buckets, a positive sum.
    for name in ("fire", "traffic"):
        buckets = [(k, v) for k, v in m.items()
                   if k.startswith('blockhub_ack_latency_seconds_bucket{component="%s",' % name)]
        counts = [v for _, v in buckets]
        assert counts == sorted(counts) and buckets[-1][0].endswith('le="+Inf"}')
        total = m['blockhub_ack_latency_seconds_count{component="%s"}' % name]
        assert counts[-1] == total == m[
            'blockhub_component_acknowledged_total{component="%s",type="%s"}' % (name, name)]
        assert m['blockhub_ack_latency_seconds_sum{component="%s"}' % name] > 0
    # The broker, from librdkafka's statistics (every 5 s).
    wait_until(lambda: any(k.startswith("blockhub_kafka_broker_up{") and v == 1
                           for k, v in metrics(h).items()), "a broker up in the metrics")
    assert any(k.startswith("blockhub_kafka_broker_rtt_seconds{") for k in metrics(h))
    assert h.stop() == 0, h.logtext()


def test_open_api_without_tokens_says_so(kafka, hub_factory):
    h = admin_hub(hub_factory, kafka, tokens=()).start()
    assert call(h, "GET", "/healthz", token=None).status_code == 200
    assert "no admin.tokens" in h.logtext()
    assert h.stop() == 0, h.logtext()


def test_json_log_lines(kafka, hub_factory):
    h = admin_hub(hub_factory, kafka)
    h.sets.append("log.format=json")
    h.start()
    call(h, "PUT", "/admin/log-level", data=b"debug")
    h.post(fire_events("js", 2, bad=1))
    assert h.stop() == 0
    lines = [json.loads(line) for line in h.logtext().splitlines() if line.startswith("{")]
    assert len(lines) > 5 and all(set(o) == {"ts", "level", "component", "msg"} for o in lines)
    assert any(o["component"] == "hub" and o["msg"].startswith("ready: 2 adapter(s)")
               for o in lines)
    assert any(o["level"] == "debug" and o["component"] == "fire" for o in lines)
    assert not [line for line in h.logtext().splitlines() if line and not line.startswith("{")
                and "rdkafka" not in line]


def test_market_metrics_equal_its_topic(kafka, hub_factory, decoder, tmp_path):
    """The market adapter publishes through the same path: its counters equal its topics."""
    import os
    from conftest import WORLD
    from test_market import drop, market_hub, wait_for
    port = free_port()
    h = market_hub(hub_factory, kafka, tmp_path, extra_sets=["admin.listen=127.0.0.1:%d" % port])
    h.admin = "http://127.0.0.1:%d" % port
    h.start()
    name = "scjg_20261127_0800.csv"
    with open(os.path.join(WORLD, "samples", "market", name), "rb") as f:
        drop(h.spool, name, f.read())
    wait_for(h.spool / "done" / name, hub=h)
    m = metrics(h)
    labels = '{component="market",type="market"}'
    records = bhcat.consume_all(kafka, h.market_topic)
    dead = [d for d in bhcat.consume_all(kafka, h.dlq_topic)
            if decoder.decode(d["value"])[1]["adapter"] == "market"]
    assert len(records) > 0 and len(dead) > 0
    assert m["blockhub_component_published_total" + labels] == len(records)
    assert m["blockhub_component_dead_lettered_total" + labels] == len(dead)
    assert m["blockhub_component_acknowledged_total" + labels] == len(records) + len(dead)
    assert m["blockhub_component_files_done_total" + labels] == 1
    for r in records:
        assert r["headers"]["blockhub.adapter"] == b"market"
        assert r["headers"]["blockhub.event_id"] == \
            decoder.decode(r["value"])[1]["record_id"].encode()
    assert h.stop() == 0, h.logtext()


def test_admin_over_https_with_client_certificates(kafka, hub_factory, tmp_path):
    """admin.tls: the admin API over HTTPS; with client_ca_file a client without a certificate
    or with one of another CA is refused in the handshake, plain HTTP gets no answer, and a
    client of the CA is served (its token still checked)."""
    import subprocess

    from tls_helpers import make_pki
    pki = make_pki(tmp_path / "pki")
    h = admin_hub(hub_factory, kafka)
    h.sets += ["admin.tls.cert_file=%s" % pki["server.pem"], "admin.tls.key_file=%s" % pki["server.key"],
               "admin.tls.client_ca_file=%s" % pki["ca.pem"]]
    h.start()
    h.admin = h.admin.replace("http://", "https://")
    assert "admin API on https://" in h.logtext()
    me = (pki["client.pem"], pki["client.key"])
    r = call(h, "GET", "/components", verify=pki["ca.pem"], cert=me)
    assert r.status_code == 200 and {c["name"] for c in r.json()["components"]} >= {"traffic"}
    assert call(h, "GET", "/components", token="wrong", verify=pki["ca.pem"],
                cert=me).status_code == 401
    for cert in (None, (pki["stranger.pem"], pki["stranger.key"])):
        try:
            call(h, "GET", "/components", verify=pki["ca.pem"], cert=cert)
            raise AssertionError("served without a certificate of the CA: %r" % (cert,))
        except (requests.exceptions.SSLError, requests.exceptions.ConnectionError):
            pass
    port = int(h.admin.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        assert b"HTTP/" not in got, got
    assert h.stop() == 0
    # a certificate file that is not there: refused with the key
    h.sets += ["admin.tls.cert_file=/nonexistent/admin.pem"]
    out = subprocess.run([h.binary, "--config", h.config, "--check"] +
                         [a for s in h.sets for a in ("--set", s)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "admin.tls.cert_file" in out.stderr, out.stderr
