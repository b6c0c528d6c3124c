"""deploy/kafka/local-kafka --secure (issue 12, its first part): a real broker with a SASL_SSL
listener (TLS with a test CA, SCRAM-SHA-512 with the user "blockhub"), for the Kafka security
tests to come. Checked here with confluent-kafka's own librdkafka (the wheel's, 2.6.1 or later):
Debian 12's librdkafka 2.0.2, which blockhub links, sends a SCRAM client-final-message that
Kafka 4.x refuses (the nonce twice; fixed in librdkafka 2.6.1), so blockhub itself cannot yet
authenticate with SCRAM to this broker.
"""
import socket
import subprocess
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from conftest import LOCAL_KAFKA, free_port, wait_until


@pytest.fixture
def secure_broker(tmp_path):
    d = tmp_path / "kafka-secure"
    port = free_port(pair=True)
    while True:  # PORT, PORT+1 (controller) and PORT+2 (SASL_SSL) free
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 2))
            break
        except OSError:
            port = free_port(pair=True)
    subprocess.run([LOCAL_KAFKA, "start", "--secure", str(d), str(port)], check=True,
                   stdout=subprocess.PIPE, timeout=180)
    yield d
    subprocess.run([LOCAL_KAFKA, "stop", str(d)], check=True, timeout=90)


def client_conf(d, **over):
    conf = {}
    for line in (d / "client.properties").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            conf[k] = v
    conf.update(over)
    return conf


def test_secure_listener_takes_the_scram_user_and_refuses_a_wrong_password(secure_broker):
    conf = client_conf(secure_broker)
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanisms"] == "SCRAM-SHA-512"
    topic = "secure.%s" % uuid.uuid4().hex[:8]
    p = Producer(conf)
    p.produce(topic, key=b"440303-017", value=b"over TLS, as blockhub")
    assert p.flush(60) == 0
    md = AdminClient(conf).list_topics(topic, timeout=30)
    assert topic in md.topics and md.topics[topic].error is None
    errors = []
    bad = Producer(client_conf(secure_broker, **{"sasl.password": "wrong",
                                                "error_cb": lambda e: errors.append(e.str())}))
    bad.produce(topic, value=b"refused")
    wait_until(lambda: bad.poll(0.2) is not None and any(
        "Authentication failed" in e for e in errors), "the wrong password refused")
    assert bad.flush(0) == 1  # nothing went through
