/* Prometheus text rendering of switchd's counters and histograms. */
#include "metrics.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

static const char *const hop_names[SW_HOP_max] = { "total", "hsm", "issuer", "journal",
                                                   "write_ahead" };
static const char *const close_names[SW_CLOSE_max] = { "idle_timeout", "frame_timeout",
                                                       "write_timeout", "output_cap" };

/* Bucket upper bounds in seconds: sub-millisecond to seconds, enough to see
 * both a healthy switch (p99 of a few ms) and a timed-out issuer. */
static const double bounds_s[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1,     2.5,  5,     10 };

void sw_metrics_init(struct sw_metrics *m)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < SW_HOP_max; i++)
        at_hist_reset(&m->hop[i]);
}

const char *sw_hop_name(enum sw_hop hop)
{
    return hop < SW_HOP_max ? hop_names[hop] : "unknown";
}

void sw_metrics_count_txn(struct sw_metrics *m, const char mti[4], const char rc[2])
{
    for (size_t i = 0; i < m->n_txn; i++) {
        struct sw_rc_count *c = &m->txn[i];
        if (memcmp(c->mti, mti, 4) == 0 && memcmp(c->rc, rc, 2) == 0) {
            c->n++;
            return;
        }
    }
    if (m->n_txn == SW_METRICS_MAX_RC) {
        m->txn_unlabelled++;
        return;
    }
    struct sw_rc_count *c = &m->txn[m->n_txn++];
    for (int i = 0; i < 4; i++) /* labels come from the wire: keep them printable */
        c->mti[i] = (mti[i] >= '0' && mti[i] <= '9') ? mti[i] : '?';
    for (int i = 0; i < 2; i++)
        c->rc[i] = ((rc[i] >= '0' && rc[i] <= '9') || (rc[i] >= 'A' && rc[i] <= 'Z')) ? rc[i] : '?';
    c->mti[4] = c->rc[2] = '\0';
    c->n = 1;
}

int sw_prom_histogram(struct evbuffer *out, const char *name, const char *labels,
                      const struct at_hist *h)
{
    const char *sep = *labels ? "," : "";
    int rc = 0;
    for (size_t i = 0; i < sizeof bounds_s / sizeof bounds_s[0]; i++) {
        uint64_t n = at_hist_count_le(h, (uint64_t)(bounds_s[i] * 1e9));
        rc |= evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                                  bounds_s[i], (unsigned long long)n) < 0;
    }
    rc |= evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                              (unsigned long long)h->count) < 0;
    rc |= evbuffer_add_printf(out, "%s_sum{%s} %.9f\n%s_count{%s} %llu\n", name, labels,
                              (double)h->sum / 1e9, name, labels, (unsigned long long)h->count) < 0;
    return rc ? -1 : 0;
}

static int counter(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
    return evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name,
                               name, (unsigned long long)v) < 0
               ? -1
               : 0;
}

int sw_metrics_render(const struct sw_metrics *m, struct evbuffer *out)
{
    int rc = 0;
    rc |= evbuffer_add_printf(out, "# HELP atlas_transactions_total Answered transactions by "
                                   "response MTI and response code.\n"
                                   "# TYPE atlas_transactions_total counter\n") < 0;
    for (size_t i = 0; i < m->n_txn; i++)
        rc |= evbuffer_add_printf(out, "atlas_transactions_total{mti=\"%s\",rc=\"%s\"} %llu\n",
                                  m->txn[i].mti, m->txn[i].rc, (unsigned long long)m->txn[i].n) < 0;
    if (m->txn_unlabelled)
        rc |=
            evbuffer_add_printf(out, "atlas_transactions_total{mti=\"other\",rc=\"other\"} %llu\n",
                                (unsigned long long)m->txn_unlabelled) < 0;

    rc |=
        evbuffer_add_printf(out, "# HELP atlas_request_duration_seconds Latency of a request "
                                 "by hop.\n# TYPE atlas_request_duration_seconds histogram\n") < 0;
    for (int i = 0; i < SW_HOP_max; i++) {
        char labels[32];
        snprintf(labels, sizeof labels, "hop=\"%s\"", hop_names[i]);
        rc |= sw_prom_histogram(out, "atlas_request_duration_seconds", labels, &m->hop[i]);
    }
    rc |= counter(out, "atlas_frames_received_total", "Frames read from terminals.",
                  m->frames_in_total);
    rc |= counter(out, "atlas_frames_sent_total", "Frames written to terminals.",
                  m->frames_out_total);
    rc |= counter(out, "atlas_protocol_errors_total",
                  "Messages refused (format, MAC; bad frame headers: atlas_frames_refused_total).",
                  m->protocol_errors_total);
    rc |= counter(out, "atlas_connections_accepted_total", "Terminal connections accepted.",
                  m->conns_accepted_total);
    rc |= counter(out, "atlas_connections_refused_total",
                  "Terminal connections refused at accept (max_connections, "
                  "max_connections_per_address, draining).",
                  m->conns_refused_total);
    rc |= counter(out, "atlas_connections_refused_per_address_total",
                  "Terminal connections refused because their address already had "
                  "max_connections_per_address.",
                  m->conns_refused_per_address_total);
    rc |= evbuffer_add_printf(out, "# HELP atlas_connections_closed_total Terminal connections "
                                   "closed by the switch because the peer held them.\n"
                                   "# TYPE atlas_connections_closed_total counter\n") < 0;
    for (int i = 0; i < SW_CLOSE_max; i++)
        rc |= evbuffer_add_printf(out, "atlas_connections_closed_total{reason=\"%s\"} %llu\n",
                                  close_names[i], (unsigned long long)m->closed[i]) < 0;
    rc |= counter(out, "atlas_accept_pauses_total",
                  "Times a listener stopped accepting after accept() failed for want of "
                  "descriptors or memory (each logged once as accept_paused).",
                  m->accept_pauses_total);
    rc |= counter(out, "atlas_accept_errors_total",
                  "accept() failures that paused a listener, retries during a pause included.",
                  m->accept_errors_total);
    rc |= counter(out, "atlas_hsm_early_macs_used_total",
                  "Terminal response MACs asked for in the same HSM write as the M8 of the "
                  "issuer's answer, and used (docs/switchd.md \"HSM commands\").",
                  m->early_macs_used_total);
    rc |= counter(out, "atlas_hsm_early_macs_discarded_total",
                  "Terminal response MACs asked for early and not used: the answer changed "
                  "(issuer MAC refused, ...) and was MACed again.",
                  m->early_macs_discarded_total);
    rc |= counter(out, "atlas_hsm_early_pins_used_total",
                  "PIN translations asked for in the same HSM write as the M8 of the terminal's "
                  "request, and used.",
                  m->early_pins_used_total);
    rc |= counter(out, "atlas_hsm_early_pins_discarded_total",
                  "PIN translations asked for early and not used: the request was refused (MAC, "
                  "duplicate, ...) or routed to another ZPK.",
                  m->early_pins_discarded_total);
    rc |= counter(out, "atlas_reversals_queued_total", "Reversals put in store-and-forward.",
                  m->reversals_queued_total);
    rc |= counter(out, "atlas_reversals_acknowledged_total", "Reversals the issuer acknowledged.",
                  m->reversals_acked_total);
    rc |= counter(out, "atlas_advices_queued_total",
                  "Stand-in advices and advice reversals made durable (switch.advice_queue).",
                  m->advices_queued_total);
    rc |= counter(out, "atlas_advices_acknowledged_total",
                  "Stand-in advices and advice reversals the issuer acknowledged.",
                  m->advices_acked_total);
    rc |= counter(out, "atlas_advices_failed_total",
                  "Stand-in advices and advice reversals the issuer refused for good (parked "
                  "'failed' for an operator).",
                  m->advices_failed_total);
    rc |= counter(out, "atlas_reversal_queue_updates_total",
                  "UPDATE statements (each one transaction) committed on switch.reversal_queue.",
                  m->reversal_updates_total);
    rc |= counter(out, "atlas_reversal_queue_updated_rows_total",
                  "Row changes (attempt counts, acks, failures) those UPDATEs carried.",
                  m->reversal_updated_rows_total);
    rc |= counter(out, "atlas_issuer_timeouts_total", "Requests the issuer did not answer in time.",
                  m->issuer_timeouts_total);
    rc |= counter(out, "atlas_late_responses_total",
                  "Issuer answers after the timeout (reversed, never forwarded).",
                  m->late_responses_total);
    rc |= counter(out, "atlas_journal_spooled_total",
                  "Journal records written to the local spool during a database outage.",
                  m->journal_spooled_total);
    rc |= counter(out, "atlas_key_changes_total",
                  "Issuer ZPK/ZAK changes confirmed and committed (docs/keys.md).",
                  m->key_changes_total);
    rc |= counter(out, "atlas_key_changes_failed_total",
                  "Issuer key changes abandoned, the previous keys kept (docs/keys.md).",
                  m->key_changes_failed_total);
    rc |= counter(out, "atlas_key_downloads_total",
                  "Terminal key downloads served (new TPK/TAK under the TMK, docs/keys.md).",
                  m->key_downloads_total);
    return rc ? -1 : 0;
}
