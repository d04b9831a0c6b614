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

#endif
