/*
 * A 64-bit finalizer: spreads every input bit over every output bit. The join
 * uses it for its hash tables and store keys, the join benchmarks for the
 * events they generate.
 */
#ifndef BH_MIX64_H
#define BH_MIX64_H

#include <stdint.h>

static inline uint64_t
bh_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

#endif
