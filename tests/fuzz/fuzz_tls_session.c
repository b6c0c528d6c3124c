/*
 * hub/tls's session, from a client's bytes: whatever arrives on a TLS port
 * (a ClientHello cut anywhere, plain HTTP, noise) is fed in three pieces cut
 * where the input's first bytes say, the session is read, its output taken,
 * a write tried and the session freed.
 *
 * Oracle (besides no crash, leak or undefined behaviour):
 *   - bh_tls_read gives plaintext (> 0) only once the handshake is done, else
 *     0 or -EPROTO, and -EPROTO exactly when the state is BH_TLS_FAILED, with
 *     a reason;
 *   - once open, the subject is there and valid UTF-8 (a client certificate
 *     is optional here, so a handshake can complete);
 *   - a write is -EAGAIN during the handshake, -EPIPE after a failure or a
 *     close, and whole once open;
 *   - bh_tls_take drains exactly what bh_tls_pending announced.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "tls.h"

static SSL_CTX *ctx;

/* A self-signed EC certificate and its key, written to DIR; the server trusts it as its
 * client CA too. */
static void
make_ctx(void)
{
    char dir[] = "/tmp/bh-fuzz-tls.XXXXXX", cert[64], key[64];
    if (mkdtemp(dir) == NULL)
        bh_fuzz_fail("mkdtemp failed");
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *c = X509_new();
    X509_NAME *n = X509_NAME_new();
    if (k == NULL || c == NULL || n == NULL)
        bh_fuzz_fail("no key or certificate");
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), 1);
    X509_gmtime_adj(X509_getm_notBefore(c), -60);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400);
    X509_set_pubkey(c, k);
    X509_set_subject_name(c, n);
    X509_set_issuer_name(c, n);
    X509_sign(c, k, EVP_sha256());
    FILE *f = fopen(cert, "w");
    FILE *g = fopen(key, "w");
    if (f == NULL || g == NULL)
        bh_fuzz_fail("cannot write %s", dir);
    PEM_write_X509(f, c);
    PEM_write_PrivateKey(g, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    fclose(g);
    struct bh_tls_conf conf = {
        .cert_file = cert, .key_file = key, .client_ca_file = cert, .client_cert = "optional"};
    const char *at = NULL;
    char why[400];
    ctx = bh_tls_ctx_new(&conf, &at, why, sizeof(why));
    if (ctx == NULL)
        bh_fuzz_fail("%s: %s", at, why);
    unlink(cert);
    unlink(key);
    rmdir(dir);
    X509_NAME_free(n);
    X509_free(c);
    EVP_PKEY_free(k);
}

static void
drain(struct bh_tls_session *s)
{
    uint8_t out[4096];
    for (;;) {
        size_t want = bh_tls_pending(s);
        size_t got = bh_tls_take(s, out, sizeof(out));
        if (got != (want < sizeof(out) ? want : sizeof(out)))
            bh_fuzz_fail("take gave %zu of %zu pending", got, want);
        if (got == 0)
            return;
    }
}

static void
read_all(struct bh_tls_session *s)
{
    uint8_t buf[2048];
    for (int i = 0; i < 64; i++) {
        ssize_t n = bh_tls_read(s, buf, sizeof(buf));
        enum bh_tls_state st = bh_tls_state(s);
        if (n > 0 && st != BH_TLS_OPEN)
            bh_fuzz_fail("plaintext in state %d", (int)st);
        if (n < 0 && (n != -EPROTO || st != BH_TLS_FAILED))
            bh_fuzz_fail("read %zd in state %d", n, (int)st);
        if (n == 0 && st == BH_TLS_FAILED)
            bh_fuzz_fail("a failed session read 0");
        if (st == BH_TLS_FAILED && bh_tls_error(s)[0] == '\0')
            bh_fuzz_fail("failed without a reason");
        if (st == BH_TLS_OPEN || st == BH_TLS_CLOSED) {
            const char *subj = bh_tls_subject(s);
            if (subj == NULL)
                bh_fuzz_fail("no subject after the handshake");
            bh_fuzz_check_utf8("subject", subj, strlen(subj));
        }
        drain(s);
        if (n <= 0)
            return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ctx == NULL)
        make_ctx();
    struct bh_tls_session *s = bh_tls_session_new(ctx);
    if (s == NULL)
        bh_fuzz_fail("no session");
    size_t cut1 = size > 0 ? data[0] % (size + 1) : 0;
    size_t cut2 = size > 1 ? cut1 + data[1] % (size - cut1 + 1) : size;
    const uint8_t *parts[3] = {data, data + cut1, data + cut2};
    size_t lens[3] = {cut1, cut2 - cut1, size - cut2};
    for (int i = 0; i < 3; i++) {
        if (bh_tls_feed(s, parts[i], lens[i]) != 0)
            bh_fuzz_fail("feed refused %zu bytes", lens[i]);
        read_all(s);
    }
    ssize_t w = bh_tls_write(s, "ok", 2);
    enum bh_tls_state st = bh_tls_state(s);
    if ((st == BH_TLS_HANDSHAKE && w != -EAGAIN) || (st == BH_TLS_OPEN && w != 2) ||
        ((st == BH_TLS_FAILED || st == BH_TLS_CLOSED) && w != -EPIPE))
        bh_fuzz_fail("write gave %zd in state %d", w, (int)st);
    bh_tls_close(s);
    drain(s);
    bh_tls_session_free(s);
    return 0;
}
