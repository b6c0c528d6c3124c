/* The market adapter's checkpoint file (adapters/market/checkpoint.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "adapters/market/checkpoint.h"

static void
test_round_trip_and_atomic_replace(void **state)
{
    (void)state;
    char dir[] = "/tmp/bh-ckpt-XXXXXX", path[200], tmp[220];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/market.checkpoint", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);

    struct bh_market_checkpoint c = {
        .dev = 2049, .ino = 1835010, .size = 1u << 30, .offset = 524288, .row = 3120, .line = 3122};
    snprintf(c.file, sizeof(c.file), "scjg 2026 市场.csv");
    struct bh_market_checkpoint got;
    assert_int_equal(bh_market_checkpoint_read(path, &got), -ENOENT);
    assert_int_equal(bh_market_checkpoint_write(path, &c), 0);
    assert_int_equal(access(tmp, F_OK), -1); /* renamed, nothing left behind */
    assert_int_equal(bh_market_checkpoint_read(path, &got), 0);
    assert_memory_equal(&got, &c, sizeof(c));

    c.offset = c.size;
    c.row = 99;
    assert_int_equal(bh_market_checkpoint_write(path, &c), 0);
    assert_int_equal(bh_market_checkpoint_read(path, &got), 0);
    assert_true(got.offset == c.size && got.row == 99);

    /* not a checkpoint, or an offset past the end: refused */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("offset=12\n", f);
    fclose(f);
    assert_int_equal(bh_market_checkpoint_read(path, &got), -EINVAL);
    f = fopen(path, "w");
    fputs("blockhub-market-checkpoint 1\ndev=1\nino=2\nsize=10\noffset=11\nrow=0\nline=0\n"
          "file=a.csv\n",
          f);
    fclose(f);
    assert_int_equal(bh_market_checkpoint_read(path, &got), -EINVAL);
    unlink(path);
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_atomic_replace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
