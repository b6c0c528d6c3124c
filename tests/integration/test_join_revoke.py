"""The join's revocation never stalls the loop it shares with the adapters.

One blockhub runs the fire adapter (ack_timeout 2s) and the join, on a broker of the
test's own, while the departments keep producing: the join always has a transaction to
commit. The broker is then frozen (SIGSTOP) for 20 s: the commit in flight hangs, and
the consumer's group session times out (session_timeout 6s), so the join's partitions are
lost while its transaction thread waits for Kafka. Meanwhile a probe sends fire requests
one after another: each must be answered, 503 with Retry-After (nothing can be
acknowledged), within ack_timeout and a margin, never held up behind the join's
transaction. Once the broker goes on, the group is joined again and the views equal the
truth: the revocation that did not wait committed nothing twice and lost nothing.
"""
import threading
import time
import uuid

import requests

import bhcat
import join_helpers as jh
from conftest import TOKEN, stalled, wait_log, wait_until

ACK_TIMEOUT_S = 2
MARGIN_S = 3
FROZEN_S = 20


def test_revocation_does_not_stall_fire(own_broker, tmp_path):
    bs = own_broker.bootstrap
    tag = uuid.uuid4().hex[:10]
    schemas = jh.schema_dir(tmp_path)
    decoder = bhcat.Decoder(schemas)
    depts = [jh.Department(d, schemas) for d in jh.DEPTS]
    topics = {d: "dept.%s.join.%s" % (d, tag) for d in jh.DEPTS}
    names = jh.block_ids()
    view, state, group = "block.view.%s" % tag, "block.view.state.%s" % tag, "join-%s" % tag
    jh.create_topics(bs, {t: 3 for t in topics.values()})

    hub = jh.JoinHub(tmp_path, bs, schemas, [d.input_conf(topics[d.name]) for d in depts],
                     view, state, group, fire=True)
    hub.sets = ["adapters.fire.ack_timeout=%ds" % ACK_TIMEOUT_S,
                "adapters.fire.retry_after=1s"]
    events = jh.make_events(depts, 6000, seed=61, blocks=names)
    feed_stop = threading.Event()
    sent = []
    errors = []

    def feed():
        """The departments produce all along (the broker's stop only delays them)."""
        try:
            f = jh.Feed(bs, topics, depts)
            for i in range(0, len(events), 20):
                if feed_stop.is_set():
                    break
                f.send(events[i:i + 20])
                sent.extend(events[i:i + 20])
                time.sleep(0.05)
            f.flush()
        except BaseException as e:  # noqa: B902 - reported in the test's thread
            errors.append(e)

    try:
        hub.start()
        hub.wait_live(n=3)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        wait_until(lambda: hub.status()["stats"]["commits"] >= 5, "the join to commit", hub=hub)

        probe = [{"id": "FI-PROBE-%s" % tag, "category": "alarm", "unit": "probe",
                  "level": "low", "grid_code": sorted(names)[0],
                  "occurred_at": "2026-11-27T08:15:00+08:00"}]
        answers = []  # (seconds from the freeze, latency, status, Retry-After)
        with stalled(own_broker):
            frozen_at = time.monotonic()
            while time.monotonic() - frozen_at < FROZEN_S:
                t = time.monotonic()
                try:
                    r = hub.post(probe, timeout=ACK_TIMEOUT_S + 8)
                    status, retry = r.status_code, r.headers.get("Retry-After")
                except requests.RequestException as e:
                    status, retry = repr(e), None
                answers.append((t - frozen_at, time.monotonic() - t, status, retry))
        summary = ", ".join("%.1fs: %s in %.1fs" % (at, s, lat) for at, lat, s, _ in answers)
        print("probes while the broker was frozen: " + summary, flush=True)
        slow = [a for a in answers if a[1] > ACK_TIMEOUT_S + MARGIN_S]
        assert not slow, ("fire answered late while the join lost its partitions (ack_timeout "
                          "%ds): %s\n%s" % (ACK_TIMEOUT_S, summary, hub.logtext()))
        assert all(s == 503 and retry == "1" for _, _, s, retry in answers), summary
        assert len(answers) >= FROZEN_S // (ACK_TIMEOUT_S + MARGIN_S), summary

        # The scenario: the partitions were lost while a transaction was under way.
        wait_log(hub, "lost 3 partition(s)")
        assert "waiting for the running transaction" in hub.logtext(), hub.logtext()

        # The broker goes on: the group is joined again, the views are exactly the truth.
        feeder.join(300)
        assert not feeder.is_alive() and not errors, errors
        hub.wait_live(n=3, timeout=180)
        jh.wait_views(bs, view, decoder, jh.truth(sent, jh.WINDOW_MS, names), jh.WINDOW_MS,
                      timeout=180, partitions=3)
        assert jh.read_committed(bs, hub.dlq_topic, timeout=10) == []
        wait_until(lambda: hub.post(probe, timeout=30).status_code == 200,
                   "fire to acknowledge again", hub=hub)
        assert hub.stop() == 0
    finally:
        feed_stop.set()
        hub.kill()
