"""--check refuses everything start would refuse, at its file:line:col and key (issue 7, item 7).

Before, each of these said "config OK" and the start then failed with exit 1
and no position.
"""
import os
import re
import shutil
import subprocess
import uuid

from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BLOCKHUB, SCHEMAS, WORLD

TEMPLATE = """\
kafka:
  brokers: {brokers}
  partitions: 3
  properties:
    linger.ms: "5"{props}
blocks:
  map: {map}
schemas:
  dir: {schemas}
dead_letter:
  topic: {dlq}
adapters:
  - name: fire
    type: fire
    listen: {listen}
    tokens: {tokens}
    topic: {topic}{own}
"""
LINES = {"props": 6, "map": 7, "schemas": 9, "dlq": 11, "listen": 15, "tokens": 16, "own": 19}


def write(tmp_path, **over):
    v = {"brokers": "embedded", "props": "", "map": os.path.join(WORLD, "blocks.geojson"),
         "schemas": SCHEMAS, "dlq": "hub.dlq", "listen": "127.0.0.1:0",
         "tokens": "[t1]", "topic": "dept.fire", "own": ""}
    v.update(over)
    path = tmp_path / ("c-%s.yaml" % uuid.uuid4().hex[:8])
    path.write_text(TEMPLATE.format(**v))
    return str(path)


def run(cfg, *args):
    return subprocess.run([BLOCKHUB, "--config", cfg, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def refused(cfg, key, line, *why):
    r = run(cfg, "--check")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "config OK" not in r.stdout
    m = re.search(r"%s:(\d+):(\d+): key '([^']+)': (.*)" % re.escape(cfg), r.stderr)
    assert m, r.stderr
    assert int(m.group(1)) == line and m.group(3) == key, r.stderr
    for w in why:
        assert w in m.group(4), r.stderr
    # start refuses the same way, before anything runs
    s = run(cfg)
    assert s.returncode == 2 and m.group(0) in s.stderr, s.stderr


def test_good_config_passes(tmp_path):
    r = run(write(tmp_path), "--check")
    assert r.returncode == 0 and "config OK" in r.stdout, r.stderr


def test_listen_addresses(tmp_path):
    for bad in ("127.0.0.1:70000", "127.0.0.1:-1", "nowhere:80", "8080", "[::1:80"):
        refused(write(tmp_path, listen='"%s"' % bad), "adapters[fire].listen", LINES["listen"],
                bad)


def test_tokens(tmp_path):
    refused(write(tmp_path, tokens="[]"), "adapters[fire].tokens", LINES["tokens"], "at least one")
    refused(write(tmp_path, tokens="['']"), "adapters[fire].tokens", LINES["tokens"], "empty")
    refused(write(tmp_path, tokens="[a, '']"), "adapters[fire].tokens", LINES["tokens"], "empty")


def test_producer_properties(tmp_path):
    for prop, why in (("acks: '1'", "acks=all"), ("enable.idempotence: 'false'", "idempotence"),
                      ("partitioner: random", "murmur2_random"),
                      ("no.such.property: x", "no.such.property")):
        refused(write(tmp_path, props="\n    " + prop), "kafka.properties", 5, why)


def test_adapter_producer_properties(tmp_path):
    """An adapter's kafka_properties: the checks of kafka.properties, at the adapter's key, and
    none of the properties that would take its producer off the hub's cluster or its role."""
    for prop, why in (("acks: '1'", "acks=all"), ("enable.idempotence: 'false'", "idempotence"),
                      ("partitioner: random", "murmur2_random"),
                      ("linger.ms: soon", "linger.ms"),
                      ("no.such.property: x", "no.such.property"),
                      ("fetch.min.bytes: '5'", "consumer"),
                      ("bootstrap.servers: '127.0.0.1:1'", "kafka.brokers"),
                      ("transactional.id: x", "not transactional")):
        refused(write(tmp_path, own="\n    kafka_properties:\n      " + prop),
                "adapters[fire].kafka_properties", LINES["own"], why)
    good = write(tmp_path, own="\n    kafka_properties:\n      linger.ms: '0'")
    r = run(good, "--check")
    assert r.returncode == 0 and "config OK" in r.stdout, r.stderr


def test_block_map(tmp_path):
    refused(write(tmp_path, map=str(tmp_path / "missing.geojson")), "blocks.map", LINES["map"],
            "missing.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature"')
    refused(write(tmp_path, map=str(bad)), "blocks.map", LINES["map"])


def test_schemas(tmp_path):
    refused(write(tmp_path, schemas=str(tmp_path / "nodir")), "schemas.dir", LINES["schemas"])
    # the dead-letter schema missing
    d1 = tmp_path / "s1"
    shutil.copytree(SCHEMAS, d1)
    os.remove(d1 / "dead_letter.avsc")
    refused(write(tmp_path, schemas=str(d1)), "schemas.dir", LINES["schemas"],
            "blockhub.DeadLetter")
    # the fire adapter's schema missing
    d2 = tmp_path / "s2"
    shutil.copytree(SCHEMAS, d2)
    for f in os.listdir(d2):
        if "FireEvent" in (d2 / f).read_text():
            os.remove(d2 / f)
    refused(write(tmp_path, schemas=str(d2)), "schemas.dir", LINES["schemas"],
            "blockhub.fire.FireEvent", "'fire'")
    # a broken .avsc
    d3 = tmp_path / "s3"
    shutil.copytree(SCHEMAS, d3)
    (d3 / "broken.avsc").write_text('{"type": "record", "name": ')
    refused(write(tmp_path, schemas=str(d3)), "schemas.dir", LINES["schemas"], "broken.avsc")


def test_dead_letter_topic_is_not_a_department_topic(tmp_path):
    refused(write(tmp_path, dlq="dept.fire"), "dead_letter.topic", LINES["dlq"], "'fire'")


def test_partition_count_of_existing_topics(kafka, tmp_path):
    """A department topic that exists with another partition count is refused."""
    topic = "dept.fire.parts.%s" % uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": kafka})
    for f in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        f.result(30)
    cfg = write(tmp_path, brokers=kafka, topic=topic, dlq="hub.dlq.%s" % topic)
    r = run(cfg, "--check")
    assert r.returncode == 2 and "2 partitions" in r.stderr and topic in r.stderr, r.stderr
    s = run(cfg)
    assert s.returncode == 1 and "2 partitions" in s.stderr, s.stderr
    # with the same count, both pass (start is not run here: --check only)
    ok = write(tmp_path, brokers=kafka, topic=topic, dlq="hub.dlq.%s" % topic)
    with open(ok) as f:
        text = f.read().replace("partitions: 3", "partitions: 2")
    with open(ok, "w") as f:
        f.write(text)
    r = run(ok, "--check")
    assert r.returncode == 0 and "config OK" in r.stdout, r.stderr


def test_check_lists_every_cluster_problem(kafka, tmp_path):
    """Two topics of the wrong size and topics that cannot be created: all listed, one a line."""
    tag = uuid.uuid4().hex[:8]
    fire, traffic = "dept.fire.%s" % tag, "dept.traffic.%s" % tag
    admin = AdminClient({"bootstrap.servers": kafka})
    for f in admin.create_topics([NewTopic(fire, 2, 1), NewTopic(traffic, 5, 1)]).values():
        f.result(30)
    cfg = write(tmp_path, brokers=kafka, topic=fire, dlq="hub.dlq.%s" % tag)
    with open(cfg, "a") as f:
        f.write("  - name: traffic\n    type: traffic\n    auth: none\n    listen: 127.0.0.1:0\n"
                "    topic: %s\n" % traffic)
    r = subprocess.run([BLOCKHUB, "check", "--config", cfg], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r
    lines = r.stderr.splitlines()
    assert lines[0] == "blockhub: config refused: 2 problems:", r.stderr
    assert ("  topic %s has 2 partitions but kafka.partitions is 3" % fire) in r.stderr
    assert ("  topic %s has 5 partitions but kafka.partitions is 3" % traffic) in r.stderr
    # A replication factor the one broker cannot give: every absent topic is named.
    bad = write(tmp_path, brokers=kafka, topic="dept.fire.new.%s" % tag,
                dlq="hub.dlq.new.%s" % tag)
    with open(bad) as f:
        text = f.read().replace("  partitions: 3\n", "  partitions: 3\n  replication: 3\n")
    with open(bad, "w") as f:
        f.write(text)
    r = subprocess.run([BLOCKHUB, "check", "--config", bad], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r
    for t in ("dept.fire.new.%s" % tag, "hub.dlq.new.%s" % tag):
        assert ("topic %s cannot be created: " % t) in r.stderr, r.stderr
    assert "Replication factor" in r.stderr or "replication" in r.stderr.lower(), r.stderr
    # Nothing was created by the check.
    md = admin.list_topics(timeout=30).topics
    assert "dept.fire.new.%s" % tag not in md and "hub.dlq.new.%s" % tag not in md
