/* switchd's counters and latency histograms, rendered as Prometheus text
 * (atlas_ prefix, _total counters, _seconds histograms). The live gauges
 * (connections, link states, queue depths) are appended by their owners at
 * render time; this module holds what is counted as transactions flow. */
#ifndef ATLAS_SW_METRICS_H
#define ATLAS_SW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "hist.h"

struct evbuffer;

/* The hops a request's latency is split into (journal row and /metrics). */
enum sw_hop {
    SW_HOP_TOTAL,       /* frame received → answer written */
    SW_HOP_HSM,         /* MAC verify + PIN translate, summed */
    SW_HOP_ISSUER,      /* request forwarded → issuer answer */
    SW_HOP_JOURNAL,     /* record submitted → commit (or spool fsync) */
    SW_HOP_WRITE_AHEAD, /* write-ahead record submitted → durable (before the issuer hop) */
    SW_HOP_max
};

#define SW_METRICS_MAX_RC 256

/* Why the switch closed a terminal that held its connection (a label of
 * atlas_connections_closed_total). */
enum sw_close_cause {
    SW_CLOSE_IDLE,          /* sent nothing for idle_timeout_s */
    SW_CLOSE_FRAME_TIMEOUT, /* a request not completed within frame_timeout_ms */
    SW_CLOSE_WRITE_TIMEOUT, /* answers not read within write_timeout_ms */
    SW_CLOSE_OUTPUT_CAP,    /* unread answers beyond max_output_bytes */
    SW_CLOSE_max
};

struct sw_rc_count {
    char mti[5];
    char rc[3];
    uint64_t n;
};

/* Stand-in decisions of one issuer (atlas_stand_in_total{issuer,result}; switch/stip.c). */
enum sw_stand_in_result { SW_STIP_APPROVED, SW_STIP_DECLINED, SW_STIP_UNAVAILABLE, SW_STIP_max };
struct sw_stand_in_count {
    char issuer[33];
    uint64_t n[SW_STIP_max];
};
#define SW_METRICS_MAX_STAND_IN 32

struct sw_metrics {
    struct sw_rc_count txn[SW_METRICS_MAX_RC]; /* by (response MTI, rc) */
    size_t n_txn;
    uint64_t txn_unlabelled;        /* counted once the label table is full */
    struct at_hist hop[SW_HOP_max]; /* nanoseconds */
    uint64_t frames_in_total, frames_out_total;
    uint64_t protocol_errors_total; /* frames or messages refused */
    uint64_t conns_accepted_total, conns_refused_total;
    uint64_t conns_refused_per_address_total; /* also in conns_refused_total */
    /* Connections the switch ended because the peer held them (closed[SW_CLOSE_x]). */
    uint64_t closed[SW_CLOSE_max];
    uint64_t accept_pauses_total; /* listeners paused after accept() failed (logged once) */
    uint64_t accept_errors_total; /* accept() failures that paused a listener, retries included */
    uint64_t reversals_queued_total, reversals_acked_total;
    /* advice.c: advices and advice reversals made durable, acknowledged, refused for good */
    uint64_t advices_queued_total, advices_acked_total, advices_failed_total;
    uint64_t reversal_updates_total, reversal_updated_rows_total; /* committed, batched */
    uint64_t late_responses_total, issuer_timeouts_total;
    uint64_t journal_spooled_total;
    struct sw_stand_in_count stand_in[SW_METRICS_MAX_STAND_IN];
    size_t n_stand_in;
    uint64_t key_changes_total, key_changes_failed_total; /* issuer key changes (keyx.c) */
    uint64_t key_downloads_total;                         /* terminal key downloads (keyx.c) */
    /* txn.c: response MACs asked for together with the issuer answer's M8 — used, or discarded
     * because the answer changed (not authentic, a reversal could not be queued...). */
    uint64_t early_macs_used_total, early_macs_discarded_total;
    /* txn.c: PIN translations asked for together with the request's M8 — used, or not (the
     * request went no further, or to another ZPK). */
    uint64_t early_pins_used_total, early_pins_discarded_total;
};

void sw_metrics_init(struct sw_metrics *m);

/* Counts one answered transaction under its response MTI and DE 39. */
void sw_metrics_count_txn(struct sw_metrics *m, const char mti[4], const char rc[2]);

const char *sw_hop_name(enum sw_hop hop);

/* Appends the counters and histograms in Prometheus text format. */
int sw_metrics_render(const struct sw_metrics *m, struct evbuffer *out);

/* Appends one histogram (values in ns, rendered in seconds) with the standard
 * bucket bounds. labels is "" or e.g. "hop=\"hsm\"". */
int sw_prom_histogram(struct evbuffer *out, const char *name, const char *labels,
                      const struct at_hist *h);

#endif
