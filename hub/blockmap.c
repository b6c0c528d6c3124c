/*
 * The block map: GeoJSON blocks -> GEOS prepared geometries in an STRtree,
 * plus an open-addressing hash table on block id.
 *
 * Parsing. jansson parses every JSON value, but not the whole document at
 * once: a small scanner walks the top-level object and hands each element of
 * "features" to json_loadb (JSON_DISABLE_EOF_CHECK, which reports where the
 * element ended), builds that block and frees its JSON before the next. A
 * production map has tens of thousands of features; holding the whole tree
 * costs several times the file size in small allocations, and building and
 * freeing it took about twice as long as parsing feature by feature.
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
 * wins" is "the smallest index wins". For the fixed-width ids the department
 * uses, byte order is also numeric order.
 *
 * Lookups create one GEOS point per call. Reusing one point by updating its
 * coordinate sequence in place (GEOSGeom_getCoordSeq_r, cast, setXY) does not
 * work with GEOS 3.11: the point caches its envelope when it is created, so
 * the STRtree query keeps using the first position and returns the wrong
 * candidates. The C API has no way to invalidate that cache, so a fresh point
 * it is; it costs an allocation (bench/bench_blockmap.c measures it).
 *
 * Each polygon of a MultiPolygon goes into the STRtree on its own envelope:
 * one envelope around two detached parts would make every query near either
 * part, and every tree node holding it, pay for the empty space between them.
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
    GEOSGeometry *geom;
    const GEOSPreparedGeometry *prep;
    size_t feature;          /* index in the file's features array, for messages */
    size_t id_off, name_off; /* into strings, while loading */
};

struct slot {
    const char *id; /* NULL: empty */
    uint32_t len;
    uint32_t index;
};

struct bh_blockmap {
    GEOSContextHandle_t geos;
    char geos_msg[256];   /* the last GEOS error or notice */
    struct block *blocks; /* sorted by id */
    size_t count;
    struct slot *slots; /* hash table on id */
    size_t slot_mask;
    GEOSSTRtree *tree;
    char *strings; /* every id and name, NUL-terminated */
    double min_lon, min_lat, max_lon, max_lat;
};

/* State while loading one map. */
struct loader {
    struct bh_blockmap *map;
    const char *name;
    char *errstr;
    size_t errstr_size;
    /* the document */
    const char *base;
    const char *p;
    const char *end;
    /* the feature being loaded, for messages: SIZE_MAX when none */
    size_t feature;
    const char *id;
    size_t blocks_cap;
    size_t strings_len, strings_cap;
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

/*
 * "NAME: features[3] (block 440303-004): MESSAGE", as much as is known. Before
 * the id is known, a MESSAGE starting with a space continues the sentence:
 * "NAME: features[3] is not an object".
 */
static void fail(struct loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
fail(struct loader *ld, const char *fmt, ...)
{
    char message[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (ld->feature == SIZE_MAX)
        set_error(ld->errstr, ld->errstr_size, "%s: %s", ld->name, message);
    else if (!ld->id)
        set_error(ld->errstr, ld->errstr_size, "%s: features[%zu]%s%s", ld->name, ld->feature,
                  message[0] == ' ' ? "" : ": ", message);
    else
        set_error(ld->errstr, ld->errstr_size, "%s: features[%zu] (block %s): %s", ld->name,
                  ld->feature, ld->id, message);
}

/* A JSON syntax error at byte OFFSET of the document. */
static void
fail_syntax(struct loader *ld, size_t offset, const char *what)
{
    size_t line = 1;
    size_t column = 1;

    for (size_t i = 0; i < offset && ld->base + i < ld->end; i++) {
        if (ld->base[i] == '\n') {
            line++;
            column = 1;
        } else if (((unsigned char)ld->base[i] & 0xc0) != 0x80) {
            column++; /* count characters, not UTF-8 continuation bytes */
        }
    }
    set_error(ld->errstr, ld->errstr_size, "%s:%zu:%zu: not valid JSON: %s", ld->name, line, column,
              what);
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
    /* FNV-1a leaves the low bits poorly mixed for ids that differ in the last byte. */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static int
compare_blocks(const void *pa, const void *pb)
{
    const struct block *a = pa;
    const struct block *b = pb;
    int c = memcmp(a->pub.id, b->pub.id, a->id_len < b->id_len ? a->id_len : b->id_len);

    if (c != 0)
        return c;
    return (a->id_len > b->id_len) - (a->id_len < b->id_len);
}

/* ---- geometry ---- */

/* PART is the polygon's index in a MultiPolygon, or -1 for a Polygon. */
static void fail_ring(struct loader *ld, long part, size_t ring, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
fail_ring(struct loader *ld, long part, size_t ring, const char *fmt, ...)
{
    char message[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (part < 0)
        fail(ld, "ring %zu %s", ring, message);
    else
        fail(ld, "polygon %ld ring %zu %s", part, ring, message);
}

static int
load_ring(struct loader *ld, const json_t *ring, long part, size_t index, GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    GEOSCoordSequence *seq;
    size_t n;
    int rc = -EINVAL;

    *out = NULL;
    if (!json_is_array(ring)) {
        fail_ring(ld, part, index, "is not an array of positions");
        goto out;
    }
    n = json_array_size(ring);
    if (n < 4) {
        fail_ring(ld, part, index, "has %zu positions; a linear ring needs at least 4", n);
        goto out;
    }
    if (n * 2 > ld->coords_cap) {
        size_t cap = n * 2 > 256 ? n * 2 : 256;
        double *coords = realloc(ld->coords, cap * sizeof(*coords));

        if (!coords) {
            rc = -ENOMEM;
            fail(ld, "out of memory");
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
            fail_ring(ld, part, index, "position %zu is not an array [lon, lat]", i);
            goto out;
        }
        if (!json_is_number(x) || !json_is_number(y)) {
            fail_ring(ld, part, index, "position %zu has a coordinate that is not a number", i);
            goto out;
        }
        ld->coords[2 * i] = json_number_value(x);
        ld->coords[2 * i + 1] = json_number_value(y);
    }
    if (ld->coords[0] != ld->coords[2 * n - 2] || ld->coords[1] != ld->coords[2 * n - 1]) {
        fail_ring(ld, part, index, "is not closed (its first and last positions differ)");
        goto out;
    }
    rc = -EIO;
    seq = GEOSCoordSeq_copyFromBuffer_r(geos, ld->coords, (unsigned int)n, 0, 0);
    if (!seq) {
        fail_ring(ld, part, index, "is refused by GEOS: %s", ld->map->geos_msg);
        goto out;
    }
    *out = GEOSGeom_createLinearRing_r(geos, seq); /* takes SEQ, even on failure */
    if (!*out) {
        fail_ring(ld, part, index, "is refused by GEOS: %s", ld->map->geos_msg);
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/* RINGS is a GeoJSON Polygon's coordinates: [shell, hole, ...]. */
static int
load_polygon(struct loader *ld, const json_t *rings, long part, GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    GEOSGeometry *shell = NULL;
    GEOSGeometry **holes = NULL;
    size_t nholes = 0;
    size_t nrings = json_array_size(rings);
    int rc = -EINVAL;

    *out = NULL;
    if (!json_is_array(rings) || nrings == 0) {
        if (part < 0)
            fail(ld, "the Polygon has no rings");
        else
            fail(ld, "polygon %ld of the MultiPolygon has no rings", part);
        goto out;
    }
    if (nrings > 1) {
        holes = calloc(nrings - 1, sizeof(*holes));
        if (!holes) {
            rc = -ENOMEM;
            fail(ld, "out of memory");
            goto out;
        }
    }
    rc = load_ring(ld, json_array_get(rings, 0), part, 0, &shell);
    if (rc < 0)
        goto out;
    for (size_t r = 1; r < nrings; r++) {
        rc = load_ring(ld, json_array_get(rings, r), part, r, &holes[nholes]);
        if (rc < 0)
            goto out;
        nholes++;
    }
    rc = -EIO;
    *out = GEOSGeom_createPolygon_r(geos, shell, holes, (unsigned int)nholes);
    shell = NULL; /* GEOS owns the rings now, even if it failed */
    nholes = 0;
    if (!*out) {
        fail(ld, "GEOS: %s", ld->map->geos_msg);
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
load_geometry(struct loader *ld, const json_t *geometry, GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    const json_t *coords = json_object_get(geometry, "coordinates");
    const char *type = json_string_value(json_object_get(geometry, "type"));
    GEOSGeometry **parts = NULL;
    size_t nparts = 0;
    size_t n;
    int rc = -EINVAL;

    *out = NULL;
    if (!json_is_object(geometry)) {
        fail(ld, "no geometry object");
        goto out;
    }
    if (!type) {
        fail(ld, "the geometry has no type");
        goto out;
    }
    if (strcmp(type, "Polygon") == 0) {
        rc = load_polygon(ld, coords, -1, out);
        goto out;
    }
    if (strcmp(type, "MultiPolygon") != 0) {
        fail(ld, "geometry type %.40s is not supported (only Polygon and MultiPolygon)", type);
        goto out;
    }
    n = json_array_size(coords);
    if (!json_is_array(coords) || n == 0) {
        fail(ld, "the MultiPolygon has no polygons");
        goto out;
    }
    parts = calloc(n, sizeof(*parts));
    if (!parts) {
        rc = -ENOMEM;
        fail(ld, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        rc = load_polygon(ld, json_array_get(coords, i), (long)i, &parts[nparts]);
        if (rc < 0)
            goto out;
        nparts++;
    }
    rc = -EIO;
    *out = GEOSGeom_createCollection_r(geos, GEOS_MULTIPOLYGON, parts, (unsigned int)nparts);
    nparts = 0; /* GEOS owns the polygons now, even if it failed */
    if (!*out) {
        fail(ld, "GEOS: %s", ld->map->geos_msg);
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
check_valid(struct loader *ld, const GEOSGeometry *geom)
{
    GEOSContextHandle_t geos = ld->map->geos;
    GEOSGeometry *location = NULL;
    char *reason = NULL;
    double x = NAN;
    double y = NAN;
    char valid;
    int rc = 0;

    valid = GEOSisValidDetail_r(geos, geom, 0, &reason, &location);
    if (valid == 2) {
        rc = -EIO;
        fail(ld, "GEOS cannot check the polygon: %s", ld->map->geos_msg);
        goto out;
    }
    if (!valid) {
        rc = -EINVAL;
        if (location) {
            GEOSGeomGetX_r(geos, location, &x);
            GEOSGeomGetY_r(geos, location, &y);
        }
        fail(ld, "invalid polygon: %s at %.9g %.9g", reason ? reason : "unknown reason", x, y);
        goto out;
    }
out:
    if (reason)
        GEOSFree_r(geos, reason);
    if (location)
        GEOSGeom_destroy_r(geos, location);
    return rc;
}

/* ---- features ---- */

/* Appends LEN bytes and a NUL to the string arena; *OFF gets where. */
static int
add_string(struct loader *ld, const char *s, size_t len, size_t *off)
{
    struct bh_blockmap *map = ld->map;
    int rc = 0;

    if (ld->strings_cap - ld->strings_len < len + 1) {
        size_t cap = ld->strings_cap ? ld->strings_cap : 4096;
        char *strings;

        while (cap - ld->strings_len < len + 1)
            cap *= 2;
        strings = realloc(map->strings, cap);
        if (!strings) {
            rc = -ENOMEM;
            fail(ld, "out of memory");
            goto out;
        }
        map->strings = strings;
        ld->strings_cap = cap;
    }
    memcpy(map->strings + ld->strings_len, s, len);
    map->strings[ld->strings_len + len] = '\0';
    *off = ld->strings_len;
    ld->strings_len += len + 1;
out:
    return rc;
}

/* Adds one block from one parsed feature. */
static int
load_feature(struct loader *ld, const json_t *feature)
{
    struct bh_blockmap *map = ld->map;
    const json_t *props = json_object_get(feature, "properties");
    const json_t *id = json_object_get(props, "block_id");
    const json_t *name = json_object_get(props, "name");
    struct block *b;
    int rc = -EINVAL;

    if (!json_is_object(feature)) {
        fail(ld, " is not an object");
        goto out;
    }
    if (!id || json_is_null(id)) {
        fail(ld, " has no properties.block_id");
        goto out;
    }
    if (!json_is_string(id) || json_string_length(id) == 0) {
        fail(ld, "properties.block_id is not a non-empty string");
        goto out;
    }
    ld->id = json_string_value(id);
    if (json_string_length(id) > UINT32_MAX) {
        fail(ld, "properties.block_id is too long");
        goto out;
    }
    if (name && !json_is_null(name) && !json_is_string(name)) {
        fail(ld, "properties.name is not a string");
        goto out;
    }
    if (map->count == ld->blocks_cap) {
        size_t cap = ld->blocks_cap ? ld->blocks_cap * 2 : 256;
        struct block *blocks = realloc(map->blocks, cap * sizeof(*blocks));

        if (!blocks) {
            rc = -ENOMEM;
            fail(ld, "out of memory");
            goto out;
        }
        map->blocks = blocks;
        ld->blocks_cap = cap;
    }
    b = &map->blocks[map->count];
    memset(b, 0, sizeof(*b));
    b->feature = ld->feature;
    b->id_len = json_string_length(id);
    rc = load_geometry(ld, json_object_get(feature, "geometry"), &b->geom);
    if (rc < 0)
        goto out;
    map->count++; /* from here on bh_blockmap_free owns b->geom */
    rc = check_valid(ld, b->geom);
    if (rc < 0)
        goto out;
    rc = add_string(ld, json_string_value(id), b->id_len, &b->id_off);
    if (rc < 0)
        goto out;
    rc = add_string(ld, json_is_string(name) ? json_string_value(name) : "",
                    json_is_string(name) ? json_string_length(name) : 0, &b->name_off);
    if (rc < 0)
        goto out;
    rc = -EIO;
    b->prep = GEOSPrepare_r(map->geos, b->geom);
    if (!b->prep) {
        fail(ld, "GEOS cannot prepare the geometry: %s", map->geos_msg);
        goto out;
    }
    rc = 0;
out:
    ld->id = NULL;
    return rc;
}

/* ---- the top-level object ---- */

static void
skip_space(struct loader *ld)
{
    while (ld->p < ld->end && (*ld->p == ' ' || *ld->p == '\t' || *ld->p == '\n' || *ld->p == '\r'))
        ld->p++;
}

static bool
is_delimiter(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ':' || c == '[' ||
           c == ']' || c == '{' || c == '}' || c == '"';
}

/*
 * Moves past one JSON value without checking it (parse_value checks it).
 * False if the brackets do not balance before the end.
 */
static bool
skip_value(struct loader *ld)
{
    size_t depth = 0;

    do {
        skip_space(ld);
        if (ld->p >= ld->end)
            return false;
        if (*ld->p == '"') {
            for (ld->p++; ld->p < ld->end && *ld->p != '"'; ld->p++) {
                if (*ld->p == '\\')
                    ld->p++;
            }
            if (ld->p >= ld->end)
                return false;
            ld->p++;
        } else if (*ld->p == '{' || *ld->p == '[') {
            depth++;
            ld->p++;
        } else if (*ld->p == '}' || *ld->p == ']') {
            if (depth == 0)
                return false;
            depth--;
            ld->p++;
        } else if (*ld->p == ',' || *ld->p == ':') {
            if (depth == 0)
                return false;
            ld->p++;
        } else {
            do
                ld->p++;
            while (ld->p < ld->end && !is_delimiter(*ld->p));
        }
    } while (depth > 0);
    return true;
}

/* Parses the value at ld->p, whatever it is, and moves past it. */
static int
parse_value(struct loader *ld, json_t **out)
{
    const char *start;
    json_error_t jerr;
    int rc = -EINVAL;

    skip_space(ld);
    start = ld->p;
    if (!skip_value(ld)) {
        fail_syntax(ld, (size_t)(ld->p - ld->base), "unbalanced or truncated value");
        goto out;
    }
    *out = json_loadb(start, (size_t)(ld->p - start), JSON_DECODE_ANY, &jerr);
    if (!*out) {
        fail_syntax(ld, (size_t)(start - ld->base) + (size_t)jerr.position, jerr.text);
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/* Expects C (after white space) and moves past it. */
static int
expect(struct loader *ld, char c)
{
    char what[32];

    skip_space(ld);
    if (ld->p < ld->end && *ld->p == c) {
        ld->p++;
        return 0;
    }
    snprintf(what, sizeof(what), "'%c' expected", c);
    fail_syntax(ld, (size_t)(ld->p - ld->base), what);
    return -EINVAL;
}

/* At the '[' of "features": loads every feature, one at a time. */
static int
load_features(struct loader *ld)
{
    json_t *feature = NULL;
    json_error_t jerr;
    int rc;

    rc = expect(ld, '[');
    if (rc < 0)
        goto out;
    skip_space(ld);
    if (ld->p < ld->end && *ld->p == ']') {
        ld->p++;
        goto out;
    }
    for (ld->feature = 0;; ld->feature++) {
        skip_space(ld);
        if (ld->p < ld->end && *ld->p != '\0' && strchr("\"-0123456789tfn", *ld->p)) {
            /* A scalar: json_loadb would only say "'[' or '{' expected". */
            rc = -EINVAL;
            fail(ld, " is not an object");
            goto out;
        }
        feature = json_loadb(ld->p, (size_t)(ld->end - ld->p), JSON_DISABLE_EOF_CHECK, &jerr);
        if (!feature) {
            rc = -EINVAL;
            fail_syntax(ld, (size_t)(ld->p - ld->base) + (size_t)jerr.position, jerr.text);
            goto out;
        }
        ld->p += jerr.position;
        rc = load_feature(ld, feature);
        json_decref(feature);
        feature = NULL;
        if (rc < 0)
            goto out;
        skip_space(ld);
        if (ld->p < ld->end && *ld->p == ']') {
            ld->p++;
            break;
        }
        rc = expect(ld, ',');
        if (rc < 0)
            goto out;
    }
out:
    ld->feature = SIZE_MAX;
    return rc;
}

/* The document: an object with "type": "FeatureCollection" and "features": [...]. */
static int
load_document(struct loader *ld)
{
    json_t *key = NULL;
    json_t *value = NULL;
    bool collection = false;
    bool features = false;
    int rc = -EINVAL;

    skip_space(ld);
    if (ld->p >= ld->end || *ld->p != '{') {
        /* Say whether it is JSON at all. */
        if (parse_value(ld, &value) == 0) {
            skip_space(ld);
            if (ld->p < ld->end)
                fail_syntax(ld, (size_t)(ld->p - ld->base), "end of input expected");
            else
                fail(ld, "not a GeoJSON FeatureCollection");
        }
        goto out;
    }
    ld->p++;
    skip_space(ld);
    if (ld->p < ld->end && *ld->p == '}') {
        ld->p++;
        goto done;
    }
    for (;;) {
        skip_space(ld);
        if (ld->p >= ld->end || *ld->p != '"') {
            rc = -EINVAL;
            fail_syntax(ld, (size_t)(ld->p - ld->base), "string or '}' expected");
            goto out;
        }
        rc = parse_value(ld, &key);
        if (rc < 0)
            goto out;
        rc = expect(ld, ':');
        if (rc < 0)
            goto out;
        rc = -EINVAL;
        if (strcmp(json_string_value(key), "features") == 0) {
            if (features) {
                fail(ld, "more than one \"features\" member");
                goto out;
            }
            features = true;
            skip_space(ld);
            if (ld->p >= ld->end || *ld->p != '[') {
                fail(ld, "the FeatureCollection has no features array");
                goto out;
            }
            rc = load_features(ld);
        } else {
            rc = parse_value(ld, &value);
            if (rc == 0 && strcmp(json_string_value(key), "type") == 0)
                collection = json_is_string(value) &&
                             strcmp(json_string_value(value), "FeatureCollection") == 0;
            json_decref(value);
            value = NULL;
        }
        json_decref(key);
        key = NULL;
        if (rc < 0)
            goto out;
        skip_space(ld);
        if (ld->p < ld->end && *ld->p == '}') {
            ld->p++;
            break;
        }
        rc = expect(ld, ',');
        if (rc < 0)
            goto out;
    }
done:
    rc = -EINVAL;
    skip_space(ld);
    if (ld->p < ld->end) {
        fail_syntax(ld, (size_t)(ld->p - ld->base), "end of input expected");
        goto out;
    }
    if (!collection) {
        fail(ld, "not a GeoJSON FeatureCollection");
        goto out;
    }
    if (!features) {
        fail(ld, "the FeatureCollection has no features array");
        goto out;
    }
    if (ld->map->count == 0) {
        fail(ld, "the FeatureCollection has no features");
        goto out;
    }
    rc = 0;
out:
    json_decref(key);
    json_decref(value);
    return rc;
}

/* ---- indexes ---- */

/* After sorting: points the blocks at their strings, refuses duplicates, fills the hash table. */
static int
build_index(struct loader *ld)
{
    struct bh_blockmap *map = ld->map;
    size_t nslots = 16;
    int rc = 0;

    for (size_t i = 0; i < map->count; i++) {
        map->blocks[i].pub.id = map->strings + map->blocks[i].id_off;
        map->blocks[i].pub.name = map->strings + map->blocks[i].name_off;
    }
    qsort(map->blocks, map->count, sizeof(*map->blocks), compare_blocks);
    for (size_t i = 1; i < map->count; i++) {
        const struct block *a = &map->blocks[i - 1];
        const struct block *b = &map->blocks[i];

        if (compare_blocks(a, b) == 0) {
            rc = -EINVAL;
            fail(ld, "duplicate block_id \"%s\" (features[%zu] and features[%zu])", b->pub.id,
                 a->feature < b->feature ? a->feature : b->feature,
                 a->feature < b->feature ? b->feature : a->feature);
            goto out;
        }
    }
    while (nslots < map->count * 2)
        nslots *= 2;
    map->slots = calloc(nslots, sizeof(*map->slots));
    if (!map->slots) {
        rc = -ENOMEM;
        fail(ld, "out of memory");
        goto out;
    }
    map->slot_mask = nslots - 1;
    for (size_t i = 0; i < map->count; i++) {
        const struct block *b = &map->blocks[i];
        size_t s = hash_id(b->pub.id, b->id_len) & map->slot_mask;

        while (map->slots[s].id)
            s = (s + 1) & map->slot_mask;
        map->slots[s].id = b->pub.id;
        map->slots[s].len = (uint32_t)b->id_len;
        map->slots[s].index = (uint32_t)i;
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

static void
widen_bounds(struct bh_blockmap *map, const GEOSGeometry *g)
{
    double v;

    if (GEOSGeom_getXMin_r(map->geos, g, &v) == 1 && v < map->min_lon)
        map->min_lon = v;
    if (GEOSGeom_getYMin_r(map->geos, g, &v) == 1 && v < map->min_lat)
        map->min_lat = v;
    if (GEOSGeom_getXMax_r(map->geos, g, &v) == 1 && v > map->max_lon)
        map->max_lon = v;
    if (GEOSGeom_getYMax_r(map->geos, g, &v) == 1 && v > map->max_lat)
        map->max_lat = v;
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
        fail(ld, "GEOS cannot create the STRtree: %s", map->geos_msg);
        goto out;
    }
    map->min_lon = map->min_lat = INFINITY;
    map->max_lon = map->max_lat = -INFINITY;
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
        widen_bounds(map, g);
    }
    /* The tree is built on its first query: do that now, not on the first record. */
    probe = GEOSGeom_createPointFromXY_r(geos, map->min_lon, map->min_lat);
    if (!probe) {
        fail(ld, "GEOS: %s", map->geos_msg);
        goto out;
    }
    GEOSSTRtree_query_r(geos, map->tree, probe, on_nothing, NULL);
    rc = 0;
out:
    if (probe)
        GEOSGeom_destroy_r(geos, probe);
    return rc;
}

/* ---- public ---- */

int
bh_blockmap_load_string(struct bh_blockmap **out, const char *name, const char *json, size_t len,
                        char *errstr, size_t errstr_size)
{
    struct loader ld = {
        .name = name ? name : "block map",
        .errstr = errstr,
        .errstr_size = errstr_size,
        .base = json,
        .p = json,
        .end = json ? json + len : NULL,
        .feature = SIZE_MAX,
    };
    struct bh_blockmap *map = NULL;
    int rc = -EINVAL;

    if (!out || (!json && len > 0)) {
        set_error(errstr, errstr_size, "%s: invalid arguments", ld.name);
        goto out;
    }
    *out = NULL;
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
    rc = load_document(&ld);
    if (rc < 0)
        goto out;
    rc = build_index(&ld);
    if (rc < 0)
        goto out;
    rc = build_tree(&ld);
    if (rc < 0)
        goto out;
    *out = map;
    map = NULL;
out:
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
            break; /* shrank under us: what is there will fail to parse */
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
    s = hash_id(id, len) & map->slot_mask;
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
