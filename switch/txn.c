/* The authorization flow (docs/ARCHITECTURE.md, "switch/"), one state machine per request:
 *
 *   frame → unpack → validate → terminal lookup → MAC verify (HSM) → duplicate
 *   check (memory) → route → PIN translate (HSM) → MAC for the issuer (HSM) →
 *   write-ahead (switch.inflight: durable, and the duplicate check in
 *   PostgreSQL) → forward → issuer answer (or timeout: 91 + reversal) →
 *   response MAC (HSM) → journal commit → answer the terminal.
 *
 * sw_txn_set_state() is the only door between states. Every exit goes through
 * finish(): the response is MACed, its journal record submitted, and the
 * terminal is answered only after that record is committed (or fsync'd to the
 * spool) — and after any reversal it decided is durable. The money invariant
 * this keeps is argued in docs/ARCHITECTURE.md. */
#include "switchd.h"

#include "bizday.h"
#include "clock.h"
#include "db.h"
#include "fmt.h"
#include "hex.h"
#include "hsmclient.h"
#include "keyx.h"
#include "log.h"
#include "siphash.h"
#include "parse.h"
#include "advice.h"
#include "preauth.h"
#include "saf.h"
#include "stip.h"
#include "xfer.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARK_MAX_MS 30000 /* a reversal waits this long at most for its original's answer */

static const char *const state_names[SW_TXN_state_max] = {
    "free",       "mac_verify",  "pin_translate", "issuer_mac",   "intent",
    "dup_lookup", "issuer_wait", "resp_check",    "orig_lookup",  "parked",
    "transfer",   "card_auth",   "stand_in",      "key_download", "finish",
};

const char *sw_txn_state_name(enum sw_txn_state s)
{
    return s < SW_TXN_state_max ? state_names[s] : "?";
}

#define B(s) (1u << (s))
/* allowed[to] = the states a txn may come from. */
static const unsigned allowed[SW_TXN_state_max] = {
    [SW_TXN_FREE] = B(SW_TXN_FINISH),
    [SW_TXN_MAC_VERIFY] = B(SW_TXN_FREE),
    /* From ORIG_LOOKUP: a pre-auth's completion or increment whose pre-auth the journal had. */
    [SW_TXN_PIN_TRANSLATE] =
        B(SW_TXN_MAC_VERIFY) | B(SW_TXN_TRANSFER) | B(SW_TXN_ORIG_LOOKUP) | B(SW_TXN_CARD_AUTH),
    /* A transfer's leg (sw_txn_start_leg) starts here, from FREE. */
    [SW_TXN_ISSUER_MAC] = B(SW_TXN_FREE) | B(SW_TXN_MAC_VERIFY) | B(SW_TXN_PIN_TRANSLATE) |
                          B(SW_TXN_ORIG_LOOKUP) | B(SW_TXN_CARD_AUTH),
    [SW_TXN_INTENT] = B(SW_TXN_ISSUER_MAC),
    [SW_TXN_DUP_LOOKUP] = B(SW_TXN_INTENT) | B(SW_TXN_STAND_IN) /* stand-in: a repeat */
                          | B(SW_TXN_MAC_VERIFY), /* instances: a repeat asks the journal */
    [SW_TXN_ISSUER_WAIT] = B(SW_TXN_INTENT),
    [SW_TXN_RESP_CHECK] = B(SW_TXN_ISSUER_WAIT),
    [SW_TXN_ORIG_LOOKUP] = B(SW_TXN_MAC_VERIFY) | B(SW_TXN_PARKED),
    [SW_TXN_PARKED] = B(SW_TXN_MAC_VERIFY) | B(SW_TXN_PARKED),
    [SW_TXN_TRANSFER] =
        B(SW_TXN_MAC_VERIFY) | B(SW_TXN_PIN_TRANSLATE) | B(SW_TXN_ORIG_LOOKUP) | B(SW_TXN_PARKED),
    /* Stand-in (stip.c): the link was down (forward_checked: after the MAC, and after card
     * authentication for a chip or CVV2 request), or the issuer did not answer. */
    [SW_TXN_STAND_IN] = B(SW_TXN_MAC_VERIFY) | B(SW_TXN_CARD_AUTH) | B(SW_TXN_ISSUER_WAIT),
    [SW_TXN_FINISH] = B(SW_TXN_FREE) | B(SW_TXN_MAC_VERIFY) | B(SW_TXN_PIN_TRANSLATE) |
                      B(SW_TXN_ISSUER_MAC) | B(SW_TXN_INTENT) | B(SW_TXN_DUP_LOOKUP) |
                      B(SW_TXN_ISSUER_WAIT) | B(SW_TXN_RESP_CHECK) | B(SW_TXN_ORIG_LOOKUP) |
                      B(SW_TXN_PARKED) | B(SW_TXN_TRANSFER) | B(SW_TXN_CARD_AUTH) |
                      B(SW_TXN_STAND_IN) | B(SW_TXN_KEY_DOWNLOAD),
    [SW_TXN_CARD_AUTH] = B(SW_TXN_MAC_VERIFY) | B(SW_TXN_DUP_LOOKUP),
    [SW_TXN_KEY_DOWNLOAD] = B(SW_TXN_FREE), /* an 0800 key download (keyx.c) */
};
#undef B

_Static_assert((int)SW_OUT_APPROVED == (int)DB_OUTCOME_APPROVED &&
                   (int)SW_OUT_ERROR == (int)DB_OUTCOME_ERROR &&
                   (int)SW_OUT_TIMEOUT == (int)DB_OUTCOME_TIMEOUT,
               "sw_txn_outcome mirrors db_outcome");

static const char *const outcome_names[] = { "approved", "declined",    "rejected",
                                             "timeout",  "unavailable", "error" };

static void sw_txn_set_state(struct sw_txn *t, enum sw_txn_state to)
{
    if (to >= SW_TXN_state_max || !(allowed[to] & (1u << t->state))) {
        /* A move the machine does not have is a bug: stop before it corrupts money. */
        at_log(AT_LOG_ERROR, "txn_bad_transition", AT_STR("from", sw_txn_state_name(t->state)),
               AT_STR("to", sw_txn_state_name(to)));
        at_log_flush();
        abort();
    }
    if (at_log_enabled(AT_LOG_DEBUG))
        at_log(AT_LOG_DEBUG, "txn_state", AT_STR("from", state_names[t->state]),
               AT_STR("to", state_names[to]));
    t->state = to;
}

/* ---------------------------------------------------------------- helpers */

static void set_rc(struct sw_txn *t, const char *rc)
{
    memcpy(t->rc, rc, 2);
    t->rc[2] = '\0';
}

static void field_str(const struct iso_msg *m, int f, char *out, size_t cap)
{
    size_t n = 0;
    const uint8_t *p = iso_get(m, f, &n);
    if (!p || n >= cap)
        n = 0;
    if (n)
        memcpy(out, p, n);
    out[n] = '\0';
}

static int64_t field_amount(const struct iso_msg *m, int f, int64_t max)
{
    char buf[16];
    uint64_t v;
    field_str(m, f, buf, sizeof buf);
    return buf[0] && at_parse_u64(buf, (uint64_t)max, &v) ? (int64_t)v : -1;
}

int sw_pan_protect(struct sw_server *srv, const char *pan, size_t len, uint8_t hmac[32],
                   uint8_t sealed[DB_PAN_SEALED_MAX], uint8_t *sealed_len)
{
    int n = db_pan_hasher_mac(srv->pan_hasher, pan, len, hmac) == 0
                ? db_pan_seal(srv->pan_seal_key, pan, len, sealed, DB_PAN_SEALED_MAX)
                : -1;
    if (n <= 0)
        return -1;
    *sealed_len = (uint8_t)n;
    return 0;
}

/* The PAN's keyed hash, computed once per request. */
static bool pan_hmac(struct sw_txn *t)
{
    if (!t->has_pan_hmac && t->v.pan)
        t->has_pan_hmac = db_pan_hasher_mac(t->srv->pan_hasher, (const char *)t->v.pan,
                                            t->v.pan_len, t->pan_hmac) == 0;
    return t->has_pan_hmac;
}

static struct sw_txn *txn_alloc(struct sw_server *srv)
{
    struct sw_txn *t = srv->txn_free;
    if (t) {
        srv->txn_free = t->next_free;
    } else {
        t = malloc(sizeof *t);
        if (!t)
            return NULL;
        srv->txns_allocated++;
    }
    memset(t, 0, offsetof(struct sw_txn, frame_inline));
    t->srv = srv;
    t->issuer.link = -1;
    t->outcome = SW_OUT_ERROR;
    db_billing_none(&t->billing);
    set_rc(t, "96");
    return t;
}

/* The first used bytes of a buffer of cap bytes, never more than cap. */
static void wipe(uint8_t *p, size_t used, size_t cap)
{
    OPENSSL_cleanse(p, used < cap ? used : cap);
}

static void txn_release(struct sw_txn *t)
{
    struct sw_server *srv = t->srv;
    if (t->term)
        sw_term_txn_done(t->term);
    /* The request, its unpacked fields and what was packed from them hold the clear PAN (and
     * the PIN block, DE 103, DE 35...): wiped before the slot waits on the free list, not left
     * until the next request overwrites part of it (PCI DSS 3: no card data kept past use). */
    wipe(t->frame_inline, t->frame_len, sizeof t->frame_inline);
    wipe(t->req_arena, t->req.arena_used, sizeof t->req_arena);
    wipe(t->out_arena, t->out.arena_used, sizeof t->out_arena);
    wipe(t->packed, t->packed_len > t->resp_len ? t->packed_len : t->resp_len, sizeof t->packed);
    OPENSSL_cleanse(t->pin_block, sizeof t->pin_block);
    if (t->early_pin_state != 0) /* an early PIN translation's answer nobody took */
        srv->metrics.early_pins_discarded_total++;
    OPENSSL_cleanse(t->early_pin_resp, sizeof t->early_pin_resp);
    sw_txn_set_state(t, SW_TXN_FREE);
    t->next_free = srv->txn_free;
    srv->txn_free = t;
    srv->inflight--;
    sw_backpressure_update(srv);
}

/* ---------------------------------------------------------------- finish */

static void finish(struct sw_txn *t);
static void reject(struct sw_txn *t, const char *rc, enum sw_txn_outcome outcome,
                   const char *reason, int field);
static void handle_reversal(struct sw_txn *t);

static void log_txn(struct sw_txn *t, uint64_t total_ns)
{
    if (!at_log_enabled(AT_LOG_INFO))
        return;
    char mti[5], proc[7] = "", amount[13] = "", cur[4] = "", stan[7] = "", rrn[13] = "",
                 tid[9] = "", masked[20] = "";
    memcpy(mti, t->req.mti, 4);
    mti[4] = '\0';
    field_str(&t->req, 3, proc, sizeof proc);
    field_str(&t->req, 4, amount, sizeof amount);
    field_str(&t->req, 49, cur, sizeof cur);
    field_str(&t->req, 11, stan, sizeof stan);
    field_str(&t->req, 37, rrn, sizeof rrn);
    field_str(&t->req, 41, tid, sizeof tid);
    if (t->v.pan)
        at_mask_pan((const char *)t->v.pan, t->v.pan_len, masked);
    /* A converted request's line ends with what the cardholder is billed (DE 6/10/51); the
     * others leave those three fields out. */
    bool converted = db_billing_converted(&t->billing);
    const struct at_kv kv[] = {
        AT_STR("listener", t->term ? t->term->lst->conf->name : "transfer"),
        AT_STR("acquirer", t->acquirer),
        AT_STR("terminal", tid),
        AT_STR("mti", mti),
        AT_STR("proc", proc),
        AT_STR("amount", amount),
        AT_STR("currency", cur),
        AT_STR("pan", masked),
        AT_STR("stan", stan),
        AT_STR("rrn", rrn),
        AT_STR("issuer", t->issuer.id),
        AT_UINT("issuer_stan", t->forwarded ? t->issuer_stan : 0),
        AT_STR("rc", t->rc),
        AT_STR("auth_code", t->auth_code),
        AT_STR("outcome", outcome_names[t->outcome]),
        AT_BOOL("reversed", t->reversing),
        AT_UINT("lat_us", total_ns / 1000),
        AT_UINT("lat_mac_us", t->lat_mac_ns / 1000),
        AT_UINT("lat_pin_us", t->lat_pin_ns / 1000),
        AT_UINT("lat_issuer_us", t->lat_issuer_ns / 1000),
        AT_UINT("lat_journal_us", t->lat_journal_ns / 1000),
        AT_UINT("lat_write_ahead_us", t->lat_write_ahead_ns / 1000),
        AT_INT("billing_amount", t->billing.amount_minor),
        AT_STR("conversion_rate", t->billing.rate),
        AT_INT("billing_currency", t->billing.currency),
        AT_BOOL("stand_in", true), /* only on the lines of stand-in decisions */
    };
    struct at_kv line[sizeof kv / sizeof kv[0]];
    size_t n = sizeof kv / sizeof kv[0] - 4; /* the common fields */
    memcpy(line, kv, sizeof kv);
    if (converted)
        n += 3;
    if (t->stand_in)
        line[n++] = kv[sizeof kv / sizeof kv[0] - 1];
    at_log_kv(AT_LOG_INFO, "txn", line, n);
}

/* Reversals parked on the request whose identity is id: its answer is known
 * now, so each is handled again. */
static void unpark(struct sw_server *srv, const struct sw_req_id *id)
{
    struct sw_txn **pp = &srv->parked;
    while (*pp) {
        struct sw_txn *x = *pp;
        if (memcmp(&x->recent_id, id, sizeof *id) != 0) {
            pp = &x->parked_next;
            continue;
        }
        *pp = x->parked_next;
        x->parked_next = NULL;
        evtimer_del(&x->timer);
        handle_reversal(x);
    }
}

/* The response MAC and the journal commit are in (and any reversal decided is
 * durable): answer and free. */
static void deliver(struct sw_txn *t)
{
    struct sw_server *srv = t->srv;
    uint64_t total = at_mono_ns() - t->t_recv_ns;
    bool sent = false;

    if (t->resp_len > 0)
        sent = sw_term_send(t->term, t->has_tpdu ? t->tpdu : NULL, t->packed, t->resp_len) == 0;
    if (!sent && t->outcome == SW_OUT_APPROVED && t->v.kind != SW_KIND_REVERSAL && t->forwarded &&
        !t->leg_of) {
        /* An approval the terminal will never see: take the money back. The
         * reversal is independent of this txn, which is released below. */
        at_log(AT_LOG_WARN, "answer_undeliverable", AT_STR("rc", t->rc),
               AT_STR("action", "reversal queued"));
        sw_saf_reverse_txn(t, "error", false);
    }
    /* advice.c: a stand-in approval the terminal will never see: its advice is reversed. */
    if (!sent && t->outcome == SW_OUT_APPROVED && t->v.kind != SW_KIND_REVERSAL && t->advice_stored)
        sw_advice_withdraw(t, false);
    at_hist_record(&srv->metrics.hop[SW_HOP_TOTAL], total);
    if (t->lat_mac_ns + t->lat_pin_ns)
        at_hist_record(&srv->metrics.hop[SW_HOP_HSM], t->lat_mac_ns + t->lat_pin_ns);
    if (t->lat_issuer_ns)
        at_hist_record(&srv->metrics.hop[SW_HOP_ISSUER], t->lat_issuer_ns);
    if (t->lat_journal_ns)
        at_hist_record(&srv->metrics.hop[SW_HOP_JOURNAL], t->lat_journal_ns);
    if (t->lat_write_ahead_ns)
        at_hist_record(&srv->metrics.hop[SW_HOP_WRITE_AHEAD], t->lat_write_ahead_ns);
    char rmti[5];
    isonet_response_mti(t->req.mti, rmti);
    sw_metrics_count_txn(&srv->metrics, rmti, t->rc);
    struct sw_recent_txn *r =
        t->has_recent ? sw_recent_find(srv->recent, &t->recent_id, sw_now_ms()) : NULL;
    if (r) {
        memcpy(r->rc, t->rc, 2);
        memcpy(r->auth_code, t->auth_code, 6);
        r->state = t->reversing ? SW_RECENT_REVERSED : SW_RECENT_ANSWERED;
        r->approved = t->outcome == SW_OUT_APPROVED;
        r->forwarded = t->forwarded;
        at_strlcpy(r->issuer_id, t->issuer.id, sizeof r->issuer_id);
        char rrn[13];
        field_str(&t->req, 37, rrn, sizeof rrn);
        memcpy(r->rrn, rrn[0] ? rrn : t->rrn, 12);
        at_put_digits(r->issuer_stan, 6, t->issuer_stan);
        memcpy(r->issuer_tx_time, t->issuer_de7, 10);
        sw_fx_to_recent(r, &t->billing);
    }
    log_txn(t, total);
    if (t->leg_of)
        sw_xfer_leg_finished(t);
    if (t->xfer)
        sw_xfer_delivered(t, sent);
    if (t->has_recent && srv->parked)
        unpark(srv, &t->recent_id);
    txn_release(t);
}

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    deliver(arg);
}

/* Answers once nothing is pending. Inside finish()'s own call (which may run
 * inside a terminal's read callback) the answer goes from the loop instead. */
static void maybe_deliver(struct sw_txn *t)
{
    if (t->pending_mac || t->pending_journal || t->pending_saf || t->state != SW_TXN_FINISH ||
        t->early_mac_state == 1 /* EARLY_MAC_PENDING: its callback still holds t */ ||
        t->early_pin_state == 1 /* EARLY_PIN_PENDING: likewise */)
        return;
    if (t->in_finish) {
        event_assign(&t->timer, t->srv->base, -1, 0, deliver_cb, t);
        event_active(&t->timer, 0, 0);
        return;
    }
    deliver(t);
}

void sw_txn_reversal_stored(struct sw_txn *t, bool durable)
{
    if (sw_xfer_reversal_stored(t, durable))
        return;
    t->pending_saf = false;
    if (t->v.kind == SW_KIND_REVERSAL && t->state != SW_TXN_FINISH) {
        /* A terminal reversal is acknowledged once it cannot be lost; 96
         * otherwise (the terminal repeats it). */
        set_rc(t, durable ? "00" : "96");
        t->outcome = durable ? SW_OUT_APPROVED : SW_OUT_ERROR;
        finish(t);
        return;
    }
    maybe_deliver(t);
}

/* Turns the answer into a 96 (nothing approved, no balance). */
static void decline_96(struct sw_txn *t)
{
    t->outcome = SW_OUT_ERROR;
    set_rc(t, "96");
    t->auth_code[0] = '\0';
    t->balance_len = 0;
    if (t->xfer) { /* a transfer's: no fee charged, and the recipient's DE 6/10/51 are moot */
        t->has_xfer_fee = false;
        db_billing_none(&t->billing);
    }
}

/* An approval the terminal must not get (its MAC or its journal row failed):
 * 96 instead, and what the issuer applied is reversed. */
static void withdraw_approval(struct sw_txn *t, const char *why)
{
    at_log(AT_LOG_ERROR, "approval_withdrawn", AT_STR("reason", why),
           AT_STR("action", "96 to the terminal, reversal to the issuer"));
    decline_96(t);
    sw_saf_reverse_txn(t, "error", true);
    sw_advice_withdraw(t, true); /* advice.c: a stand-in approval's advice is reversed */
}

static void request_mac(struct sw_txn *t);

static void on_journal(void *arg, int status)
{
    struct sw_txn *t = arg;
    t->pending_journal = false;
    t->lat_journal_ns = at_mono_ns() - t->t_phase_ns;
    if (status == DB_SPOOLED)
        t->srv->metrics.journal_spooled_total++;
    bool approval = t->outcome == SW_OUT_APPROVED && t->v.kind != SW_KIND_REVERSAL;
    if (status < 0 || (status == DB_CONFLICT && approval)) {
        at_log(AT_LOG_ERROR, status < 0 ? "journal_failed" : "journal_conflict",
               AT_STR("error", db_strerror(status)), AT_STR("rc", t->rc));
        if (approval) {
            /* Never hand out an approval that is not on record. */
            withdraw_approval(t, "its journal row could not be written");
            request_mac(t);
            return;
        }
    }
    maybe_deliver(t);
}

/* The identity columns every record of this request shares. */
static void fill_identity(struct sw_txn *t, struct db_auth_record *r)
{
    db_request_date(t->de7, t->t_wall_us, r->request_date);
    at_strlcpy(r->acquirer_id, t->acquirer, sizeof r->acquirer_id);
    field_str(&t->req, 41, r->terminal_id, sizeof r->terminal_id);
    field_str(&t->req, 11, r->stan, sizeof r->stan);
    memcpy(r->transmission_time, t->de7, sizeof r->transmission_time);
    memcpy(r->mti, t->req.mti, 4);
    r->mti[4] = '\0';
    field_str(&t->req, 37, r->rrn, sizeof r->rrn);
    if (!r->rrn[0])
        at_strlcpy(r->rrn, t->rrn, sizeof r->rrn);
    field_str(&t->req, 3, r->processing_code, sizeof r->processing_code);
    r->amount_minor = field_amount(&t->req, 4, INT64_MAX);
    r->currency = (int32_t)field_amount(&t->req, 49, 999);
    r->billing = t->billing;
    if (t->v.pan) {
        at_mask_pan((const char *)t->v.pan, t->v.pan_len, r->pan_masked);
        if (pan_hmac(t)) {
            memcpy(r->pan_hmac, t->pan_hmac, 32);
            r->has_pan_hmac = true;
        }
    }
    r->created_us = t->t_wall_us;
}

static void issuer_side(struct sw_txn *t, struct db_auth_record *r)
{
    at_strlcpy(r->issuer_id, t->issuer.id, sizeof r->issuer_id);
    at_put_digits(r->issuer_stan, 6, t->issuer_stan);
    r->issuer_stan[6] = '\0';
    memcpy(r->issuer_transmission_time, t->issuer_de7, sizeof r->issuer_transmission_time);
}

/* The journal row. It names the issuer-side STAN only when the request
 * reached the issuer: a row without one is a refusal the switch answered
 * itself, which a later request of the same identity may replace. It settles
 * the request's inflight row, unless the request is being reversed (the
 * reversal's record does that, and if it is lost, recovery finds the row). */
static void fill_record(struct sw_txn *t, struct db_auth_record *r)
{
    db_auth_record_init(r);
    fill_identity(t, r);
    r->kind = DB_REC_ANSWER;
    at_strlcpy(r->issuer_id, t->issuer.id, sizeof r->issuer_id);
    if (t->forwarded || t->advice_stored) /* a stand-in approval: its advice's STAN and DE 7 */
        issuer_side(t, r);
    memcpy(r->response_code, t->rc, 3);
    at_strlcpy(r->auth_code, t->auth_code, sizeof r->auth_code);
    r->outcome = (enum db_outcome)t->outcome;
    r->settle_inflight = t->intent_sent && !t->reversing;
    if (t->stand_in) /* STIP: the row says stand-in decided (column stand_in) */
        at_strlcpy(r->reason, "stand_in", sizeof r->reason);
    if (t->orig_stan[0]) {
        memcpy(r->original_stan, t->orig_stan, 7);
        memcpy(r->original_transmission_time, t->orig_de7, 11);
    }
    r->lat_total_us = (int32_t)((at_mono_ns() - t->t_recv_ns) / 1000);
    r->lat_mac_us = t->lat_mac_ns ? (int32_t)(t->lat_mac_ns / 1000) : -1;
    r->lat_pin_us = t->lat_pin_ns ? (int32_t)(t->lat_pin_ns / 1000) : -1;
    r->lat_issuer_us = t->lat_issuer_ns ? (int32_t)(t->lat_issuer_ns / 1000) : -1;
}

/* The answer is built (and MACed): its journal record goes now — once; a
 * second MAC (an approval withdrawn after the journal refused it) skips this. */
static void answer_built(struct sw_txn *t)
{
    struct sw_server *srv = t->srv;
    if (!t->journal || t->journal_done || srv->stopping) {
        maybe_deliver(t);
        return;
    }
    struct db_auth_record rec;
    t->journal_done = true;
    t->t_phase_ns = at_mono_ns();
    fill_record(t, &rec);
    int rc = db_journal_submit(srv->journal, &rec, on_journal, t);
    if (rc == 0) {
        t->pending_journal = true;
        return;
    }
    struct db_error err;
    if (db_auth_record_check(&rec, &err) != 0)
        at_log(AT_LOG_ERROR, "journal_record_invalid", AT_STR("reason", err.message));
    else
        at_log(AT_LOG_ERROR, "journal_refused", AT_STR("error", db_strerror(rc)));
    if (t->outcome == SW_OUT_APPROVED && t->v.kind != SW_KIND_REVERSAL) {
        withdraw_approval(t, "its journal row could not be written");
        request_mac(t);
        return;
    }
    maybe_deliver(t);
}

/* The response MAC could not be had. An approval the terminal cannot
 * authenticate is one it will not honour: it becomes a 96 and the money goes
 * back; the 96 is MACed once more. Anything else goes without a valid MAC
 * rather than not at all: the terminal treats it as no answer and reverses. */
static void mac_failed(struct sw_txn *t, const char *why)
{
    at_log(AT_LOG_ERROR, "response_mac_failed", AT_STR("reason", why), AT_STR("rc", t->rc));
    if (t->outcome == SW_OUT_APPROVED && t->v.kind != SW_KIND_REVERSAL) {
        withdraw_approval(t, "its response MAC could not be computed");
        if (!t->mac_retried) {
            t->mac_retried = true;
            request_mac(t);
            return;
        }
    }
    answer_built(t);
}

static void on_resp_mac(void *arg, int status, const char *resp, size_t len)
{
    struct sw_txn *t = arg;
    uint8_t mac[ISONET_MAC_LEN];
    t->pending_mac = false;
    if (status != HSM_CLIENT_OK || hsm_client_parse_mac8(resp, len, mac) != 0) {
        mac_failed(t, status != HSM_CLIENT_OK ? "HSM unavailable" : "HSM refused or malformed");
        return;
    }
    isonet_mac_patch(t->packed, &t->mac_at, mac);
    answer_built(t);
}

/* Builds the terminal's response into t->packed (MAC placeholder patched when
 * the HSM answers). Fields echoed: the request's identity and amounts; never
 * the PIN, track or chip data. Returns the MAC field (0 without a TAK) or -1. */
static int build_response(struct sw_txn *t)
{
    static const int echo[] = { 2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70, 90 };
    const struct iso_dialect *d = t->term->lst->dialect;
    struct iso_msg *o = &t->out;
    struct iso_err e;
    char mti[5];

    iso_msg_init(o, t->out_arena, sizeof t->out_arena);
    isonet_response_mti(t->req.mti, mti);
    if (iso_set_mti(o, mti) != 0)
        return -1;
    for (size_t i = 0; i < sizeof echo / sizeof echo[0]; i++) {
        size_t n;
        const uint8_t *p = iso_get(&t->req, echo[i], &n);
        if (p && iso_set(o, echo[i], p, n) != 0)
            return -1;
    }
    if (!iso_has(o, 37) && t->rrn[0] && iso_set(o, 37, t->rrn, 12) != 0)
        return -1;
    if (iso_set(o, 39, t->rc, 2) != 0)
        return -1;
    if (t->auth_code[0] && iso_set(o, 38, t->auth_code, strlen(t->auth_code)) != 0)
        return -1;
    if (t->balance_len && iso_set(o, 54, t->balance, t->balance_len) != 0)
        return -1;
    /* A transfer's fee (DE 28, the sender's currency) and the leg that failed (DE 44). */
    if (t->has_xfer_fee) {
        char fee[10] = "D";
        at_put_digits(fee + 1, 8, (uint64_t)t->xfer_fee);
        if (iso_set_copy(o, 28, fee, 9) != 0)
            return -1;
    }
    if (t->resp44[0] && iso_set(o, 44, t->resp44, strlen(t->resp44)) != 0)
        return -1;
    if (t->resp48[0] && iso_set(o, 48, t->resp48, strlen(t->resp48)) != 0) /* keyx.c */
        return -1;
    if (sw_card_answer_fields(t, o) != 0) /* DE 55 tag 91, the ARPC (emv.c) */
        return -1;
    /* The conversion the issuer was asked for goes back to the terminal: what the cardholder
     * is billed, at which rate (docs/acquirer-interface.md). */
    if (sw_fx_set_fields(o, &t->billing) != 0)
        return -1;
    if (mti[1] != '8') {
        /* DE 15: the business day of the request's receipt — the journal row's created_at, which
         * atlas-settle closes days by — or, for a repeat answered again, of its original's. */
        char de15[5];
        at_settlement_date((int64_t)(t->t_settle_us ? t->t_settle_us : t->t_wall_us),
                           t->srv->conf.cutover_min, de15);
        if (iso_set_copy(o, 15, de15, 4) != 0)
            return -1;
    }
    bool mac = t->terminal.tak[0] != '\0';
    int rc = mac ? isonet_pack_mac(d, o, t->packed, sizeof t->packed, &t->resp_len, &t->mac_at, &e)
                 : iso_pack(d, o, t->packed, sizeof t->packed, &t->resp_len, &e);
    if (rc != 0) {
        at_log(AT_LOG_ERROR, "response_pack_failed", AT_INT("field", e.field),
               AT_STR("reason", e.reason));
        return -1;
    }
    return mac ? t->mac_at.field : 0;
}

/* ---- The response MAC pipelined with the issuer answer's M8 (docs/switchd.md "HSM commands")
 * The M8 that verifies the issuer's answer and the M6 of the terminal's response built from
 * that answer do not depend on each other: both are submitted in the same loop turn, so they
 * leave in one write to the HSM and come back in one read — one round trip instead of two.
 * The early MAC is used only when the issuer's MAC verified and the response's deciding fields
 * (DE 39, DE 38, DE 54) are what it was built from; otherwise (an answer that is not authentic
 * becomes a 96, a reversal that could not be queued makes one...) it is discarded, never sent,
 * and the response is built and MACed again. The txn is not released while it is pending. */
enum early_mac { EARLY_MAC_NONE, EARLY_MAC_PENDING, EARLY_MAC_DONE, EARLY_MAC_FAILED };
_Static_assert(EARLY_MAC_PENDING == 1, "maybe_deliver tests the pending state by value");

static void on_early_mac(void *arg, int status, const char *resp, size_t len)
{
    struct sw_txn *t = arg;
    if (t->early_mac_wanted) { /* request_mac took it: go on as its own M6 would */
        t->early_mac_wanted = false;
        t->early_mac_state = EARLY_MAC_NONE;
        on_resp_mac(t, status, resp, len);
        return;
    }
    if (t->early_mac_discarded) { /* the response was rebuilt and MACed again */
        t->early_mac_state = EARLY_MAC_NONE;
        maybe_deliver(t);
        return;
    }
    bool ok = status == HSM_CLIENT_OK && hsm_client_parse_mac8(resp, len, t->early_mac) == 0;
    t->early_mac_state = ok ? EARLY_MAC_DONE : EARLY_MAC_FAILED;
    maybe_deliver(t); /* nothing when t is still going (the usual case) */
}

/* A fingerprint of the bytes a response's MAC covers: the early MAC is used only for a response
 * that, built again when the answer is final, has the same bytes. */
static uint64_t response_fp(const uint8_t *p, size_t n)
{
    static const uint8_t key[16] = { 0 }; /* not a secret: it tells our own two builds apart */
    return at_siphash(key, p, n);
}

/* Called once the issuer answer's M8 is submitted: builds the terminal's response as that
 * answer makes it and submits its M6 right behind the M8. Not for what finish() completes
 * differently: a chip answer (its ARPC comes first), transfers and their legs, no TAK. */
static void early_response_mac(struct sw_txn *t)
{
    char cmd[SW_TXN_FRAME + 128];
    if (!t->term || t->no_answer || t->xfer || t->leg_of || t->card.arqc_ok ||
        !t->terminal.tak[0] || t->srv->stopping)
        return;
    if (build_response(t) <= 0)
        return; /* request_mac builds it again and handles the failure */
    int n = hsm_client_build_mac(cmd, sizeof cmd, "003", t->terminal.tak, t->packed, t->mac_at.off,
                                 NULL);
    if (n <= 0 || hsm_client_submit(t->srv->hsm, cmd, (size_t)n, on_early_mac, t) != 0)
        return;
    t->early_mac_state = EARLY_MAC_PENDING;
    t->early_len = t->mac_at.off;
    t->early_fp = response_fp(t->packed, t->mac_at.off);
}

/* request_mac's shortcut: true when the early MAC is this response's (patched in now, or by
 * on_early_mac when it comes): the response is built again from the final answer and must be
 * the bytes the early MAC was computed over. Only once: a second request_mac (an approval
 * withdrawn) builds its response again. */
static bool early_mac_take(struct sw_txn *t)
{
    bool usable = t->early_mac_usable;
    t->early_mac_usable = false;
    if (t->early_mac_state == EARLY_MAC_NONE)
        return false;
    if (!usable || t->early_mac_state == EARLY_MAC_FAILED || t->no_answer || t->srv->stopping ||
        build_response(t) <= 0 || t->mac_at.off != t->early_len ||
        response_fp(t->packed, t->mac_at.off) != t->early_fp) {
        t->srv->metrics.early_macs_discarded_total++;
        if (t->early_mac_state == EARLY_MAC_PENDING)
            t->early_mac_discarded = true;
        else
            t->early_mac_state = EARLY_MAC_NONE;
        return false;
    }
    t->srv->metrics.early_macs_used_total++;
    if (t->early_mac_state == EARLY_MAC_PENDING) {
        t->early_mac_wanted = true;
        t->pending_mac = true;
        return true;
    }
    t->early_mac_state = EARLY_MAC_NONE;
    isonet_mac_patch(t->packed, &t->mac_at, t->early_mac); /* packed holds its response */
    OPENSSL_cleanse(t->early_mac, sizeof t->early_mac);
    answer_built(t);
    return true;
}

/* Builds the response from the txn's current answer and asks the HSM for its
 * MAC; answer_built() follows (now, or from the HSM's callback). */
static void request_mac(struct sw_txn *t)
{
    char cmd[SW_TXN_FRAME + 128];
    if (early_mac_take(t))
        return;
    int mf = t->no_answer ? -1 : build_response(t);
    if (mf < 0)
        t->resp_len = 0;
    if (mf <= 0 || t->srv->stopping) {
        answer_built(t);
        return;
    }
    int n = hsm_client_build_mac(cmd, sizeof cmd, "003", t->terminal.tak, t->packed, t->mac_at.off,
                                 NULL);
    if (n > 0 && hsm_client_submit(t->srv->hsm, cmd, (size_t)n, on_resp_mac, t) == 0) {
        t->pending_mac = true;
        return;
    }
    mac_failed(t, "HSM queue full");
}

/* Every path ends here: the response gets its MAC, then its journal record,
 * and the terminal is answered once both (and any reversal) are done. */
static void finish(struct sw_txn *t)
{
    sw_txn_set_state(t, SW_TXN_FINISH);
    t->in_finish = true;
    if (t->issuer_stan && t->link && t->waiting_link) {
        sw_link_forget(t->link, t->issuer_stan);
        t->waiting_link = false;
    }
    /* A verified ARQC gets its ARPC, made with the answer's code, first (emv.c): the response
     * is built when it is in (sw_txn_card_arpc_done). */
    if (sw_card_arpc_start(t))
        t->pending_mac = true;
    else
        request_mac(t);
    t->in_finish = false;
}

static void reject(struct sw_txn *t, const char *rc, enum sw_txn_outcome outcome,
                   const char *reason, int field)
{
    char tid[9] = "", stan[7] = "";
    set_rc(t, rc);
    t->outcome = outcome;
    field_str(&t->req, 41, tid, sizeof tid);
    field_str(&t->req, 11, stan, sizeof stan);
    at_log(AT_LOG_INFO, "txn_refused", AT_STRN("mti", t->req.mti, 4), AT_STR("terminal", tid),
           AT_STR("stan", stan), AT_STR("rc", rc), AT_STR("reason", reason),
           AT_INT("field", field));
    finish(t);
}

/* ---------------------------------------------------------------- duplicates */

/* t has the identity of orig, an earlier request. A repeat (xx01) of an
 * answered one gets that answer again — same DE 38, no second trip to the
 * issuer — unless the switch reversed an approval of it since: then 96.
 * Anything else (the original still in flight, or the same MTI again) is a
 * duplicate transmission: 94. Its journal row stands; none is written for t. */
static void answer_known(struct sw_txn *t, const struct sw_recent_txn *orig)
{
    t->journal = false;
    if (orig->state == SW_RECENT_IN_FLIGHT) {
        reject(t, "94", SW_OUT_REJECTED, "duplicate of a request in flight", 11);
        return;
    }
    if (t->req.mti[3] != '1') {
        reject(t, "94", SW_OUT_REJECTED, "duplicate transmission", 11);
        return;
    }
    if (orig->state == SW_RECENT_REVERSED && orig->approved) {
        decline_96(t);
    } else {
        memcpy(t->rc, orig->rc, 2);
        t->rc[2] = '\0';
        memcpy(t->auth_code, orig->auth_code, 6);
        t->auth_code[6] = '\0';
        t->outcome = orig->approved ? SW_OUT_APPROVED : SW_OUT_DECLINED;
        sw_fx_from_recent(orig, &t->billing); /* the same DE 6/10/51 as the first answer */
        t->t_settle_us = orig->received_us > 0 ? (uint64_t)orig->received_us : 0;
    }
    at_log(AT_LOG_INFO, "repeat_answered", AT_STR("rc", t->rc),
           AT_BOOL("original_reversed", orig->state == SW_RECENT_REVERSED));
    /* A chip repeat's own ARQC verified gives its answer an ARPC for the stored code (emv.c). */
    if (sw_card_repeat_wanted(t)) {
        sw_txn_set_state(t, SW_TXN_CARD_AUTH);
        sw_card_repeat_start(t, t->srv->ref);
        return;
    }
    finish(t);
}

/* The identity of t's request (or, with stan/de7, of its original) as db/ keys it. */
static void db_id_of(struct sw_txn *t, const char *stan, const char *de7, struct db_request_id *id)
{
    memset(id, 0, sizeof *id);
    db_request_date(de7, t->t_wall_us, id->request_date);
    at_strlcpy(id->acquirer_id, t->acquirer, sizeof id->acquirer_id);
    field_str(&t->req, 41, id->terminal_id, sizeof id->terminal_id);
    at_strlcpy(id->stan, stan, sizeof id->stan);
    at_strlcpy(id->transmission_time, de7, sizeof id->transmission_time);
    memcpy(id->mti, t->req.mti, 4);
}

/* A cache entry from the journal row of an original: everything a repeat's
 * answer and a reversal towards the issuer need. */
static void orig_from_db(const struct db_original *d, struct sw_recent_txn *o)
{
    memset(o, 0, sizeof *o);
    at_strlcpy(o->id.acquirer, d->id.acquirer_id, sizeof o->id.acquirer);
    memcpy(o->id.terminal, d->id.terminal_id, 8);
    memcpy(o->id.stan, d->id.stan, 6);
    memcpy(o->id.tx_time, d->id.transmission_time, 10);
    o->id.mclass = d->id.mti[1];
    memcpy(o->mti, d->id.mti, 4);
    at_strlcpy(o->issuer_id, d->issuer_id, sizeof o->issuer_id);
    memcpy(o->proc_code, d->processing_code, strnlen(d->processing_code, 6));
    memcpy(o->rc, d->response_code, strnlen(d->response_code, 2));
    memcpy(o->auth_code, d->auth_code, strnlen(d->auth_code, 6));
    memcpy(o->rrn, d->rrn, strnlen(d->rrn, 12));
    memcpy(o->issuer_stan, d->issuer_stan, strnlen(d->issuer_stan, 6));
    memcpy(o->issuer_tx_time, d->issuer_transmission_time,
           strnlen(d->issuer_transmission_time, 10));
    o->amount_minor = d->amount_minor > 0 ? d->amount_minor : 0;
    o->currency = d->currency > 0 ? (uint16_t)d->currency : 0;
    if (d->has_pan_hmac)
        memcpy(o->pan_tag, d->pan_hmac, sizeof o->pan_tag);
    sw_fx_to_recent(o, &d->billing);
    o->received_us = d->created_us;
    o->approved = strcmp(d->response_code, "00") == 0;
    o->forwarded = d->issuer_stan[0] != '\0';
    o->state = d->reversed ? SW_RECENT_REVERSED : SW_RECENT_ANSWERED;
}

/* The journal says what holds the identity the write-ahead found taken. */
static void on_dup_lookup(void *arg, const struct db_error *err, const struct db_original *d,
                          bool in_flight)
{
    struct sw_txn *t = arg;
    (void)in_flight;
    if (err->code != 0) {
        reject(t, "96", SW_OUT_ERROR, "journal lookup of a duplicate failed", 11);
        return;
    }
    struct sw_recent_txn orig;
    memset(&orig, 0, sizeof orig);
    if (d)
        orig_from_db(d, &orig);
    /* No row, or a refusal's row: what holds the identity is a request in
     * flight (here or elsewhere), or one a stopped instance left. */
    if (!orig.forwarded)
        orig.state = SW_RECENT_IN_FLIGHT;
    /* The cache learns the original, so that the next copy — or a reversal —
     * finds it in memory. */
    struct sw_recent_txn *e = sw_recent_find(t->srv->recent, &t->recent_id, sw_now_ms());
    if (e && orig.forwarded) {
        uint64_t expires = e->expires_at_ms;
        struct sw_req_id id = e->id;
        *e = orig;
        e->id = id;
        e->expires_at_ms = expires;
    }
    t->has_recent = false; /* the entry describes the original, not this copy */
    answer_known(t, &orig);
}

static void dup_lookup(struct sw_txn *t)
{
    char stan[7], cls[4];
    struct db_request_id id;
    field_str(&t->req, 11, stan, sizeof stan);
    db_id_of(t, stan, t->de7, &id);
    memcpy(cls, t->req.mti, 3);
    cls[3] = '\0';
    sw_txn_set_state(t, SW_TXN_DUP_LOOKUP);
    t->journal = false;
    if (db_original_lookup(t->srv->db, &id, cls, on_dup_lookup, t) != 0)
        reject(t, "96", SW_OUT_ERROR, "database queue full", 11);
}

/* While PostgreSQL cannot check an identity, the duplicate table can vouch for
 * a request first seen after its horizon (everything seen since is in it): a
 * DE 7 later than the horizon by more than a terminal clock may be off. */
static bool identity_vouched(const struct sw_txn *t)
{
    uint64_t de7_ms, now_wall = at_wall_us() / 1000, now_mono = sw_now_ms();
    if (!sw_de7_wall_ms((const uint8_t *)t->de7, 10, now_wall, &de7_ms))
        return false;
    uint64_t horizon_wall = sw_recent_horizon_ms(t->srv->recent) + (now_wall - now_mono);
    return de7_ms >= horizon_wall + t->srv->conf.clock_skew_s * 1000;
}

/* ---------------------------------------------------------------- issuer */

static void on_timeout(evutil_socket_t fd, short what, void *arg);

/* Sends t->packed to the issuer and arms the timeout. */
void sw_txn_forward(struct sw_txn *t)
{
    struct sw_link *l = t->link;
    sw_txn_set_state(t, SW_TXN_ISSUER_WAIT);
    if (sw_link_forward(l, t, t->issuer_stan, t->packed, t->packed_len) != 0) {
        reject(t, "91", SW_OUT_UNAVAILABLE, "issuer link not up", 0);
        return;
    }
    t->forwarded = true;
    t->waiting_link = true;
    t->t_phase_ns = at_mono_ns();
    evtimer_assign(&t->timer, t->srv->base, on_timeout, t);
    struct timeval tmo;
    evtimer_add(&t->timer, sw_stip_timeout(t, &tmo)); /* per MTI / processing code */
}

/* The write-ahead record's fate decides whether the request may go. */
static void on_intent(void *arg, int status)
{
    struct sw_txn *t = arg;
    t->lat_write_ahead_ns = at_mono_ns() - t->t_phase_ns;
    switch (status) {
    case DB_OK:
        sw_txn_forward(t);
        return;
    case DB_SPOOLED:
        /* Durable, but PostgreSQL could not check the identity. */
        if (identity_vouched(t)) {
            sw_txn_forward(t);
            return;
        }
        reject(t, "96", SW_OUT_ERROR,
               "the request's identity cannot be checked while the database is unreachable", 7);
        return;
    case DB_CONFLICT:
        dup_lookup(t);
        return;
    default:
        at_log(AT_LOG_ERROR, "write_ahead_failed", AT_STR("error", db_strerror(status)));
        reject(t, "96", SW_OUT_ERROR, "the write-ahead record is not durable", 0);
        return;
    }
}

/* Write-ahead: what the issuer will see and what its reversal needs goes to
 * switch.inflight, durably, before the request leaves. */
static void write_ahead(struct sw_txn *t)
{
    struct sw_server *srv = t->srv;
    struct db_auth_record rec;
    db_auth_record_init(&rec);
    fill_identity(t, &rec);
    rec.kind = DB_REC_INTENT;
    issuer_side(t, &rec);
    if (rec.amount_minor < 0) /* a balance inquiry moves nothing */
        rec.amount_minor = 0;
    if (rec.currency < 0)
        rec.currency = 0;
    sw_txn_set_state(t, SW_TXN_INTENT);
    int sealed = rec.has_pan_hmac ? db_pan_seal(srv->pan_seal_key, (const char *)t->v.pan,
                                                t->v.pan_len, rec.pan_sealed, DB_PAN_SEALED_MAX)
                                  : -1;
    if (sealed <= 0) {
        reject(t, "96", SW_OUT_ERROR, "the PAN cannot be sealed for the write-ahead record", 2);
        return;
    }
    rec.pan_sealed_len = (uint8_t)sealed;
    t->t_phase_ns = at_mono_ns();
    int rc = db_journal_submit(srv->journal, &rec, on_intent, t);
    if (rc != 0) {
        reject(t, "96", SW_OUT_ERROR,
               rc == DB_E_FULL ? "journal queue full" : "the write-ahead record was refused", 0);
        return;
    }
    t->intent_sent = true;
}

static void on_issuer_mac(void *arg, int status, const char *resp, size_t len)
{
    struct sw_txn *t = arg;
    uint8_t mac[ISONET_MAC_LEN];
    if (status != HSM_CLIENT_OK || hsm_client_parse_mac8(resp, len, mac) != 0) {
        reject(t, "96", SW_OUT_ERROR, "HSM could not MAC the issuer request", 0);
        return;
    }
    isonet_mac_patch(t->packed, &t->mac_at, mac);
    write_ahead(t);
}

static void gen_rrn(struct sw_txn *t)
{
    /* DE 37 for a request that came without one: DDhh of the terminal's DE 7, the issuer STAN
     * mod 97 (derived from the STAN: it adds no uniqueness) and the issuer STAN. Not unique
     * per link per day: two RRNs of one link differ only while their issuer STANs or their
     * DE 7 hours do, and a link's STAN counter wraps after 999,999 messages (echoes and
     * sign-ons take STANs too) and starts at a clock-derived point after a restart; two links
     * or two switchd instances can hand out the same STAN in the same hour. Nothing keys on
     * it: a request's identity is (acquirer, DE 41, DE 11, DE 7); the RRN is for operators'
     * look-ups (an index, not a unique one) and the issuer's records. */
    snprintf(t->rrn, sizeof t->rrn, "%.4s%02u%06u", t->de7 + 2, (unsigned)(t->issuer_stan % 97),
             t->issuer_stan);
}

/* Builds the request for the issuer in t->out / t->packed. */
static int build_issuer_request(struct sw_txn *t)
{
    static const int drop[] = { 6, 10, 51, 52, 53, 62, 64, 110, 128 };
    struct iso_msg *o = &t->out;
    const struct iso_dialect *d = t->link->dialect;
    struct iso_err e;
    char de11[7];

    iso_msg_init(o, t->out_arena, sizeof t->out_arena);
    iso_msg_copy(o, &t->req);
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        iso_unset(o, drop[i]);
    o->flags = 0; /* bitmaps follow the fields that are left (no empty secondary) */
    at_put_digits(de11, 6, t->issuer_stan);
    de11[6] = '\0';
    if (iso_set(o, 7, t->issuer_de7, 10) != 0 || iso_set_copy(o, 11, de11, 6) != 0 ||
        iso_set(o, 32, t->acquirer, strlen(t->acquirer)) != 0)
        return -1;
    if (!iso_has(o, 37) && iso_set(o, 37, t->rrn, 12) != 0)
        return -1;
    if (t->has_pin_block && iso_set(o, 52, t->pin_block, 8) != 0)
        return -1;
    if (sw_fx_set_fields(o, &t->billing) != 0)
        return -1;
    /* A completion or an increment names the pre-auth as the issuer saw it (preauth.c). */
    if (t->has_issuer_de90 && isonet_de90_set(o, &t->issuer_de90) != 0)
        return -1;
    if (sw_card_issuer_fields(t, o) != 0) /* the CVV2 replaced by its result (emv.c) */
        return -1;
    bool mac = t->issuer.zak[0] != '\0';
    int rc =
        mac ? isonet_pack_mac(d, o, t->packed, sizeof t->packed, &t->packed_len, &t->mac_at, &e)
            : iso_pack(d, o, t->packed, sizeof t->packed, &t->packed_len, &e);
    if (rc != 0) {
        at_log(AT_LOG_ERROR, "issuer_pack_failed", AT_INT("field", e.field),
               AT_STR("reason", e.reason));
        return -1;
    }
    return mac ? t->mac_at.field : 0;
}

static void to_issuer(struct sw_txn *t)
{
    struct sw_server *srv = t->srv;
    char cmd[SW_TXN_FRAME + 128];
    t->issuer_stan = sw_link_stan(t->link);
    sw_de7_now(t->issuer_de7);
    if (!iso_has(&t->req, 37))
        gen_rrn(t);
    int mf = build_issuer_request(t);
    if (mf < 0) {
        reject(t, "96", SW_OUT_ERROR, "cannot build the issuer request", 0);
        return;
    }
    sw_txn_set_state(t, SW_TXN_ISSUER_MAC);
    if (mf == 0) {
        write_ahead(t);
        return;
    }
    int n =
        hsm_client_build_mac(cmd, sizeof cmd, "008", t->issuer.zak, t->packed, t->mac_at.off, NULL);
    if (n < 0 || hsm_client_submit(srv->hsm, cmd, (size_t)n, on_issuer_mac, t) != 0)
        reject(t, "96", SW_OUT_ERROR, "HSM queue full", 0);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct sw_txn *t = arg;
    t->srv->metrics.issuer_timeouts_total++;
    t->lat_issuer_ns = at_mono_ns() - t->t_phase_ns;
    sw_link_forget(t->link, t->issuer_stan);
    t->waiting_link = false;
    bool stip = sw_stip_eligible(t);
    at_log(AT_LOG_WARN, "issuer_timeout", AT_STR("issuer", t->issuer.id),
           AT_UINT("issuer_stan", t->issuer_stan),
           AT_STR("action", stip ? "stand-in + reversal" : "91 + reversal"));
    sw_saf_reverse_txn(t, "timeout", true);
    set_rc(t, "91");
    t->outcome = SW_OUT_TIMEOUT;
    if (stip) { /* STIP hook: the forwarded request keeps its reversal; stand-in decides */
        sw_stip_decide(t, SW_STIP_TIMEOUT);
        return;
    }
    finish(t);
}

void sw_txn_issuer_lost(struct sw_txn *t)
{
    evtimer_del(&t->timer);
    t->waiting_link = false; /* the link already dropped its table */
    t->lat_issuer_ns = at_mono_ns() - t->t_phase_ns;
    bool stip = sw_stip_eligible(t);
    at_log(AT_LOG_WARN, "issuer_link_lost", AT_STR("issuer", t->issuer.id),
           AT_UINT("issuer_stan", t->issuer_stan),
           AT_STR("action", stip ? "stand-in + reversal" : "91 + reversal"));
    sw_saf_reverse_txn(t, "timeout", true);
    set_rc(t, "91");
    t->outcome = SW_OUT_UNAVAILABLE;
    if (stip) { /* STIP hook, as on_timeout */
        sw_stip_decide(t, SW_STIP_LINK_LOST);
        return;
    }
    finish(t);
}

static void apply_issuer_answer(struct sw_txn *t)
{
    if (memcmp(t->rc, "00", 2) == 0) {
        t->outcome = SW_OUT_APPROVED;
    } else {
        t->outcome = SW_OUT_DECLINED;
        /* 91 and 96 from the issuer say its own outcome may be unknown (a
         * commit it could not confirm): reversing what it did not apply is
         * harmless, leaving what it did apply is not. */
        if (memcmp(t->rc, "91", 2) == 0 || memcmp(t->rc, "96", 2) == 0)
            sw_saf_reverse_txn(t, "error", true);
    }
    finish(t);
}

/* The issuer's answer is not authentic: its MAC does not verify (hsm_error, the HSM's code), or
 * could not be checked (-1, why). An answer we cannot authenticate may hide an approval: reverse
 * it. */
static void issuer_answer_unauthentic(struct sw_txn *t, int hsm_error, const char *why)
{
    at_log(AT_LOG_ERROR, "issuer_mac_invalid", AT_STR("issuer", t->issuer.id),
           AT_UINT("issuer_stan", t->issuer_stan), AT_INT("hsm_error", hsm_error),
           AT_STR("reason", why));
    sw_saf_reverse_txn(t, "error", true);
    decline_96(t);
    finish(t);
}

static void on_issuer_resp_mac(void *arg, int status, const char *resp, size_t len)
{
    struct sw_txn *t = arg;
    t->lat_mac_ns += at_mono_ns() - t->t_hsm_ns;
    int e = status == HSM_CLIENT_OK ? hsm_client_resp_error("M8", resp, len) : -1;
    if (e == 0) {
        t->early_mac_usable = true; /* authentic: the response MAC asked with the M8 may do */
        apply_issuer_answer(t);
        return;
    }
    issuer_answer_unauthentic(t, e, status == HSM_CLIENT_OK ? "MAC refused" : "HSM unavailable");
}

bool sw_txn_answer_class_ok(const struct sw_txn *t, const char mti[4])
{
    char want[5];
    isonet_response_mti(t->req.mti, want);
    return memcmp(mti, want, 3) == 0;
}

void sw_txn_issuer_answer(struct sw_txn *t, const struct iso_msg *m, const uint8_t *raw,
                          size_t raw_len)
{
    char cmd[SW_TXN_FRAME + 128];
    size_t n;
    const uint8_t *p;

    evtimer_del(&t->timer);
    t->waiting_link = false;
    t->lat_issuer_ns = at_mono_ns() - t->t_phase_ns;
    char want[5];
    isonet_response_mti(t->req.mti, want);
    if (memcmp(m->mti, want, 3) != 0) {
        at_log(AT_LOG_ERROR, "issuer_wrong_mti", AT_STR("issuer", t->issuer.id),
               AT_UINT("issuer_stan", t->issuer_stan));
        sw_saf_reverse_txn(t, "error", true);
        reject(t, "96", SW_OUT_ERROR, "issuer answered with another message class", 0);
        return;
    }
    p = iso_get(m, 39, &n);
    set_rc(t, p && n == 2 ? (const char *)p : "96");
    field_str(m, 38, t->auth_code, sizeof t->auth_code);
    p = iso_get(m, 54, &n);
    t->balance_len = p && n < sizeof t->balance ? n : 0;
    if (t->balance_len)
        memcpy(t->balance, p, n);

    sw_txn_set_state(t, SW_TXN_RESP_CHECK);
    if (!t->issuer.zak[0]) {
        apply_issuer_answer(t);
        return;
    }
    /* Verify the issuer's MAC over the answer as received: repack is not
     * byte-identical in general, so MAC the original bytes. */
    struct isonet_mac at;
    if (!raw || isonet_mac_locate(t->link->dialect, m, raw_len, &at) != 0) {
        issuer_answer_unauthentic(t, -1, "no MAC as the last field");
        return;
    }
    int len = hsm_client_build_mac(cmd, sizeof cmd, "008", t->issuer.zak, raw, at.off, at.value);
    t->t_hsm_ns = at_mono_ns();
    if (len < 0 || hsm_client_submit(t->srv->hsm, cmd, (size_t)len, on_issuer_resp_mac, t) != 0) {
        issuer_answer_unauthentic(t, -1, "HSM queue full");
        return;
    }
    early_response_mac(t); /* its M6 leaves in the same write as the M8 */
}

/* ---------------------------------------------------------------- request */

/* The PIN translation command of a terminal's key scheme (CA, G0, X0). */
static const char *pin_command(enum sw_key_scheme scheme)
{
    switch (scheme) {
    case SW_TERM_DUKPT_TDES:
        return "G0";
    case SW_TERM_DUKPT_AES:
        return "X0";
    default:
        return "CA";
    }
}

static void on_pin(void *arg, int status, const char *resp, size_t len)
{
    struct sw_txn *t = arg;
    const char *cmd = pin_command(t->terminal.scheme);
    char block[17], fmt[3];
    t->lat_pin_ns = at_mono_ns() - t->t_hsm_ns;
    if (status != HSM_CLIENT_OK) {
        reject(t, "96", SW_OUT_ERROR, "HSM unavailable for PIN translation", 52);
        return;
    }
    int e = hsm_client_resp_error(cmd, resp, len);
    if (e != 0) {
        /* 20 (PIN block invalid) or 24 (PIN length): the terminal's PIN block
         * is wrong, which the cardholder sees as a wrong PIN. Key errors are
         * ours: 96, like an answer that is not CB/G1/X1 at all (-1). */
        bool pin_bad = e == 20 || e == 24;
        at_log(AT_LOG_WARN, "pin_translate_failed", AT_INT("hsm_error", e));
        reject(t, pin_bad ? "55" : "96", pin_bad ? SW_OUT_REJECTED : SW_OUT_ERROR,
               "PIN translation refused", 52);
        return;
    }
    if (hsm_client_parse_pin(cmd, resp, len, block, fmt) < 0 ||
        at_hex_decode(block, 16, t->pin_block, 8) != 8) {
        reject(t, "96", SW_OUT_ERROR, "HSM returned a malformed PIN block", 52);
        return;
    }
    t->has_pin_block = true;
    if (t->xfer) {
        sw_xfer_pin_ready(t);
        return;
    }
    to_issuer(t);
}

/* t's PIN translation command to zpk into cmd[cap] — TPK → CA, DUKPT-TDES → G0, DUKPT-AES → X0
 * (hsm-sim extension): its length, -1 when the PIN data is incomplete for the terminal's key
 * scheme, -2 when the PAN is too short for a PIN block. */
static int build_pin_cmd(const struct sw_txn *t, const char *zpk, char *cmd, size_t cap)
{
    char pan[20], acct[13], blk[33], ksn[25];
    size_t n;
    const uint8_t *p;
    int len = -1;

    memcpy(pan, t->v.pan, t->v.pan_len);
    pan[t->v.pan_len] = '\0';
    if (hsm_client_account12(pan, acct) != 0)
        return -2;
    switch (t->terminal.scheme) {
    case SW_TERM_TPK:
        p = iso_get(&t->req, 52, &n);
        if (!p || n != 8 || !t->terminal.tpk[0])
            break;
        at_hex_encode(p, 8, blk);
        len = hsm_client_build_ca(cmd, cap, t->terminal.tpk, zpk, blk, "01", "01", acct);
        break;
    case SW_TERM_DUKPT_TDES:
        p = iso_get(&t->req, 52, &n);
        field_str(&t->req, 62, ksn, sizeof ksn);
        if (!p || n != 8 || strlen(ksn) != 20)
            break;
        at_hex_encode(p, 8, blk);
        len = hsm_client_build_dukpt(cmd, cap, true, t->terminal.bdk, zpk, ksn, blk, "01", acct);
        break;
    case SW_TERM_DUKPT_AES:
        field_str(&t->req, 110, blk, sizeof blk);
        field_str(&t->req, 62, ksn, sizeof ksn);
        if (strlen(blk) != 32 || strlen(ksn) != 24)
            break;
        len = hsm_client_build_x0(cmd, cap, t->terminal.bdk, zpk, ksn, blk, "01", pan);
        break;
    }
    return len < 0 ? -1 : len;
}

/* ---- The PIN translation pipelined with the request's M8 (docs/switchd.md "HSM commands")
 * The M8 that verifies the terminal's MAC and the translation of its PIN block to the ZPK of
 * the issuer its PAN routes to do not depend on each other: both are submitted in the same
 * loop turn (one write to the HSM, one read back). The answer is kept in the txn and used
 * only when translate_pin, reached after the MAC verified and every check passed, wants the
 * translation to that same ZPK; otherwise it is wiped unused. Nothing of it leaves the switch
 * unless the request is authentic. The txn is not released while it is pending. */
enum early_pin { EARLY_PIN_NONE, EARLY_PIN_PENDING, EARLY_PIN_DONE };
_Static_assert(EARLY_PIN_PENDING == 1, "maybe_deliver tests the pending state by value");

static void on_early_pin(void *arg, int status, const char *resp, size_t len)
{
    struct sw_txn *t = arg;
    t->early_pin_lat_ns = at_mono_ns() - t->early_pin_sent_ns;
    if (t->early_pin_wanted) { /* translate_pin took it: go on as its own command would */
        t->early_pin_wanted = false;
        t->early_pin_state = EARLY_PIN_NONE;
        t->t_hsm_ns = t->early_pin_sent_ns;
        on_pin(t, status, resp, len);
        return;
    }
    if (t->early_pin_discarded) {
        t->early_pin_state = EARLY_PIN_NONE;
        t->srv->metrics.early_pins_discarded_total++;
        maybe_deliver(t);
        return;
    }
    t->early_pin_status = status;
    t->early_pin_resp_len = status == HSM_CLIENT_OK && len <= sizeof t->early_pin_resp ? len : 0;
    if (t->early_pin_resp_len) /* resp is NULL on a timeout or a lost connection */
        memcpy(t->early_pin_resp, resp, t->early_pin_resp_len);
    t->early_pin_state = EARLY_PIN_DONE;
    maybe_deliver(t); /* a request refused meanwhile (a bad MAC) is answered now */
}

/* Called once the request's M8 is submitted: for a PIN-bearing 0100/0200 (not a reversal, not
 * a transfer) whose PAN routes to an enabled issuer with a ZPK, submits the PIN translation
 * right behind the M8. */
static void early_pin_translate(struct sw_txn *t)
{
    struct sw_server *srv = t->srv;
    struct sw_route_match route;
    char cmd[256];
    if (!t->v.has_pin || (t->v.kind != SW_KIND_AUTH && t->v.kind != SW_KIND_FINANCIAL) ||
        t->v.proc == SW_PROC_TRANSFER || !t->v.pan ||
        !sw_router_match(srv->ref->router, (const char *)t->v.pan, t->v.pan_len, &route))
        return;
    const struct sw_issuer *is = &srv->ref->issuers[route.issuer];
    if (!is->enabled || !is->zpk[0])
        return;
    int len = build_pin_cmd(t, is->zpk, cmd, sizeof cmd);
    if (len <= 0 || hsm_client_submit(srv->hsm, cmd, (size_t)len, on_early_pin, t) != 0)
        return; /* translate_pin does it (or refuses) in its turn */
    t->early_pin_state = EARLY_PIN_PENDING;
    t->early_pin_sent_ns = at_mono_ns();
    at_strlcpy(t->early_zpk, is->zpk, sizeof t->early_zpk);
}

/* translate_pin's shortcut: true when the early translation is the one wanted (to t's
 * issuer's ZPK): its answer is handled now, or by on_early_pin when it comes. */
static bool early_pin_take(struct sw_txn *t)
{
    if (t->early_pin_state == EARLY_PIN_NONE)
        return false;
    /* Another ZPK, or an early command the HSM connection failed (dropped, timed out): sent
     * afresh, as it would have been without the early one. */
    if (strcmp(t->early_zpk, t->issuer.zpk) != 0 ||
        (t->early_pin_state == EARLY_PIN_DONE && t->early_pin_status != HSM_CLIENT_OK)) {
        if (t->early_pin_state == EARLY_PIN_PENDING) {
            t->early_pin_discarded = true;
        } else {
            t->early_pin_state = EARLY_PIN_NONE;
            t->srv->metrics.early_pins_discarded_total++;
            OPENSSL_cleanse(t->early_pin_resp, sizeof t->early_pin_resp);
        }
        return false;
    }
    t->srv->metrics.early_pins_used_total++;
    sw_txn_set_state(t, SW_TXN_PIN_TRANSLATE);
    if (t->early_pin_state == EARLY_PIN_PENDING) {
        t->early_pin_wanted = true;
        return true;
    }
    t->early_pin_state = EARLY_PIN_NONE;
    t->t_hsm_ns = at_mono_ns() - t->early_pin_lat_ns; /* lat_pin: the HSM's time, not the wait */
    on_pin(t, t->early_pin_status, t->early_pin_resp, t->early_pin_resp_len);
    OPENSSL_cleanse(t->early_pin_resp, sizeof t->early_pin_resp);
    return true;
}

static void translate_pin(struct sw_txn *t)
{
    char cmd[256];
    int len = build_pin_cmd(t, t->issuer.zpk, cmd, sizeof cmd);
    if (len == -2) {
        reject(t, "14", SW_OUT_REJECTED, "PAN too short for a PIN block", 2);
        return;
    }
    if (len < 0) {
        reject(t, "30", SW_OUT_REJECTED, "PIN data incomplete for the terminal's key scheme", 52);
        return;
    }
    if (early_pin_take(t))
        return;
    sw_txn_set_state(t, SW_TXN_PIN_TRANSLATE);
    t->t_hsm_ns = at_mono_ns();
    if (hsm_client_submit(t->srv->hsm, cmd, (size_t)len, on_pin, t) != 0)
        reject(t, "96", SW_OUT_ERROR, "HSM queue full", 0);
}

static bool recent_id(struct sw_txn *t, const struct iso_msg *m, const char *stan, const char *de7,
                      char mclass, struct sw_req_id *id)
{
    size_t n;
    const uint8_t *tid = iso_get(m, 41, &n);
    memset(id, 0, sizeof *id);
    if (!tid || n != 8 || strlen(stan) != 6 || strlen(de7) != 10)
        return false;
    at_strlcpy(id->acquirer, t->acquirer, sizeof id->acquirer);
    memcpy(id->terminal, tid, 8);
    memcpy(id->stan, stan, 6);
    memcpy(id->tx_time, de7, 10);
    id->mclass = mclass;
    return true;
}

/* The original of a terminal reversal is known (from memory or the journal)
 * and answered: acknowledge, or queue its reversal durably and answer once
 * it is. */
static void reverse_known(struct sw_txn *t, struct sw_recent_txn *orig)
{
    static const uint8_t no_tag[8];
    if (memcmp(orig->pan_tag, no_tag, 8) != 0 &&
        (!pan_hmac(t) || memcmp(orig->pan_tag, t->pan_hmac, 8) != 0)) {
        reject(t, "12", SW_OUT_REJECTED, "the reversal names another card than its original", 2);
        return;
    }
    /* A stand-in approval (advice.c) is reversed through its advice, even when a reversal of
     * the forwarded request it replaced (a timeout) marked it reversed. */
    bool stand_in = orig->approved && sw_advice_is_stand_in(orig->auth_code);
    if (orig->state == SW_RECENT_REVERSED && !stand_in) {
        set_rc(t, "00"); /* already reversed: acknowledge again, change nothing */
        t->outcome = SW_OUT_APPROVED;
        finish(t);
        return;
    }
    if (!orig->approved) {
        set_rc(t, "00"); /* nothing was taken: nothing to give back */
        t->outcome = SW_OUT_APPROVED;
        finish(t);
        return;
    }
    /* A reversal undoes its whole original: a partial one (DE 95) or one for
     * another amount is not something the switch can forward honestly. */
    int64_t amount = field_amount(&t->req, 4, INT64_MAX);
    if (iso_has(&t->req, 95) || (iso_has(&t->req, 4) && amount != orig->amount_minor)) {
        reject(t, "12", SW_OUT_REJECTED, "partial reversals are not supported",
               iso_has(&t->req, 95) ? 95 : 4);
        return;
    }
    if (memcmp(orig->proc_code, "40", 2) == 0) {
        sw_xfer_reverse(t, orig); /* its legs are reversed */
        return;
    }
    if (stand_in) {
        sw_advice_reverse_original(t, orig);
        if (!t->pending_saf)
            finish(t); /* already reversed (00), or could not even start (96) */
        return;
    }
    for (size_t i = 0; i < t->srv->ref->n_issuers; i++)
        if (strcmp(t->srv->ref->issuers[i].id, orig->issuer_id) == 0)
            t->issuer = t->srv->ref->issuers[i];
    sw_saf_reverse_original(t, orig);
    if (!t->pending_saf)
        finish(t); /* could not even start: t->rc is 96 */
}

/* The journal answered the lookup of an original no longer in memory. */
static void on_orig_lookup(void *arg, const struct db_error *err, const struct db_original *d,
                           bool in_flight)
{
    struct sw_txn *t = arg;
    struct sw_recent_txn orig;
    if (err->code != 0) {
        reject(t, "96", SW_OUT_ERROR, "journal lookup of the original failed", 90);
        return;
    }
    if (!d) {
        /* Not answered — not even recovered after a crash. In flight still, or
         * in a spool not yet replayed: the terminal is to try again. Only once
         * neither holds it did the original never reach an issuer. */
        if (in_flight || db_journal_replay_pending(t->srv->journal)) {
            reject(t, "96", SW_OUT_ERROR,
                   in_flight ? "original still in flight" : "journal spool not replayed yet", 90);
            return;
        }
        char proc[7];
        field_str(&t->req, 3, proc, sizeof proc);
        if (memcmp(proc, "40", 2) == 0) {
            struct db_request_id oid; /* a transfer that may still be running */
            db_id_of(t, t->orig_stan, t->orig_de7, &oid);
            sw_xfer_orig_unknown(t, &oid);
            return;
        }
        reject(t, "12", SW_OUT_REJECTED, "original of the reversal not found", 90);
        return;
    }
    orig_from_db(d, &orig);
    if (orig.approved && memcmp(orig.proc_code, "40", 2) != 0 &&
        (orig.issuer_stan[0] == 0 || orig.issuer_tx_time[0] == 0)) {
        reject(t, "12", SW_OUT_REJECTED, "original has no issuer-side identity", 90);
        return;
    }
    reverse_known(t, &orig);
}

static void on_park_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct sw_txn *t = arg;
    for (struct sw_txn **pp = &t->srv->parked; *pp; pp = &(*pp)->parked_next) {
        if (*pp == t) {
            *pp = t->parked_next;
            break;
        }
    }
    reject(t, "96", SW_OUT_ERROR, "original still in flight", 90);
}

/* A reversal of an original still being handled waits for its answer: only
 * then is it known whether (and where) money moved. */
static void park(struct sw_txn *t, const struct sw_req_id *orig)
{
    struct timeval tv = { PARK_MAX_MS / 1000, 0 };
    at_log(AT_LOG_INFO, "reversal_parked", AT_STR("reason", "original in flight"),
           AT_STRN("original_stan", orig->stan, 6));
    sw_txn_set_state(t, SW_TXN_PARKED);
    t->recent_id = *orig;
    t->parked_next = t->srv->parked;
    t->srv->parked = t;
    evtimer_assign(&t->timer, t->srv->base, on_park_timeout, t);
    evtimer_add(&t->timer, &tv);
}

/* Terminal reversal: find the original (DE 90, else the reversal's own
 * DE 11/41/7) in memory, else in the journal; then reverse_known(). */
static void handle_reversal(struct sw_txn *t)
{
    char ostan[7] = "", ode7[11] = "";
    struct sw_req_id id;
    struct sw_recent_txn *orig = NULL;
    struct isonet_de90 de90;

    if (isonet_de90_get(&t->req, &de90) > 0) { /* validated: a malformed one was refused */
        memcpy(ostan, de90.stan, 7);
        memcpy(ode7, de90.de7, 11);
    } else {
        field_str(&t->req, 11, ostan, sizeof ostan);
        memcpy(ode7, t->de7, 11);
    }
    memcpy(t->orig_stan, ostan, 7);
    memcpy(t->orig_de7, ode7, 11);
    for (const char *c = "21"; *c && !orig; c++)
        if (recent_id(t, &t->req, ostan, ode7, *c, &id))
            orig = sw_recent_find(t->srv->recent, &id, sw_now_ms());
    if (orig) {
        if (orig->state == SW_RECENT_IN_FLIGHT)
            park(t, &orig->id);
        else
            reverse_known(t, orig);
        return;
    }
    /* Not in memory (a restart, or older than the window): the journal
     * remembers every answered request, switch.inflight every one forwarded
     * and not answered yet. */
    struct db_request_id did;
    db_id_of(t, ostan, ode7, &did);
    sw_txn_set_state(t, SW_TXN_ORIG_LOOKUP);
    if (db_original_lookup(t->srv->db, &did, NULL, on_orig_lookup, t) != 0)
        reject(t, "96", SW_OUT_ERROR, "database queue full", 90);
}

static void forward_checked(struct sw_txn *t, bool transfer, int billing_currency);

static void after_mac(struct sw_txn *t)
{
    struct sw_server *srv = t->srv;
    struct sw_req_id id;
    char stan[7];
    struct sw_recent_txn rec, *dup;

    if (t->v.kind == SW_KIND_REVERSAL) {
        handle_reversal(t);
        return;
    }
    field_str(&t->req, 11, stan, sizeof stan);
    if (!recent_id(t, &t->req, stan, t->de7, t->req.mti[1], &id)) {
        reject(t, "30", SW_OUT_REJECTED, "request identity incomplete", 11);
        return;
    }
    memset(&rec, 0, sizeof rec);
    rec.id = id;
    memcpy(rec.mti, t->req.mti, 4);
    /* What a later reversal of this request needs to rebuild it. */
    char buf[16];
    field_str(&t->req, 3, buf, sizeof buf);
    memcpy(rec.proc_code, buf, strlen(buf) == 6 ? 6 : 0);
    rec.amount_minor = field_amount(&t->req, 4, INT64_MAX);
    if (rec.amount_minor < 0)
        rec.amount_minor = 0;
    int64_t cur = field_amount(&t->req, 49, 999);
    rec.currency = cur > 0 ? (uint16_t)cur : 0;
    rec.billing_minor = -1; /* known once routed and converted (deliver) */
    if (pan_hmac(t))
        memcpy(rec.pan_tag, t->pan_hmac, sizeof rec.pan_tag);
    rec.received_us = (int64_t)t->t_wall_us;
    if (!sw_recent_insert(srv->recent, &rec, sw_now_ms(), &dup)) {
        /* Several instances (stan_slots > 1, docs/switchd.md "Instances"): another one may have
         * reversed the original since this one remembered it (a terminal's reversal that went
         * there), so a repeat of a settled original asks the journal, which refreshes the
         * entry; copies (94) and originals still in flight here are answered from memory. */
        if (srv->conf.stan_slots > 1 && t->req.mti[3] == '1' && dup->state != SW_RECENT_IN_FLIGHT) {
            t->recent_id = id;
            dup_lookup(t);
            return;
        }
        answer_known(t, dup);
        return;
    }
    t->recent_id = id;
    t->has_recent = true;

    struct sw_route_match route;
    if (!sw_router_match(srv->ref->router, (const char *)t->v.pan, t->v.pan_len, &route)) {
        reject(t, "15", SW_OUT_REJECTED, "no BIN route", 2);
        return;
    }
    t->issuer = srv->ref->issuers[route.issuer];
    t->issuer_idx = route.issuer;
    if (!t->issuer.enabled) {
        reject(t, "15", SW_OUT_REJECTED, "issuer disabled", 2);
        return;
    }
    /* Converted now, once: the write-ahead row, the journal, the answer and any reversal keep
     * this DE 6/10/51. */
    struct sw_conversion conv;
    bool transfer = t->v.proc == SW_PROC_TRANSFER; /* its legs convert, each for its card */
    if (!transfer && sw_fx_convert(srv, route.billing_currency, field_amount(&t->req, 4, INT64_MAX),
                                   (int)field_amount(&t->req, 49, 999), &conv) != 0) {
        reject(t, conv.rc, SW_OUT_REJECTED, conv.reason, conv.field);
        return;
    }
    if (!transfer)
        t->billing = conv.billing;
    /* Card authentication (chip ARQC, CVV2) on the issuer's behalf, before anything is
     * forwarded (emv.c, docs/emv.md): it goes on in sw_txn_card_checked, or declines. */
    if (!transfer && sw_card_auth_wanted(t)) {
        sw_txn_set_state(t, SW_TXN_CARD_AUTH);
        sw_card_auth_start(t, srv->ref, route.card_keys);
        return;
    }
    forward_checked(t, transfer, route.billing_currency);
}

/* A request whose card is authenticated (or needs none) goes to its issuer: over its link when
 * it is up, as a transfer's saga, after its PIN translation. */
static void forward_checked(struct sw_txn *t, bool transfer, int billing_currency)
{
    struct sw_server *srv = t->srv;
    if (t->issuer.link < 0 || srv->links[t->issuer.link].state != SW_LINK_UP) {
        if (transfer)
            memcpy(t->resp44, "AFT91", 6);
        if (sw_stip_eligible(t)) { /* STIP hook: decide in the issuer's place */
            sw_stip_decide(t, SW_STIP_LINK_DOWN);
            return;
        }
        reject(t, "91", SW_OUT_UNAVAILABLE, "issuer link down", 0);
        return;
    }
    t->link = &srv->links[t->issuer.link];
    if (transfer) {
        sw_xfer_start(t, billing_currency);
        return;
    }
    if (t->v.names_original) { /* a completion or an increment: find its pre-auth first */
        sw_preauth_resolve(t);
        return;
    }
    sw_txn_after_original(t);
}

void sw_txn_after_original(struct sw_txn *t)
{
    if (t->v.has_pin) {
        translate_pin(t);
        return;
    }
    to_issuer(t);
}

void sw_txn_card_checked(struct sw_txn *t)
{
    forward_checked(t, false, 0);
}

void sw_txn_card_arpc_done(struct sw_txn *t)
{
    t->pending_mac = false;
    request_mac(t);
}

/* M9: 00 the terminal's MAC verifies; 01 it does not (63); any other code is
 * the HSM's or the keys' trouble (96), like an answer that is not an M9. */
static void on_req_mac(void *arg, int status, const char *resp, size_t len)
{
    struct sw_txn *t = arg;
    int mf = t->mac_at.field;
    t->lat_mac_ns = at_mono_ns() - t->t_hsm_ns;
    if (status != HSM_CLIENT_OK) {
        reject(t, "96", SW_OUT_ERROR, "HSM unavailable for MAC verification", mf);
        return;
    }
    int e = hsm_client_resp_error("M8", resp, len);
    if (e < 0) {
        reject(t, "96", SW_OUT_ERROR, "HSM answer to the MAC verification malformed", mf);
        return;
    }
    if (e != 0) {
        t->srv->metrics.protocol_errors_total++;
        reject(t, e == 1 ? "63" : "96", e == 1 ? SW_OUT_REJECTED : SW_OUT_ERROR,
               "MAC verification failed", mf);
        return;
    }
    after_mac(t);
}

static void verify_mac(struct sw_txn *t)
{
    char cmd[SW_TXN_FRAME + 128];
    const struct iso_dialect *d = t->term->lst->dialect;

    sw_txn_set_state(t, SW_TXN_MAC_VERIFY);
    if (isonet_mac_locate(d, &t->req, t->frame_len, &t->mac_at) != 0) {
        reject(t, "30", SW_OUT_REJECTED, "MAC must be the last field",
               t->mac_at.field ? t->mac_at.field : 64);
        return;
    }
    int len = hsm_client_build_mac(cmd, sizeof cmd, "003", t->terminal.tak, t->frame, t->mac_at.off,
                                   t->mac_at.value);
    t->t_hsm_ns = at_mono_ns();
    if (len < 0 || hsm_client_submit(t->srv->hsm, cmd, (size_t)len, on_req_mac, t) != 0) {
        reject(t, "96", SW_OUT_ERROR, "HSM queue full", 0);
        return;
    }
    early_pin_translate(t); /* leaves in the same write as the M8 */
}

/* Answers an 0800 from a terminal (echo, sign-on): 0810 DE 39 00, no MAC. A key download
 * (DE 70 = 162) goes to keyx.c first, which answers through sw_txn_key_download_done. */
static void answer_netmgmt(struct sw_txn *t)
{
    t->journal = false;
    if (sw_keyx_is_download(&t->req)) {
        sw_txn_set_state(t, SW_TXN_KEY_DOWNLOAD);
        sw_keyx_download(t);
        return;
    }
    memset(t->terminal.tak, 0, sizeof t->terminal.tak);
    set_rc(t, "00");
    t->outcome = SW_OUT_APPROVED;
    finish(t);
}

void sw_txn_key_download_done(struct sw_txn *t, const char *rc)
{
    memset(t->terminal.tak, 0, sizeof t->terminal.tak); /* network management: no MAC */
    set_rc(t, rc);
    t->outcome = strcmp(rc, "00") == 0 ? SW_OUT_APPROVED : SW_OUT_REJECTED;
    finish(t);
}

/* The journal is partitioned by the day of DE 7 (db_request_date) and keeps partitions from
 * yesterday on (atlas-db partitions; its DEFAULT partition refuses rows). A new request whose
 * DE 7 is more than a day from the switch's clock would have no partition to land in: its
 * approval could not be journaled and would be withdrawn after the issuer moved money. It is
 * refused before anything moves. Repeats and reversals keep their original's DE 7 (or name it in
 * DE 90), whose day the journal has, so they are not checked. */
static bool de7_out_of_window(const struct sw_txn *t)
{
    if ((t->v.kind != SW_KIND_AUTH && t->v.kind != SW_KIND_FINANCIAL) || t->req.mti[3] != '0')
        return false;
    uint64_t now_ms = t->t_wall_us / 1000, de7_ms;
    if (!sw_de7_wall_ms((const uint8_t *)t->de7, strlen(t->de7), now_ms, &de7_ms))
        return false; /* sw_validate refused an invalid DE 7 already */
    return (de7_ms > now_ms ? de7_ms - now_ms : now_ms - de7_ms) > 24ull * 3600 * 1000;
}

void sw_txn_start(struct sw_term *term, const uint8_t *frame, size_t frame_len, const uint8_t *msg,
                  size_t msg_len, const uint8_t *tpdu)
{
    struct sw_server *srv = term->srv;
    struct iso_err e;
    struct sw_txn *t = txn_alloc(srv);

    if (!t) {
        sw_term_close(term, "out of memory");
        return;
    }
    t->t_recv_ns = at_mono_ns();
    t->t_wall_us = at_wall_us();
    t->term = term;
    sw_term_txn_begin(term);
    srv->inflight++;
    sw_backpressure_update(srv);
    t->journal = true;
    if (tpdu) {
        memcpy(t->tpdu, tpdu, ISO_TPDU_LEN);
        iso_tpdu_swap(t->tpdu);
        t->has_tpdu = true;
    }
    /* The request is copied: its frame lives in the stream's buffer only for
     * the duration of this call. Listeners accept at most SW_TXN_FRAME bytes
     * (config.c), so it always fits. */
    t->frame = t->frame_inline;
    iso_msg_init(&t->req, t->req_arena, sizeof t->req_arena);
    if (msg_len > SW_TXN_FRAME) {
        t->journal = false;
        t->no_answer = true;
        sw_term_close(term, "request larger than the switch accepts");
        finish(t);
        return;
    }
    memcpy(t->frame, msg, msg_len);
    t->frame_len = msg_len;
    at_strlcpy(t->acquirer,
               term->lst->conf->acquirer_id[0] ? term->lst->conf->acquirer_id
                                               : srv->conf.acquirer_id,
               sizeof t->acquirer);

    if (iso_unpack(term->lst->dialect, t->frame, t->frame_len, &t->req, &e) != 0) {
        srv->metrics.protocol_errors_total++;
        at_log(AT_LOG_WARN, "bad_message", AT_STR("listener", term->lst->conf->name),
               AT_STR("peer", at_stream_peer(term->stream)), AT_STR("error", iso_strerror(e.code)),
               AT_INT("field", e.field), AT_UINT("offset", e.offset), AT_STR("reason", e.reason));
        sw_term_close(term, "malformed message");
        t->journal = false;
        t->no_answer = true;
        iso_msg_init(&t->req, t->req.arena, t->req.arena_cap);
        memcpy(t->req.mti, "0000", 4);
        finish(t);
        return;
    }
    field_str(&t->req, 7, t->de7, sizeof t->de7);
    if (sw_validate(&t->req, &t->v) != 0) {
        if (t->v.kind == SW_KIND_RESPONSE) {
            srv->metrics.protocol_errors_total++;
            t->journal = false;
            t->no_answer = true; /* never answer an answer */
            reject(t, "30", SW_OUT_REJECTED, "terminal sent a response message", 0);
            return;
        }
        /* Journal only what has a complete, valid identity (the table refuses the rest). */
        t->journal = iso_has(&t->req, 11) && iso_has(&t->req, 41) &&
                     sw_de7_valid((const uint8_t *)t->de7, strlen(t->de7));
        if (srv->ref) {
            size_t n;
            const uint8_t *tid = iso_get(&t->req, 41, &n);
            const struct sw_terminal *term_row =
                tid && n == 8 ? sw_ref_terminal(srv->ref, t->acquirer, tid) : NULL;
            if (term_row)
                t->terminal = *term_row;
        }
        reject(t, t->v.rc, SW_OUT_REJECTED, t->v.reason, t->v.field);
        return;
    }
    if (t->v.kind == SW_KIND_NETMGMT) {
        answer_netmgmt(t);
        return;
    }
    size_t n;
    const uint8_t *tid = iso_get(&t->req, 41, &n);
    const struct sw_terminal *row = sw_ref_terminal(srv->ref, t->acquirer, tid);
    if (row && row->tak[0])
        t->terminal = *row; /* a known terminal gets an authentic answer, even a refusal */
    if (!row || !row->enabled || !row->tak[0]) {
        reject(t, "58", SW_OUT_REJECTED,
               !row            ? "unknown terminal"
               : !row->enabled ? "terminal disabled"
                               : "terminal has no TAK",
               41);
        return;
    }
    t->terminal = *row;
    if (de7_out_of_window(t)) {
        t->journal = false; /* no partition of the journal holds its day */
        reject(t, "30", SW_OUT_REJECTED,
               "transmission date and time (DE 7) more than 24 h from the switch's clock", 7);
        return;
    }
    verify_mac(t);
}

/* ---------------------------------------------------------------- what the saga borrows */

void sw_txn_finish(struct sw_txn *t)
{
    finish(t);
}

void sw_txn_reject(struct sw_txn *t, const char *rc, int outcome, const char *reason, int field)
{
    reject(t, rc, (enum sw_txn_outcome)outcome, reason, field);
}

bool sw_txn_pan_hmac(struct sw_txn *t)
{
    return pan_hmac(t);
}

void sw_txn_to_orig_lookup(struct sw_txn *t)
{
    sw_txn_set_state(t, SW_TXN_ORIG_LOOKUP);
}

void sw_txn_translate_pin(struct sw_txn *t)
{
    translate_pin(t);
}

void sw_txn_to_transfer(struct sw_txn *t)
{
    sw_txn_set_state(t, SW_TXN_TRANSFER);
}

void sw_txn_to_stand_in(struct sw_txn *t)
{
    sw_txn_set_state(t, SW_TXN_STAND_IN);
}

void sw_txn_dup_lookup(struct sw_txn *t)
{
    dup_lookup(t);
}

void sw_txn_field(const struct sw_txn *t, int f, char *out, size_t cap)
{
    field_str(&t->req, f, out, cap);
}

int64_t sw_txn_amount(const struct sw_txn *t, int f, int64_t max)
{
    return field_amount(&t->req, f, max);
}

void sw_txn_request_id(struct sw_txn *t, struct db_request_id *id)
{
    char stan[7];
    field_str(&t->req, 11, stan, sizeof stan);
    db_id_of(t, stan, t->de7, id);
}

const char *sw_txn_start_leg(struct sw_server *srv, const struct sw_leg *leg)
{
    const struct sw_issuer *is = leg->issuer;
    if (srv->stopping)
        return "switchd is stopping";
    if (is->link < 0 || srv->links[is->link].state != SW_LINK_UP)
        return "issuer link down";
    struct sw_conversion conv;
    if (sw_fx_convert(srv, leg->billing_currency, leg->amount, leg->currency, &conv) != 0)
        return conv.reason;
    struct sw_txn *t = txn_alloc(srv);
    if (!t)
        return "out of memory";
    t->t_recv_ns = at_mono_ns();
    t->t_wall_us = leg->wall_us;
    srv->inflight++;
    sw_backpressure_update(srv);
    t->journal = true;
    t->no_answer = true;
    t->leg_of = leg->xfer;
    t->leg_oct = leg->oct;
    t->billing = conv.billing;
    t->frame = t->frame_inline;
    iso_msg_init(&t->req, t->req_arena, sizeof t->req_arena);
    char amount[13], cur[4];
    at_put_digits(amount, 12, (uint64_t)leg->amount);
    at_put_digits(cur, 3, (uint64_t)leg->currency);
    if (iso_set_mti(&t->req, "0200") != 0 || iso_set_copy(&t->req, 2, leg->pan, leg->pan_len) ||
        iso_set_copy(&t->req, 3, leg->proc, 6) || iso_set_copy(&t->req, 4, amount, 12) ||
        iso_set_copy(&t->req, 7, leg->de7, 10) || iso_set_copy(&t->req, 11, leg->stan, 6) ||
        iso_set_copy(&t->req, 41, leg->terminal, 8) || iso_set_copy(&t->req, 49, cur, 3)) {
        t->journal = false;
        reject(t, "96", SW_OUT_ERROR, "cannot build a transfer leg", 0);
        return NULL; /* the leg reports its 96 through sw_xfer_leg_finished */
    }
    size_t n;
    t->v.kind = SW_KIND_FINANCIAL;
    t->v.proc = (leg->proc[0] - '0') * 10 + (leg->proc[1] - '0');
    t->v.pan = iso_get(&t->req, 2, &n);
    t->v.pan_len = n;
    memcpy(t->de7, leg->de7, 11);
    at_strlcpy(t->acquirer, leg->acquirer, sizeof t->acquirer);
    t->issuer = *is;
    t->link = &srv->links[is->link];
    if (leg->pin_block) {
        memcpy(t->pin_block, leg->pin_block, 8);
        t->has_pin_block = true;
    }
    to_issuer(t);
    return NULL;
}
