"""The three transports, used the way each department uses them (docs/feeds.md).

Each sink has add(record, vt), tick(vt) (called before every record with the
virtual time, for time-based rolling, batching and heartbeats), begin_finish()
(no more records: flush what is held, let the senders drain their queues) and
done() (every sender has ended); finish() is both, waiting. Everything that
decides bytes happens on the caller's thread with the caller's random.Random,
so a seed fixes every file, line and body; only the sending runs on threads of
its own.

Each sink also says which records it has actually delivered so far (a market
row in a file renamed into the spool, a traffic line the socket took, a fire
event in a POST answered), so the ground truth can be written while it runs.

STOP (a Stop) is shared with the caller: after a stop signal a sink waiting for
room gives the record up (SinkStopped), and once the stop is forced (a second
signal, or the drain took too long) the senders give up what they still hold.
"""
import collections
import http.client
import json
import os
import queue
import socket
import threading
import time
import urllib.parse

from . import feeds


class SinkError(Exception):
    pass


class SinkStopped(Exception):
    """The record was not taken: the simulator is stopping."""


class Stop:
    """The stop request, set by the signal handler (a plain flag: nothing to lock)."""

    def __init__(self):
        self.signal = None   # the first stop signal's number
        self.force = False   # a second signal, or the drain's deadline passed
        self.deadline = None  # monotonic time after which the drain is forced

    def forced(self):
        if not self.force and self.deadline is not None and time.monotonic() > self.deadline:
            self.force = True
        return self.force

    def requested(self):
        return self.signal is not None or self.forced()


# --- market: CSV files in a spool directory ---

def csv_field(text, quote_all):
    if quote_all or any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


class MarketSpool:
    """Writes NAME.csv.part, row by row, and renames it to NAME.csv when the file is
    complete: after ROLL_ROWS rows or ROLL_SECONDS of virtual time, and at the end."""

    def __init__(self, spool_dir, rng, gen, roll_rows=500, roll_seconds=10.0, encoding="gb18030"):
        self.dir = spool_dir
        self.rng = rng
        self.gen = gen
        self.roll_rows = roll_rows
        self.roll_seconds = roll_seconds
        self.encoding = encoding
        self.f = None
        self.files = []
        self.rows = 0
        self.file_seq = 0
        self.cur_ids = []
        self.delivered = set()  # ids of the rows of the files renamed into the spool
        os.makedirs(spool_dir, exist_ok=True)

    def _open(self, vt):
        rng = self.rng
        self.file_seq += 1
        stamp = self.gen.local(self.gen.base_ms + int(vt * 1000)).strftime("%Y%m%d_%H%M%S")
        self.name = "scjg_%s_%s_%05d.csv" % (stamp, self.gen.tag, self.file_seq)
        self.part = os.path.join(self.dir, self.name + ".part")
        cols = list(feeds.MARKET_COLUMNS)
        if rng.random() < 0.3:
            rng.shuffle(cols)  # columns may come in any order
        if rng.random() < 0.3:
            cols.insert(rng.randint(0, len(cols)), feeds.MARKET_EXTRA_COLUMN)
        self.cols = cols
        self.eol = rng.choice(["\r\n", "\n"])
        self.quote_all = rng.random() < 0.15
        self.opened_vt = vt
        self.rows = 0
        self.f = open(self.part, "wb")
        self._write(cols)

    def _write(self, cells):
        line = ",".join(csv_field(c, self.quote_all) for c in cells) + self.eol
        self.f.write(line.encode(self.encoding))

    def _close(self):
        if self.f is None:
            return
        self.f.close()
        self.f = None
        os.rename(self.part, os.path.join(self.dir, self.name))
        self.files.append(self.name)
        self.delivered.update(self.cur_ids)
        self.cur_ids = []

    def tick(self, vt):
        if self.f is not None and vt - self.opened_vt >= self.roll_seconds:
            self._close()

    def add(self, rec, vt):
        if self.f is None:
            self._open(vt)
        self._write([rec.payload[c] for c in self.cols])
        self.cur_ids.append(rec.id)
        self.rows += 1
        if self.rows >= self.roll_rows:
            self._close()

    def begin_finish(self):
        self._close()

    def done(self):
        return True

    def finish(self):
        self.begin_finish()

    def stats(self):
        return {"files": len(self.files)}


# --- traffic: NDJSON over TCP connections ---

class _Stream(threading.Thread):
    """One gateway connection: writes queued lines, reconnects and resends on a drop."""

    def __init__(self, host, port, connect_timeout, stop, delivered, token=None):
        super().__init__(daemon=True)
        self.token = token
        self.host, self.port = host, port
        self.connect_timeout = connect_timeout
        self.stop = stop
        self.delivered = delivered  # shared set: ids of the lines the socket took
        self.closing = False  # no more lines: end once the queue is empty
        self.q = queue.Queue(maxsize=2000)
        self.error = None
        self.unsent = []  # record ids never written
        self.reconnects = 0
        self.resent_lines = 0
        self.bytes = 0

    def _connect(self):
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.1
        while True:
            try:
                s = socket.create_connection((self.host, self.port), timeout=30)
                s.settimeout(None)
                if self.token:  # auth token: a hello first, no acknowledgements asked
                    s.sendall(json.dumps({"hello": 1, "token": self.token}).encode() + b"\n")
                return s
            except OSError as e:
                if time.monotonic() + delay > deadline or self.stop.forced():
                    raise SinkError("traffic: cannot connect to %s:%d: %s" % (self.host, self.port, e))
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def run(self):
        sock = None
        done = False
        while not done and not self.stop.forced():
            try:
                item = self.q.get(timeout=0.1)
            except queue.Empty:
                if self.closing:
                    break
                continue
            if item is None:
                break
            batch = [item]
            size = len(item[1])
            while size < 262144:  # coalesce what is already queued
                try:
                    nxt = self.q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    done = True
                    break
                batch.append(nxt)
                size += len(nxt[1])
            if self.error is not None:
                self.unsent.extend(rid for rid, _ in batch if rid)
                continue
            data = b"".join(line for _, line in batch)
            failures = 0
            while True:
                try:
                    if sock is None:
                        sock = self._connect()
                    sock.sendall(data)
                    self.bytes += len(data)
                    self.delivered.update(rid for rid, _ in batch if rid)
                    break
                except (OSError, SinkError) as e:
                    if sock is not None:
                        sock.close()
                        sock = None
                    failures += 1
                    if isinstance(e, SinkError) or failures > 5 or self.stop.forced():
                        self.error = str(e)
                        self.unsent.extend(rid for rid, _ in batch if rid)
                        break
                    # the gateway reconnects and sends the lines again
                    self.reconnects += 1
                    self.resent_lines += len(batch)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            sock.close()


class _AckStream(threading.Thread):
    """One gateway that asks for acknowledgements (docs/feeds.md 4.4): its first line on
    every connection is a hello with "ack": true (and TOKEN, if any). Every line is kept
    until an {"ack": N} covers it (line 1 is the hello), and only then counted as delivered;
    when the connection drops, it connects again and sends every line not acknowledged, in
    order, before new ones. At most MAX_UNACKED lines wait for their ack."""

    MAX_UNACKED = 20000

    def __init__(self, host, port, connect_timeout, stop, delivered, name, token):
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.connect_timeout = connect_timeout
        self.stop = stop
        self.delivered = delivered
        self.name_ = name
        self.token = token
        self.closing = False
        self.q = queue.Queue(maxsize=2000)
        self.error = None
        self.unsent = []
        self.reconnects = 0
        self.resent_lines = 0
        self.bytes = 0
        self.acks = 0
        self.cv = threading.Condition()
        self.inflight = collections.deque()  # (line number, rid, bytes) on this connection
        self.backlog = collections.deque()   # (rid, bytes) to send again, first
        self.gen = 0        # the connection's generation
        self.dead = -1      # the generation the reader saw end
        self.refusal = None

    def _connect(self):
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.05
        while True:
            try:
                return socket.create_connection((self.host, self.port), timeout=30)
            except OSError as e:
                if time.monotonic() + delay > deadline or self.stop.forced():
                    raise SinkError("traffic: cannot connect to %s:%d: %s" % (self.host, self.port, e))
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _read(self, sock, gen):
        buf = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    with self.cv:
                        if "error" in msg:
                            self.refusal = "traffic: refused by blockhub: %s" % msg.get("detail")
                        elif "ack" in msg and "hello" not in msg and gen == self.gen:
                            n = msg["ack"]
                            self.acks += 1
                            while self.inflight and self.inflight[0][0] <= n:
                                _, rid, _ = self.inflight.popleft()
                                if rid:
                                    self.delivered.add(rid)
                        self.cv.notify_all()
        except (OSError, ValueError):
            pass
        with self.cv:
            if gen == self.gen:
                self.dead = gen
            self.cv.notify_all()

    def _open(self):
        sock = self._connect()
        sock.settimeout(None)
        hello = {"hello": 1, "gateway": self.name_, "ack": True}
        if self.token:
            hello["token"] = self.token
        with self.cv:
            self.gen += 1
            gen = self.gen
        sock.sendall(json.dumps(hello).encode() + b"\n")
        threading.Thread(target=self._read, args=(sock, gen), daemon=True).start()
        return sock, gen

    def _drop(self, sock):
        """The connection is gone: what it did not acknowledge is sent again first."""
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes its reader
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass
        with self.cv:
            again = [(rid, data) for _, rid, data in self.inflight]
            self.inflight.clear()
            self.resent_lines += len(again)
            self.backlog.extendleft(reversed(again))
            self.gen += 1  # acks of the old connection no longer count
        self.reconnects += 1

    def _next_batch(self):
        with self.cv:
            if self.backlog:
                batch = []
                while self.backlog and len(batch) < 1000:
                    batch.append(self.backlog.popleft())
                return batch
        try:
            item = self.q.get(timeout=0.05)
        except queue.Empty:
            return []
        batch = [item]
        while len(batch) < 1000:
            try:
                batch.append(self.q.get_nowait())
            except queue.Empty:
                break
        return batch

    def run(self):
        sock, gen, line_no = None, 0, 0
        try:
            while not self.stop.forced():
                if self.refusal:
                    raise SinkError(self.refusal)
                if sock is not None and self.dead == gen:
                    self._drop(sock)
                    sock = None
                if sock is None:
                    sock, gen = self._open()
                    line_no = 1  # the hello
                with self.cv:
                    if len(self.inflight) >= self.MAX_UNACKED:
                        self.cv.wait(0.1)
                        continue
                batch = self._next_batch()
                if not batch:
                    if self.closing and self.q.empty():
                        with self.cv:
                            if not self.backlog and not self.inflight:
                                break
                            if not self.backlog:
                                self.cv.wait(0.1)  # the last acks
                    continue
                with self.cv:
                    for rid, data in batch:
                        line_no += 1
                        self.inflight.append((line_no, rid, data))
                try:
                    data = b"".join(d for _, d in batch)
                    sock.sendall(data)
                    self.bytes += len(data)
                except OSError:
                    self._drop(sock)
                    sock = None
        except SinkError as e:
            self.error = str(e)
        with self.cv:
            self.unsent.extend(rid for _, rid, _ in self.inflight if rid)
            self.unsent.extend(rid for rid, _ in self.backlog if rid)
        while True:
            try:
                rid, _ = self.q.get_nowait()
            except queue.Empty:
                break
            if rid:
                self.unsent.append(rid)
        if sock is not None:
            sock.close()


class TrafficStreams:
    def __init__(self, addr, gen, connections=1, heartbeat=5.0, connect_timeout=30.0, stop=None,
                 ack=False, token=None):
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise SinkError("traffic: address %r is not HOST:PORT" % addr)
        host = host.strip("[]")
        self.gen = gen
        self.heartbeat = heartbeat
        self.stop = stop or Stop()
        self.draining = False
        self.delivered = set()
        if ack:
            self.streams = [_AckStream(host, int(port), connect_timeout, self.stop, self.delivered,
                                       "sim-gw-%d" % k, token) for k in range(connections)]
        else:
            self.streams = [_Stream(host, int(port), connect_timeout, self.stop, self.delivered,
                                    token) for _ in range(connections)]
        self.ack = ack
        self.next_hb = [heartbeat] * connections
        self.n = 0
        self.heartbeats = 0
        for s in self.streams:
            s.start()

    def _put(self, k, rid, line):
        s = self.streams[k]
        while True:
            if s.error is not None:
                raise SinkError(s.error)
            if self.stop.forced() or (not self.draining and self.stop.requested()):
                raise SinkStopped()
            try:
                s.q.put((rid, line.encode("utf-8") + b"\n"), timeout=0.1)
                return
            except queue.Full:
                continue

    def tick(self, vt):
        if self.heartbeat <= 0:
            return
        for k in range(len(self.streams)):
            while vt >= self.next_hb[k]:
                self._put(k, None, self.gen.heartbeat(self.next_hb[k]))
                self.heartbeats += 1
                self.next_hb[k] += self.heartbeat

    def add(self, rec, vt):
        k = self.n % len(self.streams)
        self.n += 1
        self._put(k, rec.id, rec.payload)

    def begin_finish(self):
        self.draining = True
        for s in self.streams:
            s.closing = True

    def done(self):
        return not any(s.is_alive() for s in self.streams)

    def finish(self):
        self.begin_finish()
        for s in self.streams:
            s.join()

    def unsent(self):
        return [rid for s in self.streams for rid in s.unsent]

    def errors(self):
        return [s.error for s in self.streams if s.error]

    def stats(self):
        return {"connections": len(self.streams), "heartbeats": self.heartbeats,
                "reconnects": sum(s.reconnects for s in self.streams),
                "resent_lines": sum(s.resent_lines for s in self.streams),
                "acks": sum(getattr(s, "acks", 0) for s in self.streams),
                "bytes": sum(s.bytes for s in self.streams)}


# --- fire: webhook POSTs ---

class FireWebhook:
    """Batches events (up to BATCH per body, or what LINGER seconds of virtual time
    gathered) and POSTs them from WORKERS threads, retrying on 503 (after
    Retry-After), timeouts and dropped connections as the department's sender does."""

    def __init__(self, url, token, rng, batch=50, linger=0.5, workers=2, timeout=30.0,
                 retries=10, max_retry_after=30.0, stop=None):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise SinkError("fire: URL %r is not http(s)://HOST[:PORT]/PATH" % url)
        self.u = u
        self.path = (u.path or "/") + ("?" + u.query if u.query else "")
        self.token = token
        self.rng = rng
        self.batch_max = batch
        self.linger = linger
        self.timeout = timeout
        self.retries = retries
        self.max_retry_after = max_retry_after
        self.stop = stop or Stop()
        self.draining = False
        self.closing = False  # no more batches: workers end once the queue is empty
        self.cur = []
        self.cur_vt = 0.0
        self.batches = []  # [(records, body)], in the order made
        self.results = {}  # batch number -> result dict
        self.lock = threading.Lock()
        self.q = queue.Queue(maxsize=16 * workers)
        self.fatal = None
        self.counters = {"posts": 0, "status_503": 0, "timeouts": 0, "conn_errors": 0}
        self.workers = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for w in self.workers:
            w.start()

    def _flush(self):
        if not self.cur:
            return
        items = [r.payload for r in self.cur]
        obj = items[0] if len(items) == 1 and self.rng.random() < 0.5 else items
        body = json.dumps(obj, ensure_ascii=False, indent=1 if self.rng.random() < 0.2 else None)
        n = len(self.batches)
        self.batches.append((self.cur, body.encode("utf-8")))
        self.cur = []
        while True:
            if self.fatal:
                raise SinkError(self.fatal)
            if self.stop.forced() or (not self.draining and self.stop.requested()):
                with self.lock:
                    self.results[n] = {"error": "not sent: stopping", "not_sent": True}
                raise SinkStopped()
            try:
                self.q.put(n, timeout=0.1)
                return
            except queue.Full:
                continue

    def tick(self, vt):
        if self.cur and vt - self.cur_vt >= self.linger:
            self._flush()

    def add(self, rec, vt):
        if not self.cur:
            self.cur_vt = vt
        self.cur.append(rec)
        if len(self.cur) >= self.batch_max:
            self._flush()

    def _conn(self):
        cls = http.client.HTTPSConnection if self.u.scheme == "https" else http.client.HTTPConnection
        return cls(self.u.hostname, self.u.port, timeout=self.timeout)

    def _count(self, key):
        with self.lock:
            self.counters[key] += 1

    def _post(self, conn, body):
        """(status, headers, body bytes) of one attempt."""
        conn.request("POST", self.path, body=body, headers={
            "Content-Type": "application/json", "Authorization": "Bearer " + self.token})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Retry-After"), resp.read()

    def _sleep(self, seconds):
        """Sleeps, or less if the stop is forced; False then."""
        end = time.monotonic() + seconds
        while not self.stop.forced():
            left = end - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.1))
        return False

    def _work(self):
        conn = self._conn()
        while not self.stop.forced():
            try:
                n = self.q.get(timeout=0.1)
            except queue.Empty:
                if self.closing:
                    break
                continue
            if n is None:
                break
            _, body = self.batches[n]
            res = {"attempts": 0}
            delay = 0.5
            while True:
                res["attempts"] += 1
                self._count("posts")
                try:
                    status, retry_after, data = self._post(conn, body)
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    self._count("timeouts" if isinstance(e, (socket.timeout, TimeoutError)) else "conn_errors")
                    if res["attempts"] > self.retries:
                        res["error"] = "gave up after %d attempts: %s" % (res["attempts"], e)
                        break
                    if not self._sleep(delay):
                        res["error"] = "stopped before an answer: %s" % e
                        res["in_doubt"] = True
                        break
                    delay = min(delay * 2, 8.0)
                    continue
                if status == 200:
                    try:
                        r = json.loads(data)
                        res["accepted"] = int(r["accepted"])
                        res["rejected"] = list(r.get("rejected", []))
                    except (ValueError, KeyError, TypeError) as e:
                        res["error"] = "200 with an unreadable body (%s): %r" % (e, data[:200])
                    break
                if status == 503:
                    self._count("status_503")
                    if res["attempts"] > self.retries:
                        res["error"] = "503 after %d attempts" % res["attempts"]
                        break
                    try:
                        wait = float(retry_after)
                    except (TypeError, ValueError):
                        wait = delay
                        delay = min(delay * 2, 8.0)
                    if not self._sleep(max(0.0, min(wait, self.max_retry_after))):
                        res["error"] = "stopped while the hub answered 503"
                        res["not_sent"] = True  # a 503 publishes nothing
                        break
                    continue
                res["error"] = "HTTP %d: %s" % (status, data[:200].decode("utf-8", "replace"))
                if status in (401, 404, 415):  # every later request would fail the same way
                    self.fatal = "fire: " + res["error"]
                break
            with self.lock:
                self.results[n] = res
        conn.close()

    def begin_finish(self):
        self.draining = True
        self._flush_final()
        self.closing = True

    def done(self):
        return not any(w.is_alive() for w in self.workers)

    def finish(self):
        self.begin_finish()
        for w in self.workers:
            w.join()

    def _flush_final(self):
        try:
            self._flush()
        except (SinkError, SinkStopped):
            pass

    def outcomes(self, final=True):
        """record id -> ('accepted',) | ('rejected', code, reason) | ('unconfirmed', why)
        | ('not_sent', why) (never POSTed, or only refused with 503, because of a stop)
        | ('pending',) (not FINAL: no answer yet; records not yet in a batch are absent)."""
        out = {}
        for n, (recs, _) in enumerate(list(self.batches)):
            res = self.results.get(n)
            if res is None:
                if not final:
                    for r in recs:
                        out[r.id] = ("pending",)
                    continue
                res = {"error": "not sent"}
            if res.get("not_sent"):
                for r in recs:
                    out[r.id] = ("not_sent", res["error"])
                continue
            if "error" in res:
                for r in recs:
                    out[r.id] = ("unconfirmed", res["error"])
                continue
            rej = {}
            for x in res["rejected"]:
                if isinstance(x, dict) and isinstance(x.get("index"), int):
                    rej[x["index"]] = x
            for i, r in enumerate(recs):
                if i in rej:
                    out[r.id] = ("rejected", rej[i].get("code", ""), rej[i].get("reason", ""))
                else:
                    out[r.id] = ("accepted",)
            if res["accepted"] != len(recs) - len(rej):
                for r in recs:
                    if out[r.id][0] == "accepted":
                        out[r.id] = ("unconfirmed", "response says accepted %d of %d with %d rejected"
                                     % (res["accepted"], len(recs), len(rej)))
        return out

    def resent_ids(self):
        return sorted(r.id for n, (recs, _) in enumerate(self.batches)
                      if self.results.get(n, {}).get("attempts", 0) > 1 for r in recs)

    def stats(self):
        s = dict(self.counters)
        s["batches"] = len(self.batches)
        return s
