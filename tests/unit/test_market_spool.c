/* The market adapter's spool listing and shown names (adapters/market/spool.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "adapters/market/checkpoint.h"
#include "adapters/market/spool.h"
#include "hub/utf8.h"

static void
test_show_name(void **state)
{
    (void)state;
    char out[BH_MARKET_SHOWN_MAX];
    /* valid names are kept as they are */
    bh_market_show_name(out, sizeof(out), "scjg_20261127 市场监管.csv");
    assert_string_equal(out, "scjg_20261127 市场监管.csv");
    /* bytes that are not UTF-8, and control characters, become \xNN */
    bh_market_show_name(out, sizeof(out), "\xff\xfe-bad.csv");
    assert_string_equal(out, "\\xff\\xfe-bad.csv");
    bh_market_show_name(out, sizeof(out), "a\nb\x7f\x01.csv");
    assert_string_equal(out, "a\\x0ab\\x7f\\x01.csv");
    /* a cut sequence, an overlong form, a surrogate */
    bh_market_show_name(out, sizeof(out), "\xe5\xb8.csv \xc0\xaf \xed\xa0\x80");
    assert_string_equal(out, "\\xe5\\xb8.csv \\xc0\\xaf \\xed\\xa0\\x80");
    assert_true(bh_utf8_valid(out, strlen(out)));

    /* the longest name, every byte escaped, fits */
    char name[NAME_MAX + 1];
    memset(name, 0xff, NAME_MAX);
    name[NAME_MAX] = '\0';
    assert_int_equal(bh_market_show_name(out, sizeof(out), name), NAME_MAX * 4);
    /* a buffer too small ends on a character or escape boundary */
    char small[10];
    assert_int_equal(bh_market_show_name(small, sizeof(small), "\xff\xff\xff"), 8);
    assert_string_equal(small, "\\xff\\xff");
    assert_int_equal(bh_market_show_name(small, sizeof(small), "ab市场监管"), 8);
    assert_string_equal(small, "ab市场");
}

static struct stat
file_stat(mode_t type, uint64_t ino, off_t size, time_t mtime)
{
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_mode = type | 0644;
    st.st_dev = 7;
    st.st_ino = ino;
    st.st_size = size;
    st.st_mtim.tv_sec = mtime;
    return st;
}

static void
test_settling(void **state)
{
    (void)state;
    struct bh_market_spool sp = {0};
    const uint64_t settle = 2000;

    bh_market_spool_begin(&sp);
    struct stat a = file_stat(S_IFREG, 1, 100, 1000);
    struct bh_market_spool_entry *e = bh_market_spool_note(&sp, "a.csv", &a, 10000);
    assert_non_null(e);
    assert_int_equal(e->kind, BH_MARKET_SPOOL_FILE);
    assert_false(bh_market_spool_settled(e, 10000, settle)); /* just seen */
    assert_true(bh_market_spool_settled(e, 10000, 0));       /* 0: at once */
    bh_market_spool_end(&sp);

    /* unchanged at 11 s: not yet; it grows at 11.5 s: counted again from there */
    bh_market_spool_begin(&sp);
    e = bh_market_spool_note(&sp, "a.csv", &a, 11000);
    assert_false(bh_market_spool_settled(e, 11000, settle));
    bh_market_spool_end(&sp);
    a = file_stat(S_IFREG, 1, 200, 1001);
    bh_market_spool_begin(&sp);
    e = bh_market_spool_note(&sp, "a.csv", &a, 11500);
    assert_int_equal(e->since, 11500);
    assert_false(bh_market_spool_settled(e, 13000, settle));
    bh_market_spool_end(&sp);
    /* the same size with another modification time (rewritten): not settled either */
    a = file_stat(S_IFREG, 1, 200, 1002);
    bh_market_spool_begin(&sp);
    e = bh_market_spool_note(&sp, "a.csv", &a, 13000);
    assert_int_equal(e->since, 13000);
    bh_market_spool_end(&sp);
    /* unchanged for 2 s as observed: settled */
    bh_market_spool_begin(&sp);
    e = bh_market_spool_note(&sp, "a.csv", &a, 15000);
    assert_true(bh_market_spool_settled(e, 15000, settle));
    bh_market_spool_end(&sp);
    /* replaced by another file of the same size and time (another inode): anew */
    a = file_stat(S_IFREG, 2, 200, 1002);
    bh_market_spool_begin(&sp);
    e = bh_market_spool_note(&sp, "a.csv", &a, 15100);
    assert_false(bh_market_spool_settled(e, 15100, settle));
    bh_market_spool_end(&sp);
    bh_market_spool_free(&sp);
}

static void
test_entries_that_are_not_files(void **state)
{
    (void)state;
    struct bh_market_spool sp = {0};
    bh_market_spool_begin(&sp);
    struct stat d = file_stat(S_IFDIR, 5, 4096, 1000);
    struct stat l = file_stat(S_IFLNK, 6, 12, 1000);
    struct stat f = file_stat(S_IFREG, 7, 10, 1000);
    assert_int_equal(bh_market_spool_note(&sp, "d.csv", &d, 0)->kind, BH_MARKET_SPOOL_OTHER);
    assert_int_equal(bh_market_spool_note(&sp, "l.csv", &l, 0)->kind, BH_MARKET_SPOOL_OTHER);
    assert_non_null(bh_market_spool_note(&sp, "f.csv", &f, 0));
    bh_market_spool_end(&sp);
    assert_false(
        bh_market_spool_settled(bh_market_spool_find(&sp, "d.csv"), 100000, 0)); /* never taken */

    /* reported stays while the entry is the same, even as its contents change */
    bh_market_spool_find(&sp, "d.csv")->reported = 1;
    bh_market_spool_find(&sp, "l.csv")->reported = 1;
    d.st_mtim.tv_sec = 2000;
    d.st_size = 8192;
    bh_market_spool_begin(&sp);
    bh_market_spool_note(&sp, "d.csv", &d, 10);
    bh_market_spool_note(&sp, "f.csv", &f, 10); /* l.csv is gone */
    bh_market_spool_end(&sp);
    assert_int_equal(sp.n, 2);
    assert_null(bh_market_spool_find(&sp, "l.csv"));
    assert_true(bh_market_spool_find(&sp, "d.csv")->reported);
    /* another entry under the name (a new directory): reported anew */
    d.st_ino = 50;
    bh_market_spool_begin(&sp);
    bh_market_spool_note(&sp, "d.csv", &d, 20);
    bh_market_spool_end(&sp);
    assert_false(bh_market_spool_find(&sp, "d.csv")->reported);
    bh_market_spool_free(&sp);
}

static void
test_many_entries(void **state)
{
    (void)state;
    struct bh_market_spool sp = {0};
    char name[32];
    bh_market_spool_begin(&sp);
    for (int i = 0; i < 1000; i++) {
        struct stat st = file_stat(S_IFREG, (uint64_t)i + 1, i, 1000);
        snprintf(name, sizeof(name), "f%04d.csv", i);
        assert_non_null(bh_market_spool_note(&sp, name, &st, 0));
    }
    bh_market_spool_end(&sp);
    assert_int_equal(sp.n, 1000);
    bh_market_spool_begin(&sp);
    for (int i = 0; i < 1000; i += 2) {
        struct stat st = file_stat(S_IFREG, (uint64_t)i + 1, i, 1000);
        snprintf(name, sizeof(name), "f%04d.csv", i);
        bh_market_spool_note(&sp, name, &st, 5000);
    }
    bh_market_spool_end(&sp);
    assert_int_equal(sp.n, 500);
    for (size_t i = 0; i < sp.n; i++)
        assert_true(bh_market_spool_settled(&sp.v[i], 5000, 2000)); /* seen at 0, unchanged */
    bh_market_spool_free(&sp);
}

/* The checkpoint keeps the longest shown name. */
static void
test_checkpoint_of_a_long_shown_name(void **state)
{
    (void)state;
    char dir[] = "/tmp/bh-spool-XXXXXX", path[200];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/market.checkpoint", dir);
    char name[NAME_MAX + 1];
    memset(name, 0x80, NAME_MAX);
    name[NAME_MAX] = '\0';
    struct bh_market_checkpoint c = {
        .dev = 1, .ino = 2, .size = 30, .offset = 20, .row = 1, .line = 2};
    bh_market_show_name(c.file, sizeof(c.file), name);
    assert_int_equal(strlen(c.file), NAME_MAX * 4);
    struct bh_market_checkpoint got;
    assert_int_equal(bh_market_checkpoint_write(path, &c), 0);
    assert_int_equal(bh_market_checkpoint_read(path, &got), 0);
    assert_string_equal(got.file, c.file);
    unlink(path);
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_show_name),
        cmocka_unit_test(test_settling),
        cmocka_unit_test(test_entries_that_are_not_files),
        cmocka_unit_test(test_many_entries),
        cmocka_unit_test(test_checkpoint_of_a_long_shown_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
