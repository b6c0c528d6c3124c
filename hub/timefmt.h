/* Event-time parsing shared by the adapters. All results are UTC epoch milliseconds. */
#ifndef BH_TIMEFMT_H
#define BH_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

/* Days since 1970-01-01 of a proleptic Gregorian date (no range check). */
int64_t bh_days_from_civil(int64_t y, int m, int d);

/*
 * Epoch milliseconds of a calendar date and time at UTC offset OFFSET_MIN.
 * Returns -EINVAL for an impossible date or time (month 13, February 30,
 * hour 24, second 60...).
 */
int bh_civil_to_ms(int y, int mo, int d, int h, int mi, int s, int ms, int offset_min,
                   int64_t *out);

/*
 * RFC 3339 date-time with a mandatory offset: 2026-11-27T08:15:00+08:00,
 * ...T00:15:00Z, optional fraction (kept to milliseconds), 'T', 't' or ' '
 * between date and time. *offset_min gets the offset written (0 for Z).
 */
int bh_parse_rfc3339(const char *s, size_t len, int64_t *ms, int *offset_min);

#endif
