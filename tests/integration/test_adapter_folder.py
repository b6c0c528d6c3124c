"""A fourth adapter is a folder and nothing else (issue: one component interface).

tests/adapters/ticks/ holds a test-only adapter: its C file and its schema.
The test build links every folder under tests/adapters/ beside the real
adapters into blockhub_test_adapters with the registry generator that serves
adapters/. These tests show that the folder alone makes a working department:
its records reach Kafka through the shared publishing path (the key, the two
headers), decoded by fastavro with the folder's own schema; the daemon built
without the folder does not know the type; and no file outside the folder
names it.
"""
import os
import shutil
import signal
import subprocess

import bhcat
from conftest import SCHEMAS, SRC, start_refused, wait_log

TEST_BINARY = os.environ.get("BH_BLOCKHUB_TEST_ADAPTERS",
                             os.path.join(SRC, "build", "tests", "blockhub_test_adapters"))
FOLDER = os.path.join(SRC, "tests", "adapters", "ticks")
BLOCK = "440303-001"


def schemas_with_ticks(tmp_path):
    d = tmp_path / "schemas"
    d.mkdir()
    for name in os.listdir(SCHEMAS):
        shutil.copy(os.path.join(SCHEMAS, name), d / name)
    shutil.copy(os.path.join(FOLDER, "ticks.avsc"), d / "ticks.avsc")
    return str(d)


def ticks_hub(hub_factory, kafka, tmp_path, count):
    schemas = schemas_with_ticks(tmp_path)
    probe = hub_factory(kafka, fire=False)
    topic = probe.topic("test.ticks")
    h = hub_factory(kafka, fire=False, adapters=[
        {"name": "ticks", "type": "ticks", "block": BLOCK, "count": count, "topic": topic}],
        extra_sets=["schemas.dir=%s" % schemas])
    h.ticks_topic = topic
    h.schemas = schemas
    return h


def test_a_folder_is_a_working_adapter(kafka, hub_factory, tmp_path):
    h = ticks_hub(hub_factory, kafka, tmp_path, 50)
    h.binary = TEST_BINARY
    h.start()
    assert "ready: 1 adapter(s)" in h.logtext()
    wait_log(h, "published 50 tick(s)")
    assert h.stop() == 0, h.logtext()

    records = bhcat.consume_all(kafka, h.ticks_topic)
    decoder = bhcat.Decoder(h.schemas)
    seen = []
    for r in records:
        name, rec = decoder.decode(r["value"])
        assert name == "blockhub.test.Tick"
        assert r["key"] == BLOCK.encode()
        assert rec["block_id"] == BLOCK and rec["adapter"] == "ticks"
        assert r["headers"]["blockhub.adapter"] == b"ticks"
        assert r["headers"]["blockhub.event_id"] == ("tick-%d" % rec["seq"]).encode()
        seen.append(rec["seq"])
    assert sorted(seen) == list(range(50))


def test_without_the_folder_the_type_is_unknown(kafka, hub_factory, tmp_path):
    h = ticks_hub(hub_factory, kafka, tmp_path, 5)
    rc, err = start_refused(h)
    assert rc == 2
    assert "ticks" in err and "fire" in err, err  # the unknown type, and the known ones


def test_nothing_outside_the_folder_names_it():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=SRC, check=True,
                           capture_output=True).stdout.decode().split("\0")
    here = os.path.relpath(__file__, SRC)
    named = []
    for f in files:
        if not f or f.startswith("tests/adapters/ticks/") or f == here or f.endswith(".md"):
            continue
        path = os.path.join(SRC, f)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as fh:
            if b"ticks" in fh.read():
                named.append(f)
    assert named == [], "files outside tests/adapters/ticks name the adapter: %s" % named
    assert len(files) > 100  # the listing is the repository's


def test_stop_while_publishing_exits_clean(kafka, hub_factory, tmp_path):
    # A component stopped in the middle of its work finishes what it handed to Kafka.
    h = ticks_hub(hub_factory, kafka, tmp_path, 1000000)
    h.binary = TEST_BINARY
    h.start()
    wait_log(h, "tick(s) to")
    assert h.stop(signal.SIGTERM) == 0, h.logtext()
    assert "stopped with undelivered" not in h.logtext()
