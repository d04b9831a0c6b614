/* Wallet-to-wallet transfers through the whole four-issuer world (docs/transfers.md): a
 * domestic transfer, a MAD -> XOF one (converted at the demo rates), one to a mobile number, an
 * OCT declined (the AFT visibly reversed), the corridor's maximum, an unknown mobile number, a
 * repeat answered from the saga, a terminal's reversal of a completed transfer, and switchd
 * killed (-9) while the AFT and while the OCT was at its issuer: every wallet ends where the
 * answer the sender got says it must. Real processes: switchd, hsm-sim, four issuer-sims,
 * atlas-fx, atlas-db, PostgreSQL. Amounts are worked by hand from db/seed/demo_switch.sql's
 * corridors and fx/demo-rates.csv. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bizday.h"
#include "clock.h"
#include "fmt.h"
#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;

#define MAD_CARD       "4890010000000012" /* WALLET1, 1,000.00 MAD */
#define MAD_LIMITED    "4890010000000087" /* WALLET1, MAD, daily limit 50.00 */
#define MAD_BLOCKED    "4890010000000053" /* WALLET1, blocked */
#define XOF_CARD       "4890020000000029" /* WALLET2, 500,000 XOF */
#define XAF_CARD       "4890030000000036" /* WALLET3, 1,000 XAF */
#define XAF_MSISDN     "+237690000036"
#define UNKNOWN_MSISDN "+237690009999"

static int setup(void **state)
{
    return stack_setup_demo_world(state, &S);
}

static long long bal(const char *issuer, const char *pan)
{
    return stack_issuer_balance(&S, issuer, pan);
}

/* A transfer of amount (minor units of the sender's card currency) from pan to `to` (a PAN,
 * or a mobile number starting with '+'), on TERM0001: its answer in r. */
static const char *transfer(const char *pan, const char *to, uint64_t amount, struct sim_resp *r,
                            struct sim_sent *sent, struct sim_txn *x)
{
    struct sim_txn local;
    if (!x)
        x = &local;
    stack_card_txn(x, SIM_T_TRANSFER, pan, amount);
    stack_fix_time(x);
    snprintf(x->recipient, sizeof x->recipient, "%s", to);
    struct sim_term *t = stack_term(&S, "TERM0001");
    if (stack_send(&S, t, x, r, sent) != 0)
        return "--";
    assert_true(sim_mac_acceptable(r));
    return r->rc;
}

/* expr over the transfer row of the request sent, once it is want (its final state is written
 * just after the sender's answer: polled for up to 5 s); the last value read. */
static long long transfer_scalar(const struct sim_sent *sent, const char *expr, long long want)
{
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT coalesce((%s)::bigint, -1) FROM switch.transfers WHERE terminal_id ="
             " 'TERM0001' AND stan = '%s' AND transmission_time = '%s'",
             expr, sent->stan, sent->de7);
    long long v = stack_scalar(&S, sql);
    for (int i = 0; i < 100 && v != want; i++) {
        usleep(50000);
        v = stack_scalar(&S, sql);
    }
    return v;
}

static void domestic(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    long long a0 = bal("WALLET1", MAD_CARD), b0 = bal("WALLET1", MAD_LIMITED);
    assert_string_equal(transfer(MAD_CARD, MAD_LIMITED, 4000, &r, &sent, NULL), "00");
    assert_true(r.has_fee);
    assert_int_equal(r.fee, 200); /* MAD -> MAD: 2.00 */
    assert_false(r.has_billing);  /* same currency: nothing converted */
    assert_true(r.has_balance);   /* the sender's balance after the AFT */
    assert_int_equal(r.balance, a0 - 4200);
    assert_int_equal(bal("WALLET1", MAD_CARD), a0 - 4200);
    assert_int_equal(bal("WALLET1", MAD_LIMITED), b0 + 4000);
    assert_int_equal(transfer_scalar(&sent, "(state = 'completed')::int", 1), 1);
    /* Each leg is a journal row of its own, with its own identity. */
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.authorizations a JOIN"
                                      " switch.transfers t ON a.terminal_id IN ("
                                      " switch.transfer_leg_terminal(t.transfer_id, 'aft'),"
                                      " switch.transfer_leg_terminal(t.transfer_id, 'oct'))"
                                      " AND a.stan = switch.transfer_leg_stan(t.transfer_id)"
                                      " WHERE t.state = 'completed' AND a.outcome = 'approved'"
                                      " AND t.fee_minor = 200"),
                     2);
}

static void cross_border_mad_xof(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    long long a0 = bal("WALLET1", MAD_CARD), b0 = bal("WALLET2", XOF_CARD);
    /* 10.00 MAD: fee 5.00 + 1 % = 5.10 MAD; the recipient gets 10.00 MAD at DE 10 56062027
     * (60.62027 XOF per MAD, the 1.0 % spread included): 606.2027 -> 606 XOF. */
    assert_string_equal(transfer(MAD_CARD, XOF_CARD, 1000, &r, &sent, NULL), "00");
    assert_int_equal(r.fee, 510);
    assert_true(r.has_billing);
    assert_int_equal(r.billing, 606);
    assert_string_equal(r.billing_ccy, "952");
    assert_string_equal(r.rate, "56062027");
    assert_int_equal(bal("WALLET1", MAD_CARD), a0 - 1510);
    assert_int_equal(bal("WALLET2", XOF_CARD), b0 + 606);
    assert_int_equal(transfer_scalar(&sent, "recipient_amount_minor", 606), 606);
}

static void to_a_mobile_number(void **state)
{
    (void)state;
    struct sim_resp r;
    long long a0 = bal("WALLET2", XOF_CARD), b0 = bal("WALLET3", XAF_CARD);
    /* 1,000 XOF to +237...: fee 200 + 0.5 % = 205 XOF; XOF -> XAF 1 at 1.0 % spread: 1,010. */
    assert_string_equal(transfer(XOF_CARD, XAF_MSISDN, 1000, &r, NULL, NULL), "00");
    assert_int_equal(r.fee, 205);
    assert_int_equal(r.billing, 1010);
    assert_string_equal(r.billing_ccy, "950");
    assert_int_equal(bal("WALLET2", XOF_CARD), a0 - 1205);
    assert_int_equal(bal("WALLET3", XAF_CARD), b0 + 1010);
    /* A number nobody registered: nothing moves. */
    assert_string_equal(transfer(XOF_CARD, UNKNOWN_MSISDN, 1000, &r, NULL, NULL), "14");
    assert_string_equal(r.info, "OCT14");
    assert_int_equal(bal("WALLET2", XOF_CARD), a0 - 1205);
}

static void oct_declined_aft_reversed(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    long long a0 = bal("WALLET1", MAD_CARD), b0 = bal("WALLET1", MAD_BLOCKED);
    assert_string_equal(transfer(MAD_CARD, MAD_BLOCKED, 500, &r, &sent, NULL), "05");
    assert_string_equal(r.info, "OCT05");
    assert_false(r.has_fee); /* nothing charged */
    assert_string_equal(r.auth, "");
    /* The AFT was debited, then reversed before the answer was given (durably queued), and
     * the reversal reaches the issuer within moments. */
    assert_true(stack_wait_balance_at(&S, "WALLET1", MAD_CARD, a0, 5000));
    assert_int_equal(bal("WALLET1", MAD_BLOCKED), b0);
    assert_int_equal(transfer_scalar(&sent, "(state = 'failed' AND failed_leg = 'oct')::int", 1),
                     1);
}

static void corridor_rules(void **state)
{
    (void)state;
    struct sim_resp r;
    long long a0 = bal("WALLET1", MAD_CARD);
    /* MAD -> XOF moves at most 2,000.00 MAD. */
    assert_string_equal(transfer(MAD_CARD, XOF_CARD, 200001, &r, NULL, NULL), "61");
    assert_string_equal(r.info, "XFR61");
    /* To oneself. */
    assert_string_equal(transfer(MAD_CARD, MAD_CARD, 100, &r, NULL, NULL), "12");
    assert_int_equal(bal("WALLET1", MAD_CARD), a0);
}

static void repeat_and_reversal(void **state)
{
    (void)state;
    struct sim_resp r, r2, rr;
    struct sim_sent sent;
    struct sim_txn x;
    long long a0 = bal("WALLET1", MAD_CARD), b0 = bal("WALLET2", XOF_CARD);
    assert_string_equal(transfer(MAD_CARD, XOF_CARD, 2000, &r, &sent, &x), "00");
    /* 20.00 MAD: fee 5.20; 2000 x 6062027 / 10^7 = 1212.4054 -> 1,212 XOF. */
    assert_int_equal(r.billing, 1212);
    assert_int_equal(bal("WALLET1", MAD_CARD), a0 - 2520);
    /* Its repeat gets the same answer and moves nothing again. */
    stack_repeat_of(&x, "0201", &sent);
    assert_int_equal(stack_send(&S, stack_term(&S, "TERM0001"), &x, &r2, NULL), 0);
    assert_string_equal(r2.rc, "00");
    assert_string_equal(r2.auth, r.auth);
    assert_int_equal(bal("WALLET1", MAD_CARD), a0 - 2520);
    assert_int_equal(bal("WALLET2", XOF_CARD), b0 + 1212);
    /* The terminal reverses it: both legs go back, the fee with it. */
    struct sim_txn rev;
    stack_reversal_of(&rev, MAD_CARD, 2000, &sent);
    assert_int_equal(stack_send(&S, stack_term(&S, "TERM0001"), &rev, &rr, NULL), 0);
    assert_string_equal(rr.rc, "00");
    assert_true(stack_wait_balance_at(&S, "WALLET1", MAD_CARD, a0, 5000));
    assert_true(stack_wait_balance_at(&S, "WALLET2", XOF_CARD, b0, 5000));
    assert_int_equal(transfer_scalar(&sent, "(state = 'reversed')::int", 1), 1);
}

/* A completed transfer whose approval the sender cannot be given — its response MAC cannot be
 * computed (hsm-sim refuses MACs with a TAK): the sender gets 96 and both legs are reversed. */
static void approval_withdrawn_unwinds_both_legs(void **state)
{
    (void)state;
    struct sim_txn x;
    struct sim_resp r;
    struct sim_sent sent;
    long long a0 = bal("WALLET1", MAD_CARD), b0 = bal("WALLET2", XOF_CARD);
    ts_stop(S.hsm, SIGTERM, 5000);
    assert_int_equal(stack_start_hsm(&S, "M600131003=00"), 0); /* M6 with a TAK */
    for (int i = 0; i < 50; i++) { /* until switchd's HSM pool is back */
        stack_card_txn(&x, SIM_T_TRANSFER, MAD_CARD, 1000);
        snprintf(x.recipient, sizeof x.recipient, "%s", XOF_CARD);
        assert_int_equal(stack_send(&S, stack_term(&S, "TERM0001"), &x, &r, &sent), 0);
        if (strcmp(r.rc, "96") != 0 || ts_wait_file_contains(S.switch_log, "approval_withdrawn", 0))
            break;
        usleep(100000);
    }
    assert_string_equal(r.rc, "96");
    assert_true(ts_wait_file_contains(S.switch_log, "\"event\":\"approval_withdrawn\"", 2000));
    ts_stop(S.hsm, SIGTERM, 5000);
    assert_int_equal(stack_start_hsm(&S, NULL), 0);
    assert_int_equal(stack_settle(&S, 20000), 0);
    assert_true(stack_wait_balance_at(&S, "WALLET1", MAD_CARD, a0, 15000));
    assert_true(stack_wait_balance_at(&S, "WALLET2", XOF_CARD, b0, 15000));
    assert_int_equal(transfer_scalar(&sent, "(state = 'reversed')::int", 1), 1);
}

/* switchd is killed (-9) while the leg at `stopped` (an issuer-sim held with SIGSTOP) is in
 * flight; a new switchd settles the transfer from its row: every wallet is back where it was. */
static void killed_during(const char *stopped, const char *leg_prefix)
{
    struct sim_txn x;
    struct sim_sent sent;
    long long a0 = bal("WALLET1", MAD_CARD), b0 = bal("WALLET2", XOF_CARD);
    pid_t *ip = stack_issuer_pid(&S, stopped);
    assert_non_null(ip);
    assert_int_equal(stack_kill(*ip, SIGSTOP), 0);
    stack_card_txn(&x, SIM_T_TRANSFER, MAD_CARD, 1000);
    snprintf(x.recipient, sizeof x.recipient, "%s", XOF_CARD);
    int fd = stack_send_nowait(&S, stack_term(&S, "TERM0001"), &x, &sent);
    assert_true(fd >= 0);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM switch.inflight WHERE terminal_id LIKE '%s%%'",
             leg_prefix);
    assert_int_equal(stack_wait_scalar(&S, sql, 1, 5000), 0);
    int st;
    assert_int_equal(stack_kill(S.sw, SIGKILL), 0);
    assert_int_equal(waitpid(S.sw, &st, 0), S.sw);
    close(fd);
    assert_int_equal(stack_kill(*ip, SIGCONT), 0);
    assert_int_equal(stack_start_switch(&S), 0);
    assert_int_equal(stack_settle(&S, 20000), 0);
    assert_true(stack_wait_balance_at(&S, "WALLET1", MAD_CARD, a0, 10000));
    assert_true(stack_wait_balance_at(&S, "WALLET2", XOF_CARD, b0, 10000));
    assert_int_equal(transfer_scalar(&sent, "(state = 'failed')::int", 1), 1);
    /* The sender's request is journaled, never as an approval. */
    assert_int_equal(stack_scalar(&S, stack_rows_sql("switch.authorizations", "TERM0001", &sent,
                                                     "outcome <> 'approved'")),
                     1);
}

/* After a restart (nothing in memory), a repeat of a completed transfer is answered from its
 * saga row: the same DE 39, DE 38, fee and DE 6/10/51, no money moved again, and DE 15 of the
 * original's receipt — shown by moving the sender's journal row back a day first. */
static void repeat_after_restart_from_the_saga_row(void **state)
{
    (void)state;
    struct sim_resp r, r2;
    struct sim_sent sent;
    struct sim_txn x;
    assert_string_equal(transfer(MAD_CARD, XOF_CARD, 3000, &r, &sent, &x), "00");
    long long a1 = bal("WALLET1", MAD_CARD), b1 = bal("WALLET2", XOF_CARD);
    assert_int_equal(transfer_scalar(&sent, "(state = 'completed')::int", 1), 1);
    char sql[400];
    snprintf(sql, sizeof sql,
             "UPDATE switch.authorizations SET created_at = created_at - interval '1 day'"
             " WHERE terminal_id = 'TERM0001' AND stan = '%s' AND transmission_time = '%s'"
             " AND mti_class = '020'",
             sent.stan, sent.de7);
    assert_int_equal(stack_exec(&S, sql), 0);
    assert_int_equal(stack_restart_switch(&S, SIGTERM), 0);
    stack_repeat_of(&x, "0201", &sent);
    for (int i = 0; i < 50; i++) { /* until the links are up again */
        assert_int_equal(stack_send(&S, stack_term(&S, "TERM0001"), &x, &r2, NULL), 0);
        if (strcmp(r2.rc, "91") != 0)
            break;
        usleep(100000);
    }
    assert_string_equal(r2.rc, "00");
    assert_string_equal(r2.auth, r.auth);
    assert_int_equal(r2.fee, r.fee);
    assert_int_equal(r2.billing, r.billing);
    assert_string_equal(r2.rate, r.rate);
    char yesterday[5];
    at_settlement_date((int64_t)at_wall_us() - 86400LL * 1000000, 0, yesterday);
    assert_string_equal(r2.settle_date, yesterday);
    assert_int_equal(bal("WALLET1", MAD_CARD), a1);
    assert_int_equal(bal("WALLET2", XOF_CARD), b1);
}

/* The sender's terminal hangs up before its approval: both legs are reversed, and the
 * terminal's repeat is told 96 — not the approval it never got (found in review: the duplicate
 * table kept "approved" for it). */
static void approval_undeliverable_then_repeat(void **state)
{
    (void)state;
    struct sim_txn x;
    struct sim_sent sent;
    struct sim_resp r;
    long long a0 = bal("WALLET1", MAD_CARD), b0 = bal("WALLET2", XOF_CARD);
    stack_card_txn(&x, SIM_T_TRANSFER, MAD_CARD, 1000);
    stack_fix_time(&x);
    snprintf(x.recipient, sizeof x.recipient, "%s", XOF_CARD);
    int fd = stack_send_nowait(&S, stack_term(&S, "TERM0001"), &x, &sent);
    assert_true(fd >= 0);
    close(fd); /* gone before the saga's two legs are done */
    assert_true(ts_wait_file_contains(S.switch_log, "\"action\":\"both legs reversed\"", 5000));
    assert_true(stack_wait_balance_at(&S, "WALLET1", MAD_CARD, a0, 10000));
    assert_true(stack_wait_balance_at(&S, "WALLET2", XOF_CARD, b0, 10000));
    stack_repeat_of(&x, "0201", &sent);
    assert_int_equal(stack_send(&S, stack_term(&S, "TERM0001"), &x, &r, NULL), 0);
    assert_string_equal(r.rc, "96");
    assert_false(r.has_fee);
    assert_int_equal(bal("WALLET1", MAD_CARD), a0);
}

/* One identity moves money once: a purchase sent with the identity of a completed transfer
 * (acquirer, DE 41, DE 11, DE 7) after a restart — nothing in memory — is a duplicate (94), and
 * so is a transfer with the identity of a purchase (found in review: the transfer's own request
 * never reaches an issuer, so the write-ahead check did not see it). */
static void one_identity_one_movement(void **state)
{
    (void)state;
    struct sim_txn x, p;
    struct sim_sent sent, psent;
    struct sim_resp r;
    assert_string_equal(transfer(MAD_CARD, XOF_CARD, 1000, &r, &sent, &x), "00");
    assert_int_equal(stack_restart_switch(&S, SIGTERM), 0);
    long long a1 = bal("WALLET1", MAD_CARD);
    stack_card_txn(&p, SIM_T_PURCHASE, MAD_CARD, 700);
    p.now_us = x.now_us;
    p.stan = (uint32_t)atoi(sent.stan);
    const char *rc = stack_rc_linked(&S, "TERM0001", &p, &r, 5000);
    assert_string_equal(rc, "94");
    assert_int_equal(bal("WALLET1", MAD_CARD), a1);
    /* The other way round: a purchase first, then a transfer with its identity. */
    stack_card_txn(&p, SIM_T_PURCHASE, MAD_CARD, 700);
    stack_fix_time(&p);
    assert_int_equal(stack_send(&S, stack_term(&S, "TERM0001"), &p, &r, &psent), 0);
    assert_string_equal(r.rc, "00");
    assert_int_equal(stack_restart_switch(&S, SIGTERM), 0);
    long long a2 = bal("WALLET1", MAD_CARD), b2 = bal("WALLET2", XOF_CARD);
    stack_card_txn(&x, SIM_T_TRANSFER, MAD_CARD, 1000);
    x.now_us = p.now_us;
    x.stan = (uint32_t)atoi(psent.stan);
    snprintf(x.recipient, sizeof x.recipient, "%s", XOF_CARD);
    rc = stack_rc_linked(&S, "TERM0001", &x, &r, 5000);
    assert_string_equal(rc, "94");
    assert_int_equal(bal("WALLET1", MAD_CARD), a2);
    assert_int_equal(bal("WALLET2", XOF_CARD), b2);
}

/* The recipient's issuer does not answer the OCT in time: the sender gets 91 naming the OCT,
 * the OCT is reversed at its issuer (it may have applied it) and the AFT at the sender's. */
static void oct_timeout(void **state)
{
    (void)state;
    struct sim_resp r;
    long long a0 = bal("WALLET1", MAD_CARD), b0 = bal("WALLET2", XOF_CARD);
    pid_t *ip = stack_issuer_pid(&S, "WALLET2");
    assert_non_null(ip);
    assert_int_equal(stack_kill(*ip, SIGSTOP), 0);
    const char *rc = transfer(MAD_CARD, XOF_CARD, 1000, &r, NULL, NULL);
    assert_int_equal(stack_kill(*ip, SIGCONT), 0);
    assert_string_equal(rc, "91");
    assert_string_equal(r.info, "OCT91");
    assert_int_equal(stack_settle(&S, 20000), 0);
    assert_true(stack_wait_balance_at(&S, "WALLET1", MAD_CARD, a0, 10000));
    assert_true(stack_wait_balance_at(&S, "WALLET2", XOF_CARD, b0, 10000));
}

/* PostgreSQL goes away while a leg is at its issuer (held with SIGSTOP) and switchd keeps
 * running (no restart, so no recovery at start): the leg times out, its reversal (and, for the
 * OCT, the AFT's) is spooled, the sender is declined, and the row's `failed` cannot be written
 * then. Once the database is back the row must still end `failed` (and every wallet where it
 * was): a row left `started` (or `aft`) by a live switchd is what atlas-reconcile reported as
 * "transfer unfinished (state started)" after the chaos suite's pg_restart. */
static void database_lost_during(const char *stopped, const char *leg_prefix)
{
    struct sim_txn x;
    struct sim_sent sent;
    struct sim_resp r;
    long long a0 = bal("WALLET1", MAD_CARD), b0 = bal("WALLET2", XOF_CARD);
    pid_t *ip = stack_issuer_pid(&S, stopped);
    assert_non_null(ip);
    assert_int_equal(stack_kill(*ip, SIGSTOP), 0);
    stack_card_txn(&x, SIM_T_TRANSFER, MAD_CARD, 1000);
    snprintf(x.recipient, sizeof x.recipient, "%s", XOF_CARD);
    struct sim_term *t = stack_term(&S, "TERM0001");
    int fd = stack_send_nowait(&S, t, &x, &sent);
    assert_true(fd >= 0);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM switch.inflight WHERE terminal_id LIKE '%s%%'",
             leg_prefix);
    assert_int_equal(stack_wait_scalar(&S, sql, 1, 5000), 0);
    assert_int_equal(stack_switch_db(&S, false), 0);
    assert_int_equal(stack_recv(fd, t, &r), 0);
    close(fd);
    assert_string_not_equal(r.rc, "00");
    assert_int_equal(stack_kill(*ip, SIGCONT), 0);
    assert_int_equal(stack_switch_db(&S, true), 0);
    assert_int_equal(stack_wait_journal_up(&S, 10000), 0);
    assert_int_equal(stack_settle(&S, 20000), 0);
    assert_true(stack_wait_balance_at(&S, "WALLET1", MAD_CARD, a0, 10000));
    assert_true(stack_wait_balance_at(&S, "WALLET2", XOF_CARD, b0, 10000));
    assert_int_equal(transfer_scalar(&sent, "(state = 'failed')::int", 1), 1);
    assert_int_equal(stack_scalar(&S, stack_rows_sql("switch.authorizations", "TERM0001", &sent,
                                                     "outcome <> 'approved'")),
                     1);
}

static void database_lost_during_aft(void **state)
{
    (void)state;
    database_lost_during("WALLET1", "XA");
}

static void database_lost_during_oct(void **state)
{
    (void)state;
    database_lost_during("WALLET2", "XO");
}

static void killed_during_aft(void **state)
{
    (void)state;
    killed_during("WALLET1", "XA");
}

static void killed_during_oct(void **state)
{
    (void)state;
    killed_during("WALLET2", "XO");
}

/* After all of the above, each issuer's ledger reconciles with the switch's rows of it: every
 * leg that moved money is journaled, every one undone is reversed. */
static void reconciles_per_issuer(void **state)
{
    (void)state;
    static const char *const ids[] = { "WALLET1", "WALLET2", "WALLET3", "WALLET4" };
    char out[400];
    assert_int_equal(stack_settle(&S, 15000), 0);
    for (size_t i = 0; i < 4; i++) {
        snprintf(out, sizeof out, "%s/reconcile-%s.out", S.dir, ids[i]);
        int code = stack_reconcile_issuer(&S, ids[i], out, NULL);
        if (code != 0)
            fprintf(stderr, "atlas-reconcile --issuer %s exited %d (see %s)\n", ids[i], code, out);
        assert_int_equal(code, 0);
    }
}

/* atlas-reconcile --issuer WALLET1 into S.dir/name; its exit status. */
static int reconcile_wallet1(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", S.dir, name);
    return stack_reconcile_issuer(&S, "WALLET1", out, NULL);
}

/* Each break of a transfer's story, made by hand in the switch's tables and undone, is named by
 * the transfers check with the transfer and its leg: the AFT of the transfer whose OCT was
 * declined (its reversal acknowledged) parked 'failed' instead, then that transfer marked
 * completed though its sender was declined. */
static void reconcile_names_a_broken_transfer(void **state)
{
    (void)state;
    char out[400], want[160], sql[700];
    long long id = stack_scalar(&S, "SELECT min(transfer_id) FROM switch.transfers"
                                    " WHERE state = 'failed' AND failed_leg = 'oct'");
    assert_true(id > 0);
    static const char leg_rev[] =
        "UPDATE switch.reversal_queue q SET state = '%s' FROM switch.transfers t"
        " WHERE t.transfer_id = %lld AND q.request_date = t.leg_request_date"
        " AND q.acquirer_id = t.acquirer_id"
        " AND q.terminal_id = switch.transfer_leg_terminal(t.transfer_id, 'aft')"
        " AND q.stan = switch.transfer_leg_stan(t.transfer_id)"
        " AND q.transmission_time = t.leg_transmission_time AND q.state = '%s'";
    snprintf(sql, sizeof sql, leg_rev, "failed", id, "acked");
    assert_int_equal(stack_exec(&S, sql), 0);
    assert_int_equal(reconcile_wallet1("reconcile-break-leg.out", out, sizeof out), 1);
    assert_true(ts_file_contains(out, "check=transfers problem=\"AFT leg reversal failed: money "
                                      "still moved"));
    snprintf(want, sizeof want, "reversal=failed issuer_net=- transfer=%lld leg=aft", id);
    assert_true(ts_file_contains(out, want));
    assert_true(ts_file_contains(out, "pan=489001******0012"));
    snprintf(sql, sizeof sql, leg_rev, "acked", id, "failed");
    assert_int_equal(stack_exec(&S, sql), 0);
    assert_int_equal(reconcile_wallet1("reconcile-undone-leg.out", out, sizeof out), 0);

    snprintf(sql, sizeof sql,
             "UPDATE switch.transfers SET state = 'completed' WHERE transfer_id = %lld", id);
    assert_int_equal(stack_exec(&S, sql), 0);
    assert_int_equal(reconcile_wallet1("reconcile-break-state.out", out, sizeof out), 1);
    assert_true(ts_file_contains(out, "problem=\"transfer completed but the sender's request is "
                                      "not journaled an approval\""));
    assert_int_equal(ts_file_lines_with(out, "MISMATCH "), 1);
    snprintf(sql, sizeof sql,
             "UPDATE switch.transfers SET state = 'failed' WHERE transfer_id = %lld", id);
    assert_int_equal(stack_exec(&S, sql), 0);
    assert_int_equal(reconcile_wallet1("reconcile-undone-state.out", out, sizeof out), 0);
}

/* The day's settlement balances in every currency with the transfers in it: each leg is a
 * journal row of its own (the AFT a debit, the OCT a credit, a converted one through
 * `(conversion)`), the sender's own row moves nothing; atlas-settle exits 0 only when every
 * currency's nets sum to zero. The day is the stack's business day of now (cutover 00:00). */
static void settles(void **state)
{
    (void)state;
    char date[11], out[400];
    int64_t y;
    unsigned m, d;
    at_civil_from_days(at_business_day((int64_t)at_wall_us(), 0), &y, &m, &d);
    at_put_date(date, y, m, d);
    snprintf(out, sizeof out, "%s/settle.out", S.dir);
    const char *args[] = { "--date", date, "--switch-db", S.conninfo, NULL };
    int code = ts_run("atlas-settle", args, out);
    if (code != 0)
        fprintf(stderr, "atlas-settle exited %d (see %s)\n", code, out);
    assert_int_equal(code, 0);
    assert_true(ts_file_contains(out, "(conversion)")); /* the MAD -> XOF transfers' OCTs */
}

static int teardown(void **state)
{
    return stack_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(domestic),
        cmocka_unit_test(cross_border_mad_xof),
        cmocka_unit_test(to_a_mobile_number),
        cmocka_unit_test(oct_declined_aft_reversed),
        cmocka_unit_test(corridor_rules),
        cmocka_unit_test(repeat_and_reversal),
        cmocka_unit_test(repeat_after_restart_from_the_saga_row),
        cmocka_unit_test(approval_undeliverable_then_repeat),
        cmocka_unit_test(one_identity_one_movement),
        cmocka_unit_test(oct_timeout),
        cmocka_unit_test(approval_withdrawn_unwinds_both_legs),
        cmocka_unit_test(killed_during_aft),
        cmocka_unit_test(killed_during_oct),
        cmocka_unit_test(database_lost_during_aft),
        cmocka_unit_test(database_lost_during_oct),
        cmocka_unit_test(reconciles_per_issuer),
        cmocka_unit_test(reconcile_names_a_broken_transfer),
        cmocka_unit_test(settles),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
