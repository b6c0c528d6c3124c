"""The feed simulator tools/blockhub-sim.

The first tests need no daemon: the simulator writes to sinks of the test's own
(a spool directory, a TCP server, an HTTP server that checks fire events the
way docs/feeds.md says and answers 200 with accepted counts), and what those sinks
received, parsed and checked here independently of the simulator's code, must
equal the ground truth it wrote. The last test runs it against a real blockhub
with all three adapters and compares the truth with what a consumer counts.
"""
import csv
import datetime
import http.server
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

import bhcat
from conftest import BLOCKHUB, SRC, TOKEN, WORLD, deadline_after, free_port

SIM = os.path.join(SRC, "tools", "blockhub-sim")
BLOCKS = os.path.join(WORLD, "blocks.geojson")

MARKET_REQUIRED = ["记录编号", "统一社会信用代码", "主体名称", "事项类型", "处理结果", "发生时间"]
MARKET_TYPES = {"日常检查", "专项检查", "行政处罚", "许可变更", "电动自行车销售登记", "摩托车销售登记",
                "投诉举报"}
MARKET_OUTCOMES = {"合格", "责令整改", "罚款", "吊销许可", "已登记", "已受理"}
TRAFFIC_TYPES = {"accident", "congestion", "ebike_violation", "motorcycle_violation",
                 "illegal_parking", "signal_fault", "red_light"}
FIRE_CATEGORIES = {"alarm", "hazard", "inspection", "rectified", "drill"}
FIRE_LEVELS = {"low", "medium", "high", "critical"}
MAX_LINE = 65536


# --- independent checks of the rules of docs/feeds.md ---

USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def uscc_ok(code):
    if len(code) != 18 or any(c not in USCC_CHARS for c in code):
        return False
    w = [pow(3, i, 31) for i in range(17)]  # 1, 3, 9, 27, 19, 26, ... (GB 32100-2015)
    c = (31 - sum(USCC_CHARS.index(ch) * wi for ch, wi in zip(code, w)) % 31) % 31
    return code[17] == USCC_CHARS[c]


def market_time_ok(text):
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M"):
        try:
            datetime.datetime.strptime(text, fmt)
            return True
        except ValueError:
            pass
    return False


def num(text):
    return float(text) if text else None


def check_market_row(row, blocks):
    """(block, None) for a valid row, else (None, expected dead-letter reason)."""
    if any(not row.get(c) for c in MARKET_REQUIRED):
        return None, "missing_field"
    if (not uscc_ok(row["统一社会信用代码"]) or row["事项类型"] not in MARKET_TYPES
            or row["处理结果"] not in MARKET_OUTCOMES or not market_time_ok(row["发生时间"])
            or not re.fullmatch(r"(\d+(\.\d{1,2})?)?", row.get("罚没金额", ""))):
        return None, "invalid_field"
    block = blocks.resolve(row.get("网格编码") or None, num(row.get("经度")), num(row.get("纬度")))
    return (block, None) if block else (None, "unresolved_block")


def check_traffic_line(raw, blocks):
    """('heartbeat', None) | (event, None) for a valid line | (None, reason)."""
    if len(raw) > MAX_LINE:
        return None, "too_large"
    try:
        ev = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None, "invalid_json"
    if not isinstance(ev, dict):
        return None, "invalid_json"
    if ev.get("type") == "heartbeat":
        return "heartbeat", None
    for k in ("event_id", "device", "type", "lon", "lat", "severity", "ts"):
        if ev.get(k) is None:
            return None, "missing_field"
    if (ev["type"] not in TRAFFIC_TYPES or not isinstance(ev["severity"], int)
            or not 1 <= ev["severity"] <= 5 or not isinstance(ev["ts"], int)):
        return None, "invalid_field"
    if "plate" in ev:
        assert re.fullmatch(r"粤B[0-9A-Z]{5,6}", ev["plate"]), ev["plate"]
    ev["_block"] = blocks.resolve(None, ev["lon"], ev["lat"])
    return (ev, None) if ev["_block"] else (None, "unresolved_block")


def check_fire_item(it, blocks):
    """(block, None) or (None, (code, reason))."""
    if not isinstance(it, dict):
        return None, ("invalid_json", "not an object")
    for k in ("id", "category", "unit", "level", "occurred_at"):
        if it.get(k) is None:
            return None, ("missing_field", "missing " + k)
    if it["category"] not in FIRE_CATEGORIES or it["level"] not in FIRE_LEVELS:
        return None, ("invalid_field", "category or level")
    t = datetime.datetime.fromisoformat(it["occurred_at"])
    if t.utcoffset() != datetime.timedelta(hours=8):
        return None, ("invalid_field", "occurred_at offset")
    loc = it.get("location")
    block = blocks.resolve(it.get("grid_code"), loc and loc["lng"], loc and loc["lat"])
    return (block, None) if block else (None, ("unresolved_block", "no block"))


# --- sinks of the test's own ---

class LineServer:
    """A TCP server that keeps every connection's bytes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.threads = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            buf = bytearray()
            with self.lock:
                self.conns.append(buf)
            t = threading.Thread(target=self._read, args=(c, buf), daemon=True)
            self.threads.append(t)
            t.start()

    @staticmethod
    def _read(c, buf):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                buf.extend(d)

    def close(self):
        self.sock.close()
        for t in list(self.threads):
            t.join(10)

    def streams(self):
        """One list of lines per connection; every line ended with a newline."""
        out = []
        for buf in self.conns:
            data = bytes(buf)
            assert data.endswith(b"\n"), "a stream ends in the middle of a line"
            out.append(data[:-1].split(b"\n"))
        return out


class FireServer(http.server.ThreadingHTTPServer):
    """Answers like the fire adapter: 401/415 for the whole request, else 200 with
    accepted and rejected; the first FAIL_FIRST requests get 503 + Retry-After: 0."""

    daemon_threads = True

    def __init__(self, blocks, fail_first=0):
        self.blocks = blocks
        self.fail_first = fail_first
        self.requests = []  # (status, body bytes)
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), FireHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/v1/fire/events" % self.server_address[1]


class FireHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _answer(self, status, obj, extra=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        srv = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/v1/fire/events":
            status, obj, extra = 404, {"error": "path"}, ()
        elif self.headers.get("Authorization") != "Bearer " + TOKEN:
            status, obj, extra = 401, {"error": "token"}, ()
        elif self.headers.get("Content-Type") != "application/json":
            status, obj, extra = 415, {"error": "type"}, ()
        else:
            with srv.lock:
                fail = srv.fail_first > 0
                srv.fail_first -= 1
            if fail:
                status, obj, extra = 503, {"error": "busy"}, [("Retry-After", "0")]
            else:
                items = json.loads(body)
                items = items if isinstance(items, list) else [items]
                rejected = []
                for i, it in enumerate(items):
                    _, why = check_fire_item(it, srv.blocks)
                    if why:
                        rejected.append({"index": i, "code": why[0], "reason": why[1]})
                status, extra = 200, ()
                obj = {"accepted": len(items) - len(rejected), "rejected": rejected}
        with srv.lock:
            srv.requests.append((status, body))
        self._answer(status, obj, extra)


def run_sim(*args, timeout=300):
    out = subprocess.run([sys.executable, SIM, "--blocks", BLOCKS, *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    return out


def local_run(tmp_path, blocks, name, seed, count=3000, rate=3000, bad="0.1", fail_first=1):
    """One simulator run into fresh local sinks; returns what they got and the truth."""
    spool = tmp_path / name / "spool"
    truth_path = tmp_path / name / "truth.json"
    lines = LineServer()
    fire = FireServer(blocks, fail_first=fail_first)
    try:
        out = run_sim("--seed", seed, "--rate", rate, "--count", count,
                      "--mix", "market=0.3,traffic=0.5,fire=0.2", "--bad", bad,
                      "--spool", spool, "--traffic", "127.0.0.1:%d" % lines.port,
                      "--fire", fire.url, "--fire-token", TOKEN, "--truth", truth_path,
                      "--connections", 3, "--heartbeat", 0.2, "--roll-rows", 150,
                      "--roll-seconds", 0.25, "--fire-batch", 20, "--fire-linger", 0.1)
        assert out.returncode == 0, out.stdout + out.stderr
        assert re.fullmatch(r"blockhub-sim: seed %d: sent %d events .* ev/s achieved .*\n" % (seed, count),
                            out.stdout), out.stdout
    finally:
        lines.close()
        fire.shutdown()
        fire.server_close()
    with open(truth_path, encoding="utf-8") as f:
        truth = json.load(f)
    files = {}
    for n in sorted(os.listdir(spool)):
        with open(os.path.join(spool, n), "rb") as f:
            files[n] = f.read()
    return {"files": files, "streams": lines.streams(), "requests": fire.requests, "truth": truth,
            "stdout": out.stdout}


def tally(counts, block, dept, etype):
    per = counts.setdefault(block, {}).setdefault(dept, {})
    per[etype] = per.get(etype, 0) + 1


def received(run, blocks):
    """What the sinks got, checked here: counts per block/department/type, bad
    records per department/reason, ids and their blocks, and features seen."""
    counts, bad, ids = {}, {"market": {}, "traffic": {}, "fire": {}}, {"market": {}, "traffic": {}, "fire": {}}
    seen = set()
    # market: GB18030 CSV, RFC 4180
    for name, data in run["files"].items():
        assert re.fullmatch(r"scjg_\d{8}_\d{6}_S\d+_\d{5}\.csv", name), name
        text = data.decode("gb18030")
        seen.add("crlf" if "\r\n" in text else "lf")
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        header = rows[0]
        assert set(MARKET_REQUIRED) <= set(header), header
        if header[:2] != ["记录编号", "统一社会信用代码"]:
            seen.add("reordered")
        for cells in rows[1:]:
            assert len(cells) == len(header)
            row = dict(zip(header, cells))
            for v in cells:
                seen.update(k for k, ch in (("comma", ","), ("quote", '"'), ("newline", "\n")) if ch in v)
            seen.add("slash_time" if "/" in row["发生时间"] else "dash_time")
            if "𠮷" in row["主体名称"]:
                seen.add("gb18030_4byte")
            block, why = check_market_row(row, blocks)
            rid = row["记录编号"]
            if why:
                bad["market"][why] = bad["market"].get(why, 0) + 1
            else:
                assert rid not in ids["market"]
                ids["market"][rid] = [block, row["事项类型"]]
                tally(counts, block, "market", row["事项类型"])
    # traffic: NDJSON lines on several connections
    heartbeats = 0
    for stream in run["streams"]:
        for raw in stream:
            ev, why = check_traffic_line(raw, blocks)
            if ev == "heartbeat":
                heartbeats += 1
            elif why:
                bad["traffic"][why] = bad["traffic"].get(why, 0) + 1
            else:
                assert ev["event_id"] not in ids["traffic"]
                ids["traffic"][ev["event_id"]] = [ev["_block"], ev["type"]]
                tally(counts, ev["_block"], "traffic", ev["type"])
                if "plate" in ev:
                    seen.add("plate")
    # fire: the bodies answered 200, distinct by id
    fire_seen = set()
    for status, body in run["requests"]:
        if status != 200:
            continue
        items = json.loads(body)
        seen.add("array" if isinstance(items, list) else "object")
        for it in items if isinstance(items, list) else [items]:
            if it["id"] in fire_seen:
                continue
            fire_seen.add(it["id"])
            block, why = check_fire_item(it, blocks)
            if why:
                bad["fire"][why[0]] = bad["fire"].get(why[0], 0) + 1
            else:
                ids["fire"][it["id"]] = [block, it["category"]]
                tally(counts, block, "fire", it["category"])
                seen.add("grid" if "grid_code" in it else "location")
    return counts, bad, ids, heartbeats, seen


def test_repeatable_and_truth_equals_what_sinks_received(tmp_path, blocks):
    a = local_run(tmp_path, blocks, "a", seed=11)
    b = local_run(tmp_path, blocks, "b", seed=11)

    # the same seed, the same bytes: files, lines per connection, request bodies
    assert a["files"] and list(a["files"]) == list(b["files"])
    assert a["files"] == b["files"]
    assert not any(n.endswith(".part") for n in a["files"])
    assert len(a["streams"]) == 3
    assert sorted(a["streams"]) == sorted(b["streams"])
    bodies_a = sorted(set(body for st, body in a["requests"] if st == 200))
    bodies_b = sorted(set(body for st, body in b["requests"] if st == 200))
    assert bodies_a == bodies_b
    ta, tb = dict(a["truth"]), dict(b["truth"])
    for t in (ta, tb):
        del t["stats"]
        del t["params"]["destinations"]
    assert ta == tb

    truth = a["truth"]
    counts, bad, ids, heartbeats, seen = received(a, blocks)
    # the truth is what the sinks got: per block/department/type, bad by reason, ids
    assert truth["blocks"] == counts
    assert {d: v for d, v in truth["bad"].items()} == {d: v for d, v in bad.items()}
    assert truth["events"] == ids
    assert truth["event_ids"] == {d: sorted(v) for d, v in ids.items()}
    assert truth["anomalies"] == {"fire_rejected_valid": [], "fire_accepted_bad": [],
                                  "fire_reason_mismatch": [], "fire_unconfirmed": [],
                                  "traffic_unsent": []}
    assert sum(t["sent"] for t in truth["totals"].values()) == 3000
    # every valid event resolves (blocks fixture) to the block the truth gives it
    for dept, evs in truth["events"].items():
        for rid, (block, _) in evs.items():
            assert ids[dept][rid][0] == block
    # bad records of every kind, at about the fraction asked
    kinds = {d: {r["kind"] for r in truth["bad_records"][d]} for d in truth["bad_records"]}
    assert kinds == {"market": {"uscc_check", "impossible_time", "unknown_type", "outside"},
                     "traffic": {"cut_off", "unknown_type", "outside", "too_long"},
                     "fire": {"bad_level", "missing_occurred_at", "outside"}}
    nbad = sum(t["bad"] for t in truth["totals"].values())
    assert 200 <= nbad <= 400
    # the first POST got 503 and was sent again, byte for byte; counted once
    refused = [body for st, body in a["requests"] if st == 503]
    assert len(refused) == 1
    assert refused[0] in [body for st, body in a["requests"] if st == 200]
    resent = truth["fire_resent_ids"]
    assert resent and set(resent) <= set(truth["event_ids"]["fire"]) | {
        r["id"] for r in truth["bad_records"]["fire"]}
    assert truth["stats"]["fire"]["status_503"] == 1
    # heartbeats, several files, and the other feed features of docs/feeds.md
    assert heartbeats == truth["stats"]["traffic"]["heartbeats"] > 0
    assert len(a["files"]) == truth["stats"]["market"]["files"] > 1
    assert {"crlf", "lf", "comma", "quote", "newline", "slash_time", "dash_time", "gb18030_4byte",
            "reordered", "plate", "array", "grid", "location"} <= seen, seen

    # another seed gives other records
    c = local_run(tmp_path, blocks, "c", seed=12, count=300, bad="0", fail_first=0)
    assert set(c["truth"]["event_ids"]["market"]).isdisjoint(a["truth"]["event_ids"]["market"])
    assert c["streams"] != a["streams"]
    counts_c, bad_c, _, _, _ = received(c, blocks)
    assert c["truth"]["blocks"] == counts_c
    assert bad_c == {"market": {}, "traffic": {}, "fire": {}}


def test_rate_and_partial_cli(tmp_path, blocks):
    """The token bucket holds the rate; a department left out is not simulated."""
    lines = LineServer()
    try:
        t0 = time.monotonic()
        out = run_sim("--seed", 3, "--rate", 400, "--duration", 1.5, "--traffic",
                      "127.0.0.1:%d" % lines.port, "--truth", tmp_path / "t.json")
        elapsed = time.monotonic() - t0
    finally:
        lines.close()
    assert out.returncode == 0, out.stdout + out.stderr
    truth = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert list(truth["totals"]) == ["traffic"]
    assert truth["totals"]["traffic"]["sent"] == 600
    # 600 events at 400/s with a bucket of 20: not faster than 1.45 s
    assert truth["stats"]["generate_seconds"] >= 1.4
    assert elapsed < 15
    assert 300 <= truth["stats"]["achieved_rate"] <= 420
    n = sum(1 for s in lines.streams() for raw in s if b'"heartbeat"' not in raw)
    assert n == 600
    bad = run_sim("--rate", 10, "--count", 1, "--mix", "market=1")
    assert bad.returncode == 2 and "no department to simulate" in bad.stderr


# --- against a real blockhub with the three adapters ---

def adapter_types():
    out = subprocess.run([BLOCKHUB, "--config-reference"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=30)
    assert out.returncode == 0, "blockhub --config-reference failed: %s" % out.stderr
    return set(re.findall(r"adapters \(type: (\w+)\)", out.stdout))


def high_watermarks(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sim-wm-%s" % uuid.uuid4().hex})
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return 0
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in md.partitions)
    finally:
        c.close()


TYPE_FIELDS = {"fire": ("category",),
               "market": ("event_type", "type", "matter_type", "item_type", "事项类型"),
               "traffic": ("type", "event_type")}


def published_type(dept, rec):
    for f in TYPE_FIELDS[dept]:
        if f in rec and rec[f] is not None:
            return rec[f]
    raise AssertionError("%s record has none of the type fields %s: %r" % (dept, TYPE_FIELDS[dept], rec))


def test_truth_equals_consumer_counts_after_60s_mixed_run(kafka, hub_factory, decoder, tmp_path):
    """Show item: the simulator's ground truth equals what a consumer counts in
    the department topics after a 60-second mixed run."""
    missing = {"market", "traffic"} - adapter_types()
    assert not missing, ("adapter type(s) %s not registered (blockhub --config-reference has no "
                         "'adapters (type: ...)' section for them)" % ", ".join(sorted(missing)))
    tag = uuid.uuid4().hex[:10]
    topics = {"market": "dept.market.sim-" + tag, "traffic": "dept.traffic.sim-" + tag}
    spool = tmp_path / "spool"
    spool.mkdir()
    tport = free_port()
    hub = hub_factory(kafka, adapters=[
        {"name": "market", "type": "market", "spool_dir": str(spool), "topic": topics["market"]},
        {"name": "traffic", "type": "traffic", "auth": "none", "listen": "127.0.0.1:%d" % tport,
         "topic": topics["traffic"]},
    ]).start()
    topics["fire"] = hub.fire_topic
    truth_path = tmp_path / "truth.json"
    out = run_sim("--seed", 2026, "--rate", 200, "--duration", 60,
                  "--mix", "market=0.3,traffic=0.5,fire=0.2", "--bad", "0.02",
                  "--spool", spool, "--traffic", "127.0.0.1:%d" % tport, "--connections", 2,
                  "--fire", hub.url, "--fire-token", TOKEN, "--truth", truth_path, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr + hub.logtext()[-5000:]
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    assert truth["totals"]["market"]["sent"] + truth["totals"]["traffic"]["sent"] + \
        truth["totals"]["fire"]["sent"] == 12000

    # wait until the hub has taken in every file and line (then compare exactly)
    want = {d: truth["totals"][d]["valid"] for d in topics}
    want_dlq = sum(truth["totals"][d]["bad"] for d in topics)
    deadline = deadline_after(180)
    while time.monotonic() < deadline:
        pending = [n for n in os.listdir(spool) if n.endswith((".csv", ".part"))]
        if (not pending and all(high_watermarks(kafka, topics[d]) >= want[d] for d in topics)
                and high_watermarks(kafka, hub.dlq_topic) >= want_dlq):
            break
        time.sleep(0.5)

    counts, ids, dup = {}, {d: set() for d in topics}, {d: 0 for d in topics}
    type_map = {d: {} for d in topics}
    for dept, topic in topics.items():
        for m in bhcat.consume_all(kafka, topic):
            _, rec = decoder.decode(m["value"])
            rid = m["headers"]["blockhub.event_id"].decode()
            if rid in ids[dept]:
                dup[dept] += 1
                continue
            ids[dept].add(rid)
            assert rid in truth["events"][dept], (dept, rid)
            block, etype = truth["events"][dept][rid]
            assert m["key"].decode() == block, (dept, rid)
            # the department's type as published (an Avro enum cannot hold 日常检查:
            # each published value must stand for exactly one of the department's)
            type_map[dept].setdefault(published_type(dept, rec), set()).add(etype)
            tally(counts, m["key"].decode(), dept, etype)
    for dept, mapping in type_map.items():
        assert all(len(v) == 1 for v in mapping.values()), (dept, mapping)
    assert {d: sorted(v) for d, v in ids.items()} == truth["event_ids"]
    assert counts == truth["blocks"]
    assert dup["market"] == 0 and dup["traffic"] == 0
    assert truth["anomalies"] == {"fire_rejected_valid": [], "fire_accepted_bad": [],
                                  "fire_reason_mismatch": [], "fire_unconfirmed": [],
                                  "traffic_unsent": []}

    # every bad record is one dead letter with the reason docs/feeds.md gives
    dead = {}
    for m in bhcat.consume_all(kafka, hub.dlq_topic):
        _, rec = decoder.decode(m["value"])
        dead.setdefault(rec["adapter_type"], {}).setdefault(rec["reason"], set()).add(rec["payload"])
    assert {d: {r: len(p) for r, p in v.items()} for d, v in dead.items()} == \
        {d: v for d, v in truth["bad"].items() if v}
    assert len(os.listdir(spool / "done")) == truth["stats"]["market"]["files"]
    assert hub.stop() == 0
