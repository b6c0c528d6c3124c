/* The market adapter's RFC 4180 reader (adapters/market/csv.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/market/csv.h"

/* Rows as text: "flags|lines|blank|field<US>field<US>...<RS>" per row. */
struct sink {
    char *s;
    size_t len, cap;
};

static void
put(struct sink *k, const char *p, size_t n)
{
    if (k->len + n + 1 > k->cap) {
        k->cap = (k->len + n + 1) * 2;
        k->s = realloc(k->s, k->cap);
        assert_non_null(k->s);
    }
    memcpy(k->s + k->len, p, n);
    k->len += n;
    k->s[k->len] = '\0';
}

static void
take_row(struct bh_market_csv *p, struct sink *k)
{
    char head[64];
    int n = snprintf(head, sizeof(head), "%u|%llu|%d|", p->flags, (unsigned long long)p->row_lines,
                     p->blank);
    put(k, head, (size_t)n);
    for (size_t i = 0; i < p->nfields && !(p->flags & BH_MARKET_CSV_TOO_LARGE); i++) {
        size_t len;
        const char *f = bh_market_csv_field(p, i, &len);
        put(k, f, len);
        put(k, "\x1f", 1);
    }
    put(k, "\x1e", 1);
    bh_market_csv_next_row(p);
}

/* Parse IN in chunks: sizes from NEXT (0 = all at once). */
static char *
parse(const char *in, size_t len, size_t max_row, size_t (*next)(void))
{
    struct bh_market_csv p;
    struct sink k = {0};
    assert_int_equal(bh_market_csv_init(&p, max_row), 0);
    put(&k, "", 0);
    size_t i = 0;
    while (i < len) {
        size_t n = next ? next() : len - i;
        if (n > len - i)
            n = len - i;
        const char *c = in + i;
        size_t left = n;
        while (left > 0) {
            size_t used = bh_market_csv_feed(&p, c, left);
            c += used;
            left -= used;
            if (p.complete)
                take_row(&p, &k);
        }
        i += n;
    }
    if (bh_market_csv_finish(&p))
        take_row(&p, &k);
    assert_true(p.cap <= (max_row > 64 ? max_row : 64));
    bh_market_csv_free(&p);
    return k.s;
}

static size_t
one(void)
{
    return 1;
}

static size_t
random_size(void)
{
    return (size_t)(rand() % 17) + 1;
}

static size_t
random_big(void)
{
    return (size_t)(rand() % 300) + 1;
}

/* Every feature of the dialect, in UTF-8 (the reader sees bytes only). */
static const char sample[] = "记录编号,主体名称,经营地址,罚没金额\r\n"
                             "A1,\"深圳市\"\"老字号\"\",百货有限公司\",罗湖区,12.50\r\n"
                             "A2,商行,\"罗湖区东门中路1号\n二楼\",\r\n"
                             "A3,\"a\r\nb\",\"\",\"\"\"\"\n"
                             "\r\n"
                             "\n"
                             "A4,,,\n"
                             "A5,\"x,y\",z,\"1\"\r\n"
                             "A6,last,row,without line end";

static const char expected[] = "0|1|0|记录编号\x1f主体名称\x1f经营地址\x1f罚没金额\x1f\x1e"
                               "0|1|0|A1\x1f深圳市\"老字号\",百货有限公司\x1f罗湖区\x1f"
                               "12.50\x1f\x1e"
                               "0|2|0|A2\x1f商行\x1f罗湖区东门中路1号\n二楼\x1f\x1f\x1e"
                               "0|2|0|A3\x1f"
                               "a\r\nb\x1f\x1f\"\x1f\x1e"
                               "0|1|1|\x1f\x1e"
                               "0|1|1|\x1f\x1e"
                               "0|1|0|A4\x1f\x1f\x1f\x1f\x1e"
                               "0|1|0|A5\x1fx,y\x1fz\x1f"
                               "1\x1f\x1e"
                               "0|0|0|A6\x1flast\x1frow\x1fwithout line end\x1f\x1e";

static void
test_dialect(void **state)
{
    (void)state;
    char *whole = parse(sample, strlen(sample), 1 << 20, NULL);
    assert_string_equal(whole, expected);
    free(whole);
}

static void
test_chunking_gives_the_same_rows(void **state)
{
    (void)state;
    char *bytewise = parse(sample, strlen(sample), 1 << 20, one);
    assert_string_equal(bytewise, expected);
    free(bytewise);
    for (unsigned seed = 1; seed <= 200; seed++) {
        srand(seed);
        char *chunked = parse(sample, strlen(sample), 1 << 20, seed % 2 ? random_size : random_big);
        assert_string_equal(chunked, expected);
        free(chunked);
    }
}

static void
test_bad_quotes_are_flagged_and_the_next_row_is_fine(void **state)
{
    (void)state;
    static const char in[] = "a,b\"c,d\n"     /* quote inside an unquoted field */
                             "\"x\"y,z\n"     /* text after a closing quote */
                             "ok,\"fine\"\n"; /* unaffected */
    char *got = parse(in, strlen(in), 1024, NULL);
    char want[200];
    snprintf(want, sizeof(want),
             "%u|1|0|a\x1f"
             "b\"c\x1f"
             "d\x1f\x1e"
             "%u|1|0|xy\x1fz\x1f\x1e"
             "0|1|0|ok\x1f"
             "fine\x1f\x1e",
             BH_MARKET_CSV_BAD_QUOTE, BH_MARKET_CSV_BAD_QUOTE);
    assert_string_equal(got, want);
    free(got);
}

static void
test_unclosed_quote_at_the_end(void **state)
{
    (void)state;
    static const char in[] = "r1,a\nr2,\"never closed,\nstill inside\n";
    srand(3);
    char *whole = parse(in, strlen(in), 1024, NULL);
    char *chunked = parse(in, strlen(in), 1024, random_size);
    char want[200];
    snprintf(want, sizeof(want),
             "0|1|0|r1\x1f"
             "a\x1f\x1e%u|2|0|r2\x1fnever closed,\nstill inside\n\x1f\x1e",
             BH_MARKET_CSV_UNCLOSED);
    assert_string_equal(whole, want);
    assert_string_equal(chunked, want);
    free(whole);
    free(chunked);
}

/* A quote that never closes in a big input costs max_row bytes, not the input. */
static void
test_row_cap_bounds_memory_and_resynchronises(void **state)
{
    (void)state;
    size_t big = 4u << 20;
    char *in = malloc(big + 64);
    assert_non_null(in);
    size_t n = 0;
    n += (size_t)sprintf(in + n, "h1,h2\n\"");
    memset(in + n, 'x', big);
    n += big;
    n += (size_t)sprintf(in + n, "\",tail\nnext,row\n");
    char *got = parse(in, n, 4096, random_big);
    char want[100];
    snprintf(want, sizeof(want),
             "0|1|0|h1\x1fh2\x1f\x1e%u|1|0|\x1e"
             "0|1|0|next\x1frow\x1f\x1e",
             BH_MARKET_CSV_TOO_LARGE);
    assert_string_equal(got, want);
    free(got);

    /* unclosed to the end: one too-large row, also flagged unclosed */
    in[n - strlen("\",tail\nnext,row\n")] = '\0';
    got = parse(in, strlen(in), 4096, random_big);
    snprintf(want, sizeof(want), "0|1|0|h1\x1fh2\x1f\x1e%u|0|0|\x1e",
             BH_MARKET_CSV_TOO_LARGE | BH_MARKET_CSV_UNCLOSED);
    assert_string_equal(got, want);
    free(got);
    free(in);
}

static void
test_line_ends(void **state)
{
    (void)state;
    /* CRLF and LF mixed; a CR alone is data; the last line may lack its end */
    static const char in[] = "a,b\r\nc\rd,e\nf,g\r";
    char *got = parse(in, strlen(in), 1024, one);
    assert_string_equal(got, "0|1|0|a\x1f"
                             "b\x1f\x1e"
                             "0|1|0|c\rd\x1f"
                             "e\x1f\x1e"
                             "0|0|0|f\x1fg\r\x1f\x1e");
    free(got);
    /* nothing at all, and a lone line end */
    got = parse("", 0, 1024, NULL);
    assert_string_equal(got, "");
    free(got);
    got = parse("\n", 1, 1024, NULL);
    assert_string_equal(got, "0|1|1|\x1f\x1e");
    free(got);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dialect),
        cmocka_unit_test(test_chunking_gives_the_same_rows),
        cmocka_unit_test(test_bad_quotes_are_flagged_and_the_next_row_is_fine),
        cmocka_unit_test(test_unclosed_quote_at_the_end),
        cmocka_unit_test(test_row_cap_bounds_memory_and_resynchronises),
        cmocka_unit_test(test_line_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
