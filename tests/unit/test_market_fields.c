/* The market feed's field rules: USCC, fines, times, coordinates (adapters/market/). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/market/decimal.h"
#include "adapters/market/fields.h"
#include "adapters/market/uscc.h"

static int
uscc(const char *s, char *expected)
{
    return bh_market_uscc_check(s, strlen(s), expected);
}

static void
test_uscc_valid(void **state)
{
    (void)state;
    /* The standard's own example, codes of the sample file, and two computed apart from
     * blockhub (Python) whose check sums land on 31 -> '0' and on 'Y'. */
    static const char *const valid[] = {
        "91350100M000100Y43", "9144030378YRPLDPGR", "91440303M2QCKDR2D9", "914403033K7LTJ1G2R",
        "91440303K3B00X1HH9", "910F1F8M3N6MF9NG90", "92H8W4TDUH8NDBMWCY",
    };
    char e;
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        assert_int_equal(uscc(valid[i], &e), 0);
        assert_int_equal(e, valid[i][17]);
    }
}

static void
test_uscc_invalid(void **state)
{
    (void)state;
    char e;
    /* the sample's SCJG-2026-000019: the check character should be '5' */
    assert_int_equal(uscc("91440303MA5XXXXXX1", &e), -EINVAL);
    assert_int_equal(e, '5');
    assert_int_equal(uscc("91350100M000100Y44", &e), -EINVAL);
    assert_int_equal(e, '3');
    assert_int_equal(uscc("910F1F8M3N6MF9NG9Y", &e), -EINVAL);
    assert_int_equal(e, '0');
    /* length, and characters outside the set (I O S V Z, lower case, punctuation) */
    static const char *const bad[] = {
        "91350100M000100Y4",  "91350100M000100Y433", "",
        "91350100I000100Y43", "91350100O000100Y43",  "91350100S000100Y43",
        "91350100V000100Y43", "91350100Z000100Y43",  "91350100m000100Y43",
        "91350100-000100Y43", "91350100M000100Y4I",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(uscc(bad[i], &e), -EINVAL);
        if (strlen(bad[i]) != 18 || i < 9)
            assert_int_equal(e, '\0');
    }
}

static int64_t
fen(const char *s)
{
    int64_t v = -1;
    assert_int_equal(bh_market_decimal_parse_fen(s, strlen(s), 12, &v), 0);
    return v;
}

static void
test_fines(void **state)
{
    (void)state;
    assert_int_equal(fen("0"), 0);
    assert_int_equal(fen("12.5"), 1250);
    assert_int_equal(fen("12.50"), 1250);
    assert_int_equal(fen("1234567.89"), 123456789);
    assert_int_equal(fen("0.01"), 1);
    assert_int_equal(fen("14947.73"), 1494773);
    assert_int_equal(fen("007"), 700);
    assert_int_equal(fen("999999999999.99"), 99999999999999LL);
    static const char *const bad[] = {"1.234", "-1", "abc", "1e3",   "",      ".5",   "5.",
                                      " 1",    "1 ", "+1",  "1,000", "1.2.3", "0x10", "１"};
    int64_t v = 42;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(bh_market_decimal_parse_fen(bad[i], strlen(bad[i]), 12, &v), -EINVAL);
    assert_int_equal(v, 42);
    assert_int_equal(bh_market_decimal_parse_fen("1000000000000", 13, 12, &v), -ERANGE);
}

static void
test_decimal_bytes(void **state)
{
    (void)state;
    static const struct {
        int64_t v;
        size_t n;
        unsigned char b[8];
    } cases[] = {
        {0, 1, {0x00}},          {1, 1, {0x01}},
        {127, 1, {0x7f}},        {128, 2, {0x00, 0x80}},
        {1250, 2, {0x04, 0xe2}}, {123456789, 4, {0x07, 0x5b, 0xcd, 0x15}},
        {-1, 1, {0xff}},         {-128, 1, {0x80}},
        {-129, 2, {0xff, 0x7f}}, {99999999999999LL, 6, {0x5a, 0xf3, 0x10, 0x7a, 0x3f, 0xff}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char out[8];
        size_t n = bh_market_decimal_to_bytes(cases[i].v, out);
        assert_int_equal(n, cases[i].n);
        assert_memory_equal(out, cases[i].b, n);
    }
}

static int64_t
when(const char *s)
{
    int64_t ms = 0;
    assert_int_equal(bh_market_parse_time(s, strlen(s), &ms), 0);
    return ms;
}

static void
test_times(void **state)
{
    (void)state;
    /* 2026-11-27 09:03:07 in Shanghai is 01:03:07 UTC */
    assert_int_equal(when("2026-11-27 09:03:07"), 1795741387000LL);
    assert_int_equal(when("2026/11/27 09:30"), 1795743000000LL);
    /* across midnight and the year: 07:59:59 on 1 January is 23:59:59 UTC the day before */
    assert_int_equal(when("2026-01-01 07:59:59"), 1767225599000LL);
    assert_int_equal(when("2024/02/29 08:00"), 1709164800000LL);
    static const char *const bad[] = {
        "27/11/2026 25:61",     "2026-11-27 24:00:00", "2026-02-29 10:00:00",
        "2026-11-31 10:00:00",  "2026-11-27 09:60:00", "2026-11-27 09:00:60",
        "2026-13-01 10:00:00",  "2026-00-01 10:00:00", "2026-11-27T09:03:07",
        "2026-11-27 09:03",     "2026/11/27 09:30:00", "2026-11-27 9:03:07",
        "2026-11/27 09:03:07",  "2026/11/27 09:3x",    "",
        "2026-11-27 09:03:07Z",
    };
    int64_t ms;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(bh_market_parse_time(bad[i], strlen(bad[i]), &ms), -EINVAL);
}

static void
test_coordinates(void **state)
{
    (void)state;
    double v;
    assert_int_equal(bh_market_parse_coord("114.139745", 10, 180, &v), 0);
    assert_true(v == 114.139745);
    assert_int_equal(bh_market_parse_coord("-22", 3, 90, &v), 0);
    assert_true(v == -22.0);
    static const char *const bad[] = {"",    "abc", "1e2", "+1",     " 1",  "1.",   ".5",
                                      "nan", "inf", "181", "-180.5", "1,5", "0x1p3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(bh_market_parse_coord(bad[i], strlen(bad[i]), 180, &v), -EINVAL);
    assert_int_equal(bh_market_parse_coord("90.5", 4, 90, &v), -EINVAL);

    /* the same double as strtod, for many numbers of every length (the exact fast path up
     * to 15 digits, strtod beyond) */
    srand(11);
    for (int i = 0; i < 200000; i++) {
        char text[40];
        int whole = rand() % 181, nfrac = rand() % 19;
        int n = snprintf(text, sizeof(text), "%s%d", rand() % 2 ? "-" : "", whole);
        if (nfrac > 0) {
            text[n++] = '.';
            for (int k = 0; k < nfrac; k++)
                text[n++] = (char)('0' + rand() % 10);
            text[n] = '\0';
        }
        double want = strtod(text, NULL);
        if (want < -180 || want > 180)
            continue;
        assert_int_equal(bh_market_parse_coord(text, (size_t)n, 180, &v), 0);
        assert_memory_equal(&v, &want, sizeof(v));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uscc_valid), cmocka_unit_test(test_uscc_invalid),
        cmocka_unit_test(test_fines),      cmocka_unit_test(test_decimal_bytes),
        cmocka_unit_test(test_times),      cmocka_unit_test(test_coordinates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
