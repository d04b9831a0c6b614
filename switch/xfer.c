/* Wallet-to-wallet transfers as a durable saga (docs/transfers.md).
 *
 * A terminal's 0200 with processing code 40 (the sender's request, a txn of
 * its own in state TRANSFER while this runs) becomes:
 *
 *   recipient (DE 103: a PAN, or a mobile number looked up in switch.aliases)
 *   → route it → PIN translated to the sender's issuer → switch.transfer_begin
 *   (corridor, fee, the row: durable before any leg leaves) → AFT leg (10, the
 *   amount + fee, at the sender's issuer) → OCT leg (26, the amount, at the
 *   recipient's issuer) → the sender's answer.
 *
 * Each leg is a request of the switch's own (sw_txn_start_leg) with its own
 * identity: written ahead, journaled, and reversed on a timeout like any
 * terminal's request. An OCT that does not approve has the AFT reversed
 * (durably) before the sender is answered. If switchd stops at any point,
 * switch.recover_transfers settles the row at the next start from the
 * journal: a sender journaled an approval keeps it; anything else has every
 * approved leg reversed. A terminal's reversal of a completed transfer
 * reverses both legs. */
#include "switchd.h"

#include "clock.h"
#include "db.h"
#include "fmt.h"
#include "log.h"
#include "parse.h"
#include "saf.h"
#include "xfer.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum xfer_mode { XFER_RUN, XFER_REVERSE };

struct sw_xfer {
    enum xfer_mode mode;
    struct sw_txn *t; /* the sender's request, or the terminal's reversal of it */
    int64_t id;
    int64_t amount, fee;
    int currency, rcur;
    int sender_billing; /* the sender's card's billing currency (0: DE 49's) */
    char rpan[20];      /* the recipient's PAN, in memory only (wiped when freed) */
    size_t rpan_len;
    char msisdn[17];
    struct sw_issuer rissuer;
    char leg_date[11], leg_de7[11];
    struct sw_recent_txn aft, oct; /* the legs as their reversals need them */
    struct db_request_id sender;   /* the sender's identity, as switch.transfer_begin got it */
    bool repeat;                   /* the answer of an earlier copy, given again */
    /* The row's final state waits for what it stands for to be durable: `completed` for the
     * sender's journaled approval (sw_xfer_delivered), `failed` after an OCT that did not
     * approve for the AFT's reversal (sw_xfer_reversal_stored). */
    bool completed, failing;
    struct db_transfer_change final;
    char aft_rc[3], oct_rc[3];
    struct db_transfer_row row; /* XFER_REVERSE: the transfer being reversed */
    bool oct_step;              /* XFER_REVERSE: the OCT's reversal is done, the AFT's next */
};

static void xfer_free(struct sw_xfer *x)
{
    if (!x)
        return;
    OPENSSL_cleanse(x->rpan, sizeof x->rpan);
    free(x);
}

/* The sender's answer: rc (and DE 44 naming the leg that failed, when one did). */
static void end(struct sw_xfer *x, const char *rc, enum sw_txn_outcome outcome, const char *leg,
                const char *reason)
{
    struct sw_txn *t = x->t;
    if (leg)
        snprintf(t->resp44, sizeof t->resp44, "%s%.2s", leg, rc);
    if (outcome == SW_OUT_APPROVED && x->mode == XFER_RUN && !x->repeat) {
        t->xfer_fee = x->fee; /* DE 28: charged only when the transfer went through */
        t->has_xfer_fee = true;
    }
    /* A transfer's saga stays with the sender's txn until its answer is out
     * (sw_xfer_delivered): its row's final state is written then, and an approval that cannot
     * be delivered is unwound. */
    if (x->mode != XFER_RUN) {
        t->xfer = NULL;
        xfer_free(x);
    }
    if (outcome == SW_OUT_APPROVED || outcome == SW_OUT_DECLINED) {
        memcpy(t->rc, rc, 2);
        t->rc[2] = '\0';
        t->outcome = outcome;
        sw_txn_finish(t);
        return;
    }
    sw_txn_reject(t, rc, outcome, reason, 103);
}

static void update_row(struct sw_server *srv, const struct db_transfer_change *ch)
{
    /* Recovery decides from the journal, not from these changes, but only at a start: while
     * switchd runs, a change PostgreSQL could not take is sent again until it lands
     * (xfer_rows.c), or the row would stay `started` / `aft` though its money is settled. */
    sw_xfer_row_change(srv, ch);
}

static void change_init(struct db_transfer_change *ch, int64_t id, const char *state)
{
    memset(ch, 0, sizeof *ch);
    ch->transfer_id = id;
    ch->state = state;
    ch->recipient_amount_minor = -1;
}

/* ---------------------------------------------------------------- legs */

static void start_leg(struct sw_xfer *x, bool oct)
{
    struct sw_txn *t = x->t;
    struct sw_leg leg;
    memset(&leg, 0, sizeof leg);
    leg.xfer = x;
    leg.oct = oct;
    leg.acquirer = t->acquirer;
    struct db_request_id id;
    db_transfer_leg_id(x->id, oct, t->acquirer, x->leg_date, x->leg_de7, &id);
    memcpy(leg.terminal, id.terminal_id, 9);
    memcpy(leg.stan, id.stan, 7);
    memcpy(leg.de7, x->leg_de7, 11);
    leg.proc = oct ? "260000" : "100000";
    leg.amount = oct ? x->amount : x->amount + x->fee;
    leg.currency = x->currency;
    leg.billing_currency = oct ? x->rcur : x->sender_billing;
    if (oct) {
        leg.pan = x->rpan;
        leg.pan_len = x->rpan_len;
        leg.issuer = &x->rissuer;
    } else {
        leg.pan = (const char *)t->v.pan;
        leg.pan_len = t->v.pan_len;
        leg.issuer = &t->issuer;
        leg.pin_block = t->has_pin_block ? t->pin_block : NULL;
    }
    leg.wall_us = t->t_wall_us;
    const char *why = sw_txn_start_leg(t->srv, &leg);
    if (why) {
        /* Nothing of this leg left the switch. */
        at_log(AT_LOG_WARN, "transfer_leg_not_sent", AT_INT("transfer_id", x->id),
               AT_STR("leg", oct ? "oct" : "aft"), AT_STR("reason", why));
        sw_xfer_leg_done(x, oct, "91", NULL);
    }
}

/* A numeric field of m (DE 4, DE 49), 0 when absent or not a number. */
static int64_t field_num(const struct iso_msg *m, int f)
{
    size_t n;
    const uint8_t *p = iso_get(m, f, &n);
    char buf[20];
    uint64_t v;
    if (!p || n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return at_parse_u64(buf, INT64_MAX, &v) ? (int64_t)v : 0;
}

/* A leg as sw_saf_reverse_leg needs it. */
static void remember_leg(struct sw_recent_txn *o, const struct sw_txn *leg)
{
    memset(o, 0, sizeof *o);
    at_strlcpy(o->id.acquirer, leg->acquirer, sizeof o->id.acquirer);
    memcpy(o->id.terminal, iso_get(&leg->req, 41, &(size_t){ 0 }), 8);
    memcpy(o->id.stan, iso_get(&leg->req, 11, &(size_t){ 0 }), 6);
    memcpy(o->id.tx_time, leg->de7, 10);
    o->id.mclass = '2';
    memcpy(o->mti, "0200", 4);
    at_strlcpy(o->issuer_id, leg->issuer.id, sizeof o->issuer_id);
    at_put_digits(o->issuer_stan, 6, leg->issuer_stan);
    memcpy(o->issuer_tx_time, leg->issuer_de7, 10);
    memcpy(o->rrn, leg->rrn, 12);
    memcpy(o->proc_code, iso_get(&leg->req, 3, &(size_t){ 0 }), 6);
    o->amount_minor = field_num(&leg->req, 4);
    o->currency = (uint16_t)field_num(&leg->req, 49);
    sw_fx_to_recent(o, &leg->billing);
    memcpy(o->auth_code, leg->auth_code, 6);
    o->approved = true;
    o->forwarded = true;
    o->state = SW_RECENT_ANSWERED;
}

void sw_xfer_leg_finished(struct sw_txn *leg)
{
    struct sw_xfer *x = leg->leg_of;
    if (!x)
        return;
    if (leg->outcome == SW_OUT_APPROVED && !leg->reversing)
        remember_leg(leg->leg_oct ? &x->oct : &x->aft, leg);
    /* An approval whose journal row or MAC failed was withdrawn (96) and is
     * being reversed by the leg itself: it counts as a failure. */
    sw_xfer_leg_done(x, leg->leg_oct,
                     leg->outcome == SW_OUT_APPROVED && !leg->reversing ? "00"
                     : leg->rc[0]                                       ? leg->rc
                                                                        : "96",
                     leg);
}

void sw_xfer_leg_done(struct sw_xfer *x, bool oct, const char *rc, const struct sw_txn *leg)
{
    struct sw_txn *t = x->t;
    struct db_transfer_change ch;
    bool ok = strcmp(rc, "00") == 0;
    if (!oct) {
        memcpy(x->aft_rc, rc, 3);
        if (!ok) {
            change_init(&ch, x->id, "failed");
            memcpy(ch.aft_rc, rc, 3);
            memcpy(ch.response_code, rc, 3);
            ch.failed_leg = "aft";
            update_row(t->srv, &ch);
            at_log(AT_LOG_INFO, "transfer_failed", AT_INT("transfer_id", x->id),
                   AT_STR("leg", "aft"), AT_STR("rc", rc));
            /* The AFT itself is reversed by its own txn when its outcome is unknown. */
            end(x, rc, SW_OUT_DECLINED, "AFT", "the AFT leg was not approved");
            return;
        }
        memcpy(t->auth_code, x->aft.auth_code, 6);
        t->auth_code[6] = '\0';
        /* DE 54: the sender's balance after the debit, as its issuer told (never the
         * recipient's: the OCT's DE 54 stays with the switch). */
        if (leg && leg->balance_len) {
            memcpy(t->balance, leg->balance, leg->balance_len);
            t->balance_len = leg->balance_len;
        }
        change_init(&ch, x->id, "aft");
        memcpy(ch.aft_rc, rc, 3);
        at_strlcpy(ch.auth_code, t->auth_code, sizeof ch.auth_code);
        update_row(t->srv, &ch);
        start_leg(x, true);
        return;
    }
    memcpy(x->oct_rc, rc, 3);
    if (ok) {
        change_init(&x->final, x->id, "completed");
        memcpy(x->final.oct_rc, rc, 3);
        memcpy(x->final.response_code, "00", 3);
        if (leg && db_billing_converted(&leg->billing)) {
            t->billing = leg->billing; /* DE 6/10/51: what the recipient got */
            x->final.recipient_amount_minor = leg->billing.amount_minor;
            at_strlcpy(x->final.conversion_rate, leg->billing.rate,
                       sizeof x->final.conversion_rate);
        } else {
            x->final.recipient_amount_minor = x->amount;
        }
        at_log(AT_LOG_INFO, "transfer_completed", AT_INT("transfer_id", x->id),
               AT_INT("amount", x->amount), AT_INT("fee", x->fee),
               AT_INT("recipient_amount", x->final.recipient_amount_minor),
               AT_INT("recipient_currency", x->rcur));
        x->completed = true;
        end(x, "00", SW_OUT_APPROVED, NULL, NULL);
        return;
    }
    /* The OCT did not approve (declined, timed out — its own txn reverses it —
     * or never left): the AFT is given back, durably, before the sender hears. */
    change_init(&x->final, x->id, "failed");
    memcpy(x->final.oct_rc, rc, 3);
    memcpy(x->final.response_code, rc, 3);
    x->final.failed_leg = "oct";
    at_log(AT_LOG_INFO, "transfer_failed", AT_INT("transfer_id", x->id), AT_STR("leg", "oct"),
           AT_STR("rc", rc), AT_STR("action", "AFT reversed"));
    t->auth_code[0] = '\0';
    t->balance_len = 0; /* the AFT's balance is no more: it is being given back */
    x->failing = true;
    sw_saf_reverse_leg(t->srv, t, &x->aft, (const char *)t->v.pan, t->v.pan_len, "error");
    if (!t->pending_saf)
        x->failing = false; /* not even queued: the row stays `aft`, recovery reverses it */
    end(x, rc, SW_OUT_DECLINED, "OCT", "the OCT leg was not approved");
}

/* ---------------------------------------------------------------- begin */

static void learn_original(struct sw_txn *t, const struct db_transfer_begun *b);

static void on_begun(void *arg, const struct db_error *err, const struct db_transfer_begun *b)
{
    struct sw_xfer *x = arg;
    struct sw_txn *t = x->t;
    if (err->code != 0) {
        at_log(AT_LOG_ERROR, "transfer_begin_failed", AT_STR("error", err->message));
        /* No answer is not "no row": the row may be committed (the connection was lost after
         * the commit). No leg of it can start (a leg needs its id): it is made failed. */
        if (!db_error_never_sent(err))
            sw_xfer_row_abandon(t->srv, &x->sender);
        end(x, "96", SW_OUT_ERROR, "XFR", "the transfer could not be recorded");
        return;
    }
    if (strcmp(b->response_code, "94") == 0) {
        /* The sender's identity is taken — by a transfer (then a repeat gets its answer) or by
         * another request. This copy is not the original: the duplicate table's entry is made
         * to describe the original (its row), never this copy's answer. */
        bool final =
            b->state[0] && strcmp(b->state, "started") != 0 && strcmp(b->state, "aft") != 0;
        bool reversed = strcmp(b->state, "reversed") == 0;
        learn_original(t, b);
        if (t->req.mti[3] == '1' && reversed) {
            t->journal = false;
            x->repeat = true;
            at_log(AT_LOG_INFO, "repeat_answered", AT_STR("rc", "96"),
                   AT_INT("transfer_id", b->transfer_id), AT_BOOL("original_reversed", true));
            end(x, "96", SW_OUT_DECLINED, NULL, NULL); /* its money went back */
            return;
        }
        if (t->req.mti[3] == '1' && final && b->answer_code[0]) {
            at_strlcpy(t->auth_code, b->auth_code, sizeof t->auth_code);
            t->journal = false;
            x->repeat = true;
            if (b->conversion_rate[0] && b->recipient_amount_minor >= 0) {
                t->billing.amount_minor = b->recipient_amount_minor;
                at_strlcpy(t->billing.rate, b->conversion_rate, sizeof t->billing.rate);
                t->billing.currency = b->recipient_currency;
            }
            t->xfer_fee = b->fee_minor;
            t->has_xfer_fee = strcmp(b->answer_code, "00") == 0;
            t->t_settle_us = b->received_us > 0 ? (uint64_t)b->received_us : 0; /* its DE 15 */
            at_log(AT_LOG_INFO, "repeat_answered", AT_STR("rc", b->answer_code),
                   AT_INT("transfer_id", b->transfer_id));
            end(x, b->answer_code,
                strcmp(b->answer_code, "00") == 0 ? SW_OUT_APPROVED : SW_OUT_DECLINED, NULL, NULL);
            return;
        }
        t->journal = false;
        end(x, "94", SW_OUT_REJECTED, NULL, "duplicate of a transfer");
        return;
    }
    if (strcmp(b->response_code, "00") != 0) {
        at_log(AT_LOG_INFO, "transfer_refused", AT_STR("rc", b->response_code),
               AT_STR("reason", b->reason));
        end(x, b->response_code, SW_OUT_DECLINED, "XFR", b->reason);
        return;
    }
    x->id = b->transfer_id;
    x->fee = b->fee_minor;
    at_log(AT_LOG_INFO, "transfer_started", AT_INT("transfer_id", x->id),
           AT_STR("sender_issuer", t->issuer.id), AT_STR("recipient_issuer", x->rissuer.id),
           AT_INT("amount", x->amount), AT_INT("currency", x->currency), AT_INT("fee", x->fee),
           AT_INT("recipient_currency", x->rcur));
    start_leg(x, false);
}

/* The duplicate table learns the original transfer behind a copy answered from its row (the
 * entry this copy made would otherwise say "answered, not approved" once this copy's 94 is out,
 * and a reversal found in memory would then be acknowledged on nothing). A row still running
 * stays in flight (a reversal waits); a finished one is answered, or reversed. */
static void learn_original(struct sw_txn *t, const struct db_transfer_begun *b)
{
    struct sw_recent_txn *e =
        t->has_recent ? sw_recent_find(t->srv->recent, &t->recent_id, sw_now_ms()) : NULL;
    t->has_recent = false; /* deliver() must not write this copy's answer into it */
    if (!e || !b->state[0] || strcmp(b->state, "started") == 0 || strcmp(b->state, "aft") == 0)
        return;
    bool approved = strcmp(b->answer_code, "00") == 0 || strcmp(b->state, "reversed") == 0;
    memcpy(e->rc, approved ? "00" : (b->answer_code[0] ? b->answer_code : "96"), 2);
    memcpy(e->auth_code, b->auth_code, strnlen(b->auth_code, 6));
    e->approved = approved;
    e->forwarded = false;
    e->received_us = b->received_us;
    e->state = strcmp(b->state, "reversed") == 0 ? SW_RECENT_REVERSED : SW_RECENT_ANSWERED;
}

/* The PIN is under the sender's issuer's ZPK: the row goes first. */
void sw_xfer_pin_ready(struct sw_txn *t)
{
    struct sw_xfer *x = t->xfer;
    struct sw_server *srv = t->srv;
    struct db_transfer_begin in;
    memset(&in, 0, sizeof in);
    char stan[7] = "";
    size_t n;
    const uint8_t *p = iso_get(&t->req, 11, &n);
    if (p && n == 6)
        memcpy(stan, p, 6);
    db_request_date(t->de7, t->t_wall_us, in.id.request_date);
    at_strlcpy(in.id.acquirer_id, t->acquirer, sizeof in.id.acquirer_id);
    memcpy(in.id.terminal_id, t->recent_id.terminal, 8);
    memcpy(in.id.stan, stan, 7);
    memcpy(in.id.transmission_time, t->de7, 11);
    in.owner = srv->conf.instance_id;
    at_strlcpy(in.sender_issuer, t->issuer.id, sizeof in.sender_issuer);
    at_strlcpy(in.recipient_issuer, x->rissuer.id, sizeof in.recipient_issuer);
    at_mask_pan((const char *)t->v.pan, t->v.pan_len, in.sender_masked);
    at_mask_pan(x->rpan, x->rpan_len, in.recipient_masked);
    if (sw_pan_protect(srv, (const char *)t->v.pan, t->v.pan_len, in.sender_hmac, in.sender_sealed,
                       &in.sender_sealed_len) != 0 ||
        sw_pan_protect(srv, x->rpan, x->rpan_len, in.recipient_hmac, in.recipient_sealed,
                       &in.recipient_sealed_len) != 0) {
        end(x, "96", SW_OUT_ERROR, "XFR", "a PAN cannot be sealed");
        return;
    }
    at_strlcpy(in.msisdn, x->msisdn, sizeof in.msisdn);
    in.amount_minor = x->amount;
    in.currency = x->currency;
    in.recipient_currency = x->rcur;
    /* The legs' DE 7: now, by the switch's clock (their identity is the switch's). */
    sw_de7_now(x->leg_de7);
    db_request_date(x->leg_de7, at_wall_us(), x->leg_date);
    memcpy(in.leg_request_date, x->leg_date, 11);
    memcpy(in.leg_transmission_time, x->leg_de7, 11);
    x->sender = in.id;
    if (db_transfer_begin(srv->db, &in, on_begun, x) != 0)
        end(x, "96", SW_OUT_ERROR, "XFR", "database queue full");
}

/* ---------------------------------------------------------------- recipient */

static void recipient_known(struct sw_xfer *x)
{
    struct sw_txn *t = x->t;
    struct sw_server *srv = t->srv;
    struct sw_route_match route;
    if (!sw_router_match(srv->ref->router, x->rpan, x->rpan_len, &route) ||
        !srv->ref->issuers[route.issuer].enabled) {
        end(x, "15", SW_OUT_DECLINED, "OCT", "the recipient's card has no route");
        return;
    }
    x->rissuer = srv->ref->issuers[route.issuer];
    if (x->rissuer.link < 0 || srv->links[x->rissuer.link].state != SW_LINK_UP) {
        end(x, "91", SW_OUT_DECLINED, "OCT", "the recipient's issuer is unreachable");
        return;
    }
    x->rcur = route.billing_currency > 0 ? route.billing_currency : x->currency;
    /* A conversion the OCT could not make is refused now, before the sender is debited. */
    struct sw_conversion conv;
    if (sw_fx_convert(srv, x->rcur, x->amount, x->currency, &conv) != 0) {
        end(x, conv.rc, SW_OUT_DECLINED, "XFR", conv.reason);
        return;
    }
    if (t->v.has_pin) {
        sw_txn_translate_pin(t);
        return;
    }
    sw_xfer_pin_ready(t);
}

static void on_alias(void *arg, const struct db_error *err, const uint8_t *sealed, size_t len)
{
    struct sw_xfer *x = arg;
    if (err->code != 0) {
        end(x, "96", SW_OUT_ERROR, "XFR", "alias directory lookup failed");
        return;
    }
    int n =
        sealed ? db_pan_open(x->t->srv->pan_seal_key, sealed, len, x->rpan, sizeof x->rpan) : -1;
    if (n < 12) {
        at_log(AT_LOG_INFO, "transfer_alias_unknown",
               AT_STR("reason", sealed ? "unreadable" : "not registered"));
        end(x, "14", SW_OUT_DECLINED, "OCT", "the mobile number has no wallet");
        return;
    }
    x->rpan_len = (size_t)n;
    recipient_known(x);
}

void sw_xfer_start(struct sw_txn *t, int sender_billing)
{
    struct sw_xfer *x = calloc(1, sizeof *x);
    if (!x) {
        sw_txn_reject(t, "96", SW_OUT_ERROR, "out of memory", 0);
        return;
    }
    x->mode = XFER_RUN;
    x->sender_billing = sender_billing;
    x->t = t;
    t->xfer = x;
    sw_txn_to_transfer(t);
    x->amount = field_num(&t->req, 4);
    x->currency = (int)field_num(&t->req, 49);
    if (t->v.recipient_msisdn) {
        memcpy(x->msisdn, t->v.recipient, t->v.recipient_len);
        x->msisdn[t->v.recipient_len] = '\0';
        if (db_alias_lookup(t->srv->db, x->msisdn, on_alias, x) != 0)
            end(x, "96", SW_OUT_ERROR, "XFR", "database queue full");
        return;
    }
    memcpy(x->rpan, t->v.recipient, t->v.recipient_len);
    x->rpan_len = t->v.recipient_len;
    recipient_known(x);
}

/* ---------------------------------------------------------------- a terminal's reversal */

static void reverse_next(struct sw_xfer *x);

static void on_leg_original(void *arg, const struct db_error *err, const struct db_original *d,
                            bool in_flight)
{
    struct sw_xfer *x = arg;
    struct sw_txn *t = x->t;
    if (err->code != 0 || (!d && (in_flight || db_journal_replay_pending(t->srv->journal)))) {
        /* No row is not "nothing stands" while the leg is in flight or its row may be in the
         * spool: the terminal repeats its reversal later. */
        end(x, "96", SW_OUT_ERROR, NULL,
            err->code   ? "journal lookup of a transfer leg failed"
            : in_flight ? "a transfer leg in flight"
                        : "journal spool not replayed yet");
        return;
    }
    bool oct = !x->oct_step;
    x->oct_step = true;
    if (!d || d->reversed || strcmp(d->response_code, "00") != 0 || !d->issuer_stan[0]) {
        reverse_next(x); /* nothing of this leg stands */
        return;
    }
    struct sw_recent_txn o;
    memset(&o, 0, sizeof o);
    at_strlcpy(o.id.acquirer, d->id.acquirer_id, sizeof o.id.acquirer);
    memcpy(o.id.terminal, d->id.terminal_id, 8);
    memcpy(o.id.stan, d->id.stan, 6);
    memcpy(o.id.tx_time, d->id.transmission_time, 10);
    o.id.mclass = '2';
    memcpy(o.mti, d->id.mti, 4);
    at_strlcpy(o.issuer_id, d->issuer_id, sizeof o.issuer_id);
    memcpy(o.issuer_stan, d->issuer_stan, 6);
    memcpy(o.issuer_tx_time, d->issuer_transmission_time, 10);
    memcpy(o.rrn, d->rrn, strnlen(d->rrn, 12));
    memcpy(o.proc_code, d->processing_code, strnlen(d->processing_code, 6));
    o.amount_minor = d->amount_minor;
    o.currency = (uint16_t)(d->currency > 0 ? d->currency : 0);
    memcpy(o.auth_code, d->auth_code, strnlen(d->auth_code, 6));
    sw_fx_to_recent(&o, &d->billing);
    if (oct)
        sw_saf_reverse_leg(t->srv, t, &o, x->rpan, x->rpan_len, "terminal");
    else
        sw_saf_reverse_leg(t->srv, t, &o, (const char *)t->v.pan, t->v.pan_len, "terminal");
    if (!t->pending_saf)
        end(x, "96", SW_OUT_ERROR, NULL, "the leg's reversal could not be queued");
    /* else sw_xfer_reversal_stored continues */
}

static void reverse_next(struct sw_xfer *x)
{
    struct sw_txn *t = x->t;
    if (x->oct_step && x->aft_rc[0]) {
        /* Both legs are reversed (or never stood). */
        struct db_transfer_change ch;
        change_init(&ch, x->row.transfer_id, "reversed");
        update_row(t->srv, &ch);
        at_log(AT_LOG_INFO, "transfer_reversed", AT_INT("transfer_id", x->row.transfer_id));
        struct sw_recent_txn *r = sw_recent_find(t->srv->recent, &t->xfer_orig, sw_now_ms());
        if (r)
            r->state = SW_RECENT_REVERSED;
        end(x, "00", SW_OUT_APPROVED, NULL, NULL);
        return;
    }
    bool oct = !x->oct_step;
    if (x->oct_step)
        memcpy(x->aft_rc, "--", 3); /* the AFT's turn */
    struct db_request_id id;
    db_transfer_leg_id(x->row.transfer_id, oct, t->xfer_orig.acquirer, x->row.leg_request_date,
                       x->row.leg_transmission_time, &id);
    /* No class: the lookup also says whether the leg is in flight (switch.inflight). */
    if (db_original_lookup(t->srv->db, &id, NULL, on_leg_original, x) != 0)
        end(x, "96", SW_OUT_ERROR, NULL, "database queue full");
}

bool sw_xfer_reversal_stored(struct sw_txn *t, bool durable)
{
    struct sw_xfer *x = t->xfer;
    if (x && x->mode == XFER_RUN && x->failing) {
        /* The AFT's reversal is durable: the transfer may be called failed now. Not durable
         * (it is retried), the row stays `aft` and recovery would queue the reversal. */
        x->failing = false;
        if (durable)
            update_row(t->srv, &x->final);
        return false; /* the sender's answer goes on as usual */
    }
    if (!x || x->mode != XFER_REVERSE)
        return false;
    t->pending_saf = false;
    if (!durable) {
        end(x, "96", SW_OUT_ERROR, NULL, "the leg's reversal is not durable yet");
        return true;
    }
    reverse_next(x);
    return true;
}

static void on_row(void *arg, const struct db_error *err, const struct db_transfer_row *row)
{
    struct sw_xfer *x = arg;
    if (err->code != 0) {
        end(x, "96", SW_OUT_ERROR, NULL, "transfer lookup failed");
        return;
    }
    if (!row) {
        end(x, "00", SW_OUT_APPROVED, NULL, NULL); /* no transfer: nothing moved */
        return;
    }
    /* Whatever its row's state says (it is written after the fact), each leg the journal has
     * as an approval not yet reversed is reversed: the sender's approval stands journaled. */
    x->row = *row;
    int n = db_pan_open(x->t->srv->pan_seal_key, row->recipient_sealed, row->recipient_sealed_len,
                        x->rpan, sizeof x->rpan);
    if (n < 12) {
        end(x, "96", SW_OUT_ERROR, NULL, "the recipient's PAN cannot be opened");
        return;
    }
    x->rpan_len = (size_t)n;
    reverse_next(x);
}

void sw_xfer_reverse(struct sw_txn *t, const struct sw_recent_txn *orig)
{
    struct sw_xfer *x = calloc(1, sizeof *x);
    if (!x) {
        sw_txn_reject(t, "96", SW_OUT_ERROR, "out of memory", 0);
        return;
    }
    x->mode = XFER_REVERSE;
    x->t = t;
    t->xfer = x;
    t->xfer_orig = orig->id;
    sw_txn_to_transfer(t);
    struct db_request_id id;
    memset(&id, 0, sizeof id);
    db_request_date(orig->id.tx_time, t->t_wall_us, id.request_date);
    at_strlcpy(id.acquirer_id, orig->id.acquirer, sizeof id.acquirer_id);
    memcpy(id.terminal_id, orig->id.terminal, 8);
    memcpy(id.stan, orig->id.stan, 6);
    memcpy(id.transmission_time, orig->id.tx_time, 10);
    if (db_transfer_find(t->srv->db, &id, on_row, x) != 0)
        end(x, "96", SW_OUT_ERROR, NULL, "database queue full");
}

/* ---------------------------------------------------------------- the sender's answer is out */

void sw_xfer_delivered(struct sw_txn *t, bool sent)
{
    struct sw_xfer *x = t->xfer;
    t->xfer = NULL;
    if (x && x->completed && !x->repeat && sent && t->outcome == SW_OUT_APPROVED) {
        /* The sender's approval is journaled and sent: the transfer is completed. */
        update_row(t->srv, &x->final);
    } else if (x && x->completed && !x->repeat) {
        /* The sender will never see its approval — not delivered, or withdrawn (its journal
         * row or its MAC failed: it got 96): both legs go back. Their journal rows are
         * approvals, so recovery would not do it: it is done now. */
        at_log(AT_LOG_WARN, "answer_undeliverable", AT_STR("rc", t->rc),
               AT_INT("transfer_id", x->id), AT_STR("action", "both legs reversed"));
        sw_saf_reverse_leg(t->srv, NULL, &x->oct, x->rpan, x->rpan_len, "error");
        sw_saf_reverse_leg(t->srv, NULL, &x->aft, (const char *)t->v.pan, t->v.pan_len, "error");
        /* A repeat of it is told 96, as for any approval the switch reversed. */
        struct sw_recent_txn *r =
            t->has_recent ? sw_recent_find(t->srv->recent, &t->recent_id, sw_now_ms()) : NULL;
        if (r)
            r->state = SW_RECENT_REVERSED;
        struct db_transfer_change ch;
        change_init(&ch, x->id, "reversed");
        update_row(t->srv, &ch);
    }
    xfer_free(x);
}

/* ---------------------------------------------------------------- a reversal of an unknown
 * original */

static void on_unknown_row(void *arg, const struct db_error *err, const struct db_transfer_row *row)
{
    struct sw_txn *t = arg;
    if (err->code != 0) {
        sw_txn_reject(t, "96", SW_OUT_ERROR, "transfer lookup failed", 90);
        return;
    }
    if (row && (strcmp(row->state, "started") == 0 || strcmp(row->state, "aft") == 0)) {
        /* Its sender's request has no journal row until it is answered, and none in
         * switch.inflight (its legs have theirs): the transfer still runs, here or on another
         * instance. The terminal tries again. */
        sw_txn_reject(t, "96", SW_OUT_ERROR, "original transfer still running", 90);
        return;
    }
    sw_txn_reject(t, "12", SW_OUT_REJECTED, "original of the reversal not found", 90);
}

void sw_xfer_orig_unknown(struct sw_txn *t, const struct db_request_id *orig)
{
    sw_txn_to_transfer(t);
    if (db_transfer_find(t->srv->db, orig, on_unknown_row, t) != 0)
        sw_txn_reject(t, "96", SW_OUT_ERROR, "database queue full", 90);
}
