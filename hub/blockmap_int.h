/*
 * What the block map's files share (blockmap.c, blockmap_load.c,
 * blockmap_grid.c), and nothing else includes: the map's layout, the lookup
 * grid's cell encoding and shape records, and the loader's state. The public
 * API is blockmap.h; the names here are bh__ (or plain struct members).
 */
#ifndef BH_BLOCKMAP_INT_H
#define BH_BLOCKMAP_INT_H

#include <geos_c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockmap.h"
#include "blockmap_test.h"
#include "json_scan.h"

/*
 * The lookup grid (see "the lookup grid" in blockmap_grid.c). What a cell holds, by the top
 * two bits of its A: the block (index + 1) that
 * covers the whole cell, or 0 if none covers any of it; or blocks to test in
 * order, given by their shape records, and then the cell's owner (index + 1,
 * or 0): one (in A, the owner in B), two (A and B, no owner) or a list (at B
 * in map->lists: their number, the records, the owner).
 */
#define CELL_OWNER   0x00000000u
#define CELL_ONE     0x40000000u
#define CELL_TWO     0x80000000u
#define CELL_LIST    0xc0000000u
#define CELL_TAG     0xc0000000u
#define CELL_PAYLOAD 0x3fffffffu
/*
 * A block with more positions than this is tested by GEOS (whose point locator
 * indexes the segments) rather than segment by segment. With a warm cache a
 * 64-gon takes 230 ns by rings_cover and 190 ns by GEOS (with its point), an
 * 8-gon 50 and 140 ns; in a lookup the cache is cold, and one prefetched
 * record costs fewer misses than GEOS's chain of structures.
 */
#ifndef RING_TEST_MAX_POSITIONS
#define RING_TEST_MAX_POSITIONS 64
#endif
/*
 * Shape records start on a multiple of 8 words (a cache line, if the array is
 * so aligned), and the first lines of each are prefetched: the array has that
 * many words to spare at its end. Offsets must fit in CELL_PAYLOAD.
 */
#define SHAPE_ALIGN(words) (((words) + 7) & ~(size_t)7)
#define SHAPE_PREFETCH     24
#define SHAPES_MAX         (CELL_PAYLOAD - SHAPE_PREFETCH - 8)

struct bh__block {
    struct bh_block pub;
    size_t id_len;
    GEOSGeometry *geom;
    const GEOSPreparedGeometry *prep;
    size_t feature;          /* index in the file's features array, for messages */
    size_t id_off, name_off; /* into strings, while loading */
    size_t unit_off;         /* SIZE_MAX: no unit */
    uint32_t shape, nrings;  /* its shape record in map->shapes, its number of rings */
};

/* A word of a block's shape record: a double, or two uint32_t (see "the lookup grid"). */
union bh__word {
    double d;
    uint32_t u[2];
};

/* A cell of the lookup grid: what A's top two bits (CELL_...) say. */
struct bh__cell {
    uint32_t a, b;
};

struct bh__slot {
    const char *id; /* NULL: empty */
    uint32_t len;
    uint32_t index;
};

struct bh_blockmap {
    GEOSContextHandle_t geos;
    char geos_msg[256];       /* the last GEOS error or notice */
    struct bh__block *blocks; /* sorted by id */
    size_t count;
    struct bh__slot *slots; /* hash table on id */
    size_t slot_mask;
    GEOSSTRtree *tree;
    char *strings; /* every id and name, NUL-terminated */
    double min_lon, min_lat, max_lon, max_lat;
    /* The lookup grid (see "the lookup grid"). */
    union bh__word *shapes; /* every block's shape record, in index order */
    size_t nshapes;         /* words */
    struct bh__cell *cells; /* grid_cols * grid_rows, row by row from (min_lon, min_lat) */
    uint32_t *lists;        /* the candidate lists of the cells that have one */
    size_t nlists;
    uint32_t grid_cols, grid_rows;
    double grid_cpu;                     /* seconds of CPU its building took */
    double cells_per_lon, cells_per_lat; /* grid_cols / width, grid_rows / height */
};

/* State while loading one map (blockmap_load.c), and building its grid (blockmap_grid.c). */
struct bh__loader {
    struct bh_json_scan js; /* the document; its name and errstr are the load's */
    struct bh_blockmap *map;
    /* the feature being loaded, for messages: SIZE_MAX when none */
    size_t feature;
    const char *id;
    size_t blocks_cap;
    size_t strings_len, strings_cap;
    double *coords; /* x, y pairs of the ring being read */
    size_t coords_cap;
    size_t shapes_cap;   /* of map->shapes */
    size_t shape;        /* the record of the block being loaded */
    size_t shape_points; /* its positions so far */
    /* the member being read */
    struct bh_json_text id_text, name_text, type_text, unit_text;
};

/*
 * "NAME: features[3] (block 440303-004): MESSAGE", as much as is known. Before
 * the id is known, a MESSAGE starting with a space continues the sentence:
 * "NAME: features[3] is not an object".
 */
void bh__fail(struct bh__loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Makes room for WORDS more words in map->shapes. */
int bh__reserve_shapes(struct bh__loader *ld, size_t words);

/* Builds the lookup grid of a map whose blocks are loaded, sorted and bounded. */
int bh__build_grid(struct bh__loader *ld);

/* The hash of a block id, for map->slots. */
static inline uint32_t
bh__hash_id(const char *id, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 16777619u;
    }
    /* FNV-1a leaves the low bits poorly mixed for ids that differ in the last byte. */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

#endif
