/*
 * The join's Avro (join/join_avro.c): field plans read what avro-c wrote, for
 * enum and string type fields, at any field position, and refuse truncated or
 * malformed bodies; the hand-written view and changelog records decode with
 * avro-c against the schemas in schemas/ (block_view.avsc, block_state.avsc,
 * dedup_batch.avsc) field by field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "avro_codec.h"
#include "avro_write.h"
#include "join_avro.h"
#include "join_state.h"
#include "record.h"

static struct bh_schemas *schemas;

static int
setup(void **state)
{
    (void)state;
    const char *src = getenv("BH_SOURCE_DIR");
    char dir[4096], err[512];
    if (src == NULL) {
        print_error("BH_SOURCE_DIR is not set (ctest sets it to the source tree)\n");
        return -1;
    }
    snprintf(dir, sizeof(dir), "%s/schemas", src);
    if (bh_schemas_load(&schemas, dir, err, sizeof(err)) < 0) {
        print_error("%s\n", err);
        return -1;
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    bh_schemas_free(schemas);
    return 0;
}

static const struct bh_schema *
schema(const char *name)
{
    const struct bh_schema *s = bh_schemas_find(schemas, name);
    if (s == NULL)
        fail_msg("schema %s not in schemas/", name);
    return s;
}

/* ---- field plans ---- */

static void
test_plan_fire_event(void **state)
{
    (void)state;
    const struct bh_schema *s = schema("blockhub.fire.FireEvent");
    struct bh_encoder *enc;
    avro_value_t rec, loc;
    const void *data;
    size_t len;
    char err[256] = "";
    struct bh_jplan *p;
    assert_int_equal(bh_encoder_new(&enc, BH_FRAMING_SINGLE_OBJECT), 0);
    assert_int_equal(avro_generic_value_new(s->iface, &rec), 0);
    assert_int_equal(bh_rec_cstring(&rec, "event_id", "F-2026-0001"), 0);
    assert_int_equal(bh_rec_cstring(&rec, "block_id", "440303-017"), 0);
    assert_int_equal(bh_rec_enum(&rec, "category", "rectified"), 0);
    assert_int_equal(bh_rec_cstring(&rec, "unit", "某大厦"), 0);
    assert_int_equal(bh_rec_cstring(&rec, "building_id", "B-9"), 0);
    assert_int_equal(bh_rec_null(&rec, "grid_code"), 0);
    assert_int_equal(bh_rec_sub(&rec, "location", &loc), 0);
    assert_int_equal(bh_rec_double(&loc, "lng", 114.1), 0);
    assert_int_equal(bh_rec_double(&loc, "lat", 22.5), 0);
    assert_int_equal(bh_rec_enum(&rec, "level", "high"), 0);
    assert_int_equal(bh_rec_cstring(&rec, "description", "描述 with ✓"), 0);
    assert_int_equal(bh_rec_long(&rec, "occurred_at", 1795738500000LL), 0);
    assert_int_equal(bh_rec_int(&rec, "occurred_offset_min", 480), 0);
    assert_int_equal(bh_rec_long(&rec, "received_at", 1795738501234LL), 0);
    assert_int_equal(bh_rec_null_unset(&rec), 0); /* tls_subject, and what comes later */
    assert_int_equal(bh_encode(enc, s, &rec, &data, &len), 0);

    uint64_t fp;
    assert_int_equal(bh_jread_header(data, len, &fp), 0);
    assert_true(fp == s->fingerprint);
    assert_int_equal(
        bh_jplan_new(&p, s->schema, "event_id", "category", "occurred_at", err, sizeof(err)), 0);
    struct bh_jfields f;
    const uint8_t *body = (const uint8_t *)data + BH_SINGLE_OBJECT_HEADER;
    size_t blen = len - BH_SINGLE_OBJECT_HEADER;
    assert_int_equal(bh_jplan_read(p, body, blen, &f), 0);
    assert_int_equal(f.id_len, strlen("F-2026-0001"));
    assert_memory_equal(f.id, "F-2026-0001", f.id_len);
    assert_int_equal(f.type_symbol, 3);
    assert_string_equal(f.type, "rectified");
    assert_int_equal(f.at, 1795738500000LL);
    assert_int_equal(bh_jplan_symbols(p), 5);
    assert_string_equal(bh_jplan_symbol(p, 0), "alarm");
    /* every truncation that cuts into a needed field is refused; the fields after
     * occurred_at (the offset, received_at and a null tls_subject) are not read */
    struct bh_jbuf tail = {0};
    bh_jbuf_long(&tail, 480);
    bh_jbuf_long(&tail, 1795738501234LL);
    bh_jbuf_long(&tail, 0); /* tls_subject: the null branch */
    size_t needed = blen - tail.len;
    bh_jbuf_free(&tail);
    for (size_t cut = 0; cut < needed; cut++)
        assert_int_equal(bh_jplan_read(p, body, cut, &f), -EBADMSG);
    assert_int_equal(bh_jplan_read(p, body, needed, &f), 0);
    assert_int_equal(f.at, 1795738500000LL);
    /* a wrong union branch or enum symbol is refused */
    uint8_t *bad = malloc(blen);
    memcpy(bad, body, blen);
    bad[0] = 0x7f; /* event_id's length: longer than the body */
    assert_int_equal(bh_jplan_read(p, bad, blen, &f), -EBADMSG);
    free(bad);
    bh_jplan_free(p);

    /* the plan names what is missing or of the wrong type */
    assert_int_equal(bh_jplan_new(&p, s->schema, "id", "category", "occurred_at", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "'id'"));
    assert_int_equal(
        bh_jplan_new(&p, s->schema, "event_id", "occurred_at", "occurred_at", err, sizeof(err)),
        -EINVAL);
    assert_non_null(strstr(err, "neither a string nor an enum"));
    assert_int_equal(
        bh_jplan_new(&p, s->schema, "event_id", "category", "received_at", err, sizeof(err)), 0);
    bh_jplan_free(p);
    assert_int_equal(bh_jplan_new(&p, s->schema, "event_id", "category", "occurred_offset_min", err,
                                  sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "not a long"));
    avro_value_decref(&rec);
    bh_encoder_free(enc);
}

/* A string type field after every kind of Avro value, fields needed out of order. */
static const char KITCHEN_SINK[] =
    "{\"type\":\"record\",\"name\":\"Sink\",\"fields\":["
    "{\"name\":\"when\",\"type\":\"long\"},"
    "{\"name\":\"b\",\"type\":\"boolean\"},"
    "{\"name\":\"i\",\"type\":\"int\"},"
    "{\"name\":\"f\",\"type\":\"float\"},"
    "{\"name\":\"d\",\"type\":\"double\"},"
    "{\"name\":\"raw\",\"type\":\"bytes\"},"
    "{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F3\",\"size\":3}},"
    "{\"name\":\"arr\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":{\"type\":\"record\",\"name\":\"In\","
    "\"fields\":[{\"name\":\"x\",\"type\":[\"null\",\"long\",\"string\"]}]}}},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}},"
    "{\"name\":\"kind\",\"type\":\"string\"},"
    "{\"name\":\"n\",\"type\":\"null\"},"
    "{\"name\":\"rid\",\"type\":\"string\"},"
    "{\"name\":\"tail\",\"type\":\"string\"}]}";

static void
test_plan_skips_everything(void **state)
{
    (void)state;
    avro_schema_t s;
    avro_value_iface_t *iface;
    avro_value_t rec, v, item, mv;
    char err[256] = "";
    assert_int_equal(avro_schema_from_json_length(KITCHEN_SINK, sizeof(KITCHEN_SINK) - 1, &s), 0);
    iface = avro_generic_class_from_schema(s);
    assert_int_equal(avro_generic_value_new(iface, &rec), 0);
    assert_int_equal(bh_rec_long(&rec, "when", -1234567), 0);
    assert_int_equal(bh_rec_bool(&rec, "b", true), 0);
    assert_int_equal(bh_rec_int(&rec, "i", -7), 0);
    assert_int_equal(avro_value_get_by_name(&rec, "f", &v, NULL), 0);
    assert_int_equal(avro_value_set_float(&v, 1.5f), 0);
    assert_int_equal(bh_rec_double(&rec, "d", 2.5), 0);
    assert_int_equal(bh_rec_bytes(&rec, "raw", "\x00\x01\x02\x03", 4), 0);
    assert_int_equal(avro_value_get_by_name(&rec, "fx", &v, NULL), 0);
    assert_int_equal(avro_value_set_fixed(&v, "xyz", 3), 0);
    assert_int_equal(avro_value_get_by_name(&rec, "arr", &v, NULL), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(avro_value_append(&v, &item, NULL), 0);
        assert_int_equal(avro_value_set_string(&item, "item"), 0);
    }
    assert_int_equal(avro_value_get_by_name(&rec, "m", &v, NULL), 0);
    assert_int_equal(avro_value_add(&v, "k1", &mv, NULL, NULL), 0);
    assert_int_equal(avro_value_get_by_name(&mv, "x", &item, NULL), 0);
    assert_int_equal(avro_value_set_branch(&item, 2, &item), 0);
    assert_int_equal(avro_value_set_string(&item, "str"), 0);
    assert_int_equal(avro_value_add(&v, "k2", &mv, NULL, NULL), 0);
    assert_int_equal(avro_value_get_by_name(&mv, "x", &item, NULL), 0);
    assert_int_equal(avro_value_set_branch(&item, 1, &item), 0);
    assert_int_equal(avro_value_set_long(&item, 99), 0);
    assert_int_equal(bh_rec_enum(&rec, "e", "B"), 0);
    assert_int_equal(bh_rec_cstring(&rec, "kind", "日常检查"), 0);
    assert_int_equal(avro_value_get_by_name(&rec, "n", &v, NULL), 0);
    assert_int_equal(avro_value_set_null(&v), 0);
    assert_int_equal(bh_rec_cstring(&rec, "rid", "SCJG-2026-000007"), 0);
    assert_int_equal(bh_rec_cstring(&rec, "tail", "not read"), 0);

    char buf[1024];
    avro_writer_t w = avro_writer_memory(buf, sizeof(buf));
    assert_int_equal(avro_value_write(w, &rec), 0);
    size_t len = (size_t)avro_writer_tell(w);
    avro_writer_free(w);

    struct bh_jplan *p;
    struct bh_jfields f;
    assert_int_equal(bh_jplan_new(&p, s, "rid", "kind", "when", err, sizeof(err)), 0);
    assert_int_equal(bh_jplan_read(p, buf, len, &f), 0);
    assert_int_equal(f.id_len, 16);
    assert_memory_equal(f.id, "SCJG-2026-000007", 16);
    assert_int_equal(f.type_symbol, -1);
    assert_int_equal(f.type_len, strlen("日常检查"));
    assert_memory_equal(f.type, "日常检查", f.type_len);
    assert_int_equal(f.at, -1234567);
    /* "tail" is never read: a body cut right after "rid" still reads */
    assert_int_equal(bh_jplan_read(p, buf, len - 9, &f), 0);
    for (size_t cut = 0; cut < len - 9; cut++)
        assert_int_equal(bh_jplan_read(p, buf, cut, &f), -EBADMSG);
    /* the enum as the type field */
    bh_jplan_free(p);
    assert_int_equal(bh_jplan_new(&p, s, "rid", "e", "when", err, sizeof(err)), 0);
    assert_int_equal(bh_jplan_read(p, buf, len, &f), 0);
    assert_int_equal(f.type_symbol, 1);
    assert_string_equal(f.type, "B");
    bh_jplan_free(p);
    avro_value_decref(&rec);
    avro_value_iface_decref(iface);
    avro_schema_decref(s);
}

/* Extra fields as text (what watches compare): strings, nullable strings, enums, the id and type.
 */
static void
test_plan_extras(void **state)
{
    (void)state;
    const struct bh_schema *ts = schema("blockhub.traffic.TrafficEvent");
    avro_value_iface_t *iface = avro_generic_class_from_schema(ts->schema);
    avro_value_t rec;
    assert_int_equal(avro_generic_value_new(iface, &rec), 0);
    assert_int_equal(bh_rec_cstring(&rec, "event_id", "T-1"), 0);
    assert_int_equal(bh_rec_cstring(&rec, "block_id", "440303-001"), 0);
    assert_int_equal(bh_rec_cstring(&rec, "device", "cam-7"), 0);
    assert_int_equal(bh_rec_enum(&rec, "type", "motorcycle_violation"), 0);
    assert_int_equal(bh_rec_double(&rec, "lon", 114.1), 0);
    assert_int_equal(bh_rec_double(&rec, "lat", 22.5), 0);
    assert_int_equal(bh_rec_int(&rec, "severity", 2), 0);
    assert_int_equal(bh_rec_long(&rec, "occurred_at", 1700000000000), 0);
    assert_int_equal(bh_rec_opt_string(&rec, "plate", "粤B12345", strlen("粤B12345")), 0);
    assert_int_equal(bh_rec_null(&rec, "road"), 0);
    assert_int_equal(bh_rec_long(&rec, "received_at", 1700000000001), 0);
    assert_int_equal(bh_rec_cstring(&rec, "peer", "127.0.0.1:5"), 0);
    assert_int_equal(bh_rec_null(&rec, "tls_subject"), 0);
    char buf[1024];
    avro_writer_t w = avro_writer_memory(buf, sizeof(buf));
    assert_int_equal(avro_value_write(w, &rec), 0);
    size_t len = (size_t)avro_writer_tell(w);
    avro_writer_free(w);

    struct bh_jplan *p;
    struct bh_jfields f;
    char err[256] = "";
    assert_int_equal(
        bh_jplan_new(&p, ts->schema, "event_id", "type", "occurred_at", err, sizeof(err)), 0);
    const char *names[] = {"plate",    "road",   "device", "type",    "event_id",
                           "severity", "nosuch", "peer",   "block_id"};
    assert_int_equal(bh_jplan_set_extras(p, ts->schema, names, 9), 0);
    assert_int_equal(bh_jplan_read(p, buf, len, &f), 0);
    assert_int_equal(f.extra_len[0], strlen("粤B12345"));
    assert_memory_equal(f.extra[0], "粤B12345", f.extra_len[0]);
    assert_null(f.extra[1]); /* null */
    assert_int_equal(f.extra_len[2], 5);
    assert_memory_equal(f.extra[2], "cam-7", 5);
    assert_string_equal(f.extra[3], "motorcycle_violation");
    assert_int_equal(f.extra_len[4], 3);
    assert_memory_equal(f.extra[4], "T-1", 3);
    assert_null(f.extra[5]); /* an int: not text */
    assert_null(f.extra[6]); /* not in the schema */
    assert_int_equal(f.extra_len[7], strlen("127.0.0.1:5"));
    assert_memory_equal(f.extra[7], "127.0.0.1:5", f.extra_len[7]);
    assert_int_equal(f.extra_len[8], 10);
    assert_memory_equal(f.extra[8], "440303-001", 10);
    /* the id, type and time still read; a cut body does not */
    assert_int_equal(f.at, 1700000000000);
    assert_string_equal(f.type, "motorcycle_violation");
    for (size_t cut = 0; cut < len - 1; cut++)
        assert_int_equal(bh_jplan_read(p, buf, cut, &f), -EBADMSG);
    /* a plate that is null */
    assert_int_equal(bh_rec_null(&rec, "plate"), 0);
    w = avro_writer_memory(buf, sizeof(buf));
    assert_int_equal(avro_value_write(w, &rec), 0);
    len = (size_t)avro_writer_tell(w);
    avro_writer_free(w);
    assert_int_equal(bh_jplan_read(p, buf, len, &f), 0);
    assert_null(f.extra[0]);
    assert_int_equal(bh_jplan_set_extras(p, ts->schema, names, BH_JPLAN_EXTRAS - 8), -E2BIG);
    bh_jplan_free(p);
    avro_value_decref(&rec);
    avro_value_iface_decref(iface);
}

/*
 * A reader that added a field with a default reads records of the writer that
 * lacks it: the plan takes the reader's default (avro-c's own resolver fails
 * at exactly this); a writer field the reader does not have is skipped.
 */
static void
test_plan_reader_defaults(void **state)
{
    (void)state;
    static const char writer_json[] =
        "{\"type\":\"record\",\"name\":\"E\",\"namespace\":\"t\",\"fields\":["
        "{\"name\":\"event_id\",\"type\":\"string\"},"
        "{\"name\":\"gone\",\"type\":[\"null\",\"string\"]},"
        "{\"name\":\"occurred_at\",\"type\":\"long\"}]}";
    static const char reader_json[] =
        "{\"type\":\"record\",\"name\":\"E\",\"namespace\":\"t\",\"fields\":["
        "{\"name\":\"event_id\",\"type\":\"string\"},"
        "{\"name\":\"kind\",\"type\":\"string\",\"default\":\"unclassified\"},"
        "{\"name\":\"occurred_at\",\"type\":\"long\"}]}";
    static const char reader_no_default[] =
        "{\"type\":\"record\",\"name\":\"E\",\"namespace\":\"t\",\"fields\":["
        "{\"name\":\"event_id\",\"type\":\"string\"},"
        "{\"name\":\"kind\",\"type\":\"string\"},"
        "{\"name\":\"occurred_at\",\"type\":\"long\"}]}";
    avro_schema_t w;
    char err[300];
    assert_int_equal(avro_schema_from_json_length(writer_json, strlen(writer_json), &w), 0);
    /* body: "EV-1", the union's string branch "x", 1700000000000 */
    uint8_t body[64], *q = body;
    q = bh_avro_put_bytes(q, "EV-1", 4);
    q = bh_avro_put_long(q, 1);
    q = bh_avro_put_bytes(q, "x", 1);
    q = bh_avro_put_long(q, 1700000000000LL);
    struct bh_jplan *p;
    struct bh_jfields f;
    assert_int_equal(bh_jplan_new_resolved(&p, w, reader_json, "event_id", "kind", "occurred_at",
                                           err, sizeof(err)),
                     0);
    assert_int_equal(bh_jplan_read(p, body, (size_t)(q - body), &f), 0);
    assert_int_equal(f.id_len, 4);
    assert_memory_equal(f.id, "EV-1", 4);
    assert_int_equal(f.type_symbol, -1);
    assert_int_equal(f.type_len, strlen("unclassified"));
    assert_memory_equal(f.type, "unclassified", f.type_len);
    assert_int_equal(f.at, 1700000000000LL);
    bh_jplan_free(p);
    /* no default anywhere: refused, saying so */
    assert_int_equal(bh_jplan_new_resolved(&p, w, reader_no_default, "event_id", "kind",
                                           "occurred_at", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "'kind'"));
    assert_non_null(strstr(err, "no default"));
    assert_int_equal(bh_jplan_new(&p, w, "event_id", "kind", "occurred_at", err, sizeof(err)),
                     -EINVAL);
    avro_schema_decref(w);
}

/* ---- the view ---- */

static void
decode(const char *schema_name, const struct bh_jbuf *b, avro_value_t *out)
{
    const struct bh_schema *s = NULL;
    assert_int_equal(bh_decode(schemas, BH_FRAMING_SINGLE_OBJECT, b->p, b->len, &s, out), 0);
    assert_string_equal(s->name, schema_name);
}

static void
get(avro_value_t *rec, const char *name, avro_value_t *out)
{
    if (avro_value_get_by_name(rec, name, out, NULL) != 0)
        fail_msg("no field %s", name);
}

static int64_t
get_long(avro_value_t *rec, const char *name)
{
    avro_value_t v;
    int64_t x;
    get(rec, name, &v);
    assert_int_equal(avro_value_get_long(&v, &x), 0);
    return x;
}

static const char *
get_string(avro_value_t *rec, const char *name)
{
    avro_value_t v;
    const char *s;
    size_t n;
    get(rec, name, &v);
    if (avro_value_get_type(&v) == AVRO_UNION) {
        int disc;
        assert_int_equal(avro_value_get_discriminant(&v, &disc), 0);
        avro_value_get_current_branch(&v, &v);
        if (avro_value_get_type(&v) == AVRO_NULL)
            return NULL;
    }
    assert_int_equal(avro_value_get_string(&v, &s, &n), 0);
    return s;
}

static void
test_view_encoding(void **state)
{
    (void)state;
    const struct bh_schema *s = schema("blockhub.view.BlockView");
    static const char *const depts[] = {"traffic", "fire"}; /* no market input */
    char err[256] = "";
    struct bh_jview_layout *l;
    assert_int_equal(bh_jview_layout_new(&l, s->schema, depts, 2, err, sizeof(err)), 0);

    struct bh_jview_type fire_types[] = {{"alarm", 5, 3}, {"drill", 5, 1}};
    struct bh_jview_dept d[2] = {
        {0}, /* traffic: nothing yet */
        {.total = 4,
         .window_total = 2,
         .types = fire_types,
         .ntypes = 2,
         .last_id = "F-9",
         .last_id_len = 3,
         .last_at = 1795738500000LL},
    };
    struct bh_jview v = {.block_id = "440303-017",
                         .block_id_len = 10,
                         .block_name = "黄贝街道第17网格",
                         .updated_at = 1795738600000LL,
                         .window_ms = 3600000,
                         .depts = d};
    struct bh_jbuf b = {0};
    bh_jbuf_header(&b, s->fingerprint);
    bh_jview_encode(l, &v, &b);
    avro_value_t rec, sub, m, x;
    decode("blockhub.view.BlockView", &b, &rec);
    assert_string_equal(get_string(&rec, "block_id"), "440303-017");
    assert_string_equal(get_string(&rec, "block_name"), "黄贝街道第17网格");
    assert_int_equal(get_long(&rec, "updated_at"), 1795738600000LL);
    assert_int_equal(get_long(&rec, "window_ms"), 3600000);
    get(&rec, "fire", &sub);
    assert_int_equal(get_long(&sub, "total"), 4);
    assert_int_equal(get_long(&sub, "window_total"), 2);
    assert_string_equal(get_string(&sub, "last_event_id"), "F-9");
    get(&sub, "last_event_at", &x);
    avro_value_get_current_branch(&x, &x);
    int64_t at;
    assert_int_equal(avro_value_get_long(&x, &at), 0);
    assert_int_equal(at, 1795738500000LL);
    get(&sub, "by_type", &m);
    size_t n;
    assert_int_equal(avro_value_get_size(&m, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(avro_value_get_by_name(&m, "alarm", &x, NULL), 0);
    assert_int_equal(avro_value_get_long(&x, &at), 0);
    assert_int_equal(at, 3);
    for (int i = 0; i < 2; i++) {
        get(&rec, i ? "market" : "traffic", &sub);
        assert_int_equal(get_long(&sub, "total"), 0);
        assert_int_equal(get_long(&sub, "window_total"), 0);
        assert_null(get_string(&sub, "last_event_id"));
        get(&sub, "by_type", &m);
        assert_int_equal(avro_value_get_size(&m, &n), 0);
        assert_int_equal(n, 0);
    }
    avro_value_decref(&rec);

    /* an unknown block: no name */
    v.block_name = NULL;
    bh_jbuf_reset(&b);
    bh_jbuf_header(&b, s->fingerprint);
    bh_jview_encode(l, &v, &b);
    decode("blockhub.view.BlockView", &b, &rec);
    assert_null(get_string(&rec, "block_name"));
    avro_value_decref(&rec);
    bh_jbuf_free(&b);
    bh_jview_layout_free(l);

    /* a department the schema has no field for is refused, by name */
    static const char *const wrong[] = {"fire", "police"};
    assert_int_equal(bh_jview_layout_new(&l, s->schema, wrong, 2, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "'police'"));
    /* a schema that is not a view is refused */
    assert_int_equal(bh_jview_layout_new(&l, schema("blockhub.fire.FireEvent")->schema, depts, 2,
                                         err, sizeof(err)),
                     -EINVAL);
}

/* ---- the changelog records against their schemas ---- */

struct captured {
    struct bh_jbuf rec[8];
    char key[8][64];
    int tomb[8];
    size_t n;
};

static int
capture(void *ctx, const void *key, size_t keylen, const void *value, size_t len)
{
    struct captured *c = ctx;
    assert_true(c->n < 8 && keylen < 64);
    memcpy(c->key[c->n], key, keylen);
    c->key[c->n][keylen] = '\0';
    c->tomb[c->n] = value == NULL;
    if (value != NULL)
        bh_jbuf_raw(&c->rec[c->n], value, len);
    c->n++;
    return 0;
}

static void
test_changelog_schemas(void **state)
{
    (void)state;
    static const char *const depts[] = {"fire", "traffic"};
    struct bh_jtypes *types;
    struct bh_jstate *st;
    struct bh_jstore *store;
    char err[200];
    assert_int_equal(bh_jtypes_new(&types, 2), 0);
    struct bh_jstore_conf sc = {.nparts = 1, .ndepts = 2, .depts = depts, .identity = "test"};
    assert_int_equal(bh_jstore_open(&store, &sc, err, sizeof(err)), 0);
    struct bh_jstate_conf conf = {
        .ndepts = 2,
        .depts = depts,
        .types = types,
        .window_ms = 1000,
        .retention_ms = 100000,
        .state_fp = schema("blockhub.view.BlockState")->fingerprint,
        .batch_fp = schema("blockhub.view.DedupBatch")->fingerprint,
        .store = store,
    };
    assert_int_equal(bh_jstate_new(&st, &conf), 0);
    uint32_t alarm, drill;
    assert_int_equal(bh_jtypes_intern(types, 0, "alarm", 5, &alarm), 0);
    assert_int_equal(bh_jtypes_intern(types, 0, "drill", 5, &drill), 0);
    struct bh_jblock *b = bh_jstate_block(st, "440303-017", 10, 1);
    char id[16];
    for (int i = 0; i < BH_JSTATE_RECENT; i++) {
        snprintf(id, sizeof(id), "F-%d", i);
        assert_int_equal(
            bh_jstate_apply(st, b, 0, id, strlen(id), i % 3 ? alarm : drill, 5000 + i, 700 + i), 1);
    }
    struct captured c = {0};
    struct bh_jbuf buf = {0}, key = {0};
    struct bh_jstore_batch *sb = bh_jstore_batch_new(store);
    bh_jstate_set_batch(st, sb);
    assert_int_equal(bh_jstate_write(st, b, &buf, &key, capture, &c), 0);
    /* 16 recent events make a batch */
    assert_int_equal(c.n, 2);
    assert_string_equal(c.key[0], "440303-017\x1f"
                                  "fire\x1f"
                                  "0");
    assert_string_equal(c.key[1], "440303-017");
    assert_int_equal(bh_jstate_apply(st, b, 0, "F-x", 3, alarm, 4000, 800), 1);
    assert_int_equal(bh_jstate_write(st, b, &buf, &key, capture, &c), 0);
    bh_jstate_set_batch(st, NULL);
    bh_jstore_batch_free(sb);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.key[2], "440303-017");

    avro_value_t rec, arr, item, m, x, recent;
    size_t n;
    decode("blockhub.view.DedupBatch", &c.rec[0], &rec);
    assert_string_equal(get_string(&rec, "block_id"), "440303-017");
    assert_string_equal(get_string(&rec, "department"), "fire");
    assert_int_equal(get_long(&rec, "seq"), 0);
    get(&rec, "events", &arr);
    assert_int_equal(avro_value_get_size(&arr, &n), 0);
    assert_int_equal(n, BH_JSTATE_RECENT);
    assert_int_equal(avro_value_get_by_index(&arr, 2, &item, NULL), 0);
    assert_int_equal((uint64_t)get_long(&item, "id_hash"), bh_jstate_hash("F-2", 3));
    assert_int_equal(get_long(&item, "at"), 5002);
    avro_value_decref(&rec);

    decode("blockhub.view.BlockState", &c.rec[2], &rec);
    assert_string_equal(get_string(&rec, "block_id"), "440303-017");
    assert_int_equal(get_long(&rec, "updated_at"), 800);
    get(&rec, "departments", &arr);
    assert_int_equal(avro_value_get_size(&arr, &n), 0);
    assert_int_equal(n, 1); /* traffic has no event: left out */
    assert_int_equal(avro_value_get_by_index(&arr, 0, &item, NULL), 0);
    assert_string_equal(get_string(&item, "department"), "fire");
    assert_int_equal(get_long(&item, "total"), BH_JSTATE_RECENT + 1);
    assert_int_equal(get_long(&item, "newest_at"), 5000 + BH_JSTATE_RECENT - 1);
    snprintf(id, sizeof(id), "F-%d", BH_JSTATE_RECENT - 1);
    assert_string_equal(get_string(&item, "last_event_id"), id);
    assert_int_equal(get_long(&item, "last_event_at"), 5000 + BH_JSTATE_RECENT - 1);
    assert_int_equal(get_long(&item, "next_batch"), 1);
    get(&item, "by_type", &m);
    assert_int_equal(avro_value_get_size(&m, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(avro_value_get_by_name(&m, "alarm", &x, NULL), 0);
    int64_t cnt;
    assert_int_equal(avro_value_get_long(&x, &cnt), 0);
    assert_int_equal(cnt, 11);
    get(&item, "recent", &recent);
    assert_int_equal(avro_value_get_size(&recent, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(avro_value_get_by_index(&recent, 0, &x, NULL), 0);
    assert_int_equal((uint64_t)get_long(&x, "id_hash"), bh_jstate_hash("F-x", 3));
    assert_int_equal(get_long(&x, "at"), 4000);
    /* the window: 5000 to 5015 (4000 is a window older than the newest): 5000, then +1s */
    avro_value_t win;
    get(&item, "window", &win);
    assert_int_equal(avro_value_get_size(&win, &n), 0);
    assert_int_equal(n, BH_JSTATE_RECENT);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(avro_value_get_by_index(&win, i, &x, NULL), 0);
        assert_int_equal(avro_value_get_long(&x, &cnt), 0);
        assert_int_equal(cnt, i == 0 ? 5000 : 1);
    }
    avro_value_decref(&rec);

    for (size_t i = 0; i < 8; i++)
        bh_jbuf_free(&c.rec[i]);
    bh_jbuf_free(&buf);
    bh_jbuf_free(&key);
    bh_jstate_free(st);
    bh_jstore_close(store);
    bh_jtypes_free(types);
}

static void
test_buffer_varints(void **state)
{
    (void)state;
    static const int64_t values[] = {0,         -1,        1,         63,       -64,
                                     64,        -65,       8191,      -8192,    1LL << 40,
                                     INT64_MAX, INT64_MIN, 123456789, -98765432};
    struct bh_jbuf b = {0};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        bh_jbuf_long(&b, values[i]);
    bh_jbuf_string(&b, "héllo", strlen("héllo"));
    struct bh_jreader r = {b.p, b.p + b.len, 0};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        assert_true(bh_jread_long(&r) == values[i]);
    const char *s;
    size_t n;
    bh_jread_string(&r, &s, &n);
    assert_int_equal(n, strlen("héllo"));
    assert_memory_equal(s, "héllo", n);
    assert_false(r.bad);
    assert_true(r.p == r.end);
    bh_jread_long(&r);
    assert_true(r.bad);
    /* avro-c agrees on the bytes of a long */
    char out[16];
    avro_writer_t w = avro_writer_memory(out, sizeof(out));
    avro_schema_t ls = avro_schema_long();
    avro_value_iface_t *li = avro_generic_class_from_schema(ls);
    avro_value_t v;
    avro_generic_value_new(li, &v);
    avro_value_set_long(&v, INT64_MIN);
    avro_value_write(w, &v);
    bh_jbuf_reset(&b);
    bh_jbuf_long(&b, INT64_MIN);
    assert_int_equal((size_t)avro_writer_tell(w), b.len);
    assert_memory_equal(out, b.p, b.len);
    avro_value_decref(&v);
    avro_value_iface_decref(li);
    avro_schema_decref(ls);
    avro_writer_free(w);
    bh_jbuf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_fire_event),       cmocka_unit_test(test_plan_extras),
        cmocka_unit_test(test_plan_skips_everything), cmocka_unit_test(test_plan_reader_defaults),
        cmocka_unit_test(test_view_encoding),         cmocka_unit_test(test_changelog_schemas),
        cmocka_unit_test(test_buffer_varints),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
