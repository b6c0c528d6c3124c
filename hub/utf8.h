/*
 * UTF-8 at the edges. Anything blockhub writes into an Avro string or a JSON
 * answer must be valid UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF), whatever the sender's bytes were. These helpers
 * check, cut at character boundaries and escape.
 */
#ifndef BH_UTF8_H
#define BH_UTF8_H

#include <stddef.h>
#include <stdint.h>

/*
 * Length of the valid UTF-8 sequence at S (1 to 4), or 0 if S[0..LEN) does not
 * start with one. Inline: the JSON scanner and bh_utf8_valid call it for every
 * character that is not ASCII.
 */
static inline size_t
bh_utf8_seq(const char *s, size_t len)
{
    const unsigned char *q = (const unsigned char *)s;
    unsigned char c;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
    size_t n;

    if (len == 0)
        return 0;
    c = q[0];
    if (c < 0x80)
        return 1;
    if (c < 0xc2 || c > 0xf4)
        return 0;
    n = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (c == 0xe0)
        lo = 0xa0; /* no overlong forms */
    else if (c == 0xed)
        hi = 0x9f; /* no surrogates */
    else if (c == 0xf0)
        lo = 0x90; /* no overlong forms */
    else if (c == 0xf4)
        hi = 0x8f; /* nothing past U+10FFFF */
    if (len < n || q[1] < lo || q[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if ((q[i] & 0xc0) != 0x80)
            return 0;
    }
    return n;
}

/* Writes the code point CP (a Unicode scalar value) as UTF-8 at OUT; returns its length (1 to 4).
 */
static inline size_t
bh_utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* 1 if S[0..LEN) is entirely valid UTF-8. */
int bh_utf8_valid(const char *s, size_t len);

/*
 * The longest prefix of valid UTF-8 S[0..LEN) that is at most MAX bytes and
 * ends on a character boundary: printf("%.*s", (int)bh_utf8_cut(s, len, 64), s)
 * instead of "%.64s", which may cut a character in two.
 */
size_t bh_utf8_cut(const char *s, size_t len, size_t max);

/*
 * Copy S[0..LEN) into DST as valid UTF-8, NUL-terminated, never more than
 * DSTSIZE bytes with the NUL: valid characters are copied, every byte of an
 * invalid sequence becomes the four characters "\xNN", and a NUL byte becomes
 * "\x00". The copy ends on a character (or escape) boundary when DST is too
 * small. Returns the bytes written, without the NUL.
 */
size_t bh_utf8_sanitize(char *dst, size_t dstsize, const char *s, size_t len);

/* The size bh_utf8_sanitize needs for all of S (with the NUL). */
size_t bh_utf8_sanitized_size(const char *s, size_t len);

#endif
