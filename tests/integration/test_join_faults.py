"""The join's recovery paths against the real broker, with real transactions:

- an abortable error (the broker refuses a changelog record as too large): the transaction
  is aborted, nothing of it becomes visible, the state is rebuilt from the changelog and the
  inputs rewound; once the broker accepts again, the views equal the truth;
- a fatal error (another producer takes the join's transactional.id and fences it): the join
  replaces its producer (fencing the intruder in turn) and the views still equal the truth.
"""
import time

from confluent_kafka import Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ResourceType)

import join_helpers as jh
from conftest import deadline_after
from join_helpers import WINDOW_MS, world  # noqa: F401 (a fixture)


def set_topic_config(bootstrap, topic, name, value):
    a = AdminClient({"bootstrap.servers": bootstrap})
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    res = ConfigResource(ResourceType.TOPIC, topic,
                         incremental_configs=[ConfigEntry(name, value, incremental_operation=op)])
    for f in a.incremental_alter_configs([res]).values():
        f.result(30)


def wait(cond, timeout, what):
    deadline = deadline_after(timeout)
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def test_aborted_transactions_are_redone(world):
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    hub = world.hub().start()
    hub.wait_live(n=3)
    first = jh.make_events(world.depts, 3000, seed=31, blocks=world.names)
    jh.produce(world.kafka, world.topics, world.depts, first)
    expected1 = jh.truth(first, WINDOW_MS, world.names)
    jh.wait_views(world.kafka, world.view, world.decoder, expected1, WINDOW_MS, partitions=3)

    # Every changelog batch is now too large for the broker (but for the transaction markers,
    # about 78 bytes): each commit is aborted.
    set_topic_config(world.kafka, world.state, "max.message.bytes", "100")
    second = jh.make_events(world.depts, 3000, seed=32, blocks=world.names,
                            base_ms=1795738500000 + 3 * 86400000)
    jh.produce(world.kafka, world.topics, world.depts, jh.with_copies(second, 0.2, seed=33))
    wait(lambda: hub.status()["stats"]["aborts"] >= 3, 120, "aborted transactions")
    # nothing of an aborted transaction is visible: the views are still the first batch's
    jh.assert_views_equal_truth(jh.last_views(world.kafka, world.view, world.decoder),
                                expected1, WINDOW_MS, partitions=3)
    assert "rebuilding the state from the changelog" in hub.logtext()

    set_topic_config(world.kafka, world.state, "max.message.bytes", None)
    expected = jh.truth(first + second, WINDOW_MS, world.names)
    jh.wait_views(world.kafka, world.view, world.decoder, expected, WINDOW_MS, partitions=3)
    assert jh.consumed_up_to_end(world.kafka, world.group, world.topics.values())
    assert hub.status()["running"]
    assert hub.stop() == 0


def test_fenced_producer_is_replaced(world):
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    hub = world.hub().start()
    hub.wait_live(n=3)
    events = jh.make_events(world.depts, 9000, seed=41, blocks=world.names)
    jh.produce(world.kafka, world.topics, world.depts, events[:3000])
    txn_id = hub.status()["transactional_id"]
    # Another producer with the join's transactional.id fences the join's producer.
    intruder = Producer({"bootstrap.servers": world.kafka, "transactional.id": txn_id})
    intruder.init_transactions(30)
    jh.produce(world.kafka, world.topics, world.depts, events[3000:6000])
    wait(lambda: hub.status()["stats"]["producer_restarts"] >= 1, 120, "a new producer")
    jh.produce(world.kafka, world.topics, world.depts, events[6000:])
    expected = jh.truth(events, WINDOW_MS, world.names)
    jh.wait_views(world.kafka, world.view, world.decoder, expected, WINDOW_MS, partitions=3)
    assert "replacing it" in hub.logtext()
    assert hub.status()["running"]
    assert hub.stop() == 0
