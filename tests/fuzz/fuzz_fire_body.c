/*
 * The fire webhook's body, as the adapter takes it after the HTTP checks:
 * bh_fire_body_parse, then per item the refusal or bh_fire_validate, the
 * block lookup, bh_fire_fill and the encoding.
 *
 * Oracle (besides no crash, leak or undefined behaviour):
 *   - the body is answered 400 or 413 with a reason that is valid UTF-8, or
 *     it parses into items;
 *   - every item is refused or invalid (a dead-letter reason code and a
 *     reason in valid UTF-8 that the answer's JSON can carry), unresolved,
 *     or a FireEvent record that fills, encodes, decodes with avro-c, holds
 *     only valid UTF-8 strings and carries the item's id;
 *   - an item of an array keeps its own bytes (for its dead letter): they
 *     parse to the same JSON value as the item.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/fire/fire_event.h"
#include "fuzz_common.h"
#include "utf8.h"

#define MAX_ITEMS 100

static const struct bh_schema *schema;
static avro_value_t rec;

static void
free_rec(void)
{
    avro_value_decref(&rec);
}

static void
init(void)
{
    if (schema != NULL)
        return;
    schema = bh_fuzz_schema("blockhub.fire.FireEvent");
    bh_fuzz_blocks();
    bh_fuzz_encoder();
    if (avro_generic_value_new(schema->iface, &rec) != 0)
        bh_fuzz_fail("cannot make a FireEvent value");
    atexit(free_rec); /* before the schemas go */
}

/* What the adapter does with a rejected item's reason: the answer's JSON must hold it. */
static void
check_answer_reason(size_t i, enum bh_dlq_reason r, const char *why)
{
    char what[64];
    snprintf(what, sizeof(what), "item %zu's reason", i);
    bh_fuzz_check_reject(what, r, why);
    json_t *o = json_pack("{s:I, s:s, s:s}", "index", (json_int_t)i, "code", bh_dlq_reason_code(r),
                          "reason", why);
    if (o == NULL)
        bh_fuzz_fail("%s cannot go into the JSON answer", what);
    json_decref(o);
}

/* An array item's bytes hold that item and nothing else. */
static void
check_raw(const uint8_t *data, size_t size, const struct bh_fire_body *b, size_t i)
{
    const struct bh_fire_item *it = &b->items[i];
    const char *body = (const char *)data;
    if (it->raw == NULL || it->raw < body || it->raw_len > size ||
        (size_t)(it->raw - body) > size - it->raw_len)
        bh_fuzz_fail("item %zu: its bytes lie outside the body", i);
    if (it->value == NULL || !json_is_array(b->root))
        return;
    json_error_t e;
    json_t *v = json_loadb(it->raw, it->raw_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (v == NULL)
        bh_fuzz_fail("item %zu: its bytes (%zu at offset %zu) are not JSON: %s", i, it->raw_len,
                     (size_t)(it->raw - body), e.text);
    int same = json_equal(v, it->value);
    json_decref(v);
    if (!same)
        bh_fuzz_fail("item %zu: its bytes (%zu at offset %zu) are not the item", i, it->raw_len,
                     (size_t)(it->raw - body));
}

static void
check_record(size_t i, const struct bh_fire_event *ev, const struct bh_block *blk)
{
    const void *data;
    size_t len;
    int rc = bh_fire_fill(&rec, ev, blk->id, 1795741387000LL);
    if (rc < 0)
        bh_fuzz_fail("item %zu: a valid event does not fill a FireEvent (%d)", i, rc);
    rc = bh_encode(bh_fuzz_encoder(), schema, &rec, &data, &len);
    if (rc < 0)
        bh_fuzz_fail("item %zu: a valid event does not encode (%d)", i, rc);
    bh_fuzz_emit(data, len);
    avro_value_t back;
    bh_fuzz_check_record("FireEvent", data, len, schema, &back);
    size_t idlen = 0, blen = 0;
    const char *id = bh_fuzz_get_string(&back, "event_id", &idlen);
    const char *block = bh_fuzz_get_string(&back, "block_id", &blen);
    if (block == NULL || blen != strlen(blk->id) || memcmp(block, blk->id, blen) != 0)
        bh_fuzz_fail("item %zu: the record's block_id is not %s", i, blk->id);
    /* A valid UTF-8 id goes out as it came; another one is escaped. */
    if (id == NULL ||
        (bh_utf8_valid(ev->id, ev->id_len) && (idlen != ev->id_len || memcmp(id, ev->id, idlen))))
        bh_fuzz_fail("item %zu: the record's event_id is not the event's", i);
    avro_value_decref(&back);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    struct bh_fire_body body;
    char why[300] = "";
    int status = bh_fire_body_parse((const char *)data, size, MAX_ITEMS, &body, why, sizeof(why));
    if (status != 0) {
        if (status != 400 && status != 413 && !(status == 503 && strstr(why, "memory")))
            bh_fuzz_fail("the body is answered %d", status);
        bh_fuzz_check_why("the whole body's reason", why);
        return 0;
    }
    if (body.n > MAX_ITEMS)
        bh_fuzz_fail("%zu items accepted with max_items %d", body.n, MAX_ITEMS);
    if (body.n > 0 && body.items == NULL)
        bh_fuzz_fail("%zu items and no item array", body.n);
    for (size_t i = 0; i < body.n; i++) {
        const struct bh_fire_item *it = &body.items[i];
        check_raw(data, size, &body, i);
        if (it->refused != BH_DLQ_REASON_COUNT) {
            if (it->value != NULL)
                bh_fuzz_fail("item %zu is refused and still has a value", i);
            check_answer_reason(i, it->refused, it->why);
            continue;
        }
        if (it->value == NULL)
            bh_fuzz_fail("item %zu is neither refused nor has a value", i);
        struct bh_fire_event ev;
        char vwhy[512] = "";
        enum bh_dlq_reason r = bh_fire_validate(it->value, &ev, vwhy, sizeof(vwhy));
        if (r != BH_DLQ_REASON_COUNT) {
            check_answer_reason(i, r, vwhy);
            continue;
        }
        const struct bh_block *blk = bh_blockmap_resolve(
            bh_fuzz_blocks(), ev.grid_code, ev.grid_code_len, ev.has_location, ev.lng, ev.lat);
        if (blk == NULL)
            continue; /* unresolved_block, with a reason of the adapter's own */
        check_record(i, &ev, blk);
    }
    bh_fire_body_free(&body);
    return 0;
}
