/*
 * The unified social credit code (统一社会信用代码) of GB 32100-2015: 18
 * characters from 0-9 and the capital letters without I, O, S, V and Z; the
 * 18th is a check character computed from the first 17.
 */
#ifndef BH_MARKET_USCC_H
#define BH_MARKET_USCC_H

#include <stddef.h>

/*
 * 0 if S (LEN bytes) is a valid code. Otherwise -EINVAL, with *EXPECTED set
 * to the check character the first 17 call for ('\0' when the length or a
 * character is already wrong).
 */
int bh_market_uscc_check(const char *s, size_t len, char *expected);

#endif
