/* Stand-in advices (switch/advice.c, docs/switchd.md "Advices") with real processes: switchd,
 * hsm-sim, issuer-sim, PostgreSQL. Until the stand-in decision itself (stip) is merged, the
 * advices are put in switch.advice_queue as switchd's journal writer would have left them (rows
 * with the card sealed and hashed under the stack's keys) and switchd is restarted to take them
 * over, as it does after a crash; the terminal's reversal of a stand-in approval goes through
 * switchd's own path (a journal row of the stand-in approval stands for the decision). Each test
 * checks the issuer's wallet to the minor unit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "currency.h"
#include "db.h"
#include "hex.h"
#include "log.h"
#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;
/* The queue times of a test's advices are Base_us + their order in ms (set per test). */
static long long Base_us;

static const char *const PAN = "4890010000000012";

/* WALLET1 decides its outages in stand-in (docs/switchd.md "Stand-in"): purchases up to 500.00,
 * 800.00 a card a day, the PIN verified with the lab PVK (as test_switch_stip sets it up). */
static const char RULES[] =
    "INSERT INTO switch.keys (key_id, key_type, scheme, key_under_lmk, kcv) VALUES"
    " ('WALLET1.PVK', 'PVK', 'TDES-2KEY', 'U1750CDFB0757D3B3994430636DBB281B', '08D7B4')"
    " ON CONFLICT DO NOTHING;"
    "INSERT INTO switch.stand_in_rules (issuer_id, processing_codes, max_amount_minor,"
    " max_daily_minor, verify_pin, pvk_key_id) VALUES ('WALLET1', '{00,01}', 50000, 80000, true,"
    " 'WALLET1.PVK');"
    "INSERT INTO switch.stand_in_pvv (issuer_id, pan_hmac, pvki, pvv)"
    " SELECT 'WALLET1', pan_hmac, pvki, pvv FROM wallet.wallets WHERE pin_method = 'pvv';";

static int setup(void **state)
{
    struct stack_opts o = {
        .issuer = true, .issuer_timeout_ms = 1500, .wallets = 16, .extra_conf = "stand_in = on\n"
    };
    if (stack_setup(state, &S, &o) != 0)
        return -1;
    return stack_exec(&S, RULES);
}

/* Each test starts with switchd and issuer-sim running, switchd reaching its database. */
static int alive(void **state)
{
    (void)state;
    if (stack_switch_db(&S, true) != 0)
        return -1;
    if (!ts_alive(S.sw) && stack_start_switch(&S) != 0)
        return -1;
    if (S.issuer <= 0 && stack_start_issuer(&S) != 0)
        return -1;
    Base_us = (long long)time(NULL) * 1000000;
    return stack_wait_journal_up(&S, 10000);
}

static void stop_issuer(void)
{
    ts_stop(S.issuer, SIGKILL, 5000);
    S.issuer = 0;
}

static void restart_switch(int sig)
{
    assert_int_not_equal(stack_restart_switch(&S, sig), -1);
}

/* The ISO 4217 numeric currency of PAN's demo card. */
static int card_currency(void)
{
    const struct sim_demo_card *c = sim_demo_card_find(PAN);
    assert_non_null(c);
    const struct at_currency *cur = at_currency_find(c->currency);
    assert_non_null(cur);
    return atoi(cur->numeric);
}

/* key (64 hex characters in the environment variable var, as the stack exports it) into out. */
static void env_key(const char *var, uint8_t out[32])
{
    const char *hex = getenv(var);
    assert_non_null(hex);
    assert_int_equal(at_hex_decode(hex, 64, out, 32), 32);
}

/* The DE 7 of now (UTC MMDDhhmmss). */
static void de7_now(char out[11])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 11, "%m%d%H%M%S", &tm);
}

struct advice_row {
    const char *kind;   /* "advice" or "reversal" */
    const char *reason; /* stand_in, withdrawn, terminal, recovery */
    const char *stan;   /* the stand-in request's DE 11 (TERM0001's) */
    const char *issuer_stan;
    long long amount;
    const char *auth;  /* S + 5 digits */
    int order;         /* queued_at = Base_us + order ms */
    const char *owner; /* "test": not this switchd's, so its recovery leaves it alone */
    const char *de7;   /* the stand-in request's DE 7 (and the advice's) */
    const char *pan;   /* NULL: PAN */
};

/* The journal row of the stand-in approval of TERM0001's request stan (DE 7 de7): approved with
 * code auth, naming the advice's issuer STAN and DE 7 (as switchd journals it). */
static void journal_stand_in(const char *stan, const char *de7, const char *issuer_stan,
                             long long amount, const char *auth)
{
    char sql[1200];
    snprintf(sql, sizeof sql,
             "INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,"
             " transmission_time, mti, rrn, issuer_id, issuer_stan, issuer_transmission_time,"
             " processing_code, amount_minor, currency, response_code, auth_code, pan_masked,"
             " outcome, created_at) VALUES ((now() AT TIME ZONE 'UTC')::date, '100001',"
             " 'TERM0001', '%s', '%s', '0200', '000000%s', 'WALLET1', '%s', '%s', '000000', %lld,"
             " %d, '00', '%s', '489001******0012', 'approved', now())",
             stan, de7, stan, issuer_stan, de7, amount, card_currency(), auth);
    assert_int_equal(stack_exec(&S, sql), 0);
}

/* Puts r in switch.advice_queue as switchd's journal writer would (a 0200's advice, PAN sealed
 * and hashed under the stack's keys). */
static void insert_advice(const struct advice_row *r)
{
    uint8_t seal_key[32], hmac_key[32], hmac[32], sealed[DB_PAN_SEALED_MAX];
    char hmac_hex[65], sealed_hex[2 * DB_PAN_SEALED_MAX + 1], sql[2400], masked[20];
    env_key("ATLAS_PAN_SEAL_KEY", seal_key);
    env_key("ATLAS_PAN_HMAC_KEY", hmac_key);
    const char *pan = r->pan ? r->pan : PAN;
    assert_int_equal(db_pan_hmac(hmac_key, 32, pan, strlen(pan), hmac), 0);
    int n = db_pan_seal(seal_key, pan, strlen(pan), sealed, sizeof sealed);
    assert_true(n > 0);
    at_hex_encode(hmac, 32, hmac_hex);
    at_hex_encode(sealed, (size_t)n, sealed_hex);
    at_mask_pan(pan, strlen(pan), masked);
    snprintf(sql, sizeof sql,
             "INSERT INTO switch.advice_queue (kind, request_date, acquirer_id, terminal_id, stan,"
             " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time, rrn,"
             " processing_code, amount_minor, currency, auth_code, stand_in_rc, pan_masked,"
             " pan_hmac, pan_sealed, reason, owner, queued_at) VALUES ('%s',"
             " (now() AT TIME ZONE 'UTC')::date, '100001', 'TERM0001', '%s', '%s', '0200',"
             " 'WALLET1', '%s', '%s', '000000%s', '000000', %lld, %d, '%s', %s, '%s',"
             " decode('%s', 'hex'), decode('%s', 'hex'), '%s', '%s',"
             " to_timestamp(%lld / 1000000.0))",
             r->kind, r->stan, r->de7, r->issuer_stan, r->de7, r->stan, r->amount, card_currency(),
             r->auth, strcmp(r->kind, "advice") == 0 ? "'00'" : "NULL", masked, hmac_hex,
             sealed_hex, r->reason, r->owner, Base_us + r->order * 1000LL);
    assert_int_equal(stack_exec(&S, sql), 0);
    /* The approval the advice stands for, journaled before the terminal got it (not for this
     * switchd's own rows: those test what happens when the journal does not have it). */
    if (strcmp(r->kind, "advice") == 0 && strcmp(r->owner, "switchd") != 0)
        journal_stand_in(r->stan, r->de7, r->issuer_stan, r->amount, r->auth);
}

static long long q(const char *fmt, ...)
{
    char sql[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return stack_scalar(&S, sql);
}

static int wait_q(long long want, int timeout_ms, const char *sql)
{
    return stack_wait_scalar(&S, sql, want, timeout_ms);
}

/* Advices stored while the issuer is down are held (nothing applied), taken over by a switchd
 * killed with -9, delivered when the issuer returns — in queue order, not insertion order — each
 * applied once: the wallet moves by exactly their sum. */
static void test_delivered_in_order_when_the_issuer_returns(void **state)
{
    (void)state;
    char de7[11];
    de7_now(de7);
    long long b = stack_balance(&S, PAN);
    assert_true(b > 1000);
    stop_issuer();
    /* inserted 3rd, 1st, 2nd in queue order */
    insert_advice(&(struct advice_row){ "advice", "stand_in", "700003", "900003", 300, "S10003", 30,
                                        "test", de7, NULL });
    insert_advice(&(struct advice_row){ "advice", "stand_in", "700001", "900001", 100, "S10001", 10,
                                        "test", de7, NULL });
    insert_advice(&(struct advice_row){ "advice", "stand_in", "700002", "900002", 200, "S10002", 20,
                                        "test", de7, NULL });
    restart_switch(SIGKILL);
    sleep(1);
    assert_int_equal(q("SELECT count(*) FROM switch.advice_queue WHERE auth_code LIKE 'S1000_'"
                       " AND state = 'pending'"),
                     3);
    assert_int_equal(stack_balance(&S, PAN), b);
    assert_int_equal(stack_start_issuer(&S), 0);
    assert_int_equal(wait_q(3, 15000,
                            "SELECT count(*) FROM switch.advice_queue WHERE auth_code LIKE"
                            " 'S1000_' AND state = 'acked' AND last_response_code = '00'"),
                     0);
    assert_int_equal(stack_balance(&S, PAN), b - 600);
    /* one ledger entry each, in queue order */
    assert_int_equal(q("SELECT count(*) FROM wallet.ledger WHERE auth_code LIKE 'S1000_'"), 3);
    assert_int_equal(q("SELECT count(*) FROM (SELECT amount_minor, lag(amount_minor) OVER"
                       " (ORDER BY entry_id) AS prev FROM wallet.ledger WHERE auth_code LIKE"
                       " 'S1000_') x WHERE prev IS NOT NULL AND amount_minor < prev"),
                     2); /* -100, -200, -300: each entry below the one before */
    assert_int_equal(q("SELECT count(*) FROM wallet.invariant_violations"), 0);
    assert_true(ts_wait_file_contains(S.switch_log, "\"event\":\"advice_acknowledged\"", 5000));
}

/* The issuer applied an advice but its acknowledgement never made it into the queue (switchd
 * lost its database, then was killed -9): the next switchd sends it again, the issuer answers
 * the repeat from its record, and the wallet is debited once. */
static void test_resent_after_a_lost_ack_is_applied_once(void **state)
{
    (void)state;
    char de7[11];
    de7_now(de7);
    long long b = stack_balance(&S, PAN);
    stop_issuer();
    insert_advice(&(struct advice_row){ "advice", "stand_in", "700020", "900020", 250, "S10020", 0,
                                        "test", de7, NULL });
    restart_switch(SIGKILL); /* takes it over */
    assert_int_equal(stack_switch_db(&S, false), 0);
    assert_int_equal(stack_start_issuer(&S), 0);
    /* applied at the issuer; switchd got the 0230 but cannot record it */
    assert_int_equal(
        wait_q(1, 15000, "SELECT count(*) FROM wallet.ledger WHERE auth_code = 'S10020'"), 0);
    assert_true(
        ts_wait_file_contains(S.switch_log, "\"issuer_stan\":\"900020\",\"attempts\"", 5000));
    /* killed before it could record the acknowledgement; the next one reaches its database */
    ts_stop(S.sw, SIGKILL, 5000);
    assert_int_equal(stack_switch_db(&S, true), 0);
    assert_int_equal(stack_start_switch(&S), 0);
    assert_int_equal(wait_q(1, 15000,
                            "SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10020'"
                            " AND state = 'acked'"),
                     0);
    assert_int_equal(stack_balance(&S, PAN), b - 250);
    assert_int_equal(q("SELECT count(*) FROM wallet.ledger WHERE auth_code = 'S10020'"), 1);
    /* sent twice (the killed switchd's log may have lost its line), applied once: the issuer
     * answered the second from its record */
    assert_true(ts_wait_file_contains(
        S.issuer_log, "\"stan\":\"900020\",\"rc\":\"00\",\"outcome\":\"duplicate\"", 5000));
}

/* The issuer is killed (-9) after it applied an advice and before its 0230 left: the test holds
 * the wallet's row lock so that the advice waits inside the issuer's transaction, stops hsm-sim,
 * lets the advice commit — the issuer then waits for hsm-sim to MAC its answer — and kills the
 * issuer. The restarted issuer gets the 0221 repeat (same STAN and DE 7), answers it from its
 * record, and the wallet is debited once. */
static void test_issuer_killed_after_applying(void **state)
{
    (void)state;
    char de7[11];
    de7_now(de7);
    long long b = stack_balance(&S, PAN);
    long long wallet = stack_wallet_scalar(&S, PAN, "wallet_id");
    assert_true(wallet > 0);
    PGconn *lock = PQconnectdb(S.conninfo);
    assert_int_equal(PQstatus(lock), CONNECTION_OK);
    char sql[300];
    snprintf(sql, sizeof sql,
             "BEGIN; SELECT 1 FROM wallet.wallets WHERE wallet_id = %lld FOR UPDATE", wallet);
    PGresult *r = PQexec(lock, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    stop_issuer();
    insert_advice(&(struct advice_row){ "advice", "stand_in", "700070", "900070", 330, "S10070", 0,
                                        "test", de7, NULL });
    restart_switch(SIGKILL);
    assert_int_equal(stack_start_issuer(&S), 0);
    /* the advice is inside wallet.sim_advice, waiting for the row (in this test's database: ctest
     * runs other tests on the cluster at the same time) */
    assert_int_equal(wait_q(1, 15000,
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND query LIKE '%sim_advice%' AND datname = current_database()"),
                     0);
    assert_int_equal(stack_kill(S.hsm, SIGSTOP), 0);
    r = PQexec(lock, "COMMIT");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(lock);
    assert_int_equal(
        wait_q(1, 15000, "SELECT count(*) FROM wallet.ledger WHERE auth_code = 'S10070'"), 0);
    usleep(200 * 1000); /* its answer waits for the M6 hsm-sim will never give it */
    stop_issuer();
    assert_int_equal(stack_kill(S.hsm, SIGCONT), 0);
    assert_int_equal(q("SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10070'"
                       " AND state = 'pending'"),
                     1);
    assert_int_equal(stack_start_issuer(&S), 0);
    assert_int_equal(wait_q(1, 20000,
                            "SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10070'"
                            " AND state = 'acked'"),
                     0);
    assert_int_equal(stack_balance(&S, PAN), b - 330);
    assert_int_equal(q("SELECT count(*) FROM wallet.ledger WHERE auth_code = 'S10070'"), 1);
    assert_true(ts_wait_file_contains(
        S.switch_log, "\"issuer_stan\":\"900070\",\"attempt\":2,\"mti\":\"0221\"", 5000));
    assert_true(ts_file_contains(S.issuer_log, "\"mti\":\"0221\""));
}

/* A withdrawn stand-in approval: its advice and the advice's reversal behind it both reach the
 * issuer, which applies the one and takes it back — the wallet nets to zero. */
static void test_withdrawn_advice_nets_to_zero(void **state)
{
    (void)state;
    char de7[11];
    de7_now(de7);
    long long b = stack_balance(&S, PAN);
    stop_issuer();
    insert_advice(&(struct advice_row){ "advice", "stand_in", "700030", "900030", 400, "S10030", 0,
                                        "test", de7, NULL });
    insert_advice(&(struct advice_row){ "reversal", "withdrawn", "700030", "900030", 400, "S10030",
                                        1, "test", de7, NULL });
    restart_switch(SIGKILL);
    assert_int_equal(stack_start_issuer(&S), 0);
    assert_int_equal(wait_q(2, 15000,
                            "SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10030'"
                            " AND state = 'acked'"),
                     0);
    assert_int_equal(stack_balance(&S, PAN), b);
    assert_int_equal(q("SELECT count(*) FROM wallet.ledger WHERE auth_code = 'S10030'"), 1);
    assert_int_equal(q("SELECT count(*) FROM wallet.ledger l JOIN wallet.ledger o"
                       " ON l.reverses_entry_id = o.entry_id WHERE o.auth_code = 'S10030'"),
                     1);
}

/* An advice of this switchd whose stand-in approval the journal does not hold (it stopped
 * between the two commits: the terminal was never approved) is reversed at the next start. */
static void test_unjournaled_advice_is_reversed_at_start(void **state)
{
    (void)state;
    char de7[11];
    de7_now(de7);
    long long b = stack_balance(&S, PAN);
    insert_advice(&(struct advice_row){ "advice", "stand_in", "700040", "900040", 450, "S10040", 0,
                                        "switchd", de7, NULL });
    restart_switch(SIGKILL);
    assert_int_equal(wait_q(2, 15000,
                            "SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10040'"
                            " AND state = 'acked'"),
                     0);
    assert_int_equal(q("SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10040'"
                       " AND kind = 'reversal' AND reason = 'recovery'"),
                     1);
    assert_int_equal(stack_balance(&S, PAN), b);
}

/* The terminal reverses a stand-in approval (its journal row names the advice): switchd
 * acknowledges the 0420 once the advice's reversal is durable and sends it behind the advice;
 * the wallet nets to zero. A repeat of the reversal changes nothing. */
static void test_terminal_reversal_of_a_stand_in(void **state)
{
    (void)state;
    char de7[11];
    de7_now(de7);
    long long b = stack_balance(&S, PAN);
    insert_advice(&(struct advice_row){ "advice", "stand_in", "700050", "900050", 500, "S10050", 0,
                                        "test", de7, NULL });
    restart_switch(SIGKILL);
    assert_int_equal(wait_q(1, 15000,
                            "SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10050'"
                            " AND state = 'acked'"),
                     0);
    assert_int_equal(stack_balance(&S, PAN), b - 500);
    struct sim_sent orig = { 0 };
    snprintf(orig.stan, sizeof orig.stan, "700050");
    snprintf(orig.de7, sizeof orig.de7, "%s", de7);
    struct sim_txn rev;
    stack_reversal_of(&rev, PAN, 500, &orig);
    for (int k = 0; k < 2; k++)
        assert_string_equal(stack_rc(&S, "TERM0001", &rev, NULL, NULL), "00");
    assert_int_equal(wait_q(2, 15000,
                            "SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10050'"
                            " AND state = 'acked'"),
                     0);
    assert_int_equal(q("SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10050'"
                       " AND kind = 'reversal' AND reason = 'terminal'"),
                     1);
    /* not through the reversal queue, which could send it before the advice */
    assert_int_equal(q("SELECT count(*) FROM switch.reversal_queue WHERE issuer_stan = '900050'"),
                     0);
    assert_int_equal(stack_balance(&S, PAN), b);
    assert_int_equal(q("SELECT count(*) FROM wallet.invariant_violations"), 0);
}

/* End to end with the stand-in decision (stip): the issuer is down, switchd approves three
 * purchases in its place (S codes) and the terminal reverses the second; when the issuer returns
 * it receives the three advices in the order they were decided and the reversal of the second
 * behind it; the wallet moves by exactly the two that stand. */
static void test_stand_in_outage_end_to_end(void **state)
{
    (void)state;
    long long b = stack_balance(&S, PAN);
    stop_issuer();
    usleep(300 * 1000); /* switchd sees the link drop */
    static const uint64_t amounts[3] = { 1100, 2200, 3300 };
    struct sim_sent sent[3];
    struct sim_resp r[3];
    for (int i = 0; i < 3; i++) {
        struct sim_txn x;
        stack_card_txn(&x, SIM_T_PURCHASE, PAN, amounts[i]);
        assert_string_equal(stack_rc(&S, "TERM0001", &x, &r[i], &sent[i]), "00");
        assert_int_equal(r[i].auth[0], 'S');
    }
    struct sim_txn rev;
    stack_reversal_of(&rev, PAN, amounts[1], &sent[1]);
    assert_string_equal(stack_rc(&S, "TERM0001", &rev, NULL, NULL), "00");
    assert_int_equal(q("SELECT count(*) FROM switch.advice_queue WHERE state = 'pending'"
                       " AND owner = 'switchd' AND amount_minor IN (1100, 2200, 3300)"),
                     4);
    assert_int_equal(stack_balance(&S, PAN), b);
    assert_int_equal(stack_start_issuer(&S), 0);
    assert_int_equal(
        wait_q(0, 20000, "SELECT count(*) FROM switch.advice_queue WHERE state <> 'acked'"), 0);
    assert_int_equal(stack_balance(&S, PAN), b - 1100 - 3300);
    /* at the issuer: 1100, 2200, 3300 applied in that order, then 2200 given back */
    char sql[600];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT string_agg(amount_minor::text, ',' ORDER BY entry_id)"
             " AS s FROM wallet.ledger WHERE auth_code IN ('%s', '%s', '%s') OR"
             " reverses_entry_id IN (SELECT entry_id FROM wallet.ledger WHERE auth_code = '%s'))"
             " x WHERE s = '-1100,-2200,-3300,2200'",
             r[0].auth, r[1].auth, r[2].auth, r[1].auth);
    assert_int_equal(q("%s", sql), 1);
    assert_int_equal(q("SELECT count(*) FROM wallet.invariant_violations"), 0);
    /* /metrics: the three advices and the reversal, nothing left */
    assert_true(stack_metric(&S, "atlas_advices_acknowledged_total") >= 4);
    assert_int_equal(stack_metric(&S, "atlas_advice_queue_pending"), 0);
}

/* atlas-reconcile over everything above: each stand-in approval's advice is acknowledged and
 * applied once, or reversed and netted to zero. Then an advice the issuer refused (parked
 * 'failed' by hand) and one still pending behind a stopped issuer are each named. */
static void test_reconciles(void **state)
{
    (void)state;
    char out[400];
    snprintf(out, sizeof out, "%s/reconcile-advice.out", S.dir);
    assert_int_equal(stack_settle(&S, 10000), 0);
    assert_int_equal(stack_reconcile(&S, out, NULL), 0);
    assert_true(ts_file_contains(out, "RECONCILED: no mismatch"));
    /* (the advice of S10040, which the journal never had, is acknowledged and reversed) */
    assert_true(
        ts_file_contains(out, "10 stand-in approvals, advices 11 acked, 0 pending, 0 failed"));

    assert_int_equal(stack_exec(&S, "UPDATE switch.advice_queue SET state = 'failed',"
                                    " last_response_code = '14' WHERE auth_code = 'S10001'"
                                    " AND kind = 'advice'"),
                     0);
    assert_int_equal(stack_reconcile(&S, out, NULL), 1);
    assert_true(ts_file_contains(out, "advice of a stand-in approval refused by the issuer (last "
                                      "rc 14)"));
    assert_int_equal(stack_exec(&S, "UPDATE switch.advice_queue SET state = 'acked'"
                                    " WHERE auth_code = 'S10001' AND kind = 'advice'"),
                     0);

    char de7[11];
    de7_now(de7);
    stop_issuer();
    insert_advice(&(struct advice_row){ "advice", "stand_in", "700060", "900060", 120, "S10060", 0,
                                        "test", de7, NULL });
    restart_switch(SIGKILL);
    assert_int_equal(stack_reconcile(&S, out, NULL), 1);
    assert_true(ts_file_contains(out, "advice not yet acknowledged"));
    const char *const allow[] = { "--allow-pending", NULL };
    assert_int_equal(stack_reconcile(&S, out, allow), 0);
    assert_int_equal(stack_start_issuer(&S), 0);
    assert_int_equal(wait_q(1, 15000,
                            "SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10060'"
                            " AND state = 'acked'"),
                     0);
    assert_int_equal(stack_reconcile(&S, out, NULL), 0);
}

/* An advice the issuer refuses for good (14: it has no wallet for the card) is parked 'failed'
 * with that code and does not hold up the issuer's next advice; atlas-reconcile names it. */
static void test_refused_advice_does_not_block_the_next(void **state)
{
    (void)state;
    char de7[11];
    de7_now(de7);
    long long b = stack_balance(&S, PAN);
    stop_issuer();
    insert_advice(&(struct advice_row){ "advice", "stand_in", "700080", "900080", 10, "S10080", 0,
                                        "test", de7, "4000009999999999" });
    insert_advice(&(struct advice_row){ "advice", "stand_in", "700081", "900081", 20, "S10081", 1,
                                        "test", de7, NULL });
    restart_switch(SIGKILL);
    assert_int_equal(stack_start_issuer(&S), 0);
    assert_int_equal(wait_q(1, 15000,
                            "SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10081'"
                            " AND state = 'acked'"),
                     0);
    assert_int_equal(wait_q(1, 5000,
                            "SELECT count(*) FROM switch.advice_queue WHERE auth_code = 'S10080'"
                            " AND state = 'failed' AND last_response_code = '14'"),
                     0);
    assert_int_equal(stack_balance(&S, PAN), b - 20);
    assert_true(ts_wait_file_contains(S.switch_log, "\"event\":\"advice_refused\"", 5000));
    char out[400];
    snprintf(out, sizeof out, "%s/reconcile-refused.out", S.dir);
    assert_int_equal(stack_reconcile(&S, out, NULL), 1);
    assert_true(ts_file_contains(out, "advice of a stand-in approval refused by the issuer (last "
                                      "rc 14)"));
    assert_true(stack_metric(&S, "atlas_advices_failed_total") >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_delivered_in_order_when_the_issuer_returns, alive),
        cmocka_unit_test_setup(test_resent_after_a_lost_ack_is_applied_once, alive),
        cmocka_unit_test_setup(test_issuer_killed_after_applying, alive),
        cmocka_unit_test_setup(test_withdrawn_advice_nets_to_zero, alive),
        cmocka_unit_test_setup(test_unjournaled_advice_is_reversed_at_start, alive),
        cmocka_unit_test_setup(test_terminal_reversal_of_a_stand_in, alive),
        cmocka_unit_test_setup(test_stand_in_outage_end_to_end, alive),
        cmocka_unit_test_setup(test_reconciles, alive),
        cmocka_unit_test_setup(test_refused_advice_does_not_block_the_next, alive),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
