/* Clocks used for latencies (monotonic) and for log/journal timestamps (wall). */
#ifndef ATLAS_CLOCK_H
#define ATLAS_CLOCK_H

#include <stdint.h>

/* Nanoseconds on CLOCK_MONOTONIC: for durations only. */
uint64_t at_mono_ns(void);

/* Microseconds since the Unix epoch on CLOCK_REALTIME: for timestamps. */
uint64_t at_wall_us(void);

/* Formats a wall-clock time (µs since epoch) as ISO 8601 UTC with
 * microseconds, "2026-11-26T15:06:15.123456Z", into out (>= 28 bytes).
 * Returns the number of characters written, excluding the NUL. Written
 * digit by digit (it runs for every journal row); years after 9999, or a
 * smaller cap, go through snprintf with the same result. */
int at_format_utc(uint64_t wall_us, char *out, unsigned cap);

/* Days since 1970-01-01 of a date of the proleptic Gregorian calendar (m
 * 1..12, d 1..31), and the date of such a day count: the exact arithmetic of
 * H. Hinnant's days_from_civil / civil_from_days, for the hot path where
 * timegm() and gmtime_r() would take glibc's time-zone lock (and timegm
 * searches). Valid for years within +/- 2^40 or so. */
int64_t at_days_from_civil(int64_t y, unsigned m, unsigned d);
void at_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

/* Writes a date as "YYYY-MM-DD" and a NUL (years 0..9999: "%04d-%02d-%02d" cut to 10 bytes). */
void at_put_date(char out[11], int64_t y, unsigned m, unsigned d);

#endif
