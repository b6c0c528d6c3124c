"""Shared fixtures: a blockhub process, brokers, and independent helpers."""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

SRC = os.environ.get("BH_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tools"))
import bhcat  # noqa: E402

BLOCKHUB = os.environ.get("BH_BLOCKHUB", os.path.join(SRC, "build", "blockhub"))
# valgrind as the daemon needs it: blockhub links mimalloc (CMakeLists.txt,
# BH_MIMALLOC), whose malloc valgrind must replace as it does glibc's, or it
# sees neither leaks nor frees. mimalloc's C++ operators (RocksDB's new[] and
# delete[]) reach valgrind as plain malloc and free: a "mismatched free" it
# would report there cannot be one of blockhub's, which is C.
VALGRIND = ["valgrind", "-q", "--error-exitcode=99", "--soname-synonyms=somalloc=libmimalloc.so.2",
            "--show-mismatched-frees=no"]
WORLD = os.path.join(SRC, "tests", "data", "world")
SCHEMAS = os.path.join(SRC, "schemas")
LOCAL_KAFKA = os.path.join(SRC, "deploy", "kafka", "local-kafka")
TOKEN = "test-token-1"


# No silent skips: a test that cannot run its check fails, whatever the reason
# (a missing tool, broker or build), so a green suite means every check ran.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = "skipped, and blockhub's suite does not skip: %s" % (rep.longrepr,)


_deselected = []


def pytest_deselected(items):
    _deselected.extend(items)


def pytest_sessionfinish(session, exitstatus):
    """Beside the junit XML, how many tests were collected (a -k deselection
    included), so the test command can check that every collected test ran."""
    xml = getattr(session.config.option, "xmlpath", None)
    if xml:
        with open(xml + ".collected", "w") as f:
            f.write("%d\n" % (len(getattr(session, "items", [])) + len(_deselected)))


def free_port(pair=False):
    """A free loopback port (with PAIR, one whose successor is free too: a broker's controller)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if not pair or port >= 65535:
                return port
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                    return port
                except OSError:
                    continue


@pytest.fixture(scope="session")
def kafka():
    """The shared real broker started by the test command."""
    bs = os.environ.get("BH_KAFKA_BOOTSTRAP")
    if not bs:
        pytest.fail("BH_KAFKA_BOOTSTRAP is not set: run the suite with deploy/test.sh, "
                    "which starts a real broker with deploy/kafka/local-kafka")
    return bs


class Broker:
    """A broker of the test's own, for tests that stop or kill it."""

    def __init__(self, path):
        self.dir = str(path)
        self.port = free_port(pair=True)
        self.bootstrap = None

    def start(self):
        out = subprocess.run([LOCAL_KAFKA, "start", self.dir, str(self.port)], check=True,
                             stdout=subprocess.PIPE, text=True, timeout=180)
        self.bootstrap = out.stdout.strip().splitlines()[-1]
        return self.bootstrap

    def stop(self):
        subprocess.run([LOCAL_KAFKA, "stop", self.dir], check=True, timeout=90)

    def kill9(self):
        with open(os.path.join(self.dir, "kafka.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory):
    """The broker of own_broker: one per test file, started when a test first asks for it."""
    b = Broker(tmp_path_factory.mktemp("own-kafka"))
    yield b
    if b.bootstrap is not None:
        b.stop()


@pytest.fixture
def own_broker(module_broker):
    """A broker of the test's own that it may stop, kill or freeze: the file's tests take
    turns with one (a start costs a JVM's start), each getting it running and answering
    (thawed if a test left it frozen, started again if one left it down)."""
    b = module_broker
    if b.bootstrap is not None:
        try:
            with open(os.path.join(b.dir, "kafka.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGCONT)
        except (OSError, ValueError):
            pass
    b.start()  # local-kafka reuses a running broker once it answers metadata requests
    return b


class Hub:
    """One blockhub daemon with its own topics and its own ports.

    By default it runs one fire adapter. ADAPTERS adds more: a list of dicts,
    each a config entry (name, type and settings) written as YAML flow values;
    give each a unique topic with hub.topic("dept.x") to keep tests apart.
    """

    def __init__(self, tmp_path, brokers, extra_sets=(), fire=True, adapters=()):
        self.tag = uuid.uuid4().hex[:10]
        self.tmp_path = tmp_path
        self.port = free_port()
        self.fire_topic = self.topic("dept.fire")
        self.dlq_topic = self.topic("hub.dlq")
        self.brokers = brokers
        self.url = "http://127.0.0.1:%d/v1/fire/events" % self.port
        self.config = str(tmp_path / ("blockhub-%s.yaml" % self.tag))
        self.logpath = str(tmp_path / ("blockhub-%s.log" % self.tag))
        entries = []
        if fire:
            entries.append({"name": "fire", "type": "fire",
                            "listen": "127.0.0.1:%d" % self.port,
                            "tokens": [TOKEN, "other-token"], "topic": self.fire_topic})
        entries.extend(adapters)
        lines = [
            "kafka:",
            "  brokers: %s" % brokers,
            "  partitions: 3",
            "  replication: 1",
            "blocks:",
            "  map: %s" % os.path.join(WORLD, "blocks.geojson"),
            "schemas:",
            "  dir: %s" % SCHEMAS,
            "dead_letter:",
            "  topic: %s" % self.dlq_topic,
            "adapters:" if entries else "adapters: []",
        ]
        for e in entries:
            first = True
            for k, v in e.items():
                lines.append("%s%s: %s" % ("  - " if first else "    ", k, json.dumps(v, ensure_ascii=False)))
                first = False
        with open(self.config, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        self.sets = list(extra_sets)
        self.proc = None
        self.binary = BLOCKHUB

    def topic(self, base):
        """A topic name of this test's own."""
        return "%s.%s" % (base, self.tag)

    def start(self, timeout=60):
        args = [self.binary, "--config", self.config]
        for s in self.sets:
            args += ["--set", s]
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("blockhub exited %d:\n%s" % (self.proc.returncode,
                                                                    self.logtext()))
            text = self.logtext()
            if "hub: ready" in text or '"component":"hub","msg":"ready:' in text:
                return self
            time.sleep(0.05)
        raise AssertionError("blockhub not ready in %ds:\n%s" % (timeout, self.logtext()))

    def logtext(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def post(self, body, token=TOKEN, content_type="application/json", timeout=60, **kw):
        headers = {"Content-Type": content_type} if content_type else {}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        if isinstance(body, (list, dict)):
            body = json.dumps(body, ensure_ascii=False).encode("utf-8")
        return requests.post(self.url, data=body, headers=headers, timeout=timeout, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=90):
        """Stops the daemon (SIG None: one already sent) and returns its exit code.

        Fails on any sanitizer report in its log.
        """
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        if sig is not None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        finally:
            self.log.close()
        self.check_sanitizers()
        return rc

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()

    def check_sanitizers(self):
        text = self.logtext()
        bad = re.findall(r"(ERROR: AddressSanitizer.*|ERROR: LeakSanitizer.*|runtime error:.*)",
                         text)
        assert not bad, "sanitizer report:\n" + text


@pytest.fixture
def hub_factory(tmp_path):
    hubs = []

    def make(brokers, **kw):
        h = Hub(tmp_path, brokers, **kw)
        hubs.append(h)
        return h

    yield make
    for h in hubs:
        h.kill()


@pytest.fixture(scope="session")
def decoder():
    return bhcat.Decoder(SCHEMAS)


# --- an independent block resolver (docs/feeds.md, section 1), for expected keys ---

def _in_ring(x, y, ring):
    inside = False
    n = len(ring)
    for i in range(n - 1):
        x1, y1 = ring[i]
        x2, y2 = ring[i + 1]
        if (y1 > y) != (y2 > y):
            xi = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < xi:
                inside = not inside
    return inside


def _in_polygon(x, y, rings):
    return _in_ring(x, y, rings[0]) and not any(_in_ring(x, y, h) for h in rings[1:])


class Blocks:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            fc = json.load(f)
        self.blocks = {}
        for feat in fc["features"]:
            g = feat["geometry"]
            polys = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
            self.blocks[feat["properties"]["block_id"]] = (feat["properties"]["name"], polys)

    def locate(self, lon, lat):
        hits = sorted(b for b, (_, polys) in self.blocks.items()
                      if any(_in_polygon(lon, lat, p) for p in polys))
        return hits[0] if hits else None

    def resolve(self, grid=None, lon=None, lat=None):
        if grid is not None and grid in self.blocks:
            return grid
        if lon is not None and lat is not None:
            return self.locate(lon, lat)
        return None


@pytest.fixture(scope="session")
def blocks():
    return Blocks(os.path.join(WORLD, "blocks.geojson"))


# --- waiting, refusals and threads: a test fails loudly, never hangs or passes by accident ---


# BH_TEST_WAIT_SCALE (default 1) scales every timeout of a wait for something that should
# happen: the mutants run (tests/mutants/run.sh) sets 0.5, so that a test whose feature is
# broken fails sooner, while each wait stays many times longer than the plain build needs.
WAIT_SCALE = float(os.environ.get("BH_TEST_WAIT_SCALE") or 1)


def deadline_after(seconds):
    """time.monotonic()'s value when a wait of SECONDS (scaled by BH_TEST_WAIT_SCALE) is over."""
    return time.monotonic() + seconds * WAIT_SCALE


def wait_until(cond, what, timeout=60, hub=None, interval=0.05):
    """Polls COND() until it returns something true, and returns that.

    Fails the test saying WHAT was awaited after TIMEOUT seconds, or as soon as
    HUB's daemon exits (its log is in the message either way).
    """
    timeout *= WAIT_SCALE
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if hub is not None and hub.proc is not None and hub.proc.poll() is not None:
            raise AssertionError("waiting for %s: blockhub exited %d:\n%s"
                                 % (what, hub.proc.returncode, hub.logtext()))
        if time.monotonic() > deadline:
            raise AssertionError("waited %gs for %s in vain%s"
                                 % (timeout, what, ":\n" + hub.logtext() if hub else ""))
        time.sleep(interval)


def wait_log(hub, text, timeout=60, count=1):
    """Waits until TEXT is in HUB's log (COUNT times at least); returns the log."""
    return wait_until(lambda: hub.logtext() if hub.logtext().count(text) >= count else None,
                      "%r in the log%s" % (text, " %d times" % count if count > 1 else ""),
                      timeout=timeout, hub=hub)


def start_refused(hub, timeout=60):
    """Starts HUB's daemon expecting it to refuse: asserts that it exited with a non-zero code
    without ever being ready (so it never listened), and returns (exit code, its stderr)."""
    args = [hub.binary, "--config", hub.config]
    for s in hub.sets:
        args += ["--set", s]
    errpath = hub.logpath + ".stderr"
    hub.log = open(hub.logpath, "ab")
    with open(errpath, "wb") as err:
        hub.proc = subprocess.Popen(args, stdout=hub.log, stderr=err)

    def stderr():
        with open(errpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    deadline = time.monotonic() + timeout
    while hub.proc.poll() is None:
        started = "hub: ready" in hub.logtext() + stderr()
        if started or time.monotonic() > deadline:
            hub.kill()
            raise AssertionError("blockhub did not refuse: %s:\n%s%s" % (
                "it started" if started else "still running after %ds" % timeout,
                hub.logtext(), stderr()))
        time.sleep(0.05)
    hub.log.close()
    assert "hub: ready" not in hub.logtext() + stderr(), \
        "blockhub started:\n" + hub.logtext() + stderr()
    assert hub.proc.returncode != 0, "blockhub exited 0:\n" + hub.logtext() + stderr()
    return hub.proc.returncode, stderr()


def run_threads(*fns, timeout=300):
    """Runs each callable in a thread of its own and returns their results in order; an
    exception raised in any of them (a failed assert too) is raised here, in the test."""
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(fns)) as pool:
        futures = [pool.submit(f) for f in fns]
        return [f.result(timeout=timeout) for f in futures]


class Threads:
    """Threads whose failures fail the test: start(fn, *args) each, then join(), which
    raises the first exception any of them raised (pytest would only warn of it)."""

    def __init__(self):
        self.threads, self.errors = [], []

    def start(self, fn, *args):
        def run():
            try:
                fn(*args)
            except BaseException as e:  # noqa: B902 - re-raised in the test's thread
                self.errors.append(e)
        t = threading.Thread(target=run, daemon=True)
        self.threads.append(t)
        t.start()
        return t

    def join(self, timeout=120):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = sum(t.is_alive() for t in self.threads)
        if self.errors:
            raise self.errors[0]
        assert not alive, "%d thread(s) still running after %ds" % (alive, timeout)


@contextlib.contextmanager
def stalled(broker):
    """BROKER's JVM stopped (SIGSTOP) for the block: connections stay up, nothing is
    acknowledged; it goes on (SIGCONT) when the block ends, however it ends."""
    with open(os.path.join(broker.dir, "kafka.pid")) as f:
        pid = int(f.read().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def proc_io(pid):
    """/proc/PID/io as a dict: rchar is every byte the process's threads read (files too)."""
    with open("/proc/%d/io" % pid) as f:
        return {k: int(v) for k, v in (line.split(":") for line in f)}
