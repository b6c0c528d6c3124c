/*
 * The traffic hello line (adapters/traffic/traffic_hello.h): which lines are
 * hellos, what a hello carries, why a bad one is refused, and the token check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/traffic/traffic_hello.h"

static enum bh_hello_kind
parse(const char *line, struct bh_traffic_hello *h, char *why)
{
    return bh_traffic_hello_parse(line, strlen(line), h, why, 256);
}

static void
test_a_hello_is_taken(void **state)
{
    (void)state;
    struct bh_traffic_hello h;
    char why[256];
    assert_int_equal(
        parse(" {\"hello\": 1, \"gateway\": \"交警-gw-03\", \"token\": \"s3cr\\u0065t\", "
              "\"ack\": true, \"later\": {\"x\": [1, null]}} ",
              &h, why),
        BH_HELLO_OK);
    assert_int_equal(h.version, 1);
    assert_true(h.ack);
    assert_string_equal(h.gateway, "交警-gw-03");
    assert_true(h.has_token);
    assert_string_equal(h.token, "s3cret"); /* escapes decoded */
    assert_int_equal(h.token_len, 6);
    /* the least: no gateway, no token, no ack */
    assert_int_equal(parse("{\"hello\":1}", &h, why), BH_HELLO_OK);
    assert_false(h.ack);
    assert_false(h.has_token);
    assert_string_equal(h.gateway, "");
    assert_int_equal(parse("{\"ack\":false,\"hello\":1}", &h, why), BH_HELLO_OK);
    assert_false(h.ack);
}

static void
test_other_lines_are_not_hellos(void **state)
{
    (void)state;
    struct bh_traffic_hello h;
    char why[256];
    const char *lines[] = {
        "{\"event_id\":\"JJ-1\",\"device\":\"CAM\",\"type\":\"red_light\"}",
        "{\"type\":\"heartbeat\"}",
        "not json \"hello\"",
        "[\"hello\", 1]",
        "{\"hello\":1",                   /* cut off */
        "{\"x\":\"hello\"}",              /* a value, not a member */
        "{\"hello\":1} {\"hello\":1}",    /* two values */
        "{\"a\":{\"hello\":1}}",          /* nested */
        "{\"hello\":1,\"ack\":\"\xff\"}", /* not UTF-8 */
        "",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        assert_int_equal(parse(lines[i], &h, why), BH_HELLO_NOT);
}

static void
test_bad_hellos_say_why(void **state)
{
    (void)state;
    struct bh_traffic_hello h;
    char why[256];
    static const struct {
        const char *line, *why;
    } bad[] = {
        {"{\"hello\":2}", "version"},
        {"{\"hello\":\"1\"}", "version"},
        {"{\"hello\":1,\"ack\":1}", "\"ack\""},
        {"{\"ack\":\"yes\",\"hello\":1}", "\"ack\""},
        {"{\"hello\":1,\"token\":7}", "\"token\" is not a string"},
        {"{\"hello\":1,\"gateway\":\"a\\u0001b\"}", "control character"},
        {"{\"hello\":1,\"hello\":1}", "twice"},
        {"{\"token\":\"a\",\"token\":\"b\",\"hello\":1}", "twice"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i].line, &h, why), BH_HELLO_BAD);
        if (strstr(why, bad[i].why) == NULL)
            fail_msg("%s: '%s' does not say '%s'", bad[i].line, why, bad[i].why);
        assert_string_equal(h.token, ""); /* not kept */
    }
    /* too long */
    char line[1200];
    snprintf(line, sizeof(line), "{\"hello\":1,\"gateway\":\"%0129d\"}", 0);
    assert_int_equal(parse(line, &h, why), BH_HELLO_BAD);
    assert_non_null(strstr(why, "more than 128"));
    snprintf(line, sizeof(line), "{\"hello\":1,\"token\":\"%0513d\"}", 0);
    assert_int_equal(parse(line, &h, why), BH_HELLO_BAD);
}

static void
test_tokens(void **state)
{
    (void)state;
    char *tokens[] = {"first-token", "second"};
    assert_true(bh_traffic_token_ok("second", 6, tokens, 2));
    assert_true(bh_traffic_token_ok("first-token", 11, tokens, 2));
    assert_false(bh_traffic_token_ok("secon", 5, tokens, 2));
    assert_false(bh_traffic_token_ok("second!", 7, tokens, 2));
    assert_false(bh_traffic_token_ok("Second", 6, tokens, 2));
    assert_false(bh_traffic_token_ok("", 0, tokens, 2));
    assert_false(bh_traffic_token_ok("second", 6, tokens, 0));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_hello_is_taken),
        cmocka_unit_test(test_other_lines_are_not_hellos),
        cmocka_unit_test(test_bad_hellos_say_why),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
