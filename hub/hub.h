/*
 * The hub: what every adapter shares. One libuv loop, one Kafka producer, the
 * block map, the schemas and the dead-letter topic. Everything here is used
 * from the loop thread only.
 */
#ifndef BH_HUB_H
#define BH_HUB_H

#include <stdint.h>
#include <uv.h>

#include "adapter.h"
#include "avro_codec.h"
#include "blockmap.h"
#include "config.h"
#include "kafka.h"

struct bh_log_conf {
    char *level;
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

struct bh_hub_conf {
    struct bh_log_conf log;
    struct bh_kafka_section kafka;
    struct bh_blocks_conf blocks;
    struct bh_schemas_conf schemas;
    struct bh_dead_letter_conf dead_letter;
    struct bh_variant_list adapters;
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
    const struct bh_schema *dead_letter_schema;
    struct bh_adapter *adapters;
    size_t nadapters;
    size_t running; /* adapters not yet stopped */
    void (*on_all_stopped)(struct bh_hub *hub);
};

/* Wall-clock time in milliseconds since the epoch. */
int64_t bh_now_ms(void);

#endif
