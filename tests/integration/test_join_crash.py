"""The join is exactly-once through kill -9 (issue 4, "Crash"), and commits its last
transaction on a clean stop.

Crash: at least five times during one run, at random points, the join process is killed
and restarted while the departments keep producing. The dedup would hide a replayed input
(an event applied twice is counted once), so every event id is unique here: no copy is ever
sent, and an event applied twice (a state restored ahead of the committed offsets) shows as
a duplicate. Every process's duplicate count must stay 0, the copies sent (read from GET
/join before each kill and at the end), and the committed views must count exactly the
events sent, each once: nothing lost, nothing replayed. The kills come while a transaction
is open when one can be caught (the process is frozen, and killed if the view topic holds
records of a transaction not ended): a read_uncommitted reader of the view topic sees the
aborted transactions' records, a read_committed reader never does, and what it reads
equals the truth.

A restarted process has the same instance id (host and admin port), hence the same
transactional.id: its start fences the dead one's open transaction (aborted), and it
rebuilds its state from the changelog and resumes from the committed offsets.
"""
import os
import random
import signal
import threading
import time

import join_helpers as jh
from conftest import deadline_after
from join_helpers import world  # noqa: F401 (a fixture)


def kill_mid_transaction(hub, bootstrap, topic, patience=5.0):
    """SIGKILL HUB, frozen while TOPIC holds records of its open transaction when that happens
    within PATIENCE seconds (else wherever it is then). True when it was caught so."""
    pid = hub.proc.pid
    deadline = time.monotonic() + patience
    caught = False
    while True:
        os.kill(pid, signal.SIGSTOP)
        if jh.open_transaction(bootstrap, topic) or time.monotonic() > deadline:
            caught = time.monotonic() <= deadline
            break
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    hub.proc.kill()  # SIGKILL: no commit, no leaving the group
    hub.proc.wait()
    hub.log.close()
    return caught


def aborted(bootstrap, topic):
    """(records every reader sees, those only read_uncommitted sees) of TOPIC, by position."""
    committed = {(m["partition"], m["offset"]): m for m in jh.read_committed(bootstrap, topic)}
    every = {(m["partition"], m["offset"]): m for m in jh.read_uncommitted(bootstrap, topic)}
    assert set(committed) <= set(every)
    for pos, m in committed.items():
        assert every[pos]["value"] == m["value"], pos
    return committed, {pos: m for pos, m in every.items() if pos not in committed}


def test_kill9_exactly_once(world):
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    events = jh.make_events(world.depts, 30000, seed=11, blocks=world.names)
    assert len({(e[0], e[1]) for e in events}) == len(events)  # unique ids: nothing to dedup
    rnd = random.Random(13)
    hub = world.hub()
    hub.start()
    hub.wait_live(n=3)

    failure = []

    def feed():
        try:
            jh.produce_paced(world.kafka, world.topics, world.depts, events, seconds=50)
        except Exception as e:  # reported by the test body
            failure.append(e)

    t = threading.Thread(target=feed)
    t.start()
    kills, caught, dropped = 0, 0, {}
    # Five kills; more while the feed runs until one left an aborted transaction behind.
    while kills < 5 or (not dropped and t.is_alive() and kills < 12):
        # Kill while restoring or consuming: once this process has its partitions, at a random
        # point within the next few commits.
        deadline = time.monotonic() + 60
        while hub.logtext().count("join: assigned partitions") <= kills:
            assert time.monotonic() < deadline, hub.logtext()
            time.sleep(0.05)
        time.sleep(rnd.uniform(0.0, 2.5))
        # what this process applied twice so far (no copy was sent: none)
        s = hub.status()["stats"]
        assert s["duplicates"] == 0 and s["dead_letters"] == 0, (kills, s)
        caught += kill_mid_transaction(hub, world.kafka, world.view)
        kills += 1
        hub.start()
        if kills >= 5 and not dropped:
            # The restarted producer fenced the dead one: its open transaction is aborted.
            hub.wait_live(n=3)
            dropped = aborted(world.kafka, world.view)[1]
    t.join()
    assert not failure, failure

    jh.wait_consumed_up_to_end(world.kafka, world.group, world.topics.values())
    committed, dropped = aborted(world.kafka, world.view)
    views = jh.last_views(world.kafka, world.view, world.decoder, committed.values())
    sent = {d: sum(1 for e in events if e[0] == d) for d in jh.DEPTS}
    # Every event counted once: no fewer (a loss), no more (a replay, which the dedup would
    # also have shown as a duplicate in the process that applied it).
    assert jh.event_counts(views) == sent, (jh.event_counts(views), sent, kills, caught)
    jh.assert_views_equal_truth(views, jh.truth(events, jh.WINDOW_MS, world.names), jh.WINDOW_MS,
                                partitions=3)
    # Aborted transactions: read_uncommitted sees their views, read_committed none of them.
    assert dropped, "no aborted transaction in %d kills (%d mid-transaction)" % (kills, caught)
    for m in dropped.values():
        name, rec = world.decoder.decode(m["value"])
        assert name == "blockhub.view.BlockView" and m["key"].decode() == rec["block_id"]

    # kills + 1 processes ran; the restarts rebuilt state from the changelog (not from nothing)
    text = hub.logtext()
    assert text.count("hub: ready") == kills + 1
    restored = [int(line.split(" restored: ")[1].split()[0])
                for line in text.splitlines() if " restored: " in line]
    assert sum(1 for n in restored if n > 0) >= 3, restored
    s = hub.status()["stats"]
    assert s["duplicates"] == 0 and s["dead_letters"] == 0, s
    assert hub.stop() == 0
    print("sent %s; %d kills, %d mid-transaction; %d committed view records, %d aborted"
          % (sent, kills, caught, len(committed), len(dropped)))


def test_sigterm_commits_the_last_transaction(world):
    """No commit falls due while the join consumes (commit_interval 60s): SIGTERM must commit
    all of it in one last transaction, offsets with the views, and exit 0."""
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    events = jh.make_events(world.depts, 3000, seed=14, blocks=world.names)
    sent = jh.with_copies(events, 0.2, seed=15)
    hub = world.hub(extra=["  commit_interval: 60s"])
    hub.start()
    hub.wait_live(n=3)
    jh.produce(world.kafka, world.topics, world.depts, sent)
    deadline = deadline_after(60)
    while hub.status()["stats"]["consumed"] < len(sent):
        assert time.monotonic() < deadline, hub.status()
        time.sleep(0.2)
    s = hub.status()["stats"]
    assert s["consumed"] == len(sent) and s["counted"] == len(events), s
    assert s["duplicates"] == len(sent) - len(events), s
    # Nothing committed yet: all of it is in the join's memory.
    assert s["commits"] == 0, s
    assert jh.read_uncommitted(world.kafka, world.view) == []
    assert not jh.consumed_up_to_end(world.kafka, world.group, world.topics.values())

    assert hub.stop() == 0
    log = hub.logtext()
    assert "stopped: %d input records, %d counted, %d duplicates, 0 dead letters" % (
        len(sent), len(events), len(sent) - len(events)) in log, log
    assert " in 1 commits (0 aborted)" in log, log
    # The last transaction committed: the views of everything consumed, and the offsets.
    assert jh.consumed_up_to_end(world.kafka, world.group, world.topics.values())
    views = jh.last_views(world.kafka, world.view, world.decoder)
    jh.assert_views_equal_truth(views, jh.truth(events, jh.WINDOW_MS, world.names),
                                jh.WINDOW_MS, partitions=3)
    # and nothing left open or aborted: every view record is committed
    assert jh.open_transaction(world.kafka, world.view) == []
    assert len(jh.read_uncommitted(world.kafka, world.view)) == len(
        jh.read_committed(world.kafka, world.view))
