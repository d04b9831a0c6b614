/* Stand-in advices towards issuers: when switchd approves a request in the
 * issuer's place (stand-in, STIP), the issuer must still learn of it — an
 * 0120 for an 0100 (a hold), an 0220 for an 0200 (a forced post). The advice
 * is made durable in switch.advice_queue (migration 0014) before the terminal
 * is told "approved", then delivered to the issuer when its link is up, one
 * at a time per issuer in queue order, repeated as 0121/0221 (same issuer
 * STAN and DE 7, so the issuer's request key is the same) until an 0130/0230
 * whose MAC verifies acknowledges it. Survives restarts like the reversals
 * (switch/saf.c): pending rows are loaded at start.
 *
 * The advice carries DE 38 (the stand-in approval code "S" + 5 digits) and
 * DE 39 (the stand-in decision's response code) and no DE 90: that is how
 * the issuer tells it from an acquirer's 0220 completion (which names its
 * pre-authorization in DE 90).
 *
 * A stand-in approval that must not stand (the terminal did not receive it,
 * or reverses it) is undone by the reversal of its advice (0420, DE 90 naming
 * the advice), queued behind the advice in the same per-issuer order: the
 * issuer applies the advice, then takes it back. docs/switchd.md "Advices". */
#ifndef ATLAS_SW_ADVICE_H
#define ATLAS_SW_ADVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sw_txn;
struct sw_server;
struct sw_recent_txn;
struct iso_msg;

/* What sw_advice_store needs of t and does to it: t->auth_code (DE 38, the stand-in code) and t->rc
 * (DE 39) are set before the call; t->issuer.id names an issuer with a link. It sets
 * t->issuer_stan and t->issuer_de7 to the advice's (so the journal row and the duplicate table name
 * the advice, and a terminal reversal's DE 90 finds it at the issuer), and t->advice_stored once
 * durable. done is never called from inside the call. */
/* Stores t's stand-in decision (approval) as an advice for t's issuer — 0120 for an 0100, 0220 for
 * an 0200 — in the durable queue, with its own issuer STAN and DE 7 chosen now (repeats 0121/0221
 * carry the same), then calls done(t, durable) once: durable=false means it is not stored and the
 * caller must not approve (it answers 91 instead). */
void sw_advice_store(struct sw_txn *t, void (*done)(struct sw_txn *t, bool durable));
/* The stand-in approval t holds will not stand (the answer could not be delivered, or was
 * withdrawn: its MAC or journal row failed): queues the reversal of its advice behind it. With
 * wait (and no other reversal pending on t), t's answer waits until that is durable
 * (sw_txn_reversal_stored). Does nothing unless t->advice_stored; at most once per txn. */
void sw_advice_withdraw(struct sw_txn *t, bool wait);

/* Whether a DE 38 (6 characters, not NUL-terminated) is a stand-in approval code: "S" + 5 digits.
 */
bool sw_advice_is_stand_in(const char auth_code[6]);

/* A terminal reversal (t) of a stand-in approval orig: the reversal of orig's advice is queued
 * (or found queued) and t waits until it is durable (t->pending_saf, then
 * sw_txn_reversal_stored). When nothing waits on return, t->rc is set (00: already queued and
 * durable; 96: could not be started) and the caller finishes t. */
void sw_advice_reverse_original(struct sw_txn *t, const struct sw_recent_txn *orig);

/* The link matched an answer to an advice (or advice reversal) it registered for entry:
 * whether MTI is of the class it waits for (0130/0230, 0430), then the answer itself (m unpacked
 * from raw[0..raw_len), valid during the call; its MAC is verified with the issuer's ZAK). */
bool sw_advice_answer_class_ok(const void *entry, const char mti[4]);
void sw_advice_answer(struct sw_server *srv, void *entry, const struct iso_msg *m,
                      const uint8_t *raw, size_t raw_len);

int sw_advice_init(struct sw_server *srv);
void sw_advice_free(struct sw_server *srv);
/* Queues the reversals of this instance's advices whose approval the journal does not hold
 * (switch.recover_advices), then loads the pending rows; done(srv) runs once they are in memory
 * (retried until the database answers). After the journal spool's replay. */
void sw_advice_load(struct sw_server *srv, void (*done)(struct sw_server *srv));
/* Items not yet acknowledged or failed (for /metrics and tests). */
uint64_t sw_advice_pending(const struct sw_server *srv);
/* What SIGTERM's drain waits for: items not durable yet and row changes not committed. */
uint64_t sw_advice_unwritten(const struct sw_server *srv);

#endif
