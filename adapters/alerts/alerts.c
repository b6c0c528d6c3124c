/*
 * The alerts adapter: a webhook sink for the join stage's alerts.
 *
 * It reads blockhub.alert.BlockAlert records from a topic (read_committed, a
 * consumer group of its own) and POSTs each alert as a JSON object to every
 * subscriber whose filters (units, rules) take it, signed with HMAC-SHA256 of
 * the exact body under the subscriber's secret. 2xx is delivered; 408, 429,
 * 5xx, connection errors and timeouts are tried again with a doubling backoff
 * up to max_attempts; any other answer is final. A delivery that fails for
 * good becomes one dead letter (delivery_failed) and the rest flows on. A
 * record whose framing or schema is unknown is dead-lettered as
 * invalid_encoding.
 *
 * At least once: offsets are stored by hand, and a partition's stored offset
 * only moves past an alert once every subscriber it went to has it (delivered
 * or dead-lettered); the group commits the stored offsets. When max_pending
 * alerts are held, the assigned partitions are paused until half are done.
 *
 * Everything runs on the hub's loop: the consumer's queue wakes the loop
 * through a pipe (a uv_poll), and libcurl's multi interface is driven by a
 * uv_poll per socket and a uv_timer (hub/curl_loop.h). At stop the requests
 * in flight are dropped (their alerts come again after a restart), and the
 * consumer is closed on a worker thread, committing what was stored.
 *
 * With the admin API, GET /alerts and GET /alerts/stream serve a history of
 * the topic read by a second consumer outside the group (alerts_api.c).
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hub.h"
#include "adapters/alerts/alerts_api.h"
#include "curl_loop.h"
#include "log.h"
#include "lograte.h"
#include "publish.h"
#include "utf8.h"

#define SCHEMA          "blockhub.alert.BlockAlert"
#define SUBSCRIBER_TYPE "webhook"

/* --- settings --------------------------------------------------------------- */

struct subscriber_conf {
    char *url;
    char *secret;
    struct bh_strlist units;
    struct bh_strlist rules;
};

struct alerts_conf {
    char *topic;
    char *group;
    struct bh_variant_list subscribers;
    int64_t max_attempts;
    int64_t backoff;
    int64_t max_backoff;
    int64_t timeout;
    int64_t max_pending;
    char *ca_file;
    int64_t history;
    int64_t history_for;
    int64_t stream_keep_alive;
};

/* --- state ------------------------------------------------------------------ */

struct alerts;
struct part;

/* One alert read from the topic, held until every subscriber has it. */
struct alert {
    struct bh_delivery dl; /* the dead letter of an undecodable record */
    struct alerts *s;
    struct part *p; /* NULL once the partition was revoked */
    struct alert *next;
    int32_t partition;
    int64_t offset;
    char *json; /* the body POSTed */
    size_t json_len;
    char *alert_id;
    size_t waiting; /* deliveries (or the dead letter) not finished */
    bool done;
};

struct part {
    bool assigned;
    struct alert *head, *tail;
};

/* One alert to one subscriber, over its attempts. */
struct delivery {
    struct bh_delivery dl; /* the dead letter when it failed for good */
    struct alerts *s;
    struct alert *a;
    size_t sub;
    int attempt;
    CURL *easy;
    struct curl_slist *hdrs;
    uv_timer_t retry;
    bool timer_open;
    bool dead_pending; /* its dead letter awaits Kafka */
    long last_status;
    char last_error[CURL_ERROR_SIZE];
    struct delivery *prev, *next; /* in s->deliveries */
};

struct alerts {
    struct bh_component *c;
    const struct alerts_conf *conf;
    const struct bh_schema *schema;
    uv_loop_t *loop;
    /* Kafka */
    rd_kafka_t *consumer;
    rd_kafka_queue_t *queue;
    int pipefd[2];
    uv_poll_t wake;
    uv_idle_t more;
    uv_timer_t hold_timer;
    rd_kafka_message_t *held; /* a record waiting for its writer schema from the registry */
    uv_work_t closing_work;
    atomic_bool closing; /* the consumer is being closed on the worker thread */
    bool close_started;
    struct part *parts;
    size_t nparts;
    bool flow_paused;     /* partitions paused: too many alerts held */
    bool operator_paused; /* by bh_component_pause */
    size_t pending;       /* alerts held */
    /* HTTP */
    CURLM *multi;
    struct bh_curl_loop curl; /* drives multi on the loop */
    struct delivery *deliveries;
    size_t in_flight;
    /* GET /alerts and /alerts/stream (alerts_api.c) */
    struct bh_alerts_api *api;
    /* stopping */
    bool stopping;
    int handles; /* open handles while closing */
    /* counters */
    uint64_t received, undecodable, posts, delivered, retries, failed, dead_pending;
    uint64_t flow_pauses, committed_moves;
};

static void consume(struct alerts *s);
static void on_more(uv_idle_t *h);
static void start_attempt(struct delivery *d);

/* --- offsets ------------------------------------------------------------------ */

static struct part *
part_of(struct alerts *s, int32_t partition)
{
    if (partition < 0)
        return NULL;
    if ((size_t)partition >= s->nparts) {
        size_t n = (size_t)partition + 1;
        struct part *p = realloc(s->parts, n * sizeof(*p));
        if (p == NULL)
            return NULL;
        memset(p + s->nparts, 0, (n - s->nparts) * sizeof(*p));
        s->parts = p;
        s->nparts = n;
    }
    return &s->parts[partition];
}

static void
alert_free(struct alert *a)
{
    free(a->json);
    free(a->alert_id);
    free(a);
}

static void
flow_check(struct alerts *s)
{
    if (s->consumer == NULL || s->stopping || atomic_load(&s->closing))
        return;
    bool want_pause = s->operator_paused || s->pending >= (size_t)s->conf->max_pending;
    bool room = s->pending <= (size_t)s->conf->max_pending / 2;
    rd_kafka_topic_partition_list_t *l = NULL;
    if (want_pause && !s->flow_paused) {
        if (rd_kafka_assignment(s->consumer, &l) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_pause_partitions(s->consumer, l);
            rd_kafka_topic_partition_list_destroy(l);
        }
        s->flow_paused = true;
        if (!s->operator_paused) {
            s->flow_pauses++;
            bh_debug(s->c->name, "%zu alerts held: partitions paused", s->pending);
        }
    } else if (s->flow_paused && !s->operator_paused && room) {
        if (rd_kafka_assignment(s->consumer, &l) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_resume_partitions(s->consumer, l);
            rd_kafka_topic_partition_list_destroy(l);
        }
        s->flow_paused = false;
        if (!s->stopping)
            uv_idle_start(&s->more, on_more);
    }
}

/*
 * A's work is finished. Alerts finished in order at the head of their
 * partition are let go, and the offset after the last of them is stored.
 */
static void
alert_done(struct alert *a)
{
    struct alerts *s = a->s;
    a->done = true;
    s->pending--;
    struct part *p = a->p;
    if (p == NULL) { /* its partition was revoked: nothing to store */
        alert_free(a);
        flow_check(s);
        return;
    }
    int64_t next = -1;
    while (p->head != NULL && p->head->done) {
        struct alert *h = p->head;
        p->head = h->next;
        if (p->head == NULL)
            p->tail = NULL;
        next = h->offset + 1;
        alert_free(h);
    }
    if (next >= 0 && s->consumer != NULL && !atomic_load(&s->closing)) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, s->conf->topic, (int32_t)(p - s->parts))->offset =
            next;
        rd_kafka_resp_err_t e = rd_kafka_offsets_store(s->consumer, l);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR && l->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            s->committed_moves++;
        rd_kafka_topic_partition_list_destroy(l);
    }
    flow_check(s);
}

static void
alert_unwait(struct alert *a)
{
    if (--a->waiting == 0)
        alert_done(a);
}

/* --- the alert as JSON -------------------------------------------------------- */

/* A string of avro value V as a JSON string (valid UTF-8 however it came). */
static json_t *
jstr(const char *p, size_t len)
{
    if (bh_utf8_valid(p, len))
        return json_stringn(p, len);
    size_t n = bh_utf8_sanitized_size(p, len);
    char *t = malloc(n);
    if (t == NULL)
        return NULL;
    size_t w = bh_utf8_sanitize(t, n, p, len);
    json_t *j = json_stringn(t, w);
    free(t);
    return j;
}

static int
field(avro_value_t *rec, const char *name, avro_value_t *out)
{
    return avro_value_get_by_name(rec, name, out, NULL) == 0 ? 0 : -EBADMSG;
}

static json_t *
string_field(avro_value_t *rec, const char *name)
{
    avro_value_t v, b;
    const char *p;
    size_t len;
    if (field(rec, name, &v) < 0)
        return NULL;
    if (avro_value_get_type(&v) == AVRO_UNION) {
        if (avro_value_get_current_branch(&v, &b) != 0)
            return NULL;
        if (avro_value_get_type(&b) == AVRO_NULL)
            return json_null();
        v = b;
    }
    if (avro_value_get_string(&v, &p, &len) != 0)
        return NULL;
    return jstr(p, len > 0 ? len - 1 : 0); /* LEN counts the NUL */
}

static json_t *
long_field(avro_value_t *rec, const char *name)
{
    avro_value_t v;
    int64_t x;
    if (field(rec, name, &v) < 0 || avro_value_get_long(&v, &x) != 0)
        return NULL;
    return json_integer((json_int_t)x);
}

static int
put(json_t *o, const char *key, json_t *v)
{
    return v != NULL && json_object_set_new(o, key, v) == 0 ? 0 : -EBADMSG;
}

/* The alert as the JSON object POSTed: every field, times as integer ms. */
static json_t *
alert_json(avro_value_t *rec)
{
    json_t *o = json_object();
    avro_value_t v, items;
    int rc = o != NULL ? 0 : -ENOMEM;
    static const char *const strings[] = {"alert_id", "block_id", "block_name",
                                          "unit",     "name",     "detail"};
    for (size_t i = 0; rc == 0 && i < sizeof(strings) / sizeof(strings[0]); i++)
        rc = put(o, strings[i], string_field(rec, strings[i]));
    if (rc == 0 && field(rec, "kind", &v) == 0) {
        int sym;
        const char *name = NULL;
        if (avro_value_get_enum(&v, &sym) == 0)
            name = avro_schema_enum_get(avro_value_get_schema(&v), sym);
        rc = put(o, "kind", name != NULL ? json_string(name) : NULL);
    }
    json_t *events = rc == 0 ? json_array() : NULL;
    rc = rc == 0 && events != NULL && field(rec, "events", &items) == 0 ? 0 : -EBADMSG;
    size_t n = 0;
    if (rc == 0 && avro_value_get_size(&items, &n) != 0)
        rc = -EBADMSG;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        avro_value_t ev;
        json_t *e = json_object();
        if (e == NULL || avro_value_get_by_index(&items, i, &ev, NULL) != 0 ||
            json_array_append_new(events, e) != 0) {
            json_decref(e);
            rc = -EBADMSG;
            break;
        }
        rc = put(e, "department", string_field(&ev, "department"));
        rc = rc ?: put(e, "event_id", string_field(&ev, "event_id"));
        rc = rc ?: put(e, "event_type", string_field(&ev, "event_type"));
        rc = rc ?: put(e, "event_at", long_field(&ev, "event_at"));
    }
    if (events != NULL) {
        if (rc == 0)
            rc = put(o, "events", events);
        else
            json_decref(events);
    }
    rc = rc ?: put(o, "detected_at", long_field(rec, "detected_at"));
    if (rc < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* --- HTTP: libcurl's multi interface on the loop --------------------------------- */

/* One open handle (or the consumer) less: at zero, after stop, the adapter has stopped. */
static void
unref(struct alerts *s)
{
    if (--s->handles > 0)
        return;
    if (s->pipefd[0] >= 0) {
        close(s->pipefd[0]);
        close(s->pipefd[1]);
        s->pipefd[0] = s->pipefd[1] = -1;
    }
    bh_component_stopped(s->c);
}

static void
on_handle_closed(uv_handle_t *h)
{
    unref(h->data);
}

static void
close_handle(struct alerts *s, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    h->data = s;
    uv_close(h, on_handle_closed);
}

static void check_done(struct alerts *s);

/* The glue's timer and sockets' polls are all closed. */
static void
on_curl_closed(void *arg)
{
    unref(arg);
}

static void
on_curl_progress(void *arg)
{
    check_done(arg);
}

/* The subscriber's answer body is not used: read and dropped, whatever its size. */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    (void)data;
    (void)userp;
    return size * nmemb;
}

/* --- deliveries ---------------------------------------------------------------- */

static const struct bh_variant *
sub_of(const struct delivery *d)
{
    return &d->s->conf->subscribers.v[d->sub];
}

/* The request under way, if any, is ended. */
static void
request_end(struct delivery *d)
{
    struct alerts *s = d->s;
    if (d->easy != NULL) {
        if (s->multi != NULL)
            curl_multi_remove_handle(s->multi, d->easy);
        curl_easy_cleanup(d->easy);
        d->easy = NULL;
        s->in_flight--;
    }
    curl_slist_free_all(d->hdrs);
    d->hdrs = NULL;
}

static void
on_retry_closed(uv_handle_t *h)
{
    struct delivery *d = h->data;
    struct alerts *s = d->s;
    free(d);
    unref(s);
}

/* D is let go: its request ended, out of the list, freed (once its timer is closed). */
static void
release(struct delivery *d)
{
    struct alerts *s = d->s;
    request_end(d);
    if (d->prev != NULL)
        d->prev->next = d->next;
    else if (s->deliveries == d)
        s->deliveries = d->next;
    if (d->next != NULL)
        d->next->prev = d->prev;
    d->prev = d->next = NULL;
    if (d->timer_open) {
        d->timer_open = false;
        uv_close((uv_handle_t *)&d->retry, on_retry_closed);
    } else {
        free(d);
    }
}

/* D is finished (delivered, or its dead letter acknowledged): its alert waits for one less. */
static void
delivery_finish(struct delivery *d)
{
    struct alert *a = d->a;
    release(d);
    alert_unwait(a);
}

/* D is dropped at stop: its alert is not done (its offset is not stored). */
static void
delivery_drop(struct delivery *d)
{
    struct alert *a = d->a;
    release(d);
    if (--a->waiting == 0 && a->p == NULL)
        alert_free(a); /* in no partition's list: nobody else frees it */
}

static void start_close(struct alerts *s);

static void
on_dead_delivered(struct bh_delivery *dl, rd_kafka_resp_err_t err, int32_t partition,
                  int64_t offset)
{
    struct delivery *d = (struct delivery *)dl;
    (void)partition;
    (void)offset;
    bh_published(d->s->c, dl, err);
    struct alerts *s = d->s;
    s->dead_pending--;
    d->dead_pending = false;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        bh_error(s->c->name, "dead letter of alert %s not delivered: %s", d->a->alert_id,
                 rd_kafka_err2str(err));
    delivery_finish(d);
    if (s->stopping && s->dead_pending == 0)
        start_close(s);
}

static void
give_up(struct delivery *d, const char *why)
{
    struct alerts *s = d->s;
    struct alert *a = d->a;
    const struct bh_variant *sub = sub_of(d);
    char detail[700], source[300];
    s->failed++;
    if (d->last_status > 0)
        snprintf(detail, sizeof(detail),
                 "subscriber '%s': %s; last answer HTTP %ld after %d attempt(s)", sub->name, why,
                 d->last_status, d->attempt);
    else
        snprintf(detail, sizeof(detail), "subscriber '%s': %s; last error: %s after %d attempt(s)",
                 sub->name, why, d->last_error[0] ? d->last_error : "none", d->attempt);
    detail[bh_utf8_cut(detail, strlen(detail), sizeof(detail) - 1)] = '\0';
    bh_warn(s->c->name, "alert %s not delivered: %s", a->alert_id, detail);
    snprintf(source, sizeof(source), "%s[%d]", s->conf->topic, (int)a->partition);
    struct bh_dlq_origin origin = {"kafka", source, NULL, a->offset};
    d->dl.cb = on_dead_delivered;
    if (bh_publish_dead(s->c, BH_DLQ_DELIVERY_FAILED, detail, &origin, a->json, a->json_len,
                        &d->dl) == 0) {
        s->dead_pending++;
        d->dead_pending = true;
        return;
    }
    bh_error(s->c->name, "dead letter of alert %s could not be queued", a->alert_id);
    delivery_finish(d);
}

static void
on_retry(uv_timer_t *t)
{
    start_attempt(t->data);
}

static bool
retryable(CURLcode cc, long status)
{
    if (cc != CURLE_OK)
        return true; /* no answer: connection refused or reset, timeout, garbage */
    return status == 408 || status == 429 || status >= 500;
}

static void
attempt_done(struct delivery *d, CURLcode cc, long status)
{
    struct alerts *s = d->s;
    const struct alerts_conf *c = s->conf;
    d->last_status = cc == CURLE_OK ? status : 0;
    if (cc != CURLE_OK && d->last_error[0] == '\0')
        snprintf(d->last_error, sizeof(d->last_error), "%s", curl_easy_strerror(cc));
    request_end(d);
    if (cc == CURLE_OK && status >= 200 && status < 300) {
        s->delivered++;
        bh_debug(s->c->name, "alert %s delivered to '%s' (attempt %d)", d->a->alert_id,
                 sub_of(d)->name, d->attempt);
        delivery_finish(d);
        return;
    }
    if (s->stopping) {
        delivery_drop(d);
        return;
    }
    if (!retryable(cc, status)) {
        give_up(d, "refused for good");
        return;
    }
    if (d->attempt >= c->max_attempts) {
        give_up(d, "attempts exhausted");
        return;
    }
    int64_t wait = c->backoff;
    for (int i = 1; i < d->attempt && wait < c->max_backoff; i++)
        wait *= 2;
    if (wait > c->max_backoff)
        wait = c->max_backoff;
    s->retries++;
    if (!d->timer_open) {
        uv_timer_init(s->loop, &d->retry);
        d->retry.data = d;
        d->timer_open = true;
        s->handles++;
    }
    uv_timer_start(&d->retry, on_retry, (uint64_t)wait, 0);
}

static void
check_done(struct alerts *s)
{
    CURLMsg *m;
    int left;
    while (s->multi != NULL && (m = curl_multi_info_read(s->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct delivery *d = NULL;
        long status = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&d);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        attempt_done(d, m->data.result, status);
    }
}

static void
hmac_hex(const char *key, const void *body, size_t len, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const char hex[] = "0123456789abcdef";
    if (HMAC(EVP_sha256(), key, (int)strlen(key), body, len, md, &mdlen) == NULL)
        mdlen = 0;
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * mdlen] = '\0';
}

static int
add_header(struct curl_slist **l, const char *h)
{
    struct curl_slist *n = curl_slist_append(*l, h);
    if (n == NULL)
        return -ENOMEM;
    *l = n;
    return 0;
}

static void
start_attempt(struct delivery *d)
{
    struct alerts *s = d->s;
    const struct alerts_conf *c = s->conf;
    const struct subscriber_conf *sc = sub_of(d)->settings;
    struct alert *a = d->a;
    char sig[2 * EVP_MAX_MD_SIZE + 40], hex[2 * EVP_MAX_MD_SIZE + 1], line[600];
    int rc = 0;

    if (s->stopping) {
        delivery_drop(d);
        return;
    }
    d->attempt++;
    d->last_error[0] = '\0';
    d->easy = curl_easy_init();
    if (d->easy == NULL) {
        snprintf(d->last_error, sizeof(d->last_error), "out of memory");
        attempt_done(d, CURLE_OUT_OF_MEMORY, 0);
        return;
    }
    s->in_flight++;
    hmac_hex(sc->secret, a->json, a->json_len, hex);
    snprintf(sig, sizeof(sig), "X-Blockhub-Signature: sha256=%s", hex);
    rc = add_header(&d->hdrs, "Content-Type: application/json");
    rc = rc ?: add_header(&d->hdrs, "Expect:");
    rc = rc ?: add_header(&d->hdrs, sig);
    snprintf(line, sizeof(line), "X-Blockhub-Alert-Id: %s", a->alert_id);
    rc = rc ?: add_header(&d->hdrs, line);
    snprintf(line, sizeof(line), "X-Blockhub-Attempt: %d", d->attempt);
    rc = rc ?: add_header(&d->hdrs, line);
    CURL *e = d->easy;
    curl_easy_setopt(e, CURLOPT_URL, sc->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, a->json);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)a->json_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, d->hdrs);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, d->last_error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, d);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "blockhub-alerts");
    if (c->ca_file != NULL && c->ca_file[0] != '\0')
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (rc < 0 || curl_multi_add_handle(s->multi, e) != CURLM_OK) {
        snprintf(d->last_error, sizeof(d->last_error), "the request could not be started");
        attempt_done(d, CURLE_OUT_OF_MEMORY, 0);
        return;
    }
    s->posts++;
}

/* --- records --------------------------------------------------------------------- */

static bool
list_takes(const struct bh_strlist *l, json_t *v)
{
    if (l->n == 0)
        return true;
    const char *t = json_string_value(v);
    if (t == NULL)
        return false;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], t) == 0)
            return true;
    return false;
}

static void
on_undecodable_dead(struct bh_delivery *dl, rd_kafka_resp_err_t err, int32_t partition,
                    int64_t offset)
{
    struct alert *a = (struct alert *)dl;
    (void)partition;
    (void)offset;
    bh_published(a->s->c, dl, err);
    struct alerts *s = a->s;
    s->dead_pending--;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        bh_error(s->c->name, "dead letter of %s[%d]@%lld not delivered: %s", s->conf->topic,
                 (int)a->partition, (long long)a->offset, rd_kafka_err2str(err));
    alert_unwait(a);
    if (s->stopping && s->dead_pending == 0)
        start_close(s);
}

/* Decode the body at P (LEN bytes) as one record of schema S: 0 and *OUT, or -EBADMSG. */
static int
decode_body(const struct bh_schema *s, const unsigned char *p, size_t len, avro_value_t *out)
{
    avro_reader_t r = avro_reader_memory((const char *)p, (int64_t)len);
    char extra;
    int rc = -EBADMSG;
    if (r == NULL)
        return -ENOMEM;
    if (avro_generic_value_new(s->iface, out) != 0) {
        avro_reader_free(r);
        return -ENOMEM;
    }
    if (avro_value_read(r, out) == 0 && avro_read(r, &extra, 1) != 0)
        rc = 0;
    avro_reader_free(r);
    if (rc < 0)
        avro_value_decref(out);
    return rc;
}

/*
 * Decode M's value: 0 and *OUT; -EAGAIN when its writer schema is being fetched
 * from the registry (try again later); another -errno with the reason in WHY.
 */
static int
decode(struct alerts *s, const rd_kafka_message_t *m, avro_value_t *out, char *why, size_t n)
{
    const unsigned char *p = m->payload;
    size_t len = m->len;
    if (p != NULL && len >= 10 && p[0] == 0xC3 && p[1] == 0x01) {
        uint64_t fp = 0;
        for (int i = 0; i < 8; i++)
            fp |= (uint64_t)p[2 + i] << (8 * i);
        if (fp != s->schema->fingerprint) {
            snprintf(why, n,
                     "single-object record of an unknown schema (fingerprint %016llx; %s is "
                     "%016llx)",
                     (unsigned long long)fp, SCHEMA, (unsigned long long)s->schema->fingerprint);
            return -ENOENT;
        }
        if (decode_body(s->schema, p + 10, len - 10, out) < 0) {
            snprintf(why, n, "the body is not a valid %s", SCHEMA);
            return -EBADMSG;
        }
        return 0;
    }
    if (p != NULL && len >= 5 && p[0] == 0x00) {
        uint32_t id = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        bool ours = s->schema->registry_id >= 0 && (uint32_t)s->schema->registry_id == id;
        if (!ours && s->c->hub->registry != NULL && id <= INT32_MAX) {
            const char *text = NULL;
            int rc = bh_registry_schema_text(s->c->hub->registry, (int32_t)id, &text);
            if (rc == -EAGAIN)
                return rc;
            char *canon = NULL, err[200];
            if (rc == 0 &&
                bh_avro_canonical_form(text, strlen(text), &canon, err, sizeof(err)) == 0) {
                ours = strcmp(canon, s->schema->canonical) == 0;
                free(canon);
            }
        }
        if (!ours) {
            snprintf(why, n, "record of registry id %u: not %s as this hub knows it", id, SCHEMA);
            return -ENOENT;
        }
        if (decode_body(s->schema, p + 5, len - 5, out) < 0) {
            snprintf(why, n, "the body is not a valid %s", SCHEMA);
            return -EBADMSG;
        }
        return 0;
    }
    snprintf(why, n, "unknown framing (%zu bytes; neither Avro single-object nor Confluent)", len);
    return -EBADMSG;
}

static void
dead_undecodable(struct alerts *s, struct alert *a, const rd_kafka_message_t *m, const char *why)
{
    char source[300];
    s->undecodable++;
    snprintf(source, sizeof(source), "%s[%d]", s->conf->topic, (int)m->partition);
    struct bh_dlq_origin origin = {"kafka", source, NULL, m->offset};
    a->dl.cb = on_undecodable_dead;
    a->waiting = 1;
    if (bh_publish_dead(s->c, BH_DLQ_INVALID_ENCODING, why, &origin, m->payload, m->len, &a->dl) ==
        0) {
        s->dead_pending++;
        return;
    }
    bh_error(s->c->name, "dead letter of %s could not be queued", source);
    alert_unwait(a);
}

/* One record: held, decoded and sent to every subscriber that takes it. -EAGAIN: later. */
static int
take(struct alerts *s, const rd_kafka_message_t *m)
{
    avro_value_t rec;
    char why[400];
    int rc = decode(s, m, &rec, why, sizeof(why));
    if (rc == -EAGAIN)
        return rc;
    struct part *p = part_of(s, m->partition);
    struct alert *a = calloc(1, sizeof(*a));
    if (a == NULL || p == NULL) {
        free(a);
        if (rc == 0)
            avro_value_decref(&rec);
        bh_error(s->c->name, "out of memory: %s[%d]@%lld is left for a restart", s->conf->topic,
                 (int)m->partition, (long long)m->offset);
        return 0;
    }
    a->s = s;
    a->p = p->assigned ? p : NULL;
    a->partition = m->partition;
    a->offset = m->offset;
    if (a->p != NULL) {
        if (p->tail != NULL)
            p->tail->next = a;
        else
            p->head = a;
        p->tail = a;
    }
    s->pending++;
    s->received++;
    if (rc < 0) {
        a->alert_id = strdup("");
        dead_undecodable(s, a, m, why);
        return 0;
    }
    json_t *o = alert_json(&rec);
    avro_value_decref(&rec);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text == NULL) {
        json_decref(o);
        a->alert_id = strdup("");
        dead_undecodable(s, a, m, "the record could not be written as JSON");
        return 0;
    }
    a->json = text;
    a->json_len = strlen(text);
    const char *id = json_string_value(json_object_get(o, "alert_id"));
    a->alert_id = strdup(id != NULL ? id : "");
    if (a->alert_id == NULL) {
        json_decref(o);
        dead_undecodable(s, a, m, "out of memory");
        return 0;
    }
    /* Sanitized: the id goes into a header line. */
    for (char *c = a->alert_id; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    a->waiting = 1; /* until every delivery is started */
    const struct bh_variant_list *subs = &s->conf->subscribers;
    for (size_t i = 0; i < subs->n; i++) {
        const struct subscriber_conf *sc = subs->v[i].settings;
        if (!list_takes(&sc->units, json_object_get(o, "unit")) ||
            !list_takes(&sc->rules, json_object_get(o, "name")))
            continue;
        struct delivery *d = calloc(1, sizeof(*d));
        if (d == NULL) {
            bh_error(s->c->name, "out of memory: alert %s not sent to '%s'", a->alert_id,
                     subs->v[i].name);
            continue;
        }
        d->s = s;
        d->a = a;
        d->sub = i;
        d->next = s->deliveries;
        if (d->next != NULL)
            d->next->prev = d;
        s->deliveries = d;
        a->waiting++;
        start_attempt(d);
    }
    json_decref(o);
    alert_unwait(a);
    return 0;
}

/* A record as the history of GET /alerts keeps it: the JSON POSTed to the subscribers. */
static int
history_json(void *arg, const rd_kafka_message_t *m, json_t **out)
{
    struct alerts *s = arg;
    avro_value_t rec;
    char why[400];
    *out = NULL;
    int rc = decode(s, m, &rec, why, sizeof(why));
    if (rc < 0)
        return rc;
    *out = alert_json(&rec);
    avro_value_decref(&rec);
    return *out != NULL ? 0 : -EBADMSG;
}

static void
on_api_closed(void *arg)
{
    unref(arg);
}

/* --- the consumer -------------------------------------------------------------------- */

/* Both may run on librdkafka's threads: they only read the component's name. */
static void
on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const struct alerts *s = rd_kafka_opaque(rk);
    enum bh_log_level l = (enum bh_log_level)bh_lograte_kafka_log_level(level, fac);
    bh_log(l, s->c->name, "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

static void
on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    const struct alerts *s = opaque;
    bh_log((enum bh_log_level)bh_lograte_kafka_error_level(err), s->c->name, "%s: %s: %s",
           rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void
on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *l,
             void *opaque)
{
    struct alerts *s = opaque;
    if (atomic_load(&s->closing)) { /* on the closing thread: touch nothing of the loop's */
        rd_kafka_assign(rk, NULL);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < l->cnt; i++) {
            struct part *p = part_of(s, l->elems[i].partition);
            if (p != NULL)
                p->assigned = true;
        }
        rd_kafka_assign(rk, l);
        if (s->flow_paused)
            rd_kafka_pause_partitions(rk, l);
        bh_info(s->c->name, "%d partition(s) of %s assigned", l->cnt, s->conf->topic);
        return;
    }
    /* Revoked: what is held goes on, but no longer moves the partition's offset. */
    for (int i = 0; i < l->cnt; i++) {
        int32_t n = l->elems[i].partition;
        if (n < 0 || (size_t)n >= s->nparts)
            continue;
        struct part *p = &s->parts[n];
        for (struct alert *a = p->head, *next; a != NULL; a = next) {
            next = a->next;
            a->next = NULL;
            a->p = NULL;
            if (a->done)
                alert_free(a);
        }
        p->head = p->tail = NULL;
        p->assigned = false;
    }
    rd_kafka_assign(rk, NULL);
    bh_info(s->c->name, "%d partition(s) of %s revoked", l->cnt, s->conf->topic);
}

static bool
can_take(const struct alerts *s)
{
    return !s->stopping && !s->operator_paused && s->held == NULL &&
           s->pending < (size_t)s->conf->max_pending;
}

static void
on_hold_timer(uv_timer_t *t)
{
    struct alerts *s = t->data;
    if (s->held == NULL || s->stopping)
        return;
    if (take(s, s->held) == -EAGAIN) {
        uv_timer_start(&s->hold_timer, on_hold_timer, 200, 0);
        return;
    }
    rd_kafka_message_destroy(s->held);
    s->held = NULL;
    consume(s);
}

static void
on_more(uv_idle_t *h)
{
    uv_idle_stop(h);
    consume(h->data);
}

/* Serve the consumer: records while there is room, a bounded number per loop turn. */
static void
consume(struct alerts *s)
{
    int n = 0;
    if (s->consumer == NULL || atomic_load(&s->closing))
        return;
    while (n < 256) {
        if (!can_take(s)) {
            flow_check(s);
            return;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(s->consumer, 0);
        if (m == NULL)
            return;
        n++;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                bh_warn(s->c->name, "consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (take(s, m) == -EAGAIN) {
            s->held = m;
            uv_timer_start(&s->hold_timer, on_hold_timer, 200, 0);
            return;
        }
        rd_kafka_message_destroy(m);
        flow_check(s);
    }
    uv_idle_start(&s->more, on_more);
}

static void
on_wake(uv_poll_t *h, int status, int events)
{
    struct alerts *s = h->data;
    char buf[256];
    (void)status;
    (void)events;
    while (read(s->pipefd[0], buf, sizeof(buf)) > 0)
        ;
    consume(s);
}

static int
make_consumer(struct alerts *s, char *errstr, size_t n)
{
    const struct bh_kvlist *props = &s->c->hub->conf->kafka.properties;
    char client_id[300], err[256];
    snprintf(client_id, sizeof(client_id), "blockhub-alerts-%s", s->c->name);
    const char *pinned[] = {"group.id",
                            s->conf->group,
                            "client.id",
                            client_id,
                            "isolation.level",
                            "read_committed",
                            "enable.auto.commit",
                            "true",
                            "auto.commit.interval.ms",
                            "1000",
                            "enable.auto.offset.store",
                            "false",
                            "auto.offset.reset",
                            "earliest",
                            "enable.partition.eof",
                            "false",
                            NULL};
    rd_kafka_conf_t *c = bh_kafka_consumer_conf(s->c->hub->kafka, props, pinned, 0, errstr, n);
    if (c == NULL)
        return -EINVAL;
    rd_kafka_conf_set_opaque(c, s);
    rd_kafka_conf_set_log_cb(c, on_kafka_log);
    rd_kafka_conf_set_error_cb(c, on_kafka_error);
    rd_kafka_conf_set_rebalance_cb(c, on_rebalance);
    s->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (s->consumer == NULL) {
        rd_kafka_conf_destroy(c);
        snprintf(errstr, n, "consumer: %s", err);
        return -EINVAL;
    }
    rd_kafka_poll_set_consumer(s->consumer);
    s->queue = rd_kafka_queue_get_consumer(s->consumer);
    rd_kafka_queue_io_event_enable(s->queue, s->pipefd[1], "c", 1);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, s->conf->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(s->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, n, "subscribe to %s: %s", s->conf->topic, rd_kafka_err2str(e));
        return -EINVAL;
    }
    return 0;
}

/* --- start and stop ---------------------------------------------------------------- */

static void
teardown_consumer(struct alerts *s)
{
    if (s->queue != NULL) {
        rd_kafka_queue_io_event_enable(s->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(s->queue);
        s->queue = NULL;
    }
    if (s->consumer != NULL) {
        rd_kafka_consumer_close(s->consumer); /* commits the stored offsets */
        rd_kafka_destroy(s->consumer);
    }
}

static void
on_close_work(uv_work_t *w)
{
    teardown_consumer(w->data);
}

static void
after_close_work(uv_work_t *w, int status)
{
    struct alerts *s = w->data;
    (void)status;
    s->consumer = NULL;
    bh_info(s->c->name, "consumer closed; stored offsets committed");
    unref(s);
}

/* The consumer is closed on a worker thread (its close commits and may wait on the group). */
static void
start_close(struct alerts *s)
{
    if (s->close_started)
        return;
    s->close_started = true;
    atomic_store(&s->closing, true);
    s->closing_work.data = s;
    if (uv_queue_work(s->loop, &s->closing_work, on_close_work, after_close_work) != 0) {
        teardown_consumer(s);
        after_close_work(&s->closing_work, 0);
    }
}

static int
check_url(const void *value, char *why, size_t why_size)
{
    const char *u = *(char *const *)value;
    if (u == NULL || (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) ||
        u[strncmp(u, "http://", 7) == 0 ? 7 : 8] == '\0') {
        snprintf(why, why_size, "an http:// or https:// URL with a host is required");
        return -EINVAL;
    }
    return 0;
}

static int
check_secret(const void *value, char *why, size_t why_size)
{
    const char *t = *(char *const *)value;
    if (t == NULL || t[0] == '\0') {
        snprintf(why, why_size, "the HMAC key must not be empty");
        return -EINVAL;
    }
    return 0;
}

static int
check_subscribers(const void *value, char *why, size_t why_size)
{
    const struct bh_variant_list *l = value;
    if (l->n == 0) {
        snprintf(why, why_size, "at least one subscriber is required");
        return -EINVAL;
    }
    return 0;
}

static int
check_ca_file(const void *value, char *why, size_t why_size)
{
    const char *p = *(char *const *)value;
    if (p != NULL && p[0] != '\0' && access(p, R_OK) != 0) {
        snprintf(why, why_size, "cannot read '%s': %s", p, strerror(errno));
        return -EINVAL;
    }
    return 0;
}

static int
check_conf(const void *settings, const char **key, char *why, size_t why_size)
{
    const struct alerts_conf *c = settings;
    if (c->max_backoff < c->backoff) {
        *key = "max_backoff";
        snprintf(why, why_size, "max_backoff (%lld ms) is below backoff (%lld ms)",
                 (long long)c->max_backoff, (long long)c->backoff);
        return -EINVAL;
    }
    return 0;
}

static void
free_state(struct alerts *s)
{
    for (size_t i = 0; i < s->nparts; i++) {
        for (struct alert *a = s->parts[i].head, *next; a != NULL; a = next) {
            next = a->next;
            alert_free(a);
        }
    }
    free(s->parts);
    bh_alerts_api_free(s->api);
    free(s);
}

static int
start(struct bh_component *c, char *errstr, size_t errstr_size)
{
    const struct alerts_conf *conf = c->settings;
    static bool curl_ready;
    struct alerts *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->c = c;
    s->conf = conf;
    s->loop = c->hub->loop;
    s->pipefd[0] = s->pipefd[1] = -1;
    s->schema = bh_schemas_find(c->hub->schemas, SCHEMA);
    if (s->schema == NULL) {
        snprintf(errstr, errstr_size, "schema %s not found in the schemas directory", SCHEMA);
        free(s);
        return -ENOENT;
    }
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            snprintf(errstr, errstr_size, "libcurl cannot start");
            free(s);
            return -ENOMEM;
        }
        curl_ready = true;
    }
    if (pipe2(s->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(errstr, errstr_size, "pipe: %s", strerror(errno));
        free(s);
        return -errno;
    }
    s->multi = curl_multi_init();
    if (s->multi == NULL) {
        snprintf(errstr, errstr_size, "libcurl: out of memory");
        close(s->pipefd[0]);
        close(s->pipefd[1]);
        free(s);
        return -ENOMEM;
    }
    int rc = make_consumer(s, errstr, errstr_size);
    if (rc < 0) {
        teardown_consumer(s);
        curl_multi_cleanup(s->multi);
        close(s->pipefd[0]);
        close(s->pipefd[1]);
        free(s);
        return rc;
    }
    uv_poll_init(s->loop, &s->wake, s->pipefd[0]);
    uv_idle_init(s->loop, &s->more);
    uv_timer_init(s->loop, &s->hold_timer);
    bh_curl_loop_init(&s->curl, s->loop, s->multi, on_curl_progress, s);
    s->wake.data = s->more.data = s->hold_timer.data = s;
    s->handles = 5; /* the three handles, curl's glue and the consumer */
    uv_poll_start(&s->wake, UV_READABLE, on_wake);
    c->priv = s;
    struct bh_alerts_api_conf ac = {conf->topic, conf->history, conf->history_for,
                                    conf->stream_keep_alive};
    rc = bh_alerts_api_start(&s->api, c, &ac, history_json, on_api_closed, s, errstr, errstr_size);
    if (rc < 0) {
        bh_error(c->name, "GET /alerts not served: %s", errstr);
        errstr[0] = '\0';
    } else if (s->api != NULL) {
        s->handles++;
    }
    bh_info(c->name, "alerts from %s (group %s) -> %zu subscriber(s)", conf->topic, conf->group,
            conf->subscribers.n);
    consume(s);
    return 0;
}

static void
stop(struct bh_component *c)
{
    struct alerts *s = c->priv;
    if (s == NULL || s->stopping)
        return;
    s->stopping = true;
    size_t dropped = 0;
    /* Requests in flight and retries waiting are dropped: their alerts' offsets were not
     * stored, so they come again after a restart. Dead letters under way are awaited. */
    for (struct delivery *d = s->deliveries, *next; d != NULL; d = next) {
        next = d->next;
        if (d->dead_pending)
            continue;
        dropped++;
        delivery_drop(d);
    }
    if (s->held != NULL) {
        rd_kafka_message_destroy(s->held);
        s->held = NULL;
    }
    if (dropped > 0)
        bh_info(c->name, "%zu delivery(ies) not finished: they are sent again after a restart",
                dropped);
    curl_multi_cleanup(s->multi);
    s->multi = NULL;
    uv_poll_stop(&s->wake);
    close_handle(s, (uv_handle_t *)&s->wake);
    close_handle(s, (uv_handle_t *)&s->more);
    close_handle(s, (uv_handle_t *)&s->hold_timer);
    bh_curl_loop_close(&s->curl, on_curl_closed);
    bh_alerts_api_stop(s->api);
    if (s->dead_pending == 0)
        start_close(s);
    else
        bh_info(c->name, "waiting for %llu dead letter(s) before closing the consumer",
                (unsigned long long)s->dead_pending);
}

static void
destroy(struct bh_component *c)
{
    struct alerts *s = c->priv;
    if (s == NULL)
        return;
    c->priv = NULL;
    free_state(s);
}

static void
topics(const struct bh_component *c, const char **out, size_t cap)
{
    (void)c;
    if (cap > 0)
        out[0] = NULL; /* it publishes dead letters only */
}

static int
pause_intake(struct bh_component *c)
{
    struct alerts *s = c->priv;
    s->operator_paused = true;
    flow_check(s);
    bh_info(c->name, "paused: no more alerts are read; deliveries under way go on");
    return 0;
}

static int
resume_intake(struct bh_component *c)
{
    struct alerts *s = c->priv;
    s->operator_paused = false;
    flow_check(s);
    if (!s->stopping)
        consume(s);
    bh_info(c->name, "resumed");
    return 0;
}

static void
stats(const struct bh_component *c, struct bh_stats *out)
{
    const struct alerts *s = c->priv;
    if (s == NULL)
        return;
    bh_stats_add(out, "alerts_received", "alert records read from the topic", false, s->received);
    bh_stats_add(out, "alerts_undecodable",
                 "records of an unknown framing or schema (dead-lettered)", false, s->undecodable);
    bh_stats_add(out, "webhook_posts", "POSTs started (every attempt)", false, s->posts);
    bh_stats_add(out, "webhook_delivered", "alerts a subscriber answered 2xx", false, s->delivered);
    bh_stats_add(out, "webhook_retries", "attempts scheduled again after a failure", false,
                 s->retries);
    bh_stats_add(out, "webhook_failed", "deliveries given up (dead-lettered as delivery_failed)",
                 false, s->failed);
    bh_stats_add(out, "alerts_pending", "alerts held until every subscriber has them", true,
                 s->pending);
    bh_stats_add(out, "webhook_in_flight", "POSTs under way", true, s->in_flight);
    bh_stats_add(out, "flow_pauses", "times max_pending paused the partitions", false,
                 s->flow_pauses);
    bh_stats_add(out, "offsets_stored", "times a partition's offset moved on", false,
                 s->committed_moves);
    bh_alerts_api_stats(s->api, out);
}

#define SKEY(field) offsetof(struct subscriber_conf, field)

static const struct bh_conf_key subscriber_keys[] = {
    {.name = "url",
     .type = BH_CONF_STRING,
     .offset = SKEY(url),
     .flags = BH_CONF_REQUIRED,
     .check = check_url,
     .doc = "Where alerts are POSTed (http:// or https://)."},
    {.name = "secret",
     .type = BH_CONF_STRING,
     .offset = SKEY(secret),
     .flags = BH_CONF_REQUIRED,
     .check = check_secret,
     .doc = "HMAC-SHA256 key of the X-Blockhub-Signature header (not empty)."},
    {.name = "units",
     .type = BH_CONF_STRING_LIST,
     .offset = SKEY(units),
     .doc = "Only alerts whose unit is one of these (empty: every unit)."},
    {.name = "rules",
     .type = BH_CONF_STRING_LIST,
     .offset = SKEY(rules),
     .doc = "Only alerts whose name (the watch or rule) is one of these (empty: every one)."},
    {0},
};

static const struct bh_conf_variant subscriber_variant = {
    .keys = subscriber_keys,
    .size = sizeof(struct subscriber_conf),
};

static const struct bh_conf_variant *
subscriber_type(const char *type)
{
    return strcmp(type, SUBSCRIBER_TYPE) == 0 ? &subscriber_variant : NULL;
}

#define KEY(field) offsetof(struct alerts_conf, field)

static const struct bh_conf_key alerts_keys[] = {
    {.name = "topic",
     .type = BH_CONF_STRING,
     .offset = KEY(topic),
     .def = "block.alerts",
     .check = bh_conf_check_topic,
     .doc = "Topic the alerts are read from (blockhub.alert.BlockAlert records)."},
    {.name = "group",
     .type = BH_CONF_STRING,
     .offset = KEY(group),
     .def = "blockhub-alerts",
     .doc = "Kafka consumer group; its committed offsets say which alerts are done."},
    {.name = "subscribers",
     .type = BH_CONF_VARIANTS,
     .offset = KEY(subscribers),
     .flags = BH_CONF_REQUIRED,
     .check = check_subscribers,
     .variant = subscriber_type,
     .variant_doc = SUBSCRIBER_TYPE,
     .doc = "Webhook subscribers, each {name, type: webhook, url, secret, units, rules}."},
    {.name = "max_attempts",
     .type = BH_CONF_INT,
     .offset = KEY(max_attempts),
     .def = "8",
     .min = 1,
     .max = 1000,
     .doc = "Attempts of one delivery before it is dead-lettered as delivery_failed."},
    {.name = "backoff",
     .type = BH_CONF_DURATION,
     .offset = KEY(backoff),
     .def = "500ms",
     .min = 1,
     .max = 3600000,
     .doc = "Wait before the second attempt; doubled for each further one."},
    {.name = "max_backoff",
     .type = BH_CONF_DURATION,
     .offset = KEY(max_backoff),
     .def = "30s",
     .min = 1,
     .max = 86400000,
     .doc = "Longest wait between two attempts (not below backoff)."},
    {.name = "timeout",
     .type = BH_CONF_DURATION,
     .offset = KEY(timeout),
     .def = "10s",
     .min = 10,
     .max = 600000,
     .doc = "How long one POST may take (connecting included) before it counts as failed."},
    {.name = "max_pending",
     .type = BH_CONF_INT,
     .offset = KEY(max_pending),
     .def = "1000",
     .min = 1,
     .max = 1000000,
     .doc = "Alerts held at most; the partitions are paused there until half are done."},
    {.name = "ca_file",
     .type = BH_CONF_STRING,
     .offset = KEY(ca_file),
     .check = check_ca_file,
     .doc = "PEM file of the CAs that https subscribers are checked against (default: the "
            "system's)."},
    {.name = "history",
     .type = BH_CONF_INT,
     .offset = KEY(history),
     .def = "10000",
     .min = 0,
     .max = 10000000,
     .doc = "Alerts kept at most for GET /alerts and GET /alerts/stream on the admin API (read "
            "by a consumer of their own, outside the group); 0: neither is served."},
    {.name = "history_for",
     .type = BH_CONF_DURATION,
     .offset = KEY(history_for),
     .def = "24h",
     .min = 1000,
     .max = 31536000000,
     .doc = "How far back the kept alerts reach (by record time): at start the history is read "
            "from the topic's offsets of now minus this."},
    {.name = "stream_keep_alive",
     .type = BH_CONF_DURATION,
     .offset = KEY(stream_keep_alive),
     .def = "15s",
     .min = 100,
     .max = 3600000,
     .doc = "A comment line (': keep-alive') to each GET /alerts/stream client that was sent "
            "nothing for this long, so that proxies and clients keep an idle stream open."},
    {0},
};

const struct bh_component_type bh_adapter_type_alerts = {
    .name = "alerts",
    .doc = "Alert webhooks: the join's alerts POSTed, signed, to subscribers (at least once).",
    .schema = SCHEMA,
    .conf = {.keys = alerts_keys, .size = sizeof(struct alerts_conf), .check = check_conf},
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .topics = topics,
    .pause = pause_intake,
    .resume = resume_intake,
    .stats = stats,
};
