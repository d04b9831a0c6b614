/* Writes the reconciliation report (report.h). The text form puts the verdict last so that a
 * terminal shows it; every mismatch is one key=value line, easy to grep and to diff. */
#include "report.h"

#include <jansson.h>
#include <string.h>

static const char *dash(const char *s)
{
    return s && *s ? s : "-";
}

/* The money columns of a total's line, the first width wide, to the end of the line: switch
 * net, issuer net, pending, difference, and with a record the terminals and the issuer for
 * the same requests. */
static void money_columns(FILE *out, int width, bool record, const struct rc_money *m)
{
    fprintf(out, " %*lld %12lld %12lld %12lld", width, (long long)m->sw, (long long)m->iss,
            (long long)m->pending, (long long)rc_money_difference(m));
    if (record && m->in_record)
        fprintf(out, " %12lld %12lld", (long long)m->term, (long long)m->term_iss);
    fputc('\n', out);
}

static void detail(char *buf, size_t cap, const struct rc_ctx *c, enum rc_check k)
{
    const struct rc_stats *s = &c->st;
    buf[0] = '\0';
    switch (k) {
    case RC_CHK_JOURNAL_ISSUER:
        snprintf(buf, cap,
                 "%lu journal rows, %lu reached an issuer, %lu approvals; reversals %lu acked, "
                 "%lu pending, %lu failed; %lu lost; %lu stand-in approvals, advices %lu acked, "
                 "%lu pending, %lu failed; %lu forwarded requests they replaced",
                 s->journal_rows, s->reached_issuer, s->approvals, s->rev_acked, s->rev_pending,
                 s->rev_failed, s->lost, s->stand_ins, s->advice_acked, s->advice_pending,
                 s->advice_failed, s->replaced_reversals);
        break;
    case RC_CHK_ISSUER_UNKNOWN:
        snprintf(buf, cap,
                 "%lu issuer request keys; unknown to the switch: %lu moving money, %lu not; "
                 "%lu named by switch rows outside the window",
                 s->issuer_keys, s->issuer_unknown_money, s->issuer_unknown_nomoney,
                 s->issuer_named_elsewhere);
        break;
    case RC_CHK_INFLIGHT:
        snprintf(buf, cap, "%lu rows left in switch.inflight", s->inflight);
        break;
    case RC_CHK_JOURNAL:
        snprintf(buf, cap,
                 "%lu approvals, %lu lost, %lu terminal reversals, %lu answered by the switch "
                 "itself, %lu reversals and %lu advices without a journal row",
                 s->approvals, s->lost, s->terminal_reversals, s->refused_by_switch,
                 s->orphan_reversals, s->orphan_advices);
        break;
    case RC_CHK_TRANSFERS:
        snprintf(buf, cap,
                 "%lu transfers: %lu completed, %lu failed, %lu reversed, %lu unfinished; %lu leg "
                 "reversals pending; %lu senders' journal rows",
                 s->xfers, s->xfer_completed, s->xfer_failed, s->xfer_reversed, s->xfer_unfinished,
                 s->xfer_leg_rev_pending, s->transfer_senders);
        break;
    case RC_CHK_RECORD:
        if (c->record)
            snprintf(buf, cap,
                     "%lu lines: approvals held %lu, approved then reversed %lu, declined %lu, "
                     "unanswered and reversed %lu, gave up %lu, nothing to reverse %lu; load-mix "
                     "reversals acked %lu, refused %lu, abandoned %lu; %lu not journaled",
                     s->rec_lines, s->rec_approved_held, s->rec_approved_reversed, s->rec_declined,
                     s->rec_unanswered_reversed, s->rec_unanswered_gave_up,
                     s->rec_unanswered_nothing, s->rec_reversal_acked, s->rec_reversal_refused,
                     s->rec_reversal_abandoned, s->rec_not_journaled);
        else
            snprintf(buf, cap, "no --record");
        break;
    case RC_CHK_TOTALS:
        snprintf(buf, cap, "%zu currencies, %zu wallets", c->nccy, c->nwt);
        break;
    case RC_CHK_WALLET_LEDGER:
        snprintf(buf, cap, "balance = ledger and held = active holds, for the wallets touched");
        break;
    default:
        break;
    }
}

static void mismatch_line(FILE *out, const struct rc_mismatch *m)
{
    fprintf(out,
            "MISMATCH check=%s problem=\"%s\" acquirer=%s terminal=%s stan=%s de7=%s mti=%s"
            " issuer_stan=%s issuer_de7=%s pan=%s",
            rc_check_name(m->check), m->problem, dash(m->acquirer), dash(m->terminal),
            dash(m->stan), dash(m->de7), dash(m->mti), dash(m->issuer_stan), dash(m->issuer_de7),
            dash(m->pan));
    if (m->amount >= 0)
        fprintf(out, " amount=%lld", (long long)m->amount);
    else
        fprintf(out, " amount=-");
    if (m->currency >= 0)
        fprintf(out, " currency=%03d", m->currency);
    else
        fprintf(out, " currency=-");
    fprintf(out, " journal=%s/%s reversal=%s", dash(m->outcome), dash(m->rc), rc_rev_name(m->rev));
    if (m->has_net)
        fprintf(out, " issuer_net=%lld", (long long)m->issuer_net);
    else
        fprintf(out, " issuer_net=-");
    if (m->has_expected)
        fprintf(out, " expected=%lld", (long long)m->expected);
    if (m->wallet_id >= 0)
        fprintf(out, " wallet=%lld", m->wallet_id);
    if (m->record_line)
        fprintf(out, " record_line=%u", m->record_line);
    if (m->transfer_id >= 0)
        fprintf(out, " transfer=%lld leg=%s", m->transfer_id, dash(m->leg));
    fputc('\n', out);
}

void rc_report_text(FILE *out, const struct rc_ctx *c, const struct rc_report_info *info)
{
    char buf[512];
    const struct rc_window *w = info->w;
    fprintf(out, "atlas-reconcile\n");
    fprintf(out, "  window     journal created_at in [%s, %s)\n", w->from, w->to);
    fprintf(out,
            "  issuer     bookings in [%s, %s) (slack %u s), and every booking under a key "
            "the window's requests name\n",
            w->lo, w->hi, w->slack_s);
    if (w->issuer[0])
        fprintf(out, "  --issuer   %s: only the switch's rows of that issuer, against its ledger\n",
                w->issuer);
    if (info->record_path)
        fprintf(out, "  record     %s: %zu lines%s, terminals journaled under acquirer %s\n",
                info->record_path, c->record ? c->record->n : 0,
                c->record && c->record->torn_tail ? " (a torn last line ignored)" : "",
                c->acquirer);
    if (info->allow_pending)
        fprintf(out, "  --allow-pending: reversals not yet acknowledged are not mismatches\n");

    fprintf(out, "\nchecks                        checked  mismatches\n");
    for (int k = 0; k < RC_CHK_max; k++) {
        detail(buf, sizeof buf, c, (enum rc_check)k);
        fprintf(out, "  %d %-24s %9lu  %10lu  %s\n", k + 1, rc_check_name((enum rc_check)k),
                c->st.checked[k], c->st.mismatches[k], buf);
    }

    fprintf(out, "\nper currency (minor units; difference = issuer - switch - pending)\n");
    fprintf(out, "  currency     switch net   issuer net      pending   difference");
    if (c->record)
        fprintf(out, "    terminals  issuer(rec)");
    fputc('\n', out);
    for (size_t i = 0; i < c->nccy; i++) {
        const struct rc_ccy *t = &c->ccy[i];
        int mu;
        const char *a = rc_ccy_alpha(t->currency, &mu);
        char code[16];
        if (t->currency < 0)
            snprintf(code, sizeof code, "-");
        else
            snprintf(code, sizeof code, "%03d %s/%d", t->currency, a, mu);
        fprintf(out, "  %-9s", code);
        money_columns(out, 13, c->record, &t->m);
    }
    if (c->nccy == 0)
        fprintf(out, "  (nothing in the window)\n");

    size_t nw = 0;
    for (size_t i = 0; i < c->nwt; i++) {
        const struct rc_wallet_total *t = &c->wt[i];
        if (rc_money_difference(&t->m) == 0 && !rc_money_record_differs(&t->m))
            continue;
        if (nw++ == 0) {
            fprintf(out, "\nwallets with a difference\n");
            fprintf(out, "  wallet    pan                  currency  switch net   issuer net"
                         "      pending   difference");
            if (c->record)
                fprintf(out, "    terminals  issuer(rec)");
            fputc('\n', out);
        }
        const struct rc_wallet *wl = &c->wallets[t->wallet];
        char id[24];
        if (wl->id > 0)
            snprintf(id, sizeof id, "%lld", wl->id);
        else
            snprintf(id, sizeof id, "?");
        fprintf(out, "  %-9s %-20s %03d", id, dash(wl->pan_masked),
                wl->currency < 0 ? 0 : wl->currency);
        money_columns(out, 12, c->record, &t->m);
    }
    if (nw == 0)
        fprintf(out, "\nwallets with a difference: none\n");

    if (c->nmm) {
        fprintf(out, "\n");
        for (size_t i = 0; i < c->nmm; i++)
            mismatch_line(out, &c->mm[i]);
    }
    if (c->nmm == 0)
        fprintf(out, "\nRECONCILED: no mismatch\n");
    else
        fprintf(out, "\nNOT RECONCILED: %zu mismatch%s\n", c->nmm, c->nmm == 1 ? "" : "es");
}

/* ------------------------------------------------------------------ JSON */

static int set(json_t *o, const char *k, json_t *v)
{
    return v ? json_object_set_new(o, k, v) : -1;
}

static json_t *str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

/* A new object appended to the array arr (*rc gets -1 when appending fails); NULL when it
 * could not be made, a null standing in its place. */
static json_t *new_element(json_t *arr, int *rc)
{
    json_t *x = json_object();
    *rc |= json_array_append_new(arr, x ? x : json_null());
    return x;
}

/* The money of a total as the fields of x. 0 or -1. */
static int set_money(json_t *x, const struct rc_money *m)
{
    int rc = set(x, "switch_net", json_integer(m->sw));
    rc |= set(x, "issuer_net", json_integer(m->iss));
    rc |= set(x, "pending", json_integer(m->pending));
    rc |= set(x, "difference", json_integer(rc_money_difference(m)));
    if (m->in_record) {
        rc |= set(x, "terminals", json_integer(m->term));
        rc |= set(x, "issuer_for_record", json_integer(m->term_iss));
    }
    return rc;
}

int rc_report_json(FILE *out, const struct rc_ctx *c, const struct rc_report_info *info)
{
    const struct rc_window *w = info->w;
    const struct rc_stats *s = &c->st;
    json_t *o = json_object(), *win = json_object(), *checks = json_array(), *ccys = json_array(),
           *wallets = json_array(), *mms = json_array(), *stats = json_object();
    int rc = 0;
    if (!o || !win || !checks || !ccys || !wallets || !mms || !stats) {
        json_decref(o);
        json_decref(win);
        json_decref(checks);
        json_decref(ccys);
        json_decref(wallets);
        json_decref(mms);
        json_decref(stats);
        return -1;
    }
    rc |= set(o, "reconciled", json_boolean(c->nmm == 0));
    rc |= set(o, "mismatch_count", json_integer((json_int_t)c->nmm));
    rc |= set(win, "from", json_string(w->from));
    rc |= set(win, "to", json_string(w->to));
    rc |= set(win, "issuer_from", json_string(w->lo));
    rc |= set(win, "issuer_to", json_string(w->hi));
    rc |= set(win, "slack_s", json_integer(w->slack_s));
    rc |= set(win, "issuer", w->issuer[0] ? json_string(w->issuer) : json_null());
    rc |= set(o, "window", win);
    rc |= set(o, "allow_pending", json_boolean(info->allow_pending));
    if (info->record_path) {
        json_t *r = json_object();
        rc |= set(o, "record", r);
        if (r) {
            rc |= set(r, "file", json_string(info->record_path));
            rc |= set(r, "lines", json_integer((json_int_t)(c->record ? c->record->n : 0)));
            rc |= set(r, "torn_tail", json_boolean(c->record && c->record->torn_tail));
            rc |= set(r, "acquirer", json_string(c->acquirer));
        }
    } else {
        rc |= set(o, "record", json_null());
    }
    for (int k = 0; k < RC_CHK_max; k++) {
        json_t *x = new_element(checks, &rc);
        if (!x)
            continue;
        rc |= set(x, "check", json_integer(k + 1));
        rc |= set(x, "name", json_string(rc_check_name((enum rc_check)k)));
        rc |= set(x, "checked", json_integer((json_int_t)s->checked[k]));
        rc |= set(x, "mismatches", json_integer((json_int_t)s->mismatches[k]));
    }
    rc |= set(o, "checks", checks);
#define STAT(f) rc |= set(stats, #f, json_integer((json_int_t)s->f))
    STAT(journal_rows);
    STAT(journal_context);
    STAT(reached_issuer);
    STAT(approvals);
    STAT(reversal_rows);
    STAT(rev_pending);
    STAT(rev_acked);
    STAT(rev_failed);
    STAT(lost);
    STAT(refused_by_switch);
    STAT(terminal_reversals);
    STAT(orphan_reversals);
    STAT(stand_ins);
    STAT(advice_pending);
    STAT(advice_acked);
    STAT(advice_failed);
    STAT(orphan_advices);
    STAT(replaced_reversals);
    STAT(inflight);
    STAT(transfer_senders);
    STAT(xfers);
    STAT(xfer_completed);
    STAT(xfer_failed);
    STAT(xfer_reversed);
    STAT(xfer_unfinished);
    STAT(xfer_leg_rev_pending);
    STAT(issuer_keys);
    STAT(issuer_unknown_money);
    STAT(issuer_unknown_nomoney);
    STAT(issuer_named_elsewhere);
    STAT(rec_lines);
    STAT(rec_approved_held);
    STAT(rec_approved_reversed);
    STAT(rec_declined);
    STAT(rec_unanswered_reversed);
    STAT(rec_unanswered_gave_up);
    STAT(rec_unanswered_nothing);
    STAT(rec_reversal_acked);
    STAT(rec_reversal_refused);
    STAT(rec_reversal_abandoned);
    STAT(rec_not_journaled);
#undef STAT
    rc |= set(o, "stats", stats);
    for (size_t i = 0; i < c->nccy; i++) {
        const struct rc_ccy *t = &c->ccy[i];
        json_t *x = new_element(ccys, &rc);
        if (!x)
            continue;
        int mu;
        const char *a = rc_ccy_alpha(t->currency, &mu);
        rc |= set(x, "currency", json_integer(t->currency));
        rc |= set(x, "code", json_string(a));
        rc |= set(x, "minor_units", mu >= 0 ? json_integer(mu) : json_null());
        rc |= set_money(x, &t->m);
    }
    rc |= set(o, "currencies", ccys);
    for (size_t i = 0; i < c->nwt; i++) {
        const struct rc_wallet_total *t = &c->wt[i];
        if (rc_money_difference(&t->m) == 0 && !rc_money_record_differs(&t->m))
            continue;
        const struct rc_wallet *wl = &c->wallets[t->wallet];
        json_t *x = new_element(wallets, &rc);
        if (!x)
            continue;
        rc |= set(x, "wallet_id", wl->id > 0 ? json_integer(wl->id) : json_null());
        rc |= set(x, "pan", str_or_null(wl->pan_masked));
        rc |= set(x, "currency", json_integer(wl->currency));
        rc |= set_money(x, &t->m);
    }
    rc |= set(o, "wallets_with_difference", wallets);
    for (size_t i = 0; i < c->nmm; i++) {
        const struct rc_mismatch *m = &c->mm[i];
        json_t *x = new_element(mms, &rc);
        if (!x)
            continue;
        rc |= set(x, "check", json_string(rc_check_name(m->check)));
        rc |= set(x, "problem", json_string(m->problem));
        rc |= set(x, "acquirer", str_or_null(m->acquirer));
        rc |= set(x, "terminal", str_or_null(m->terminal));
        rc |= set(x, "stan", str_or_null(m->stan));
        rc |= set(x, "de7", str_or_null(m->de7));
        rc |= set(x, "mti", str_or_null(m->mti));
        rc |= set(x, "issuer_stan", str_or_null(m->issuer_stan));
        rc |= set(x, "issuer_de7", str_or_null(m->issuer_de7));
        rc |= set(x, "pan", str_or_null(m->pan));
        rc |= set(x, "amount", m->amount >= 0 ? json_integer(m->amount) : json_null());
        rc |= set(x, "currency", m->currency >= 0 ? json_integer(m->currency) : json_null());
        rc |= set(x, "outcome", str_or_null(m->outcome));
        rc |= set(x, "rc", str_or_null(m->rc));
        rc |= set(x, "reversal", json_string(rc_rev_name(m->rev)));
        rc |= set(x, "issuer_net", m->has_net ? json_integer(m->issuer_net) : json_null());
        rc |= set(x, "expected", m->has_expected ? json_integer(m->expected) : json_null());
        rc |= set(x, "wallet_id", m->wallet_id >= 0 ? json_integer(m->wallet_id) : json_null());
        rc |= set(x, "record_line", m->record_line ? json_integer(m->record_line) : json_null());
        rc |=
            set(x, "transfer_id", m->transfer_id >= 0 ? json_integer(m->transfer_id) : json_null());
        rc |= set(x, "leg", str_or_null(m->leg));
    }
    rc |= set(o, "mismatches", mms);
    if (rc == 0) {
        rc = json_dumpf(o, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', out);
    }
    json_decref(o);
    return rc == 0 ? 0 : -1;
}
