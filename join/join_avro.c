#include "join_avro.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

#define MAX_DEPTH 64

/* --- output ---------------------------------------------------------------- */

int
bh_jbuf_reserve(struct bh_jbuf *b, size_t more)
{
    if (b->oom)
        return -ENOMEM;
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = 1;
        return -ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void
bh_jbuf_reset(struct bh_jbuf *b)
{
    b->len = 0;
    b->oom = 0;
}

void
bh_jbuf_free(struct bh_jbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void
bh_jbuf_raw(struct bh_jbuf *b, const void *s, size_t len)
{
    if (len == 0 || bh_jbuf_reserve(b, len) < 0)
        return;
    memcpy(b->p + b->len, s, len);
    b->len += len;
}

void
bh_jbuf_header(struct bh_jbuf *b, uint64_t fp)
{
    if (bh_jbuf_reserve(b, BH_SINGLE_OBJECT_HEADER) < 0)
        return;
    uint8_t *p = b->p + b->len;
    p[0] = 0xC3;
    p[1] = 0x01;
    for (int i = 0; i < 8; i++)
        p[2 + i] = (uint8_t)(fp >> (8 * i));
    b->len += BH_SINGLE_OBJECT_HEADER;
}

void
bh_jbuf_string(struct bh_jbuf *b, const void *s, size_t len)
{
    bh_jbuf_long(b, (int64_t)len);
    bh_jbuf_raw(b, s, len);
}

/* --- input ----------------------------------------------------------------- */

int64_t
bh_jread_long(struct bh_jreader *r)
{
    uint64_t z = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) {
            r->bad = 1;
            return 0;
        }
        uint8_t c = *r->p++;
        z |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0)
            return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    }
    r->bad = 1;
    return 0;
}

void
bh_jread_string(struct bh_jreader *r, const char **s, size_t *len)
{
    int64_t n = bh_jread_long(r);
    if (r->bad || n < 0 || n > r->end - r->p) {
        r->bad = 1;
        *s = NULL;
        *len = 0;
        return;
    }
    *s = (const char *)r->p;
    *len = (size_t)n;
    r->p += n;
}

int
bh_jread_header(const void *data, size_t len, uint64_t *fp)
{
    const uint8_t *p = data;
    if (len < BH_SINGLE_OBJECT_HEADER || p[0] != 0xC3 || p[1] != 0x01)
        return -EBADMSG;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[2 + i] << (8 * i);
    *fp = v;
    return 0;
}

int
bh_jread_frame(const void *data, size_t len, uint64_t *fp, int32_t *id)
{
    const uint8_t *p = data;
    if (len >= BH_CONFLUENT_HEADER && p[0] == 0x00) {
        uint32_t v = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        if (v > INT32_MAX)
            return -EBADMSG;
        *id = (int32_t)v;
        *fp = 0;
        return BH_CONFLUENT_HEADER;
    }
    *id = -1;
    return bh_jread_header(data, len, fp) < 0 ? -EBADMSG : BH_SINGLE_OBJECT_HEADER;
}

void
bh_jbuf_confluent_header(struct bh_jbuf *b, int32_t id)
{
    if (bh_jbuf_reserve(b, BH_CONFLUENT_HEADER) < 0)
        return;
    uint8_t *p = b->p + b->len;
    p[0] = 0x00;
    for (int i = 0; i < 4; i++)
        p[1 + i] = (uint8_t)((uint32_t)id >> (24 - 8 * i));
    b->len += BH_CONFLUENT_HEADER;
}

/* --- skipping any Avro value ----------------------------------------------- */

enum kind {
    K_NULL,
    K_BOOL,
    K_VARINT, /* int, long, enum */
    K_FLOAT,
    K_DOUBLE,
    K_BYTES, /* bytes, string */
    K_FIXED,
    K_RECORD,
    K_UNION,
    K_ARRAY,
    K_MAP,
};

/* A schema node compiled for skipping; named types are shared (recursion). */
struct node {
    enum kind kind;
    int64_t size;       /* FIXED */
    size_t n;           /* RECORD fields, UNION branches */
    struct node **sub;  /* RECORD fields, UNION branches, ARRAY/MAP items */
    avro_schema_t from; /* for sharing named types */
};

enum op { OP_SKIP, OP_ID, OP_TYPE_STRING, OP_TYPE_ENUM, OP_TIME, OP_EXTRA };

struct step {
    enum op op;
    struct node *node; /* OP_SKIP; OP_EXTRA: to skip a value of an unexpected branch */
    int extra;         /* OP_EXTRA: its index */
};

/* How an extra field is read. */
enum xkind { X_NONE, X_STRING, X_UNION, X_ENUM, X_FROM_ID, X_FROM_TYPE };

struct xfield {
    enum xkind kind;
    int64_t branch; /* X_UNION: the string's branch (the other is null) */
    char **symbols; /* X_ENUM */
    size_t nsymbols;
};

struct bh_jplan {
    struct step *steps; /* up to and including the last field extracted */
    size_t nsteps;
    struct node **nodes; /* every node, for freeing */
    size_t nnodes, capnodes;
    char **symbols;
    size_t nsymbols;
    /* A field the writer lacks, taken from the reader schema's default: */
    char *def_id;   /* NULL: read */
    char *def_type; /* NULL: read */
    bool def_time;
    int64_t def_time_ms;
    struct xfield x[BH_JPLAN_EXTRAS];
    size_t nx;
};

static struct node *compile(struct bh_jplan *p, avro_schema_t s, int depth);

static struct node *
new_node(struct bh_jplan *p, enum kind k, avro_schema_t from)
{
    if (p->nnodes == p->capnodes) {
        size_t cap = p->capnodes ? p->capnodes * 2 : 16;
        struct node **v = realloc(p->nodes, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        p->nodes = v;
        p->capnodes = cap;
    }
    struct node *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->kind = k;
    n->from = from;
    p->nodes[p->nnodes++] = n;
    return n;
}

static struct node *
compile_children(struct bh_jplan *p, struct node *n, size_t count, avro_schema_t s, int depth)
{
    n->n = count;
    n->sub = calloc(count ? count : 1, sizeof(*n->sub));
    if (n->sub == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        avro_schema_t c = n->kind == K_RECORD ? avro_schema_record_field_get_by_index(s, (int)i)
                                              : avro_schema_union_branch(s, (int)i);
        n->sub[i] = compile(p, c, depth + 1);
        if (n->sub[i] == NULL)
            return NULL;
    }
    return n;
}

static struct node *
compile(struct bh_jplan *p, avro_schema_t s, int depth)
{
    if (s == NULL || depth > MAX_DEPTH)
        return NULL;
    if (is_avro_link(s))
        s = avro_schema_link_target(s);
    for (size_t i = 0; i < p->nnodes; i++)
        if (p->nodes[i]->from == s && is_avro_named_type(s))
            return p->nodes[i];
    struct node *n;
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return new_node(p, K_NULL, s);
    case AVRO_BOOLEAN:
        return new_node(p, K_BOOL, s);
    case AVRO_INT32:
    case AVRO_INT64:
    case AVRO_ENUM:
        return new_node(p, K_VARINT, s);
    case AVRO_FLOAT:
        return new_node(p, K_FLOAT, s);
    case AVRO_DOUBLE:
        return new_node(p, K_DOUBLE, s);
    case AVRO_STRING:
    case AVRO_BYTES:
        return new_node(p, K_BYTES, s);
    case AVRO_FIXED:
        n = new_node(p, K_FIXED, s);
        if (n != NULL)
            n->size = avro_schema_fixed_size(s);
        return n;
    case AVRO_RECORD:
        n = new_node(p, K_RECORD, s);
        return n ? compile_children(p, n, avro_schema_record_size(s), s, depth) : NULL;
    case AVRO_UNION:
        n = new_node(p, K_UNION, s);
        return n ? compile_children(p, n, avro_schema_union_size(s), s, depth) : NULL;
    case AVRO_ARRAY:
    case AVRO_MAP:
        n = new_node(p, avro_typeof(s) == AVRO_ARRAY ? K_ARRAY : K_MAP, s);
        if (n == NULL || (n->sub = calloc(1, sizeof(*n->sub))) == NULL)
            return NULL;
        n->n = 1;
        n->sub[0] = compile(p,
                            avro_typeof(s) == AVRO_ARRAY ? avro_schema_array_items(s)
                                                         : avro_schema_map_values(s),
                            depth + 1);
        return n->sub[0] ? n : NULL;
    default:
        return NULL;
    }
}

static void
advance(struct bh_jreader *r, int64_t n)
{
    if (n < 0 || n > r->end - r->p)
        r->bad = 1;
    else
        r->p += n;
}

static void
skip(const struct node *n, struct bh_jreader *r, int depth)
{
    if (depth > MAX_DEPTH) {
        r->bad = 1;
        return;
    }
    switch (n->kind) {
    case K_NULL:
        return;
    case K_BOOL:
        advance(r, 1);
        return;
    case K_VARINT:
        bh_jread_long(r);
        return;
    case K_FLOAT:
        advance(r, 4);
        return;
    case K_DOUBLE:
        advance(r, 8);
        return;
    case K_BYTES:
        advance(r, bh_jread_long(r));
        return;
    case K_FIXED:
        advance(r, n->size);
        return;
    case K_RECORD:
        for (size_t i = 0; i < n->n && !r->bad; i++)
            skip(n->sub[i], r, depth + 1);
        return;
    case K_UNION: {
        int64_t b = bh_jread_long(r);
        if (r->bad || b < 0 || (uint64_t)b >= n->n)
            r->bad = 1;
        else
            skip(n->sub[b], r, depth + 1);
        return;
    }
    case K_ARRAY:
    case K_MAP:
        for (;;) {
            int64_t count = bh_jread_long(r);
            if (r->bad || count == 0)
                return;
            if (count < 0) {
                /* A block with its size in bytes: jump over it. */
                advance(r, bh_jread_long(r));
                continue;
            }
            for (int64_t i = 0; i < count && !r->bad; i++) {
                if (n->kind == K_MAP)
                    advance(r, bh_jread_long(r));
                skip(n->sub[0], r, depth + 1);
            }
        }
    }
}

/* --- plans ----------------------------------------------------------------- */

void
bh_jplan_free(struct bh_jplan *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nnodes; i++) {
        free(p->nodes[i]->sub);
        free(p->nodes[i]);
    }
    for (size_t i = 0; i < p->nsymbols; i++)
        free(p->symbols[i]);
    free(p->symbols);
    for (size_t k = 0; k < p->nx; k++) {
        for (size_t i = 0; i < p->x[k].nsymbols; i++)
            free(p->x[k].symbols[i]);
        free(p->x[k].symbols);
    }
    free(p->nodes);
    free(p->steps);
    free(p->def_id);
    free(p->def_type);
    free(p);
}

static int
field_index(avro_schema_t record, const char *name, const char *role, char *errstr, size_t n)
{
    int i = avro_schema_record_field_get_index(record, name);
    if (i < 0)
        snprintf(errstr, n, "%s field '%s' is not in schema %s", role, name,
                 avro_schema_name(record));
    return i;
}

/*
 * The default the reader schema READER (JSON text) gives field NAME, as a
 * JSON value of type WANT; NULL when it has none. Free with json_decref.
 */
static json_t *
reader_default(const char *reader, const char *name, json_type want)
{
    json_t *root = reader != NULL ? json_loads(reader, 0, NULL) : NULL;
    json_t *fields = json_object_get(root, "fields"), *f, *out = NULL;
    size_t i;
    json_array_foreach(fields, i, f)
    {
        const char *fn = json_string_value(json_object_get(f, "name"));
        json_t *d = json_object_get(f, "default");
        if (fn != NULL && strcmp(fn, name) == 0 && d != NULL && json_typeof(d) == want)
            out = json_incref(d);
    }
    json_decref(root);
    return out;
}

/* Field NAME of the writer, or its default in the reader (IDX -1, *DEF set); -1 if neither. */
static int
field_or_default(avro_schema_t record, const char *reader, const char *name, const char *role,
                 json_type want, int *idx, json_t **def, char *errstr, size_t n)
{
    *idx = avro_schema_record_field_get_index(record, name);
    if (*idx >= 0)
        return 0;
    if ((*def = reader_default(reader, name, want)) != NULL)
        return 0;
    field_index(record, name, role, errstr, n);
    if (reader != NULL) {
        size_t len = strlen(errstr);
        snprintf(errstr + len, n - len, ", and the reader schema gives it no default");
    }
    return -1;
}

int
bh_jplan_new(struct bh_jplan **out, avro_schema_t record, const char *id_field,
             const char *type_field, const char *time_field, char *errstr, size_t errstr_size)
{
    return bh_jplan_new_resolved(out, record, NULL, id_field, type_field, time_field, errstr,
                                 errstr_size);
}

int
bh_jplan_new_resolved(struct bh_jplan **out, avro_schema_t record, const char *reader,
                      const char *id_field, const char *type_field, const char *time_field,
                      char *errstr, size_t errstr_size)
{
    int rc = -EINVAL;
    json_t *defs[3] = {NULL, NULL, NULL};
    struct bh_jplan *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    if (!is_avro_record(record)) {
        snprintf(errstr, errstr_size, "not a record schema");
        goto out;
    }
    int idx[3] = {-1, -1, -1};
    if (field_or_default(record, reader, id_field, "id", JSON_STRING, &idx[0], &defs[0], errstr,
                         errstr_size) < 0 ||
        field_or_default(record, reader, type_field, "type", JSON_STRING, &idx[1], &defs[1], errstr,
                         errstr_size) < 0 ||
        field_or_default(record, reader, time_field, "time", JSON_INTEGER, &idx[2], &defs[2],
                         errstr, errstr_size) < 0)
        goto out;
    rc = -ENOMEM;
    if (defs[0] != NULL && (p->def_id = strdup(json_string_value(defs[0]))) == NULL)
        goto out;
    if (defs[1] != NULL && (p->def_type = strdup(json_string_value(defs[1]))) == NULL)
        goto out;
    if (defs[2] != NULL) {
        p->def_time = true;
        p->def_time_ms = (int64_t)json_integer_value(defs[2]);
    }
    rc = -EINVAL;
    avro_schema_t id =
        idx[0] >= 0 ? avro_schema_record_field_get_by_index(record, idx[0]) : avro_schema_string();
    avro_schema_t type =
        idx[1] >= 0 ? avro_schema_record_field_get_by_index(record, idx[1]) : avro_schema_string();
    avro_schema_t time =
        idx[2] >= 0 ? avro_schema_record_field_get_by_index(record, idx[2]) : avro_schema_long();
    if (is_avro_link(type))
        type = avro_schema_link_target(type);
    if (!is_avro_string(id)) {
        snprintf(errstr, errstr_size, "id field '%s' of %s is not a string", id_field,
                 avro_schema_name(record));
        goto out;
    }
    if (!is_avro_string(type) && !is_avro_enum(type)) {
        snprintf(errstr, errstr_size, "type field '%s' of %s is neither a string nor an enum",
                 type_field, avro_schema_name(record));
        goto out;
    }
    if (!is_avro_int64(time)) {
        snprintf(errstr, errstr_size, "time field '%s' of %s is not a long", time_field,
                 avro_schema_name(record));
        goto out;
    }
    if (is_avro_enum(type)) {
        int ns = avro_schema_enum_number_of_symbols(type);
        p->symbols = calloc(ns > 0 ? (size_t)ns : 1, sizeof(*p->symbols));
        rc = -ENOMEM;
        if (p->symbols == NULL)
            goto out;
        for (int i = 0; i < ns; i++) {
            p->symbols[i] = strdup(avro_schema_enum_get(type, i));
            if (p->symbols[i] == NULL)
                goto out;
            p->nsymbols++;
        }
    }
    int last = idx[0] > idx[1] ? idx[0] : idx[1];
    last = last > idx[2] ? last : idx[2];
    p->nsteps = (size_t)(last + 1);
    p->steps = calloc(p->nsteps ? p->nsteps : 1, sizeof(*p->steps));
    rc = -ENOMEM;
    if (p->steps == NULL)
        goto out;
    for (size_t i = 0; i < p->nsteps; i++) {
        struct step *st = &p->steps[i];
        if ((int)i == idx[0]) {
            st->op = OP_ID;
        } else if ((int)i == idx[1]) {
            st->op = is_avro_enum(type) ? OP_TYPE_ENUM : OP_TYPE_STRING;
        } else if ((int)i == idx[2]) {
            st->op = OP_TIME;
        } else {
            st->op = OP_SKIP;
            st->node = compile(p, avro_schema_record_field_get_by_index(record, (int)i), 0);
            if (st->node == NULL) {
                snprintf(errstr, errstr_size, "field %zu of %s: schema not supported", i,
                         avro_schema_name(record));
                rc = -EINVAL;
                goto out;
            }
        }
    }
    *out = p;
    rc = 0;
    p = NULL;
out:
    for (int i = 0; i < 3; i++)
        json_decref(defs[i]);
    bh_jplan_free(p);
    return rc;
}

/* How field FS is read as text: X_NONE when it cannot be. */
static int
extra_kind(struct xfield *x, avro_schema_t fs)
{
    if (is_avro_link(fs))
        fs = avro_schema_link_target(fs);
    if (is_avro_string(fs)) {
        x->kind = X_STRING;
    } else if (is_avro_union(fs) && avro_schema_union_size(fs) == 2) {
        avro_schema_t a = avro_schema_union_branch(fs, 0), b = avro_schema_union_branch(fs, 1);
        if (is_avro_null(a) && is_avro_string(b))
            x->branch = 1;
        else if (is_avro_string(a) && is_avro_null(b))
            x->branch = 0;
        else
            return 0;
        x->kind = X_UNION;
    } else if (is_avro_enum(fs)) {
        int ns = avro_schema_enum_number_of_symbols(fs);
        x->symbols = calloc(ns > 0 ? (size_t)ns : 1, sizeof(*x->symbols));
        if (x->symbols == NULL)
            return -ENOMEM;
        for (int i = 0; i < ns; i++) {
            if ((x->symbols[i] = strdup(avro_schema_enum_get(fs, i))) == NULL)
                return -ENOMEM;
            x->nsymbols++;
        }
        x->kind = X_ENUM;
    }
    return 0;
}

int
bh_jplan_set_extras(struct bh_jplan *p, avro_schema_t record, const char *const *names, size_t n)
{
    if (n > BH_JPLAN_EXTRAS - p->nx)
        return -E2BIG;
    for (size_t k = 0; k < n; k++) {
        struct xfield *x = &p->x[p->nx++];
        memset(x, 0, sizeof(*x));
        int idx = avro_schema_record_field_get_index(record, names[k]);
        if (idx < 0)
            continue; /* the writer has no such field: always absent */
        if ((size_t)idx < p->nsteps && p->steps[idx].op != OP_SKIP) {
            /* the id or the type, read already (the time is not text) */
            x->kind = p->steps[idx].op == OP_ID ? X_FROM_ID
                      : p->steps[idx].op == OP_TYPE_STRING || p->steps[idx].op == OP_TYPE_ENUM
                          ? X_FROM_TYPE
                          : X_NONE;
            continue;
        }
        avro_schema_t fs = avro_schema_record_field_get_by_index(record, idx);
        if (extra_kind(x, fs) < 0)
            return -ENOMEM;
        if (x->kind == X_NONE)
            continue;
        if ((size_t)idx >= p->nsteps) {
            /* the plan reads on to this field: the ones between are skipped */
            struct step *st = realloc(p->steps, (size_t)(idx + 1) * sizeof(*st));
            if (st == NULL)
                return -ENOMEM;
            p->steps = st;
            for (size_t i = p->nsteps; i <= (size_t)idx; i++) {
                st[i] = (struct step){.op = OP_SKIP, .node = NULL, .extra = -1};
                st[i].node = compile(p, avro_schema_record_field_get_by_index(record, (int)i), 0);
                if (st[i].node == NULL)
                    return -ENOMEM;
            }
            p->nsteps = (size_t)idx + 1;
        }
        p->steps[idx].op = OP_EXTRA;
        p->steps[idx].extra = (int)k;
    }
    return 0;
}

static void
read_extra(const struct xfield *x, struct bh_jreader *r, const char **out, size_t *len)
{
    switch (x->kind) {
    case X_STRING:
        bh_jread_string(r, out, len);
        return;
    case X_UNION: {
        int64_t b = bh_jread_long(r);
        if (r->bad || (b != 0 && b != 1))
            r->bad = 1;
        else if (b == x->branch)
            bh_jread_string(r, out, len);
        return;
    }
    case X_ENUM: {
        int64_t s = bh_jread_long(r);
        if (r->bad || s < 0 || (uint64_t)s >= x->nsymbols) {
            r->bad = 1;
            return;
        }
        *out = x->symbols[s];
        *len = strlen(*out);
        return;
    }
    default:
        r->bad = 1; /* not reached: such a field is skipped */
        return;
    }
}

size_t
bh_jplan_symbols(const struct bh_jplan *p)
{
    return p->nsymbols;
}

const char *
bh_jplan_symbol(const struct bh_jplan *p, size_t i)
{
    return i < p->nsymbols ? p->symbols[i] : NULL;
}

int
bh_jplan_read(const struct bh_jplan *p, const void *body, size_t len, struct bh_jfields *f)
{
    struct bh_jreader r = {body, (const uint8_t *)body + len, 0};
    memset(f, 0, sizeof(*f));
    f->type_symbol = -1;
    for (size_t i = 0; i < p->nsteps && !r.bad; i++) {
        const struct step *st = &p->steps[i];
        switch (st->op) {
        case OP_SKIP:
            skip(st->node, &r, 0);
            break;
        case OP_ID:
            bh_jread_string(&r, &f->id, &f->id_len);
            break;
        case OP_TYPE_STRING:
            bh_jread_string(&r, &f->type, &f->type_len);
            break;
        case OP_TYPE_ENUM: {
            int64_t s = bh_jread_long(&r);
            if (r.bad || s < 0 || (uint64_t)s >= p->nsymbols) {
                r.bad = 1;
                break;
            }
            f->type_symbol = (int32_t)s;
            f->type = p->symbols[s];
            f->type_len = strlen(f->type);
            break;
        }
        case OP_TIME:
            f->at = bh_jread_long(&r);
            break;
        case OP_EXTRA:
            read_extra(&p->x[st->extra], &r, &f->extra[st->extra], &f->extra_len[st->extra]);
            break;
        }
    }
    if (p->def_id != NULL) {
        f->id = p->def_id;
        f->id_len = strlen(p->def_id);
    }
    if (p->def_type != NULL) {
        f->type = p->def_type;
        f->type_len = strlen(p->def_type);
        f->type_symbol = -1;
    }
    if (p->def_time)
        f->at = p->def_time_ms;
    for (size_t k = 0; k < p->nx; k++) {
        if (p->x[k].kind == X_FROM_ID) {
            f->extra[k] = f->id;
            f->extra_len[k] = f->id_len;
        } else if (p->x[k].kind == X_FROM_TYPE) {
            f->extra[k] = f->type;
            f->extra_len[k] = f->type_len;
        }
    }
    /* Avro strings are UTF-8; the id and the type go on into the view. */
    if (!r.bad && (!bh_utf8_valid(f->id, f->id_len) ||
                   (f->type_symbol < 0 && !bh_utf8_valid(f->type, f->type_len))))
        r.bad = 1;
    return r.bad ? -EBADMSG : 0;
}

/* --- the view layout ------------------------------------------------------- */

enum vop {
    V_BLOCK_ID,
    V_BLOCK_NAME,
    V_UPDATED_AT,
    V_WINDOW_MS,
    V_DEPT,
};

enum dop {
    D_TOTAL,
    D_BY_TYPE,
    D_WINDOW_TOTAL,
    D_LAST_ID,
    D_LAST_AT,
};

struct vfield {
    enum vop op;
    int null_branch; /* unions: the index of "null" (the other branch is 1 - it) */
    int dept;        /* V_DEPT: index into the configured departments, -1 if none */
    const char *name;
};

struct dfield {
    enum dop op;
    int null_branch;
};

struct bh_jview_layout {
    struct vfield *fields;
    size_t nfields;
    struct dfield dfields[5];
    size_t ndfields;
};

void
bh_jview_layout_free(struct bh_jview_layout *l)
{
    if (l == NULL)
        return;
    free(l->fields);
    free(l);
}

static avro_schema_t
deref(avro_schema_t s)
{
    return is_avro_link(s) ? avro_schema_link_target(s) : s;
}

/* ["null", T] or [T, "null"] with T of type WANT: the index of null, else -1. */
static int
nullable(avro_schema_t s, avro_type_t want)
{
    s = deref(s);
    if (!is_avro_union(s) || avro_schema_union_size(s) != 2)
        return -1;
    avro_schema_t a = avro_schema_union_branch(s, 0), b = avro_schema_union_branch(s, 1);
    if (is_avro_null(a) && avro_typeof(b) == want)
        return 0;
    if (is_avro_null(b) && avro_typeof(a) == want)
        return 1;
    return -1;
}

static int
dept_layout(struct bh_jview_layout *l, avro_schema_t rec, const char *fname, char *errstr, size_t n)
{
    static const char *const names[] = {"total", "by_type", "window_total", "last_event_id",
                                        "last_event_at"};
    size_t nf = avro_schema_record_size(rec);
    if (nf != 5) {
        snprintf(errstr, n, "department field '%s': expected the 5 fields %s, %s, %s, %s, %s",
                 fname, names[0], names[1], names[2], names[3], names[4]);
        return -EINVAL;
    }
    for (size_t i = 0; i < nf; i++) {
        const char *name = avro_schema_record_field_name(rec, (int)i);
        avro_schema_t t = deref(avro_schema_record_field_get_by_index(rec, (int)i));
        struct dfield d = {.null_branch = -1};
        int ok = 0;
        if (strcmp(name, "total") == 0) {
            d.op = D_TOTAL;
            ok = is_avro_int64(t);
        } else if (strcmp(name, "by_type") == 0) {
            d.op = D_BY_TYPE;
            ok = is_avro_map(t) && is_avro_int64(deref(avro_schema_map_values(t)));
        } else if (strcmp(name, "window_total") == 0) {
            d.op = D_WINDOW_TOTAL;
            ok = is_avro_int64(t);
        } else if (strcmp(name, "last_event_id") == 0) {
            d.op = D_LAST_ID;
            ok = (d.null_branch = nullable(t, AVRO_STRING)) >= 0;
        } else if (strcmp(name, "last_event_at") == 0) {
            d.op = D_LAST_AT;
            ok = (d.null_branch = nullable(t, AVRO_INT64)) >= 0;
        }
        if (!ok) {
            snprintf(errstr, n, "department field '%s': field '%s' is unknown or of the wrong type",
                     fname, name);
            return -EINVAL;
        }
        if (l->ndfields == 0 || i >= l->ndfields) {
            l->dfields[i] = d;
        } else if (l->dfields[i].op != d.op || l->dfields[i].null_branch != d.null_branch) {
            snprintf(errstr, n, "department field '%s' differs from the others", fname);
            return -EINVAL;
        }
    }
    l->ndfields = nf;
    return 0;
}

int
bh_jview_layout_new(struct bh_jview_layout **out, avro_schema_t view, const char *const *depts,
                    size_t ndepts, char *errstr, size_t errstr_size)
{
    int rc = -EINVAL;
    struct bh_jview_layout *l = calloc(1, sizeof(*l));
    int *seen = calloc(ndepts ? ndepts : 1, sizeof(*seen));
    if (l == NULL || seen == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    view = deref(view);
    if (!is_avro_record(view)) {
        snprintf(errstr, errstr_size, "the view schema is not a record");
        goto out;
    }
    l->nfields = avro_schema_record_size(view);
    l->fields = calloc(l->nfields ? l->nfields : 1, sizeof(*l->fields));
    if (l->fields == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    int have_id = 0;
    for (size_t i = 0; i < l->nfields; i++) {
        const char *name = avro_schema_record_field_name(view, (int)i);
        avro_schema_t t = deref(avro_schema_record_field_get_by_index(view, (int)i));
        struct vfield *f = &l->fields[i];
        int ok = 0;
        f->null_branch = -1;
        f->dept = -1;
        f->name = name; /* owned by the schema, which outlives the layout */
        if (strcmp(name, "block_id") == 0) {
            f->op = V_BLOCK_ID;
            ok = is_avro_string(t);
            have_id = ok;
        } else if (strcmp(name, "block_name") == 0) {
            f->op = V_BLOCK_NAME;
            ok = (f->null_branch = nullable(t, AVRO_STRING)) >= 0;
        } else if (strcmp(name, "updated_at") == 0) {
            f->op = V_UPDATED_AT;
            ok = is_avro_int64(t);
        } else if (strcmp(name, "window_ms") == 0) {
            f->op = V_WINDOW_MS;
            ok = is_avro_int64(t);
        } else if (is_avro_record(t)) {
            f->op = V_DEPT;
            rc = dept_layout(l, t, name, errstr, errstr_size);
            if (rc < 0)
                goto out;
            for (size_t d = 0; d < ndepts; d++) {
                if (strcmp(depts[d], name) == 0) {
                    f->dept = (int)d;
                    seen[d] = 1;
                }
            }
            ok = 1;
        }
        if (!ok) {
            snprintf(errstr, errstr_size, "view schema field '%s' is unknown or of the wrong type",
                     name);
            rc = -EINVAL;
            goto out;
        }
    }
    if (!have_id) {
        snprintf(errstr, errstr_size, "the view schema has no string field block_id");
        rc = -EINVAL;
        goto out;
    }
    for (size_t d = 0; d < ndepts; d++) {
        if (!seen[d]) {
            snprintf(errstr, errstr_size, "department '%s' has no field in the view schema %s",
                     depts[d], avro_schema_name(view));
            rc = -EINVAL;
            goto out;
        }
    }
    free(seen);
    *out = l;
    return 0;
out:
    free(seen);
    bh_jview_layout_free(l);
    return rc;
}

static void
encode_dept(const struct bh_jview_layout *l, const struct bh_jview_dept *d, struct bh_jbuf *b)
{
    static const struct bh_jview_dept empty;
    if (d == NULL)
        d = &empty;
    for (size_t i = 0; i < l->ndfields; i++) {
        const struct dfield *f = &l->dfields[i];
        switch (f->op) {
        case D_TOTAL:
            bh_jbuf_long(b, d->total);
            break;
        case D_WINDOW_TOTAL:
            bh_jbuf_long(b, d->window_total);
            break;
        case D_BY_TYPE:
            if (d->ntypes > 0) {
                bh_jbuf_long(b, (int64_t)d->ntypes);
                for (size_t t = 0; t < d->ntypes; t++) {
                    bh_jbuf_string(b, d->types[t].name, d->types[t].len);
                    bh_jbuf_long(b, d->types[t].count);
                }
            }
            bh_jbuf_long(b, 0);
            break;
        case D_LAST_ID:
            if (d->last_id == NULL) {
                bh_jbuf_long(b, f->null_branch);
            } else {
                bh_jbuf_long(b, 1 - f->null_branch);
                bh_jbuf_string(b, d->last_id, d->last_id_len);
            }
            break;
        case D_LAST_AT:
            if (d->last_id == NULL) {
                bh_jbuf_long(b, f->null_branch);
            } else {
                bh_jbuf_long(b, 1 - f->null_branch);
                bh_jbuf_long(b, d->last_at);
            }
            break;
        }
    }
}

size_t
bh_jview_layout_depts(const struct bh_jview_layout *l, const char **names, int *depts, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < l->nfields; i++) {
        if (l->fields[i].op != V_DEPT)
            continue;
        if (n < cap) {
            names[n] = l->fields[i].name;
            depts[n] = l->fields[i].dept;
        }
        n++;
    }
    return n;
}

void
bh_jview_encode(const struct bh_jview_layout *l, const struct bh_jview *v, struct bh_jbuf *b)
{
    for (size_t i = 0; i < l->nfields; i++) {
        const struct vfield *f = &l->fields[i];
        switch (f->op) {
        case V_BLOCK_ID:
            bh_jbuf_string(b, v->block_id, v->block_id_len);
            break;
        case V_BLOCK_NAME:
            if (v->block_name == NULL) {
                bh_jbuf_long(b, f->null_branch);
            } else {
                bh_jbuf_long(b, 1 - f->null_branch);
                bh_jbuf_string(b, v->block_name, strlen(v->block_name));
            }
            break;
        case V_UPDATED_AT:
            bh_jbuf_long(b, v->updated_at);
            break;
        case V_WINDOW_MS:
            bh_jbuf_long(b, v->window_ms);
            break;
        case V_DEPT:
            encode_dept(l, f->dept >= 0 ? &v->depts[f->dept] : NULL, b);
            break;
        }
    }
}
