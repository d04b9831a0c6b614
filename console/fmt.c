/* Display side of the console: response-code and processing-code tables, the
 * currencies of common/currency.h, amount/latency formatting, filters and the one-line rendering of
 * each event. Pure functions over a parsed con_event. */
#include "con.h"
#include "currency.h"
#include "iso8583.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *con_rc_text(const char *rc)
{
    const char *t = strlen(rc) == 2 ? iso_rc_text(rc) : NULL;
    return t ? t : "?";
}

const char *con_proc_type(const char *proc)
{
    static const struct {
        const char *p, *type;
    } t[] = {
        { "00", "purchase" }, { "01", "cash-out" }, { "09", "cashback" },
        { "20", "refund" },   { "30", "balance" },  { "31", "balance" },
        { "10", "aft" },      { "26", "oct" },      { "40", "transfer" },
    };
    if (!proc[0])
        return "-";
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strncmp(proc, t[i].p, 2) == 0)
            return t[i].type;
    return "?";
}

const char *con_currency_alpha(const char *numeric, int *exponent)
{
    const struct at_currency *c = at_currency_find(numeric);
    *exponent = c ? c->exponent : 2;
    return c ? c->alpha : numeric;
}

char *con_format_amount(const char *amount, const char *currency, char *out, size_t cap)
{
    int exp;
    const char *alpha = con_currency_alpha(currency, &exp);
    size_t n = strlen(amount);
    if (n == 0) {
        snprintf(out, cap, "-");
        return out;
    }
    if (n > 18 || strspn(amount, "0123456789") != n) {
        snprintf(out, cap, "?%s %s", amount, alpha); /* shown as logged, flagged */
        return out;
    }
    char num[32];
    at_format_minor(strtoull(amount, NULL, 10), (unsigned)exp, num, sizeof num);
    snprintf(out, cap, "%s %s", num, alpha);
    return out;
}

char *con_format_latency(uint64_t us, char *out, size_t cap)
{
    if (us < 1000)
        snprintf(out, cap, "%lluus", (unsigned long long)us);
    else if (us < 10000)
        snprintf(out, cap, "%.1fms", (double)us / 1000.0);
    else if (us < 1000000)
        snprintf(out, cap, "%llums", (unsigned long long)((us + 500) / 1000));
    else
        snprintf(out, cap, "%.2fs", (double)us / 1e6);
    return out;
}

int con_parse_latency(const char *s, uint64_t *us)
{
    char *end;
    if (!s[0] || !((s[0] >= '0' && s[0] <= '9') || s[0] == '.'))
        return -1;
    double v = strtod(s, &end);
    double mul;
    if (strcmp(end, "") == 0 || strcmp(end, "ms") == 0)
        mul = 1000.0;
    else if (strcmp(end, "us") == 0)
        mul = 1.0;
    else if (strcmp(end, "s") == 0)
        mul = 1e6;
    else
        return -1;
    if (!(v >= 0) || v * mul > 1e15)
        return -1;
    *us = (uint64_t)(v * mul + 0.5);
    return 0;
}

bool con_mti_is_request(const char *mti)
{
    return strcmp(mti, "0100") == 0 || strcmp(mti, "0101") == 0 || strcmp(mti, "0200") == 0 ||
           strcmp(mti, "0201") == 0;
}

bool con_filter_match(const struct con_filter *f, const struct con_event *ev)
{
    if (f->txn_only && ev->kind != CON_EV_TXN && ev->kind != CON_EV_TXN_REFUSED)
        return false;
    if (f->since_us && ev->ts_us < f->since_us)
        return false;
    if (f->rc[0] && strcmp(f->rc, ev->rc) != 0)
        return false;
    if (f->terminal[0] && strcmp(f->terminal, ev->terminal) != 0)
        return false;
    if (f->issuer[0] && strcmp(f->issuer, ev->issuer) != 0)
        return false;
    if (f->mti[0] && strcmp(f->mti, ev->mti) != 0)
        return false;
    if (f->pan_last4[0]) {
        size_t n = strlen(ev->pan);
        if (n < 4 || strcmp(ev->pan + n - 4, f->pan_last4) != 0)
            return false;
    }
    if (f->min_lat_us && (!ev->has_lat || ev->lat_us < f->min_lat_us))
        return false;
    return true;
}

/* "15:44:41.956" out of the logged timestamp. */
static const char *clock_part(const struct con_event *ev, char *out, size_t cap)
{
    const char *p = strlen(ev->ts) > 11 && ev->ts[10] == 'T' ? ev->ts + 11 : ev->ts;
    size_t n = strcspn(p, "Z");
    snprintf(out, cap, "%.*s", (int)(n > 12 ? 12 : n), p);
    return out;
}

char *con_format_event(const struct con_event *ev, char *out, size_t cap)
{
    char t[16], amt[40], lat[16], meaning[24];
    clock_part(ev, t, sizeof t);
    switch (ev->kind) {
    case CON_EV_TXN:
        con_format_amount(ev->amount, ev->currency, amt, sizeof amt);
        if (ev->has_lat)
            con_format_latency(ev->lat_us, lat, sizeof lat);
        else
            snprintf(lat, sizeof lat, "-");
        snprintf(meaning, sizeof meaning, "%s", ev->rc[0] ? con_rc_text(ev->rc) : "no rc");
        /* A stand-in decision (STIP) is marked before its MTI (and coloured apart). */
        snprintf(out, cap, "%-12s %s%-4s %-8s %-8s %-16s %16s %-2s %-20s %7s%s%s", t,
                 ev->stand_in ? "STIP " : "", ev->mti[0] ? ev->mti : "-",
                 strncmp(ev->mti, "08", 2) == 0 ? "network" : con_proc_type(ev->proc),
                 ev->terminal[0] ? ev->terminal : "-", ev->pan[0] ? ev->pan : "-", amt,
                 ev->rc[0] ? ev->rc : "--", meaning, lat, ev->extra[0] ? "  " : "", ev->extra);
        break;
    case CON_EV_LINK_STATE:
        snprintf(out, cap, "%-12s LINK %s %s -> %s%s%s%s", t, ev->issuer[0] ? ev->issuer : "?",
                 ev->from[0] ? ev->from : "?", ev->to[0] ? ev->to : "?", ev->reason[0] ? " (" : "",
                 ev->reason, ev->reason[0] ? ")" : "");
        break;
    case CON_EV_TXN_REFUSED:
        snprintf(out, cap, "%-12s REFUSED rc %s %s%s%s", t, ev->rc[0] ? ev->rc : "--",
                 ev->rc[0] ? con_rc_text(ev->rc) : "", ev->extra[0] ? "  " : "", ev->extra);
        break;
    default: {
        static const char *const lv[] = { "debug", "info", "WARN", "ERROR" };
        snprintf(out, cap, "%-12s %-5s %s%s%s", t, lv[ev->level], ev->event,
                 ev->extra[0] ? "  " : "", ev->extra);
        break;
    }
    }
    return out;
}
