"""Test certificates made with the openssl CLI at test time (EC P-256, two days): a CA with
two server certificates for 127.0.0.1 and a client, and another CA with a client of its own
(the way deploy/kafka/local-kafka --secure makes its test CA)."""
import os
import subprocess

CLIENT_SUBJECT = "/C=CN/O=Fire Dept, Shenzhen/CN=消防站 7"
# The same, as blockhub writes it: RFC 2253, the last RDN first, the comma escaped.
CLIENT_SUBJECT_RFC2253 = "CN=消防站 7,O=Fire Dept\\, Shenzhen,C=CN"


def _run(d, *args):
    subprocess.run(["openssl"] + list(args), check=True, cwd=d, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=60)


def _ca(d, name, cn):
    _run(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", name + ".key", "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + cn,
         "-utf8")


def _leaf(d, name, ca, subj, ext):
    _run(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         name + ".key", "-out", name + ".csr", "-subj", subj, "-utf8")
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext + "\n")
    _run(d, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
         "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")


def make_pki(d):
    """Makes the files in folder D (str or path); returns {name: path} for ca, server,
    server2, client, stranger (each .pem and .key) and other-ca.pem."""
    d = str(d)
    os.makedirs(d, exist_ok=True)
    _ca(d, "ca", "blockhub test CA")
    _ca(d, "other-ca", "some other CA")
    _leaf(d, "server", "ca", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1")
    _leaf(d, "server2", "ca", "/CN=127.0.0.1/O=second", "subjectAltName=IP:127.0.0.1")
    _leaf(d, "client", "ca", CLIENT_SUBJECT, "extendedKeyUsage=clientAuth")
    _leaf(d, "stranger", "other-ca", "/CN=stranger", "extendedKeyUsage=clientAuth")
    out = {}
    for n in ("ca", "other-ca", "server", "server2", "client", "stranger"):
        out[n + ".pem"] = os.path.join(d, n + ".pem")
        out[n + ".key"] = os.path.join(d, n + ".key")
    return out
