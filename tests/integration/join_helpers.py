"""Helpers of the join tests (tests/integration/test_join*.py) and the join benchmark.

Everything here is independent of blockhub's code: Kafka's murmur2 placement
written out from the Java client's algorithm, Avro records written by fastavro
in single-object encoding and produced with confluent-kafka, and the expected
views computed from the events the test produced.
"""
import glob
import io
import json
import os
import random
import shutil
import struct
import sys
import time
import uuid

import fastavro
import pytest
import requests
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka import IsolationLevel
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("BH_SOURCE_DIR", os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tools"))
sys.path.insert(0, HERE)
import bhcat  # noqa: E402
from conftest import SCHEMAS, WORLD, Hub, deadline_after, free_port  # noqa: E402

DEPTS = ("market", "traffic", "fire")
WINDOW = "1h"
WINDOW_MS = 3600 * 1000


# --- Kafka's partitioner, as the Java client computes it ---------------------

def murmur2(data):
    """org.apache.kafka.common.utils.Utils.murmur2, as a signed 32-bit int."""
    m, r = 0x5bd1e995, 24
    length = len(data)
    h = (0x9747b28c ^ length) & 0xffffffff
    for i in range(length // 4):
        k = struct.unpack_from("<I", data, i * 4)[0]
        k = (k * m) & 0xffffffff
        k ^= k >> r
        k = (k * m) & 0xffffffff
        h = (h * m) & 0xffffffff
        h ^= k
    tail, rem = length & ~3, length % 4
    if rem == 3:
        h ^= data[tail + 2] << 16
    if rem >= 2:
        h ^= data[tail + 1] << 8
    if rem >= 1:
        h ^= data[tail]
        h = (h * m) & 0xffffffff
    h ^= h >> 13
    h = (h * m) & 0xffffffff
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h


def java_partition(key, partitions):
    """BuiltInPartitioner.partitionForKey: toPositive(murmur2(key)) % numPartitions."""
    return (murmur2(key) & 0x7fffffff) % partitions


# Utils.murmur2 of the kafka-clients 4.1.1 jar (computed with the JVM), to check murmur2() above.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"440303-017": -1217923547,
    b"440303-121": -1732258269,
    "塊".encode(): 965286910,
}


# --- schemas ------------------------------------------------------------------

# Stand-ins for the department schemas another engineer has not landed yet: used only when
# schemas/ has no schema of that name. The join reads three fields by configured name.
STAND_INS = {
    "blockhub.market.MarketEvent": {
        "type": "record", "name": "MarketEvent", "namespace": "blockhub.market",
        "fields": [
            {"name": "record_id", "type": "string"},
            {"name": "block_id", "type": "string"},
            {"name": "uscc", "type": "string"},
            {"name": "event_type", "type": "string"},
            {"name": "fine", "type": ["null", {"type": "bytes", "logicalType": "decimal",
                                               "precision": 14, "scale": 2}], "default": None},
            {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "source_row", "type": "long"},
        ]},
    "blockhub.traffic.TrafficEvent": {
        "type": "record", "name": "TrafficEvent", "namespace": "blockhub.traffic",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "block_id", "type": "string"},
            {"name": "type", "type": {"type": "enum", "name": "TrafficEventType", "symbols": [
                "accident", "congestion", "ebike_violation", "motorcycle_violation",
                "illegal_parking", "signal_fault", "red_light"]}},
            {"name": "lon", "type": "double"},
            {"name": "lat", "type": "double"},
            {"name": "severity", "type": "int"},
            {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "plate", "type": ["null", "string"], "default": None},
        ]},
}
SCHEMA_OF = {"market": "blockhub.market.MarketEvent", "traffic": "blockhub.traffic.TrafficEvent",
             "fire": "blockhub.fire.FireEvent"}
MARKET_TYPES = ["日常检查", "专项检查", "行政处罚", "许可变更", "电动自行车销售登记", "摩托车销售登记",
                "投诉举报"]


def fingerprint(parsed):
    return int.from_bytes(bytes.fromhex(fastavro.schema.fingerprint(
        fastavro.schema.to_parsing_canonical_form(parsed), "CRC-64-AVRO")), "little")


def schema_dir(tmp):
    """schemas/ plus the stand-ins for department schemas not there yet."""
    out = os.path.join(str(tmp), "schemas")
    os.makedirs(out, exist_ok=True)
    names = set()
    for path in glob.glob(os.path.join(SCHEMAS, "*.avsc")):
        shutil.copy(path, out)
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        names.add(raw.get("namespace", "") + "." + raw["name"] if "." not in raw["name"]
                  else raw["name"])
    for name, raw in STAND_INS.items():
        if name not in names:
            with open(os.path.join(out, name.split(".")[-1] + ".avsc"), "w") as f:
                json.dump(raw, f)
    return out


class Department:
    """How to write one department's records, read from its schema."""

    def __init__(self, name, schema_path_dir):
        self.name = name
        full = SCHEMA_OF[name]
        raw = None
        for path in glob.glob(os.path.join(schema_path_dir, "*.avsc")):
            with open(path, encoding="utf-8") as f:
                r = json.load(f)
            if r.get("namespace", "") + "." + r["name"] == full or r["name"] == full:
                raw = r
        assert raw is not None, full
        self.parsed = fastavro.parse_schema(raw)
        self.fp = fingerprint(self.parsed)
        fields = {f["name"]: f for f in raw["fields"]}
        self.fields = raw["fields"]
        self.id_field = "event_id" if "event_id" in fields else "record_id"
        self.type_field = {"fire": "category", "traffic": "type"}.get(name)
        if self.type_field is None:
            self.type_field = next(f for f in ("event_type", "type", "category") if f in fields)
        t = fields[self.type_field]["type"]
        self.types = t["symbols"] if isinstance(t, dict) and t.get("type") == "enum" else MARKET_TYPES
        self.time_field = "occurred_at"

    def input_conf(self, topic):
        return {"name": self.name, "type": "avro", "topic": topic, "id_field": self.id_field,
                "type_field": self.type_field, "time_field": self.time_field}

    def record(self, event_id, block, type_, at):
        rec = {}
        for f in self.fields:
            rec[f["name"]] = filler(f["type"])
        rec[self.id_field] = event_id
        if "block_id" in rec:
            rec["block_id"] = block
        rec[self.type_field] = type_
        rec[self.time_field] = at
        return rec

    def encode(self, rec):
        buf = io.BytesIO()
        buf.write(b"\xc3\x01" + struct.pack("<Q", self.fp))
        fastavro.schemaless_writer(buf, self.parsed, rec)
        return buf.getvalue()


def filler(t):
    """Some valid value of Avro type T (the fields the join does not read)."""
    if isinstance(t, list):
        return None if "null" in t else filler(t[0])
    if isinstance(t, dict):
        k = t.get("type")
        if k == "record":
            return {f["name"]: filler(f["type"]) for f in t["fields"]}
        if k == "enum":
            return t["symbols"][0]
        if k == "array":
            return []
        if k == "map":
            return {}
        if k == "fixed":
            return b"\0" * t["size"]
        return filler(k)
    return {"string": "x", "long": 7, "int": 3, "double": 1.5, "float": 0.5, "boolean": True,
            "bytes": b"b", "null": None}.get(t, None)


# --- events and the truth ------------------------------------------------------

def block_ids():
    with open(os.path.join(WORLD, "blocks.geojson"), encoding="utf-8") as f:
        fc = json.load(f)
    return {ft["properties"]["block_id"]: ft["properties"]["name"] for ft in fc["features"]}


def make_events(depts, n, seed, blocks, base_ms=1795738500000, span_ms=3 * 86400000,
                disorder_ms=4 * 3600000):
    """N events (dept, event_id, block, type, at) over SPAN_MS, out of order by up to DISORDER_MS."""
    rnd = random.Random(seed)
    ids = sorted(blocks)
    out = []
    for i in range(n):
        d = depts[rnd.randrange(len(depts))]
        at = base_ms + span_ms * i // n - rnd.randrange(disorder_ms)
        out.append((d.name, "%s-%d-%06d" % (d.name[:2].upper(), seed, i), rnd.choice(ids),
                    rnd.choice(d.types), at))
    return out


def with_copies(events, fraction, seed, only=("fire", "traffic")):
    """The events with FRACTION of those of ONLY sent twice (the copy a little later)."""
    rnd = random.Random(seed)
    out = []
    pending = []
    for e in events:
        out.append(e)
        if e[0] in only and rnd.random() < fraction:
            pending.append((len(out) + rnd.randrange(1, 200), e))
        still = []
        for when, c in pending:
            if when <= len(out):
                out.append(c)
            else:
                still.append((when, c))
        pending = still
    out.extend(c for _, c in pending)
    return out


def truth(events, window_ms, names):
    """What every block's last view must say: distinct events per (block, department)."""
    seen = {}
    for dept, eid, block, type_, at in events:
        seen.setdefault((block, dept), {}).setdefault(eid, (type_, at))
    out = {}
    for (block, dept), evs in seen.items():
        newest = max(at for _, at in evs.values())
        by_type = {}
        for t, _ in evs.values():
            by_type[t] = by_type.get(t, 0) + 1
        last_at, last_id = max((at, eid.encode()) for eid, (_, at) in evs.items())
        out.setdefault(block, {"block_id": block, "block_name": names.get(block)})[dept] = {
            "total": len(evs),
            "by_type": by_type,
            "window_total": sum(1 for _, at in evs.values() if newest - at < window_ms),
            "last_event_id": last_id.decode(),
            "last_event_at": last_at,
        }
    empty = {"total": 0, "by_type": {}, "window_total": 0, "last_event_id": None,
             "last_event_at": None}
    for v in out.values():
        for d in DEPTS:
            v.setdefault(d, dict(empty))
    return out


def ms(v):
    """A timestamp-millis value as fastavro gives it (datetime) in ms."""
    if v is None or isinstance(v, int):
        return v
    return int(round(v.timestamp() * 1000))


class Feed:
    """Produces events to the department topics, keyed by block with murmur2_random (the
    Java-compatible partitioner the adapters use), with the blockhub.event_id header."""

    def __init__(self, bootstrap, topics, depts):
        self.topics = topics
        self.by_name = {d.name: d for d in depts}
        self.failed = []
        self.p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                           "enable.idempotence": True, "linger.ms": 5, "acks": "all",
                           "queue.buffering.max.messages": 1000000})

    def _report(self, err, msg):
        if err is not None:
            self.failed.append(err)

    def send(self, events):
        for dept, eid, block, type_, at in events:
            d = self.by_name[dept]
            value = d.encode(d.record(eid, block, type_, at))
            while True:
                try:
                    self.p.produce(self.topics[dept], key=block.encode(), value=value,
                                   headers=[("blockhub.event_id", eid.encode())],
                                   on_delivery=self._report)
                    break
                except BufferError:
                    self.p.poll(0.1)
            self.p.poll(0)

    def flush(self):
        assert self.p.flush(120) == 0
        assert not self.failed, self.failed[:3]


def produce(bootstrap, topics, depts, events):
    f = Feed(bootstrap, topics, depts)
    f.send(events)
    f.flush()


def produce_paced(bootstrap, topics, depts, events, seconds, chunks=100):
    """produce() spread evenly over about SECONDS."""
    f = Feed(bootstrap, topics, depts)
    start = time.monotonic()
    size = max(1, len(events) // chunks)
    for i in range(0, len(events), size):
        f.send(events[i:i + size])
        f.p.flush(30)
        ahead = start + seconds * (i + size) / len(events) - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    f.flush()


def create_topics(bootstrap, counts, compact=()):
    a = AdminClient({"bootstrap.servers": bootstrap})
    fs = a.create_topics([NewTopic(t, n, 1, config={"cleanup.policy": "compact"} if t in compact
                                   else {}) for t, n in counts.items()])
    for f in fs.values():
        f.result(60)


def read_committed(bootstrap, topic, timeout=120, isolation="read_committed"):
    """Every committed record now in TOPIC (a transactional topic: its high watermark counts
    the transaction markers, so the end is the partition-EOF at or past it), as dicts.
    ISOLATION read_uncommitted: every record, those of aborted and open transactions too."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "join-test-%s" % time.monotonic_ns(),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "isolation.level": isolation, "enable.partition.eof": True})
    try:
        md = c.list_topics(topic, timeout=timeout).topics.get(topic)
        if md is None or md.error is not None:
            return []
        ends = {}
        for p in md.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            ends[p] = hi
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        done = {p for p, hi in ends.items() if hi == 0}
        out = []
        deadline = deadline_after(timeout)
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise TimeoutError("reading %s: done %r of %r" % (topic, done, ends))
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if m.offset() >= ends[m.partition()]:
                        done.add(m.partition())
                    continue
                raise RuntimeError(str(m.error()))
            out.append({"topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
                        "key": m.key(), "value": m.value(),
                        "headers": dict(m.headers() or [])})
        out.sort(key=lambda r: (r["partition"], r["offset"]))
        return out
    finally:
        c.close()


def read_uncommitted(bootstrap, topic, timeout=120):
    """Every record now in TOPIC, committed or not."""
    return read_committed(bootstrap, topic, timeout, isolation="read_uncommitted")


def open_transaction(bootstrap, topic):
    """The partitions of TOPIC holding records of a transaction not ended yet (the last stable
    offset, what read_committed sees, below the high watermark)."""
    a = AdminClient({"bootstrap.servers": bootstrap})
    md = a.list_topics(topic, timeout=30).topics[topic]
    specs = {TopicPartition(topic, p): OffsetSpec.latest() for p in md.partitions}
    ends = {}
    for level in (IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED):
        for tp, f in a.list_offsets(specs, isolation_level=level, request_timeout=30).items():
            ends.setdefault(tp.partition, []).append(f.result(30).offset)
    return sorted(p for p, (stable, high) in ends.items() if stable < high)


def last_views(bootstrap, topic, decoder, records=None):
    """The last record of every key of the view topic (or of RECORDS, read from it), decoded,
    with its partition."""
    out = {}
    for m in read_committed(bootstrap, topic) if records is None else records:
        name, rec = decoder.decode(m["value"])
        assert name == "blockhub.view.BlockView"
        assert m["key"].decode() == rec["block_id"]
        out[rec["block_id"]] = (m["partition"], rec)
    return out


def comparable(view):
    """A decoded view without updated_at and window_ms, times in ms."""
    out = {"block_id": view["block_id"], "block_name": view["block_name"]}
    for d in DEPTS:
        v = dict(view[d])
        v["last_event_at"] = ms(v["last_event_at"])
        out[d] = v
    return out


def assert_views_equal_truth(views, expected, window_ms, partitions=None):
    """Field by field, every block; with PARTITIONS, each view on its Java murmur2 partition."""
    missing = sorted(set(expected) - set(views))
    extra = sorted(set(views) - set(expected))
    assert not missing and not extra, "missing %s, extra %s" % (missing[:5], extra[:5])
    bad = []
    for block, want in expected.items():
        part, view = views[block]
        assert view["window_ms"] == window_ms
        got = comparable(view)
        if got != want:
            bad.append((block, got, want))
        if partitions is not None:
            assert part == java_partition(block.encode(), partitions), block
    assert not bad, "%d of %d views differ; first: %s" % (len(bad), len(expected), bad[0])


def wait_views(bootstrap, topic, decoder, expected, window_ms, timeout=180, partitions=None,
               group=None, inputs=None):
    """Wait until the last views equal the truth (the join catches up), then assert it.
    With GROUP and INPUTS: wait until the group has consumed the inputs to their end (the
    views are final then) and compare once, so wrong views fail at once."""
    if group is not None:
        wait_consumed_up_to_end(bootstrap, group, inputs, timeout)
        views = last_views(bootstrap, topic, decoder)
        try:
            assert_views_equal_truth(views, expected, window_ms, partitions)
        except AssertionError as e:
            # what the reader saw, for the failure's message: views per partition, and the
            # partitions whose transaction was still open (their last stable offset behind)
            per = {}
            for p, _ in views.values():
                per[p] = per.get(p, 0) + 1
            raise AssertionError("%s; views per partition %s; open transactions on %s: %s"
                                 % (e, dict(sorted(per.items())), topic,
                                    open_transaction(bootstrap, topic))) from e
        return views
    deadline = deadline_after(timeout)
    while True:
        views = last_views(bootstrap, topic, decoder)
        try:
            assert_views_equal_truth(views, expected, window_ms, partitions)
            return views
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def committed_offsets(bootstrap, group, topics):
    """GROUP's committed offset of every partition of TOPICS: {(topic, partition): offset}
    (negative: none). Read stable: an offset commit in an open transaction is waited for."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        tps = []
        for t in topics:
            md = c.list_topics(t, timeout=30).topics[t]
            tps.extend(TopicPartition(t, p) for p in md.partitions)
        return {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=30)}
    finally:
        c.close()


def wait_consumed_up_to_end(bootstrap, group, topics, timeout=300):
    """Until GROUP's committed offsets reach the end of TOPICS: a committed transaction holds
    the offsets with the views, so the committed views are then final."""
    deadline = deadline_after(timeout)
    while not consumed_up_to_end(bootstrap, group, topics):
        assert time.monotonic() < deadline, "%s did not consume %s in %ds" % (group, topics,
                                                                              timeout)
        time.sleep(0.5)


def event_counts(views):
    """{department: sum of the views' totals} of decoded last views."""
    return {d: sum(v[d]["total"] for _, v in views.values()) for d in DEPTS}


def consumed_up_to_end(bootstrap, group, topics):
    """True when GROUP's committed offsets reach the end of every partition of TOPICS."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        tps = []
        for t in topics:
            md = c.list_topics(t, timeout=30).topics[t]
            tps.extend(TopicPartition(t, p) for p in md.partitions)
        committed = c.committed(tps, timeout=30)
        for tp in committed:
            lo, hi = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=30)
            if hi > 0 and tp.offset < hi:
                return False
        return True
    finally:
        c.close()


def map_with_units(tmp_path):
    """The world's block map, each block with a responsible unit (unit-N by its order)."""
    with open(os.path.join(WORLD, "blocks.geojson"), encoding="utf-8") as f:
        fc = json.load(f)
    units = {}
    for i, ft in enumerate(fc["features"]):
        if i % 5 != 4:  # every fifth block has none
            ft["properties"]["unit"] = "第%d派出所" % (i % 7)
        units[ft["properties"]["block_id"]] = ft["properties"].get("unit")
    path = os.path.join(str(tmp_path), "blocks-units.geojson")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fc, f, ensure_ascii=False)
    return path, units


# --- the daemon -------------------------------------------------------------------

class JoinHub(Hub):
    """A blockhub process running the join (no adapters unless given), with an admin API."""

    def __init__(self, tmp_path, brokers, schemas, inputs, view_topic, state_topic, group,
                 window="1h", extra=(), partitions=3, fire=False, admin=True,
                 kafka_properties=None, state_dir=None, blocks_map=None, adapters=(),
                 memory_limit="64MiB"):
        super().__init__(tmp_path, brokers, fire=fire)
        # the local state store: one directory per process (RocksDB allows one owner), given
        # relative (taken from the config file's directory) unless STATE_DIR is absolute
        conf_state_dir = state_dir or "join-state-%s" % self.tag
        self.state_dir = os.path.join(os.path.dirname(self.config), conf_state_dir)
        self.admin_port = free_port() if admin else None
        self.admin = "http://127.0.0.1:%d" % self.admin_port if admin else None
        lines = [
            "log:", "  level: info",
            "kafka:", "  brokers: %s" % brokers, "  partitions: %d" % partitions,
            "  replication: 1",
        ]
        if kafka_properties:
            lines.append("  properties:")
            lines.extend("    %s: %s" % (k, json.dumps(v)) for k, v in kafka_properties.items())
        lines += [
            "blocks:", "  map: %s" % (blocks_map or os.path.join(WORLD, "blocks.geojson")),
            "schemas:", "  dir: %s" % schemas,
            "dead_letter:", "  topic: %s" % self.dlq_topic,
        ]
        lines += ["adapters:" if fire or adapters else "adapters: []"]
        if fire:
            lines += ["  - name: fire", "    type: fire",
                      "    listen: 127.0.0.1:%d" % self.port,
                      "    tokens: [test-token-1]", "    topic: %s" % self.fire_topic]
        for e in adapters:  # more adapters: config entries as dicts
            for i, (k, v) in enumerate(e.items()):
                lines.append("%s%s: %s" % ("  - " if i == 0 else "    ", k,
                                           json.dumps(v, ensure_ascii=False)))
        lines += ["join:", "  enabled: true", "  group: %s" % group,
                  "  view_topic: %s" % view_topic, "  state_topic: %s" % state_topic,
                  "  window: %s" % window, "  session_timeout: 6s",
                  "  transaction_timeout: 10s", "  state_dir: %s" % conf_state_dir,
                  "  memory_limit: %s" % memory_limit, "  inputs:"]
        for inp in inputs:
            first = True
            for k, v in inp.items():
                lines.append("%s%s: %s" % ("    - " if first else "      ", k,
                                           json.dumps(v, ensure_ascii=False)))
                first = False
        for line in extra:
            lines.append(line)
        if admin:
            lines += ["admin:", "  listen: 127.0.0.1:%d" % self.admin_port]
        with open(self.config, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def status(self):
        return requests.get(self.admin + "/join", timeout=10).json()

    def block(self, block_id, **kw):
        return requests.get(self.admin + "/blocks/" + block_id, timeout=10, **kw)

    def wait_live(self, n=None, timeout=120):
        """Until every partition this process owns is restored (and, with N, it owns N)."""
        deadline = deadline_after(timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("blockhub exited %d:\n%s" % (self.proc.returncode,
                                                                    self.logtext()))
            try:
                s = self.status()
                if not s["restoring"] and (s["live"] if n is None else len(s["live"]) == n):
                    return s
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("join not live in %ds:\n%s" % (timeout, self.logtext()))


@pytest.fixture
def world(kafka, tmp_path):
    """Topics, departments and a factory of join processes sharing one group."""
    tag = uuid.uuid4().hex[:10]

    class World:
        pass

    w = World()
    w.kafka = kafka
    w.tmp = tmp_path
    w.schemas = schema_dir(tmp_path)
    w.decoder = bhcat.Decoder(w.schemas)
    w.depts = [Department(d, w.schemas) for d in DEPTS]
    w.topics = {d: "dept.%s.join.%s" % (d, tag) for d in DEPTS}
    w.view = "block.view.%s" % tag
    w.state = "block.view.state.%s" % tag
    w.group = "join-%s" % tag
    w.names = block_ids()
    w.hubs = []

    def hub(**kw):
        h = JoinHub(tmp_path, kafka, w.schemas,
                    [d.input_conf(w.topics[d.name]) for d in w.depts], w.view, w.state,
                    w.group, window=kw.pop("window", WINDOW), **kw)
        w.hubs.append(h)
        return h

    w.hub = hub
    yield w
    for h in w.hubs:
        h.kill()
