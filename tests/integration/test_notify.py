"""The service manager's protocol (hub/notify.h): READY=1 only once every listener accepts.

The test is the service manager: it binds the NOTIFY_SOCKET datagram socket,
and on READY=1 freezes blockhub at once (SIGSTOP). A frozen process still has
the kernel accept connections on sockets that listen, and refuse them on
sockets not yet listening: so the ports answering proves they listened before
READY=1 was sent. Then the watchdog pings, a reload's RELOADING=1 and READY=1,
and STOPPING=1 at SIGTERM.
"""
import os
import signal
import socket
import subprocess
import time

from conftest import deadline_after, wait_log
from test_admin import admin_hub


def receive(sock, want, timeout=60):
    deadline = deadline_after(timeout)
    got = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(msg)
        if want in msg.split("\n"):
            return got
    raise AssertionError("no %s from blockhub; got %r" % (want, got))


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return True
    except OSError:
        return False


def test_ready_only_once_listening_then_watchdog_reload_stop(kafka, hub_factory, tmp_path):
    path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    h = admin_hub(hub_factory, kafka)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="300000")
    h.log = open(h.logpath, "ab")
    h.proc = subprocess.Popen([h.binary, "--config", h.config] + sum(
        (["--set", s] for s in h.sets), []), stdout=h.log, stderr=subprocess.STDOUT, env=env)
    try:
        srv.settimeout(60)
        first = srv.recv(4096).decode()
        h.proc.send_signal(signal.SIGSTOP)
        assert first.split("\n")[0] == "READY=1", first
        fire_port = int(h.url.split(":")[2].split("/")[0])
        admin_port = int(h.admin.rsplit(":", 1)[1])
        for port in (fire_port, h.traffic_port, admin_port):
            assert accepts(port), "port %d did not listen before READY=1" % port
    finally:
        h.proc.send_signal(signal.SIGCONT)
    assert "hub: ready" in h.logtext()
    got = receive(srv, "WATCHDOG=1")
    receive(srv, "WATCHDOG=1")
    h.proc.send_signal(signal.SIGHUP)
    got = receive(srv, "RELOADING=1")
    got += receive(srv, "READY=1")
    wait_log(h, "reload: block map swapped")
    h.proc.send_signal(signal.SIGTERM)
    receive(srv, "STOPPING=1")
    assert h.stop(sig=None) == 0, h.logtext()
    srv.close()


def test_unit_file_is_a_notify_service_with_reload():
    from conftest import SRC
    with open(os.path.join(SRC, "deploy", "systemd", "blockhub.service")) as f:
        unit = f.read()
    lines = [line.strip() for line in unit.splitlines()]
    for want in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=30",
                 "ProtectSystem=strict", "DynamicUser=yes", "NoNewPrivileges=yes"):
        assert want in lines, want
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", os.path.join(
        SRC, "deploy", "systemd", "blockhub.service")], capture_output=True, text=True)
    # Only the binary's absence on this machine may be reported, nothing of the unit's syntax.
    problems = [line for line in (r.stdout + r.stderr).splitlines()
                if line.strip() and "/usr/local/bin/blockhub" not in line
                and "Failed to prepare filename" not in line]
    assert problems == [], problems
