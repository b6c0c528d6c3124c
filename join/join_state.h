/*
 * The join's state: what it knows of each block, and how that is written to
 * and read back from the state changelog. No Kafka here: the engine (join.c)
 * feeds events in and takes changelog records out.
 *
 * Per block and department (in memory):
 *   - total and by_type: distinct events, all time;
 *   - window_total: distinct events whose event time t satisfies
 *     newest - t < window, newest being the newest event time seen for that
 *     block and department (a sorted array of the times in the window);
 *   - last event: the one with the greatest event time, ties going to the
 *     greatest event id (bytewise), so the answer does not depend on arrival
 *     order.
 *
 * Per partition and department: the newest event time of any block of the
 * partition, PN. The retention rule, the same for every block:
 *   - an event whose time t satisfies PN - t >= retention is too late: it is
 *     not counted (the engine dead-letters it as too_late), since a copy of it
 *     could no longer be told apart;
 *   - every event counted is remembered, as the 64-bit hash of its id
 *     (bh_jstate_hash) and its time, until it falls beyond the retention; a
 *     copy of a remembered event (same block, department and id, whatever
 *     its type or time) changes nothing. A quiet block forgets no sooner
 *     than a busy one.
 * Remembered events live in the local store (join/join_store.h), committed
 * ones only; those of the transaction being produced and of the one being
 * committed wait in two in-memory tables (struct stage) until the store has
 * them. A copy never enters the window twice: it is recognised first.
 *
 * The changelog (topic join.state_topic, compacted, partitioned like the
 * inputs) holds two kinds of records, both single-object Avro:
 *   - key = block id: blockhub.view.BlockState (schemas/block_state.avsc),
 *     the counts, newest, last event and window of every department, and the
 *     events it remembered since its last batch (fewer than BH_JSTATE_RECENT);
 *   - key = block id, 0x1F, department, 0x1F, decimal sequence number:
 *     blockhub.view.DedupBatch (schemas/dedup_batch.avsc), BH_JSTATE_RECENT or
 *     more remembered events of that department of that block. A batch is
 *     deleted (a tombstone) once all its events are beyond the retention: the
 *     store keeps an index of the live batches that a sweep goes through a
 *     little at every commit (bh_jstate_sweep).
 * A changed block costs one changelog record per commit, and a batch per
 * BH_JSTATE_RECENT new events of a department; an event id is written to the
 * changelog at most BH_JSTATE_RECENT times. The block's view (block.view) is
 * no substitute for its BlockState: it has the counts and the last event, but
 * not the window's event times (only their count), the events remembered
 * since the last batch, nor next_batch, and a block changes only when an
 * event is counted, which adds to both of the first two. The window cannot be
 * rebuilt from the remembered events either: join.dedup_retention may be
 * shorter than join.window, and a quiet block's events are forgotten by the
 * partition's newest event time, not its own.
 *
 * One struct bh_jstate holds the blocks of one partition. Types are interned
 * per department in a struct bh_jtypes shared by every partition.
 * Every call returns 0 or a negative errno unless said otherwise.
 */
#ifndef BH_JOIN_STATE_H
#define BH_JOIN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "join_avro.h"
#include "join_store.h"

#define BH_JSTATE_RECENT  16
#define BH_JSTATE_KEY_SEP '\x1f'
#define BH_JSTATE_NO_TIME INT64_MIN
/* The fingerprint of BlockState as written before it carried the window (refused on restore). */
#define BH_JSTATE_OLD_STATE_FP 0xa9ff83d6373d28e4ULL

/* The id hash stored in the dedup memory and the changelog (also used for the block table). */
uint64_t bh_jstate_hash(const void *data, size_t len);

/* --- type names, interned per department ------------------------------------ */

struct bh_jtypes;

int bh_jtypes_new(struct bh_jtypes **out, size_t ndepts);
void bh_jtypes_free(struct bh_jtypes *t);
/* The id of NAME in department DEPT, added if new; -ENOSPC past 65536 names. */
int bh_jtypes_intern(struct bh_jtypes *t, size_t dept, const char *name, size_t len, uint32_t *out);
const char *bh_jtypes_name(const struct bh_jtypes *t, size_t dept, uint32_t id, size_t *len);

/* --- the state of one partition ---------------------------------------------- */

struct bh_jtype_count {
    uint32_t type;
    int64_t count;
};

struct bh_jremember {
    uint64_t hash; /* a hash of 0 is stored as 1 */
    int64_t at;
};

struct bh_jdept {
    int64_t total;
    int64_t newest; /* BH_JSTATE_NO_TIME: no event yet */
    int64_t last_at;
    char *last_id;
    uint32_t last_id_len, last_cap;
    uint32_t ntypes, captypes;
    struct bh_jtype_count *types;
    /* the window: sorted event times in win[whead..wend) */
    int64_t *win;
    uint32_t whead, wend, wcap;
    /* remembered since the last batch (in the block's own changelog record) */
    struct bh_jremember *fresh;
    uint32_t nfresh, capfresh;
    int64_t next_batch; /* sequence number of the next DedupBatch */
};

struct bh_jblock {
    char *id;
    uint32_t id_len;
    int dirty;
    int unflushed; /* changed since the store last got its BlockState */
    uint64_t hash;
    struct bh_jblock *next_dirty;
    struct bh_jblock *next_unflushed;
    int64_t updated_at; /* wall clock of the last change, ms */
    struct bh_jdept dept[];
};

struct bh_jstate_conf {
    size_t ndepts;
    const char *const *depts; /* department names (changelog records carry them) */
    struct bh_jtypes *types;
    int64_t window_ms;
    int64_t retention_ms;
    uint64_t state_fp; /* fingerprints of BlockState and DedupBatch */
    uint64_t batch_fp;
    int32_t partition;
    /*
     * The remembered events of earlier commits. NULL: none (then only those
     * not yet committed are recognised, as in a test of one batch).
     */
    struct bh_jstore *store;
};

struct bh_jstate;

int bh_jstate_new(struct bh_jstate **out, const struct bh_jstate_conf *conf);
void bh_jstate_free(struct bh_jstate *s);

/* The block of id ID, created when CREATE and absent (NULL if absent or out of memory). */
struct bh_jblock *bh_jstate_block(struct bh_jstate *s, const char *id, size_t len, int create);
size_t bh_jstate_count(const struct bh_jstate *s);
/* The Ith block (any order, stable until a block is added); NULL past the end. */
struct bh_jblock *bh_jstate_at(const struct bh_jstate *s, size_t i);
/* The partition's newest event time of department DEPT (BH_JSTATE_NO_TIME: none). */
int64_t bh_jstate_newest(const struct bh_jstate *s, size_t dept);

enum {
    BH_JSTATE_COPY = 0,     /* a copy of a remembered event: nothing changed */
    BH_JSTATE_COUNTED = 1,  /* a new event, counted and remembered */
    BH_JSTATE_TOO_LATE = 2, /* beyond the retention: not counted, nothing changed */
};

/*
 * One event of department DEPT for block B: BH_JSTATE_COUNTED, BH_JSTATE_COPY
 * or BH_JSTATE_TOO_LATE; -ENOMEM or -EIO (the store could not be read): then
 * the partition's state is no longer trustworthy, rebuild it. NOW is the wall
 * clock (updated_at). AT is never BH_JSTATE_NO_TIME (the engine refuses such
 * an event).
 */
int bh_jstate_apply(struct bh_jstate *s, struct bh_jblock *b, size_t dept, const char *id,
                    size_t id_len, uint32_t type, int64_t at, int64_t now);

/*
 * For many events at once: bh_jstate_wants_lookup says whether the store
 * must be asked about an event (1, with the key in *KEY: not too late, not
 * remembered in memory; 0: the answer is known without it), and
 * bh_jstate_apply_seen applies it with the store's answer (SEEN; NULL: ask
 * now). Events applied in between may change the answer: apply_seen checks
 * everything else again.
 */
struct bh_jseen {
    int found;
    int64_t at;
};
int bh_jstate_wants_lookup(const struct bh_jstate *s, const struct bh_jblock *b, size_t dept,
                           const char *id, size_t id_len, int64_t at, struct bh_jstore_key *key);
int bh_jstate_apply_seen(struct bh_jstate *s, struct bh_jblock *b, size_t dept, const char *id,
                         size_t id_len, uint32_t type, int64_t at, int64_t now,
                         const struct bh_jseen *seen);
static inline int64_t
bh_jstate_window_total(const struct bh_jdept *d)
{
    return (int64_t)(d->wend - d->whead);
}

/* Blocks changed since the last bh_jstate_take_dirty, as a list through next_dirty. */
struct bh_jblock *bh_jstate_take_dirty(struct bh_jstate *s);
int bh_jstate_has_dirty(const struct bh_jstate *s);

/*
 * Fill a view of block B (department arrays sized ndepts, by_type from
 * TYPES_BUF which must hold the block's total type count: see
 * bh_jstate_type_slots).
 */
size_t bh_jstate_type_slots(const struct bh_jblock *b, size_t ndepts);
void bh_jstate_view(const struct bh_jstate *s, const struct bh_jblock *b, struct bh_jview *v,
                    struct bh_jview_dept *depts, struct bh_jview_type *types_buf);

/* --- committing ------------------------------------------------------------------ */

/*
 * The store batch that bh_jstate_write, bh_jstate_sweep,
 * bh_jstate_commit_ids and bh_jstate_restore add their store writes to: the
 * running commit's, or the running restore's. NULL: none.
 */
void bh_jstate_set_batch(struct bh_jstate *s, struct bh_jstore_batch *sb);

/*
 * A transaction's life, seen from one partition: bh_jstate_commit_begin when
 * it starts (the events remembered since the last one are now its own);
 * its changelog records (bh_jstate_write, bh_jstate_sweep); when its store
 * batch is to take the remembered events (a flush: not at every commit, so
 * that the store takes them in large sorted writes), bh_jstate_flush adds
 * those of this commit and of the commits since the last flush, and the
 * BlockState of every block changed since; bh_jstate_commit_done once the
 * transaction is committed and its batch written (OK) or not. Until their
 * flush is written, lookups find the remembered events in memory.
 */
/* -EBUSY when the last commit is not done. */
int bh_jstate_commit_begin(struct bh_jstate *s);
/* BUF is scratch space. */
int bh_jstate_flush(struct bh_jstate *s, struct bh_jbuf *buf);
void bh_jstate_commit_done(struct bh_jstate *s, int ok, int flushed);
/* Remembered events not yet in the store. */
size_t bh_jstate_staged(const struct bh_jstate *s);

/* --- the changelog --------------------------------------------------------- */

/* Where changelog records go: KEY and VALUE (NULL: a tombstone) are only valid during the call. */
typedef int (*bh_jemit_fn)(void *ctx, const void *key, size_t keylen, const void *value,
                           size_t len);

/*
 * Write the changelog records of block B (its BlockState, and a DedupBatch
 * per department with BH_JSTATE_RECENT events remembered since the last one)
 * to EMIT; the store batch gets the batches' index entries (the BlockState
 * waits for the next flush). BUF and KEYBUF are scratch space. Stops at the
 * first error and returns it.
 */
int bh_jstate_write(struct bh_jstate *s, struct bh_jblock *b, struct bh_jbuf *buf,
                    struct bh_jbuf *keybuf, bh_jemit_fn emit, void *ctx);

/*
 * Visit up to MAX live dedup batches of the partition (going on from the last
 * call) and delete those whose events are all beyond the retention: a
 * tombstone to EMIT, the deletion to the store batch. Returns the number of
 * tombstones.
 */
long bh_jstate_sweep(struct bh_jstate *s, struct bh_jbuf *keybuf, bh_jemit_fn emit, void *ctx,
                     size_t max);

/*
 * Restoring: feed every changelog record of the partition in log order
 * (VALUE NULL for a tombstone), then call bh_jstate_restore_finish once.
 * With a store batch, what the records say is remembered also goes to it
 * (records read from the changelog); without (BlockStates read back from the
 * store itself), only the blocks are rebuilt.
 * -EBADMSG for a record that is not one of the two kinds (unknown schema
 * fingerprint, malformed body, or a key that does not match the value),
 * -EPROTO for a BlockState of the format before the window was kept.
 * Records of departments not configured are skipped (counted in *skipped).
 */
int bh_jstate_restore(struct bh_jstate *s, const void *key, size_t keylen, const void *value,
                      size_t len, size_t *skipped);
int bh_jstate_restore_finish(struct bh_jstate *s);

/* --- memory ----------------------------------------------------------------- */

struct bh_jstate_usage {
    size_t blocks;
    size_t windowed; /* event times held for windows */
    int64_t counted; /* the blocks' totals: the distinct events counted */
    size_t staged;   /* remembered events not yet in the store */
    size_t bytes;    /* heap bytes of the state (the table, blocks, their arrays, staging) */
};

void bh_jstate_usage(const struct bh_jstate *s, struct bh_jstate_usage *u);

#endif
