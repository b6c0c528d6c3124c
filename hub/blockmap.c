/*
 * The block map: GeoJSON blocks -> GEOS prepared geometries in an STRtree,
 * plus an open-addressing hash table on block id.
 *
 * Loading is strict: any malformed feature refuses the whole map, with a
 * message naming the feature and block, so that a bad reload keeps the old map
 * running. An invalid polygon (GEOSisValid false) is refused rather than
 * repaired with GEOSMakeValid: a repair silently changes which block owns a
 * point, and the people who own the map should fix it at the source.
 *
 * Every data error returns -EINVAL; allocation failure -ENOMEM; a GEOS
 * exception -EIO; a file that cannot be read the errno of the failing call.
 *
 * Blocks are kept sorted by id (byte-wise, as strcmp), so "the smallest id
 * wins" is "the smallest index wins". Ids are compared as bytes; for the
 * fixed-width ids the department uses this is also numeric order.
 *
 * Lookups create one GEOS point per call. Reusing one point by updating its
 * coordinate sequence in place (GEOSGeom_getCoordSeq_r, cast, setXY) does not
 * work with GEOS 3.11: the point caches its envelope at construction, so the
 * STRtree query keeps using the first position and returns wrong candidates.
 * The C API has no way to invalidate that cache, so a fresh point it is; it
 * costs an allocation (see bench/bench_blockmap.c for the figure).
 */
#include "blockmap.h"

#include <errno.h>
#include <fcntl.h>
#include <geos_c.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct block {
    struct bh_block pub;
    size_t id_len;
    size_t feature; /* index in the file's features array, for messages */
    GEOSGeometry *geom;
    const GEOSPreparedGeometry *prep;
};

struct bh_blockmap {
    GEOSContextHandle_t geos;
    char geos_msg[256];   /* the last GEOS error or notice */
    struct block *blocks; /* sorted by id */
    size_t count;
    uint32_t *slots; /* hash table: index + 1 into blocks, 0 = empty */
    size_t slot_mask;
    GEOSSTRtree *tree;
    char *strings; /* every id and name, NUL-terminated */
    double min_lon, min_lat, max_lon, max_lat;
};

/* Scratch state while loading one map. */
struct loader {
    struct bh_blockmap *map;
    const char *name;
    char *errstr;
    size_t errstr_size;
    double *coords; /* x, y pairs of the ring being read */
    size_t coords_cap;
};

static void set_error(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_error(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;

    if (!errstr || errstr_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

static void
on_geos_message(const char *message, void *userdata)
{
    struct bh_blockmap *map = userdata;

    snprintf(map->geos_msg, sizeof(map->geos_msg), "%s", message ? message : "(no message)");
}

static uint32_t
hash_id(const char *id, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 16777619u;
    }
    /* FNV-1a mixes the low bits poorly for ids that differ in the last byte. */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static int
compare_ids(const char *a, size_t a_len, const char *b, size_t b_len)
{
    int c = memcmp(a, b, a_len < b_len ? a_len : b_len);

    if (c != 0)
        return c;
    return (a_len > b_len) - (a_len < b_len);
}

static int
compare_blocks(const void *pa, const void *pb)
{
    const struct block *a = pa;
    const struct block *b = pb;

    return compare_ids(a->pub.id, a->id_len, b->pub.id, b->id_len);
}

/* "features[3] (block 440303-004)" or "features[3]" before the id is known. */
static const char *
where(char *buf, size_t size, size_t feature, const char *id)
{
    if (id)
        snprintf(buf, size, "features[%zu] (block %s)", feature, id);
    else
        snprintf(buf, size, "features[%zu]", feature);
    return buf;
}

/* Reads one linear ring into ld->coords and builds it. */
static int
load_ring(struct loader *ld, const json_t *ring, size_t feature, const char *id, const char *what,
          GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    GEOSCoordSequence *seq = NULL;
    char at[160];
    size_t n;
    int rc = -EINVAL;

    *out = NULL;
    where(at, sizeof(at), feature, id);
    if (!json_is_array(ring)) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s: %s is not an array of positions", ld->name,
                  at, what);
        goto out;
    }
    n = json_array_size(ring);
    if (n < 4) {
        set_error(ld->errstr, ld->errstr_size,
                  "%s: %s: %s has %zu positions; a linear ring needs at least 4", ld->name, at,
                  what, n);
        goto out;
    }
    if (n * 2 > ld->coords_cap) {
        size_t cap = n * 2 > 64 ? n * 2 : 64;
        double *coords = realloc(ld->coords, cap * sizeof(*coords));

        if (!coords) {
            rc = -ENOMEM;
            set_error(ld->errstr, ld->errstr_size, "%s: out of memory", ld->name);
            goto out;
        }
        ld->coords = coords;
        ld->coords_cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *pos = json_array_get(ring, i);
        const json_t *x = json_array_get(pos, 0);
        const json_t *y = json_array_get(pos, 1);

        if (!json_is_array(pos) || json_array_size(pos) < 2) {
            set_error(ld->errstr, ld->errstr_size,
                      "%s: %s: %s position %zu is not an array [lon, lat]", ld->name, at, what, i);
            goto out;
        }
        if (!json_is_number(x) || !json_is_number(y)) {
            set_error(ld->errstr, ld->errstr_size,
                      "%s: %s: %s position %zu has a coordinate that is not a number", ld->name, at,
                      what, i);
            goto out;
        }
        ld->coords[2 * i] = json_number_value(x);
        ld->coords[2 * i + 1] = json_number_value(y);
    }
    if (ld->coords[0] != ld->coords[2 * (n - 1)] || ld->coords[1] != ld->coords[2 * n - 1]) {
        set_error(ld->errstr, ld->errstr_size,
                  "%s: %s: %s is not closed (its first and last positions differ)", ld->name, at,
                  what);
        goto out;
    }
    rc = -EIO;
    seq = GEOSCoordSeq_copyFromBuffer_r(geos, ld->coords, (unsigned int)n, 0, 0);
    if (!seq) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s: %s: GEOS: %s", ld->name, at, what,
                  ld->map->geos_msg);
        goto out;
    }
    *out = GEOSGeom_createLinearRing_r(geos, seq);
    seq = NULL; /* owned by the ring, or freed by GEOS on failure */
    if (!*out) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s: %s: GEOS: %s", ld->name, at, what,
                  ld->map->geos_msg);
        goto out;
    }
    rc = 0;
out:
    if (seq)
        GEOSCoordSeq_destroy_r(geos, seq);
    return rc;
}

/* COORDS is a GeoJSON Polygon's coordinates: [shell, hole, ...]. */
static int
load_polygon(struct loader *ld, const json_t *coords, size_t feature, const char *id, size_t part,
             bool multi, GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    GEOSGeometry *shell = NULL;
    GEOSGeometry **holes = NULL;
    size_t nholes = 0;
    size_t nrings;
    char at[160];
    char what[64];
    int rc = -EINVAL;

    *out = NULL;
    where(at, sizeof(at), feature, id);
    if (!json_is_array(coords) || json_array_size(coords) == 0) {
        if (multi)
            set_error(ld->errstr, ld->errstr_size,
                      "%s: %s: polygon %zu of the MultiPolygon has no rings", ld->name, at, part);
        else
            set_error(ld->errstr, ld->errstr_size, "%s: %s: the Polygon has no rings", ld->name,
                      at);
        goto out;
    }
    nrings = json_array_size(coords);
    if (nrings > 1) {
        holes = calloc(nrings - 1, sizeof(*holes));
        if (!holes) {
            rc = -ENOMEM;
            set_error(ld->errstr, ld->errstr_size, "%s: out of memory", ld->name);
            goto out;
        }
    }
    for (size_t r = 0; r < nrings; r++) {
        GEOSGeometry *ring;

        if (multi)
            snprintf(what, sizeof(what), "polygon %zu ring %zu", part, r);
        else
            snprintf(what, sizeof(what), "ring %zu", r);
        rc = load_ring(ld, json_array_get(coords, r), feature, id, what, &ring);
        if (rc < 0)
            goto out;
        if (r == 0)
            shell = ring;
        else
            holes[nholes++] = ring;
    }
    rc = -EIO;
    *out = GEOSGeom_createPolygon_r(geos, shell, holes, (unsigned int)nholes);
    shell = NULL; /* GEOS owns the rings now, even if it failed */
    nholes = 0;
    if (!*out) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s: GEOS: %s", ld->name, at, ld->map->geos_msg);
        goto out;
    }
    rc = 0;
out:
    if (shell)
        GEOSGeom_destroy_r(geos, shell);
    for (size_t i = 0; i < nholes; i++)
        GEOSGeom_destroy_r(geos, holes[i]);
    free(holes);
    return rc;
}

static int
load_geometry(struct loader *ld, const json_t *geometry, size_t feature, const char *id,
              GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    GEOSGeometry **parts = NULL;
    size_t nparts = 0;
    const json_t *coords;
    const char *type;
    char at[160];
    int rc = -EINVAL;

    *out = NULL;
    where(at, sizeof(at), feature, id);
    if (!json_is_object(geometry)) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s: no geometry object", ld->name, at);
        goto out;
    }
    type = json_string_value(json_object_get(geometry, "type"));
    coords = json_object_get(geometry, "coordinates");
    if (!type) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s: geometry has no type", ld->name, at);
        goto out;
    }
    if (strcmp(type, "Polygon") == 0) {
        rc = load_polygon(ld, coords, feature, id, 0, false, out);
        goto out;
    }
    if (strcmp(type, "MultiPolygon") != 0) {
        set_error(ld->errstr, ld->errstr_size,
                  "%s: %s: geometry type %s is not supported (only Polygon and MultiPolygon)",
                  ld->name, at, type);
        goto out;
    }
    if (!json_is_array(coords) || json_array_size(coords) == 0) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s: the MultiPolygon has no polygons", ld->name,
                  at);
        goto out;
    }
    parts = calloc(json_array_size(coords), sizeof(*parts));
    if (!parts) {
        rc = -ENOMEM;
        set_error(ld->errstr, ld->errstr_size, "%s: out of memory", ld->name);
        goto out;
    }
    for (size_t p = 0; p < json_array_size(coords); p++) {
        rc = load_polygon(ld, json_array_get(coords, p), feature, id, p, true, &parts[nparts]);
        if (rc < 0)
            goto out;
        nparts++;
    }
    rc = -EIO;
    *out = GEOSGeom_createCollection_r(geos, GEOS_MULTIPOLYGON, parts, (unsigned int)nparts);
    nparts = 0; /* GEOS owns the polygons now, even if it failed */
    if (!*out) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s: GEOS: %s", ld->name, at, ld->map->geos_msg);
        goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i < nparts; i++)
        GEOSGeom_destroy_r(geos, parts[i]);
    free(parts);
    return rc;
}

static int
check_valid(struct loader *ld, const struct block *b)
{
    GEOSContextHandle_t geos = ld->map->geos;
    GEOSGeometry *location = NULL;
    char *reason = NULL;
    double x = NAN;
    double y = NAN;
    char at[160];
    char valid;
    int rc = 0;

    where(at, sizeof(at), b->feature, b->pub.id);
    valid = GEOSisValidDetail_r(geos, b->geom, 0, &reason, &location);
    if (valid == 2) {
        rc = -EIO;
        set_error(ld->errstr, ld->errstr_size, "%s: %s: GEOS cannot check the polygon: %s",
                  ld->name, at, ld->map->geos_msg);
        goto out;
    }
    if (!valid) {
        rc = -EINVAL;
        if (location) {
            GEOSGeomGetX_r(geos, location, &x);
            GEOSGeomGetY_r(geos, location, &y);
        }
        set_error(ld->errstr, ld->errstr_size, "%s: %s: invalid polygon: %s at %.9g %.9g", ld->name,
                  at, reason ? reason : "unknown reason", x, y);
        goto out;
    }
out:
    if (reason)
        GEOSFree_r(geos, reason);
    if (location)
        GEOSGeom_destroy_r(geos, location);
    return rc;
}

/* Fills map->blocks[map->count] from one feature; ids and names still point into the JSON. */
static int
load_feature(struct loader *ld, const json_t *feature, size_t index)
{
    struct bh_blockmap *map = ld->map;
    struct block *b = &map->blocks[map->count];
    const json_t *props;
    const json_t *id;
    const json_t *name;
    char at[160];
    int rc = -EINVAL;

    where(at, sizeof(at), index, NULL);
    if (!json_is_object(feature)) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s is not an object", ld->name, at);
        goto out;
    }
    props = json_object_get(feature, "properties");
    id = json_object_get(props, "block_id");
    name = json_object_get(props, "name");
    if (!id || json_is_null(id)) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s has no properties.block_id", ld->name, at);
        goto out;
    }
    if (!json_is_string(id) || json_string_length(id) == 0) {
        set_error(ld->errstr, ld->errstr_size,
                  "%s: %s: properties.block_id is not a non-empty string", ld->name, at);
        goto out;
    }
    if (name && !json_is_null(name) && !json_is_string(name)) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s: properties.name is not a string", ld->name,
                  where(at, sizeof(at), index, json_string_value(id)));
        goto out;
    }
    b->pub.id = json_string_value(id);
    b->id_len = json_string_length(id);
    b->pub.name = json_is_string(name) ? json_string_value(name) : "";
    b->feature = index;
    rc = load_geometry(ld, json_object_get(feature, "geometry"), index, b->pub.id, &b->geom);
    if (rc < 0)
        goto out;
    map->count++; /* from here on bh_blockmap_free owns b->geom */
    rc = check_valid(ld, b);
    if (rc < 0)
        goto out;
    rc = -EIO;
    b->prep = GEOSPrepare_r(map->geos, b->geom);
    if (!b->prep) {
        set_error(ld->errstr, ld->errstr_size, "%s: %s: GEOS cannot prepare the geometry: %s",
                  ld->name, where(at, sizeof(at), index, b->pub.id), map->geos_msg);
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/* Copies ids and names out of the JSON document into one allocation. */
static int
copy_strings(struct loader *ld)
{
    struct bh_blockmap *map = ld->map;
    size_t total = 0;
    char *p;
    int rc = 0;

    for (size_t i = 0; i < map->count; i++)
        total += map->blocks[i].id_len + 1 + strlen(map->blocks[i].pub.name) + 1;
    map->strings = malloc(total);
    if (!map->strings) {
        rc = -ENOMEM;
        set_error(ld->errstr, ld->errstr_size, "%s: out of memory", ld->name);
        goto out;
    }
    p = map->strings;
    for (size_t i = 0; i < map->count; i++) {
        struct block *b = &map->blocks[i];
        size_t name_len = strlen(b->pub.name);

        memcpy(p, b->pub.id, b->id_len + 1);
        b->pub.id = p;
        p += b->id_len + 1;
        memcpy(p, b->pub.name, name_len + 1);
        b->pub.name = p;
        p += name_len + 1;
    }
out:
    return rc;
}

/* After sorting: refuses duplicates, then fills the hash table. */
static int
build_index(struct loader *ld)
{
    struct bh_blockmap *map = ld->map;
    size_t nslots = 16;
    int rc = 0;

    for (size_t i = 1; i < map->count; i++) {
        const struct block *a = &map->blocks[i - 1];
        const struct block *b = &map->blocks[i];

        if (compare_blocks(a, b) == 0) {
            rc = -EINVAL;
            set_error(ld->errstr, ld->errstr_size,
                      "%s: duplicate block_id \"%s\" (features[%zu] and features[%zu])", ld->name,
                      b->pub.id, a->feature < b->feature ? a->feature : b->feature,
                      a->feature < b->feature ? b->feature : a->feature);
            goto out;
        }
    }
    while (nslots < map->count * 2)
        nslots *= 2;
    map->slots = calloc(nslots, sizeof(*map->slots));
    if (!map->slots) {
        rc = -ENOMEM;
        set_error(ld->errstr, ld->errstr_size, "%s: out of memory", ld->name);
        goto out;
    }
    map->slot_mask = nslots - 1;
    for (size_t i = 0; i < map->count; i++) {
        size_t s = hash_id(map->blocks[i].pub.id, map->blocks[i].id_len) & map->slot_mask;

        while (map->slots[s] != 0)
            s = (s + 1) & map->slot_mask;
        map->slots[s] = (uint32_t)(i + 1);
    }
out:
    return rc;
}

static void
on_nothing(void *item, void *userdata)
{
    (void)item;
    (void)userdata;
}

static int
build_tree(struct loader *ld)
{
    struct bh_blockmap *map = ld->map;
    GEOSContextHandle_t geos = map->geos;
    GEOSGeometry *probe = NULL;
    int rc = -EIO;

    map->tree = GEOSSTRtree_create_r(geos, 10);
    if (!map->tree) {
        set_error(ld->errstr, ld->errstr_size, "%s: GEOS cannot create the STRtree: %s", ld->name,
                  map->geos_msg);
        goto out;
    }
    map->min_lon = map->min_lat = INFINITY;
    map->max_lon = map->max_lat = -INFINITY;
    for (size_t i = 0; i < map->count; i++) {
        const GEOSGeometry *g = map->blocks[i].geom;
        double v;

        /* The item is the index + 1 so that no item is NULL. */
        GEOSSTRtree_insert_r(geos, map->tree, g, (void *)(uintptr_t)(i + 1));
        if (GEOSGeom_getXMin_r(geos, g, &v) == 1 && v < map->min_lon)
            map->min_lon = v;
        if (GEOSGeom_getYMin_r(geos, g, &v) == 1 && v < map->min_lat)
            map->min_lat = v;
        if (GEOSGeom_getXMax_r(geos, g, &v) == 1 && v > map->max_lon)
            map->max_lon = v;
        if (GEOSGeom_getYMax_r(geos, g, &v) == 1 && v > map->max_lat)
            map->max_lat = v;
    }
    /* The tree is built on its first query: do that now, not on the first record. */
    probe = GEOSGeom_createPointFromXY_r(geos, map->min_lon, map->min_lat);
    if (!probe) {
        set_error(ld->errstr, ld->errstr_size, "%s: GEOS: %s", ld->name, map->geos_msg);
        goto out;
    }
    GEOSSTRtree_query_r(geos, map->tree, probe, on_nothing, NULL);
    rc = 0;
out:
    if (probe)
        GEOSGeom_destroy_r(geos, probe);
    return rc;
}

int
bh_blockmap_load_string(struct bh_blockmap **out, const char *name, const char *json, size_t len,
                        char *errstr, size_t errstr_size)
{
    struct loader ld = {
        .name = name ? name : "block map", .errstr = errstr, .errstr_size = errstr_size};
    struct bh_blockmap *map = NULL;
    json_t *root = NULL;
    const json_t *features;
    const char *type;
    json_error_t jerr;
    size_t n;
    int rc = -EINVAL;

    if (!out || (!json && len > 0)) {
        set_error(errstr, errstr_size, "%s: invalid arguments", ld.name);
        goto out;
    }
    *out = NULL;
    root = json_loadb(json ? json : "", len, 0, &jerr);
    if (!root) {
        set_error(errstr, errstr_size, "%s:%d:%d: not valid JSON: %s", ld.name, jerr.line,
                  jerr.column, jerr.text);
        goto out;
    }
    type = json_string_value(json_object_get(root, "type"));
    if (!json_is_object(root) || !type || strcmp(type, "FeatureCollection") != 0) {
        set_error(errstr, errstr_size, "%s: not a GeoJSON FeatureCollection", ld.name);
        goto out;
    }
    features = json_object_get(root, "features");
    if (!json_is_array(features)) {
        set_error(errstr, errstr_size, "%s: the FeatureCollection has no features array", ld.name);
        goto out;
    }
    n = json_array_size(features);
    if (n == 0) {
        set_error(errstr, errstr_size, "%s: the FeatureCollection has no features", ld.name);
        goto out;
    }
    if (n >= UINT32_MAX / 2) {
        set_error(errstr, errstr_size, "%s: too many features (%zu)", ld.name, n);
        goto out;
    }
    rc = -ENOMEM;
    map = calloc(1, sizeof(*map));
    if (!map) {
        set_error(errstr, errstr_size, "%s: out of memory", ld.name);
        goto out;
    }
    ld.map = map;
    map->geos = GEOS_init_r();
    if (!map->geos) {
        set_error(errstr, errstr_size, "%s: GEOS_init_r failed", ld.name);
        goto out;
    }
    GEOSContext_setErrorMessageHandler_r(map->geos, on_geos_message, map);
    GEOSContext_setNoticeMessageHandler_r(map->geos, on_geos_message, map);
    map->blocks = calloc(n, sizeof(*map->blocks));
    if (!map->blocks) {
        set_error(errstr, errstr_size, "%s: out of memory", ld.name);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        rc = load_feature(&ld, json_array_get(features, i), i);
        if (rc < 0)
            goto out;
    }
    rc = copy_strings(&ld);
    if (rc < 0)
        goto out;
    qsort(map->blocks, map->count, sizeof(*map->blocks), compare_blocks);
    rc = build_index(&ld);
    if (rc < 0)
        goto out;
    rc = build_tree(&ld);
    if (rc < 0)
        goto out;
    *out = map;
    map = NULL;
out:
    json_decref(root);
    free(ld.coords);
    bh_blockmap_free(map);
    return rc;
}

int
bh_blockmap_load(struct bh_blockmap **out, const char *path, char *errstr, size_t errstr_size)
{
    struct stat st;
    char *buf = NULL;
    char ebuf[128];
    size_t len = 0;
    int fd = -1;
    int rc = -EINVAL;

    if (!out || !path) {
        set_error(errstr, errstr_size, "block map: invalid arguments");
        goto out;
    }
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = -errno;
        set_error(errstr, errstr_size, "%s: %s", path, strerror_r(-rc, ebuf, sizeof(ebuf)));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        set_error(errstr, errstr_size, "%s: not a regular file", path);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = -ENOMEM;
        set_error(errstr, errstr_size, "%s: out of memory", path);
        goto out;
    }
    while (len < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            set_error(errstr, errstr_size, "%s: %s", path, strerror_r(-rc, ebuf, sizeof(ebuf)));
            goto out;
        }
        if (r == 0)
            break; /* shrank under us: parse what is there */
        len += (size_t)r;
    }
    rc = bh_blockmap_load_string(out, path, buf, len, errstr, errstr_size);
out:
    if (fd >= 0)
        close(fd);
    free(buf);
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
    *min_lon = map->min_lon;
    *min_lat = map->min_lat;
    *max_lon = map->max_lon;
    *max_lat = map->max_lat;
}

const struct bh_block *
bh_blockmap_find(const struct bh_blockmap *map, const char *id, size_t len)
{
    size_t s;

    if (!map || !id || len == 0)
        return NULL;
    s = hash_id(id, len) & map->slot_mask;
    while (map->slots[s] != 0) {
        const struct block *b = &map->blocks[map->slots[s] - 1];

        if (b->id_len == len && memcmp(b->pub.id, id, len) == 0)
            return &b->pub;
        s = (s + 1) & map->slot_mask;
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

    /* Only a smaller id can win, so skip the test for the others. */
    if (q->best != 0 && index >= q->best)
        return;
    if (GEOSPreparedCovers_r(q->map->geos, q->map->blocks[index - 1].prep, q->point) == 1)
        q->best = index;
}

const struct bh_block *
bh_blockmap_locate(const struct bh_blockmap *map, double lon, double lat)
{
    struct locate_query q = {.map = map};
    GEOSGeometry *point;

    if (!map || !isfinite(lon) || !isfinite(lat))
        return NULL;
    if (lon < map->min_lon || lon > map->max_lon || lat < map->min_lat || lat > map->max_lat)
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
