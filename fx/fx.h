/* libatlas_fx: currency conversion without a database and without floating point. A rate is
 * parsed from decimal text into an integer mantissa and scale, marked up by its spread, rounded
 * to what DE 10 carries, and an amount in minor units is converted with exactly that DE 10 rate
 * (128-bit intermediate, half-up rounding, overflow refused). An fx_set is the in-memory rate
 * table a caller builds once (switchd at start and on SIGHUP) and looks pairs up in at a given
 * time. See docs/fx.md. */
#ifndef ATLAS_FX_H
#define ATLAS_FX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes. */
enum {
    FX_OK = 0,
    FX_NO_RATE = -1,    /* no rate of the pair in force at that time (see enum fx_why) */
    FX_E_RANGE = -2,    /* a value out of range: an amount DE 6 cannot carry, a rate DE 10
                           cannot carry, an overflow the arithmetic refused */
    FX_E_CURRENCY = -3, /* a currency code not in common/currency.c's table */
    FX_E_INVALID = -4,  /* malformed input (a decimal, a time, a CSV line, overlapping periods) */
};

/* Why FX_NO_RATE: the caller logs it (a missing rate and an expired one are different
 * operator problems: one is a pair never configured, the other a rate file not renewed). */
enum fx_why {
    FX_WHY_NONE = 0,
    FX_WHY_NO_PAIR, /* the pair has no rate at all */
    FX_WHY_EXPIRED, /* its latest period before the time ended (valid_to <= time) */
    FX_WHY_NOT_YET, /* its periods all begin after the time */
    FX_WHY_GAP,     /* the time falls between two periods of the pair */
    FX_WHY_max
};

/* What went wrong, for a log line or an operator: message names the culprit (a field, a
 * pair, a time), never an amount's owner. */
struct fx_error {
    int code; /* FX_* */
    enum fx_why why;
    char message[200];
};

/* A short name of an fx_why, for log fields ("no_pair", "expired", ...). */
const char *fx_why_name(enum fx_why why);

/* ---- decimals -------------------------------------------------------------------------- */

/* A non-negative decimal: mantissa / 10^scale, exact. "10.892345" is { 10892345, 6 }. */
struct fx_decimal {
    uint64_t mantissa;
    unsigned scale;
};

#define FX_DECIMAL_DIGITS                                                                          \
    19                      /* significant digits a decimal may have (fits a uint64_t), so that    \
                               every rate switch.fx_rates accepts (< 10^7, 12 decimals) parses */
#define FX_DECIMAL_SCALE 12 /* digits after the point at most */

/* Parses digits with an optional fraction ("655.957", "1", "0.0916"); no sign, no exponent,
 * no spaces, nothing after. Trailing zeros of the fraction are kept in the scale (the value is
 * the same). FX_OK, or FX_E_INVALID with err naming what (err may be NULL). */
__attribute__((warn_unused_result)) int fx_decimal_parse(const char *s, struct fx_decimal *out,
                                                         struct fx_error *err);

/* Writes d in plain decimal ("655.957") into out (cap >= 40 is always enough). */
void fx_decimal_format(struct fx_decimal d, char *out, size_t cap);

/* ---- DE 10 ------------------------------------------------------------------------------ */

/* A conversion rate as DE 10 carries it: n 8, the first digit the number of decimal places
 * (0..7), then seven digits. "51089235" is 10.89235; "70916000" is 0.0916000. */
struct fx_de10 {
    uint32_t digits; /* 0..9999999 */
    unsigned point;  /* 0..7 */
};

/* The effective rate of rate marked up by spread percent (rate × (1 + spread/100)), rounded
 * half-up to the most decimal places DE 10 can carry. FX_OK, or FX_E_RANGE when the rate is
 * 10,000,000 or more, or rounds to zero at seven decimals (err says which; may be NULL). */
__attribute__((warn_unused_result)) int fx_de10_make(struct fx_decimal rate,
                                                     struct fx_decimal spread, struct fx_de10 *out,
                                                     struct fx_error *err);

/* The 8 digits of DE 10 and a NUL. */
void fx_de10_encode(struct fx_de10 r, char out[9]);

/* The DE 10 value as a plain decimal ("10.89235"), for people. */
void fx_de10_format(struct fx_de10 r, char *out, size_t cap);

/* ---- conversion ------------------------------------------------------------------------- */

#define FX_AMOUNT_MAX 999999999999ULL /* DE 4 and DE 6: n 12 */

/* billing_minor = round_half_up(txn_minor × rate × 10^(billing_exp − txn_exp)), where rate is
 * exactly the DE 10 value: anyone holding DE 4 and DE 10 recomputes DE 6. Exponents are the
 * currencies' minor-unit digits (0..4). FX_OK, FX_E_RANGE when txn_minor or the result exceeds
 * FX_AMOUNT_MAX, FX_E_INVALID for an exponent out of range. */
__attribute__((warn_unused_result)) int fx_convert_minor(uint64_t txn_minor, int txn_exp,
                                                         struct fx_de10 rate, int billing_exp,
                                                         uint64_t *billing_minor,
                                                         struct fx_error *err);

/* ---- times ------------------------------------------------------------------------------ */

#define FX_OPEN INT64_MAX /* valid_to of a period with no end */

/* ISO 8601 UTC: "2026-12-06T00:00:00Z" or a date alone "2026-12-06" (midnight UTC); a time
 * without its Z is refused (whose clock would it be?). Seconds since the Unix epoch. FX_OK or
 * FX_E_INVALID. */
__attribute__((warn_unused_result)) int fx_time_parse(const char *s, int64_t *out,
                                                      struct fx_error *err);

/* "2026-12-06T00:00:00Z" (20 characters and a NUL), "open" for FX_OPEN. */
void fx_time_format(int64_t t, char out[21]);

/* ---- rates and the rate set ------------------------------------------------------------- */

/* One period of one ordered pair: billing (to) units per one transaction (from) unit. */
struct fx_rate {
    int from, to;             /* ISO 4217 numeric: 504 MAD, 929 MRU, 952 XOF, 950 XAF */
    struct fx_decimal rate;   /* as loaded */
    struct fx_decimal spread; /* percent, as loaded */
    int64_t valid_from;       /* inclusive, seconds since the epoch (UTC) */
    int64_t valid_to;         /* exclusive, or FX_OPEN */
    struct fx_de10 de10;      /* the effective rate: what every conversion uses */
};

#define FX_SPREAD_MAX_PCT 10 /* the same bound as switch.fx_rates' CHECK (docs/fx.md) */

/* Fills r from text, checking everything the rate table's CHECKs check: currencies known
 * (alphabetic or numeric) and different, rate > 0, 0 <= spread <= FX_SPREAD_MAX_PCT, valid_from
 * < valid_to, the effective rate representable in DE 10 (computed into r->de10). FX_OK,
 * FX_E_CURRENCY, FX_E_INVALID or FX_E_RANGE with err naming the field. */
__attribute__((warn_unused_result)) int fx_rate_make(const char *from, const char *to,
                                                     const char *rate, const char *spread,
                                                     int64_t valid_from, int64_t valid_to,
                                                     struct fx_rate *r, struct fx_error *err);

/* One CSV line of a rate file, "from,to,rate,spread_pct,valid_from,valid_to" (valid_to empty
 * = open), into r. The line is read, not changed; a trailing CR is allowed. FX_OK or an error
 * with err naming the field. */
__attribute__((warn_unused_result)) int fx_csv_line(const char *line, struct fx_rate *r,
                                                    struct fx_error *err);

/* The header line the rate file starts with. */
#define FX_CSV_HEADER "from,to,rate,spread_pct,valid_from,valid_to"

/* An immutable set of rates, sorted by pair and time: built once, looked up from any number of
 * places, freed whole (switchd swaps a new set in on SIGHUP). */
struct fx_set;

/* Builds a set from a copy of n rates. FX_OK and *out, FX_E_INVALID when two periods of one pair
 * overlap (err names the pair and both periods), FX_E_RANGE when allocation fails. */
__attribute__((warn_unused_result)) int fx_set_new(const struct fx_rate *rates, size_t n,
                                                   struct fx_set **out, struct fx_error *err);
void fx_set_free(struct fx_set *s);
size_t fx_set_count(const struct fx_set *s);
/* The i-th rate in set order (pair, then valid_from). */
const struct fx_rate *fx_set_at(const struct fx_set *s, size_t i);

/* The rate of from → to in force at time t (valid_from <= t < valid_to). FX_OK and *out, or
 * FX_NO_RATE with err->why and a message naming the pair and the period that ended or has not
 * begun. No allocation; O(log n). */
__attribute__((warn_unused_result)) int fx_lookup(const struct fx_set *s, int from, int to,
                                                  int64_t t, const struct fx_rate **out,
                                                  struct fx_error *err);

/* What a request carries after conversion (DE 6, DE 10, DE 51). */
struct fx_result {
    bool converted;         /* false: same currency, DE 6/10/51 are not sent */
    uint64_t billing_minor; /* DE 6 */
    char de10[9];           /* DE 10 */
    char billing_ccy[4];    /* DE 51, numeric */
    const struct fx_rate *rate;
};

/* The conversion of a request: txn_minor (DE 4) in txn_ccy (DE 49) into the card's billing_ccy,
 * both numeric ISO 4217, at time t. Same currency: FX_OK, converted false (never a rate of 1
 * for a pair that differs). Otherwise the rate in force, or FX_NO_RATE; FX_E_CURRENCY for a
 * currency without a known exponent; FX_E_RANGE when DE 6 would exceed 12 digits. This is the
 * one call switchd makes per request. */
__attribute__((warn_unused_result)) int fx_apply(const struct fx_set *s, uint64_t txn_minor,
                                                 int txn_ccy, int billing_ccy, int64_t t,
                                                 struct fx_result *out, struct fx_error *err);

/* The numeric value of a currency code, alphabetic ("MAD", any case) or numeric ("504"), or -1
 * when common/currency.c does not know it. */
int fx_currency(const char *code);

/* The ISO 4217 exponent of a numeric code, or -1 (common/currency.c's table). */
int fx_exponent(int numeric);

/* The alphabetic code of a numeric one ("MAD"), or "???" */
const char *fx_alpha(int numeric);

#endif
