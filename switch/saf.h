/* Store-and-forward reversals towards issuers (switch.reversal_queue): a
 * reversal is first made durable, then sent as 0420 and repeated as 0421
 * until the issuer answers 0430. Survives restarts: pending rows are loaded
 * at start. */
#ifndef ATLAS_SW_SAF_H
#define ATLAS_SW_SAF_H

#include <stdint.h>

struct sw_server;
struct sw_txn;
struct sw_recent_txn;
struct iso_msg;
struct sw_saf;

int sw_saf_init(struct sw_server *srv);
void sw_saf_free(struct sw_server *srv);
/* Loads the pending rows of switch.reversal_queue (asynchronously). */
void sw_saf_load(struct sw_server *srv);

/* Queues the reversal of a request this txn forwarded (timeout, answer that
 * cannot be delivered, unverifiable answer). reason is one of the
 * reversal_queue reasons. The txn's answer waits for the insert. */
void sw_saf_reverse_txn(struct sw_txn *t, const char *reason);

/* A terminal reversal of orig: queued durably, then the txn is finished with
 * 00 (or 96 if it could not be queued). */
void sw_saf_reverse_original(struct sw_txn *t, const struct sw_recent_txn *orig);

/* The issuer answered a reversal the link had registered for entry. */
void sw_saf_answer(struct sw_server *srv, void *entry, const struct iso_msg *m);

/* Reversals not yet acknowledged (for /metrics). */
uint64_t sw_saf_pending(const struct sw_server *srv);

#endif
