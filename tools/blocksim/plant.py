"""Planted alert combinations (--plant N): events that must fire the join's watches and rules.

Each plant puts the events of one alert into one block of its own (no two plants share a
block), at one moment of the run: the alerts they must fire go into the ground truth, and the
watches and rules that fire them are written for the join's configuration (--plant-config).
The event types the rules look at are planted only: random records never draw them, so with
these rules and watches no other alert fires. The kinds, in turn over the departments that are
simulated:

  pair   market 摩托车销售登记, then traffic motorcycle_violation a minute later (rule plant-moto)
  spike  three fire alarms a minute apart (rule plant-alarms: more than 2 within an hour)
  plate  a traffic event with a plate of its own (a watch on that plate)
  uscc   a market row with a USCC of its own (a watch on that USCC)
"""
import random

from . import feeds

KINDS = ("pair", "spike", "plate", "uscc")
NEEDS = {"pair": ("market", "traffic"), "spike": ("fire",), "plate": ("traffic",),
         "uscc": ("market",)}
RESERVED = {"market": ("摩托车销售登记",), "traffic": ("motorcycle_violation",), "fire": ("alarm",)}
RULES = {
    "pair": {"name": "plant-moto", "type": "pair", "a_department": "market",
             "a_types": ["摩托车销售登记"], "b_department": "traffic",
             "b_types": ["motorcycle_violation"], "within": "1h"},
    "spike": {"name": "plant-alarms", "type": "spike", "department": "fire", "types": ["alarm"],
              "more_than": 2, "within": "1h"},
}
MINUTE_MS = 60000


def plate_of(k):
    return "粤Z%05d" % k  # random plates are 粤B...


def uscc_of(k):
    """A valid USCC (GB 32100-2015) no random row has: organisation code PL + the number."""
    body = "PL%06d" % k
    first17 = "91440303" + body + feeds.org_check(body)
    return first17 + feeds.uscc_check(first17)


class Planter:
    """N plants over a run of TOTAL generated events, in DEPTS, each in its own block of BLOCKS."""

    def __init__(self, n, depts, blocks, total, seed):
        self.kinds = [k for k in KINDS if all(d in depts for d in NEEDS[k])]
        if n and not self.kinds:
            raise ValueError("--plant needs market and traffic, fire, or one of them simulated")
        if n > len(blocks):
            raise ValueError("--plant %d: the block map has only %d blocks (one per plant)"
                             % (n, len(blocks)))
        if n and total < 1:
            raise ValueError("--plant needs at least one event to plant among")
        chosen = random.Random(seed * 7919 + 17).sample(list(blocks), n)
        self.plants = []
        self.due = {}
        for k in range(n):
            p = {"n": k, "kind": self.kinds[k % len(self.kinds)], "block": chosen[k],
                 "at": int((k + 0.5) * total / n), "events": []}
            self.plants.append(p)
            self.due.setdefault(p["at"], []).append(p)

    def watch_name(self, p):
        return "plant-%s-%d" % (p["kind"], p["n"])

    def config(self):
        """The join's watches and rules the plants need (join inputs named by department)."""
        used = {p["kind"] for p in self.plants}
        watches = []
        for p in self.plants:
            if p["kind"] == "plate":
                watches.append({"name": self.watch_name(p), "type": "field", "field": "plate",
                                "equals": plate_of(p["n"]), "department": "traffic"})
            elif p["kind"] == "uscc":
                watches.append({"name": self.watch_name(p), "type": "field", "field": "uscc",
                                "equals": uscc_of(p["n"]), "department": "market"})
        return {"watches": watches, "rules": [RULES[k] for k in KINDS if k in RULES and k in used]}

    def records(self, gen, i, vt):
        """The planted records due after generated event I (virtual time VT)."""
        out = []
        for p in self.due.get(i, ()):
            at = gen.base_ms + int(vt * 1000)
            kind, block = p["kind"], p["block"]
            if kind == "pair":
                mine = [gen.market(vt, plant={"block": block, "type": "摩托车销售登记", "at_ms": at}),
                        gen.traffic(vt, plant={"block": block, "type": "motorcycle_violation",
                                               "at_ms": at + MINUTE_MS})]
            elif kind == "spike":
                mine = [gen.fire(vt, plant={"block": block, "type": "alarm",
                                            "at_ms": at + j * MINUTE_MS}) for j in range(3)]
            elif kind == "plate":
                mine = [gen.traffic(vt, plant={"block": block, "type": "illegal_parking",
                                               "at_ms": at, "plate": plate_of(p["n"])})]
            else:
                mine = [gen.market(vt, plant={"block": block, "type": "日常检查", "at_ms": at,
                                              "uscc": uscc_of(p["n"])})]
            p["events"] = [(r.dept, r.id) for r in mine]
            out.extend(mine)
        return out

    def alerts(self, delivered):
        """The alerts that must fire: of every plant whose events were all delivered
        (DELIVERED: department -> event ids). A watch's alert_id is known; a rule's names its
        events in the order the join applied them, so only the set of events is given."""
        out = []
        for p in self.plants:
            if not p["events"] or not all(rid in delivered.get(d, ()) for d, rid in p["events"]):
                continue
            a = {"plant": p["n"], "block": p["block"].id,
                 "events": sorted([d, rid] for d, rid in p["events"])}
            if p["kind"] in RULES:
                a.update(kind="RULE", name=RULES[p["kind"]]["name"])
            else:
                d, rid = p["events"][0]
                a.update(kind="WATCH", name=self.watch_name(p),
                         alert_id="watch:%s:%s:%s/%s" % (self.watch_name(p), p["block"].id, d, rid))
            out.append(a)
        return out
