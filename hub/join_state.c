#include "join_state.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_TIME INT64_MIN

/* --- hashing --------------------------------------------------------------- */

/* FNV-1a (64-bit) followed by a 64-bit finalising mix, so that low bits index tables well. */
uint64_t
bh_jstate_hash(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* NEWEST - AT >= SPAN, without overflow (false when AT is not older than NEWEST). */
static int
older_than(int64_t newest, int64_t at, int64_t span)
{
    if (at >= newest)
        return span <= 0;
    return (uint64_t)newest - (uint64_t)at >= (uint64_t)span;
}

static int
grow(void **p, uint32_t *cap, uint32_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    uint32_t c = *cap ? *cap : 4;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (q == NULL)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* --- type names ------------------------------------------------------------ */

struct tname {
    char *name;
    size_t len;
};

struct tdept {
    struct tname *names;
    uint32_t n, cap;
    uint32_t *slots; /* id + 1; 0 empty */
    uint32_t nslots;
};

struct bh_jtypes {
    struct tdept *d;
    size_t ndepts;
};

#define MAX_TYPES 65536

int
bh_jtypes_new(struct bh_jtypes **out, size_t ndepts)
{
    struct bh_jtypes *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->d = calloc(ndepts ? ndepts : 1, sizeof(*t->d))) == NULL) {
        free(t);
        return -ENOMEM;
    }
    t->ndepts = ndepts;
    *out = t;
    return 0;
}

void
bh_jtypes_free(struct bh_jtypes *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->ndepts; i++) {
        for (uint32_t k = 0; k < t->d[i].n; k++)
            free(t->d[i].names[k].name);
        free(t->d[i].names);
        free(t->d[i].slots);
    }
    free(t->d);
    free(t);
}

static int
tdept_rehash(struct tdept *d)
{
    uint32_t n = d->nslots ? d->nslots * 2 : 16;
    uint32_t *s = calloc(n, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < d->n; i++) {
        uint32_t k = (uint32_t)bh_jstate_hash(d->names[i].name, d->names[i].len) & (n - 1);
        while (s[k] != 0)
            k = (k + 1) & (n - 1);
        s[k] = i + 1;
    }
    free(d->slots);
    d->slots = s;
    d->nslots = n;
    return 0;
}

int
bh_jtypes_intern(struct bh_jtypes *t, size_t dept, const char *name, size_t len, uint32_t *out)
{
    struct tdept *d = &t->d[dept];
    uint64_t h = bh_jstate_hash(name, len);
    if (d->nslots > 0) {
        for (uint32_t k = (uint32_t)h & (d->nslots - 1); d->slots[k] != 0;
             k = (k + 1) & (d->nslots - 1)) {
            const struct tname *tn = &d->names[d->slots[k] - 1];
            if (tn->len == len && memcmp(tn->name, name, len) == 0) {
                *out = d->slots[k] - 1;
                return 0;
            }
        }
    }
    if (d->n >= MAX_TYPES)
        return -ENOSPC;
    if (grow((void **)&d->names, &d->cap, d->n + 1, sizeof(*d->names)) < 0)
        return -ENOMEM;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, name, len);
    copy[len] = '\0';
    d->names[d->n].name = copy;
    d->names[d->n].len = len;
    d->n++;
    if (d->n * 2 > d->nslots) {
        if (tdept_rehash(d) < 0) {
            d->n--;
            free(copy);
            return -ENOMEM;
        }
    } else {
        uint32_t k = (uint32_t)h & (d->nslots - 1);
        while (d->slots[k] != 0)
            k = (k + 1) & (d->nslots - 1);
        d->slots[k] = d->n;
    }
    *out = d->n - 1;
    return 0;
}

const char *
bh_jtypes_name(const struct bh_jtypes *t, size_t dept, uint32_t id, size_t *len)
{
    const struct tdept *d = &t->d[dept];
    if (id >= d->n) {
        *len = 0;
        return "";
    }
    *len = d->names[id].len;
    return d->names[id].name;
}

/* --- the block table ------------------------------------------------------- */

struct bh_jstate {
    struct bh_jstate_conf conf;
    struct bh_jblock **slots; /* open addressing by hash */
    size_t nslots;
    struct bh_jblock **list; /* every block, in order of creation */
    size_t n, caplist;
    struct bh_jblock *dirty;
};

int
bh_jstate_new(struct bh_jstate **out, const struct bh_jstate_conf *conf)
{
    struct bh_jstate *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->conf = *conf;
    *out = s;
    return 0;
}

static void
dept_free(struct bh_jdept *d)
{
    free(d->last_id);
    free(d->types);
    free(d->win);
    free(d->set);
    free(d->fresh);
    for (uint32_t i = 0; i < d->nbatches; i++)
        free(d->batches[i].events);
    free(d->batches);
}

void
bh_jstate_free(struct bh_jstate *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        for (size_t d = 0; d < s->conf.ndepts; d++)
            dept_free(&s->list[i]->dept[d]);
        free(s->list[i]);
    }
    free(s->list);
    free(s->slots);
    free(s);
}

static int
table_grow(struct bh_jstate *s)
{
    size_t n = s->nslots ? s->nslots * 2 : 64;
    struct bh_jblock **t = calloc(n, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < s->n; i++) {
        size_t k = (size_t)s->list[i]->hash & (n - 1);
        while (t[k] != NULL)
            k = (k + 1) & (n - 1);
        t[k] = s->list[i];
    }
    free(s->slots);
    s->slots = t;
    s->nslots = n;
    return 0;
}

struct bh_jblock *
bh_jstate_block(struct bh_jstate *s, const char *id, size_t len, int create)
{
    uint64_t h = bh_jstate_hash(id, len);
    if (s->nslots > 0) {
        for (size_t k = (size_t)h & (s->nslots - 1); s->slots[k] != NULL;
             k = (k + 1) & (s->nslots - 1)) {
            struct bh_jblock *b = s->slots[k];
            if (b->hash == h && b->id_len == len && memcmp(b->id, id, len) == 0)
                return b;
        }
    }
    if (!create || len > UINT32_MAX)
        return NULL;
    if ((s->n + 1) * 2 > s->nslots && table_grow(s) < 0)
        return NULL;
    if (s->n == s->caplist) {
        size_t cap = s->caplist ? s->caplist * 2 : 64;
        struct bh_jblock **l = realloc(s->list, cap * sizeof(*l));
        if (l == NULL)
            return NULL;
        s->list = l;
        s->caplist = cap;
    }
    size_t depts = s->conf.ndepts * sizeof(struct bh_jdept);
    struct bh_jblock *b = calloc(1, sizeof(*b) + depts + len + 1);
    if (b == NULL)
        return NULL;
    b->id = (char *)b + sizeof(*b) + depts;
    memcpy(b->id, id, len);
    b->id_len = (uint32_t)len;
    b->hash = h;
    for (size_t d = 0; d < s->conf.ndepts; d++) {
        b->dept[d].newest = NO_TIME;
        b->dept[d].pruned_at = NO_TIME;
    }
    size_t k = (size_t)h & (s->nslots - 1);
    while (s->slots[k] != NULL)
        k = (k + 1) & (s->nslots - 1);
    s->slots[k] = b;
    s->list[s->n++] = b;
    return b;
}

size_t
bh_jstate_count(const struct bh_jstate *s)
{
    return s->n;
}

struct bh_jblock *
bh_jstate_at(const struct bh_jstate *s, size_t i)
{
    return i < s->n ? s->list[i] : NULL;
}

static void
mark_dirty(struct bh_jstate *s, struct bh_jblock *b)
{
    if (b->dirty)
        return;
    b->dirty = 1;
    b->next_dirty = s->dirty;
    s->dirty = b;
}

struct bh_jblock *
bh_jstate_take_dirty(struct bh_jstate *s)
{
    struct bh_jblock *l = s->dirty;
    s->dirty = NULL;
    for (struct bh_jblock *b = l; b != NULL; b = b->next_dirty)
        b->dirty = 0;
    return l;
}

int
bh_jstate_has_dirty(const struct bh_jstate *s)
{
    return s->dirty != NULL;
}

/* --- the dedup memory ------------------------------------------------------ */

static struct bh_jremember *
set_find(const struct bh_jdept *d, uint64_t h)
{
    if (d->capset == 0)
        return NULL;
    for (uint32_t k = (uint32_t)h & (d->capset - 1); d->set[k].hash != 0;
         k = (k + 1) & (d->capset - 1))
        if (d->set[k].hash == h)
            return &d->set[k];
    return NULL;
}

static void
set_place(struct bh_jremember *set, uint32_t cap, uint64_t h, int64_t at)
{
    uint32_t k = (uint32_t)h & (cap - 1);
    while (set[k].hash != 0)
        k = (k + 1) & (cap - 1);
    set[k].hash = h;
    set[k].at = at;
}

/*
 * Rebuild the table without the events beyond the horizon, sized so that
 * EXTRA more fit at a load of at most one half: pruning, growing and
 * shrinking in one pass.
 */
static int
set_rebuild(struct bh_jdept *d, int64_t horizon, uint32_t extra)
{
    uint32_t live = 0;
    for (uint32_t i = 0; i < d->capset; i++)
        live += d->set[i].hash != 0 && !older_than(d->newest, d->set[i].at, horizon);
    uint32_t cap = 8;
    while (cap < 2 * (live + extra))
        cap *= 2;
    struct bh_jremember *n = calloc(cap, sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < d->capset; i++)
        if (d->set[i].hash != 0 && !older_than(d->newest, d->set[i].at, horizon))
            set_place(n, cap, d->set[i].hash, d->set[i].at);
    free(d->set);
    d->set = n;
    d->capset = cap;
    d->nset = live;
    d->pruned_at = d->newest;
    return 0;
}

static int
remember(struct bh_jdept *d, uint64_t h, int64_t at, int64_t horizon)
{
    if (d->capset == 0 || (d->nset + 1) * 4 > d->capset * 3) {
        if (set_rebuild(d, horizon, 1) < 0)
            return -ENOMEM;
    }
    if (grow((void **)&d->fresh, &d->capfresh, d->nfresh + 1, sizeof(*d->fresh)) < 0)
        return -ENOMEM;
    set_place(d->set, d->capset, h, at);
    d->nset++;
    d->fresh[d->nfresh].hash = h;
    d->fresh[d->nfresh].at = at;
    d->nfresh++;
    return 0;
}

/* --- the window ------------------------------------------------------------ */

/* Move the live part of the window to the front of a new array of CAP slots. */
static int
win_resize(struct bh_jdept *d, uint32_t cap)
{
    uint32_t count = d->wend - d->whead;
    int64_t *w = malloc((size_t)cap * sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    if (count > 0)
        memcpy(w, d->win + d->whead, (size_t)count * sizeof(*w));
    free(d->win);
    d->win = w;
    d->wcap = cap;
    d->whead = 0;
    d->wend = count;
    return 0;
}

static int
win_insert(struct bh_jdept *d, int64_t at)
{
    if (d->wend == d->wcap) {
        uint32_t count = d->wend - d->whead;
        if (d->whead > 0 && count < d->wcap / 2) {
            memmove(d->win, d->win + d->whead, (size_t)count * sizeof(*d->win));
            d->whead = 0;
            d->wend = count;
        } else if (win_resize(d, d->wcap ? d->wcap * 2 : 8) < 0) {
            return -ENOMEM;
        }
    }
    /* Upper bound: events mostly arrive in order, so look from the end. */
    uint32_t lo = d->whead, hi = d->wend;
    if (hi > lo && d->win[hi - 1] > at) {
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (d->win[mid] <= at)
                lo = mid + 1;
            else
                hi = mid;
        }
        memmove(d->win + lo + 1, d->win + lo, (size_t)(d->wend - lo) * sizeof(*d->win));
        d->win[lo] = at;
    } else {
        d->win[d->wend] = at;
    }
    d->wend++;
    return 0;
}

static void
win_evict(struct bh_jdept *d, int64_t window)
{
    while (d->whead < d->wend && older_than(d->newest, d->win[d->whead], window))
        d->whead++;
    uint32_t count = d->wend - d->whead;
    if (d->wcap > 64 && count * 4 < d->wcap) {
        /* Give memory back after a burst. */
        uint32_t cap = 8;
        while (cap < count * 2)
            cap *= 2;
        win_resize(d, cap); /* on failure the larger array simply stays */
    }
}

/* --- applying an event ----------------------------------------------------- */

static int
id_greater(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c > 0 || (c == 0 && alen > blen);
}

static int
set_last(struct bh_jdept *d, const char *id, size_t len, int64_t at)
{
    if (len >= UINT32_MAX)
        return -EINVAL;
    if (d->last_id == NULL || len + 1 > d->last_cap) {
        /* Ids of a department are alike: the buffer rarely grows twice. */
        uint32_t cap = (uint32_t)len + 1 < 32 ? 32 : (uint32_t)len + 1;
        char *p = realloc(d->last_id, cap);
        if (p == NULL)
            return -ENOMEM;
        d->last_id = p;
        d->last_cap = cap;
    }
    memcpy(d->last_id, id, len);
    d->last_id[len] = '\0';
    d->last_id_len = (uint32_t)len;
    d->last_at = at;
    return 0;
}

static int
count_type(struct bh_jdept *d, uint32_t type, int64_t n)
{
    for (uint32_t i = 0; i < d->ntypes; i++) {
        if (d->types[i].type == type) {
            /* a changelog listing a type twice: add without overflowing */
            if (__builtin_add_overflow(d->types[i].count, n, &d->types[i].count))
                return -EBADMSG;
            return 0;
        }
    }
    if (grow((void **)&d->types, &d->captypes, d->ntypes + 1, sizeof(*d->types)) < 0)
        return -ENOMEM;
    d->types[d->ntypes].type = type;
    d->types[d->ntypes].count = n;
    d->ntypes++;
    return 0;
}

int
bh_jstate_apply(struct bh_jstate *s, struct bh_jblock *b, size_t dept, const char *id,
                size_t id_len, uint32_t type, int64_t at, int64_t now)
{
    struct bh_jdept *d = &b->dept[dept];
    const int64_t horizon = s->conf.horizon_ms, window = s->conf.window_ms;
    uint64_t h = bh_jstate_hash(id, id_len);
    if (h == 0)
        h = 1;
    if (d->newest != NO_TIME) {
        const struct bh_jremember *r = set_find(d, h);
        /* Only what is within the horizon counts as remembered: a restore keeps no more. */
        if (r != NULL && !older_than(d->newest, r->at, horizon))
            return 0;
    }
    /* Everything that can fail first, so a failure changes nothing visible. */
    if (grow((void **)&d->types, &d->captypes, d->ntypes + 1, sizeof(*d->types)) < 0)
        return -ENOMEM;
    int64_t old_newest = d->newest;
    if (d->newest == NO_TIME || at > d->newest)
        d->newest = at;
    if (!older_than(d->newest, at, horizon) && remember(d, h, at, horizon) < 0)
        goto oom;
    if (!older_than(d->newest, at, window) && win_insert(d, at) < 0)
        goto oom;
    if ((d->last_id == NULL || at > d->last_at ||
         (at == d->last_at && id_greater(id, id_len, d->last_id, d->last_id_len))) &&
        set_last(d, id, id_len, at) < 0)
        goto oom;
    count_type(d, type, 1);
    d->total++;
    win_evict(d, window);
    if (d->pruned_at == NO_TIME)
        d->pruned_at = d->newest;
    else if (older_than(d->newest, d->pruned_at, horizon / 8 > 0 ? horizon / 8 : 1))
        set_rebuild(d, horizon, 0); /* on failure the table just stays as it is */
    b->updated_at = now;
    mark_dirty(s, b);
    return 1;
oom:
    /* The event was not counted, but it may be remembered: the caller rebuilds the state. */
    d->newest = old_newest;
    return -ENOMEM;
}

/* --- views ----------------------------------------------------------------- */

size_t
bh_jstate_type_slots(const struct bh_jblock *b, size_t ndepts)
{
    size_t n = 0;
    for (size_t d = 0; d < ndepts; d++)
        n += b->dept[d].ntypes;
    return n;
}

void
bh_jstate_view(const struct bh_jstate *s, const struct bh_jblock *b, struct bh_jview *v,
               struct bh_jview_dept *depts, struct bh_jview_type *types)
{
    memset(v, 0, sizeof(*v));
    v->block_id = b->id;
    v->block_id_len = b->id_len;
    v->updated_at = b->updated_at;
    v->window_ms = s->conf.window_ms;
    v->depts = depts;
    for (size_t i = 0; i < s->conf.ndepts; i++) {
        const struct bh_jdept *d = &b->dept[i];
        struct bh_jview_dept *o = &depts[i];
        o->total = d->total;
        o->window_total = bh_jstate_window_total(d);
        o->types = types;
        o->ntypes = d->ntypes;
        for (uint32_t t = 0; t < d->ntypes; t++) {
            types[t].name = bh_jtypes_name(s->conf.types, i, d->types[t].type, &types[t].len);
            types[t].count = d->types[t].count;
        }
        types += d->ntypes;
        o->last_id = d->last_id;
        o->last_id_len = d->last_id_len;
        o->last_at = d->last_at;
    }
}

/* --- writing the changelog --------------------------------------------------- */

static void
batch_key(struct bh_jbuf *k, const struct bh_jblock *b, const char *dept, int64_t seq)
{
    char num[24];
    const char sep = BH_JSTATE_KEY_SEP;
    int n = snprintf(num, sizeof(num), "%" PRId64, seq);
    bh_jbuf_reset(k);
    bh_jbuf_raw(k, b->id, b->id_len);
    bh_jbuf_raw(k, &sep, 1);
    bh_jbuf_raw(k, dept, strlen(dept));
    bh_jbuf_raw(k, &sep, 1);
    bh_jbuf_raw(k, num, (size_t)n);
}

/* A DedupBatch of EVENTS (those beyond the horizon left out when WHOLE_SET). */
static int
write_batch(struct bh_jstate *s, struct bh_jblock *b, size_t di, const struct bh_jremember *ev,
            uint32_t n, int whole_set, struct bh_jbuf *buf, struct bh_jbuf *key, bh_jemit_fn emit,
            void *ctx)
{
    struct bh_jdept *d = &b->dept[di];
    const char *dept = s->conf.depts[di];
    int64_t seq = d->next_batch, newest = NO_TIME;
    uint32_t live = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (ev[i].hash == 0 || (whole_set && older_than(d->newest, ev[i].at, s->conf.horizon_ms)))
            continue;
        live++;
        newest = ev[i].at > newest ? ev[i].at : newest;
    }
    if (live == 0)
        return 0;
    if (grow((void **)&d->batches, &d->capbatches, d->nbatches + 1, sizeof(*d->batches)) < 0)
        return -ENOMEM;
    bh_jbuf_reset(buf);
    bh_jbuf_header(buf, s->conf.batch_fp);
    bh_jbuf_string(buf, b->id, b->id_len);
    bh_jbuf_string(buf, dept, strlen(dept));
    bh_jbuf_long(buf, seq);
    bh_jbuf_long(buf, live);
    for (uint32_t i = 0; i < n; i++) {
        if (ev[i].hash == 0 || (whole_set && older_than(d->newest, ev[i].at, s->conf.horizon_ms)))
            continue;
        bh_jbuf_long(buf, (int64_t)ev[i].hash);
        bh_jbuf_long(buf, ev[i].at);
    }
    bh_jbuf_long(buf, 0);
    batch_key(key, b, dept, seq);
    if (buf->oom || key->oom)
        return -ENOMEM;
    int rc = emit(ctx, key->p, key->len, buf->p, buf->len);
    if (rc < 0)
        return rc;
    d->batches[d->nbatches].seq = seq;
    d->batches[d->nbatches].newest = newest;
    d->batches[d->nbatches].events = NULL;
    d->batches[d->nbatches].nevents = 0;
    d->nbatches++;
    d->next_batch++;
    return 0;
}

static int
tombstone(struct bh_jstate *s, struct bh_jblock *b, size_t di, int64_t seq, struct bh_jbuf *key,
          bh_jemit_fn emit, void *ctx)
{
    batch_key(key, b, s->conf.depts[di], seq);
    if (key->oom)
        return -ENOMEM;
    return emit(ctx, key->p, key->len, NULL, 0);
}

static int
write_dedup(struct bh_jstate *s, struct bh_jblock *b, size_t di, struct bh_jbuf *buf,
            struct bh_jbuf *key, bh_jemit_fn emit, void *ctx)
{
    struct bh_jdept *d = &b->dept[di];
    int rc = 0;
    if (d->nfresh >= BH_JSTATE_RECENT) {
        /* The block's own record carries the recent ones; enough of them make a batch. */
        rc = write_batch(s, b, di, d->fresh, d->nfresh, 0, buf, key, emit, ctx);
        if (rc < 0)
            return rc;
        d->nfresh = 0;
        if (d->capfresh > 4 * BH_JSTATE_RECENT) {
            /* A burst's list is not kept for the next one. */
            free(d->fresh);
            d->fresh = NULL;
            d->capfresh = 0;
        }
    }
    for (uint32_t i = 0; i < d->nbatches && rc == 0;) {
        if (!older_than(d->newest, d->batches[i].newest, s->conf.horizon_ms)) {
            i++;
            continue;
        }
        rc = tombstone(s, b, di, d->batches[i].seq, key, emit, ctx);
        d->batches[i] = d->batches[--d->nbatches];
    }
    if (rc == 0 && d->nbatches > BH_JSTATE_MAX_BATCHES) {
        /* One batch with the whole memory replaces the others. */
        uint32_t old = d->nbatches;
        rc = write_batch(s, b, di, d->set, d->capset, 1, buf, key, emit, ctx);
        for (uint32_t i = 0; rc == 0 && i < old; i++)
            rc = tombstone(s, b, di, d->batches[i].seq, key, emit, ctx);
        if (rc == 0) {
            memmove(d->batches, d->batches + old, (d->nbatches - old) * sizeof(*d->batches));
            d->nbatches -= old;
            d->nfresh = 0; /* the merged batch holds them too */
        }
    }
    return rc;
}

int
bh_jstate_write(struct bh_jstate *s, struct bh_jblock *b, struct bh_jbuf *buf, struct bh_jbuf *key,
                bh_jemit_fn emit, void *ctx)
{
    int rc = 0;
    size_t active = 0;
    for (size_t i = 0; i < s->conf.ndepts && rc == 0; i++) {
        if (b->dept[i].newest == NO_TIME)
            continue;
        active++;
        rc = write_dedup(s, b, i, buf, key, emit, ctx);
    }
    if (rc < 0)
        return rc;
    bh_jbuf_reset(buf);
    bh_jbuf_header(buf, s->conf.state_fp);
    bh_jbuf_string(buf, b->id, b->id_len);
    bh_jbuf_long(buf, b->updated_at);
    if (active > 0) {
        bh_jbuf_long(buf, (int64_t)active);
        for (size_t i = 0; i < s->conf.ndepts; i++) {
            const struct bh_jdept *d = &b->dept[i];
            if (d->newest == NO_TIME)
                continue;
            bh_jbuf_string(buf, s->conf.depts[i], strlen(s->conf.depts[i]));
            bh_jbuf_long(buf, d->total);
            if (d->ntypes > 0) {
                bh_jbuf_long(buf, d->ntypes);
                for (uint32_t t = 0; t < d->ntypes; t++) {
                    size_t len;
                    const char *name = bh_jtypes_name(s->conf.types, i, d->types[t].type, &len);
                    bh_jbuf_string(buf, name, len);
                    bh_jbuf_long(buf, d->types[t].count);
                }
            }
            bh_jbuf_long(buf, 0);
            bh_jbuf_long(buf, d->newest);
            bh_jbuf_string(buf, d->last_id, d->last_id_len);
            bh_jbuf_long(buf, d->last_at);
            bh_jbuf_long(buf, d->next_batch);
            if (d->nfresh > 0) {
                bh_jbuf_long(buf, d->nfresh);
                for (uint32_t k = 0; k < d->nfresh; k++) {
                    bh_jbuf_long(buf, (int64_t)d->fresh[k].hash);
                    bh_jbuf_long(buf, d->fresh[k].at);
                }
            }
            bh_jbuf_long(buf, 0);
        }
    }
    bh_jbuf_long(buf, 0);
    if (buf->oom)
        return -ENOMEM;
    return emit(ctx, b->id, b->id_len, buf->p, buf->len);
}

/* --- restoring ------------------------------------------------------------- */

static int
dept_index(const struct bh_jstate *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->conf.ndepts; i++)
        if (strlen(s->conf.depts[i]) == len && memcmp(s->conf.depts[i], name, len) == 0)
            return (int)i;
    return -1;
}

static void
dept_reset_counts(struct bh_jdept *d)
{
    d->nfresh = 0;
    d->total = 0;
    d->ntypes = 0;
    d->newest = NO_TIME;
    free(d->last_id);
    d->last_id = NULL;
    d->last_id_len = 0;
    d->last_cap = 0;
    d->last_at = 0;
}

/* One department of a BlockState: counts go to D, or nowhere when D is NULL. */
static int
restore_dept(struct bh_jstate *s, struct bh_jdept *d, size_t di, struct bh_jreader *r)
{
    if (d != NULL)
        dept_reset_counts(d);
    int64_t total = bh_jread_long(r);
    for (;;) {
        int64_t n = bh_jread_long(r);
        if (r->bad || n == 0)
            break;
        if (n < 0) {
            bh_jread_long(r); /* block byte size */
            if (n == INT64_MIN) {
                r->bad = 1;
                break;
            }
            n = -n;
        }
        for (int64_t i = 0; i < n && !r->bad; i++) {
            const char *name;
            size_t len;
            bh_jread_string(r, &name, &len);
            int64_t count = bh_jread_long(r);
            uint32_t type;
            if (r->bad || d == NULL)
                continue;
            if (bh_jtypes_intern(s->conf.types, di, name, len, &type) < 0)
                return -ENOMEM;
            int rc = count_type(d, type, count);
            if (rc < 0)
                return rc;
        }
    }
    int64_t newest = bh_jread_long(r);
    const char *last;
    size_t last_len;
    bh_jread_string(r, &last, &last_len);
    int64_t last_at = bh_jread_long(r);
    int64_t next_batch = bh_jread_long(r);
    if (d != NULL)
        d->nfresh = 0;
    for (;;) {
        int64_t n = bh_jread_long(r);
        if (r->bad || n == 0)
            break;
        if (n < 0) {
            bh_jread_long(r);
            if (n == INT64_MIN) {
                r->bad = 1;
                break;
            }
            n = -n;
        }
        if (n > (r->end - r->p) / 2) {
            r->bad = 1;
            break;
        }
        if (d != NULL &&
            grow((void **)&d->fresh, &d->capfresh, d->nfresh + (uint32_t)n, sizeof(*d->fresh)) < 0)
            return -ENOMEM;
        for (int64_t i = 0; i < n && !r->bad; i++) {
            uint64_t h = (uint64_t)bh_jread_long(r);
            int64_t at = bh_jread_long(r);
            if (d == NULL)
                continue;
            d->fresh[d->nfresh].hash = h ? h : 1;
            d->fresh[d->nfresh].at = at;
            d->nfresh++;
        }
    }
    if (r->bad)
        return -EBADMSG;
    if (d == NULL)
        return 0;
    d->total = total;
    d->newest = newest;
    d->next_batch = next_batch > d->next_batch ? next_batch : d->next_batch;
    return set_last(d, last, last_len, last_at);
}

static int
restore_state(struct bh_jstate *s, const char *key, size_t keylen, struct bh_jreader *r,
              size_t *skipped)
{
    const char *id;
    size_t id_len;
    bh_jread_string(r, &id, &id_len);
    int64_t updated_at = bh_jread_long(r);
    if (r->bad || id_len != keylen || memcmp(id, key, keylen) != 0)
        return -EBADMSG;
    struct bh_jblock *b = bh_jstate_block(s, id, id_len, 1);
    if (b == NULL)
        return -ENOMEM;
    b->updated_at = updated_at;
    for (size_t i = 0; i < s->conf.ndepts; i++)
        dept_reset_counts(&b->dept[i]);
    for (;;) {
        int64_t n = bh_jread_long(r);
        if (r->bad || n == 0)
            break;
        if (n < 0) {
            bh_jread_long(r);
            if (n == INT64_MIN) {
                r->bad = 1;
                break;
            }
            n = -n;
        }
        for (int64_t i = 0; i < n && !r->bad; i++) {
            const char *name;
            size_t len;
            bh_jread_string(r, &name, &len);
            int di = r->bad ? -1 : dept_index(s, name, len);
            if (di < 0)
                ++*skipped;
            int rc = restore_dept(s, di >= 0 ? &b->dept[di] : NULL, di >= 0 ? (size_t)di : 0, r);
            if (rc < 0)
                return rc;
        }
    }
    return r->bad || r->p != r->end ? -EBADMSG : 0;
}

static struct bh_jbatch *
find_batch(struct bh_jdept *d, int64_t seq)
{
    for (uint32_t i = 0; i < d->nbatches; i++)
        if (d->batches[i].seq == seq)
            return &d->batches[i];
    return NULL;
}

static void
forget_batch(struct bh_jdept *d, int64_t seq)
{
    struct bh_jbatch *x = find_batch(d, seq);
    if (x == NULL)
        return;
    free(x->events);
    *x = d->batches[--d->nbatches];
}

static int
restore_batch(struct bh_jstate *s, const char *key, size_t keylen, struct bh_jreader *r,
              size_t *skipped)
{
    const char *id, *dept;
    size_t id_len, dept_len;
    bh_jread_string(r, &id, &id_len);
    bh_jread_string(r, &dept, &dept_len);
    int64_t seq = bh_jread_long(r);
    if (r->bad || keylen <= id_len || memcmp(key, id, id_len) != 0)
        return -EBADMSG;
    int di = dept_index(s, dept, dept_len);
    if (di < 0) {
        ++*skipped;
        return 0;
    }
    struct bh_jblock *b = bh_jstate_block(s, id, id_len, 1);
    if (b == NULL)
        return -ENOMEM;
    struct bh_jdept *d = &b->dept[di];
    forget_batch(d, seq);
    struct bh_jremember *ev = NULL;
    uint32_t n = 0, cap = 0;
    int64_t newest = NO_TIME;
    for (;;) {
        int64_t count = bh_jread_long(r);
        if (r->bad || count == 0)
            break;
        if (count < 0) {
            bh_jread_long(r);
            if (count == INT64_MIN) {
                r->bad = 1;
                break;
            }
            count = -count;
        }
        if (count > (r->end - r->p) / 2 ||
            grow((void **)&ev, &cap, n + (uint32_t)count, sizeof(*ev)) < 0) {
            r->bad = 1;
            break;
        }
        for (int64_t i = 0; i < count && !r->bad; i++) {
            ev[n].hash = (uint64_t)bh_jread_long(r);
            ev[n].at = bh_jread_long(r);
            if (ev[n].hash == 0)
                ev[n].hash = 1;
            newest = ev[n].at > newest ? ev[n].at : newest;
            n++;
        }
    }
    if (r->bad || r->p != r->end ||
        grow((void **)&d->batches, &d->capbatches, d->nbatches + 1, sizeof(*d->batches)) < 0) {
        free(ev);
        return r->bad || r->p != r->end ? -EBADMSG : -ENOMEM;
    }
    struct bh_jbatch *x = &d->batches[d->nbatches++];
    x->seq = seq;
    x->newest = newest;
    x->events = ev;
    x->nevents = n;
    if (seq >= d->next_batch)
        d->next_batch = seq + 1;
    return 0;
}

/* A tombstone: "block SEP department SEP seq". */
static int
restore_tombstone(struct bh_jstate *s, const char *key, size_t keylen)
{
    const char *end = key + keylen, *p2 = NULL, *p1 = NULL;
    for (const char *p = end; p > key; p--) {
        if (p[-1] != BH_JSTATE_KEY_SEP)
            continue;
        if (p2 == NULL) {
            p2 = p - 1;
        } else {
            p1 = p - 1;
            break;
        }
    }
    if (p1 == NULL) /* a block's own record is never deleted */
        return -EBADMSG;
    char num[24];
    size_t nlen = (size_t)(end - p2 - 1);
    if (nlen == 0 || nlen >= sizeof(num))
        return -EBADMSG;
    memcpy(num, p2 + 1, nlen);
    num[nlen] = '\0';
    char *stop;
    long long seq = strtoll(num, &stop, 10);
    if (*stop != '\0')
        return -EBADMSG;
    int di = dept_index(s, p1 + 1, (size_t)(p2 - p1 - 1));
    struct bh_jblock *b = bh_jstate_block(s, key, (size_t)(p1 - key), 0);
    if (di >= 0 && b != NULL)
        forget_batch(&b->dept[di], seq);
    return 0;
}

int
bh_jstate_restore(struct bh_jstate *s, const void *key, size_t keylen, const void *value,
                  size_t len, size_t *skipped)
{
    if (key == NULL)
        return -EBADMSG;
    if (value == NULL)
        return restore_tombstone(s, key, keylen);
    uint64_t fp;
    if (bh_jread_header(value, len, &fp) < 0)
        return -EBADMSG;
    struct bh_jreader r = {(const uint8_t *)value + BH_SINGLE_OBJECT_HEADER,
                           (const uint8_t *)value + len, 0};
    if (fp == s->conf.state_fp)
        return restore_state(s, key, keylen, &r, skipped);
    if (fp == s->conf.batch_fp)
        return restore_batch(s, key, keylen, &r, skipped);
    return -EBADMSG;
}

static int
cmp_time(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int
finish_dept(struct bh_jstate *s, struct bh_jdept *d)
{
    const int64_t horizon = s->conf.horizon_ms, window = s->conf.window_ms;
    int rc = 0;
    free(d->set);
    d->set = NULL;
    d->capset = d->nset = 0;
    d->whead = d->wend = 0;
    if (d->newest == NO_TIME) {
        d->nfresh = 0;
        /* Batches without the block's own record: nothing was counted. */
        for (uint32_t i = 0; i < d->nbatches; i++)
            free(d->batches[i].events);
        d->nbatches = 0;
        return 0;
    }
    uint32_t total = d->nfresh;
    for (uint32_t i = 0; i < d->nbatches; i++)
        total += d->batches[i].nevents;
    rc = set_rebuild(d, horizon, total);
    for (uint32_t k = 0; rc == 0 && k < d->nfresh; k++) {
        const struct bh_jremember *e = &d->fresh[k];
        if (older_than(d->newest, e->at, horizon) || set_find(d, e->hash) != NULL)
            continue;
        set_place(d->set, d->capset, e->hash, e->at);
        d->nset++;
    }
    for (uint32_t i = 0; rc == 0 && i < d->nbatches; i++) {
        struct bh_jbatch *x = &d->batches[i];
        for (uint32_t k = 0; k < x->nevents; k++) {
            const struct bh_jremember *e = &x->events[k];
            if (older_than(d->newest, e->at, horizon) || set_find(d, e->hash) != NULL)
                continue;
            set_place(d->set, d->capset, e->hash, e->at);
            d->nset++;
        }
    }
    for (uint32_t i = 0; i < d->nbatches; i++) {
        free(d->batches[i].events);
        d->batches[i].events = NULL;
        d->batches[i].nevents = 0;
    }
    if (rc < 0)
        return rc;
    /* The window is the remembered events within it (window <= horizon). */
    for (uint32_t i = 0; i < d->capset; i++) {
        const struct bh_jremember *e = &d->set[i];
        if (e->hash == 0 || older_than(d->newest, e->at, window))
            continue;
        if (d->wend == d->wcap) {
            uint32_t cap = d->wcap ? d->wcap * 2 : 8;
            int64_t *w = realloc(d->win, (size_t)cap * sizeof(*w));
            if (w == NULL)
                return -ENOMEM;
            d->win = w;
            d->wcap = cap;
        }
        d->win[d->wend++] = e->at;
    }
    if (d->wend > 1)
        qsort(d->win, d->wend, sizeof(*d->win), cmp_time);
    d->pruned_at = d->newest;
    return 0;
}

int
bh_jstate_restore_finish(struct bh_jstate *s)
{
    for (size_t i = 0; i < s->n; i++) {
        for (size_t d = 0; d < s->conf.ndepts; d++) {
            int rc = finish_dept(s, &s->list[i]->dept[d]);
            if (rc < 0)
                return rc;
        }
    }
    bh_jstate_take_dirty(s);
    return 0;
}

/* --- memory ----------------------------------------------------------------- */

void
bh_jstate_usage(const struct bh_jstate *s, struct bh_jstate_usage *u)
{
    memset(u, 0, sizeof(*u));
    u->blocks = s->n;
    u->bytes = sizeof(*s) + s->nslots * sizeof(*s->slots) + s->caplist * sizeof(*s->list);
    for (size_t i = 0; i < s->n; i++) {
        const struct bh_jblock *b = s->list[i];
        u->bytes += sizeof(*b) + s->conf.ndepts * sizeof(b->dept[0]) + b->id_len + 1;
        for (size_t k = 0; k < s->conf.ndepts; k++) {
            const struct bh_jdept *d = &b->dept[k];
            size_t set = (size_t)d->capset * sizeof(*d->set);
            u->remembered += d->nset;
            u->windowed += d->wend - d->whead;
            u->set_bytes += set;
            u->bytes += set + (size_t)d->capfresh * sizeof(*d->fresh) +
                        (size_t)d->wcap * sizeof(*d->win) +
                        (size_t)d->captypes * sizeof(*d->types) +
                        (size_t)d->capbatches * sizeof(*d->batches) + d->last_cap;
        }
    }
}
