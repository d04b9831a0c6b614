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

struct loaded_batch {
    bool done;
    struct db_error err;
    unsigned n;
    struct db_wallet_loaded out[DB_WALLET_LOAD_MAX];
};

static void on_load_batch(void *arg, const struct db_error *err, const struct db_wallet_loaded *out,
                          unsigned n)
{
    struct loaded_batch *l = arg;
    l->done = true;
    l->err = *err;
    l->n = n;
    if (out)
        memcpy(l->out, out, n * sizeof *out);
}

static bool loaded_batch_done(void *arg)
{
    return ((struct loaded_batch *)arg)->done;
}

/* The same snapshot, field by field (what the decision reads). */
static void assert_same_snapshot(const struct db_wallet_snapshot *a,
                                 const struct db_wallet_snapshot *b)
{
    assert_int_equal(a->has_wallet, b->has_wallet);
    assert_int_equal(a->answered, b->answered);
    if (a->has_wallet) {
        const struct db_wallet_row *x = &a->wallet, *y = &b->wallet;
        assert_int_equal(x->wallet_id, y->wallet_id);
        assert_string_equal(x->row_version, y->row_version);
        assert_string_equal(x->expiry, y->expiry);
        assert_int_equal(x->currency, y->currency);
        assert_int_equal(x->balance_minor, y->balance_minor);
        assert_int_equal(x->held_minor, y->held_minor);
        assert_int_equal(x->status, y->status);
        assert_int_equal(x->pin_method, y->pin_method);
        assert_string_equal(x->pvv, y->pvv);
        assert_string_equal(x->pin_offset, y->pin_offset);
        assert_int_equal(x->daily_limit_minor, y->daily_limit_minor);
        assert_string_equal(x->usage_date, y->usage_date);
        assert_int_equal(x->usage_minor, y->usage_minor);
        assert_int_equal(x->usage_count, y->usage_count);
        assert_int_equal(x->kyc_tier, y->kyc_tier);
        assert_int_equal(x->max_balance_minor, y->max_balance_minor);
    }
    if (a->answered) {
        assert_string_equal(a->answer.rc, b->answer.rc);
        assert_string_equal(a->answer.auth_code, b->answer.auth_code);
        assert_int_equal(a->answer.has_balances, b->answer.has_balances);
        assert_int_equal(a->answer.balance_minor, b->answer.balance_minor);
        assert_int_equal(a->answer.available_minor, b->answer.available_minor);
    }
}

/* A burst of DB_WALLET_LOAD_MAX snapshot loads is ONE statement (the handle's counter, and the
 * one result it answers with), each request's row in its place and equal to what a load of its
 * own reads: wallets that exist, cards no wallet has, the same card twice, a repeated request
 * with its recorded answer, a key needing array quoting. Bad counts are refused. */
static void test_load_batch_one_statement(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(seed(f->conninfo, 5), 5);
    /* request "kA" on wallet 2 is answered (its recorded answer comes back with its load) */
    struct loaded l = load(f, 2, "kA");
    struct db_wallet_op op = debit("kA", &l.snap.wallet, 250);
    struct applied a = apply(f, &op, 1);
    assert_int_equal(a.err.code, 0);
    assert_int_equal(a.out[0].verdict, DB_WALLET_APPLIED);

    enum { N = DB_WALLET_LOAD_MAX };
    struct db_wallet_load_req reqs[N];
    char keys[N][32];
    unsigned card[N];
    for (unsigned i = 0; i < N; i++) {
        card[i] = i % 8; /* 0, 6, 7: no wallet; 1..5 seeded (each several times) */
        hmac_of(card[i], reqs[i].pan_hmac);
        snprintf(keys[i], sizeof keys[i], "b%u:TERM:%06u", i, i);
        reqs[i].request_key = keys[i];
    }
    card[9] = 2; /* the repeat of kA */
    hmac_of(2, reqs[9].pan_hmac);
    snprintf(keys[9], sizeof keys[9], "kA");
    snprintf(keys[17], sizeof keys[17], "q\"uo\\te{,}"); /* array literal metacharacters */

    struct db_wallet_stats before, after;
    db_wallet_stats(f->w, &before);
    struct loaded_batch b = { 0 };
    assert_int_equal(db_wallet_load_batch(f->w, reqs, N, on_load_batch, &b), 0);
    assert_int_equal(dbt_run_until(f->base, loaded_batch_done, &b, 10000), 0);
    db_wallet_stats(f->w, &after);
    assert_int_equal(b.err.code, 0);
    assert_int_equal(b.n, N);
    assert_int_equal(after.load_statements - before.load_statements, 1);
    assert_int_equal(after.loads - before.loads, N);

    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(b.out[i].err.code, 0);
        const struct db_wallet_snapshot *s = &b.out[i].snap;
        assert_int_equal(s->has_wallet, card[i] >= 1 && card[i] <= 5);
        assert_int_equal(s->answered, i == 9);
        if (s->has_wallet)
            assert_int_equal(s->wallet.balance_minor, 1000 * card[i] - (card[i] == 2 ? 250 : 0));
        struct loaded one = load(f, card[i], keys[i]);
        assert_int_equal(one.err.code, 0);
        assert_same_snapshot(s, &one.snap);
    }
    assert_string_equal(b.out[9].snap.answer.rc, "00");
    assert_string_equal(b.out[9].snap.answer.auth_code, "654321");
    assert_true(b.out[9].snap.answer.has_balances);
    assert_int_equal(b.out[9].snap.answer.balance_minor, 1750);

    /* a lone request is a batch of one */
    struct loaded_batch one = { 0 };
    assert_int_equal(db_wallet_load_batch(f->w, &reqs[9], 1, on_load_batch, &one), 0);
    assert_int_equal(dbt_run_until(f->base, loaded_batch_done, &one, 10000), 0);
    assert_int_equal(one.n, 1);
    assert_same_snapshot(&one.out[0].snap, &b.out[9].snap);

    assert_int_equal(db_wallet_load_batch(f->w, reqs, 0, on_load_batch, &b), DB_E_INVALID);
    assert_int_equal(db_wallet_load_batch(f->w, reqs, N + 1, on_load_batch, &b), DB_E_INVALID);
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

/* ---- pre-authorization (0012): completion, incremental authorization, their reversals ---- */

/* Today (UTC) as PostgreSQL sees it, YYYY-MM-DD, and its month's first day. */
static void today_of(PGconn *c, char day[11], char month[11])
{
    PGresult *r = PQexec(c, "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(day, 11, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    snprintf(month, 11, "%.8s01", day);
}

/* An approved hold of amount on the snapshot s, its counters as sim_decide counts them. */
static struct db_wallet_op hold_op(const char *key, const struct db_wallet_row *s, int64_t amount,
                                   const char *day, const char *month)
{
    struct db_wallet_op op = debit(key, s, amount);
    bool today = strcmp(s->usage_date, day) == 0, this_month = strcmp(s->usage_month, month) == 0;
    op.u.decision.mti = "0100";
    op.u.decision.ledger_minor = 0;
    op.u.decision.kind = NULL;
    op.u.decision.hold_minor = amount;
    op.u.decision.usage_date = day;
    op.u.decision.usage_month = month;
    op.u.decision.usage_minor = (today ? s->usage_minor : 0) + amount;
    op.u.decision.usage_count = (today ? s->usage_count : 0) + 1;
    op.u.decision.month_debit_minor = (this_month ? s->month_debit_minor : 0) + amount;
    return op;
}

static struct db_wallet_op completion_op(const char *key, const char *orig,
                                         const struct db_wallet_row *s, int64_t amount)
{
    return (struct db_wallet_op){
        .kind = DB_WALLET_OP_COMPLETION,
        .u.completion = { .request_key = key,
                          .original_key = orig,
                          .has_wallet = true,
                          .wallet_id = s->wallet_id,
                          .mti = "0220",
                          .pcode = "000000",
                          .amount_minor = amount,
                          .currency = 504,
                          .rrn = "123456789012",
                          .auth_code = "777777" },
    };
}

static struct db_wallet_op reversal_op(const char *orig, int64_t amount)
{
    return (struct db_wallet_op){ .kind = DB_WALLET_OP_REVERSAL,
                                  .u.reversal = { .original_key = orig,
                                                  .mti = "0420",
                                                  .pcode = "000000",
                                                  .amount_minor = amount } };
}

/* One op applied alone: its outcome (the batch must commit). */
static struct db_wallet_outcome apply1(struct fixture *f, struct db_wallet_op op)
{
    struct applied a = apply(f, &op, 1);
    assert_int_equal(a.err.code, 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.out[0].status, 0);
    return a.out[0];
}

/* Wallet card's balance, held amount and today's debit counter, as "balance/held/usage/count". */
static void assert_wallet(struct fixture *f, unsigned card, const char *want)
{
    char sql[256], got[96];
    snprintf(sql, sizeof sql,
             "SELECT balance_minor || '/' || held_minor || '/' || usage_minor || '/' || "
             "usage_count FROM wallet.wallets WHERE pan_masked = '489001******%04u'",
             card);
    PGresult *r = PQexec(f->check, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(got, sizeof got, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    assert_string_equal(got, want);
    assert_int_equal(dbt_scalar(f->check, "SELECT count(*) FROM wallet.invariant_violations"), 0);
}

static const char *hold_status(struct fixture *f, const char *key)
{
    static char st[16];
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT status FROM wallet.holds WHERE request_key = '%s'", key);
    PGresult *r = PQexec(f->check, sql);
    snprintf(st, sizeof st, "%s", PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "none");
    PQclear(r);
    return st;
}

/* A completion captures its pre-auth for less (the rest is available again), once; a repeat gets
 * the same answer; a second completion, one of an unknown pre-auth, another currency or above
 * the tolerance is declined and changes nothing; the pre-auth's own reversal after its capture
 * moves nothing; the completion's reversal credits it back and restores the hold (and the
 * counters), after which a completion within the 20 % tolerance above the hold captures it. */
static void test_preauth_completion_sql(void **state)
{
    struct fixture *f = *state;
    char day[11], month[11];
    assert_int_equal(seed(f->conninfo, 1), 1);
    today_of(f->check, day, month);
    assert_int_equal(dbt_scalar(f->check, "SELECT completion_tolerance_bp FROM "
                                          "wallet.issuer_config"),
                     2000);
    struct db_wallet_row w = load(f, 1, "x").snap.wallet;
    struct db_wallet_outcome o = apply1(f, hold_op("h1", &w, 300, day, month));
    assert_string_equal(o.answer.rc, "00");
    assert_int_equal(o.answer.available_minor, 700);
    assert_wallet(f, 1, "1000/300/300/1");

    o = apply1(f, completion_op("c1", "h1", &w, 250));
    assert_int_equal(o.verdict, DB_WALLET_APPLIED);
    assert_string_equal(o.answer.rc, "00");
    assert_string_equal(o.answer.auth_code, "777777");
    assert_int_equal(o.answer.balance_minor, 750);
    assert_int_equal(o.answer.available_minor, 750);
    assert_wallet(f, 1, "750/0/250/1"); /* the limits count the capture, not the hold */
    assert_string_equal(hold_status(f, "h1"), "captured");
    assert_int_equal(dbt_scalar(f->check, "SELECT amount_minor FROM wallet.ledger WHERE "
                                          "kind = 'capture' AND request_key = 'c1'"),
                     -250);

    o = apply1(f, completion_op("c1", "h1", &w, 250)); /* a repeat (0221) */
    assert_int_equal(o.verdict, DB_WALLET_DUPLICATE);
    assert_string_equal(o.answer.rc, "00");
    assert_int_equal(o.answer.balance_minor, 750);
    o = apply1(f, completion_op("c2", "h1", &w, 100)); /* one completion per hold */
    assert_string_equal(o.answer.rc, "12");
    assert_string_equal(o.answer.auth_code, "");
    o = apply1(f, completion_op("c3", "nope", &w, 100));
    assert_string_equal(o.answer.rc, "25");
    o = apply1(f, reversal_op("h1", 300)); /* the pre-auth's reversal: the completion stands */
    assert_string_equal(o.answer.rc, "00");
    assert_wallet(f, 1, "750/0/250/1");

    o = apply1(f, reversal_op("c1", 250));
    assert_int_equal(o.verdict, DB_WALLET_APPLIED);
    assert_int_equal(o.answer.balance_minor, 1000);
    assert_int_equal(o.answer.available_minor, 700);
    assert_wallet(f, 1, "1000/300/300/1"); /* the hold as it was, counted as it was */
    assert_string_equal(hold_status(f, "h1"), "active");
    assert_int_equal(apply1(f, reversal_op("c1", 250)).verdict, DB_WALLET_DUPLICATE);
    assert_wallet(f, 1, "1000/300/300/1");

    o = apply1(f, completion_op("c4", "h1", &w, 361)); /* 300 + 20 % = 360 */
    assert_string_equal(o.answer.rc, "13");
    assert_wallet(f, 1, "1000/300/300/1");
    struct db_wallet_op other = completion_op("c5", "h1", &w, 100);
    other.u.completion.currency = 952;
    assert_string_equal(apply1(f, other).answer.rc, "57");
    o = apply1(f, completion_op("c6", "h1", &w, 360));
    assert_string_equal(o.answer.rc, "00");
    assert_wallet(f, 1, "640/0/360/1");
    assert_int_equal(dbt_scalar(f->check, "SELECT count(*) FROM wallet.requests "
                                          "WHERE response_code <> '00' AND auth_code IS NOT NULL"),
                     0);
}

/* Incremental authorizations add to the pre-auth's hold (its own approval, counted), a reversal
 * takes one increment back, the completion captures the total (tolerance on the total), and an
 * increment of a captured or unknown pre-auth is declined; the pre-auth's reversal releases its
 * increments too. */
static void test_preauth_increment_sql(void **state)
{
    struct fixture *f = *state;
    char day[11], month[11];
    assert_int_equal(seed(f->conninfo, 2), 2);
    today_of(f->check, day, month);
    struct db_wallet_row w = load(f, 2, "x").snap.wallet; /* 2000 */
    assert_string_equal(apply1(f, hold_op("p1", &w, 200, day, month)).answer.rc, "00");
    w = load(f, 2, "x").snap.wallet;
    struct db_wallet_op inc = hold_op("i1", &w, 100, day, month);
    inc.u.decision.parent_key = "p1";
    struct db_wallet_outcome o = apply1(f, inc);
    assert_string_equal(o.answer.rc, "00");
    assert_string_equal(o.answer.auth_code, "654321");
    assert_int_equal(o.answer.available_minor, 1700);
    assert_wallet(f, 2, "2000/300/300/2");
    assert_int_equal(dbt_scalar(f->check, "SELECT count(*) FROM wallet.holds c JOIN wallet.holds "
                                          "p ON p.hold_id = c.parent_hold_id WHERE c.request_key "
                                          "= 'i1' AND p.request_key = 'p1' AND c.expires_at = "
                                          "p.expires_at"),
                     1);
    assert_string_equal(apply1(f, reversal_op("i1", 100)).answer.rc, "00");
    assert_wallet(f, 2, "2000/200/200/1");
    assert_string_equal(hold_status(f, "p1"), "active");
    w = load(f, 2, "x").snap.wallet;
    inc = hold_op("i2", &w, 50, day, month);
    inc.u.decision.parent_key = "p1";
    assert_string_equal(apply1(f, inc).answer.rc, "00");
    assert_wallet(f, 2, "2000/250/250/2");

    assert_string_equal(apply1(f, completion_op("c1", "i2", &w, 10)).answer.rc, "12");
    assert_string_equal(apply1(f, completion_op("c2", "p1", &w, 301)).answer.rc, "13");
    o = apply1(f, completion_op("c3", "p1", &w, 300)); /* 250 + 20 % */
    assert_string_equal(o.answer.rc, "00");
    assert_wallet(f, 2, "1700/0/300/1");
    assert_string_equal(hold_status(f, "i2"), "captured");

    w = load(f, 2, "x").snap.wallet;
    inc = hold_op("i3", &w, 40, day, month);
    inc.u.decision.parent_key = "p1";
    o = apply1(f, inc);
    assert_string_equal(o.answer.rc, "12");
    assert_string_equal(o.answer.auth_code, "");
    w = load(f, 2, "x").snap.wallet;
    inc = hold_op("i4", &w, 40, day, month);
    inc.u.decision.parent_key = "nope";
    assert_string_equal(apply1(f, inc).answer.rc, "25");
    assert_wallet(f, 2, "1700/0/300/1");

    /* The completion's reversal restores the pre-auth and its increment. */
    assert_string_equal(apply1(f, reversal_op("c3", 300)).answer.rc, "00");
    assert_wallet(f, 2, "2000/250/250/2");
    /* The pre-auth's reversal releases it with its increment. */
    assert_string_equal(apply1(f, reversal_op("p1", 200)).answer.rc, "00");
    assert_wallet(f, 2, "2000/0/0/0");
    assert_string_equal(hold_status(f, "i2"), "released");
}

/* An expired hold cannot be captured; a completion reversed after its hold's expiry leaves the
 * hold expired (released); restoring a hold the wallet can no longer cover releases it. */
static void test_preauth_expiry_sql(void **state)
{
    struct fixture *f = *state;
    char day[11], month[11];
    assert_int_equal(seed(f->conninfo, 1), 1);
    today_of(f->check, day, month);
    struct db_wallet_row w = load(f, 1, "x").snap.wallet; /* 1000 */
    assert_string_equal(apply1(f, hold_op("h1", &w, 100, day, month)).answer.rc, "00");
    assert_int_equal(dbt_exec(f->check, "UPDATE wallet.holds SET expires_at = now() - "
                                        "interval '1 s' WHERE request_key = 'h1'"),
                     0);
    assert_string_equal(apply1(f, completion_op("c1", "h1", &w, 50)).answer.rc, "12");
    assert_int_equal(dbt_scalar(f->check, "SELECT wallet.sim_expire_holds()"), 1);
    assert_string_equal(apply1(f, completion_op("c2", "h1", &w, 50)).answer.rc, "12");
    assert_wallet(f, 1, "1000/0/100/1");

    w = load(f, 1, "x").snap.wallet;
    assert_string_equal(apply1(f, hold_op("h2", &w, 100, day, month)).answer.rc, "00");
    assert_string_equal(apply1(f, completion_op("c3", "h2", &w, 80)).answer.rc, "00");
    assert_wallet(f, 1, "920/0/180/2");
    assert_int_equal(dbt_exec(f->check, "UPDATE wallet.holds SET expires_at = now() - "
                                        "interval '1 s' WHERE request_key = 'h2'"),
                     0);
    assert_string_equal(apply1(f, reversal_op("c3", 80)).answer.rc, "00");
    assert_wallet(f, 1, "1000/0/100/1");
    assert_string_equal(hold_status(f, "h2"), "expired");

    /* Spent since the completion: the hold cannot come back, the credit still does. */
    w = load(f, 1, "x").snap.wallet;
    assert_string_equal(apply1(f, hold_op("h3", &w, 600, day, month)).answer.rc, "00");
    assert_string_equal(apply1(f, completion_op("c4", "h3", &w, 500)).answer.rc, "00");
    w = load(f, 1, "x").snap.wallet;
    assert_string_equal(apply1(f, debit("d1", &w, 450)).answer.rc, "00"); /* 500 -> 50 */
    assert_string_equal(apply1(f, reversal_op("c4", 500)).answer.rc, "00");
    assert_string_equal(hold_status(f, "h3"), "released");
    assert_int_equal(dbt_scalar(f->check, "SELECT balance_minor - held_minor FROM "
                                          "wallet.wallets"),
                     550);
    assert_int_equal(dbt_scalar(f->check, "SELECT count(*) FROM wallet.invariant_violations"), 0);
}

int main(void)
{
    if (!dbt_env_names_cluster("test_db_wallet"))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seed_and_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_batch_one_statement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_in_callers_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_batch_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_check_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kyc_tier_cap_in_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preauth_completion_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preauth_increment_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preauth_expiry_sql, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
