/*
 * The traffic adapter: a live TCP stream of JSON lines (FEEDS.md, "Traffic").
 *
 * Gateways connect to the listener and write one JSON object per line. A
 * connection's bytes are framed into lines (traffic_lines.c); a line is mapped
 * to an event (traffic_event.c), resolved to its block by its coordinates,
 * encoded as blockhub.traffic.TrafficEvent and produced keyed by block. A line
 * that cannot be published is dead-lettered with its own bytes: origin "tcp",
 * the listen address, the gateway's address, the line number within the
 * connection. Heartbeats and blank lines produce nothing. The record's bytes
 * are written straight from the event (traffic_avro.c, checked against
 * avro-c and the loaded schema at start).
 *
 * Nothing read is dropped. Every line that produced something keeps a copy
 * (struct pending) until Kafka has acknowledged it. If the delivery fails
 * (the broker was away longer than message.timeout.ms, or the producer was
 * replaced after a fatal error) the line is processed again a second later;
 * a record the broker refuses as too large is dead-lettered instead.
 *
 * Back-pressure: when the pending lines reach max_in_flight (or their bytes
 * max_in_flight_bytes) every connection stops reading; they all read again
 * once both are down to half. The socket buffers fill and TCP holds the
 * gateways back. Memory is bounded by those two settings, plus per
 * connection max(max_line, dead_letter.max_payload) for a line split across
 * reads, plus one 64 KiB read buffer shared by all connections (the lines of
 * one read are all processed before the next read).
 *
 * A connection that ends (closed by the gateway, idle too long, or blockhub
 * stopping) in the middle of a line hands that last line over all the same:
 * published if it is a whole JSON object, else dead-lettered (invalid_json,
 * with a detail saying the connection ended before the line did).
 *
 * stop(): close the listener, stop reading, dead-letter the lines cut off,
 * wait for every pending line (at most kafka.flush_timeout), close the
 * connections, then bh_adapter_stopped().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlq.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "traffic_avro.h"
#include "traffic_event.h"
#include "traffic_lines.h"

#define SCHEMA      "blockhub.traffic.TrafficEvent"
#define READ_BUFFER (64 * 1024)
#define SLOT        512  /* a pending line this small comes from the free list */
#define RETRY_MS    1000 /* a failed delivery is retried after this */
#define PEER_MAX    48   /* "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535" */

struct traffic_conf {
    char *listen;
    char *topic;
    uint64_t max_line;
    int64_t max_in_flight;
    uint64_t max_in_flight_bytes;
    int64_t max_connections;
    int64_t idle_timeout;
};

/* Why a connection ended while a line was still open. */
enum cut { CUT_NONE, CUT_CLOSED, CUT_IDLE, CUT_STOPPED };

static const char *const cut_text[] = {
    [CUT_CLOSED] = "the gateway closed the connection before the end of the line",
    [CUT_IDLE] = "the connection was closed as idle before the end of the line",
    [CUT_STOPPED] = "blockhub stopped before the end of the line",
};

struct traffic;

/* One line that produced a record or a dead letter, until Kafka acknowledges it. */
struct pending {
    struct bh_delivery d; /* first: the delivery callback hands it back */
    struct traffic *t;
    struct pending *next; /* in the retry list or the free list */
    int64_t received_at;
    int64_t line_no;
    uint64_t full_len;
    size_t len;  /* bytes of the line kept in data */
    int refused; /* the broker refused the record: dead-letter it as too large */
    bool too_long;
    bool dead; /* what was produced is a dead letter */
    uint8_t cut;
    char peer[PEER_MAX];
    char data[]; /* the line (of a too long one, its first max_payload bytes) */
};

#define SLOT_DATA (SLOT - offsetof(struct pending, data))

struct conn {
    uv_tcp_t tcp;
    struct traffic *t;
    struct conn *prev, *next;
    struct bh_lines lines;
    char peer[PEER_MAX];
    uint64_t last_active; /* uv_now() of the last read */
    bool listed;          /* in t->conns (accepted and not refused) */
    uint8_t cut;          /* why the stream ends, for the line it cuts off */
    bool reading;
    bool closing;
};

struct traffic {
    struct bh_adapter *a;
    const struct traffic_conf *conf;
    const struct bh_schema *schema;
    struct bh_traffic_parser *parser;
    uint8_t frame[16]; /* the framing bh_encode puts before a record's body */
    size_t frame_len;
    uint8_t *out; /* the record being produced (librdkafka copies it) */
    size_t out_cap;
    size_t max_payload;
    uv_tcp_t listener;
    uv_timer_t retry_timer, idle_timer, drain_timer;
    char source[80]; /* the address bound */
    struct conn *conns;
    size_t nconns;
    size_t handles; /* open uv handles, the listener and timers included */
    size_t in_flight;
    uint64_t in_flight_bytes;
    struct pending *retry_head, *retry_tail;
    size_t retry_count;
    struct pending *free_slots;
    char retry_why[128];
    int64_t read_ms; /* wall clock of the read being processed */
    uint64_t refused_log_ms;
    uint64_t pauses; /* times back-pressure paused reading */
    bool paused;
    bool stopping;
    bool closing_all;
    char readbuf[READ_BUFFER];
};

static void on_retry(uv_timer_t *timer);

/* --- pending lines ------------------------------------------------------------- */

static struct pending *
pending_new(struct traffic *t, const char *data, size_t len)
{
    struct pending *pd;
    if (len <= SLOT_DATA && t->free_slots != NULL) {
        pd = t->free_slots;
        t->free_slots = pd->next;
    } else {
        pd = malloc(len <= SLOT_DATA ? SLOT : offsetof(struct pending, data) + len);
        if (pd == NULL)
            return NULL;
    }
    memset(pd, 0, offsetof(struct pending, data));
    pd->t = t;
    pd->len = len;
    memcpy(pd->data, data, len);
    t->in_flight++;
    t->in_flight_bytes += len;
    return pd;
}

static void resume_all(struct traffic *t);
static void close_all(struct traffic *t);

/* PD is done with (acknowledged, a heartbeat, or given up on). */
static void
pending_done(struct pending *pd)
{
    struct traffic *t = pd->t;
    t->in_flight--;
    t->in_flight_bytes -= pd->len;
    if (pd->len <= SLOT_DATA) {
        pd->next = t->free_slots;
        t->free_slots = pd;
    } else {
        free(pd);
    }
    if (t->paused && !t->stopping && t->in_flight <= (size_t)t->conf->max_in_flight / 2 &&
        t->in_flight_bytes <= t->conf->max_in_flight_bytes / 2)
        resume_all(t);
    if (t->stopping && !t->closing_all && t->in_flight == 0)
        close_all(t);
}

static void
retry_later(struct pending *pd, const char *why)
{
    struct traffic *t = pd->t;
    if (t->closing_all) {
        bh_error(t->a->name, "line %lld from %s lost at shutdown: %s", (long long)pd->line_no,
                 pd->peer, why);
        pending_done(pd);
        return;
    }
    pd->next = NULL;
    if (t->retry_tail != NULL)
        t->retry_tail->next = pd;
    else
        t->retry_head = pd;
    t->retry_tail = pd;
    snprintf(t->retry_why, sizeof(t->retry_why), "%s", why);
    if (t->retry_count++ == 0)
        uv_timer_start(&t->retry_timer, on_retry, RETRY_MS, 0);
}

/* --- one line, from its bytes to Kafka ----------------------------------------- */

/* The framed record into t->out (see traffic_avro.h). */
static int
encode(struct traffic *t, const struct pending *pd, const struct bh_traffic_event *ev,
       const struct bh_block *blk, const void **data, size_t *len)
{
    struct bh_traffic_extra x = {blk->id, pd->received_at, pd->peer};
    size_t need = t->frame_len + bh_traffic_avro_bound(ev, &x);
    if (need > t->out_cap) {
        uint8_t *out = realloc(t->out, need);
        if (out == NULL)
            return -ENOMEM;
        t->out = out;
        t->out_cap = need;
    }
    memcpy(t->out, t->frame, t->frame_len);
    *data = t->out;
    *len = t->frame_len + bh_traffic_avro_write(t->out + t->frame_len, ev, &x);
    return 0;
}

/* 0 produced, else -ENOMEM or bh_kafka_produce's error. */
static int
produce_record(struct traffic *t, struct pending *pd, const struct bh_traffic_event *ev,
               const struct bh_block *blk)
{
    const void *data;
    size_t len;
    int rc = encode(t, pd, ev, blk, &data, &len);
    if (rc < 0)
        return rc;
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "blockhub.event_id", -1, ev->event_id.s, (ssize_t)ev->event_id.len);
    rd_kafka_header_add(h, "blockhub.adapter", -1, t->a->name, -1);
    rc = bh_kafka_produce(t->a->hub->kafka, t->conf->topic, blk->id, strlen(blk->id), data, len, h,
                          &pd->d);
    if (rc < 0)
        rd_kafka_headers_destroy(h);
    return rc;
}

static int
dead_letter(struct traffic *t, struct pending *pd, enum bh_dlq_reason r, const char *why)
{
    char detail[800];
    if (pd->cut != CUT_NONE)
        snprintf(detail, sizeof(detail), "%s; %s", cut_text[pd->cut], why);
    else
        snprintf(detail, sizeof(detail), "%s", why);
    struct bh_dlq_origin origin = {"tcp", t->source, pd->peer, pd->line_no};
    /* Of a too long line PD holds the first max_payload bytes, all the dead
     * letter keeps; its full length makes payload_truncated true. */
    size_t len = pd->too_long ? (size_t)pd->full_len : pd->len;
    pd->dead = true;
    return bh_dlq_publish(t->a->hub, t->a, r, detail, &origin, pd->data, len, &pd->d);
}

/*
 * Publish what PD's line gives: a record or a dead letter. 1: nothing to
 * publish (a heartbeat); 0: produced, PD waits for its delivery; -errno: not
 * queued (to be retried).
 */
static int
process(struct traffic *t, struct pending *pd)
{
    struct bh_traffic_event ev;
    enum bh_dlq_reason r;
    char why[600];
    pd->dead = false;
    if (pd->too_long) {
        snprintf(why, sizeof(why), "the line is %llu bytes, longer than max_line (%llu)",
                 (unsigned long long)pd->full_len, (unsigned long long)t->conf->max_line);
        return dead_letter(t, pd, BH_DLQ_TOO_LARGE, why);
    }
    if (pd->refused) {
        snprintf(why, sizeof(why), "Kafka refused the record: %s",
                 rd_kafka_err2str((rd_kafka_resp_err_t)pd->refused));
        return dead_letter(t, pd, BH_DLQ_TOO_LARGE, why);
    }
    switch (bh_traffic_parse(t->parser, pd->data, pd->len, &ev, &r, why, sizeof(why))) {
    case BH_TRAFFIC_HEARTBEAT:
        return 1;
    case BH_TRAFFIC_REJECT:
        return dead_letter(t, pd, r, why);
    case BH_TRAFFIC_RECORD:
        break;
    }
    const struct bh_block *blk =
        bh_blockmap_resolve(t->a->hub->blocks, NULL, 0, true, ev.lon, ev.lat);
    if (blk == NULL) {
        snprintf(why, sizeof(why), "no block covers lon %.7g, lat %.7g", ev.lon, ev.lat);
        return dead_letter(t, pd, BH_DLQ_UNRESOLVED_BLOCK, why);
    }
    int rc = produce_record(t, pd, &ev, blk);
    if (rc == -EINVAL) {
        /* librdkafka refused this one record (in practice: message.max.bytes). */
        pd->refused = RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
        return process(t, pd);
    }
    return rc;
}

static void
process_or_retry(struct traffic *t, struct pending *pd)
{
    int rc = process(t, pd);
    if (rc == 1)
        pending_done(pd);
    else if (rc < 0)
        retry_later(pd, strerror(-rc));
}

static void
on_delivered(struct bh_delivery *d, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct pending *pd = (struct pending *)d;
    struct traffic *t = pd->t;
    (void)partition;
    (void)offset;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        pending_done(pd);
        return;
    }
    bool too_large = err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
                     err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
    if (too_large && pd->dead) {
        bh_error(t->a->name, "dead letter for line %lld from %s refused by Kafka: %s",
                 (long long)pd->line_no, pd->peer, rd_kafka_err2str(err));
        pending_done(pd);
        return;
    }
    if (too_large) {
        pd->refused = err;
        process_or_retry(t, pd);
        return;
    }
    retry_later(pd, rd_kafka_err2str(err));
}

/* --- the retry list -------------------------------------------------------------- */

static void
on_retry(uv_timer_t *timer)
{
    struct traffic *t = timer->data;
    struct pending *pd = t->retry_head;
    size_t n = t->retry_count;
    t->retry_head = t->retry_tail = NULL;
    t->retry_count = 0;
    bh_warn(t->a->name, "publishing %zu line(s) again (last failure: %s)", n, t->retry_why);
    while (pd != NULL) {
        struct pending *next = pd->next;
        process_or_retry(t, pd);
        pd = next;
    }
}

/* --- connections ----------------------------------------------------------------- */

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct traffic *t = ((struct conn *)h->data)->t;
    (void)suggested;
    /* One buffer for all: libuv hands it to on_read before it reads elsewhere. */
    *buf = uv_buf_init(t->readbuf, sizeof(t->readbuf));
}

static void
on_line(void *arg, const struct bh_line *line)
{
    struct conn *c = arg;
    struct traffic *t = c->t;
    size_t keep = line->too_long && line->len > t->max_payload ? t->max_payload : line->len;
    struct pending *pd = pending_new(t, line->data, keep);
    if (pd == NULL) {
        bh_error(t->a->name, "out of memory: line %lld from %s dropped", (long long)line->number,
                 c->peer);
        return;
    }
    pd->d.cb = on_delivered;
    pd->received_at = t->read_ms;
    pd->line_no = line->number;
    pd->full_len = line->full_len;
    pd->too_long = line->too_long;
    pd->cut = line->unterminated ? c->cut : CUT_NONE;
    memcpy(pd->peer, c->peer, sizeof(pd->peer));
    process_or_retry(t, pd);
}

static void
on_conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct traffic *t = c->t;
    if (c->listed) {
        if (c->prev != NULL)
            c->prev->next = c->next;
        else
            t->conns = c->next;
        if (c->next != NULL)
            c->next->prev = c->prev;
        t->nconns--;
    }
    bh_lines_free(&c->lines);
    free(c);
    if (--t->handles == 0 && t->closing_all)
        bh_adapter_stopped(t->a);
}

/* The line the connection was in the middle of, if any, goes on with CUT. */
static void
cut_line(struct conn *c, enum cut cut)
{
    if (!bh_lines_pending(&c->lines))
        return;
    c->t->read_ms = bh_now_ms();
    c->cut = (uint8_t)cut;
    bh_lines_finish(&c->lines, on_line, c);
}

static void
close_conn(struct conn *c, enum cut cut)
{
    if (c->closing)
        return;
    c->closing = true;
    cut_line(c, cut);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void check_pressure(struct traffic *t);

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct traffic *t = c->t;
    if (nread > 0) {
        c->last_active = uv_now(t->a->hub->loop);
        t->read_ms = bh_now_ms();
        if (bh_lines_feed(&c->lines, buf->base, (size_t)nread, on_line, c) < 0) {
            bh_error(t->a->name, "out of memory for a line from %s: closing the connection",
                     c->peer);
            close_conn(c, CUT_NONE);
        }
        check_pressure(t);
        return;
    }
    if (nread == 0)
        return;
    if (nread != UV_EOF)
        bh_warn(t->a->name, "gateway %s: %s", c->peer, uv_strerror((int)nread));
    bh_info(t->a->name, "gateway %s disconnected after %lld line(s)", c->peer,
            (long long)c->lines.number);
    close_conn(c, CUT_CLOSED);
}

static void
start_reading(struct conn *c)
{
    if (c->reading || c->closing)
        return;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        bh_warn(c->t->a->name, "gateway %s: %s", c->peer, uv_strerror(rc));
        close_conn(c, CUT_CLOSED);
        return;
    }
    c->reading = true;
    c->last_active = uv_now(c->t->a->hub->loop);
}

/* --- back-pressure ------------------------------------------------------------------ */

static void
check_pressure(struct traffic *t)
{
    if (t->paused || (t->in_flight < (size_t)t->conf->max_in_flight &&
                      t->in_flight_bytes < t->conf->max_in_flight_bytes))
        return;
    t->paused = true;
    for (struct conn *c = t->conns; c != NULL; c = c->next) {
        if (c->reading)
            uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    t->pauses++;
    bh_debug(t->a->name, "%zu line(s) in flight: reading paused on %zu connection(s)", t->in_flight,
             t->nconns);
}

static void
resume_all(struct traffic *t)
{
    t->paused = false;
    for (struct conn *c = t->conns; c != NULL; c = c->next)
        start_reading(c);
    bh_debug(t->a->name, "%zu line(s) in flight: reading again", t->in_flight);
}

/* --- the listener -------------------------------------------------------------------- */

static void
on_connection(uv_stream_t *server, int status)
{
    struct traffic *t = server->data;
    if (status < 0) {
        bh_warn(t->a->name, "accept: %s", uv_strerror(status));
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->t = t;
    c->tcp.data = c;
    uv_tcp_init(t->a->hub->loop, &c->tcp);
    t->handles++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    struct sockaddr_storage sa;
    int salen = sizeof(sa);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0)
        bh_sockaddr_format((struct sockaddr *)&sa, c->peer, sizeof(c->peer));
    if (t->stopping || t->nconns >= (size_t)t->conf->max_connections) {
        uint64_t now = uv_now(t->a->hub->loop);
        if (now - t->refused_log_ms >= 1000 || t->refused_log_ms == 0) {
            bh_warn(t->a->name, "refusing gateway %s: %zu connections is max_connections", c->peer,
                    t->nconns);
            t->refused_log_ms = now;
        }
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    bh_lines_init(&c->lines, t->conf->max_line, t->max_payload);
    c->listed = true;
    c->next = t->conns;
    if (t->conns != NULL)
        t->conns->prev = c;
    t->conns = c;
    t->nconns++;
    bh_info(t->a->name, "gateway %s connected (%zu connection(s))", c->peer, t->nconns);
    if (!t->paused)
        start_reading(c);
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct traffic *t = h->data;
    if (--t->handles == 0 && t->closing_all)
        bh_adapter_stopped(t->a);
}

static void
on_idle_check(uv_timer_t *timer)
{
    struct traffic *t = timer->data;
    uint64_t now = uv_now(t->a->hub->loop);
    struct conn *c = t->conns;
    while (c != NULL) {
        struct conn *next = c->next;
        if (c->reading && now - c->last_active >= (uint64_t)t->conf->idle_timeout) {
            bh_info(t->a->name, "gateway %s idle for %lld ms: closing", c->peer,
                    (long long)t->conf->idle_timeout);
            close_conn(c, CUT_IDLE);
        }
        c = next;
    }
}

/* --- start and stop ------------------------------------------------------------------ */

static void
close_handle(struct traffic *t, uv_handle_t *h)
{
    h->data = t;
    uv_close(h, on_handle_closed);
}

/* Everything in flight is done (or given up on): close every handle. */
static void
close_all(struct traffic *t)
{
    t->closing_all = true;
    for (struct pending *pd = t->retry_head; pd != NULL;) {
        struct pending *next = pd->next;
        bh_error(t->a->name, "line %lld from %s lost at shutdown: never acknowledged by Kafka",
                 (long long)pd->line_no, pd->peer);
        pending_done(pd);
        pd = next;
    }
    t->retry_head = t->retry_tail = NULL;
    t->retry_count = 0;
    for (struct conn *c = t->conns; c != NULL; c = c->next)
        close_conn(c, CUT_NONE);
    close_handle(t, (uv_handle_t *)&t->retry_timer);
    close_handle(t, (uv_handle_t *)&t->idle_timer);
    close_handle(t, (uv_handle_t *)&t->drain_timer);
}

static void
on_drain_timeout(uv_timer_t *timer)
{
    struct traffic *t = timer->data;
    bh_warn(t->a->name,
            "%zu line(s) still unacknowledged after %lld ms: leaving them to the "
            "hub's flush",
            t->in_flight, (long long)t->a->hub->conf->kafka.flush_timeout);
    close_all(t);
}

static int
start(struct bh_adapter *a, char *errstr, size_t errstr_size)
{
    const struct traffic_conf *c = a->settings;
    uv_loop_t *loop = a->hub->loop;
    struct sockaddr_storage addr;
    struct traffic *t = calloc(1, sizeof(*t));
    int rc = -ENOMEM;
    if (t == NULL)
        return rc;
    t->a = a;
    t->conf = c;
    t->max_payload = (size_t)a->hub->conf->dead_letter.max_payload;
    t->schema = bh_schemas_find(a->hub->schemas, SCHEMA);
    if (t->schema == NULL) {
        snprintf(errstr, errstr_size, "schema %s not found in the schemas directory", SCHEMA);
        rc = -ENOENT;
        goto out;
    }
    if (bh_parse_listen(c->listen, &addr) < 0) {
        snprintf(errstr, errstr_size, "listen: '%s' is not host:port", c->listen);
        rc = -EINVAL;
        goto out;
    }
    if (bh_traffic_parser_new(&t->parser) < 0)
        goto out;
    rc = bh_traffic_avro_check(t->schema, a->hub->encoder, t->frame, &t->frame_len, errstr,
                               errstr_size);
    if (rc < 0)
        goto out;
    uv_tcp_init(loop, &t->listener);
    t->listener.data = t;
    t->handles = 1;
    rc = uv_tcp_bind(&t->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&t->listener, 511, on_connection);
    if (rc < 0) {
        snprintf(errstr, errstr_size, "listen on %s: %s", c->listen, uv_strerror(rc));
        /* The handle is closed on the loop's next turn; T must outlive it. */
        uv_close((uv_handle_t *)&t->listener, NULL);
        bh_traffic_parser_free(t->parser);
        return rc;
    }
    int len = sizeof(addr);
    uv_tcp_getsockname(&t->listener, (struct sockaddr *)&addr, &len);
    bh_sockaddr_format((struct sockaddr *)&addr, t->source, sizeof(t->source));
    uv_timer_init(loop, &t->retry_timer);
    uv_timer_init(loop, &t->idle_timer);
    uv_timer_init(loop, &t->drain_timer);
    t->retry_timer.data = t->idle_timer.data = t->drain_timer.data = t;
    t->handles += 3;
    if (c->idle_timeout > 0) {
        uint64_t every = (uint64_t)c->idle_timeout / 4 > 50 ? (uint64_t)c->idle_timeout / 4 : 50;
        uv_timer_start(&t->idle_timer, on_idle_check, every, every);
    }
    a->priv = t;
    bh_info(a->name, "traffic gateways on tcp://%s -> %s", t->source, c->topic);
    return 0;
out:
    bh_traffic_parser_free(t->parser);
    free(t);
    return rc;
}

static void
stop(struct bh_adapter *a)
{
    struct traffic *t = a->priv;
    t->stopping = true;
    close_handle(t, (uv_handle_t *)&t->listener);
    uv_timer_stop(&t->idle_timer);
    for (struct conn *c = t->conns; c != NULL; c = c->next) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
        cut_line(c, CUT_STOPPED);
    }
    bh_info(a->name,
            "stopping: %zu connection(s), %zu line(s) in flight; back-pressure paused "
            "reading %llu time(s)",
            t->nconns, t->in_flight, (unsigned long long)t->pauses);
    if (t->in_flight == 0) {
        close_all(t);
        return;
    }
    uv_timer_start(&t->drain_timer, on_drain_timeout, (uint64_t)a->hub->conf->kafka.flush_timeout,
                   0);
}

static void
destroy(struct bh_adapter *a)
{
    struct traffic *t = a->priv;
    if (t == NULL)
        return;
    while (t->free_slots != NULL) {
        struct pending *pd = t->free_slots;
        t->free_slots = pd->next;
        free(pd);
    }
    bh_traffic_parser_free(t->parser);
    free(t->out);
    free(t);
    a->priv = NULL;
}

static void
topics(const struct bh_adapter *a, const char **out, size_t cap)
{
    const struct traffic_conf *c = a->settings;
    if (cap > 1) {
        out[0] = c->topic;
        out[1] = NULL;
    }
}

#define KEY(field) offsetof(struct traffic_conf, field)

static const struct bh_conf_key traffic_keys[] = {
    {.name = "listen",
     .type = BH_CONF_STRING,
     .offset = KEY(listen),
     .def = "127.0.0.1:9400",
     .doc = "Address and port the gateways connect to (host:port, [v6]:port, :port)."},
    {.name = "topic",
     .type = BH_CONF_STRING,
     .offset = KEY(topic),
     .def = "dept.traffic",
     .doc = "Topic the events are published to, keyed by block."},
    {.name = "max_line",
     .type = BH_CONF_SIZE,
     .offset = KEY(max_line),
     .def = "64KiB",
     .min = 64,
     .max = 16 * 1024 * 1024,
     .doc = "Longest line accepted; a longer one is dead-lettered as too_large with its first "
            "dead_letter.max_payload bytes, and is never held whole in memory."},
    {.name = "max_in_flight",
     .type = BH_CONF_INT,
     .offset = KEY(max_in_flight),
     .def = "10000",
     .min = 1,
     .max = 10000000,
     .doc = "Lines published (records and dead letters) and not yet acknowledged by Kafka at "
            "which every connection stops reading; reading resumes below half of it."},
    {.name = "max_in_flight_bytes",
     .type = BH_CONF_SIZE,
     .offset = KEY(max_in_flight_bytes),
     .def = "32MiB",
     .min = 64 * 1024,
     .max = 4LL * 1024 * 1024 * 1024,
     .doc = "The same bound on the bytes of those lines."},
    {.name = "max_connections",
     .type = BH_CONF_INT,
     .offset = KEY(max_connections),
     .def = "256",
     .min = 1,
     .max = 100000,
     .doc = "Gateway connections at once; more are closed as they arrive."},
    {.name = "idle_timeout",
     .type = BH_CONF_DURATION,
     .offset = KEY(idle_timeout),
     .def = "0",
     .min = 0,
     .max = 7LL * 24 * 3600 * 1000,
     .doc = "A connection that sends nothing for this long is closed (0: never). Time spent "
            "paused by back-pressure does not count."},
    {0},
};

const struct bh_adapter_type bh_adapter_type_traffic = {
    .name = "traffic",
    .doc = "Traffic gateway events: JSON lines over TCP (FEEDS.md, Traffic).",
    .conf = {.keys = traffic_keys, .size = sizeof(struct traffic_conf)},
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .topics = topics,
};
