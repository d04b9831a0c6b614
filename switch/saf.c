/* Store-and-forward of reversals. An item lives in memory from the moment a
 * reversal is decided until the issuer acknowledges it; it is inserted into
 * switch.reversal_queue (retried with backoff until that succeeds: a reversal
 * is never dropped) and sent only once durable: 0420 first, 0421 on every
 * repeat, until an 0430 arrives, which marks the row acknowledged. A txn may
 * wait for the first insert attempt (its 91 is answered after it), but no
 * function here ever calls back into a txn from inside the caller's stack.
 * Later changes of a row (attempt counts, acknowledged, failed) are written
 * in batches too: an item whose row must change goes on the write list, and
 * one UPDATE at a time carries the whole list; an acknowledged item stays in
 * memory (never sent again) until its row says so.
 * The PAN travels in DE 2, so the row holds it sealed (AES-256-GCM,
 * db_pan_seal) beside its mask and HMAC; the clear PAN exists only in memory. */
#include "saf.h"

#include "clock.h"
#include "db.h"
#include "fmt.h"
#include "hsmclient.h"
#include "hex.h"
#include "log.h"
#include "parse.h"
#include "switchd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 250

/* What the item's row is to become. PENDING items are sent until answered;
 * the two others are settled and only wait for their UPDATE to commit. */
enum saf_row {
    SAF_ROW_PENDING, /* state 'pending': send, repeat */
    SAF_ROW_ACKED,   /* an 0430 counted: record 'acked', never send again */
    SAF_ROW_FAILED,  /* cannot be rebuilt: record 'failed' for an operator */
};
static const char *const row_state[] = { "pending", "acked", "failed" };

struct saf_item {
    struct saf_item *next, *prev;
    struct sw_server *srv;
    int64_t reversal_id; /* 0 until the insert committed */
    bool inserting;      /* an INSERT is in flight */
    unsigned insert_failures;
    uint64_t next_insert_ms;
    bool mac_pending;  /* an M6 for this item is outstanding: never rebuild meanwhile */
    bool has_orig;     /* terminal reversal: the original's identity, marked reversed on commit */
    bool dead;         /* unlinked while an M6/M8 was pending: its callback frees it */
    char answer_rc[3]; /* DE 39 of the 0430 (being checked, then recorded) */
    enum saf_row row;
    struct saf_item *write_next; /* on the queue's write list */
    bool write_queued;           /* on the write list: its row must be updated */
    bool writing;                /* in the UPDATE in flight */
    struct sw_req_id orig;
    char request_date[11], acquirer[12], terminal[9], stan[7], de7[11], mti[5];
    char issuer_id[33], issuer_stan[7], issuer_de7[11], rrn[13], proc[7], auth_code[7];
    char pan[20];
    int64_t amount;
    int currency;
    char reason[16];
    unsigned attempts;
    uint64_t next_attempt_ms;
    bool in_flight; /* sent (or being MACed), waiting for 0430 */
    uint32_t cur_stan;
    struct sw_link *cur_link;
    struct sw_txn *waiter; /* txn whose answer waits for the insert */
    bool waiter_is_terminal_reversal;
    uint8_t packed[512];
    size_t packed_len, mac_off;
    bool mac_hex;
};

struct sw_saf {
    struct sw_server *srv;
    struct saf_item *items;
    uint64_t count;
    struct event *tick;
    struct event *flush_ev; /* batched inserts, once per loop turn */
    bool flush_scheduled;
    bool loaded;
    uint64_t load_retry_ms; /* non-zero: load again at this time */
    uint64_t settled;       /* items acked or failed, waiting for their UPDATE */
    /* Row updates: items in the order their rows changed, at most one
     * UPDATE in flight (the others gather behind it: group commit). */
    struct saf_item *write_head, *write_tail;
    size_t write_n;
    struct event *write_ev; /* the write window, or the retry backoff */
    struct write_batch *writing;
    unsigned write_failures;
};

static void unlink_item(struct sw_saf *q, struct saf_item *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        q->items = it->next;
    if (it->next)
        it->next->prev = it->prev;
    q->count--;
}

static void add_item(struct sw_saf *q, struct saf_item *it)
{
    it->next = q->items;
    if (q->items)
        q->items->prev = it;
    q->items = it;
    q->count++;
}

static void free_item(struct saf_item *it)
{
    memset(it->pan, 0, sizeof it->pan);
    free(it);
}

uint64_t sw_saf_pending(const struct sw_server *srv)
{
    return srv->saf ? srv->saf->count - srv->saf->settled : 0;
}

/* ---------------------------------------------------------------- durable insert */

/* Takes it off the queue and frees it — or, while its M6 is outstanding,
 * leaves the freeing to on_saf_mac. */
static void remove_item(struct sw_saf *q, struct saf_item *it)
{
    unlink_item(q, it);
    if (it->mac_pending)
        it->dead = true;
    else
        free_item(it);
}

/* Tells the txn waiting for this item's first insert how it went. Runs from a
 * database callback, never inside txn code. */
static void notify_waiter(struct saf_item *it, bool queued)
{
    struct sw_txn *t = it->waiter;
    if (!t)
        return;
    it->waiter = NULL;
    t->pending_saf = false;
    if (it->waiter_is_terminal_reversal) {
        memcpy(t->rc, queued ? "00" : "96", 3);
        t->outcome = queued ? SW_OUT_APPROVED : SW_OUT_ERROR;
        sw_txn_finish_reversal(t);
    } else {
        sw_txn_maybe_deliver(t);
    }
}

/* The insert of it did not commit: keep it, try again later, never drop it. */
static void insert_failed(struct saf_item *it, const struct db_error *err)
{
    it->inserting = false;
    it->insert_failures++;
    uint64_t backoff = 100u << (it->insert_failures < 8 ? it->insert_failures : 8);
    it->next_insert_ms = sw_now_ms() + backoff;
    at_log(AT_LOG_ERROR, "reversal_queue_insert_failed", AT_STR("error", err->message),
           AT_STR("sqlstate", err->sqlstate), AT_STR("issuer", it->issuer_id),
           AT_UINT("retry_ms", backoff));
    notify_waiter(it, false);
}

/* The row of it is committed as reversal_id with state. */
static void insert_done(struct saf_item *it, int64_t id, const char *state)
{
    struct sw_server *srv = it->srv;
    struct sw_saf *q = srv->saf;
    it->inserting = false;
    if (it->has_orig && strcmp(state, "failed") != 0) {
        struct sw_recent_txn *o = sw_recent_find(srv->recent, &it->orig, sw_now_ms());
        if (o)
            o->state = SW_RECENT_REVERSED;
    }
    notify_waiter(it, strcmp(state, "failed") != 0);
    if (strcmp(state, "pending") != 0) {
        /* Acknowledged earlier (nothing to send) or parked as failed. */
        if (strcmp(state, "failed") == 0)
            at_log(AT_LOG_ERROR, "reversal_failed", AT_INT("reversal_id", id),
                   AT_STR("reason", "the queue holds this reversal as failed"));
        remove_item(q, it);
        return;
    }
    for (struct saf_item *x = q->items; x; x = x->next) {
        if (x != it && x->reversal_id == id) { /* the same original, queued before */
            remove_item(q, it);
            return;
        }
    }
    it->reversal_id = id;
    at_log(AT_LOG_INFO, "reversal_queued", AT_INT("reversal_id", it->reversal_id),
           AT_STR("issuer", it->issuer_id), AT_STR("issuer_stan", it->issuer_stan),
           AT_STR("reason", it->reason));
    srv->metrics.reversals_queued_total++;
}

/* ---------------------------------------------------------------- batched inserts */

/* Reversals decided in one loop turn are inserted by one statement (one
 * commit): under an issuer outage every timed-out request needs its row at
 * once, and a commit per row would be the bottleneck (docs/BENCHMARKS.md). */
#define INSERT_BATCH 256
#define NCOLS        18

struct ins_batch {
    size_t n;
    struct saf_item *items[INSERT_BATCH];
};

/* A PostgreSQL array literal built element by element. */
struct arr {
    char *p;
    size_t len, cap;
    bool bad;
};

static void arr_putc(struct arr *a, char c)
{
    if (a->bad)
        return;
    if (a->len + 2 > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        char *p = realloc(a->p, cap);
        if (!p) {
            a->bad = true;
            return;
        }
        a->p = p;
        a->cap = cap;
    }
    a->p[a->len++] = c;
    a->p[a->len] = '\0';
}

/* Appends one element: NULL, or the value double-quoted with " and \ escaped. */
static void arr_elem(struct arr *a, const char *v)
{
    arr_putc(a, a->len == 0 ? '{' : ',');
    if (!v) {
        for (const char *n = "NULL"; *n; n++)
            arr_putc(a, *n);
        return;
    }
    arr_putc(a, '"');
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            arr_putc(a, '\\');
        arr_putc(a, *v);
    }
    arr_putc(a, '"');
}

static bool same_identity(const struct saf_item *a, const struct saf_item *b)
{
    return strcmp(a->request_date, b->request_date) == 0 && strcmp(a->acquirer, b->acquirer) == 0 &&
           strcmp(a->terminal, b->terminal) == 0 && strcmp(a->stan, b->stan) == 0 &&
           strcmp(a->de7, b->de7) == 0 && strcmp(a->mti, b->mti) == 0;
}

static void on_batch_inserted(void *arg, const struct db_reply *reply)
{
    struct ins_batch *b = arg;
    bool done[INSERT_BATCH] = { false };
    if (reply->err->code == 0 && reply->n == 1 && reply->res[0]) {
        PGresult *r = reply->res[0];
        for (int row = 0; row < PQntuples(r); row++) {
            struct saf_item probe;
            uint64_t id = 0;
            snprintf(probe.request_date, sizeof probe.request_date, "%s", PQgetvalue(r, row, 2));
            snprintf(probe.acquirer, sizeof probe.acquirer, "%s", PQgetvalue(r, row, 3));
            snprintf(probe.terminal, sizeof probe.terminal, "%s", PQgetvalue(r, row, 4));
            snprintf(probe.stan, sizeof probe.stan, "%s", PQgetvalue(r, row, 5));
            snprintf(probe.de7, sizeof probe.de7, "%s", PQgetvalue(r, row, 6));
            snprintf(probe.mti, sizeof probe.mti, "%s", PQgetvalue(r, row, 7));
            if (!at_parse_u64(PQgetvalue(r, row, 0), INT64_MAX, &id))
                continue;
            for (size_t i = 0; i < b->n; i++) {
                if (!done[i] && same_identity(b->items[i], &probe)) {
                    done[i] = true;
                    insert_done(b->items[i], (int64_t)id, PQgetvalue(r, row, 1));
                    break;
                }
            }
        }
    }
    for (size_t i = 0; i < b->n; i++) /* no row back: not durable */
        if (!done[i])
            insert_failed(b->items[i], reply->err);
    free(b);
}

static void schedule_flush(struct sw_saf *q)
{
    if (!q->flush_scheduled) {
        q->flush_scheduled = true;
        event_active(q->flush_ev, 0, 0);
    }
}

/* Inserts every reversal that is due, up to INSERT_BATCH per statement. */
static void flush_inserts(evutil_socket_t fd, short what, void *arg)
{
    struct sw_saf *q = arg;
    struct sw_server *srv = q->srv;
    uint64_t now = sw_now_ms();
    struct arr cols[NCOLS];
    struct ins_batch *b = calloc(1, sizeof *b);
    bool more = false;

    q->flush_scheduled = false;
    if (srv->stopping || !srv->db) { /* teardown: no new work; let waiting txns finish */
        free(b);
        for (struct saf_item *it = q->items; it; it = it->next)
            notify_waiter(it, false);
        return;
    }
    if (!b)
        return;
    memset(cols, 0, sizeof cols);
    for (struct saf_item *it = q->items; it; it = it->next) {
        if (it->reversal_id != 0 || it->inserting || now < it->next_insert_ms)
            continue;
        bool twin = false; /* one row cannot be upserted twice by one statement */
        for (size_t i = 0; i < b->n && !twin; i++)
            twin = same_identity(b->items[i], it);
        if (twin) {
            more = true;
            continue;
        }
        if (b->n == INSERT_BATCH) {
            more = true;
            break;
        }
        char amount[AT_I64_CHARS], currency[AT_I64_CHARS], hmac_hex[65], sealed_hex[129],
            masked[20];
        uint8_t hmac[32], sealed[64];
        size_t pan_len = strlen(it->pan);
        int n;
        if (db_pan_hasher_mac(srv->pan_hasher, it->pan, pan_len, hmac) != 0 ||
            (n = db_pan_seal(srv->pan_seal_key, it->pan, pan_len, sealed, sizeof sealed)) < 0) {
            it->next_insert_ms = now + 1000;
            at_log(AT_LOG_ERROR, "reversal_queue_insert_failed",
                   AT_STR("error", "PAN cannot be sealed"));
            continue;
        }
        at_mask_pan(it->pan, pan_len, masked);
        at_hex_encode(hmac, 32, hmac_hex);
        at_hex_encode(sealed, (size_t)n, sealed_hex);
        at_put_i64(amount, it->amount);
        at_put_i64(currency, it->currency);
        const char *v[NCOLS] = { it->request_date, it->acquirer,
                                 it->terminal,     it->stan,
                                 it->de7,          it->mti,
                                 it->issuer_id,    it->issuer_stan,
                                 it->issuer_de7,   it->rrn[0] ? it->rrn : NULL,
                                 it->proc,         amount,
                                 currency,         it->auth_code[0] ? it->auth_code : NULL,
                                 masked,           hmac_hex,
                                 sealed_hex,       it->reason };
        for (int c = 0; c < NCOLS; c++)
            arr_elem(&cols[c], v[c]);
        b->items[b->n++] = it;
    }
    const char *values[NCOLS];
    bool bad = false;
    for (int c = 0; c < NCOLS; c++) {
        arr_putc(&cols[c], '}');
        bad = bad || cols[c].bad;
        values[c] = cols[c].p;
    }
    static const struct db_error full = { .code = DB_E_FULL, .message = "database queue full" };
    static const struct db_error oom = { .code = DB_E_SYS, .message = "out of memory" };
    if (b->n > 0) {
        const struct db_stmt st = {
            .sql = "INSERT INTO switch.reversal_queue (request_date, acquirer_id, terminal_id,"
                   " stan, transmission_time, mti, issuer_id, issuer_stan,"
                   " issuer_transmission_time, rrn, processing_code, amount_minor, currency,"
                   " auth_code, pan_masked, pan_hmac, pan_sealed, reason)"
                   " SELECT c1::date, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12::bigint,"
                   " c13::smallint, c14, c15, decode(c16, 'hex'), decode(c17, 'hex'), c18"
                   " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
                   " $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],"
                   " $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],"
                   " $17::text[], $18::text[])"
                   " AS u(c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16,"
                   " c17, c18)"
                   " ON CONFLICT (request_date, acquirer_id, terminal_id, stan,"
                   " transmission_time, mti) DO UPDATE SET state = switch.reversal_queue.state"
                   " RETURNING reversal_id, state, request_date::text, acquirer_id, terminal_id,"
                   " stan, transmission_time, mti",
            .nparams = NCOLS,
            .values = values,
        };
        if (bad || db_exec(srv->db, &st, 1, on_batch_inserted, b) != 0) {
            /* From the loop, not inside a txn: waiters can be told right away. */
            for (size_t i = 0; i < b->n; i++)
                insert_failed(b->items[i], bad ? &oom : &full);
            free(b);
        } else {
            for (size_t i = 0; i < b->n; i++)
                b->items[i]->inserting = true;
        }
    } else {
        free(b);
    }
    for (int c = 0; c < NCOLS; c++)
        free(cols[c].p);
    if (more)
        schedule_flush(q);
}

/* ---------------------------------------------------------------- batched row updates */

/* Row changes (an attempt counted, acknowledged, failed) gather for up to
 * WRITE_DELAY_MS, or behind the UPDATE in flight, and go as one statement of
 * at most WRITE_BATCH rows: one commit for all of them rather than one each
 * (docs/BENCHMARKS.md). No answer waits for them. The window only widens the
 * time in which a crash makes a reversal go out once more after the restart,
 * which the at-least-once contract allows (the issuer answers repeats). An
 * UPDATE that does not commit is retried with backoff, like the inserts;
 * acked and failed items stay in memory, never sent, until theirs commits. */
#define WRITE_BATCH    256
#define WRITE_DELAY_MS 10

struct write_batch {
    struct sw_saf *q;
    size_t n;
    struct saf_item *items[WRITE_BATCH];
    bool settles[WRITE_BATCH]; /* the row written was final (acked or failed) */
};

static void arm_writes(struct sw_saf *q, uint64_t delay_ms)
{
    struct timeval tv = { (time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000 };
    evtimer_add(q->write_ev, &tv);
}

/* Puts it on the write list, once: its row is to take the item's attempts
 * and row state, whatever they are when the UPDATE is built. */
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
static void on_written(void *arg, const struct db_reply *reply)
{
    struct write_batch *b = arg;
    struct sw_saf *q = b->q;
    struct sw_server *srv = q->srv;
    uint64_t delay = 0;
    q->writing = NULL;
    if (reply->err->code == 0) {
        q->write_failures = 0;
        srv->metrics.reversal_updates_total++;
        srv->metrics.reversal_updated_rows_total += b->n;
        for (size_t i = 0; i < b->n; i++) {
            b->items[i]->writing = false;
            if (b->settles[i]) {
                q->settled--;
                remove_item(q, b->items[i]);
            }
        }
    } else {
        q->write_failures++;
        delay = 100u << (q->write_failures < 6 ? q->write_failures : 6);
        at_log(AT_LOG_ERROR, "reversal_update_failed", AT_STR("error", reply->err->message),
               AT_STR("sqlstate", reply->err->sqlstate), AT_UINT("rows", b->n),
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

/* Writes the rows of the items on the write list, up to WRITE_BATCH, with
 * one UPDATE (one transaction). The state guard keeps a row that is already
 * acknowledged or failed as it is: a retried UPDATE whose first try did
 * commit changes nothing. */
static void flush_writes(evutil_socket_t fd, short what, void *arg)
{
    struct sw_saf *q = arg;
    struct sw_server *srv = q->srv;
    static const struct db_error full = { .code = DB_E_FULL, .message = "database queue full" };
    static const struct db_error oom = { .code = DB_E_SYS, .message = "out of memory" };
    struct arr cols[4];
    const char *values[4];
    bool bad = false;

    if (q->writing || !q->write_head || srv->stopping || !srv->db)
        return;
    struct write_batch *b = calloc(1, sizeof *b);
    if (!b) {
        arm_writes(q, 100);
        return;
    }
    b->q = q;
    memset(cols, 0, sizeof cols);
    while (b->n < WRITE_BATCH && q->write_head) {
        struct saf_item *it = pop_write(q);
        char id[AT_I64_CHARS], attempts[AT_I64_CHARS];
        at_put_i64(id, it->reversal_id);
        at_put_i64(attempts, it->attempts);
        arr_elem(&cols[0], id);
        arr_elem(&cols[1], attempts);
        arr_elem(&cols[2], row_state[it->row]);
        arr_elem(&cols[3], it->row == SAF_ROW_ACKED ? it->answer_rc : NULL);
        it->writing = true;
        b->settles[b->n] = it->row != SAF_ROW_PENDING;
        b->items[b->n++] = it;
    }
    for (int c = 0; c < 4; c++) {
        arr_putc(&cols[c], '}');
        bad = bad || cols[c].bad;
        values[c] = cols[c].p;
    }
    const struct db_stmt st = {
        .sql = "UPDATE switch.reversal_queue AS q SET attempts = u.attempts,"
               " last_attempt_at = CASE WHEN u.attempts <> q.attempts THEN now()"
               " ELSE q.last_attempt_at END, state = u.state,"
               " acked_at = CASE WHEN u.state = 'acked' THEN now() ELSE q.acked_at END,"
               " last_response_code = coalesce(u.rc, q.last_response_code)"
               " FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[])"
               " AS u(reversal_id, attempts, state, rc)"
               " WHERE q.reversal_id = u.reversal_id AND q.state = 'pending'",
        .nparams = 4,
        .values = values,
    };
    q->writing = b;
    if (bad || db_exec(srv->db, &st, 1, on_written, b) != 0) {
        const struct db_reply failed = { .err = bad ? &oom : &full };
        on_written(b, &failed); /* from the loop: nothing to unwind */
    }
    for (int c = 0; c < 4; c++)
        free(cols[c].p);
}

uint64_t sw_saf_unwritten(const struct sw_server *srv)
{
    const struct sw_saf *q = srv->saf;
    return q ? q->write_n + (q->writing ? q->writing->n : 0) : 0;
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

/* Adds the item to the queue; its insert goes with this loop turn's batch. A
 * waiting txn is told later (pending_saf), never from inside this call. */
static void enqueue(struct sw_server *srv, struct saf_item *it, struct sw_txn *waiter,
                    bool terminal_reversal)
{
    it->srv = srv;
    add_item(srv->saf, it);
    if (waiter) {
        it->waiter = waiter;
        it->waiter_is_terminal_reversal = terminal_reversal;
        waiter->pending_saf = true;
    }
    schedule_flush(srv->saf);
}

void sw_saf_reverse_txn(struct sw_txn *t, const char *reason, bool wait)
{
    struct sw_server *srv = t->srv;
    char buf[16];
    uint64_t v;

    if (t->reversal_queued || srv->stopping)
        return;
    t->reversal_queued = true;
    if (!t->v.pan || t->issuer_stan == 0) {
        at_log(AT_LOG_ERROR, "reversal_not_queued", AT_STR("reason", "incomplete transaction"));
        return;
    }
    struct saf_item *it = calloc(1, sizeof *it);
    if (!it) {
        at_log(AT_LOG_ERROR, "reversal_not_queued", AT_STR("reason", "out of memory"));
        return;
    }
    db_request_date(t->de7, t->t_wall_us, it->request_date);
    snprintf(it->acquirer, sizeof it->acquirer, "%s", t->acquirer);
    field_copy(&t->req, 41, it->terminal, sizeof it->terminal);
    field_copy(&t->req, 11, it->stan, sizeof it->stan);
    memcpy(it->de7, t->de7, sizeof it->de7);
    memcpy(it->mti, t->req.mti, 4);
    snprintf(it->issuer_id, sizeof it->issuer_id, "%s", t->issuer.id);
    snprintf(it->issuer_stan, sizeof it->issuer_stan, "%06u", t->issuer_stan % 1000000u);
    memcpy(it->issuer_de7, t->issuer_de7, sizeof it->issuer_de7);
    field_copy(&t->req, 37, it->rrn, sizeof it->rrn);
    if (!it->rrn[0])
        memcpy(it->rrn, t->rrn, sizeof it->rrn);
    field_copy(&t->req, 3, it->proc, sizeof it->proc);
    field_copy(&t->req, 4, buf, sizeof buf);
    it->amount = buf[0] && at_parse_u64(buf, INT64_MAX, &v) ? (int64_t)v : 0;
    field_copy(&t->req, 49, buf, sizeof buf);
    it->currency = buf[0] && at_parse_u64(buf, 999, &v) ? (int)v : 0;
    memcpy(it->auth_code, t->auth_code, sizeof it->auth_code);
    memcpy(it->pan, t->v.pan, t->v.pan_len);
    snprintf(it->reason, sizeof it->reason, "%s", reason);
    enqueue(srv, it, wait ? t : NULL, false);
}

void sw_saf_reverse_original(struct sw_txn *t, const struct sw_recent_txn *orig)
{
    struct sw_server *srv = t->srv;
    struct saf_item *it = calloc(1, sizeof *it);
    if (!it || srv->stopping) {
        free(it);
        memcpy(t->rc, "96", 3);
        t->outcome = SW_OUT_ERROR;
        return;
    }
    db_request_date(orig->id.tx_time, t->t_wall_us, it->request_date);
    snprintf(it->acquirer, sizeof it->acquirer, "%s", orig->id.acquirer);
    memcpy(it->terminal, orig->id.terminal, 8);
    memcpy(it->stan, orig->id.stan, 6);
    memcpy(it->de7, orig->id.tx_time, 10);
    memcpy(it->mti, orig->mti, 4);
    snprintf(it->issuer_id, sizeof it->issuer_id, "%s", orig->issuer_id);
    memcpy(it->issuer_stan, orig->issuer_stan, 6);
    memcpy(it->issuer_de7, orig->issuer_tx_time, 10);
    memcpy(it->rrn, orig->rrn, 12);
    memcpy(it->proc, orig->proc_code, 6);
    it->amount = orig->amount_minor;
    it->currency = orig->currency;
    memcpy(it->auth_code, orig->auth_code, 6);
    memcpy(it->pan, t->v.pan, t->v.pan_len);
    snprintf(it->reason, sizeof it->reason, "terminal");
    it->orig = orig->id;
    it->has_orig = true;
    enqueue(srv, it, t, true);
}

/* ---------------------------------------------------------------- sending */

static struct sw_link *link_of(struct sw_server *srv, const char *issuer_id)
{
    if (!srv->ref)
        return NULL;
    for (size_t i = 0; i < srv->ref->n_issuers; i++)
        if (strcmp(srv->ref->issuers[i].id, issuer_id) == 0 && srv->ref->issuers[i].link >= 0)
            return &srv->links[srv->ref->issuers[i].link];
    return NULL;
}

static const char *zak_of(struct sw_server *srv, const char *issuer_id)
{
    for (size_t i = 0; srv->ref && i < srv->ref->n_issuers; i++)
        if (strcmp(srv->ref->issuers[i].id, issuer_id) == 0)
            return srv->ref->issuers[i].zak;
    return "";
}

static void after_send(struct saf_item *it)
{
    queue_write(it->srv->saf, it); /* after a restart, a repeat goes out as 0421 */
    at_log(AT_LOG_INFO, "reversal_sent", AT_INT("reversal_id", it->reversal_id),
           AT_STR("issuer", it->issuer_id), AT_UINT("attempt", it->attempts),
           AT_STR("mti", it->attempts > 1 ? "0421" : "0420"));
}

static void on_saf_mac(void *arg, int status, const char *resp, size_t len)
{
    struct saf_item *it = arg;
    struct sw_link *l = it->cur_link;
    it->mac_pending = false;
    if (it->dead) { /* acknowledged or shut down while the HSM worked */
        free_item(it);
        return;
    }
    if (status != 0 || len < 8 + 16 || memcmp(resp + 2, "00", 2) != 0) {
        it->in_flight = false;
        return; /* retried at the next attempt */
    }
    if (it->mac_hex)
        memcpy(it->packed + it->mac_off, resp + 8, 16);
    else if (at_hex_decode(resp + 8, 16, it->packed + it->mac_off, 8) != 8) {
        it->in_flight = false;
        return;
    }
    if (sw_link_send_saf(l, it, it->cur_stan, it->packed, it->packed_len) != 0) {
        it->in_flight = false;
        return;
    }
    after_send(it);
}

static int build_reversal(struct sw_server *srv, struct saf_item *it, struct sw_link *l)
{
    struct iso_msg m;
    uint8_t arena[256];
    char de7[11], de11[7], amount[13], cur[4], de90[43];
    struct iso_err e;
    static const uint8_t zero_mac[8];
    const char *zak = zak_of(srv, it->issuer_id);

    it->cur_stan = sw_link_stan(l);
    sw_de7_now(de7);
    snprintf(de11, sizeof de11, "%06u", it->cur_stan % 1000000u);
    snprintf(amount, sizeof amount, "%012lld", (long long)it->amount);
    snprintf(cur, sizeof cur, "%03d", it->currency);
    snprintf(de90, sizeof de90, "%.4s%.6s%.10s%011lld%011d", it->mti, it->issuer_stan,
             it->issuer_de7, atoll(it->acquirer), 0);
    iso_msg_init(&m, arena, sizeof arena);
    if (iso_set_mti(&m, it->attempts > 0 ? "0421" : "0420") != 0 ||
        iso_set(&m, 2, it->pan, strlen(it->pan)) != 0 || iso_set(&m, 3, it->proc, 6) != 0 ||
        iso_set(&m, 4, amount, 12) != 0 || iso_set(&m, 7, de7, 10) != 0 ||
        iso_set(&m, 11, de11, 6) != 0 || iso_set(&m, 32, it->acquirer, strlen(it->acquirer)) != 0 ||
        (it->rrn[0] && iso_set(&m, 37, it->rrn, strlen(it->rrn)) != 0) ||
        (it->auth_code[0] && iso_set(&m, 38, it->auth_code, strlen(it->auth_code)) != 0) ||
        iso_set(&m, 41, it->terminal, 8) != 0 || iso_set(&m, 49, cur, 3) != 0 ||
        iso_set(&m, 90, de90, 42) != 0 || (zak[0] && iso_set(&m, 128, zero_mac, 8) != 0))
        return -1;
    if (iso_pack(l->dialect, &m, it->packed, sizeof it->packed, &it->packed_len, &e) != 0) {
        at_log(AT_LOG_ERROR, "reversal_pack_failed", AT_INT("field", e.field),
               AT_STR("reason", e.reason));
        return -1;
    }
    const struct iso_field_spec *fs = &l->dialect->field[128];
    it->mac_hex = fs->data_enc == ISO_ENC_HEX;
    it->mac_off = it->packed_len - (it->mac_hex ? 16u : 8u);
    return zak[0] ? 1 : 0;
}

/* A reversal that can never be built is parked as 'failed' for an operator
 * rather than retried forever: never sent again, it leaves memory once its
 * row says so. */
static void give_up(struct sw_server *srv, struct saf_item *it, const char *why)
{
    at_log(AT_LOG_ERROR, "reversal_failed", AT_INT("reversal_id", it->reversal_id),
           AT_STR("issuer", it->issuer_id), AT_STR("reason", why),
           AT_STR("action", "left in switch.reversal_queue with state 'failed'"));
    it->row = SAF_ROW_FAILED;
    srv->saf->settled++;
    queue_write(srv->saf, it);
}

static void send_item(struct sw_server *srv, struct saf_item *it, struct sw_link *l)
{
    char cmd[1200];
    int mac = build_reversal(srv, it, l);
    if (mac < 0) {
        give_up(srv, it, "the reversal message cannot be built from the stored row");
        return;
    }
    it->attempts++;
    it->in_flight = true;
    it->cur_link = l;
    it->next_attempt_ms = sw_now_ms() + srv->conf.reversal_retry_ms;
    if (mac == 0) {
        if (sw_link_send_saf(l, it, it->cur_stan, it->packed, it->packed_len) != 0)
            it->in_flight = false;
        else
            after_send(it);
        return;
    }
    int n = sw_hsm_mac_cmd(cmd, sizeof cmd, false, "008", zak_of(srv, it->issuer_id), it->packed,
                           it->mac_off, NULL);
    if (n < 0 || hsm_client_submit(srv->hsm, cmd, (size_t)n, on_saf_mac, it) != 0)
        it->in_flight = false;
    else
        it->mac_pending = true;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sw_saf *q = arg;
    struct sw_server *srv = q->srv;
    uint64_t now = sw_now_ms();
    struct saf_item *next;
    if (q->load_retry_ms && now >= q->load_retry_ms)
        sw_saf_load(srv);
    for (struct saf_item *it = q->items; it; it = next) {
        next = it->next;
        if (it->reversal_id == 0) {
            if (!it->inserting && now >= it->next_insert_ms)
                schedule_flush(q);
            continue;
        }
        if (it->row != SAF_ROW_PENDING || it->mac_pending)
            continue;
        if (it->in_flight && now >= it->next_attempt_ms) {
            /* No 0430 in time: forget that STAN and repeat as 0421. */
            if (it->cur_link)
                sw_link_forget(it->cur_link, it->cur_stan);
            it->in_flight = false;
        }
        if (it->in_flight || now < it->next_attempt_ms)
            continue;
        struct sw_link *l = link_of(srv, it->issuer_id);
        if (l && l->state == SW_LINK_UP)
            send_item(srv, it, l);
    }
}

/* An authenticated answer to a reversal, its DE 39 in it->answer_rc: 91/96
 * mean "try later", anything else acknowledges it. The item is not sent
 * again; its row is marked with the next batch of row updates. */
static void accept_answer(struct sw_server *srv, struct saf_item *it)
{
    const char *rc = it->answer_rc;
    if (it->row != SAF_ROW_PENDING)
        return;
    if (strcmp(rc, "91") == 0 || strcmp(rc, "96") == 0 || rc[0] == '\0') {
        at_log(AT_LOG_WARN, "reversal_not_taken", AT_INT("reversal_id", it->reversal_id),
               AT_STR("issuer", it->issuer_id), AT_STR("rc", rc));
        return; /* repeated at the next attempt */
    }
    it->row = SAF_ROW_ACKED;
    srv->saf->settled++;
    queue_write(srv->saf, it);
    at_log(AT_LOG_INFO, "reversal_acknowledged", AT_INT("reversal_id", it->reversal_id),
           AT_STR("issuer", it->issuer_id), AT_STR("rc", rc), AT_UINT("attempts", it->attempts));
    srv->metrics.reversals_acked_total++;
}

static void on_answer_mac(void *arg, int status, const char *resp, size_t len)
{
    struct saf_item *it = arg;
    it->mac_pending = false;
    if (it->dead) {
        free_item(it);
        return;
    }
    if (status == 0 && len >= 4 && memcmp(resp + 2, "00", 2) == 0) {
        accept_answer(it->srv, it);
        return;
    }
    /* A forged or damaged 0430 must not stop the reversal: keep repeating. */
    at_log(AT_LOG_ERROR, "reversal_answer_mac_invalid", AT_INT("reversal_id", it->reversal_id),
           AT_STR("issuer", it->issuer_id),
           AT_STRN("hsm_error", len >= 4 ? resp + 2 : "", len >= 4 ? 2 : 0));
}

void sw_saf_answer(struct sw_server *srv, void *entry, const struct iso_msg *m, const uint8_t *raw,
                   size_t raw_len)
{
    struct saf_item *it = entry;
    char rc[3] = "", cmd[2200];
    const char *zak = zak_of(srv, it->issuer_id);
    field_copy(m, 39, rc, sizeof rc);
    memcpy(it->answer_rc, rc, sizeof it->answer_rc);
    it->in_flight = false;
    if (!zak[0]) {
        accept_answer(srv, it);
        return;
    }
    /* The issuer MACs its 0430 like every answer: check it over the bytes
     * received before believing it. */
    int mf = iso_has(m, 128) ? 128 : 64;
    size_t n;
    const uint8_t *mac = iso_get(m, mf, &n);
    size_t wire = it->cur_link && it->cur_link->dialect->field[mf].data_enc == ISO_ENC_HEX ? 16 : 8;
    int len = -1;
    if (mac && n == 8 && iso_next(m, mf) == 0 && raw_len > wire)
        len = sw_hsm_mac_cmd(cmd, sizeof cmd, true, "008", zak, raw, raw_len - wire, mac);
    if (len < 0 || hsm_client_submit(srv->hsm, cmd, (size_t)len, on_answer_mac, it) != 0) {
        at_log(AT_LOG_ERROR, "reversal_answer_mac_invalid", AT_INT("reversal_id", it->reversal_id),
               AT_STR("issuer", it->issuer_id),
               AT_STR("reason", len < 0 ? "no MAC as the last field" : "HSM queue full"));
        return;
    }
    it->mac_pending = true;
}

/* ---------------------------------------------------------------- load */

static void on_loaded(void *arg, const struct db_reply *reply)
{
    struct sw_server *srv = arg;
    if (reply->err->code != 0 || reply->n != 1) {
        at_log(AT_LOG_ERROR, "reversal_queue_load_failed", AT_STR("error", reply->err->message),
               AT_STR("action", "retrying"));
        srv->saf->load_retry_ms = sw_now_ms() + 1000; /* the tick loads again */
        return;
    }
    PGresult *r = reply->res[0];
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        struct saf_item *it = calloc(1, sizeof *it);
        uint8_t sealed[128];
        uint64_t v;
        if (!it)
            return;
#define COPY(dst, col) snprintf(dst, sizeof dst, "%s", PQgetvalue(r, i, col))
        COPY(it->request_date, 1);
        COPY(it->acquirer, 2);
        COPY(it->terminal, 3);
        COPY(it->stan, 4);
        COPY(it->de7, 5);
        COPY(it->mti, 6);
        COPY(it->issuer_id, 7);
        COPY(it->issuer_stan, 8);
        COPY(it->issuer_de7, 9);
        COPY(it->rrn, 10);
        COPY(it->proc, 11);
        COPY(it->auth_code, 14);
        COPY(it->reason, 16);
#undef COPY
        it->reversal_id = at_parse_u64(PQgetvalue(r, i, 0), INT64_MAX, &v) ? (int64_t)v : 0;
        it->amount = at_parse_u64(PQgetvalue(r, i, 12), INT64_MAX, &v) ? (int64_t)v : 0;
        it->currency = at_parse_u64(PQgetvalue(r, i, 13), 999, &v) ? (int)v : 0;
        it->attempts = at_parse_u64(PQgetvalue(r, i, 17), 1000000, &v) ? (unsigned)v : 0;
        const char *hex = PQgetvalue(r, i, 15); /* "\x…" */
        int n =
            strlen(hex) > 2 ? at_hex_decode(hex + 2, strlen(hex) - 2, sealed, sizeof sealed) : -1;
        if (n < 0 ||
            db_pan_open(srv->pan_seal_key, sealed, (size_t)n, it->pan, sizeof it->pan) < 0) {
            at_log(AT_LOG_ERROR, "reversal_pan_unsealable", AT_INT("reversal_id", it->reversal_id),
                   AT_STR("action", "left pending; check pan_seal_key"));
            free_item(it);
            continue;
        }
        bool known = false;
        for (struct saf_item *x = srv->saf->items; x; x = x->next)
            known = known || x->reversal_id == it->reversal_id;
        if (known) {
            free_item(it);
            continue;
        }
        it->srv = srv;
        add_item(srv->saf, it);
    }
    srv->saf->loaded = true;
    at_log(AT_LOG_INFO, "reversal_queue_loaded", AT_INT("pending", rows));
}

void sw_saf_load(struct sw_server *srv)
{
    const struct db_stmt st = {
        .sql = "SELECT reversal_id, request_date, acquirer_id, terminal_id, stan,"
               " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time,"
               " coalesce(rrn, ''), processing_code, amount_minor, currency,"
               " coalesce(auth_code, ''), pan_sealed, reason, attempts"
               " FROM switch.reversal_queue WHERE state = 'pending' ORDER BY reversal_id",
    };
    srv->saf->load_retry_ms = 0;
    if (db_exec(srv->db, &st, 1, on_loaded, srv) != 0) {
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
    q->flush_ev = event_new(srv->base, -1, 0, flush_inserts, q);
    q->write_ev = evtimer_new(srv->base, flush_writes, q);
    struct timeval tv = { 0, TICK_MS * 1000 };
    if (!q->tick || !q->flush_ev || !q->write_ev || event_add(q->tick, &tv) != 0) {
        if (q->tick)
            event_free(q->tick);
        if (q->flush_ev)
            event_free(q->flush_ev);
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
    event_free(q->flush_ev);
    event_free(q->write_ev);
    /* The database client is freed first (main.c): its callbacks have run,
     * so no UPDATE is in flight (q->writing is NULL); row changes still on
     * the write list are lost, and those reversals are sent again by the next
     * switchd (at least once). SIGTERM's drain waits for them. */
    while (q->items)
        remove_item(q, q->items); /* an item with an M6 still pending is freed by its callback */
    free(q);
    srv->saf = NULL;
}
