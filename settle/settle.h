/* libatlas_settle: end-of-day settlement (docs/settle.md) — what atlas-settle does with the
 * aggregates db_settle_read returns: one total per participant (acquirer or issuer) and
 * currency, its net position, the per-currency zero-sum check, the CSV a back office imports
 * and the readable report. Pure: no database, no clock, so that the same input always gives the
 * same bytes (a re-run gives a byte-identical CSV). */
#ifndef ATLAS_SETTLE_H
#define ATLAS_SETTLE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "db.h"

enum st_role {
    ST_ACQUIRER, /* owed what its terminals took (debits), owes what they paid out (credits) */
    ST_ISSUER,   /* the opposite: its wallets paid the debits and received the credits */
};

/* One participant in one currency over the business day. Amounts are signed minor units:
 * approved amounts positive, reversed amounts negative (a reversal takes its original back). */
struct st_total {
    enum st_role role;
    char participant[33]; /* acquirer_id or issuer_id; "" for an issuer the journal lacks */
    int currency;         /* ISO 4217 numeric */
    int64_t holds;        /* approved 0100s: counted, never settled */
    int64_t debits, debit_amount, credits, credit_amount;
    int64_t rev_debits, rev_debit_amount, rev_credits, rev_credit_amount; /* amounts <= 0 */
    int64_t fees;                    /* 0: no fee schedule yet */
    int64_t net;                     /* st_net: > 0 the participant is owed it, < 0 it owes it */
    int64_t pending, pending_amount; /* reversals not acknowledged yet: not in the net */
    int64_t failed, failed_amount;   /* reversals the issuer refused: not in the net */
};

/* The net position of t: for an acquirer, debits approved − debits reversed − credits approved +
 * credits reversed − fees; for an issuer the opposite sign of the same flows (fees are 0 today
 * and will be each participant's own). */
int64_t st_net(const struct st_total *t);

/* The participant that holds the switch's conversion position (docs/settle.md): no acquirer or
 * issuer id can be spelt with parentheses. */
#define ST_CONVERSION "(conversion)"

/* The participants' totals of n pairs: each pair adds to its acquirer's and to its issuer's row
 * of its currency; the acquirer's side of a converted request (DB_SETTLE_ACQUIRER) to its
 * acquirer and, as their issuer, ST_CONVERSION; its issuer's side (DB_SETTLE_ISSUER) to
 * ST_CONVERSION as their acquirer and to its issuer. The result is sorted — acquirers first, then
 * issuers, each by participant (byte order) and currency — into a fresh array the caller frees. 0,
 * or -1 out of memory. */
int st_rollup(const struct db_settle_pair *pairs, size_t n, struct st_total **out, size_t *nout);

/* The sum of the nets of every participant in currency ccy: 0 when the day balances. */
int64_t st_currency_balance(const struct st_total *t, size_t n, int ccy);

/* The business day being settled, for the CSV and the report. */
struct st_day {
    char date[11];   /* "YYYY-MM-DD" */
    char cutover[6]; /* "HH:MM" UTC */
    int64_t start_us, end_us;
};

/* The CSV: a header line, then one line per total in the given order (no time of the run, so
 * that a re-run gives the same bytes). Columns: docs/settle.md. 0, or -1 when writing failed. */
int st_write_csv(FILE *f, const struct st_day *day, const struct st_total *t, size_t n);

/* An amount of minor units in its currency's decimals ("-12.50"; a currency of unknown exponent
 * as minor units) into out (at least ST_AMOUNT_CHARS bytes). */
#define ST_AMOUNT_CHARS 32
void st_format_amount(int64_t minor, int ccy, char out[ST_AMOUNT_CHARS]);

/* The readable report: per currency, one line per participant and the zero-sum check. Returns
 * the number of currencies whose nets do not sum to zero (0 when the day balances). */
int st_write_report(FILE *f, const struct st_day *day, const struct st_total *t, size_t n);

#endif
