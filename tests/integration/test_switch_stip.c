/* Stand-in processing (docs/switchd.md "Stand-in") with real processes: switchd decides in the
 * issuer's place when its link is down or the issuer does not answer within the request's
 * timeout — by WALLET1's rules in PostgreSQL (processing codes, per-transaction and per-card-day
 * maximum, negative file, PIN verified through hsm-sim with the PVK the switch holds); the
 * journal marks those rows; per-MTI timeouts; stand_in = off answers 91 as before; an approval
 * ("S" + 5 digits) reaches the wallet through its advice when the issuer is back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;

#define CARD1 "4890010000000012" /* active, PIN 1234, PVV */
#define CARD5 "4890010000000053" /* blocked at the issuer */
#define CARD6 "4890010000000061" /* lost */
#define CARD8 "4890010000000087" /* active */
#define CARD4 "4890040000000043" /* active, PIN 2222, PVV */
#define CARD2 "4890020000000029" /* active, PIN 4321, IBM 3624 offset, XOF */

static int setup(void **state)
{
    /* 0100s wait 2 s (timeout_ms), 0200s 0.6 s, cash (processing code 01) 3.5 s: far enough
     * apart that an answer's time tells which one applied. */
    struct stack_opts o = { .issuer = true,
                            .issuer_timeout_ms = 2000,
                            .wallets = 16,
                            .fx_rates = "fx/demo-rates.csv",
                            .extra_conf = "stand_in = on\ntimeout_ms.0200 = 600\n"
                                          "timeout_ms.cash = 3500\n" };
    if (stack_setup(state, &S, &o) != 0)
        return -1;
    /* Purchases and cash (00, 01), at most 500.00 a transaction and 800.00 a card a day, the
     * PIN verified; the issuer's non-active cards, PVVs and IBM 3624 offsets published. */
    return stack_stand_in_rules(&S, "{00,01}", 50000, 80000);
}

/* Whether switchd's /metrics says the WALLET1 link is up. */
static bool link_up(void)
{
    static char page[65536];
    return stack_http_get(S.metrics_port, "/metrics", page, sizeof page) > 0 &&
           strstr(page, "atlas_issuer_link_up{issuer=\"WALLET1\",state=\"up\"} 1");
}

/* The issuer gone and switchd's link to it down. */
static void issuer_down(void)
{
    if (S.issuer > 0) {
        ts_stop(S.issuer, SIGTERM, 5000);
        S.issuer = 0;
    }
    for (int i = 0; i < 200 && link_up(); i++)
        usleep(50 * 1000);
    assert_false(link_up());
}

/* The issuer running and switchd's link to it up (signed on): until then a request would be
 * decided in stand-in, not forwarded. */
static void issuer_up(void)
{
    if (S.issuer <= 0)
        assert_int_equal(stack_start_issuer(&S), 0);
    for (int i = 0; i < 200; i++) {
        if (link_up())
            return;
        usleep(50 * 1000);
    }
    fail_msg("the issuer link did not come up");
}

/* atlas_stand_in_total{issuer="WALLET1",result} on /metrics (0 when not there yet). */
static long long stand_in_count(const char *result)
{
    static char page[65536];
    char key[128];
    snprintf(key, sizeof key, "atlas_stand_in_total{issuer=\"WALLET1\",result=\"%s\"} ", result);
    assert_true(stack_http_get(S.metrics_port, "/metrics", page, sizeof page) > 0);
    const char *p = strstr(page, key);
    return p ? atoll(p + strlen(key)) : 0;
}

/* The journal row of the request sent as sent by term: count of rows matching where. */
static long long journal(const char *term, const struct sim_sent *sent, const char *where)
{
    return stack_scalar(&S, stack_rows_sql("switch.authorizations", term, sent, where));
}

static const char *send_card(const char *term, enum sim_type type, const char *pan, uint64_t amount,
                             const char *pin, struct sim_resp *r, struct sim_sent *sent)
{
    struct sim_txn x;
    stack_card_txn(&x, type, pan, amount);
    if (pin)
        snprintf(x.pin, sizeof x.pin, "%s", pin);
    return stack_rc(&S, term, &x, r, sent);
}

/* The issuer is gone: each rule answers with its code, and the row says stand-in decided. */
static void test_rules_with_the_issuer_down(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    issuer_down();

    /* A refund (20) is not among the processing codes allowed: 91, decided in stand-in. */
    assert_string_equal(send_card("TERM0001", SIM_T_REFUND, CARD1, 1000, NULL, &r, &sent), "91");
    assert_int_equal(journal("TERM0001", &sent, "stand_in AND response_code = '91'"), 1);

    /* A balance inquiry is never decided in stand-in (the switch holds no balance): 91 as
     * before, not marked. */
    assert_string_equal(send_card("TERM0001", SIM_T_BALANCE, CARD1, 0, NULL, &r, &sent), "91");
    assert_int_equal(journal("TERM0001", &sent, "NOT stand_in AND response_code = '91'"), 1);

    /* Over the per-transaction maximum: 61. */
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD1, 50001, NULL, &r, &sent), "61");
    assert_int_equal(journal("TERM0001", &sent,
                             "stand_in AND response_code = '61' AND outcome = 'declined'"
                             " AND auth_code IS NULL"),
                     1);
    assert_string_equal(r.auth, "");

    /* The negative file, published from the issuer's cards: blocked 62, lost 41. */
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD5, 100, NULL, &r, &sent), "62");
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD6, 100, NULL, &r, &sent), "41");

    /* ... and as the issuer maintains it: atlas-db negative add / remove. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/atlas-db --db '%s' negative add WALLET1 %s stolen >/dev/null",
             getenv("ATLAS_BIN"), S.conninfo, CARD8);
    assert_int_equal(system(cmd), 0);
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD8, 100, NULL, &r, &sent), "43");
    snprintf(cmd, sizeof cmd, "%s/atlas-db --db '%s' negative remove WALLET1 %s >/dev/null",
             getenv("ATLAS_BIN"), S.conninfo, CARD8);
    assert_int_equal(system(cmd), 0);
    assert_string_not_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD8, 50001, NULL, &r, &sent),
                            "43");

    /* A wrong PIN, verified with the PVK the switch holds (DC under the terminal's TPK): 55. */
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD1, 100, "9999", &r, &sent), "55");
    assert_int_equal(journal("TERM0001", &sent, "stand_in AND response_code = '55'"), 1);
    /* A DUKPT terminal's PIN block was never translated with the link down: stand-in cannot
     * verify it, 91 (not a decision). */
    assert_string_equal(send_card("TERM0002", SIM_T_PURCHASE, CARD1, 100, NULL, &r, &sent), "91");
    assert_int_equal(journal("TERM0002", &sent, "NOT stand_in AND response_code = '91'"), 1);
    /* An IBM 3624 card (DA with its published offset and the issuer's decimalization table). */
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD2, 100, "1111", &r, &sent), "55");
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD2, 100, NULL, &r, &sent), "00");
    assert_int_equal(r.auth[0], 'S');
    /* atlas-db refuses what is not an offset. */
    snprintf(cmd, sizeof cmd, "%s/atlas-db --db '%s' negative ibm WALLET1 %s 12x4 2>/dev/null",
             getenv("ATLAS_BIN"), S.conninfo, CARD2);
    int st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);

    /* The card's business day already holds 799.50 of stand-in approvals: 1.00 more is over
     * the 800.00 a day (61), 0.50 is not (it reaches the advice). */
    assert_int_equal(
        stack_exec(&S, "INSERT INTO switch.stand_in_decisions (request_date, acquirer_id,"
                       " terminal_id, stan, transmission_time, mti_class, issuer_id, pan_hmac,"
                       " business_day, amount_minor, currency)"
                       " SELECT current_date, '100001', 'TESTTERM', '000001', '0101000000', '020',"
                       " 'WALLET1', pan_hmac, (now() AT TIME ZONE 'UTC')::date, 79950, 504"
                       " FROM wallet.wallets WHERE pan_masked = '489001******0012'"),
        0);
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD1, 100, NULL, &r, &sent), "61");
    assert_int_equal(stack_exec(&S, "DELETE FROM switch.stand_in_decisions"
                                    " WHERE terminal_id = 'TESTTERM'"),
                     0);

    /* Counted on /metrics. */
    assert_true(stand_in_count("declined") >= 9);
}

/* An approval in stand-in: "S" + 5 digits, answered once its advice is durable; the wallet
 * is debited when the issuer comes back and the advice reaches it — exactly once. */
static void test_approval_reaches_the_wallet_through_its_advice(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    issuer_up();
    long long before = stack_balance(&S, CARD1);
    assert_true(before > 0);
    issuer_down();
    long long approved = stand_in_count("approved");

    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD1, 1234, NULL, &r, &sent), "00");
    assert_int_equal((int)strlen(r.auth), 6);
    assert_int_equal(r.auth[0], 'S');
    for (int i = 1; i < 6; i++)
        assert_true(isdigit((unsigned char)r.auth[i]));
    char where[128];
    snprintf(where, sizeof where,
             "stand_in AND outcome = 'approved' AND auth_code = '%s' AND issuer_stan IS NOT NULL",
             r.auth);
    assert_int_equal(journal("TERM0001", &sent, where), 1);
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.inflight"), 0);
    assert_int_equal(stack_balance(&S, CARD1), before); /* the issuer is down: not yet */

    assert_int_equal(stand_in_count("approved"), approved + 1);

    issuer_up();
    assert_true(stack_wait_balance(&S, CARD1, before - 1234, 20000));
    sleep(1);
    assert_int_equal(stack_balance(&S, CARD1), before - 1234); /* once */
}

/* The maxima are in the card's billing currency: 40,000 XOF on a MAD card bills 673.11 MAD
 * (DE 6), over the 500.00 per transaction although DE 4 is below 50,000 (61); 20,000 XOF bills
 * 336.55 MAD, approved, and its reservation counts 33,655 MAD minor units. */
static void test_maxima_in_the_billing_currency(void **state)
{
    (void)state;
    struct sim_txn x;
    struct sim_resp r;
    struct sim_sent sent;
    struct stack_fx_fields fx;
    issuer_down();
    stack_card_txn(&x, SIM_T_PURCHASE, CARD1, 40000);
    snprintf(x.currency, sizeof x.currency, "952");
    assert_int_equal(stack_send_fx(&S, stack_term(&S, "TERM0001"), &x, &r, &sent, &fx), 0);
    assert_string_equal(r.rc, "61");
    assert_string_equal(fx.de51, "504");
    assert_true(atol(fx.de6) > 50000);
    assert_int_equal(journal("TERM0001", &sent, "stand_in AND billing_amount_minor > 50000"), 1);
    stack_card_txn(&x, SIM_T_PURCHASE, CARD1, 20000);
    snprintf(x.currency, sizeof x.currency, "952");
    assert_int_equal(stack_send_fx(&S, stack_term(&S, "TERM0001"), &x, &r, &sent, &fx), 0);
    assert_string_equal(r.rc, "00");
    assert_int_equal(r.auth[0], 'S');
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT (amount_minor = %ld AND currency = 504)::int FROM switch.stand_in_decisions"
             " WHERE terminal_id = 'TERM0001' AND stan = '%s' AND transmission_time = '%s'",
             atol(fx.de6), sent.stan, sent.de7);
    assert_int_equal(stack_scalar(&S, sql), 1);
}

/* The issuer stalls (SIGSTOP): a POS 0200 waits timeout_ms.0200 (0.6 s), a cash withdrawal
 * timeout_ms.cash (3.5 s), an 0100 timeout_ms (2 s); then stand-in decides, and the request sent
 * to the issuer keeps its reversal. The lower bounds are the timers'; the upper ones only tell
 * the three apart (a loaded machine may add a little). */
static void test_per_mti_timeouts_then_stand_in(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent pos, cash, auth;
    issuer_up();
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, CARD1, 1);
    assert_string_equal(stack_rc_linked(&S, "TERM0001", &x, &r, 10000), "00");
    assert_int_equal(stack_kill(S.issuer, SIGSTOP), 0);

    uint64_t t0 = at_mono_ns() / 1000000;
    const char *pos_rc = send_card("TERM0001", SIM_T_PURCHASE, CARD1, 60000, NULL, &r, &pos);
    uint64_t pos_ms = at_mono_ns() / 1000000 - t0;
    assert_string_equal(pos_rc, "61");
    t0 = at_mono_ns() / 1000000;
    const char *cash_rc = send_card("TERM0001", SIM_T_CASH, CARD1, 60000, NULL, &r, &cash);
    uint64_t cash_ms = at_mono_ns() / 1000000 - t0;
    assert_string_equal(cash_rc, "61");
    t0 = at_mono_ns() / 1000000;
    const char *auth_rc = send_card("TERM0001", SIM_T_AUTH, CARD1, 60000, NULL, &r, &auth);
    uint64_t auth_ms = at_mono_ns() / 1000000 - t0;
    assert_string_equal(auth_rc, "61");
    stack_kill(S.issuer, SIGCONT);
    printf("# POS answered after %llu ms, cash after %llu ms, 0100 after %llu ms\n",
           (unsigned long long)pos_ms, (unsigned long long)cash_ms, (unsigned long long)auth_ms);
    assert_true(pos_ms >= 550 && pos_ms < 1900);
    assert_true(cash_ms >= 3450 && cash_ms < 4900);
    assert_true(auth_ms >= 1950 && auth_ms < 3400);
    assert_int_equal(journal("TERM0001", &pos, "stand_in AND response_code = '61'"), 1);
    assert_int_equal(journal("TERM0001", &cash, "stand_in AND response_code = '61'"), 1);
    assert_int_equal(journal("TERM0001", &auth, "stand_in AND response_code = '61'"), 1);
    /* What was forwarded before the timeout is reversed, as without stand-in. */
    assert_int_equal(stack_wait_scalar(&S,
                                       stack_rows_sql("switch.reversal_queue", "TERM0001", &pos,
                                                      "reason = 'timeout'"),
                                       1, 10000),
                     0);
    assert_int_equal(stack_settle(&S, 20000), 0);
}

/* The issuer stalls past the 0200's timeout: stand-in approves (PIN verified with the translated
 * block under the ZPK: EC), the request already sent keeps its reversal; once the issuer runs
 * again it applies the request, its reversal and the advice — the wallet ends exactly one
 * purchase lower. */
static void test_slow_issuer_stand_in_approval_nets_once(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    issuer_up();
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, CARD8, 1);
    assert_string_equal(stack_rc_linked(&S, "TERM0001", &x, &r, 10000), "00");
    assert_int_equal(stack_settle(&S, 10000), 0);
    long long before = stack_balance(&S, CARD8);
    assert_int_equal(stack_kill(S.issuer, SIGSTOP), 0);
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD8, 300, NULL, &r, &sent), "00");
    assert_int_equal(r.auth[0], 'S');
    stack_kill(S.issuer, SIGCONT);
    assert_int_equal(journal("TERM0001", &sent, "stand_in AND outcome = 'approved'"), 1);
    assert_int_equal(stack_wait_scalar(&S,
                                       stack_rows_sql("switch.reversal_queue", "TERM0001", &sent,
                                                      "reason = 'timeout'"),
                                       1, 10000),
                     0);
    assert_int_equal(stack_settle(&S, 20000), 0);
    assert_true(stack_wait_balance(&S, CARD8, before - 300, 20000));
    sleep(1);
    assert_int_equal(stack_balance(&S, CARD8), before - 300);
}

/* Two stand-in purchases of one card at once whose sum passes the day's maximum (800.00): the
 * per-card lock lets exactly one through. */
static void test_concurrent_requests_of_one_card_share_the_day_maximum(void **state)
{
    (void)state;
    struct sim_txn x[2];
    struct sim_sent sent[2];
    struct sim_resp r[2];
    int fd[2];
    issuer_down();
    for (int i = 0; i < 2; i++) {
        stack_card_txn(&x[i], SIM_T_PURCHASE, CARD4, 45000);
        fd[i] = stack_send_nowait(&S, stack_term(&S, i ? "TERM0004" : "TERM0001"), &x[i], &sent[i]);
        assert_true(fd[i] >= 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(stack_recv(fd[i], stack_term(&S, i ? "TERM0004" : "TERM0001"), &r[i]), 0);
        close(fd[i]);
    }
    int approved = !strcmp(r[0].rc, "00") + !strcmp(r[1].rc, "00");
    int over = !strcmp(r[0].rc, "61") + !strcmp(r[1].rc, "61");
    printf("# answers %s and %s\n", r[0].rc, r[1].rc);
    assert_int_equal(approved, 1);
    assert_int_equal(over, 1);
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.stand_in_decisions d JOIN"
                                      " wallet.wallets w USING (pan_hmac)"
                                      " WHERE w.pan_masked = '489004******0043'"
                                      " AND d.state = 'reserved'"),
                     1);
}

/* A terminal reverses (0400) a stand-in approval: the advice and its reversal reach the
 * issuer, and the wallet is where it was. An 0100 in stand-in becomes a hold (0120). */
static void test_reversed_stand_in_approval_nets_to_zero_and_auth_holds(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent, auth;
    issuer_up();
    assert_int_equal(stack_settle(&S, 20000), 0);
    long long before = stack_balance(&S, CARD1);
    long long held = stack_wallet_scalar(&S, CARD1, "held_minor");
    issuer_down();
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD1, 700, NULL, &r, &sent), "00");
    struct sim_txn rev;
    stack_reversal_of(&rev, CARD1, 700, &sent);
    assert_string_equal(stack_rc(&S, "TERM0001", &rev, &r, NULL), "00");
    assert_string_equal(send_card("TERM0001", SIM_T_AUTH, CARD1, 500, NULL, &r, &auth), "00");
    assert_int_equal(r.auth[0], 'S');
    assert_int_equal(journal("TERM0001", &auth, "stand_in AND mti = '0100'"), 1);
    issuer_up();
    assert_int_equal(stack_settle(&S, 20000), 0);
    assert_int_equal(stack_wait_scalar(&S,
                                       "SELECT count(*) FROM switch.advice_queue"
                                       " WHERE state = 'pending'",
                                       0, 20000),
                     0);
    sleep(1);
    assert_int_equal(stack_balance(&S, CARD1), before);
    assert_int_equal(stack_wallet_scalar(&S, CARD1, "held_minor"), held + 500);
}

/* switchd killed (kill -9) right after a stand-in approval, the issuer still away: after the
 * restart the duplicate table is empty, yet the repeat (0201) is answered from the journal with
 * the same "S" code and no second decision — and so is the repeat of what the issuer approved
 * itself before it went away; the wallet is debited once when the issuer returns. */
static void test_kill9_after_stand_in_approval_then_repeat(void **state)
{
    (void)state;
    struct sim_txn x, y;
    struct sim_resp r, r2, ry;
    struct sim_sent sent, sent_y;
    issuer_up();
    /* One the issuer approved itself, before it went away. */
    stack_card_txn(&y, SIM_T_PURCHASE, CARD8, 1);
    assert_string_equal(stack_rc_linked(&S, "TERM0001", &y, &ry, 10000), "00");
    assert_string_equal(stack_purchase(&S, "TERM0001", CARD8, 100, &y, &ry, &sent_y), "00");
    assert_int_not_equal(ry.auth[0], 'S');
    assert_int_equal(stack_settle(&S, 20000), 0);
    long long before = stack_balance(&S, CARD8);
    issuer_down();
    assert_string_equal(stack_purchase(&S, "TERM0001", CARD8, 200, &x, &r, &sent), "00");
    assert_int_equal(r.auth[0], 'S');
    assert_int_not_equal(stack_restart_switch(&S, SIGKILL), -1);
    stack_repeat_of(&x, "0201", &sent);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r2, NULL), "00");
    assert_string_equal(r2.auth, r.auth);
    /* The issuer's own approval, repeated now: its answer from the journal, not a stand-in. */
    stack_repeat_of(&y, "0201", &sent_y);
    assert_string_equal(stack_rc(&S, "TERM0001", &y, &r2, NULL), "00");
    assert_string_equal(r2.auth, ry.auth);
    /* And a copy of the 0200 itself: 94, not a second stand-in approval. */
    memcpy(x.mti, "0200", 5);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r2, NULL), "94");
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.advice_queue"
                                      " WHERE kind = 'advice' AND amount_minor = 200"),
                     1);
    issuer_up();
    assert_true(stack_wait_balance(&S, CARD8, before - 200, 20000));
    sleep(1);
    assert_int_equal(stack_balance(&S, CARD8), before - 200);
}

/* PostgreSQL is away: stand-in cannot read its rules, so no stand-in — 91, as before. */
static void test_database_down_no_stand_in(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    issuer_down();
    assert_int_equal(stack_switch_db(&S, false), 0);
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD1, 100, NULL, &r, &sent), "91");
    assert_string_equal(r.auth, "");
    assert_int_equal(stack_switch_db(&S, true), 0);
    assert_int_equal(stack_wait_journal_up(&S, 20000), 0);
    /* The 91 was spooled and replayed: not marked (stand-in decided nothing). */
    assert_int_equal(stack_wait_scalar(&S,
                                       stack_rows_sql("switch.authorizations", "TERM0001", &sent,
                                                      "NOT stand_in AND response_code = '91'"),
                                       1, 20000),
                     0);
}

/* stand_in = off: 91 at once with the issuer down, as before stand-in; the row is not marked. */
static void test_stand_in_off_answers_91(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    char cmd[800];
    snprintf(cmd, sizeof cmd, "sed -i 's/^stand_in = on$/stand_in = off/' '%s'", S.switch_conf);
    assert_int_equal(system(cmd), 0);
    assert_int_not_equal(stack_restart_switch(&S, SIGTERM), -1);
    issuer_down();
    assert_string_equal(send_card("TERM0001", SIM_T_PURCHASE, CARD1, 100, NULL, &r, &sent), "91");
    assert_int_equal(journal("TERM0001", &sent, "NOT stand_in AND response_code = '91'"), 1);
    issuer_up();
}

/* Everything this program did — stand-in approvals with their advices, reversed ones, holds,
 * timeouts with their reversals, declines, repeats across a kill -9 — reconciles with the
 * wallets (atlas-reconcile reads the advices). */
static void test_everything_reconciles(void **state)
{
    (void)state;
    issuer_up();
    assert_int_equal(stack_settle(&S, 30000), 0);
    char out[400];
    snprintf(out, sizeof out, "%s/reconcile.out", S.dir);
    const char *extra[] = { "--from", "2000-01-01T00:00:00Z", NULL };
    int code = stack_reconcile(&S, out, extra);
    if (code != 0)
        printf("# atlas-reconcile exit %d, see %s\n", code, out);
    assert_int_equal(code, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_with_the_issuer_down),
        cmocka_unit_test(test_approval_reaches_the_wallet_through_its_advice),
        cmocka_unit_test(test_maxima_in_the_billing_currency),
        cmocka_unit_test(test_per_mti_timeouts_then_stand_in),
        cmocka_unit_test(test_slow_issuer_stand_in_approval_nets_once),
        cmocka_unit_test(test_concurrent_requests_of_one_card_share_the_day_maximum),
        cmocka_unit_test(test_reversed_stand_in_approval_nets_to_zero_and_auth_holds),
        cmocka_unit_test(test_kill9_after_stand_in_approval_then_repeat),
        cmocka_unit_test(test_database_down_no_stand_in),
        cmocka_unit_test(test_stand_in_off_answers_91),
        cmocka_unit_test(test_everything_reconciles),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
