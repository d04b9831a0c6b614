/* Card authentication on the issuer's behalf (docs/emv.md): a chip card's ARQC verified and its
 * ARPC generated (payShield KQ), a card-not-present request's CVV2 verified (CY), with the keys
 * of the card's BIN route, before the request is forwarded. txn.c calls the sw_card_* functions
 * at three points; emv.c calls back the sw_txn_* ones. */
#ifndef ATLAS_SW_EMV_H
#define ATLAS_SW_EMV_H

#include <stdbool.h>
#include <stdint.h>

#include "iso8583.h"

struct sw_txn;
struct sw_refdata;

/* What one request's card authentication keeps between its steps (inside struct sw_txn, reset
 * per request). Never a CVV2: that is read from the request when the CY is built, and the
 * command buffer is wiped. */
struct sw_card_auth {
    bool chip;        /* DE 22 05x/07x with DE 55: the ARQC is verified */
    bool cvv2;        /* DE 126 carries a CVV2 (tag C2): verified by CY */
    bool arqc_ok;     /* the ARQC verified: the answer gets an ARPC */
    bool arpc_done;   /* the ARPC was asked for (once) */
    bool cvv2_ok;     /* the CVV2 verified: DE 126 to the issuer says so (CR M) */
    bool repeat;      /* a repeat answered from its original: a failure only drops the ARPC */
    char scheme, pad; /* KQ's scheme ('0' CVN 10, '2' CVN 18) and padding flag */
    uint8_t cvn;
    char psn[3];
    uint8_t atc[2], un[4], arqc[8];
    uint8_t arpc[8];
    char arpc_rc[3];          /* the ARC the ARPC was made with ("" = none) */
    char imk_ac[50], cvk[50]; /* the route's keys under the LMK (copies: a reload may free them) */
};

/* Whether t (an 0100/0200, not a transfer) needs card authentication: chip data with a chip
 * POS entry mode, or a CVV2. */
bool sw_card_auth_wanted(const struct sw_txn *t);
/* Starts it with the keys of the card's route (card_keys as sw_route_match gives it; 0 = none,
 * ref the snapshot it indexes). Ends in sw_txn_card_checked(t) or sw_txn_reject(t, ...). */
void sw_card_auth_start(struct sw_txn *t, const struct sw_refdata *ref, uint32_t card_keys);
/* A repeat (xx01) answered from its original's stored answer (t->rc set): whether its own chip
 * data should be verified, so that the answer carries an ARPC made with the stored code. */
bool sw_card_repeat_wanted(const struct sw_txn *t);
/* Verifies it (KQ) with the keys of the card's route; whatever comes of it, ends in
 * sw_txn_finish(t) with t's stored answer — an ARPC when the ARQC verified, none otherwise. */
void sw_card_repeat_start(struct sw_txn *t, const struct sw_refdata *ref);
/* At finish: true when an ARPC is being generated for t's answer code (the caller waits for
 * sw_txn_card_arpc_done); false when none is due. */
bool sw_card_arpc_start(struct sw_txn *t);
/* Adds DE 55 (tag 91: ARPC ‖ ARC) to the terminal's answer o when an ARPC was made with the
 * answer's own code. 0 or -1. */
int sw_card_answer_fields(const struct sw_txn *t, struct iso_msg *o);
/* The issuer request o: DE 126's CVV2 replaced by the verification result. 0 or -1. */
int sw_card_issuer_fields(const struct sw_txn *t, struct iso_msg *o);

/* txn.c's side. */
void sw_txn_card_checked(struct sw_txn *t);
void sw_txn_card_arpc_done(struct sw_txn *t);

#endif
