#!/usr/bin/env python3
"""Read what blockhub published, decoded by fastavro (not by blockhub).

As a tool:  bhcat.py --bootstrap HOST:PORT [--schemas DIR] [--registry URL] TOPIC [TOPIC...]
prints one JSON object per record: topic, partition, offset, key, headers,
schema and the decoded value. Records in the Confluent wire format (a hub
with schema_registry.url) need --registry: their writer schema is fetched
from the registry by the id in the record.

As a library (the integration tests use it): consume_all() reads a topic from
the beginning to its current end; Decoder.decode() checks the single-object
header (0xC3 0x01 + CRC-64-AVRO fingerprint of the schema's Parsing Canonical
Form, as fastavro computes it) and decodes the body.
"""
import argparse
import base64
import datetime
import decimal
import glob
import io
import json
import os
import struct
import sys
import time

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition


class Decoder:
    def __init__(self, schema_dir, registry=None):
        self.by_fp = {}
        self.by_name = {}
        self.registry = registry.rstrip("/") if registry else None
        self.by_id = {}
        for path in sorted(glob.glob(os.path.join(schema_dir, "*.avsc"))):
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
            parsed = fastavro.parse_schema(raw)
            # fastavro gives the fingerprint's bytes in little-endian order, as hex
            fp = int.from_bytes(bytes.fromhex(fastavro.schema.fingerprint(
                fastavro.schema.to_parsing_canonical_form(parsed), "CRC-64-AVRO")), "little")
            name = parsed["name"]
            self.by_fp[fp] = (name, parsed)
            self.by_name[name] = (fp, parsed)

    def schema_of_id(self, sid):
        """(full name, parsed schema) of registry id SID, fetched once."""
        if sid not in self.by_id:
            import urllib.request
            with urllib.request.urlopen("%s/schemas/ids/%d" % (self.registry, sid),
                                        timeout=30) as r:
                raw = json.loads(json.loads(r.read())["schema"])
            parsed = fastavro.parse_schema(raw)
            self.by_id[sid] = (parsed["name"], parsed)
        return self.by_id[sid]

    def decode(self, value):
        """Returns (schema full name, record dict)."""
        if self.registry is not None and len(value) >= 5 and value[0] == 0:
            name, parsed = self.schema_of_id(struct.unpack(">I", value[1:5])[0])
            buf = io.BytesIO(value[5:])
            rec = fastavro.schemaless_reader(buf, parsed)
            if buf.tell() != len(value) - 5:
                raise ValueError("%d trailing bytes after the record" % (len(value) - 5 - buf.tell()))
            return name, rec
        if len(value) < 10 or value[0:2] != b"\xc3\x01":
            raise ValueError("not Avro single-object encoding: %r" % value[:10])
        fp = struct.unpack("<Q", value[2:10])[0]
        if fp not in self.by_fp:
            raise ValueError("unknown schema fingerprint %016x" % fp)
        name, parsed = self.by_fp[fp]
        buf = io.BytesIO(value[10:])
        rec = fastavro.schemaless_reader(buf, parsed)
        if buf.tell() != len(value) - 10:
            raise ValueError("%d trailing bytes after the record" % (len(value) - 10 - buf.tell()))
        return name, rec


def consume_all(bootstrap, topic, timeout=30.0):
    """Every committed message now in TOPIC, in partition then offset order, as dicts.

    The end of each partition is taken once, at the start: its last stable
    offset (the consumer reads read_committed, so the broker answers the offset
    query with the LSO; without open transactions that is the high watermark).
    A transactional topic's last offsets may be commit or abort markers, which
    no consumer ever receives, and an aborted transaction's records are skipped:
    so a partition is read when a record at or past its end arrives, or when the
    consumer reports the partition's end (partition EOF) at or past it, not when
    a received record's offset reaches it. Raises TimeoutError after TIMEOUT
    seconds.
    """
    deadline = time.monotonic() + timeout
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "bhcat-%d-%d" % (os.getpid(), time.monotonic_ns()),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    })
    try:
        md = c.list_topics(topic, timeout=timeout)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None:
            return []
        ends = {}
        for p in tmd.partitions:
            while True:  # a topic just made may not have its leaders known yet: ask again
                try:
                    lo, hi = c.get_watermark_offsets(TopicPartition(topic, p),
                                                     timeout=max(deadline - time.monotonic(), 1))
                    break
                except KafkaException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            if hi > lo:
                ends[p] = hi
        if not ends:
            return []
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        out = []
        left = set(ends)
        pos = {p: None for p in ends}
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError("reading %s: at %r of %r" % (topic, pos, ends))
            m = c.poll(min(1.0, max(0.01, deadline - time.monotonic())))
            if m is None:
                continue
            p = m.partition()
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(m.error()))
                # the consumer is at the partition's end: past every record
                # (and marker) below ENDS[p] once its offset is at or past it
                if p in left and m.offset() >= ends[p]:
                    left.discard(p)
                pos[p] = m.offset()
                continue
            if p not in left or m.offset() >= ends[p]:
                left.discard(p)  # written after the end was taken
                continue
            pos[p] = m.offset() + 1
            if pos[p] >= ends[p]:
                left.discard(p)
            out.append({
                "topic": m.topic(),
                "partition": p,
                "offset": m.offset(),
                "key": m.key(),
                "value": m.value(),
                "headers": dict((k, v) for k, v in (m.headers() or [])),
            })
        out.sort(key=lambda r: (r["partition"], r["offset"]))
        return out
    finally:
        c.close()


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(v).decode()
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)  # exact, as published
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--schemas", default=os.path.join(os.path.dirname(__file__), "..", "schemas"))
    ap.add_argument("--registry", default=None,
                    help="base URL of the schema registry, for records in the Confluent wire "
                         "format (e.g. http://127.0.0.1:8081)")
    ap.add_argument("--limit", type=int, default=0,
                    help="print at most N records per topic (0: all), then a count")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="seconds to read each topic to its end at most (default 30); "
                         "exit status 1 if that is not enough")
    ap.add_argument("topics", nargs="+")
    args = ap.parse_args()
    dec = Decoder(args.schemas, args.registry)
    for topic in args.topics:
        try:
            msgs = consume_all(args.bootstrap, topic, args.timeout)
        except TimeoutError as e:
            print("bhcat: %s" % e, file=sys.stderr)
            return 1
        if args.limit:
            print("# %s: %d records%s" % (topic, len(msgs), ", the first %d:" % args.limit
                                          if len(msgs) > args.limit else ""))
            msgs = msgs[:args.limit]
        for m in msgs:
            name, rec = dec.decode(m["value"])
            print(json.dumps(_jsonable({
                "topic": m["topic"], "partition": m["partition"], "offset": m["offset"],
                "key": m["key"], "headers": m["headers"], "schema": name, "value": rec,
            }), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
