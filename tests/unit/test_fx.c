/* libatlas_fx against values worked out by hand: DE 10 from a rate and a spread, the conversion
 * of every ordered pair of the demo's four currencies (rounding half-up on exact halves,
 * exponent 2 -> 0 and 0 -> 2, one minor unit, twelve digits, overflow refused), the refusals of
 * the decimal, time, rate and CSV parsers, and the lookup of a rate at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fx.h"

#define MAD 504
#define MRU 929
#define XOF 952
#define XAF 950

/* ---- DE 10 -------------------------------------------------------------------------------- */

/* effective = rate × (1 + spread/100), then the most decimal places k (0..7) such that
 * round_half_up(effective × 10^k) has at most seven digits:
 *   10.892345 × 1        k=5: 1089234.5 (exactly half)   -> 1089235   "51089235"
 *   0.0916               k=7: 916000                     -> 0916000   "70916000"
 *   655.957              k=4: 6559570                                 "46559570"
 *   1                    k=7 gives 10000000 (8 digits); k=6: 1000000  "61000000"
 *   1 at 1.0 %           1.01, k=6: 1010000                           "61010000"
 *   60.020066 at 1.0 %   60.62026666, k=5: 6062026.666   -> 6062027   "56062027"
 *   0.25027322 at 1.0 %  0.2527759522, k=7: 2527759.522  -> 2527760   "72527760"
 *   2 at 0.125 %         2 × 1.00125 = 2.0025, k=6: 2002500           "62002500"
 *   9999999              k=0: 9999999                                 "09999999"
 *   9999999.4            k=0: 9999999.4                  -> 9999999   "09999999"
 *   9.99999995           k=6: 9999999.95 -> 10000000 (8 digits, so not k=6);
 *                        k=5: 999999.995 -> 1000000                   "51000000"
 *   0.00000005           k=7: 0.5 (half)                 -> 1         "70000001"
 *   0.123456789012       k=7: 1234567.89012              -> 1234568   "71234568"
 *   9.9 at 1.0 %         9.999, k=6: 9999000                          "69999000"
 *   9.9009901 at 1.0 %   9.999999999 + ... = 10.000000001, k=6: 10000000.001 (8 digits);
 *                        k=5: 1000000.0001 -> 1000000                 "51000000" */
static void test_de10_table(void **state)
{
    static const struct {
        const char *rate, *spread, *de10, *shown;
    } cases[] = {
        { "10.892345", "0", "51089235", "10.89235" },
        { "0.0916", "0", "70916000", "0.0916000" },
        { "655.957", "0", "46559570", "655.9570" },
        { "1", "0", "61000000", "1.000000" },
        { "1", "1.0", "61010000", "1.010000" },
        { "60.020066", "1.0", "56062027", "60.62027" },
        { "0.25027322", "1.0", "72527760", "0.2527760" },
        { "2", "0.125", "62002500", "2.002500" },
        { "9999999", "0", "09999999", "9999999" },
        { "9999999.4", "0", "09999999", "9999999" },
        { "9.99999995", "0", "51000000", "10.00000" },
        { "0.00000005", "0", "70000001", "0.0000001" },
        { "0.123456789012", "0", "71234568", "0.1234568" },
        { "9.9", "1.0", "69999000", "9.999000" },
        { "9.9009901", "1.0", "51000000", "10.00000" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fx_decimal rate, spread;
        struct fx_de10 d;
        char de10[9], shown[24];
        assert_int_equal(fx_decimal_parse(cases[i].rate, &rate, NULL), FX_OK);
        assert_int_equal(fx_decimal_parse(cases[i].spread, &spread, NULL), FX_OK);
        assert_int_equal(fx_de10_make(rate, spread, &d, NULL), FX_OK);
        fx_de10_encode(d, de10);
        fx_de10_format(d, shown, sizeof shown);
        if (strcmp(de10, cases[i].de10) != 0 || strcmp(shown, cases[i].shown) != 0)
            fail_msg("rate %s spread %s: DE 10 %s (%s), want %s (%s)", cases[i].rate,
                     cases[i].spread, de10, shown, cases[i].de10, cases[i].shown);
    }
}

/* What DE 10 cannot carry: 10,000,000 and more (also after rounding or the spread), and a rate
 * whose seventh decimal rounds to zero (0.000000049 × 10^7 = 0.49 -> 0). */
static void test_de10_refused(void **state)
{
    static const struct {
        const char *rate, *spread;
    } cases[] = {
        { "10000000", "0" },    { "9999999.5", "0" },   { "9900991", "1.0" },
        { "0.000000049", "0" }, { "0.000000001", "0" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fx_decimal rate, spread;
        struct fx_de10 d;
        struct fx_error e = { 0 };
        assert_int_equal(fx_decimal_parse(cases[i].rate, &rate, NULL), FX_OK);
        assert_int_equal(fx_decimal_parse(cases[i].spread, &spread, NULL), FX_OK);
        if (fx_de10_make(rate, spread, &d, &e) != FX_E_RANGE)
            fail_msg("rate %s spread %s: accepted", cases[i].rate, cases[i].spread);
        assert_non_null(strstr(e.message, "DE 10"));
    }
}

/* ---- conversion --------------------------------------------------------------------------- */

/* billing = round_half_up(txn × digits × 10^(billing_exp − txn_exp − point)), each worked out:
 * the product txn × digits, moved by the power of ten, then rounded. The demo's DE 10 values
 * (fx/demo-rates.csv: the rates at 1.0 %) for the twelve ordered pairs:
 *
 * MAD->MRU 64035590 (4.035590), 2 -> 2, /10^6
 *   1 × 4035590 = 4,035,590 -> 4.03559 -> 4                  (0.01 MAD -> 0.04 MRU)
 *   1250 × 4035590 = 5,044,487,500 -> 5044.4875 -> 5044
 *   10000 × 4035590 = 40,355,900,000 -> 40355.9 -> 40356
 *   999999999999 × 4035590 -> 4,035,589,999,995.96 -> 13 digits: refused
 * MAD->XOF and MAD->XAF 56062027 (60.62027), 2 -> 0, /10^7
 *   1 × 6062027 -> 0.6062027 -> 1                            (0.01 MAD -> 1 XOF)
 *   1250 × 6062027 = 7,577,533,750 -> 757.753375 -> 758
 *   10000 × 6062027 = 60,620,270,000 -> 6062.027 -> 6062
 *   999999999999 × 6062027 = 6,062,026,999,993,937,973 -> 606,202,699,999.39 -> 606202699999
 * MRU->MAD 72527760 (0.2527760), 2 -> 2, /10^7
 *   1 × 2527760 -> 0.252776 -> 0
 *   2 × 2527760 = 5,055,520 -> 0.505552 -> 1
 *   250000 × 2527760 = 631,940,000,000 -> 63194 -> 63194
 *   999999999999 × 2527760 = 2,527,759,999,997,472,240 -> 252,775,999,999.747 -> 252776000000
 * MRU->XOF and MRU->XAF 51517163 (15.17163), 2 -> 0, /10^7
 *   1 × 1517163 -> 0.1517163 -> 0;  2 × 1517163 = 3,034,326 -> 0.3034326 -> 0
 *   250000 × 1517163 = 379,290,750,000 -> 37929.075 -> 37929
 *   999999999999 × 1517163 = 1,517,162,999,998,482,837 -> 151,716,299,999.848 -> 151716300000
 * XOF->MAD and XAF->MAD 70168277 (0.0168277), 0 -> 2, /10^5
 *   1 × 168277 -> 1.68277 -> 2                               (1 XOF -> 0.02 MAD)
 *   50 × 168277 = 8,413,850 -> 84.1385 -> 84
 *   100 × 168277 = 16,827,700 -> 168.277 -> 168
 *   250 × 168277 = 42,069,250 -> 420.6925 -> 421
 *   5000 × 168277 = 841,385,000 -> 8413.85 -> 8414
 *   999999999999 × 168277 -> 1,682,769,999,998.3 -> 13 digits: refused
 * XOF->MRU and XAF->MRU 70672373 (0.0672373), 0 -> 2, /10^5
 *   1 × 672373 -> 6.72373 -> 7
 *   50 × 672373 = 33,618,650 -> 336.1865 -> 336
 *   100 × 672373 = 67,237,300 -> 672.373 -> 672
 *   250 × 672373 = 168,093,250 -> 1680.9325 -> 1681
 *   5000 × 672373 = 3,361,865,000 -> 33618.65 -> 33619
 *   999999999999 × 672373 -> 6,723,729,999,993.3 -> refused
 * XOF->XAF and XAF->XOF 61010000 (1.010000), 0 -> 0, /10^6
 *   1 × 1010000 -> 1.01 -> 1
 *   50 × 1010000 = 50,500,000 -> 50.5 (exactly half) -> 51   (banker's would say 50)
 *   250 × 1010000 = 252,500,000 -> 252.5 (exactly half) -> 253  (banker's: 252)
 *   100 -> 101;  5000 × 1010000 = 5,050,000,000 -> 5050
 *   999999999999 × 1010000 -> 1,009,999,999,998.99 -> refused */
struct conv_case {
    int from, to;
    const char *de10;
    uint64_t txn, billing; /* billing UINT64_MAX: refused (FX_E_RANGE) */
};
static const struct conv_case demo_cases[] = {
    { MAD, MRU, "64035590", 1, 4 },
    { MAD, MRU, "64035590", 1250, 5044 },
    { MAD, MRU, "64035590", 10000, 40356 },
    { MAD, MRU, "64035590", 999999999999, UINT64_MAX },
    { MAD, XOF, "56062027", 1, 1 },
    { MAD, XOF, "56062027", 1250, 758 },
    { MAD, XOF, "56062027", 10000, 6062 },
    { MAD, XOF, "56062027", 999999999999, 606202699999 },
    { MAD, XAF, "56062027", 1, 1 },
    { MAD, XAF, "56062027", 1250, 758 },
    { MAD, XAF, "56062027", 10000, 6062 },
    { MAD, XAF, "56062027", 999999999999, 606202699999 },
    { MRU, MAD, "72527760", 1, 0 },
    { MRU, MAD, "72527760", 2, 1 },
    { MRU, MAD, "72527760", 250000, 63194 },
    { MRU, MAD, "72527760", 999999999999, 252776000000 },
    { MRU, XOF, "51517163", 1, 0 },
    { MRU, XOF, "51517163", 2, 0 },
    { MRU, XOF, "51517163", 250000, 37929 },
    { MRU, XOF, "51517163", 999999999999, 151716300000 },
    { MRU, XAF, "51517163", 2, 0 },
    { MRU, XAF, "51517163", 250000, 37929 },
    { MRU, XAF, "51517163", 999999999999, 151716300000 },
    { XOF, MAD, "70168277", 1, 2 },
    { XOF, MAD, "70168277", 50, 84 },
    { XOF, MAD, "70168277", 100, 168 },
    { XOF, MAD, "70168277", 999999999999, UINT64_MAX },
    { XAF, MAD, "70168277", 1, 2 },
    { XAF, MAD, "70168277", 250, 421 },
    { XAF, MAD, "70168277", 5000, 8414 },
    { XOF, MRU, "70672373", 1, 7 },
    { XOF, MRU, "70672373", 50, 336 },
    { XOF, MRU, "70672373", 100, 672 },
    { XOF, MRU, "70672373", 999999999999, UINT64_MAX },
    { XAF, MRU, "70672373", 1, 7 },
    { XAF, MRU, "70672373", 250, 1681 },
    { XAF, MRU, "70672373", 5000, 33619 },
    { XOF, XAF, "61010000", 1, 1 },
    { XOF, XAF, "61010000", 50, 51 },
    { XOF, XAF, "61010000", 100, 101 },
    { XOF, XAF, "61010000", 999999999999, UINT64_MAX },
    { XAF, XOF, "61010000", 250, 253 },
    { XAF, XOF, "61010000", 5000, 5050 },
};

/* Rates chosen so that the exact half is plain to see, one per exponent change:
 * MAD->XOF at 60.5 ("56050000"), 2 -> 0, /10^7 of txn × 6050000:
 *   100 (1.00 MAD) -> 60.5 -> 61;  1 (0.01 MAD) -> 0.605 -> 1;  10 -> 6.05 -> 6
 *   300 -> 181.5 -> 182 (banker's: 182);  500 -> 302.5 -> 303 (banker's: 302)
 * XOF->MAD at 0.015 ("70150000"), 0 -> 2, /10^5 of txn × 150000: txn × 1.5
 *   1 -> 1.5 -> 2 (0.02 MAD);  3 -> 4.5 -> 5;  4 -> 6
 * MRU->MAD at 0.25 ("72500000"), 2 -> 2, /10^7 of txn × 2500000: txn × 0.25
 *   2 -> 0.5 -> 1;  6 -> 1.5 -> 2;  10 -> 2.5 -> 3 (banker's: 2);  1 -> 0.25 -> 0
 * XAF->XOF at 1 ("61000000"): the identity of the amounts, 999999999999 -> 999999999999
 * MAD->TND at 1 ("61000000"), 2 -> 3, /10^5 of txn × 1000000: 1 (0.01 MAD) -> 10 (0.010 TND)
 * TND->MAD at 1 ("61000000"), 3 -> 2, /10^7: 5 (0.005 TND) -> 0.5 -> 1;  4 -> 0.4 -> 0 */
static const struct conv_case half_cases[] = {
    { MAD, XOF, "56050000", 100, 61 },
    { MAD, XOF, "56050000", 1, 1 },
    { MAD, XOF, "56050000", 10, 6 },
    { MAD, XOF, "56050000", 300, 182 },
    { MAD, XOF, "56050000", 500, 303 },
    { XOF, MAD, "70150000", 1, 2 },
    { XOF, MAD, "70150000", 3, 5 },
    { XOF, MAD, "70150000", 4, 6 },
    { MRU, MAD, "72500000", 2, 1 },
    { MRU, MAD, "72500000", 6, 2 },
    { MRU, MAD, "72500000", 10, 3 },
    { MRU, MAD, "72500000", 1, 0 },
    { XAF, XOF, "61000000", 999999999999, 999999999999 },
    { MAD, 788, "61000000", 1, 10 },
    { 788, MAD, "61000000", 5, 1 },
    { 788, MAD, "61000000", 4, 0 },
};

static struct fx_de10 de10_of(const char *s)
{
    return (struct fx_de10){ (uint32_t)(strtoul(s + 1, NULL, 10)), (unsigned)(s[0] - '0') };
}

static void run_cases(const struct conv_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct conv_case *c = &cases[i];
        uint64_t got = 0;
        struct fx_error e = { 0 };
        int rc = fx_convert_minor(c->txn, fx_exponent(c->from), de10_of(c->de10),
                                  fx_exponent(c->to), &got, &e);
        if (c->billing == UINT64_MAX ? rc != FX_E_RANGE : rc != FX_OK || got != c->billing)
            fail_msg("%s->%s at %s: %llu -> rc %d, %llu; want %llu", fx_alpha(c->from),
                     fx_alpha(c->to), c->de10, (unsigned long long)c->txn, rc,
                     (unsigned long long)got, (unsigned long long)c->billing);
    }
}

static void test_convert_demo_pairs(void **state)
{
    run_cases(demo_cases, sizeof demo_cases / sizeof demo_cases[0]);
}

static void test_convert_half_up(void **state)
{
    run_cases(half_cases, sizeof half_cases / sizeof half_cases[0]);
}

/* DE 4 beyond twelve digits is refused before any arithmetic, and so is an exponent nobody
 * has; the largest product (12 digits × 7 digits × 10^4) still fits the 128-bit intermediate
 * and is refused for DE 6, not wrapped. */
static void test_convert_refusals(void **state)
{
    uint64_t out = 7;
    struct fx_error e = { 0 };
    assert_int_equal(fx_convert_minor(1000000000000ULL, 0, de10_of("61000000"), 0, &out, &e),
                     FX_E_RANGE);
    assert_int_equal(fx_convert_minor(UINT64_MAX, 0, de10_of("61000000"), 0, &out, &e), FX_E_RANGE);
    assert_int_equal(fx_convert_minor(999999999999ULL, 0, de10_of("09999999"), 4, &out, &e),
                     FX_E_RANGE);
    assert_non_null(strstr(e.message, "DE 6"));
    assert_int_equal(fx_convert_minor(1, 5, de10_of("61000000"), 0, &out, &e), FX_E_INVALID);
    assert_int_equal(out, 7); /* untouched on refusal */
    /* The smallest and the largest that fit: 1 XOF at 9999999 -> 9999999; 100000 XOF at
     * 9999999 -> 999,999,900,000. */
    assert_int_equal(fx_convert_minor(1, 0, de10_of("09999999"), 0, &out, &e), FX_OK);
    assert_int_equal(out, 9999999);
    assert_int_equal(fx_convert_minor(100000, 0, de10_of("09999999"), 0, &out, &e), FX_OK);
    assert_int_equal(out, 999999900000ULL);
}

/* ---- parsing ------------------------------------------------------------------------------ */

static void test_decimal_parse(void **state)
{
    static const struct {
        const char *s;
        uint64_t m;
        unsigned scale;
    } ok[] = {
        { "655.957", 655957, 3 },
        { "0.0916", 916, 4 },
        { "1", 1, 0 },
        { "1.50", 150, 2 },
        { "0", 0, 0 },
        { "007.5", 75, 1 },
        { "9999999999999999999", 9999999999999999999ULL, 0 },
        { "9999999.999999999999", 9999999999999999999ULL, 12 },
        { "0.000000000001", 1, 12 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct fx_decimal d;
        char back[40];
        assert_int_equal(fx_decimal_parse(ok[i].s, &d, NULL), FX_OK);
        assert_true(d.mantissa == ok[i].m);
        assert_int_equal(d.scale, ok[i].scale);
        fx_decimal_format(d, back, sizeof back);
        assert_string_equal(back, ok[i].s[0] == '0' && ok[i].s[1] == '0' ? "7.5" : ok[i].s);
    }
    static const struct {
        const char *s, *why;
    } bad[] = {
        { "-1", "negative" },
        { "-0.5", "negative" },
        { "", "not a decimal" },
        { ".", "not a decimal" },
        { ".5", "not a decimal" },
        { "1.", "not a decimal" },
        { "1e3", "not a decimal" },
        { "abc", "not a decimal" },
        { "1,5", "not a decimal" },
        { " 1", "not a decimal" },
        { "1 ", "not a decimal" },
        { "1.2.3", "not a decimal" },
        { "+1", "not a decimal" },
        { "0x10", "not a decimal" },
        { "12345678901234567890", "significant digits" },
        { "0.00001234567890123456789", "decimal places" },
        { "1.0000000000001", "decimal places" },
        { "0.0000000000001", "decimal places" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fx_decimal d = { 42, 0 };
        struct fx_error e = { 0 };
        if (fx_decimal_parse(bad[i].s, &d, &e) != FX_E_INVALID)
            fail_msg("'%s' accepted", bad[i].s);
        assert_non_null(strstr(e.message, bad[i].why));
        assert_true(d.mantissa == 42);
    }
}

static void test_time_parse(void **state)
{
    int64_t t;
    char back[21];
    assert_int_equal(fx_time_parse("1970-01-01", &t, NULL), FX_OK);
    assert_int_equal(t, 0);
    /* 2026-12-06: 20,793 days after 1970-01-01 (56 years, 14 leap days: 56 × 365 + 14 = 20454,
     * plus 339 days from January 1 to December 6 of 2026) = 1,796,515,200 s. */
    assert_int_equal(fx_time_parse("2026-12-06", &t, NULL), FX_OK);
    assert_int_equal(t, 1796515200);
    assert_int_equal(fx_time_parse("2026-12-06T10:20:30Z", &t, NULL), FX_OK);
    assert_int_equal(t, 1796515200 + 10 * 3600 + 20 * 60 + 30);
    fx_time_format(t, back);
    assert_string_equal(back, "2026-12-06T10:20:30Z");
    fx_time_format(-1, back);
    assert_string_equal(back, "1969-12-31T23:59:59Z");
    fx_time_format(FX_OPEN, back);
    assert_string_equal(back, "open");
    assert_int_equal(fx_time_parse("2028-02-29", &t, NULL), FX_OK);
    static const char *const bad[] = {
        "2026-02-29",
        "2026-13-01",
        "2026-00-10",
        "2026-04-31",
        "2026-12-06T24:00:00Z",
        "2026-12-06T10:60:00Z",
        "2026-12-06T10:00:60Z",
        "2026-12-06T10:00:00",
        "2026-12-06 10:00:00Z",
        "2026-12-06T10:00Z",
        "1969-12-31",
        "26-12-06",
        "2026-12-6",
        "",
        "2026-12-06T10:00:00+01:00",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fx_error e = { 0 };
        if (fx_time_parse(bad[i], &t, &e) != FX_E_INVALID)
            fail_msg("'%s' accepted", bad[i]);
        assert_non_null(strstr(e.message, "UTC"));
    }
}

static void test_rate_make(void **state)
{
    struct fx_rate r;
    struct fx_error e = { 0 };
    assert_int_equal(fx_rate_make("mad", "952", "60.020066", "1.0", 0, FX_OPEN, &r, &e), FX_OK);
    assert_int_equal(r.from, MAD);
    assert_int_equal(r.to, XOF);
    char de10[9];
    fx_de10_encode(r.de10, de10);
    assert_string_equal(de10, "56062027");
    static const struct {
        const char *from, *to, *rate, *spread;
        int64_t vf, vt;
        int rc;
        const char *why;
    } bad[] = {
        { "MAD", "MAD", "1", "0", 0, FX_OPEN, FX_E_INVALID, "one currency" },
        { "504", "MAD", "1", "0", 0, FX_OPEN, FX_E_INVALID, "one currency" },
        { "ZZZ", "MAD", "1", "0", 0, FX_OPEN, FX_E_CURRENCY, "from: unknown currency" },
        { "MAD", "999", "1", "0", 0, FX_OPEN, FX_E_CURRENCY, "to: unknown currency" },
        { "MAD", "XOF", "0", "0", 0, FX_OPEN, FX_E_INVALID, "greater than zero" },
        { "MAD", "XOF", "0.000", "0", 0, FX_OPEN, FX_E_INVALID, "greater than zero" },
        { "MAD", "XOF", "-60", "0", 0, FX_OPEN, FX_E_INVALID, "rate: '-60' is negative" },
        { "MAD", "XOF", "sixty", "0", 0, FX_OPEN, FX_E_INVALID, "rate: 'sixty'" },
        { "MAD", "XOF", "60", "-1", 0, FX_OPEN, FX_E_INVALID, "spread_pct: '-1' is negative" },
        { "MAD", "XOF", "60", "10.0001", 0, FX_OPEN, FX_E_RANGE, "above 10 %" },
        { "MAD", "XOF", "60", "150", 0, FX_OPEN, FX_E_RANGE, "above 10 %" },
        { "MAD", "XOF", "60", "1", 100, 100, FX_E_INVALID, "valid_to must be after" },
        { "MAD", "XOF", "60", "1", 100, 50, FX_E_INVALID, "valid_to must be after" },
        { "MAD", "XOF", "10000000", "0", 0, FX_OPEN, FX_E_RANGE, "rate: effective rate" },
        { "MAD", "XOF", "9990000", "1", 0, FX_OPEN, FX_E_RANGE, "DE 10" },
        { "MAD", "XOF", "0.00000001", "0", 0, FX_OPEN, FX_E_RANGE, "zero" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        int rc = fx_rate_make(bad[i].from, bad[i].to, bad[i].rate, bad[i].spread, bad[i].vf,
                              bad[i].vt, &r, &e);
        if (rc != bad[i].rc || !strstr(e.message, bad[i].why))
            fail_msg("case %zu: rc %d '%s', want %d '%s'", i, rc, e.message, bad[i].rc, bad[i].why);
    }
    /* The bound itself is accepted. */
    assert_int_equal(fx_rate_make("MAD", "XOF", "60", "10", 0, FX_OPEN, &r, &e), FX_OK);
}

static void test_csv_line(void **state)
{
    struct fx_rate r;
    struct fx_error e = { 0 };
    assert_int_equal(fx_csv_line("MAD,XOF,60.020066,1.0,2026-01-01T00:00:00Z,\r\n", &r, &e), FX_OK);
    assert_int_equal(r.valid_to, FX_OPEN);
    assert_int_equal(r.valid_from, 1767225600); /* 2026-01-01: 20454 days × 86400 */
    assert_int_equal(fx_csv_line(" 504 , 952 , 60 , 0 , 2026-01-01 , 2026-02-01 ", &r, &e), FX_OK);
    assert_int_equal(r.valid_to - r.valid_from, 31 * 86400);
    static const struct {
        const char *line, *why;
    } bad[] = {
        { "MAD,XOF,60,1.0,2026-01-01", "5 fields" },
        { "MAD,XOF,60,1.0,2026-01-01,,", "more than 6 fields" },
        { "MAD;XOF;60;1.0;2026-01-01;", "1 fields" },
        { "", "1 fields" },
        { "MAD,XOF,60,1.0,,", "valid_from:" },
        { "MAD,XOF,60,1.0,2026-01-01,tomorrow", "valid_to: 'tomorrow'" },
        { "MAD,XOF,60,1.0,2026-01-01T00:00:00,", "valid_from:" },
        { "MAD,XOF,,1.0,2026-01-01,", "rate: '' is not a decimal" },
        { "MAD,XOF,60,,2026-01-01,", "spread_pct: ''" },
        { "MAD,EURO,60,1.0,2026-01-01,", "to: unknown currency" },
        { "MAD,XOF,60,1.0,2026-02-01,2026-01-01", "valid_to must be after" },
        { "MAD,XOF,60,1.0,2026-01-01,2026-01-01", "valid_to must be after" },
        { "MAD,XOF,60.00000000000000000000000000000000000000000000000000000000000001,1,"
          "2026-01-01,",
          "rate: too long" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        if (fx_csv_line(bad[i].line, &r, &e) == FX_OK || !strstr(e.message, bad[i].why))
            fail_msg("'%s': '%s', want '%s'", bad[i].line, e.message, bad[i].why);
    }
}

/* ---- the rate set ------------------------------------------------------------------------- */

#define T0 1767225600 /* 2026-01-01T00:00:00Z */
#define T1 (T0 + 31 * 86400)
#define T2 (T1 + 28 * 86400)
#define T3 (T2 + 31 * 86400)

static struct fx_rate rate_of(const char *from, const char *to, const char *rate, int64_t vf,
                              int64_t vt)
{
    struct fx_rate r;
    struct fx_error e = { 0 };
    if (fx_rate_make(from, to, rate, "0", vf, vt, &r, &e) != FX_OK)
        fail_msg("%s", e.message);
    return r;
}

/* MAD->XOF: [T0, T1) at 60, then [T1, open) at 61 — two consecutive periods.
 * XOF->MAD: [T0, T1) at 0.016, a gap, [T2, T3) at 0.017, then nothing.
 * MRU->MAD: [T2, open) only. Given out of order: the set sorts them. */
static struct fx_set *sample_set(void)
{
    const struct fx_rate rates[] = {
        rate_of("XOF", "MAD", "0.017", T2, T3),     rate_of("MAD", "XOF", "61", T1, FX_OPEN),
        rate_of("MRU", "MAD", "0.25", T2, FX_OPEN), rate_of("MAD", "XOF", "60", T0, T1),
        rate_of("XOF", "MAD", "0.016", T0, T1),
    };
    struct fx_set *s = NULL;
    assert_int_equal(fx_set_new(rates, 5, &s, NULL), FX_OK);
    assert_int_equal(fx_set_count(s), 5);
    return s;
}

/* The rate found (its DE 10 digits), or the reason there is none. */
static void expect(const struct fx_set *s, int from, int to, int64_t t, uint32_t digits,
                   enum fx_why why)
{
    const struct fx_rate *r = NULL;
    struct fx_error e = { 0 };
    int rc = fx_lookup(s, from, to, t, &r, &e);
    if (why == FX_WHY_NONE) {
        if (rc != FX_OK || r->de10.digits != digits)
            fail_msg("%d->%d at %lld: rc %d (%s)", from, to, (long long)t, rc, e.message);
    } else if (rc != FX_NO_RATE || e.why != why) {
        fail_msg("%d->%d at %lld: rc %d why %s, want %s", from, to, (long long)t, rc,
                 fx_why_name(e.why), fx_why_name(why));
    }
}

static void test_lookup_at_time(void **state)
{
    struct fx_set *s = sample_set();
    /* MAD->XOF: 60 is "56000000" (6000000 at k=5), 61 is "56100000". */
    expect(s, MAD, XOF, T0 - 1, 0, FX_WHY_NOT_YET);
    expect(s, MAD, XOF, T0, 6000000, FX_WHY_NONE);
    expect(s, MAD, XOF, T1 - 1, 6000000, FX_WHY_NONE);
    expect(s, MAD, XOF, T1, 6100000, FX_WHY_NONE); /* valid_to is exclusive */
    expect(s, MAD, XOF, INT64_MAX - 1, 6100000, FX_WHY_NONE);
    /* XOF->MAD: 0.016 is "70160000", 0.017 "70170000". */
    expect(s, XOF, MAD, T0 + 5, 160000, FX_WHY_NONE);
    expect(s, XOF, MAD, T1, 0, FX_WHY_GAP);
    expect(s, XOF, MAD, T2 - 1, 0, FX_WHY_GAP);
    expect(s, XOF, MAD, T2, 170000, FX_WHY_NONE);
    expect(s, XOF, MAD, T3 - 1, 170000, FX_WHY_NONE);
    expect(s, XOF, MAD, T3, 0, FX_WHY_EXPIRED);
    expect(s, MRU, MAD, T0, 0, FX_WHY_NOT_YET);
    expect(s, MRU, MAD, T2, 2500000, FX_WHY_NONE);
    /* Pairs with no rate at all, including the reverse of one that has rates. */
    expect(s, MAD, MRU, T2, 0, FX_WHY_NO_PAIR);
    expect(s, XAF, XOF, T2, 0, FX_WHY_NO_PAIR);
    expect(s, 0, 0, T2, 0, FX_WHY_NO_PAIR);
    expect(s, 999, 999, T2, 0, FX_WHY_NO_PAIR);
    const struct fx_rate *r;
    struct fx_error e = { 0 };
    assert_int_equal(fx_lookup(s, XOF, MAD, T3, &r, &e), FX_NO_RATE);
    assert_non_null(strstr(e.message, "XOF->MAD"));
    assert_non_null(strstr(e.message, "expired at 2026-04-01T00:00:00Z"));
    assert_string_equal(fx_why_name(e.why), "expired");
    fx_set_free(s);

    struct fx_set *empty = NULL;
    assert_int_equal(fx_set_new(NULL, 0, &empty, NULL), FX_OK);
    expect(empty, MAD, XOF, T0, 0, FX_WHY_NO_PAIR);
    fx_set_free(empty);
}

static void test_set_refuses_overlap(void **state)
{
    struct fx_set *s = NULL;
    struct fx_error e = { 0 };
    const struct fx_rate open_and_later[] = { rate_of("MAD", "XOF", "60", T0, FX_OPEN),
                                              rate_of("MAD", "XOF", "61", T2, FX_OPEN) };
    assert_int_equal(fx_set_new(open_and_later, 2, &s, &e), FX_E_INVALID);
    assert_non_null(strstr(e.message, "MAD->XOF"));
    assert_null(s);
    const struct fx_rate one_second[] = { rate_of("MAD", "XOF", "60", T0, T1 + 1),
                                          rate_of("MAD", "XOF", "61", T1, T2) };
    assert_int_equal(fx_set_new(one_second, 2, &s, &e), FX_E_INVALID);
    /* Touching periods and the same period of another pair are fine. */
    const struct fx_rate fine[] = { rate_of("MAD", "XOF", "60", T0, T1),
                                    rate_of("MAD", "XOF", "61", T1, T2),
                                    rate_of("XOF", "MAD", "0.016", T0, T2) };
    assert_int_equal(fx_set_new(fine, 3, &s, &e), FX_OK);
    fx_set_free(s);
}

/* fx_apply, the one call per request: identity for the same currency, the DE 6/10/51 of a
 * conversion, and a missing rate as an error — never a conversion at 1. */
static void test_apply(void **state)
{
    struct fx_set *s = sample_set();
    struct fx_result res;
    struct fx_error e = { 0 };
    assert_int_equal(fx_apply(s, 1250, MAD, MAD, T0, &res, &e), FX_OK);
    assert_false(res.converted);
    /* 12.50 MAD at 61 ("56100000"): 1250 × 6100000 / 10^7 = 762.5 -> 763 XOF (half-up). */
    assert_int_equal(fx_apply(s, 1250, MAD, XOF, T1, &res, &e), FX_OK);
    assert_true(res.converted);
    assert_int_equal(res.billing_minor, 763);
    assert_string_equal(res.de10, "56100000");
    assert_string_equal(res.billing_ccy, "952");
    assert_int_equal(res.rate->valid_from, T1);
    /* Before T1 the first period: 1250 × 6000000 / 10^7 = 750. */
    assert_int_equal(fx_apply(s, 1250, MAD, XOF, T1 - 1, &res, &e), FX_OK);
    assert_int_equal(res.billing_minor, 750);
    /* No rate: FX_NO_RATE, nothing converted. */
    assert_int_equal(fx_apply(s, 1250, MAD, MRU, T1, &res, &e), FX_NO_RATE);
    assert_false(res.converted);
    assert_int_equal(res.billing_minor, 0);
    assert_int_equal(e.why, FX_WHY_NO_PAIR);
    assert_int_equal(fx_apply(s, 1250, XOF, MAD, T3, &res, &e), FX_NO_RATE);
    assert_int_equal(e.why, FX_WHY_EXPIRED);
    /* A currency without a known exponent, and an amount DE 6 cannot carry. */
    assert_int_equal(fx_apply(s, 1250, 999, MAD, T1, &res, &e), FX_E_CURRENCY);
    assert_int_equal(fx_apply(s, 999999999999ULL, MAD, XOF, T1, &res, &e), FX_OK);
    assert_int_equal(res.billing_minor, 610000000000ULL - 1); /* 609,999,999,999.39 -> ...999 */
    assert_int_equal(fx_apply(s, 1000000000000ULL, MAD, XOF, T1, &res, &e), FX_E_RANGE);
    fx_set_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_de10_table),
        cmocka_unit_test(test_de10_refused),
        cmocka_unit_test(test_convert_demo_pairs),
        cmocka_unit_test(test_convert_half_up),
        cmocka_unit_test(test_convert_refusals),
        cmocka_unit_test(test_decimal_parse),
        cmocka_unit_test(test_time_parse),
        cmocka_unit_test(test_rate_make),
        cmocka_unit_test(test_csv_line),
        cmocka_unit_test(test_lookup_at_time),
        cmocka_unit_test(test_set_refuses_overlap),
        cmocka_unit_test(test_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
