#include "uscc.h"

#include <errno.h>

/* The code's 31 characters, each worth its index. */
static const char charset[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
/* Weight of position i: 3^i mod 31. */
static const int weights[17] = {1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28};

/* Each character's value plus one (0: not in the set). */
static const unsigned char values[128] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
    ['G'] = 17, ['H'] = 18, ['J'] = 19, ['K'] = 20, ['L'] = 21, ['M'] = 22, ['N'] = 23, ['P'] = 24,
    ['Q'] = 25, ['R'] = 26, ['T'] = 27, ['U'] = 28, ['W'] = 29, ['X'] = 30, ['Y'] = 31};

static int
value(char c)
{
    return (unsigned char)c < 128 ? values[(unsigned char)c] - 1 : -1;
}

int
bh_market_uscc_check(const char *s, size_t len, char *expected)
{
    *expected = '\0';
    if (len != 18)
        return -EINVAL;
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        int v = value(s[i]);
        if (v < 0)
            return -EINVAL;
        sum += v * weights[i];
    }
    int check = 31 - sum % 31;
    *expected = charset[check == 31 ? 0 : check];
    return s[17] == *expected ? 0 : -EINVAL;
}
