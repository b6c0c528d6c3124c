/* Publishing an adapter's records and dead letters (publish.h). */
#include "publish.h"

#include <string.h>

_Static_assert(BH_DLQ_REASON_COUNT <= 16, "dead_by_reason has room for every reason");

int
bh_publish(struct bh_component *c, const char *topic, const char *block, size_t block_len,
           const void *data, size_t len, const char *event_id, size_t event_id_len,
           struct bh_delivery *d)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "blockhub.event_id", -1, event_id, (ssize_t)event_id_len);
    rd_kafka_header_add(h, "blockhub.adapter", -1, c->name, -1);
    d->t0 = uv_now(c->hub->loop) * 1000000; /* no clock read per record */
    int rc = bh_kafka_produce(bh_component_kafka(c), topic, block, block_len, data, len, h, d);
    if (rc < 0)
        rd_kafka_headers_destroy(h);
    else
        c->published++;
    return rc;
}

int
bh_publish_dead(struct bh_component *c, enum bh_dlq_reason reason, const char *detail,
                const struct bh_dlq_origin *origin, const void *payload, size_t len,
                struct bh_delivery *d)
{
    if (d != NULL)
        d->t0 = uv_now(c->hub->loop) * 1000000;
    int rc = bh_dlq_publish(c->hub, c, reason, detail, origin, payload, len, d);
    if (rc == 0) {
        c->dead_lettered++;
        if ((unsigned)reason < sizeof(c->dead_by_reason) / sizeof(c->dead_by_reason[0]))
            c->dead_by_reason[reason]++;
    }
    return rc;
}

void
bh_published(struct bh_component *c, const struct bh_delivery *d, rd_kafka_resp_err_t err)
{
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        c->delivery_errors++;
        return;
    }
    c->acknowledged++;
    if (d->t0 == 0)
        return;
    uint64_t now = bh_kafka_served_at(bh_component_kafka(c));
    if (now < d->t0) /* a report served outside serve() (a flush at close) */
        now = uv_hrtime();
    uint64_t us = (now - d->t0) / 1000;
    size_t b = 0;
    while (b < BH_ACK_BUCKETS - 1 && (double)us > bh_ack_bounds_ms[b] * 1000.0)
        b++;
    c->ack_buckets[b]++;
    c->ack_sum_us += us;
}

void
bh_flow_stats(const struct bh_flow *f, struct bh_stats *out)
{
    bh_stats_add(out, "in_flight", "units read and not yet acknowledged", true, f->held);
    bh_stats_add(out, "in_flight_bytes", "their bytes", true, f->held_bytes);
    bh_stats_add(out, "back_pressure", "1 while reading waits for acknowledgements", true, f->full);
    bh_stats_add(out, "back_pressure_pauses", "times reading waited for acknowledgements", false,
                 f->pauses);
}
