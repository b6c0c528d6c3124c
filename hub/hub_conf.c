/* The hub's configuration table: every top-level key, described once. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "admin.h"
#include "component.h"
#include "hub.h"
#include "join.h"

#define KEY(section, field) offsetof(struct section, field)

#include "log.h"

static int
check_level(const void *value, char *why, size_t why_size)
{
    enum bh_log_level level;
    const char *text = *(char *const *)value;
    if (text == NULL || bh_log_level_parse(text, &level) < 0) {
        snprintf(why, why_size, "'%s' is not error, warn, info or debug", text ? text : "");
        return -EINVAL;
    }
    return 0;
}

static int
check_properties(const void *value, char *why, size_t why_size)
{
    return bh_kafka_check_properties(value, why, why_size);
}

static int
check_not_empty(const void *value, char *why, size_t why_size)
{
    const char *text = *(char *const *)value;
    if (text == NULL || text[0] == '\0') {
        snprintf(why, why_size, "must not be empty");
        return -EINVAL;
    }
    return 0;
}

static int
check_format(const void *value, char *why, size_t why_size)
{
    const char *text = *(char *const *)value;
    if (text == NULL || (strcmp(text, "text") != 0 && strcmp(text, "json") != 0)) {
        snprintf(why, why_size, "'%s' is not text or json", text ? text : "");
        return -EINVAL;
    }
    return 0;
}

static const struct bh_conf_key log_keys[] = {
    {.name = "level",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_log_conf, level),
     .def = "info",
     .check = check_level,
     .doc = "Log level: error, warn, info or debug (PUT /admin/log-level changes it at run "
            "time)."},
    {.name = "format",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_log_conf, format),
     .def = "text",
     .check = check_format,
     .doc = "text: one line of text an event; json: one JSON object a line, with ts, level, "
            "component and msg."},
    {0},
};

static const struct bh_conf_key kafka_keys[] = {
    {.name = "brokers",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_kafka_section, brokers),
     .def = "embedded",
     .check = check_not_empty,
     .doc = "Bootstrap servers (host:port,...), or 'embedded' for an in-process mock cluster "
            "that keeps nothing (for trying blockhub out)."},
    {.name = "properties",
     .type = BH_CONF_MAP,
     .offset = KEY(bh_kafka_section, properties),
     .check = check_properties,
     .doc = "Any librdkafka property, passed through (security.protocol, sasl.*, linger.ms...). "
            "enable.idempotence=true, acks=all and partitioner=murmur2_random are pinned."},
    {.name = "partitions",
     .type = BH_CONF_INT,
     .offset = KEY(bh_kafka_section, partitions),
     .def = "6",
     .min = 1,
     .max = 10000,
     .doc = "Partition count of the topics blockhub creates. Every topic keyed by block must "
            "have the same count (co-partitioning)."},
    {.name = "replication",
     .type = BH_CONF_INT,
     .offset = KEY(bh_kafka_section, replication),
     .def = "-1",
     .min = -1,
     .max = 32,
     .doc = "Replication factor of the topics blockhub creates; -1 takes the broker's default."},
    {.name = "create_timeout",
     .type = BH_CONF_DURATION,
     .offset = KEY(bh_kafka_section, create_timeout),
     .def = "15s",
     .min = 100,
     .max = 600000,
     .doc = "How long start-up waits for missing topics to be created."},
    {.name = "flush_timeout",
     .type = BH_CONF_DURATION,
     .offset = KEY(bh_kafka_section, flush_timeout),
     .def = "30s",
     .min = 0,
     .max = 3600000,
     .doc = "How long a clean shutdown waits for Kafka to acknowledge what is in flight."},
    {0},
};

static const struct bh_conf_key blocks_keys[] = {
    {.name = "map",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_blocks_conf, map),
     .flags = BH_CONF_REQUIRED,
     .doc = "GeoJSON FeatureCollection of the blocks (properties.block_id, properties.name; "
            "Polygon or MultiPolygon)."},
    {0},
};

static const struct bh_conf_key schemas_keys[] = {
    {.name = "dir",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_schemas_conf, dir),
     .def = "schemas",
     .doc = "Directory of the .avsc files, loaded once at start."},
    {0},
};

static const struct bh_conf_key dead_letter_keys[] = {
    {.name = "topic",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_dead_letter_conf, topic),
     .def = "hub.dlq",
     .check = bh_conf_check_topic,
     .doc = "The dead-letter topic."},
    {.name = "max_payload",
     .type = BH_CONF_SIZE,
     .offset = KEY(bh_dead_letter_conf, max_payload),
     .def = "64KiB",
     .min = 0,
     .max = 16 * 1024 * 1024,
     .doc = "Original bytes kept in a dead letter; longer input is cut (payload_truncated)."},
    {0},
};

const struct bh_conf_key bh_hub_conf_keys[] = {
    {.name = "log",
     .type = BH_CONF_SECTION,
     .offset = KEY(bh_hub_conf, log),
     .sub = log_keys,
     .doc = "Logging."},
    {.name = "kafka",
     .type = BH_CONF_SECTION,
     .offset = KEY(bh_hub_conf, kafka),
     .sub = kafka_keys,
     .doc = "The Kafka client."},
    {.name = "blocks",
     .type = BH_CONF_SECTION,
     .offset = KEY(bh_hub_conf, blocks),
     .sub = blocks_keys,
     .doc = "The block map."},
    {.name = "schemas",
     .type = BH_CONF_SECTION,
     .offset = KEY(bh_hub_conf, schemas),
     .sub = schemas_keys,
     .doc = "Avro schemas."},
    {.name = "dead_letter",
     .type = BH_CONF_SECTION,
     .offset = KEY(bh_hub_conf, dead_letter),
     .sub = dead_letter_keys,
     .doc = "The dead-letter topic."},
    {.name = "adapters",
     .type = BH_CONF_VARIANTS,
     .offset = KEY(bh_hub_conf, adapters),
     .variant = bh_adapter_variant,
     .variant_doc = bh_adapter_type_names,
     .doc = "The adapters: each has a unique name, a type, and its type's own settings."},
    {.name = "join",
     .type = BH_CONF_SECTION,
     .offset = KEY(bh_hub_conf, join),
     .sub = bh_join_conf_keys,
     .doc = "The join stage: department topics in, block.view out (join/join.h)."},
    {.name = "admin",
     .type = BH_CONF_SECTION,
     .offset = KEY(bh_hub_conf, admin),
     .sub = bh_admin_conf_keys,
     .doc = "The admin HTTP API."},
    {.name = "schema_registry",
     .type = BH_CONF_SECTION,
     .offset = KEY(bh_hub_conf, schema_registry),
     .sub = bh_registry_conf_keys,
     .doc = "A Confluent-compatible schema registry (hub/registry.h): records carry its "
            "schema ids."},
    {0},
};
