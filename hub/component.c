/* The component interface's defaults and the hub's bookkeeping of its parts. */
#include "component.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hub.h"
#include "log.h"

const double bh_ack_bounds_ms[BH_ACK_BUCKETS - 1] = {1,   2.5, 5,   10,   25,   50,
                                                     100, 250, 500, 1000, 2500, 10000};

void
bh_stats_add(struct bh_stats *s, const char *name, const char *help, bool gauge, uint64_t value)
{
    if (s->n < BH_STATS_MAX)
        s->v[s->n++] = (struct bh_stat){.name = name, .help = help, .value = value, .gauge = gauge};
}

void
bh_stats_add_labelled(struct bh_stats *s, const char *name, const char *help, bool gauge,
                      uint64_t value, const char *label, const char *label_value)
{
    if (s->n >= BH_STATS_MAX)
        return;
    struct bh_stat *st = &s->v[s->n++];
    *st = (struct bh_stat){
        .name = name, .help = help, .value = value, .gauge = gauge, .label = label};
    snprintf(st->label_value, sizeof(st->label_value), "%s", label_value);
}

uint64_t
bh_stats_get(const struct bh_stats *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0)
            return s->v[i].value;
    return UINT64_MAX;
}

int
bh_component_check_kafka_properties(const void *value, char *why, size_t why_size)
{
    const struct bh_kvlist *l = value;
    for (size_t i = 0; i < l->n; i++) {
        const char *name = l->k[i];
        if (strcmp(name, "bootstrap.servers") == 0 || strcmp(name, "metadata.broker.list") == 0) {
            snprintf(why, why_size,
                     "%s: an adapter's producer joins the hub's cluster (kafka.brokers)", name);
            return -EINVAL;
        }
        if (strcmp(name, "transactional.id") == 0) {
            snprintf(why, why_size, "%s: an adapter's producer is not transactional", name);
            return -EINVAL;
        }
        if (bh_kafka_property_scope(name) == BH_KAFKA_SCOPE_CONSUMER) {
            snprintf(why, why_size, "%s: a consumer's property, not a producer's", name);
            return -EINVAL;
        }
    }
    return bh_kafka_check_properties(l, why, why_size);
}

const struct bh_kvlist *
bh_component_kafka_properties(const struct bh_component *c)
{
    static const struct bh_kvlist none;
    const struct bh_kvlist *l =
        c->settings != NULL && c->type->conf.keys != NULL
            ? bh_conf_map(c->type->conf.keys, c->settings, BH_KAFKA_PROPERTIES_NAME)
            : NULL;
    return l != NULL ? l : &none;
}

struct bh_kafka *
bh_component_kafka(const struct bh_component *c)
{
    return c->kafka != NULL ? c->kafka : c->hub->kafka;
}

/* C's own producer: the hub's kafka section with C's properties over kafka.properties, on the
 * hub's cluster (the embedded one's bootstrap when embedded). */
static int
open_kafka(struct bh_component *c, const struct bh_kvlist *own, char *errstr, size_t n)
{
    const struct bh_kafka_section *ks = &c->hub->conf->kafka;
    size_t total = ks->properties.n + own->n;
    char **k = calloc(total, sizeof(*k)), **v = calloc(total, sizeof(*v));
    int rc = k != NULL && v != NULL ? 0 : -ENOMEM;
    if (rc == 0) {
        /* In order: librdkafka keeps the last value set, so the adapter's win. */
        for (size_t i = 0; i < ks->properties.n; i++) {
            k[i] = ks->properties.k[i];
            v[i] = ks->properties.v[i];
        }
        for (size_t i = 0; i < own->n; i++) {
            k[ks->properties.n + i] = own->k[i];
            v[ks->properties.n + i] = own->v[i];
        }
        struct bh_kvlist props = {.k = k, .v = v, .n = total};
        struct bh_kafka_conf kc = {
            .brokers = bh_kafka_is_embedded(c->hub->kafka) ? bh_kafka_bootstrap(c->hub->kafka)
                                                           : ks->brokers,
            .properties = &props,
            .partitions = (int)ks->partitions,
            .replication = (int)ks->replication,
            .create_timeout_ms = (int)ks->create_timeout,
        };
        char err[400];
        rc = bh_kafka_new(&c->kafka, c->hub->loop, &kc, err, sizeof(err));
        if (rc < 0)
            snprintf(errstr, n, "%s: its producer: %s", BH_KAFKA_PROPERTIES_NAME, err);
    }
    free(k);
    free(v);
    if (rc == 0) {
        char shown[300] = "";
        for (size_t i = 0; i < own->n; i++) {
            size_t len = strlen(shown);
            snprintf(shown + len, sizeof(shown) - len, "%s%s=%s", i ? ", " : "", own->k[i],
                     own->v[i]);
        }
        bh_info(c->name, "a producer of its own (%s) at %s", shown, bh_kafka_bootstrap(c->kafka));
    }
    return rc;
}

size_t
bh_component_close_kafka(struct bh_component *c, int timeout_ms)
{
    if (c->kafka == NULL)
        return 0;
    size_t left = bh_kafka_close(c->kafka, timeout_ms);
    c->kafka = NULL;
    if (left > 0)
        bh_error(c->name, "%zu message(s) not delivered by its producer", left);
    return left;
}

int
bh_component_start(struct bh_component *c, char *errstr, size_t errstr_size)
{
    c->stopped = false;
    c->stop_called = false;
    c->failed = false;
    c->paused = false;
    const struct bh_kvlist *own = bh_component_kafka_properties(c);
    if (own->n > 0 && c->kafka == NULL) {
        int rc = open_kafka(c, own, errstr, errstr_size);
        if (rc < 0)
            return rc;
    }
    int rc = c->type->start(c, errstr, errstr_size);
    if (rc == 0)
        c->hub->running++;
    else
        bh_component_close_kafka(c, 0);
    return rc;
}

void
bh_component_stop(struct bh_component *c)
{
    if (!c->stopped && !c->stop_called) {
        c->stop_called = true;
        c->type->stop(c);
    }
}

void
bh_component_destroy(struct bh_component *c)
{
    /* First: its delivery reports may still reach the component's state. */
    bh_component_close_kafka(c, (int)c->hub->conf->kafka.flush_timeout);
    c->type->destroy(c);
}

int
bh_component_pause(struct bh_component *c)
{
    if (c->type->pause == NULL)
        return -ENOTSUP;
    if (c->paused)
        return 0;
    int rc = c->type->pause(c);
    if (rc == 0)
        c->paused = true;
    return rc;
}

int
bh_component_resume(struct bh_component *c)
{
    if (c->type->resume == NULL)
        return -ENOTSUP;
    if (!c->paused)
        return 0;
    int rc = c->type->resume(c);
    if (rc == 0)
        c->paused = false;
    return rc;
}

void
bh_component_stats(const struct bh_component *c, struct bh_stats *out)
{
    out->n = 0;
    bh_stats_add(out, "published", "records handed to Kafka", false, c->published);
    bh_stats_add(out, "acknowledged", "records Kafka acknowledged", false, c->acknowledged);
    bh_stats_add(out, "dead_lettered", "dead letters handed to Kafka", false, c->dead_lettered);
    bh_stats_add(out, "delivery_errors", "deliveries Kafka reported failed", false,
                 c->delivery_errors);
    bh_stats_add(out, "paused", "1 while paused by an operator", true, c->paused);
    if (c->kafka != NULL) {
        bh_stats_add(out, "kafka_own_producer",
                     "1: it publishes through a producer of its own (kafka_properties)", true, 1);
        bh_stats_add(out, "kafka_produced", "messages handed to its own producer", false,
                     bh_kafka_produced(c->kafka));
        bh_stats_add(out, "kafka_in_flight",
                     "messages handed to its own producer and not yet reported", true,
                     bh_kafka_in_flight(c->kafka));
        bh_stats_add(out, "kafka_producer_restarts",
                     "times its own producer was replaced after a fatal error", false,
                     bh_kafka_restarts(c->kafka));
    }
    if (c->type->stats != NULL)
        c->type->stats(c, out);
}

int
bh_component_reload(struct bh_component *c, const void *settings, char *errstr, size_t errstr_size)
{
    if (c->type->reload == NULL) {
        snprintf(errstr, errstr_size, "%s components take a new config by a restart of the part",
                 c->type->name);
        return -ENOTSUP;
    }
    return c->type->reload(c, settings, errstr, errstr_size);
}

size_t
bh_component_topics(const struct bh_component *c, const char **out, size_t cap)
{
    size_t n = 0;
    if (cap == 0)
        return 0;
    out[0] = NULL;
    if (c->type->topics != NULL) {
        c->type->topics(c, out, cap);
        while (n < cap - 1 && out[n] != NULL)
            n++;
        out[n] = NULL;
    } else if (cap > 1) {
        /* The default: the "topic" setting, when the type has one. */
        out[0] = bh_conf_string(c->type->conf.keys, c->settings, "topic");
        n = out[0] != NULL;
        out[n] = NULL;
    }
    return n;
}

void
bh_component_stopped(struct bh_component *c)
{
    if (c->stopped)
        return;
    c->stopped = true;
    struct bh_hub *hub = c->hub;
    hub->running--;
    if (c->retiring && hub->on_retired != NULL && !hub->stopping)
        hub->on_retired(hub, c);
    else if (hub->running == 0 && hub->on_all_stopped != NULL)
        hub->on_all_stopped(hub);
}

void
bh_component_failed(struct bh_component *c)
{
    c->failed = true;
    bh_component_stopped(c);
}
