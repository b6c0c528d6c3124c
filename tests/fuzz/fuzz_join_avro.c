/*
 * The join's input decoding (join/join_avro.h) and what it leads to: the
 * input is one message value of a department topic. It is read as the join
 * reads it (bh_jread_header, the schema by fingerprint, the field plan of
 * each department input of the example config: market, traffic, fire),
 * counted into a block's state, and the block's view and changelog records
 * are written. The same bytes are also restored as a changelog record (a
 * BlockState keyed by the block, a DedupBatch keyed by block, department and
 * sequence, and a tombstone keyed by the bytes themselves).
 *
 * The plans also read the fields watches look at (bh_jplan_set_extras).
 *
 * Oracle (besides no crash, leak or undefined behaviour):
 *   - whenever the body is a well-formed encoding of its schema (checked
 *     here, strictly and with bounded counts), the plan reads it, and reads
 *     the id, type and time avro-c reads;
 *   - every view and changelog record the join writes decodes with avro-c
 *     and holds only valid UTF-8 strings (block.view is read by consumers
 *     that refuse anything else); a view of a state restored from bytes the
 *     join did not write must decode, and with BH_FUZZ_STRICT_UTF8=1 hold
 *     valid UTF-8 too;
 *   - changelog records written from the state restore into a fresh state,
 *     with the local store (a memory one) taking what they say is remembered,
 *     and that state then recognises a copy of the event;
 *   - an event counted twice in one state is counted once.
 * The state's store writes (a commit's, a restore's) go to a store batch, as
 * in the join; a restore's batch of arbitrary bytes is written to the store.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "join_avro.h"
#include "join_state.h"
#include "join_store.h"
#include "utf8.h"

#define NDEPTS      3
#define MAX_SCHEMAS 16
#define BLOCK       "440303-017"

static const char *const depts[NDEPTS] = {"market", "traffic", "fire"};
static const char *const id_fields[NDEPTS] = {"record_id", "event_id", "event_id"};
static const char *const type_fields[NDEPTS] = {"event_type", "type", "category"};
static const char *const time_field = "occurred_at";
/* What watches may look at: strings, null-or-strings, an enum, the id, a field no schema has. */
static const char *const extras[] = {"plate", "uscc", "device",   "road",  "block_id",
                                     "level", "unit", "event_id", "nosuch"};

static const struct bh_schemas *set;
static const struct bh_schema *view_schema, *state_schema, *batch_schema;
static struct bh_jplan *plans[MAX_SCHEMAS][NDEPTS];
static struct bh_jview_layout *layout;
static struct bh_jtypes *types; /* per input: the names interned stay bounded */
static struct bh_jbuf buf, keybuf, viewbuf;
static int strict;             /* BH_FUZZ_STRICT_UTF8 */
static int known_restore_bugs; /* BH_FUZZ_KNOWN=join-restore: restoring is skipped */

static void
free_state(void)
{
    for (size_t i = 0; i < MAX_SCHEMAS; i++)
        for (int d = 0; d < NDEPTS; d++)
            bh_jplan_free(plans[i][d]);
    bh_jview_layout_free(layout);
    bh_jbuf_free(&buf);
    bh_jbuf_free(&keybuf);
    bh_jbuf_free(&viewbuf);
}

static void
init(void)
{
    if (set != NULL)
        return;
    char err[512];
    set = bh_fuzz_schemas();
    bh_fuzz_blocks();
    strict = bh_fuzz_flag("BH_FUZZ_STRICT_UTF8");
    known_restore_bugs = bh_fuzz_known("join-restore");
    atexit(free_state);
    view_schema = bh_fuzz_schema("blockhub.view.BlockView");
    state_schema = bh_fuzz_schema("blockhub.view.BlockState");
    batch_schema = bh_fuzz_schema("blockhub.view.DedupBatch");
    size_t n = bh_schemas_count(set);
    if (n > MAX_SCHEMAS)
        bh_fuzz_fail("%zu schemas; the target knows %d", n, MAX_SCHEMAS);
    for (size_t i = 0; i < n; i++)
        for (int d = 0; d < NDEPTS; d++)
            if (bh_jplan_new(&plans[i][d], bh_schemas_at(set, i)->schema, id_fields[d],
                             type_fields[d], time_field, err, sizeof(err)) < 0)
                plans[i][d] = NULL; /* the join dead-letters such records */
            else if (bh_jplan_set_extras(plans[i][d], bh_schemas_at(set, i)->schema, extras,
                                         sizeof(extras) / sizeof(*extras)) < 0)
                bh_fuzz_fail("extra fields refused");
    if (bh_jview_layout_new(&layout, view_schema->schema, depts, NDEPTS, err, sizeof(err)) < 0)
        bh_fuzz_fail("the view layout: %s", err);
}

/* A memory store of one partition, one per input (nothing carries over to the next). */
static struct bh_jstore *
new_store(void)
{
    struct bh_jstore_conf c = {.nparts = 1, .ndepts = NDEPTS, .depts = depts, .identity = "fuzz"};
    struct bh_jstore *st;
    char err[256];
    if (bh_jstore_open(&st, &c, err, sizeof(err)) < 0)
        bh_fuzz_fail("the memory store: %s", err);
    return st;
}

/* A state of partition 0 whose committed remembered events are in STORE (NULL: none). */
static struct bh_jstate *
new_state(struct bh_jstore *store)
{
    struct bh_jstate_conf c = {
        .ndepts = NDEPTS,
        .depts = depts,
        .types = types,
        .window_ms = 24LL * 3600 * 1000,
        .retention_ms = 400LL * 24 * 3600 * 1000,
        .state_fp = state_schema->fingerprint,
        .batch_fp = batch_schema->fingerprint,
        .store = store,
    };
    struct bh_jstate *s;
    if (bh_jstate_new(&s, &c) < 0)
        bh_fuzz_fail("out of memory");
    return s;
}

/* --- a strict, bounded reference reader of Avro binary ----------------------- */

struct ref {
    const uint8_t *p, *end;
    int bad;     /* not a valid encoding */
    long budget; /* array and map items left before giving up */
};

static int64_t
ref_long(struct ref *r)
{
    uint64_t z = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) {
            r->bad = 1;
            return 0;
        }
        uint8_t c = *r->p++;
        if (i == 9 && c > 1) { /* past 64 bits */
            r->bad = 1;
            return 0;
        }
        z |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80))
            return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    }
    r->bad = 1;
    return 0;
}

static void
ref_skip(struct ref *r, int64_t n)
{
    if (n < 0 || n > r->end - r->p)
        r->bad = 1;
    else
        r->p += n;
}

static void
ref_value(struct ref *r, avro_schema_t s, int depth)
{
    if (r->bad)
        return;
    if (depth > 32) {
        r->bad = 1;
        return;
    }
    if (is_avro_link(s))
        s = avro_schema_link_target(s);
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return;
    case AVRO_BOOLEAN: {
        const uint8_t *at = r->p;
        ref_skip(r, 1);
        if (!r->bad && *at > 1)
            r->bad = 1;
        return;
    }
    case AVRO_INT32: {
        int64_t v = ref_long(r);
        if (v < INT32_MIN || v > INT32_MAX)
            r->bad = 1;
        return;
    }
    case AVRO_INT64:
        ref_long(r);
        return;
    case AVRO_ENUM: {
        int64_t v = ref_long(r);
        if (v < 0 || v >= avro_schema_enum_number_of_symbols(s))
            r->bad = 1;
        return;
    }
    case AVRO_FLOAT:
        ref_skip(r, 4);
        return;
    case AVRO_DOUBLE:
        ref_skip(r, 8);
        return;
    case AVRO_STRING: {
        int64_t n = ref_long(r);
        const uint8_t *at = r->p;
        ref_skip(r, n);
        if (!r->bad && !bh_utf8_valid((const char *)at, (size_t)n))
            r->bad = 1; /* Avro strings are UTF-8 */
        return;
    }
    case AVRO_BYTES:
        ref_skip(r, ref_long(r));
        return;
    case AVRO_FIXED:
        ref_skip(r, avro_schema_fixed_size(s));
        return;
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(s) && !r->bad; i++)
            ref_value(r, avro_schema_record_field_get_by_index(s, (int)i), depth + 1);
        return;
    case AVRO_UNION: {
        int64_t b = ref_long(r);
        if (r->bad || b < 0 || b >= (int64_t)avro_schema_union_size(s))
            r->bad = 1;
        else
            ref_value(r, avro_schema_union_branch(s, (int)b), depth + 1);
        return;
    }
    case AVRO_ARRAY:
    case AVRO_MAP:
        for (;;) {
            int64_t count = ref_long(r);
            if (r->bad || count == 0)
                return;
            if (count < 0) {
                if (count == INT64_MIN) {
                    r->bad = 1;
                    return;
                }
                count = -count;
                ref_long(r); /* the block's size in bytes */
            }
            if (count > r->budget) {
                r->bad = 1;
                r->budget = -1; /* too many to tell */
                return;
            }
            r->budget -= (long)count;
            for (int64_t i = 0; i < count && !r->bad; i++) {
                if (avro_typeof(s) == AVRO_MAP)
                    ref_skip(r, ref_long(r));
                ref_value(r,
                          avro_typeof(s) == AVRO_ARRAY ? avro_schema_array_items(s)
                                                       : avro_schema_map_values(s),
                          depth + 1);
            }
        }
    default:
        r->bad = 1;
        return;
    }
}

/* Whether BODY is exactly one valid encoding of S (counts of items bounded). */
static int
well_formed(avro_schema_t s, const uint8_t *body, size_t len)
{
    struct ref r = {body, body + len, 0, 4096};
    ref_value(&r, s, 0);
    return !r.bad && r.p == r.end;
}

/* --- the checks ---------------------------------------------------------------- */

/* What avro-c reads for the plan's fields equals what the plan read. */
static void
compare(const char *dept, avro_value_t *rec, const struct bh_jfields *f, int type_field)
{
    avro_value_t v;
    const char *s;
    size_t size;
    int64_t at;
    int sym;
    if (avro_value_get_by_name(rec, id_fields[type_field], &v, NULL) != 0 ||
        avro_value_get_string(&v, &s, &size) != 0 || size == 0 || size - 1 != f->id_len ||
        memcmp(s, f->id, f->id_len) != 0)
        bh_fuzz_fail("%s: the plan's id is not avro-c's", dept);
    if (avro_value_get_by_name(rec, time_field, &v, NULL) != 0 || avro_value_get_long(&v, &at) ||
        at != f->at)
        bh_fuzz_fail("%s: the plan's time is not avro-c's", dept);
    if (avro_value_get_by_name(rec, type_fields[type_field], &v, NULL) != 0)
        bh_fuzz_fail("%s: no type field", dept);
    if (avro_value_get_type(&v) == AVRO_ENUM) {
        if (avro_value_get_enum(&v, &sym) != 0 || sym != f->type_symbol)
            bh_fuzz_fail("%s: the plan's type symbol is not avro-c's", dept);
    } else if (avro_value_get_string(&v, &s, &size) != 0 || size == 0 || size - 1 != f->type_len ||
               memcmp(s, f->type, f->type_len) != 0) {
        bh_fuzz_fail("%s: the plan's type is not avro-c's", dept);
    }
}

/*
 * The view of block B as the join publishes it. STRINGS: its strings must be
 * valid UTF-8 too (always for what input records lead to; for a state
 * restored from a changelog the join did not write, only under
 * BH_FUZZ_STRICT_UTF8).
 */
static void
check_view(struct bh_jstate *s, struct bh_jblock *b, int strings)
{
    size_t slots = bh_jstate_type_slots(b, NDEPTS);
    struct bh_jview_type *tbuf = calloc(slots ? slots : 1, sizeof(*tbuf));
    struct bh_jview_dept d[NDEPTS];
    struct bh_jview v;
    if (tbuf == NULL)
        bh_fuzz_fail("out of memory");
    bh_jstate_view(s, b, &v, d, tbuf);
    const struct bh_block *blk = bh_blockmap_find(bh_fuzz_blocks(), b->id, b->id_len);
    v.block_name = blk ? blk->name : NULL;
    bh_jbuf_reset(&viewbuf);
    bh_jbuf_header(&viewbuf, view_schema->fingerprint);
    bh_jview_encode(layout, &v, &viewbuf);
    if (viewbuf.oom)
        bh_fuzz_fail("out of memory");
    if (strings) {
        bh_fuzz_check_record("the view", viewbuf.p, viewbuf.len, view_schema, NULL);
    } else {
        const struct bh_schema *got;
        avro_value_t back;
        if (bh_decode(set, BH_FRAMING_SINGLE_OBJECT, viewbuf.p, viewbuf.len, &got, &back) < 0)
            bh_fuzz_fail("a view (%zu bytes) does not decode", viewbuf.len);
        avro_value_decref(&back);
    }
    free(tbuf);
}

struct replay {
    struct bh_jstate *into;
};

static int
on_changelog(void *ctx, const void *key, size_t keylen, const void *value, size_t len)
{
    struct replay *r = ctx;
    size_t skipped = 0;
    if (value != NULL) {
        uint64_t fp;
        if (bh_jread_header(value, len, &fp) < 0)
            bh_fuzz_fail("a changelog record without a header");
        bh_fuzz_check_record("a changelog record", value, len,
                             fp == state_schema->fingerprint ? state_schema : batch_schema, NULL);
        bh_fuzz_emit(value, len);
    }
    int rc = bh_jstate_restore(r->into, key, keylen, value, len, &skipped);
    if (rc < 0)
        bh_fuzz_fail("a changelog record the join wrote does not restore (%d)", rc);
    return 0;
}

/* One input record of department D, as the join counts it. */
static void
count(int d, const struct bh_jfields *f)
{
    if (f->id_len == 0)
        return; /* missing_field */
    if (f->at == BH_JSTATE_NO_TIME)
        return; /* invalid_field: the state's "no event yet" is not a time */
    uint32_t type;
    if (bh_jtypes_intern(types, (size_t)d, f->type, f->type_len, &type) < 0)
        bh_fuzz_fail("out of memory");
    struct bh_jstore *store = new_store();
    struct bh_jstate *s = new_state(NULL);
    struct bh_jblock *b = bh_jstate_block(s, BLOCK, strlen(BLOCK), 1);
    if (b == NULL)
        bh_fuzz_fail("out of memory");
    int64_t now = 1795741387000LL;
    int first = bh_jstate_apply(s, b, (size_t)d, f->id, f->id_len, type, f->at, now);
    int again = bh_jstate_apply(s, b, (size_t)d, f->id, f->id_len, type, f->at, now + 1);
    if (first < 0 || again < 0)
        bh_fuzz_fail("out of memory");
    if (first != BH_JSTATE_COUNTED || again != BH_JSTATE_COPY || b->dept[d].total != 1)
        bh_fuzz_fail("an event counted twice: %d, then %d", first, again);
    check_view(s, b, 1);

    /* the commit's store writes to a batch, as the join's; dropped here */
    struct bh_jstore_batch *wb = bh_jstore_batch_new(store);
    struct replay r = {new_state(store)};
    struct bh_jstore_batch *rb = bh_jstore_batch_new(store);
    if (wb == NULL || rb == NULL)
        bh_fuzz_fail("out of memory");
    bh_jstate_set_batch(s, wb);
    bh_jstate_set_batch(r.into, rb);
    bh_jbuf_reset(&buf);
    bh_jbuf_reset(&keybuf);
    if (bh_jstate_write(s, b, &buf, &keybuf, on_changelog, &r) < 0)
        bh_fuzz_fail("the changelog could not be written");
    if (bh_jstate_restore_finish(r.into) < 0)
        bh_fuzz_fail("the changelog does not restore");
    bh_jstate_set_batch(s, NULL);
    bh_jstore_batch_free(wb);
    bh_jstate_set_batch(r.into, NULL);
    if (bh_jstore_write(store, rb) < 0)
        bh_fuzz_fail("the restore's store writes failed");
    for (size_t i = 0; i < bh_jstate_count(r.into); i++)
        check_view(r.into, bh_jstate_at(r.into, i), 1);
    /* restored, the state (its store) still knows the event: a copy changes nothing */
    struct bh_jblock *rbk = bh_jstate_block(r.into, BLOCK, strlen(BLOCK), 0);
    if (rbk == NULL || rbk->dept[d].total != 1)
        bh_fuzz_fail("the restored block lost its count");
    int copy = bh_jstate_apply(r.into, rbk, (size_t)d, f->id, f->id_len, type, f->at, now + 2);
    if (copy != BH_JSTATE_COPY || rbk->dept[d].total != 1)
        bh_fuzz_fail("a copy after the restore is not recognised (%d)", copy);
    bh_jstate_free(r.into);
    bh_jstate_free(s);
    bh_jstore_close(store);
}

/* The bytes as changelog records, as a rebuild after a rebalance reads them. */
static void
restore(const uint8_t *data, size_t size)
{
    static const char batch_key[] = BLOCK "\x1f"
                                          "fire\x1f"
                                          "0";
    struct bh_jstore *store = new_store();
    struct bh_jstore_batch *sb = bh_jstore_batch_new(store);
    if (sb == NULL)
        bh_fuzz_fail("out of memory");
    struct bh_jstate *s = new_state(store);
    size_t skipped = 0;
    bh_jstate_set_batch(s, sb);
    bh_jstate_restore(s, BLOCK, strlen(BLOCK), data, size, &skipped);
    bh_jstate_restore(s, batch_key, sizeof(batch_key) - 1, data, size, &skipped);
    if (size > 0)
        bh_jstate_restore(s, data, size, NULL, 0, &skipped);
    int rc = bh_jstate_restore_finish(s);
    bh_jstate_set_batch(s, NULL);
    /* what the records said is remembered, into the store: whatever the bytes, no failure */
    if (bh_jstore_write(store, sb) < 0)
        bh_fuzz_fail("the store refused a restore's writes");
    if (rc == 0)
        for (size_t i = 0; i < bh_jstate_count(s); i++)
            check_view(s, bh_jstate_at(s, i), strict);
    bh_jstate_free(s);
    bh_jstore_close(store);
}

/* For make-seeds.py: changelog records with dedup batches, from many events of one block. */
static void
emit_batches(void)
{
    struct bh_jstate *s = new_state(NULL);
    struct bh_jblock *b = bh_jstate_block(s, BLOCK, strlen(BLOCK), 1);
    struct replay r = {new_state(NULL)};
    for (int i = 0; i < 3 * BH_JSTATE_RECENT; i++) {
        char id[32];
        uint32_t type;
        int n = snprintf(id, sizeof(id), "XF-440303-2026-%06d", i);
        if (b == NULL || bh_jtypes_intern(types, 2, i % 2 ? "alarm" : "drill", 5, &type) < 0 ||
            bh_jstate_apply(s, b, 2, id, (size_t)n, type, 1795741387000LL + i * 60000LL,
                            1795741387000LL) < 0)
            bh_fuzz_fail("out of memory");
        if (i % BH_JSTATE_RECENT == BH_JSTATE_RECENT - 1) {
            bh_jbuf_reset(&buf);
            bh_jbuf_reset(&keybuf);
            if (bh_jstate_write(s, b, &buf, &keybuf, on_changelog, &r) < 0)
                bh_fuzz_fail("the changelog could not be written");
        }
    }
    bh_jstate_free(r.into);
    bh_jstate_free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (bh_jtypes_new(&types, NDEPTS) < 0)
        bh_fuzz_fail("out of memory");
    static int seeded;
    if (!seeded++ && getenv("BH_FUZZ_EMIT_DIR") != NULL)
        emit_batches();
    if (!known_restore_bugs)
        restore(data, size);
    uint64_t fp;
    const struct bh_schema *s = NULL;
    if (bh_jread_header(data, size, &fp) == 0)
        s = bh_schemas_find_fingerprint(set, fp);
    if (s == NULL) { /* no header or an unknown schema: invalid_encoding */
        bh_jtypes_free(types);
        return 0;
    }
    size_t si = 0;
    while (bh_schemas_at(set, si) != s)
        si++;
    const uint8_t *body = data + BH_SINGLE_OBJECT_HEADER;
    size_t len = size - BH_SINGLE_OBJECT_HEADER;
    int whole = well_formed(s->schema, body, len);
    avro_value_t rec;
    if (whole) {
        const struct bh_schema *got;
        int rc = bh_decode(set, BH_FRAMING_SINGLE_OBJECT, data, size, &got, &rec);
        if (rc < 0)
            bh_fuzz_fail("avro-c refuses a well-formed %s (%d)", s->name, rc);
    }
    for (int d = 0; d < NDEPTS; d++) {
        if (plans[si][d] == NULL)
            continue;
        struct bh_jfields f;
        int rc = bh_jplan_read(plans[si][d], body, len, &f);
        if (whole && rc < 0)
            bh_fuzz_fail("%s: the plan refuses a well-formed %s (%d)", depts[d], s->name, rc);
        if (rc < 0)
            continue; /* invalid_encoding */
        if (whole)
            compare(depts[d], &rec, &f, d);
        for (size_t k = 0; k < sizeof(extras) / sizeof(*extras); k++)
            if (f.extra[k] != NULL && f.extra_len[k] > len + 64)
                bh_fuzz_fail("extra field %s of %zu bytes from a body of %zu", extras[k],
                             f.extra_len[k], len);
        count(d, &f);
    }
    if (whole)
        avro_value_decref(&rec);
    bh_jtypes_free(types);
    return 0;
}
