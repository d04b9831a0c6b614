/* Pre-authorization through the whole stack (real switchd, hsm-sim, issuer-sim, PostgreSQL):
 * an 0100 places a hold, an 0220 with DE 90 completes it (captures the final amount, releases
 * the rest), an incremental 0100 with DE 90 adds to it, and an 0400 of the completion restores
 * it — each checked against the wallet's balance and held amount exactly
 * (docs/acquirer-interface.md and docs/issuer-sim.md, "Pre-authorization"). Each test uses a
 * wallet of its own (the load wallets of BIN 489001: MAD, no KYC limit biting). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parse.h"
#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;

static int setup(void **state)
{
    struct stack_opts o = { .issuer = true, .issuer_timeout_ms = 1500, .wallets = 64 };
    return stack_setup(state, &S, &o);
}

/* The card of wallet i (> 8, (i - 1) mod 4 == 0: BIN 489001, MAD) as `issuer-sim seed` makes
 * it (docs/issuer-sim.md: account number i, a Luhn digit, balance 100000 + (i mod 50) * 1000),
 * its balance in *balance. */
static const char *card(unsigned i, long long *balance)
{
    static char pan[8][20];
    static unsigned k;
    char *p = pan[k++ % 8];
    snprintf(p, 20, "489001%09u", i);
    p[15] = at_luhn_digit(p, 15);
    p[16] = '\0';
    *balance = 100000 + (long long)(i % 50) * 1000;
    assert_int_equal(stack_balance(&S, p), *balance); /* untouched so far */
    return p;
}

/* Wallet i's PIN (the seed's rule). */
static void pin_of(unsigned i, char pin[5])
{
    snprintf(pin, 5, "%04u", (i * 7919 + 1234) % 10000);
}

/* The wallet's ledger balance and held amount as "balance/held" (the available amount is the
 * difference), compared with want. */
static void assert_wallet(const char *pan, long long balance, long long held)
{
    assert_int_equal(stack_balance(&S, pan), balance);
    assert_int_equal(stack_wallet_scalar(&S, pan, "held_minor"), held);
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM wallet.invariant_violations"), 0);
}

/* A request of type on pan (no PIN: a fuel pump's card-present pre-auth without one), its DE 7
 * fixed so that it can be repeated; naming the pre-auth sent as orig when not NULL. */
static void txn_of(struct sim_txn *x, enum sim_type type, const char *pan, uint64_t amount,
                   const struct sim_sent *orig)
{
    stack_card_txn(x, type, pan, amount);
    snprintf(x->currency, sizeof x->currency, "504");
    snprintf(x->expiry, sizeof x->expiry, "2812");
    x->pin[0] = '\0';
    stack_fix_time(x);
    if (orig) {
        x->orig_stan = (uint32_t)atoi(orig->stan);
        snprintf(x->orig_time, sizeof x->orig_time, "%s", orig->de7);
    }
}

static const char *send_txn(enum sim_type type, const char *pan, uint64_t amount,
                            const struct sim_sent *orig, struct sim_txn *x, struct sim_resp *r,
                            struct sim_sent *sent)
{
    txn_of(x, type, pan, amount, orig);
    return stack_rc(&S, "TERM0001", x, r, sent);
}

static const char *preauth(const char *pan, uint64_t amount, struct sim_resp *r,
                           struct sim_sent *sent)
{
    struct sim_txn x;
    return send_txn(SIM_T_PREAUTH, pan, amount, NULL, &x, r, sent);
}

static const char *complete(const char *pan, uint64_t amount, const struct sim_sent *orig,
                            struct sim_resp *r, struct sim_sent *sent)
{
    struct sim_txn x;
    return send_txn(SIM_T_COMPLETION, pan, amount, orig, &x, r, sent);
}

/* 100.00 held, completed for 73.50: the wallet is debited 73.50 and the other 26.50 is
 * available again; the 0230 carries its own approval code; the journal has the 0220 approved,
 * naming the pre-auth (original_stan / original_transmission_time). */
static void test_completion_lower_releases_the_rest(void **state)
{
    long long b;
    const char *pan = card(9, &b);
    struct sim_resp r, rc;
    struct sim_sent pa, cs;
    assert_string_equal(preauth(pan, 10000, &r, &pa), "00");
    assert_string_equal(r.mti, "0110");
    assert_wallet(pan, b, 10000);
    assert_string_equal(complete(pan, 7350, &pa, &rc, &cs), "00");
    assert_string_equal(rc.mti, "0230");
    assert_int_equal(strlen(rc.auth), 6);
    assert_string_not_equal(rc.auth, r.auth);
    assert_wallet(pan, b - 7350, 0);
    /* The day's debit counter holds the capture, not the hold. */
    assert_int_equal(stack_wallet_scalar(&S, pan, "usage_minor"), 7350);
    char where[160];
    snprintf(where, sizeof where,
             "mti = '0220' AND response_code = '00' AND original_stan = '%s' AND "
             "original_transmission_time = '%s' AND issuer_stan IS NOT NULL",
             pa.stan, pa.de7);
    assert_int_equal(
        stack_scalar(&S, stack_rows_sql("switch.authorizations", "TERM0001", &cs, where)), 1);
    assert_int_equal(stack_settle(&S, 5000), 0);
}

/* Within the 20 % tolerance above the hold: 100.00 held, 120.00 captured. */
static void test_completion_within_tolerance_above_the_hold(void **state)
{
    long long b;
    const char *pan = card(13, &b);
    struct sim_resp r;
    struct sim_sent pa;
    assert_string_equal(preauth(pan, 10000, &r, &pa), "00");
    assert_string_equal(complete(pan, 12000, &pa, &r, NULL), "00");
    assert_wallet(pan, b - 12000, 0);
}

/* Over the tolerance (120.01 on 100.00): 13, the hold as it was; a completion within it then
 * captures. */
static void test_completion_over_tolerance_is_declined_and_the_hold_kept(void **state)
{
    long long b;
    const char *pan = card(17, &b);
    struct sim_resp r;
    struct sim_sent pa;
    assert_string_equal(preauth(pan, 10000, &r, &pa), "00");
    assert_string_equal(complete(pan, 12001, &pa, &r, NULL), "13");
    assert_string_equal(r.auth, "");
    assert_wallet(pan, b, 10000);
    assert_string_equal(complete(pan, 9000, &pa, &r, NULL), "00");
    assert_wallet(pan, b - 9000, 0);
}

/* 100.00 held, +50.00 and +20.00 incremental (each its own approval code), the +20.00
 * reversed: 150.00 held; the completion captures up to 150.00 + 20 % = 180.00. */
static void test_incremental_then_completion(void **state)
{
    long long b;
    const char *pan = card(21, &b);
    struct sim_resp r, ri;
    struct sim_sent pa, i1, i2;
    struct sim_txn x, rev;
    assert_string_equal(preauth(pan, 10000, &r, &pa), "00");
    assert_string_equal(send_txn(SIM_T_INCREMENTAL, pan, 5000, &pa, &x, &ri, &i1), "00");
    assert_string_equal(ri.mti, "0110");
    assert_int_equal(strlen(ri.auth), 6);
    assert_string_not_equal(ri.auth, r.auth);
    assert_wallet(pan, b, 15000);
    assert_string_equal(send_txn(SIM_T_INCREMENTAL, pan, 2000, &pa, &x, &ri, &i2), "00");
    assert_wallet(pan, b, 17000);
    stack_reversal_of(&rev, pan, 2000, &i2);
    snprintf(rev.orig_mti, sizeof rev.orig_mti, "0100");
    rev.pin[0] = '\0';
    assert_string_equal(stack_rc(&S, "TERM0001", &rev, &r, NULL), "00");
    assert_int_equal(stack_settle(&S, 8000), 0);
    assert_wallet(pan, b, 15000); /* that increment only */
    assert_string_equal(complete(pan, 18001, &pa, &r, NULL), "13");
    assert_string_equal(complete(pan, 18000, &pa, &r, NULL), "00");
    assert_wallet(pan, b - 18000, 0);
    /* An increment of a completed pre-auth adds nothing. */
    assert_string_equal(send_txn(SIM_T_INCREMENTAL, pan, 1000, &pa, &x, &ri, NULL), "12");
    assert_wallet(pan, b - 18000, 0);
}

/* One completion per hold: the second (another STAN) is declined 12. */
static void test_second_completion_is_declined(void **state)
{
    long long b;
    const char *pan = card(25, &b);
    struct sim_resp r;
    struct sim_sent pa;
    assert_string_equal(preauth(pan, 10000, &r, &pa), "00");
    assert_string_equal(complete(pan, 6000, &pa, &r, NULL), "00");
    assert_string_equal(complete(pan, 1000, &pa, &r, NULL), "12");
    assert_wallet(pan, b - 6000, 0);
}

/* The terminal reverses its completion (0400, DE 90 naming the 0220): the capture is credited
 * back and the hold is as it was; then a completion captures it again. */
static void test_reversal_of_a_completion_restores_the_hold(void **state)
{
    long long b;
    const char *pan = card(29, &b);
    struct sim_resp r;
    struct sim_sent pa, cs;
    struct sim_txn rev;
    assert_string_equal(preauth(pan, 10000, &r, &pa), "00");
    assert_string_equal(complete(pan, 7000, &pa, &r, &cs), "00");
    assert_wallet(pan, b - 7000, 0);
    stack_reversal_of(&rev, pan, 7000, &cs);
    snprintf(rev.orig_mti, sizeof rev.orig_mti, "0220");
    rev.pin[0] = '\0';
    assert_string_equal(stack_rc(&S, "TERM0001", &rev, &r, NULL), "00");
    assert_int_equal(stack_settle(&S, 8000), 0);
    assert_wallet(pan, b, 10000);
    assert_string_equal(complete(pan, 8000, &pa, &r, NULL), "00");
    assert_wallet(pan, b - 8000, 0);
}

/* A hold past its expiry is released by the issuer's sweep (wallet.sim_expire_holds, run
 * here at once instead of within its 60 s); its completion is declined 12. */
static void test_expired_hold_is_released_and_its_completion_declined(void **state)
{
    long long b;
    const char *pan = card(33, &b);
    struct sim_resp r;
    struct sim_sent pa;
    assert_string_equal(preauth(pan, 10000, &r, &pa), "00");
    assert_wallet(pan, b, 10000);
    char sql[160];
    snprintf(sql, sizeof sql,
             "UPDATE wallet.holds SET expires_at = now() - interval '1 s' WHERE wallet_id = %lld",
             stack_wallet_scalar(&S, pan, "wallet_id"));
    assert_int_equal(stack_exec(&S, sql), 0);
    assert_true(stack_scalar(&S, "SELECT wallet.sim_expire_holds()") >= 1);
    assert_wallet(pan, b, 0);
    assert_string_equal(complete(pan, 5000, &pa, &r, NULL), "12");
    assert_wallet(pan, b, 0);
}

/* A repeat (0221, same DE 11 and DE 7) is answered like the 0220 — same code and approval
 * code — and moves nothing; the same 0220 sent again is a duplicate (94). */
static void test_repeat_0221_is_answered_like_the_original(void **state)
{
    long long b;
    const char *pan = card(37, &b);
    struct sim_resp r, r1, r2;
    struct sim_sent pa, cs;
    struct sim_txn x;
    assert_string_equal(preauth(pan, 10000, &r, &pa), "00");
    assert_string_equal(send_txn(SIM_T_COMPLETION, pan, 7350, &pa, &x, &r1, &cs), "00");
    stack_repeat_of(&x, "0221", &cs);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r2, NULL), "00");
    assert_string_equal(r2.mti, "0230");
    assert_string_equal(r2.auth, r1.auth);
    stack_repeat_of(&x, "0220", &cs);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r2, NULL), "94");
    assert_wallet(pan, b - 7350, 0);
}

/* What the switch answers itself: a completion of a pre-auth it never saw (25), of another
 * card's (12), an 0220 without DE 90 (12), another processing code than the pre-auth's (12),
 * and a completion with a PIN (30). None moves money. */
static void test_completions_the_switch_refuses(void **state)
{
    long long b, b2;
    const char *pan = card(41, &b), *other = card(45, &b2);
    struct sim_resp r;
    struct sim_sent pa, ghost;
    struct sim_txn x;
    memset(&ghost, 0, sizeof ghost);
    snprintf(ghost.stan, sizeof ghost.stan, "999998");
    snprintf(ghost.de7, sizeof ghost.de7, "0101000000");
    assert_string_equal(complete(pan, 100, &ghost, &r, NULL), "25");
    assert_string_equal(preauth(pan, 10000, &r, &pa), "00");
    assert_string_equal(complete(other, 100, &pa, &r, NULL), "12");
    txn_of(&x, SIM_T_COMPLETION, pan, 100, NULL);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r, NULL), "12");
    txn_of(&x, SIM_T_COMPLETION, pan, 100, &pa); /* a cash-out completing a purchase */
    snprintf(x.proc, sizeof x.proc, "010000");
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r, NULL), "12");
    txn_of(&x, SIM_T_COMPLETION, pan, 100, &pa);
    pin_of(41, x.pin);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r, NULL), "30");
    assert_wallet(pan, b, 10000);
    assert_wallet(other, b2, 0);
    assert_string_equal(complete(pan, 100, &pa, &r, NULL), "00");
    assert_wallet(pan, b - 100, 0);
}

/* A completion the issuer does not answer in time: 91 to the terminal and a reversal to the
 * issuer (write-ahead, store-and-forward), which gives the capture back and restores the hold,
 * whichever of the two the issuer sees first; a completion sent again then captures it. */
static void test_completion_timed_out_is_reversed_and_the_hold_restored(void **state)
{
    long long b;
    const char *pan = card(49, &b);
    struct sim_resp r;
    struct sim_sent pa;
    assert_string_equal(preauth(pan, 10000, &r, &pa), "00");
    stack_kill(S.issuer, SIGSTOP);
    assert_string_equal(complete(pan, 7350, &pa, &r, NULL), "91");
    stack_kill(S.issuer, SIGCONT);
    assert_int_equal(stack_settle(&S, 10000), 0);
    assert_wallet(pan, b, 10000);
    assert_string_equal(complete(pan, 7350, &pa, &r, NULL), "00");
    assert_wallet(pan, b - 7350, 0);
}

/* switchd killed (-9) while a completion is at the issuer, which captures it and answers
 * nobody: the next switchd finds it in switch.inflight and reverses it (recover_inflight) —
 * the capture comes back and the hold with it. */
static void test_completion_lost_in_a_crash_is_reversed_at_restart(void **state)
{
    long long b;
    const char *pan = card(53, &b);
    struct sim_resp r;
    struct sim_sent pa, cs;
    struct sim_txn x;
    assert_string_equal(preauth(pan, 10000, &r, &pa), "00");
    txn_of(&x, SIM_T_COMPLETION, pan, 7350, &pa);
    stack_kill(S.issuer, SIGSTOP);
    int fd = stack_send_nowait(&S, stack_term(&S, "TERM0001"), &x, &cs);
    assert_true(fd >= 0);
    usleep(500000);
    assert_int_equal(ts_stop(S.sw, SIGKILL, 5000) != -1, 1);
    stack_kill(S.issuer, SIGCONT);
    close(fd);
    assert_true(stack_wait_balance(&S, pan, b - 7350, 5000)); /* captured, nobody told */
    assert_int_equal(stack_start_switch(&S), 0);
    assert_true(stack_wait_balance(&S, pan, b, 10000));
    assert_int_equal(stack_settle(&S, 10000), 0);
    assert_wallet(pan, b, 10000);
    txn_of(&x, SIM_T_COMPLETION, pan, 7000, &pa);
    assert_string_equal(stack_rc_linked(&S, "TERM0001", &x, &r, 6000), "00");
    assert_wallet(pan, b - 7000, 0);
}

/* The demo's fuel pump through `acquirer-sim run` (sim/scenarios/demo.scn's two lines): the
 * completion names its pre-auth with original=, and each line shows the MAD demo card's
 * available balance before -> after: 100.00 held, then 73.50 captured and 26.50 back. */
static void test_acquirer_sim_runs_the_fuel_pump(void **state)
{
    const char *pan = "4890010000000012";
    long long b = stack_balance(&S, pan), held = stack_wallet_scalar(&S, pan, "held_minor");
    long long avail = b - held;
    char scn[400], out[400], host[32], state_dir[400], want[160];
    snprintf(scn, sizeof scn, "%s/fuel.scn", S.dir);
    snprintf(out, sizeof out, "%s/fuel.out", S.dir);
    snprintf(state_dir, sizeof state_dir, "%s/acq-fuel", S.dir);
    snprintf(host, sizeof host, "127.0.0.1:%u", S.acq_port);
    assert_int_equal(ts_write_file(scn, "defaults timeout-ms=10000\n"
                                        "type=preauth terminal=TERM0001 pan=4890010000000012 "
                                        "amount=100.00 id=fuel balances=4890010000000012 "
                                        "expect=00\n"
                                        "type=completion original=fuel amount=73.50 "
                                        "balances=4890010000000012 expect=00\n"),
                     0);
    const char *args[] = { "--state-dir", state_dir, "--host", host, "run", scn, NULL };
    int code = ts_run("acquirer-sim", args, out);
    size_t len = 0;
    char *text = ts_read_file(out, 0, &len);
    assert_non_null(text);
    printf("%s", text);
    assert_int_equal(code, 0);
    assert_non_null(strstr(text, "2 passed, 0 failed\n"));
    snprintf(want, sizeof want, "489001******0012 %lld.%02lld -> %lld.%02lld MAD", avail / 100,
             avail % 100, (avail - 10000) / 100, (avail - 10000) % 100);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want, "489001******0012 %lld.%02lld -> %lld.%02lld MAD",
             (avail - 10000) / 100, (avail - 10000) % 100, (avail - 7350) / 100,
             (avail - 7350) % 100);
    assert_non_null(strstr(text, want));
    free(text);
    assert_wallet(pan, b - 7350, held);
}

/* After all of the above — completions lower and higher than their holds, increments, a
 * completion reversed and captured again, an expired hold, declines — the switch's journal and
 * the issuer's ledger reconcile (atlas-reconcile: docs/reconcile.md, "Pre-authorization"). */
static void test_everything_reconciles(void **state)
{
    char out[400];
    assert_int_equal(stack_settle(&S, 10000), 0);
    snprintf(out, sizeof out, "%s/reconcile.out", S.dir);
    int code = stack_reconcile(&S, out, NULL);
    if (code != 0) {
        size_t len = 0;
        char *text = ts_read_file(out, 0, &len);
        printf("%s", text ? text : "(no output)\n");
        free(text);
    }
    assert_int_equal(code, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completion_lower_releases_the_rest),
        cmocka_unit_test(test_completion_within_tolerance_above_the_hold),
        cmocka_unit_test(test_completion_over_tolerance_is_declined_and_the_hold_kept),
        cmocka_unit_test(test_incremental_then_completion),
        cmocka_unit_test(test_second_completion_is_declined),
        cmocka_unit_test(test_reversal_of_a_completion_restores_the_hold),
        cmocka_unit_test(test_expired_hold_is_released_and_its_completion_declined),
        cmocka_unit_test(test_repeat_0221_is_answered_like_the_original),
        cmocka_unit_test(test_completions_the_switch_refuses),
        cmocka_unit_test(test_completion_timed_out_is_reversed_and_the_hold_restored),
        cmocka_unit_test(test_completion_lost_in_a_crash_is_reversed_at_restart),
        cmocka_unit_test(test_acquirer_sim_runs_the_fuel_pump),
        cmocka_unit_test(test_everything_reconciles),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
