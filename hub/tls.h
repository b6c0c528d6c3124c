/*
 * TLS for blockhub's own listeners, on OpenSSL.
 *
 * Two parts:
 *
 *  - a server context from config (struct bh_tls_conf, the keys of a `tls:`
 *    section): certificate chain, private key, and optionally the CA that
 *    client certificates must chain to, with `client_cert: required |
 *    optional | none`. struct bh_tls_server holds the running SSL_CTX and
 *    swaps in a new one on reload: a context that cannot be built (a missing
 *    or unreadable file, a key that does not match) is refused with the key
 *    and the reason, and the running one stays. Connections already open
 *    keep the context they were made with (OpenSSL counts its references).
 *
 *  - a session (struct bh_tls_session): one server-side connection over
 *    memory BIOs, bytes in and bytes out, no socket and no loop. A libuv
 *    stream owner drives it like this:
 *
 *      on accept:  s = bh_tls_session_new(bh_tls_server_ctx(&srv));
 *      read_cb:    bh_tls_feed(s, buf->base, nread);
 *                  while ((n = bh_tls_read(s, plain, sizeof(plain))) > 0)
 *                      consume(plain, n);
 *                  if (n < 0) -> log bh_tls_error(s), flush, close
 *                  (bh_tls_state(s) == BH_TLS_CLOSED: the peer closed; flush, close)
 *                  flush;
 *      to send:    bh_tls_write(s, data, len) (only once BH_TLS_OPEN), then flush;
 *      flush:      while (bh_tls_pending(s) > 0) {
 *                      n = bh_tls_take(s, out, cap);   // ciphertext for the socket
 *                      uv_write(out, n);
 *                  }
 *      to close:   bh_tls_close(s); flush; then close the stream;
 *                  bh_tls_session_free(s).
 *
 *    Flush after every feed/read: the handshake's answers (and a failure's
 *    alert) appear as output. Once BH_TLS_OPEN, bh_tls_subject gives the
 *    peer certificate's subject.
 *
 * Subjects are in RFC 2253 form ("CN=client 1,O=Example\, Inc.,C=CN"), with
 * characters beyond ASCII as UTF-8 (not escaped), and are always valid UTF-8
 * (bytes that are not become "\xNN"). "" when the peer sent no certificate.
 */
#ifndef BH_TLS_H
#define BH_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"

/* The settings of one listener's `tls:` section (bh_tls_conf_keys). */
struct bh_tls_conf {
    char *cert_file;      /* PEM certificate chain; NULL: no TLS */
    char *key_file;       /* PEM private key */
    char *client_ca_file; /* PEM CA(s) client certificates must chain to; NULL: none */
    char *client_cert;    /* "required", "optional", "none"; NULL: required with a CA, else none */
    /* The files as they were when the config was read: replaced under the same name, the
     * section differs (bh_conf_equal), and a reload reads them again. */
    struct bh_conf_stamp cert_stamp, key_stamp, client_ca_stamp;
};

/* The keys of a `tls:` section: embed as {.name = "tls", .type = BH_CONF_SECTION, .sub =
 * bh_tls_conf_keys, .offset = offsetof(..., tls)}. */
extern const struct bh_conf_key bh_tls_conf_keys[];

enum bh_tls_client_cert {
    BH_TLS_CLIENT_NONE,     /* no certificate asked for */
    BH_TLS_CLIENT_OPTIONAL, /* asked for; one that is sent must verify */
    BH_TLS_CLIENT_REQUIRED, /* a verified certificate, or the handshake fails */
};

/* Whether C turns TLS on (cert_file is set). */
bool bh_tls_conf_enabled(const struct bh_tls_conf *c);
/* The client certificate mode C asks for. */
enum bh_tls_client_cert bh_tls_conf_client_cert(const struct bh_tls_conf *c);

/*
 * Check C as a whole, files included (they are read and a context built):
 * 0, or -errno with *KEY the key at fault ("tls.cert_file", static) and the
 * reason in WHY. For a variant's check (struct bh_conf_variant.check).
 */
int bh_tls_conf_check(const struct bh_tls_conf *c, const char **key, char *why, size_t why_size);

/*
 * A new server SSL_CTX from C (TLS 1.2 and up), or NULL with *KEY and WHY as
 * bh_tls_conf_check. Free with SSL_CTX_free.
 */
SSL_CTX *bh_tls_ctx_new(const struct bh_tls_conf *c, const char **key, char *why, size_t why_size);

/* The running context of a listener, reloadable. Zero it before the first load. */
struct bh_tls_server {
    SSL_CTX *ctx;
    unsigned generation; /* loads that succeeded */
};

/*
 * Build a context from C and make it the running one (the previous one is
 * released; connections made with it keep it). On failure the running
 * context stays and ERRSTR says "tls.KEY: reason". 0 or -errno.
 */
int bh_tls_server_load(struct bh_tls_server *s, const struct bh_tls_conf *c, char *errstr,
                       size_t errstr_size);
/* The running context (NULL before a load). */
SSL_CTX *bh_tls_server_ctx(const struct bh_tls_server *s);
void bh_tls_server_free(struct bh_tls_server *s);

/*
 * The subject of SSL's verified peer certificate, RFC 2253, valid UTF-8, into
 * BUF (always NUL-terminated, cut on a character boundary). Its length, or -1
 * when the peer sent no certificate.
 */
ssize_t bh_tls_peer_subject(SSL *ssl, char *buf, size_t n);

/* --- one connection over memory BIOs ----------------------------------------- */

enum bh_tls_state {
    BH_TLS_HANDSHAKE, /* feed it the client's bytes */
    BH_TLS_OPEN,      /* handshake done: application data both ways */
    BH_TLS_CLOSED,    /* the peer sent close_notify */
    BH_TLS_FAILED,    /* handshake or record error: bh_tls_error says what */
};

struct bh_tls_session;

/* A server-side session on CTX (which it holds a reference to), or NULL (out of memory). */
struct bh_tls_session *bh_tls_session_new(SSL_CTX *ctx);
void bh_tls_session_free(struct bh_tls_session *s);

/* Ciphertext read from the socket. 0, or -ENOMEM; bytes after a failure are ignored. */
int bh_tls_feed(struct bh_tls_session *s, const void *data, size_t len);
/*
 * Advance the handshake and decrypt: plaintext bytes put into BUF (> 0), 0
 * when nothing more can be had from the bytes fed so far (or the session is
 * closed: see bh_tls_state), or -EPROTO when the session failed (a refused
 * certificate, bytes that are not TLS...). Check bh_tls_pending after it.
 */
ssize_t bh_tls_read(struct bh_tls_session *s, void *buf, size_t cap);
/* Encrypt LEN bytes of plaintext: LEN, -EAGAIN before the handshake is done, -EPIPE after
 * a close or failure. The ciphertext waits in bh_tls_pending. */
ssize_t bh_tls_write(struct bh_tls_session *s, const void *data, size_t len);
/* Ciphertext waiting to be written to the socket, in bytes. */
size_t bh_tls_pending(const struct bh_tls_session *s);
/* Move up to CAP bytes of waiting ciphertext into BUF; the bytes moved. */
size_t bh_tls_take(struct bh_tls_session *s, void *buf, size_t cap);
/* Queue a close_notify (output); further writes are refused. */
void bh_tls_close(struct bh_tls_session *s);

enum bh_tls_state bh_tls_state(const struct bh_tls_session *s);
/* Why the session failed ("" if it did not). */
const char *bh_tls_error(const struct bh_tls_session *s);
/* The peer certificate's subject once BH_TLS_OPEN ("" without a certificate); NULL before,
 * and after a handshake that failed. */
const char *bh_tls_subject(const struct bh_tls_session *s);
/* The SSL object, for what this API does not cover (ALPN, the cipher...). */
SSL *bh_tls_ssl(struct bh_tls_session *s);

#endif
