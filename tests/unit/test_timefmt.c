#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "timefmt.h"

static int64_t
parse(const char *s, int *off)
{
    int64_t ms = 0;
    int o = 0;
    assert_int_equal(bh_parse_rfc3339(s, strlen(s), &ms, &o), 0);
    if (off != NULL)
        *off = o;
    return ms;
}

static void
rejects(const char *s)
{
    int64_t ms;
    int o;
    assert_int_equal(bh_parse_rfc3339(s, strlen(s), &ms, &o), -EINVAL);
}

static void
test_epoch_and_offsets(void **state)
{
    (void)state;
    int off;
    assert_int_equal(parse("1970-01-01T00:00:00Z", &off), 0);
    assert_int_equal(off, 0);
    /* 2026-11-27T08:15:00+08:00 is 00:15 UTC: 1795738500 s since the epoch */
    assert_int_equal(parse("2026-11-27T08:15:00+08:00", &off), 1795738500000LL);
    assert_int_equal(off, 480);
    assert_int_equal(parse("2026-11-27T00:15:00Z", NULL), 1795738500000LL);
    assert_int_equal(parse("2026-11-26T19:45:00-04:30", &off), 1795738500000LL);
    assert_int_equal(off, -270);
    assert_int_equal(parse("2026-11-27t00:15:00.5z", NULL), 1795738500500LL);
    assert_int_equal(parse("2026-11-27 00:15:00.123456Z", NULL), 1795738500123LL);
    assert_int_equal(parse("1969-12-31T23:59:59Z", NULL), -1000);
}

static void
test_calendar(void **state)
{
    (void)state;
    assert_int_equal(parse("2024-02-29T00:00:00Z", NULL), 1709164800000LL);
    assert_int_equal(parse("2000-03-01T00:00:00Z", NULL), 951868800000LL);
    rejects("2026-02-29T00:00:00Z"); /* not a leap year */
    rejects("1900-02-29T00:00:00Z");
    rejects("2026-13-01T00:00:00Z");
    rejects("2026-04-31T00:00:00Z");
    rejects("2026-11-27T24:00:00Z");
    rejects("2026-11-27T23:60:00Z");
    rejects("2026-11-27T23:59:60Z");
    rejects("2026-00-10T00:00:00Z");
}

static void
test_syntax(void **state)
{
    (void)state;
    rejects("");
    rejects("2026-11-27");
    rejects("2026-11-27T08:15:00");        /* no offset */
    rejects("2026-11-27T08:15+08:00");     /* no seconds */
    rejects("2026-11-27T08:15:00+0800");   /* offset without colon */
    rejects("2026-11-27T08:15:00+08:00 "); /* trailing */
    rejects("2026/11/27T08:15:00Z");
    rejects("2026-11-27T08:15:00.Z");
    rejects("26-11-27T08:15:00Z");
    rejects("2026-11-27T08:15:00+25:00");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epoch_and_offsets),
        cmocka_unit_test(test_calendar),
        cmocka_unit_test(test_syntax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
