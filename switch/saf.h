/* Store-and-forward reversals towards issuers (switch.reversal_queue): a
 * reversal is first made durable, then sent as 0420 and repeated as 0421
 * until the issuer answers 0430. Survives restarts: pending rows are loaded
 * at start. Inserts and later row changes are batched (one statement, one
 * commit, for many reversals). */
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
/* Loads the pending rows of switch.reversal_queue (asynchronously). */
void sw_saf_load(struct sw_server *srv);

/* Queues the reversal of a request this txn forwarded (timeout, answer that
 * cannot be delivered or journaled, unverifiable answer). reason is one of
 * the reversal_queue reasons. With wait, the txn's answer waits for the
 * first insert attempt (t->pending_saf); without, the item is independent of
 * the txn, which may be freed at once. Never calls back into t from inside
 * this call. At most one reversal per txn. */
void sw_saf_reverse_txn(struct sw_txn *t, const char *reason, bool wait);

/* A terminal reversal of orig. If its insert can start, the txn waits
 * (pending_saf) and is finished later with 00, or 96 when the first insert
 * failed (the reversal itself is still retried until durable); if it cannot
 * start, t->rc is set to 96 and the caller finishes t. */
void sw_saf_reverse_original(struct sw_txn *t, const struct sw_recent_txn *orig);

/* The issuer answered a reversal the link had registered for entry: m is
 * unpacked from raw[0..raw_len) (both valid during the call). The answer's
 * MAC is verified with the issuer's ZAK before it counts. */
void sw_saf_answer(struct sw_server *srv, void *entry, const struct iso_msg *m, const uint8_t *raw,
                   size_t raw_len);

/* Reversals not yet acknowledged (for /metrics). */
uint64_t sw_saf_pending(const struct sw_server *srv);

/* Row changes (attempt counts, acknowledgements, failures) decided but not
 * yet committed: queued for the next UPDATE or in the one in flight. The
 * SIGTERM drain waits for this to reach 0. */
uint64_t sw_saf_unwritten(const struct sw_server *srv);

#endif
