#include "join_rule.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "join_state.h"
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

/* What one rule remembers of one block. */
struct rstate {
    size_t rule;
    struct evs a, b;
    int64_t newest;
    int over;
};

/* A block's states, one per rule that has seen its events, by rule; one record of the rules
 * topic (key: the block). */
struct rblock {
    struct rblock *next;       /* the bucket's chain */
    struct rblock *next_dirty; /* changed since the last commit */
    int dirty;
    uint64_t hash;
    struct rstate *st; /* sorted by rule */
    size_t n, cap;
    size_t klen;
    char key[]; /* the block id */
};

struct rpart {
    struct rblock **buckets;
    size_t nbuckets, n;
    struct rblock *dirty;
};

struct bh_jrules {
    struct bh_jbuf buf; /* a state being written */
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
state_clear(struct rstate *s)
{
    evs_clear(&s->a);
    evs_clear(&s->b);
    s->newest = INT64_MIN;
    s->over = 0;
}

static void
block_free(struct rblock *b)
{
    for (size_t i = 0; i < b->n; i++)
        state_clear(&b->st[i]);
    free(b->st);
    free(b);
}

void
bh_jrules_drop(struct bh_jrules *r, int32_t p)
{
    if (r == NULL || p < 0 || p >= r->nparts)
        return;
    struct rpart *rp = &r->parts[p];
    for (size_t i = 0; i < rp->nbuckets; i++)
        for (struct rblock *b = rp->buckets[i], *nx; b != NULL; b = nx) {
            nx = b->next;
            block_free(b);
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
    bh_jbuf_free(&r->buf);
    free(r);
}

size_t
bh_jrules_count(const struct bh_jrules *r)
{
    return r->nr;
}

/* The block KEY of partition RP (made when MAKE), or NULL. */
static struct rblock *
block_of(struct rpart *rp, const char *key, size_t klen, int make, int *oom)
{
    uint64_t h = bh_jstate_hash(key, klen);
    if (rp->nbuckets > 0)
        for (struct rblock *b = rp->buckets[h & (rp->nbuckets - 1)]; b != NULL; b = b->next)
            if (b->hash == h && b->klen == klen && memcmp(b->key, key, klen) == 0)
                return b;
    if (!make)
        return NULL;
    if (rp->n + 1 > rp->nbuckets) {
        size_t nb = rp->nbuckets ? rp->nbuckets * 2 : 64;
        struct rblock **nbk = calloc(nb, sizeof(*nbk));
        if (nbk == NULL) {
            *oom = 1;
            return NULL;
        }
        for (size_t i = 0; i < rp->nbuckets; i++)
            for (struct rblock *b = rp->buckets[i], *nx; b != NULL; b = nx) {
                nx = b->next;
                b->next = nbk[b->hash & (nb - 1)];
                nbk[b->hash & (nb - 1)] = b;
            }
        free(rp->buckets);
        rp->buckets = nbk;
        rp->nbuckets = nb;
    }
    struct rblock *b = calloc(1, sizeof(*b) + klen);
    if (b == NULL) {
        *oom = 1;
        return NULL;
    }
    memcpy(b->key, key, klen);
    b->klen = klen;
    b->hash = h;
    b->next = rp->buckets[h & (rp->nbuckets - 1)];
    rp->buckets[h & (rp->nbuckets - 1)] = b;
    rp->n++;
    return b;
}

/* Block B's state of RULE (made, empty, when missing), or NULL when out of memory. The
 * pointer holds until the next state made in B. */
static struct rstate *
state_of(struct rblock *b, size_t rule)
{
    size_t lo = 0, hi = b->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->st[mid].rule < rule)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < b->n && b->st[lo].rule == rule)
        return &b->st[lo];
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4;
        struct rstate *nst = realloc(b->st, cap * sizeof(*nst));
        if (nst == NULL)
            return NULL;
        b->st = nst;
        b->cap = cap;
    }
    memmove(&b->st[lo + 1], &b->st[lo], (b->n - lo) * sizeof(*b->st));
    b->n++;
    b->st[lo] = (struct rstate){.rule = rule, .newest = INT64_MIN};
    return &b->st[lo];
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

/* Whether event time AT is more than WITHIN (>= 0) before NEWEST (no overflow, whatever the times).
 */
static int
too_old(int64_t newest, int64_t at, int64_t within)
{
    return at < newest && (uint64_t)newest - (uint64_t)at > (uint64_t)within;
}

/* Whether A and B are at most WITHIN apart. */
static int
near(int64_t a, int64_t b, int64_t within)
{
    uint64_t d = a > b ? (uint64_t)a - (uint64_t)b : (uint64_t)b - (uint64_t)a;
    return d <= (uint64_t)within;
}

/* Drop from side V the events more than WITHIN before NEWEST. */
static void
prune(struct evs *v, int64_t newest, int64_t within)
{
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (too_old(newest, v->v[i].at, within)) {
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
mark(struct rpart *rp, struct rblock *b)
{
    if (!b->dirty) {
        b->dirty = 1;
        b->next_dirty = rp->dirty;
        rp->dirty = b;
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
    struct rblock *blk = NULL; /* looked up at the first rule the event is for */
    if (block_len > 300)
        return 0; /* no block id is that long (the map refuses them) */
    for (size_t i = 0; i < r->nr; i++) {
        const struct rule *x = &r->r[i];
        int ma = x->a.dept == (int)dept && type_in(x->a.types, type, type_len);
        int mb = !x->spike && x->b.dept == (int)dept && type_in(x->b.types, type, type_len);
        if (!ma && !mb)
            continue;
        int oom = 0;
        if (blk == NULL && (blk = block_of(rp, block, block_len, 1, &oom)) == NULL)
            return -ENOMEM;
        struct rstate *s = state_of(blk, i);
        if (s == NULL)
            return -ENOMEM;
        if (s->newest != INT64_MIN && too_old(s->newest, at, x->within))
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
            mark(rp, blk);
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
                if (!near(o[e].at, at, x->within) ||
                    (o[e].dept == (int)dept && o[e].id_len == id_len &&
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
        mark(rp, blk);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --- the rules topic ------------------------------------------------------------------- */

/*
 * A block's states as a record of the rules topic (key: the block): "R2", the
 * number of states, then per state the rule's name (a string), the newest
 * event time and the spike's state (longs), then each side: its count and, per
 * event, its department's name, id and type (strings) and time (long), as the
 * join's own Avro writes them (join_avro.h). Records of the first format, "R1"
 * (one state, key: block, 0x1f, rule name), are still read.
 */
static void
encode_state(const struct bh_jrules *r, const struct rstate *s, struct bh_jbuf *b)
{
    bh_jbuf_long(b, s->newest);
    bh_jbuf_long(b, s->over);
    for (int side = 0; side < 2; side++) {
        const struct evs *v = side == 0 ? &s->a : &s->b;
        bh_jbuf_long(b, (int64_t)v->n);
        for (size_t i = 0; i < v->n; i++) {
            const struct ev *e = &v->v[i];
            bh_jbuf_string(b, r->depts[e->dept], strlen(r->depts[e->dept]));
            bh_jbuf_string(b, e->id, e->id_len);
            bh_jbuf_string(b, e->type, e->type_len);
            bh_jbuf_long(b, e->at);
        }
    }
}

static void
encode_block(const struct bh_jrules *r, const struct rblock *blk, struct bh_jbuf *b)
{
    bh_jbuf_reset(b);
    bh_jbuf_raw(b, "R2", 2);
    bh_jbuf_long(b, (int64_t)blk->n);
    for (size_t i = 0; i < blk->n; i++) {
        const char *name = r->r[blk->st[i].rule].name;
        bh_jbuf_string(b, name, strlen(name));
        encode_state(r, &blk->st[i], b);
    }
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
    for (struct rblock *blk = rp->dirty, *nx; blk != NULL; blk = nx) {
        nx = blk->next_dirty;
        blk->dirty = 0;
        blk->next_dirty = NULL;
        if (rc != 0)
            continue;
        encode_block(r, blk, &r->buf);
        rc = r->buf.oom ? -ENOMEM
                        : emit(ctx, blk->key, blk->klen, (const char *)r->buf.p, r->buf.len);
    }
    rp->dirty = NULL;
    return rc;
}

/* One side of a state record into V; events of departments no longer joined are skipped. */
static int
side_from(const struct bh_jrules *r, struct bh_jreader *rd, struct evs *v)
{
    int64_t n = bh_jread_long(rd);
    if (rd->bad || n < 0 || n > BH_JRULE_KEEP)
        return 1;
    for (int64_t i = 0; i < n && !rd->bad; i++) {
        const char *d, *id, *type;
        size_t dl, il, tl;
        bh_jread_string(rd, &d, &dl);
        bh_jread_string(rd, &id, &il);
        bh_jread_string(rd, &type, &tl);
        int64_t at = bh_jread_long(rd);
        if (rd->bad)
            return 1;
        int dept = -1;
        for (size_t k = 0; k < r->ndepts; k++)
            if (strlen(r->depts[k]) == dl && memcmp(r->depts[k], d, dl) == 0)
                dept = (int)k;
        /* ids and types go into alerts as Avro strings: what blockhub did not write is skipped */
        if (dept < 0 || il > 4096 || tl > 4096 || !bh_utf8_valid(id, il) ||
            !bh_utf8_valid(type, tl))
            continue;
        if (push(v, dept, id, il, type, tl, at) < 0)
            return -ENOMEM;
    }
    return rd->bad ? 1 : 0;
}

/* The rule named NAME (NL bytes), or SIZE_MAX for one no longer configured. */
static size_t
rule_named(const struct bh_jrules *r, const char *name, size_t nl)
{
    for (size_t i = 0; i < r->nr; i++)
        if (strlen(r->r[i].name) == nl && memcmp(r->r[i].name, name, nl) == 0)
            return i;
    return SIZE_MAX;
}

/* One state's body (after its rule) from RD into S (NULL: read and dropped). */
static int
state_from(const struct bh_jrules *r, struct bh_jreader *rd, struct rstate *s)
{
    struct rstate tmp = {.newest = INT64_MIN};
    struct rstate *t = s != NULL ? s : &tmp;
    state_clear(t);
    t->newest = bh_jread_long(rd);
    t->over = bh_jread_long(rd) != 0;
    int rc = side_from(r, rd, &t->a);
    if (rc == 0)
        rc = side_from(r, rd, &t->b);
    if (rc != 0 || t == &tmp) /* what does not read is forgotten whole */
        state_clear(t);
    return rc;
}

int
bh_jrules_restore(struct bh_jrules *r, int32_t p, const char *key, size_t klen, const char *value,
                  size_t vlen)
{
    if (p < 0 || p >= r->nparts || key == NULL)
        return 1;
    struct rpart *rp = &r->parts[p];
    const char *sep = memchr(key, 0x1f, klen);
    int oom = 0;
    struct rblock *blk = block_of(rp, key, sep != NULL ? (size_t)(sep - key) : klen, 1, &oom);
    if (blk == NULL)
        return -ENOMEM;
    if (sep != NULL) { /* the first format: one rule's state */
        size_t rule = rule_named(r, sep + 1, klen - (size_t)(sep + 1 - key));
        if (rule == SIZE_MAX)
            return 1; /* a rule no longer configured */
        struct rstate *s = state_of(blk, rule);
        if (s == NULL)
            return -ENOMEM;
        state_clear(s);
        if (value == NULL)
            return 0;
        if (vlen < 2 || memcmp(value, "R1", 2) != 0)
            return 1;
        struct bh_jreader rd = {(const uint8_t *)value + 2, (const uint8_t *)value + vlen, 0};
        return state_from(r, &rd, s);
    }
    for (size_t i = 0; i < blk->n; i++) /* the record is the block's whole state */
        state_clear(&blk->st[i]);
    if (value == NULL)
        return 0;
    if (vlen < 2 || memcmp(value, "R2", 2) != 0)
        return 1;
    struct bh_jreader rd = {(const uint8_t *)value + 2, (const uint8_t *)value + vlen, 0};
    int64_t n = bh_jread_long(&rd);
    if (rd.bad || n < 0 || n > (int64_t)(rd.end - rd.p)) /* a state takes 4 bytes or more */
        return 1;
    for (int64_t k = 0; k < n; k++) {
        const char *name;
        size_t nl;
        bh_jread_string(&rd, &name, &nl);
        if (rd.bad)
            return 1;
        size_t rule = rule_named(r, name, nl);
        struct rstate *s = NULL;
        if (rule != SIZE_MAX && (s = state_of(blk, rule)) == NULL)
            return -ENOMEM;
        int rc = state_from(r, &rd, s);
        if (rc != 0)
            return rc;
    }
    return rd.bad ? 1 : 0;
}
