/* The wallet schema's statements for the issuer daemon: the snapshot load, the batch committed
 * as one transaction (its plain decisions in one wallet.sim_apply_batch call, set-based since
 * 0017; reversals, completions, increments and advices one function call each), the hold
 * expiry sweep and the start-up schema check. Runs on the generic client (client.c); rows are read
 * here and handed over as the typed structs of wallet.h. */
#include "db_internal.h"
#include "wallet.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "hex.h"

/* The snapshot's columns (enum L_* below): the card's wallet and its KYC tier, the request's
 * recorded answer. */
#define LOAD_COLS                                                                                  \
    "w.wallet_id, w.xmin::text, w.expiry, w.currency, w.balance_minor, w.held_minor, "             \
    "w.status, w.pin_method, coalesce(w.pvki, 0), coalesce(w.pvv, ''), "                           \
    "coalesce(w.pin_offset, ''), w.pin_tries, w.pin_try_limit, "                                   \
    "coalesce(w.daily_limit_minor, -1), coalesce(w.daily_cash_limit_minor, -1), "                  \
    "coalesce(w.daily_count_limit, -1), coalesce(to_char(w.usage_date, 'YYYY-MM-DD'), ''), "       \
    "w.usage_minor, w.usage_cash_minor, w.usage_count, w.day_credit_minor, "                       \
    "coalesce(to_char(w.usage_month, 'YYYY-MM-DD'), ''), w.month_debit_minor, "                    \
    "w.month_credit_minor, w.kyc_tier, coalesce(t.max_balance_minor, -1), "                        \
    "coalesce(t.debit_daily_limit_minor, -1), coalesce(t.debit_monthly_limit_minor, -1), "         \
    "coalesce(t.credit_daily_limit_minor, -1), coalesce(t.credit_monthly_limit_minor, -1), "       \
    "q.response_code, q.auth_code, q.balance_minor, q.available_minor "
/* The request's recorded answer (if any) and the card's wallet (if any), in one row. */
static const char *const SQL_LOAD =
    "SELECT " LOAD_COLS "FROM (SELECT) one "
    "LEFT JOIN wallet.wallets w ON w.pan_hmac = $1::bytea "
    "LEFT JOIN wallet.kyc_tiers t ON t.tier = w.kyc_tier AND t.currency = w.currency "
    "LEFT JOIN wallet.requests q ON q.request_key = $2";
/* The snapshots of several requests in ONE statement (issue 17: a round trip and a transaction
 * per request was most of the loads' cost): element i of $1 (PAN HMACs) and $2 (request keys)
 * is request i; one row per request, in order (ord = i + 1, after SQL_LOAD's columns). */
static const char *const SQL_LOAD_BATCH =
    "SELECT " LOAD_COLS ", k.ord "
    "FROM unnest($1::bytea[], $2::text[]) WITH ORDINALITY AS k(pan_hmac, request_key, ord) "
    "LEFT JOIN wallet.wallets w ON w.pan_hmac = k.pan_hmac "
    "LEFT JOIN wallet.kyc_tiers t ON t.tier = w.kyc_tier AND t.currency = w.currency "
    "LEFT JOIN wallet.requests q ON q.request_key = k.request_key "
    "ORDER BY k.ord";
/* An advice (a forced post, migration 0014): wallet.sim_apply's parameters (plain decisions go
 * through wallet.sim_apply_batch, 0017; sim_apply itself is no longer called from here). */
static const char *const SQL_ADVICE =
    "SELECT * FROM wallet.sim_advice($1, $2::bigint, $3, $4, $5, $6::bigint, $7, $8, $9, "
    "$10::integer, $11::bigint, $12::bigint, $13, $14::date, $15::bigint, $16::bigint, "
    "$17::integer, $18::date, $19::bigint, $20::bigint, $21::bigint)";
static const char *const SQL_REVERSE =
    "SELECT * FROM wallet.sim_reverse($1, $2, $3, $4::bigint, $5)";
/* 0012: an incremental authorization ($1 the pre-auth's key, then sim_apply's parameters) and a
 * pre-authorization completion. */
static const char *const SQL_APPLY_INCR =
    "SELECT * FROM wallet.sim_apply_increment($1, $2, $3::bigint, $4, $5, $6, $7::bigint, $8, "
    "$9, $10, $11::integer, $12::bigint, $13::bigint, $14, $15::date, $16::bigint, $17::bigint, "
    "$18::integer, $19::date, $20::bigint, $21::bigint, $22::bigint)";
static const char *const SQL_COMPLETE =
    "SELECT * FROM wallet.sim_complete($1, $2, $3::bigint, $4, $5, $6::bigint, $7::integer, $8, "
    "$9)";
static const char *const SQL_EXPIRE = "SELECT wallet.sim_expire_holds()";
/* 0019: consecutive reversals of a batch at once, sim_reverse's parameters as arrays; one row per
 * reversal (ord = i + 1, then sim_reverse's columns), in order. */
static const char *const SQL_REVERSE_BATCH =
    "SELECT * FROM wallet.sim_reverse_batch($1::text[], $2::text[], $3::text[], $4::bigint[], "
    "$5::text[])";
/* 0017: a batch's plain decisions at once, sim_apply's parameters as arrays (element i of each
 * is decision i); one row per decision (ord = i + 1, then sim_apply's columns), in order. */
/* 0017: a batch's locks, taken first when it holds ops other than plain decisions. */
static const char *const SQL_LOCK_BATCH =
    "SELECT wallet.sim_lock_batch($1::text[], $2::text[], $3::bigint[])";
static const char *const SQL_APPLY_BATCH =
    "SELECT * FROM wallet.sim_apply_batch($1::text[], $2::bigint[], $3::text[], $4::text[], "
    "$5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::integer[], "
    "$11::bigint[], $12::bigint[], $13::text[], $14::date[], $15::bigint[], $16::bigint[], "
    "$17::integer[], $18::date[], $19::bigint[], $20::bigint[], $21::bigint[])";

#define APPLY_NPARAMS      21
#define APPLY_INCR_NPARAMS 22
#define REVERSE_NPARAMS    5
#define COMPLETE_NPARAMS   9
#define OP_MAX_NPARAMS     APPLY_INCR_NPARAMS

/* The columns of SQL_LOAD, in order. */
enum {
    L_WALLET_ID,
    L_XMIN,
    L_EXPIRY,
    L_CURRENCY,
    L_BALANCE,
    L_HELD,
    L_STATUS,
    L_PIN_METHOD,
    L_PVKI,
    L_PVV,
    L_PIN_OFFSET,
    L_PIN_TRIES,
    L_PIN_TRY_LIMIT,
    L_DAILY_LIMIT,
    L_DAILY_CASH_LIMIT,
    L_DAILY_COUNT_LIMIT,
    L_USAGE_DATE,
    L_USAGE,
    L_USAGE_CASH,
    L_USAGE_COUNT,
    L_DAY_CREDIT,
    L_USAGE_MONTH,
    L_MONTH_DEBIT,
    L_MONTH_CREDIT,
    L_KYC_TIER,
    L_MAX_BALANCE,
    L_DEBIT_DAILY,
    L_DEBIT_MONTHLY,
    L_CREDIT_DAILY,
    L_CREDIT_MONTHLY,
    L_Q_RC,
    L_Q_AUTH,
    L_Q_BALANCE,
    L_Q_AVAILABLE,
    L_ncols
};
/* SQL_LOAD_BATCH's last column: the request's position (1-based). */
enum { LB_ORD = L_ncols, LB_ncols };

/* The columns of sim_apply and sim_reverse (the same row shape). */
enum { A_OUTCOME, A_RC, A_AUTH, A_BALANCE, A_AVAILABLE, A_ncols };
/* sim_apply_batch's: its position, then the same. */
enum { B_ORD, B_OUTCOME, B_ncols = B_ORD + 1 + A_ncols };

/* One accepted call: which callback to give its result to. The client carries one pointer per
 * job, so the handle keeps these in a pool sized like the client's queue (no allocation per
 * call). */
struct wcall {
    struct db_wallet *w;
    union {
        db_wallet_load_cb load;
        db_wallet_load_batch_cb load_batch;
        db_wallet_apply_cb apply;
        db_wallet_expire_cb expire;
    } cb;
    void *arg;
    unsigned n;                         /* apply: ops in the batch */
    unsigned nplain;                    /* apply: plain decisions, in the sim_apply_batch call */
    bool locked;                        /* apply: the job starts with sim_lock_batch */
    uint8_t plain[DB_WALLET_APPLY_MAX]; /* apply: its row i is the caller's ops[plain[i]] */
    uint8_t order[DB_WALLET_APPLY_MAX]; /* apply: the next statements run ops[order[i]] */
    /* apply: statement j after the batch call runs group[j] reversals of order[] at once
     * (sim_reverse_batch), or one op (0) */
    uint8_t group[DB_WALLET_APPLY_MAX];
    unsigned ngroups; /* apply: statements after the batch call */
    struct wcall *next_free;
};

struct db_wallet {
    struct db_client *c;
    struct wcall *calls, *free_calls;
    struct db_wallet_stats stats;
};

static const char *const verdict_name[DB_WALLET_verdict_max] = {
    "applied", "duplicate", "reversed", "retry", "not_found",
};

const char *db_wallet_verdict_name(enum db_wallet_verdict v)
{
    return (unsigned)v < DB_WALLET_verdict_max ? verdict_name[v] : "?";
}

/* An error found by this layer (not the server's): retrying will not help. */
static void wallet_error(struct db_error *err, int code, const char *msg)
{
    memset(err, 0, sizeof *err);
    err->code = code;
    err->action = DB_ACTION_FAIL;
    at_strlcpy(err->message, msg, sizeof err->message);
}

/* ---------------------------------------------------------------- the handle */

int db_wallet_new(struct event_base *base, const struct db_wallet_opts *opts,
                  struct db_wallet **out)
{
    if (!base || !opts || !out)
        return DB_E_INVALID;
    unsigned ncalls = opts->max_queued ? opts->max_queued : 10000;
    struct db_wallet *w = calloc(1, sizeof *w);
    if (!w)
        return DB_E_SYS;
    w->calls = calloc(ncalls, sizeof *w->calls);
    /* Every statement of the wallet's hot path is a lookup by key, planned once per session
     * (generic plans: the batch functions force them). A plan made while wallet.requests was
     * empty and never analyzed — a new issuer database — read the whole table on every batch
     * for the session's life (test_db_wallet_ledger test_hot_path_never_scans_requests):
     * sequential scans are off for these connections, an index path is always there (the
     * functions' EXISTS are kept from becoming hashed sub-plans by migration 0020:
     * test_hot_path_reads_requests_by_key). Plans are generic for every statement (custom plans
     * of the array statements were planned again on every call: 200 us of planning per batched
     * load at 2,000/s). */
    struct db_client_opts co = {
        .conninfo = opts->conninfo,
        .connections = opts->connections,
        .max_queued = ncalls,
        .app_name = "atlas-wallet",
        .server_options = "-c enable_seqscan=off -c plan_cache_mode=force_generic_plan",
    };
    int rc = w->calls ? db_client_new(base, &co, &w->c) : DB_E_SYS;
    if (rc == 0)
        rc = db_client_prepare(w->c, "wallet_load", SQL_LOAD);
    if (rc == 0)
        rc = db_client_prepare(w->c, "wallet_load_batch", SQL_LOAD_BATCH);
    if (rc == 0)
        rc = db_client_prepare(w->c, "wallet_reverse", SQL_REVERSE);
    if (rc == 0)
        rc = db_client_prepare(w->c, "wallet_apply_incr", SQL_APPLY_INCR);
    if (rc == 0)
        rc = db_client_prepare(w->c, "wallet_complete", SQL_COMPLETE);
    if (rc == 0)
        rc = db_client_prepare(w->c, "wallet_advice", SQL_ADVICE);
    if (rc == 0)
        rc = db_client_prepare(w->c, "wallet_apply_batch", SQL_APPLY_BATCH);
    if (rc == 0)
        rc = db_client_prepare(w->c, "wallet_lock_batch", SQL_LOCK_BATCH);
    if (rc == 0)
        rc = db_client_prepare(w->c, "wallet_reverse_batch", SQL_REVERSE_BATCH);
    if (rc != 0) {
        db_wallet_free(w);
        return rc;
    }
    for (unsigned i = 0; i < ncalls; i++) {
        w->calls[i].w = w;
        w->calls[i].next_free = w->free_calls;
        w->free_calls = &w->calls[i];
    }
    *out = w;
    return 0;
}

bool db_wallet_ready(const struct db_wallet *w)
{
    return db_client_ready(w->c);
}

void db_wallet_free(struct db_wallet *w)
{
    if (!w)
        return;
    db_client_free(w->c); /* calls in flight are called back with DB_E_CLOSED */
    free(w->calls);
    free(w);
}

static struct wcall *call_get(struct db_wallet *w, void *arg)
{
    struct wcall *call = w->free_calls;
    if (call) {
        w->free_calls = call->next_free;
        call->arg = arg;
    }
    return call;
}

static void call_put(struct wcall *call)
{
    call->next_free = call->w->free_calls;
    call->w->free_calls = call;
}

/* ---------------------------------------------------------------- reading rows */

static bool parse_status(const char *v, enum db_wallet_status *out)
{
    if (strcmp(v, "active") == 0)
        *out = DB_WALLET_ACTIVE;
    else if (strcmp(v, "blocked") == 0)
        *out = DB_WALLET_BLOCKED;
    else if (strcmp(v, "lost") == 0)
        *out = DB_WALLET_LOST;
    else
        return false;
    return true;
}

static bool parse_pin_method(const char *v, enum db_wallet_pin_method *out)
{
    if (strcmp(v, "pvv") == 0)
        *out = DB_WALLET_PIN_PVV;
    else if (strcmp(v, "ibm3624") == 0)
        *out = DB_WALLET_PIN_IBM3624;
    else
        return false;
    return true;
}

/* The wallet columns of row of SQL_LOAD / SQL_LOAD_BATCH. Returns the first column that is not what
 * the schema promises, or NULL. */
static const char *read_wallet(const PGresult *r, int row, struct db_wallet_row *w)
{
    if (!db_col_i64(r, row, L_WALLET_ID, &w->wallet_id))
        return "wallet_id";
    if (!db_col_text(r, row, L_XMIN, w->row_version, sizeof w->row_version))
        return "xmin";
    if (!db_col_text(r, row, L_EXPIRY, w->expiry, sizeof w->expiry))
        return "expiry";
    if (!db_col_int(r, row, L_CURRENCY, &w->currency))
        return "currency";
    if (!db_col_i64(r, row, L_BALANCE, &w->balance_minor) ||
        !db_col_i64(r, row, L_HELD, &w->held_minor))
        return "balance";
    if (!parse_status(PQgetvalue(r, row, L_STATUS), &w->status))
        return "status";
    if (!parse_pin_method(PQgetvalue(r, row, L_PIN_METHOD), &w->pin_method) ||
        !db_col_int(r, row, L_PVKI, &w->pvki) ||
        !db_col_text(r, row, L_PVV, w->pvv, sizeof w->pvv) ||
        !db_col_text(r, row, L_PIN_OFFSET, w->pin_offset, sizeof w->pin_offset))
        return "pin data";
    if (!db_col_int(r, row, L_PIN_TRIES, &w->pin_tries) ||
        !db_col_int(r, row, L_PIN_TRY_LIMIT, &w->pin_try_limit))
        return "pin tries";
    if (!db_col_i64(r, row, L_DAILY_LIMIT, &w->daily_limit_minor) ||
        !db_col_i64(r, row, L_DAILY_CASH_LIMIT, &w->daily_cash_limit_minor) ||
        !db_col_i64(r, row, L_DAILY_COUNT_LIMIT, &w->daily_count_limit))
        return "daily limits";
    if (!db_col_text(r, row, L_USAGE_DATE, w->usage_date, sizeof w->usage_date) ||
        !db_col_i64(r, row, L_USAGE, &w->usage_minor) ||
        !db_col_i64(r, row, L_USAGE_CASH, &w->usage_cash_minor) ||
        !db_col_i64(r, row, L_USAGE_COUNT, &w->usage_count) ||
        !db_col_i64(r, row, L_DAY_CREDIT, &w->day_credit_minor) ||
        !db_col_text(r, row, L_USAGE_MONTH, w->usage_month, sizeof w->usage_month) ||
        !db_col_i64(r, row, L_MONTH_DEBIT, &w->month_debit_minor) ||
        !db_col_i64(r, row, L_MONTH_CREDIT, &w->month_credit_minor))
        return "usage";
    if (!db_col_int(r, row, L_KYC_TIER, &w->kyc_tier) ||
        !db_col_i64(r, row, L_MAX_BALANCE, &w->max_balance_minor) ||
        !db_col_i64(r, row, L_DEBIT_DAILY, &w->debit_daily_limit_minor) ||
        !db_col_i64(r, row, L_DEBIT_MONTHLY, &w->debit_monthly_limit_minor) ||
        !db_col_i64(r, row, L_CREDIT_DAILY, &w->credit_daily_limit_minor) ||
        !db_col_i64(r, row, L_CREDIT_MONTHLY, &w->credit_monthly_limit_minor))
        return "kyc tier";
    return NULL;
}

/* An answer's columns (rc, auth code, two balances) starting at col of row. Balances that are
 * NULL leave has_balances false. */
static bool read_answer_at(const PGresult *r, int row, int col, struct db_wallet_answer *a)
{
    a->has_balances = db_col_i64(r, row, col + 2, &a->balance_minor) &&
                      db_col_i64(r, row, col + 3, &a->available_minor);
    return db_col_text(r, row, col, a->rc, sizeof a->rc) &&
           db_col_text(r, row, col + 1, a->auth_code, sizeof a->auth_code);
}

static bool read_answer(const PGresult *r, int col, struct db_wallet_answer *a)
{
    return read_answer_at(r, 0, col, a);
}

/* PostgreSQL array literals, one per sim_apply parameter, built into one buffer. */
struct arrays {
    char *buf, *p, *end;
    char *lit[APPLY_NPARAMS];
};

/* Appends element v (NULL: SQL NULL) of the array being built, quoted with \ and " escaped. */
static void arr_elem(struct arrays *a, const char *v, bool first)
{
    if (!first)
        *a->p++ = ',';
    if (!v) {
        memcpy(a->p, "NULL", 4);
        a->p += 4;
        return;
    }
    *a->p++ = '"';
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            *a->p++ = '\\';
        *a->p++ = *v;
    }
    *a->p++ = '"';
}

/* ---------------------------------------------------------------- load */

/* Row row of a load's result into snap. Returns NULL, or what was not readable (the message of
 * the request's DB_E_INVALID). */
static const char *read_snapshot(const PGresult *r, int row, struct db_wallet_snapshot *snap)
{
    memset(snap, 0, sizeof *snap);
    snap->has_wallet = !PQgetisnull(r, row, L_WALLET_ID);
    const char *bad = snap->has_wallet ? read_wallet(r, row, &snap->wallet) : NULL;
    snap->answered = !PQgetisnull(r, row, L_Q_RC);
    if (!bad && snap->answered && !read_answer_at(r, row, L_Q_RC, &snap->answer))
        bad = "recorded answer";
    return bad;
}

static void invalid_column(struct db_error *err, const char *bad)
{
    char msg[96];
    snprintf(msg, sizeof msg, "wallet load: column %s invalid", bad);
    wallet_error(err, DB_E_INVALID, msg);
}

static void on_load(void *arg, const struct db_reply *rep)
{
    struct wcall *call = arg;
    db_wallet_load_cb cb = call->cb.load;
    void *uarg = call->arg;
    call_put(call);
    if (rep->err->code != 0) {
        cb(uarg, rep->err, NULL);
        return;
    }
    struct db_error err;
    const PGresult *r = rep->n == 1 ? rep->res[0] : NULL;
    if (!r || PQntuples(r) != 1 || PQnfields(r) != L_ncols) {
        wallet_error(&err, DB_E_INVALID, "wallet load: not the one row expected");
        cb(uarg, &err, NULL);
        return;
    }
    struct db_wallet_snapshot snap;
    const char *bad = read_snapshot(r, 0, &snap);
    if (bad) {
        invalid_column(&err, bad);
        cb(uarg, &err, NULL);
        return;
    }
    cb(uarg, rep->err, &snap);
}

int db_wallet_load(struct db_wallet *w, const uint8_t pan_hmac[32], const char *request_key,
                   db_wallet_load_cb cb, void *arg)
{
    if (!w || !pan_hmac || !request_key || !cb)
        return DB_E_INVALID;
    char hmac_txt[2 + 64 + 1] = "\\x";
    at_hex_encode(pan_hmac, 32, hmac_txt + 2);
    const char *v[2] = { hmac_txt, request_key };
    struct db_stmt st = { .prepared = "wallet_load", .nparams = 2, .values = v };
    struct wcall *call = call_get(w, arg);
    if (!call)
        return DB_E_FULL;
    call->cb.load = cb;
    int rc = db_exec(w->c, &st, 1, on_load, call);
    if (rc != 0) {
        call_put(call);
        return rc;
    }
    w->stats.loads++;
    w->stats.load_statements++;
    return 0;
}

/* The result of SQL_LOAD_BATCH: row i is request i (its ord checked), each read on its own. */
static void on_load_batch(void *arg, const struct db_reply *rep)
{
    struct wcall *call = arg;
    db_wallet_load_batch_cb cb = call->cb.load_batch;
    void *uarg = call->arg;
    unsigned n = call->n;
    call_put(call);
    if (rep->err->code != 0) {
        cb(uarg, rep->err, NULL, 0);
        return;
    }
    const PGresult *r = rep->n == 1 ? rep->res[0] : NULL;
    bool shape = r && PQntuples(r) == (int)n && PQnfields(r) == LB_ncols;
    struct db_wallet_loaded out[DB_WALLET_LOAD_MAX];
    for (unsigned i = 0; i < n; i++) {
        int ord = 0;
        const char *bad = NULL;
        if (!shape || !db_col_int(r, (int)i, LB_ORD, &ord) || ord != (int)i + 1)
            bad = "ord";
        else
            bad = read_snapshot(r, (int)i, &out[i].snap);
        memset(&out[i].err, 0, sizeof out[i].err);
        if (bad)
            invalid_column(&out[i].err, bad);
    }
    cb(uarg, rep->err, out, n);
}

int db_wallet_load_batch(struct db_wallet *w, const struct db_wallet_load_req *reqs, unsigned n,
                         db_wallet_load_batch_cb cb, void *arg)
{
    if (!w || !reqs || n == 0 || n > DB_WALLET_LOAD_MAX || !cb)
        return DB_E_INVALID;
    /* Two array literals: {"\\x<64 hex>",...} and {"<key>",...} (keys quoted, \ and " escaped). */
    size_t ksize = 3;
    for (unsigned i = 0; i < n; i++) {
        if (!reqs[i].request_key)
            return DB_E_INVALID;
        ksize += 2 * strlen(reqs[i].request_key) + 3;
    }
    size_t hsize = 3 + (size_t)n * (2 + 3 + 64 + 1);
    struct arrays a = { 0 };
    a.buf = a.p = malloc(hsize + ksize);
    if (!a.buf)
        return DB_E_SYS;
    a.end = a.buf + hsize + ksize;
    a.lit[0] = a.p;
    *a.p++ = '{';
    for (unsigned i = 0; i < n; i++) {
        char h[2 + 64 + 1] = "\\x";
        at_hex_encode(reqs[i].pan_hmac, 32, h + 2);
        arr_elem(&a, h, i == 0);
    }
    *a.p++ = '}';
    *a.p++ = '\0';
    a.lit[1] = a.p;
    *a.p++ = '{';
    for (unsigned i = 0; i < n; i++)
        arr_elem(&a, reqs[i].request_key, i == 0);
    *a.p++ = '}';
    *a.p++ = '\0';
    const char *v[2] = { a.lit[0], a.lit[1] };
    struct db_stmt st = { .prepared = "wallet_load_batch", .nparams = 2, .values = v };
    struct wcall *call = call_get(w, arg);
    int rc = DB_E_FULL;
    if (call) {
        call->cb.load_batch = cb;
        call->n = n;
        rc = db_exec(w->c, &st, 1, on_load_batch, call); /* copies the parameters */
        if (rc != 0)
            call_put(call);
    }
    free(a.buf);
    if (rc == 0) {
        w->stats.loads += n;
        w->stats.load_statements++;
    }
    return rc;
}

void db_wallet_stats(const struct db_wallet *w, struct db_wallet_stats *out)
{
    *out = w->stats;
}

/* ---------------------------------------------------------------- apply */

/* The batch's statement order: by wallet, reversals and unknown wallets last (stable: n is at
 * most 32, an insertion sort). */
static int64_t lock_order(const struct db_wallet_op *op)
{
    if (op->kind == DB_WALLET_OP_COMPLETION)
        return op->u.completion.has_wallet ? op->u.completion.wallet_id : INT64_MAX;
    const struct db_wallet_decision *d = &op->u.decision;
    return op->kind == DB_WALLET_OP_REVERSAL || !d->has_wallet ? INT64_MAX : d->wallet_id;
}

static void sort_ops(const struct db_wallet_op *ops, unsigned n, uint8_t order[])
{
    for (unsigned i = 0; i < n; i++) {
        unsigned j = i;
        int64_t key = lock_order(&ops[i]);
        for (; j > 0 && lock_order(&ops[order[j - 1]]) > key; j--)
            order[j] = order[j - 1];
        order[j] = (uint8_t)i;
    }
}

static const char *opt(const char *s)
{
    return s && *s ? s : NULL;
}

/* The parameters of wallet.sim_apply for d; numbers are written into num. */
static void decision_params(const struct db_wallet_decision *d, const char *v[APPLY_NPARAMS],
                            char num[11][AT_I64_CHARS])
{
    v[0] = d->request_key;
    v[1] = NULL;
    v[2] = NULL;
    if (d->has_wallet) {
        at_put_i64(num[0], d->wallet_id);
        v[1] = num[0];
        v[2] = d->row_version;
    }
    v[3] = d->mti;
    v[4] = d->pcode;
    v[5] = NULL;
    if (d->amount_minor >= 0) {
        at_put_i64(num[1], d->amount_minor);
        v[5] = num[1];
    }
    v[6] = opt(d->rrn);
    v[7] = d->rc;
    v[8] = opt(d->auth_code);
    v[9] = NULL;
    if (d->pin_tries >= 0) {
        at_put_i64(num[2], d->pin_tries);
        v[9] = num[2];
    }
    at_put_i64(num[3], d->hold_minor);
    v[10] = num[3];
    at_put_i64(num[4], d->ledger_minor);
    v[11] = num[4];
    v[12] = d->kind;
    v[13] = d->usage_date;
    at_put_i64(num[5], d->usage_minor);
    v[14] = num[5];
    at_put_i64(num[6], d->usage_cash_minor);
    v[15] = num[6];
    at_put_i64(num[7], d->usage_count);
    v[16] = num[7];
    v[17] = d->usage_date ? d->usage_month : NULL;
    at_put_i64(num[8], d->month_debit_minor);
    v[18] = num[8];
    at_put_i64(num[9], d->day_credit_minor);
    v[19] = num[9];
    at_put_i64(num[10], d->month_credit_minor);
    v[20] = num[10];
}

/* The parameters of wallet.sim_complete for c. */
static void completion_params(const struct db_wallet_completion *c, const char *v[COMPLETE_NPARAMS],
                              char num[11][AT_I64_CHARS])
{
    v[0] = c->request_key;
    v[1] = c->original_key;
    v[2] = NULL;
    if (c->has_wallet) {
        at_put_i64(num[0], c->wallet_id);
        v[2] = num[0];
    }
    v[3] = c->mti;
    v[4] = c->pcode;
    at_put_i64(num[1], c->amount_minor);
    v[5] = num[1];
    at_put_i64(num[2], c->currency);
    v[6] = num[2];
    v[7] = opt(c->rrn);
    v[8] = opt(c->auth_code);
}

/* The parameters of wallet.sim_reverse for r. */
static void reversal_params(const struct db_wallet_reversal *r, const char *v[REVERSE_NPARAMS],
                            char num[11][AT_I64_CHARS])
{
    v[0] = r->original_key;
    v[1] = r->mti;
    v[2] = r->pcode;
    v[3] = NULL;
    if (r->amount_minor >= 0) {
        at_put_i64(num[0], r->amount_minor);
        v[3] = num[0];
    }
    v[4] = opt(r->rrn);
}

static bool parse_verdict(const char *v, enum db_wallet_verdict *out)
{
    for (unsigned i = 0; i < DB_WALLET_verdict_max; i++) {
        if (strcmp(v, verdict_name[i]) == 0) {
            *out = (enum db_wallet_verdict)i;
            return true;
        }
    }
    return false;
}

/* One row of sim_apply / sim_reverse: (outcome, rc, auth_code, balance_minor,
 * available_minor). */
static void read_outcome(const PGresult *r, struct db_wallet_outcome *o)
{
    memset(o, 0, sizeof *o);
    o->status = DB_E_INVALID;
    if (!r || PQntuples(r) != 1 || PQnfields(r) != A_ncols ||
        !parse_verdict(PQgetvalue(r, 0, A_OUTCOME), &o->verdict) ||
        !read_answer(r, A_RC, &o->answer))
        return;
    o->status = 0;
}

/* Row i of sim_apply_batch: (ord, then sim_apply's columns); ord must be i + 1. */
static void read_batch_outcome(const PGresult *r, int i, struct db_wallet_outcome *o)
{
    int ord = 0;
    memset(o, 0, sizeof *o);
    o->status = DB_E_INVALID;
    if (!r || i >= PQntuples(r) || PQnfields(r) != B_ncols || !db_col_int(r, i, B_ORD, &ord) ||
        ord != i + 1 || !parse_verdict(PQgetvalue(r, i, B_OUTCOME), &o->verdict) ||
        !read_answer_at(r, i, B_OUTCOME + 1, &o->answer))
        return;
    o->status = 0;
}

static void on_apply(void *arg, const struct db_reply *rep)
{
    struct wcall *call = arg;
    db_wallet_apply_cb cb = call->cb.apply;
    void *uarg = call->arg;
    unsigned n = call->n, nplain = call->nplain;
    struct db_wallet_outcome out[DB_WALLET_APPLY_MAX];
    if (rep->err->code == 0) {
        unsigned k = call->locked ? 1 : 0; /* result slot */
        if (nplain > 0) {
            const PGresult *r = rep->n > k ? rep->res[k] : NULL;
            for (unsigned i = 0; i < nplain; i++)
                read_batch_outcome(r, (int)i, &out[call->plain[i]]);
            k++;
        }
        unsigned oi = 0; /* next op of order[] */
        for (unsigned j = 0; j < call->ngroups; j++, k++) {
            const PGresult *r = k < rep->n ? rep->res[k] : NULL;
            if (call->group[j] == 0) {
                read_outcome(r, &out[call->order[oi++]]);
                continue;
            }
            for (unsigned i = 0; i < call->group[j]; i++)
                read_batch_outcome(r, (int)i, &out[call->order[oi++]]);
        }
    }
    call_put(call);
    if (rep->err->code != 0)
        cb(uarg, rep->err, NULL, 0);
    else
        cb(uarg, rep->err, out, n);
}

/* A decision sim_apply_batch takes: not an increment (its pre-auth's hold is checked by
 * sim_apply_increment), not an advice (a forced post, sim_advice). */
static bool plain_decision(const struct db_wallet_op *op)
{
    return op->kind == DB_WALLET_OP_DECISION && !op->u.decision.parent_key &&
           !op->u.decision.advice;
}

/* The 21 array literals of sim_apply_batch for the nplain decisions ops[plain[i]]: each
 * decision's sim_apply parameters (decision_params) become element i. Returns 0 or DB_E_SYS. */
static int build_arrays(struct arrays *a, const struct db_wallet_op *ops, const uint8_t *plain,
                        unsigned nplain)
{
    const char *v[DB_WALLET_APPLY_MAX][APPLY_NPARAMS];
    char num[DB_WALLET_APPLY_MAX][11][AT_I64_CHARS];
    size_t size = 0;
    for (unsigned i = 0; i < nplain; i++) {
        decision_params(&ops[plain[i]].u.decision, v[i], num[i]);
        for (unsigned k = 0; k < APPLY_NPARAMS; k++)
            size += (v[i][k] ? 2 * strlen(v[i][k]) + 3 : 5);
    }
    size += APPLY_NPARAMS * 3;
    a->buf = a->p = malloc(size);
    if (!a->buf)
        return DB_E_SYS;
    a->end = a->buf + size;
    for (unsigned k = 0; k < APPLY_NPARAMS; k++) {
        a->lit[k] = a->p;
        *a->p++ = '{';
        for (unsigned i = 0; i < nplain; i++)
            arr_elem(a, v[i][k], i == 0);
        *a->p++ = '}';
        *a->p++ = '\0';
    }
    return 0;
}

/* The three arrays of sim_lock_batch for ops[0..n): the keys (and pre-auth keys) the ops lock,
 * the originals the reversals name, the wallets the ops name. Returns 0 or DB_E_SYS. */
static int build_lock_arrays(struct arrays *a, const struct db_wallet_op *ops, unsigned n)
{
    const char *keys[2 * DB_WALLET_APPLY_MAX], *orig[DB_WALLET_APPLY_MAX];
    char ids[DB_WALLET_APPLY_MAX][AT_I64_CHARS];
    unsigned nk = 0, no = 0, nw = 0;
    size_t size = 16;
    for (unsigned i = 0; i < n; i++) {
        const struct db_wallet_op *op = &ops[i];
        int64_t wallet = -1;
        if (op->kind == DB_WALLET_OP_REVERSAL) {
            orig[no++] = op->u.reversal.original_key;
        } else if (op->kind == DB_WALLET_OP_COMPLETION) {
            keys[nk++] = op->u.completion.request_key;
            keys[nk++] = op->u.completion.original_key;
            if (op->u.completion.has_wallet)
                wallet = op->u.completion.wallet_id;
        } else {
            keys[nk++] = op->u.decision.request_key;
            if (op->u.decision.parent_key)
                keys[nk++] = op->u.decision.parent_key;
            if (op->u.decision.has_wallet)
                wallet = op->u.decision.wallet_id;
        }
        if (wallet >= 0)
            at_put_i64(ids[nw++], wallet);
    }
    for (unsigned i = 0; i < nk; i++)
        size += 2 * strlen(keys[i]) + 3;
    for (unsigned i = 0; i < no; i++)
        size += 2 * strlen(orig[i]) + 3;
    size += nw * (AT_I64_CHARS + 3);
    a->buf = a->p = malloc(size);
    if (!a->buf)
        return DB_E_SYS;
    a->end = a->buf + size;
    const char *const *lists[3] = { keys, orig, NULL };
    unsigned counts[3] = { nk, no, nw };
    for (unsigned k = 0; k < 3; k++) {
        a->lit[k] = a->p;
        *a->p++ = '{';
        for (unsigned i = 0; i < counts[k]; i++)
            arr_elem(a, k < 2 ? lists[k][i] : ids[i], i == 0);
        *a->p++ = '}';
        *a->p++ = '\0';
    }
    return 0;
}

/* The five array literals of sim_reverse_batch for the m reversals ops[idx[i]] (reversal_params
 * of each become element i). Returns 0 or DB_E_SYS. */
static int build_reverse_arrays(struct arrays *a, const struct db_wallet_op *ops,
                                const uint8_t *idx, unsigned m)
{
    const char *v[DB_WALLET_APPLY_MAX][REVERSE_NPARAMS];
    char num[DB_WALLET_APPLY_MAX][11][AT_I64_CHARS];
    size_t size = REVERSE_NPARAMS * 3;
    for (unsigned i = 0; i < m; i++) {
        reversal_params(&ops[idx[i]].u.reversal, v[i], num[i]);
        for (unsigned k = 0; k < REVERSE_NPARAMS; k++)
            size += (v[i][k] ? 2 * strlen(v[i][k]) + 3 : 5);
    }
    a->buf = a->p = malloc(size);
    if (!a->buf)
        return DB_E_SYS;
    a->end = a->buf + size;
    for (unsigned k = 0; k < REVERSE_NPARAMS; k++) {
        a->lit[k] = a->p;
        *a->p++ = '{';
        for (unsigned i = 0; i < m; i++)
            arr_elem(a, v[i][k], i == 0);
        *a->p++ = '}';
        *a->p++ = '\0';
    }
    return 0;
}

int db_wallet_apply(struct db_wallet *w, const struct db_wallet_op *ops, unsigned n,
                    db_wallet_apply_cb cb, void *arg)
{
    if (!w || !ops || n == 0 || n > DB_WALLET_APPLY_MAX || !cb)
        return DB_E_INVALID;
    struct wcall *call = call_get(w, arg);
    if (!call)
        return DB_E_FULL;
    call->cb.apply = cb;
    call->n = n;
    /* In wallet order: the plain decisions go to the one sim_apply_batch call (first), the
     * others follow one statement each. */
    uint8_t sorted[DB_WALLET_APPLY_MAX];
    sort_ops(ops, n, sorted);
    unsigned nplain = 0, nother = 0;
    for (unsigned i = 0; i < n; i++) {
        if (plain_decision(&ops[sorted[i]]))
            call->plain[nplain++] = sorted[i];
        else
            call->order[nother++] = sorted[i];
    }
    call->nplain = nplain;
    /* Parameters live here until db_exec has copied them. */
    struct db_stmt st[DB_WALLET_APPLY_MAX + 2]; /* + sim_lock_batch + sim_apply_batch */
    const char *v[DB_WALLET_APPLY_MAX + 2][OP_MAX_NPARAMS];
    char num[DB_WALLET_APPLY_MAX + 2][11][AT_I64_CHARS];
    struct arrays arr = { 0 }, locks = { 0 };
    unsigned nst = 0;
    /* A batch with ops other than plain decisions takes all its locks first (sim_lock_batch). */
    call->locked = nother > 0 && n > 1;
    if (call->locked) {
        if (build_lock_arrays(&locks, ops, n) != 0) {
            call_put(call);
            return DB_E_SYS;
        }
        st[nst++] = (struct db_stmt){ .prepared = "wallet_lock_batch",
                                      .nparams = 3,
                                      .values = (const char **)locks.lit };
    }
    if (nplain > 0) {
        if (build_arrays(&arr, ops, call->plain, nplain) != 0) {
            free(locks.buf);
            call_put(call);
            return DB_E_SYS;
        }
        st[nst++] = (struct db_stmt){ .prepared = "wallet_apply_batch",
                                      .nparams = APPLY_NPARAMS,
                                      .values = (const char **)arr.lit };
    }
    struct arrays revs[DB_WALLET_APPLY_MAX];
    unsigned nrevs = 0;
    call->ngroups = 0;
    for (unsigned i = 0; i < nother; i++, nst++) {
        const struct db_wallet_op *op = &ops[call->order[i]];
        unsigned m = 0; /* consecutive reversals from here */
        while (i + m < nother && ops[call->order[i + m]].kind == DB_WALLET_OP_REVERSAL)
            m++;
        call->group[call->ngroups++] = (uint8_t)(m > 1 ? m : 0);
        if (m > 1) { /* several reversals: one sim_reverse_batch call (0019) */
            struct arrays *ra = &revs[nrevs];
            if (build_reverse_arrays(ra, ops, call->order + i, m) != 0) {
                for (unsigned g = 0; g < nrevs; g++)
                    free(revs[g].buf);
                free(arr.buf);
                free(locks.buf);
                call_put(call);
                return DB_E_SYS;
            }
            nrevs++;
            st[nst] = (struct db_stmt){ .prepared = "wallet_reverse_batch",
                                        .nparams = REVERSE_NPARAMS,
                                        .values = (const char **)ra->lit };
            i += m - 1;
        } else if (op->kind == DB_WALLET_OP_REVERSAL) {
            reversal_params(&op->u.reversal, v[nst], num[nst]);
            st[nst] = (struct db_stmt){ .prepared = "wallet_reverse",
                                        .nparams = REVERSE_NPARAMS,
                                        .values = v[nst] };
        } else if (op->kind == DB_WALLET_OP_COMPLETION) {
            completion_params(&op->u.completion, v[nst], num[nst]);
            st[nst] = (struct db_stmt){ .prepared = "wallet_complete",
                                        .nparams = COMPLETE_NPARAMS,
                                        .values = v[nst] };
        } else if (op->u.decision.parent_key) { /* an incremental authorization */
            v[nst][0] = op->u.decision.parent_key;
            decision_params(&op->u.decision, v[nst] + 1, num[nst]);
            st[nst] = (struct db_stmt){ .prepared = "wallet_apply_incr",
                                        .nparams = APPLY_INCR_NPARAMS,
                                        .values = v[nst] };
        } else { /* an advice */
            decision_params(&op->u.decision, v[nst], num[nst]);
            st[nst] = (struct db_stmt){ .prepared = "wallet_advice",
                                        .nparams = APPLY_NPARAMS,
                                        .values = v[nst] };
        }
    }
    int rc = db_exec(w->c, st, nst, on_apply, call);
    for (unsigned g = 0; g < nrevs; g++)
        free(revs[g].buf);
    free(arr.buf);
    free(locks.buf);
    if (rc != 0)
        call_put(call);
    return rc;
}

/* ---------------------------------------------------------------- hold expiry */

static void on_expire(void *arg, const struct db_reply *rep)
{
    struct wcall *call = arg;
    db_wallet_expire_cb cb = call->cb.expire;
    void *uarg = call->arg;
    call_put(call);
    if (rep->err->code != 0) {
        cb(uarg, rep->err, 0);
        return;
    }
    const PGresult *r = rep->n == 1 ? rep->res[0] : NULL;
    int64_t n = 0;
    if (!r || PQntuples(r) != 1 || !db_col_i64(r, 0, 0, &n)) {
        struct db_error err;
        wallet_error(&err, DB_E_INVALID, "hold expiry: no count");
        cb(uarg, &err, 0);
        return;
    }
    cb(uarg, rep->err, n);
}

int db_wallet_expire_holds(struct db_wallet *w, db_wallet_expire_cb cb, void *arg)
{
    if (!w || !cb)
        return DB_E_INVALID;
    struct wcall *call = call_get(w, arg);
    if (!call)
        return DB_E_FULL;
    call->cb.expire = cb;
    int rc = db_query(w->c, SQL_EXPIRE, 0, NULL, on_expire, call);
    if (rc != 0)
        call_put(call);
    return rc;
}

/* ---------------------------------------------------------------- start-up check */

int db_wallet_schema_check(const char *conninfo, struct db_error *err)
{
    PGconn *pc = PQconnectdb(conninfo ? conninfo : "");
    int rc;
    if (PQstatus(pc) != CONNECTION_OK) {
        dbc_set_error(err, DB_E_CONN, NULL, PQerrorMessage(pc));
        rc = DB_E_CONN;
    } else {
        rc = db_schema_check(pc, DB_WALLET_SCHEMA_VERSION, err);
    }
    PQfinish(pc);
    return rc;
}

int db_wallet_census(const char *conninfo, struct db_wallet_census *out, struct db_error *err)
{
    static const char sql[] = "SELECT left(pan_masked, 6), currency, count(*) FROM wallet.wallets"
                              " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2";
    memset(out, 0, sizeof *out);
    PGconn *pc = PQconnectdb(conninfo ? conninfo : "");
    if (PQstatus(pc) != CONNECTION_OK) {
        dbc_set_error(err, DB_E_CONN, NULL, PQerrorMessage(pc));
        PQfinish(pc);
        return DB_E_CONN;
    }
    PGresult *r = PQexec(pc, sql);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        dbc_set_error(err, DB_E_SQL, PQresultErrorField(r, PG_DIAG_SQLSTATE),
                      PQresultErrorMessage(r));
        rc = DB_E_SQL;
    }
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        int64_t count = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        out->wallets += count;
        if (out->n == DB_WALLET_CENSUS_MAX) {
            out->more = true;
            continue;
        }
        snprintf(out->group[out->n].bin, sizeof out->group[out->n].bin, "%s", PQgetvalue(r, i, 0));
        out->group[out->n].currency = atoi(PQgetvalue(r, i, 1));
        out->group[out->n++].wallets = count;
    }
    PQclear(r);
    PQfinish(pc);
    return rc;
}
