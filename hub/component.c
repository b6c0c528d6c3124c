/* The component interface's defaults and the hub's bookkeeping of its parts. */
#include "component.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hub.h"

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
bh_component_start(struct bh_component *c, char *errstr, size_t errstr_size)
{
    c->stopped = false;
    c->stop_called = false;
    c->failed = false;
    c->paused = false;
    int rc = c->type->start(c, errstr, errstr_size);
    if (rc == 0)
        c->hub->running++;
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
