"""blockhub on a three-node Kafka cluster (replication factor 3, min.insync.replicas 2) under
broker and process faults (issue 16).

One blockhub runs the fire, traffic and market adapters and the join against a cluster of
its own (deploy/kafka/local-kafka start DIR --nodes 3). A steady mixed load runs through
each phase:

  a. the leader of dept.fire's partition 0 is killed -9 five times (restarted each time);
  b. two brokers are down together (below min ISR): fire answers 503 with Retry-After,
     then both come back and every flow resumes;
  c. the broker that is the join's transaction coordinator is killed, then the group
     coordinator's (when it is another broker);
  d. blockhub itself is killed -9 and restarted;
  e. a second join process joins the group, takes a share and is killed -9: the survivor
     answers for every block.

After each phase the load stops and, read back with read_committed consumers: every fire
event that got a 2xx is in dept.fire, every market row and traffic line is in its topic,
and the last view of every block in block.view equals the truth computed from what the
test sent. The fire sender resends a request that got 503 or no answer (the contract),
the traffic sender resends lines a dead connection may have lost (the gateway's); copies
carry the same event id, and the join counts an event once.
"""
import csv
import datetime
import io
import json
import os
import random
import socket
import subprocess
import threading
import time
import uuid

import pytest
import requests
from confluent_kafka.admin import AdminClient

import bhcat
import join_helpers as jh
from conftest import LOCAL_KAFKA, SCHEMAS, TOKEN, WORLD, Blocks, free_port

NODES = 3
PARTITIONS = 3
WINDOW_MS = jh.WINDOW_MS
SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))
BASE_MS = 1795738500000
SPAN_S = 3 * 86400
FIRE_TYPES = ["alarm", "hazard", "inspection", "rectified", "drill"]
TRAFFIC_TYPES = ["accident", "congestion", "ebike_violation", "motorcycle_violation",
                 "illegal_parking", "signal_fault", "red_light"]
MARKET_HEADER = ["记录编号", "统一社会信用代码", "主体名称", "事项类型", "处理结果", "罚没金额",
                 "经营地址", "网格编码", "经度", "纬度", "发生时间"]
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def uscc(body17):
    """GB 32100-2015: the check character of 17 characters (weights 3^i mod 31)."""
    c = 31 - sum(USCC_CHARS.index(ch) * pow(3, i, 31) for i, ch in enumerate(body17)) % 31
    return body17 + USCC_CHARS[0 if c == 31 else c]


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception as e:  # a broker may be down: try again until the deadline
            last = e
        time.sleep(0.2)
    raise AssertionError("timed out after %ds waiting for %s (last error: %r)"
                         % (timeout, what, last))


def java_hash(s):
    """String.hashCode (UTF-16 code units) as a signed 32-bit int."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xffffffff
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_partition(key, partitions):
    """Kafka's partitionFor of a group or transactional id: Utils.abs(hashCode) % count."""
    h = java_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


# --- the cluster --------------------------------------------------------------------------

def free_base():
    """A first port with the 2 * NODES ports from it free, below the ephemeral range."""
    for base in range(29192, 32700, 16):
        socks = []
        try:
            for p in range(base, base + 2 * NODES):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free ports for the cluster")


class Cluster:
    def __init__(self, path):
        self.dir = str(path)
        self.base = free_base()
        self.bootstrap = None

    def lk(self, *args, timeout=240):
        return subprocess.run([LOCAL_KAFKA] + list(args), check=True, stdout=subprocess.PIPE,
                              text=True, timeout=timeout).stdout.strip().splitlines()

    def start(self):
        self.bootstrap = self.lk("start", self.dir, "--nodes", str(NODES), str(self.base))[-1]
        assert self.bootstrap == ",".join("127.0.0.1:%d" % (self.base + 2 * i)
                                          for i in range(NODES)), self.bootstrap
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self.bootstrap

    def kill(self, node):
        self.lk("kill", self.dir, str(node))

    def start_node(self, node):
        self.lk("start-node", self.dir, str(node))

    def stop(self):
        self.lk("stop", self.dir, timeout=180)

    def metadata(self):
        return self.admin.list_topics(timeout=10)

    def leader(self, topic, partition):
        return self.metadata().topics[topic].partitions[partition].leader

    def fully_replicated(self):
        """Every partition of every topic (internal ones too) has a leader and 3 in sync."""
        md = self.metadata()
        if len(md.brokers) != NODES:
            return False
        return all(p.leader >= 0 and len(p.isrs) == NODES
                   for t in md.topics.values() for p in t.partitions.values())

    def wait_healthy(self, timeout=120):
        wait_for(self.fully_replicated, timeout, "every partition to have 3 replicas in sync")


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "kafka")
    try:
        c.start()
        yield c
    finally:
        c.stop()


# --- blockhub -------------------------------------------------------------------------------

class ClusterHub(jh.JoinHub):
    """A blockhub on the cluster: the join (with its admin API) and, with ADAPTERS, the fire,
    traffic and market adapters; the topics it creates have 3 replicas."""

    def __init__(self, tmp_path, w, adapters):
        inputs = [d.input_conf(w.topics[d.name]) for d in w.depts]
        super().__init__(tmp_path, w.bootstrap, SCHEMAS, inputs, w.view, w.state, w.group,
                         window="1h", partitions=PARTITIONS)
        self.dlq_topic = w.dlq
        lines = [
            "log:", "  level: info",
            "kafka:", "  brokers: %s" % w.bootstrap, "  partitions: %d" % PARTITIONS,
            "  replication: %d" % NODES,
            "blocks:", "  map: %s" % os.path.join(WORLD, "blocks.geojson"),
            "schemas:", "  dir: %s" % SCHEMAS,
            "dead_letter:", "  topic: %s" % w.dlq,
        ]
        if adapters:
            self.url = "http://127.0.0.1:%d/v1/fire/events" % self.port
            self.traffic_port = w.traffic_port
            lines += [
                "adapters:",
                "  - name: fire", "    type: fire", "    listen: 127.0.0.1:%d" % self.port,
                "    tokens: [%s]" % TOKEN, "    topic: %s" % w.topics["fire"],
                "    ack_timeout: 3s", "    retry_after: 1s",
                "  - name: traffic", "    type: traffic", "    auth: none",
                "    listen: 127.0.0.1:%d" % w.traffic_port, "    topic: %s" % w.topics["traffic"],
                "  - name: market", "    type: market", "    spool_dir: %s" % w.spool,
                "    topic: %s" % w.topics["market"], "    settle_time: 200ms",
            ]
        else:
            lines += ["adapters: []"]
        lines += ["join:", "  enabled: true", "  group: %s" % w.group,
                  "  view_topic: %s" % w.view, "  state_topic: %s" % w.state,
                  "  window: 1h", "  session_timeout: 6s", "  transaction_timeout: 10s",
                  "  state_dir: %s" % self.state_dir, "  memory_limit: 64MiB", "  inputs:"]
        for inp in inputs:
            first = True
            for k, v in inp.items():
                lines.append("%s%s: %s" % ("    - " if first else "      ", k, json.dumps(v)))
                first = False
        lines += ["admin:", "  listen: 127.0.0.1:%d" % self.admin_port]
        with open(self.config, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


# --- the load -------------------------------------------------------------------------------

def inner_points(blocks):
    """(block, lon, lat) for the blocks where a simple inner point is found: traffic carries
    coordinates only, resolved by the independent resolver of conftest."""
    out = []
    for bid, (_, polys) in sorted(blocks.blocks.items()):
        ring = polys[0][0]
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        cands = [(sum(xs[:-1]) / (len(xs) - 1), sum(ys[:-1]) / (len(ys) - 1))]
        for i in range(1, 8):
            for j in range(1, 8):
                cands.append((min(xs) + (max(xs) - min(xs)) * i / 8,
                              min(ys) + (max(ys) - min(ys)) * j / 8))
        for x, y in cands:
            x, y = round(x, 6), round(y, 6)
            if blocks.locate(x, y) == bid:
                out.append((bid, x, y))
                break
    return out


class Load:
    """Fire webhooks, traffic lines and market files at a steady pace, from threads; every
    event sent is kept as (dept, id, block, type, at) for the truth."""

    def __init__(self, w, hub, points):
        self.w = w
        self.hub = hub
        self.points = points
        self.block_ids = sorted(w.names)
        self.rnd = random.Random(1601)
        self.events = []           # everything sent (and, for fire, acknowledged in the end)
        self.fire_acked = set()
        self.fire_sent = {}        # id -> event
        self.traffic_sent = {}     # id -> (event, line)
        self.market_rows = {}      # id -> event
        self.market_files = []
        self.statuses = []         # (monotonic time the request was sent, status, Retry-After)
        self.seq = 0
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = []
        self.errors = []
        self.sock = None

    def _at(self):
        return BASE_MS + self.rnd.randrange(SPAN_S) * 1000

    def _next(self, prefix):
        with self.lock:
            self.seq += 1
            return "%s-%06d" % (prefix, self.seq)

    # fire: batches of 8 every ~0.25 s; a 503 or a lost answer is resent until 2xx
    def _fire(self):
        while not self.stop_flag.is_set():
            batch, evs = [], []
            for _ in range(8):
                eid, block = self._next("FI"), self.rnd.choice(self.block_ids)
                cat, at = self.rnd.choice(FIRE_TYPES), self._at()
                t = datetime.datetime.fromtimestamp(at / 1000, SHANGHAI).isoformat()
                batch.append({"id": eid, "category": cat, "unit": "单位%s" % eid, "level": "low",
                              "grid_code": block, "occurred_at": t})
                evs.append(("fire", eid, block, cat, at))
            with self.lock:
                for e in evs:
                    self.fire_sent[e[1]] = e
            self._post_until_acked(batch, evs)
            self.stop_flag.wait(0.25)

    def _post_until_acked(self, batch, evs):
        body = json.dumps(batch, ensure_ascii=False).encode()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                r = requests.post(self.hub.url, data=body, timeout=30, headers={
                    "Content-Type": "application/json", "Authorization": "Bearer " + TOKEN})
            except requests.RequestException:
                with self.lock:
                    self.statuses.append((sent, None, None))
                time.sleep(0.2)
                continue
            with self.lock:
                self.statuses.append((sent, r.status_code, r.headers.get("Retry-After")))
            if 200 <= r.status_code < 300:
                assert r.json() == {"accepted": len(batch), "rejected": []}, r.text
                with self.lock:
                    self.fire_acked.update(e[1] for e in evs)
                    self.events.extend(evs)
                return
            assert r.status_code == 503, (r.status_code, r.text)
            time.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))
        raise AssertionError("fire: no 2xx for a request in 240 s")

    # traffic: 2 lines every ~0.1 s over one connection; a broken one is replaced and what
    # was written on it sent again
    def _traffic_send(self, lines):
        data = b"".join(lines)
        for _ in range(600):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(("127.0.0.1", self.hub.traffic_port), 5)
                    self.on_conn = []
                    if self.resend_on_connect:
                        data = b"".join(self.resend_on_connect) + data
                        self.resend_on_connect = []
                self.sock.sendall(data)
                self.on_conn.extend(lines)
                return
            except OSError:
                if self.sock is not None:
                    self.resend_on_connect = list(self.on_conn)
                    self.sock.close()
                    self.sock = None
                time.sleep(0.2)
        raise AssertionError("traffic: could not send for 120 s")

    def _traffic(self):
        while not self.stop_flag.is_set():
            lines = []
            for _ in range(2):
                block, lon, lat = self.rnd.choice(self.points)
                eid, typ, at = self._next("TR"), self.rnd.choice(TRAFFIC_TYPES), self._at()
                line = json.dumps({"event_id": eid, "device": "CAM-C-%03d" % (self.seq % 100),
                                   "type": typ, "lon": lon, "lat": lat, "severity": 2,
                                   "ts": at}).encode() + b"\n"
                e = ("traffic", eid, block, typ, at)
                with self.lock:
                    self.traffic_sent[eid] = (e, line)
                    self.events.append(e)
                lines.append(line)
            self._traffic_send(lines)
            self.stop_flag.wait(0.1)

    # market: a file of 20 rows every ~2 s, dropped whole (written, then renamed)
    def _market(self):
        while not self.stop_flag.is_set():
            buf = io.StringIO()
            wr = csv.writer(buf, lineterminator="\r\n")
            wr.writerow(MARKET_HEADER)
            for _ in range(20):
                rid, block = self._next("MK"), self.rnd.choice(self.block_ids)
                typ, at = self.rnd.choice(jh.MARKET_TYPES), self._at()
                t = datetime.datetime.fromtimestamp(at / 1000, SHANGHAI)
                wr.writerow([rid, uscc("91440303%09d" % self.rnd.randrange(10 ** 9)),
                             "样例商行%s" % rid, typ, "合格", "", "", block, "", "",
                             t.strftime("%Y-%m-%d %H:%M:%S")])
                e = ("market", rid, block, typ, at)
                with self.lock:
                    self.market_rows[rid] = e
                    self.events.append(e)
            name = "scjg_%s.csv" % uuid.uuid4().hex[:12]
            part = os.path.join(self.w.spool, name + ".part")
            with open(part, "wb") as f:
                f.write(buf.getvalue().encode("gb18030"))
            os.rename(part, os.path.join(self.w.spool, name))
            self.market_files.append(name)
            self.stop_flag.wait(2)

    def _run(self, fn):
        try:
            fn()
        except BaseException as e:  # reported by stop()
            self.errors.append(e)

    def start(self):
        self.stop_flag.clear()
        self.sock, self.on_conn, self.resend_on_connect = None, [], []
        self.threads = [threading.Thread(target=self._run, args=(fn,), daemon=True)
                        for fn in (self._fire, self._traffic, self._market)]
        for t in self.threads:
            t.start()

    def stop(self):
        """Stops sending; returns when the fire requests in flight are acknowledged."""
        self.stop_flag.set()
        for t in self.threads:
            t.join(300)
            assert not t.is_alive(), "a load thread hangs"
        assert not self.errors, self.errors
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# --- verification ---------------------------------------------------------------------------

def ids_in(bootstrap, topic):
    return {m["headers"]["blockhub.event_id"].decode()
            for m in jh.read_committed(bootstrap, topic)}


def settle_and_verify(w, load, phase):
    """After the load stopped: everything sent is in its topic, the views equal the truth."""
    bs = w.bootstrap
    done, failed = os.path.join(w.spool, "done"), os.path.join(w.spool, "failed")
    wait_for(lambda: all(os.path.exists(os.path.join(done, n)) for n in load.market_files),
             180, "every market file to be done")
    assert not os.path.isdir(failed) or not os.listdir(failed), os.listdir(failed)

    fire = ids_in(bs, w.topics["fire"])
    lost = load.fire_acked - fire
    assert not lost, "%s: %d acknowledged fire events are not in Kafka: %s" % (
        phase, len(lost), sorted(lost)[:5])
    market = ids_in(bs, w.topics["market"])
    missing = set(load.market_rows) - market
    assert not missing, "%s: market rows missing: %s" % (phase, sorted(missing)[:5])

    # Lines a killed daemon had read but not produced are sent again by the gateway (the
    # stream acknowledges nothing); copies carry the same event id.
    resent = [time.monotonic()]

    def traffic_complete():
        have = ids_in(bs, w.topics["traffic"])
        missing = sorted(set(load.traffic_sent) - have)
        if missing and time.monotonic() - resent[0] > 5:
            resent[0] = time.monotonic()
            s = socket.create_connection(("127.0.0.1", load.hub.traffic_port), 10)
            s.sendall(b"".join(load.traffic_sent[i][1] for i in missing))
            s.close()
        return not missing
    wait_for(traffic_complete, 120, "every traffic line in its topic")

    expected = jh.truth(load.events, WINDOW_MS, w.names)
    try:
        jh.wait_views(bs, w.view, w.decoder, expected, WINDOW_MS, timeout=150,
                      partitions=PARTITIONS)
    except AssertionError as e:  # what the join did, to tell why
        joins = [line for line in load.hub.logtext().splitlines() if " join" in line]
        raise AssertionError("%s: %s\nthe join's last log lines:\n%s"
                             % (phase, e, "\n".join(joins[-120:]))) from None
    print("phase %s, done at %.0f s: fire %d acknowledged, all in dept.fire (%d records); "
          "market %d rows; traffic %d lines; %d blocks' views equal the truth"
          % (phase, time.monotonic() - w.t0, len(load.fire_acked), len(fire), len(market),
             len(load.traffic_sent), len(expected)), flush=True)
    return expected


def wait_acks(load, more, timeout=120):
    have = len(load.fire_acked)
    wait_for(lambda: len(load.fire_acked) >= have + more, timeout,
             "%d more fire acknowledgements" % more)


def test_cluster_faults(cluster, tmp_path):
    t0 = time.monotonic()

    class W:
        pass

    w = W()
    w.t0 = t0
    tag = uuid.uuid4().hex[:8]
    w.bootstrap = cluster.bootstrap
    w.names = jh.block_ids()
    w.depts = [jh.Department(d, SCHEMAS) for d in jh.DEPTS]
    w.decoder = bhcat.Decoder(SCHEMAS)
    w.topics = {d: "dept.%s.%s" % (d, tag) for d in jh.DEPTS}
    w.view, w.state, w.group = "block.view.%s" % tag, "block.view.state.%s" % tag, "join-" + tag
    w.dlq = "hub.dlq.%s" % tag
    w.spool = str(tmp_path / "spool")
    os.makedirs(w.spool)
    w.traffic_port = free_port()
    points = inner_points(Blocks(os.path.join(WORLD, "blocks.geojson")))
    assert len(points) >= 20, len(points)

    hub = ClusterHub(tmp_path, w, adapters=True).start(timeout=120)
    others = []
    try:
        hub.wait_live(n=PARTITIONS)
        md = cluster.metadata()
        for t in list(w.topics.values()) + [w.view, w.state]:
            assert all(len(p.replicas) == NODES for p in md.topics[t].partitions.values()), t
        cluster.wait_healthy()
        load = Load(w, hub, points)
        print("cluster and blockhub up after %.0f s" % (time.monotonic() - t0), flush=True)

        # (a) the leader of dept.fire's partition 0, killed -9 five times
        load.start()
        wait_acks(load, 40)
        for _ in range(5):
            leader = cluster.leader(w.topics["fire"], 0)
            assert leader >= 1
            cluster.kill(leader)
            wait_for(lambda: cluster.leader(w.topics["fire"], 0) not in (-1, leader), 60,
                     "a new leader of the fire topic's partition 0")
            wait_acks(load, 16)  # fire goes on with one broker down
            cluster.start_node(leader)
            cluster.wait_healthy()
        load.stop()
        settle_and_verify(w, load, "a (leader killed 5 times)")

        # (b) two brokers down: below min.insync.replicas nothing can be acknowledged
        load.start()
        wait_acks(load, 16)
        down = [n for n in range(1, NODES + 1)][:2]
        killed_at = time.monotonic()
        for n in down:
            cluster.kill(n)

        def answered_503():
            with load.lock:
                return any(s == 503 and at > killed_at for at, s, _ in load.statuses)
        try:
            wait_for(answered_503, 60, "fire to answer 503 with two of three brokers down")
        except AssertionError as e:
            with load.lock:
                ok = sum(1 for at, s, _ in load.statuses if at > killed_at and s == 200)
            raise AssertionError("%s; it answered 2xx %d times since, for events Kafka cannot "
                                 "have acknowledged" % (e, ok)) from None
        # a request of its own: 503 with Retry-After, nothing reported accepted, within
        # ack_timeout (3s) and a margin: the join's revocation, while the group coordinator
        # is unreachable, never holds up the loop the adapters share
        probe = [{"id": "FI-PROBE-%s" % tag, "category": "alarm", "unit": "probe",
                  "level": "low", "grid_code": load.block_ids[0],
                  "occurred_at": "2026-11-27T08:15:00+08:00"}]
        r = requests.post(hub.url, json=probe, timeout=3 + 3,
                          headers={"Authorization": "Bearer " + TOKEN})
        assert r.status_code == 503, (r.status_code, r.text)
        assert r.headers.get("Retry-After") == "1", r.headers
        assert "accepted" not in r.json()
        # the probe may still reach Kafka later (a 503 promises nothing either way): a client
        # resends it, and so does this test once the cluster is back
        with load.lock:
            rejected_503 = sum(1 for at, s, _ in load.statuses if at > killed_at and s == 503)
        for n in down:
            cluster.start_node(n)
        wait_acks(load, 40)  # fire resumes
        cluster.wait_healthy()
        probe_at = int(datetime.datetime(2026, 11, 27, 8, 15, tzinfo=SHANGHAI).timestamp() * 1000)
        load._post_until_acked(probe, [("fire", probe[0]["id"], probe[0]["grid_code"], "alarm",
                                        probe_at)])
        load.stop()
        print("phase b: %d answers 503 + Retry-After while below min ISR" % rejected_503)
        settle_and_verify(w, load, "b (two brokers down)")

        # (c) the join's transaction coordinator, then its group coordinator
        load.start()
        wait_acks(load, 16)
        txn_part = coordinator_partition(hub.status()["transactional_id"], 6)
        txn_coord = cluster.leader("__transaction_state", txn_part)
        group_coord = cluster.admin.describe_consumer_groups([w.group])[w.group].result(
            30).coordinator.id
        for node in dict.fromkeys([txn_coord, group_coord]):
            commits = hub.status()["stats"]["commits"]
            cluster.kill(node)
            wait_acks(load, 16)
            # the join commits again with the coordinator gone
            wait_for(lambda: hub.status()["stats"]["commits"] > commits + 3, 120,
                     "the join to commit without broker %d" % node)
            cluster.start_node(node)
            cluster.wait_healthy()
        load.stop()
        assert hub.status()["running"]
        settle_and_verify(w, load, "c (transaction coordinator %d, group coordinator %d killed)"
                          % (txn_coord, group_coord))

        # (d) blockhub itself killed -9 under load, and restarted
        load.start()
        wait_acks(load, 40)
        hub.kill9()
        hub.start(timeout=120)
        wait_acks(load, 40)
        hub.wait_live(n=PARTITIONS)
        load.stop()
        settle_and_verify(w, load, "d (blockhub killed -9)")

        # (e) a second join process in the group; it is killed -9, the survivor takes its
        # blocks and answers for every block
        second = ClusterHub(tmp_path, w, adapters=False)
        others.append(second)
        second.start(timeout=120)
        load.start()

        def shared():
            a, b = hub.status(), second.status()
            return (a["live"] and b["live"] and not a["restoring"] and not b["restoring"]
                    and set(a["live"]) | set(b["live"]) == set(range(PARTITIONS)))
        wait_for(shared, 120, "the two join processes to share the partitions")
        wait_acks(load, 40)
        second.kill9()
        wait_for(lambda: set(hub.status()["live"]) == set(range(PARTITIONS))
                 and not hub.status()["restoring"], 120, "the survivor to own every partition")
        wait_acks(load, 24)
        load.stop()
        expected = settle_and_verify(w, load, "e (one of two join processes killed)")
        for block, want in expected.items():
            r = hub.block(block)
            assert r.status_code == 200, (block, r.status_code, r.text)
            got = r.json()
            assert got["owner"] == hub.status()["client_id"]
            assert jh.comparable(got) == want, (block, got, want)
        print("phase e: the survivor answered for all %d blocks" % len(expected))

        assert not [m for m in jh.read_committed(w.bootstrap, w.dlq)], "dead letters"
        assert hub.stop() == 0
        print("total: %d events (fire %d, traffic %d, market %d) in %.0f s"
              % (len(load.events), len(load.fire_acked), len(load.traffic_sent),
                 len(load.market_rows), time.monotonic() - t0), flush=True)
    finally:
        for h in [hub] + others:
            h.kill()
