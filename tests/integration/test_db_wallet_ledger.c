/* The set-based wallet ledger (migration 0017, docs/db.md "Wallet schema: the set-based
 * ledger") against a real PostgreSQL: every money invariant is attacked with direct SQL and
 * must hold (balance = sum of the ledger, held = sum of the active holds, no overdraft, the
 * ledger append-only, a hold's wallet and amount fixed, the tier cap, a ledger row's
 * balance_after_minor continuing its wallet's balance), no per-row plpgsql trigger runs on the
 * hot path, and a batch of mixed decisions applied by wallet.sim_apply_batch (db_wallet_apply)
 * answers exactly what the per-decision wallet.sim_apply answers, in the same order, with the
 * same balances. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_testlib.h"
#include "fmt.h"
#include "wallet.h"

struct fixture {
    char conninfo[256];
    struct event_base *base;
    struct db_wallet *w;
    PGconn *check;
};

struct loaded {
    bool done;
    struct db_wallet_snapshot snap;
};

static void on_load(void *arg, const struct db_error *err, const struct db_wallet_snapshot *snap)
{
    struct loaded *l = arg;
    assert_int_equal(err->code, 0);
    l->snap = *snap;
    l->done = true;
}

static bool loaded_done(void *arg)
{
    return ((struct loaded *)arg)->done;
}

struct applied {
    bool done;
    struct db_error err;
    unsigned n;
    struct db_wallet_outcome out[DB_WALLET_APPLY_MAX];
};

static void on_apply(void *arg, const struct db_error *err, const struct db_wallet_outcome *out,
                     unsigned n)
{
    struct applied *a = arg;
    a->done = true;
    a->err = *err;
    a->n = n;
    if (out)
        memcpy(a->out, out, n * sizeof *out);
}

static bool applied_done(void *arg)
{
    return ((struct applied *)arg)->done;
}

static void hmac_of(unsigned i, uint8_t out[32])
{
    for (unsigned k = 0; k < 32; k++)
        out[k] = (uint8_t)(i * 17 + k);
}

/* Wallets 1..n with 1000 * i each, tier 1 (cap 500000 MAD). */
static void seed(const char *conninfo, unsigned n)
{
    struct db_wallet_seeder *s = NULL;
    struct db_error err = { 0 };
    uint64_t inserted = 0;
    assert_int_equal(db_wallet_seeder_open(conninfo, &s, &err), 0);
    assert_int_equal(db_wallet_seed_begin(s, &err), 0);
    for (unsigned i = 1; i <= n; i++) {
        struct db_wallet_seed_row r;
        memset(&r, 0, sizeof r);
        hmac_of(i, r.pan_hmac);
        snprintf(r.pan_masked, sizeof r.pan_masked, "489001******%04u", i);
        memcpy(r.expiry, "2812", 5);
        r.currency = 504;
        r.balance_minor = 1000 * i;
        r.status = DB_WALLET_ACTIVE;
        r.daily_limit_minor = -1;
        r.pin_method = DB_WALLET_PIN_PVV;
        r.pvki = 1;
        memcpy(r.pvv, "1234", 5);
        assert_int_equal(db_wallet_seed_add(s, &r, &err), 0);
    }
    assert_int_equal(db_wallet_seed_commit(s, &inserted, &err), 0);
    assert_int_equal(inserted, n);
    db_wallet_seeder_close(s);
}

static int setup_one(struct fixture *f, const char *tag)
{
    const char *ci = dbt_create(tag);
    if (!ci)
        return -1;
    snprintf(f->conninfo, sizeof f->conninfo, "%s", ci);
    f->base = event_base_new();
    struct db_wallet_opts o = { .conninfo = f->conninfo, .connections = 1 };
    if (!f->base || db_wallet_new(f->base, &o, &f->w) != 0)
        return -1;
    f->check = dbt_connect(f->conninfo);
    return f->check ? 0 : -1;
}

static void teardown_one(struct fixture *f)
{
    db_wallet_free(f->w);
    event_base_free(f->base);
    PQfinish(f->check);
    dbt_drop(f->conninfo);
}

/* Two databases: [0] takes the batch path, [1] the per-decision functions. */
static int setup(void **state)
{
    struct fixture *f = calloc(2, sizeof *f);
    if (!f || setup_one(&f[0], "wlb") != 0 || setup_one(&f[1], "wlo") != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    teardown_one(&f[0]);
    teardown_one(&f[1]);
    free(f);
    return 0;
}

static struct db_wallet_row load(struct fixture *f, unsigned card)
{
    struct loaded l = { 0 };
    uint8_t h[32];
    hmac_of(card, h);
    assert_int_equal(db_wallet_load(f->w, h, "no-such-key", on_load, &l), 0);
    assert_int_equal(dbt_run_until(f->base, loaded_done, &l, 10000), 0);
    assert_true(l.snap.has_wallet);
    return l.snap.wallet;
}

static struct applied apply(struct fixture *f, const struct db_wallet_op *ops, unsigned n)
{
    struct applied a = { 0 };
    assert_int_equal(db_wallet_apply(f->w, ops, n, on_apply, &a), 0);
    assert_int_equal(dbt_run_until(f->base, applied_done, &a, 10000), 0);
    return a;
}

/* "" when sql succeeds, else its SQLSTATE (the message, when want_msg is given, must hold
 * want_msg). */
static const char *sqlstate_of(PGconn *c, const char *sql, const char *want_msg)
{
    static char state[8];
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    state[0] = '\0';
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        snprintf(state, sizeof state, "%s", s ? s : "?");
        if (want_msg && !strstr(PQresultErrorMessage(r), want_msg)) {
            print_error("%s: message %s lacks \"%s\"\n", sql, PQresultErrorMessage(r), want_msg);
            snprintf(state, sizeof state, "msg");
        }
    }
    PQclear(r);
    return state;
}

/* "balance/held" of wallet card, and the invariants view empty. */
static void assert_wallet(PGconn *c, unsigned card, const char *want)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT balance_minor || '/' || held_minor FROM wallet.wallets "
             "WHERE pan_masked = '489001******%04u'",
             card);
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    assert_string_equal(PQgetvalue(r, 0, 0), want);
    PQclear(r);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM wallet.invariant_violations"), 0);
}

#define W(card)                                                                                    \
    "(SELECT wallet_id FROM wallet.wallets WHERE pan_masked = '489001******000" #card "')"

/* Each invariant attacked with direct SQL, as an application bug or an operator could. */
static void test_invariants_hold_against_direct_sql(void **state)
{
    struct fixture *f = *state;
    PGconn *c = f[0].check;
    seed(f[0].conninfo, 3);
    assert_wallet(c, 1, "1000/0");

    /* Balances and held amounts move only through the ledger and the holds. */
    assert_string_equal(sqlstate_of(c,
                                    "UPDATE wallet.wallets SET balance_minor = balance_minor"
                                    " + 100",
                                    NULL),
                        "42501");
    assert_string_equal(sqlstate_of(c, "UPDATE wallet.wallets SET held_minor = 1", NULL), "42501");
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.wallets (pan_hmac, pan_masked, expiry,"
                                    " currency, pin_method, pvki, pvv, balance_minor) VALUES "
                                    "(decode(repeat('ab', 32), 'hex'), '489001******9999', "
                                    "'2812', 504, 'pvv', 1, '1234', 500)",
                                    NULL),
                        "23514");
    /* The ledger is append-only. */
    assert_string_equal(sqlstate_of(c, "UPDATE wallet.ledger SET amount_minor = 5", NULL), "42501");
    assert_string_equal(sqlstate_of(c, "DELETE FROM wallet.ledger", NULL), "42501");
    assert_string_equal(sqlstate_of(c, "DELETE FROM wallet.ledger WHERE false", NULL), "42501");
    /* No overdraft, whether balance_after_minor is given or left to the trigger. */
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor) VALUES (" W(1) ", 'o1', 'purchase', -1001)",
                                    "violates check constraint"),
                        "23514");
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor, balance_after_minor) VALUES (" W(
                                        1) ", "
                                           "'o2', 'purchase', -1001, -1)",
                                    "violates check constraint"),
                        "23514");
    /* A row whose balance_after_minor does not continue its wallet's balance: a debit that
     * claims the balance did not move, a credit that claims more than it brings. */
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor, balance_after_minor) VALUES (" W(
                                        1) ", "
                                           "'f1', 'purchase', -100, 1000)",
                                    "continue their wallet"),
                        "23514");
    assert_string_equal(
        sqlstate_of(c,
                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                    " amount_minor, balance_after_minor) VALUES (" W(2) ", "
                                                                        "'f2', 'credit', 1, 9001)",
                    "continue their wallet"),
        "23514");
    /* Two rows of one wallet in one statement: the second must continue the first. */
    assert_string_equal(
        sqlstate_of(c,
                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                    " amount_minor, balance_after_minor) VALUES (" W(
                        1) ", "
                           "'f3', 'purchase', -100, 900), (" W(1) ", 'f4', "
                                                                  "'purchase', -100, 900)",
                    "continue their wallet"),
        "23514");
    /* One row per wallet (the common case, 0026's single UPDATE): one wallet's row that does
     * not continue refuses the whole statement, the other wallet's correct row included; an
     * empty statement moves nothing. */
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor, balance_after_minor) VALUES (" W(
                                        1) ", 'f5', 'purchase',"
                                           " -100, 900), (" W(2) ", 'f6', 'purchase', -100, 1950)",
                                    "continue their wallet"),
                        "23514");
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor, balance_after_minor) SELECT wallet_id, 'e1',"
                                    " 'purchase', -1, 0 FROM wallet.wallets WHERE false",
                                    NULL),
                        "");
    assert_wallet(c, 1, "1000/0");
    assert_wallet(c, 2, "2000/0");
    /* Correct rows are applied: given, and left to the trigger, several per wallet. */
    assert_string_equal(
        sqlstate_of(c,
                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                    " amount_minor, balance_after_minor) VALUES (" W(
                        1) ", "
                           "'g1', 'purchase', -100, 900), (" W(1) ", 'g2', "
                                                                  "'purchase', -100, 800)",
                    NULL),
        "");
    assert_string_equal(
        sqlstate_of(c,
                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                    " amount_minor) VALUES (" W(1) ", 'g3', 'credit', 5), "
                                                   "(" W(2) ", 'g4', 'purchase', -7), (" W(
                                                       1) ", 'g5', "
                                                          "'purchase', -3)",
                    NULL),
        "");
    assert_wallet(c, 1, "802/0");
    assert_wallet(c, 2, "1993/0");
    assert_int_equal(dbt_scalar(c, "SELECT balance_after_minor FROM wallet.ledger WHERE "
                                   "request_key = 'g5'"),
                     802);

    /* Holds: not beyond what the wallet has; wallet and amount fixed; released or deleted, the
     * held amount follows. */
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.holds (wallet_id, request_key, "
                                    "amount_minor, currency, expires_at) VALUES (" W(
                                        3) ", "
                                           "'h0', 3001, 504, now() + interval '1 day')",
                                    "wallet_holds_covered"),
                        "23514");
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.holds (wallet_id, request_key, "
                                    "amount_minor, currency, expires_at) VALUES (" W(
                                        3) ", "
                                           "'h1', 1000, 504, now() + interval '1 day'), (" W(
                                               3) ", "
                                                  "'h2', 500, 504, now() + interval '1 day')",
                                    NULL),
                        "");
    assert_wallet(c, 3, "3000/1500");
    assert_string_equal(sqlstate_of(c, "UPDATE wallet.holds SET amount_minor = 1", NULL), "42501");
    assert_string_equal(sqlstate_of(c, "UPDATE wallet.holds SET wallet_id = " W(1), NULL), "42501");
    /* Spending what is held is an overdraft of the available amount. */
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor) VALUES (" W(3) ", 'o3', 'purchase', -1501)",
                                    "wallet_holds_covered"),
                        "23514");
    assert_string_equal(sqlstate_of(c,
                                    "UPDATE wallet.holds SET status = 'released' WHERE "
                                    "request_key = 'h1'",
                                    NULL),
                        "");
    assert_wallet(c, 3, "3000/500");
    assert_string_equal(sqlstate_of(c, "DELETE FROM wallet.holds WHERE request_key = 'h2'", NULL),
                        "");
    assert_wallet(c, 3, "3000/0");

    /* The tier cap (tier 1: 500000): a credit above it is refused, the reversal of a debit is
     * not. */
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor) VALUES (" W(3) ", 'c1', 'credit', 497001)",
                                    "tier cap"),
                        "23514");
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor) VALUES (" W(3) ", 'c2', 'credit', 497000)",
                                    NULL),
                        "");
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor, reverses_entry_id) SELECT wallet_id, 'c3',"
                                    " 'reversal', 100, entry_id FROM wallet.ledger WHERE "
                                    "request_key = 'g1'",
                                    NULL),
                        "");
    assert_wallet(c, 3, "500000/0");
    assert_wallet(c, 1, "902/0");

    /* The hot path's tables have no per-row plpgsql trigger that fires unconditionally on the
     * statements it runs (only ones with a WHEN that the batch does not meet, and PostgreSQL's
     * own foreign-key triggers). */
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM pg_trigger t JOIN pg_class r ON r.oid = "
                                   "t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace "
                                   "WHERE n.nspname = 'wallet' AND r.relname IN ('ledger', "
                                   "'holds', 'requests', 'wallets') AND NOT t.tgisinternal AND "
                                   "t.tgtype & 1 = 1 AND t.tgqual IS NULL AND (r.relname <> "
                                   "'wallets' OR t.tgtype & 16 = 16)"),
                     0);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM wallet.invariant_violations"), 0);

    /* TRUNCATE fires no row trigger: refused outright (a lab reset opts in). */
    assert_string_equal(sqlstate_of(c, "TRUNCATE wallet.ledger", "cannot be truncated"), "42501");
    assert_string_equal(sqlstate_of(c, "TRUNCATE wallet.holds CASCADE", NULL), "42501");
    assert_string_equal(sqlstate_of(c, "TRUNCATE wallet.requests CASCADE", NULL), "42501");
    assert_wallet(c, 3, "500000/0");
}

/* The filled chain (rows inserted without balance_after_minor: the per-op functions, operator
 * SQL) continues the locked balance, whatever order the rows' entry_ids are in: an unlocked
 * writer draws its entry_id before it queues on the wallet's lock, and OVERRIDING SYSTEM VALUE
 * gives any id. When the head was "the wallet's row with the highest entry_id", either left
 * every later filled row of the wallet refused (23514 ledger_balance_chain) for good: its
 * reversals, completions and advices could no longer be applied. */
static void test_fill_heads_on_the_locked_balance(void **state)
{
    struct fixture *f = *state;
    PGconn *c = f[0].check;
    seed(f[0].conninfo, 2);
    assert_wallet(c, 1, "1000/0");

    /* Session a holds wallet 1's lock; b's insert draws its entry_id, then queues on the lock;
     * a inserts (a later entry_id) and commits; then b's row goes in. */
    PGconn *b = dbt_connect(f[0].conninfo);
    assert_non_null(b);
    assert_string_equal(sqlstate_of(c, "BEGIN", NULL), "");
    assert_string_equal(
        sqlstate_of(c, "SELECT 1 FROM wallet.wallets WHERE wallet_id = " W(1) " FOR UPDATE", NULL),
        "");
    assert_int_equal(PQsendQuery(b, "INSERT INTO wallet.ledger (wallet_id, request_key, kind, "
                                    "amount_minor) VALUES (" W(1) ", 'u1', 'purchase', -10)"),
                     1);
    /* b waits on the lock (a second is ample for it to get there). */
    for (int i = 0; i < 100; i++) {
        if (dbt_scalar(c, "SELECT count(*) FROM pg_locks WHERE NOT granted") > 0)
            break;
        usleep(10000);
    }
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor) VALUES (" W(1) ", 'u2', 'purchase', -20)",
                                    NULL),
                        "");
    assert_string_equal(sqlstate_of(c, "COMMIT", NULL), "");
    PGresult *r;
    bool ok = true;
    while ((r = PQgetResult(b)) != NULL) {
        ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    assert_true(ok);
    PQfinish(b);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM wallet.ledger WHERE request_key = 'u1' "
                                   "AND entry_id < (SELECT entry_id FROM wallet.ledger WHERE "
                                   "request_key = 'u2')"),
                     1);
    assert_wallet(c, 1, "970/0");
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor) VALUES (" W(1) ", 'u3', 'purchase', -1)",
                                    NULL),
                        "");
    assert_wallet(c, 1, "969/0");

    /* A row given a high entry_id and a right balance_after_minor is accepted; the filled rows
     * after it — one per statement, and several in one statement — still continue the
     * balance. */
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (entry_id, wallet_id, request_key,"
                                    " kind, amount_minor, balance_after_minor) OVERRIDING SYSTEM"
                                    " VALUE VALUES (900000000, " W(2) ", 'o1', 'purchase', -10,"
                                                                      " 1990)",
                                    NULL),
                        "");
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor) VALUES (" W(2) ", 'o2', 'purchase', -5)",
                                    NULL),
                        "");
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor) VALUES (" W(2) ", 'o3', 'purchase', -1), (" W(
                                        2) ", 'o4', 'purchase', -2), (" W(1) ", 'o5', 'purchase',"
                                                                             " -9)",
                                    NULL),
                        "");
    assert_wallet(c, 2, "1982/0");
    assert_wallet(c, 1, "960/0");
    assert_int_equal(dbt_scalar(c, "SELECT balance_after_minor FROM wallet.ledger WHERE "
                                   "request_key = 'o4'"),
                     1982);
    /* A statement that fails leaves no running sum behind for the next one. */
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor) VALUES (" W(2) ", 'o6', 'purchase', -7), (" W(
                                        2) ", 'o6', 'purchase', -7)",
                                    NULL),
                        "23505");
    assert_string_equal(sqlstate_of(c,
                                    "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                    " amount_minor) VALUES (" W(2) ", 'o7', 'purchase', -2)",
                                    NULL),
                        "");
    assert_wallet(c, 2, "1980/0");
}

/* ---- the batch against the per-decision path ------------------------------------------- */

/* An approved debit of amount (ledger + usage) on the snapshot s. */
static struct db_wallet_op debit(const char *key, const struct db_wallet_row *s, int64_t amount,
                                 const char *auth)
{
    static char day[11], month[11]; /* today: a reversal gives back the usage of its day */
    dbt_utc_today(day, month);
    return (struct db_wallet_op){
        .kind = DB_WALLET_OP_DECISION,
        .u.decision = { .request_key = key,
                        .has_wallet = true,
                        .wallet_id = s->wallet_id,
                        .row_version = s->row_version,
                        .mti = "0200",
                        .pcode = "000000",
                        .amount_minor = amount,
                        .rrn = "123456789012",
                        .rc = "00",
                        .auth_code = auth,
                        .pin_tries = 0,
                        .ledger_minor = -amount,
                        .kind = "purchase",
                        .usage_date = day,
                        .usage_minor = amount,
                        .usage_count = 1,
                        .usage_month = month,
                        .month_debit_minor = amount },
    };
}

/* A decline: rc, the PIN try counter (-1 = unchanged), nothing else. */
static struct db_wallet_op decline(const char *key, const struct db_wallet_row *s, const char *rc,
                                   int pin_tries)
{
    static const struct db_wallet_row none = { 0 };
    struct db_wallet_op op = debit(key, s ? s : &none, 10, NULL);
    op.u.decision.rc = rc;
    op.u.decision.pin_tries = pin_tries;
    op.u.decision.ledger_minor = 0;
    op.u.decision.kind = NULL;
    op.u.decision.usage_date = NULL;
    op.u.decision.usage_month = NULL;
    if (!s)
        op.u.decision.has_wallet = false;
    return op;
}

/* ---- plans made on a new issuer database ------------------------------------------------ */

static void on_load_batch(void *arg, const struct db_error *err, const struct db_wallet_loaded *out,
                          unsigned n)
{
    (void)out;
    int *left = arg;
    *left = err->code == 0 && n == 2 ? 0 : -1;
}

static bool load_batch_done(void *arg)
{
    return *(int *)arg <= 0;
}

/* The hot path's statements are planned once per session. On a new issuer database
 * (wallet.requests empty and never analyzed) the batch's and the batched load's lookups of the
 * recorded answers were planned as sequential scans of wallet.requests, kept for the session's
 * life: every batch then read the whole table (a curve at 10,000 fresh wallets: 4 ms of
 * PostgreSQL CPU per authorization at 500/s). Counted by PostgreSQL itself. */
static void test_hot_path_never_scans_requests(void **state)
{
    struct fixture *f = *state;
    PGconn *c = f[0].check;
    seed(f[0].conninfo, 2);
    const char *scans = "SELECT seq_scan FROM pg_stat_user_tables WHERE relid = "
                        "'wallet.requests'::regclass";
    long long before = dbt_scalar(c, scans);
    enum { ROUNDS = 8 };
    for (unsigned r = 0; r < ROUNDS; r++) {
        struct db_wallet_row w1 = load(&f[0], 1);
        char key[32];
        snprintf(key, sizeof key, "scan-%u", r);
        struct db_wallet_op op = decline(key, &w1, "05", -1);
        struct applied a = apply(&f[0], &op, 1);
        assert_int_equal(a.err.code, 0);
        struct db_wallet_load_req reqs[2] = { { .request_key = key }, { .request_key = "none" } };
        hmac_of(1, reqs[0].pan_hmac);
        hmac_of(2, reqs[1].pan_hmac);
        int left = 1;
        assert_int_equal(db_wallet_load_batch(f[0].w, reqs, 2, on_load_batch, &left), 0);
        assert_int_equal(dbt_run_until(f[0].base, load_batch_done, &left, 10000), 0);
        assert_int_equal(left, 0);
        /* A backend publishes its table counters when it goes idle at least a second after it
         * last did: the last rounds come after that second. */
        if (r == ROUNDS - 3)
            usleep(1200000);
    }
    usleep(300000);
    long long after = dbt_scalar(c, scans);
    print_message("hot path: %d rounds, %lld sequential scans of wallet.requests\n", ROUNDS,
                  after - before);
    assert_int_equal(after - before, 0);
    assert_int_equal(dbt_scalar(c, "SELECT count(*) FROM wallet.requests WHERE request_key LIKE "
                                   "'scan-%'"),
                     ROUNDS);
    /* And its statements are planned once per session (the loads, planned again on every call
     * before, cost as much to plan as to run). */
    long long plans, calls;
    assert_int_equal(dbt_plans(c, "SELECT w.wallet_id, w.xmin::text", &plans, &calls), 0);
    print_message("hot path: %lld loads, %lld plans\n", calls, plans);
    assert_true(calls >= 2 * ROUNDS);
    /* One per statement, and again only when the statistics change (an autoanalyze of the
     * tables: it happens while the suite runs); planned on every call, it was 15 for 16. */
    assert_true(plans * 2 <= calls);
}

/* Pages of wallet.requests read so far (published by idle backends). */
static long long requests_pages_read(PGconn *c)
{
    return dbt_scalar(c, "SELECT heap_blks_hit + heap_blks_read FROM pg_statio_user_tables"
                         " WHERE relid = 'wallet.requests'::regclass");
}

/* One round of the hot path for card 1 under key: its batched load, then its decision. */
static void hot_round(struct fixture *f, const char *key)
{
    struct db_wallet_load_req reqs[1] = { { .request_key = key } };
    hmac_of(1, reqs[0].pan_hmac);
    int left = 1;
    assert_int_equal(db_wallet_load_batch(f->w, reqs, 1, on_load_batch, &left), 0);
    assert_int_equal(dbt_run_until(f->base, load_batch_done, &left, 10000), 0);
    struct db_wallet_row w1 = load(f, 1);
    struct db_wallet_op op = decline(key, &w1, "05", -1);
    struct applied a = apply(f, &op, 1);
    assert_int_equal(a.err.code, 0);
}

/* Inserts requests bulk-<from>..bulk-<to> straight into wallet.requests (and, with analyze,
 * gives the planner the table's size: that also makes every session plan again), on a
 * connection of its own (closed: its counters are published before the next reading). */
static void bulk_requests(const char *conninfo, int from, int to, bool analyze)
{
    PGconn *c = dbt_connect(conninfo);
    assert_non_null(c);
    char sql[400];
    snprintf(sql, sizeof sql,
             "INSERT INTO wallet.requests (request_key, mti, processing_code, amount_minor,"
             " response_code) SELECT 'bulk-' || g, '0100', '000000', 1, '05'"
             " FROM generate_series(%d, %d) g; %s",
             from, to, analyze ? "ANALYZE wallet.requests" : "");
    assert_int_equal(dbt_exec(c, sql), 0);
    PQfinish(c);
}

/* A session keeps its plans (generic, made on its first batch): made while wallet.requests was
 * small — a young issuer database — they must still look each request up by its key once the
 * table has grown. The reversal check's EXISTS became a hashed sub-plan over a bitmap scan of
 * every key, rebuilt on every batch: the whole stack's latency grew with the table (at 2,000/s,
 * p50 17 ms and rising). */
static void test_hot_path_reads_requests_by_key(void **state)
{
    struct fixture *f = *state;
    PGconn *c = f[0].check;
    seed(f[0].conninfo, 2);
    enum { SMALL = 600, BULK = 20000, ROUNDS = 6 };
    /* Only this test's sessions read the table (autovacuum's reads would count too); set before
     * the plans are made (an ALTER TABLE makes every session plan again). */
    assert_int_equal(dbt_exec(c, "ALTER TABLE wallet.requests SET (autovacuum_enabled = false)"),
                     0);
    bulk_requests(f[0].conninfo, 1, SMALL, true);
    hot_round(&f[0], "grow-0"); /* the session's plans, on the small table */
    bulk_requests(f[0].conninfo, SMALL + 1, SMALL + BULK, false);
    usleep(1200000); /* the first round's counters are published */
    long long before = requests_pages_read(c);
    for (unsigned r = 1; r <= ROUNDS; r++) {
        char key[32];
        snprintf(key, sizeof key, "grow-%u", r);
        hot_round(&f[0], key);
        if (r == ROUNDS - 2)
            usleep(1200000);
    }
    usleep(300000);
    long long read = requests_pages_read(c) - before;
    print_message("hot path: %d rounds on %d requests, %lld pages of wallet.requests read\n",
                  ROUNDS, SMALL + BULK, read);
    /* By key: a few pages per round (14 in all, measured); the whole table each round read
     * ~146 per round (876). */
    assert_true(read < 10 * ROUNDS);
}

/* The per-decision function of before 0017, wallet.sim_apply, called by SQL for d: the answer
 * as a db_wallet_outcome. */
static struct db_wallet_outcome old_apply(PGconn *c, const struct db_wallet_decision *d)
{
    char num[11][AT_I64_CHARS];
    const char *v[21];
    memset(v, 0, sizeof v);
    v[0] = d->request_key;
    if (d->has_wallet) {
        at_put_i64(num[0], d->wallet_id);
        v[1] = num[0];
        v[2] = d->row_version;
    }
    v[3] = d->mti;
    v[4] = d->pcode;
    at_put_i64(num[1], d->amount_minor);
    v[5] = num[1];
    v[6] = d->rrn;
    v[7] = d->rc;
    v[8] = d->auth_code && *d->auth_code ? d->auth_code : NULL;
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
    PGresult *r = PQexecParams(c,
                               "SELECT * FROM wallet.sim_apply($1, $2::bigint, $3, $4, $5, "
                               "$6::bigint, $7, $8, $9, $10::integer, $11::bigint, $12::bigint, "
                               "$13, $14::date, $15::bigint, $16::bigint, $17::integer, "
                               "$18::date, $19::bigint, $20::bigint, $21::bigint)",
                               21, NULL, v, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    struct db_wallet_outcome o = { 0 };
    static const char *const names[] = { "applied", "duplicate", "reversed", "retry" };
    o.verdict = DB_WALLET_verdict_max;
    for (unsigned i = 0; i < 4; i++)
        if (strcmp(PQgetvalue(r, 0, 0), names[i]) == 0)
            o.verdict = (enum db_wallet_verdict)i;
    snprintf(o.answer.rc, sizeof o.answer.rc, "%s", PQgetvalue(r, 0, 1));
    snprintf(o.answer.auth_code, sizeof o.answer.auth_code, "%s", PQgetvalue(r, 0, 2));
    o.answer.has_balances = !PQgetisnull(r, 0, 3);
    if (o.answer.has_balances) {
        o.answer.balance_minor = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
        o.answer.available_minor = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
    }
    PQclear(r);
    return o;
}

#define NOPS 12

/* The batch of the test, on database f's snapshots: every outcome a decision can have, and
 * several decisions on one wallet. Before it: a request answered ("dup"), a reversal that came
 * before its original ("rev"), and wallet 4 changed after its snapshot was read. */
static void batch_ops(struct fixture *f, struct db_wallet_op ops[NOPS])
{
    struct db_wallet_row w[5];
    for (unsigned i = 1; i <= 4; i++)
        w[i] = load(f, i);
    struct db_wallet_op first = debit("dup", &w[2], 100, "100001");
    assert_int_equal(apply(f, &first, 1).out[0].verdict, DB_WALLET_APPLIED);
    struct db_wallet_op rev = { .kind = DB_WALLET_OP_REVERSAL,
                                .u.reversal = { .original_key = "rev",
                                                .mti = "0420",
                                                .pcode = "000000",
                                                .amount_minor = 10 } };
    assert_int_equal(apply(f, &rev, 1).out[0].verdict, DB_WALLET_NOT_FOUND);
    rev.u.reversal.original_key = "rev2";
    assert_int_equal(apply(f, &rev, 1).out[0].verdict, DB_WALLET_NOT_FOUND);
    struct db_wallet_row stale4 = w[4];
    struct db_wallet_op change4 = debit("w4", &w[4], 1, "100002");
    assert_int_equal(apply(f, &change4, 1).out[0].verdict, DB_WALLET_APPLIED);
    w[2] = load(f, 2);
    w[4] = load(f, 4);
    /* Static storage: the ops point at the snapshots' row versions. */
    static struct db_wallet_row keep[2][5];
    static unsigned which;
    struct db_wallet_row *k = keep[which++ % 2];
    memcpy(k, w, sizeof w);
    k[0] = stale4;

    struct db_wallet_op hold = debit("hold3", &k[3], 700, "200005");
    hold.u.decision.mti = "0100";
    hold.u.decision.ledger_minor = 0;
    hold.u.decision.kind = NULL;
    hold.u.decision.hold_minor = 700;
    struct db_wallet_op list[NOPS] = {
        debit("a1", &k[1], 300, "200001"),   /* applied: the first change of wallet 1 */
        decline("n2", &k[2], "05", -1),      /* applied: a decline that changes nothing */
        debit("a2", &k[1], 200, "200002"),   /* retry: wallet 1 changed by a1 */
        debit("dup", &k[2], 100, "200003"),  /* duplicate: the recorded answer */
        debit("rev", &k[3], 50, "200004"),   /* reversed: declined 12, no effect */
        hold,                                /* applied: a hold on wallet 3 */
        decline("nocard", NULL, "14", -1),   /* applied: no wallet */
        debit("stale", &k[0], 10, "200006"), /* retry: wallet 4's snapshot is old */
        decline("pin2", &k[2], "55", 1),     /* applied: the first change of wallet 2 */
        debit("a3", &k[2], 5, "200007"),     /* retry: after pin2 */
        debit("over", &k[4], 100, "200008"), /* applied: wallet 4 on its fresh snapshot */
        debit("rev2", &k[3], 60, "200009"),  /* reversed, after wallet 3's hold: its balances */
    };
    memcpy(ops, list, sizeof list);
}

/* The sort db_wallet_apply's old path ran the decisions in: by wallet, no wallet last,
 * stable. */
static void old_order(const struct db_wallet_op *ops, unsigned order[NOPS])
{
    for (unsigned i = 0; i < NOPS; i++) {
        unsigned j = i;
        const struct db_wallet_decision *d = &ops[i].u.decision;
        int64_t key = d->has_wallet ? d->wallet_id : INT64_MAX;
        for (; j > 0; j--) {
            const struct db_wallet_decision *p = &ops[order[j - 1]].u.decision;
            if ((p->has_wallet ? p->wallet_id : INT64_MAX) <= key)
                break;
            order[j] = order[j - 1];
        }
        order[j] = i;
    }
}

static void wallets_state(PGconn *c, char *out, size_t cap)
{
    PGresult *r = PQexec(c, "SELECT string_agg(concat_ws('/', balance_minor, held_minor, "
                            "pin_tries, usage_minor, usage_count, month_debit_minor), ' ' ORDER "
                            "BY pan_masked) || ' ledger ' || (SELECT count(*) FROM "
                            "wallet.ledger) || ' holds ' || (SELECT count(*) FROM wallet.holds) "
                            "|| ' requests ' || (SELECT string_agg(request_key || '=' || "
                            "response_code || '/' || coalesce(auth_code, '-') || '/' || "
                            "coalesce(balance_minor::text, '-') || '/' || "
                            "coalesce(available_minor::text, '-'), ' ' ORDER BY request_key) "
                            "FROM wallet.requests) FROM wallet.wallets");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

static void test_batch_answers_as_the_per_decision_path(void **state)
{
    struct fixture *f = *state;
    seed(f[0].conninfo, 4);
    seed(f[1].conninfo, 4);
    struct db_wallet_op batch[NOPS], single[NOPS];
    batch_ops(&f[0], batch);
    batch_ops(&f[1], single);

    /* The batch: one db_wallet_apply, one transaction. */
    struct applied a = apply(&f[0], batch, NOPS);
    assert_int_equal(a.err.code, 0);
    assert_int_equal(a.n, NOPS);

    /* The old path: sim_apply once per decision, in wallet order, in one transaction. */
    unsigned order[NOPS];
    old_order(single, order);
    struct db_wallet_outcome old[NOPS];
    assert_int_equal(dbt_exec(f[1].check, "BEGIN"), 0);
    for (unsigned i = 0; i < NOPS; i++)
        old[order[i]] = old_apply(f[1].check, &single[order[i]].u.decision);
    assert_int_equal(dbt_exec(f[1].check, "COMMIT"), 0);

    static const enum db_wallet_verdict want[NOPS] = {
        DB_WALLET_APPLIED,  DB_WALLET_APPLIED, DB_WALLET_RETRY,   DB_WALLET_DUPLICATE,
        DB_WALLET_REVERSED, DB_WALLET_APPLIED, DB_WALLET_APPLIED, DB_WALLET_RETRY,
        DB_WALLET_APPLIED,  DB_WALLET_RETRY,   DB_WALLET_APPLIED, DB_WALLET_REVERSED,
    };
    for (unsigned i = 0; i < NOPS; i++) {
        const struct db_wallet_outcome *b = &a.out[i], *o = &old[i];
        print_message("op %u %s: batch %s %s/%s/%lld/%lld, per-decision %s %s/%s/%lld/%lld\n", i,
                      batch[i].u.decision.request_key, db_wallet_verdict_name(b->verdict),
                      b->answer.rc, b->answer.auth_code, (long long)b->answer.balance_minor,
                      (long long)b->answer.available_minor, db_wallet_verdict_name(o->verdict),
                      o->answer.rc, o->answer.auth_code, (long long)o->answer.balance_minor,
                      (long long)o->answer.available_minor);
        assert_int_equal(b->status, 0);
        assert_int_equal(b->verdict, want[i]);
        assert_int_equal(b->verdict, o->verdict);
        assert_string_equal(b->answer.rc, o->answer.rc);
        assert_string_equal(b->answer.auth_code, o->answer.auth_code);
        assert_int_equal(b->answer.has_balances, o->answer.has_balances);
        if (b->answer.has_balances) {
            assert_int_equal(b->answer.balance_minor, o->answer.balance_minor);
            assert_int_equal(b->answer.available_minor, o->answer.available_minor);
        }
    }
    assert_string_equal(a.out[4].answer.rc, "12");
    assert_int_equal(a.out[5].answer.available_minor, 3000 - 700);
    assert_int_equal(a.out[11].answer.available_minor, 3000 - 700);
    /* The same wallets, ledger, holds and recorded answers in both databases. */
    char sb[4096], so[4096];
    wallets_state(f[0].check, sb, sizeof sb);
    wallets_state(f[1].check, so, sizeof so);
    print_message("batch:        %s\nper-decision: %s\n", sb, so);
    assert_string_equal(sb, so);
    assert_int_equal(dbt_scalar(f[0].check, "SELECT count(*) FROM wallet.invariant_violations"), 0);

    /* A batch whose decision overdraws is refused whole (the wallet's CHECK), as before. */
    struct db_wallet_row w1 = load(&f[0], 1);
    struct db_wallet_op bad[2] = { debit("ok", &w1, 1, "300001"),
                                   debit("toomuch", &w1, 999999, "300002") };
    struct db_wallet_row w3 = load(&f[0], 3);
    bad[1] = debit("toomuch", &w3, 999999, "300002");
    a = apply(&f[0], bad, 2);
    assert_int_equal(a.err.code, DB_E_SQL);
    assert_string_equal(a.err.sqlstate, "23514");
    assert_int_equal(dbt_scalar(f[0].check, "SELECT count(*) FROM wallet.requests WHERE "
                                            "request_key IN ('ok', 'toomuch')"),
                     0);
    /* A key twice in one batch is refused whole too (issuer-sim then applies them alone). */
    struct db_wallet_op twice[2] = { debit("same", &w1, 1, "300003"),
                                     decline("same", NULL, "14", -1) };
    a = apply(&f[0], twice, 2);
    assert_int_equal(a.err.code, DB_E_SQL);
    assert_int_equal(apply(&f[0], &twice[0], 1).out[0].verdict, DB_WALLET_APPLIED);
    assert_int_equal(apply(&f[0], &twice[1], 1).out[0].verdict, DB_WALLET_DUPLICATE);
    assert_int_equal(dbt_scalar(f[0].check, "SELECT count(*) FROM wallet.invariant_violations"), 0);
}

/* ---- reversals: sim_reverse_batch (0019) against sim_reverse --------------------------- */

/* A credit (refund) of amount on the snapshot s, approved. */
static struct db_wallet_op credit(const char *key, const struct db_wallet_row *s, int64_t amount,
                                  const char *auth)
{
    struct db_wallet_op op = debit(key, s, amount, auth);
    op.u.decision.pcode = "200000";
    op.u.decision.ledger_minor = amount;
    op.u.decision.kind = "refund";
    op.u.decision.usage_minor = 0;
    op.u.decision.usage_count = 0;
    op.u.decision.month_debit_minor = 0;
    op.u.decision.day_credit_minor = amount;
    op.u.decision.month_credit_minor = amount;
    return op;
}

static struct db_wallet_op reversal(const char *orig)
{
    return (struct db_wallet_op){ .kind = DB_WALLET_OP_REVERSAL,
                                  .u.reversal = { .original_key = orig,
                                                  .mti = "0420",
                                                  .pcode = "000000",
                                                  .amount_minor = 10,
                                                  .rrn = "123456789012" } };
}

static void apply_ok(struct fixture *f, struct db_wallet_op op)
{
    struct applied a = apply(f, &op, 1);
    assert_int_equal(a.err.code, 0);
    assert_int_equal(a.out[0].verdict, DB_WALLET_APPLIED);
}

/* The originals the reversals of the test name, on database f (wallets 1..8). */
static void reversal_originals(struct fixture *f)
{
    apply_ok(f, debit("p1", (struct db_wallet_row[]){ load(f, 1) }, 300, "400001"));
    apply_ok(f, debit("p2", (struct db_wallet_row[]){ load(f, 2) }, 100, "400002"));
    apply_ok(f, debit("p2b", (struct db_wallet_row[]){ load(f, 2) }, 50, "400003"));
    struct db_wallet_op hold = debit("h3", (struct db_wallet_row[]){ load(f, 3) }, 700, "400004");
    hold.u.decision.mti = "0100";
    hold.u.decision.ledger_minor = 0;
    hold.u.decision.kind = NULL;
    hold.u.decision.hold_minor = 700;
    apply_ok(f, hold);
    apply_ok(f, credit("c4", (struct db_wallet_row[]){ load(f, 4) }, 500, "400005"));
    apply_ok(f, credit("c5", (struct db_wallet_row[]){ load(f, 5) }, 400, "400006"));
    apply_ok(f, debit("d5", (struct db_wallet_row[]){ load(f, 5) }, 5300, "400007"));
    apply_ok(f, decline("dec6", (struct db_wallet_row[]){ load(f, 6) }, "05", -1));
    apply_ok(f, debit("d7", (struct db_wallet_row[]){ load(f, 7) }, 70, "400008"));
    struct db_wallet_op r7 = reversal("d7"); /* answered before the batch: a repeat in it */
    assert_int_equal(apply(f, &r7, 1).out[0].verdict, DB_WALLET_APPLIED);
    apply_ok(f, debit("p8", (struct db_wallet_row[]){ load(f, 8) }, 80, "400009"));
}

/* sim_reverse called by SQL for r: the answer as a db_wallet_outcome. */
static struct db_wallet_outcome old_reverse(PGconn *c, const struct db_wallet_reversal *r)
{
    const char *v[5] = { r->original_key, r->mti, r->pcode, "10", r->rrn };
    PGresult *res = PQexecParams(c, "SELECT * FROM wallet.sim_reverse($1, $2, $3, $4::bigint, $5)",
                                 5, NULL, v, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    struct db_wallet_outcome o = { 0 };
    o.verdict = DB_WALLET_verdict_max;
    for (unsigned i = 0; i < DB_WALLET_verdict_max; i++)
        if (strcmp(PQgetvalue(res, 0, 0), db_wallet_verdict_name((enum db_wallet_verdict)i)) == 0)
            o.verdict = (enum db_wallet_verdict)i;
    snprintf(o.answer.rc, sizeof o.answer.rc, "%s", PQgetvalue(res, 0, 1));
    snprintf(o.answer.auth_code, sizeof o.answer.auth_code, "%s", PQgetvalue(res, 0, 2));
    o.answer.has_balances = !PQgetisnull(res, 0, 3);
    if (o.answer.has_balances) {
        o.answer.balance_minor = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
        o.answer.available_minor = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    }
    PQclear(res);
    return o;
}

/* The ledger's rows by request key (entry ids differ between the two databases: the reversal of
 * which original, not which id). */
static void ledger_state(PGconn *c, char *out, size_t cap)
{
    PGresult *r =
        PQexec(c, "SELECT string_agg(concat_ws('/', l.request_key, l.kind, l.amount_minor, "
                  "l.balance_after_minor, o.request_key, l.rrn), ' ' ORDER BY "
                  "l.request_key) FROM wallet.ledger l LEFT JOIN wallet.ledger o ON "
                  "o.entry_id = l.reverses_entry_id");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

#define NREV 11

/* A batch of reversals (db_wallet_apply: its consecutive reversals in ONE sim_reverse_batch call)
 * answers what sim_reverse answers called once per reversal in the same order, and leaves the
 * same wallets (balances, holds, usage counters given back), ledger and recorded answers: set-based
 * ones (a purchase's, a refund's, a credit the wallet cannot give back: 51, a declined request's,
 * an original never seen, a reversal answered before) and the ones it leaves to sim_reverse (a
 * hold's, two reversals on one wallet, one original reversed twice in the batch). */
static void test_reversal_batch_answers_as_sim_reverse(void **state)
{
    struct fixture *f = *state;
    seed(f[0].conninfo, 8);
    seed(f[1].conninfo, 8);
    reversal_originals(&f[0]);
    reversal_originals(&f[1]);
    static const char *const orig[NREV] = { "p1",  "p2",   "h3", "c4", "c5", "nf",
                                            "p2b", "dec6", "d7", "p8", "p8" };
    struct db_wallet_op ops[NREV];
    for (unsigned i = 0; i < NREV; i++)
        ops[i] = reversal(orig[i]);

    struct applied a = apply(&f[0], ops, NREV);
    assert_int_equal(a.err.code, 0);
    assert_int_equal(a.n, NREV);
    struct db_wallet_outcome old[NREV];
    /* sim_reverse runs no trigger that has nothing to do (0027): the hold trigger only for the
     * one reversal that releases a hold (h3's), and no per-row ledger_fill (it gives each ledger
     * row's balance_after_minor). Before 0027: holds_settle ran 8 times here, and ledger_fill
     * once per reversal's ledger row. */
    assert_int_equal(dbt_exec(f[1].check, "SET track_functions = 'pl'"), 0);
    assert_int_equal(dbt_exec(f[1].check, "BEGIN"), 0);
    for (unsigned i = 0; i < NREV; i++)
        old[i] = old_reverse(f[1].check, &ops[i].u.reversal);
    static const char *const runs_of = "SELECT coalesce(sum(calls), 0) FROM "
                                       "pg_stat_xact_user_functions WHERE schemaname = 'wallet' "
                                       "AND funcname = '%s'";
    char sql[256];
    snprintf(sql, sizeof sql, runs_of, "holds_settle");
    assert_int_equal(dbt_scalar(f[1].check, sql), 1);
    snprintf(sql, sizeof sql, runs_of, "ledger_fill");
    assert_int_equal(dbt_scalar(f[1].check, sql), 0);
    assert_int_equal(dbt_exec(f[1].check, "COMMIT"), 0);

    static const enum db_wallet_verdict want[NREV] = {
        DB_WALLET_APPLIED,   DB_WALLET_APPLIED,   DB_WALLET_APPLIED,   DB_WALLET_APPLIED,
        DB_WALLET_APPLIED,   DB_WALLET_NOT_FOUND, DB_WALLET_APPLIED,   DB_WALLET_APPLIED,
        DB_WALLET_DUPLICATE, DB_WALLET_APPLIED,   DB_WALLET_DUPLICATE,
    };
    static const char *const want_rc[NREV] = { "00", "00", "00", "00", "51", "00",
                                               "00", "00", "00", "00", "00" };
    for (unsigned i = 0; i < NREV; i++) {
        const struct db_wallet_outcome *b = &a.out[i], *o = &old[i];
        print_message("rev %u %s: batch %s %s/%lld/%lld, sim_reverse %s %s/%lld/%lld\n", i, orig[i],
                      db_wallet_verdict_name(b->verdict), b->answer.rc,
                      (long long)b->answer.balance_minor, (long long)b->answer.available_minor,
                      db_wallet_verdict_name(o->verdict), o->answer.rc,
                      (long long)o->answer.balance_minor, (long long)o->answer.available_minor);
        assert_int_equal(b->status, 0);
        assert_int_equal(b->verdict, want[i]);
        assert_string_equal(b->answer.rc, want_rc[i]);
        assert_int_equal(b->verdict, o->verdict);
        assert_string_equal(b->answer.rc, o->answer.rc);
        assert_string_equal(b->answer.auth_code, o->answer.auth_code);
        assert_int_equal(b->answer.has_balances, o->answer.has_balances);
        if (b->answer.has_balances) {
            assert_int_equal(b->answer.balance_minor, o->answer.balance_minor);
            assert_int_equal(b->answer.available_minor, o->answer.available_minor);
        }
    }
    assert_int_equal(a.out[0].answer.balance_minor, 1000); /* p1's 300 back */
    assert_int_equal(a.out[3].answer.balance_minor, 4000); /* c4's 500 taken back */
    char sb[4096], so[4096];
    wallets_state(f[0].check, sb, sizeof sb);
    wallets_state(f[1].check, so, sizeof so);
    print_message("batch:       %s\nsim_reverse: %s\n", sb, so);
    assert_string_equal(sb, so);
    ledger_state(f[0].check, sb, sizeof sb);
    ledger_state(f[1].check, so, sizeof so);
    assert_string_equal(sb, so);
    assert_int_equal(dbt_scalar(f[0].check, "SELECT count(*) FROM wallet.invariant_violations"), 0);
    /* usage given back as sim_reverse gives it: wallet 1 has no usage left, wallet 4 no credit */
    assert_int_equal(dbt_scalar(f[0].check, "SELECT usage_minor + usage_count + month_debit_minor"
                                            " FROM wallet.wallets WHERE pan_masked LIKE '%0001'"),
                     0);
    assert_int_equal(dbt_scalar(f[0].check, "SELECT day_credit_minor + month_credit_minor FROM"
                                            " wallet.wallets WHERE pan_masked LIKE '%0004'"),
                     0);
    /* and again: every reversal is now a repeat */
    a = apply(&f[0], ops, NREV);
    assert_int_equal(a.err.code, 0);
    for (unsigned i = 0; i < NREV; i++) {
        assert_int_equal(a.out[i].verdict, DB_WALLET_DUPLICATE);
        assert_string_equal(a.out[i].answer.rc, want_rc[i]);
    }
}

int main(void)
{
    if (!dbt_env_names_cluster("test_db_wallet_ledger"))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_invariants_hold_against_direct_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_heads_on_the_locked_balance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hot_path_never_scans_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hot_path_reads_requests_by_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_answers_as_the_per_decision_path, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reversal_batch_answers_as_sim_reverse, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
