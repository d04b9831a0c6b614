/* issuer-sim's requests: the pool of slots, the state machine's one door (txn_set_state and
 * its table of allowed moves), and the flow between the steps — MTI and MAC field checks,
 * validation, the wallet snapshot, the decision (decide.c) — down to the apply (apply.c) or an
 * answer (answer.c); and the per-request log line when a request ends. */
#include "issuer_int.h"

#include "clock.h"
#include "db.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the one door */

static const char *const txn_state_name[TXN_state_max] = {
    "free", "mac", "load", "pin", "apply", "resp_mac", "keyx",
};

#define S(x) (1u << (x))

/* The moves a request may make, by the state it leaves. Any state may end (FREE): a request
 * answered without a MAC, one whose answer could not be built, or a shut-down. */
static const unsigned txn_next[TXN_state_max] = {
    /* just taken from the pool: its request MAC is checked, or it is answered at once (no MAC
     * field, unknown MTI: RESP_MAC), or it ends unanswered or with a 0810 (FREE) */
    [TXN_FREE] = S(TXN_FREE) | S(TXN_MAC) | S(TXN_RESP_MAC) | S(TXN_KEYX),
    /* the MAC verified: load the wallet, or apply a reversal; else answered */
    [TXN_MAC] = S(TXN_FREE) | S(TXN_LOAD) | S(TXN_APPLY) | S(TXN_RESP_MAC),
    /* a PIN to verify, or decided; a repeat is answered */
    [TXN_LOAD] = S(TXN_FREE) | S(TXN_PIN) | S(TXN_APPLY) | S(TXN_RESP_MAC),
    [TXN_PIN] = S(TXN_FREE) | S(TXN_APPLY) | S(TXN_RESP_MAC),
    /* applied: answered; the wallet changed: loaded again; its batch refused: applied alone */
    [TXN_APPLY] = S(TXN_FREE) | S(TXN_LOAD) | S(TXN_APPLY) | S(TXN_RESP_MAC),
    [TXN_RESP_MAC] = S(TXN_FREE),
    /* a key change: its keys imported (or refused), answered without a MAC */
    [TXN_KEYX] = S(TXN_FREE) | S(TXN_KEYX),
};

void txn_set_state(struct txn *t, enum txn_state st)
{
    if ((unsigned)st >= TXN_state_max || !(txn_next[t->st] & S(st))) {
        /* A move the machine does not have is a bug: stop before it corrupts money. */
        at_log(AT_LOG_ERROR, "txn_bad_transition", AT_STR("from", txn_state_name[t->st]),
               AT_STR("to", (unsigned)st < TXN_state_max ? txn_state_name[st] : "?"),
               AT_STR("mti", t->mti));
        at_log_flush();
        abort();
    }
    if (at_log_enabled(AT_LOG_DEBUG))
        at_log(AT_LOG_DEBUG, "txn_state", AT_STR("from", txn_state_name[t->st]),
               AT_STR("to", txn_state_name[st]), AT_STR("mti", t->mti));
    t->st = st;
}

/* ---------------------------------------------------------------- the pool */

struct txn *txn_get(struct iss *s, struct conn *c)
{
    struct txn *t = s->free_list;
    if (!t)
        return NULL;
    s->free_list = t->next_free;
    s->inflight++;
    t->c = c;
    c->refs++;
    t->t0 = at_mono_ns();
    t->len = 0;
    t->mti[0] = t->pcode[0] = t->pan[0] = t->key[0] = t->orig_key[0] = '\0';
    strcpy(t->pan_masked, "-");
    t->amount = -1;
    t->currency = -1;
    t->is_reversal = t->is_inquiry = t->have_wallet = t->has_bal = t->is_advice = false;
    t->is_completion = t->is_increment = false;
    t->advice_auth[0] = t->advice_rc[0] = '\0';
    t->retries = 0;
    t->rc[0] = t->auth[0] = t->de54[0] = '\0';
    strcpy(t->outcome, "new");
    memset(&t->r, 0, sizeof t->r);
    memset(&t->eff, 0, sizeof t->eff); /* no decision yet (txn_finish reads its rule) */
    t->resp48[0] = t->resp44[0] = '\0';
    keyx_take_current(t);
    link_backpressure_update(s);
    return t;
}

static void txn_put(struct txn *t)
{
    struct iss *s = t->iss;
    txn_set_state(t, TXN_FREE);
    link_unref(t->c);
    t->c = NULL;
    t->next_free = s->free_list;
    s->free_list = t;
    s->inflight--;
    link_backpressure_update(s);
    iss_maybe_finish_drain(s);
}

static void log_txn(struct txn *t)
{
    uint64_t us = (at_mono_ns() - t->t0) / 1000;
    const uint8_t *stan = NULL;
    size_t stan_len = 0;
    if (t->len)
        stan = iso_get(&t->req, 11, &stan_len);
    at_log(AT_LOG_INFO, "issuer_txn", AT_STR("mti", t->mti), AT_STR("pcode", t->pcode),
           AT_STR("pan", t->pan_masked), AT_INT("amount", t->amount),
           AT_INT("currency", t->currency), AT_STRN("stan", (const char *)stan, stan_len),
           AT_STR("rc", t->rc), AT_STR("outcome", t->outcome), AT_INT("retries", t->retries),
           AT_UINT("latency_us", us));
}

/* A decline by a limit names its rule, the limit and the amount the request would have brought
 * the counter (or the balance, for tier_max_balance) to: the response code alone (61 is several
 * rules) does not tell an operator which one. Logged once, when the decline was applied: a
 * decision made again on a fresh snapshot, or a repeat answered from the record, logs nothing. */
static void log_limit(const struct txn *t)
{
    at_log(AT_LOG_INFO, "issuer_limit_decline", AT_STR("rule", t->eff.rule),
           AT_STR("rc", t->eff.rc), AT_STR("pcode", t->pcode), AT_STR("pan", t->pan_masked),
           AT_INT("kyc_tier", t->wallet.kyc_tier), AT_INT("limit", t->eff.rule_limit),
           AT_INT("would_be", t->eff.rule_would), AT_INT("amount", t->amount),
           AT_INT("currency", t->currency));
}

void txn_finish(struct txn *t)
{
    if (t->eff.rule && strcmp(t->outcome, "applied") == 0 && strcmp(t->rc, t->eff.rc) == 0)
        log_limit(t);
    log_txn(t);
    t->iss->n_req++;
    if (strcmp(t->rc, "00") == 0)
        t->iss->n_approved++;
    txn_put(t);
}

void txn_fail(struct txn *t, const char *rc, const char *outcome)
{
    memcpy(t->rc, rc, 3);
    snprintf(t->outcome, sizeof t->outcome, "%s", outcome);
    t->has_bal = false;
    txn_answer(t);
}

/* ---------------------------------------------------------------- the flow */

void txn_begin(struct txn *t)
{
    t->is_reversal = !strcmp(t->mti, "0420") || !strcmp(t->mti, "0421");
    /* 0101 / 0201 repeats are the same request again: the request key makes them harmless. */
    /* An 0120/0220 the switch generated for a stand-in decision carries no DE 90; an acquirer's
     * 0220 completion names its pre-authorization there (docs/issuer-sim.md "Advices" and
     * "Pre-authorization"; validate.c checks DE 90). */
    t->is_advice = (!strcmp(t->mti, "0120") || !strcmp(t->mti, "0121") || !strcmp(t->mti, "0220") ||
                    !strcmp(t->mti, "0221")) &&
                   !iso_has(&t->req, 90);
    t->is_completion = (!strcmp(t->mti, "0220") || !strcmp(t->mti, "0221")) && !t->is_advice;
    bool known = t->is_reversal || t->is_advice || t->is_completion || !strcmp(t->mti, "0100") ||
                 !strcmp(t->mti, "0200") || !strcmp(t->mti, "0101") || !strcmp(t->mti, "0201");
    /* The MAC is the last field: DE 128 with a secondary bitmap, else DE 64. */
    struct isonet_mac at;
    if (isonet_mac_locate(t->iss->dialect, &t->req, t->len, &at) != 0) {
        (void)field_str(&t->req, 3, 6, 6, t->pcode);
        txn_fail(t, "30", "no_mac");
        return;
    }
    if (!known) {
        txn_fail(t, "12", "unsupported_mti");
        return;
    }
    hsmcmd_verify_request_mac(t, &at);
}

void txn_mac_verified(struct txn *t)
{
    const char *bad = txn_validate(t);
    if (bad) {
        txn_fail(t, bad, "refused");
        return;
    }
    if (t->is_reversal)
        txn_apply(t);
    else
        txn_load(t);
}

/* What the decision needs of the wallet row (issuer.h's view of it). */
static void sim_wallet_from_row(struct sim_wallet *sw, const struct db_wallet_row *w)
{
    static const enum sim_status status[] = {
        [DB_WALLET_ACTIVE] = SIM_ACTIVE,
        [DB_WALLET_BLOCKED] = SIM_BLOCKED,
        [DB_WALLET_LOST] = SIM_LOST,
    };
    memcpy(sw->expiry, w->expiry, sizeof sw->expiry);
    sw->currency = w->currency;
    sw->balance_minor = w->balance_minor;
    sw->held_minor = w->held_minor;
    sw->status = status[w->status];
    sw->pin_tries = w->pin_tries;
    sw->pin_try_limit = w->pin_try_limit;
    sw->daily_limit_minor = w->daily_limit_minor;
    sw->daily_cash_limit_minor = w->daily_cash_limit_minor;
    sw->daily_count_limit = w->daily_count_limit;
    memcpy(sw->usage_date, w->usage_date, sizeof sw->usage_date);
    sw->usage_minor = w->usage_minor;
    sw->usage_cash_minor = w->usage_cash_minor;
    sw->usage_count = w->usage_count;
    sw->day_credit_minor = w->day_credit_minor;
    memcpy(sw->usage_month, w->usage_month, sizeof sw->usage_month);
    sw->month_debit_minor = w->month_debit_minor;
    sw->month_credit_minor = w->month_credit_minor;
    sw->max_balance_minor = w->max_balance_minor;
    sw->debit_daily_limit_minor = w->debit_daily_limit_minor;
    sw->debit_monthly_limit_minor = w->debit_monthly_limit_minor;
    sw->credit_daily_limit_minor = w->credit_daily_limit_minor;
    sw->credit_monthly_limit_minor = w->credit_monthly_limit_minor;
}

/* The snapshot: the card's wallet, if any, and the request's recorded answer if it was
 * answered before (then the same answer goes again). */
void txn_loaded(struct txn *t, const struct db_error *err, const struct db_wallet_snapshot *snap)
{
    if (err->code == DB_E_INVALID) {
        at_log(AT_LOG_ERROR, "wallet_row_invalid", AT_STR("pan", t->pan_masked),
               AT_STR("reason", err->message));
        txn_fail(t, "96", "wallet_row");
        return;
    }
    if (err->code != 0) {
        at_log(AT_LOG_ERROR, "load_failed", AT_STR("error", db_strerror(err->code)),
               AT_STR("sqlstate", err->sqlstate), AT_STR("message", err->message));
        txn_fail(t, "96", "db_error");
        return;
    }
    t->have_wallet = snap->has_wallet;
    if (t->have_wallet) {
        t->wallet = snap->wallet;
        sim_wallet_from_row(&t->w, &t->wallet);
    }
    if (snap->answered) { /* answered before: the same answer again */
        memcpy(t->rc, snap->answer.rc, sizeof t->rc);
        memcpy(t->auth, snap->answer.auth_code, sizeof t->auth);
        t->has_bal = snap->answer.has_balances;
        t->bal = snap->answer.balance_minor;
        t->avail = snap->answer.available_minor;
        strcpy(t->outcome, "duplicate");
        txn_answer(t);
        return;
    }
    txn_decide(t);
}

void txn_load(struct txn *t)
{
    struct iss *s = t->iss;
    if (s->closing) {
        txn_fail(t, "96", "shutdown");
        return;
    }
    if (db_pan_hasher_mac(s->hasher, t->pan, strlen(t->pan), t->pan_hmac) != 0) {
        txn_fail(t, "30", "format");
        return;
    }
    txn_set_state(t, TXN_LOAD);
    load_queue(t); /* read with the loop turn's other loads (load.c) */
}

void txn_decide(struct txn *t)
{
    if (t->is_advice) {
        (void)sim_decide_advice(t->have_wallet ? &t->w : NULL, &t->r, &t->eff);
        txn_apply(t);
        return;
    }
    if (t->is_completion) { /* wallet.sim_complete decides: the money was reserved already */
        txn_apply(t);
        return;
    }
    int d = sim_decide(t->have_wallet ? &t->w : NULL, &t->r, &t->eff);
    if (d == SIM_NEED_PIN) {
        hsmcmd_verify_pin(t);
        return;
    }
    txn_apply(t);
}
