/*
 * The component interface's defaults (hub/component.c) and the back-pressure
 * arithmetic every reading adapter shares (hub/publish.h).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hub.h"
#include "publish.h"

static int stops, all_stopped;

static int
start_ok(struct bh_component *c, char *errstr, size_t n)
{
    (void)c;
    (void)errstr;
    (void)n;
    return 0;
}

static void
stop_now(struct bh_component *c)
{
    stops++;
    bh_component_stopped(c);
}

static void
destroy_none(struct bh_component *c)
{
    (void)c;
}

static void
own_stats(const struct bh_component *c, struct bh_stats *out)
{
    (void)c;
    bh_stats_add(out, "own", "a counter of the type", false, 7);
}

static void
on_all(struct bh_hub *h)
{
    (void)h;
    all_stopped++;
}

/* Only the three required hooks: every other call has its default. */
static const struct bh_component_type bare = {
    .name = "bare", .start = start_ok, .stop = stop_now, .destroy = destroy_none};

static void
test_defaults(void **state)
{
    (void)state;
    struct bh_hub hub = {0};
    struct bh_component c = {.type = &bare, .hub = &hub, .name = "b"};
    char err[200] = "";
    const char *topics[4] = {"x", "y", "z", "w"};
    struct bh_stats st;

    assert_int_equal(bh_component_start(&c, err, sizeof(err)), 0);
    assert_int_equal(hub.running, 1);
    assert_int_equal(bh_component_pause(&c), -ENOTSUP);
    assert_false(c.paused);
    assert_int_equal(bh_component_resume(&c), -ENOTSUP);
    assert_int_equal(bh_component_reload(&c, NULL, err, sizeof(err)), -ENOTSUP);
    assert_non_null(strstr(err, "bare"));
    assert_int_equal(bh_component_topics(&c, topics, 4), 0);
    assert_null(topics[0]);

    c.published = 3;
    c.acknowledged = 2;
    c.dead_lettered = 1;
    bh_component_stats(&c, &st);
    assert_int_equal(bh_stats_get(&st, "published"), 3);
    assert_int_equal(bh_stats_get(&st, "acknowledged"), 2);
    assert_int_equal(bh_stats_get(&st, "dead_lettered"), 1);
    assert_int_equal(bh_stats_get(&st, "paused"), 0);
    assert_int_equal(bh_stats_get(&st, "own"), UINT64_MAX);
}

static int pauses, resumes;

static int
pause_ok(struct bh_component *c)
{
    (void)c;
    pauses++;
    return 0;
}

static int
resume_ok(struct bh_component *c)
{
    (void)c;
    resumes++;
    return 0;
}

static const struct bh_component_type full = {.name = "full",
                                              .start = start_ok,
                                              .stop = stop_now,
                                              .destroy = destroy_none,
                                              .pause = pause_ok,
                                              .resume = resume_ok,
                                              .stats = own_stats};

static void
test_pause_resume_stop(void **state)
{
    (void)state;
    struct bh_hub hub = {.on_all_stopped = on_all};
    struct bh_component a = {.type = &full, .hub = &hub, .name = "a"};
    struct bh_component b = {.type = &bare, .hub = &hub, .name = "b"};
    char err[200];
    struct bh_stats st;
    pauses = resumes = stops = all_stopped = 0;

    assert_int_equal(bh_component_start(&a, err, sizeof(err)), 0);
    assert_int_equal(bh_component_start(&b, err, sizeof(err)), 0);
    assert_int_equal(bh_component_pause(&a), 0);
    assert_int_equal(bh_component_pause(&a), 0); /* already paused: the hook is not called again */
    assert_int_equal(pauses, 1);
    assert_true(a.paused);
    bh_component_stats(&a, &st);
    assert_int_equal(bh_stats_get(&st, "paused"), 1);
    assert_int_equal(bh_stats_get(&st, "own"), 7);
    assert_int_equal(bh_component_resume(&a), 0);
    assert_int_equal(bh_component_resume(&a), 0);
    assert_int_equal(resumes, 1);
    assert_false(a.paused);

    bh_component_stop(&a);
    bh_component_stopped(&a); /* a second word is ignored */
    assert_int_equal(hub.running, 1);
    assert_int_equal(all_stopped, 0);
    bh_component_failed(&b);
    assert_true(b.failed);
    assert_int_equal(hub.running, 0);
    assert_int_equal(all_stopped, 1);
    bh_component_stop(&b); /* stopped already: its stop hook is not called */
    assert_int_equal(stops, 1);
}

static void
test_flow(void **state)
{
    (void)state;
    struct bh_flow f;
    bh_flow_init(&f, 10, 1000);
    for (int i = 0; i < 9; i++)
        bh_flow_hold(&f, 10);
    assert_false(bh_flow_stop(&f));
    bh_flow_hold(&f, 10); /* 10 units: the limit */
    assert_true(bh_flow_stop(&f));
    assert_false(bh_flow_stop(&f)); /* once */
    assert_false(bh_flow_reading(&f));
    for (int i = 0; i < 4; i++)
        bh_flow_release(&f, 10);
    assert_false(bh_flow_room(&f)); /* 6 held: not yet half */
    bh_flow_release(&f, 10);
    assert_true(bh_flow_room(&f)); /* 5 held: half */
    assert_false(bh_flow_room(&f));
    assert_true(bh_flow_reading(&f));
    assert_int_equal(f.pauses, 1);

    /* The byte limit alone stops reading too, and half of it lets it go on. */
    bh_flow_init(&f, 100, 1000);
    bh_flow_hold(&f, 1000);
    assert_true(bh_flow_stop(&f));
    bh_flow_release(&f, 1000);
    bh_flow_hold(&f, 600);
    assert_false(bh_flow_room(&f));
    bh_flow_release(&f, 100);
    assert_true(bh_flow_room(&f));

    /* The operator's pause holds reading whatever the count. */
    f.operator_pause = true;
    assert_false(bh_flow_reading(&f));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_pause_resume_stop),
        cmocka_unit_test(test_flow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
