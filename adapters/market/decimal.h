/*
 * Money as an exact count of fen (0.01 yuan): parsed from text without
 * floating point, published as an Avro decimal (scale 2).
 */
#ifndef BH_MARKET_DECIMAL_H
#define BH_MARKET_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

/*
 * Yuan with up to two decimals ("0", "12.5", "12.50", "1234567.89") to fen,
 * with at most MAX_DIGITS digits before the point. No sign, no exponent, no
 * spaces, at least one digit on each side of a point. 0 or -EINVAL (-ERANGE
 * when there are too many digits before the point).
 */
int bh_market_decimal_parse_fen(const char *s, size_t len, int max_digits, int64_t *fen);

/*
 * The Avro decimal encoding of an unscaled value: big-endian two's complement
 * in the fewest bytes (at least one). OUT needs 8 bytes; returns the length.
 */
size_t bh_market_decimal_to_bytes(int64_t unscaled, unsigned char out[8]);

#endif
