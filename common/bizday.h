/* The business day: the one rule that says to which settlement day a request belongs, shared by
 * atlas-settle (which closes a day) and switchd (which sends the same date in DE 15 of its
 * answers) — so that the two can never disagree. docs/settle.md describes it. */
#ifndef ATLAS_BIZDAY_H
#define ATLAS_BIZDAY_H

#include <stdbool.h>
#include <stdint.h>

#define AT_DAY_US INT64_C(86400000000)

/* A request belongs to the business day of its receipt time t_us (µs since the epoch, UTC; the
 * journal row's created_at). The cutover is a time of day in minutes after 00:00 UTC (0..1439).
 * With cutover C > 0, a request received at or after C on calendar day X belongs to day X + 1,
 * one received before C to day X; with C = 0 the business day is the calendar day. Returns the
 * day as days since 1970-01-01 (at_civil_from_days gives its date). Pure. */
int64_t at_business_day(int64_t t_us, unsigned cutover_min);

/* DE 15 (settlement date) of a request received at t_us under cutover_min: the month and day
 * of its business day, "MMDD" and a NUL. */
void at_settlement_date(int64_t t_us, unsigned cutover_min, char out[5]);

/* The receipt times [*start_us, *end_us) of business day `day` (days since the epoch) under
 * cutover_min: the inverse of at_business_day, 24 hours long. */
void at_business_window(int64_t day, unsigned cutover_min, int64_t *start_us, int64_t *end_us);

/* Parses a cutover "HH:MM" (00:00..23:59, two digits each) into minutes. false on anything else. */
__attribute__((warn_unused_result)) bool at_cutover_parse(const char *s, unsigned *minutes);

/* Parses a date "YYYY-MM-DD" (a real calendar date, years 1970..9999) into days since the
 * epoch. false on anything else. */
__attribute__((warn_unused_result)) bool at_date_parse(const char *s, int64_t *day);

#endif
