/* Pre-authorization completions and incremental authorizations in switchd (preauth.c;
 * docs/acquirer-interface.md, "Pre-authorization"): what txn.c calls into. */
#ifndef ATLAS_SW_PREAUTH_H
#define ATLAS_SW_PREAUTH_H

struct sw_txn;

/* t is an 0220/0221 completion or an incremental 0100/0101 (t->v.names_original), routed, its
 * link up and its identity in the duplicate table: finds the pre-auth its DE 90 names (memory,
 * else the journal) and goes on to the issuer with DE 90 rewritten to the issuer's view of it
 * (sw_txn_after_original), or answers t itself: 25 no approved pre-auth of that identity, 12
 * another card or issuer, another processing code, a pre-auth already reversed, 96 while it is
 * still in flight or the journal cannot be read. */
void sw_preauth_resolve(struct sw_txn *t);

#endif
