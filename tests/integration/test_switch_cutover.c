/* DE 15 (settlement date) in switchd's answers: the business day of the request's receipt under
 * the configured `cutover` (common/bizday.h, the rule atlas-settle closes days by), computed from
 * the same instant the journal stores as created_at; a repeat answered from the journal carries
 * its original's. Real processes, real PostgreSQL; switchd is restarted with another cutover. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bizday.h"
#include "clock.h"
#include "sw_stack.h"

static struct stack S;

static int setup(void **state)
{
    struct stack_opts o = { .issuer = true };
    return stack_setup(state, &S, &o);
}

/* Restarts switchd with cutover (HH:MM) in its [switch] section (a later key wins), and waits
 * until its issuer link is up again (a purchase approved). */
static void restart_with_cutover(const char *cutover)
{
    FILE *f = fopen(S.switch_conf, "a");
    assert_non_null(f);
    fprintf(f, "[switch]\ncutover = %s\n", cutover);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(stack_restart_switch(&S, SIGTERM), 0);
    struct sim_txn probe;
    stack_card_txn(&probe, SIM_T_PURCHASE, "4890010000000012", 1);
    assert_string_equal(stack_rc_linked(&S, "TERM0001", &probe, NULL, 10000), "00");
}

/* The journal row's created_at of the request term sent as sent, in µs since the epoch. */
static int64_t created_us(const char *term, const struct sim_sent *sent)
{
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT (extract(epoch FROM created_at) * 1000000)::int8 FROM switch.authorizations"
             " WHERE terminal_id = '%s' AND stan = '%s' AND transmission_time = '%s'"
             " AND mti_class = '%.3s'",
             term, sent->stan, sent->de7, sent->mti);
    long long v = stack_scalar(&S, sql);
    assert_true(v > 0);
    return v;
}

/* MMDD of the calendar day days after today (UTC). */
static void calendar_mmdd(int days, char out[5])
{
    at_settlement_date((int64_t)at_wall_us() + days * AT_DAY_US, 0, out);
}

/* A purchase approved on TERM0001 whose answer carries DE 15: what was sent, and the answer. */
static void approved(uint64_t amount, struct sim_txn *x, struct sim_resp *r, struct sim_sent *sent)
{
    const char *rc = stack_purchase(&S, "TERM0001", "4890010000000012", amount, x, r, sent);
    assert_string_equal(rc, "00");
    assert_int_equal(r->mac, SIM_MAC_OK);
    assert_int_equal(strlen(r->settle_date), 4);
}

/* Cutover 00:00 (the default): DE 15 is today's UTC date on an approval, a decline the switch
 * makes itself, and a reversal's 0410; it is the business day of the journal's created_at. */
static void test_default_cutover_is_the_calendar_day(void **state)
{
    char today[5], before[5], after[5];
    struct sim_txn x, rev;
    struct sim_resp r;
    struct sim_sent sent;
    calendar_mmdd(0, before);
    approved(100, &x, &r, &sent);
    calendar_mmdd(0, after);
    if (strcmp(before, after) != 0) /* midnight passed during the request: either day */
        assert_true(strcmp(r.settle_date, before) == 0 || strcmp(r.settle_date, after) == 0);
    else
        assert_string_equal(r.settle_date, before);
    at_settlement_date(created_us("TERM0001", &sent), 0, today);
    assert_string_equal(r.settle_date, today);

    struct sim_txn bad;
    struct sim_resp rb;
    stack_card_txn(&bad, SIM_T_PURCHASE, "4999990000000098", 100); /* no BIN route */
    assert_string_equal(stack_rc(&S, "TERM0001", &bad, &rb, NULL), "15");
    assert_string_equal(rb.settle_date, r.settle_date);

    stack_reversal_of(&rev, "4890010000000012", 100, &sent);
    assert_string_equal(stack_rc(&S, "TERM0001", &rev, &rb, NULL), "00");
    assert_string_equal(rb.mti, "0430");
    assert_string_equal(rb.settle_date, r.settle_date);
}

/* A cutover that now is past: requests belong to tomorrow. Then a repeat (0201) answered from
 * the journal after a restart carries its original's DE 15: the original's created_at is moved a
 * day back, and the repeat says the day before the fresh request's. */
static void test_past_cutover_is_tomorrow_and_repeats_keep_theirs(void **state)
{
    int64_t now = (int64_t)at_wall_us();
    unsigned minute = (unsigned)((now % AT_DAY_US) / 60000000);
    if (minute == 0) { /* 00:00 means "the calendar day": wait for 00:01 */
        sleep(61 - (unsigned)((now % 60000000) / 1000000));
        minute = 1;
    }
    char cutover[16], tomorrow[5], today[5], journal[5];
    snprintf(cutover, sizeof cutover, "%02u:%02u", minute / 60, minute % 60);
    restart_with_cutover(cutover);

    struct sim_txn x;
    struct sim_resp r, rr;
    struct sim_sent sent;
    approved(200, &x, &r, &sent);
    calendar_mmdd(1, tomorrow);
    calendar_mmdd(0, today);
    /* (past midnight since the cutover was set, now is before it on a new day: today) */
    assert_true(strcmp(r.settle_date, tomorrow) == 0 || strcmp(r.settle_date, today) == 0);
    at_settlement_date(created_us("TERM0001", &sent), minute, journal);
    assert_string_equal(r.settle_date, journal);
    if ((unsigned)(((int64_t)at_wall_us() % AT_DAY_US) / 60000000) >= minute)
        assert_string_equal(r.settle_date, tomorrow);

    /* The original was received a day earlier, as far as the journal knows. */
    char sql[400];
    snprintf(sql, sizeof sql,
             "UPDATE switch.authorizations SET created_at = created_at - interval '1 day'"
             " WHERE terminal_id = 'TERM0001' AND stan = '%s' AND transmission_time = '%s'",
             sent.stan, sent.de7);
    assert_int_equal(stack_exec(&S, sql), 0);
    char original[5];
    at_settlement_date(created_us("TERM0001", &sent), minute, original);
    assert_string_not_equal(original, r.settle_date);
    restart_with_cutover(cutover); /* forgets the duplicate table: the journal answers */

    stack_repeat_of(&x, "0201", &sent);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &rr, NULL), "00");
    assert_string_equal(rr.mti, "0210");
    assert_string_equal(rr.auth, r.auth);
    assert_string_equal(rr.settle_date, original);

    struct sim_txn fresh;
    struct sim_resp rf;
    struct sim_sent sf;
    approved(300, &fresh, &rf, &sf);
    at_settlement_date(created_us("TERM0001", &sf), minute, journal);
    assert_string_equal(rf.settle_date, journal);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_cutover_is_the_calendar_day),
        cmocka_unit_test(test_past_cutover_is_tomorrow_and_repeats_keep_theirs),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
