/* issuer-sim's group commit: every decision (and reversal) reached in one loop turn is queued
 * as a typed op, and at the end of the turn the queue leaves as batches of db_wallet_apply —
 * one transaction, one commit each. A refused batch is applied again one request at a time; the
 * outcome of each request answers it or sends it back to load and decide again. */
#include "issuer_int.h"

#include "clock.h"
#include "db.h"
#include "fmt.h"
#include "log.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

/* Queues the request for this loop turn's batch (what to apply is in t->op). */
static void apply_queue(struct txn *t)
{
    struct iss *s = t->iss;
    txn_set_state(t, TXN_APPLY);
    t->apply_next = NULL;
    *s->apply_tail = t;
    s->apply_tail = &t->apply_next;
    if (s->apply_queued++ == 0)
        event_active(s->ev_apply, 0, 0);
}

/* ---------------------------------------------------------------- results */

/* The outcome of wallet.sim_apply / sim_reverse: answers the request, or decides again on a
 * fresh snapshot (retry). */
static void apply_result(struct txn *t, const struct db_wallet_outcome *o)
{
    if (o->status != 0) {
        at_log(AT_LOG_ERROR, "apply_failed", AT_STR("error", "no result row"));
        txn_fail(t, "96", "db_error");
        return;
    }
    snprintf(t->outcome, sizeof t->outcome, "%s", db_wallet_verdict_name(o->verdict));
    if (o->verdict == DB_WALLET_RETRY) {
        if (++t->retries > MAX_RETRIES) {
            txn_fail(t, "96", "contention");
            return;
        }
        txn_load(t);
        return;
    }
    memcpy(t->rc, o->answer.rc, sizeof t->rc);
    memcpy(t->auth, o->answer.auth_code, sizeof t->auth);
    t->has_bal = o->answer.has_balances;
    t->bal = o->answer.balance_minor;
    t->avail = o->answer.available_minor;
    txn_answer(t);
}

/* A batch's transaction ended. Committed: each request gets its own outcome. Refused by the
 * server (one statement failed, so none of the batch was applied): each request is applied
 * again in a transaction of its own, so one bad request cannot decline the others. Connection
 * lost or shutting down: the outcome is unknown, every request is answered 96 (the switch
 * reverses). */
static void on_apply(void *arg, const struct db_error *err, const struct db_wallet_outcome *out,
                     unsigned nout)
{
    struct txn *t = arg;
    struct iss *s = t->iss;
    unsigned n = 0;
    for (struct txn *x = t; x; x = x->apply_next)
        n++;
    /* A transaction slot is free: what queued meanwhile leaves as the next batch. */
    s->apply_inflight--;
    if (s->apply_head)
        event_active(s->ev_apply, 0, 0);
    bool split = err->code == DB_E_SQL && n > 1;
    if (err->code != 0)
        at_log(split ? AT_LOG_WARN : AT_LOG_ERROR, split ? "apply_batch_split" : "apply_failed",
               AT_STR("error", db_strerror(err->code)), AT_STR("sqlstate", err->sqlstate),
               AT_STR("message", err->message), AT_UINT("batch", n));
    for (unsigned i = 0; t; i++) {
        struct txn *next = t->apply_next;
        t->apply_next = NULL;
        if (split) {
            t->apply_alone = true;
            apply_queue(t);
        } else if (err->code != 0) {
            txn_fail(t, "96", "db_error");
        } else {
            static const struct db_wallet_outcome none = { .status = DB_E_INVALID };
            apply_result(t, i < nout ? &out[i] : &none);
        }
        t = next;
    }
}

/* ---------------------------------------------------------------- batches */

/* Takes the next batch off the queue into batch: up to APPLY_BATCH requests, or one request
 * whose earlier batch was refused. Returns how many. */
static unsigned take_batch(struct iss *s, struct txn *batch[APPLY_BATCH])
{
    unsigned n = 0;
    bool alone = s->apply_head->apply_alone;
    while (s->apply_head && n < (alone ? 1u : APPLY_BATCH)) {
        struct txn *t = s->apply_head;
        s->apply_head = t->apply_next;
        t->apply_next = NULL;
        batch[n++] = t;
        s->apply_queued--;
    }
    if (!s->apply_head)
        s->apply_tail = &s->apply_head;
    return n;
}

/* Whether the queue may leave as a new batch now. With no transaction in flight, at once: a
 * lone request waits for nothing. With one in flight, when APPLY_SPILL requests wait, or when
 * the last batch sent has been in flight for APPLY_PATIENCE_NS (a batch waiting for a row lock
 * holds the queue no longer than that: ev_apply is armed for the rest of the time). Otherwise
 * the queue waits for a commit (on_apply sends it) and leaves as one batch. A batch's cost in
 * PostgreSQL is mostly fixed (wallet.sim_apply_batch: ~0.3 ms of CPU for one decision, ~55 us
 * per further one), so at a steady rate one transaction at a time with bigger batches costs
 * less than one transaction per request on each connection (docs/BENCHMARKS.md, fifth pass). */
static bool apply_may_start(struct iss *s)
{
    if (s->closing || s->apply_inflight == 0)
        return true;
    if (s->apply_inflight >= s->apply_max_inflight)
        return false;
    uint64_t waited = at_mono_ns() - s->apply_sent_ns;
    if (s->apply_queued >= APPLY_SPILL || waited >= APPLY_PATIENCE_NS)
        return true;
    uint64_t rest_us = (APPLY_PATIENCE_NS - waited + 999) / 1000;
    struct timeval tv = { .tv_sec = 0, .tv_usec = (suseconds_t)rest_us };
    event_add(s->ev_apply, &tv);
    return false;
}

/* Sends the decisions queued: up to APPLY_BATCH per transaction, so that one commit (one WAL
 * flush) makes a whole batch durable, and no more transactions at a time than
 * apply_max_inflight (the rest wait for one to commit: on_apply sends them). A request whose
 * batch failed goes alone.
 * The batch's requests are chained (apply_next) in the order of its ops: on_apply walks them
 * along the outcomes. */
void apply_flush(evutil_socket_t fd, short what, void *arg)
{
    struct iss *s = arg;
    (void)fd;
    (void)what;
    while (s->apply_head && apply_may_start(s)) {
        struct txn *batch[APPLY_BATCH] = { 0 };
        unsigned n = take_batch(s, batch);
        if (s->closing) {
            for (unsigned i = 0; i < n; i++)
                txn_fail(batch[i], "96", "shutdown");
            continue;
        }
        struct db_wallet_op ops[APPLY_BATCH];
        for (unsigned i = 0; i < n; i++) {
            ops[i] = batch[i]->op;
            batch[i]->apply_next = i + 1 < n ? batch[i + 1] : NULL;
        }
        s->apply_inflight++; /* before: on_apply may run inside the call (database down) */
        s->apply_sent_ns = at_mono_ns();
        if (db_wallet_apply(s->db, ops, n, on_apply, batch[0]) != 0) {
            s->apply_inflight--;
            for (unsigned i = 0; i < n; i++) {
                batch[i]->apply_next = NULL;
                txn_fail(batch[i], "96", "db_full");
            }
            continue;
        }
        s->n_apply_jobs++;
    }
}

/* ---------------------------------------------------------------- the ops */

/* DE 37 of the request, NUL-terminated, into t->rrnz ("" when absent or too long). */
static void copy_rrn(struct txn *t)
{
    const uint8_t *rrn;
    size_t rrn_len;
    t->rrnz[0] = '\0';
    if ((rrn = iso_get(&t->req, 37, &rrn_len)) && rrn_len < sizeof t->rrnz) {
        memcpy(t->rrnz, rrn, rrn_len);
        t->rrnz[rrn_len] = '\0';
    }
}

static void reversal_op(struct txn *t)
{
    t->op.kind = DB_WALLET_OP_REVERSAL;
    t->op.u.reversal = (struct db_wallet_reversal){
        .original_key = t->orig_key,
        .mti = t->mti,
        .pcode = t->pcode,
        .amount_minor = t->amount,
        .rrn = t->rrnz,
    };
}

/* A pre-auth completion: wallet.sim_complete decides; the approval code drawn here is recorded
 * only if it approves. */
static void completion_op(struct txn *t)
{
    at_put_digits(t->auth, 6, ++t->iss->auth_seq);
    t->auth[6] = '\0';
    t->op.kind = DB_WALLET_OP_COMPLETION;
    t->op.u.completion = (struct db_wallet_completion){
        .request_key = t->key,
        .original_key = t->orig_key,
        .has_wallet = t->have_wallet,
        .wallet_id = t->wallet.wallet_id,
        .mti = t->mti,
        .pcode = t->pcode,
        .amount_minor = t->amount,
        .currency = t->currency,
        .rrn = t->rrnz,
        .auth_code = t->auth,
    };
}

/* The decision in t->eff, with its approval code drawn when it approves. */
static void decision_op(struct txn *t)
{
    const struct sim_effects *e = &t->eff;
    memcpy(t->rc, e->rc, 3);
    t->auth[0] = '\0';
    if (t->is_advice) {
        /* The approval is the switch's: its code is recorded (and echoed), none is drawn. */
        if (strcmp(e->rc, "00") == 0)
            memcpy(t->auth, t->advice_auth, sizeof t->auth);
    } else if (strcmp(e->rc, "00") == 0) {
        at_put_digits(t->auth, 6, ++t->iss->auth_seq);
        t->auth[6] = '\0';
    }
    t->op.kind = DB_WALLET_OP_DECISION;
    t->op.u.decision = (struct db_wallet_decision){
        .request_key = t->key,
        .has_wallet = t->have_wallet,
        .wallet_id = t->wallet.wallet_id,
        .row_version = t->wallet.row_version,
        .mti = t->mti,
        .pcode = t->pcode,
        .amount_minor = t->amount,
        .rrn = t->rrnz,
        .rc = e->rc,
        .auth_code = t->auth,
        .pin_tries = e->pin_tries,
        .hold_minor = e->hold_minor,
        .ledger_minor = e->ledger_minor,
        .kind = e->kind,
        .usage_date = e->usage_set ? e->usage_date : NULL,
        .usage_minor = e->usage_minor,
        .usage_cash_minor = e->usage_cash_minor,
        .usage_count = e->usage_count,
        .day_credit_minor = e->day_credit_minor,
        .usage_month = e->usage_month,
        .month_debit_minor = e->month_debit_minor,
        .month_credit_minor = e->month_credit_minor,
        .parent_key = t->is_increment ? t->orig_key : NULL,
        .advice = t->is_advice,
    };
}

void txn_apply(struct txn *t)
{
    if (t->iss->closing) {
        txn_fail(t, "96", "shutdown");
        return;
    }
    copy_rrn(t);
    t->apply_alone = false;
    if (t->is_reversal)
        reversal_op(t);
    else if (t->is_completion)
        completion_op(t);
    else
        decision_op(t);
    apply_queue(t);
}
