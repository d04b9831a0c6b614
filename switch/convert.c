/* Currency conversion in switchd (docs/fx.md, "Wiring"): the rate set built from
 * switch.fx_rates with the reference data, and the one call a request (or a transfer's leg)
 * makes to be converted into its card's billing currency — what DE 6, DE 10 and DE 51 carry
 * to the issuer and back to the terminal, and what the journal keeps. */
#include "switchd.h"

#include "clock.h"
#include "fmt.h"
#include "fx.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sw_fx_build(const struct db_fx_rate *rows, size_t n, struct fx_set **out, char *err,
                size_t errcap)
{
    struct fx_rate *rates = calloc(n + 1, sizeof *rates);
    struct fx_error fe;
    if (!rates) {
        snprintf(err, errcap, "out of memory for %zu rates", n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct db_fx_rate *row = &rows[i];
        char from[12], to[12];
        snprintf(from, sizeof from, "%03d", row->from_currency);
        snprintf(to, sizeof to, "%03d", row->to_currency);
        if (fx_rate_make(from, to, row->rate, row->spread_pct, row->valid_from,
                         row->valid_to < 0 ? FX_OPEN : row->valid_to, &rates[i], &fe) != FX_OK) {
            snprintf(err, errcap, "rate %s->%s from %lld: %s", from, to, (long long)row->valid_from,
                     fe.message);
            free(rates);
            return -1;
        }
    }
    int rc = fx_set_new(rates, n, out, &fe);
    free(rates);
    if (rc != FX_OK) {
        snprintf(err, errcap, "%s", fe.message);
        return -1;
    }
    return 0;
}

int sw_fx_convert(const struct sw_server *srv, int billing_ccy, int64_t amount, int txn_ccy,
                  struct sw_conversion *out)
{
    struct fx_result res;
    struct fx_error fe;
    memset(out, 0, sizeof *out);
    db_billing_none(&out->billing);
    /* No billing currency on the route, or no amount (a balance inquiry): nothing to convert. */
    if (billing_ccy <= 0 || amount < 0)
        return 0;
    /* srv->ref always has its rate set: a snapshot is swapped in only with one (refdata.c). A
     * DE 49 that is not digits (-1) has no exponent: FX_E_CURRENCY. */
    int64_t now_s = (int64_t)(at_wall_us() / 1000000u);
    int rc = fx_apply(srv->ref->fx, (uint64_t)amount, txn_ccy, billing_ccy, now_s, &res, &fe);
    if (rc == FX_OK && res.converted && res.billing_minor == 0 && amount > 0) {
        /* 0.01 MRU is 0.0025 MAD: an amount that bills nothing is not one an issuer can be
         * asked to approve (docs/fx.md). */
        rc = FX_E_RANGE;
        snprintf(fe.message, sizeof fe.message, "the amount converts to zero");
    }
    if (rc == FX_OK) {
        if (res.converted) {
            out->billing.amount_minor = (int64_t)res.billing_minor;
            memcpy(out->billing.rate, res.de10, sizeof out->billing.rate);
            out->billing.currency = billing_ccy;
        }
        return 0;
    }
    char pair[16], at[21];
    snprintf(pair, sizeof pair, "%s->%s", fx_alpha(txn_ccy), fx_alpha(billing_ccy));
    fx_time_format(now_s, at);
    if (rc == FX_NO_RATE) {
        /* The switch's own configuration (a rate file not loaded or not renewed): 91, "try
         * later", never a silent 1:1. */
        out->rc = "91";
        out->reason = "no conversion rate in force";
        out->field = 49;
        at_log(AT_LOG_WARN, "fx_no_rate", AT_STR("pair", pair), AT_STR("why", fx_why_name(fe.why)),
               AT_STR("at", at), AT_STR("message", fe.message));
        return -1;
    }
    /* An amount DE 6 cannot carry (or that converts to nothing), or a currency without a known
     * exponent: the amount's meaning is wrong, 13. */
    out->rc = "13";
    out->reason =
        rc == FX_E_CURRENCY ? "currency unknown to the conversion" : "amount cannot be converted";
    out->field = rc == FX_E_CURRENCY ? 49 : 4;
    at_log(AT_LOG_WARN, "fx_refused", AT_STR("pair", pair), AT_STR("at", at),
           AT_STR("reason", fe.message));
    return -1;
}

int sw_fx_set_fields(struct iso_msg *m, const struct db_billing *b)
{
    char de6[13], de51[4];
    if (!db_billing_converted(b)) {
        iso_unset(m, 6);
        iso_unset(m, 10);
        iso_unset(m, 51);
        return 0;
    }
    at_put_digits(de6, 12, (uint64_t)b->amount_minor);
    de6[12] = '\0';
    at_put_digits(de51, 3, (uint64_t)b->currency);
    de51[3] = '\0';
    return iso_set_copy(m, 6, de6, 12) != 0 || iso_set_copy(m, 10, b->rate, 8) != 0 ||
                   iso_set_copy(m, 51, de51, 3) != 0
               ? -1
               : 0;
}

void sw_fx_to_recent(struct sw_recent_txn *r, const struct db_billing *b)
{
    r->billing_minor = db_billing_converted(b) ? b->amount_minor : -1;
    memcpy(r->billing_rate, db_billing_converted(b) ? b->rate : "00000000", 8);
    r->billing_ccy = db_billing_converted(b) ? (uint16_t)b->currency : 0;
}

void sw_fx_from_recent(const struct sw_recent_txn *r, struct db_billing *b)
{
    db_billing_none(b);
    if (r->billing_minor < 0)
        return;
    b->amount_minor = r->billing_minor;
    memcpy(b->rate, r->billing_rate, 8);
    b->rate[8] = '\0';
    b->currency = r->billing_ccy;
}
