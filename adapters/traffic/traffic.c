/*
 * The traffic adapter: a live TCP stream of JSON lines (docs/feeds.md, section 4).
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
 * replaced after a fatal error) the line is processed again a second later.
 *
 * Back-pressure: when the pending lines reach max_in_flight (or their bytes
 * max_in_flight_bytes) every connection stops reading; they all read again
 * once both are down to half. The socket buffers fill and TCP holds the
 * gateways back. Memory is bounded by those two settings, plus per
 * connection max(max_line, dead_letter.max_payload) for a line split across
 * reads, plus one 64 KiB read buffer shared by all connections (the lines of
 * one read are all processed before the next read).
 *
 * Too large for Kafka: a record the producer refuses at once (its
 * message.max.bytes) is dead-lettered as too_large. A delivery report saying
 * the broker found it too large may be about the batch it travelled in (the
 * broker refuses a whole batch), so such a line gets a second try alone: one
 * such line in flight at a time; refused again, it is dead-lettered.
 *
 * Who may connect: at most max_connections at once, and at most
 * max_connections_per_peer from one address, so one host cannot take every
 * slot; a connection that sends nothing for idle_timeout is closed. Refused
 * connections are closed at once and logged at most once a second (with a
 * count of those not logged).
 *
 * A connection that ends (closed by the gateway, idle too long, or blockhub
 * stopping) in the middle of a line hands that last line over all the same:
 * published if it is a whole JSON object, else dead-lettered (invalid_json,
 * with a detail saying the connection ended before the line did).
 *
 * stop(): whatever the kernel had already taken from the gateways is
 * processed, nothing more. Connections still waiting in the listen backlog
 * are accepted, the listener is closed, and each connection is drained of
 * the bytes its socket held at that moment (paused ones too, still within
 * max_in_flight: one connection at a time, going on as Kafka acknowledges),
 * then its cut-off line goes on and it is closed. Once every connection is
 * drained and every pending line acknowledged (at most kafka.flush_timeout),
 * the timers close and bh_component_stopped() follows.
 *
 * Who is a gateway (auth, docs/feeds.md 4.4): with auth token, the first line
 * of a connection must be a hello naming one of the adapter's tokens; any
 * other first line, a wrong token, or no hello within hello_timeout gets one
 * error line back and the connection is closed, nothing of it published.
 * With auth none (which the config must say) a hello is optional.
 *
 * Acknowledgements: a gateway whose hello says "ack": true gets lines back,
 * {"ack":N}, each saying that every line up to N of this connection (the
 * hello is line 1; blank lines count) is in Kafka or dead-lettered. A
 * connection's pending lines are listed in line order (struct pending's
 * cprev/cnext), so N is the line before the oldest one not done, or every
 * line read when none is left. Acks are written once per turn of the loop
 * (a check handle), one write at a time per connection, so a gateway that
 * does not read them costs one small buffer. A line given up on (lost at
 * shutdown, or its dead letter too large) closes its connection instead of
 * being acknowledged, and a line cut off by the connection's end is not
 * published at all: the gateway sends both again. At stop an acknowledging
 * connection, once drained, stays open until its lines are acknowledged and
 * its last ack is written. Gateways that do not ask get no line back but the
 * answer to their hello, if they sent one.
 *
 * TLS (the tls section): each connection is a session over memory BIOs
 * (hub/tls.h) between the socket and the framer: ciphertext read is fed in,
 * plaintext comes out to the lines, and what blockhub writes (the handshake,
 * hello answers, acks, refusals) is encrypted and written from buffers of its
 * own. A failed handshake (no certificate where one is required, a
 * certificate of another CA, bytes that are not TLS) closes the connection,
 * counted and logged like a refusal. The verified client certificate's
 * subject goes into every record of the connection (tls_subject), and with
 * subjects set it must be one of them; auth tls takes the certificate as the
 * gateway's credential (no hello needed).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "hub.h"
#include "log.h"
#include "publish.h"
#include "traffic_avro.h"
#include "traffic_event.h"
#include "traffic_hello.h"
#include "traffic_lines.h"
#include "tls.h"
#include "utf8.h"

#define SCHEMA      "blockhub.traffic.TrafficEvent"
#define READ_BUFFER (64 * 1024)
#define SLOT        512  /* a pending line this small comes from the free list */
#define RETRY_MS    1000 /* a failed delivery is retried after this */
#define PEER_MAX    48   /* "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535" */
#define REFUSAL_LOG 1000 /* at most one line about refused connections this often (ms) */
#define LINGER_MS   1000 /* a refused connection is read (and dropped) this long for its close */
/* Besides a line's strings (the event id twice: in the record and a header),
 * what a record carries: the other fields, block id, peer, key, header names. */
#define RECORD_OVERHEAD 1024

struct traffic_conf {
    char *listen;
    char *topic;
    uint64_t max_line;
    int64_t max_in_flight;
    uint64_t max_in_flight_bytes;
    int64_t max_connections;
    int64_t max_connections_per_peer;
    int64_t idle_timeout;
    char *auth; /* "token", "tls" or "none"; no default */
    struct bh_strlist tokens;
    int64_t hello_timeout;
    struct bh_tls_conf tls;
    struct bh_strlist subjects; /* client certificate subjects allowed; empty: any verified */
    struct bh_kvlist kafka_properties;
};

/* A client certificate's subject, shared by a connection and its pending lines. */
struct subject {
    uint32_t refs;
    char s[];
};

static struct subject *
subject_get(struct subject *s)
{
    if (s != NULL)
        s->refs++;
    return s;
}

static void
subject_put(struct subject *s)
{
    if (s != NULL && --s->refs == 0)
        free(s);
}

/* Why a connection ended while a line was still open. */
enum cut { CUT_NONE, CUT_CLOSED, CUT_IDLE, CUT_STOPPED };

static const char *const cut_text[] = {
    [CUT_CLOSED] = "the gateway closed the connection before the end of the line",
    [CUT_IDLE] = "the connection was closed as idle before the end of the line",
    [CUT_STOPPED] = "blockhub stopped before the end of the line",
};

struct traffic;
struct conn;

/* One line that produced a record or a dead letter, until Kafka acknowledges it. */
struct pending {
    struct bh_delivery d; /* first: the delivery callback hands it back */
    struct traffic *t;
    struct pending *next;          /* in the retry list or the free list */
    struct conn *conn;             /* an acknowledging connection it came from, while open */
    struct subject *subject;       /* its connection's client certificate, if any */
    struct pending *cprev, *cnext; /* in that connection's pending lines, in line order */
    int64_t received_at;
    int64_t line_no;
    uint64_t full_len;
    size_t len;        /* bytes of the line kept in data */
    size_t record_len; /* of the record the producer found too large */
    int refused;       /* Kafka refused the record: dead-letter it as too large */
    bool too_long;
    bool dead;  /* what was produced is a dead letter */
    bool alone; /* produced as the one line on its second try after "too large" */
    uint8_t cut;
    char peer[PEER_MAX];
    char data[]; /* the line (of a too long one, its first max_payload bytes) */
};

#define SLOT_DATA (SLOT - offsetof(struct pending, data))

struct conn {
    uv_tcp_t tcp;
    struct traffic *t;
    struct conn *prev, *next;
    struct bh_traffic_lines lines;
    char peer[PEER_MAX];
    uint8_t addr[16];     /* the peer's address (IPv4 as ::ffff:a.b.c.d), for the per-peer count */
    uint64_t last_active; /* uv_now() of the last read */
    uint64_t drain_left;  /* stopping: bytes its socket held at stop() still to read */
    bool listed;          /* in t->conns and counted against its peer */
    uint8_t cut;          /* why the stream ends, for the line it cuts off */
    bool reading;
    bool closing;
    bool draining; /* stopping: not yet drained */
    /* the hello and acknowledgements (see the top of the file) */
    bool greeted;        /* the first line is behind it: a hello, or (auth none) an event */
    bool refused;        /* a refusal was written: nothing more is taken, it closes */
    bool lingering;      /* refused: its write side shut, what it sends dropped until it closes */
    uint64_t refused_at; /* uv_now() of the refusal */
    uv_shutdown_t shut;
    bool ack;             /* the gateway asked for acknowledgements */
    bool say_hello;       /* the answer to its hello is still to be written */
    bool writing;         /* a write to the gateway is under way */
    bool close_after_ack; /* stopping: drained, closes once its lines are acknowledged */
    uint64_t accepted;    /* uv_now() at accept, for hello_timeout */
    int64_t acked;        /* the last N written in an ack */
    struct pending *pend_head, *pend_tail;
    uv_write_t wreq;
    char wbuf[64];
    char gateway[BH_HELLO_GATEWAY_MAX + 1]; /* as the hello names it */
    struct bh_tls_session *tls;             /* NULL: plain TCP */
    struct subject *subject;                /* the verified client certificate's, if any */
    uint32_t tls_writes;                    /* TLS: writes of ciphertext under way */
    bool tls_open;                          /* TLS: the handshake is done */
};

/* TLS: ciphertext on its way to the socket. */
struct tls_write {
    uv_write_t req;
    char data[];
};

/* Connections from one address. */
struct peer {
    struct peer *next;
    uint8_t addr[16];
    uint32_t conns;
};

struct traffic {
    struct bh_component *a;
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
    uv_check_t ack_check; /* writes the acknowledgements due, once per turn of the loop */
    char source[80];      /* the address bound */
    struct conn *conns;
    size_t nconns;
    struct peer **peers; /* connections per address, a hash table (peer_slot) */
    size_t peer_mask;    /* buckets - 1 */
    uint32_t peer_seed;
    size_t draining;     /* stopping: connections not yet drained */
    size_t handles;      /* open uv handles, the listener and timers included */
    struct bh_flow flow; /* the lines read and not yet done with, and their bytes */
    struct pending *retry_head, *retry_tail;
    size_t retry_count;
    struct pending *suspect_head, *suspect_tail; /* "too large": waiting to be tried alone */
    bool suspect_out;                            /* one of them is being tried */
    struct pending *free_slots;
    char retry_why[128];
    int64_t read_ms; /* wall clock of the read being processed */
    uint64_t refused_log_ms;
    uint64_t refused_quiet; /* refusals not logged since the last line about one */
    uint64_t refused;       /* connections refused in all */
    uint64_t unauthorized;  /* connections refused for their hello (or its absence) */
    uint64_t acks_sent;
    struct bh_tls_server tls; /* the running TLS context; .ctx NULL: plain TCP */
    uint64_t tls_handshakes, tls_refused;
    char plainbuf[16384]; /* TLS: plaintext of the read being processed */
    bool stopping;
    bool in_drain; /* drain_all() is running */
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
        /* The next line's slot, freed by a delivery report long ago and out of
         * the cache by now: its first lines are loaded while this line is
         * parsed and produced, not when the next one waits for them. */
        if (pd->next != NULL)
            for (size_t at = 0; at < offsetof(struct pending, data) + 192; at += 64)
                __builtin_prefetch((const char *)pd->next + at, 1, 1);
    } else {
        pd = malloc(len <= SLOT_DATA ? SLOT : offsetof(struct pending, data) + len);
        if (pd == NULL)
            return NULL;
    }
    memset(pd, 0, offsetof(struct pending, data));
    pd->t = t;
    pd->len = len;
    memcpy(pd->data, data, len);
    bh_flow_hold(&t->flow, len);
    return pd;
}

static void resume_all(struct traffic *t);
static void drain_all(struct traffic *t);
static void close_all(struct traffic *t);
static void close_conn(struct conn *c, enum cut cut);
static void on_ack_check(uv_check_t *h);

/* --- a connection's pending lines, and its acknowledgements ---------------------- */

/* Every line of C up to this one is done with. */
static int64_t
ack_point(const struct conn *c)
{
    return c->pend_head != NULL ? c->pend_head->line_no - 1 : c->lines.number;
}

/* Acknowledgements may be due: write them at the end of this turn of the loop. */
static void
arm_acks(struct traffic *t)
{
    if (!t->closing_all && !uv_is_active((uv_handle_t *)&t->ack_check))
        uv_check_start(&t->ack_check, on_ack_check);
}

static void
conn_link(struct conn *c, struct pending *pd)
{
    pd->conn = c;
    pd->cnext = NULL;
    pd->cprev = c->pend_tail;
    if (c->pend_tail != NULL)
        c->pend_tail->cnext = pd;
    else
        c->pend_head = pd;
    c->pend_tail = pd;
}

static void
conn_unlink(struct pending *pd)
{
    struct conn *c = pd->conn;
    if (pd->cprev != NULL)
        pd->cprev->cnext = pd->cnext;
    else
        c->pend_head = pd->cnext;
    if (pd->cnext != NULL)
        pd->cnext->cprev = pd->cprev;
    else
        c->pend_tail = pd->cprev;
    pd->conn = NULL;
    pd->cprev = pd->cnext = NULL;
}

/* The end of a write to C (STATUS as libuv gives it). */
static void
written(struct conn *c, int status)
{
    if (status == UV_ECANCELED || c->closing)
        return;
    if (status < 0) {
        bh_warn(c->t->a->name, "gateway %s: cannot write to it: %s; closing", c->peer,
                uv_strerror(status));
        close_conn(c, CUT_CLOSED);
        return;
    }
    arm_acks(c->t); /* more may have come due meanwhile */
}

static void
on_written(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    c->writing = false;
    written(c, status);
}

static void
on_tls_written(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    free(w); /* the struct tls_write it begins */
    if (--c->tls_writes == 0)
        c->writing = false;
    written(c, status);
}

/* TLS: write the ciphertext waiting in C's session. 0, or a libuv error (C is to be closed). */
static int
tls_flush(struct conn *c)
{
    while (bh_tls_pending(c->tls) > 0) {
        size_t n = bh_tls_pending(c->tls);
        struct tls_write *w = malloc(sizeof(*w) + n);
        if (w == NULL)
            return UV_ENOMEM;
        n = bh_tls_take(c->tls, w->data, n);
        w->req.data = c;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
        int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_tls_written);
        if (rc < 0) {
            free(w);
            return rc;
        }
        c->tls_writes++;
        c->writing = true;
    }
    return 0;
}

/* TLS: what the session holds for the socket, if the socket takes it now (C is closing). */
static void
tls_flush_now(struct conn *c)
{
    char buf[4096];
    while (bh_tls_pending(c->tls) > 0) {
        size_t n = bh_tls_take(c->tls, buf, sizeof(buf));
        uv_buf_t b = uv_buf_init(buf, (unsigned)n);
        if (uv_try_write((uv_stream_t *)&c->tcp, &b, 1) != (int)n)
            return;
    }
}

/* DATA for C at once, if its socket takes it now: true when it did. */
static bool
send_now(struct conn *c, const char *data, size_t n)
{
    if (c->tls != NULL) {
        if (!c->tls_open || c->writing || bh_tls_write(c->tls, data, n) != (ssize_t)n)
            return false;
        tls_flush_now(c);
        return bh_tls_pending(c->tls) == 0;
    }
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    return uv_try_write((uv_stream_t *)&c->tcp, &b, 1) == (int)n;
}

/* Write what C is owed: the answer to its hello, the latest acknowledgement. */
static void
flush_conn(struct conn *c)
{
    struct traffic *t = c->t;
    if (c->writing || c->closing || c->refused)
        return;
    size_t n = 0;
    if (c->say_hello) {
        n += (size_t)snprintf(c->wbuf, sizeof(c->wbuf), "{\"hello\":1,\"ack\":%s}\n",
                              c->ack ? "true" : "false");
        c->say_hello = false;
    }
    int64_t upto = ack_point(c);
    if (c->ack && upto > c->acked) {
        n +=
            (size_t)snprintf(c->wbuf + n, sizeof(c->wbuf) - n, "{\"ack\":%lld}\n", (long long)upto);
        c->acked = upto;
        t->acks_sent++;
    }
    if (n == 0)
        return;
    int rc;
    if (c->tls != NULL) {
        rc = bh_tls_write(c->tls, c->wbuf, n) == (ssize_t)n ? tls_flush(c) : UV_EPIPE;
    } else {
        uv_buf_t b = uv_buf_init(c->wbuf, (unsigned)n);
        c->wreq.data = c;
        rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
        c->writing = rc == 0;
    }
    if (rc < 0) {
        bh_warn(t->a->name, "gateway %s: cannot write to it: %s; closing", c->peer,
                uv_strerror(rc));
        close_conn(c, CUT_CLOSED);
    }
}

static void
on_ack_check(uv_check_t *h)
{
    struct traffic *t = h->data;
    uv_check_stop(h);
    for (struct conn *c = t->conns; c != NULL; c = c->next)
        if (c->ack || c->say_hello)
            flush_conn(c);
}

/* Stopping, every connection drained and every line acknowledged: close the rest. */
static void
maybe_stopped(struct traffic *t)
{
    if (t->stopping && !t->closing_all && !t->in_drain && t->draining == 0 && t->flow.held == 0)
        close_all(t);
}

/* PD is done with (acknowledged, a heartbeat, or given up on). */
static void
pending_done(struct pending *pd)
{
    struct traffic *t = pd->t;
    struct conn *c = pd->conn;
    if (c != NULL) {
        conn_unlink(pd);
        arm_acks(t);
        if (c->close_after_ack && c->pend_head == NULL)
            close_conn(c, CUT_NONE); /* writes its last ack */
    }
    bh_flow_release(&t->flow, pd->len);
    subject_put(pd->subject);
    pd->subject = NULL;
    if (pd->len <= SLOT_DATA) {
        pd->next = t->free_slots;
        t->free_slots = pd;
    } else {
        free(pd);
    }
    if (!t->closing_all && bh_flow_room(&t->flow)) {
        if (t->stopping)
            drain_all(t);
        else
            resume_all(t);
    }
    maybe_stopped(t);
}

/*
 * PD is given up on: its connection, if it asked for acknowledgements, is
 * closed first, so that no ack covers it and the gateway sends it again.
 */
static void
lose(struct pending *pd)
{
    if (pd->conn != NULL)
        close_conn(pd->conn, CUT_NONE);
    pending_done(pd);
}

static void
retry_later(struct pending *pd, const char *why)
{
    struct traffic *t = pd->t;
    if (t->closing_all) {
        bh_error(t->a->name, "line %lld from %s lost at shutdown: %s", (long long)pd->line_no,
                 pd->peer, why);
        lose(pd);
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
    struct bh_traffic_extra x = {blk->id, pd->received_at, pd->peer,
                                 pd->subject != NULL ? pd->subject->s : NULL};
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

/* 0 produced, else -ENOMEM or bh_publish's error. */
static int
produce_record(struct traffic *t, struct pending *pd, const struct bh_traffic_event *ev,
               const struct bh_block *blk)
{
    const void *data;
    size_t len;
    int rc = encode(t, pd, ev, blk, &data, &len);
    if (rc < 0)
        return rc;
    pd->record_len = len;
    return bh_publish(t->a, t->conf->topic, blk->id, strlen(blk->id), data, len, ev->event_id.s,
                      ev->event_id.len, &pd->d);
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
    return bh_publish_dead(t->a, r, detail, &origin, pd->data, len, &pd->d);
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
    if (pd->refused == -EMSGSIZE) {
        snprintf(why, sizeof(why),
                 "the record (%zu bytes, the event id again in a header) is larger than Kafka "
                 "takes: kafka message.max.bytes is %zu",
                 pd->record_len, bh_kafka_max_message(bh_component_kafka(t->a)));
        return dead_letter(t, pd, BH_DLQ_TOO_LARGE, why);
    }
    if (pd->refused) {
        snprintf(why, sizeof(why), "Kafka refused the record (%zu bytes), also when sent alone: %s",
                 pd->record_len, rd_kafka_err2str((rd_kafka_resp_err_t)pd->refused));
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
    if (rc == -EMSGSIZE) {
        /* Over the producer's message.max.bytes: it never will fit. */
        pd->refused = -EMSGSIZE;
        return process(t, pd);
    }
    return rc;
}

/* Process PD: 0 when something was produced for it, else it is done with or to be retried. */
static int
process_or_retry(struct traffic *t, struct pending *pd)
{
    int rc = process(t, pd);
    if (rc != 0)
        pd->alone = false;
    if (rc == 1) {
        pending_done(pd);
    } else if (rc == -EMSGSIZE && pd->dead) {
        /* Its dead letter cannot fit either: retrying would never end. */
        bh_error(t->a->name,
                 "line %lld from %s lost: its dead letter is larger than kafka "
                 "message.max.bytes (%zu); lower dead_letter.max_payload",
                 (long long)pd->line_no, pd->peer, bh_kafka_max_message(bh_component_kafka(t->a)));
        lose(pd);
    } else if (rc < 0) {
        retry_later(pd, strerror(-rc));
    }
    return rc;
}

/* --- "too large" from the broker: a second try, one line at a time -------------- */

static void
next_suspect(struct traffic *t)
{
    while (!t->suspect_out && t->suspect_head != NULL && !t->closing_all) {
        struct pending *pd = t->suspect_head;
        t->suspect_head = pd->next;
        if (t->suspect_head == NULL)
            t->suspect_tail = NULL;
        pd->alone = true;
        t->suspect_out = true;
        if (process_or_retry(t, pd) != 0)
            t->suspect_out = false;
    }
}

static void
suspect(struct pending *pd)
{
    struct traffic *t = pd->t;
    if (t->closing_all) {
        bh_error(t->a->name, "line %lld from %s lost at shutdown: Kafka refused it as too large",
                 (long long)pd->line_no, pd->peer);
        lose(pd);
        return;
    }
    if (t->suspect_head == NULL && !t->suspect_out)
        bh_warn(t->a->name,
                "Kafka refused line %lld from %s as too large (its record: %zu bytes): trying "
                "such lines again one at a time (is the topic's max.message.bytes lower than "
                "kafka message.max.bytes, %zu?)",
                (long long)pd->line_no, pd->peer, pd->record_len,
                bh_kafka_max_message(bh_component_kafka(t->a)));
    pd->next = NULL;
    if (t->suspect_tail != NULL)
        t->suspect_tail->next = pd;
    else
        t->suspect_head = pd;
    t->suspect_tail = pd;
    next_suspect(t);
}

static void
on_delivered(struct bh_delivery *d, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct pending *pd = (struct pending *)d;
    struct traffic *t = pd->t;
    bool alone = pd->alone;
    (void)partition;
    (void)offset;
    bh_published(t->a, d, err);
    pd->alone = false;
    if (alone)
        t->suspect_out = false;
    bool too_large = err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
                     err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        pending_done(pd);
    } else if (too_large && pd->dead) {
        bh_error(t->a->name, "dead letter for line %lld from %s refused by Kafka: %s",
                 (long long)pd->line_no, pd->peer, rd_kafka_err2str(err));
        lose(pd);
    } else if (too_large && alone) {
        pd->refused = err;
        process_or_retry(t, pd);
    } else if (too_large) {
        /* Perhaps only its batch was too large: try it again by itself. */
        suspect(pd);
    } else {
        retry_later(pd, rd_kafka_err2str(err));
    }
    if (alone)
        next_suspect(t);
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

/* --- reading ---------------------------------------------------------------------- */

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct traffic *t = ((struct conn *)h->data)->t;
    (void)suggested;
    /* One buffer for all: libuv hands it to on_read before it reads elsewhere. */
    *buf = uv_buf_init(t->readbuf, sizeof(t->readbuf));
}

/* At most one line about refused gateways every REFUSAL_LOG ms. */
static void
log_refusal(struct traffic *t, const char *peer, const char *why)
{
    uint64_t now = uv_now(t->a->hub->loop);
    t->refused++;
    if (t->refused_log_ms == 0 || now - t->refused_log_ms >= REFUSAL_LOG) {
        if (t->refused_quiet > 0)
            bh_warn(t->a->name,
                    "refusing gateway %s: %s (%llu more refused since the last such line)", peer,
                    why, (unsigned long long)t->refused_quiet);
        else
            bh_warn(t->a->name, "refusing gateway %s: %s", peer, why);
        t->refused_log_ms = now != 0 ? now : 1;
        t->refused_quiet = 0;
    } else {
        t->refused_quiet++;
    }
}

/*
 * C's hello (or its absence) is not accepted: one error line says why (WHY is
 * blockhub's own ASCII text), nothing more of C is read or published, and it
 * is closed once the bytes read so far are framed.
 */
static void
refuse_gateway(struct conn *c, const char *why)
{
    struct traffic *t = c->t;
    char line[400];
    int n = snprintf(line, sizeof(line), "{\"error\":\"refused\",\"detail\":\"");
    for (const char *p = why; *p && n < (int)sizeof(line) - 4; p++)
        line[n++] = *p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e
                        ? '?'
                        : *p;
    n += snprintf(line + n, sizeof(line) - (size_t)n, "\"}\n");
    if (n > (int)sizeof(line) - 1)
        n = (int)sizeof(line) - 1;
    (void)send_now(c, line, (size_t)n); /* the first bytes written: they fit */
    c->refused = true;
    c->refused_at = uv_now(t->a->hub->loop);
    t->unauthorized++;
    log_refusal(t, c->peer, why);
}

/*
 * The first line of C: a hello is taken (and answered), anything else is an
 * event where auth is none. True when LINE is to be processed as an event.
 */
static bool
greet(struct conn *c, const struct bh_traffic_line *line)
{
    struct traffic *t = c->t;
    struct bh_traffic_hello h;
    char why[256];
    bool token_auth = strcmp(t->conf->auth, "token") == 0;
    enum bh_hello_kind k =
        line->too_long || line->unterminated
            ? BH_HELLO_NOT
            : bh_traffic_hello_parse(line->data, line->len, &h, why, sizeof(why));
    c->greeted = true;
    if (k == BH_HELLO_NOT && !token_auth)
        return true; /* no hello: today's protocol */
    if (k == BH_HELLO_NOT) {
        refuse_gateway(c, "the first line must be a hello with a token (auth is token)");
        return false;
    }
    if (k == BH_HELLO_BAD) {
        refuse_gateway(c, why);
        return false;
    }
    bool ok = !token_auth ||
              (h.has_token &&
               bh_traffic_token_ok(h.token, h.token_len, t->conf->tokens.v, t->conf->tokens.n));
    explicit_bzero(h.token, sizeof(h.token));
    if (!ok) {
        refuse_gateway(c, h.has_token ? "the hello's token is not one of this adapter's tokens"
                                      : "the hello has no token (auth is token)");
        return false;
    }
    c->ack = h.ack;
    c->acked = 0;
    memcpy(c->gateway, h.gateway, sizeof(c->gateway));
    c->say_hello = true;
    arm_acks(t);
    bh_info(t->a->name, "gateway %s%s%s%s: hello, acknowledgements %s", c->peer,
            c->gateway[0] ? " (" : "", c->gateway, c->gateway[0] ? ")" : "", c->ack ? "on" : "off");
    return false;
}

static void
on_line(void *arg, const struct bh_traffic_line *line)
{
    struct conn *c = arg;
    struct traffic *t = c->t;
    if (c->refused || (c->ack && c->closing))
        return; /* (an acknowledging gateway sends what follows a lost line again) */
    if (!c->greeted && !greet(c, line))
        return;
    size_t keep = line->too_long && line->len > t->max_payload ? t->max_payload : line->len;
    struct pending *pd = pending_new(t, line->data, keep);
    if (pd == NULL) {
        bh_error(t->a->name, "out of memory: line %lld from %s dropped", (long long)line->number,
                 c->peer);
        if (c->ack) /* so that no ack covers it: the gateway sends it again */
            refuse_gateway(c, "out of memory");
        return;
    }
    if (c->ack)
        conn_link(c, pd);
    pd->subject = subject_get(c->subject);
    pd->d.cb = on_delivered;
    pd->received_at = t->read_ms;
    pd->line_no = line->number;
    pd->full_len = line->full_len;
    pd->too_long = line->too_long;
    pd->cut = line->unterminated ? c->cut : CUT_NONE;
    memcpy(pd->peer, c->peer, sizeof(pd->peer));
    process_or_retry(t, pd);
}

/* --- connections per peer address ------------------------------------------------- */

static void
peer_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

/* The address alone, as text: "127.0.0.2", "::1". */
static void
peer_host(const uint8_t key[16], char *buf, size_t n)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    bool v4 = memcmp(key, v4mapped, 12) == 0;
    if (inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? key + 12 : key, buf, (socklen_t)n) == NULL)
        snprintf(buf, n, "?");
}

/* Where the count of KEY is, or belongs. */
static struct peer **
peer_slot(struct traffic *t, const uint8_t key[16])
{
    uint32_t h = 2166136261u ^ t->peer_seed; /* FNV-1a, seeded */
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    struct peer **pp = &t->peers[h & t->peer_mask];
    while (*pp != NULL && memcmp((*pp)->addr, key, 16) != 0)
        pp = &(*pp)->next;
    return pp;
}

static uint32_t
peer_conns(struct traffic *t, const uint8_t key[16])
{
    struct peer *pe = *peer_slot(t, key);
    return pe != NULL ? pe->conns : 0;
}

static int
peer_add(struct traffic *t, const uint8_t key[16])
{
    struct peer **pp = peer_slot(t, key);
    if (*pp == NULL) {
        struct peer *pe = calloc(1, sizeof(*pe));
        if (pe == NULL)
            return -ENOMEM;
        memcpy(pe->addr, key, 16);
        *pp = pe;
    }
    (*pp)->conns++;
    return 0;
}

static void
peer_remove(struct traffic *t, const uint8_t key[16])
{
    struct peer **pp = peer_slot(t, key);
    struct peer *pe = *pp;
    if (pe != NULL && --pe->conns == 0) {
        *pp = pe->next;
        free(pe);
    }
}

/* --- connections ----------------------------------------------------------------- */

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
        peer_remove(t, c->addr);
    }
    for (struct pending *pd = c->pend_head; pd != NULL;) {
        struct pending *next = pd->cnext;
        pd->conn = NULL;
        pd->cprev = pd->cnext = NULL;
        pd = next;
    }
    bh_traffic_lines_free(&c->lines);
    bh_tls_session_free(c->tls);
    subject_put(c->subject);
    free(c);
    if (--t->handles == 0 && t->closing_all)
        bh_component_stopped(t->a);
}

/* The line the connection was in the middle of, if any, goes on with CUT. */
static void
cut_line(struct conn *c, enum cut cut)
{
    /* An acknowledging gateway sends a line cut off again: it was never acknowledged. */
    if (c->ack || c->refused || !bh_traffic_lines_pending(&c->lines))
        return;
    c->t->read_ms = bh_now_ms();
    c->cut = (uint8_t)cut;
    bh_traffic_lines_finish(&c->lines, on_line, c);
}

static void
close_conn(struct conn *c, enum cut cut)
{
    if (c->closing)
        return;
    c->closing = true;
    cut_line(c, cut);
    if (c->ack && !c->writing && !c->refused && ack_point(c) > c->acked) {
        /* The last ack, if the socket takes it now; else the gateway sends those lines again. */
        char line[40];
        int64_t upto = ack_point(c);
        int n = snprintf(line, sizeof(line), "{\"ack\":%lld}\n", (long long)upto);
        if (send_now(c, line, (size_t)n)) {
            c->acked = upto;
            c->t->acks_sent++;
        }
    }
    if (c->tls != NULL && c->tls_open && !c->writing) {
        bh_tls_close(c->tls); /* close_notify, if the socket takes it */
        tls_flush_now(c);
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void check_pressure(struct traffic *t);
static void start_reading(struct conn *c);

static void
on_shut(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0 && status != UV_ECANCELED && !c->closing)
        close_conn(c, CUT_NONE);
}

/*
 * C was refused: its refusal line goes out with a FIN, and what the gateway
 * still sends is read and dropped until it closes (or LINGER_MS pass), so
 * that a close with bytes unread (a reset) does not destroy the line first.
 */
static void
linger(struct conn *c)
{
    if (c->lingering || c->closing)
        return;
    c->lingering = true;
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shut) < 0) {
        close_conn(c, CUT_NONE);
        return;
    }
    start_reading(c);
}

/* TLS: C's handshake is done: its certificate's subject, and whether it may send. */
static void
tls_opened(struct conn *c)
{
    struct traffic *t = c->t;
    c->tls_open = true;
    t->tls_handshakes++;
    const char *subj = bh_tls_subject(c->tls);
    if (subj != NULL && subj[0] != '\0') {
        size_t n = strlen(subj);
        c->subject = malloc(sizeof(*c->subject) + n + 1);
        if (c->subject == NULL) {
            refuse_gateway(c, "out of memory");
            return;
        }
        c->subject->refs = 1;
        memcpy(c->subject->s, subj, n + 1);
    }
    if (t->conf->subjects.n > 0) {
        bool ok = false;
        for (size_t i = 0; c->subject != NULL && i < t->conf->subjects.n; i++)
            ok |= strcmp(t->conf->subjects.v[i], c->subject->s) == 0;
        if (!ok) {
            refuse_gateway(c, "the client certificate's subject is not one of subjects");
            return;
        }
    }
    bh_debug(t->a->name, "gateway %s: TLS, certificate %s", c->peer,
             c->subject != NULL ? c->subject->s : "(none)");
}

/*
 * N bytes read from C's socket: framed into lines, through the TLS session
 * first if C has one. 0; 1 when the gateway closed its TLS session (as an
 * end of stream); or a negative errno when C is to be closed now.
 */
static int
conn_input(struct conn *c, const char *data, size_t n)
{
    struct traffic *t = c->t;
    if (c->tls == NULL)
        return bh_traffic_lines_feed(&c->lines, data, n, on_line, c) < 0 ? -ENOMEM : 0;
    if (bh_tls_feed(c->tls, data, n) < 0)
        return -ENOMEM;
    for (;;) {
        ssize_t got = bh_tls_read(c->tls, t->plainbuf, sizeof(t->plainbuf));
        if (!c->tls_open && bh_tls_state(c->tls) == BH_TLS_OPEN)
            tls_opened(c);
        if (got < 0) {
            char why[300];
            snprintf(why, sizeof(why), "TLS: %s", bh_tls_error(c->tls));
            t->tls_refused++;
            log_refusal(t, c->peer, why);
            tls_flush_now(c); /* its alert */
            return -EPROTO;
        }
        if (got == 0 || c->refused)
            break;
        if (bh_traffic_lines_feed(&c->lines, t->plainbuf, (size_t)got, on_line, c) < 0)
            return -ENOMEM;
        if (c->refused || c->closing)
            break;
    }
    if (c->closing || c->refused)
        return 0;
    if (tls_flush(c) < 0)
        return -EPIPE;
    return bh_tls_state(c->tls) == BH_TLS_CLOSED ? 1 : 0;
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct traffic *t = c->t;
    if (c->refused) {
        if (nread < 0)
            close_conn(c, CUT_NONE); /* done lingering */
        return;
    }
    if (nread > 0) {
        c->last_active = uv_now(t->a->hub->loop);
        t->read_ms = bh_now_ms();
        int rc = conn_input(c, buf->base, (size_t)nread);
        if (rc == -ENOMEM)
            bh_error(t->a->name, "out of memory for a line from %s: closing the connection",
                     c->peer);
        if (rc < 0)
            close_conn(c, CUT_NONE);
        else if (c->refused)
            linger(c);
        else if (rc == 1)
            nread = UV_EOF; /* close_notify: the end of the stream */
        check_pressure(t);
        if (nread > 0 || c->closing)
            return;
    }
    if (nread == 0)
        return;
    if (nread == UV_EOF && c->ack && c->pend_head != NULL && !c->closing) {
        /* The gateway is done sending and waits for its last acknowledgements. */
        uv_read_stop(s);
        c->reading = false;
        c->close_after_ack = true;
        bh_info(t->a->name,
                "gateway %s finished after %lld line(s): closing once they are acknowledged",
                c->peer, (long long)c->lines.number);
        return;
    }
    if (nread != UV_EOF)
        bh_warn(t->a->name, "gateway %s: %s", c->peer, uv_strerror((int)nread));
    bh_info(t->a->name, "gateway %s disconnected after %lld line(s)", c->peer,
            (long long)c->lines.number);
    close_conn(c, CUT_CLOSED);
}

static void
start_reading(struct conn *c)
{
    if (c->reading || c->closing || c->close_after_ack)
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
stop_reading_all(struct traffic *t)
{
    for (struct conn *c = t->conns; c != NULL; c = c->next) {
        if (c->reading)
            uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void
check_pressure(struct traffic *t)
{
    if (!bh_flow_stop(&t->flow))
        return;
    stop_reading_all(t);
    bh_debug(t->a->name, "%zu line(s) in flight: reading paused on %zu connection(s)", t->flow.held,
             t->nconns);
}

static void
resume_all(struct traffic *t)
{
    if (!bh_flow_reading(&t->flow))
        return; /* paused by an operator: resume_intake reads again */
    for (struct conn *c = t->conns; c != NULL; c = c->next)
        start_reading(c);
    bh_debug(t->a->name, "%zu line(s) in flight: reading again", t->flow.held);
}

/* --- the listener -------------------------------------------------------------------- */

/* C was refused: close it, and say so at most once every REFUSAL_LOG ms. */
static void
refuse(struct traffic *t, struct conn *c, const char *why)
{
    log_refusal(t, c->peer, why);
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/*
 * Take the accepted connection C from SA, or refuse it. LIMITS false (at
 * stop, for connections already in the listen backlog): the limits do not
 * apply. True if it was taken.
 */
static bool
admit(struct traffic *t, struct conn *c, const struct sockaddr *sa, bool limits)
{
    char why[160], host[INET6_ADDRSTRLEN];
    bh_sockaddr_format(sa, c->peer, sizeof(c->peer));
    peer_key(sa, c->addr);
    if (limits && t->nconns >= (size_t)t->conf->max_connections) {
        snprintf(why, sizeof(why), "%zu connections is max_connections", t->nconns);
        refuse(t, c, why);
        return false;
    }
    uint32_t mine = peer_conns(t, c->addr);
    if (limits && mine >= (uint64_t)t->conf->max_connections_per_peer) {
        peer_host(c->addr, host, sizeof(host));
        snprintf(why, sizeof(why), "%u connections from %s is max_connections_per_peer", mine,
                 host);
        refuse(t, c, why);
        return false;
    }
    if (peer_add(t, c->addr) < 0) {
        refuse(t, c, "out of memory");
        return false;
    }
    if (t->tls.ctx != NULL && (c->tls = bh_tls_session_new(bh_tls_server_ctx(&t->tls))) == NULL) {
        peer_remove(t, c->addr);
        refuse(t, c, "out of memory");
        return false;
    }
    bh_traffic_lines_init(&c->lines, t->conf->max_line, t->max_payload);
    c->listed = true;
    c->next = t->conns;
    if (t->conns != NULL)
        t->conns->prev = c;
    t->conns = c;
    t->nconns++;
    return true;
}

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
    memset(&sa, 0, sizeof(sa));
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen);
    if (!admit(t, c, (struct sockaddr *)&sa, !t->stopping))
        return;
    c->accepted = uv_now(t->a->hub->loop);
    bh_info(t->a->name, "gateway %s connected (%zu connection(s))", c->peer, t->nconns);
    if (bh_flow_reading(&t->flow) && !t->stopping)
        start_reading(c);
}

/*
 * Stopping: the connections the kernel has completed but blockhub not yet
 * accepted hold gateway bytes too. Take them all (without the limits) so
 * that they are drained with the others.
 */
static void
accept_backlog(struct traffic *t)
{
    uv_os_fd_t lfd;
    if (uv_fileno((uv_handle_t *)&t->listener, &lfd) < 0)
        return;
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa);
        memset(&sa, 0, sizeof(sa));
        int fd = accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && errno == EINTR)
            continue;
        if (fd < 0)
            return; /* EAGAIN: the backlog is empty */
        struct conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->t = t;
        c->tcp.data = c;
        uv_tcp_init(t->a->hub->loop, &c->tcp);
        t->handles++;
        if (uv_tcp_open(&c->tcp, fd) < 0) {
            close(fd);
            c->closing = true;
            uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
            continue;
        }
        if (admit(t, c, (struct sockaddr *)&sa, false))
            bh_info(t->a->name, "gateway %s connected as blockhub stops: draining it", c->peer);
    }
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct traffic *t = h->data;
    if (--t->handles == 0 && t->closing_all)
        bh_component_stopped(t->a);
}

static void
on_idle_check(uv_timer_t *timer)
{
    struct traffic *t = timer->data;
    uint64_t now = uv_now(t->a->hub->loop);
    struct conn *c = t->conns;
    while (c != NULL) {
        struct conn *next = c->next;
        if (!c->greeted && !c->closing && strcmp(t->conf->auth, "token") == 0 &&
            now - c->accepted >= (uint64_t)t->conf->hello_timeout) {
            refuse_gateway(c, "no hello within hello_timeout");
            linger(c);
        } else if (c->lingering && !c->closing && now - c->refused_at >= LINGER_MS) {
            close_conn(c, CUT_NONE);
        } else if (c->reading && t->conf->idle_timeout > 0 &&
                   now - c->last_active >= (uint64_t)t->conf->idle_timeout) {
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
    struct pending *lists[2] = {t->retry_head, t->suspect_head};
    t->retry_head = t->retry_tail = t->suspect_head = t->suspect_tail = NULL;
    t->retry_count = 0;
    for (int i = 0; i < 2; i++) {
        for (struct pending *pd = lists[i]; pd != NULL;) {
            struct pending *next = pd->next;
            bh_error(t->a->name, "line %lld from %s lost at shutdown: never acknowledged by Kafka",
                     (long long)pd->line_no, pd->peer);
            lose(pd);
            pd = next;
        }
    }
    for (struct conn *c = t->conns; c != NULL; c = c->next) {
        if (c->draining)
            bh_error(t->a->name, "gateway %s: closed at shutdown with bytes not read", c->peer);
        c->draining = false;
        close_conn(c, CUT_STOPPED);
    }
    t->draining = 0;
    close_handle(t, (uv_handle_t *)&t->retry_timer);
    close_handle(t, (uv_handle_t *)&t->idle_timer);
    close_handle(t, (uv_handle_t *)&t->drain_timer);
    close_handle(t, (uv_handle_t *)&t->ack_check);
}

static void
on_drain_timeout(uv_timer_t *timer)
{
    struct traffic *t = timer->data;
    bh_warn(t->a->name,
            "%zu connection(s) not drained and %zu line(s) still unacknowledged after %lld ms: "
            "leaving them to the hub's flush",
            t->draining, t->flow.held, (long long)t->a->hub->conf->kafka.flush_timeout);
    close_all(t);
}

/* Stopping: C is drained (or cannot be read any more). Its cut-off line goes on; close it. */
static void
drained(struct conn *c)
{
    struct traffic *t = c->t;
    c->draining = false;
    t->draining--;
    bh_info(t->a->name, "gateway %s drained at shutdown after %lld line(s)", c->peer,
            (long long)c->lines.number);
    if (c->ack && !c->closing && c->pend_head != NULL) {
        c->close_after_ack = true; /* pending_done() closes it, with its last ack */
        return;
    }
    close_conn(c, c->cut == CUT_CLOSED ? CUT_CLOSED : CUT_STOPPED);
}

/*
 * Read what C's socket held at stop() (c->drain_left bytes, or less if the
 * gateway closed or reset), as far as back-pressure allows. True when C is
 * done with.
 */
static bool
drain_conn(struct conn *c)
{
    struct traffic *t = c->t;
    uv_os_fd_t fd;
    if (c->closing)
        return true;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) < 0)
        return true;
    while (c->drain_left > 0) {
        if (bh_flow_at_limit(&t->flow))
            return false;
        size_t want =
            c->drain_left < sizeof(t->readbuf) ? (size_t)c->drain_left : sizeof(t->readbuf);
        ssize_t n = recv(fd, t->readbuf, want, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                c->cut = CUT_CLOSED;
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                bh_warn(t->a->name, "gateway %s: %s", c->peer, strerror(errno));
            break; /* the gateway closed, reset, or nothing more is there */
        }
        c->drain_left -= (uint64_t)n;
        t->read_ms = bh_now_ms();
        int rc = conn_input(c, t->readbuf, (size_t)n);
        if (rc == -ENOMEM)
            bh_error(t->a->name, "out of memory for a line from %s: closing the connection",
                     c->peer);
        if (rc == 1)
            c->cut = CUT_CLOSED;
        if (rc != 0 || c->refused || c->closing)
            break;
    }
    /* All read that was there: did the gateway also close its side before the stop? */
    char b;
    if (c->drain_left == 0 && recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
        c->cut = CUT_CLOSED;
    return true;
}

/* Stopping: drain the connections one after the other while back-pressure allows. */
static void
drain_all(struct traffic *t)
{
    if (t->in_drain || t->closing_all)
        return;
    t->in_drain = true;
    t->flow.full = false;
    for (struct conn *c = t->conns; c != NULL && t->draining > 0; c = c->next) {
        if (!c->draining)
            continue;
        if (!drain_conn(c)) {
            t->flow.full = true; /* pending_done() goes on once half is acknowledged */
            break;
        }
        drained(c);
    }
    t->in_drain = false;
    maybe_stopped(t);
}

/*
 * A line of max_line bytes can make a record of nearly twice that (the event
 * id is in the record and in a header). Say at start which lines Kafka will
 * not take, and whether their dead letters fit.
 */
static void
warn_sizes(const struct bh_component *a)
{
    const struct traffic_conf *c = a->settings;
    size_t max = bh_kafka_max_message(bh_component_kafka(a));
    size_t safe = max > RECORD_OVERHEAD ? (max - RECORD_OVERHEAD) / 2 : 0;
    if (c->max_line > safe)
        bh_warn(a->name,
                "adapters.%s.max_line (%llu bytes) does not fit under kafka message.max.bytes "
                "(%zu bytes): a line whose record comes to more than that (any line over %zu "
                "bytes may) will be dead-lettered as too_large",
                a->name, (unsigned long long)c->max_line, max, safe);
    if (a->hub->conf->dead_letter.max_payload + RECORD_OVERHEAD > max)
        bh_warn(a->name,
                "dead_letter.max_payload (%llu bytes) does not fit under kafka "
                "message.max.bytes (%zu bytes): the dead letter of a line that long cannot be "
                "published, and the line is lost (logged)",
                (unsigned long long)a->hub->conf->dead_letter.max_payload, max);
}

/* A listener that never listened: its close frees the adapter it sits in. */
static void
free_listener_owner(uv_handle_t *h)
{
    free(h->data);
}

static int
start(struct bh_component *a, char *errstr, size_t errstr_size)
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
    if (bh_parse_listen(c->listen, &addr) < 0) { /* the config's check refuses it first */
        snprintf(errstr, errstr_size, "listen: '%s' is not host:port", c->listen);
        rc = -EINVAL;
        goto out;
    }
    if (bh_traffic_parser_new(&t->parser) < 0)
        goto out;
    size_t buckets = 16;
    while (buckets < (size_t)c->max_connections && buckets < 65536)
        buckets *= 2;
    t->peers = calloc(buckets, sizeof(*t->peers));
    if (t->peers == NULL)
        goto out;
    t->peer_mask = buckets - 1;
    t->peer_seed = (uint32_t)uv_hrtime();
    rc = bh_traffic_avro_check(t->schema, a->hub->encoder, t->frame, &t->frame_len, errstr,
                               errstr_size);
    if (rc < 0)
        goto out;
    if (bh_tls_conf_enabled(&c->tls)) {
        rc = bh_tls_server_load(&t->tls, &c->tls, errstr, errstr_size);
        if (rc < 0)
            goto out;
    }
    uv_tcp_init(loop, &t->listener);
    t->listener.data = t;
    t->handles = 1;
    rc = uv_tcp_bind(&t->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&t->listener, 511, on_connection);
    if (rc < 0) {
        snprintf(errstr, errstr_size, "listen on %s: %s", c->listen, uv_strerror(rc));
        /* The handle is closed on the loop's next turn; T goes with it. */
        bh_tls_server_free(&t->tls);
        bh_traffic_parser_free(t->parser);
        free(t->peers);
        uv_close((uv_handle_t *)&t->listener, free_listener_owner);
        return rc;
    }
    int len = sizeof(addr);
    uv_tcp_getsockname(&t->listener, (struct sockaddr *)&addr, &len);
    bh_sockaddr_format((struct sockaddr *)&addr, t->source, sizeof(t->source));
    warn_sizes(a);
    bh_flow_init(&t->flow, (size_t)c->max_in_flight, c->max_in_flight_bytes);
    uv_timer_init(loop, &t->retry_timer);
    uv_timer_init(loop, &t->idle_timer);
    uv_timer_init(loop, &t->drain_timer);
    uv_check_init(loop, &t->ack_check);
    t->retry_timer.data = t->idle_timer.data = t->drain_timer.data = t->ack_check.data = t;
    t->handles += 4;
    /* The idle check also closes connections that owe their hello, and refused ones. */
    uint64_t period = LINGER_MS;
    if (c->idle_timeout > 0 && (uint64_t)c->idle_timeout < period)
        period = (uint64_t)c->idle_timeout;
    if (strcmp(c->auth, "token") == 0 && (uint64_t)c->hello_timeout < period)
        period = (uint64_t)c->hello_timeout;
    uint64_t every = period / 4 > 50 ? period / 4 : 50;
    uv_timer_start(&t->idle_timer, on_idle_check, every, every);
    if (strcmp(c->auth, "none") == 0)
        bh_warn(a->name,
                "auth is none: any host that reaches %s may publish traffic events (set auth: "
                "token and tokens to require a hello with a token)",
                t->source);
    a->priv = t;
    bh_info(a->name, "traffic gateways on %s://%s -> %s (auth %s%s)", t->tls.ctx ? "tls" : "tcp",
            t->source, c->topic, c->auth,
            !t->tls.ctx ? ""
            : bh_tls_conf_client_cert(&c->tls) == BH_TLS_CLIENT_REQUIRED
                ? ", client certificates required"
            : bh_tls_conf_client_cert(&c->tls) == BH_TLS_CLIENT_OPTIONAL
                ? ", client certificates checked if sent"
                : "");
    return 0;
out:
    bh_tls_server_free(&t->tls);
    bh_traffic_parser_free(t->parser);
    free(t->peers);
    free(t);
    return rc;
}

static void
stop(struct bh_component *a)
{
    struct traffic *t = a->priv;
    t->stopping = true;
    accept_backlog(t);
    close_handle(t, (uv_handle_t *)&t->listener);
    uv_timer_stop(&t->idle_timer);
    for (struct conn *c = t->conns; c != NULL; c = c->next) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
        if (c->closing)
            continue;
        if (c->refused) {
            close_conn(c, CUT_NONE);
            continue;
        }
        /* What the kernel holds now is what the gateway has delivered. */
        uv_os_fd_t fd;
        int held = 0;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) < 0)
            held = 0;
        else if (ioctl(fd, FIONREAD, &held) < 0)
            held = -1; /* not known: read until nothing more is there */
        c->drain_left = held >= 0 ? (uint64_t)held : UINT64_MAX;
        c->draining = true;
        t->draining++;
    }
    bh_info(a->name,
            "stopping: draining %zu connection(s), %zu line(s) in flight; back-pressure paused "
            "reading %llu time(s); %llu connection(s) refused",
            t->draining, t->flow.held, (unsigned long long)t->flow.pauses,
            (unsigned long long)t->refused);
    drain_all(t);
    if (!t->closing_all)
        uv_timer_start(&t->drain_timer, on_drain_timeout,
                       (uint64_t)a->hub->conf->kafka.flush_timeout, 0);
}

static void
destroy(struct bh_component *a)
{
    struct traffic *t = a->priv;
    if (t == NULL)
        return;
    while (t->free_slots != NULL) {
        struct pending *pd = t->free_slots;
        t->free_slots = pd->next;
        free(pd);
    }
    for (size_t i = 0; t->peers != NULL && i <= t->peer_mask; i++) {
        while (t->peers[i] != NULL) {
            struct peer *pe = t->peers[i];
            t->peers[i] = pe->next;
            free(pe);
        }
    }
    free(t->peers);
    bh_traffic_parser_free(t->parser);
    bh_tls_server_free(&t->tls);
    free(t->out);
    free(t);
    a->priv = NULL;
}

/* Paused, no connection reads: the gateways' own buffers and the sockets hold
 * their lines (TCP back-pressure), nothing is dropped; connections are still
 * accepted, and the idle timeout does not count the time paused. */
static int
pause_intake(struct bh_component *a)
{
    struct traffic *t = a->priv;
    if (t->stopping)
        return -ESHUTDOWN;
    t->flow.operator_pause = true;
    stop_reading_all(t);
    bh_info(a->name, "paused: %zu connection(s) not read", t->nconns);
    return 0;
}

static int
resume_intake(struct bh_component *a)
{
    struct traffic *t = a->priv;
    t->flow.operator_pause = false;
    if (!t->stopping)
        resume_all(t);
    bh_info(a->name, "resumed");
    return 0;
}

/*
 * New limits are taken while every connection stays open; a new address,
 * topic, line limit or idle timeout needs a new listener or new connection
 * state: the adapter is replaced instead.
 */
static int
reload(struct bh_component *a, const void *settings, char *errstr, size_t errstr_size)
{
    struct traffic *t = a->priv;
    const struct traffic_conf *n = settings, *o = t->conf;
    if (strcmp(n->listen, o->listen) != 0 || strcmp(n->topic, o->topic) != 0 ||
        n->max_line != o->max_line || n->idle_timeout != o->idle_timeout ||
        strcmp(n->auth, o->auth) != 0 || n->hello_timeout != o->hello_timeout ||
        bh_tls_conf_enabled(&n->tls) != bh_tls_conf_enabled(&o->tls)) {
        snprintf(
            errstr, errstr_size,
            "listen, topic, max_line, idle_timeout, auth, hello_timeout or TLS on/off changed");
        return -ENOTSUP;
    }
    if (bh_tls_conf_enabled(&n->tls)) {
        /* New connections get the files as they are now; open ones keep theirs. */
        int rc = bh_tls_server_load(&t->tls, &n->tls, errstr, errstr_size);
        if (rc < 0)
            return rc;
    }
    t->conf = n;
    t->flow.max = (size_t)n->max_in_flight;
    t->flow.max_bytes = n->max_in_flight_bytes;
    if (!t->closing_all && !t->stopping && bh_flow_room(&t->flow))
        resume_all(t);
    bh_info(a->name, "new limits and tokens taken; %zu connection(s) stay open", t->nconns);
    return 0;
}

static void
stats(const struct bh_component *a, struct bh_stats *out)
{
    const struct traffic *t = a->priv;
    if (t == NULL)
        return;
    bh_flow_stats(&t->flow, out);
    bh_stats_add(out, "connections", "gateway connections open", true, t->nconns);
    bh_stats_add(out, "connections_refused", "connections refused (limits, shutdown)", false,
                 t->refused);
    bh_stats_add(out, "retry_queue", "lines waiting to be produced again", true, t->retry_count);
    bh_stats_add(out, "gateways_refused", "connections refused for their hello or its absence",
                 false, t->unauthorized);
    bh_stats_add(out, "acks_sent", "acknowledgement lines written to gateways", false,
                 t->acks_sent);
    if (t->tls.ctx != NULL) {
        bh_stats_add(out, "tls_handshakes", "TLS handshakes completed", false, t->tls_handshakes);
        bh_stats_add(out, "tls_refused",
                     "TLS connections that failed (certificate refused, not TLS...)", false,
                     t->tls_refused);
    }
}

static int
check_auth(const void *value, char *why, size_t why_size)
{
    const char *v = *(char *const *)value;
    if (v != NULL && strcmp(v, "token") != 0 && strcmp(v, "tls") != 0 && strcmp(v, "none") != 0) {
        snprintf(why, why_size, "'%s' is not token, tls or none", v);
        return -EINVAL;
    }
    return 0;
}

static int
check_tokens(const void *value, char *why, size_t why_size)
{
    return bh_conf_check_secrets(value, BH_HELLO_TOKEN_MAX, why, why_size);
}

/* Across keys: tokens go with auth token, and only with it. */
static int
check_conf(const void *settings, const char **key, char *why, size_t why_size)
{
    const struct traffic_conf *c = settings;
    if (c->auth == NULL) {
        *key = "auth";
        snprintf(why, why_size,
                 "not set: say token (gateways send a hello with one of tokens first) or none "
                 "(any host that reaches listen may send)");
        return -EINVAL;
    }
    if (strcmp(c->auth, "token") == 0 && c->tokens.n == 0) {
        *key = "tokens";
        snprintf(why, why_size, "auth is token: at least one token is required");
        return -EINVAL;
    }
    if (strcmp(c->auth, "token") != 0 && c->tokens.n > 0) {
        *key = "tokens";
        snprintf(why, why_size, "auth is %s: tokens would not be checked (say auth: token)",
                 c->auth);
        return -EINVAL;
    }
    bool client_certs =
        bh_tls_conf_enabled(&c->tls) && bh_tls_conf_client_cert(&c->tls) != BH_TLS_CLIENT_NONE;
    if (strcmp(c->auth, "tls") == 0 &&
        !(bh_tls_conf_enabled(&c->tls) &&
          bh_tls_conf_client_cert(&c->tls) == BH_TLS_CLIENT_REQUIRED)) {
        *key = "auth";
        snprintf(why, why_size,
                 "auth tls takes the client certificate as the credential: it needs tls.cert_file, "
                 "tls.key_file and tls.client_ca_file, with client_cert required");
        return -EINVAL;
    }
    if (c->subjects.n > 0 && !client_certs) {
        *key = "subjects";
        snprintf(why, why_size,
                 "subjects are those of client certificates: set tls with a "
                 "client_ca_file");
        return -EINVAL;
    }
    return bh_tls_conf_check(&c->tls, key, why, why_size);
}

/* What Kafka takes as a topic name: 1-249 of [a-zA-Z0-9._-], neither "." nor "..". */
#define KEY(field) offsetof(struct traffic_conf, field)

static const struct bh_conf_key traffic_keys[] = {
    {.name = "listen",
     .type = BH_CONF_STRING,
     .offset = KEY(listen),
     .def = "127.0.0.1:9400",
     .check = bh_conf_check_listen,
     .doc = "Address and port the gateways connect to (host:port, [v6]:port, :port)."},
    {.name = "topic",
     .type = BH_CONF_STRING,
     .offset = KEY(topic),
     .def = "dept.traffic",
     .check = bh_conf_check_topic,
     .doc = "Topic the events are published to, keyed by block (Kafka's topic name rules: 1-249 "
            "of a-z A-Z 0-9 . _ -)."},
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
     .doc = "Gateway connections at once; more are closed as they arrive (and logged, at most "
            "once a second)."},
    {.name = "max_connections_per_peer",
     .type = BH_CONF_INT,
     .offset = KEY(max_connections_per_peer),
     .def = "64",
     .min = 1,
     .max = 100000,
     .doc = "Gateway connections at once from one IP address (IPv4, or IPv6 by the full "
            "address); more from that address are closed as they arrive (and logged, at most once "
            "a second), so that one host cannot take every connection."},
    {.name = "idle_timeout",
     .type = BH_CONF_DURATION,
     .offset = KEY(idle_timeout),
     .def = "5m",
     .min = 0,
     .max = 7LL * 24 * 3600 * 1000,
     .doc = "A connection that sends nothing (not even a heartbeat) for this long is closed, so "
            "silent sockets cannot hold the connections; 0: never. Time spent paused by "
            "back-pressure does not count."},
    {.name = "auth",
     .type = BH_CONF_STRING,
     .offset = KEY(auth),
     .check = check_auth,
     .doc = "Who may send (no default: say it): token (the first line of a connection must be "
            "a hello naming one of tokens, docs/feeds.md 4.4), tls (a client certificate that "
            "tls.client_ca_file verifies, with client_cert required) or none (any host that "
            "reaches listen, logged as a warning at start)."},
    {.name = "tokens",
     .type = BH_CONF_STRING_LIST,
     .offset = KEY(tokens),
     .check = check_tokens,
     .doc = "The tokens a hello may name (auth token: at least one; none empty). Changed by a "
            "reload for the connections that follow."},
    {.name = "hello_timeout",
     .type = BH_CONF_DURATION,
     .offset = KEY(hello_timeout),
     .def = "10s",
     .min = 100,
     .max = 3600 * 1000,
     .doc = "With auth token, a connection that has not sent its hello within this long is "
            "refused and closed."},
    {.name = "tls",
     .type = BH_CONF_SECTION,
     .offset = KEY(tls),
     .sub = bh_tls_conf_keys,
     .doc = "TLS on the listener (cert_file and key_file turn it on); with client_ca_file, client "
            "certificates are checked, and the subject of a client certificate goes into each "
            "record's tls_subject. The files are read again on a reload (new connections)."},
    {.name = "subjects",
     .type = BH_CONF_STRING_LIST,
     .offset = KEY(subjects),
     .doc = "With client certificates: the subjects allowed (RFC 2253, as tls_subject shows "
            "them, e.g. CN=jj-gw-03,O=Traffic Police,C=CN); another is refused after the "
            "handshake. Empty: any certificate the CA verifies."},
    BH_KAFKA_PROPERTIES_KEY(KEY(kafka_properties)),
    {0},
};

const struct bh_component_type bh_adapter_type_traffic = {
    .name = "traffic",
    .doc = "Traffic gateway events: JSON lines over TCP (docs/feeds.md, section 4).",
    .schema = SCHEMA,
    .conf = {.keys = traffic_keys, .size = sizeof(struct traffic_conf), .check = check_conf},
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .pause = pause_intake,
    .resume = resume_intake,
    .stats = stats,
    .reload = reload,
};
