/*
 * Block map benchmark: load time, then point and grid-code lookups.
 *
 *     bench_blockmap MAP.geojson [LOOKUPS]
 *
 * Generate a map with bench/gen_blocks.py, or run bench/run-blockmap.sh.
 * The map is loaded once (a cold start), then RELOADS more times as a running
 * hub would reload it; each figure is wall time with the process's CPU time
 * beside it, since a busy machine inflates the first. Points are uniform over
 * the map's bounding box widened by 5% (so some miss); grid codes are the
 * map's ids with one in ten unknown. The inputs are drawn before the clock
 * starts.
 */
#include <errno.h>
#include <math.h>
#include <geos_c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blockmap.h"

#define RELOADS 3

static double
clock_seconds(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
now(void)
{
    return clock_seconds(CLOCK_MONOTONIC);
}

static double
cpu_now(void)
{
    return clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
}

static void
print_loadavg(void)
{
    char line[128] = "";
    FILE *f = fopen("/proc/loadavg", "r");

    if (!f)
        return;
    if (fgets(line, sizeof(line), f))
        printf("machine: %ld CPUs, load average %s", sysconf(_SC_NPROCESSORS_ONLN), line);
    fclose(f);
}

static uint64_t
next_random(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return *state >> 11;
}

static double
uniform(uint64_t *state)
{
    return (double)next_random(state) / 9007199254740992.0;
}

struct grid_code {
    char text[32];
    size_t len;
};

/* What a lookup costs just for making and freeing the GEOS point it queries with. */
static double
point_cost_ns(size_t n, const double *points)
{
    GEOSContextHandle_t geos = GEOS_init_r();
    double t0, t1;
    size_t made = 0;

    t0 = now();
    for (size_t i = 0; i < n; i++) {
        GEOSGeometry *p = GEOSGeom_createPointFromXY_r(geos, points[2 * i], points[2 * i + 1]);

        made += p != NULL;
        GEOSGeom_destroy_r(geos, p);
    }
    t1 = now();
    GEOS_finish_r(geos);
    return made == n ? (t1 - t0) * 1e9 / (double)n : -1;
}

int
main(int argc, char **argv)
{
    struct bh_blockmap *map = NULL;
    struct grid_code *codes = NULL;
    double *points = NULL;
    double min_lon, min_lat, max_lon, max_lat, w, h;
    double t0, t1, c0, c1;
    double reload_best = INFINITY, reload_cpu = INFINITY;
    uint64_t seed = 20261127;
    size_t lookups = 1000000;
    size_t count, hits = 0;
    uintptr_t checksum = 0;
    char err[512];
    int rc = 1;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s MAP.geojson [LOOKUPS]\n", argv[0]);
        goto out;
    }
    if (argc == 3)
        lookups = strtoull(argv[2], NULL, 10);
    if (lookups == 0) {
        fprintf(stderr, "%s: LOOKUPS must be a positive number\n", argv[0]);
        goto out;
    }

    print_loadavg();
    t0 = now();
    c0 = cpu_now();
    if (bh_blockmap_load(&map, argv[1], err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    c1 = cpu_now();
    t1 = now();
    count = bh_blockmap_count(map);
    printf("load: %zu blocks in %.1f ms (CPU %.1f ms)\n", count, (t1 - t0) * 1e3, (c1 - c0) * 1e3);
    for (int r = 0; r < RELOADS; r++) {
        struct bh_blockmap *next = NULL;

        t0 = now();
        c0 = cpu_now();
        if (bh_blockmap_load(&next, argv[1], err, sizeof(err)) < 0) {
            fprintf(stderr, "%s\n", err);
            goto out;
        }
        c1 = cpu_now();
        t1 = now();
        bh_blockmap_free(map); /* the old map goes once the new one is in */
        map = next;
        reload_best = fmin(reload_best, t1 - t0);
        reload_cpu = fmin(reload_cpu, c1 - c0);
    }
    printf("reload: best of %d %.1f ms (CPU %.1f ms)\n", RELOADS, reload_best * 1e3,
           reload_cpu * 1e3);

    points = malloc(lookups * 2 * sizeof(*points));
    codes = malloc(lookups * sizeof(*codes));
    if (!points || !codes) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }
    bh_blockmap_bounds(map, &min_lon, &min_lat, &max_lon, &max_lat);
    w = max_lon - min_lon;
    h = max_lat - min_lat;
    for (size_t i = 0; i < lookups; i++) {
        points[2 * i] = min_lon - 0.025 * w + uniform(&seed) * 1.05 * w;
        points[2 * i + 1] = min_lat - 0.025 * h + uniform(&seed) * 1.05 * h;
    }
    for (size_t i = 0; i < lookups; i++) {
        const struct bh_block *b = bh_blockmap_at(map, next_random(&seed) % count);

        if (next_random(&seed) % 10 == 0)
            snprintf(codes[i].text, sizeof(codes[i].text), "%.20s-X", b->id);
        else
            snprintf(codes[i].text, sizeof(codes[i].text), "%s", b->id);
        codes[i].len = strlen(codes[i].text);
    }

    t0 = now();
    c0 = cpu_now();
    for (size_t i = 0; i < lookups; i++) {
        const struct bh_block *b = bh_blockmap_locate(map, points[2 * i], points[2 * i + 1]);

        hits += b != NULL;
        checksum += (uintptr_t)b;
    }
    c1 = cpu_now();
    t1 = now();
    printf("point lookups: %zu in %.1f ms, %.0f ns/lookup (CPU %.0f ns; %.1f%% inside a block)\n",
           lookups, (t1 - t0) * 1e3, (t1 - t0) * 1e9 / (double)lookups,
           (c1 - c0) * 1e9 / (double)lookups, 100.0 * (double)hits / (double)lookups);
    printf("  of which GEOS point create+destroy: %.0f ns\n", point_cost_ns(lookups, points));

    hits = 0;
    t0 = now();
    c0 = cpu_now();
    for (size_t i = 0; i < lookups; i++) {
        const struct bh_block *b =
            bh_blockmap_resolve(map, codes[i].text, codes[i].len, false, 0, 0);

        hits += b != NULL;
        checksum += (uintptr_t)b;
    }
    c1 = cpu_now();
    t1 = now();
    printf("grid-code lookups: %zu in %.1f ms, %.0f ns/lookup (CPU %.0f ns; %.1f%% known)\n",
           lookups, (t1 - t0) * 1e3, (t1 - t0) * 1e9 / (double)lookups,
           (c1 - c0) * 1e9 / (double)lookups, 100.0 * (double)hits / (double)lookups);
    if (checksum == 1)
        printf("(checksum %ju)\n", (uintmax_t)checksum); /* keeps the loops honest */

    t0 = now();
    bh_blockmap_free(map);
    map = NULL;
    t1 = now();
    printf("free: %.1f ms\n", (t1 - t0) * 1e3);
    rc = 0;
out:
    bh_blockmap_free(map);
    free(points);
    free(codes);
    return rc;
}
