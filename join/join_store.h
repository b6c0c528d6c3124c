/*
 * The join's local state store: what the join remembers beyond the blocks'
 * counts, kept out of the heap. One store per process (join.state_store):
 *
 *   disk    RocksDB in join.state_dir. The remembered event ids of every
 *           partition this process owns, a copy of every block's last
 *           BlockState, the dedup batches still live in the changelog, and,
 *           per partition, a checkpoint: the changelog offset before which
 *           everything of that partition's changelog is in the store. A
 *           process that restarts on the same machine loads the blocks from
 *           the store and replays only the changelog from the checkpoint on.
 *   memory  the ids and batches in hash tables; nothing survives the process
 *           (every restore reads the whole changelog).
 *
 * The changelog (join/join_state.h) stays the source of truth: the store only
 * ever holds what a committed transaction wrote to the changelog. A commit's
 * writes are collected in a struct bh_jstore_batch while the transaction is
 * produced and written once Kafka has committed it; an aborted transaction's
 * batch is dropped. The remembered events of several commits go in one batch
 * (a flush, join/join.c), with the checkpoints. A write that is lost (kill -9
 * before it) leaves the store behind its changelog, never ahead: replaying the
 * changelog from the checkpoint brings it up to date, since applying a
 * changelog record twice changes nothing.
 *
 * Keys (disk), P the partition as 2 bytes big-endian; the remembered events
 * in a column family of their own ("ids"), taken in as whole sorted table
 * files (never through a memtable), the rest in the default one:
 *   P 'I' block-hash(8) dept(1) id-hash(8)   -> event time (8, little-endian)
 *   P 'B' block id                           -> the block's BlockState value
 *   P 'K' block-hash(8) dept(1) seq(8)       -> the batch's newest event time
 *                                               (8), then the block id
 *   P 'C'                                    -> changelog offset (8)
 *   0xFFFF 'M'                               -> what the store was made for
 * Hashes are bh_jstate_hash (the id hash as in the changelog); integers in
 * keys are big-endian so that a partition's keys of one kind are one range.
 * Ids older than a partition's retention floor (per department) are dropped
 * by RocksDB's compactions.
 *
 * Beside the disk store, each partition has a filter of its remembered
 * events in memory (join/join_idfilter.h, an eighth of memory_limit split
 * between the partitions): built from the store at open on a thread of its
 * own, and again when twice as many ids were added as it was built with;
 * every id written goes into it. bh_jstore_lookup_many asks it first and
 * reads the store only for a "maybe", so a new id (most lookups) costs no
 * read of the store. Until a partition's filter is built, its lookups read
 * the store.
 *
 * Every call returns 0 or a negative errno unless said otherwise.
 */
#ifndef BH_JOIN_STORE_H
#define BH_JOIN_STORE_H

#include <stddef.h>
#include <stdint.h>

struct bh_jstore;
struct bh_jstore_batch;

struct bh_jstore_conf {
    int disk;              /* 1: RocksDB in dir; 0: memory */
    const char *dir;       /* disk: created if missing */
    uint64_t memory_limit; /* disk: block cache and memtables share it */
    int32_t nparts;
    size_t ndepts;
    const char *const *depts;
    const char *identity; /* changelog topic and group: a store made for others is emptied */
};

/* ERR gets the reason of a failure (a store locked by another process, a disk error...). */
int bh_jstore_open(struct bh_jstore **out, const struct bh_jstore_conf *c, char *err, size_t n);
void bh_jstore_close(struct bh_jstore *s);
/* On every thread that reads or writes the store, once: no per-operation counters (they cost). */
void bh_jstore_thread_init(void);
int bh_jstore_is_disk(const struct bh_jstore *s);

/*
 * The remembered event (block, department, id): 1 and its time in *AT when
 * it is there, 0 when not, -EIO when the store cannot be read. Any thread.
 */
int bh_jstore_lookup(struct bh_jstore *s, int32_t p, uint64_t block_hash, unsigned dept,
                     uint64_t id_hash, int64_t *at);

struct bh_jstore_key {
    int32_t partition;
    unsigned dept;
    uint64_t block_hash, id_hash;
};

/*
 * N lookups at once (cheaper a key than one by one): FOUND[i] and AT[i] as
 * bh_jstore_lookup answers for KEYS[i]; -EIO when the store cannot be read.
 */
int bh_jstore_lookup_many(struct bh_jstore *s, size_t n, const struct bh_jstore_key *keys,
                          int *found, int64_t *at);

/*
 * The floor of partition P and department DEPT: ids with an event time
 * before it may be dropped (they are beyond the retention for good).
 */
void bh_jstore_set_floor(struct bh_jstore *s, int32_t p, unsigned dept, int64_t floor);

/* --- writing ---------------------------------------------------------------- */

struct bh_jstore_batch *bh_jstore_batch_new(struct bh_jstore *s);
void bh_jstore_batch_free(struct bh_jstore_batch *b);
/* Operations in the batch so far. */
size_t bh_jstore_batch_count(const struct bh_jstore_batch *b);
/* A remembered event. */
int bh_jstore_put_id(struct bh_jstore_batch *b, int32_t p, uint64_t block_hash, unsigned dept,
                     uint64_t id_hash, int64_t at);
/* The block's BlockState (disk only; the memory store keeps none). */
int bh_jstore_put_block(struct bh_jstore_batch *b, int32_t p, const char *id, size_t len,
                        const void *value, size_t vlen);
/* A DedupBatch now in the changelog, and its deletion. */
int bh_jstore_put_dedup(struct bh_jstore_batch *b, int32_t p, uint64_t block_hash, unsigned dept,
                        int64_t seq, int64_t newest, const char *id, size_t len);
int bh_jstore_del_dedup(struct bh_jstore_batch *b, int32_t p, uint64_t block_hash, unsigned dept,
                        int64_t seq);
/* Partition P's changelog is in the store up to (not including) OFFSET. */
int bh_jstore_put_checkpoint(struct bh_jstore_batch *b, int32_t p, int64_t offset);
/*
 * Apply the batch at once and free it. The disk store may be written from
 * another thread than the one reading it; the memory store only from the
 * thread that reads it.
 */
int bh_jstore_write(struct bh_jstore *s, struct bh_jstore_batch *b);

/* --- restoring --------------------------------------------------------------- */

/* Partition P's checkpoint; -ENOENT when there is none (the memory store never has one). */
int bh_jstore_checkpoint(struct bh_jstore *s, int32_t p, int64_t *offset);
/* Forget everything of partition P (before a restore from the changelog's beginning). */
int bh_jstore_drop(struct bh_jstore *s, int32_t p);
/* Every BlockState of partition P, in key order; stops at the first error FN returns. */
int bh_jstore_blocks(struct bh_jstore *s, int32_t p,
                     int (*fn)(void *ctx, const char *id, size_t len, const void *value,
                               size_t vlen),
                     void *ctx);

/*
 * Visit up to MAX dedup batches of partition P, going on from where the last
 * call left off (round and round), and call FN for each whose newest event
 * time is before FLOORS[dept]. FN gets the block id and the batch's seq.
 * Returns the number visited, or a negative errno.
 */
long bh_jstore_sweep(struct bh_jstore *s, int32_t p, const int64_t *floors, size_t max,
                     int (*fn)(void *ctx, const char *id, size_t len, uint64_t block_hash,
                               unsigned dept, int64_t seq),
                     void *ctx);

/* Compact the whole store now (tests; compactions do it over time on their own). */
int bh_jstore_compact(struct bh_jstore *s);

/* --- figures ------------------------------------------------------------------ */

struct bh_jstore_usage {
    uint64_t ids;         /* memory: exact; disk: RocksDB's estimate of all keys */
    uint64_t bytes;       /* memory: the tables; disk: memtables + block cache in use */
    uint64_t disk_bytes;  /* disk: live table files and WAL */
    uint64_t index_bytes; /* disk: index and filter blocks held beside the cache */
    uint64_t cache_bytes; /* disk: block cache capacity */
    /* disk: the filters of remembered events in memory (join/join_idfilter.h) */
    uint64_t filter_bytes;    /* their memory */
    int32_t filters_ready;    /* partitions whose filter lookups ask first */
    uint64_t filter_builds;   /* filters built (at open, and again when outgrown) */
    uint64_t filter_answered; /* lookups a filter answered "not there" without the store */
    uint64_t store_lookups;   /* lookups that read the store */
};
void bh_jstore_usage(struct bh_jstore *s, struct bh_jstore_usage *u);

#endif
