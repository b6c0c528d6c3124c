/*
 * The block map's GeoJSON loader (hub/blockmap.c): its own JSON scanner,
 * the FeatureCollection reader, the GEOS geometries, the STRtree and the
 * lookup grid, from text in memory (bh_blockmap_load_string).
 *
 * Oracle (besides no crash, leak or undefined behaviour):
 *   - a refused map has a message; the scanner alone (bh_blockmap_check_json)
 *     never refuses what the loader accepts;
 *   - a loaded map has blocks in ascending id order, each id unique, found
 *     by bh_blockmap_find, and ids and names in valid UTF-8 (they go into
 *     records);
 *   - the lookup grid answers every probe point as the plain STRtree and
 *     GEOS lookup does: a lattice over the map's bounds, on and inside them.
 * BH_FUZZ_STRICT_UTF8=1 also requires refusal messages in valid UTF-8.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "blockmap.h"
#include "blockmap_test.h"
#include "fuzz_common.h"

#define LATTICE 8 /* probe points per side, less one */

static void
probe(const struct bh_blockmap *map, double lon, double lat)
{
    const struct bh_block *fast = bh_blockmap_locate(map, lon, lat);
    const struct bh_block *slow = bh_blockmap_locate_slow(map, lon, lat);
    if (fast != slow)
        bh_fuzz_fail("(%.17g, %.17g): the lookup grid says %s, GEOS says %s", lon, lat,
                     fast ? fast->id : "none", slow ? slow->id : "none");
}

static void
check_map(const struct bh_blockmap *map)
{
    size_t n = bh_blockmap_count(map);
    const struct bh_block *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct bh_block *b = bh_blockmap_at(map, i);
        if (b == NULL || b->id == NULL || b->name == NULL)
            bh_fuzz_fail("block %zu of %zu is missing", i, n);
        bh_fuzz_check_utf8("a block id", b->id, strlen(b->id));
        bh_fuzz_check_utf8("a block name", b->name, strlen(b->name));
        if (prev != NULL && strcmp(prev->id, b->id) >= 0)
            bh_fuzz_fail("block ids out of order: '%s' before '%s'", prev->id, b->id);
        if (bh_blockmap_find(map, b->id, strlen(b->id)) != b)
            bh_fuzz_fail("block '%s' is not found by its id", b->id);
        prev = b;
    }
    if (bh_blockmap_at(map, n) != NULL)
        bh_fuzz_fail("a block past the end");
    double x0, y0, x1, y1;
    bh_blockmap_bounds(map, &x0, &y0, &x1, &y1);
    if (n == 0 || !isfinite(x0) || !isfinite(y0) || !isfinite(x1) || !isfinite(y1))
        return;
    for (int i = 0; i <= LATTICE; i++)
        for (int j = 0; j <= LATTICE; j++)
            probe(map, x0 + (x1 - x0) * i / LATTICE, y0 + (y1 - y0) * j / LATTICE);
    /* the middles of the lattice's cells */
    for (int i = 0; i < LATTICE; i++)
        for (int j = 0; j < LATTICE; j++)
            probe(map, x0 + (x1 - x0) * (2 * i + 1) / (2 * LATTICE),
                  y0 + (y1 - y0) * (2 * j + 1) / (2 * LATTICE));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int strict = -1;
    if (strict < 0)
        strict = bh_fuzz_flag("BH_FUZZ_STRICT_UTF8");
    const char *json = (const char *)data;
    struct bh_blockmap *map = NULL;
    char err[1024] = "", cerr[1024] = "";
    int rc = bh_blockmap_load_string(&map, "fuzz.geojson", json, size, err, sizeof(err));
    int crc = bh_blockmap_check_json("fuzz.geojson", json, size, cerr, sizeof(cerr));
    if (rc == 0) {
        if (map == NULL)
            bh_fuzz_fail("a map loaded as NULL");
        if (crc != 0)
            bh_fuzz_fail("the loader takes what the scanner refuses: %s", cerr);
        check_map(map);
        bh_blockmap_free(map);
        return 0;
    }
    if (map != NULL)
        bh_fuzz_fail("a refused map (%d) is still given out", rc);
    if (err[0] == '\0')
        bh_fuzz_fail("a map refused (%d) without a message", rc);
    if (crc != 0 && cerr[0] == '\0')
        bh_fuzz_fail("JSON refused (%d) without a message", crc);
    if (strict) {
        bh_fuzz_check_utf8("the loader's message", err, strlen(err));
        bh_fuzz_check_utf8("the scanner's message", cerr, strlen(cerr));
    }
    return 0;
}
