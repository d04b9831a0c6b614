/* The rate table against a real PostgreSQL, each test in a database of its own: atlas-fx run as
 * a process (load the demo file, show, convert; a bad line or an overlap loads nothing; a load
 * twice changes nothing; a later open rate ends the one in force; a rate that was in force is
 * never rewritten; two loads at once), the typed reads of db/fx.c (blocking and on the async
 * client), the table's own constraints when the loader is bypassed, and migration 0007 applied
 * by a database owner who is not a superuser (btree_gist is a trusted extension). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db_testlib.h"
#include "fx.h"
#include "testsupport.h"

#define DAY 86400

struct fixture {
    char conninfo[256];
    char dir[512];
    PGconn *check;
    int64_t now;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *ci = dbt_create("fx");
    const char *dir = ts_tmpdir("fx");
    if (!f || !ci || !dir)
        return -1;
    snprintf(f->conninfo, sizeof f->conninfo, "%s", ci);
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    f->check = dbt_connect(f->conninfo);
    f->now = (int64_t)time(NULL);
    *state = f;
    return f->check ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    PQfinish(f->check);
    dbt_drop(f->conninfo);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* Runs atlas-fx --db CONNINFO with the arguments of a NULL-terminated list (at most 8); its
 * exit code, and what it printed (stdout and stderr) in a fresh allocation in *out (the caller
 * frees). */
static int fx_run(const struct fixture *f, char **out, const char *const *more)
{
    char path[600];
    snprintf(path, sizeof path, "%s/out.txt", f->dir);
    assert_int_equal(ts_write_file(path, ""), 0);
    const char *args[11] = { "--db", f->conninfo };
    for (size_t i = 0; more[i]; i++) {
        assert_true(i < 8);
        args[2 + i] = more[i];
    }
    int rc = ts_run("atlas-fx", args, path);
    *out = ts_read_file(path, 0, NULL);
    assert_non_null(*out);
    return rc;
}

/* Writes text as the rate file name in the test's directory; its path (static buffer). */
static const char *rate_file(const struct fixture *f, const char *name, const char *text)
{
    static char path[700];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    assert_int_equal(ts_write_file(path, text), 0);
    return path;
}

/* A time relative to now, in the rate file's form. */
static const char *when(const struct fixture *f, int64_t days, char buf[21])
{
    fx_time_format((f->now / DAY + days) * DAY, buf);
    return buf;
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static long long count_rates(const struct fixture *f)
{
    return dbt_scalar(f->check, "SELECT count(*) FROM switch.fx_rates");
}

#define T2026 1767225600 /* 2026-01-01T00:00:00Z, the demo file's valid_from */

/* ---- the tool ----------------------------------------------------------------------------- */

/* The demo file loads (12 pairs), shows with its DE 10 values and examples, and converts; a
 * second load of the same file changes nothing. */
static void test_load_show_convert(void **state)
{
    struct fixture *f = *state;
    char demo[600], *out;
    snprintf(demo, sizeof demo, "%s/fx/demo-rates.csv", dbt_src());
    assert_int_equal(fx_run(f, &out, ARGS("load", demo)), 0);
    assert_non_null(strstr(out, "12 new, 0 unchanged, 0 open period(s) ended"));
    free(out);
    assert_int_equal(count_rates(f), 12);
    assert_int_equal(dbt_scalar(f->check, "SELECT count(*) FROM switch.fx_rates WHERE"
                                          " from_currency = 504 AND to_currency = 952"
                                          " AND rate = 60.020066 AND spread_pct = 1.0"
                                          " AND valid_to IS NULL"
                                          " AND valid_from = '2026-01-01T00:00:00Z'"),
                     1);
    assert_int_equal(fx_run(f, &out, ARGS("show", "--at", "2026-06-01")), 0);
    assert_non_null(strstr(out, "rates in force at 2026-06-01T00:00:00Z (12)"));
    assert_non_null(strstr(out, "56062027")); /* MAD->XOF: 60.020066 × 1.01 */
    assert_non_null(strstr(out, "100.00 MAD = 6062 XOF"));
    assert_non_null(strstr(out, "100 XOF = 1.68 MAD"));
    assert_non_null(strstr(out, "100.00 MRU = 25.28 MAD"));
    assert_non_null(strstr(out, "100 XAF = 101 XOF"));
    free(out);
    assert_int_equal(fx_run(f, &out, ARGS("show", "--at", "2025-12-31T23:59:59Z")), 0);
    assert_non_null(strstr(out, "(0)"));
    free(out);
    /* 12.50 MAD: 1250 × 6062027 / 10^7 = 757.75 -> 758 XOF. */
    assert_int_equal(fx_run(f, &out, ARGS("--at", "2026-06-01", "convert", "12.50", "MAD", "XOF")),
                     0);
    assert_non_null(strstr(out, "12.50 MAD = 758 XOF"));
    assert_non_null(strstr(out, "DE 6 000000000758  DE 10 56062027  DE 51 952"));
    free(out);
    assert_int_equal(fx_run(f, &out, ARGS("--at", "2026-06-01", "convert", "500", "952", "MRU")),
                     0);
    assert_non_null(strstr(out, "500 XOF = 33.62 MRU")); /* 500 × 672373 / 10^5 = 3361.865 */
    free(out);
    /* Before the first period, and a pair with no rate: declines, never 1:1. */
    assert_int_equal(fx_run(f, &out, ARGS("--at", "2025-06-01", "convert", "1", "MAD", "XOF")), 1);
    assert_non_null(strstr(out, "first one begins at 2026-01-01T00:00:00Z (not_yet)"));
    free(out);
    assert_int_equal(fx_run(f, &out, ARGS("convert", "1", "MAD", "EUR")), 1);
    assert_non_null(strstr(out, "MAD->EUR: the pair has none (no_pair)"));
    free(out);
    assert_int_equal(fx_run(f, &out, ARGS("convert", "1.005", "MAD", "XOF")), 2);
    assert_non_null(strstr(out, "not an amount in MAD"));
    free(out);
    /* The same file again: every row is already there. */
    assert_int_equal(fx_run(f, &out, ARGS("load", demo)), 0);
    assert_non_null(strstr(out, "0 new, 12 unchanged, 0 open period(s) ended"));
    free(out);
    assert_int_equal(count_rates(f), 12);
    /* Usage errors. */
    assert_int_equal(fx_run(f, &out, ARGS("load")), 2);
    free(out);
    assert_int_equal(fx_run(f, &out, ARGS("frobnicate")), 2);
    assert_non_null(strstr(out, "unknown command 'frobnicate'"));
    free(out);
}

/* Every bad line is named with its number, and nothing is loaded — not even the good lines. */
static void test_bad_lines_load_nothing(void **state)
{
    struct fixture *f = *state;
    char *out;
    const char *p = rate_file(f, "bad.csv",
                              "# a comment\n"
                              "from,to,rate,spread_pct,valid_from,valid_to\n"
                              "MAD,XOF,60.02,1.0,2026-01-01T00:00:00Z,\n"
                              "MAD,MRU,-4,1.0,2026-01-01T00:00:00Z,\n"
                              "\n"
                              "MRU,ZZZ,0.25,1.0,2026-01-01T00:00:00Z,\n"
                              "XOF,XAF,1,1.0,2026-01-01T00:00:00,\n"
                              "XAF,XOF,1,1.0,2026-01-01T00:00:00Z,\n");
    assert_int_equal(fx_run(f, &out, ARGS("load", p)), 1);
    assert_non_null(strstr(out, "bad.csv:4: rate: '-4' is negative"));
    assert_non_null(strstr(out, "bad.csv:6: to: unknown currency 'ZZZ'"));
    assert_non_null(strstr(out, "bad.csv:7: valid_from:"));
    assert_null(strstr(out, "bad.csv:3:"));
    assert_null(strstr(out, "bad.csv:8:"));
    assert_non_null(strstr(out, "nothing loaded"));
    free(out);
    assert_int_equal(count_rates(f), 0);

    /* Two periods of one pair overlapping in the same file. */
    p = rate_file(f, "overlap.csv",
                  "from,to,rate,spread_pct,valid_from,valid_to\n"
                  "MAD,XOF,60,1.0,2026-01-01,2026-03-01\n"
                  "XOF,MAD,0.016,1.0,2026-01-01,\n"
                  "MAD,XOF,61,1.0,2026-02-01,\n");
    assert_int_equal(fx_run(f, &out, ARGS("load", p)), 1);
    assert_non_null(strstr(out, "overlap.csv:4: MAD->XOF overlaps the period of line 2"));
    free(out);
    assert_int_equal(count_rates(f), 0);

    /* No header, a wrong header, a file that does not exist. */
    p = rate_file(f, "nohead.csv", "MAD,XOF,60,1.0,2026-01-01,\n");
    assert_int_equal(fx_run(f, &out, ARGS("load", p)), 1);
    assert_non_null(strstr(out, "nohead.csv:1: the first line must be the header"));
    free(out);
    p = rate_file(f, "empty.csv", "# nothing\n");
    assert_int_equal(fx_run(f, &out, ARGS("load", p)), 1);
    assert_non_null(strstr(out, "no header line"));
    free(out);
    assert_int_equal(fx_run(f, &out, ARGS("load", "/nonexistent/rates.csv")), 1);
    free(out);
    assert_int_equal(count_rates(f), 0);
}

/* Reloading: a row that overlaps a period already loaded refuses the whole file; a new open
 * rate that starts later ends the open one at its valid_from; one that starts in the past
 * would rewrite what was in force and is refused. */
static void test_reload_rules(void **state)
{
    struct fixture *f = *state;
    char *out, a[21], b[21], c[21], text[1024];
    snprintf(text, sizeof text,
             "from,to,rate,spread_pct,valid_from,valid_to\n"
             "MAD,XOF,60,1.0,%s,\n"
             "XOF,MAD,0.016,1.0,2026-01-01,2026-02-01\n"
             "MRU,XOF,15,1.0,%s,\n",
             when(f, 10, a), when(f, -30, b));
    assert_int_equal(fx_run(f, &out, ARGS("load", rate_file(f, "a.csv", text))), 0);
    assert_non_null(strstr(out, "3 new"));
    free(out);

    /* A closed period overlapped: refused with both periods named, and the good row of the same
     * file (MRU->MAD) is not loaded either. */
    const char *p = rate_file(f, "b.csv",
                              "from,to,rate,spread_pct,valid_from,valid_to\n"
                              "MRU,MAD,0.25,1.0,2026-01-01,\n"
                              "XOF,MAD,0.017,1.0,2026-01-15,2026-03-01\n");
    assert_int_equal(fx_run(f, &out, ARGS("load", p)), 1);
    assert_non_null(strstr(out, "b.csv:3: refused: overlaps the period from"
                                " 2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z already loaded"));
    free(out);
    assert_int_equal(count_rates(f), 3);
    assert_int_equal(dbt_scalar(f->check, "SELECT count(*) FROM switch.fx_rates"
                                          " WHERE from_currency = 929 AND to_currency = 504"),
                     0);

    /* An open period that starts before the open one: it would overlap it, refused. */
    snprintf(text, sizeof text, "from,to,rate,spread_pct,valid_from,valid_to\nMAD,XOF,59,1.0,%s,\n",
             when(f, 5, c));
    assert_int_equal(fx_run(f, &out, ARGS("load", rate_file(f, "c.csv", text))), 1);
    assert_non_null(strstr(out, "refused: overlaps the period from"));
    free(out);

    /* A later open rate: MAD->XOF from now+20 d ends the one from now+10 d there. */
    snprintf(text, sizeof text, "from,to,rate,spread_pct,valid_from,valid_to\nMAD,XOF,61,1.0,%s,\n",
             when(f, 20, c));
    assert_int_equal(fx_run(f, &out, ARGS("load", rate_file(f, "d.csv", text))), 0);
    assert_non_null(strstr(out, "1 new, 0 unchanged, 1 open period(s) ended"));
    free(out);
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.fx_rates WHERE from_currency = 504 AND rate = 60"
             " AND valid_to = '%s'",
             c);
    assert_int_equal(dbt_scalar(f->check, sql), 1);
    /* A closed period inside the open one does not end it: an overlap, refused. */
    char d1[21], d2[21];
    snprintf(text, sizeof text,
             "from,to,rate,spread_pct,valid_from,valid_to\nMAD,XOF,62,1.0,%s,%s\n", when(f, 30, d1),
             when(f, 31, d2));
    assert_int_equal(fx_run(f, &out, ARGS("load", rate_file(f, "d2.csv", text))), 1);
    assert_non_null(strstr(out, "refused: overlaps the period from"));
    free(out);
    assert_int_equal(count_rates(f), 4);
    /* show at now+15 d: the first (60 × 1.01 = 60.6); at now+25 d: the second (61 × 1.01). */
    char at1[21], at2[21];
    assert_int_equal(fx_run(f, &out, ARGS("show", "--at", when(f, 15, at1))), 0);
    assert_non_null(strstr(out, "56060000"));
    free(out);
    assert_int_equal(fx_run(f, &out, ARGS("show", "--at", when(f, 25, at2))), 0);
    assert_non_null(strstr(out, "56161000"));
    assert_null(strstr(out, "56060000"));
    free(out);

    /* MRU->XOF has been open since now-30 d: a new rate from yesterday would rewrite what was
     * in force since then. */
    snprintf(text, sizeof text, "from,to,rate,spread_pct,valid_from,valid_to\nMRU,XOF,16,1.0,%s,\n",
             when(f, -1, c));
    assert_int_equal(fx_run(f, &out, ARGS("load", rate_file(f, "e.csv", text))), 1);
    assert_non_null(strstr(out, "in the past: a rate that was in force is never rewritten"));
    free(out);
    assert_int_equal(count_rates(f), 4);
    /* From tomorrow it is fine. */
    snprintf(text, sizeof text, "from,to,rate,spread_pct,valid_from,valid_to\nMRU,XOF,16,1.0,%s,\n",
             when(f, 1, c));
    assert_int_equal(fx_run(f, &out, ARGS("load", rate_file(f, "f.csv", text))), 0);
    assert_non_null(strstr(out, "1 open period(s) ended"));
    free(out);
    assert_int_equal(count_rates(f), 5);
    assert_int_equal(fx_run(f, &out, ARGS("show", "--all")), 0);
    assert_non_null(strstr(out, "every rate period loaded (5)"));
    free(out);
}

/* Two loads at once, each valid alone, of the same pair from the same instant at different
 * rates: the table lock makes the second wait for the first and then see its row; exactly one
 * succeeds, whichever runs first. */
static void test_concurrent_loads(void **state)
{
    struct fixture *f = *state;
    char a[21], text[512], pa[700], pb[700], oa[700], ob[700];
    snprintf(text, sizeof text, "from,to,rate,spread_pct,valid_from,valid_to\nMAD,XOF,60,1.0,%s,\n",
             when(f, 3, a));
    snprintf(pa, sizeof pa, "%s", rate_file(f, "ca.csv", text));
    snprintf(text, sizeof text, "from,to,rate,spread_pct,valid_from,valid_to\nMAD,XOF,62,1.0,%s,\n",
             when(f, 3, a));
    snprintf(pb, sizeof pb, "%s", rate_file(f, "cb.csv", text));
    snprintf(oa, sizeof oa, "%s/ca.out", f->dir);
    snprintf(ob, sizeof ob, "%s/cb.out", f->dir);
    const char *args_a[] = { "--db", f->conninfo, "load", pa, NULL };
    const char *args_b[] = { "--db", f->conninfo, "load", pb, NULL };
    pid_t x = ts_spawn("atlas-fx", args_a, oa), y = ts_spawn("atlas-fx", args_b, ob);
    assert_true(x > 0 && y > 0);
    int sx = ts_exit_code(ts_wait(x, 30000)), sy = ts_exit_code(ts_wait(y, 30000));
    assert_true((sx == 0 && sy == 1) || (sx == 1 && sy == 0));
    assert_int_equal(count_rates(f), 1);
}

/* ---- db/fx.c ------------------------------------------------------------------------------ */

struct loaded {
    bool done;
    int code;
    size_t n;
    struct db_fx_rate rows[8];
};

static void on_rates(void *arg, const struct db_error *err, const struct db_fx_rate *rows, size_t n)
{
    struct loaded *l = arg;
    l->done = true;
    l->code = err->code;
    l->n = n;
    for (size_t i = 0; i < n && i < 8; i++)
        l->rows[i] = rows[i];
}

static bool load_done(void *arg)
{
    return ((struct loaded *)arg)->done;
}

/* The typed write and reads: one expired period, one in force, one ahead. */
static void test_typed_reads(void **state)
{
    struct fixture *f = *state;
    int64_t day = f->now / DAY * DAY;
    const struct db_fx_rate in[] = {
        { 504, 952, "60.5", "1.0", day - 20 * DAY, day - 10 * DAY, 0, "" },
        { 504, 952, "60.020066", "1.25", day - 10 * DAY, day + 10 * DAY, 0, "" },
        { 504, 952, "61", "0", day + 10 * DAY, -1, 0, "" },
    };
    struct db_fx_write_report rep;
    struct db_error err = { 0 };
    assert_int_equal(db_fx_rates_write(f->conninfo, in, 3, "typed", &rep, &err), 0);
    assert_int_equal(rep.inserted, 3);
    assert_true(rep.failed == SIZE_MAX);

    struct db_fx_rate *rows;
    size_t n;
    assert_int_equal(db_fx_rates_read(f->conninfo, DB_FX_ALL, 0, &rows, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].rate, "60.5");
    assert_string_equal(rows[1].rate, "60.020066");
    assert_string_equal(rows[1].spread_pct, "1.25");
    assert_int_equal(rows[1].valid_from, day - 10 * DAY);
    assert_int_equal(rows[1].valid_to, day + 10 * DAY);
    assert_int_equal(rows[2].valid_to, -1);
    assert_string_equal(rows[2].source, "typed");
    assert_true(rows[2].loaded_at >= f->now - 60 && rows[2].loaded_at <= f->now + 60);
    free(rows);
    assert_int_equal(db_fx_rates_read(f->conninfo, DB_FX_IN_FORCE, f->now, &rows, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].rate, "60.020066");
    free(rows);
    /* Boundaries: valid_from inclusive, valid_to exclusive. */
    assert_int_equal(db_fx_rates_read(f->conninfo, DB_FX_IN_FORCE, day + 10 * DAY, &rows, &n, &err),
                     0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].rate, "61");
    free(rows);
    assert_int_equal(
        db_fx_rates_read(f->conninfo, DB_FX_IN_FORCE, day - 20 * DAY - 1, &rows, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(rows);

    /* What switchd will load: not expired, through the async client. */
    struct event_base *base = event_base_new();
    struct db_client *c;
    struct db_client_opts o = { .conninfo = f->conninfo };
    assert_int_equal(db_client_new(base, &o, &c), 0);
    struct loaded l = { 0 };
    assert_int_equal(db_fx_rates_load(c, DB_FX_NOT_EXPIRED, f->now, on_rates, &l), 0);
    assert_int_equal(dbt_run_until(base, load_done, &l, 30000), 0);
    assert_int_equal(l.code, 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.rows[0].rate, "60.020066");
    assert_string_equal(l.rows[1].rate, "61");
    db_client_free(c);
    event_base_free(base);

    /* A refused row in the middle: nothing of the call is written, the report names it. */
    const struct db_fx_rate more[] = {
        { 929, 504, "0.25", "1.0", day, -1, 0, "" },
        { 504, 952, "59", "1.0", day - 15 * DAY, day - 12 * DAY, 0, "" },
    };
    assert_int_equal(db_fx_rates_write(f->conninfo, more, 2, "more", &rep, &err), DB_E_INVALID);
    assert_int_equal(rep.failed, 1);
    assert_int_equal(rep.inserted, 0);
    assert_non_null(strstr(err.message, "overlaps the period from"));
    assert_int_equal(count_rates(f), 3);
    /* A row the table's CHECK refuses (the loader does not check spreads): DB_E_SQL. */
    const struct db_fx_rate wide[] = { { 929, 504, "0.25", "11", day, -1, 0, "" } };
    assert_int_equal(db_fx_rates_write(f->conninfo, wide, 1, "wide", &rep, &err), DB_E_SQL);
    assert_int_equal(rep.failed, 0);
    assert_string_equal(err.sqlstate, "23514");
    assert_int_equal(count_rates(f), 3);
}

/* The table refuses by itself what the loader would: an overlap (exclusion constraint), a
 * zero rate, a spread above 10 %, a pair of one currency, a period that ends before it
 * begins, a time with a fraction of a second. */
static void test_table_constraints(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(dbt_exec(f->check, "INSERT INTO switch.fx_rates (from_currency, to_currency,"
                                        " rate, spread_pct, valid_from, source) VALUES"
                                        " (504, 952, 60, 1, '2026-01-01T00:00:00Z', 'sql')"),
                     0);
    static const char *const bad[] = {
        "(504, 952, 61, 1, '2026-06-01T00:00:00Z', NULL)",       /* overlaps the open period */
        "(952, 504, 0, 1, '2026-01-01T00:00:00Z', NULL)",        /* rate 0 */
        "(952, 504, -1, 1, '2026-01-01T00:00:00Z', NULL)",       /* negative */
        "(952, 504, 10000000, 1, '2026-01-01T00:00:00Z', NULL)", /* DE 10 cannot carry it */
        "(952, 504, 0.016, 10.5, '2026-01-01T00:00:00Z', NULL)", /* spread */
        "(952, 504, 0.016, -0.1, '2026-01-01T00:00:00Z', NULL)", /* spread */
        "(952, 952, 1, 1, '2026-01-01T00:00:00Z', NULL)",        /* one currency */
        "(952, 504, 0.016, 1, '2026-01-01T00:00:00Z', '2025-01-01T00:00:00Z')",
        "(952, 504, 0.016, 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
        "(952, 504, 0.016, 1, '2026-01-01T00:00:00.5Z', NULL)",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char sql[400];
        snprintf(sql, sizeof sql,
                 "INSERT INTO switch.fx_rates (from_currency, to_currency, rate, spread_pct,"
                 " valid_from, valid_to, source) VALUES %s",
                 bad[i]);
        /* rewrite "(a, b, r, s, from, to)" with the source appended */
        char *close = strrchr(sql, ')');
        snprintf(close, sizeof sql - (size_t)(close - sql), ", 'sql')");
        PGresult *r = PQexec(f->check, sql);
        const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        /* Class 23: an integrity constraint refused it (not a typo in the statement). */
        bool refused = code && strncmp(code, "23", 2) == 0;
        PQclear(r);
        if (!refused)
            fail_msg("not refused by a constraint (%s): %s", code ? code : "ok", bad[i]);
    }
    assert_int_equal(count_rates(f), 1);
    /* The same pair in the other direction, and touching periods, are fine. */
    assert_int_equal(
        dbt_exec(f->check, "UPDATE switch.fx_rates SET valid_to = '2026-06-01T00:00:00Z'"), 0);
    assert_int_equal(dbt_exec(f->check, "INSERT INTO switch.fx_rates (from_currency, to_currency,"
                                        " rate, spread_pct, valid_from, source) VALUES"
                                        " (504, 952, 61, 1, '2026-06-01T00:00:00Z', 'sql'),"
                                        " (952, 504, 0.016, 1, '2026-01-01T00:00:00Z', 'sql')"),
                     0);
    assert_int_equal(count_rates(f), 3);
}

/* Migration 0007 needs no superuser: the database's owner creates btree_gist (trusted). */
static void test_migrate_as_owner(void **state)
{
    struct fixture *f = *state;
    char role[64], db[64], sql[256], conninfo[256], dir[600];
    snprintf(role, sizeof role, "atlas_t_owner_%d", (int)getpid());
    snprintf(db, sizeof db, "atlas_t_owned_%d", (int)getpid());
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", db);
    assert_int_equal(dbt_exec(f->check, sql), 0);
    snprintf(sql, sizeof sql, "DROP ROLE IF EXISTS %s", role);
    assert_int_equal(dbt_exec(f->check, sql), 0);
    snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE", role);
    assert_int_equal(dbt_exec(f->check, sql), 0);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s OWNER %s", db, role);
    assert_int_equal(dbt_exec(f->check, sql), 0);
    snprintf(conninfo, sizeof conninfo, "dbname=%s user=%s", db, role);
    snprintf(dir, sizeof dir, "%s/db/migrations", dbt_src());
    struct db_error err = { 0 };
    int rc = db_migrate_at(conninfo, dir, NULL, NULL, &err);
    if (rc != 0)
        print_error("migrate as %s: %s\n", role, err.message);
    PGconn *c = dbt_connect(conninfo);
    long long is_super = dbt_scalar(c, "SELECT count(*) FROM pg_roles"
                                       " WHERE rolname = current_user AND rolsuper");
    long long ext = dbt_scalar(c, "SELECT count(*) FROM pg_extension WHERE extname = 'btree_gist'");
    PQfinish(c);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
    assert_int_equal(dbt_exec(f->check, sql), 0);
    snprintf(sql, sizeof sql, "DROP ROLE %s", role);
    assert_int_equal(dbt_exec(f->check, sql), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(is_super, 0);
    assert_int_equal(ext, 1);
}

int main(void)
{
    if (!dbt_env_names_cluster("test_fx_db"))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_show_convert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_lines_load_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_typed_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_constraints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_as_owner, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
