#include "join.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dlq.h"
#include "join_int.h"
#include "log.h"
#include "lograte.h"
#include "utf8.h"

#define VIEW_SCHEMA_STATE "blockhub.view.BlockState"
#define VIEW_SCHEMA_BATCH "blockhub.view.DedupBatch"
#define METADATA_TIMEOUT  10000
#define QUEUE_MESSAGES    "1000000"
#define RETRY_MS          2000
#define COMMIT_SLICE      1000   /* blocks produced per loop turn */
#define SWEEP_STEPS       2000   /* dedup batches looked at per partition and commit */
#define RESTORE_BATCH     200000 /* store writes gathered by a restore before they are written */
#define DELIVERY_WAIT_MS  10000
#define FLUSH_MS          10000 /* the store takes the remembered events at least this often */
#define INPUT_BATCH       256   /* input records decoded, looked up and applied together */

static void recover(struct bh_join *j, const char *why);

struct emit_ctx {
    struct bh_join *j;
    int32_t partition;
};
static int produce(struct bh_join *j, rd_kafka_topic_t *rkt, int32_t partition, const void *key,
                   size_t keylen, const void *value, size_t len, void *opaque);
static void on_more(uv_idle_t *h);
static void serve(struct bh_join *j);
static void fail(struct bh_join *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void finish_job(struct bh_join *j);
static void revoke_step(struct bh_join *j);
static rd_kafka_topic_partition_list_t *input_partitions(struct bh_join *j, int32_t p);

uint64_t
bh_join_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int32_t
bh_join_partition_of(const struct bh_join *j, const char *key, size_t len)
{
    return rd_kafka_msg_partitioner_murmur2_random(NULL, key, len, j->nparts, NULL, NULL);
}

/* --- Kafka configuration --------------------------------------------------- */

static int
set_prop(rd_kafka_conf_t *c, const char *name, const char *value, char *errstr, size_t n)
{
    char err[256];
    if (rd_kafka_conf_set(c, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, n, "join: kafka property %s: %s", name, err);
        return -EINVAL;
    }
    return 0;
}

static void
on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* The hub's mapping: what the client retries by itself is not an error. */
    enum bh_log_level l = (enum bh_log_level)bh_lograte_kafka_log_level(level, fac);
    bh_log(l, "join", "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

/* May run on the transaction thread (a commit's flush serves the producer's queue). */
static void
on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    bh_log((enum bh_log_level)bh_lograte_kafka_error_level(err), "join", "%s: %s: %s",
           rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/*
 * Delivery reports, on whichever thread serves the producer: where the
 * running commit's changelog records landed (their opaque is the commit's
 * generation; views and reports of earlier commits carry another).
 */
static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct bh_join *j = opaque;
    (void)rk;
    uint64_t gen = (uint64_t)(uintptr_t)m->_private;
    if (gen == 0 || gen != atomic_load(&j->generation) || m->partition < 0 ||
        m->partition >= j->nparts)
        return;
    struct changelog_track *t = &j->track[m->partition];
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        int64_t old = atomic_load(&t->last_offset);
        while (m->offset > old && !atomic_compare_exchange_weak(&t->last_offset, &old, m->offset))
            ;
    }
    atomic_fetch_add(&t->delivered, 1);
}

/*
 * DEFAULTS, then kafka.properties (security settings and the like; the other
 * kind of client's own left out, as librdkafka tells them: they only make it
 * warn), then PINNED: what the join relies on cannot be changed from the
 * config.
 */
rd_kafka_conf_t *
bh_join_client_conf(struct bh_join *j, int producer, const char *const *defaults,
                    const char *const *pinned, char *errstr, size_t n)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    const struct bh_kvlist *props = &j->hub->conf->kafka.properties;
    int rc = set_prop(c, "bootstrap.servers", bh_kafka_bootstrap(j->hub->kafka), errstr, n);
    for (size_t i = 0; rc == 0 && defaults[i] != NULL; i += 2)
        rc = set_prop(c, defaults[i], defaults[i + 1], errstr, n);
    for (size_t i = 0; rc == 0 && i < props->n; i++)
        if (bh_kafka_property_scope(props->k[i]) !=
            (producer ? BH_KAFKA_SCOPE_CONSUMER : BH_KAFKA_SCOPE_PRODUCER))
            rc = set_prop(c, props->k[i], props->v[i], errstr, n);
    for (size_t i = 0; rc == 0 && pinned[i] != NULL; i += 2)
        rc = set_prop(c, pinned[i], pinned[i + 1], errstr, n);
    if (rc < 0) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    rd_kafka_conf_set_opaque(c, j);
    rd_kafka_conf_set_log_cb(c, on_kafka_log);
    rd_kafka_conf_set_error_cb(c, on_kafka_error);
    return c;
}

/* --- topics and the co-partitioning guard ------------------------------------ */

/* The topics the join reads and writes (at most 64 inputs), and their partition counts. */
struct topic_counts {
    const char *name[64 + 2];
    int count[64 + 2]; /* 0: absent */
    size_t n;
};

/* The partition counts of T's topics (all-topics metadata: it never creates a topic). */
static int
partition_counts(rd_kafka_t *rk, struct topic_counts *t, char *errstr, size_t size)
{
    return bh_kafka_partition_counts(rk, t->name, t->n, t->count, METADATA_TIMEOUT, "join", errstr,
                                     size);
}

static void
guard_topics(const struct bh_join *j, struct topic_counts *t)
{
    t->n = 0;
    for (size_t i = 0; i < j->ninputs; i++)
        t->name[t->n++] = j->inputs[i].c->topic;
    t->name[t->n++] = j->conf->view_topic;
    t->name[t->n++] = j->conf->state_topic;
    if (j->alerting)
        t->name[t->n++] = j->conf->alerts_topic;
    if (j->conf->rules.n > 0)
        t->name[t->n++] = j->conf->rules_topic;
}

/* 0 when every count equals the first; else a message naming every topic and count. */
static int
check_counts(const struct topic_counts *t, char *errstr, size_t size)
{
    int same = 1;
    for (size_t i = 1; i < t->n; i++)
        same &= t->count[i] == t->count[0] && t->count[i] > 0;
    if (same && t->count[0] > 0)
        return 0;
    int w = snprintf(errstr, size, "join: co-partitioning: the topics differ in partition count:");
    for (size_t i = 0; i < t->n && w > 0 && (size_t)w < size; i++)
        w += t->count[i] > 0
                 ? snprintf(errstr + w, size - (size_t)w, " %s=%d", t->name[i], t->count[i])
                 : snprintf(errstr + w, size - (size_t)w, " %s=absent", t->name[i]);
    if (w > 0 && (size_t)w < size)
        snprintf(errstr + w, size - (size_t)w,
                 "; every input topic, the view topic and the state topic must have the same "
                 "partition count");
    return -EINVAL;
}

/* The absent topics of T, made on the hub's cluster with PARTITIONS partitions. */
static int
create_topics(struct bh_join *j, const struct topic_counts *t, int partitions, char *errstr,
              size_t size)
{
    const struct bh_kafka_section *kc = &j->hub->conf->kafka;
    struct bh_kafka_new_topic nt[64 + 2];
    size_t nn = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->count[i] > 0)
            continue;
        if (bh_kafka_is_embedded(j->hub->kafka)) {
            int rc = bh_kafka_ensure_topics(j->hub->kafka, &t->name[i], 1, errstr, size);
            if (rc < 0)
                return rc;
            continue;
        }
        /* The view and the changelog keep the last record of each key. */
        nt[nn].name = t->name[i];
        nt[nn].config =
            strcmp(t->name[i], j->conf->view_topic) == 0 ||
                    strcmp(t->name[i], j->conf->state_topic) == 0 ||
                    (j->conf->rules.n > 0 && strcmp(t->name[i], j->conf->rules_topic) == 0)
                ? bh_kafka_compacted
                : NULL;
        nn++;
    }
    const struct bh_kafka_create_opts o = {.partitions = partitions,
                                           .replication = (int)kc->replication,
                                           .timeout_ms = (int)kc->create_timeout,
                                           .who = "join"};
    return bh_kafka_create_topics(bh_kafka_handle(j->hub->kafka), nt, nn, &o, errstr, size);
}

/*
 * At start: create what is missing (inputs like the adapters would, the view
 * and the changelog compacted, all with the inputs' partition count when they
 * exist), then refuse to run unless every count is the same.
 */
static int
ensure_topics(struct bh_join *j, char *errstr, size_t size)
{
    struct topic_counts t;
    guard_topics(j, &t);
    rd_kafka_t *rk = bh_kafka_handle(j->hub->kafka);
    int rc = partition_counts(rk, &t, errstr, size);
    if (rc < 0)
        return rc;
    int partitions = (int)j->hub->conf->kafka.partitions;
    for (size_t i = 0; i < j->ninputs; i++) {
        if (t.count[i] > 0) {
            partitions = t.count[i];
            break;
        }
    }
    rc = create_topics(j, &t, partitions, errstr, size);
    if (rc < 0)
        return rc;
    for (int attempt = 0; attempt < 50; attempt++) {
        rc = partition_counts(rk, &t, errstr, size);
        if (rc < 0)
            return rc;
        int absent = 0;
        for (size_t i = 0; i < t.n; i++)
            absent |= t.count[i] == 0;
        if (!absent)
            break;
        usleep(100 * 1000); /* a new topic takes a moment to show in metadata */
    }
    rc = check_counts(&t, errstr, size);
    if (rc == 0)
        j->nparts = t.count[0];
    return rc;
}

/* On assignment: the same counts as at start, and the same partition numbers of every input. */
static int
guard(struct bh_join *j, const rd_kafka_topic_partition_list_t *parts, char *errstr, size_t size)
{
    struct topic_counts t;
    guard_topics(j, &t);
    int rc = partition_counts(j->consumer, &t, errstr, size);
    if (rc < 0)
        return rc;
    rc = check_counts(&t, errstr, size);
    if (rc < 0)
        return rc;
    if (t.count[0] != j->nparts) {
        snprintf(errstr, size,
                 "join: co-partitioning: the topics now have %d partitions, not %d as at start; "
                 "restart the join to use them",
                 t.count[0], j->nparts);
        return -EINVAL;
    }
    /* Every partition number assigned must come with every input. */
    for (int i = 0; i < parts->cnt; i++) {
        for (size_t k = 0; k < j->ninputs; k++) {
            if (rd_kafka_topic_partition_list_find(parts, j->inputs[k].c->topic,
                                                   parts->elems[i].partition) == NULL) {
                snprintf(errstr, size,
                         "join: co-partitioning: partition %d of %s was assigned without "
                         "partition %d of %s (use partition.assignment.strategy=range)",
                         parts->elems[i].partition, parts->elems[i].topic,
                         parts->elems[i].partition, j->inputs[k].c->topic);
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* --- the transaction thread ---------------------------------------------------- */

static int
txn_timeout(const struct bh_join *j)
{
    return (int)j->conf->transaction_timeout;
}

static void
job_error(struct txn *t, const char *what, rd_kafka_error_t *e)
{
    snprintf(t->why, sizeof(t->why), "%s: %s", what, rd_kafka_error_string(e));
}

/* Abort after an abortable error; a fatal error on the way wins. */
static void
job_abort(struct txn *t, rd_kafka_error_t *cause)
{
    t->result = RESULT_ABORTED;
    if (cause != NULL && rd_kafka_error_is_fatal(cause)) {
        t->result = RESULT_FATAL;
        return;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        rd_kafka_error_t *e = rd_kafka_abort_transaction(t->producer, t->timeout_ms);
        if (e == NULL)
            return;
        int retry = rd_kafka_error_is_retriable(e);
        if (rd_kafka_error_is_fatal(e) || !retry) {
            job_error(t, "abort", e);
            t->result = RESULT_FATAL; /* a producer that cannot abort is replaced */
            rd_kafka_error_destroy(e);
            return;
        }
        rd_kafka_error_destroy(e);
    }
    t->result = RESULT_FATAL;
}

/*
 * After a commit, on the transaction thread (the store on disk): once every
 * changelog record of the commit has its delivery report, the commit's store
 * writes and each partition's new checkpoint (the offset after its last
 * changelog record) go to the store in one atomic write. Nothing of a commit
 * that failed gets here, so the store is never ahead of the changelog.
 */
static void
store_commit(struct txn *t)
{
    uint64_t start = bh_join_now_ns();
    t->checkpoints = 0;
    for (int32_t p = 0; p < t->nparts; p++) {
        t->ck[p] = -1;
        if (t->produced[p] == 0)
            continue;
        struct changelog_track *k = &t->track[p];
        /* Reports the loop thread serves may still be on their way: serve them here too. */
        for (int waited = 0;
             atomic_load(&k->delivered) < t->produced[p] && waited < DELIVERY_WAIT_MS; waited += 10)
            rd_kafka_poll(t->producer, 10);
        int64_t last = atomic_load(&k->last_offset);
        if (atomic_load(&k->delivered) >= t->produced[p] && last >= 0)
            t->ck[p] = last + 1;
        /* else the checkpoint stays where it was: a restart replays a little more */
    }
    for (int32_t p = 0; t->flush && p < t->nparts; p++) {
        /* this commit's end, or that of the last commit since the last flush */
        int64_t ck = t->ck[p] >= 0 ? t->ck[p] : t->held_ck[p];
        if (ck >= 0 && bh_jstore_put_checkpoint(t->sbatch, p, ck) == 0)
            t->checkpoints++;
    }
    t->store_rc = bh_jstore_write(t->store, t->sbatch);
    t->sbatch = NULL;
    t->store_ns = bh_join_now_ns() - start;
}

static void
run_commit(struct txn *t)
{
    rd_kafka_error_t *e = NULL;
    if (t->offsets != NULL && t->offsets->cnt > 0)
        e = rd_kafka_send_offsets_to_transaction(t->producer, t->offsets, t->cgmd, t->timeout_ms);
    if (e != NULL) {
        job_error(t, "sending the offsets", e);
        if (rd_kafka_error_is_fatal(e))
            t->result = RESULT_FATAL;
        else
            job_abort(t, e); /* retriable ones are retried by librdkafka within the timeout */
        rd_kafka_error_destroy(e);
        return;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        e = rd_kafka_commit_transaction(t->producer, t->timeout_ms);
        if (e == NULL) {
            t->result = RESULT_OK;
            if (t->sbatch != NULL && bh_jstore_is_disk(t->store))
                store_commit(t);
            return;
        }
        job_error(t, "commit", e);
        if (rd_kafka_error_is_fatal(e)) {
            t->result = RESULT_FATAL;
        } else if (rd_kafka_error_txn_requires_abort(e)) {
            job_abort(t, e);
        } else if (rd_kafka_error_is_retriable(e)) {
            rd_kafka_error_destroy(e);
            continue; /* the commit goes on in the background: ask again */
        } else {
            job_abort(t, e);
        }
        rd_kafka_error_destroy(e);
        return;
    }
    job_abort(t, NULL);
}

static void
run_init(struct txn *t)
{
    if (t->old_producer != NULL) {
        rd_kafka_destroy(t->old_producer);
        t->old_producer = NULL;
    }
    /* A few attempts; after that the loop tries again later with a new producer. */
    for (int attempt = 0; attempt < 3 && !t->quit; attempt++) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(t->producer, t->timeout_ms);
        if (e == NULL) {
            t->result = RESULT_OK;
            return;
        }
        job_error(t, "init_transactions", e);
        int again = rd_kafka_error_is_retriable(e);
        t->result = rd_kafka_error_is_fatal(e) ? RESULT_FATAL : RESULT_FAILED;
        rd_kafka_error_destroy(e);
        if (!again)
            return;
    }
}

static void
run_job(struct txn *t)
{
    t->started_ns = bh_join_now_ns();
    t->why[0] = '\0';
    switch (t->kind) {
    case JOB_COMMIT:
        run_commit(t);
        break;
    case JOB_ABORT:
        job_abort(t, NULL);
        break;
    case JOB_INIT:
        run_init(t);
        break;
    }
    t->ended_ns = bh_join_now_ns();
}

static void
txn_main(void *arg)
{
    struct txn *t = arg;
    bh_jstore_thread_init();
    uv_mutex_lock(&t->mu);
    for (;;) {
        while (!t->quit && t->state != JOB_QUEUED)
            uv_cond_wait(&t->cv, &t->mu);
        if (t->quit)
            break;
        t->state = JOB_RUNNING;
        uv_mutex_unlock(&t->mu);
        run_job(t);
        uv_mutex_lock(&t->mu);
        t->state = JOB_DONE;
        uv_cond_broadcast(&t->cv);
        uv_async_send(&t->done);
    }
    uv_mutex_unlock(&t->mu);
}

static void
post_job(struct bh_join *j, enum job_kind kind)
{
    struct txn *t = &j->txn;
    uv_mutex_lock(&t->mu);
    t->kind = kind;
    t->producer = j->producer;
    t->timeout_ms = txn_timeout(j);
    t->state = JOB_QUEUED;
    uv_cond_broadcast(&t->cv);
    uv_mutex_unlock(&t->mu);
}

static int
job_busy(struct bh_join *j)
{
    uv_mutex_lock(&j->txn.mu);
    int busy = j->txn.state != JOB_IDLE;
    uv_mutex_unlock(&j->txn.mu);
    return busy;
}

/*
 * Block until the job is done and handle its result. Only at shutdown (teardown,
 * revoke_now), where blocking the loop is harmless; elsewhere on_job_done does this.
 */
static void
wait_job(struct bh_join *j)
{
    struct txn *t = &j->txn;
    uv_mutex_lock(&t->mu);
    while (t->state == JOB_QUEUED || t->state == JOB_RUNNING)
        uv_cond_wait(&t->cv, &t->mu);
    int done = t->state == JOB_DONE;
    uv_mutex_unlock(&t->mu);
    if (done)
        finish_job(j);
}

static void
on_job_done(uv_async_t *a)
{
    struct bh_join *j = a->data;
    uv_mutex_lock(&j->txn.mu);
    int done = j->txn.state == JOB_DONE;
    uv_mutex_unlock(&j->txn.mu);
    if (done)
        finish_job(j);
}

/* --- the producer ------------------------------------------------------------ */

static void
drop_topic_handles(struct bh_join *j)
{
    if (j->view_out != NULL)
        rd_kafka_topic_destroy(j->view_out);
    if (j->state_out != NULL)
        rd_kafka_topic_destroy(j->state_out);
    if (j->alerts_out != NULL)
        rd_kafka_topic_destroy(j->alerts_out);
    if (j->rules_out != NULL)
        rd_kafka_topic_destroy(j->rules_out);
    j->view_out = j->state_out = j->alerts_out = j->rules_out = NULL;
}

static int
make_producer(struct bh_join *j, char *errstr, size_t n)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_dup(j->producer_template);
    j->producer = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (j->producer == NULL) {
        rd_kafka_conf_destroy(c);
        snprintf(errstr, n, "join: producer: %s", err);
        return -EINVAL;
    }
    rd_kafka_set_log_queue(j->producer, NULL);
    j->view_out = rd_kafka_topic_new(j->producer, j->conf->view_topic, NULL);
    j->state_out = rd_kafka_topic_new(j->producer, j->conf->state_topic, NULL);
    if (j->alerting)
        j->alerts_out = rd_kafka_topic_new(j->producer, j->conf->alerts_topic, NULL);
    if (j->conf->rules.n > 0)
        j->rules_out = rd_kafka_topic_new(j->producer, j->conf->rules_topic, NULL);
    j->pq = rd_kafka_queue_get_main(j->producer);
    rd_kafka_queue_io_event_enable(j->pq, j->pipefd[1], "p", 1);
    return 0;
}

/* A fresh producer in place of the current one, which the transaction thread destroys. */
static void
renew_producer(struct bh_join *j)
{
    char err[512];
    j->producer_ready = 0;
    drop_topic_handles(j);
    rd_kafka_queue_io_event_enable(j->pq, -1, NULL, 0);
    rd_kafka_queue_destroy(j->pq);
    j->pq = NULL;
    j->txn.old_producer = j->producer;
    j->producer = NULL;
    if (make_producer(j, err, sizeof(err)) < 0) {
        fail(j, "%s", err);
        return;
    }
    post_job(j, JOB_INIT);
}

/* After a fatal error: everything since the last commit is redone with a new producer. */
static void
replace_producer(struct bh_join *j, const char *why)
{
    bh_error("join", "transactional producer failed (%s): replacing it", why);
    j->stats.producer_restarts++;
    j->producer_ready = 0;
    recover(j, "the producer was replaced");
    renew_producer(j);
}

static void
on_retry(uv_timer_t *t)
{
    struct bh_join *j = t->data;
    if (!j->stopping && !j->failed && !job_busy(j))
        renew_producer(j);
}

/* --- dead letters ------------------------------------------------------------ */

static void
dead_letter(struct bh_join *j, const rd_kafka_message_t *m, enum bh_dlq_reason r, const char *why)
{
    char source[300];
    snprintf(source, sizeof(source), "%s[%" PRId32 "]", rd_kafka_topic_name(m->rkt), m->partition);
    struct bh_dlq_origin o = {"kafka", source, NULL, m->offset};
    j->stats.dead_letters++;
    bh_dlq_publish(j->hub, j->comp, r, why, &o, m->payload, m->len, NULL);
}

/* --- applying input ------------------------------------------------------------ */

static struct input *
input_of(struct bh_join *j, const rd_kafka_topic_t *rkt)
{
    for (size_t i = 0; i < j->ninputs; i++)
        if (j->inputs[i].rkt == rkt)
            return &j->inputs[i];
    const char *name = rd_kafka_topic_name(rkt);
    for (size_t i = 0; i < j->ninputs; i++) {
        if (strcmp(j->inputs[i].c->topic, name) == 0) {
            j->inputs[i].rkt = rkt;
            return &j->inputs[i];
        }
    }
    return NULL;
}

/* plan_of found no plan yet: the writer schema is on its way from the registry. */
static struct plan plan_wait;

/*
 * The plan for the writer schema of input IN that a record names: by
 * single-object fingerprint FP (ID -1) among the hub's schemas, or by registry
 * ID among the hub's and then the registry's (fetched in the background:
 * &plan_wait until it is there). Compiled the first time; NULL for a schema
 * nobody knows (WHY says which).
 */
static struct plan *
plan_of(struct bh_join *j, struct input *in, uint64_t fp, int32_t id, char *why, size_t n)
{
    for (size_t i = 0; i < in->nplans; i++)
        if (in->plans[i].id == id && (id >= 0 || in->plans[i].fp == fp))
            return &in->plans[i];
    const struct bh_schema *s = id < 0 ? bh_schemas_find_fingerprint(j->hub->schemas, fp)
                                       : bh_schemas_find_registry_id(j->hub->schemas, id);
    avro_schema_t writer = s != NULL ? s->schema : NULL, own = NULL;
    char fullname[300];
    const char *name = s != NULL ? s->name : NULL;
    if (s == NULL && id < 0) {
        snprintf(why, n, "unknown schema fingerprint %016" PRIx64, fp);
        return NULL;
    }
    if (s == NULL) {
        const char *text = NULL;
        int rc = j->hub->registry != NULL ? bh_registry_schema_text(j->hub->registry, id, &text)
                                          : -ENOENT;
        if (rc == -EAGAIN)
            return &plan_wait;
        if (rc < 0) {
            snprintf(why, n, "schema id %" PRId32 " %s", id,
                     j->hub->registry == NULL ? "(Confluent framing) but no schema_registry.url "
                                                "is configured"
                                              : "is unknown to the schema registry");
            return NULL;
        }
        char perr[200];
        if (bh_avro_schema_parse(text, strlen(text), &own, perr, sizeof(perr)) < 0) {
            snprintf(why, n, "schema id %" PRId32 " does not parse: %.200s", id, perr);
            return NULL;
        }
        writer = own;
        const char *ns = is_avro_record(own) ? avro_schema_namespace(own) : NULL;
        snprintf(fullname, sizeof(fullname), "%s%s%s", ns != NULL ? ns : "", ns != NULL ? "." : "",
                 is_avro_record(own) ? avro_schema_name(own) : "(not a record)");
        name = fullname;
    }
    struct plan *p = &in->plans[in->nplans < JOIN_PLANS ? in->nplans++ : JOIN_PLANS - 1];
    bh_jplan_free(p->plan);
    free(p->symbol_types);
    if (p->own != NULL)
        avro_schema_decref(p->own);
    memset(p, 0, sizeof(*p));
    p->fp = fp;
    p->id = id;
    p->own = own;
    char err[200];
    /* A writer from the registry is read as the hub's schema of its name reads it. */
    const struct bh_schema *reader = own != NULL ? bh_schemas_find(j->hub->schemas, name) : NULL;
    if (bh_jplan_new_resolved(&p->plan, writer, reader != NULL ? reader->text : NULL,
                              in->c->id_field, in->c->type_field, in->c->time_field, err,
                              sizeof(err)) < 0) {
        snprintf(p->why, sizeof(p->why), "schema %.100s: %.250s", name, err);
        p->plan = NULL;
        return p;
    }
    const char *const *extras;
    size_t nx = j->watches != NULL ? bh_jwatches_fields(j->watches, &extras) : 0;
    if (nx > 0 && bh_jplan_set_extras(p->plan, writer, extras, nx) < 0) {
        bh_jplan_free(p->plan);
        p->plan = NULL;
        snprintf(p->why, sizeof(p->why), "out of memory");
        return p;
    }
    size_t ns = bh_jplan_symbols(p->plan);
    p->symbol_types = calloc(ns ? ns : 1, sizeof(*p->symbol_types));
    if (p->symbol_types == NULL) {
        bh_jplan_free(p->plan);
        p->plan = NULL;
        snprintf(p->why, sizeof(p->why), "out of memory");
        return p;
    }
    size_t di = (size_t)(in - j->inputs);
    for (size_t k = 0; k < ns; k++) {
        const char *sym = bh_jplan_symbol(p->plan, k);
        if (bh_jtypes_intern(j->types, di, sym, strlen(sym), &p->symbol_types[k]) < 0) {
            bh_jplan_free(p->plan);
            p->plan = NULL;
            snprintf(p->why, sizeof(p->why), "too many types");
            return p;
        }
    }
    if (id >= 0)
        bh_info("join",
                "input %s (%s): records of schema %s (registry id %" PRId32 "), fields %s/%s/%s",
                in->dept, in->c->topic, name, id, in->c->id_field, in->c->type_field,
                in->c->time_field);
    else
        bh_info("join", "input %s (%s): records of schema %s, fields %s/%s/%s", in->dept,
                in->c->topic, name, in->c->id_field, in->c->type_field, in->c->time_field);
    return p;
}

void
bh_join_forget_plans(struct bh_join *j)
{
    for (size_t i = 0; i < j->ninputs; i++) {
        struct input *in = &j->inputs[i];
        for (size_t k = 0; k < in->nplans; k++) {
            bh_jplan_free(in->plans[k].plan);
            free(in->plans[k].symbol_types);
            if (in->plans[k].own != NULL)
                avro_schema_decref(in->plans[k].own);
            memset(&in->plans[k], 0, sizeof(in->plans[k]));
        }
        in->nplans = 0;
    }
}

/* Epoch milliseconds as 2026-11-27T08:15:00.000Z. */
void
bh_join_fmt_time(char *out, size_t n, int64_t ms)
{
    time_t sec = (time_t)(ms / 1000);
    int64_t frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        sec--;
    }
    struct tm tm;
    if (gmtime_r(&sec, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
        snprintf(out, n, "%" PRId64 " ms", ms);
        return;
    }
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

/* A duration as the config writes it: 400d, 36h, 90s, 1500ms. */
static void
fmt_duration(char *out, size_t n, int64_t ms)
{
    static const struct {
        int64_t unit;
        const char *name;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms % units[i].unit == 0) {
            snprintf(out, n, "%" PRId64 "%s", ms / units[i].unit, units[i].name);
            return;
        }
    }
    snprintf(out, n, "%" PRId64 "ms", ms);
}

/* Why an event is too late to be counted: its department, id and time, and the partition's. */
static void
too_late_why(struct bh_join *j, const struct input *in, const struct part *pt, int32_t p,
             const struct bh_jfields *f, char *why, size_t n)
{
    size_t di = (size_t)(in - j->inputs);
    char id[120], at[40], newest[40], retention[32];
    bh_utf8_sanitize(id, sizeof(id), f->id, f->id_len);
    bh_join_fmt_time(at, sizeof(at), f->at);
    bh_join_fmt_time(newest, sizeof(newest), bh_jstate_newest(pt->state, di));
    fmt_duration(retention, sizeof(retention), j->conf->dedup_retention);
    snprintf(why, n,
             "%s event '%s' of %s is too late: more than join.dedup_retention (%s) older than "
             "the newest %s event of partition %" PRId32
             " (%s), it can no longer be told from a copy of one counted before, so it is not "
             "counted",
             in->dept, id, at, retention, in->dept, p, newest);
}

/*
 * An input record, checked and decoded (its block found or made): returns
 * BH_DLQ_REASON_COUNT when it can be applied, else why not (in WHY).
 */
static enum bh_dlq_reason
prepare(struct bh_join *j, struct pending_input *pe, char *why, size_t n)
{
    const rd_kafka_message_t *m = pe->m;
    struct input *in = pe->in;
    const char *key = m->key;
    size_t di = (size_t)(in - j->inputs);
    if (key == NULL || m->key_len == 0) {
        snprintf(why, n, "no key: the key must be the block id");
        return BH_DLQ_MISSING_FIELD;
    }
    int32_t want = bh_join_partition_of(j, key, m->key_len);
    if (want != m->partition) {
        snprintf(why, n,
                 "key '%.*s' is on partition %" PRId32 "; murmur2 places it on %" PRId32
                 ": the producer is not co-partitioning",
                 (int)(m->key_len > 64 ? 64 : m->key_len), key, m->partition, want);
        return BH_DLQ_INVALID_FIELD;
    }
    uint64_t fp;
    int32_t id;
    int hdr = m->payload != NULL ? bh_jread_frame(m->payload, m->len, &fp, &id) : -EBADMSG;
    if (hdr < 0) {
        snprintf(why, n, "not Avro single-object encoding nor the Confluent wire format");
        return BH_DLQ_INVALID_ENCODING;
    }
    struct plan *p = plan_of(j, in, fp, id, why, n);
    if (p == &plan_wait) {
        pe->wait_id = id;
        return BH_DLQ_REASON_COUNT;
    }
    if (p == NULL)
        return BH_DLQ_INVALID_ENCODING;
    if (p->plan == NULL) {
        snprintf(why, n, "%s", p->why);
        return BH_DLQ_INVALID_FIELD;
    }
    if (bh_jplan_read(p->plan, (const uint8_t *)m->payload + hdr, m->len - (size_t)hdr, &pe->f) <
        0) {
        snprintf(why, n, "the Avro body does not decode");
        return BH_DLQ_INVALID_ENCODING;
    }
    if (pe->f.id_len == 0) {
        snprintf(why, n, "%s: empty", in->c->id_field);
        return BH_DLQ_MISSING_FIELD;
    }
    if (pe->f.at == BH_JSTATE_NO_TIME) { /* the state's "no event yet" */
        snprintf(why, n, "%s: %" PRId64 " is not a time", in->c->time_field, pe->f.at);
        return BH_DLQ_INVALID_FIELD;
    }
    if (pe->f.type_symbol >= 0) {
        pe->type = p->symbol_types[pe->f.type_symbol];
    } else if (bh_jtypes_intern(j->types, di, pe->f.type, pe->f.type_len, &pe->type) < 0) {
        snprintf(why, n, "%s: too many distinct types", in->c->type_field);
        return BH_DLQ_INVALID_FIELD;
    }
    pe->b = bh_jstate_block(pe->pt->state, key, m->key_len, 1);
    if (pe->b == NULL) {
        recover(j, "out of memory");
        pe->in = NULL; /* read again after the rebuild */
    }
    return BH_DLQ_REASON_COUNT;
}

/* --- alerts ------------------------------------------------------------------------ */

struct fire_ctx {
    struct bh_join *j;
    struct pending_input *pe;
    size_t dept;
};

/* One alert of watch W, matched by VALUE, onto its partition's alerts for the next commit. */
/* An alert of partition PT's block (the record M's key) onto its alerts for the next commit. */
static int
queue_alert(struct bh_join *j, struct part *pt, const rd_kafka_message_t *m, int rule,
            const char *name, const char *detail, size_t dlen, const struct bh_jalert_event *ev,
            size_t nev)
{
    if (!bh_utf8_valid(m->key, m->key_len))
        return 0; /* the block id goes into the alert as an Avro string */
    const struct bh_block *blk = bh_blockmap_find(j->hub->blocks, m->key, m->key_len);
    struct bh_jalert a = {.block = m->key,
                          .block_len = m->key_len,
                          .block_name = blk != NULL ? blk->name : NULL,
                          .unit = blk != NULL ? blk->unit : NULL,
                          .rule = rule,
                          .name = name,
                          .detail = detail,
                          .detail_len = dlen,
                          .events = ev,
                          .nevents = nev,
                          .detected_at = bh_now_ms()};
    struct bh_jbuf *b = &j->abody;
    bh_jbuf_reset(b);
    if (j->hub->framing == BH_FRAMING_CONFLUENT)
        bh_jbuf_confluent_header(b, j->alert_schema->registry_id);
    else
        bh_jbuf_header(b, j->alert_schema->fingerprint);
    bh_jalert_encode(b, &a);
    struct bh_jbuf *q = &pt->alerts;
    uint32_t kl = (uint32_t)m->key_len, vl = (uint32_t)b->len;
    bh_jbuf_raw(q, &kl, 4);
    bh_jbuf_raw(q, m->key, m->key_len);
    bh_jbuf_raw(q, &vl, 4);
    bh_jbuf_raw(q, b->p, b->len);
    if (b->oom || q->oom)
        return -ENOMEM;
    pt->nalerts++;
    return 0;
}

static int
fire_one(void *ctx, const struct bh_jwatch *w, const char *value, size_t len)
{
    struct fire_ctx *c = ctx;
    struct bh_join *j = c->j;
    struct pending_input *pe = c->pe;
    char detail[600];
    int dl = snprintf(detail, sizeof(detail), "watch %s: %s %.*s in %s event %.*s", w->name,
                      w->field_name, (int)bh_utf8_cut(value, len, 200), value, j->depts[c->dept],
                      (int)bh_utf8_cut(pe->f.id, pe->f.id_len, 200), pe->f.id);
    size_t dlen = dl < 0 ? 0 : (size_t)dl < sizeof(detail) ? (size_t)dl : strlen(detail);
    dlen = bh_utf8_cut(detail, dlen, dlen);
    struct bh_jalert_event ev = {j->depts[c->dept], pe->f.id,       pe->f.id_len,
                                 pe->f.type,        pe->f.type_len, pe->f.at};
    return queue_alert(j, pe->pt, pe->m, 0, w->name, detail, dlen, &ev, 1);
}

static int
fire_rule(void *ctx, const char *name, const struct bh_jalert_event *ev, size_t nev,
          const char *detail, size_t dlen)
{
    struct fire_ctx *c = ctx;
    return queue_alert(c->j, c->pe->pt, c->pe->m, 1, name, detail, dlen, ev, nev);
}

static void
fire_watches(struct bh_join *j, struct pending_input *pe, size_t dept)
{
    struct fire_ctx c = {j, pe, dept};
    if (j->watches != NULL &&
        bh_jwatches_match(j->watches, dept, pe->m->key, pe->m->key_len, &pe->f, fire_one, &c) < 0) {
        recover(j, "out of memory");
        return;
    }
    if (j->rules != NULL &&
        bh_jrules_apply(j->rules, pe->m->partition, pe->m->key, pe->m->key_len, dept, pe->f.id,
                        pe->f.id_len, pe->f.type, pe->f.type_len, pe->f.at, fire_rule, &c) < 0)
        recover(j, "out of memory");
}

static int
emit_rule_state(void *ctx, const char *key, size_t klen, const char *value, size_t vlen)
{
    struct emit_ctx *c = ctx;
    return produce(c->j, c->j->rules_out, c->partition, key, klen, value, vlen, NULL);
}

/* The partition's alerts into the transaction just begun (in the order they fired). */
static int
produce_alerts(struct bh_join *j, struct part *pt)
{
    const uint8_t *p = pt->alerts.p, *end = p + pt->alerts.len;
    int rc = 0;
    while (rc == 0 && p < end) {
        uint32_t kl, vl;
        memcpy(&kl, p, 4);
        const uint8_t *key = p + 4;
        memcpy(&vl, key + kl, 4);
        const uint8_t *val = key + kl + 4;
        rc = produce(j, j->alerts_out, RD_KAFKA_PARTITION_UA, key, kl, val, vl, NULL);
        if (rc == 0)
            j->stats.alerts++;
        p = val + vl;
    }
    bh_jbuf_reset(&pt->alerts);
    pt->nalerts = 0;
    return rc;
}

/* A prepared record into the state, with the store's answer about it when it was asked. */
static enum bh_dlq_reason
apply(struct bh_join *j, struct pending_input *pe, const struct bh_jseen *seen, char *why, size_t n)
{
    size_t di = (size_t)(pe->in - j->inputs);
    const struct bh_jfields *f = &pe->f;
    int rc = bh_jstate_apply_seen(pe->pt->state, pe->b, di, f->id, f->id_len, pe->type, f->at,
                                  j->now_ms, seen);
    if (rc == -EIO) {
        recover(j, "the state store could not be read");
    } else if (rc < 0) {
        recover(j, "out of memory");
    } else if (rc == BH_JSTATE_TOO_LATE) {
        j->stats.too_late++;
        too_late_why(j, pe->in, pe->pt, pe->m->partition, f, why, n);
        return BH_DLQ_TOO_LATE;
    } else if (rc == BH_JSTATE_COPY) {
        j->stats.duplicates++;
    } else {
        j->stats.counted++;
        if (j->watches != NULL || j->rules != NULL)
            fire_watches(j, pe, di);
    }
    return BH_DLQ_REASON_COUNT;
}

/* --- waiting for a writer schema ------------------------------------------------ */

/*
 * A record of partition PT names registry id ID, whose schema is on its way:
 * the partition's inputs stop (paused) and, once the batch is through, go
 * back to the first record not applied (rewind_held); what came before it is
 * applied as usual. release_held reads on once the registry answered.
 */
static void
hold(struct bh_join *j, struct part *pt, const rd_kafka_message_t *m, size_t i, int32_t id)
{
    int32_t p = (int32_t)(pt - j->parts);
    j->stats.consumed--; /* read again */
    pt->consumed[i] = m->offset;
    pt->held = 1;
    pt->held_id = id;
    for (size_t k = 0; k < j->ninputs; k++)
        pt->held_at[k] = k == i ? m->offset : pt->consumed[k];
    rd_kafka_topic_partition_list_t *l = input_partitions(j, p);
    rd_kafka_pause_partitions(j->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    bh_info("join",
            "partition %" PRId32 ": a record of %s names schema id %" PRId32
            ", asked of the registry; the partition waits for it",
            p, rd_kafka_topic_name(m->rkt), id);
}

/* Each held partition's inputs go back to where the reading must go on. */
static void
rewind_held(struct bh_join *j)
{
    for (int32_t p = 0; p < j->nparts; p++) {
        struct part *pt = &j->parts[p];
        if (!pt->held || pt->st != PART_LIVE)
            continue;
        rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(8);
        for (size_t i = 0; i < j->ninputs; i++) {
            if (pt->held_at[i] >= 0)
                rd_kafka_topic_partition_list_add(seek, j->inputs[i].c->topic, p)->offset =
                    pt->held_at[i];
            pt->held_at[i] = -2; /* seeked: later records are dropped until the release */
        }
        if (seek->cnt > 0) {
            rd_kafka_error_t *e = rd_kafka_seek_partitions(j->consumer, seek, 0);
            if (e != NULL) {
                recover(j, "the inputs could not be rewound while waiting for a schema");
                rd_kafka_error_destroy(e);
            }
        }
        rd_kafka_topic_partition_list_destroy(seek);
    }
}

/* Held partitions whose schema the registry answered for read on (on the tick). */
static void
release_held(struct bh_join *j)
{
    for (int32_t p = 0; p < j->nparts; p++) {
        struct part *pt = &j->parts[p];
        const char *text;
        if (!pt->held)
            continue;
        if (pt->st == PART_LIVE && j->hub->registry != NULL &&
            bh_registry_schema_text(j->hub->registry, pt->held_id, &text) == -EAGAIN)
            continue;
        pt->held = 0;
        if (pt->st != PART_LIVE)
            continue; /* a restore resumes it */
        rd_kafka_topic_partition_list_t *l = input_partitions(j, p);
        rd_kafka_resume_partitions(j->consumer, l);
        rd_kafka_topic_partition_list_destroy(l);
        bh_info("join", "partition %" PRId32 ": schema id %" PRId32 " answered; reading on", p,
                pt->held_id);
    }
}

/*
 * A batch of input records (j->batch[0..N)), in order: each is checked and
 * decoded first, then the store is asked at once about every event not
 * known in memory (one batched lookup costs much less a key than many), then
 * each is applied or dead-lettered. The messages are destroyed.
 */
static void
on_inputs(struct bh_join *j, size_t n)
{
    size_t nl = 0;
    for (size_t k = 0; k < n; k++) {
        struct pending_input *pe = &j->batch[k];
        rd_kafka_message_t *m = pe->m;
        pe->in = NULL;
        pe->lookup = -1;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                bh_warn("join", "consumer: %s", rd_kafka_message_errstr(m));
            continue;
        }
        struct input *in = input_of(j, m->rkt);
        if (in == NULL || m->partition < 0 || m->partition >= j->nparts)
            continue;
        struct part *pt = &j->parts[m->partition];
        if (pt->st != PART_LIVE)
            continue; /* fetched before the pause; fetched again after the restore */
        size_t i = (size_t)(in - j->inputs);
        if (pt->held) { /* read again once the writer schema is in */
            if (pt->held_at[i] == -1)
                pt->held_at[i] = m->offset;
            continue;
        }
        j->stats.consumed++;
        if (pt->committed[i] < 0)
            pt->committed[i] = m->offset; /* where this assignment started */
        pt->consumed[i] = m->offset + 1;
        pe->in = in;
        pe->pt = pt;
        pe->wait_id = -1;
        pe->r = prepare(j, pe, pe->why, sizeof(pe->why));
        if (pe->wait_id >= 0) {
            hold(j, pt, m, i, pe->wait_id);
            pe->in = NULL;
            continue;
        }
        if (pe->in != NULL && pe->r == BH_DLQ_REASON_COUNT &&
            bh_jstate_wants_lookup(pt->state, pe->b, i, pe->f.id, pe->f.id_len, pe->f.at,
                                   &j->lookups[nl]))
            pe->lookup = (int)nl++;
    }
    if (nl > 0 && bh_jstore_lookup_many(j->store, nl, j->lookups, j->found, j->found_at) < 0)
        recover(j, "the state store could not be read");
    for (size_t k = 0; k < n; k++) {
        struct pending_input *pe = &j->batch[k];
        /* a rebuild under way: the record is read again once it is done */
        if (pe->in != NULL && pe->pt->st == PART_LIVE) {
            if (pe->r == BH_DLQ_REASON_COUNT) {
                struct bh_jseen seen = {0, 0};
                if (pe->lookup >= 0) {
                    seen.found = j->found[pe->lookup];
                    seen.at = j->found_at[pe->lookup];
                }
                pe->r = apply(j, pe, pe->lookup >= 0 ? &seen : NULL, pe->why, sizeof(pe->why));
            }
            if (pe->r != BH_DLQ_REASON_COUNT && pe->pt->st == PART_LIVE)
                dead_letter(j, pe->m, pe->r, pe->why);
        }
        rd_kafka_message_destroy(pe->m);
        pe->m = NULL;
    }
    rewind_held(j);
}

/* --- restoring state ------------------------------------------------------------- */

static void
drop_state(struct bh_join *j, struct part *pt)
{
    bh_jstate_free(pt->state);
    pt->state = NULL;
    bh_jstore_batch_free(pt->rbatch);
    pt->rbatch = NULL;
    pt->in_commit = 0;
    bh_jbuf_reset(&pt->alerts); /* fired again when their events are applied again */
    pt->nalerts = 0;
    bh_jrules_drop(j->rules, (int32_t)(pt - j->parts)); /* read back when it is restored */
    for (size_t i = 0; i < j->ninputs; i++)
        pt->consumed[i] = -1;
}

static int
new_state(struct bh_join *j, struct part *pt, int32_t p)
{
    struct bh_jstate_conf c = {
        .ndepts = j->ninputs,
        .depts = j->depts,
        .types = j->types,
        .window_ms = j->conf->window,
        .retention_ms = j->conf->dedup_retention,
        .state_fp = j->state_schema->fingerprint,
        .batch_fp = j->batch_schema->fingerprint,
        .partition = p,
        .store = j->store,
    };
    bh_jstate_free(pt->state);
    pt->state = NULL;
    return bh_jstate_new(&pt->state, &c);
}

struct load_ctx {
    struct bh_jstate *state;
    size_t skipped;
};

static int
load_block(void *ctx, const char *id, size_t len, const void *value, size_t vlen)
{
    struct load_ctx *c = ctx;
    return bh_jstate_restore(c->state, id, len, value, vlen, &c->skipped);
}

/*
 * Partition P's state from the local store: its blocks as of its checkpoint.
 * Returns the changelog offset to read on from, or BEGINNING when the store
 * has nothing usable (then it forgets the partition: a rebuild starts clean).
 */
static int64_t
load_local(struct bh_join *j, struct part *pt, int32_t p)
{
    int64_t ck;
    /*
     * Whether the changelog still holds every record from the checkpoint on
     * is not asked here (that would wait for Kafka on the loop): the restorer
     * starts there, and a checkpoint outside the changelog (its start moved
     * past it, or a topic made again) comes back as an offset error
     * (auto.offset.reset "error"): then the partition is rebuilt from the
     * changelog's beginning (rebuild_from_beginning).
     */
    if (bh_jstore_checkpoint(j->store, p, &ck) == 0) {
        struct load_ctx c = {pt->state, 0};
        int rc = bh_jstore_blocks(j->store, p, load_block, &c);
        if (rc == 0)
            return ck;
        bh_warn("join",
                "partition %" PRId32 ": the local store's blocks do not read back (%s): "
                "rebuilding from the changelog",
                p, strerror(-rc));
        if (new_state(j, pt, p) < 0)
            return -ENOMEM;
    }
    int rc = bh_jstore_drop(j->store, p);
    return rc < 0 ? rc : RD_KAFKA_OFFSET_BEGINNING;
}

/*
 * Restore every RESTORING partition (a new assignment of the restorer): from
 * the local store and the changelog after its checkpoint, or from the whole
 * changelog.
 */
static void
start_restore(struct bh_join *j)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(j->nparts);
    for (int32_t p = 0; p < j->nparts; p++) {
        struct part *pt = &j->parts[p];
        if (pt->st != PART_RESTORING)
            continue;
        pt->restore_started = (int64_t)bh_join_now_ns();
        pt->restore_records = 0;
        bh_jstore_batch_free(pt->rbatch);
        pt->rbatch = NULL;
        if (new_state(j, pt, p) < 0 || (pt->rbatch = bh_jstore_batch_new(j->store)) == NULL) {
            rd_kafka_topic_partition_list_destroy(l);
            fail(j, "join: out of memory");
            return;
        }
        int64_t from = load_local(j, pt, p);
        if (from == -ENOMEM || from == -EIO || from == -EINVAL) {
            rd_kafka_topic_partition_list_destroy(l);
            fail(j, "join: the state store cannot be used for partition %" PRId32 ": %s", p,
                 strerror((int)-from));
            return;
        }
        pt->resumed_at = from >= 0 ? from : -1;
        j->held_ck[p] = -1;
        bh_jstate_set_batch(pt->state, pt->rbatch); /* what the changelog says goes to the store */
        rd_kafka_topic_partition_list_add(l, j->conf->state_topic, p)->offset = from;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(j->restorer, l->cnt > 0 ? l : NULL);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail(j, "join: cannot read the changelog %s: %s", j->conf->state_topic,
             rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

/* Partition P of every input. */
static rd_kafka_topic_partition_list_t *
input_partitions(struct bh_join *j, int32_t p)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)j->ninputs);
    for (size_t i = 0; i < j->ninputs; i++)
        rd_kafka_topic_partition_list_add(l, j->inputs[i].c->topic, p);
    return l;
}

/* What a restore read so far, into the store (the batch starts again empty). */
static int
flush_restore(struct bh_join *j, struct part *pt)
{
    int rc = bh_jstore_write(j->store, pt->rbatch);
    pt->rbatch = bh_jstore_batch_new(j->store);
    bh_jstate_set_batch(pt->state, pt->rbatch);
    return rc < 0 ? rc : pt->rbatch == NULL ? -ENOMEM : 0;
}

/* Partition P's changelog is read up to END: the store gets the rest and END as checkpoint. */
/*
 * What the rules remembered of partition P's blocks, read back from
 * join.rules_topic (read_committed, to its end) before the partition is
 * live; the loop waits for it. -1 when the join failed.
 */
static int
restore_rules(struct bh_join *j, int32_t p)
{
    char err[512];
    if (j->rr == NULL) {
        const char *pin[] = {
            "group.id", j->instance,       "enable.auto.commit", "false", "enable.partition.eof",
            "true",     "isolation.level", "read_committed",     NULL};
        const char *def[] = {NULL};
        rd_kafka_conf_t *c = bh_join_client_conf(j, 0, def, pin, err, sizeof(err));
        if (c != NULL && (j->rr = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err))) == NULL)
            rd_kafka_conf_destroy(c);
        if (j->rr == NULL) {
            fail(j, "join: the rules' reader: %s", err);
            return -1;
        }
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, j->conf->rules_topic, p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(j->rr, l);
    rd_kafka_topic_partition_list_destroy(l);
    size_t n = 0;
    int done = e != RD_KAFKA_RESP_ERR_NO_ERROR, rc = 0;
    uint64_t deadline = bh_join_now_ns() + 60ULL * 1000000000ULL;
    while (!done && rc >= 0) {
        if (bh_join_now_ns() > deadline) {
            e = RD_KAFKA_RESP_ERR__TIMED_OUT;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(j->rr, 200);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            done = 1;
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            e = m->err;
            done = 1;
        } else {
            rc = bh_jrules_restore(j->rules, p, m->key, m->key_len, m->payload, m->len);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(j->rr, NULL);
    if (rc < 0 || e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fail(j, "join: reading %s[%" PRId32 "] back: %s", j->conf->rules_topic, p,
             rc < 0 ? strerror(-rc) : rd_kafka_err2str(e));
        return -1;
    }
    if (n > 0)
        bh_info("join", "partition %" PRId32 ": %zu rule states read back from %s", p, n,
                j->conf->rules_topic);
    return 0;
}

static void
finish_restore(struct bh_join *j, int32_t p, int64_t end)
{
    struct part *pt = &j->parts[p];
    if (bh_jstate_restore_finish(pt->state) < 0) {
        fail(j, "join: out of memory restoring partition %" PRId32, p);
        return;
    }
    if (j->rules != NULL && restore_rules(j, p) < 0)
        return;
    bh_jstore_put_checkpoint(pt->rbatch, p, end);
    int rc = bh_jstore_write(j->store, pt->rbatch);
    pt->rbatch = NULL;
    bh_jstate_set_batch(pt->state, NULL);
    if (rc < 0) {
        fail(j, "join: cannot write the state store for partition %" PRId32 ": %s", p,
             strerror(-rc));
        return;
    }
    pt->st = PART_LIVE;
    j->stats.restores++;
    if (pt->resumed_at >= 0)
        j->stats.resumes++;
    else
        j->stats.rebuilds++;
    rd_kafka_topic_partition_list_t *l = input_partitions(j, p);
    rd_kafka_resume_partitions(j->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    struct bh_jstate_usage u;
    bh_jstate_usage(pt->state, &u);
    char from[96];
    if (pt->resumed_at >= 0)
        snprintf(from, sizeof(from), "the local checkpoint at changelog offset %" PRId64,
                 pt->resumed_at);
    else
        snprintf(from, sizeof(from), "the changelog's beginning");
    bh_info("join",
            "partition %" PRId32 " restored: %zu blocks from %s and %zu changelog records in "
            "%.0f ms, %" PRId64 " events counted in them; consuming",
            p, u.blocks, from, pt->restore_records,
            (double)((int64_t)bh_join_now_ns() - pt->restore_started) / 1e6, u.counted);
    int left = 0;
    for (int32_t k = 0; k < j->nparts; k++)
        left |= j->parts[k].st == PART_RESTORING;
    if (!left)
        rd_kafka_assign(j->restorer, NULL);
}

/*
 * The restorer could not start where partition P's restore began (the local
 * checkpoint is outside the changelog): forget what the store has of the
 * partition and read the whole changelog instead.
 */
static void
rebuild_from_beginning(struct bh_join *j, struct part *pt, int32_t p, const char *why)
{
    bh_warn("join",
            "partition %" PRId32 ": the changelog cannot be read from offset %" PRId64
            " (%s): rebuilding from the changelog's beginning",
            p, pt->resumed_at, why);
    bh_jstate_set_batch(pt->state, NULL);
    bh_jstore_batch_free(pt->rbatch);
    pt->rbatch = NULL;
    int rc = new_state(j, pt, p);
    if (rc == 0)
        rc = bh_jstore_drop(j->store, p);
    if (rc == 0 && (pt->rbatch = bh_jstore_batch_new(j->store)) == NULL)
        rc = -ENOMEM;
    if (rc < 0) {
        fail(j, "join: the state store cannot be used for partition %" PRId32 ": %s", p,
             strerror(-rc));
        return;
    }
    bh_jstate_set_batch(pt->state, pt->rbatch);
    pt->resumed_at = -1;
    pt->restore_records = 0;
    /*
     * The restorer stopped fetching the partition (an offset error): assign
     * again, this partition from the beginning, the others restoring from
     * where they are (the next record, else where they began).
     */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(j->nparts);
    for (int32_t k = 0; k < j->nparts; k++)
        if (j->parts[k].st == PART_RESTORING)
            rd_kafka_topic_partition_list_add(l, j->conf->state_topic, k);
    rd_kafka_position(j->restorer, l);
    for (int i = 0; i < l->cnt; i++) {
        rd_kafka_topic_partition_t *t = &l->elems[i];
        const struct part *o = &j->parts[t->partition];
        if (t->partition == p)
            t->offset = RD_KAFKA_OFFSET_BEGINNING;
        else if (t->offset < 0)
            t->offset = o->resumed_at >= 0 ? o->resumed_at : RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(j->restorer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail(j, "join: cannot read the changelog %s[%" PRId32 "] from its beginning: %s",
             j->conf->state_topic, p, rd_kafka_err2str(e));
}

static void
on_changelog(struct bh_join *j, rd_kafka_message_t *m)
{
    int32_t p = m->partition;
    if (p < 0 || p >= j->nparts || j->parts[p].st != PART_RESTORING)
        return;
    struct part *pt = &j->parts[p];
    if (pt->rbatch == NULL)
        return; /* a failure is on its way */
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        /* At the end only when nothing is pending (the stable offset reached the high mark). */
        int64_t lo, hi;
        if (rd_kafka_get_watermark_offsets(j->restorer, j->conf->state_topic, p, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            m->offset >= hi)
            finish_restore(j, p, m->offset);
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
        rebuild_from_beginning(j, pt, p, rd_kafka_message_errstr(m));
        return;
    }
    if (m->err) {
        bh_warn("join", "changelog: %s", rd_kafka_message_errstr(m));
        return;
    }
    size_t skipped = 0;
    pt->restore_records++;
    int rc = bh_jstate_restore(pt->state, m->key, m->key_len, m->payload, m->len, &skipped);
    if (rc == -ENOMEM)
        fail(j, "join: out of memory restoring partition %" PRId32, p);
    else if (rc == -EPROTO)
        fail(j,
             "join: changelog %s[%" PRId32 "] offset %" PRId64
             ": a BlockState written by an earlier blockhub (without the window); this version "
             "cannot go on from it: give join.state_topic a new topic (the views are rebuilt "
             "from the inputs the group has not consumed; reset the group's offsets to rebuild "
             "them all)",
             j->conf->state_topic, p, m->offset);
    else if (rc < 0)
        bh_error("join", "changelog %s[%" PRId32 "] offset %" PRId64 ": not a record of the join",
                 j->conf->state_topic, p, m->offset);
    else if (skipped > 0)
        bh_warn("join",
                "changelog %s[%" PRId32 "] offset %" PRId64
                ": a department that is no longer an input: ignored",
                j->conf->state_topic, p, m->offset);
    if (!j->failed && bh_jstore_batch_count(pt->rbatch) >= RESTORE_BATCH &&
        (rc = flush_restore(j, pt)) < 0)
        fail(j, "join: cannot write the state store for partition %" PRId32 ": %s", p,
             strerror(-rc));
}

/*
 * Forget everything not committed: pause the inputs, rewind them to the last
 * commit, rebuild the state from the changelog (as on a new assignment).
 */
static void
rewind_and_restore(struct bh_join *j)
{
    rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(8);
    for (int32_t p = 0; p < j->nparts; p++) {
        struct part *pt = &j->parts[p];
        if (pt->st != PART_RESTORING)
            continue;
        for (size_t i = 0; i < j->ninputs; i++) {
            if (pt->committed[i] >= 0)
                rd_kafka_topic_partition_list_add(seek, j->inputs[i].c->topic, p)->offset =
                    pt->committed[i];
        }
        drop_state(j, pt);
    }
    if (seek->cnt > 0) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(j->consumer, seek, 0);
        if (e != NULL) {
            fail(j, "join: cannot rewind the inputs: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    }
    rd_kafka_topic_partition_list_destroy(seek);
    if (!j->failed)
        start_restore(j);
}

static void
recover(struct bh_join *j, const char *why)
{
    rd_kafka_topic_partition_list_t *pause = rd_kafka_topic_partition_list_new(8);
    for (int32_t p = 0; p < j->nparts; p++) {
        struct part *pt = &j->parts[p];
        if (pt->st == PART_NONE)
            continue;
        if (pt->st == PART_LIVE) {
            for (size_t i = 0; i < j->ninputs; i++)
                rd_kafka_topic_partition_list_add(pause, j->inputs[i].c->topic, p);
        }
        pt->st = PART_RESTORING;
        pt->held = 0; /* the restore rewinds and resumes it */
    }
    if (pause->cnt > 0) {
        rd_kafka_pause_partitions(j->consumer, pause);
        bh_warn("join",
                "%s: rebuilding the state from the changelog, inputs rewound to the last "
                "commit",
                why);
    }
    rd_kafka_topic_partition_list_destroy(pause);
    if (j->revoking)
        return; /* the partitions go: nothing to rebuild */
    if (job_busy(j)) {
        /* Where to rewind to depends on how the running commit ends. */
        j->recover_wanted = 1;
        return;
    }
    rewind_and_restore(j);
}

/* --- committing ------------------------------------------------------------------ */

/* Remembered events the store does not have yet (disk: between flushes). */
static int
needs_flush(struct bh_join *j)
{
    for (int32_t p = 0; p < j->nparts; p++)
        if (j->parts[p].st == PART_LIVE && bh_jstate_staged(j->parts[p].state) > 0)
            return 1;
    return 0;
}

static int
has_work(struct bh_join *j)
{
    for (int32_t p = 0; p < j->nparts; p++) {
        struct part *pt = &j->parts[p];
        if (pt->st != PART_LIVE)
            continue;
        if (bh_jstate_has_dirty(pt->state))
            return 1;
        for (size_t i = 0; i < j->ninputs; i++)
            if (pt->consumed[i] >= 0 && pt->consumed[i] != pt->committed[i])
                return 1;
    }
    return 0;
}

/* RKT: the producer's own handle of the topic (a name lookup per record costs). */
static int
produce(struct bh_join *j, rd_kafka_topic_t *rkt, int32_t partition, const void *key, size_t keylen,
        const void *value, size_t len, void *opaque)
{
    for (int attempt = 0;; attempt++) {
        /* The timestamp given saves librdkafka a clock read per record. */
        rd_kafka_resp_err_t e = rd_kafka_producev(
            j->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(j->now_ms),
            RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || attempt >= 100) {
            bh_error("join", "producing to %s: %s", rd_kafka_topic_name(rkt), rd_kafka_err2str(e));
            return e == RD_KAFKA_RESP_ERR__FATAL ? -ESHUTDOWN : -EIO;
        }
        rd_kafka_poll(j->producer, 10);
    }
}

static int
emit_changelog(void *ctx, const void *key, size_t keylen, const void *value, size_t len)
{
    struct emit_ctx *c = ctx;
    struct bh_join *j = c->j;
    j->stats.changelog_records++;
    j->stats.tombstones += value == NULL;
    j->produced[c->partition]++;
    return produce(j, j->state_out, c->partition, key, keylen, value, len,
                   (void *)(uintptr_t)atomic_load(&j->generation));
}

int
bh_join_view_of(struct bh_join *j, const struct bh_jstate *s, const struct bh_jblock *b,
                struct bh_jview *v)
{
    size_t need = bh_jstate_type_slots(b, j->ninputs);
    if (need > j->capvtypes) {
        struct bh_jview_type *t = realloc(j->vtypes, need * sizeof(*t));
        if (t == NULL)
            return -ENOMEM;
        j->vtypes = t;
        j->capvtypes = need;
    }
    bh_jstate_view(s, b, v, j->vdepts, j->vtypes);
    const struct bh_block *blk = bh_blockmap_find(j->hub->blocks, b->id, b->id_len);
    v->block_name = blk ? blk->name : NULL;
    return 0;
}

static int
produce_block(struct bh_join *j, int32_t p, struct bh_jblock *b)
{
    struct part *pt = &j->parts[p];
    struct bh_jview v;
    int rc = bh_join_view_of(j, pt->state, b, &v);
    if (rc < 0)
        return rc;
    bh_jbuf_reset(&j->view);
    if (j->hub->framing == BH_FRAMING_CONFLUENT)
        bh_jbuf_confluent_header(&j->view, j->view_schema->registry_id);
    else
        bh_jbuf_header(&j->view, j->view_schema->fingerprint);
    bh_jview_encode(j->layout, &v, &j->view);
    if (j->view.oom)
        return -ENOMEM;
    /* The partitioner places the view where the key's inputs are (murmur2, co-partitioned). */
    rc = produce(j, j->view_out, RD_KAFKA_PARTITION_UA, b->id, b->id_len, j->view.p, j->view.len,
                 NULL);
    if (rc < 0)
        return rc;
    j->stats.views++;
    struct emit_ctx c = {j, p};
    return bh_jstate_write(pt->state, b, &j->buf, &j->key, emit_changelog, &c);
}

/*
 * A commit, in three steps. Begin: a transaction, and a snapshot of what it
 * commits: the changed blocks of every live partition and the consumed
 * offsets. Produce: each changed block's view and changelog records, at most
 * COMMIT_SLICE blocks per loop turn so that the loop stays responsive; nothing
 * is consumed meanwhile, so the snapshot holds. End: the offsets and the
 * commit go to the transaction thread (or run here when SYNC).
 */
static int
commit_begin(struct bh_join *j)
{
    j->now_ms = bh_now_ms();
    struct bh_jstore_batch *sb = bh_jstore_batch_new(j->store);
    if (sb == NULL)
        return -ENOMEM;
    /* A new generation: delivery reports of earlier commits no longer count. */
    atomic_fetch_add(&j->generation, 1);
    for (int32_t p = 0; p < j->nparts; p++) {
        j->produced[p] = 0;
        atomic_store(&j->track[p].last_offset, -1);
        atomic_store(&j->track[p].delivered, 0);
    }
    rd_kafka_error_t *e = rd_kafka_begin_transaction(j->producer);
    if (e != NULL) {
        int fatal = rd_kafka_error_is_fatal(e);
        char why[300];
        snprintf(why, sizeof(why), "begin_transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        bh_jstore_batch_free(sb);
        if (fatal)
            replace_producer(j, why);
        else
            bh_warn("join", "%s; trying again", why);
        return -EIO;
    }
    struct commit_run *r = &j->run;
    r->offsets = rd_kafka_topic_partition_list_new(16);
    r->sbatch = sb;
    r->p = 0;
    r->rc = 0;
    r->active = 1;
    for (int32_t p = 0; p < j->nparts; p++) {
        struct part *pt = &j->parts[p];
        pt->pending = NULL;
        if (pt->st != PART_LIVE)
            continue;
        if (r->rc == 0)
            r->rc = bh_jstate_commit_begin(pt->state);
        bh_jstate_set_batch(pt->state, sb);
        pt->in_commit = 1;
        pt->pending = bh_jstate_take_dirty(pt->state);
        if (r->rc == 0 && pt->nalerts > 0)
            r->rc = produce_alerts(j, pt);
        /* What the rules remember of the blocks, with the alerts it caused. */
        if (r->rc == 0 && j->rules != NULL) {
            struct emit_ctx ec = {j, p};
            r->rc = bh_jrules_take_dirty(j->rules, p, emit_rule_state, &ec);
        }
        for (size_t i = 0; i < j->ninputs; i++)
            if (pt->consumed[i] >= 0 && pt->consumed[i] != pt->committed[i])
                rd_kafka_topic_partition_list_add(r->offsets, j->inputs[i].c->topic, p)->offset =
                    pt->consumed[i];
        /* Dedup batches now beyond the retention leave the changelog in this transaction. */
        struct emit_ctx c = {j, p};
        long swept =
            r->rc == 0 ? bh_jstate_sweep(pt->state, &j->key, emit_changelog, &c, SWEEP_STEPS) : 0;
        if (swept < 0)
            r->rc = (int)swept;
    }
    return 0;
}

/* Produce up to LIMIT blocks; 1 when all are (or a record failed), else 0. */
static int
commit_step(struct bh_join *j, size_t limit)
{
    struct commit_run *r = &j->run;
    for (size_t n = 0; r->p < j->nparts && n < limit && r->rc == 0;) {
        struct part *pt = &j->parts[r->p];
        if (pt->st != PART_LIVE || pt->pending == NULL) {
            r->p++;
            continue;
        }
        struct bh_jblock *b = pt->pending;
        pt->pending = b->next_dirty;
        r->rc = produce_block(j, r->p, b);
        n++;
    }
    return r->p >= j->nparts || r->rc < 0;
}

/* Remembered events not in the store yet (in memory: up to 64 bytes each). */
static size_t
staged_events(struct bh_join *j)
{
    size_t staged = 0;
    for (int32_t p = 0; p < j->nparts; p++)
        if (j->parts[p].st == PART_LIVE)
            staged += bh_jstate_staged(j->parts[p].state);
    return staged;
}

/* The disk store is due a flush by its size: the remembered events it does not have make one. */
static int
flush_by_size(struct bh_join *j)
{
    return bh_jstore_is_disk(j->store) && staged_events(j) >= j->conf->memory_limit / 2048;
}

/*
 * Whether the commit about to end is a flush: the store (on disk) takes the
 * remembered events of the commits since the last flush in one large write
 * when there are many of them, when FLUSH_MS passed, or when the work is
 * handed over (SYNC: a stop; or a revocation under way). The memory store
 * takes them at every commit.
 */
static int
flush_due(struct bh_join *j, int sync)
{
    if (sync || j->revoking || !bh_jstore_is_disk(j->store))
        return 1;
    if (bh_join_now_ns() - j->flushed_ns >= (uint64_t)FLUSH_MS * 1000000)
        return 1;
    return flush_by_size(j);
}

static void
commit_end(struct bh_join *j, int sync, const char *abort_why)
{
    struct commit_run *r = &j->run;
    struct txn *t = &j->txn;
    r->active = 0;
    int flush = flush_due(j, sync);
    for (int32_t p = 0; p < j->nparts; p++) {
        struct part *pt = &j->parts[p];
        pt->pending = NULL;
        /* A flush: the remembered events and the blocks join the commit's store writes. */
        if (flush && r->rc == 0 && abort_why == NULL && pt->st == PART_LIVE && pt->in_commit)
            r->rc = bh_jstate_flush(pt->state, &j->buf);
        if (pt->state != NULL)
            bh_jstate_set_batch(pt->state, NULL); /* the batch goes to the transaction thread */
    }
    t->offsets = r->offsets;
    r->offsets = NULL;
    t->sbatch = r->sbatch;
    r->sbatch = NULL;
    t->store = j->store;
    t->track = j->track;
    t->produced = j->produced;
    t->ck = j->commit_ck;
    t->held_ck = j->held_ck;
    t->nparts = j->nparts;
    t->flush = flush;
    t->store_rc = 0;
    t->store_ns = 0;
    t->cgmd = rd_kafka_consumer_group_metadata(j->consumer);
    enum job_kind kind = JOB_COMMIT;
    if (r->rc < 0 || abort_why != NULL) {
        bh_jstore_batch_free(t->sbatch);
        t->sbatch = NULL;
        /* What was produced cannot be taken back: abort, and redo from the last commit. */
        recover(j, abort_why ? abort_why : "a record could not be produced");
        kind = JOB_ABORT;
    }
    if (sync) {
        t->kind = kind;
        t->producer = j->producer;
        t->timeout_ms = txn_timeout(j);
        run_job(t);
        uv_mutex_lock(&t->mu);
        t->state = JOB_DONE;
        uv_mutex_unlock(&t->mu);
        finish_job(j);
        return;
    }
    post_job(j, kind);
}

/* A whole commit here and now (at shutdown only): the loop waits for Kafka. */
static void
commit_now(struct bh_join *j, const char *abort_why)
{
    if (!j->run.active && commit_begin(j) < 0)
        return;
    commit_step(j, SIZE_MAX);
    commit_end(j, 1, abort_why);
}

/*
 * The blocks' state against its quarter of join.memory_limit (now and then:
 * it walks every block). A warning when it outgrows it, once until it is back.
 */
static void
check_memory(struct bh_join *j)
{
    size_t bytes = 0;
    for (int32_t p = 0; p < j->nparts; p++) {
        if (j->parts[p].st != PART_LIVE)
            continue;
        struct bh_jstate_usage u;
        bh_jstate_usage(j->parts[p].state, &u);
        bytes += u.bytes;
    }
    uint64_t share = j->conf->memory_limit / 4;
    if (bytes > share && !j->memory_warned)
        bh_warn("join",
                "the blocks' state takes %zu MiB, more than its quarter of join.memory_limit "
                "(%" PRIu64 " MiB): raise join.memory_limit",
                bytes >> 20, share >> 20);
    j->memory_warned = bytes > share;
}

static void
finish_job(struct bh_join *j)
{
    struct txn *t = &j->txn;
    enum job_kind kind = t->kind;
    enum job_result result = t->result;
    char why[sizeof(t->why)];
    snprintf(why, sizeof(why), "%s", t->why);
    int store_failed = 0;
    if (kind == JOB_COMMIT && result == RESULT_OK) {
        for (int i = 0; i < t->offsets->cnt; i++) {
            const rd_kafka_topic_partition_t *o = &t->offsets->elems[i];
            struct part *pt = &j->parts[o->partition];
            for (size_t k = 0; k < j->ninputs; k++)
                if (strcmp(j->inputs[k].c->topic, o->topic) == 0)
                    pt->committed[k] = o->offset;
        }
        uint64_t ns = t->ended_ns - t->started_ns;
        j->stats.commits++;
        if (j->stats.commits % 512 == 1)
            check_memory(j);
        j->stats.commit_ns_last = ns;
        j->stats.commit_ns_max = ns > j->stats.commit_ns_max ? ns : j->stats.commit_ns_max;
        if (t->sbatch != NULL) {
            /* The memory store: written here, on the loop that reads it. */
            uint64_t start = bh_join_now_ns();
            t->store_rc = bh_jstore_write(j->store, t->sbatch);
            t->sbatch = NULL;
            t->store_ns = bh_join_now_ns() - start;
        }
        if (t->store_rc < 0) {
            store_failed = 1;
        } else {
            j->stats.store_writes++;
            j->stats.store_flushes += t->flush;
            j->stats.store_ns_last = t->store_ns;
            if (t->store_ns > j->stats.store_ns_max)
                j->stats.store_ns_max = t->store_ns;
            if (t->flush)
                j->flushed_ns = bh_join_now_ns();
            /* input may have waited for the flush; or serve begins the one now due */
            if (!j->stopping && (t->flush || flush_by_size(j)))
                uv_idle_start(&j->more, on_more);
            for (int32_t p = 0; p < j->nparts; p++) {
                /* where the changelog of commits since the last flush ends: its checkpoint */
                if (t->flush)
                    j->held_ck[p] = -1;
                else if (j->commit_ck[p] >= 0)
                    j->held_ck[p] = j->commit_ck[p];
                /* After a flush the store has the remembered events: memory lets them go. */
                if (j->parts[p].st == PART_LIVE && j->parts[p].in_commit)
                    bh_jstate_commit_done(j->parts[p].state, 1, t->flush);
            }
        }
    }
    if (kind != JOB_INIT)
        for (int32_t p = 0; p < j->nparts; p++)
            j->parts[p].in_commit = 0;
    bh_jstore_batch_free(t->sbatch);
    t->sbatch = NULL;
    if (t->offsets != NULL)
        rd_kafka_topic_partition_list_destroy(t->offsets);
    if (t->cgmd != NULL)
        rd_kafka_consumer_group_metadata_destroy(t->cgmd);
    t->offsets = NULL;
    t->cgmd = NULL;
    uv_mutex_lock(&t->mu);
    t->state = JOB_IDLE;
    uv_mutex_unlock(&t->mu);

    if (kind == JOB_INIT) {
        if (result == RESULT_OK) {
            j->producer_ready = 1;
            bh_info("join", "transactional producer ready (transactional.id %s)", j->txn_id);
        } else if (!j->stopping) {
            /* The cluster may be away or busy: the inputs wait, paused or unconsumed. */
            bh_error("join", "the transactional producer cannot start (%s); trying again in %d ms",
                     why, RETRY_MS);
            uv_timer_start(&j->retry, on_retry, RETRY_MS, 0);
        }
    } else if (result == RESULT_ABORTED) {
        j->stats.aborts++;
        if (kind == JOB_COMMIT)
            recover(j, why); /* an abort job follows a recovery already under way */
    } else if (result == RESULT_FATAL) {
        replace_producer(j, why);
    }
    if (store_failed)
        recover(j, "the state store could not be written");
    if (j->recover_wanted && !j->revoking && !job_busy(j)) {
        j->recover_wanted = 0;
        rewind_and_restore(j);
    }
    if (j->revoking)
        revoke_step(j);
}

static int
commit_can_begin(struct bh_join *j)
{
    return !j->failed && !j->stopping && !j->revoking && j->producer_ready && !j->run.active &&
           !job_busy(j);
}

/* Begin a commit and produce its first slice: 0, or -1 if it could not begin. */
static int
commit_start(struct bh_join *j)
{
    if (commit_begin(j) < 0)
        return -1;
    if (commit_step(j, COMMIT_SLICE))
        commit_end(j, 0, NULL);
    else
        uv_idle_start(&j->more, on_more);
    return 0;
}

static void
on_tick(uv_timer_t *t)
{
    struct bh_join *j = t->data;
    /*
     * The consumer is served when its queue wakes the loop; an idle one is
     * polled here too, or it would leave the group after max.poll.interval.ms.
     */
    if (!j->failed && !j->stopping)
        release_held(j);
    if (!j->failed && !j->stopping && !j->run.active)
        serve(j);
    if (!commit_can_begin(j))
        return;
    /* Idle: a commit only to flush what the store does not have, once FLUSH_MS passed. */
    if (!has_work(j) &&
        (bh_join_now_ns() - j->flushed_ns < (uint64_t)FLUSH_MS * 1000000 || !needs_flush(j)))
        return;
    (void)commit_start(j);
}

/* --- rebalances -------------------------------------------------------------------- */

static void
on_assign(struct bh_join *j, rd_kafka_topic_partition_list_t *parts)
{
    char err[700];
    if (guard(j, parts, err, sizeof(err)) < 0) {
        rd_kafka_assign(j->consumer, NULL);
        fail(j, "%s", err);
        return;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(j->consumer, parts);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fail(j, "join: assign: %s", rd_kafka_err2str(e));
        return;
    }
    /* Nothing is consumed until the partition's state is back. */
    rd_kafka_pause_partitions(j->consumer, parts);
    char list[400] = "";
    int w = 0;
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (p < 0 || p >= j->nparts || j->parts[p].st != PART_NONE)
            continue;
        j->parts[p].st = PART_RESTORING;
        for (size_t k = 0; k < j->ninputs; k++)
            j->parts[p].committed[k] = j->parts[p].consumed[k] = -1;
        if (w >= 0 && (size_t)w < sizeof(list))
            w += snprintf(list + w, sizeof(list) - (size_t)w, "%s%" PRId32, w ? " " : "", p);
    }
    bh_info("join", "assigned partitions [%s] of %d; restoring their state from %s", list,
            j->nparts, j->conf->state_topic);
    j->owners_at_ns = 0; /* the group changed */
    start_restore(j);
}

/*
 * A revocation never waits for Kafka on the loop, which the adapters share. on_revoke
 * stops the input (serve drops what the consumer still returns) and the commit timer, and
 * returns without the unassign; revoke_step then lets the running job end, commits what
 * is done as a posted job (or aborts the commit being produced when the partitions were
 * lost), and once no job runs, revoke_done drops the partitions and unassigns. librdkafka
 * rejoins the group only after that unassign, so no assignment comes in between.
 */
static void
revoke_done(struct bh_join *j)
{
    int lost = j->revoke_lost;
    int n = 0;
    for (int32_t p = 0; p < j->nparts; p++) {
        struct part *pt = &j->parts[p];
        n += pt->st != PART_NONE;
        drop_state(j, pt);
        pt->st = PART_NONE;
        pt->held = 0;
    }
    j->recover_wanted = 0;
    j->revoking = j->revoke_lost = j->revoke_committed = 0;
    rd_kafka_assign(j->restorer, NULL);
    rd_kafka_assign(j->consumer, NULL);
    j->owners_at_ns = 0;
    bh_info("join", "%s %d partition(s)%s", lost ? "lost" : "revoked", n,
            lost ? " (nothing committed: the group moved on)" : ", work committed");
    if (!j->stopping)
        uv_idle_start(&j->more, on_more); /* what the consumer queued meanwhile */
}

/* The next step of a revocation: on revoke, then after each job (finish_job). */
static void
revoke_step(struct bh_join *j)
{
    if (job_busy(j))
        return;
    if (j->run.active) {
        if (j->revoke_lost)
            commit_end(j, 0, "the partitions were lost");
        else if (!j->stopping)
            uv_idle_start(&j->more, on_more); /* serve produces the rest and posts it */
        return;
    }
    /* the final commit, with a flush: the store gets everything before the partitions go */
    if (!j->revoke_committed && !j->revoke_lost && !j->failed && j->producer_ready &&
        (has_work(j) || needs_flush(j))) {
        j->revoke_committed = 1;
        if (commit_begin(j) == 0) {
            if (!j->stopping)
                uv_idle_start(&j->more, on_more);
            return;
        }
        if (job_busy(j))
            return; /* a new producer is starting: revoke once it has */
    }
    revoke_done(j);
}

/*
 * At shutdown (teardown, or consumer_close, which waits for the unassign): the same steps,
 * each job waited for here. Blocking the loop is harmless then, and the clean stop
 * commits its last transaction.
 */
static void
revoke_now(struct bh_join *j)
{
    while (j->revoking) {
        if (job_busy(j))
            wait_job(j); /* finish_job takes the next step */
        else if (j->run.active && !j->revoke_lost)
            commit_now(j, NULL);
        else
            revoke_step(j);
    }
}

static void
on_revoke(struct bh_join *j)
{
    j->revoke_lost |= rd_kafka_assignment_lost(j->consumer);
    if (!j->revoking) {
        j->revoking = 1;
        j->revoke_committed = 0;
        if (job_busy(j))
            bh_info("join", "partitions %s: waiting for the running transaction to end",
                    j->revoke_lost ? "lost" : "revoked");
    }
    if (j->stopping)
        revoke_now(j);
    else
        revoke_step(j);
}

static void
on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
             void *opaque)
{
    struct bh_join *j = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS && !j->failed && !j->stopping)
        on_assign(j, parts);
    else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
        on_revoke(j);
    else
        rd_kafka_assign(rk, NULL);
}

/* --- the loop side ----------------------------------------------------------------- */

static void
serve(struct bh_join *j)
{
    size_t max = (size_t)j->conf->max_batch, n = 0, k = 0;
    rd_kafka_message_t *m;
    if (j->producer != NULL)
        while (rd_kafka_poll(j->producer, 0) > 0)
            ;
    rd_kafka_event_t *ev;
    while (j->aq != NULL && (ev = rd_kafka_queue_poll(j->aq, 0)) != NULL) {
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DESCRIBECONSUMERGROUPS_RESULT)
            bh_join_http_described(j, ev);
        rd_kafka_event_destroy(ev);
    }
    while (j->restorer != NULL && !j->stopped && n < max &&
           (m = rd_kafka_consumer_poll(j->restorer, 0)) != NULL) {
        on_changelog(j, m);
        rd_kafka_message_destroy(m);
        n++;
    }
    if (j->run.active) {
        /* A commit is being produced: no input until it is (the snapshot must hold). */
        if (commit_step(j, COMMIT_SLICE))
            commit_end(j, 0, NULL);
        else
            k = max;
    }
    if (!j->run.active)
        bh_join_watches_poll(j);
    j->now_ms = bh_now_ms();
    /*
     * The store is behind (its writes take longer than the input comes):
     * input waits until the next flush is written, so that memory stays
     * bounded (twice the flush size; librdkafka holds the input meanwhile).
     */
    int behind = bh_jstore_is_disk(j->store) && staged_events(j) >= j->conf->memory_limit / 1024;
    while (!behind && !j->run.active && j->consumer != NULL && !j->stopped && !j->failed &&
           k < max) {
        size_t got = 0;
        while (got < INPUT_BATCH && k < max &&
               (m = rd_kafka_consumer_poll(j->consumer, 0)) != NULL) {
            k++;
            if (j->revoking) { /* of a partition being revoked: its next owner reads it */
                rd_kafka_message_destroy(m);
                continue;
            }
            j->batch[got++].m = m;
        }
        if (got == 0)
            break;
        on_inputs(j, got);
    }
    /*
     * The store (on disk) is due a flush by its size: the commit that writes
     * it begins now, not at the next interval, so that a long commit_interval
     * does not leave the input stopped (behind) until then.
     */
    if (!j->run.active && flush_by_size(j) && has_work(j) && commit_can_begin(j) &&
        commit_start(j) == 0)
        j->stats.commits_early++;
    /* A full batch may have left more: go on next loop turn, after other I/O. */
    if ((n == max || k == max) && !j->stopping)
        uv_idle_start(&j->more, on_more);
}

static void
on_more(uv_idle_t *h)
{
    struct bh_join *j = h->data;
    uv_idle_stop(h);
    serve(j);
}

static void
on_readable(uv_poll_t *h, int status, int events)
{
    struct bh_join *j = h->data;
    char buf[256];
    (void)status;
    (void)events;
    while (read(j->pipefd[0], buf, sizeof(buf)) > 0)
        ;
    serve(j);
}

/* --- start and stop ----------------------------------------------------------------- */

static void
on_handle_closed(uv_handle_t *h)
{
    struct bh_join *j = h->data;
    if (--j->handles == 0) {
        close(j->pipefd[0]);
        close(j->pipefd[1]);
        j->pipefd[0] = j->pipefd[1] = -1;
        j->stopped = 1;
        if (j->failed)
            bh_component_failed(j->comp);
        else
            bh_component_stopped(j->comp);
    }
}

static void
close_handle(struct bh_join *j, uv_handle_t *h)
{
    if (h->loop == NULL || uv_is_closing(h))
        return;
    h->data = j;
    j->handles++;
    uv_close(h, on_handle_closed);
}

static void
destroy_queue(rd_kafka_queue_t **q)
{
    if (*q == NULL)
        return;
    rd_kafka_queue_io_event_enable(*q, -1, NULL, 0);
    rd_kafka_queue_destroy(*q);
    *q = NULL;
}

/* Everything Kafka, in order: the group (committing on revoke), the restorer, the producer. */
static void
teardown(struct bh_join *j)
{
    uv_timer_stop(&j->tick);
    uv_timer_stop(&j->retry);
    uv_idle_stop(&j->more);
    bh_join_http_stop(j);
    bh_join_watches_stop(j);
    if (j->revoking)
        revoke_now(j);
    if (j->run.active)
        commit_now(j, j->failed ? "the join failed" : NULL);
    if (j->consumer != NULL) {
        rd_kafka_consumer_close(j->consumer);
        wait_job(j);
    }
    if (j->restorer != NULL)
        rd_kafka_consumer_close(j->restorer);
    uv_mutex_lock(&j->txn.mu);
    j->txn.quit = 1;
    uv_cond_broadcast(&j->txn.cv);
    uv_mutex_unlock(&j->txn.mu);
    uv_thread_join(&j->txn.thread);
    if (j->txn.old_producer != NULL)
        rd_kafka_destroy(j->txn.old_producer);
    j->txn.old_producer = NULL;
    destroy_queue(&j->cq);
    destroy_queue(&j->rq);
    destroy_queue(&j->pq);
    destroy_queue(&j->aq);
    if (j->state_rkt != NULL)
        rd_kafka_topic_destroy(j->state_rkt);
    j->state_rkt = NULL;
    drop_topic_handles(j);
    if (j->consumer != NULL)
        rd_kafka_destroy(j->consumer);
    if (j->restorer != NULL)
        rd_kafka_destroy(j->restorer);
    if (j->producer != NULL)
        rd_kafka_destroy(j->producer);
    j->consumer = j->restorer = j->producer = NULL;
    if (j->rr != NULL) {
        rd_kafka_destroy(j->rr);
        j->rr = NULL;
    }
    close_handle(j, (uv_handle_t *)&j->tick);
    close_handle(j, (uv_handle_t *)&j->later);
    close_handle(j, (uv_handle_t *)&j->retry);
    close_handle(j, (uv_handle_t *)&j->more);
    close_handle(j, (uv_handle_t *)&j->poll);
    close_handle(j, (uv_handle_t *)&j->txn.done);
    bh_info("join",
            "stopped: %" PRIu64 " input records, %" PRIu64 " counted, %" PRIu64
            " duplicates, %" PRIu64 " dead letters, %" PRIu64 " views in %" PRIu64
            " commits (%" PRIu64 " aborted)",
            j->stats.consumed, j->stats.counted, j->stats.duplicates, j->stats.dead_letters,
            j->stats.views, j->stats.commits, j->stats.aborts);
}

static void
on_later(uv_timer_t *t)
{
    struct bh_join *j = t->data;
    if (!j->stopping) {
        j->stopping = 1;
        teardown(j);
    }
}

static void
fail(struct bh_join *j, const char *fmt, ...)
{
    if (j->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->failure, sizeof(j->failure), fmt, ap);
    va_end(ap);
    j->failed = 1;
    const char *msg = strncmp(j->failure, "join: ", 6) == 0 ? j->failure + 6 : j->failure;
    bh_error("join", "%s; the join stops", msg);
    /* Not from inside librdkafka's callbacks: on the next loop turn. */
    uv_timer_start(&j->later, on_later, 0, 0);
}

static void
join_stop(struct bh_join *j)
{
    if (j->stopping)
        return;
    j->stopping = 1;
    bh_info("join", "stopping: committing what is done");
    teardown(j);
}

static void
join_free(struct bh_join *j)
{
    if (j == NULL)
        return;
    bh_join_http_free(j); /* its routes off the admin API, waiting queries answered */
    for (int32_t p = 0; j->parts != NULL && p < j->nparts; p++) {
        bh_jstate_free(j->parts[p].state);
        bh_jstore_batch_free(j->parts[p].rbatch);
        free(j->parts[p].consumed);
        free(j->parts[p].committed);
        free(j->parts[p].held_at);
        bh_jbuf_free(&j->parts[p].alerts);
    }
    free(j->parts);
    bh_jstore_batch_free(j->run.sbatch);
    bh_jstore_batch_free(j->txn.sbatch);
    /* After the states (they read it) and the transaction thread (it writes it). */
    bh_jstore_close(j->store);
    free(j->track);
    free(j->produced);
    free(j->commit_ck);
    free(j->held_ck);
    free(j->batch);
    free(j->lookups);
    free(j->found);
    free(j->found_at);
    for (size_t i = 0; i < j->ninputs; i++) {
        for (size_t k = 0; k < j->inputs[i].nplans; k++) {
            bh_jplan_free(j->inputs[i].plans[k].plan);
            free(j->inputs[i].plans[k].symbol_types);
            if (j->inputs[i].plans[k].own != NULL)
                avro_schema_decref(j->inputs[i].plans[k].own);
        }
    }
    free(j->inputs);
    free(j->depts);
    bh_jtypes_free(j->types);
    bh_jview_layout_free(j->layout);
    bh_jbuf_free(&j->buf);
    bh_jbuf_free(&j->key);
    bh_jbuf_free(&j->view);
    bh_jbuf_free(&j->abody);
    bh_jwatches_free(j->watches);
    bh_join_watches_free(j);
    bh_jrules_free(j->rules);
    free(j->vdepts);
    free(j->vtypes);
    if (j->producer_template != NULL)
        rd_kafka_conf_destroy(j->producer_template);
    uv_mutex_destroy(&j->txn.mu);
    uv_cond_destroy(&j->txn.cv);
    free(j);
}

static int
check_conf(struct bh_join *j, char *errstr, size_t n)
{
    const struct bh_join_conf *c = j->conf;
    if (c->inputs.n == 0) {
        snprintf(errstr, n, "join.inputs: at least one input is required");
        return -EINVAL;
    }
    if (strcmp(c->state_store, "disk") != 0 && strcmp(c->state_store, "memory") != 0) {
        snprintf(errstr, n, "join.state_store: '%s' is neither disk nor memory", c->state_store);
        return -EINVAL;
    }
    for (size_t i = 0; i < c->inputs.n; i++) {
        const struct bh_join_input_conf *a = c->inputs.v[i].settings;
        if (strcmp(a->topic, c->view_topic) == 0 || strcmp(a->topic, c->state_topic) == 0) {
            snprintf(errstr, n, "join.inputs[%s].topic: %s is the join's own output",
                     c->inputs.v[i].name, a->topic);
            return -EINVAL;
        }
        for (size_t k = 0; k < i; k++) {
            const struct bh_join_input_conf *b = c->inputs.v[k].settings;
            if (strcmp(a->topic, b->topic) == 0) {
                snprintf(errstr, n, "join.inputs[%s].topic: %s is already the topic of %s",
                         c->inputs.v[i].name, a->topic, c->inputs.v[k].name);
                return -EINVAL;
            }
        }
    }
    if (strcmp(c->view_topic, c->state_topic) == 0) {
        snprintf(errstr, n, "join.state_topic must differ from join.view_topic");
        return -EINVAL;
    }
    if (c->inputs.n > 64) {
        snprintf(errstr, n, "join.inputs: at most 64 inputs");
        return -EINVAL;
    }
    return 0;
}

/* The instance id: configured, else host and admin port (stable across restarts). */
static void
name_instance(struct bh_join *j)
{
    char host[128] = "localhost";
    gethostname(host, sizeof(host) - 1);
    if (j->conf->instance_id != NULL && j->conf->instance_id[0] != '\0')
        snprintf(j->instance, sizeof(j->instance), "%s", j->conf->instance_id);
    else if (j->http_on)
        snprintf(j->instance, sizeof(j->instance), "%s-%s", host, bh_admin_port(j->hub->admin));
    else
        snprintf(j->instance, sizeof(j->instance), "%s-pid%ld", host, (long)getpid());
    snprintf(j->txn_id, sizeof(j->txn_id), "%s-%s", j->conf->transactional_id, j->instance);
    /* Other instances find this one's admin API through the group: its client.id. */
    snprintf(j->client_id, sizeof(j->client_id), "%s", j->http_on ? j->advertise : j->instance);
}

static int
make_clients(struct bh_join *j, char *errstr, size_t n)
{
    char txn_timeout_ms[24], session_ms[24], restore_group[600], err[512];
    char producer_id[300], restorer_id[300];
    snprintf(producer_id, sizeof(producer_id), "%s-txn", j->instance);
    snprintf(restorer_id, sizeof(restorer_id), "%s-restore", j->instance);
    snprintf(txn_timeout_ms, sizeof(txn_timeout_ms), "%" PRId64, j->conf->transaction_timeout);
    snprintf(session_ms, sizeof(session_ms), "%" PRId64, j->conf->session_timeout);
    snprintf(restore_group, sizeof(restore_group), "%s.restore.%s", j->conf->group, j->instance);
    const char *pdef[] = {"linger.ms", "5", "queue.buffering.max.messages", QUEUE_MESSAGES, NULL};
    const char *ppin[] = {"transactional.id",
                          j->txn_id,
                          "transaction.timeout.ms",
                          txn_timeout_ms,
                          "enable.idempotence",
                          "true",
                          "acks",
                          "all",
                          "partitioner",
                          "murmur2_random",
                          "log.queue",
                          "true",
                          "client.id",
                          producer_id,
                          NULL};
    /*
     * A partition count change is seen (and refused) within the metadata refresh
     * interval. The fetcher stops once queued.min.messages wait in the consumer
     * queue (all partitions together): a larger one keeps it fetching while the
     * loop works (queued.max.messages.kbytes still bounds the memory).
     */
    const char *cdef[] = {"session.timeout.ms",
                          session_ms,
                          "topic.metadata.refresh.interval.ms",
                          "30000",
                          "queued.min.messages",
                          "1000000",
                          NULL};
    const char *cpin[] = {"group.id",
                          j->conf->group,
                          "client.id",
                          j->client_id,
                          "isolation.level",
                          "read_committed",
                          "enable.auto.commit",
                          "false",
                          "enable.auto.offset.store",
                          "false",
                          "partition.assignment.strategy",
                          "range",
                          "auto.offset.reset",
                          "earliest",
                          "enable.partition.eof",
                          "false",
                          "log.queue",
                          "true",
                          NULL};
    const char *rpin[] = {"group.id",
                          restore_group,
                          "client.id",
                          restorer_id,
                          "isolation.level",
                          "read_committed",
                          "enable.auto.commit",
                          "false",
                          "enable.auto.offset.store",
                          "false",
                          "auto.offset.reset",
                          "error",
                          "enable.partition.eof",
                          "true",
                          "log.queue",
                          "true",
                          NULL};
    j->producer_template = bh_join_client_conf(j, 1, pdef, ppin, errstr, n);
    if (j->producer_template == NULL)
        return -EINVAL;
    rd_kafka_conf_set_dr_msg_cb(j->producer_template, on_delivery);
    rd_kafka_conf_t *cc = bh_join_client_conf(j, 0, cdef, cpin, errstr, n);
    if (cc == NULL)
        return -EINVAL;
    rd_kafka_conf_set_rebalance_cb(cc, on_rebalance);
    j->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (j->consumer == NULL) {
        rd_kafka_conf_destroy(cc);
        snprintf(errstr, n, "join: consumer: %s", err);
        return -EINVAL;
    }
    /* The changelog is read in bulk to its end: no waiting for more data at the end. */
    const char *rdef[] = {"fetch.wait.max.ms", "10", NULL};
    rd_kafka_conf_t *rc = bh_join_client_conf(j, 0, rdef, rpin, errstr, n);
    if (rc == NULL)
        return -EINVAL;
    j->restorer = rd_kafka_new(RD_KAFKA_CONSUMER, rc, err, sizeof(err));
    if (j->restorer == NULL) {
        rd_kafka_conf_destroy(rc);
        snprintf(errstr, n, "join: changelog reader: %s", err);
        return -EINVAL;
    }
    /* Knowing the changelog's leaders before the first assignment saves a metadata round. */
    j->state_rkt = rd_kafka_topic_new(j->restorer, j->conf->state_topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (j->state_rkt != NULL && rd_kafka_metadata(j->restorer, 0, j->state_rkt, &md,
                                                  METADATA_TIMEOUT) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
    /* Every queue wakes the loop through the same pipe. */
    rd_kafka_set_log_queue(j->consumer, NULL);
    rd_kafka_set_log_queue(j->restorer, NULL);
    rd_kafka_poll_set_consumer(j->consumer);
    rd_kafka_poll_set_consumer(j->restorer);
    j->cq = rd_kafka_queue_get_consumer(j->consumer);
    j->rq = rd_kafka_queue_get_consumer(j->restorer);
    j->aq = rd_kafka_queue_new(j->consumer);
    rd_kafka_queue_io_event_enable(j->cq, j->pipefd[1], "c", 1);
    rd_kafka_queue_io_event_enable(j->rq, j->pipefd[1], "r", 1);
    rd_kafka_queue_io_event_enable(j->aq, j->pipefd[1], "a", 1);
    return make_producer(j, errstr, n);
}

static int
setup(struct bh_join *j, char *errstr, size_t n)
{
    const struct bh_join_conf *c = j->conf;
    int rc = check_conf(j, errstr, n);
    if (rc < 0)
        return rc;
    j->ninputs = c->inputs.n;
    j->inputs = calloc(j->ninputs, sizeof(*j->inputs));
    j->depts = calloc(j->ninputs, sizeof(*j->depts));
    if (j->inputs == NULL || j->depts == NULL || bh_jtypes_new(&j->types, j->ninputs) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < j->ninputs; i++) {
        j->inputs[i].dept = c->inputs.v[i].name;
        j->inputs[i].c = c->inputs.v[i].settings;
        j->depts[i] = c->inputs.v[i].name;
    }
    j->view_schema = bh_schemas_find(j->hub->schemas, c->view_schema);
    j->state_schema = bh_schemas_find(j->hub->schemas, VIEW_SCHEMA_STATE);
    j->batch_schema = bh_schemas_find(j->hub->schemas, VIEW_SCHEMA_BATCH);
    if (j->view_schema == NULL || j->state_schema == NULL || j->batch_schema == NULL) {
        snprintf(errstr, n, "join: schemas %s, %s and %s are needed in %s", c->view_schema,
                 VIEW_SCHEMA_STATE, VIEW_SCHEMA_BATCH, j->hub->conf->schemas.dir);
        return -ENOENT;
    }
    j->alerting = c->watches.n > 0 || c->rules.n > 0 ||
                  (c->watches_topic != NULL && c->watches_topic[0] != '\0');
    if (j->alerting) {
        j->alert_schema = bh_schemas_find(j->hub->schemas, c->alert_schema);
        if (j->alert_schema == NULL) {
            snprintf(errstr, n, "join.alert_schema: %s is not in %s", c->alert_schema,
                     j->hub->conf->schemas.dir);
            return -ENOENT;
        }
        if (c->watches.n > 0) {
            rc = bh_jwatches_new(&j->watches, &c->watches, j->depts, j->ninputs, errstr, n);
            if (rc < 0)
                return rc;
        }
    }
    char err[300];
    rc = bh_jview_layout_new(&j->layout, j->view_schema->schema, j->depts, j->ninputs, err,
                             sizeof(err));
    if (rc < 0) {
        snprintf(errstr, n, "join: %s: %s", c->view_schema, err);
        return rc;
    }
    j->vdepts = calloc(j->ninputs, sizeof(*j->vdepts));
    if (j->vdepts == NULL)
        return -ENOMEM;
    rc = ensure_topics(j, errstr, n);
    if (rc < 0)
        return rc;
    if (c->rules.n > 0) {
        rc = bh_jrules_new(&j->rules, &c->rules, j->depts, j->ninputs, j->nparts, errstr, n);
        if (rc < 0)
            return rc;
    }
    j->parts = calloc((size_t)j->nparts, sizeof(*j->parts));
    j->track = calloc((size_t)j->nparts, sizeof(*j->track));
    j->produced = calloc((size_t)j->nparts, sizeof(*j->produced));
    j->commit_ck = malloc((size_t)j->nparts * sizeof(*j->commit_ck));
    j->held_ck = malloc((size_t)j->nparts * sizeof(*j->held_ck));
    if (j->parts == NULL || j->track == NULL || j->produced == NULL || j->commit_ck == NULL ||
        j->held_ck == NULL)
        return -ENOMEM;
    for (int32_t p = 0; p < j->nparts; p++) {
        atomic_init(&j->track[p].last_offset, -1);
        atomic_init(&j->track[p].delivered, 0);
        j->commit_ck[p] = j->held_ck[p] = -1;
    }
    j->flushed_ns = bh_join_now_ns();
    j->batch = calloc(INPUT_BATCH, sizeof(*j->batch));
    j->lookups = calloc(INPUT_BATCH, sizeof(*j->lookups));
    j->found = calloc(INPUT_BATCH, sizeof(*j->found));
    j->found_at = calloc(INPUT_BATCH, sizeof(*j->found_at));
    if (j->batch == NULL || j->lookups == NULL || j->found == NULL || j->found_at == NULL)
        return -ENOMEM;
    atomic_init(&j->generation, 1);
    /* What the store is for: a store made for another changelog or layout is emptied. */
    char identity[2048];
    int w = snprintf(identity, sizeof(identity), "brokers %s, changelog %s, %d partitions, inputs",
                     j->hub->conf->kafka.brokers, c->state_topic, (int)j->nparts);
    for (size_t i = 0; i < j->ninputs && w > 0 && (size_t)w < sizeof(identity); i++)
        w += snprintf(identity + w, sizeof(identity) - (size_t)w, " %s", j->depts[i]);
    struct bh_jstore_conf sc = {
        .disk = strcmp(c->state_store, "disk") == 0,
        .dir = c->state_dir,
        .memory_limit = c->memory_limit,
        .nparts = j->nparts,
        .ndepts = j->ninputs,
        .depts = j->depts,
        .identity = identity,
    };
    rc = bh_jstore_open(&j->store, &sc, errstr, n);
    if (rc < 0)
        return rc;
    for (int32_t p = 0; p < j->nparts; p++) {
        j->parts[p].consumed = malloc(j->ninputs * sizeof(int64_t));
        j->parts[p].committed = malloc(j->ninputs * sizeof(int64_t));
        j->parts[p].held_at = malloc(j->ninputs * sizeof(int64_t));
        if (j->parts[p].consumed == NULL || j->parts[p].committed == NULL ||
            j->parts[p].held_at == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < j->ninputs; i++)
            j->parts[p].consumed[i] = j->parts[p].committed[i] = -1;
    }
    return 0;
}

static int
join_start(struct bh_join **out, struct bh_component *comp, char *errstr, size_t n)
{
    struct bh_hub *hub = comp->hub;
    struct bh_join *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    int rc;
    j->hub = hub;
    j->conf = &hub->conf->join;
    j->admin = &hub->conf->admin;
    j->comp = comp;
    j->pipefd[0] = j->pipefd[1] = -1;
    uv_mutex_init(&j->txn.mu);
    uv_cond_init(&j->txn.cv);
    rc = setup(j, errstr, n);
    if (rc < 0)
        goto out;
    if (pipe2(j->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
        rc = -errno;
        snprintf(errstr, n, "join: pipe: %s", strerror(errno));
        goto out;
    }
    rc = bh_join_http_start(j, errstr, n);
    if (rc < 0)
        goto out;
    name_instance(j);
    rc = make_clients(j, errstr, n);
    if (rc < 0)
        goto out;
    /* The producer must be ready before anything is consumed: wait for it here. */
    j->txn.kind = JOB_INIT;
    j->txn.producer = j->producer;
    j->txn.timeout_ms = txn_timeout(j);
    run_job(&j->txn);
    if (j->txn.result != RESULT_OK) {
        snprintf(errstr, n,
                 "join: the transactional producer (transactional.id %s) cannot start: %s",
                 j->txn_id, j->txn.why);
        rc = -EIO;
        goto out;
    }
    j->producer_ready = 1;
    /* The watches placed at run time, every one, before any input. */
    rc = bh_join_watches_start(j, errstr, n);
    if (rc < 0)
        goto out;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new((int)j->ninputs);
    for (size_t i = 0; i < j->ninputs; i++)
        rd_kafka_topic_partition_list_add(topics, j->inputs[i].c->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(j->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, n, "join: subscribe: %s", rd_kafka_err2str(e));
        rc = -EINVAL;
        goto out;
    }
    /* The thread only signals the loop once a job is posted, which needs the handles below. */
    rc = uv_thread_create(&j->txn.thread, txn_main, &j->txn);
    if (rc < 0) {
        snprintf(errstr, n, "join: thread: %s", uv_strerror(rc));
        goto out;
    }
    j->thread_started = 1;
    uv_loop_t *loop = hub->loop;
    uv_poll_init(loop, &j->poll, j->pipefd[0]);
    uv_idle_init(loop, &j->more);
    uv_timer_init(loop, &j->tick);
    uv_timer_init(loop, &j->later);
    uv_timer_init(loop, &j->retry);
    uv_async_init(loop, &j->txn.done, on_job_done);
    j->poll.data = j->more.data = j->tick.data = j->later.data = j->retry.data = j;
    j->txn.done.data = j;
    uv_poll_start(&j->poll, UV_READABLE, on_readable);
    uv_timer_start(&j->tick, on_tick, (uint64_t)j->conf->commit_interval,
                   (uint64_t)j->conf->commit_interval);
    char store[600];
    if (bh_jstore_is_disk(j->store))
        snprintf(store, sizeof(store), "state store on disk in %s (memory limit %" PRIu64 " MiB)",
                 j->conf->state_dir, j->conf->memory_limit >> 20);
    else
        snprintf(store, sizeof(store), "state store in memory");
    bh_info("join",
            "%zu input(s) -> %s (changelog %s), %d partitions, group %s, instance %s%s%s, "
            "window %" PRId64 " ms, dedup retention %" PRId64 " ms, %s",
            j->ninputs, j->conf->view_topic, j->conf->state_topic, j->nparts, j->conf->group,
            j->instance, j->http_on ? ", admin API " : "", j->http_on ? j->advertise : "",
            j->conf->window, j->conf->dedup_retention, store);
    serve(j);
    *out = j;
    return 0;
out:
    /* Not started: nothing runs on the loop yet. */
    if (j->thread_started) {
        uv_mutex_lock(&j->txn.mu);
        j->txn.quit = 1;
        uv_cond_broadcast(&j->txn.cv);
        uv_mutex_unlock(&j->txn.mu);
        uv_thread_join(&j->txn.thread);
    }
    destroy_queue(&j->cq);
    destroy_queue(&j->rq);
    destroy_queue(&j->pq);
    destroy_queue(&j->aq);
    if (j->consumer != NULL) {
        rd_kafka_consumer_close(j->consumer);
        rd_kafka_destroy(j->consumer);
    }
    if (j->state_rkt != NULL)
        rd_kafka_topic_destroy(j->state_rkt);
    drop_topic_handles(j);
    if (j->restorer != NULL)
        rd_kafka_destroy(j->restorer);
    if (j->producer != NULL)
        rd_kafka_destroy(j->producer);
    j->consumer = j->restorer = j->producer = NULL;
    if (j->rr != NULL) {
        rd_kafka_destroy(j->rr);
        j->rr = NULL;
    }
    bh_join_http_stop(j);
    if (j->pipefd[0] >= 0) {
        close(j->pipefd[0]);
        close(j->pipefd[1]);
    }
    join_free(j);
    return rc;
}

/* --- the join as a component of the hub ------------------------------------------- */

static int
component_start(struct bh_component *c, char *errstr, size_t errstr_size)
{
    struct bh_join *j = NULL;
    int rc = join_start(&j, c, errstr, errstr_size);
    c->priv = j;
    return rc;
}

static void
component_stop(struct bh_component *c)
{
    if (c->priv != NULL)
        join_stop(c->priv);
}

static void
component_destroy(struct bh_component *c)
{
    join_free(c->priv);
    c->priv = NULL;
}

static void
component_stats(const struct bh_component *c, struct bh_stats *out)
{
    const struct bh_join *j = c->priv;
    if (j == NULL)
        return;
    const struct join_stats *s = &j->stats;
    bh_stats_add(out, "consumed", "input records read", false, s->consumed);
    bh_stats_add(out, "counted", "events counted into a view", false, s->counted);
    bh_stats_add(out, "duplicates", "events already counted (resent copies)", false, s->duplicates);
    bh_stats_add(out, "too_late", "events older than the dedup retention, dead-lettered", false,
                 s->too_late);
    bh_stats_add(out, "join_dead_letters", "input records the join dead-lettered", false,
                 s->dead_letters);
    bh_stats_add(out, "views", "block views published", false, s->views);
    bh_stats_add(out, "commits", "transactions committed", false, s->commits);
    bh_stats_add(out, "aborts", "transactions aborted", false, s->aborts);
    bh_stats_add(out, "restores", "partition states restored", false, s->restores);
    bh_stats_add(out, "failed", "1 once the join has stopped on an error", true,
                 (uint64_t)(j->failed != 0));
    bh_stats_add(out, "commit_ms_last", "the last transaction's commit, in ms", true,
                 s->commit_ns_last / 1000000);
    bh_stats_add(out, "commit_ms_max", "the slowest transaction commit, in ms", true,
                 s->commit_ns_max / 1000000);
    size_t bytes = 0;
    for (int32_t p = 0; j->parts != NULL && p < j->nparts; p++) {
        const struct part *pt = &j->parts[p];
        if (pt->st != PART_LIVE)
            continue;
        struct bh_jstate_usage u;
        bh_jstate_usage(pt->state, &u);
        bytes += u.bytes;
        /* Lag: what the inputs hold beyond what this partition has applied (librdkafka's
         * cached high watermarks, no request). */
        uint64_t lag = 0;
        for (size_t i = 0; j->consumer != NULL && i < j->ninputs; i++) {
            int64_t lo, hi;
            if (rd_kafka_get_watermark_offsets(j->consumer, j->inputs[i].c->topic, p, &lo, &hi) !=
                    RD_KAFKA_RESP_ERR_NO_ERROR ||
                hi < 0)
                continue;
            int64_t at = pt->consumed[i] >= 0 ? pt->consumed[i] : lo;
            if (hi > at)
                lag += (uint64_t)(hi - at);
        }
        char pv[16];
        snprintf(pv, sizeof(pv), "%d", (int)p);
        bh_stats_add_labelled(out, "consumer_lag", "input records not yet applied, per partition",
                              true, lag, "partition", pv);
    }
    bh_stats_add(out, "state_bytes", "heap bytes of the live partitions' state", true, bytes);
}

/* The join creates and checks its own topics (the view and the changelog are
 * co-partitioned with its inputs, the changelog compacted): no topics hook. */
const struct bh_component_type bh_join_type = {
    .name = "join",
    .doc = "The join stage: department topics in, the joined view per block out.",
    .start = component_start,
    .stop = component_stop,
    .destroy = component_destroy,
    .stats = component_stats,
};

/* --- configuration ---------------------------------------------------------------- */

#define IKEY(f) offsetof(struct bh_join_input_conf, f)

static const struct bh_conf_key input_keys[] = {
    {.name = "topic",
     .type = BH_CONF_STRING,
     .offset = IKEY(topic),
     .flags = BH_CONF_REQUIRED,
     .doc = "The department topic (keyed by block id, single-object Avro)."},
    {.name = "type_field",
     .type = BH_CONF_STRING,
     .offset = IKEY(type_field),
     .flags = BH_CONF_REQUIRED,
     .doc = "The record field with the event type (a string or an enum), counted in by_type."},
    {.name = "id_field",
     .type = BH_CONF_STRING,
     .offset = IKEY(id_field),
     .def = "event_id",
     .doc = "The record field with the department's event id (a string): an event is "
            "(department, id), a copy is counted once."},
    {.name = "time_field",
     .type = BH_CONF_STRING,
     .offset = IKEY(time_field),
     .def = "occurred_at",
     .doc = "The record field with the event time (a long, timestamp-millis)."},
    {0},
};

static const struct bh_conf_variant input_variant = {
    .keys = input_keys,
    .size = sizeof(struct bh_join_input_conf),
};

const char bh_join_input_types[] = "avro";

const struct bh_conf_variant *
bh_join_input_variant(const char *type)
{
    return strcmp(type, "avro") == 0 ? &input_variant : NULL;
}

#define JKEY(f) offsetof(struct bh_join_conf, f)

const struct bh_conf_key bh_join_conf_keys[] = {
    {.name = "enabled",
     .type = BH_CONF_BOOL,
     .offset = JKEY(enabled),
     .def = "false",
     .doc = "Run the join stage in this process, beside the adapters or alone (a process with "
            "no adapters and the join enabled is a pure join worker)."},
    {.name = "group",
     .type = BH_CONF_STRING,
     .offset = JKEY(group),
     .def = "blockhub-join",
     .doc = "Consumer group: the processes of one group share the blocks (by partition)."},
    {.name = "inputs",
     .type = BH_CONF_VARIANTS,
     .offset = JKEY(inputs),
     .variant = bh_join_input_variant,
     .variant_doc = bh_join_input_types,
     .doc = "The department topics, one entry each: name is the department (the view field "
            "it fills), type is avro."},
    {.name = "view_topic",
     .type = BH_CONF_STRING,
     .offset = JKEY(view_topic),
     .def = "block.view",
     .doc = "The joined view (compacted, key = block id; created compacted if missing)."},
    {.name = "state_topic",
     .type = BH_CONF_STRING,
     .offset = JKEY(state_topic),
     .def = "block.view.state",
     .doc = "The join's state changelog (compacted; created compacted if missing)."},
    {.name = "view_schema",
     .type = BH_CONF_STRING,
     .offset = JKEY(view_schema),
     .def = "blockhub.view.BlockView",
     .doc = "Full name of the view's Avro schema in the schemas directory."},
    {.name = "commit_interval",
     .type = BH_CONF_DURATION,
     .offset = JKEY(commit_interval),
     .def = "100ms",
     .min = 10,
     .max = 60000,
     .doc = "How often a transaction commits: at most one view per block per interval."},
    {.name = "window",
     .type = BH_CONF_DURATION,
     .offset = JKEY(window),
     .def = "24h",
     .min = 1,
     .max = 3650LL * 86400000,
     .doc = "window_total counts the events whose event time is within this of the newest "
            "event time of the block and department."},
    {.name = "dedup_retention",
     .type = BH_CONF_DURATION,
     .offset = JKEY(dedup_retention),
     .def = "400d",
     .min = 1,
     .max = 3650LL * 86400000,
     .doc = "Every event counted is remembered until its event time is this much older than "
            "the newest event time of its department in its partition (the same for a quiet "
            "block as for a busy one): a copy arriving until then changes nothing. An event "
            "older than that is not counted but dead-lettered as too_late, since a copy of it "
            "could no longer be told apart."},
    {.name = "state_store",
     .type = BH_CONF_STRING,
     .offset = JKEY(state_store),
     .def = "disk",
     .doc = "Where the remembered events live: disk (RocksDB in state_dir; a process that "
            "restarts on the same machine goes on from its local checkpoint and replays only "
            "the changelog after it) or memory (every restore reads the whole changelog)."},
    {.name = "state_dir",
     .type = BH_CONF_STRING,
     .offset = JKEY(state_dir),
     .def = "blockhub-join-state",
     .doc = "Directory of the on-disk state store, created if missing (a relative path is "
            "taken from the config file's directory); one process at a time. Losing it costs a "
            "rebuild from the changelog, nothing else."},
    {.name = "memory_limit",
     .type = BH_CONF_SIZE,
     .offset = JKEY(memory_limit),
     .def = "256MiB",
     .min = 16LL << 20,
     .max = 1LL << 40,
     .doc = "Memory of the join's state: three eighths is the on-disk store's block cache, a "
            "quarter its write buffers (remembered events beyond them stay on disk; the index "
            "and filters of its files, about 1.3 bytes per remembered event, are held beside), "
            "an eighth the filters of remembered events in memory, split between the partitions "
            "(each answers most lookups of new events without reading the store while it holds "
            "at most one event per 10 bits of it: 26 million events at the default; beyond that "
            "more lookups read the store, and a warning says so); "
            "the last quarter holds the blocks' counts and windows and the events remembered "
            "since the store last took them (it takes them when there is one for every 2048 "
            "bytes of the limit, or every 10 s; input waits while there are twice as many): "
            "GET /join shows them against it, and a warning is logged when they outgrow it. "
            "The memory store is not bounded by it."},
    {.name = "transactional_id",
     .type = BH_CONF_STRING,
     .offset = JKEY(transactional_id),
     .def = "blockhub-join",
     .doc = "Prefix of the producer's transactional.id; the instance id is appended."},
    {.name = "instance_id",
     .type = BH_CONF_STRING,
     .offset = JKEY(instance_id),
     .doc = "This process's id in the group, stable across restarts and unique among live "
            "processes (a restart fences its predecessor's open transaction). Default: host "
            "name and admin port (host name and pid without an admin API)."},
    {.name = "transaction_timeout",
     .type = BH_CONF_DURATION,
     .offset = JKEY(transaction_timeout),
     .def = "10s",
     .min = 1000,
     .max = 900000,
     .doc = "transaction.timeout.ms: how long an open transaction of a crashed process holds up "
            "the partitions it wrote until the broker aborts it."},
    {.name = "session_timeout",
     .type = BH_CONF_DURATION,
     .offset = JKEY(session_timeout),
     .def = "10s",
     .min = 1000,
     .max = 3600000,
     .doc = "session.timeout.ms: how soon the blocks of a process that died move to the others."},
    {.name = "max_batch",
     .type = BH_CONF_INT,
     .offset = JKEY(max_batch),
     .def = "1000",
     .min = 1,
     .max = 1000000,
     .doc = "Input records handled per loop turn before other work on the loop gets a turn."},
    {.name = "watches",
     .type = BH_CONF_VARIANTS,
     .offset = JKEY(watches),
     .variant = bh_join_watch_variant,
     .variant_doc = bh_join_watch_types,
     .doc = "What to look for in every department's events, one entry each (name: the "
            "watch's name in its alerts): type field (a field of the records, e.g. plate, "
            "uscc or device, equal to a value) or blocks (any event of these blocks); each "
            "counted event that matches (a copy never) fires one alert on alerts_topic, in the "
            "join's transaction."},
    {.name = "alerts_topic",
     .type = BH_CONF_STRING,
     .offset = JKEY(alerts_topic),
     .def = "block.alerts",
     .doc = "The alerts of watches (key = block id; created with the inputs' partition count "
            "if missing), produced in the join's transactions: read them read_committed."},
    {.name = "rules",
     .type = BH_CONF_VARIANTS,
     .offset = JKEY(rules),
     .variant = bh_join_rule_variant,
     .variant_doc = bh_join_rule_types,
     .doc = "Rules across the events of one block over a window, one entry each (name: the "
            "rule's name in its alerts): type pair (an event of a_department and one of "
            "b_department, of the given types, within a duration of each other: one alert per "
            "pair) or spike (more_than events of a department within a duration: one alert "
            "each time the count goes above). Alerts go to alerts_topic in the join's "
            "transaction; what the rules remember goes to rules_topic."},
    {.name = "rules_topic",
     .type = BH_CONF_STRING,
     .offset = JKEY(rules_topic),
     .def = "block.rules.state",
     .doc = "What the rules remember of each block (compacted, one record per block: the states "
            "of every rule that saw its events; created with the inputs' partition count), "
            "written in the join's transactions and read back when a partition is restored; not "
            "for consumers."},
    {.name = "watches_topic",
     .type = BH_CONF_STRING,
     .offset = JKEY(watches_topic),
     .doc = "A compacted topic of the watches placed at run time through the admin API "
            "(POST /watches, DELETE /watches/{name}; created if missing): every join process "
            "reads it to its end before any input and follows it. Unset: watches come from "
            "the config only."},
    {.name = "alert_schema",
     .type = BH_CONF_STRING,
     .offset = JKEY(alert_schema),
     .def = "blockhub.alert.BlockAlert",
     .doc = "Full name of the alerts' Avro schema in the schemas directory."},
    {0},
};
