/*
 * The keys of the join's on-disk state store (join/join_store.h describes
 * them), in one place for the store and for the benchmark that measures it
 * with the same keys (bench/join_store_choice.c). Integers in keys are
 * big-endian, so that a partition's keys of one kind are one range.
 */
#ifndef BH_JOIN_STORE_KEY_H
#define BH_JOIN_STORE_KEY_H

#include <stdint.h>

#define BH_JSTORE_KIND_ID    'I' /* a remembered event */
#define BH_JSTORE_KIND_BLOCK 'B' /* a block's BlockState */
#define BH_JSTORE_KIND_DEDUP 'K' /* a dedup batch live in the changelog */
#define BH_JSTORE_KIND_CKPT  'C' /* the partition's checkpoint */
#define BH_JSTORE_KIND_KEY   3   /* P(2) kind: the prefix of every key of a kind */
#define BH_JSTORE_ID_KEY     20  /* P(2) 'I' block-hash(8) dept(1) id-hash(8) */
#define BH_JSTORE_DEDUP_KEY  20  /* P(2) 'K' block-hash(8) dept(1) seq(8) */

static inline void
bh_jstore_put_be16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static inline void
bh_jstore_put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static inline uint64_t
bh_jstore_get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* The first BH_JSTORE_KIND_KEY bytes of partition P's keys of KIND. */
static inline void
bh_jstore_kind_key(unsigned char *k, int32_t p, char kind)
{
    bh_jstore_put_be16(k, (uint32_t)p);
    k[2] = (unsigned char)kind;
}

/* The key (BH_JSTORE_ID_KEY bytes) of the remembered event (block hash, department, id hash). */
static inline void
bh_jstore_id_key(unsigned char *k, int32_t p, uint64_t block_hash, unsigned dept, uint64_t id_hash)
{
    bh_jstore_kind_key(k, p, BH_JSTORE_KIND_ID);
    bh_jstore_put_be64(k + 3, block_hash);
    k[11] = (unsigned char)dept;
    bh_jstore_put_be64(k + 12, id_hash);
}

/* The key (BH_JSTORE_DEDUP_KEY bytes) of dedup batch SEQ of (block hash, department). */
static inline void
bh_jstore_dedup_key(unsigned char *k, int32_t p, uint64_t block_hash, unsigned dept, int64_t seq)
{
    bh_jstore_kind_key(k, p, BH_JSTORE_KIND_DEDUP);
    bh_jstore_put_be64(k + 3, block_hash);
    k[11] = (unsigned char)dept;
    bh_jstore_put_be64(k + 12, (uint64_t)seq);
}

#endif
