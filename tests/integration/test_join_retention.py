"""A resent event counts once however late it comes (issue 14), against the real broker.

- City scale: a generated map of 20,000 blocks and a year of events, sent the way departments
  send them: gateways replay a tenth of their lines at the end, a market file is exported again a
  month later, a fire batch is resent two months later, and senders resend now and then. Every
  block's view equals the truth computed here from the distinct events (every copy counted once),
  although thousands of copies are more than a week older than their block's newest event (what
  the former 7-day memory forgot).
- Past the retention (join.dedup_retention, measured from the partition's newest event of the
  department): an old copy, and an old event never seen, go to the dead-letter topic as too_late
  with their department, id and time; no count moves; a copy inside the retention is recognised.
- The local store (join.state_dir, relative to the config file's directory): a clean restart
  goes on from the checkpoint with nothing to replay; a restart on a store left behind the
  changelog (an older copy of the directory, as after a lost write) replays only the changelog
  after its checkpoint; a lost disk rebuilds from the whole changelog; after each, copies of
  events from before are recognised and the views are exact.
- A checkpoint outside the changelog (the topic made again): rebuilt from its beginning.
- The memory store (join.state_store: memory) keeps the same promises within a process's life
  and rebuilds from the changelog after kill -9.
- A flush due by its size (join.memory_limit / 2048 remembered events not in the local store)
  commits at once, not at the next commit_interval: with an interval of a minute, the input
  keeps flowing and the views of the flushed events are out well before it.
"""
import os
import random
import re
import shutil
import subprocess
import sys
import time

from confluent_kafka.admin import AdminClient

import join_helpers as jh
from conftest import deadline_after, wait_until
from join_helpers import world  # noqa: F401 (a fixture)

DAY = 86400000
BASE = 1767225600000  # 2026-01-01T00:00:00Z
LATER = 1795738500000  # where jh.make_events starts by default


def last_run(hub):
    """The log of the process's last start (from its "schemas from" line)."""
    text = hub.logtext()
    return text[text.rfind(" schemas from "):]


def restored_lines(text):
    """(partition, blocks, where from, changelog records) of every 'restored' line in TEXT."""
    out = []
    for m in re.finditer(r"partition (\d+) restored: (\d+) blocks from (.*?) and (\d+) changelog "
                         r"records", text):
        out.append((int(m.group(1)), int(m.group(2)), m.group(3), int(m.group(4))))
    return out


# --- a year of a city --------------------------------------------------------------

def generated_map(tmp, n):
    path = os.path.join(str(tmp), "blocks-%d.geojson" % n)
    subprocess.run([sys.executable, os.path.join(jh.SRC, "bench", "gen_blocks.py"), str(n), path],
                   check=True)
    import json
    with open(path, encoding="utf-8") as f:
        return path, {ft["properties"]["block_id"]: ft["properties"]["name"]
                      for ft in json.load(f)["features"]}


def year_of_events(depts, names, n, seed):
    """N events over 365 days in about time order; a third of them in 300 busy blocks."""
    rnd = random.Random(seed)
    ids = sorted(names)
    busy = rnd.sample(ids, 300)
    out = []
    for i in range(n):
        d = depts[rnd.randrange(len(depts))]
        block = rnd.choice(busy) if rnd.random() < 0.33 else rnd.choice(ids)
        at = BASE + 365 * DAY * i // n - rnd.randrange(6 * 3600 * 1000)
        out.append((d.name, "%s-%d-%07d" % (d.name[:2].upper(), seed, i), block,
                    rnd.choice(d.types), at))
    return out


def month(e):
    return (e[4] - BASE) // (30 * DAY)


def as_sent(events, seed):
    """EVENTS in their order with the copies the departments send, where they send them."""
    rnd = random.Random(seed)
    traffic = [e for e in events if e[0] == "traffic"]
    gateway_replay = sorted(rnd.sample(traffic, len(traffic) // 10), key=lambda e: e[4])
    market_file = [e for e in events if e[0] == "market" and month(e) == 2]
    fire_batch = [e for e in events if e[0] == "fire" and month(e) == 5][:800]
    out, done = [], set()
    for e in events:
        m = month(e)
        if m == 4 and m not in done:
            out.extend(market_file)  # the month-2 file exported again after month 3
        if m == 7 and m not in done:
            out.extend(fire_batch)  # a batch of month 5 posted again
        done.add(m)
        out.append(e)
        if rnd.random() < 0.03:
            out.append(e)  # a sender resending at once
    out.extend(gateway_replay)  # a tenth of the year's lines replayed after a reconnect
    return out


def forgotten_by_a_week(sent):
    """Copies more than 7 days older than their block's newest event of the department when sent
    (those a memory of 7 days behind each block's newest counted again)."""
    newest, seen, n = {}, set(), 0
    for dept, eid, block, _, at in sent:
        k = (block, dept)
        if (dept, block, eid) in seen and newest[k] - at >= 7 * DAY:
            n += 1
        seen.add((dept, block, eid))
        newest[k] = max(newest.get(k, at), at)
    return n


def test_a_year_of_copies_at_city_scale(world):
    path, names = generated_map(world.tmp, 20000)
    events = year_of_events(world.depts, names, 100000, seed=141)
    sent = as_sent(events, seed=142)
    copies = len(sent) - len(events)
    forgotten = forgotten_by_a_week(sent)
    # (9,975 copies, 3,431 of them more than a week older than their block's newest event when
    # sent; 19,334 blocks have events)
    assert copies > len(events) // 20 and forgotten > len(events) // 50, (copies, forgotten)
    window_ms = 7 * DAY
    expected = jh.truth(events, window_ms, names)
    assert len(expected) > 15000
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    hub = world.hub(window="7d", blocks_map=path).start(timeout=120)
    hub.wait_live(n=3)
    jh.produce(world.kafka, world.topics, world.depts, sent)
    jh.wait_views(world.kafka, world.view, world.decoder, expected, window_ms, timeout=600,
                  partitions=3)
    # the replayed lines come last: the views are right before the last of them are read
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    s = hub.status()["stats"]
    assert s["counted"] == len(events)
    assert s["duplicates"] == copies
    assert s["too_late"] == 0 and s["dead_letters"] == 0
    assert hub.stop() == 0


# --- past the retention ------------------------------------------------------------------

def same_partition(names, n, partitions=3):
    """N blocks of the map that share partition 0."""
    out = [b for b in sorted(names) if jh.java_partition(b.encode(), partitions) == 0]
    assert len(out) >= n
    return out[:n]


def test_older_than_the_retention_is_dead_lettered_as_too_late(world):
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    hub = world.hub(extra=["  dedup_retention: 30d"]).start()
    hub.wait_live(n=3)
    quiet, busy = same_partition(world.names, 2)
    fire = next(d for d in world.depts if d.name == "fire")
    traffic = next(d for d in world.depts if d.name == "traffic")
    ft, tt = fire.types[0], traffic.types[0]
    first = [("fire", "F-Q-1", quiet, ft, BASE), ("traffic", "T-Q-1", quiet, tt, BASE)]
    first += [("fire", "F-B-%d" % k, busy, ft, BASE + k * DAY) for k in range(1, 32)]
    jh.produce(world.kafka, world.topics, world.depts, first)
    jh.wait_views(world.kafka, world.view, world.decoder, jh.truth(first, jh.WINDOW_MS, world.names),
                  jh.WINDOW_MS, partitions=3)
    # The partition's newest fire event is 31 days after F-Q-1, which is the quiet block's newest.
    late = [
        ("fire", "F-Q-1", quiet, ft, BASE),               # a copy, 31 days old: too late
        ("fire", "F-Q-0", quiet, ft, BASE + DAY // 2),    # never seen, 30.5 days old: too late
        ("fire", "F-B-2", busy, ft, BASE + 2 * DAY),      # a copy 29 days old: recognised
        ("traffic", "T-Q-2", quiet, tt, BASE - DAY),      # traffic's newest is BASE: on time
    ]
    jh.produce(world.kafka, world.topics, world.depts, late)
    expected = jh.truth(first + late[3:], jh.WINDOW_MS, world.names)
    jh.wait_views(world.kafka, world.view, world.decoder, expected, jh.WINDOW_MS, partitions=3)
    dead = []
    deadline = deadline_after(60)
    while len(dead) < 2 and time.monotonic() < deadline:
        dead = [world.decoder.decode(m["value"])[1]
                for m in jh.read_committed(world.kafka, hub.dlq_topic)]
        time.sleep(0.2)
    assert len(dead) == 2, dead
    by_id = {}
    for d in dead:
        assert d["reason"] == "too_late" and d["adapter"] == "join", d
        assert d["origin"]["source"] == "%s[0]" % world.topics["fire"]
        name, rec = world.decoder.decode(d["payload"])
        by_id[rec[fire.id_field]] = d["detail"]
    assert set(by_id) == {"F-Q-1", "F-Q-0"}
    assert "fire event 'F-Q-1' of 2026-01-01T00:00:00.000Z is too late" in by_id["F-Q-1"]
    assert "fire event 'F-Q-0' of 2026-01-01T12:00:00.000Z is too late" in by_id["F-Q-0"]
    for detail in by_id.values():
        assert "join.dedup_retention (30d)" in detail
        assert "newest fire event of partition 0 (2026-02-01T00:00:00.000Z)" in detail
    # every late record applied (its offset committed with its effects): then the counters
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    s = hub.status()["stats"]
    assert s["too_late"] == 2 and s["dead_letters"] == 2
    assert s["duplicates"] == 1
    assert s["counted"] == len(first) + 1
    # the views did not move for them: the last views are still the truth without them
    jh.assert_views_equal_truth(jh.last_views(world.kafka, world.view, world.decoder), expected,
                                jh.WINDOW_MS, partitions=3)
    assert hub.stop() == 0


# --- the local store across restarts ----------------------------------------------------------

def copies_of(events, fraction, seed):
    rnd = random.Random(seed)
    return [e for e in events if rnd.random() < fraction]


def test_restart_resumes_from_the_local_checkpoint(world):
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    # join.state_dir relative: taken from the config file's directory, not the working one
    hub = world.hub(state_dir="join-state-restarts").start()
    state = os.path.join(str(world.tmp), "join-state-restarts")
    assert hub.state_dir == state and os.path.dirname(hub.config) == str(world.tmp)
    assert os.getcwd() != str(world.tmp)
    hub.wait_live(n=3)
    assert os.path.isdir(state) and hub.status()["state"]["store"]["dir"] == state
    assert not os.path.exists(os.path.join(os.getcwd(), "join-state-restarts"))
    e1 = jh.make_events(world.depts, 4000, seed=51, blocks=world.names)
    jh.produce(world.kafka, world.topics, world.depts, jh.with_copies(e1, 0.1, seed=52))
    jh.wait_views(world.kafka, world.view, world.decoder,
                  jh.truth(e1, jh.WINDOW_MS, world.names), jh.WINDOW_MS, partitions=3,
                  group=world.group, inputs=world.topics.values())
    assert hub.stop() == 0

    # A clean restart: every partition goes on from its checkpoint, nothing to replay.
    older = state + ".before-e2"
    shutil.copytree(state, older)
    hub.start()
    hub.wait_live(n=3)
    lines = restored_lines(last_run(hub))
    assert sorted(p for p, *_ in lines) == [0, 1, 2], lines
    for _, blocks, where, records in lines:
        assert where.startswith("the local checkpoint at changelog offset ") and records == 0
        assert blocks > 0
    e2 = jh.make_events(world.depts, 4000, seed=53, blocks=world.names,
                        base_ms=LATER + 10 * DAY)
    again = copies_of(e1, 0.2, seed=54)
    jh.produce(world.kafka, world.topics, world.depts, jh.with_copies(e2, 0.1, seed=55) + again)
    jh.wait_views(world.kafka, world.view, world.decoder,
                  jh.truth(e1 + e2, jh.WINDOW_MS, world.names), jh.WINDOW_MS, partitions=3,
                  group=world.group, inputs=world.topics.values())
    s = hub.status()["stats"]
    assert s["counted"] == len(e2) and s["restores_from_checkpoint"] == 3
    assert jh.consumed_up_to_end(world.kafka, world.group, world.topics.values())

    # kill -9, and the store as it was before e2 (behind the changelog, as after lost writes):
    # the restart replays the changelog after its checkpoint, and knows e2's events again.
    hub.kill()
    shutil.rmtree(state)
    os.rename(older, state)
    hub.start()
    hub.wait_live(n=3)
    lines = restored_lines(last_run(hub))
    assert len(lines) == 3 and all(w.startswith("the local checkpoint") for _, _, w, _ in lines)
    assert sum(r for *_, r in lines) > 100, lines
    e3 = jh.make_events(world.depts, 2000, seed=56, blocks=world.names,
                        base_ms=LATER + 20 * DAY)
    again = copies_of(e1, 0.1, seed=57) + copies_of(e2, 0.3, seed=58)
    jh.produce(world.kafka, world.topics, world.depts, again + e3)
    jh.wait_views(world.kafka, world.view, world.decoder,
                  jh.truth(e1 + e2 + e3, jh.WINDOW_MS, world.names), jh.WINDOW_MS, partitions=3,
                  group=world.group, inputs=world.topics.values())
    s = hub.status()["stats"]
    assert s["counted"] == len(e3) and s["duplicates"] == len(again), s

    # A lost disk: the whole changelog, and still every copy recognised.
    hub.kill()
    shutil.rmtree(state)
    hub.start()
    hub.wait_live(n=3)
    lines = restored_lines(last_run(hub))
    assert len(lines) == 3 and all(w == "the changelog's beginning" for _, _, w, _ in lines)
    e4 = jh.make_events(world.depts, 1000, seed=59, blocks=world.names,
                        base_ms=LATER + 30 * DAY)
    again = copies_of(e1 + e2 + e3, 0.1, seed=60)
    jh.produce(world.kafka, world.topics, world.depts, e4 + again)
    jh.wait_views(world.kafka, world.view, world.decoder,
                  jh.truth(e1 + e2 + e3 + e4, jh.WINDOW_MS, world.names), jh.WINDOW_MS,
                  partitions=3, group=world.group, inputs=world.topics.values())
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())  # the copies too
    s = hub.status()["stats"]
    assert s["counted"] == len(e4) and s["duplicates"] == len(again)
    assert s["restores_from_changelog"] == 3
    st = hub.status()["state"]["store"]
    assert st["kind"] == "disk" and st["dir"] == state
    assert hub.stop() == 0


def test_memory_store(world):
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    hub = world.hub(extra=["  state_store: memory"]).start()
    hub.wait_live(n=3)
    e1 = jh.make_events(world.depts, 3000, seed=61, blocks=world.names)
    jh.produce(world.kafka, world.topics, world.depts, jh.with_copies(e1, 0.2, seed=62))
    jh.wait_views(world.kafka, world.view, world.decoder,
                  jh.truth(e1, jh.WINDOW_MS, world.names), jh.WINDOW_MS, partitions=3)
    assert hub.status()["state"]["store"]["kind"] == "memory"
    assert not os.path.exists(hub.state_dir)
    hub.kill()
    hub.start()
    hub.wait_live(n=3)
    lines = restored_lines(last_run(hub))
    assert len(lines) == 3 and all(w == "the changelog's beginning" for _, _, w, _ in lines)
    again = copies_of(e1, 0.3, seed=63)
    e2 = jh.make_events(world.depts, 1000, seed=64, blocks=world.names, base_ms=LATER + 9 * DAY)
    jh.produce(world.kafka, world.topics, world.depts, again + e2)
    jh.wait_views(world.kafka, world.view, world.decoder,
                  jh.truth(e1 + e2, jh.WINDOW_MS, world.names), jh.WINDOW_MS, partitions=3)
    s = hub.status()["stats"]
    assert s["counted"] == len(e2) and s["duplicates"] == len(again)
    assert hub.stop() == 0


def test_a_flush_due_by_size_commits_before_the_interval(world):
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    # 16 MiB: a flush every 8,192 remembered events; the interval (60 s) never comes in the test
    hub = world.hub(memory_limit="16MiB", extra=["  commit_interval: 60s"]).start()
    started = time.monotonic()
    hub.wait_live(n=3)
    events = jh.make_events(world.depts, 30000, seed=71, blocks=world.names)
    jh.produce(world.kafka, world.topics, world.depts, events)
    flush = (16 << 20) // 2048

    def flushed():
        s = hub.status()["stats"]
        done = s["counted"] == len(events) and s["commits_early"] >= 3 and s["commits"] >= 3
        return s if done else None

    s = wait_until(flushed, "every event counted and three early commits done", timeout=45,
                   hub=hub)
    counts = jh.event_counts(jh.last_views(world.kafka, world.view, world.decoder))
    # what the early commits made visible: at least three flushes' worth of events
    assert sum(counts.values()) >= 3 * flush, (counts, s)
    # all of it before the first interval could have ended (else the test proves nothing)
    assert time.monotonic() - started < 60
    assert hub.stop() == 0


def test_checkpoint_outside_the_changelog(world):
    """The changelog made again (empty) behind a store whose checkpoints point past its end:
    the restorer's offset error rebuilds each partition from the changelog's beginning, with
    none of the store's blocks, and the join goes on."""
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    hub = world.hub().start()
    hub.wait_live(n=3)
    e1 = jh.make_events(world.depts, 2000, seed=71, blocks=world.names)
    jh.produce(world.kafka, world.topics, world.depts, e1)
    jh.wait_views(world.kafka, world.view, world.decoder, jh.truth(e1, jh.WINDOW_MS, world.names),
                  jh.WINDOW_MS, partitions=3)
    assert hub.stop() == 0
    a = AdminClient({"bootstrap.servers": world.kafka})
    for f in a.delete_topics([world.state]).values():
        f.result(30)
    deadline = time.monotonic() + 60
    while True:  # until the broker lets the name be used again
        try:
            jh.create_topics(world.kafka, {world.state: 3}, compact=(world.state,))
            break
        except Exception as e:  # noqa: BLE001 (the deletion still under way)
            assert time.monotonic() < deadline, e
            time.sleep(0.5)
    hub.start()
    hub.wait_live(n=3)
    text = last_run(hub)
    assert text.count("the changelog cannot be read from offset") == 3, text
    lines = restored_lines(text)
    assert sorted(p for p, *_ in lines) == [0, 1, 2], lines
    assert all(w == "the changelog's beginning" and b == 0 for _, b, w, _ in lines), lines
    e2 = jh.make_events(world.depts, 300, seed=72, blocks=world.names, base_ms=LATER + DAY)
    jh.produce(world.kafka, world.topics, world.depts, e2)
    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    assert hub.status()["stats"]["counted"] == len(e2)
    assert hub.stop() == 0
