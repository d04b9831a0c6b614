/* Unit tests of libatlas_issuer: the authorization decision over a wallet snapshot (every
 * response code and its effects), DE 54 formatting, request keys, Luhn and the seed specs. */
#include "issuer.h"

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
    assert_false(e.usage_set);
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
    assert_int_equal(sim_luhn_digit("499999000000009", 15), '8'); /* the unknown-BIN card */
    assert_int_equal(sim_luhn_digit("7992739871", 10), '3');      /* the textbook example */
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
        cmocka_unit_test(test_de54),
        cmocka_unit_test(test_request_key),
        cmocka_unit_test(test_luhn_and_seed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
