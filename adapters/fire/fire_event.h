/*
 * The fire webhook's body, item by item (docs/feeds.md, section 3): parsing a request
 * body into items with each item's own bytes, validating an item into an
 * event, and writing a blockhub.fire.FireEvent record. No I/O: the adapter
 * (fire.c) and the fuzz target share it.
 *
 * A body is read in one pass by a strict scanner that builds no tree: each
 * item's fields are taken as spans of the body (or of a buffer, for strings
 * with escapes). Whatever the scanner does not take on itself (any error in
 * the body, a duplicate key, a \u0000, a number jansson would refuse, a key
 * with an escape, unusual nesting or sizes) sends the whole body to jansson
 * instead, whose answers (the statuses, the reasons, the items refused) are
 * the reference: both ways give the same items, fields and reasons.
 *
 * Everything written into WHY is valid UTF-8, whatever the sender's bytes.
 */
#ifndef BH_FIRE_EVENT_H
#define BH_FIRE_EVENT_H

#include <avro.h>
#include <jansson.h>
#include <locale.h>
#include <stddef.h>
#include <stdint.h>

#include "dlq.h"

/* The string fields of an event, in the order they are checked. */
enum bh_fire_str {
    BH_FIRE_ID,
    BH_FIRE_CATEGORY,
    BH_FIRE_UNIT,
    BH_FIRE_BUILDING_ID,
    BH_FIRE_GRID_CODE,
    BH_FIRE_LEVEL,
    BH_FIRE_DESCRIPTION,
    BH_FIRE_OCCURRED_AT,
    BH_FIRE_NSTR
};

/* What a member of an item is: absent (or null), of the type wanted, or of another type. */
enum bh_fire_kind { BH_FIRE_ABSENT, BH_FIRE_PRESENT, BH_FIRE_OTHER };

/* An item as read, before its validation. */
struct bh_fire_fields {
    struct {
        const char *s; /* the string's value (not NUL-terminated), when PRESENT */
        size_t len;
        uint8_t kind;
    } str[BH_FIRE_NSTR];
    uint8_t is_object; /* the item is a JSON object; nothing else is set otherwise */
    uint8_t location;  /* PRESENT: an object */
    uint8_t lng, lat;  /* PRESENT: a number, in LNG_VALUE / LAT_VALUE */
    double lng_value, lat_value;
};

/* The strings point where the fields do (not NUL-terminated), but for the two symbols. */
struct bh_fire_event {
    const char *id, *category, *unit, *building_id, *grid_code, *level, *description;
    size_t id_len, unit_len, building_id_len, grid_code_len, description_len;
    int category_index, level_index; /* in the schema's symbols */
    int has_location;
    double lng, lat;
    int64_t occurred_at;
    int offset_min;
};

/* One item of a body: its fields (unless the item itself is refused) and its bytes. */
struct bh_fire_item {
    struct bh_fire_fields f;
    const char *raw;
    size_t raw_len;
    enum bh_dlq_reason refused; /* BH_DLQ_REASON_COUNT unless refused as a whole */
    char why[160];              /* why it was refused */
};

/*
 * A parsed body. Zero it (or bh_fire_body_free it) before its first parse;
 * it can be parsed into again and again, keeping its buffers.
 */
struct bh_fire_body {
    struct bh_fire_item *items;
    size_t n, cap;
    json_t *root; /* jansson's tree, when the body went to jansson: owns the strings */
    char *arena;  /* the strings with escapes, decoded */
    size_t arena_cap;
    locale_t c_locale; /* for strtod_l; 0 until needed */
    int by_jansson;    /* how the last body was read (for tests) */
};

/*
 * Parse BODY[0..LEN): an event object or an array of up to MAX_ITEMS of them.
 * Returns 0 with OUT filled (its strings point into BODY and into OUT), or
 * the HTTP status to answer with the reason in WHY: 400 (not JSON, not an
 * object or array) or 413 (too many items), 503 out of memory. An array item
 * that is not an event is still an item (validated and refused one by one);
 * an item with a duplicate key or a \u0000 in a string is an item refused as
 * invalid_json / invalid_field while the rest of the body flows on.
 */
int bh_fire_body_parse(const char *body, size_t len, size_t max_items, struct bh_fire_body *out,
                       char *why, size_t why_size);
/* The same, always by jansson: the reference the scanner is checked against. */
int bh_fire_body_parse_jansson(const char *body, size_t len, size_t max_items,
                               struct bh_fire_body *out, char *why, size_t why_size);
/* Drops what the last parse holds, keeping the buffers. */
void bh_fire_body_clear(struct bh_fire_body *b);
void bh_fire_body_free(struct bh_fire_body *b);

/* BH_DLQ_REASON_COUNT when F is a valid event (EV points where F does), else the reason and WHY. */
enum bh_dlq_reason bh_fire_validate(const struct bh_fire_fields *f, struct bh_fire_event *ev,
                                    char *why, size_t n);

/* Fill REC (a blockhub.fire.FireEvent, reset first) from EV resolved to BLOCK_ID. */
int bh_fire_fill(avro_value_t *rec, const struct bh_fire_event *ev, const char *block_id,
                 int64_t now);

/*
 * The same record's Avro body written directly (no framing): at most
 * bh_fire_avro_bound bytes at OUT; returns its length. SUBJECT (NULL: none)
 * goes into tls_subject.
 */
size_t bh_fire_avro_bound(const struct bh_fire_event *ev, const char *block_id,
                          const char *subject);
size_t bh_fire_avro_write(uint8_t *out, const struct bh_fire_event *ev, const char *block_id,
                          int64_t now, const char *subject);

/*
 * The answer's entry for a rejected item, as jansson's compact dump writes
 * {"index": INDEX, "code": CODE, "reason": REASON} (without the reason when
 * it is not valid UTF-8): at most bh_fire_reject_bound bytes at OUT; returns
 * its length.
 */
size_t bh_fire_reject_bound(const char *code, const char *reason);
size_t bh_fire_reject_json(char *out, size_t index, const char *code, const char *reason);

#endif
