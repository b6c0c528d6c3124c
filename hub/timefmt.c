#include "timefmt.h"

#include <errno.h>

int64_t
bh_days_from_civil(int64_t y, int m, int d)
{
    /* Shift the year to start in March so the leap day is last. */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int
days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : days[m - 1];
}

int
bh_civil_to_ms(int y, int mo, int d, int h, int mi, int s, int ms, int offset_min, int64_t *out)
{
    if (y < 1 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h < 0 ||
        h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59 || ms < 0 || ms > 999 ||
        offset_min < -24 * 60 || offset_min > 24 * 60)
        return -EINVAL;
    int64_t secs = bh_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
    *out = (secs - (int64_t)offset_min * 60) * 1000 + ms;
    return 0;
}

/* N decimal digits at S[*i]; -1 if any is not a digit. */
static int
digits(const char *s, size_t len, size_t *i, int n)
{
    int v = 0;
    for (int k = 0; k < n; k++, (*i)++) {
        if (*i >= len || s[*i] < '0' || s[*i] > '9')
            return -1;
        v = v * 10 + (s[*i] - '0');
    }
    return v;
}

static int
expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i >= len || s[*i] != c)
        return -1;
    (*i)++;
    return 0;
}

int
bh_parse_rfc3339(const char *s, size_t len, int64_t *ms, int *offset_min)
{
    size_t i = 0;
    int y = digits(s, len, &i, 4);
    int mo = expect(s, len, &i, '-') < 0 ? -1 : digits(s, len, &i, 2);
    int d = expect(s, len, &i, '-') < 0 ? -1 : digits(s, len, &i, 2);
    if (y < 0 || mo < 0 || d < 0 || i >= len || (s[i] != 'T' && s[i] != 't' && s[i] != ' '))
        return -EINVAL;
    i++;
    int h = digits(s, len, &i, 2);
    int mi = expect(s, len, &i, ':') < 0 ? -1 : digits(s, len, &i, 2);
    int sec = expect(s, len, &i, ':') < 0 ? -1 : digits(s, len, &i, 2);
    if (h < 0 || mi < 0 || sec < 0)
        return -EINVAL;
    int frac = 0;
    if (i < len && s[i] == '.') {
        int n = 0;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, n++)
            if (n < 3)
                frac = frac * 10 + (s[i] - '0');
        if (n == 0)
            return -EINVAL;
        for (; n < 3; n++)
            frac *= 10;
    }
    if (i >= len)
        return -EINVAL;
    int off;
    if (s[i] == 'Z' || s[i] == 'z') {
        off = 0;
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int sign = s[i++] == '-' ? -1 : 1;
        int oh = digits(s, len, &i, 2);
        int om = expect(s, len, &i, ':') < 0 ? -1 : digits(s, len, &i, 2);
        if (oh < 0 || om < 0 || oh > 23 || om > 59)
            return -EINVAL;
        off = sign * (oh * 60 + om);
    } else {
        return -EINVAL;
    }
    if (i != len)
        return -EINVAL;
    *offset_min = off;
    return bh_civil_to_ms(y, mo, d, h, mi, sec, frac, off, ms);
}
