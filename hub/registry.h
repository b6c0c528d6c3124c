/*
 * The schema registry client: a Confluent-compatible registry (the API that
 * Spark, Flink, ksqlDB, Kafka Connect and the Confluent clients speak), over
 * libcurl's multi interface driven by the hub's loop (uv_poll on its sockets,
 * a uv_timer for its timeouts): no call here blocks the loop.
 *
 * At start the hub resolves every schema it publishes with (department
 * events, dead letters, the block view) to the id the registry gives it under
 * the topic's subject: looked up, else checked for compatibility under the
 * subject's mode, then registered. Records then carry the Confluent wire
 * format (0x00, 4-byte big-endian id, body). The ids stay cached for the
 * life of the process: a registry that goes away later costs nothing per
 * record; a probe says whether it is reachable (logs, /metrics).
 *
 * The join reads records of schemas it did not register (another version, a
 * producer elsewhere): bh_registry_schema_text fetches a writer schema by id
 * in the background and caches it.
 *
 * Every call returns 0 or a negative errno.
 */
#ifndef BH_REGISTRY_H
#define BH_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "avro_codec.h"
#include "config.h"

enum bh_subject_strategy {
    BH_SUBJECT_TOPIC,        /* "<topic>-value" (TopicNameStrategy) */
    BH_SUBJECT_RECORD,       /* "<record full name>" (RecordNameStrategy) */
    BH_SUBJECT_TOPIC_RECORD, /* "<topic>-<record full name>" (TopicRecordNameStrategy) */
};

/* The schema_registry section of the config. */
struct bh_registry_conf {
    char *url; /* NULL: no registry, records are single-object encoded */
    char *subject_strategy;
    char *framing; /* "confluent" (default with a url) or "single_object" */
    char *username;
    char *password;
    char *bearer_token;
    char *ca_file;
    char *cert_file;
    char *key_file;
    bool insecure;
    int64_t wait;    /* ms: how long start waits for a registry that does not answer */
    int64_t timeout; /* ms: one request */
    int64_t probe_interval;
};

extern const struct bh_conf_key bh_registry_conf_keys[];

int bh_subject_strategy_parse(const char *s, enum bh_subject_strategy *out);
/* The subject of SCHEMA_NAME on TOPIC under strategy S, into OUT. */
void bh_registry_subject(enum bh_subject_strategy s, const char *topic, const char *schema_name,
                         char *out, size_t n);

struct bh_registry;

int bh_registry_new(struct bh_registry **out, uv_loop_t *loop, const struct bh_registry_conf *c,
                    char *errstr, size_t errstr_size);
/* Cancels what is in flight; the loop must run once more for the handles to close. */
void bh_registry_free(struct bh_registry *r);

/* One schema to resolve on one topic. */
struct bh_registry_item {
    const char *topic;
    const struct bh_schema *schema;
    /* filled in: */
    char subject[400];
    int32_t id;      /* -1: not registered (lookup only) */
    int32_t version; /* -1: not known */
};

/*
 * Resolve ITEMS with the registry, running the loop until done: look each up
 * under its subject; with REGISTER, a schema new to its subject is checked for
 * compatibility (refused with the subject, the mode and the registry's
 * messages) and registered. A registry that does not answer is asked again
 * with backoff until c->wait has passed. -EINVAL: a schema refused;
 * -ETIMEDOUT: no answer in time; the reason in ERRSTR.
 */
int bh_registry_resolve(struct bh_registry *r, struct bh_registry_item *items, size_t n,
                        bool do_register, char *errstr, size_t errstr_size);

/*
 * The writer schema of registry id ID: 0 and *TEXT (valid while R lives) when
 * cached; -EAGAIN while it is being fetched (ask again later: a fetch starts
 * now if none is under way); -ENOENT when the registry has no such id.
 */
int bh_registry_schema_text(struct bh_registry *r, int32_t id, const char **text);
/* Put a schema the hub knows into the cache (what resolve found). */
int bh_registry_cache_put(struct bh_registry *r, int32_t id, const char *text);

/* Start the background probe (every c->probe_interval). */
void bh_registry_probe_start(struct bh_registry *r);

struct bh_registry_stats {
    bool reachable;
    uint64_t requests;
    uint64_t failures; /* no answer, or a 5xx */
    uint64_t cached;   /* schemas known by id */
    char last_error[300];
};
void bh_registry_stats(const struct bh_registry *r, struct bh_registry_stats *out);
const char *bh_registry_url(const struct bh_registry *r);

#endif
