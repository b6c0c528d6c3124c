"""The daemon under valgrind: start, feed, SIGTERM, with no memory error.

ASan cannot see inside libuv and h2o (they are not instrumented), so a handle
used after it was freed by a close callback only shows here. Runs in the plain
build only (tests/integration/CMakeLists.txt leaves it out of the ASan build).
"""
import os
import signal
import subprocess
import time

from conftest import BLOCKHUB, TOKEN, WORLD, Hub

SAMPLE = os.path.join(WORLD, "samples", "fire", "webhook-batch.json")


def test_daemon_start_feed_sigterm(tmp_path):
    hub = Hub(tmp_path, "embedded")
    log = tmp_path / "valgrind.log"
    args = ["valgrind", "-q", "--error-exitcode=99", "--log-file=%s" % log, BLOCKHUB,
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
