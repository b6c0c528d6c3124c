"""Planted alerts (issue 11): the simulator plants combinations that must fire the join's
watches and rules (tools/blockhub-sim --plant) and writes which alerts must fire into its
ground truth. The departments' events flow through a real hub (market spool, traffic lines,
fire webhook) into Kafka, and a join process with the watches and rules the simulator wrote is
killed with SIGKILL five times at random points while they flow: in the end every planted alert
is on the alerts topic exactly once (read_committed), and no other alert is.
"""
import json
import os
import random
import subprocess
import sys
import time

from confluent_kafka import Consumer, TopicPartition

import join_helpers as jh
from conftest import SRC, TOKEN, WORLD, free_port, wait_until
from join_helpers import map_with_units, world  # noqa: F401 (a fixture)

SIM = os.path.join(SRC, "tools", "blockhub-sim")
KILLS = 5
PLANTS = 40


def high_watermarks(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "plant-wm"})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in md.partitions)
    finally:
        c.close()


def flow(entry):
    """A config entry as a YAML flow mapping (JSON is one)."""
    return json.dumps(entry, ensure_ascii=False)


def test_planted_alerts_fire_exactly_once_across_five_kill9(world, hub_factory, tmp_path):
    blocks_map, units = map_with_units(tmp_path)
    tag = world.view.rsplit(".", 1)[-1]
    alerts_topic = "block.alerts.%s" % tag
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})

    # the departments' side: one hub with the three adapters, fed by the simulator
    spool = tmp_path / "spool"
    spool.mkdir()
    tport, fport = free_port(), free_port()
    feeds = hub_factory(world.kafka, fire=False, adapters=[
        {"name": "market", "type": "market", "spool_dir": str(spool),
         "topic": world.topics["market"]},
        {"name": "traffic", "type": "traffic", "auth": "none", "listen": "127.0.0.1:%d" % tport,
         "topic": world.topics["traffic"]},
        {"name": "fire", "type": "fire", "listen": "127.0.0.1:%d" % fport, "tokens": [TOKEN],
         "topic": world.topics["fire"]},
    ]).start()
    plant_conf = tmp_path / "plant.json"
    truth_path = tmp_path / "truth.json"
    sim_log = open(str(tmp_path / "sim.log"), "wb")
    sim = subprocess.Popen(
        [sys.executable, SIM, "--blocks", os.path.join(WORLD, "blocks.geojson"), "--seed", "11",
         "--rate", "1500", "--count", "45000", "--plant", str(PLANTS),
         "--plant-config", str(plant_conf), "--bad", "0.01", "--spool", str(spool),
         "--traffic", "127.0.0.1:%d" % tport, "--connections", "4",
         "--fire", "http://127.0.0.1:%d/v1/fire/events" % fport, "--fire-token", TOKEN,
         "--truth", str(truth_path)], stdout=sim_log, stderr=subprocess.STDOUT)
    try:
        wait_until(plant_conf.exists, "the simulator's plant config", hub=feeds)
        conf = json.loads(plant_conf.read_text(encoding="utf-8"))
        extra = ["  commit_interval: 1s", "  alerts_topic: %s" % alerts_topic,
                 "  rules_topic: block.rules.%s" % tag, "  watches:"]
        extra += ["    - %s" % flow(w) for w in conf["watches"]]
        extra += ["  rules:"] + ["    - %s" % flow(r) for r in conf["rules"]]

        def join():
            h = world.hub(blocks_map=blocks_map, extra=extra, state_dir="join-state-plant")
            h.start()
            h.wait_live(n=3)
            return h

        # five kill -9 at random points of the input: after a random number of records
        seed = int.from_bytes(os.urandom(4), "little")
        rnd = random.Random(seed)
        mid_input = 0
        for k in range(KILLS):
            hub = join()
            target = rnd.randrange(200, 4000)

            def far_enough():
                s = hub.status()["stats"]
                return s["consumed"] >= target or (
                    sim.poll() is not None and
                    jh.consumed_up_to_end(world.kafka, world.group, world.topics.values()))
            wait_until(far_enough, "join kill point %d (seed %d)" % (k, seed), timeout=180,
                       hub=hub, interval=0.01)
            if sim.poll() is None:
                mid_input += 1
            hub.kill()
        assert mid_input >= 1, "no kill -9 while the departments' events were still flowing"

        hub = join()
        assert sim.wait(300) == 0, (tmp_path / "sim.log").read_text()
    finally:
        if sim.poll() is None:
            sim.kill()
        sim_log.close()
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    assert truth["final"] and truth["plant"]["count"] == PLANTS
    assert not any(truth["anomalies"].values()), truth["anomalies"]
    planted = truth["plant"]["alerts"]
    assert len(planted) == PLANTS  # every plant was delivered

    # everything the departments sent is in Kafka, and the join has consumed all of it
    want = {d: truth["totals"][d]["valid"] for d in world.topics}

    def all_published():
        pending = [n for n in os.listdir(str(spool)) if n.endswith((".csv", ".part"))]
        return not pending and all(high_watermarks(world.kafka, world.topics[d]) >= want[d]
                                   for d in world.topics)
    wait_until(all_published, "the hub to publish every event", timeout=180, hub=feeds)
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())

    alerts = []
    for m in jh.read_committed(world.kafka, alerts_topic):
        name, rec = world.decoder.decode(m["value"])
        assert name == "blockhub.alert.BlockAlert"
        alerts.append(rec)
    got = [(a["kind"], a["name"], a["block_id"],
            tuple(sorted((e["department"], e["event_id"]) for e in a["events"]))) for a in alerts]
    dup = sorted({g for g in got if got.count(g) > 1})
    assert not dup, "%d alerts fired more than once (first: %s)" % (len(dup), dup[:5])
    expected = sorted((p["kind"], p["name"], p["block"], tuple(tuple(e) for e in p["events"]))
                      for p in planted)
    missing, other = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    assert sorted(got) == expected, "%d planted alerts missing (first: %s); %d not planted " \
        "(first: %s)" % (len(missing), missing[:5], len(other), other[:5])
    by_key = {g: a for g, a in zip(got, alerts)}
    for p in planted:
        a = by_key[(p["kind"], p["name"], p["block"], tuple(tuple(e) for e in p["events"]))]
        assert a["unit"] == units[p["block"]]
        if "alert_id" in p:
            assert a["alert_id"] == p["alert_id"]
    assert {p["kind"] for p in planted} == {"RULE", "WATCH"}
    assert hub.stop() == 0
    assert feeds.stop() == 0
