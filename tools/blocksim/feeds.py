"""Records of the three departments, valid or deliberately bad, as docs/feeds.md defines them.

Every record is a Record: the department, its event id, the block it must
resolve to (valid records) or the dead-letter reason the hub should give
(bad records), its event type, and the payload in the department's own shape:
  market  - a dict column name -> cell text (the spool sink writes the CSV)
  traffic - one NDJSON line (str, no newline)
  fire    - one event object (dict, serialised by the webhook sink)
All randomness comes from the one random.Random given, in call order, so a
seed reproduces every record byte for byte.
"""
import datetime
import json

# --- market (市场监管) ---

MARKET_COLUMNS = ["记录编号", "统一社会信用代码", "主体名称", "事项类型", "处理结果", "罚没金额",
                  "经营地址", "网格编码", "经度", "纬度", "发生时间"]
MARKET_EXTRA_COLUMN = "备注"  # unknown to the contract: must be ignored
# type -> (weight, [(outcome, weight), ...])
MARKET_TYPES = {
    "日常检查": (35, [("合格", 70), ("责令整改", 30)]),
    "专项检查": (10, [("合格", 50), ("责令整改", 35), ("罚款", 15)]),
    "行政处罚": (8, [("罚款", 85), ("吊销许可", 15)]),
    "许可变更": (12, [("已登记", 100)]),
    "电动自行车销售登记": (10, [("已登记", 100)]),
    "摩托车销售登记": (5, [("已登记", 100)]),
    "投诉举报": (20, [("已受理", 100)]),
}
MARKET_OUTCOMES = ["合格", "责令整改", "罚款", "吊销许可", "已登记", "已受理"]
MARKET_BAD_TYPES = ["年度检查", "其他", "日常巡查"]

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]

ROADS = ["建设路", "人民南路", "东门中路", "文锦中路", "深南东路", "沿河北路", "宝安南路", "春风路",
         "嘉宾路", "笋岗路", "翠竹路", "太白路", "布心路", "爱国路", "黄贝路", "桂园路"]
NAME_WORDS = ["恒泰", "鹏程", "华润", "金利", "百佳", "新一佳", "盛世", "东升", "永丰", "安达", "和平",
              "𠮷祥", "嘉信", "瑞丰", "兴隆", "汇通", "乐家", "万宁", "广信", "佳美"]
NAME_TRADES = ["百货", "餐饮", "电动车", "摩托车", "五金", "药房", "超市", "服装", "电子", "食品", "便利店"]
NAME_FORMS = ["有限公司", "有限公司", "商行", "经营部", "店"]
FLOORS = ["二楼", "3栋201", "地下一层", "B座1205", "首层"]
REMARKS = ["无", "复查", "群众来电,已转办", "系统导入", ""]

# --- traffic (交通) ---

TRAFFIC_TYPES = {"illegal_parking": 30, "congestion": 20, "red_light": 15, "ebike_violation": 15,
                 "motorcycle_violation": 8, "accident": 7, "signal_fault": 5}
TRAFFIC_PLATED = {"illegal_parking", "red_light", "ebike_violation", "motorcycle_violation"}
TRAFFIC_BAD_TYPES = ["ufo_sighting", "Accident", "jaywalking", "parking"]
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"

# --- fire (消防) ---

FIRE_CATEGORIES = {"inspection": 35, "hazard": 25, "rectified": 20, "alarm": 12, "drill": 8}
FIRE_LEVELS = {"low": 50, "medium": 30, "high": 15, "critical": 5}
FIRE_BAD_LEVELS = ["apocalyptic", "severe", "extreme", "urgent"]
FIRE_DESCRIPTIONS = ["烟感报警", "例行检查", "电动车楼道充电", "消防通道堵塞", "灭火器过期", "疏散演练",
                     "隐患已整改", "喷淋系统故障"]

# Bad kinds per department: kind -> the dead-letter reason the hub should give.
BAD_KINDS = {
    "market": {"uscc_check": "invalid_field", "impossible_time": "invalid_field",
               "unknown_type": "invalid_field", "outside": "unresolved_block"},
    "traffic": {"cut_off": "invalid_json", "unknown_type": "invalid_field",
                "outside": "unresolved_block", "too_long": "too_large"},
    "fire": {"bad_level": "invalid_field", "missing_occurred_at": "missing_field",
             "outside": "unresolved_block"},
}

CST = datetime.timezone(datetime.timedelta(hours=8))


def uscc_check(first17):
    """The GB 32100-2015 check character of the first 17 characters."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS))
    v = 31 - total % 31
    return USCC_CHARSET[0 if v == 31 else v]


def org_check(body8):
    """The GB 11714 check character of an organisation code's first 8 characters."""
    total = sum(int(c, 36) * w for c, w in zip(body8, ORG_WEIGHTS))
    v = 11 - total % 11
    return "X" if v == 10 else "0" if v == 11 else str(v)


def weighted(rng, table):
    """A key of TABLE (key -> weight) drawn with its weight."""
    keys = list(table)
    return rng.choices(keys, weights=[table[k] for k in keys])[0]


class Record:
    __slots__ = ("dept", "id", "block", "type", "kind", "reason", "payload")

    def __init__(self, dept, rid, block, etype, payload, kind=None, reason=None):
        self.dept = dept
        self.id = rid
        self.block = block  # block id it must resolve to (None for bad records)
        self.type = etype
        self.payload = payload
        self.kind = kind  # None for a valid record, else the bad kind
        self.reason = reason  # expected dead-letter reason of a bad record


class Generator:
    """Makes the records. BASE_MS is the simulated 'now' at virtual time 0 (epoch ms)."""

    def __init__(self, rng, blockmap, base_ms, tag, block_skew=1.0, traffic_max_line=65536,
                 reserved=None):
        self.rng = rng
        # event types only planted records have (--plant): random records never draw them
        reserved = reserved or {}
        self.market_types = {k: v[0] for k, v in MARKET_TYPES.items()
                             if k not in reserved.get("market", ())}
        self.traffic_types = {k: v for k, v in TRAFFIC_TYPES.items()
                              if k not in reserved.get("traffic", ())}
        self.fire_categories = {k: v for k, v in FIRE_CATEGORIES.items()
                                if k not in reserved.get("fire", ())}
        self.map = blockmap
        self.base_ms = base_ms
        self.tag = tag
        self.traffic_max_line = traffic_max_line
        self.blocks = blockmap.blocks
        # hot spots: a log-normal weight per block (skew 0 = uniform)
        self.block_weights = [rng.lognormvariate(0, block_skew) if block_skew > 0 else 1.0
                              for _ in self.blocks]
        self.seq = {"market": 0, "traffic": 0, "fire": 0}
        self.unknown_grids = ["%s-%03d" % (self.blocks[0].id.split("-")[0], n)
                              for n in range(900, 1000)]
        self.unknown_grids = [g for g in self.unknown_grids if g not in blockmap.by_id]

    # --- shared helpers ---

    def pick_block(self):
        return self.rng.choices(self.blocks, weights=self.block_weights)[0]

    def next_id(self, dept):
        self.seq[dept] += 1
        n = self.seq[dept]
        if dept == "market":
            return "SCJG-%s-%07d" % (self.tag, n)
        if dept == "traffic":
            return "JJ-%s-%07d" % (self.tag, n)
        return "XF-440303-%s-%07d" % (self.tag, n)

    def local(self, ms):
        return datetime.datetime.fromtimestamp(ms / 1000, CST)

    def where(self, block, p_grid, p_point, p_both):
        """(grid, lon, lat) for a record in BLOCK: grid only, point only, both, or an
        unknown grid code with the point (the resolver falls back to the point)."""
        r = self.rng.random()
        if r < p_grid:
            return block.id, None, None
        x, y = self.map.point_in(block, self.rng)
        if r < p_grid + p_point:
            return None, x, y
        if r < p_grid + p_point + p_both:
            return block.id, x, y
        return self.rng.choice(self.unknown_grids), x, y

    def outside(self):
        """(grid, lon, lat) that resolve to no block."""
        x, y = self.map.point_outside(self.rng)
        grid = self.rng.choice(self.unknown_grids) if self.rng.random() < 0.3 else None
        return grid, x, y

    # --- market ---

    def uscc(self):
        rng = self.rng
        head = rng.choice(["91", "91", "91", "92"])
        region = rng.choice(["440303", "440303", "440303", "440300", "440304"])
        body = "".join(rng.choice(USCC_CHARSET) for _ in range(8))
        first17 = head + region + body + org_check(body)
        return first17 + uscc_check(first17)

    def business_name(self):
        rng = self.rng
        word, trade, form = rng.choice(NAME_WORDS), rng.choice(NAME_TRADES), rng.choice(NAME_FORMS)
        r = rng.random()
        if r < 0.04:
            return '深圳市"老字号",%s%s' % (trade, form)  # a quote and a comma
        if r < 0.08:
            return "深圳市%s%s%s(罗湖分店),%s" % (word, trade, form, rng.choice(["一部", "二部"]))
        return "深圳市罗湖区%s%s%s" % (word, trade, form)

    def address(self):
        rng = self.rng
        r = rng.random()
        if r < 0.08:
            return ""
        addr = "罗湖区%s%d号" % (rng.choice(ROADS), rng.randint(1, 300))
        if r < 0.14:
            addr += "\n" + rng.choice(FLOORS)  # a line break inside a quoted field
        elif r < 0.18:
            addr += "," + rng.choice(FLOORS)
        return addr

    def fine(self):
        cents = self.rng.randint(200, 200000) * 100 + self.rng.choice([0, 0, 50, self.rng.randint(1, 99)])
        yuan, c = divmod(cents, 100)
        style = self.rng.random()
        if c == 0 and style < 0.5:
            return str(yuan)
        if c % 10 == 0 and style < 0.7:
            return "%d.%d" % (yuan, c // 10)
        return "%d.%02d" % (yuan, c)

    def market_time(self, vt):
        ms = self.base_ms + int(vt * 1000) - self.rng.randint(0, 2 * 3600 * 1000)
        t = self.local(ms)
        if self.rng.random() < 0.2:
            return t.strftime("%Y/%m/%d %H:%M")
        return t.strftime("%Y-%m-%d %H:%M:%S")

    def impossible_time(self):
        y = self.local(self.base_ms).year
        return self.rng.choice(["%d-02-30 10:00:00" % y, "%d-11-31 08:00:00" % y,
                                "%d-11-27 24:00:00" % y, "%d-11-27 12:61:00" % y,
                                "%d/13/01 09:30" % y, "27/11/%d 25:61" % y])

    def market(self, vt, bad_kind=None, plant=None):
        """A market row; PLANT (a dict: block, type, at_ms, optional uscc) fixes the block, the
        type, the time and the USCC of a planted valid row."""
        rng = self.rng
        rid = self.next_id("market")
        etype = weighted(rng, self.market_types) if plant is None else plant["type"]
        outcome = weighted(rng, dict(MARKET_TYPES[etype][1]))
        block = self.pick_block() if plant is None else plant["block"]
        grid, x, y = self.where(block, 0.45, 0.35, 0.15)
        row = {
            "记录编号": rid,
            "统一社会信用代码": self.uscc(),
            "主体名称": self.business_name(),
            "事项类型": etype,
            "处理结果": outcome,
            "罚没金额": self.fine() if outcome == "罚款" or (outcome == "吊销许可" and rng.random() < 0.5)
            else "",
            "经营地址": self.address(),
            "网格编码": grid or "",
            "经度": "" if x is None else "%.6f" % x,
            "纬度": "" if y is None else "%.6f" % y,
            "发生时间": self.market_time(vt),
            MARKET_EXTRA_COLUMN: rng.choice(REMARKS),
        }
        if plant is not None:
            row["发生时间"] = self.local(plant["at_ms"]).strftime("%Y-%m-%d %H:%M:%S")
            if plant.get("uscc"):
                row["统一社会信用代码"] = plant["uscc"]
        if bad_kind is None:
            return Record("market", rid, block.id, etype, row)
        if bad_kind == "uscc_check":
            good = row["统一社会信用代码"]
            row["统一社会信用代码"] = good[:17] + rng.choice([c for c in USCC_CHARSET if c != good[17]])
        elif bad_kind == "impossible_time":
            row["发生时间"] = self.impossible_time()
        elif bad_kind == "unknown_type":
            row["事项类型"] = rng.choice(MARKET_BAD_TYPES)
        elif bad_kind == "outside":
            grid, x, y = self.outside()
            row["网格编码"], row["经度"], row["纬度"] = grid or "", "%.6f" % x, "%.6f" % y
        return Record("market", rid, None, row["事项类型"], row, bad_kind, BAD_KINDS["market"][bad_kind])

    # --- traffic ---

    def plate(self):
        rng = self.rng
        if rng.random() < 0.2:  # new-energy plates: D/F and five more
            return "粤B" + rng.choice("DF") + "".join(rng.choice("0123456789") for _ in range(5))
        tail = "".join(rng.choice("0123456789") for _ in range(5))
        if rng.random() < 0.3:
            tail = rng.choice(PLATE_LETTERS) + tail[1:]
        return "粤B" + tail

    def traffic(self, vt, bad_kind=None, plant=None):
        """A traffic line; PLANT (a dict: block, type, at_ms, optional plate) fixes them."""
        rng = self.rng
        rid = self.next_id("traffic")
        etype = weighted(rng, self.traffic_types) if plant is None else plant["type"]
        block = self.pick_block() if plant is None else plant["block"]
        x, y = self.map.point_in(block, rng)
        dev = ("SNS-LH-%04d" if etype in ("congestion", "signal_fault") else "CAM-LH-%04d") % rng.randint(1, 400)
        ev = {"event_id": rid, "device": dev, "type": etype, "lon": x, "lat": y,
              "severity": rng.choices([1, 2, 3, 4, 5], weights=[35, 30, 18, 11, 6])[0],
              "ts": self.base_ms + int(vt * 1000) - rng.randint(0, 5000)}
        if etype in TRAFFIC_PLATED and rng.random() < 0.85:
            ev["plate"] = self.plate()
        if plant is not None:
            ev["ts"] = plant["at_ms"]
            if plant.get("plate"):
                ev["plate"] = plant["plate"]
            else:
                ev.pop("plate", None)
        if rng.random() < 0.4:
            ev["road"] = rng.choice(ROADS)
        if rng.random() < 0.1:
            ev["lane"] = rng.randint(1, 4)  # unknown to the contract: must be ignored
        compact = rng.random() < 0.3
        seps = (",", ":") if compact else (", ", ": ")
        if bad_kind == "unknown_type":
            ev["type"] = etype = rng.choice(TRAFFIC_BAD_TYPES)
        elif bad_kind == "outside":
            ev["lon"], ev["lat"] = self.map.point_outside(rng)
        elif bad_kind == "too_long":
            ev["note"] = "x" * (self.traffic_max_line + rng.randint(1, 4096))
        line = json.dumps(ev, ensure_ascii=False, separators=seps)
        if bad_kind == "cut_off":
            head = len(json.dumps({"event_id": rid}, ensure_ascii=False, separators=seps)) - 1
            line = line[:rng.randint(head + 3, len(line) - 2)]
        if bad_kind is None:
            return Record("traffic", rid, block.id, etype, line)
        return Record("traffic", rid, None, etype, line, bad_kind, BAD_KINDS["traffic"][bad_kind])

    def heartbeat(self, vt):
        return json.dumps({"type": "heartbeat", "ts": self.base_ms + int(vt * 1000)},
                          separators=(",", ":"))

    # --- fire ---

    def rfc3339(self, ms):
        t = self.local(ms)
        if self.rng.random() < 0.1:
            return t.isoformat(timespec="milliseconds")
        return t.isoformat(timespec="seconds")

    def fire(self, vt, bad_kind=None, plant=None):
        """A fire event; PLANT (a dict: block, type, at_ms) fixes its block, category and time."""
        rng = self.rng
        rid = self.next_id("fire")
        cat = weighted(rng, self.fire_categories) if plant is None else plant["type"]
        level = weighted(rng, FIRE_LEVELS if cat != "alarm" else {"medium": 30, "high": 45, "critical": 25})
        block = self.pick_block() if plant is None else plant["block"]
        grid, x, y = self.where(block, 0.45, 0.40, 0.10)
        ev = {"id": rid, "category": cat, "unit": "罗湖区%s大厦%02d" % (rng.choice(NAME_WORDS), rng.randint(1, 99))}
        if rng.random() < 0.8:
            ev["building_id"] = "B-440303-%05d" % rng.randint(1, 99999)
        ev["level"] = level
        if rng.random() < 0.85:
            ev["description"] = rng.choice(FIRE_DESCRIPTIONS)
        ev["occurred_at"] = self.rfc3339(self.base_ms + int(vt * 1000) - rng.randint(0, 1800 * 1000))
        if plant is not None:
            ev["occurred_at"] = self.local(plant["at_ms"]).isoformat(timespec="seconds")
        if bad_kind == "outside":
            grid, x, y = self.outside()
        if grid is not None:
            ev["grid_code"] = grid
        if x is not None:
            ev["location"] = {"lng": x, "lat": y}
        if bad_kind is None:
            return Record("fire", rid, block.id, cat, ev)
        if bad_kind == "bad_level":
            ev["level"] = rng.choice(FIRE_BAD_LEVELS)
        elif bad_kind == "missing_occurred_at":
            del ev["occurred_at"]
        return Record("fire", rid, None, cat, ev, bad_kind, BAD_KINDS["fire"][bad_kind])
