/*
 * One traffic gateway line (docs/feeds.md, section 4) mapped to an event without
 * building a tree: a flat object (what gateways send) is read in one pass of
 * our own, anything else by yajl's callback parser, which then has the last
 * word. Strings point into the line (or, when the sender escaped them, into
 * the parser's own scratch space); numbers are converted only once the line
 * has turned out to be a valid object.
 *
 * The rules, in the order they are checked (the first that fails is the
 * reason given):
 *   1. the line is strict UTF-8 (RFC 3629)            else invalid_encoding
 *   2. it is one JSON object (RFC 8259), nothing else
 *      on the line, and no object in it (at any depth)
 *      has a key twice                                 else invalid_json
 *   3. "type": "heartbeat" makes it a keep-alive: no record, no dead letter
 *   4. the fields, in the contract's order: event_id, device, type, lon, lat,
 *      severity, ts, plate, road. A required field that is absent or null (or
 *      an empty string) is missing_field; a wrong type or a value outside
 *      its rules is invalid_field. Integers are JSON numbers with an
 *      integral value (4, 4.0 and 4e0 are all 4);
 *      severity is 1-5; ts is epoch milliseconds from 0 to 253402300799999
 *      (9999-12-31T23:59:59.999Z); lon/lat are finite with |lon| <= 180 and
 *      |lat| <= 90; plate and road are optional strings (null = absent).
 *      Escaped strings must decode to Unicode scalar values (no lone
 *      surrogates). Unknown keys are ignored whatever their value, with
 *      one exception:
 *   5. no string of the line holds U+0000 (\u0000): a known field that
 *      does is invalid_field at its turn in rule 4; a key, or a string of an
 *      unknown field at any depth, is invalid_field once rule 4 has passed.
 *   Every WHY is valid UTF-8: the sender's text in it is cut between
 *   characters (at most 64 bytes of it).
 */
#ifndef BH_TRAFFIC_EVENT_H
#define BH_TRAFFIC_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dlq.h"
#include "utf8.h"

/* The event types, in the order of the Avro enum's symbols. */
enum bh_traffic_type {
    BH_TRAFFIC_ACCIDENT,
    BH_TRAFFIC_CONGESTION,
    BH_TRAFFIC_EBIKE_VIOLATION,
    BH_TRAFFIC_MOTORCYCLE_VIOLATION,
    BH_TRAFFIC_ILLEGAL_PARKING,
    BH_TRAFFIC_SIGNAL_FAULT,
    BH_TRAFFIC_RED_LIGHT,
    BH_TRAFFIC_TYPE_COUNT
};

extern const char *const bh_traffic_type_names[BH_TRAFFIC_TYPE_COUNT];

struct bh_traffic_str {
    const char *s; /* NULL when an optional field is absent; not NUL-terminated */
    size_t len;
};

struct bh_traffic_event {
    struct bh_traffic_str event_id, device, plate, road;
    enum bh_traffic_type type;
    double lon, lat;
    int32_t severity;
    int64_t ts; /* epoch milliseconds, UTC */
};

enum bh_traffic_kind {
    BH_TRAFFIC_RECORD,    /* a valid event */
    BH_TRAFFIC_HEARTBEAT, /* a keep-alive: neither a record nor a dead letter */
    BH_TRAFFIC_REJECT,    /* to be dead-lettered */
};

struct bh_traffic_parser;

/* One per thread; it is reused for every line. 0 or -ENOMEM. */
int bh_traffic_parser_new(struct bh_traffic_parser **out);
void bh_traffic_parser_free(struct bh_traffic_parser *p);

/*
 * Map LINE (LEN bytes, without its line terminator). RECORD: *EV is filled;
 * its strings stay valid until the next call on P and as long as LINE does.
 * REJECT: *REASON and WHY (a NUL-terminated explanation) say why.
 */
enum bh_traffic_kind bh_traffic_parse(struct bh_traffic_parser *p, const char *line, size_t len,
                                      struct bh_traffic_event *ev, enum bh_dlq_reason *reason,
                                      char *why, size_t why_size);

#endif
