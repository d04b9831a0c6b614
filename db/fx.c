/* The rate table's SQL (switch.fx_rates, 0007): reads for atlas-fx and switchd (blocking and
 * asynchronous, one row reader), and the all-or-nothing write of a rate file under a table
 * lock. Rates cross this boundary as exact decimal text and times as seconds since the epoch;
 * libatlas_fx does the arithmetic. */
#include "db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FX_SCHEMA_VERSION 7

/* Times go in as seconds and come out as seconds: whole seconds both ways (the table's CHECK).
 * $3 and $4 are a row's valid_from and valid_to, $1 a read's time. */
#define AT    "to_timestamp($1::bigint)"
#define VFROM "to_timestamp($3::bigint)"
#define VTO   "to_timestamp($4::bigint)"
/* "to_char(col" ISO_UTC: a time for an operator's message, in the rate file's form. */
#define ISO_UTC " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

#define FX_SELECT                                                                                  \
    "SELECT from_currency, to_currency, rate::text, spread_pct::text,"                             \
    " extract(epoch FROM valid_from)::bigint, extract(epoch FROM valid_to)::bigint,"               \
    " floor(extract(epoch FROM loaded_at))::bigint, source FROM switch.fx_rates"
#define FX_ORDER " ORDER BY from_currency, to_currency, valid_from"

/* The statement of each scope ($1: the time; DB_FX_ALL has no parameter). */
static const char *const scope_sql[] = {
    [DB_FX_ALL] = FX_SELECT FX_ORDER,
    [DB_FX_IN_FORCE] = FX_SELECT " WHERE valid_from <= " AT
                                 " AND (valid_to IS NULL OR valid_to > " AT ")" FX_ORDER,
    [DB_FX_NOT_EXPIRED] = FX_SELECT " WHERE valid_to IS NULL OR valid_to > " AT FX_ORDER,
};

/* The rows of a FX_SELECT result into a fresh array (NULL when there are none). 0, or
 * DB_E_SYS / DB_E_SQL (a value that does not fit) with err filled. */
static int read_rows(const PGresult *r, struct db_fx_rate **rows, size_t *n, struct db_error *err)
{
    int nt = PQntuples(r);
    struct db_fx_rate *out = nt ? calloc((size_t)nt, sizeof *out) : NULL;
    if (nt && !out) {
        dbc_set_error(err, DB_E_SYS, NULL, "out of memory");
        return DB_E_SYS;
    }
    bool ok = true;
    for (int i = 0; i < nt && ok; i++) {
        struct db_fx_rate *x = &out[i];
        ok =
            db_col_int(r, i, 0, &x->from_currency) && db_col_int(r, i, 1, &x->to_currency) &&
            db_col_text(r, i, 2, x->rate, sizeof x->rate) &&
            db_col_text(r, i, 3, x->spread_pct, sizeof x->spread_pct) &&
            db_col_i64(r, i, 4, &x->valid_from) &&
            (PQgetisnull(r, i, 5) ? (x->valid_to = -1, true) : db_col_i64(r, i, 5, &x->valid_to)) &&
            db_col_i64(r, i, 6, &x->loaded_at) && db_col_text(r, i, 7, x->source, sizeof x->source);
    }
    if (!ok) {
        free(out);
        dbc_set_error(err, DB_E_SQL, NULL, "a switch.fx_rates value does not fit its field");
        return DB_E_SQL;
    }
    *rows = out;
    *n = (size_t)nt;
    return 0;
}

static void put_time(char out[24], int64_t t)
{
    snprintf(out, 24, "%lld", (long long)t);
}

int db_fx_rates_read(const char *conninfo, enum db_fx_scope scope, int64_t at,
                     struct db_fx_rate **rows, size_t *n, struct db_error *err)
{
    *rows = NULL;
    *n = 0;
    if ((unsigned)scope > DB_FX_NOT_EXPIRED) {
        dbc_set_error(err, DB_E_INVALID, NULL, "unknown scope");
        return DB_E_INVALID;
    }
    PGconn *c = db_connect_at(conninfo, err);
    if (!c)
        return DB_E_CONN;
    int rc = db_schema_check(c, FX_SCHEMA_VERSION, err);
    if (rc == 0) {
        char t[24];
        put_time(t, at);
        const char *values[] = { t };
        PGresult *res =
            PQexecParams(c, scope_sql[scope], scope != DB_FX_ALL, NULL, values, NULL, NULL, 0);
        rc = PQresultStatus(res) == PGRES_TUPLES_OK ? read_rows(res, rows, n, err)
                                                    : db_pg_error(err, c, res, "reading rates");
        PQclear(res);
    }
    PQfinish(c);
    return rc;
}

struct load_job {
    db_fx_rates_cb cb;
    void *arg;
};

static void on_rates(void *arg, const struct db_reply *reply)
{
    struct load_job *job = arg;
    struct db_error e = { 0 };
    const struct db_error *err = reply->err;
    struct db_fx_rate *rows = NULL;
    size_t n = 0;
    if (err->code == 0 && read_rows(reply->res[0], &rows, &n, &e) != 0)
        err = &e;
    job->cb(job->arg, err, err->code == 0 ? rows : NULL, err->code == 0 ? n : 0);
    free(rows);
    free(job);
}

int db_fx_rates_load(struct db_client *c, enum db_fx_scope scope, int64_t at, db_fx_rates_cb cb,
                     void *arg)
{
    if ((unsigned)scope > DB_FX_NOT_EXPIRED)
        return DB_E_INVALID;
    struct load_job *job = malloc(sizeof *job);
    if (!job)
        return DB_E_SYS;
    *job = (struct load_job){ cb, arg };
    char t[24];
    put_time(t, at);
    const char *values[] = { t };
    int rc = db_query(c, scope_sql[scope], scope != DB_FX_ALL, values, on_rates, job);
    if (rc != 0)
        free(job);
    return rc;
}

/* ---- the write ------------------------------------------------------------------------- */

/* The parameters of one row, in the order the statements below number them: the statements
 * that need fewer take a prefix. */
enum { P_FROM, P_TO, P_VFROM, P_VTO, P_RATE, P_SPREAD, P_SOURCE, P_max };

static const char SQL_SAME[] =
    "SELECT 1 FROM switch.fx_rates WHERE from_currency = $1 AND to_currency = $2"
    " AND valid_from = " VFROM " AND valid_to IS NOT DISTINCT FROM " VTO
    " AND rate = $5::numeric AND spread_pct = $6::numeric";
/* The pair's open period that began before the new row, whether the new row starts now or
 * later (now(): the transaction's start), and the new row's start for a message. */
static const char SQL_OPEN[] =
    "SELECT to_char(valid_from" ISO_UTC ", " VFROM " >= now(), to_char(" VFROM ISO_UTC
    " FROM switch.fx_rates WHERE from_currency = $1 AND to_currency = $2"
    " AND valid_to IS NULL AND valid_from < " VFROM;
static const char SQL_CLOSE[] =
    "UPDATE switch.fx_rates SET valid_to = " VFROM " WHERE from_currency = $1"
    " AND to_currency = $2 AND valid_to IS NULL AND valid_from < " VFROM;
static const char SQL_CLASH[] =
    "SELECT to_char(valid_from" ISO_UTC ", coalesce(to_char(valid_to" ISO_UTC ", 'open')"
    " FROM switch.fx_rates WHERE from_currency = $1 AND to_currency = $2"
    " AND tstzrange(valid_from, valid_to) && tstzrange(" VFROM ", " VTO ") LIMIT 1";
static const char SQL_INSERT[] =
    "INSERT INTO switch.fx_rates (from_currency, to_currency, valid_from, valid_to, rate,"
    " spread_pct, source) VALUES ($1, $2, " VFROM ", " VTO ", $5, $6, $7)";

/* Runs one statement with the first n parameters of v. The result (tuples or command), or NULL
 * with err filled. */
static PGresult *run_row(PGconn *c, const char *sql, int n, const char *const *v,
                         struct db_error *err, int *rc)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    *rc = db_pg_error(err, c, res, "rate");
    PQclear(res);
    return NULL;
}

static int refuse(struct db_error *err, const char *fmt, const char *a, const char *b)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, a, b);
    dbc_set_error(err, DB_E_INVALID, NULL, msg);
    return DB_E_INVALID;
}

/* One row of a write, inside the transaction. */
static int write_row(PGconn *c, const struct db_fx_rate *x, const char *source,
                     struct db_fx_write_report *rep, struct db_error *err)
{
    char from[8], to[8], vf[24], vt[24];
    snprintf(from, sizeof from, "%d", x->from_currency);
    snprintf(to, sizeof to, "%d", x->to_currency);
    put_time(vf, x->valid_from);
    put_time(vt, x->valid_to);
    const char *v[P_max] = { from,          to,    vf, x->valid_to < 0 ? NULL : vt, x->rate,
                             x->spread_pct, source };
    int rc = 0;
    PGresult *r = run_row(c, SQL_SAME, P_SOURCE, v, err, &rc);
    bool same = r && PQntuples(r) > 0;
    PQclear(r);
    if (rc != 0 || same) {
        rep->unchanged += same;
        return rc;
    }
    /* Only an open row replaces an open period: a closed one would leave the pair without a
     * rate after it, which nobody asked for — it is an overlap like any other. */
    r = x->valid_to < 0 ? run_row(c, SQL_OPEN, P_VTO, v, err, &rc) : NULL;
    if (r && PQntuples(r) > 0) {
        bool future = db_col_bool(r, 0, 1);
        char since[32], end[32];
        db_col_text(r, 0, 0, since, sizeof since);
        db_col_text(r, 0, 2, end, sizeof end);
        PQclear(r);
        if (!future)
            return refuse(err,
                          "the open rate in force since %s would end at %s, in the past: a rate"
                          " that was in force is never rewritten (start the new one later)",
                          since, end);
        if (!(r = run_row(c, SQL_CLOSE, P_VTO, v, err, &rc)))
            return rc;
        rep->closed++;
    }
    PQclear(r);
    if (rc != 0)
        return rc;
    r = run_row(c, SQL_CLASH, P_RATE, v, err, &rc);
    if (r && PQntuples(r) > 0) {
        rc = refuse(err, "overlaps the period from %s to %s already loaded", PQgetvalue(r, 0, 0),
                    PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    if (rc != 0)
        return rc;
    PQclear(r = run_row(c, SQL_INSERT, P_max, v, err, &rc));
    rep->inserted += rc == 0;
    return rc;
}

int db_fx_rates_write(const char *conninfo, const struct db_fx_rate *rows, size_t n,
                      const char *source, struct db_fx_write_report *rep, struct db_error *err)
{
    *rep = (struct db_fx_write_report){ .failed = SIZE_MAX };
    PGconn *c = db_connect_at(conninfo, err);
    if (!c)
        return DB_E_CONN;
    int rc = db_schema_check(c, FX_SCHEMA_VERSION, err);
    if (rc == 0)
        rc = db_run(c, "BEGIN", err, "BEGIN");
    /* SHARE ROW EXCLUSIVE conflicts with itself and with every write, not with reads: two
     * loads run one after the other, each seeing what the other committed, and switchd keeps
     * reading meanwhile. */
    if (rc == 0)
        rc = db_run(c, "LOCK TABLE switch.fx_rates IN SHARE ROW EXCLUSIVE MODE", err, "lock");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = write_row(c, &rows[i], source, rep, err);
        if (rc == DB_E_INVALID || rc == DB_E_SQL)
            rep->failed = i;
    }
    if (rc == 0)
        rc = db_run(c, "COMMIT", err, "COMMIT");
    else
        *rep = (struct db_fx_write_report){ .failed = rep->failed }; /* nothing was written */
    PQfinish(c); /* closing a connection in a transaction rolls it back */
    return rc;
}
