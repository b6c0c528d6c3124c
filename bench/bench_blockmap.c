/*
 * Block map benchmark: load time against a baseline, then point and grid-code
 * lookups.
 *
 *     bench_blockmap MAP.geojson [LOOKUPS [RUNS]]
 *
 * Generate a map with bench/gen_blocks.py, or run bench/run-blockmap.sh.
 *
 * The map is loaded once (a cold start), then RUNS more times (default 7) as
 * a running hub would reload it. Before each reload the baseline runs: read
 * the file into memory and check it with the loader's own JSON scanner
 * (bh_blockmap_check_json), which builds nothing; that is the floor under a
 * load, since a load cannot avoid reading and scanning the text. Baseline and
 * load alternate so that both see the same machine. Each figure is given as
 * min / median / max of the RUNS runs, in CPU time (getrusage: user + system)
 * and wall time, since a busy machine inflates the second; the ratio is of the
 * medians. Of each load, the part spent building the lookup grid is given too
 * (the map measures it: bh_blockmap_grid_info).
 *
 * Points are uniform over the map's bounding box widened by 5% (so some miss);
 * grid codes are the map's ids with one in ten unknown. The inputs are drawn
 * before the clock starts.
 *
 * Point lookups are timed two ways in the same run: bh_blockmap_locate (the
 * lookup grid) and bh_blockmap_locate_slow (the STRtree with a GEOS covers
 * test per candidate, the lookup before the grid: the baseline). They
 * alternate, RUNS passes of LOOKUPS points each, and are reported like loads
 * (CPU and wall per lookup, min / median / max), with the ratio of the CPU
 * medians. Both must give the same answer for every point, or the benchmark
 * fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <geos_c.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blockmap.h"
#include "blockmap_test.h"

#include "bench_clock.h"

#define DEFAULT_RUNS 7

static void
print_machine(void)
{
    char line[256] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");

    if (f) {
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
                printf("cpu:%s", strchr(line, ':') + 1);
                break;
            }
        }
        fclose(f);
    }
    f = fopen("/proc/loadavg", "r");
    if (f && fgets(line, sizeof(line), f))
        printf("machine: %ld CPUs, load average %s", sysconf(_SC_NPROCESSORS_ONLN), line);
    if (f)
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

/* One point lookup function, as the benchmark times it. */
typedef const struct bh_block *(*locate_fn)(const struct bh_blockmap *, double, double);

struct grid_code {
    char text[32];
    size_t len;
};

/* Wall and CPU seconds of each run. */
struct timings {
    double *wall, *cpu;
    size_t n;
};

static void
print_timings(const char *what, struct timings *t)
{
    double cpu_median = median_double(t->cpu, t->n);
    double wall_median = median_double(t->wall, t->n);

    printf(
        "%s: CPU %.1f / %.1f / %.1f ms, wall %.1f / %.1f / %.1f ms (min / median / max of %zu)\n",
        what, t->cpu[0] * 1e3, cpu_median * 1e3, t->cpu[t->n - 1] * 1e3, t->wall[0] * 1e3,
        wall_median * 1e3, t->wall[t->n - 1] * 1e3, t->n);
}

/* The baseline: reads PATH into memory as bh_blockmap_load does, then scans it. */
static int
read_and_scan(const char *path, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = -1;

    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    while (len < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(err, errlen, "%s: %s", path, r < 0 ? strerror(errno) : "shrank");
            goto out;
        }
        len += (size_t)r;
    }
    rc = bh_blockmap_check_json(path, buf, len, err, errlen);
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

/*
 * One pass of LOCATE over N points: *WALL and *CPU get the seconds it took;
 * *HITS and *CHECKSUM add up the answers.
 */
static void
time_points(locate_fn locate, const struct bh_blockmap *map, size_t n, const double *points,
            double *wall, double *cpu, size_t *hits, uintptr_t *checksum)
{
    double t0, c0;

    t0 = mono_s();
    c0 = self_cpu();
    for (size_t i = 0; i < n; i++) {
        const struct bh_block *b = locate(map, points[2 * i], points[2 * i + 1]);

        *hits += b != NULL;
        *checksum += (uintptr_t)b;
    }
    *cpu = self_cpu() - c0;
    *wall = mono_s() - t0;
}

/* Per lookup, in ns. */
static void
print_lookup_timings(const char *what, struct timings *t, size_t n)
{
    double cpu_median = median_double(t->cpu, t->n);
    double wall_median = median_double(t->wall, t->n);
    double k = 1e9 / (double)n;

    printf("%s: CPU %.0f / %.0f / %.0f ns, wall %.0f / %.0f / %.0f ns per lookup (min / median / "
           "max of %zu)\n",
           what, t->cpu[0] * k, cpu_median * k, t->cpu[t->n - 1] * k, t->wall[0] * k,
           wall_median * k, t->wall[t->n - 1] * k, t->n);
}

/* What a lookup costs just for making and freeing the GEOS point it queries with. */
static double
point_cost_ns(size_t n, const double *points)
{
    GEOSContextHandle_t geos = GEOS_init_r();
    double t0, t1;
    size_t made = 0;

    t0 = mono_s();
    for (size_t i = 0; i < n; i++) {
        GEOSGeometry *p = GEOSGeom_createPointFromXY_r(geos, points[2 * i], points[2 * i + 1]);

        made += p != NULL;
        GEOSGeom_destroy_r(geos, p);
    }
    t1 = mono_s();
    GEOS_finish_r(geos);
    return made == n ? (t1 - t0) * 1e9 / (double)n : -1;
}

int
main(int argc, char **argv)
{
    struct bh_blockmap *map = NULL;
    struct grid_code *codes = NULL;
    struct timings load = {0}, base = {0}, fast = {0}, slow = {0};
    double *grid_cpu = NULL, grid_median;
    struct bh_blockmap_grid_info info;
    double *points = NULL;
    double min_lon, min_lat, max_lon, max_lat, w, h;
    double t0, t1, c0, c1;
    uint64_t seed = 20261127;
    size_t lookups = 1000000;
    size_t runs = DEFAULT_RUNS;
    size_t count, hits = 0, slow_hits = 0, differ = 0;
    uintptr_t slow_checksum = 0;
    uintptr_t checksum = 0;
    char err[512];
    int rc = 1;

    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s MAP.geojson [LOOKUPS [RUNS]]\n", argv[0]);
        goto out;
    }
    if (argc >= 3)
        lookups = strtoull(argv[2], NULL, 10);
    if (argc >= 4)
        runs = strtoull(argv[3], NULL, 10);
    if (lookups == 0 || runs == 0) {
        fprintf(stderr, "%s: LOOKUPS and RUNS must be positive numbers\n", argv[0]);
        goto out;
    }
    load.wall = calloc(runs, sizeof(double));
    load.cpu = calloc(runs, sizeof(double));
    base.wall = calloc(runs, sizeof(double));
    base.cpu = calloc(runs, sizeof(double));
    grid_cpu = calloc(runs, sizeof(double));
    fast.wall = calloc(runs, sizeof(double));
    fast.cpu = calloc(runs, sizeof(double));
    slow.wall = calloc(runs, sizeof(double));
    slow.cpu = calloc(runs, sizeof(double));
    if (!load.wall || !load.cpu || !base.wall || !base.cpu || !grid_cpu || !fast.wall ||
        !fast.cpu || !slow.wall || !slow.cpu) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }

    print_machine();
    t0 = mono_s();
    c0 = self_cpu();
    if (bh_blockmap_load(&map, argv[1], err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    c1 = self_cpu();
    t1 = mono_s();
    count = bh_blockmap_count(map);
    printf("first load: %zu blocks, CPU %.1f ms, wall %.1f ms\n", count, (c1 - c0) * 1e3,
           (t1 - t0) * 1e3);
    for (size_t r = 0; r < runs; r++) {
        struct bh_blockmap *next = NULL;

        t0 = mono_s();
        c0 = self_cpu();
        if (read_and_scan(argv[1], err, sizeof(err)) < 0) {
            fprintf(stderr, "%s\n", err);
            goto out;
        }
        c1 = self_cpu();
        t1 = mono_s();
        base.wall[r] = t1 - t0;
        base.cpu[r] = c1 - c0;

        t0 = mono_s();
        c0 = self_cpu();
        if (bh_blockmap_load(&next, argv[1], err, sizeof(err)) < 0) {
            fprintf(stderr, "%s\n", err);
            goto out;
        }
        c1 = self_cpu();
        t1 = mono_s();
        load.wall[r] = t1 - t0;
        load.cpu[r] = c1 - c0;
        bh_blockmap_grid_info(next, &info);
        grid_cpu[r] = info.build_cpu;
        bh_blockmap_free(map); /* the old map goes once the new one is in */
        map = next;
    }
    load.n = base.n = runs;
    print_timings("load", &load);
    grid_median = median_double(grid_cpu, runs);
    printf("  of which the lookup grid: CPU %.1f / %.1f / %.1f ms (min / median / max of %zu)\n",
           grid_cpu[0] * 1e3, grid_median * 1e3, grid_cpu[runs - 1] * 1e3, runs);
    print_timings("baseline (read + JSON scan, nothing built)", &base);
    printf("ratio load / baseline: %.1f (CPU medians), %.1f (wall medians)\n",
           median_double(load.cpu, runs) / median_double(base.cpu, runs),
           median_double(load.wall, runs) / median_double(base.wall, runs));

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

    bh_blockmap_grid_info(map, &info);
    printf("lookup grid: %zu x %zu cells: %.1f%% owned by one block, %.1f%% empty, %.1f%% with a "
           "list (%.2f blocks on average); %.1f MB (cells and lists) + %.1f MB of ring "
           "positions\n",
           info.cols, info.rows, 100.0 * (double)info.owned_cells / (double)(info.cols * info.rows),
           100.0 * (double)info.empty_cells / (double)(info.cols * info.rows),
           100.0 * (double)info.list_cells / (double)(info.cols * info.rows),
           info.list_cells ? (double)info.list_entries / (double)info.list_cells : 0.0,
           (double)info.grid_bytes / 1e6, (double)info.rings_bytes / 1e6);
    for (size_t i = 0; i < lookups; i++) {
        double lon = points[2 * i], lat = points[2 * i + 1];

        differ += bh_blockmap_locate(map, lon, lat) != bh_blockmap_locate_slow(map, lon, lat);
    }
    if (differ) {
        fprintf(stderr, "%zu of %zu points: the grid and the STRtree disagree\n", differ, lookups);
        goto out;
    }
    for (size_t r = 0; r < runs; r++) {
        time_points(bh_blockmap_locate, map, lookups, points, &fast.wall[r], &fast.cpu[r], &hits,
                    &checksum);
        time_points(bh_blockmap_locate_slow, map, lookups, points, &slow.wall[r], &slow.cpu[r],
                    &slow_hits, &slow_checksum);
    }
    fast.n = slow.n = runs;
    printf("point lookups: %zu points x %zu runs, %.1f%% inside a block, same answers both ways\n",
           lookups, runs, 100.0 * (double)hits / (double)(lookups * runs));
    print_lookup_timings("  grid (bh_blockmap_locate)", &fast, lookups);
    print_lookup_timings("  STRtree + GEOS covers (bh_blockmap_locate_slow, the baseline)", &slow,
                         lookups);
    printf("  ratio STRtree / grid: %.1f (CPU medians), %.1f (wall medians)\n",
           median_double(slow.cpu, runs) / median_double(fast.cpu, runs),
           median_double(slow.wall, runs) / median_double(fast.wall, runs));
    printf("  of the STRtree lookup, GEOS point create+destroy: %.0f ns\n",
           point_cost_ns(lookups, points));
    if (slow_checksum != checksum)
        printf("(checksums differ)\n");

    hits = 0;
    t0 = mono_s();
    c0 = self_cpu();
    for (size_t i = 0; i < lookups; i++) {
        const struct bh_block *b =
            bh_blockmap_resolve(map, codes[i].text, codes[i].len, false, 0, 0);

        hits += b != NULL;
        checksum += (uintptr_t)b;
    }
    c1 = self_cpu();
    t1 = mono_s();
    printf("grid-code lookups: %zu, %.0f ns/lookup CPU, %.0f ns wall (%.1f%% known)\n", lookups,
           (c1 - c0) * 1e9 / (double)lookups, (t1 - t0) * 1e9 / (double)lookups,
           100.0 * (double)hits / (double)lookups);
    if (checksum == 1)
        printf("(checksum %ju)\n", (uintmax_t)checksum); /* keeps the loops honest */

    t0 = mono_s();
    bh_blockmap_free(map);
    map = NULL;
    t1 = mono_s();
    printf("free: %.1f ms\n", (t1 - t0) * 1e3);
    rc = 0;
out:
    bh_blockmap_free(map);
    free(points);
    free(codes);
    free(load.wall);
    free(load.cpu);
    free(base.wall);
    free(base.cpu);
    free(grid_cpu);
    free(fast.wall);
    free(fast.cpu);
    free(slow.wall);
    free(slow.cpu);
    return rc;
}
