/*
 * GET /alerts and GET /alerts/stream (alerts_api.h).
 *
 * The history is a ring of the alerts read last (at most `history`, none older
 * than `history_for` by their record's time), each with a sequence number. A
 * stream client holds a cursor into it: whenever less than PUMP_BYTES of its
 * answer wait to be written, the next alerts from its cursor that its filters
 * take are formatted as events and handed to h2o. A slow client so never holds
 * more than about PUMP_BYTES (and MAX_QUEUED at most, keep-alives included); one
 * whose cursor falls out of the ring (it lagged behind a whole history) has its
 * stream ended: it reconnects with since.
 *
 * A client's state lives in its request's pool: h2o frees it when the request
 * is done (the client went away, or the stream was ended); its stop callback
 * says the connection is gone. At stop every stream is ended (a final empty
 * send) and the clients still being written out are let go of.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/alerts/alerts_api.h"
#include "admin.h"
#include "http.h"
#include "hub.h"
#include "kafka.h"
#include "log.h"
#include "lograte.h"
#include "timefmt.h"
#include "utf8.h"

#define PUMP_BYTES       (64 * 1024)
#define MAX_QUEUED       (1024 * 1024)
#define SETUP_RETRY_MS   5000
#define HOLD_RETRY_MS    200
#define KAFKA_TIMEOUT_MS 10000

/* --- the query string ---------------------------------------------------------------- */

/* Percent-decode S[0..LEN) ('+' is a space) into a new string: its length, or -1. */
static ssize_t
unescape(const char *s, size_t len, char **out)
{
    char *d = malloc(len + 1);
    ssize_t w = d != NULL ? bh_http_unescape(s, len, d, len + 1, 1) : -1;
    if (w < 0) {
        free(d);
        return -1;
    }
    *out = d;
    return w;
}

static int
parse_ms(const char *v, size_t len, int64_t *out)
{
    int64_t x = 0;
    if (len == 0 || len > 15)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -EINVAL;
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return 0;
}

static int
parse_since(char *v, size_t len, int64_t *out)
{
    int off = 0;
    if (parse_ms(v, len, out) == 0)
        return 0;
    if (bh_parse_rfc3339(v, len, out, &off) == 0)
        return 0;
    /* An offset's '+' sent unescaped arrives as a space: the last space after the time. */
    char *sp = len > 11 ? memrchr(v + 11, ' ', len - 11) : NULL;
    if (sp != NULL) {
        *sp = '+';
        int rc = bh_parse_rfc3339(v, len, out, &off);
        *sp = ' ';
        if (rc == 0)
            return 0;
    }
    return -EINVAL;
}

static void
set_key(char *keybuf, size_t keysize, const char *k, size_t klen)
{
    if (keysize == 0)
        return;
    bh_utf8_sanitize(keybuf, keysize, k, klen);
}

int
bh_alert_query_parse(const char *q, size_t len, struct bh_alert_query *out, char *keybuf,
                     size_t keysize, char *why, size_t why_size)
{
    memset(out, 0, sizeof(*out));
    out->limit = BH_ALERT_QUERY_LIMIT_DEFAULT;
    bool has_limit = false;
    size_t i = 0;
    if (keysize > 0)
        keybuf[0] = '\0';
    while (i < len) {
        const char *amp = memchr(q + i, '&', len - i);
        size_t end = amp != NULL ? (size_t)(amp - q) : len;
        const char *item = q + i;
        size_t ilen = end - i;
        i = end + 1;
        if (ilen == 0)
            continue;
        const char *eq = memchr(item, '=', ilen);
        size_t klen = eq != NULL ? (size_t)(eq - item) : ilen;
        const char *raw = eq != NULL ? eq + 1 : item + ilen;
        size_t rlen = ilen - klen - (eq != NULL ? 1 : 0);
        char *key = NULL, *val = NULL;
        ssize_t kn = unescape(item, klen, &key);
        if (kn < 0 || !bh_utf8_valid(key, (size_t)kn) || memchr(key, '\0', (size_t)kn)) {
            set_key(keybuf, keysize, item, klen);
            snprintf(why, why_size, "a parameter name that is not percent-encoded UTF-8");
            free(key);
            bh_alert_query_free(out);
            return -EINVAL;
        }
        set_key(keybuf, keysize, key, (size_t)kn);
        ssize_t vn = unescape(raw, rlen, &val);
        if (vn < 0) {
            snprintf(why, why_size, "a bad percent escape");
            goto fail;
        }
        if (!bh_utf8_valid(val, (size_t)vn) || memchr(val, '\0', (size_t)vn) != NULL) {
            snprintf(why, why_size, "not valid UTF-8 (or a NUL byte) once percent-decoded");
            goto fail;
        }
        char **slot = strcmp(key, "block") == 0  ? &out->block
                      : strcmp(key, "unit") == 0 ? &out->unit
                      : strcmp(key, "name") == 0 ? &out->name
                                                 : NULL;
        if (slot != NULL) {
            if (*slot != NULL) {
                snprintf(why, why_size, "given twice");
                goto fail;
            }
            if (vn == 0) {
                snprintf(why, why_size, "empty");
                goto fail;
            }
            *slot = val;
            free(key);
            continue;
        }
        if (strcmp(key, "since") == 0) {
            if (out->has_since) {
                snprintf(why, why_size, "given twice");
                goto fail;
            }
            if (parse_since(val, (size_t)vn, &out->since) < 0) {
                snprintf(why, why_size,
                         "neither an RFC 3339 time with an offset nor integer epoch "
                         "milliseconds");
                goto fail;
            }
            out->has_since = true;
        } else if (strcmp(key, "limit") == 0) {
            if (has_limit) {
                snprintf(why, why_size, "given twice");
                goto fail;
            }
            if (parse_ms(val, (size_t)vn, &out->limit) < 0 || out->limit < 1 ||
                out->limit > BH_ALERT_QUERY_LIMIT_MAX) {
                snprintf(why, why_size, "an integer from 1 to %d", BH_ALERT_QUERY_LIMIT_MAX);
                goto fail;
            }
            has_limit = true;
        } else {
            snprintf(why, why_size, "unknown parameter (block, unit, name, since, limit)");
            goto fail;
        }
        free(key);
        free(val);
        continue;
    fail:
        free(key);
        free(val);
        bh_alert_query_free(out);
        return -EINVAL;
    }
    if (keysize > 0)
        keybuf[0] = '\0';
    return 0;
}

void
bh_alert_query_free(struct bh_alert_query *q)
{
    free(q->block);
    free(q->unit);
    free(q->name);
    q->block = q->unit = q->name = NULL;
}

/* --- the history ----------------------------------------------------------------------- */

/* One alert kept: one allocation, its strings after it. */
struct hist {
    int64_t detected_at;
    int64_t ts; /* the record's time: what history_for measures */
    const char *json;
    size_t json_len;
    const char *id;                  /* no control characters: it goes into an event's id line */
    const char *block, *unit, *name; /* NULL when the alert has none */
};

struct ring {
    struct hist **v;
    size_t cap, head, n;
    uint64_t first; /* the sequence number of v[head] */
};

static struct hist *
ring_at(const struct ring *r, uint64_t seq)
{
    return r->v[(r->head + (size_t)(seq - r->first)) % r->cap];
}

static uint64_t
ring_end(const struct ring *r)
{
    return r->first + r->n;
}

static void
ring_drop_head(struct ring *r)
{
    free(r->v[r->head]);
    r->v[r->head] = NULL;
    r->head = (r->head + 1) % r->cap;
    r->n--;
    r->first++;
}

static int
ring_push(struct ring *r, struct hist *h, size_t max)
{
    if (r->n == max)
        ring_drop_head(r);
    if (r->n == r->cap) {
        size_t cap = r->cap == 0 ? 64 : r->cap * 2;
        if (cap > max)
            cap = max;
        struct hist **v = malloc(cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < r->n; i++)
            v[i] = r->v[(r->head + i) % r->cap];
        free(r->v);
        r->v = v;
        r->cap = cap;
        r->head = 0;
    }
    r->v[(r->head + r->n) % r->cap] = h;
    r->n++;
    return 0;
}

static void
ring_free(struct ring *r)
{
    while (r->n > 0)
        ring_drop_head(r);
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* --- state ------------------------------------------------------------------------------ */

struct client;

struct bh_alerts_api {
    struct bh_component *c;
    struct bh_alerts_api_conf conf;
    char *topic;
    uv_loop_t *loop;
    struct bh_admin *admin;
    bh_alerts_json_fn to_json;
    void (*on_closed)(void *arg);
    void *arg;
    /* the consumer */
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int pipefd[2];
    uv_poll_t wake;
    uv_idle_t more;
    uv_timer_t timer;     /* the set-up's retry, a held record's retry */
    uv_timer_t keepalive; /* every stream's comment line */
    uv_work_t setup_work, close_work;
    bool setup_running, assigned, close_started, stopping;
    rd_kafka_message_t *held; /* waiting for its writer schema */
    char setup_err[300];
    int32_t nparts;
    unsigned setup_failures;
    int handles;
    /* the history and its readers */
    struct ring ring;
    struct client *clients;
    /* counters */
    uint64_t read, skipped, streams_opened, streams_ended_slow, events_sent;
    size_t nclients;
};

/* A stream client: lives in its request's pool. */
struct client {
    h2o_generator_t gen;       /* first: h2o hands it back */
    struct bh_alerts_api *api; /* NULL once the adapter let go of it */
    h2o_req_t *req;
    struct client *prev, *next;
    struct bh_alert_query q;
    uint64_t cursor; /* the next alert of the ring to look at */
    char *queued;    /* what waits to be handed to h2o */
    size_t queued_len, queued_cap;
    char *inflight; /* handed to h2o, until it proceeds */
    size_t inflight_len;
    uint64_t last_sent; /* uv_now of the last send */
    bool sending;       /* h2o has INFLIGHT */
    bool ending;        /* a final send is due */
    bool finished;      /* the final send was made, or h2o stopped the stream */
    bool linked;
};

static void consume(struct bh_alerts_api *a);
static void pump(struct client *cl);

/* --- the stream clients ---------------------------------------------------------------- */

static void
client_unlink(struct client *cl)
{
    struct bh_alerts_api *a = cl->api;
    if (!cl->linked || a == NULL)
        return;
    if (cl->prev != NULL)
        cl->prev->next = cl->next;
    else
        a->clients = cl->next;
    if (cl->next != NULL)
        cl->next->prev = cl->prev;
    cl->prev = cl->next = NULL;
    cl->linked = false;
    a->nclients--;
}

/* The request's memory goes: the client too. */
static void
on_client_dispose(void *p)
{
    struct client *cl = p;
    client_unlink(cl);
    bh_alert_query_free(&cl->q);
    free(cl->queued);
    free(cl->inflight);
    cl->queued = cl->inflight = NULL;
}

/* Hand what is queued (or the end) to h2o when it is not writing. */
static void
flush(struct client *cl)
{
    if (cl->sending || cl->finished || cl->req == NULL)
        return;
    if (cl->ending) {
        cl->finished = true;
        client_unlink(cl);
        h2o_send(cl->req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    if (cl->queued_len == 0)
        return;
    free(cl->inflight);
    cl->inflight = cl->queued;
    cl->inflight_len = cl->queued_len;
    cl->queued = NULL;
    cl->queued_len = cl->queued_cap = 0;
    cl->sending = true;
    if (cl->api != NULL)
        cl->last_sent = uv_now(cl->api->loop);
    h2o_iovec_t buf = h2o_iovec_init(cl->inflight, cl->inflight_len);
    h2o_send(cl->req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
}

/* End CL's stream cleanly (what was handed to h2o goes out first). */
static void
client_end(struct client *cl)
{
    if (cl->finished || cl->ending)
        return;
    cl->ending = true;
    free(cl->queued);
    cl->queued = NULL;
    cl->queued_len = cl->queued_cap = 0;
    flush(cl);
}

static int
append(struct client *cl, const char *p, size_t n)
{
    if (cl->queued_len + cl->inflight_len + n > MAX_QUEUED)
        return -ENOBUFS;
    if (cl->queued_len + n > cl->queued_cap) {
        size_t cap = cl->queued_cap == 0 ? 4096 : cl->queued_cap;
        while (cap < cl->queued_len + n)
            cap *= 2;
        char *q = realloc(cl->queued, cap);
        if (q == NULL)
            return -ENOMEM;
        cl->queued = q;
        cl->queued_cap = cap;
    }
    memcpy(cl->queued + cl->queued_len, p, n);
    cl->queued_len += n;
    return 0;
}

static void
on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    struct client *cl = (struct client *)g;
    (void)req;
    cl->sending = false;
    free(cl->inflight);
    cl->inflight = NULL;
    cl->inflight_len = 0;
    if (cl->api != NULL && !cl->ending)
        pump(cl);
    flush(cl);
}

/* The connection went away (or h2o gave up on it): nothing more is sent. */
static void
on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    struct client *cl = (struct client *)g;
    (void)req;
    cl->finished = true;
    cl->req = NULL;
    client_unlink(cl);
}

static bool
takes(const struct bh_alert_query *q, const struct hist *h)
{
    if (q->block != NULL && (h->block == NULL || strcmp(q->block, h->block) != 0))
        return false;
    if (q->unit != NULL && (h->unit == NULL || strcmp(q->unit, h->unit) != 0))
        return false;
    if (q->name != NULL && (h->name == NULL || strcmp(q->name, h->name) != 0))
        return false;
    return !q->has_since || h->detected_at >= q->since;
}

/* The next alerts CL takes, while little of its answer waits. */
static void
pump(struct client *cl)
{
    struct bh_alerts_api *a = cl->api;
    if (a == NULL || cl->finished || cl->ending)
        return;
    if (cl->cursor < a->ring.first) {
        /* It lagged behind the whole history: what it missed is gone. */
        a->streams_ended_slow++;
        bh_info(a->c->name,
                "a stream client fell %" PRIu64 " alert(s) behind the history: "
                "its stream is ended (it may reconnect with since)",
                a->ring.first - cl->cursor);
        client_end(cl);
        return;
    }
    while (cl->cursor < ring_end(&a->ring) && cl->queued_len + cl->inflight_len < PUMP_BYTES) {
        const struct hist *h = ring_at(&a->ring, cl->cursor);
        cl->cursor++;
        if (!takes(&cl->q, h))
            continue;
        char head[600];
        int n = snprintf(head, sizeof(head), "id: %s\nevent: alert\ndata: ", h->id);
        if (n < 0 || (size_t)n >= sizeof(head))
            n = snprintf(head, sizeof(head), "event: alert\ndata: ");
        if (append(cl, head, (size_t)n) < 0 || append(cl, h->json, h->json_len) < 0 ||
            append(cl, "\n\n", 2) < 0) {
            a->streams_ended_slow++;
            client_end(cl);
            return;
        }
        a->events_sent++;
    }
    flush(cl);
}

static void
on_keepalive(uv_timer_t *t)
{
    struct bh_alerts_api *a = t->data;
    static const char line[] = ": keep-alive\n\n";
    uint64_t now = uv_now(a->loop);
    for (struct client *cl = a->clients, *next; cl != NULL; cl = next) {
        next = cl->next;
        if (cl->ending || now - cl->last_sent < (uint64_t)a->conf.keep_alive)
            continue;
        if (append(cl, line, sizeof(line) - 1) < 0) {
            a->streams_ended_slow++;
            client_end(cl);
            continue;
        }
        flush(cl);
    }
}

/* --- the answers ------------------------------------------------------------------------ */

struct buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void
put(struct buf *b, const char *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 4096 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (q == NULL) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
send_error(h2o_req_t *req, int status, const char *reason, const char *msg, const char *key)
{
    json_t *o = key != NULL ? json_pack("{s:s,s:s}", "error", msg, "key", key)
                            : json_pack("{s:s}", "error", msg);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text != NULL)
        bh_admin_send_json(req, status, reason, text);
    else
        bh_http_send_error(req, status, reason, msg);
    free(text);
    json_decref(o);
}

/* The query of REQ: 0, or -EINVAL with REQ answered 400. */
static int
query_of(h2o_req_t *req, struct bh_alert_query *q)
{
    const char *s = "";
    size_t len = 0;
    if (req->query_at != SIZE_MAX && req->query_at < req->path.len) {
        s = req->path.base + req->query_at + 1;
        len = req->path.len - req->query_at - 1;
    }
    char key[256], why[300];
    if (bh_alert_query_parse(s, len, q, key, sizeof(key), why, sizeof(why)) == 0)
        return 0;
    char msg[600];
    snprintf(msg, sizeof(msg), "%s: %s", key, why);
    msg[bh_utf8_cut(msg, strlen(msg), sizeof(msg) - 1)] = '\0';
    send_error(req, 400, "Bad Request", msg, key);
    return -EINVAL;
}

/* The oldest go first once past history_for (past history, ring_push drops them). */
static void
prune(struct bh_alerts_api *a)
{
    int64_t cutoff = bh_now_ms() - a->conf.history_for;
    while (a->ring.n > 0 && ring_at(&a->ring, a->ring.first)->ts < cutoff)
        ring_drop_head(&a->ring);
}

static void
get_alerts(struct bh_alerts_api *a, h2o_req_t *req)
{
    struct bh_alert_query q;
    if (query_of(req, &q) < 0)
        return;
    prune(a);
    struct buf b = {0};
    int64_t n = 0;
    bool truncated = false;
    put(&b, "{\"alerts\":[", 11);
    for (uint64_t seq = a->ring.first; seq < ring_end(&a->ring); seq++) {
        const struct hist *h = ring_at(&a->ring, seq);
        if (!takes(&q, h))
            continue;
        if (n == q.limit) {
            truncated = true;
            break;
        }
        if (n++ > 0)
            put(&b, ",", 1);
        put(&b, h->json, h->json_len);
    }
    char tail[100];
    if (a->ring.n > 0)
        snprintf(tail, sizeof(tail), "],\"history_from\":%" PRId64 ",\"truncated\":%s}",
                 ring_at(&a->ring, a->ring.first)->detected_at, truncated ? "true" : "false");
    else
        snprintf(tail, sizeof(tail), "],\"history_from\":null,\"truncated\":%s}",
                 truncated ? "true" : "false");
    put(&b, tail, strlen(tail));
    bh_alert_query_free(&q);
    if (b.oom)
        bh_http_send_error(req, 500, "Internal Server Error", "out of memory");
    else
        bh_admin_send_json(req, 200, "OK", b.p);
    free(b.p);
}

static void
get_stream(struct bh_alerts_api *a, h2o_req_t *req)
{
    struct bh_alert_query q;
    if (query_of(req, &q) < 0)
        return;
    struct client *cl = h2o_mem_alloc_shared(&req->pool, sizeof(*cl), on_client_dispose);
    memset(cl, 0, sizeof(*cl));
    cl->gen.proceed = on_proceed;
    cl->gen.stop = on_stop;
    cl->api = a;
    cl->req = req;
    cl->q = q;
    cl->cursor = q.has_since ? a->ring.first : ring_end(&a->ring);
    cl->last_sent = uv_now(a->loop);
    cl->next = a->clients;
    if (cl->next != NULL)
        cl->next->prev = cl;
    a->clients = cl;
    cl->linked = true;
    a->nclients++;
    a->streams_opened++;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream; charset=utf-8"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-cache"));
    h2o_start_response(req, &cl->gen);
    static const char hello[] = ": blockhub alerts\n\n";
    append(cl, hello, sizeof(hello) - 1);
    pump(cl);
}

static void
on_req(void *self, h2o_req_t *req)
{
    struct bh_alerts_api *a = self;
    const char *path = req->path_normalized.base;
    size_t len = req->path_normalized.len;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
        send_error(req, 405, "Method Not Allowed", "only GET is served", NULL);
        return;
    }
    if (a->stopping) {
        send_error(req, 503, "Service Unavailable", "the alerts adapter is stopping", NULL);
        return;
    }
    if (h2o_memis(path, len, H2O_STRLIT("/alerts/stream")))
        get_stream(a, req);
    else
        get_alerts(a, req);
}

/* --- the consumer ----------------------------------------------------------------------- */

static void
on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const struct bh_alerts_api *a = rd_kafka_opaque(rk);
    enum bh_log_level l = (enum bh_log_level)bh_lograte_kafka_log_level(level, fac);
    bh_log(l, a->c->name, "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

static void
on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    const struct bh_alerts_api *a = opaque;
    bh_log((enum bh_log_level)bh_lograte_kafka_error_level(err), a->c->name, "%s: %s: %s",
           rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* Keep M (decoded to JSON) at the end of the history; -EAGAIN: try it again later. */
static int
keep(struct bh_alerts_api *a, const rd_kafka_message_t *m)
{
    json_t *o = NULL;
    int rc = a->to_json(a->arg, m, &o);
    if (rc == -EAGAIN)
        return rc;
    a->read++;
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text == NULL) {
        a->skipped++;
        json_decref(o);
        return 0;
    }
    const char *id = json_string_value(json_object_get(o, "alert_id"));
    const char *block = json_string_value(json_object_get(o, "block_id"));
    const char *unit = json_string_value(json_object_get(o, "unit"));
    const char *name = json_string_value(json_object_get(o, "name"));
    json_t *d = json_object_get(o, "detected_at");
    size_t tl = strlen(text), il = id ? strlen(id) : 0, bl = block ? strlen(block) + 1 : 0,
           ul = unit ? strlen(unit) + 1 : 0, nl = name ? strlen(name) + 1 : 0;
    struct hist *h = malloc(sizeof(*h) + tl + 1 + il + 1 + bl + ul + nl);
    if (h == NULL) {
        a->skipped++;
        free(text);
        json_decref(o);
        return 0;
    }
    char *p = (char *)(h + 1);
    h->detected_at = json_is_integer(d) ? (int64_t)json_integer_value(d) : 0;
    rd_kafka_timestamp_type_t tt;
    h->ts = rd_kafka_message_timestamp(m, &tt);
    if (h->ts < 0)
        h->ts = bh_now_ms();
    memcpy(p, text, tl + 1);
    h->json = p;
    h->json_len = tl;
    p += tl + 1;
    memcpy(p, id ? id : "", il + 1);
    for (char *c = p; *c; c++) /* an event's id line ends at a line break */
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    h->id = p;
    p += il + 1;
    const char *src[3] = {block, unit, name};
    const char **dst[3] = {&h->block, &h->unit, &h->name};
    for (int i = 0; i < 3; i++) {
        *dst[i] = NULL;
        if (src[i] != NULL) {
            size_t n = strlen(src[i]) + 1;
            memcpy(p, src[i], n);
            *dst[i] = p;
            p += n;
        }
    }
    free(text);
    json_decref(o);
    prune(a);
    if (ring_push(&a->ring, h, (size_t)a->conf.history) < 0) {
        a->skipped++;
        free(h);
        return 0;
    }
    for (struct client *cl = a->clients, *next; cl != NULL; cl = next) {
        next = cl->next;
        pump(cl);
    }
    return 0;
}

static void
on_hold(uv_timer_t *t)
{
    struct bh_alerts_api *a = t->data;
    if (a->held == NULL || a->stopping)
        return;
    if (keep(a, a->held) == -EAGAIN) {
        uv_timer_start(&a->timer, on_hold, HOLD_RETRY_MS, 0);
        return;
    }
    rd_kafka_message_destroy(a->held);
    a->held = NULL;
    consume(a);
}

static void
on_more(uv_idle_t *h)
{
    uv_idle_stop(h);
    consume(h->data);
}

static void
consume(struct bh_alerts_api *a)
{
    if (a->rk == NULL || a->stopping || a->held != NULL || a->close_started)
        return;
    for (int n = 0; n < 256; n++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(a->rk, 0);
        if (m == NULL)
            return;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                bh_warn(a->c->name, "history consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (keep(a, m) == -EAGAIN) {
            a->held = m;
            uv_timer_start(&a->timer, on_hold, HOLD_RETRY_MS, 0);
            return;
        }
        rd_kafka_message_destroy(m);
    }
    uv_idle_start(&a->more, on_more);
}

static void
on_wake(uv_poll_t *h, int status, int events)
{
    struct bh_alerts_api *a = h->data;
    char buf[256];
    (void)status;
    (void)events;
    while (read(a->pipefd[0], buf, sizeof(buf)) > 0)
        ;
    consume(a);
}

/* On a worker thread: every partition, from the first offset at now - history_for. */
static void
on_setup_work(uv_work_t *w)
{
    struct bh_alerts_api *a = w->data;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(a->rk, a->topic, NULL);
    a->setup_err[0] = '\0';
    if (t == NULL) {
        snprintf(a->setup_err, sizeof(a->setup_err), "topic handle: %s",
                 rd_kafka_err2str(rd_kafka_last_error()));
        return;
    }
    rd_kafka_resp_err_t e = rd_kafka_metadata(a->rk, 0, t, &md, KAFKA_TIMEOUT_MS);
    rd_kafka_topic_destroy(t);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err ||
        md->topics[0].partition_cnt <= 0) {
        snprintf(a->setup_err, sizeof(a->setup_err), "metadata of %s: %s", a->topic,
                 rd_kafka_err2str(e != RD_KAFKA_RESP_ERR_NO_ERROR ? e
                                  : md->topic_cnt == 1 && md->topics[0].err
                                      ? md->topics[0].err
                                      : RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION));
        if (md != NULL)
            rd_kafka_metadata_destroy(md);
        return;
    }
    int32_t n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    int64_t from = bh_now_ms() - a->conf.history_for;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int32_t p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(l, a->topic, p)->offset = from;
    e = rd_kafka_offsets_for_times(a->rk, l, KAFKA_TIMEOUT_MS);
    for (int i = 0; i < l->cnt; i++) {
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR || l->elems[i].err || l->elems[i].offset < 0)
            l->elems[i].offset = RD_KAFKA_OFFSET_END; /* nothing since: from what comes */
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(a->setup_err, sizeof(a->setup_err), "offsets of %s at %" PRId64 ": %s", a->topic,
                 from, rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(l);
        return;
    }
    e = rd_kafka_assign(a->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(a->setup_err, sizeof(a->setup_err), "assign: %s", rd_kafka_err2str(e));
        return;
    }
    a->nparts = n;
}

static void start_close(struct bh_alerts_api *a);
static void start_setup(struct bh_alerts_api *a);

static void
on_setup_retry(uv_timer_t *t)
{
    start_setup(t->data);
}

static void
after_setup_work(uv_work_t *w, int status)
{
    struct bh_alerts_api *a = w->data;
    (void)status;
    a->setup_running = false;
    if (a->stopping) {
        start_close(a);
        return;
    }
    if (a->setup_err[0] != '\0') {
        /* Said once at warn level (the topic may not exist yet), then at debug. */
        bh_log(a->setup_failures++ == 0 ? BH_LOG_WARN : BH_LOG_DEBUG, a->c->name,
               "history of alerts: %s; trying again every %d s", a->setup_err,
               SETUP_RETRY_MS / 1000);
        uv_timer_start(&a->timer, on_setup_retry, SETUP_RETRY_MS, 0);
        return;
    }
    a->assigned = true;
    bh_info(a->c->name, "history of alerts: %d partition(s) of %s from %lld ms ago", a->nparts,
            a->topic, (long long)a->conf.history_for);
    consume(a);
}

static void
start_setup(struct bh_alerts_api *a)
{
    if (a->stopping || a->setup_running)
        return;
    a->setup_running = true;
    a->setup_work.data = a;
    if (uv_queue_work(a->loop, &a->setup_work, on_setup_work, after_setup_work) != 0) {
        a->setup_running = false;
        uv_timer_start(&a->timer, on_setup_retry, SETUP_RETRY_MS, 0);
    }
}

static int
make_consumer(struct bh_alerts_api *a, char *errstr, size_t n)
{
    const struct bh_kvlist *props = &a->c->hub->conf->kafka.properties;
    char client_id[300], err[256];
    snprintf(client_id, sizeof(client_id), "blockhub-alerts-history-%s", a->c->name);
    /* A group.id only because librdkafka's assign needs one: never joined, never committed. */
    const char *pinned[] = {"group.id",
                            client_id,
                            "client.id",
                            client_id,
                            "isolation.level",
                            "read_committed",
                            "enable.auto.commit",
                            "false",
                            "enable.auto.offset.store",
                            "false",
                            "auto.offset.reset",
                            "latest",
                            "enable.partition.eof",
                            "false",
                            NULL};
    rd_kafka_conf_t *c = bh_kafka_consumer_conf(a->c->hub->kafka, props, pinned, 1, errstr, n);
    if (c == NULL)
        return -EINVAL;
    rd_kafka_conf_set_opaque(c, a);
    rd_kafka_conf_set_log_cb(c, on_kafka_log);
    rd_kafka_conf_set_error_cb(c, on_kafka_error);
    a->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (a->rk == NULL) {
        rd_kafka_conf_destroy(c);
        snprintf(errstr, n, "history consumer: %s", err);
        return -EINVAL;
    }
    rd_kafka_poll_set_consumer(a->rk);
    a->queue = rd_kafka_queue_get_consumer(a->rk);
    rd_kafka_queue_io_event_enable(a->queue, a->pipefd[1], "c", 1);
    return 0;
}

/* --- start and stop ---------------------------------------------------------------------- */

static void
teardown_consumer(struct bh_alerts_api *a)
{
    if (a->queue != NULL) {
        rd_kafka_queue_io_event_enable(a->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(a->queue);
        a->queue = NULL;
    }
    if (a->rk != NULL) {
        rd_kafka_consumer_close(a->rk);
        rd_kafka_destroy(a->rk);
    }
}

static void
unref(struct bh_alerts_api *a)
{
    if (--a->handles > 0)
        return;
    if (a->pipefd[0] >= 0) {
        close(a->pipefd[0]);
        close(a->pipefd[1]);
        a->pipefd[0] = a->pipefd[1] = -1;
    }
    a->on_closed(a->arg);
}

static void
on_close_work(uv_work_t *w)
{
    teardown_consumer(w->data);
}

static void
after_close_work(uv_work_t *w, int status)
{
    struct bh_alerts_api *a = w->data;
    (void)status;
    a->rk = NULL;
    unref(a);
}

static void
start_close(struct bh_alerts_api *a)
{
    if (a->close_started || a->setup_running)
        return;
    a->close_started = true;
    a->close_work.data = a;
    if (uv_queue_work(a->loop, &a->close_work, on_close_work, after_close_work) != 0) {
        teardown_consumer(a);
        after_close_work(&a->close_work, 0);
    }
}

static void
on_handle_closed(uv_handle_t *h)
{
    unref(h->data);
}

int
bh_alerts_api_start(struct bh_alerts_api **out, struct bh_component *c,
                    const struct bh_alerts_api_conf *conf, bh_alerts_json_fn to_json,
                    void (*on_closed)(void *arg), void *arg, char *errstr, size_t errstr_size)
{
    *out = NULL;
    struct bh_admin *admin = c->hub->admin;
    if (conf->history == 0) {
        bh_info(c->name, "history 0: GET /alerts and /alerts/stream are not served");
        return 0;
    }
    if (admin == NULL) {
        bh_info(c->name, "no admin API (admin.listen): GET /alerts and /alerts/stream are not "
                         "served");
        return 0;
    }
    struct bh_alerts_api *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->c = c;
    a->conf = *conf;
    a->topic = strdup(conf->topic);
    a->loop = c->hub->loop;
    a->admin = admin;
    a->to_json = to_json;
    a->on_closed = on_closed;
    a->arg = arg;
    a->pipefd[0] = a->pipefd[1] = -1;
    if (a->topic == NULL || pipe2(a->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(errstr, errstr_size, "history: %s", strerror(errno));
        free(a->topic);
        free(a);
        return -ENOMEM;
    }
    int rc = make_consumer(a, errstr, errstr_size);
    if (rc == 0 && (bh_admin_route(admin, "/alerts", on_req, a) < 0 ||
                    bh_admin_route(admin, "/alerts/stream", on_req, a) < 0)) {
        snprintf(errstr, errstr_size, "the admin API has no room for the routes of /alerts");
        bh_admin_unroute(admin, a);
        rc = -ENOSPC;
    }
    if (rc < 0) {
        teardown_consumer(a);
        close(a->pipefd[0]);
        close(a->pipefd[1]);
        free(a->topic);
        free(a);
        return rc;
    }
    uv_poll_init(a->loop, &a->wake, a->pipefd[0]);
    uv_idle_init(a->loop, &a->more);
    uv_timer_init(a->loop, &a->timer);
    uv_timer_init(a->loop, &a->keepalive);
    a->wake.data = a->more.data = a->timer.data = a->keepalive.data = a;
    a->handles = 5; /* four handles and the consumer */
    uv_poll_start(&a->wake, UV_READABLE, on_wake);
    /* checked three times a keep-alive: an idle stream hears one within 4/3 of it */
    uint64_t tick = (uint64_t)conf->keep_alive / 3 > 0 ? (uint64_t)conf->keep_alive / 3 : 1;
    uv_timer_start(&a->keepalive, on_keepalive, tick, tick);
    start_setup(a);
    bh_info(c->name, "GET /alerts and /alerts/stream: up to %lld alert(s) of the last %lld ms",
            (long long)conf->history, (long long)conf->history_for);
    *out = a;
    return 0;
}

void
bh_alerts_api_stop(struct bh_alerts_api *a)
{
    if (a == NULL || a->stopping)
        return;
    a->stopping = true;
    bh_admin_unroute(a->admin, a);
    for (struct client *cl = a->clients, *next; cl != NULL; cl = next) {
        next = cl->next;
        client_end(cl);
    }
    if (a->held != NULL) {
        rd_kafka_message_destroy(a->held);
        a->held = NULL;
    }
    uv_poll_stop(&a->wake);
    uv_handle_t *hs[] = {(uv_handle_t *)&a->wake, (uv_handle_t *)&a->more, (uv_handle_t *)&a->timer,
                         (uv_handle_t *)&a->keepalive};
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
        uv_close(hs[i], on_handle_closed);
    start_close(a); /* else when the set-up's work is back */
}

void
bh_alerts_api_free(struct bh_alerts_api *a)
{
    if (a == NULL)
        return;
    /* Streams still being written out: their requests go without us. */
    for (struct client *cl = a->clients, *next; cl != NULL; cl = next) {
        next = cl->next;
        cl->linked = false;
        cl->api = NULL;
    }
    ring_free(&a->ring);
    free(a->topic);
    free(a);
}

void
bh_alerts_api_stats(const struct bh_alerts_api *a, struct bh_stats *out)
{
    if (a == NULL)
        return;
    bh_stats_add(out, "history_alerts", "alerts kept for GET /alerts and the streams", true,
                 a->ring.n);
    bh_stats_add(out, "history_read", "alert records read by the history consumer", false, a->read);
    bh_stats_add(out, "stream_clients", "clients of GET /alerts/stream", true, a->nclients);
    bh_stats_add(out, "stream_events", "alerts sent to stream clients", false, a->events_sent);
    bh_stats_add(out, "streams_ended_slow", "streams ended because their client read too slowly",
                 false, a->streams_ended_slow);
}
