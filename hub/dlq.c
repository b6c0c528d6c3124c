#include "dlq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "record.h"

static const char *const codes[] = {
#define BH_DLQ_CODE(e, code, desc) code,
    BH_DLQ_REASONS(BH_DLQ_CODE)
#undef BH_DLQ_CODE
};

static const char *const docs[] = {
#define BH_DLQ_DOC(e, code, desc) desc,
    BH_DLQ_REASONS(BH_DLQ_DOC)
#undef BH_DLQ_DOC
};

const char *
bh_dlq_reason_code(enum bh_dlq_reason r)
{
    return r < BH_DLQ_REASON_COUNT ? codes[r] : "unknown";
}

const char *
bh_dlq_reason_doc(enum bh_dlq_reason r)
{
    return r < BH_DLQ_REASON_COUNT ? docs[r] : "";
}

/* A dead letter nobody waits for: a failed delivery is only logged. */
struct orphan {
    struct bh_delivery d;
    char *adapter;
    enum bh_dlq_reason reason;
};

static void
orphan_done(struct bh_delivery *d, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct orphan *o = (struct orphan *)d;
    (void)partition;
    (void)offset;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        bh_error("dlq", "dead letter from %s (%s) not delivered: %s", o->adapter,
                 bh_dlq_reason_code(o->reason), rd_kafka_err2str(err));
    free(o->adapter);
    free(o);
}

static int
fill(avro_value_t *rec, const struct bh_component *a, enum bh_dlq_reason reason, const char *detail,
     const struct bh_dlq_origin *origin, const void *payload, size_t len, size_t max)
{
    avro_value_t o;
    size_t cut = len > max ? max : len;
    int rc = bh_rec_cstring(rec, "adapter", a->name);
    rc = rc ?: bh_rec_cstring(rec, "adapter_type", a->type->name);
    rc = rc ?: bh_rec_cstring(rec, "reason", bh_dlq_reason_code(reason));
    rc = rc ?: bh_rec_cstring(rec, "detail", detail);
    rc = rc ?: bh_rec_sub(rec, "origin", &o);
    rc = rc ?: bh_rec_cstring(&o, "transport", origin->transport);
    rc = rc ?: bh_rec_cstring(&o, "source", origin->source);
    rc = rc ?: bh_rec_opt_string(&o, "peer", origin->peer, origin->peer ? strlen(origin->peer) : 0);
    rc = rc ?: bh_rec_opt_long(&o, "position", origin->position >= 0, origin->position);
    rc = rc ?: bh_rec_bytes(rec, "payload", payload, cut);
    rc = rc ?: bh_rec_bool(rec, "payload_truncated", cut < len);
    rc = rc ?: bh_rec_long(rec, "received_at", bh_now_ms());
    rc = rc ?: bh_rec_null_unset(rec); /* optional fields of a later schema version */
    return rc;
}

int
bh_dlq_publish(struct bh_hub *hub, const struct bh_component *a, enum bh_dlq_reason reason,
               const char *detail, const struct bh_dlq_origin *origin, const void *payload,
               size_t len, struct bh_delivery *d)
{
    const struct bh_schema *s = hub->dead_letter_schema;
    struct orphan *o = NULL;
    avro_value_t rec;
    const void *data;
    size_t dlen;
    int rc;

    if (avro_generic_value_new(s->iface, &rec) != 0)
        return -ENOMEM;
    /* The dead letter itself must fit under message.max.bytes: leave room for the rest of it. */
    size_t max = hub->conf->dead_letter.max_payload;
    size_t fits = bh_kafka_max_message(bh_component_kafka(a));
    size_t other = strlen(a->name) * 2 + (detail ? strlen(detail) : 0) + 1024 +
                   (origin->source ? strlen(origin->source) : 0) +
                   (origin->peer ? strlen(origin->peer) : 0);
    fits = fits > other ? fits - other : 0;
    if (max > fits)
        max = fits;
    rc = fill(&rec, a, reason, detail, origin, payload, len, max);
    if (rc == 0)
        rc = bh_encode(hub->encoder, s, &rec, &data, &dlen);
    if (rc < 0) {
        bh_error("dlq", "cannot encode a dead letter from %s: %s", a->name, avro_strerror());
        goto out;
    }
    if (d == NULL) {
        o = calloc(1, sizeof(*o));
        if (o == NULL || (o->adapter = strdup(a->name)) == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        o->d.cb = orphan_done;
        o->reason = reason;
        d = &o->d;
    }
    rc = bh_kafka_produce(bh_component_kafka(a), hub->conf->dead_letter.topic, a->name,
                          strlen(a->name), data, dlen, NULL, d);
    if (rc == 0)
        o = NULL;
    else
        bh_error("dlq", "dead letter from %s (%s) not queued: %s", a->name,
                 bh_dlq_reason_code(reason), strerror(-rc));
out:
    if (o != NULL) {
        free(o->adapter);
        free(o);
    }
    avro_value_decref(&rec);
    return rc;
}
