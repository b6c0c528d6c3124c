"""The traffic listener over TLS with client certificates, against a real broker.

With `tls: {cert_file, key_file, client_ca_file, client_cert: required}` and `auth: tls`, a
gateway without a certificate or with one of another CA is refused (nothing of it reaches
Kafka), one with a certificate of the CA is served, over TLS, acknowledgements included, and
its certificate's subject is in each record's tls_subject; plain text to the TLS port is
refused and the listener serves on; `subjects` narrows who may send; a reload takes new
certificate files for new connections. Certificates are made at test time (tls_helpers.py).
"""
import json
import signal
import socket
import ssl
import subprocess

import pytest

import bhcat
from conftest import WAIT_SCALE, wait_log
from test_traffic_ack import read_lines
from test_traffic import event, ndjson, traffic_hub
from tls_helpers import CLIENT_SUBJECT_RFC2253, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def mtls(pki, server="server"):
    return {"cert_file": pki[server + ".pem"], "key_file": pki[server + ".key"],
            "client_ca_file": pki["ca.pem"], "client_cert": "required"}


def tls_traffic_hub(hub_factory, kafka, pki, **settings):
    settings.setdefault("auth", "tls")
    settings.setdefault("tls", mtls(pki))
    return traffic_hub(hub_factory, kafka, **settings)


def tls_gateway(hub, pki, cert="client"):
    """A TLS connection to HUB's traffic port, with the client certificate CERT (None: none)."""
    ctx = ssl.create_default_context(cafile=pki["ca.pem"])
    if cert:
        ctx.load_cert_chain(pki[cert + ".pem"], pki[cert + ".key"])
    raw = socket.create_connection(("127.0.0.1", hub.traffic_port), timeout=30 * WAIT_SCALE)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def refused(hub, pki, cert):
    """A gateway with CERT is refused: the handshake, or the first read after it, fails."""
    try:
        s = tls_gateway(hub, pki, cert)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    try:
        s.sendall(ndjson([event(1, "TL-REFUSED")]))
        return s.recv(4096) == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.close()


def records(kafka, hub, decoder):
    return [decoder.decode(m["value"])[1] for m in bhcat.consume_all(kafka, hub.traffic_topic)]


def test_mtls_refuses_strangers_and_serves_with_the_subject(kafka, hub_factory, decoder, pki):
    hub = tls_traffic_hub(hub_factory, kafka, pki).start()
    assert "traffic gateways on tls://" in hub.logtext()
    # no certificate, or one of another CA: refused
    assert refused(hub, pki, None)
    assert refused(hub, pki, "stranger")
    # plain text to the TLS port: closed, nothing published
    with socket.create_connection(("127.0.0.1", hub.traffic_port), timeout=30 * WAIT_SCALE) as raw:
        raw.sendall(ndjson([event(2, "TL-PLAIN")]))
        got = b""
        try:
            while True:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        assert len(got) < 64, got  # an alert at most, no JSON line
    # the right certificate: served, with acknowledgements over TLS
    s = tls_gateway(hub, pki)
    s.sendall(b'{"hello": 1, "ack": true}\n' + ndjson([event(i, "TL-OK") for i in range(200)]))
    lines = read_lines(s, lambda ls: ls and ls[-1].get("ack") == 201)[0]
    assert lines[0] == {"hello": 1, "ack": True} and lines[-1] == {"ack": 201}, lines[-3:]
    s.close()
    recs = records(kafka, hub, decoder)
    assert sorted(r["event_id"] for r in recs) == ["TL-OK-%07d" % i for i in range(200)]
    assert {r["tls_subject"] for r in recs} == {CLIENT_SUBJECT_RFC2253}
    log = hub.logtext()
    assert log.count("refusing gateway") >= 1 and "TLS:" in log
    assert hub.stop() == 0


def test_subjects_narrow_who_may_send(kafka, hub_factory, decoder, pki):
    hub = tls_traffic_hub(hub_factory, kafka, pki, subjects=["CN=jj-gw-03,O=Traffic Police,C=CN"]).start()
    s = tls_gateway(hub, pki)  # a certificate of the CA, but not one of subjects
    s.sendall(ndjson([event(1, "TL-SUBJ")]))
    lines = read_lines(s, lambda ls: False)[0]
    assert len(lines) == 1 and "subjects" in lines[0]["detail"], lines
    s.close()
    assert hub.stop() == 0
    hub = tls_traffic_hub(hub_factory, kafka, pki, subjects=[CLIENT_SUBJECT_RFC2253]).start()
    s = tls_gateway(hub, pki)
    s.sendall(b'{"hello": 1, "ack": true}\n' + ndjson([event(1, "TL-SUBJ-OK")]))
    assert read_lines(s, lambda ls: ls and ls[-1].get("ack") == 2)[0][-1] == {"ack": 2}
    s.close()
    assert [r["tls_subject"] for r in records(kafka, hub, decoder)] == [CLIENT_SUBJECT_RFC2253]
    assert hub.stop() == 0


def test_tls_settings_are_checked(kafka, hub_factory, pki):
    no_ca = {"cert_file": pki["server.pem"], "key_file": pki["server.key"]}
    for settings, why in (({"auth": "tls", "tls": no_ca}, "adapters[traffic].auth"),
                          ({"auth": "none", "subjects": ["CN=x"]}, "adapters[traffic].subjects"),
                          ({"auth": "tls", "tls": dict(mtls(pki), key_file="/nonexistent.key")},
                           "adapters[traffic].tls.key_file")):
        hub = traffic_hub(hub_factory, kafka, **settings)
        out = subprocess.run([hub.binary, "--config", hub.config, "--check"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and why in out.stderr, (settings, out.stderr)


def test_reload_takes_new_certificate_files(kafka, hub_factory, pki):
    hub = tls_traffic_hub(hub_factory, kafka, pki).start()

    def server_cert():
        with tls_gateway(hub, pki) as s:
            return s.getpeercert(binary_form=True)

    def der(path):
        with open(path) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    assert server_cert() == der(pki["server.pem"])
    kept = tls_gateway(hub, pki)  # open across the reload
    with open(hub.config, encoding="utf-8") as f:
        text = f.read()
    with open(hub.config, "w", encoding="utf-8") as f:
        f.write(text.replace(json.dumps(pki["server.pem"]), json.dumps(pki["server2.pem"]))
                .replace(json.dumps(pki["server.key"]), json.dumps(pki["server2.key"])))
    hub.proc.send_signal(signal.SIGHUP)
    wait_log(hub, "traffic reloaded")
    assert server_cert() == der(pki["server2.pem"])
    kept.sendall(b'{"hello": 1, "ack": true}\n' + ndjson([event(7, "TL-KEPT")]))
    assert read_lines(kept, lambda ls: ls and ls[-1].get("ack") == 2)[0][-1] == {"ack": 2}
    kept.close()
    assert hub.stop() == 0
