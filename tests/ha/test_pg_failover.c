/* PostgreSQL failover under load (issue 15): the whole stack (sw_stack: hsm-sim, issuer-sim,
 * switchd, acquirer-sim load, as processes) on a private cluster with a synchronous streaming
 * replica (db/pg.sh replica). switchd and issuer-sim are given multi-host connection strings
 * (`host=primary,replica port=p,r target_session_attrs=read-write`). The reports first run on the
 * replica (read-only); then, under load, the primary is stopped (immediate: a crash) and the
 * replica promoted (`pg_ctl promote`): the load goes on, switchd's journal spool covers the gap,
 * and atlas-reconcile against the new primary finds no approval and no reversal lost. */
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

#include "db_testlib.h"
#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;
static struct dbt_cluster PG;
static char Dir[256];
static char Hosts[1500]; /* "host=P,R port=p,r target_session_attrs=read-write" */
static char ReplicaHost[700], ReplicaPort[16];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* now (UTC) as atlas-reconcile's --from wants it, minus back seconds. */
static void iso_now(char *out, size_t cap, int back)
{
    time_t t = time(NULL) - back;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Prefixes conninfo (a "dbname=… [user=…]" of the stack) with both servers. */
static int multi_host(char *conninfo, size_t cap)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", conninfo);
    int n = snprintf(conninfo, cap, "%s %s", Hosts, tmp);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* switchd.conf's db line replaced by the stack's (now multi-host) switch_conninfo. */
static int rewrite_conf_db(void)
{
    char *conf = ts_read_file(S.switch_conf, 0, NULL);
    if (!conf)
        return -1;
    char *line = strstr(conf, "\ndb = \"");
    if (!line) {
        free(conf);
        return -1;
    }
    char *end = strchr(line + 1, '\n');
    size_t cap = strlen(conf) + 1024;
    char *out = malloc(cap);
    if (!out || !end) {
        free(conf);
        free(out);
        return -1;
    }
    *line = '\0';
    snprintf(out, cap, "%s\ndb = \"%s\"%s", conf, S.switch_conninfo, end);
    int rc = ts_write_file(S.switch_conf, out);
    free(conf);
    free(out);
    return rc;
}

static int setup(void **state)
{
    const char *dir = ts_tmpdir("pgfo");
    if (!dir)
        return -1;
    snprintf(Dir, sizeof Dir, "%s", dir);
    if (dbt_cluster_start(&PG, Dir, true) != 0 || dbt_cluster_replica(&PG, true) != 0) {
        fprintf(stderr, "pgfo: cannot start the primary and its replica\n");
        return -1;
    }
    const char *ports = getenv("PGPORT"); /* "p,r" now */
    const char *comma = ports ? strchr(ports, ',') : NULL;
    const char *hcomma = strchr(PG.ha_hosts, ',');
    if (!comma || !hcomma)
        return -1;
    snprintf(ReplicaPort, sizeof ReplicaPort, "%s", comma + 1);
    snprintf(ReplicaHost, sizeof ReplicaHost, "%s", hcomma + 1);
    snprintf(Hosts, sizeof Hosts, "host=%s port=%s target_session_attrs=read-write", PG.ha_hosts,
             ports);
    struct stack_opts o = { .issuer = true, .issuer_timeout_ms = 1500, .wallets = 200 };
    if (stack_setup(state, &S, &o) != 0 || stack_seed_load_terminals(&S, 4) != 0)
        return -1;
    /* The stack's programs were started with "dbname=…" and the PG* lists (the same thing to
     * libpq); now switchd and issuer-sim get the multi-host string itself on their command line
     * and configuration, as an operator would write it. */
    if (multi_host(S.conninfo, sizeof S.conninfo) != 0 ||
        multi_host(S.switch_conninfo, sizeof S.switch_conninfo) != 0 ||
        multi_host(S.issuer_conninfo, sizeof S.issuer_conninfo) != 0 || rewrite_conf_db() != 0)
        return -1;
    if (stack_restart_switch(&S, SIGTERM) == -1)
        return -1;
    ts_stop(S.issuer, SIGTERM, 10000);
    S.issuer = 0;
    return stack_start_issuer(&S);
}

static int teardown(void **state)
{
    int rc = stack_teardown(state);
    dbt_cluster_ctl(&PG, "replica stop");
    dbt_cluster_ctl(&PG, "stop");
    return rc;
}

/* A recorded load of secs at rate on the load terminals, reversals owed for 60 s. */
static int load_start(const char *tag, unsigned rate, unsigned secs, struct stack_load *l)
{
    char state[64];
    snprintf(state, sizeof state, "acq-%s", tag);
    const struct stack_load_opts o = { .tag = tag,
                                       .rate = rate,
                                       .seconds = secs,
                                       .warmup = "0",
                                       .connections = 4,
                                       .load_terminals = true,
                                       .record = true,
                                       .timeout_ms = 2500,
                                       .reversal_deadline_s = 60,
                                       .any_error_rate = true,
                                       .state = state };
    return stack_load_start(&S, &o, l);
}

/* atlas-reconcile with the terminals' record on switch_db and issuer_db, from from: its exit
 * code (the report printed when it is not 0). */
static int reconcile(const char *tag, const char *switch_db, const char *issuer_db,
                     const char *from, const char *record)
{
    char out[400];
    snprintf(out, sizeof out, "%s/%s.reconcile", S.dir, tag);
    const char *args[] = { "--switch-db", switch_db,  "--issuer-db", issuer_db, "--from",
                           from,          "--record", record,        NULL };
    unlink(out);
    int code = ts_run("atlas-reconcile", args, out);
    if (code != 0) {
        char *text = ts_read_file(out, 0, NULL);
        fprintf(stderr, "atlas-reconcile (%s) exit %d:\n%.4000s\n", tag, code, text ? text : "");
        free(text);
    }
    return code;
}

/* The replica has replayed everything the primary has written so far. */
static int replica_caught_up(const char *db)
{
    PGconn *p = dbt_connect(S.conninfo);
    char rci[1000];
    snprintf(rci, sizeof rci, "host=%s port=%s target_session_attrs=any %s", ReplicaHost,
             ReplicaPort, db);
    PGconn *r = dbt_connect(rci);
    int rc = -1;
    if (p && r) {
        PGresult *res = PQexec(p, "SELECT pg_current_wal_lsn()::text");
        char lsn[64] = "";
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
            snprintf(lsn, sizeof lsn, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT (pg_last_wal_replay_lsn() >= '%s'::pg_lsn)::int", lsn);
        for (int i = 0; lsn[0] && i < 100 && rc != 0; i++) {
            if (dbt_scalar(r, sql) == 1)
                rc = 0;
            else
                usleep(100000);
        }
    }
    PQfinish(p);
    PQfinish(r);
    return rc;
}

/* The database name part of the stack's conninfo ("dbname=…"). */
static const char *stack_dbname(char *out, size_t cap)
{
    const char *d = strstr(S.conninfo, "dbname=");
    snprintf(out, cap, "%.*s", d ? (int)strcspn(d, " ") : 0, d ? d : "");
    return out;
}

/* Reports on the replica: a recorded load, then atlas-reconcile and atlas-settle reading a hot
 * standby (read-only transactions; a write would fail there with 25006). */
static void reports_run_on_the_replica(void **state)
{
    (void)state;
    char from[32], db[128], rci[1000];
    iso_now(from, sizeof from, 2);
    struct stack_load l;
    assert_int_equal(load_start("replica", 50, 3, &l), 0);
    assert_int_equal(stack_load_wait(&l, 90000), 0);
    assert_int_equal(stack_settle(&S, 30000), 0);
    assert_int_equal(replica_caught_up(stack_dbname(db, sizeof db)), 0);
    snprintf(rci, sizeof rci, "host=%s port=%s target_session_attrs=any %s", ReplicaHost,
             ReplicaPort, db);
    PGconn *r = dbt_connect(rci);
    assert_non_null(r);
    assert_int_equal(dbt_scalar(r, "SELECT pg_is_in_recovery()::int"), 1);
    PQfinish(r);
    assert_int_equal(reconcile("replica", rci, rci, from, l.record), 0);

    char date[16], out[400];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%Y-%m-%d", &tm);
    snprintf(out, sizeof out, "%s/settle-replica.out", S.dir);
    const char *args[] = { "--date", date, "--switch-db", rci, "--issuer-db", rci, NULL };
    int code = ts_run("atlas-settle", args, out);
    if (code != 0) {
        char *text = ts_read_file(out, 0, NULL);
        fprintf(stderr, "atlas-settle on the replica exit %d:\n%.3000s\n", code, text ? text : "");
        free(text);
    }
    assert_int_equal(code, 0);
}

/* The failover: load at 100/s for 14 s; at 3 s the primary crashes (immediate stop), at 4 s the
 * replica is promoted. The load must go on after the promotion, nothing may be left owed, and
 * atlas-reconcile on the new primary must find every approval and reversal. Bounded: < 60 s
 * from the crash to the reconciled end. */
static void primary_lost_under_load_replica_promoted(void **state)
{
    (void)state;
    char from[32];
    iso_now(from, sizeof from, 2);
    struct stack_load l;
    assert_int_equal(load_start("failover", 100, 14, &l), 0);
    double t0 = now_s();
    usleep(3000000);
    double crash = now_s();
    assert_int_equal(dbt_cluster_ctl(&PG, "stop --immediate"), 0);
    usleep(1000000);
    assert_int_equal(dbt_cluster_ctl(&PG, "promote"), 0);
    time_t promoted = time(NULL);
    fprintf(stderr, "pgfo: primary crashed at %.1f s, replica promoted at %.1f s\n", crash - t0,
            now_s() - t0);

    assert_int_equal(stack_load_wait(&l, 90000), 0);
    assert_int_equal(stack_settle(&S, 40000), 0);
    /* switchd saw its connections go, answered from its spool in the gap (records acknowledged
     * DB_SPOOLED) and came back on the new primary. */
    assert_true(ts_wait_file_contains(S.switch_log, "db_connection_lost", 1000));
    long long spooled = stack_metric(&S, "atlas_journal_spooled_total");
    fprintf(stderr, "pgfo: %lld journal records answered from the spool during the gap\n", spooled);
    assert_true(spooled > 0);
    PGconn *c = dbt_connect(S.conninfo);
    assert_non_null(c);
    assert_int_equal(dbt_scalar(c, "SELECT pg_is_in_recovery()::int"), 0);
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.authorizations WHERE outcome = 'approved' "
             "AND created_at > to_timestamp(%lld) + interval '1 second'",
             (long long)promoted);
    long long after = dbt_scalar(c, sql);
    PQfinish(c);
    fprintf(stderr, "pgfo: %lld approvals journaled after the promotion\n", after);
    assert_true(after > 0);
    /* Every approval the terminals got, every reversal owed: on the new primary, reached
     * through the multi-host string (atlas-reconcile's exit 0 = no mismatch). */
    assert_int_equal(reconcile("failover", S.conninfo, S.issuer_conninfo, from, l.record), 0);
    /* The operators' tool through the same string: atlas-db status (schema current, nothing in
     * the DEFAULT partition) on the new primary. */
    char out[400];
    snprintf(out, sizeof out, "%s/atlas-db-status.out", S.dir);
    const char *args[] = { "--db", S.conninfo, "status", NULL };
    assert_int_equal(ts_run("atlas-db", args, out), 0);
    double took = now_s() - crash;
    fprintf(stderr, "pgfo: crash to reconciled in %.1f s\n", took);
    assert_true(took < 60.0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reports_run_on_the_replica),
        cmocka_unit_test(primary_lost_under_load_replica_promoted),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    return rc;
}
