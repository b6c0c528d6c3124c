/*
 * The join's state logic (hub/join_state.c): window counting at its
 * boundary, dedup within and beyond the horizon, out-of-order event times,
 * the choice of the last event, bounded memory, and the changelog: what is
 * written, read back (from the whole log and from a compacted one), gives the
 * same views and the same dedup answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "join_state.h"

#define FP_STATE 0x1111111111111111ULL
#define FP_BATCH 0x2222222222222222ULL

static const char *const depts[] = {"fire", "traffic"};

struct fx {
    struct bh_jtypes *types;
    struct bh_jstate *s;
    struct bh_jstate_conf conf;
    uint32_t alarm, drill, hazard;
};

static struct fx *
fx_new(int64_t window, int64_t horizon)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(bh_jtypes_new(&f->types, 2), 0);
    f->conf = (struct bh_jstate_conf){.ndepts = 2,
                                      .depts = depts,
                                      .types = f->types,
                                      .window_ms = window,
                                      .horizon_ms = horizon,
                                      .state_fp = FP_STATE,
                                      .batch_fp = FP_BATCH};
    assert_int_equal(bh_jstate_new(&f->s, &f->conf), 0);
    assert_int_equal(bh_jtypes_intern(f->types, 0, "alarm", 5, &f->alarm), 0);
    assert_int_equal(bh_jtypes_intern(f->types, 0, "drill", 5, &f->drill), 0);
    assert_int_equal(bh_jtypes_intern(f->types, 0, "hazard", 6, &f->hazard), 0);
    /* the same ids in the second department */
    uint32_t id;
    assert_int_equal(bh_jtypes_intern(f->types, 1, "alarm", 5, &id), 0);
    assert_int_equal(id, f->alarm);
    assert_int_equal(bh_jtypes_intern(f->types, 1, "drill", 5, &id), 0);
    assert_int_equal(id, f->drill);
    return f;
}

static void
fx_free(struct fx *f)
{
    bh_jstate_free(f->s);
    bh_jtypes_free(f->types);
    free(f);
}

static int
ev(struct fx *f, const char *block, size_t dept, const char *id, uint32_t type, int64_t at)
{
    struct bh_jblock *b = bh_jstate_block(f->s, block, strlen(block), 1);
    assert_non_null(b);
    return bh_jstate_apply(f->s, b, dept, id, strlen(id), type, at, 1000);
}

static struct bh_jdept *
dept(struct fx *f, const char *block, size_t d)
{
    struct bh_jblock *b = bh_jstate_block(f->s, block, strlen(block), 0);
    assert_non_null(b);
    return &b->dept[d];
}

static int64_t
type_count(struct fx *f, const struct bh_jdept *d, uint32_t type)
{
    (void)f;
    for (uint32_t i = 0; i < d->ntypes; i++)
        if (d->types[i].type == type)
            return d->types[i].count;
    return 0;
}

/* ---- the window ---- */

static void
test_window_boundary(void **state)
{
    (void)state;
    struct fx *f = fx_new(1000, 100000);
    assert_int_equal(ev(f, "B", 0, "a", f->alarm, 0), 1);
    assert_int_equal(ev(f, "B", 0, "b", f->alarm, 500), 1);
    assert_int_equal(ev(f, "B", 0, "c", f->alarm, 999), 1);
    /* newest 999: 999 - 0 = 999 < 1000, all three are in */
    assert_int_equal(bh_jstate_window_total(dept(f, "B", 0)), 3);
    /* newest 1000: the event at 0 is exactly one window old: out */
    assert_int_equal(ev(f, "B", 0, "d", f->alarm, 1000), 1);
    assert_int_equal(bh_jstate_window_total(dept(f, "B", 0)), 3);
    /* a late event exactly one window older than the newest does not count in the window */
    assert_int_equal(ev(f, "B", 0, "e", f->alarm, 0), 1);
    assert_int_equal(bh_jstate_window_total(dept(f, "B", 0)), 3);
    /* one a millisecond inside it does */
    assert_int_equal(ev(f, "B", 0, "f", f->alarm, 1), 1);
    assert_int_equal(bh_jstate_window_total(dept(f, "B", 0)), 4);
    assert_int_equal(dept(f, "B", 0)->total, 6);
    /* a jump empties the window but the newest event itself */
    assert_int_equal(ev(f, "B", 0, "g", f->alarm, 5000), 1);
    assert_int_equal(bh_jstate_window_total(dept(f, "B", 0)), 1);
    /* the other department of the block is untouched */
    assert_int_equal(bh_jstate_window_total(dept(f, "B", 1)), 0);
    assert_int_equal(dept(f, "B", 1)->total, 0);
    fx_free(f);
}

static void
test_window_out_of_order(void **state)
{
    (void)state;
    struct fx *f = fx_new(1000, 100000);
    /* times 5000, 4200, 4800, 3900 (out), 4001, 6000 */
    assert_int_equal(ev(f, "B", 0, "a", f->alarm, 5000), 1);
    assert_int_equal(ev(f, "B", 0, "b", f->drill, 4200), 1);
    assert_int_equal(ev(f, "B", 0, "c", f->alarm, 4800), 1);
    assert_int_equal(ev(f, "B", 0, "d", f->hazard, 3900), 1);
    assert_int_equal(ev(f, "B", 0, "e", f->alarm, 4001), 1);
    struct bh_jdept *d = dept(f, "B", 0);
    assert_int_equal(d->newest, 5000);
    assert_int_equal(bh_jstate_window_total(d), 4); /* 5000, 4200, 4800, 4001 */
    assert_int_equal(d->total, 5);
    assert_int_equal(type_count(f, d, f->alarm), 3);
    assert_int_equal(type_count(f, d, f->drill), 1);
    assert_int_equal(type_count(f, d, f->hazard), 1);
    assert_string_equal(d->last_id, "a");
    assert_int_equal(d->last_at, 5000);
    /* the window array stays sorted: a newer event evicts from the old end */
    assert_int_equal(ev(f, "B", 0, "f", f->alarm, 5300), 1);
    assert_int_equal(bh_jstate_window_total(d), 3); /* 4800, 5000, 5300 */
    for (uint32_t i = d->whead + 1; i < d->wend; i++)
        assert_true(d->win[i - 1] <= d->win[i]);
    assert_string_equal(d->last_id, "f");
    fx_free(f);
}

/* ---- dedup ---- */

static void
test_dedup_within_horizon(void **state)
{
    (void)state;
    struct fx *f = fx_new(1000, 10000);
    assert_int_equal(ev(f, "B", 0, "x-1", f->alarm, 100), 1);
    assert_int_equal(ev(f, "B", 0, "x-2", f->drill, 200), 1);
    bh_jstate_take_dirty(f->s);
    /* the same event again, and again later on, changes nothing */
    assert_int_equal(ev(f, "B", 0, "x-1", f->alarm, 100), 0);
    assert_int_equal(ev(f, "B", 0, "x-3", f->alarm, 9000), 1);
    bh_jstate_take_dirty(f->s);
    assert_int_equal(ev(f, "B", 0, "x-1", f->alarm, 100), 0);
    assert_int_equal(ev(f, "B", 0, "x-2", f->drill, 200), 0);
    /* a copy with another type or time is still the same event (same id) */
    assert_int_equal(ev(f, "B", 0, "x-2", f->hazard, 9500), 0);
    assert_false(bh_jstate_has_dirty(f->s));
    struct bh_jdept *d = dept(f, "B", 0);
    assert_int_equal(d->total, 3);
    assert_int_equal(type_count(f, d, f->alarm), 2);
    assert_int_equal(type_count(f, d, f->hazard), 0);
    assert_int_equal(d->newest, 9000);
    /* the same id in another department or block is another event */
    assert_int_equal(ev(f, "B", 1, "x-1", 0, 100), 1);
    assert_int_equal(ev(f, "C", 0, "x-1", f->alarm, 100), 1);
    fx_free(f);
}

static void
test_dedup_beyond_horizon(void **state)
{
    (void)state;
    struct fx *f = fx_new(1000, 10000);
    assert_int_equal(ev(f, "B", 0, "old", f->alarm, 0), 1);
    assert_int_equal(ev(f, "B", 0, "edge", f->alarm, 1), 1);
    /* newest 10000: "old" (at 0) is exactly one horizon old, "edge" is inside */
    assert_int_equal(ev(f, "B", 0, "new", f->alarm, 10000), 1);
    assert_int_equal(ev(f, "B", 0, "edge", f->alarm, 1), 0);
    assert_int_equal(ev(f, "B", 0, "old", f->alarm, 0), 1); /* forgotten: counted again */
    /* an event older than the horizon is counted but not remembered */
    assert_int_equal(ev(f, "B", 0, "old", f->alarm, 0), 1);
    assert_int_equal(dept(f, "B", 0)->total, 5);
    /* past the horizon of "edge" too */
    assert_int_equal(ev(f, "B", 0, "newer", f->alarm, 10001), 1);
    assert_int_equal(ev(f, "B", 0, "edge", f->alarm, 1), 1);
    assert_int_equal(ev(f, "B", 0, "new", f->alarm, 10000), 0);
    assert_int_equal(dept(f, "B", 0)->total, 7);
    fx_free(f);
}

/* ---- the last event ---- */

static void
test_last_event(void **state)
{
    (void)state;
    struct fx *f = fx_new(1000, 100000);
    /* the greatest time wins whatever the order; ties go to the greatest id */
    const char *ids[] = {"e-2", "e-10", "e-3", "e-1"};
    const int64_t at[] = {500, 700, 700, 100};
    for (int i = 0; i < 4; i++)
        ev(f, "forward", 0, ids[i], f->alarm, at[i]);
    for (int i = 3; i >= 0; i--)
        ev(f, "backward", 0, ids[i], f->alarm, at[i]);
    assert_string_equal(dept(f, "forward", 0)->last_id, "e-3");
    assert_string_equal(dept(f, "backward", 0)->last_id, "e-3");
    assert_int_equal(dept(f, "backward", 0)->last_at, 700);
    /* "e-30" > "e-3" bytewise (a longer id with the same prefix is greater) */
    ev(f, "forward", 0, "e-30", f->alarm, 700);
    assert_string_equal(dept(f, "forward", 0)->last_id, "e-30");
    /* a duplicate of an older event changes nothing */
    assert_int_equal(ev(f, "forward", 0, "e-1", f->alarm, 100), 0);
    assert_string_equal(dept(f, "forward", 0)->last_id, "e-30");
    /* no event: no last event */
    assert_null(dept(f, "forward", 1)->last_id);
    fx_free(f);
}

/* ---- memory ---- */

static void
test_pruning_bounds_memory(void **state)
{
    (void)state;
    /* one event a second, a 100 s horizon: never more than ~100 remembered */
    struct fx *f = fx_new(10000, 100000);
    struct bh_jstate_usage u;
    char id[32];
    size_t max_bytes_first_half = 0, max_bytes = 0, max_remembered = 0;
    for (int i = 0; i < 200000; i++) {
        snprintf(id, sizeof(id), "ev-%d", i);
        assert_int_equal(ev(f, "B", 0, id, f->alarm, (int64_t)i * 1000), 1);
        if (i % 997 == 0) {
            bh_jstate_take_dirty(f->s);
            /* the changelog's fresh list is emptied by each write */
            dept(f, "B", 0)->nfresh = 0;
            bh_jstate_usage(f->s, &u);
            if (i < 100000 && u.bytes > max_bytes_first_half)
                max_bytes_first_half = u.bytes;
            max_bytes = u.bytes > max_bytes ? u.bytes : max_bytes;
            if (getenv("DEBUG_PRUNE"))
                print_message("%d: %zu bytes %zu set %zu rem %zu win\n", i, u.bytes, u.set_bytes,
                              u.remembered, u.windowed);
            max_remembered = u.remembered > max_remembered ? u.remembered : max_remembered;
        }
    }
    bh_jstate_usage(f->s, &u);
    /* remembered: the events of the last 100 s, and at most 1/8 horizon more awaiting a prune */
    assert_true(max_remembered <= 100 + 100 / 8 + 1);
    assert_true(u.windowed <= 10);
    /* bytes stop growing once the horizon is full (but for the last id's length) */
    assert_true(max_bytes <= max_bytes_first_half + 8);
    assert_true(u.set_bytes <= 512 * sizeof(struct bh_jremember));
    print_message("pruning: %zu remembered, %zu bytes for the block (%zu in the dedup table)\n",
                  u.remembered, u.bytes, u.set_bytes);
    fx_free(f);
}

/* A burst then quiet: the table shrinks back once the burst is beyond the horizon. */
static void
test_memory_shrinks_after_burst(void **state)
{
    (void)state;
    struct fx *f = fx_new(1000, 10000);
    char id[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof(id), "burst-%d", i);
        ev(f, "B", 0, id, f->alarm, 1000 + i % 100);
    }
    struct bh_jstate_usage big, small;
    dept(f, "B", 0)->nfresh = 0;
    bh_jstate_usage(f->s, &big);
    assert_int_equal(big.remembered, 20000);
    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof(id), "later-%d", i);
        ev(f, "B", 0, id, f->alarm, 100000 + (int64_t)i * 1000);
    }
    bh_jstate_usage(f->s, &small);
    assert_true(small.remembered <= 11);
    assert_true(small.set_bytes * 100 < big.set_bytes);
    fx_free(f);
}

/* ---- the changelog ---- */

struct rec {
    char *key;
    size_t keylen;
    void *value; /* NULL: tombstone */
    size_t len;
};

struct log {
    struct rec *r;
    size_t n, cap;
};

static int
emit(void *ctx, const void *key, size_t keylen, const void *value, size_t len)
{
    struct log *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->r = realloc(l->r, l->cap * sizeof(*l->r));
        assert_non_null(l->r);
    }
    struct rec *r = &l->r[l->n++];
    r->key = malloc(keylen);
    memcpy(r->key, key, keylen);
    r->keylen = keylen;
    r->value = NULL;
    r->len = len;
    if (value != NULL) {
        r->value = malloc(len);
        memcpy(r->value, value, len);
    }
    return 0;
}

static void
log_free(struct log *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->r[i].key);
        free(l->r[i].value);
    }
    free(l->r);
}

/* What a commit does: every dirty block's records. */
static void
commit(struct fx *f, struct log *l)
{
    struct bh_jbuf buf = {0}, key = {0};
    for (struct bh_jblock *b = bh_jstate_take_dirty(f->s); b != NULL; b = b->next_dirty)
        assert_int_equal(bh_jstate_write(f->s, b, &buf, &key, emit, l), 0);
    bh_jbuf_free(&buf);
    bh_jbuf_free(&key);
}

/* Kafka's compaction: the last record of each key, none for a key whose last is a tombstone. */
static void
compact(const struct log *in, struct log *out)
{
    for (size_t i = 0; i < in->n; i++) {
        int later = 0;
        for (size_t k = i + 1; k < in->n && !later; k++)
            later = in->r[k].keylen == in->r[i].keylen &&
                    memcmp(in->r[k].key, in->r[i].key, in->r[i].keylen) == 0;
        if (!later && in->r[i].value != NULL)
            emit(out, in->r[i].key, in->r[i].keylen, in->r[i].value, in->r[i].len);
    }
}

static struct fx *
restore(const struct log *l, int64_t window, int64_t horizon)
{
    struct fx *f = fx_new(window, horizon);
    size_t skipped = 0;
    for (size_t i = 0; i < l->n; i++)
        assert_int_equal(bh_jstate_restore(f->s, l->r[i].key, l->r[i].keylen, l->r[i].value,
                                           l->r[i].len, &skipped),
                         0);
    assert_int_equal(bh_jstate_restore_finish(f->s), 0);
    assert_int_equal(skipped, 0);
    return f;
}

/* Remembered events within the horizon (the table may hold older ones until a prune). */
static uint32_t
live(const struct bh_jdept *d, int64_t horizon)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < d->capset; i++)
        n += d->set[i].hash != 0 && d->newest - d->set[i].at < horizon;
    return n;
}

/* Same counts, windows, last events and type names in A and B, block by block. */
static void
assert_same(struct fx *a, struct fx *b)
{
    assert_int_equal(bh_jstate_count(a->s), bh_jstate_count(b->s));
    for (size_t i = 0; i < bh_jstate_count(a->s); i++) {
        struct bh_jblock *x = bh_jstate_at(a->s, i);
        struct bh_jblock *y = bh_jstate_block(b->s, x->id, x->id_len, 0);
        assert_non_null(y);
        assert_int_equal(x->updated_at, y->updated_at);
        for (size_t d = 0; d < 2; d++) {
            const struct bh_jdept *p = &x->dept[d], *q = &y->dept[d];
            assert_int_equal(p->total, q->total);
            assert_int_equal(p->newest, q->newest);
            assert_int_equal(bh_jstate_window_total(p), bh_jstate_window_total(q));
            for (uint32_t w = 0; w < p->wend - p->whead; w++)
                assert_int_equal(p->win[p->whead + w], q->win[q->whead + w]);
            assert_int_equal(live(p, a->conf.horizon_ms), live(q, b->conf.horizon_ms));
            assert_int_equal(p->ntypes, q->ntypes);
            for (uint32_t t = 0; t < p->ntypes; t++) {
                size_t l1, l2;
                const char *n1 = bh_jtypes_name(a->types, d, p->types[t].type, &l1);
                int found = 0;
                for (uint32_t u = 0; u < q->ntypes; u++) {
                    const char *n2 = bh_jtypes_name(b->types, d, q->types[u].type, &l2);
                    if (l1 == l2 && memcmp(n1, n2, l1) == 0) {
                        assert_int_equal(p->types[t].count, q->types[u].count);
                        found = 1;
                    }
                }
                assert_true(found);
            }
            if (p->last_id == NULL) {
                assert_null(q->last_id);
            } else {
                assert_string_equal(p->last_id, q->last_id);
                assert_int_equal(p->last_at, q->last_at);
            }
        }
    }
}

/* Many commits with out-of-order times, copies, and time moving past the horizon. */
static void
test_changelog_roundtrip(void **state)
{
    (void)state;
    const int64_t window = 5000, horizon = 20000;
    struct fx *f = fx_new(window, horizon);
    struct log l = {0};
    char id[32], block[16];
    uint32_t seed = 12345;
    int64_t clock = 0;
    for (int round = 0; round < 400; round++) {
        for (int i = 0; i < 25; i++) {
            seed = seed * 1103515245 + 12345;
            int n = (int)(seed >> 8) % 3000;
            snprintf(id, sizeof(id), "id-%d", round * 10 + n % 40); /* many copies */
            snprintf(block, sizeof(block), "blk-%d", n % 7);
            int64_t at = clock - (int64_t)(seed >> 20) % 8000; /* out of order */
            uint32_t type = (seed >> 4) % 2 ? f->alarm : f->drill;
            ev(f, block, (seed >> 3) % 2, id, type, at);
        }
        clock += 300;
        commit(f, &l);
    }
    /* the merge of batches and the tombstones of old ones happened */
    size_t tombstones = 0;
    for (size_t i = 0; i < l.n; i++)
        tombstones += l.r[i].value == NULL;
    assert_true(tombstones > 0);

    struct fx *g = restore(&l, window, horizon);
    assert_same(f, g);
    struct log c = {0};
    compact(&l, &c);
    struct fx *h = restore(&c, window, horizon);
    assert_same(f, h);
    assert_true(c.n < l.n / 4);
    print_message("changelog: %zu records written, %zu after compaction\n", l.n, c.n);

    /* the restored states answer every later event as the original does */
    for (int i = 0; i < 3000; i++) {
        seed = seed * 1103515245 + 12345;
        snprintf(id, sizeof(id), "id-%d", (int)(seed >> 8) % 4200);
        snprintf(block, sizeof(block), "blk-%d", (int)(seed >> 16) % 7);
        int64_t at = clock - (int64_t)(seed >> 20) % 30000;
        int r1 = ev(f, block, 0, id, f->alarm, at);
        int r2 = ev(g, block, 0, id, g->alarm, at);
        int r3 = ev(h, block, 0, id, h->alarm, at);
        assert_int_equal(r1, r2);
        assert_int_equal(r1, r3);
    }
    assert_same(f, g);
    assert_same(f, h);
    log_free(&l);
    log_free(&c);
    fx_free(f);
    fx_free(g);
    fx_free(h);
}

/* Records of an unknown department are skipped; garbage is refused. */
static void
test_restore_refuses_garbage(void **state)
{
    (void)state;
    struct fx *f = fx_new(1000, 10000);
    struct log l = {0};
    for (int i = 0; i < BH_JSTATE_RECENT + 1; i++) {
        char id[16];
        snprintf(id, sizeof(id), "a-%d", i);
        ev(f, "B", 0, id, f->alarm, 10 + i);
    }
    commit(f, &l);
    assert_int_equal(l.n, 2); /* a batch and the block's record */
    ev(f, "B", 0, "b", f->alarm, 100);
    commit(f, &l);
    assert_int_equal(l.n, 3); /* the block's record, with "b" among its recent events */

    struct fx *g = fx_new(1000, 10000);
    size_t skipped = 0;
    const char junk[] = "\xC3\x01\x11\x11\x11\x11\x11\x11\x11\x11\x02";
    assert_int_equal(bh_jstate_restore(g->s, "B", 1, junk, sizeof(junk) - 1, &skipped), -EBADMSG);
    assert_int_equal(bh_jstate_restore(g->s, "B", 1, "plain", 5, &skipped), -EBADMSG);
    /* every truncation of a good record is refused, none crashes */
    for (size_t i = 0; i < l.n; i++)
        for (size_t cut = 0; cut < l.r[i].len; cut++)
            assert_int_equal(
                bh_jstate_restore(g->s, l.r[i].key, l.r[i].keylen, l.r[i].value, cut, &skipped),
                -EBADMSG);
    /* a key that does not match the record */
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(bh_jstate_restore(g->s, "Z", 1, l.r[i].value, l.r[i].len, &skipped),
                         -EBADMSG);
    fx_free(g);

    /* a configuration without the department skips its records */
    skipped = 0;
    static const char *const other[] = {"market", "traffic"};
    struct fx *h = fx_new(1000, 10000);
    h->conf.depts = other;
    bh_jstate_free(h->s);
    assert_int_equal(bh_jstate_new(&h->s, &h->conf), 0);
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(
            bh_jstate_restore(h->s, l.r[i].key, l.r[i].keylen, l.r[i].value, l.r[i].len, &skipped),
            0);
    assert_int_equal(bh_jstate_restore_finish(h->s), 0);
    assert_int_equal(skipped, 3);
    assert_int_equal(bh_jstate_block(h->s, "B", 1, 0)->dept[0].total, 0);
    fx_free(h);
    log_free(&l);
    fx_free(f);
}

static void
test_many_blocks(void **state)
{
    (void)state;
    struct fx *f = fx_new(1000, 10000);
    char block[32];
    for (int i = 0; i < 50000; i++) {
        snprintf(block, sizeof(block), "440303-%05d", i);
        assert_int_equal(ev(f, block, i % 2, "x", f->alarm, i), 1);
    }
    assert_int_equal(bh_jstate_count(f->s), 50000);
    for (int i = 0; i < 50000; i += 997) {
        snprintf(block, sizeof(block), "440303-%05d", i);
        struct bh_jblock *b = bh_jstate_block(f->s, block, strlen(block), 0);
        assert_non_null(b);
        assert_int_equal(b->dept[i % 2].total, 1);
    }
    assert_null(bh_jstate_block(f->s, "nope", 4, 0));
    size_t n = 0;
    for (struct bh_jblock *b = bh_jstate_take_dirty(f->s); b != NULL; b = b->next_dirty)
        n++;
    assert_int_equal(n, 50000);
    assert_false(bh_jstate_has_dirty(f->s));
    fx_free(f);
}

static void
test_types_intern(void **state)
{
    (void)state;
    struct bh_jtypes *t;
    uint32_t a, b, c;
    char name[16];
    assert_int_equal(bh_jtypes_new(&t, 2), 0);
    assert_int_equal(bh_jtypes_intern(t, 0, "alarm", 5, &a), 0);
    assert_int_equal(bh_jtypes_intern(t, 1, "alarm", 5, &b), 0);
    assert_int_equal(bh_jtypes_intern(t, 0, "alarm", 5, &c), 0);
    assert_int_equal(a, c);
    assert_int_equal(a, 0);
    assert_int_equal(b, 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        assert_int_equal(bh_jtypes_intern(t, 0, name, strlen(name), &a), 0);
        assert_int_equal(a, (uint32_t)i + 1);
    }
    for (int i = 0; i < 1000; i++) {
        size_t len;
        snprintf(name, sizeof(name), "t%d", i);
        assert_int_equal(bh_jtypes_intern(t, 0, name, strlen(name), &a), 0);
        assert_string_equal(bh_jtypes_name(t, 0, a, &len), name);
    }
    bh_jtypes_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_boundary),
        cmocka_unit_test(test_window_out_of_order),
        cmocka_unit_test(test_dedup_within_horizon),
        cmocka_unit_test(test_dedup_beyond_horizon),
        cmocka_unit_test(test_last_event),
        cmocka_unit_test(test_pruning_bounds_memory),
        cmocka_unit_test(test_memory_shrinks_after_burst),
        cmocka_unit_test(test_changelog_roundtrip),
        cmocka_unit_test(test_restore_refuses_garbage),
        cmocka_unit_test(test_many_blocks),
        cmocka_unit_test(test_types_intern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
