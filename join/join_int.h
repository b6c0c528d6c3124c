/*
 * The join stage's internals, shared by join/join.c (the engine) and
 * join/join_http.c (the admin API). Everything here is used on the loop thread
 * only, except struct txn, which the transaction thread shares under its mutex.
 */
#ifndef BH_JOIN_INT_H
#define BH_JOIN_INT_H

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "component.h"
#include "dlq.h"
#include "admin.h"
#include "http.h"
#include "hub.h"
#include "join.h"
#include "join_avro.h"
#include "join_state.h"
#include "join_store.h"
#include "join_rule.h"
#include "join_watch.h"

#define JOIN_PLANS 8 /* writer schemas remembered per input */

struct plan {
    uint64_t fp;           /* single-object writer schemas */
    int32_t id;            /* registry writer schemas (-1: single-object) */
    avro_schema_t own;     /* a writer schema read from the registry, NULL for the hub's own */
    struct bh_jplan *plan; /* NULL: the schema cannot be used (why says why) */
    uint32_t *symbol_types;
    char why[400];
};

struct input {
    const char *dept; /* the entry's name */
    const struct bh_join_input_conf *c;
    const rd_kafka_topic_t *rkt; /* as seen on messages, for a fast match */
    struct plan plans[JOIN_PLANS];
    size_t nplans;
};

enum part_state {
    PART_NONE,      /* not ours */
    PART_RESTORING, /* ours, inputs paused, state being read back */
    PART_LIVE,
};

struct part {
    enum part_state st;
    struct bh_jstate *state;
    struct bh_jblock *pending; /* blocks of the commit being produced, through next_dirty */
    int64_t *consumed;         /* per input: offset after the last one applied, -1 none */
    int64_t *committed; /* per input: where a rewind goes (last commit or first seen), -1 unknown */
    int64_t restore_started;
    size_t restore_records;
    struct bh_jstore_batch *rbatch; /* what the restore read, on its way to the store */
    int64_t resumed_at;             /* the local checkpoint the restore went on from, -1 none */
    int in_commit;                  /* the running commit carries this partition's work */
    /* Input held (paused, rewound) until the registry gives writer schema held_id. */
    int held;
    int32_t held_id;
    int64_t *held_at; /* per input: where its reading goes on, -1 unknown */
    /*
     * Alerts fired since the last commit, for the next one: each a 4-byte
     * key length, the key, a 4-byte value length, the value. Dropped with the
     * state on a rebuild (the events that fired them are applied again).
     */
    struct bh_jbuf alerts;
    size_t nalerts;
};

/*
 * Where the changelog records of the running commit landed, per partition:
 * delivery reports (on whichever thread serves the producer) raise them; the
 * transaction thread reads them once the commit is through. Reports of an
 * earlier commit (another generation) are ignored.
 */
struct changelog_track {
    _Atomic int64_t last_offset; /* -1: none yet */
    _Atomic uint64_t delivered;
};

enum job_kind { JOB_COMMIT, JOB_ABORT, JOB_INIT };
enum job_state { JOB_IDLE, JOB_QUEUED, JOB_RUNNING, JOB_DONE };
enum job_result { RESULT_OK, RESULT_ABORTED, RESULT_FATAL, RESULT_FAILED };

/* One blocking transaction step, run on the transaction thread. */
struct txn {
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    uv_async_t done; /* wakes the loop when a job is done */
    int quit;
    enum job_state state;
    enum job_kind kind;
    rd_kafka_t *producer;
    rd_kafka_t *old_producer; /* JOB_INIT destroys it */
    rd_kafka_topic_partition_list_t *offsets;
    rd_kafka_consumer_group_metadata_t *cgmd;
    int timeout_ms;
    enum job_result result;
    char why[512];
    uint64_t started_ns, ended_ns;
    /* a commit's store writes: done here after the commit when the store is on disk */
    struct bh_jstore *store;
    struct bh_jstore_batch *sbatch;
    struct changelog_track *track; /* per partition */
    uint64_t *produced;            /* per partition: changelog records of this commit */
    int64_t *ck;                   /* per partition: the offset after them (-1 unknown) */
    const int64_t *held_ck;        /* per partition: the same of earlier commits not flushed */
    int32_t nparts;
    int flush; /* the batch carries the remembered events and the checkpoints */
    int store_rc;
    int checkpoints; /* partitions whose checkpoint the write moved */
    uint64_t store_ns;
};

struct join_stats {
    uint64_t consumed;
    uint64_t counted;
    uint64_t duplicates;
    uint64_t dead_letters;
    uint64_t commits;
    uint64_t aborts;
    uint64_t producer_restarts;
    uint64_t restores;
    uint64_t views;
    uint64_t changelog_records;
    uint64_t commit_ns_last, commit_ns_max;
    uint64_t too_late;
    uint64_t resumes;  /* restores that went on from a local checkpoint */
    uint64_t rebuilds; /* restores from the changelog's beginning */
    uint64_t tombstones;
    uint64_t store_writes;
    uint64_t store_flushes;
    uint64_t commits_early; /* begun before the interval: a flush was due by its size */
    uint64_t store_ns_last, store_ns_max;
    uint64_t alerts; /* produced (committed or not) */
};

/* An input record on its way through a batch (join/join.c, on_inputs). */
struct pending_input {
    rd_kafka_message_t *m;
    struct input *in; /* NULL: not to be applied */
    struct part *pt;
    struct bh_jblock *b;
    struct bh_jfields f;
    uint32_t type;
    enum bh_dlq_reason r; /* BH_DLQ_REASON_COUNT: usable */
    int lookup;           /* its store lookup in the batch's, -1 none */
    int32_t wait_id;      /* >= 0: its writer schema (registry id) is not in yet */
    char why[700];
};

/* The commit being produced (join/join.c, commit_begin). */
struct commit_run {
    int active;
    int32_t p; /* the partition being produced */
    int rc;
    rd_kafka_topic_partition_list_t *offsets;
    struct bh_jstore_batch *sbatch; /* the commit's writes to the local store */
};

struct owner_query; /* join_http.c */

struct bh_join {
    struct bh_hub *hub;
    const struct bh_join_conf *conf;
    const struct bh_admin_conf *admin;
    struct bh_component *comp; /* the join as the hub's component: stopped, dead letters' name */

    size_t ninputs;
    struct input *inputs;
    const char **depts;
    int32_t nparts;
    struct part *parts;
    struct bh_jtypes *types;
    struct bh_jstore *store;
    struct changelog_track *track; /* per partition */
    uint64_t *produced;            /* per partition: changelog records of the running commit */
    int64_t *commit_ck;            /* per partition: where they end (the transaction thread) */
    int64_t *held_ck;    /* per partition: where the changelog of commits not flushed ends */
    uint64_t flushed_ns; /* when the store last took the remembered events */
    _Atomic uint64_t generation; /* of the running commit, in its records' opaque */
    struct bh_jview_layout *layout;
    const struct bh_schema *view_schema, *state_schema, *batch_schema, *alert_schema;
    struct bh_jwatches *watches; /* NULL: none configured */
    int alerting;                /* watches configured, or placed at run time */
    struct bh_jrules *rules;     /* NULL: none configured */
    rd_kafka_topic_t *rules_out; /* the producer's handle of join.rules_topic */
    rd_kafka_t *rr;              /* reads join.rules_topic back at a restore */
    /* watches placed at run time (join_wapi.c) */
    rd_kafka_t *wc; /* reads join.watches_topic; NULL: not set */
    rd_kafka_queue_t *wq;
    struct api_watch *api;
    size_t napi, capapi;
    struct wpost *posts; /* placed, not yet acknowledged */
    char instance[256];
    char client_id[320];
    char txn_id[600];

    rd_kafka_t *consumer, *restorer, *producer;
    rd_kafka_topic_t *state_rkt; /* keeps the changelog's metadata known to the restorer */
    rd_kafka_topic_t *view_out, *state_out; /* the producer's handles of the output topics */
    rd_kafka_topic_t *alerts_out;           /* NULL: no watches */
    rd_kafka_queue_t *cq, *rq, *pq, *aq;
    rd_kafka_conf_t *producer_template;
    int pipefd[2];
    uv_poll_t poll;
    uv_idle_t more;
    uv_timer_t tick;
    uv_timer_t later; /* tears down after a failure, outside librdkafka's callbacks */
    uv_timer_t retry; /* starts a producer again after a failed start */
    int handles;      /* uv handles still open */
    struct txn txn;
    struct commit_run run;
    int thread_started;
    int recover_wanted; /* a recovery waits for the running commit */
    /* A revocation under way (revoke_step in join.c): lost, the final commit started. */
    int revoking, revoke_lost, revoke_committed;
    int producer_ready;
    int producer_broken; /* a fatal error: a new producer is on its way */

    struct pending_input *batch; /* INPUT_BATCH of them */
    struct bh_jstore_key *lookups;
    int *found;
    int64_t *found_at;

    struct bh_jbuf buf, key, view;
    struct bh_jbuf abody; /* an alert being encoded */
    struct bh_jview_dept *vdepts;
    struct bh_jview_type *vtypes;
    size_t capvtypes;

    int memory_warned; /* the state outgrew its share of join.memory_limit */
    int stopping, stopped, failed;
    char failure[600];
    struct join_stats stats;
    int64_t now_ms; /* wall clock of the batch being applied (updated_at) */

    /* the admin API */
    int http_on; /* its routes are on the hub's admin API */
    char advertise[300];
    char **owners; /* per partition: the owning member's client.id, from the group */
    uint64_t owners_at_ns;
    int describing;
    struct owner_query *queries;
};

/* join.c, for join_wapi.c */
rd_kafka_conf_t *bh_join_client_conf(struct bh_join *j, int producer, const char *const *defaults,
                                     const char *const *pinned, char *errstr, size_t n);
/* Epoch milliseconds as 2026-11-27T08:15:00.000Z (UTC). */
void bh_join_fmt_time(char *out, size_t n, int64_t ms);
/* Every writer schema's plan is made again when next needed (the watched fields changed). */
void bh_join_forget_plans(struct bh_join *j);

/* join_wapi.c: watches placed at run time through the admin API */
int bh_join_watches_start(struct bh_join *j, char *errstr, size_t n);
void bh_join_watches_poll(struct bh_join *j);
void bh_join_watches_stop(struct bh_join *j);
void bh_join_watches_free(struct bh_join *j);
/* 1 when PATH is /watches or below it (answered), else 0. */
int bh_join_watches_http(struct bh_join *j, h2o_req_t *req, const char *path, size_t len);

/* join_http.c */
int bh_join_http_start(struct bh_join *j, char *errstr, size_t errstr_size);
void bh_join_http_stop(struct bh_join *j);
void bh_join_http_described(struct bh_join *j, rd_kafka_event_t *ev);
void bh_join_http_free(struct bh_join *j);

/* join.c, for join_http.c */
int32_t bh_join_partition_of(const struct bh_join *j, const char *key, size_t len);
/* Fill j->view-side scratch for block B: the view of B as struct bh_jview. */
int bh_join_view_of(struct bh_join *j, const struct bh_jstate *s, const struct bh_jblock *b,
                    struct bh_jview *v);
uint64_t bh_join_now_ns(void);

#endif
