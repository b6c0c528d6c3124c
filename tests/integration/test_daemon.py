"""The daemon's own behaviour: config refusal, clean shutdown, the embedded default."""
import os
import re
import signal
import socket
import subprocess

import pytest

import bhcat
from conftest import BLOCKHUB, SRC, Broker, Threads, stalled, start_refused, wait_log

EXAMPLE = os.path.join(SRC, "deploy", "examples", "blockhub.yaml")


def run(*args):
    return subprocess.run([BLOCKHUB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60)


def test_example_config_is_valid():
    r = run("--config", EXAMPLE, "--check")
    assert r.returncode == 0, r.stderr


def test_unknown_key_refused_with_file_line_and_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("kafka:\n  brokers: embedded\n  bogus_key: 1\nblocks:\n  map: x.geojson\n")
    r = run("--config", str(cfg), "--check")
    assert r.returncode == 2
    assert "%s:3:" % cfg in r.stderr and "kafka.bogus_key" in r.stderr


def test_bad_values_refused(tmp_path):
    r = run("--config", EXAMPLE, "--check", "--set", "adapters.fire.max_items=0")
    assert r.returncode == 2 and "max_items" in r.stderr
    r = run("--config", EXAMPLE, "--check", "--set", "adapters.nosuch.listen=:1")
    assert r.returncode == 2 and "nosuch" in r.stderr
    r = run("--config", EXAMPLE, "--check", "--set", "kafka.partitions=lots")
    assert r.returncode == 2 and "kafka.partitions" in r.stderr


def test_pinned_producer_properties_refused(kafka, hub_factory):
    """A start with a pinned producer property set otherwise fails, saying which and why."""
    for prop, value in (("partitioner", "random"), ("acks", "1"),
                        ("enable.idempotence", "false")):
        hub = hub_factory(kafka, extra_sets=["kafka.properties.%s=%s" % (prop, value)])
        rc, err = start_refused(hub)
        assert rc == 2, err
        pinned = {"partitioner": "murmur2_random", "acks": "all", "enable.idempotence": "true"}
        assert re.search(r"^blockhub: config refused: --set kafka\.properties\.%s=%s: "
                         r"key 'kafka\.properties': blockhub requires %s=%s \(got '%s'\)$"
                         % (re.escape(prop), value, re.escape(prop), pinned[prop], value),
                         err, re.M), err
        with socket.socket() as s:  # nothing listens on the fire adapter's port
            assert s.connect_ex(("127.0.0.1", hub.port)) != 0


def test_config_reference_lists_every_key():
    r = run("--config-reference")
    assert r.returncode == 0
    for key in ("kafka.brokers", "kafka.properties", "blocks.map", "schemas.dir",
                "dead_letter.topic", "listen", "tokens", "body_limit", "ack_timeout"):
        assert key in r.stdout, key


@pytest.fixture(scope="module")
def stall_broker(tmp_path_factory):
    """A broker of this module's own, which the tests pause (SIGSTOP) and resume."""
    b = Broker(tmp_path_factory.mktemp("kafka"))
    b.start()
    yield b
    b.stop()


def fire_batch(tag, t, n=50):
    return [{"id": "XF-%s-%d-%04d" % (tag, t, i), "category": "drill", "unit": "u",
             "level": "low", "occurred_at": "2026-11-27T08:15:00+08:00",
             "grid_code": "440303-010"} for i in range(n)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_signal_answers_requests_in_flight(stall_broker, hub_factory, decoder, sig):
    """SIGTERM or SIGINT while requests wait for Kafka: intake stops, a second SIGTERM changes
    nothing, and once Kafka acknowledges, every request is answered 200 and blockhub exits 0."""
    bootstrap = stall_broker.bootstrap
    hub = hub_factory(bootstrap, extra_sets=["adapters.fire.ack_timeout=120s",
                                             "kafka.flush_timeout=120s",
                                             "log.level=debug"]).start()
    tag = "SIG%d" % sig
    warm = hub.post(fire_batch(tag + "W", 0, 1))  # the producer knows the partition leaders
    assert warm.status_code == 200 and warm.json()["accepted"] == 1, warm.text
    n = 4
    answers = {}
    threads = Threads()

    def post(t):
        answers[t] = hub.post(fire_batch(tag, t), timeout=180)

    with stalled(stall_broker):
        for t in range(n):
            threads.start(post, t)
        # every request is in the daemon, its records produced and unacknowledged (the
        # warm-up request logged the first of these lines)
        wait_log(hub, "50 record(s) waiting for Kafka", count=n)
        assert not answers, "answered while Kafka acknowledged nothing: %r" % answers
        assert "record(s) waiting for Kafka; %d request(s) open" % n in hub.logtext()
        hub.proc.send_signal(sig)
        wait_log(hub, "intake stopped; answering the %d request(s) in flight first" % n)
        with socket.socket() as s:  # the listener is closed
            assert s.connect_ex(("127.0.0.1", hub.port)) != 0
        hub.proc.send_signal(signal.SIGTERM)  # a second signal: the drain goes on
        wait_log(hub, "shutdown already in progress")
        assert hub.proc.poll() is None, hub.logtext()
        assert not answers, answers  # still waiting for Kafka
    threads.join(180)
    for t in range(n):
        r = answers[t]
        assert r.status_code == 200, (t, r.status_code, r.text)
        assert r.json() == {"accepted": 50, "rejected": []}, r.text
    assert hub.stop(sig=None) == 0, hub.logtext()
    log = hub.logtext()
    assert "%s: shutting down" % signal.strsignal(sig) in log, log
    assert "stopped with undelivered messages" not in log, log
    msgs = bhcat.consume_all(bootstrap, hub.fire_topic, timeout=60)
    ids = [decoder.decode(m["value"])[1]["event_id"] for m in msgs]
    want = [e["id"] for t in range(n) for e in fire_batch(tag, t)]
    assert sorted(i for i in ids if not i.startswith("XF-%sW-" % tag)) == sorted(want)


def test_embedded_default(hub_factory, decoder):
    hub = hub_factory("embedded").start()
    assert "keeps nothing" in hub.logtext()
    r = hub.post({"id": "XF-E-1", "category": "alarm", "unit": "u", "level": "low",
                  "occurred_at": "2026-11-27T00:00:00Z", "grid_code": "440303-002"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    bootstrap = hub.logtext().split("mock Kafka cluster at ")[1].split(";")[0].strip()
    msgs = bhcat.consume_all(bootstrap, hub.fire_topic)
    assert [decoder.decode(m["value"])[1]["event_id"] for m in msgs] == ["XF-E-1"]
    assert hub.stop() == 0


def test_readme_config_reference_is_current():
    """The README's reference is the generated one (tools/update-readme-reference.py)."""
    with open(os.path.join(SRC, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    begin, end = "<!-- config-reference:begin -->\n", "<!-- config-reference:end -->"
    section = readme[readme.index(begin) + len(begin):readme.index(end)]
    assert section.strip() == run("--config-reference").stdout.strip()
