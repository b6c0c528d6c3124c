"""deploy/kafka/local-kafka --secure: a real broker with a SASL_SSL listener (TLS with a test
CA, SCRAM-SHA-512 with the user "blockhub"), and blockhub itself on it.

blockhub links librdkafka 2.8.0 (built by deploy/install-deps.sh): Debian 12's librdkafka 2.0.2
sent a SCRAM client-final-message that Kafka 4.x refuses (the nonce twice; fixed in librdkafka
2.6.1), so it could not authenticate there at all. Checked here: confluent-kafka's own client
authenticates; a blockhub with the fire adapter and the join produces, consumes and publishes
its views through the SASL_SSL listener only (its kafka.properties carry the client settings),
and the records are read back through it; a wrong password is refused at start, at once and
naming the authentication failure, and by `blockhub check`.
"""
import os
import socket
import subprocess
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import bhcat
import join_helpers as jh
from conftest import BLOCKHUB, LOCAL_KAFKA, WORLD, deadline_after, free_port, start_refused, wait_until

SAMPLE = os.path.join(WORLD, "samples", "fire", "webhook-batch.json")
# What blockhub's kafka.properties carry from the broker's client.properties.
CLIENT_KEYS = ("security.protocol", "sasl.mechanisms", "sasl.username", "sasl.password",
               "ssl.ca.location")


@pytest.fixture
def secure_broker(tmp_path):
    d = tmp_path / "kafka-secure"
    port = free_port(pair=True)
    while True:  # PORT, PORT+1 (controller) and PORT+2 (SASL_SSL) free
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 2))
            break
        except OSError:
            port = free_port(pair=True)
    subprocess.run([LOCAL_KAFKA, "start", "--secure", str(d), str(port)], check=True,
                   stdout=subprocess.PIPE, timeout=180)
    yield d
    subprocess.run([LOCAL_KAFKA, "stop", str(d)], check=True, timeout=90)


def client_conf(d, **over):
    conf = {}
    for line in (d / "client.properties").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            conf[k] = v
    conf.update(over)
    return conf


def test_secure_listener_takes_the_scram_user_and_refuses_a_wrong_password(secure_broker):
    conf = client_conf(secure_broker)
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanisms"] == "SCRAM-SHA-512"
    topic = "secure.%s" % uuid.uuid4().hex[:8]
    p = Producer(conf)
    p.produce(topic, key=b"440303-017", value=b"over TLS, as blockhub")
    assert p.flush(60) == 0
    md = AdminClient(conf).list_topics(topic, timeout=30)
    assert topic in md.topics and md.topics[topic].error is None
    errors = []
    bad = Producer(client_conf(secure_broker, **{"sasl.password": "wrong",
                                                "error_cb": lambda e: errors.append(e.str())}))
    bad.produce(topic, value=b"refused")
    wait_until(lambda: bad.poll(0.2) is not None and any(
        "Authentication failed" in e for e in errors), "the wrong password refused")
    assert bad.flush(0) == 1  # nothing went through


def read_through(conf, topic, want, timeout=90):
    """Every committed record of TOPIC, read through the SASL_SSL listener with CONF, once at
    least WANT(records) is true (a few seconds more are read to catch extra ones)."""
    c = Consumer(dict(conf, **{"group.id": "secure-read-%s" % uuid.uuid4().hex[:8],
                               "enable.auto.commit": False, "auto.offset.reset": "earliest",
                               "isolation.level": "read_committed"}))
    try:
        md = c.list_topics(topic, timeout=30)
        assert topic in md.topics and md.topics[topic].error is None, topic
        c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
        out, deadline, done_at = [], deadline_after(timeout), None
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                else:
                    out.append({"key": m.key(), "value": m.value(),
                                "partition": m.partition(), "offset": m.offset()})
            if done_at is None and want(out):
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at > 3:
                return out
        raise AssertionError("read %d record(s) of %s in %ds, not what was awaited"
                             % (len(out), topic, timeout))
    finally:
        c.close()


def secure_hub(tmp_path, d, **over):
    """A blockhub with the fire adapter and the join on the SASL_SSL listener of broker D."""
    conf = client_conf(d, **over)
    tag = uuid.uuid4().hex[:10]
    schemas = jh.schema_dir(tmp_path)
    fire = jh.Department("fire", schemas)
    fire_topic = "dept.fire.secure.%s" % tag
    hub = jh.JoinHub(tmp_path, conf["bootstrap.servers"], schemas, [fire.input_conf(fire_topic)],
                     "block.view.%s" % tag, "block.view.state.%s" % tag, "join-%s" % tag,
                     fire=True, kafka_properties={k: conf[k] for k in CLIENT_KEYS})
    hub.fire_topic = fire_topic
    hub.view_topic = "block.view.%s" % tag
    hub.sets = ["adapters.fire.topic=" + fire_topic]
    return hub, conf, schemas


def test_blockhub_produces_and_joins_through_sasl_ssl(secure_broker, tmp_path):
    """The fire adapter's records and the join's views, all through SASL_SSL (SCRAM-SHA-512):
    read back with the Python client, they are the sample's 8 events and their blocks' views."""
    hub, conf, schemas = secure_hub(tmp_path, secure_broker)
    decoder = bhcat.Decoder(schemas)
    try:
        hub.start()
        hub.wait_live(n=3)
        with open(SAMPLE, "rb") as f:
            r = hub.post(f.read())
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 8, r.text

        fires = read_through(conf, hub.fire_topic, lambda out: len(out) >= 8)
        assert len(fires) == 8
        per_block = Counter()
        for m in fires:
            name, rec = decoder.decode(m["value"])
            assert name == "blockhub.fire.FireEvent"
            assert m["key"].decode() == rec["block_id"]
            per_block[rec["block_id"]] += 1

        def views_final(out):
            last = {}
            for m in out:
                last[m["key"].decode()] = decoder.decode(m["value"])[1]
            return {b: v["fire"]["total"] for b, v in last.items()} == dict(per_block)
        views = read_through(conf, hub.view_topic, views_final)
        last = {}
        for m in views:
            name, rec = decoder.decode(m["value"])
            assert name == "blockhub.view.BlockView"
            assert m["key"].decode() == rec["block_id"]
            last[rec["block_id"]] = rec
        assert {b: v["fire"]["total"] for b, v in last.items()} == dict(per_block)
        s = hub.status()
        assert s["stats"]["counted"] == 8 and s["stats"]["dead_letters"] == 0, s
        log = hub.logtext()
        assert "_AUTHENTICATION" not in log and "SSL handshake failed" not in log, log
        assert hub.stop() == 0
    finally:
        hub.kill()


def test_wrong_password_refused_at_start_and_by_check(secure_broker, tmp_path):
    """A wrong sasl.password: blockhub exits non-zero at start as soon as the broker refuses
    it (well before kafka.create_timeout), saying the authentication failed; `blockhub check`
    refuses the config the same way."""
    hub, _, _ = secure_hub(tmp_path, secure_broker, **{"sasl.password": "wrong"})
    hub.sets.append("kafka.create_timeout=30s")
    t = time.monotonic()
    rc, err = start_refused(hub, timeout=60)
    took = time.monotonic() - t
    text = hub.logtext() + err
    assert rc == 1, text
    assert "cannot start: kafka: authentication failed at %s" % hub.brokers in text, text
    assert "SCRAM-SHA-512" in text and "sasl.password" in text, text
    assert took < 15, "refused after %.1fs, not at the broker's refusal:\n%s" % (took, text)

    args = [BLOCKHUB, "check", "--config", hub.config]
    for s in hub.sets:
        args += ["--set", s]
    t = time.monotonic()
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t
    assert p.returncode == 2, p.stdout + p.stderr
    assert "blockhub: config refused: kafka: authentication failed at %s" % hub.brokers \
        in p.stderr, p.stderr
    assert "config OK" not in p.stdout, p.stdout
    assert took < 15, "check refused after %.1fs:\n%s" % (took, p.stderr)
