/*
 * The fire webhook's body, item by item (docs/feeds.md, section 3): parsing a request
 * body into items with each item's own bytes, validating an item into an
 * event, and filling a blockhub.fire.FireEvent record. No I/O: the adapter
 * (fire.c) and the fuzz target share it.
 *
 * Everything written into WHY is valid UTF-8, whatever the sender's bytes.
 */
#ifndef BH_FIRE_EVENT_H
#define BH_FIRE_EVENT_H

#include <avro.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "dlq.h"

struct bh_fire_event {
    const char *id, *category, *unit, *building_id, *grid_code, *level, *description;
    size_t id_len, unit_len, building_id_len, grid_code_len, description_len;
    int has_location;
    double lng, lat;
    int64_t occurred_at;
    int offset_min;
};

/* One item of a body: its parsed value (NULL when the item itself is refused) and its bytes. */
struct bh_fire_item {
    json_t *value;
    const char *raw;
    size_t raw_len;
    enum bh_dlq_reason refused; /* BH_DLQ_REASON_COUNT unless value is NULL */
    char why[160];              /* why it was refused */
};

struct bh_fire_body {
    struct bh_fire_item *items;
    size_t n;
    json_t *root; /* owns the values */
};

/*
 * Parse BODY[0..LEN): an event object or an array of up to MAX_ITEMS of them.
 * Returns 0 with OUT filled (free it with bh_fire_body_free), or the HTTP
 * status to answer with the reason in WHY: 400 (not JSON, not an object or
 * array) or 413 (too many items). An array item that is not an event is still
 * an item (validated and refused one by one); an item with a duplicate key or
 * a \u0000 in a string is an item refused as invalid_json / invalid_field
 * while the rest of the body flows on.
 */
int bh_fire_body_parse(const char *body, size_t len, size_t max_items, struct bh_fire_body *out,
                       char *why, size_t why_size);
void bh_fire_body_free(struct bh_fire_body *b);

/* BH_DLQ_REASON_COUNT when O is a valid event (EV points into O), else the reason and WHY. */
enum bh_dlq_reason bh_fire_validate(json_t *o, struct bh_fire_event *ev, char *why, size_t n);

/* Fill REC (a blockhub.fire.FireEvent, reset first) from EV resolved to BLOCK_ID. */
int bh_fire_fill(avro_value_t *rec, const struct bh_fire_event *ev, const char *block_id,
                 int64_t now);

#endif
