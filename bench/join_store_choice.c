/*
 * Which embedded store holds the join's remembered event ids: LMDB or
 * RocksDB, measured with the join's own access pattern (bench/RESULTS.md,
 * "Join: the on-disk dedup store"). Built and run by
 * bench/run-join-store-choice.sh, not by the project build (it links both).
 *
 *   join_store_choice lmdb|rocksdb DIR IDS [MEMORY_MB]
 *
 * The pattern: 10,000 blocks, 3 departments, events in rough time order, one
 * lookup per event (is this id remembered?), 80% new ids (inserted), 15%
 * copies of a recent id, 5% copies of an id from anywhere in the past. As the
 * join does: lookups 256 events at a time (RocksDB: one batched lookup; LMDB
 * has none, its lookups are one B-tree walk each in a read transaction), and
 * the new ids go to the store 250,000 at a time in one write, in key order,
 * with a checkpoint key. Keys are the join's (join/join_store.h): the
 * partition, 'I', the block id's hash, the department, the id hash (20
 * bytes); values the event time. RocksDB is configured as join/join_store.c
 * configures it for MEMORY_MB (default 256). Prints lookups+inserts per
 * second per million ids, the RSS (anonymous and file-backed), and the time
 * to reopen the store and answer 100,000 lookups (a restart).
 *
 * Variants tried on the way (environment): TEXT_KEYS=1 keys with the block
 * id as text (26 bytes); WB_MB=N the memtable size; HASHREP=1 a hash-skiplist
 * memtable by block; INGEST=N ids kept in memory and taken in by the store
 * as whole sorted table files every N ids instead of through the memtable;
 * COMMIT_IDS=N ids per write; SINGLE_GETS=1 one lookup call per event;
 * FILTERS_IN_CACHE=1 partitioned index and filters held in the block cache.
 */
#include <errno.h>
#include <lmdb.h>
#include <rocksdb/c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "join_store_key.h" /* hub/: the join store's keys */
#include "mix64.h"

#define BLOCKS     10000
#define COMMIT_MAX 2000000
static size_t COMMIT = 250000; /* new ids per store write (COMMIT_IDS=N) */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
rss(long *anon_kb, long *file_kb)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    *anon_kb = *file_kb = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        sscanf(line, "RssAnon: %ld", anon_kb);
        sscanf(line, "RssFile: %ld", file_kb);
    }
    if (f != NULL)
        fclose(f);
}

/* Event number N: its block, department and id hash (a copy has the same N). */
static int fixed_keys;

static size_t
key_of(uint64_t n, unsigned char *k)
{
    uint64_t h = bh_mix64(n + 1);
    int block = (int)(bh_mix64(n ^ 0x5bd1e995) % BLOCKS);
    if (fixed_keys) {
        /* partition 1, the block id's hash, the department, the id hash */
        uint64_t bh = bh_mix64((uint64_t)block * 0x9E3779B97F4A7C15ULL + 1);
        bh_jstore_id_key(k, 1, bh, (unsigned)(h % 3), h);
        return BH_JSTORE_ID_KEY;
    }
    int w = sprintf((char *)k, "%c%cI440303-%06d\x1f%c\x1f", 0, 1, block, "mtf"[h % 3]);
    for (int i = 0; i < 8; i++)
        k[w + i] = (unsigned char)(h >> (56 - 8 * i));
    return (size_t)w + 8;
}

struct store {
    int lmdb;
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *rtxn;
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf;
    rocksdb_options_t *opt;
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo;
    rocksdb_cache_t *cache;
    rocksdb_block_based_table_options_t *bbt;
};

static void
open_store(struct store *s, const char *dir, size_t mem_mb)
{
    if (s->lmdb) {
        mdb_env_create(&s->env);
        mdb_env_set_mapsize(s->env, (size_t)64 << 30);
        int rc = mdb_env_open(s->env, dir, MDB_NOSYNC | MDB_NOMETASYNC | MDB_NORDAHEAD, 0644);
        if (rc != 0) {
            fprintf(stderr, "lmdb: %s\n", mdb_strerror(rc));
            exit(1);
        }
        MDB_txn *t;
        mdb_txn_begin(s->env, NULL, 0, &t);
        mdb_dbi_open(t, NULL, 0, &s->dbi);
        mdb_txn_commit(t);
        mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn);
        return;
    }
    char *err = NULL;
    s->opt = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opt, 1);
    s->bbt = rocksdb_block_based_options_create();
    rocksdb_lru_cache_options_t *lru = rocksdb_lru_cache_options_create();
    rocksdb_lru_cache_options_set_capacity(lru, mem_mb / 2 * 1024 * 1024);
    rocksdb_lru_cache_options_set_num_shard_bits(lru, 4);
    s->cache = rocksdb_cache_create_lru_opts(lru);
    rocksdb_lru_cache_options_destroy(lru);
    rocksdb_block_based_options_set_block_cache(s->bbt, s->cache);
    if (getenv("FILTERS_IN_CACHE") != NULL) {
        /* Partitioned filters and index in the cache: a filter block never outgrows a shard. */
        rocksdb_block_based_options_set_index_type(
            s->bbt, rocksdb_block_based_table_index_type_two_level_index_search);
        rocksdb_block_based_options_set_partition_filters(s->bbt, 1);
        rocksdb_block_based_options_set_metadata_block_size(s->bbt, 4096);
        rocksdb_block_based_options_set_cache_index_and_filter_blocks(s->bbt, 1);
        rocksdb_block_based_options_set_pin_top_level_index_and_filter(s->bbt, 1);
        rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(s->bbt, 1);
    }
    rocksdb_block_based_options_set_filter_policy(s->bbt,
                                                  rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_format_version(s->bbt, 5);
    rocksdb_options_set_block_based_table_factory(s->opt, s->bbt);
    size_t wb = getenv("WB_MB") ? strtoul(getenv("WB_MB"), NULL, 10) : mem_mb / 8;
    rocksdb_options_set_write_buffer_size(s->opt, wb * 1024 * 1024);
    if (getenv("HASHREP") != NULL) {
        rocksdb_options_set_prefix_extractor(s->opt,
                                             rocksdb_slicetransform_create_fixed_prefix(11));
        rocksdb_options_set_hash_skip_list_rep(s->opt, 1000000, 4, 4);
        rocksdb_options_set_allow_concurrent_memtable_write(s->opt, 0);
    }
    rocksdb_options_set_max_write_buffer_number(s->opt, 2);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(s->opt, 1);
    rocksdb_options_set_max_background_jobs(s->opt, 2);
    rocksdb_options_set_compression(s->opt, rocksdb_no_compression);
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(s->opt, 0.1);
    rocksdb_options_set_memtable_whole_key_filtering(s->opt, 1);
    const char *names[] = {"default"};
    const rocksdb_options_t *cfo[] = {s->opt};
    s->db = rocksdb_open_column_families(s->opt, dir, 1, names, cfo, &s->cf, &err);
    if (err != NULL) {
        fprintf(stderr, "rocksdb: %s\n", err);
        exit(1);
    }
    s->ro = rocksdb_readoptions_create();
    s->wo = rocksdb_writeoptions_create();
}

static void
close_store(struct store *s)
{
    if (s->lmdb) {
        mdb_txn_abort(s->rtxn);
        mdb_env_close(s->env);
        return;
    }
    rocksdb_column_family_handle_destroy(s->cf);
    rocksdb_close(s->db);
    rocksdb_readoptions_destroy(s->ro);
    rocksdb_writeoptions_destroy(s->wo);
    rocksdb_options_destroy(s->opt);
    rocksdb_block_based_options_destroy(s->bbt);
    rocksdb_cache_destroy(s->cache);
}

static int lookup(struct store *s, const unsigned char *k, size_t n);

static void
lookup_many(struct store *s, unsigned char (*k)[40], const size_t *kl, size_t n, int *found)
{
    if (s->lmdb || getenv("SINGLE_GETS") != NULL) {
        for (size_t i = 0; i < n; i++)
            found[i] = lookup(s, k[i], kl[i]);
        return;
    }
    const char *kp[256];
    rocksdb_pinnableslice_t *v[256];
    char *errs[256];
    for (size_t i = 0; i < n; i++)
        kp[i] = (const char *)k[i];
    rocksdb_batched_multi_get_cf(s->db, s->ro, s->cf, n, kp, kl, v, errs, false);
    for (size_t i = 0; i < n; i++) {
        found[i] = v[i] != NULL;
        if (v[i] != NULL)
            rocksdb_pinnableslice_destroy(v[i]);
        if (errs[i] != NULL)
            rocksdb_free(errs[i]);
    }
}

static int
lookup(struct store *s, const unsigned char *k, size_t n)
{
    if (s->lmdb) {
        MDB_val key = {n, (void *)k}, v;
        return mdb_get(s->rtxn, s->dbi, &key, &v) == 0;
    }
    char *err = NULL;
    size_t vlen;
    char *v = rocksdb_get(s->db, s->ro, (const char *)k, n, &vlen, &err);
    int found = v != NULL;
    rocksdb_free(v);
    return found;
}

/*
 * INGEST=N: the committed ids are not written through the memtable but kept
 * in memory (a hash set answers lookups for them) and, every N ids, written
 * sorted to a table file that the store takes in whole (IngestExternalFile).
 */
static size_t ingest_every;
static unsigned char (*ing_k)[BH_JSTORE_ID_KEY];
static int64_t *ing_at;
static uint64_t *ing_set; /* event number + 1; 0 empty */
static size_t ing_n, ing_cap, ing_setcap;
static int ing_files;

static int
ing_has(uint64_t n)
{
    if (ing_setcap == 0)
        return 0;
    for (size_t i = bh_mix64(n) & (ing_setcap - 1); ing_set[i] != 0; i = (i + 1) & (ing_setcap - 1))
        if (ing_set[i] == n + 1)
            return 1;
    return 0;
}

static int
cmp_id_key(const void *a, const void *b)
{
    return memcmp(a, b, BH_JSTORE_ID_KEY);
}

static void
ingest(struct store *s, const char *dir)
{
    if (ing_n == 0)
        return;
    /* sort keys with their times: pack the time behind the key */
    unsigned char(*rec)[BH_JSTORE_ID_KEY + 8] = malloc(ing_n * sizeof(*rec));
    for (size_t i = 0; i < ing_n; i++) {
        memcpy(rec[i], ing_k[i], BH_JSTORE_ID_KEY);
        memcpy(rec[i] + BH_JSTORE_ID_KEY, &ing_at[i], 8);
    }
    qsort(rec, ing_n, sizeof(*rec), cmp_id_key);
    char path[512], *err = NULL;
    snprintf(path, sizeof(path), "%s/ingest-%d.sst", dir, ing_files++);
    rocksdb_envoptions_t *eo = rocksdb_envoptions_create();
    rocksdb_sstfilewriter_t *w = rocksdb_sstfilewriter_create(eo, s->opt);
    rocksdb_sstfilewriter_open(w, path, &err);
    for (size_t i = 0; i < ing_n && err == NULL; i++)
        if (i == 0 || memcmp(rec[i], rec[i - 1], BH_JSTORE_ID_KEY) != 0)
            rocksdb_sstfilewriter_put(w, (const char *)rec[i], BH_JSTORE_ID_KEY,
                                      (const char *)rec[i] + BH_JSTORE_ID_KEY, 8, &err);
    if (err == NULL)
        rocksdb_sstfilewriter_finish(w, &err);
    rocksdb_sstfilewriter_destroy(w);
    rocksdb_envoptions_destroy(eo);
    if (err == NULL) {
        rocksdb_ingestexternalfileoptions_t *io = rocksdb_ingestexternalfileoptions_create();
        rocksdb_ingestexternalfileoptions_set_move_files(io, 1);
        const char *files[] = {path};
        rocksdb_ingest_external_file(s->db, files, 1, io, &err);
        rocksdb_ingestexternalfileoptions_destroy(io);
    }
    if (err != NULL) {
        fprintf(stderr, "ingest: %s\n", err);
        exit(1);
    }
    free(rec);
    ing_n = 0;
    memset(ing_set, 0, ing_setcap * sizeof(*ing_set));
}

static void
ing_add(const unsigned char *k, int64_t at, uint64_t n)
{
    if (ing_n == ing_cap) {
        ing_cap = ingest_every + COMMIT_MAX;
        ing_k = malloc(ing_cap * BH_JSTORE_ID_KEY);
        ing_at = malloc(ing_cap * sizeof(*ing_at));
        ing_setcap = 1;
        while (ing_setcap < ing_cap * 2)
            ing_setcap *= 2;
        ing_set = calloc(ing_setcap, sizeof(*ing_set));
    }
    memcpy(ing_k[ing_n], k, BH_JSTORE_ID_KEY);
    ing_at[ing_n++] = at;
    size_t i = bh_mix64(n) & (ing_setcap - 1);
    while (ing_set[i] != 0)
        i = (i + 1) & (ing_setcap - 1);
    ing_set[i] = n + 1;
}

struct pending {
    unsigned char k[COMMIT_MAX][40];
    size_t klen[COMMIT_MAX];
    int64_t at[COMMIT_MAX];
    size_t n;
};

static struct pending *sort_p;
static const char *ing_dir;

static int
cmp_staged(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    size_t lx = sort_p->klen[x], ly = sort_p->klen[y];
    int c = memcmp(sort_p->k[x], sort_p->k[y], lx < ly ? lx : ly);
    return c != 0 ? c : (lx > ly) - (lx < ly);
}

static void
commit(struct store *s, struct pending *p)
{
    /* In key order: each insert starts from where the previous one went. */
    static size_t order[COMMIT_MAX];
    for (size_t i = 0; i < p->n; i++)
        order[i] = i;
    sort_p = p;
    if (getenv("NOSORT") == NULL)
        qsort(order, p->n, sizeof(*order), cmp_staged);
    unsigned char ck[20] = {0};
    bh_jstore_kind_key(ck, 1, BH_JSTORE_KIND_CKPT);
    int64_t off = (int64_t)p->n;
    if (s->lmdb) {
        MDB_txn *t;
        mdb_txn_begin(s->env, NULL, 0, &t);
        for (size_t i = 0; i < p->n; i++) {
            size_t o = order[i];
            MDB_val key = {p->klen[o], p->k[o]}, v = {8, &p->at[o]};
            mdb_put(t, s->dbi, &key, &v, 0);
        }
        MDB_val key = {sizeof(ck), (void *)ck}, v = {8, &off};
        mdb_put(t, s->dbi, &key, &v, 0);
        int rc = mdb_txn_commit(t);
        if (rc != 0) {
            fprintf(stderr, "lmdb commit: %s\n", mdb_strerror(rc));
            exit(1);
        }
        mdb_txn_reset(s->rtxn);
        mdb_txn_renew(s->rtxn);
    } else if (ingest_every > 0) {
        for (size_t i = 0; i < p->n; i++)
            ing_add(p->k[i], p->at[i], (uint64_t)p->at[i]);
        /* the checkpoint alone goes through the memtable, outside the ids' key range */
        const unsigned char ck2[20] = {0xff, 0xff, 'C'};
        char *err = NULL;
        rocksdb_put(s->db, s->wo, (const char *)ck2, sizeof(ck2), (const char *)&off, 8, &err);
        if (ing_n >= ingest_every)
            ingest(s, ing_dir);
    } else {
        rocksdb_writebatch_t *b = rocksdb_writebatch_create();
        for (size_t i = 0; i < p->n; i++)
            rocksdb_writebatch_put(b, (const char *)p->k[order[i]], p->klen[order[i]],
                                   (const char *)&p->at[order[i]], 8);
        rocksdb_writebatch_put(b, (const char *)ck, sizeof(ck), (const char *)&off, 8);
        char *err = NULL;
        rocksdb_write(s->db, s->wo, b, &err);
        rocksdb_writebatch_destroy(b);
        if (err != NULL) {
            fprintf(stderr, "rocksdb write: %s\n", err);
            exit(1);
        }
    }
    p->n = 0;
}

int
main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s lmdb|rocksdb DIR IDS [MEMORY_MB]\n", argv[0]);
        return 2;
    }
    struct store s = {.lmdb = strcmp(argv[1], "lmdb") == 0};
    fixed_keys = getenv("TEXT_KEYS") == NULL;
    if (getenv("COMMIT_IDS") != NULL)
        COMMIT = strtoul(getenv("COMMIT_IDS"), NULL, 10);
    if (COMMIT == 0 || COMMIT > COMMIT_MAX)
        COMMIT = 25000;
    rocksdb_set_perf_level(1); /* kDisable: no per-operation counters, as the join */
    ingest_every = getenv("INGEST") ? strtoul(getenv("INGEST"), NULL, 10) : 0;
    if (ingest_every > 0)
        fixed_keys = 1;
    const char *dir = argv[2];
    uint64_t ids = strtoull(argv[3], NULL, 10);
    size_t mem = argc > 4 ? strtoul(argv[4], NULL, 10) : 256;
    open_store(&s, dir, mem);
    ing_dir = dir;
    struct pending *p = calloc(1, sizeof(*p));
    uint64_t next = 0, rnd = 88172645463325252ULL, events = 0, hits = 0;
    double t0 = now_s(), c0 = cpu_s(), tm = t0, cm = c0;
    uint64_t mark = 1000000, events_at_mark = 0;
    unsigned char k[40];
    enum { B = 256 };
    static unsigned char bk[B][40];
    static size_t bkl[B];
    static uint64_t bn[B];
    static int bfound[B], bnew[B];
    while (next < ids) {
        /* 256 events, looked up together (RocksDB: one batched lookup, as the join does) */
        size_t nb = 0;
        while (nb < B && next < ids) {
            rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
            uint64_t r = rnd % 100, n;
            bnew[nb] = r < 80 || next < 1000;
            if (bnew[nb])
                n = next++;
            else if (r < 95)
                n = next - 1 - (rnd >> 8) % 1000;
            else
                n = (rnd >> 8) % next;
            bkl[nb] = key_of(n, bk[nb]);
            bn[nb++] = n;
        }
        lookup_many(&s, bk, bkl, nb, bfound);
        for (size_t i = 0; i < nb; i++) {
            uint64_t n = bn[i];
            events++;
            int found = (ingest_every > 0 && ing_has(n)) || bfound[i];
            if (found) {
                hits++;
            } else if (bnew[i]) {
                /* a new event (a copy of one not yet written is caught by the join's staging) */
                memcpy(p->k[p->n], bk[i], bkl[i]);
                p->klen[p->n] = bkl[i];
                p->at[p->n] = (int64_t)n;
                p->n++;
            }
        }
        if (p->n >= COMMIT)
            commit(&s, p);
        if (next >= mark) {
            double t = now_s(), c = cpu_s();
            long a, f;
            rss(&a, &f);
            double ne = (double)(events - events_at_mark);
            printf("%s ids %6.1fM: %8.0f events/s (%.2f us CPU each) RSS anon %ld MB file %ld MB\n",
                   argv[1], (double)next / 1e6, ne / (t - tm), (c - cm) / ne * 1e6, a / 1024,
                   f / 1024);
            events_at_mark = events;
            fflush(stdout);
            tm = t, cm = c;
            mark += ids >= 10000000 ? 2000000 : 1000000;
        }
    }
    commit(&s, p);
    if (ingest_every > 0)
        ingest(&s, ing_dir);
    double t1 = now_s(), c1 = cpu_s();
    long a, f;
    rss(&a, &f);
    printf("%s total: %llu ids, %llu events, %llu found, %.0f events/s, %.2f us CPU per event, "
           "RSS anon %ld MB file %ld MB\n",
           argv[1], (unsigned long long)ids, (unsigned long long)events, (unsigned long long)hits,
           (double)events / (t1 - t0), (c1 - c0) / (double)events * 1e6, a / 1024, f / 1024);
    close_store(&s);
    /* a restart: open, then 100,000 lookups of old and new ids */
    double r0 = now_s();
    struct store s2 = {.lmdb = s.lmdb};
    open_store(&s2, dir, mem);
    double r1 = now_s();
    uint64_t found = 0;
    for (int i = 0; i < 100000; i++) {
        rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
        size_t kl = key_of(rnd % (ids * 2), k);
        found += (uint64_t)lookup(&s2, k, kl);
    }
    double r2 = now_s();
    rss(&a, &f);
    printf("%s restart: open %.3f s, 100000 lookups %.3f s (%llu found), RSS anon %ld MB file %ld "
           "MB\n",
           argv[1], r1 - r0, r2 - r1, (unsigned long long)found, a / 1024, f / 1024);
    close_store(&s2);
    free(p);
    return 0;
}
