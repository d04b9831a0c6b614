/* Unit tests of libatlas_settle (settle/settle.c): the roll-up of (acquirer, issuer, currency)
 * pairs to participants, the net positions and their sign convention, the per-currency zero-sum
 * check, amounts in their currency's decimals, and the CSV's exact bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settle.h"

/* A pair with approved debits and credits and their reversals (amounts positive, as the
 * database gives them). */
static struct db_settle_pair pair(const char *acq, const char *iss, int ccy, int64_t debit,
                                  int64_t credit, int64_t rev_debit, int64_t rev_credit)
{
    struct db_settle_pair p;
    memset(&p, 0, sizeof p);
    snprintf(p.acquirer_id, sizeof p.acquirer_id, "%s", acq);
    snprintf(p.issuer_id, sizeof p.issuer_id, "%s", iss);
    p.currency = ccy;
    p.debits = debit > 0;
    p.debit_amount = debit;
    p.credits = credit > 0;
    p.credit_amount = credit;
    p.rev_debits = rev_debit > 0;
    p.rev_debit_amount = rev_debit;
    p.rev_credits = rev_credit > 0;
    p.rev_credit_amount = rev_credit;
    return p;
}

static const struct st_total *find(const struct st_total *t, size_t n, enum st_role r,
                                   const char *who, int ccy)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].role == r && t[i].currency == ccy && strcmp(t[i].participant, who) == 0)
            return &t[i];
    fail_msg("no total for %s %d", who, ccy);
    return NULL;
}

/* A purchase of 100.00, a refund of 20.00, a purchase of 30.00 reversed: the acquirer is owed
 * 100 + 30 − 30 − 20 = 80.00 and the issuer owes it; two acquirers on one issuer net out. */
static void test_nets_by_hand(void **state)
{
    (void)state;
    struct db_settle_pair p[] = {
        pair("100001", "WALLET1", 504, 13000, 2000, 3000, 0),
        pair("100002", "WALLET1", 504, 500, 0, 0, 0),
        pair("100001", "WALLET1", 952, 700, 300, 0, 300),
    };
    struct st_total *t;
    size_t n;
    assert_int_equal(st_rollup(p, 3, &t, &n), 0);
    assert_int_equal(n, 5); /* 2 acquirers in MAD, 1 in XOF; the issuer in MAD and XOF */
    const struct st_total *a = find(t, n, ST_ACQUIRER, "100001", 504);
    assert_true(a->debit_amount == 13000 && a->credit_amount == 2000);
    assert_true(a->rev_debit_amount == -3000 && a->rev_debits == 1);
    assert_true(a->net == 8000);
    assert_true(find(t, n, ST_ACQUIRER, "100002", 504)->net == 500);
    const struct st_total *i = find(t, n, ST_ISSUER, "WALLET1", 504);
    assert_true(i->net == -8500 && i->debit_amount == 13500 && i->debits == 2);
    /* A refund reversed gives the money back to the issuer's side: 700 − 300 + 300. */
    assert_true(find(t, n, ST_ACQUIRER, "100001", 952)->net == 700);
    assert_true(find(t, n, ST_ISSUER, "WALLET1", 952)->net == -700);
    assert_true(st_currency_balance(t, n, 504) == 0);
    assert_true(st_currency_balance(t, n, 952) == 0);
    /* Sorted: acquirers, then issuers, by participant and currency. */
    assert_true(t[0].role == ST_ACQUIRER && strcmp(t[0].participant, "100001") == 0 &&
                t[0].currency == 504);
    assert_true(t[1].currency == 952 && strcmp(t[2].participant, "100002") == 0);
    assert_true(t[3].role == ST_ISSUER && t[3].currency == 504 && t[4].currency == 952);
    free(t);
}

/* The check must be able to fail: a total whose net was tampered with does not balance. */
/* 1,000 XOF paid with a MAD card, billed 16.83 MAD (DE 6), then 500 XOF more, reversed (8.41
 * MAD): the acquirer is owed 1,000 XOF, the issuer owes 16.83 MAD, and the conversion position
 * between them owes the acquirer the XOF and is owed the MAD — every currency still nets to 0. */
static void test_converted_sides_meet_the_conversion(void **state)
{
    (void)state;
    struct db_settle_pair p[] = {
        pair("100001", "WALLET1", 952, 1500, 0, 500, 0),
        pair("100001", "WALLET1", 504, 2524, 0, 841, 0),
        pair("100001", "WALLET1", 504, 1000, 0, 0, 0), /* a MAD purchase, not converted */
    };
    p[0].side = DB_SETTLE_ACQUIRER;
    p[1].side = DB_SETTLE_ISSUER;
    struct st_total *t;
    size_t n;
    assert_int_equal(st_rollup(p, 3, &t, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(find(t, n, ST_ACQUIRER, "100001", 952)->net, 1000);
    assert_int_equal(find(t, n, ST_ISSUER, ST_CONVERSION, 952)->net, -1000);
    assert_int_equal(find(t, n, ST_ACQUIRER, ST_CONVERSION, 504)->net, 1683);
    assert_int_equal(find(t, n, ST_ISSUER, "WALLET1", 504)->net, -1683 - 1000);
    assert_int_equal(find(t, n, ST_ACQUIRER, "100001", 504)->net, 1000);
    assert_int_equal(st_currency_balance(t, n, 952), 0);
    assert_int_equal(st_currency_balance(t, n, 504), 0);
    free(t);
}

static void test_balance_detects_difference(void **state)
{
    (void)state;
    struct db_settle_pair p = pair("100001", "WALLET1", 504, 1000, 0, 0, 0);
    struct st_total *t;
    size_t n;
    assert_int_equal(st_rollup(&p, 1, &t, &n), 0);
    t[0].net += 1;
    assert_true(st_currency_balance(t, n, 504) == 1);
    FILE *f = tmpfile();
    assert_non_null(f);
    struct st_day day = { "2026-12-06", "00:00", 0, 86400000000 };
    assert_int_equal(st_write_report(f, &day, t, n), 1);
    fclose(f);
    free(t);
}

static void test_fees_and_empty(void **state)
{
    (void)state;
    struct st_total a = { .role = ST_ACQUIRER, .debit_amount = 1000, .fees = 10 };
    struct st_total i = a;
    i.role = ST_ISSUER;
    assert_true(st_net(&a) == 990);
    assert_true(st_net(&i) == -1010);
    struct st_total *t;
    size_t n = 9;
    assert_int_equal(st_rollup(NULL, 0, &t, &n), 0);
    assert_int_equal(n, 0);
    free(t);
}

static void test_amount_format(void **state)
{
    (void)state;
    char b[ST_AMOUNT_CHARS];
    st_format_amount(1250, 504, b);
    assert_string_equal(b, "12.50");
    st_format_amount(-1250, 504, b);
    assert_string_equal(b, "-12.50");
    st_format_amount(-5, 504, b);
    assert_string_equal(b, "-0.05");
    st_format_amount(500, 952, b); /* XOF: no decimals */
    assert_string_equal(b, "500");
    st_format_amount(1234, 929, b); /* MRU: 2 decimals (ISO 4217; 1/5 in practice) */
    assert_string_equal(b, "12.34");
    st_format_amount(0, 504, b);
    assert_string_equal(b, "0.00");
    st_format_amount(INT64_MIN, 952, b);
    assert_string_equal(b, "-9223372036854775808");
}

/* The CSV's exact bytes: a back office imports them, and a re-run must give the same. */
static void test_csv_bytes(void **state)
{
    (void)state;
    struct db_settle_pair p[] = { pair("100001", "WALLET1", 504, 13000, 2000, 3000, 0),
                                  pair("100001", "", 950, 100, 0, 0, 0) };
    p[0].holds = 2;
    p[0].pending = 1;
    p[0].pending_amount = 700;
    struct st_total *t;
    size_t n;
    assert_int_equal(st_rollup(p, 2, &t, &n), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct st_day day = { "2026-12-06", "22:00", 0, 0 };
    assert_int_equal(st_write_csv(f, &day, t, n), 0);
    fclose(f);
    assert_string_equal(
        buf,
        "business_date,cutover_utc,role,participant,currency,currency_code,holds_count,"
        "debits_count,debits_amount,credits_count,credits_amount,reversed_debits_count,"
        "reversed_debits_amount,reversed_credits_count,reversed_credits_amount,fees_amount,"
        "net_amount,pending_reversals_count,pending_reversals_amount,failed_reversals_count,"
        "failed_reversals_amount\n"
        "2026-12-06,22:00,acquirer,100001,504,MAD,2,1,13000,1,2000,1,-3000,0,0,0,8000,1,700,0,0\n"
        "2026-12-06,22:00,acquirer,100001,950,XAF,0,1,100,0,0,0,0,0,0,0,100,0,0,0,0\n"
        "2026-12-06,22:00,issuer,(none),950,XAF,0,1,100,0,0,0,0,0,0,0,-100,0,0,0,0\n"
        "2026-12-06,22:00,issuer,WALLET1,504,MAD,2,1,13000,1,2000,1,-3000,0,0,0,-8000,1,700,0,0\n");
    free(buf);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nets_by_hand),
        cmocka_unit_test(test_converted_sides_meet_the_conversion),
        cmocka_unit_test(test_balance_detects_difference),
        cmocka_unit_test(test_fees_and_empty),
        cmocka_unit_test(test_amount_format),
        cmocka_unit_test(test_csv_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
