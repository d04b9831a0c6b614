/* Integration tests of the wallet API (db/wallet.h) against a real PostgreSQL, each test in a
 * database of its own: the seeder (bulk mode, a second run keeping what exists), the typed
 * snapshot, a batch of decisions and reversals answered in the caller's order, repeats, a
 * stale snapshot (retry), a refused batch rolled back whole, the hold expiry, the schema check.
 * issuer-sim's own behaviour over these is tests/integration/test_issuer_sim.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_testlib.h"
#include "wallet.h"

struct fixture {
    char conninfo[256];
    struct event_base *base;
    struct db_wallet *w;
    PGconn *check;
};

/* ---- callbacks -------------------------------------------------------------------------- */

struct loaded {
    bool done;
    struct db_error err;
    bool have;
    struct db_wallet_snapshot snap;
};

static void on_load(void *arg, const struct db_error *err, const struct db_wallet_snapshot *snap)
{
    struct loaded *l = arg;
    l->done = true;
    l->err = *err;
    l->have = snap != NULL;
    if (snap)
        l->snap = *snap;
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

struct expired {
    bool done;
    int code;
    int64_t count;
};

static void on_expire(void *arg, const struct db_error *err, int64_t count)
{
    struct expired *e = arg;
    e->done = true;
    e->code = err->code;
    e->count = count;
}

static bool expired_done(void *arg)
{
    return ((struct expired *)arg)->done;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static void hmac_of(unsigned i, uint8_t out[32])
{
    for (unsigned k = 0; k < 32; k++)
        out[k] = (uint8_t)(i * 31 + k);
}

/* Wallet i: PVV for odd i, IBM 3624 for even; wallet 3 blocked with a daily limit. */
static void seed_row(unsigned i, struct db_wallet_seed_row *r)
{
    memset(r, 0, sizeof *r);
    hmac_of(i, r->pan_hmac);
    snprintf(r->pan_masked, sizeof r->pan_masked, "489001******%04u", i);
    memcpy(r->expiry, "2812", 5);
    r->currency = 504;
    r->balance_minor = 1000 * i;
    r->status = i == 3 ? DB_WALLET_BLOCKED : DB_WALLET_ACTIVE;
    r->daily_limit_minor = i == 3 ? 5000 : -1;
    if (i % 2) {
        r->pin_method = DB_WALLET_PIN_PVV;
        r->pvki = 1;
        snprintf(r->pvv, sizeof r->pvv, "%04u", 1000 + i);
    } else {
        r->pin_method = DB_WALLET_PIN_IBM3624;
        snprintf(r->pin_offset, sizeof r->pin_offset, "%04u", 2000 + i);
    }
}

static uint64_t seed(const char *conninfo, unsigned n)
{
    struct db_wallet_seeder *s = NULL;
    struct db_error err = { 0 };
    uint64_t inserted = 0;
    assert_int_equal(db_wallet_seeder_open(conninfo, &s, &err), 0);
    assert_true(db_wallet_seeder_bulk(s)); /* the test cluster's role is a superuser */
    assert_int_equal(db_wallet_seed_begin(s, &err), 0);
    for (unsigned i = 1; i <= n; i++) {
        struct db_wallet_seed_row r;
        seed_row(i, &r);
        assert_int_equal(db_wallet_seed_add(s, &r, &err), 0);
    }
    assert_int_equal(db_wallet_seed_commit(s, &inserted, &err), 0);
    db_wallet_seeder_close(s);
    return inserted;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *ci = dbt_create("wal");
    if (!f || !ci)
        return -1;
    snprintf(f->conninfo, sizeof f->conninfo, "%s", ci);
    f->base = event_base_new();
    struct db_wallet_opts o = { .conninfo = f->conninfo, .connections = 2, .max_queued = 8 };
    if (!f->base || db_wallet_new(f->base, &o, &f->w) != 0)
        return -1;
    f->check = dbt_connect(f->conninfo);
    if (!f->check)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    db_wallet_free(f->w);
    event_base_free(f->base);
    PQfinish(f->check);
    dbt_drop(f->conninfo);
    free(f);
    return 0;
}

static struct loaded load(struct fixture *f, unsigned card, const char *key)
{
    struct loaded l = { 0 };
    uint8_t h[32];
    hmac_of(card, h);
    assert_int_equal(db_wallet_load(f->w, h, key, on_load, &l), 0);
    assert_int_equal(dbt_run_until(f->base, loaded_done, &l, 10000), 0);
    return l;
}

static struct applied apply(struct fixture *f, const struct db_wallet_op *ops, unsigned n)
{
    struct applied a = { 0 };
    assert_int_equal(db_wallet_apply(f->w, ops, n, on_apply, &a), 0);
    assert_int_equal(dbt_run_until(f->base, applied_done, &a, 10000), 0);
    return a;
}

/* A debit of amount on the snapshot s (ledger entry and usage), approved. */
static struct db_wallet_op debit(const char *key, const struct db_wallet_row *s, int64_t amount)
{
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
                        .auth_code = "654321",
                        .pin_tries = 0,
                        .ledger_minor = -amount,
                        .kind = "purchase",
                        .usage_date = "2026-12-06",
                        .usage_minor = amount,
                        .usage_count = 1 },
    };
}

/* A credit (OCT) of amount on the snapshot s as an approval would record it. */
static struct db_wallet_op credit(const char *key, const struct db_wallet_row *s, int64_t amount)
{
    struct db_wallet_op op = debit(key, s, amount);
    op.u.decision.pcode = "260000";
    op.u.decision.ledger_minor = amount;
    op.u.decision.kind = "credit";
    op.u.decision.usage_minor = 0;
    op.u.decision.usage_count = 0;
    op.u.decision.usage_month = "2026-12-01";
    op.u.decision.day_credit_minor = amount;
    op.u.decision.month_credit_minor = amount;
    return op;
}

/* The tier's limits come with the snapshot; the counters are written and read back; the cap is
 * enforced by PostgreSQL whatever the decision said (an over-cap credit through sim_apply, a
 * direct ledger insert, a tier change), and never against the reversal of a debit. */
static void test_kyc_tier_cap_in_sql(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(seed(f->conninfo, 1), 1);
    struct db_wallet_row w = load(f, 1, "a").snap.wallet;
    assert_int_equal(w.kyc_tier, 1); /* the default: basic */
    assert_int_equal(w.max_balance_minor, 500000);
    assert_int_equal(w.debit_daily_limit_minor, 200000);
    assert_int_equal(w.debit_monthly_limit_minor, 1000000);
    assert_int_equal(w.credit_daily_limit_minor, 500000);
    assert_int_equal(w.credit_monthly_limit_minor, 2000000);
    assert_string_equal(w.usage_month, "");
    assert_int_equal(w.balance_minor, 1000);

    /* A wrong decision: an approval one minor unit over the cap. PostgreSQL refuses it. */
    struct db_wallet_op op = credit("c-over", &w, 499001);
    struct applied a = apply(f, &op, 1);
    assert_int_equal(a.err.code, DB_E_SQL);
    assert_string_equal(a.err.sqlstate, "23514");
    assert_non_null(strstr(a.err.message, "tier cap"));
    assert_int_equal(dbt_scalar(f->check, "SELECT balance_minor FROM wallet.wallets"), 1000);
    /* Exactly to the cap is fine, and the credit counters are recorded. */
    op = credit("c-cap", &w, 499000);
    a = apply(f, &op, 1);
    assert_int_equal(a.err.code, 0);
    assert_int_equal(a.out[0].answer.balance_minor, 500000);
    w = load(f, 1, "b").snap.wallet;
    assert_string_equal(w.usage_month, "2026-12-01");
    assert_int_equal(w.day_credit_minor, 499000);
    assert_int_equal(w.month_credit_minor, 499000);

    /* A debit, a credit that fills the wallet again, then the debit's reversal: the balance
     * passes the cap and the reversal is still applied; the month's debit is given back. */
    struct db_wallet_op d = debit("d1", &w, 300);
    d.u.decision.usage_month = "2026-12-01";
    d.u.decision.month_debit_minor = 300;
    d.u.decision.day_credit_minor = 499000;
    d.u.decision.month_credit_minor = 499000;
    a = apply(f, &d, 1);
    assert_int_equal(a.out[0].verdict, DB_WALLET_APPLIED);
    w = load(f, 1, "c").snap.wallet;
    assert_int_equal(w.month_debit_minor, 300);
    op = credit("c-fill", &w, 300);
    op.u.decision.usage_minor = 300;
    op.u.decision.usage_count = 1;
    op.u.decision.month_debit_minor = 300;
    op.u.decision.day_credit_minor = 499300;
    op.u.decision.month_credit_minor = 499300;
    a = apply(f, &op, 1);
    assert_int_equal(a.out[0].answer.balance_minor, 500000);
    /* The credit's row (created today by the test) and the debit's are of today's date only if
     * the counters are; make them so, as issuer-sim would have at the time. */
    assert_int_equal(dbt_exec(f->check, "UPDATE wallet.wallets SET usage_date = current_date, "
                                        "usage_month = date_trunc('month', current_date)"),
                     0);
    struct db_wallet_op rev = { .kind = DB_WALLET_OP_REVERSAL,
                                .u.reversal = { .original_key = "d1",
                                                .mti = "0420",
                                                .pcode = "000000",
                                                .amount_minor = 300 } };
    a = apply(f, &rev, 1);
    assert_int_equal(a.err.code, 0);
    assert_string_equal(a.out[0].answer.rc, "00");
    assert_int_equal(a.out[0].answer.balance_minor, 500300);
    w = load(f, 1, "d").snap.wallet;
    assert_int_equal(w.month_debit_minor, 0);
    assert_int_equal(w.usage_minor, 0);
    assert_int_equal(w.usage_count, 0);
    assert_int_equal(w.month_credit_minor, 499300); /* credits untouched by a debit's reversal */
    /* The reversal of a credit gives its amount back to the credit counters. */
    rev.u.reversal.original_key = "c-fill";
    rev.u.reversal.pcode = "260000";
    a = apply(f, &rev, 1);
    assert_string_equal(a.out[0].answer.rc, "00");
    assert_int_equal(a.out[0].answer.balance_minor, 500000);
    w = load(f, 1, "e").snap.wallet;
    assert_int_equal(w.day_credit_minor, 499000);
    assert_int_equal(w.month_credit_minor, 499000);

    /* Direct SQL: a positive entry that is not the reversal of a debit is capped, whatever its
     * kind; a wallet cannot be moved to a tier whose cap is below its balance. */
    assert_int_equal(dbt_exec(f->check, "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                        " amount_minor) SELECT wallet_id, 'x1', 'adjustment', 1"
                                        " FROM wallet.wallets"),
                     -1);
    assert_int_equal(dbt_exec(f->check, "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                        " amount_minor) SELECT wallet_id, 'x2', 'reversal', 1"
                                        " FROM wallet.wallets"),
                     -1);
    assert_int_equal(dbt_exec(f->check, "UPDATE wallet.wallets SET balance_minor = 900000"), -1);
    assert_int_equal(dbt_exec(f->check, "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                        " amount_minor) SELECT wallet_id, 'x3', 'adjustment', -1"
                                        " FROM wallet.wallets"),
                     0);
    assert_int_equal(dbt_exec(f->check, "UPDATE wallet.wallets SET kyc_tier = 2"), 0);
    assert_int_equal(dbt_exec(f->check, "INSERT INTO wallet.ledger (wallet_id, request_key, kind,"
                                        " amount_minor) SELECT wallet_id, 'x4', 'credit', 1000"
                                        " FROM wallet.wallets"),
                     0);
    assert_int_equal(dbt_exec(f->check, "UPDATE wallet.wallets SET kyc_tier = 1"), -1);
    assert_int_equal(dbt_exec(f->check, "UPDATE wallet.wallets SET kyc_tier = 3"), -1); /* none */
    assert_int_equal(dbt_scalar(f->check, "SELECT balance_minor FROM wallet.wallets"), 500999);
    assert_int_equal(dbt_scalar(f->check, "SELECT count(*) FROM wallet.wallets w JOIN "
                                          "wallet.kyc_tiers t ON t.tier = w.kyc_tier AND "
                                          "t.currency = w.currency WHERE w.balance_minor > "
                                          "t.max_balance_minor"),
                     0);
    assert_int_equal(dbt_scalar(f->check, "SELECT count(*) FROM wallet.invariant_violations"), 0);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_seed_and_snapshot(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(seed(f->conninfo, 4), 4);
    assert_int_equal(seed(f->conninfo, 5), 1); /* existing wallets are kept */
    assert_int_equal(dbt_scalar(f->check, "SELECT count(*) FROM wallet.invariant_violations"), 0);
    assert_int_equal(dbt_scalar(f->check, "SELECT sum(balance_minor) FROM wallet.wallets"), 15000);

    struct loaded l = load(f, 3, "00000000001:TERM0001:000001:1206120000");
    assert_int_equal(l.err.code, 0);
    assert_true(l.have && l.snap.has_wallet && !l.snap.answered);
    const struct db_wallet_row *w = &l.snap.wallet;
    assert_true(w->wallet_id > 0);
    assert_true(w->row_version[0] != '\0');
    assert_string_equal(w->expiry, "2812");
    assert_int_equal(w->currency, 504);
    assert_int_equal(w->balance_minor, 3000);
    assert_int_equal(w->held_minor, 0);
    assert_int_equal(w->status, DB_WALLET_BLOCKED);
    assert_int_equal(w->pin_method, DB_WALLET_PIN_PVV);
    assert_int_equal(w->pvki, 1);
    assert_string_equal(w->pvv, "1003");
    assert_string_equal(w->pin_offset, "");
    assert_int_equal(w->pin_tries, 0);
    assert_int_equal(w->pin_try_limit, 3);
    assert_int_equal(w->daily_limit_minor, 5000);
    assert_int_equal(w->daily_cash_limit_minor, -1);
    assert_int_equal(w->daily_count_limit, -1);
    assert_string_equal(w->usage_date, "");

    l = load(f, 4, "k4");
    assert_int_equal(l.snap.wallet.pin_method, DB_WALLET_PIN_IBM3624);
    assert_string_equal(l.snap.wallet.pin_offset, "2004");
    assert_string_equal(l.snap.wallet.pvv, "");
    assert_int_equal(l.snap.wallet.status, DB_WALLET_ACTIVE);

    l = load(f, 99, "k99"); /* no such card */
    assert_int_equal(l.err.code, 0);
    assert_true(l.have && !l.snap.has_wallet && !l.snap.answered);
}

static void test_batch_in_callers_order(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(seed(f->conninfo, 2), 2);
    struct db_wallet_row w1 = load(f, 1, "a").snap.wallet, w2 = load(f, 2, "b").snap.wallet;

    /* The caller's order is not the lock order: the outcomes still come back in its order. */
    struct db_wallet_op ops[4] = {
        { .kind = DB_WALLET_OP_REVERSAL,
          .u.reversal = { .original_key = "never-seen",
                          .mti = "0420",
                          .pcode = "000000",
                          .amount_minor = 10 } },
        debit("d2", &w2, 700),
        debit("d1", &w1, 400),
        { .kind = DB_WALLET_OP_DECISION,
          .u.decision = { .request_key = "nocard",
                          .mti = "0200",
                          .pcode = "000000",
                          .amount_minor = 5,
                          .rc = "14",
                          .pin_tries = -1 } },
    };
    struct applied a = apply(f, ops, 4);
    assert_int_equal(a.err.code, 0);
    assert_int_equal(a.n, 4);
    assert_int_equal(a.out[0].status, 0);
    assert_int_equal(a.out[0].verdict, DB_WALLET_NOT_FOUND);
    assert_string_equal(a.out[0].answer.rc, "00");
    assert_int_equal(a.out[1].verdict, DB_WALLET_APPLIED);
    assert_string_equal(a.out[1].answer.rc, "00");
    assert_string_equal(a.out[1].answer.auth_code, "654321");
    assert_true(a.out[1].answer.has_balances);
    assert_int_equal(a.out[1].answer.balance_minor, 1300);
    assert_int_equal(a.out[1].answer.available_minor, 1300);
    assert_int_equal(a.out[2].verdict, DB_WALLET_APPLIED);
    assert_int_equal(a.out[2].answer.balance_minor, 600);
    assert_int_equal(a.out[3].verdict, DB_WALLET_APPLIED);
    assert_string_equal(a.out[3].answer.rc, "14");
    assert_false(a.out[3].answer.has_balances);
    assert_string_equal(db_wallet_verdict_name(a.out[0].verdict), "not_found");

    /* A repeat is answered from the record; the snapshot shows it too. */
    struct loaded l = load(f, 1, "d1");
    assert_true(l.snap.answered);
    assert_string_equal(l.snap.answer.rc, "00");
    assert_string_equal(l.snap.answer.auth_code, "654321");
    assert_int_equal(l.snap.answer.balance_minor, 600);
    assert_int_equal(l.snap.wallet.usage_minor, 400);
    assert_string_equal(l.snap.wallet.usage_date, "2026-12-06");
    a = apply(f, &ops[2], 1);
    assert_int_equal(a.out[0].verdict, DB_WALLET_DUPLICATE);
    assert_int_equal(a.out[0].answer.balance_minor, 600);

    /* A decision taken on the old snapshot of wallet 1 is refused: decide again. */
    struct db_wallet_op stale = debit("d1b", &w1, 100);
    a = apply(f, &stale, 1);
    assert_int_equal(a.out[0].verdict, DB_WALLET_RETRY);
    assert_string_equal(a.out[0].answer.rc, "");

    /* The reversal of d1 gives the money back, once. */
    struct db_wallet_op rev = { .kind = DB_WALLET_OP_REVERSAL,
                                .u.reversal = { .original_key = "d1",
                                                .mti = "0420",
                                                .pcode = "000000",
                                                .amount_minor = 400,
                                                .rrn = "123456789012" } };
    a = apply(f, &rev, 1);
    assert_int_equal(a.out[0].verdict, DB_WALLET_APPLIED);
    assert_int_equal(a.out[0].answer.balance_minor, 1000);
    a = apply(f, &rev, 1);
    assert_int_equal(a.out[0].verdict, DB_WALLET_DUPLICATE);
    assert_int_equal(dbt_scalar(f->check, "SELECT balance_minor FROM wallet.wallets"
                                          " WHERE wallet_id = (SELECT min(wallet_id)"
                                          " FROM wallet.wallets)"),
                     1000);
    assert_int_equal(dbt_scalar(f->check, "SELECT count(*) FROM wallet.invariant_violations"), 0);
}

static void test_refused_batch_rolls_back(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(seed(f->conninfo, 2), 2);
    struct db_wallet_row w1 = load(f, 1, "a").snap.wallet, w2 = load(f, 2, "b").snap.wallet;
    /* The second op overdraws its wallet: the CHECK refuses it, and the whole batch with it. */
    struct db_wallet_op ops[2] = { debit("ok1", &w1, 100), debit("over", &w2, 999999) };
    struct applied a = apply(f, ops, 2);
    assert_int_equal(a.err.code, DB_E_SQL);
    assert_string_equal(a.err.sqlstate, "23514");
    assert_int_equal(a.n, 0);
    assert_int_equal(dbt_scalar(f->check, "SELECT count(*) FROM wallet.requests"), 0);
    /* Alone, the good one goes through. */
    a = apply(f, ops, 1);
    assert_int_equal(a.err.code, 0);
    assert_int_equal(a.out[0].verdict, DB_WALLET_APPLIED);
}

static void test_hold_expiry(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(seed(f->conninfo, 1), 1);
    struct db_wallet_row w1 = load(f, 1, "a").snap.wallet;
    struct db_wallet_op hold = debit("h1", &w1, 300);
    hold.u.decision.mti = "0100";
    hold.u.decision.ledger_minor = 0;
    hold.u.decision.hold_minor = 300;
    struct applied a = apply(f, &hold, 1);
    assert_int_equal(a.out[0].verdict, DB_WALLET_APPLIED);
    assert_int_equal(a.out[0].answer.available_minor, 700);

    struct expired e = { 0 };
    assert_int_equal(db_wallet_expire_holds(f->w, on_expire, &e), 0);
    assert_int_equal(dbt_run_until(f->base, expired_done, &e, 10000), 0);
    assert_int_equal(e.code, 0);
    assert_int_equal(e.count, 0);
    PQclear(PQexec(f->check, "UPDATE wallet.holds SET expires_at = now() - interval '1 s'"));
    e = (struct expired){ 0 };
    assert_int_equal(db_wallet_expire_holds(f->w, on_expire, &e), 0);
    assert_int_equal(dbt_run_until(f->base, expired_done, &e, 10000), 0);
    assert_int_equal(e.count, 1);
    assert_int_equal(dbt_scalar(f->check, "SELECT held_minor FROM wallet.wallets"), 0);
}

static void test_schema_check_and_limits(void **state)
{
    struct fixture *f = *state;
    struct db_error err = { 0 };
    assert_int_equal(db_wallet_schema_check(f->conninfo, &err), 0);
    assert_int_equal(db_wallet_schema_check("dbname=atlas_no_such_database", &err), DB_E_CONN);
    PQclear(PQexec(f->check, "DELETE FROM public.schema_migrations WHERE version >= 5"));
    assert_int_equal(db_wallet_schema_check(f->conninfo, &err), DB_E_SCHEMA);

    uint8_t h[32] = { 0 };
    struct db_wallet_op op = { .kind = DB_WALLET_OP_REVERSAL };
    assert_int_equal(db_wallet_apply(f->w, &op, 0, on_apply, NULL), DB_E_INVALID);
    assert_int_equal(db_wallet_apply(f->w, &op, DB_WALLET_APPLY_MAX + 1, on_apply, NULL),
                     DB_E_INVALID);
    /* max_queued calls at most are accepted at a time. */
    struct loaded l[9];
    memset(l, 0, sizeof l);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(db_wallet_load(f->w, h, "k", on_load, &l[i]), 0);
    assert_int_equal(db_wallet_load(f->w, h, "k", on_load, &l[8]), DB_E_FULL);
    assert_int_equal(dbt_run_until(f->base, loaded_done, &l[7], 10000), 0);
    for (unsigned i = 0; i < 8; i++)
        assert_true(l[i].done);
}

int main(void)
{
    if (!dbt_env_names_cluster("test_db_wallet"))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seed_and_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_in_callers_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_batch_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_check_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kyc_tier_cap_in_sql, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
