/* Rolling statistics for the status line: a ring of one-second slots keyed
 * by the events' own timestamps, merged on demand into TPS, approval rate and
 * latency percentiles over the last ten seconds; plus the issuer link states
 * and the status line that shows them. Fixed memory, no allocation. */
#include "con.h"

#include <stdio.h>
#include <string.h>

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

void con_roll_init(struct con_roll *r)
{
    for (int i = 0; i < CON_ROLL_SECONDS; i++) {
        r->slot[i].sec = INT64_MIN;
        r->slot[i].txn = r->slot[i].requests = r->slot[i].approved = r->slot[i].errors = 0;
        at_hist_reset(&r->slot[i].lat);
    }
    at_hist_reset(&r->scratch);
}

/* The slot for second sec, recycled if it held an older second; NULL when
 * sec is older than what the slot already holds (outside every window). */
static struct con_roll_slot *slot_for(struct con_roll *r, int64_t ts_us)
{
    int64_t sec = floor_div(ts_us, 1000000);
    int64_t idx = sec % CON_ROLL_SECONDS;
    if (idx < 0)
        idx += CON_ROLL_SECONDS;
    struct con_roll_slot *s = &r->slot[idx];
    if (s->sec == sec)
        return s;
    if (s->sec != INT64_MIN && sec < s->sec)
        return NULL;
    s->sec = sec;
    s->txn = s->requests = s->approved = s->errors = 0;
    at_hist_reset(&s->lat);
    return s;
}

void con_roll_add(struct con_roll *r, const struct con_event *ev)
{
    /* Link changes have their own place on the status line (and switchd
     * logs a link coming back up at warn): not counted as errors. */
    bool is_err = ev->level >= CON_LVL_WARN && ev->kind != CON_EV_LINK_STATE;
    if (ev->kind != CON_EV_TXN && !is_err)
        return;
    struct con_roll_slot *s = slot_for(r, ev->ts_us);
    if (!s)
        return;
    if (is_err)
        s->errors++;
    if (ev->kind != CON_EV_TXN)
        return;
    s->txn++;
    if (con_mti_is_request(ev->mti)) {
        s->requests++;
        if (ev->outcome == CON_OUT_APPROVED)
            s->approved++;
    }
    if (ev->has_lat)
        at_hist_record(&s->lat, ev->lat_us);
}

void con_roll_add_error(struct con_roll *r, int64_t ts_us)
{
    struct con_roll_slot *s = slot_for(r, ts_us);
    if (s)
        s->errors++;
}

void con_roll_snapshot(struct con_roll *r, int64_t now_us, struct con_roll_snap *out)
{
    int64_t now_sec = floor_div(now_us, 1000000);
    uint64_t req = 0, appr = 0;
    memset(out, 0, sizeof *out);
    at_hist_reset(&r->scratch);
    for (int i = 0; i < CON_ROLL_SECONDS; i++) {
        const struct con_roll_slot *s = &r->slot[i];
        if (s->sec == INT64_MIN || s->sec > now_sec || s->sec <= now_sec - CON_ROLL_SECONDS)
            continue;
        out->txn += s->txn;
        out->errors += s->errors;
        req += s->requests;
        appr += s->approved;
        if (s->lat.count)
            at_hist_merge(&r->scratch, &s->lat);
    }
    /* Nine whole seconds plus the part of the current one that has passed. */
    double window = (CON_ROLL_SECONDS - 1) + (double)(now_us - now_sec * 1000000) / 1e6;
    out->tps = (double)out->txn / window;
    out->approval_pct = req ? 100.0 * (double)appr / (double)req : -1.0;
    out->p50_us = at_hist_quantile(&r->scratch, 0.50);
    out->p99_us = at_hist_quantile(&r->scratch, 0.99);
}

void con_links_update(struct con_links *k, const struct con_event *ev)
{
    if (ev->kind != CON_EV_LINK_STATE || !ev->issuer[0] || !ev->to[0])
        return;
    for (size_t i = 0; i < k->n; i++) {
        if (strcmp(k->l[i].issuer, ev->issuer) == 0) {
            snprintf(k->l[i].state, sizeof k->l[i].state, "%s", ev->to);
            return;
        }
    }
    if (k->n < CON_MAX_ISSUERS) {
        snprintf(k->l[k->n].issuer, sizeof k->l[k->n].issuer, "%s", ev->issuer);
        snprintf(k->l[k->n].state, sizeof k->l[k->n].state, "%s", ev->to);
        k->n++;
    }
}

char *con_status_line(const struct con_roll_snap *s, const struct con_links *k,
                      const struct con_metrics *m, unsigned width, char *out, size_t cap)
{
    char p50[16], p99[16], appr[16], tps[24];
    if (width < 20)
        width = 20;
    char line[512];
    size_t limit = width - 1 < cap - 1 ? width - 1 : cap - 1;
    if (limit > sizeof line - 1)
        limit = sizeof line - 1;
    if (s->approval_pct < 0)
        snprintf(appr, sizeof appr, "-");
    else
        snprintf(appr, sizeof appr, "%.1f%%", s->approval_pct);
    if (s->tps < 1000)
        snprintf(tps, sizeof tps, "%.1f", s->tps);
    else
        snprintf(tps, sizeof tps, "%.0f", s->tps);
    if (s->txn) {
        con_format_latency(s->p50_us, p50, sizeof p50);
        con_format_latency(s->p99_us, p99, sizeof p99);
    } else {
        snprintf(p50, sizeof p50, "-");
        snprintf(p99, sizeof p99, "-");
    }
    int n = snprintf(line, sizeof line, "%s tps | appr %s | p50 %s p99 %s | err %llu |", tps, appr,
                     p50, p99, (unsigned long long)s->errors);
    size_t len = n < 0 ? 0 : (size_t)n;
    /* Alarms first: they matter more than the link list. */
    if (m && m->db_up == 0 && len + 11 <= sizeof line) {
        memcpy(line + len, " DB DOWN |", 11);
        len += 10;
    }
    if (m && m->backpressure == 1 && len + 16 <= sizeof line) {
        memcpy(line + len, " BACKPRESSURE |", 16);
        len += 15;
    }
    if (k->n == 0 && len + 11 < sizeof line) {
        memcpy(line + len, " links: ?", 10);
        len += 9;
    }
    for (size_t i = 0; i < k->n; i++) {
        char item[48], more[16];
        int w = snprintf(item, sizeof item, " %s:%s", k->l[i].issuer, k->l[i].state);
        int mw = snprintf(more, sizeof more, " +%zu", k->n - i);
        bool last = i + 1 == k->n;
        /* Keep room for "+N" unless this is the last issuer. */
        if (w > 0 && len + (size_t)w + (last ? 0 : (size_t)mw) <= limit) {
            memcpy(line + len, item, (size_t)w);
            len += (size_t)w;
        } else {
            if (mw > 0 && len + (size_t)mw <= limit) {
                memcpy(line + len, more, (size_t)mw);
                len += (size_t)mw;
            }
            break;
        }
    }
    if (len > limit)
        len = limit;
    memcpy(out, line, len);
    out[len] = '\0';
    return out;
}
