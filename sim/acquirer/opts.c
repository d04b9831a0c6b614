/* Transaction options (the flags of `acquirer-sim send` and the key=value words of a
 * scenario line share one parser), their resolution against a terminal into a
 * sim_txn, and the scenario-file parser with line-numbered errors. */
#include "acquirer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

static bool digits(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int copy(char *dst, size_t cap, const char *key, const char *v, size_t min, size_t max,
                bool numeric, char *err, size_t errcap)
{
    size_t n = strlen(v);
    if (n < min || n > max || n >= cap || (numeric && !digits(v, min, max))) {
        if (min == max)
            snprintf(err, errcap, "%s: expected %zu %s", key, min,
                     numeric ? "digits" : "characters");
        else
            snprintf(err, errcap, "%s: expected %zu to %zu %s", key, min, max,
                     numeric ? "digits" : "characters");
        return -1;
    }
    memcpy(dst, v, n + 1);
    return 0;
}

static int num(const char *key, const char *v, uint64_t max, uint64_t *out, char *err,
               size_t errcap)
{
    if (!at_parse_u64(v, max, out)) {
        snprintf(err, errcap, "%s: expected a number up to %llu", key, (unsigned long long)max);
        return -1;
    }
    return 0;
}

int sim_opts_set(struct sim_opts *o, const char *key, const char *value, bool scenario, char *err,
                 size_t errcap)
{
    uint64_t v;
    /* Flags take no value (a scenario may still say flag=yes). */
    static const char *const flags[] = { "no-pin", "bad-mac" };
    for (size_t i = 0; i < 2; i++)
        if (strcmp(key, flags[i]) == 0) {
            bool b = true;
            if (value && !at_parse_bool(value, &b)) {
                snprintf(err, errcap, "%s: expected yes or no", key);
                return -1;
            }
            if (i == 0)
                o->no_pin = b;
            else
                o->bad_mac = b;
            return 0;
        }
    if (!value) {
        snprintf(err, errcap, "%s: needs a value", key);
        return -1;
    }
    if (strcmp(key, "type") == 0) {
        if (sim_type_parse(value, &o->type) != 0) {
            snprintf(err, errcap,
                     "type: unknown (purchase, cash, cashback, refund, balance, aft, oct, "
                     "transfer, auth, reversal, echo)");
            return -1;
        }
        o->has_type = true;
        return 0;
    }
    if (strcmp(key, "terminal") == 0)
        return copy(o->terminal, sizeof o->terminal, key, value, 8, 8, false, err, errcap);
    if (strcmp(key, "pan") == 0)
        return copy(o->pan, sizeof o->pan, key, value, 12, 19, true, err, errcap);
    if (strcmp(key, "pin") == 0) {
        o->has_pin = true;
        return copy(o->pin, sizeof o->pin, key, value, 4, 12, true, err, errcap);
    }
    if (strcmp(key, "amount") == 0) {
        o->has_amount_minor = false;
        return copy(o->amount, sizeof o->amount, key, value, 1, 20, false, err, errcap);
    }
    if (strcmp(key, "amount-minor") == 0) {
        if (num(key, value, 999999999999ull, &v, err, errcap) != 0)
            return -1;
        o->amount_minor = v;
        o->has_amount_minor = true;
        o->amount[0] = '\0';
        return 0;
    }
    if (strcmp(key, "cashback") == 0)
        return copy(o->cashback, sizeof o->cashback, key, value, 1, 20, false, err, errcap);
    if (strcmp(key, "currency") == 0) {
        if (!sim_currency_find(value)) {
            snprintf(err, errcap,
                     "currency: unknown code (MAD/504, XOF/952, XAF/950, MRU/929, ...)");
            return -1;
        }
        return copy(o->currency, sizeof o->currency, key, value, 3, 3, false, err, errcap);
    }
    if (strcmp(key, "expiry") == 0)
        return copy(o->expiry, sizeof o->expiry, key, value, 4, 4, true, err, errcap);
    if (strcmp(key, "stan") == 0) {
        if (num(key, value, 999999, &v, err, errcap) != 0 || v == 0) {
            snprintf(err, errcap, "stan: expected 1..999999");
            return -1;
        }
        o->stan = (uint32_t)v;
        return 0;
    }
    if (strcmp(key, "rrn") == 0)
        return copy(o->rrn, sizeof o->rrn, key, value, 12, 12, false, err, errcap);
    if (strcmp(key, "to-pan") == 0)
        return copy(o->to_pan, sizeof o->to_pan, key, value, 12, 19, true, err, errcap);
    if (strcmp(key, "entry-mode") == 0)
        return copy(o->entry_mode, sizeof o->entry_mode, key, value, 3, 3, true, err, errcap);
    if (strcmp(key, "mti") == 0)
        return copy(o->mti, sizeof o->mti, key, value, 4, 4, true, err, errcap);
    if (strcmp(key, "proc") == 0)
        return copy(o->proc, sizeof o->proc, key, value, 6, 6, true, err, errcap);
    if (strcmp(key, "original-mti") == 0)
        return copy(o->orig_mti, sizeof o->orig_mti, key, value, 4, 4, true, err, errcap);
    if (strcmp(key, "original-stan") == 0) {
        if (num(key, value, 999999, &v, err, errcap) != 0)
            return -1;
        o->orig_stan = (uint32_t)v;
        return 0;
    }
    if (strcmp(key, "original-time") == 0)
        return copy(o->orig_time, sizeof o->orig_time, key, value, 10, 10, true, err, errcap);
    if (strcmp(key, "host") == 0) {
        struct sockaddr_storage ss;
        socklen_t sl;
        const char *why = NULL;
        if (!at_parse_hostport(value, &ss, &sl, &why)) {
            snprintf(err, errcap, "host: %s", why ? why : "expected HOST:PORT");
            return -1;
        }
        return copy(o->host, sizeof o->host, key, value, 3, 63, false, err, errcap);
    }
    if (strcmp(key, "timeout-ms") == 0) {
        if (num(key, value, 600000, &v, err, errcap) != 0 || v == 0) {
            snprintf(err, errcap, "timeout-ms: expected 1..600000");
            return -1;
        }
        o->timeout_ms = (unsigned)v;
        return 0;
    }
    if (scenario) {
        if (strcmp(key, "id") == 0)
            return copy(o->id, sizeof o->id, key, value, 1, 31, false, err, errcap);
        if (strcmp(key, "original") == 0)
            return copy(o->original, sizeof o->original, key, value, 1, 31, false, err, errcap);
        if (strcmp(key, "expect") == 0)
            return copy(o->expect, sizeof o->expect, key, value, 2, 2, false, err, errcap);
        if (strcmp(key, "mac") == 0) {
            if (strcmp(value, "any") != 0 && strcmp(value, "ok") != 0) {
                snprintf(err, errcap, "mac: expected ok or any");
                return -1;
            }
            o->mac_any = strcmp(value, "any") == 0;
            return 0;
        }
    }
    snprintf(err, errcap, "unknown option '%.40s'", key);
    return -1;
}

int sim_opts_resolve(const struct sim_opts *o, const struct sim_terms *set, struct sim_txn *x,
                     struct sim_term **term, char *err, size_t errcap)
{
    memset(x, 0, sizeof *x);
    const char *tid = o->terminal[0] ? o->terminal : "TERM0001";
    struct sim_term *t = sim_terms_find(set, tid);
    if (!t) {
        snprintf(err, errcap, "terminal %s: unknown (built-in TERM0001..TERM0004, or --terminals)",
                 tid);
        return -1;
    }
    x->type = o->has_type ? o->type : SIM_T_PURCHASE;
    snprintf(x->pan, sizeof x->pan, "%s", o->pan[0] ? o->pan : "4890010000000012");
    const struct sim_demo_card *card = sim_demo_card_find(x->pan);

    const struct sim_currency *c = NULL;
    if (o->currency[0])
        c = sim_currency_find(o->currency);
    else if (card)
        c = sim_currency_find(card->currency);
    else
        c = sim_currency_find(t->currency);
    if (!c) {
        snprintf(err, errcap, "currency: unknown code");
        return -1;
    }
    memcpy(x->currency, c->numeric, 4);

    bool needs_amount = x->type != SIM_T_BALANCE && x->type != SIM_T_ECHO;
    if (o->has_amount_minor) {
        x->amount = o->amount_minor;
    } else if (o->amount[0]) {
        if (sim_amount_parse(o->amount, c, &x->amount, err, errcap) != 0)
            return -1;
    } else if (needs_amount) {
        snprintf(err, errcap, "amount missing (amount= or amount-minor=)");
        return -1;
    }
    if (o->cashback[0]) {
        if (sim_amount_parse(o->cashback, c, &x->cashback, err, errcap) != 0)
            return -1;
    }

    if (o->no_pin || x->type == SIM_T_REVERSAL || x->type == SIM_T_ECHO)
        x->pin[0] = '\0';
    else if (o->has_pin)
        snprintf(x->pin, sizeof x->pin, "%s", o->pin);
    else if (card && sim_type_wants_pin(x->type))
        snprintf(x->pin, sizeof x->pin, "%s", card->pin);
    if (o->expiry[0])
        snprintf(x->expiry, sizeof x->expiry, "%s", o->expiry);
    else if (card)
        snprintf(x->expiry, sizeof x->expiry, "%s", card->expiry);

    snprintf(x->mti, sizeof x->mti, "%s", o->mti);
    snprintf(x->proc, sizeof x->proc, "%s", o->proc);
    x->stan = o->stan;
    snprintf(x->rrn, sizeof x->rrn, "%s", o->rrn);
    snprintf(x->to_pan, sizeof x->to_pan, "%s", o->to_pan);
    snprintf(x->entry_mode, sizeof x->entry_mode, "%s", o->entry_mode);
    snprintf(x->orig_mti, sizeof x->orig_mti, "%s", o->orig_mti);
    x->orig_stan = o->orig_stan;
    snprintf(x->orig_time, sizeof x->orig_time, "%s", o->orig_time);
    x->bad_mac = o->bad_mac;
    if (x->type == SIM_T_REVERSAL && (x->orig_stan != 0) != (x->orig_time[0] != '\0')) {
        snprintf(err, errcap, "reversal: original-stan and original-time go together (DE 90)");
        return -1;
    }
    if (x->type == SIM_T_TRANSFER && !x->to_pan[0]) {
        snprintf(err, errcap, "transfer: to-pan (DE 103) missing");
        return -1;
    }
    *term = t;
    return 0;
}

/* ------------------------------------------------------------------ scenarios */

void sim_scn_free(struct sim_scn *s)
{
    free(s->lines);
    s->lines = NULL;
    s->n = s->cap = 0;
}

static int scn_push(struct sim_scn *s, const struct sim_scn_line *l)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        struct sim_scn_line *p = realloc(s->lines, cap * sizeof *p);
        if (!p)
            return -1;
        s->lines = p;
        s->cap = cap;
    }
    s->lines[s->n++] = *l;
    return 0;
}

#define SCN_LINE_MAX 1024
#define SCN_WORDS    64

int sim_scn_parse(const char *text, size_t len, const char *name, struct sim_scn *out, char *err,
                  size_t errcap)
{
    struct sim_opts defaults;
    char why[200];
    memset(&defaults, 0, sizeof defaults);
    memset(out, 0, sizeof *out);
    unsigned lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        lineno++;
        size_t n = end - pos;
        char line[SCN_LINE_MAX];
        if (n >= sizeof line) {
            snprintf(err, errcap, "%s:%u: line longer than %d characters", name, lineno,
                     SCN_LINE_MAX - 1);
            goto fail;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos = end + 1;
        if (memchr(line, '\0', n)) {
            snprintf(err, errcap, "%s:%u: NUL byte", name, lineno);
            goto fail;
        }

        /* Split into words; '#' at a word start begins a comment. */
        char *words[SCN_WORDS];
        size_t nw = 0;
        char *p = line;
        for (;;) {
            while (*p == ' ' || *p == '\t' || *p == '\r')
                p++;
            if (*p == '\0' || *p == '#')
                break;
            if (nw == SCN_WORDS) {
                snprintf(err, errcap, "%s:%u: more than %d words", name, lineno, SCN_WORDS);
                goto fail;
            }
            words[nw++] = p;
            while (*p && *p != ' ' && *p != '\t' && *p != '\r')
                p++;
            if (*p)
                *p++ = '\0';
        }
        if (nw == 0)
            continue;

        bool is_defaults = strcmp(words[0], "defaults") == 0;
        struct sim_scn_line l;
        memset(&l, 0, sizeof l);
        l.lineno = lineno;
        l.original_index = -1;
        l.o = defaults;
        if (is_defaults) {
            /* scenario-only keys make no sense as defaults */
            l.o.id[0] = l.o.original[0] = l.o.expect[0] = '\0';
        }
        const char *seen[SCN_WORDS];
        size_t nseen = 0;
        for (size_t i = is_defaults ? 1 : 0; i < nw; i++) {
            char *key = words[i], *val = strchr(key, '=');
            if (val)
                *val++ = '\0';
            for (size_t j = 0; j < nseen; j++)
                if (strcmp(seen[j], key) == 0) {
                    snprintf(err, errcap, "%s:%u: '%.40s' given twice", name, lineno, key);
                    goto fail;
                }
            seen[nseen++] = key;
            if (is_defaults && (strcmp(key, "id") == 0 || strcmp(key, "original") == 0 ||
                                strcmp(key, "expect") == 0)) {
                snprintf(err, errcap, "%s:%u: '%s' cannot be a default", name, lineno, key);
                goto fail;
            }
            if (sim_opts_set(&l.o, key, val, true, why, sizeof why) != 0) {
                snprintf(err, errcap, "%s:%u: %s", name, lineno, why);
                goto fail;
            }
        }
        if (is_defaults) {
            defaults = l.o;
            continue;
        }
        if (!l.o.has_type) {
            snprintf(err, errcap, "%s:%u: type= missing", name, lineno);
            goto fail;
        }
        if (!l.o.expect[0]) {
            snprintf(err, errcap, "%s:%u: expect= missing (the response code this line must get)",
                     name, lineno);
            goto fail;
        }
        if (l.o.id[0])
            for (size_t j = 0; j < out->n; j++)
                if (strcmp(out->lines[j].o.id, l.o.id) == 0) {
                    snprintf(err, errcap, "%s:%u: id '%s' already used on line %u", name, lineno,
                             l.o.id, out->lines[j].lineno);
                    goto fail;
                }
        if (l.o.original[0]) {
            if (l.o.type != SIM_T_REVERSAL) {
                snprintf(err, errcap, "%s:%u: original= is only for type=reversal", name, lineno);
                goto fail;
            }
            for (size_t j = 0; j < out->n; j++)
                if (strcmp(out->lines[j].o.id, l.o.original) == 0)
                    l.original_index = (int)j;
            if (l.original_index < 0) {
                snprintf(err, errcap, "%s:%u: original '%s' is not the id of an earlier line", name,
                         lineno, l.o.original);
                goto fail;
            }
            if (l.o.orig_stan || l.o.orig_time[0]) {
                snprintf(err, errcap,
                         "%s:%u: original= and original-stan/original-time exclude each other",
                         name, lineno);
                goto fail;
            }
        }
        if (scn_push(out, &l) != 0) {
            snprintf(err, errcap, "%s:%u: out of memory", name, lineno);
            goto fail;
        }
    }
    if (out->n == 0) {
        snprintf(err, errcap, "%s: no transaction lines", name);
        goto fail;
    }
    return 0;
fail:
    sim_scn_free(out);
    return -1;
}
