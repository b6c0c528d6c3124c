#include "join_state.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mix64.h"

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
    return bh_mix64(h);
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

/* --- staging: remembered events not yet in the store ---------------------------
 *
 * One table: every event remembered since the last flush, tagged with the
 * generation of the transaction that carries it (the running one, the one
 * being committed, or one committed since), so that a lookup costs one probe.
 */

struct sent {
    uint64_t bh, ih;
    int64_t at;
    uint32_t dept1; /* dept + 1; 0: an empty slot */
    uint32_t gen;
};

struct stage {
    struct sent *e;
    size_t n, cap; /* cap: 0 or a power of two */
};

static size_t
stage_slot(uint64_t bh, size_t dept, uint64_t ih)
{
    uint64_t x = bh ^ ih * 0x9E3779B97F4A7C15ULL ^ (uint64_t)dept << 56;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static struct sent *
stage_find(const struct stage *t, uint64_t bh, size_t dept, uint64_t ih)
{
    if (t->n == 0)
        return NULL;
    for (size_t k = stage_slot(bh, dept, ih) & (t->cap - 1); t->e[k].dept1 != 0;
         k = (k + 1) & (t->cap - 1)) {
        const struct sent *e = &t->e[k];
        if (e->ih == ih && e->bh == bh && e->dept1 == dept + 1)
            return &t->e[k];
    }
    return NULL;
}

static void
stage_place(struct sent *e, size_t cap, const struct sent *x)
{
    size_t k = stage_slot(x->bh, x->dept1 - 1, x->ih) & (cap - 1);
    while (e[k].dept1 != 0)
        k = (k + 1) & (cap - 1);
    e[k] = *x;
}

/*
 * Rebuild the table with all its entries (KEEP_ALL) or those of a generation
 * after KEEP_AFTER only, sized for EXTRA more at a load of at most one half.
 */
static int
stage_rebuild(struct stage *t, int keep_all, uint32_t keep_after, size_t extra)
{
    size_t live = 0;
    for (size_t i = 0; i < t->cap; i++)
        live += t->e[i].dept1 != 0 && (keep_all || t->e[i].gen > keep_after);
    size_t cap = 256;
    while (cap < 2 * (live + extra))
        cap *= 2;
    if (cap == t->cap) {
        /*
         * The same size (after a flush): cleared in place, so no new pages to
         * touch (a fresh table of a million entries costs its page faults);
         * the entries kept wait on the stack, or in a heap array when many.
         */
        struct sent small[1024], *keep = small;
        if (live > sizeof(small) / sizeof(small[0]) &&
            (keep = malloc(live * sizeof(*keep))) == NULL)
            return -ENOMEM;
        size_t n = 0;
        for (size_t i = 0; i < t->cap && n < live; i++)
            if (t->e[i].dept1 != 0 && (keep_all || t->e[i].gen > keep_after))
                keep[n++] = t->e[i];
        memset(t->e, 0, t->cap * sizeof(*t->e));
        for (size_t i = 0; i < n; i++)
            stage_place(t->e, t->cap, &keep[i]);
        t->n = n;
        if (keep != small)
            free(keep);
        return 0;
    }
    struct sent *e = calloc(cap, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
        if (t->e[i].dept1 != 0 && (keep_all || t->e[i].gen > keep_after))
            stage_place(e, cap, &t->e[i]);
    free(t->e);
    t->e = e;
    t->cap = cap;
    t->n = live;
    return 0;
}

/* Room for one more at a load of at most one half. */
static int
stage_reserve(struct stage *t)
{
    if ((t->n + 1) * 2 <= t->cap)
        return 0;
    return stage_rebuild(t, 1, 0, t->n + 1);
}

/* --- the block table ------------------------------------------------------- */

struct bh_jstate {
    struct bh_jstate_conf conf;
    struct bh_jblock **slots; /* open addressing by hash */
    size_t nslots;
    struct bh_jblock **list; /* every block, in order of creation */
    size_t n, caplist;
    struct bh_jblock *dirty;
    int64_t *pn;                 /* per department: the partition's newest event time */
    int64_t *pn_commit;          /* the same when the transaction being committed began */
    struct stage stage;          /* remembered since the last flush */
    uint32_t gen;                /* the generation of the running transaction */
    int committing;              /* a transaction (generation gen - 1) is being committed */
    struct bh_jblock *unflushed; /* blocks changed since the last flush */
    struct bh_jstore_batch *sb;  /* where store writes go (bh_jstate_set_batch) */
};

int
bh_jstate_new(struct bh_jstate **out, const struct bh_jstate_conf *conf)
{
    struct bh_jstate *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->conf = *conf;
    size_t n = conf->ndepts ? conf->ndepts : 1;
    s->pn = malloc(n * sizeof(*s->pn));
    s->pn_commit = malloc(n * sizeof(*s->pn_commit));
    if (s->pn == NULL || s->pn_commit == NULL) {
        free(s->pn);
        free(s->pn_commit);
        free(s);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        s->pn[i] = s->pn_commit[i] = NO_TIME;
    *out = s;
    return 0;
}

static void
dept_free(struct bh_jdept *d)
{
    free(d->last_id);
    free(d->types);
    free(d->win);
    free(d->fresh);
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
    free(s->pn);
    free(s->pn_commit);
    free(s->stage.e);
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
    for (size_t d = 0; d < s->conf.ndepts; d++)
        b->dept[d].newest = NO_TIME;
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

int64_t
bh_jstate_newest(const struct bh_jstate *s, size_t dept)
{
    return dept < s->conf.ndepts ? s->pn[dept] : NO_TIME;
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

static int64_t
type_count_of(const struct bh_jdept *d, uint32_t type)
{
    for (uint32_t i = 0; i < d->ntypes; i++)
        if (d->types[i].type == type)
            return d->types[i].count;
    return 0;
}

static int
count_type(struct bh_jdept *d, uint32_t type, int64_t n)
{
    for (uint32_t i = 0; i < d->ntypes; i++) {
        if (d->types[i].type == type) {
            d->types[i].count += n;
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

/* Beyond the retention of department DEPT: older than the partition's newest by it or more. */
static int
too_late(const struct bh_jstate *s, size_t dept, int64_t at)
{
    int64_t pn = s->pn[dept];
    return pn != NO_TIME && older_than(pn, at, s->conf.retention_ms);
}

static uint64_t
id_hash(const char *id, size_t len)
{
    uint64_t h = bh_jstate_hash(id, len);
    return h ? h : 1;
}

int
bh_jstate_wants_lookup(const struct bh_jstate *s, const struct bh_jblock *b, size_t dept,
                       const char *id, size_t id_len, int64_t at, struct bh_jstore_key *key)
{
    if (s->conf.store == NULL || too_late(s, dept, at))
        return 0;
    uint64_t h = id_hash(id, id_len);
    if (stage_find(&s->stage, b->hash, dept, h) != NULL)
        return 0;
    key->partition = s->conf.partition;
    key->dept = (unsigned)dept;
    key->block_hash = b->hash;
    key->id_hash = h;
    return 1;
}

int
bh_jstate_apply(struct bh_jstate *s, struct bh_jblock *b, size_t dept, const char *id,
                size_t id_len, uint32_t type, int64_t at, int64_t now)
{
    return bh_jstate_apply_seen(s, b, dept, id, id_len, type, at, now, NULL);
}

int
bh_jstate_apply_seen(struct bh_jstate *s, struct bh_jblock *b, size_t dept, const char *id,
                     size_t id_len, uint32_t type, int64_t at, int64_t now,
                     const struct bh_jseen *seen)
{
    struct bh_jdept *d = &b->dept[dept];
    const int64_t window = s->conf.window_ms;
    if (too_late(s, dept, at))
        return BH_JSTATE_TOO_LATE;
    uint64_t h = id_hash(id, id_len);
    /*
     * Remembered: in a staging table or in the store. A remembered event whose
     * time has since fallen beyond the retention is forgotten, whether or not
     * the store dropped it yet, so that the answer does not depend on when the
     * store compacts.
     */
    const struct sent *e = stage_find(&s->stage, b->hash, dept, h);
    if (e != NULL) {
        if (!too_late(s, dept, e->at))
            return BH_JSTATE_COPY;
    } else {
        int64_t seen_at = seen != NULL ? seen->at : 0;
        int rc = seen != NULL            ? seen->found
                 : s->conf.store == NULL ? 0
                                         : bh_jstore_lookup(s->conf.store, s->conf.partition,
                                                            b->hash, (unsigned)dept, h, &seen_at);
        if (rc < 0)
            return rc;
        if (rc == 1 && !too_late(s, dept, seen_at))
            return BH_JSTATE_COPY;
    }
    /* Everything that can fail first, so a failure changes nothing visible. */
    if (grow((void **)&d->types, &d->captypes, d->ntypes + 1, sizeof(*d->types)) < 0 ||
        grow((void **)&d->fresh, &d->capfresh, d->nfresh + 1, sizeof(*d->fresh)) < 0 ||
        stage_reserve(&s->stage) < 0)
        return -ENOMEM;
    int64_t old_newest = d->newest;
    if (d->newest == NO_TIME || at > d->newest)
        d->newest = at;
    if (!older_than(d->newest, at, window) && win_insert(d, at) < 0) {
        d->newest = old_newest;
        return -ENOMEM;
    }
    if ((d->last_id == NULL || at > d->last_at ||
         (at == d->last_at && id_greater(id, id_len, d->last_id, d->last_id_len))) &&
        set_last(d, id, id_len, at) < 0) {
        /* Counted in the window but not below: the caller rebuilds the state. */
        d->newest = old_newest;
        return -ENOMEM;
    }
    count_type(d, type, 1);
    d->total++;
    win_evict(d, window);
    d->fresh[d->nfresh].hash = h;
    d->fresh[d->nfresh].at = at;
    d->nfresh++;
    struct sent *x = stage_find(&s->stage, b->hash, dept, h);
    if (x != NULL) {
        /* remembered again after it had fallen beyond the retention: this transaction's */
        x->at = at;
        x->gen = s->gen;
    } else {
        const struct sent n = {b->hash, h, at, (uint32_t)dept + 1, s->gen};
        stage_place(s->stage.e, s->stage.cap, &n);
        s->stage.n++;
    }
    if (s->pn[dept] == NO_TIME || at > s->pn[dept])
        s->pn[dept] = at;
    b->updated_at = now;
    mark_dirty(s, b);
    return BH_JSTATE_COUNTED;
}

/* --- committing -------------------------------------------------------------- */

int
bh_jstate_commit_begin(struct bh_jstate *s)
{
    /* The last commit must be done before the next begins. */
    if (s->committing)
        return -EBUSY;
    s->committing = 1;
    s->gen++; /* what is remembered from now on belongs to the next transaction */
    memcpy(s->pn_commit, s->pn, s->conf.ndepts * sizeof(*s->pn));
    return 0;
}

void
bh_jstate_set_batch(struct bh_jstate *s, struct bh_jstore_batch *sb)
{
    s->sb = sb;
}

/* The remembered events of the transaction being committed and of those before it. */
static int
stage_write(struct bh_jstate *s)
{
    const struct stage *t = &s->stage;
    int rc = 0;
    for (size_t i = 0; i < t->cap && rc == 0; i++)
        if (t->e[i].dept1 != 0 && t->e[i].gen < s->gen)
            rc = bh_jstore_put_id(s->sb, s->conf.partition, t->e[i].bh, t->e[i].dept1 - 1,
                                  t->e[i].ih, t->e[i].at);
    return rc;
}

static int encode_state(struct bh_jstate *s, const struct bh_jblock *b, struct bh_jbuf *buf);

int
bh_jstate_flush(struct bh_jstate *s, struct bh_jbuf *buf)
{
    if (s->sb == NULL)
        return 0;
    int rc = stage_write(s);
    /*
     * The blocks as this transaction leaves them (nothing is applied while it
     * is produced), the same bytes as their last BlockState in the changelog.
     */
    for (struct bh_jblock *b = bh_jstore_is_disk(s->conf.store) ? s->unflushed : NULL;
         b != NULL && rc == 0; b = b->next_unflushed) {
        rc = encode_state(s, b, buf);
        if (rc == 0)
            rc = bh_jstore_put_block(s->sb, s->conf.partition, b->id, b->id_len, buf->p, buf->len);
    }
    return rc;
}

void
bh_jstate_commit_done(struct bh_jstate *s, int ok, int flushed)
{
    s->committing = 0;
    if (!ok || !flushed)
        return; /* not OK: the engine rebuilds the partition from the store and the changelog */
    /*
     * In the store now: memory lets them go (those of the next transaction
     * stay), keeping the table's size for the next as many.
     */
    if (stage_rebuild(&s->stage, 0, s->gen - 1, s->stage.n) < 0) {
        s->committing = 1; /* the next commit cannot begin: the partition is rebuilt */
        return;
    }
    for (struct bh_jblock *b = s->unflushed, *n; b != NULL; b = n) {
        n = b->next_unflushed;
        b->unflushed = 0;
        b->next_unflushed = NULL;
    }
    s->unflushed = NULL;
    /* What the store now holds up to this commit: the ids beyond its retention may go. */
    for (size_t d = 0; d < s->conf.ndepts; d++) {
        int64_t pn = s->pn_commit[d];
        if (pn != NO_TIME && pn > INT64_MIN + s->conf.retention_ms && s->conf.store != NULL)
            bh_jstore_set_floor(s->conf.store, s->conf.partition, (unsigned)d,
                                pn - s->conf.retention_ms + 1);
    }
}

size_t
bh_jstate_staged(const struct bh_jstate *s)
{
    return s->stage.n;
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
batch_key(struct bh_jbuf *k, const char *block, size_t block_len, const char *dept, int64_t seq)
{
    char num[24];
    const char sep = BH_JSTATE_KEY_SEP;
    int n = snprintf(num, sizeof(num), "%" PRId64, seq);
    bh_jbuf_reset(k);
    bh_jbuf_raw(k, block, block_len);
    bh_jbuf_raw(k, &sep, 1);
    bh_jbuf_raw(k, dept, strlen(dept));
    bh_jbuf_raw(k, &sep, 1);
    bh_jbuf_raw(k, num, (size_t)n);
}

/* A DedupBatch of the department's fresh events. */
static int
write_batch(struct bh_jstate *s, struct bh_jblock *b, size_t di, struct bh_jbuf *buf,
            struct bh_jbuf *key, bh_jemit_fn emit, void *ctx)
{
    struct bh_jstore_batch *sb = s->sb;
    struct bh_jdept *d = &b->dept[di];
    const char *dept = s->conf.depts[di];
    int64_t seq = d->next_batch, newest = NO_TIME;
    bh_jbuf_reset(buf);
    bh_jbuf_header(buf, s->conf.batch_fp);
    bh_jbuf_string(buf, b->id, b->id_len);
    bh_jbuf_string(buf, dept, strlen(dept));
    bh_jbuf_long(buf, seq);
    bh_jbuf_long(buf, d->nfresh);
    for (uint32_t i = 0; i < d->nfresh; i++) {
        bh_jbuf_long(buf, (int64_t)d->fresh[i].hash);
        bh_jbuf_long(buf, d->fresh[i].at);
        newest = d->fresh[i].at > newest ? d->fresh[i].at : newest;
    }
    bh_jbuf_long(buf, 0);
    batch_key(key, b->id, b->id_len, dept, seq);
    if (buf->oom || key->oom)
        return -ENOMEM;
    int rc = emit(ctx, key->p, key->len, buf->p, buf->len);
    if (rc == 0 && sb != NULL)
        rc = bh_jstore_put_dedup(sb, s->conf.partition, b->hash, (unsigned)di, seq, newest, b->id,
                                 b->id_len);
    if (rc < 0)
        return rc;
    d->next_batch++;
    d->nfresh = 0;
    if (d->capfresh > 4 * BH_JSTATE_RECENT) {
        /* A burst's list is not kept for the next one. */
        free(d->fresh);
        d->fresh = NULL;
        d->capfresh = 0;
    }
    return 0;
}

/* Block B's BlockState record into BUF. */
static int
encode_state(struct bh_jstate *s, const struct bh_jblock *b, struct bh_jbuf *buf)
{
    size_t active = 0;
    for (size_t i = 0; i < s->conf.ndepts; i++)
        active += b->dept[i].newest != NO_TIME;
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
            /* the window: ascending, the first time as is, then differences */
            uint32_t nw = d->wend - d->whead;
            if (nw > 0) {
                bh_jbuf_long(buf, nw);
                int64_t prev = 0;
                for (uint32_t k = d->whead; k < d->wend; k++) {
                    bh_jbuf_long(buf, k == d->whead ? d->win[k] : d->win[k] - prev);
                    prev = d->win[k];
                }
            }
            bh_jbuf_long(buf, 0);
        }
    }
    bh_jbuf_long(buf, 0);
    return buf->oom ? -ENOMEM : 0;
}

int
bh_jstate_write(struct bh_jstate *s, struct bh_jblock *b, struct bh_jbuf *buf, struct bh_jbuf *key,
                bh_jemit_fn emit, void *ctx)
{
    int rc = 0;
    for (size_t i = 0; i < s->conf.ndepts && rc == 0; i++) {
        /* The block's own record carries the recent ones; enough of them make a batch. */
        if (b->dept[i].newest != NO_TIME && b->dept[i].nfresh >= BH_JSTATE_RECENT)
            rc = write_batch(s, b, i, buf, key, emit, ctx);
    }
    if (rc == 0)
        rc = encode_state(s, b, buf);
    if (rc == 0)
        rc = emit(ctx, b->id, b->id_len, buf->p, buf->len);
    if (rc == 0 && !b->unflushed) {
        b->unflushed = 1;
        b->next_unflushed = s->unflushed;
        s->unflushed = b;
    }
    return rc;
}

/* --- the sweep of batches beyond the retention -------------------------------------- */

struct sweep_ctx {
    struct bh_jstate *s;
    struct bh_jbuf *key;
    bh_jemit_fn emit;
    void *ctx;
    long deleted;
};

static int
sweep_one(void *ctx, const char *id, size_t len, uint64_t bh, unsigned dept, int64_t seq)
{
    struct sweep_ctx *c = ctx;
    batch_key(c->key, id, len, c->s->conf.depts[dept], seq);
    if (c->key->oom)
        return -ENOMEM;
    int rc = c->emit(c->ctx, c->key->p, c->key->len, NULL, 0);
    if (rc == 0 && c->s->sb != NULL)
        rc = bh_jstore_del_dedup(c->s->sb, c->s->conf.partition, bh, dept, seq);
    c->deleted += rc == 0;
    return rc;
}

long
bh_jstate_sweep(struct bh_jstate *s, struct bh_jbuf *key, bh_jemit_fn emit, void *ctx, size_t max)
{
    int64_t floors[256];
    size_t nd = s->conf.ndepts < 256 ? s->conf.ndepts : 256;
    int any = 0;
    for (size_t d = 0; d < nd; d++) {
        int64_t pn = s->pn[d];
        /* a batch whose newest event is beyond the retention: every event of it is */
        floors[d] = pn != NO_TIME && pn > INT64_MIN + s->conf.retention_ms
                        ? pn - s->conf.retention_ms + 1
                        : INT64_MIN;
        any |= floors[d] != INT64_MIN;
    }
    if (!any || s->conf.store == NULL)
        return 0;
    struct sweep_ctx c = {s, key, emit, ctx, 0};
    long rc = bh_jstore_sweep(s->conf.store, s->conf.partition, floors, max, sweep_one, &c);
    return rc < 0 ? rc : c.deleted;
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
dept_reset(struct bh_jdept *d)
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
    d->whead = d->wend = 0;
}

/* The array's next block count (0 at its end); a negative count is followed by a byte size. */
static int64_t
array_block(struct bh_jreader *r)
{
    int64_t n = bh_jread_long(r);
    if (n < 0) {
        bh_jread_long(r);
        n = n == INT64_MIN ? INT64_MAX : -n;
    }
    /* every item takes a byte at least */
    if (n > r->end - r->p)
        r->bad = 1;
    return r->bad ? 0 : n;
}

/*
 * One department of a BlockState: counts go to D, or nowhere when D is NULL;
 * its recent events to SB (when given) for block B.
 */
static int
restore_dept(struct bh_jstate *s, struct bh_jblock *b, struct bh_jdept *d, size_t di,
             struct bh_jreader *r)
{
    struct bh_jstore_batch *sb = s->sb;
    if (d != NULL)
        dept_reset(d);
    int64_t total = bh_jread_long(r);
    for (int64_t n; (n = array_block(r)) > 0;) {
        for (int64_t i = 0; i < n && !r->bad; i++) {
            const char *name;
            size_t len;
            bh_jread_string(r, &name, &len);
            int64_t count = bh_jread_long(r);
            uint32_t type;
            if (count < 0)
                r->bad = 1; /* a count is never negative */
            if (r->bad || d == NULL)
                continue;
            if (bh_jtypes_intern(s->conf.types, di, name, len, &type) < 0)
                return -ENOMEM;
            /* the same type twice in the map (never written so): their sum, if it fits */
            if (type_count_of(d, type) > INT64_MAX - count) {
                r->bad = 1;
                continue;
            }
            if (count_type(d, type, count) < 0)
                return -ENOMEM;
        }
    }
    int64_t newest = bh_jread_long(r);
    const char *last;
    size_t last_len;
    bh_jread_string(r, &last, &last_len);
    int64_t last_at = bh_jread_long(r);
    int64_t next_batch = bh_jread_long(r);
    if (next_batch < 0 || next_batch == INT64_MAX)
        r->bad = 1; /* never written so: the next batch's number must fit */
    for (int64_t n; (n = array_block(r)) > 0;) {
        if (d != NULL &&
            grow((void **)&d->fresh, &d->capfresh, d->nfresh + (uint32_t)n, sizeof(*d->fresh)) < 0)
            return -ENOMEM;
        for (int64_t i = 0; i < n && !r->bad; i++) {
            uint64_t h = (uint64_t)bh_jread_long(r);
            int64_t at = bh_jread_long(r);
            if (d == NULL || r->bad)
                continue;
            d->fresh[d->nfresh].hash = h ? h : 1;
            d->fresh[d->nfresh].at = at;
            d->nfresh++;
        }
    }
    int64_t prev = 0;
    int have = 0;
    for (int64_t n; (n = array_block(r)) > 0;) {
        if (d != NULL && n > UINT32_MAX - d->wend)
            r->bad = 1;
        if (r->bad)
            break;
        if (d != NULL && d->wend + (uint32_t)n > d->wcap) {
            uint32_t cap = d->wcap ? d->wcap : 8;
            while (cap < d->wend + (uint32_t)n)
                cap *= 2;
            int64_t *w = realloc(d->win, (size_t)cap * sizeof(*w));
            if (w == NULL)
                return -ENOMEM;
            d->win = w;
            d->wcap = cap;
        }
        for (int64_t i = 0; i < n && !r->bad; i++) {
            int64_t v = bh_jread_long(r);
            if (have && (v < 0 || (prev > 0 && v > INT64_MAX - prev)))
                r->bad = 1; /* not ascending, or past the end of time */
            if (r->bad)
                break;
            prev = have ? prev + v : v;
            have = 1;
            if (d != NULL)
                d->win[d->wend++] = prev;
        }
    }
    if (r->bad)
        return -EBADMSG;
    if (d == NULL)
        return 0;
    d->total = total;
    d->newest = newest;
    d->next_batch = next_batch > d->next_batch ? next_batch : d->next_batch;
    int rc = set_last(d, last, last_len, last_at);
    for (uint32_t i = 0; rc == 0 && sb != NULL && i < d->nfresh; i++)
        rc = bh_jstore_put_id(sb, s->conf.partition, b->hash, (unsigned)di, d->fresh[i].hash,
                              d->fresh[i].at);
    return rc;
}

static int
restore_state(struct bh_jstate *s, const char *key, size_t keylen, const void *value, size_t len,
              struct bh_jreader *r, size_t *skipped)
{
    struct bh_jstore_batch *sb = s->sb;
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
        dept_reset(&b->dept[i]);
    for (int64_t n; (n = array_block(r)) > 0;) {
        for (int64_t i = 0; i < n && !r->bad; i++) {
            const char *name;
            size_t nlen;
            bh_jread_string(r, &name, &nlen);
            int di = r->bad ? -1 : dept_index(s, name, nlen);
            if (di < 0)
                ++*skipped;
            int rc = restore_dept(s, b, di >= 0 ? &b->dept[di] : NULL, di >= 0 ? (size_t)di : 0, r);
            if (rc < 0)
                return rc;
        }
    }
    if (r->bad || r->p != r->end)
        return -EBADMSG;
    return sb != NULL ? bh_jstore_put_block(sb, s->conf.partition, id, id_len, value, len) : 0;
}

static int
restore_batch(struct bh_jstate *s, const char *key, size_t keylen, struct bh_jreader *r,
              size_t *skipped)
{
    struct bh_jstore_batch *sb = s->sb;
    const char *id, *dept;
    size_t id_len, dept_len;
    bh_jread_string(r, &id, &id_len);
    bh_jread_string(r, &dept, &dept_len);
    int64_t seq = bh_jread_long(r);
    /* a sequence number is never negative, and the next one must fit */
    if (r->bad || seq < 0 || seq == INT64_MAX || keylen <= id_len || memcmp(key, id, id_len) != 0)
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
    int64_t newest = NO_TIME;
    int rc = 0;
    for (int64_t count; rc == 0 && (count = array_block(r)) > 0;) {
        for (int64_t i = 0; i < count && !r->bad && rc == 0; i++) {
            uint64_t h = (uint64_t)bh_jread_long(r);
            int64_t at = bh_jread_long(r);
            if (r->bad)
                break;
            newest = at > newest ? at : newest;
            if (sb != NULL)
                rc = bh_jstore_put_id(sb, s->conf.partition, b->hash, (unsigned)di, h ? h : 1, at);
        }
    }
    if (rc < 0)
        return rc;
    if (r->bad || r->p != r->end)
        return -EBADMSG;
    if (seq >= d->next_batch)
        d->next_batch = seq + 1;
    if (sb != NULL && newest != NO_TIME)
        rc = bh_jstore_put_dedup(sb, s->conf.partition, b->hash, (unsigned)di, seq, newest, id,
                                 id_len);
    return rc;
}

/* A tombstone: "block SEP department SEP seq". */
static int
restore_tombstone(struct bh_jstate *s, const char *key, size_t keylen)
{
    struct bh_jstore_batch *sb = s->sb;
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
    if (di < 0 || sb == NULL)
        return 0;
    return bh_jstore_del_dedup(sb, s->conf.partition, bh_jstate_hash(key, (size_t)(p1 - key)),
                               (unsigned)di, seq);
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
        return restore_state(s, key, keylen, value, len, &r, skipped);
    if (fp == s->conf.batch_fp)
        return restore_batch(s, key, keylen, &r, skipped);
    if (fp == BH_JSTATE_OLD_STATE_FP)
        return -EPROTO;
    return -EBADMSG;
}

int
bh_jstate_restore_finish(struct bh_jstate *s)
{
    for (size_t d = 0; d < s->conf.ndepts; d++)
        s->pn[d] = NO_TIME;
    for (size_t i = 0; i < s->n; i++) {
        for (size_t d = 0; d < s->conf.ndepts; d++) {
            int64_t t = s->list[i]->dept[d].newest;
            if (t != NO_TIME && (s->pn[d] == NO_TIME || t > s->pn[d]))
                s->pn[d] = t;
        }
    }
    memcpy(s->pn_commit, s->pn, s->conf.ndepts * sizeof(*s->pn));
    s->gen++;
    bh_jstate_commit_done(s, 1, 1); /* the store holds everything restored: floors follow */
    bh_jstate_take_dirty(s);
    return 0;
}

/* --- memory ----------------------------------------------------------------- */

void
bh_jstate_usage(const struct bh_jstate *s, struct bh_jstate_usage *u)
{
    memset(u, 0, sizeof(*u));
    u->blocks = s->n;
    u->staged = s->stage.n;
    u->bytes = sizeof(*s) + s->nslots * sizeof(*s->slots) + s->caplist * sizeof(*s->list) +
               s->stage.cap * sizeof(struct sent);
    for (size_t i = 0; i < s->n; i++) {
        const struct bh_jblock *b = s->list[i];
        u->bytes += sizeof(*b) + s->conf.ndepts * sizeof(b->dept[0]) + b->id_len + 1;
        for (size_t k = 0; k < s->conf.ndepts; k++) {
            const struct bh_jdept *d = &b->dept[k];
            u->windowed += d->wend - d->whead;
            u->counted += d->total;
            u->bytes += (size_t)d->capfresh * sizeof(*d->fresh) +
                        (size_t)d->wcap * sizeof(*d->win) +
                        (size_t)d->captypes * sizeof(*d->types) + d->last_cap;
        }
    }
}
