/* atlas-reconcile's output: a readable report (per-check counts, the per-currency table, the
 * wallets with a difference, one line per mismatch) or the same as one JSON object. Masked PANs
 * only: nothing here ever sees a full one. */
#ifndef ATLAS_RECON_REPORT_H
#define ATLAS_RECON_REPORT_H

#include <stdio.h>

#include "fetch.h"
#include "recon.h"

struct rc_report_info {
    const struct rc_window *w;
    const char *record_path; /* NULL without --record */
    bool allow_pending;
};

void rc_report_text(FILE *out, const struct rc_ctx *c, const struct rc_report_info *info);

/* 0, or -1 when the JSON could not be built (out of memory). */
__attribute__((warn_unused_result)) int rc_report_json(FILE *out, const struct rc_ctx *c,
                                                       const struct rc_report_info *info);

#endif
