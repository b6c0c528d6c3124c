#!/usr/bin/env python3
"""Generate a market regulation CSV file (docs/feeds.md, "Market regulation") for benchmarks.

usage: gen_market.py ROWS OUT.csv [--kcat OUT.tsv] [--blocks blocks.geojson] [--seed N]

Valid rows only, GB18030, CRLF, the sample's column order: two thirds carry a grid code
(网格编码), one third a point inside a block (经度/纬度); both time layouts; a fine on
every 罚款 row. With --kcat it also writes, for the baseline, one "KEY<TAB>VALUE" line
per row: the block id the row resolves to and a filler value exactly as long as the Avro
record blockhub publishes for it (single-object framing included).
"""
import argparse
import json
import os
import random

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = [pow(3, i, 31) for i in range(17)]  # 1, 3, 9, 27, 19, 26, ... (GB 32100-2015)
TYPES = ["日常检查", "专项检查", "行政处罚", "许可变更", "电动自行车销售登记", "摩托车销售登记", "投诉举报"]
OUTCOMES = {"日常检查": ["合格", "责令整改"], "专项检查": ["合格", "责令整改"],
            "行政处罚": ["罚款", "吊销许可"], "许可变更": ["已登记"],
            "电动自行车销售登记": ["已登记"], "摩托车销售登记": ["已登记"], "投诉举报": ["已受理"]}
HEADER = "记录编号,统一社会信用代码,主体名称,事项类型,处理结果,罚没金额,经营地址,网格编码,经度,纬度,发生时间"
ROADS = ["建设路", "文锦中路", "人民南路", "东门中路", "深南东路"]


def uscc(rng):
    body = "9144030" + "".join(rng.choice(CHARSET) for _ in range(10))
    c = 31 - sum(CHARSET.index(ch) * w for ch, w in zip(body, WEIGHTS)) % 31
    return body + CHARSET[0 if c == 31 else c]


def interior_points(path):
    """block id -> a point inside it (the mean of a convex cell's corners)."""
    with open(path, encoding="utf-8") as f:
        fc = json.load(f)
    out = {}
    for feat in fc["features"]:
        g = feat["geometry"]
        ring = g["coordinates"][0] if g["type"] == "Polygon" else g["coordinates"][0][0]
        corners = ring[:-1]
        out[feat["properties"]["block_id"]] = (
            round(sum(p[0] for p in corners) / len(corners), 6),
            round(sum(p[1] for p in corners) / len(corners), 6))
    return out


def varint_len(n):
    n = (n << 1) ^ (n >> 63)  # zigzag
    k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


def avro_len(fields, fine_fen, has_grid, has_point, file_name, row, line, occurred_ms, block):
    """Bytes of blockhub.market.MarketEvent for this row, with the 10-byte framing."""
    def s(text):
        b = len(text.encode("utf-8"))
        return varint_len(b) + b
    n = 10
    n += s(fields[0]) + s(block) + s(fields[1]) + s(fields[2]) + s(fields[3]) + s(fields[4])
    if fine_fen is None:
        n += 1
    else:
        nbytes = max(1, (fine_fen.bit_length() + 8) // 8)
        n += 1 + varint_len(nbytes) + nbytes
    n += 1 + (s(fields[6]) if fields[6] else 0)
    n += 1 + (s(fields[7]) if has_grid else 0)
    n += 1 + (16 if has_point else 0)
    n += varint_len(occurred_ms) + s(file_name) + varint_len(row) + varint_len(line)
    return n


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", type=int)
    ap.add_argument("out")
    ap.add_argument("--kcat")
    ap.add_argument("--blocks", default=os.path.join(here, "..", "tests", "data", "world",
                                                     "blocks.geojson"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    points = interior_points(args.blocks)
    blocks = sorted(points)
    name = os.path.basename(args.out)
    base_ms = 1795708800000  # 2026-11-27 00:00 +08:00 is 2026-11-26T16:00Z
    kc = open(args.kcat, "w", encoding="utf-8") if args.kcat else None
    with open(args.out, "wb") as out:
        out.write((HEADER + "\r\n").encode("gb18030"))
        buf = []
        for i in range(1, args.rows + 1):
            t = rng.choice(TYPES)
            outcome = rng.choice(OUTCOMES[t])
            fen = rng.randrange(100, 10000000) if outcome == "罚款" else None
            fine = "" if fen is None else "%d.%02d" % (fen // 100, fen % 100)
            block = rng.choice(blocks)
            has_grid = i % 3 != 0
            lon, lat = points[block]
            secs = rng.randrange(0, 86400)
            hh, mm, ss = secs // 3600, secs // 60 % 60, secs % 60
            if i % 2:
                when = "2026-11-27 %02d:%02d:%02d" % (hh, mm, ss)
                ms = base_ms + secs * 1000
            else:
                when = "2026/11/27 %02d:%02d" % (hh, mm)
                ms = base_ms + (hh * 3600 + mm * 60) * 1000
            fields = ["SCJG-2026-%07d" % i, uscc(rng), "深圳市罗湖区样例商行%05d有限公司" % (i % 100000),
                      t, outcome, fine, "罗湖区%s%d号" % (rng.choice(ROADS), rng.randrange(1, 300)),
                      block if has_grid else "", "" if has_grid else "%.6f" % lon,
                      "" if has_grid else "%.6f" % lat, when]
            buf.append(",".join(fields))
            if kc:
                size = avro_len(fields, fen, has_grid, not has_grid, name, i, i + 1, ms, block)
                kc.write("%s\t%s\n" % (block, "x" * size))
            if len(buf) == 10000:
                out.write(("\r\n".join(buf) + "\r\n").encode("gb18030"))
                buf = []
        if buf:
            out.write(("\r\n".join(buf) + "\r\n").encode("gb18030"))
    if kc:
        kc.close()


if __name__ == "__main__":
    main()
