/* Unit tests of the business-day rule (common/bizday.c): the cutover's boundaries (exactly at it,
 * one microsecond before), midnight, cutover 00:00, month, year and leap-day ends, the window
 * being the inverse of the day, and the strict parsers of HH:MM and YYYY-MM-DD. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>

#include "bizday.h"
#include "clock.h"

#define US(h, m) ((int64_t)((h)*60 + (m)) * 60 * 1000000)

static int64_t day_of(int64_t y, unsigned m, unsigned d)
{
    return at_days_from_civil(y, m, d);
}

/* Microseconds at y-m-d 00:00 UTC. */
static int64_t midnight(int64_t y, unsigned m, unsigned d)
{
    return day_of(y, m, d) * AT_DAY_US;
}

static void test_cutover_boundaries(void **state)
{
    (void)state;
    unsigned c = 22 * 60; /* 22:00 */
    int64_t x = midnight(2026, 12, 6);
    assert_true(at_business_day(x + US(22, 0), c) == day_of(2026, 12, 7));     /* exactly at */
    assert_true(at_business_day(x + US(22, 0) - 1, c) == day_of(2026, 12, 6)); /* 1 µs before */
    assert_true(at_business_day(x, c) == day_of(2026, 12, 6));                 /* midnight */
    assert_true(at_business_day(x - 1, c) == day_of(2026, 12, 6)); /* 23:59:59.999999 of the 5th */
    assert_true(at_business_day(x + AT_DAY_US - 1, c) == day_of(2026, 12, 7));
}

static void test_cutover_midnight(void **state)
{
    (void)state;
    int64_t x = midnight(2026, 12, 6);
    assert_true(at_business_day(x, 0) == day_of(2026, 12, 6));
    assert_true(at_business_day(x - 1, 0) == day_of(2026, 12, 5));
    assert_true(at_business_day(x + AT_DAY_US - 1, 0) == day_of(2026, 12, 6));
    /* 00:01: a minute after midnight already belongs to the next day. */
    assert_true(at_business_day(x + US(0, 1), 1) == day_of(2026, 12, 7));
    assert_true(at_business_day(x + US(0, 1) - 1, 1) == day_of(2026, 12, 6));
    /* 23:59 */
    assert_true(at_business_day(x + US(23, 59) - 1, 23 * 60 + 59) == day_of(2026, 12, 6));
    assert_true(at_business_day(x + US(23, 59), 23 * 60 + 59) == day_of(2026, 12, 7));
}

/* DE 15: the business day's MMDD, across a year end and on a leap day. */
static void test_settlement_date(void **state)
{
    (void)state;
    char d[5];
    unsigned c = 22 * 60;
    at_settlement_date(midnight(2026, 12, 31) + US(21, 59), c, d);
    assert_string_equal(d, "1231");
    at_settlement_date(midnight(2026, 12, 31) + US(22, 0), c, d);
    assert_string_equal(d, "0101");
    at_settlement_date(midnight(2028, 2, 28) + US(23, 0), c, d);
    assert_string_equal(d, "0229");
    at_settlement_date(midnight(2026, 12, 6) + US(23, 59), 0, d);
    assert_string_equal(d, "1206");
}

static void test_month_year_leap_ends(void **state)
{
    (void)state;
    unsigned c = 18 * 60 + 30;
    assert_true(at_business_day(midnight(2026, 12, 31) + US(18, 30), c) == day_of(2027, 1, 1));
    assert_true(at_business_day(midnight(2026, 11, 30) + US(18, 30), c) == day_of(2026, 12, 1));
    assert_true(at_business_day(midnight(2028, 2, 28) + US(18, 30), c) == day_of(2028, 2, 29));
    assert_true(at_business_day(midnight(2028, 2, 29) + US(18, 30), c) == day_of(2028, 3, 1));
    assert_true(at_business_day(midnight(2027, 2, 28) + US(18, 30), c) == day_of(2027, 3, 1));
    assert_true(at_business_day(midnight(2028, 2, 29) + US(18, 29), c) == day_of(2028, 2, 29));
    /* Before the epoch the floor still holds. */
    assert_true(at_business_day(-1, 0) == -1);
    assert_true(at_business_day(-1, c) == 0);
}

/* The window of a day is exactly the times at_business_day gives that day. */
static void test_window_is_inverse(void **state)
{
    (void)state;
    static const unsigned cuts[] = { 0, 1, 60, 22 * 60, 23 * 60 + 59 };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        int64_t d = day_of(2028, 2, 29), s, e;
        at_business_window(d, cuts[i], &s, &e);
        assert_true(e - s == AT_DAY_US);
        assert_true(at_business_day(s, cuts[i]) == d);
        assert_true(at_business_day(e - 1, cuts[i]) == d);
        assert_true(at_business_day(s - 1, cuts[i]) == d - 1);
        assert_true(at_business_day(e, cuts[i]) == d + 1);
    }
    int64_t s, e;
    at_business_window(day_of(2027, 1, 1), 22 * 60, &s, &e);
    assert_true(s == midnight(2026, 12, 31) + US(22, 0));
    assert_true(e == midnight(2027, 1, 1) + US(22, 0));
    at_business_window(day_of(2027, 1, 1), 0, &s, &e);
    assert_true(s == midnight(2027, 1, 1) && e == midnight(2027, 1, 2));
}

static void test_parsers(void **state)
{
    (void)state;
    unsigned m = 7;
    assert_true(at_cutover_parse("00:00", &m) && m == 0);
    assert_true(at_cutover_parse("22:30", &m) && m == 22 * 60 + 30);
    assert_true(at_cutover_parse("23:59", &m) && m == 1439);
    m = 7;
    assert_false(at_cutover_parse("24:00", &m));
    assert_false(at_cutover_parse("12:60", &m));
    assert_false(at_cutover_parse("1:00", &m));
    assert_false(at_cutover_parse("01:00 ", &m));
    assert_false(at_cutover_parse("0100", &m));
    assert_false(at_cutover_parse("", &m));
    assert_int_equal(m, 7);
    int64_t d = 0;
    assert_true(at_date_parse("2028-02-29", &d) && d == day_of(2028, 2, 29));
    assert_true(at_date_parse("2000-01-01", &d) && d == day_of(2000, 1, 1));
    assert_true(at_date_parse("9999-12-31", &d) && d == day_of(9999, 12, 31));
    assert_true(at_date_parse("1970-01-01", &d) && d == 0);
    assert_false(at_date_parse("1969-12-31", &d));
    assert_false(at_date_parse("2027-02-29", &d));
    assert_false(at_date_parse("2026-04-31", &d));
    assert_false(at_date_parse("2026-13-01", &d));
    assert_false(at_date_parse("2026-1-01", &d));
    assert_false(at_date_parse("2026-01-01x", &d));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cutover_boundaries), cmocka_unit_test(test_cutover_midnight),
        cmocka_unit_test(test_settlement_date),    cmocka_unit_test(test_month_year_leap_ends),
        cmocka_unit_test(test_window_is_inverse),  cmocka_unit_test(test_parsers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
