"""The market feed end to end against a real broker (docs/feeds.md, section 5): CSV files."""
import csv
import datetime
import decimal
import io
import os
import re
import signal
import time
import uuid

from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer

import bhcat
from conftest import WORLD, deadline_after, proc_io, stalled, start_refused, wait_log, wait_until

SAMPLE = os.path.join(WORLD, "samples", "market", "scjg_20261127_0800.csv")
SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))
HEADER = ["记录编号", "统一社会信用代码", "主体名称", "事项类型", "处理结果", "罚没金额",
          "经营地址", "网格编码", "经度", "纬度", "发生时间"]
CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def uscc(body17):
    """GB 32100-2015: the check character of 17 characters (weights 3^i mod 31)."""
    c = 31 - sum(CHARSET.index(ch) * pow(3, i, 31) for i, ch in enumerate(body17)) % 31
    return body17 + CHARSET[0 if c == 31 else c]


def market_hub(hub_factory, brokers, tmp_path, fire=False, extra_sets=(), **settings):
    """A hub with one market adapter on a spool directory and topic of its own."""
    spool = tmp_path / ("spool-%s" % uuid.uuid4().hex[:6])
    spool.mkdir()
    topic = "dept.market.%s" % uuid.uuid4().hex[:10]
    entry = {"name": "market", "type": "market", "spool_dir": str(spool), "topic": topic,
             "settle_time": "200ms"}  # files are dropped whole here: no need to wait long
    entry.update(settings)
    hub = hub_factory(brokers, adapters=[entry], fire=fire, extra_sets=list(extra_sets))
    hub.spool = spool
    hub.market_topic = topic
    return hub


def drop(spool, name, data):
    """Deliver like the department: write NAME.part, then rename it to NAME."""
    part = spool / (name + ".part")
    part.write_bytes(data)
    os.rename(part, spool / name)


def wait_for(path, timeout=120, hub=None):
    deadline = deadline_after(timeout)
    while not os.path.exists(path):
        if hub is not None and hub.proc.poll() is not None:
            raise AssertionError("blockhub exited %d:\n%s" % (hub.proc.returncode, hub.logtext()))
        if time.monotonic() > deadline:
            raise AssertionError("%s did not appear in %ds:\n%s"
                                 % (path, timeout, hub.logtext() if hub else ""))
        time.sleep(0.05)


def utc_ms(text):
    """发生时间 (either layout) read as Shanghai time, in UTC epoch milliseconds."""
    fmt = "%Y-%m-%d %H:%M:%S" if "-" in text else "%Y/%m/%d %H:%M"
    local = datetime.datetime.strptime(text, fmt).replace(tzinfo=SHANGHAI)
    return int(local.timestamp() * 1000)


def records(kafka, hub, decoder):
    out = []
    for m in bhcat.consume_all(kafka, hub.market_topic):
        name, rec = decoder.decode(m["value"])
        assert name == "blockhub.market.MarketEvent"
        assert m["headers"]["blockhub.event_id"].decode() == rec["record_id"]
        assert m["headers"]["blockhub.adapter"] == b"market"
        assert m["key"].decode() == rec["block_id"]
        out.append(rec)
    return out


def dead_letters(kafka, hub, decoder):
    out = []
    for m in bhcat.consume_all(kafka, hub.dlq_topic):
        name, rec = decoder.decode(m["value"])
        assert name == "blockhub.DeadLetter"
        assert rec["adapter"] == "market" and rec["adapter_type"] == "market"
        out.append(rec)
    return out


def raw_rows(data):
    """The original bytes of each CSV record and the line it starts on (quotes may hold line
    ends, so a record ends at a line end outside quotes)."""
    rows, start, line, start_line, quoted = [], 0, 1, 1, False
    for i, b in enumerate(data):
        if b == 0x22:
            quoted = not quoted
        elif b == 0x0A:
            line += 1
            if not quoted:
                rows.append((start_line, data[start:i].rstrip(b"\r")))
                start, start_line = i + 1, line
    if start < len(data):
        rows.append((start_line, data[start:]))
    return rows


def test_sample_file(kafka, hub_factory, tmp_path, decoder, blocks):
    with open(SAMPLE, "rb") as f:
        data = f.read()
    table = list(csv.reader(io.StringIO(data.decode("gb18030"), newline="")))
    assert table[0] == HEADER
    rows = [dict(zip(HEADER, r)) for r in table[1:]]
    raw = raw_rows(data)
    assert len(raw) == len(table)
    bad = {"SCJG-2026-000019", "SCJG-2026-000020", "SCJG-2026-000021"}

    hub = market_hub(hub_factory, kafka, tmp_path).start()
    name = os.path.basename(SAMPLE)
    drop(hub.spool, name, data)
    wait_for(hub.spool / "done" / name, hub=hub)
    assert not os.path.exists(hub.spool / name)

    got = {r["record_id"]: r for r in records(kafka, hub, decoder)}
    valid = [r for r in rows if r["记录编号"] not in bad]
    assert sorted(got) == sorted(r["记录编号"] for r in valid)
    for number, row in enumerate(rows, 1):
        rid = row["记录编号"]
        if rid in bad:
            continue
        rec = got[rid]
        lon = float(row["经度"]) if row["经度"] else None
        lat = float(row["纬度"]) if row["纬度"] else None
        block = blocks.resolve(row["网格编码"] or None, lon, lat)
        assert block is not None, rid
        assert rec["block_id"] == block, rid
        assert rec["uscc"] == row["统一社会信用代码"]
        assert rec["business_name"] == row["主体名称"]
        assert rec["event_type"] == row["事项类型"]
        assert rec["outcome"] == row["处理结果"]
        if row["罚没金额"]:
            assert isinstance(rec["fine"], decimal.Decimal)
            assert rec["fine"] == decimal.Decimal(row["罚没金额"]), rid
        else:
            assert rec["fine"] is None
        assert rec["address"] == (row["经营地址"] or None)
        assert rec["grid_code"] == (row["网格编码"] or None)
        assert rec["location"] == ({"lon": lon, "lat": lat} if lon is not None else None)
        assert rec["occurred_at"].tzinfo is not None
        assert int(rec["occurred_at"].timestamp() * 1000) == utc_ms(row["发生时间"]), rid
        assert rec["source_file"] == name
        assert rec["source_row"] == number
        assert rec["source_line"] == raw[number][0]
    # rows 7 and 8: a quoted comma and doubled quotes, a line break inside a quoted field
    assert got["SCJG-2026-000007"]["business_name"] == '深圳市"老字号",百货有限公司'
    assert got["SCJG-2026-000008"]["address"] == "罗湖区东门中路1号\n二楼"
    assert got["SCJG-2026-000009"]["source_line"] == 11
    # exact fines and UTC times, spelled out
    assert got["SCJG-2026-000004"]["fine"] == decimal.Decimal("14947.73")
    assert got["SCJG-2026-000011"]["fine"] == decimal.Decimal("9140.80")
    assert got["SCJG-2026-000005"]["occurred_at"] == datetime.datetime(
        2026, 11, 27, 1, 30, tzinfo=datetime.timezone.utc)

    dead = {d["detail"].split(":")[0]: d for d in dead_letters(kafka, hub, decoder)}
    assert sorted(dead) == ["row 19", "row 20", "row 21"]
    assert dead["row 19"]["reason"] == "invalid_field"
    assert "统一社会信用代码" in dead["row 19"]["detail"]
    assert dead["row 20"]["reason"] == "invalid_field"
    assert "发生时间" in dead["row 20"]["detail"]
    assert dead["row 21"]["reason"] == "unresolved_block"
    for number in (19, 20, 21):
        d = dead["row %d" % number]
        line, original = raw[number]
        assert d["origin"] == {"transport": "file", "source": name, "peer": None,
                               "position": line}
        assert d["payload"] == original
        assert d["payload_truncated"] is False
    assert hub.stop() == 0


# --- generated files --------------------------------------------------------


def generated(n, prefix="SCJG-T", first=1):
    """N valid rows (grid codes; every 7th by a point inside 440303-001)."""
    lines = [",".join(HEADER)]
    for i in range(first, first + n):
        point = i % 7 == 0
        lines.append(",".join([
            "%s-%07d" % (prefix, i), uscc("91440303%09d" % (i * 7919 % 10 ** 9)),
            "深圳市罗湖区测试商行%d有限公司" % i, "行政处罚", "罚款", "%d.%02d" % (i, i % 100),
            "罗湖区测试路%d号" % i, "" if point else "440303-%03d" % (i % 120 + 1),
            "114.088" if point else "", "22.537" if point else "",
            "2026-11-27 %02d:%02d:%02d" % (i // 3600 % 24, i // 60 % 60, i % 60)]))
    return ("\r\n".join(lines) + "\r\n").encode("gb18030")


def read_checkpoint(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines[0] == "blockhub-market-checkpoint 1"
    return dict(line.split("=", 1) for line in lines[1:])


def rows_seen(kafka, hub, decoder, source_file=None):
    """source_row -> how many times it was published, checking each record's numbering."""
    seen = {}
    for m in bhcat.consume_all(kafka, hub.market_topic, timeout=120):
        rec = decoder.decode(m["value"])[1]
        if source_file is not None and rec["source_file"] != source_file:
            continue
        row = rec["source_row"]
        assert rec["record_id"] == "SCJG-T-%07d" % row, rec
        assert rec["source_line"] == row + 1
        seen[row] = seen.get(row, 0) + 1
    return seen


def test_kill9_mid_file_resumes_at_the_checkpoint(kafka, hub_factory, tmp_path, decoder):
    n = 200000
    data = generated(n)
    hub = market_hub(hub_factory, kafka, tmp_path, checkpoint_rows=5000,
                     checkpoint_interval="50ms").start()
    state = hub.spool / "market.checkpoint"
    name = "scjg_20261127_big.csv"
    drop(hub.spool, name, data)
    wait_until(lambda: os.path.exists(state), "the first checkpoint", timeout=120, hub=hub,
               interval=0.005)
    time.sleep(0.2)
    hub.proc.send_signal(signal.SIGKILL)
    hub.proc.wait()
    ck = read_checkpoint(state)  # what was on disk at the kill
    assert os.path.exists(hub.spool / name), "the whole file was done before the kill"
    assert not os.path.exists(hub.spool / "done" / name)
    st = os.stat(hub.spool / name)
    assert (int(ck["dev"]), int(ck["ino"]), int(ck["size"]), ck["file"]) == \
        (st.st_dev, st.st_ino, st.st_size, name)
    at = int(ck["row"])
    assert 0 < at < n
    # the offset is just after row AT: the header and AT rows of CRLF-ended lines
    assert int(ck["offset"]) == len(b"\r\n".join(data.split(b"\r\n")[:at + 1])) + 2
    assert int(ck["line"]) == at + 1
    # while it is down, a file that sorts first arrives: the interrupted one still goes first
    early = "scjg_20261126_late_upload.csv"
    drop(hub.spool, early, generated(100, prefix="SCJG-E"))

    hub.start()
    wait_for(hub.spool / "done" / name, timeout=300, hub=hub)
    wait_for(hub.spool / "done" / early, hub=hub)
    assert not os.path.exists(state)
    seen = rows_seen(kafka, hub, decoder, source_file=name)
    assert set(seen) == set(range(1, n + 1))  # every row at least once
    again = sorted(r for r, k in seen.items() if k > 1)
    assert not again or again[0] > at, "row %d before the checkpoint published twice" % again[0]
    assert max(seen.values()) <= 2
    assert dead_letters(kafka, hub, decoder) == []
    log = hub.logtext()
    assert "resuming at byte %s (after row %d)" % (ck["offset"], at) in log
    assert log.rindex("reading %s" % name) < log.index("reading %s" % early)
    assert hub.stop() == 0


def test_sigterm_mid_file_writes_the_final_checkpoint(kafka, hub_factory, tmp_path, decoder):
    """A clean stop waits for what is in flight and checkpoints it: nothing is published twice."""
    n = 100000
    hub = market_hub(hub_factory, kafka, tmp_path, checkpoint_rows=100000000,
                     checkpoint_interval="1h", max_in_flight=1000,
                     extra_sets=["log.level=debug"]).start()
    name = "scjg_stop.csv"
    drop(hub.spool, name, generated(n))
    # the first pause comes after 1000 of the 100000 rows: stop at once, mid-file
    wait_until(lambda: "%s: 1000 rows out, reading paused" % name in hub.logtext(),
               "the first pause of %s" % name, hub=hub, interval=0.005)
    assert hub.stop() == 0
    assert os.path.exists(hub.spool / name), "the whole file was done before the stop"
    ck = read_checkpoint(hub.spool / "market.checkpoint")
    assert 0 < int(ck["row"]) < n
    assert len(rows_seen(kafka, hub, decoder)) == int(ck["row"])
    hub.start()
    wait_for(hub.spool / "done" / name, hub=hub)
    seen = rows_seen(kafka, hub, decoder)
    assert set(seen) == set(range(1, n + 1)) and set(seen.values()) == {1}
    assert hub.stop() == 0


# --- bad files --------------------------------------------------------------


def test_header_not_gb18030_goes_to_failed(kafka, hub_factory, tmp_path, decoder):
    hub = market_hub(hub_factory, kafka, tmp_path).start()
    header = ",".join(HEADER).encode("gb18030").replace("主体名称".encode("gb18030"),
                                                      b"\xff\xfe\xff")
    body = generated(3).split(b"\r\n", 1)[1]
    drop(hub.spool, "a_bad_header.csv", header + b"\r\n" + body)
    drop(hub.spool, "b_missing_column.csv",
         ",".join(h for h in HEADER if h != "发生时间").encode("gb18030") + b"\r\n" + body)
    drop(hub.spool, "c_good.csv", generated(3))
    wait_for(hub.spool / "failed" / "a_bad_header.csv", hub=hub)
    wait_for(hub.spool / "failed" / "b_missing_column.csv", hub=hub)
    wait_for(hub.spool / "done" / "c_good.csv", hub=hub)
    dead = dead_letters(kafka, hub, decoder)
    assert len(dead) == 2
    by_file = {d["origin"]["source"]: d for d in dead}
    d = by_file["a_bad_header.csv"]
    assert d["reason"] == "invalid_header" and "not valid GB18030" in d["detail"]
    assert d["origin"]["position"] == 1 and d["payload"] == header
    d = by_file["b_missing_column.csv"]
    assert d["reason"] == "invalid_header" and "发生时间" in d["detail"]
    # nothing of the refused files was published; the good one was
    assert sorted(r["source_file"] for r in records(kafka, hub, decoder)) == ["c_good.csv"] * 3
    assert hub.stop() == 0


def test_row_with_undecodable_bytes_is_dead_lettered(kafka, hub_factory, tmp_path, decoder):
    hub = market_hub(hub_factory, kafka, tmp_path).start()
    lines = generated(4).split(b"\r\n")
    # row 2: a bad byte inside a quoted field that also holds a line break and a comma;
    # the row ends at the next line end outside quotes, and rows 3 and 4 flow
    bad = lines[2].replace("深圳市罗湖区测试商行2有限公司".encode("gb18030"),
                           b'"\xd5\xfe\xff\x81 broken\nstill, row 2"')
    lines[2] = bad
    data = b"\r\n".join(lines)
    drop(hub.spool, "enc.csv", data)
    wait_for(hub.spool / "done" / "enc.csv", hub=hub)
    got = sorted(r["record_id"] for r in records(kafka, hub, decoder))
    assert got == ["SCJG-T-0000001", "SCJG-T-0000003", "SCJG-T-0000004"]
    line4 = [r for r in records(kafka, hub, decoder) if r["source_row"] == 4][0]
    assert line4["source_line"] == 6  # row 2 spans lines 3 and 4
    dead = dead_letters(kafka, hub, decoder)
    assert len(dead) == 1
    assert dead[0]["reason"] == "invalid_encoding"
    assert dead[0]["detail"].startswith("row 2:")
    assert dead[0]["payload"] == bad
    assert dead[0]["origin"]["position"] == 3
    assert hub.stop() == 0


def test_unclosed_quote_and_the_daemon_serves_on(kafka, hub_factory, tmp_path, decoder):
    hub = market_hub(hub_factory, kafka, tmp_path, fire=True, max_row_bytes="64KiB").start()
    lines = generated(3).split(b"\r\n")
    # a quote that never closes: rows 1 and 2 flow, the rest of the file is one dead letter
    broken = b"\r\n".join(lines[:3]) + b'\r\nSCJG-T-0000003,"never closed\r\n' + lines[3] + b"\r\n"
    drop(hub.spool, "a_unclosed.csv", broken)
    # and one that never closes in 2 MiB: cut at max_row_bytes, not held in memory
    huge = b"\r\n".join(lines[:2]) + b'\r\nSCJG-T-0000002,"' + b"x" * (2 << 20) + b"\r\n"
    drop(hub.spool, "b_huge.csv", huge)
    drop(hub.spool, "c_after.csv", generated(2, prefix="SCJG-U"))
    for name in ("a_unclosed.csv", "b_huge.csv", "c_after.csv"):
        wait_for(hub.spool / "done" / name, hub=hub)
    got = sorted((r["source_file"], r["record_id"]) for r in records(kafka, hub, decoder))
    assert got == [("a_unclosed.csv", "SCJG-T-0000001"), ("a_unclosed.csv", "SCJG-T-0000002"),
                   ("b_huge.csv", "SCJG-T-0000001"),
                   ("c_after.csv", "SCJG-U-0000001"), ("c_after.csv", "SCJG-U-0000002")]
    dead = {d["origin"]["source"]: d for d in dead_letters(kafka, hub, decoder)}
    assert sorted(dead) == ["a_unclosed.csv", "b_huge.csv"]
    assert dead["a_unclosed.csv"]["reason"] == "invalid_csv"
    assert dead["a_unclosed.csv"]["origin"]["position"] == 4
    assert dead["a_unclosed.csv"]["payload"].startswith(b'SCJG-T-0000003,"never closed\r\n')
    assert dead["b_huge.csv"]["reason"] == "too_large"
    assert dead["b_huge.csv"]["payload"].startswith(b'SCJG-T-0000002,"xxxx')
    assert len(dead["b_huge.csv"]["payload"]) <= 64 * 1024
    # the fire webhook on the same loop still answers
    r = hub.post({"id": "XF-M-1", "category": "drill", "unit": "u", "level": "low",
                  "occurred_at": "2026-11-27T08:00:00+08:00", "grid_code": "440303-001"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert hub.stop() == 0


def test_part_and_other_files_are_never_touched(kafka, hub_factory, tmp_path, decoder):
    hub = market_hub(hub_factory, kafka, tmp_path, rescan_interval="100ms").start()
    part = hub.spool / "a_upload.csv.part"
    part.write_bytes(generated(2, prefix="SCJG-P"))
    other = hub.spool / "a_notes.txt"
    other.write_bytes(b"not a csv\n")
    before = (os.stat(part).st_mtime_ns, part.read_bytes())
    drop(hub.spool, "b_real.csv", generated(2))
    wait_for(hub.spool / "done" / "b_real.csv", hub=hub)
    time.sleep(0.5)  # several rescans
    assert (os.stat(part).st_mtime_ns, part.read_bytes()) == before
    assert other.read_bytes() == b"not a csv\n"
    assert sorted(os.listdir(hub.spool / "done")) == ["b_real.csv"]
    assert os.listdir(hub.spool / "failed") == []
    assert {r["record_id"] for r in records(kafka, hub, decoder)} == \
        {"SCJG-T-0000001", "SCJG-T-0000002"}
    # the upload completes: now it is taken
    os.rename(part, hub.spool / "a_upload.csv")
    wait_for(hub.spool / "done" / "a_upload.csv", hub=hub)
    assert len(records(kafka, hub, decoder)) == 4
    assert hub.stop() == 0


def test_row_rules_and_utf8_with_bom(kafka, hub_factory, tmp_path, decoder):
    """UTF-8 with a BOM, columns in another order plus an unknown one, and a rule per row."""
    hub = market_hub(hub_factory, kafka, tmp_path, encoding="UTF-8").start()
    ok = uscc("91440303MA5ABCDEF")
    cols = ["发生时间", "备注", "处理结果", "事项类型", "主体名称", "统一社会信用代码", "记录编号",
            "网格编码", "罚没金额", "经度", "纬度"]
    rows = [  # (发生时间, 处理结果, 事项类型, 罚没金额, 经度, 纬度, 网格编码) -> reason or None
        (("2026/11/27 08:00", "合格", "日常检查", "", "", "", "440303-010"), None),
        (("2026-11-27 08:00:00", "罚款", "行政处罚", "0.1", "114.088", "22.537", ""), None),
        (("2026-11-27 08:00:00", "合格", "年度检查", "", "", "", "440303-010"), "invalid_field"),
        (("2026-11-27 08:00:00", "不合格", "日常检查", "", "", "", "440303-010"), "invalid_field"),
        (("2026-11-27 08:00:00", "罚款", "行政处罚", "1.234", "", "", "440303-010"), "invalid_field"),
        (("2026-11-27 08:00:00", "罚款", "行政处罚", "1e3", "", "", "440303-010"), "invalid_field"),
        (("2026-11-27 08:00:00", "合格", "日常检查", "", "114.088", "", "440303-010"),
         "invalid_field"),
        (("2026-02-29 08:00:00", "合格", "日常检查", "", "", "", "440303-010"), "invalid_field"),
        (("", "合格", "日常检查", "", "", "", "440303-010"), "missing_field"),
        (("2026-11-27 08:00:00", "合格", "日常检查", "", "", "", "999999-999"), "unresolved_block"),
    ]
    out = io.StringIO(newline="")
    w = csv.writer(out, lineterminator="\n")
    w.writerow(cols)
    for i, (v, _) in enumerate(rows, 1):
        when, outcome, kind, fine, lon, lat, grid = v
        w.writerow([when, "任意", outcome, kind, "商行%d" % i, ok, "R-%d" % i, grid, fine, lon, lat])
    w.writerow(["2026-11-27 08:00:00", "x", "合格"])  # too few fields
    drop(hub.spool, "rules.csv", b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"))
    wait_for(hub.spool / "done" / "rules.csv", hub=hub)
    got = {r["record_id"]: r for r in records(kafka, hub, decoder)}
    assert sorted(got) == ["R-1", "R-2"]
    assert got["R-1"]["block_id"] == "440303-010" and got["R-1"]["fine"] is None
    assert got["R-2"]["fine"] == decimal.Decimal("0.10")
    assert got["R-2"]["block_id"] == "440303-001"
    assert got["R-2"]["location"] == {"lon": 114.088, "lat": 22.537}
    dead = {d["origin"]["position"] - 1: d["reason"] for d in dead_letters(kafka, hub, decoder)}
    want = {i: reason for i, (_, reason) in enumerate(rows, 1) if reason}
    want[len(rows) + 1] = "invalid_csv"
    assert dead == want
    assert hub.stop() == 0


def test_config_refused(hub_factory, kafka, tmp_path):
    """A start with a bad encoding or done_action fails, its own message naming key and why."""
    for key, value, why in (("encoding", "UTF-16",
                             "'UTF-16' is not ASCII-compatible (GB18030, GBK, UTF-8 are)"),
                            ("encoding", "NO-SUCH-CHARSET",
                             "iconv cannot convert 'NO-SUCH-CHARSET' to UTF-8"),
                            ("done_action", "archive", "'archive' is not move or delete")):
        hub = market_hub(hub_factory, kafka, tmp_path, **{key: value})
        drop(hub.spool, "waiting.csv", generated(1))
        rc, err = start_refused(hub)
        assert rc == 2, err
        assert re.search(r"^blockhub: config refused: %s:\d+:\d+: key 'adapters\[market\]\.%s': "
                         r"%s$" % (re.escape(hub.config), key, re.escape(why)), err, re.M), err
        # nothing was taken from the spool
        assert sorted(os.listdir(hub.spool)) == ["waiting.csv"]


def test_done_action_delete(kafka, hub_factory, tmp_path, decoder):
    hub = market_hub(hub_factory, kafka, tmp_path, done_action="delete").start()
    drop(hub.spool, "gone.csv", generated(5))
    wait_until(lambda: not os.path.exists(hub.spool / "gone.csv"), "gone.csv deleted", hub=hub)
    assert len(records(kafka, hub, decoder)) == 5  # deleted only once all were acknowledged
    assert os.listdir(hub.spool / "done") == []
    assert hub.stop() == 0


def test_file_that_cannot_be_moved_is_retried_without_duplicates(kafka, hub_factory, tmp_path,
                                                                  decoder):
    hub = market_hub(hub_factory, kafka, tmp_path, retry_backoff="200ms").start()
    os.rmdir(hub.spool / "done")
    (hub.spool / "done").write_bytes(b"in the way\n")  # rename into done/ fails: not a directory
    drop(hub.spool, "stuck.csv", generated(50))
    wait_log(hub, "stuck.csv: cannot move it out of the spool", count=3)
    os.unlink(hub.spool / "done")
    os.mkdir(hub.spool / "done")
    wait_for(hub.spool / "done" / "stuck.csv", hub=hub)
    seen = rows_seen(kafka, hub, decoder)
    assert set(seen) == set(range(1, 51)) and set(seen.values()) == {1}
    assert hub.stop() == 0


def test_failed_deliveries_rewind_until_the_broker_is_back(own_broker, hub_factory, tmp_path,
                                                           decoder):
    hub = market_hub(hub_factory, own_broker.bootstrap, tmp_path, retry_backoff="500ms",
                     max_in_flight=500,
                     extra_sets=["kafka.properties.message.timeout.ms=2000"]).start()
    drop(hub.spool, "a_before.csv", generated(100))
    wait_for(hub.spool / "done" / "a_before.csv", hub=hub)
    own_broker.stop()
    drop(hub.spool, "b_outage.csv", generated(3000))
    wait_log(hub, "b_outage.csv: delivery failed", count=2)  # failed, rewound, again
    assert not os.path.exists(hub.spool / "done" / "b_outage.csv")
    assert os.path.exists(hub.spool / "b_outage.csv")
    own_broker.start()
    wait_for(hub.spool / "done" / "b_outage.csv", timeout=180, hub=hub)
    seen = {}
    for m in bhcat.consume_all(own_broker.bootstrap, hub.market_topic, timeout=60):
        rec = decoder.decode(m["value"])[1]
        seen.setdefault(rec["source_file"], set()).add(rec["source_row"])
    assert seen == {"a_before.csv": set(range(1, 101)), "b_outage.csv": set(range(1, 3001))}
    assert hub.stop() == 0


def produce_times(bootstrap, topic, decoder, count, timeout=120):
    """(source_file, source_row, CreateTime) of COUNT records of TOPIC, read read_committed.

    blockhub sets no timestamp, so the producer stamps each record when blockhub hands it
    over: CreateTime is when the row went out."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ts-%s" % uuid.uuid4().hex,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "isolation.level": "read_committed"})
    out = []
    try:
        c.subscribe([topic])
        deadline = deadline_after(timeout)
        while len(out) < count:
            assert time.monotonic() < deadline, "%d of %d records of %s read in %ds" % (
                len(out), count, topic, timeout)
            m = c.poll(0.5)
            if m is None:
                continue
            assert not m.error(), m.error()
            kind, ts = m.timestamp()
            assert kind == TIMESTAMP_CREATE_TIME, kind
            rec = decoder.decode(m.value())[1]
            out.append((rec["source_file"], rec["source_row"], ts))
    finally:
        c.close()
    return out


def test_rows_out_never_exceed_max_in_flight(own_broker, hub_factory, tmp_path, decoder):
    """With Kafka acknowledging nothing, at most max_in_flight rows go out; measured by when
    each record was produced, not by what the daemon says of itself."""
    limit, n = 200, 5000
    hub = market_hub(hub_factory, own_broker.bootstrap, tmp_path, max_in_flight=limit,
                     extra_sets=["log.level=debug",
                                 "kafka.properties.message.timeout.ms=300000"]).start()
    drop(hub.spool, "a_warm.csv", generated(10))
    wait_for(hub.spool / "done" / "a_warm.csv", hub=hub)
    data = generated(n)
    with stalled(own_broker):
        read_before = proc_io(hub.proc.pid)["rchar"]
        drop(hub.spool, "b_held.csv", data)
        # the daemon stops reading (it says so), or it read the whole file: either way
        # every row it will send while nothing is acknowledged is out
        wait_until(lambda: "b_held.csv: %d rows out, reading paused" % limit in hub.logtext() or
                   proc_io(hub.proc.pid)["rchar"] - read_before >= len(data),
                   "b_held.csv: reading paused or the whole file read", hub=hub)
        # the bound holds over time, not only at the pause: a second of nothing acknowledged
        time.sleep(1)
        resumed_ms = int(time.time() * 1000)
    wait_for(hub.spool / "done" / "b_held.csv", timeout=180, hub=hub)
    assert hub.stop() == 0
    stamped = produce_times(own_broker.bootstrap, hub.market_topic, decoder, 10 + n)
    assert sorted(r for f, r, _ in stamped if f == "a_warm.csv") == list(range(1, 11))
    held = [(r, ts) for f, r, ts in stamped if f == "b_held.csv"]
    assert sorted(r for r, _ in held) == list(range(1, n + 1))  # all of it, each once
    early = sorted(r for r, ts in held if ts < resumed_ms)
    # rows 1..limit went out at once; not one more while nothing was acknowledged
    assert early == list(range(1, limit + 1)), \
        "%d rows out while Kafka acknowledged nothing (max_in_flight %d): rows %d..%d" % (
            len(early), limit, early[0] if early else 0, early[-1] if early else 0)
    # reading went on only below half of the limit, and paused again at it (its own account)
    log = hub.logtext().split("b_held.csv: %d rows out, reading paused" % limit, 1)[1]
    assert "rows out, reading on after row %d" % limit in log
    for line in log.splitlines():
        if "b_held.csv" in line and "rows out" in line:
            out = int(line.split("b_held.csv: ")[1].split()[0])
            assert out < limit // 2 if "reading on" in line else out == limit, line


def test_files_in_name_order_utf8_without_bom(kafka, hub_factory, tmp_path, decoder):
    hub = market_hub(hub_factory, kafka, tmp_path, encoding="UTF-8")
    names = ["scjg_20261127_1200.csv", "scjg_20261127_0800.csv", "scjg_20261127_1000.csv"]
    for i, name in enumerate(names):  # created out of name order, before the daemon starts
        drop(hub.spool, name, generated(20, prefix="SCJG-%d" % i).decode("gb18030").encode())
    hub.start()
    for name in names:
        wait_for(hub.spool / "done" / name, hub=hub)
    log = hub.logtext()
    assert [log.index("reading %s" % n) for n in sorted(names)] == \
        sorted(log.index("reading %s" % n) for n in names)
    assert len(records(kafka, hub, decoder)) == 60
    assert hub.stop() == 0


def test_fire_answers_while_a_big_file_flows(kafka, hub_factory, tmp_path):
    hub = market_hub(hub_factory, kafka, tmp_path, fire=True).start()
    name = "scjg_big.csv"
    drop(hub.spool, name, generated(200000))
    wait_log(hub, "reading %s" % name)
    slowest, answered = 0.0, 0
    while not os.path.exists(hub.spool / "done" / name):
        t0 = time.monotonic()
        r = hub.post({"id": "XF-B-%d" % answered, "category": "drill", "unit": "u",
                      "level": "low", "occurred_at": "2026-11-27T08:00:00+08:00",
                      "grid_code": "440303-001"})
        assert r.status_code == 200 and r.json()["accepted"] == 1
        slowest = max(slowest, time.monotonic() - t0)
        answered += 1
    assert answered >= 3, "the file went too fast to tell"
    assert slowest < 2.0, slowest  # Kafka's acknowledgement included
    assert hub.stop() == 0
