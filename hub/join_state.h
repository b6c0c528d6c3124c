/*
 * The join's state: what it knows of each block, and how that is written to
 * and read back from the state changelog. No Kafka here: the engine (join.c)
 * feeds events in and takes changelog records out.
 *
 * Per block and department:
 *   - total and by_type: distinct events, all time;
 *   - window_total: distinct events whose event time t satisfies
 *     newest - t < window, newest being the newest event time seen for that
 *     block and department (a sorted array of the times in the window);
 *   - last event: the one with the greatest event time, ties going to the
 *     greatest event id (bytewise), so the answer does not depend on arrival
 *     order;
 *   - dedup memory: the events whose time t satisfies newest - t < horizon,
 *     each remembered as a 64-bit hash of its id (BH_JSTATE_ID_HASH) and its
 *     time, in an open-addressing table pruned as newest advances. A copy of a
 *     remembered event changes nothing. An event older than the horizon is
 *     counted but not remembered (nothing could tell a copy of it apart).
 *     The window must not be longer than the horizon, so the window's events
 *     are always remembered (a restore rebuilds the window from them).
 *
 * The changelog (topic join.state_topic, compacted, partitioned like the
 * inputs) holds two kinds of records, both single-object Avro:
 *   - key = block id: blockhub.view.BlockState (schemas/block_state.avsc),
 *     the counts, newest and last event of every department, and the events
 *     it remembered since its last batch (fewer than BH_JSTATE_RECENT);
 *   - key = block id, 0x1F, department, 0x1F, decimal sequence number:
 *     blockhub.view.DedupBatch (schemas/dedup_batch.avsc), BH_JSTATE_RECENT or
 *     more remembered events of that department of that block. A batch is
 *     deleted (a tombstone) once all its events are beyond the horizon; when a
 *     department has more than BH_JSTATE_MAX_BATCHES live batches they are
 *     replaced by one holding the whole dedup memory, so a restore reads a
 *     bounded number of records per block and department.
 * A changed block costs one changelog record per commit, and a batch per
 * BH_JSTATE_RECENT new events of a department.
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

#define BH_JSTATE_MAX_BATCHES 16
#define BH_JSTATE_RECENT      16
#define BH_JSTATE_KEY_SEP     '\x1f'

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
    uint64_t hash; /* 0 marks an empty slot; a hash of 0 is stored as 1 */
    int64_t at;
};

struct bh_jbatch {
    int64_t seq;
    int64_t newest; /* greatest event time in the batch */
    /* Only while restoring: the batch's events. */
    struct bh_jremember *events;
    uint32_t nevents;
};

struct bh_jdept {
    int64_t total;
    int64_t newest; /* INT64_MIN: no event yet */
    int64_t last_at;
    char *last_id;
    uint32_t last_id_len, last_cap;
    uint32_t ntypes, captypes;
    struct bh_jtype_count *types;
    /* the window: sorted event times in win[whead..wend) */
    int64_t *win;
    uint32_t whead, wend, wcap;
    /* the dedup memory */
    struct bh_jremember *set;
    uint32_t nset, capset; /* capset: 0 or a power of two */
    int64_t pruned_at;     /* newest at the last pruning */
    /* remembered since the last batch (in the block's own changelog record) */
    struct bh_jremember *fresh;
    uint32_t nfresh, capfresh;
    /* live dedup batches in the changelog */
    struct bh_jbatch *batches;
    uint32_t nbatches, capbatches;
    int64_t next_batch;
};

struct bh_jblock {
    char *id;
    uint32_t id_len;
    int dirty;
    uint64_t hash;
    struct bh_jblock *next_dirty;
    int64_t updated_at; /* wall clock of the last change, ms */
    struct bh_jdept dept[];
};

struct bh_jstate_conf {
    size_t ndepts;
    const char *const *depts; /* department names (changelog records carry them) */
    struct bh_jtypes *types;
    int64_t window_ms;
    int64_t horizon_ms;
    uint64_t state_fp; /* fingerprints of BlockState and DedupBatch */
    uint64_t batch_fp;
};

struct bh_jstate;

int bh_jstate_new(struct bh_jstate **out, const struct bh_jstate_conf *conf);
void bh_jstate_free(struct bh_jstate *s);

/* The block of id ID, created when CREATE and absent (NULL if absent or out of memory). */
struct bh_jblock *bh_jstate_block(struct bh_jstate *s, const char *id, size_t len, int create);
size_t bh_jstate_count(const struct bh_jstate *s);
/* The Ith block (any order, stable until a block is added); NULL past the end. */
struct bh_jblock *bh_jstate_at(const struct bh_jstate *s, size_t i);

/*
 * One event of department DEPT for block B. Returns 1 when it was counted, 0
 * when it is a copy of a remembered event (nothing changed), -ENOMEM (then
 * the block's state is no longer trustworthy: rebuild the partition). NOW is
 * the wall clock (updated_at).
 */
int bh_jstate_apply(struct bh_jstate *s, struct bh_jblock *b, size_t dept, const char *id,
                    size_t id_len, uint32_t type, int64_t at, int64_t now);
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

/* --- the changelog --------------------------------------------------------- */

/* Where changelog records go: KEY and VALUE (NULL: a tombstone) are only valid during the call. */
typedef int (*bh_jemit_fn)(void *ctx, const void *key, size_t keylen, const void *value,
                           size_t len);

/*
 * Write the changelog records of block B (its BlockState, a DedupBatch per
 * department with newly remembered events, tombstones of batches beyond the
 * horizon, and a merged batch when there are too many). BUF and KEYBUF are
 * scratch space. Stops at the first EMIT error and returns it.
 */
int bh_jstate_write(struct bh_jstate *s, struct bh_jblock *b, struct bh_jbuf *buf,
                    struct bh_jbuf *keybuf, bh_jemit_fn emit, void *ctx);

/*
 * Restoring: feed every changelog record of the partition in log order
 * (VALUE NULL for a tombstone), then call bh_jstate_restore_finish once.
 * -EBADMSG for a record that is not one of the two kinds (unknown schema
 * fingerprint, malformed body, or a key that does not match the value).
 * Records of departments not configured are skipped (counted in *skipped).
 */
int bh_jstate_restore(struct bh_jstate *s, const void *key, size_t keylen, const void *value,
                      size_t len, size_t *skipped);
int bh_jstate_restore_finish(struct bh_jstate *s);

/* --- memory ----------------------------------------------------------------- */

struct bh_jstate_usage {
    size_t blocks;
    size_t remembered; /* events in the dedup memory */
    size_t windowed;   /* event times held for windows */
    size_t bytes;      /* heap bytes of the state (the table, blocks, their arrays) */
    size_t set_bytes;  /* of which the dedup tables */
};

void bh_jstate_usage(const struct bh_jstate *s, struct bh_jstate_usage *u);

#endif
