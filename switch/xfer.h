/* Wallet-to-wallet transfers (xfer.c; docs/transfers.md): the saga of a terminal's 0200 with
 * processing code 40, and what txn.c calls into it. */
#ifndef ATLAS_SW_XFER_H
#define ATLAS_SW_XFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sw_server;
struct sw_txn;
struct sw_xfer;
struct sw_recent_txn;

/* The sender's request t is routed (t->issuer, t->link up; its card billed in sender_billing,
 * 0 = DE 49's) and in the duplicate table: runs its transfer; t is finished by the saga. */
void sw_xfer_start(struct sw_txn *t, int sender_billing);
/* t's PIN block is translated to the sender's issuer's ZPK (t->pin_block). */
void sw_xfer_pin_ready(struct sw_txn *t);
/* A leg (a txn with leg_of set) is answered and journaled, just before it is freed. */
void sw_xfer_leg_finished(struct sw_txn *leg);
/* A leg's result: rc "00" approved, anything else not; leg is NULL when it never left. */
void sw_xfer_leg_done(struct sw_xfer *x, bool oct, const char *rc, const struct sw_txn *leg);
/* A terminal's reversal t of a transfer (orig, an approved 0200 with processing code 40). */
void sw_xfer_reverse(struct sw_txn *t, const struct sw_recent_txn *orig);
/* A terminal's reversal t (DE 3 40…) whose original the journal does not have: 96 while the
 * transfer orig names is still running, else 12. */
struct db_request_id;
void sw_xfer_orig_unknown(struct sw_txn *t, const struct db_request_id *orig);
/* A reversal t waited for is durable (or not): true when the saga took it. */
bool sw_xfer_reversal_stored(struct sw_txn *t, bool durable);
/* The sender's answer is out (sent true) or could not be sent: a completed transfer whose
 * approval the sender never got has both legs reversed. Frees what t holds of the saga. */
void sw_xfer_delivered(struct sw_txn *t, bool sent);

/* xfer_rows.c: the row's later writes, sent again every second until PostgreSQL takes them
 * (a switchd that keeps running never runs switch.recover_transfers). */
struct db_transfer_change;
void sw_xfer_row_change(struct sw_server *srv, const struct db_transfer_change *ch);
/* switch.transfer_begin failed without an answer: its row, if committed, is made `failed`. */
void sw_xfer_row_abandon(struct sw_server *srv, const struct db_request_id *sender);
/* Teardown: what has not landed is left to recovery at the next start. */
void sw_xfer_rows_free(struct sw_server *srv);

/* What txn.c lends the saga. */
void sw_txn_finish(struct sw_txn *t);
void sw_txn_reject(struct sw_txn *t, const char *rc, int outcome, const char *reason, int field);
void sw_txn_translate_pin(struct sw_txn *t);
/* t waits for its saga (state TRANSFER). */
void sw_txn_to_transfer(struct sw_txn *t);

/* One leg of a transfer: a request of the switch's own, with its own identity. */
struct sw_leg {
    struct sw_xfer *xfer;
    bool oct;
    const char *acquirer;
    char terminal[9], stan[7], de7[11];
    const char *pan;
    size_t pan_len;
    const char *proc;
    int64_t amount;
    int currency;         /* DE 49 */
    int billing_currency; /* the card's (0: DE 49's) */
    const struct sw_issuer *issuer;
    const uint8_t *pin_block; /* under the issuer's ZPK, or NULL */
    uint64_t wall_us;
};
/* Starts the leg (write-ahead, forward, answer, journal; sw_xfer_leg_finished at the end).
 * NULL, or why it could not start (nothing left the switch). */
const char *sw_txn_start_leg(struct sw_server *srv, const struct sw_leg *leg);

#endif
