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
 * Returns the number of characters written, excluding the NUL. */
int at_format_utc(uint64_t wall_us, char *out, unsigned cap);

#endif
