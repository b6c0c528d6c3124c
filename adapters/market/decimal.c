#include "decimal.h"

#include <errno.h>

int
bh_market_decimal_parse_fen(const char *s, size_t len, int max_digits, int64_t *fen)
{
    size_t i = 0;
    int64_t v = 0;
    int whole = 0, frac = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (++whole > max_digits || whole > 16)
            return -ERANGE;
        v = v * 10 + (s[i++] - '0');
    }
    if (whole == 0)
        return -EINVAL;
    v *= 100;
    if (i < len && s[i] == '.') {
        int64_t scale = 10;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, scale /= 10) {
            if (++frac > 2)
                return -EINVAL;
            v += (s[i] - '0') * scale;
        }
        if (frac == 0)
            return -EINVAL;
    }
    if (i != len)
        return -EINVAL;
    *fen = v;
    return 0;
}

size_t
bh_market_decimal_to_bytes(int64_t unscaled, unsigned char out[8])
{
    uint64_t u = (uint64_t)unscaled;
    size_t n = 8;
    /* Drop leading bytes that only repeat the sign of the next one. */
    while (n > 1) {
        unsigned char top = (unsigned char)(u >> (8 * (n - 1)));
        unsigned char next = (unsigned char)(u >> (8 * (n - 2)));
        if (!((top == 0x00 && !(next & 0x80)) || (top == 0xff && (next & 0x80))))
            break;
        n--;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(u >> (8 * (n - 1 - i)));
    return n;
}
