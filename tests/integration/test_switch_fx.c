/* Currency conversion through the whole stack (docs/fx.md, "Wiring"): switchd converts a
 * request whose DE 49 is not the card's billing currency at the demo rates, the issuer moves
 * exactly DE 6 in the wallet's currency, the answer carries DE 6/10/51 back, the journal and
 * the reversal keep them, and every reversal (the terminal's, from memory or from the journal
 * after a restart, and the switch's own after a timeout) gives back exactly DE 6. A pair
 * without a rate in force is declined 91 with an fx_no_rate log line, an amount that converts
 * to nothing 13, and a same-currency purchase carries no DE 6/10/51. Real processes: switchd,
 * hsm-sim, issuer-sim, atlas-fx, PostgreSQL. The expected amounts are worked by hand from
 * fx/demo-rates.csv (every pair with a 1.0 % spread). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;

#define MAD_CARD "4890010000000012" /* 1,000.00 MAD, billed in MAD (504) */
#define XOF_CARD "4890020000000029" /* 500,000 XOF, billed in XOF (952) */

static int setup(void **state)
{
    struct stack_opts o = {
        .issuer = true, .issuer_timeout_ms = 1500, .wallets = 16, .fx_rates = "fx/demo-rates.csv"
    };
    return stack_setup(state, &S, &o);
}

/* A purchase of amount (minor units of ccy, numeric) on pan at TERM0001. */
static const char *purchase(const char *pan, uint64_t amount, const char *ccy, struct sim_resp *r,
                            struct sim_sent *sent, struct stack_fx_fields *fx)
{
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, pan, amount);
    snprintf(x.currency, sizeof x.currency, "%s", ccy);
    struct sim_term *t = stack_term(&S, "TERM0001");
    if (stack_send_fx(&S, t, &x, r, sent, fx) != 0)
        return "--";
    assert_true(sim_mac_acceptable(r));
    return r->rc;
}

/* The journal's conversion columns of the request sent (-1 when NULL). */
static long long journal(const struct sim_sent *sent, const char *expr)
{
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT coalesce((%s)::bigint, -1) FROM switch.authorizations"
             " WHERE terminal_id = 'TERM0001' AND stan = '%s' AND transmission_time = '%s'",
             expr, sent->stan, sent->de7);
    return stack_scalar(&S, sql);
}

/* The amount the issuer recorded for the reversal of the request sent (its 'rev:' request key:
 * sim_request_key of the issuer-side identity), -1 when it has none. */
static long long issuer_reversal_amount(const struct sim_sent *sent)
{
    char sql[600];
    snprintf(sql, sizeof sql,
             "SELECT coalesce((SELECT q.amount_minor FROM wallet.requests q"
             " JOIN switch.authorizations a ON q.request_key = 'rev:' || lpad(a.acquirer_id, 11,"
             " '0') || ':' || a.terminal_id || ':' || a.issuer_stan || ':' ||"
             " a.issuer_transmission_time"
             " WHERE a.terminal_id = 'TERM0001' AND a.stan = '%s'"
             " AND a.transmission_time = '%s'), -1)",
             sent->stan, sent->de7);
    return stack_scalar(&S, sql);
}

/* 1,000 XOF on a MAD card. XOF->MAD 0.016661095 × 1.01 = 0.01682770595, which DE 10 carries
 * as 0.0168277 ("70168277"); DE 6 = 1000 × 0.0168277 × 10^(2-0) = 1682.77 -> 1683: 16.83 MAD. */
static void test_foreign_purchase_converted_and_reversed(void **state)
{
    struct sim_resp r;
    struct sim_sent sent;
    struct stack_fx_fields fx;
    long long before = stack_balance(&S, MAD_CARD);
    assert_string_equal(purchase(MAD_CARD, 1000, "952", &r, &sent, &fx), "00");
    assert_string_equal(fx.de6, "000000001683");
    assert_string_equal(fx.de10, "70168277");
    assert_string_equal(fx.de51, "504");
    assert_int_equal(stack_balance(&S, MAD_CARD), before - 1683);
    /* The journal keeps what the issuer saw next to what the acquirer asked. */
    assert_int_equal(journal(&sent, "amount_minor"), 1000);
    assert_int_equal(journal(&sent, "currency"), 952);
    assert_int_equal(journal(&sent, "billing_amount_minor"), 1683);
    assert_int_equal(journal(&sent, "conversion_rate"), 70168277);
    assert_int_equal(journal(&sent, "billing_currency"), 504);
    assert_true(ts_wait_file_contains(S.switch_log,
                                      "\"billing_amount\":1683,\"conversion_rate\":\"70168277\","
                                      "\"billing_currency\":504}",
                                      3000));

    /* The terminal's reversal (the original still in the switch's memory) repeats the
     * conversion: the wallet gets back exactly DE 6. */
    struct sim_txn rev;
    stack_reversal_of(&rev, MAD_CARD, 1000, &sent);
    snprintf(rev.currency, sizeof rev.currency, "952");
    assert_string_equal(stack_rc(&S, "TERM0001", &rev, &r, NULL), "00");
    assert_true(stack_wait_balance(&S, MAD_CARD, before, 5000));
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.reversal_queue WHERE stan = '%s' AND state = 'acked'"
             " AND billing_amount_minor = 1683 AND conversion_rate = '70168277'"
             " AND billing_currency = 504",
             sent.stan);
    assert_int_equal(stack_wait_scalar(&S, sql, 1, 5000), 0);
    /* The 0420 carried DE 6 in DE 51: the issuer's reversal is of 1683 (MAD), not 1000. */
    assert_int_equal(issuer_reversal_amount(&sent), 1683);
}

/* After a restart the switch knows the original from the journal only: the reversal still
 * carries the original's DE 6. 500 XOF: 500 × 0.0168277 × 100 = 841.385 -> 841. */
static void test_reversal_after_restart_repeats_the_conversion(void **state)
{
    struct sim_resp r;
    struct sim_sent sent;
    struct stack_fx_fields fx;
    long long before = stack_balance(&S, MAD_CARD);
    assert_string_equal(purchase(MAD_CARD, 500, "952", &r, &sent, &fx), "00");
    assert_string_equal(fx.de6, "000000000841");
    assert_int_equal(stack_balance(&S, MAD_CARD), before - 841);
    assert_int_equal(stack_restart_switch(&S, SIGTERM), 0);
    struct sim_txn rev;
    stack_reversal_of(&rev, MAD_CARD, 500, &sent);
    snprintf(rev.currency, sizeof rev.currency, "952");
    assert_string_equal(stack_rc_linked(&S, "TERM0001", &rev, &r, 5000), "00");
    assert_true(stack_wait_balance(&S, MAD_CARD, before, 8000));
}

/* 12.50 MAD on the XOF card while the issuer is stopped: 91, and the switch's own reversal
 * (from its reversal queue) undoes the late approval with the same DE 6. MAD->XOF 60.020066
 * × 1.01 = 60.62026666 -> DE 10 60.62027 ("56062027"); 1250 × 60.62027 / 100 = 757.75 -> 758. */
static void test_switch_reversal_after_timeout_repeats_the_conversion(void **state)
{
    struct sim_resp r;
    struct sim_sent sent;
    struct stack_fx_fields fx;
    long long before = stack_balance(&S, XOF_CARD);
    stack_kill(S.issuer, SIGSTOP);
    const char *rc = purchase(XOF_CARD, 1250, "504", &r, &sent, &fx);
    stack_kill(S.issuer, SIGCONT);
    assert_string_equal(rc, "91");
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.reversal_queue WHERE stan = '%s' AND state = 'acked'"
             " AND amount_minor = 1250 AND currency = 504 AND billing_amount_minor = 758"
             " AND conversion_rate = '56062027' AND billing_currency = 952",
             sent.stan);
    assert_int_equal(stack_wait_scalar(&S, sql, 1, 8000), 0);
    assert_true(stack_wait_balance(&S, XOF_CARD, before, 8000));
    assert_int_equal(issuer_reversal_amount(&sent), 758);
}

/* switchd killed while a converted request waits at the issuer: the write-ahead row kept DE 6,
 * so the recovery at the next start journals it 'lost' and reverses it with the original's
 * conversion — the wallet gets back exactly the 16.83 MAD the late approval took. */
static void test_recovery_repeats_the_conversion(void **state)
{
    struct sim_txn x;
    struct sim_sent sent;
    char sql[400];
    long long before = stack_balance(&S, MAD_CARD);
    stack_card_txn(&x, SIM_T_PURCHASE, MAD_CARD, 1000);
    snprintf(x.currency, sizeof x.currency, "952");
    stack_kill(S.issuer, SIGSTOP); /* the request waits at the issuer */
    int fd = stack_send_nowait(&S, stack_term(&S, "TERM0001"), &x, &sent);
    assert_true(fd >= 0);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.inflight WHERE stan = '%s' AND transmission_time = '%s'"
             " AND billing_amount_minor = 1683 AND conversion_rate = '70168277'"
             " AND billing_currency = 504",
             sent.stan, sent.de7);
    assert_int_equal(stack_wait_scalar(&S, sql, 1, 3000), 0);
    assert_int_equal(ts_stop(S.sw, SIGKILL, 5000) != -1, 1);
    stack_kill(S.issuer, SIGCONT); /* it applies the debit and answers nobody */
    close(fd);
    assert_true(stack_wait_balance(&S, MAD_CARD, before - 1683, 5000));
    assert_int_equal(stack_start_switch(&S), 0);
    assert_true(stack_wait_balance(&S, MAD_CARD, before, 10000));
    assert_int_equal(journal(&sent, "(outcome = 'lost')::int"), 1);
    assert_int_equal(journal(&sent, "billing_amount_minor"), 1683);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.reversal_queue WHERE stan = '%s' AND reason = 'recovery'"
             " AND billing_amount_minor = 1683 AND conversion_rate = '70168277'"
             " AND billing_currency = 504",
             sent.stan);
    assert_int_equal(stack_scalar(&S, sql), 1);
    assert_int_equal(issuer_reversal_amount(&sent), 1683);
}

/* EUR has no rate into MAD: 91, an fx_no_rate line naming the pair and why, the journal row
 * 'rejected', nothing forwarded, nothing debited. */
static void test_pair_without_rate_is_91(void **state)
{
    struct sim_resp r;
    struct sim_sent sent;
    struct stack_fx_fields fx;
    long long before = stack_balance(&S, MAD_CARD);
    assert_string_equal(purchase(MAD_CARD, 1000, "978", &r, &sent, &fx), "91");
    assert_string_equal(fx.de6, "");
    assert_true(ts_wait_file_contains(S.switch_log,
                                      "\"event\":\"fx_no_rate\",\"pair\":\"EUR->MAD\","
                                      "\"why\":\"no_pair\",\"at\":\"20",
                                      3000));
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.authorizations WHERE stan = '%s'"
             " AND outcome = 'rejected' AND response_code = '91' AND issuer_stan IS NULL",
             sent.stan);
    assert_int_equal(stack_scalar(&S, sql), 1);
    assert_int_equal(stack_balance(&S, MAD_CARD), before);
}

/* 0.01 MRU is 0.0025 MAD: it bills nothing, 13 (and fx_refused), never a zero DE 6; a currency
 * without a known exponent is 13 too. */
static void test_amount_converting_to_zero_is_13(void **state)
{
    struct sim_resp r;
    struct stack_fx_fields fx;
    assert_string_equal(purchase(MAD_CARD, 1, "929", &r, NULL, &fx), "13");
    assert_true(ts_wait_file_contains(S.switch_log, "\"event\":\"fx_refused\"", 3000));
    /* A DE 49 common/currency.c does not know (999) has no exponent: 13 as well. */
    assert_string_equal(purchase(MAD_CARD, 100, "999", &r, NULL, &fx), "13");
    assert_true(ts_wait_file_contains(S.switch_log, "\"pair\":\"?\?\?->MAD\"", 3000));
}

/* The card's own currency: no DE 6/10/51 anywhere. */
static void test_same_currency_is_not_converted(void **state)
{
    struct sim_resp r;
    struct sim_sent sent;
    struct stack_fx_fields fx;
    long long before = stack_balance(&S, MAD_CARD);
    assert_string_equal(purchase(MAD_CARD, 1000, "504", &r, &sent, &fx), "00");
    assert_string_equal(fx.de6, "");
    assert_string_equal(fx.de10, "");
    assert_string_equal(fx.de51, "");
    assert_int_equal(stack_balance(&S, MAD_CARD), before - 1000);
    assert_int_equal(journal(&sent, "billing_amount_minor"), -1);
    assert_int_equal(journal(&sent, "billing_currency"), -1);
}

/* Rates reload on SIGHUP with the reference data: an EUR->MAD period that ends three seconds
 * later converts while it is in force and, once it has ended, the decline says "expired"; a
 * row the switch cannot use (a rate DE 10 cannot carry) refuses the reload and the previous
 * set goes on serving. */
static void test_rates_reload_on_sighup(void **state)
{
    struct sim_resp r;
    struct stack_fx_fields fx;
    int loads = ts_file_lines_with(S.switch_log, "\"event\":\"refdata_loaded\"");
    assert_int_equal(stack_exec(&S, "INSERT INTO switch.fx_rates (from_currency, to_currency,"
                                    " rate, spread_pct, valid_from, valid_to, source) VALUES"
                                    " (978, 504, 10.9, 0, '2026-01-01Z',"
                                    " date_trunc('second', now()) + interval '3 seconds', 'test')"),
                     0);
    stack_kill(S.sw, SIGHUP);
    for (int i = 0;
         i < 50 && ts_file_lines_with(S.switch_log, "\"event\":\"refdata_loaded\"") == loads; i++)
        usleep(100000);
    /* 10.00 EUR at 10.9 (no spread: DE 10 "51090000") = 109.00 MAD. */
    assert_string_equal(purchase(MAD_CARD, 1000, "978", &r, NULL, &fx), "00");
    assert_string_equal(fx.de6, "000000010900");
    assert_string_equal(fx.de10, "51090000");
    sleep(3);
    assert_string_equal(purchase(MAD_CARD, 1000, "978", &r, NULL, &fx), "91");
    assert_true(
        ts_wait_file_contains(S.switch_log, "\"pair\":\"EUR->MAD\",\"why\":\"expired\"", 3000));

    assert_int_equal(stack_exec(&S, "INSERT INTO switch.fx_rates (from_currency, to_currency,"
                                    " rate, spread_pct, valid_from, source) VALUES"
                                    " (929, 978, 0.00000001, 0, '2026-01-01Z', 'test')"),
                     0);
    stack_kill(S.sw, SIGHUP);
    assert_true(ts_wait_file_contains(S.switch_log, "\"event\":\"refdata_invalid\"", 5000));
    assert_string_equal(purchase(MAD_CARD, 1000, "952", &r, NULL, &fx), "00");
    assert_string_equal(fx.de6, "000000001683");
    assert_int_equal(stack_exec(&S, "DELETE FROM switch.fx_rates WHERE source = 'test'"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_foreign_purchase_converted_and_reversed),
        cmocka_unit_test(test_reversal_after_restart_repeats_the_conversion),
        cmocka_unit_test(test_switch_reversal_after_timeout_repeats_the_conversion),
        cmocka_unit_test(test_recovery_repeats_the_conversion),
        cmocka_unit_test(test_pair_without_rate_is_91),
        cmocka_unit_test(test_amount_converting_to_zero_is_13),
        cmocka_unit_test(test_same_currency_is_not_converted),
        cmocka_unit_test(test_rates_reload_on_sighup),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
