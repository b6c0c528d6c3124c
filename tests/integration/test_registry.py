"""Registry mode (issue 9) against the real broker and a real Confluent-compatible registry
(Apicurio Registry, started by deploy/registry/local-registry).

What blockhub publishes is read back with clients nobody here wrote: confluent-kafka's
SchemaRegistryClient and AvroDeserializer fetch each writer schema from the registry by the
id in the record. Schema evolution goes through the registry's own compatibility rules; the
join reads both framings and several writer versions on one topic; a registry that is down
or slow costs the departments nothing.
"""
import copy
import http.server
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import fastavro
import pytest
import requests
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

import bhcat
import join_helpers as jh
from conftest import SCHEMAS, SRC, TOKEN, WORLD, free_port, start_refused, wait_log, wait_until

LOCAL_REGISTRY = os.path.join(SRC, "deploy", "registry", "local-registry")
FIRE_SAMPLE = os.path.join(WORLD, "samples", "fire", "webhook-batch.json")
TRAFFIC_SAMPLE = os.path.join(WORLD, "samples", "traffic", "gateway.ndjson")
MARKET_SAMPLE = os.path.join(WORLD, "samples", "market", "scjg_20261127_0800.csv")
# The gateway sample: 25 events, 3 bad lines, one heartbeat (test_traffic works them out).
TRAFFIC_RECORDS, TRAFFIC_DEAD = 25, 3
# Fields that say when blockhub handled a record, not what was fed in.
WHEN = {"received_at", "updated_at"}
# A dead letter's origin names the adapter's own address and its peer's: not the same twice.
ADDRESSES = {"peer", "source"}


class Registry:
    """A registry of the test's own (the API on PORT, its management interface on PORT+1)."""

    def __init__(self, path):
        self.dir = str(path)
        self.port = free_port(pair=True)
        self.url = "http://127.0.0.1:%d/apis/ccompat/v7" % self.port

    def start(self):
        out = subprocess.run([LOCAL_REGISTRY, "start", self.dir, str(self.port)], check=True,
                             stdout=subprocess.PIPE, text=True, timeout=180)
        assert out.stdout.strip().splitlines()[-1] == self.url
        return self

    def stop(self):
        subprocess.run([LOCAL_REGISTRY, "stop", self.dir], check=True, timeout=90)

    def client(self):
        return sr_client(self.url)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = Registry(tmp_path_factory.mktemp("registry")).start()
    yield r
    r.stop()


def sr_client(url):
    """confluent-kafka's client, with a timeout: a request it makes that the registry does not
    know (its associations API) must fail, not hang the test."""
    return SchemaRegistryClient({"url": url, "timeout": 20})


def deserializer(client):
    """confluent-kafka's AvroDeserializer, the subject named by the topic (the default looks
    up associations first, an API Confluent's own registry has and others lack)."""
    return AvroDeserializer(client, conf={"subject.name.strategy.type": "TOPIC"})


def registry_lines(url, **settings):
    lines = ["schema_registry:", "  url: %s" % url]
    lines += ["  %s: %s" % (k, v) for k, v in settings.items()]
    return lines


class World:
    """Topics of one test: the three departments, the view, the changelog, the group."""

    def __init__(self, kafka, tmp_path, schemas=SCHEMAS):
        tag = uuid.uuid4().hex[:10]
        self.kafka = kafka
        self.tmp = tmp_path
        self.schemas = schemas
        self.topics = {d: "dept.%s.reg.%s" % (d, tag) for d in jh.DEPTS}
        self.view = "block.view.reg.%s" % tag
        self.state = "block.view.state.reg.%s" % tag
        self.group = "join-reg-%s" % tag
        self.depts = [jh.Department(d, schemas) for d in jh.DEPTS]
        self.hubs = []

    def hub(self, registry_url=None, depts=jh.DEPTS, join=True, schemas=None,
            registry_settings=None):
        """A hub with the adapters of DEPTS (each on its own port or spool), the join on
        their topics (unless not JOIN), an admin API, and the registry at REGISTRY_URL."""
        entries = []
        traffic_port = free_port()
        spool = self.tmp / ("spool-%s" % uuid.uuid4().hex[:6])
        spool.mkdir()
        if "traffic" in depts:
            entries.append({"name": "traffic", "type": "traffic", "auth": "none",
                            "listen": "127.0.0.1:%d" % traffic_port,
                            "topic": self.topics["traffic"]})
        if "market" in depts:
            entries.append({"name": "market", "type": "market", "spool_dir": str(spool),
                            "topic": self.topics["market"], "settle_time": "200ms"})
        reg = registry_lines(registry_url, **(registry_settings or {})) if registry_url else []
        inputs = [d.input_conf(self.topics[d.name]) for d in self.depts if d.name in depts]
        h = jh.JoinHub(self.tmp, self.kafka, schemas or self.schemas, inputs, self.view,
                       self.state, self.group, fire="fire" in depts, adapters=entries,
                       extra=reg)
        if not join:  # the same file without its join section
            with open(h.config, encoding="utf-8") as f:
                text = f.read()
            lines = [text[:text.index("join:\n")].rstrip("\n")] + reg
            lines += ["admin:", "  listen: 127.0.0.1:%d" % h.admin_port]
            with open(h.config, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        if "fire" in depts:
            h.fire_topic = self.topics["fire"]
            h.sets.append("adapters.fire.topic=%s" % h.fire_topic)
        h.traffic_port = traffic_port
        h.spool = spool
        self.hubs.append(h)
        return h

    def close(self):
        for h in self.hubs:
            h.kill()


@pytest.fixture
def world(kafka, tmp_path):
    w = World(kafka, tmp_path)
    jh.create_topics(kafka, {t: 3 for t in w.topics.values()})
    yield w
    w.close()


def post_fire(h, events):
    """EVENTS (a list, or the bytes of a body) to H's webhook; the answer."""
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    return requests.post("http://127.0.0.1:%d/v1/fire/events" % h.port, data=body, timeout=60,
                         headers={"Authorization": "Bearer " + TOKEN,
                                  "Content-Type": "application/json"})


class ConfluentDecoder:
    """decode(value) -> (schema name, record), through the registry (for join_helpers)."""

    def __init__(self, url):
        self.client = sr_client(url)
        self.d = deserializer(self.client)

    def decode(self, value):
        assert value[:1] == b"\x00", "not the Confluent wire format: %r" % value[:12]
        sid = struct.unpack(">I", value[1:5])[0]
        raw = json.loads(self.client.get_schema(sid).schema_str)
        name = raw["name"] if "." in raw["name"] else raw["namespace"] + "." + raw["name"]
        return name, self.d(value, SerializationContext("t", MessageField.VALUE))


def feed_samples(h):
    """The three departments' samples into hub H: the webhook batch, the gateway's lines
    over TCP, the market file into the spool."""
    r = post_fire(h, open(FIRE_SAMPLE, "rb").read())
    assert r.status_code in (200, 207), r.text
    with socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60) as s:
        s.sendall(open(TRAFFIC_SAMPLE, "rb").read())
    name = os.path.basename(MARKET_SAMPLE)
    part = h.spool / (name + ".part")
    part.write_bytes(open(MARKET_SAMPLE, "rb").read())
    os.rename(part, h.spool / name)
    wait_until(lambda: os.path.exists(h.spool / "done" / name), "the market file done", hub=h)
    return r.json()


def confluent_values(kafka, registry_url, topic, only=False):
    """Every record of TOPIC decoded by confluent-kafka's AvroDeserializer, with its id (with
    ONLY, the records in the Confluent wire format; else every record must be)."""
    d = deserializer(sr_client(registry_url))
    out = []
    for m in bhcat.consume_all(kafka, topic):
        v = m["value"]
        if only and v[:1] != b"\x00":
            continue
        assert v[:1] == b"\x00", "not the Confluent wire format: %r" % v[:12]
        out.append((struct.unpack(">I", v[1:5])[0],
                    d(v, SerializationContext(topic, MessageField.VALUE)), m))
    return out


def plain(v):
    """A decoded record without the times blockhub handled it, comparable as JSON."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items() if k not in WHEN and k not in ADDRESSES}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def as_set(values):
    return sorted(json.dumps(plain(v), sort_keys=True, default=str, ensure_ascii=False)
                  for v in values)


def test_samples_in_confluent_wire_format(world, registry):
    """All three departments' samples, their dead letters and the joined views, published in
    the Confluent wire format: AvroDeserializer (schemas fetched from the registry by id)
    decodes every record equal to what the same hub without a registry publishes in
    single-object encoding (itself checked against the input by the adapters' own tests)."""
    with_reg = world.hub(registry.url)
    other = World(world.kafka, world.tmp)
    jh.create_topics(world.kafka, {t: 3 for t in other.topics.values()})
    without = other.hub(None)
    try:
        for h in (with_reg, without):
            h.start()
            h.wait_live(n=3)
        answers = [feed_samples(h) for h in (with_reg, without)]
        assert answers[0] == answers[1]
        decoder = bhcat.Decoder(SCHEMAS)

        def traffic_done(h, topic, decode):
            n = len(bhcat.consume_all(world.kafka, topic))
            dead = [d for d in bhcat.consume_all(world.kafka, h.dlq_topic)
                    if decode(d["value"])["adapter"] == "traffic"]
            return (n, len(dead)) == (TRAFFIC_RECORDS, TRAFFIC_DEAD)

        reg_decode = deserializer(registry.client())
        wait_until(lambda: traffic_done(with_reg, world.topics["traffic"], lambda v: reg_decode(
            v, SerializationContext(with_reg.dlq_topic, MessageField.VALUE))),
            "every traffic line published or dead-lettered (registry)", hub=with_reg)
        wait_until(lambda: traffic_done(without, other.topics["traffic"],
                                        lambda v: decoder.decode(v)[1]),
                   "every traffic line published or dead-lettered", hub=without)
        client = registry.client()
        for dept in jh.DEPTS:
            got = confluent_values(world.kafka, registry.url, world.topics[dept])
            want = [decoder.decode(m["value"])[1]
                    for m in bhcat.consume_all(world.kafka, other.topics[dept])]
            assert len(got) == len(want) > 0, dept
            assert as_set(v for _, v, _ in got) == as_set(want), dept
            latest = client.get_latest_version(world.topics[dept] + "-value")
            assert {i for i, _, _ in got} == {latest.schema_id}, dept
            for m in bhcat.consume_all(world.kafka, other.topics[dept]):
                assert m["value"][:2] == b"\xc3\x01"
        got = confluent_values(world.kafka, registry.url, with_reg.dlq_topic)
        want = [decoder.decode(m["value"])[1]
                for m in bhcat.consume_all(world.kafka, without.dlq_topic)]
        assert len(got) == len(want) > 0
        assert as_set(v for _, v, _ in got) == as_set(want)
        # the views: the last one of each block, through both paths
        jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
        jh.wait_consumed_up_to_end(world.kafka, other.group, other.topics.values())

        def last(values):
            out = {}
            for v in values:
                out[v["block_id"]] = v
            return out

        mine = last(v for _, v, _ in confluent_values(world.kafka, registry.url, world.view))
        theirs = last(decoder.decode(m["value"])[1]
                      for m in bhcat.consume_all(world.kafka, other.view))
        assert len(mine) == len(theirs) > 0
        assert as_set(mine.values()) == as_set(theirs.values())
        assert with_reg.stop() == 0
        assert without.stop() == 0
    finally:
        other.close()


def fire_event(i, block, category, at_ms):
    return {"id": "XF-REG-%06d" % i, "category": category, "unit": "样例大厦",
            "level": "low", "grid_code": block,
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms // 1000))
            + "+00:00"}


def evolved(tmp_path, name, change):
    """schemas/ with fire_event.avsc changed by CHANGE (a function of its JSON)."""
    out = tmp_path / name
    shutil.copytree(SCHEMAS, out)
    p = out / "fire_event.avsc"
    raw = json.loads(p.read_text(encoding="utf-8"))
    change(raw)
    p.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return str(out)


def add_priority(raw):
    raw["fields"].append({"name": "priority", "type": ["null", "string"], "default": None,
                          "doc": "The unit's own priority, when it sends one (none yet)."})


def drop_unit(raw):
    raw["fields"] = [f for f in raw["fields"] if f["name"] != "unit"]


def test_evolution_and_the_join_of_both_framings(world, registry, tmp_path):
    """Under the subject's FULL mode: a fire schema that adds an optional field with a default
    is accepted (version 2) and records of both versions decode; one that removes a required
    field is refused with the registry's reason, and nothing is published with it. The join
    (reader: version 1) consumes the topic holding single-object records, and Confluent ones
    of both versions (version 2 fetched from the registry by id), and its views equal the
    truth."""
    subject = world.topics["fire"] + "-value"
    client = registry.client()
    client.set_compatibility(subject_name=subject, level="FULL")
    blocks = sorted(jh.block_ids())[:40]
    at = {}

    def events(first, n):
        out = []
        for i in range(n):
            at["XF-REG-%06d" % (first + i)] = 1795738500000 + (first + i) * 60000
            out.append(fire_event(first + i, blocks[i % len(blocks)],
                                  ("alarm", "hazard", "drill")[i % 3],
                                  1795738500000 + (first + i) * 60000))
        return out

    v1 = world.hub(registry.url, depts=("fire",))
    v2 = world.hub(registry.url, depts=("fire",), join=False,
                   schemas=evolved(tmp_path, "schemas-v2", add_priority))
    for h in (v1, v2):
        h.start()
    v1.wait_live(n=3)
    versions = client.get_versions(subject)
    assert len(versions) == 2, versions
    id1 = client.get_version(subject, versions[0]).schema_id
    id2 = client.get_version(subject, versions[1]).schema_id
    assert id1 != id2
    wait_log(v2, "schema blockhub.fire.FireEvent registered under %s" % subject)

    a, b = events(0, 60), events(1000, 60)
    for h, evs in ((v1, a), (v2, b)):
        r = post_fire(h, evs)
        assert r.status_code == 200 and r.json()["accepted"] == len(evs), r.text
    # single-object records of version 1, from a producer of the department's own
    fire = next(d for d in world.depts if d.name == "fire")
    p = Producer({"bootstrap.servers": world.kafka, "partitioner": "murmur2_random"})
    single = []
    for i in range(40):
        block = blocks[(i * 7) % len(blocks)]
        t = 1795738500000 + 5000000 + i * 1000
        single.append(("fire", "SO-%04d" % i, block, "inspection", t))
        p.produce(world.topics["fire"], key=block.encode(),
                  value=fire.encode(fire.record("SO-%04d" % i, block, "inspection", t)))
    assert p.flush(30) == 0

    decoded = confluent_values(world.kafka, registry.url, world.topics["fire"], only=True)
    assert len(decoded) == len(a) + len(b)
    by_id = {v["event_id"]: (i, v) for i, v, _ in decoded}
    for e in a:
        i, v = by_id[e["id"]]
        assert i == id1 and "priority" not in v and v["category"] == e["category"]
    for e in b:
        i, v = by_id[e["id"]]
        assert i == id2 and v["priority"] is None and v["category"] == e["category"]

    fed = [("fire", e["id"], e["grid_code"], e["category"], at[e["id"]]) for e in a + b]
    expected = jh.truth(fed + single, jh.WINDOW_MS, jh.block_ids())
    # once the join has consumed the topic to its end, its views are final: compared once
    jh.wait_views(world.kafka, world.view, ConfluentDecoder(registry.url), expected,
                  jh.WINDOW_MS, partitions=3, group=world.group, inputs=[world.topics["fire"]])
    s = v1.status()
    assert s["stats"]["counted"] == len(fed) + len(single)
    assert s["stats"]["dead_letters"] == 0
    wait_log(v1, "names schema id %d, asked of the registry" % id2)

    # removing a required field: refused with the subject, its mode and the registry's reason
    before = len(bhcat.consume_all(world.kafka, world.topics["fire"]))
    v3 = world.hub(registry.url, depts=("fire",), join=False,
                   schemas=evolved(tmp_path, "schemas-v3", drop_unit))
    rc, err = start_refused(v3)
    assert rc == 1
    log = v3.logtext() + err
    assert "not compatible with subject %s under its mode FULL" % subject in log, log
    assert "unit" in log.split("under its mode FULL")[1], log
    assert "nothing is published with it" in log
    assert client.get_versions(subject) == versions
    assert len(bhcat.consume_all(world.kafka, world.topics["fire"])) == before
    for h in (v1, v2):
        assert h.stop() == 0


def test_registry_down_at_start(world, tmp_path):
    """No registry answers: start asks again with backoff until schema_registry.wait, then
    exits with a clear error; a registry that comes up within the wait is used."""
    r = Registry(tmp_path / "late-registry")
    h = world.hub(r.url, depts=("fire",), join=False, registry_settings={"wait": "2s"})
    rc, err = start_refused(h)
    assert rc == 1
    log = h.logtext() + err
    assert "asking again in" in log
    assert "did not answer within schema_registry.wait (2.0 s)" in log, log
    late = world.hub(r.url, depts=("fire",), join=False, registry_settings={"wait": "120s"})
    args = [late.binary, "--config", late.config]
    for s in late.sets:
        args += ["--set", s]
    late.log = open(late.logpath, "ab")
    late.proc = subprocess.Popen(args, stdout=late.log, stderr=subprocess.STDOUT)
    try:
        wait_log(late, "asking again in")
        assert "hub: ready" not in late.logtext()
        r.start()
        wait_log(late, "hub: ready", timeout=120)
        r2 = post_fire(late, [fire_event(1, "440303-017", "alarm", 1795738500000)])
        assert r2.status_code == 200, r2.text
        got = confluent_values(world.kafka, r.url, world.topics["fire"])
        assert [v["event_id"] for _, v, _ in got] == ["XF-REG-000001"]
        assert late.stop() == 0
    finally:
        late.kill()
        r.stop()


def metric(h, name):
    text = requests.get(h.admin + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_registry_down_mid_run(world, tmp_path):
    """The registry goes away while the hub runs: the webhook and the TCP stream go on, their
    records carry the cached ids; logs and /metrics say the registry does not answer, and
    that it answers again once it is back."""
    r = Registry(tmp_path / "registry-mid").start()
    try:
        h = world.hub(r.url, depts=("fire", "traffic"), join=False,
                      registry_settings={"probe_interval": "200ms"})
        h.start()
        ids = {t: r.client().get_latest_version(world.topics[t] + "-value").schema_id
               for t in ("fire", "traffic")}
        r_ids_dlq = r.client().get_latest_version(h.dlq_topic + "-value").schema_id
        wait_until(lambda: metric(h, "blockhub_schema_registry_up") == 1, "registry up", hub=h)
        r.stop()
        wait_log(h, "does not answer", timeout=20)
        # the probe asks every 200 ms: 20 s is a hundred probes
        wait_until(lambda: metric(h, "blockhub_schema_registry_up") == 0, "registry down",
                   hub=h, timeout=20)
        assert metric(h, "blockhub_schema_registry_failures_total") > 0
        resp = post_fire(h, [fire_event(i, "440303-017", "alarm", 1795738500000 + i * 1000)
                             for i in range(20)])
        assert resp.status_code == 200 and resp.json()["accepted"] == 20, resp.text
        with socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60) as s:
            s.sendall(open(TRAFFIC_SAMPLE, "rb").read())
        # decoded by the ids in the records and the schema files (the registry is gone)
        decoder = {t: fastavro.parse_schema(json.load(open(os.path.join(SCHEMAS, f))))
                   for t, f in (("fire", "fire_event.avsc"), ("traffic", "traffic_event.avsc"),
                                ("dlq", "dead_letter.avsc"))}
        ids["dlq"] = r_ids_dlq

        def records(t, topic):
            out = []
            for m in bhcat.consume_all(world.kafka, topic):
                v = m["value"]
                assert v[0] == 0 and struct.unpack(">I", v[1:5])[0] == ids[t]
                out.append(fastavro.schemaless_reader(io.BytesIO(v[5:]), decoder[t]))
            return out

        assert [v["event_id"] for v in records("fire", world.topics["fire"])] == \
            ["XF-REG-%06d" % i for i in range(20)]
        wait_until(lambda: (len(records("traffic", world.topics["traffic"])),
                            len(records("dlq", h.dlq_topic))) == (TRAFFIC_RECORDS, TRAFFIC_DEAD),
                   "every traffic line published or dead-lettered", hub=h)
        assert "hub: ready" in h.logtext() and h.proc.poll() is None
        r.start()
        wait_log(h, "answers again")
        wait_until(lambda: metric(h, "blockhub_schema_registry_up") == 1, "registry up again",
                   hub=h)
        assert h.stop() == 0
    finally:
        subprocess.run([LOCAL_REGISTRY, "stop", r.dir], timeout=90)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, signed by the CA."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, cwd=d, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=blockhub test CA")
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", who + ".key", "-out", who + ".csr",
            "-subj", "/CN=" + ("127.0.0.1" if who == "server" else "blockhub"))
        with open(os.path.join(d, who + ".ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n" if who == "server" else
                    "extendedKeyUsage=clientAuth\n")
        run("x509", "-req", "-in", who + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", who + ".pem", "-days", "2", "-extfile", who + ".ext")
    return {k: os.path.join(d, k) for k in ("ca.pem", "server.pem", "server.key", "client.pem",
                                            "client.key")}


class SlowProxy:
    """An HTTP proxy to the registry that holds every answer at least HOLD seconds, and
    until the test releases it: what is held can be counted while it is held."""

    def __init__(self, target, hold=5.0, tls=None):
        self.target = target.rstrip("/")
        self.hold = hold
        self.held = 0
        self.seen = []
        self.auth = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                req = urllib.request.Request(proxy.target + self.path, data=body,
                                             method=self.command)
                for k in ("Content-Type", "Accept"):
                    if self.headers.get(k):
                        req.add_header(k, self.headers[k])
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, data = resp.status, resp.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                with proxy.lock:
                    proxy.held += 1
                    proxy.seen.append(self.command + " " + self.path)
                    proxy.auth.append(self.headers.get("Authorization"))
                time.sleep(proxy.hold)
                proxy.released.wait(60)
                with proxy.lock:
                    proxy.held -= 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.peer_certs = []
        if tls is not None:  # https, and a client certificate of the CA required
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls["server.pem"], tls["server.key"])
            ctx.load_verify_locations(tls["ca.pem"])
            ctx.verify_mode = ssl.CERT_REQUIRED
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
            self.url = "https://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.released.set()
        self.server.shutdown()


def test_registry_slow(world, registry):
    """Every answer of the registry held 5 s (and a writer schema's until the test lets it
    go): start waits for the answers; while the join waits for a schema it has to fetch, the
    webhook and the TCP stream are served and published; once the answer comes, the held
    record is counted."""
    client = registry.client()
    # the hub's schemas are registered already: its start asks one lookup per schema
    for t, f in (("fire", "fire_event.avsc"), ("traffic", "traffic_event.avsc"),
                 ("market", "market_event.avsc")):
        client.register_schema(world.topics[t] + "-value",
                               Schema(open(os.path.join(SCHEMAS, f)).read(), "AVRO"))
    proxy = SlowProxy("http://127.0.0.1:%d" % registry.port)
    proxy.released.set()  # start: every answer held 5 s
    try:
        h = world.hub(proxy.url + "/apis/ccompat/v7", depts=("fire", "traffic"),
                      registry_settings={"probe_interval": "1h"})
        for t, f in ((h.dlq_topic, "dead_letter.avsc"), (world.view, "block_view.avsc")):
            client.register_schema(t + "-value",
                                   Schema(open(os.path.join(SCHEMAS, f)).read(), "AVRO"))
        h.start(timeout=120)
        h.wait_live(n=3)
        assert any(s.startswith("POST /apis/ccompat/v7/subjects/") for s in proxy.seen)
        # a record of a writer schema the hub does not know: version 2, registered elsewhere
        raw = json.load(open(os.path.join(SCHEMAS, "fire_event.avsc")))
        add_priority(raw)
        id2 = client.register_schema(world.topics["fire"] + "-value",
                                     Schema(json.dumps(raw), "AVRO"))
        parsed = fastavro.parse_schema(copy.deepcopy(raw))
        fire = next(d for d in world.depts if d.name == "fire")
        rec = fire.record("V2-0001", "440303-017", "alarm", 1795738500000)
        rec["priority"] = None
        buf = io.BytesIO()
        buf.write(b"\x00" + struct.pack(">I", id2))
        fastavro.schemaless_writer(buf, parsed, rec)
        proxy.released.clear()  # from now on held until let go
        p = Producer({"bootstrap.servers": world.kafka, "partitioner": "murmur2_random"})
        p.produce(world.topics["fire"], key=b"440303-017", value=buf.getvalue())
        assert p.flush(30) == 0
        wait_until(lambda: any("/schemas/ids/%d" % id2 in s for s in proxy.seen) and
                   proxy.held > 0, "the join's fetch held by the registry", hub=h)
        # while it is held: the webhook answers and the stream flows
        resp = post_fire(h, [fire_event(7, "440303-017", "hazard", 1795738600000)])
        assert resp.status_code == 200, resp.text
        with socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60) as s:
            s.sendall(open(TRAFFIC_SAMPLE, "rb").read())
        wait_until(lambda: len(bhcat.consume_all(world.kafka, world.topics["traffic"])) > 0,
                   "traffic records while the registry is held", hub=h)
        assert proxy.held > 0  # still held: nothing above waited for the registry
        held = h.block("440303-017")  # its partition waits
        assert held.status_code == 404 or held.json()["fire"]["total"] == 0, held.text
        proxy.released.set()
        wait_log(h, "schema id %d answered; reading on" % id2, timeout=60)
        wait_until(lambda: h.block("440303-017").json()["fire"]["total"] == 2,
                   "both fire events of the block counted", hub=h)
        assert h.stop() == 0
    finally:
        proxy.close()


def test_schemas_command_record_strategy_and_credentials(world, registry):
    """subject_strategy record names subjects by the record; basic-auth and bearer credentials
    go with every request; blockhub schemas lists each schema's file, fingerprint, Parsing
    Canonical Form, topics, subjects, and its id and version in the registry."""
    import base64
    proxy = SlowProxy("http://127.0.0.1:%d" % registry.port, hold=0)
    proxy.released.set()
    try:
        url = proxy.url + "/apis/ccompat/v7"
        h = world.hub(url, depts=("fire",), join=False,
                      registry_settings={"subject_strategy": "record", "username": "analyst",
                                         "password": "s3cret"})
        h.start()
        client = registry.client()
        fire = client.get_latest_version("blockhub.fire.FireEvent")
        assert "blockhub.DeadLetter" in client.get_subjects()
        r = post_fire(h, [fire_event(1, "440303-017", "alarm", 1795738500000)])
        assert r.status_code == 200, r.text
        got = confluent_values(world.kafka, registry.url, world.topics["fire"])
        assert [i for i, _, _ in got] == [fire.schema_id]
        # tools/bhcat.py reads it too, with the schema from the registry
        cat = subprocess.run([sys.executable, os.path.join(SRC, "tools", "bhcat.py"),
                              "--bootstrap", world.kafka, "--registry", registry.url,
                              world.topics["fire"]], stdout=subprocess.PIPE, text=True,
                             timeout=120, check=True)
        printed = [json.loads(line) for line in cat.stdout.splitlines() if line.startswith("{")]
        assert [p["value"]["event_id"] for p in printed] == ["XF-REG-000001"], cat.stdout
        assert printed[0]["schema"] == "blockhub.fire.FireEvent"
        basic = "Basic " + base64.b64encode(b"analyst:s3cret").decode()
        assert proxy.auth and set(proxy.auth) == {basic}
        assert h.stop() == 0
        args = [h.binary, "schemas", "--config", h.config]
        for x in h.sets:
            args += ["--set", x]
        out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        text = out.stdout
        section = text[text.index("blockhub.fire.FireEvent\n"):]
        section = section[:section.index("\nblockhub.", 1)] if "\nblockhub." in section[1:] \
            else section
        want_fp = "%016x" % jh.fingerprint(fastavro.parse_schema(
            json.load(open(os.path.join(SCHEMAS, "fire_event.avsc")))))
        assert "fire_event.avsc" in section
        assert "fingerprint: %s (CRC-64-AVRO)" % want_fp in section, section
        assert "canonical:   " + fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(
            json.load(open(os.path.join(SCHEMAS, "fire_event.avsc"))))) in section, section
        assert "topic:       %s" % world.topics["fire"] in section
        assert "subject:   blockhub.fire.FireEvent" in section
        assert "registry:  id %d, version %d" % (fire.schema_id, fire.version) in section, section
        # a bearer token instead
        b = world.hub(url, depts=("fire",), join=False,
                      registry_settings={"bearer_token": "tok-1"})
        del proxy.auth[:]
        args = [b.binary, "schemas", "--config", b.config]
        for x in b.sets:
            args += ["--set", x]
        out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert "registry:  not registered under this subject" in out.stdout  # only looked up
        assert proxy.auth and set(proxy.auth) == {"Bearer tok-1"}
    finally:
        proxy.close()


def test_registry_over_tls_with_a_client_certificate(world, registry, tmp_path):
    """https: the registry's certificate is checked against schema_registry.ca_file, and the
    client certificate (cert_file, key_file) is presented; without the CA, start refuses with
    the TLS error."""
    pki = make_pki(str(tmp_path))
    proxy = SlowProxy("http://127.0.0.1:%d" % registry.port, hold=0, tls=pki)
    proxy.released.set()
    try:
        url = proxy.url + "/apis/ccompat/v7"
        h = world.hub(url, depts=("fire",), join=False,
                      registry_settings={"ca_file": pki["ca.pem"], "cert_file": pki["client.pem"],
                                         "key_file": pki["client.key"]})
        h.start()
        assert any(x.startswith("POST /apis/ccompat/v7/subjects/") for x in proxy.seen)
        r = post_fire(h, [fire_event(3, "440303-017", "alarm", 1795738500000)])
        assert r.status_code == 200, r.text
        assert h.stop() == 0
        untrusted = world.hub(url, depts=("fire",), join=False,
                              registry_settings={"wait": "1s", "cert_file": pki["client.pem"],
                                                 "key_file": pki["client.key"]})
        rc, err = start_refused(untrusted)
        log = untrusted.logtext() + err
        assert rc == 1 and "did not answer within schema_registry.wait" in log, log
        assert "certificate" in log.split("schema_registry.wait")[1], log
    finally:
        proxy.close()
