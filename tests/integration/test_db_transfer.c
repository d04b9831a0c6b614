/* A transfer row's writes that switchd sends again after PostgreSQL came back (switch/xfer_rows.c,
 * docs/transfers.md "When the database goes away"), against a real PostgreSQL, in a database of
 * their own, through the async client: db_transfer_abandon makes `failed` only a row that is
 * `started`, of this owner, and that has no leg in switch.inflight or the journal; the row
 * changes of db_transfer_update never leave a final state, so a late or repeated one (a retry
 * landing after a later change) changes nothing; and a job failed at once because the client has
 * no connection says it never reached PostgreSQL (db_error_never_sent). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_testlib.h"
#include "fmt.h"

/* The rows' request day: today (UTC), as a switch writes it. A fixed day falls before the
 * journal's first day partition (a database gets them from the day before its creation on)
 * from two days later, and recovery takes such a day for one the upkeep detached (0023). */
#define TODAY "((now() AT TIME ZONE 'UTC')::date)"

struct fixture {
    char conninfo[256];
    PGconn *check;
    struct event_base *base;
    struct db_client *db;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *ci = dbt_create("xfer");
    if (!f || !ci)
        return -1;
    snprintf(f->conninfo, sizeof f->conninfo, "%s", ci);
    f->check = dbt_connect(f->conninfo);
    f->base = event_base_new();
    struct db_client_opts o = { .conninfo = f->conninfo };
    *state = f;
    if (!f->check || !f->base || db_client_new(f->base, &o, &f->db) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->db)
        db_client_free(f->db);
    if (f->base)
        event_base_free(f->base);
    PQfinish(f->check);
    dbt_drop(f->conninfo);
    free(f);
    return 0;
}

/* A transfer row of terminal TERM0001 with this STAN, in state, owned by owner; its id. */
static long long add_row(struct fixture *f, const char *stan, const char *state, const char *owner)
{
    char sql[1400];
    snprintf(sql, sizeof sql,
             "INSERT INTO switch.transfers (request_date, acquirer_id, terminal_id, stan,"
             " transmission_time, owner, state, sender_issuer, sender_pan_masked, sender_pan_hmac,"
             " sender_pan_sealed, recipient_issuer, recipient_pan_masked, recipient_pan_hmac,"
             " recipient_pan_sealed, amount_minor, currency, fee_minor, recipient_currency,"
             " leg_request_date, leg_transmission_time)"
             " VALUES (" TODAY ", '00000100001', 'TERM0001', '%s', '1206120000', '%s', '%s',"
             " 'WALLET1', '489001******0012', decode(repeat('ab', 32), 'hex'), '\\x00',"
             " 'WALLET2', '489002******0029', decode(repeat('cd', 32), 'hex'), '\\x00',"
             " 1000, 504, 200, 952, " TODAY ", '1206120001')",
             stan, owner, state);
    if (dbt_exec(f->check, sql) != 0)
        return -1;
    snprintf(sql, sizeof sql, "SELECT transfer_id FROM switch.transfers WHERE stan = '%s'", stan);
    return dbt_scalar(f->check, sql);
}

/* The row's state, as a number: 0 started, 1 aft, 2 failed, 3 other. */
static long long state_of(struct fixture *f, const char *stan)
{
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT CASE state WHEN 'started' THEN 0 WHEN 'aft' THEN 1 WHEN 'failed' THEN 2"
             " ELSE 3 END FROM switch.transfers WHERE stan = '%s'",
             stan);
    return dbt_scalar(f->check, sql);
}

struct done {
    bool called;
    struct db_error err;
};

static void on_done(void *arg, const struct db_error *err)
{
    struct done *d = arg;
    d->called = true;
    d->err = *err;
}

static bool is_done(void *arg)
{
    return ((struct done *)arg)->called;
}

static void sender_of(const char *stan, struct db_request_id *id)
{
    memset(id, 0, sizeof *id);
    dbt_utc_today(id->request_date, NULL);
    snprintf(id->acquirer_id, sizeof id->acquirer_id, "00000100001");
    snprintf(id->terminal_id, sizeof id->terminal_id, "TERM0001");
    snprintf(id->stan, sizeof id->stan, "%s", stan);
    snprintf(id->transmission_time, sizeof id->transmission_time, "1206120000");
    snprintf(id->mti, sizeof id->mti, "0200");
}

/* db_transfer_abandon of the row of this STAN by owner, run to its answer: its error code. */
static int abandon(struct fixture *f, const char *stan, const char *owner)
{
    struct db_request_id id;
    struct done d = { 0 };
    sender_of(stan, &id);
    assert_int_equal(db_transfer_abandon(f->db, &id, owner, on_done, &d), 0);
    assert_int_equal(dbt_run_until(f->base, is_done, &d, 20000), 0);
    return d.err.code;
}

static void test_abandon_only_a_row_no_leg_left(void **state)
{
    struct fixture *f = *state;
    assert_true(add_row(f, "000001", "started", "sw-a") > 0);
    assert_true(add_row(f, "000002", "aft", "sw-a") > 0);
    assert_true(add_row(f, "000003", "started", "sw-b") > 0);
    long long leg = add_row(f, "000004", "started", "sw-a");
    assert_true(leg > 0);
    long long journaled = add_row(f, "000005", "started", "sw-a");
    assert_true(journaled > 0);
    /* 000004's AFT is in flight; 000005's AFT is journaled (a declined one: still a leg). */
    char sql[1600];
    snprintf(sql, sizeof sql,
             "INSERT INTO switch.inflight (request_date, acquirer_id, terminal_id, stan,"
             " transmission_time, mti_class, mti, owner, issuer_id, issuer_stan,"
             " issuer_transmission_time, processing_code, amount_minor, currency, pan_masked,"
             " pan_hmac, pan_sealed, created_at)"
             " VALUES (" TODAY ", '00000100001', switch.transfer_leg_terminal(%lld, 'aft'),"
             " switch.transfer_leg_stan(%lld), '1206120001', '020', '0200', 'sw-a', 'WALLET1',"
             " '000777', '1206120001', '100000', 1200, 504, '489001******0012',"
             " decode(repeat('ab', 32), 'hex'), '\\x00', now())",
             leg, leg);
    assert_int_equal(dbt_exec(f->check, sql), 0);
    snprintf(sql, sizeof sql,
             "INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,"
             " transmission_time, mti, issuer_id, processing_code, amount_minor, currency,"
             " response_code, pan_masked, pan_hmac, outcome, created_at)"
             " VALUES (" TODAY ", '00000100001', switch.transfer_leg_terminal(%lld, 'aft'),"
             " switch.transfer_leg_stan(%lld), '1206120001', '0200', 'WALLET1', '100000', 1200,"
             " 504, '51', '489001******0012', decode(repeat('ab', 32), 'hex'), 'declined', now())",
             journaled, journaled);
    assert_int_equal(dbt_exec(f->check, sql), 0);

    for (int i = 1; i <= 5; i++) {
        char stan[7];
        snprintf(stan, sizeof stan, "00000%d", i);
        assert_int_equal(abandon(f, stan, "sw-a"), 0);
    }
    assert_int_equal(abandon(f, "000009", "sw-a"), 0); /* no row at all: nothing, no error */
    assert_int_equal(state_of(f, "000001"), 2);
    assert_int_equal(dbt_scalar(f->check,
                                "SELECT count(*) FROM switch.transfers WHERE stan ="
                                " '000001' AND response_code = '96' AND failed_leg = 'xfr'"),
                     1);
    assert_int_equal(state_of(f, "000002"), 1); /* the AFT approved: recovery's, not this */
    assert_int_equal(state_of(f, "000003"), 0); /* another instance's */
    assert_int_equal(state_of(f, "000004"), 0); /* a leg in flight */
    assert_int_equal(state_of(f, "000005"), 0); /* a leg journaled */
    /* Again (a retry that lands twice): nothing more. */
    assert_int_equal(abandon(f, "000001", "sw-a"), 0);
    assert_int_equal(state_of(f, "000001"), 2);
}

/* The changes a retry may deliver late or twice, in any order: a final state is never left. */
static void test_changes_never_leave_a_final_state(void **state)
{
    struct fixture *f = *state;
    long long id = add_row(f, "000001", "started", "sw-a");
    assert_true(id > 0);
    struct db_transfer_change failed, aft;
    memset(&failed, 0, sizeof failed);
    failed.transfer_id = id;
    failed.state = "failed";
    failed.recipient_amount_minor = -1;
    memcpy(failed.oct_rc, "96", 3);
    memcpy(failed.response_code, "96", 3);
    failed.failed_leg = "oct";
    aft = failed;
    aft.state = "aft";
    aft.failed_leg = NULL;
    memset(aft.oct_rc, 0, sizeof aft.oct_rc);
    memset(aft.response_code, 0, sizeof aft.response_code);
    memcpy(aft.aft_rc, "00", 3);
    memcpy(aft.auth_code, "123456", 7);
    struct done d = { 0 };
    assert_int_equal(db_transfer_update(f->db, &failed, on_done, &d), 0);
    assert_int_equal(dbt_run_until(f->base, is_done, &d, 20000), 0);
    assert_int_equal(d.err.code, 0);
    memset(&d, 0, sizeof d);
    assert_int_equal(db_transfer_update(f->db, &aft, on_done, &d), 0); /* the earlier, late */
    assert_int_equal(dbt_run_until(f->base, is_done, &d, 20000), 0);
    assert_int_equal(d.err.code, 0);
    assert_int_equal(state_of(f, "000001"), 2);
    memset(&d, 0, sizeof d);
    assert_int_equal(db_transfer_update(f->db, &failed, on_done, &d), 0); /* twice */
    assert_int_equal(dbt_run_until(f->base, is_done, &d, 20000), 0);
    assert_int_equal(state_of(f, "000001"), 2);
}

/* A client with no database to reach fails a job at once, and says it never left. */
static void test_never_sent(void **state)
{
    struct fixture *f = *state;
    struct db_client *c;
    struct db_client_opts o = { .conninfo = "host=/nonexistent-atlas-socket-dir port=1 "
                                            "connect_timeout=1" };
    assert_int_equal(db_client_new(f->base, &o, &c), 0);
    struct db_request_id id;
    sender_of("000001", &id);
    struct done d = { 0 };
    assert_int_equal(db_transfer_abandon(c, &id, "sw-a", on_done, &d), 0);
    assert_int_equal(dbt_run_until(f->base, is_done, &d, 20000), 0);
    assert_int_equal(d.err.code, DB_E_CONN);
    assert_true(db_error_never_sent(&d.err));
    db_client_free(c);
    struct db_error other = { .code = DB_E_CONN };
    snprintf(other.message, sizeof other.message, "server closed the connection unexpectedly");
    assert_false(db_error_never_sent(&other));
}

int main(void)
{
    if (!dbt_env_names_cluster("test_db_transfer"))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_abandon_only_a_row_no_leg_left, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_never_leave_a_final_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_sent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
