/* The reads of atlas-reconcile (fetch.h). Lists of keys and identities travel as PostgreSQL
 * array parameters (text, each element quoted), so each kind of lookup is one statement. */
#include "fetch.h"

#include "db.h"

#include "issuer.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errcap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errcap, fmt, ap);
    va_end(ap);
    return -1;
}

/* Arrays of text for "= ANY($n)": db.h's builder; a failure sticks, so only the text is checked. */
static void arr_add(struct db_array *a, const char *v)
{
    (void)db_array_elem(a, v, false);
}

static const char *arr_text(struct db_array *a)
{
    return db_array_close(a) == 0 ? a->p : NULL;
}

/* Runs a statement expecting rows; NULL with err filled on failure. */
static PGresult *query(PGconn *conn, const char *what, const char *sql, int n,
                       const char *const *values, char *err, size_t errcap)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    fail(err, errcap, "%s: %s", what, msg ? msg : PQerrorMessage(conn));
    PQclear(r);
    return NULL;
}

/* Runs sql with n values and hands its rows to each (which returns 0, or -1 when it ran out of
 * memory). A NULL among the values is an array that ran out of memory already. 0, or -1 with
 * err filled ("what: ..."). */
static int query_rows(PGconn *conn, const char *what, const char *sql, int n,
                      const char *const *values,
                      int (*each)(struct rc_ctx *c, const PGresult *r, void *arg), struct rc_ctx *c,
                      void *arg, char *err, size_t errcap)
{
    for (int i = 0; i < n; i++)
        if (!values[i])
            return fail(err, errcap, "%s: out of memory", what);
    PGresult *r = query(conn, what, sql, n, values, err, errcap);
    if (!r)
        return -1;
    int rc = each(c, r, arg);
    PQclear(r);
    return rc == 0 ? 0 : fail(err, errcap, "%s: out of memory", what);
}

static void col(char *dst, size_t cap, const PGresult *r, int row, int c)
{
    const char *v = PQgetisnull(r, row, c) ? "" : PQgetvalue(r, row, c);
    snprintf(dst, cap, "%s", v);
}

static long long num(const PGresult *r, int row, int c, long long dflt)
{
    return PQgetisnull(r, row, c) ? dflt : strtoll(PQgetvalue(r, row, c), NULL, 10);
}

static bool yes(const PGresult *r, int row, int c)
{
    return !PQgetisnull(r, row, c) && PQgetvalue(r, row, c)[0] == 't';
}

static enum rc_rev rev_of(const char *state)
{
    if (strcmp(state, "pending") == 0)
        return RC_REV_PENDING;
    if (strcmp(state, "acked") == 0)
        return RC_REV_ACKED;
    if (strcmp(state, "failed") == 0)
        return RC_REV_FAILED;
    return RC_REV_NONE;
}

int rc_fetch_begin(PGconn *conn, char *err, size_t errcap)
{
    static const char *const steps[] = {
        "SET TimeZone = 'UTC'",
        "SET client_min_messages = warning",
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        PGresult *r = query(conn, "start a read-only snapshot", steps[i], 0, NULL, err, errcap);
        if (!r)
            return -1;
        PQclear(r);
    }
    return 0;
}

int rc_fetch_window(PGconn *sw, const char *from, const char *to, unsigned slack_s,
                    const char *issuer, struct rc_window *w, char *err, size_t errcap)
{
    char slack[16];
    snprintf(slack, sizeof slack, "%u", slack_s);
    const char *v[] = { from, to, slack };
    /* Timestamps without an offset are UTC (the session's time zone, rc_fetch_begin). */
    static const char sql[] =
        "WITH x AS (SELECT coalesce($2::timestamptz, now()) AS t,"
        " coalesce($1::timestamptz, coalesce($2::timestamptz, now()) - interval '24 hours') AS f,"
        " make_interval(secs => $3::int) AS s)"
        " SELECT to_char(f, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
        " to_char(t, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
        " to_char(f - s, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
        " to_char(t + s, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
        " (extract(epoch FROM t) * 1000000)::bigint, f < t FROM x";
    PGresult *r = query(sw, "window", sql, 3, v, err, errcap);
    if (!r)
        return -1;
    if (PQntuples(r) != 1 || !yes(r, 0, 5)) {
        PQclear(r);
        return fail(err, errcap, "window: --from must be before --to");
    }
    memset(w, 0, sizeof *w);
    col(w->from, sizeof w->from, r, 0, 0);
    col(w->to, sizeof w->to, r, 0, 1);
    col(w->lo, sizeof w->lo, r, 0, 2);
    col(w->hi, sizeof w->hi, r, 0, 3);
    w->to_us = (uint64_t)num(r, 0, 4, 0);
    w->slack_s = slack_s;
    snprintf(w->issuer, sizeof w->issuer, "%s", issuer ? issuer : "");
    PQclear(r);
    return 0;
}

/* The columns every switch item query returns, in this order (see add_rows). The amount and
 * currency are what the issuer moved: DE 6 in DE 51 for a converted request (migration 0009),
 * else DE 4 in DE 49. */
#define SW_COLS                                                                                    \
    " a.request_date::text, a.acquirer_id, a.terminal_id, a.stan, a.transmission_time, a.mti,"     \
    " a.mti_class, coalesce(a.issuer_id, r.issuer_id),"                                            \
    " coalesce(a.issuer_stan, r.issuer_stan),"                                                     \
    " coalesce(a.issuer_transmission_time, r.issuer_transmission_time),"                           \
    " coalesce(a.processing_code, r.processing_code),"                                             \
    " coalesce(a.billing_amount_minor, r.billing_amount_minor, a.amount_minor, r.amount_minor),"   \
    " coalesce(a.billing_currency, r.billing_currency, a.currency, r.currency),"                   \
    " a.response_code, a.auth_code,"                                                               \
    " coalesce(a.pan_masked, r.pan_masked), encode(coalesce(a.pan_hmac, r.pan_hmac), 'hex'),"      \
    " a.outcome, a.original_stan, a.original_transmission_time,"                                   \
    " (extract(epoch FROM a.created_at) * 1000000)::bigint,"                                       \
    " a.created_at >= $1::timestamptz AND a.created_at < $2::timestamptz,"                         \
    " r.state, r.reason, r.last_response_code,"                                                    \
    " coalesce(a.billing_currency, r.billing_currency) IS NOT NULL, v.state, "                     \
    "v.last_response_code,"                                                                        \
    " false"

/* A stand-in approval (DE 38 "S" + 5 digits, migration 0014): its reversal is the advice
 * queue's, not the reversal queue's. */
#define STAND_IN(a) "(" a ".outcome = 'approved' AND " a ".auth_code ~ '^S[0-9]{5}$')"

/* The columns of a reversal as SW_COLS reads them, from the reversal queue and from the advice
 * queue's reversals of stand-in advices (advice true). */
#define REV_SOURCE                                                                                 \
    "(SELECT request_date, acquirer_id, terminal_id, stan, transmission_time, mti_class,"          \
    " issuer_id, issuer_stan, issuer_transmission_time, processing_code, amount_minor, currency,"  \
    " billing_amount_minor, billing_currency, pan_masked, pan_hmac, state, reason,"                \
    " last_response_code, false AS advice FROM switch.reversal_queue UNION ALL"                    \
    " SELECT request_date, acquirer_id, terminal_id, stan, transmission_time, mti_class,"          \
    " issuer_id, issuer_stan, issuer_transmission_time, processing_code, amount_minor, currency,"  \
    " billing_amount_minor, billing_currency, pan_masked, pan_hmac, state, reason,"                \
    " last_response_code, true FROM switch.advice_queue WHERE kind = 'reversal')"

/* A reversal row joined to the journal row a of the same identity (the advice queue's for a
 * stand-in approval), and a stand-in approval's advice (v). */
#define REV_JOIN                                                                                   \
    " LEFT JOIN " REV_SOURCE " r ON r.request_date = a.request_date"                               \
    " AND r.acquirer_id COLLATE \"C\" = a.acquirer_id"                                             \
    " AND r.terminal_id COLLATE \"C\" = a.terminal_id AND r.stan COLLATE \"C\" = a.stan"           \
    " AND r.transmission_time COLLATE \"C\" = a.transmission_time"                                 \
    " AND r.mti_class COLLATE \"C\" = a.mti_class AND r.advice = " STAND_IN(                       \
        "a") " LEFT JOIN switch.advice_queue v ON v.kind = 'advice' AND v.request_date = "         \
             "a.request_date"                                                                      \
             " AND v.acquirer_id = a.acquirer_id AND v.terminal_id = a.terminal_id AND v.stan = "  \
             "a.stan"                                                                              \
             " AND v.transmission_time = a.transmission_time AND v.mti_class = a.mti_class"

/* How each column of SW_COLS, in order, fills struct rc_sw: text into its char array, or a number
 * (-1 when NULL; 0 for the time), a bool, or the reversal state. */
enum col_kind { COL_TEXT, COL_I64, COL_INT, COL_U64, COL_BOOL, COL_REV };
static const struct {
    enum col_kind kind;
    size_t off, size;
} sw_cols[] = {
#define TEXT(f)                                                                                    \
    {                                                                                              \
        COL_TEXT, offsetof(struct rc_sw, f), sizeof(((struct rc_sw *)0)->f)                        \
    }
#define OTHER(k, f)                                                                                \
    {                                                                                              \
        k, offsetof(struct rc_sw, f), 0                                                            \
    }
    TEXT(request_date),
    TEXT(acquirer),
    TEXT(terminal),
    TEXT(stan),
    TEXT(de7),
    TEXT(mti),
    TEXT(cls),
    TEXT(issuer_id),
    TEXT(issuer_stan),
    TEXT(issuer_de7),
    TEXT(proc),
    OTHER(COL_I64, amount),
    OTHER(COL_INT, currency),
    TEXT(rc),
    TEXT(auth),
    TEXT(pan_masked),
    TEXT(pan_hmac),
    TEXT(outcome),
    TEXT(orig_stan),
    TEXT(orig_de7),
    OTHER(COL_U64, created_us),
    OTHER(COL_BOOL, in_window),
    OTHER(COL_REV, rev),
    TEXT(rev_reason),
    TEXT(rev_rc),
    OTHER(COL_BOOL, converted),
    OTHER(COL_REV, advice),
    TEXT(advice_rc),
    OTHER(COL_BOOL, replaced),
#undef TEXT
#undef OTHER
};

/* Row i of r (in the shape of SW_COLS) into s. */
static void sw_row(struct rc_sw *s, const PGresult *r, int i)
{
    for (int c = 0; c < (int)(sizeof sw_cols / sizeof sw_cols[0]); c++) {
        char *f = (char *)s + sw_cols[c].off, state[16];
        switch (sw_cols[c].kind) {
        case COL_TEXT:
            col(f, sw_cols[c].size, r, i, c);
            break;
        case COL_I64:
            *(int64_t *)(void *)f = num(r, i, c, -1);
            break;
        case COL_INT:
            *(int *)(void *)f = (int)num(r, i, c, -1);
            break;
        case COL_U64:
            *(uint64_t *)(void *)f = (uint64_t)num(r, i, c, 0);
            break;
        case COL_BOOL:
            *(bool *)(void *)f = yes(r, i, c);
            break;
        case COL_REV:
            col(state, sizeof state, r, i, c);
            *(enum rc_rev *)(void *)f = rev_of(state);
            break;
        }
    }
}

/* The rows of r (in the shape of SW_COLS) as switch items from src (an enum rc_src *). */
static int add_rows(struct rc_ctx *c, const PGresult *r, void *src)
{
    for (int i = 0; i < PQntuples(r); i++) {
        struct rc_sw s;
        memset(&s, 0, sizeof s);
        sw_row(&s, r, i);
        s.src = *(const enum rc_src *)src;
        if (rc_add_sw(c, &s) < 0)
            return -1;
    }
    return 0;
}

int rc_fetch_switch(PGconn *sw, const struct rc_window *w, struct rc_ctx *c, char *err,
                    size_t errcap)
{
    const char *v[] = { w->from, w->to, w->lo, w->hi, w->issuer };
    /* The journal is partitioned by request_date (the date of DE 7), not by created_at: the
     * date bound lets PostgreSQL skip the partitions of other days, with two days of margin
     * for terminals whose clocks are off. */
    static const char journal[] =
        "SELECT" SW_COLS " FROM switch.authorizations a" REV_JOIN
        " WHERE a.created_at >= $3::timestamptz AND a.created_at < $4::timestamptz"
        " AND a.request_date >= ($3::timestamptz AT TIME ZONE 'UTC')::date - 2"
        " AND a.request_date <= ($4::timestamptz AT TIME ZONE 'UTC')::date + 2"
        " AND ($5 = '' OR coalesce(a.issuer_id, r.issuer_id) = $5)";
    /* Reversal rows without their journal row — or whose journal row is a stand-in approval
     * that replaced the request they reverse (after a timeout: the reversal is of the forwarded
     * request, another issuer identity than the advice's) — and in-flight rows, in the shape of
     * SW_COLS. */
    static const char orphans[] =
        "SELECT r.request_date::text, r.acquirer_id, r.terminal_id, r.stan, r.transmission_time,"
        " r.mti, r.mti_class, r.issuer_id, r.issuer_stan, r.issuer_transmission_time,"
        " r.processing_code, coalesce(r.billing_amount_minor, r.amount_minor),"
        " coalesce(r.billing_currency, r.currency), NULL, NULL, r.pan_masked,"
        " encode(r.pan_hmac, 'hex'), NULL, NULL, NULL,"
        " (extract(epoch FROM r.created_at) * 1000000)::bigint,"
        " r.created_at >= $1::timestamptz AND r.created_at < $2::timestamptz,"
        " r.state, r.reason, r.last_response_code, r.billing_currency IS NOT NULL, NULL, NULL,"
        " a.outcome IS NOT NULL"
        " FROM switch.reversal_queue r LEFT JOIN switch.authorizations a"
        " ON a.request_date = r.request_date AND a.acquirer_id = r.acquirer_id COLLATE \"C\""
        " AND a.terminal_id = r.terminal_id COLLATE \"C\" AND a.stan = r.stan COLLATE \"C\""
        " AND a.transmission_time = r.transmission_time COLLATE \"C\""
        " AND a.mti_class = r.mti_class COLLATE \"C\""
        " WHERE r.created_at >= $3::timestamptz AND r.created_at < $4::timestamptz"
        " AND ($5 = '' OR r.issuer_id = $5) AND (a.outcome IS NULL OR " STAND_IN("a") ")";
    static const char inflight[] =
        "SELECT f.request_date::text, f.acquirer_id, f.terminal_id, f.stan, f.transmission_time,"
        " f.mti, f.mti_class, f.issuer_id, f.issuer_stan, f.issuer_transmission_time,"
        " f.processing_code, coalesce(f.billing_amount_minor, f.amount_minor),"
        " coalesce(f.billing_currency, f.currency), NULL, NULL, f.pan_masked,"
        " encode(f.pan_hmac, 'hex'), NULL, NULL, NULL,"
        " (extract(epoch FROM f.created_at) * 1000000)::bigint,"
        " f.created_at >= $1::timestamptz AND f.created_at < $2::timestamptz,"
        " NULL, NULL, NULL, f.billing_currency IS NOT NULL, NULL, NULL, false"
        " FROM switch.inflight f"
        " WHERE $3 = '' OR f.issuer_id = $3";
    /* Advices whose stand-in request has no journal row, with their reversal (if any), in the
     * shape of SW_COLS. */
    static const char advices[] =
        "SELECT v.request_date::text, v.acquirer_id, v.terminal_id, v.stan, v.transmission_time,"
        " v.mti, v.mti_class, v.issuer_id, v.issuer_stan, v.issuer_transmission_time,"
        " v.processing_code, coalesce(v.billing_amount_minor, v.amount_minor),"
        " coalesce(v.billing_currency, v.currency), NULL, v.auth_code, v.pan_masked,"
        " encode(v.pan_hmac, 'hex'), NULL, NULL, NULL,"
        " (extract(epoch FROM v.created_at) * 1000000)::bigint,"
        " v.created_at >= $1::timestamptz AND v.created_at < $2::timestamptz,"
        " x.state, x.reason, x.last_response_code, v.billing_currency IS NOT NULL, v.state,"
        " v.last_response_code, false FROM switch.advice_queue v"
        " LEFT JOIN switch.advice_queue x ON x.kind = 'reversal'"
        " AND x.request_date = v.request_date AND x.acquirer_id = v.acquirer_id"
        " AND x.terminal_id = v.terminal_id AND x.stan = v.stan"
        " AND x.transmission_time = v.transmission_time AND x.mti_class = v.mti_class"
        " WHERE v.kind = 'advice' AND v.created_at >= $3::timestamptz"
        " AND v.created_at < $4::timestamptz AND ($5 = '' OR v.issuer_id = $5)"
        " AND NOT EXISTS (SELECT 1 FROM switch.authorizations a"
        " WHERE a.request_date = v.request_date AND a.acquirer_id = v.acquirer_id"
        " AND a.terminal_id = v.terminal_id AND a.stan = v.stan"
        " AND a.transmission_time = v.transmission_time AND a.mti_class = v.mti_class)";
    const char *vf[] = { w->from, w->to, w->issuer };
    static const struct {
        const char *what, *sql;
        enum rc_src src;
    } q[] = {
        { "journal", journal, RC_SRC_JOURNAL },
        { "reversal queue", orphans, RC_SRC_REVERSAL },
        { "in-flight rows", inflight, RC_SRC_INFLIGHT },
        { "advice queue", advices, RC_SRC_ADVICE },
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        enum rc_src src = q[i].src;
        bool f = src == RC_SRC_INFLIGHT;
        if (query_rows(sw, q[i].what, q[i].sql, f ? 3 : 5, f ? vf : v, add_rows, c, &src, err,
                       errcap) != 0)
            return -1;
    }
    return 0;
}

struct idents {
    struct db_array dates, idents;
};

static void ident_cb(void *arg, const char *date, const char *acq, const char *tid,
                     const char *stan, const char *de7, const char *cls)
{
    struct idents *x = arg;
    char id[64];
    rc_ident(id, date, acq, tid, stan, de7, cls);
    arr_add(&x->dates, date);
    arr_add(&x->idents, id);
}

int rc_fetch_switch_idents(PGconn *sw, const struct rc_window *w, struct rc_ctx *c, char *err,
                           size_t errcap)
{
    struct idents x;
    memset(&x, 0, sizeof x);
    int rc = 0;
    if (rc_wanted_idents(c, ident_cb, &x) > 0) {
        const char *v[] = { w->from, w->to, arr_text(&x.dates), arr_text(&x.idents), w->issuer };
        /* The identity as rc_ident writes it, matched with "= ANY": a hashed filter over the
         * days named (partition pruning, primary key), whatever the statistics say. */
        static const char sql[] =
            "SELECT" SW_COLS " FROM switch.authorizations a" REV_JOIN
            " WHERE a.request_date = ANY($3::date[])"
            " AND (a.request_date::text || '|' || a.acquirer_id || '|' || a.terminal_id || '|'"
            " || a.stan || '|' || a.transmission_time || '|' || a.mti_class) COLLATE \"C\""
            " = ANY($4::text[]) AND ($5 = '' OR coalesce(a.issuer_id, r.issuer_id) = $5)";
        enum rc_src src = RC_SRC_JOURNAL;
        rc = query_rows(sw, "journal rows by identity", sql, 5, v, add_rows, c, &src, err, errcap);
    }
    db_array_free(&x.dates);
    db_array_free(&x.idents);
    return rc == 0 && c->oom ? fail(err, errcap, "out of memory") : rc;
}

/* A leg's journal row and its reversal row, joined to transfer t (as alias j, reversal q):
 * "aft" or "oct". */
#define LEG_JOIN(j, q, leg)                                                                        \
    " LEFT JOIN switch.authorizations " j " ON " j ".request_date = t.leg_request_date"            \
    " AND " j ".acquirer_id = t.acquirer_id"                                                       \
    " AND " j ".terminal_id = switch.transfer_leg_terminal(t.transfer_id, '" leg "')"              \
    " AND " j ".stan = switch.transfer_leg_stan(t.transfer_id)"                                    \
    " AND " j ".transmission_time = t.leg_transmission_time AND " j ".mti_class = '020'"           \
    " LEFT JOIN switch.reversal_queue " q " ON " q ".request_date = t.leg_request_date"            \
    " AND " q ".acquirer_id COLLATE \"C\" = t.acquirer_id"                                         \
    " AND " q ".terminal_id COLLATE \"C\" = switch.transfer_leg_terminal(t.transfer_id, '" leg     \
    "')"                                                                                           \
    " AND " q ".stan COLLATE \"C\" = switch.transfer_leg_stan(t.transfer_id)"                      \
    " AND " q ".transmission_time COLLATE \"C\" = t.leg_transmission_time"                         \
    " AND " q ".mti_class COLLATE \"C\" = '020'"

/* A leg's columns (see leg_row): its terminal id, journaled?, outcome, rc, issuer STAN and DE 7,
 * amount, reversal state and last rc. */
#define LEG_COLS(j, q, leg)                                                                        \
    " switch.transfer_leg_terminal(t.transfer_id, '" leg "'), " j ".stan IS NOT NULL, " j          \
    ".outcome, " j ".response_code, " j ".issuer_stan, " j ".issuer_transmission_time, " j         \
    ".amount_minor, " q ".state, " q ".last_response_code"

/* The transfers query's columns (see add_transfers), tables and condition: in the window (of
 * the issuer, $3) or one of the identities $4 (rc_ident's form, class 020). */
#define XFER_COLS                                                                                  \
    " t.transfer_id,"                                                                              \
    " t.created_at >= $1::timestamptz AND t.created_at < $2::timestamptz"                          \
    " AND ($3 = '' OR t.sender_issuer = $3 OR t.recipient_issuer = $3),"                           \
    " t.state, t.request_date::text, t.acquirer_id, t.terminal_id, t.stan,"                        \
    " t.transmission_time, t.sender_issuer, t.recipient_issuer, t.sender_pan_masked,"              \
    " t.recipient_pan_masked, t.amount_minor, t.fee_minor, t.currency,"                            \
    " t.recipient_amount_minor, s.stan IS NOT NULL, s.outcome, s.response_code,"                   \
    " EXISTS (SELECT 1 FROM switch.authorizations v"                                               \
    " WHERE v.request_date BETWEEN t.request_date - 1 AND t.request_date + 7"                      \
    " AND v.acquirer_id = t.acquirer_id AND v.terminal_id = t.terminal_id"                         \
    " AND v.mti_class IN ('040', '042') AND v.original_stan = t.stan"                              \
    " AND v.original_transmission_time = t.transmission_time AND v.outcome = 'approved'),"         \
    " switch.transfer_leg_stan(t.transfer_id)," LEG_COLS("a", "ra", "aft") "," LEG_COLS("o", "ro", \
                                                                                        "oct")
#define XFER_FROM                                                                                  \
    " FROM switch.transfers t"                                                                     \
    " LEFT JOIN switch.authorizations s ON s.request_date = t.request_date"                        \
    " AND s.acquirer_id = t.acquirer_id AND s.terminal_id = t.terminal_id"                         \
    " AND s.stan = t.stan AND s.transmission_time = t.transmission_time"                           \
    " AND s.mti_class = '020'" LEG_JOIN("a", "ra", "aft") LEG_JOIN("o", "ro", "oct")
#define XFER_WHERE                                                                                 \
    " (t.created_at >= $1::timestamptz AND t.created_at < $2::timestamptz"                         \
    " AND ($3 = '' OR t.sender_issuer = $3 OR t.recipient_issuer = $3))"                           \
    " OR (t.request_date::text || '|' || t.acquirer_id || '|' || t.terminal_id || '|' || t.stan"   \
    " || '|' || t.transmission_time || '|020') COLLATE \"C\" = ANY($4::text[])"

/* The leg whose LEG_COLS start at column k of row i. */
static void leg_row(struct rc_leg *g, const PGresult *r, int i, int k, const char *stan)
{
    char state[16];
    col(g->terminal, sizeof g->terminal, r, i, k);
    snprintf(g->stan, sizeof g->stan, "%s", stan);
    g->row = yes(r, i, k + 1);
    col(g->outcome, sizeof g->outcome, r, i, k + 2);
    col(g->rc, sizeof g->rc, r, i, k + 3);
    col(g->issuer_stan, sizeof g->issuer_stan, r, i, k + 4);
    col(g->issuer_de7, sizeof g->issuer_de7, r, i, k + 5);
    g->amount = num(r, i, k + 6, -1);
    col(state, sizeof state, r, i, k + 7);
    g->rev = rev_of(state);
    col(g->rev_rc, sizeof g->rev_rc, r, i, k + 8);
}

/* The rows of the transfers query into c's transfers. */
static int add_transfers(struct rc_ctx *c, const PGresult *r, void *arg)
{
    (void)arg;
    for (int i = 0; i < PQntuples(r); i++) {
        struct rc_xfer x;
        char stan[7];
        memset(&x, 0, sizeof x);
        x.id = num(r, i, 0, -1);
        x.in_window = yes(r, i, 1);
        col(x.state, sizeof x.state, r, i, 2);
        col(x.request_date, sizeof x.request_date, r, i, 3);
        col(x.acquirer, sizeof x.acquirer, r, i, 4);
        col(x.terminal, sizeof x.terminal, r, i, 5);
        col(x.stan, sizeof x.stan, r, i, 6);
        col(x.de7, sizeof x.de7, r, i, 7);
        col(x.sender_issuer, sizeof x.sender_issuer, r, i, 8);
        col(x.recipient_issuer, sizeof x.recipient_issuer, r, i, 9);
        col(x.pan_masked, sizeof x.pan_masked, r, i, 10);
        col(x.to_masked, sizeof x.to_masked, r, i, 11);
        x.amount = num(r, i, 12, 0);
        x.fee = num(r, i, 13, 0);
        x.currency = (int)num(r, i, 14, -1);
        x.recipient_amount = num(r, i, 15, -1);
        x.sender_row = yes(r, i, 16);
        col(x.sender_outcome, sizeof x.sender_outcome, r, i, 17);
        col(x.sender_rc, sizeof x.sender_rc, r, i, 18);
        x.term_rev_acked = yes(r, i, 19);
        col(stan, sizeof stan, r, i, 20);
        leg_row(&x.aft, r, i, 21, stan);
        leg_row(&x.oct, r, i, 30, stan);
        if (rc_add_xfer(c, &x) < 0)
            return -1;
    }
    return 0;
}

int rc_fetch_transfers(PGconn *sw, const struct rc_window *w, struct rc_ctx *c, char *err,
                       size_t errcap)
{
    struct idents x;
    memset(&x, 0, sizeof x);
    rc_wanted_xfer_idents(c, ident_cb, &x);
    const char *v[] = { w->from, w->to, w->issuer, arr_text(&x.idents) };
    /* One row per transfer with everything its rules need, read in this snapshot: the
     * sender's journal row, each leg's journal and reversal rows (primary-key lookups), and
     * whether the sender's terminal had a reversal of it acknowledged (0400/0420 journaled
     * approved, by DE 90; its DE 7 is at most days after the original's). switch.transfers has
     * no index on created_at: it is read whole, one row per transfer ever made. */
    static const char sql[] = "SELECT" XFER_COLS XFER_FROM " WHERE" XFER_WHERE;
    int rc = query_rows(sw, "transfers", sql, 4, v, add_transfers, c, NULL, err, errcap);
    db_array_free(&x.dates);
    db_array_free(&x.idents);
    return rc == 0 && c->oom ? fail(err, errcap, "out of memory") : rc;
}

/* A key and its reversal's key. */
static void key_cb(void *arg, const char *key)
{
    char rev[64];
    snprintf(rev, sizeof rev, "rev:%s", key);
    arr_add(arg, key);
    arr_add(arg, rev);
}

/* Issuer rows in one shape: source (R request, L ledger, H hold), request_key, wallet_id,
 * mti, processing_code, amount_minor, response_code, hold status, hold currency, booked in
 * [lo, hi) = [$1, $2). Ledger entries that are not requests (opening, adjustment) are left out. */
#define ISS_REQUESTS                                                                               \
    "SELECT 'R', q.request_key, q.wallet_id, q.mti::text, q.processing_code::text,"                \
    " q.amount_minor, q.response_code::text, NULL::text, NULL::int,"                               \
    " q.created_at >= $1::timestamptz AND q.created_at < $2::timestamptz"                          \
    " FROM wallet.requests q "
#define ISS_LEDGER                                                                                 \
    "SELECT 'L', l.request_key, l.wallet_id, l.mti::text, l.processing_code::text,"                \
    " l.amount_minor, NULL::text, NULL::text, NULL::int,"                                          \
    " l.created_at >= $1::timestamptz AND l.created_at < $2::timestamptz"                          \
    " FROM wallet.ledger l WHERE l.kind NOT IN ('opening', 'adjustment') AND "
#define ISS_HOLDS                                                                                  \
    "SELECT 'H', h.request_key, h.wallet_id, NULL::text, NULL::text, h.amount_minor, NULL::text,"  \
    " h.status::text, h.currency::int,"                                                            \
    " h.created_at >= $1::timestamptz AND h.created_at < $2::timestamptz"                          \
    " FROM wallet.holds h "

/* The rows of r (in the shape above) into the issuer keys; by_key (a bool *): read whole by key. */
static int add_issuer_rows(struct rc_ctx *c, const PGresult *r, void *by_key_arg)
{
    bool by_key = *(const bool *)by_key_arg;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *src = PQgetvalue(r, i, 0), *key = PQgetvalue(r, i, 1);
        bool rev = strncmp(key, "rev:", 4) == 0;
        const char *base = rev ? key + 4 : key;
        struct rc_iss *e = rc_iss_get(c, base);
        if (!e)
            return -1;
        if (!by_key && e->by_key)
            continue; /* read whole by key already */
        e->by_key |= by_key;
        e->in_slack |= yes(r, i, 9);
        long long wid = num(r, i, 2, -1);
        if (wid >= 0 && e->wallet_id < 0)
            e->wallet_id = wid;
        int64_t amount = num(r, i, 5, 0);
        switch (src[0]) {
        case 'R':
            if (rev) {
                e->rev_req = true;
                col(e->rev_rc, sizeof e->rev_rc, r, i, 6);
            } else {
                e->req = true;
                col(e->rc, sizeof e->rc, r, i, 6);
                col(e->mti, sizeof e->mti, r, i, 3);
                col(e->proc, sizeof e->proc, r, i, 4);
                e->amount = num(r, i, 5, -1);
            }
            break;
        case 'L':
            if (rev)
                e->rev_ledger += amount;
            else
                e->ledger += amount;
            e->ledger_rows++;
            if (!e->mti[0])
                col(e->mti, sizeof e->mti, r, i, 3);
            break;
        case 'H':
            if (!rev) {
                e->hold_amount = amount;
                col(e->hold_status, sizeof e->hold_status, r, i, 7);
                e->hold_currency = (int)num(r, i, 8, -1);
            }
            break;
        }
    }
    return 0;
}

int rc_fetch_issuer(PGconn *iss, const struct rc_window *w, struct rc_ctx *c, char *err,
                    size_t errcap)
{
    struct db_array keys;
    memset(&keys, 0, sizeof keys);
    rc_wanted_keys(c, key_cb, &keys);
    const char *kt = arr_text(&keys);
    if (c->oom) {
        db_array_free(&keys);
        return fail(err, errcap, "out of memory");
    }
    const char *v1[] = { w->lo, w->hi, kt };
    /* "= ANY(array)": an index scan on the unique request_key, or a hashed filter — never a
     * join whose order rests on statistics (right after a big run they can say "empty", and a
     * nested loop over 100,000 keys took minutes). */
    static const char by_key[] =
        ISS_REQUESTS "WHERE q.request_key = ANY($3::text[])"
                     " UNION ALL " ISS_LEDGER "l.request_key = ANY($3::text[])"
                     " UNION ALL " ISS_HOLDS "WHERE h.request_key = ANY($3::text[])";
    bool whole = true;
    int rc = query_rows(iss, "issuer rows by request key", by_key, 3, v1, add_issuer_rows, c,
                        &whole, err, errcap);
    db_array_free(&keys);
    if (rc != 0)
        return -1;
    static const char in_window[] = ISS_REQUESTS
        "WHERE q.created_at >= $1::timestamptz AND q.created_at < $2::timestamptz"
        " UNION ALL " ISS_LEDGER
        "l.created_at >= $1::timestamptz AND l.created_at < $2::timestamptz"
        " UNION ALL " ISS_HOLDS "WHERE h.created_at >= $1::timestamptz AND h.created_at < "
        "$2::timestamptz";
    const char *v2[] = { w->lo, w->hi };
    whole = false;
    return query_rows(iss, "issuer rows in the window", in_window, 2, v2, add_issuer_rows, c,
                      &whole, err, errcap);
}

struct named {
    struct db_array tid, stan, de7;
};

static void named_cb(void *arg, const char *key)
{
    struct named *x = arg;
    char tid[9], stan[7], de7[11];
    /* The shape of sim_request_key: acquirer 11 : terminal 8 : STAN 6 : DE 7 10. Only used to
     * narrow the search; a match is confirmed by computing the key again. */
    if (strlen(key) != 11 + 1 + 8 + 1 + 6 + 1 + 10)
        return;
    memcpy(tid, key + 12, 8);
    tid[8] = '\0';
    memcpy(stan, key + 21, 6);
    stan[6] = '\0';
    memcpy(de7, key + 28, 10);
    de7[10] = '\0';
    arr_add(&x->tid, tid);
    arr_add(&x->stan, stan);
    arr_add(&x->de7, de7);
}

/* The rows of r (acquirer, terminal, issuer STAN and DE 7) name the issuer keys they make. */
static int mark_named(struct rc_ctx *c, const PGresult *r, void *arg)
{
    for (int i = 0; i < PQntuples(r); i++) {
        char acq[12], tid[9], stan[7], de7[11], key[48];
        col(acq, sizeof acq, r, i, 0);
        col(tid, sizeof tid, r, i, 1);
        col(stan, sizeof stan, r, i, 2);
        col(de7, sizeof de7, r, i, 3);
        if (sim_request_key(acq, strlen(acq), tid, strlen(tid), stan, strlen(stan), de7,
                            strlen(de7), key, sizeof key) == 0)
            rc_mark_named(c, key);
    }
    return 0;
}

int rc_fetch_named(PGconn *sw, const struct rc_window *w, struct rc_ctx *c, char *err,
                   size_t errcap)
{
    struct named x;
    memset(&x, 0, sizeof x);
    size_t n = rc_attribute(c, named_cb, &x);
    int rc = 0;
    if (n > 0 && x.tid.n > 1) { /* an element past the opening brace */
        const char *v[] = { arr_text(&x.tid), arr_text(&x.stan), arr_text(&x.de7), w->issuer };
        /* Every row, whenever: no index on the issuer-side identity, so this reads the tables;
         * it only runs when the issuer has requests the window's switch rows do not name. */
        /* Each part matched with "= ANY" (hashed filters, no join order to get wrong): a
         * superset, which the key computed again below narrows to exact matches. */
        static const char sql[] =
            "SELECT a.acquirer_id, a.terminal_id, a.issuer_stan, a.issuer_transmission_time"
            " FROM switch.authorizations a WHERE a.terminal_id = ANY($1::text[])"
            " AND a.issuer_stan = ANY($2::bpchar[]) AND a.issuer_transmission_time = "
            "ANY($3::bpchar[]) AND ($4 = '' OR a.issuer_id = $4)"
            " UNION SELECT r.acquirer_id, r.terminal_id, r.issuer_stan, r.issuer_transmission_time"
            " FROM switch.reversal_queue r WHERE r.terminal_id = ANY($1::text[])"
            " AND r.issuer_stan = ANY($2::bpchar[]) AND r.issuer_transmission_time = "
            "ANY($3::bpchar[]) AND ($4 = '' OR r.issuer_id = $4)"
            " UNION SELECT f.acquirer_id, f.terminal_id, f.issuer_stan, f.issuer_transmission_time"
            " FROM switch.inflight f WHERE f.terminal_id = ANY($1::text[])"
            " AND f.issuer_stan = ANY($2::bpchar[]) AND f.issuer_transmission_time = "
            "ANY($3::bpchar[]) AND ($4 = '' OR f.issuer_id = $4)";
        rc = query_rows(sw, "switch rows naming issuer keys", sql, 4, v, mark_named, c, NULL, err,
                        errcap);
    }
    db_array_free(&x.tid);
    db_array_free(&x.stan);
    db_array_free(&x.de7);
    return rc;
}

/* The rows of r (wallet, currency, PAN masked and keyed, balance, ledger sum, held, active holds)
 * into the wallets. */
static int add_wallets(struct rc_ctx *c, const PGresult *r, void *arg)
{
    for (int i = 0; i < PQntuples(r); i++) {
        struct rc_wallet *w = rc_wallet_get(c, num(r, i, 0, 0));
        if (!w)
            return -1;
        w->currency = (int)num(r, i, 1, -1);
        col(w->pan_masked, sizeof w->pan_masked, r, i, 2);
        col(w->pan_hmac, sizeof w->pan_hmac, r, i, 3);
        w->balance = num(r, i, 4, 0);
        w->ledger_sum = num(r, i, 5, 0);
        w->broken = w->balance != w->ledger_sum || num(r, i, 6, 0) != num(r, i, 7, 0);
    }
    return 0;
}

static void hmac_cb(void *arg, const char *hmac)
{
    arr_add(arg, hmac);
}

int rc_fetch_wallets(PGconn *iss, struct rc_ctx *c, char *err, size_t errcap)
{
    struct db_array ids, hmacs;
    memset(&ids, 0, sizeof ids);
    memset(&hmacs, 0, sizeof hmacs);
    for (size_t i = 0; i < c->niss; i++) {
        char k[32];
        if (c->iss[i].wallet_id < 0)
            continue;
        snprintf(k, sizeof k, "%lld", c->iss[i].wallet_id);
        arr_add(&ids, k); /* duplicates are harmless in = ANY */
    }
    rc_wanted_hmacs(c, hmac_cb, &hmacs);
    const char *v[] = { arr_text(&ids), arr_text(&hmacs) };
    int rc = 0;
    /* Balance and held amount against the ledger and the active holds, like
     * wallet.invariant_violations, for these wallets only. */
    static const char sql[] =
        "SELECT w.wallet_id, w.currency, w.pan_masked, encode(w.pan_hmac, 'hex'),"
        " w.balance_minor, coalesce(l.s, 0), w.held_minor, coalesce(h.s, 0)"
        " FROM wallet.wallets w"
        " LEFT JOIN LATERAL (SELECT sum(x.amount_minor) AS s FROM wallet.ledger x"
        " WHERE x.wallet_id = w.wallet_id) l ON true"
        " LEFT JOIN LATERAL (SELECT sum(x.amount_minor) AS s FROM wallet.holds x"
        " WHERE x.wallet_id = w.wallet_id AND x.status = 'active') h ON true"
        " WHERE w.wallet_id = ANY($1::bigint[])"
        " OR w.pan_hmac = ANY(ARRAY(SELECT decode(x, 'hex') FROM unnest($2::text[]) x))";
    if (c->oom)
        rc = fail(err, errcap, "out of memory");
    else
        rc = query_rows(iss, "wallets", sql, 2, v, add_wallets, c, NULL, err, errcap);
    db_array_free(&ids);
    db_array_free(&hmacs);
    return rc;
}
