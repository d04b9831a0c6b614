/* The money invariants (docs/ARCHITECTURE.md) across restarts, crashes and a
 * database that goes away: a request identity never moves money twice, an
 * approval the terminal got always has its journal row, and what the issuer
 * may have applied without the terminal getting an approval is reversed.
 * Each test reproduces a way these once failed. Real processes: switchd,
 * hsm-sim, issuer-sim, PostgreSQL. */
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

#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;

static int setup(void **state)
{
    struct stack_opts o = { .issuer = true, .issuer_timeout_ms = 1500, .wallets = 64 };
    return stack_setup(state, &S, &o);
}

/* Each test starts with a running switchd that reaches its database,
 * whatever the one before did. */
static int alive(void **state)
{
    if (!ts_alive(S.sw) && stack_start_switch(&S) != 0)
        return -1;
    return stack_switch_db(&S, true) == 0 ? stack_wait_journal_up(&S, 10000) : -1;
}

static void restart_switch(int sig)
{
    int st = stack_restart_switch(&S, sig);
    assert_int_not_equal(st, -1);
    if (sig == SIGTERM)
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Rows of the journal for the request sent as sent by term that match where. */
static long long journal_count(const char *term, const struct sim_sent *sent, const char *where)
{
    return stack_scalar(&S, stack_rows_sql("switch.authorizations", term, sent, where));
}

/* Rows of the reversal queue for the request sent as sent by TERM0001, in a while: 0 once
 * want rows match where. */
static int wait_reversals(const struct sim_sent *sent, const char *where, long long want)
{
    return stack_wait_scalar(&S, stack_rows_sql("switch.reversal_queue", "TERM0001", sent, where),
                             want, 10000);
}

/* hsm-sim stopped and started again with fail as its --fail fault, or none when NULL. */
static void restart_hsm(const char *fail)
{
    ts_stop(S.hsm, SIGTERM, 5000);
    assert_int_equal(stack_start_hsm(&S, fail), 0);
}

/* Into an outage: past the duplicate table's horizon (its start + clock_skew_s), switchd's
 * database goes away and the issuer stalls (SIGSTOP); n purchases of pan's card (amounts
 * amount, amount + 1, ...) are sent from TERM0001 without waiting, what was sent in sent[i]
 * and the open connections in fds[i]; then past the issuer timeout, their 91s and reversals
 * are decided. The issuer is left stopped, the database away and the connections open. */
static void send_into_an_outage(const char *pan, uint64_t amount, int n, struct sim_sent *sent,
                                int *fds)
{
    sleep(2);
    assert_int_equal(stack_switch_db(&S, false), 0);
    stack_kill(S.issuer, SIGSTOP);
    for (int i = 0; i < n; i++) {
        struct sim_txn x;
        stack_card_txn(&x, SIM_T_PURCHASE, pan, amount + (uint64_t)i);
        fds[i] = stack_send_nowait(&S, stack_term(&S, "TERM0001"), &x, &sent[i]);
        assert_true(fds[i] >= 0);
    }
    sleep(3);
}

/* A purchase of amount with pan's card approved on TERM0001 (its answer in r1, what was sent
 * in sent), switchd ended with sig and restarted, then the same request sent again as mti: it
 * is answered want (the answer in r2), and the wallet is debited once. */
static void again_after_restart(const char *pan, uint64_t amount, int sig, const char *mti,
                                const char *want, struct sim_resp *r1, struct sim_resp *r2,
                                struct sim_sent *sent)
{
    struct sim_txn x;
    long long before = stack_balance(&S, pan);
    assert_string_equal(stack_purchase(&S, "TERM0001", pan, amount, &x, r1, sent), "00");
    restart_switch(sig);
    stack_repeat_of(&x, mti, sent);
    assert_string_equal(stack_rc_linked(&S, "TERM0001", &x, r2, 6000), want);
    usleep(300000);
    assert_int_equal(stack_balance(&S, pan), before - (long long)amount);
}

/* An 0200 approved, switchd restarted, the same request repeated as 0201:
 * it gets the original answer (same DE 38) and the wallet is debited once. */
static void test_repeat_after_restart_is_answered_from_the_journal(void **state)
{
    struct sim_resp r1, r2;
    struct sim_sent sent;
    again_after_restart("4890010000000012", 321, SIGTERM, "0201", "00", &r1, &r2, &sent);
    assert_string_equal(r2.mti, "0210");
    assert_string_equal(r2.auth, r1.auth);
    assert_int_equal(journal_count("TERM0001", &sent, "response_code = '00'"), 1);
}

/* The same 0200 sent again after a kill -9: a duplicate (94), never a second
 * debit. */
static void test_resend_after_kill_is_a_duplicate(void **state)
{
    struct sim_resp r1, r2;
    struct sim_sent sent;
    again_after_restart("4890020000000029", 1234, SIGKILL, "0200", "94", &r1, &r2, &sent);
}

/* The issuer approves a request while switchd is being killed: nobody
 * answers the terminal. After the restart the money comes back without any
 * help from the terminal, and the terminal's own reversal is acknowledged. */
static void test_killed_while_at_the_issuer_money_comes_back(void **state)
{
    const char *pan = "4890010000000012";
    struct sim_txn x, rev;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 777);
    stack_kill(S.issuer, SIGSTOP); /* the request waits at the issuer */
    int fd = stack_send_nowait(&S, stack_term(&S, "TERM0001"), &x, &sent);
    assert_true(fd >= 0);
    usleep(500000);
    assert_int_equal(ts_stop(S.sw, SIGKILL, 5000) != -1, 1);
    stack_kill(S.issuer, SIGCONT); /* it applies the debit and answers nobody */
    close(fd);
    assert_true(stack_wait_balance(&S, pan, before - 777, 5000));
    assert_int_equal(stack_start_switch(&S), 0);
    assert_true(stack_wait_balance(&S, pan, before, 10000));
    stack_reversal_of(&rev, pan, 777, &sent);
    assert_string_equal(stack_rc_linked(&S, "TERM0001", &rev, &r, 6000), "00");
    usleep(500000);
    assert_int_equal(stack_balance(&S, pan), before);
}

/* Requests time out while switchd cannot reach its database: their reversals
 * are decided during the outage (and go to the spool with their 91s).
 * switchd keeps running, and once the database is back the reversals are in
 * the queue, acknowledged, and the money is back. */
static void test_reversals_decided_while_the_database_is_away(void **state)
{
    enum { N = 3 };
    const char *pan = "4890030000000036";
    struct sim_sent sent[N];
    int fds[N];
    long long before = stack_balance(&S, pan);
    send_into_an_outage(pan, 10, N, sent, fds);
    stack_kill(S.issuer, SIGCONT);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    assert_int_equal(stack_kill(S.sw, 0), 0); /* still alive */
    assert_int_equal(stack_switch_db(&S, true), 0);
    assert_int_equal(stack_wait_journal_up(&S, 10000), 0);
    assert_true(stack_wait_balance(&S, pan, before, 15000));
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.reversal_queue q JOIN switch.authorizations a USING"
             " (request_date, acquirer_id, terminal_id, stan, transmission_time)"
             " WHERE a.terminal_id = 'TERM0001' AND a.response_code = '91'"
             " AND q.reason = 'timeout' AND q.state = 'acked' AND a.stan IN ('%s', '%s', '%s')",
             sent[0].stan, sent[1].stan, sent[2].stan);
    assert_int_equal(stack_wait_scalar(&S, sql, N, 10000), 0);
}

/* A request refused before the issuer (a bad MAC: 63) does not keep its
 * identity from a valid request afterwards: the valid one is approved and
 * journaled as approved. */
static void test_refusal_does_not_leave_a_later_approval_unjournaled(void **state)
{
    const char *pan = "4890040000000043";
    struct sim_term *t = stack_term(&S, "TERM0001");
    struct sim_txn x;
    struct sim_resp r;
    struct sim_sent sent;
    uint8_t msg[SIM_MSG_MAX], bad[SIM_MSG_MAX];
    size_t len;
    char err[128];
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 555);
    assert_int_equal(sim_term_build_request(t, &x, msg, sizeof msg, &len, &sent, err, sizeof err),
                     0);
    memcpy(bad, msg, len);
    bad[len - 1] = bad[len - 1] == '0' ? '1' : '0'; /* the MAC (hex) is the last field */
    assert_int_equal(stack_send_raw(&S, t, bad, len, &r), 0);
    assert_string_equal(r.rc, "63");
    assert_int_equal(stack_send_raw(&S, t, msg, len, &r), 0);
    assert_string_equal(r.rc, "00");
    char where[80];
    snprintf(where, sizeof where, "response_code = '00' AND auth_code = '%s'", r.auth);
    assert_int_equal(
        stack_wait_scalar(&S, stack_rows_sql("switch.authorizations", "TERM0001", &sent, where), 1,
                          2000),
        0);
}

/* An approval the terminal never received is reversed; its repeat (0201) must
 * not be told 00 afterwards. */
static void test_repeat_of_a_reversed_approval_is_not_approved(void **state)
{
    const char *pan = "4890010000000012";
    struct sim_txn x;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 888);
    stack_fix_time(&x);
    stack_kill(S.issuer, SIGSTOP);
    int fd = stack_send_nowait(&S, stack_term(&S, "TERM0001"), &x, &sent);
    assert_true(fd >= 0);
    usleep(300000);
    close(fd); /* the terminal hangs up before the approval */
    stack_kill(S.issuer, SIGCONT);
    assert_true(stack_wait_balance(&S, pan, before, 8000));
    stack_repeat_of(&x, "0201", &sent);
    assert_string_not_equal(stack_rc(&S, "TERM0001", &x, &r, NULL), "00");
    usleep(300000);
    assert_int_equal(stack_balance(&S, pan), before);
}

/* The HSM answers the response MAC of an approval with a success it cannot
 * decode: the approval is withdrawn (96, journaled as such) and the money goes
 * back — never an approval with a zero MAC. */
static void test_approval_without_a_response_mac_is_withdrawn(void **state)
{
    const char *pan = "4890020000000029";
    struct sim_txn x;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    restart_hsm("M600131003=00"); /* M6 with a TAK */
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 4321);
    for (int i = 0; i < 50; i++) { /* until switchd's HSM pool is back */
        assert_int_equal(stack_send(&S, stack_term(&S, "TERM0002"), &x, &r, &sent), 0);
        if (strcmp(r.rc, "96") != 0 || ts_wait_file_contains(S.switch_log, "approval_withdrawn", 0))
            break;
        x.stan = 0;
        usleep(100000);
    }
    assert_string_equal(r.rc, "96");
    assert_int_not_equal(r.mac, SIM_MAC_OK);
    assert_true(ts_wait_file_contains(S.switch_log, "\"event\":\"approval_withdrawn\"", 2000));
    restart_hsm(NULL);
    assert_true(stack_wait_balance(&S, pan, before, 15000));
    assert_int_equal(journal_count("TERM0002", &sent, "response_code = '96'"), 1);
}

/* An issuer's 96 may hide a commit it could not confirm: the switch reverses
 * it, and the repeat of the request gets the 96 again. */
static void test_an_issuer_96_is_reversed(void **state)
{
    const char *pan = "4890010000000012"; /* Visa PVV: issuer-sim verifies with EC */
    struct sim_txn x;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    restart_hsm("EC");
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 640);
    stack_fix_time(&x);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(stack_send(&S, stack_term(&S, "TERM0001"), &x, &r, &sent), 0);
        if (strcmp(r.rc, "91") != 0)
            break;
        x.stan = 0;
        usleep(100000);
    }
    assert_string_equal(r.rc, "96");
    assert_int_equal(wait_reversals(&sent, "reason = 'error' AND state = 'acked'", 1), 0);
    stack_repeat_of(&x, "0201", &sent);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r, NULL), "96");
    restart_hsm(NULL);
    assert_int_equal(stack_balance(&S, pan), before);
}

/* The issuer refuses a reversal for good (51: reversing the refund would
 * overdraw the wallet): the reversal is parked as failed for an operator, not
 * counted as acknowledged. */
static void test_a_refused_reversal_is_failed_not_acknowledged(void **state)
{
    const char *pan = "4890040000000043";
    struct sim_txn x, rev;
    struct sim_resp r;
    struct sim_sent sent;
    stack_card_txn(&x, SIM_T_REFUND, pan, 100);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r, &sent), "00");
    long long balance = stack_balance(&S, pan);
    struct sim_txn spend;
    assert_string_equal(
        stack_purchase(&S, "TERM0001", pan, (uint64_t)(balance - 50), &spend, &r, NULL), "00");
    stack_reversal_of(&rev, pan, 100, &sent);
    snprintf(rev.proc, sizeof rev.proc, "%s", sent.proc);
    assert_string_equal(stack_rc(&S, "TERM0001", &rev, &r, NULL), "00"); /* queued durably */
    assert_int_equal(wait_reversals(&sent, "state = 'failed' AND last_response_code = '51'", 1), 0);
    assert_int_equal(stack_balance(&S, pan), 50);
}

/* A reversal must name the card of its original: another PAN is refused (12)
 * and never forwarded; the right one goes through. */
static void test_a_reversal_with_another_card_is_refused(void **state)
{
    const char *pan = "4890010000000012", *other = "4890010000000053";
    struct sim_txn x, rev;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    assert_string_equal(stack_purchase(&S, "TERM0001", pan, 2020, &x, &r, &sent), "00");
    stack_reversal_of(&rev, other, 2020, &sent);
    assert_string_equal(stack_rc(&S, "TERM0001", &rev, &r, NULL), "12");
    usleep(500000);
    assert_int_equal(stack_balance(&S, pan), before - 2020);
    stack_reversal_of(&rev, pan, 2020, &sent);
    assert_string_equal(stack_rc(&S, "TERM0001", &rev, &r, NULL), "00");
    assert_true(stack_wait_balance(&S, pan, before, 8000));
}

/* switchd read its PAN keys from the environment: they are no longer in it. */
static void test_pan_keys_leave_the_environment(void **state)
{
    char path[64], env[8192];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)S.sw);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(env, 1, sizeof env - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (env[i] == '\0')
            env[i] = '\n';
    env[n] = '\0';
    /* The block /proc shows is the one the process started with: the names
     * stay, the values must be gone from it. */
    assert_non_null(getenv("ATLAS_PAN_HMAC_KEY"));
    assert_null(strstr(env, getenv("ATLAS_PAN_HMAC_KEY")));
    assert_null(strstr(env, getenv("ATLAS_PAN_SEAL_KEY")));
}

/* The issuer stalls, switchd's database goes away, requests time out and
 * switchd gets SIGTERM in the middle of it: the reversals it decided are in
 * its spool when it exits, and the next switchd delivers them. */
static void test_sigterm_during_an_outage_keeps_the_reversals(void **state)
{
    enum { N = 2 };
    const char *pan = "4890030000000036";
    struct sim_sent sent[N];
    int fds[N];
    long long before = stack_balance(&S, pan);
    send_into_an_outage(pan, 20, N, sent, fds); /* their reversals all in the spool */
    int st = ts_stop(S.sw, SIGTERM, 15000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    stack_kill(S.issuer, SIGCONT); /* it applies the debits now, answering nobody */
    assert_int_equal(stack_switch_db(&S, true), 0);
    assert_int_equal(stack_start_switch(&S), 0);
    assert_true(stack_wait_balance(&S, pan, before, 15000));
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.reversal_queue WHERE terminal_id = 'TERM0001'"
             " AND state = 'acked' AND stan IN ('%s', '%s')",
             sent[0].stan, sent[1].stan);
    assert_int_equal(stack_wait_scalar(&S, sql, N, 10000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_repeat_after_restart_is_answered_from_the_journal, alive),
        cmocka_unit_test_setup(test_resend_after_kill_is_a_duplicate, alive),
        cmocka_unit_test_setup(test_killed_while_at_the_issuer_money_comes_back, alive),
        cmocka_unit_test_setup(test_reversals_decided_while_the_database_is_away, alive),
        cmocka_unit_test_setup(test_refusal_does_not_leave_a_later_approval_unjournaled, alive),
        cmocka_unit_test_setup(test_repeat_of_a_reversed_approval_is_not_approved, alive),
        cmocka_unit_test_setup(test_approval_without_a_response_mac_is_withdrawn, alive),
        cmocka_unit_test_setup(test_an_issuer_96_is_reversed, alive),
        cmocka_unit_test_setup(test_a_refused_reversal_is_failed_not_acknowledged, alive),
        cmocka_unit_test_setup(test_a_reversal_with_another_card_is_refused, alive),
        cmocka_unit_test_setup(test_pan_keys_leave_the_environment, alive),
        cmocka_unit_test_setup(test_sigterm_during_an_outage_keeps_the_reversals, alive),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
