"""HTTP details of the fire ingress: HTTP/2, clients that leave, limits, no Kafka at all."""
import json
import os
import socket
import subprocess
import time

from conftest import TOKEN, WORLD

SAMPLE = os.path.join(WORLD, "samples", "fire", "webhook-batch.json")


def curl(url, *args, data=SAMPLE, timeout=30):
    cmd = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code} %{http_version}", "-X", "POST",
           "-H", "Authorization: Bearer " + TOKEN, "-H", "Content-Type: application/json",
           "--data-binary", "@" + data, *args, url]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=timeout)
    body, _, status = out.stdout.rpartition("\n")
    return status, body, out


def test_http2_cleartext(kafka, hub_factory):
    hub = hub_factory(kafka).start()
    for flag in ("--http2-prior-knowledge", "--http2"):
        status, body, _ = curl(hub.url, flag)
        code, version = status.split()
        assert code == "200", (flag, body)
        assert json.loads(body)["accepted"] == 8
        if flag == "--http2-prior-knowledge":
            assert version == "2"
    assert hub.stop() == 0


def test_too_many_items_is_413(kafka, hub_factory):
    hub = hub_factory(kafka, extra_sets=["adapters.fire.max_items=5"]).start()
    status, body, _ = curl(hub.url)
    assert status.split()[0] == "413" and "limit of 5" in body
    assert hub.stop() == 0


def test_clients_leaving_before_the_answer(hub_factory, tmp_path):
    """Requests that wait for a Kafka that never answers; their clients go away.

    The daemon must forget those requests (no use after free under ASan), answer
    the patient ones 503 with Retry-After, and still shut down cleanly.
    """
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]  # bound, never listening: connections are refused
    hub = hub_factory("127.0.0.1:%d" % dead_port,
                      extra_sets=["adapters.fire.ack_timeout=2s", "kafka.flush_timeout=1s",
                                  "kafka.create_timeout=500ms"])
    hub.start()
    # HTTP/1.1 and HTTP/2 clients that give up after half a second
    for flag in ("--http1.1", "--http2-prior-knowledge"):
        status, _, out = curl(hub.url, flag, "--max-time", "0.5")
        assert status.split()[0] == "000", out
    # a raw client that sends a whole request and closes at once
    body = open(SAMPLE, "rb").read()
    s = socket.create_connection(("127.0.0.1", hub.port))
    s.sendall(b"POST /v1/fire/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
              TOKEN.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
    s.close()
    # a patient client gets 503 and Retry-After once ack_timeout has passed
    status, body_text, out = curl(hub.url, "-D", "-")
    assert status.split()[0] == "503", out
    assert "retry-after: 5" in out.stdout.lower()
    time.sleep(2.5)  # let the abandoned requests' deadlines pass inside the daemon
    rc = hub.stop()
    # nothing could be delivered: the daemon says so with exit code 1
    assert rc == 1
    assert "not delivered" in hub.logtext() or "undelivered" in hub.logtext()
    dead.close()
