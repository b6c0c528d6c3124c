#include <librdkafka/rdkafka.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "lograte.h"

/* What bh_lograte_flush reported. */
struct emitted {
    int n;
    int level[8];
    char component[8][BH_LOGRATE_COMP];
    char text[8][BH_LOGRATE_TEXT];
    unsigned long dropped[8];
};

static void
emit(int level, const char *component, const char *text, unsigned long dropped, void *arg)
{
    struct emitted *e = arg;
    assert_true(e->n < 8);
    e->level[e->n] = level;
    snprintf(e->component[e->n], sizeof(e->component[0]), "%s", component);
    snprintf(e->text[e->n], sizeof(e->text[0]), "%s", text);
    e->dropped[e->n] = dropped;
    e->n++;
}

static int
check(struct bh_lograte *r, const char *text, uint64_t now, unsigned long *dropped)
{
    return bh_lograte_check(r, BH_LOG_WARN, "kafka", NULL, text, now, dropped);
}

static void
test_copies_within_the_window_are_counted(void **state)
{
    (void)state;
    struct bh_lograte r;
    unsigned long d = 99;
    bh_lograte_init(&r, 10000);
    assert_int_equal(check(&r, "broker down", 1000, &d), 1);
    assert_int_equal(d, 0);
    for (int i = 1; i <= 5; i++)
        assert_int_equal(check(&r, "broker down", 1000 + (uint64_t)i * 1000, &d), 0);
    /* another text, level or component is another line */
    assert_int_equal(check(&r, "broker up", 2000, &d), 1);
    assert_int_equal(bh_lograte_check(&r, BH_LOG_ERROR, "kafka", NULL, "broker down", 2000, &d), 1);
    assert_int_equal(bh_lograte_check(&r, BH_LOG_WARN, "join", NULL, "broker down", 2000, &d), 1);
    /* the window is over: the next copy is written with the count */
    assert_int_equal(check(&r, "broker down", 11000, &d), 1);
    assert_int_equal(d, 5);
    assert_int_equal(check(&r, "broker down", 11001, &d), 0);
    assert_int_equal(check(&r, "broker down", 21000, &d), 1);
    assert_int_equal(d, 1);
    /* a text seen once, long ago, is written as new */
    assert_int_equal(check(&r, "broker down", 60000, &d), 1);
    assert_int_equal(d, 0);
}

static void
test_flush_reports_counts_once_per_window(void **state)
{
    (void)state;
    struct bh_lograte r;
    struct emitted e = {0};
    unsigned long d;
    bh_lograte_init(&r, 10000);
    assert_int_equal(bh_lograte_flush(&r, 0, emit, &e), -1);
    assert_int_equal(check(&r, "refused", 1000, &d), 1);
    assert_int_equal(check(&r, "timed out", 3000, &d), 1);
    /* nothing left out yet: nothing due */
    assert_int_equal(bh_lograte_flush(&r, 4000, emit, &e), -1);
    assert_int_equal(check(&r, "refused", 4000, &d), 0);
    assert_int_equal(check(&r, "refused", 5000, &d), 0);
    assert_int_equal(check(&r, "timed out", 6000, &d), 0);
    /* due when the first window ends */
    assert_int_equal(bh_lograte_flush(&r, 5000, emit, &e), 6000);
    assert_int_equal(e.n, 0);
    assert_int_equal(bh_lograte_flush(&r, 11000, emit, &e), 2000);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.text[0], "refused");
    assert_string_equal(e.component[0], "kafka");
    assert_int_equal(e.level[0], BH_LOG_WARN);
    assert_int_equal(e.dropped[0], 2);
    assert_int_equal(bh_lograte_flush(&r, 13000, emit, &e), -1);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.text[1], "timed out");
    assert_int_equal(e.dropped[1], 1);
    /* a summary starts a new window: a copy right after it is counted, not written */
    assert_int_equal(check(&r, "refused", 12000, &d), 0);
    assert_int_equal(bh_lograte_flush(&r, 21000, emit, &e), -1);
    assert_int_equal(e.n, 3);
    assert_int_equal(e.dropped[2], 1);
    /* and nothing more after that */
    assert_int_equal(bh_lograte_flush(&r, 40000, emit, &e), -1);
    assert_int_equal(e.n, 3);
}

static void
test_key_and_latest_text(void **state)
{
    (void)state;
    struct bh_lograte r;
    struct emitted e = {0};
    unsigned long d;
    bh_lograte_init(&r, 10000);
    assert_int_equal(bh_lograte_check(&r, BH_LOG_WARN, "kafka", "k", "first", 0, &d), 1);
    assert_int_equal(bh_lograte_check(&r, BH_LOG_WARN, "kafka", "k", "second", 10, &d), 0);
    assert_int_equal(bh_lograte_check(&r, BH_LOG_WARN, "kafka", "k", "third", 20, &d), 0);
    bh_lograte_flush_all(&r, emit, &e);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.text[0], "third");
    assert_int_equal(e.dropped[0], 2);
    /* flush_all forgets every key */
    assert_int_equal(bh_lograte_check(&r, BH_LOG_WARN, "kafka", "k", "fourth", 30, &d), 1);
    assert_int_equal(d, 0);
}

static void
test_full_table_writes_new_keys(void **state)
{
    (void)state;
    struct bh_lograte r;
    char text[32];
    unsigned long d;
    bh_lograte_init(&r, 10000);
    for (int i = 0; i < BH_LOGRATE_SLOTS; i++) {
        snprintf(text, sizeof(text), "line %d", i);
        assert_int_equal(check(&r, text, 0, &d), 1);
        assert_int_equal(check(&r, text, 1, &d), 0);
    }
    /* every slot busy: a new key is written, every time */
    assert_int_equal(check(&r, "one more", 2, &d), 1);
    assert_int_equal(check(&r, "one more", 3, &d), 1);
    /* the followed ones still are limited */
    assert_int_equal(check(&r, "line 7", 4, &d), 0);
    /* long texts are compared cut */
    char a[BH_LOGRATE_TEXT + 50], b[BH_LOGRATE_TEXT + 50];
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[sizeof(b) - 2] = 'y';
    bh_lograte_init(&r, 10000);
    assert_int_equal(check(&r, a, 0, &d), 1);
    assert_int_equal(check(&r, b, 1, &d), 0);
}

static void
test_kafka_levels(void **state)
{
    (void)state;
    /* what the client retries by itself is a warning */
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR__TRANSPORT), BH_LOG_WARN);
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN),
                     BH_LOG_WARN);
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR__TIMED_OUT), BH_LOG_WARN);
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT),
                     BH_LOG_WARN);
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR__RESOLVE), BH_LOG_WARN);
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION),
                     BH_LOG_WARN);
    /* what needs an operator is an error */
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR__FATAL), BH_LOG_ERROR);
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR__AUTHENTICATION), BH_LOG_ERROR);
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR__SSL), BH_LOG_ERROR);
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED),
                     BH_LOG_ERROR);
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED),
                     BH_LOG_ERROR);
    assert_int_equal(bh_lograte_kafka_error_level(RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED),
                     BH_LOG_ERROR);
    /* the client's own lines: FAIL repeats what the error callback reports */
    assert_int_equal(bh_lograte_kafka_log_level(3, "FAIL"), BH_LOG_DEBUG);
    assert_int_equal(bh_lograte_kafka_log_level(3, "PROTOERR"), BH_LOG_ERROR);
    assert_int_equal(bh_lograte_kafka_log_level(4, "GETPID"), BH_LOG_WARN);
    assert_int_equal(bh_lograte_kafka_log_level(5, "REQTMOUT"), BH_LOG_WARN);
    assert_int_equal(bh_lograte_kafka_log_level(6, "CONFWARN"), BH_LOG_DEBUG);
    assert_int_equal(bh_lograte_kafka_log_level(7, "BROKER"), BH_LOG_DEBUG);
}

static void
test_kafka_key(void **state)
{
    (void)state;
    char a[256], b[256];
    bh_lograte_kafka_key("127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection "
                         "refused (after 0ms in state CONNECT)",
                         a, sizeof(a));
    bh_lograte_kafka_key("127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection "
                         "refused (after 3ms in state CONNECT, 60 identical error(s) suppressed)",
                         b, sizeof(b));
    assert_string_equal(a, "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: "
                           "Connection refused");
    assert_string_equal(a, b);
    bh_lograte_kafka_key("Timed out ProduceRequest in flight (after 60012ms, timeout #0)", a,
                         sizeof(a));
    assert_string_equal(a, "Timed out ProduceRequest in flight");
    /* other texts are their own key; another broker is another key */
    bh_lograte_kafka_key("1/1 brokers are down", a, sizeof(a));
    assert_string_equal(a, "1/1 brokers are down");
    bh_lograte_kafka_key("x (after the storm)", a, sizeof(a));
    assert_string_equal(a, "x (after the storm)");
    bh_lograte_kafka_key("x (after 1ms) and more", a, sizeof(a));
    assert_string_equal(a, "x (after 1ms) and more");
    bh_lograte_kafka_key("a:2/bootstrap: Connect failed (after 0ms in state CONNECT)", b,
                         sizeof(b));
    bh_lograte_kafka_key("a:1/bootstrap: Connect failed (after 0ms in state CONNECT)", a,
                         sizeof(a));
    assert_string_not_equal(a, b);
    /* cut to the size given */
    bh_lograte_kafka_key("abcdef", a, 4);
    assert_string_equal(a, "abc");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copies_within_the_window_are_counted),
        cmocka_unit_test(test_flush_reports_counts_once_per_window),
        cmocka_unit_test(test_key_and_latest_text),
        cmocka_unit_test(test_full_table_writes_new_keys),
        cmocka_unit_test(test_kafka_levels),
        cmocka_unit_test(test_kafka_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
