/* Monotonic and wall clocks, and the one timestamp format used in logs. */
#include "clock.h"

#include "fmt.h"

#include <stdio.h>
#include <time.h>

uint64_t at_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t at_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t at_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2; /* years start in March: the leap day ends them */
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    uint64_t yoe = (uint64_t)(y - era * 400);                        /* [0, 399] */
    uint64_t doy = (153u * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    uint64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            /* [0, 146096] */
    return era * 146097 + (int64_t)doe - 719468;
}

void at_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t z = days + 719468; /* days since 0000-03-01 */
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    uint64_t doe = (uint64_t)(z - era * 146097);                          /* [0, 146096] */
    uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    uint64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void at_put_date(char out[11], int64_t y, unsigned m, unsigned d)
{
    at_put_digits(out, 4, (uint64_t)y);
    out[4] = '-';
    at_put_digits(out + 5, 2, m);
    out[7] = '-';
    at_put_digits(out + 8, 2, d);
    out[10] = '\0';
}

int at_format_utc(uint64_t wall_us, char *out, unsigned cap)
{
    uint64_t secs = wall_us / 1000000u;
    unsigned sod = (unsigned)(secs % 86400u), us = (unsigned)(wall_us % 1000000u);
    int64_t y;
    unsigned mo, d;
    at_civil_from_days((int64_t)(secs / 86400u), &y, &mo, &d);
    if (cap < 28 || y > 9999)
        return snprintf(out, cap, "%04lld-%02u-%02uT%02u:%02u:%02u.%06uZ", (long long)y, mo, d,
                        sod / 3600, sod / 60 % 60, sod % 60, us);
    at_put_date(out, y, mo, d);
    out[10] = 'T';
    at_put_digits(out + 11, 2, sod / 3600);
    out[13] = ':';
    at_put_digits(out + 14, 2, sod / 60 % 60);
    out[16] = ':';
    at_put_digits(out + 17, 2, sod % 60);
    out[19] = '.';
    at_put_digits(out + 20, 6, us);
    out[26] = 'Z';
    out[27] = '\0';
    return 27;
}
