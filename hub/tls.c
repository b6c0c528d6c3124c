#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* --- config ------------------------------------------------------------------ */

static int
check_client_cert(const void *value, char *why, size_t why_size)
{
    const char *v = *(char *const *)value;
    if (v == NULL || strcmp(v, "required") == 0 || strcmp(v, "optional") == 0 ||
        strcmp(v, "none") == 0)
        return 0;
    snprintf(why, why_size, "'%s' is not required, optional or none", v);
    return -EINVAL;
}

#define TKEY(field) offsetof(struct bh_tls_conf, field)

const struct bh_conf_key bh_tls_conf_keys[] = {
    {.name = "cert_file",
     .type = BH_CONF_STRING,
     .offset = TKEY(cert_file),
     .flags = BH_CONF_FILE,
     .stamp = TKEY(cert_stamp),
     .doc = "PEM certificate (chain) of the listener; set, the listener speaks TLS only "
            "(TLS 1.2 and up)."},
    {.name = "key_file",
     .type = BH_CONF_STRING,
     .offset = TKEY(key_file),
     .flags = BH_CONF_FILE,
     .stamp = TKEY(key_stamp),
     .doc = "PEM private key of cert_file (required with it)."},
    {.name = "client_ca_file",
     .type = BH_CONF_STRING,
     .offset = TKEY(client_ca_file),
     .flags = BH_CONF_FILE,
     .stamp = TKEY(client_ca_stamp),
     .doc = "PEM CA certificate(s) that client certificates must chain to (mutual TLS)."},
    {.name = "client_cert",
     .type = BH_CONF_STRING,
     .offset = TKEY(client_cert),
     .check = check_client_cert,
     .doc = "Client certificates: required, optional (one sent must verify) or none; unset: "
            "required when client_ca_file is set, else none."},
    {0},
};

bool
bh_tls_conf_enabled(const struct bh_tls_conf *c)
{
    return c != NULL && c->cert_file != NULL && c->cert_file[0] != '\0';
}

enum bh_tls_client_cert
bh_tls_conf_client_cert(const struct bh_tls_conf *c)
{
    if (c->client_cert == NULL)
        return c->client_ca_file != NULL ? BH_TLS_CLIENT_REQUIRED : BH_TLS_CLIENT_NONE;
    if (strcmp(c->client_cert, "required") == 0)
        return BH_TLS_CLIENT_REQUIRED;
    if (strcmp(c->client_cert, "optional") == 0)
        return BH_TLS_CLIENT_OPTIONAL;
    return BH_TLS_CLIENT_NONE;
}

/* OpenSSL's latest error as text (its reason), the queue cleared. */
static const char *
ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r != NULL ? r : "unknown OpenSSL error";
}

/* Whether PATH can be opened for reading; if not, the reason in WHY. */
static bool
readable(const char *path, char *why, size_t why_size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(why, why_size, "cannot read '%s': %s", path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* A key file with a passphrase is refused, never prompted for. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

static SSL_CTX *
refuse(SSL_CTX *ctx, const char **key, const char *k, int *rc)
{
    SSL_CTX_free(ctx);
    *key = k;
    *rc = -EINVAL;
    return NULL;
}

SSL_CTX *
bh_tls_ctx_new(const struct bh_tls_conf *c, const char **key, char *why, size_t why_size)
{
    int rc = 0;
    *key = NULL;
    if (!bh_tls_conf_enabled(c)) {
        snprintf(why, why_size, "is required for TLS");
        return refuse(NULL, key, "tls.cert_file", &rc);
    }
    if (c->key_file == NULL || c->key_file[0] == '\0') {
        snprintf(why, why_size, "is required with tls.cert_file");
        return refuse(NULL, key, "tls.key_file", &rc);
    }
    enum bh_tls_client_cert mode = bh_tls_conf_client_cert(c);
    if (mode != BH_TLS_CLIENT_NONE && (c->client_ca_file == NULL || c->client_ca_file[0] == 0)) {
        snprintf(why, why_size, "client certificates %s need tls.client_ca_file", c->client_cert);
        return refuse(NULL, key, "tls.client_cert", &rc);
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(why, why_size, "no TLS context: %s", ssl_reason());
        return refuse(NULL, key, "tls.cert_file", &rc);
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_RENEGOTIATION);
    static const unsigned char sid[] = "blockhub";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);

    if (!readable(c->cert_file, why, why_size))
        return refuse(ctx, key, "tls.cert_file", &rc);
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert_file) != 1) {
        snprintf(why, why_size, "'%s' is not a PEM certificate: %s", c->cert_file, ssl_reason());
        return refuse(ctx, key, "tls.cert_file", &rc);
    }
    if (!readable(c->key_file, why, why_size))
        return refuse(ctx, key, "tls.key_file", &rc);
    FILE *kf = fopen(c->key_file, "r");
    EVP_PKEY *pkey = kf != NULL ? PEM_read_PrivateKey(kf, NULL, no_passphrase, NULL) : NULL;
    if (kf != NULL)
        fclose(kf);
    if (pkey == NULL) {
        snprintf(why, why_size, "'%s' is not a PEM private key (without a passphrase): %s",
                 c->key_file, ssl_reason());
        return refuse(ctx, key, "tls.key_file", &rc);
    }
    int used = SSL_CTX_use_PrivateKey(ctx, pkey);
    EVP_PKEY_free(pkey);
    if (used != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(why, why_size, "'%s' is not the key of tls.cert_file '%s': %s", c->key_file,
                 c->cert_file, ssl_reason());
        return refuse(ctx, key, "tls.key_file", &rc);
    }
    if (c->client_ca_file != NULL && c->client_ca_file[0] != '\0') {
        if (!readable(c->client_ca_file, why, why_size))
            return refuse(ctx, key, "tls.client_ca_file", &rc);
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->client_ca_file);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, c->client_ca_file, NULL) != 1) {
            if (names != NULL)
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            snprintf(why, why_size, "'%s' holds no PEM CA certificate: %s", c->client_ca_file,
                     ssl_reason());
            return refuse(ctx, key, "tls.client_ca_file", &rc);
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    int verify = mode == BH_TLS_CLIENT_REQUIRED ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                 : mode == BH_TLS_CLIENT_OPTIONAL ? SSL_VERIFY_PEER
                                                  : SSL_VERIFY_NONE;
    SSL_CTX_set_verify(ctx, verify, NULL);
    SSL_CTX_set_verify_depth(ctx, 8);
    ERR_clear_error();
    return ctx;
}

int
bh_tls_conf_check(const struct bh_tls_conf *c, const char **key, char *why, size_t why_size)
{
    *key = NULL;
    if (!bh_tls_conf_enabled(c)) {
        /* Nothing else means anything without a certificate. */
        if (c->key_file != NULL || c->client_ca_file != NULL || c->client_cert != NULL) {
            *key = "tls.cert_file";
            snprintf(why, why_size, "is required when any other tls key is set");
            return -EINVAL;
        }
        return 0;
    }
    SSL_CTX *ctx = bh_tls_ctx_new(c, key, why, why_size);
    if (ctx == NULL)
        return -EINVAL;
    SSL_CTX_free(ctx);
    return 0;
}

int
bh_tls_server_load(struct bh_tls_server *s, const struct bh_tls_conf *c, char *errstr,
                   size_t errstr_size)
{
    const char *key = NULL;
    char why[400] = "";
    SSL_CTX *ctx = bh_tls_ctx_new(c, &key, why, sizeof(why));
    if (ctx == NULL) {
        snprintf(errstr, errstr_size, "%s: %s", key ? key : "tls", why);
        return -EINVAL;
    }
    SSL_CTX_free(s->ctx);
    s->ctx = ctx;
    s->generation++;
    return 0;
}

SSL_CTX *
bh_tls_server_ctx(const struct bh_tls_server *s)
{
    return s->ctx;
}

void
bh_tls_server_free(struct bh_tls_server *s)
{
    SSL_CTX_free(s->ctx);
    s->ctx = NULL;
}

ssize_t
bh_tls_peer_subject(SSL *ssl, char *buf, size_t n)
{
    if (n > 0)
        buf[0] = '\0';
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (cert == NULL)
        return -1;
    BIO *b = BIO_new(BIO_s_mem());
    size_t len = 0;
    if (b != NULL) {
        /* RFC 2253, but characters beyond ASCII as UTF-8 rather than \XX escapes. */
        X509_NAME *name = X509_get_subject_name(cert);
        if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~(unsigned long)ASN1_STRFLGS_ESC_MSB) <
            0) {
            /* A string that does not convert (a UTF8String that is not UTF-8): its bytes, the
             * ones beyond ASCII escaped (\XX). */
            (void)BIO_reset(b);
            X509_NAME_print_ex(b, name, 0,
                               XN_FLAG_RFC2253 & ~(unsigned long)ASN1_STRFLGS_UTF8_CONVERT);
        }
        char *p;
        long got = BIO_get_mem_data(b, &p);
        if (got > 0 && n > 0)
            len = bh_utf8_sanitize(buf, n, p, (size_t)got);
        BIO_free(b);
    }
    X509_free(cert);
    ERR_clear_error();
    return (ssize_t)len;
}

/* --- sessions ------------------------------------------------------------------ */

struct bh_tls_session {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer */
    BIO *wbio; /* ciphertext for the peer */
    enum bh_tls_state state;
    int closing;
    char *subject;
    char error[256];
};

struct bh_tls_session *
bh_tls_session_new(SSL_CTX *ctx)
{
    struct bh_tls_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->ssl = SSL_new(ctx);
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (s->ssl == NULL || s->rbio == NULL || s->wbio == NULL) {
        SSL_free(s->ssl);
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        free(s);
        ERR_clear_error();
        return NULL;
    }
    /* An empty input BIO means "more to come", not the end of the stream. */
    BIO_set_mem_eof_return(s->rbio, -1);
    SSL_set_bio(s->ssl, s->rbio, s->wbio); /* the SSL owns both now */
    SSL_set_accept_state(s->ssl);
    s->state = BH_TLS_HANDSHAKE;
    return s;
}

void
bh_tls_session_free(struct bh_tls_session *s)
{
    if (s == NULL)
        return;
    SSL_free(s->ssl);
    free(s->subject);
    free(s);
}

int
bh_tls_feed(struct bh_tls_session *s, const void *data, size_t len)
{
    if (s->state == BH_TLS_FAILED || s->state == BH_TLS_CLOSED || len == 0)
        return 0;
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done > (size_t)1 << 30 ? (size_t)1 << 30 : len - done;
        int w = BIO_write(s->rbio, (const char *)data + done, (int)chunk);
        if (w <= 0) {
            ERR_clear_error();
            return -ENOMEM;
        }
        done += (size_t)w;
    }
    return 0;
}

/* The session failed at WHERE: remember why (OpenSSL's reason, or the verify result). */
static ssize_t
fail(struct bh_tls_session *s, const char *where, int err)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    long vr = SSL_get_verify_result(s->ssl);
    if (vr != X509_V_OK)
        snprintf(s->error, sizeof(s->error), "%s: %s (certificate: %s)", where,
                 reason ? reason : "refused", X509_verify_cert_error_string(vr));
    else
        snprintf(s->error, sizeof(s->error), "%s: %s", where,
                 reason                     ? reason
                 : err == SSL_ERROR_SYSCALL ? "unexpected end of stream"
                                            : "protocol error");
    ERR_clear_error();
    s->state = BH_TLS_FAILED;
    return -EPROTO;
}

static void
opened(struct bh_tls_session *s)
{
    s->state = BH_TLS_OPEN;
    char buf[1024];
    ssize_t n = bh_tls_peer_subject(s->ssl, buf, sizeof(buf));
    s->subject = strdup(n >= 0 ? buf : "");
}

ssize_t
bh_tls_read(struct bh_tls_session *s, void *buf, size_t cap)
{
    if (s->state == BH_TLS_FAILED)
        return -EPROTO;
    if (s->state == BH_TLS_CLOSED)
        return 0;
    if (s->state == BH_TLS_HANDSHAKE) {
        ERR_clear_error();
        int r = SSL_do_handshake(s->ssl);
        if (r != 1) {
            int err = SSL_get_error(s->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                return 0;
            return fail(s, "handshake", err);
        }
        opened(s);
        if (s->subject == NULL)
            return fail(s, "handshake", SSL_ERROR_SSL);
    }
    if (cap == 0)
        return 0;
    size_t got = 0;
    ERR_clear_error();
    int r = SSL_read_ex(s->ssl, buf, cap, &got);
    if (r == 1)
        return (ssize_t)got;
    int err = SSL_get_error(s->ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return 0;
    if (err == SSL_ERROR_ZERO_RETURN) {
        s->state = BH_TLS_CLOSED;
        return 0;
    }
    return fail(s, "read", err);
}

ssize_t
bh_tls_write(struct bh_tls_session *s, const void *data, size_t len)
{
    if (s->state == BH_TLS_HANDSHAKE)
        return -EAGAIN;
    if (s->state != BH_TLS_OPEN || s->closing)
        return -EPIPE;
    if (len == 0)
        return 0;
    size_t done = 0;
    ERR_clear_error();
    if (SSL_write_ex(s->ssl, data, len, &done) != 1)
        return fail(s, "write", SSL_get_error(s->ssl, 0));
    return (ssize_t)done;
}

size_t
bh_tls_pending(const struct bh_tls_session *s)
{
    return BIO_ctrl_pending(s->wbio);
}

size_t
bh_tls_take(struct bh_tls_session *s, void *buf, size_t cap)
{
    size_t got = 0;
    if (cap == 0 || BIO_ctrl_pending(s->wbio) == 0)
        return 0;
    if (BIO_read_ex(s->wbio, buf, cap, &got) != 1)
        got = 0;
    ERR_clear_error();
    return got;
}

void
bh_tls_close(struct bh_tls_session *s)
{
    if (s->closing)
        return;
    s->closing = 1;
    if (s->state == BH_TLS_OPEN || s->state == BH_TLS_CLOSED)
        SSL_shutdown(s->ssl);
    ERR_clear_error();
}

enum bh_tls_state
bh_tls_state(const struct bh_tls_session *s)
{
    return s->state;
}

const char *
bh_tls_error(const struct bh_tls_session *s)
{
    return s->error;
}

const char *
bh_tls_subject(const struct bh_tls_session *s)
{
    return s->state == BH_TLS_HANDSHAKE ? NULL : s->subject;
}

SSL *
bh_tls_ssl(struct bh_tls_session *s)
{
    return s->ssl;
}
