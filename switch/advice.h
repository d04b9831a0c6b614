/* Stand-in advices towards issuers: when switchd approves a request in the
 * issuer's place (stand-in, STIP), the issuer must still learn of it — an
 * 0120 for an 0100 (a hold), an 0220 for an 0200 (a forced post). The advice
 * is made durable in switch.reversal_queue (kind 'advice') before the
 * terminal is told "approved", then delivered to the issuer when its link is
 * up, one at a time per issuer in queue order, repeated as 0121/0221 (same
 * issuer STAN and DE 7, so the issuer's request key is the same) until an
 * 0130/0230 whose MAC verifies acknowledges it. Survives restarts like the
 * reversals (switch/saf.c): pending rows are loaded at start.
 *
 * The advice carries DE 38 (the stand-in approval code "S" + 5 digits) and
 * DE 39 (the stand-in decision's response code) and no DE 90: that is how
 * the issuer tells it from an acquirer's 0220 completion (which names its
 * pre-authorization in DE 90). */
#ifndef ATLAS_SW_ADVICE_H
#define ATLAS_SW_ADVICE_H

#include <stdbool.h>

struct sw_txn;

/* Stores t's stand-in decision (approval) as an advice for t's issuer — 0120 for an 0100, 0220 for
 * an 0200 — in the durable queue, with its own issuer STAN and DE 7 chosen now (repeats 0121/0221
 * carry the same), then calls done(t, durable) once: durable=false means it is not stored and the
 * caller must not approve (it answers 91 instead). */
void sw_advice_store(struct sw_txn *t, void (*done)(struct sw_txn *t, bool durable));

#endif
