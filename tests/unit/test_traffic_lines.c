/*
 * The traffic adapter's line framing: whatever the chunk sizes, the lines come
 * out as a plain split of the whole stream would give them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/traffic/traffic_lines.h"

#define MAX_OUT  512
#define KEEP_CAP 256

struct out_line {
    char data[KEEP_CAP + 64];
    size_t len;
    uint64_t full_len;
    int64_t number;
    int too_long;
    int unterminated;
};

struct outs {
    struct out_line v[MAX_OUT];
    size_t n;
    size_t keep;
};

/* What a line must carry: all of it, or of a too long one its first KEEP bytes. */
static void
collect(void *arg, const struct bh_traffic_line *line)
{
    struct outs *o = arg;
    assert_true(o->n < MAX_OUT);
    struct out_line *l = &o->v[o->n++];
    size_t want = line->too_long ? (line->full_len < o->keep ? line->full_len : o->keep)
                                 : (size_t)line->full_len;
    assert_true(line->len >= want);
    assert_true(want <= sizeof(l->data));
    memcpy(l->data, line->data, want);
    l->len = want;
    l->full_len = line->full_len;
    l->number = line->number;
    l->too_long = line->too_long;
    l->unterminated = line->unterminated;
}

/* The reference: split the whole stream at once, the simplest way. */
static void
reference(const char *s, size_t n, size_t max_line, struct outs *o)
{
    size_t start = 0;
    int64_t number = 0;
    o->n = 0;
    for (size_t i = 0; i <= n; i++) {
        int end = i == n;
        if (!end && s[i] != '\n')
            continue;
        if (end && i == start)
            break; /* nothing after the last newline */
        size_t len = i - start;
        if (len > 0 && s[start + len - 1] == '\r')
            len--;
        number++;
        int blank = 1;
        for (size_t k = 0; k < len; k++)
            blank &= s[start + k] == ' ' || s[start + k] == '\t';
        if (len <= max_line && blank) {
            start = i + 1;
            continue;
        }
        struct bh_traffic_line line = {s + start, len, len, number, len > max_line, end};
        collect(o, &line);
        start = i + 1;
    }
}

static void
assert_same(const struct outs *a, const struct outs *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->v[i].number, b->v[i].number);
        assert_int_equal(a->v[i].full_len, b->v[i].full_len);
        assert_int_equal(a->v[i].too_long, b->v[i].too_long);
        assert_int_equal(a->v[i].unterminated, b->v[i].unterminated);
        assert_int_equal(a->v[i].len, b->v[i].len);
        assert_memory_equal(a->v[i].data, b->v[i].data, a->v[i].len);
    }
}

/* Feed S in chunks whose sizes come from SEED (1 to MAXCHUNK bytes). */
static void
feed_chunked(const char *s, size_t n, size_t max_line, size_t keep, unsigned seed, size_t maxchunk,
             struct outs *o)
{
    struct bh_traffic_lines l;
    bh_traffic_lines_init(&l, max_line, keep);
    o->n = 0;
    o->keep = keep;
    srand(seed);
    for (size_t at = 0; at < n;) {
        size_t k = 1 + (size_t)rand() % maxchunk;
        if (k > n - at)
            k = n - at;
        assert_int_equal(bh_traffic_lines_feed(&l, s + at, k, collect, o), 0);
        /* never more than max(max_line + 1, keep) bytes held */
        assert_true(l.len <= (max_line + 1 > keep ? max_line + 1 : keep));
        at += k;
    }
    bh_traffic_lines_finish(&l, collect, o);
    assert_false(bh_traffic_lines_pending(&l));
    bh_traffic_lines_free(&l);
}

static void
add(char *s, size_t *len, const char *text)
{
    memcpy(s + *len, text, strlen(text));
    *len += strlen(text);
}

static void
add_run(char *s, size_t *len, size_t n, const char *pattern)
{
    size_t pl = strlen(pattern);
    for (size_t k = 0; k < n; k++)
        s[(*len)++] = pattern[k % pl];
}

static char *
build_stream(size_t *n, size_t max_line)
{
    size_t len = 0;
    char *s = malloc(64 * 1024);
    assert_non_null(s);
    add(s, &len, "{\"event_id\":\"a\"}\n");
    add(s, &len, "{\"event_id\":\"b\"}\r\n");
    add(s, &len, "\n");
    add(s, &len, "\r\n");
    add(s, &len, "   \t \n");
    add(s, &len, "x\ry\n");          /* a CR inside a line stays */
    add(s, &len, "\r\r\n");          /* a CR, then the CRLF: the line is "\r" */
    add_run(s, &len, max_line, "M"); /* exactly max_line: not too long */
    add(s, &len, "\r\n");
    add_run(s, &len, max_line + 1, "L"); /* one byte too long */
    add(s, &len, "\n");
    add_run(s, &len, 20 * max_line, "abcdefghijklmnopqrstuvwxyz"); /* across many reads */
    add(s, &len, "\r\n");
    add(s, &len, "after the long one\n");
    add(s, &len, " leading space is kept\n");
    add(s, &len, "粤B12345\n");
    add(s, &len, "cut off at the end\r");
    assert_true(len <= 64 * 1024);
    *n = len;
    return s;
}

static void
test_random_chunks_match_whole_split(void **state)
{
    (void)state;
    const size_t max_line = 100, keep = 40;
    size_t n;
    char *s = build_stream(&n, max_line);
    struct outs *want = calloc(1, sizeof(*want)), *got = calloc(1, sizeof(*got));
    want->keep = keep;
    reference(s, n, max_line, want);
    /* the reference itself: the lines we meant to write */
    assert_int_equal(want->n, 11);
    assert_int_equal(want->v[0].number, 1);
    assert_int_equal(want->v[1].len, strlen("{\"event_id\":\"b\"}"));
    assert_int_equal(want->v[2].number, 6); /* lines 3-5 are blank */
    assert_memory_equal(want->v[2].data, "x\ry", 3);
    assert_int_equal(want->v[3].len, 1);
    assert_false(want->v[4].too_long);
    assert_true(want->v[5].too_long);
    assert_true(want->v[6].too_long);
    assert_int_equal(want->v[6].full_len, 20 * max_line);
    assert_memory_equal(want->v[9].data, "粤B12345", strlen("粤B12345"));
    assert_true(want->v[10].unterminated);
    assert_int_equal(want->v[10].len, strlen("cut off at the end"));

    for (unsigned seed = 1; seed <= 200; seed++) {
        feed_chunked(s, n, max_line, keep, seed,
                     seed % 3 == 0   ? 3
                     : seed % 3 == 1 ? 97
                                     : 4096,
                     got);
        assert_same(want, got);
    }
    /* one byte at a time, and all at once */
    feed_chunked(s, n, max_line, keep, 7, 1, got);
    assert_same(want, got);
    feed_chunked(s, n, max_line, keep, 7, n, got);
    assert_same(want, got);
    /* a keep larger than max_line: the dead letter gets that much of the long line */
    want->keep = 3 * max_line;
    reference(s, n, max_line, want);
    feed_chunked(s, n, max_line, 3 * max_line, 11, 13, got);
    assert_same(want, got);
    assert_int_equal(got->v[6].len, 3 * max_line);
    free(want);
    free(got);
    free(s);
}

struct counter {
    size_t lines, too_long;
    uint64_t full_len;
    char head[16];
    char next[32];
};

static void
count(void *arg, const struct bh_traffic_line *line)
{
    struct counter *c = arg;
    c->lines++;
    if (line->too_long) {
        c->too_long++;
        c->full_len = line->full_len;
        memcpy(c->head, line->data, sizeof(c->head));
    } else if (line->len < sizeof(c->next)) {
        memcpy(c->next, line->data, line->len);
        c->next[line->len] = '\0';
    }
}

static void
test_ten_mebibyte_line_is_never_held(void **state)
{
    (void)state;
    struct bh_traffic_lines l;
    struct counter c = {0};
    char chunk[4096];
    const uint64_t total = 10 * 1024 * 1024;
    bh_traffic_lines_init(&l, 64 * 1024, 1024);
    memset(chunk, 'z', sizeof(chunk));
    memcpy(chunk, "{\"event_id\":", 12);
    assert_int_equal(bh_traffic_lines_feed(&l, chunk, sizeof(chunk), count, &c), 0);
    memset(chunk, 'z', 12);
    for (uint64_t fed = sizeof(chunk); fed < total; fed += sizeof(chunk)) {
        assert_int_equal(bh_traffic_lines_feed(&l, chunk, sizeof(chunk), count, &c), 0);
        assert_true(l.cap <= 64 * 1024 + 1);
    }
    assert_int_equal(c.lines, 0);
    assert_int_equal(bh_traffic_lines_feed(&l, "\nnext line\n", 11, count, &c), 0);
    assert_int_equal(c.lines, 2);
    assert_int_equal(c.too_long, 1);
    assert_int_equal(c.full_len, total);
    assert_memory_equal(c.head, "{\"event_id\":zzzz", 16);
    assert_string_equal(c.next, "next line");
    assert_true(l.cap <= 16 * 1024); /* the big buffer was given back */
    bh_traffic_lines_free(&l);
}

static void
test_unterminated_and_numbers(void **state)
{
    (void)state;
    struct bh_traffic_lines l;
    struct outs *o = calloc(1, sizeof(*o));
    o->keep = 10;
    bh_traffic_lines_init(&l, 50, 10);
    assert_int_equal(bh_traffic_lines_feed(&l, "one\n\ntwo\nthr", 12, collect, o), 0);
    assert_int_equal(o->n, 2);
    assert_true(bh_traffic_lines_pending(&l));
    assert_int_equal(bh_traffic_lines_feed(&l, "ee", 2, collect, o), 0);
    bh_traffic_lines_finish(&l, collect, o);
    assert_int_equal(o->n, 3);
    assert_int_equal(o->v[0].number, 1);
    assert_int_equal(o->v[1].number, 3);
    assert_int_equal(o->v[2].number, 4);
    assert_true(o->v[2].unterminated);
    assert_memory_equal(o->v[2].data, "three", 5);
    /* nothing pending: finish gives nothing */
    bh_traffic_lines_finish(&l, collect, o);
    assert_int_equal(o->n, 3);
    bh_traffic_lines_free(&l);
    free(o);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_chunks_match_whole_split),
        cmocka_unit_test(test_ten_mebibyte_line_is_never_held),
        cmocka_unit_test(test_unterminated_and_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
