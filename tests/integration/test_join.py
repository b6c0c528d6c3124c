"""The join stage against the real broker (issue 4): the joined views equal a ground truth
computed here from the produced events, field by field; resent events are counted once;
placement is Java's murmur2; mismatched partition counts are refused; the admin API.

Input is generated: Avro single-object records written by fastavro, produced to the
department topics with confluent-kafka's murmur2_random partitioner (what the adapters
and the Java client do), keyed by block id.
"""
import io
import struct
import time

import fastavro
import pytest

import join_helpers as jh
from conftest import deadline_after
from join_helpers import WINDOW_MS, world  # noqa: F401 (a fixture)


def test_java_murmur2_vectors():
    """The test's own murmur2 is the Java client's (values from kafka-clients' Utils.murmur2)."""
    for key, want in jh.JAVA_MURMUR2.items():
        assert jh.murmur2(key) == want, key


def test_all_departments_views_equal_truth(world):
    """Events of all three departments in; every block's last view equals the truth."""
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    events = jh.make_events(world.depts, 6000, seed=1, blocks=world.names)
    hub = world.hub().start()
    hub.wait_live(n=3)
    jh.produce(world.kafka, world.topics, world.depts, events)
    expected = jh.truth(events, WINDOW_MS, world.names)
    views = jh.wait_views(world.kafka, world.view, world.decoder, expected,
                          WINDOW_MS, partitions=3)
    assert len(views) == len(expected) > 100
    # Java's placement of every view's key, and of every input record's key.
    for dept, topic in world.topics.items():
        for m in jh.bhcat.consume_all(world.kafka, topic):
            assert m["partition"] == jh.java_partition(m["key"], 3)
    # the admin API answers with the same view
    block = sorted(expected)[0]
    r = hub.block(block)
    assert r.status_code == 200, r.text
    body = r.json()
    for d in jh.DEPTS:
        assert body[d]["total"] == expected[block][d]["total"]
        assert body[d]["by_type"] == expected[block][d]["by_type"]
        assert body[d]["window_total"] == expected[block][d]["window_total"]
        assert body[d]["last_event_id"] == expected[block][d]["last_event_id"]
        assert body[d]["last_event_at"] == expected[block][d]["last_event_at"]
    assert body["block_name"] == world.names[block]
    assert body["partition"] == jh.java_partition(block.encode(), 3)
    s = hub.status()
    assert s["stats"]["counted"] == len(events)
    assert s["stats"]["duplicates"] == 0
    assert s["stats"]["dead_letters"] == 0
    assert hub.stop() == 0


def test_resent_events_give_the_same_views(world):
    """The same input with 20% of fire and traffic events sent twice: the same final views."""
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    events = jh.make_events(world.depts, 5000, seed=2, blocks=world.names)
    resent = jh.with_copies(events, 0.2, seed=3)
    copies = len(resent) - len(events)
    assert copies > 600
    hub = world.hub().start()
    hub.wait_live(n=3)
    jh.produce(world.kafka, world.topics, world.depts, resent)
    expected = jh.truth(events, WINDOW_MS, world.names)
    assert expected == jh.truth(resent, WINDOW_MS, world.names)
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    views = jh.last_views(world.kafka, world.view, world.decoder)
    assert jh.event_counts(views) == {d: sum(1 for e in events if e[0] == d) for d in jh.DEPTS}
    jh.assert_views_equal_truth(views, expected, WINDOW_MS, partitions=3)
    s = hub.status()
    assert s["stats"]["counted"] == len(events)
    assert s["stats"]["duplicates"] == copies
    assert hub.stop() == 0


def test_unusable_input_is_dead_lettered(world):
    """No key, a key on the wrong partition, unknown bytes, a schema without the fields, the
    least long as event time: dead letters with reasons; the rest flows on."""
    from confluent_kafka import Producer
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    hub = world.hub().start()
    hub.wait_live(n=3)
    fire = next(d for d in world.depts if d.name == "fire")
    good = fire.encode(fire.record("F-good", "440303-017", "alarm", 1795738500000))
    right = jh.java_partition(b"440303-017", 3)
    dl = world.decoder
    dead_letter_schema = dl.by_name["blockhub.DeadLetter"][1]
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + struct.pack("<Q", dl.by_name["blockhub.DeadLetter"][0]))
    fastavro.schemaless_writer(buf, dead_letter_schema, {
        "adapter": "x", "adapter_type": "x", "reason": "x", "detail": "x",
        "origin": {"transport": "x", "source": "x", "peer": None, "position": None},
        "payload": b"", "payload_truncated": False, "received_at": 0})
    p = Producer({"bootstrap.servers": world.kafka})
    topic = world.topics["fire"]
    p.produce(topic, value=good, partition=0)                                  # no key
    p.produce(topic, key=b"440303-017", value=good, partition=(right + 1) % 3)  # misplaced
    p.produce(topic, key=b"440303-017", value=b"\xc3\x01" + b"\x42" * 8 + b"\x00",
              partition=right)                                                 # unknown schema
    p.produce(topic, key=b"440303-017", value=b'{"id": "json"}', partition=right)  # not Avro
    p.produce(topic, key=b"440303-017", value=buf.getvalue(), partition=right)  # no fields
    p.produce(topic, key=b"440303-017", value=good[:-5], partition=right)      # truncated
    p.produce(topic, key=b"440303-017", partition=right,
              value=fire.encode(fire.record("F-no-time", "440303-017", "alarm", -2 ** 63)))
    p.produce(topic, key=b"440303-017", value=good, partition=right)           # good
    assert p.flush(30) == 0
    expected = jh.truth([("fire", "F-good", "440303-017", "alarm", 1795738500000)], WINDOW_MS,
                        world.names)
    jh.wait_views(world.kafka, world.view, dl, expected, WINDOW_MS, partitions=3)
    deadline = deadline_after(60)
    while True:
        dead = [dl.decode(m["value"])[1] for m in jh.read_committed(world.kafka, hub.dlq_topic)]
        if len(dead) >= 7 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    reasons = sorted((d["reason"], d["detail"]) for d in dead)
    assert [r for r, _ in reasons] == ["invalid_encoding", "invalid_encoding", "invalid_encoding",
                                       "invalid_field", "invalid_field", "invalid_field",
                                       "missing_field"], reasons
    details = " | ".join(d for _, d in reasons)
    assert "no key" in details
    assert "murmur2 places it on %d" % right in details
    assert "unknown schema fingerprint" in details
    assert "not Avro single-object encoding" in details
    assert "blockhub.DeadLetter" in details and "'event_id'" in details
    assert "occurred_at: -9223372036854775808 is not a time" in details
    for d in dead:
        assert d["adapter"] == "join" and d["adapter_type"] == "join"
        assert d["origin"]["transport"] == "kafka"
        assert d["origin"]["source"].startswith(topic + "[")
        assert d["origin"]["position"] is not None
    assert hub.status()["stats"]["dead_letters"] == 7
    assert hub.stop() == 0


def test_mismatched_partition_counts_refused_at_start(world):
    jh.create_topics(world.kafka, {world.topics["market"]: 3, world.topics["traffic"]: 4,
                                   world.topics["fire"]: 3})
    hub = world.hub()
    with pytest.raises(AssertionError) as e:
        hub.start(timeout=60)
    assert "exited 1" in str(e.value)
    log = hub.logtext()
    assert "co-partitioning: the topics differ in partition count" in log
    assert "hub: ready" not in log and "assigned partitions" not in log  # refused at start
    assert "%s=4" % world.topics["traffic"] in log
    assert "%s=3" % world.topics["fire"] in log and "%s=3" % world.topics["market"] in log
    # the view and the changelog, created with the first input's count, are named too
    assert "%s=3" % world.view in log and "%s=3" % world.state in log


def test_mismatched_partition_counts_stop_the_join_on_rebalance(world):
    """Partitions added to one input while the join runs: the rebalance stops it, by name."""
    from confluent_kafka.admin import AdminClient, NewPartitions
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    hub = world.hub(kafka_properties={"topic.metadata.refresh.interval.ms": "1000"}).start()
    hub.wait_live(n=3)
    a = AdminClient({"bootstrap.servers": world.kafka})
    for f in a.create_partitions([NewPartitions(world.topics["traffic"], 5)]).values():
        f.result(30)
    rc = hub.proc.wait(120)
    assert rc == 1
    log = hub.logtext()
    assert "the join stops" in log
    assert "%s=5" % world.topics["traffic"] in log and "%s=3" % world.view in log
    hub.check_sanitizers()


def test_join_counters_on_the_admin_api(world):
    """The join as a component: its counters, per-partition lag and state in /metrics."""
    import requests
    from conftest import wait_until
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    events = jh.make_events(world.depts, 3000, seed=7, blocks=world.names)
    hub = world.hub().start()
    hub.wait_live(n=3)
    jh.produce(world.kafka, world.topics, world.depts, events)
    expected = jh.truth(events, WINDOW_MS, world.names)
    jh.wait_views(world.kafka, world.view, world.decoder, expected, WINDOW_MS, partitions=3)

    def metrics():
        out = {}
        for line in requests.get(hub.admin + "/metrics", timeout=10).text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    lag = 'blockhub_component_consumer_lag{component="join",type="join",partition="%d"}'
    wait_until(lambda: all(metrics().get(lag % p) == 0 for p in range(3)),
               "no lag once every view is out")
    m = metrics()
    total = sum(v[d]["total"] for v in expected.values() for d in v if isinstance(v[d], dict))
    assert m['blockhub_component_counted_total{component="join",type="join"}'] == total
    assert m['blockhub_component_views_total{component="join",type="join"}'] >= len(expected)
    assert m['blockhub_component_commits_total{component="join",type="join"}'] > 0
    assert m['blockhub_component_state_bytes{component="join",type="join"}'] > 0
    comps = requests.get(hub.admin + "/components", timeout=10).json()["components"]
    assert [(c["name"], c["type"], c["can_pause"]) for c in comps] == [("join", "join", False)]
    r = requests.post(hub.admin + "/components/join/pause", timeout=10)
    assert r.status_code == 501 and "cannot be paused" in r.json()["error"]
    assert hub.stop() == 0, hub.logtext()
