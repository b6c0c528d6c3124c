/*
 * A filter of remembered events, in memory beside the on-disk store (see
 * join/join_store.h): a blocked Bloom filter that says "certainly not
 * remembered" for most new ids, so that a lookup of a new id, the common
 * case, costs a few bit tests instead of a search of the store. It never
 * forgets an id it was given (no false "no"); it says "maybe" for about one
 * id in a hundred it was never given while it holds at most its capacity.
 *
 * Adding is safe from any thread beside readers (bits are set atomically);
 * a reader may miss an id whose add is still under way, which the store
 * allows for (an id is added before the store forgets it in memory).
 */
#ifndef BH_JOIN_IDFILTER_H
#define BH_JOIN_IDFILTER_H

#include <stddef.h>
#include <stdint.h>

struct bh_idfilter;

/* A filter of BYTES rounded down to a power of two (at least 64); NULL when out of memory. */
struct bh_idfilter *bh_idfilter_new(size_t bytes);
void bh_idfilter_free(struct bh_idfilter *f);
/* Its size in bytes, and the number of ids it holds at about 1% false "maybe". */
size_t bh_idfilter_bytes(const struct bh_idfilter *f);
uint64_t bh_idfilter_capacity(const struct bh_idfilter *f);
/* The event (block hash, department, id hash): every id is added as this hash. */
uint64_t bh_idfilter_hash(uint64_t block_hash, unsigned dept, uint64_t id_hash);
void bh_idfilter_add(struct bh_idfilter *f, uint64_t h);
/* 0: never added; 1: maybe. */
int bh_idfilter_may_have(const struct bh_idfilter *f, uint64_t h);

#endif
