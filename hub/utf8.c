#include "utf8.h"

#include <stdint.h>
#include <string.h>

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
        if (*s < 0x80) {
            s++;
            continue;
        }
        size_t n = bh_utf8_seq((const char *)s, (size_t)(end - s));
        if (n == 0)
            return 0;
        s += n;
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
