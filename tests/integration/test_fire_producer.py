"""An adapter's own producer (kafka_properties in its entry).

The fire adapter is given producer properties of its own: it then publishes
its records and its dead letters through a second producer made from the
kafka section with those properties over kafka.properties, while an adapter
without the key (traffic) keeps the hub's. What shows it from outside: the
records decoded from the topic, the admin API's report of each component's
producer (its kind, bootstrap and overriding properties, and the messages its
own producer took), and a property that changes what fire accepts
(message.max.bytes: an event whose record exceeds the adapter's limit is
dead-lettered as too_large, its dead letter cut to fit under that limit).
The last test turns it around: traffic with a producer of its own, fire on
the hub's.
"""
import json
import re
import socket

import bhcat
from conftest import wait_until
from test_admin import admin_hub, component, fire_events, metrics, traffic_lines
from test_reload import reload, rewrite


def own_producer(h, props):
    """Gives H's fire entry the producer properties PROPS (before it starts)."""
    rewrite(h, '    topic: "%s"' % h.fire_topic,
            '    topic: "%s"\n    kafka_properties: %s' % (h.fire_topic, json.dumps(props)))
    return h


def test_fire_publishes_through_its_own_producer(kafka, hub_factory, decoder):
    h = own_producer(admin_hub(hub_factory, kafka),
                     {"linger.ms": "0", "message.max.bytes": "4000"}).start()
    # Reported: fire's own producer with what it overrides; traffic on the hub's.
    fire = component(h, "fire")
    assert fire["producer"] == {"kind": "own", "bootstrap": kafka,
                                "kafka_properties": {"linger.ms": "0",
                                                     "message.max.bytes": "4000"}}
    assert fire["counters"]["kafka_own_producer"] == 1
    traffic = component(h, "traffic")
    assert traffic["producer"] == {"kind": "hub", "bootstrap": kafka}
    assert "kafka_own_producer" not in traffic["counters"]

    events = fire_events("own", 5, bad=1)
    big = dict(events[0], id="XF-own-big", description="x" * 6000)
    r = h.post(events + [big])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 5
    codes = {x["index"]: x["code"] for x in body["rejected"]}
    # Over the adapter's message.max.bytes (4000), far under the hub's (1000000).
    assert codes == {5: "missing_field", 6: "too_large"}, body

    msgs = bhcat.consume_all(kafka, h.fire_topic)
    got = sorted(decoder.decode(m["value"])[1]["event_id"] for m in msgs)
    assert got == sorted(e["id"] for e in events[:5])
    for m in msgs:
        assert m["headers"]["blockhub.adapter"] == b"fire"
    dead = [decoder.decode(m["value"])[1] for m in bhcat.consume_all(kafka, h.dlq_topic)]
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == ["missing_field", "too_large"], dead
    too_large = next(d for d in dead if d["reason"] == "too_large")
    # Cut to fit under the adapter's limit, not the hub's.
    assert too_large["payload_truncated"] is True and len(too_large["payload"]) < 4000

    # The five records and the two dead letters went through fire's producer.
    fire = component(h, "fire")
    assert fire["counters"]["kafka_produced"] == 7, fire
    assert fire["counters"]["acknowledged"] == 5 + 2
    # Traffic's lines go through the hub's producer, which fire did not use.
    before = metrics(h)["blockhub_kafka_in_flight"]
    assert before == 0
    s = socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60)
    s.sendall(traffic_lines("own", 20))
    wait_until(lambda: component(h, "traffic")["counters"]["acknowledged"] == 20, "the lines")
    s.close()
    assert len(bhcat.consume_all(kafka, h.traffic_topic)) == 20
    assert component(h, "fire")["counters"]["kafka_produced"] == 7
    m = metrics(h)
    assert m['blockhub_component_kafka_own_producer{component="fire",type="fire"}'] == 1
    assert m['blockhub_component_kafka_produced_total{component="fire",type="fire"}'] == 7
    assert h.stop() == 0, h.logtext()
    log = h.logtext()
    assert "fire: a producer of its own (linger.ms=0, message.max.bytes=4000)" in log
    # Drained and closed at shutdown, before the hub's: nothing left open or undelivered.
    assert "fire: intake stopped; flushing" in log
    assert not re.search(r"Z error ", log), log


def test_embedded_cluster_shared(hub_factory, decoder):
    """With kafka.brokers: embedded the adapter's producer joins the hub's mock cluster."""
    h = own_producer(admin_hub(hub_factory, "embedded"), {"linger.ms": "1"}).start()
    m = re.search(r"in-process mock Kafka cluster at (\S+);", h.logtext())
    assert m, h.logtext()
    cluster = m.group(1)
    fire = component(h, "fire")
    assert fire["producer"]["kind"] == "own"
    assert fire["producer"]["bootstrap"] == cluster
    assert component(h, "traffic")["producer"]["bootstrap"] == cluster
    events = fire_events("emb", 4)
    r = h.post(events)
    assert r.status_code == 200 and r.json()["accepted"] == 4, r.text
    msgs = bhcat.consume_all(cluster, h.fire_topic)
    assert sorted(decoder.decode(x["value"])[1]["event_id"] for x in msgs) == \
        sorted(e["id"] for e in events)
    assert h.stop() == 0, h.logtext()
    # One mock cluster only.
    assert h.logtext().count("in-process mock Kafka cluster") == 1


def test_reload_of_the_properties(kafka, hub_factory, decoder):
    """A bad property refuses the reload with its key and reason and the running producer
    stays; a changed one replaces the adapter, on a new producer with the new properties;
    taken away, the adapter goes back to the hub's producer."""
    h = own_producer(admin_hub(hub_factory, kafka), {"linger.ms": "0"}).start()
    name = h.config.rsplit("/", 1)[1]
    assert h.post(fire_events("r1", 3)).json()["accepted"] == 3
    assert component(h, "fire")["counters"]["kafka_produced"] == 3

    text = rewrite(h, '{"linger.ms": "0"}', '{"linger.ms": "0", "acks": "1"}')
    r = reload(h)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert name in err and "adapters[fire].kafka_properties" in err and "acks=all" in err, err
    with open(h.config, "w", encoding="utf-8") as f:
        f.write(text)
    fire = component(h, "fire")
    assert fire["producer"]["kafka_properties"] == {"linger.ms": "0"}
    assert fire["counters"]["kafka_produced"] == 3  # the same producer runs on

    rewrite(h, '{"linger.ms": "0"}', '{"linger.ms": "2"}')
    r = reload(h)
    assert r.status_code == 200, r.text
    assert "fire replaced" in r.json()["changes"], r.json()
    assert "traffic" not in r.json()["changes"], r.json()
    wait_until(lambda: component(h, "fire")["state"] == "running"
               and component(h, "fire").get("producer", {}).get("kafka_properties")
               == {"linger.ms": "2"}, "fire on its new producer")
    assert h.post(fire_events("r2", 2)).json()["accepted"] == 2
    assert component(h, "fire")["counters"]["kafka_produced"] == 2  # a new producer

    rewrite(h, '\n    kafka_properties: {"linger.ms": "2"}', "")
    r = reload(h)
    assert r.status_code == 200 and "fire replaced" in r.json()["changes"], r.text
    wait_until(lambda: component(h, "fire")["state"] == "running"
               and component(h, "fire")["producer"]["kind"] == "hub", "fire on the hub's")
    assert h.post(fire_events("r3", 1)).json()["accepted"] == 1
    msgs = bhcat.consume_all(kafka, h.fire_topic)
    assert len(msgs) == 6
    assert h.stop() == 0, h.logtext()


def test_traffic_with_its_own_producer_beside_fire_on_the_hubs(kafka, hub_factory, decoder):
    """The key is the adapters', not fire's alone: traffic with its own, fire on the hub's."""
    h = admin_hub(hub_factory, kafka)
    rewrite(h, '    topic: "%s"' % h.traffic_topic,
            '    topic: "%s"\n    kafka_properties: {"linger.ms": "2"}' % h.traffic_topic)
    h.start()
    assert component(h, "traffic")["producer"]["kafka_properties"] == {"linger.ms": "2"}
    assert component(h, "fire")["producer"] == {"kind": "hub", "bootstrap": kafka}
    s = socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60)
    s.sendall(traffic_lines("tr", 30))
    wait_until(lambda: component(h, "traffic")["counters"]["acknowledged"] == 30, "the lines")
    s.close()
    assert h.post(fire_events("tr", 2)).json()["accepted"] == 2
    assert component(h, "traffic")["counters"]["kafka_produced"] == 30
    ids = sorted(decoder.decode(m["value"])[1]["event_id"]
                 for m in bhcat.consume_all(kafka, h.traffic_topic))
    assert ids == ["tr-%06d" % i for i in range(30)]
    assert len(bhcat.consume_all(kafka, h.fire_topic)) == 2
    assert h.stop() == 0, h.logtext()
