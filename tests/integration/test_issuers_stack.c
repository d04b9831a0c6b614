/* The demo world's four wallet issuers (sw_stack with .issuers = 4): WALLET1..4, each a real
 * issuer-sim with its own port, keys, BIN and database (only that BIN's wallets, as its
 * start-up line says), routed by BIN by a real switchd. Each
 * demo card is approved by its own issuer, whose database alone moves; a card its issuer does
 * not hold is 14 from that issuer; an issuer killed declines its own cards 91 while the others
 * still approve, and after it is back the switch's reversals reach it; then atlas-reconcile
 * --issuer reconciles each issuer's journal rows with its own ledger (and the whole journal
 * against one issuer's ledger does not: the filter is what makes it hold), and atlas-settle
 * reconciles the day per issuer (--issuer ID --issuer-db CONNINFO, once per issuer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bizday.h"
#include "clock.h"
#include "db_testlib.h"
#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;

/* The README's demo cards, one per issuer, and an amount each can pay. */
static const struct {
    const char *issuer, *pan;
    uint64_t amount; /* minor units of the card's currency */
} Cards[STACK_ISSUERS_MAX] = {
    { "WALLET1", "4890010000000012", 1250 }, /* MAD 12.50 */
    { "WALLET2", "4890020000000029", 2500 }, /* XOF 2,500 */
    { "WALLET3", "4890030000000036", 100 },  /* XAF 100 */
    { "WALLET4", "4890040000000043", 5000 }, /* MRU 50.00 */
};

static int setup(void **state)
{
    struct stack_opts o = {
        .issuer = true, .issuers = STACK_ISSUERS_MAX, .issuer_timeout_ms = 1500, .wallets = 16
    };
    return stack_setup(state, &S, &o);
}

/* SELECT returning one integer on issuer id's database; -1 on error. */
static long long issuer_scalar(const char *id, const char *sql)
{
    const char *db = stack_issuer_db(&S, id);
    PGconn *c = db ? dbt_connect(db) : NULL;
    long long v = c ? dbt_scalar(c, sql) : -1;
    PQfinish(c);
    return v;
}

/* What an issuer's books hold: the sum of its balances and its ledger entries, as one number
 * that any movement changes (entries count in the high part). */
static long long books(const char *id)
{
    long long sum = issuer_scalar(id, "SELECT coalesce(sum(balance_minor), 0) FROM wallet.wallets");
    long long entries = issuer_scalar(id, "SELECT count(*) FROM wallet.ledger");
    assert_true(sum >= 0 && entries >= 0);
    return entries * 1000000000000LL + sum;
}

/* The journal rows of the request sent as sent on term that name issuer id with rc. */
static long long journaled(const char *term, const struct sim_sent *sent, const char *id,
                           const char *rc)
{
    char where[128];
    snprintf(where, sizeof where, "issuer_id = '%s' AND response_code = '%s'", id, rc);
    return stack_scalar(&S, stack_rows_sql("switch.authorizations", term, sent, where));
}

static void test_each_issuer_holds_its_own_bin(void **state)
{
    /* Of wallets 1..16: 489001 has the demo cards 1, 5-8 and 9, 13; each other BIN its demo
     * card and two load wallets (index -> BIN as issuer-sim seed has it). issuer-sim says so at
     * start. */
    static const char *const ledger[STACK_ISSUERS_MAX] = {
        "\"wallets\":7,\"bin_currency_wallets\":\"489001/504:7\"",
        "\"wallets\":3,\"bin_currency_wallets\":\"489002/952:3\"",
        "\"wallets\":3,\"bin_currency_wallets\":\"489003/950:3\"",
        "\"wallets\":3,\"bin_currency_wallets\":\"489004/929:3\"",
    };
    for (unsigned i = 0; i < STACK_ISSUERS_MAX; i++)
        assert_true(ts_file_contains(stack_issuer_log(&S, Cards[i].issuer), ledger[i]));
}

static void test_each_card_at_its_own_issuer(void **state)
{
    for (unsigned c = 0; c < STACK_ISSUERS_MAX; c++) {
        long long before[STACK_ISSUERS_MAX];
        for (unsigned i = 0; i < STACK_ISSUERS_MAX; i++)
            before[i] = books(Cards[i].issuer);
        long long balance = stack_issuer_balance(&S, Cards[c].issuer, Cards[c].pan);
        assert_true(balance > 0);
        struct sim_txn x;
        struct sim_sent sent;
        assert_string_equal(
            stack_purchase(&S, "TERM0001", Cards[c].pan, Cards[c].amount, &x, NULL, &sent), "00");
        assert_int_equal(journaled("TERM0001", &sent, Cards[c].issuer, "00"), 1);
        assert_int_equal(stack_issuer_balance(&S, Cards[c].issuer, Cards[c].pan),
                         balance - (long long)Cards[c].amount);
        for (unsigned i = 0; i < STACK_ISSUERS_MAX; i++) {
            /* Only the card's issuer holds it, and only that issuer's books moved. */
            if (i != c)
                assert_int_equal(stack_issuer_balance(&S, Cards[i].issuer, Cards[c].pan), -1);
            if (i == c)
                assert_true(books(Cards[i].issuer) != before[i]);
            else
                assert_int_equal(books(Cards[i].issuer), before[i]);
        }
    }
}

/* A Luhn-valid PAN of BIN 489003 for wallet index 19, which the stack did not seed (16). */
static void unseeded_xaf_pan(char pan[17])
{
    snprintf(pan, 17, "489003%09u", 19u);
    int sum = 0;
    for (int i = 14, dbl = 1; i >= 0; i--, dbl = !dbl) {
        int d = (pan[i] - '0') * (dbl ? 2 : 1);
        sum += d > 9 ? d - 9 : d;
    }
    pan[15] = (char)('0' + (10 - sum % 10) % 10);
    pan[16] = '\0';
}

static void test_card_not_in_its_issuers_ledger_is_14(void **state)
{
    char pan[17];
    unseeded_xaf_pan(pan);
    struct sim_txn x;
    struct sim_sent sent;
    stack_txn(&x, SIM_T_PURCHASE, pan, NULL, 100);
    snprintf(x.currency, sizeof x.currency, "950");
    assert_string_equal(stack_rc(&S, "TERM0001", &x, NULL, &sent), "14");
    assert_int_equal(journaled("TERM0001", &sent, "WALLET3", "14"), 1);
    assert_true(ts_wait_file_contains(stack_issuer_log(&S, "WALLET3"), "\"rc\":\"14\"", 5000));
}

static void test_issuer_down_declines_only_its_own_cards(void **state)
{
    pid_t *wallet3 = stack_issuer_pid(&S, "WALLET3");
    assert_non_null(wallet3);
    ts_stop(*wallet3, SIGKILL, 5000);
    *wallet3 = 0;
    long long xaf = stack_issuer_balance(&S, "WALLET3", Cards[2].pan);
    /* The first request may still find the link up and time out: 91 either way. */
    for (int round = 0; round < 2; round++) {
        for (unsigned c = 0; c < STACK_ISSUERS_MAX; c++) {
            struct sim_txn x;
            struct sim_sent sent;
            const char *want = c == 2 ? "91" : "00";
            assert_string_equal(
                stack_purchase(&S, "TERM0002", Cards[c].pan, Cards[c].amount, &x, NULL, &sent),
                want);
            assert_int_equal(journaled("TERM0002", &sent, Cards[c].issuer, want), 1);
        }
    }
    /* Back up: the switch's link signs on again, its cards are approved, and whatever reached
     * it before the kill is reversed there (the switch owes nothing once it has settled). */
    assert_int_equal(stack_start_issuer_id(&S, "WALLET3"), 0);
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, Cards[2].pan, Cards[2].amount);
    assert_string_equal(stack_rc_linked(&S, "TERM0003", &x, NULL, 10000), "00");
    assert_int_equal(stack_settle(&S, 15000), 0);
    assert_int_equal(stack_issuer_balance(&S, "WALLET3", Cards[2].pan),
                     xaf - (long long)Cards[2].amount);
}

static void test_reconcile_per_issuer(void **state)
{
    char out[400];
    assert_int_equal(stack_settle(&S, 15000), 0);
    for (unsigned i = 0; i < STACK_ISSUERS_MAX; i++) {
        snprintf(out, sizeof out, "%s/reconcile-%s.out", S.dir, Cards[i].issuer);
        int code = stack_reconcile_issuer(&S, Cards[i].issuer, out, NULL);
        if (code != 0)
            fprintf(stderr, "atlas-reconcile --issuer %s exited %d (see %s)\n", Cards[i].issuer,
                    code, out);
        assert_int_equal(code, 0);
        assert_true(ts_file_contains(out, "RECONCILED: no mismatch"));
    }
    /* The whole journal against WALLET2's ledger: the other issuers' approvals are not there. */
    snprintf(out, sizeof out, "%s/reconcile-all-vs-WALLET2.out", S.dir);
    const char *db = stack_issuer_db(&S, "WALLET2");
    const char *args[] = { "--switch-db", S.conninfo, "--issuer-db", db, NULL };
    assert_int_equal(ts_run("atlas-reconcile", args, out), 1);
    assert_true(ts_file_contains(out, "issuer does not have the approval's effect"));
    /* Bad issuer ids and --issuer with --record are usage errors, said so. */
    snprintf(out, sizeof out, "%s/reconcile-usage.out", S.dir);
    const char *bad[] = { "--issuer", "WALLET 1", NULL };
    assert_int_equal(stack_reconcile_issuer(&S, "WALLET1", out, bad), 2);
    assert_true(ts_file_contains(out, "--issuer: 1 to 32 letters"));
    const char *rec[] = { "--record", S.switch_conf, NULL };
    assert_int_equal(stack_reconcile_issuer(&S, "WALLET1", out, rec), 2);
    assert_true(ts_file_contains(out, "--issuer and --record do not go together"));
}

/* atlas-settle of today's business day (under a cutover twelve hours away from now, so that
 * every request of the test is in it whatever the time of the run) with extra arguments; its
 * exit code, its output in out. */
static int settle(const char *out, const char *const extra[])
{
    int64_t now = (int64_t)at_wall_us();
    unsigned cut = (unsigned)(((now / 3600000000) + 12) % 24) * 60;
    int64_t day = at_business_day(now, cut), y;
    unsigned m, d;
    char date[11], cutover[16];
    at_civil_from_days(day, &y, &m, &d);
    at_put_date(date, y, m, d);
    snprintf(cutover, sizeof cutover, "%02u:00", cut / 60);
    const char *args[32] = { "--date", date, "--cutover", cutover, "--switch-db", S.conninfo };
    size_t n = 6;
    for (size_t i = 0; extra[i] && n < 31; i++)
        args[n++] = extra[i];
    unlink(out);
    return ts_run("atlas-settle", args, out);
}

static void test_settle_reconciles_per_issuer(void **state)
{
    char out[400];
    snprintf(out, sizeof out, "%s/settle.out", S.dir);
    const char *extra[2 * 2 * STACK_ISSUERS_MAX + 1];
    size_t n = 0;
    for (unsigned i = 0; i < STACK_ISSUERS_MAX; i++) {
        extra[n++] = "--issuer";
        extra[n++] = Cards[i].issuer;
        extra[n++] = "--issuer-db";
        extra[n++] = stack_issuer_db(&S, Cards[i].issuer);
    }
    extra[n] = NULL;
    int code = settle(out, extra);
    if (code != 0)
        fprintf(stderr, "atlas-settle exited %d (see %s)\n", code, out);
    assert_int_equal(code, 0);
    char *text = ts_read_file(out, 0, NULL);
    assert_non_null(text);
    assert_int_equal(ts_count(text, "RECONCILED: no mismatch"), STACK_ISSUERS_MAX);
    free(text);
    assert_true(ts_file_contains(out, "with issuer WALLET3's ledger"));
    /* One issuer's ledger against every issuer's rows does not reconcile: exit 1. */
    const char *all[] = { "--issuer-db", stack_issuer_db(&S, "WALLET4"), NULL };
    assert_int_equal(settle(out, all), 1);
    /* An --issuer without its database is a usage error. */
    const char *lone[] = { "--issuer", "WALLET1", NULL };
    assert_int_equal(settle(out, lone), 2);
    assert_true(ts_file_contains(out, "--issuer WALLET1 has no --issuer-db"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_issuer_holds_its_own_bin),
        cmocka_unit_test(test_each_card_at_its_own_issuer),
        cmocka_unit_test(test_card_not_in_its_issuers_ledger_is_14),
        cmocka_unit_test(test_issuer_down_declines_only_its_own_cards),
        cmocka_unit_test(test_reconcile_per_issuer),
        cmocka_unit_test(test_settle_reconciles_per_issuer),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
