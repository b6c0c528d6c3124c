#!/usr/bin/env python3
"""Helpers for bench/run-latency.sh: blockhub's end-to-end latency, from the
moment a sender hands a record to blockhub to the broker's append time.

The department topics are created with message.timestamp.type=LogAppendTime,
so every record's timestamp is the broker's clock when it appended the record
(milliseconds). The sender runs on the broker's machine and notes, per record,
the wall-clock time (time.time_ns, CLOCK_REALTIME: the same clock) at which it
hands the record over:

    traffic  the write of the bytes holding the line on the TCP socket (a
             paced sender writes every millisecond the lines due by then)
    market   the rename() of a file of K rows into the spool directory (one
             file every K / RATE seconds; settle_time 0 in blockhub's config)
    fire     just before the first byte of the POST is handed to the socket
             (bench_latency_fire, one event a POST, in C)

After the phase, the records the phase added to the topic are read back
(from the end offsets taken before it) and matched to their send times by the
`blockhub.event_id` header: latency = record timestamp - send time. The input
is a pool of L records sent round and round; record i of a phase is pool
record i mod L, and the k-th copy of an event id in its partition (one id, one
block, one partition, kept in order) is the k-th time it was sent.

LogAppendTime has millisecond resolution (the broker truncates): each
latency reads 0 to 1 ms low, 0.5 ms on average.

    latency_bench.py topics BOOTSTRAP PARTITIONS TOPIC...
        create each TOPIC with message.timestamp.type=LogAppendTime
    latency_bench.py traffic BOOTSTRAP TOPIC HOST:PORT FILE RATE SECONDS WARMUP PID
        FILE: NDJSON lines (bench/gen_traffic.py, ids JJ-BENCH-1...)
    latency_bench.py market BOOTSTRAP TOPIC SPOOL CSV ROWS_PER_FILE RATE SECONDS WARMUP PID
        CSV: one GB18030 file (bench/gen_market.py, ids SCJG-2026-1...), cut
        into files of ROWS_PER_FILE rows
    latency_bench.py fire BOOTSTRAP TOPIC SENDER HOST:PORT TOKEN BODIES CONNECTIONS RATE
            SECONDS WARMUP PID
        SENDER: bench_latency_fire; BODIES: one-event bodies (bench/fire_bench.py
        bodies 1 N, ids XF-BENCH-1...)
        Each runs one phase. RATE 0 sends flat out for SECONDS and prints the
        records/s blockhub took (until the topic held all of them); RATE > 0
        paces at RATE records/s for SECONDS and prints the latency percentiles
        of the records sent after WARMUP seconds, as one line of key=value
        (below: latencies under -1 ms, which only a clock or matching fault
        gives; lag: how late the sender's hand-offs were against its
        schedule, p99 and max, ms). LATENCY_SERIES=1 in the environment also
        prints p50 and p99 per half second of send time on stderr.
    latency_bench.py producer BOOTSTRAP TOPIC RATE SECONDS WARMUP
        the baseline: a librdkafka producer alone (confluent-kafka, blockhub's
        producer settings: linger.ms, acks=all, idempotence, murmur2_random),
        paced at RATE, records of traffic's size and the same two headers;
        hand-off = the produce() call; prints the line of a paced phase
    latency_bench.py producer-c BOOTSTRAP TOPIC SENDER RATE SECONDS WARMUP
        the same baseline run by SENDER (bench/bench_latency_produce, C), which
        keeps to its schedule at rates Python cannot reach
    latency_bench.py report RESULTS LINGER_MS
        the tables of run-latency.sh from RESULTS (lines "ADAPTER RUN PHASE
        key=value...")
"""
import os
import statistics
import subprocess
import sys
import time
from array import array

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TICK = 0.001  # a paced sender's period, seconds


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cmd_topics(bootstrap, partitions, *topics):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(t, int(partitions), 1,
                                       config={"message.timestamp.type": "LogAppendTime"})
                              for t in topics])
    for f in fs.values():
        f.result()


class Topic:
    """The end offsets of TOPIC before a phase; waits for and reads what the phase added."""

    def __init__(self, bootstrap, topic):
        self.topic = topic
        self.c = Consumer({"bootstrap.servers": bootstrap,
                           "group.id": "bench-latency-%d" % os.getpid(),
                           "enable.auto.commit": False, "auto.offset.reset": "earliest",
                           "fetch.max.bytes": 64 << 20})
        md = self.c.list_topics(topic, timeout=10).topics[topic]
        self.parts = sorted(md.partitions)
        self.start = self.ends()

    def ends(self):
        return [self.c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10,
                                             cached=False)[1] for p in self.parts]

    def wait(self, n, timeout=120.0):
        """Until the topic holds N records more than at the start: (monotonic time, count)."""
        deadline = time.monotonic() + timeout
        base = sum(self.start)
        while True:
            have = sum(self.ends()) - base
            if have >= n or time.monotonic() > deadline:
                return time.monotonic(), have
            time.sleep(0.01)

    def read(self, pool, send_ns):
        """Latencies (ms) of the records added since the start, matched to SEND_NS (wall ns
        per phase index, 0: not counted); POOL: the number of distinct ids sent round and
        round. Returns (latencies, matched, unmatched)."""
        end = self.ends()
        want = sum(end) - sum(self.start)
        self.c.assign([TopicPartition(self.topic, p, o) for p, o in zip(self.parts, self.start)])
        copies = array("I", bytes(4 * pool))
        lat, sent_at = array("d"), array("q")
        got = unmatched = 0
        n = len(send_ns)
        while got < want:
            msgs = self.c.consume(10000, timeout=5)
            if not msgs:
                break
            for m in msgs:
                if m.error():
                    sys.exit("latency_bench: %s" % m.error())
                got += 1
                ts_type, ts = m.timestamp()
                if ts_type != TIMESTAMP_LOG_APPEND_TIME:
                    sys.exit("latency_bench: %s: not LogAppendTime timestamps" % self.topic)
                eid = None
                for k, v in m.headers() or ():
                    if k == "blockhub.event_id":
                        eid = v
                        break
                if eid is None:
                    unmatched += 1
                    continue
                j = int(eid.rsplit(b"-", 1)[1]) - 1
                i = j + copies[j] * pool
                copies[j] += 1
                if i >= n:
                    unmatched += 1
                    continue
                t = send_ns[i]
                if t:
                    lat.append(ts - t / 1e6)
                    sent_at.append(t)
        self.c.close()
        return lat, sent_at, got, unmatched


def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def report_phase(topic, pool, send_ns, wall0, warmup, rate, sent, seconds, lag, pid, cpu0,
                 extra="", hub=True):
    """Waits for the phase's records and prints its line of key=value."""
    t_in, have = topic.wait(sent)
    cpu = cpu_seconds(pid) - cpu0 if hub else float("nan")
    lo = wall0 + int(warmup * 1e9)
    for i, t in enumerate(send_ns):
        if t >= lo:
            break
        send_ns[i] = 0
    lat, sent_at, got, unmatched = topic.read(pool, send_ns)
    if os.environ.get("LATENCY_SERIES"):  # p50 / p99 / count per 0.5 s of send time, on stderr
        buckets = {}
        for t, v in zip(sent_at, lat):
            buckets.setdefault((t - lo) // 500000000, []).append(v)
        for b in sorted(buckets):
            v = sorted(buckets[b])
            print("  %5.1f s: p50 %8.2f p99 %8.2f n %d" % (b / 2, pct(v, 0.5), pct(v, 0.99), len(v)),
                  file=sys.stderr)
    lat = sorted(lat)
    below = sum(1 for v in lat if v < -1.0)  # more than the resolution: a clock or matching fault
    print("asked=%.0f sent_rate=%.0f records=%d in_topic=%d counted=%d unmatched=%d below=%d "
          "p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f max_ms=%.2f min_ms=%.2f lag_p99_ms=%.2f "
          "lag_max_ms=%.2f hub_cpu=%.2f%s"
          % (rate, sent / seconds, sent, have, len(lat), unmatched, below, pct(lat, 0.5),
             pct(lat, 0.99), pct(lat, 0.999), lat[-1] if lat else float("nan"),
             lat[0] if lat else float("nan"), lag[0], lag[1],
             cpu / seconds, extra))


def sleep_to_next_tick(t0, now):
    time.sleep(max(0.0, TICK - ((now - t0) % TICK)))


# --- traffic ------------------------------------------------------------------


def cmd_traffic(bootstrap, topic_name, addr, path, rate, seconds, warmup, pid):
    import socket
    rate, seconds, warmup, pid = float(rate), float(seconds), float(warmup), int(pid)
    with open(path, "rb") as f:
        data = f.read()
    ends = array("q")
    pos = data.find(b"\n")
    while pos >= 0:
        ends.append(pos + 1)
        pos = data.find(b"\n", pos + 1)
    pool = len(ends)
    starts = array("q", [0]) + ends[:-1]
    buf = memoryview(data)
    topic = Topic(bootstrap, topic_name)
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    batch_i, batch_t, lags = array("q"), array("q"), array("d")
    i = 0
    cpu0, gen0 = cpu_seconds(pid), time.process_time()
    wall0 = time.time_ns()
    t0 = time.monotonic()
    step = 10000 if rate <= 0 else 0  # flat out: 10,000 lines a write
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        due = i + step if rate <= 0 else int((now - t0) * rate) + 1
        first = i
        while i < due:
            j = i % pool
            k = min(pool, j + (due - i))
            batch_i.append(i)
            batch_t.append(time.time_ns())
            sock.sendall(buf[starts[j]:ends[k - 1]])
            i += k - j
        if rate > 0:
            if i > first:
                lags.append((now - t0 - first / rate) * 1e3)
            sleep_to_next_tick(t0, time.monotonic())
    t_sent = time.monotonic()
    gen_cpu = (time.process_time() - gen0) / (t_sent - t0)
    sent = i
    if rate <= 0:
        t_in, have = topic.wait(sent)
        sock.close()
        print("rate=%.0f records=%d in_topic=%d seconds=%.3f sent_after=%.3f gen_cpu=%.2f "
              "hub_cpu=%.2f" % (have / (t_in - t0), sent, have, t_in - t0, t_sent - t0, gen_cpu,
                                (cpu_seconds(pid) - cpu0) / (t_in - t0)))
        return
    send_ns = array("q", bytes(8 * sent))
    batch_i.append(sent)
    for b in range(len(batch_t)):
        a, z = batch_i[b], batch_i[b + 1]
        send_ns[a:z] = array("q", [batch_t[b]]) * (z - a)
    lags = sorted(lags)
    report_phase(topic, pool, send_ns, wall0, warmup, rate, sent, seconds,
                 (pct(lags, 0.99), lags[-1] if lags else 0.0), pid, cpu0,
                 " gen_cpu=%.2f" % gen_cpu)
    sock.close()


# --- market -------------------------------------------------------------------


def split_csv(path, rows_per_file):
    """The files: the header and ROWS_PER_FILE rows each, GB18030 bytes, in id order."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\r\n")
    header, rows = lines[0], [r for r in lines[1:] if r]
    rows_per_file = int(rows_per_file)
    nfiles = len(rows) // rows_per_file
    return [b"\r\n".join([header] + rows[n * rows_per_file:(n + 1) * rows_per_file]) + b"\r\n"
            for n in range(nfiles)], nfiles * rows_per_file


def cmd_market(bootstrap, topic_name, spool, csv, rows_per_file, rate, seconds, warmup, pid):
    k = int(rows_per_file)
    rate, seconds, warmup, pid = float(rate), float(seconds), float(warmup), int(pid)
    files, pool = split_csv(csv, k)
    stage = os.path.join(os.path.dirname(os.path.abspath(spool)), "stage")
    os.makedirs(stage, exist_ok=True)
    tag = "%d" % time.time()
    topic = Topic(bootstrap, topic_name)

    def prepare(n):
        name = "lat_%s_%07d.csv" % (tag, n)
        src = os.path.join(stage, name)
        with open(src, "wb") as f:
            f.write(files[n % len(files)])
        return src, os.path.join(spool, name)

    def backlog():
        return sum(1 for e in os.listdir(spool) if e.endswith(".csv"))

    file_t, lags = array("q"), array("d")
    n = 0
    nxt = prepare(0)
    cpu0, gen0 = cpu_seconds(pid), time.process_time()
    wall0 = time.time_ns()
    t0 = time.monotonic()
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        if rate <= 0:  # flat out: a file always waiting behind the one being read
            due = n + 1 if backlog() < 2 else n
        else:
            due = int((now - t0) * rate / k) + 1
        first = n
        while n < due:
            file_t.append(time.time_ns())
            os.rename(*nxt)
            n += 1
            nxt = prepare(n)
        if rate > 0 and n > first:
            lags.append((now - t0 - first * k / rate) * 1e3)
        if rate > 0:
            sleep_to_next_tick(t0, time.monotonic())
        elif n == first:
            time.sleep(0.0002)
    t_sent = time.monotonic()
    gen_cpu = (time.process_time() - gen0) / (t_sent - t0)
    os.unlink(nxt[0])
    sent = n * k
    if rate <= 0:
        t_in, have = topic.wait(sent)
        print("rate=%.0f records=%d in_topic=%d files=%d seconds=%.3f sent_after=%.3f "
              "gen_cpu=%.2f hub_cpu=%.2f"
              % (have / (t_in - t0), sent, have, n, t_in - t0, t_sent - t0, gen_cpu,
                 (cpu_seconds(pid) - cpu0) / (t_in - t0)))
        return
    send_ns = array("q", bytes(8 * sent))
    for f in range(n):
        send_ns[f * k:(f + 1) * k] = array("q", [file_t[f]]) * k
    lags = sorted(lags)
    report_phase(topic, pool, send_ns, wall0, warmup, rate, sent, seconds,
                 (pct(lags, 0.99), lags[-1] if lags else 0.0), pid, cpu0,
                 " files=%d gen_cpu=%.2f" % (n, gen_cpu))


# --- fire ---------------------------------------------------------------------


def cmd_fire(bootstrap, topic_name, sender, addr, token, bodies, conns, rate, seconds, warmup,
             pid):
    rate, warmup, pidn = float(rate), float(warmup), int(pid)
    with open(bodies, "rb") as f:
        pool = sum(1 for line in f if line.strip())
    topic = Topic(bootstrap, topic_name)
    out = bodies + ".sent"
    cpu0 = cpu_seconds(pidn)
    t0 = time.monotonic()
    run = subprocess.run([sender, addr, "/v1/fire/events", token, bodies, conns, "%.1f" % rate,
                          seconds, out, pid], check=True, stdout=subprocess.PIPE, text=True)
    res = dict(kv.split("=", 1) for kv in run.stdout.split())
    send_ns = array("q")
    with open(out, "rb") as f:
        send_ns.frombytes(f.read())
    os.unlink(out)
    sent = len(send_ns)
    if rate <= 0:
        t_in, have = topic.wait(int(res["events"]))
        print("rate=%s records=%d in_topic=%d seconds=%s errors=%s ans_p50_ms=%s ans_p99_ms=%s "
              "gen_cpu=%.2f hub_cpu=%.2f"
              % (res["eps"], sent, have, res["seconds"], res["errors"], res["ans_p50_ms"],
                 res["ans_p99_ms"], float(res["gen_cpu"]) / float(seconds),
                 (cpu_seconds(pidn) - cpu0) / (time.monotonic() - t0)))
        return
    wall0 = send_ns[0] if sent else 0
    lags = (float(res["lag_p99_ms"]), float(res["lag_max_ms"]))
    report_phase(topic, pool, send_ns, wall0, warmup, rate, int(res["events"]), float(seconds),
                 lags, pidn, cpu0,
                 " errors=%s ans_p50_ms=%s ans_p99_ms=%s gen_cpu=%.2f"
                 % (res["errors"], res["ans_p50_ms"], res["ans_p99_ms"],
                    float(res["gen_cpu"]) / float(seconds)))


# --- baseline: a librdkafka producer alone -------------------------------------------


def cmd_producer(bootstrap, topic_name, rate, seconds, warmup):
    """The baseline: records of traffic's size produced straight to TOPIC with blockhub's
    producer settings, paced as the other senders; hand-off = the produce() call."""
    from confluent_kafka import Producer
    rate, seconds, warmup = float(rate), float(seconds), float(warmup)
    pool = 1000000
    topic = Topic(bootstrap, topic_name)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": os.environ.get("LINGER_MS") or 5,
                  "enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random",
                  "queue.buffering.max.messages": 1000000})
    keys = [("440303-%03d" % b).encode() for b in range(64)]
    value = b"x" * 150
    send_ns, lags = array("q"), array("d")
    i = 0
    gen0 = time.process_time()
    wall0 = time.time_ns()
    t0 = time.monotonic()
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        due = min(int((now - t0) * rate) + 1, pool)
        if i < due:
            lags.append((now - t0 - i / rate) * 1e3)
        while i < due:
            send_ns.append(time.time_ns())
            while True:
                try:
                    p.produce(topic_name, value, keys[i % 64],
                              headers=[("blockhub.event_id", b"KB-%d" % (i + 1)),
                                       ("blockhub.adapter", b"kafka")])
                    break
                except BufferError:  # the queue is full: wait for deliveries, the lag grows
                    p.poll(0.001)
            i += 1
        p.poll(0)
        sleep_to_next_tick(t0, time.monotonic())
    gen_cpu = (time.process_time() - gen0) / seconds
    p.flush(60)
    lags = sorted(lags)
    report_phase(topic, pool, send_ns, wall0, warmup, rate, i, seconds,
                 (pct(lags, 0.99), lags[-1] if lags else 0.0), os.getpid(),
                 cpu_seconds(os.getpid()), " gen_cpu=%.2f" % gen_cpu, hub=False)


def cmd_producer_c(bootstrap, topic_name, sender, rate, seconds, warmup):
    """The baseline in C (bench/bench_latency_produce.c): the same records, settings and
    pacing as cmd_producer with no interpreter in the way, so it keeps to its schedule at
    traffic's half rate; hand-off = the rd_kafka_producev() call."""
    topic = Topic(bootstrap, topic_name)
    out = "%s.sent.%d" % (sender.rsplit("/", 1)[-1], os.getpid())
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), out)
    args = [sender, bootstrap, topic_name, "%.1f" % float(rate), str(seconds), out]
    if os.environ.get("LINGER_MS"):
        args.append(os.environ["LINGER_MS"])
    run = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True)
    res = dict(kv.split("=", 1) for kv in run.stdout.split())
    send_ns = array("q")
    with open(out, "rb") as f:
        send_ns.frombytes(f.read())
    os.unlink(out)
    wall0 = send_ns[0] if send_ns else 0
    report_phase(topic, len(send_ns), send_ns, wall0, float(warmup), float(rate), len(send_ns),
                 float(seconds), (float(res["lag_p99_ms"]), float(res["lag_max_ms"])),
                 os.getpid(), cpu_seconds(os.getpid()), " gen_cpu=%s" % res["gen_cpu"],
                 hub=False)


# --- report -------------------------------------------------------------------


def cmd_report(path, linger):
    linger = float(linger)
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                rows.append((parts[0], int(parts[1]), parts[2],
                             dict(kv.split("=", 1) for kv in parts[3:])))
    adapters = [a for a in ("traffic", "market", "fire") if any(r[0] == a for r in rows)]
    runs = sorted({r[1] for r in rows})

    def get(a, run, phase, key):
        for r in rows:
            if r[0] == a and r[1] == run and r[2] == phase and key in r[3]:
                return float(r[3][key])
        return float("nan")

    def med(values):
        values = [v for v in values if v == v]
        return statistics.median(values) if values else float("nan")

    print("End-to-end latency, ms: sender's hand-off -> broker append time (LogAppendTime, "
          "1 ms resolution: each value reads 0 to 1 ms low)")
    print("linger.ms = %g; goal: p99 at half load <= linger.ms + 5 = %g ms (traffic, market)"
          % (linger, linger + 5))
    print()
    head = "%-8s %-5s %-4s %9s %9s %8s %8s %8s %8s %8s %7s %7s" % (
        "adapter", "load", "run", "asked/s", "sent/s", "p50", "p99", "p999", "max", "lag p99",
        "gen CPU", "hub CPU")
    keys = ("asked", "sent_rate", "p50_ms", "p99_ms", "p999_ms", "max_ms", "lag_p99_ms",
            "gen_cpu", "hub_cpu")
    line = "%-8s %-5s %-4s %9.0f %9.0f %8.2f %8.2f %8.2f %8.2f %8.2f %7.2f %7.2f"
    verdicts = []
    for a in adapters:
        print(head)
        for run in runs:
            print("%-8s %-5s %-4d %9s %9.0f %44s %7.2f %7.2f"
                  % (a, "max", run, "flat out", get(a, run, "flat", "rate"), "",
                     get(a, run, "flat", "gen_cpu"), get(a, run, "flat", "hub_cpu")))
        print("%-8s %-5s %-4s %9s %9.0f" % (a, "max", "med.", "", med(
            [get(a, r, "flat", "rate") for r in runs])))
        for phase in ("half", "full"):
            for run in runs:
                print(line % ((a, phase, str(run)) + tuple(get(a, run, phase, k) for k in keys)))
            m = [med([get(a, r, phase, k) for r in runs]) for k in keys]
            print(line % ((a, phase, "med.") + tuple(m)))
            if phase == "half":
                verdicts.append((a, m[3]))
        gen = med([get(a, r, "flat", "gen_cpu") for r in runs])
        print("flat out, the limit: %s (the sender used %.2f of a core)%s" % (
            "the sender, perhaps" if gen > 0.8 else "blockhub and the broker, not the sender",
            gen, "; closed loop: records/s = connections / the answer's latency"
            if a == "fire" else ""))
        print()
    if any(r[0] == "baseline" for r in rows):
        print("baseline: a librdkafka producer alone (blockhub's producer settings), paced at "
              "traffic's half rate of the round")
        print(head)
        for run in runs:
            print(line % (("kafka", "half", str(run)) + tuple(get("baseline", run, "half", k)
                                                            for k in keys)))
        m = [med([get("baseline", r, "half", k) for r in runs]) for k in keys]
        print(line % (("kafka", "half", "med.") + tuple(m)))
        verdicts.append(("baseline", m[3]))
        behind = [r for r in runs if get("baseline", r, "half", "lag_p99_ms") > 10
                  or get("baseline", r, "half", "sent_rate")
                  < 0.99 * get("baseline", r, "half", "asked")]
        if behind:
            print("(the Python producer fell behind its schedule in round(s) %s: there it is "
                  "no fair baseline, its own stalls are in its figures)"
                  % ", ".join(map(str, behind)))
        print()
    for a, p99 in verdicts:
        goal = linger + 5
        if a == "baseline":
            print("%-8s p99 at traffic's half rate %.2f ms: the producer and the broker alone, "
                  "on this machine" % (a, p99))
            continue
        if a == "fire":
            print("%-8s p99 at half load %.2f ms (reported; no goal)" % (a, p99))
        else:
            print("%-8s p99 at half load %.2f ms %s linger.ms + 5 = %g ms: %s"
                  % (a, p99, "<=" if p99 <= goal else ">", goal,
                     "MET" if p99 <= goal else "MISSED"))
    print("(ms; max: flat out, records/s taken; half: paced at half the round's flat-out rate; "
          "full: paced at it; lag p99: how late the sender's writes went out against its "
          "schedule; gen CPU, hub CPU: cores used by the sender and by blockhub)")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"topics": cmd_topics, "traffic": cmd_traffic, "market": cmd_market,
          "fire": cmd_fire, "producer": cmd_producer,
          "producer-c": cmd_producer_c, "report": cmd_report}.get(cmd)
    if fn is None:
        sys.exit(__doc__)
    fn(*args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
