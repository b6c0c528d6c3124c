/*
 * The hub's Kafka producer, driven from the libuv loop.
 *
 * Delivery reports, errors and librdkafka's own log lines reach the loop
 * through the main queue's I/O event: librdkafka writes to a pipe whose read
 * end sits in a uv_poll, and the loop serves the queue until it is empty. No
 * polling timer, and every callback runs on the loop thread.
 *
 * The producer is idempotent with acks=all and the murmur2_random partitioner
 * (Java-compatible placement, so topics keyed by block are co-partitioned);
 * those three are pinned and a config that contradicts them is refused.
 *
 * "embedded" as the broker list starts librdkafka's in-process mock cluster:
 * for trying blockhub out only, it keeps nothing.
 */
#ifndef BH_KAFKA_H
#define BH_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"

/*
 * A delivery tracker embedded in the caller's own per-message state: the
 * callback gets it back (container_of style) with the final result.
 */
struct bh_delivery;
typedef void (*bh_delivery_cb)(struct bh_delivery *d, rd_kafka_resp_err_t err, int32_t partition,
                               int64_t offset);
struct bh_delivery {
    bh_delivery_cb cb;
    uint64_t t0; /* about when bh_publish handed it over (ns, uv_hrtime's clock), for the latency
                  * histogram: the loop's time of that turn (uv_now), a little early */
};

struct bh_kafka_conf {
    const char *brokers;                /* "embedded" or host:port[,host:port...] */
    const struct bh_kvlist *properties; /* passed through to librdkafka */
    int partitions;                     /* for topics blockhub creates */
    int replication;                    /* -1: the broker's default */
    int create_timeout_ms;
};

struct bh_kafka;

/* A bh_conf_key check for a topic name (a char * field): Kafka's rules, 1-249 of a-z A-Z 0-9 . _ -.
 */
int bh_conf_check_topic(const void *value, char *why, size_t why_size);

/*
 * The check of kafka.properties that bh_kafka_new makes, without a producer:
 * every property known to librdkafka with a value it takes, none of the
 * pinned ones changed. Returns 0 or -EINVAL with the reason in WHY.
 */
int bh_kafka_check_properties(const struct bh_kvlist *props, char *why, size_t why_size);

/* Takes nothing from CONF; copies what it needs. */
int bh_kafka_new(struct bh_kafka **out, uv_loop_t *loop, const struct bh_kafka_conf *conf,
                 char *errstr, size_t errstr_size);

/*
 * Did the cluster refuse K's authentication (SASL: wrong mechanism, user or
 * password)? Waits up to WAIT_MS for the answer; call before the loop runs.
 * -EACCES with the reason in ERRSTR, or 0.
 */
int bh_kafka_auth_failed(struct bh_kafka *k, int wait_ms, char *errstr, size_t errstr_size);

/*
 * Make sure TOPICS exist (creating the missing ones with the configured
 * partition count). Blocks up to create_timeout_ms; call before the loop runs.
 * -ETIMEDOUT: the cluster did not answer in time (it may still come);
 * -EACCES: it refused the producer's authentication (as soon as it did);
 * any other error: the cluster refused.
 */
int bh_kafka_ensure_topics(struct bh_kafka *k, const char *const *topics, size_t n, char *errstr,
                           size_t errstr_size);

/*
 * Of TOPICS, those whose count in COUNTS is neither 0 (absent) nor PARTITIONS:
 * one line each appended to ERR (at most MAX of them). Returns how many there are.
 */
size_t bh_kafka_partition_mismatches(const char *const *topics, const int *counts, size_t n,
                                     int partitions, size_t max, char *err, size_t errlen);
/*
 * Refuse (-EINVAL, with the reason) existing TOPICS whose partition count is
 * not the configured one: topics keyed by block must be co-partitioned.
 * -ETIMEDOUT when the cluster did not answer within TIMEOUT_MS.
 */
int bh_kafka_check_partitions(struct bh_kafka *k, const char *const *topics, size_t n,
                              int timeout_ms, char *errstr, size_t errstr_size);

/*
 * The cluster's side of topics, on any client: the hub's producer uses these,
 * and so does the join (its topics are made on the same cluster with other
 * settings).
 */

/* A topic to create: NAME, and CONFIG as name, value, ..., NULL (NULL: the broker's defaults). */
struct bh_kafka_new_topic {
    const char *name;
    const char *const *config;
};

/* CONFIG of a topic that keeps the last record of each key. */
extern const char *const bh_kafka_compacted[];

/* How bh_kafka_create_topics creates topics. */
struct bh_kafka_create_opts {
    int partitions;
    int replication;    /* -1: the broker's default */
    int timeout_ms;     /* how long the cluster has to answer */
    const char *who;    /* the log component and the prefix of errors: "kafka", "join" */
    bool validate_only; /* ask whether they could be created; every refusal listed, one a line */
    /* The producer whose client RK is: a refused authentication of it ends the wait (-EACCES). */
    struct bh_kafka *client;
};

/*
 * Create TOPICS on RK's cluster; one that exists already is left as it is,
 * each one created is logged. Blocks up to O->timeout_ms and a little more.
 * The embedded cluster's topics are made by bh_kafka_ensure_topics instead.
 * -ETIMEDOUT: the cluster did not answer in time (it may still come); any
 * other error: the cluster refused (the reason in ERRSTR).
 */
int bh_kafka_create_topics(rd_kafka_t *rk, const struct bh_kafka_new_topic *topics, size_t n,
                           const struct bh_kafka_create_opts *o, char *errstr, size_t errstr_size);

/*
 * The partition count of each of TOPICS into COUNTS (0: the topic is absent),
 * from the metadata of all topics: asking for one by name may make a broker
 * auto-create it. -ETIMEDOUT when the cluster did not answer within
 * TIMEOUT_MS; WHO prefixes the error.
 */
int bh_kafka_partition_counts(rd_kafka_t *rk, const char *const *topics, size_t n, int *counts,
                              int timeout_ms, const char *who, char *errstr, size_t errstr_size);

/* Which clients a librdkafka property applies to (a bit each). */
enum bh_kafka_scope {
    BH_KAFKA_SCOPE_UNKNOWN = 0, /* not a property librdkafka knows */
    BH_KAFKA_SCOPE_PRODUCER = 1,
    BH_KAFKA_SCOPE_CONSUMER = 2,
    BH_KAFKA_SCOPE_BOTH = 3,
};

/*
 * The scope of property NAME as librdkafka itself tells it (the C/P column
 * of its table of properties, read once): the properties of one kind of
 * client only make the other kind warn. Any thread.
 */
enum bh_kafka_scope bh_kafka_property_scope(const char *name);

/*
 * Produce one message; D->cb is called on the loop thread exactly once when
 * this returns 0. HDRS (may be NULL) is taken on success only. Returns
 * -ENOBUFS when the local queue is full, -ESHUTDOWN after a fatal producer
 * error, -EMSGSIZE when the message (key, value and headers) exceeds the
 * producer's message.max.bytes (it never will fit: dead-letter it as
 * too_large, never retry), -EINVAL otherwise. A delivery report with
 * RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE (the broker's or topic's own limit is
 * lower) means the same.
 */
int bh_kafka_produce(struct bh_kafka *k, const char *topic, const void *key, size_t keylen,
                     const void *value, size_t len, rd_kafka_headers_t *hdrs,
                     struct bh_delivery *d);

/*
 * Divert: until bh_kafka_divert(K, NULL, NULL, NULL), bh_kafka_produce hands
 * its messages to RK, a transactional producer of the caller's own whose open
 * transaction takes them, instead of the hub's producer; on success it gives
 * the tracker D (when not NULL) to TAKE(ARG, D) instead of waiting for a
 * delivery report: the caller calls D->cb itself once the transaction is
 * committed or aborted. Errors: -ENOBUFS, -EMSGSIZE, and -EIO when RK refuses
 * (its transaction must be aborted). Loop thread only, around one call.
 */
void bh_kafka_divert(struct bh_kafka *k, rd_kafka_t *rk,
                     void (*take)(void *arg, struct bh_delivery *d), void *arg);

/* When the delivery reports now being served were taken from librdkafka (uv_hrtime):
 * one clock read for a batch of them, not one each. */
uint64_t bh_kafka_served_at(const struct bh_kafka *k);

/* The producer's message.max.bytes: no record larger than this (with its key and headers) can be
 * produced. */
size_t bh_kafka_max_message(const struct bh_kafka *k);

/* The current librdkafka handle (it changes after a fatal error): the join's
 * admin requests and the tests use it. */
rd_kafka_t *bh_kafka_handle(struct bh_kafka *k);
/* How many times a fatal error made blockhub replace the producer. */
unsigned bh_kafka_restarts(const struct bh_kafka *k);
/* 1 when a broker of the cluster is up (librdkafka's statistics, every 5 s; before
 * the first, unless every broker was reported down). */
int bh_kafka_reachable(const struct bh_kafka *k);
/* A broker as librdkafka's latest statistics (every 5 s) describe it. */
struct bh_kafka_broker {
    char name[96]; /* "host:port/id" */
    int32_t id;
    int up;
    int64_t rtt_avg_us; /* request round trip, average over the last window */
    uint64_t tx_errors; /* requests that failed, since the producer began */
    uint64_t tx_retries;
};
/* The brokers of the latest statistics into OUT; returns how many. */
size_t bh_kafka_brokers(const struct bh_kafka *k, struct bh_kafka_broker *out, size_t cap);
/* Messages produced since the producer was made (those bh_kafka_divert handed on aside). */
uint64_t bh_kafka_produced(const struct bh_kafka *k);
/* Messages produced and not yet reported. */
size_t bh_kafka_in_flight(const struct bh_kafka *k);
/* The bootstrap address actually used (the mock cluster's when embedded). */
const char *bh_kafka_bootstrap(const struct bh_kafka *k);
int bh_kafka_is_embedded(const struct bh_kafka *k);

/*
 * Flush for up to TIMEOUT_MS, serving delivery reports (callbacks run inside
 * this call), then free everything. Returns the number of messages that were
 * still undelivered (0 on a clean flush).
 */
size_t bh_kafka_close(struct bh_kafka *k, int timeout_ms);

/* rd_kafka_conf_set, its refusal in ERRSTR as "kafka property NAME: why": 0 or -EINVAL. */
int bh_kafka_conf_set(rd_kafka_conf_t *c, const char *name, const char *value, char *errstr,
                      size_t n);
/* A consumer's configuration on K's cluster: every kafka.properties entry of PROPS a consumer
 * takes (not the producer's; with NO_GROUP not group.id either), then PINNED (name, value, ...,
 * NULL). NULL, with the refused property in ERRSTR, when one is refused. */
rd_kafka_conf_t *bh_kafka_consumer_conf(struct bh_kafka *k, const struct bh_kvlist *props,
                                        const char *const *pinned, int no_group, char *errstr,
                                        size_t n);

#endif
