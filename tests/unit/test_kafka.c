/*
 * Fault-injection tests of the hub's producer on librdkafka's in-process mock
 * cluster (the embedded default): delivery reports reach the loop through the
 * queue's fd, and a fatal idempotence error is survived with a new producer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kafka.h"

struct tracker {
    struct bh_delivery d;
    int calls;
    rd_kafka_resp_err_t err;
    int64_t offset;
};

static void
on_done(struct bh_delivery *d, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct tracker *t = (struct tracker *)d;
    (void)partition;
    t->calls++;
    t->err = err;
    t->offset = offset;
}

static uv_timer_t guard;

static void
on_guard(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Run the loop until every tracker has heard back (or 10 s). */
static void
run_until(uv_loop_t *loop, struct tracker *t, size_t n)
{
    uv_timer_start(&guard, on_guard, 10000, 0);
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += t[i].calls > 0;
        if (done == n || !uv_is_active((uv_handle_t *)&guard))
            break;
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&guard);
}

static struct bh_kafka *
embedded(uv_loop_t *loop)
{
    struct bh_kafka *k = NULL;
    char err[512];
    struct bh_kafka_conf c = {.brokers = "embedded", .partitions = 3, .replication = 1};
    assert_int_equal(bh_kafka_new(&k, loop, &c, err, sizeof(err)), 0);
    const char *topics[] = {"t.one"};
    assert_int_equal(bh_kafka_ensure_topics(k, topics, 1, err, sizeof(err)), 0);
    assert_true(bh_kafka_is_embedded(k));
    return k;
}

static void
close_all(uv_loop_t *loop, struct bh_kafka *k)
{
    assert_int_equal(bh_kafka_close(k, 5000), 0);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void
test_delivery_reaches_the_loop(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_init(&loop, &guard);
    struct bh_kafka *k = embedded(&loop);
    struct tracker t[20];
    memset(t, 0, sizeof(t));
    for (int i = 0; i < 20; i++) {
        t[i].d.cb = on_done;
        assert_int_equal(bh_kafka_produce(k, "t.one", "440303-001", 10, "v", 1, NULL, &t[i].d), 0);
    }
    assert_int_equal(bh_kafka_in_flight(k), 20);
    /* No callback runs before the loop does: they come through the queue's fd. */
    for (int i = 0; i < 20; i++)
        assert_int_equal(t[i].calls, 0);
    run_until(&loop, t, 20);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(t[i].calls, 1);
        assert_int_equal(t[i].err, RD_KAFKA_RESP_ERR_NO_ERROR);
        assert_int_equal(t[i].offset, i); /* one key: one partition, in order */
    }
    assert_int_equal(bh_kafka_in_flight(k), 0);
    close_all(&loop, k);
}

static void
test_pinned_properties_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bh_kafka *k = NULL;
    char err[512] = "";
    char *keys[] = {"acks"}, *vals[] = {"1"};
    struct bh_kvlist props = {.k = keys, .v = vals, .n = 1};
    struct bh_kafka_conf c = {.brokers = "embedded", .properties = &props, .partitions = 1};
    assert_int_equal(bh_kafka_new(&k, &loop, &c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "acks=all"));
    char *keys2[] = {"no.such.property"}, *vals2[] = {"1"};
    struct bh_kvlist props2 = {.k = keys2, .v = vals2, .n = 1};
    c.properties = &props2;
    assert_int_equal(bh_kafka_new(&k, &loop, &c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no.such.property"));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void
test_fatal_error_gets_a_new_producer(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_init(&loop, &guard);
    struct bh_kafka *k = embedded(&loop);
    struct tracker before = {.d.cb = on_done}, during = {.d.cb = on_done},
                   after = {.d.cb = on_done};

    assert_int_equal(bh_kafka_produce(k, "t.one", "k", 1, "a", 1, NULL, &before.d), 0);
    run_until(&loop, &before, 1);
    assert_int_equal(before.err, RD_KAFKA_RESP_ERR_NO_ERROR);

    rd_kafka_t *old = bh_kafka_handle(k);
    assert_int_equal(rd_kafka_test_fatal_error(old, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                               "injected by test_kafka"),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    /* Until the error is seen on the loop, produce may still queue; either way
     * the tracker hears exactly one result. */
    int rc = bh_kafka_produce(k, "t.one", "k", 1, "b", 1, NULL, &during.d);
    if (rc == 0)
        run_until(&loop, &during, 1);
    /* Let the restart happen. */
    for (int i = 0; i < 200 && bh_kafka_restarts(k) == 0; i++)
        uv_run(&loop, UV_RUN_NOWAIT), usleep(10000);
    assert_int_equal(bh_kafka_restarts(k), 1);
    if (rc == 0)
        assert_int_equal(during.calls, 1);

    assert_int_equal(bh_kafka_produce(k, "t.one", "k", 1, "c", 1, NULL, &after.d), 0);
    run_until(&loop, &after, 1);
    assert_int_equal(after.calls, 1);
    assert_int_equal(after.err, RD_KAFKA_RESP_ERR_NO_ERROR);
    close_all(&loop, k);
}

/* librdkafka's own table tells which clients a property applies to. */
static void
test_property_scope(void **state)
{
    (void)state;
    assert_int_equal(bh_kafka_property_scope("linger.ms"), BH_KAFKA_SCOPE_PRODUCER);
    assert_int_equal(bh_kafka_property_scope("enable.idempotence"), BH_KAFKA_SCOPE_PRODUCER);
    assert_int_equal(bh_kafka_property_scope("acks"), BH_KAFKA_SCOPE_PRODUCER); /* a topic one */
    assert_int_equal(bh_kafka_property_scope("group.id"), BH_KAFKA_SCOPE_CONSUMER);
    assert_int_equal(bh_kafka_property_scope("fetch.min.bytes"), BH_KAFKA_SCOPE_CONSUMER);
    assert_int_equal(bh_kafka_property_scope("auto.offset.reset"), BH_KAFKA_SCOPE_CONSUMER);
    assert_int_equal(bh_kafka_property_scope("bootstrap.servers"), BH_KAFKA_SCOPE_BOTH);
    assert_int_equal(bh_kafka_property_scope("security.protocol"), BH_KAFKA_SCOPE_BOTH);
    assert_int_equal(bh_kafka_property_scope("blockhub.no.such.property"), BH_KAFKA_SCOPE_UNKNOWN);
    /* The table's own words are no property. */
    assert_int_equal(bh_kafka_property_scope("Property"), BH_KAFKA_SCOPE_UNKNOWN);
    assert_int_equal(bh_kafka_property_scope(""), BH_KAFKA_SCOPE_UNKNOWN);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delivery_reaches_the_loop),
        cmocka_unit_test(test_pinned_properties_refused),
        cmocka_unit_test(test_fatal_error_gets_a_new_producer),
        cmocka_unit_test(test_property_scope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
