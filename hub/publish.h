/*
 * What every adapter does between a validated record and Kafka, in one place:
 *
 *   - bh_publish: the record keyed by its block, with the two headers every
 *     consumer may rely on (blockhub.event_id: the sender's id, for dedup
 *     without decoding; blockhub.adapter: the component's name), counted;
 *   - bh_publish_dead: a dead letter (hub/dlq.h) in the component's name, counted;
 *   - bh_published: a delivery report of either, counted (call it first thing
 *     in the adapter's delivery callback);
 *   - struct bh_flow: the back-pressure of an adapter that reads (a socket, a
 *     file): the units it holds (lines, rows) and their bytes, reading stopped
 *     at the limit and started again once half is acknowledged, and the
 *     operator's pause (bh_component_pause) on top, which holds reading
 *     whatever the count.
 *
 * What a failed delivery does next stays the adapter's: the fire adapter
 * answers 503 (the sender retries), traffic produces the line again, the
 * market adapter rewinds its file to the checkpoint.
 */
#ifndef BH_PUBLISH_H
#define BH_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dlq.h"
#include "hub.h"

/*
 * Produce one record of component C to TOPIC keyed by BLOCK, with its event id
 * in a header. D->cb hears the delivery when this returns 0. Errors as
 * bh_kafka_produce's (-EMSGSIZE: never fits, dead-letter it as too_large).
 */
int bh_publish(struct bh_component *c, const char *topic, const char *block, size_t block_len,
               const void *data, size_t len, const char *event_id, size_t event_id_len,
               struct bh_delivery *d);

/* A dead letter from component C (see bh_dlq_publish; D may be NULL). */
int bh_publish_dead(struct bh_component *c, enum bh_dlq_reason reason, const char *detail,
                    const struct bh_dlq_origin *origin, const void *payload, size_t len,
                    struct bh_delivery *d);

/* A delivery D of C's record or dead letter came back with ERR: counted, and its
 * latency put in the histogram. */
void bh_published(struct bh_component *c, const struct bh_delivery *d, rd_kafka_resp_err_t err);

/* --- back-pressure ---------------------------------------------------------- */

struct bh_flow {
    size_t max;         /* units held at most */
    uint64_t max_bytes; /* their bytes at most (UINT64_MAX: no limit) */
    size_t held;
    uint64_t held_bytes;
    bool full;           /* reading stopped at the limit, until half is acknowledged */
    bool operator_pause; /* reading stopped by bh_component_pause */
    uint64_t pauses;     /* times the limit stopped reading */
};

static inline void
bh_flow_init(struct bh_flow *f, size_t max, uint64_t max_bytes)
{
    *f = (struct bh_flow){.max = max, .max_bytes = max_bytes};
}

/* One more unit of LEN bytes held (read, not yet acknowledged). */
static inline void
bh_flow_hold(struct bh_flow *f, uint64_t len)
{
    f->held++;
    f->held_bytes += len;
}

/* A unit of LEN bytes is done with (acknowledged, dead-lettered, or nothing to publish). */
static inline void
bh_flow_release(struct bh_flow *f, uint64_t len)
{
    f->held--;
    f->held_bytes -= len;
}

static inline bool
bh_flow_at_limit(const struct bh_flow *f)
{
    return f->held >= f->max || f->held_bytes >= f->max_bytes;
}

/* True once when the limit is reached: stop reading now (until bh_flow_room). */
static inline bool
bh_flow_stop(struct bh_flow *f)
{
    if (f->full || !bh_flow_at_limit(f))
        return false;
    f->full = true;
    f->pauses++;
    return true;
}

/* True once when reading stopped at the limit and half is acknowledged: it may go on. */
static inline bool
bh_flow_room(struct bh_flow *f)
{
    if (!f->full || f->held > f->max / 2 || f->held_bytes > f->max_bytes / 2)
        return false;
    f->full = false;
    return true;
}

/* Reading is allowed: not at the limit and not paused by an operator. */
static inline bool
bh_flow_reading(const struct bh_flow *f)
{
    return !f->full && !f->operator_pause;
}

/* The common counters of a flow, for a component's stats hook. */
void bh_flow_stats(const struct bh_flow *f, struct bh_stats *out);

#endif
