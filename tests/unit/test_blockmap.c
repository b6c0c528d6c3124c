/*
 * The block map: loading, lookup by id, point in polygon, the full resolve
 * rule, and the refusal of bad maps.
 *
 * Expected blocks are computed here independently of GEOS: the GeoJSON file is
 * parsed again with jansson and points are tested against its rings with a
 * plain crossing-number test (or chosen to be a vertex / inside a convex ring).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "blockmap.h"
#include "blockmap_test.h"

struct world {
    struct bh_blockmap *map;
    json_t *geojson; /* blocks.geojson parsed by the test itself */
    const json_t *features;
};

static char *
world_path(const char *rel)
{
    const char *dir = getenv("BH_WORLD_DIR");
    char *path = NULL;

    if (!dir) {
        fail_msg("BH_WORLD_DIR is not set (ctest sets it to tests/data/world)");
    }
    assert_true(asprintf(&path, "%s/%s", dir, rel) > 0);
    return path;
}

static char *
slurp(const char *rel, size_t *len)
{
    char *path = world_path(rel);
    FILE *f = fopen(path, "rb");
    char *buf;
    long size;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    buf[size] = '\0';
    fclose(f);
    free(path);
    if (len)
        *len = (size_t)size;
    return buf;
}

/* ---- the independent geometry: crossing number over the file's rings ---- */

static double
pos_x(const json_t *ring, size_t i)
{
    return json_number_value(json_array_get(json_array_get(ring, i), 0));
}

static double
pos_y(const json_t *ring, size_t i)
{
    return json_number_value(json_array_get(json_array_get(ring, i), 1));
}

static bool
ring_contains(const json_t *ring, double x, double y)
{
    size_t n = json_array_size(ring);
    bool in = false;

    for (size_t i = 0, j = n - 1; i < n; j = i++) {
        double xi = pos_x(ring, i), yi = pos_y(ring, i);
        double xj = pos_x(ring, j), yj = pos_y(ring, j);

        if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi)
            in = !in;
    }
    return in;
}

static bool
polygon_contains(const json_t *rings, double x, double y)
{
    if (!ring_contains(json_array_get(rings, 0), x, y))
        return false;
    for (size_t h = 1; h < json_array_size(rings); h++) {
        if (ring_contains(json_array_get(rings, h), x, y))
            return false;
    }
    return true;
}

static bool
feature_contains(const json_t *feature, double x, double y)
{
    const json_t *geometry = json_object_get(feature, "geometry");
    const char *type = json_string_value(json_object_get(geometry, "type"));
    const json_t *coords = json_object_get(geometry, "coordinates");

    if (strcmp(type, "Polygon") == 0)
        return polygon_contains(coords, x, y);
    for (size_t p = 0; p < json_array_size(coords); p++) {
        if (polygon_contains(json_array_get(coords, p), x, y))
            return true;
    }
    return false;
}

static const char *
feature_id(const json_t *feature)
{
    return json_string_value(json_object_get(json_object_get(feature, "properties"), "block_id"));
}

static const json_t *
feature_by_id(const struct world *w, const char *id)
{
    for (size_t i = 0; i < json_array_size(w->features); i++) {
        if (strcmp(feature_id(json_array_get(w->features, i)), id) == 0)
            return json_array_get(w->features, i);
    }
    return NULL;
}

/* The smallest id among the features whose interior holds (x, y), or NULL. */
static const char *
naive_locate(const struct world *w, double x, double y)
{
    const char *best = NULL;

    for (size_t i = 0; i < json_array_size(w->features); i++) {
        const json_t *f = json_array_get(w->features, i);

        if (feature_contains(f, x, y) && (!best || strcmp(feature_id(f), best) < 0))
            best = feature_id(f);
    }
    return best;
}

/* The vertex mean of a ring, without its closing position. */
static void
ring_mean(const json_t *ring, double *x, double *y)
{
    size_t n = json_array_size(ring) - 1;

    *x = *y = 0;
    for (size_t i = 0; i < n; i++) {
        *x += pos_x(ring, i);
        *y += pos_y(ring, i);
    }
    *x /= (double)n;
    *y /= (double)n;
}

static bool
ring_is_convex(const json_t *ring)
{
    size_t n = json_array_size(ring) - 1;
    int sign = 0;

    for (size_t i = 0; i < n; i++) {
        size_t j = (i + 1) % n, k = (i + 2) % n;
        double c = (pos_x(ring, j) - pos_x(ring, i)) * (pos_y(ring, k) - pos_y(ring, i)) -
                   (pos_y(ring, j) - pos_y(ring, i)) * (pos_x(ring, k) - pos_x(ring, i));
        int s = (c > 0) - (c < 0);

        if (s == 0 || (sign != 0 && s != sign))
            return false;
        sign = s;
    }
    return true;
}

static void
assert_located(const struct bh_blockmap *map, double lon, double lat, const char *expected)
{
    const struct bh_block *b = bh_blockmap_locate(map, lon, lat);

    if (!expected) {
        if (b)
            fail_msg("(%.9g, %.9g): expected no block, got %s", lon, lat, b->id);
        return;
    }
    if (!b)
        fail_msg("(%.9g, %.9g): expected %s, got no block", lon, lat, expected);
    if (strcmp(b->id, expected) != 0)
        fail_msg("(%.9g, %.9g): expected %s, got %s", lon, lat, expected, b->id);
}

/* ---- fixtures ---- */

static int
world_setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    char *path = world_path("blocks.geojson");
    char err[256] = "";
    json_error_t jerr;
    int rc;

    assert_non_null(w);
    rc = bh_blockmap_load(&w->map, path, err, sizeof(err));
    if (rc != 0)
        fail_msg("loading %s: %d %s", path, rc, err);
    w->geojson = json_load_file(path, 0, &jerr);
    assert_non_null(w->geojson);
    w->features = json_object_get(w->geojson, "features");
    free(path);
    *state = w;
    return 0;
}

static int
world_teardown(void **state)
{
    struct world *w = *state;

    bh_blockmap_free(w->map);
    json_decref(w->geojson);
    free(w);
    return 0;
}

/* ---- the world map ---- */

static void
test_count(void **state)
{
    struct world *w = *state;

    assert_int_equal(bh_blockmap_count(w->map), 121);
    assert_int_equal(json_array_size(w->features), 121);
}

static void
test_ids_sorted(void **state)
{
    struct world *w = *state;
    size_t n = bh_blockmap_count(w->map);

    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(bh_blockmap_at(w->map, i - 1)->id, bh_blockmap_at(w->map, i)->id) < 0);
    assert_null(bh_blockmap_at(w->map, n));
    assert_string_equal(bh_blockmap_at(w->map, 0)->id, "440303-001");
    assert_string_equal(bh_blockmap_at(w->map, n - 1)->id, "440303-121");
}

static void
test_names_utf8(void **state)
{
    struct world *w = *state;

    for (size_t i = 0; i < json_array_size(w->features); i++) {
        const json_t *f = json_array_get(w->features, i);
        const char *id = feature_id(f);
        const char *name =
            json_string_value(json_object_get(json_object_get(f, "properties"), "name"));
        const struct bh_block *b = bh_blockmap_find(w->map, id, strlen(id));

        assert_non_null(b);
        assert_string_equal(b->id, id);
        assert_string_equal(b->name, name);
    }
    /* Byte for byte, as UTF-8. */
    assert_memory_equal(bh_blockmap_find(w->map, "440303-001", 10)->name,
                        "\xe9\xbb\x84\xe8\xb4\x9d\xe8\xa1\x97\xe9\x81\x93\xe7\xac\xac"
                        "01\xe7\xbd\x91\xe6\xa0\xbc",
                        sizeof("黄贝街道第01网格"));
    assert_string_equal(bh_blockmap_find(w->map, "440303-121", 10)->name, "莲塘街道飞地网格");
}

static void
test_find(void **state)
{
    struct world *w = *state;
    const char buf[] = "440303-0012";

    assert_string_equal(bh_blockmap_find(w->map, "440303-047", 10)->id, "440303-047");
    /* Only LEN bytes count, and the id need not be NUL-terminated. */
    assert_string_equal(bh_blockmap_find(w->map, buf, 10)->id, "440303-001");
    assert_null(bh_blockmap_find(w->map, buf, 11));
    assert_null(bh_blockmap_find(w->map, "440303-01", 9));
    assert_null(bh_blockmap_find(w->map, "440303-122", 10));
    assert_null(bh_blockmap_find(w->map, "", 0));
    assert_null(bh_blockmap_find(w->map, NULL, 0));
    assert_null(bh_blockmap_find(NULL, "440303-001", 10));
}

static void
test_resolve_rule(void **state)
{
    struct world *w = *state;
    const json_t *f = feature_by_id(w, "440303-001");
    double x, y;

    ring_mean(json_array_get(json_object_get(json_object_get(f, "geometry"), "coordinates"), 0), &x,
              &y);
    /* A known grid code wins over the point. */
    assert_string_equal(bh_blockmap_resolve(w->map, "440303-047", 10, true, x, y)->id,
                        "440303-047");
    assert_string_equal(bh_blockmap_resolve(w->map, "440303-047", 10, false, 0, 0)->id,
                        "440303-047");
    /* An unknown grid code falls back to the point. */
    assert_string_equal(bh_blockmap_resolve(w->map, "440303-999", 10, true, x, y)->id,
                        "440303-001");
    assert_string_equal(bh_blockmap_resolve(w->map, "", 0, true, x, y)->id, "440303-001");
    assert_string_equal(bh_blockmap_resolve(w->map, NULL, 0, true, x, y)->id, "440303-001");
    /* An unknown grid code and no point: unresolved, whatever lon/lat hold. */
    assert_null(bh_blockmap_resolve(w->map, "440303-999", 10, false, x, y));
    assert_null(bh_blockmap_resolve(w->map, NULL, 0, false, x, y));
    /* Unknown grid code and a point outside every block. */
    assert_null(bh_blockmap_resolve(w->map, "440303-999", 10, true, 0, 0));
}

static void
test_convex_centroids(void **state)
{
    struct world *w = *state;
    size_t checked = 0;

    for (size_t i = 0; i < json_array_size(w->features); i++) {
        const json_t *f = json_array_get(w->features, i);
        const json_t *g = json_object_get(f, "geometry");
        const json_t *shell = json_array_get(json_object_get(g, "coordinates"), 0);
        double x, y;

        if (strcmp(json_string_value(json_object_get(g, "type")), "Polygon") != 0 ||
            !ring_is_convex(shell))
            continue;
        ring_mean(shell, &x, &y);
        assert_located(w->map, x, y, feature_id(f));
        checked++;
    }
    assert_int_equal(checked, 120);
}

static void
test_multipolygon_parts(void **state)
{
    struct world *w = *state;
    const json_t *f = feature_by_id(w, "440303-121");
    const json_t *g = json_object_get(f, "geometry");
    const json_t *parts = json_object_get(g, "coordinates");
    double x0, y0, x1, y1;

    assert_string_equal(json_string_value(json_object_get(g, "type")), "MultiPolygon");
    assert_int_equal(json_array_size(parts), 2);
    ring_mean(json_array_get(json_array_get(parts, 0), 0), &x0, &y0);
    ring_mean(json_array_get(json_array_get(parts, 1), 0), &x1, &y1);
    assert_located(w->map, x0, y0, "440303-121");
    assert_located(w->map, x1, y1, "440303-121");
    /* Halfway between the two parts is in neither. */
    assert_null(naive_locate(w, (x0 + x1) / 2, (y0 + y1) / 2));
    assert_located(w->map, (x0 + x1) / 2, (y0 + y1) / 2, NULL);
    /* A corner of each part: on the boundary, so covered. */
    for (size_t p = 0; p < 2; p++) {
        const json_t *shell = json_array_get(json_array_get(parts, p), 0);

        assert_located(w->map, pos_x(shell, 0), pos_y(shell, 0), "440303-121");
    }
}

static void
test_outside(void **state)
{
    struct world *w = *state;
    double min_lon, min_lat, max_lon, max_lat;

    assert_located(w->map, 0, 0, NULL);
    assert_located(w->map, 114.0, 22.0, NULL);
    assert_located(w->map, -74.006, 40.7128, NULL);
    assert_located(w->map, 180, 90, NULL);
    assert_located(w->map, -180, -90, NULL);
    assert_located(w->map, 22.55, 114.1, NULL); /* lat/lon swapped */
    assert_located(w->map, NAN, 22.55, NULL);
    assert_located(w->map, 114.1, INFINITY, NULL);
    bh_blockmap_bounds(w->map, &min_lon, &min_lat, &max_lon, &max_lat);
    assert_true(min_lon == 114.085 && min_lat == 22.535 && max_lon == 114.209 && max_lat == 22.605);
    assert_located(w->map, nextafter(min_lon, 0), 22.54, NULL);
    assert_located(w->map, 114.1, nextafter(max_lat, 90), NULL);
    assert_located(w->map, 114.1, nextafter(min_lat, 0), NULL);
}

static void
test_outside_traffic_sample(void **state)
{
    struct world *w = *state;
    char *text = slurp("samples/traffic/gateway.ndjson", NULL);
    char *save = NULL;
    size_t records = 0, unresolved = 0;
    bool found = false;

    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *r = json_loads(line, 0, NULL);
        const char *id = json_string_value(json_object_get(r, "event_id"));
        const json_t *lon = json_object_get(r, "lon");
        const json_t *lat = json_object_get(r, "lat");
        const struct bh_block *b;

        if (!id || !json_is_number(lon) || !json_is_number(lat)) {
            json_decref(r); /* the heartbeat and the cut-off line */
            continue;
        }
        records++;
        b = bh_blockmap_resolve(w->map, NULL, 0, true, json_number_value(lon),
                                json_number_value(lat));
        if (strcmp(id, "JJ-20261127-000028") == 0) {
            found = true;
            assert_null(naive_locate(w, json_number_value(lon), json_number_value(lat)));
        }
        if (!b) {
            unresolved++;
            assert_string_equal(id, "JJ-20261127-000028");
        } else {
            const char *expected = naive_locate(w, json_number_value(lon), json_number_value(lat));

            assert_non_null(expected);
            assert_string_equal(b->id, expected);
        }
        json_decref(r);
    }
    assert_true(found);
    assert_true(records > 20);
    assert_int_equal(unresolved, 1);
    free(text);
}

static void
test_outside_market_sample(void **state)
{
    struct world *w = *state;
    /* GBK text, but the record id and the numbers are ASCII. */
    char *text = slurp("samples/market/scjg_20261127_0800.csv", NULL);
    const char *row = strstr(text, "\nSCJG-2026-000021,");
    char *fields[11];
    char *copy, *end, *p;
    size_t nf = 0;
    double lon, lat;

    assert_non_null(row);
    row++;
    end = strchr(row, '\n');
    copy = strndup(row, end ? (size_t)(end - row) : strlen(row));
    assert_non_null(copy);
    for (p = copy; nf < 11; nf++) {
        fields[nf] = p;
        p = strchr(p, ',');
        if (!p) {
            nf++;
            break;
        }
        *p++ = '\0';
    }
    assert_int_equal(nf, 11);           /* 记录编号 ... 经度, 纬度, 发生时间 */
    assert_string_equal(fields[7], ""); /* 网格编码 */
    lon = strtod(fields[8], NULL);
    lat = strtod(fields[9], NULL);
    assert_true(lon > 100 && lat > 10);
    assert_null(naive_locate(w, lon, lat));
    assert_null(bh_blockmap_resolve(w->map, NULL, 0, true, lon, lat));
    free(copy);
    free(text);
}

static void
test_fire_sample(void **state)
{
    struct world *w = *state;
    char *path = world_path("samples/fire/webhook-batch.json");
    json_t *batch = json_load_file(path, 0, NULL);
    size_t by_grid = 0, by_point = 0;

    assert_true(json_is_array(batch));
    for (size_t i = 0; i < json_array_size(batch); i++) {
        const json_t *item = json_array_get(batch, i);
        const json_t *grid = json_object_get(item, "grid_code");
        const json_t *loc = json_object_get(item, "location");
        const struct bh_block *b;

        if (json_is_string(grid)) {
            b = bh_blockmap_resolve(w->map, json_string_value(grid), json_string_length(grid),
                                    false, 0, 0);
            assert_non_null(b);
            assert_string_equal(b->id, json_string_value(grid));
            assert_non_null(feature_by_id(w, json_string_value(grid)));
            by_grid++;
        } else {
            double lon = json_number_value(json_object_get(loc, "lng"));
            double lat = json_number_value(json_object_get(loc, "lat"));
            const char *expected = naive_locate(w, lon, lat);

            assert_true(json_is_object(loc));
            b = bh_blockmap_resolve(w->map, NULL, 0, true, lon, lat);
            if (!b)
                fail_msg("fire item %zu (%.6f, %.6f) is outside every block", i, lon, lat);
            assert_non_null(expected);
            assert_string_equal(b->id, expected);
            by_point++;
        }
    }
    /* No fire sample lies outside: five by grid code, five by point. */
    assert_int_equal(by_grid, 5);
    assert_int_equal(by_point, 5);
    json_decref(batch);
    free(path);
}

static void
test_shared_vertices(void **state)
{
    struct world *w = *state;
    size_t shared = 0, checked = 0;

    /* Every vertex of every polygon: the smallest id among the blocks with that vertex. */
    for (size_t i = 0; i < json_array_size(w->features); i++) {
        const json_t *g = json_object_get(json_array_get(w->features, i), "geometry");
        const json_t *shell;

        if (strcmp(json_string_value(json_object_get(g, "type")), "Polygon") != 0)
            continue;
        shell = json_array_get(json_object_get(g, "coordinates"), 0);
        for (size_t v = 0; v + 1 < json_array_size(shell); v++) {
            double x = pos_x(shell, v), y = pos_y(shell, v);
            const char *best = NULL;
            size_t owners = 0;

            for (size_t j = 0; j < json_array_size(w->features); j++) {
                const json_t *f = json_array_get(w->features, j);
                const json_t *gj = json_object_get(f, "geometry");
                const json_t *sj;

                if (strcmp(json_string_value(json_object_get(gj, "type")), "Polygon") != 0)
                    continue;
                sj = json_array_get(json_object_get(gj, "coordinates"), 0);
                for (size_t u = 0; u + 1 < json_array_size(sj); u++) {
                    if (pos_x(sj, u) == x && pos_y(sj, u) == y) {
                        owners++;
                        if (!best || strcmp(feature_id(f), best) < 0)
                            best = feature_id(f);
                        break;
                    }
                }
            }
            assert_located(w->map, x, y, best);
            shared += owners > 1;
            checked++;
        }
    }
    assert_true(checked >= 480);
    assert_true(shared > 100); /* the district is a tiling: most vertices are shared */
}

static void
test_random_points_match_naive(void **state)
{
    struct world *w = *state;
    double min_lon, min_lat, max_lon, max_lat;
    uint64_t seed = 20261127;
    size_t inside = 0, outside = 0;

    bh_blockmap_bounds(w->map, &min_lon, &min_lat, &max_lon, &max_lat);
    for (int i = 0; i < 20000; i++) {
        double u, v, lon, lat;

        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        u = (double)(seed >> 11) / 9007199254740992.0;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v = (double)(seed >> 11) / 9007199254740992.0;
        lon = min_lon - 0.01 + u * (max_lon - min_lon + 0.02);
        lat = min_lat - 0.01 + v * (max_lat - min_lat + 0.02);
        assert_located(w->map, lon, lat, naive_locate(w, lon, lat));
        if (bh_blockmap_locate(w->map, lon, lat))
            inside++;
        else
            outside++;
    }
    assert_true(inside > 10000);
    assert_true(outside > 1000);
}

/* ---- the lookup grid against the plain lookup ---- */

static double
random_unit(uint64_t *seed)
{
    *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*seed >> 11) / 9007199254740992.0;
}

/* Both lookups give the same answer (the same block, or none) for (lon, lat). */
static void
assert_same_as_slow(const struct bh_blockmap *map, double lon, double lat)
{
    const struct bh_block *fast = bh_blockmap_locate(map, lon, lat);
    const struct bh_block *slow = bh_blockmap_locate_slow(map, lon, lat);

    if (fast != slow)
        fail_msg("(%.17g, %.17g): the grid says %s, the STRtree and GEOS say %s", lon, lat,
                 fast ? fast->id : "no block", slow ? slow->id : "no block");
}

/*
 * N random points over the map's bounds widened by 2%; half of them have a
 * coordinate on a line between two columns or rows of the grid's cells (a
 * fifth of those one unit in the last place off it). Returns how many are
 * in a block.
 */
static size_t
compare_random_points(const struct bh_blockmap *map, size_t n, uint64_t seed)
{
    struct bh_blockmap_grid_info info;
    double min_lon, min_lat, max_lon, max_lat, w, h;
    size_t inside = 0;

    bh_blockmap_bounds(map, &min_lon, &min_lat, &max_lon, &max_lat);
    bh_blockmap_grid_info(map, &info);
    assert_true(info.cols > 0 && info.rows > 0);
    w = max_lon - min_lon;
    h = max_lat - min_lat;
    for (size_t i = 0; i < n; i++) {
        double lon = min_lon - 0.01 * w + random_unit(&seed) * 1.02 * w;
        double lat = min_lat - 0.01 * h + random_unit(&seed) * 1.02 * h;
        double pick = random_unit(&seed);

        if (pick < 0.25) {
            double line = floor(random_unit(&seed) * (double)(info.cols + 1));

            lon = min_lon + line * (w / (double)info.cols);
            if (pick < 0.05)
                lon = nextafter(lon, pick < 0.025 ? -INFINITY : INFINITY);
        } else if (pick < 0.5) {
            double line = floor(random_unit(&seed) * (double)(info.rows + 1));

            lat = min_lat + line * (h / (double)info.rows);
            if (pick < 0.3)
                lat = nextafter(lat, pick < 0.275 ? -INFINITY : INFINITY);
        }
        assert_same_as_slow(map, lon, lat);
        inside += bh_blockmap_locate(map, lon, lat) != NULL;
    }
    return inside;
}

/*
 * Every vertex and every edge midpoint of every ring of FEATURES (GeoJSON),
 * each vertex also moved by one unit in the last place each way, and a point
 * at a random place along each edge (rounded, so on it or within a rounding
 * error of it). Returns how many points were compared.
 */
static size_t
compare_rings(const struct bh_blockmap *map, const json_t *features, uint64_t seed)
{
    size_t compared = 0;

    for (size_t i = 0; i < json_array_size(features); i++) {
        const json_t *g = json_object_get(json_array_get(features, i), "geometry");
        const json_t *coords = json_object_get(g, "coordinates");
        bool multi = strcmp(json_string_value(json_object_get(g, "type")), "MultiPolygon") == 0;
        size_t parts = multi ? json_array_size(coords) : 1;

        for (size_t p = 0; p < parts; p++) {
            const json_t *rings = multi ? json_array_get(coords, p) : coords;

            for (size_t r = 0; r < json_array_size(rings); r++) {
                const json_t *ring = json_array_get(rings, r);

                for (size_t v = 0; v + 1 < json_array_size(ring); v++) {
                    double x = pos_x(ring, v), y = pos_y(ring, v);
                    double x1 = pos_x(ring, v + 1), y1 = pos_y(ring, v + 1);
                    double t = random_unit(&seed);

                    assert_same_as_slow(map, x, y);
                    assert_same_as_slow(map, (x + x1) / 2, (y + y1) / 2);
                    assert_same_as_slow(map, x + t * (x1 - x), y + t * (y1 - y));
                    assert_same_as_slow(map, nextafter(x, -INFINITY), y);
                    assert_same_as_slow(map, nextafter(x, INFINITY), y);
                    assert_same_as_slow(map, x, nextafter(y, -INFINITY));
                    assert_same_as_slow(map, x, nextafter(y, INFINITY));
                    compared += 7;
                }
            }
        }
    }
    return compared;
}

static void
test_grid_matches_slow_world(void **state)
{
    struct world *w = *state;
    struct bh_blockmap_grid_info info;
    size_t inside = compare_random_points(w->map, 200000, 20261128);

    assert_true(inside > 100000);
    assert_true(compare_rings(w->map, w->features, 7) > 7 * 480);
    /* The grid answers most cells at once. */
    bh_blockmap_grid_info(w->map, &info);
    assert_true(info.owned_cells > info.list_cells);
    assert_true(info.empty_cells > 0);
}

#define TILE_COLS 40
#define TILE_ROWS 30
#define TILE      0.002
#define OVERLAPS  6

/* Rounded to 6 decimals, as block maps are. */
static double
micro(double v)
{
    return round(v * 1e6) / 1e6;
}

static void
put_position(FILE *f, double x, double y, bool comma)
{
    fprintf(f, "[%.6f,%.6f]%s", x, y, comma ? "," : "");
}

/* A closed square ring of half side HALF around (x, y), clockwise if CW. */
static void
put_square(FILE *f, double x, double y, double half, bool cw)
{
    double xs[4] = {micro(x - half), micro(x + half), micro(x + half), micro(x - half)};
    double ys[4] = {micro(y - half), micro(y - half), micro(y + half), micro(y + half)};

    fputc('[', f);
    for (int k = 0; k < 4; k++) {
        int i = cw ? (4 - k) % 4 : k;

        put_position(f, xs[i], ys[i], true);
    }
    put_position(f, xs[0], ys[0], false);
    fputc(']', f);
}

/*
 * A tiling like the department's map: TILE_COLS x TILE_ROWS cells with
 * jittered corners and bent sides shared exactly by both neighbours (some
 * rows and columns of corners left straight, for horizontal and vertical
 * edges), ids in shuffled order; every 37th tile has a hole filled by an
 * island of another tile (a MultiPolygon); and OVERLAPS rectangles laid over
 * the tiling, with ids among the tiles', so that a point in one is covered
 * by several blocks.
 */
static char *
tiling_map(uint64_t seed)
{
    static double cx[TILE_COLS + 1][TILE_ROWS + 1], cy[TILE_COLS + 1][TILE_ROWS + 1];
    static double hx[TILE_COLS][TILE_ROWS + 1], hy[TILE_COLS][TILE_ROWS + 1];
    static double vx[TILE_COLS + 1][TILE_ROWS], vy[TILE_COLS + 1][TILE_ROWS];
    static bool hbent[TILE_COLS][TILE_ROWS + 1], vbent[TILE_COLS + 1][TILE_ROWS];
    unsigned ids[TILE_COLS * TILE_ROWS + OVERLAPS];
    size_t nids = TILE_COLS * TILE_ROWS + OVERLAPS;
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);

    assert_non_null(f);
    for (size_t k = 0; k < nids; k++)
        ids[k] = (unsigned)k + 1;
    for (size_t k = nids - 1; k > 0; k--) {
        size_t j = (size_t)(random_unit(&seed) * (double)(k + 1));
        unsigned t = ids[k];

        ids[k] = ids[j];
        ids[j] = t;
    }
    for (int i = 0; i <= TILE_COLS; i++) {
        for (int j = 0; j <= TILE_ROWS; j++) {
            double dx = i % 7 == 0 ? 0 : (random_unit(&seed) - 0.5) * 0.3;
            double dy = j % 5 == 0 ? 0 : (random_unit(&seed) - 0.5) * 0.3;

            cx[i][j] = micro(113.9 + (i + dx) * TILE);
            cy[i][j] = micro(22.5 + (j + dy) * TILE);
        }
    }
    for (int i = 0; i <= TILE_COLS; i++) {
        for (int j = 0; j <= TILE_ROWS; j++) {
            if (i < TILE_COLS) {
                hbent[i][j] = j % 5 != 0 && random_unit(&seed) < 0.5;
                hx[i][j] = micro((cx[i][j] + cx[i + 1][j]) / 2);
                hy[i][j] =
                    micro((cy[i][j] + cy[i + 1][j]) / 2 + (random_unit(&seed) - 0.5) * 0.12 * TILE);
            }
            if (j < TILE_ROWS) {
                vbent[i][j] = i % 7 != 0 && random_unit(&seed) < 0.5;
                vx[i][j] =
                    micro((cx[i][j] + cx[i][j + 1]) / 2 + (random_unit(&seed) - 0.5) * 0.12 * TILE);
                vy[i][j] = micro((cy[i][j] + cy[i][j + 1]) / 2);
            }
        }
    }
    fputs("{\"type\":\"FeatureCollection\",\"features\":[", f);
    for (int k = 0; k < TILE_COLS * TILE_ROWS; k++) {
        int i = k % TILE_COLS, j = k / TILE_COLS;
        bool host = k % 37 == 5, island = k >= 3 && (k - 3) % 37 == 5;
        double mx = (cx[i][j] + cx[i + 1][j + 1]) / 2, my = (cy[i][j] + cy[i + 1][j + 1]) / 2;

        fprintf(f,
                "%s{\"type\":\"Feature\",\"properties\":{\"block_id\":\"G-%05u\"},"
                "\"geometry\":{\"type\":\"%s\",\"coordinates\":[%s[",
                k ? "," : "", ids[k], island ? "MultiPolygon" : "Polygon", island ? "[" : "");
        /* Counter-clockwise: along the bottom, up the right, back along the top, down the left. */
        put_position(f, cx[i][j], cy[i][j], true);
        if (hbent[i][j])
            put_position(f, hx[i][j], hy[i][j], true);
        put_position(f, cx[i + 1][j], cy[i + 1][j], true);
        if (vbent[i + 1][j])
            put_position(f, vx[i + 1][j], vy[i + 1][j], true);
        put_position(f, cx[i + 1][j + 1], cy[i + 1][j + 1], true);
        if (hbent[i][j + 1])
            put_position(f, hx[i][j + 1], hy[i][j + 1], true);
        put_position(f, cx[i][j + 1], cy[i][j + 1], true);
        if (vbent[i][j])
            put_position(f, vx[i][j], vy[i][j], true);
        put_position(f, cx[i][j], cy[i][j], false);
        fputc(']', f);
        if (host) {
            fputc(',', f);
            put_square(f, mx, my, 0.1 * TILE, true);
        }
        if (island) {
            int h = k - 3, hi = h % TILE_COLS, hj = h / TILE_COLS;

            fputs("],[", f);
            put_square(f, (cx[hi][hj] + cx[hi + 1][hj + 1]) / 2,
                       (cy[hi][hj] + cy[hi + 1][hj + 1]) / 2, 0.1 * TILE, false);
        }
        fputs(island ? "]]}}" : "]}}", f);
    }
    for (int o = 0; o < OVERLAPS; o++) {
        double x0 = micro(113.9 + random_unit(&seed) * (TILE_COLS - 6) * TILE);
        double y0 = micro(22.5 + random_unit(&seed) * (TILE_ROWS - 6) * TILE);
        double x1 = micro(x0 + (1 + random_unit(&seed) * 4) * TILE);
        double y1 = micro(y0 + (1 + random_unit(&seed) * 4) * TILE);

        fprintf(f,
                ",{\"type\":\"Feature\",\"properties\":{\"block_id\":\"G-%05u\"},"
                "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[",
                ids[TILE_COLS * TILE_ROWS + o]);
        put_position(f, x0, y0, true);
        put_position(f, x1, y0, true);
        put_position(f, x1, y1, true);
        put_position(f, x0, y1, true);
        put_position(f, x0, y0, false);
        fputs("]]}}", f);
    }
    fputs("]}", f);
    assert_int_equal(fclose(f), 0);
    return out;
}

static void
test_grid_matches_slow_tiling(void **state)
{
    struct bh_blockmap *map = NULL;
    struct bh_blockmap_grid_info info;
    char *json = tiling_map(20261127);
    json_t *doc = json_loads(json, 0, NULL);
    char err[256] = "";
    int rc = bh_blockmap_load_string(&map, "tiling", json, strlen(json), err, sizeof(err));
    size_t inside;

    (void)state;
    if (rc != 0)
        fail_msg("%d %s", rc, err);
    assert_non_null(doc);
    assert_int_equal(bh_blockmap_count(map), TILE_COLS * TILE_ROWS + OVERLAPS);
    inside = compare_random_points(map, 200000, 42);
    assert_true(inside > 150000);
    assert_true(compare_rings(map, json_object_get(doc, "features"), 43) > 7 * 4 * 1200);
    bh_blockmap_grid_info(map, &info);
    assert_true(info.owned_cells > 0 && info.list_cells > 0);
    bh_blockmap_free(map);
    json_decref(doc);
    free(json);
}

/* ---- small inline maps ---- */

/* A closed square ring, as JSON text. */
#define SQUARE(x0, y0, x1, y1)                                                                     \
    "[[" #x0 "," #y0 "],[" #x1 "," #y0 "],[" #x1 "," #y1 "],[" #x0 "," #y1 "],[" #x0 "," #y0 "]]"

/*
 * Blocks with many positions, which the grid leaves to GEOS: a 150-gon, a
 * square over part of it, and a block whose top edge has 100 positions and
 * is shared with the block above it.
 */
static void
test_grid_matches_slow_many_positions(void **state)
{
    struct bh_blockmap *map = NULL;
    char *json = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&json, &size);
    json_t *doc;
    char err[256] = "";
    int rc;

    (void)state;
    assert_non_null(f);
    fputs("{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\","
          "\"properties\":{\"block_id\":\"P-2\"},\"geometry\":{\"type\":\"Polygon\","
          "\"coordinates\":[[",
          f);
    for (int i = 0; i <= 150; i++) {
        double a = 2 * M_PI * (i % 150) / 150;

        put_position(f, micro(114.1 + 0.01 * cos(a)), micro(22.55 + 0.01 * sin(a)), i < 150);
    }
    fputs("]]}},{\"type\":\"Feature\",\"properties\":{\"block_id\":\"P-1\"},"
          "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[" SQUARE(
              114.1, 22.55, 114.115, 22.565) "]}},{\"type\":\"Feature\",\"properties\":"
                                             "{\"block_id\":\"P-3\"},\"geometry\":{\"type\":"
                                             "\"Polygon\",\"coordinates\":[[",
          f);
    /* P-3: the bottom, then the top edge from right to left in 100 positions. */
    put_position(f, 114.09, 22.52, true);
    put_position(f, 114.11, 22.52, true);
    for (int i = 0; i < 100; i++)
        put_position(f, micro(114.11 - 0.02 * i / 99), micro(22.53 + 0.0005 * (i % 2)), true);
    put_position(f, 114.09, 22.52, false);
    fputs("]]}},{\"type\":\"Feature\",\"properties\":{\"block_id\":\"P-4\"},"
          "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[",
          f);
    /* P-4: the same zigzag from left to right, then up and back. */
    for (int i = 99; i >= 0; i--)
        put_position(f, micro(114.11 - 0.02 * i / 99), micro(22.53 + 0.0005 * (i % 2)), true);
    put_position(f, 114.11, 22.535, true);
    put_position(f, 114.09, 22.535, true);
    put_position(f, micro(114.11 - 0.02), micro(22.53 + 0.0005), false);
    fputs("]]}}]}", f);
    assert_int_equal(fclose(f), 0);
    doc = json_loads(json, 0, NULL);
    assert_non_null(doc);
    rc = bh_blockmap_load_string(&map, "many", json, strlen(json), err, sizeof(err));
    if (rc != 0)
        fail_msg("%d %s", rc, err);
    assert_true(compare_random_points(map, 20000, 44) > 5000);
    assert_true(compare_rings(map, json_object_get(doc, "features"), 45) > 7 * 250);
    /* Inside the 150-gon and the square: the smaller id. */
    assert_string_equal(bh_blockmap_locate(map, 114.102, 22.552)->id, "P-1");
    assert_string_equal(bh_blockmap_locate(map, 114.095, 22.545)->id, "P-2");
    bh_blockmap_free(map);
    json_decref(doc);
    free(json);
}

/*
 * A FeatureCollection from a compact description, one feature per string:
 * "ID|NAME|TYPE|COORDINATES" (TYPE "-" for no geometry), or a string starting
 * with '{' or '[' that is copied as it is.
 */
static char *
collection(const char *const *features, size_t n)
{
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);

    assert_non_null(f);
    fputs("{\"type\":\"FeatureCollection\",\"features\":[", f);
    for (size_t i = 0; i < n; i++) {
        char id[64], name[64], type[32];
        int coords_at = 0;

        if (i > 0)
            fputc(',', f);
        if (features[i][0] == '{' || features[i][0] == '[') {
            fputs(features[i], f);
            continue;
        }
        assert_int_equal(
            sscanf(features[i], "%63[^|]|%63[^|]|%31[^|]|%n", id, name, type, &coords_at), 3);
        fprintf(f, "{\"type\":\"Feature\",\"properties\":{\"block_id\":\"%s\",\"name\":\"%s\"},",
                id, name);
        if (strcmp(type, "-") == 0)
            fputs("\"geometry\":null}", f);
        else
            fprintf(f, "\"geometry\":{\"type\":\"%s\",\"coordinates\":%s}}", type,
                    features[i] + coords_at);
    }
    fputs("]}", f);
    assert_int_equal(fclose(f), 0);
    return out;
}

static struct bh_blockmap *
load_ok(const char *const *features, size_t n)
{
    struct bh_blockmap *map = NULL;
    char *json = collection(features, n);
    char err[256] = "";
    int rc = bh_blockmap_load_string(&map, "inline", json, strlen(json), err, sizeof(err));

    if (rc != 0)
        fail_msg("load failed: %d %s", rc, err);
    free(json);
    return map;
}

static void
refused_text(const char *json, int expected_rc, const char *msg1, const char *msg2)
{
    struct bh_blockmap *map = (struct bh_blockmap *)&map; /* must come back NULL */
    char err[512] = "";
    int rc = bh_blockmap_load_string(&map, "inline.geojson", json, strlen(json), err, sizeof(err));

    if (rc != expected_rc)
        fail_msg("expected %d, got %d (%s) for %s", expected_rc, rc, err, json);
    assert_null(map);
    if (!strstr(err, "inline.geojson"))
        fail_msg("message \"%s\" does not name the map", err);
    if (msg1 && !strstr(err, msg1))
        fail_msg("message \"%s\" lacks \"%s\"", err, msg1);
    if (msg2 && !strstr(err, msg2))
        fail_msg("message \"%s\" lacks \"%s\"", err, msg2);
}

static void
refused(const char *const *features, size_t n, const char *msg1, const char *msg2)
{
    char *json = collection(features, n);

    refused_text(json, -EINVAL, msg1, msg2);
    free(json);
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void
test_shared_edge_smallest_id(void **state)
{
    /* The larger id comes first in one file and last in the other. */
    const char *right_first[] = {
        "T-3|右|Polygon|[" SQUARE(1, 0, 2, 1) "]",
        "T-2|左|Polygon|[" SQUARE(0, 0, 1, 1) "]",
    };
    const char *left_first[] = {right_first[1], right_first[0]};
    const char *const *docs[] = {right_first, left_first};

    (void)state;
    for (size_t i = 0; i < COUNT(docs); i++) {
        struct bh_blockmap *map = load_ok(docs[i], 2);

        assert_int_equal(bh_blockmap_count(map), 2);
        assert_located(map, 1.0, 0.5, "T-2"); /* on the shared edge */
        assert_located(map, 1.0, 0.0, "T-2"); /* on a shared vertex */
        assert_located(map, 1.0, 1.0, "T-2");
        assert_located(map, 0.5, 0.5, "T-2");
        assert_located(map, 1.5, 0.5, "T-3");
        assert_located(map, 2.0, 0.5, "T-3"); /* outer edge: covered */
        assert_located(map, 2.0, 1.0, "T-3"); /* outer corner */
        assert_located(map, 2.0 + 1e-12, 0.5, NULL);
        assert_located(map, 1.0, 1.0 + 1e-12, NULL);
        assert_string_equal(bh_blockmap_find(map, "T-3", 3)->name, "右");
        bh_blockmap_free(map);
    }
}

static void
test_holes_and_islands(void **state)
{
    /* H-2 has a hole that a part of the MultiPolygon H-1 fills; H-3 has an empty hole. */
    const char *doc[] = {
        "H-2|有洞|Polygon|[" SQUARE(10, 10, 14, 14) "," SQUARE(11, 11, 13, 13) "]",
        "H-1|飞地|MultiPolygon|[[" SQUARE(11, 11, 13, 13) "],[" SQUARE(20, 20, 21, 21) "]]",
        "H-3|空洞|Polygon|[" SQUARE(30, 30, 34, 34) "," SQUARE(31, 31, 33, 33) "]",
    };
    struct bh_blockmap *map = load_ok(doc, COUNT(doc));

    (void)state;
    assert_int_equal(bh_blockmap_count(map), 3);
    assert_located(map, 10.5, 10.5, "H-2");
    assert_located(map, 12, 12, "H-1"); /* the island in the hole */
    assert_located(map, 11, 12, "H-1"); /* the hole's edge: both cover, smaller id */
    assert_located(map, 20.5, 20.5, "H-1");
    assert_located(map, 15, 15, NULL);  /* between the parts */
    assert_located(map, 32, 32, NULL);  /* an empty hole */
    assert_located(map, 31, 32, "H-3"); /* its edge */
    assert_located(map, 30.5, 32, "H-3");
    bh_blockmap_free(map);
}

/* ---- refusals ---- */

static void
test_refuse_not_json(void **state)
{
    (void)state;
    refused_text("", -EINVAL, "not valid JSON", NULL);
    refused_text("{\"type\":\"FeatureCollection\",", -EINVAL,
                 "inline.geojson:1:", "not valid JSON");
}

static void
test_refuse_not_feature_collection(void **state)
{
    (void)state;
    refused_text("[]", -EINVAL, "not a GeoJSON FeatureCollection", NULL);
    refused_text("{\"type\":\"Feature\",\"properties\":{\"block_id\":\"A-1\"},\"geometry\":"
                 "{\"type\":\"Polygon\",\"coordinates\":[" SQUARE(0, 0, 1, 1) "]}}",
                 -EINVAL, "not a GeoJSON FeatureCollection", NULL);
    refused_text("{\"type\":\"FeatureCollection\"}", -EINVAL, "no features array", NULL);
    refused_text("{\"type\":\"FeatureCollection\",\"features\":[]}", -EINVAL,
                 "the FeatureCollection has no features", NULL);
}

static void
test_refuse_missing_block_id(void **state)
{
    const char *no_id[] = {
        "A-1|a|Polygon|[" SQUARE(0, 0, 1, 1) "]",
        "{\"type\":\"Feature\",\"properties\":{\"name\":\"x\"},\"geometry\":"
        "{\"type\":\"Polygon\",\"coordinates\":[" SQUARE(2, 2, 3, 3) "]}}",
    };
    const char *no_properties[] = {
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":"
        "[" SQUARE(2, 2, 3, 3) "]}}",
    };
    const char *numeric_id[] = {
        "{\"type\":\"Feature\",\"properties\":{\"block_id\":17},\"geometry\":"
        "{\"type\":\"Polygon\",\"coordinates\":[" SQUARE(2, 2, 3, 3) "]}}",
    };
    const char *empty_id[] = {
        "{\"type\":\"Feature\",\"properties\":{\"block_id\":\"\"},\"geometry\":"
        "{\"type\":\"Polygon\",\"coordinates\":[" SQUARE(2, 2, 3, 3) "]}}",
    };
    const char *not_object[] = {"[1,2]"};

    (void)state;
    refused(no_id, COUNT(no_id), "features[1]", "has no properties.block_id");
    refused(no_properties, COUNT(no_properties), "features[0]", "has no properties.block_id");
    refused(numeric_id, COUNT(numeric_id), "features[0]", "block_id is not a non-empty string");
    refused(empty_id, COUNT(empty_id), "features[0]", "block_id is not a non-empty string");
    refused(not_object, COUNT(not_object), "features[0] is not an object", NULL);
}

static void
test_refuse_duplicate_block_id(void **state)
{
    const char *doc[] = {
        "A-1|a|Polygon|[" SQUARE(0, 0, 1, 1) "]",
        "A-7|b|Polygon|[" SQUARE(1, 0, 2, 1) "]",
        "A-1|c|Polygon|[" SQUARE(5, 5, 6, 6) "]",
    };

    (void)state;
    refused(doc, COUNT(doc), "duplicate block_id \"A-1\"", "features[0] and features[2]");
}

static void
test_refuse_geometry_type(void **state)
{
    const char *point[] = {"A-1|a|Point|[114.1,22.5]"};
    const char *line[] = {"A-2|a|LineString|[[0,0],[1,1]]"};
    const char *collection_type[] = {"A-3|a|GeometryCollection|[]"};
    const char *none[] = {"A-4|a|-|"};
    const char *no_rings[] = {"A-5|a|Polygon|[]"};
    const char *no_parts[] = {"A-6|a|MultiPolygon|[]"};

    (void)state;
    refused(point, 1, "block A-1", "geometry type Point is not supported");
    refused(line, 1, "block A-2", "geometry type LineString is not supported");
    refused(collection_type, 1, "block A-3", "geometry type GeometryCollection is not supported");
    refused(none, 1, "block A-4", "no geometry");
    refused(no_rings, 1, "block A-5", "the Polygon has no rings");
    refused(no_parts, 1, "block A-6", "the MultiPolygon has no polygons");
}

static void
test_refuse_short_ring(void **state)
{
    const char *shell[] = {"A-1|a|Polygon|[[[0,0],[1,0],[0,0]]]"};
    const char *hole[] = {"A-2|a|Polygon|[" SQUARE(0, 0, 4, 4) ",[[1,1],[2,1],[1,1]]]"};
    const char *part[] = {"A-3|a|MultiPolygon|[[" SQUARE(0, 0, 1, 1) "],[[[5,5],[6,5],[5,5]]]]"};

    (void)state;
    refused(shell, 1, "block A-1", "ring 0 has 3 positions; a linear ring needs at least 4");
    refused(hole, 1, "block A-2", "ring 1 has 3 positions");
    refused(part, 1, "block A-3", "polygon 1 ring 0 has 3 positions");
}

static void
test_refuse_unclosed_ring(void **state)
{
    const char *doc[] = {"A-1|a|Polygon|[[[0,0],[1,0],[1,1],[0,1]]]"};

    (void)state;
    refused(doc, 1, "block A-1", "ring 0 is not closed");
}

static void
test_refuse_bad_coordinates(void **state)
{
    const char *string[] = {"A-1|a|Polygon|[[[0,0],[\"1\",0],[1,1],[0,1],[0,0]]]"};
    const char *null[] = {"A-2|a|Polygon|[[[0,0],[1,0],[1,null],[0,1],[0,0]]]"};
    const char *short_pos[] = {"A-3|a|Polygon|[[[0,0],[1],[1,1],[0,1],[0,0]]]"};
    const char *flat[] = {"A-4|a|Polygon|[[0,0,1,0,1,1,0,1,0,0]]"};
    const char *not_ring[] = {"A-5|a|Polygon|[5]"};

    (void)state;
    refused(string, 1, "block A-1", "position 1 has a coordinate that is not a number");
    refused(null, 1, "block A-2", "position 2 has a coordinate that is not a number");
    refused(short_pos, 1, "block A-3", "position 1 is not an array [lon, lat]");
    refused(flat, 1, "block A-4", "ring 0 position 0 is not an array [lon, lat]");
    refused(not_ring, 1, "block A-5", "ring 0 is not an array of positions");
}

static void
test_refuse_invalid_polygon(void **state)
{
    const char *bowtie[] = {
        "A-1|a|Polygon|[" SQUARE(5, 5, 6, 6) "]",
        "440303-900|a|Polygon|[[[0,0],[1,1],[1,0],[0,1],[0,0]]]",
    };
    const char *hole_outside[] = {
        "A-2|a|Polygon|[" SQUARE(0, 0, 1, 1) "," SQUARE(5, 5, 6, 6) "]",
    };
    const char *overlapping_parts[] = {
        "A-3|a|MultiPolygon|[[" SQUARE(0, 0, 2, 2) "],[" SQUARE(1, 1, 3, 3) "]]",
    };

    (void)state;
    refused(bowtie, COUNT(bowtie), "features[1] (block 440303-900): invalid polygon",
            "Self-intersection");
    refused(hole_outside, 1, "block A-2", "invalid polygon");
    refused(overlapping_parts, 1, "block A-3", "invalid polygon");
}

#define F1                                                                                         \
    "{\"type\":\"Feature\",\"properties\":{\"block_id\":\"D-1\",\"name\":\"\\u9ec4\\u8d1d\"},"     \
    "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[" SQUARE(0, 0, 1, 1) "]}}"
#define F2                                                                                         \
    "{\"type\":\"Feature\",\"properties\":{\"block_id\":\"D-2\",\"name\":\"b\"},"                  \
    "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[" SQUARE(1, 0, 2, 1) "]}}"

static void
test_document_shapes(void **state)
{
    /* Members in any order, members the map does not use, white space anywhere. */
    const char *docs[] = {
        "{\"features\":[" F1 "," F2 "],\"type\":\"FeatureCollection\"}",
        " \r\n{ \"type\" : \"FeatureCollection\" ,\n\t\"bbox\": [0, 0, 2, 1],\n"
        "\"crs\": {\"type\": \"name\", \"properties\": {\"name\": "
        "\"urn:ogc:def:crs:OGC:1.3:CRS84\"}},\n"
        "\"name\": \"a \\\"quoted\\\" } ] [ { name\", \"count\": -1.5e3, \"ok\": true, \"x\": "
        "null,\n"
        "\"features\" : [\n  " F1 " ,\n  " F2 "\n ] , \"after\": {\"features\": 7}\n}\n",
    };

    (void)state;
    for (size_t i = 0; i < COUNT(docs); i++) {
        struct bh_blockmap *map = NULL;
        char err[256] = "";
        int rc = bh_blockmap_load_string(&map, "doc", docs[i], strlen(docs[i]), err, sizeof(err));

        if (rc != 0)
            fail_msg("document %zu: %d %s", i, rc, err);
        assert_int_equal(bh_blockmap_count(map), 2);
        /* \u escapes come out as UTF-8. */
        assert_string_equal(bh_blockmap_find(map, "D-1", 3)->name, "黄贝");
        assert_located(map, 1.5, 0.5, "D-2");
        bh_blockmap_free(map);
    }
}

static void
test_refuse_bad_syntax(void **state)
{
    (void)state;
    refused_text("{\"type\":\"FeatureCollection\",\"features\":[" F1 "]} x", -EINVAL,
                 ":1:", "not valid JSON: end of input expected");
    refused_text("{\"type\":\"FeatureCollection\",\"features\":[" F1 ",]}", -EINVAL,
                 "not valid JSON", NULL);
    refused_text("{\"type\":\"FeatureCollection\",\"features\":[" F1 " " F2 "]}", -EINVAL,
                 "not valid JSON: ',' expected", NULL);
    refused_text("{\"type\":\"FeatureCollection\",\"features\":[" F1 "", -EINVAL, "not valid JSON",
                 NULL);
    refused_text("{\"type\":\"FeatureCollection\",\"name\":tru,\"features\":[" F1 "]}", -EINVAL,
                 "not valid JSON", NULL);
    refused_text("{\"type\":\"FeatureCollection\" \"features\":[" F1 "]}", -EINVAL,
                 "not valid JSON: ',' expected", NULL);
    /* An error inside a feature is reported at its line in the whole document. */
    refused_text("{\"type\":\"FeatureCollection\",\n\"features\":[\n" F1 ",\n{\"type\":\"Feature\","
                 "\"properties\":{\"block_id\":\"D-2\"},\n\"geometry\":{\"type\":\"Polygon\","
                 "\"coordinates\":[[[0,0],[1,0],[1,1],[0,1],[0,0]]}}]}",
                 -EINVAL, "inline.geojson:5:", "not valid JSON");
    /* Not UTF-8. */
    refused_text("{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\","
                 "\"properties\":{\"block_id\":\"D-1\",\"name\":\"\xba\xda\"},\"geometry\":"
                 "{\"type\":\"Polygon\",\"coordinates\":[" SQUARE(0, 0, 1, 1) "]}}]}",
                 -EINVAL, "not valid JSON", NULL);
}

static void
test_refuse_bad_members(void **state)
{
    (void)state;
    refused_text("{\"type\":\"FeatureCollection\",\"features\":{}}", -EINVAL,
                 "the FeatureCollection has no features array", NULL);
    refused_text("{\"type\":\"FeatureCollection\",\"features\":[" F1 "],\"features\":[" F2 "]}",
                 -EINVAL, "more than one \"features\" member", NULL);
    refused_text("{\"type\":\"Feature\",\"features\":[" F1 "]}", -EINVAL,
                 "not a GeoJSON FeatureCollection", NULL);
    refused_text("{\"features\":[" F1 "]}", -EINVAL, "not a GeoJSON FeatureCollection", NULL);
    refused_text("{\"type\":\"FeatureCollection\",\"features\":[" F1 ",1]}", -EINVAL,
                 "features[1] is not an object", NULL);
    refused_text("{\"type\":\"FeatureCollection\",\"features\":[\"x\"]}", -EINVAL,
                 "features[0] is not an object", NULL);
}

static void
test_member_order(void **state)
{
    /* The type after the coordinates, the geometry before the properties, an escaped key. */
    const char *doc = "{\"features\":[{\"geometry\":{\"coordinates\":[" SQUARE(
        0, 0, 1,
        1) "],\"type\":"
           "\"Polygon\"},\"properties\":{\"name\":\"\\ud83d\\ude00\",\"block\\u005fid\":\"M-1\"},"
           "\"type\":\"Feature\"}],\"type\":\"FeatureCollection\"}";
    /* A later member replaces an earlier one (as jansson did): M-3 at (5, 5), named "b". */
    const char *later[] = {
        "{\"type\":\"Feature\",\"properties\":{\"block_id\":\"X\"},\"properties\":{\"block_id\":"
        "\"M-2\",\"name\":\"a\",\"block_id\":\"M-3\",\"name\":\"b\"},\"geometry\":"
        "{\"type\":\"Polygon\",\"coordinates\":\"none\",\"coordinates\":[" SQUARE(5, 5, 6, 6) "]}}",
    };
    struct bh_blockmap *map = NULL;
    char err[256] = "";
    int rc = bh_blockmap_load_string(&map, "doc", doc, strlen(doc), err, sizeof(err));

    (void)state;
    if (rc != 0)
        fail_msg("%d %s", rc, err);
    assert_string_equal(bh_blockmap_find(map, "M-1", 3)->name, "\xf0\x9f\x98\x80");
    assert_located(map, 0.5, 0.5, "M-1");
    bh_blockmap_free(map);
    map = load_ok(later, 1);
    assert_string_equal(bh_blockmap_at(map, 0)->id, "M-3");
    assert_string_equal(bh_blockmap_at(map, 0)->name, "b");
    assert_located(map, 5.5, 5.5, "M-3");
    bh_blockmap_free(map);
}

/* properties.unit: the block's responsible unit, NULL when absent, empty or null; not a string:
 * refused. */
static void
test_responsible_unit(void **state)
{
    const char *features[] = {
        "{\"type\":\"Feature\",\"properties\":{\"block_id\":\"U-1\",\"unit\":\"黄贝派出所\"},"
        "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[" SQUARE(0, 0, 1, 1) "]}}",
        "{\"type\":\"Feature\",\"properties\":{\"block_id\":\"U-2\"},"
        "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[" SQUARE(1, 0, 2, 1) "]}}",
        "{\"type\":\"Feature\",\"properties\":{\"block_id\":\"U-3\",\"unit\":null},"
        "\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[" SQUARE(2, 0, 3, 1) "]}}",
    };
    (void)state;
    struct bh_blockmap *map = load_ok(features, 3);
    assert_string_equal(bh_blockmap_find(map, "U-1", 3)->unit, "黄贝派出所");
    assert_null(bh_blockmap_find(map, "U-2", 3)->unit);
    assert_null(bh_blockmap_find(map, "U-3", 3)->unit);
    bh_blockmap_free(map);
    refused_text("{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\","
                 "\"properties\":{\"block_id\":\"U-4\",\"unit\":7},\"geometry\":{\"type\":"
                 "\"Polygon\",\"coordinates\":[" SQUARE(0, 0, 1, 1) "]}}]}",
                 -EINVAL, "U-4", "properties.unit is not a string");
}

/* A one-feature collection whose name is NAME, as JSON text (with its quotes). */
#define NAMED(name)                                                                                \
    "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"properties\":"          \
    "{\"block_id\":\"D-1\",\"name\":" name "},\"geometry\":{\"type\":\"Polygon\","                 \
    "\"coordinates\":[" SQUARE(0, 0, 1, 1) "]}}]}"

static void
test_refuse_bad_strings(void **state)
{
    (void)state;
    refused_text(NAMED("\"\xc0\xae\""), -EINVAL, "not valid JSON: invalid UTF-8 (byte 0xc0)",
                 NULL); /* overlong */
    refused_text(NAMED("\"\xed\xa0\x80\""), -EINVAL, "not valid JSON: invalid UTF-8", NULL);
    refused_text(NAMED("\"\xf4\x90\x80\x80\""), -EINVAL, "not valid JSON: invalid UTF-8", NULL);
    refused_text(NAMED("\"\xe9\xbb\""), -EINVAL, "not valid JSON: invalid UTF-8", NULL);
    refused_text(NAMED("\"\\ud800\""), -EINVAL, "not valid JSON: invalid \\u escape", "surrogate");
    refused_text(NAMED("\"\\udc00\\ud800\""), -EINVAL, "lone surrogate", NULL);
    refused_text(NAMED("\"\\u12\""), -EINVAL, "not valid JSON: invalid \\u escape", NULL);
    refused_text(NAMED("\"a\\u0000b\""), -EINVAL, "not valid JSON: \\u0000 is not allowed", NULL);
    refused_text(NAMED("\"a\\xb\""), -EINVAL, "not valid JSON: invalid escape", NULL);
    refused_text(NAMED("\"a\tb\""), -EINVAL, "not valid JSON: control character 0x09", NULL);
    refused_text(NAMED("\"abc"), -EINVAL, "not valid JSON", NULL);
    refused_text(NAMED("'abc'"), -EINVAL, "not valid JSON: unexpected '''", NULL);
    refused_text("\xef\xbb\xbf" NAMED("\"a\""), -EINVAL, "inline.geojson:1:1: not valid JSON",
                 NULL);
}

static void
test_refuse_bad_numbers(void **state)
{
    static const char nul_after_number[] =
        "{\"type\":\"FeatureCollection\",\"features\":[],\"n\":1\0}";
    struct bh_blockmap *map = (struct bh_blockmap *)&map;
    char deep[2 * 2100 + 100];
    char err[256] = "";
    int n;

    (void)state;
    refused_text(NAMED("01"), -EINVAL, "not valid JSON: invalid number (a leading zero)", NULL);
    refused_text(NAMED("-"), -EINVAL, "not valid JSON: invalid number", NULL);
    refused_text(NAMED("1."), -EINVAL, "not valid JSON: invalid number", NULL);
    refused_text(NAMED("1e+"), -EINVAL, "not valid JSON: invalid number", NULL);
    refused_text(NAMED("+1"), -EINVAL, "not valid JSON: unexpected '+'", NULL);
    refused_text(NAMED(".5"), -EINVAL, "not valid JSON: unexpected '.'", NULL);
    refused_text(NAMED("NaN"), -EINVAL, "not valid JSON", NULL);
    refused_text(NAMED("tru"), -EINVAL, "not valid JSON: invalid literal", NULL);
    /* A coordinate that is no finite double. */
    refused_text(
        "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"properties\":"
        "{\"block_id\":\"D-1\"},\"geometry\":{\"type\":\"Polygon\",\"coordinates\":"
        "[[[0,0],[1e400,0],[1,1],[0,1],[0,0]]]}}]}",
        -EINVAL, "block D-1", "ring 0 position 1 has a coordinate out of range");
    /* A NUL byte is not white space (jansson let one through after a token). */
    assert_int_equal(bh_blockmap_load_string(&map, "inline.geojson", nul_after_number,
                                             sizeof(nul_after_number) - 1, err, sizeof(err)),
                     -EINVAL);
    assert_null(map);
    if (!strstr(err, "inline.geojson:1:48: not valid JSON: ',' or '}' expected"))
        fail_msg("%s", err);
    /* Nesting deeper than jansson's limit, 2048. */
    n = snprintf(deep, sizeof(deep), "{\"type\":\"FeatureCollection\",\"x\":");
    for (int i = 0; i < 2100; i++)
        deep[n++] = '[';
    for (int i = 0; i < 2100; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    refused_text(deep, -EINVAL, "not valid JSON: nested more than 2048 deep", NULL);
}

static void
test_numbers_exact(void **state)
{
    /* Coordinates come out exactly as strtod reads them, short or long, with or without exponent.
     */
    const char *x0 = "-0.000123456789e3", *y0 = "22.451234";
    const char *x1 = "113.7512345678901234567891", *y1 = "2245.1234567e-2";
    char feature[512];
    const char *doc[1] = {feature};
    struct bh_blockmap *map;
    double min_lon, min_lat, max_lon, max_lat;

    (void)state;
    snprintf(feature, sizeof(feature), "E-1|e|Polygon|[[[%s,%s],[%s,%s],[%s,%s],[%s,%s],[%s,%s]]]",
             x0, y0, x1, y0, x1, y1, x0, y1, x0, y0);
    map = load_ok(doc, 1);
    bh_blockmap_bounds(map, &min_lon, &min_lat, &max_lon, &max_lat);
    assert_true(min_lon == strtod(x0, NULL));
    assert_true(min_lat == strtod(y0, NULL));
    assert_true(max_lon == strtod(x1, NULL));
    assert_true(max_lat == strtod(y1, NULL));
    bh_blockmap_free(map);
}

static void
test_check_json(void **state)
{
    const char *ok = "{\"a\": [1, -2.5e3, \"\\u00e9\", true, false, null, {}], \"b\": {}}\n";
    char err[256] = "";

    (void)state;
    assert_int_equal(bh_blockmap_check_json("t", ok, strlen(ok), err, sizeof(err)), 0);
    assert_int_equal(bh_blockmap_check_json("t", "[1,]", 4, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t:1:4: not valid JSON: unexpected ']'");
    assert_int_equal(bh_blockmap_check_json("t", "{}\n x", 5, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t:2:2: not valid JSON: end of input expected");
    assert_int_equal(bh_blockmap_check_json("t", NULL, 0, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t:1:1: not valid JSON: unexpected end of input");
    assert_int_equal(bh_blockmap_check_json("t", "[1 2]", 5, NULL, 0), -EINVAL);
}

static void
test_refuse_missing_file(void **state)
{
    struct bh_blockmap *map = (struct bh_blockmap *)&map;
    char err[256] = "";
    int rc = bh_blockmap_load(&map, "/nonexistent/blocks.geojson", err, sizeof(err));

    (void)state;
    assert_int_equal(rc, -ENOENT);
    assert_null(map);
    assert_non_null(strstr(err, "/nonexistent/blocks.geojson"));
    assert_non_null(strstr(err, "No such file"));
    /* A directory is not a map either. */
    rc = bh_blockmap_load(&map, "/", err, sizeof(err));
    assert_true(rc < 0);
    assert_null(map);
}

static void
test_refuse_without_errstr(void **state)
{
    struct bh_blockmap *map = NULL;

    (void)state;
    assert_int_equal(bh_blockmap_load_string(&map, NULL, "[]", 2, NULL, 0), -EINVAL);
    assert_null(map);
    assert_int_equal(bh_blockmap_load(&map, "/nonexistent", NULL, 0), -ENOENT);
    bh_blockmap_free(NULL);
    assert_int_equal(bh_blockmap_count(NULL), 0);
    assert_null(bh_blockmap_locate(NULL, 114.1, 22.5));
}

int
main(void)
{
    const struct CMUnitTest world_tests[] = {
        cmocka_unit_test(test_responsible_unit),
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_ids_sorted),
        cmocka_unit_test(test_names_utf8),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_resolve_rule),
        cmocka_unit_test(test_convex_centroids),
        cmocka_unit_test(test_multipolygon_parts),
        cmocka_unit_test(test_outside),
        cmocka_unit_test(test_outside_traffic_sample),
        cmocka_unit_test(test_outside_market_sample),
        cmocka_unit_test(test_fire_sample),
        cmocka_unit_test(test_shared_vertices),
        cmocka_unit_test(test_random_points_match_naive),
        cmocka_unit_test(test_grid_matches_slow_world),
    };
    const struct CMUnitTest inline_tests[] = {
        cmocka_unit_test(test_shared_edge_smallest_id),
        cmocka_unit_test(test_grid_matches_slow_tiling),
        cmocka_unit_test(test_grid_matches_slow_many_positions),
        cmocka_unit_test(test_holes_and_islands),
        cmocka_unit_test(test_refuse_not_json),
        cmocka_unit_test(test_refuse_not_feature_collection),
        cmocka_unit_test(test_refuse_missing_block_id),
        cmocka_unit_test(test_refuse_duplicate_block_id),
        cmocka_unit_test(test_refuse_geometry_type),
        cmocka_unit_test(test_refuse_short_ring),
        cmocka_unit_test(test_refuse_unclosed_ring),
        cmocka_unit_test(test_refuse_bad_coordinates),
        cmocka_unit_test(test_refuse_invalid_polygon),
        cmocka_unit_test(test_document_shapes),
        cmocka_unit_test(test_refuse_bad_syntax),
        cmocka_unit_test(test_refuse_bad_members),
        cmocka_unit_test(test_member_order),
        cmocka_unit_test(test_refuse_bad_strings),
        cmocka_unit_test(test_refuse_bad_numbers),
        cmocka_unit_test(test_numbers_exact),
        cmocka_unit_test(test_check_json),
        cmocka_unit_test(test_refuse_missing_file),
        cmocka_unit_test(test_refuse_without_errstr),
    };
    int failed = 0;

    failed +=
        cmocka_run_group_tests_name("blockmap world", world_tests, world_setup, world_teardown);
    failed += cmocka_run_group_tests_name("blockmap inline", inline_tests, NULL, NULL);
    return failed ? 1 : 0;
}
