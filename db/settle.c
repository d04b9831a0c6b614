/* Settlement's SQL (db_settle_read, docs/settle.md): one statement that aggregates a business
 * day of the journal (switch.authorizations) and the reversal queue (switch.reversal_queue) per
 * acquirer, issuer and currency. It lives here, not in settle/, because it reads only the
 * `switch` schema, and db/ owns that schema's SQL (docs/db.md); atlas-settle gets typed rows.
 * The sums are made by PostgreSQL (a day may hold millions of rows; only the few pairs come
 * back). */
#include "db_internal.h"

#include <stdlib.h>
#include <string.h>

#include "bizday.h"
#include "clock.h"
#include "fmt.h"

#define SETTLE_SCHEMA_VERSION 14 /* the conversion columns (0009), switch.advice_queue (0014) */

/* Parameters: $1, $2 the window in µs since the epoch; $3, $4 the journal partitions to read
 * (request_date is the DE 7 date, at most two days off the receipt time, as atlas-reconcile
 * assumes); $5 the first partition read for terminal reversals, a week earlier (a reversal
 * whose queue row was replayed from a spool late is dated by its terminal's 0400).
 *
 * A reversal is one per original, whatever the number of 0400s naming it: the queue row, keyed
 * by the original's identity, is the reversal; the terminal's 0400s only date it (the first
 * acknowledged one). Its time is at most the queue row's, so only queue rows created since the
 * window's start are candidates (the queue has no index on created_at: it is read in full from
 * there, and it holds reversals only). The identity join uses the journal's primary key ("C"
 * collation, like the journal's columns). A stand-in approval (DE 38 "S" + 5 digits, migration
 * 0014) is reversed by the advice queue's reversal of its advice, not by the reversal queue (whose
 * row of the same identity, after a timeout, reversed the forwarded request: another movement). */
#define KIND(a)                                                                                    \
    " CASE WHEN " a ".mti_class = '010' THEN 'H'"                                                  \
    " WHEN left(" a ".processing_code, 2) IN ('00', '01', '09', '10') THEN 'D'"                    \
    " WHEN left(" a ".processing_code, 2) IN ('20', '26') THEN 'C' ELSE 'O' END"

/* The sides a journal row `a` settles on (enum db_settle_side): one row 'B' (DE 4 in DE 49)
 * when it was not converted; two when it was, 'A' (DE 4 in DE 49) and 'I' (DE 6 in DE 51). */
#define SIDES(a)                                                                                   \
    " JOIN LATERAL (VALUES"                                                                        \
    " ('B', coalesce(" a ".currency, 0), coalesce(" a ".amount_minor, 0)),"                        \
    " ('A', coalesce(" a ".currency, 0), coalesce(" a ".amount_minor, 0)),"                        \
    " ('I', coalesce(" a ".billing_currency, 0), coalesce(" a ".billing_amount_minor, 0)))"        \
    " AS sd(side, currency, amount)"                                                               \
    " ON (sd.side = 'B') = (" a ".billing_currency IS NULL)"

/* A count and a sum over the rows of state `w` whose kind is in the SQL list k. */
#define CNT(w, k) " count(*) FILTER (WHERE what = '" w "' AND k IN " k "),"
#define SUM(w, k) " coalesce(sum(amount) FILTER (WHERE what = '" w "' AND k IN " k "), 0)::bigint"
#define MONEY     "('D', 'C')"

/* The statement is kept as written: one SQL clause per line reads better than the shape an
 * automatic formatter gives a long chain of literals. */
/* clang-format off */
static const char settle_sql[] =
    "WITH w AS (SELECT 'epoch'::timestamptz + $1::bigint * interval '1 microsecond' AS s,"
    "  'epoch'::timestamptz + $2::bigint * interval '1 microsecond' AS e),"
    " approved AS ("
    "  SELECT a.acquirer_id, coalesce(a.issuer_id, '') AS issuer_id,"
    "  sd.currency, sd.side," KIND("a") " AS k, sd.amount, 'approved' AS what"
    "  FROM switch.authorizations a CROSS JOIN w" SIDES("a")
    "  WHERE a.request_date BETWEEN $3::date AND $4::date"
    "  AND a.created_at >= w.s AND a.created_at < w.e"
    "  AND a.outcome = 'approved' AND a.mti_class IN ('010', '020', '022')),"
    " trev AS ("
    "  SELECT t.acquirer_id, t.terminal_id, t.original_stan, t.original_transmission_time,"
    "  min(t.created_at) AS at"
    "  FROM switch.authorizations t, w"
    "  WHERE t.request_date BETWEEN $5::date AND $4::date AND t.created_at < w.e"
    "  AND t.mti_class IN ('040', '042') AND t.outcome = 'approved'"
    "  AND t.original_stan IS NOT NULL AND t.original_transmission_time IS NOT NULL"
    "  GROUP BY 1, 2, 3, 4),"
    " rev AS ("
    "  SELECT o.acquirer_id, coalesce(o.issuer_id, q.issuer_id) AS issuer_id,"
    "  sd.currency, sd.side," KIND("o") " AS k, sd.amount,"
    "  CASE WHEN q.state = 'failed' THEN 'failed'"
    "  WHEN q.state = 'acked' OR tr.at IS NOT NULL THEN 'reversed' ELSE 'pending' END AS what"
    "  FROM (SELECT request_date, acquirer_id, terminal_id, stan, transmission_time, mti_class,"
    "  issuer_id, state, created_at, false AS advice FROM switch.reversal_queue"
    "  UNION ALL SELECT request_date, acquirer_id, terminal_id, stan, transmission_time,"
    "  mti_class, issuer_id, state, created_at, true FROM switch.advice_queue"
    "  WHERE kind = 'reversal') q CROSS JOIN w"
    "  JOIN switch.authorizations o ON o.request_date = q.request_date"
    "  AND o.acquirer_id = q.acquirer_id COLLATE \"C\""
    "  AND o.terminal_id = q.terminal_id COLLATE \"C\" AND o.stan = q.stan COLLATE \"C\""
    "  AND o.transmission_time = q.transmission_time COLLATE \"C\""
    "  AND o.mti_class = q.mti_class COLLATE \"C\""
    "  AND q.advice = (o.auth_code ~ '^S[0-9]{5}$')"
    SIDES("o")
    "  LEFT JOIN trev tr ON tr.acquirer_id = q.acquirer_id COLLATE \"C\""
    "  AND tr.terminal_id = q.terminal_id COLLATE \"C\" AND tr.original_stan = q.stan"
    "  AND tr.original_transmission_time = q.transmission_time"
    "  WHERE q.created_at >= w.s AND q.mti_class IN ('020', '022') AND o.outcome = 'approved'"
    "  AND least(q.created_at, tr.at) >= w.s AND least(q.created_at, tr.at) < w.e)"
    " SELECT acquirer_id, issuer_id, currency, side,"
    CNT("approved", "('H')")
    CNT("approved", "('D')") SUM("approved", "('D')") ","
    CNT("approved", "('C')") SUM("approved", "('C')") ","
    CNT("reversed", "('D')") SUM("reversed", "('D')") ","
    CNT("reversed", "('C')") SUM("reversed", "('C')") ","
    CNT("pending", MONEY) SUM("pending", MONEY) ","
    CNT("failed", MONEY) SUM("failed", MONEY)
    " FROM (SELECT * FROM approved UNION ALL SELECT * FROM rev) x"
    " GROUP BY 1, 2, 3, 4"
    " HAVING count(*) FILTER (WHERE k <> 'O') > 0"
    " ORDER BY acquirer_id COLLATE \"C\", issuer_id COLLATE \"C\", currency, side";
/* clang-format on */

/* One result row into p; false when a value does not fit. */
static bool read_pair(const PGresult *r, int i, struct db_settle_pair *p)
{
    int64_t *nums[] = { &p->holds,
                        &p->debits,
                        &p->debit_amount,
                        &p->credits,
                        &p->credit_amount,
                        &p->rev_debits,
                        &p->rev_debit_amount,
                        &p->rev_credits,
                        &p->rev_credit_amount,
                        &p->pending,
                        &p->pending_amount,
                        &p->failed,
                        &p->failed_amount };
    char side[2];
    if (!db_col_text(r, i, 0, p->acquirer_id, sizeof p->acquirer_id) ||
        !db_col_text(r, i, 1, p->issuer_id, sizeof p->issuer_id) ||
        !db_col_int(r, i, 2, &p->currency) || !db_col_text(r, i, 3, side, sizeof side))
        return false;
    p->side = side[0] == 'A'   ? DB_SETTLE_ACQUIRER
              : side[0] == 'I' ? DB_SETTLE_ISSUER
                               : DB_SETTLE_BOTH;
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++)
        if (!db_col_i64(r, i, 4 + (int)k, nums[k]))
            return false;
    return true;
}

static int read_pairs(const PGresult *r, struct db_settle_pair **rows, size_t *n,
                      struct db_error *err)
{
    int nt = PQntuples(r);
    struct db_settle_pair *out = nt ? calloc((size_t)nt, sizeof *out) : NULL;
    if (nt && !out) {
        dbc_set_error(err, DB_E_SYS, NULL, "out of memory");
        return DB_E_SYS;
    }
    for (int i = 0; i < nt; i++)
        if (!read_pair(r, i, &out[i])) {
            free(out);
            dbc_set_error(err, DB_E_SQL, NULL, "a settlement value does not fit its field");
            return DB_E_SQL;
        }
    *rows = out;
    *n = (size_t)nt;
    return 0;
}

/* "YYYY-MM-DD" of the UTC date of t_us, shifted by `days`. */
static void put_day(char out[11], int64_t t_us, int64_t days)
{
    int64_t y;
    unsigned m, d;
    at_civil_from_days(at_business_day(t_us, 0) + days, &y, &m, &d);
    at_put_date(out, y, m, d);
}

int db_settle_read(const char *conninfo, int64_t start_us, int64_t end_us,
                   struct db_settle_pair **rows, size_t *n, struct db_error *err)
{
    *rows = NULL;
    *n = 0;
    PGconn *c = db_connect_at(conninfo, err);
    if (!c)
        return DB_E_CONN;
    int rc = db_schema_check(c, SETTLE_SCHEMA_VERSION, err);
    /* A report: read-only, so that it runs on a hot standby too (docs/SCALING.md). */
    if (rc == 0) {
        PGresult *ro = PQexec(c, "SET default_transaction_read_only = on");
        if (PQresultStatus(ro) != PGRES_COMMAND_OK)
            rc = db_pg_error(err, c, ro, "read-only session");
        PQclear(ro);
    }
    if (rc == 0) {
        char s[AT_I64_CHARS], e[AT_I64_CHARS], lo[11], hi[11], rlo[11];
        at_put_i64(s, start_us);
        at_put_i64(e, end_us);
        put_day(lo, start_us, -2);
        put_day(hi, end_us, 2);
        put_day(rlo, start_us, -9);
        const char *values[] = { s, e, lo, hi, rlo };
        PGresult *res = PQexecParams(c, settle_sql, 5, NULL, values, NULL, NULL, 0);
        rc = PQresultStatus(res) == PGRES_TUPLES_OK ? read_pairs(res, rows, n, err)
                                                    : db_pg_error(err, c, res, "settlement");
        PQclear(res);
    }
    PQfinish(c);
    return rc;
}
