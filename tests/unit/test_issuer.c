/* Unit tests of libatlas_issuer: the authorization decision over a wallet snapshot (every
 * response code and its effects), DE 54 formatting, request keys, Luhn and the seed specs. */
#include "issuer.h"
#include "parse.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static struct sim_wallet wallet(void)
{
    struct sim_wallet w = {
        .expiry = "2812",
        .currency = 504,
        .balance_minor = 100000,
        .held_minor = 0,
        .status = SIM_ACTIVE,
        .pin_tries = 0,
        .pin_try_limit = 3,
        .daily_limit_minor = -1,
        .daily_cash_limit_minor = -1,
        .daily_count_limit = -1,
        .usage_date = "",
        .usage_month = "",
        .max_balance_minor = -1,
        .debit_daily_limit_minor = -1,
        .debit_monthly_limit_minor = -1,
        .credit_daily_limit_minor = -1,
        .credit_monthly_limit_minor = -1,
    };
    return w;
}

static struct sim_request request(enum sim_msg msg, int pcode, int64_t amount)
{
    struct sim_request r = {
        .msg = msg,
        .pcode = pcode,
        .amount_minor = amount,
        .currency = 504,
        .expiry = "",
        .pin_present = false,
        .pin = SIM_PIN_UNCHECKED,
        .today = "2026-11-26",
        .now_yymm = "2611",
    };
    return r;
}

static void decide_rc(const struct sim_wallet *w, const struct sim_request *r, const char *rc,
                      struct sim_effects *e)
{
    assert_int_equal(sim_decide(w, r, e), SIM_DECIDED);
    assert_string_equal(e->rc, rc);
}

static void test_purchase_approved_debits(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    struct sim_request r = request(SIM_MSG_FINANCIAL, 0, 2500);
    struct sim_effects e;
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.ledger_minor, -2500);
    assert_int_equal(e.hold_minor, 0);
    assert_string_equal(e.kind, "purchase");
    assert_true(e.usage_set);
    assert_string_equal(e.usage_date, "2026-11-26");
    assert_int_equal(e.usage_minor, 2500);
    assert_int_equal(e.usage_count, 1);
    assert_int_equal(e.usage_cash_minor, 0);
    assert_int_equal(e.pin_tries, -1);
}

static void test_auth_places_hold(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    struct sim_request r = request(SIM_MSG_AUTH, 0, 700);
    struct sim_effects e;
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.hold_minor, 700);
    assert_int_equal(e.ledger_minor, 0);
}

static void test_kinds(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    struct sim_effects e;
    struct sim_request r = request(SIM_MSG_FINANCIAL, 1, 100);
    decide_rc(&w, &r, "00", &e);
    assert_string_equal(e.kind, "cash_out");
    assert_int_equal(e.usage_cash_minor, 100);
    r = request(SIM_MSG_FINANCIAL, 10, 100);
    decide_rc(&w, &r, "00", &e);
    assert_string_equal(e.kind, "funding");
    assert_int_equal(e.ledger_minor, -100);
    r = request(SIM_MSG_FINANCIAL, 9, 100);
    decide_rc(&w, &r, "00", &e);
    assert_string_equal(e.kind, "purchase");
    r = request(SIM_MSG_FINANCIAL, 20, 300);
    decide_rc(&w, &r, "00", &e);
    assert_string_equal(e.kind, "refund");
    assert_int_equal(e.ledger_minor, 300);
    assert_true(e.usage_set); /* credits count towards the tier's credit limits */
    assert_int_equal(e.day_credit_minor, 300);
    assert_int_equal(e.month_credit_minor, 300);
    assert_int_equal(e.usage_minor, 0);
    r = request(SIM_MSG_FINANCIAL, 26, 300);
    decide_rc(&w, &r, "00", &e);
    assert_string_equal(e.kind, "credit");
}

static void test_inquiry(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    struct sim_effects e;
    struct sim_request r = request(SIM_MSG_AUTH, 31, -1);
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.ledger_minor, 0);
    assert_int_equal(e.hold_minor, 0);
    assert_false(e.usage_set);
}

static void test_request_checks(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    struct sim_effects e;
    struct sim_request r = request(SIM_MSG_FINANCIAL, 40, 100);
    decide_rc(&w, &r, "12", &e); /* transfer: not defined for a one-account wallet */
    r = request(SIM_MSG_FINANCIAL, 77, 100);
    decide_rc(&w, &r, "12", &e);
    r = request(SIM_MSG_AUTH, 20, 100);
    decide_rc(&w, &r, "12", &e); /* nothing to reserve for a credit */
    r = request(SIM_MSG_FINANCIAL, 0, 0);
    decide_rc(&w, &r, "13", &e);
    r = request(SIM_MSG_FINANCIAL, 0, SIM_MAX_BALANCE + 1);
    decide_rc(&w, &r, "13", &e);
    /* request checks come before the card lookup */
    decide_rc(NULL, &r, "13", &e);
}

static void test_card_states(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    struct sim_effects e;
    struct sim_request r = request(SIM_MSG_FINANCIAL, 0, 100);
    decide_rc(NULL, &r, "14", &e);
    w.status = SIM_LOST;
    decide_rc(&w, &r, "62", &e);
    w.status = SIM_BLOCKED;
    decide_rc(&w, &r, "05", &e);
    assert_int_equal(e.ledger_minor, 0);
    w = wallet();
    memcpy(w.expiry, "2001", 5);
    decide_rc(&w, &r, "54", &e);
    w = wallet();
    memcpy(w.expiry, "2611", 5); /* valid through the end of its month */
    decide_rc(&w, &r, "00", &e);
    w = wallet();
    memcpy(r.expiry, "2711", 5); /* DE 14 disagrees with the card */
    decide_rc(&w, &r, "54", &e);
    /* a refund to an expired card's wallet is still a credit to the account */
    w = wallet();
    memcpy(w.expiry, "2001", 5);
    r = request(SIM_MSG_FINANCIAL, 20, 100);
    decide_rc(&w, &r, "00", &e);
}

static void test_pin_flow(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    struct sim_effects e;
    struct sim_request r = request(SIM_MSG_FINANCIAL, 1, 100);
    r.pin_present = true;
    assert_int_equal(sim_decide(&w, &r, &e), SIM_NEED_PIN);
    r.pin = SIM_PIN_BAD;
    decide_rc(&w, &r, "55", &e);
    assert_int_equal(e.pin_tries, 1);
    assert_int_equal(e.ledger_minor, 0);
    w.pin_tries = 1;
    decide_rc(&w, &r, "55", &e);
    assert_int_equal(e.pin_tries, 2);
    w.pin_tries = 2;
    decide_rc(&w, &r, "75", &e); /* the third wrong PIN */
    assert_int_equal(e.pin_tries, 3);
    w.pin_tries = 3;
    r.pin = SIM_PIN_UNCHECKED;
    decide_rc(&w, &r, "75", &e); /* blocked: not even verified */
    r.pin = SIM_PIN_OK;
    decide_rc(&w, &r, "75", &e); /* a right PIN does not unblock */
    w.pin_tries = 2;
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.pin_tries, 0); /* reset */
    w.pin_tries = 0;
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.pin_tries, -1); /* nothing to write */
    /* a right PIN resets the counter even when the request is declined afterwards */
    w.pin_tries = 1;
    r.amount_minor = 200000;
    decide_rc(&w, &r, "51", &e);
    assert_int_equal(e.pin_tries, 0);
}

static void test_currency(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    struct sim_effects e;
    struct sim_request r = request(SIM_MSG_FINANCIAL, 0, 100);
    r.currency = 952;
    decide_rc(&w, &r, "57", &e);
    r = request(SIM_MSG_AUTH, 30, -1);
    r.currency = 952;
    decide_rc(&w, &r, "57", &e);
}

static void test_limits_and_funds(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    struct sim_effects e;
    struct sim_request r = request(SIM_MSG_FINANCIAL, 0, 100000);
    decide_rc(&w, &r, "00", &e); /* exactly the balance */
    r.amount_minor = 100001;
    decide_rc(&w, &r, "51", &e);
    w.held_minor = 1;
    r.amount_minor = 100000;
    decide_rc(&w, &r, "51", &e); /* holds count */
    w = wallet();
    w.daily_limit_minor = 5000;
    r.amount_minor = 5000;
    decide_rc(&w, &r, "00", &e);
    r.amount_minor = 5001;
    decide_rc(&w, &r, "61", &e);
    memcpy(w.usage_date, "2026-11-26", 11);
    w.usage_minor = 4000;
    r.amount_minor = 1001;
    decide_rc(&w, &r, "61", &e);
    memcpy(w.usage_date, "2026-11-25", 11); /* yesterday's usage does not count */
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.usage_minor, 1001);
    assert_int_equal(e.usage_count, 1);
    w = wallet();
    w.daily_cash_limit_minor = 1000;
    r = request(SIM_MSG_FINANCIAL, 1, 1500);
    decide_rc(&w, &r, "61", &e);
    r.pcode = 0;
    decide_rc(&w, &r, "00", &e); /* a purchase is not cash */
    w = wallet();
    w.daily_count_limit = 2;
    memcpy(w.usage_date, "2026-11-26", 11);
    w.usage_count = 2;
    r = request(SIM_MSG_FINANCIAL, 0, 10);
    decide_rc(&w, &r, "65", &e);
    w.usage_count = 1;
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.usage_count, 2);
    /* credits never exceed what DE 54 can show */
    w = wallet();
    w.balance_minor = SIM_MAX_BALANCE - 5;
    r = request(SIM_MSG_FINANCIAL, 20, 6);
    decide_rc(&w, &r, "13", &e);
    r.amount_minor = 5;
    decide_rc(&w, &r, "00", &e);
}

/* The tier's daily and monthly debit amount limits: at the limit approved, one minor unit over
 * declined 61 naming the rule; yesterday's / last month's usage does not count. */
static void test_tier_debit_limits(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    w.debit_daily_limit_minor = 5000;
    w.debit_monthly_limit_minor = 20000;
    memcpy(w.usage_date, "2026-11-26", 11);
    w.usage_minor = 3000;
    memcpy(w.usage_month, "2026-11-01", 11);
    w.month_debit_minor = 10000;
    struct sim_request r = request(SIM_MSG_FINANCIAL, 0, 2000);
    struct sim_effects e;
    decide_rc(&w, &r, "00", &e);
    assert_null(e.rule);
    assert_int_equal(e.usage_minor, 5000);
    assert_int_equal(e.month_debit_minor, 12000);
    assert_string_equal(e.usage_month, "2026-11-01");
    r.amount_minor = 2001;
    decide_rc(&w, &r, "61", &e);
    assert_string_equal(e.rule, "tier_debit_daily");
    assert_int_equal(e.rule_limit, 5000);
    assert_int_equal(e.rule_would, 5001);
    assert_false(e.usage_set);
    assert_int_equal(e.ledger_minor, 0);
    /* a hold counts like a debit */
    r = request(SIM_MSG_AUTH, 0, 2001);
    decide_rc(&w, &r, "61", &e);
    /* the month: 10000 used, 20000 allowed */
    w.usage_minor = 0;
    w.debit_daily_limit_minor = -1;
    r = request(SIM_MSG_FINANCIAL, 0, 10000);
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.month_debit_minor, 20000);
    r.amount_minor = 10001;
    decide_rc(&w, &r, "61", &e);
    assert_string_equal(e.rule, "tier_debit_monthly");
    assert_int_equal(e.rule_would, 20001);
    /* a new month resets the monthly counter (and the day's) */
    memcpy(r.today, "2026-12-01", 11);
    memcpy(r.now_yymm, "2612", 5);
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.month_debit_minor, 10001);
    assert_int_equal(e.usage_minor, 10001);
    assert_string_equal(e.usage_month, "2026-12-01");
    assert_string_equal(e.usage_date, "2026-12-01");
    /* the same month of another year is another month */
    memcpy(w.usage_month, "2025-12-01", 11);
    r.amount_minor = 20000;
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.month_debit_minor, 20000);
    /* a new day resets the daily counter, not the monthly one */
    memcpy(w.usage_month, "2026-11-01", 11);
    w.debit_daily_limit_minor = 5000;
    w.usage_minor = 5000;
    r = request(SIM_MSG_FINANCIAL, 0, 5000);
    memcpy(r.today, "2026-11-27", 11);
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.usage_minor, 5000);
    assert_int_equal(e.month_debit_minor, 15000);
    /* the debit limits say nothing of credits */
    w.month_debit_minor = 20000;
    r = request(SIM_MSG_FINANCIAL, 20, 9000);
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.month_debit_minor, 20000); /* carried as it stands */
    assert_int_equal(e.usage_minor, 5000);
}

/* The order of the debit checks: count (65), the wallet's own daily amount (61), the tier's daily
 * and monthly (61), then funds (51). */
static void test_debit_check_order(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    w.balance_minor = 100;
    w.daily_count_limit = 1;
    w.daily_limit_minor = 100;
    w.debit_daily_limit_minor = 100;
    w.debit_monthly_limit_minor = 100;
    memcpy(w.usage_date, "2026-11-26", 11);
    w.usage_count = 1;
    struct sim_request r = request(SIM_MSG_FINANCIAL, 0, 1000);
    struct sim_effects e;
    decide_rc(&w, &r, "65", &e);
    assert_string_equal(e.rule, "wallet_daily_count");
    w.daily_count_limit = -1;
    decide_rc(&w, &r, "61", &e);
    assert_string_equal(e.rule, "wallet_daily_amount");
    w.daily_limit_minor = -1;
    decide_rc(&w, &r, "61", &e);
    assert_string_equal(e.rule, "tier_debit_daily");
    w.debit_daily_limit_minor = -1;
    decide_rc(&w, &r, "61", &e);
    assert_string_equal(e.rule, "tier_debit_monthly");
    w.debit_monthly_limit_minor = -1;
    decide_rc(&w, &r, "51", &e);
    assert_null(e.rule);
}

/* The balance cap: a credit that takes the balance exactly to the cap is approved, one minor unit
 * more is declined 57; debits are never refused by it, even on a wallet above it. */
static void test_tier_balance_cap(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    w.max_balance_minor = 500000;
    w.balance_minor = 100000;
    w.held_minor = 50000; /* holds do not change the ledger balance the cap is about */
    struct sim_request r = request(SIM_MSG_FINANCIAL, 26, 400000);
    struct sim_effects e;
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.ledger_minor, 400000);
    r.amount_minor = 400001;
    decide_rc(&w, &r, "57", &e);
    assert_string_equal(e.rule, "tier_max_balance");
    assert_int_equal(e.rule_limit, 500000);
    assert_int_equal(e.rule_would, 500001);
    assert_int_equal(e.ledger_minor, 0);
    assert_false(e.usage_set);
    r = request(SIM_MSG_FINANCIAL, 20, 400001); /* a refund too */
    decide_rc(&w, &r, "57", &e);
    /* the example: 900,000.00 MAD */
    r = request(SIM_MSG_FINANCIAL, 26, 90000000);
    decide_rc(&w, &r, "57", &e);
    /* 12 digits is still 13, before the cap */
    r.amount_minor = SIM_MAX_BALANCE;
    decide_rc(&w, &r, "13", &e);
    /* a wallet above its cap (the operator lowered it) can still spend */
    w.balance_minor = 600000;
    w.held_minor = 0;
    r = request(SIM_MSG_FINANCIAL, 0, 1000);
    decide_rc(&w, &r, "00", &e);
    r = request(SIM_MSG_FINANCIAL, 20, 1);
    decide_rc(&w, &r, "57", &e);
}

/* The tier's daily and monthly credit limits (61, named), after the cap, with their resets. */
static void test_tier_credit_limits(void **st)
{
    (void)st;
    struct sim_wallet w = wallet();
    w.max_balance_minor = 1000000;
    w.credit_daily_limit_minor = 5000;
    w.credit_monthly_limit_minor = 8000;
    memcpy(w.usage_date, "2026-11-26", 11);
    w.day_credit_minor = 4000;
    memcpy(w.usage_month, "2026-11-01", 11);
    w.month_credit_minor = 6000;
    w.usage_minor = 700; /* today's debits are carried unchanged */
    w.month_debit_minor = 900;
    struct sim_request r = request(SIM_MSG_FINANCIAL, 20, 1000);
    struct sim_effects e;
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.day_credit_minor, 5000);
    assert_int_equal(e.month_credit_minor, 7000);
    assert_int_equal(e.usage_minor, 700);
    assert_int_equal(e.month_debit_minor, 900);
    r.amount_minor = 1001;
    decide_rc(&w, &r, "61", &e);
    assert_string_equal(e.rule, "tier_credit_daily");
    assert_int_equal(e.rule_would, 5001);
    /* a new day: the daily credit counter restarts, the month's does not */
    memcpy(r.today, "2026-11-27", 11);
    r.amount_minor = 2000;
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.day_credit_minor, 2000);
    assert_int_equal(e.month_credit_minor, 8000);
    assert_int_equal(e.usage_minor, 0); /* yesterday's debits no longer count */
    r.amount_minor = 2001;
    decide_rc(&w, &r, "61", &e);
    assert_string_equal(e.rule, "tier_credit_monthly");
    assert_int_equal(e.rule_limit, 8000);
    /* a new month */
    memcpy(r.today, "2026-12-01", 11);
    memcpy(r.now_yymm, "2612", 5);
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.month_credit_minor, 2001);
    /* the cap answers before the credit limits */
    w.balance_minor = 1000000;
    r.amount_minor = 1;
    memcpy(r.today, "2026-11-26", 11);
    w.day_credit_minor = 5000;
    decide_rc(&w, &r, "57", &e);
    assert_string_equal(e.rule, "tier_max_balance");
    /* credit limits do not apply to debits */
    r = request(SIM_MSG_FINANCIAL, 0, 100);
    decide_rc(&w, &r, "00", &e);
    assert_int_equal(e.day_credit_minor, 5000);
}

static void test_de54(void **st)
{
    (void)st;
    char out[41];
    assert_int_equal(sim_format_de54(504, 100000, 97500, out), 0);
    assert_string_equal(out, "0001504C000000100000"
                             "0002504C000000097500");
    assert_int_equal(sim_format_de54(952, 0, -5, out), 0);
    assert_string_equal(out, "0001952C000000000000"
                             "0002952D000000000005");
    assert_int_equal(sim_format_de54(504, SIM_MAX_BALANCE + 1, 0, out), -1);
    assert_int_equal(sim_format_de54(0, 1, 1, out), -1);
}

static void test_request_key(void **st)
{
    (void)st;
    char k[48];
    assert_int_equal(
        sim_request_key("100001", 6, "TERM0001", 8, "000123", 6, "1126153000", 10, k, sizeof k), 0);
    assert_string_equal(k, "00000100001:TERM0001:000123:1126153000");
    assert_int_equal(
        sim_request_key("00000100001", 11, "TERM0001", 8, "000123", 6, "1126153000", 10, k, 48), 0);
    assert_string_equal(k, "00000100001:TERM0001:000123:1126153000");
    assert_int_equal(sim_request_key("1x", 2, "TERM0001", 8, "000123", 6, "1126153000", 10, k, 48),
                     -1);
    assert_int_equal(sim_request_key("1", 1, "TERM01", 6, "000123", 6, "1126153000", 10, k, 48),
                     -1);
    assert_int_equal(sim_request_key("1", 1, "TERM0001", 8, "00012", 5, "1126153000", 10, k, 48),
                     -1);
    assert_int_equal(
        sim_request_key("123456789012", 12, "TERM0001", 8, "000123", 6, "1126153000", 10, k, 48),
        -1);
}

static void test_luhn_and_seed(void **st)
{
    (void)st;
    /* the README's demo cards, in order */
    static const char *const pans[8] = { "4890010000000012", "4890020000000029", "4890030000000036",
                                         "4890040000000043", "4890010000000053", "4890010000000061",
                                         "4890010000000079", "4890010000000087" };
    struct sim_seed_spec sp;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(sim_seed_spec((uint64_t)i + 1, &sp), 0);
        assert_string_equal(sp.pan, pans[i]);
    }
    assert_int_equal(at_luhn_digit("499999000000009", 15), '8'); /* the unknown-BIN card */
    assert_int_equal(at_luhn_digit("7992739871", 10), '3');      /* the textbook example */
    assert_int_equal(sim_seed_spec(2, &sp), 0);
    assert_string_equal(sp.pin, "4321");
    assert_true(sp.ibm);
    assert_int_equal(sp.currency, 952);
    assert_int_equal(sp.balance_minor, 500000);
    assert_int_equal(sim_seed_spec(3, &sp), 0);
    assert_int_equal(sp.balance_minor, 1000);
    assert_int_equal(sp.currency, 950);
    assert_int_equal(sim_seed_spec(6, &sp), 0);
    assert_string_equal(sp.status, "lost");
    assert_int_equal(sim_seed_spec(7, &sp), 0);
    assert_string_equal(sp.expiry, "2001");
    assert_int_equal(sim_seed_spec(8, &sp), 0);
    assert_int_equal(sp.daily_limit_minor, 5000);
    assert_int_equal(sp.kyc_tier, 1);
    assert_int_equal(sim_seed_spec(2, &sp), 0);
    assert_int_equal(sp.kyc_tier, 2); /* 500,000 XOF is above basic's cap */
    assert_int_equal(sim_seed_spec(9, &sp), 0);
    assert_int_equal(sp.kyc_tier, 9); /* load wallets: no tier limit bites */
    assert_int_equal(sim_seed_spec(10, &sp), 0);
    assert_string_equal(sp.pan, "4890020000000102");
    assert_true(sp.ibm);
    assert_string_equal(sp.pin, "0424"); /* (10 * 7919 + 1234) % 10000 */
    assert_int_equal(sim_seed_spec(1000000, &sp), 0);
    assert_string_equal(sp.pan, "4890040010000009");
    assert_int_equal(sim_seed_spec(0, &sp), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purchase_approved_debits),
        cmocka_unit_test(test_auth_places_hold),
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_inquiry),
        cmocka_unit_test(test_request_checks),
        cmocka_unit_test(test_card_states),
        cmocka_unit_test(test_pin_flow),
        cmocka_unit_test(test_currency),
        cmocka_unit_test(test_limits_and_funds),
        cmocka_unit_test(test_tier_debit_limits),
        cmocka_unit_test(test_debit_check_order),
        cmocka_unit_test(test_tier_balance_cap),
        cmocka_unit_test(test_tier_credit_limits),
        cmocka_unit_test(test_de54),
        cmocka_unit_test(test_request_key),
        cmocka_unit_test(test_luhn_and_seed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
