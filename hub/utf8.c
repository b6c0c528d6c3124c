#include "utf8.h"

#include <stdint.h>
#include <string.h>

size_t
bh_utf8_seq(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    if (len == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

int
bh_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    while (s < end) {
        if (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if ((w & 0x8080808080808080ULL) == 0) {
                s += 8;
                continue;
            }
        }
        unsigned c = *s;
        if (c < 0x80) {
            s++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
            hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing above U+10FFFF */
        } else {
            return 0;
        }
        if ((size_t)(end - s) <= n || s[1] < lo || s[1] > hi)
            return 0;
        for (size_t k = 2; k <= n; k++)
            if ((s[k] & 0xC0) != 0x80)
                return 0;
        s += n + 1;
    }
    return 1;
}

size_t
bh_utf8_cut(const char *s, size_t len, size_t max)
{
    size_t i = 0;
    while (i < len) {
        size_t n = bh_utf8_seq(s + i, len - i);
        if (n == 0 || i + n > max)
            break;
        i += n;
    }
    return i;
}

static const char hex[] = "0123456789abcdef";

size_t
bh_utf8_sanitize(char *dst, size_t dstsize, const char *s, size_t len)
{
    size_t o = 0, i = 0;
    if (dstsize == 0)
        return 0;
    while (i < len) {
        size_t n = s[i] != '\0' ? bh_utf8_seq(s + i, len - i) : 0;
        if (n > 0) {
            if (o + n >= dstsize)
                break;
            memcpy(dst + o, s + i, n);
            o += n;
            i += n;
            continue;
        }
        if (o + 4 >= dstsize)
            break;
        unsigned char c = (unsigned char)s[i++];
        dst[o++] = '\\';
        dst[o++] = 'x';
        dst[o++] = hex[c >> 4];
        dst[o++] = hex[c & 15];
    }
    dst[o] = '\0';
    return o;
}

size_t
bh_utf8_sanitized_size(const char *s, size_t len)
{
    size_t need = 1, i = 0;
    while (i < len) {
        size_t n = s[i] != '\0' ? bh_utf8_seq(s + i, len - i) : 0;
        if (n > 0) {
            need += n;
            i += n;
        } else {
            need += 4;
            i++;
        }
    }
    return need;
}
