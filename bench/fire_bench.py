#!/usr/bin/env python3
"""Helpers for bench/run-fire.sh.

    fire_bench.py bodies EVENTS COUNT OUT [--seed S] [--map blocks.geojson]
        write COUNT request bodies, one a line, of EVENTS valid fire events each
        (an object when EVENTS is 1, else an array); ids XF-BENCH-... unique
        over the file, blocks drawn uniformly from the map: two thirds by
        grid_code, one third by a location inside the block
    fire_bench.py count BOOTSTRAP TOPIC
        print the sum of TOPIC's end offsets (needs confluent-kafka)
    fire_bench.py report RESULTS
        print the table of run-fire.sh from its RESULTS file (lines
        "NAME key=value ...", as bench_fire_load prints them)
"""
import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_traffic import block_points  # noqa: E402  (points strictly inside a block)

DEFAULT_MAP = os.path.join(HERE, "..", "tests", "data", "world", "blocks.geojson")
CATEGORIES = ["alarm", "hazard", "inspection", "rectified", "drill"]
LEVELS = ["low", "medium", "high", "critical"]
DESCRIPTIONS = ["烟感报警", "消防通道堵塞", "灭火器过期", "电气线路老化", "例行检查", ""]


def load_blocks(path):
    with open(path, encoding="utf-8") as f:
        features = json.load(f)["features"]
    rng = random.Random(7)
    blocks = []
    for ft in features:
        g = ft["geometry"]
        polys = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
        blocks.append((ft["properties"]["block_id"], block_points(polys, rng, 8)))
    return blocks


def cmd_bodies(args):
    seed, map_path = 1, DEFAULT_MAP
    while len(args) > 3:
        flag, value = args[-2], args[-1]
        if flag == "--seed":
            seed = int(value)
        elif flag == "--map":
            map_path = value
        else:
            sys.exit("fire_bench: unknown option %s" % flag)
        args = args[:-2]
    events, count, out = int(args[0]), int(args[1]), args[2]
    rng = random.Random(seed)
    blocks = load_blocks(map_path)
    seq = 0
    with open(out, "w", encoding="utf-8") as f:
        for _ in range(count):
            items = []
            for _ in range(events):
                seq += 1
                block, points = rng.choice(blocks)
                ev = {
                    "id": "XF-BENCH-%010d" % seq,
                    "category": rng.choice(CATEGORIES),
                    "unit": "罗湖区基准大厦%02d" % rng.randrange(100),
                    "building_id": "B-%s-%05d" % (block[:6], rng.randrange(100000)),
                    "level": rng.choice(LEVELS),
                    "description": rng.choice(DESCRIPTIONS),
                    "occurred_at": "2026-11-27T%02d:%02d:%02d+08:00"
                    % (rng.randrange(24), rng.randrange(60), rng.randrange(60)),
                }
                if seq % 3 == 0 and points:
                    lng, lat = rng.choice(points)
                    ev["location"] = {"lng": lng, "lat": lat}
                else:
                    ev["grid_code"] = block
                items.append(ev)
            body = items[0] if events == 1 else items
            f.write(json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n")


def cmd_count(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-fire-%d" % os.getpid()})
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        parts = list(md.partitions) if md is not None and md.error is None else []
        print(sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                  for p in parts))
    finally:
        c.close()


def cmd_report(path):
    rows = []
    with open(path) as f:
        for line in f:
            name, _, rest = line.strip().partition(" ")
            if rest:
                rows.append((name, dict(kv.split("=", 1) for kv in rest.split())))
    res = dict(rows)

    def get(name, key):
        return float(res[name][key]) if name in res and key in res[name] else float("nan")

    print("%-26s %12s %12s %9s %9s %8s %7s %7s" % (
        "run", "requests/s", "records/s", "p50 ms", "p99 ms", "errors", "gen CPU", "hub CPU"))
    for name, r in rows:
        if name == "traffic":
            print("%-26s %12s %12.0f %9s %9s %8s %7s %7s" % (
                name, "-", float(r["eps"]), "-", "-", "-", "-", "-"))
            continue
        if "-h2load-" in name:
            print("%-26s %12.0f %12s %9s %9s %8s %7s %7s" % (
                name, float(r["rps"]), "-", "-", "-",
                int(r["failed"] or 0) + int(r["non2xx"] or 0), "-", "-"))
            continue
        secs = float(r["seconds"])
        print("%-26s %12.0f %12.0f %9.2f %9.2f %8s %7.2f %7.2f" % (
            name, float(r["rps"]), float(r["eps"]), float(r["p50_ms"]), float(r["p99_ms"]),
            r["errors"], float(r["gen_cpu"]) / secs, float(r["hub_cpu"]) / secs))
    print("(gen CPU, hub CPU: cores used by the load generator and by blockhub over the window)")
    print()
    traffic = get("traffic", "eps")
    for conns in sorted({n.split("-c")[1] for n, _ in rows if n.startswith("null-c")}, key=int):
        null, single = get("null-c" + conns, "rps"), get("fire-1-c" + conns, "rps")
        print("fire single / null answers, %3s connections: %.3f  (%.0f / %.0f requests/s)"
              % (conns, single / null, single, null))
        h2 = get("null-h2load-c" + conns, "rps")
        if h2 == h2:
            print("  generator check, null at %s connections: bench_fire_load %.0f, h2load %.0f "
                  "requests/s (%.2f)" % (conns, null, h2, null / h2))
    for name, _ in rows:
        m = re.match(r"fire-1-linger(\d+)-c(\d+)$", name)
        if m:
            own, null = get(name, "rps"), get("null-c" + m.group(2), "rps")
            print("fire single (own linger.ms %s) / null answers, %3s connections: %.3f  "
                  "(%.0f / %.0f requests/s)" % (m.group(1), m.group(2), own / null, own, null))
    for name, _ in rows:
        if name.startswith("fire-") and traffic == traffic:
            print("%-19s records/s / traffic records/s: %.3f  (%.0f / %.0f)"
                  % (name, get(name, "eps") / traffic, get(name, "eps"), traffic))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "bodies":
        cmd_bodies(args)
    elif cmd == "count":
        cmd_count(*args)
    elif cmd == "report":
        cmd_report(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
