"""The daemon's own behaviour: config refusal, clean shutdown, the embedded default."""
import os
import signal
import subprocess
import threading
import time

import bhcat
from conftest import BLOCKHUB, SRC

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
    hub = hub_factory(kafka, extra_sets=["kafka.properties.partitioner=random"])
    try:
        hub.start(timeout=20)
        raise AssertionError("started with partitioner=random")
    except AssertionError as e:
        assert "murmur2_random" in str(e)


def test_config_reference_lists_every_key():
    r = run("--config-reference")
    assert r.returncode == 0
    for key in ("kafka.brokers", "kafka.properties", "blocks.map", "schemas.dir",
                "dead_letter.topic", "listen", "tokens", "body_limit", "ack_timeout"):
        assert key in r.stdout, key


def test_sigterm_finishes_in_flight_requests(kafka, hub_factory, decoder):
    hub = hub_factory(kafka).start()
    results = {}

    def batch(t):
        return [{"id": "XF-SIG-%d-%04d" % (t, i), "category": "drill", "unit": "u",
                 "level": "low", "occurred_at": "2026-11-27T08:15:00+08:00",
                 "grid_code": "440303-010"} for i in range(1000)]

    def post(t):
        try:
            results[t] = hub.post(batch(t), timeout=60)
        except Exception as e:  # a connection refused after intake stopped is fine
            results[t] = e

    threads = [threading.Thread(target=post, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # let the requests reach the daemon, then stop it under them
    hub.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    assert hub.stop(sig=None) == 0
    accepted = [t for t, r in results.items()
                if not isinstance(r, Exception) and r.status_code == 200]
    assert accepted, results
    msgs = bhcat.consume_all(kafka, hub.fire_topic)
    ids = {decoder.decode(m["value"])[1]["event_id"] for m in msgs}
    for t in accepted:
        assert {e["id"] for e in batch(t)} <= ids
    assert "shutting down" in hub.logtext()


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
