/*
 * Input for the join's restore benchmark (bench/run-join-restore.sh): many
 * events, fast, and what every block's view must then say.
 *
 *   bench_join_feed produce BOOTSTRAP TOPIC FINGERPRINT BLOCKS BASE_MS STEP_MS FIRST COUNT
 *   bench_join_feed truth OUT BLOCKS BASE_MS STEP_MS WINDOW_MS FIRST COUNT [FIRST COUNT ...]
 *
 * Event I (FIRST <= I < FIRST + COUNT) is the record of schema
 * blockhub.bench.Event {event_id: string, type: string, occurred_at: long}
 * (single-object Avro, FINGERPRINT in hex): event_id "EV-" and I in 12
 * digits, type "t" and I % 7, occurred_at BASE_MS + I * STEP_MS; keyed by
 * block "440303-" and I's block (a hash of I modulo BLOCKS) in 6 digits, on
 * the partition Java's murmur2 gives the key. Producing a range again resends
 * the same events (copies).
 *
 * truth writes, per block with events, a line "block total t0 ... t6
 * window_total last_id last_at" for the events of the ranges given (which
 * must not overlap: the distinct events), the window counted back from the
 * block's newest event.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mix64.h" /* hub/ */

static unsigned
block_of(uint64_t i, unsigned blocks)
{
    return (unsigned)(bh_mix64(i * 0x9E3779B97F4A7C15ULL + 7) % blocks);
}

static int64_t
time_of(uint64_t i, int64_t base, int64_t step)
{
    return base + (int64_t)i * step;
}

static size_t
put_long(unsigned char *p, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 0;
    while (z >= 0x80) {
        p[n++] = (unsigned char)(z | 0x80);
        z >>= 7;
    }
    p[n++] = (unsigned char)z;
    return n;
}

static size_t
put_string(unsigned char *p, const char *s, size_t len)
{
    size_t n = put_long(p, (int64_t)len);
    memcpy(p + n, s, len);
    return n + len;
}

static int
set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s\n", k, err);
        return -1;
    }
    return 0;
}

static int failed;

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err && failed++ < 5)
        fprintf(stderr, "delivery: %s\n", rd_kafka_err2str(m->err));
}

static int
produce(char **argv)
{
    const char *bootstrap = argv[0], *topic = argv[1];
    uint64_t fp = strtoull(argv[2], NULL, 16);
    unsigned blocks = (unsigned)strtoul(argv[3], NULL, 10);
    int64_t base = strtoll(argv[4], NULL, 10), step = strtoll(argv[5], NULL, 10);
    uint64_t first = strtoull(argv[6], NULL, 10), count = strtoull(argv[7], NULL, 10);
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (set(c, "bootstrap.servers", bootstrap) || set(c, "partitioner", "murmur2_random") ||
        set(c, "linger.ms", "50") || set(c, "batch.size", "1000000") ||
        set(c, "compression.codec", "lz4") || set(c, "queue.buffering.max.messages", "1000000") ||
        set(c, "enable.idempotence", "true"))
        return 1;
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t i = first; i < first + count; i++) {
        unsigned char v[128];
        char key[32], id[32], type[8];
        int kl = snprintf(key, sizeof(key), "440303-%06u", block_of(i, blocks));
        int il = snprintf(id, sizeof(id), "EV-%012" PRIu64, i);
        int tl = snprintf(type, sizeof(type), "t%u", (unsigned)(i % 7));
        size_t n = 0;
        v[n++] = 0xC3;
        v[n++] = 0x01;
        for (int b = 0; b < 8; b++)
            v[n++] = (unsigned char)(fp >> (8 * b));
        n += put_string(v + n, id, (size_t)il);
        n += put_string(v + n, type, (size_t)tl);
        n += put_long(v + n, time_of(i, base, step));
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, (size_t)kl),
                RD_KAFKA_V_VALUE(v, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "produce: %s\n", rd_kafka_err2str(e));
                return 1;
            }
            rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 300000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("produced %" PRIu64 " events to %s in %.1f s (%.0f/s)%s\n", count, topic, s,
           (double)count / s, failed ? ", SOME FAILED" : "");
    rd_kafka_destroy(rk);
    return failed ? 1 : 0;
}

struct truth {
    int64_t total, types[7], newest, last_at;
    uint64_t last;
    int64_t *times; /* every event time, for the window */
    uint32_t ntimes, cap;
};

static int
truth(int argc, char **argv)
{
    const char *out = argv[0];
    unsigned blocks = (unsigned)strtoul(argv[1], NULL, 10);
    int64_t base = strtoll(argv[2], NULL, 10), step = strtoll(argv[3], NULL, 10);
    int64_t window = strtoll(argv[4], NULL, 10);
    struct truth *t = calloc(blocks, sizeof(*t));
    if (t == NULL)
        return 1;
    for (unsigned b = 0; b < blocks; b++)
        t[b].newest = INT64_MIN;
    for (int a = 5; a + 1 < argc; a += 2) {
        uint64_t first = strtoull(argv[a], NULL, 10), count = strtoull(argv[a + 1], NULL, 10);
        for (uint64_t i = first; i < first + count; i++) {
            struct truth *x = &t[block_of(i, blocks)];
            int64_t at = time_of(i, base, step);
            x->total++;
            x->types[i % 7]++;
            if (at > x->newest)
                x->newest = at;
            /* ties go to the greatest id: ids sort as the numbers do */
            if (x->total == 1 || at > x->last_at || (at == x->last_at && i > x->last)) {
                x->last_at = at;
                x->last = i;
            }
            if (x->ntimes == x->cap) {
                x->cap = x->cap ? x->cap * 2 : 16;
                x->times = realloc(x->times, x->cap * sizeof(*x->times));
                if (x->times == NULL)
                    return 1;
            }
            x->times[x->ntimes++] = at;
        }
    }
    FILE *f = fopen(out, "w");
    if (f == NULL)
        return 1;
    for (unsigned b = 0; b < blocks; b++) {
        struct truth *x = &t[b];
        if (x->total == 0)
            continue;
        int64_t w = 0;
        for (uint32_t k = 0; k < x->ntimes; k++)
            w += x->newest - x->times[k] < window;
        fprintf(f, "440303-%06u %" PRId64, b, x->total);
        for (int k = 0; k < 7; k++)
            fprintf(f, " %" PRId64, x->types[k]);
        fprintf(f, " %" PRId64 " EV-%012" PRIu64 " %" PRId64 "\n", w, x->last, x->last_at);
        free(x->times);
    }
    fclose(f);
    free(t);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 10 && strcmp(argv[1], "produce") == 0)
        return produce(argv + 2);
    if (argc >= 9 && strcmp(argv[1], "truth") == 0 && (argc - 9) % 2 == 0)
        return truth(argc - 2, argv + 2);
    fprintf(stderr,
            "usage: bench_join_feed produce BOOTSTRAP TOPIC FINGERPRINT BLOCKS BASE_MS STEP_MS "
            "FIRST COUNT\n"
            "       bench_join_feed truth OUT BLOCKS BASE_MS STEP_MS WINDOW_MS FIRST COUNT "
            "[FIRST COUNT ...]\n");
    return 2;
}
