#include "fields.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "timefmt.h"

/* N digits at S; -1 if one is not a digit. */
static int
num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int
bh_market_parse_time(const char *s, size_t len, int64_t *ms)
{
    int y, mo, d, h, mi, sec = 0;
    if (len == 19 && s[4] == '-' && s[7] == '-' && s[10] == ' ' && s[13] == ':' && s[16] == ':') {
        sec = num(s + 17, 2);
    } else if (len != 16 || s[4] != '/' || s[7] != '/' || s[10] != ' ' || s[13] != ':') {
        return -EINVAL;
    }
    y = num(s, 4);
    mo = num(s + 5, 2);
    d = num(s + 8, 2);
    h = num(s + 11, 2);
    mi = num(s + 14, 2);
    if (y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || sec < 0)
        return -EINVAL;
    return bh_civil_to_ms(y, mo, d, h, mi, sec, 0, BH_MARKET_UTC_OFFSET_MIN, ms);
}

int
bh_market_parse_coord(const char *s, size_t len, double limit, double *out)
{
    char buf[40];
    size_t i = 0, digits = 0, frac = 0;
    if (len == 0 || len >= sizeof(buf))
        return -EINVAL;
    if (s[i] == '-')
        i++;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (digits == 0)
        return -EINVAL;
    if (i < len && s[i] == '.') {
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            frac++;
        if (frac == 0)
            return -EINVAL;
    }
    if (i != len)
        return -EINVAL;
    double v;
    if (digits + frac <= 15 && frac <= 22) {
        /* Exact: an integer below 2^53 over an exact power of ten, one correctly rounded
         * division (Clinger's fast path); the same double strtod gives. */
        static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
        int64_t mant = 0;
        for (size_t k = s[0] == '-'; k < len; k++)
            if (s[k] != '.')
                mant = mant * 10 + (s[k] - '0');
        v = (double)mant / pow10[frac];
        if (s[0] == '-')
            v = -v;
    } else {
        /* The text is a plain decimal number: strtod reads it in the C locale. */
        memcpy(buf, s, len);
        buf[len] = '\0';
        v = strtod(buf, NULL);
    }
    if (v < -limit || v > limit)
        return -EINVAL;
    *out = v;
    return 0;
}
