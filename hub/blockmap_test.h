/*
 * What only the tests and the benchmarks of the block map use: a lookup
 * without the grid, to compare against, and the grid's shape.
 */
#ifndef BH_BLOCKMAP_TEST_H
#define BH_BLOCKMAP_TEST_H

#include <stddef.h>

#include "blockmap.h"

/*
 * For tests and benchmarks. bh_blockmap_locate_slow answers as
 * bh_blockmap_locate does, without its lookup grid: every block the STRtree
 * finds near (lon, lat) is tested by GEOS.
 */
const struct bh_block *bh_blockmap_locate_slow(const struct bh_blockmap *map, double lon,
                                               double lat);

/* The lookup grid's shape and memory. */
struct bh_blockmap_grid_info {
    size_t cols, rows;
    size_t owned_cells; /* answered at once: one block covers the whole cell */
    size_t empty_cells; /* answered at once: no block covers any of the cell */
    size_t list_cells;  /* the others: a short list of blocks to test */
    size_t list_entries;
    size_t grid_bytes;  /* cells and lists */
    size_t rings_bytes; /* the positions kept for the point-in-ring test */
    double build_cpu;   /* seconds of CPU that building it took, in the load */
};

void bh_blockmap_grid_info(const struct bh_blockmap *map, struct bh_blockmap_grid_info *info);

#endif
