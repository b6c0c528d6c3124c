"""The daemon under valgrind: start, feed, SIGTERM, with no memory error.

ASan cannot see inside libuv and h2o (they are not instrumented), so a handle
used after it was freed by a close callback only shows here. Runs in the plain
build only (tests/integration/CMakeLists.txt leaves it out of the ASan build).
"""
import os
import re
import signal
import socket
import subprocess
import time
import uuid

import requests

from conftest import BLOCKHUB, VALGRIND, SCHEMAS, SRC, TOKEN, WORLD, Hub, free_port

# Bugs of the libraries' own (tests/valgrind.supp says which and why).
SUPPRESSIONS = os.path.join(SRC, "tests", "valgrind.supp")

SAMPLE = os.path.join(WORLD, "samples", "fire", "webhook-batch.json")


def test_daemon_start_feed_sigterm(tmp_path):
    hub = Hub(tmp_path, "embedded")
    log = tmp_path / "valgrind.log"
    args = VALGRIND + ["--suppressions=%s" % SUPPRESSIONS,
            "--log-file=%s" % log, BLOCKHUB,
            "--config", hub.config]
    with open(hub.logpath, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while "hub: ready" not in hub.logtext():
                assert proc.poll() is None, hub.logtext()
                assert time.monotonic() < deadline, hub.logtext()
                time.sleep(0.1)
            for _ in range(3):
                r = subprocess.run(["curl", "-sS", "-X", "POST", "-H",
                                    "Authorization: Bearer " + TOKEN, "-H",
                                    "Content-Type: application/json", "--data-binary",
                                    "@" + SAMPLE, hub.url], stdout=subprocess.PIPE, text=True,
                                   timeout=60)
                assert '"accepted":8' in r.stdout, r.stdout
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    report = log.read_text()
    assert rc == 0 and report.strip() == "", "exit %d:\n%s\n%s" % (rc, report, hub.logtext())


def without_rw_hint_warnings(report):
    """REPORT without valgrind's warning about fcntl F_SET_RW_HINT (1036): RocksDB, the join's
    state store, gives its files a write-lifetime hint, a command valgrind does not know; it
    warns and fails the call, which RocksDB ignores (a hint). Not an error of blockhub's."""
    return "\n".join(line for line in report.splitlines()
                     if not re.fullmatch(r"==\d+== Warning: unimplemented fcntl command: 1036",
                                         line))


def test_every_part_closes_its_handles_at_exit(kafka, tmp_path):
    """fire, traffic, market, the join and its admin API on a real broker,
    with clients still connected at SIGTERM (an idle keep-alive connection to
    each HTTP server, a traffic gateway): the daemon drains, closes every
    handle (the loop closes with none left) and valgrind finds no error and no
    definite leak."""
    tag = uuid.uuid4().hex[:10]
    spool = tmp_path / "spool"
    spool.mkdir()
    fport, tport, aport = free_port(), free_port(), free_port()
    topics = {d: "dept.%s.exit.%s" % (d, tag) for d in ("fire", "traffic", "market")}
    config = tmp_path / "blockhub.yaml"
    config.write_text("\n".join([
        "kafka:", "  brokers: %s" % kafka, "  partitions: 2", "  replication: 1",
        "blocks:", "  map: %s" % os.path.join(WORLD, "blocks.geojson"),
        "schemas:", "  dir: %s" % SCHEMAS,
        "dead_letter:", "  topic: hub.dlq.exit.%s" % tag,
        "adapters:",
        "  - {name: fire, type: fire, listen: '127.0.0.1:%d', tokens: [%s], topic: %s}"
        % (fport, TOKEN, topics["fire"]),
        "  - {name: traffic, type: traffic, auth: none, listen: '127.0.0.1:%d', topic: %s}"
        % (tport, topics["traffic"]),
        "  - {name: market, type: market, spool_dir: '%s', topic: %s}" % (spool, topics["market"]),
        "join:", "  enabled: true", "  group: exit-%s" % tag,
        "  view_topic: block.view.exit.%s" % tag, "  state_topic: block.state.exit.%s" % tag,
        "  inputs:",
        "    - {name: market, type: avro, topic: %s, id_field: record_id, type_field: event_type}"
        % topics["market"],
        "    - {name: traffic, type: avro, topic: %s, type_field: type}" % topics["traffic"],
        "    - {name: fire, type: avro, topic: %s, type_field: category}" % topics["fire"],
        "admin:", "  listen: 127.0.0.1:%d" % aport, ""]))
    logpath = tmp_path / "blockhub.log"
    vlog = tmp_path / "valgrind.log"
    args = VALGRIND + ["--leak-check=full",
            "--errors-for-leak-kinds=definite", "--suppressions=%s" % SUPPRESSIONS,
            "--log-file=%s" % vlog, BLOCKHUB,
            "--config", str(config)]
    held = []
    with open(logpath, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while "hub: ready" not in logpath.read_text(errors="replace"):
                assert proc.poll() is None, logpath.read_text(errors="replace")
                assert time.monotonic() < deadline, logpath.read_text(errors="replace")
                time.sleep(0.1)
            s = requests.Session()
            r = s.post("http://127.0.0.1:%d/v1/fire/events" % fport,
                       data=open(SAMPLE, "rb").read(),
                       headers={"Authorization": "Bearer " + TOKEN,
                                "Content-Type": "application/json"}, timeout=120)
            assert r.status_code == 200 and r.json()["accepted"] == 8, r.text
            held.append(s)  # its keep-alive connection stays open
            a = requests.Session()
            while True:  # the admin API answers once the join has its partitions
                assert time.monotonic() < deadline, logpath.read_text(errors="replace")
                r = a.get("http://127.0.0.1:%d/join" % aport, timeout=60)
                if r.status_code == 200 and not r.json()["restoring"] and r.json()["live"]:
                    break
                time.sleep(0.2)
            held.append(a)
            g = socket.create_connection(("127.0.0.1", tport), timeout=60)
            held.append(g)
            g.sendall(b'{"id":"exit-1","type":"jam","grid":"none","time":"2026-01-01T00:00:00Z"}\n')
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for h in held:
                h.close()
    text = logpath.read_text(errors="replace")
    report = without_rw_hint_warnings(vlog.read_text())
    assert rc == 0 and report.strip() == "", "exit %d:\n%s\n%s" % (rc, report, text)
    assert "hub: stopped" in text, text
    for bad in ("still open at exit", "handle is still"):
        assert bad not in text, text
