/* Store-and-forward reversals towards issuers (switch.reversal_queue): a
 * reversal is first made durable — its REVERSAL record goes through the
 * journal writer, so it is committed, or fsync'd to the spool while
 * PostgreSQL is away — then sent as 0420 and repeated as 0421 until an 0430
 * whose MAC verifies settles it: 00 acknowledges it, 91/96 (or no code) mean
 * "repeat later", any other code parks it as failed for an operator.
 * Survives restarts: pending rows are loaded at start.
 * Each reversal's lifecycle is an enum with an allowed-transitions table
 * (saf.c); row changes after the insert are batched. */
#ifndef ATLAS_SW_SAF_H
#define ATLAS_SW_SAF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sw_server;
struct sw_txn;
struct sw_recent_txn;
struct iso_msg;
struct sw_saf;

int sw_saf_init(struct sw_server *srv);
void sw_saf_free(struct sw_server *srv);
/* Loads the pending rows of switch.reversal_queue (asynchronously); done(srv)
 * runs once they are in memory (retried until the database answers). */
void sw_saf_load(struct sw_server *srv, void (*done)(struct sw_server *srv));

/* Queues the reversal of the request t forwarded (timeout, answer that cannot
 * be delivered or journaled, unverifiable answer, an issuer's own 91/96).
 * reason is one of the reversal_queue reasons. With wait, t's answer waits
 * until the reversal is durable (t->pending_saf; sw_txn_reversal_stored tells
 * it, never from inside this call); without, the reversal is independent of
 * t, which may be freed at once. At most one reversal per txn. */
void sw_saf_reverse_txn(struct sw_txn *t, const char *reason, bool wait);

/* A terminal reversal of orig (answered and approved): t waits until the
 * reversal is durable, then sw_txn_reversal_stored(t, durable) tells it. If
 * nothing can be started, t->rc is set to 96 and the caller finishes t. */
void sw_saf_reverse_original(struct sw_txn *t, const struct sw_recent_txn *orig);

/* The reversal of orig, a request whose PAN is pan (a transfer's leg: xfer.c), with reason (a
 * reversal_queue reason). With a waiter t it is as sw_saf_reverse_original; with t NULL it is
 * independent of any txn (logged when it cannot even be started). */
void sw_saf_reverse_leg(struct sw_server *srv, struct sw_txn *t, const struct sw_recent_txn *orig,
                        const char *pan, size_t pan_len, const char *reason);

/* The issuer answered a reversal the link had registered for entry: m is
 * unpacked from raw[0..raw_len) (both valid during the call). The answer's
 * MAC is verified with the issuer's ZAK before it counts. */
void sw_saf_answer(struct sw_server *srv, void *entry, const struct iso_msg *m, const uint8_t *raw,
                   size_t raw_len);

/* Reversals not yet acknowledged (for /metrics). */
uint64_t sw_saf_pending(const struct sw_server *srv);

/* What SIGTERM's drain waits for: reversals whose record is not durable yet,
 * and row changes (attempt counts, acknowledgements, failures) decided but
 * not yet committed. */
uint64_t sw_saf_unwritten(const struct sw_server *srv);

#endif
