/*
 * The market adapter: batch CSV files in a spool directory (docs/feeds.md,
 * section 5).
 *
 * The department uploads NAME.csv.part and renames it NAME.csv. The adapter
 * watches the directory (inotify through uv_fs_event, and a periodic rescan in
 * case an event is missed), takes the *.csv files in name order, one at a
 * time, once each is settled (unchanged for settle_time, so that a file written
 * in place is taken whole), and streams each in chunks read with uv_fs_read:
 *
 *   chunk -> line segments -> iconv to UTF-8 -> RFC 4180 rows -> row:
 *     header: map the Chinese column names to fields (else failed/ + one
 *             invalid_header dead letter);
 *     data:   validate every rule of docs/feeds.md, resolve the block, encode
 *             blockhub.market.MarketEvent, produce keyed by block; a bad row
 *             is a dead letter with its original bytes.
 *
 * Quote, comma, CR and LF never occur inside a multi-byte GB18030 or UTF-8
 * sequence, so every row ends at the end of a raw line segment and the byte
 * offset just after each row is known exactly; undecodable bytes spoil only
 * the row they are in.
 *
 * Every row that goes out (record or dead letter) takes a slot in a ring, in
 * file order. Deliveries come back in any order; the rows acknowledged in
 * order give the checkpoint (file identity, offset after the last of them,
 * row and line counters), written atomically off the loop every
 * checkpoint_interval or checkpoint_rows. After a crash reading resumes there:
 * nothing before it is published again, rows after it may be. Reading pauses
 * while max_in_flight rows are in the ring and resumes below half. A failed
 * delivery rewinds the file to its checkpoint (after retry_backoff). The file
 * moves to done/ (or is deleted) once every row is acknowledged.
 *
 * A *.csv entry that is not a regular file (a directory, a symbolic link, a
 * FIFO) or cannot be opened gets one dead letter and a log line and is moved
 * to failed/. A record Kafka refuses as too large (at once, or in its delivery
 * report) becomes a too_large dead letter; the file goes on and completes.
 * Every name shown (records, dead letters, the checkpoint, log lines) is the
 * file name made valid UTF-8 on one line (spool.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "kafka.h"
#include "csv.h"
#include "decimal.h"
#include "decode.h"
#include "dlq.h"
#include "event.h"
#include "fields.h"
#include "hub.h"
#include "log.h"
#include "publish.h"
#include "spool.h"
#include "uscc.h"
#include "utf8.h"

#define SCHEMA          "blockhub.market.MarketEvent"
#define FINE_MAX_DIGITS 12 /* decimal(14, 2) */

struct market_conf {
    char *spool_dir;
    char *state_dir;
    char *encoding;
    char *topic;
    char *done_action;
    int64_t rescan_interval;
    int64_t max_in_flight;
    uint64_t max_row_bytes;
    uint64_t read_size;
    int64_t checkpoint_interval;
    int64_t checkpoint_rows;
    int64_t retry_backoff;
    int64_t settle_time;
    bool exactly_once;
    char *transactional_id;
    char *position_topic;
};

/* --- the columns ----------------------------------------------------------- */

enum col {
    C_ID,
    C_USCC,
    C_NAME,
    C_TYPE,
    C_OUTCOME,
    C_FINE,
    C_ADDR,
    C_GRID,
    C_LON,
    C_LAT,
    C_TIME,
    NCOL
};

static const struct {
    const char *name;
    int required;
} columns[NCOL] = {
    [C_ID] = {"记录编号", 1},   [C_USCC] = {"统一社会信用代码", 1}, [C_NAME] = {"主体名称", 1},
    [C_TYPE] = {"事项类型", 1}, [C_OUTCOME] = {"处理结果", 1},      [C_FINE] = {"罚没金额", 0},
    [C_ADDR] = {"经营地址", 0}, [C_GRID] = {"网格编码", 0},         [C_LON] = {"经度", 0},
    [C_LAT] = {"纬度", 0},      [C_TIME] = {"发生时间", 1},
};

static const char *const event_types[] = {
    "日常检查",           "专项检查",       "行政处罚", "许可变更",
    "电动自行车销售登记", "摩托车销售登记", "投诉举报", NULL};
static const char *const outcomes[] = {"合格",   "责令整改", "罚款", "吊销许可",
                                       "已登记", "已受理",   NULL};

/* --- state ----------------------------------------------------------------- */

struct market;

/* One row on its way out (a record or a dead letter), in file order. */
struct slot {
    struct bh_delivery d;
    struct market *m;
    uint64_t end;       /* byte offset just after the row */
    int64_t row, lines; /* data rows and lines up to and including it */
    int state;          /* SLOT_* */
    int dead;           /* a dead letter, not a record */
    size_t bytes;       /* what was produced (a record's value and key; a dead letter's payload) */
};

enum { SLOT_PENDING, SLOT_DONE, SLOT_FAILED };

/* The file being read. */
struct file {
    int fd;                          /* -1: none */
    char name[NAME_MAX + 1];         /* as in the directory */
    char shown[BH_MARKET_SHOWN_MAX]; /* as shown everywhere else */
    uint64_t dev, ino, size;
    uint64_t chunk_off; /* file offset of the chunk being processed */
    size_t pos, len;    /* next byte of it to process; bytes in it */
    int eof;            /* the chunk is the last one */
    uint64_t next_off;  /* where the next read starts */
    int input_done;     /* every row is handed out */
    int header_done;
    int bad_header;     /* -> failed/ once its dead letter is acknowledged */
    int failed;         /* a delivery failed: rewind to the checkpoint */
    int at_start;       /* nothing decoded yet (a BOM may come) */
    int jump;           /* the rest of the input is skipped: resuming at next_off */
    int col[NCOL];      /* field index of each column, -1 if absent */
    size_t nheader;     /* fields in the header */
    int64_t row, lines; /* data rows handed out, lines consumed */
    struct bh_market_checkpoint resume;
    int resuming;
    int bad_encoding; /* the current row has undecodable bytes */
    uint64_t bad_at;
    size_t rawlen; /* the current row's original bytes in m->raw */
    size_t records, dead;
};

struct market {
    struct bh_component *a;
    const struct market_conf *conf;
    struct bh_market_writer *writer;
    char *state_path;
    int delete_done;

    uv_fs_event_t watch;
    uv_timer_t rescan, kick, ckpt_timer, backoff, settle;
    struct bh_market_spool spool; /* the *.csv entries of the last listing */
    size_t handles;               /* handles still closing, for stop */
    int closing;
    uv_fs_t scan_req, read_req;
    int scan_busy, backoff_busy;
    /* Reading ahead: while chunk[cur] is processed, the next one is read into chunk[!cur]. */
    char *chunk[2];
    int cur;
    int read_busy;    /* a read into chunk[!cur] is under way */
    int read_ready;   /* it is done: read_result bytes (or an error) from read_at */
    int read_discard; /* its data is not wanted (a jump): read again at next_off */
    int starved;      /* process() waits for the read */
    ssize_t read_result;
    uint64_t read_at;
    int stopping;
    int held; /* process() stopped for the operator's pause (flow.operator_pause) */
    uint64_t files_done, files_failed, rows_read; /* counters (stats) */

    struct bh_market_decoder dec;
    struct bh_market_csv csv;
    char *out, *raw;
    size_t outcap, rawcap;
    struct file f;

    struct slot *ring;
    size_t cap;
    uint64_t head, tail; /* slots handed out / retired (index = n % cap) */
    size_t in_flight;
    struct bh_flow flow;               /* rows in the ring (read, not yet retired in order) */
    struct bh_market_checkpoint acked; /* the rows acknowledged in order */
    int64_t since_ckpt;

    struct bh_market_checkpoint ck; /* the latest checkpoint (maybe not on disk yet) */
    int ck_valid;
    uv_work_t ck_work;
    struct bh_market_checkpoint ck_job;
    int ck_busy, ck_dirty, ck_rc;

    /*
     * Rows of the current file Kafka refused as too large in a delivery
     * report, by the offset just after them: read again, a record becomes a
     * too_large dead letter (level 1), a dead letter loses its payload (2),
     * and past that the row is skipped with an error (3). The largest refusal
     * of a failed round is taken (a refused batch fails all its records).
     */
    struct big_row {
        uint64_t end;
        int level;
    } * big;
    size_t nbig, bigcap;
    uint64_t big_dev, big_ino; /* the file they are for */
    int tl_any, tl_dead;       /* the largest refusal of this round */
    uint64_t tl_end;
    size_t tl_bytes;

    /*
     * exactly_once: the rows, their dead letters and the position after them
     * go to Kafka in one transaction of the adapter's own producer (see "the
     * transactions" below). A row is acknowledged only when its transaction
     * commits; an abort fails every row of it and the file rewinds to the
     * last committed position.
     */
    int eos;
    struct txn {
        rd_kafka_t *rk;
        rd_kafka_conf_t *pconf, *cconf; /* for the start job */
        char id[256];                   /* transactional.id */
        char topic[256];                /* the position topic */
        uv_timer_t retry;               /* the start job again after a failure */
        uv_work_t work;
        int job;    /* TXN_START, TXN_COMMIT */
        int busy;   /* a job runs on the thread pool */
        int ready;  /* started: the producer's transactions are initialized */
        int inited; /* init_transactions of rk succeeded */
        int open;   /* a transaction is begun */
        int due;    /* commit at the next chance (checkpoint_interval) */
        int dead;   /* a fatal error (fenced): the adapter stops */
        /* The trackers of the open transaction, in the order produced. */
        struct bh_delivery **d;
        size_t nd, capd;
        /* The job's result (read on the loop once it is done). */
        int result; /* TXN_OK, TXN_ABORTED, TXN_FATAL, TXN_FAILED */
        rd_kafka_resp_err_t err;
        char errstr[1024];
        struct bh_market_checkpoint found;
        int found_ok;
        int abort_only; /* the commit job aborts instead */
        int64_t t0;
        uint64_t commits, aborts;
    } tx;
    int failed_stop; /* stopping because of a fatal error: bh_component_failed */
};

static void process(struct market *m);
static void read_ahead(struct market *m);
static void step(struct market *m);
static void scan(struct market *m);

/* --- the ring of rows in flight -------------------------------------------- */

static size_t
occupied(const struct market *m)
{
    return (size_t)(m->head - m->tail);
}

static struct slot *
push_slot(struct market *m, uint64_t end)
{
    struct slot *s = &m->ring[m->head++ % m->cap];
    s->m = m;
    s->end = end;
    s->row = m->f.row;
    s->lines = m->f.lines;
    s->state = SLOT_PENDING;
    m->in_flight++;
    bh_flow_hold(&m->flow, 0);
    return s;
}

/* Take back the last slot when producing it failed. */
static void
unpush_slot(struct market *m)
{
    m->head--;
    m->in_flight--;
    bh_flow_release(&m->flow, 0);
}

static void
on_kick(uv_timer_t *t)
{
    step(t->data);
}

/* step() on the next turn of the loop (not from inside a Kafka callback). */
static void
kick(struct market *m)
{
    uv_timer_start(&m->kick, on_kick, 0, 0);
}

static void checkpoint(struct market *m);
static void txn_maybe(struct market *m);

static void
on_delivered(struct bh_delivery *d, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct slot *s = (struct slot *)d;
    struct market *m = s->m;
    (void)partition;
    (void)offset;
    bh_published(m->a, d, err);
    m->in_flight--;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        s->state = SLOT_FAILED;
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && (!m->tl_any || s->bytes > m->tl_bytes)) {
            m->tl_any = 1;
            m->tl_end = s->end;
            m->tl_bytes = s->bytes;
            m->tl_dead = s->dead;
        }
        if (!m->f.failed)
            bh_warn(m->a->name, "%s: delivery failed (row %lld): %s; rewinding to the checkpoint",
                    m->f.shown, (long long)s->row, rd_kafka_err2str(err));
        m->f.failed = 1;
    } else {
        s->state = SLOT_DONE;
    }
    while (m->tail != m->head && m->ring[m->tail % m->cap].state == SLOT_DONE) {
        struct slot *t = &m->ring[m->tail++ % m->cap];
        bh_flow_release(&m->flow, 0);
        m->acked.offset = t->end;
        m->acked.row = t->row;
        m->acked.line = t->lines;
        m->since_ckpt++;
    }
    if (m->since_ckpt >= m->conf->checkpoint_rows)
        checkpoint(m);
    if (m->in_flight == 0 || (m->flow.full && m->flow.held <= m->flow.max / 2))
        kick(m);
}

/* --- the checkpoint -------------------------------------------------------- */

static void
ck_run(uv_work_t *w)
{
    struct market *m = w->data;
    m->ck_rc = bh_market_checkpoint_write(m->state_path, &m->ck_job);
}

static void
ck_done(uv_work_t *w, int status)
{
    struct market *m = w->data;
    m->ck_busy = 0;
    if (status < 0 || m->ck_rc < 0)
        bh_error(m->a->name, "cannot write the checkpoint %s: %s", m->state_path,
                 uv_strerror(status < 0 ? status : m->ck_rc));
    if (m->ck_dirty)
        checkpoint(m);
    step(m);
}

/*
 * Take the position acknowledged in order as the checkpoint (a file reopened
 * after a rewind resumes from it at once) and write it to disk off the loop,
 * one write at a time: a request during a write is served after it.
 */
static void
checkpoint(struct market *m)
{
    m->since_ckpt = 0;
    if (m->f.fd >= 0 && m->acked.offset > 0) {
        m->ck = m->acked;
        m->ck_valid = 1;
    }
    if (!m->ck_valid || m->eos)
        return; /* exactly_once: the position is in Kafka, committed with the rows */
    if (m->ck_busy) {
        m->ck_dirty = 1;
        return;
    }
    m->ck_dirty = 0;
    m->ck_job = m->ck;
    m->ck_work.data = m;
    if (uv_queue_work(m->a->hub->loop, &m->ck_work, ck_run, ck_done) == 0)
        m->ck_busy = 1;
}

/* Whether the checkpoint on disk is the position acknowledged in order. */
static int
checkpoint_current(const struct market *m)
{
    if (m->eos)
        return 1; /* the rows acknowledged are those committed, with their position */
    if (m->ck_busy || m->ck_dirty)
        return 0;
    return m->acked.offset == 0 ||
           (m->ck_valid && m->ck.offset == m->acked.offset && m->ck.ino == m->acked.ino &&
            strcmp(m->ck.file, m->acked.file) == 0);
}

static void
on_ckpt_timer(uv_timer_t *t)
{
    struct market *m = t->data;
    if (m->eos) {
        m->tx.due = 1;
        txn_maybe(m);
        return;
    }
    if (m->f.fd >= 0 && !checkpoint_current(m) && !m->ck_busy)
        checkpoint(m);
}

/* --- the transactions (exactly_once) --------------------------------------- */

enum { TXN_START, TXN_COMMIT };
enum { TXN_OK, TXN_ABORTED, TXN_FATAL, TXN_FAILED };

#define TXN_TIMEOUT_MS 30000
#define TXN_START_MS   30000
#define TXN_RETRIES    10
#define TXN_RESTART_MS 2000

/* bh_kafka_divert's TAKE: a tracker of the open transaction. */
static void
txn_take(void *arg, struct bh_delivery *d)
{
    struct market *m = arg;
    struct txn *t = &m->tx;
    if (t->nd == t->capd) {
        size_t cap = t->capd ? t->capd * 2 : 1024;
        struct bh_delivery **v = realloc(t->d, cap * sizeof(*v));
        if (v == NULL) {
            /* Never heard of again: the file stops until the adapter is restarted. */
            bh_error(m->a->name, "out of memory tracking a row of the transaction");
            return;
        }
        t->d = v;
        t->capd = cap;
    }
    t->d[t->nd++] = d;
}

/* Produce through the transaction (ON) or the hub's producer again. */
static int
divert(struct market *m, int on)
{
    struct txn *t = &m->tx;
    if (!m->eos)
        return 0;
    if (!on) {
        bh_kafka_divert(m->a->hub->kafka, NULL, NULL, NULL);
        return 0;
    }
    if (!t->open) {
        rd_kafka_error_t *e = rd_kafka_begin_transaction(t->rk);
        if (e != NULL) {
            bh_warn(m->a->name, "cannot begin a transaction: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return -EIO;
        }
        t->open = 1;
        t->t0 = (int64_t)uv_now(m->a->hub->loop);
    }
    bh_kafka_divert(m->a->hub->kafka, t->rk, txn_take, m);
    return 0;
}

static int
publish_row(struct market *m, const char *block, size_t block_len, const void *data, size_t len,
            const char *event_id, size_t event_id_len, struct bh_delivery *d)
{
    int rc = divert(m, 1);
    if (rc == 0)
        rc = bh_publish(m->a, m->conf->topic, block, block_len, data, len, event_id, event_id_len,
                        d);
    divert(m, 0);
    return rc;
}

static int
publish_dead(struct market *m, enum bh_dlq_reason reason, const char *detail,
             const struct bh_dlq_origin *origin, const void *payload, size_t len,
             struct bh_delivery *d)
{
    int rc = divert(m, 1);
    if (rc == 0)
        rc = bh_publish_dead(m->a, reason, detail, origin, payload, len, d);
    divert(m, 0);
    return rc;
}

static void
txn_error(struct txn *t, const char *what, rd_kafka_error_t *e)
{
    t->err = rd_kafka_error_code(e);
    snprintf(t->errstr, sizeof(t->errstr), "%s: %s", what, rd_kafka_error_string(e));
}

/* The blocking part of a commit, on the thread pool: commit, else abort. */
static void
txn_commit_job(struct txn *t)
{
    rd_kafka_error_t *e = NULL;
    if (t->abort_only)
        goto abort;
    for (int i = 0; i < TXN_RETRIES; i++) {
        e = rd_kafka_commit_transaction(t->rk, TXN_TIMEOUT_MS);
        if (e == NULL || !rd_kafka_error_is_retriable(e) || rd_kafka_error_is_fatal(e))
            break;
        rd_kafka_error_destroy(e);
        e = NULL;
    }
    if (e == NULL) {
        t->result = TXN_OK;
        rd_kafka_poll(t->rk, 0);
        return;
    }
    txn_error(t, "commit_transaction", e);
    int fatal = rd_kafka_error_is_fatal(e) || !rd_kafka_error_txn_requires_abort(e);
    rd_kafka_error_destroy(e);
    if (fatal) {
        t->result = TXN_FATAL;
        return;
    }
abort:
    for (int i = 0; i < TXN_RETRIES; i++) {
        e = rd_kafka_abort_transaction(t->rk, TXN_TIMEOUT_MS);
        if (e == NULL || !rd_kafka_error_is_retriable(e) || rd_kafka_error_is_fatal(e))
            break;
        rd_kafka_error_destroy(e);
        e = NULL;
    }
    t->abort_only = 0;
    if (e != NULL) {
        txn_error(t, "abort_transaction", e);
        rd_kafka_error_destroy(e);
        t->result = TXN_FATAL;
        return;
    }
    t->result = TXN_ABORTED;
    rd_kafka_poll(t->rk, 0);
}

/*
 * The blocking part of the start, on the thread pool: the producer, the
 * position topic, init_transactions (which fences a previous instance and
 * aborts what it left open), then the position topic read read_committed to
 * its end: the last position of this adapter is where it resumes.
 */
static void
txn_start_job(struct market *m)
{
    struct txn *t = &m->tx;
    char err[256];
    rd_kafka_error_t *e = NULL;
    t->found_ok = 0;
    t->result = TXN_FAILED;
    if (t->rk == NULL) {
        rd_kafka_conf_t *c = rd_kafka_conf_dup(t->pconf);
        t->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        if (t->rk == NULL) {
            rd_kafka_conf_destroy(c);
            snprintf(t->errstr, sizeof(t->errstr), "producer: %s", err);
            return;
        }
    }
    if (!t->inited) {
        if (!bh_kafka_is_embedded(m->a->hub->kafka)) {
            const struct bh_kafka_new_topic nt = {t->topic, bh_kafka_compacted};
            const struct bh_kafka_create_opts o = {
                .partitions = 1,
                .replication = (int)m->a->hub->conf->kafka.replication,
                .timeout_ms = TXN_START_MS,
                .who = m->a->name,
            };
            if (bh_kafka_create_topics(t->rk, &nt, 1, &o, err, sizeof(err)) < 0) {
                snprintf(t->errstr, sizeof(t->errstr), "position topic %s: %s", t->topic, err);
                return;
            }
        }
        for (int i = 0; i < TXN_RETRIES; i++) {
            e = rd_kafka_init_transactions(t->rk, TXN_START_MS);
            if (e == NULL || !rd_kafka_error_is_retriable(e) || rd_kafka_error_is_fatal(e))
                break;
            rd_kafka_error_destroy(e);
            e = NULL;
        }
        if (e != NULL) {
            txn_error(t, "init_transactions", e);
            t->result = TXN_FATAL; /* this producer is done with: a new one next time */
            rd_kafka_error_destroy(e);
            return;
        }
        t->inited = 1;
    }
    rd_kafka_conf_t *cc = rd_kafka_conf_dup(t->cconf);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (c == NULL) {
        rd_kafka_conf_destroy(cc);
        snprintf(t->errstr, sizeof(t->errstr), "position reader: %s", err);
        return;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, t->topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t ae = rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (ae != RD_KAFKA_RESP_ERR_NO_ERROR)
        snprintf(t->errstr, sizeof(t->errstr), "position topic %s: assign: %s", t->topic,
                 rd_kafka_err2str(ae));
    size_t keylen = strlen(m->a->name);
    uint64_t deadline = uv_hrtime() + (uint64_t)TXN_START_MS * 1000000;
    int end = 0;
    if (ae == RD_KAFKA_RESP_ERR_NO_ERROR)
        snprintf(t->errstr, sizeof(t->errstr), "position topic %s: not read to its end in %d ms",
                 t->topic, TXN_START_MS);
    while (ae == RD_KAFKA_RESP_ERR_NO_ERROR && !end && uv_hrtime() < deadline) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(c, 200);
        if (msg == NULL)
            continue;
        if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            end = 1;
        } else if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            struct bh_market_checkpoint ck;
            if (msg->key_len == keylen && memcmp(msg->key, m->a->name, keylen) == 0) {
                if (msg->len == 0) {
                    t->found_ok = 0; /* a tombstone: no position */
                } else if (bh_market_checkpoint_parse(msg->payload, msg->len, &ck) == 0) {
                    t->found = ck;
                    t->found_ok = 1;
                }
            }
        } else {
            snprintf(t->errstr, sizeof(t->errstr), "position topic %s: %s", t->topic,
                     rd_kafka_message_errstr(msg));
        }
        rd_kafka_message_destroy(msg);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    if (end)
        t->result = TXN_OK;
}

static void
txn_run(uv_work_t *w)
{
    struct market *m = w->data;
    if (m->tx.job == TXN_START)
        txn_start_job(m);
    else
        txn_commit_job(&m->tx);
}

static void txn_start(struct market *m);

static void
on_txn_retry(uv_timer_t *h)
{
    txn_start(h->data);
}

/* Every tracker of the transaction hears ERR (in the order produced). */
static void
txn_report(struct market *m, rd_kafka_resp_err_t err)
{
    struct txn *t = &m->tx;
    size_t n = t->nd;
    t->nd = 0;
    for (size_t i = 0; i < n; i++)
        t->d[i]->cb(t->d[i], err, -1, -1);
}

/* Take no more files: the watch, the rescans, the backoff, settling and a start's retry stop. */
static void
stop_intake(struct market *m)
{
    m->stopping = 1;
    uv_timer_stop(&m->tx.retry);
    uv_fs_event_stop(&m->watch);
    uv_timer_stop(&m->rescan);
    uv_timer_stop(&m->backoff);
    uv_timer_stop(&m->settle);
    m->backoff_busy = 0;
}

/* A fatal error (fenced by another instance with the same transactional.id): stop the adapter. */
static void
txn_fatal(struct market *m)
{
    struct txn *t = &m->tx;
    bh_error(m->a->name,
             "exactly-once: the transactional producer (transactional.id %s) failed for good: %s; "
             "the market adapter stops (nothing after the last committed position was "
             "published); restart it once the cause is fixed",
             t->id, t->errstr);
    t->dead = 1;
    t->open = 0;
    m->failed_stop = 1;
    txn_report(m, t->err != RD_KAFKA_RESP_ERR_NO_ERROR ? t->err : RD_KAFKA_RESP_ERR__FATAL);
    if (!m->stopping)
        stop_intake(m);
    kick(m);
}

static void
txn_done(uv_work_t *w, int status)
{
    struct market *m = w->data;
    struct txn *t = &m->tx;
    (void)status;
    t->busy = 0;
    if (t->job == TXN_START) {
        if (t->result == TXN_OK) {
            t->ready = 1;
            if (t->found_ok) {
                m->ck = t->found;
                m->ck_valid = 1;
                bh_info(m->a->name,
                        "exactly once: transactional.id %s, position topic %s: %s at byte %llu "
                        "(after row %lld)",
                        t->id, t->topic, m->ck.file, (unsigned long long)m->ck.offset,
                        (long long)m->ck.row);
            } else {
                bh_info(m->a->name,
                        "exactly once: transactional.id %s, position topic %s: no position yet%s",
                        t->id, t->topic, m->ck_valid ? " (the checkpoint file is taken)" : "");
            }
            kick(m);
            scan(m);
            return;
        }
        if (t->result == TXN_FATAL && t->rk != NULL) {
            rd_kafka_destroy(t->rk); /* blocks briefly: only on a failed start */
            t->rk = NULL;
            t->inited = 0;
        }
        bh_error(m->a->name, "exactly once: cannot start: %s; trying again in %d ms", t->errstr,
                 TXN_RESTART_MS);
        if (!m->stopping)
            uv_timer_start(&t->retry, on_txn_retry, TXN_RESTART_MS, 0);
        else
            step(m);
        return;
    }
    t->open = 0;
    if (t->result == TXN_OK) {
        t->commits++;
        txn_report(m, RD_KAFKA_RESP_ERR_NO_ERROR);
    } else if (t->result == TXN_ABORTED) {
        t->aborts++;
        bh_warn(m->a->name,
                "exactly once: transaction aborted (%s); rewinding to the last "
                "committed position",
                t->errstr);
        txn_report(m, t->err != RD_KAFKA_RESP_ERR_NO_ERROR ? t->err : RD_KAFKA_RESP_ERR__FAIL);
    } else {
        txn_fatal(m);
        return;
    }
    kick(m);
    if (m->f.fd < 0)
        scan(m);
}

static void
txn_post(struct market *m, int job)
{
    struct txn *t = &m->tx;
    t->job = job;
    t->err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!t->abort_only)
        t->errstr[0] = '\0';
    t->work.data = m;
    if (uv_queue_work(m->a->hub->loop, &t->work, txn_run, txn_done) == 0)
        t->busy = 1;
}

static void
txn_start(struct market *m)
{
    if (!m->stopping)
        txn_post(m, TXN_START);
    else
        step(m);
}

/*
 * The position after the last row of the transaction, to the position topic
 * in the same transaction: -EIO when it cannot be produced (abort then).
 */
static int
txn_position(struct market *m)
{
    struct txn *t = &m->tx;
    if (m->head == m->tail || m->f.fd < 0)
        return 0; /* no row of a file in it: only dead letters of entries */
    const struct slot *s = &m->ring[(m->head - 1) % m->cap];
    struct bh_market_checkpoint p = m->acked;
    char text[NAME_MAX * 4 + 256];
    p.offset = s->end;
    p.row = s->row;
    p.line = s->lines;
    size_t n = bh_market_checkpoint_format(text, sizeof(text), &p);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        t->rk, RD_KAFKA_V_TOPIC(t->topic), RD_KAFKA_V_KEY(m->a->name, strlen(m->a->name)),
        RD_KAFKA_V_VALUE(text, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(t->errstr, sizeof(t->errstr), "position record: %s", rd_kafka_err2str(e));
        return -EIO;
    }
    return 0;
}

/*
 * Commit the open transaction when it is time: checkpoint_interval passed,
 * checkpoint_rows or max_in_flight rows are in it, the file's input is done,
 * it failed (what was produced is committed, then the file rewinds), or the
 * adapter stops. Reading waits while the commit runs.
 */
static void
txn_maybe(struct market *m)
{
    struct txn *t = &m->tx;
    struct file *f = &m->f;
    if (!m->eos || t->busy || !t->ready || t->dead || !t->open)
        return;
    if (t->nd == 0 && !f->failed && !m->stopping)
        return;
    if (!(t->due || f->input_done || f->failed || m->stopping || bh_flow_at_limit(&m->flow) ||
          t->nd >= (size_t)m->conf->checkpoint_rows))
        return;
    t->due = 0;
    t->abort_only = txn_position(m) < 0; /* rows without their position: abort */
    txn_post(m, TXN_COMMIT);
}

/* --- validation ------------------------------------------------------------ */

struct event {
    const char *v[NCOL];
    size_t len[NCOL];
    int has_fine, has_point;
    int64_t fen, occurred_at;
    double lon, lat;
};

static int
in_list(const char *s, size_t len, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strlen(*list) == len && memcmp(s, *list, len) == 0)
            return 1;
    return 0;
}

/*
 * A field's value quoted for a reason: at most MAX bytes of it, cut at a
 * character boundary, "..." marking a cut. BUF holds MAX + 8 bytes.
 */
static const char *
excerpt(char *buf, size_t size, const char *s, size_t len, size_t max)
{
    size_t k = s != NULL ? bh_utf8_cut(s, len, max) : 0;
    snprintf(buf, size, "'%.*s%s'", (int)k, s != NULL ? s : "", k < len ? "..." : "");
    return buf;
}

#define EXCERPT_MAX 64

/* BH_DLQ_REASON_COUNT when the row is a valid event, else the reason and WHY. */
static enum bh_dlq_reason
validate(struct market *m, struct event *ev, char *why, size_t n)
{
    const struct bh_market_csv *p = &m->csv;
    const struct file *f = &m->f;
    char x1[EXCERPT_MAX + 8], x2[EXCERPT_MAX + 8];
    memset(ev, 0, sizeof(*ev));
    if (f->bad_encoding) {
        snprintf(why, n, "bytes at file offset %llu are not valid %s",
                 (unsigned long long)f->bad_at, m->conf->encoding);
        return BH_DLQ_INVALID_ENCODING;
    }
    if (p->flags & BH_MARKET_CSV_TOO_LARGE) {
        snprintf(why, n,
                 "the row is longer than max_row_bytes (%llu bytes; the payload is its start)",
                 (unsigned long long)m->conf->max_row_bytes);
        return BH_DLQ_TOO_LARGE;
    }
    if (p->flags & BH_MARKET_CSV_UNCLOSED) {
        snprintf(why, n, "a quoted field is still open at the end of the file");
        return BH_DLQ_INVALID_CSV;
    }
    if (p->flags & BH_MARKET_CSV_BAD_QUOTE) {
        snprintf(why, n, "a quote inside an unquoted field, or text after a closing quote");
        return BH_DLQ_INVALID_CSV;
    }
    if (p->nfields != f->nheader) {
        snprintf(why, n, "%zu fields where the header has %zu", p->nfields, f->nheader);
        return BH_DLQ_INVALID_CSV;
    }
    for (int c = 0; c < NCOL; c++) {
        if (f->col[c] >= 0)
            ev->v[c] = bh_market_csv_field(p, (size_t)f->col[c], &ev->len[c]);
        if (ev->len[c] == 0)
            ev->v[c] = NULL;
        if (columns[c].required && ev->v[c] == NULL) {
            snprintf(why, n, "%s: is required", columns[c].name);
            return BH_DLQ_MISSING_FIELD;
        }
    }
    char expected;
    if (bh_market_uscc_check(ev->v[C_USCC], ev->len[C_USCC], &expected) < 0) {
        if (expected != '\0')
            snprintf(why, n, "%s: %s has check character '%c', GB 32100-2015 gives '%c'",
                     columns[C_USCC].name,
                     excerpt(x1, sizeof(x1), ev->v[C_USCC], ev->len[C_USCC], 18), ev->v[C_USCC][17],
                     expected);
        else
            snprintf(why, n, "%s: %s is not 18 characters of 0-9 and A-Y without I, O, S, V",
                     columns[C_USCC].name,
                     excerpt(x1, sizeof(x1), ev->v[C_USCC], ev->len[C_USCC], EXCERPT_MAX));
        return BH_DLQ_INVALID_FIELD;
    }
    if (!in_list(ev->v[C_TYPE], ev->len[C_TYPE], event_types) ||
        !in_list(ev->v[C_OUTCOME], ev->len[C_OUTCOME], outcomes)) {
        int c = in_list(ev->v[C_TYPE], ev->len[C_TYPE], event_types) ? C_OUTCOME : C_TYPE;
        const char *const *allowed = c == C_TYPE ? event_types : outcomes;
        int k = snprintf(why, n, "%s: %s is not one of", columns[c].name,
                         excerpt(x1, sizeof(x1), ev->v[c], ev->len[c], EXCERPT_MAX));
        for (size_t i = 0; allowed[i] != NULL && k > 0 && (size_t)k < n; i++)
            k += snprintf(why + k, n - (size_t)k, "%s %s", i ? "," : "", allowed[i]);
        return BH_DLQ_INVALID_FIELD;
    }
    if (ev->v[C_FINE] != NULL) {
        if (bh_market_decimal_parse_fen(ev->v[C_FINE], ev->len[C_FINE], FINE_MAX_DIGITS, &ev->fen) <
            0) {
            snprintf(why, n, "%s: %s is not an amount in yuan with at most 2 decimals",
                     columns[C_FINE].name,
                     excerpt(x1, sizeof(x1), ev->v[C_FINE], ev->len[C_FINE], EXCERPT_MAX));
            return BH_DLQ_INVALID_FIELD;
        }
        ev->has_fine = 1;
    }
    if (ev->v[C_LON] != NULL || ev->v[C_LAT] != NULL) {
        if (ev->v[C_LON] == NULL || ev->v[C_LAT] == NULL ||
            bh_market_parse_coord(ev->v[C_LON], ev->len[C_LON], 180, &ev->lon) < 0 ||
            bh_market_parse_coord(ev->v[C_LAT], ev->len[C_LAT], 90, &ev->lat) < 0) {
            snprintf(why, n, "%s/%s: %s, %s is not a longitude/latitude pair", columns[C_LON].name,
                     columns[C_LAT].name, excerpt(x1, sizeof(x1), ev->v[C_LON], ev->len[C_LON], 40),
                     excerpt(x2, sizeof(x2), ev->v[C_LAT], ev->len[C_LAT], 40));
            return BH_DLQ_INVALID_FIELD;
        }
        ev->has_point = 1;
    }
    if (bh_market_parse_time(ev->v[C_TIME], ev->len[C_TIME], &ev->occurred_at) < 0) {
        snprintf(why, n,
                 "%s: %s is not a time as YYYY-MM-DD HH:MM:SS or YYYY/MM/DD HH:MM, or no "
                 "such time exists",
                 columns[C_TIME].name, excerpt(x1, sizeof(x1), ev->v[C_TIME], ev->len[C_TIME], 40));
        return BH_DLQ_INVALID_FIELD;
    }
    return BH_DLQ_REASON_COUNT;
}

/* --- producing ------------------------------------------------------------- */

static int
produce_event(struct market *m, struct slot *s, const struct event *ev, const struct bh_block *blk,
              int64_t line)
{
    const struct bh_market_event e = {
        .record_id = {ev->v[C_ID], ev->len[C_ID]},
        .block_id = {blk->id, strlen(blk->id)},
        .uscc = {ev->v[C_USCC], ev->len[C_USCC]},
        .business_name = {ev->v[C_NAME], ev->len[C_NAME]},
        .event_type = {ev->v[C_TYPE], ev->len[C_TYPE]},
        .outcome = {ev->v[C_OUTCOME], ev->len[C_OUTCOME]},
        .has_fine = ev->has_fine,
        .fine_fen = ev->fen,
        .address = {ev->v[C_ADDR], ev->len[C_ADDR]},
        .grid_code = {ev->v[C_GRID], ev->len[C_GRID]},
        .has_location = ev->has_point,
        .lon = ev->lon,
        .lat = ev->lat,
        .occurred_at = ev->occurred_at,
        .source_file = {m->f.shown, strlen(m->f.shown)},
        .source_row = m->f.row,
        .source_line = line,
    };
    const void *data;
    size_t len;
    int rc = bh_market_writer_encode(m->writer, &e, &data, &len);
    if (rc < 0)
        return rc;
    s->dead = 0;
    s->bytes = len + e.block_id.len + ev->len[C_ID];
    return publish_row(m, blk->id, e.block_id.len, data, len, ev->v[C_ID], ev->len[C_ID], &s->d);
}

/* The current row's original bytes, without its line end. */
static size_t
raw_row(const struct market *m)
{
    size_t n = m->f.rawlen;
    while (n > 0 && (m->raw[n - 1] == '\n' || m->raw[n - 1] == '\r'))
        n--;
    return n;
}

/* --- rows Kafka refuses as too large --------------------------------------- */

/* What a dead letter leaves for its payload under the producer's message.max.bytes. */
#define DEAD_LETTER_OVERHEAD 4096

static size_t
dead_letter_room(const struct market *m)
{
    size_t max = bh_kafka_max_message(m->a->hub->kafka);
    return max > DEAD_LETTER_OVERHEAD ? max - DEAD_LETTER_OVERHEAD : 0;
}

/* How often the row ending at END was refused as too large in a delivery report (see big). */
static int
big_level(const struct market *m, uint64_t end)
{
    if (m->big_dev != m->f.dev || m->big_ino != m->f.ino)
        return 0;
    for (size_t i = 0; i < m->nbig; i++)
        if (m->big[i].end == end)
            return m->big[i].level;
    return 0;
}

/* A round of deliveries is over before a rewind: remember its largest too-large refusal. */
static void
note_big(struct market *m)
{
    struct file *f = &m->f;
    if (!m->tl_any)
        return;
    m->tl_any = 0;
    if (m->big_dev != f->dev || m->big_ino != f->ino) {
        m->nbig = 0;
        m->big_dev = f->dev;
        m->big_ino = f->ino;
    }
    struct big_row *b = NULL;
    for (size_t i = 0; i < m->nbig && b == NULL; i++)
        if (m->big[i].end == m->tl_end)
            b = &m->big[i];
    if (b == NULL) {
        if (m->nbig == m->bigcap) {
            size_t cap = m->bigcap ? m->bigcap * 2 : 8;
            struct big_row *v = realloc(m->big, cap * sizeof(*v));
            if (v == NULL)
                return; /* it is refused again, and noted then */
            m->big = v;
            m->bigcap = cap;
        }
        b = &m->big[m->nbig++];
        b->end = m->tl_end;
        b->level = 0;
    }
    b->level = b->level + 1 > (m->tl_dead ? 2 : 1) ? b->level + 1 : (m->tl_dead ? 2 : 1);
    bh_warn(m->a->name,
            "%s: Kafka refused the %s ending at byte %llu (%zu bytes) as too large; read again, %s",
            f->shown, m->tl_dead ? "dead letter of the row" : "record of the row",
            (unsigned long long)m->tl_end, m->tl_bytes,
            b->level == 1   ? "the row is dead-lettered as too_large"
            : b->level == 2 ? "its dead letter goes without the payload"
                            : "the row is skipped");
}

/* Give up on the row of slot S: it counts as handled, so that the file goes on. */
static void
skip_row(struct market *m, struct slot *s, const char *detail)
{
    bh_error(m->a->name, "%s: no record nor dead letter of it fits in Kafka; skipped: %s",
             m->f.shown, detail);
    on_delivered(&s->d, RD_KAFKA_RESP_ERR_NO_ERROR, -1, -1);
}

/* ROW: the data row's number, 0 for the header. */
static int
dead_letter(struct market *m, struct slot *s, enum bh_dlq_reason r, const char *why, int64_t row,
            int64_t line)
{
    struct bh_dlq_origin origin = {"file", m->f.shown, NULL, line};
    char detail[900];
    size_t len = raw_row(m), k;
    int level = big_level(m, s->end), rc;
    if (row > 0)
        snprintf(detail, sizeof(detail), "row %lld: %s", (long long)row, why);
    else
        snprintf(detail, sizeof(detail), "header: %s", why);
    k = strlen(detail);
    s->dead = 1;
    if (level >= 3) {
        skip_row(m, s, detail);
        return 0;
    }
    if (level == 2) {
        snprintf(detail + k, sizeof(detail) - k,
                 " (payload left out: Kafka refused this dead letter with it as too large)");
        len = 0;
    }
    size_t room = dead_letter_room(m);
    if (room < m->a->hub->conf->dead_letter.max_payload && len > room) {
        /* Cut at dead_letter.max_payload it would still not fit under message.max.bytes. */
        snprintf(detail + k, sizeof(detail) - k,
                 " (payload cut to its first %zu of %zu bytes to fit under message.max.bytes)",
                 room, len);
        len = room;
    }
    s->bytes = len;
    rc = publish_dead(m, r, detail, &origin, m->raw, len, &s->d);
    if (rc == -EMSGSIZE && len > 0) {
        snprintf(detail + k, sizeof(detail) - k,
                 " (payload left out: it does not fit under message.max.bytes)");
        s->bytes = 0;
        rc = publish_dead(m, r, detail, &origin, m->raw, 0, &s->d);
    }
    if (rc == -EMSGSIZE) {
        skip_row(m, s, detail);
        return 0;
    }
    if (rc == 0)
        m->f.dead++;
    return rc;
}

/* A producing error: what is out finishes, then the file rewinds to its checkpoint. */
static void
produce_failed(struct market *m, int rc, int64_t line)
{
    unpush_slot(m);
    if (!m->f.failed)
        bh_warn(m->a->name, "%s: line %lld could not be queued for Kafka (%s); rewinding",
                m->f.shown, (long long)line, strerror(-rc));
    m->f.failed = 1;
    kick(m);
}

/* A data row: a record keyed by its block, or a dead letter. */
static void
data_row(struct market *m, uint64_t end, int64_t line)
{
    struct event ev;
    char why[512];
    const struct bh_block *blk = NULL;
    enum bh_dlq_reason r = validate(m, &ev, why, sizeof(why));
    if (r == BH_DLQ_REASON_COUNT && big_level(m, end) >= 1) {
        r = BH_DLQ_TOO_LARGE;
        snprintf(why, sizeof(why),
                 "Kafka refused its record as too large (the broker's or the topic's message size "
                 "limit)");
    }
    if (r == BH_DLQ_REASON_COUNT) {
        blk = bh_blockmap_resolve(m->a->hub->blocks, ev.v[C_GRID], ev.len[C_GRID], ev.has_point,
                                  ev.lon, ev.lat);
        if (blk == NULL) {
            r = BH_DLQ_UNRESOLVED_BLOCK;
            char grid[48] = "(none)", point[64] = "(none)";
            if (ev.v[C_GRID] != NULL)
                excerpt(grid, sizeof(grid), ev.v[C_GRID], ev.len[C_GRID], 32);
            if (ev.has_point)
                snprintf(point, sizeof(point), "(%.6f, %.6f)", ev.lon, ev.lat);
            snprintf(why, sizeof(why), "no block for %s %s nor for %s/%s %s", columns[C_GRID].name,
                     grid, columns[C_LON].name, columns[C_LAT].name, point);
        }
    }
    struct slot *s = push_slot(m, end);
    s->d.cb = on_delivered;
    int rc;
    if (r == BH_DLQ_REASON_COUNT) {
        rc = produce_event(m, s, &ev, blk, line);
        if (rc == -EMSGSIZE) { /* it never fits: a dead letter, and the file goes on */
            snprintf(why, sizeof(why),
                     "its record (%zu bytes) is larger than the producer's message.max.bytes (%zu "
                     "bytes)",
                     s->bytes, bh_kafka_max_message(m->a->hub->kafka));
            rc = dead_letter(m, s, BH_DLQ_TOO_LARGE, why, m->f.row, line);
        } else if (rc == -EINVAL) { /* encoding failed, or Kafka refused the record itself */
            snprintf(why, sizeof(why), "the record could not be encoded or was refused by Kafka");
            rc = dead_letter(m, s, BH_DLQ_ENCODE_FAILED, why, m->f.row, line);
        } else if (rc == 0) {
            m->f.records++;
        }
    } else {
        rc = dead_letter(m, s, r, why, m->f.row, line);
    }
    if (rc < 0)
        produce_failed(m, rc, line);
}

/* --- the header ------------------------------------------------------------ */

/* The column map from the header row; on failure the reason in WHY. */
static int
map_header(struct market *m, char *why, size_t n)
{
    const struct bh_market_csv *p = &m->csv;
    struct file *f = &m->f;
    if (f->bad_encoding) {
        snprintf(why, n, "the header is not valid %s (bytes at offset %llu)", m->conf->encoding,
                 (unsigned long long)f->bad_at);
        return -EINVAL;
    }
    if (p->flags & (BH_MARKET_CSV_TOO_LARGE | BH_MARKET_CSV_UNCLOSED | BH_MARKET_CSV_BAD_QUOTE) ||
        p->blank) {
        snprintf(why, n, "the header row is %s",
                 p->blank                             ? "empty"
                 : p->flags & BH_MARKET_CSV_TOO_LARGE ? "longer than max_row_bytes"
                                                      : "not valid RFC 4180 CSV");
        return -EINVAL;
    }
    for (int c = 0; c < NCOL; c++)
        f->col[c] = -1;
    f->nheader = p->nfields;
    for (size_t i = 0; i < p->nfields; i++) {
        size_t len;
        const char *s = bh_market_csv_field(p, i, &len);
        while (len > 0 && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        for (int c = 0; c < NCOL; c++) {
            if (strlen(columns[c].name) != len || memcmp(columns[c].name, s, len) != 0)
                continue;
            if (f->col[c] >= 0) {
                snprintf(why, n, "column %s appears twice", columns[c].name);
                return -EINVAL;
            }
            f->col[c] = (int)i;
        }
    }
    int k = snprintf(why, n, "missing required column(s):");
    int missing = 0;
    for (int c = 0; c < NCOL; c++) {
        if (columns[c].required && f->col[c] < 0 && k > 0 && (size_t)k < n) {
            k += snprintf(why + k, n - (size_t)k, " %s", columns[c].name);
            missing = 1;
        }
    }
    if (missing)
        return -EINVAL;
    if ((f->col[C_LON] < 0) != (f->col[C_LAT] < 0)) {
        snprintf(why, n, "%s and %s come together", columns[C_LON].name, columns[C_LAT].name);
        return -EINVAL;
    }
    return 0;
}

static void
header_row(struct market *m, uint64_t end)
{
    struct file *f = &m->f;
    char why[400];
    f->header_done = 1;
    if (map_header(m, why, sizeof(why)) < 0) {
        bh_warn(m->a->name, "%s: %s; the file goes to failed/", f->shown, why);
        f->bad_header = 1;
        f->input_done = 1;
        if (f->resuming && f->resume.offset >= end)
            return; /* its dead letter was acknowledged before a retry */
        struct slot *s = push_slot(m, end);
        s->d.cb = on_delivered;
        int rc = dead_letter(m, s, BH_DLQ_INVALID_HEADER, why, 0, 1);
        if (rc < 0)
            produce_failed(m, rc, 1);
        return;
    }
    if (f->resuming && f->resume.offset > end) {
        /* Everything up to the checkpoint is acknowledged: read on from there. */
        f->next_off = f->resume.offset;
        f->row = f->resume.row;
        f->lines = f->resume.line;
        m->acked.offset = f->resume.offset;
        m->acked.row = f->resume.row;
        m->acked.line = f->resume.line;
        f->jump = 1;
        bh_info(m->a->name, "%s: resuming at byte %llu (after row %lld)", f->shown,
                (unsigned long long)f->resume.offset, (long long)f->resume.row);
    }
}

/* --- reading --------------------------------------------------------------- */

/* A complete row ends at file offset END. */
static void
row_done(struct market *m, uint64_t end)
{
    struct file *f = &m->f;
    struct bh_market_csv *p = &m->csv;
    int64_t line = f->lines + 1; /* the line it starts on */
    f->lines += (int64_t)p->row_lines;
    if (!f->header_done) {
        header_row(m, end);
    } else if (!p->blank || f->bad_encoding) {
        f->row++;
        m->rows_read++;
        data_row(m, end, line);
    }
    bh_market_csv_next_row(p);
    f->rawlen = 0;
    f->bad_encoding = 0;
}

static void
keep_raw(struct market *m, const char *s, size_t n)
{
    size_t room = m->rawcap - m->f.rawlen;
    if (n > room) {
        size_t want = m->f.rawlen + n;
        size_t cap = m->rawcap;
        while (cap < want && cap < m->conf->max_row_bytes)
            cap *= 2;
        if (cap > m->conf->max_row_bytes)
            cap = m->conf->max_row_bytes;
        char *r = cap > m->rawcap ? realloc(m->raw, cap) : NULL;
        if (r != NULL) {
            m->raw = r;
            m->rawcap = cap;
        }
        room = m->rawcap - m->f.rawlen;
    }
    size_t k = n < room ? n : room; /* past max_row_bytes the dead letter is cut anyway */
    memcpy(m->raw + m->f.rawlen, s, k);
    m->f.rawlen += k;
}

static void
parse(struct market *m, const char *s, size_t n, uint64_t end)
{
    if (m->f.at_start && n > 0) {
        m->f.at_start = 0;
        if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
            s += 3;
            n -= 3;
        }
    }
    while (n > 0) {
        size_t k = bh_market_csv_feed(&m->csv, s, n);
        s += k;
        n -= k;
        if (m->csv.complete)
            row_done(m, end);
    }
}

/*
 * Decode and parse one raw segment of the file (OFF is its offset, it holds
 * at most one line end, at its end). FINAL: the end of the file.
 */
static void
segment(struct market *m, const char *seg, size_t n, uint64_t off, int final)
{
    const char *in = seg;
    size_t inlen = n;
    keep_raw(m, seg, n);
    for (;;) {
        char *out = m->out;
        size_t left = m->outcap;
        int rc = bh_market_decoder_run(&m->dec, &in, &inlen, &out, &left, final);
        if (rc == BH_DECODE_INVALID && !m->f.bad_encoding) {
            m->f.bad_encoding = 1;
            m->f.bad_at = off + (uint64_t)(in - seg) - (in > seg);
        }
        parse(m, m->out, (size_t)(out - m->out), off + n);
        if (rc == 0)
            break;
    }
}

static void
on_read(uv_fs_t *req)
{
    struct market *m = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    m->read_busy = 0;
    if (m->stopping || m->f.fd < 0 || m->f.failed || m->f.input_done) {
        step(m);
        return;
    }
    if (m->read_discard) {
        m->read_discard = 0;
        read_ahead(m);
        return;
    }
    m->read_ready = 1;
    m->read_result = r;
    if (r > 0)
        m->f.next_off += (uint64_t)r;
    if (m->starved) {
        m->starved = 0;
        process(m);
    }
}

/* Start reading the next chunk into the spare buffer, unless that is under way or done. */
static void
read_ahead(struct market *m)
{
    struct file *f = &m->f;
    if (m->read_busy || m->read_ready || f->eof || m->stopping)
        return;
    uv_buf_t buf = uv_buf_init(m->chunk[!m->cur], (unsigned)m->conf->read_size);
    m->read_req.data = m;
    m->read_at = f->next_off;
    int rc =
        uv_fs_read(m->a->hub->loop, &m->read_req, f->fd, &buf, 1, (int64_t)f->next_off, on_read);
    if (rc < 0) {
        m->read_ready = 1;
        m->read_result = rc;
        return;
    }
    m->read_busy = 1;
}

/* The chunk read ahead becomes the current one: 1, or 0 if it is not there yet. */
static int
next_chunk(struct market *m)
{
    struct file *f = &m->f;
    if (!m->read_ready) {
        m->starved = 1;
        read_ahead(m);
        return 0;
    }
    m->read_ready = 0;
    if (m->read_result < 0) {
        bh_error(m->a->name, "%s: read: %s; rewinding", f->shown, uv_strerror((int)m->read_result));
        f->failed = 1;
        return 0;
    }
    m->cur = !m->cur;
    f->chunk_off = m->read_at;
    f->pos = 0;
    f->len = (size_t)m->read_result;
    f->eof = f->len == 0;
    read_ahead(m);
    return 1;
}

/* The rest of the input is not wanted: go on reading at f->next_off. */
static void
jump(struct market *m)
{
    struct file *f = &m->f;
    f->jump = 0;
    f->pos = f->len = 0;
    f->eof = 0;
    if (m->read_busy)
        m->read_discard = 1;
    m->read_ready = 0;
    bh_market_decoder_reset(&m->dec);
}

/* The end of the file: a last row without a line end, or bytes cut short. */
static void
end_of_input(struct market *m)
{
    struct file *f = &m->f;
    uint64_t end = f->chunk_off;
    segment(m, "", 0, end, 1);
    if (bh_market_csv_finish(&m->csv) || (f->bad_encoding && f->header_done))
        row_done(m, end);
    f->input_done = 1;
    if (!f->header_done && !f->bad_header) {
        /* not even a header: say so */
        m->csv.blank = 1;
        m->csv.complete = 1;
        row_done(m, end);
    }
}

static void
pause_reading(struct market *m)
{
    if (bh_flow_stop(&m->flow))
        bh_debug(m->a->name, "%s: %zu rows out, reading paused after row %lld", m->f.shown,
                 occupied(m), (long long)m->f.row);
    txn_maybe(m); /* exactly_once: the rows out are acknowledged by their commit */
}

/*
 * Work through the input a line at a time for as long as the ring has room
 * and chunks are there; come back on a delivery (paused) or a read (starved).
 */
static void
process(struct market *m)
{
    struct file *f = &m->f;
    while (!m->stopping && !f->failed && !f->input_done) {
        if (m->eos) {
            if (m->tx.nd >= (size_t)m->conf->checkpoint_rows)
                txn_maybe(m);
            if (m->tx.busy || !m->tx.ready || m->tx.dead) {
                m->held = 1;
                return; /* txn_done comes back (step) */
            }
        }
        if (f->jump)
            jump(m);
        if (f->pos == f->len && !f->eof && !next_chunk(m)) {
            if (f->failed)
                break;
            return; /* starved: on_read comes back */
        }
        if (bh_flow_at_limit(&m->flow)) {
            pause_reading(m);
            return; /* on_delivered comes back below half */
        }
        if (m->flow.operator_pause) {
            m->held = 1;
            return; /* resume_intake comes back */
        }
        if (f->eof) {
            end_of_input(m);
            break;
        }
        const char *seg = m->chunk[m->cur] + f->pos;
        size_t n = f->len - f->pos;
        const char *nl = memchr(seg, '\n', n);
        if (nl != NULL)
            n = (size_t)(nl - seg) + 1;
        segment(m, seg, n, f->chunk_off + f->pos, 0);
        f->pos += n;
    }
    step(m);
}

/* --- the files ------------------------------------------------------------- */

static void
reset_file(struct market *m)
{
    struct file *f = &m->f;
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    m->head = m->tail = 0;
    m->in_flight = 0;
    m->flow.held = 0;
    m->flow.full = false;
    m->held = 0;
    m->starved = 0;
    m->read_ready = 0;
    m->read_discard = 0;
    m->since_ckpt = 0;
    memset(&m->acked, 0, sizeof(m->acked));
    bh_market_csv_next_row(&m->csv);
    bh_market_decoder_reset(&m->dec);
}

/* Move NAME from the spool into SUBDIR without replacing a file already there. */
static int
move_to(struct market *m, const char *name, const char *subdir, char *dest, size_t destlen)
{
    char from[PATH_MAX];
    snprintf(from, sizeof(from), "%s/%s", m->conf->spool_dir, name);
    for (int i = 0; i < 1000; i++) {
        if (i == 0)
            snprintf(dest, destlen, "%s/%s/%s", m->conf->spool_dir, subdir, name);
        else
            snprintf(dest, destlen, "%s/%s/%s.%d", m->conf->spool_dir, subdir, name, i);
        if (renameat2(AT_FDCWD, from, AT_FDCWD, dest, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno != EEXIST)
            return -errno;
    }
    return -EEXIST;
}

/*
 * Open the settled file of entry E. -EAGAIN: it changed since it was listed
 * (it settles anew); -EINVAL: it is not a regular file after all; else 0 or
 * open's error.
 */
static int
open_file(struct market *m, struct bh_market_spool_entry *e)
{
    struct file *f = &m->f;
    char path[PATH_MAX];
    struct stat st;
    reset_file(m);
    snprintf(path, sizeof(path), "%s/%s", m->conf->spool_dir, e->name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if ((uint64_t)st.st_dev != e->dev || (uint64_t)st.st_ino != e->ino ||
        (uint64_t)st.st_size != e->size || mtime != e->mtime_ns) {
        close(fd);
        bh_market_spool_note(&m->spool, e->name, &st, uv_now(m->a->hub->loop));
        return -EAGAIN;
    }
    f->fd = fd;
    snprintf(f->name, sizeof(f->name), "%s", e->name);
    bh_market_show_name(f->shown, sizeof(f->shown), e->name);
    f->dev = (uint64_t)st.st_dev;
    f->ino = (uint64_t)st.st_ino;
    f->size = (uint64_t)st.st_size;
    f->at_start = 1;
    m->acked.dev = f->dev;
    m->acked.ino = f->ino;
    m->acked.size = f->size;
    snprintf(m->acked.file, sizeof(m->acked.file), "%s", f->shown);
    if (m->ck_valid && m->ck.dev == f->dev && m->ck.ino == f->ino && m->ck.size == f->size &&
        strcmp(m->ck.file, f->shown) == 0 && m->ck.offset > 0) {
        f->resume = m->ck;
        f->resuming = 1;
    }
    if (m->big_dev != f->dev || m->big_ino != f->ino)
        m->nbig = 0; /* too-large rows noted are of another file */
    bh_info(m->a->name, "reading %s (%llu bytes)", f->shown, (unsigned long long)f->size);
    return 0;
}

static void
on_backoff(uv_timer_t *t)
{
    struct market *m = t->data;
    m->backoff_busy = 0;
    scan(m);
}

/*
 * Close the file and take it up again from its checkpoint after
 * retry_backoff: after a failed delivery (everything else that was out is
 * back), or when it cannot be moved out of the spool.
 */
static void
retry_later(struct market *m)
{
    note_big(m);
    checkpoint(m);
    close(m->f.fd);
    reset_file(m);
    if (m->stopping)
        return;
    m->backoff_busy = 1;
    uv_timer_start(&m->backoff, on_backoff, (uint64_t)m->conf->retry_backoff, 0);
}

/* DEST (a path move_to gave) as shown in a log line. */
static const char *
show_dest(const struct market *m, const char *dest, char *buf, size_t size)
{
    size_t n = strlen(m->conf->spool_dir);
    if (strncmp(dest, m->conf->spool_dir, n) == 0 && dest[n] == '/') {
        int k = snprintf(buf, size, "%s/", m->conf->spool_dir);
        if (k > 0 && (size_t)k < size)
            bh_market_show_name(buf + k, size - (size_t)k, dest + n + 1);
    } else {
        bh_market_show_name(buf, size, dest);
    }
    return buf;
}

/* Every row of the file is acknowledged: done/ (or deleted), or failed/. */
static void
finish_file(struct market *m)
{
    struct file *f = &m->f;
    char dest[PATH_MAX + 2 * NAME_MAX], shown[PATH_MAX + BH_MARKET_SHOWN_MAX + 16];
    int rc;
    if (f->bad_header) {
        rc = move_to(m, f->name, "failed", dest, sizeof(dest));
    } else if (m->delete_done) {
        snprintf(dest, sizeof(dest), "%s/%s", m->conf->spool_dir, f->name);
        rc = unlink(dest) < 0 ? -errno : 0;
        snprintf(dest, sizeof(dest), "(deleted)");
    } else {
        rc = move_to(m, f->name, "done", dest, sizeof(dest));
    }
    if (rc < 0) {
        /* The checkpoint stays (all of it acknowledged): the retry publishes nothing again. */
        bh_error(m->a->name, "%s: cannot move it out of the spool: %s; retrying in %lld ms",
                 f->shown, strerror(-rc), (long long)m->conf->retry_backoff);
        retry_later(m);
        return;
    }
    if (f->bad_header)
        m->files_failed++;
    else
        m->files_done++;
    bh_info(m->a->name, "%s: %zu records, %zu dead letters -> %s", f->shown, f->records, f->dead,
            show_dest(m, dest, shown, sizeof(shown)));
    close(f->fd);
    if (unlink(m->state_path) < 0 && errno != ENOENT)
        bh_warn(m->a->name, "cannot remove %s: %s", m->state_path, strerror(errno));
    m->ck_valid = 0;
    m->ck_dirty = 0;
    m->nbig = 0;
    m->big_dev = m->big_ino = 0;
    reset_file(m);
    scan(m);
}

/* What entry E is, for a reason: "a directory", "a symbolic link to 'x'"... */
static const char *
describe(const struct market *m, const struct bh_market_spool_entry *e, char *buf, size_t size)
{
    switch (e->mode & S_IFMT) {
    case S_IFDIR:
        return "a directory";
    case S_IFIFO:
        return "a FIFO";
    case S_IFSOCK:
        return "a socket";
    case S_IFCHR:
    case S_IFBLK:
        return "a device";
    case S_IFLNK: {
        char path[PATH_MAX], target[PATH_MAX], shown[BH_MARKET_SHOWN_MAX];
        snprintf(path, sizeof(path), "%s/%s", m->conf->spool_dir, e->name);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
            return "a symbolic link";
        target[n] = '\0';
        size_t k = bh_market_show_name(shown, sizeof(shown), target);
        snprintf(buf, size, "a symbolic link to '%.*s%s'", (int)bh_utf8_cut(shown, k, 200), shown,
                 bh_utf8_cut(shown, k, 200) < k ? "..." : "");
        return buf;
    }
    default:
        return "not a regular file";
    }
}

/*
 * A *.csv entry blockhub cannot read as a file (WHAT it is): a log line, one
 * dead letter, and out of the way to failed/ so that the others go on. It is
 * not reported again while it stays as it is.
 */
static void
reject_entry(struct market *m, struct bh_market_spool_entry *e, const char *what)
{
    char shown[BH_MARKET_SHOWN_MAX], detail[BH_MARKET_SHOWN_MAX + 600];
    char dest[PATH_MAX + 2 * NAME_MAX];
    bh_market_show_name(shown, sizeof(shown), e->name);
    int rc = move_to(m, e->name, "failed", dest, sizeof(dest));
    char where[160];
    if (rc == 0)
        snprintf(where, sizeof(where), "moved to failed/");
    else
        snprintf(where, sizeof(where), "left in the spool (cannot move it to failed/: %s)",
                 strerror(-rc));
    snprintf(detail, sizeof(detail), "file %s: %s, not a file blockhub can read; %s", shown, what,
             where);
    bh_error(m->a->name, "%s", detail);
    struct bh_dlq_origin origin = {"file", shown, NULL, -1};
    rc = publish_dead(m, BH_DLQ_INVALID_HEADER, detail, &origin, "", 0, NULL);
    e->reported = rc == 0; /* else: again at the next scan */
    m->files_failed++;
}

static void
on_settle(uv_timer_t *t)
{
    scan(t->data);
}

/*
 * From the entries listed: every entry that is not a file is rejected; the
 * file a checkpoint is for comes first (a checkpoint of another would replace
 * it), else the first settled file in name order. A file not yet settled is
 * looked at again when it may be.
 */
static void
take(struct market *m)
{
    struct bh_market_spool *sp = &m->spool;
    uint64_t now = uv_now(m->a->hub->loop), settle = (uint64_t)m->conf->settle_time;
    uint64_t wait = UINT64_MAX;
    struct bh_market_spool_entry *first = NULL, *interrupted = NULL;
    char shown[BH_MARKET_SHOWN_MAX], what[300];
    if (m->eos && (m->tx.busy || !m->tx.ready || m->tx.dead))
        return; /* txn_done scans again */
    for (size_t i = 0; i < sp->n; i++) {
        struct bh_market_spool_entry *e = &sp->v[i];
        if (e->kind != BH_MARKET_SPOOL_FILE) {
            if (!e->reported)
                reject_entry(m, e, describe(m, e, what, sizeof(what)));
            continue;
        }
        if (e->reported)
            continue; /* a file that could not be opened, still there as it was */
        bh_market_show_name(shown, sizeof(shown), e->name);
        int ck = m->ck_valid && strcmp(shown, m->ck.file) == 0;
        if (ck)
            interrupted = e;
        if (!bh_market_spool_settled(e, now, settle)) {
            uint64_t left = e->since + settle > now ? e->since + settle - now : 1;
            if (left < wait)
                wait = left;
            bh_debug(m->a->name, "%s: %llu bytes, waiting until it is unchanged for %llu ms", shown,
                     (unsigned long long)e->size, (unsigned long long)settle);
            continue;
        }
        if (first == NULL || strcmp(e->name, first->name) < 0)
            first = e;
    }
    struct bh_market_spool_entry *pick = interrupted;
    if (pick == NULL)
        pick = first;
    else if (!bh_market_spool_settled(pick, now, settle))
        pick = NULL;
    if (pick == NULL) {
        if (wait != UINT64_MAX)
            uv_timer_start(&m->settle, on_settle, wait, 0);
        return;
    }
    int rc = open_file(m, pick);
    if (rc == -EAGAIN) {
        uv_timer_start(&m->settle, on_settle, settle, 0);
        return;
    }
    if (rc == -EACCES || rc == -EPERM || rc == -EINVAL || rc == -ELOOP || rc == -ENXIO ||
        rc == -EISDIR) {
        /* It will never be readable as it is: out of the way, the others go on. */
        snprintf(what, sizeof(what), "a file that cannot be opened (%s)",
                 strerror(rc == -EINVAL ? EINVAL : -rc));
        reject_entry(m, pick, what);
        if (pick->reported)
            scan(m);
        return;
    }
    if (rc < 0) {
        bh_market_show_name(shown, sizeof(shown), pick->name);
        if (rc != -ENOENT)
            bh_warn(m->a->name, "cannot open %s: %s; trying again at the next scan", shown,
                    strerror(-rc));
        return;
    }
    process(m);
}

static void
on_scandir(uv_fs_t *req)
{
    struct market *m = req->data;
    uv_dirent_t ent;
    int listed = req->result >= 0;
    m->scan_busy = 0;
    if (!listed) {
        bh_error(m->a->name, "cannot list %s: %s", m->conf->spool_dir,
                 uv_strerror((int)req->result));
    } else {
        uint64_t now = uv_now(m->a->hub->loop);
        bh_market_spool_begin(&m->spool);
        while (uv_fs_scandir_next(req, &ent) != UV_EOF) {
            size_t len = strlen(ent.name);
            char path[PATH_MAX];
            struct stat st;
            if (len <= 4 || strcmp(ent.name + len - 4, ".csv") != 0 || len > NAME_MAX)
                continue;
            snprintf(path, sizeof(path), "%s/%s", m->conf->spool_dir, ent.name);
            if (lstat(path, &st) < 0)
                continue; /* gone since */
            if (bh_market_spool_note(&m->spool, ent.name, &st, now) == NULL)
                bh_error(m->a->name, "out of memory listing %s", m->conf->spool_dir);
        }
        bh_market_spool_end(&m->spool);
    }
    uv_fs_req_cleanup(req);
    if (m->stopping) {
        step(m);
        return;
    }
    if (m->f.fd < 0 && listed)
        take(m);
}

static void
scan(struct market *m)
{
    if (m->stopping || m->scan_busy || m->backoff_busy || m->f.fd >= 0)
        return;
    m->scan_req.data = m;
    if (uv_fs_scandir(m->a->hub->loop, &m->scan_req, m->conf->spool_dir, 0, on_scandir) == 0)
        m->scan_busy = 1;
}

static void
on_rescan(uv_timer_t *t)
{
    scan(t->data);
}

static void
on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    (void)filename;
    (void)events;
    (void)status;
    scan(h->data);
}

/* --- the state machine ----------------------------------------------------- */

static void
on_closed(uv_handle_t *h)
{
    struct market *m = h->data;
    if (--m->handles != 0)
        return;
    if (m->failed_stop)
        bh_component_failed(m->a);
    else
        bh_component_stopped(m->a);
}

/*
 * What to do next once something finished (a read, the last delivery, a
 * checkpoint write): go on reading, finish or rewind the file, or complete a
 * stop.
 */
static void
step(struct market *m)
{
    struct file *f = &m->f;
    txn_maybe(m);
    int reading = f->fd >= 0 && !f->failed && !f->input_done && !m->stopping;
    if (reading || (f->fd >= 0 && m->in_flight > 0)) {
        if (reading && !m->flow.operator_pause && (bh_flow_room(&m->flow) || m->held)) {
            bh_debug(m->a->name, "%s: %zu rows out, reading on after row %lld", f->shown,
                     occupied(m), (long long)f->row);
            m->held = 0;
            process(m);
        }
        return; /* a delivery or a read comes back here */
    }
    if (m->read_busy)
        return; /* on_read comes back here */
    if (f->fd >= 0) {
        if (f->failed) {
            retry_later(m);
        } else if (f->input_done) {
            if (m->ck_busy)
                return; /* ck_done comes back here */
            finish_file(m);
        } else if (m->stopping) {
            if (!checkpoint_current(m)) {
                if (!m->ck_busy)
                    checkpoint(m);
                return; /* ck_done comes back here */
            }
            close(f->fd);
            f->fd = -1;
        }
    }
    if (!m->stopping || m->closing || m->scan_busy || m->ck_busy || f->fd >= 0 || m->tx.busy)
        return;
    m->closing = 1;
    uv_handle_t *handles[] = {(uv_handle_t *)&m->watch,   (uv_handle_t *)&m->rescan,
                              (uv_handle_t *)&m->kick,    (uv_handle_t *)&m->ckpt_timer,
                              (uv_handle_t *)&m->backoff, (uv_handle_t *)&m->settle,
                              (uv_handle_t *)&m->tx.retry};
    m->handles = sizeof(handles) / sizeof(handles[0]);
    for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++)
        uv_close(handles[i], on_closed);
}

/* --- the adapter ----------------------------------------------------------- */

static int
make_dir(const char *parent, const char *sub, char *errstr, size_t errstr_size)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", parent, sub);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        snprintf(errstr, errstr_size, "cannot create %s: %s", path, strerror(errno));
        return -errno;
    }
    return 0;
}

/* The config's checks of single keys: what start() would refuse, --check refuses. */
static int
check_encoding(const void *value, char *why, size_t n)
{
    const char *enc = *(char *const *)value;
    struct bh_market_decoder d;
    int rc = bh_market_decoder_open(&d, enc);
    if (rc == 0) {
        bh_market_decoder_close(&d);
        return 0;
    }
    int k = (int)bh_utf8_cut(enc, strlen(enc), 64);
    if (rc == -ENOTSUP)
        snprintf(why, n, "'%.*s' is not ASCII-compatible (GB18030, GBK, UTF-8 are)", k, enc);
    else
        snprintf(why, n, "iconv cannot convert '%.*s' to UTF-8", k, enc);
    return -EINVAL;
}

static int
check_done_action(const void *value, char *why, size_t n)
{
    const char *v = *(char *const *)value;
    if (strcmp(v, "move") == 0 || strcmp(v, "delete") == 0)
        return 0;
    snprintf(why, n, "'%.*s' is not move or delete", (int)bh_utf8_cut(v, strlen(v), 64), v);
    return -EINVAL;
}

/* The clients of exactly_once (made on the loop, used by the start job). */
static int
txn_setup(struct market *m, char *errstr, size_t n)
{
    const struct market_conf *c = m->conf;
    struct txn *t = &m->tx;
    struct bh_kafka *k = m->a->hub->kafka;
    const struct bh_kvlist *props = &m->a->hub->conf->kafka.properties;
    m->eos = 1;
    snprintf(t->id, sizeof(t->id), "%s", c->transactional_id ? c->transactional_id : "");
    if (t->id[0] == '\0')
        snprintf(t->id, sizeof(t->id), "blockhub-market-%s", m->a->name);
    snprintf(t->topic, sizeof(t->topic), "%s", c->position_topic ? c->position_topic : "");
    if (t->topic[0] == '\0')
        snprintf(t->topic, sizeof(t->topic), "blockhub.market.position.%s", m->a->name);
    const char *pinned[] = {"transactional.id",
                            t->id,
                            "enable.idempotence",
                            "true",
                            "acks",
                            "all",
                            "partitioner",
                            "murmur2_random",
                            "client.id",
                            t->id,
                            NULL};
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    int rc = bh_kafka_conf_set(pc, "bootstrap.servers", bh_kafka_bootstrap(k), errstr, n);
    for (size_t i = 0; rc == 0 && i < props->n; i++)
        if (bh_kafka_property_scope(props->k[i]) != BH_KAFKA_SCOPE_CONSUMER)
            rc = bh_kafka_conf_set(pc, props->k[i], props->v[i], errstr, n);
    for (size_t i = 0; rc == 0 && pinned[i] != NULL; i += 2)
        rc = bh_kafka_conf_set(pc, pinned[i], pinned[i + 1], errstr, n);
    if (rc < 0) {
        rd_kafka_conf_destroy(pc);
        return rc;
    }
    t->pconf = pc;
    /* A group only because assign() needs one: it never joins, nothing is committed. */
    char group[300];
    snprintf(group, sizeof(group), "%s-position", t->id);
    const char *cpinned[] = {"group.id",
                             group,
                             "isolation.level",
                             "read_committed",
                             "enable.partition.eof",
                             "true",
                             "enable.auto.commit",
                             "false",
                             "auto.offset.reset",
                             "earliest",
                             NULL};
    t->cconf = bh_kafka_consumer_conf(k, props, cpinned, 1, errstr, n);
    return t->cconf == NULL ? -EINVAL : 0;
}

static int
check_txn_id(const void *value, char *why, size_t n)
{
    const char *v = *(char *const *)value;
    if (v == NULL)
        return 0;
    size_t len = strlen(v);
    if (len == 0 || len > 200) {
        snprintf(why, n, "must be 1 to 200 characters");
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f) {
            snprintf(why, n, "'%.*s' has a character that is not printable ASCII (or a space)",
                     (int)bh_utf8_cut(v, len, 64), v);
            return -EINVAL;
        }
    }
    return 0;
}

static int
check_position_topic(const void *value, char *why, size_t n)
{
    if (*(char *const *)value == NULL)
        return 0;
    return bh_conf_check_topic(value, why, n);
}

/* A record's bytes besides the row's fields: source file name, numbers, framing, key, headers. */
#define RECORD_OVERHEAD 2048

static int
setup(struct market *m, char *errstr, size_t errstr_size)
{
    const struct market_conf *c = m->conf;
    struct stat st;
    char why[200];
    int rc;
    if (check_done_action(&c->done_action, why, sizeof(why)) < 0 ||
        check_encoding(&c->encoding, why, sizeof(why)) < 0) {
        snprintf(errstr, errstr_size, "%s", why); /* the config check refuses these first */
        return -EINVAL;
    }
    m->delete_done = strcmp(c->done_action, "delete") == 0;
    if (stat(c->spool_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(errstr, errstr_size, "spool_dir: %s is not a directory", c->spool_dir);
        return -ENOTDIR;
    }
    if ((rc = make_dir(c->spool_dir, "done", errstr, errstr_size)) < 0 ||
        (rc = make_dir(c->spool_dir, "failed", errstr, errstr_size)) < 0)
        return rc;
    if (asprintf(&m->state_path, "%s/%s.checkpoint", c->state_dir ? c->state_dir : c->spool_dir,
                 m->a->name) < 0) {
        m->state_path = NULL;
        return -ENOMEM;
    }
    const struct bh_schema *schema = bh_schemas_find(m->a->hub->schemas, SCHEMA);
    if (schema == NULL) {
        snprintf(errstr, errstr_size, "schema %s not found in the schemas directory", SCHEMA);
        return -ENOENT;
    }
    rc = bh_market_decoder_open(&m->dec, c->encoding);
    if (rc < 0) {
        snprintf(errstr, errstr_size,
                 rc == -ENOTSUP ? "encoding: '%s' is not ASCII-compatible (GB18030, GBK, UTF-8 are)"
                                : "encoding: iconv cannot convert '%s' to UTF-8",
                 c->encoding);
        return rc;
    }
    if (bh_market_csv_init(&m->csv, c->max_row_bytes) < 0)
        return -ENOMEM;
    m->cap = (size_t)c->max_in_flight;
    bh_flow_init(&m->flow, m->cap, UINT64_MAX);
    m->outcap = (size_t)c->read_size * 2 + 64;
    m->rawcap = c->max_row_bytes < 4096 ? c->max_row_bytes : 4096;
    m->ring = calloc(m->cap, sizeof(*m->ring));
    m->chunk[0] = malloc(c->read_size);
    m->chunk[1] = malloc(c->read_size);
    m->out = malloc(m->outcap);
    m->raw = malloc(m->rawcap);
    if (m->ring == NULL || m->chunk[0] == NULL || m->chunk[1] == NULL || m->out == NULL ||
        m->raw == NULL)
        return -ENOMEM;
    rc = bh_market_writer_new(&m->writer, m->a->hub->schemas, schema, m->a->hub->encoder, errstr,
                              errstr_size);
    if (rc < 0)
        return rc;
    if (c->exactly_once && (rc = txn_setup(m, errstr, errstr_size)) < 0)
        return rc;
    /* The latest checkpoint: where a file interrupted by a crash resumes (with
     * exactly_once, only until the position topic has one). */
    rc = bh_market_checkpoint_read(m->state_path, &m->ck);
    m->ck_valid = rc == 0;
    if (rc == -EINVAL)
        bh_warn(m->a->name, "%s is not a checkpoint; ignoring it", m->state_path);
    return 0;
}

static void
free_market(struct market *m)
{
    bh_market_writer_free(m->writer);
    if (m->dec.cd != NULL)
        bh_market_decoder_close(&m->dec);
    bh_market_csv_free(&m->csv);
    free(m->state_path);
    free(m->ring);
    free(m->chunk[0]);
    free(m->chunk[1]);
    free(m->out);
    free(m->raw);
    free(m->big);
    bh_market_spool_free(&m->spool);
    if (m->tx.rk != NULL)
        rd_kafka_destroy(m->tx.rk);
    if (m->tx.pconf != NULL)
        rd_kafka_conf_destroy(m->tx.pconf);
    if (m->tx.cconf != NULL)
        rd_kafka_conf_destroy(m->tx.cconf);
    free(m->tx.d);
    free(m);
}

static int
start(struct bh_component *a, char *errstr, size_t errstr_size)
{
    const struct market_conf *c = a->settings;
    struct market *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    m->a = a;
    m->conf = c;
    m->f.fd = -1;
    int rc = setup(m, errstr, errstr_size);
    if (rc < 0) {
        if (errstr[0] == '\0')
            snprintf(errstr, errstr_size, "%s", strerror(-rc));
        free_market(m);
        return rc;
    }
    uv_loop_t *loop = a->hub->loop;
    uv_timer_t *timers[] = {&m->rescan, &m->kick, &m->ckpt_timer, &m->backoff, &m->settle};
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = m;
    }
    uv_timer_init(loop, &m->tx.retry);
    m->tx.retry.data = m;
    uv_fs_event_init(loop, &m->watch);
    m->watch.data = m;
    rc = uv_fs_event_start(&m->watch, on_fs_event, c->spool_dir, 0);
    if (rc < 0) /* not fatal: the rescan timer still finds the files */
        bh_warn(a->name, "cannot watch %s (%s); relying on the rescan every %lld ms", c->spool_dir,
                uv_strerror(rc), (long long)c->rescan_interval);
    uv_timer_start(&m->rescan, on_rescan, (uint64_t)c->rescan_interval,
                   (uint64_t)c->rescan_interval);
    uv_timer_start(&m->ckpt_timer, on_ckpt_timer, (uint64_t)c->checkpoint_interval,
                   (uint64_t)c->checkpoint_interval);
    a->priv = m;
    bh_info(a->name, "market CSV files (%s) from %s -> %s", c->encoding, c->spool_dir, c->topic);
    size_t max = bh_kafka_max_message(a->hub->kafka);
    if (c->max_row_bytes + RECORD_OVERHEAD > max) {
        size_t keep = dead_letter_room(m);
        if (keep > a->hub->conf->dead_letter.max_payload)
            keep = a->hub->conf->dead_letter.max_payload;
        bh_warn(a->name,
                "max_row_bytes (%llu bytes) does not fit under the producer's message.max.bytes "
                "(%zu bytes): a row whose record comes out larger than that is dead-lettered as "
                "too_large (with at most its first %zu bytes) instead of published; lower "
                "max_row_bytes or raise kafka.properties.message.max.bytes",
                (unsigned long long)c->max_row_bytes, max, keep);
    }
    if (m->eos)
        txn_start(m); /* its end scans */
    else
        scan(m);
    return 0;
}

static void
stop(struct bh_component *a)
{
    struct market *m = a->priv;
    if (m->stopping) {
        kick(m);
        return; /* already stopping after a fatal error */
    }
    stop_intake(m);
    kick(m);
}

static void
destroy(struct bh_component *a)
{
    struct market *m = a->priv;
    if (m == NULL)
        return;
    if (m->f.fd >= 0)
        close(m->f.fd);
    free_market(m);
    a->priv = NULL;
}

/* Paused, no row is read (the file stays where it is, its checkpoint too);
 * the rows already out finish. */
static int
pause_intake(struct bh_component *a)
{
    struct market *m = a->priv;
    if (m->stopping)
        return -ESHUTDOWN;
    m->flow.operator_pause = true;
    bh_info(a->name, "paused%s%s", m->f.fd >= 0 ? " in " : "", m->f.fd >= 0 ? m->f.shown : "");
    return 0;
}

static int
resume_intake(struct bh_component *a)
{
    struct market *m = a->priv;
    m->flow.operator_pause = false;
    bh_info(a->name, "resumed");
    if (!m->stopping)
        kick(m);
    return 0;
}

static void
stats(const struct bh_component *a, struct bh_stats *out)
{
    const struct market *m = a->priv;
    if (m == NULL)
        return;
    bh_flow_stats(&m->flow, out);
    bh_stats_add(out, "files_done", "files published to the end", false, m->files_done);
    bh_stats_add(out, "files_failed", "files moved to failed/", false, m->files_failed);
    bh_stats_add(out, "rows_read", "data rows read (again after a rewind)", false, m->rows_read);
    if (m->eos) {
        bh_stats_add(out, "transactions_committed", "exactly_once: transactions committed", false,
                     m->tx.commits);
        bh_stats_add(out, "transactions_aborted", "exactly_once: transactions aborted", false,
                     m->tx.aborts);
    }
}

#define KEY(field) offsetof(struct market_conf, field)

static const struct bh_conf_key market_keys[] = {
    {.name = "spool_dir",
     .type = BH_CONF_STRING,
     .offset = KEY(spool_dir),
     .flags = BH_CONF_REQUIRED,
     .doc = "Directory the department drops NAME.csv files in (uploaded as NAME.csv.part, then "
            "renamed); done/ and failed/ are created in it."},
    {.name = "encoding",
     .type = BH_CONF_STRING,
     .offset = KEY(encoding),
     .def = "GB18030",
     .check = check_encoding,
     .doc = "Text encoding of the files, as iconv names it: GB18030, GBK, UTF-8 (a BOM is "
            "skipped), any ASCII-compatible one."},
    {.name = "topic",
     .type = BH_CONF_STRING,
     .offset = KEY(topic),
     .def = "dept.market",
     .check = bh_conf_check_topic,
     .doc = "Topic the records are published to, keyed by block."},
    {.name = "done_action",
     .type = BH_CONF_STRING,
     .offset = KEY(done_action),
     .def = "move",
     .check = check_done_action,
     .doc = "What happens to a file once every row is acknowledged or dead-lettered: move (to "
            "done/) or delete."},
    {.name = "state_dir",
     .type = BH_CONF_STRING,
     .offset = KEY(state_dir),
     .doc = "Directory of the checkpoint file NAME.checkpoint (default: spool_dir)."},
    {.name = "settle_time",
     .type = BH_CONF_DURATION,
     .offset = KEY(settle_time),
     .def = "2s",
     .min = 0,
     .max = 3600000,
     .doc = "A *.csv file is taken only once its size and modification time have stayed the same "
            "for this long, as blockhub sees them (no close-after-write event is available), so "
            "that a file written in place instead of uploaded as .part and renamed is taken whole "
            "(a writer pausing longer than this is taken early); 0 takes files at once."},
    {.name = "rescan_interval",
     .type = BH_CONF_DURATION,
     .offset = KEY(rescan_interval),
     .def = "5s",
     .min = 10,
     .max = 3600000,
     .doc = "How often the spool directory is listed in case a file-system event was missed."},
    {.name = "max_in_flight",
     .type = BH_CONF_INT,
     .offset = KEY(max_in_flight),
     .def = "10000",
     .min = 2,
     .max = 100000,
     .doc = "Rows out and not yet acknowledged, counted from the oldest one unacknowledged, at "
            "which reading pauses (it resumes below half); keep the sum over adapters below "
            "librdkafka's queue.buffering.max.messages."},
    {.name = "max_row_bytes",
     .type = BH_CONF_SIZE,
     .offset = KEY(max_row_bytes),
     .def = "512KiB",
     .min = 256,
     .max = 64LL * 1024 * 1024,
     .doc = "Longest row kept; a longer one (such as a quote that never closes) is dead-lettered "
            "as too_large. So is a row whose record Kafka refuses as too large (over the "
            "producer's message.max.bytes, or the broker's or topic's limit); start warns when "
            "this does not fit under message.max.bytes."},
    {.name = "read_size",
     .type = BH_CONF_SIZE,
     .offset = KEY(read_size),
     .def = "64KiB",
     .min = 16,
     .max = 16LL * 1024 * 1024,
     .doc = "Bytes read at a time (the loop handles one read's rows in one turn)."},
    {.name = "checkpoint_interval",
     .type = BH_CONF_DURATION,
     .offset = KEY(checkpoint_interval),
     .def = "1s",
     .min = 10,
     .max = 3600000,
     .doc = "How often the checkpoint (state_dir/NAME.checkpoint: the file, and the offset after "
            "the last row acknowledged in order) is written while rows are acknowledged; after a "
            "crash only rows after it are published again."},
    {.name = "checkpoint_rows",
     .type = BH_CONF_INT,
     .offset = KEY(checkpoint_rows),
     .def = "20000",
     .min = 1,
     .max = 100000000,
     .doc = "The checkpoint is also written as soon as this many more rows are acknowledged "
            "(one write at a time, off the loop)."},
    {.name = "retry_backoff",
     .type = BH_CONF_DURATION,
     .offset = KEY(retry_backoff),
     .def = "1s",
     .min = 0,
     .max = 3600000,
     .doc = "Wait before reading a file again from its checkpoint after a failed delivery, or "
            "before trying again to move it out of the spool."},
    {.name = "exactly_once",
     .type = BH_CONF_BOOL,
     .offset = KEY(exactly_once),
     .def = "false",
     .doc = "Publish every row exactly once, kill -9 included: the rows, their dead letters and "
            "the position after them (the checkpoint's fields) go to Kafka in one transaction of "
            "the adapter's own producer, committed every checkpoint_interval or checkpoint_rows "
            "rows (or max_in_flight, whichever comes first); at start the position is read back "
            "read_committed from position_topic. Needs a cluster with transactions; consumers "
            "read with isolation.level=read_committed. false: the checkpoint file (rows after "
            "it may be published twice)."},
    {.name = "transactional_id",
     .type = BH_CONF_STRING,
     .offset = KEY(transactional_id),
     .check = check_txn_id,
     .doc = "With exactly_once: the producer's transactional.id (default "
            "blockhub-market-NAME). One running adapter per id: a second one fences the first, "
            "which stops."},
    {.name = "position_topic",
     .type = BH_CONF_STRING,
     .offset = KEY(position_topic),
     .check = check_position_topic,
     .doc = "With exactly_once: the compacted topic (one partition, created if missing) of the "
            "adapter's position, keyed by the adapter's name (default "
            "blockhub.market.position.NAME); written by this adapter only."},
    {0},
};

/* Keys that mean something only together. */
static int
check_conf(const void *settings, const char **key, char *why, size_t n)
{
    const struct market_conf *c = settings;
    if (c->exactly_once)
        return 0;
    if (c->transactional_id != NULL) {
        *key = "transactional_id";
        snprintf(why, n, "is used only with exactly_once: true");
        return -EINVAL;
    }
    if (c->position_topic != NULL) {
        *key = "position_topic";
        snprintf(why, n, "is used only with exactly_once: true");
        return -EINVAL;
    }
    return 0;
}

const struct bh_component_type bh_adapter_type_market = {
    .name = "market",
    .doc = "Market regulation CSV files in a spool directory (docs/feeds.md, section 5).",
    .schema = SCHEMA,
    .conf = {.keys = market_keys, .size = sizeof(struct market_conf), .check = check_conf},
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .pause = pause_intake,
    .resume = resume_intake,
    .stats = stats,
};
