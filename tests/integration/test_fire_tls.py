"""The fire webhook over HTTPS with client certificates (mutual TLS), against a real broker.

With `tls: {cert_file, key_file, client_ca_file, client_cert: required}` on the fire
listener, a client without a certificate, or with one from another CA, is refused in the
handshake (nothing of it reaches Kafka); one with a certificate of the CA is served, and the
certificate's subject is in each record's tls_subject. Plain HTTP to the TLS port is refused
and the daemon serves on. Certificates are made at test time (tests/integration/tls_helpers.py).
"""
import json
import os
import shutil
import signal
import socket
import ssl

import pytest
import requests

import bhcat
from conftest import SCHEMAS, start_refused, wait_log
from tls_helpers import CLIENT_SUBJECT_RFC2253, make_pki


def event(i):
    return {"id": "XF-TLS-%s" % i, "category": "alarm", "unit": "u", "level": "high",
            "occurred_at": "2026-11-27T08:00:00+08:00", "grid_code": "440303-001"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_hub(hub_factory, kafka, tls):
    """A hub whose fire listener has the `tls:` section TLS (written into the config file,
    so that a reload reads it again); hub.url is https."""
    h = hub_factory(kafka)
    with open(h.config, encoding="utf-8") as f:
        text = f.read()
    line = '    topic: "%s"\n' % h.fire_topic
    assert line in text
    text = text.replace(line, line + "    tls: %s\n" % json.dumps(tls))
    with open(h.config, "w", encoding="utf-8") as f:
        f.write(text)
    h.url = "https://127.0.0.1:%d/v1/fire/events" % h.port
    return h


def set_tls(h, tls):
    """Rewrites the fire entry's tls section in H's config file."""
    with open(h.config, encoding="utf-8") as f:
        lines = f.read().split("\n")
    lines = ["    tls: %s" % json.dumps(tls) if x.startswith("    tls: ") else x for x in lines]
    with open(h.config, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def mtls(pki, mode="required", server="server"):
    return {"cert_file": pki[server + ".pem"], "key_file": pki[server + ".key"],
            "client_ca_file": pki["ca.pem"], "client_cert": mode}


def client(pki, who="client"):
    return (pki[who + ".pem"], pki[who + ".key"])


def plain_http_refused(port):
    """Plain HTTP to the TLS port: no HTTP answer, and the connection closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    body = json.dumps(event("plain")).encode()
    s.sendall(b"POST /v1/fire/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/json\r\nAuthorization: Bearer test-token-1\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    s.close()
    assert b"HTTP/" not in got, got
    assert len(got) < 64, got  # an alert at most


def server_cert(h, pki):
    """The certificate the listener presents to a new connection (DER)."""
    ctx = ssl.create_default_context(cafile=pki["ca.pem"])
    ctx.load_cert_chain(*client(pki))
    with socket.create_connection(("127.0.0.1", h.port), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert(binary_form=True)


def der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_mtls_refuses_and_serves(kafka, hub_factory, decoder, pki):
    h = tls_hub(hub_factory, kafka, mtls(pki)).start()
    assert "fire webhooks on https://" in h.logtext()
    ca = pki["ca.pem"]
    # no client certificate: refused in the handshake
    with pytest.raises(requests.exceptions.ConnectionError):
        h.post(event("nocert"), verify=ca, timeout=20)
    # a certificate from another CA: refused
    with pytest.raises(requests.exceptions.ConnectionError):
        h.post(event("stranger"), verify=ca, cert=client(pki, "stranger"), timeout=20)
    # the right one: served
    r = h.post(event(1), verify=ca, cert=client(pki))
    assert r.status_code == 200 and r.json() == {"accepted": 1, "rejected": []}, r.text
    # plain HTTP to the TLS port: refused cleanly, and the daemon serves on
    plain_http_refused(h.port)
    r = h.post(event(2), verify=ca, cert=client(pki))
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    # the two served, with the certificate's subject; nothing of the refused ones
    msgs = bhcat.consume_all(kafka, h.fire_topic)
    recs = [decoder.decode(m["value"])[1] for m in msgs]
    assert sorted(x["event_id"] for x in recs) == ["XF-TLS-1", "XF-TLS-2"]
    assert [x["tls_subject"] for x in recs] == [CLIENT_SUBJECT_RFC2253] * 2
    assert bhcat.consume_all(kafka, h.dlq_topic) == []
    assert h.proc.poll() is None
    assert h.stop() == 0


def test_optional_client_cert_and_plain_listener(kafka, hub_factory, decoder, pki):
    h = tls_hub(hub_factory, kafka, mtls(pki, "optional")).start()
    ca = pki["ca.pem"]
    assert h.post(event("anon"), verify=ca).status_code == 200
    assert h.post(event("known"), verify=ca, cert=client(pki)).status_code == 200
    # optional: a certificate that is sent must still be of the CA
    with pytest.raises(requests.exceptions.ConnectionError):
        h.post(event("stranger"), verify=ca, cert=client(pki, "stranger"), timeout=20)
    recs = {r["event_id"]: r for r in (decoder.decode(m["value"])[1]
                                        for m in bhcat.consume_all(kafka, h.fire_topic))}
    assert sorted(recs) == ["XF-TLS-anon", "XF-TLS-known"]
    assert recs["XF-TLS-anon"]["tls_subject"] is None
    assert recs["XF-TLS-known"]["tls_subject"] == CLIENT_SUBJECT_RFC2253
    assert h.stop() == 0
    # no tls section: plain HTTP as before, tls_subject null
    p = hub_factory(kafka).start()
    assert "fire webhooks on http://" in p.logtext()
    assert p.post(event("plain")).status_code == 200
    recs = [decoder.decode(m["value"])[1] for m in bhcat.consume_all(kafka, p.fire_topic)]
    assert [(x["event_id"], x["tls_subject"]) for x in recs] == [("XF-TLS-plain", None)]
    assert p.stop() == 0


def test_another_schema_version_is_written_by_avro_c(kafka, hub_factory, pki, tmp_path):
    """A FireEvent schema that is not the record fire_event.c writes (here a later version, one
    more optional field): avro-c writes the records, with tls_subject null again for a request
    without a certificate after one with (a reset value kept the branch before: 503)."""
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, schemas)
    path = schemas / "fire_event.avsc"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    h = tls_hub(hub_factory, kafka, mtls(pki, "optional"))
    with open(h.config, encoding="utf-8") as f:
        text = f.read()
    assert "  dir: %s\n" % SCHEMAS in text
    with open(h.config, "w", encoding="utf-8") as f:
        f.write(text.replace("  dir: %s\n" % SCHEMAS, "  dir: %s\n" % schemas))
    h.start()
    assert "records are written through avro-c" in h.logtext()
    ca = pki["ca.pem"]
    order = [("known", client(pki)), ("anon", None), ("known-2", client(pki)), ("anon-2", None)]
    for name, cert in order:
        r = h.post(event(name), verify=ca, cert=cert)
        assert r.status_code == 200 and r.json() == {"accepted": 1, "rejected": []}, r.text
    mine = bhcat.Decoder(str(schemas))
    recs = {r["event_id"]: r for r in (mine.decode(m["value"])[1]
                                        for m in bhcat.consume_all(kafka, h.fire_topic))}
    assert {k: (v["tls_subject"], v["note"]) for k, v in recs.items()} == {
        "XF-TLS-known": (CLIENT_SUBJECT_RFC2253, None), "XF-TLS-anon": (None, None),
        "XF-TLS-known-2": (CLIENT_SUBJECT_RFC2253, None), "XF-TLS-anon-2": (None, None)}
    assert h.stop() == 0


def test_bad_tls_files_are_refused_with_the_key(kafka, hub_factory, pki):
    tls = mtls(pki)
    tls["key_file"] = "/nonexistent/server.key"
    h = tls_hub(hub_factory, kafka, tls)
    rc, err = start_refused(h)
    text = err + h.logtext()
    assert "adapters[fire].tls.key_file" in text and "cannot read '/nonexistent/server.key'" \
        in text, text
    # a key that is not the certificate's
    tls = mtls(pki)
    tls["key_file"] = pki["server2.key"]
    h = tls_hub(hub_factory, kafka, tls)
    rc, err = start_refused(h)
    text = err + h.logtext()
    assert "adapters[fire].tls.key_file" in text and "is not the key of tls.cert_file" in text
    # client certificates required without a CA
    tls = mtls(pki)
    del tls["client_ca_file"]
    h = tls_hub(hub_factory, kafka, tls)
    rc, err = start_refused(h)
    text = err + h.logtext()
    assert "adapters[fire].tls.client_cert" in text and "need tls.client_ca_file" in text


def test_reload_takes_new_files_and_keeps_the_running_ones_on_bad(kafka, hub_factory, pki,
                                                                   tmp_path):
    # the listener's files are copies: rotated in place later
    cur = {"cert_file": str(tmp_path / "cur.pem"), "key_file": str(tmp_path / "cur.key"),
           "client_ca_file": pki["ca.pem"], "client_cert": "required"}
    shutil.copy(pki["server.pem"], cur["cert_file"])
    shutil.copy(pki["server.key"], cur["key_file"])
    h = tls_hub(hub_factory, kafka, cur).start()
    ca = pki["ca.pem"]
    assert server_cert(h, pki) == der(pki["server.pem"])
    # a connection opened before the reload
    kept = requests.Session()
    assert kept.post(h.url, json=event("k1"), verify=ca, cert=client(pki),
                     headers={"Authorization": "Bearer test-token-1"}).status_code == 200

    # new paths: a new context for new connections
    set_tls(h, mtls(pki, server="server2"))
    h.proc.send_signal(signal.SIGHUP)
    wait_log(h, "fire reloaded")
    assert server_cert(h, pki) == der(pki["server2.pem"])
    assert kept.post(h.url, json=event("k2"), verify=ca, cert=client(pki),
                     headers={"Authorization": "Bearer test-token-1"}).status_code == 200

    # a key that does not exist: the reload is refused with the key, the context stays
    bad = mtls(pki, server="server2")
    bad["key_file"] = "/nonexistent/k.key"
    set_tls(h, bad)
    h.proc.send_signal(signal.SIGHUP)
    log = wait_log(h, "reload refused")
    assert "adapters[fire].tls.key_file" in log and "cannot read '/nonexistent/k.key'" in log
    assert server_cert(h, pki) == der(pki["server2.pem"])
    assert h.post(event(3), verify=ca, cert=client(pki)).status_code == 200

    # the same paths, the files replaced: a reload reads them again
    set_tls(h, cur)
    h.proc.send_signal(signal.SIGHUP)
    wait_log(h, "fire reloaded", count=2)
    assert server_cert(h, pki) == der(pki["server.pem"])
    shutil.copy(pki["server2.pem"], cur["cert_file"] + ".new")
    shutil.copy(pki["server2.key"], cur["key_file"] + ".new")
    os.replace(cur["key_file"] + ".new", cur["key_file"])
    os.replace(cur["cert_file"] + ".new", cur["cert_file"])
    h.proc.send_signal(signal.SIGHUP)
    wait_log(h, "fire reloaded", count=3)
    assert server_cert(h, pki) == der(pki["server2.pem"])
    assert h.post(event(4), verify=ca, cert=client(pki)).status_code == 200
    kept.close()
    assert h.stop() == 0
