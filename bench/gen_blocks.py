#!/usr/bin/env python3
"""Write a realistic block map of N blocks as GeoJSON, for bench_blockmap.

    bench/gen_blocks.py N OUT [--seed S]

The blocks tile a district like the real map does: a grid of cells whose
corners are jittered, and whose sides are polylines with 0-2 bent interior
points shared exactly by both neighbours, so each block has 4-12 vertices and
neighbouring blocks share edges and vertices (the shared-edge rule gets
exercised). About one block in 100 is a MultiPolygon: its own cell plus an
island that sits in a hole of another block (so there are holes too).
Ids are 440303-000001 ... in file order; the same N and seed give the same
file byte for byte.
"""

import argparse
import json
import math
import random
import sys

ORIGIN_LON = 113.75
ORIGIN_LAT = 22.45
CELL = 0.0015  # degrees, about 150 m
CORNER_JITTER = 0.15  # of a cell
BEND_JITTER = 0.06  # of a cell, across a side
ISLAND_HALF = 0.08  # of a cell
ISLAND_EVERY = 100


def rounded(x):
    return round(x, 6)


class Lattice:
    def __init__(self, cols, rows, rng):
        self.cols = cols
        self.rows = rows
        self.corners = {}
        for j in range(rows + 1):
            for i in range(cols + 1):
                dx = rng.uniform(-CORNER_JITTER, CORNER_JITTER)
                dy = rng.uniform(-CORNER_JITTER, CORNER_JITTER)
                self.corners[i, j] = (
                    rounded(ORIGIN_LON + (i + dx) * CELL),
                    rounded(ORIGIN_LAT + (j + dy) * CELL),
                )
        self.rng = rng
        self.sides = {}

    def side(self, a, b):
        """The polyline from corner a to corner b, interior points only."""
        key = (a, b) if a < b else (b, a)
        if key not in self.sides:
            p, q = self.corners[key[0]], self.corners[key[1]]
            n = self.rng.randint(0, 2)
            pts = []
            for k in range(n):
                t = (k + 1) / (n + 1) + self.rng.uniform(-0.08, 0.08)
                off = self.rng.uniform(-BEND_JITTER, BEND_JITTER) * CELL
                length = math.hypot(q[0] - p[0], q[1] - p[1])
                nx, ny = -(q[1] - p[1]) / length, (q[0] - p[0]) / length
                pts.append(
                    (
                        rounded(p[0] + t * (q[0] - p[0]) + off * nx),
                        rounded(p[1] + t * (q[1] - p[1]) + off * ny),
                    )
                )
            self.sides[key] = pts
        pts = self.sides[key]
        return pts if key == (a, b) else list(reversed(pts))

    def cell_ring(self, i, j):
        """The counter-clockwise closed ring of cell (i, j)."""
        walk = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
        ring = []
        for k in range(4):
            a, b = walk[k], walk[(k + 1) % 4]
            ring.append(self.corners[a])
            ring.extend(self.side(a, b))
        ring.append(ring[0])
        return ring

    def island(self, i, j, clockwise):
        """A small square around the middle of cell (i, j)."""
        cs = [self.corners[i, j], self.corners[i + 1, j], self.corners[i + 1, j + 1],
              self.corners[i, j + 1]]
        cx = rounded(sum(c[0] for c in cs) / 4)
        cy = rounded(sum(c[1] for c in cs) / 4)
        h = ISLAND_HALF * CELL
        sq = [(rounded(cx - h), rounded(cy - h)), (rounded(cx + h), rounded(cy - h)),
              (rounded(cx + h), rounded(cy + h)), (rounded(cx - h), rounded(cy + h))]
        if clockwise:
            sq.reverse()
        sq.append(sq[0])
        return sq


def generate(n, seed):
    rng = random.Random(seed)
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    lattice = Lattice(cols, rows, rng)
    cells = [(k % cols, k // cols) for k in range(n)]

    # Block h (a host) gets a hole; the island filling it belongs to block
    # h + cols // 2 (same row band, far enough not to touch), which becomes a
    # MultiPolygon.
    holes = {}
    islands = {}
    for h in range(ISLAND_EVERY // 2, n, ISLAND_EVERY):
        owner = h + max(2, cols // 2)
        if owner < n and owner not in holes and h not in islands:
            holes[h] = owner
            islands[owner] = h

    features = []
    for k, (i, j) in enumerate(cells):
        rings = [lattice.cell_ring(i, j)]
        if k in holes:
            rings.append(lattice.island(i, j, clockwise=True))
        if k in islands:
            hi, hj = cells[islands[k]]
            geometry = {
                "type": "MultiPolygon",
                "coordinates": [[[list(p) for p in r] for r in rings],
                                [[list(p) for p in lattice.island(hi, hj, clockwise=False)]]],
            }
        else:
            geometry = {"type": "Polygon", "coordinates": [[list(p) for p in r] for r in rings]}
        features.append({
            "type": "Feature",
            "properties": {
                "block_id": "440303-%06d" % (k + 1),
                "name": "测试街道第%d网格" % (k + 1),
                "district": "罗湖区",
            },
            "geometry": geometry,
        })
    return {"type": "FeatureCollection", "name": "bench-blocks-%d" % n, "features": features}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, help="number of blocks")
    ap.add_argument("out", help="output GeoJSON file ('-' for stdout)")
    ap.add_argument("--seed", type=int, default=20261127)
    args = ap.parse_args()
    if args.n < 1:
        ap.error("N must be at least 1")
    doc = generate(args.n, args.seed)
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    if args.out == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
