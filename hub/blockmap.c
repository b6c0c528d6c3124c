/*
 * The block map: GeoJSON blocks -> GEOS prepared geometries and a grid for
 * point lookups, plus an open-addressing hash table on block id.
 *
 * The files: blockmap_load.c reads the GeoJSON (with the JSON scanner,
 * json_scan.c) and builds the blocks and the hash table on id;
 * blockmap_grid.c builds the lookup grid and answers bh_blockmap_locate; this
 * one has the rest of the API and the plain lookup. blockmap_int.h is what
 * they share.
 *
 * Blocks are kept sorted by id (byte-wise, as strcmp), so "the smallest id
 * wins" is "the smallest index wins". For the fixed-width ids the department
 * uses, byte order is also numeric order.
 *
 * The plain lookup creates one GEOS point per call, and so does the grid when
 * GEOS decides. Reusing one point by updating its coordinate sequence in place
 * (GEOSGeom_getCoordSeq_r, cast, setXY) does not work with GEOS 3.11: the
 * point caches its envelope when it is created, so the STRtree query keeps
 * using the first position and returns the wrong candidates. The C API has no
 * way to invalidate that cache, so a fresh point it is; it costs an
 * allocation (bench/bench_blockmap.c measures it).
 *
 * Each polygon of a MultiPolygon goes into the STRtree on its own envelope:
 * one envelope around two detached parts would make every query near either
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blockmap_int.h"

/*
 * The STRtree of bh_blockmap_locate_slow, which only the tests and the
 * benchmark use: it is built on their first lookup, not at load (it took
 * about a tenth of the load). 0 or -EIO.
 */
static int
build_tree(struct bh_blockmap *map)
{
    GEOSContextHandle_t geos = map->geos;
    int rc = -EIO;

    map->tree = GEOSSTRtree_create_r(geos, 10);
    if (!map->tree)
        goto out;
    for (size_t i = 0; i < map->count; i++) {
        const GEOSGeometry *g = map->blocks[i].geom;
        /* The item is the index + 1, so that no item is NULL. */
        void *item = (void *)(uintptr_t)(i + 1);
        int parts =
            GEOSGeomTypeId_r(geos, g) == GEOS_MULTIPOLYGON ? GEOSGetNumGeometries_r(geos, g) : 0;

        if (parts <= 0)
            GEOSSTRtree_insert_r(geos, map->tree, g, item);
        for (int p = 0; p < parts; p++)
            GEOSSTRtree_insert_r(geos, map->tree, GEOSGetGeometryN_r(geos, g, p), item);
    }
    rc = 0;
out:
    return rc;
}

void
bh_blockmap_free(struct bh_blockmap *map)
{
    if (!map)
        return;
    if (map->tree)
        GEOSSTRtree_destroy_r(map->geos, map->tree);
    for (size_t i = 0; i < map->count; i++) {
        if (map->blocks[i].prep)
            GEOSPreparedGeom_destroy_r(map->geos, map->blocks[i].prep);
        GEOSGeom_destroy_r(map->geos, map->blocks[i].geom);
    }
    if (map->geos)
        GEOS_finish_r(map->geos);
    free(map->blocks);
    free(map->slots);
    free(map->strings);
    free(map->shapes);
    free(map->cells);
    free(map->lists);
    free(map);
}

size_t
bh_blockmap_count(const struct bh_blockmap *map)
{
    return map ? map->count : 0;
}

const struct bh_block *
bh_blockmap_at(const struct bh_blockmap *map, size_t index)
{
    if (!map || index >= map->count)
        return NULL;
    return &map->blocks[index].pub;
}

void
bh_blockmap_bounds(const struct bh_blockmap *map, double *min_lon, double *min_lat, double *max_lon,
                   double *max_lat)
{
    *min_lon = map ? map->min_lon : NAN;
    *min_lat = map ? map->min_lat : NAN;
    *max_lon = map ? map->max_lon : NAN;
    *max_lat = map ? map->max_lat : NAN;
}

const struct bh_block *
bh_blockmap_find(const struct bh_blockmap *map, const char *id, size_t len)
{
    size_t s;

    if (!map || !id || len == 0)
        return NULL;
    s = bh__hash_id(id, len) & map->slot_mask;
    for (; map->slots[s].id; s = (s + 1) & map->slot_mask) {
        if (map->slots[s].len == len && memcmp(map->slots[s].id, id, len) == 0)
            return &map->blocks[map->slots[s].index].pub;
    }
    return NULL;
}

struct locate_query {
    const struct bh_blockmap *map;
    const GEOSGeometry *point;
    size_t best; /* index + 1 of the smallest covering block so far; 0 = none */
};

static void
on_candidate(void *item, void *userdata)
{
    struct locate_query *q = userdata;
    size_t index = (size_t)(uintptr_t)item;

    /* Only a smaller id can win, so skip the test for the others (and repeats). */
    if (q->best != 0 && index >= q->best)
        return;
    if (GEOSPreparedCovers_r(q->map->geos, q->map->blocks[index - 1].prep, q->point) == 1)
        q->best = index;
}

/*
 * The plain lookup: the STRtree's candidates, each tested by GEOS. The tree is
 * built on the first call (the map is used from one thread at a time).
 */
const struct bh_block *
bh_blockmap_locate_slow(const struct bh_blockmap *map, double lon, double lat)
{
    struct locate_query q = {.map = map};
    GEOSGeometry *point;

    if (!map || !isfinite(lon) || !isfinite(lat))
        return NULL;
    if (lon < map->min_lon || lon > map->max_lon || lat < map->min_lat || lat > map->max_lat)
        return NULL;
    if (!map->tree && build_tree((struct bh_blockmap *)map) < 0)
        return NULL;
    point = GEOSGeom_createPointFromXY_r(map->geos, lon, lat);
    if (!point)
        return NULL;
    q.point = point;
    GEOSSTRtree_query_r(map->geos, map->tree, point, on_candidate, &q);
    GEOSGeom_destroy_r(map->geos, point);
    return q.best ? &map->blocks[q.best - 1].pub : NULL;
}

const struct bh_block *
bh_blockmap_resolve(const struct bh_blockmap *map, const char *grid, size_t grid_len,
                    bool has_point, double lon, double lat)
{
    const struct bh_block *b = NULL;

    if (grid)
        b = bh_blockmap_find(map, grid, grid_len);
    if (!b && has_point)
        b = bh_blockmap_locate(map, lon, lat);
    return b;
}
