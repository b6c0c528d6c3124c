#include "event.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_write.h"
#include "decimal.h"

/* The fields the writer knows, and the shape each must have in the schema. */
enum field {
    F_RECORD_ID,
    F_BLOCK_ID,
    F_USCC,
    F_NAME,
    F_TYPE,
    F_OUTCOME,
    F_FINE,
    F_ADDRESS,
    F_GRID,
    F_LOCATION,
    F_OCCURRED,
    F_FILE,
    F_ROW,
    F_LINE,
    NFIELD
};
enum shape { STRING, OPT_STRING, OPT_BYTES, OPT_POINT, LONG };

static const struct {
    const char *name;
    enum shape shape;
} fields[NFIELD] = {
    [F_RECORD_ID] = {"record_id", STRING}, [F_BLOCK_ID] = {"block_id", STRING},
    [F_USCC] = {"uscc", STRING},           [F_NAME] = {"business_name", STRING},
    [F_TYPE] = {"event_type", STRING},     [F_OUTCOME] = {"outcome", STRING},
    [F_FINE] = {"fine", OPT_BYTES},        [F_ADDRESS] = {"address", OPT_STRING},
    [F_GRID] = {"grid_code", OPT_STRING},  [F_LOCATION] = {"location", OPT_POINT},
    [F_OCCURRED] = {"occurred_at", LONG},  [F_FILE] = {"source_file", STRING},
    [F_ROW] = {"source_row", LONG},        [F_LINE] = {"source_line", LONG},
};

struct bh_market_writer {
    enum field plan[NFIELD]; /* the schema's fields in order */
    size_t nplan;
    int lat_first; /* the point record lists lat before lon */
    unsigned char header[16];
    size_t hlen;
    unsigned char *buf;
    size_t cap;
};

static const struct bh_text *
text_of(const struct bh_market_event *ev, enum field f)
{
    switch (f) {
    case F_RECORD_ID:
        return &ev->record_id;
    case F_BLOCK_ID:
        return &ev->block_id;
    case F_USCC:
        return &ev->uscc;
    case F_NAME:
        return &ev->business_name;
    case F_TYPE:
        return &ev->event_type;
    case F_OUTCOME:
        return &ev->outcome;
    case F_ADDRESS:
        return &ev->address;
    case F_GRID:
        return &ev->grid_code;
    case F_FILE:
        return &ev->source_file;
    default:
        return NULL;
    }
}

static int64_t
long_of(const struct bh_market_event *ev, enum field f)
{
    return f == F_OCCURRED ? ev->occurred_at : f == F_ROW ? ev->source_row : ev->source_line;
}

/* The Avro body of EV at P (room checked by the caller); returns its end. */
static unsigned char *
write_body(const struct bh_market_writer *w, const struct bh_market_event *ev, unsigned char *p)
{
    unsigned char fine[8];
    for (size_t i = 0; i < w->nplan; i++) {
        enum field f = w->plan[i];
        switch (fields[f].shape) {
        case STRING:
            p = bh_avro_put_bytes(p, text_of(ev, f)->s, text_of(ev, f)->len);
            break;
        case OPT_STRING:
            p = bh_avro_put_opt_bytes(p, text_of(ev, f)->s, text_of(ev, f)->len);
            break;
        case OPT_BYTES:
            p = bh_avro_put_long(p, ev->has_fine);
            if (ev->has_fine)
                p = bh_avro_put_bytes(p, fine, bh_market_decimal_to_bytes(ev->fine_fen, fine));
            break;
        case OPT_POINT:
            p = bh_avro_put_long(p, ev->has_location);
            if (ev->has_location) {
                p = bh_avro_put_double(p, w->lat_first ? ev->lat : ev->lon);
                p = bh_avro_put_double(p, w->lat_first ? ev->lon : ev->lat);
            }
            break;
        case LONG:
            p = bh_avro_put_long(p, long_of(ev, f));
            break;
        }
    }
    return p;
}

int
bh_market_writer_encode(struct bh_market_writer *w, const struct bh_market_event *ev,
                        const void **data, size_t *len)
{
    /* Every field at most a 10-byte varint (or a union index and two doubles) plus its text. */
    size_t need = w->hlen + NFIELD * 20;
    for (int f = 0; f < NFIELD; f++)
        if (text_of(ev, (enum field)f) != NULL)
            need += text_of(ev, (enum field)f)->len;
    if (need > w->cap) {
        unsigned char *b = realloc(w->buf, need * 2);
        if (b == NULL)
            return -ENOMEM;
        w->buf = b;
        w->cap = need * 2;
    }
    memcpy(w->buf, w->header, w->hlen);
    unsigned char *end = write_body(w, ev, w->buf + w->hlen);
    *data = w->buf;
    *len = (size_t)(end - w->buf);
    return 0;
}

/* --- checking the schema and the bytes at start ---------------------------- */

static int
is_opt(avro_schema_t s, avro_schema_t *branch)
{
    if (!is_avro_union(s) || avro_schema_union_size(s) != 2 ||
        !is_avro_null(avro_schema_union_branch(s, 0)))
        return 0;
    *branch = avro_schema_union_branch(s, 1);
    return 1;
}

static int
shape_ok(struct bh_market_writer *w, avro_schema_t s, enum shape shape)
{
    avro_schema_t b;
    switch (shape) {
    case STRING:
        return is_avro_string(s);
    case LONG:
        return is_avro_int64(s);
    case OPT_STRING:
        return is_opt(s, &b) && is_avro_string(b);
    case OPT_BYTES:
        return is_opt(s, &b) && is_avro_bytes(b);
    case OPT_POINT:
        if (!is_opt(s, &b) || !is_avro_record(b) || avro_schema_record_size(b) != 2 ||
            !is_avro_double(avro_schema_record_field_get_by_index(b, 0)) ||
            !is_avro_double(avro_schema_record_field_get_by_index(b, 1)))
            return 0;
        w->lat_first = strcmp(avro_schema_record_field_name(b, 0), "lat") == 0;
        return strcmp(avro_schema_record_field_name(b, w->lat_first), "lon") == 0 &&
               strcmp(avro_schema_record_field_name(b, !w->lat_first), "lat") == 0;
    }
    return 0;
}

static int
make_plan(struct bh_market_writer *w, const struct bh_schema *s, char *errstr, size_t n)
{
    size_t count = avro_schema_record_size(s->schema);
    if (count > NFIELD) {
        snprintf(errstr, n, "%s has %zu fields; the market writer knows %d", s->name, count,
                 NFIELD);
        return -EINVAL;
    }
    for (size_t i = 0; i < count; i++) {
        const char *name = avro_schema_record_field_name(s->schema, (int)i);
        avro_schema_t fs = avro_schema_record_field_get_by_index(s->schema, (int)i);
        int f = 0;
        while (f < NFIELD && strcmp(fields[f].name, name) != 0)
            f++;
        if (f == NFIELD || !shape_ok(w, fs, fields[f].shape)) {
            snprintf(errstr, n, "%s: field '%s' is %s", s->name, name,
                     f == NFIELD ? "unknown to the market writer" : "not of the expected type");
            return -EINVAL;
        }
        w->plan[w->nplan++] = (enum field)f;
    }
    return 0;
}

/* A value of S with every union null, every string empty, every number 0. */
static int
fill_empty(avro_value_t *rec)
{
    size_t n = 0;
    if (avro_value_get_size(rec, &n) != 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        avro_value_t f, b;
        if (avro_value_get_by_index(rec, i, &f, NULL) != 0)
            return -EINVAL;
        int rc;
        switch (avro_value_get_type(&f)) {
        case AVRO_UNION:
            rc = avro_value_set_branch(&f, 0, &b) ?: avro_value_set_null(&b);
            break;
        case AVRO_STRING:
            rc = avro_value_set_string_len(&f, "", 1);
            break;
        default:
            rc = avro_value_set_long(&f, 0);
            break;
        }
        if (rc != 0)
            return -EINVAL;
    }
    return 0;
}

/*
 * The framing header, from what bh_encode writes for the empty event; then a
 * full event must survive avro-c's decode and re-encode byte for byte.
 */
static int
check_bytes(struct bh_market_writer *w, const struct bh_schemas *set, const struct bh_schema *s,
            struct bh_encoder *enc, char *errstr, size_t n)
{
    avro_value_t rec = {0}, back = {0};
    const void *data;
    size_t len, body;
    unsigned char mine[512];
    int rc = -EINVAL;
    struct bh_market_event ev = {.record_id = {"", 0},
                                 .block_id = {"", 0},
                                 .uscc = {"", 0},
                                 .business_name = {"", 0},
                                 .event_type = {"", 0},
                                 .outcome = {"", 0},
                                 .source_file = {"", 0}};
    if (avro_generic_value_new(s->iface, &rec) != 0 || fill_empty(&rec) < 0 ||
        bh_encode(enc, s, &rec, &data, &len) < 0)
        goto out;
    body = (size_t)(write_body(w, &ev, mine) - mine);
    if (bh_avro_write_split(data, len, mine, body, w->header, sizeof(w->header), &w->hlen) < 0)
        goto out;

    static const char name[] = "深圳市\"老字号\",百货有限公司";
    ev = (struct bh_market_event){.record_id = {"SCJG-2026-000007", 16},
                                  .block_id = {"440303-094", 10},
                                  .uscc = {"91350100M000100Y43", 18},
                                  .business_name = {name, sizeof(name) - 1},
                                  .event_type = {"行政处罚", 12},
                                  .outcome = {"罚款", 6},
                                  .address = {"A\n二楼", 8},
                                  .grid_code = {"440303-094", 10},
                                  .source_file = {"x.csv", 5},
                                  .has_fine = 1,
                                  .has_location = 1,
                                  .fine_fen = 99999999999999LL,
                                  .lon = 114.139745,
                                  .lat = -22.5,
                                  .occurred_at = 1795741387000LL,
                                  .source_row = 300,
                                  .source_line = -1};
    const void *fast;
    size_t flen;
    const struct bh_schema *found;
    if (bh_market_writer_encode(w, &ev, &fast, &flen) < 0 ||
        bh_decode(set, w->header[0] == 0 ? BH_FRAMING_CONFLUENT : BH_FRAMING_SINGLE_OBJECT, fast,
                  flen, &found, &back) < 0 ||
        found != s || bh_encode(enc, s, &back, &data, &len) < 0 || len != flen ||
        memcmp(data, fast, len) != 0)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        snprintf(errstr, n, "%s: the market writer's bytes differ from avro-c's", s->name);
    if (rec.iface != NULL)
        avro_value_decref(&rec);
    if (back.iface != NULL)
        avro_value_decref(&back);
    return rc;
}

int
bh_market_writer_new(struct bh_market_writer **out, const struct bh_schemas *set,
                     const struct bh_schema *s, struct bh_encoder *enc, char *errstr,
                     size_t errstr_size)
{
    struct bh_market_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    int rc = make_plan(w, s, errstr, errstr_size);
    if (rc == 0)
        rc = check_bytes(w, set, s, enc, errstr, errstr_size);
    if (rc < 0) {
        bh_market_writer_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void
bh_market_writer_free(struct bh_market_writer *w)
{
    if (w == NULL)
        return;
    free(w->buf);
    free(w);
}
