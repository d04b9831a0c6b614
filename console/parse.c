/* Log line parser: one switchd JSON line into a fixed-size con_event.
 * libjansson does the JSON (the project's rule: no home-made JSON parsing);
 * this file maps the flat object onto known fields and sanitises every
 * string for display. */
#include "con.h"

#include "clock.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static void set_err(char *err, size_t cap, const char *msg)
{
    if (err && cap)
        snprintf(err, cap, "%s", msg);
}

/* Copies src into dst (cap bytes), replacing anything but printable ASCII by
 * '?' so that no escape sequence from the log reaches the terminal. */
static void copy_clean(char *dst, size_t cap, const char *src, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[k] = '\0';
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int con_parse_time(const char *s, int64_t *us)
{
    int y, mo, d, h = 0, mi = 0, sec = 0;
    int64_t frac = 0, days;
    size_t n = strlen(s);
    if (n < 10 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d))
        return -1;
    const char *p = s + 10;
    if (*p == 'T' || *p == ' ') {
        if (strlen(p) < 6 || digits(p + 1, 2, &h) || p[3] != ':' || digits(p + 4, 2, &mi))
            return -1;
        p += 6;
        if (*p == ':') {
            if (digits(p + 1, 2, &sec))
                return -1;
            p += 3;
            if (*p == '.') {
                int nd = 0;
                for (p++; *p >= '0' && *p <= '9'; p++, nd++)
                    if (nd < 6)
                        frac = frac * 10 + (*p - '0');
                if (nd == 0 || nd > 9)
                    return -1;
                for (; nd < 6; nd++)
                    frac *= 10;
            }
        }
        if (*p == 'Z')
            p++;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    days = at_days_from_civil(y, (unsigned)mo, (unsigned)d);
    *us = ((days * 86400 + h * 3600 + mi * 60 + sec) * 1000000) + frac;
    return 0;
}

static enum con_outcome outcome_of(const char *s)
{
    static const char *const names[CON_OUT_outcome_max] = { "",         "approved", "declined",
                                                            "rejected", "timeout",  "unavailable",
                                                            "error" };
    for (int i = 1; i < CON_OUT_outcome_max; i++)
        if (strcmp(s, names[i]) == 0)
            return (enum con_outcome)i;
    return CON_OUT_NONE;
}

/* Where each known field lands. One table, in the order switchd writes a
 * txn line: the lookup starts after the previous match, so a line in that
 * order costs one comparison per key. */
enum field_kind { F_STR, F_U64, F_OUTCOME, F_QUIET, F_STAND_IN };
struct field {
    const char *key;
    enum field_kind kind;
    size_t off, cap;
};
#define FS(k, m)                                                                                   \
    {                                                                                              \
        k, F_STR, offsetof(struct con_event, m), sizeof(((struct con_event *)0)->m)                \
    }
#define FU(k, m)                                                                                   \
    {                                                                                              \
        k, F_U64, offsetof(struct con_event, m), sizeof(uint64_t)                                  \
    }
static const struct field fields[] = {
    FS("prog", prog),
    FS("listener", listener),
    FS("acquirer", acquirer),
    FS("terminal", terminal),
    FS("mti", mti),
    FS("proc", proc),
    FS("amount", amount),
    FS("currency", currency),
    FS("pan", pan),
    FS("stan", stan),
    FS("rrn", rrn),
    FS("issuer", issuer),
    { "issuer_stan", F_QUIET, 0, 0 }, /* the journal has it; no column */
    FS("rc", rc),
    FS("auth_code", auth_code),
    { "outcome", F_OUTCOME, 0, 0 },
    FU("lat_us", lat_us),
    FU("lat_mac_us", lat_mac_us),
    FU("lat_pin_us", lat_pin_us),
    FU("lat_issuer_us", lat_issuer_us),
    FU("lat_journal_us", lat_journal_us),
    FU("lat_write_ahead_us", lat_write_ahead_us),
    { "stand_in", F_STAND_IN, 0, 0 },
    FS("from", from),
    FS("to", to),
    FS("reason", reason),
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

/* Index of key in fields, or -1; *hint is where the search starts and is
 * moved past a match. */
static int find_field(const char *key, size_t *hint)
{
    for (size_t k = 0; k < N_FIELDS; k++) {
        size_t i = (*hint + k) % N_FIELDS;
        if (strcmp(key, fields[i].key) == 0) {
            *hint = i + 1;
            return (int)i;
        }
    }
    return -1;
}

/* Stores v into ev if it has the field's type. True when stored. */
static bool store_field(struct con_event *ev, const struct field *f, json_t *v)
{
    switch (f->kind) {
    case F_STR:
        if (!json_is_string(v))
            return false;
        copy_clean((char *)ev + f->off, f->cap, json_string_value(v), json_string_length(v));
        return true;
    case F_U64: {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return false;
        uint64_t u = (uint64_t)json_integer_value(v);
        memcpy((char *)ev + f->off, &u, sizeof u);
        if (f->off == offsetof(struct con_event, lat_us))
            ev->has_lat = true;
        return true;
    }
    case F_OUTCOME:
        if (!json_is_string(v))
            return false;
        ev->outcome = outcome_of(json_string_value(v));
        return true;
    case F_QUIET:
        return ev->kind == CON_EV_TXN;
    case F_STAND_IN:
        if (ev->kind != CON_EV_TXN || !(json_is_true(v) || json_is_false(v)))
            return false;
        ev->stand_in = json_is_true(v);
        return true;
    }
    return false;
}

/* Appends " key=value" to ev->extra while it fits (a value that does not fit
 * ends the list with "…" written as "..."). */
static void add_extra(struct con_event *ev, const char *key, json_t *v)
{
    char val[128];
    size_t used = strlen(ev->extra);
    if (json_is_string(v))
        copy_clean(val, sizeof val, json_string_value(v), json_string_length(v));
    else if (json_is_integer(v))
        snprintf(val, sizeof val, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(val, sizeof val, "%g", json_real_value(v));
    else if (json_is_true(v) || json_is_false(v))
        snprintf(val, sizeof val, "%s", json_is_true(v) ? "true" : "false");
    else if (json_is_null(v))
        snprintf(val, sizeof val, "null");
    else
        snprintf(val, sizeof val, "{..}");
    char k[48];
    copy_clean(k, sizeof k, key, strlen(key));
    int w = snprintf(ev->extra + used, sizeof ev->extra - used, "%s%s=%s", used ? " " : "", k, val);
    if (w < 0 || (size_t)w >= sizeof ev->extra - used) {
        size_t n = sizeof ev->extra;
        memcpy(ev->extra + n - 4, "...", 4);
    }
}

int con_parse_line(const char *line, size_t len, struct con_event *ev, char *err, size_t errcap)
{
    json_error_t jerr;
    memset(ev, 0, sizeof *ev);
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len == 0) {
        set_err(err, errcap, "empty line");
        return -1;
    }
    if (len > CON_LINE_MAX) {
        set_err(err, errcap, "line too long");
        return -1;
    }
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) {
        /* jerr.text quotes the offending token, which could be card data:
         * say only where the JSON broke. */
        char m[96];
        if (strstr(jerr.text, "premature end of input"))
            snprintf(m, sizeof m, "truncated line (JSON ends early, %zu bytes)", len);
        else
            snprintf(m, sizeof m, "not valid JSON (error at byte %d of %zu)", jerr.position, len);
        set_err(err, errcap, m);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(o)) {
        set_err(err, errcap, "not a JSON object");
        goto out;
    }
    json_t *ts = json_object_get(o, "ts"), *event = json_object_get(o, "event");
    if (!json_is_string(ts) || con_parse_time(json_string_value(ts), &ev->ts_us) != 0) {
        set_err(err, errcap, "missing or invalid \"ts\"");
        goto out;
    }
    if (!json_is_string(event) || json_string_length(event) == 0) {
        set_err(err, errcap, "missing \"event\"");
        goto out;
    }
    copy_clean(ev->ts, sizeof ev->ts, json_string_value(ts), json_string_length(ts));
    copy_clean(ev->event, sizeof ev->event, json_string_value(event), json_string_length(event));
    ev->level = CON_LVL_INFO;
    json_t *lvl = json_object_get(o, "level");
    if (json_is_string(lvl)) {
        static const char *const names[] = { "debug", "info", "warn", "error" };
        for (int i = 0; i < CON_LVL_level_max; i++)
            if (strcmp(json_string_value(lvl), names[i]) == 0)
                ev->level = (enum con_level)i;
    }
    if (strcmp(ev->event, "txn") == 0)
        ev->kind = CON_EV_TXN;
    else if (strcmp(ev->event, "txn_refused") == 0)
        ev->kind = CON_EV_TXN_REFUSED;
    else if (strcmp(ev->event, "link_state") == 0)
        ev->kind = CON_EV_LINK_STATE;

    const char *key;
    json_t *v;
    size_t hint = 0;
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "ts") == 0 || strcmp(key, "event") == 0 || strcmp(key, "level") == 0)
            continue;
        int i = find_field(key, &hint);
        bool known = i >= 0 && store_field(ev, &fields[i], v);
        /* Known fields have their own columns on txn and link_state lines;
         * on every other event they are context worth showing. */
        bool shown_apart =
            strcmp(key, "prog") == 0 || (ev->kind == CON_EV_TXN_REFUSED && strcmp(key, "rc") == 0);
        if ((!known || ev->kind == CON_EV_OTHER || ev->kind == CON_EV_TXN_REFUSED) && !shown_apart)
            add_extra(ev, key, v);
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}
