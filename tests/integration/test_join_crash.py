"""The join survives kill -9 (issue 4, "Crash"): five times during one run, at random
points, the join process is killed and restarted while the departments keep producing;
the final views still equal the ground truth computed from the inputs.

A restarted process has the same instance id (host and admin port), hence the same
transactional.id: its start fences the dead one's open transaction (aborted), and it
rebuilds its state from the changelog and resumes from the committed offsets.
"""
import random
import threading
import time

import join_helpers as jh
from join_helpers import WINDOW_MS, world  # noqa: F401 (a fixture)


def test_kill9_five_times_views_equal_truth(world):
    jh.create_topics(world.kafka, {t: 3 for t in world.topics.values()})
    events = jh.make_events(world.depts, 30000, seed=11, blocks=world.names)
    sent = jh.with_copies(events, 0.2, seed=12)
    rnd = random.Random(13)
    hub = world.hub()
    hub.start()
    hub.wait_live(n=3)

    failure = []

    def feed():
        try:
            jh.produce_paced(world.kafka, world.topics, world.depts, sent, seconds=50)
        except Exception as e:  # reported by the test body
            failure.append(e)

    t = threading.Thread(target=feed)
    t.start()
    for kill in range(5):
        # Kill while restoring or consuming: once this process has its partitions, at a random
        # point within the next few commits.
        deadline = time.monotonic() + 60
        while hub.logtext().count("join: assigned partitions") <= kill:
            assert time.monotonic() < deadline, hub.logtext()
            time.sleep(0.05)
        time.sleep(rnd.uniform(0.0, 2.5))
        hub.proc.kill()  # SIGKILL: no commit, no leaving the group
        hub.proc.wait()
        hub.log.close()
        hub.start()
    t.join()
    assert not failure, failure
    expected = jh.truth(events, WINDOW_MS, world.names)
    jh.wait_views(world.kafka, world.view, world.decoder, expected, WINDOW_MS, timeout=300,
                  partitions=3)
    assert jh.consumed_up_to_end(world.kafka, world.group, world.topics.values())
    # six processes ran; the restarts rebuilt state from the changelog (not from nothing)
    text = hub.logtext()
    assert text.count("hub: ready") == 6
    restored = [int(line.split(" restored: ")[1].split()[0])
                for line in text.splitlines() if " restored: " in line]
    assert sum(1 for n in restored if n > 0) >= 3, restored
    assert hub.stop() == 0
