/* `atlas-console summary`: a report over finished logs. Counts by type,
 * response code and outcome, approval rate, latency percentiles (common/hist
 * log-linear histograms), top declining terminals, issuer link outages and
 * the warnings/errors by event. Every table is capped, so memory is bounded
 * whatever the size of the logs. */
#include "con.h"

#include <stdlib.h>
#include <string.h>

#define MAX_TERMINALS 4096 /* power of two: open addressing */
#define MAX_OUTAGES   256
#define MAX_EVENTS    64
#define TOP_TERMINALS 5

static const char *const type_names[] = { "purchase", "cash-out", "cashback", "refund", "balance",
                                          "aft",      "oct",      "transfer", "?",      "-" };
#define N_TYPES (sizeof type_names / sizeof type_names[0])

static const char *const outcome_names[CON_OUT_outcome_max] = {
    "(none)", "approved", "declined", "rejected", "timeout", "unavailable", "error"
};

enum { HOP_TOTAL, HOP_MAC, HOP_PIN, HOP_ISSUER, HOP_JOURNAL, HOP_WRITE_AHEAD, HOP_max };

struct term_stat {
    char id[16];
    uint64_t txn, declined;
};

struct link_stat {
    char issuer[24], state[16], reason[64];
    bool was_up, in_outage;
    int64_t outage_start_us;
    uint64_t outages;
    int64_t down_total_us;
};

struct outage {
    size_t link;
    int64_t start_us, end_us; /* end 0: still down at the end of the log */
    char reason[64];
};

struct con_summary {
    uint64_t lines, malformed, txn, refused, requests, approved;
    int64_t first_us, last_us;
    char first_ts[32], last_ts[32];
    uint64_t by_type[N_TYPES];
    uint64_t by_rc[101]; /* "00".."99"; [100] = missing or not two digits */
    uint64_t by_outcome[CON_OUT_outcome_max];
    uint64_t stand_in, stand_in_approved; /* txn lines with "stand_in": true */
    struct at_hist hop[HOP_max];
    struct term_stat term[MAX_TERMINALS];
    size_t n_terms;
    uint64_t other_terms_declined;
    struct link_stat link[CON_MAX_ISSUERS];
    size_t n_links;
    struct outage outage[MAX_OUTAGES];
    size_t n_outages;
    uint64_t outages_not_listed;
    struct {
        char name[48];
        enum con_level level;
        uint64_t n;
    } ev[MAX_EVENTS];
    size_t n_ev;
    uint64_t ev_other;
};

struct con_summary *con_summary_new(void)
{
    struct con_summary *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    for (int i = 0; i < HOP_max; i++)
        at_hist_reset(&s->hop[i]);
    return s;
}

void con_summary_free(struct con_summary *s)
{
    free(s);
}

void con_summary_add_malformed(struct con_summary *s)
{
    s->lines++;
    s->malformed++;
}

static uint64_t hash_str(const char *p)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

/* The terminal's row, added if there is room; NULL when the table is full
 * (three quarters, to keep probing short). */
static struct term_stat *term_row(struct con_summary *s, const char *id)
{
    size_t i = (size_t)hash_str(id) & (MAX_TERMINALS - 1);
    for (;;) {
        struct term_stat *t = &s->term[i];
        if (t->id[0] == '\0') {
            if (s->n_terms >= MAX_TERMINALS * 3 / 4)
                return NULL;
            snprintf(t->id, sizeof t->id, "%s", id);
            s->n_terms++;
            return t;
        }
        if (strcmp(t->id, id) == 0)
            return t;
        i = (i + 1) & (MAX_TERMINALS - 1);
    }
}

static void add_txn(struct con_summary *s, const struct con_event *ev)
{
    s->txn++;
    const char *type = con_proc_type(ev->proc);
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(type, type_names[i]) == 0)
            s->by_type[i]++;
    if (strlen(ev->rc) == 2 && ev->rc[0] >= '0' && ev->rc[0] <= '9' && ev->rc[1] >= '0' &&
        ev->rc[1] <= '9')
        s->by_rc[(ev->rc[0] - '0') * 10 + (ev->rc[1] - '0')]++;
    else
        s->by_rc[100]++;
    s->by_outcome[ev->outcome]++;
    if (ev->stand_in) {
        s->stand_in++;
        s->stand_in_approved += ev->outcome == CON_OUT_APPROVED;
    }
    if (con_mti_is_request(ev->mti)) {
        s->requests++;
        if (ev->outcome == CON_OUT_APPROVED)
            s->approved++;
    }
    if (ev->has_lat) {
        at_hist_record(&s->hop[HOP_TOTAL], ev->lat_us);
        const uint64_t hops[] = { ev->lat_mac_us, ev->lat_pin_us, ev->lat_issuer_us,
                                  ev->lat_journal_us, ev->lat_write_ahead_us };
        for (int i = 0; i < HOP_max - HOP_MAC; i++)
            if (hops[i])
                at_hist_record(&s->hop[HOP_MAC + i], hops[i]);
    }
    bool declined = ev->outcome == CON_OUT_DECLINED;
    struct term_stat *t = ev->terminal[0] ? term_row(s, ev->terminal) : NULL;
    if (t) {
        t->txn++;
        t->declined += declined;
    } else if (declined) {
        s->other_terms_declined++;
    }
}

static void add_link(struct con_summary *s, const struct con_event *ev)
{
    struct link_stat *l = NULL;
    size_t idx = 0;
    for (; idx < s->n_links; idx++)
        if (strcmp(s->link[idx].issuer, ev->issuer) == 0)
            break;
    if (idx == s->n_links) {
        if (s->n_links == CON_MAX_ISSUERS)
            return;
        s->n_links++;
        snprintf(s->link[idx].issuer, sizeof s->link[idx].issuer, "%s", ev->issuer);
    }
    l = &s->link[idx];
    bool up = strcmp(ev->to, "up") == 0;
    if (up) {
        l->was_up = true;
        if (l->in_outage) {
            l->in_outage = false;
            l->down_total_us += ev->ts_us - l->outage_start_us;
            for (size_t i = s->n_outages; i-- > 0;) {
                if (s->outage[i].link == idx && s->outage[i].end_us == 0) {
                    s->outage[i].end_us = ev->ts_us;
                    break;
                }
            }
        }
    } else if (strcmp(l->state, "up") == 0 && !l->in_outage) {
        l->in_outage = true;
        l->outage_start_us = ev->ts_us;
        l->outages++;
        if (s->n_outages < MAX_OUTAGES) {
            struct outage *o = &s->outage[s->n_outages++];
            o->link = idx;
            o->start_us = ev->ts_us;
            o->end_us = 0;
            snprintf(o->reason, sizeof o->reason, "%s", ev->reason);
        } else {
            s->outages_not_listed++;
        }
    }
    snprintf(l->state, sizeof l->state, "%s", ev->to);
}

static void add_event_count(struct con_summary *s, const struct con_event *ev)
{
    for (size_t i = 0; i < s->n_ev; i++) {
        if (s->ev[i].level == ev->level && strcmp(s->ev[i].name, ev->event) == 0) {
            s->ev[i].n++;
            return;
        }
    }
    if (s->n_ev == MAX_EVENTS) {
        s->ev_other++;
        return;
    }
    snprintf(s->ev[s->n_ev].name, sizeof s->ev[s->n_ev].name, "%s", ev->event);
    s->ev[s->n_ev].level = ev->level;
    s->ev[s->n_ev].n = 1;
    s->n_ev++;
}

void con_summary_add(struct con_summary *s, const struct con_event *ev)
{
    s->lines++;
    if (!s->first_ts[0] || ev->ts_us < s->first_us) {
        s->first_us = ev->ts_us;
        snprintf(s->first_ts, sizeof s->first_ts, "%s", ev->ts);
    }
    if (!s->last_ts[0] || ev->ts_us >= s->last_us) {
        s->last_us = ev->ts_us;
        snprintf(s->last_ts, sizeof s->last_ts, "%s", ev->ts);
    }
    if (ev->kind == CON_EV_TXN)
        add_txn(s, ev);
    else if (ev->kind == CON_EV_TXN_REFUSED)
        s->refused++;
    else if (ev->kind == CON_EV_LINK_STATE && ev->issuer[0] && ev->to[0])
        add_link(s, ev);
    if (ev->level >= CON_LVL_WARN)
        add_event_count(s, ev);
}

static char *duration(int64_t us, char *out, size_t cap)
{
    if (us < 0)
        us = 0;
    if (us < 60 * 1000000LL)
        snprintf(out, cap, "%.1fs", (double)us / 1e6);
    else if (us < 3600 * 1000000LL)
        snprintf(out, cap, "%lldm%02llds", (long long)(us / 60000000),
                 (long long)(us / 1000000 % 60));
    else
        snprintf(out, cap, "%lldh%02lldm", (long long)(us / 3600000000LL),
                 (long long)(us / 60000000 % 60));
    return out;
}

static double pct(uint64_t a, uint64_t b)
{
    return b ? 100.0 * (double)a / (double)b : 0.0;
}

static void print_hist(FILE *out, const char *name, const struct at_hist *h)
{
    char a[16], b[16], c[16], d[16], e[16];
    if (!h->count) {
        fprintf(out, "  %-11s (none)\n", name);
        return;
    }
    fprintf(out, "  %-11s p50 %-7s p90 %-7s p99 %-7s p99.9 %-7s max %-7s (%llu)\n", name,
            con_format_latency(at_hist_quantile(h, 0.50), a, sizeof a),
            con_format_latency(at_hist_quantile(h, 0.90), b, sizeof b),
            con_format_latency(at_hist_quantile(h, 0.99), c, sizeof c),
            con_format_latency(at_hist_quantile(h, 0.999), d, sizeof d),
            con_format_latency(h->max, e, sizeof e), (unsigned long long)h->count);
}

void con_summary_print(const struct con_summary *s, FILE *out)
{
    char d[32];
    fprintf(out, "Atlas switch log summary\n");
    fprintf(out, "  lines %llu (malformed %llu)\n", (unsigned long long)s->lines,
            (unsigned long long)s->malformed);
    if (s->first_ts[0])
        fprintf(out, "  from  %s\n  to    %s  (%s)\n", s->first_ts, s->last_ts,
                duration(s->last_us - s->first_us, d, sizeof d));

    fprintf(out, "\nTransactions: %llu answered, %llu refused before routing\n",
            (unsigned long long)s->txn, (unsigned long long)s->refused);
    if (s->requests)
        fprintf(out, "  approval rate %.1f%% (%llu of %llu 0100/0200 requests)\n",
                pct(s->approved, s->requests), (unsigned long long)s->approved,
                (unsigned long long)s->requests);
    else
        fprintf(out, "  approval rate - (no 0100/0200 request)\n");
    if (s->stand_in)
        fprintf(out, "  stand-in (STIP) decisions %llu, %llu approved\n",
                (unsigned long long)s->stand_in, (unsigned long long)s->stand_in_approved);
    fprintf(out, "\nBy type\n");
    for (size_t i = 0; i < N_TYPES; i++)
        if (s->by_type[i])
            fprintf(out, "  %-28s %10llu %6.1f%%\n", type_names[i],
                    (unsigned long long)s->by_type[i], pct(s->by_type[i], s->txn));
    fprintf(out, "\nBy outcome\n");
    for (int i = 0; i < CON_OUT_outcome_max; i++)
        if (s->by_outcome[i])
            fprintf(out, "  %-28s %10llu %6.1f%%\n", outcome_names[i],
                    (unsigned long long)s->by_outcome[i], pct(s->by_outcome[i], s->txn));
    fprintf(out, "\nBy response code\n");
    for (int i = 0; i <= 100; i++) {
        if (!s->by_rc[i])
            continue;
        char rc[3] = { (char)('0' + i / 10), (char)('0' + i % 10), '\0' };
        fprintf(out, "  %-2s %-25s %10llu %6.1f%%\n", i == 100 ? "--" : rc,
                i == 100 ? "(none or malformed)" : con_rc_text(rc), (unsigned long long)s->by_rc[i],
                pct(s->by_rc[i], s->txn));
    }

    fprintf(out, "\nLatency (per hop: only transactions that used it)\n");
    static const char *const hop_names[HOP_max] = { "total",  "mac",     "pin",
                                                    "issuer", "journal", "write_ahead" };
    for (int i = 0; i < HOP_max; i++)
        print_hist(out, hop_names[i], &s->hop[i]);

    fprintf(out, "\nTop declining terminals\n");
    bool done[MAX_TERMINALS] = { 0 };
    int shown = 0;
    for (; shown < TOP_TERMINALS; shown++) {
        size_t best = MAX_TERMINALS;
        for (size_t i = 0; i < MAX_TERMINALS; i++) {
            const struct term_stat *t = &s->term[i];
            if (!t->id[0] || done[i] || !t->declined)
                continue;
            if (best == MAX_TERMINALS || t->declined > s->term[best].declined ||
                (t->declined == s->term[best].declined && strcmp(t->id, s->term[best].id) < 0))
                best = i;
        }
        if (best == MAX_TERMINALS)
            break;
        done[best] = true;
        const struct term_stat *t = &s->term[best];
        fprintf(out, "  %-16s %8llu declined of %8llu (%.1f%%)\n", t->id,
                (unsigned long long)t->declined, (unsigned long long)t->txn,
                pct(t->declined, t->txn));
    }
    if (!shown)
        fprintf(out, "  (no declines)\n");
    if (s->other_terms_declined)
        fprintf(out, "  (%llu declines on terminals beyond the first %d)\n",
                (unsigned long long)s->other_terms_declined, MAX_TERMINALS * 3 / 4);

    fprintf(out, "\nIssuer links\n");
    if (!s->n_links)
        fprintf(out, "  (no link_state event)\n");
    for (size_t i = 0; i < s->n_links; i++) {
        const struct link_stat *l = &s->link[i];
        int64_t down = l->down_total_us + (l->in_outage ? s->last_us - l->outage_start_us : 0);
        fprintf(out, "  %-16s last state %-10s outages %llu, down %s%s\n", l->issuer, l->state,
                (unsigned long long)l->outages, duration(down, d, sizeof d),
                l->was_up ? "" : " (never up in this log)");
    }
    if (s->n_outages)
        fprintf(out, "\nLink outages\n");
    for (size_t i = 0; i < s->n_outages; i++) {
        const struct outage *o = &s->outage[i];
        int64_t end = o->end_us ? o->end_us : s->last_us;
        char from[32];
        int64_t sec = o->start_us / 1000000;
        snprintf(from, sizeof from, "%02lld:%02lld:%02lld", (long long)(sec / 3600 % 24),
                 (long long)(sec / 60 % 60), (long long)(sec % 60));
        fprintf(out, "  %-16s down at %s for %-9s%s%s%s\n", s->link[o->link].issuer, from,
                duration(end - o->start_us, d, sizeof d),
                o->end_us ? "" : " (still down at the end)", o->reason[0] ? "  reason: " : "",
                o->reason);
    }
    if (s->outages_not_listed)
        fprintf(out, "  (%llu more outages not listed)\n",
                (unsigned long long)s->outages_not_listed);

    fprintf(out, "\nWarnings and errors by event\n");
    if (!s->n_ev)
        fprintf(out, "  (none)\n");
    for (size_t i = 0; i < s->n_ev; i++)
        fprintf(out, "  %-5s %-36s %10llu\n", s->ev[i].level == CON_LVL_ERROR ? "error" : "warn",
                s->ev[i].name, (unsigned long long)s->ev[i].n);
    if (s->ev_other)
        fprintf(out, "  (%llu more in other events)\n", (unsigned long long)s->ev_other);
}
