#!/usr/bin/env python3
"""Writes blockhub's hand-made fuzz seeds into tests/fuzz/corpus/TARGET/.

The seeds are the department samples of tests/data/world/ and the malformed
cases of issue 7, one file each, named seed-WHAT. Running it again rewrites
the same files (crash-* reproducers and grown inputs are left alone).

    tests/fuzz/make-seeds.py            # every target but fuzz_join_avro
    tests/fuzz/make-seeds.py --join BUILD_DIR
        # fuzz_join_avro's seeds: the records the fire, traffic and market
        # targets of BUILD_DIR encode from their seeds (BH_FUZZ_EMIT_DIR)
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORLD = os.path.join(ROOT, "tests", "data", "world")
CORPUS = os.path.join(HERE, "corpus")

CJK22 = "消防安全重点单位" * 3  # 24 CJK characters, 72 bytes of UTF-8


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def read(*parts):
    with open(os.path.join(WORLD, *parts), "rb") as f:
        return f.read()


def dumps(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


# --- fire ---------------------------------------------------------------------

def fire():
    t = "fuzz_fire_body"
    batch = read("samples", "fire", "webhook-batch.json")
    write(t, "sample-batch", batch)
    items = json.loads(batch)
    for i, it in enumerate(items):
        write(t, "sample-item-%d" % i, dumps(it))
    good = dict(items[0])
    write(t, "u-escape-cjk", '{"unit":"\\u中文"}')
    write(t, "u-escape-cjk-item", '[' + dumps(good)[:-1] + ',"unit":"\\u中文"}]')
    write(t, "empty-array", "[]")
    write(t, "empty-array-space", "[ ]")
    write(t, "empty-array-newlines", "[\r\n\t ]")
    write(t, "empty", "")
    write(t, "spaces", "   \n")
    write(t, "scalar-number", "42")
    write(t, "scalar-string", '"alarm"')
    write(t, "null", "null")
    write(t, "nested-array", "[[]," + dumps(good) + ",[1,2],{}]")
    for field in ("category", "level", "occurred_at", "grid_code", "id", "unit", "description"):
        ev = dict(good)
        ev[field] = CJK22
        write(t, "cjk22-" + field, dumps(ev))
        write(t, "cjk22-%s-in-batch" % field, "[" + dumps(good) + "," + dumps(ev) + "]")
    for field in ("id", "unit", "description", "grid_code"):
        ev = dict(good)
        ev[field] = "a\u0000b"
        write(t, "nul-" + field, json.dumps(ev))
    write(t, "nul-key", "[" + dumps(good) + ',{"\\u0000":1,' + dumps(good)[1:] + "]")
    write(t, "duplicate-key", '{"id":"a","id":"b"' + dumps(good)[1:])
    write(t, "duplicate-key-in-batch", "[" + dumps(good) + ',{"level":"low",' + dumps(good)[1:] + "]")
    big = dict(good)
    big["description"] = "火" * 333000  # about 1 MB of UTF-8
    write(t, "one-megabyte-event", dumps(big))
    write(t, "big-and-small", "[" + dumps(good) + "," + dumps(dict(big, description="x" * 900000)) + "]")
    write(t, "invalid-utf8", b'{"id":"\xff\xfe","unit":"\xc3(","category":"alarm"}')
    write(t, "invalid-utf8-in-batch", b"[" + dumps(good).encode() + b',{"unit":"\xed\xa0\x80"}]')
    write(t, "overlong-utf8", b'{"unit":"\xc0\xaf\xe0\x80\xaf"}')
    write(t, "lone-surrogate", '{"unit":"\\ud800","id":"\\udfff"}')
    write(t, "surrogate-pair", dumps(dict(good, unit="\U0001F692")))
    write(t, "too-many-items", "[" + ",".join(["1"] * 101) + "]")
    write(t, "exactly-max-items", "[" + ",".join([dumps(good)] * 100) + "]")
    write(t, "location-huge", dumps(dict(good, grid_code=None)).replace(
        '"grid_code":null', '"location":{"lng":1e400,"lat":-1e400}'))
    write(t, "location-only", dumps({k: v for k, v in items[1].items()}))
    write(t, "location-not-object", dumps(dict(good, location=[114.1, 22.5])))
    write(t, "location-strings", dumps(dict(good, location={"lng": "114", "lat": "22"})))
    write(t, "location-edge", dumps(dict(good, grid_code=None, location={"lng": 180, "lat": -90})))
    for n, ts in enumerate(("2026-11-27T08:15:00.123456789+08:00", "2026-11-27t00:15:00z",
                            "2026-11-27 00:15:00Z", "2026-12-31T23:59:60Z", "2026-02-30T00:00:00Z",
                            "2026-11-27T08:15:00+24:00", "9999-12-31T23:59:59.999-23:59",
                            "0000-01-01T00:00:00+00:00", "2026-11-27T08:15:00")):
        write(t, "time-%d" % n, dumps(dict(good, occurred_at=ts)))
    write(t, "types-wrong", dumps(dict(good, id=5, unit=True, level=["high"])))
    write(t, "trailing-garbage", dumps(good) + " x")
    write(t, "deep-nesting", "[" * 600 + "]" * 600)
    write(t, "unterminated", '[{"id":"a"')
    write(t, "string-escapes", '[{"id":"\\"]\\\\[","unit":"]],[{","category":"alarm"},{"a":"\\u005d"}]')


# --- traffic ------------------------------------------------------------------

def traffic():
    t = "fuzz_traffic_line"
    stream = read("samples", "traffic", "gateway.ndjson")
    write(t, "sample-stream", stream)
    lines = stream.decode("utf-8").splitlines()
    for i, line in enumerate(lines[:8]):
        write(t, "sample-line-%d" % i, line)
    good = json.loads(lines[0])
    write(t, "crlf", "\r\n".join(lines[:4]) + "\r\n")
    write(t, "heartbeat", '{"type":"heartbeat","ts":1795737637000}')
    write(t, "heartbeat-twice", '{"type":"heartbeat","type":"heartbeat"}')
    # the hello (docs/feeds.md 4.4) and its refusals
    write(t, "hello", '{"hello":1,"gateway":"jj-gw-03","token":"t0k","ack":true}\n' + lines[0])
    write(t, "hello-bad", '{"hello":2}\n{"hello":1,"ack":1}\n{"hello":1,"token":7}\n'
                          '{"hello":1,"gateway":"a\\u0001"}\n{"hello":1,"ack":true,"ack":false}\n'
                          '{"ack":"x","hello":1}\n{"hello":1,"gateway":"中文网关","x":[1,{"y":null}]}')
    write(t, "u-escape-cjk", '{"event_id":"\\u中文"}')
    for field in ("event_id", "device", "type", "plate", "road"):
        write(t, "cjk22-" + field, dumps(dict(good, **{field: CJK22})))
        write(t, "nul-" + field, json.dumps(dict(good, **{field: "a\u0000b"})))
        write(t, "escaped-" + field, json.dumps(dict(good, **{field: "粤\"B\\12/345"}), ensure_ascii=True))
    write(t, "nul-unknown-key", json.dumps(dict(good, **{"x\u0000": 1})))
    write(t, "nul-nested", dumps(dict(good, extra={"a": ["b\u0000"]})).replace("\u0000", "\\u0000"))
    write(t, "duplicate-key", '{"event_id":"a",' + dumps(good)[1:])
    write(t, "duplicate-unknown-key", '{"x":1,"x":2,' + dumps(good)[1:])
    write(t, "invalid-utf8", b'{"event_id":"\xff","device":"\xc0\xaf"}\n' + lines[1].encode())
    write(t, "surrogate-utf8", b'{"event_id":"\xed\xa0\x80"}')
    write(t, "lone-surrogate-escape", '{"event_id":"\\ud83d","device":"\\udc00x"}')
    write(t, "surrogate-pair-escape", json.dumps(dict(good, plate="\U0001F697"), ensure_ascii=True))
    for n, v in enumerate(("4.0", "4e0", "40e-1", "-0", "1e400", "5.0000000000000001", "0.5",
                           "9007199254740993", "-1", "6", "1E1")):
        write(t, "severity-%d" % n, dumps(good).replace('"severity":4', '"severity":' + v))
    for n, v in enumerate(("253402300799999", "253402300800000", "0", "-1", "1.5", "1e15",
                           "17957376370000000000000")):
        write(t, "ts-%d" % n, dumps(good).replace('"ts":1795737637000', '"ts":' + v))
    for n, v in enumerate(("180", "-180.0", "180.0000000000001", "1e308", "-0.0", "1E-400")):
        write(t, "lon-%d" % n, dumps(good).replace('"lon":114.130019', '"lon":' + v))
    write(t, "not-object", "[1,2,3]\n42\n\"x\"\nnull\n")
    write(t, "two-objects", dumps(good) + dumps(good))
    write(t, "trailing-comma", dumps(good)[:-1] + ",}")
    write(t, "blank-lines", "\n \t\n\r\n" + dumps(good) + "\n\n")
    write(t, "no-final-newline", "\n".join(lines[:3]))
    write(t, "long-line", dumps(dict(good, road="路" * 30000)))
    write(t, "deep-nesting", '{"x":' + "[" * 2000 + "]" * 2000 + "}")
    write(t, "null-fields", dumps(dict(good, plate=None, road=None)))
    write(t, "types-wrong", dumps(dict(good, event_id=1, lon="114", severity=True)))


# --- market -------------------------------------------------------------------

HEADER = "记录编号,统一社会信用代码,主体名称,事项类型,处理结果,罚没金额,经营地址,网格编码,经度,纬度,发生时间"
ROW = "SCJG-2026-000001,9144030378YRPLDPGR,深圳市罗湖区样例商行01有限公司,许可变更,已登记,,罗湖区建设路62号,440303-063,,,2026-11-27 09:03:07"


def market():
    t = "fuzz_market_csv"
    # Control bytes: encoding | max_row << 2 | small output << 4, then three read sizes - 1.
    gb, utf8, gbk = 0, 2, 3
    sample = read("samples", "market", "scjg_20261127_0800.csv")
    text = sample.decode("gb18030")

    def ctl(enc=gb, rows=2, small=0, reads=(63, 255, 6)):
        return bytes([enc | rows << 2 | small << 4]) + bytes(reads)

    write(t, "sample", ctl() + sample)
    write(t, "sample-bytewise", ctl(reads=(0, 0, 0)) + sample)
    write(t, "sample-small-output", ctl(small=1, reads=(2, 5, 16)) + sample)
    write(t, "sample-utf8", ctl(utf8) + text.encode("utf-8"))
    write(t, "sample-utf8-bom", ctl(utf8, reads=(1, 3, 200)) + b"\xef\xbb\xbf" + text.encode("utf-8"))
    write(t, "sample-gb18030-bom", ctl(gb, reads=(2, 3, 4)) + "\ufeff".encode("gb18030") + sample)
    write(t, "sample-gbk", ctl(gbk) + text.encode("gbk"))
    write(t, "sample-crlf", ctl() + text.replace("\n", "\r\n").encode("gb18030"))
    write(t, "sample-max-row-256", ctl(rows=0) + sample)
    hdr = HEADER.encode("gb18030")
    row = ROW.encode("gb18030")

    def file(*rows, enc=gb, **kw):
        return ctl(enc, **kw) + b"\n".join([hdr] + [r if isinstance(r, bytes) else r.encode("gb18030") for r in rows]) + b"\n"

    write(t, "four-byte-gb18030", file(ROW.replace("样例商行", "\U0001F600𠀀"), reads=(0, 1, 2)))
    write(t, "invalid-gb18030", file(b"SCJG-1,\x81\x30,x\xff\x80,\x81", row))
    write(t, "cut-at-end", ctl() + hdr + b"\n" + row + b"\x81\x30\x81")
    write(t, "invalid-utf8", file(b"SCJG-1,\xed\xa0\x80\xc0\xaf,\xff", ROW, enc=utf8))
    write(t, "cjk22-type", file(ROW.replace("许可变更", "许" * 24)))
    write(t, "cjk22-outcome", file(ROW.replace("已登记", "登" * 24)))
    write(t, "cjk22-grid", file(ROW.replace("440303-063", "网" * 24)))
    write(t, "cjk22-time", file(ROW.replace("2026-11-27 09:03:07", "时" * 24)))
    write(t, "cjk22-coords", file(ROW.replace(",,,2026", ",%s,%s,2026" % ("经" * 22, "纬" * 22))))
    write(t, "nul-bytes", file(b"SCJG-1\x00,9144030378YRPLDPGR,\x00" + row[30:]))
    write(t, "quotes", file('"SCJG-1","9144030378YRPLDPGR","a""b,c","许可变更","已登记",,"x\ny",,,,"2026-11-27 09:03:07"'))
    write(t, "bad-quote", file('SCJG-1,91440303"78YRPLDPGR,x,许可变更,已登记,,,,,,2026-11-27 09:03:07', '"a"b,' + ROW))
    write(t, "unclosed-quote", file('"SCJG-1,' + ROW))
    write(t, "cr-alone", file(ROW.replace("深圳", "深\r圳")))
    write(t, "blank-lines", file("", "\r", ROW, ""))
    write(t, "fields-count", file(ROW + ",extra", ",".join(ROW.split(",")[:5])))
    write(t, "header-duplicate", ctl() + (HEADER + ",记录编号\n" + ROW + "\n").encode("gb18030"))
    write(t, "header-missing", ctl() + ("记录编号,主体名称\nx,y\n").encode("gb18030"))
    write(t, "header-lon-alone", ctl() + (HEADER.replace(",纬度", ",x") + "\n" + ROW + "\n").encode("gb18030"))
    write(t, "header-spaces", ctl() + (" 记录编号\t," + HEADER.split(",", 1)[1] + "\n" + ROW + "\n").encode("gb18030"))
    write(t, "header-empty", ctl() + b"\n" + row + b"\n")
    write(t, "header-only", ctl() + hdr)
    write(t, "reordered", ctl() + (",".join(reversed(HEADER.split(","))) + "\n" + ",".join(reversed(ROW.split(","))) + "\n").encode("gb18030"))
    for n, v in enumerate(("0", "0.5", "12.50", "999999999999.99", "1000000000000", "1.234", "-1", ".5", "1.", "1e3")):
        write(t, "fine-%d" % n, file(ROW.replace("已登记,,", "已登记," + v + ",")))
    for n, (lon, lat) in enumerate((("114.139745", "22.593832"), ("-180", "90"), ("180.0000000000000001", "0"),
                                    ("1e2", "2"), ("114.1397450000000000000001", "22.5"), ("+1", "2"),
                                    ("114", ""), ("0.000000000000000000000000001", "-0"))):
        write(t, "coords-%d" % n, file(ROW.replace("440303-063,,,", ",%s,%s," % (lon, lat))))
    for n, v in enumerate(("2026/11/27 09:30", "2026-02-29 00:00:00", "2028-02-29 23:59:59", "2026-11-27 24:00:00",
                           "0000-01-01 00:00:00", "9999-12-31 23:59:59", "2026-1-27 09:03:07")):
        write(t, "time-%d" % n, file(ROW.replace("2026-11-27 09:03:07", v)))
    for n, v in enumerate(("91350100M000100Y43", "9144030378YRPLDPGI", "9144030378YRPLDPG", "9144030378yrpldpgr")):
        write(t, "uscc-%d" % n, file(ROW.replace("9144030378YRPLDPGR", v)))
    write(t, "long-row", file(ROW.replace("罗湖区建设路62号", "路" * 3000), rows=1))
    write(t, "long-quoted-never-closed", ctl(rows=0) + hdr + b'\n"' + b"x" * 2000)
    write(t, "empty-file", ctl())


def market_decode():
    t = "fuzz_market_decode"
    # Control bytes: encoding | small output << 2 | longest chunk << 3, then a 4-byte seed.
    gb, gbk, cp936 = 0, 1, 2
    sample = read("samples", "market", "scjg_20261127_0800.csv")
    text = sample.decode("gb18030")

    def ctl(enc=gb, small=0, chunk=6, seed=b"\x01\x02\x03\x04"):
        return bytes([enc | small << 2 | chunk << 3]) + seed

    write(t, "sample", ctl() + sample)
    write(t, "sample-bytewise", ctl(chunk=0) + sample)
    write(t, "sample-small-output", ctl(small=1, chunk=3) + sample)
    write(t, "sample-whole", ctl(chunk=7) + sample)
    write(t, "sample-gbk", ctl(gbk, chunk=4) + text.encode("gbk"))
    write(t, "sample-cp936", ctl(cp936, chunk=2, small=1) + text.encode("gbk"))
    every = bytes(b for lead in range(0x81, 0xFF) for trail in range(0x40, 0xFF) for b in (lead, trail, 0x2C))
    write(t, "every-two-byte", ctl(chunk=5) + every)
    mix = (b"a\xd6\xd0\x94\x39\xfc\x36\xff\x80\x81\x30\x81\x7f\x81\x20\x84\x31\xa5\x30"
           b"\xfe\x39\xfe\x39\xa1\xa4,\x81\x30\x81")
    write(t, "mix", ctl(chunk=1) + mix * 8)
    write(t, "mix-small-output", ctl(small=1, chunk=2) + mix * 8)
    write(t, "cut-at-end", ctl(chunk=4) + sample[:200] + b"\x81\x30\x81")
    write(t, "empty", ctl())


# --- config -------------------------------------------------------------------

def config():
    t = "fuzz_config"
    with open(os.path.join(ROOT, "deploy", "examples", "blockhub.yaml"), "rb") as f:
        example = f.read()
    write(t, "example", example)
    write(t, "example-join", example.replace(b"#join:", b"join:").replace(b"#  ", b"  ")
          .replace(b"#admin:", b"admin:"))
    write(t, "minimal", "blocks:\n  map: blocks.geojson\n")
    write(t, "sets", "#set kafka.partitions=12\n#set adapters.fire.listen=:8080\n"
          "#set adapters.0.tokens=[a,b]\nblocks: {map: m}\nadapters:\n"
          "  - {name: fire, type: fire, tokens: [t]}\n")
    write(t, "all-types", "blocks: {map: m}\nkafka:\n  brokers: a:1,b:2\n  properties: {linger.ms: '5',"
          " acks: all}\n  partitions: 6\n  create_timeout: 1m\ndead_letter: {topic: d, max_payload: 1MiB}\n"
          "adapters:\n  - name: fire\n    type: fire\n    tokens: [t]\n    body_limit: 512KiB\n"
          "    max_items: 10\n    ack_timeout: 250ms\n  - name: m\n    type: market\n"
          "    spool_dir: /tmp/x\n    encoding: GBK\n    done_action: delete\n"
          "  - {name: t, type: traffic, auth: none, listen: '[::1]:9400', max_line: 64KiB, idle_timeout: 0}\n"
          "join:\n  enabled: yes\n  window: 1h\n  dedup_retention: 400d\n  inputs:\n"
          "    - {name: fire, type: avro, topic: dept.fire, type_field: category}\n")
    write(t, "errors", "blocks: {map: m}\nkafka: {partitions: 0, brokers: ''}\nadapters:\n"
          "  - {name: fire, type: fire, tokens: [], listen: '70000'}\n  - {name: fire, type: nope}\n")
    write(t, "cjk", "blocks: {map: 块数据.geojson}\nadapters:\n  - {name: 消防, type: fire, tokens: [令牌]}\n"
          "log: {level: 中文}\n")
    write(t, "invalid-utf8", b"blocks: {map: \xff\xfe}\nlog: {level: \xc3(}\n\xe4\xb8: 1\n")
    write(t, "anchors", "a: &x {map: m}\nblocks: *x\nadapters: [&y {name: f, type: fire, tokens: [t]}, *y]\n")
    write(t, "tags-and-flow", "!!map {blocks: !!map {map: !!str m}, kafka: {partitions: !!int '7'}}\n")
    write(t, "documents", "blocks: {map: m}\n---\nblocks: {map: n}\n...\n")
    write(t, "deep", "blocks: " + "[" * 300 + "]" * 300 + "\n")
    write(t, "sizes", "blocks: {map: m}\ndead_letter: {max_payload: 99999999999999999999GiB}\n"
          "kafka: {flush_timeout: -5s, create_timeout: 1.5h}\n")
    write(t, "empty", "")
    write(t, "nul", b"blocks:\n  map: a\x00b\n")


# --- geojson ------------------------------------------------------------------

def geojson():
    t = "fuzz_geojson"
    full = read("blocks.geojson")
    write(t, "world", full)
    doc = json.loads(full)
    feats = doc["features"]
    small = dict(doc, features=feats[:3])
    write(t, "three-blocks", json.dumps(small))
    multi = [f for f in feats if f["geometry"]["type"] == "MultiPolygon"]
    write(t, "multipolygon", json.dumps(dict(doc, features=multi + feats[:1])))

    def fc(*features):
        return json.dumps({"type": "FeatureCollection", "features": list(features)}, ensure_ascii=False)

    def feat(bid, rings, name="块", kind="Polygon"):
        return {"type": "Feature", "properties": {"block_id": bid, "name": name},
                "geometry": {"type": kind, "coordinates": rings}}

    sq = [[[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]]
    sq2 = [[[2, 0], [4, 0], [4, 2], [2, 2], [2, 0]]]
    write(t, "shared-edge", fc(feat("b", sq2), feat("a", sq)))
    write(t, "hole", fc(feat("h", [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], [[1, 1], [3, 1], [3, 3], [1, 3], [1, 1]]])))
    write(t, "self-intersecting", fc(feat("x", [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]])))
    write(t, "not-closed", fc(feat("o", [[[0, 0], [1, 0], [1, 1]]])))
    write(t, "duplicate-id", fc(feat("a", sq), feat("a", sq2)))
    write(t, "cjk-names", fc(feat("440303-001", sq, name=CJK22), feat("块", sq2, name="")))
    write(t, "escapes", fc(feat("a\\u0000b", sq, name="\\ud800"), feat("\\u00e9", sq2)).replace("\\\\u", "\\u"))
    write(t, "invalid-utf8", fc(feat("a", sq, name="ÿ")).encode("utf-8").replace(b"\xc3\xbf", b"\xff\xc0\xaf"))
    write(t, "numbers", fc(feat("n", [[[1e-320, -0.0], [1.7976931348623157e308, 0], [1, 1e-5], [1e-320, -0.0]]])))
    write(t, "numbers-text", '{"type":"FeatureCollection","features":[{"type":"Feature","properties":'
          '{"block_id":"n","name":"n"},"geometry":{"type":"Polygon","coordinates":[[[0E0,0],[1e+0,0.0e-0],'
          '[1,1.5E1],[-0,-0.0],[0,0]]]}}]}')
    write(t, "nan-inf", fc(feat("n", sq)).replace("2, 2", "1e999, -1e999"))
    write(t, "tiny-and-huge", fc(feat("t", [[[0, 0], [1e-12, 0], [1e-12, 1e-12], [0, 0]]]),
                                 feat("u", [[[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]])))
    write(t, "collinear", fc(feat("c", [[[0, 0], [1, 0], [2, 0], [0, 0]]])))
    write(t, "extra-members", '{"bbox":[0,0,1,1],"type":"FeatureCollection","crs":{"a":[true,false,null]},'
          '"features":[{"id":7,"type":"Feature","properties":{"block_id":"a","name":"a","x":{}},'
          '"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}]}')
    write(t, "wrong-types", fc(feat(7, sq), feat("p", [[0, 0]], kind="Point"), {"type": "Feature"}))
    write(t, "empty-collection", '{"type":"FeatureCollection","features":[]}')
    write(t, "not-collection", "[]")
    write(t, "deep", "[" * 5000 + "]" * 5000)
    write(t, "truncated", full[:5000])


# --- join ---------------------------------------------------------------------

def join(build):
    t = "fuzz_join_avro"
    out = os.path.join(CORPUS, t)
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, BH_FUZZ_EMIT_DIR=tmp, BH_SOURCE_DIR=ROOT)
        for target in ("fuzz_fire_body", "fuzz_traffic_line", "fuzz_market_csv"):
            exe = os.path.join(build, "tests", "fuzz", target)
            seeds = sorted(os.path.join(CORPUS, target, f) for f in os.listdir(os.path.join(CORPUS, target))
                           if f.startswith("seed-sample"))
            subprocess.run([exe] + seeds, env=env, check=True, stderr=subprocess.DEVNULL)
        records = sorted(os.path.join(tmp, name) for name in os.listdir(tmp))
        # and the changelog records the join writes for them
        with tempfile.TemporaryDirectory() as states:
            env["BH_FUZZ_EMIT_DIR"] = states
            subprocess.run([os.path.join(build, "tests", "fuzz", t)] + records, env=env, check=True,
                           stderr=subprocess.DEVNULL)
            for path in records + sorted(os.path.join(states, n) for n in os.listdir(states)):
                with open(path, "rb") as f:
                    data = f.read()
                kind = "state-" if path.startswith(states) else ""
                with open(os.path.join(out, "seed-" + kind + os.path.basename(path)), "wb") as f:
                    f.write(data)
    headers = sorted({open(os.path.join(out, n), "rb").read()[:10] for n in os.listdir(out)
                      if n.startswith("seed-rec-") or n.startswith("seed-state-")})
    write_dict(t, headers + [b"\xc3\x01", b"\x00", b"\x01", b"\x02", b"\x7f", b"\x80\x01",
                             b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                             b"\x81\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", "440303-017", "fire",
                             "traffic", "market", b"\x1f"] + BAD_UTF8)
    write(t, "empty", b"")
    write(t, "header-only", b"\xc3\x01" + bytes(8))
    write(t, "not-avro", b'{"event_id":"x"}')


# --- dictionaries -------------------------------------------------------------

def dict_entry(value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    out = []
    for b in value:
        c = chr(b)
        out.append(c if 0x20 <= b < 0x7F and c not in '"\\' else "\\x%02X" % b)
    return '"' + "".join(out) + '"'


def write_dict(target, entries):
    d = os.path.join(HERE, "dict")
    os.makedirs(d, exist_ok=True)
    seen = []
    for e in entries:
        e = e.encode("utf-8") if isinstance(e, str) else e
        if e and e not in seen:
            seen.append(e)
    with open(os.path.join(d, target + ".dict"), "w") as f:
        f.write("# libFuzzer dictionary of %s, written by make-seeds.py\n" % target)
        for e in seen:
            f.write(dict_entry(e) + "\n")


JSON = ["{", "}", "[", "]", ":", ",", '"', '":"', '","', "\\u", "\\u0000", "\\ud800", "\\udc00",
        "\\ud83d\\ude92", '\\"', "\\\\", "\\/", "\\b\\f\\n\\r\\t", "true", "false", "null",
        "1e400", "-0", "0.1", "1E-400", "9007199254740993", "  ", "\r\n", b"\xff", b"\xc0\xaf",
        b"\xed\xa0\x80", b"\xf4\x90\x80\x80", "中文", "粤B", CJK22]
BAD_UTF8 = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]


def dicts():
    fire = ['"id"', '"category"', '"unit"', '"building_id"', '"grid_code"', '"location"', '"lng"',
            '"lat"', '"level"', '"description"', '"occurred_at"', '"alarm"', '"hazard"',
            '"inspection"', '"rectified"', '"drill"', '"low"', '"medium"', '"high"', '"critical"',
            "2026-11-27T08:15:00+08:00", "T", "Z", "z", "+08:00", "-00:00", ".123", ":60",
            '"440303-017"', '"440303-121"', "114.139745", "22.593832"]
    write_dict("fuzz_fire_body", JSON + fire)
    traffic = ['"event_id"', '"device"', '"type"', '"lon"', '"lat"', '"severity"', '"ts"', '"plate"',
               '"road"', '"heartbeat"', '"accident"', '"congestion"', '"ebike_violation"',
               '"motorcycle_violation"', '"illegal_parking"', '"signal_fault"', '"red_light"',
               "4e0", "4.0", "253402300799999", "1795737637000", "114.130019", "22.546712", "\n", "\r\n"]
    write_dict("fuzz_traffic_line", JSON + traffic)
    words = HEADER.split(",") + ["日常检查", "专项检查", "行政处罚", "许可变更", "电动自行车销售登记",
                                 "摩托车销售登记", "投诉举报", "合格", "责令整改", "罚款", "吊销许可",
                                 "已登记", "已受理", "深圳市", "罗湖区"]
    market = [w.encode("gb18030") for w in words] + [w.encode("utf-8") for w in words]
    market += [",", '"', '""', '",', ',"', "\r\n", "\n", "\r", "2026-11-27 09:03:07", "2026/11/27 09:30",
               "91350100M000100Y43", "9144030378YRPLDPGR", "440303-017", "114.139745", "22.593832",
               "14947.73", "999999999999.99", b"\xef\xbb\xbf", b"\x84\x31\x95\x33", b"\x81\x30\x81\x30",
               b"\x94\x39\xfc\x36", b"\xfe\x39\xfe\x39", b"\x80", b"\xff", b"\x81"] + BAD_UTF8
    write_dict("fuzz_market_csv", market)
    write_dict("fuzz_market_decode", [w.encode("gb18030") for w in words] + [
        b"\x84\x31\x95\x33", b"\x81\x30\x81\x30", b"\x94\x39\xfc\x36", b"\xfe\x39\xfe\x39",
        b"\x84\x31\xa4\x39", b"\x84\x31\xa5\x30", b"\x81\x40", b"\x81\x7e", b"\x81\x7f",
        b"\x81\x80", b"\xfe\xfe", b"\xfe\xff", b"\xa1\xa4", b"\x80", b"\xff", b"\x81"])
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    keys = set()
    for line in readme.splitlines():
        if line.startswith("| `") and "`" in line[3:]:
            path = line[3:line.index("`", 3)]
            keys.update(p for p in path.replace("[]", "").split(".") if p)
    config = sorted(keys) + ["embedded", "fire", "market", "traffic", "avro", "1MiB", "64KiB", "5s",
                             "250ms", "7d", "24h", "-1", "70000", "127.0.0.1:8080", "[::1]:9400", ":0",
                             "GB18030", "UTF-8", "move", "delete", "true", "no", "~", "null", "- ",
                             ": ", "{", "}", "[", "]", "&a ", "*a", "!!str ", "!!map ", "---", "...",
                             "'", '"', "|", ">", "#set ", "adapters.0.", "adapters.fire.",
                             "kafka.properties.", "acks", "enable.idempotence", "partitioner",
                             "murmur2_random", "linger.ms", "security.protocol", "\t"] + BAD_UTF8
    write_dict("fuzz_config", config)
    geo = ['"type"', '"FeatureCollection"', '"Feature"', '"features"', '"properties"', '"block_id"',
           '"name"', '"geometry"', '"Polygon"', '"MultiPolygon"', '"coordinates"', "[[[", "]]]",
           "],[", "[[", "]]", "0", "-0.0", "1e-320", "1.7976931348623157e308", "1e999", "0E0", "114.1",
           "22.5", '"440303-017"'] + JSON
    write_dict("fuzz_geojson", geo)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--join":
        join(sys.argv[2])
        return
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    fire()
    traffic()
    market()
    market_decode()
    config()
    geojson()
    dicts()


if __name__ == "__main__":
    main()
