/*
 * The hub: what every adapter shares. One libuv loop, one Kafka producer (an
 * adapter may have one of its own: component.h, kafka_properties), the block
 * map, the schemas and the dead-letter topic. Everything here is used from the
 * loop thread only.
 */
#ifndef BH_HUB_H
#define BH_HUB_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "component.h"
#include "avro_codec.h"
#include "blockmap.h"
#include "config.h"
#include "kafka.h"
#include "registry.h"
#include "tls.h"

struct bh_log_conf {
    char *level;
    char *format;
};

struct bh_kafka_section {
    char *brokers;
    struct bh_kvlist properties;
    int64_t partitions;
    int64_t replication;
    int64_t create_timeout;
    int64_t flush_timeout;
};

struct bh_blocks_conf {
    char *map;
};

struct bh_schemas_conf {
    char *dir;
};

struct bh_dead_letter_conf {
    char *topic;
    uint64_t max_payload;
};

/* The admin HTTP API (hub/admin.h). */
struct bh_admin_conf {
    char *listen;
    char *advertise;
    struct bh_strlist tokens;
    struct bh_tls_conf tls;
};

/* One input of the join: the department is the entry's name (join/join.c). */
struct bh_join_input_conf {
    char *topic;
    char *id_field;
    char *type_field;
    char *time_field;
};

/* The join stage (join/join.c). */
struct bh_join_conf {
    bool enabled;
    char *group;
    struct bh_variant_list inputs;
    char *view_topic;
    char *state_topic;
    char *view_schema;
    int64_t commit_interval;
    int64_t window;
    int64_t dedup_retention;
    char *state_store;
    char *state_dir;
    uint64_t memory_limit;
    char *transactional_id;
    char *instance_id;
    int64_t transaction_timeout;
    int64_t session_timeout;
    int64_t max_batch;
    struct bh_variant_list watches; /* struct bh_join_watch_conf (join/join_watch.h) */
    char *alerts_topic;
    char *alert_schema;
    char *watches_topic;
    struct bh_variant_list rules; /* struct bh_join_rule_conf (join/join_rule.h) */
    char *rules_topic;
};

struct bh_hub_conf {
    struct bh_log_conf log;
    struct bh_kafka_section kafka;
    struct bh_blocks_conf blocks;
    struct bh_schemas_conf schemas;
    struct bh_dead_letter_conf dead_letter;
    struct bh_variant_list adapters;
    struct bh_join_conf join;
    struct bh_admin_conf admin;
    struct bh_registry_conf schema_registry;
};

/* The root of the configuration table (hub_conf.c). */
extern const struct bh_conf_key bh_hub_conf_keys[];

struct bh_hub {
    uv_loop_t *loop;
    const struct bh_hub_conf *conf;
    struct bh_kafka *kafka;
    struct bh_blockmap *blocks;
    struct bh_schemas *schemas;
    struct bh_encoder *encoder;
    enum bh_framing framing;      /* of every record published (the join's changelog aside) */
    struct bh_registry *registry; /* NULL without schema_registry.url */
    const struct bh_schema *dead_letter_schema;
    struct bh_component **components; /* the adapters of the config, then the join */
    size_t ncomponents;
    size_t running;         /* components started and not yet stopped */
    bool ready;             /* every component started */
    bool stopping;          /* a shutdown was asked for */
    struct bh_admin *admin; /* NULL without admin.listen */
    /* Take the config file again (SIGHUP, POST /admin/reload): 0, or -errno with the
     * reason in ERR; CHANGES says what was done. Set by main.c. */
    int (*reload)(struct bh_hub *hub, char *changes, size_t changes_size, char *err,
                  size_t err_size);
    uint64_t reloads_applied, reloads_refused;
    /* A component stopped by a reload (c->retiring) has finished its work. */
    void (*on_retired)(struct bh_hub *hub, struct bh_component *c);
    void (*on_all_stopped)(struct bh_hub *hub);
};

/* Wall-clock time in milliseconds since the epoch. */
int64_t bh_now_ms(void);

#endif
