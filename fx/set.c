/* The in-memory rate table: an immutable array sorted by (from, to, valid_from), checked for
 * overlapping periods when it is built, searched by bisection per request. switchd builds one
 * from the database at start and on SIGHUP and swaps it whole, as it does its other reference
 * data; no lookup allocates or locks. */
#include "fx_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fx_set {
    size_t n;
    struct fx_rate rates[]; /* sorted by key() */
};

/* Orders rates by pair, then start of period. */
static int cmp_key(int from_a, int to_a, int64_t t_a, const struct fx_rate *b)
{
    if (from_a != b->from)
        return from_a < b->from ? -1 : 1;
    if (to_a != b->to)
        return to_a < b->to ? -1 : 1;
    return t_a < b->valid_from ? -1 : t_a > b->valid_from ? 1 : 0;
}

static int cmp_rate(const void *a, const void *b)
{
    const struct fx_rate *x = a;
    return cmp_key(x->from, x->to, x->valid_from, b);
}

static bool same_pair(const struct fx_rate *a, const struct fx_rate *b)
{
    return a->from == b->from && a->to == b->to;
}

int fx_set_new(const struct fx_rate *rates, size_t n, struct fx_set **out, struct fx_error *err)
{
    struct fx_set *s = malloc(sizeof *s + n * sizeof s->rates[0]);
    if (!s)
        return fx_fail(err, FX_E_RANGE, FX_WHY_NONE, "out of memory for %zu rates", n);
    s->n = n;
    if (n)
        memcpy(s->rates, rates, n * sizeof rates[0]);
    qsort(s->rates, n, sizeof s->rates[0], cmp_rate);
    for (size_t i = 1; i < n; i++) {
        const struct fx_rate *a = &s->rates[i - 1], *b = &s->rates[i];
        if (same_pair(a, b) && a->valid_to > b->valid_from) {
            char af[21], at[21], bf[21];
            fx_time_format(a->valid_from, af);
            fx_time_format(a->valid_to, at);
            fx_time_format(b->valid_from, bf);
            fx_fail(err, FX_E_INVALID, FX_WHY_NONE,
                    "%s->%s: the period from %s to %s overlaps the one from %s", fx_alpha(a->from),
                    fx_alpha(a->to), af, at, bf);
            free(s);
            return FX_E_INVALID;
        }
    }
    *out = s;
    return FX_OK;
}

void fx_set_free(struct fx_set *s)
{
    free(s);
}

size_t fx_set_count(const struct fx_set *s)
{
    return s->n;
}

const struct fx_rate *fx_set_at(const struct fx_set *s, size_t i)
{
    return i < s->n ? &s->rates[i] : NULL;
}

/* The index of the first rate whose key is after (from, to, t): the rate before it, if of the
 * same pair, is the latest period that began at or before t. */
static size_t upper_bound(const struct fx_set *s, int from, int to, int64_t t)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_key(from, to, t, &s->rates[mid]) >= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int fx_lookup(const struct fx_set *s, int from, int to, int64_t t, const struct fx_rate **out,
              struct fx_error *err)
{
    size_t i = upper_bound(s, from, to, t);
    const struct fx_rate *prev = i > 0 ? &s->rates[i - 1] : NULL;
    const struct fx_rate *next = i < s->n ? &s->rates[i] : NULL;
    bool has_prev = prev && prev->from == from && prev->to == to;
    bool has_next = next && next->from == from && next->to == to;
    const char *fa = fx_alpha(from), *ta = fx_alpha(to);
    char when[21], at[21];
    fx_time_format(t, at);
    if (has_prev && t < prev->valid_to) {
        *out = prev;
        return FX_OK;
    }
    if (has_prev && has_next) {
        fx_time_format(prev->valid_to, when);
        return fx_fail(err, FX_NO_RATE, FX_WHY_GAP,
                       "no rate for %s->%s at %s: the last one ended at %s, the next begins later",
                       fa, ta, at, when);
    }
    if (has_prev) {
        fx_time_format(prev->valid_to, when);
        return fx_fail(err, FX_NO_RATE, FX_WHY_EXPIRED,
                       "no rate for %s->%s at %s: the last one expired at %s", fa, ta, at, when);
    }
    if (has_next) {
        fx_time_format(next->valid_from, when);
        return fx_fail(err, FX_NO_RATE, FX_WHY_NOT_YET,
                       "no rate for %s->%s at %s: the first one begins at %s", fa, ta, at, when);
    }
    return fx_fail(err, FX_NO_RATE, FX_WHY_NO_PAIR, "no rate for %s->%s: the pair has none", fa,
                   ta);
}

int fx_apply(const struct fx_set *s, uint64_t txn_minor, int txn_ccy, int billing_ccy, int64_t t,
             struct fx_result *out, struct fx_error *err)
{
    memset(out, 0, sizeof *out);
    if (txn_ccy == billing_ccy)
        return FX_OK;
    int te = fx_exponent(txn_ccy), be = fx_exponent(billing_ccy);
    if (te < 0 || be < 0)
        return fx_fail(err, FX_E_CURRENCY, FX_WHY_NONE, "currency %03d has no known exponent",
                       te < 0 ? txn_ccy : billing_ccy);
    const struct fx_rate *r;
    int rc = fx_lookup(s, txn_ccy, billing_ccy, t, &r, err);
    if (rc == FX_OK)
        rc = fx_convert_minor(txn_minor, te, r->de10, be, &out->billing_minor, err);
    if (rc != FX_OK)
        return rc;
    out->converted = true;
    out->rate = r;
    fx_de10_encode(r->de10, out->de10);
    snprintf(out->billing_ccy, sizeof out->billing_ccy, "%03u", (unsigned)billing_ccy % 1000u);
    return FX_OK;
}
