/*
 * Loading the block map: GeoJSON text -> blocks with GEOS prepared
 * geometries, their shape records (blockmap_grid.c), the hash table on id.
 *
 * Parsing. The map is read by the JSON scanner (json_scan.h), in one pass
 * over the text, without building a tree: the members the map uses are
 * picked up as they go by (a feature's block_id, name, geometry type and
 * coordinates), every other value is checked and skipped. A feature's
 * coordinates are kept as a flat list of nodes (arrays and numbers) until the
 * feature's object ends, because GeoJSON members come in any order: its type
 * and block id may follow them. Then the feature is checked and its GEOS
 * geometry built from those numbers, and the nodes are reused for the next.
 * With jansson, feature by feature, parsing the 50,000-block benchmark map
 * (18 MB) took about 720 ms of a 1.0-1.2 s load; this scanner reads and checks
 * it in about 40 ms, and the whole load takes about 0.25 s, half of it in
 * GEOSisValid_r, plus 40 to 60 ms for the lookup grid (bench/RESULTS.md).
 * A coordinate must be a finite double.
 *
 * Loading is strict: any malformed feature refuses the whole map, with a
 * message naming the feature and block, so that a bad reload keeps the old map
 * running. An invalid polygon (GEOSisValid false) is refused rather than
 * repaired with GEOSMakeValid: a repair silently changes which block owns a
 * point, and the people who own the map should fix it at the source. The check
 * is GEOSisValid_r; GEOSisValidDetail_r, which costs the same, runs only for a
 * polygon that fails it, to say why and where.
 *
 * Every data error returns -EINVAL; allocation failure -ENOMEM; a GEOS
 * exception -EIO; a file that cannot be read the errno of the failing call.
 *
 * Blocks are kept sorted by id (byte-wise, as strcmp), so "the smallest id
 * wins" is "the smallest index wins". For the fixed-width ids the department
 * uses, byte order is also numeric order.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockmap_int.h"

/* What a member's value was. */
enum member { ABSENT, IS_NULL, IS_STRING, IS_OTHER };

/* One feature as read, before it is checked; the strings are in the loader's texts. */
struct feature {
    enum member id, name, type, unit;
    bool geometry_object; /* geometry is an object */
    bool coordinates;     /* ... with coordinates, which are node 0 */
};

void
bh__fail(struct bh__loader *ld, const char *fmt, ...)
{
    char message[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (ld->feature == SIZE_MAX)
        bh_json_set_error(ld->js.errstr, ld->js.errstr_size, "%s: %s", ld->js.name, message);
    else if (!ld->id)
        bh_json_set_error(ld->js.errstr, ld->js.errstr_size, "%s: features[%zu]%s%s", ld->js.name,
                          ld->feature, message[0] == ' ' ? "" : ": ", message);
    else
        bh_json_set_error(ld->js.errstr, ld->js.errstr_size, "%s: features[%zu] (block %s): %s",
                          ld->js.name, ld->feature, ld->id, message);
}

/* The scanner's "out of memory", in the words of the feature being loaded. */
static void
on_out_of_memory(struct bh_json_scan *s)
{
    bh__fail((struct bh__loader *)s, "out of memory");
}

static void
on_geos_message(const char *message, void *userdata)
{
    struct bh_blockmap *map = userdata;

    snprintf(map->geos_msg, sizeof(map->geos_msg), "%s", message ? message : "(no message)");
}

static int
compare_blocks(const void *pa, const void *pb)
{
    const struct bh__block *a = pa;
    const struct bh__block *b = pb;
    int c = memcmp(a->pub.id, b->pub.id, a->id_len < b->id_len ? a->id_len : b->id_len);

    if (c != 0)
        return c;
    return (a->id_len > b->id_len) - (a->id_len < b->id_len);
}

/* A member whose value the map wants as a string: DST gets it, *WHAT what it was. */
static int
read_string_member(struct bh__loader *ld, struct bh_json_text *dst, enum member *what)
{
    int rc;

    if (bh_json_at(&ld->js, '"')) {
        *what = IS_STRING;
        return bh_json_string(&ld->js, dst);
    }
    *what = bh_json_at(&ld->js, 'n') ? IS_NULL : IS_OTHER; /* 'n' can only be null */
    rc = bh_json_value(&ld->js, false);
    return rc;
}

/* A feature's "properties" value. A later "properties" member replaces an earlier one. */
static int
read_properties(struct bh__loader *ld, struct feature *f)
{
    bool first = true;
    int rc;

    f->id = f->name = f->unit = ABSENT;
    if (!bh_json_at(&ld->js, '{'))
        return bh_json_value(&ld->js, false);
    while ((rc = bh_json_next_member(&ld->js, &first)) > 0) {
        if (bh_json_key_is(&ld->js, "block_id"))
            rc = read_string_member(ld, &ld->id_text, &f->id);
        else if (bh_json_key_is(&ld->js, "name"))
            rc = read_string_member(ld, &ld->name_text, &f->name);
        else if (bh_json_key_is(&ld->js, "unit"))
            rc = read_string_member(ld, &ld->unit_text, &f->unit);
        else
            rc = bh_json_value(&ld->js, false);
        if (rc < 0)
            return rc;
    }
    return rc;
}

/* A feature's "geometry" value: its type and its coordinates as nodes. */
static int
read_geometry(struct bh__loader *ld, struct feature *f)
{
    bool first = true;
    int rc;

    f->geometry_object = false;
    f->type = ABSENT;
    f->coordinates = false;
    if (!bh_json_at(&ld->js, '{'))
        return bh_json_value(&ld->js, false);
    f->geometry_object = true;
    while ((rc = bh_json_next_member(&ld->js, &first)) > 0) {
        if (bh_json_key_is(&ld->js, "type")) {
            rc = read_string_member(ld, &ld->type_text, &f->type);
        } else if (bh_json_key_is(&ld->js, "coordinates")) {
            f->coordinates = true;
            rc = bh_json_value(&ld->js, true);
        } else {
            rc = bh_json_value(&ld->js, false);
        }
        if (rc < 0)
            return rc;
    }
    return rc;
}

/* At the '{' of a feature: reads it to its end. */
static int
read_feature(struct bh__loader *ld, struct feature *f)
{
    bool first = true;
    int rc;

    memset(f, 0, sizeof(*f));
    while ((rc = bh_json_next_member(&ld->js, &first)) > 0) {
        if (bh_json_key_is(&ld->js, "properties"))
            rc = read_properties(ld, f);
        else if (bh_json_key_is(&ld->js, "geometry"))
            rc = read_geometry(ld, f);
        else
            rc = bh_json_value(&ld->js, false);
        if (rc < 0)
            return rc;
    }
    return rc;
}

/* ---- geometry ---- */

/* PART is the polygon's index in a MultiPolygon, or -1 for a Polygon. */
static void fail_ring(struct bh__loader *ld, long part, size_t ring, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
fail_ring(struct bh__loader *ld, long part, size_t ring, const char *fmt, ...)
{
    char message[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (part < 0)
        bh__fail(ld, "ring %zu %s", ring, message);
    else
        bh__fail(ld, "polygon %ld ring %zu %s", part, ring, message);
}

int
bh__reserve_shapes(struct bh__loader *ld, size_t words)
{
    struct bh_blockmap *map = ld->map;
    int rc = 0;

    if (words > SHAPES_MAX - map->nshapes) {
        rc = -EINVAL;
        bh__fail(ld, "the map has too many positions (more than about %u)", SHAPES_MAX / 2);
        goto out;
    }
    if (ld->shapes_cap - map->nshapes < words) {
        size_t cap = ld->shapes_cap ? ld->shapes_cap : 65536;
        union bh__word *shapes;

        while (cap - map->nshapes < words)
            cap *= 2;
        shapes = realloc(map->shapes, cap * sizeof(*shapes));
        if (!shapes) {
            rc = -ENOMEM;
            bh__fail(ld, "out of memory");
            goto out;
        }
        map->shapes = shapes;
        ld->shapes_cap = cap;
    }
out:
    return rc;
}

/* Starts the shape record of the block being loaded (see "the lookup grid"). */
static int
begin_shape(struct bh__loader *ld)
{
    struct bh_blockmap *map = ld->map;
    size_t at = SHAPE_ALIGN(map->nshapes);
    int rc = bh__reserve_shapes(ld, at - map->nshapes + 1);

    if (rc < 0)
        goto out;
    memset(&map->shapes[map->nshapes], 0, (at + 1 - map->nshapes) * sizeof(*map->shapes));
    ld->shape = at;
    ld->shape_points = 0;
    map->nshapes = at + 1;
out:
    return rc;
}

/* Adds the N positions in ld->coords to the block's shape record, as its next ring. */
static int
keep_ring(struct bh__loader *ld, size_t n)
{
    struct bh_blockmap *map = ld->map;
    union bh__word *w;
    int rc = bh__reserve_shapes(ld, 1 + 2 * n);

    if (rc < 0)
        goto out;
    w = &map->shapes[map->nshapes];
    w->u[0] = (uint32_t)n;
    w->u[1] = 0;
    for (size_t i = 0; i < 2 * n; i++)
        w[1 + i].d = ld->coords[i];
    map->shapes[ld->shape].u[1]++;
    ld->shape_points += n;
    map->nshapes += 1 + 2 * n;
out:
    return rc;
}

/* RING is the node of a ring's positions. */
static int
load_ring(struct bh__loader *ld, uint32_t ring, long part, size_t index, GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    const struct bh_json_node *nodes = ld->js.nodes;
    GEOSCoordSequence *seq;
    uint32_t pos = ring + 1;
    size_t n;
    int rc = -EINVAL;

    *out = NULL;
    if (nodes[ring].kind != BH_JSON_ARRAY) {
        fail_ring(ld, part, index, "is not an array of positions");
        goto out;
    }
    n = nodes[ring].count;
    if (n < 4) {
        fail_ring(ld, part, index, "has %zu positions; a linear ring needs at least 4", n);
        goto out;
    }
    if (n * 2 > ld->coords_cap) {
        size_t cap = n * 2 > 256 ? n * 2 : 256;
        double *coords = realloc(ld->coords, cap * sizeof(*coords));

        if (!coords) {
            rc = -ENOMEM;
            bh__fail(ld, "out of memory");
            goto out;
        }
        ld->coords = coords;
        ld->coords_cap = cap;
    }
    for (size_t i = 0; i < n; i++, pos = nodes[pos].next) {
        const struct bh_json_node *x, *y;

        if (nodes[pos].kind != BH_JSON_ARRAY || nodes[pos].count < 2) {
            fail_ring(ld, part, index, "position %zu is not an array [lon, lat]", i);
            goto out;
        }
        x = &nodes[pos + 1];
        y = &nodes[x->next];
        if (x->kind != BH_JSON_NUMBER || y->kind != BH_JSON_NUMBER) {
            fail_ring(ld, part, index, "position %zu has a coordinate that is not a number", i);
            goto out;
        }
        if (!isfinite(x->number) || !isfinite(y->number)) {
            fail_ring(ld, part, index, "position %zu has a coordinate out of range", i);
            goto out;
        }
        ld->coords[2 * i] = x->number;
        ld->coords[2 * i + 1] = y->number;
    }
    if (ld->coords[0] != ld->coords[2 * n - 2] || ld->coords[1] != ld->coords[2 * n - 1]) {
        fail_ring(ld, part, index, "is not closed (its first and last positions differ)");
        goto out;
    }
    rc = keep_ring(ld, n);
    if (rc < 0)
        goto out;
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

/* RINGS is the node of a GeoJSON Polygon's coordinates: [shell, hole, ...]; BH_JSON_NO_NODE if
 * none. */
static int
load_polygon(struct bh__loader *ld, uint32_t rings, long part, GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    GEOSGeometry *shell = NULL;
    GEOSGeometry **holes = NULL;
    size_t nholes = 0;
    size_t nrings;
    uint32_t ring;
    int rc = -EINVAL;

    *out = NULL;
    if (rings == BH_JSON_NO_NODE || ld->js.nodes[rings].kind != BH_JSON_ARRAY ||
        ld->js.nodes[rings].count == 0) {
        if (part < 0)
            bh__fail(ld, "the Polygon has no rings");
        else
            bh__fail(ld, "polygon %ld of the MultiPolygon has no rings", part);
        goto out;
    }
    nrings = ld->js.nodes[rings].count;
    if (nrings > 1) {
        holes = calloc(nrings - 1, sizeof(*holes));
        if (!holes) {
            rc = -ENOMEM;
            bh__fail(ld, "out of memory");
            goto out;
        }
    }
    ring = rings + 1;
    rc = load_ring(ld, ring, part, 0, &shell);
    if (rc < 0)
        goto out;
    for (size_t r = 1; r < nrings; r++) {
        ring = ld->js.nodes[ring].next;
        rc = load_ring(ld, ring, part, r, &holes[nholes]);
        if (rc < 0)
            goto out;
        nholes++;
    }
    rc = -EIO;
    *out = GEOSGeom_createPolygon_r(geos, shell, holes, (unsigned int)nholes);
    shell = NULL; /* GEOS owns the rings now, even if it failed */
    nholes = 0;
    if (!*out) {
        bh__fail(ld, "GEOS: %s", ld->map->geos_msg);
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
load_geometry(struct bh__loader *ld, const struct feature *f, GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    uint32_t coords = f->coordinates ? 0 : BH_JSON_NO_NODE;
    const char *type = ld->type_text.data;
    GEOSGeometry **parts = NULL;
    size_t nparts = 0;
    size_t n;
    uint32_t part;
    int rc = -EINVAL;

    *out = NULL;
    if (!f->geometry_object) {
        bh__fail(ld, "no geometry object");
        goto out;
    }
    if (f->type != IS_STRING) {
        bh__fail(ld, "the geometry has no type");
        goto out;
    }
    if (strcmp(type, "Polygon") == 0) {
        rc = load_polygon(ld, coords, -1, out);
        goto out;
    }
    if (strcmp(type, "MultiPolygon") != 0) {
        bh__fail(ld, "geometry type %.40s is not supported (only Polygon and MultiPolygon)", type);
        goto out;
    }
    if (coords == BH_JSON_NO_NODE || ld->js.nodes[coords].kind != BH_JSON_ARRAY ||
        ld->js.nodes[coords].count == 0) {
        bh__fail(ld, "the MultiPolygon has no polygons");
        goto out;
    }
    n = ld->js.nodes[coords].count;
    parts = calloc(n, sizeof(*parts));
    if (!parts) {
        rc = -ENOMEM;
        bh__fail(ld, "out of memory");
        goto out;
    }
    part = coords + 1;
    for (size_t i = 0; i < n; i++, part = ld->js.nodes[part].next) {
        rc = load_polygon(ld, part, (long)i, &parts[nparts]);
        if (rc < 0)
            goto out;
        nparts++;
    }
    rc = -EIO;
    *out = GEOSGeom_createCollection_r(geos, GEOS_MULTIPOLYGON, parts, (unsigned int)nparts);
    nparts = 0; /* GEOS owns the polygons now, even if it failed */
    if (!*out) {
        bh__fail(ld, "GEOS: %s", ld->map->geos_msg);
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
check_valid(struct bh__loader *ld, const GEOSGeometry *geom)
{
    GEOSContextHandle_t geos = ld->map->geos;
    GEOSGeometry *location = NULL;
    char *reason = NULL;
    double x = NAN;
    double y = NAN;
    char valid;
    int rc = 0;

    /* The details cost no more, but are only wanted for a failure. */
    valid = GEOSisValid_r(geos, geom);
    if (valid == 0 && GEOSisValidDetail_r(geos, geom, 0, &reason, &location) == 2)
        valid = 2;
    if (valid == 2) {
        rc = -EIO;
        bh__fail(ld, "GEOS cannot check the polygon: %s", ld->map->geos_msg);
        goto out;
    }
    if (!valid) {
        rc = -EINVAL;
        if (location) {
            GEOSGeomGetX_r(geos, location, &x);
            GEOSGeomGetY_r(geos, location, &y);
        }
        bh__fail(ld, "invalid polygon: %s at %.9g %.9g", reason ? reason : "unknown reason", x, y);
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
add_string(struct bh__loader *ld, const char *s, size_t len, size_t *off)
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
            bh__fail(ld, "out of memory");
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

/* Adds one block from one feature as read. */
static int
load_feature(struct bh__loader *ld, const struct feature *f)
{
    struct bh_blockmap *map = ld->map;
    struct bh__block *b;
    int rc = -EINVAL;

    if (f->id == ABSENT || f->id == IS_NULL) {
        bh__fail(ld, " has no properties.block_id");
        goto out;
    }
    if (f->id != IS_STRING || ld->id_text.len == 0) {
        bh__fail(ld, "properties.block_id is not a non-empty string");
        goto out;
    }
    ld->id = ld->id_text.data;
    if (ld->id_text.len > UINT32_MAX) {
        bh__fail(ld, "properties.block_id is too long");
        goto out;
    }
    if (f->name == IS_OTHER) {
        bh__fail(ld, "properties.name is not a string");
        goto out;
    }
    if (f->unit == IS_OTHER) {
        bh__fail(ld, "properties.unit is not a string");
        goto out;
    }
    if (map->count == ld->blocks_cap) {
        size_t cap = ld->blocks_cap ? ld->blocks_cap * 2 : 256;
        struct bh__block *blocks = realloc(map->blocks, cap * sizeof(*blocks));

        if (!blocks) {
            rc = -ENOMEM;
            bh__fail(ld, "out of memory");
            goto out;
        }
        map->blocks = blocks;
        ld->blocks_cap = cap;
    }
    b = &map->blocks[map->count];
    memset(b, 0, sizeof(*b));
    b->feature = ld->feature;
    b->id_len = ld->id_text.len;
    rc = begin_shape(ld);
    if (rc < 0)
        goto out;
    b->shape = (uint32_t)ld->shape;
    rc = load_geometry(ld, f, &b->geom);
    if (rc < 0)
        goto out;
    /* A block with many positions is left to GEOS: its record says it has no rings. */
    b->nrings = map->shapes[b->shape].u[1];
    if (ld->shape_points > RING_TEST_MAX_POSITIONS)
        map->shapes[b->shape].u[1] = 0;
    map->count++; /* from here on bh_blockmap_free owns b->geom */
    rc = check_valid(ld, b->geom);
    if (rc < 0)
        goto out;
    rc = add_string(ld, ld->id_text.data, b->id_len, &b->id_off);
    if (rc < 0)
        goto out;
    rc = add_string(ld, f->name == IS_STRING ? ld->name_text.data : "",
                    f->name == IS_STRING ? ld->name_text.len : 0, &b->name_off);
    if (rc < 0)
        goto out;
    b->unit_off = SIZE_MAX;
    if (f->unit == IS_STRING && ld->unit_text.len > 0)
        rc = add_string(ld, ld->unit_text.data, ld->unit_text.len, &b->unit_off);
    if (rc < 0)
        goto out;
    rc = -EIO;
    b->prep = GEOSPrepare_r(map->geos, b->geom);
    if (!b->prep) {
        bh__fail(ld, "GEOS cannot prepare the geometry: %s", map->geos_msg);
        goto out;
    }
    rc = 0;
out:
    ld->id = NULL;
    return rc;
}

/* ---- the top-level object ---- */

/* At the '[' of "features": reads and loads every feature, one at a time. */
static int
load_features(struct bh__loader *ld)
{
    struct feature f;
    int rc = 0;

    ld->js.p++;
    bh_json_skip_space(&ld->js);
    if (bh_json_at(&ld->js, ']')) {
        ld->js.p++;
        goto out;
    }
    for (ld->feature = 0;; ld->feature++) {
        bh_json_skip_space(&ld->js);
        if (bh_json_at(&ld->js, '{')) {
            rc = read_feature(ld, &f);
            if (rc == 0)
                rc = load_feature(ld, &f);
        } else if (bh_json_at(&ld->js, '[')) {
            rc = bh_json_value(&ld->js, false);
            if (rc == 0) {
                rc = -EINVAL;
                bh__fail(ld, " is not an object");
            }
        } else if (ld->js.p < ld->js.end && bh_json_starts_value(*ld->js.p)) {
            rc = -EINVAL;
            bh__fail(ld, " is not an object");
        } else {
            rc = bh_json_unexpected(&ld->js);
        }
        if (rc < 0)
            goto out;
        bh_json_skip_space(&ld->js);
        if (bh_json_at(&ld->js, ']')) {
            ld->js.p++;
            break;
        }
        if (!bh_json_at(&ld->js, ',')) {
            rc = bh_json_comma_expected(&ld->js, ']');
            goto out;
        }
        ld->js.p++;
    }
out:
    ld->feature = SIZE_MAX;
    return rc;
}

/* The document: an object with "type": "FeatureCollection" and "features": [...]. */
static int
load_document(struct bh__loader *ld)
{
    bool collection = false;
    bool features = false;
    bool first = true;
    int rc;

    bh_json_skip_space(&ld->js);
    if (!bh_json_at(&ld->js, '{')) {
        /* Say whether it is JSON at all. */
        rc = bh_json_value(&ld->js, false);
        if (rc < 0)
            goto out;
        rc = -EINVAL;
        bh_json_skip_space(&ld->js);
        if (ld->js.p < ld->js.end)
            bh_json_syntax(&ld->js, ld->js.p, "end of input expected");
        else
            bh__fail(ld, "not a GeoJSON FeatureCollection");
        goto out;
    }
    while ((rc = bh_json_next_member(&ld->js, &first)) > 0) {
        if (bh_json_key_is(&ld->js, "features")) {
            rc = -EINVAL;
            if (features) {
                bh__fail(ld, "more than one \"features\" member");
                goto out;
            }
            features = true;
            if (!bh_json_at(&ld->js, '[')) {
                bh__fail(ld, "the FeatureCollection has no features array");
                goto out;
            }
            rc = load_features(ld);
        } else if (bh_json_key_is(&ld->js, "type")) {
            collection = bh_json_at(&ld->js, '"');
            if (collection) {
                rc = bh_json_string(&ld->js, &ld->type_text);
                collection = rc == 0 && strcmp(ld->type_text.data, "FeatureCollection") == 0;
            } else {
                rc = bh_json_value(&ld->js, false);
            }
        } else {
            rc = bh_json_value(&ld->js, false);
        }
        if (rc < 0)
            goto out;
    }
    if (rc < 0)
        goto out;
    rc = -EINVAL;
    bh_json_skip_space(&ld->js);
    if (ld->js.p < ld->js.end) {
        bh_json_syntax(&ld->js, ld->js.p, "end of input expected");
        goto out;
    }
    if (!collection) {
        bh__fail(ld, "not a GeoJSON FeatureCollection");
        goto out;
    }
    if (!features) {
        bh__fail(ld, "the FeatureCollection has no features array");
        goto out;
    }
    if (ld->map->count == 0) {
        bh__fail(ld, "the FeatureCollection has no features");
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/* ---- indexes ---- */

/* After sorting: points the blocks at their strings, refuses duplicates, fills the hash table. */
static int
build_index(struct bh__loader *ld)
{
    struct bh_blockmap *map = ld->map;
    size_t nslots = 16;
    int rc = 0;

    for (size_t i = 0; i < map->count; i++) {
        map->blocks[i].pub.id = map->strings + map->blocks[i].id_off;
        map->blocks[i].pub.name = map->strings + map->blocks[i].name_off;
        map->blocks[i].pub.unit =
            map->blocks[i].unit_off == SIZE_MAX ? NULL : map->strings + map->blocks[i].unit_off;
    }
    qsort(map->blocks, map->count, sizeof(*map->blocks), compare_blocks);
    for (size_t i = 1; i < map->count; i++) {
        const struct bh__block *a = &map->blocks[i - 1];
        const struct bh__block *b = &map->blocks[i];

        if (compare_blocks(a, b) == 0) {
            rc = -EINVAL;
            bh__fail(ld, "duplicate block_id \"%s\" (features[%zu] and features[%zu])", b->pub.id,
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
        bh__fail(ld, "out of memory");
        goto out;
    }
    map->slot_mask = nslots - 1;
    for (size_t i = 0; i < map->count; i++) {
        const struct bh__block *b = &map->blocks[i];
        size_t s = bh__hash_id(b->pub.id, b->id_len) & map->slot_mask;

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

static void
find_bounds(struct bh_blockmap *map)
{
    map->min_lon = map->min_lat = INFINITY;
    map->max_lon = map->max_lat = -INFINITY;
    for (size_t i = 0; i < map->count; i++)
        widen_bounds(map, map->blocks[i].geom);
}

/* ---- public ---- */

static void
loader_free(struct bh__loader *ld)
{
    bh_json_scan_free(&ld->js);
    free(ld->coords);
    free(ld->id_text.data);
    free(ld->name_text.data);
    free(ld->type_text.data);
    free(ld->unit_text.data);
}

int
bh_blockmap_load_string(struct bh_blockmap **out, const char *name, const char *json, size_t len,
                        char *errstr, size_t errstr_size)
{
    struct bh__loader ld = {.feature = SIZE_MAX};
    struct bh_blockmap *map = NULL;
    int rc = -EINVAL;

    name = name ? name : "block map";
    bh_json_scan_init(&ld.js, name, json, len, errstr, errstr_size);
    ld.js.out_of_memory = on_out_of_memory;
    if (!out || (!json && len > 0)) {
        bh_json_set_error(errstr, errstr_size, "%s: invalid arguments", name);
        goto out;
    }
    *out = NULL;
    rc = -ENOMEM;
    map = calloc(1, sizeof(*map));
    if (!map) {
        bh_json_set_error(errstr, errstr_size, "%s: out of memory", name);
        goto out;
    }
    ld.map = map;
    map->geos = GEOS_init_r();
    if (!map->geos) {
        bh_json_set_error(errstr, errstr_size, "%s: GEOS_init_r failed", name);
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
    find_bounds(map);
    rc = bh__build_grid(&ld);
    if (rc < 0)
        goto out;
    *out = map;
    map = NULL;
out:
    loader_free(&ld);
    bh_blockmap_free(map);
    return rc;
}

int
bh_blockmap_check_json(const char *name, const char *json, size_t len, char *errstr,
                       size_t errstr_size)
{
    struct bh_json_scan js;
    int rc = -EINVAL;

    name = name ? name : "block map";
    bh_json_scan_init(&js, name, json, len, errstr, errstr_size);
    if (!json && len > 0)
        bh_json_set_error(errstr, errstr_size, "%s: invalid arguments", name);
    else
        rc = bh_json_check(&js);
    bh_json_scan_free(&js);
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
        bh_json_set_error(errstr, errstr_size, "block map: invalid arguments");
        goto out;
    }
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = -errno;
        bh_json_set_error(errstr, errstr_size, "%s: %s", path, strerror_r(-rc, ebuf, sizeof(ebuf)));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        bh_json_set_error(errstr, errstr_size, "%s: not a regular file", path);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = -ENOMEM;
        bh_json_set_error(errstr, errstr_size, "%s: out of memory", path);
        goto out;
    }
    while (len < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            bh_json_set_error(errstr, errstr_size, "%s: %s", path,
                              strerror_r(-rc, ebuf, sizeof(ebuf)));
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
