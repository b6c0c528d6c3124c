"""tools/blockhubctl against a running blockhub, and `top` in a real terminal (tmux)."""
import json
import os
import socket
import subprocess
import threading
import time
import uuid

from conftest import SRC, wait_until
from test_admin import ADMIN_TOKEN, admin_hub, traffic_lines

CTL = os.path.join(SRC, "tools", "blockhubctl")


def ctl(h, *args, token=ADMIN_TOKEN):
    env = dict(os.environ, BLOCKHUB_ADMIN=h.admin)
    env.pop("BLOCKHUB_TOKEN", None)
    if token:
        env["BLOCKHUB_TOKEN"] = token
    return subprocess.run(["python3", CTL] + list(args), capture_output=True, text=True,
                          env=env, timeout=60)


def test_commands(kafka, hub_factory):
    h = admin_hub(hub_factory, kafka).start()
    wait_until(lambda: ctl(h, "check").returncode == 0, "ready")
    r = ctl(h, "status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "ready: yes"
    assert lines[1].split() == ["NAME", "TYPE", "STATE", "PUBLISHED", "ACKED", "DEAD", "IN",
                                "FLIGHT"]
    assert [ln.split()[:3] for ln in lines[2:]] == [["fire", "fire", "running"],
                                                    ["traffic", "traffic", "running"]]
    r = ctl(h, "pause", "traffic")
    assert (r.returncode, r.stdout) == (0, "traffic: paused\n"), r.stderr
    doc = json.loads(ctl(h, "--json", "status").stdout)
    assert [c["state"] for c in doc["components"]] == ["running", "paused"] and doc["ready"]
    assert ctl(h, "resume", "traffic").stdout == "traffic: running\n"
    r = ctl(h, "pause", "nobody")
    assert r.returncode == 1 and "no component named 'nobody'" in r.stderr
    r = ctl(h, "status", token="wrong")
    assert r.returncode == 1 and "valid token" in r.stderr
    r = ctl(h, "reload")
    assert r.returncode == 0 and r.stdout.startswith("reloaded: "), r.stderr
    r = ctl(h, "block", "440303-010")  # no join here: the API says so
    assert r.returncode == 1 and "no such endpoint" in r.stderr
    assert h.stop() == 0, h.logtext()
    r = ctl(h, "check")
    assert r.returncode == 1 and "cannot reach" in r.stderr


def screen(session):
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                          text=True).stdout


def test_top_renders_in_a_terminal(kafka, hub_factory):
    h = admin_hub(hub_factory, kafka).start()
    session = "bhtop-%s" % uuid.uuid4().hex[:8]
    cmd = "BLOCKHUB_ADMIN=%s BLOCKHUB_TOKEN=%s python3 %s top" % (h.admin, ADMIN_TOKEN, CTL)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "20", cmd],
                   check=True)
    stop = threading.Event()

    def feed():
        s = socket.create_connection(("127.0.0.1", h.traffic_port), timeout=60)
        n = 0
        while not stop.is_set():
            s.sendall(traffic_lines("top%d" % n, 2000))
            n += 1
            time.sleep(0.2)
        s.close()

    t = threading.Thread(target=feed)
    t.start()
    try:
        def traffic_row():
            for line in screen(session).splitlines():
                f = line.split()
                if f[:3] == ["traffic", "traffic", "running"] and float(f[3]) > 0:
                    return line
            return None
        wait_until(lambda: traffic_row() is not None, "a traffic row with records/s in top",
                   timeout=60)
        shown = screen(session)
        assert shown.splitlines()[0].startswith("blockhub top") and "ready: yes" in shown
        assert "NAME" in shown and "IN/s" in shown and "fire" in shown
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        wait_until(lambda: subprocess.run(["tmux", "has-session", "-t", session],
                                          capture_output=True).returncode != 0, "top quit on q")
    finally:
        stop.set()
        t.join(60)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert h.stop() == 0, h.logtext()
