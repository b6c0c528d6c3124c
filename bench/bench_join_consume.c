/*
 * The ceiling of the join benchmark: librdkafka's high-level consumer alone,
 * configured like the join's (range assignment, read_committed, no
 * auto-commit, queued.min.messages 1000000), reading the same topics from the beginning to their
 * end and doing nothing with the records. Prints the records read, wall and CPU time (all threads,
 * getrusage) from the first record to the last end of partition.
 *
 *     bench_join_consume BOOTSTRAP TOPIC [TOPIC...]
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_clock.h"

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

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_join_consume BOOTSTRAP TOPIC [TOPIC...]\n");
        return 2;
    }
    char group[64], err[512];
    snprintf(group, sizeof(group), "bench-ceiling-%ld", (long)time(NULL));
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (set(c, "bootstrap.servers", argv[1]) || set(c, "group.id", group) ||
        set(c, "partition.assignment.strategy", "range") ||
        set(c, "isolation.level", "read_committed") || set(c, "enable.auto.commit", "false") ||
        set(c, "enable.auto.offset.store", "false") || set(c, "auto.offset.reset", "earliest") ||
        set(c, "enable.partition.eof", "true") || set(c, "queued.min.messages", "1000000"))
        return 2;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    rd_kafka_poll_set_consumer(rk);
    int partitions = 0;
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(argc - 2);
    for (int i = 2; i < argc; i++) {
        rd_kafka_topic_partition_list_add(sub, argv[i], RD_KAFKA_PARTITION_UA);
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, argv[i], NULL);
        const struct rd_kafka_metadata *md;
        if (rd_kafka_metadata(rk, 0, t, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
            md->topic_cnt != 1) {
            fprintf(stderr, "no metadata for %s\n", argv[i]);
            return 1;
        }
        partitions += md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(t);
    }
    rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);

    uint64_t records = 0, bytes = 0;
    int eofs = 0;
    double t0 = 0, c0 = 0, t1 = 0, c1 = 0;
    char(*seen)[300] = calloc((size_t)partitions, sizeof(*seen));
    while (eofs < partitions) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            char id[300];
            snprintf(id, sizeof(id), "%s/%" PRId32, rd_kafka_topic_name(m->rkt), m->partition);
            int dup = 0;
            for (int i = 0; i < eofs; i++)
                dup |= strcmp(seen[i], id) == 0;
            if (!dup)
                snprintf(seen[eofs++], sizeof(seen[0]), "%s", id);
            t1 = mono_s();
            c1 = self_cpu();
        } else if (m->err) {
            fprintf(stderr, "%s\n", rd_kafka_message_errstr(m));
        } else {
            if (records++ == 0) {
                t0 = mono_s();
                c0 = self_cpu();
            }
            bytes += m->len;
        }
        rd_kafka_message_destroy(m);
    }
    double wall = t1 - t0, cpu = c1 - c0;
    printf("ceiling: %" PRIu64 " records (%.1f MB) in %.2f s wall, %.2f s CPU: %.0f records/s, "
           "%.2f CPU-s per million\n",
           records, (double)bytes / 1e6, wall, cpu, (double)records / wall,
           cpu / ((double)records / 1e6));
    free(seen);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}
