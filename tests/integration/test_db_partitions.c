/* The journal's upkeep (`atlas-db partitions`, docs/db.md "Journal upkeep"): day partitions
 * created ahead, the DEFAULT partition made to refuse rows — a journal record of a day with no
 * partition is refused loudly (23514 naming the guard) and alone, never stored there —,
 * `atlas-db status` / `partitions` failing when the DEFAULT partition holds rows, old days
 * detached by age, their finished reversals archived. Each test in a database of its own, the tool
 * run as a program. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db_testlib.h"
#include "testsupport.h"

/* The test's scratch directory (one for the whole program). */
static const char *scratch(void)
{
    static const char *dir;
    if (!dir)
        dir = ts_tmpdir("dbpart");
    return dir ? dir : "/tmp";
}

/* atlas-db --db conninfo args…: its exit status, its output in out (the caller frees). */
static int atlas_db(const char *conninfo, const char *args, char **out)
{
    char cmd[2000], path[400];
    snprintf(path, sizeof path, "%s/atlas-db.out", scratch());
    snprintf(cmd, sizeof cmd, "%s --db '%s' %s >'%s' 2>&1", ts_bin("atlas-db"), conninfo, args,
             path);
    int st = system(cmd);
    *out = ts_read_file(path, 0, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A database of its own for one test, migrated: its conninfo into conninfo, a connection. */
static PGconn *fresh_db(const char *tag, char conninfo[256])
{
    const char *ci = dbt_create(tag);
    assert_non_null(ci);
    snprintf(conninfo, 256, "%s", ci);
    PGconn *c = dbt_connect(conninfo);
    assert_non_null(c);
    return c;
}

static void on_record(void *arg, int status)
{
    *(int *)arg = status;
}

static bool all_called(void *arg)
{
    const int *st = arg;
    return st[0] != 99 && st[1] != 99;
}

/* Writes recs (n of 1 or 2) through a journal writer of its own on conninfo: their callbacks'
 * statuses into status. */
static void write_records(const char *conninfo, const struct db_auth_record *recs, int n,
                          int status[2])
{
    struct event_base *base = event_base_new();
    assert_non_null(base);
    char spool[400];
    snprintf(spool, sizeof spool, "%s/journal.spool", scratch());
    struct db_journal_opts o = {
        .conninfo = conninfo, .spool_path = spool, .connections = 1, .batch_delay_us = 50000
    };
    struct db_journal *j = NULL;
    assert_int_equal(db_journal_new(base, &o, &j), 0);
    status[0] = status[1] = 99;
    if (n < 2)
        status[1] = DB_OK;
    for (int i = 0; i < n; i++)
        assert_int_equal(db_journal_submit(j, &recs[i], on_record, &status[i]), 0);
    assert_int_equal(dbt_run_until(base, all_called, status, 30000), 0);
    db_journal_free(j);
    event_base_free(base);
}

static void upkeep_and_a_day_without_partition(void **state)
{
    (void)state;
    char conninfo[256];
    PGconn *c = fresh_db("part", conninfo);
    char *out = NULL;

    /* Upkeep: yesterday .. today + 3 (UTC) exist, the guard is in place, status is clean. */
    assert_int_equal(atlas_db(conninfo, "partitions --ahead 3", &out), 0);
    assert_non_null(strstr(out, "0 row(s), refuses rows"));
    free(out);
    assert_int_equal(
        dbt_scalar(c, "SELECT count(*) FROM generate_series(-1, 3) d WHERE to_regclass("
                      "'switch.authorizations_' || to_char((now() AT TIME ZONE 'UTC')::date + d,"
                      " 'YYYYMMDD')) IS NOT NULL"),
        5);
    assert_int_equal(atlas_db(conninfo, "partitions --ahead 3", &out), 0); /* idempotent */
    assert_non_null(strstr(out, "created 0 partition(s)"));
    free(out);

    /* Through the journal writer: a record dated 2099-01-01 (no partition) is refused alone,
     * with the guard's SQLSTATE (logged, naming the constraint); the one dated today is
     * committed. */
    struct db_auth_record rec[2];
    int st[2];
    dbt_record(&rec[0], 7, 1);
    memcpy(rec[0].request_date, "2099-01-01", 11);
    dbt_record(&rec[1], 7, 2); /* its DE 7 is a fixed day: today's instead */
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(rec[1].transmission_time, sizeof rec[1].transmission_time, "%m%d%H%M%S", &tm);
    strftime(rec[1].request_date, sizeof rec[1].request_date, "%Y-%m-%d", &tm);
    write_records(conninfo, rec, 2, st);
    assert_int_equal(st[0], DB_E_SQL);
    assert_int_equal(st[1], DB_OK);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.authorizations_default"), 0);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.authorizations"), 1);

    /* A row that got into DEFAULT anyway (guard dropped by hand): status and partitions say so
     * and exit 1. */
    assert_int_equal(dbt_exec(c, "ALTER TABLE switch.authorizations_default DROP CONSTRAINT"
                                 " authorizations_default_refuses"),
                     0);
    write_records(conninfo, rec, 1, st);
    assert_int_equal(st[0], DB_OK);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.authorizations_default"), 1);
    assert_int_equal(atlas_db(conninfo, "status", &out), 1);
    assert_non_null(strstr(out, "WARNING: 1 journal rows in the default partition"));
    free(out);
    assert_int_equal(atlas_db(conninfo, "partitions", &out), 1);
    assert_non_null(strstr(out, "1 row(s), refuses rows")); /* guard back, row still reported */
    free(out);
    assert_int_equal(dbt_exec(c, "DELETE FROM switch.authorizations_default"), 0);
    assert_int_equal(atlas_db(conninfo, "status", &out), 0);
    free(out);

    /* Old days detached by age (not dropped: they stay as tables for the archive). */
    assert_int_equal(
        dbt_scalar(c, "SELECT switch.create_authorization_partitions('2020-01-01', 2)"), 2);
    assert_int_equal(atlas_db(conninfo, "partitions --retain-days 30", &out), 0);
    assert_non_null(strstr(out, "detached switch.authorizations_20200101"));
    assert_non_null(strstr(out, "detached switch.authorizations_20200102"));
    free(out);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_inherits WHERE inhrelid ="
                                   " 'switch.authorizations_20200101'::regclass"),
                     0);
    assert_int_equal(dbt_scalar(c, "SELECT (to_regclass('switch.authorizations_20200101')"
                                   " IS NOT NULL)::int"),
                     1);
    PQfinish(c);
    dbt_drop(conninfo);
}

/* Migration 0018: the operators' lookup indexes (pan_hmac hash, rrn) are off the writer's hot
 * path — none on the parent or today's partition — and `atlas-db partitions` builds them on the
 * closed days (yesterday, UTC), where a lookup by card or RRN uses them; today's rows are still
 * found (a scan of one day). The day partitions are fillfactor 100. */
static void lookup_indexes_of_closed_days(void **state)
{
    (void)state;
    char conninfo[256];
    PGconn *c = fresh_db("lookup", conninfo);
    char *out = NULL;

    /* A record of yesterday and one of today (UTC), through the writer. */
    struct db_auth_record rec[2];
    int st[2];
    time_t now = time(NULL);
    for (int i = 0; i < 2; i++) {
        time_t t = now - (i == 0 ? 86400 : 0);
        struct tm tm;
        gmtime_r(&t, &tm);
        dbt_record(&rec[i], 8, (unsigned)i + 1);
        strftime(rec[i].transmission_time, sizeof rec[i].transmission_time, "%m%d%H%M%S", &tm);
        strftime(rec[i].request_date, sizeof rec[i].request_date, "%Y-%m-%d", &tm);
    }
    write_records(conninfo, rec, 2, st);
    assert_int_equal(st[0], DB_OK);
    assert_int_equal(st[1], DB_OK);

    assert_int_equal(atlas_db(conninfo, "partitions --ahead 1", &out), 0);
    assert_non_null(strstr(out, "built 2 lookup index(es) of closed days"));
    free(out);
    assert_int_equal(atlas_db(conninfo, "partitions --ahead 1", &out), 0); /* idempotent */
    assert_non_null(strstr(out, "built 0 lookup index(es) of closed days"));
    free(out);

#define DAY(d)                                                                                     \
    "'switch.authorizations_' || to_char((now() AT TIME ZONE 'UTC')::date " d ", 'YYYYMMDD')"
    /* Yesterday: the primary key and both lookup indexes, valid; today and the parent: the
     * primary key only. */
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_index WHERE indisvalid AND indrelid"
                                   " = (" DAY("- 1") ")::regclass"),
                     3);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_index x JOIN pg_class i ON i.oid ="
                                   " x.indexrelid JOIN pg_am a ON a.oid = i.relam WHERE"
                                   " a.amname = 'hash' AND indrelid = (" DAY("- 1") ")::regclass"),
                     1);
    assert_int_equal(
        dbt_scalar(c, "SELECT count(*) FROM pg_index WHERE indrelid = (" DAY("") ")::regclass"), 1);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_index WHERE indrelid ="
                                   " 'switch.authorizations'::regclass"),
                     1);
    /* Append-only storage settings on every day partition, old and new. */
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_class WHERE relname ~"
                                   " '^authorizations_[0-9]{8}$' AND NOT reloptions @>"
                                   " '{fillfactor=100,autovacuum_freeze_min_age=0}'"),
                     0);

    /* Both rows are found by RRN and by card; yesterday's by its index. */
    char sql[512];
    for (int i = 0; i < 2; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM switch.authorizations WHERE rrn = '%s' AND pan_hmac ="
                 " (SELECT pan_hmac FROM switch.authorizations WHERE rrn = '%s' LIMIT 1)",
                 rec[i].rrn, rec[i].rrn);
        assert_int_equal(dbt_scalar(c, sql), 1);
    }
    assert_int_equal(dbt_exec(c, "SET enable_seqscan = off"), 0);
    snprintf(sql, sizeof sql,
             "EXPLAIN SELECT * FROM switch.authorizations WHERE rrn = '%s' AND request_date ="
             " '%s'",
             rec[0].rrn, rec[0].request_date);
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    bool by_index = false;
    for (int i = 0; i < PQntuples(r); i++)
        by_index = by_index || strstr(PQgetvalue(r, i, 0), "_rrn") != NULL;
    PQclear(r);
    assert_true(by_index);
#undef DAY
    PQfinish(c);
    dbt_drop(conninfo);
}

/* Inserts a reversal of request_date day, in state state (and its acked_at when acked). */
static void queue_reversal(PGconn *c, const char *day, const char *stan, const char *state)
{
    char sql[1400];
    snprintf(
        sql, sizeof sql,
        "INSERT INTO switch.reversal_queue (request_date, acquirer_id, terminal_id, stan,"
        " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time, rrn,"
        " processing_code, amount_minor, currency, auth_code, pan_masked, pan_hmac, pan_sealed,"
        " reason, state, attempts, acked_at)"
        " VALUES ('%s', '100001', 'TERM0001', '%s', '0101120000', '0200', 'WALLET1', '000001',"
        " '0101120000', '000000000001', '000000', 1500, 504, '123456', '489001******0012',"
        " decode(repeat('ab', 32), 'hex'), '\\x0102', 'timeout', '%s', 1,"
        " CASE WHEN '%s' = 'acked' THEN now() END)",
        day, stan, state, state);
    assert_int_equal(dbt_exec(c, sql), 0);
}

/* Migration 0021: the upkeep moves the finished reversals (acked, failed) of the days it
 * detaches out of switch.reversal_queue into switch.reversal_archive, without their sealed PAN;
 * a pending reversal of those days, and any reversal of a later day, stays in the queue. */
static void finished_reversals_of_old_days_archived(void **state)
{
    (void)state;
    char conninfo[256];
    PGconn *c = fresh_db("revarch", conninfo);
    char *out = NULL;

    queue_reversal(c, "2020-01-01", "000001", "acked");
    queue_reversal(c, "2020-01-01", "000002", "failed");
    queue_reversal(c, "2020-01-02", "000003", "pending"); /* still owed: never moved */
    queue_reversal(c, "2999-01-01", "000004", "acked");   /* after the cutoff */
    assert_int_equal(atlas_db(conninfo, "partitions --retain-days 30", &out), 0);
    assert_non_null(strstr(out, "archived 2 finished reversal(s) of days before"));
    free(out);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.reversal_queue"), 2);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.reversal_queue WHERE stan IN"
                                   " ('000003', '000004')"),
                     2);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.reversal_archive WHERE stan IN"
                                   " ('000001', '000002') AND request_date = '2020-01-01'"
                                   " AND pan_masked = '489001******0012'"
                                   " AND octet_length(pan_hmac) = 32 AND amount_minor = 1500"),
                     2);
    /* Every column of the queue is archived except the sealed PAN (a column added to the queue
     * later must be added to the archive and to switch.archive_reversals). */
    assert_int_equal(dbt_scalar(c,
                                "SELECT count(*) FROM ((SELECT attname FROM pg_attribute"
                                " WHERE attrelid = 'switch.reversal_queue'::regclass"
                                " AND attnum > 0 AND NOT attisdropped AND attname <> 'pan_sealed'"
                                " EXCEPT SELECT attname FROM pg_attribute"
                                " WHERE attrelid = 'switch.reversal_archive'::regclass"
                                " AND attnum > 0) UNION ALL (SELECT 'pan_sealed' FROM"
                                " pg_attribute WHERE attrelid = 'switch.reversal_archive'::"
                                "regclass AND attname = 'pan_sealed')) x"),
                     0);
    /* Again: nothing more to move; a pending reversal cannot be archived by hand either. */
    assert_int_equal(atlas_db(conninfo, "partitions --retain-days 30", &out), 0);
    assert_non_null(strstr(out, "archived 0 finished reversal(s)"));
    free(out);
    PGresult *r = PQexec(c, "INSERT INTO switch.reversal_archive (reversal_id, request_date,"
                            " acquirer_id, terminal_id, stan, transmission_time, mti, issuer_id,"
                            " issuer_stan, issuer_transmission_time, processing_code,"
                            " amount_minor, currency, pan_masked, pan_hmac, extra_fields, reason,"
                            " state, attempts, next_attempt_at, created_at)"
                            " SELECT reversal_id, request_date, acquirer_id, terminal_id, stan,"
                            " transmission_time, mti, issuer_id, issuer_stan,"
                            " issuer_transmission_time, processing_code, amount_minor, currency,"
                            " pan_masked, pan_hmac, extra_fields, reason, state, attempts,"
                            " next_attempt_at, created_at FROM switch.reversal_queue"
                            " WHERE stan = '000003'");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME),
                        "reversal_archive_state_check");
    PQclear(r);
    PQfinish(c);
    dbt_drop(conninfo);
}

/* Inserts a stand-in advice of request_date day decided by instance inst-A, in state state. */
static void queue_advice(PGconn *c, const char *day, const char *stan, const char *state)
{
    char sql[1400];
    snprintf(sql, sizeof sql,
             "INSERT INTO switch.advice_queue (kind, request_date, acquirer_id, terminal_id, stan,"
             " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time,"
             " processing_code, amount_minor, currency, auth_code, stand_in_rc, pan_masked,"
             " pan_hmac, pan_sealed, reason, owner, queued_at, state)"
             " VALUES ('advice', '%s', '100001', 'TERM0001', '%s', '0101120000', '0200',"
             " 'WALLET1', '000001', '0101120000', '000000', 1500, 504, 'S00001', '00',"
             " '489001******0012', decode(repeat('ab', 32), 'hex'), '\\x0102', 'stand_in',"
             " 'inst-A', now(), '%s')",
             day, stan, state);
    assert_int_equal(dbt_exec(c, sql), 0);
}

/* The journal's approval of that advice (a stand-in approval, as switchd journals it). */
static void journal_approval(PGconn *c, const char *day, const char *stan)
{
    char sql[800];
    snprintf(sql, sizeof sql,
             "INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,"
             " transmission_time, mti, response_code, auth_code, outcome, created_at, stand_in)"
             " VALUES ('%s', '100001', 'TERM0001', '%s', '0101120000', '0200', '00', 'S00001',"
             " 'approved', now(), true)",
             day, stan);
    assert_int_equal(dbt_exec(c, sql), 0);
}

/* switch.recover_advices reverses a stand-in advice whose approval the journal does not hold
 * (the terminal never got it). A day the upkeep detached holds nothing any more: its advices
 * must not look orphaned then — that would reverse, at the next start of switchd, stand-in
 * approvals the terminals hold. A day still attached is recovered as before. And the upkeep
 * moves the detached days' finished advices to switch.advice_archive (migration 0022). */
static void advices_of_detached_days_not_recovered(void **state)
{
    (void)state;
    char conninfo[256];
    PGconn *c = fresh_db("advrec", conninfo);
    char *out = NULL;

    assert_int_equal(
        dbt_scalar(c, "SELECT switch.create_authorization_partitions('2020-01-01', 1)"), 1);
    queue_advice(c, "2020-01-01", "000011", "pending");
    journal_approval(c, "2020-01-01", "000011");
    assert_int_equal(dbt_scalar(c, "SELECT switch.recover_advices('inst-A')"), 0);
    assert_int_equal(atlas_db(conninfo, "partitions --retain-days 30", &out), 0);
    assert_non_null(strstr(out, "detached switch.authorizations_20200101"));
    free(out);
    assert_int_equal(dbt_scalar(c, "SELECT switch.recover_advices('inst-A')"), 0);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.advice_queue"
                                   " WHERE kind = 'reversal'"),
                     0);

    /* A day after the journal's oldest with no partition of its own (the upkeep late: the
     * journal refused its rows, so it cannot hold the approval): still recovered. */
    queue_advice(c, "2999-01-01", "000014", "pending");
    assert_int_equal(dbt_scalar(c, "SELECT switch.recover_advices('inst-A')"), 1);
    assert_int_equal(dbt_exec(c, "DELETE FROM switch.advice_queue WHERE stan = '000014'"), 0);
    /* Today (UTC): an advice whose approval the journal lacks is still recovered. */
    char today[11];
    dbt_utc_today(today, NULL);
    queue_advice(c, today, "000012", "acked");
    assert_int_equal(dbt_scalar(c, "SELECT switch.recover_advices('inst-A')"), 1);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.advice_queue WHERE kind ="
                                   " 'reversal' AND stan = '000012' AND reason = 'recovery'"),
                     1);
    /* The finished advices of the detached day leave the queue (without their sealed PAN); the
     * pending one stays, as does today's. */
    queue_advice(c, "2020-01-01", "000013", "acked");
    assert_int_equal(atlas_db(conninfo, "partitions --retain-days 30", &out), 0);
    assert_non_null(strstr(out, "archived 1 finished advice(s) of days before"));
    free(out);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.advice_archive WHERE stan ="
                                   " '000013' AND state = 'acked' AND auth_code = 'S00001'"),
                     1);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.advice_queue WHERE stan IN"
                                   " ('000011', '000012')"),
                     3); /* 000011's advice; 000012's advice and its reversal */
    assert_int_equal(dbt_scalar(c,
                                "SELECT count(*) FROM ((SELECT attname FROM pg_attribute"
                                " WHERE attrelid = 'switch.advice_queue'::regclass AND attnum > 0"
                                " AND NOT attisdropped AND attname <> 'pan_sealed' EXCEPT"
                                " SELECT attname FROM pg_attribute WHERE attrelid ="
                                " 'switch.advice_archive'::regclass AND attnum > 0) UNION ALL"
                                " (SELECT 'pan_sealed' FROM pg_attribute WHERE attrelid ="
                                " 'switch.advice_archive'::regclass AND attname = 'pan_sealed'))"
                                " x"),
                     0);
    PQfinish(c);
    dbt_drop(conninfo);
}

/* A request of day `day` forwarded by instance inst-A and never answered (its write-ahead row). */
static void inflight_row(PGconn *c, const char *day, const char *stan)
{
    char sql[1200];
    snprintf(sql, sizeof sql,
             "INSERT INTO switch.inflight (request_date, acquirer_id, terminal_id, stan,"
             " transmission_time, mti_class, mti, owner, issuer_id, issuer_stan,"
             " issuer_transmission_time, rrn, processing_code, amount_minor, currency,"
             " pan_masked, pan_hmac, pan_sealed, created_at)"
             " VALUES ('%s', '100001', 'TERM0001', '%s', '0101120000', '020', '0200', 'inst-A',"
             " 'WALLET1', '%s', '0101120000', '000000000021', '000000', 1500, 504,"
             " '489001******0012', decode(repeat('ab', 32), 'hex'), '\\x0102', now())",
             day, stan, stan);
    assert_int_equal(dbt_exec(c, sql), 0);
}

/* A notice receiver that keeps the last message (a RAISE WARNING of a function). */
static void keep_notice(void *arg, const PGresult *res)
{
    snprintf(arg, 512, "%s", PQresultErrorMessage(res));
}

/* switch.recover_inflight (at switchd's start, and at a takeover inside claim_reversals) and
 * switch.recover_transfers (at switchd's start) for rows of a day the upkeep has detached: the
 * journal can no longer take their 'lost' row (the DEFAULT partition refuses it), which used to
 * fail the whole function — switchd retried its start for ever, and every live instance's claim
 * of reversals failed with the dead one's takeover (migration 0023). Now the request in flight
 * is still reversed (the issuer may have applied it, and an approval would have settled its row
 * with its journal row), without the journal row; an unfinished transfer of such a day is left
 * as it is, named in a warning (its legs' journal rows, which a reversal is built from, left
 * with the day). Rows of attached days are recovered as before. */
static void recovery_of_detached_days(void **state)
{
    (void)state;
    char conninfo[256];
    PGconn *c = fresh_db("recdet", conninfo);
    char *out = NULL;

    assert_int_equal(
        dbt_scalar(c, "SELECT switch.create_authorization_partitions('2020-01-01', 1)"), 1);
    char today[11];
    dbt_utc_today(today, NULL);
    inflight_row(c, "2020-01-01", "000021");
    inflight_row(c, today, "000022");
    const char *transfer =
        "INSERT INTO switch.transfers (request_date, acquirer_id, terminal_id, stan,"
        " transmission_time, owner, sender_issuer, sender_pan_masked, sender_pan_hmac,"
        " sender_pan_sealed, recipient_issuer, recipient_pan_masked, recipient_pan_hmac,"
        " recipient_pan_sealed, amount_minor, currency, fee_minor, recipient_currency,"
        " leg_request_date, leg_transmission_time)"
        " VALUES ('%s', '100001', 'TERM0002', '%s', '0101120000', 'inst-A', 'WALLET1',"
        " '489001******0012', decode(repeat('ab', 32), 'hex'), '\\x0102', 'WALLET1',"
        " '489001******0013', decode(repeat('cd', 32), 'hex'), '\\x0103', 1500, 504, 0, 504,"
        " '%s', '0101120000')";
    char sql[1200];
    snprintf(sql, sizeof sql, transfer, "2020-01-01", "000031", "2020-01-01");
    assert_int_equal(dbt_exec(c, sql), 0);
    snprintf(sql, sizeof sql, transfer, today, "000032", today);
    assert_int_equal(dbt_exec(c, sql), 0);
    assert_int_equal(atlas_db(conninfo, "partitions --retain-days 30", &out), 0);
    assert_non_null(strstr(out, "detached switch.authorizations_20200101"));
    free(out);

    char notice[512] = "";
    PQsetNoticeReceiver(c, keep_notice, notice);
    PGresult *r = PQexec(c, "SELECT reversed, settled FROM switch.recover_inflight('inst-A')");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "2");
    assert_string_equal(PQgetvalue(r, 0, 1), "0");
    PQclear(r);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.inflight"), 0);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.reversal_queue WHERE reason ="
                                   " 'recovery' AND state = 'pending' AND stan IN"
                                   " ('000021', '000022')"),
                     2);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.authorizations"
                                   " WHERE outcome = 'lost' AND stan = '000022'"),
                     1);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.authorizations_default"), 0);
    assert_non_null(strstr(notice, "1 request(s) in flight of days before"));

    r = PQexec(c, "SELECT completed, failed FROM switch.recover_transfers('inst-A')");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    assert_string_equal(PQgetvalue(r, 0, 1), "1");
    PQclear(r);
    assert_non_null(strstr(notice, "1 unfinished transfer(s)"));
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.transfers WHERE stan = '000031'"
                                   " AND state = 'started'"),
                     1);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM switch.transfers WHERE stan = '000032'"
                                   " AND state = 'failed'"),
                     1);
    PQfinish(c);
    dbt_drop(conninfo);
}

/* Migrations 0024 and 0025: ANALYZE computes statistics only for the columns a plan can use,
 * from a 3,000-row sample on the hot tables. pvv and pin_offset (PIN verification data) and the
 * queues' sealed and hashed PANs never reach pg_statistic; a day partition created later takes
 * the parent's targets (PostgreSQL would give it the default ones); a column that the
 * operators' lookups use keeps its statistics; no column of a hot table is left at the default
 * target (one added later would bring the 30,000-row sample back). */
static void statistics_only_where_plans_use_them(void **state)
{
    (void)state;
    char conninfo[256];
    PGconn *c = fresh_db("stats", conninfo);

    assert_int_equal(dbt_exec(c, "INSERT INTO wallet.wallets (pan_hmac, pan_masked, expiry,"
                                 " currency, pin_method, pvki, pvv)"
                                 " SELECT sha256(int4send(i)), '489001******0012', '2812', 504,"
                                 " 'pvv', 1, lpad((i % 10000)::text, 4, '0')"
                                 " FROM generate_series(1, 300) i"),
                     0);
    assert_int_equal(dbt_exec(c, "INSERT INTO wallet.wallets (pan_hmac, pan_masked, expiry,"
                                 " currency, pin_method, pin_offset)"
                                 " SELECT sha256(int4send(-i)), '489001******0013', '2812', 504,"
                                 " 'ibm3624', lpad((i % 10000)::text, 4, '0')"
                                 " FROM generate_series(1, 300) i"),
                     0);
    assert_int_equal(
        dbt_scalar(c, "SELECT switch.create_authorization_partitions('2030-01-01', 1)"), 1);
    assert_int_equal(dbt_exec(c, "INSERT INTO switch.authorizations (request_date, acquirer_id,"
                                 " terminal_id, stan, transmission_time, mti, response_code,"
                                 " outcome, created_at, pan_hmac, lat_total_us)"
                                 " SELECT '2030-01-01', '100001', 'TERM0001',"
                                 " lpad(i::text, 6, '0'), '0101120000', '0200', '00', 'approved',"
                                 " now(), sha256(int4send(i)), i FROM generate_series(1, 300) i"),
                     0);
    assert_int_equal(dbt_exec(c, "ANALYZE wallet.wallets; ANALYZE switch.authorizations_20300101"),
                     0);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_stats WHERE schemaname = 'wallet'"
                                   " AND tablename = 'wallets' AND attname IN ('pvv', 'pin_offset',"
                                   " 'pvki')"),
                     0);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_stats WHERE schemaname = 'wallet'"
                                   " AND tablename = 'wallets' AND attname = 'pan_hmac'"),
                     1);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_stats WHERE schemaname = 'switch'"
                                   " AND tablename = 'authorizations_20300101'"
                                   " AND attname IN ('lat_total_us', 'response_code')"),
                     0);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_stats WHERE schemaname = 'switch'"
                                   " AND tablename = 'authorizations_20300101'"
                                   " AND attname IN ('pan_hmac', 'outcome', 'stan')"),
                     3);
    /* Every column at target 0 on the new partition is at 0 on the parent, and back. */
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_attribute p FULL JOIN (SELECT *"
                                   " FROM pg_attribute WHERE attrelid ="
                                   " 'switch.authorizations_20300101'::regclass) k USING (attname)"
                                   " WHERE p.attrelid = 'switch.authorizations'::regclass"
                                   " AND p.attnum > 0"
                                   " AND p.attstattarget IS DISTINCT FROM k.attstattarget"),
                     0);
    assert_int_equal(
        dbt_scalar(c, "SELECT count(*) FROM pg_attribute WHERE attrelid ="
                      " 'switch.authorizations'::regclass AND attnum > 0 AND attstattarget = 0"),
        14);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_attribute WHERE attrelid IN"
                                   " ('switch.authorizations'::regclass, 'wallet.ledger'::regclass,"
                                   " 'wallet.requests'::regclass, 'wallet.wallets'::regclass,"
                                   " 'switch.reversal_queue'::regclass,"
                                   " 'switch.authorizations_20300101'::regclass)"
                                   " AND attnum > 0 AND NOT attisdropped"
                                   " AND attstattarget NOT IN (0, 10)"),
                     0);
    queue_reversal(c, "2030-01-01", "000001", "pending");
    queue_reversal(c, "2030-01-01", "000002", "acked");
    assert_int_equal(dbt_exec(c, "ANALYZE switch.reversal_queue"), 0);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_stats WHERE schemaname = 'switch'"
                                   " AND tablename = 'reversal_queue'"
                                   " AND attname IN ('pan_sealed', 'pan_hmac', 'pan_masked')"),
                     0);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_stats WHERE schemaname = 'switch'"
                                   " AND tablename = 'reversal_queue' AND attname = 'state'"),
                     1);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_attribute WHERE attrelid IN"
                                   " ('switch.inflight'::regclass, 'switch.advice_queue'::regclass,"
                                   " 'switch.transfers'::regclass) AND attname ~ 'pan_'"
                                   " AND attstattarget <> 0"),
                     0);
    PQfinish(c);
    dbt_drop(conninfo);
}

int main(void)
{
    if (!dbt_env_names_cluster("test_db_partitions"))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(upkeep_and_a_day_without_partition),
        cmocka_unit_test(lookup_indexes_of_closed_days),
        cmocka_unit_test(finished_reversals_of_old_days_archived),
        cmocka_unit_test(advices_of_detached_days_not_recovered),
        cmocka_unit_test(recovery_of_detached_days),
        cmocka_unit_test(statistics_only_where_plans_use_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
