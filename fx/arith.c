/* The arithmetic of conversion, all in integers: decimals parsed from text into mantissa and
 * scale, the effective rate (rate × (1 + spread/100)) rounded half-up to DE 10's seven digits,
 * and an amount converted with that DE 10 value. Intermediates are unsigned __int128 and every
 * bound is checked before it could be crossed: a result that does not fit is refused, never
 * wrapped. */
#include "fx_internal.h"

#include "currency.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef unsigned __int128 u128;

#define DE10_MAX    9999999u /* seven digits */
#define DE10_POINTS 7u       /* decimal places DE 10 can say */
#define EXP_MAX     4        /* minor-unit digits we convert between (ISO 4217 has 0..4) */

int fx_fail(struct fx_error *err, int code, enum fx_why why, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        err->why = why;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *fx_why_name(enum fx_why why)
{
    static const char *const names[FX_WHY_max] = { "none", "no_pair", "expired", "not_yet", "gap" };
    return (unsigned)why < FX_WHY_max ? names[why] : "?";
}

/* 10^n as a 128-bit integer (n <= 38). */
static u128 pow10_128(unsigned n)
{
    u128 p = 1;
    while (n--)
        p *= 10;
    return p;
}

int fx_decimal_parse(const char *s, struct fx_decimal *out, struct fx_error *err)
{
    uint64_t m = 0;
    unsigned digits = 0, scale = 0;
    bool point = false, any = false;
    const char *p = s;
    if (*p == '-')
        return fx_fail(err, FX_E_INVALID, FX_WHY_NONE, "'%.40s' is negative", s);
    for (; *p; p++) {
        if (*p == '.' && !point && any) {
            point = true;
            continue;
        }
        if (*p < '0' || *p > '9')
            return fx_fail(err, FX_E_INVALID, FX_WHY_NONE, "'%.40s' is not a decimal number", s);
        any = true;
        if (point && ++scale > FX_DECIMAL_SCALE)
            return fx_fail(err, FX_E_INVALID, FX_WHY_NONE,
                           "'%.40s' has more than %d decimal places", s, FX_DECIMAL_SCALE);
        if (m == 0 && *p == '0')
            continue; /* leading zeros are not significant digits */
        if (++digits > FX_DECIMAL_DIGITS)
            return fx_fail(err, FX_E_INVALID, FX_WHY_NONE,
                           "'%.40s' has more than %d significant digits", s, FX_DECIMAL_DIGITS);
        m = m * 10 + (uint64_t)(*p - '0');
    }
    if (!any || p[-1] == '.')
        return fx_fail(err, FX_E_INVALID, FX_WHY_NONE, "'%.40s' is not a decimal number", s);
    *out = (struct fx_decimal){ m, scale };
    return FX_OK;
}

void fx_decimal_format(struct fx_decimal d, char *out, size_t cap)
{
    at_format_minor(d.mantissa, d.scale, out, cap);
}

int fx_de10_make(struct fx_decimal rate, struct fx_decimal spread, struct fx_de10 *out,
                 struct fx_error *err)
{
    /* effective = m_r / 10^s_r × (10^(s_p+2) + m_p) / 10^(s_p+2) = N / D. With at most 19
     * digits and 12 places each, N < 10^19 × 1.1 × 10^14 and D <= 10^26: both fit. */
    if (rate.scale > FX_DECIMAL_SCALE || spread.scale > FX_DECIMAL_SCALE ||
        (u128)spread.mantissa > FX_SPREAD_MAX_PCT * pow10_128(spread.scale))
        return fx_fail(err, FX_E_RANGE, FX_WHY_NONE, "spread or scale out of range");
    u128 scale_p = pow10_128(spread.scale + 2);
    u128 n = (u128)rate.mantissa * (scale_p + spread.mantissa);
    u128 d = pow10_128(rate.scale) * scale_p;
    u128 q = n / d, r = n % d;
    if (q > DE10_MAX)
        return fx_fail(err, FX_E_RANGE, FX_WHY_NONE,
                       "effective rate of 10,000,000 or more: DE 10 cannot carry it");
    /* The most decimal places whose rounded value still has seven digits. Split as
     * q × 10^k + round(r × 10^k / D) so that nothing is multiplied past 10^33. */
    for (unsigned k = DE10_POINTS;; k--) {
        u128 pk = pow10_128(k);
        u128 v = q * pk + (r * pk + d / 2) / d;
        if (v <= DE10_MAX) {
            if (v == 0)
                return fx_fail(err, FX_E_RANGE, FX_WHY_NONE,
                               "effective rate below 0.00000005: DE 10 would carry zero");
            *out = (struct fx_de10){ (uint32_t)v, k };
            return FX_OK;
        }
        if (k == 0)
            break;
    }
    /* q <= DE10_MAX but rounding carried it past (9999999.5 and more). */
    return fx_fail(err, FX_E_RANGE, FX_WHY_NONE,
                   "effective rate rounds to 10,000,000: DE 10 cannot carry it");
}

void fx_de10_encode(struct fx_de10 r, char out[9])
{
    snprintf(out, 9, "%u%07u", r.point % 10, (unsigned)(r.digits % 10000000u));
}

void fx_de10_format(struct fx_de10 r, char *out, size_t cap)
{
    at_format_minor(r.digits, r.point, out, cap);
}

int fx_convert_minor(uint64_t txn_minor, int txn_exp, struct fx_de10 rate, int billing_exp,
                     uint64_t *billing_minor, struct fx_error *err)
{
    if (txn_exp < 0 || txn_exp > EXP_MAX || billing_exp < 0 || billing_exp > EXP_MAX ||
        rate.point > DE10_POINTS || rate.digits > DE10_MAX)
        return fx_fail(err, FX_E_INVALID, FX_WHY_NONE, "exponent or DE 10 rate out of range");
    if (txn_minor > FX_AMOUNT_MAX)
        return fx_fail(err, FX_E_RANGE, FX_WHY_NONE, "amount %llu has more than 12 digits",
                       (unsigned long long)txn_minor);
    /* txn × digits × 10^(billing_exp − txn_exp − point): < 10^12 × 10^7 × 10^4, far below
     * 2^128. A negative power of ten is a division, rounded half-up (amounts are never
     * negative, so half-up is also half away from zero). */
    int e = billing_exp - txn_exp - (int)rate.point;
    u128 v = (u128)txn_minor * rate.digits;
    if (e >= 0) {
        v *= pow10_128((unsigned)e);
    } else {
        u128 den = pow10_128((unsigned)-e);
        v = (v + den / 2) / den;
    }
    if (v > FX_AMOUNT_MAX)
        return fx_fail(err, FX_E_RANGE, FX_WHY_NONE,
                       "converted amount has more than 12 digits: DE 6 cannot carry it");
    *billing_minor = (uint64_t)v;
    return FX_OK;
}
