/* Stand-in advices towards issuers (switch.advice_queue, migration 0014). An item is an advice
 * (0120/0220 of a stand-in approval) or the reversal of one (0420 naming the advice in DE 90: a
 * stand-in approval the terminal did not receive, or reversed). It lives in memory from the
 * moment it is decided until its row says it is settled. Its lifecycle is enum adv_state;
 * adv_set_state() is the only door and aborts on a move the table does not allow.
 *
 * Durable first: the item's ADVICE record goes through the journal writer (committed, or fsync'd
 * to its spool while PostgreSQL is away); an advice that cannot be made durable is dropped and
 * its txn told so (it answers 91 instead of approving); a reversal is never dropped (retried).
 *
 * In order, exactly once: items sit on one list in the order they were decided; per issuer only
 * the first item not yet settled may be sent, so an issuer receives its advices one at a time in
 * queue order, and the reversal of an advice always after the advice itself (it was decided
 * later). An advice keeps the STAN and DE 7 chosen when it was stored: its repeats (0121/0221)
 * are the same request key at the issuer, which applies it once and answers repeats again. A
 * reversal takes a fresh STAN per attempt (as the reversal queue does, saf.c) and names the
 * advice in DE 90. Answers whose MAC verifies settle an item: 00 acknowledges it; 91/96 (or no
 * code) mean "repeat later"; any other code is the issuer refusing it for good: kept as 'failed'
 * for an operator and atlas-reconcile, and the issuer's next item goes.
 *
 * Survives restarts: at start the advices of this instance whose approval the journal does not
 * hold get their reversal (switch.recover_advices), then the pending rows are loaded.
 * The PAN travels in DE 2, so the row holds it sealed, as the reversal queue's does. */
#include "advice.h"

#include "clock.h"
#include "db.h"
#include "fmt.h"
#include "hsmclient.h"
#include "log.h"
#include "parse.h"
#include "switchd.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define TICK_MS 250

/* Where an item is. */
enum adv_state {
    ADV_UNSTORED, /* decided; its record is not durable yet (a reversal: stored again later) */
    ADV_STORING,  /* its ADVICE record is with the journal writer */
    ADV_IDLE,     /* durable: sent at next_attempt_ms when first of its issuer, link up */
    ADV_MACING,   /* the HSM is MACing its message */
    ADV_SENT,     /* sent; waiting for the answer until next_attempt_ms */
    ADV_CHECKING, /* an answer arrived; the HSM is verifying its MAC */
    ADV_SETTLED,  /* acknowledged or failed: its row's UPDATE is due or in flight */
    ADV_ORPHAN,   /* off the queue while an HSM command for it was out: that callback frees it */
    ADV_state_max
};

static const char *const state_names[ADV_state_max] = {
    "unstored", "storing", "idle", "macing", "sent", "checking", "settled", "orphan",
};

#define B(s) (1u << (s))
/* allowed[to] = the states an item may come from. */
static const unsigned allowed[ADV_state_max] = {
    [ADV_UNSTORED] = B(ADV_STORING),
    [ADV_STORING] = B(ADV_UNSTORED),
    [ADV_IDLE] = B(ADV_STORING) | B(ADV_MACING) | B(ADV_SENT) | B(ADV_CHECKING),
    [ADV_MACING] = B(ADV_IDLE),
    [ADV_SENT] = B(ADV_IDLE) | B(ADV_MACING),
    [ADV_CHECKING] = B(ADV_SENT),
    [ADV_SETTLED] = B(ADV_IDLE) | B(ADV_SENT) | B(ADV_CHECKING),
    [ADV_ORPHAN] = B(ADV_MACING) | B(ADV_CHECKING),
};
#undef B

enum adv_end { ADV_END_NONE, ADV_END_ACKED, ADV_END_FAILED };

struct adv_item {
    TAILQ_ENTRY(adv_item) link; /* sw_advq.items, in queue order */
    struct sw_server *srv;
    enum adv_state state;
    enum adv_end end;
    bool is_reversal;
    int64_t advice_id; /* known for rows loaded at start; logs only */
    unsigned store_failures;
    uint64_t next_store_ms;
    /* Who waits for the record to be durable: an advice's txn (done), or a txn waiting for a
     * reversal (sw_txn_reversal_stored, t->pending_saf). */
    struct sw_txn *waiter;
    void (*done)(struct sw_txn *t, bool durable);
    bool has_orig; /* a terminal reversal: its original marked reversed once durable */
    struct sw_req_id orig;
    /* the row */
    char request_date[11], acquirer[12], terminal[9], stan[7], de7[11], mti[5];
    char issuer_id[33], issuer_stan[7], issuer_de7[11], rrn[13], proc[7], auth_code[7];
    char stand_in_rc[3];
    char pan[20];
    uint8_t pan_hmac[32], pan_sealed[DB_PAN_SEALED_MAX];
    uint8_t pan_sealed_len;
    int64_t amount;
    int currency;
    struct db_billing billing;
    char reason[16];
    uint64_t created_us;
    /* sending */
    unsigned attempts;
    uint64_t next_attempt_ms;
    uint32_t cur_stan;
    struct sw_link *cur_link;
    char answer_rc[3];
    uint8_t packed[512];
    size_t packed_len;
    struct isonet_mac mac_at;
    /* its row's changes: one UPDATE at a time */
    bool row_dirty;
    bool row_writing;
};

struct sw_advq {
    struct sw_server *srv;
    TAILQ_HEAD(, adv_item) items;
    uint64_t count;
    uint64_t settled;
    uint64_t unstored;
    uint64_t dirty; /* items whose row change is not committed yet */
    struct event *tick;
    uint64_t load_retry_ms;
    void (*load_done)(struct sw_server *srv);
};

static void adv_set_state(struct adv_item *it, enum adv_state to)
{
    if (to >= ADV_state_max || !(allowed[to] & (1u << it->state))) {
        /* An advice that moves where it cannot is a bug: stop before money is lost. */
        at_log(AT_LOG_ERROR, "advice_bad_transition", AT_STR("from", state_names[it->state]),
               AT_STR("to", to < ADV_state_max ? state_names[to] : "?"));
        at_log_flush();
        abort();
    }
    struct sw_advq *q = it->srv->advice;
    bool was_unstored = it->state == ADV_UNSTORED || it->state == ADV_STORING;
    bool is_unstored = to == ADV_UNSTORED || to == ADV_STORING;
    if (q && was_unstored != is_unstored)
        q->unstored += is_unstored ? 1 : (uint64_t)-1;
    if (q && to == ADV_SETTLED)
        q->settled++;
    if (at_log_enabled(AT_LOG_DEBUG))
        at_log(AT_LOG_DEBUG, "advice_state", AT_STR("from", state_names[it->state]),
               AT_STR("to", state_names[to]), AT_STR("issuer_stan", it->issuer_stan));
    it->state = to;
}

static const char *kind_name(const struct adv_item *it)
{
    return it->is_reversal ? "advice_reversal" : "advice";
}

/* ---------------------------------------------------------------- the list */

static void free_item(struct adv_item *it)
{
    OPENSSL_cleanse(it->pan, sizeof it->pan);
    free(it);
}

static void remove_item(struct sw_advq *q, struct adv_item *it)
{
    TAILQ_REMOVE(&q->items, it, link);
    q->count--;
    if (it->state == ADV_UNSTORED || it->state == ADV_STORING)
        q->unstored--;
    if (it->state == ADV_SETTLED)
        q->settled--;
    if (it->row_dirty || it->row_writing)
        q->dirty--;
    if (it->state == ADV_MACING || it->state == ADV_CHECKING) {
        adv_set_state(it, ADV_ORPHAN);
        return;
    }
    free_item(it);
}

uint64_t sw_advice_pending(const struct sw_server *srv)
{
    return srv->advice ? srv->advice->count - srv->advice->settled : 0;
}

uint64_t sw_advice_unwritten(const struct sw_server *srv)
{
    return srv->advice ? srv->advice->unstored + srv->advice->dirty : 0;
}

/* ---------------------------------------------------------------- issuers */

static const struct sw_issuer *issuer_of(struct sw_server *srv, const char *issuer_id)
{
    for (size_t i = 0; srv->ref && i < srv->ref->n_issuers; i++)
        if (strcmp(srv->ref->issuers[i].id, issuer_id) == 0)
            return &srv->ref->issuers[i];
    return NULL;
}

static struct sw_link *link_of(struct sw_server *srv, const char *issuer_id)
{
    const struct sw_issuer *is = issuer_of(srv, issuer_id);
    return is && is->link >= 0 ? &srv->links[is->link] : NULL;
}

static const char *zak_of(struct sw_server *srv, const char *issuer_id)
{
    const struct sw_issuer *is = issuer_of(srv, issuer_id);
    return is ? is->zak : "";
}

/* ---------------------------------------------------------------- row changes */

static void write_row(struct adv_item *it);

static void item_id(const struct adv_item *it, struct db_request_id *id)
{
    memcpy(id->request_date, it->request_date, sizeof id->request_date);
    at_strlcpy(id->acquirer_id, it->acquirer, sizeof id->acquirer_id);
    memcpy(id->terminal_id, it->terminal, sizeof id->terminal_id);
    memcpy(id->stan, it->stan, sizeof id->stan);
    memcpy(id->transmission_time, it->de7, sizeof id->transmission_time);
    memcpy(id->mti, it->mti, sizeof id->mti);
}

static void on_row_written(void *arg, const struct db_error *err)
{
    struct adv_item *it = arg;
    struct sw_advq *q = it->srv->advice;
    it->row_writing = false;
    if (!q) { /* shut down meanwhile */
        free_item(it);
        return;
    }
    if (err->code != 0) {
        at_log(AT_LOG_ERROR, "advice_update_failed", AT_STR("error", err->message),
               AT_STR("sqlstate", err->sqlstate), AT_STR("action", "retried at the next tick"));
        it->row_dirty = true;
        return;
    }
    if (it->row_dirty) { /* changed again meanwhile */
        write_row(it);
        return;
    }
    q->dirty--;
    if (it->state == ADV_SETTLED)
        remove_item(q, it);
}

/* Writes the item's attempts and end state to its row (one UPDATE, one at a time per item).
 * Held while the journal's spool holds records not yet replayed (the row may be among them):
 * the tick tries again. */
static void write_row(struct adv_item *it)
{
    struct sw_server *srv = it->srv;
    struct sw_advq *q = srv->advice;
    if (!it->row_dirty && !it->row_writing)
        q->dirty++;
    it->row_dirty = true;
    if (it->row_writing || srv->stopping || !srv->db ||
        (srv->journal && db_journal_replay_pending(srv->journal)))
        return;
    static const enum db_reversal_state ends[] = { DB_REVERSAL_PENDING, DB_REVERSAL_ACKED,
                                                   DB_REVERSAL_FAILED };
    struct db_request_id id;
    item_id(it, &id);
    it->row_dirty = false;
    it->row_writing = true;
    if (db_advices_update(srv->db, &id, it->is_reversal, it->attempts, ends[it->end], it->answer_rc,
                          on_row_written, it) != 0) {
        it->row_writing = false;
        it->row_dirty = true;
    }
}

/* ---------------------------------------------------------------- durable first */

static void kick_issuer(struct sw_server *srv, const char *issuer_id);

/* Tells the txn waiting for this item whether it is durable (from a journal callback or the
 * loop, never inside the caller's code). */
static void notify_waiter(struct adv_item *it, bool durable)
{
    struct sw_txn *t = it->waiter;
    if (!t)
        return;
    it->waiter = NULL;
    if (it->done) {
        void (*done)(struct sw_txn *, bool) = it->done;
        it->done = NULL;
        if (durable)
            t->advice_stored = true;
        done(t, durable);
        return;
    }
    sw_txn_reversal_stored(t, durable);
}

static void on_stored(void *arg, int status)
{
    struct adv_item *it = arg;
    struct sw_server *srv = it->srv;
    struct sw_advq *q = srv->advice;
    if (status == DB_OK || status == DB_SPOOLED) {
        adv_set_state(it, ADV_IDLE);
        it->store_failures = 0;
        srv->metrics.advices_queued_total++;
        if (it->has_orig) {
            struct sw_recent_txn *o = sw_recent_find(srv->recent, &it->orig, sw_now_ms());
            if (o)
                o->state = SW_RECENT_REVERSED;
        }
        at_log(AT_LOG_INFO, it->is_reversal ? "advice_reversal_queued" : "advice_queued",
               AT_STR("issuer", it->issuer_id), AT_STR("issuer_stan", it->issuer_stan),
               AT_STR("auth_code", it->auth_code), AT_STR("reason", it->reason),
               AT_STR("where", status == DB_OK ? "database" : "spool"));
        notify_waiter(it, true);
        kick_issuer(srv, it->issuer_id);
        return;
    }
    at_log(AT_LOG_ERROR, "advice_not_durable", AT_STR("kind", kind_name(it)),
           AT_STR("error", db_strerror(status)), AT_STR("issuer", it->issuer_id),
           AT_STR("issuer_stan", it->issuer_stan),
           AT_STR("action", it->is_reversal ? "retrying" : "stand-in approval not given"));
    adv_set_state(it, ADV_UNSTORED);
    if (!it->is_reversal) {
        /* Not stored: its txn answers 91, so there is nothing to advise. */
        notify_waiter(it, false);
        remove_item(q, it);
        return;
    }
    it->store_failures++;
    it->next_store_ms = sw_now_ms() + (100u << (it->store_failures < 8 ? it->store_failures : 8));
    notify_waiter(it, false);
}

static void fill_record(const struct adv_item *it, struct db_auth_record *r)
{
    db_auth_record_init(r);
    r->kind = DB_REC_ADVICE;
    memcpy(r->request_date, it->request_date, sizeof r->request_date);
    at_strlcpy(r->acquirer_id, it->acquirer, sizeof r->acquirer_id);
    memcpy(r->terminal_id, it->terminal, sizeof r->terminal_id);
    memcpy(r->stan, it->stan, sizeof r->stan);
    memcpy(r->transmission_time, it->de7, sizeof r->transmission_time);
    memcpy(r->mti, it->mti, sizeof r->mti);
    at_strlcpy(r->rrn, it->rrn, sizeof r->rrn);
    at_strlcpy(r->issuer_id, it->issuer_id, sizeof r->issuer_id);
    memcpy(r->issuer_stan, it->issuer_stan, sizeof r->issuer_stan);
    memcpy(r->issuer_transmission_time, it->issuer_de7, sizeof r->issuer_transmission_time);
    memcpy(r->processing_code, it->proc, sizeof r->processing_code);
    r->amount_minor = it->amount;
    r->currency = it->currency;
    r->billing = it->billing;
    at_strlcpy(r->auth_code, it->auth_code, sizeof r->auth_code);
    if (!it->is_reversal)
        memcpy(r->response_code, it->stand_in_rc, sizeof r->response_code);
    at_mask_pan(it->pan, strlen(it->pan), r->pan_masked);
    memcpy(r->pan_hmac, it->pan_hmac, 32);
    r->has_pan_hmac = true;
    memcpy(r->pan_sealed, it->pan_sealed, it->pan_sealed_len);
    r->pan_sealed_len = it->pan_sealed_len;
    at_strlcpy(r->reason, it->reason, sizeof r->reason);
    r->outcome = DB_OUTCOME_APPROVED; /* unused for advices */
    r->created_us = it->created_us;
}

/* Hands the item's record to the journal writer. Returns false when the item is gone (an advice
 * the writer refused at once: its txn is told, from the loop). */
static bool store(struct adv_item *it)
{
    struct sw_server *srv = it->srv;
    bool stays = it->is_reversal;
    struct db_auth_record rec;
    fill_record(it, &rec);
    adv_set_state(it, ADV_STORING);
    int rc = srv->journal && !srv->stopping ? db_journal_submit(srv->journal, &rec, on_stored, it)
                                            : DB_E_CLOSED;
    if (rc == 0)
        return true;
    struct db_error err;
    if (rc == DB_E_INVALID && db_auth_record_check(&rec, &err) != 0)
        at_log(AT_LOG_ERROR, "advice_record_invalid", AT_STR("reason", err.message));
    on_stored(it, rc < 0 ? rc : DB_E_CLOSED); /* from the loop (the tick): nothing to unwind */
    return stays;
}

/* A new item (calloc'd, row filled) joins the end of the queue; it is stored from the loop
 * (the tick, made active now), so a waiter is never told inside its own call. */
static void enqueue(struct sw_server *srv, struct adv_item *it)
{
    struct sw_advq *q = srv->advice;
    it->srv = srv;
    it->state = ADV_UNSTORED;
    TAILQ_INSERT_TAIL(&q->items, it, link);
    q->count++;
    q->unstored++;
    it->next_store_ms = 0;
    event_active(q->tick, 0, 0);
}

static void field_copy(const struct iso_msg *m, int f, char *out, size_t cap)
{
    size_t n = 0;
    const uint8_t *p = iso_get(m, f, &n);
    if (!p || n >= cap)
        n = 0;
    memcpy(out, p ? (const char *)p : "", n);
    out[n] = '\0';
}

static bool set_pan(struct sw_server *srv, struct adv_item *it, const uint8_t *pan, size_t len)
{
    if (len >= sizeof it->pan)
        return false;
    memcpy(it->pan, pan, len);
    it->pan[len] = '\0';
    return sw_pan_protect(srv, it->pan, len, it->pan_hmac, it->pan_sealed, &it->pan_sealed_len) ==
           0;
}

/* The row of t's request as its advice (or the reversal of it) needs it; the issuer side is
 * t->issuer_stan / t->issuer_de7 (the advice's, set by sw_advice_store). */
static void fill_from_txn(struct adv_item *it, struct sw_txn *t)
{
    char buf[16];
    uint64_t v;
    db_request_date(t->de7, t->t_wall_us, it->request_date);
    at_strlcpy(it->acquirer, t->acquirer, sizeof it->acquirer);
    field_copy(&t->req, 41, it->terminal, sizeof it->terminal);
    field_copy(&t->req, 11, it->stan, sizeof it->stan);
    memcpy(it->de7, t->de7, sizeof it->de7);
    memcpy(it->mti, t->req.mti, 4);
    at_strlcpy(it->issuer_id, t->issuer.id, sizeof it->issuer_id);
    at_put_digits(it->issuer_stan, 6, t->issuer_stan % 1000000u);
    memcpy(it->issuer_de7, t->issuer_de7, sizeof it->issuer_de7);
    field_copy(&t->req, 37, it->rrn, sizeof it->rrn);
    if (!it->rrn[0])
        memcpy(it->rrn, t->rrn, sizeof it->rrn);
    field_copy(&t->req, 3, it->proc, sizeof it->proc);
    field_copy(&t->req, 4, buf, sizeof buf);
    it->amount = buf[0] && at_parse_u64(buf, INT64_MAX, &v) ? (int64_t)v : 0;
    field_copy(&t->req, 49, buf, sizeof buf);
    it->currency = buf[0] && at_parse_u64(buf, 999, &v) ? (int)v : 0;
    it->billing = t->billing;
    at_strlcpy(it->auth_code, t->auth_code, sizeof it->auth_code);
    it->created_us = at_wall_us();
}

struct deferred {
    struct sw_txn *t;
    void (*done)(struct sw_txn *t, bool durable);
    bool durable;
};

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct deferred d = *(struct deferred *)arg;
    free(arg);
    d.done(d.t, d.durable);
}

/* Tells done from the loop (never inside the caller's call). */
static void tell_later(struct sw_txn *t, void (*done)(struct sw_txn *t, bool durable), bool durable)
{
    struct deferred *d = malloc(sizeof *d);
    struct timeval tv = { 0, 0 };
    if (d) {
        *d = (struct deferred){ t, done, durable };
        if (event_base_once(t->srv->base, -1, EV_TIMEOUT, on_deferred, d, &tv) == 0)
            return;
        free(d);
    }
    /* Nothing can be scheduled: the process is out of memory. Telling the caller now is the
     * lesser evil than never telling it. */
    done(t, durable);
}

/* Tells done "not durable" from the loop, after logging why. */
static void fail_later(struct sw_txn *t, void (*done)(struct sw_txn *t, bool durable),
                       const char *why)
{
    at_log(AT_LOG_ERROR, "advice_not_queued", AT_STR("reason", why),
           AT_STR("action", "stand-in approval not given"));
    tell_later(t, done, false);
}

void sw_advice_store(struct sw_txn *t, void (*done)(struct sw_txn *t, bool durable))
{
    struct sw_server *srv = t->srv;
    if (t->advice_stored) { /* asked again: one advice per stand-in approval, already durable */
        tell_later(t, done, true);
        return;
    }
    if (!srv->advice || srv->stopping) {
        fail_later(t, done, "switch stopping");
        return;
    }
    struct sw_link *l = link_of(srv, t->issuer.id);
    if (!l) {
        fail_later(t, done, "the issuer has no link to advise");
        return;
    }
    if (!t->v.pan || !t->auth_code[0] || (t->req.mti[1] != '1' && t->req.mti[1] != '2')) {
        fail_later(t, done, "incomplete stand-in decision (PAN, DE 38 or MTI class)");
        return;
    }
    struct adv_item *it = calloc(1, sizeof *it);
    if (!it || !set_pan(srv, it, t->v.pan, t->v.pan_len)) {
        free(it);
        fail_later(t, done, it ? "PAN cannot be sealed" : "out of memory");
        return;
    }
    /* The advice's own identity at the issuer, fixed now: every repeat carries the same, and
     * the journal row and a later reversal name it (t->issuer_stan, t->issuer_de7). */
    t->issuer_stan = sw_link_stan(l);
    sw_de7_now(t->issuer_de7);
    fill_from_txn(it, t);
    memcpy(it->stand_in_rc, at_is_digits(t->rc, 2, 2) ? t->rc : "00", 3);
    at_strlcpy(it->reason, "stand_in", sizeof it->reason);
    it->waiter = t;
    it->done = done;
    enqueue(srv, it);
}

/* A reversal of the advice of identity it (already filled), unless one is already queued: then
 * a waiting t joins the one being stored, or (answer set: a terminal's reversal) is answered 00
 * when it is durable. Returns true when it was queued or joined (t waits: pending_saf). */
static bool enqueue_reversal(struct sw_server *srv, struct adv_item *it, struct sw_txn *t,
                             bool answer)
{
    struct adv_item *x;
    TAILQ_FOREACH(x, &srv->advice->items, link)
    {
        if (!x->is_reversal || strcmp(x->request_date, it->request_date) != 0 ||
            strcmp(x->acquirer, it->acquirer) != 0 || strcmp(x->terminal, it->terminal) != 0 ||
            strcmp(x->stan, it->stan) != 0 || strcmp(x->de7, it->de7) != 0 ||
            x->mti[1] != it->mti[1])
            continue;
        free_item(it);
        if (t && !x->waiter && (x->state == ADV_UNSTORED || x->state == ADV_STORING)) {
            x->waiter = t;
            t->pending_saf = true;
            return true;
        }
        if (t && answer) {
            memcpy(t->rc, x->state == ADV_UNSTORED || x->state == ADV_STORING ? "96" : "00", 3);
            t->outcome = t->rc[0] == '0' ? SW_OUT_APPROVED : SW_OUT_ERROR;
        }
        return false;
    }
    if (t) {
        it->waiter = t;
        t->pending_saf = true;
    }
    enqueue(srv, it);
    return true;
}

void sw_advice_withdraw(struct sw_txn *t, bool wait)
{
    struct sw_server *srv = t->srv;
    if (!t->advice_stored || t->advice_withdrawn || !srv->advice || srv->stopping)
        return;
    t->advice_withdrawn = true;
    struct adv_item *it = calloc(1, sizeof *it);
    if (!it || !t->v.pan || !set_pan(srv, it, t->v.pan, t->v.pan_len)) {
        free(it);
        at_log(AT_LOG_ERROR, "advice_reversal_not_queued", AT_STR("reason", "out of memory"),
               AT_STR("action", "left to recovery at the next start"));
        return;
    }
    fill_from_txn(it, t);
    it->is_reversal = true;
    at_strlcpy(it->reason, "withdrawn", sizeof it->reason);
    at_log(AT_LOG_WARN, "stand_in_withdrawn", AT_STR("issuer", it->issuer_id),
           AT_STR("auth_code", it->auth_code), AT_STR("action", "advice reversal queued"));
    (void)enqueue_reversal(srv, it, wait && !t->pending_saf ? t : NULL, false);
}

bool sw_advice_is_stand_in(const char auth_code[6])
{
    if (auth_code[0] != 'S')
        return false;
    for (int i = 1; i < 6; i++)
        if (auth_code[i] < '0' || auth_code[i] > '9')
            return false;
    return true;
}

void sw_advice_reverse_original(struct sw_txn *t, const struct sw_recent_txn *orig)
{
    struct sw_server *srv = t->srv;
    struct adv_item *it = srv->advice && !srv->stopping ? calloc(1, sizeof *it) : NULL;
    if (!it || !set_pan(srv, it, t->v.pan, t->v.pan_len)) {
        free(it);
        at_log(AT_LOG_ERROR, "advice_reversal_not_queued",
               AT_STR("reason", it ? "PAN cannot be sealed" : "out of memory or stopping"));
        memcpy(t->rc, "96", 3);
        t->outcome = SW_OUT_ERROR;
        return;
    }
    db_request_date(orig->id.tx_time, at_wall_us(), it->request_date);
    at_strlcpy(it->acquirer, orig->id.acquirer, sizeof it->acquirer);
    memcpy(it->terminal, orig->id.terminal, 8);
    memcpy(it->stan, orig->id.stan, 6);
    memcpy(it->de7, orig->id.tx_time, 10);
    memcpy(it->mti, orig->mti, 4);
    at_strlcpy(it->issuer_id, orig->issuer_id, sizeof it->issuer_id);
    memcpy(it->issuer_stan, orig->issuer_stan, 6);
    memcpy(it->issuer_de7, orig->issuer_tx_time, 10);
    memcpy(it->rrn, orig->rrn, 12);
    memcpy(it->proc, orig->proc_code, 6);
    it->amount = orig->amount_minor;
    it->currency = orig->currency;
    sw_fx_from_recent(orig, &it->billing);
    memcpy(it->auth_code, orig->auth_code, 6);
    it->is_reversal = true;
    at_strlcpy(it->reason, "terminal", sizeof it->reason);
    it->orig = orig->id;
    it->has_orig = true;
    it->created_us = at_wall_us();
    (void)enqueue_reversal(srv, it, t, true);
}

/* ---------------------------------------------------------------- sending */

static void retry_later(struct adv_item *it)
{
    adv_set_state(it, ADV_IDLE);
}

static void settle(struct sw_server *srv, struct adv_item *it, enum adv_end end)
{
    it->end = end;
    if (end == ADV_END_ACKED)
        srv->metrics.advices_acked_total++;
    else
        srv->metrics.advices_failed_total++;
    adv_set_state(it, ADV_SETTLED);
    write_row(it);
    kick_issuer(srv, it->issuer_id); /* the issuer's next item goes now */
}

static const char *mti_of(const struct adv_item *it)
{
    static const char *const names[2][2][2] = {
        { { "0120", "0121" }, { "0220", "0221" } },
        { { "0420", "0421" }, { "0420", "0421" } },
    };
    return names[it->is_reversal][it->mti[1] == '2'][it->attempts > 1];
}

static void after_send(struct adv_item *it)
{
    adv_set_state(it, ADV_SENT);
    if (it->attempts == 1)
        write_row(it); /* after a restart it goes out as a repeat */
    at_log(AT_LOG_INFO, it->is_reversal ? "advice_reversal_sent" : "advice_sent",
           AT_INT("advice_id", it->advice_id), AT_STR("issuer", it->issuer_id),
           AT_STR("issuer_stan", it->issuer_stan), AT_UINT("attempt", it->attempts),
           AT_STR("mti", mti_of(it)));
}

static void on_mac(void *arg, int status, const char *resp, size_t len)
{
    struct adv_item *it = arg;
    if (it->state == ADV_ORPHAN) {
        free_item(it);
        return;
    }
    uint8_t mac[ISONET_MAC_LEN];
    if (status != HSM_CLIENT_OK || hsm_client_parse_mac8(resp, len, mac) != 0) {
        retry_later(it);
        return;
    }
    isonet_mac_patch(it->packed, &it->mac_at, mac);
    if (sw_link_send_advice(it->cur_link, it, it->cur_stan, it->packed, it->packed_len) != 0) {
        retry_later(it);
        return;
    }
    after_send(it);
}

/* Builds the item's message for link l into it->packed, with a MAC placeholder when the issuer
 * has a ZAK. An advice: its own DE 11 and DE 7 (fixed when stored), DE 38 the stand-in approval
 * code, DE 39 the decision's code, no DE 90. A reversal: a fresh STAN, DE 90 naming the advice
 * (its MTI, STAN, DE 7, the acquirer). Returns 1 (to be MACed), 0 (no ZAK) or -1. */
static int build(struct sw_server *srv, struct adv_item *it, struct sw_link *l)
{
    struct iso_msg m;
    uint8_t arena[256];
    char de7[11], de11[7], amount[13], cur[4], advice_mti[5];
    struct iso_err e;
    const char *zak = zak_of(srv, it->issuer_id);
    uint64_t v = 0;

    memcpy(advice_mti, it->mti[1] == '2' ? "0220" : "0120", 5);
    if (it->is_reversal) {
        it->cur_stan = sw_link_stan(l);
        sw_de7_now(de7);
    } else {
        if (!at_parse_u64(it->issuer_stan, 999999, &v) || v == 0)
            return -1;
        it->cur_stan = (uint32_t)v;
        memcpy(de7, it->issuer_de7, sizeof de7);
    }
    at_put_digits(de11, 6, it->cur_stan % 1000000u);
    de11[6] = '\0';
    at_put_digits(amount, 12, (uint64_t)it->amount);
    amount[12] = '\0';
    at_put_digits(cur, 3, (uint64_t)it->currency);
    cur[3] = '\0';
    iso_msg_init(&m, arena, sizeof arena);
    if (iso_set_mti(&m, mti_of(it)) != 0 || iso_set(&m, 2, it->pan, strlen(it->pan)) != 0 ||
        iso_set(&m, 3, it->proc, 6) != 0 || iso_set(&m, 4, amount, 12) != 0 ||
        iso_set(&m, 7, de7, 10) != 0 || iso_set(&m, 11, de11, 6) != 0 ||
        iso_set(&m, 32, it->acquirer, strlen(it->acquirer)) != 0 ||
        (it->rrn[0] && iso_set(&m, 37, it->rrn, strlen(it->rrn)) != 0) ||
        iso_set(&m, 38, it->auth_code, strlen(it->auth_code)) != 0 ||
        (!it->is_reversal && iso_set(&m, 39, it->stand_in_rc, 2) != 0) ||
        iso_set(&m, 41, it->terminal, 8) != 0 || iso_set(&m, 49, cur, 3) != 0 ||
        sw_fx_set_fields(&m, &it->billing) != 0)
        return -1;
    if (it->is_reversal) {
        struct isonet_de90 orig;
        isonet_de90_make(&orig, advice_mti, it->issuer_stan, it->issuer_de7, it->acquirer);
        if (isonet_de90_set(&m, &orig) != 0)
            return -1;
    }
    int rc = zak[0] ? isonet_pack_mac(l->dialect, &m, it->packed, sizeof it->packed,
                                      &it->packed_len, &it->mac_at, &e)
                    : iso_pack(l->dialect, &m, it->packed, sizeof it->packed, &it->packed_len, &e);
    if (rc != 0) {
        at_log(AT_LOG_ERROR, "advice_pack_failed", AT_INT("field", e.field),
               AT_STR("reason", e.reason));
        return -1;
    }
    return zak[0] ? 1 : 0;
}

static void send_item(struct sw_server *srv, struct adv_item *it, struct sw_link *l)
{
    char cmd[1200];
    it->attempts++;
    int mac = build(srv, it, l);
    if (mac < 0) {
        it->attempts--;
        at_log(AT_LOG_ERROR, "advice_failed", AT_STR("kind", kind_name(it)),
               AT_INT("advice_id", it->advice_id), AT_STR("issuer", it->issuer_id),
               AT_STR("reason", "the message cannot be built from the stored row"),
               AT_STR("action", "left in switch.advice_queue with state 'failed'"));
        settle(srv, it, ADV_END_FAILED);
        return;
    }
    it->cur_link = l;
    it->next_attempt_ms = sw_now_ms() + srv->conf.reversal_retry_ms;
    if (mac == 0) {
        if (sw_link_send_advice(l, it, it->cur_stan, it->packed, it->packed_len) == 0)
            after_send(it);
        return;
    }
    int n = hsm_client_build_mac(cmd, sizeof cmd, "008", zak_of(srv, it->issuer_id), it->packed,
                                 it->mac_at.off, NULL);
    if (n > 0 && hsm_client_submit(srv->hsm, cmd, (size_t)n, on_mac, it) == 0)
        adv_set_state(it, ADV_MACING);
}

/* The issuer's first item not yet settled is the only one that may go (one at a time per
 * issuer, in queue order): sends it when it is idle, due, and the link is up. */
static void drive_head(struct sw_server *srv, struct adv_item *it, uint64_t now)
{
    if (it->state == ADV_SENT && now >= it->next_attempt_ms) {
        /* No answer in time: forget that STAN and repeat. */
        if (it->cur_link)
            sw_link_forget(it->cur_link, it->cur_stan);
        retry_later(it);
    }
    if (it->state != ADV_IDLE || now < it->next_attempt_ms || srv->draining)
        return;
    struct sw_link *l = link_of(srv, it->issuer_id);
    if (l && l->state == SW_LINK_UP)
        send_item(srv, it, l);
}

static void kick_issuer(struct sw_server *srv, const char *issuer_id)
{
    struct adv_item *it;
    TAILQ_FOREACH(it, &srv->advice->items, link)
    {
        if (it->state == ADV_SETTLED || it->state == ADV_ORPHAN ||
            strcmp(it->issuer_id, issuer_id) != 0)
            continue;
        drive_head(srv, it, sw_now_ms());
        return;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sw_advq *q = arg;
    struct sw_server *srv = q->srv;
    uint64_t now = sw_now_ms();
    const char *heads[SW_MAX_ISSUERS];
    size_t n_heads = 0;
    struct adv_item *it, *next;
    if (q->load_retry_ms && now >= q->load_retry_ms)
        sw_advice_load(srv, q->load_done);
    for (it = TAILQ_FIRST(&q->items); it; it = next) {
        next = TAILQ_NEXT(it, link);
        if (it->row_dirty && !it->row_writing)
            write_row(it);
        if (it->state == ADV_UNSTORED && now >= it->next_store_ms && !store(it))
            continue; /* an advice that could not be stored: gone */
        if (it->state == ADV_SETTLED || it->state == ADV_ORPHAN)
            continue;
        bool seen = false;
        for (size_t i = 0; i < n_heads && !seen; i++)
            seen = strcmp(heads[i], it->issuer_id) == 0;
        /* Not its issuer's first; or an issuer without a link (none of its items can go): only
         * issuers with a link take a place, and there are at most SW_MAX_ISSUERS of them. */
        if (seen || !link_of(srv, it->issuer_id) || n_heads == SW_MAX_ISSUERS)
            continue;
        heads[n_heads++] = it->issuer_id;
        drive_head(srv, it, now);
    }
}

/* ---------------------------------------------------------------- answers */

bool sw_advice_answer_class_ok(const void *entry, const char mti[4])
{
    const struct adv_item *it = entry;
    if (it->is_reversal)
        return memcmp(mti, "043", 3) == 0;
    return mti[0] == '0' && mti[1] == it->mti[1] && mti[2] == '3';
}

static void accept_answer(struct sw_server *srv, struct adv_item *it)
{
    const char *rc = it->answer_rc;
    if (strcmp(rc, "00") == 0) {
        at_log(AT_LOG_INFO,
               it->is_reversal ? "advice_reversal_acknowledged" : "advice_acknowledged",
               AT_INT("advice_id", it->advice_id), AT_STR("issuer", it->issuer_id),
               AT_STR("issuer_stan", it->issuer_stan), AT_UINT("attempts", it->attempts));
        settle(srv, it, ADV_END_ACKED);
        return;
    }
    if (rc[0] == '\0' || strcmp(rc, "91") == 0 || strcmp(rc, "96") == 0) {
        at_log(AT_LOG_WARN, "advice_not_taken", AT_STR("kind", kind_name(it)),
               AT_INT("advice_id", it->advice_id), AT_STR("issuer", it->issuer_id),
               AT_STR("rc", rc));
        retry_later(it);
        return;
    }
    at_log(AT_LOG_ERROR, "advice_refused", AT_STR("kind", kind_name(it)),
           AT_INT("advice_id", it->advice_id), AT_STR("issuer", it->issuer_id),
           AT_STR("issuer_stan", it->issuer_stan), AT_STR("rc", rc),
           AT_STR("action", "left in switch.advice_queue with state 'failed'"));
    settle(srv, it, ADV_END_FAILED);
}

static void on_answer_mac(void *arg, int status, const char *resp, size_t len)
{
    struct adv_item *it = arg;
    if (it->state == ADV_ORPHAN) {
        free_item(it);
        return;
    }
    if (status == HSM_CLIENT_OK && hsm_client_resp_error("M8", resp, len) == 0) {
        accept_answer(it->srv, it);
        return;
    }
    /* A forged or damaged answer must not settle it: keep repeating. */
    at_log(AT_LOG_ERROR, "advice_answer_mac_invalid", AT_INT("advice_id", it->advice_id),
           AT_STR("issuer", it->issuer_id));
    retry_later(it);
}

void sw_advice_answer(struct sw_server *srv, void *entry, const struct iso_msg *m,
                      const uint8_t *raw, size_t raw_len)
{
    struct adv_item *it = entry;
    char rc[3] = "", cmd[2200];
    const char *zak = zak_of(srv, it->issuer_id);
    if (it->state != ADV_SENT)
        return;
    field_copy(m, 39, rc, sizeof rc);
    memcpy(it->answer_rc, rc, sizeof it->answer_rc);
    adv_set_state(it, ADV_CHECKING);
    if (!zak[0]) {
        accept_answer(srv, it);
        return;
    }
    struct isonet_mac at;
    int len = -1;
    if (it->cur_link && isonet_mac_locate(it->cur_link->dialect, m, raw_len, &at) == 0)
        len = hsm_client_build_mac(cmd, sizeof cmd, "008", zak, raw, at.off, at.value);
    if (len < 0 || hsm_client_submit(srv->hsm, cmd, (size_t)len, on_answer_mac, it) != 0) {
        at_log(AT_LOG_ERROR, "advice_answer_mac_invalid", AT_INT("advice_id", it->advice_id),
               AT_STR("issuer", it->issuer_id),
               AT_STR("reason", len < 0 ? "no MAC as the last field" : "HSM queue full"));
        retry_later(it);
    }
}

/* ---------------------------------------------------------------- start */

static void on_loaded(void *arg, const struct db_error *err, const struct db_advice *rows, size_t n)
{
    struct sw_server *srv = arg;
    struct sw_advq *q = srv->advice;
    if (err->code != 0) {
        at_log(AT_LOG_ERROR, "advice_queue_load_failed", AT_STR("error", err->message),
               AT_STR("action", "retrying"));
        q->load_retry_ms = sw_now_ms() + 1000;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct db_advice *r = &rows[i];
        struct adv_item *it = calloc(1, sizeof *it);
        if (!it)
            break;
        it->is_reversal = r->is_reversal;
        memcpy(it->request_date, r->id.request_date, sizeof it->request_date);
        at_strlcpy(it->acquirer, r->id.acquirer_id, sizeof it->acquirer);
        memcpy(it->terminal, r->id.terminal_id, sizeof it->terminal);
        memcpy(it->stan, r->id.stan, sizeof it->stan);
        memcpy(it->de7, r->id.transmission_time, sizeof it->de7);
        memcpy(it->mti, r->id.mti, sizeof it->mti);
        at_strlcpy(it->issuer_id, r->issuer_id, sizeof it->issuer_id);
        memcpy(it->issuer_stan, r->issuer_stan, sizeof it->issuer_stan);
        memcpy(it->issuer_de7, r->issuer_transmission_time, sizeof it->issuer_de7);
        memcpy(it->rrn, r->rrn, sizeof it->rrn);
        memcpy(it->proc, r->processing_code, sizeof it->proc);
        memcpy(it->auth_code, r->auth_code, sizeof it->auth_code);
        memcpy(it->stand_in_rc, r->stand_in_rc[0] ? r->stand_in_rc : "00", 3);
        at_strlcpy(it->reason, r->reason, sizeof it->reason);
        it->advice_id = r->advice_id;
        it->amount = r->amount_minor;
        it->currency = r->currency;
        it->billing = r->billing;
        it->attempts = r->attempts;
        it->created_us = r->queued_us;
        if (db_pan_open(srv->pan_seal_key, r->pan_sealed, r->pan_sealed_len, it->pan,
                        sizeof it->pan) < 0) {
            /* It stays pending in the table (and blocks nothing here): an operator's case. */
            at_log(AT_LOG_ERROR, "advice_pan_unsealable", AT_INT("advice_id", it->advice_id),
                   AT_STR("action", "left pending; check pan_seal_key"));
            free_item(it);
            continue;
        }
        it->srv = srv;
        it->state = ADV_IDLE;
        TAILQ_INSERT_TAIL(&q->items, it, link);
        q->count++;
    }
    at_log(AT_LOG_INFO, "advice_queue_loaded", AT_UINT("pending", n));
    if (q->load_done) {
        void (*done)(struct sw_server *) = q->load_done;
        q->load_done = NULL;
        done(srv);
    }
}

static void load_pending(struct sw_server *srv)
{
    if (db_advices_pending(srv->db, on_loaded, srv) != 0) {
        at_log(AT_LOG_ERROR, "advice_queue_load_failed", AT_STR("error", "database queue full"),
               AT_STR("action", "retrying"));
        srv->advice->load_retry_ms = sw_now_ms() + 1000;
    }
}

static void on_recovered(void *arg, const struct db_error *err, int64_t reversed, int64_t settled)
{
    struct sw_server *srv = arg;
    (void)settled;
    if (err->code != 0) {
        at_log(AT_LOG_ERROR, "advice_recovery_failed", AT_STR("error", err->message),
               AT_STR("action", "retrying"));
        srv->advice->load_retry_ms = sw_now_ms() + 1000;
        return;
    }
    if (reversed > 0)
        at_log(AT_LOG_WARN, "advices_recovered", AT_INT("reversals_queued", reversed),
               AT_STR("reason", "stand-in approvals the journal does not hold"));
    load_pending(srv);
}

void sw_advice_load(struct sw_server *srv, void (*done)(struct sw_server *srv))
{
    srv->advice->load_retry_ms = 0;
    srv->advice->load_done = done;
    if (db_recover_advices(srv->db, srv->conf.instance_id, on_recovered, srv) != 0) {
        at_log(AT_LOG_ERROR, "advice_recovery_failed", AT_STR("error", "database queue full"),
               AT_STR("action", "retrying"));
        srv->advice->load_retry_ms = sw_now_ms() + 1000;
    }
}

int sw_advice_init(struct sw_server *srv)
{
    struct sw_advq *q = calloc(1, sizeof *q);
    if (!q)
        return -1;
    q->srv = srv;
    TAILQ_INIT(&q->items);
    q->tick = event_new(srv->base, -1, EV_PERSIST, on_tick, q);
    struct timeval tv = { 0, TICK_MS * 1000 };
    if (!q->tick || event_add(q->tick, &tv) != 0) {
        if (q->tick)
            event_free(q->tick);
        free(q);
        return -1;
    }
    srv->advice = q;
    return 0;
}

void sw_advice_free(struct sw_server *srv)
{
    struct sw_advq *q = srv->advice;
    if (!q)
        return;
    event_free(q->tick);
    /* The journal and the database client are freed first (main.c): their callbacks have run.
     * Row changes not committed are lost: those items go out again after the next start (the
     * issuer answers repeats; exactly once is its request key). SIGTERM's drain waits for
     * them first. */
    srv->advice = NULL;
    while (!TAILQ_EMPTY(&q->items)) {
        struct adv_item *it = TAILQ_FIRST(&q->items);
        TAILQ_REMOVE(&q->items, it, link);
        if (it->state == ADV_MACING || it->state == ADV_CHECKING)
            it->state = ADV_ORPHAN;
        else if (!it->row_writing)
            free_item(it);
        /* else: freed by on_row_written (srv->advice is NULL by then) */
    }
    free(q);
}
