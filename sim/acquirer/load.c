/* `acquirer-sim load`: the load generator. C connections (one load terminal each, or
 * the demo terminal TERM0001 shared), a transaction mix over the wallet population,
 * open-loop arrivals at a fixed rate (latency counted from each arrival's scheduled
 * time, so a stalled server cannot hide its latency) or closed loop (K in flight per
 * connection), per-kind log-linear histograms, a progress line per second, and a text
 * + JSON report. Under faults it behaves like a terminal population: a connection that
 * ends is opened again (backoff), every money-moving request left without an answer is
 * reversed (0400, repeated as 0401 until an 0410), and `--record` writes one line per
 * request for reconciliation tools. `acquirer-sim load-seed` prints the SQL that
 * registers the load terminals (keys under the LMK) in schema switch. */
#include "load.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "fmt.h"
#include "hsm.h"
#include "parse.h"
#include "stream.h"

#define TICK_US          1000u
#define SEND_PER_TICK    4000u
#define CONN_OUT_LIMIT   (256u * 1024u)
#define APPROVED_RING    65536u
#define CONNECT_WAIT_NS  (15ull * 1000000000ull)
#define RECONNECT_MIN_MS 100u
#define RECONNECT_MAX_MS 2000u
#define REV_CHUNK        4096u
#define RECORD_BUF       (1u << 20)
#define LOSSES_PRINTED   10u

struct load_run;
struct lrev;

/* A connection slot: one terminal's connection, opened again after it ends. */
struct lconn {
    struct load_run *run;
    struct sim_conn *c; /* the current connection (a closed one until the reconnect) */
    struct sim_term *t;
    struct event *reconnect; /* made at the first loss */
    unsigned backoff_ms;     /* next reconnect delay; back to the minimum once one answers */
    uint32_t idx;
    bool up;
    bool settled;  /* its first connect ended (up or failed): the start waits for all */
    bool lost;     /* it has been down since: the next up is a reconnect */
    bool on_ready; /* on the run's ready list */
    struct lrev *wait_head, *wait_tail; /* reversals owed on this terminal, oldest first */
    struct lconn *rprev, *rnext;        /* ready list: up, with reversals waiting */
};

/* Per-message context (one per engine slot, from a free list: nothing allocated per message):
 * a request of the mix, or one try of a reversal (rev set). */
struct lreq {
    struct lreq *next; /* free list */
    struct load_run *run;
    struct lrev *rev; /* a reversal try: the reversal it belongs to */
    uint32_t conn;
    uint32_t card;
    uint32_t to_card; /* a transfer's recipient wallet (0: none) */
    uint8_t kind;
    bool measured;
    uint64_t amount;
    uint64_t now_us;  /* wall time its DE 7 was made from (a repeat reuses it) */
    uint64_t sent_ns; /* when it was written (monotonic) */
    uint32_t stan, orig_stan;
    char de7[11], orig_de7[11]; /* orig_*: a load-mix reversal's original (DE 90) */
    char proc[7];
};

/* A reversal the harness owes (load.h, enum load_rev_state): for a request of kind kind
 * that got no acceptable answer, or — kind LOAD_K_REVERSAL — the repeats of a load-mix
 * reversal that got none. Pooled (chunks of REV_CHUNK, grown only when faults need more). */
struct lrev {
    struct lrev *prev, *next; /* its connection's waiting list, or the free list (next) */
    struct load_rev_core core;
    uint32_t conn, card, to_card;
    uint8_t kind;
    uint64_t amount;
    char proc[7];
    uint32_t req_stan; /* the request this line of the record is about */
    char req_de7[11];
    uint32_t orig_stan; /* LOAD_K_REVERSAL: its original */
    char orig_de7[11];
    uint32_t rev_stan;   /* the reversal message's DE 11, 0 until it first left */
    uint64_t rev_now_us; /* wall time its DE 7 was made from */
    char rev_de7[11];
    char rc[3], auth[7]; /* of its 0410 */
};

struct approved {
    uint32_t conn, card, stan;
    uint64_t amount;
    char de7[11];
    char proc[7];
};

struct load_run {
    struct load_opts o;
    struct event_base *base;
    struct sim_engine *e;
    struct event *tick, *second;
    struct event *arrive; /* open loop: fires at the next arrival's scheduled time */
    struct sim_terms demo;
    struct sim_term **lterms; /* load terminals (owned) */
    struct lconn *conns;
    unsigned n_conns, n_up, n_settled, rr;
    struct lconn *ready; /* connections that are up with reversals waiting */
    struct sockaddr_storage ss;
    socklen_t sslen;
    struct lreq *reqs, *free_reqs;
    struct lrev *free_revs;
    struct lrev **rev_chunks;
    size_t n_rev_chunks, cap_rev_chunks;
    uint64_t revs_open; /* owed: WAITING or IN_FLIGHT */
    uint64_t rev_interval_ns;
    FILE *rec;
    char *rec_buf;
    bool rec_failed;
    struct approved *ring;
    size_t ring_head, ring_count;
    uint64_t rng;
    /* schedule */
    bool started, stopping, finished;
    uint64_t drain_end;       /* mono ns: stop waiting for answers (0 until stopping) */
    uint64_t rev_deadline_at; /* mono ns: owed reversals are abandoned after it */
    uint64_t t0, t_measure, t_end, t_stop;
    uint64_t k_warm, k_total, next_k;
    bool blocked_recently;
    uint64_t connect_deadline;
    struct rusage ru_start;
    bool ru_taken;
    /* per-second progress */
    struct at_hist sec;
    uint64_t sec_answered, sec_errors, sec_timeouts, tot_sent_all;
    unsigned seconds;
    char first_error[160];
    struct load_result r;
};

static uint64_t rnd(struct load_run *L)
{
    uint64_t x = L->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    L->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void note_error(struct load_run *L, const char *what)
{
    if (!L->first_error[0])
        snprintf(L->first_error, sizeof L->first_error, "%s", what);
}

enum { SEND_OK = 0, SEND_NO_SLOT = 1, SEND_NO_CONN = 2, SEND_FAILED = -1 };

/* Whether lc can take a message now. lc->up follows on_conn, but while a connection ends
 * the engine fails its pending requests (their on_done may want to send) before on_conn
 * says it is down: ask the connection itself too. */
static bool conn_usable(const struct lconn *lc)
{
    return lc->up && lc->c && sim_conn_up(lc->c);
}

/* ------------------------------------------------------------------ the record */

/* The mix kinds that move money: left without an answer, they are reversed. */
static bool kind_reversible(unsigned kind)
{
    return kind == LOAD_K_PURCHASE || kind == LOAD_K_PURCHASE_NOPIN || kind == LOAD_K_CASH ||
           kind == LOAD_K_REFUND || kind == LOAD_K_TRANSFER || kind == LOAD_K_CHIP ||
           kind == LOAD_K_ECOM;
}

/* The MTI a request of the mix goes out with (load-mix reversals: their first try). */
static const char *kind_mti(unsigned kind)
{
    return kind == LOAD_K_BALANCE ? "0100" : kind == LOAD_K_REVERSAL ? "0400" : "0200";
}

/* The MTI of a load-mix reversal's originals (approved 0200 purchases and cash-outs). */
#define ORIG_MTI "0200"

static void put_stan(char out[7], uint32_t stan)
{
    at_put_digits(out, 6, stan);
    out[6] = '\0';
}

/* The fields every line has, for a request of kind on connection conn (a transfer's: its
 * recipient wallet to_card too). */
static void record_base(struct load_run *L, struct load_record *rec, uint32_t conn, unsigned kind,
                        uint32_t card, uint32_t to_card, uint32_t stan, const char de7[11],
                        const char proc[7], uint64_t amount)
{
    memset(rec, 0, sizeof *rec);
    at_strlcpy(rec->terminal, L->conns[conn].t->id, sizeof rec->terminal);
    put_stan(rec->stan, stan);
    at_strlcpy(rec->de7, de7, sizeof rec->de7);
    at_strlcpy(rec->mti, kind_mti(kind), sizeof rec->mti);
    at_strlcpy(rec->proc, proc, sizeof rec->proc);
    rec->has_amount = kind != LOAD_K_BALANCE;
    rec->amount = amount;
    struct load_card c;
    if (load_card_of(card, &c) == 0) {
        memcpy(rec->pan, c.pan, sizeof c.pan);
        memcpy(rec->currency, c.currency, sizeof c.currency);
        memset(c.pin, 0, sizeof c.pin);
    }
    if (kind == LOAD_K_TRANSFER && load_card_of(to_card, &c) == 0) {
        rec->transfer = true;
        memcpy(rec->to_pan, c.pan, sizeof c.pan);
        memcpy(rec->to_currency, c.currency, sizeof c.currency);
        memset(c.pin, 0, sizeof c.pin);
    }
}

/* Appends one line to the record file (buffered; flushed and fsync'd at the end). A write
 * error is remembered and reported then. */
static void record_write(struct load_run *L, const struct load_record *rec)
{
    if (!L->rec)
        return;
    char line[LOAD_RECORD_LINE_MAX];
    int n = load_record_format(rec, line, sizeof line);
    if (n < 0 || fwrite(line, 1, (size_t)n, L->rec) != (size_t)n) {
        L->rec_failed = true;
        return;
    }
    L->r.record_lines++;
}

/* A request that is finished without a reversal: answered (resp), or unanswered but not
 * reversible (a balance inquiry: resp NULL). */
static void record_request(struct load_run *L, const struct lreq *q, const struct sim_resp *resp)
{
    if (!L->rec)
        return;
    struct load_record rec;
    record_base(L, &rec, q->conn, q->kind, q->card, q->to_card, q->stan, q->de7, q->proc,
                q->amount);
    if (q->kind == LOAD_K_REVERSAL) {
        rec.has_orig = true;
        at_strlcpy(rec.orig_mti, ORIG_MTI, sizeof rec.orig_mti);
        put_stan(rec.orig_stan, q->orig_stan);
        at_strlcpy(rec.orig_de7, q->orig_de7, sizeof rec.orig_de7);
    }
    if (resp) {
        rec.answered = true;
        at_strlcpy(rec.rc, resp->rc, sizeof rec.rc);
        at_strlcpy(rec.auth, resp->auth, sizeof rec.auth);
        if (rec.transfer && resp->has_billing)
            snprintf(rec.de6, sizeof rec.de6, "%llu", (unsigned long long)resp->billing);
        if (rec.transfer)
            at_strlcpy(rec.de51, resp->billing_ccy, sizeof rec.de51);
        if (rec.transfer && resp->has_fee) { /* as received: 'D' or 'C', 8 digits */
            rec.de28[0] = resp->fee < 0 ? 'C' : 'D';
            at_put_digits(rec.de28 + 1, 8, (uint64_t)(resp->fee < 0 ? -resp->fee : resp->fee));
            rec.de28[9] = '\0';
        }
    }
    record_write(L, &rec);
}

/* The line of a request whose reversal (or, for a load-mix reversal, whose repeats) ended. */
static void record_reversal(struct load_run *L, const struct lrev *v)
{
    if (!L->rec)
        return;
    struct load_record rec;
    bool answered = v->core.state == LOAD_REV_ANSWERED;
    record_base(L, &rec, v->conn, v->kind, v->card, v->to_card, v->req_stan, v->req_de7, v->proc,
                v->amount);
    if (v->kind == LOAD_K_REVERSAL) {
        /* The request is the reversal: its line names the MTI of its last try. */
        at_strlcpy(rec.mti, v->core.tries > 1 ? "0401" : "0400", sizeof rec.mti);
        rec.has_orig = true;
        at_strlcpy(rec.orig_mti, ORIG_MTI, sizeof rec.orig_mti);
        put_stan(rec.orig_stan, v->orig_stan);
        at_strlcpy(rec.orig_de7, v->orig_de7, sizeof rec.orig_de7);
        rec.answered = answered;
        if (answered) {
            at_strlcpy(rec.rc, v->rc, sizeof rec.rc);
            at_strlcpy(rec.auth, v->auth, sizeof rec.auth);
        }
    } else {
        rec.rev = true;
        if (v->rev_stan) {
            put_stan(rec.rev_stan, v->rev_stan);
            at_strlcpy(rec.rev_de7, v->rev_de7, sizeof rec.rev_de7);
        }
        rec.rev_tries = v->core.tries;
        rec.rev_answered = answered;
        if (answered)
            at_strlcpy(rec.rev_rc, v->rc, sizeof rec.rev_rc);
    }
    record_write(L, &rec);
}

/* ------------------------------------------------------------------ reversals owed */

/* Keeps lc on the ready list exactly while it is up and has reversals waiting. */
static void ready_sync(struct load_run *L, struct lconn *lc)
{
    bool want = lc->up && lc->wait_head;
    if (want == lc->on_ready)
        return;
    if (want) {
        lc->rprev = NULL;
        lc->rnext = L->ready;
        if (L->ready)
            L->ready->rprev = lc;
        L->ready = lc;
    } else {
        if (lc->rprev)
            lc->rprev->rnext = lc->rnext;
        else
            L->ready = lc->rnext;
        if (lc->rnext)
            lc->rnext->rprev = lc->rprev;
        lc->rprev = lc->rnext = NULL;
    }
    lc->on_ready = want;
}

/* A reversal from the pool, or NULL when memory is exhausted. The pool grows by a chunk
 * when empty: allocation per REV_CHUNK reversals, and only when faults make them. */
static struct lrev *rev_alloc(struct load_run *L)
{
    if (!L->free_revs) {
        if (L->n_rev_chunks == L->cap_rev_chunks) {
            size_t cap = L->cap_rev_chunks ? 2 * L->cap_rev_chunks : 16;
            struct lrev **a = realloc(L->rev_chunks, cap * sizeof *a);
            if (!a)
                return NULL;
            L->rev_chunks = a;
            L->cap_rev_chunks = cap;
        }
        struct lrev *chunk = calloc(REV_CHUNK, sizeof *chunk);
        if (!chunk)
            return NULL;
        L->rev_chunks[L->n_rev_chunks++] = chunk;
        for (size_t i = REV_CHUNK; i-- > 0;) {
            chunk[i].next = L->free_revs;
            L->free_revs = &chunk[i];
        }
    }
    struct lrev *v = L->free_revs;
    L->free_revs = v->next;
    v->next = v->prev = NULL;
    return v;
}

/* Puts a WAITING reversal at the tail of its connection's waiting list. */
static void rev_wait(struct load_run *L, struct lrev *v)
{
    struct lconn *lc = &L->conns[v->conn];
    v->next = NULL;
    v->prev = lc->wait_tail;
    if (lc->wait_tail)
        lc->wait_tail->next = v;
    else
        lc->wait_head = v;
    lc->wait_tail = v;
    ready_sync(L, lc);
}

static void rev_unwait(struct load_run *L, struct lrev *v)
{
    struct lconn *lc = &L->conns[v->conn];
    if (v->prev)
        v->prev->next = v->next;
    else
        lc->wait_head = v->next;
    if (v->next)
        v->next->prev = v->prev;
    else
        lc->wait_tail = v->prev;
    v->prev = v->next = NULL;
    ready_sync(L, lc);
}

/* An ANSWERED or ABANDONED reversal: its request's record line, then back to the pool. */
static void rev_finish(struct load_run *L, struct lrev *v)
{
    record_reversal(L, v);
    load_rev_set_state(&v->core, LOAD_REV_FREE);
    L->revs_open--;
    v->prev = NULL;
    v->next = L->free_revs;
    L->free_revs = v;
}

/* Request q (a money-moving one, or a load-mix reversal) ended without an acceptable answer
 * (how): the harness now owes its reversal, or the reversal's repeats. */
static void rev_open(struct load_run *L, const struct lreq *q, enum load_try_result how)
{
    uint64_t now = at_mono_ns();
    struct lrev spare;
    struct lrev *v = rev_alloc(L);
    if (!v) {
        note_error(L, "no memory left for reversals");
        memset(&spare, 0, sizeof spare);
        v = &spare;
    }
    L->r.reversals++;
    L->revs_open++;
    v->conn = q->conn;
    v->card = q->card;
    v->to_card = q->to_card;
    v->kind = q->kind;
    v->amount = q->amount;
    memcpy(v->proc, q->proc, sizeof v->proc);
    v->req_stan = q->stan;
    memcpy(v->req_de7, q->de7, sizeof v->req_de7);
    v->orig_stan = q->orig_stan;
    memcpy(v->orig_de7, q->orig_de7, sizeof v->orig_de7);
    v->rc[0] = v->auth[0] = '\0';
    if (q->kind == LOAD_K_REVERSAL) {
        /* Its repeats are the same message as 0401: same STAN, same DE 7. */
        v->rev_stan = q->stan;
        v->rev_now_us = q->now_us;
        memcpy(v->rev_de7, q->de7, sizeof v->rev_de7);
        L->r.reversals_sent++;
        load_rev_begin(&v->core, 1, q->sent_ns, how, now, L->rev_interval_ns);
    } else {
        v->rev_stan = 0;
        v->rev_now_us = 0;
        v->rev_de7[0] = '\0';
        load_rev_begin(&v->core, 0, 0, how, now, L->rev_interval_ns);
    }
    if (v == &spare) {
        /* Out of memory: given up at once, and its line says so. */
        load_rev_abandon(&v->core);
        L->r.reversals_abandoned++;
        record_reversal(L, v);
        L->revs_open--;
        return;
    }
    rev_wait(L, v);
}

static enum load_try_result try_result(const struct sim_outcome *o)
{
    if (o->status == SIM_ANSWERED)
        return sim_mac_acceptable(&o->resp) ? LOAD_TRY_ANSWERED : LOAD_TRY_BAD_MAC;
    return o->status == SIM_E_TIMEOUT ? LOAD_TRY_TIMEOUT : LOAD_TRY_CONN;
}

/* A reversal's try: an authentic 0410 ends it, unless it says 91 or 96 — the switch could not
 * take the reversal now (its database away, its original still in flight): like a terminal,
 * the harness repeats it. */
static enum load_try_result reversal_try_result(const struct sim_outcome *o)
{
    enum load_try_result how = try_result(o);
    if (how == LOAD_TRY_ANSWERED &&
        (strcmp(o->resp.rc, "91") == 0 || strcmp(o->resp.rc, "96") == 0))
        return LOAD_TRY_NOT_NOW;
    return how;
}

/* One try of reversal q->rev ended. */
static void rev_try_done(struct load_run *L, const struct lreq *q, const struct sim_outcome *o)
{
    struct lrev *v = q->rev;
    enum load_try_result how = reversal_try_result(o);
    if (how == LOAD_TRY_ANSWERED || how == LOAD_TRY_NOT_NOW) {
        L->r.all_answered++;
        if (strcmp(o->resp.rc, "00") == 0)
            L->r.all_approved++;
    }
    load_rev_try_done(&v->core, how, at_mono_ns(), L->rev_interval_ns);
    if (how == LOAD_TRY_ANSWERED) {
        at_strlcpy(v->rc, o->resp.rc, sizeof v->rc);
        at_strlcpy(v->auth, o->resp.auth, sizeof v->auth);
        L->r.reversals_answered++;
        rev_finish(L, v);
    } else {
        rev_wait(L, v);
    }
}

/* ------------------------------------------------------------------ completions */

static int send_one(struct load_run *L, int conn_hint, uint64_t t0_ns, bool measured);

/* A per-message context from the free list (the caller saw it is not empty), and back. */
static struct lreq *req_take(struct load_run *L)
{
    struct lreq *q = L->free_reqs;
    L->free_reqs = q->next;
    return q;
}

static void req_put(struct load_run *L, struct lreq *q)
{
    q->next = L->free_reqs;
    L->free_reqs = q;
}

/* The kinds whose approvals a load-mix reversal may reverse (approved 0200 purchases and
 * cash-outs: ORIG_MTI). */
static bool kind_reversal_original(unsigned kind)
{
    return kind == LOAD_K_PURCHASE || kind == LOAD_K_PURCHASE_NOPIN || kind == LOAD_K_CASH ||
           kind == LOAD_K_CHIP || kind == LOAD_K_ECOM;
}

/* Remembers approved request q as an original for a later load-mix reversal (the ring keeps
 * the newest APPROVED_RING). */
static void ring_push(struct load_run *L, const struct lreq *q)
{
    size_t i = (L->ring_head + L->ring_count) % APPROVED_RING;
    if (L->ring_count == APPROVED_RING) {
        L->ring_head = (L->ring_head + 1) % APPROVED_RING; /* drop the oldest */
        L->ring_count--;
        i = (L->ring_head + L->ring_count) % APPROVED_RING;
    }
    struct approved *a = &L->ring[i];
    a->conn = q->conn;
    a->card = q->card;
    a->stan = q->stan;
    a->amount = q->amount;
    memcpy(a->de7, q->de7, sizeof a->de7);
    memcpy(a->proc, q->proc, sizeof a->proc);
    L->ring_count++;
}

/* Takes the newest original whose connection is still usable off the ring into *out; newer
 * ones whose connection is not are dropped on the way. false when none is left. */
static bool ring_take_usable(struct load_run *L, struct approved *out)
{
    while (L->ring_count) {
        size_t i = (L->ring_head + L->ring_count - 1) % APPROVED_RING;
        L->ring_count--;
        if (conn_usable(&L->conns[L->ring[i].conn])) {
            *out = L->ring[i];
            return true;
        }
    }
    return false;
}

/* Puts back the original ring_take_usable just took (its slot is untouched). */
static void ring_untake(struct load_run *L)
{
    L->ring_count++;
}

/* Sends on lc until it holds K requests again (closed loop). */
static void closed_refill(struct load_run *L, struct lconn *lc)
{
    uint64_t now = at_mono_ns();
    bool measured = now >= L->t_measure && now < L->t_end;
    for (size_t n = sim_conn_inflight(lc->c); n < L->o.closed_k && conn_usable(lc); n++)
        if (send_one(L, (int)lc->idx, 0, measured) != SEND_OK)
            break;
}

/* Counts how request q of the mix ended (o) in the progress line and, when q is in the
 * measurement window, in the report; acceptable: answered with a MAC the harness trusts.
 * After the stop, requests still in flight are failed by the harness itself: not counted as
 * the server's errors (the record and the reversals still see them). */
static void count_outcome(struct load_run *L, const struct lreq *q, const struct sim_outcome *o,
                          bool acceptable)
{
    struct load_result *r = &L->r;
    bool count = !L->finished;
    if (acceptable) {
        r->all_answered++;
        L->sec_answered++;
        at_hist_record(&L->sec, o->latency_ns);
        bool ok = strcmp(o->resp.rc, "00") == 0;
        if (ok)
            r->all_approved++;
        if (!q->measured)
            return;
        r->answered++;
        at_hist_record(&r->total, o->latency_ns);
        at_hist_record(&r->kind[q->kind], o->latency_ns);
        const char *rc = o->resp.rc;
        if (rc[0] >= '0' && rc[0] <= '9' && rc[1] >= '0' && rc[1] <= '9' && !rc[2])
            r->rc[(rc[0] - '0') * 10 + (rc[1] - '0')]++;
        else
            r->rc_other++;
        if (!ok)
            r->unexpected++;
    } else if (count && o->status == SIM_E_TIMEOUT) {
        L->sec_timeouts++;
        if (q->measured)
            r->timeouts++;
    } else if (count) {
        L->sec_errors++;
        if (q->measured)
            r->errors++;
        note_error(L, o->status == SIM_ANSWERED ? "response MAC wrong or missing"
                      : o->reason               ? o->reason
                                                : "?");
    }
}

/* What becomes of request q of the mix once it ended: like a terminal, the harness reverses an
 * unanswered money-moving request and repeats an unanswered load-mix reversal (or one the
 * switch could not take now: 91/96); only when that is over is its line of the record
 * written. */
static void settle_request(struct load_run *L, const struct lreq *q, const struct sim_outcome *o,
                           bool acceptable)
{
    bool not_now = q->kind == LOAD_K_REVERSAL && reversal_try_result(o) == LOAD_TRY_NOT_NOW;
    if (acceptable && !not_now)
        record_request(L, q, &o->resp);
    else if (kind_reversible(q->kind) || q->kind == LOAD_K_REVERSAL)
        rev_open(L, q, not_now ? LOAD_TRY_NOT_NOW : try_result(o));
    else
        record_request(L, q, NULL);
}

/* The engine's verdict on one message: a reversal try, or a request of the mix (counted,
 * remembered as an original when it is one, settled; in closed loop its connection gets the
 * next request at once). */
static void on_done(void *arg, struct sim_req *sr, const struct sim_outcome *o)
{
    (void)sr;
    struct lreq *q = arg;
    struct load_run *L = q->run;
    if (o->status == SIM_ANSWERED)
        L->conns[q->conn].backoff_ms = RECONNECT_MIN_MS; /* this connection works */
    if (q->rev) {
        rev_try_done(L, q, o);
        q->rev = NULL;
        req_put(L, q);
        return;
    }
    bool acceptable = o->status == SIM_ANSWERED && sim_mac_acceptable(&o->resp);
    count_outcome(L, q, o, acceptable);
    if (acceptable && strcmp(o->resp.rc, "00") == 0 && kind_reversal_original(q->kind))
        ring_push(L, q);
    settle_request(L, q, o, acceptable);
    uint32_t conn = q->conn;
    req_put(L, q);
    if (L->o.closed_k && L->started && !L->stopping && !L->finished &&
        conn_usable(&L->conns[conn])) {
        uint64_t now = at_mono_ns();
        (void)send_one(L, (int)conn, 0, now >= L->t_measure && now < L->t_end);
    }
}

/* ------------------------------------------------------------------ sending */

static int pick_conn(struct load_run *L)
{
    for (unsigned n = 0; n < L->n_conns; n++) {
        unsigned i = L->rr++ % L->n_conns;
        struct lconn *lc = &L->conns[i];
        if (conn_usable(lc) && sim_conn_output_len(lc->c) < CONN_OUT_LIMIT)
            return (int)i;
    }
    return -1;
}

/* The kind of the next arrival, drawn from the mix. A load-mix reversal takes its original off
 * the ring (into *orig); with none left it goes out as a purchase, counted as a fallback. */
static enum load_kind draw_kind(struct load_run *L, bool measured, struct approved *orig)
{
    enum load_kind kind = load_mix_pick(&L->o.mix, rnd(L));
    if (kind != LOAD_K_REVERSAL || ring_take_usable(L, orig))
        return kind;
    if (measured)
        L->r.reversal_fallback++;
    return LOAD_K_PURCHASE;
}

/* DE 14, then DE 2 and DE 49 of wallet index's card into x, *c getting the card (whose PIN the
 * caller wipes). 0, or -1 when the index has no card. */
static int txn_card(uint32_t index, struct sim_txn *x, struct load_card *c)
{
    memcpy(x->expiry, "2812", 5);
    if (load_card_of(index, c) != 0)
        return -1;
    memcpy(x->pan, c->pan, sizeof c->pan);
    memcpy(x->currency, c->currency, 4);
    return 0;
}

/* A wallet index drawn from --card-first..--cards. */
static uint32_t draw_card(struct load_run *L)
{
    return (uint32_t)(L->o.card_first + rnd(L) % (L->o.cards - L->o.card_first + 1));
}

/* The transaction of an arrival of kind into x: the card (a reversal's original's, else drawn
 * from --card-first..--cards), an amount drawn from 1..--amount-max, the PIN for the kinds that
 * carry one (the caller wipes x->pin once built), for a load-mix reversal its original's amount,
 * processing code and DE 90, for a transfer its recipient (another wallet of the range, any BIN:
 * into *to_card and DE 103), and the clock its DE 7 is made from (kept: a repeat of the message
 * needs the same). Returns the card's index, or 0 when it has no card. */
static uint32_t arrival_txn(struct load_run *L, enum load_kind kind, const struct approved *orig,
                            struct sim_txn *x, uint32_t *to_card)
{
    memset(x, 0, sizeof *x);
    *to_card = 0;
    uint32_t card = kind == LOAD_K_REVERSAL ? orig->card : draw_card(L);
    struct load_card c;
    if (txn_card(card, x, &c) != 0)
        return 0;
    x->amount = 1 + rnd(L) % L->o.amount_max;
    switch (kind) {
    case LOAD_K_PURCHASE:
        x->type = SIM_T_PURCHASE;
        memcpy(x->pin, c.pin, 5);
        break;
    case LOAD_K_PURCHASE_NOPIN:
        x->type = SIM_T_PURCHASE;
        break;
    case LOAD_K_CHIP: /* docs/emv.md: half CVN 18, half CVN 10 */
        x->type = SIM_T_PURCHASE;
        memcpy(x->pin, c.pin, 5);
        x->chip_cvn = rnd(L) % 2 ? 18 : 10;
        break;
    case LOAD_K_ECOM:
        x->type = SIM_T_PURCHASE;
        if (sim_demo_cvv2(x->pan, x->expiry, x->cvv2) != 0)
            x->cvv2[0] = '\0'; /* a card without a demo CVK: sent without, as a plain purchase */
        break;
    case LOAD_K_CASH:
        x->type = SIM_T_CASH;
        memcpy(x->pin, c.pin, 5);
        break;
    case LOAD_K_BALANCE:
        x->type = SIM_T_BALANCE;
        memcpy(x->pin, c.pin, 5);
        x->amount = 0;
        break;
    case LOAD_K_REFUND:
        x->type = SIM_T_REFUND;
        break;
    case LOAD_K_TRANSFER: {
        x->type = SIM_T_TRANSFER;
        memcpy(x->pin, c.pin, 5);
        *to_card = draw_card(L);
        if (*to_card == card) /* never to itself (the options ensure two wallets) */
            *to_card = card == L->o.cards ? (uint32_t)L->o.card_first : card + 1;
        struct load_card to;
        if (load_card_of(*to_card, &to) == 0)
            memcpy(x->recipient, to.pan, sizeof to.pan);
        memset(to.pin, 0, sizeof to.pin);
        break;
    }
    case LOAD_K_REVERSAL:
    default:
        x->type = SIM_T_REVERSAL;
        x->amount = orig->amount;
        memcpy(x->proc, orig->proc, sizeof x->proc);
        memcpy(x->orig_mti, ORIG_MTI, 5);
        x->orig_stan = orig->stan;
        memcpy(x->orig_time, orig->de7, sizeof x->orig_time);
        break;
    }
    x->now_us = at_wall_us();
    memset(c.pin, 0, sizeof c.pin);
    return card;
}

/* What q must remember of the message it is about to send (x as built into sent): its
 * identity, what a reversal of it repeats, and a load-mix reversal's original. */
static void req_note_message(struct lreq *q, const struct sim_txn *x, const struct sim_sent *sent,
                             const struct approved *orig)
{
    q->amount = x->amount;
    q->stan = (uint32_t)strtoul(sent->stan, NULL, 10);
    memcpy(q->de7, sent->de7, sizeof q->de7);
    memcpy(q->proc, sent->proc, sizeof q->proc);
    q->orig_stan = orig->stan;
    memcpy(q->orig_de7, orig->de7, sizeof q->orig_de7);
    q->now_us = x->now_us;
    q->sent_ns = at_mono_ns();
}

/* An arrival left: counted for the journal check and the record (whole run), the progress
 * line, and in the window by kind. */
static void count_arrival(struct load_run *L, enum load_kind kind, bool measured)
{
    L->r.all_sent++;
    L->r.all_requests++;
    L->tot_sent_all++;
    if (measured) {
        L->r.sent++;
        L->r.per_kind_sent[kind]++;
    }
}

/* Sends one arrival: its kind drawn from the mix, on conn_hint (closed loop), on its
 * original's connection (a load-mix reversal), or on the next usable connection round-robin.
 * t0_ns is its scheduled time (0 = now), where its latency counts from. SEND_NO_SLOT and
 * SEND_NO_CONN leave nothing behind (the caller retries the arrival later); SEND_FAILED spent
 * it. */
static int send_one(struct load_run *L, int conn_hint, uint64_t t0_ns, bool measured)
{
    if (!L->free_reqs)
        return SEND_NO_SLOT;
    if (L->n_up == 0)
        return SEND_NO_CONN; /* (and the approved originals stay for when one is back) */
    uint8_t *buf;
    size_t cap;
    struct sim_req *sr = sim_req_get(L->e, &buf, &cap);
    if (!sr)
        return SEND_NO_SLOT;
    struct approved orig;
    memset(&orig, 0, sizeof orig);
    enum load_kind kind = draw_kind(L, measured, &orig);
    int ci = kind == LOAD_K_REVERSAL ? (int)orig.conn /* with its original's terminal */
             : conn_hint >= 0        ? conn_hint
                                     : pick_conn(L);
    if (ci < 0 || !conn_usable(&L->conns[ci])) {
        if (kind == LOAD_K_REVERSAL)
            ring_untake(L); /* keep it for a later reversal */
        sim_req_put(L->e, sr);
        return SEND_NO_CONN;
    }
    struct lconn *lc = &L->conns[ci];

    struct sim_txn x;
    uint32_t to_card;
    uint32_t card = arrival_txn(L, kind, &orig, &x, &to_card);
    if (!card) {
        sim_req_put(L->e, sr);
        return SEND_FAILED;
    }
    struct sim_sent sent;
    size_t len = 0;
    char err[160];
    int brc = sim_term_build_request(lc->t, &x, buf, cap, &len, &sent, err, sizeof err);
    memset(x.pin, 0, sizeof x.pin);
    if (brc != 0) {
        note_error(L, err);
        sim_req_put(L->e, sr);
        if (measured)
            L->r.errors++;
        return SEND_FAILED;
    }

    struct lreq *q = req_take(L);
    q->run = L;
    q->rev = NULL;
    q->conn = (uint32_t)ci;
    q->card = card;
    q->to_card = to_card;
    q->kind = (uint8_t)kind;
    q->measured = measured;
    req_note_message(q, &x, &sent, &orig);
    if (sim_req_send(lc->c, sr, len, &sent, lc->t, (unsigned)L->o.timeout_ms, t0_ns, on_done, q) !=
        0) {
        req_put(L, q);
        if (measured)
            L->r.errors++;
        note_error(L, "connection not usable");
        return SEND_FAILED;
    }
    count_arrival(L, kind, measured);
    return SEND_OK;
}

/* Sends the next try of reversal v (at the head of lc's waiting list, lc up): 0400 the
 * first time, 0401 after, with the first try's STAN and DE 7. It reverses its request
 * whole: same PAN, amount, processing code and currency, DE 90 naming the request (or, for
 * a load-mix reversal, its original). SEND_FAILED when it cannot be built: then it is
 * abandoned (and recorded) at once rather than retried forever. */
static int rev_send(struct load_run *L, struct lconn *lc, struct lrev *v)
{
    uint8_t *buf;
    size_t cap;
    if (!L->free_reqs)
        return SEND_NO_SLOT;
    struct sim_req *sr = sim_req_get(L->e, &buf, &cap);
    if (!sr)
        return SEND_NO_SLOT;
    struct sim_txn x;
    memset(&x, 0, sizeof x);
    struct load_card card;
    if (txn_card(v->card, &x, &card) == 0)
        memset(card.pin, 0, sizeof card.pin); /* a reversal carries no PIN */
    x.type = SIM_T_REVERSAL;
    memcpy(x.mti, load_rev_next_mti(&v->core), 5);
    x.amount = v->amount;
    memcpy(x.proc, v->proc, sizeof x.proc);
    if (v->kind == LOAD_K_REVERSAL) {
        memcpy(x.orig_mti, ORIG_MTI, 5);
        x.orig_stan = v->orig_stan;
        memcpy(x.orig_time, v->orig_de7, sizeof x.orig_time);
    } else {
        memcpy(x.orig_mti, kind_mti(v->kind), 5);
        x.orig_stan = v->req_stan;
        memcpy(x.orig_time, v->req_de7, sizeof x.orig_time);
    }
    x.stan = v->rev_stan; /* 0: the terminal's next, the first time */
    x.now_us = v->rev_now_us ? v->rev_now_us : at_wall_us();
    struct sim_sent sent;
    size_t len = 0;
    char err[160];
    if (sim_term_build_request(lc->t, &x, buf, cap, &len, &sent, err, sizeof err) != 0) {
        note_error(L, err);
        sim_req_put(L->e, sr);
        rev_unwait(L, v);
        load_rev_abandon(&v->core);
        L->r.reversals_abandoned++;
        rev_finish(L, v);
        return SEND_FAILED;
    }
    struct lreq *q = req_take(L);
    memset(q, 0, sizeof *q);
    q->run = L;
    q->rev = v;
    q->conn = lc->idx;
    q->card = v->card;
    q->kind = v->kind;
    if (sim_req_send(lc->c, sr, len, &sent, lc->t, (unsigned)(L->rev_interval_ns / 1000000u), 0,
                     on_done, q) != 0) {
        req_put(L, q);
        return SEND_NO_CONN;
    }
    if (!v->rev_stan) {
        v->rev_stan = (uint32_t)strtoul(sent.stan, NULL, 10);
        v->rev_now_us = x.now_us;
        memcpy(v->rev_de7, sent.de7, sizeof v->rev_de7);
        L->r.reversals_sent++;
    }
    rev_unwait(L, v);
    load_rev_sent(&v->core, at_mono_ns());
    L->r.reversal_tries++;
    L->r.all_sent++;
    L->tot_sent_all++;
    return SEND_OK;
}

/* Sends the reversals that are due on connections that are up (before new arrivals, as a
 * terminal sends its pending reversal before its next transaction). Bounded per tick. */
static void flush_reversals(struct load_run *L, uint64_t now)
{
    unsigned budget = SEND_PER_TICK;
    for (struct lconn *lc = L->ready, *next; lc && budget; lc = next) {
        next = lc->rnext;
        while (conn_usable(lc) && lc->wait_head && budget) {
            struct lrev *v = lc->wait_head;
            if (!load_rev_due(&v->core, now) || sim_conn_output_len(lc->c) >= CONN_OUT_LIMIT)
                break;
            int rc = rev_send(L, lc, v);
            if (rc == SEND_NO_SLOT)
                return;
            if (rc == SEND_NO_CONN)
                break;
            budget--;
        }
    }
}

/* ------------------------------------------------------------------ schedule */

static double cpu_s(const struct rusage *u)
{
    return (double)u->ru_utime.tv_sec + (double)u->ru_utime.tv_usec / 1e6 +
           (double)u->ru_stime.tv_sec + (double)u->ru_stime.tv_usec / 1e6;
}

static void begin_run(struct load_run *L)
{
    L->started = true;
    L->t0 = at_mono_ns();
    L->t_measure = L->t0 + (uint64_t)(L->o.warmup * 1e9);
    L->t_end = L->t_measure + (uint64_t)(L->o.duration * 1e9);
    L->k_warm = (uint64_t)(L->o.warmup * (double)L->o.rate + 0.5);
    L->k_total = L->k_warm + (uint64_t)(L->o.duration * (double)L->o.rate + 0.5);
    L->r.conns_up = L->n_up;
    if (!L->o.quiet)
        fprintf(stderr, "load: %u of %u connections up; %s\n", L->n_up, L->n_conns,
                L->o.closed_k ? "closed loop" : "open loop");
    if (L->o.closed_k) {
        for (unsigned i = 0; i < L->n_conns; i++)
            for (unsigned k = 0; k < L->o.closed_k && conn_usable(&L->conns[i]); k++)
                (void)send_one(L, (int)i, 0, L->o.warmup <= 0);
    }
}

static void finish(struct load_run *L)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double el = (double)(L->t_stop > L->t_measure ? L->t_stop - L->t_measure : 0) / 1e9;
    if (L->ru_taken && el > 0)
        L->r.gen_cpu_pct = 100.0 * (cpu_s(&ru) - cpu_s(&L->ru_start)) / el;
    event_base_loopbreak(L->base);
}

/* After the loop: no more sending or reconnecting; every connection is closed (what was
 * still in flight fails: requests are reversed-or-recorded as usual, reversal tries go back
 * to waiting), then every reversal still owed is abandoned and its request's line written. */
static void wind_down(struct load_run *L)
{
    L->finished = true;
    for (unsigned i = 0; i < L->n_conns; i++) {
        struct lconn *lc = &L->conns[i];
        if (lc->reconnect) {
            event_free(lc->reconnect);
            lc->reconnect = NULL;
        }
    }
    for (unsigned i = 0; i < L->n_conns; i++) {
        struct lconn *lc = &L->conns[i];
        struct sim_conn *c = lc->c;
        lc->c = NULL;
        lc->up = false;
        sim_conn_free(c); /* fails its pending requests now; the socket goes from the loop */
    }
    for (unsigned i = 0; i < L->n_conns; i++) {
        struct lconn *lc = &L->conns[i];
        while (lc->wait_head) {
            struct lrev *v = lc->wait_head;
            rev_unwait(L, v);
            load_rev_abandon(&v->core);
            L->r.reversals_abandoned++;
            rev_finish(L, v);
        }
    }
}

/* Before the run: it begins once every connection came up or failed (or the connect wait is
 * over), unless none came up. */
static void tick_before_start(struct load_run *L, uint64_t now)
{
    if (L->n_settled < L->n_conns && now <= L->connect_deadline)
        return;
    if (L->n_up == 0) {
        fprintf(stderr, "acquirer-sim load: no connection came up (%s)\n",
                L->first_error[0] ? L->first_error : "timeout");
        event_base_loopbreak(L->base);
        return;
    }
    begin_run(L);
}

/* Open loop: sends the arrivals due by now, at most SEND_PER_TICK, each timed from its
 * schedule. A measured send more than LOAD_LATE_NS after its time is late; late while no slot
 * or connection was lacking (since the backlog last cleared), it is the harness's own delay. */
static void send_due(struct load_run *L, uint64_t now)
{
    uint64_t due = load_sched_due(L->t0, now, L->o.rate);
    if (due > L->k_total)
        due = L->k_total;
    unsigned n = 0;
    bool blocked = false;
    while (L->next_k < due && n < SEND_PER_TICK) {
        uint64_t at = load_sched_time(L->t0, L->next_k, L->o.rate);
        int rc = send_one(L, -1, at, L->next_k >= L->k_warm);
        if (rc == SEND_NO_SLOT || rc == SEND_NO_CONN) {
            blocked = true;
            L->blocked_recently = true;
            break;
        }
        uint64_t lag = at_mono_ns() - at;
        if (L->next_k >= L->k_warm && rc == SEND_OK) {
            if (lag > L->r.send_lag_max_ns)
                L->r.send_lag_max_ns = lag;
            if (lag > LOAD_LATE_NS) {
                L->r.late_sends++;
                if (!L->blocked_recently)
                    L->r.late_sends_gen++;
            }
        }
        L->next_k++;
        n++;
    }
    if (!blocked && L->next_k >= due)
        L->blocked_recently = false;
    /* The next arrival leaves at its own time, not at the next tick: a tick's lag (up to its
     * period, half of it on average) would count in every request's latency. A backlog (no
     * slot or connection) is retried by the tick. A timer still pending is not set again (a
     * tick that sent the arrival it was set for leaves it to fire early: it only sets it anew). */
    if (!blocked && L->next_k < L->k_total && !event_pending(L->arrive, EV_TIMEOUT, NULL)) {
        uint64_t at = load_sched_time(L->t0, L->next_k, L->o.rate), t = at_mono_ns();
        uint64_t wait = at > t ? at - t : 0;
        struct timeval tv = { (time_t)(wait / 1000000000u),
                              (suseconds_t)(wait % 1000000000u / 1000u) };
        (void)event_add(L->arrive, &tv);
    }
}

/* Whether the arrivals are over. Open loop: every one was sent, or the backlog outlived the
 * window by the timeout (the measured ones never sent count as unsent). Closed loop: the
 * window ended. The window as reported ends at t_end either way. */
static void check_stop(struct load_run *L, uint64_t now)
{
    if (L->o.closed_k) {
        if (now >= L->t_end) {
            L->stopping = true;
            L->t_stop = L->t_end;
        }
        return;
    }
    if (L->next_k < L->k_total && now <= L->t_end + L->o.timeout_ms * 1000000ull)
        return;
    L->stopping = true;
    L->t_stop = L->t_end;
    L->r.scheduled = L->k_total - L->k_warm;
    uint64_t sent_measured = L->next_k > L->k_warm ? L->next_k - L->k_warm : 0;
    L->r.unsent = L->r.scheduled - sent_measured;
}

/* After the stop: requests sent up to it get their full timeout (then count as timeouts: the
 * journal check needs every request either answered or timed out); reversals owed then get
 * until the reversal deadline, counted from the last arrival. The run finishes when nothing is
 * in flight or owed, or when those times are over. */
static void check_drained(struct load_run *L, uint64_t now)
{
    if (!L->drain_end) {
        L->drain_end =
            (now > L->t_stop ? now : L->t_stop) + L->o.timeout_ms * 1000000ull + 1000000000ull;
        L->rev_deadline_at = now + (uint64_t)(L->o.rev_deadline * 1e9);
    }
    bool idle = sim_engine_inflight(L->e) == 0 && L->revs_open == 0;
    if (idle || (now > L->drain_end && (L->revs_open == 0 || now > L->rev_deadline_at)))
        finish(L);
}

/* Every millisecond: the start, owed reversals first, then the arrivals due, the stop and the
 * drain. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct load_run *L = arg;
    uint64_t now = at_mono_ns();
    if (!L->started) {
        tick_before_start(L, now);
        return;
    }
    if (!L->ru_taken && now >= L->t_measure) {
        getrusage(RUSAGE_SELF, &L->ru_start);
        L->ru_taken = true;
    }
    if (L->ready)
        flush_reversals(L, now);
    if (!L->stopping) {
        if (!L->o.closed_k)
            send_due(L, now);
        check_stop(L, now);
    }
    if (L->stopping)
        check_drained(L, now);
}

/* Open loop: the arrival send_due armed this timer for is due. */
static void on_arrive(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct load_run *L = arg;
    if (L->started && !L->stopping && !L->o.closed_k)
        send_due(L, at_mono_ns());
}

static void on_second(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct load_run *L = arg;
    if (!L->started)
        return;
    L->seconds++;
    if (!L->o.quiet) {
        uint64_t now = at_mono_ns();
        const char *phase = now < L->t_measure ? "warm-up" : L->stopping ? "drain" : "run";
        fprintf(stderr,
                "[%4us %-7s] sent %llu answered %llu tps %llu p50 %.2f ms p99 %.2f ms errors "
                "%llu timeouts %llu in flight %zu",
                L->seconds, phase, (unsigned long long)L->tot_sent_all,
                (unsigned long long)L->r.all_answered, (unsigned long long)L->sec_answered,
                (double)at_hist_quantile(&L->sec, 0.5) / 1e6,
                (double)at_hist_quantile(&L->sec, 0.99) / 1e6, (unsigned long long)L->sec_errors,
                (unsigned long long)L->sec_timeouts, sim_engine_inflight(L->e));
        if (L->n_up < L->n_conns || L->r.reversals)
            fprintf(stderr, " up %u/%u reversals owed %llu", L->n_up, L->n_conns,
                    (unsigned long long)L->revs_open);
        fputc('\n', stderr);
    }
    at_hist_reset(&L->sec);
    L->sec_answered = L->sec_errors = L->sec_timeouts = 0;
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg);

/* Opens lc's connection again after its backoff (100 ms, doubling to 2 s; back to 100 ms
 * once a connection answers). */
static void schedule_reconnect(struct load_run *L, struct lconn *lc)
{
    if (!lc->reconnect)
        lc->reconnect = evtimer_new(L->base, on_reconnect, lc);
    if (!lc->reconnect) {
        note_error(L, "no memory for a reconnect timer");
        return;
    }
    struct timeval tv = { (time_t)(lc->backoff_ms / 1000),
                          (suseconds_t)(lc->backoff_ms % 1000) * 1000 };
    evtimer_add(lc->reconnect, &tv);
    lc->backoff_ms = lc->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : lc->backoff_ms * 2;
}

static void on_conn(void *arg, struct sim_conn *c, bool up, const char *reason);

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lconn *lc = arg;
    struct load_run *L = lc->run;
    if (L->finished)
        return;
    /* The old connection ended (its on_close has returned): freed here, not in its callback. */
    sim_conn_free(lc->c);
    lc->c = sim_conn_open(L->e, (struct sockaddr *)&L->ss, L->sslen, lc->t, on_conn, lc);
    if (!lc->c)
        schedule_reconnect(L, lc);
}

static void on_conn(void *arg, struct sim_conn *c, bool up, const char *reason)
{
    (void)c;
    struct lconn *lc = arg;
    struct load_run *L = lc->run;
    if (!lc->settled) {
        lc->settled = true;
        L->n_settled++;
    }
    if (up) {
        lc->up = true;
        L->n_up++;
        if (lc->lost)
            L->r.reconnects++;
        ready_sync(L, lc);
        if (L->o.closed_k && L->started && !L->stopping && !L->finished)
            closed_refill(L, lc);
        return;
    }
    bool was_up = lc->up;
    if (lc->up) {
        lc->up = false;
        L->n_up--;
    }
    lc->lost = true;
    ready_sync(L, lc);
    note_error(L, reason ? reason : "connection ended");
    if (was_up) {
        L->r.conn_losses++;
        if (L->started && !L->o.quiet && L->r.conn_losses <= LOSSES_PRINTED)
            fprintf(stderr, "load: connection to %s ended: %s; reconnecting%s\n", lc->t->id,
                    reason ? reason : "?",
                    L->r.conn_losses == LOSSES_PRINTED ? " (further losses not printed)" : "");
    }
    if (!L->finished)
        schedule_reconnect(L, lc);
}

/* ------------------------------------------------------------------ main */

static void raise_nofile(unsigned need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need + 64)
        return;
    rlim_t want = need + 64;
    if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max)
        want = rl.rlim_max;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || want < need + 64)
        fprintf(stderr, "acquirer-sim load: open-file limit %llu is low for %u connections\n",
                (unsigned long long)want, need);
}

/* Opens the record file (buffered: one write per MiB) and writes its first line. */
static int record_open(struct load_run *L, const char *path)
{
    L->rec = fopen(path, "w");
    L->rec_buf = malloc(RECORD_BUF);
    if (!L->rec || !L->rec_buf || setvbuf(L->rec, L->rec_buf, _IOFBF, RECORD_BUF) != 0 ||
        fputs(L->o.mix.weight[LOAD_K_TRANSFER] ? LOAD_RECORD_HEADER_V2 : LOAD_RECORD_HEADER,
              L->rec) == EOF) {
        fprintf(stderr, "acquirer-sim load: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    L->r.record_file = path;
    return 0;
}

/* Flushes, fsyncs and closes the record file. 0, or -1 when a line was lost. */
static int record_close(struct load_run *L)
{
    if (!L->rec)
        return 0;
    int bad = L->rec_failed || fflush(L->rec) != 0 || fsync(fileno(L->rec)) != 0;
    bad |= fclose(L->rec) != 0;
    L->rec = NULL;
    free(L->rec_buf);
    L->rec_buf = NULL;
    return bad ? -1 : 0;
}

static void run_free(struct load_run *L)
{
    L->finished = true; /* connections closing from here on are not reopened */
    if (L->conns)
        for (unsigned i = 0; i < L->n_conns; i++)
            if (L->conns[i].reconnect)
                event_free(L->conns[i].reconnect);
    if (L->tick)
        event_free(L->tick);
    if (L->arrive)
        event_free(L->arrive);
    if (L->second)
        event_free(L->second);
    sim_engine_free(L->e);
    if (L->base)
        event_base_free(L->base);
    if (L->lterms)
        for (unsigned i = 0; i < L->n_conns; i++)
            load_term_free(L->lterms[i]);
    free(L->lterms);
    sim_terms_free(&L->demo);
    free(L->conns);
    free(L->reqs);
    free(L->ring);
    for (size_t i = 0; i < L->n_rev_chunks; i++)
        free(L->rev_chunks[i]);
    free(L->rev_chunks);
    if (L->rec) {
        fclose(L->rec);
        L->rec = NULL;
    }
    free(L->rec_buf);
}

/* The memory of the whole run, allocated before it starts: the connection slots, the
 * per-message contexts (on their free list) and the approved-originals ring. 0 or -1. */
static int alloc_run(struct load_run *L)
{
    L->n_conns = (unsigned)L->o.connections;
    L->conns = calloc(L->n_conns, sizeof *L->conns);
    L->reqs = calloc(L->o.slots, sizeof *L->reqs);
    L->ring = calloc(APPROVED_RING, sizeof *L->ring);
    if (!L->conns || !L->reqs || !L->ring)
        return -1;
    for (size_t i = 0; i < L->o.slots; i++)
        req_put(L, &L->reqs[i]);
    for (unsigned i = 0; i < L->n_conns; i++) {
        L->conns[i].run = L;
        L->conns[i].idx = i;
        L->conns[i].backoff_ms = RECONNECT_MIN_MS;
    }
    return 0;
}

/* How many STANs each of `terminals` terminals reserves up front for this run (more are
 * reserved in blocks if it runs out). */
static uint32_t stans_per_terminal(const struct load_opts *o, unsigned terminals)
{
    double est = o->closed_k ? 50000.0 : (double)o->rate;
    double n = est * (o->duration + o->warmup) * 1.2 / (terminals ? terminals : 1) + 64;
    return (uint32_t)(n > 999000 ? 999000 : n);
}

/* The terminal of every connection slot: load terminal --terminal-first + i, or all the demo
 * terminal TERM0001. Either way the STANs come from the terminal's state file, reserved for the
 * run: a terminal has one STAN counter across runs, as a real one does — load terminals once
 * started at 1 every run, and a run begun in the second the previous one ended reused
 * identities (terminal, STAN, DE 7) and was answered 94. 0 or -1 (said on stderr). */
static int setup_terminals(struct load_run *L)
{
    const struct load_opts *o = &L->o;
    char err[256];
    if (o->load_terms) {
        L->lterms = calloc(L->n_conns, sizeof *L->lterms);
        if (!L->lterms)
            return -1;
        uint32_t n = stans_per_terminal(o, L->n_conns);
        for (unsigned i = 0; i < L->n_conns; i++) {
            unsigned index = (unsigned)o->term_first + i;
            L->lterms[i] = load_term_new(index, o->host, 1);
            if (!L->lterms[i]) {
                fprintf(stderr, "acquirer-sim load: cannot set up load terminal %u\n", index);
                return -1;
            }
            if (sim_term_reserve(L->lterms[i], o->state_dir, n, err, sizeof err) != 0) {
                fprintf(stderr, "acquirer-sim load: %s\n", err);
                return -1;
            }
            L->conns[i].t = L->lterms[i];
        }
        return 0;
    }
    if (sim_terms_builtin(&L->demo, err, sizeof err) != 0) {
        fprintf(stderr, "acquirer-sim load: %s\n", err);
        return -1;
    }
    struct sim_term *t = sim_terms_find(&L->demo, "TERM0001");
    if (!t || sim_term_reserve(t, o->state_dir, stans_per_terminal(o, 1), err, sizeof err) != 0) {
        fprintf(stderr, "acquirer-sim load: %s\n", t ? err : "no TERM0001");
        return -1;
    }
    for (unsigned i = 0; i < L->n_conns; i++)
        L->conns[i].t = t;
    return 0;
}

/* The event loop, the sending core with its request slots, and the timers (the 1 ms tick
 * that starts, retries a backlog, stops and drains; the open loop's arrival timer, armed for
 * each next arrival's time; the 1 s progress line). 0 or -1. */
static int setup_loop(struct load_run *L)
{
    L->base = at_event_base_new();
    if (!L->base || sim_engine_new(L->base, L->o.slots, &L->e) != 0) {
        fprintf(stderr, "acquirer-sim load: event loop setup failed\n");
        return -1;
    }
    char err[512];
    if (L->o.tls && sim_engine_tls(L->e, L->o.ca, L->o.cert, L->o.key, L->o.server_name, err,
                                   sizeof err) != 0) {
        fprintf(stderr, "acquirer-sim load: %s\n", err);
        return -1;
    }
    L->tick = event_new(L->base, -1, EV_PERSIST, on_tick, L);
    L->second = event_new(L->base, -1, EV_PERSIST, on_second, L);
    L->arrive = event_new(L->base, -1, 0, on_arrive, L);
    struct timeval tv_tick = { 0, TICK_US }, tv_sec = { 1, 0 };
    if (!L->tick || !L->second || !L->arrive || event_add(L->tick, &tv_tick) != 0 ||
        event_add(L->second, &tv_sec) != 0)
        return -1;
    return 0;
}

/* Starts every connection; the run begins when all have come up or failed (on_tick). */
static int open_connections(struct load_run *L)
{
    for (unsigned i = 0; i < L->n_conns; i++) {
        L->conns[i].c = sim_conn_open(L->e, (struct sockaddr *)&L->ss, L->sslen, L->conns[i].t,
                                      on_conn, &L->conns[i]);
        if (!L->conns[i].c) {
            fprintf(stderr, "acquirer-sim load: cannot open connection %u\n", i + 1);
            return -1;
        }
    }
    L->connect_deadline = at_mono_ns() + CONNECT_WAIT_NS;
    return 0;
}

/* What the report says of the run as asked. */
static void result_begin(struct load_run *L)
{
    const struct load_opts *o = &L->o;
    struct load_result *r = &L->r;
    r->closed = o->closed_k > 0;
    r->closed_k = (unsigned)o->closed_k;
    r->requested = o->closed_k ? 0 : o->rate;
    r->connections = (unsigned)o->connections;
    r->duration_s = o->duration;
    r->warmup_s = o->warmup;
    at_hist_reset(&r->total);
    at_hist_reset(&L->sec);
    for (int k = 0; k < LOAD_K_max; k++)
        at_hist_reset(&r->kind[k]);
}

/* Everything a run needs before its loop starts: nothing is allocated per message after this.
 * Returns 0, or the exit status: 1 for an address that does not parse, 2 for any other
 * failure (said on stderr). */
static int run_setup(struct load_run *L)
{
    const char *perr = NULL;
    raise_nofile((unsigned)L->o.connections);
    if (alloc_run(L) != 0)
        return 2;
    L->rev_interval_ns = L->o.rev_interval_ms * 1000000ull;
    if (setup_terminals(L) != 0)
        return 2;
    if (!at_parse_hostport(L->o.host, &L->ss, &L->sslen, &perr)) {
        fprintf(stderr, "acquirer-sim load: bad address '%s': %s\n", L->o.host, perr ? perr : "?");
        return 1;
    }
    if (setup_loop(L) != 0 || (L->o.record[0] && record_open(L, L->o.record) != 0) ||
        open_connections(L) != 0)
        return 2;
    result_begin(L);
    return 0;
}

/* The figures only known at the end (the window as run, whether the rate was kept). */
static void result_end(struct load_run *L)
{
    struct load_result *r = &L->r;
    r->elapsed_s = (double)(L->t_stop - L->t_measure) / 1e9;
    r->unmatched = sim_engine_unmatched(L->e);
    if (!r->closed) {
        r->rate_kept = r->unsent == 0 && r->late_sends_gen * 100 <= r->sent;
    } else {
        r->rate_kept = true;
        r->scheduled = r->sent;
    }
}

/* The exit status of a run whose report was written (the FAIL line says why; docs/BENCHMARKS.md
 * has the list): 2 when record lines were lost, 5 when reversals were abandoned, 3 above the
 * error threshold, 4 for a rate not kept under --strict-rate, else 0. */
static int run_verdict(const struct load_run *L, bool record_lost)
{
    const struct load_result *r = &L->r;
    double er = load_error_rate(r);
    if (record_lost)
        return 2;
    if (r->reversals_abandoned) {
        printf("FAIL: %llu reversals were still unanswered at the reversal deadline\n",
               (unsigned long long)r->reversals_abandoned);
        return 5;
    }
    if (r->sent == 0 || er > L->o.max_error_rate) {
        printf("FAIL: error rate %.4f%% above the threshold %.4f%%\n", 100.0 * er,
               100.0 * L->o.max_error_rate);
        return 3;
    }
    if (!r->closed && !r->rate_kept && L->o.strict_rate)
        return 4;
    return 0;
}

/* Runs the loop to the end of the run, then closes it down (what is still owed is abandoned
 * and recorded), writes the reports and returns the exit status. */
static int run_and_report(struct load_run *L)
{
    event_base_dispatch(L->base);
    if (!L->started)
        return 2;
    wind_down(L);
    bool record_lost = record_close(L) != 0;
    if (record_lost)
        fprintf(stderr, "acquirer-sim load: writing the record %s failed: lines are missing\n",
                L->o.record);
    result_end(L);
    load_report_text(stdout, &L->r);
    if (L->first_error[0])
        printf("first error: %s\n", L->first_error);
    if (L->o.report[0]) {
        FILE *f = fopen(L->o.report, "w");
        if (!f || load_report_json(f, &L->r) != 0 || fclose(f) != 0) {
            fprintf(stderr, "acquirer-sim load: cannot write %s: %s\n", L->o.report,
                    strerror(errno));
            return 2;
        }
    }
    return run_verdict(L, record_lost);
}

int load_main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct load_run *L = calloc(1, sizeof *L);
    if (!L)
        return 2;
    char err[300];
    int rc = load_opts_parse(argc, argv, &L->o, err, sizeof err);
    if (rc != 0) {
        free(L);
        if (rc > 0) {
            load_usage(stdout);
            return 0;
        }
        fprintf(stderr, "acquirer-sim load: %s\n", err);
        return 1;
    }
    L->rng = L->o.seed;
    int exit_code = run_setup(L);
    if (exit_code == 0)
        exit_code = run_and_report(L);
    run_free(L);
    free(L);
    return exit_code;
}

/* ------------------------------------------------------------------ load-seed */

static int key_row(struct hsm *h, enum hsm_keytype kt, const uint8_t clear[16], char *under,
                   size_t cap, char kcv_hex[7])
{
    struct hsm_key *k = NULL;
    uint8_t kcv[8];
    if (hsm_key_from_clear(kt, clear, 16, &k) != 0 ||
        hsm_key_to_lmk(h, k, HSM_SCHEME_U, under, cap) != 0) {
        hsm_key_release(k);
        return -1;
    }
    hsm_key_kcv(k, kcv);
    snprintf(kcv_hex, 7, "%02X%02X%02X", kcv[0], kcv[1], kcv[2]);
    hsm_key_release(k);
    return 0;
}

int load_seed_main(int argc, char **argv)
{
    uint64_t n = 0, first = 1;
    char err[300];
    int prc = load_seed_opts_parse(argc, argv, &n, &first, err, sizeof err);
    if (prc > 0) {
        load_usage(stdout);
        return 0;
    }
    if (prc < 0) {
        fprintf(stderr, "acquirer-sim load-seed: %s\n", err);
        return 1;
    }
    struct hsm *h = NULL;
    if (hsm_new(&h, 0) != 0) {
        fprintf(stderr, "acquirer-sim load-seed: libhsm setup failed\n");
        return 2;
    }
    printf("-- Load-test terminals %s.. (acquirer-sim load-seed): TPK + TAK derived from the\n"
           "-- index (docs/BENCHMARKS.md), stored under the LMK. Lab keys. Idempotent.\n"
           "BEGIN;\n",
           "LOAD0001");
    int rc = 0;
    const uint64_t batch = 1000;
    for (uint64_t b = first; b < first + n && rc == 0; b += batch) {
        uint64_t e = b + batch < first + n ? b + batch : first + n;
        printf("INSERT INTO switch.keys (key_id, key_type, scheme, key_under_lmk, kcv) VALUES\n");
        for (uint64_t i = b; i < e && rc == 0; i++) {
            uint8_t tpk[16], tak[16];
            char id[9], u1[64], u2[64], k1[7], k2[7];
            if (load_term_id((unsigned)i, id) != 0 || load_term_keys((unsigned)i, tpk, tak) != 0 ||
                key_row(h, HSM_KT_TPK, tpk, u1, sizeof u1, k1) != 0 ||
                key_row(h, HSM_KT_TAK, tak, u2, sizeof u2, k2) != 0)
                rc = -1;
            memset(tpk, 0, sizeof tpk);
            memset(tak, 0, sizeof tak);
            if (rc == 0)
                printf("  ('%s.TPK','TPK','TDES-2KEY','%s','%s'),\n  ('%s.TAK','TAK','TDES-2KEY',"
                       "'%s','%s')%s\n",
                       id, u1, k1, id, u2, k2, i + 1 < e ? "," : "");
        }
        printf("ON CONFLICT (key_id) DO UPDATE SET key_type = EXCLUDED.key_type, scheme = "
               "EXCLUDED.scheme,\n  key_under_lmk = EXCLUDED.key_under_lmk, kcv = EXCLUDED.kcv, "
               "status = 'active';\n");
        printf("INSERT INTO switch.terminals (acquirer_id, terminal_id, merchant_id, key_scheme, "
               "tpk_key_id, tak_key_id, bdk_key_id) VALUES\n");
        for (uint64_t i = b; i < e; i++) {
            char id[9];
            if (load_term_id((unsigned)i, id) != 0)
                rc = -1;
            printf("  ('%s','%s','ATLASLOAD%06u','TPK','%s.TPK','%s.TAK',NULL)%s\n",
                   SIM_ACQUIRER_ID, id, (unsigned)(i % 1000000), id, id, i + 1 < e ? "," : "");
        }
        printf("ON CONFLICT (acquirer_id, terminal_id) DO UPDATE SET merchant_id = "
               "EXCLUDED.merchant_id,\n  key_scheme = EXCLUDED.key_scheme, tpk_key_id = "
               "EXCLUDED.tpk_key_id, tak_key_id = EXCLUDED.tak_key_id,\n  bdk_key_id = NULL, "
               "enabled = true;\n");
    }
    hsm_free(h);
    if (rc != 0) {
        fprintf(stderr, "acquirer-sim load-seed: key derivation failed\n");
        printf("ROLLBACK;\n");
        return 2;
    }
    printf("COMMIT;\n");
    return fflush(stdout) == 0 ? 0 : 2;
}
