/* The business day and its cutover (bizday.h): integer arithmetic on microseconds, no time
 * zone, no libc time functions — the same answer on every machine and in every process. */
#include "bizday.h"

#include <string.h>

#include "clock.h"

/* Floor division: a time before the epoch still falls on the day that contains it. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t at_business_day(int64_t t_us, unsigned cutover_min)
{
    int64_t c_us = (int64_t)cutover_min * 60 * 1000000;
    /* Shift the day's start to the cutover: a time at or after C on day X lands on X, before C
     * on X - 1; with C > 0 that day is named by its end (X + 1, X). */
    return floor_div(t_us - c_us, AT_DAY_US) + (cutover_min > 0 ? 1 : 0);
}

void at_settlement_date(int64_t t_us, unsigned cutover_min, char out[5])
{
    int64_t y;
    unsigned m, d;
    at_civil_from_days(at_business_day(t_us, cutover_min), &y, &m, &d);
    out[0] = (char)('0' + m / 10);
    out[1] = (char)('0' + m % 10);
    out[2] = (char)('0' + d / 10);
    out[3] = (char)('0' + d % 10);
    out[4] = '\0';
}

void at_business_window(int64_t day, unsigned cutover_min, int64_t *start_us, int64_t *end_us)
{
    int64_t c_us = (int64_t)cutover_min * 60 * 1000000;
    int64_t first = cutover_min > 0 ? day - 1 : day;
    *start_us = first * AT_DAY_US + c_us;
    *end_us = *start_us + AT_DAY_US;
}

static bool two_digits(const char *s, unsigned *v)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return false;
    *v = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
    return true;
}

bool at_cutover_parse(const char *s, unsigned *minutes)
{
    unsigned h, m;
    if (strlen(s) != 5 || s[2] != ':' || !two_digits(s, &h) || !two_digits(s + 3, &m) || h > 23 ||
        m > 59)
        return false;
    *minutes = h * 60 + m;
    return true;
}

bool at_date_parse(const char *s, int64_t *day)
{
    unsigned c, y2, m, d;
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' || !two_digits(s, &c) ||
        !two_digits(s + 2, &y2) || !two_digits(s + 5, &m) || !two_digits(s + 8, &d))
        return false;
    int64_t y = (int64_t)(c * 100 + y2);
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31)
        return false;
    /* A real date: the day count must give the same date back (refuses 02-30, 04-31...). */
    int64_t n = at_days_from_civil(y, m, d), yy;
    unsigned mm, dd;
    at_civil_from_days(n, &yy, &mm, &dd);
    if (yy != y || mm != m || dd != d)
        return false;
    *day = n;
    return true;
}
