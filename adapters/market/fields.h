/* The market feed's time and coordinate columns (docs/feeds.md, section 5.3). */
#ifndef BH_MARKET_FIELDS_H
#define BH_MARKET_FIELDS_H

#include <stddef.h>
#include <stdint.h>

/* Asia/Shanghai: UTC+8 all year (no daylight saving since 1991). */
#define BH_MARKET_UTC_OFFSET_MIN 480

/*
 * 发生时间: "YYYY-MM-DD HH:MM:SS" or "YYYY/MM/DD HH:MM", Asia/Shanghai local
 * time, to UTC epoch milliseconds. -EINVAL for another layout or an impossible
 * date or time.
 */
int bh_market_parse_time(const char *s, size_t len, int64_t *ms);

/*
 * 经度/纬度: a plain decimal number ("114.139745", "-3", "22.5"; no exponent,
 * sign '+', spaces, inf or nan) within [-LIMIT, LIMIT]. 0 or -EINVAL.
 */
int bh_market_parse_coord(const char *s, size_t len, double limit, double *out);

#endif
