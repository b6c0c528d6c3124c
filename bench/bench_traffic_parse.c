/*
 * The traffic adapter's per-line work on the loop thread, without Kafka:
 * each line of an NDJSON file parsed into an event (bh_traffic_parse) and its
 * point looked up in the block map (bh_blockmap_resolve), ROUNDS times.
 *
 * Baseline in the same run: the same parser with its flat-line path off, so
 * that yajl reads every line (what every line cost before the flat-line path,
 * and what an unusual line costs now). Printed per round and as medians: ns
 * per line of each, their ratio, and ns per block lookup.
 *
 * Usage: bench_traffic_parse FILE.ndjson BLOCKS.geojson [ROUNDS]   (default 5)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/traffic/traffic_event.h"
#include "adapters/traffic/traffic_event_test.h"
#include "blockmap.h"

#include "bench_clock.h"

struct input {
    char *data;
    size_t len;
    size_t lines, records;
    double *lon, *lat; /* each record's point, for the lookups */
};

/* Parse every line of IN with P: ns per line; each record's point kept when KEEP. */
static double
parse_all(struct bh_traffic_parser *p, struct input *in, int keep)
{
    struct bh_traffic_event ev;
    enum bh_dlq_reason r;
    char why[600];
    size_t lines = 0, records = 0;
    const char *s = in->data, *end = in->data + in->len;
    double t0 = mono_s();
    while (s < end) {
        const char *e = memchr(s, '\n', (size_t)(end - s));
        if (e == NULL)
            e = end;
        if (bh_traffic_parse(p, s, (size_t)(e - s), &ev, &r, why, sizeof(why)) ==
            BH_TRAFFIC_RECORD) {
            if (keep) {
                in->lon[records] = ev.lon;
                in->lat[records] = ev.lat;
            }
            records++;
        }
        lines++;
        s = e + 1;
    }
    double ns = (mono_s() - t0) * 1e9 / (double)lines;
    in->lines = lines;
    in->records = records;
    return ns;
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s FILE.ndjson BLOCKS.geojson [ROUNDS]\n", argv[0]);
        return 2;
    }
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    if (rounds < 1 || rounds > 100)
        rounds = 5;
    struct input in = {0};
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0) {
        perror(argv[1]);
        return 1;
    }
    long size = ftell(f);
    rewind(f);
    in.data = malloc(size > 0 ? (size_t)size : 1);
    if (in.data == NULL || size <= 0 || fread(in.data, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "%s: cannot read it\n", argv[1]);
        return 1;
    }
    fclose(f);
    in.len = (size_t)size;
    size_t most = 1;
    for (size_t i = 0; i < in.len; i++)
        most += in.data[i] == '\n';
    in.lon = malloc(most * sizeof(double));
    in.lat = malloc(most * sizeof(double));
    struct bh_traffic_parser *flat, *yajl;
    struct bh_blockmap *map;
    char err[512];
    if (in.lon == NULL || in.lat == NULL || bh_traffic_parser_new(&flat) < 0 ||
        bh_traffic_parser_new(&yajl) < 0) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    bh_traffic_parser_set_fast(yajl, 0);
    if (bh_blockmap_load(&map, argv[2], err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double *fl = malloc((size_t)rounds * sizeof(double)),
           *yj = malloc((size_t)rounds * sizeof(double));
    double *lk = malloc((size_t)rounds * sizeof(double)),
           *rt = malloc((size_t)rounds * sizeof(double));
    if (fl == NULL || yj == NULL || lk == NULL || rt == NULL)
        return 1;
    size_t found = 0;
    for (int k = 0; k < rounds; k++) {
        yj[k] = parse_all(yajl, &in, 0);
        fl[k] = parse_all(flat, &in, 1);
        double t0 = mono_s();
        found = 0;
        for (size_t i = 0; i < in.records; i++)
            found += bh_blockmap_resolve(map, NULL, 0, 1, in.lon[i], in.lat[i]) != NULL;
        lk[k] = (mono_s() - t0) * 1e9 / (double)(in.records ? in.records : 1);
        rt[k] = fl[k] / yj[k];
        printf("round %d: flat-line path %.1f ns a line, yajl %.1f ns; lookup %.1f ns\n", k + 1,
               fl[k], yj[k], lk[k]);
    }
    printf("%zu lines, %zu records, %zu in a block; flat-line path took %zu\n", in.lines,
           in.records, found, bh_traffic_parser_fast_lines(flat) / (size_t)rounds);
    size_t nr = (size_t)rounds;
    printf("parse, median of %d: flat-line path %.1f ns a line, yajl (the baseline) %.1f ns\n",
           rounds, median_double(fl, nr), median_double(yj, nr));
    printf("ratio flat-line path / yajl: %.3f (median of the rounds' ratios)\n",
           median_double(rt, nr));
    printf("block lookup, median: %.1f ns\n", median_double(lk, nr));
    bh_traffic_parser_free(flat);
    bh_traffic_parser_free(yajl);
    bh_blockmap_free(map);
    free(fl);
    free(yj);
    free(lk);
    free(rt);
    free(in.lon);
    free(in.lat);
    free(in.data);
    return 0;
}
