/* Stand-in processing (STIP; docs/switchd.md "Stand-in"): when an issuer's link is down, or the
 * issuer does not answer within the request's timeout, and the issuer's [issuer] section says
 * stand_in = on, switchd decides in the issuer's place by its rules in PostgreSQL
 * (switch.stand_in_rules, the negative file, the published PVVs; db/db_stip.h). An approval
 * (DE 38 "S" + 5 digits) is answered only after its advice (switch/advice.h) is durable (and
 * its journal row committed, as every answer). Declines are journaled (marked stand_in) and need
 * no advice: nothing moved. Withdrawals and terminal reversals of stand-in approvals are
 * advice.c's (the reversal of the advice). The per-MTI issuer timeouts live here too. txn.c
 * calls in at three places: link down, timeout, link lost. */
#ifndef ATLAS_SW_STIP_H
#define ATLAS_SW_STIP_H

#include <stdbool.h>
#include <stdint.h>

struct evbuffer;
struct sw_server;
struct sw_txn;
struct timeval;

/* Why the issuer cannot decide (a label of atlas_stand_in_total's log line). */
enum sw_stip_why { SW_STIP_LINK_DOWN, SW_STIP_TIMEOUT, SW_STIP_LINK_LOST };

/* Whether t may be decided in stand-in: its issuer's link has stand_in = on, and it is a
 * terminal's 0100/0200 (or a repeat of one) that is neither a transfer (40) nor a balance
 * inquiry (30/31). Reversals and a transfer's legs never are. */
bool sw_stip_eligible(const struct sw_txn *t);

/* Takes t over (eligible) and decides it; t is finished by stand-in (approved, declined, or 91
 * when the rules cannot be read, PostgreSQL is down, or the advice cannot be stored). */
void sw_stip_decide(struct sw_txn *t, enum sw_stip_why why);

/* The issuer deadline of t on its link: timeout_ms.cash for processing code 01, else
 * timeout_ms.0100 / timeout_ms.0200 by MTI class, else timeout_ms. buf receives it. */
const struct timeval *sw_stip_timeout(const struct sw_txn *t, struct timeval *buf);

/* atlas_stand_in_total{issuer,result} in Prometheus text. */
void sw_stip_metrics_render(const struct sw_server *srv, struct evbuffer *out);

#endif
