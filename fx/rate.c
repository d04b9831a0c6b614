/* One rate period from text: times in ISO 8601 UTC, the currencies of common/currency.c, the
 * checks switch.fx_rates makes (so that a bad line is refused with its line number before any
 * SQL runs), and the rate file's CSV lines. */
#include "fx_internal.h"

#include <stdio.h>
#include <string.h>

#include "bizday.h"
#include "clock.h"
#include "currency.h"
#include "fmt.h"
#include "parse.h"

#define CSV_FIELDS 6
#define FIELD_MAX  64

int fx_exponent(int numeric)
{
    char code[8];
    snprintf(code, sizeof code, "%03d", numeric);
    const struct at_currency *c = numeric >= 0 && numeric <= 999 ? at_currency_find(code) : NULL;
    return c ? c->exponent : -1;
}

const char *fx_alpha(int numeric)
{
    char code[8];
    snprintf(code, sizeof code, "%03d", numeric);
    const struct at_currency *c = numeric >= 0 && numeric <= 999 ? at_currency_find(code) : NULL;
    return c ? c->alpha : "???";
}

/* The n digits at s into *v; false unless all n are digits. */
static bool digits_at(const char *s, size_t n, unsigned *v)
{
    uint64_t u;
    if (!at_parse_u64n(s, n, 9999, &u))
        return false;
    *v = (unsigned)u;
    return true;
}

int fx_time_parse(const char *s, int64_t *out, struct fx_error *err)
{
    size_t n = strlen(s);
    unsigned h = 0, mi = 0, sec = 0;
    char date[11];
    int64_t days = 0;
    snprintf(date, sizeof date, "%s", s);
    bool ok = (n == 10 || n == 20) && at_date_parse(date, &days); /* the one date parser */
    if (ok && n == 20)
        ok = s[10] == 'T' && digits_at(s + 11, 2, &h) && s[13] == ':' &&
             digits_at(s + 14, 2, &mi) && s[16] == ':' && digits_at(s + 17, 2, &sec) &&
             s[19] == 'Z';
    if (!ok || h > 23 || mi > 59 || sec > 59)
        return fx_fail(err, FX_E_INVALID, FX_WHY_NONE,
                       "'%.40s' is not a UTC time (YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DD)", s);
    *out = days * 86400 + h * 3600 + mi * 60 + sec;
    return FX_OK;
}

void fx_time_format(int64_t t, char out[21])
{
    if (t == FX_OPEN) {
        snprintf(out, 21, "open");
        return;
    }
    /* Floor division: a time before the epoch (only a caller's, never parsed) still prints. */
    int64_t y, days = t / 86400 - (t % 86400 < 0), secs = t - days * 86400;
    unsigned m, d;
    at_civil_from_days(days, &y, &m, &d);
    snprintf(out, 21, "%04u-%02u-%02uT%02u:%02u:%02uZ", (unsigned)(y % 10000), m, d,
             (unsigned)(secs / 3600), (unsigned)(secs / 60 % 60), (unsigned)(secs % 60));
}

int fx_currency(const char *code)
{
    const struct at_currency *c = at_currency_find(code);
    return c ? (c->numeric[0] - '0') * 100 + (c->numeric[1] - '0') * 10 + (c->numeric[2] - '0')
             : -1;
}

/* A currency field of a rate. */
static int currency(const char *code, const char *field, int *out, struct fx_error *err)
{
    *out = fx_currency(code);
    if (*out < 0)
        return fx_fail(err, FX_E_CURRENCY, FX_WHY_NONE, "%s: unknown currency '%.16s'", field,
                       code);
    return FX_OK;
}

/* Prefixes err's message with the field it is about. */
static int in_field(struct fx_error *err, int rc, const char *field)
{
    if (rc != FX_OK && err) {
        char msg[sizeof err->message + 32];
        snprintf(msg, sizeof msg, "%s: %s", field, err->message);
        at_strlcpy(err->message, msg, sizeof err->message);
    }
    return rc;
}

int fx_rate_make(const char *from, const char *to, const char *rate, const char *spread,
                 int64_t valid_from, int64_t valid_to, struct fx_rate *r, struct fx_error *err)
{
    struct fx_rate x = { .valid_from = valid_from, .valid_to = valid_to };
    int rc = currency(from, "from", &x.from, err);
    if (rc == FX_OK)
        rc = currency(to, "to", &x.to, err);
    if (rc == FX_OK && x.from == x.to)
        return fx_fail(err, FX_E_INVALID, FX_WHY_NONE,
                       "from and to are both %s: one currency needs no rate", fx_alpha(x.from));
    if (rc == FX_OK)
        rc = in_field(err, fx_decimal_parse(rate, &x.rate, err), "rate");
    if (rc == FX_OK && x.rate.mantissa == 0)
        return fx_fail(err, FX_E_INVALID, FX_WHY_NONE, "rate: must be greater than zero");
    if (rc == FX_OK)
        rc = in_field(err, fx_decimal_parse(spread, &x.spread, err), "spread_pct");
    if (rc == FX_OK) {
        uint64_t max = FX_SPREAD_MAX_PCT;
        for (unsigned i = 0; i < x.spread.scale; i++)
            max *= 10;
        if (x.spread.mantissa > max)
            return fx_fail(err, FX_E_RANGE, FX_WHY_NONE, "spread_pct: %s is above %d %%", spread,
                           FX_SPREAD_MAX_PCT);
    }
    if (rc == FX_OK && valid_to <= valid_from)
        return fx_fail(err, FX_E_INVALID, FX_WHY_NONE, "valid_to must be after valid_from");
    if (rc == FX_OK)
        rc = in_field(err, fx_de10_make(x.rate, x.spread, &x.de10, err), "rate");
    if (rc == FX_OK)
        *r = x;
    return rc;
}

/* Copies the field of a CSV line that starts at s into out (spaces and a line end around it
 * trimmed) and sets *last when no comma follows it. False when the field is too long. */
static bool csv_field(const char *s, char out[FIELD_MAX], const char **next, bool *last)
{
    const char *e = s + strcspn(s, ",");
    *last = *e == '\0';
    *next = *last ? e : e + 1;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        e--;
    if ((size_t)(e - s) >= FIELD_MAX)
        return false;
    memcpy(out, s, (size_t)(e - s));
    out[e - s] = '\0';
    return true;
}

int fx_csv_line(const char *line, struct fx_rate *r, struct fx_error *err)
{
    static const char *const names[CSV_FIELDS] = { "from",       "to",         "rate",
                                                   "spread_pct", "valid_from", "valid_to" };
    char f[CSV_FIELDS][FIELD_MAX];
    int n = 0;
    for (bool last = false; !last; n++) {
        if (n == CSV_FIELDS)
            return fx_fail(err, FX_E_INVALID, FX_WHY_NONE,
                           "more than %d fields (" FX_CSV_HEADER ")", CSV_FIELDS);
        if (!csv_field(line, f[n], &line, &last))
            return fx_fail(err, FX_E_INVALID, FX_WHY_NONE, "%s: too long", names[n]);
    }
    if (n != CSV_FIELDS)
        return fx_fail(err, FX_E_INVALID, FX_WHY_NONE,
                       "%d fields where %d are expected (" FX_CSV_HEADER ")", n, CSV_FIELDS);
    int64_t from_t, to_t = FX_OPEN;
    int rc = in_field(err, fx_time_parse(f[4], &from_t, err), "valid_from");
    if (rc == FX_OK && f[5][0])
        rc = in_field(err, fx_time_parse(f[5], &to_t, err), "valid_to");
    if (rc == FX_OK)
        rc = fx_rate_make(f[0], f[1], f[2], f[3], from_t, to_t, r, err);
    return rc;
}
