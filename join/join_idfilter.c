#include "join_idfilter.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "mix64.h"

/*
 * Blocks of 512 bits (one cache line): the hash's high bits choose the block,
 * its low 63 bits seven bit positions of 9 bits each within it. At 10 bits an
 * id this answers "maybe" for about 1% of the ids never added.
 */
#define BLOCK_WORDS 8
#define PROBES      7

struct bh_idfilter {
    size_t nblocks; /* a power of two */
    _Atomic uint64_t *w;
};

struct bh_idfilter *
bh_idfilter_new(size_t bytes)
{
    size_t nblocks = 1;
    while (nblocks * 2 * 64 <= bytes && nblocks < ((size_t)1 << 31))
        nblocks *= 2;
    struct bh_idfilter *f = malloc(sizeof(*f));
    if (f == NULL)
        return NULL;
    f->nblocks = nblocks;
    f->w = calloc(nblocks * BLOCK_WORDS, sizeof(*f->w));
    if (f->w == NULL) {
        free(f);
        return NULL;
    }
    return f;
}

void
bh_idfilter_free(struct bh_idfilter *f)
{
    if (f == NULL)
        return;
    free(f->w);
    free(f);
}

size_t
bh_idfilter_bytes(const struct bh_idfilter *f)
{
    return f->nblocks * 64;
}

uint64_t
bh_idfilter_capacity(const struct bh_idfilter *f)
{
    return (uint64_t)f->nblocks * 512 / 10;
}

uint64_t
bh_idfilter_hash(uint64_t block_hash, unsigned dept, uint64_t id_hash)
{
    return bh_mix64(block_hash ^ bh_mix64(id_hash ^ (uint64_t)dept << 56));
}

static _Atomic uint64_t *
block_of(const struct bh_idfilter *f, uint64_t h)
{
    /* the high bits of a product of all of H (its low bits choose the bits within the block) */
    uint64_t x = (h * 0x9E3779B97F4A7C15ULL) >> 32;
    return &f->w[(size_t)(x * (uint64_t)f->nblocks >> 32) * BLOCK_WORDS];
}

void
bh_idfilter_add(struct bh_idfilter *f, uint64_t h)
{
    _Atomic uint64_t *blk = block_of(f, h);
    for (int i = 0; i < PROBES; i++) {
        unsigned bit = (unsigned)(h >> (9 * i)) & 511;
        atomic_fetch_or_explicit(&blk[bit >> 6], (uint64_t)1 << (bit & 63), memory_order_relaxed);
    }
}

int
bh_idfilter_may_have(const struct bh_idfilter *f, uint64_t h)
{
    _Atomic uint64_t *blk = block_of(f, h);
    for (int i = 0; i < PROBES; i++) {
        unsigned bit = (unsigned)(h >> (9 * i)) & 511;
        if (!(atomic_load_explicit(&blk[bit >> 6], memory_order_relaxed) >> (bit & 63) & 1))
            return 0;
    }
    return 1;
}
