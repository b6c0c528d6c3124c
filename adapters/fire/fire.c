/*
 * The fire adapter: HTTP webhooks (FEEDS.md, "Fire").
 *
 * A POST carries one event object or an array of them. The request is checked
 * as a whole (token, content type, size, JSON), then item by item: a valid
 * event is resolved to its block, encoded as blockhub.fire.FireEvent and
 * produced keyed by block; an invalid one is reported in the response and
 * dead-lettered. The answer waits until Kafka has acknowledged every record
 * the request produced; if that does not happen within ack_timeout (or a
 * delivery fails), the answer is 503 with Retry-After and nothing of that
 * request is reported accepted.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlq.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "record.h"
#include "timefmt.h"

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
};

struct fire {
    struct bh_adapter *a;
    const struct fire_conf *conf;
    const struct bh_schema *schema;
    struct bh_http http;
    avro_value_t rec;
    size_t live; /* deferred requests not yet released by h2o */
    int stopping;
};

struct batch;

struct item {
    struct bh_delivery d;
    struct batch *b;
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
    json_t *rejected;
    struct item *items;
    size_t nitems;
};

/* --- validation ------------------------------------------------------------ */

static const char *const categories[] = {"alarm",     "hazard", "inspection",
                                         "rectified", "drill",  NULL};
static const char *const levels[] = {"low", "medium", "high", "critical", NULL};

struct event {
    const char *id, *category, *unit, *building_id, *grid_code, *level, *description;
    size_t id_len, unit_len, building_id_len, grid_code_len, description_len;
    int has_location;
    double lng, lat;
    int64_t occurred_at;
    int offset_min;
};

static int
in_list(const char *s, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* A string field: 0 ok, 1 absent (or null), -1 wrong type. */
static int
get_string(json_t *o, const char *name, const char **s, size_t *len)
{
    json_t *v = json_object_get(o, name);
    *s = NULL;
    *len = 0;
    if (v == NULL || json_is_null(v))
        return 1;
    if (!json_is_string(v))
        return -1;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static enum bh_dlq_reason
check_string(json_t *o, const char *name, int required, const char **s, size_t *len, char *why,
             size_t n)
{
    int rc = get_string(o, name, s, len);
    if (rc < 0) {
        snprintf(why, n, "%s: must be a string", name);
        return BH_DLQ_INVALID_FIELD;
    }
    if (required && (rc == 1 || *len == 0)) {
        snprintf(why, n, "%s: is required", name);
        return BH_DLQ_MISSING_FIELD;
    }
    return BH_DLQ_REASON_COUNT;
}

static enum bh_dlq_reason
check_symbol(json_t *o, const char *name, const char *const *allowed, const char **s, char *why,
             size_t n)
{
    size_t len;
    enum bh_dlq_reason r = check_string(o, name, 1, s, &len, why, n);
    if (r != BH_DLQ_REASON_COUNT)
        return r;
    if (!in_list(*s, allowed)) {
        int k = snprintf(why, n, "%s: '%.64s' is not one of", name, *s);
        for (size_t i = 0; allowed[i] != NULL && k > 0 && (size_t)k < n; i++)
            k += snprintf(why + k, n - (size_t)k, "%s %s", i ? "," : "", allowed[i]);
        return BH_DLQ_INVALID_FIELD;
    }
    return BH_DLQ_REASON_COUNT;
}

/* BH_DLQ_REASON_COUNT when the item is a valid event, else the reason and WHY. */
static enum bh_dlq_reason
validate(json_t *o, struct event *ev, char *why, size_t n)
{
    enum bh_dlq_reason r;
    memset(ev, 0, sizeof(*ev));
    if (!json_is_object(o)) {
        snprintf(why, n, "an event must be a JSON object");
        return BH_DLQ_INVALID_JSON;
    }
    if ((r = check_string(o, "id", 1, &ev->id, &ev->id_len, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = check_symbol(o, "category", categories, &ev->category, why, n)) !=
            BH_DLQ_REASON_COUNT ||
        (r = check_string(o, "unit", 1, &ev->unit, &ev->unit_len, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = check_string(o, "building_id", 0, &ev->building_id, &ev->building_id_len, why, n)) !=
            BH_DLQ_REASON_COUNT ||
        (r = check_string(o, "grid_code", 0, &ev->grid_code, &ev->grid_code_len, why, n)) !=
            BH_DLQ_REASON_COUNT ||
        (r = check_symbol(o, "level", levels, &ev->level, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = check_string(o, "description", 0, &ev->description, &ev->description_len, why, n)) !=
            BH_DLQ_REASON_COUNT)
        return r;

    json_t *loc = json_object_get(o, "location");
    if (loc != NULL && !json_is_null(loc)) {
        json_t *lng = json_object_get(loc, "lng"), *lat = json_object_get(loc, "lat");
        if (!json_is_object(loc) || !json_is_number(lng) || !json_is_number(lat)) {
            snprintf(why, n, "location: must be {\"lng\": number, \"lat\": number}");
            return BH_DLQ_INVALID_FIELD;
        }
        ev->lng = json_number_value(lng);
        ev->lat = json_number_value(lat);
        if (!isfinite(ev->lng) || !isfinite(ev->lat) || fabs(ev->lng) > 180 || fabs(ev->lat) > 90) {
            snprintf(why, n, "location: (%g, %g) is not a longitude/latitude", ev->lng, ev->lat);
            return BH_DLQ_INVALID_FIELD;
        }
        ev->has_location = 1;
    }

    const char *t;
    size_t tlen;
    if ((r = check_string(o, "occurred_at", 1, &t, &tlen, why, n)) != BH_DLQ_REASON_COUNT)
        return r;
    if (bh_parse_rfc3339(t, tlen, &ev->occurred_at, &ev->offset_min) < 0) {
        snprintf(why, n, "occurred_at: '%.64s' is not an RFC 3339 time with offset", t);
        return BH_DLQ_INVALID_FIELD;
    }
    return BH_DLQ_REASON_COUNT;
}

/* --- answering ------------------------------------------------------------- */

static void
batch_unref(struct batch *b)
{
    if (--b->refs > 0)
        return;
    json_decref(b->rejected);
    free(b->items);
    free(b);
}

static void
send_503(struct fire *f, h2o_req_t *req, const char *why)
{
    char ra[24], body[256];
    snprintf(ra, sizeof(ra), "%lld", (long long)((f->conf->retry_after + 999) / 1000));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, ra, strlen(ra));
    snprintf(body, sizeof(body), "{\"error\":\"%s\"}", why);
    bh_http_send_json(req, 503, "Service Unavailable", body);
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
    json_t *resp =
        json_pack("{s:I, s:O}", "accepted", (json_int_t)b->accepted, "rejected", b->rejected);
    char *text = json_dumps(resp, JSON_COMPACT);
    bh_http_send_json(b->req, 200, "OK", text);
    free(text);
    json_decref(resp);
}

static void
on_delivered(struct bh_delivery *d, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct batch *b = ((struct item *)d)->b;
    (void)partition;
    (void)offset;
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
        bh_adapter_stopped(f->a);
    batch_unref(b);
}

/* --- producing ------------------------------------------------------------- */

static int
encode(struct fire *f, const struct event *ev, const struct bh_block *blk, int64_t now,
       const void **data, size_t *len)
{
    avro_value_t *r = &f->rec, loc;
    avro_value_reset(r);
    int rc = bh_rec_string(r, "event_id", ev->id, ev->id_len);
    rc = rc ?: bh_rec_cstring(r, "block_id", blk->id);
    rc = rc ?: bh_rec_enum(r, "category", ev->category);
    rc = rc ?: bh_rec_string(r, "unit", ev->unit, ev->unit_len);
    rc = rc ?: bh_rec_opt_string(r, "building_id", ev->building_id, ev->building_id_len);
    rc = rc ?: bh_rec_opt_string(r, "grid_code", ev->grid_code, ev->grid_code_len);
    if (ev->has_location) {
        rc = rc ?: bh_rec_sub(r, "location", &loc);
        rc = rc ?: bh_rec_double(&loc, "lng", ev->lng);
        rc = rc ?: bh_rec_double(&loc, "lat", ev->lat);
    } else {
        rc = rc ?: bh_rec_null(r, "location");
    }
    rc = rc ?: bh_rec_enum(r, "level", ev->level);
    rc = rc ?: bh_rec_opt_string(r, "description", ev->description, ev->description_len);
    rc = rc ?: bh_rec_long(r, "occurred_at", ev->occurred_at);
    rc = rc ?: bh_rec_int(r, "occurred_offset_min", ev->offset_min);
    rc = rc ?: bh_rec_long(r, "received_at", now);
    return rc ?: bh_encode(f->a->hub->encoder, f->schema, r, data, len);
}

static int
produce_event(struct fire *f, struct item *it, const struct event *ev, const struct bh_block *blk,
              int64_t now)
{
    const void *data;
    size_t len;
    int rc = encode(f, ev, blk, now, &data, &len);
    if (rc < 0)
        return rc;
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "blockhub.event_id", -1, ev->id, (ssize_t)ev->id_len);
    rd_kafka_header_add(h, "blockhub.adapter", -1, f->a->name, -1);
    rc = bh_kafka_produce(f->a->hub->kafka, f->conf->topic, blk->id, strlen(blk->id), data, len, h,
                          &it->d);
    if (rc < 0)
        rd_kafka_headers_destroy(h);
    return rc;
}

static void
reject(struct batch *b, size_t index, enum bh_dlq_reason r, const char *why)
{
    char text[600];
    snprintf(text, sizeof(text), "%s: %s", bh_dlq_reason_code(r), why);
    json_array_append_new(b->rejected, json_pack("{s:I, s:s, s:s}", "index", (json_int_t)index,
                                                 "code", bh_dlq_reason_code(r), "reason", text));
}

/*
 * The byte span of each element of a JSON array BODY (already validated), so
 * a dead letter carries the sender's own bytes rather than a re-encoding.
 * Returns the count found; spans past CAP are not stored.
 */
static size_t
element_spans(const char *body, size_t len, h2o_iovec_t *spans, size_t cap)
{
    size_t i = 0, n = 0, start = 0;
    int depth = 0, in_string = 0;
    while (i < len && body[i] != '[')
        i++;
    for (i++; i < len; i++) {
        char c = body[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (depth == 0 && (c == ',' || c == ']')) {
            size_t end = i;
            while (end > start && strchr(" \t\r\n", body[end - 1]) != NULL)
                end--;
            if (end > start && n < cap)
                spans[n] = h2o_iovec_init(body + start, end - start);
            n += end > start;
            if (c == ']')
                break;
            start = 0;
            continue;
        }
        if (start == 0)
            start = i;
        if (c == '"')
            in_string = 1;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            depth--;
    }
    return n;
}

/* Validate, resolve and produce every item; returns -errno if producing failed. */
static int
process(struct fire *f, struct batch *b, json_t *items, const h2o_iovec_t *raw, const char *peer)
{
    struct bh_hub *hub = f->a->hub;
    int64_t now = bh_now_ms();
    struct bh_dlq_origin origin = {"http", f->conf->path, peer, 0};
    size_t n = json_array_size(items);
    char why[512];

    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(items, i);
        struct event ev;
        struct item *it = &b->items[b->nitems];
        enum bh_dlq_reason r = validate(o, &ev, why, sizeof(why));
        const struct bh_block *blk = NULL;
        if (r == BH_DLQ_REASON_COUNT) {
            blk = bh_blockmap_resolve(hub->blocks, ev.grid_code, ev.grid_code_len, ev.has_location,
                                      ev.lng, ev.lat);
            if (blk == NULL) {
                r = BH_DLQ_UNRESOLVED_BLOCK;
                snprintf(why, sizeof(why), "no block for grid_code %s%.32s%s and location %s",
                         ev.grid_code ? "'" : "", ev.grid_code ? ev.grid_code : "(none)",
                         ev.grid_code ? "'" : "", ev.has_location ? "given" : "(none)");
            }
        }
        it->d.cb = on_delivered;
        it->b = b;
        int rc;
        if (r == BH_DLQ_REASON_COUNT) {
            rc = produce_event(f, it, &ev, blk, now);
            if (rc == 0)
                b->accepted++;
        } else {
            reject(b, i, r, why);
            origin.position = (int64_t)i;
            rc = bh_dlq_publish(hub, f->a, r, why, &origin, raw[i].base, raw[i].len, &it->d);
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
authorized(const struct fire_conf *c, h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || strncasecmp(v.base, "Bearer ", 7) != 0)
        return 0;
    const char *tok = v.base + 7;
    size_t len = v.len - 7;
    int ok = 0;
    for (size_t t = 0; t < c->tokens.n; t++) {
        const char *want = c->tokens.v[t];
        if (strlen(want) != len || len == 0)
            continue;
        /* Look at every byte whatever the first mismatch: timing tells nothing. */
        unsigned char diff = 0;
        for (size_t k = 0; k < len; k++)
            diff |= (unsigned char)(tok[k] ^ want[k]);
        ok |= diff == 0;
    }
    return ok;
}

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

static void
error_json(h2o_req_t *req, int status, const char *reason, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *text = json_dumps(o, JSON_COMPACT);
    bh_http_send_json(req, status, reason, text);
    free(text);
    json_decref(o);
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
        error_json(req, 405, "Method Not Allowed", "only POST is accepted");
        return 0;
    }
    if (f->stopping) {
        send_503(f, req, "shutting down");
        return 0;
    }
    if (!authorized(c, req)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Bearer"));
        error_json(req, 401, "Unauthorized", "a valid bearer token is required");
        return 0;
    }
    if (!is_json(req)) {
        error_json(req, 415, "Unsupported Media Type", "Content-Type must be application/json");
        return 0;
    }
    if (req->entity.len > c->body_limit) {
        snprintf(msg, sizeof(msg), "body of %zu bytes exceeds the limit of %llu", req->entity.len,
                 (unsigned long long)c->body_limit);
        error_json(req, 413, "Payload Too Large", msg);
        return 0;
    }
    json_error_t jerr;
    json_t *body = req->entity.base != NULL
                       ? json_loadb(req->entity.base, req->entity.len, JSON_DECODE_ANY, &jerr)
                       : NULL;
    if (body == NULL) {
        if (req->entity.base == NULL)
            snprintf(msg, sizeof(msg), "empty body");
        else
            snprintf(msg, sizeof(msg), "malformed JSON at line %d column %d: %s", jerr.line,
                     jerr.column, jerr.text);
        error_json(req, 400, "Bad Request", msg);
        return 0;
    }
    json_t *items = body;
    size_t n = json_array_size(body);
    h2o_iovec_t *raw = NULL;
    if (json_is_array(body) && n <= (size_t)c->max_items) {
        raw = calloc(n ? n : 1, sizeof(*raw));
        if (raw == NULL || element_spans(req->entity.base, req->entity.len, raw, n) != n) {
            free(raw);
            json_decref(body);
            send_503(f, req, "cannot split the request body");
            return 0;
        }
    }
    if (json_is_object(body)) {
        n = 1;
        raw = malloc(sizeof(*raw));
        if (raw != NULL)
            *raw = h2o_iovec_init(req->entity.base, req->entity.len);
        items = json_array();
        json_array_append(items, body);
        json_decref(body);
    } else if (!json_is_array(body)) {
        json_decref(body);
        error_json(req, 400, "Bad Request", "the body must be an event object or an array");
        return 0;
    }
    if (n > (size_t)c->max_items || raw == NULL) {
        snprintf(msg, sizeof(msg), "%zu events exceed the limit of %lld per request", n,
                 (long long)c->max_items);
        json_decref(items);
        free(raw);
        error_json(req, 413, "Payload Too Large", msg);
        return 0;
    }

    char peer[80];
    bh_http_peer(req, peer, sizeof(peer));
    struct batch *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->items = calloc(n ? n : 1, sizeof(*b->items))) == NULL) {
        free(b);
        free(raw);
        json_decref(items);
        send_503(f, req, "out of memory");
        return 0;
    }
    b->f = f;
    b->req = req;
    b->rejected = json_array();
    b->refs = 2; /* the request and the timer */
    uv_timer_init(f->a->hub->loop, &b->timer);
    b->timer.data = b;
    bh_http_on_dispose(req, on_request_released, b);
    f->live++;

    int rc = process(f, b, items, raw, peer);
    json_decref(items);
    free(raw);
    if (rc < 0)
        answer(b, "events could not be queued for Kafka");
    else if (b->waiting == 0)
        answer(b, NULL);
    else
        uv_timer_start(&b->timer, on_timeout, (uint64_t)c->ack_timeout, 0);
    return 0;
}

/* --- the adapter ----------------------------------------------------------- */

static int
start(struct bh_adapter *a, char *errstr, size_t errstr_size)
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
    rc = bh_http_init(&f->http, a->hub->loop, c->listen, c->body_limit, errstr, errstr_size);
    if (rc == 0)
        rc = bh_http_handle(&f->http, c->path, on_req, f);
    if (rc == 0)
        rc = bh_http_listen(&f->http, errstr, errstr_size);
    if (rc < 0) {
        avro_value_decref(&f->rec);
        goto out;
    }
    a->priv = f;
    bh_info(a->name, "fire webhooks on http://%s%s -> %s", f->http.bound, c->path, c->topic);
    return 0;
out:
    free(f);
    return rc;
}

static void
stop(struct bh_adapter *a)
{
    struct fire *f = a->priv;
    f->stopping = 1;
    bh_http_stop(&f->http);
    if (f->live == 0)
        bh_adapter_stopped(a);
}

static void
destroy(struct bh_adapter *a)
{
    struct fire *f = a->priv;
    if (f == NULL)
        return;
    avro_value_decref(&f->rec);
    /* h2o's context and connections stay with the loop: the process is exiting. */
    a->priv = NULL;
}

static void
topics(const struct bh_adapter *a, const char **out, size_t cap)
{
    const struct fire_conf *c = a->settings;
    if (cap > 1) {
        out[0] = c->topic;
        out[1] = NULL;
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
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i][0] == '\0') {
            snprintf(why, why_size, "token %zu is empty", i);
            return -EINVAL;
        }
    }
    return 0;
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
     .doc = "Topic the events are published to, keyed by block."},
    {0},
};

const struct bh_adapter_type bh_adapter_type_fire = {
    .name = "fire",
    .doc = "Fire department webhooks over HTTP (FEEDS.md, Fire).",
    .conf = {.keys = fire_keys, .size = sizeof(struct fire_conf)},
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .topics = topics,
};
