#!/usr/bin/env python3
"""Helpers for bench/run-traffic.sh (needs confluent-kafka: the test venv has it).

    traffic_bench.py create BOOTSTRAP TOPIC PARTITIONS
    traffic_bench.py blockhub BOOTSTRAP TOPIC N PID HOST:PORT FILE
        send FILE to HOST:PORT as fast as the socket takes it (sendfile), and
        wait until TOPIC's end offsets sum to N; prints seconds, the CPU seconds
        process PID used meanwhile (all its threads, /proc/PID/stat) and its
        peak RSS (VmHWM)
    traffic_bench.py gateway BOOTSTRAP TOPIC N PID HOST:PORT FILE [ack] [tls CA CERT KEY]
        as blockhub, but the way a gateway writes (1 MiB sendall), optionally
        with a hello asking for acknowledgements (then also waits for the ack
        of the last line) and over TLS with a client certificate; prints the
        same, plus acked_after (seconds to the last ack, or -1)
    traffic_bench.py dump BOOTSTRAP TOPIC N OUT
        write TOPIC's first N messages as kcat -P input: key KEY_DELIM value
        MSG_DELIM (the delimiters are checked not to occur in the data)
    traffic_bench.py kcat BOOTSTRAP TOPIC N -- KCAT ARGS...
        run kcat while waiting, as for blockhub, until TOPIC's end offsets sum
        to N; prints seconds (from kcat's start until the N-th message is in,
        the same measure as blockhub's), kcat's CPU seconds and its exit time
"""
import os
import resource
import socket
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# kcat reads \xNN escapes greedily: no hex digit may follow one.
KEY_DELIM = b"\x01\x1fkq\x1f\x01"
MSG_DELIM = b"\x02\x1fzq\x1f\x02"
KCAT_KEY_DELIM = "\\x01\\x1fkq\\x1f\\x01"
KCAT_MSG_DELIM = "\\x02\\x1fzq\\x1f\\x02"


def end_offsets(consumer, topic, parts):
    """The sum of PARTS' end offsets. A topic just made may not have its leaders
    yet (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE): asked again."""
    for attempt in range(50):
        try:
            return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                       for p in parts)
        except KafkaException as e:
            if attempt == 49 or not e.args[0].retriable() and e.args[0].code() not in (
                    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE):
                raise
            time.sleep(0.1)


def wait_count(bootstrap, topic, n, timeout=600):
    """Seconds (monotonic) at which TOPIC holds N messages."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-wait-%d" % os.getpid()})
    try:
        deadline = time.monotonic() + timeout
        parts = []
        while not parts:
            md = c.list_topics(topic, timeout=10).topics.get(topic)
            parts = list(md.partitions) if md is not None and md.error is None else []
            if not parts:
                time.sleep(0.05)
        while True:
            have = end_offsets(c, topic, parts)
            if have >= n:
                return time.monotonic(), have
            if time.monotonic() > deadline:
                sys.exit("traffic_bench: %s has %d of %d messages after %ds"
                         % (topic, have, n, timeout))
            time.sleep(0.02)
    finally:
        c.close()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def vmhwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def cmd_create(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(topic, int(partitions), 1)])
    for f in fs.values():
        f.result()


def cmd_blockhub(bootstrap, topic, n, pid, addr, path):
    n, pid = int(n), int(pid)
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    size = os.path.getsize(path)
    done = {}

    def send():
        with open(path, "rb") as f:
            off = 0
            while off < size:
                off += os.sendfile(sock.fileno(), f.fileno(), off, size - off)
        sock.shutdown(socket.SHUT_WR)
        done["sent"] = time.monotonic()

    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    sender = threading.Thread(target=send)
    sender.start()
    t1, have = wait_count(bootstrap, topic, n)
    cpu1 = cpu_seconds(pid)
    sender.join()
    sock.close()
    print("seconds=%.3f cpu_seconds=%.2f vmhwm=%d messages=%d sent_after=%.3f"
          % (t1 - t0, cpu1 - cpu0, vmhwm(pid), have, done["sent"] - t0))


def cmd_gateway(bootstrap, topic, n, pid, addr, path, *opts):
    import json
    import ssl
    n, pid = int(n), int(pid)
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    opts = list(opts)
    ack = "ack" in opts
    if "tls" in opts:
        ca, cert, key = opts[opts.index("tls") + 1:opts.index("tls") + 4]
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(cert, key)
        sock = ctx.wrap_socket(sock, server_hostname=host)
    done = {"acked": -1.0}
    last = n + 1  # the hello is line 1

    def reader():
        buf = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if json.loads(line).get("ack") == last:
                    done["acked"] = time.monotonic()
                    return

    def send():
        if ack:
            sock.sendall(b'{"hello": 1, "gateway": "bench", "ack": true}\n')
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                sock.sendall(chunk)
        done["sent"] = time.monotonic()

    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    threads = [threading.Thread(target=send)]
    if ack:
        threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    t1, have = wait_count(bootstrap, topic, n)
    cpu1 = cpu_seconds(pid)
    for t in threads:
        t.join()
    sock.close()
    print("seconds=%.3f cpu_seconds=%.2f vmhwm=%d messages=%d sent_after=%.3f acked_after=%.3f"
          % (t1 - t0, cpu1 - cpu0, vmhwm(pid), have, done["sent"] - t0,
             done["acked"] - t0 if done["acked"] > 0 else -1))


def cmd_dump(bootstrap, topic, n, out):
    n = int(n)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-dump-%d" % os.getpid(),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    got = 0
    with open(out, "wb") as f:
        while got < n:
            for m in c.consume(10000, timeout=5):
                if m.error():
                    sys.exit("traffic_bench: %s" % m.error())
                key, value = m.key() or b"", m.value() or b""
                if KEY_DELIM in key + value or MSG_DELIM in key + value:
                    sys.exit("traffic_bench: a delimiter occurs in message %d" % got)
                f.write(key + KEY_DELIM + value + MSG_DELIM)
                got += 1
                if got == n:
                    break
    c.close()


def cmd_kcat(bootstrap, topic, n, argv):
    # Watched while it runs, as blockhub is (cmd_blockhub): the same polling
    # of the topic's end offsets on both sides of the ratio.
    t0 = time.monotonic()
    proc = subprocess.Popen(argv)
    t1, have = wait_count(bootstrap, topic, int(n))
    if proc.wait() != 0:
        sys.exit("traffic_bench: %s exited %d" % (argv[0], proc.returncode))
    exited = time.monotonic()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print("seconds=%.3f cpu_seconds=%.2f messages=%d kcat_exit=%.3f"
          % (t1 - t0, ru.ru_utime + ru.ru_stime, have, exited - t0))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "create":
        cmd_create(*args)
    elif cmd == "blockhub":
        cmd_blockhub(*args)
    elif cmd == "gateway":
        cmd_gateway(*args)
    elif cmd == "dump":
        cmd_dump(*args)
    elif cmd == "kcat":
        sep = args.index("--")
        cmd_kcat(*args[:sep], args[sep + 1:])
    elif cmd == "delims":
        print(KCAT_KEY_DELIM, KCAT_MSG_DELIM)
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
