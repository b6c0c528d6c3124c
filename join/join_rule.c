#include "join_rule.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mix64.h"
#include "utf8.h"

/* --- configuration ------------------------------------------------------------------- */

#define RKEY(f) offsetof(struct bh_join_rule_conf, f)

static const struct bh_conf_key pair_keys[] = {
    {.name = "a_department",
     .type = BH_CONF_STRING,
     .offset = RKEY(a_department),
     .flags = BH_CONF_REQUIRED,
     .doc = "The first department (a join input's name)."},
    {.name = "a_types",
     .type = BH_CONF_STRING_LIST,
     .offset = RKEY(a_types),
     .doc = "Its event types that count (its by_type keys); empty: every type."},
    {.name = "b_department",
     .type = BH_CONF_STRING,
     .offset = RKEY(b_department),
     .flags = BH_CONF_REQUIRED,
     .doc = "The second department (may be the first)."},
    {.name = "b_types",
     .type = BH_CONF_STRING_LIST,
     .offset = RKEY(b_types),
     .doc = "Its event types that count; empty: every type."},
    {.name = "within",
     .type = BH_CONF_DURATION,
     .offset = RKEY(within),
     .flags = BH_CONF_REQUIRED,
     .min = 1,
     .max = 3650LL * 86400000,
     .doc = "How far apart (event time) the two events may be."},
    {0},
};

static const struct bh_conf_key spike_keys[] = {
    {.name = "department",
     .type = BH_CONF_STRING,
     .offset = RKEY(department),
     .flags = BH_CONF_REQUIRED,
     .doc = "The department (a join input's name)."},
    {.name = "types",
     .type = BH_CONF_STRING_LIST,
     .offset = RKEY(types),
     .doc = "Its event types that count; empty: every type."},
    {.name = "more_than",
     .type = BH_CONF_INT,
     .offset = RKEY(more_than),
     .flags = BH_CONF_REQUIRED,
     .min = 1,
     .max = BH_JRULE_KEEP - 1,
     .doc = "It fires when more than this many events are within the window."},
    {.name = "within",
     .type = BH_CONF_DURATION,
     .offset = RKEY(within),
     .flags = BH_CONF_REQUIRED,
     .min = 1,
     .max = 3650LL * 86400000,
     .doc = "The window (event time, ending at the newest event of the block)."},
    {0},
};

static const struct bh_conf_variant pair_variant = {.keys = pair_keys,
                                                    .size = sizeof(struct bh_join_rule_conf)};
static const struct bh_conf_variant spike_variant = {.keys = spike_keys,
                                                     .size = sizeof(struct bh_join_rule_conf)};

const char bh_join_rule_types[] = "pair, spike";

const struct bh_conf_variant *
bh_join_rule_variant(const char *type)
{
    if (strcmp(type, "pair") == 0)
        return &pair_variant;
    if (strcmp(type, "spike") == 0)
        return &spike_variant;
    return NULL;
}

/* --- state ------------------------------------------------------------------------------ */

struct side {
    int dept;
    const struct bh_strlist *types;
};

struct rule {
    const char *name;
    int spike;
    struct side a, b; /* spike: a only */
    int64_t more_than, within;
};

struct ev {
    int dept;
    char *id, *type; /* one allocation: the id, a NUL, the type, a NUL */
    uint32_t id_len, type_len;
    int64_t at;
};

/* One side's remembered events, grown as needed up to BH_JRULE_KEEP. */
struct evs {
    struct ev *v;
    size_t n, cap;
};

struct rstate {
    struct rstate *next;       /* the bucket's chain */
    struct rstate *next_dirty; /* changed since the last commit */
    int dirty;
    uint64_t hash;
    char *key; /* block, 0x1f, rule name */
    size_t klen;
    size_t rule;
    struct evs a, b;
    int64_t newest;
    int over;
};

struct rpart {
    struct rstate **buckets;
    size_t nbuckets, n;
    struct rstate *dirty;
};

struct bh_jrules {
    struct rule *r;
    size_t nr;
    const char *const *depts;
    size_t ndepts;
    struct rpart *parts;
    int32_t nparts;
};

static int
dept_of(const char *name, const char *const *depts, size_t ndepts)
{
    for (size_t i = 0; i < ndepts; i++)
        if (strcmp(depts[i], name) == 0)
            return (int)i;
    return -1;
}

int
bh_jrules_new(struct bh_jrules **out, const struct bh_variant_list *conf, const char *const *depts,
              size_t ndepts, int32_t nparts, char *err, size_t n)
{
    struct bh_jrules *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->r = calloc(conf->n ? conf->n : 1, sizeof(*r->r));
    r->parts = calloc((size_t)(nparts > 0 ? nparts : 1), sizeof(*r->parts));
    if (r->r == NULL || r->parts == NULL) {
        bh_jrules_free(r);
        return -ENOMEM;
    }
    r->depts = depts;
    r->ndepts = ndepts;
    r->nparts = nparts;
    for (size_t i = 0; i < conf->n; i++) {
        const struct bh_variant *v = &conf->v[i];
        const struct bh_join_rule_conf *c = v->settings;
        struct rule *x = &r->r[r->nr++];
        x->name = v->name;
        x->spike = strcmp(v->type, "spike") == 0;
        x->within = c->within;
        x->more_than = c->more_than;
        const char *da = x->spike ? c->department : c->a_department;
        x->a = (struct side){dept_of(da, depts, ndepts), x->spike ? &c->types : &c->a_types};
        if (!x->spike)
            x->b = (struct side){dept_of(c->b_department, depts, ndepts), &c->b_types};
        const char *bad = x->a.dept < 0 ? da : !x->spike && x->b.dept < 0 ? c->b_department : NULL;
        if (bad != NULL) {
            snprintf(err, n, "join.rules.%s: '%s' is not a join input", v->name, bad);
            bh_jrules_free(r);
            return -EINVAL;
        }
    }
    *out = r;
    return 0;
}

static void
ev_free(struct ev *e)
{
    free(e->id);
}

static void
evs_clear(struct evs *v)
{
    for (size_t i = 0; i < v->n; i++)
        ev_free(&v->v[i]);
    free(v->v);
    memset(v, 0, sizeof(*v));
}

static void
state_free(struct rstate *s)
{
    evs_clear(&s->a);
    evs_clear(&s->b);
    free(s->key);
    free(s);
}

void
bh_jrules_drop(struct bh_jrules *r, int32_t p)
{
    if (r == NULL || p < 0 || p >= r->nparts)
        return;
    struct rpart *rp = &r->parts[p];
    for (size_t i = 0; i < rp->nbuckets; i++)
        for (struct rstate *s = rp->buckets[i], *nx; s != NULL; s = nx) {
            nx = s->next;
            state_free(s);
        }
    free(rp->buckets);
    memset(rp, 0, sizeof(*rp));
}

void
bh_jrules_free(struct bh_jrules *r)
{
    if (r == NULL)
        return;
    for (int32_t p = 0; r->parts != NULL && p < r->nparts; p++)
        bh_jrules_drop(r, p);
    free(r->parts);
    free(r->r);
    free(r);
}

size_t
bh_jrules_count(const struct bh_jrules *r)
{
    return r->nr;
}

static uint64_t
key_hash(const char *k, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)k[i]) * 0x100000001b3ULL;
    return bh_mix64(h);
}

/* The state of KEY in partition RP (made when MAKE), or NULL. */
static struct rstate *
state_of(struct rpart *rp, const char *key, size_t klen, size_t rule, int make, int *oom)
{
    uint64_t h = key_hash(key, klen);
    if (rp->nbuckets > 0)
        for (struct rstate *s = rp->buckets[h & (rp->nbuckets - 1)]; s != NULL; s = s->next)
            if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0)
                return s;
    if (!make)
        return NULL;
    if (rp->n + 1 > rp->nbuckets) {
        size_t nb = rp->nbuckets ? rp->nbuckets * 2 : 64;
        struct rstate **b = calloc(nb, sizeof(*b));
        if (b == NULL) {
            *oom = 1;
            return NULL;
        }
        for (size_t i = 0; i < rp->nbuckets; i++)
            for (struct rstate *s = rp->buckets[i], *nx; s != NULL; s = nx) {
                nx = s->next;
                s->next = b[s->hash & (nb - 1)];
                b[s->hash & (nb - 1)] = s;
            }
        free(rp->buckets);
        rp->buckets = b;
        rp->nbuckets = nb;
    }
    struct rstate *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->key = malloc(klen)) == NULL) {
        free(s);
        *oom = 1;
        return NULL;
    }
    memcpy(s->key, key, klen);
    s->klen = klen;
    s->hash = h;
    s->rule = rule;
    s->newest = INT64_MIN;
    s->next = rp->buckets[h & (rp->nbuckets - 1)];
    rp->buckets[h & (rp->nbuckets - 1)] = s;
    rp->n++;
    return s;
}

static int
type_in(const struct bh_strlist *l, const char *t, size_t len)
{
    if (l->n == 0)
        return 1;
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->v[i]) == len && memcmp(l->v[i], t, len) == 0)
            return 1;
    return 0;
}

/* Drop from side V the events more than WITHIN before NEWEST. */
static void
prune(struct evs *v, int64_t newest, int64_t within)
{
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (newest - v->v[i].at > within) {
            ev_free(&v->v[i]);
            continue;
        }
        v->v[k++] = v->v[i];
    }
    v->n = k;
}

static int
push(struct evs *v, int dept, const char *id, size_t id_len, const char *type, size_t type_len,
     int64_t at)
{
    if (v->n == BH_JRULE_KEEP) { /* the oldest goes */
        size_t o = 0;
        for (size_t i = 1; i < v->n; i++)
            if (v->v[i].at < v->v[o].at)
                o = i;
        ev_free(&v->v[o]);
        v->v[o] = v->v[--v->n];
    }
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 2;
        struct ev *nv = realloc(v->v, cap * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        v->v = nv;
        v->cap = cap;
    }
    char *mem = malloc(id_len + type_len + 2);
    if (mem == NULL)
        return -ENOMEM;
    memcpy(mem, id, id_len);
    mem[id_len] = '\0';
    memcpy(mem + id_len + 1, type, type_len);
    mem[id_len + 1 + type_len] = '\0';
    v->v[v->n++] =
        (struct ev){dept, mem, mem + id_len + 1, (uint32_t)id_len, (uint32_t)type_len, at};
    return 0;
}

static struct bh_jalert_event
alert_ev(const struct bh_jrules *r, const struct ev *e)
{
    return (struct bh_jalert_event){r->depts[e->dept], e->id,       e->id_len,
                                    e->type,           e->type_len, e->at};
}

static void
mark(struct rpart *rp, struct rstate *s)
{
    if (!s->dirty) {
        s->dirty = 1;
        s->next_dirty = rp->dirty;
        rp->dirty = s;
    }
}

int
bh_jrules_apply(struct bh_jrules *r, int32_t p, const char *block, size_t block_len, size_t dept,
                const char *id, size_t id_len, const char *type, size_t type_len, int64_t at,
                bh_jrule_fire_fn fire, void *ctx)
{
    if (p < 0 || p >= r->nparts)
        return 0;
    struct rpart *rp = &r->parts[p];
    char key[512];
    if (block_len > 300)
        return 0; /* no block id is that long (the map refuses them) */
    for (size_t i = 0; i < r->nr; i++) {
        const struct rule *x = &r->r[i];
        int ma = x->a.dept == (int)dept && type_in(x->a.types, type, type_len);
        int mb = !x->spike && x->b.dept == (int)dept && type_in(x->b.types, type, type_len);
        if (!ma && !mb)
            continue;
        size_t nl = strlen(x->name);
        if (block_len + 1 + nl > sizeof(key))
            continue;
        memcpy(key, block, block_len);
        key[block_len] = 0x1f;
        memcpy(key + block_len + 1, x->name, nl);
        int oom = 0;
        struct rstate *s = state_of(rp, key, block_len + 1 + nl, i, 1, &oom);
        if (s == NULL)
            return -ENOMEM;
        if (s->newest != INT64_MIN && s->newest - at > x->within)
            continue; /* later than the window behind the newest: not paired, not counted */
        if (at > s->newest)
            s->newest = at;
        struct ev me = {(int)dept,        (char *)id,         (char *)type,
                        (uint32_t)id_len, (uint32_t)type_len, at};
        char detail[700];
        int rc = 0;
        if (x->spike) {
            prune(&s->a, s->newest, x->within);
            if (push(&s->a, (int)dept, id, id_len, type, type_len, at) < 0)
                return -ENOMEM;
            if ((int64_t)s->a.n > x->more_than && !s->over) {
                s->over = 1;
                struct bh_jalert_event evs[BH_JRULE_KEEP];
                size_t k = 0;
                for (size_t e = 0; e < s->a.n; e++)
                    evs[k++] = alert_ev(r, &s->a.v[e]);
                int dl = snprintf(detail, sizeof(detail),
                                  "rule %s: %zu events of %s within %" PRId64
                                  " ms (more than %" PRId64 ")",
                                  x->name, s->a.n, r->depts[dept], x->within, x->more_than);
                rc = fire(ctx, x->name, evs, k, detail,
                          bh_utf8_cut(detail, dl < 0 ? 0 : strlen(detail), sizeof(detail)));
            } else if ((int64_t)s->a.n <= x->more_than) {
                s->over = 0;
            }
            mark(rp, s);
            if (rc != 0)
                return rc;
            continue;
        }
        prune(&s->a, s->newest, x->within);
        prune(&s->b, s->newest, x->within);
        /* Every pair the event completes: with each event of the other side within the window. */
        for (int side = 0; side < 2 && rc == 0; side++) {
            if (!(side == 0 ? ma : mb))
                continue;
            struct ev *o = side == 0 ? s->b.v : s->a.v;
            size_t no = side == 0 ? s->b.n : s->a.n;
            for (size_t e = 0; e < no && rc == 0; e++) {
                int64_t d = o[e].at > at ? o[e].at - at : at - o[e].at;
                if (d > x->within || (o[e].dept == (int)dept && o[e].id_len == id_len &&
                                      memcmp(o[e].id, id, id_len) == 0))
                    continue;
                struct bh_jalert_event evs[2] = {alert_ev(r, &o[e]), alert_ev(r, &me)};
                int dl =
                    snprintf(detail, sizeof(detail),
                             "rule %s: %s %s %.*s and %s %s %.*s within %" PRId64 " ms", x->name,
                             r->depts[o[e].dept], o[e].type,
                             (int)bh_utf8_cut(o[e].id, o[e].id_len, 100), o[e].id, r->depts[dept],
                             me.type, (int)bh_utf8_cut(id, id_len, 100), id, x->within);
                (void)dl;
                rc = fire(ctx, x->name, evs, 2, detail,
                          bh_utf8_cut(detail, strlen(detail), sizeof(detail)));
            }
        }
        if (rc == 0 && ma && push(&s->a, (int)dept, id, id_len, type, type_len, at) < 0)
            rc = -ENOMEM;
        if (rc == 0 && mb && push(&s->b, (int)dept, id, id_len, type, type_len, at) < 0)
            rc = -ENOMEM;
        mark(rp, s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --- the rules topic ------------------------------------------------------------------- */

static json_t *
side_json(const struct bh_jrules *r, const struct evs *v)
{
    json_t *a = json_array();
    for (size_t i = 0; i < v->n; i++) {
        const struct ev *e = &v->v[i];
        json_array_append_new(a, json_pack("[s, s#, s#, I]", r->depts[e->dept], e->id,
                                           (size_t)e->id_len, e->type, (size_t)e->type_len,
                                           (json_int_t)e->at));
    }
    return a;
}

int
bh_jrules_take_dirty(struct bh_jrules *r, int32_t p,
                     int (*emit)(void *ctx, const char *key, size_t klen, const char *value,
                                 size_t vlen),
                     void *ctx)
{
    if (p < 0 || p >= r->nparts)
        return 0;
    struct rpart *rp = &r->parts[p];
    int rc = 0;
    for (struct rstate *s = rp->dirty, *nx; s != NULL; s = nx) {
        nx = s->next_dirty;
        s->dirty = 0;
        s->next_dirty = NULL;
        if (rc != 0)
            continue;
        json_t *o =
            json_pack("{s:o, s:o, s:I, s:b}", "a", side_json(r, &s->a), "b", side_json(r, &s->b),
                      "newest", (json_int_t)s->newest, "over", s->over);
        char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        rc = text != NULL ? emit(ctx, s->key, s->klen, text, strlen(text)) : -ENOMEM;
        free(text);
    }
    rp->dirty = NULL;
    return rc;
}

static int
side_from(const struct bh_jrules *r, json_t *a, struct evs *v)
{
    size_t i;
    json_t *e;
    if (!json_is_array(a))
        return 1;
    json_array_foreach(a, i, e)
    {
        const char *d = json_string_value(json_array_get(e, 0));
        json_t *id = json_array_get(e, 1), *type = json_array_get(e, 2);
        json_t *at = json_array_get(e, 3);
        int dept = d != NULL ? dept_of(d, r->depts, r->ndepts) : -1;
        if (dept < 0 || !json_is_string(id) || !json_is_string(type) || !json_is_integer(at))
            continue; /* a department no longer joined, or not what this version writes */
        if (v->n == BH_JRULE_KEEP)
            break;
        if (push(v, dept, json_string_value(id), json_string_length(id), json_string_value(type),
                 json_string_length(type), (int64_t)json_integer_value(at)) < 0)
            return -ENOMEM;
    }
    return 0;
}

int
bh_jrules_restore(struct bh_jrules *r, int32_t p, const char *key, size_t klen, const char *value,
                  size_t vlen)
{
    if (p < 0 || p >= r->nparts || key == NULL)
        return 1;
    const char *sep = memchr(key, 0x1f, klen);
    if (sep == NULL)
        return 1;
    size_t nl = klen - (size_t)(sep + 1 - key), rule = SIZE_MAX;
    for (size_t i = 0; i < r->nr; i++)
        if (strlen(r->r[i].name) == nl && memcmp(r->r[i].name, sep + 1, nl) == 0)
            rule = i;
    if (rule == SIZE_MAX)
        return 1; /* a rule no longer configured */
    struct rpart *rp = &r->parts[p];
    int oom = 0;
    struct rstate *s = state_of(rp, key, klen, rule, 1, &oom);
    if (s == NULL)
        return -ENOMEM;
    evs_clear(&s->a);
    evs_clear(&s->b);
    s->over = 0;
    s->newest = INT64_MIN;
    if (value == NULL)
        return 0;
    json_t *o = json_loadb(value, vlen, 0, NULL);
    int rc = 1;
    if (json_is_object(o)) {
        rc = side_from(r, json_object_get(o, "a"), &s->a);
        if (rc == 0)
            rc = side_from(r, json_object_get(o, "b"), &s->b);
        json_t *nw = json_object_get(o, "newest");
        if (json_is_integer(nw))
            s->newest = (int64_t)json_integer_value(nw);
        s->over = json_is_true(json_object_get(o, "over"));
    }
    json_decref(o);
    return rc;
}
