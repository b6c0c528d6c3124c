/* The market adapter's iconv decoder (adapters/market/decode.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <iconv.h>
#include <stdbool.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/market/decode.h"

/* "a😀中b": the emoji is a 4-byte GB18030 sequence (94 39 FC 36), 中 two bytes. */
static const char gb[] = "a\x94\x39\xfc\x36\xd6\xd0"
                         "b";
static const char utf8[] = "a\xf0\x9f\x98\x80\xe4\xb8\xad"
                           "b";

/* Decode IN cut into pieces at CUTS (ascending, ending with LEN); count invalid reports. */
static size_t
decode(const char *enc, const char *in, size_t len, const size_t *cuts, size_t ncuts, char *out,
       int *invalid)
{
    struct bh_market_decoder d;
    assert_int_equal(bh_market_decoder_open(&d, enc), 0);
    char *o = out;
    size_t room = 256;
    size_t from = 0;
    *invalid = 0;
    assert_int_equal(cuts[ncuts - 1], len);
    for (size_t c = 0; c < ncuts; c++) {
        const char *p = in + from;
        size_t n = cuts[c] - from;
        int final = c == ncuts - 1;
        int rc;
        while ((rc = bh_market_decoder_run(&d, &p, &n, &o, &room, final)) == BH_DECODE_INVALID)
            (*invalid)++;
        assert_int_equal(rc, 0);
        assert_int_equal(n, 0);
        from = cuts[c];
    }
    bh_market_decoder_close(&d);
    return (size_t)(o - out);
}

static void
test_four_byte_sequence_cut_at_every_point(void **state)
{
    (void)state;
    char out[256];
    int invalid;
    size_t len = strlen(gb);
    /* one cut inside the 4-byte sequence (after 1, 2 or 3 of its bytes), and everywhere else */
    for (size_t cut = 0; cut <= len; cut++) {
        size_t cuts[] = {cut, len};
        size_t n = decode("GB18030", gb, len, cuts, 2, out, &invalid);
        assert_int_equal(invalid, 0);
        assert_int_equal(n, strlen(utf8));
        assert_memory_equal(out, utf8, n);
    }
    /* the sequence spread over four chunks of one byte: the carry grows */
    size_t cuts[] = {1, 2, 3, 4, 5, len};
    size_t n = decode("GB18030", gb, len, cuts, 6, out, &invalid);
    assert_int_equal(invalid, 0);
    assert_memory_equal(out, utf8, n);
    assert_int_equal(n, strlen(utf8));
    /* byte by byte */
    size_t each[sizeof(gb) - 1];
    for (size_t i = 0; i < len; i++)
        each[i] = i + 1;
    n = decode("GB18030", gb, len, each, len, out, &invalid);
    assert_int_equal(invalid, 0);
    assert_int_equal(n, strlen(utf8));
    assert_memory_equal(out, utf8, n);
}

static void
test_invalid_bytes_are_skipped_and_decoding_goes_on(void **state)
{
    (void)state;
    char out[256];
    int invalid;
    /* 0xFF is never valid; 0x81 0x20 is a lead byte with a bad trail: the space survives */
    static const char in[] = "ab\xff"
                             "cd\x81 x\xd6\xd0";
    size_t cuts[] = {sizeof(in) - 1};
    size_t n = decode("GB18030", in, sizeof(in) - 1, cuts, 1, out, &invalid);
    assert_int_equal(invalid, 2);
    assert_int_equal(n, strlen("abcd x\xe4\xb8\xad"));
    assert_memory_equal(out, "abcd x\xe4\xb8\xad", n);
    /* a bad byte carried over a cut: the bytes after it are kept */
    static const char cut_bad[] = "\x81\x30\x20z";
    size_t cuts2[] = {2, 4};
    n = decode("GB18030", cut_bad, 4, cuts2, 2, out, &invalid);
    assert_true(invalid >= 1);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "0 z", 3);
}

static void
test_sequence_cut_by_the_end_of_the_input(void **state)
{
    (void)state;
    char out[256];
    int invalid;
    static const char in[] = "ok\x94\x39";
    size_t cuts[] = {sizeof(in) - 1};
    size_t n = decode("GB18030", in, sizeof(in) - 1, cuts, 1, out, &invalid);
    assert_true(invalid >= 1);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "ok", 2);
}

static void
test_utf8(void **state)
{
    (void)state;
    char out[256];
    int invalid;
    size_t len = strlen(utf8);
    for (size_t cut = 0; cut <= len; cut++) {
        size_t cuts[] = {cut, len};
        size_t n = decode("UTF-8", utf8, len, cuts, 2, out, &invalid);
        assert_int_equal(invalid, 0);
        assert_int_equal(n, len);
        assert_memory_equal(out, utf8, n);
    }
    static const char bad[] = "a\xc3(b\xed\xa0\x80"
                              "c"; /* a bad trail, a surrogate */
    size_t cuts[] = {sizeof(bad) - 1};
    size_t n = decode("UTF-8", bad, sizeof(bad) - 1, cuts, 1, out, &invalid);
    assert_true(invalid >= 2);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "a(bc", 4);
}

/* The reference: iconv over the whole input at once, skipping each byte it refuses. */
static size_t
reference_in(const char *enc, const char *in, size_t len, char *out, size_t cap, int *invalid)
{
    iconv_t cd = iconv_open("UTF-8", enc);
    char *p = (char *)in, *o = out;
    size_t left = len, room = cap;
    *invalid = 0;
    while (left > 0) {
        if (iconv(cd, &p, &left, &o, &room) != (size_t)-1)
            break;
        assert_true(errno == EILSEQ || errno == EINVAL);
        if (errno == EINVAL) { /* cut short at the very end */
            (*invalid)++;
            break;
        }
        p++;
        left--;
        (*invalid)++;
        iconv(cd, NULL, NULL, NULL, NULL);
    }
    iconv_close(cd);
    return (size_t)(o - out);
}

static size_t
reference(const char *in, size_t len, char *out, size_t cap, int *invalid)
{
    return reference_in("GB18030", in, len, out, cap, invalid);
}

/* Random mixes of ASCII, 2- and 4-byte characters and bad bytes, cut anywhere: the decoder
 * (ASCII passed through, sequences carried over cuts) gives what iconv gives. */
static void
test_same_as_plain_iconv(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "a",
        ",",
        "\"",
        "\r\n",
        "0",
        "9",
        "Z",
        "\xd6\xd0",
        "\xce\xc4",
        "\x94\x39\xfc\x36",
        "\x95\x32\x82\x36",
        "\x81\x30\x81\x30",
        "\xff",
        "\x81",
        "\x81\x30",
        "\x81\x30\x81",
        "\xa8\xa6",
        "\x80",
        "\x81\x7f",
    };
    srand(5);
    for (int round = 0; round < 3000; round++) {
        char in[400];
        size_t len = 0;
        int count = rand() % 60;
        for (int k = 0; k < count; k++) {
            const char *piece = pieces[rand() % (sizeof(pieces) / sizeof(pieces[0]))];
            memcpy(in + len, piece, strlen(piece));
            len += strlen(piece);
        }
        char want[2048], got[2048];
        int want_invalid, got_invalid;
        size_t wn = reference(in, len, want, sizeof(want), &want_invalid);
        size_t cuts[400], ncuts = 0;
        for (size_t i = 1; i < len; i++)
            if (rand() % 7 == 0)
                cuts[ncuts++] = i;
        cuts[ncuts++] = len;
        struct bh_market_decoder d;
        assert_int_equal(bh_market_decoder_open(&d, "GB18030"), 0);
        char *o = got;
        size_t room = sizeof(got), from = 0;
        got_invalid = 0;
        for (size_t c = 0; c < ncuts; c++) {
            const char *p = in + from;
            size_t n = cuts[c] - from;
            int rc;
            while ((rc = bh_market_decoder_run(&d, &p, &n, &o, &room, c == ncuts - 1)) ==
                   BH_DECODE_INVALID)
                got_invalid++;
            assert_int_equal(rc, 0);
            from = cuts[c];
        }
        bh_market_decoder_close(&d);
        assert_int_equal((size_t)(o - got), wn);
        assert_memory_equal(got, want, wn);
        assert_int_equal(got_invalid > 0, want_invalid > 0);
    }
}

/*
 * From UTF-8 only RFC 3629 UTF-8 passes (glibc's iconv takes 5- and 6-byte
 * forms and values past U+10FFFF): everything else is reported and skipped,
 * byte by byte, wherever the input is cut.
 */
static void
test_utf8_is_checked_by_rfc_3629(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"a\xf8\x88\x80\x80\x80z", "az"},     /* a 5-byte form */
        {"a\xfc\x84\x80\x80\x80\x80z", "az"}, /* a 6-byte form */
        {"a\xf4\x90\x80\x80z", "az"},         /* U+110000 */
        {"a\xed\xa0\x80z", "az"},             /* a surrogate */
        {"a\xc0\xafz", "az"},                 /* overlong '/' */
        {"a\xe0\x80\xafz", "az"},             /* overlong, 3 bytes */
        {"a\xe4\xb8z", "az"},                 /* cut by a letter */
        {"a\x80\xbfz", "az"},                 /* continuation bytes alone */
        {"\xf4\x8f\xbf\xbf\xe4\xb8\xad", "\xf4\x8f\xbf\xbf\xe4\xb8\xad"}, /* U+10FFFF, 中 */
        {"a\xe4\xb8", "a"},                                               /* cut by the end */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].in), want = strlen(cases[i].out);
        int bad = strcmp(cases[i].in, cases[i].out) != 0;
        for (size_t cut = 0; cut <= len; cut++) {
            char out[256];
            int invalid;
            size_t cuts[] = {cut, len};
            size_t n = decode("UTF-8", cases[i].in, len, cut == len ? cuts + 1 : cuts,
                              cut == len ? 1 : 2, out, &invalid);
            assert_int_equal(n, want);
            assert_memory_equal(out, cases[i].out, n);
            assert_int_equal(invalid > 0, bad);
        }
        /* byte by byte */
        size_t each[64];
        for (size_t k = 0; k < len; k++)
            each[k] = k + 1;
        char out[256];
        int invalid;
        assert_int_equal(decode("utf8", cases[i].in, len, each, len, out, &invalid), want);
        assert_memory_equal(out, cases[i].out, want);
        assert_int_equal(invalid > 0, bad);
    }
}

/* With a tiny output buffer the UTF-8 check stops at a sequence boundary and goes on after. */
static void
test_utf8_output_full(void **state)
{
    (void)state;
    struct bh_market_decoder d;
    assert_int_equal(bh_market_decoder_open(&d, "UTF-8"), 0);
    const char *in = "ab\xe4\xb8\xad\xf0\x9f\x98\x80"
                     "c";
    const char *p = in;
    size_t n = strlen(in);
    char out[64], *o = out;
    size_t room = 3;
    assert_int_equal(bh_market_decoder_run(&d, &p, &n, &o, &room, true), -E2BIG);
    assert_int_equal(o - out, 2); /* "ab": 中 did not fit in the one byte left */
    room = 5;
    assert_int_equal(bh_market_decoder_run(&d, &p, &n, &o, &room, true), -E2BIG);
    assert_int_equal(o - out, 5);
    room = 10;
    assert_int_equal(bh_market_decoder_run(&d, &p, &n, &o, &room, true), 0);
    assert_int_equal(o - out, (long)strlen(in));
    assert_memory_equal(out, in, strlen(in));
    bh_market_decoder_close(&d);
}

static void
test_unknown_encoding(void **state)
{
    (void)state;
    struct bh_market_decoder d;
    assert_int_equal(bh_market_decoder_open(&d, "NO-SUCH-ENCODING-42"), -EINVAL);
    assert_int_equal(bh_market_decoder_open(&d, "UTF-16"), -ENOTSUP);
    assert_int_equal(bh_market_decoder_open(&d, "GBK"), 0);
    bh_market_decoder_close(&d);
}

/* What a decoder gives for an input: its text, and where each invalid report came. */
struct trace {
    char text[4096];
    size_t len;
    size_t invalid_in[512], invalid_out[512]; /* input and output offsets at each report */
    size_t ninvalid;
};

static unsigned
next_rand(unsigned *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/*
 * Decode IN cut at CUTS (ascending, ending with LEN) by the table (TABLE) or
 * by iconv alone; with SMALL, each call gets 1 to 12 bytes of output room.
 */
static void
trace_decode(const char *enc, bool table, const char *in, size_t len, const size_t *cuts,
             size_t ncuts, bool small, unsigned seed, struct trace *t)
{
    struct bh_market_decoder d;
    assert_int_equal(bh_market_decoder_open(&d, enc), 0);
    assert_non_null(d.table);
    if (!table)
        d.table = NULL;
    memset(t, 0, sizeof(*t));
    assert_int_equal(cuts[ncuts - 1], len);
    size_t from = 0;
    for (size_t c = 0; c < ncuts; c++) {
        const char *p = in + from;
        size_t n = cuts[c] - from;
        for (int calls = 0;; calls++) {
            assert_true(calls < 10000);
            size_t room = small ? 1 + next_rand(&seed) % 12 : sizeof(t->text) - t->len;
            assert_true(room <= sizeof(t->text) - t->len);
            char *o = t->text + t->len;
            size_t left = room;
            int rc = bh_market_decoder_run(&d, &p, &n, &o, &left, c == ncuts - 1);
            assert_int_equal((size_t)(o - (t->text + t->len)), room - left);
            t->len += room - left;
            if (rc == 0)
                break;
            if (rc == BH_DECODE_INVALID) {
                assert_true(t->ninvalid < 512);
                t->invalid_in[t->ninvalid] = (size_t)(p - in);
                t->invalid_out[t->ninvalid++] = t->len;
                continue;
            }
            assert_int_equal(rc, -E2BIG);
            assert_true(small);
        }
        assert_int_equal(n, 0);
        from = cuts[c];
    }
    bh_market_decoder_close(&d);
}

static void
assert_same_trace(const struct trace *a, const struct trace *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->text, b->text, a->len);
    assert_int_equal(a->ninvalid, b->ninvalid);
    for (size_t i = 0; i < a->ninvalid; i++) {
        assert_int_equal(a->invalid_in[i], b->invalid_in[i]);
        assert_int_equal(a->invalid_out[i], b->invalid_out[i]);
    }
}

/*
 * Every two-byte sequence (and every lead byte before every other byte)
 * decodes by the table as iconv decodes it: the same text and the same bytes
 * reported, whole or cut between its two bytes.
 */
static void
test_table_every_two_byte_sequence(void **state)
{
    (void)state;
    static const char *const encs[] = {"GB18030", "GBK", "cp936"};
    for (size_t k = 0; k < sizeof(encs) / sizeof(encs[0]); k++) {
        size_t decoded = 0;
        for (unsigned lead = 0x81; lead <= 0xFE; lead++) {
            for (unsigned trail = 0; trail <= 0xFF; trail++) {
                const char in[] = {'a', (char)lead, (char)trail, 'b'};
                char want[64];
                int want_invalid;
                size_t wn =
                    reference_in(encs[k], in, sizeof(in), want, sizeof(want), &want_invalid);
                const size_t whole[] = {sizeof(in)}, cut[] = {2, sizeof(in)};
                struct trace got, plain;
                trace_decode(encs[k], true, in, sizeof(in), whole, 1, false, 1, &got);
                assert_int_equal(got.len, wn);
                assert_memory_equal(got.text, want, wn);
                assert_int_equal(got.ninvalid, (size_t)want_invalid);
                trace_decode(encs[k], false, in, sizeof(in), whole, 1, false, 1, &plain);
                assert_same_trace(&got, &plain);
                trace_decode(encs[k], true, in, sizeof(in), cut, 2, false, 1, &got);
                trace_decode(encs[k], false, in, sizeof(in), cut, 2, false, 1, &plain);
                assert_same_trace(&got, &plain);
                if (want_invalid == 0 && wn > 2 && trail >= 0x40)
                    decoded++;
            }
        }
        /* GB18030 maps every two-byte sequence; GBK leaves some out */
        if (k == 0)
            assert_int_equal(decoded, 126 * 190);
        else
            assert_in_range(decoded, 20000, 126 * 190 - 1);
    }
    struct bh_market_decoder d;
    assert_int_equal(bh_market_decoder_open(&d, "UTF-8"), 0);
    assert_null(d.table);
    bh_market_decoder_close(&d);
}

/*
 * Random mixes of ASCII, two-byte sequences (the edges of the lead and trail
 * ranges too), four-byte sequences, invalid bytes and cut sequences, cut into
 * chunks anywhere and decoded with ample or tiny output room: the table gives
 * the text and the invalid reports (where in the input and the output) of
 * the decoder through iconv alone.
 */
static void
test_table_same_as_iconv_path(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "a",
        ",",
        "\r\n",
        "\xd6\xd0",
        "\xce\xc4",
        "\x81\x40",
        "\x81\x7e",
        "\x81\x80",
        "\x81\xfe",
        "\xfe\x40",
        "\xfe\xfe",
        "\xa2\xe3",
        "\xa1\xa4",
        "\xa8\xbf",
        "\xa6\xd9",
        "\x94\x39\xfc\x36",
        "\x95\x32\x82\x36",
        "\x81\x30\x81\x30",
        "\x84\x31\xa4\x39",
        "\x84\x31\xa5\x30",
        "\xfe\x39\xfe\x39",
        "\xe3\x32\x9a\x35",
        "\xff",
        "\x80",
        "\x81",
        "\x81\x30",
        "\x81\x30\x81",
        "\x81\x7f",
        "\x81\xff",
        "\x81\x20",
        "\x81\x3a",
    };
    static const char *const encs[] = {"GB18030", "GBK"};
    unsigned seed = 7;
    for (int round = 0; round < 4000; round++) {
        char in[600];
        size_t len = 0;
        int count = (int)(next_rand(&seed) % 80);
        for (int k = 0; k < count; k++) {
            const char *piece = pieces[next_rand(&seed) % (sizeof(pieces) / sizeof(pieces[0]))];
            memcpy(in + len, piece, strlen(piece));
            len += strlen(piece);
        }
        size_t cuts[600], ncuts = 0;
        unsigned every = 1 + next_rand(&seed) % 9;
        for (size_t i = 1; i < len; i++)
            if (next_rand(&seed) % every == 0)
                cuts[ncuts++] = i;
        cuts[ncuts++] = len;
        bool small = round % 3 == 0;
        const char *enc = encs[round % 2];
        static struct trace by_table, by_iconv;
        trace_decode(enc, true, in, len, cuts, ncuts, small, seed | 1, &by_table);
        trace_decode(enc, false, in, len, cuts, ncuts, small, (seed >> 3) | 1, &by_iconv);
        assert_same_trace(&by_table, &by_iconv);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_four_byte_sequence_cut_at_every_point),
        cmocka_unit_test(test_invalid_bytes_are_skipped_and_decoding_goes_on),
        cmocka_unit_test(test_sequence_cut_by_the_end_of_the_input),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_same_as_plain_iconv),
        cmocka_unit_test(test_utf8_is_checked_by_rfc_3629),
        cmocka_unit_test(test_utf8_output_full),
        cmocka_unit_test(test_unknown_encoding),
        cmocka_unit_test(test_table_every_two_byte_sequence),
        cmocka_unit_test(test_table_same_as_iconv_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
