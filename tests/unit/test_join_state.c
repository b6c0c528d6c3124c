/*
 * The join's state logic (join/join_state.c): window counting at its
 * boundary, out-of-order event times, the choice of the last event, the
 * retention measured from the partition's newest event (not the block's),
 * too-late events, copies recognised whether they wait in memory or are in
 * the store (memory and RocksDB), a copy never entering the window twice, and
 * the changelog: what is written, read back (from the whole log, from a
 * compacted one, and from the store's checkpoint plus the log after it),
 * gives the same views and the same answers to later events; an aborted
 * commit leaves nothing in the store.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "join_state.h"
#include "join_store.h"

#define FP_STATE 0x1111111111111111ULL
#define FP_BATCH 0x2222222222222222ULL

static const char *const depts[] = {"fire", "traffic"};

struct fx {
    struct bh_jtypes *types;
    struct bh_jstore *store;
    struct bh_jstate *s;
    struct bh_jstate_conf conf;
    uint32_t alarm, drill, hazard;
    char dir[64]; /* the disk store's, or "" */
};

static struct fx *
fx_new_store(int64_t window, int64_t retention, int disk)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(bh_jtypes_new(&f->types, 2), 0);
    if (disk) {
        snprintf(f->dir, sizeof(f->dir), "/tmp/bh-jstate-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
    }
    struct bh_jstore_conf sc = {.disk = disk,
                                .dir = f->dir,
                                .memory_limit = 32 << 20,
                                .nparts = 1,
                                .ndepts = 2,
                                .depts = depts,
                                .identity = "test"};
    char err[300];
    assert_int_equal(bh_jstore_open(&f->store, &sc, err, sizeof(err)), 0);
    f->conf = (struct bh_jstate_conf){.ndepts = 2,
                                      .depts = depts,
                                      .types = f->types,
                                      .window_ms = window,
                                      .retention_ms = retention,
                                      .state_fp = FP_STATE,
                                      .batch_fp = FP_BATCH,
                                      .partition = 0,
                                      .store = f->store};
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

static struct fx *
fx_new(int64_t window, int64_t retention)
{
    return fx_new_store(window, retention, 0);
}

static void
rm_dir(const char *dir)
{
    if (dir[0] == '\0')
        return;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void
fx_free(struct fx *f)
{
    bh_jstate_free(f->s);
    bh_jstore_close(f->store);
    bh_jtypes_free(f->types);
    rm_dir(f->dir);
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

/* ---- the changelog, as the engine writes it ---- */

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

/*
 * What a transaction does: the sweep, every dirty block's records, and on a
 * FLUSH the remembered events and blocks since the last flush; then (OK) the
 * store write, with the checkpoint on a flush, or (not OK: aborted) nothing:
 * the records are taken back out of the log.
 */
static void
commit_as(struct fx *f, struct log *l, int ok, int flush)
{
    struct bh_jbuf buf = {0}, key = {0};
    struct bh_jstore_batch *sb = bh_jstore_batch_new(f->store);
    assert_non_null(sb);
    size_t before = l->n;
    assert_int_equal(bh_jstate_commit_begin(f->s), 0);
    bh_jstate_set_batch(f->s, sb);
    assert_true(bh_jstate_sweep(f->s, &key, emit, l, 1000000) >= 0);
    for (struct bh_jblock *b = bh_jstate_take_dirty(f->s); b != NULL; b = b->next_dirty)
        assert_int_equal(bh_jstate_write(f->s, b, &buf, &key, emit, l), 0);
    if (flush)
        assert_int_equal(bh_jstate_flush(f->s, &buf), 0);
    bh_jstate_set_batch(f->s, NULL);
    if (ok) {
        if (flush)
            assert_int_equal(bh_jstore_put_checkpoint(sb, 0, (int64_t)l->n), 0);
        assert_int_equal(bh_jstore_write(f->store, sb), 0);
    } else {
        bh_jstore_batch_free(sb);
        for (size_t i = before; i < l->n; i++) {
            free(l->r[i].key);
            free(l->r[i].value);
        }
        l->n = before;
    }
    bh_jstate_commit_done(f->s, ok, flush);
    bh_jbuf_free(&buf);
    bh_jbuf_free(&key);
}

static void
commit(struct fx *f, struct log *l)
{
    commit_as(f, l, 1, 1);
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

/* Records FROM to the end of L into F's state and store, as a restore does. */
static void
replay(struct fx *f, const struct log *l, size_t from)
{
    size_t skipped = 0;
    struct bh_jstore_batch *sb = bh_jstore_batch_new(f->store);
    bh_jstate_set_batch(f->s, sb);
    for (size_t i = from; i < l->n; i++)
        assert_int_equal(bh_jstate_restore(f->s, l->r[i].key, l->r[i].keylen, l->r[i].value,
                                           l->r[i].len, &skipped),
                         0);
    assert_int_equal(bh_jstate_restore_finish(f->s), 0);
    bh_jstate_set_batch(f->s, NULL);
    assert_int_equal(bh_jstore_put_checkpoint(sb, 0, (int64_t)l->n), 0);
    assert_int_equal(bh_jstore_write(f->store, sb), 0);
    assert_int_equal(skipped, 0);
}

/* A new process's state, rebuilt from the whole log L. */
static struct fx *
restore(const struct log *l, int64_t window, int64_t retention)
{
    struct fx *f = fx_new(window, retention);
    replay(f, l, 0);
    return f;
}

static int
load_block(void *ctx, const char *id, size_t len, const void *value, size_t vlen)
{
    size_t skipped = 0;
    return bh_jstate_restore(ctx, id, len, value, vlen, &skipped);
}

/* F's state dropped and rebuilt as a restart does: the store's blocks, then L after its checkpoint.
 */
static void
resume(struct fx *f, const struct log *l)
{
    bh_jstate_free(f->s);
    assert_int_equal(bh_jstate_new(&f->s, &f->conf), 0);
    int64_t ck;
    assert_int_equal(bh_jstore_checkpoint(f->store, 0, &ck), 0);
    assert_true(ck >= 0 && (size_t)ck <= l->n);
    assert_int_equal(bh_jstore_blocks(f->store, 0, load_block, f->s), 0);
    replay(f, l, (size_t)ck);
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

/* The flush of the commit under way, in a batch of the store's (not written yet). */
static struct bh_jstore_batch *
flush_batch(struct fx *f)
{
    struct bh_jstore_batch *sb = bh_jstore_batch_new(f->store);
    struct bh_jbuf buf = {0};
    bh_jstate_set_batch(f->s, sb);
    assert_int_equal(bh_jstate_flush(f->s, &buf), 0);
    bh_jstate_set_batch(f->s, NULL);
    bh_jbuf_free(&buf);
    return sb;
}

/* A copy is recognised whether it waits in memory, is being committed, or is in the store. */
static void
dedup_everywhere(int disk)
{
    struct fx *f = fx_new_store(1000, 1000000, disk);
    struct log l = {0};
    assert_int_equal(ev(f, "B", 0, "x-1", f->alarm, 100), BH_JSTATE_COUNTED);
    assert_int_equal(ev(f, "B", 0, "x-1", f->alarm, 100), BH_JSTATE_COPY); /* staged */
    assert_int_equal(ev(f, "B", 0, "x-2", f->drill, 200), BH_JSTATE_COUNTED);
    /* being committed: between commit_begin and commit_done */
    assert_int_equal(bh_jstate_commit_begin(f->s), 0);
    assert_int_equal(bh_jstate_staged(f->s), 2);
    assert_int_equal(ev(f, "B", 0, "x-1", f->alarm, 100), BH_JSTATE_COPY);
    assert_int_equal(ev(f, "B", 0, "x-3", f->alarm, 9000), BH_JSTATE_COUNTED);
    struct bh_jstore_batch *sb = flush_batch(f);
    assert_int_equal(bh_jstore_batch_count(sb), 2);
    assert_int_equal(bh_jstore_write(f->store, sb), 0);
    bh_jstate_commit_done(f->s, 1, 1);
    assert_int_equal(bh_jstate_staged(f->s), 1); /* x-3 waits for the next commit */
    /* in the store now */
    int64_t at;
    assert_int_equal(
        bh_jstore_lookup(f->store, 0, bh_jstate_hash("B", 1), 0, bh_jstate_hash("x-2", 3), &at), 1);
    assert_int_equal(at, 200);
    /* committed without a flush: held in memory, not in the store */
    commit_as(f, &l, 1, 0);
    assert_int_equal(bh_jstate_staged(f->s), 1);
    assert_int_equal(
        bh_jstore_lookup(f->store, 0, bh_jstate_hash("B", 1), 0, bh_jstate_hash("x-3", 3), &at), 0);
    assert_int_equal(ev(f, "B", 0, "x-3", f->alarm, 9000), BH_JSTATE_COPY);
    commit(f, &l);
    assert_int_equal(bh_jstate_staged(f->s), 0);
    assert_int_equal(
        bh_jstore_lookup(f->store, 0, bh_jstate_hash("B", 1), 0, bh_jstate_hash("x-3", 3), &at), 1);
    assert_int_equal(ev(f, "B", 0, "x-1", f->alarm, 100), BH_JSTATE_COPY);
    assert_int_equal(ev(f, "B", 0, "x-2", f->drill, 200), BH_JSTATE_COPY);
    assert_int_equal(ev(f, "B", 0, "x-3", f->alarm, 9000), BH_JSTATE_COPY);
    /* a copy with another type or time is still the same event (same id) */
    assert_int_equal(ev(f, "B", 0, "x-2", f->hazard, 9500), BH_JSTATE_COPY);
    assert_false(bh_jstate_has_dirty(f->s));
    struct bh_jdept *d = dept(f, "B", 0);
    assert_int_equal(d->total, 3);
    assert_int_equal(type_count(f, d, f->alarm), 2);
    assert_int_equal(type_count(f, d, f->hazard), 0);
    assert_int_equal(d->newest, 9000);
    /* the same id in another department or block is another event */
    assert_int_equal(ev(f, "B", 1, "x-1", 0, 100), BH_JSTATE_COUNTED);
    assert_int_equal(ev(f, "C", 0, "x-1", f->alarm, 100), BH_JSTATE_COUNTED);
    log_free(&l);
    fx_free(f);
}

static void
test_dedup_memory_store(void **state)
{
    (void)state;
    dedup_everywhere(0);
}

static void
test_dedup_disk_store(void **state)
{
    (void)state;
    dedup_everywhere(1);
}

/*
 * Many events applied while a commit is produced: the flush that ends it
 * keeps every one of them remembered (the table is rebuilt in place, its
 * kept entries more than fit on the stack) and lets the committed ones go.
 */
static void
test_dedup_many_during_commit(void **state)
{
    (void)state;
    struct fx *f = fx_new_store(1000, 1000000, 0);
    char id[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof id, "a-%d", i);
        assert_int_equal(ev(f, "B", 0, id, f->alarm, 100 + i), BH_JSTATE_COUNTED);
    }
    assert_int_equal(bh_jstate_commit_begin(f->s), 0);
    for (int i = 0; i < 2500; i++) {
        snprintf(id, sizeof id, "b-%d", i);
        assert_int_equal(ev(f, "C", 0, id, f->alarm, 5000 + i), BH_JSTATE_COUNTED);
    }
    struct bh_jstore_batch *sb = flush_batch(f);
    assert_int_equal(bh_jstore_write(f->store, sb), 0);
    bh_jstate_commit_done(f->s, 1, 1);
    assert_int_equal(bh_jstate_staged(f->s), 2500);
    for (int i = 0; i < 2500; i++) {
        snprintf(id, sizeof id, "b-%d", i);
        assert_int_equal(ev(f, "C", 0, id, f->alarm, 5000 + i), BH_JSTATE_COPY);
    }
    for (int i = 0; i < 3000; i += 7) {
        snprintf(id, sizeof id, "a-%d", i);
        assert_int_equal(ev(f, "B", 0, id, f->alarm, 100 + i), BH_JSTATE_COPY);
    }
    assert_int_equal(bh_jstate_staged(f->s), 2500);
    fx_free(f);
}

/*
 * The retention is measured from the partition's newest event of the
 * department: a quiet block remembers as long as a busy one, and an event
 * older than the retention is too late, never counted blindly.
 */
static void
retention_rule(int disk)
{
    const int64_t retention = 10000;
    struct fx *f = fx_new_store(1000, retention, disk);
    struct log l = {0};
    assert_int_equal(ev(f, "quiet", 0, "q-1", f->alarm, 0), BH_JSTATE_COUNTED);
    assert_int_equal(ev(f, "quiet", 0, "q-2", f->alarm, 1), BH_JSTATE_COUNTED);
    commit(f, &l);
    /* a busy block moves the partition's newest to 9999: q-1 (at 0) is 9999 old, still in */
    assert_int_equal(ev(f, "busy", 0, "b-1", f->alarm, 9999), BH_JSTATE_COUNTED);
    assert_int_equal(bh_jstate_newest(f->s, 0), 9999);
    assert_int_equal(ev(f, "quiet", 0, "q-1", f->alarm, 0), BH_JSTATE_COPY);
    commit(f, &l);
    /* at 10000, q-1 is exactly one retention old: too late, for a copy as for a new event */
    assert_int_equal(ev(f, "busy", 0, "b-2", f->alarm, 10000), BH_JSTATE_COUNTED);
    struct bh_jdept before = *dept(f, "quiet", 0);
    assert_int_equal(ev(f, "quiet", 0, "q-1", f->alarm, 0), BH_JSTATE_TOO_LATE);
    assert_int_equal(ev(f, "quiet", 0, "new-old", f->alarm, 0), BH_JSTATE_TOO_LATE);
    assert_int_equal(ev(f, "fresh-block", 0, "f-1", f->alarm, -5), BH_JSTATE_TOO_LATE);
    /* nothing moved: not the counts, not the window, no block made dirty by it */
    struct bh_jdept *q = dept(f, "quiet", 0);
    assert_int_equal(q->total, before.total);
    assert_int_equal(q->newest, before.newest);
    assert_int_equal(bh_jstate_window_total(q), before.wend - before.whead);
    assert_int_equal(dept(f, "fresh-block", 0)->total, 0);
    assert_false(bh_jstate_block(f->s, "fresh-block", 11, 0)->dirty);
    /* q-2 (at 1) is one millisecond inside: a copy of it is still recognised */
    assert_int_equal(ev(f, "quiet", 0, "q-2", f->alarm, 1), BH_JSTATE_COPY);
    /* the other department has its own newest: an old event there is on time */
    assert_int_equal(ev(f, "quiet", 1, "t-1", f->alarm, 0), BH_JSTATE_COUNTED);
    assert_int_equal(bh_jstate_newest(f->s, 1), 0);
    commit(f, &l);
    assert_int_equal(ev(f, "quiet", 0, "q-2", f->alarm, 1), BH_JSTATE_COPY);
    /* a copy claiming a newer time is still the old event, judged by the remembered time */
    assert_int_equal(ev(f, "busy", 0, "b-3", f->alarm, 10001), BH_JSTATE_COUNTED);
    assert_int_equal(ev(f, "quiet", 0, "q-2", f->alarm, 9000), BH_JSTATE_COUNTED);
    assert_int_equal(dept(f, "quiet", 0)->total, 3);
    /* restored from the log, or resumed from the store: the same answers */
    commit(f, &l);
    struct fx *g = restore(&l, 1000, retention);
    assert_int_equal(bh_jstate_newest(g->s, 0), 10001);
    assert_int_equal(ev(g, "quiet", 0, "q-2", g->alarm, 9000), BH_JSTATE_COPY);
    assert_int_equal(ev(g, "quiet", 0, "q-1", g->alarm, 0), BH_JSTATE_TOO_LATE);
    assert_int_equal(ev(g, "busy", 0, "b-1", g->alarm, 9999), BH_JSTATE_COPY);
    if (disk)
        resume(f, &l);
    assert_int_equal(bh_jstate_newest(f->s, 0), 10001);
    assert_int_equal(ev(f, "quiet", 0, "q-2", f->alarm, 9000), BH_JSTATE_COPY);
    assert_int_equal(ev(f, "quiet", 0, "q-1", f->alarm, 0), BH_JSTATE_TOO_LATE);
    assert_int_equal(ev(f, "busy", 0, "b-1", f->alarm, 9999), BH_JSTATE_COPY);
    log_free(&l);
    fx_free(g);
    fx_free(f);
}

static void
test_retention_memory_store(void **state)
{
    (void)state;
    retention_rule(0);
}

static void
test_retention_disk_store(void **state)
{
    (void)state;
    retention_rule(1);
}

/* A copy never enters the window twice, late or not, before or after a commit or restore. */
static void
test_copies_stay_out_of_the_window(void **state)
{
    (void)state;
    struct fx *f = fx_new(1000, 100000);
    struct log l = {0};
    assert_int_equal(ev(f, "B", 0, "a", f->alarm, 5000), 1);
    assert_int_equal(ev(f, "B", 0, "b", f->alarm, 4500), 1); /* late, inside the window */
    assert_int_equal(ev(f, "B", 0, "b", f->alarm, 4500), 0);
    assert_int_equal(bh_jstate_window_total(dept(f, "B", 0)), 2);
    commit(f, &l);
    assert_int_equal(ev(f, "B", 0, "a", f->alarm, 5000), 0);
    assert_int_equal(ev(f, "B", 0, "b", f->alarm, 4500), 0);
    assert_int_equal(bh_jstate_window_total(dept(f, "B", 0)), 2);
    struct fx *g = restore(&l, 1000, 100000);
    assert_int_equal(bh_jstate_window_total(dept(g, "B", 0)), 2);
    assert_int_equal(ev(g, "B", 0, "b", g->alarm, 4500), 0);
    assert_int_equal(ev(g, "B", 0, "c", g->alarm, 4600), 1);
    assert_int_equal(bh_jstate_window_total(dept(g, "B", 0)), 3);
    log_free(&l);
    fx_free(g);
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

/* The heap state stops growing once events only add to the store (ids are not kept in memory). */
static void
test_memory_stays_bounded(void **state)
{
    (void)state;
    struct fx *f = fx_new(10000, 1000000000);
    struct log l = {0};
    struct bh_jstate_usage u;
    char id[32];
    size_t max_bytes_first_half = 0, max_bytes = 0;
    for (int i = 0; i < 100000; i++) {
        snprintf(id, sizeof(id), "ev-%d", i);
        assert_int_equal(ev(f, "B", 0, id, f->alarm, (int64_t)i * 1000), 1);
        if (i % 997 == 0) {
            commit(f, &l);
            log_free(&l);
            memset(&l, 0, sizeof(l));
            bh_jstate_usage(f->s, &u);
            if (i < 50000 && u.bytes > max_bytes_first_half)
                max_bytes_first_half = u.bytes;
            max_bytes = u.bytes > max_bytes ? u.bytes : max_bytes;
            assert_int_equal(u.staged, 0);
            assert_true(u.windowed <= 10);
        }
    }
    /* but for the last id's length */
    assert_true(max_bytes <= max_bytes_first_half + 8);
    struct bh_jstore_usage su;
    bh_jstore_usage(f->store, &su);
    assert_true(su.ids >= 99000);
    print_message("bounded: %zu heap bytes for the block, %llu ids in the store\n", max_bytes,
                  (unsigned long long)su.ids);
    log_free(&l);
    fx_free(f);
}

/* ---- the changelog ---- */

/* Same counts, windows, last events and type names in A and B, block by block. */
static void
assert_same(struct fx *a, struct fx *b)
{
    assert_int_equal(bh_jstate_count(a->s), bh_jstate_count(b->s));
    for (size_t d = 0; d < 2; d++)
        assert_int_equal(bh_jstate_newest(a->s, d), bh_jstate_newest(b->s, d));
    for (size_t i = 0; i < bh_jstate_count(a->s); i++) {
        struct bh_jblock *x = bh_jstate_at(a->s, i);
        struct bh_jblock *y = bh_jstate_block(b->s, x->id, x->id_len, 0);
        assert_non_null(y);
        assert_int_equal(x->updated_at, y->updated_at);
        for (size_t d = 0; d < 2; d++) {
            const struct bh_jdept *p = &x->dept[d], *q = &y->dept[d];
            assert_int_equal(p->total, q->total);
            assert_int_equal(p->newest, q->newest);
            assert_int_equal(p->next_batch, q->next_batch);
            assert_int_equal(bh_jstate_window_total(p), bh_jstate_window_total(q));
            for (uint32_t w = 0; w < p->wend - p->whead; w++)
                assert_int_equal(p->win[p->whead + w], q->win[q->whead + w]);
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

/*
 * Many commits with out-of-order times, copies, and time moving past the
 * retention; some commits aborted; a restore from the whole log, from the
 * compacted log, and a resume from the store's checkpoint after a commit
 * whose store write was lost (kill -9): every one gives the same state and
 * the same answers to later events.
 */
/* 25 events of round ROUND into X: many copies, out of order, two departments. */
static uint32_t
play(struct fx *x, uint32_t seed, int round, int64_t clock)
{
    char id[32], block[16];
    for (int i = 0; i < 25; i++) {
        seed = seed * 1103515245 + 12345;
        int n = (int)(seed >> 8) % 3000;
        snprintf(id, sizeof(id), "id-%d", round * 10 + n % 40); /* copies over 4 rounds */
        snprintf(block, sizeof(block), "blk-%d", n % 7);
        int64_t at = clock - (int64_t)(seed >> 20) % 8000;
        uint32_t type = (seed >> 4) % 2 ? x->alarm : x->drill;
        ev(x, block, (seed >> 3) % 2, id, type, at);
    }
    return seed;
}

static void
test_changelog_roundtrip(void **state)
{
    (void)state;
    const int64_t window = 5000, retention = 20000;
    struct fx *f = fx_new_store(window, retention, 1);
    struct fx *twin = fx_new(window, retention); /* sees only what is committed */
    struct log l = {0}, tl = {0};
    char id[32], block[16];
    uint32_t seed = 12345;
    int64_t clock = 0;
    int aborted = 0;
    for (int round = 0; round < 400; round++) {
        uint32_t next = play(f, seed, round, clock);
        if (round % 23 == 7) {
            /* aborted: nothing of it stays; the engine rebuilds from the store and the log */
            commit_as(f, &l, 0, round % 2);
            resume(f, &l);
            aborted++;
        } else {
            play(twin, seed, round, clock);
            commit_as(f, &l, 1, round % 3 == 0); /* a flush every third commit */
            commit(twin, &tl);
        }
        seed = next;
        clock += 300;
    }
    assert_true(aborted > 10);
    assert_same(f, twin);
    /* the tombstones of batches beyond the retention happened */
    size_t tombstones = 0;
    for (size_t i = 0; i < l.n; i++)
        tombstones += l.r[i].value == NULL;
    assert_true(tombstones > 0);

    struct fx *g = restore(&l, window, retention);
    assert_same(f, g);
    struct log c = {0}, scratch = {0};
    compact(&l, &c);
    struct fx *h = restore(&c, window, retention);
    assert_same(f, h);
    assert_true(c.n < l.n / 4);
    print_message("changelog: %zu records written, %zu after compaction, %zu tombstones\n", l.n,
                  c.n, tombstones);

    /* a commit whose store write is lost (kill -9 between the Kafka commit and the write) */
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof(id), "lost-%d", i);
        ev(f, "blk-1", 0, id, f->alarm, clock + i);
        ev(g, "blk-1", 0, id, g->alarm, clock + i);
        ev(h, "blk-1", 0, id, h->alarm, clock + i);
    }
    struct bh_jbuf buf = {0}, key = {0};
    struct bh_jstore_batch *lost = bh_jstore_batch_new(f->store);
    assert_int_equal(bh_jstate_commit_begin(f->s), 0);
    bh_jstate_set_batch(f->s, lost);
    for (struct bh_jblock *b = bh_jstate_take_dirty(f->s); b != NULL; b = b->next_dirty)
        assert_int_equal(bh_jstate_write(f->s, b, &buf, &key, emit, &l), 0);
    bh_jstate_set_batch(f->s, NULL);
    bh_jstore_batch_free(lost); /* in the changelog, never in the store */
    bh_jbuf_free(&buf);
    bh_jbuf_free(&key);
    bh_jstate_commit_done(f->s, 0, 1);
    commit(g, &scratch);
    commit(h, &scratch);
    resume(f, &l);
    assert_same(f, g);
    assert_int_equal(ev(f, "blk-1", 0, "lost-3", f->alarm, clock + 3), BH_JSTATE_COPY);
    assert_int_equal(ev(g, "blk-1", 0, "lost-3", g->alarm, clock + 3), BH_JSTATE_COPY);

    /* every state answers every later event as the others do */
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
    log_free(&tl);
    log_free(&c);
    log_free(&scratch);
    fx_free(f);
    fx_free(g);
    fx_free(h);
    fx_free(twin);
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
    /* a BlockState of the format before the window: refused as such */
    const char old[] = "\xC3\x01\xe4\x28\x3d\x37\xd6\x83\xff\xa9\x02"
                       "B\x00\x00";
    assert_int_equal(bh_jstate_restore(g->s, "B", 1, old, sizeof(old) - 1, &skipped), -EPROTO);
    /* a DedupBatch numbered INT64_MAX or below 0 (the next number would not fit); 5 is fine */
    struct bh_jbuf bad = {0};
    const int64_t seqs[] = {5, INT64_MAX, -1};
    for (size_t i = 0; i < 3; i++) {
        char bkey[64];
        int bl = snprintf(bkey, sizeof(bkey),
                          "B\x1f"
                          "fire\x1f%" PRId64,
                          seqs[i]);
        bh_jbuf_reset(&bad);
        bh_jbuf_header(&bad, g->conf.batch_fp);
        bh_jbuf_string(&bad, "B", 1);
        bh_jbuf_string(&bad, "fire", 4);
        bh_jbuf_long(&bad, seqs[i]);
        bh_jbuf_long(&bad, 1);
        bh_jbuf_long(&bad, 77);
        bh_jbuf_long(&bad, 10);
        bh_jbuf_long(&bad, 0);
        assert_false(bad.oom);
        assert_int_equal(bh_jstate_restore(g->s, bkey, (size_t)bl, bad.p, bad.len, &skipped),
                         i == 0 ? 0 : -EBADMSG);
    }
    bh_jbuf_free(&bad);
    /* every truncation of a good record is refused, none crashes */
    struct bh_jstore_batch *sb = bh_jstore_batch_new(g->store);
    bh_jstate_set_batch(g->s, sb);
    for (size_t i = 0; i < l.n; i++)
        for (size_t cut = 0; cut < l.r[i].len; cut++)
            assert_int_equal(
                bh_jstate_restore(g->s, l.r[i].key, l.r[i].keylen, l.r[i].value, cut, &skipped),
                -EBADMSG);
    /* a key that does not match the record */
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(bh_jstate_restore(g->s, "Z", 1, l.r[i].value, l.r[i].len, &skipped),
                         -EBADMSG);
    bh_jstate_set_batch(g->s, NULL);
    bh_jstore_batch_free(sb);
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
    struct fx *f = fx_new(1000, 100000);
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
        cmocka_unit_test(test_dedup_memory_store),
        cmocka_unit_test(test_dedup_disk_store),
        cmocka_unit_test(test_dedup_many_during_commit),
        cmocka_unit_test(test_retention_memory_store),
        cmocka_unit_test(test_retention_disk_store),
        cmocka_unit_test(test_copies_stay_out_of_the_window),
        cmocka_unit_test(test_last_event),
        cmocka_unit_test(test_memory_stays_bounded),
        cmocka_unit_test(test_changelog_roundtrip),
        cmocka_unit_test(test_restore_refuses_garbage),
        cmocka_unit_test(test_many_blocks),
        cmocka_unit_test(test_types_intern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
