/*
 * The join's local state store (join/join_store.c), on disk (RocksDB) and in
 * memory: remembered ids written by batches only, checkpoints, forgetting a
 * partition, the blocks read back in order, the sweep of dedup batches
 * (each one visited once a round, round and round), the retention floors
 * (compactions drop what is below them), a store made for another
 * configuration emptied, one owner at a time, and the disk store's filters of
 * remembered events in memory (built at open from what the store holds, fed
 * by every write, built again when outgrown, and answering most lookups of new
 * ids without the store).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "join_store.h"

static const char *const depts[] = {"fire", "traffic", "market"};

struct fx {
    char dir[64];
    struct bh_jstore *s;
};

static struct bh_jstore *
open_store(struct fx *f, int disk, const char *identity)
{
    struct bh_jstore_conf c = {.disk = disk,
                               .dir = f->dir,
                               .memory_limit = 16 << 20,
                               .nparts = 4,
                               .ndepts = 3,
                               .depts = depts,
                               .identity = identity};
    char err[300];
    struct bh_jstore *s = NULL;
    int rc = bh_jstore_open(&s, &c, err, sizeof(err));
    if (rc < 0)
        print_message("open: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static struct fx *
fx_new(int disk)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    if (disk) {
        snprintf(f->dir, sizeof(f->dir), "/tmp/bh-jstore-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
    }
    f->s = open_store(f, disk, "test store");
    return f;
}

static void
fx_free(struct fx *f)
{
    bh_jstore_close(f->s);
    if (f->dir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
    }
    free(f);
}

static int
has(struct bh_jstore *s, int32_t p, uint64_t bh, unsigned dept, uint64_t ih, int64_t *at)
{
    int64_t t = 0;
    int rc = bh_jstore_lookup(s, p, bh, dept, ih, &t);
    assert_true(rc == 0 || rc == 1);
    if (at != NULL)
        *at = t;
    return rc;
}

static void
ids(int disk)
{
    struct fx *f = fx_new(disk);
    int64_t at;
    struct bh_jstore_batch *b = bh_jstore_batch_new(f->s);
    for (uint64_t i = 1; i <= 5000; i++)
        assert_int_equal(bh_jstore_put_id(b, (int32_t)(i % 4), i * 7, i % 3, i, (int64_t)i), 0);
    assert_int_equal(bh_jstore_batch_count(b), 5000);
    /* nothing is there before the batch is written */
    assert_int_equal(has(f->s, 1, 7, 1, 1, NULL), 0);
    assert_int_equal(bh_jstore_write(f->s, b), 0);
    for (uint64_t i = 1; i <= 5000; i++) {
        assert_int_equal(has(f->s, (int32_t)(i % 4), i * 7, i % 3, i, &at), 1);
        assert_int_equal(at, (int64_t)i);
        /* another partition, block, department or id is another event */
        assert_int_equal(has(f->s, (int32_t)((i + 1) % 4), i * 7, i % 3, i, NULL), 0);
        assert_int_equal(has(f->s, (int32_t)(i % 4), i * 7 + 1, i % 3, i, NULL), 0);
        assert_int_equal(has(f->s, (int32_t)(i % 4), i * 7, (i + 1) % 3, i, NULL), 0);
        assert_int_equal(has(f->s, (int32_t)(i % 4), i * 7, i % 3, i + 100000, NULL), 0);
    }
    /* written again with a later time: the later one */
    b = bh_jstore_batch_new(f->s);
    assert_int_equal(bh_jstore_put_id(b, 1, 7, 1, 1, 99), 0);
    assert_int_equal(bh_jstore_write(f->s, b), 0);
    assert_int_equal(has(f->s, 1, 7, 1, 1, &at), 1);
    assert_int_equal(at, 99);
    /* a dropped batch writes nothing */
    b = bh_jstore_batch_new(f->s);
    assert_int_equal(bh_jstore_put_id(b, 2, 1, 0, 424242, 5), 0);
    bh_jstore_batch_free(b);
    assert_int_equal(has(f->s, 2, 1, 0, 424242, NULL), 0);
    /* forgetting a partition forgets only it */
    assert_int_equal(bh_jstore_drop(f->s, 1), 0);
    assert_int_equal(has(f->s, 1, 7, 1, 1, NULL), 0);
    assert_int_equal(has(f->s, 2, 14, 2, 2, NULL), 1);
    struct bh_jstore_usage u;
    bh_jstore_usage(f->s, &u);
    assert_true(u.ids > 0);
    fx_free(f);
}

static void
test_ids_memory(void **state)
{
    (void)state;
    ids(0);
}

static void
test_ids_disk(void **state)
{
    (void)state;
    ids(1);
}

struct seen {
    char ids[64][32];
    size_t n;
};

static int
on_block(void *ctx, const char *id, size_t len, const void *value, size_t vlen)
{
    struct seen *s = ctx;
    assert_true(len < 32 && s->n < 64);
    memcpy(s->ids[s->n], id, len);
    s->ids[s->n][len] = '\0';
    assert_int_equal(vlen, len + 2);
    assert_memory_equal(value, "v:", 2);
    s->n++;
    return 0;
}

static int
put_block(struct bh_jstore_batch *b, int32_t p, const char *id)
{
    char v[40];
    snprintf(v, sizeof(v), "v:%s", id);
    return bh_jstore_put_block(b, p, id, strlen(id), v, strlen(v));
}

/* Checkpoints, blocks and persistence across a reopen (disk only). */
static void
test_checkpoints_and_blocks(void **state)
{
    (void)state;
    struct fx *f = fx_new(1);
    int64_t ck;
    assert_int_equal(bh_jstore_checkpoint(f->s, 0, &ck), -ENOENT);
    struct bh_jstore_batch *b = bh_jstore_batch_new(f->s);
    assert_int_equal(put_block(b, 0, "440303-020"), 0);
    assert_int_equal(put_block(b, 0, "440303-003"), 0);
    assert_int_equal(put_block(b, 1, "440303-999"), 0);
    assert_int_equal(put_block(b, 0, "440303-010"), 0);
    assert_int_equal(bh_jstore_put_checkpoint(b, 0, 1234), 0);
    assert_int_equal(bh_jstore_put_id(b, 0, 1, 0, 1, 10), 0);
    assert_int_equal(bh_jstore_write(f->s, b), 0);
    assert_int_equal(bh_jstore_checkpoint(f->s, 0, &ck), 0);
    assert_int_equal(ck, 1234);
    assert_int_equal(bh_jstore_checkpoint(f->s, 1, &ck), -ENOENT);
    /* kill -9 and start again: the same store (what was written is in its log) */
    bh_jstore_close(f->s);
    f->s = open_store(f, 1, "test store");
    assert_int_equal(bh_jstore_checkpoint(f->s, 0, &ck), 0);
    assert_int_equal(ck, 1234);
    struct seen s = {0};
    assert_int_equal(bh_jstore_blocks(f->s, 0, on_block, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.ids[0], "440303-003");
    assert_string_equal(s.ids[1], "440303-010");
    assert_string_equal(s.ids[2], "440303-020");
    assert_int_equal(has(f->s, 0, 1, 0, 1, NULL), 1);
    /* one owner at a time */
    struct bh_jstore *other;
    struct bh_jstore_conf c = {.disk = 1,
                               .dir = f->dir,
                               .memory_limit = 16 << 20,
                               .nparts = 4,
                               .ndepts = 3,
                               .depts = depts,
                               .identity = "test store"};
    char err[300];
    assert_int_equal(bh_jstore_open(&other, &c, err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, f->dir));
    /* made for another changelog: emptied */
    bh_jstore_close(f->s);
    f->s = open_store(f, 1, "another changelog");
    assert_int_equal(bh_jstore_checkpoint(f->s, 0, &ck), -ENOENT);
    assert_int_equal(has(f->s, 0, 1, 0, 1, NULL), 0);
    s.n = 0;
    assert_int_equal(bh_jstore_blocks(f->s, 0, on_block, &s), 0);
    assert_int_equal(s.n, 0);
    /* the memory store keeps neither */
    struct fx *m = fx_new(0);
    b = bh_jstore_batch_new(m->s);
    assert_int_equal(put_block(b, 0, "x"), 0);
    assert_int_equal(bh_jstore_put_checkpoint(b, 0, 5), 0);
    assert_int_equal(bh_jstore_write(m->s, b), 0);
    assert_int_equal(bh_jstore_checkpoint(m->s, 0, &ck), -ENOENT);
    fx_free(m);
    fx_free(f);
}

struct swept {
    int count[200];
    size_t calls;
};

static int
on_swept(void *ctx, const char *id, size_t len, uint64_t bh, unsigned dept, int64_t seq)
{
    struct swept *w = ctx;
    char want[32];
    snprintf(want, sizeof(want), "blk-%d", (int)bh);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(id, want, len);
    assert_int_equal(dept, (unsigned)(seq % 3));
    assert_true(seq >= 0 && seq < 200);
    w->count[seq]++;
    w->calls++;
    return 0;
}

/* 200 batches of partition 2, newest = seq * 10; a round of sweeps sees each once. */
static void
sweep(int disk)
{
    struct fx *f = fx_new(disk);
    struct bh_jstore_batch *b = bh_jstore_batch_new(f->s);
    char id[32];
    for (int seq = 0; seq < 200; seq++) {
        snprintf(id, sizeof(id), "blk-%d", seq % 5);
        assert_int_equal(bh_jstore_put_dedup(b, 2, (uint64_t)(seq % 5), (unsigned)(seq % 3), seq,
                                             seq * 10, id, strlen(id)),
                         0);
    }
    /* another partition's batches are never visited */
    assert_int_equal(bh_jstore_put_dedup(b, 3, 1, 0, 7, 0, "blk-1", 5), 0);
    assert_int_equal(bh_jstore_write(f->s, b), 0);
    /* floors: below 1000 for every department: seq < 100 */
    const int64_t floors[3] = {1000, 1000, 1000};
    struct swept w = {0};
    long visited = 0;
    for (int call = 0; call < 7; call++) {
        size_t max = call < 6 ? 30 : 20;
        long n = bh_jstore_sweep(f->s, 2, floors, max, on_swept, &w);
        assert_int_equal(n, max);
        visited += n;
    }
    assert_int_equal(visited, 200);
    assert_int_equal(w.calls, 100);
    for (int seq = 0; seq < 200; seq++)
        assert_int_equal(w.count[seq], seq < 100 ? 1 : 0);
    /* one call with room for more than there are: each once, no more */
    memset(&w, 0, sizeof(w));
    assert_int_equal(bh_jstore_sweep(f->s, 2, floors, 100000, on_swept, &w), 200);
    assert_int_equal(w.calls, 100);
    for (int seq = 0; seq < 100; seq++)
        assert_int_equal(w.count[seq], 1);
    /* deleted batches are gone from the next rounds */
    b = bh_jstore_batch_new(f->s);
    for (int seq = 0; seq < 100; seq++)
        assert_int_equal(bh_jstore_del_dedup(b, 2, (uint64_t)(seq % 5), (unsigned)(seq % 3), seq),
                         0);
    assert_int_equal(bh_jstore_write(f->s, b), 0);
    memset(&w, 0, sizeof(w));
    assert_int_equal(bh_jstore_sweep(f->s, 2, floors, 100000, on_swept, &w), 100);
    assert_int_equal(w.calls, 0);
    fx_free(f);
}

static void
test_sweep_memory(void **state)
{
    (void)state;
    sweep(0);
}

static void
test_sweep_disk(void **state)
{
    (void)state;
    sweep(1);
}

/* Ids below their partition and department's floor go at the next compaction; others stay. */
static void
floors(int disk)
{
    struct fx *f = fx_new(disk);
    struct bh_jstore_batch *b = bh_jstore_batch_new(f->s);
    for (uint64_t i = 0; i < 1000; i++)
        for (int32_t p = 0; p < 2; p++)
            assert_int_equal(bh_jstore_put_id(b, p, 1, 0, i + 1, (int64_t)i), 0);
    assert_int_equal(bh_jstore_write(f->s, b), 0);
    bh_jstore_set_floor(f->s, 0, 0, 500);
    bh_jstore_set_floor(f->s, 0, 0, 100); /* a floor never goes down */
    bh_jstore_set_floor(f->s, 1, 1, 900); /* another department: not these ids */
    assert_int_equal(bh_jstore_compact(f->s), 0);
    for (uint64_t i = 0; i < 1000; i++) {
        assert_int_equal(has(f->s, 0, 1, 0, i + 1, NULL), i >= 500);
        assert_int_equal(has(f->s, 1, 1, 0, i + 1, NULL), 1);
    }
    fx_free(f);
}

static void
test_floors_memory(void **state)
{
    (void)state;
    floors(0);
}

static void
test_floors_disk(void **state)
{
    (void)state;
    floors(1);
}

/* Until the store's filters of N partitions are ready and BUILDS builds are done (10 s at most). */
static void
wait_filters(struct bh_jstore *s, int32_t n, uint64_t builds)
{
    struct bh_jstore_usage u;
    for (int i = 0; i < 1000; i++) {
        bh_jstore_usage(s, &u);
        if (u.filters_ready == n && u.filter_builds >= builds)
            return;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    fail_msg("filters: %d of %d ready, %llu of %llu builds", (int)u.filters_ready, (int)n,
             (unsigned long long)u.filter_builds, (unsigned long long)builds);
}

/* KEYS[0..N) through bh_jstore_lookup_many: how many are found, each at its id as time. */
static size_t
found_many(struct bh_jstore *s, const struct bh_jstore_key *keys, size_t n)
{
    int *found = calloc(n, sizeof(*found));
    int64_t *at = calloc(n, sizeof(*at));
    assert_true(found != NULL && at != NULL);
    assert_int_equal(bh_jstore_lookup_many(s, n, keys, found, at), 0);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (found[i]) {
            assert_int_equal(at[i], (int64_t)keys[i].id_hash);
            k++;
        }
    }
    free(found);
    free(at);
    return k;
}

static struct bh_jstore_key *
make_keys(size_t n, uint64_t first)
{
    struct bh_jstore_key *k = calloc(n, sizeof(*k));
    assert_non_null(k);
    for (size_t i = 0; i < n; i++) {
        uint64_t id = first + i;
        k[i] = (struct bh_jstore_key){.partition = 0,
                                      .dept = (unsigned)(id % 3),
                                      .block_hash = id * 0x9E3779B97F4A7C15ULL,
                                      .id_hash = id};
    }
    return k;
}

static void
put_keys(struct bh_jstore *s, const struct bh_jstore_key *k, size_t n)
{
    struct bh_jstore_batch *b = bh_jstore_batch_new(s);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(bh_jstore_put_id(b, k[i].partition, k[i].block_hash, k[i].dept,
                                          k[i].id_hash, (int64_t)k[i].id_hash),
                         0);
    assert_int_equal(bh_jstore_write(s, b), 0);
}

static void
test_filters_disk(void **state)
{
    (void)state;
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/bh-jstore-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    /* 1 MiB: a filter of 32 KiB a partition, which holds about 26,000 ids well */
    struct bh_jstore_conf c = {.disk = 1,
                               .dir = f->dir,
                               .memory_limit = 1 << 20,
                               .nparts = 4,
                               .ndepts = 3,
                               .depts = depts,
                               .identity = "filters"};
    char err[300];
    assert_int_equal(bh_jstore_open(&f->s, &c, err, sizeof(err)), 0);
    wait_filters(f->s, 4, 4);

    /* ids written once the filter is built are found through it; others are not */
    const size_t n = 5000;
    struct bh_jstore_key *have = make_keys(n, 1), *never = make_keys(n, 1000000);
    put_keys(f->s, have, n);
    assert_int_equal(found_many(f->s, have, n), n);
    struct bh_jstore_usage u0, u1;
    bh_jstore_usage(f->s, &u0);
    assert_int_equal(found_many(f->s, never, n), 0);
    bh_jstore_usage(f->s, &u1);
    /* most of the new ids are answered by the filter: at most 3% read the store */
    assert_true(u1.filter_answered - u0.filter_answered >= n * 97 / 100);
    assert_int_equal(
        (u1.filter_answered - u0.filter_answered) + (u1.store_lookups - u0.store_lookups), n);
    assert_int_equal(u1.filter_bytes, 4 * 32768);

    /* outgrown (65,000 ids, more than twice as many as at its build): built again, nothing lost */
    const size_t more = 60000;
    struct bh_jstore_key *big = make_keys(more, 5001);
    put_keys(f->s, big, more);
    wait_filters(f->s, 4, 5);
    assert_int_equal(found_many(f->s, have, n), n);
    assert_int_equal(found_many(f->s, big, more), more);
    assert_int_equal(found_many(f->s, never, n), 0);

    /* reopened: the filter is built from what the store holds */
    bh_jstore_close(f->s);
    assert_int_equal(bh_jstore_open(&f->s, &c, err, sizeof(err)), 0);
    wait_filters(f->s, 4, 4);
    assert_int_equal(found_many(f->s, have, n), n);
    assert_int_equal(found_many(f->s, big, more), more);
    bh_jstore_usage(f->s, &u0);
    assert_int_equal(found_many(f->s, never, n), 0);
    bh_jstore_usage(f->s, &u1);
    /* 65,000 ids in a filter that holds 26,000 well: many "maybe", still some answered */
    assert_true(u1.filter_answered > u0.filter_answered);
    free(have);
    free(never);
    free(big);
    fx_free(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_memory),
        cmocka_unit_test(test_ids_disk),
        cmocka_unit_test(test_checkpoints_and_blocks),
        cmocka_unit_test(test_sweep_memory),
        cmocka_unit_test(test_sweep_disk),
        cmocka_unit_test(test_floors_memory),
        cmocka_unit_test(test_floors_disk),
        cmocka_unit_test(test_filters_disk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
