/*
 * The ticks adapter: a fourth department that exists only in the test tree.
 *
 * It shows that an adapter is a folder and nothing else: this file, its
 * schema (ticks.avsc, which the test puts beside the others) and a config
 * block. tests/CMakeLists.txt links every folder under tests/adapters/ into
 * blockhub_test_adapters with the same registry generator that serves
 * adapters/; no file outside this folder names it.
 *
 * On start it publishes COUNT records of blockhub.test.Tick to TOPIC, keyed
 * by BLOCK (a block id of the map), one every INTERVAL ms, through
 * bh_publish: the same headers, counting and delivery as the real adapters.
 * It pauses and resumes, reports its counters, and takes a new count and
 * interval by reload.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "log.h"
#include "publish.h"
#include "record.h"

#define SCHEMA "blockhub.test.Tick"

struct ticks_conf {
    char *topic;
    char *block;
    int64_t count;
    int64_t interval;
};

struct ticks {
    struct bh_component *c;
    const struct ticks_conf *conf;
    const struct bh_schema *schema;
    const struct bh_block *block;
    uv_timer_t timer;
    avro_value_t rec;
    int64_t next; /* the seq of the next record */
    int64_t count;
    int64_t interval;
    size_t waiting; /* deliveries outstanding */
    bool stopping;
    bool timer_closed;
};

struct tick_delivery {
    struct bh_delivery d;
    struct ticks *t;
};

static void
maybe_stopped(struct ticks *t)
{
    if (t->stopping && t->waiting == 0 && t->timer_closed)
        bh_component_stopped(t->c);
}

static void
on_delivered(struct bh_delivery *d, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct tick_delivery *td = (struct tick_delivery *)d;
    struct ticks *t = td->t;
    (void)partition;
    (void)offset;
    bh_published(t->c, d, err);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        bh_warn(t->c->name, "delivery failed: %s", rd_kafka_err2str(err));
    free(td);
    if (--t->waiting == 0 && t->next == t->count)
        bh_info(t->c->name, "published %lld tick(s)", (long long)t->count);
    maybe_stopped(t);
}

static void
on_tick(uv_timer_t *timer)
{
    struct ticks *t = timer->data;
    if (t->next >= t->count) {
        uv_timer_stop(timer);
        return;
    }
    struct tick_delivery *td = calloc(1, sizeof(*td));
    const void *data;
    size_t len;
    char id[32];
    int n = snprintf(id, sizeof(id), "tick-%lld", (long long)t->next);
    int rc = td == NULL ? -ENOMEM : 0;
    rc = rc ?: bh_rec_long(&t->rec, "seq", t->next);
    rc = rc ?: bh_rec_cstring(&t->rec, "block_id", t->block->id);
    rc = rc ?: bh_rec_cstring(&t->rec, "adapter", t->c->name);
    rc = rc ?: bh_encode(t->c->hub->encoder, t->schema, &t->rec, &data, &len);
    if (rc == 0) {
        td->d.cb = on_delivered;
        td->t = t;
        rc = bh_publish(t->c, t->conf->topic, t->block->id, strlen(t->block->id), data, len, id,
                        (size_t)n, &td->d);
    }
    if (rc < 0) {
        free(td);
        return; /* the timer comes back */
    }
    t->waiting++;
    t->next++;
}

static void
on_timer_closed(uv_handle_t *h)
{
    struct ticks *t = h->data;
    t->timer_closed = true;
    maybe_stopped(t);
}

static int
start(struct bh_component *c, char *errstr, size_t errstr_size)
{
    const struct ticks_conf *conf = c->settings;
    struct ticks *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->c = c;
    t->conf = conf;
    t->count = conf->count;
    t->interval = conf->interval;
    t->schema = bh_schemas_find(c->hub->schemas, SCHEMA);
    t->block = bh_blockmap_find(c->hub->blocks, conf->block, strlen(conf->block));
    if (t->block == NULL) {
        snprintf(errstr, errstr_size, "block: '%s' is not a block of the map", conf->block);
        free(t);
        return -EINVAL;
    }
    if (avro_generic_value_new(t->schema->iface, &t->rec) != 0) {
        snprintf(errstr, errstr_size, "avro: %s", avro_strerror());
        free(t);
        return -ENOMEM;
    }
    uv_timer_init(c->hub->loop, &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, on_tick, 0, (uint64_t)t->interval);
    c->priv = t;
    bh_info(c->name, "%lld tick(s) to %s, keyed by %s", (long long)t->count, conf->topic,
            t->block->id);
    return 0;
}

static void
stop(struct bh_component *c)
{
    struct ticks *t = c->priv;
    t->stopping = true;
    uv_close((uv_handle_t *)&t->timer, on_timer_closed);
}

static void
destroy(struct bh_component *c)
{
    struct ticks *t = c->priv;
    if (t == NULL)
        return;
    avro_value_decref(&t->rec);
    free(t);
    c->priv = NULL;
}

static int
pause_intake(struct bh_component *c)
{
    struct ticks *t = c->priv;
    uv_timer_stop(&t->timer);
    return 0;
}

static int
resume_intake(struct bh_component *c)
{
    struct ticks *t = c->priv;
    uv_timer_start(&t->timer, on_tick, 0, (uint64_t)t->interval);
    return 0;
}

static void
stats(const struct bh_component *c, struct bh_stats *out)
{
    const struct ticks *t = c->priv;
    bh_stats_add(out, "ticks_left", "records still to publish", true,
                 (uint64_t)(t->count - t->next));
}

/* A new count and interval are taken as they are; a new topic or block is not. */
static int
reload(struct bh_component *c, const void *settings, char *errstr, size_t errstr_size)
{
    struct ticks *t = c->priv;
    const struct ticks_conf *n = settings;
    if (strcmp(n->topic, t->conf->topic) != 0 || strcmp(n->block, t->conf->block) != 0) {
        snprintf(errstr, errstr_size, "a new topic or block needs a new ticks component");
        return -ENOTSUP;
    }
    t->conf = n;
    t->count = n->count > t->next ? n->count : t->next;
    t->interval = n->interval;
    return 0;
}

#define KEY(field) offsetof(struct ticks_conf, field)

static const struct bh_conf_key ticks_keys[] = {
    {.name = "topic",
     .type = BH_CONF_STRING,
     .offset = KEY(topic),
     .def = "test.ticks",
     .check = bh_conf_check_topic,
     .doc = "Topic the ticks are published to."},
    {.name = "block",
     .type = BH_CONF_STRING,
     .offset = KEY(block),
     .flags = BH_CONF_REQUIRED,
     .doc = "The block id every tick is keyed by."},
    {.name = "count",
     .type = BH_CONF_INT,
     .offset = KEY(count),
     .def = "10",
     .min = 0,
     .max = 1000000,
     .doc = "How many ticks to publish."},
    {.name = "interval",
     .type = BH_CONF_DURATION,
     .offset = KEY(interval),
     .def = "1ms",
     .min = 1,
     .max = 60000,
     .doc = "Time between two ticks."},
    {0},
};

const struct bh_component_type bh_adapter_type_ticks = {
    .name = "ticks",
    .doc = "Test only: COUNT records keyed by one block.",
    .schema = SCHEMA,
    .conf = {.keys = ticks_keys, .size = sizeof(struct ticks_conf)},
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .pause = pause_intake,
    .resume = resume_intake,
    .stats = stats,
    .reload = reload,
};
