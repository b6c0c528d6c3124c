/*
 * The block map and the block resolver.
 *
 * Loaded from a GeoJSON FeatureCollection whose features carry
 * properties.block_id and properties.name, with Polygon or MultiPolygon
 * geometry (longitude/latitude). Resolution, in the order docs/feeds.md gives
 * (section 1):
 *   1. the record's grid code, if present and known to the map;
 *   2. else its longitude/latitude by point-in-polygon: GEOS prepared
 *      geometries indexed in an STRtree; the rule is "covers" (a point on a
 *      block's boundary belongs to it), and when several blocks cover a point
 *      (a shared edge) the smallest block id wins, so the answer never depends
 *      on load order;
 *   3. else unresolved.
 *
 * A map is immutable once loaded: a reload builds a new one and swaps it in.
 * It is used from one thread at a time (it owns its GEOS context).
 */
#ifndef BH_BLOCKMAP_H
#define BH_BLOCKMAP_H

#include <stdbool.h>
#include <stddef.h>

struct bh_block {
    const char *id;   /* e.g. "440303-017" */
    const char *name; /* e.g. "黄贝街道第17网格" */
    const char *unit; /* its responsible unit (properties.unit), e.g. "黄贝派出所"; NULL: none */
};

struct bh_blockmap;

int bh_blockmap_load(struct bh_blockmap **out, const char *path, char *errstr, size_t errstr_size);
/* From GeoJSON text in memory; NAME is used in messages. */
int bh_blockmap_load_string(struct bh_blockmap **out, const char *name, const char *json,
                            size_t len, char *errstr, size_t errstr_size);
void bh_blockmap_free(struct bh_blockmap *map);
/*
 * Only checks that JSON is well-formed JSON, with the loader's own scanner and
 * messages ("NAME:LINE:COLUMN: not valid JSON: ..."), building nothing: the
 * floor under bh_blockmap_load_string's time (bench/bench_blockmap.c).
 * 0 or -EINVAL.
 */
int bh_blockmap_check_json(const char *name, const char *json, size_t len, char *errstr,
                           size_t errstr_size);
size_t bh_blockmap_count(const struct bh_blockmap *map);
/* The INDEXth block in ascending id order (byte-wise); NULL past the end. */
const struct bh_block *bh_blockmap_at(const struct bh_blockmap *map, size_t index);
/* The bounding box of every block (NaN for a NULL map). */
void bh_blockmap_bounds(const struct bh_blockmap *map, double *min_lon, double *min_lat,
                        double *max_lon, double *max_lat);

/* By id exactly; NULL if unknown. */
const struct bh_block *bh_blockmap_find(const struct bh_blockmap *map, const char *id, size_t len);
/* Point in polygon; NULL if no block covers (lon, lat). */
const struct bh_block *bh_blockmap_locate(const struct bh_blockmap *map, double lon, double lat);
/*
 * The full rule. GRID may be NULL (absent); HAS_POINT says whether lon/lat are
 * given. NULL means unresolved.
 */
const struct bh_block *bh_blockmap_resolve(const struct bh_blockmap *map, const char *grid,
                                           size_t grid_len, bool has_point, double lon, double lat);

#endif
