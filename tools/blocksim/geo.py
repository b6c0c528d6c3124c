"""The block map, and points drawn inside (or outside) its blocks.

A point for a block is drawn by rejection sampling in the block's bounding
box with an even-odd point-in-polygon test, after rounding to the 6 decimals
the departments send; it is kept only if it lies in no other block and at
least MARGIN degrees from every edge of its block, so that any resolver
(boundary rule, floating point) puts it in that block.
"""
import json
import math

MARGIN = 5e-6  # degrees, about half a metre


def ring_contains(x, y, ring):
    inside = False
    for i in range(len(ring) - 1):
        x1, y1 = ring[i]
        x2, y2 = ring[i + 1]
        if (y1 > y) != (y2 > y):
            if x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
    return inside


def polygon_contains(x, y, rings):
    return ring_contains(x, y, rings[0]) and not any(ring_contains(x, y, h) for h in rings[1:])


def _segment_distance(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    d2 = dx * dx + dy * dy
    t = 0.0 if d2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / d2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def _edge_distance(x, y, polys):
    best = math.inf
    for rings in polys:
        for ring in rings:
            for i in range(len(ring) - 1):
                best = min(best, _segment_distance(x, y, ring[i][0], ring[i][1],
                                                   ring[i + 1][0], ring[i + 1][1]))
    return best


def _bbox_overlap(a, b):
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


class Block:
    def __init__(self, block_id, name, polys):
        self.id = block_id
        self.name = name
        self.polys = polys  # list of polygons, each a list of rings of [lon, lat]
        xs = [p[0] for rings in polys for p in rings[0]]
        ys = [p[1] for rings in polys for p in rings[0]]
        self.bbox = (min(xs), min(ys), max(xs), max(ys))
        self.neighbours = []

    def contains(self, x, y):
        b = self.bbox
        if not (b[0] <= x <= b[2] and b[1] <= y <= b[3]):
            return False
        return any(polygon_contains(x, y, rings) for rings in self.polys)


class BlockMap:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            fc = json.load(f)
        self.blocks = []
        for feat in fc["features"]:
            g = feat["geometry"]
            if g["type"] == "Polygon":
                polys = [g["coordinates"]]
            elif g["type"] == "MultiPolygon":
                polys = g["coordinates"]
            else:
                raise ValueError("%s: block geometry %s is not a (Multi)Polygon" % (path, g["type"]))
            self.blocks.append(Block(feat["properties"]["block_id"],
                                     feat["properties"].get("name", ""), polys))
        if not self.blocks:
            raise ValueError("%s: no blocks" % path)
        self.blocks.sort(key=lambda b: b.id)
        self.by_id = {b.id: b for b in self.blocks}
        for b in self.blocks:
            b.neighbours = [o for o in self.blocks if o is not b and _bbox_overlap(b.bbox, o.bbox)]
        self.bbox = (min(b.bbox[0] for b in self.blocks), min(b.bbox[1] for b in self.blocks),
                     max(b.bbox[2] for b in self.blocks), max(b.bbox[3] for b in self.blocks))

    def locate(self, x, y):
        """Ids of every block containing (x, y)."""
        return [b.id for b in self.blocks if b.contains(x, y)]

    def point_in(self, block, rng, tries=10000):
        """A (lon, lat) with 6 decimals strictly inside BLOCK and in no other block."""
        b = block.bbox
        for _ in range(tries):
            x = round(rng.uniform(b[0], b[2]), 6)
            y = round(rng.uniform(b[1], b[3]), 6)
            if (block.contains(x, y) and _edge_distance(x, y, block.polys) >= MARGIN
                    and not any(o.contains(x, y) for o in block.neighbours)):
                return x, y
        raise RuntimeError("block %s: no interior point found in %d tries" % (block.id, tries))

    def point_outside(self, rng):
        """A (lon, lat) with 6 decimals that no block contains: 0.005..0.05 degrees off the map."""
        x0, y0, x1, y1 = self.bbox
        while True:
            side = rng.randrange(4)
            off = rng.uniform(0.005, 0.05)
            if side == 0:
                x, y = x0 - off, rng.uniform(y0, y1)
            elif side == 1:
                x, y = x1 + off, rng.uniform(y0, y1)
            elif side == 2:
                x, y = rng.uniform(x0, x1), y0 - off
            else:
                x, y = rng.uniform(x0, x1), y1 + off
            x, y = round(x, 6), round(y, 6)
            if not self.locate(x, y):
                return x, y
