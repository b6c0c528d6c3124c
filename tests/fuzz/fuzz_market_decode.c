/*
 * The market decoder from GB18030 and GBK: its two-byte table against the
 * decoder through iconv alone (the table set to NULL), on the same bytes cut
 * into the same random chunks.
 *
 * The input starts with five control bytes:
 *   [0] bits 0-1: the encoding (GB18030, GBK, CP936, GB18030)
 *       bit 2:    1 to 16 bytes of output room per call instead of ample room
 *       bits 3-5: the longest chunk (1, 2, 3, 4, 8, 16, 64 or 4096 bytes)
 *   [1..4] the seed of the chunk lengths and the output rooms
 * and the text follows.
 *
 * Oracle (besides no crash, leak or undefined behaviour): both decoders
 * write the same text and report invalid bytes at the same places (the
 * input and output offsets of each report), consume every chunk, and stop
 * for a full output only when given little room.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/market/decode.h"
#include "fuzz_common.h"

static const char *const encodings[4] = {"GB18030", "GBK", "CP936", "GB18030"};
static const size_t longest[8] = {1, 2, 3, 4, 8, 16, 64, 4096};

static struct bh_market_decoder by_table[4], by_iconv[4];
static bool ready;

/* What a decoder gave: its text and, per invalid report, the input and output offsets. */
struct trace {
    char *text;
    size_t len, cap;
    size_t *reports; /* pairs */
    size_t nreports, capreports;
};

static void
grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need)
        cap2 *= 2;
    void *q = realloc(*p, cap2 * size);
    if (q == NULL)
        bh_fuzz_fail("out of memory");
    *p = q;
    *cap = cap2;
}

static uint32_t
next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static void
close_all(void)
{
    for (int e = 0; e < 4; e++) {
        bh_market_decoder_close(&by_table[e]);
        bh_market_decoder_close(&by_iconv[e]);
    }
}

static void
init(void)
{
    if (ready)
        return;
    ready = true;
    atexit(close_all);
    for (int e = 0; e < 4; e++) {
        if (bh_market_decoder_open(&by_table[e], encodings[e]) < 0 ||
            bh_market_decoder_open(&by_iconv[e], encodings[e]) < 0)
            bh_fuzz_fail("iconv does not know %s", encodings[e]);
        if (by_table[e].table == NULL)
            bh_fuzz_fail("%s is decoded without the table", encodings[e]);
        by_iconv[e].table = NULL;
    }
}

/* Decode TEXT in chunks of 1 to MAX bytes (lengths from SEED), with SMALL or ample room. */
static void
run(struct bh_market_decoder *d, const char *text, size_t len, size_t max, uint32_t seed,
    uint32_t room_seed, bool small, struct trace *t)
{
    bh_market_decoder_reset(d);
    size_t off = 0;
    do {
        size_t n = 1 + next_rand(&seed) % max;
        if (n > len - off)
            n = len - off;
        const char *in = text + off;
        size_t inlen = n;
        bool final = off + n == len;
        for (size_t calls = 0;; calls++) {
            if (calls > 4 * n + 64)
                bh_fuzz_fail("the decoder makes no progress (%zu bytes left)", inlen);
            size_t room = small ? 1 + next_rand(&room_seed) % 16 : 4 * inlen + 16;
            grow((void **)&t->text, &t->cap, t->len + room, 1);
            char *o = t->text + t->len;
            size_t left = room;
            int rc = bh_market_decoder_run(d, &in, &inlen, &o, &left, final);
            if ((size_t)(o - (t->text + t->len)) != room - left)
                bh_fuzz_fail("the decoder's output pointer and room disagree");
            t->len += room - left;
            if (rc == 0)
                break;
            if (rc == BH_DECODE_INVALID) {
                grow((void **)&t->reports, &t->capreports, 2 * (t->nreports + 1), sizeof(size_t));
                t->reports[2 * t->nreports] = (size_t)(in - text);
                t->reports[2 * t->nreports + 1] = t->len;
                t->nreports++;
            } else if (rc != -E2BIG || !small) {
                bh_fuzz_fail("the decoder returned %d with %zu bytes of room", rc, room);
            }
        }
        if (inlen != 0)
            bh_fuzz_fail("the decoder left %zu bytes of a chunk", inlen);
        off += n;
    } while (off < len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size < 5)
        return 0;
    unsigned ctl = data[0];
    int enc = (int)(ctl & 3);
    bool small = (ctl & 4) != 0;
    size_t max = longest[(ctl >> 3) & 7];
    uint32_t seed = ((uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
                     (uint32_t)data[4] << 24) |
                    1;
    const char *text = (const char *)data + 5;
    size_t len = size - 5;

    struct trace a = {0}, b = {0};
    run(&by_table[enc], text, len, max, seed, seed * 2654435761u | 1, small, &a);
    run(&by_iconv[enc], text, len, max, seed, seed * 40503u | 1, small, &b);
    if (a.len != b.len || (a.len > 0 && memcmp(a.text, b.text, a.len) != 0))
        bh_fuzz_fail("%s: the table's text is not iconv's (%zu bytes, %zu by iconv)",
                     encodings[enc], a.len, b.len);
    if (a.nreports != b.nreports ||
        (a.nreports > 0 && memcmp(a.reports, b.reports, 2 * a.nreports * sizeof(size_t)) != 0))
        bh_fuzz_fail("%s: the table reports invalid bytes elsewhere than iconv (%zu, %zu reports)",
                     encodings[enc], a.nreports, b.nreports);
    free(a.text);
    free(b.text);
    free(a.reports);
    free(b.reports);
    return 0;
}
