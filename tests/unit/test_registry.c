/*
 * The schema registry client's pure parts: the subject strategies (the names
 * Confluent's serializers use, so that other producers and consumers of a
 * topic meet blockhub's schemas under the same subject).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "registry.h"

static void
test_strategies(void **state)
{
    (void)state;
    enum bh_subject_strategy s;
    char out[200];
    assert_int_equal(bh_subject_strategy_parse("topic", &s), 0);
    assert_int_equal(s, BH_SUBJECT_TOPIC);
    bh_registry_subject(s, "dept.fire", "blockhub.fire.FireEvent", out, sizeof(out));
    assert_string_equal(out, "dept.fire-value");
    assert_int_equal(bh_subject_strategy_parse("RecordNameStrategy", &s), 0);
    assert_int_equal(s, BH_SUBJECT_RECORD);
    bh_registry_subject(s, "dept.fire", "blockhub.fire.FireEvent", out, sizeof(out));
    assert_string_equal(out, "blockhub.fire.FireEvent");
    assert_int_equal(bh_subject_strategy_parse("topic_record", &s), 0);
    assert_int_equal(s, BH_SUBJECT_TOPIC_RECORD);
    bh_registry_subject(s, "dept.fire", "blockhub.fire.FireEvent", out, sizeof(out));
    assert_string_equal(out, "dept.fire-blockhub.fire.FireEvent");
    assert_int_equal(bh_subject_strategy_parse("TopicNameStrategy", &s), 0);
    assert_int_equal(s, BH_SUBJECT_TOPIC);
    assert_int_equal(bh_subject_strategy_parse("subject", &s), -EINVAL);
    assert_int_equal(bh_subject_strategy_parse("", &s), -EINVAL);
    /* cut to the buffer, NUL-terminated */
    bh_registry_subject(BH_SUBJECT_TOPIC, "dept.fire", "x", out, 6);
    assert_string_equal(out, "dept.");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strategies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
