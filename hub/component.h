/*
 * The component interface. Every part that runs on the hub's loop is a
 * component: each configured adapter (department feeds in) and the join
 * (the joined view out). main.c starts, stops, pauses, resumes, reloads and
 * reads the counters of all of them through this one interface.
 *
 * An adapter type is one folder under adapters/ that defines one
 * `const struct bh_component_type bh_adapter_type_<folder>`; the build finds
 * it there, so a new department needs its folder, its schema and a config
 * block, and no edit anywhere else (docs/architecture.md walks through one).
 *
 * Life of a component: its settings are parsed by conf.keys into a struct of
 * conf.size bytes; start() opens its intake on the hub's loop; stop() closes
 * the intake and lets in-flight work finish (a drain), after which the
 * component calls bh_component_stopped() once; destroy() frees what is left.
 * start, stop and destroy are required; every other hook may be NULL, and the
 * bh_component_* calls below give its default.
 */
#ifndef BH_COMPONENT_H
#define BH_COMPONENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct bh_hub;
struct bh_component;

/* --- counters, for GET /components and the metrics ------------------------- */

/* The latency histogram's upper bounds in ms, from handing a record to Kafka to its
 * acknowledgement; the last bucket is everything above. */
#define BH_ACK_BUCKETS 13
extern const double bh_ack_bounds_ms[BH_ACK_BUCKETS - 1];

/* One named counter (monotonic) or gauge (a current value). NAME is a
 * metric-style name (lower case, underscores), HELP one line; both static. */
struct bh_stat {
    const char *name;
    const char *help;
    uint64_t value;
    bool gauge;
    const char *label; /* optional: one more label (e.g. "partition"), NULL if none */
    char label_value[24];
};

#define BH_STATS_MAX 96

struct bh_stats {
    size_t n;
    struct bh_stat v[BH_STATS_MAX];
};

/* Add one counter or gauge to S (ignored past BH_STATS_MAX). */
void bh_stats_add(struct bh_stats *s, const char *name, const char *help, bool gauge,
                  uint64_t value);
/* The same with one more label: LABEL="VALUE" (a series per value, e.g. per partition). */
void bh_stats_add_labelled(struct bh_stats *s, const char *name, const char *help, bool gauge,
                           uint64_t value, const char *label, const char *label_value);
/* The value named NAME in S (the first one), or UINT64_MAX. */
uint64_t bh_stats_get(const struct bh_stats *s, const char *name);

/* --- the type -------------------------------------------------------------- */

struct bh_component_type {
    const char *name; /* the config's "type" */
    const char *doc;
    const char *schema;          /* full name of the record schema it publishes (checked at load) */
    struct bh_conf_variant conf; /* .user is set to the type by the registry */
    int (*start)(struct bh_component *c, char *errstr, size_t errstr_size);
    void (*stop)(struct bh_component *c);
    void (*destroy)(struct bh_component *c);
    /* The topics it publishes to, NULL-terminated (created at start when missing).
     * NULL: its string setting "topic", when it has one. */
    void (*topics)(const struct bh_component *c, const char **out, size_t cap);
    /* Stop taking input without dropping any: back-pressure to senders that can
     * wait, 503 to those that can retry. 0, or -errno. */
    int (*pause)(struct bh_component *c);
    int (*resume)(struct bh_component *c);
    /* Its own counters, beside the common ones (bh_component_stats). */
    void (*stats)(const struct bh_component *c, struct bh_stats *out);
    /* Take new SETTINGS (parsed by conf.keys, owned by the caller's config) while
     * running: 0 taken; -ENOTSUP it cannot (the caller drains and replaces it);
     * another -errno refused, with the reason in ERRSTR. */
    int (*reload)(struct bh_component *c, const void *settings, char *errstr, size_t errstr_size);
};

struct bh_component {
    const struct bh_component_type *type;
    struct bh_hub *hub;
    const char *name;
    const void *settings;
    void *priv;
    bool stopped;
    bool stop_called; /* stop() ran: it is draining */
    bool failed;      /* it stopped because of an error: the process exits 1 */
    bool paused;      /* by bh_component_pause */
    bool retiring;    /* stopped by a reload: bh_component_stopped hands it to hub->on_retired */
    const struct bh_variant *successor; /* retiring: the entry that replaces it, or NULL */
    bool restart; /* retiring: start again, same type and name, with the new config's settings */
    /* The common counters, kept by bh_publish (hub/publish.h) for adapters. */
    uint64_t published;          /* records handed to Kafka */
    uint64_t acknowledged;       /* records Kafka acknowledged */
    uint64_t dead_lettered;      /* dead letters handed to Kafka */
    uint64_t delivery_errors;    /* deliveries that failed (retried or given up by the component) */
    uint64_t dead_by_reason[16]; /* dead letters by enum bh_dlq_reason */
    uint64_t ack_buckets[BH_ACK_BUCKETS]; /* acknowledgements by latency (bh_ack_bounds_ms) */
    uint64_t ack_sum_us;                  /* their latencies summed */
    /* Its own producer, made by bh_component_start when its settings carry a non-empty
     * kafka_properties map (BH_KAFKA_PROPERTIES_KEY); NULL: it publishes through the hub's. */
    struct bh_kafka *kafka;
};

/* --- what the hub calls ---------------------------------------------------- */

int bh_component_start(struct bh_component *c, char *errstr, size_t errstr_size);
void bh_component_stop(struct bh_component *c);
void bh_component_destroy(struct bh_component *c);
/* -ENOTSUP when the type cannot pause; 0 when already paused. */
int bh_component_pause(struct bh_component *c);
int bh_component_resume(struct bh_component *c);
/* The common counters, then the type's own. */
void bh_component_stats(const struct bh_component *c, struct bh_stats *out);
/* See bh_component_type.reload; -ENOTSUP without a reload hook. */
int bh_component_reload(struct bh_component *c, const void *settings, char *errstr,
                        size_t errstr_size);
/* Its topics into OUT (at most CAP - 1), NULL-terminated; returns how many. */
size_t bh_component_topics(const struct bh_component *c, const char **out, size_t cap);

/* --- its producer ---------------------------------------------------------- */

/*
 * An adapter type that lets its entries have a producer of their own puts
 * BH_KAFKA_PROPERTIES_KEY(field) in its table, FIELD a struct bh_kvlist of its
 * settings: the entry's librdkafka producer properties over kafka.properties
 * (kafka.brokers, the pinned properties and the hub's defaults stay). Checked
 * like kafka.properties, and refused when they name a property of consumers
 * only, bootstrap.servers or transactional.id.
 */
#define BH_KAFKA_PROPERTIES_NAME "kafka_properties"
int bh_component_check_kafka_properties(const void *value, char *why, size_t why_size);
#define BH_KAFKA_PROPERTIES_KEY(field)                                                             \
    {                                                                                              \
        .name = BH_KAFKA_PROPERTIES_NAME, .type = BH_CONF_MAP, .offset = (field),                  \
        .check = bh_component_check_kafka_properties,                                              \
        .doc = "librdkafka producer properties of this adapter alone (linger.ms, batch.size, "     \
               "compression.type...): when set, the adapter publishes its records and dead "       \
               "letters through a producer of its own, made from the kafka section with these "    \
               "over kafka.properties (kafka.brokers and the pinned properties stay; embedded: "   \
               "the same mock cluster); without it, it shares the hub's producer. A change "       \
               "replaces the adapter (drained, then started again on a new producer)."             \
    }

/* The overriding properties of C's entry (empty when its type has none or none are set). */
const struct bh_kvlist *bh_component_kafka_properties(const struct bh_component *c);
/* The producer C publishes through: its own, else the hub's. */
struct bh_kafka *bh_component_kafka(const struct bh_component *c);
/* Flush C's own producer for up to TIMEOUT_MS and close it (nothing when it has none): the
 * number of messages still undelivered. bh_component_destroy does it too. */
size_t bh_component_close_kafka(struct bh_component *c, int timeout_ms);

/* --- what a component calls ------------------------------------------------ */

/* stop() has finished its in-flight work (call once; later calls are ignored).
 * Safe from anywhere, a Kafka delivery callback included: the hub flushes and
 * closes the producer on a later turn of the loop. */
void bh_component_stopped(struct bh_component *c);
/* It cannot go on (logged by the caller): it counts as stopped, and the process exits 1. */
void bh_component_failed(struct bh_component *c);

/* --- the registry of adapter types, generated by the build from adapters/ --- */

const struct bh_component_type *bh_adapter_type_find(const char *name);
/* For the config engine: the settings table of a type, NULL if unknown. */
const struct bh_conf_variant *bh_adapter_variant(const char *type);
/* Space-separated list of the known types. */
extern const char bh_adapter_type_names[];

#endif
