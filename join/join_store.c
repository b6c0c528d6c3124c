#include "join_store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "join_idfilter.h"
#include "join_store_key.h"
#include "log.h"
#include "mix64.h"

#define META_FORMAT "blockhub join store 2"
#define CF_META     0 /* blocks, batches, checkpoints, what the store is for */
#define CF_IDS      1 /* the remembered events */

static const unsigned char meta_key[] = {0xff, 0xff, 'M'};

/* --- memory tables ------------------------------------------------------------ */

struct mid {
    uint64_t bh, ih;
    int64_t at;
    uint32_t dept1; /* dept + 1; 0: an empty slot */
};

struct mdedup {
    uint64_t bh;
    int64_t seq, newest;
    char *id;
    uint32_t idlen;
    uint32_t dept1;
};

struct mpart {
    struct mid *ids;
    size_t nids, capids; /* capids: 0 or a power of two */
    struct mdedup *ded;
    size_t nded, capded;
    size_t cursor;
};

/*
 * The disk store's filter of a partition's remembered events (join_idfilter.h):
 * built by scanning the partition's ids, on a thread of its own, at open and
 * again when more ids than it holds well were added. While it is built, the
 * ids written go into it too, so that it misses none the scan did not see.
 */
struct idf {
    struct bh_idfilter *cur;  /* what lookups ask first once ready */
    struct bh_idfilter *next; /* being built */
    int ready;                /* cur holds every id of the partition */
    int want;                 /* a build is asked for */
    uint64_t added;           /* ids in cur: at its build and since */
    uint64_t built;           /* ids in cur at its build */
    uint64_t next_added;      /* ids written into next while it is built */
};

/* --- the store ------------------------------------------------------------------ */

struct bh_jstore {
    int disk;
    int32_t nparts;
    size_t ndepts;
    _Atomic int64_t *floors; /* [p * ndepts + dept] */
    /* disk */
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[2]; /* CF_META (the default) and CF_IDS */
    rocksdb_options_t *opt, *idopt;
    rocksdb_envoptions_t *env;
    char *dir;
    _Atomic uint64_t files; /* table files made for ingestion */
    rocksdb_block_based_table_options_t *bbt;
    rocksdb_cache_t *cache;
    rocksdb_compactionfilter_t *filter;
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo;
    unsigned char (*cursors)[BH_JSTORE_DEDUP_KEY]; /* per partition: where the sweep goes on */
    uint64_t cache_bytes;
    /* the filters (idf_mu guards every struct idf; the bits are set atomically) */
    struct idf *idf;
    size_t idf_bytes; /* a partition's filter */
    pthread_mutex_t idf_mu;
    pthread_cond_t idf_cond;
    pthread_t idf_thread;
    int idf_started;
    _Atomic int idf_stop;
    uint64_t idf_builds, idf_answered, store_lookups; /* under idf_mu */
    /* memory */
    struct mpart *mp;
};

enum mop_kind { MOP_ID, MOP_DEDUP, MOP_UNDEDUP };

struct mop {
    enum mop_kind kind;
    int32_t p;
    unsigned dept;
    uint64_t bh, ih; /* ih: the id hash, or the seq */
    int64_t at;      /* the event time, or the batch's newest */
    char *id;
    size_t idlen;
};

/* A remembered event on its way to the disk store: its key and value, sorted before the write. */
struct idop {
    unsigned char key[BH_JSTORE_ID_KEY];
    unsigned char at[8];
};

struct bh_jstore_batch {
    struct bh_jstore *s;
    rocksdb_writebatch_t *wb;
    struct idop *ids; /* disk: the remembered events, kept apart to go in in key order */
    size_t nids, capids;
    struct mop *ops; /* memory */
    size_t nops, capops;
    size_t count;
    int oom;
};

static void
put_le64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

static int64_t
get_le64(const unsigned char *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = u << 8 | p[i];
    return (int64_t)u;
}

void
bh_jstore_thread_init(void)
{
    rocksdb_set_perf_level(1); /* kDisable */
}

int
bh_jstore_is_disk(const struct bh_jstore *s)
{
    return s->disk;
}

void
bh_jstore_set_floor(struct bh_jstore *s, int32_t p, unsigned dept, int64_t floor)
{
    if (p < 0 || p >= s->nparts || dept >= s->ndepts)
        return;
    _Atomic int64_t *f = &s->floors[(size_t)p * s->ndepts + dept];
    /* A floor only rises: what is beyond the retention stays so. */
    int64_t old = atomic_load_explicit(f, memory_order_relaxed);
    while (floor > old && !atomic_compare_exchange_weak_explicit(
                              f, &old, floor, memory_order_relaxed, memory_order_relaxed))
        ;
}

static int64_t
floor_of(const struct bh_jstore *s, int32_t p, unsigned dept)
{
    return atomic_load_explicit(&s->floors[(size_t)p * s->ndepts + dept], memory_order_relaxed);
}

/* --- RocksDB ------------------------------------------------------------------------- */

/* Compactions drop the ids beyond their partition's floor. */
static unsigned char
filter_ids(void *state, int level, const char *key, size_t keylen, const char *value, size_t vlen,
           char **new_value, size_t *new_len, unsigned char *changed)
{
    const struct bh_jstore *s = state;
    const unsigned char *k = (const unsigned char *)key;
    (void)level;
    (void)new_value;
    (void)new_len;
    *changed = 0;
    if (keylen != BH_JSTORE_ID_KEY || k[2] != BH_JSTORE_KIND_ID || vlen != 8)
        return 0;
    int32_t p = (int32_t)(k[0] << 8 | k[1]);
    unsigned dept = k[11];
    if (p >= s->nparts || dept >= s->ndepts)
        return 0;
    return get_le64((const unsigned char *)value) < floor_of(s, p, dept);
}

static void
filter_done(void *state)
{
    (void)state; /* the store outlives its filter */
}

static const char *
filter_name(void *state)
{
    (void)state;
    return "blockhub.join.retention";
}

static int
rerr(char *rocks_err, char *err, size_t n, const char *what)
{
    snprintf(err, n, "%s: %s", what, rocks_err ? rocks_err : "failed");
    rocksdb_free(rocks_err);
    return -EIO;
}

/*
 * Write the memtable out now: after a range deletion, so that it leaves the
 * memtable (a memtable holding one looks every key up the slow way, past its
 * filter).
 */
static void
flush_memtable(struct bh_jstore *s, char **e)
{
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    for (int i = 0; i < 2 && *e == NULL; i++)
        rocksdb_flush_cf(s->db, fo, s->cf[i], e);
    rocksdb_flushoptions_destroy(fo);
}

/* A store made for another changelog (or another layout) is emptied and relabelled. */
static int
check_identity(struct bh_jstore *s, const char *identity, char *err, size_t n)
{
    char *e = NULL;
    size_t len;
    char *have = rocksdb_get(s->db, s->ro, (const char *)meta_key, sizeof(meta_key), &len, &e);
    if (e != NULL)
        return rerr(e, err, n, "reading the store");
    size_t want_len = strlen(META_FORMAT) + 2 + strlen(identity);
    char *want = malloc(want_len + 1);
    if (want == NULL) {
        rocksdb_free(have);
        return -ENOMEM;
    }
    snprintf(want, want_len + 1, "%s: %s", META_FORMAT, identity);
    int same = have != NULL && len == want_len && memcmp(have, want, len) == 0;
    int have_len_known = have != NULL; /* a store made for something else: emptied */
    if (have != NULL && !same)
        bh_warn("join", "the state store was made for another configuration (%.*s): emptied",
                (int)(len > 200 ? 200 : len), have);
    rocksdb_free(have);
    if (!same) {
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        const unsigned char lo[] = {0};
        if (have_len_known) {
            rocksdb_writebatch_delete_range_cf(wb, s->cf[CF_META], (const char *)lo, 0,
                                               (const char *)meta_key, sizeof(meta_key));
            rocksdb_writebatch_delete_range_cf(wb, s->cf[CF_IDS], (const char *)lo, 0,
                                               (const char *)meta_key, sizeof(meta_key));
        }
        rocksdb_writebatch_put(wb, (const char *)meta_key, sizeof(meta_key), want, want_len);
        rocksdb_write(s->db, s->wo, wb, &e);
        rocksdb_writebatch_destroy(wb);
        if (e == NULL && have_len_known)
            flush_memtable(s, &e);
        if (e != NULL) {
            free(want);
            return rerr(e, err, n, "writing the store");
        }
    }
    free(want);
    return 0;
}

static int
mkdirs(const char *dir)
{
    char path[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(path))
        return -ENAMETOOLONG;
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int idf_start(struct bh_jstore *s, char *err, size_t n);
static void idf_stop(struct bh_jstore *s);

static int
open_disk(struct bh_jstore *s, const struct bh_jstore_conf *c, char *err, size_t n)
{
    int rc = mkdirs(c->dir);
    if (rc < 0) {
        snprintf(err, n, "join.state_dir %s: %s", c->dir, strerror(-rc));
        return rc;
    }
    /*
     * memory_limit: three eighths for the block cache (data, index and filter
     * blocks), an eighth for the filters of remembered events held in memory
     * (split between the partitions), a quarter for the memtables (two of an
     * eighth each); the rest is left to the join's own tables.
     */
    uint64_t limit = c->memory_limit;
    s->cache_bytes = limit / 8 * 3;
    s->idf_bytes = (size_t)(limit / 8 / (uint64_t)c->nparts);
    int shard_bits = 0;
    while (shard_bits < 6 && (s->cache_bytes >> (shard_bits + 1)) >= (8u << 20))
        shard_bits++; /* shards of at least 8 MiB: a filter partition always fits one */
    rocksdb_lru_cache_options_t *lru = rocksdb_lru_cache_options_create();
    rocksdb_lru_cache_options_set_capacity(lru, s->cache_bytes);
    rocksdb_lru_cache_options_set_num_shard_bits(lru, shard_bits);
    s->cache = rocksdb_cache_create_lru_opts(lru);
    rocksdb_lru_cache_options_destroy(lru);

    s->bbt = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(s->bbt, s->cache);
    /*
     * Index and filter blocks are held beside the cache, by the open files
     * (about 1.3 bytes per remembered event): in the cache, a lookup of an id
     * that is not there (most of them) costs twice as much.
     */
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(s->bbt, 0);
    rocksdb_block_based_options_set_filter_policy(s->bbt,
                                                  rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_format_version(s->bbt, 5);

    s->opt = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opt, 1);
    rocksdb_options_set_block_based_table_factory(s->opt, s->bbt);
    rocksdb_options_set_write_buffer_size(s->opt, limit / 8);
    rocksdb_options_set_max_write_buffer_number(s->opt, 2);
    /* Most lookups are for new ids: a filter on the memtable answers those too. */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(s->opt, 0.05);
    rocksdb_options_set_memtable_whole_key_filtering(s->opt, 1);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(s->opt, 1);
    rocksdb_options_set_max_background_jobs(s->opt, 2);
    /* Id hashes do not compress. */
    rocksdb_options_set_compression(s->opt, rocksdb_no_compression);
    rocksdb_options_set_max_open_files(s->opt, 512);
    rocksdb_options_set_info_log_level(s->opt, 2); /* warnings and errors */
    rocksdb_options_set_keep_log_file_num(s->opt, 2);
    rocksdb_options_set_max_log_file_size(s->opt, 1 << 20);
    rocksdb_options_set_create_missing_column_families(s->opt, 1);
    /*
     * The remembered events have a column family of their own: they come in
     * as whole sorted table files (a flush's worth), never through a
     * memtable, and compactions drop those beyond their floor.
     */
    s->idopt = rocksdb_options_create_copy(s->opt);
    rocksdb_options_set_write_buffer_size(s->idopt, 4 << 20);
    s->filter = rocksdb_compactionfilter_create(s, filter_done, filter_ids, filter_name);
    rocksdb_options_set_compaction_filter(s->idopt, s->filter);
    s->env = rocksdb_envoptions_create();
    if ((s->dir = strdup(c->dir)) == NULL)
        return -ENOMEM;

    char *e = NULL;
    const char *cf_names[] = {"default", "ids"};
    const rocksdb_options_t *cf_opts[] = {s->opt, s->idopt};
    s->db = rocksdb_open_column_families(s->opt, c->dir, 2, cf_names, cf_opts, s->cf, &e);
    if (e != NULL) {
        /* "lock hold by current process" / "Resource temporarily unavailable": another owner */
        snprintf(err, n, "join.state_dir %s: cannot open the state store: %s", c->dir, e);
        rocksdb_free(e);
        return -EIO;
    }
    bh_jstore_thread_init();
    s->ro = rocksdb_readoptions_create();
    s->wo = rocksdb_writeoptions_create(); /* the WAL is written, not synced: a crash of the
                                              process loses nothing, a power cut a suffix */
    s->cursors = calloc((size_t)s->nparts, sizeof(*s->cursors));
    if (s->cursors == NULL)
        return -ENOMEM;
    rc = check_identity(s, c->identity, err, n);
    if (rc == 0)
        rc = idf_start(s, err, n);
    return rc;
}

int
bh_jstore_open(struct bh_jstore **out, const struct bh_jstore_conf *c, char *err, size_t n)
{
    if (c->nparts <= 0 || c->nparts > 65535 || c->ndepts == 0 || c->ndepts > 255) {
        snprintf(err, n, "join: state store: %d partitions and %zu departments are out of range",
                 (int)c->nparts, c->ndepts);
        return -EINVAL;
    }
    struct bh_jstore *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->disk = c->disk;
    s->nparts = c->nparts;
    s->ndepts = c->ndepts;
    s->floors = malloc((size_t)c->nparts * c->ndepts * sizeof(*s->floors));
    if (s->floors == NULL) {
        free(s);
        return -ENOMEM;
    }
    for (size_t i = 0; i < (size_t)c->nparts * c->ndepts; i++)
        atomic_init(&s->floors[i], INT64_MIN);
    int rc;
    if (c->disk) {
        rc = open_disk(s, c, err, n);
    } else {
        s->mp = calloc((size_t)c->nparts, sizeof(*s->mp));
        rc = s->mp ? 0 : -ENOMEM;
    }
    if (rc < 0) {
        bh_jstore_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void
mpart_free(struct mpart *m)
{
    free(m->ids);
    for (size_t i = 0; i < m->capded; i++)
        free(m->ded[i].id);
    free(m->ded);
    memset(m, 0, sizeof(*m));
}

void
bh_jstore_close(struct bh_jstore *s)
{
    if (s == NULL)
        return;
    idf_stop(s);
    for (int i = 0; i < 2; i++)
        if (s->cf[i] != NULL)
            rocksdb_column_family_handle_destroy(s->cf[i]);
    if (s->db != NULL)
        rocksdb_close(s->db);
    if (s->idopt != NULL)
        rocksdb_options_destroy(s->idopt);
    if (s->env != NULL)
        rocksdb_envoptions_destroy(s->env);
    free(s->dir);
    if (s->ro != NULL)
        rocksdb_readoptions_destroy(s->ro);
    if (s->wo != NULL)
        rocksdb_writeoptions_destroy(s->wo);
    if (s->opt != NULL)
        rocksdb_options_destroy(s->opt);
    if (s->filter != NULL)
        rocksdb_compactionfilter_destroy(s->filter);
    if (s->bbt != NULL)
        rocksdb_block_based_options_destroy(s->bbt);
    if (s->cache != NULL)
        rocksdb_cache_destroy(s->cache);
    if (s->mp != NULL) {
        for (int32_t p = 0; p < s->nparts; p++)
            mpart_free(&s->mp[p]);
        free(s->mp);
    }
    free(s->cursors);
    free(s->floors);
    free(s);
}

/* --- the memory store's tables --------------------------------------------------------- */

static size_t
mid_slot(uint64_t bh, unsigned dept, uint64_t ih)
{
    return (size_t)bh_mix64(bh ^ ih * 0x9E3779B97F4A7C15ULL ^ (uint64_t)dept << 56);
}

static struct mid *
mid_find(const struct mpart *m, uint64_t bh, unsigned dept, uint64_t ih)
{
    if (m->capids == 0)
        return NULL;
    for (size_t k = mid_slot(bh, dept, ih) & (m->capids - 1); m->ids[k].dept1 != 0;
         k = (k + 1) & (m->capids - 1)) {
        const struct mid *e = &m->ids[k];
        if (e->ih == ih && e->bh == bh && e->dept1 == dept + 1)
            return &m->ids[k];
    }
    return NULL;
}

/* Rebuild the id table without what is below its floor, with room for EXTRA more. */
static int
mid_rebuild(struct bh_jstore *s, int32_t p, size_t extra)
{
    struct mpart *m = &s->mp[p];
    size_t live = 0;
    for (size_t i = 0; i < m->capids; i++)
        live += m->ids[i].dept1 != 0 && m->ids[i].at >= floor_of(s, p, m->ids[i].dept1 - 1);
    size_t cap = 16;
    while (cap * 2 < (live + extra) * 3)
        cap *= 2;
    struct mid *t = calloc(cap, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->capids; i++) {
        const struct mid *e = &m->ids[i];
        if (e->dept1 == 0 || e->at < floor_of(s, p, e->dept1 - 1))
            continue;
        size_t k = mid_slot(e->bh, e->dept1 - 1, e->ih) & (cap - 1);
        while (t[k].dept1 != 0)
            k = (k + 1) & (cap - 1);
        t[k] = *e;
    }
    free(m->ids);
    m->ids = t;
    m->capids = cap;
    m->nids = live;
    return 0;
}

static int
mid_put(struct bh_jstore *s, int32_t p, uint64_t bh, unsigned dept, uint64_t ih, int64_t at)
{
    struct mpart *m = &s->mp[p];
    struct mid *e = mid_find(m, bh, dept, ih);
    if (e != NULL) {
        e->at = at;
        return 0;
    }
    if ((m->nids + 1) * 4 > m->capids * 3 && mid_rebuild(s, p, m->nids / 2 + 1) < 0)
        return -ENOMEM;
    size_t k = mid_slot(bh, dept, ih) & (m->capids - 1);
    while (m->ids[k].dept1 != 0)
        k = (k + 1) & (m->capids - 1);
    m->ids[k] = (struct mid){bh, ih, at, dept + 1};
    m->nids++;
    return 0;
}

static size_t
ded_slot(uint64_t bh, unsigned dept, int64_t seq)
{
    return (size_t)bh_mix64(bh ^ (uint64_t)seq * 0x9E3779B97F4A7C15ULL ^ (uint64_t)dept << 56);
}

static size_t
ded_find(const struct mpart *m, uint64_t bh, unsigned dept, int64_t seq)
{
    if (m->capded == 0)
        return SIZE_MAX;
    for (size_t k = ded_slot(bh, dept, seq) & (m->capded - 1); m->ded[k].dept1 != 0;
         k = (k + 1) & (m->capded - 1))
        if (m->ded[k].seq == seq && m->ded[k].bh == bh && m->ded[k].dept1 == dept + 1)
            return k;
    return SIZE_MAX;
}

static int
ded_grow(struct mpart *m)
{
    size_t cap = m->capded ? m->capded * 2 : 64;
    struct mdedup *t = calloc(cap, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->capded; i++) {
        const struct mdedup *e = &m->ded[i];
        if (e->dept1 == 0)
            continue;
        size_t k = ded_slot(e->bh, e->dept1 - 1, e->seq) & (cap - 1);
        while (t[k].dept1 != 0)
            k = (k + 1) & (cap - 1);
        t[k] = *e;
    }
    free(m->ded);
    m->ded = t;
    m->capded = cap;
    m->cursor = 0;
    return 0;
}

static int
ded_put(struct mpart *m, const struct mop *o)
{
    size_t k = ded_find(m, o->bh, o->dept, (int64_t)o->ih);
    if (k != SIZE_MAX) {
        m->ded[k].newest = o->at;
        return 0;
    }
    if ((m->nded + 1) * 4 > m->capded * 3 && ded_grow(m) < 0)
        return -ENOMEM;
    char *id = malloc(o->idlen ? o->idlen : 1);
    if (id == NULL)
        return -ENOMEM;
    memcpy(id, o->id, o->idlen);
    k = ded_slot(o->bh, o->dept, (int64_t)o->ih) & (m->capded - 1);
    while (m->ded[k].dept1 != 0)
        k = (k + 1) & (m->capded - 1);
    m->ded[k] = (struct mdedup){o->bh, (int64_t)o->ih, o->at, id, (uint32_t)o->idlen, o->dept + 1};
    m->nded++;
    return 0;
}

/* Linear probing: delete by moving later members of the cluster back. */
static void
ded_del(struct mpart *m, uint64_t bh, unsigned dept, int64_t seq)
{
    size_t k = ded_find(m, bh, dept, seq);
    if (k == SIZE_MAX)
        return;
    free(m->ded[k].id);
    size_t mask = m->capded - 1, hole = k;
    for (size_t j = (k + 1) & mask; m->ded[j].dept1 != 0; j = (j + 1) & mask) {
        size_t home = ded_slot(m->ded[j].bh, m->ded[j].dept1 - 1, m->ded[j].seq) & mask;
        /* J may fill the hole when its home is not cyclically within (hole, j]. */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->ded[hole] = m->ded[j];
            hole = j;
        }
    }
    memset(&m->ded[hole], 0, sizeof(m->ded[hole]));
    m->nded--;
}

/* --- the filters of remembered events ------------------------------------------------ */

static int iter_error(rocksdb_iterator_t *it);

/* Every id of partition P into F (the store as it is now); *N gets their number. */
static int
idf_scan(struct bh_jstore *s, int32_t p, struct bh_idfilter *f, uint64_t *n)
{
    unsigned char lo[BH_JSTORE_KIND_KEY], hi[BH_JSTORE_KIND_KEY];
    bh_jstore_kind_key(lo, p, BH_JSTORE_KIND_ID);
    bh_jstore_kind_key(hi, p, BH_JSTORE_KIND_ID + 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, sizeof(hi));
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_IDS]);
    *n = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, sizeof(lo)); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl;
        const unsigned char *k = (const unsigned char *)rocksdb_iter_key(it, &kl);
        if (kl != BH_JSTORE_ID_KEY)
            continue;
        bh_idfilter_add(
            f, bh_idfilter_hash(bh_jstore_get_be64(k + 3), k[11], bh_jstore_get_be64(k + 12)));
        if ((++*n & 4095) == 0 && atomic_load(&s->idf_stop))
            break;
    }
    int rc = iter_error(it);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* The builder: one partition's filter at a time, as asked. */
static void *
idf_main(void *arg)
{
    struct bh_jstore *s = arg;
    bh_jstore_thread_init();
    pthread_mutex_lock(&s->idf_mu);
    for (;;) {
        int32_t p = -1;
        while (!atomic_load(&s->idf_stop)) {
            for (int32_t q = 0; q < s->nparts && p < 0; q++)
                if (s->idf[q].want)
                    p = q;
            if (p >= 0)
                break;
            pthread_cond_wait(&s->idf_cond, &s->idf_mu);
        }
        if (p < 0)
            break;
        struct idf *x = &s->idf[p];
        x->want = 0;
        struct bh_idfilter *f = bh_idfilter_new(s->idf_bytes);
        if (f == NULL)
            continue; /* lookups go on asking the store */
        /* Published before the scan's snapshot: an id written after it goes into F too. */
        x->next = f;
        x->next_added = 0;
        pthread_mutex_unlock(&s->idf_mu);
        uint64_t n = 0;
        int rc = idf_scan(s, p, f, &n);
        pthread_mutex_lock(&s->idf_mu);
        x->next = NULL;
        if (rc < 0 || atomic_load(&s->idf_stop)) {
            bh_idfilter_free(f);
            continue;
        }
        bh_idfilter_free(x->cur);
        x->cur = f;
        x->built = x->added = n + x->next_added;
        x->ready = 1;
        s->idf_builds++;
        if (x->built > bh_idfilter_capacity(f))
            bh_warn("join",
                    "partition %d: %" PRIu64 " remembered events, more than the %" PRIu64
                    " its filter in memory answers well (join.memory_limit): most lookups of new "
                    "events read the store",
                    (int)p, x->built, bh_idfilter_capacity(f));
    }
    pthread_mutex_unlock(&s->idf_mu);
    return NULL;
}

static int
idf_start(struct bh_jstore *s, char *err, size_t n)
{
    s->idf = calloc((size_t)s->nparts, sizeof(*s->idf));
    if (s->idf == NULL)
        return -ENOMEM;
    pthread_mutex_init(&s->idf_mu, NULL);
    pthread_cond_init(&s->idf_cond, NULL);
    for (int32_t p = 0; p < s->nparts; p++)
        s->idf[p].want = 1;
    int rc = pthread_create(&s->idf_thread, NULL, idf_main, s);
    if (rc != 0) {
        snprintf(err, n, "join: state store: cannot start its filter thread: %s", strerror(rc));
        return -rc;
    }
    s->idf_started = 1;
    return 0;
}

static void
idf_stop(struct bh_jstore *s)
{
    if (s->idf == NULL)
        return;
    if (s->idf_started) {
        pthread_mutex_lock(&s->idf_mu);
        atomic_store(&s->idf_stop, 1);
        pthread_cond_signal(&s->idf_cond);
        pthread_mutex_unlock(&s->idf_mu);
        pthread_join(s->idf_thread, NULL);
    }
    for (int32_t p = 0; p < s->nparts; p++)
        bh_idfilter_free(s->idf[p].cur);
    free(s->idf);
    s->idf = NULL;
    pthread_mutex_destroy(&s->idf_mu);
    pthread_cond_destroy(&s->idf_cond);
}

/*
 * Ids now in the store (KEYS, N of them, BH_JSTORE_ID_KEY bytes every STRIDE)
 * into their partitions' filters, and a new build asked for a filter that
 * holds twice as many as it was built with and more than it holds well.
 */
static void
idf_note(struct bh_jstore *s, const unsigned char *keys, size_t n, size_t stride)
{
    if (s->idf == NULL)
        return;
    pthread_mutex_lock(&s->idf_mu);
    for (size_t i = 0; i < n; i++) {
        const unsigned char *k = keys + i * stride;
        int32_t p = (int32_t)(k[0] << 8 | k[1]);
        if (p >= s->nparts)
            continue;
        struct idf *x = &s->idf[p];
        uint64_t h = bh_idfilter_hash(bh_jstore_get_be64(k + 3), k[11], bh_jstore_get_be64(k + 12));
        if (x->next != NULL) {
            bh_idfilter_add(x->next, h);
            x->next_added++;
        }
        if (x->cur != NULL) {
            bh_idfilter_add(x->cur, h);
            x->added++;
        }
    }
    int wake = 0;
    for (int32_t p = 0; p < s->nparts; p++) {
        struct idf *x = &s->idf[p];
        if (x->cur != NULL && x->next == NULL && !x->want &&
            x->added > bh_idfilter_capacity(x->cur) && x->added >= 2 * x->built)
            wake = x->want = 1;
    }
    if (wake)
        pthread_cond_signal(&s->idf_cond);
    pthread_mutex_unlock(&s->idf_mu);
}

/* --- lookups ------------------------------------------------------------------------------ */

int
bh_jstore_lookup(struct bh_jstore *s, int32_t p, uint64_t bh, unsigned dept, uint64_t ih,
                 int64_t *at)
{
    if (p < 0 || p >= s->nparts)
        return -EINVAL;
    if (!s->disk) {
        const struct mid *e = mid_find(&s->mp[p], bh, dept, ih);
        if (e == NULL)
            return 0;
        *at = e->at;
        return 1;
    }

    unsigned char k[BH_JSTORE_ID_KEY];
    bh_jstore_id_key(k, p, bh, dept, ih);
    char *e = NULL;
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(s->db, s->ro, s->cf[CF_IDS], (const char *)k, sizeof(k), &e);
    if (e != NULL) {
        bh_error("join", "state store: %s", e);
        rocksdb_free(e);
        return -EIO;
    }
    if (v == NULL)
        return 0;
    size_t len;
    const char *val = rocksdb_pinnableslice_value(v, &len);
    int rc = 0;
    if (val != NULL && len == 8) {
        *at = get_le64((const unsigned char *)val);
        rc = 1;
    }
    rocksdb_pinnableslice_destroy(v);
    return rc;
}

#define LOOKUP_BATCH 256

int
bh_jstore_lookup_many(struct bh_jstore *s, size_t n, const struct bh_jstore_key *keys, int *found,
                      int64_t *at)
{
    if (!s->disk) {
        for (size_t i = 0; i < n; i++) {
            int rc = bh_jstore_lookup(s, keys[i].partition, keys[i].block_hash, keys[i].dept,
                                      keys[i].id_hash, &at[i]);
            if (rc < 0)
                return rc;
            found[i] = rc;
        }
        return 0;
    }
    /*
     * The filters first: most new ids are certainly not in the store. The
     * rest in batched lookups (about half as much a key as one lookup each).
     */
    size_t ask[LOOKUP_BATCH];
    unsigned char k[LOOKUP_BATCH][BH_JSTORE_ID_KEY];
    const char *kp[LOOKUP_BATCH];
    size_t kl[LOOKUP_BATCH];
    rocksdb_pinnableslice_t *v[LOOKUP_BATCH];
    char *errs[LOOKUP_BATCH];
    int rc = 0;
    for (size_t off = 0; off < n; off += LOOKUP_BATCH) {
        size_t m = n - off < LOOKUP_BATCH ? n - off : LOOKUP_BATCH, na = 0;
        pthread_mutex_lock(&s->idf_mu);
        for (size_t i = 0; i < m; i++) {
            const struct bh_jstore_key *x = &keys[off + i];
            if (x->partition < 0 || x->partition >= s->nparts) {
                pthread_mutex_unlock(&s->idf_mu);
                return -EINVAL;
            }
            found[off + i] = 0;
            const struct idf *f = &s->idf[x->partition];
            if (f->ready &&
                !bh_idfilter_may_have(f->cur, bh_idfilter_hash(x->block_hash, x->dept, x->id_hash)))
                continue;
            bh_jstore_id_key(k[na], x->partition, x->block_hash, x->dept, x->id_hash);
            kp[na] = (const char *)k[na];
            kl[na] = BH_JSTORE_ID_KEY;
            ask[na++] = off + i;
        }
        s->idf_answered += m - na;
        s->store_lookups += na;
        pthread_mutex_unlock(&s->idf_mu);
        if (na == 0)
            continue;
        rocksdb_batched_multi_get_cf(s->db, s->ro, s->cf[CF_IDS], na, kp, kl, v, errs, false);
        for (size_t i = 0; i < na; i++) {
            if (errs[i] != NULL) {
                if (rc == 0)
                    bh_error("join", "state store: %s", errs[i]);
                rocksdb_free(errs[i]);
                rc = -EIO;
            }
            if (v[i] == NULL)
                continue;
            size_t len;
            const char *val = rocksdb_pinnableslice_value(v[i], &len);
            if (val != NULL && len == 8) {
                at[ask[i]] = get_le64((const unsigned char *)val);
                found[ask[i]] = 1;
            }
            rocksdb_pinnableslice_destroy(v[i]);
        }
    }
    return rc;
}

/* --- batches -------------------------------------------------------------------------------- */

struct bh_jstore_batch *
bh_jstore_batch_new(struct bh_jstore *s)
{
    struct bh_jstore_batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->s = s;
    if (s->disk && (b->wb = rocksdb_writebatch_create()) == NULL) {
        free(b);
        return NULL;
    }
    return b;
}

void
bh_jstore_batch_free(struct bh_jstore_batch *b)
{
    if (b == NULL)
        return;
    if (b->wb != NULL)
        rocksdb_writebatch_destroy(b->wb);
    free(b->ids);
    for (size_t i = 0; i < b->nops; i++)
        free(b->ops[i].id);
    free(b->ops);
    free(b);
}

size_t
bh_jstore_batch_count(const struct bh_jstore_batch *b)
{
    return b->count;
}

static struct mop *
add_op(struct bh_jstore_batch *b, enum mop_kind kind, int32_t p)
{
    if (b->nops == b->capops) {
        size_t cap = b->capops ? b->capops * 2 : 256;
        struct mop *o = realloc(b->ops, cap * sizeof(*o));
        if (o == NULL) {
            b->oom = 1;
            return NULL;
        }
        b->ops = o;
        b->capops = cap;
    }
    struct mop *o = &b->ops[b->nops++];
    memset(o, 0, sizeof(*o));
    o->kind = kind;
    o->p = p;
    return o;
}

int
bh_jstore_put_id(struct bh_jstore_batch *b, int32_t p, uint64_t bh, unsigned dept, uint64_t ih,
                 int64_t at)
{
    b->count++;
    if (b->wb != NULL) {
        if (b->nids == b->capids) {
            size_t cap = b->capids ? b->capids * 2 : 1024;
            struct idop *v = realloc(b->ids, cap * sizeof(*v));
            if (v == NULL) {
                b->oom = 1;
                return -ENOMEM;
            }
            b->ids = v;
            b->capids = cap;
        }
        struct idop *o = &b->ids[b->nids++];
        bh_jstore_id_key(o->key, p, bh, dept, ih);
        put_le64(o->at, at);
        return 0;
    }
    struct mop *o = add_op(b, MOP_ID, p);
    if (o == NULL)
        return -ENOMEM;
    o->bh = bh, o->dept = dept, o->ih = ih, o->at = at;
    return 0;
}

int
bh_jstore_put_block(struct bh_jstore_batch *b, int32_t p, const char *id, size_t len,
                    const void *value, size_t vlen)
{
    if (b->wb == NULL)
        return 0;
    unsigned char stack[300], *k = len + 3 <= sizeof(stack) ? stack : malloc(len + 3);
    if (k == NULL) {
        b->oom = 1;
        return -ENOMEM;
    }
    bh_jstore_kind_key(k, p, BH_JSTORE_KIND_BLOCK);
    memcpy(k + 3, id, len);
    rocksdb_writebatch_put(b->wb, (const char *)k, len + 3, value, vlen);
    if (k != stack)
        free(k);
    b->count++;
    return 0;
}

int
bh_jstore_put_dedup(struct bh_jstore_batch *b, int32_t p, uint64_t bh, unsigned dept, int64_t seq,
                    int64_t newest, const char *id, size_t len)
{
    b->count++;
    if (b->wb != NULL) {
        unsigned char k[BH_JSTORE_DEDUP_KEY], stack[300];
        unsigned char *v = len + 8 <= sizeof(stack) ? stack : malloc(len + 8);
        if (v == NULL) {
            b->oom = 1;
            return -ENOMEM;
        }
        bh_jstore_dedup_key(k, p, bh, dept, seq);
        put_le64(v, newest);
        memcpy(v + 8, id, len);
        rocksdb_writebatch_put(b->wb, (const char *)k, sizeof(k), (const char *)v, len + 8);
        if (v != stack)
            free(v);
        return 0;
    }
    struct mop *o = add_op(b, MOP_DEDUP, p);
    if (o == NULL)
        return -ENOMEM;
    o->bh = bh, o->dept = dept, o->ih = (uint64_t)seq, o->at = newest;
    o->id = malloc(len ? len : 1);
    if (o->id == NULL) {
        b->nops--;
        b->oom = 1;
        return -ENOMEM;
    }
    memcpy(o->id, id, len);
    o->idlen = len;
    return 0;
}

int
bh_jstore_del_dedup(struct bh_jstore_batch *b, int32_t p, uint64_t bh, unsigned dept, int64_t seq)
{
    b->count++;
    if (b->wb != NULL) {
        unsigned char k[BH_JSTORE_DEDUP_KEY];
        bh_jstore_dedup_key(k, p, bh, dept, seq);
        rocksdb_writebatch_delete(b->wb, (const char *)k, sizeof(k));
        return 0;
    }
    struct mop *o = add_op(b, MOP_UNDEDUP, p);
    if (o == NULL)
        return -ENOMEM;
    o->bh = bh, o->dept = dept, o->ih = (uint64_t)seq;
    return 0;
}

int
bh_jstore_put_checkpoint(struct bh_jstore_batch *b, int32_t p, int64_t offset)
{
    if (b->wb == NULL)
        return 0;
    unsigned char k[BH_JSTORE_KIND_KEY], v[8];
    bh_jstore_kind_key(k, p, BH_JSTORE_KIND_CKPT);
    put_le64(v, offset);
    rocksdb_writebatch_put(b->wb, (const char *)k, sizeof(k), (const char *)v, sizeof(v));
    b->count++;
    return 0;
}

static int
cmp_idop(const void *a, const void *b)
{
    int c = memcmp(a, b, BH_JSTORE_ID_KEY);
    if (c != 0)
        return c;
    /* the same id twice (a restore reads it in several records): the later time last */
    int64_t x = get_le64(((const struct idop *)a)->at), y = get_le64(((const struct idop *)b)->at);
    return (x > y) - (x < y);
}

/*
 * B's ids into the ids column family: sorted (RocksDB's writer needs it),
 * written to a table file of their own and moved into the store, where they
 * land in one piece. Far cheaper than through a memtable (a skiplist insert
 * each), and they are never in a memtable that lookups would walk.
 */
static int
ingest_ids(struct bh_jstore *s, struct bh_jstore_batch *b)
{
    if (b->nids > 1)
        qsort(b->ids, b->nids, sizeof(*b->ids), cmp_idop);
    char path[4200], *e = NULL;
    snprintf(path, sizeof(path), "%s/ingest-%d-%" PRIu64 ".sst", s->dir, (int)getpid(),
             atomic_fetch_add(&s->files, 1));
    rocksdb_sstfilewriter_t *w = rocksdb_sstfilewriter_create(s->env, s->idopt);
    rocksdb_sstfilewriter_open(w, path, &e);
    for (size_t i = 0; i < b->nids && e == NULL; i++) {
        if (i + 1 < b->nids && memcmp(b->ids[i].key, b->ids[i + 1].key, BH_JSTORE_ID_KEY) == 0)
            continue; /* the latest of the same id */
        rocksdb_sstfilewriter_put(w, (const char *)b->ids[i].key, BH_JSTORE_ID_KEY,
                                  (const char *)b->ids[i].at, 8, &e);
    }
    if (e == NULL)
        rocksdb_sstfilewriter_finish(w, &e);
    rocksdb_sstfilewriter_destroy(w);
    if (e == NULL) {
        rocksdb_ingestexternalfileoptions_t *io = rocksdb_ingestexternalfileoptions_create();
        rocksdb_ingestexternalfileoptions_set_move_files(io, 1);
        const char *files[] = {path};
        rocksdb_ingest_external_file_cf(s->db, s->cf[CF_IDS], files, 1, io, &e);
        rocksdb_ingestexternalfileoptions_destroy(io);
    }
    if (e == NULL) {
        idf_note(s, b->ids[0].key, b->nids, sizeof(*b->ids));
        return 0;
    }
    bh_error("join", "state store: taking in %zu remembered events: %s", b->nids, e);
    rocksdb_free(e);
    unlink(path);
    return -EIO;
}

int
bh_jstore_write(struct bh_jstore *s, struct bh_jstore_batch *b)
{
    int rc = b->oom ? -ENOMEM : 0;
    /*
     * The ids first, as one sorted table file taken in whole: if the rest
     * then fails, or never comes (kill -9), the store holds committed ids
     * beyond its checkpoint, which the replay after it writes again.
     */
    if (rc == 0 && b->wb != NULL && b->nids > 0)
        rc = ingest_ids(s, b);
    if (rc == 0 && b->wb != NULL) {
        char *e = NULL;
        rocksdb_write(s->db, s->wo, b->wb, &e);
        if (e != NULL) {
            bh_error("join", "state store: writing: %s", e);
            rocksdb_free(e);
            rc = -EIO;
        }
    }
    for (size_t i = 0; rc == 0 && i < b->nops; i++) {
        const struct mop *o = &b->ops[i];
        if (o->p < 0 || o->p >= s->nparts)
            continue;
        switch (o->kind) {
        case MOP_ID:
            if (o->at >= floor_of(s, o->p, o->dept))
                rc = mid_put(s, o->p, o->bh, o->dept, o->ih, o->at);
            break;
        case MOP_DEDUP:
            rc = ded_put(&s->mp[o->p], o);
            break;
        case MOP_UNDEDUP:
            ded_del(&s->mp[o->p], o->bh, o->dept, (int64_t)o->ih);
            break;
        }
    }
    bh_jstore_batch_free(b);
    return rc;
}

/* --- restoring ------------------------------------------------------------------------------ */

int
bh_jstore_checkpoint(struct bh_jstore *s, int32_t p, int64_t *offset)
{
    if (!s->disk)
        return -ENOENT;
    unsigned char k[BH_JSTORE_KIND_KEY];
    bh_jstore_kind_key(k, p, BH_JSTORE_KIND_CKPT);
    char *e = NULL;
    size_t len;
    char *v = rocksdb_get(s->db, s->ro, (const char *)k, sizeof(k), &len, &e);
    if (e != NULL) {
        bh_error("join", "state store: %s", e);
        rocksdb_free(e);
        return -EIO;
    }
    int rc = -ENOENT;
    if (v != NULL && len == 8) {
        *offset = get_le64((const unsigned char *)v);
        rc = 0;
    }
    rocksdb_free(v);
    return rc;
}

static int iter_error(rocksdb_iterator_t *it);

int
bh_jstore_drop(struct bh_jstore *s, int32_t p)
{
    if (p < 0 || p >= s->nparts)
        return -EINVAL;
    if (!s->disk) {
        mpart_free(&s->mp[p]);
        return 0;
    }
    unsigned char lo[2], hi[2];
    bh_jstore_put_be16(lo, (uint32_t)p);
    bh_jstore_put_be16(hi, (uint32_t)p + 1);
    memset(s->cursors[p], 0, sizeof(s->cursors[p]));
    /* Nothing of the partition (a first start): nothing to delete. */
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, sizeof(hi));
    int any = 0, rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[i]);
        rocksdb_iter_seek(it, (const char *)lo, sizeof(lo));
        any |= rocksdb_iter_valid(it);
        rc = iter_error(it);
        rocksdb_iter_destroy(it);
    }
    rocksdb_readoptions_destroy(ro);
    if (rc < 0 || !any)
        return rc;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (int i = 0; i < 2; i++)
        rocksdb_writebatch_delete_range_cf(wb, s->cf[i], (const char *)lo, sizeof(lo),
                                           (const char *)hi, sizeof(hi));
    char *e = NULL;
    rocksdb_write(s->db, s->wo, wb, &e);
    rocksdb_writebatch_destroy(wb);
    if (e == NULL)
        flush_memtable(s, &e);
    if (e != NULL) {
        bh_error("join", "state store: %s", e);
        rocksdb_free(e);
        return -EIO;
    }
    return 0;
}

/* An iterator over the keys of partition P of one kind. */
static rocksdb_iterator_t *
kind_iter(struct bh_jstore *s, int32_t p, char kind, rocksdb_readoptions_t **ro, unsigned char *lo,
          unsigned char *hi)
{
    bh_jstore_kind_key(lo, p, kind);
    bh_jstore_kind_key(hi, p, (char)(kind + 1));
    *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(*ro, (const char *)lo, 3);
    rocksdb_readoptions_set_iterate_upper_bound(*ro, (const char *)hi, 3);
    rocksdb_readoptions_set_fill_cache(*ro, 0);
    return rocksdb_create_iterator(s->db, *ro);
}

static int
iter_error(rocksdb_iterator_t *it)
{
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    if (e == NULL)
        return 0;
    bh_error("join", "state store: %s", e);
    rocksdb_free(e);
    return -EIO;
}

int
bh_jstore_blocks(struct bh_jstore *s, int32_t p,
                 int (*fn)(void *ctx, const char *id, size_t len, const void *value, size_t vlen),
                 void *ctx)
{
    if (!s->disk)
        return 0;
    unsigned char lo[BH_JSTORE_KIND_KEY], hi[BH_JSTORE_KIND_KEY];
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it = kind_iter(s, p, BH_JSTORE_KIND_BLOCK, &ro, lo, hi);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, sizeof(lo)); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        rc = fn(ctx, k + 3, klen - 3, v, vlen);
    }
    if (rc == 0)
        rc = iter_error(it);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

static long
sweep_memory(struct bh_jstore *s, int32_t p, const int64_t *floors, size_t max,
             int (*fn)(void *, const char *, size_t, uint64_t, unsigned, int64_t), void *ctx)
{
    struct mpart *m = &s->mp[p];
    long visited = 0;
    /* at most one round of the table a call, so that none is visited twice */
    for (size_t i = 0; (size_t)visited < max && i < m->capded; i++) {
        m->cursor = (m->cursor + 1) & (m->capded - 1);
        const struct mdedup *e = &m->ded[m->cursor];
        if (e->dept1 == 0)
            continue;
        visited++;
        if (e->dept1 - 1 < s->ndepts && e->newest < floors[e->dept1 - 1]) {
            int rc = fn(ctx, e->id, e->idlen, e->bh, e->dept1 - 1, e->seq);
            if (rc < 0)
                return rc;
        }
    }
    return visited;
}

long
bh_jstore_sweep(struct bh_jstore *s, int32_t p, const int64_t *floors, size_t max,
                int (*fn)(void *ctx, const char *id, size_t len, uint64_t block_hash, unsigned dept,
                          int64_t seq),
                void *ctx)
{
    if (p < 0 || p >= s->nparts)
        return -EINVAL;
    if (!s->disk)
        return sweep_memory(s, p, floors, max, fn, ctx);
    unsigned char lo[BH_JSTORE_KIND_KEY], hi[BH_JSTORE_KIND_KEY], start[BH_JSTORE_DEDUP_KEY];
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it = kind_iter(s, p, BH_JSTORE_KIND_DEDUP, &ro, lo, hi);
    unsigned char *cur = s->cursors[p];
    int from_first = cur[2] != BH_JSTORE_KIND_DEDUP;
    memcpy(start, cur, BH_JSTORE_DEDUP_KEY);
    if (from_first)
        rocksdb_iter_seek(it, (const char *)lo, sizeof(lo));
    else
        rocksdb_iter_seek(it, (const char *)cur, BH_JSTORE_DEDUP_KEY);
    long visited = 0;
    int wrapped = 0, rc = 0;
    while (rc == 0 && (size_t)visited < max) {
        if (!rocksdb_iter_valid(it)) {
            if (from_first || wrapped) {
                memset(cur, 0, BH_JSTORE_DEDUP_KEY); /* the next call starts from the first */
                break;
            }
            wrapped = 1; /* round again from the first, up to where this call began */
            rocksdb_iter_seek(it, (const char *)lo, sizeof(lo));
            continue;
        }
        size_t klen, vlen;
        const unsigned char *k = (const unsigned char *)rocksdb_iter_key(it, &klen);
        if (wrapped && klen == BH_JSTORE_DEDUP_KEY && memcmp(k, start, BH_JSTORE_DEDUP_KEY) >= 0)
            break;
        const unsigned char *v = (const unsigned char *)rocksdb_iter_value(it, &vlen);
        visited++;
        if (klen == BH_JSTORE_DEDUP_KEY && vlen >= 8 && k[11] < s->ndepts &&
            get_le64(v) < floors[k[11]])
            rc = fn(ctx, (const char *)v + 8, vlen - 8, bh_jstore_get_be64(k + 3), k[11],
                    (int64_t)bh_jstore_get_be64(k + 12));
        rocksdb_iter_next(it);
        if (rocksdb_iter_valid(it)) {
            const char *nk = rocksdb_iter_key(it, &klen);
            if (klen == BH_JSTORE_DEDUP_KEY)
                memcpy(cur, nk, BH_JSTORE_DEDUP_KEY);
        } else {
            memset(cur, 0, BH_JSTORE_DEDUP_KEY);
        }
    }
    if (rc == 0)
        rc = iter_error(it);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc < 0 ? rc : visited;
}

int
bh_jstore_compact(struct bh_jstore *s)
{
    if (!s->disk) {
        for (int32_t p = 0; p < s->nparts; p++)
            if (mid_rebuild(s, p, 0) < 0)
                return -ENOMEM;
        return 0;
    }
    for (int i = 0; i < 2; i++)
        rocksdb_compact_range_cf(s->db, s->cf[i], NULL, 0, NULL, 0);
    return 0;
}

/* --- figures ---------------------------------------------------------------------------------- */

/* A RocksDB figure of column family CF, or of both (CF < 0). */
static uint64_t
prop(struct bh_jstore *s, int cf, const char *name)
{
    uint64_t sum = 0;
    for (int i = 0; i < 2; i++) {
        uint64_t v = 0;
        if ((cf < 0 || cf == i) && rocksdb_property_int_cf(s->db, s->cf[i], name, &v) == 0)
            sum += v;
    }
    return sum;
}

void
bh_jstore_usage(struct bh_jstore *s, struct bh_jstore_usage *u)
{
    memset(u, 0, sizeof(*u));
    if (!s->disk) {
        for (int32_t p = 0; p < s->nparts; p++) {
            const struct mpart *m = &s->mp[p];
            u->ids += m->nids;
            u->bytes += m->capids * sizeof(*m->ids) + m->capded * sizeof(*m->ded);
            for (size_t i = 0; i < m->capded; i++)
                u->bytes += m->ded[i].idlen;
        }
        return;
    }
    u->ids = prop(s, CF_IDS, "rocksdb.estimate-num-keys");
    u->bytes = prop(s, -1, "rocksdb.cur-size-all-mem-tables") + rocksdb_cache_get_usage(s->cache);
    u->disk_bytes = prop(s, -1, "rocksdb.live-sst-files-size");
    u->index_bytes = prop(s, -1, "rocksdb.estimate-table-readers-mem");
    u->cache_bytes = s->cache_bytes;
    if (s->idf == NULL)
        return;
    pthread_mutex_lock(&s->idf_mu);
    for (int32_t p = 0; p < s->nparts; p++) {
        if (s->idf[p].cur != NULL)
            u->filter_bytes += bh_idfilter_bytes(s->idf[p].cur);
        u->filters_ready += s->idf[p].ready;
    }
    u->filter_builds = s->idf_builds;
    u->filter_answered = s->idf_answered;
    u->store_lookups = s->store_lookups;
    pthread_mutex_unlock(&s->idf_mu);
    u->bytes += u->filter_bytes;
}
