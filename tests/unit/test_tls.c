/*
 * hub/tls: a client SSL and the server session against each other in memory,
 * with certificates made here (EC P-256, an hour long) in a temporary folder.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "tls.h"
#include "utf8.h"

static char dir[64];

static EVP_PKEY *
new_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    return k;
}

/* A certificate for KEY named by NAME (built by the caller), signed by ISSUER/IKEY (NULL:
 * self-signed, a CA). */
static X509 *
new_cert(EVP_PKEY *key, X509_NAME *name, X509 *issuer, EVP_PKEY *ikey, int serial)
{
    X509 *c = X509_new();
    assert_non_null(c);
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
    X509_gmtime_adj(X509_getm_notBefore(c), -60);
    X509_gmtime_adj(X509_getm_notAfter(c), 3600);
    X509_set_pubkey(c, key);
    X509_set_subject_name(c, name);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : c, c, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
                                              issuer ? "critical,CA:FALSE" : "critical,CA:TRUE");
    assert_non_null(ext);
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(c, ikey ? ikey : key, EVP_sha256()) > 0);
    return c;
}

static X509_NAME *
name_cn(const char *cn)
{
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    return n;
}

static void
path(char *buf, size_t n, const char *file)
{
    snprintf(buf, n, "%s/%s", dir, file);
}

static void
write_cert(const char *file, X509 *c)
{
    char p[128];
    path(p, sizeof(p), file);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    PEM_write_X509(f, c);
    fclose(f);
}

static void
write_key(const char *file, EVP_PKEY *k)
{
    char p[128];
    path(p, sizeof(p), file);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

/* A CA and its server and client certificates; another CA and a client of its own; a
 * client whose subject is not valid UTF-8. */
static void
make_pki(void)
{
    EVP_PKEY *cak = new_key(), *otherk = new_key();
    X509_NAME *n = name_cn("blockhub test CA");
    X509 *ca = new_cert(cak, n, NULL, NULL, 1);
    X509_NAME_free(n);
    n = name_cn("other CA");
    X509 *other = new_cert(otherk, n, NULL, NULL, 1);
    X509_NAME_free(n);
    write_cert("ca.pem", ca);
    write_cert("other-ca.pem", other);

    struct {
        const char *file;
        X509 *issuer;
        EVP_PKEY *ikey;
        int bad_utf8;
        const char *cn;
    } who[] = {
        {"server", ca, cak, 0, "127.0.0.1"},     {"server2", ca, cak, 0, "127.0.0.1"},
        {"client", ca, cak, 0, "消防 client 1"}, {"stranger", other, otherk, 0, "stranger"},
        {"badutf8", ca, cak, 1, NULL},
    };
    for (size_t i = 0; i < sizeof(who) / sizeof(who[0]); i++) {
        EVP_PKEY *k = new_key();
        X509_NAME *nm = X509_NAME_new();
        if (who[i].bad_utf8) {
            /* Control bytes, a NUL and a line break in a UTF8String (OpenSSL itself refuses
             * a name that is not UTF-8 when it parses the certificate). */
            static const unsigned char bad[] = {'b', 'a', 'd', 0x01, 0, '\n', 0xc3, 0xa9, 'x'};
            X509_NAME_add_entry_by_NID(nm, NID_commonName, V_ASN1_UTF8STRING, bad, sizeof(bad), -1,
                                       0);
        } else {
            X509_NAME_add_entry_by_txt(nm, "C", MBSTRING_UTF8, (const unsigned char *)"CN", -1, -1,
                                       0);
            X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8, (const unsigned char *)"Fire, Dept",
                                       -1, -1, 0);
            X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)who[i].cn,
                                       -1, -1, 0);
        }
        X509 *c = new_cert(k, nm, who[i].issuer, who[i].ikey, (int)(10 + i));
        char f[64];
        snprintf(f, sizeof(f), "%s.pem", who[i].file);
        write_cert(f, c);
        snprintf(f, sizeof(f), "%s.key", who[i].file);
        write_key(f, k);
        X509_NAME_free(nm);
        X509_free(c);
        EVP_PKEY_free(k);
    }
    X509_free(ca);
    X509_free(other);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(otherk);
}

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/bh-test-tls.XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    make_pki();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    static const char *files[] = {"ca.pem",       "other-ca.pem", "server.pem",  "server.key",
                                  "server2.pem",  "server2.key",  "client.pem",  "client.key",
                                  "stranger.pem", "stranger.key", "badutf8.pem", "badutf8.key"};
    char p[128];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        path(p, sizeof(p), files[i]);
        unlink(p);
    }
    rmdir(dir);
    return 0;
}

/* A server conf: the CA and MODE ("required"...; NULL: no CA at all). Paths live in P. */
struct paths {
    char cert[128], key[128], ca[128];
};

static struct bh_tls_conf
server_conf(struct paths *p, const char *server, const char *mode)
{
    char f[64];
    snprintf(f, sizeof(f), "%s.pem", server);
    path(p->cert, sizeof(p->cert), f);
    snprintf(f, sizeof(f), "%s.key", server);
    path(p->key, sizeof(p->key), f);
    path(p->ca, sizeof(p->ca), "ca.pem");
    struct bh_tls_conf c = {.cert_file = p->cert, .key_file = p->key};
    if (mode != NULL) {
        c.client_ca_file = p->ca;
        c.client_cert = (char *)mode;
    }
    return c;
}

/* A client SSL (memory BIOs) that trusts the test CA, with certificate WHO ("client",
 * "stranger"...; NULL: none). */
static SSL *
client_new(const char *who)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    char p[128], f[64];
    path(p, sizeof(p), "ca.pem");
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, p, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (who != NULL) {
        snprintf(f, sizeof(f), "%s.pem", who);
        path(p, sizeof(p), f);
        assert_int_equal(SSL_CTX_use_certificate_file(ctx, p, SSL_FILETYPE_PEM), 1);
        snprintf(f, sizeof(f), "%s.key", who);
        path(p, sizeof(p), f);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, p, SSL_FILETYPE_PEM), 1);
    }
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL holds it */
    SSL_set_bio(ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_connect_state(ssl);
    return ssl;
}

/* Bytes both ways until nothing moves; the server's plaintext is appended to GOT. */
static void
pump(SSL *client, struct bh_tls_session *s, char *got, size_t cap)
{
    char buf[16384];
    for (int round = 0; round < 20; round++) {
        int moved = 0;
        if (!SSL_is_init_finished(client))
            SSL_do_handshake(client);
        int n;
        while ((n = BIO_read(SSL_get_wbio(client), buf, sizeof(buf))) > 0) {
            assert_int_equal(bh_tls_feed(s, buf, (size_t)n), 0);
            moved = 1;
        }
        ssize_t r;
        while ((r = bh_tls_read(s, buf, sizeof(buf) - 1)) > 0) {
            if (got != NULL) {
                size_t have = strlen(got);
                assert_true(have + (size_t)r < cap);
                memcpy(got + have, buf, (size_t)r);
                got[have + (size_t)r] = '\0';
            }
        }
        size_t t;
        while ((t = bh_tls_take(s, buf, sizeof(buf))) > 0) {
            BIO_write(SSL_get_rbio(client), buf, (int)t);
            moved = 1;
        }
        ERR_clear_error();
        if (!moved)
            break;
    }
}

/* The client's plaintext from the server, into BUF ("" if none). */
static void
client_read(SSL *client, char *buf, size_t cap)
{
    size_t got = 0;
    buf[0] = '\0';
    if (SSL_read_ex(client, buf, cap - 1, &got) == 1)
        buf[got] = '\0';
    ERR_clear_error();
}

static void
test_handshake_with_the_right_client_cert(void **state)
{
    (void)state;
    struct paths p;
    struct bh_tls_conf c = server_conf(&p, "server", "required");
    struct bh_tls_server srv = {0};
    char err[300];
    assert_int_equal(bh_tls_server_load(&srv, &c, err, sizeof(err)), 0);
    struct bh_tls_session *s = bh_tls_session_new(bh_tls_server_ctx(&srv));
    assert_non_null(s);
    assert_int_equal(bh_tls_state(s), BH_TLS_HANDSHAKE);
    assert_null(bh_tls_subject(s));
    assert_int_equal(bh_tls_write(s, "x", 1), -EAGAIN);

    SSL *cl = client_new("client");
    static const char line[] = "{\"id\":\"XF-1\"}\n";
    char got[256] = "";
    pump(cl, s, got, sizeof(got));
    assert_int_equal(bh_tls_state(s), BH_TLS_OPEN);
    assert_true(SSL_is_init_finished(cl));
    assert_string_equal(bh_tls_subject(s), "CN=消防 client 1,O=Fire\\, Dept,C=CN");
    assert_int_equal(SSL_write(cl, line, (int)strlen(line)), (int)strlen(line));
    pump(cl, s, got, sizeof(got));
    assert_string_equal(got, line);

    /* and back */
    assert_int_equal(bh_tls_write(s, "ok\n", 3), 3);
    assert_true(bh_tls_pending(s) > 0);
    pump(cl, s, NULL, 0);
    char back[64];
    client_read(cl, back, sizeof(back));
    assert_string_equal(back, "ok\n");

    /* the client closes: the session says so */
    SSL_shutdown(cl);
    pump(cl, s, NULL, 0);
    assert_int_equal(bh_tls_state(s), BH_TLS_CLOSED);
    assert_int_equal(bh_tls_write(s, "x", 1), -EPIPE);
    bh_tls_close(s);
    bh_tls_session_free(s);
    SSL_free(cl);
    bh_tls_server_free(&srv);
}

/* The server's session refuses CLIENT under MODE: it fails, says why (with WANT), gives
 * no plaintext, and the client is told. */
static void
refused(const char *client, const char *mode, const char *want)
{
    struct paths p;
    struct bh_tls_conf c = server_conf(&p, "server", mode);
    struct bh_tls_server srv = {0};
    char err[300];
    assert_int_equal(bh_tls_server_load(&srv, &c, err, sizeof(err)), 0);
    struct bh_tls_session *s = bh_tls_session_new(bh_tls_server_ctx(&srv));
    SSL *cl = client_new(client);
    char got[256] = "";
    pump(cl, s, got, sizeof(got));
    /* TLS 1.3: the client may think it is done before the server's verdict; it sends. */
    SSL_write(cl, "secret", 6);
    ERR_clear_error();
    pump(cl, s, got, sizeof(got));
    assert_int_equal(bh_tls_state(s), BH_TLS_FAILED);
    assert_string_equal(got, "");
    assert_non_null(strstr(bh_tls_error(s), want));
    assert_int_equal(bh_tls_read(s, got, sizeof(got)), -EPROTO);
    assert_int_equal(bh_tls_write(s, "x", 1), -EPIPE);
    /* the client learns it was refused: an alert, not a hang */
    char back[64];
    client_read(cl, back, sizeof(back));
    assert_string_equal(back, "");
    assert_true(SSL_get_shutdown(cl) & SSL_RECEIVED_SHUTDOWN || SSL_get_error(cl, -1) != 0);
    bh_tls_session_free(s);
    SSL_free(cl);
    bh_tls_server_free(&srv);
}

static void
test_refused_without_a_cert_when_required(void **state)
{
    (void)state;
    refused(NULL, "required", "certificate");
}

static void
test_refused_with_a_cert_from_another_ca(void **state)
{
    (void)state;
    refused("stranger", "required", "certificate");
    /* optional: a certificate that is sent must verify all the same */
    refused("stranger", "optional", "certificate");
}

static void
test_optional_without_a_cert(void **state)
{
    (void)state;
    struct paths p;
    struct bh_tls_conf c = server_conf(&p, "server", "optional");
    struct bh_tls_server srv = {0};
    char err[300];
    assert_int_equal(bh_tls_server_load(&srv, &c, err, sizeof(err)), 0);
    struct bh_tls_session *s = bh_tls_session_new(bh_tls_server_ctx(&srv));
    SSL *cl = client_new(NULL);
    pump(cl, s, NULL, 0);
    assert_int_equal(bh_tls_state(s), BH_TLS_OPEN);
    assert_string_equal(bh_tls_subject(s), "");
    bh_tls_session_free(s);
    SSL_free(cl);
    bh_tls_server_free(&srv);
}

static void
plain_text_refused(const char *text)
{
    struct paths p;
    struct bh_tls_conf c = server_conf(&p, "server", "required");
    struct bh_tls_server srv = {0};
    char err[300], buf[256];
    assert_int_equal(bh_tls_server_load(&srv, &c, err, sizeof(err)), 0);
    struct bh_tls_session *s = bh_tls_session_new(bh_tls_server_ctx(&srv));
    assert_int_equal(bh_tls_feed(s, text, strlen(text)), 0);
    assert_int_equal(bh_tls_read(s, buf, sizeof(buf)), -EPROTO);
    assert_int_equal(bh_tls_state(s), BH_TLS_FAILED);
    assert_true(bh_tls_error(s)[0] != '\0');
    /* more bytes change nothing, and nothing crashes */
    assert_int_equal(bh_tls_feed(s, text, strlen(text)), 0);
    assert_int_equal(bh_tls_read(s, buf, sizeof(buf)), -EPROTO);
    while (bh_tls_take(s, buf, sizeof(buf)) > 0)
        ; /* an alert, maybe */
    bh_tls_close(s);
    bh_tls_session_free(s);
    bh_tls_server_free(&srv);
}

static void
test_plain_text_fails_cleanly(void **state)
{
    (void)state;
    plain_text_refused("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    plain_text_refused("{\"id\":\"XF-1\",\"category\":\"alarm\"}\n");
    plain_text_refused("\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f garbage");
}

static void
test_subject_is_valid_utf8(void **state)
{
    (void)state;
    struct paths p;
    struct bh_tls_conf c = server_conf(&p, "server", "required");
    struct bh_tls_server srv = {0};
    char err[300];
    assert_int_equal(bh_tls_server_load(&srv, &c, err, sizeof(err)), 0);
    struct bh_tls_session *s = bh_tls_session_new(bh_tls_server_ctx(&srv));
    SSL *cl = client_new("badutf8");
    pump(cl, s, NULL, 0);
    assert_int_equal(bh_tls_state(s), BH_TLS_OPEN);
    const char *subj = bh_tls_subject(s);
    assert_non_null(subj);
    assert_true(bh_utf8_valid(subj, strlen(subj)));
    if (strcmp(subj, "CN=bad\\01\\00\\0Aéx") != 0)
        fail_msg("%s", subj);
    for (const char *c = subj; *c; c++)
        assert_true((unsigned char)*c >= 0x20);
    bh_tls_session_free(s);
    SSL_free(cl);
    bh_tls_server_free(&srv);
}

static void
test_reload_keeps_the_running_context_on_a_bad_file(void **state)
{
    (void)state;
    struct paths p;
    struct bh_tls_conf c = server_conf(&p, "server", "required");
    struct bh_tls_server srv = {0};
    char err[300];
    assert_int_equal(bh_tls_server_load(&srv, &c, err, sizeof(err)), 0);
    SSL_CTX *first = bh_tls_server_ctx(&srv);
    /* a connection begun on the first context */
    struct bh_tls_session *old = bh_tls_session_new(first);
    SSL *cl = client_new("client");

    /* a missing key file: refused, named, the first context stays */
    struct bh_tls_conf bad = c;
    bad.key_file = "/nonexistent/server.key";
    assert_int_equal(bh_tls_server_load(&srv, &bad, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "tls.key_file: cannot read '/nonexistent/server.key'"));
    assert_ptr_equal(bh_tls_server_ctx(&srv), first);
    /* a key that is not the certificate's */
    struct paths p2;
    struct bh_tls_conf other = server_conf(&p2, "server2", "required");
    bad.key_file = other.key_file;
    assert_int_equal(bh_tls_server_load(&srv, &bad, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "tls.key_file:"));
    if (strstr(err, "not the key") == NULL)
        fail_msg("%s", err);
    assert_ptr_equal(bh_tls_server_ctx(&srv), first);

    /* a good one replaces it; the old connection finishes on the old context */
    assert_int_equal(bh_tls_server_load(&srv, &other, err, sizeof(err)), 0);
    assert_ptr_not_equal(bh_tls_server_ctx(&srv), first);
    assert_int_equal(srv.generation, 2);
    pump(cl, old, NULL, 0);
    assert_int_equal(bh_tls_state(old), BH_TLS_OPEN);
    /* the first server certificate was the one presented */
    X509 *seen = SSL_get1_peer_certificate(cl);
    char pem[128];
    path(pem, sizeof(pem), "server.pem");
    FILE *f = fopen(pem, "r");
    X509 *want = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_int_equal(X509_cmp(seen, want), 0);
    X509_free(seen);
    X509_free(want);
    bh_tls_session_free(old);
    SSL_free(cl);
    bh_tls_server_free(&srv);
}

/* The keys through the config engine: each refusal names its key. */
struct holder {
    struct bh_tls_conf tls;
};

static const struct bh_conf_key root[] = {
    {.name = "tls",
     .type = BH_CONF_SECTION,
     .offset = offsetof(struct holder, tls),
     .sub = bh_tls_conf_keys},
    {0},
};

static void
check_refused(const char *yaml, const char *want_key, const char *want_reason)
{
    struct holder h = {0};
    char err[600];
    int rc = bh_conf_load_string("t.yaml", yaml, strlen(yaml), NULL, 0, root, &h, err, sizeof(err));
    if (rc == 0) {
        const char *key = NULL;
        char why[400] = "";
        rc = bh_tls_conf_check(&h.tls, &key, why, sizeof(why));
        assert_int_equal(rc, -EINVAL);
        snprintf(err, sizeof(err), "%s: %s", key, why);
        bh_conf_free(root, &h);
    }
    assert_true(rc < 0);
    if (strstr(err, want_key) == NULL || strstr(err, want_reason) == NULL)
        fail_msg("'%s' lacks '%s' or '%s'", err, want_key, want_reason);
}

static void
test_config_refusals_name_the_key(void **state)
{
    (void)state;
    char y[1024];
    char cert[128], key[128], ca[128];
    path(cert, sizeof(cert), "server.pem");
    path(key, sizeof(key), "server.key");
    path(ca, sizeof(ca), "ca.pem");
    check_refused("tls:\n  client_cert: sometimes\n", "tls.client_cert",
                  "not required, optional or none");
    check_refused("tls:\n  key_file: /x.key\n", "tls.cert_file", "required");
    snprintf(y, sizeof(y), "tls:\n  cert_file: %s\n", cert);
    check_refused(y, "tls.key_file", "required");
    snprintf(y, sizeof(y), "tls:\n  cert_file: /nonexistent.pem\n  key_file: %s\n", key);
    check_refused(y, "tls.cert_file", "cannot read '/nonexistent.pem'");
    snprintf(y, sizeof(y), "tls:\n  cert_file: %s\n  key_file: %s\n  client_cert: required\n", cert,
             key);
    check_refused(y, "tls.client_cert", "need tls.client_ca_file");
    snprintf(y, sizeof(y), "tls:\n  cert_file: %s\n  key_file: %s\n  client_ca_file: %s\n", cert,
             key, key);
    check_refused(y, "tls.client_ca_file", "no PEM CA certificate");
    snprintf(y, sizeof(y), "tls:\n  cert_file: %s\n  key_file: %s\n", key, key);
    check_refused(y, "tls.cert_file", "not a PEM certificate");

    /* a good one, and the mode it means */
    struct holder h = {0};
    char err[600];
    snprintf(y, sizeof(y), "tls:\n  cert_file: %s\n  key_file: %s\n  client_ca_file: %s\n", cert,
             key, ca);
    assert_int_equal(
        bh_conf_load_string("t.yaml", y, strlen(y), NULL, 0, root, &h, err, sizeof(err)), 0);
    const char *k = NULL;
    assert_int_equal(bh_tls_conf_check(&h.tls, &k, err, sizeof(err)), 0);
    assert_true(bh_tls_conf_enabled(&h.tls));
    assert_int_equal(bh_tls_conf_client_cert(&h.tls), BH_TLS_CLIENT_REQUIRED);
    bh_conf_free(root, &h);
    /* no section: no TLS, and that is fine */
    memset(&h, 0, sizeof(h));
    assert_int_equal(bh_conf_load_string("t.yaml", "{}\n", 3, NULL, 0, root, &h, err, sizeof(err)),
                     0);
    assert_false(bh_tls_conf_enabled(&h.tls));
    assert_int_equal(bh_tls_conf_check(&h.tls, &k, err, sizeof(err)), 0);
    bh_conf_free(root, &h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_with_the_right_client_cert),
        cmocka_unit_test(test_refused_without_a_cert_when_required),
        cmocka_unit_test(test_refused_with_a_cert_from_another_ca),
        cmocka_unit_test(test_optional_without_a_cert),
        cmocka_unit_test(test_plain_text_fails_cleanly),
        cmocka_unit_test(test_subject_is_valid_utf8),
        cmocka_unit_test(test_reload_keeps_the_running_context_on_a_bad_file),
        cmocka_unit_test(test_config_refusals_name_the_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
