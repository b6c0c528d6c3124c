"""Watches of the join (issue 11) against the real broker: a watch on a plate, on a block
and one that expires; every counted event that matches fires exactly one alert on the
alerts topic (read_committed), a copy never, an event past the expiry never, across a
kill -9 of the join in the middle of its input; each alert carries its block's responsible
unit from the block map and the event that fired it.
"""
import json

from confluent_kafka import Producer

import join_helpers as jh
from join_helpers import map_with_units
from conftest import start_refused, wait_until
from join_helpers import world  # noqa: F401 (a fixture)

PLATE = "粤B12345"
OTHER = "粤B99999"
BASE = 1795738500000  # 2026-11-27T...Z, the helpers' base time
EXPIRES_MS = BASE + 3600000


def iso(ms):
    import datetime
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def records(world, n=600, seed=11):
    """(dept, id, block, type, at, plate) events: random ones, plus the ones the watches want."""
    evs = [e + (None,) for e in jh.make_events(world.depts, n, seed=seed, blocks=world.names)]
    blocks = sorted(world.names)
    for i in range(6):  # the watched plate, in traffic: each fires
        evs.insert(40 + 90 * i, ("traffic", "TR-PLATE-%d" % i, blocks[i * 3], "congestion",
                                 BASE + 1000 * i, PLATE))
    for i in range(4):  # the other plate: two before the watch expires, two after
        evs.insert(30 + 120 * i, ("traffic", "TR-OTHER-%d" % i, blocks[i], "congestion",
                                  EXPIRES_MS + (-2 + i) * 60000 + (0 if i < 2 else 1), OTHER))
    watched = blocks[7]
    for i in range(3):  # fire events of the watched block fire it; a traffic one there does not
        evs.insert(50 + 100 * i, ("fire", "FI-BLOCK-%d" % i, watched, "hazard", BASE + i, None))
    evs.insert(77, ("traffic", "TR-BLOCK-0", watched, "congestion", BASE, None))
    return evs


def send(bootstrap, world, events):
    by = {d.name: d for d in world.depts}
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                  "enable.idempotence": True, "linger.ms": 5})
    for dept, eid, block, type_, at, plate in events:
        d = by[dept]
        rec = d.record(eid, block, type_, at)
        if dept == "traffic":
            rec["plate"] = plate
        p.produce(world.topics[dept], key=block.encode(), value=d.encode(rec))
        p.poll(0)
    assert p.flush(60) == 0


def expected_alerts(events, watched_block):
    want = set()
    for dept, eid, block, type_, at, plate in events:
        if dept == "traffic" and plate == PLATE:
            want.add(("plate", eid))
        if plate == OTHER and at < EXPIRES_MS:
            want.add(("other-until", eid))
        if dept == "fire" and block == watched_block:
            want.add(("block", eid))
    return want


def read_alerts(world, topic):
    out = []
    for m in jh.read_committed(world.kafka, topic):
        name, rec = world.decoder.decode(m["value"])
        assert name == "blockhub.alert.BlockAlert"
        assert m["key"].decode() == rec["block_id"]
        out.append(rec)
    return out


def test_watches_fire_once_per_matching_event_across_kill9(world, tmp_path):
    blocks_map, units = map_with_units(tmp_path)
    alerts_topic = "block.alerts.%s" % world.view.rsplit(".", 1)[-1]
    watched_block = sorted(world.names)[7]
    extra = [
        "  commit_interval: 1s",  # a kill -9 finds work not committed
        "  alerts_topic: %s" % alerts_topic,
        "  watches:",
        "    - name: plate", "      type: field", "      field: plate",
        "      equals: %s" % json.dumps(PLATE, ensure_ascii=False),
        "      department: traffic",
        "    - name: other-until", "      type: field", "      field: plate",
        "      equals: %s" % json.dumps(OTHER, ensure_ascii=False),
        "      expires: %s" % iso(EXPIRES_MS),
        "    - name: block", "      type: blocks", "      blocks: [%s]" % watched_block,
        "      department: fire",
    ]
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    events = records(world)
    first, second = events[:len(events) // 2], events[len(events) // 2:]
    # copies of the plate events: counted once, so they fire nothing more
    copies = [e for e in events if e[5] == PLATE][:3]
    want = expected_alerts(events, watched_block)
    assert len([w for w in want if w[0] == "plate"]) == 6
    assert len([w for w in want if w[0] == "other-until"]) == 2
    assert len([w for w in want if w[0] == "block"]) > 0

    hub = world.hub(blocks_map=blocks_map, extra=extra).start()
    hub.wait_live(n=3)
    send(world.kafka, world, first)
    # kill -9 while it works through its input: what it had not committed is done again
    wait_until(lambda: hub.status()["stats"]["counted"] > 50, "some input counted", hub=hub)
    hub.kill()
    hub2 = world.hub(blocks_map=blocks_map, extra=extra).start()
    hub2.wait_live(n=3)
    send(world.kafka, world, second + copies)
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    # more commits after the alerts' own: events that match no watch
    quiet = [e + (None,) for e in jh.make_events(world.depts, 200, seed=12, blocks=world.names)
             if e[2] != watched_block]
    send(world.kafka, world, quiet)
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())

    alerts = read_alerts(world, alerts_topic)
    got = [(a["name"], a["events"][0]["event_id"]) for a in alerts]
    assert len(got) == len(set(got)), "an alert twice: %r" % sorted(
        g for g in got if got.count(g) > 1)[:5]
    assert set(got) == want
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    by_id = {e[1]: e for e in events}
    for a in alerts:
        dept, eid, block, type_, at, plate = by_id[a["events"][0]["event_id"]]
        assert a["kind"] == "WATCH"
        assert a["block_id"] == block
        assert a["block_name"] == world.names[block]
        assert a["unit"] == units[block]
        assert [dict(e, event_at=jh.ms(e["event_at"])) for e in a["events"]] == [
            {"department": dept, "event_id": eid, "event_type": type_, "event_at": at}]
        assert a["alert_id"] == "watch:%s:%s:%s/%s" % (a["name"], block, dept, eid)
        assert a["name"] in a["detail"] and eid in a["detail"]
        assert jh.ms(a["detected_at"]) > 1700000000000
    s = hub2.status()
    assert s["watches"] == 3
    assert hub2.stop() == 0


def test_bad_watches_are_refused_with_the_key(world, tmp_path):
    """A watch naming an unknown department or a time that is not RFC 3339: start refused."""
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    for lines, words in (
            (["    - name: w1", "      type: field", "      field: plate",
              "      equals: x", "      department: police"], ["w1", "police"]),
            (["    - name: w2", "      type: field", "      field: plate",
              "      equals: x", "      expires: tomorrow"], ["w2", "expires", "RFC 3339"]),
            (["    - name: w3", "      type: blocks", "      blocks: []"], ["w3", "blocks"])):
        hub = world.hub(extra=["  watches:"] + lines)
        code, err = start_refused(hub)
        assert code != 0
        for w in words:
            assert w in err, (w, err)


def test_a_watch_placed_through_the_admin_api(world, tmp_path):
    """POST /watches on a plate: it fires on the next matching traffic event and on none before
    it (its since is when it was placed); past its expiry it fires no more; a restarted join
    reads it back from the watches topic; DELETE removes it."""
    import time as _time

    import requests

    tag = world.view.rsplit(".", 1)[-1]
    alerts_topic, watches_topic = "block.alerts.%s" % tag, "block.watches.%s" % tag
    extra = ["  alerts_topic: %s" % alerts_topic, "  watches_topic: %s" % watches_topic]
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    blocks = sorted(world.names)
    hub = world.hub(extra=extra).start()
    hub.wait_live(n=3)
    now = int(_time.time() * 1000)

    def ev(eid, at, plate=PLATE, block=blocks[3]):
        return ("traffic", eid, block, "congestion", at, plate)

    def listed():
        return {w["name"]: w for w in requests.get(hub.admin + "/watches", timeout=10)
                .json()["watches"]}

    send(world.kafka, world, [ev("TR-BEFORE", now - 60000)])
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    r = requests.post(hub.admin + "/watches", timeout=30, json={
        "name": "api-plate", "type": "field", "field": "plate", "equals": PLATE,
        "department": "traffic", "expires": iso(now + 3600000)})
    assert r.status_code == 201, r.text
    assert r.json()["since"] >= iso(now)[:19]
    wait_until(lambda: "api-plate" in listed(), "the placed watch in effect", hub=hub)
    assert listed()["api-plate"]["from"] == watches_topic
    # refused: an unknown department, a config watch's name, a bad time
    bad = requests.post(hub.admin + "/watches", timeout=30, json={
        "name": "x", "type": "field", "field": "plate", "equals": "y", "department": "police"})
    assert bad.status_code == 400 and "police" in bad.json()["error"], bad.text
    bad = requests.post(hub.admin + "/watches", timeout=30, json={
        "name": "x", "type": "field", "field": "plate", "equals": "y", "expires": "soon"})
    assert bad.status_code == 400, bad.text
    send(world.kafka, world, [ev("TR-OLD", now - 30000),  # before it was placed: none
                              ev("TR-AFTER", now + 120000),
                              ev("TR-LATER", now + 7200000),  # past its expiry: none
                              ev("TR-OTHER-PLATE", now + 120000, plate=OTHER)])
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    hub.kill()
    # a restart reads it back from the watches topic
    hub2 = world.hub(extra=extra).start()
    hub2.wait_live(n=3)
    assert "api-plate" in {w["name"] for w in requests.get(
        hub2.admin + "/watches", timeout=10).json()["watches"]}
    send(world.kafka, world, [ev("TR-AFTER-RESTART", now + 180000)])
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    r = requests.delete(hub2.admin + "/watches/api-plate", timeout=30)
    assert r.status_code == 200, r.text
    hub = hub2
    wait_until(lambda: "api-plate" not in listed(), "the watch removed", hub=hub2)
    send(world.kafka, world, [ev("TR-AFTER-DELETE", now + 240000)])
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    got = sorted((a["name"], a["events"][0]["event_id"]) for a in read_alerts(world, alerts_topic))
    assert got == [("api-plate", "TR-AFTER"), ("api-plate", "TR-AFTER-RESTART")]
    assert hub2.stop() == 0


def rule_truth(order, within_pair, within_spike, more_than):
    """The alerts the rules must fire for events applied in ORDER (every planted pair within
    the window of the block's newest, so the order across departments does not matter)."""
    pairs, spikes = set(), set()
    a, b = {}, {}
    win, over = {}, {}
    for dept, eid, block, type_, at, _ in order:
        if dept == "market" and type_ == "摩托车销售登记":
            for o in b.get(block, []):
                if abs(o[1] - at) <= within_pair:
                    pairs.add(frozenset((eid, o[0])))
            a.setdefault(block, []).append((eid, at))
        if dept == "traffic" and type_ == "motorcycle_violation":
            for o in a.get(block, []):
                if abs(o[1] - at) <= within_pair:
                    pairs.add(frozenset((eid, o[0])))
            b.setdefault(block, []).append((eid, at))
        if dept == "fire" and type_ == "alarm":
            w = win.setdefault(block, [])
            w.append((eid, at))
            newest = max(t for _, t in w)
            w[:] = [x for x in w if newest - x[1] <= within_spike]
            if len(w) > more_than and not over.get(block):
                over[block] = True
                spikes.add(frozenset(x[0] for x in w))
            elif len(w) <= more_than:
                over[block] = False
    return pairs, spikes


def test_rules_fire_once_per_combination_across_kill9(world, tmp_path):
    """A pair rule (a market 摩托车销售登记 and a traffic motorcycle_violation of one block within
    7 days) and a spike rule (more than 3 fire alarms of one block within an hour): every
    combination fires exactly once, across a kill -9 of the join in the middle of its input."""
    import random

    blocks_map, units = map_with_units(tmp_path)
    tag = world.view.rsplit(".", 1)[-1]
    alerts_topic = "block.alerts.%s" % tag
    extra = ["  commit_interval: 1s", "  alerts_topic: %s" % alerts_topic,
             "  rules_topic: block.rules.%s" % tag, "  rules:",
             "    - name: moto", "      type: pair", "      a_department: market",
             "      a_types: [摩托车销售登记]", "      b_department: traffic",
             "      b_types: [motorcycle_violation]", "      within: 7d",
             "    - name: alarms", "      type: spike", "      department: fire",
             "      types: [alarm]", "      more_than: 3", "      within: 1h"]
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    rnd = random.Random(21)
    blocks = sorted(world.names)[:12]
    mid = BASE + 86400000
    events = []
    n = 0
    for i, block in enumerate(blocks):
        t0 = BASE + i * 60000
        # 0-3 sales and 0-3 violations within two days: every pair within the window
        for k in range(rnd.randrange(4)):
            n += 1
            events.append(("market", "MA-R-%d" % n, block, "摩托车销售登记",
                           t0 + rnd.randrange(2 * 86400000), None))
        for k in range(rnd.randrange(4)):
            n += 1
            events.append(("traffic", "TR-R-%d" % n, block, "motorcycle_violation",
                           t0 + rnd.randrange(2 * 86400000), None))
        # alarms: bursts of 2 to 6 within 40 minutes, bursts 3 hours apart, the middle one
        # across the middle of the input (the kill -9 between the halves)
        for burst in range(3):
            for k in range(rnd.randrange(2, 7)):
                n += 1
                events.append(("fire", "FI-R-%d" % n, block, "alarm",
                               mid - 3 * 3600000 - 20 * 60000 + burst * 3 * 3600000
                               + k * 8 * 60000, None))
        # noise of other types
        for k in range(10):
            n += 1
            d = rnd.choice(["market", "traffic", "fire"])
            events.append((d, "NZ-%d" % n, block, {"market": "日常检查", "traffic": "congestion",
                                                   "fire": "drill"}[d], t0 + k * 1000, None))
    # two halves by event time, the second sent after the first is committed; in each, fire
    # alarms in time order per block (one topic, one partition per block: applied in this
    # order) and the rest shuffled
    halves = []
    for early in (True, False):
        part = [e for e in events if (e[4] < mid) == early]
        fire = sorted([e for e in part if e[0] == "fire"], key=lambda e: (e[2], e[4]))
        other = [e for e in part if e[0] != "fire"]
        rnd.shuffle(other)
        halves.append(fire + other)
    order = halves[0] + halves[1]
    pairs, spikes = rule_truth(order, 7 * 86400000, 3600000, 3)
    assert len(pairs) > 5 and len(spikes) > 5
    # combinations across the halves: only what the rules remembered through a restart fires them
    early = {e[1] for e in halves[0]}
    assert any(len(p & early) == 1 for p in pairs)
    assert any(0 < len(sp & early) < len(sp) for sp in spikes)

    hub = world.hub(blocks_map=blocks_map, extra=extra).start()
    hub.wait_live(n=3)
    send(world.kafka, world, halves[0])
    # kill -9 with work not committed, then again with the first half committed
    wait_until(lambda: hub.status()["stats"]["counted"] > 20, "some input counted", hub=hub)
    hub.kill()
    hub2 = world.hub(blocks_map=blocks_map, extra=extra).start()
    hub2.wait_live(n=3)
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    hub2.kill()
    hub2 = world.hub(blocks_map=blocks_map, extra=extra).start()
    hub2.wait_live(n=3)
    send(world.kafka, world, halves[1] + order[:10])  # and some copies: they fire nothing
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    hub2.stop()
    half = len(halves[0])
    # a restart with the whole input behind it fires nothing more
    hub3 = world.hub(blocks_map=blocks_map, extra=extra).start()
    hub3.wait_live(n=3)
    send(world.kafka, world, order[half:half + 10])
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())

    alerts = [a for a in read_alerts(world, alerts_topic) if a["kind"] == "RULE"]
    got_pairs = [frozenset(e["event_id"] for e in a["events"]) for a in alerts
                 if a["name"] == "moto"]
    got_spikes = [frozenset(e["event_id"] for e in a["events"]) for a in alerts
                  if a["name"] == "alarms"]
    assert len(got_pairs) == len(set(got_pairs)), "a pair fired twice"
    assert set(got_pairs) == pairs
    assert len(got_spikes) == len(set(got_spikes)), "a spike fired twice"
    assert set(got_spikes) == spikes
    by_id = {e[1]: e for e in events}
    for a in alerts:
        blocks_of = {by_id[e["event_id"]][2] for e in a["events"]}
        assert blocks_of == {a["block_id"]}
        assert a["unit"] == units[a["block_id"]]
        assert a["alert_id"] == "rule:%s:%s:%s" % (a["name"], a["block_id"], ":".join(
            "%s/%s" % (e["department"], e["event_id"]) for e in a["events"]))
    assert hub3.status()["rules"] == 2
    assert hub3.stop() == 0
