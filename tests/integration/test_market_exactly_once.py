"""The market adapter with exactly_once: true against a real broker (README, "The market spool"):
its rows, their dead letters and the position after them go to Kafka in one transaction, so
kill -9 neither loses a row nor publishes one twice (read_committed)."""
import collections
import os
import re
import signal
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from conftest import deadline_after, start_refused, wait_until
from test_market import HEADER, drop, market_hub, uscc, wait_for

N = 1000000
KILLS = 5
BAD_EVERY = 4999  # these rows have a wrong USCC check character: one dead letter each


def big_file(n):
    """N rows in GB18030 (grid codes; every BAD_EVERY-th row is refused as invalid_field)."""
    good = [uscc("91440303%09d" % (j * 7919)) for j in range(97)]
    bad = [u[:17] + ("0" if u[17] != "0" else "1") for u in good]
    lines = [",".join(HEADER)]
    for i in range(1, n + 1):
        code = (bad if i % BAD_EVERY == 0 else good)[i % 97]
        lines.append("MKT-%07d,%s,测试商行%d,行政处罚,罚款,%d.%02d,,440303-%03d,,,"
                     "2026-11-27 %02d:%02d:%02d"
                     % (i, code, i % 1000, i % 5000, i % 100, i % 120 + 1,
                        i // 3600 % 24, i // 60 % 60, i % 60))
    return ("\r\n".join(lines) + "\r\n").encode("gb18030")


def eos_hub(hub_factory, kafka, tmp_path, **settings):
    """A market hub with exactly_once on and a position topic of its own."""
    settings.setdefault("position_topic", "blockhub.market.position.%s" % uuid.uuid4().hex[:10])
    return market_hub(hub_factory, kafka, tmp_path, exactly_once=True, **settings)


def written(kafka, topic):
    """Offsets written to TOPIC so far (committed, open and aborted records, markers)."""
    c = Consumer({"bootstrap.servers": kafka, "group.id": "bh-eos-probe"})
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return 0
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                           cached=False)[1] for p in md.partitions)
    finally:
        c.close()


def read_committed(kafka, topic, timeout=120):
    """Every committed value of TOPIC (read_committed, to each partition's last stable offset)."""
    c = Consumer({"bootstrap.servers": kafka, "group.id": "bh-eos-check",
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, 0) for p in md.partitions]
        c.assign(parts)
        left = set(md.partitions)
        deadline = deadline_after(timeout)
        while left:
            assert time.monotonic() < deadline, "%s not read to its end" % topic
            for m in c.consume(num_messages=10000, timeout=1):
                if m.error() is None:
                    yield m.value()
                elif m.error().code() == -191:  # partition EOF: at the last stable offset
                    left.discard(m.partition())
                else:
                    raise AssertionError(m.error())
    finally:
        c.close()


def test_kill9_five_times_every_row_exactly_once(kafka, hub_factory, tmp_path, decoder):
    data = big_file(N)
    hub = eos_hub(hub_factory, kafka, tmp_path, checkpoint_rows=20000, checkpoint_interval="200ms")
    hub.start()
    name = "scjg_20261128_eos.csv"
    drop(hub.spool, name, data)
    # Kill at offsets spread over the file: each kill is right after rows were produced, with
    # a transaction open (rows written, not yet committed).
    for k in range(1, KILLS + 1):
        mark = N * k // (KILLS + 1)
        wait_until(lambda: written(kafka, hub.market_topic) >= mark,
                   "%d records written before kill %d" % (mark, k), timeout=120, hub=hub,
                   interval=0.02)
        hub.proc.send_signal(signal.SIGKILL)
        hub.proc.wait()
        assert not os.path.exists(hub.spool / "done" / name), "the file was done before kill %d" % k
        hub.start()
    wait_for(hub.spool / "done" / name, timeout=240, hub=hub)
    assert hub.stop() == 0

    seen = collections.Counter()
    for v in read_committed(kafka, hub.market_topic):
        rec = decoder.decode(v)[1]
        assert rec["source_file"] == name
        seen[rec["source_row"]] += 1
    dead = collections.Counter()
    for v in read_committed(kafka, hub.dlq_topic):
        rec = decoder.decode(v)[1]
        assert rec["reason"] == "invalid_field", rec
        dead[rec["origin"]["position"] - 1] += 1  # the line it starts on: row + 1
    bad = set(range(BAD_EVERY, N + 1, BAD_EVERY))
    twice = sorted(r for r, c in seen.items() if c > 1) + sorted(r for r, c in dead.items() if c > 1)
    lost = sorted((set(range(1, N + 1)) - bad) - set(seen)) + sorted(bad - set(dead))
    print("rows %d, kills %d, records %d, dead letters %d, duplicates %d, lost %d"
          % (N, KILLS, sum(seen.values()), sum(dead.values()), len(twice), len(lost)))
    assert not twice, "published twice: %d rows, first %s" % (len(twice), twice[:10])
    assert not lost, "lost: %d rows, first %s" % (len(lost), lost[:10])
    assert set(seen) | set(dead) == set(range(1, N + 1))
    assert written(kafka, hub.market_topic) > N, "no kill left rows in an aborted transaction"
    # each restart resumed from the position it read back
    log = hub.logtext()
    resumed = re.findall(r"exactly once: transactional\.id blockhub-market-market, position topic "
                         r"\S+: %s at byte (\d+) \(after row (\d+)\)" % re.escape(name), log)
    assert len(resumed) == KILLS, log[-4000:]
    rows = [int(r) for _, r in resumed]
    assert rows == sorted(rows) and 0 < rows[0] and rows[-1] < N, rows


def test_fenced_adapter_stops_and_the_hub_serves_on(kafka, hub_factory, tmp_path):
    """A second adapter with the same transactional.id fences the first: the first logs why and
    stops, the daemon goes on (its fire adapter still answers)."""
    tid = "blockhub-market-fence-%d" % os.getpid()
    a = eos_hub(hub_factory, kafka, tmp_path, fire=True, transactional_id=tid).start()
    wait_until(lambda: "exactly once: transactional.id %s" % tid in a.logtext(), "a ready",
               hub=a)
    b = eos_hub(hub_factory, kafka, tmp_path, transactional_id=tid).start()
    wait_until(lambda: "exactly once: transactional.id %s" % tid in b.logtext(), "b ready", hub=b)
    # a file makes the first one produce and commit: its producer learns it is fenced
    drop(a.spool, "scjg_fenced.csv", big_file(10))
    wait_until(lambda: "failed for good" in a.logtext(), "the fenced adapter stops", hub=a,
               timeout=30)
    assert "the market adapter stops" in a.logtext()
    r = a.post([])
    assert r.status_code in (200, 400), r.text  # still answering
    assert a.proc.poll() is None
    assert os.path.exists(a.spool / "scjg_fenced.csv")  # nothing taken out of the spool
    assert b.stop() == 0
    assert a.stop() == 1  # a component failed


def test_config_refused(hub_factory, kafka, tmp_path):
    """The exactly-once keys, checked like the others: the key and why."""
    for settings, key, why in (
            ({"transactional_id": "x"}, "transactional_id", "is used only with exactly_once: true"),
            ({"position_topic": "p"}, "position_topic", "is used only with exactly_once: true"),
            ({"exactly_once": True, "transactional_id": "a b"}, "transactional_id",
             "'a b' has a character that is not printable ASCII (or a space)"),
            ({"exactly_once": True, "position_topic": "bad/topic"}, "position_topic", None)):
        hub = market_hub(hub_factory, kafka, tmp_path, **settings)
        rc, err = start_refused(hub)
        assert rc == 2, err
        assert re.search(r"^blockhub: config refused: %s:\d+:\d+: key 'adapters\[market\]\.%s': "
                         r"%s$" % (re.escape(hub.config), key, re.escape(why) if why else ".+"),
                         err, re.M), err
