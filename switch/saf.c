/* Store-and-forward of reversals. An item lives in memory from the moment a
 * reversal is decided until its row says it is settled. Its lifecycle is
 * enum saf_state below; saf_set_state() is the only door and aborts on a
 * move the table does not allow.
 *
 * Durable first: the item's REVERSAL record goes through the journal writer
 * (one transaction with the journal rows of the same moment, or the spool
 * while PostgreSQL is away: replayed exactly once, the queue's unique key
 * makes a replay harmless); it is sent only once durable: 0420 first, 0421 on
 * every repeat, until an 0430 whose MAC verifies: 00 acknowledges it, 91/96
 * (or no code) mean "try later", anything else parks it as failed for an
 * operator. A txn may wait for the record to be durable (its 91 is answered
 * after it); this file tells it through sw_txn_reversal_stored(), never from
 * inside the caller's stack. Later changes of a row (attempt counts,
 * acknowledged, failed) are batched: one UPDATE at a time carries every
 * change waiting, rows named by the request identity.
 * The PAN travels in DE 2, so the row holds it sealed (AES-256-GCM,
 * db_pan_seal) beside its mask and HMAC; the clear PAN exists only in memory. */
#include "saf.h"

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

/* Where a reversal is. */
enum saf_state {
    SAF_UNSTORED, /* decided; its record is not durable yet (submitted again at next_store_ms) */
    SAF_STORING,  /* its REVERSAL record is with the journal writer */
    SAF_IDLE,     /* durable: sent at next_attempt_ms while the issuer's link is up */
    SAF_MACING,   /* the HSM is MACing its 0420/0421 */
    SAF_SENT,     /* sent; waiting for the 0430 until next_attempt_ms */
    SAF_CHECKING, /* an 0430 arrived; the HSM is verifying its MAC */
    SAF_SETTLED,  /* acknowledged or failed: its row's UPDATE is queued or in flight */
    SAF_ORPHAN,   /* off the queue while an HSM command for it was out: that callback frees it */
    SAF_state_max
};

static const char *const state_names[SAF_state_max] = {
    "unstored", "storing", "idle", "macing", "sent", "checking", "settled", "orphan",
};

#define B(s) (1u << (s))
/* allowed[to] = the states an item may come from. */
static const unsigned allowed[SAF_state_max] = {
    [SAF_UNSTORED] = B(SAF_STORING),
    [SAF_STORING] = B(SAF_UNSTORED),
    [SAF_IDLE] = B(SAF_STORING) | B(SAF_MACING) | B(SAF_SENT) | B(SAF_CHECKING),
    [SAF_MACING] = B(SAF_IDLE),
    [SAF_SENT] = B(SAF_IDLE) | B(SAF_MACING),
    [SAF_CHECKING] = B(SAF_SENT),
    [SAF_SETTLED] = B(SAF_IDLE) | B(SAF_SENT) | B(SAF_CHECKING),
    [SAF_ORPHAN] = B(SAF_MACING) | B(SAF_CHECKING),
};
#undef B

/* What an item's row becomes once settled. */
enum saf_end { SAF_END_NONE, SAF_END_ACKED, SAF_END_FAILED };

struct saf_item {
    LIST_ENTRY(saf_item) link; /* sw_saf.items */
    struct sw_server *srv;
    enum saf_state state;
    enum saf_end end;
    int64_t reversal_id; /* known for rows loaded at start; logs only */
    unsigned store_failures;
    uint64_t next_store_ms;
    /* A terminal reversal: its original's identity, marked reversed once durable. */
    bool has_orig;
    struct sw_req_id orig;
    struct sw_txn *waiter; /* txn whose answer waits until the record is durable */
    bool settles_inflight; /* the reversal of the txn's own forwarded request */
    /* the row */
    char request_date[11], acquirer[12], terminal[9], stan[7], de7[11], mti[5];
    char issuer_id[33], issuer_stan[7], issuer_de7[11], rrn[13], proc[7], auth_code[7];
    char pan[20];
    uint8_t pan_hmac[32], pan_sealed[DB_PAN_SEALED_MAX];
    uint8_t pan_sealed_len;
    int64_t amount;
    int currency;
    struct db_billing billing; /* the original's DE 6/10/51: repeated, never converted again */
    char reason[16];
    uint64_t created_us;
    /* sending */
    unsigned attempts;
    uint64_t next_attempt_ms;
    uint32_t cur_stan;
    struct sw_link *cur_link;
    char zak[SW_KEY_TEXT]; /* the ZAK it went under: its 0430 is checked under the same (a key
                              change in between, docs/keys.md) */
    char answer_rc[3];     /* DE 39 of the 0430 (being checked, then recorded) */
    uint8_t packed[512];
    size_t packed_len;
    struct isonet_mac mac_at; /* where the MAC goes in packed (with a ZAK) */
    /* row updates */
    struct saf_item *write_next;
    bool write_queued; /* on the write list */
    bool writing;      /* in the UPDATE in flight */
};

struct sw_saf {
    struct sw_server *srv;
    LIST_HEAD(, saf_item) items;
    uint64_t count;
    uint64_t settled;  /* items SETTLED (waiting for their UPDATE) */
    uint64_t unstored; /* items UNSTORED or STORING */
    struct event *tick;
    bool loaded;
    uint64_t load_retry_ms; /* non-zero: load again at this time */
    void (*load_done)(struct sw_server *srv);
    /* Several instances (docs/switchd.md "Instances"): the queue is claimed again every
     * lease_ms / 3 — this instance's lease renewed, rows no live instance holds taken over. */
    uint64_t next_claim_ms;
    bool claiming;
    /* Row updates: items in the order their rows changed, at most one UPDATE
     * in flight (the others gather behind it: group commit). */
    struct saf_item *write_head, *write_tail;
    size_t write_n;
    struct event *write_ev; /* the write window, or the retry backoff */
    struct write_batch *writing;
    unsigned write_failures;
};

static void saf_set_state(struct saf_item *it, enum saf_state to)
{
    if (to >= SAF_state_max || !(allowed[to] & (1u << it->state))) {
        /* A reversal that moves where it cannot is a bug: stop before money is lost. */
        at_log(AT_LOG_ERROR, "reversal_bad_transition", AT_STR("from", state_names[it->state]),
               AT_STR("to", to < SAF_state_max ? state_names[to] : "?"));
        at_log_flush();
        abort();
    }
    struct sw_saf *q = it->srv->saf;
    bool was_unstored = it->state == SAF_UNSTORED || it->state == SAF_STORING;
    bool is_unstored = to == SAF_UNSTORED || to == SAF_STORING;
    if (q && was_unstored != is_unstored)
        q->unstored += is_unstored ? 1 : (uint64_t)-1;
    if (q && to == SAF_SETTLED)
        q->settled++;
    if (at_log_enabled(AT_LOG_DEBUG))
        at_log(AT_LOG_DEBUG, "reversal_state", AT_STR("from", state_names[it->state]),
               AT_STR("to", state_names[to]), AT_STR("issuer_stan", it->issuer_stan));
    it->state = to;
}

/* ---------------------------------------------------------------- the list */

static void add_item(struct sw_saf *q, struct saf_item *it)
{
    LIST_INSERT_HEAD(&q->items, it, link);
    q->count++;
    if (it->state == SAF_UNSTORED || it->state == SAF_STORING)
        q->unstored++;
}

static void free_item(struct saf_item *it)
{
    OPENSSL_cleanse(it->pan, sizeof it->pan);
    free(it);
}

/* Takes it off the queue and frees it — or, while an HSM command for it is
 * outstanding, leaves the freeing to that callback. */
static void remove_item(struct sw_saf *q, struct saf_item *it)
{
    LIST_REMOVE(it, link);
    q->count--;
    if (it->state == SAF_UNSTORED || it->state == SAF_STORING)
        q->unstored--;
    if (it->state == SAF_SETTLED)
        q->settled--;
    if (it->state == SAF_MACING || it->state == SAF_CHECKING) {
        saf_set_state(it, SAF_ORPHAN);
        return;
    }
    free_item(it);
}

uint64_t sw_saf_pending(const struct sw_server *srv)
{
    return srv->saf ? srv->saf->count - srv->saf->settled : 0;
}

/* ---------------------------------------------------------------- durable first */

static void store(struct saf_item *it);
static struct sw_link *link_of(struct sw_server *srv, const char *issuer_id);
static void send_item(struct sw_server *srv, struct saf_item *it, struct sw_link *l);

/* Tells the txn waiting for this item whether it is durable. Runs from a
 * journal callback or the loop, never inside txn code. */
static void notify_waiter(struct saf_item *it, bool durable)
{
    struct sw_txn *t = it->waiter;
    if (!t)
        return;
    it->waiter = NULL;
    sw_txn_reversal_stored(t, durable);
}

static void on_stored(void *arg, int status)
{
    struct saf_item *it = arg;
    struct sw_server *srv = it->srv;
    if (status == DB_OK || status == DB_SPOOLED) {
        saf_set_state(it, SAF_IDLE);
        it->store_failures = 0;
        if (it->has_orig) {
            struct sw_recent_txn *o = sw_recent_find(srv->recent, &it->orig, sw_now_ms());
            if (o)
                o->state = SW_RECENT_REVERSED;
        }
        srv->metrics.reversals_queued_total++;
        at_log(AT_LOG_INFO, "reversal_queued", AT_STR("issuer", it->issuer_id),
               AT_STR("issuer_stan", it->issuer_stan), AT_STR("reason", it->reason),
               AT_STR("where", status == DB_OK ? "database" : "spool"));
        /* Durable: it goes out now rather than at the next tick (up to TICK_MS later), so that
         * the issuer hears of it as soon as the terminal does. */
        struct sw_link *l = srv->draining ? NULL : link_of(srv, it->issuer_id);
        if (l && l->state == SW_LINK_UP && it->next_attempt_ms <= sw_now_ms())
            send_item(srv, it, l);
        notify_waiter(it, true);
        return;
    }
    /* Not durable: keep it, try again later, never drop it. */
    saf_set_state(it, SAF_UNSTORED);
    it->store_failures++;
    uint64_t backoff = 100u << (it->store_failures < 8 ? it->store_failures : 8);
    it->next_store_ms = sw_now_ms() + backoff;
    at_log(AT_LOG_ERROR, "reversal_not_durable", AT_STR("error", db_strerror(status)),
           AT_STR("issuer", it->issuer_id), AT_STR("issuer_stan", it->issuer_stan),
           AT_UINT("retry_ms", backoff));
    notify_waiter(it, false);
}

static void fill_reversal_record(const struct saf_item *it, struct db_auth_record *r)
{
    db_auth_record_init(r);
    r->kind = DB_REC_REVERSAL;
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
    at_mask_pan(it->pan, strlen(it->pan), r->pan_masked);
    memcpy(r->pan_hmac, it->pan_hmac, 32);
    r->has_pan_hmac = true;
    memcpy(r->pan_sealed, it->pan_sealed, it->pan_sealed_len);
    r->pan_sealed_len = it->pan_sealed_len;
    r->settle_inflight = it->settles_inflight;
    at_strlcpy(r->reason, it->reason, sizeof r->reason);
    r->outcome = DB_OUTCOME_APPROVED; /* unused for reversals */
    r->created_us = it->created_us;
}

/* Hands the item's record to the journal writer. A refusal at submit
 * (queue full, draining) leaves it UNSTORED for the next tick. */
static void store(struct saf_item *it)
{
    struct sw_server *srv = it->srv;
    struct db_auth_record rec;
    fill_reversal_record(it, &rec);
    saf_set_state(it, SAF_STORING);
    int rc = srv->journal && !srv->stopping ? db_journal_submit(srv->journal, &rec, on_stored, it)
                                            : DB_E_CLOSED;
    if (rc == 0)
        return;
    struct db_error err;
    if (rc == DB_E_INVALID && db_auth_record_check(&rec, &err) != 0)
        at_log(AT_LOG_ERROR, "reversal_record_invalid", AT_STR("reason", err.message));
    saf_set_state(it, SAF_UNSTORED);
    it->next_store_ms = sw_now_ms() + 200;
}

/* A new item (calloc'd, row fields filled) joins the queue and is stored; a
 * waiting txn is told later, never from inside this call. */
static void enqueue(struct sw_server *srv, struct saf_item *it, struct sw_txn *waiter)
{
    it->srv = srv;
    it->state = SAF_UNSTORED;
    add_item(srv->saf, it);
    if (waiter) {
        it->waiter = waiter;
        waiter->pending_saf = true;
    }
    it->next_store_ms = 0;
    event_active(srv->saf->tick, 0, 0); /* stored from the loop */
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

/* Fills the PAN and its protected forms; false when the PAN cannot be sealed. */
static bool set_pan(struct sw_server *srv, struct saf_item *it, const uint8_t *pan, size_t len)
{
    if (len >= sizeof it->pan)
        return false;
    memcpy(it->pan, pan, len);
    it->pan[len] = '\0';
    return sw_pan_protect(srv, it->pan, len, it->pan_hmac, it->pan_sealed, &it->pan_sealed_len) ==
           0;
}

void sw_saf_reverse_txn(struct sw_txn *t, const char *reason, bool wait)
{
    struct sw_server *srv = t->srv;
    char buf[16];
    uint64_t v;

    if (t->reversing || srv->stopping || !t->forwarded)
        return; /* what never reached an issuer needs no reversal */
    t->reversing = true;
    if (!t->v.pan || t->issuer_stan == 0) {
        at_log(AT_LOG_ERROR, "reversal_not_queued", AT_STR("reason", "incomplete transaction"));
        return;
    }
    struct saf_item *it = calloc(1, sizeof *it);
    if (!it || !set_pan(srv, it, t->v.pan, t->v.pan_len)) {
        /* The in-flight row (write-ahead) stays: the next start reverses it. */
        at_log(AT_LOG_ERROR, "reversal_not_queued",
               AT_STR("reason", it ? "PAN cannot be sealed" : "out of memory"),
               AT_STR("action", "left to recovery at the next start"));
        free(it);
        return;
    }
    db_request_date(t->de7, t->t_wall_us, it->request_date);
    at_strlcpy(it->acquirer, t->acquirer, sizeof it->acquirer);
    field_copy(&t->req, 41, it->terminal, sizeof it->terminal);
    field_copy(&t->req, 11, it->stan, sizeof it->stan);
    memcpy(it->de7, t->de7, sizeof it->de7);
    memcpy(it->mti, t->req.mti, 4);
    at_strlcpy(it->issuer_id, t->issuer.id, sizeof it->issuer_id);
    at_put_digits(it->issuer_stan, 6, t->issuer_stan);
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
    memcpy(it->auth_code, t->auth_code, sizeof it->auth_code);
    at_strlcpy(it->reason, reason, sizeof it->reason);
    it->settles_inflight = t->intent_sent;
    it->created_us = at_wall_us();
    enqueue(srv, it, wait ? t : NULL);
}

void sw_saf_reverse_original(struct sw_txn *t, const struct sw_recent_txn *orig)
{
    sw_saf_reverse_leg(t->srv, t, orig, (const char *)t->v.pan, t->v.pan_len, "terminal");
}

void sw_saf_reverse_leg(struct sw_server *srv, struct sw_txn *t, const struct sw_recent_txn *orig,
                        const char *pan, size_t pan_len, const char *reason)
{
    /* A repeat of a terminal reversal still being stored waits for the same item. */
    for (struct saf_item *x = LIST_FIRST(&srv->saf->items); x && t && !srv->stopping;
         x = LIST_NEXT(x, link)) {
        if (x->has_orig && !x->waiter && memcmp(&x->orig, &orig->id, sizeof x->orig) == 0 &&
            (x->state == SAF_UNSTORED || x->state == SAF_STORING)) {
            x->waiter = t;
            t->pending_saf = true;
            return;
        }
    }
    struct saf_item *it = srv->stopping ? NULL : calloc(1, sizeof *it);
    if (!it || !set_pan(srv, it, (const uint8_t *)pan, pan_len)) {
        free(it);
        at_log(AT_LOG_ERROR, "reversal_not_queued",
               AT_STR("reason", it ? "PAN cannot be sealed" : "out of memory"));
        if (t) {
            memcpy(t->rc, "96", 3);
            t->outcome = SW_OUT_ERROR;
        }
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
    at_strlcpy(it->reason, reason, sizeof it->reason);
    it->orig = orig->id;
    it->has_orig = true;
    it->created_us = at_wall_us();
    enqueue(srv, it, t);
}

/* ---------------------------------------------------------------- batched row updates */

/* Row changes (an attempt counted, acknowledged, failed) gather for up to
 * WRITE_DELAY_MS, or behind the UPDATE in flight, and go as one statement of
 * at most WRITE_BATCH rows: one commit for all of them rather than one each
 * (docs/BENCHMARKS.md). No answer waits for them. The window only widens the
 * time in which a crash makes a reversal go out once more after the restart,
 * which the at-least-once contract allows (the issuer answers repeats). An
 * UPDATE that does not commit is retried with backoff; settled items stay in
 * memory, never sent, until theirs commits. Rows are named by the request
 * identity (a reversal queued live does not know its reversal_id), and no
 * UPDATE runs while the journal's spool holds records not yet replayed: the
 * row of a reversal stored there does not exist in the table yet. */
#define WRITE_BATCH    256
#define WRITE_DELAY_MS 10

struct write_batch {
    struct sw_saf *q;
    size_t n;
    struct saf_item *items[WRITE_BATCH];
    bool settles[WRITE_BATCH]; /* the row written was final (acked or failed) */
    struct db_reversal_change ch[WRITE_BATCH];
};

static void flush_writes(evutil_socket_t fd, short what, void *arg);

static void arm_writes(struct sw_saf *q, uint64_t delay_ms)
{
    struct timeval tv = { (time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000 };
    evtimer_add(q->write_ev, &tv);
}

/* Puts it on the write list, once: its row is to take the item's attempts
 * and end state, whatever they are when the UPDATE is built. */
static void queue_write(struct sw_saf *q, struct saf_item *it)
{
    if (it->write_queued)
        return;
    it->write_queued = true;
    it->write_next = NULL;
    if (q->write_tail)
        q->write_tail->write_next = it;
    else
        q->write_head = it;
    q->write_tail = it;
    q->write_n++;
    /* The UPDATE in flight arms the timer when it ends; an armed timer (the
     * window already running, or a retry backoff) stands. */
    if (!q->writing && !evtimer_pending(q->write_ev, NULL))
        arm_writes(q, WRITE_DELAY_MS);
}

static struct saf_item *pop_write(struct sw_saf *q)
{
    struct saf_item *it = q->write_head;
    q->write_head = it->write_next;
    if (!q->write_head)
        q->write_tail = NULL;
    it->write_next = NULL;
    it->write_queued = false;
    q->write_n--;
    return it;
}

/* Back at the head of the list: an UPDATE that did not commit. */
static void requeue_write(struct sw_saf *q, struct saf_item *it)
{
    if (it->write_queued) /* changed again meanwhile: already queued */
        return;
    it->write_queued = true;
    it->write_next = q->write_head;
    q->write_head = it;
    if (!q->write_tail)
        q->write_tail = it;
    q->write_n++;
}

/* The UPDATE of b ended: on commit, settled items leave memory; otherwise
 * every item goes back on the list and the list is tried again later. */
static void on_written(void *arg, const struct db_error *err)
{
    struct write_batch *b = arg;
    struct sw_saf *q = b->q;
    struct sw_server *srv = q->srv;
    uint64_t delay = 0;
    q->writing = NULL;
    if (err->code == 0) {
        q->write_failures = 0;
        srv->metrics.reversal_updates_total++;
        srv->metrics.reversal_updated_rows_total += b->n;
        for (size_t i = 0; i < b->n; i++) {
            b->items[i]->writing = false;
            if (b->settles[i])
                remove_item(q, b->items[i]);
        }
    } else {
        q->write_failures++;
        delay = 100u << (q->write_failures < 6 ? q->write_failures : 6);
        at_log(AT_LOG_ERROR, "reversal_update_failed", AT_STR("error", err->message),
               AT_STR("sqlstate", err->sqlstate), AT_UINT("rows", b->n),
               AT_UINT("retry_ms", delay));
        for (size_t i = b->n; i-- > 0;) {
            b->items[i]->writing = false;
            requeue_write(q, b->items[i]);
        }
    }
    free(b);
    if (q->write_head)
        arm_writes(q, delay); /* what gathered meanwhile has waited long enough */
}

static void item_id(const struct saf_item *it, struct db_request_id *id)
{
    memcpy(id->request_date, it->request_date, sizeof id->request_date);
    at_strlcpy(id->acquirer_id, it->acquirer, sizeof id->acquirer_id);
    memcpy(id->terminal_id, it->terminal, sizeof id->terminal_id);
    memcpy(id->stan, it->stan, sizeof id->stan);
    memcpy(id->transmission_time, it->de7, sizeof id->transmission_time);
    memcpy(id->mti, it->mti, sizeof id->mti);
}

/* Whether no UPDATE may start now: one is in flight, nothing waits, the
 * switch is stopping or has no database — or the journal's spool holds
 * records not yet replayed (a row named may be among them): then the list
 * is tried again shortly. */
static bool writes_held(struct sw_saf *q)
{
    struct sw_server *srv = q->srv;
    if (q->writing || !q->write_head || srv->stopping || !srv->db)
        return true;
    if (srv->journal && db_journal_replay_pending(srv->journal)) {
        arm_writes(q, 200);
        return true;
    }
    return false;
}

/* The change its row is to take: its attempts and end state as they are
 * now, the row named by the request identity. */
static void fill_change(const struct saf_item *it, struct db_reversal_change *c)
{
    static const enum db_reversal_state ends[] = { DB_REVERSAL_PENDING, DB_REVERSAL_ACKED,
                                                   DB_REVERSAL_FAILED };
    item_id(it, &c->id);
    c->attempts = it->attempts;
    c->state = ends[it->end];
    memcpy(c->response_code, it->answer_rc, sizeof c->response_code);
}

/* Takes up to WRITE_BATCH items off the write list into a new batch, each
 * marked as being written. NULL when out of memory (the list is left as it
 * was). */
static struct write_batch *take_batch(struct sw_saf *q)
{
    struct write_batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->q = q;
    while (b->n < WRITE_BATCH && q->write_head) {
        struct saf_item *it = pop_write(q);
        fill_change(it, &b->ch[b->n]);
        it->writing = true;
        b->settles[b->n] = it->end != SAF_END_NONE;
        b->items[b->n++] = it;
    }
    return b;
}

/* Writes the rows of the items on the write list, up to WRITE_BATCH, with
 * one UPDATE (one transaction): db_reversals_update. on_written follows. */
static void flush_writes(evutil_socket_t fd, short what, void *arg)
{
    struct sw_saf *q = arg;
    if (writes_held(q))
        return;
    struct write_batch *b = take_batch(q);
    if (!b) {
        arm_writes(q, 100);
        return;
    }
    q->writing = b;
    int rc = db_reversals_update(q->srv->db, b->ch, b->n, on_written, b);
    if (rc != 0) {
        const struct db_error failed = { .code = rc, .message = "database queue full" };
        on_written(b, &failed); /* from the loop: nothing to unwind */
    }
}

uint64_t sw_saf_unwritten(const struct sw_server *srv)
{
    const struct sw_saf *q = srv->saf;
    return q ? q->unstored + q->write_n + (q->writing ? q->writing->n : 0) : 0;
}

/* ---------------------------------------------------------------- sending */

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

/* Back to IDLE: the next attempt is due at its retry time. */
static void retry_later(struct saf_item *it)
{
    saf_set_state(it, SAF_IDLE);
}

static void after_send(struct saf_item *it)
{
    saf_set_state(it, SAF_SENT);
    queue_write(it->srv->saf, it); /* after a restart, a repeat goes out as 0421 */
    at_log(AT_LOG_INFO, "reversal_sent", AT_INT("reversal_id", it->reversal_id),
           AT_STR("issuer", it->issuer_id), AT_STR("issuer_stan", it->issuer_stan),
           AT_UINT("attempt", it->attempts), AT_STR("mti", it->attempts > 1 ? "0421" : "0420"));
}

static void on_saf_mac(void *arg, int status, const char *resp, size_t len)
{
    struct saf_item *it = arg;
    if (it->state == SAF_ORPHAN) { /* shut down while the HSM worked */
        free_item(it);
        return;
    }
    uint8_t mac[ISONET_MAC_LEN];
    if (status != HSM_CLIENT_OK || hsm_client_parse_mac8(resp, len, mac) != 0) {
        retry_later(it);
        return;
    }
    isonet_mac_patch(it->packed, &it->mac_at, mac);
    if (sw_link_send_saf(it->cur_link, it, it->cur_stan, it->packed, it->packed_len) != 0) {
        retry_later(it);
        return;
    }
    after_send(it);
}

/* Builds the item's 0420 (0421 once it was sent) for link l into it->packed, with a MAC
 * placeholder when the issuer has a ZAK. DE 90 names the original as the issuer saw it: its MTI,
 * the issuer-side STAN and DE 7, the acquirer. Returns 1 (to be MACed), 0 (no ZAK) or -1. */
static int build_reversal(struct sw_server *srv, struct saf_item *it, struct sw_link *l)
{
    struct iso_msg m;
    uint8_t arena[256];
    char de7[11], de11[7], amount[13], cur[4];
    struct iso_err e;
    struct isonet_de90 orig;
    const char *zak = zak_of(srv, it->issuer_id);

    at_strlcpy(it->zak, zak, sizeof it->zak);
    it->cur_stan = sw_link_stan(l);
    sw_de7_now(de7);
    at_put_digits(de11, 6, it->cur_stan % 1000000u);
    de11[6] = '\0';
    at_put_digits(amount, 12, (uint64_t)it->amount);
    amount[12] = '\0';
    at_put_digits(cur, 3, (uint64_t)it->currency);
    cur[3] = '\0';
    isonet_de90_make(&orig, it->mti, it->issuer_stan, it->issuer_de7, it->acquirer);
    iso_msg_init(&m, arena, sizeof arena);
    if (iso_set_mti(&m, it->attempts > 0 ? "0421" : "0420") != 0 ||
        iso_set(&m, 2, it->pan, strlen(it->pan)) != 0 || iso_set(&m, 3, it->proc, 6) != 0 ||
        iso_set(&m, 4, amount, 12) != 0 || iso_set(&m, 7, de7, 10) != 0 ||
        iso_set(&m, 11, de11, 6) != 0 || iso_set(&m, 32, it->acquirer, strlen(it->acquirer)) != 0 ||
        (it->rrn[0] && iso_set(&m, 37, it->rrn, strlen(it->rrn)) != 0) ||
        (it->auth_code[0] && iso_set(&m, 38, it->auth_code, strlen(it->auth_code)) != 0) ||
        iso_set(&m, 41, it->terminal, 8) != 0 || iso_set(&m, 49, cur, 3) != 0 ||
        sw_fx_set_fields(&m, &it->billing) != 0 || isonet_de90_set(&m, &orig) != 0)
        return -1;
    int rc = zak[0] ? isonet_pack_mac(l->dialect, &m, it->packed, sizeof it->packed,
                                      &it->packed_len, &it->mac_at, &e)
                    : iso_pack(l->dialect, &m, it->packed, sizeof it->packed, &it->packed_len, &e);
    if (rc != 0) {
        at_log(AT_LOG_ERROR, "reversal_pack_failed", AT_INT("field", e.field),
               AT_STR("reason", e.reason));
        return -1;
    }
    return zak[0] ? 1 : 0;
}

/* Settles it for good: acknowledged, or failed (parked for an operator:
 * never sent again). Either way it leaves memory once its row says so. */
static void settle(struct sw_server *srv, struct saf_item *it, enum saf_end end)
{
    it->end = end;
    saf_set_state(it, SAF_SETTLED);
    queue_write(srv->saf, it);
}

static void send_item(struct sw_server *srv, struct saf_item *it, struct sw_link *l)
{
    char cmd[1200];
    int mac = build_reversal(srv, it, l);
    if (mac < 0) {
        at_log(AT_LOG_ERROR, "reversal_failed", AT_INT("reversal_id", it->reversal_id),
               AT_STR("issuer", it->issuer_id),
               AT_STR("reason", "the reversal message cannot be built from the stored row"),
               AT_STR("action", "left in switch.reversal_queue with state 'failed'"));
        settle(srv, it, SAF_END_FAILED);
        return;
    }
    it->attempts++;
    it->cur_link = l;
    it->next_attempt_ms = sw_now_ms() + srv->conf.reversal_retry_ms;
    if (mac == 0) {
        if (sw_link_send_saf(l, it, it->cur_stan, it->packed, it->packed_len) == 0)
            after_send(it);
        return;
    }
    int n = hsm_client_build_mac(cmd, sizeof cmd, "008", it->zak, it->packed, it->mac_at.off, NULL);
    if (n > 0 && hsm_client_submit(srv->hsm, cmd, (size_t)n, on_saf_mac, it) == 0)
        saf_set_state(it, SAF_MACING);
}

static void claim(struct sw_server *srv);

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sw_saf *q = arg;
    struct sw_server *srv = q->srv;
    uint64_t now = sw_now_ms();
    struct saf_item *next;
    if (q->load_retry_ms && now >= q->load_retry_ms)
        sw_saf_load(srv, q->load_done);
    else if (q->loaded && !q->claiming && !srv->draining && now >= q->next_claim_ms)
        claim(srv); /* (a draining instance takes nothing over: it would leave it claimed) */
    for (struct saf_item *it = LIST_FIRST(&q->items); it; it = next) {
        next = LIST_NEXT(it, link);
        switch (it->state) {
        case SAF_UNSTORED:
            if (now >= it->next_store_ms)
                store(it);
            break;
        case SAF_SENT:
            if (now < it->next_attempt_ms)
                break;
            /* No 0430 in time: forget that STAN and repeat as 0421. */
            if (it->cur_link)
                sw_link_forget(it->cur_link, it->cur_stan);
            retry_later(it);
            /* fall through */
        case SAF_IDLE: {
            if (now < it->next_attempt_ms || srv->draining)
                break;
            struct sw_link *l = link_of(srv, it->issuer_id);
            if (l && l->state == SW_LINK_UP)
                send_item(srv, it, l);
            break;
        }
        default:
            break;
        }
    }
}

/* An authenticated answer to a reversal, its DE 39 in it->answer_rc: 00
 * acknowledges it; 91/96 (or none) mean "try later"; any other code is the
 * issuer refusing it, which repeating will not change: parked as failed, for
 * an operator (atlas-reconcile reports it). */
static void accept_answer(struct sw_server *srv, struct saf_item *it)
{
    const char *rc = it->answer_rc;
    if (strcmp(rc, "00") == 0) {
        settle(srv, it, SAF_END_ACKED);
        at_log(AT_LOG_INFO, "reversal_acknowledged", AT_INT("reversal_id", it->reversal_id),
               AT_STR("issuer", it->issuer_id), AT_STR("issuer_stan", it->issuer_stan),
               AT_STR("rc", rc), AT_UINT("attempts", it->attempts));
        srv->metrics.reversals_acked_total++;
        return;
    }
    if (rc[0] == '\0' || strcmp(rc, "91") == 0 || strcmp(rc, "96") == 0) {
        at_log(AT_LOG_WARN, "reversal_not_taken", AT_INT("reversal_id", it->reversal_id),
               AT_STR("issuer", it->issuer_id), AT_STR("rc", rc));
        retry_later(it);
        return;
    }
    at_log(AT_LOG_ERROR, "reversal_refused", AT_INT("reversal_id", it->reversal_id),
           AT_STR("issuer", it->issuer_id), AT_STR("issuer_stan", it->issuer_stan),
           AT_STR("rc", rc), AT_STR("action", "left in switch.reversal_queue with state 'failed'"));
    settle(srv, it, SAF_END_FAILED);
}

static void on_answer_mac(void *arg, int status, const char *resp, size_t len)
{
    struct saf_item *it = arg;
    if (it->state == SAF_ORPHAN) {
        free_item(it);
        return;
    }
    if (status == HSM_CLIENT_OK && hsm_client_resp_error("M8", resp, len) == 0) {
        accept_answer(it->srv, it);
        return;
    }
    /* A forged or damaged 0430 must not stop the reversal: keep repeating. */
    at_log(
        AT_LOG_ERROR, "reversal_answer_mac_invalid", AT_INT("reversal_id", it->reversal_id),
        AT_STR("issuer", it->issuer_id),
        AT_INT("hsm_error", status == HSM_CLIENT_OK ? hsm_client_resp_error("M8", resp, len) : -1));
    retry_later(it);
}

void sw_saf_answer(struct sw_server *srv, void *entry, const struct iso_msg *m, const uint8_t *raw,
                   size_t raw_len)
{
    struct saf_item *it = entry;
    char rc[3] = "", cmd[2200];
    const char *zak = it->zak; /* the one it was sent under */
    if (it->state != SAF_SENT)
        return; /* matched a STAN already given up on */
    field_copy(m, 39, rc, sizeof rc);
    memcpy(it->answer_rc, rc, sizeof it->answer_rc);
    saf_set_state(it, SAF_CHECKING);
    if (!zak[0]) {
        accept_answer(srv, it);
        return;
    }
    /* The issuer MACs its 0430 like every answer: check it over the bytes
     * received before believing it. */
    struct isonet_mac at;
    int len = -1;
    if (it->cur_link && isonet_mac_locate(it->cur_link->dialect, m, raw_len, &at) == 0)
        len = hsm_client_build_mac(cmd, sizeof cmd, "008", zak, raw, at.off, at.value);
    if (len < 0 || hsm_client_submit(srv->hsm, cmd, (size_t)len, on_answer_mac, it) != 0) {
        at_log(AT_LOG_ERROR, "reversal_answer_mac_invalid", AT_INT("reversal_id", it->reversal_id),
               AT_STR("issuer", it->issuer_id),
               AT_STR("reason", len < 0 ? "no MAC as the last field" : "HSM queue full"));
        retry_later(it);
    }
}

/* ---------------------------------------------------------------- load */

static bool same_identity(const struct saf_item *a, const struct saf_item *b)
{
    return strcmp(a->request_date, b->request_date) == 0 && strcmp(a->acquirer, b->acquirer) == 0 &&
           strcmp(a->terminal, b->terminal) == 0 && strcmp(a->stan, b->stan) == 0 &&
           strcmp(a->de7, b->de7) == 0 && memcmp(a->mti, b->mti, 3) == 0;
}

static void on_loaded(void *arg, const struct db_error *err, const struct db_reversal *rows,
                      size_t n)
{
    struct sw_server *srv = arg;
    struct sw_saf *q = srv->saf;
    bool periodic = q->claiming;
    q->claiming = false;
    q->next_claim_ms = sw_now_ms() + srv->conf.lease_ms / 3;
    if (err->code != 0 && periodic) {
        /* The items held stay held: a lease not renewed in time lets another instance send
         * them too — harmless at the issuer (the same reversal twice), see "Instances". */
        at_log(AT_LOG_WARN, "reversal_claim_failed", AT_STR("error", err->message),
               AT_STR("action", "retrying at the next claim"));
        return;
    }
    if (err->code != 0) {
        at_log(AT_LOG_ERROR, "reversal_queue_load_failed", AT_STR("error", err->message),
               AT_STR("action", "retrying"));
        q->load_retry_ms = sw_now_ms() + 1000; /* the tick loads again */
        return;
    }
    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        const struct db_reversal *r = &rows[i];
        struct saf_item *it = calloc(1, sizeof *it);
        if (!it)
            break;
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
        at_strlcpy(it->reason, r->reason, sizeof it->reason);
        it->reversal_id = r->reversal_id;
        it->amount = r->amount_minor;
        it->currency = r->currency;
        it->billing = r->billing;
        it->attempts = r->attempts;
        if (db_pan_open(srv->pan_seal_key, r->pan_sealed, r->pan_sealed_len, it->pan,
                        sizeof it->pan) < 0) {
            at_log(AT_LOG_ERROR, "reversal_pan_unsealable", AT_INT("reversal_id", it->reversal_id),
                   AT_STR("action", "left pending; check pan_seal_key"));
            free_item(it);
            continue;
        }
        bool known = false;
        for (struct saf_item *x = LIST_FIRST(&q->items); x && !known; x = LIST_NEXT(x, link))
            known = same_identity(x, it);
        if (known) {
            free_item(it);
            continue;
        }
        it->srv = srv;
        it->state = SAF_IDLE; /* durable: it is a row */
        add_item(q, it);
        added++;
    }
    if (periodic) {
        if (added)
            at_log(AT_LOG_INFO, "reversals_taken_over", AT_UINT("rows", added),
                   AT_STR("instance", srv->conf.instance_id));
        return;
    }
    q->loaded = true;
    at_log(AT_LOG_INFO, "reversal_queue_loaded", AT_UINT("pending", n));
    if (q->load_done) {
        void (*done)(struct sw_server *) = q->load_done;
        q->load_done = NULL;
        done(srv);
    }
}

/* A periodic claim (the tick): rows taken over join the queue like loaded ones. */
static void claim(struct sw_server *srv)
{
    struct sw_saf *q = srv->saf;
    q->claiming = true;
    if (db_reversals_claim(srv->db, srv->conf.instance_id, srv->conf.lease_ms,
                           srv->conf.takeover_inflight_ms, false, on_loaded, srv) != 0) {
        q->claiming = false;
        q->next_claim_ms = sw_now_ms() + srv->conf.lease_ms / 3;
    }
}

/* The first load is a claim too (migration 0016): this instance's own pending rows (a previous
 * run of the same instance_id claimed them) and every row no live instance holds. */
void sw_saf_load(struct sw_server *srv, void (*done)(struct sw_server *srv))
{
    srv->saf->load_retry_ms = 0;
    srv->saf->load_done = done;
    if (db_reversals_claim(srv->db, srv->conf.instance_id, srv->conf.lease_ms,
                           srv->conf.takeover_inflight_ms, true, on_loaded, srv) != 0) {
        at_log(AT_LOG_ERROR, "reversal_queue_load_failed", AT_STR("error", "database queue full"),
               AT_STR("action", "retrying"));
        srv->saf->load_retry_ms = sw_now_ms() + 1000;
    }
}

int sw_saf_init(struct sw_server *srv)
{
    struct sw_saf *q = calloc(1, sizeof *q);
    if (!q)
        return -1;
    q->srv = srv;
    q->tick = event_new(srv->base, -1, EV_PERSIST, on_tick, q);
    q->write_ev = evtimer_new(srv->base, flush_writes, q);
    struct timeval tv = { 0, TICK_MS * 1000 };
    if (!q->tick || !q->write_ev || event_add(q->tick, &tv) != 0) {
        if (q->tick)
            event_free(q->tick);
        if (q->write_ev)
            event_free(q->write_ev);
        free(q);
        return -1;
    }
    srv->saf = q;
    return 0;
}

void sw_saf_free(struct sw_server *srv)
{
    struct sw_saf *q = srv->saf;
    if (!q)
        return;
    event_free(q->tick);
    event_free(q->write_ev);
    /* The journal and the database client are freed first (main.c): their
     * callbacks have run, so no record is being stored and no UPDATE is in
     * flight. Row changes still on the write list are lost, and those
     * reversals are sent again by the next switchd (at least once); records
     * that were never durable are covered by their request's in-flight row
     * or by the terminal, which was not told 00. SIGTERM's drain waits for
     * all of them first. */
    srv->saf = NULL;
    while (!LIST_EMPTY(&q->items)) {
        struct saf_item *it = LIST_FIRST(&q->items);
        LIST_REMOVE(it, link);
        if (it->state == SAF_MACING || it->state == SAF_CHECKING)
            it->state = SAF_ORPHAN; /* freed by its HSM callback */
        else
            free_item(it);
    }
    free(q);
}
