"""The fire feed when the broker stops or dies: the sender is told only what Kafka acknowledged."""
import collections
import threading
import time

import bhcat
import requests
from conftest import Threads, wait_until


def event(i, prefix):
    return {"id": "%s-%06d" % (prefix, i), "category": "alarm", "unit": "u%d" % i,
            "level": "high", "occurred_at": "2026-11-27T08:15:00+08:00",
            "grid_code": "440303-%03d" % (1 + i % 120)}


def test_broker_stopped_gives_503_then_accepts(own_broker, hub_factory, decoder):
    hub = hub_factory(own_broker.bootstrap,
                      extra_sets=["adapters.fire.ack_timeout=3s",
                                  "adapters.fire.retry_after=7s"]).start()
    batch = [event(i, "XF-DOWN") for i in range(5)]
    assert hub.post(batch).status_code == 200
    own_broker.stop()
    t0 = time.monotonic()
    r = hub.post(batch, timeout=60)
    waited = time.monotonic() - t0
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "7"
    assert "accepted" not in r.json()
    assert waited >= 2.5  # it did wait for the broker before giving up
    own_broker.start()
    r = wait_until(lambda: (lambda r: r if r.status_code == 200 else None)(
        hub.post(batch, timeout=60)), "a 200 once the broker is back", timeout=120,
        hub=hub, interval=1)
    assert r.json()["accepted"] == 5, r.text
    msgs = bhcat.consume_all(own_broker.bootstrap, hub.fire_topic)
    ids = collections.Counter(m["headers"]["blockhub.event_id"].decode() for m in msgs)
    # every event is there; retries may have added copies, each with its id header
    assert set(ids) == {e["id"] for e in batch}
    for m in msgs:
        assert decoder.decode(m["value"])[1]["event_id"] == m["headers"]["blockhub.event_id"].decode()
    assert hub.stop() == 0


def test_broker_kill9_loses_no_acknowledged_event(own_broker, hub_factory, decoder):
    hub = hub_factory(own_broker.bootstrap,
                      extra_sets=["adapters.fire.ack_timeout=4s"]).start()
    acked, refused, failed = [], [], []
    stop = threading.Event()

    def sender():
        i = 0
        s = requests.Session()
        while not stop.is_set():
            batch = [event(i * 4 + k, "XF-K9") for k in range(4)]
            i += 1
            try:
                r = s.post(hub.url, json=batch, timeout=30,
                           headers={"Authorization": "Bearer test-token-1"})
            except requests.RequestException:
                failed.extend(e["id"] for e in batch)
                continue
            if r.status_code == 200:
                assert r.json()["accepted"] == 4
                acked.extend(e["id"] for e in batch)
            else:
                assert r.status_code == 503, r.text
                refused.extend(e["id"] for e in batch)

    threads = Threads()  # a failed assert in the sender fails the test
    threads.start(sender)
    try:
        wait_until(lambda: len(acked) >= 40 or threads.errors,
                   "40 events acknowledged before the kill", hub=hub)
        before = len(acked)
        own_broker.kill9()
        time.sleep(6)  # the outage
        own_broker.start()
        wait_until(lambda: len(acked) >= before + 200 or threads.errors,
                   "200 more events acknowledged after the broker came back", timeout=90,
                   hub=hub)
    finally:
        stop.set()
        threads.join(60)
    print("acknowledged before the kill: %d, in all: %d; refused (503): %d; no answer: %d"
          % (before, len(acked), len(refused), len(failed)))
    assert before > 0 and len(acked) >= before + 200, (before, len(acked), len(refused))
    assert refused or failed, "the kill went unnoticed: the test proved nothing"
    assert hub.stop() == 0
    msgs = bhcat.consume_all(own_broker.bootstrap, hub.fire_topic, timeout=60)
    counts = collections.Counter(decoder.decode(m["value"])[1]["event_id"] for m in msgs)
    missing = [e for e in acked if e not in counts]
    assert not missing, "acknowledged but not in the topic: %r" % missing[:10]
    twice = [e for e, n in counts.items() if n > 1]
    assert not twice, "in the topic more than once: %r" % twice[:10]
