"""Reload (SIGHUP, POST /admin/reload): the config file again, per component.

A component whose entry did not change is not touched (its TCP connections stay
open); a changed one takes its new settings when it can, else it is drained and
replaced; a removed one is drained and closed; an added one starts. A refused
reload changes nothing and says why, with the file, line and key.
"""
import json
import signal
import socket
import threading
import time

import bhcat
from conftest import TOKEN, free_port, wait_log, wait_until
from test_admin import admin_hub, call, component, fire_events, metrics, traffic_lines


def rewrite(h, old, new):
    with open(h.config, encoding="utf-8") as f:
        text = f.read()
    assert old in text, (old, text)
    with open(h.config, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new))
    return text


def restore(h, text):
    with open(h.config, "w", encoding="utf-8") as f:
        f.write(text)


def reload(h):
    return call(h, "POST", "/admin/reload")


def stream(sock, data, chunk, pause):
    """Sends DATA in CHUNK-byte pieces with PAUSE s between them, on a thread of its own;
    returns the thread and an event set halfway through."""
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    halfway = threading.Event()

    def run():
        for n, c in enumerate(chunks):
            sock.sendall(c)
            if n == len(chunks) // 2:
                halfway.set()
            time.sleep(pause)

    t = threading.Thread(target=run)
    t.start()
    return t, halfway


def test_token_change_keeps_the_stream_and_loses_nothing(kafka, hub_factory, decoder):
    h = admin_hub(hub_factory, kafka).start()
    s = socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60)
    t, halfway = stream(s, traffic_lines("keep", 40000), 65536, 0.01)
    assert h.post(fire_events("before", 10)).json()["accepted"] == 10
    assert halfway.wait(60)
    rewrite(h, json.dumps([TOKEN, "other-token"]), json.dumps(["new-token"]))
    r = reload(h)
    assert r.status_code == 200, r.text
    assert "fire reloaded" in r.json()["changes"] and "traffic" not in r.json()["changes"]
    assert h.post(fire_events("old", 3)).status_code == 401
    assert h.post(fire_events("after", 10), token="new-token").json()["accepted"] == 10
    t.join(120)
    s.shutdown(socket.SHUT_WR)
    wait_until(lambda: component(h, "traffic")["counters"]["acknowledged"] == 40000,
               "every line acknowledged", timeout=120)
    # The gateway was never disconnected: its one connection carried the whole stream.
    wait_log(h, "disconnected after 40000 line(s)")
    assert h.logtext().count("connected (1 connection(s))") == 1
    ids = [decoder.decode(m["value"])[1]["event_id"]
           for m in bhcat.consume_all(kafka, h.traffic_topic, timeout=120)]
    assert len(ids) == 40000 and len(set(ids)) == 40000
    fire = sorted(decoder.decode(m["value"])[1]["event_id"]
                  for m in bhcat.consume_all(kafka, h.fire_topic))
    assert fire == sorted(["XF-before-%04d" % i for i in range(10)] +
                          ["XF-after-%04d" % i for i in range(10)])
    s.close()
    assert h.stop() == 0, h.logtext()


def test_refused_reload_changes_nothing(kafka, hub_factory):
    h = admin_hub(hub_factory, kafka).start()
    s = socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60)
    wait_until(lambda: component(h, "traffic")["counters"]["connections"] == 1, "connected")
    name = h.config.rsplit("/", 1)[1]
    cases = [
        ("  partitions: 3", "  partitions: lots", "kafka.partitions"),
        ("blocks:", "nonsense: 1\nblocks:", "nonsense"),
        ("blocks.geojson", "no-such-map.geojson", "blocks.map"),
        ("dead_letter:\n  topic: ", "dead_letter:\n  topic: other.",
         "dead_letter changed: that takes a restart"),
    ]
    for old, new, key in cases:
        text = rewrite(h, old, new)
        r = reload(h)
        assert r.status_code == 400, (key, r.text)
        assert key in r.json()["error"], (key, r.json())
        if key != "dead_letter changed: that takes a restart":
            assert name in r.json()["error"], r.json()
        restore(h, text)
    # SIGHUP with a bad file: refused the same way, in the log.
    text = rewrite(h, "blocks:", "nonsense: 1\nblocks:")
    h.proc.send_signal(signal.SIGHUP)
    wait_log(h, "unknown key 'nonsense'", count=2)
    restore(h, text)
    m = metrics(h)
    assert m['blockhub_reloads_total{outcome="refused"}'] == 5
    assert m['blockhub_reloads_total{outcome="applied"}'] == 0
    # Everything runs on as before: the old token, the open connection.
    assert h.post(fire_events("still", 2)).json()["accepted"] == 2
    s.sendall(traffic_lines("still", 10))
    wait_until(lambda: component(h, "traffic")["counters"]["acknowledged"] == 10, "the lines")
    assert component(h, "traffic")["counters"]["connections"] == 1
    s.close()
    assert h.stop() == 0, h.logtext()


def test_adapters_added_and_removed_while_the_others_run(kafka, hub_factory, decoder):
    h = admin_hub(hub_factory, kafka).start()
    s = socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60)
    wait_until(lambda: component(h, "traffic")["counters"]["connections"] == 1, "connected")
    port2 = free_port()
    topic2 = h.traffic_topic + ".two"
    entry = ('  - name: "traffic2"\n    type: "traffic"\n    auth: none\n    listen: "127.0.0.1:%d"\n'
             '    topic: "%s"\n' % (port2, topic2))
    with open(h.config, encoding="utf-8") as f:
        base = f.read()
    with open(h.config, "w", encoding="utf-8") as f:
        f.write(base + entry)
    r = reload(h)
    assert r.status_code == 200 and "traffic2 added" in r.json()["changes"], r.text
    assert [c["name"] for c in call(h, "GET", "/components").json()["components"]] == [
        "fire", "traffic", "traffic2"]
    s2 = socket.create_connection(("127.0.0.1", port2), timeout=60)
    s2.sendall(traffic_lines("two", 100))
    s2.shutdown(socket.SHUT_WR)
    wait_until(lambda: component(h, "traffic2")["counters"]["acknowledged"] == 100, "traffic2")
    s2.close()
    assert len(bhcat.consume_all(kafka, topic2)) == 100

    with open(h.config, "w", encoding="utf-8") as f:
        f.write(base)
    r = reload(h)
    assert r.status_code == 200 and "traffic2 removed" in r.json()["changes"], r.text
    wait_log(h, "reload: traffic2 closed")
    assert [c["name"] for c in call(h, "GET", "/components").json()["components"]] == [
        "fire", "traffic"]

    def refused():
        try:
            socket.create_connection(("127.0.0.1", port2), timeout=5).close()
            return False
        except ConnectionRefusedError:
            return True
    wait_until(refused, "traffic2's port closed")
    # The first traffic adapter never noticed.
    s.sendall(traffic_lines("one", 50))
    wait_until(lambda: component(h, "traffic")["counters"]["acknowledged"] == 50, "traffic")
    assert component(h, "traffic")["counters"]["connections"] == 1
    s.close()
    assert h.stop() == 0, h.logtext()


def test_a_new_address_replaces_the_adapter(kafka, hub_factory):
    h = admin_hub(hub_factory, kafka).start()
    port2 = free_port()
    rewrite(h, "127.0.0.1:%d" % h.traffic_port, "127.0.0.1:%d" % port2)
    r = reload(h)
    assert r.status_code == 200 and "traffic replaced" in r.json()["changes"], r.text
    wait_log(h, "reload: traffic started again")
    s = socket.create_connection(("127.0.0.1", port2), timeout=60)
    s.sendall(traffic_lines("moved", 20))
    s.shutdown(socket.SHUT_WR)
    wait_until(lambda: component(h, "traffic")["counters"]["acknowledged"] == 20, "moved")
    s.close()
    assert h.stop() == 0, h.logtext()


def test_block_map_swapped_under_load(kafka, hub_factory, decoder, blocks, tmp_path):
    """Every record resolves against the old map or the new one, and the switch happens once."""
    import os
    from conftest import WORLD
    with open(os.path.join(WORLD, "blocks.geojson"), encoding="utf-8") as f:
        world = json.load(f)
    points = []
    for feat in world["features"]:
        g = feat["geometry"]
        ring = (g["coordinates"] if g["type"] == "Polygon" else g["coordinates"][0])[0]
        lon = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
        lat = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
        if blocks.locate(lon, lat) == feat["properties"]["block_id"]:
            points.append((lon, lat, feat["properties"]["block_id"]))
    assert len(points) > 50
    renamed = json.loads(json.dumps(world))
    for feat in renamed["features"]:
        feat["properties"]["block_id"] = "B" + feat["properties"]["block_id"]
    map_b = tmp_path / "blocks-b.geojson"
    map_b.write_text(json.dumps(renamed, ensure_ascii=False), encoding="utf-8")

    h = admin_hub(hub_factory, kafka).start()
    n = 30000
    lines = b"".join(json.dumps({
        "event_id": "swap-%06d" % i, "device": "CAM-1", "type": "red_light",
        "lon": points[i % len(points)][0], "lat": points[i % len(points)][1], "severity": 2,
        "ts": 1795737600000 + i}).encode() + b"\n" for i in range(n))
    s = socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60)
    t, halfway = stream(s, lines, 32768, 0.005)
    assert halfway.wait(60)
    rewrite(h, os.path.join(WORLD, "blocks.geojson"), str(map_b))
    r = reload(h)
    assert r.status_code == 200 and "block map swapped" in r.json()["changes"], r.text
    t.join(120)
    s.shutdown(socket.SHUT_WR)
    wait_until(lambda: component(h, "traffic")["counters"]["acknowledged"] == n, "all lines",
               timeout=120)
    s.close()
    seen = {}
    for m in bhcat.consume_all(kafka, h.traffic_topic, timeout=120):
        rec = decoder.decode(m["value"])[1]
        i = int(rec["event_id"].split("-")[1])
        a = points[i % len(points)][2]
        assert m["key"].decode() == rec["block_id"], rec
        assert rec["block_id"] in (a, "B" + a), (i, rec["block_id"], a)
        seen[i] = rec["block_id"].startswith("B")
    assert sorted(seen) == list(range(n))
    flags = [seen[i] for i in range(n)]
    switch = flags.index(True)
    assert 0 < switch and all(flags[switch:]) and not any(flags[:switch]), \
        "the maps were mixed: the new map's answers do not follow the old one's in line order"
    assert h.stop() == 0, h.logtext()


def test_every_problem_listed_at_once(kafka, hub_factory):
    """An invalid value, an unknown key and a missing block map: all three, by check and reload."""
    import subprocess
    h = admin_hub(hub_factory, kafka).start()
    text = rewrite(h, "  partitions: 3", "  partitions: lots")
    rewrite(h, "blocks:", "nonsense: 1\nblocks:")
    rewrite(h, "blocks.geojson", "no-such-map.geojson")
    name = h.config.rsplit("/", 1)[1]
    r = subprocess.run([h.binary, "check", "--config", h.config], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r
    lines = r.stderr.splitlines()
    assert lines[0] == "blockhub: config refused: 3 problems:", r.stderr
    assert all(line.startswith("  " + h.config + ":") for line in lines[1:]), r.stderr
    assert "key 'kafka.partitions': expected an integer, got 'lots'" in r.stderr
    assert "unknown key 'nonsense'" in r.stderr
    assert "key 'blocks.map'" in r.stderr and "no-such-map.geojson" in r.stderr
    rr = reload(h)
    assert rr.status_code == 400
    listed = rr.json()["error"].splitlines()
    assert len(listed) == 3 and all(name in line for line in listed), listed
    restore(h, text)
    assert h.post(fire_events("ok", 1)).json()["accepted"] == 1
    assert h.stop() == 0, h.logtext()


def test_an_address_in_use_refuses_the_reload(kafka, hub_factory):
    """A new adapter's address held by another process: refused whole, nothing changed."""
    h = admin_hub(hub_factory, kafka).start()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    with open(h.config, encoding="utf-8") as f:
        base = f.read()
    entry = ('  - name: "traffic2"\n    type: "traffic"\n    auth: none\n    listen: "127.0.0.1:%d"\n'
             '    topic: "%s"\n' % (port, h.traffic_topic + ".two"))
    # And a change to fire's tokens in the same file, which must not be applied either.
    with open(h.config, "w", encoding="utf-8") as f:
        f.write(base.replace(json.dumps([TOKEN, "other-token"]), json.dumps(["new"])) + entry)
    r = reload(h)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == ("adapters.traffic2.listen: 127.0.0.1:%d: Address already in "
                                 "use; nothing was changed" % port)
    assert [c["name"] for c in call(h, "GET", "/components").json()["components"]] == [
        "fire", "traffic"]
    assert h.post(fire_events("old", 1)).json()["accepted"] == 1  # the old token still
    squatter.close()
    assert h.stop() == 0, h.logtext()


def test_a_kafka_change_drains_everything_onto_a_new_producer(kafka, hub_factory, decoder):
    """kafka.* changed: every component drains, a new producer, everything starts again."""
    h = admin_hub(hub_factory, kafka).start()
    s = socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60)
    s.sendall(traffic_lines("before", 3000))
    wait_until(lambda: component(h, "traffic")["counters"]["acknowledged"] == 3000, "before")
    assert h.post(fire_events("before", 5)).json()["accepted"] == 5
    rewrite(h, "  replication: 1", "  replication: 1\n  properties:\n    linger.ms: 20")
    r = reload(h)
    assert r.status_code == 200, r.text
    assert r.json()["changes"].startswith("kafka changed: every component drained"), r.text
    wait_log(h, "reload: a new producer")
    # The gateway's connection was drained and closed with the old adapter; a new one goes on.
    assert s.recv(1) == b""
    s.close()
    wait_until(lambda: [c["state"] for c in call(h, "GET", "/components").json()["components"]]
               == ["running", "running"], "running again")
    s = socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60)
    s.sendall(traffic_lines("after", 2000))
    s.shutdown(socket.SHUT_WR)
    wait_until(lambda: component(h, "traffic")["counters"]["acknowledged"] == 2000, "after")
    s.close()
    assert h.post(fire_events("after", 5)).json()["accepted"] == 5
    ids = [decoder.decode(m["value"])[1]["event_id"]
           for m in bhcat.consume_all(kafka, h.traffic_topic, timeout=120)]
    assert len(ids) == 5000 and len(set(ids)) == 5000
    assert len(bhcat.consume_all(kafka, h.fire_topic)) == 10
    assert call(h, "GET", "/readyz").status_code == 200
    assert h.stop() == 0, h.logtext()
