/* Private helpers shared by the files of libatlas_acquirer (not part of its face). */
#ifndef ATLAS_SIM_ACQUIRER_INTERNAL_H
#define ATLAS_SIM_ACQUIRER_INTERNAL_H

#include "acquirer.h"

/* Next STAN (1..999999, wrapping) / next valid DUKPT counter of t, refilling the
 * reservation from the state file when t uses one. 0 or -1 with err. */
SIM_MUST_CHECK int sim_term_next_stan(struct sim_term *t, uint32_t *stan, char *err, size_t errcap);
SIM_MUST_CHECK int sim_term_next_ksn(struct sim_term *t, uint32_t *ctr, char *err, size_t errcap);

/* Fills r from an already unpacked response m of msg[0..len): MTI, DE 39/38/11/41,
 * DE 54 balance, and the MAC verified with t's TAK over the exact bytes. */
void sim_resp_fill(struct sim_term *t, const uint8_t *msg, size_t len, const struct iso_msg *m,
                   struct sim_resp *r);

/* Chip card emulation (chip.c, docs/emv.md): the DE 55 of x's ARQC (Visa CVN 10 or 18, from
 * the demo issuer's lab IMK-AC of the card's BIN) into out[0..cap), the ATC from stan, the
 * unpredictable number random; what the ARPC check needs goes into s. 0 or -1 with err. */
SIM_MUST_CHECK int sim_chip_de55(const struct sim_txn *x, uint32_t stan, const char *ccy,
                                 uint64_t now_us, uint8_t *out, size_t cap, size_t *len,
                                 struct sim_sent *s, char *err, size_t errcap);
/* The answer's DE 55 tag 91 (ARPC ‖ ARC) into r. */
void sim_chip_parse_answer(const struct iso_msg *m, struct sim_resp *r);

#endif
