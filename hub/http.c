#include "http.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "utf8.h"

/* An accepted connection: h2o owns it once wrapped, and closes the stream
 * with on_conn_closed; the server keeps the list to close idle ones at stop. */
struct bh_http_conn {
    uv_tcp_t tcp; /* first: h2o hands the stream back to on_conn_closed */
    struct bh_http *server;
    struct bh_http_conn *prev, *next;
    h2o_socket_t *sock;
    char *subject; /* TLS: the client certificate's subject, once the handshake is done */
    bool handshaken;
};

struct handler {
    h2o_handler_t super;
    int (*on_req)(h2o_handler_t *h, h2o_req_t *req);
    void *self;
};

/*
 * HTTP/1 framing that h2o lets through: a second Content-Length (h2o takes
 * the first and parses the rest of the body as another request) or a
 * Content-Length beside Transfer-Encoding (request smuggling). The request's
 * header block is still at the start of the socket's input buffer when the
 * handler runs; look at the header names there. 1 if the framing is
 * ambiguous.
 */
static int
ambiguous_framing(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->conn->callbacks->get_socket == NULL)
        return 0;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->input == NULL)
        return 0;
    const char *p = sock->input->bytes, *end = p + sock->input->size;
    /* Only if the buffer does start with this request's line. */
    if ((size_t)(end - p) < req->method.len + 1 ||
        memcmp(p, req->method.base, req->method.len) != 0 || p[req->method.len] != ' ')
        return 0;
    int lengths = 0, chunked = 0;
    const char *line = memchr(p, '\n', (size_t)(end - p));
    while (line != NULL && ++line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            break;
        size_t len = (size_t)(eol - line);
        if (len == 0 || (len == 1 && line[0] == '\r'))
            break; /* the end of the header block */
        const char *colon = memchr(line, ':', len);
        if (colon != NULL) {
            size_t nl = (size_t)(colon - line);
            if (nl == 14 && strncasecmp(line, "content-length", 14) == 0)
                lengths++;
            else if (nl == 17 && strncasecmp(line, "transfer-encoding", 17) == 0)
                chunked++;
        }
        line = eol;
    }
    return lengths > 1 || (lengths > 0 && chunked > 0);
}

static int
on_req_checked(h2o_handler_t *h, h2o_req_t *req)
{
    struct handler *hd = (struct handler *)h;
    if (ambiguous_framing(req)) {
        /* Whatever follows on this connection cannot be trusted: answer and close. */
        req->http1_is_persistent = 0;
        bh_http_send_json(req, 400, "Bad Request",
                          "{\"error\":\"ambiguous framing: more than one Content-Length, or "
                          "Content-Length with Transfer-Encoding\"}");
        return 0;
    }
    return hd->on_req(h, req);
}

int
bh_parse_listen(const char *text, struct sockaddr_storage *out)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon[1] == '\0')
        return -EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        return -EINVAL;
    size_t hl = (size_t)(colon - text);
    if (hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, text, hl);
    host[hl] = '\0';
    memset(out, 0, sizeof(*out));
    if (hl == 0)
        return uv_ip4_addr("0.0.0.0", (int)port, (struct sockaddr_in *)out) == 0 ? 0 : -EINVAL;
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)out) == 0 ? 0 : -EINVAL;
    }
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0 ? 0 : -EINVAL;
}

int
bh_conf_check_listen(const void *value, char *why, size_t why_size)
{
    const char *text = *(char *const *)value;
    struct sockaddr_storage ss;
    if (text == NULL || bh_parse_listen(text, &ss) < 0) {
        snprintf(why, why_size,
                 "'%s' is not an address and port (host:port, [v6]:port or :port, port 0-65535)",
                 text ? text : "");
        return -EINVAL;
    }
    return 0;
}

void
bh_sockaddr_format(const struct sockaddr *sa, char *buf, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(buf, n, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, n, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else if (n > 0) {
        buf[0] = '\0';
    }
}

int
bh_http_init(struct bh_http *s, uv_loop_t *loop, const char *listen, uint64_t max_body,
             char *errstr, size_t errstr_size)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    if (bh_parse_listen(listen, &s->addr) < 0) {
        snprintf(errstr, errstr_size, "listen: '%s' is not host:port", listen);
        return -EINVAL;
    }
    h2o_config_init(&s->global);
    s->config_ready = 1;
    /* h2o refuses a chunked body that reaches this size, so allow one byte more. */
    s->global.max_request_entity_size = (size_t)max_body + 1;
    s->host = h2o_config_register_host(&s->global, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    return 0;
}

int
bh_http_handle(struct bh_http *s, const char *path, int (*on_req)(h2o_handler_t *, h2o_req_t *),
               void *self)
{
    h2o_pathconf_t *pc = h2o_config_register_path(s->host, path, 0);
    struct handler *h = (struct handler *)h2o_create_handler(pc, sizeof(*h));
    h->super.on_req = on_req_checked;
    h->on_req = on_req;
    h->self = self;
    return 0;
}

void *
bh_http_self(h2o_handler_t *h)
{
    return ((struct handler *)h)->self;
}

static void
on_conn_closed(uv_handle_t *h)
{
    struct bh_http_conn *c = (struct bh_http_conn *)h;
    struct bh_http *s = c->server;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->nconns--;
    free(c->subject);
    free(c);
}

static void
on_accept(uv_stream_t *listener, int status)
{
    struct bh_http *s = listener->data;
    if (status != 0)
        return;
    struct bh_http_conn *c = h2o_mem_alloc(sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->server = s;
    uv_tcp_init(listener->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    c->next = s->conns;
    if (c->next != NULL)
        c->next->prev = c;
    s->conns = c;
    s->nconns++;
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    c->sock = sock;
    /* TLS: the context running now; a reload changes it for later connections only. */
    s->accept.ssl_ctx = s->tls.ctx;
    h2o_accept(&s->accept, sock);
}

int
bh_http_listen(struct bh_http *s, char *errstr, size_t errstr_size)
{
    int rc;
    h2o_context_init(&s->ctx, s->loop, &s->global);
    s->context_ready = 1;
    s->accept.ctx = &s->ctx;
    s->accept.hosts = s->global.hosts;
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&s->addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 128, on_accept);
    if (rc != 0) {
        char a[80];
        bh_sockaddr_format((struct sockaddr *)&s->addr, a, sizeof(a));
        snprintf(errstr, errstr_size, "listen on %s: %s", a, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, NULL);
        return rc;
    }
    s->listening = 1;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    bh_sockaddr_format((struct sockaddr *)&bound, s->bound, sizeof(s->bound));
    return 0;
}

void
bh_http_stop(struct bh_http *s)
{
    if (s->listening) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        s->listening = 0;
    }
    if (!s->context_ready)
        return;
    /* Persistent connections close after their answer from now on. */
    h2o_context_request_shutdown(&s->ctx);
    /*
     * A connection h2o is reading from (idle between requests, or in the
     * middle of a request's head or body) sees the end of its input and h2o
     * closes it through its own path. A connection whose request is being
     * handled is not reading: its answer goes out, then it closes.
     */
    for (struct bh_http_conn *c = s->conns; c != NULL; c = c->next) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            shutdown(fd, SHUT_RD);
    }
}

static void
on_wait_tick(uv_timer_t *t)
{
    (void)t;
}

/* Connections bh_http_free had to leave to the exit, in every server of the process. */
static size_t left_open;

size_t
bh_http_left_open(void)
{
    return left_open;
}

int
bh_http_free(struct bh_http *s)
{
    if (s->context_ready) {
        if (s->listening)
            bh_http_stop(s);
        /* Connections still writing an answer get a little time to finish. */
        uv_timer_t tick;
        uv_timer_init(s->loop, &tick);
        uv_timer_start(&tick, on_wait_tick, 10, 10);
        for (int i = 0; i < 200 && s->nconns > 0; i++)
            uv_run(s->loop, UV_RUN_ONCE);
        uv_close((uv_handle_t *)&tick, NULL);
        uv_run(s->loop, UV_RUN_NOWAIT);
        if (s->nconns > 0) {
            /*
             * h2o cannot dispose of a context with connections: leave it to the exit. (h2o
             * 2.2 can hold a TLS connection forever: a write it started that libuv refused
             * at once, the peer gone, leaves it waiting for a completion that never comes,
             * neither reading nor writing.)
             */
            bh_warn("http", "%s: %zu connection(s) still open at exit", s->bound, s->nconns);
            left_open += s->nconns;
            return -EBUSY;
        }
        /* The HTTP/2 graceful shutdown's one-second resend: no connection is left for it. */
        if (h2o_timeout_is_linked(&s->ctx.http2._graceful_shutdown_timeout))
            h2o_timeout_unlink(&s->ctx.http2._graceful_shutdown_timeout);
        h2o_context_dispose(&s->ctx);
        s->context_ready = 0;
    }
    if (s->config_ready) {
        h2o_config_dispose(&s->global);
        s->config_ready = 0;
    }
    s->accept.ssl_ctx = NULL;
    bh_tls_server_free(&s->tls);
    return 0;
}

/* --- TLS ----------------------------------------------------------------------- */

/* The connection of h2o's socket SOCK, NULL if none of S's. */
static struct bh_http_conn *
conn_of(struct bh_http *s, const h2o_socket_t *sock)
{
    for (struct bh_http_conn *c = s->conns; c != NULL && sock != NULL; c = c->next)
        if (c->sock == sock)
            return c;
    return NULL;
}

/*
 * OpenSSL's progress on one of the server's connections. h2o keeps its SSL to itself, but
 * its BIO's data is the h2o socket: at the end of the handshake the subject is taken from
 * the SSL into the connection (found by that socket among the server's own).
 */
static void
on_ssl_info(const SSL *ssl, int where, int ret)
{
    struct bh_http *s = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (s == NULL)
        return;
    if ((where & SSL_CB_ALERT) && (where & SSL_CB_WRITE) && (ret >> 8) == SSL3_AL_FATAL) {
        s->tls_refused++;
        bh_debug("http", "%s: TLS handshake refused: %s", s->bound,
                 SSL_alert_desc_string_long(ret));
        return;
    }
    if (!(where & SSL_CB_HANDSHAKE_DONE))
        return;
    BIO *b = SSL_get_rbio(ssl);
    struct bh_http_conn *c = b != NULL ? conn_of(s, BIO_get_data(b)) : NULL;
    if (c == NULL || c->handshaken)
        return; /* TLS 1.3 says "done" again after its session tickets */
    c->handshaken = true;
    s->tls_handshakes++;
    char subject[1024];
    if (bh_tls_peer_subject((SSL *)ssl, subject, sizeof(subject)) >= 0)
        c->subject = strdup(subject);
}

int
bh_http_set_tls(struct bh_http *s, const struct bh_tls_conf *c, char *errstr, size_t errstr_size)
{
    SSL_CTX *old = s->tls.ctx;
    int rc = bh_tls_server_load(&s->tls, c, errstr, errstr_size);
    if (rc < 0)
        return rc;
    (void)old; /* released by the load; connections made with it hold their own reference */
    SSL_CTX *ctx = s->tls.ctx;
    SSL_CTX_set_app_data(ctx, s);
    SSL_CTX_set_info_callback(ctx, on_ssl_info);
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return 0;
}

bool
bh_http_is_tls(const struct bh_http *s)
{
    return s->tls.ctx != NULL;
}

ssize_t
bh_http_tls_subject(h2o_req_t *req, char *buf, size_t n)
{
    if (n > 0)
        buf[0] = '\0';
    if (req->conn->callbacks->get_socket == NULL)
        return -1;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->ssl == NULL)
        return -1;
    /* The server: the request's context is the one of bh_http, its first member's. */
    struct bh_http *s = (struct bh_http *)((char *)req->conn->ctx - offsetof(struct bh_http, ctx));
    struct bh_http_conn *c = conn_of(s, sock);
    if (c == NULL || c->subject == NULL)
        return -1;
    size_t len = strlen(c->subject);
    if (n == 0)
        return (ssize_t)len;
    size_t cut = bh_utf8_cut(c->subject, len, n - 1);
    memcpy(buf, c->subject, cut);
    buf[cut] = '\0';
    return (ssize_t)cut;
}

struct dispose_hook {
    void (*fn)(void *arg);
    void *arg;
};

static void
run_dispose(void *p)
{
    struct dispose_hook *h = p;
    h->fn(h->arg);
}

int
bh_http_on_dispose(h2o_req_t *req, void (*fn)(void *), void *arg)
{
    struct dispose_hook *h = h2o_mem_alloc_shared(&req->pool, sizeof(*h), run_dispose);
    h->fn = fn;
    h->arg = arg;
    return 0;
}

void
bh_http_send_json(h2o_req_t *req, int status, const char *reason, const char *body)
{
    size_t len = strlen(body);
    char *copy = h2o_mem_alloc_pool(&req->pool, len + 1);
    memcpy(copy, body, len + 1);
    req->res.status = status;
    req->res.reason = reason;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    h2o_send_inline(req, copy, len);
}

void
bh_http_peer(h2o_req_t *req, char *buf, size_t n)
{
    struct sockaddr_storage sa;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&sa);
    if (len == 0) {
        if (n > 0)
            buf[0] = '\0';
        return;
    }
    bh_sockaddr_format((struct sockaddr *)&sa, buf, n);
}

void
bh_http_send_error(h2o_req_t *req, int status, const char *reason, const char *msg)
{
    char clean[1200];
    bh_utf8_sanitize(clean, sizeof(clean), msg, strlen(msg));
    json_t *o = json_pack("{s:s}", "error", clean);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    bh_http_send_json(req, status, reason, text != NULL ? text : "{\"error\":\"(unprintable)\"}");
    free(text);
    json_decref(o);
}

bool
bh_http_bearer_ok(h2o_req_t *req, const struct bh_strlist *tokens)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || strncasecmp(v.base, "Bearer ", 7) != 0)
        return false;
    const char *tok = v.base + 7;
    size_t len = v.len - 7;
    bool ok = false;
    for (size_t t = 0; t < tokens->n; t++) {
        const char *want = tokens->v[t];
        if (strlen(want) != len || len == 0)
            continue;
        unsigned char diff = 0;
        for (size_t k = 0; k < len; k++)
            diff |= (unsigned char)(tok[k] ^ want[k]);
        ok |= diff == 0;
    }
    return ok;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

ssize_t
bh_http_unescape(const char *src, size_t len, char *dst, size_t cap, int plus_space)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        if (w + 1 >= cap)
            return -1;
        if (src[i] != '%') {
            dst[w++] = plus_space && src[i] == '+' ? ' ' : src[i];
            continue;
        }
        int hi = len - i >= 3 ? hexval(src[i + 1]) : -1;
        int lo = len - i >= 3 ? hexval(src[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return -1;
        dst[w++] = (char)(hi * 16 + lo);
        i += 2;
    }
    if (w >= cap)
        return -1;
    dst[w] = '\0';
    return (ssize_t)w;
}
