#!/usr/bin/env python3
"""Write N traffic gateway lines (NDJSON, docs/feeds.md "Traffic") for the traffic benchmark.

    bench/gen_traffic.py N OUT [--seed S] [--map blocks.geojson]

Every line is a valid event whose point lies inside a block of the map
(checked here with an even-odd point-in-polygon test of its own, after the
coordinates are rounded to 6 decimals as a gateway writes them). Types,
severities, devices, plates (UTF-8, e.g. 粤B12345) and roads are drawn the
way the sample mixes them; event ids are JJ-BENCH-0000000001... in file
order, so a consumer can count what arrived. The same N, seed and map give the
same file byte for byte.
"""

import argparse
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MAP = os.path.join(HERE, "..", "tests", "data", "world", "blocks.geojson")
TYPES = ["accident", "congestion", "ebike_violation", "motorcycle_violation",
         "illegal_parking", "signal_fault", "red_light"]
PLATED = {"ebike_violation", "motorcycle_violation", "red_light", "illegal_parking"}
ROADS = ["深南东路", "人民南路", "沿河北路", "东门中路", "宝安南路", "解放路"]
POINTS_PER_BLOCK = 400
T0 = 1795737600000  # 2026-11-27T00:00:00Z


def in_ring(x, y, ring):
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:]):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def in_polygon(x, y, rings):
    return in_ring(x, y, rings[0]) and not any(in_ring(x, y, h) for h in rings[1:])


def block_points(polys, rng, n):
    """About N points strictly inside POLYS (a list of polygons), 6 decimals."""
    out = []
    for rings in polys:
        xs = [p[0] for p in rings[0]]
        ys = [p[1] for p in rings[0]]
        want = len(out) + max(1, n // len(polys))
        for _ in range(100 * n):
            if len(out) == want:
                break
            x = round(rng.uniform(min(xs), max(xs)), 6)
            y = round(rng.uniform(min(ys), max(ys)), 6)
            if in_polygon(x, y, rings):
                out.append((x, y))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--map", default=DEFAULT_MAP)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with open(args.map, encoding="utf-8") as f:
        fc = json.load(f)
    points = []
    for feat in sorted(fc["features"], key=lambda f: f["properties"]["block_id"]):
        g = feat["geometry"]
        polys = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
        points.extend(block_points(polys, rng, POINTS_PER_BLOCK))
    if not points:
        sys.exit("gen_traffic.py: no point inside any block of %s" % args.map)
    with open(args.out, "w", encoding="utf-8", newline="\n") as out:
        for i in range(1, args.n + 1):
            kind = rng.choice(TYPES)
            lon, lat = rng.choice(points)
            ev = {"event_id": "JJ-BENCH-%010d" % i,
                  "device": "CAM-LH-%04d" % rng.randrange(1, 400),
                  "type": kind, "lon": lon, "lat": lat,
                  "severity": rng.randint(1, 5),
                  "ts": T0 + i * 37 + rng.randrange(1000)}
            if kind in PLATED:
                ev["plate"] = "粤B%05d" % rng.randrange(100000)
            if rng.random() < 0.3:
                ev["road"] = rng.choice(ROADS)
            out.write(json.dumps(ev, ensure_ascii=False))
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
