/*
 * The dead-letter topic. Every input an adapter cannot publish goes there as a
 * DeadLetter record (schemas/dead_letter.avsc) with a reason code from the
 * closed list below, where it came from, and its original bytes (cut at
 * dead_letter.max_payload). The rest of the input flows on.
 */
#ifndef BH_DLQ_H
#define BH_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include "hub.h"

/* The closed list of reason codes: X(enum suffix, code, description). */
#define BH_DLQ_REASONS(X)                                                                          \
    X(INVALID_JSON, "invalid_json",                                                                \
      "the item is not valid JSON, not a JSON object, or has a key twice in one object")           \
    X(MISSING_FIELD, "missing_field", "a required field is absent or null")                        \
    X(INVALID_FIELD, "invalid_field", "a field has the wrong type or a value outside its rules")   \
    X(UNRESOLVED_BLOCK, "unresolved_block",                                                        \
      "neither the grid code nor the coordinates resolve to a block of the map")                   \
    X(TOO_LARGE, "too_large", "the record is larger than the configured maximum")                  \
    X(INVALID_ENCODING, "invalid_encoding", "bytes that do not decode in the expected encoding")   \
    X(INVALID_HEADER, "invalid_header", "a file header that cannot be understood")                 \
    X(INVALID_CSV, "invalid_csv", "a CSV row that does not follow RFC 4180")                       \
    X(ENCODE_FAILED, "encode_failed", "the record could not be encoded in its Avro schema")        \
    X(TOO_LATE, "too_late",                                                                        \
      "older than join.dedup_retention before the newest event of its department and partition")   \
    X(DELIVERY_FAILED, "delivery_failed",                                                          \
      "(alerts) a subscriber did not take an alert: a final refusal, or every attempt failed")

enum bh_dlq_reason {
#define BH_DLQ_ENUM(e, code, desc) BH_DLQ_##e,
    BH_DLQ_REASONS(BH_DLQ_ENUM)
#undef BH_DLQ_ENUM
        BH_DLQ_REASON_COUNT
};

const char *bh_dlq_reason_code(enum bh_dlq_reason r);
const char *bh_dlq_reason_doc(enum bh_dlq_reason r);

struct bh_dlq_origin {
    const char *transport; /* "http", "tcp", "file" */
    const char *source;    /* request path, listen address, file name */
    const char *peer;      /* NULL if none */
    int64_t position;      /* item index or line number; -1 if none */
};

/*
 * Publish one dead letter of A, through A's producer (its own, else the hub's:
 * bh_component_kafka). D (may be NULL) hears the delivery result; with
 * NULL, a failed delivery is logged. Returns 0 or a negative errno.
 */
int bh_dlq_publish(struct bh_hub *hub, const struct bh_component *a, enum bh_dlq_reason reason,
                   const char *detail, const struct bh_dlq_origin *origin, const void *payload,
                   size_t len, struct bh_delivery *d);

#endif
