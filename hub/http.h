/*
 * An HTTP/1.1 and HTTP/2 (h2c) server on the hub's libuv loop, built on h2o.
 * Used by the fire adapter's ingress (and the admin API later).
 *
 * Order of use: bh_http_init, bh_http_handle for each path, bh_http_listen.
 * A handler may answer later (deferred); it must then hold a dispose hook on
 * the request's pool (bh_http_on_dispose) and forget the request when it
 * fires: h2o frees a request whose client went away.
 */
#ifndef BH_HTTP_H
#define BH_HTTP_H

#define H2O_USE_LIBUV 1
#include <h2o.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

#include "config.h"
#include "tls.h"

struct bh_http {
    h2o_globalconf_t global;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept;
    h2o_hostconf_t *host;
    uv_tcp_t listener;
    uv_loop_t *loop;
    struct sockaddr_storage addr;
    int listening;
    int context_ready;
    int config_ready;
    struct bh_http_conn *conns; /* open connections (internal) */
    size_t nconns;
    struct bh_tls_server tls; /* the running TLS context (bh_http_set_tls); none: plain HTTP */
    uint64_t tls_handshakes;  /* completed */
    uint64_t tls_refused;     /* handshakes that ended in a fatal alert from blockhub */
    char bound[80];           /* the address actually bound, "127.0.0.1:8080" */
};

/* Parse "host:port", "[v6]:port" or ":port" (all interfaces). */
int bh_parse_listen(const char *text, struct sockaddr_storage *out);
/* A bh_conf_key check for a listen address (a char * field): refuses what bh_parse_listen does. */
int bh_conf_check_listen(const void *value, char *why, size_t why_size);
/* "1.2.3.4:5" / "[::1]:5" */
void bh_sockaddr_format(const struct sockaddr *sa, char *buf, size_t n);

/* MAX_BODY: the largest body accepted; h2o refuses larger ones with 413. */
int bh_http_init(struct bh_http *s, uv_loop_t *loop, const char *listen, uint64_t max_body,
                 char *errstr, size_t errstr_size);
/* Route PATH (and below) to ON_REQ; SELF is handed back through the handler. */
int bh_http_handle(struct bh_http *s, const char *path,
                   int (*on_req)(h2o_handler_t *h, h2o_req_t *req), void *self);
/* The SELF given to bh_http_handle, from within a handler. */
void *bh_http_self(h2o_handler_t *h);
int bh_http_listen(struct bh_http *s, char *errstr, size_t errstr_size);
/* Stop accepting connections and close idle ones; requests in flight go on,
 * and their connections close once answered. */
void bh_http_stop(struct bh_http *s);
/* Release the server once the loop no longer runs its requests: waits (on the
 * loop, up to about two seconds) for the connections to finish closing, then
 * disposes of h2o's context and config, whose handles close on the loop.
 * 0, or -EBUSY if a connection stayed open: then S must stay allocated. */
int bh_http_free(struct bh_http *s);
/* How many connections bh_http_free calls left open (-EBUSY) so far: their handles, and
 * those of their servers' h2o contexts, are still in the loop at exit. */
size_t bh_http_left_open(void);

/*
 * Serve HTTPS with the context C builds (bh_tls_ctx_new): before bh_http_listen, or at a
 * reload, when new connections get the new context and open ones keep theirs. On failure
 * ("tls.KEY: reason" in ERRSTR) the running context, if any, stays. HTTP/2 is offered
 * through ALPN beside HTTP/1.1.
 */
int bh_http_set_tls(struct bh_http *s, const struct bh_tls_conf *c, char *errstr,
                    size_t errstr_size);
/* Whether S serves HTTPS. */
bool bh_http_is_tls(const struct bh_http *s);
/* The subject of REQ's client certificate (RFC 2253, valid UTF-8; see bh_tls_peer_subject)
 * into BUF: its length, or -1 when the connection is plain or sent no certificate. */
ssize_t bh_http_tls_subject(h2o_req_t *req, char *buf, size_t n);

/* Register FN(ARG) to run when REQ's memory is released. */
int bh_http_on_dispose(h2o_req_t *req, void (*fn)(void *arg), void *arg);

/* Percent-decode SRC[0..LEN) into DST (CAP bytes, NUL-terminated); with PLUS_SPACE a '+' is a
 * space (a query string's value). The length written, or -1 when an escape is malformed or DST
 * too small. */
ssize_t bh_http_unescape(const char *src, size_t len, char *dst, size_t cap, int plus_space);

/* Answer {"error": MSG} with STATUS; MSG is made valid UTF-8 first, so the answer can
 * always be built. */
void bh_http_send_error(h2o_req_t *req, int status, const char *reason, const char *msg);
/* Whether REQ carries "Authorization: Bearer T" with T one of TOKENS (every byte compared,
 * whatever the first mismatch: the time taken tells nothing). */
bool bh_http_bearer_ok(h2o_req_t *req, const struct bh_strlist *tokens);
/* Answer with a JSON body (BODY is copied). */
void bh_http_send_json(h2o_req_t *req, int status, const char *reason, const char *body);
/* The peer's address as text into BUF ("" if unknown). */
void bh_http_peer(h2o_req_t *req, char *buf, size_t n);

#endif
