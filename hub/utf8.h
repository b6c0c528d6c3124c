/*
 * UTF-8 at the edges. Anything blockhub writes into an Avro string or a JSON
 * answer must be valid UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF), whatever the sender's bytes were. These helpers
 * check, cut at character boundaries and escape.
 */
#ifndef BH_UTF8_H
#define BH_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at S (1 to 4), or 0 if S[0..LEN) does not start with one. */
size_t bh_utf8_seq(const char *s, size_t len);

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
