"""The market spool against clumsy and hostile input (issue 7): file names that are not UTF-8,
files written in place, entries that are not files, rows too large for Kafka, sender text in
reasons, and configs that --check must refuse."""
import os
import subprocess
import time
import uuid

from confluent_kafka.admin import AdminClient, NewTopic
from conftest import BLOCKHUB, SCHEMAS, WORLD, deadline_after
from test_market import (HEADER, dead_letters, drop, generated, market_hub, records, uscc,
                         wait_for)


def wait_log(hub, *needles, timeout=60):
    """Polls the daemon's log until one of NEEDLES is in it; returns that needle."""
    deadline = deadline_after(timeout)
    while True:
        log = hub.logtext()
        for n in needles:
            if n in log:
                return n
        if hub.proc.poll() is not None:
            raise AssertionError("blockhub exited %d:\n%s" % (hub.proc.returncode, log))
        if time.monotonic() > deadline:
            raise AssertionError("none of %r in the log in %ds:\n%s" % (needles, timeout, log))
        time.sleep(0.02)


def row(rid, address="罗湖区测试路1号", kind="行政处罚", grid="440303-001", lon="", lat=""):
    return ",".join([rid, uscc("91440303%09d" % (abs(hash(rid)) % 10 ** 9)), "深圳市测试商行",
                     kind, "罚款", "100.00", address, grid, lon, lat, "2026-11-27 08:00:00"])


def csv_bytes(rows):
    return ("\r\n".join([",".join(HEADER)] + rows) + "\r\n").encode("gb18030")


# --- item 6: names that are not UTF-8 ---------------------------------------


def test_file_name_not_utf8_is_escaped_everywhere(kafka, hub_factory, tmp_path, decoder):
    hub = market_hub(hub_factory, kafka, tmp_path).start()
    spool = os.fsencode(str(hub.spool))
    bad = b"\xff\xfe-bad.csv"
    ctl = b"ctl\x01\nname.csv"  # valid UTF-8, but control characters split a log line
    for name in (bad, ctl):
        data = csv_bytes([row("N-1"), row("N-2"), row("N-3", kind="年度检查")])
        with open(spool + b"/" + name + b".part", "wb") as f:
            f.write(data)
        os.rename(spool + b"/" + name + b".part", spool + b"/" + name)
    for name in (bad, ctl):
        wait_for(spool + b"/done/" + name, hub=hub)
    shown = {"\\xff\\xfe-bad.csv", "ctl\\x01\\x0aname.csv"}
    # every record decodes (fastavro checks UTF-8) and names its file with the escapes
    recs = records(kafka, hub, decoder)
    assert sorted((r["source_file"], r["record_id"]) for r in recs) == sorted(
        (s, rid) for s in shown for rid in ("N-1", "N-2"))
    dead = dead_letters(kafka, hub, decoder)
    assert sorted(d["origin"]["source"] for d in dead) == sorted(shown)
    assert all(d["reason"] == "invalid_field" for d in dead)
    log = hub.logtext()
    for s in shown:
        assert "reading %s (" % s in log and "%s: 2 records, 1 dead letters" % s in log
    assert "\ufffd" not in log  # no raw bytes in the log
    assert hub.stop() == 0


# --- item 8: files written in place, entries that are not files -------------


def test_file_written_in_place_is_taken_once_settled(kafka, hub_factory, tmp_path, decoder):
    """Written in two parts, the first ending inside a row: taken only once unchanged for
    settle_time, so every row of both parts is published and nothing is dead-lettered."""
    hub = market_hub(hub_factory, kafka, tmp_path, settle_time="3s", rescan_interval="100ms",
                     extra_sets=["log.level=debug"]).start()
    data = csv_bytes([row("P-%d" % i) for i in range(1, 11)])
    cut = data.index(b"P-6") + 20  # inside row 6
    path = hub.spool / "inplace.csv"
    with open(path, "wb") as f:
        f.write(data[:cut])
        f.flush()
        # blockhub has seen the file; an early taker has already finished it
        seen = wait_log(hub, "inplace.csv: %d bytes, waiting until it is unchanged" % cut,
                        "inplace.csv: 5 records")
        f.write(data[cut:])
    assert seen.startswith("inplace.csv: %d bytes" % cut), "taken before it settled"
    wait_for(hub.spool / "done" / "inplace.csv", hub=hub)
    assert sorted(r["record_id"] for r in records(kafka, hub, decoder)) == \
        sorted("P-%d" % i for i in range(1, 11))
    assert dead_letters(kafka, hub, decoder) == []
    assert "reading inplace.csv (%d bytes)" % len(data) in hub.logtext()
    assert hub.stop() == 0


def make_bad_entries(spool, outside):
    os.mkdir(spool / "d.csv")
    os.symlink(outside / "nowhere.csv", spool / "s.csv")  # dangling
    os.mkfifo(spool / "f.csv")
    real = outside / "real.csv"
    real.write_bytes(generated(2, prefix="SCJG-L"))
    os.symlink(real, spool / "l.csv")  # to a good file: still not a file in the spool
    return {"d.csv": "a directory", "s.csv": "a symbolic link to '%s'" % (outside / "nowhere.csv"),
            "f.csv": "a FIFO", "l.csv": "a symbolic link to '%s'" % real}


def check_bad_entries(kafka, hub, decoder, kinds, where):
    # their dead letters are not part of any file's flow: wait for them to be acknowledged
    deadline = deadline_after(60)
    while len(dead_letters(kafka, hub, decoder)) < len(kinds):
        assert time.monotonic() < deadline, hub.logtext()
        time.sleep(0.1)
    dead = dead_letters(kafka, hub, decoder)
    assert sorted(d["origin"]["source"] for d in dead) == sorted(kinds), dead
    for d in dead:
        name = d["origin"]["source"]
        assert d["reason"] == "invalid_header"
        assert d["origin"]["transport"] == "file" and d["origin"]["position"] is None
        assert d["detail"].startswith("file %s: %s, not a file blockhub can read; %s"
                                      % (name, kinds[name], where)), d["detail"]
        assert d["payload"] == b""
    log = hub.logtext()
    for name, kind in kinds.items():
        assert log.count("file %s: %s" % (name, kind)) == 1, log


def test_entries_that_are_not_files_are_dead_lettered_once(kafka, hub_factory, tmp_path,
                                                            decoder):
    hub = market_hub(hub_factory, kafka, tmp_path, rescan_interval="50ms").start()
    outside = tmp_path / ("outside-%s" % uuid.uuid4().hex[:6])
    outside.mkdir()
    kinds = make_bad_entries(hub.spool, outside)
    drop(hub.spool, "good.csv", generated(3))
    wait_for(hub.spool / "done" / "good.csv", hub=hub)
    for name in kinds:  # already moved when good.csv was taken (lexists: s.csv dangles)
        assert os.path.lexists(hub.spool / "failed" / name)
        assert not os.path.lexists(hub.spool / name)
    # more rescans and another file: nothing is dead-lettered again
    drop(hub.spool, "good2.csv", generated(2, prefix="SCJG-G"))
    wait_for(hub.spool / "done" / "good2.csv", hub=hub)
    assert sorted(r["record_id"] for r in records(kafka, hub, decoder)) == \
        ["SCJG-G-0000001", "SCJG-G-0000002", "SCJG-T-0000001", "SCJG-T-0000002",
         "SCJG-T-0000003"]
    check_bad_entries(kafka, hub, decoder, kinds, "moved to failed/")
    assert hub.stop() == 0


def test_entries_that_cannot_be_moved_are_not_reported_on_every_rescan(kafka, hub_factory,
                                                                        tmp_path, decoder):
    hub = market_hub(hub_factory, kafka, tmp_path, rescan_interval="50ms")
    (hub.spool / "failed").write_bytes(b"in the way\n")  # every move to failed/ fails
    hub.start()
    outside = tmp_path / ("outside-%s" % uuid.uuid4().hex[:6])
    outside.mkdir()
    kinds = make_bad_entries(hub.spool, outside)
    for i in range(3):  # each file is taken after at least two more listings
        drop(hub.spool, "good%d.csv" % i, generated(1, prefix="SCJG-%d" % i))
        wait_for(hub.spool / "done" / ("good%d.csv" % i), hub=hub)
    assert len(records(kafka, hub, decoder)) == 3
    for name in kinds:
        assert os.path.lexists(hub.spool / name)
    check_bad_entries(kafka, hub, decoder, kinds, "left in the spool (cannot move it to failed/")
    assert hub.stop() == 0


# --- item 3: rows too large for Kafka ---------------------------------------


BIG = "测" * 17000  # 34,000 bytes of GB18030, 51,000 of UTF-8 in the record


def big_file():
    rows = [row("B-1"), row("B-2"), row("B-3"), row("B-4", address=BIG), row("B-5"), row("B-6")]
    return csv_bytes(rows), rows[3].encode("gb18030")


def test_row_too_large_for_the_producer_is_dead_lettered(kafka, hub_factory, tmp_path, decoder):
    for payload in ("4KiB", None):  # None: the default 64KiB, more than fits under the limit
        sets = ["kafka.properties.message.max.bytes=20000"]
        if payload:
            sets.append("dead_letter.max_payload=%s" % payload)
        hub = market_hub(hub_factory, kafka, tmp_path, extra_sets=sets).start()
        data, raw = big_file()
        drop(hub.spool, "big.csv", data)
        wait_for(hub.spool / "done" / "big.csv", timeout=60, hub=hub)
        got = sorted(r["record_id"] for r in records(kafka, hub, decoder))
        assert got == ["B-1", "B-2", "B-3", "B-5", "B-6"]
        dead = dead_letters(kafka, hub, decoder)
        assert len(dead) == 1, dead
        d = dead[0]
        assert d["reason"] == "too_large"
        assert d["detail"].startswith("row 4: its record (") and "message.max.bytes" in d["detail"]
        assert d["origin"]["position"] == 5
        if payload:
            assert d["payload"] == raw[:4096] and d["payload_truncated"] is True
        else:
            assert 0 < len(d["payload"]) < 20000 and raw.startswith(d["payload"])
        log = hub.logtext()
        assert log.count("max_row_bytes (524288 bytes) does not fit under the producer's "
                         "message.max.bytes (20000 bytes)") == 1, log
        assert "dead-lettered as too_large" in log
        assert hub.stop() == 0


def test_row_refused_by_the_topic_limit_is_dead_lettered(kafka, hub_factory, tmp_path, decoder):
    """The producer takes the record, the broker's topic limit refuses it in the delivery
    report: the row becomes a too_large dead letter after one rewind; the file completes."""
    hub = market_hub(hub_factory, kafka, tmp_path, retry_backoff="200ms")
    admin = AdminClient({"bootstrap.servers": kafka})
    fs = admin.create_topics([NewTopic(hub.market_topic, 3, 1,
                                       config={"max.message.bytes": "20000"})])
    for f in fs.values():
        f.result(30)
    hub.start()
    data, raw = big_file()
    drop(hub.spool, "big.csv", data)
    # one rewind, then the row is a dead letter: a file that rewinds again and again
    # (the refusal not recognised) fails here, not at the deadline
    deadline = deadline_after(90)
    while not (hub.spool / "done" / "big.csv").exists():
        rewinds = hub.logtext().count("rewinding to the checkpoint")
        assert rewinds <= 3, "big.csv rewound %d times:\n%s" % (rewinds, hub.logtext())
        assert hub.proc.poll() is None and time.monotonic() < deadline, hub.logtext()
        time.sleep(0.05)
    got = {r["record_id"] for r in records(kafka, hub, decoder)}
    assert got == {"B-1", "B-2", "B-3", "B-5", "B-6"}  # a rewind may publish some twice
    dead = dead_letters(kafka, hub, decoder)
    assert [(d["reason"], d["origin"]["position"]) for d in dead] == [("too_large", 5)], dead
    assert dead[0]["detail"].startswith("row 4: Kafka refused its record as too large")
    assert dead[0]["payload"] == raw and dead[0]["payload_truncated"] is False
    assert "Kafka refused the record of the row ending at byte %d" % (
        data.index(raw) + len(raw) + 2) in hub.logtext()
    assert hub.stop() == 0


# --- item 5: sender text in reasons is cut at characters --------------------


def test_reasons_cut_sender_text_at_character_boundaries(kafka, hub_factory, tmp_path, decoder):
    hub = market_hub(hub_factory, kafka, tmp_path).start()
    long_kind = "市场监管局专项执法检查行动" * 4  # 52 characters, 156 bytes of UTF-8
    long_lon = "东经一百一十四度零八分" * 2
    long_grid = "罗湖区东门街道网格编码" * 2
    drop(hub.spool, "cjk.csv", csv_bytes([
        row("C-1", kind=long_kind),
        row("C-2", lon=long_lon, lat="22.5"),
        row("C-3", grid=long_grid),
        row("C-4"),
    ]))
    wait_for(hub.spool / "done" / "cjk.csv", hub=hub)
    assert [r["record_id"] for r in records(kafka, hub, decoder)] == ["C-4"]
    dead = {d["detail"].split(":")[0]: d["detail"] for d in dead_letters(kafka, hub, decoder)}
    assert sorted(dead) == ["row 1", "row 2", "row 3"]
    for detail in dead.values():
        assert "\\x" not in detail and "\ufffd" not in detail, detail
    # the longest prefix of whole characters that fits the cut, and "..." marking it
    assert "'%s...'" % long_kind[:21] in dead["row 1"]  # 64 bytes
    assert "'%s...'" % long_lon[:13] in dead["row 2"]  # 40 bytes
    assert "'%s...'" % long_grid[:10] in dead["row 3"]  # 32 bytes
    assert hub.stop() == 0


def test_utf8_file_with_forms_beyond_rfc_3629_is_dead_lettered(kafka, hub_factory, tmp_path,
                                                               decoder):
    """From UTF-8, a 5-byte form or a value past U+10FFFF is not UTF-8: the row is dead-lettered
    as invalid_encoding; it never reaches a record's strings."""
    hub = market_hub(hub_factory, kafka, tmp_path, encoding="UTF-8").start()
    rows = [row("U-1"), row("U-2", address="罗湖区\uFFFD"), row("U-3"), row("U-4")]
    data = ("\n".join([",".join(HEADER)] + rows) + "\n").encode("utf-8")
    data = data.replace("\uFFFD".encode(), b"\xf8\x88\x80\x80\x80")  # 5 bytes
    data = data.replace(b"U-3,", b"U-3,\xf4\x90\x80\x80")  # U+110000 in the USCC
    drop(hub.spool, "beyond.csv", data)
    wait_for(hub.spool / "done" / "beyond.csv", hub=hub)
    assert sorted(r["record_id"] for r in records(kafka, hub, decoder)) == ["U-1", "U-4"]
    dead = dead_letters(kafka, hub, decoder)
    assert sorted((d["reason"], d["origin"]["position"]) for d in dead) == \
        [("invalid_encoding", 3), ("invalid_encoding", 4)]
    assert hub.stop() == 0


# --- item 7: --check refuses what start would -------------------------------


def test_check_refuses_bad_encoding_and_done_action(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    cases = [("encoding", "NO-SUCH-CHARSET", "iconv cannot convert 'NO-SUCH-CHARSET' to UTF-8"),
             ("encoding", "UTF-16", "'UTF-16' is not ASCII-compatible"),
             ("done_action", "archive", "'archive' is not move or delete")]
    for key, value, why in cases:
        cfg = tmp_path / ("c-%s.yaml" % value)
        cfg.write_text("\n".join([
            "kafka:",
            "  brokers: embedded",
            "blocks:",
            "  map: %s" % os.path.join(WORLD, "blocks.geojson"),
            "schemas:",
            "  dir: %s" % SCHEMAS,
            "adapters:",
            "  - name: market",
            "    type: market",
            "    spool_dir: %s" % spool,
            "    %s: %s" % (key, value),
        ]) + "\n")
        r = subprocess.run([BLOCKHUB, "--config", str(cfg), "--check"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        col = len("    %s: " % key) + 1
        assert "%s:11:%d: key 'adapters[market].%s': %s" % (cfg, col, key, why) in r.stderr, \
            r.stderr
    # and through --set
    r = subprocess.run([BLOCKHUB, "--config", str(cfg), "--check",
                        "--set", "adapters.market.done_action=delete",
                        "--set", "adapters.market.encoding=GBK"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
