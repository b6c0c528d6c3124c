/*
 * Watches placed at run time (join.watches_topic): the admin API's
 *
 *   GET    /watches         every watch, from the config and placed here
 *   POST   /watches         {"name", "type": "field"|"blocks", "field", "equals",
 *                            "blocks", "department", "since", "expires"}: placed
 *                            once Kafka has it (201), refused with the key and the
 *                            reason (400); since defaults to now
 *   DELETE /watches/{name}  removed once Kafka has it (200)
 *
 * A placed watch is a record of a compacted topic (key: its name, value: its
 * JSON; a removal is a tombstone) that every join process reads from the
 * beginning at start, before any input, and follows afterwards: every process
 * and every restart has the same watches. A watch of the config cannot be
 * replaced or removed here.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "join_int.h"
#include "log.h"
#include "timefmt.h"
#include "utf8.h"

struct api_watch {
    char *name;
    char *json;
    struct bh_join_watch_conf c;
};

struct wticket;

/* A POST or DELETE waiting for Kafka's acknowledgement. */
struct wpost {
    struct bh_delivery d; /* first: the delivery report finds the rest */
    struct wpost *next;
    struct bh_join *j;
    h2o_req_t *req;    /* NULL once h2o released it */
    struct wticket *t; /* in the request's pool: valid while req is */
    int status;        /* the answer's, on success */
    char *body;        /* the answer's, on success */
};

/* The request's dispose hook argument: the post, until it is answered. */
struct wticket {
    struct wpost *p;
};

static void
api_free(struct api_watch *a)
{
    free(a->name);
    free(a->json);
    bh_jwatch_conf_free(&a->c);
}

/* The compiled watches: the config's and those placed here, in that order. */
static int
rebuild(struct bh_join *j, char *err, size_t n)
{
    const struct bh_variant_list *cw = &j->conf->watches;
    size_t total = cw->n + j->napi;
    struct bh_variant *v = calloc(total ? total : 1, sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cw->n; i++)
        v[i] = cw->v[i];
    for (size_t i = 0; i < j->napi; i++) {
        struct api_watch *a = &j->api[i];
        v[cw->n + i] = (struct bh_variant){
            .name = a->name, .type = a->c.field ? "field" : "blocks", .settings = &a->c};
    }
    struct bh_variant_list l = {v, total};
    struct bh_jwatches *w = NULL;
    int rc = bh_jwatches_new(&w, &l, j->depts, j->ninputs, err, n);
    free(v);
    if (rc < 0)
        return rc;
    /* Plans extract the watched fields in the compiled set's order: new fields, new plans. */
    const char *const *a, *const *b;
    size_t na = j->watches ? bh_jwatches_fields(j->watches, &a) : 0;
    size_t nb = bh_jwatches_fields(w, &b);
    int same = na == nb;
    for (size_t i = 0; same && i < na; i++)
        same = strcmp(a[i], b[i]) == 0;
    if (!same)
        bh_join_forget_plans(j);
    bh_jwatches_free(j->watches);
    j->watches = w;
    return 0;
}

static ssize_t
find_api(struct bh_join *j, const char *name, size_t len)
{
    for (size_t i = 0; i < j->napi; i++)
        if (strlen(j->api[i].name) == len && memcmp(j->api[i].name, name, len) == 0)
            return (ssize_t)i;
    return -1;
}

static int
is_config_watch(struct bh_join *j, const char *name, size_t len)
{
    for (size_t i = 0; i < j->conf->watches.n; i++)
        if (strlen(j->conf->watches.v[i].name) == len &&
            memcmp(j->conf->watches.v[i].name, name, len) == 0)
            return 1;
    return 0;
}

static int
api_room(struct bh_join *j)
{
    if (j->napi < j->capapi)
        return 0;
    size_t cap = j->capapi ? j->capapi * 2 : 16;
    struct api_watch *a = realloc(j->api, cap * sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    j->api = a;
    j->capapi = cap;
    return 0;
}

/* Whether the watch C named NAME compiles alone for this join's departments (WHY if not). */
static int
compiles(struct bh_join *j, const char *name, size_t len, struct bh_join_watch_conf *c, char *why,
         size_t n)
{
    char nm[256];
    snprintf(nm, sizeof(nm), "%.*s", (int)(len < 200 ? len : 200), name);
    struct bh_variant v = {.name = nm, .type = c->field ? "field" : "blocks", .settings = c};
    struct bh_variant_list l = {&v, 1};
    struct bh_jwatches *w = NULL;
    if (bh_jwatches_new(&w, &l, j->depts, j->ninputs, why, n) < 0)
        return 0;
    bh_jwatches_free(w);
    return 1;
}

/* One record of the watches topic: placed, replaced or (a tombstone) removed. */
static void
on_record(struct bh_join *j, const rd_kafka_message_t *m)
{
    if (m->key == NULL || m->key_len == 0 || m->key_len > 200 ||
        !bh_utf8_valid(m->key, m->key_len) || is_config_watch(j, m->key, m->key_len)) {
        bh_warn("join", "%s[%" PRId32 "] offset %" PRId64 ": not a watch name: skipped",
                j->conf->watches_topic, m->partition, m->offset);
        return;
    }
    ssize_t at = find_api(j, m->key, m->key_len);
    struct api_watch old = {0};
    if (at >= 0) {
        old = j->api[at];
        j->api[at] = j->api[--j->napi];
    }
    if (m->payload != NULL) {
        json_error_t je;
        json_t *o = json_loadb(m->payload, m->len, 0, &je);
        const char *key = "";
        char why[300] = "not a JSON object";
        struct api_watch a = {0};
        if (o == NULL || !json_is_object(o) ||
            bh_jwatch_conf_parse(o, &a.c, NULL, &key, why, sizeof(why)) < 0) {
            bh_warn("join", "%s[%" PRId32 "] offset %" PRId64 ": watch %.*s: %s: %s: skipped",
                    j->conf->watches_topic, m->partition, m->offset, (int)m->key_len,
                    (const char *)m->key, key, why);
        } else if (!compiles(j, m->key, m->key_len, &a.c, why, sizeof(why))) {
            bh_warn("join", "%s[%" PRId32 "] offset %" PRId64 ": watch %.*s: %s: skipped",
                    j->conf->watches_topic, m->partition, m->offset, (int)m->key_len,
                    (const char *)m->key, why);
            bh_jwatch_conf_free(&a.c);
        } else if (api_room(j) < 0 || (a.name = strndup(m->key, m->key_len)) == NULL ||
                   (a.json = strndup(m->payload, m->len)) == NULL) {
            bh_error("join", "watches: out of memory: watch %.*s not applied", (int)m->key_len,
                     (const char *)m->key);
            api_free(&a);
        } else {
            j->api[j->napi++] = a;
        }
        json_decref(o);
    }
    char err[400];
    if (rebuild(j, err, sizeof(err)) < 0) {
        /* only out of memory gets here (each watch compiled alone above): none rather than stale */
        bh_error("join", "watches: %s: no watch is applied until the next change", err);
        bh_jwatches_free(j->watches);
        j->watches = NULL;
    }
    api_free(&old);
}

void
bh_join_watches_poll(struct bh_join *j)
{
    rd_kafka_message_t *m;
    while (j->wc != NULL && (m = rd_kafka_consumer_poll(j->wc, 0)) != NULL) {
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            on_record(j, m);
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            bh_warn("join", "%s: %s", j->conf->watches_topic, rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
    }
}

int
bh_join_watches_start(struct bh_join *j, char *errstr, size_t n)
{
    if (j->conf->watches_topic == NULL || j->conf->watches_topic[0] == '\0')
        return 0;
    char err[512];
    const char *pin[] = {
        "group.id", j->instance,         "enable.auto.commit", "false", "enable.partition.eof",
        "true",     "auto.offset.reset", "earliest",           NULL};
    const char *def[] = {NULL};
    rd_kafka_conf_t *c = bh_join_client_conf(j, 0, def, pin, errstr, n);
    if (c == NULL)
        return -EINVAL;
    j->wc = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (j->wc == NULL) {
        rd_kafka_conf_destroy(c);
        snprintf(errstr, n, "join: watches consumer: %s", err);
        return -EINVAL;
    }
    /* compacted: the last record of each watch is the watch */
    const char *name = j->conf->watches_topic;
    int rc = 0;
    if (bh_kafka_is_embedded(j->hub->kafka)) {
        rc = bh_kafka_ensure_topics(j->hub->kafka, &name, 1, errstr, n);
    } else {
        struct bh_kafka_new_topic nt = {name, bh_kafka_compacted};
        const struct bh_kafka_create_opts o = {.partitions = 1,
                                               .replication = (int)j->hub->conf->kafka.replication,
                                               .timeout_ms =
                                                   (int)j->hub->conf->kafka.create_timeout,
                                               .who = "join"};
        rc = bh_kafka_create_topics(bh_kafka_handle(j->hub->kafka), &nt, 1, &o, errstr, n);
    }
    if (rc < 0)
        return rc;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(j->wc, j->conf->watches_topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(j->wc, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(errstr, n, "join.watches_topic %s: %s", j->conf->watches_topic,
                 e                    ? rd_kafka_err2str(e)
                 : md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err)
                                      : "no metadata");
        if (md != NULL)
            rd_kafka_metadata_destroy(md);
        return -EIO;
    }
    int np = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++)
        rd_kafka_topic_partition_list_add(l, j->conf->watches_topic, md->topics[0].partitions[p].id)
            ->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    e = rd_kafka_assign(j->wc, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, n, "join.watches_topic: assign: %s", rd_kafka_err2str(e));
        return -EIO;
    }
    /* Every placed watch before any input: read to the end of every partition. */
    int eof = 0;
    uint64_t deadline = uv_hrtime() + 30ULL * 1000000000ULL;
    while (eof < np) {
        if (uv_hrtime() > deadline) {
            snprintf(errstr, n, "join.watches_topic %s: not read to its end in 30 s",
                     j->conf->watches_topic);
            return -ETIMEDOUT;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(j->wc, 200);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            eof++;
        else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            on_record(j, m);
        rd_kafka_message_destroy(m);
    }
    if (j->napi > 0)
        bh_info("join", "%zu watches placed at run time read from %s", j->napi,
                j->conf->watches_topic);
    j->wq = rd_kafka_queue_get_consumer(j->wc);
    rd_kafka_queue_io_event_enable(j->wq, j->pipefd[1], "w", 1);
    return 0;
}

void
bh_join_watches_stop(struct bh_join *j)
{
    if (j->wq != NULL) {
        rd_kafka_queue_io_event_enable(j->wq, -1, NULL, 0);
        rd_kafka_queue_destroy(j->wq);
        j->wq = NULL;
    }
    if (j->wc != NULL) {
        rd_kafka_consumer_close(j->wc);
        rd_kafka_destroy(j->wc);
        j->wc = NULL;
    }
    /* Waiting requests are answered by the delivery reports (the hub's producer outlives us). */
    for (struct wpost *p = j->posts; p != NULL; p = p->next)
        p->j = NULL;
    j->posts = NULL;
}

void
bh_join_watches_free(struct bh_join *j)
{
    for (size_t i = 0; i < j->napi; i++)
        api_free(&j->api[i]);
    free(j->api);
    j->api = NULL;
    j->napi = j->capapi = 0;
}

/* --- the admin API ------------------------------------------------------------------ */

static void
send_json(h2o_req_t *req, int status, const char *reason, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    bh_http_send_json(req, status, reason, text ? text : "{}");
    free(text);
    json_decref(body);
}

static void
send_error(h2o_req_t *req, int status, const char *reason, const char *key, const char *msg)
{
    send_json(req, status, reason,
              key ? json_pack("{s:s, s:s}", "error", msg, "key", key)
                  : json_pack("{s:s}", "error", msg));
}

static json_t *
list_json(struct bh_join *j)
{
    json_t *a = json_array();
    for (size_t i = 0; i < j->conf->watches.n; i++) {
        const struct bh_variant *v = &j->conf->watches.v[i];
        const struct bh_join_watch_conf *c = v->settings;
        json_t *o =
            json_pack("{s:s, s:s, s:s}", "name", v->name, "type", v->type, "from", "config");
        if (c->field)
            json_object_set_new(o, "field", json_string(c->field));
        if (c->equals)
            json_object_set_new(o, "equals", json_string(c->equals));
        if (c->blocks.n > 0) {
            json_t *b = json_array();
            for (size_t k = 0; k < c->blocks.n; k++)
                json_array_append_new(b, json_string(c->blocks.v[k]));
            json_object_set_new(o, "blocks", b);
        }
        if (c->department)
            json_object_set_new(o, "department", json_string(c->department));
        if (c->since)
            json_object_set_new(o, "since", json_string(c->since));
        if (c->expires)
            json_object_set_new(o, "expires", json_string(c->expires));
        json_array_append_new(a, o);
    }
    for (size_t i = 0; i < j->napi; i++) {
        json_t *o = json_loads(j->api[i].json, 0, NULL);
        if (o == NULL)
            continue;
        json_object_set_new(o, "name", json_string(j->api[i].name));
        json_object_set_new(o, "from", json_string(j->conf->watches_topic));
        json_array_append_new(a, o);
    }
    return json_pack("{s:o}", "watches", a);
}

static void
on_released(void *arg)
{
    struct wticket *t = arg;
    if (t->p != NULL)
        t->p->req = NULL;
}

static void
on_delivered(struct bh_delivery *d, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct wpost *p = (struct wpost *)d;
    (void)partition;
    (void)offset;
    if (p->j != NULL) {
        struct wpost **pp = &p->j->posts;
        while (*pp != p)
            pp = &(*pp)->next;
        *pp = p->next;
    }
    if (p->req != NULL) {
        p->t->p = NULL;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            bh_http_send_json(p->req, p->status, p->status == 201 ? "Created" : "OK", p->body);
        else
            send_error(p->req, 503, "Service Unavailable", NULL, rd_kafka_err2str(err));
    }
    free(p->body);
    free(p);
}

/* KEY's record (VALUE NULL: a tombstone) into the watches topic; the answer once Kafka has it. */
static void
place(struct bh_join *j, h2o_req_t *req, const char *key, size_t keylen, const char *value,
      int status, const char *body)
{
    struct wpost *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->body = strdup(body)) == NULL) {
        free(p);
        send_error(req, 503, "Service Unavailable", NULL, "out of memory");
        return;
    }
    p->d.cb = on_delivered;
    p->j = j;
    p->req = req;
    p->status = status;
    int rc = bh_kafka_produce(j->hub->kafka, j->conf->watches_topic, key, keylen, value,
                              value ? strlen(value) : 0, NULL, &p->d);
    if (rc < 0) {
        free(p->body);
        free(p);
        send_error(req, 503, "Service Unavailable", NULL, strerror(-rc));
        return;
    }
    p->next = j->posts;
    j->posts = p;
    p->t = h2o_mem_alloc_pool(&req->pool, sizeof(*p->t));
    p->t->p = p;
    bh_http_on_dispose(req, on_released, p->t);
}

static void
post_watch(struct bh_join *j, h2o_req_t *req)
{
    json_error_t je;
    json_t *o = json_loadb(req->entity.base, req->entity.len, 0, &je);
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        send_error(req, 400, "Bad Request", NULL, "the body is not a JSON object");
        return;
    }
    const char *name = json_string_value(json_object_get(o, "name"));
    if (name == NULL || name[0] == '\0' || strlen(name) > 200 || strchr(name, '/') != NULL) {
        json_decref(o);
        send_error(req, 400, "Bad Request", "name", "a string of 1 to 200 bytes without '/'");
        return;
    }
    if (is_config_watch(j, name, strlen(name))) {
        json_decref(o);
        send_error(req, 409, "Conflict", "name", "a watch of the config has this name");
        return;
    }
    char now[80], why[400];
    bh_join_fmt_time(now, sizeof(now), bh_now_ms());
    struct bh_join_watch_conf c;
    const char *key = NULL;
    if (bh_jwatch_conf_parse(o, &c, now, &key, why, sizeof(why)) < 0) {
        json_decref(o);
        send_error(req, 400, "Bad Request", key, why);
        return;
    }
    /* Compiled alone first: a department or a time it cannot use is refused here. */
    if (!compiles(j, name, strlen(name), &c, why, sizeof(why))) {
        bh_jwatch_conf_free(&c);
        json_decref(o);
        send_error(req, 400, "Bad Request", NULL, why);
        return;
    }
    if (c.since != NULL && json_object_get(o, "since") == NULL)
        json_object_set_new(o, "since", json_string(c.since));
    bh_jwatch_conf_free(&c);
    char *namecopy = strdup(name);
    json_object_del(o, "name");
    char *value = json_dumps(o, JSON_COMPACT);
    json_object_set_new(o, "name", json_string(namecopy ? namecopy : ""));
    char *body = json_dumps(o, JSON_COMPACT);
    if (namecopy != NULL && value != NULL && body != NULL)
        place(j, req, namecopy, strlen(namecopy), value, 201, body);
    else
        send_error(req, 503, "Service Unavailable", NULL, "out of memory");
    free(namecopy);
    free(value);
    free(body);
    json_decref(o);
}

int
bh_join_watches_http(struct bh_join *j, h2o_req_t *req, const char *path, size_t len)
{
    static const char prefix[] = "/watches";
    if (len < sizeof(prefix) - 1 || memcmp(path, prefix, sizeof(prefix) - 1) != 0)
        return 0;
    const char *rest = path + sizeof(prefix) - 1;
    size_t rlen = len - (sizeof(prefix) - 1);
    int get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    int post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    int del = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("DELETE"));
    if (rlen == 0 && get) {
        send_json(req, 200, "OK", list_json(j));
        return 1;
    }
    if (j->wc == NULL) {
        send_error(req, 404, "Not Found", "join.watches_topic",
                   "watches are placed at run time only with join.watches_topic set");
        return 1;
    }
    if (rlen == 0 && post) {
        post_watch(j, req);
        return 1;
    }
    if (rlen > 1 && rest[0] == '/' && del) {
        const char *name = rest + 1;
        size_t nlen = rlen - 1;
        if (find_api(j, name, nlen) < 0) {
            send_error(req, 404, "Not Found", NULL,
                       is_config_watch(j, name, nlen) ? "a watch of the config: change the config"
                                                      : "no such watch");
            return 1;
        }
        place(j, req, name, nlen, NULL, 200, "{\"removed\":true}");
        return 1;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL,
                   H2O_STRLIT("GET, POST, DELETE"));
    send_error(req, 405, "Method Not Allowed", NULL,
               "GET /watches, POST /watches, DELETE /watches/{name}");
    return 1;
}
