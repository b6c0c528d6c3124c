/*
 * The fire adapter: HTTP webhooks (docs/feeds.md, section 3).
 *
 * A POST carries one event object or an array of them. The request is checked
 * as a whole (token, content type, size, JSON), then item by item: a valid
 * event is resolved to its block, encoded as blockhub.fire.FireEvent and
 * produced keyed by block; an invalid one is reported in the response and
 * dead-lettered. The answer waits until Kafka has acknowledged every record
 * the request produced; if that does not happen within ack_timeout (or a
 * delivery fails), the answer is 503 with Retry-After and nothing of that
 * request is reported accepted.
 *
 * Paused (bh_component_pause), a POST is answered 503 with Retry-After before
 * anything of it is read: the sender keeps its events and sends them again.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_write.h"
#include "fire_event.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "publish.h"
#include "record.h"
#include "timefmt.h"
#include "utf8.h"

#define SCHEMA "blockhub.fire.FireEvent"

struct fire_conf {
    char *listen;
    char *path;
    struct bh_strlist tokens;
    uint64_t body_limit;
    int64_t max_items;
    int64_t ack_timeout;
    int64_t retry_after;
    char *topic;
    struct bh_tls_conf tls;
    struct bh_kvlist kafka_properties;
};

struct fire {
    struct bh_component *a;
    const struct fire_conf *conf;
    const struct bh_schema *schema;
    struct bh_http http;
    avro_value_t rec;  /* the record through avro-c, when the direct writer is off */
    int direct;        /* records written by bh_fire_avro_write (checked at start) */
    uint8_t frame[16]; /* the framing bh_encode puts before a record's body */
    size_t frame_len;
    uint8_t *out; /* the framed record */
    size_t out_cap;
    struct bh_fire_body body; /* the request being processed (its buffers kept) */
    size_t live;              /* deferred requests not yet released by h2o */
    int stopping;
    /* Counters (stats): requests by outcome. */
    uint64_t requests, answered_ok, answered_503, refused;
};

struct batch;

struct item {
    struct bh_delivery d;
    struct batch *b;
    size_t index;    /* in the request */
    const char *raw; /* its bytes, in the request's body */
    size_t raw_len;
    int dead_letter; /* the delivery awaited is the item's dead letter */
};

/* One POST that produced records and waits for their acknowledgements. */
struct batch {
    struct fire *f;
    h2o_req_t *req; /* NULL once h2o released the request */
    uv_timer_t timer;
    size_t refs; /* deliveries outstanding + the timer + the request */
    size_t waiting;
    size_t accepted;
    int failed;
    int answered;
    int answer_incomplete; /* a rejection could not be listed: answer 500, not a partial list */
    char *rejected;        /* the answer's "rejected" entries, as JSON, comma-separated */
    size_t rejected_len, rejected_cap;
    struct item *items;
    size_t nitems;
};

/* --- answering ------------------------------------------------------------- */

static void
batch_unref(struct batch *b)
{
    if (--b->refs > 0)
        return;
    free(b->rejected);
    free(b->items);
    free(b);
}

/* A request refused as a whole (4xx), counted. */
static void
refuse(struct fire *f, h2o_req_t *req, int status, const char *reason, const char *msg)
{
    f->refused++;
    bh_http_send_error(req, status, reason, msg);
}

static void
send_503(struct fire *f, h2o_req_t *req, const char *why)
{
    f->answered_503++;
    char ra[24];
    int n = snprintf(ra, sizeof(ra), "%lld", (long long)((f->conf->retry_after + 999) / 1000));
    h2o_iovec_t v = h2o_strdup(&req->pool, ra, (size_t)n);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, v.base, v.len);
    bh_http_send_error(req, 503, "Service Unavailable", why);
}

static void
on_timer_closed(uv_handle_t *h)
{
    batch_unref(h->data);
}

static void
answer(struct batch *b, const char *unavailable)
{
    if (b->answered)
        return;
    b->answered = 1;
    uv_timer_stop(&b->timer);
    uv_close((uv_handle_t *)&b->timer, on_timer_closed);
    if (b->req == NULL)
        return;
    if (unavailable != NULL) {
        bh_warn(b->f->a->name, "answering 503: %s", unavailable);
        send_503(b->f, b->req, unavailable);
        return;
    }
    /* As jansson's compact dump of {"accepted": N, "rejected": [...]} writes it. */
    char small[64];
    size_t need = 48 + b->rejected_len;
    char *text = b->answer_incomplete ? NULL : need <= sizeof(small) ? small : malloc(need);
    if (text != NULL) {
        int k = snprintf(text, need, "{\"accepted\":%zu,\"rejected\":[", b->accepted);
        if (b->rejected_len > 0)
            memcpy(text + k, b->rejected, b->rejected_len);
        memcpy(text + k + b->rejected_len, "]}", 3);
        b->f->answered_ok++;
        bh_http_send_json(b->req, 200, "OK", text);
    } else {
        bh_http_send_json(b->req, 500, "Internal Server Error",
                          "{\"error\":\"the answer could not be built; the accepted events are in "
                          "Kafka and the rejected ones in the dead-letter topic\"}");
    }
    if (text != small)
        free(text);
}

static void reject(struct batch *b, size_t index, enum bh_dlq_reason r, const char *why);

/* Kafka refused an accepted event as too large for the topic: it becomes a rejected item. */
static int
too_large_after_all(struct batch *b, struct item *it)
{
    struct fire *f = b->f;
    char why[200], peer[80] = "";
    if (b->req == NULL)
        return -1; /* the sender is gone: nobody to tell, and its bytes with it */
    snprintf(why, sizeof(why), "Kafka refused the record as larger than the topic accepts");
    bh_http_peer(b->req, peer, sizeof(peer));
    struct bh_dlq_origin origin = {"http", f->conf->path, peer, (int64_t)it->index};
    it->dead_letter = 1;
    if (bh_publish_dead(f->a, BH_DLQ_TOO_LARGE, why, &origin, it->raw, it->raw_len, &it->d) < 0)
        return -1;
    b->accepted--;
    reject(b, it->index, BH_DLQ_TOO_LARGE, why);
    return 0;
}

static void
on_delivered(struct bh_delivery *d, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct item *it = (struct item *)d;
    struct batch *b = it->b;
    (void)partition;
    (void)offset;
    bh_published(b->f->a, d, err);
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && !it->dead_letter && !b->answered &&
        too_large_after_all(b, it) == 0)
        return; /* the dead letter's delivery comes back here */
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        b->failed = 1;
        bh_warn(b->f->a->name, "delivery failed: %s", rd_kafka_err2str(err));
    }
    if (--b->waiting == 0 || b->failed)
        answer(b, b->failed ? "events could not be made durable" : NULL);
    batch_unref(b);
}

static void
on_timeout(uv_timer_t *t)
{
    answer(t->data, "events were not acknowledged by Kafka in time");
}

static void
on_request_released(void *arg)
{
    struct batch *b = arg;
    struct fire *f = b->f;
    b->req = NULL;
    f->live--;
    if (f->stopping && f->live == 0)
        bh_component_stopped(f->a);
    batch_unref(b);
}

/* --- producing ------------------------------------------------------------- */

/* The record through avro-c: f->rec. */
static int
fill(struct fire *f, const struct bh_fire_event *ev, const char *block_id, int64_t now,
     const char *subject)
{
    avro_value_t field;
    int rc = bh_fire_fill(&f->rec, ev, block_id, now);
    /* Null when there is no subject: a reset value keeps the branch of the record before. */
    if (rc == 0 && avro_value_get_by_name(&f->rec, "tls_subject", &field, NULL) == 0)
        rc = bh_rec_opt_string(&f->rec, "tls_subject", subject,
                               subject != NULL ? strlen(subject) : 0);
    return rc;
}

/* SUBJECT: the client certificate's subject, NULL without one (the field stays null, and a
 * schema without tls_subject is written as it is, by avro-c). Every string written directly
 * is valid UTF-8 without a NUL, as avro-c's would be: the event's from JSON, the subject as
 * bh_tls_peer_subject makes it. */
static int
encode(struct fire *f, const struct bh_fire_event *ev, const struct bh_block *blk, int64_t now,
       const char *subject, const void **data, size_t *len)
{
    if (f->direct) {
        size_t need = f->frame_len + bh_fire_avro_bound(ev, blk->id, subject);
        if (need > f->out_cap) {
            uint8_t *out = realloc(f->out, need);
            if (out == NULL)
                return -ENOMEM;
            f->out = out;
            f->out_cap = need;
        }
        memcpy(f->out, f->frame, f->frame_len);
        *data = f->out;
        *len = f->frame_len + bh_fire_avro_write(f->out + f->frame_len, ev, blk->id, now, subject);
        return 0;
    }
    int rc = fill(f, ev, blk->id, now, subject);
    return rc ?: bh_encode(f->a->hub->encoder, f->schema, &f->rec, data, len);
}

static int
produce_event(struct fire *f, struct item *it, const struct bh_fire_event *ev,
              const struct bh_block *blk, int64_t now, const char *subject)
{
    const void *data;
    size_t len;
    int rc = encode(f, ev, blk, now, subject, &data, &len);
    if (rc < 0)
        return rc;
    return bh_publish(f->a, f->conf->topic, blk->id, strlen(blk->id), data, len, ev->id, ev->id_len,
                      &it->d);
}

static void
reject(struct batch *b, size_t index, enum bh_dlq_reason r, const char *why)
{
    char text[600];
    const char *code = bh_dlq_reason_code(r);
    snprintf(text, sizeof(text), "%s: %s", code, why);
    /* WHY is valid UTF-8 already; a cut by snprintf must not split a character either. */
    text[bh_utf8_cut(text, strlen(text), sizeof(text) - 1)] = '\0';
    size_t need = b->rejected_len + 1 + bh_fire_reject_bound(code, text);
    if (need > b->rejected_cap) {
        size_t cap = b->rejected_cap ? b->rejected_cap : 512;
        while (cap < need)
            cap *= 2;
        char *p = realloc(b->rejected, cap);
        if (p == NULL) {
            b->answer_incomplete = 1;
            return;
        }
        b->rejected = p;
        b->rejected_cap = cap;
    }
    if (b->rejected_len > 0)
        b->rejected[b->rejected_len++] = ',';
    b->rejected_len += bh_fire_reject_json(b->rejected + b->rejected_len, index, code, text);
}

/* Validate, resolve and produce every item; returns -errno if producing failed. */
static int
process(struct fire *f, struct batch *b, const struct bh_fire_body *body, const char *peer,
        const char *subject)
{
    struct bh_hub *hub = f->a->hub;
    int64_t now = bh_now_ms();
    struct bh_dlq_origin origin = {"http", f->conf->path, peer, 0};
    char why[512];

    for (size_t i = 0; i < body->n; i++) {
        const struct bh_fire_item *in = &body->items[i];
        struct bh_fire_event ev;
        struct item *it = &b->items[b->nitems];
        enum bh_dlq_reason r = in->refused;
        const struct bh_block *blk = NULL;
        if (r != BH_DLQ_REASON_COUNT)
            snprintf(why, sizeof(why), "%s", in->why);
        else
            r = bh_fire_validate(&in->f, &ev, why, sizeof(why));
        if (r == BH_DLQ_REASON_COUNT) {
            blk = bh_blockmap_resolve(hub->blocks, ev.grid_code, ev.grid_code_len, ev.has_location,
                                      ev.lng, ev.lat);
            if (blk == NULL) {
                r = BH_DLQ_UNRESOLVED_BLOCK;
                if (ev.grid_code != NULL)
                    snprintf(why, sizeof(why), "no block for grid_code '%.*s' and location %s",
                             (int)bh_utf8_cut(ev.grid_code, ev.grid_code_len, 32), ev.grid_code,
                             ev.has_location ? "given" : "(none)");
                else
                    snprintf(why, sizeof(why), "no block for grid_code (none) and location %s",
                             ev.has_location ? "given" : "(none)");
            }
        }
        it->d.cb = on_delivered;
        it->b = b;
        it->index = i;
        it->raw = in->raw;
        it->raw_len = in->raw_len;
        int rc = 0;
        if (r == BH_DLQ_REASON_COUNT) {
            rc = produce_event(f, it, &ev, blk, now, subject);
            if (rc == 0) {
                b->accepted++;
            } else if (rc == -EMSGSIZE) {
                r = BH_DLQ_TOO_LARGE;
                snprintf(why, sizeof(why),
                         "the record is larger than Kafka's message.max.bytes (%zu bytes)",
                         bh_kafka_max_message(bh_component_kafka(f->a)));
            }
        }
        if (r != BH_DLQ_REASON_COUNT) {
            reject(b, i, r, why);
            origin.position = (int64_t)i;
            it->dead_letter = 1;
            rc = bh_publish_dead(f->a, r, why, &origin, in->raw, in->raw_len, &it->d);
        }
        if (rc < 0)
            return rc;
        b->nitems++;
        b->waiting++;
        b->refs++;
    }
    return 0;
}

/* --- the request ----------------------------------------------------------- */

static int
is_json(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    static const char want[] = "application/json";
    size_t wl = sizeof(want) - 1;
    if (v.len < wl || strncasecmp(v.base, want, wl) != 0)
        return 0;
    return v.len == wl || v.base[wl] == ';' || v.base[wl] == ' ';
}

/* The body's buffers are kept for the next request, unless an unusually large one made them. */
static void
done_with_body(struct bh_fire_body *body)
{
    if (body->cap > 1024 || body->arena_cap > 1024 * 1024)
        bh_fire_body_free(body);
    else
        bh_fire_body_clear(body);
}

static int
on_req(h2o_handler_t *h, h2o_req_t *req)
{
    struct fire *f = bh_http_self(h);
    const struct fire_conf *c = f->conf;
    char msg[300];

    if (!h2o_memis(req->path_normalized.base, req->path_normalized.len, c->path, strlen(c->path)))
        return -1; /* h2o answers 404 */
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        refuse(f, req, 405, "Method Not Allowed", "only POST is accepted");
        return 0;
    }
    f->requests++;
    if (f->stopping) {
        send_503(f, req, "shutting down");
        return 0;
    }
    if (f->a->paused) {
        send_503(f, req, "paused by an operator");
        return 0;
    }
    if (!bh_http_bearer_ok(req, &c->tokens)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Bearer"));
        refuse(f, req, 401, "Unauthorized", "a valid bearer token is required");
        return 0;
    }
    if (!is_json(req)) {
        refuse(f, req, 415, "Unsupported Media Type", "Content-Type must be application/json");
        return 0;
    }
    if (req->entity.len > c->body_limit) {
        snprintf(msg, sizeof(msg), "body of %zu bytes exceeds the limit of %llu", req->entity.len,
                 (unsigned long long)c->body_limit);
        refuse(f, req, 413, "Payload Too Large", msg);
        return 0;
    }
    struct bh_fire_body *body = &f->body;
    int status = bh_fire_body_parse(req->entity.base, req->entity.len, (size_t)c->max_items, body,
                                    msg, sizeof(msg));
    if (status != 0)
        done_with_body(body);
    if (status == 413) {
        refuse(f, req, 413, "Payload Too Large", msg);
        return 0;
    }
    if (status == 503) {
        send_503(f, req, msg);
        return 0;
    }
    if (status != 0) {
        refuse(f, req, 400, "Bad Request", msg);
        return 0;
    }
    size_t n = body->n;

    char peer[80], subject[1024];
    bh_http_peer(req, peer, sizeof(peer));
    bool has_subject = bh_http_tls_subject(req, subject, sizeof(subject)) >= 0;
    struct batch *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->items = calloc(n ? n : 1, sizeof(*b->items))) == NULL) {
        free(b);
        done_with_body(body);
        send_503(f, req, "out of memory");
        return 0;
    }
    b->f = f;
    b->req = req;
    b->refs = 2; /* the request and the timer */
    uv_timer_init(f->a->hub->loop, &b->timer);
    b->timer.data = b;
    bh_http_on_dispose(req, on_request_released, b);
    f->live++;

    int rc = process(f, b, body, peer, has_subject ? subject : NULL);
    done_with_body(body);
    if (rc < 0)
        answer(b, "events could not be queued for Kafka");
    else if (b->waiting == 0)
        answer(b, NULL);
    else {
        bh_debug(f->a->name, "%s: %zu record(s) waiting for Kafka; %zu request(s) open", peer,
                 b->waiting, f->live);
        uv_timer_start(&b->timer, on_timeout, (uint64_t)c->ack_timeout, 0);
    }
    return 0;
}

/* --- the adapter ----------------------------------------------------------- */

/*
 * Whether bh_fire_avro_write writes what avro-c writes for the schema loaded
 * (with and without a client certificate's subject): 1 with f->frame set,
 * 0 when it does not (another version of the schema: avro-c writes the
 * records then), -errno on an error.
 */
static int
direct_writer_ok(struct fire *f)
{
    static const char *const subjects[] = {NULL, "CN=消防站 7,O=Fire\\, Dept,C=CN"};
    uint8_t body[512];
    for (int i = 0; i < 8; i++) {
        const char *desc = i % 2 ? "烟感报警" : i % 4 == 2 ? "" : NULL;
        struct bh_fire_event ev = {
            .id = "XF-CHECK-1",
            .id_len = strlen("XF-CHECK-1"),
            .category =
                (const char *[]){"alarm", "hazard", "inspection", "rectified", "drill"}[i % 5],
            .category_index = i % 5,
            .unit = "罗湖区消防检查单位",
            .unit_len = strlen("罗湖区消防检查单位"),
            .building_id = i % 3 ? "B-440303-00017" : NULL,
            .building_id_len = i % 3 ? strlen("B-440303-00017") : 0,
            .grid_code = i % 2 ? NULL : "440303-017",
            .grid_code_len = i % 2 ? 0 : strlen("440303-017"),
            .level = (const char *[]){"low", "medium", "high", "critical"}[i % 4],
            .level_index = i % 4,
            .description = desc,
            .description_len = desc != NULL ? strlen(desc) : 0,
            .has_location = i % 2,
            .lng = -114.130019 + i,
            .lat = 22.546712 - i,
            .occurred_at = 1795737637000LL - i * 86400000LL * 1000,
            .offset_min = i % 2 ? 480 : -210,
        };
        const char *subject = subjects[i % 2];
        const void *data;
        size_t len, hlen;
        size_t n = bh_fire_avro_write(body, &ev, "440303-017", 1795737637123LL, subject);
        int rc = fill(f, &ev, "440303-017", 1795737637123LL, subject);
        rc = rc ?: bh_encode(f->a->hub->encoder, f->schema, &f->rec, &data, &len);
        if (rc < 0)
            return rc;
        if (bh_avro_write_split(data, len, body, n, f->frame, sizeof(f->frame), &hlen) < 0 ||
            (i > 0 && hlen != f->frame_len))
            return 0;
        f->frame_len = hlen;
    }
    return 1;
}

static int
start(struct bh_component *a, char *errstr, size_t errstr_size)
{
    const struct fire_conf *c = a->settings;
    struct fire *f = calloc(1, sizeof(*f));
    int rc = -ENOMEM;
    if (f == NULL)
        return rc;
    f->a = a;
    f->conf = c;
    f->schema = bh_schemas_find(a->hub->schemas, SCHEMA);
    if (f->schema == NULL) {
        snprintf(errstr, errstr_size, "schema %s not found in the schemas directory", SCHEMA);
        rc = -ENOENT;
        goto out;
    }
    if (c->tokens.n == 0) {
        snprintf(errstr, errstr_size, "tokens: at least one bearer token is required");
        rc = -EINVAL;
        goto out;
    }
    if (avro_generic_value_new(f->schema->iface, &f->rec) != 0) {
        snprintf(errstr, errstr_size, "avro: %s", avro_strerror());
        rc = -ENOMEM;
        goto out;
    }
    rc = direct_writer_ok(f);
    if (rc < 0) {
        snprintf(errstr, errstr_size, "avro: %s", avro_strerror());
        avro_value_decref(&f->rec);
        goto out;
    }
    f->direct = rc;
    if (!f->direct)
        bh_info(a->name,
                "%s (%s) is not the record fire_event.c writes: records are written "
                "through avro-c",
                SCHEMA, f->schema->path);
    rc = bh_http_init(&f->http, a->hub->loop, c->listen, c->body_limit, errstr, errstr_size);
    if (rc == 0 && bh_tls_conf_enabled(&c->tls))
        rc = bh_http_set_tls(&f->http, &c->tls, errstr, errstr_size);
    if (rc == 0)
        rc = bh_http_handle(&f->http, c->path, on_req, f);
    if (rc == 0)
        rc = bh_http_listen(&f->http, errstr, errstr_size);
    if (rc < 0) {
        avro_value_decref(&f->rec);
        if (bh_http_free(&f->http) < 0)
            return rc; /* f stays: h2o still holds it */
        goto out;
    }
    a->priv = f;
    size_t max_message = bh_kafka_max_message(bh_component_kafka(a));
    if (c->body_limit > max_message)
        bh_warn(a->name,
                "body_limit (%llu bytes) is above Kafka's message.max.bytes (%zu bytes): an "
                "event whose record is larger is rejected as too_large and dead-lettered",
                (unsigned long long)c->body_limit, max_message);
    bh_info(a->name, "fire webhooks on %s://%s%s -> %s%s",
            bh_http_is_tls(&f->http) ? "https" : "http", f->http.bound, c->path, c->topic,
            !bh_http_is_tls(&f->http) ? ""
            : bh_tls_conf_client_cert(&c->tls) == BH_TLS_CLIENT_REQUIRED
                ? " (client certificate required)"
            : bh_tls_conf_client_cert(&c->tls) == BH_TLS_CLIENT_OPTIONAL
                ? " (client certificate optional)"
                : "");
    return 0;
out:
    free(f);
    return rc;
}

static void
stop(struct bh_component *a)
{
    struct fire *f = a->priv;
    f->stopping = 1;
    bh_http_stop(&f->http);
    if (f->live == 0)
        bh_component_stopped(a);
    else
        bh_info(a->name, "intake stopped; answering the %zu request(s) in flight first", f->live);
}

static void
destroy(struct bh_component *a)
{
    struct fire *f = a->priv;
    if (f == NULL)
        return;
    avro_value_decref(&f->rec);
    bh_fire_body_free(&f->body);
    free(f->out);
    a->priv = NULL;
    if (bh_http_free(&f->http) == 0)
        free(f);
    /* else a connection never closed: h2o keeps f; the process is exiting. */
}

/* Paused, a POST gets 503 with Retry-After (on_req); requests already taken finish. */
static int
pause_intake(struct bh_component *a)
{
    bh_info(a->name, "paused: POSTs are answered 503 with Retry-After");
    return 0;
}

static int
resume_intake(struct bh_component *a)
{
    bh_info(a->name, "resumed");
    return 0;
}

/*
 * New tokens, timeouts and limits are taken at once (the next request sees
 * them; open connections and requests in flight go on); a new address, path,
 * body limit or topic needs a new server: the adapter is replaced instead, and
 * so does TLS turned on or off. With TLS on, the certificate, key and client CA
 * files are read again and a new context serves the connections made from now
 * on (open ones keep theirs); files that do not make one refuse the reload
 * (the config check has read them already) and the running context stays.
 */
static int
reload(struct bh_component *a, const void *settings, char *errstr, size_t errstr_size)
{
    struct fire *f = a->priv;
    const struct fire_conf *n = settings, *o = f->conf;
    if (strcmp(n->listen, o->listen) != 0 || strcmp(n->path, o->path) != 0 ||
        n->body_limit != o->body_limit || strcmp(n->topic, o->topic) != 0 ||
        bh_tls_conf_enabled(&n->tls) != bh_tls_conf_enabled(&o->tls)) {
        snprintf(errstr, errstr_size, "listen, path, body_limit, topic or TLS on/off changed");
        return -ENOTSUP;
    }
    if (bh_tls_conf_enabled(&n->tls)) {
        int rc = bh_http_set_tls(&f->http, &n->tls, errstr, errstr_size);
        if (rc < 0)
            return rc;
    }
    f->conf = n;
    bh_info(a->name, "new settings taken (%zu token(s)%s)", n->tokens.n,
            bh_tls_conf_enabled(&n->tls) ? ", TLS files read again" : "");
    return 0;
}

static void
stats(const struct bh_component *a, struct bh_stats *out)
{
    const struct fire *f = a->priv;
    if (f == NULL)
        return;
    bh_stats_add(out, "requests", "POSTs to the webhook path", false, f->requests);
    bh_stats_add(out, "answered_ok", "requests answered 200 (all of them in Kafka)", false,
                 f->answered_ok);
    bh_stats_add(out, "answered_503", "requests answered 503 (to be sent again)", false,
                 f->answered_503);
    bh_stats_add(out, "refused", "requests refused as a whole (4xx)", false, f->refused);
    bh_stats_add(out, "requests_open", "requests waiting for Kafka", true, f->live);
    if (bh_http_is_tls(&f->http)) {
        bh_stats_add(out, "tls_handshakes", "TLS handshakes completed", false,
                     f->http.tls_handshakes);
        bh_stats_add(out, "tls_refused",
                     "TLS handshakes refused (no or a wrong client certificate, not TLS...)", false,
                     f->http.tls_refused);
    }
}

static int
check_tokens(const void *value, char *why, size_t why_size)
{
    const struct bh_strlist *l = value;
    if (l->n == 0) {
        snprintf(why, why_size, "at least one bearer token is required");
        return -EINVAL;
    }
    return bh_conf_check_secrets(l, 0, why, why_size);
}

/* Across the keys of one entry: the tls section as a whole, its files read. */
static int
check_entry(const void *settings, const char **key, char *why, size_t why_size)
{
    const struct fire_conf *c = settings;
    return bh_tls_conf_check(&c->tls, key, why, why_size);
}

#define KEY(field) offsetof(struct fire_conf, field)

static const struct bh_conf_key fire_keys[] = {
    {.name = "listen",
     .type = BH_CONF_STRING,
     .offset = KEY(listen),
     .def = "127.0.0.1:8080",
     .check = bh_conf_check_listen,
     .doc = "Address and port of the webhook listener (host:port, [v6]:port, :port)."},
    {.name = "path",
     .type = BH_CONF_STRING,
     .offset = KEY(path),
     .def = "/v1/fire/events",
     .doc = "Path the department POSTs to."},
    {.name = "tokens",
     .type = BH_CONF_STRING_LIST,
     .offset = KEY(tokens),
     .flags = BH_CONF_REQUIRED,
     .check = check_tokens,
     .doc = "Accepted bearer tokens (at least one, none empty)."},
    {.name = "body_limit",
     .type = BH_CONF_SIZE,
     .offset = KEY(body_limit),
     .def = "1MiB",
     .min = 1,
     .max = 256LL * 1024 * 1024,
     .doc = "Largest request body; a larger one gets 413."},
    {.name = "max_items",
     .type = BH_CONF_INT,
     .offset = KEY(max_items),
     .def = "1000",
     .min = 1,
     .max = 100000,
     .doc = "Most events in one array body; more gets 413."},
    {.name = "ack_timeout",
     .type = BH_CONF_DURATION,
     .offset = KEY(ack_timeout),
     .def = "10s",
     .min = 10,
     .max = 600000,
     .doc = "How long a request waits for Kafka to acknowledge its events before 503."},
    {.name = "retry_after",
     .type = BH_CONF_DURATION,
     .offset = KEY(retry_after),
     .def = "5s",
     .min = 1000,
     .max = 3600000,
     .doc = "Retry-After sent with a 503 (whole seconds)."},
    {.name = "topic",
     .type = BH_CONF_STRING,
     .offset = KEY(topic),
     .def = "dept.fire",
     .check = bh_conf_check_topic,
     .doc = "Topic the events are published to, keyed by block."},
    {.name = "tls",
     .type = BH_CONF_SECTION,
     .offset = KEY(tls),
     .sub = bh_tls_conf_keys,
     .doc = "HTTPS on the listener, optionally with client certificates (mutual TLS); the "
            "subject of a client certificate goes into each record's tls_subject."},
    BH_KAFKA_PROPERTIES_KEY(KEY(kafka_properties)),
    {0},
};

const struct bh_component_type bh_adapter_type_fire = {
    .name = "fire",
    .doc = "Fire department webhooks over HTTP (docs/feeds.md, section 3).",
    .schema = SCHEMA,
    .conf = {.keys = fire_keys, .size = sizeof(struct fire_conf), .check = check_entry},
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .pause = pause_intake,
    .resume = resume_intake,
    .stats = stats,
    .reload = reload,
};
