/*
 * The fire webhook's body, as the adapter takes it after the HTTP checks:
 * bh_fire_body_parse, then per item the refusal or bh_fire_validate, the
 * block lookup, the direct Avro writer, and the answer's JSON for a rejection.
 *
 * Oracle (besides no crash, leak or undefined behaviour):
 *   - the body is answered 400 or 413 with a reason that is valid UTF-8, or
 *     it parses into items;
 *   - bh_fire_body_parse (the scanner, handing over to jansson what it does
 *     not take on) and bh_fire_body_parse_jansson (jansson alone) give the
 *     same answer: the same status and reason, or the same items with the
 *     same bytes, refusals, validation outcomes, reasons and fields (numbers
 *     to the bit);
 *   - every item is refused or invalid (a dead-letter reason code and a
 *     reason in valid UTF-8 that the answer's JSON can carry, written as
 *     jansson would), unresolved, or a FireEvent record that bh_fire_fill
 *     and avro-c encode to exactly the bytes of bh_fire_avro_write, decodes
 *     with avro-c, holds only valid UTF-8 strings and carries the item's id;
 *   - an item of an array keeps its own bytes (for its dead letter): they
 *     parse to the same JSON value as the item.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/fire/fire_event.h"
#include "avro_write.h"
#include "fuzz_common.h"
#include "utf8.h"

#define MAX_ITEMS 100

static const struct bh_schema *schema;
static avro_value_t rec;
static struct bh_fire_body fast, ref;

static void
free_all(void)
{
    avro_value_decref(&rec);
    bh_fire_body_free(&fast);
    bh_fire_body_free(&ref);
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
    atexit(free_all); /* before the schemas go */
}

/* What the adapter does with a rejected item's reason: the answer's JSON, as jansson writes it. */
static void
check_answer_reason(size_t i, enum bh_dlq_reason r, const char *why)
{
    char what[64];
    snprintf(what, sizeof(what), "item %zu's reason", i);
    bh_fuzz_check_reject(what, r, why);
    const char *code = bh_dlq_reason_code(r);
    json_t *o = json_pack("{s:I, s:s, s:s}", "index", (json_int_t)i, "code", code, "reason", why);
    if (o == NULL)
        bh_fuzz_fail("%s cannot go into the JSON answer", what);
    char *want = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *got = malloc(bh_fire_reject_bound(code, why));
    if (want == NULL || got == NULL)
        bh_fuzz_fail("out of memory");
    size_t n = bh_fire_reject_json(got, i, code, why);
    if (n != strlen(want) || memcmp(got, want, n) != 0)
        bh_fuzz_fail("%s: the answer's entry is %.*s, jansson writes %s", what, (int)n, got, want);
    free(got);
    free(want);
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
    if (it->refused != BH_DLQ_REASON_COUNT || !json_is_array(b->root))
        return;
    json_error_t e;
    json_t *v = json_loadb(it->raw, it->raw_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (v == NULL)
        bh_fuzz_fail("item %zu: its bytes (%zu at offset %zu) are not JSON: %s", i, it->raw_len,
                     (size_t)(it->raw - body), e.text);
    int same = json_equal(v, json_array_get(b->root, i));
    json_decref(v);
    if (!same)
        bh_fuzz_fail("item %zu: its bytes (%zu at offset %zu) are not the item", i, it->raw_len,
                     (size_t)(it->raw - body));
}

static void
same_string(size_t i, const char *name, const char *a, size_t alen, const char *b, size_t blen)
{
    if ((a == NULL) != (b == NULL) || alen != blen || (alen > 0 && memcmp(a, b, alen) != 0))
        bh_fuzz_fail("item %zu: %s differs between the scanner and jansson", i, name);
}

/* The same event from both parses. */
static void
same_event(size_t i, const struct bh_fire_event *a, const struct bh_fire_event *b)
{
    same_string(i, "id", a->id, a->id_len, b->id, b->id_len);
    same_string(i, "unit", a->unit, a->unit_len, b->unit, b->unit_len);
    same_string(i, "building_id", a->building_id, a->building_id_len, b->building_id,
                b->building_id_len);
    same_string(i, "grid_code", a->grid_code, a->grid_code_len, b->grid_code, b->grid_code_len);
    same_string(i, "description", a->description, a->description_len, b->description,
                b->description_len);
    if (strcmp(a->category, b->category) != 0 || strcmp(a->level, b->level) != 0 ||
        a->category_index != b->category_index || a->level_index != b->level_index ||
        a->has_location != b->has_location || memcmp(&a->lng, &b->lng, sizeof(a->lng)) != 0 ||
        memcmp(&a->lat, &b->lat, sizeof(a->lat)) != 0 || a->occurred_at != b->occurred_at ||
        a->offset_min != b->offset_min)
        bh_fuzz_fail("item %zu: the event differs between the scanner and jansson", i);
}

static void
check_record(size_t i, const struct bh_fire_event *ev, const struct bh_block *blk)
{
    const void *data;
    size_t len, hlen;
    uint8_t header[16];
    int rc = bh_fire_fill(&rec, ev, blk->id, 1795741387000LL);
    if (rc < 0)
        bh_fuzz_fail("item %zu: a valid event does not fill a FireEvent (%d)", i, rc);
    rc = bh_encode(bh_fuzz_encoder(), schema, &rec, &data, &len);
    if (rc < 0)
        bh_fuzz_fail("item %zu: a valid event does not encode (%d)", i, rc);
    uint8_t *direct = malloc(bh_fire_avro_bound(ev, blk->id, NULL));
    if (direct == NULL)
        bh_fuzz_fail("out of memory");
    size_t n = bh_fire_avro_write(direct, ev, blk->id, 1795741387000LL, NULL);
    if (bh_avro_write_split(data, len, direct, n, header, sizeof(header), &hlen) < 0)
        bh_fuzz_fail("item %zu: the direct writer's record is not avro-c's", i);
    free(direct);
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
    char why[300] = "", rwhy[300] = "";
    int status = bh_fire_body_parse((const char *)data, size, MAX_ITEMS, &fast, why, sizeof(why));
    int rstatus =
        bh_fire_body_parse_jansson((const char *)data, size, MAX_ITEMS, &ref, rwhy, sizeof(rwhy));
    if (status != rstatus || strcmp(why, rwhy) != 0)
        bh_fuzz_fail("the body is answered %d (%s), by jansson alone %d (%s)", status, why, rstatus,
                     rwhy);
    if (status != 0) {
        if (status != 400 && status != 413 && !(status == 503 && strstr(why, "memory")))
            bh_fuzz_fail("the body is answered %d", status);
        bh_fuzz_check_why("the whole body's reason", why);
        return 0;
    }
    if (fast.n != ref.n)
        bh_fuzz_fail("%zu items, by jansson alone %zu", fast.n, ref.n);
    if (fast.n > MAX_ITEMS)
        bh_fuzz_fail("%zu items accepted with max_items %d", fast.n, MAX_ITEMS);
    if (fast.n > 0 && fast.items == NULL)
        bh_fuzz_fail("%zu items and no item array", fast.n);
    for (size_t i = 0; i < fast.n; i++) {
        const struct bh_fire_item *it = &fast.items[i], *rt = &ref.items[i];
        check_raw(data, size, &ref, i);
        if (it->raw != rt->raw || it->raw_len != rt->raw_len)
            bh_fuzz_fail("item %zu: its bytes differ between the scanner and jansson", i);
        if (it->refused != rt->refused ||
            (it->refused != BH_DLQ_REASON_COUNT && strcmp(it->why, rt->why) != 0))
            bh_fuzz_fail("item %zu: refused %d (%s), by jansson alone %d (%s)", i, it->refused,
                         it->refused != BH_DLQ_REASON_COUNT ? it->why : "", (int)rt->refused,
                         rt->refused != BH_DLQ_REASON_COUNT ? rt->why : "");
        if (it->refused != BH_DLQ_REASON_COUNT) {
            check_answer_reason(i, it->refused, it->why);
            continue;
        }
        struct bh_fire_event ev, rev;
        char vwhy[512] = "", rvwhy[512] = "";
        enum bh_dlq_reason r = bh_fire_validate(&it->f, &ev, vwhy, sizeof(vwhy));
        enum bh_dlq_reason rr = bh_fire_validate(&rt->f, &rev, rvwhy, sizeof(rvwhy));
        if (r != rr || strcmp(vwhy, rvwhy) != 0)
            bh_fuzz_fail("item %zu: %d (%s), by jansson alone %d (%s)", i, r, vwhy, rr, rvwhy);
        if (r != BH_DLQ_REASON_COUNT) {
            check_answer_reason(i, r, vwhy);
            continue;
        }
        same_event(i, &ev, &rev);
        const struct bh_block *blk = bh_blockmap_resolve(
            bh_fuzz_blocks(), ev.grid_code, ev.grid_code_len, ev.has_location, ev.lng, ev.lat);
        if (blk == NULL)
            continue; /* unresolved_block, with a reason of the adapter's own */
        check_record(i, &ev, blk);
    }
    bh_fire_body_clear(&fast);
    bh_fire_body_clear(&ref);
    return 0;
}
