/* issuer-sim's batched snapshot loads (issue 17): the requests that need their wallet snapshot
 * in one loop turn are queued, and at the end of the turn the queue leaves as db_wallet_load_batch
 * calls — one statement (one round trip, one transaction) for up to DB_WALLET_LOAD_MAX
 * requests. The same adaptive rule as the apply (apply.c): at most load_max_inflight statements
 * in flight; a lone request on an idle daemon is read at once (at the end of its loop turn, no
 * timer), and under load the requests that arrive while loads are in flight leave together when
 * one answers. Each request's result goes to txn_loaded as a single load's would. */
#include "issuer_int.h"

#include "db.h"
#include "log.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

void load_queue(struct txn *t)
{
    struct iss *s = t->iss;
    t->load_next = NULL;
    *s->load_tail = t;
    s->load_tail = &t->load_next;
    if (s->load_queued++ == 0)
        event_active(s->ev_load, 0, 0);
}

/* A load statement answered: each request of its chain (the order of its rows) gets its own
 * snapshot, or the statement's error. */
static void on_loads(void *arg, const struct db_error *err, const struct db_wallet_loaded *out,
                     unsigned n)
{
    struct txn *t = arg;
    struct iss *s = t->iss;
    s->load_inflight--;
    if (s->load_head) /* a statement slot is free: what queued meanwhile leaves now */
        event_active(s->ev_load, 0, 0);
    for (unsigned i = 0; t; i++) {
        struct txn *next = t->load_next; /* before: t may end (and its slot be reused) below */
        t->load_next = NULL;
        if (err->code != 0)
            txn_loaded(t, err, NULL);
        else if (i >= n) {
            struct db_error e = { .code = DB_E_INVALID, .action = DB_ACTION_FAIL };
            snprintf(e.message, sizeof e.message, "wallet load: row missing");
            txn_loaded(t, &e, NULL);
        } else
            txn_loaded(t, &out[i].err, out[i].err.code == 0 ? &out[i].snap : NULL);
        t = next;
    }
}

void load_flush(evutil_socket_t fd, short what, void *arg)
{
    struct iss *s = arg;
    (void)fd;
    (void)what;
    while (s->load_head && (s->closing || s->load_inflight < s->load_max_inflight)) {
        struct txn *batch[DB_WALLET_LOAD_MAX] = { 0 };
        struct db_wallet_load_req reqs[DB_WALLET_LOAD_MAX];
        unsigned n = 0;
        while (s->load_head && n < DB_WALLET_LOAD_MAX) {
            struct txn *t = s->load_head;
            s->load_head = t->load_next;
            s->load_queued--;
            batch[n] = t;
            memcpy(reqs[n].pan_hmac, t->pan_hmac, sizeof reqs[n].pan_hmac);
            reqs[n].request_key = t->key;
            n++;
        }
        if (!s->load_head)
            s->load_tail = &s->load_head;
        if (s->closing) {
            for (unsigned i = 0; i < n; i++)
                txn_fail(batch[i], "96", "shutdown");
            continue;
        }
        for (unsigned i = 0; i < n; i++)
            batch[i]->load_next = i + 1 < n ? batch[i + 1] : NULL;
        s->load_inflight++; /* before: on_loads may run inside the call (database down) */
        if (db_wallet_load_batch(s->db, reqs, n, on_loads, batch[0]) != 0) {
            s->load_inflight--;
            for (unsigned i = 0; i < n; i++) {
                batch[i]->load_next = NULL;
                txn_fail(batch[i], "96", "db_full");
            }
        }
    }
}
