#include "join_watch.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "join_state.h"
#include "mix64.h"
#include "timefmt.h"

/* --- configuration ------------------------------------------------------------------ */

#define WKEY(f) offsetof(struct bh_join_watch_conf, f)

#define COMMON_KEYS                                                                                \
    {.name = "department",                                                                         \
     .type = BH_CONF_STRING,                                                                       \
     .offset = WKEY(department),                                                                   \
     .doc = "Only the events of this join input (its name); unset: every department."},            \
        {.name = "since",                                                                          \
         .type = BH_CONF_STRING,                                                                   \
         .offset = WKEY(since),                                                                    \
         .doc = "RFC 3339 date-time: only events whose event time is at or after it; unset: "      \
                "from the beginning."},                                                            \
    {                                                                                              \
        .name = "expires", .type = BH_CONF_STRING, .offset = WKEY(expires),                        \
        .doc = "RFC 3339 date-time: only events whose event time is before it (an expired "        \
               "watch fires no more, however late its events arrive); unset: never expires."       \
    }

static const struct bh_conf_key field_keys[] = {
    {.name = "field",
     .type = BH_CONF_STRING,
     .offset = WKEY(field),
     .flags = BH_CONF_REQUIRED,
     .doc = "The field of the department's records to look at, by its name in their schema "
            "(e.g. plate, uscc, device): a string, a null-or-string, or an enum (its symbol)."},
    {.name = "equals",
     .type = BH_CONF_STRING,
     .offset = WKEY(equals),
     .flags = BH_CONF_REQUIRED,
     .doc = "The value that fires the watch (compared byte for byte)."},
    COMMON_KEYS,
    {0},
};

static const struct bh_conf_key blocks_keys[] = {
    {.name = "blocks",
     .type = BH_CONF_STRING_LIST,
     .offset = WKEY(blocks),
     .flags = BH_CONF_REQUIRED,
     .doc = "Block ids: any event of these blocks fires the watch."},
    COMMON_KEYS,
    {0},
};

static int
check_watch(const void *settings, const char **key, char *why, size_t n)
{
    const struct bh_join_watch_conf *c = settings;
    int64_t ms;
    int off;
    if (c->since != NULL && bh_parse_rfc3339(c->since, strlen(c->since), &ms, &off) < 0) {
        *key = "since";
        snprintf(why, n, "'%.60s' is not an RFC 3339 date-time with an offset", c->since);
        return -EINVAL;
    }
    if (c->expires != NULL && bh_parse_rfc3339(c->expires, strlen(c->expires), &ms, &off) < 0) {
        *key = "expires";
        snprintf(why, n, "'%.60s' is not an RFC 3339 date-time with an offset", c->expires);
        return -EINVAL;
    }
    if (c->field != NULL && c->field[0] == '\0') {
        *key = "field";
        snprintf(why, n, "empty");
        return -EINVAL;
    }
    if (c->blocks.n == 0 && c->field == NULL) {
        *key = "blocks";
        snprintf(why, n, "no block");
        return -EINVAL;
    }
    return 0;
}

static const struct bh_conf_variant field_variant = {
    .keys = field_keys, .size = sizeof(struct bh_join_watch_conf), .check = check_watch};
static const struct bh_conf_variant blocks_variant = {
    .keys = blocks_keys, .size = sizeof(struct bh_join_watch_conf), .check = check_watch};

const char bh_join_watch_types[] = "field, blocks";

const struct bh_conf_variant *
bh_join_watch_variant(const char *type)
{
    if (strcmp(type, "field") == 0)
        return &field_variant;
    if (strcmp(type, "blocks") == 0)
        return &blocks_variant;
    return NULL;
}

/* --- a watch as JSON (the admin API, the watches topic) ----------------------------- */

void
bh_jwatch_conf_free(struct bh_join_watch_conf *c)
{
    free(c->department);
    free(c->field);
    free(c->equals);
    for (size_t i = 0; i < c->blocks.n; i++)
        free(c->blocks.v[i]);
    free(c->blocks.v);
    free(c->since);
    free(c->expires);
    memset(c, 0, sizeof(*c));
}

static char *
dup_str(json_t *o, const char *key, int *bad)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }
    char *s = strdup(json_string_value(v));
    if (s == NULL)
        *bad = 1;
    return s;
}

int
bh_jwatch_conf_parse(json_t *o, struct bh_join_watch_conf *c, const char *now_since,
                     const char **key, char *why, size_t n)
{
    memset(c, 0, sizeof(*c));
    int bad = 0;
    const char *type = json_string_value(json_object_get(o, "type"));
    *key = "type";
    if (type == NULL || (strcmp(type, "field") != 0 && strcmp(type, "blocks") != 0)) {
        snprintf(why, n, "must be \"field\" or \"blocks\"");
        return -EINVAL;
    }
    static const char *const known[] = {"name",       "type",  "field",   "equals",
                                        "department", "since", "expires", "blocks"};
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        size_t i = 0;
        while (i < sizeof(known) / sizeof(*known) && strcmp(known[i], k) != 0)
            i++;
        if (i == sizeof(known) / sizeof(*known)) {
            *key = k;
            snprintf(why, n, "unknown key");
            return -EINVAL;
        }
    }
    c->department = dup_str(o, "department", &bad);
    c->since = dup_str(o, "since", &bad);
    c->expires = dup_str(o, "expires", &bad);
    if (bad) {
        *key = "department, since or expires";
        snprintf(why, n, "not a string");
        goto refused;
    }
    if (c->since == NULL && now_since != NULL && (c->since = strdup(now_since)) == NULL)
        goto oom;
    if (strcmp(type, "field") == 0) {
        c->field = dup_str(o, "field", &bad);
        c->equals = dup_str(o, "equals", &bad);
        if (bad || c->field == NULL || c->field[0] == '\0' || c->equals == NULL) {
            *key = c->field == NULL || c->field[0] == '\0' ? "field" : "equals";
            snprintf(why, n, "a non-empty string is needed");
            goto refused;
        }
    } else {
        json_t *b = json_object_get(o, "blocks");
        *key = "blocks";
        if (!json_is_array(b) || json_array_size(b) == 0 || json_array_size(b) > 100000) {
            snprintf(why, n, "a list of 1 to 100000 block ids is needed");
            goto refused;
        }
        c->blocks.v = calloc(json_array_size(b), sizeof(char *));
        if (c->blocks.v == NULL)
            goto oom;
        size_t i;
        json_array_foreach(b, i, v)
        {
            if (!json_is_string(v)) {
                snprintf(why, n, "block %zu is not a string", i);
                goto refused;
            }
            if ((c->blocks.v[c->blocks.n] = strdup(json_string_value(v))) == NULL)
                goto oom;
            c->blocks.n++;
        }
    }
    return 0;
oom:
    snprintf(why, n, "out of memory");
refused:
    bh_jwatch_conf_free(c);
    return -EINVAL;
}

/* --- the compiled set ------------------------------------------------------------- */

/* A (field, value) a watch looks for; field -1: a block id. */
struct entry {
    uint64_t hash;
    int field;
    const char *value;
    size_t len;
    size_t watch;
    size_t next; /* SIZE_MAX: the end of the chain */
};

struct bh_jwatches {
    struct bh_jwatch *w;
    size_t nw;
    const char *fields[BH_JPLAN_EXTRAS];
    size_t nfields;
    struct entry *e;
    size_t ne;
    size_t *heads; /* nheads, a power of two */
    size_t nheads;
    int any_blocks;
};

static uint64_t
hash_of(int field, const char *v, size_t len)
{
    return bh_jstate_hash(v, len) ^ bh_mix64((uint64_t)(field + 2));
}

static int
add_entry(struct bh_jwatches *s, int field, const char *v, size_t watch, size_t *cap)
{
    if (s->ne == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        struct entry *e = realloc(s->e, c * sizeof(*e));
        if (e == NULL)
            return -ENOMEM;
        s->e = e;
        *cap = c;
    }
    s->e[s->ne++] = (struct entry){hash_of(field, v, strlen(v)), field, v, strlen(v), watch, 0};
    return 0;
}

static int
parse_time(const char *s, int64_t def, int64_t *out)
{
    int off;
    if (s == NULL) {
        *out = def;
        return 0;
    }
    return bh_parse_rfc3339(s, strlen(s), out, &off);
}

int
bh_jwatches_new(struct bh_jwatches **out, const struct bh_variant_list *conf,
                const char *const *depts, size_t ndepts, char *err, size_t n)
{
    struct bh_jwatches *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->w = calloc(conf->n ? conf->n : 1, sizeof(*s->w));
    if (s->w == NULL) {
        free(s);
        return -ENOMEM;
    }
    size_t cap = 0;
    int rc = 0;
    for (size_t i = 0; i < conf->n && rc == 0; i++) {
        const struct bh_variant *v = &conf->v[i];
        const struct bh_join_watch_conf *c = v->settings;
        struct bh_jwatch *w = &s->w[s->nw++];
        w->name = v->name;
        w->dept = -1;
        w->field = -1;
        if (c->department != NULL) {
            for (size_t d = 0; d < ndepts; d++)
                if (strcmp(depts[d], c->department) == 0)
                    w->dept = (int)d;
            if (w->dept < 0) {
                snprintf(err, n, "join.watches.%s.department: '%s' is not a join input", v->name,
                         c->department);
                rc = -EINVAL;
                break;
            }
        }
        if (parse_time(c->since, INT64_MIN, &w->since) < 0 ||
            parse_time(c->expires, INT64_MAX, &w->expires) < 0) {
            snprintf(err, n, "join.watches.%s: since or expires is not an RFC 3339 date-time",
                     v->name);
            rc = -EINVAL;
            break;
        }
        if (c->field != NULL) {
            size_t f = 0;
            while (f < s->nfields && strcmp(s->fields[f], c->field) != 0)
                f++;
            if (f == s->nfields) {
                if (s->nfields == BH_JPLAN_EXTRAS) {
                    snprintf(err, n,
                             "join.watches.%s.field: more than %d distinct fields are watched",
                             v->name, BH_JPLAN_EXTRAS);
                    rc = -E2BIG;
                    break;
                }
                s->fields[s->nfields++] = c->field;
            }
            w->field = (int)f;
            w->field_name = c->field;
            rc = add_entry(s, (int)f, c->equals, i, &cap);
        } else {
            w->field_name = "block_id";
            s->any_blocks = 1;
            for (size_t b = 0; b < c->blocks.n && rc == 0; b++)
                rc = add_entry(s, -1, c->blocks.v[b], i, &cap);
        }
    }
    if (rc == 0) {
        s->nheads = 16;
        while (s->nheads < s->ne * 2)
            s->nheads *= 2;
        s->heads = malloc(s->nheads * sizeof(*s->heads));
        if (s->heads == NULL) {
            rc = -ENOMEM;
        } else {
            for (size_t i = 0; i < s->nheads; i++)
                s->heads[i] = SIZE_MAX;
            /* chains keep the configured order: inserted from the last */
            for (size_t i = s->ne; i-- > 0;) {
                size_t h = (size_t)s->e[i].hash & (s->nheads - 1);
                /* a value a watch lists twice fires it once */
                size_t k = s->heads[h];
                while (k != SIZE_MAX &&
                       !(s->e[k].watch == s->e[i].watch && s->e[k].field == s->e[i].field &&
                         s->e[k].len == s->e[i].len &&
                         memcmp(s->e[k].value, s->e[i].value, s->e[i].len) == 0))
                    k = s->e[k].next;
                if (k != SIZE_MAX)
                    continue; /* its later copy is in the chain already */
                s->e[i].next = s->heads[h];
                s->heads[h] = i;
            }
        }
    }
    if (rc < 0) {
        if (rc == -ENOMEM)
            snprintf(err, n, "join.watches: out of memory");
        bh_jwatches_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void
bh_jwatches_free(struct bh_jwatches *s)
{
    if (s == NULL)
        return;
    free(s->w);
    free(s->e);
    free(s->heads);
    free(s);
}

size_t
bh_jwatches_count(const struct bh_jwatches *s)
{
    return s->nw;
}

size_t
bh_jwatches_fields(const struct bh_jwatches *s, const char *const **names)
{
    *names = s->fields;
    return s->nfields;
}

static int
match_one(const struct bh_jwatches *s, int field, const char *v, size_t len, size_t dept,
          int64_t at, int (*fn)(void *, const struct bh_jwatch *, const char *, size_t), void *ctx)
{
    uint64_t h = hash_of(field, v, len);
    for (size_t i = s->heads[(size_t)h & (s->nheads - 1)]; i != SIZE_MAX; i = s->e[i].next) {
        const struct entry *e = &s->e[i];
        if (e->hash != h || e->field != field || e->len != len || memcmp(e->value, v, len) != 0)
            continue;
        const struct bh_jwatch *w = &s->w[e->watch];
        if ((w->dept >= 0 && (size_t)w->dept != dept) || at < w->since || at >= w->expires)
            continue;
        int rc = fn(ctx, w, v, len);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int
bh_jwatches_match(const struct bh_jwatches *s, size_t dept, const char *block, size_t block_len,
                  const struct bh_jfields *f,
                  int (*fn)(void *ctx, const struct bh_jwatch *w, const char *value, size_t len),
                  void *ctx)
{
    int rc = 0;
    if (s->any_blocks)
        rc = match_one(s, -1, block, block_len, dept, f->at, fn, ctx);
    for (size_t k = 0; k < s->nfields && rc == 0; k++)
        if (f->extra[k] != NULL)
            rc = match_one(s, (int)k, f->extra[k], f->extra_len[k], dept, f->at, fn, ctx);
    return rc;
}

/* --- alerts ------------------------------------------------------------------------------- */

static void
opt_string(struct bh_jbuf *b, const char *s)
{
    if (s == NULL) {
        bh_jbuf_long(b, 0);
        return;
    }
    bh_jbuf_long(b, 1);
    bh_jbuf_string(b, s, strlen(s));
}

void
bh_jalert_encode(struct bh_jbuf *b, const struct bh_jalert *a)
{
    /* alert_id: watch|rule:name:block:dept/id[:dept/id...] */
    const char *kind = a->rule ? "rule:" : "watch:";
    size_t len = strlen(kind) + strlen(a->name) + 1 + a->block_len;
    for (size_t i = 0; i < a->nevents; i++)
        len += 2 + strlen(a->events[i].dept) + a->events[i].id_len;
    bh_jbuf_long(b, (int64_t)len);
    bh_jbuf_raw(b, kind, strlen(kind));
    bh_jbuf_raw(b, a->name, strlen(a->name));
    bh_jbuf_raw(b, ":", 1);
    bh_jbuf_raw(b, a->block, a->block_len);
    for (size_t i = 0; i < a->nevents; i++) {
        bh_jbuf_raw(b, ":", 1);
        bh_jbuf_raw(b, a->events[i].dept, strlen(a->events[i].dept));
        bh_jbuf_raw(b, "/", 1);
        bh_jbuf_raw(b, a->events[i].id, a->events[i].id_len);
    }
    bh_jbuf_string(b, a->block, a->block_len);
    opt_string(b, a->block_name);
    opt_string(b, a->unit);
    bh_jbuf_long(b, a->rule ? 1 : 0);
    bh_jbuf_string(b, a->name, strlen(a->name));
    bh_jbuf_string(b, a->detail, a->detail_len);
    if (a->nevents > 0) {
        bh_jbuf_long(b, (int64_t)a->nevents);
        for (size_t i = 0; i < a->nevents; i++) {
            const struct bh_jalert_event *e = &a->events[i];
            bh_jbuf_string(b, e->dept, strlen(e->dept));
            bh_jbuf_string(b, e->id, e->id_len);
            bh_jbuf_string(b, e->type, e->type_len);
            bh_jbuf_long(b, e->at);
        }
    }
    bh_jbuf_long(b, 0);
    bh_jbuf_long(b, a->detected_at);
}
