/* issuer-sim: the wallet issuer host. One libevent loop accepts the switch's ISO 8583 links,
 * verifies each request's MAC and PIN through hsm-sim, decides on a snapshot of the wallet read
 * from PostgreSQL (decide.c) and applies the decision atomically (wallet.sim_apply), then answers
 * with a MAC. Subcommands `seed` and `keys` are offline tools (seed.c). */
#include "issuer.h"
#include "issuer_tools.h"

#include "clock.h"
#include "db.h"
#include "fmt.h"
#include "hex.h"
#include "hsm.h"
#include "hsmclient.h"
#include "iso8583.h"
#include "log.h"
#include "parse.h"
#include "stream.h"
#include "wallet.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_MSG       4096 /* largest ISO message accepted (its M8 command fits an HSM frame) */
#define MAX_RETRIES   64   /* decide again after a concurrent change, at most this often */
#define EXPIRE_PERIOD 60   /* seconds between expired-hold sweeps */
#define DRAIN_TIMEOUT 5    /* seconds SIGTERM waits for requests in flight */
#define HSM_CMD_CAP   (MAX_MSG + 256)
#define APPLY_BATCH   DB_WALLET_APPLY_MAX /* decisions committed by one transaction */

/* Where a request is; txn_set_state() is the only door, and logs moves at debug level. */
enum txn_state {
    TXN_FREE,     /* in the pool's free list */
    TXN_MAC,      /* waiting for hsm-sim's M9 (request MAC verification) */
    TXN_LOAD,     /* waiting for the request/wallet lookup (PostgreSQL) */
    TXN_PIN,      /* waiting for hsm-sim's EB/ED (PIN verification) */
    TXN_APPLY,    /* waiting for wallet.sim_apply / sim_reverse (PostgreSQL) */
    TXN_RESP_MAC, /* waiting for hsm-sim's M7 (response MAC) */
    TXN_state_max
};
static const char *const txn_state_name[] = { "free", "mac", "load", "pin", "apply", "resp_mac" };

struct iss;

struct conn {
    struct iss *iss;
    struct at_stream *s; /* NULL once closed */
    unsigned refs;       /* requests in flight + 1 while the stream lives */
    bool global_paused;  /* paused by the global backpressure */
    struct conn *prev, *next;
};

struct txn {
    struct iss *iss;
    struct conn *c;
    struct txn *next_free;
    enum txn_state st;
    uint64_t t0;
    uint8_t msg[MAX_MSG];
    size_t len;
    struct iso_msg req;
    uint8_t arena[ISO_ARENA_FOR(MAX_MSG)];
    /* parsed request */
    char mti[5], pcode[7], pan[20], pan_masked[20], key[48], orig_key[48];
    int64_t amount;
    int currency;
    bool is_reversal, is_inquiry;
    int retries;
    /* the decision or reversal to apply (its strings point into this txn) and its batch */
    struct db_wallet_op op;
    char rrnz[16];
    bool apply_alone;       /* its batch failed: apply it in a transaction of its own */
    struct txn *apply_next; /* the next request of the same batch (queue, then in flight) */
    /* wallet snapshot */
    bool have_wallet;
    struct db_wallet_row wallet;
    struct sim_wallet w;
    struct sim_request r;
    struct sim_effects eff;
    /* answer */
    char rc[3], auth[7], de54[41], outcome[24];
    bool has_bal;
    int64_t bal, avail;
    uint8_t resp[MAX_MSG + 64];
    size_t resp_len, resp_mac_off, resp_mac_len;
};

struct iss {
    struct event_base *base;
    struct evconnlistener *lst;
    const struct iso_dialect *dialect;
    enum iso_frame_kind framing;
    struct hsm_client *hsm;
    struct db_wallet *db;
    const char *zpk, *zak, *pvk;
    struct db_pan_hasher *hasher; /* HMAC of PANs, keyed once at start */
    struct conn *conns;
    struct txn *pool, *free_list;
    unsigned pool_size, inflight;
    bool paused, hsm_busy, stopping;
    bool closing; /* the clients are being freed: finish requests without new work */
    uint32_t auth_seq;
    struct txn *apply_head, **apply_tail; /* decided this loop turn, not yet sent */
    unsigned apply_queued;
    struct event *ev_apply; /* sends the queued decisions, once per loop turn */
    uint64_t n_apply_jobs;  /* transactions that applied decisions (a batch each) */
    struct event *ev_term, *ev_int, *ev_hup, *ev_expire, *ev_drain;
    uint64_t n_req, n_approved;
};

static char hsm_cmd[HSM_CMD_CAP]; /* one command at a time: hsm_client_submit copies it */

static void txn_answer(struct txn *t);
static void txn_load(struct txn *t);

/* ---------------------------------------------------------------- backpressure */

/* Pauses every connection while the request pool is full or hsm-sim is saturated, resumes them
 * when both have room again (a quarter of the pool free), so no queue grows without bound. */
static void backpressure_update(struct iss *s)
{
    bool want = s->inflight >= s->pool_size || s->hsm_busy ||
                (s->paused && s->inflight > s->pool_size * 3 / 4);
    if (want == s->paused)
        return;
    s->paused = want;
    at_log(AT_LOG_INFO, want ? "backpressure_on" : "backpressure_off",
           AT_UINT("inflight", s->inflight), AT_BOOL("hsm_busy", s->hsm_busy));
    for (struct conn *c = s->conns; c; c = c->next) {
        if (!c->s || c->global_paused == want)
            continue;
        c->global_paused = want;
        if (want)
            at_stream_pause(c->s);
        else
            at_stream_resume(c->s);
    }
}

static void on_hsm_busy(void *arg, bool busy)
{
    struct iss *s = arg;
    s->hsm_busy = busy;
    backpressure_update(s);
}

/* ---------------------------------------------------------------- connections */

static void conn_unref(struct conn *c)
{
    if (--c->refs > 0)
        return;
    struct iss *s = c->iss;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void maybe_finish_drain(struct iss *s)
{
    if (s->stopping && s->inflight == 0)
        event_base_loopexit(s->base, NULL);
}

/* ---------------------------------------------------------------- the request pool */

static void txn_set_state(struct txn *t, enum txn_state st)
{
    if (st >= TXN_state_max)
        abort();
    if (at_log_enabled(AT_LOG_DEBUG))
        at_log(AT_LOG_DEBUG, "txn_state", AT_STR("from", txn_state_name[t->st]),
               AT_STR("to", txn_state_name[st]), AT_STR("mti", t->mti));
    t->st = st;
}

static struct txn *txn_get(struct iss *s, struct conn *c)
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
    t->is_reversal = t->is_inquiry = t->have_wallet = t->has_bal = false;
    t->retries = 0;
    t->rc[0] = t->auth[0] = t->de54[0] = '\0';
    strcpy(t->outcome, "new");
    memset(&t->r, 0, sizeof t->r);
    backpressure_update(s);
    return t;
}

static void txn_put(struct txn *t)
{
    struct iss *s = t->iss;
    txn_set_state(t, TXN_FREE);
    conn_unref(t->c);
    t->c = NULL;
    t->next_free = s->free_list;
    s->free_list = t;
    s->inflight--;
    backpressure_update(s);
    maybe_finish_drain(s);
}

/* ---------------------------------------------------------------- MAC with the ZAK */

/* "MAC these bytes" (M6) / "verify this MAC" (M8) with the ZAK: the full 8-byte
 * X9.19 MAC of the link contract (hsm_client_build_m6/m8). mac_hex is NULL for M6.
 * Returns the command length or -1. */
static int mac_command(char *buf, size_t cap, const char *zak, const uint8_t *data, size_t len,
                       const char *mac_hex)
{
    if (mac_hex)
        return hsm_client_build_m8(buf, cap, "008", zak, data, len, mac_hex);
    return hsm_client_build_m6(buf, cap, "008", zak, data, len);
}

/* Wire size of the MAC field (DE 64/128) in the dialect: 16 hex characters or 8 raw bytes. */
static size_t mac_wire_len(const struct iso_dialect *d, int field)
{
    return d->field[field].data_enc == ISO_ENC_HEX ? 16 : 8;
}

/* ---------------------------------------------------------------- answering */

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

static void txn_finish(struct txn *t)
{
    log_txn(t);
    t->iss->n_req++;
    if (strcmp(t->rc, "00") == 0)
        t->iss->n_approved++;
    txn_put(t);
}

/* Sends the packed response (MAC in place) with its frame header; drops it if the link is gone. */
static void txn_send(struct txn *t)
{
    uint8_t hdr[ISO_FRAME_MAX_HEADER];
    struct iso_err ie;
    size_t hl = iso_frame_header_len(t->iss->framing);
    if (!t->c->s) {
        strcpy(t->outcome, "link_gone");
    } else if (iso_frame_header(t->iss->framing, 0, t->resp_len, NULL, hdr, sizeof hdr, &ie) != 0 ||
               at_stream_write(t->c->s, hdr, hl, t->resp, t->resp_len) != 0) {
        strcpy(t->outcome, "send_failed");
    }
    txn_finish(t);
}

static void on_resp_mac(void *arg, int status, const char *resp, size_t len)
{
    struct txn *t = arg;
    char mac[17];
    if (status != HSM_CLIENT_OK || hsm_client_resp_error("M6", resp, len) != 0 ||
        hsm_client_parse_mac(resp, len, mac) != 16) {
        at_log(AT_LOG_ERROR, "resp_mac_failed", AT_INT("status", status),
               AT_INT("hsm_error",
                      status == HSM_CLIENT_OK ? hsm_client_resp_error("M6", resp, len) : -1));
        strcpy(t->outcome, "no_mac");
        txn_finish(t); /* no answer without a MAC: the switch times out and reverses */
        return;
    }
    if (t->resp_mac_len == 16) {
        memcpy(t->resp + t->resp_mac_off, mac, 16);
    } else if (at_hex_decode(mac, 16, t->resp + t->resp_mac_off, 8) != 8) {
        strcpy(t->outcome, "no_mac");
        txn_finish(t);
        return;
    }
    txn_send(t);
}

static void set_resp_mti(char out[5], const char *mti)
{
    memcpy(out, mti, 4);
    out[2] = (char)(mti[2] + 1);
    out[3] = '0';
    out[4] = '\0';
}

/* Builds the response to t->req with t->rc (and DE 38 / DE 54 when set), packs it with a zero
 * MAC field, and asks hsm-sim for the MAC (M6). mac = false for network messages (0810). */
static void txn_respond(struct txn *t, bool mac)
{
    if (t->iss->closing) {
        strcpy(t->outcome, "shutdown");
        txn_finish(t);
        return;
    }
    static const int echo[] = { 2, 3, 4, 7, 11, 32, 37, 41, 49, 70, 90 };
    struct iss *s = t->iss;
    struct iso_msg m;
    struct iso_err ie;
    char mti[5];
    static const uint8_t zero_mac[8];
    iso_msg_init(&m, NULL, 0);
    set_resp_mti(mti, t->mti);
    int rc = iso_set_mti(&m, mti);
    for (size_t i = 0; rc == 0 && i < sizeof echo / sizeof echo[0]; i++) {
        size_t n;
        const uint8_t *v = iso_get(&t->req, echo[i], &n);
        if (v)
            rc = iso_set(&m, echo[i], v, n);
    }
    if (rc == 0)
        rc = iso_set(&m, 39, t->rc, 2);
    if (rc == 0 && strcmp(t->rc, "00") == 0 && t->auth[0])
        rc = iso_set(&m, 38, t->auth, 6);
    if (rc == 0 && t->de54[0])
        rc = iso_set(&m, 54, t->de54, 40);
    int mac_field = iso_has(&m, 90) || iso_has(&m, 70) ? 128 : 64;
    if (rc == 0 && mac)
        rc = iso_set(&m, mac_field, zero_mac, 8);
    if (rc == 0)
        rc = iso_pack(s->dialect, &m, t->resp, sizeof t->resp, &t->resp_len, &ie);
    if (rc != 0) {
        at_log(AT_LOG_ERROR, "pack_failed", AT_STR("mti", mti), AT_INT("field", ie.field),
               AT_STR("reason", rc == 0 ? "" : ie.reason));
        strcpy(t->outcome, "pack_failed");
        txn_finish(t);
        return;
    }
    if (!mac) {
        txn_send(t);
        return;
    }
    t->resp_mac_len = mac_wire_len(s->dialect, mac_field);
    t->resp_mac_off = t->resp_len - t->resp_mac_len;
    int n = mac_command(hsm_cmd, sizeof hsm_cmd, s->zak, t->resp, t->resp_mac_off, NULL);
    txn_set_state(t, TXN_RESP_MAC);
    if (n < 0 || hsm_client_submit(s->hsm, hsm_cmd, (size_t)n, on_resp_mac, t) != 0) {
        strcpy(t->outcome, "hsm_full");
        txn_finish(t);
    }
}

/* Fills DE 38 / DE 54 from the recorded balances and responds. */
static void txn_answer(struct txn *t)
{
    int ccy = t->have_wallet ? t->w.currency : t->currency;
    t->de54[0] = '\0';
    if (t->has_bal && strcmp(t->rc, "00") == 0 && ccy > 0 &&
        sim_format_de54(ccy, t->bal, t->avail, t->de54) != 0)
        t->de54[0] = '\0';
    txn_respond(t, true);
}

static void txn_fail(struct txn *t, const char *rc, const char *outcome)
{
    memcpy(t->rc, rc, 3);
    snprintf(t->outcome, sizeof t->outcome, "%s", outcome);
    t->has_bal = false;
    txn_answer(t);
}

/* ---------------------------------------------------------------- apply (PostgreSQL) */

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

static void apply_queue(struct txn *t);

/* A batch's transaction ended. Committed: each request gets its own row. Refused by the server
 * (one statement failed, so none of the batch was applied): each request is applied again in a
 * transaction of its own, so one bad request cannot decline the others. Connection lost or
 * shutting down: the outcome is unknown, every request is answered 96 (the switch reverses). */
static void on_apply(void *arg, const struct db_error *err, const struct db_wallet_outcome *out,
                     unsigned nout)
{
    struct txn *t = arg;
    unsigned n = 0;
    for (struct txn *x = t; x; x = x->apply_next)
        n++;
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

/* Sends the decisions queued in this loop turn: up to APPLY_BATCH per transaction, so that one
 * commit (one WAL flush) makes a whole batch durable. A request whose batch failed goes alone. */
static void on_apply_flush(evutil_socket_t fd, short what, void *arg)
{
    struct iss *s = arg;
    (void)fd;
    (void)what;
    while (s->apply_head) {
        struct txn *batch[APPLY_BATCH];
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
        if (db_wallet_apply(s->db, ops, n, on_apply, batch[0]) != 0) {
            for (unsigned i = 0; i < n; i++) {
                batch[i]->apply_next = NULL;
                txn_fail(batch[i], "96", "db_full");
            }
            continue;
        }
        s->n_apply_jobs++;
    }
}

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

/* Writes the decision (or the reversal) as the op for db_wallet_apply and queues it; it is
 * answered after the commit of its batch. */
static void txn_apply(struct txn *t)
{
    struct iss *s = t->iss;
    if (s->closing) {
        txn_fail(t, "96", "shutdown");
        return;
    }
    const struct sim_effects *e = &t->eff;
    const uint8_t *rrn;
    size_t rrn_len;
    t->rrnz[0] = '\0';
    if ((rrn = iso_get(&t->req, 37, &rrn_len)) && rrn_len < sizeof t->rrnz) {
        memcpy(t->rrnz, rrn, rrn_len);
        t->rrnz[rrn_len] = '\0';
    }
    t->apply_alone = false;
    if (t->is_reversal) {
        t->op.kind = DB_WALLET_OP_REVERSAL;
        t->op.u.reversal = (struct db_wallet_reversal){
            .original_key = t->orig_key,
            .mti = t->mti,
            .pcode = t->pcode,
            .amount_minor = t->amount,
            .rrn = t->rrnz,
        };
        apply_queue(t);
        return;
    }
    memcpy(t->rc, e->rc, 3);
    t->auth[0] = '\0';
    if (strcmp(e->rc, "00") == 0) {
        at_put_digits(t->auth, 6, ++s->auth_seq);
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
    };
    apply_queue(t);
}

/* ---------------------------------------------------------------- PIN (hsm-sim) */

static void txn_decide(struct txn *t);

static void on_pin(void *arg, int status, const char *resp, size_t len)
{
    struct txn *t = arg;
    if (status != HSM_CLIENT_OK) {
        txn_fail(t, "96", "hsm_unavailable");
        return;
    }
    /* 00 right PIN; 01 wrong PIN; 20/24 the block holds no valid PIN for this card: a wrong PIN
     * too (counted, so garbage cannot be tried for free); anything else is our fault (keys). */
    int e =
        hsm_client_resp_error(t->wallet.pin_method == DB_WALLET_PIN_PVV ? "EC" : "EA", resp, len);
    if (e == 0)
        t->r.pin = SIM_PIN_OK;
    else if (e == 1 || e == 20 || e == 24)
        t->r.pin = SIM_PIN_BAD;
    else {
        at_log(AT_LOG_ERROR, "pin_verify_error", AT_INT("hsm_error", e));
        txn_fail(t, "96", "hsm_error");
        return;
    }
    txn_decide(t);
}

static void txn_verify_pin(struct txn *t)
{
    struct iss *s = t->iss;
    if (s->closing) {
        txn_fail(t, "96", "shutdown");
        return;
    }
    size_t bl;
    const uint8_t *blk = iso_get(&t->req, 52, &bl);
    char blkhex[17], acct[13];
    int n = -1;
    if (!blk || bl != 8 || hsm_client_account12(t->pan, acct) != 0) {
        txn_fail(t, "30", "format");
        return;
    }
    at_hex_encode(blk, 8, blkhex);
    if (t->wallet.pin_method == DB_WALLET_PIN_PVV) {
        n = hsm_client_build_pvv_verify(hsm_cmd, sizeof hsm_cmd, true, s->zpk, s->pvk, blkhex, "01",
                                        acct, (unsigned)t->wallet.pvki, t->wallet.pvv);
    } else {
        char vdata[13];
        memcpy(vdata, acct, 11);
        vdata[11] = 'N';
        vdata[12] = '\0';
        n = hsm_client_build_ibm_verify(hsm_cmd, sizeof hsm_cmd, true, s->zpk, s->pvk, blkhex, "01",
                                        (unsigned)strlen(t->wallet.pin_offset), acct,
                                        SIM_IBM_DECTAB, vdata, t->wallet.pin_offset);
    }
    memset(blkhex, 0, sizeof blkhex);
    if (n < 0) {
        at_log(AT_LOG_ERROR, "pin_command_failed", AT_STR("pan", t->pan_masked));
        txn_fail(t, "96", "pin_data");
        return;
    }
    txn_set_state(t, TXN_PIN);
    int rc = hsm_client_submit(s->hsm, hsm_cmd, (size_t)n, on_pin, t);
    memset(hsm_cmd, 0, (size_t)n);
    if (rc != 0)
        txn_fail(t, "96", "hsm_full");
}

static void txn_decide(struct txn *t)
{
    int d = sim_decide(t->have_wallet ? &t->w : NULL, &t->r, &t->eff);
    if (d == SIM_NEED_PIN) {
        txn_verify_pin(t);
        return;
    }
    txn_apply(t);
}

/* ---------------------------------------------------------------- load (PostgreSQL) */

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
}

/* The snapshot: the card's wallet, if any, and the request's recorded answer if it was
 * answered before (then the same answer goes again). */
static void on_load(void *arg, const struct db_error *err, const struct db_wallet_snapshot *snap)
{
    struct txn *t = arg;
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

static void txn_load(struct txn *t)
{
    struct iss *s = t->iss;
    if (s->closing) {
        txn_fail(t, "96", "shutdown");
        return;
    }
    uint8_t h[32];
    if (db_pan_hasher_mac(s->hasher, t->pan, strlen(t->pan), h) != 0) {
        txn_fail(t, "30", "format");
        return;
    }
    txn_set_state(t, TXN_LOAD);
    if (db_wallet_load(s->db, h, t->key, on_load, t) != 0)
        txn_fail(t, "96", "db_full");
}

/* ---------------------------------------------------------------- validation */

/* Copies field f into out (NUL-terminated) if present with a length in [min, max]. */
static bool field_str(const struct iso_msg *m, int f, size_t min, size_t max, char *out)
{
    size_t n;
    const uint8_t *v = iso_get(m, f, &n);
    if (!v || n < min || n > max)
        return false;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static void utc_today(char today[11], char yymm[5])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    if (strftime(today, 11, "%Y-%m-%d", &tm) != 10 || strftime(yymm, 5, "%y%m", &tm) != 4) {
        today[0] = '\0';
        memcpy(yymm, "9999", 5); /* unreachable for years 1000..9999: every card then expired */
    }
}

/* Checks the mandatory fields of a financial request / reversal (DEMO.md, issuer link) and
 * fills the parsed copies. Returns NULL or the response code to send (30, 12, 13). */
static const char *txn_validate(struct txn *t)
{
    const struct iso_msg *m = &t->req;
    char acq[12], tid[9], stan[7], de7[11], ccy[4], amt[13], exp[5] = "", tr2[38];
    uint64_t u;
    if (!field_str(m, 3, 6, 6, t->pcode) || !all_digits(t->pcode) ||
        !field_str(m, 7, 10, 10, de7) || !field_str(m, 11, 6, 6, stan) ||
        !field_str(m, 32, 1, 11, acq) || !field_str(m, 41, 8, 8, tid) ||
        !field_str(m, 49, 3, 3, ccy) || !at_parse_u64(ccy, 999, &u))
        return "30";
    t->currency = (int)u;
    if (field_str(m, 2, 12, 19, t->pan)) {
        if (!all_digits(t->pan))
            return "30";
    } else if (field_str(m, 35, 13, 37, tr2)) {
        size_t n = strcspn(tr2, "=D");
        if (n < 12 || n > 19)
            return "30";
        memcpy(t->pan, tr2, n);
        t->pan[n] = '\0';
        if (!all_digits(t->pan))
            return "30";
    } else {
        return "30";
    }
    at_mask_pan(t->pan, strlen(t->pan), t->pan_masked);
    int pc = (t->pcode[0] - '0') * 10 + (t->pcode[1] - '0');
    t->is_inquiry = sim_pcode_is_inquiry(pc);
    if (iso_has(m, 4)) {
        if (!field_str(m, 4, 12, 12, amt) || !at_parse_u64(amt, INT64_MAX, &u))
            return "30";
        t->amount = (int64_t)u;
    } else if (!t->is_inquiry) {
        return "30";
    }
    if (iso_has(m, 14) && (!field_str(m, 14, 4, 4, exp) || !all_digits(exp)))
        return "30";
    if (sim_request_key(acq, strlen(acq), tid, 8, stan, 6, de7, 10, t->key, sizeof t->key) != 0)
        return "30";
    if (t->is_reversal) {
        char de90[43];
        if (iso_has(m, 90)) {
            if (!field_str(m, 90, 42, 42, de90) || !all_digits(de90))
                return "30";
            /* original MTI 4 | STAN 6 | DE 7 10 | acquirer 11 | 11 zeros */
            if (sim_request_key(de90 + 20, 11, tid, 8, de90 + 4, 6, de90 + 10, 10, t->orig_key,
                                sizeof t->orig_key) != 0)
                return "30";
        } else {
            memcpy(t->orig_key, t->key, sizeof t->orig_key);
        }
        return NULL;
    }
    t->r.msg = t->mti[1] == '1' ? SIM_MSG_AUTH : SIM_MSG_FINANCIAL;
    t->r.pcode = pc;
    t->r.amount_minor = t->amount;
    t->r.currency = t->currency;
    memcpy(t->r.expiry, exp, sizeof t->r.expiry);
    t->r.pin_present = iso_has(m, 52);
    t->r.pin = SIM_PIN_UNCHECKED;
    utc_today(t->r.today, t->r.now_yymm);
    const char *bad = sim_check_request(&t->r);
    return bad;
}

/* ---------------------------------------------------------------- request MAC */

static void on_req_mac(void *arg, int status, const char *resp, size_t len)
{
    struct txn *t = arg;
    int e = status == HSM_CLIENT_OK ? hsm_client_resp_error("M8", resp, len) : -1;
    if (e == 1) {
        /* The MAC does not verify. Answered 63 (with our own MAC) so the switch learns it at
         * once; nothing else of the request is looked at or recorded. */
        at_log(AT_LOG_WARN, "mac_failure", AT_STR("mti", t->mti),
               AT_STR("peer", t->c->s ? at_stream_peer(t->c->s) : "-"));
        txn_fail(t, "63", "bad_mac");
        return;
    }
    if (e != 0) {
        at_log(AT_LOG_ERROR, "mac_verify_error", AT_INT("status", status), AT_INT("hsm_error", e));
        txn_fail(t, "96", "hsm_error");
        return;
    }
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

/* ---------------------------------------------------------------- network management */

static void txn_netmgmt(struct txn *t)
{
    char code[4] = "";
    if (!field_str(&t->req, 70, 3, 3, code)) {
        memcpy(t->rc, "30", 3);
    } else if (!strcmp(code, "001") || !strcmp(code, "002") || !strcmp(code, "301")) {
        memcpy(t->rc, "00", 3);
    } else {
        memcpy(t->rc, "12", 3);
    }
    snprintf(t->outcome, sizeof t->outcome, "netmgmt");
    snprintf(t->pcode, sizeof t->pcode, "%s", code);
    txn_respond(t, false);
}

/* ---------------------------------------------------------------- the link */

static void on_frame(void *arg, struct at_stream *st, const uint8_t *frame, size_t frame_len,
                     const uint8_t *msg, size_t msg_len)
{
    struct conn *c = arg;
    struct iss *s = c->iss;
    struct iso_err ie;
    (void)frame;
    (void)frame_len;
    if (msg_len > MAX_MSG) {
        at_stream_close(st, "message too long", false);
        return;
    }
    struct txn *t = txn_get(s, c);
    if (!t) { /* cannot happen while backpressure pauses the links at a full pool */
        at_stream_close(st, "request pool exhausted", false);
        return;
    }
    memcpy(t->msg, msg, msg_len);
    t->len = msg_len;
    iso_msg_init(&t->req, t->arena, sizeof t->arena);
    if (iso_unpack(s->dialect, t->msg, t->len, &t->req, &ie) != 0) {
        at_log(AT_LOG_WARN, "unpack_failed", AT_STR("peer", at_stream_peer(st)),
               AT_INT("field", ie.field), AT_UINT("offset", ie.offset),
               AT_STR("reason", ie.reason));
        t->len = 0;
        at_stream_close(st, "malformed message", false);
        strcpy(t->outcome, "malformed");
        memcpy(t->rc, "--", 3);
        txn_finish(t);
        return;
    }
    memcpy(t->mti, t->req.mti, 4);
    t->mti[4] = '\0';
    if (strcmp(t->mti, "0800") == 0) {
        txn_netmgmt(t);
        return;
    }
    t->is_reversal = !strcmp(t->mti, "0420") || !strcmp(t->mti, "0421");
    /* 0101 / 0201 repeats are the same request again: the request key makes them harmless. */
    bool known = t->is_reversal || !strcmp(t->mti, "0100") || !strcmp(t->mti, "0200") ||
                 !strcmp(t->mti, "0101") || !strcmp(t->mti, "0201");
    if ((t->mti[2] - '0') % 2 != 0) {
        at_stream_close(st, "response message on the issuer link", false);
        strcpy(t->outcome, "unexpected");
        memcpy(t->rc, "--", 3);
        txn_finish(t);
        return;
    }
    /* The MAC is the last field: DE 128 with a secondary bitmap, else DE 64. */
    int mf = iso_has(&t->req, 128) ? 128 : 64;
    if (!iso_has(&t->req, mf) || iso_next(&t->req, mf) != 0) {
        (void)field_str(&t->req, 3, 6, 6, t->pcode);
        txn_fail(t, "30", "no_mac");
        return;
    }
    if (!known) {
        txn_fail(t, "12", "unsupported_mti");
        return;
    }
    size_t ml = mac_wire_len(s->dialect, mf), n;
    const uint8_t *macv = iso_get(&t->req, mf, &n);
    char machex[17];
    at_hex_encode(macv, 8, machex);
    int cn = mac_command(hsm_cmd, sizeof hsm_cmd, s->zak, t->msg, t->len - ml, machex);
    txn_set_state(t, TXN_MAC);
    if (cn < 0 || hsm_client_submit(s->hsm, hsm_cmd, (size_t)cn, on_req_mac, t) != 0)
        txn_fail(t, "96", "hsm_full");
}

static void on_close(void *arg, struct at_stream *st, const char *reason)
{
    struct conn *c = arg;
    at_log(AT_LOG_INFO, "link_closed", AT_STR("peer", at_stream_peer(st)),
           AT_STR("reason", reason));
    c->s = NULL;
    conn_unref(c);
}

static int frame_cb(void *arg, const uint8_t *buf, size_t avail, struct at_frame *fr, char *why,
                    size_t whycap)
{
    struct iss *s = arg;
    struct iso_frame f;
    struct iso_err ie;
    int rc = iso_frame_parse(s->framing, MAX_MSG, buf, avail, &f, &ie);
    if (rc < 0) {
        snprintf(why, whycap, "framing: %s", ie.reason);
        return -1;
    }
    if (rc == ISO_FRAME_NEED_MORE) {
        fr->need = f.need;
        return 0;
    }
    fr->msg_off = f.msg_off;
    fr->msg_len = f.msg_len;
    fr->consume = f.consume;
    return 1;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct iss *s = arg;
    (void)l;
    (void)sa;
    (void)salen;
    static const struct at_stream_limits lim = { .max_frame = MAX_MSG + ISO_FRAME_MAX_HEADER };
    static struct at_stream_ops ops = { .on_frame = on_frame, .on_close = on_close };
    ops.frame = frame_cb;
    ops.frame_arg = s;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->iss = s;
    c->refs = 1;
    c->s = at_stream_new(s->base, fd, &ops, c, &lim);
    if (!c->s) {
        free(c);
        return;
    }
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    if (s->paused) {
        c->global_paused = true;
        at_stream_pause(c->s);
    }
    at_log(AT_LOG_INFO, "link_accepted", AT_STR("peer", at_stream_peer(c->s)));
}

/* ---------------------------------------------------------------- signals and timers */

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct iss *s = arg;
    (void)what;
    if (s->stopping)
        return;
    at_log(AT_LOG_INFO, "shutdown", AT_STR("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
           AT_UINT("inflight", s->inflight));
    s->stopping = true;
    if (s->lst) {
        evconnlistener_free(s->lst);
        s->lst = NULL;
    }
    for (struct conn *c = s->conns; c; c = c->next)
        if (c->s)
            at_stream_pause(c->s);
    struct timeval tv = { DRAIN_TIMEOUT, 0 };
    event_add(s->ev_drain, &tv);
    maybe_finish_drain(s);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct iss *s = arg;
    (void)fd;
    (void)what;
    at_log(AT_LOG_WARN, "drain_timeout", AT_UINT("inflight", s->inflight));
    event_base_loopexit(s->base, NULL);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    (void)at_log_reopen();
}

static void on_expired(void *arg, const struct db_error *err, int64_t expired)
{
    char count[AT_I64_CHARS];
    (void)arg;
    if (err->code == 0 && expired != 0) {
        at_put_i64(count, expired);
        at_log(AT_LOG_INFO, "holds_expired", AT_STR("count", count));
    }
}

static void on_expire_timer(evutil_socket_t fd, short what, void *arg)
{
    struct iss *s = arg;
    (void)fd;
    (void)what;
    if (db_wallet_ready(s->db) && db_wallet_expire_holds(s->db, on_expired, NULL) != 0)
        at_log0(AT_LOG_WARN, "holds_expiry_skipped");
}

/* ---------------------------------------------------------------- start-up */

struct opts {
    const char *listen, *dialect, *framing, *hsm, *db, *log, *log_level;
    const char *zpk, *zak, *pvk;
    unsigned max_inflight, hsm_conns, db_conns;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: issuer-sim [options]              run the issuer host\n"
               "       issuer-sim seed --wallets N [--db CONNINFO]\n"
               "       issuer-sim keys                   print the lab keys under the LMK\n"
               "options:\n"
               "  --listen HOST:PORT     switch links (default 127.0.0.1:9100)\n"
               "  --dialect NAME         ascii87 (default), ascii87b, bcd87, ebcdic87\n"
               "  --framing KIND         2b (default), 4a\n"
               "  --hsm HOST:PORT        hsm-sim (default 127.0.0.1:1500)\n"
               "  --hsm-connections N    default 2\n"
               "  --db CONNINFO          libpq conninfo (default: PG* environment)\n"
               "  --db-connections N     default 4\n"
               "  --log FILE             JSON-lines log (default stderr)\n"
               "  --log-level LEVEL      debug, info (default), warn, error\n"
               "  --zpk/--zak/--pvk KEY  issuer keys under the LMK (default: the lab keys)\n"
               "  --max-inflight N       requests in progress before reading stops (default 512)\n"
               "environment: ATLAS_PAN_HMAC_KEY (hex, >= 32 characters; lab default otherwise)\n");
}

static int parse_uint(const char *name, const char *v, unsigned max, unsigned *out)
{
    uint64_t u;
    if (!at_parse_u64(v, max, &u) || u == 0) {
        fprintf(stderr, "issuer-sim: --%s wants a number in 1..%u\n", name, max);
        return -1;
    }
    *out = (unsigned)u;
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        { "listen", required_argument, NULL, 'l' },
        { "dialect", required_argument, NULL, 'd' },
        { "framing", required_argument, NULL, 'f' },
        { "hsm", required_argument, NULL, 'h' },
        { "hsm-connections", required_argument, NULL, 'H' },
        { "db", required_argument, NULL, 'D' },
        { "db-connections", required_argument, NULL, 'C' },
        { "log", required_argument, NULL, 'L' },
        { "log-level", required_argument, NULL, 'V' },
        { "zpk", required_argument, NULL, 'z' },
        { "zak", required_argument, NULL, 'a' },
        { "pvk", required_argument, NULL, 'p' },
        { "max-inflight", required_argument, NULL, 'm' },
        { "help", no_argument, NULL, 'x' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'l':
            o->listen = optarg;
            break;
        case 'd':
            o->dialect = optarg;
            break;
        case 'f':
            o->framing = optarg;
            break;
        case 'h':
            o->hsm = optarg;
            break;
        case 'H':
            if (parse_uint("hsm-connections", optarg, 64, &o->hsm_conns) != 0)
                return -1;
            break;
        case 'D':
            o->db = optarg;
            break;
        case 'C':
            if (parse_uint("db-connections", optarg, 64, &o->db_conns) != 0)
                return -1;
            break;
        case 'L':
            o->log = optarg;
            break;
        case 'V':
            o->log_level = optarg;
            break;
        case 'z':
            o->zpk = optarg;
            break;
        case 'a':
            o->zak = optarg;
            break;
        case 'p':
            o->pvk = optarg;
            break;
        case 'm':
            if (parse_uint("max-inflight", optarg, 65536, &o->max_inflight) != 0)
                return -1;
            break;
        case 'x':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Blocking start-up check: the wallet functions the statements call must be there. */
static int check_schema(const char *conninfo)
{
    struct db_error err = { 0 };
    int rc = db_wallet_schema_check(conninfo, &err);
    if (rc == DB_E_CONN)
        fprintf(stderr, "issuer-sim: database: %s\n", err.message);
    else if (rc != 0)
        fprintf(stderr, "issuer-sim: database schema: %s\n", err.message);
    return rc == 0 ? 0 : -1;
}

static int run(struct opts *o)
{
    struct iss s = { 0 };
    s.apply_tail = &s.apply_head;
    char err[256];
    int ret = 1;
    struct sockaddr_storage ss;
    socklen_t sl;
    const char *why = NULL;

    s.dialect = iso_dialect_find(o->dialect);
    if (!s.dialect) {
        fprintf(stderr, "issuer-sim: unknown dialect '%s'\n", o->dialect);
        return 2;
    }
    /* TPDU framing belongs to POS terminals, not to host-to-host links. */
    if (iso_frame_kind_parse(o->framing, &s.framing) != 0 ||
        (s.framing != ISO_FRAME_2B && s.framing != ISO_FRAME_4A)) {
        fprintf(stderr, "issuer-sim: framing '%s' not supported (2b, 4a)\n", o->framing);
        return 2;
    }
    if (!at_parse_hostport(o->listen, &ss, &sl, &why)) {
        fprintf(stderr, "issuer-sim: --listen %s: %s\n", o->listen, why ? why : "invalid");
        return 2;
    }
    int lvl = at_log_level_parse(o->log_level);
    if (lvl < 0) {
        fprintf(stderr, "issuer-sim: unknown log level '%s'\n", o->log_level);
        return 2;
    }
    if (at_log_open(o->log, "issuer-sim") != 0) {
        fprintf(stderr, "issuer-sim: cannot open log %s: %s\n", o->log, strerror(errno));
        return 2;
    }
    at_log_set_level((enum at_log_level)lvl);
    {
        uint8_t key[64];
        size_t key_len;
        int bad = sim_pan_hmac_key(key, sizeof key, &key_len) != 0 ||
                  db_pan_hasher_new(key, key_len, &s.hasher) != 0;
        memset(key, 0, sizeof key);
        if (bad) {
            ret = 2;
            goto out_log;
        }
    }
    if (check_schema(o->db) != 0)
        goto out_log;
    const char *names[3] = { "zpk", "zak", "pvk" }, *keys[3] = { o->zpk, o->zak, o->pvk };
    for (int i = 0; i < 3; i++) {
        size_t kl = 0;
        if (hsm_keytext_len(keys[i], strlen(keys[i]), &kl) != 0 || kl != strlen(keys[i])) {
            fprintf(stderr, "issuer-sim: --%s is not a key under the LMK (16H, or U/T + hex)\n",
                    names[i]);
            goto out_log;
        }
    }
    s.zpk = o->zpk;
    s.zak = o->zak;
    s.pvk = o->pvk;
    s.pool_size = o->max_inflight;
    s.pool = calloc(s.pool_size, sizeof *s.pool);
    s.base = event_base_new();
    if (!s.pool || !s.base) {
        fprintf(stderr, "issuer-sim: out of memory\n");
        goto out;
    }
    for (unsigned i = 0; i < s.pool_size; i++) {
        s.pool[i].iss = &s;
        s.pool[i].next_free = s.free_list;
        s.free_list = &s.pool[i];
    }
    {
        uint8_t r[4];
        FILE *f = fopen("/dev/urandom", "rb");
        if (f && fread(r, 1, 4, f) == 4)
            s.auth_seq = (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 | r[3];
        if (f)
            fclose(f);
    }
    struct hsm_client_config hc = {
        .address = o->hsm,
        .connections = o->hsm_conns,
        .queue_limit = 4 * s.pool_size,
        .high_watermark = s.pool_size,
        .low_watermark = s.pool_size / 2,
        .busy_cb = on_hsm_busy,
        .busy_arg = &s,
    };
    s.hsm = hsm_client_new(s.base, &hc, err, sizeof err);
    if (!s.hsm) {
        fprintf(stderr, "issuer-sim: hsm client: %s\n", err);
        goto out;
    }
    struct db_wallet_opts dbo = {
        .conninfo = o->db,
        .connections = o->db_conns,
        .max_queued = 2 * s.pool_size + 16,
    };
    if (db_wallet_new(s.base, &dbo, &s.db) != 0) {
        fprintf(stderr, "issuer-sim: database client could not start\n");
        goto out;
    }
    s.lst =
        evconnlistener_new_bind(s.base, on_accept, &s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                128, (struct sockaddr *)&ss, (int)sl);
    if (!s.lst) {
        fprintf(stderr, "issuer-sim: cannot listen on %s: %s\n", o->listen, strerror(errno));
        goto out;
    }
    s.ev_term = evsignal_new(s.base, SIGTERM, on_stop, &s);
    s.ev_int = evsignal_new(s.base, SIGINT, on_stop, &s);
    s.ev_hup = evsignal_new(s.base, SIGHUP, on_hup, &s);
    s.ev_drain = evtimer_new(s.base, on_drain_timeout, &s);
    s.ev_expire = event_new(s.base, -1, EV_PERSIST, on_expire_timer, &s);
    s.ev_apply = event_new(s.base, -1, 0, on_apply_flush, &s);
    struct timeval ep = { EXPIRE_PERIOD, 0 };
    if (!s.ev_term || !s.ev_int || !s.ev_hup || !s.ev_drain || !s.ev_expire || !s.ev_apply ||
        event_add(s.ev_term, NULL) != 0 || event_add(s.ev_int, NULL) != 0 ||
        event_add(s.ev_hup, NULL) != 0 || event_add(s.ev_expire, &ep) != 0) {
        fprintf(stderr, "issuer-sim: cannot set up signals\n");
        goto out;
    }
    at_log(AT_LOG_INFO, "start", AT_STR("listen", o->listen), AT_STR("dialect", o->dialect),
           AT_STR("framing", o->framing), AT_STR("hsm", o->hsm),
           AT_UINT("max_inflight", s.pool_size));
    event_base_dispatch(s.base);
    at_log(AT_LOG_INFO, "stop", AT_UINT("requests", s.n_req), AT_UINT("approved", s.n_approved),
           AT_UINT("apply_transactions", s.n_apply_jobs));
    ret = 0;
out:
    if (s.lst)
        evconnlistener_free(s.lst);
    s.closing = true;
    if (s.ev_apply)
        on_apply_flush(-1, 0, &s); /* decisions not yet sent are answered 96 */
    if (s.db)
        db_wallet_free(s.db); /* pending calls answer DB_E_CLOSED: their txns finish here */
    if (s.hsm)
        hsm_client_free(s.hsm);
    for (struct conn *c = s.conns; c; c = c->next)
        if (c->s)
            at_stream_close(c->s, "shutdown", false);
    for (int i = 0; s.base && s.conns && i < 100; i++)
        event_base_loop(s.base, EVLOOP_NONBLOCK); /* the streams run their on_close */
    if (s.ev_term)
        event_free(s.ev_term);
    if (s.ev_int)
        event_free(s.ev_int);
    if (s.ev_hup)
        event_free(s.ev_hup);
    if (s.ev_drain)
        event_free(s.ev_drain);
    if (s.ev_expire)
        event_free(s.ev_expire);
    if (s.ev_apply)
        event_free(s.ev_apply);
    if (s.base)
        event_base_free(s.base);
    free(s.pool);
out_log:
    db_pan_hasher_free(s.hasher);
    at_log_close();
    return ret;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && strcmp(argv[1], "seed") == 0)
        return sim_seed_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "keys") == 0)
        return sim_keys_main(argc - 1, argv + 1);
    struct opts o = {
        .listen = "127.0.0.1:9100",
        .dialect = "ascii87",
        .framing = "2b",
        .hsm = "127.0.0.1:1500",
        .db = NULL,
        .log = NULL,
        .log_level = "info",
        .zpk = SIM_LAB_ZPK_LMK,
        .zak = SIM_LAB_ZAK_LMK,
        .pvk = SIM_LAB_PVK_LMK,
        .max_inflight = 512,
        .hsm_conns = 2,
        .db_conns = 4,
    };
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    return run(&o);
}
