/*
 * Baseline sender of the end-to-end latency benchmark (bench/run-latency.sh,
 * bench/latency_bench.py): a librdkafka producer alone, with no blockhub,
 * paced like the other senders.
 *
 *   bench_latency_produce BOOTSTRAP TOPIC RATE SECONDS OUT [LINGER_MS]
 *
 * Produces RATE records a second for SECONDS to TOPIC with blockhub's producer
 * settings (acks all, idempotence, linger.ms LINGER_MS, default 5): values of
 * 150 bytes, keys of 64 blocks, and the two headers blockhub puts on a traffic
 * record (blockhub.event_id "KB-<n>", n from 1, and blockhub.adapter). Record
 * i is due at i / RATE seconds after the start; every millisecond the records
 * due by then are produced, each with its own hand-off time, taken just before
 * its rd_kafka_producev call. OUT receives, for each record produced, in
 * order, that wall-clock time (CLOCK_REALTIME, ns, 8 bytes little-endian).
 * Then it flushes (60 s at most) and prints one line of key=value:
 *
 *   records delivered failed lag_p99_ms lag_max_ms gen_cpu
 *
 * lag: how late each millisecond's records went out against their schedule;
 * gen_cpu: this program's CPU seconds a second of sending.
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"

#define KEYS      64
#define VALUE_LEN 150

static uint64_t
clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    uint64_t *counts = opaque;
    counts[m->err ? 1 : 0]++;
}

static int
set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "bench_latency_produce: %s: %s\n", k, err);
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: bench_latency_produce BOOTSTRAP TOPIC RATE SECONDS OUT "
                        "[LINGER_MS]\n");
        return 2;
    }
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    const char *linger = argc == 7 ? argv[6] : "5";
    if (rate <= 0 || seconds <= 0) {
        fprintf(stderr, "bench_latency_produce: RATE > 0, SECONDS > 0\n");
        return 2;
    }
    static uint64_t counts[2];
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (set(conf, "bootstrap.servers", argv[1]) || set(conf, "linger.ms", linger) ||
        set(conf, "acks", "all") || set(conf, "enable.idempotence", "true") ||
        set(conf, "partitioner", "murmur2_random") ||
        set(conf, "queue.buffering.max.messages", "2000000"))
        return 1;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, counts);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "bench_latency_produce: %s\n", err);
        return 1;
    }
    /* a hand-off time per record, a lag per millisecond tick */
    size_t cap = (size_t)(rate * seconds) + 16, lagcap = (size_t)(seconds * 1000) + 16, n = 0,
           nlag = 0;
    uint64_t *wall = malloc(cap * sizeof *wall), *lag = malloc(lagcap * sizeof *lag);
    if (wall == NULL || lag == NULL) {
        fprintf(stderr, "bench_latency_produce: out of memory\n");
        return 1;
    }
    char keys[KEYS][16], value[VALUE_LEN], id[32];
    for (int k = 0; k < KEYS; k++)
        snprintf(keys[k], sizeof keys[k], "440303-%03d", k);
    memset(value, 'x', sizeof value);
    double cpu0 = self_cpu();
    uint64_t t0 = clock_ns(CLOCK_MONOTONIC), stop = t0 + (uint64_t)(seconds * 1e9);
    uint64_t tick = 1000000;
    for (uint64_t now = t0; now < stop; now = clock_ns(CLOCK_MONOTONIC)) {
        size_t due = (size_t)((double)(now - t0) / 1e9 * rate) + 1;
        if (due > cap)
            due = cap;
        if (n < due && nlag < lagcap) {
            double sched = (double)n / rate * 1e9;
            lag[nlag++] = (double)(now - t0) > sched ? (uint64_t)((double)(now - t0) - sched) : 0;
        }
        while (n < due) {
            int len = snprintf(id, sizeof id, "KB-%zu", n + 1);
            wall[n] = clock_ns(CLOCK_REALTIME);
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(keys[n % KEYS], strlen(keys[n % KEYS])),
                RD_KAFKA_V_VALUE(value, sizeof value),
                RD_KAFKA_V_HEADER("blockhub.event_id", id, len),
                RD_KAFKA_V_HEADER("blockhub.adapter", "kafka", 5), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(rk, 1);
                continue;
            }
            if (e) {
                fprintf(stderr, "bench_latency_produce: %s\n", rd_kafka_err2str(e));
                return 1;
            }
            n++;
        }
        rd_kafka_poll(rk, 0);
        uint64_t after = clock_ns(CLOCK_MONOTONIC), into = (after - t0) % tick;
        struct timespec ts = {0, (long)(tick - into)};
        nanosleep(&ts, NULL);
    }
    double gen_cpu = (self_cpu() - cpu0) / seconds;
    rd_kafka_flush(rk, 60000);
    FILE *f = fopen(argv[5], "wb");
    if (!f || (n > 0 && fwrite(wall, sizeof *wall, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "bench_latency_produce: %s: cannot write\n", argv[5]);
        return 1;
    }
    qsort(lag, nlag, sizeof *lag, cmp_u64);
    printf("records=%zu delivered=%llu failed=%llu lag_p99_ms=%.3f lag_max_ms=%.3f "
           "gen_cpu=%.2f\n",
           n, (unsigned long long)counts[0], (unsigned long long)counts[1],
           nlag ? lag[(size_t)(0.99 * (double)nlag)] / 1e6 : 0.0, nlag ? lag[nlag - 1] / 1e6 : 0.0,
           gen_cpu);
    rd_kafka_destroy(rk);
    free(wall);
    free(lag);
    return counts[1] ? 1 : 0;
}
