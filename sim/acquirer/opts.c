/* Transaction options (the flags of `acquirer-sim send` and the key=value words of a
 * scenario line are the rows of one settings table), their resolution against a terminal
 * into a sim_txn, and the scenario-file parser with line-numbered errors. */
#include "acquirer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "grow.h"
#include "parse.h"

/* The options of one transaction, one row each: the field, what its value must look like
 * (length and digits, or range) and its help. No row has a default: "" and 0 are "not given",
 * and what is used then depends on the terminal and the card: sim_opts_resolve decides (the
 * help says what). */
#define O(f) offsetof(struct sim_opts, f), sizeof(((struct sim_opts *)0)->f)
static const struct at_setting txn_table[] = {
    { "type", AT_SET_STR, O(type_name), NULL, 0, AT_SET_MINLEN(1),
      "purchase, cash, cashback, refund, balance, aft, oct, transfer, auth, reversal, echo, "
      "preauth, completion, incremental or keychange (0800 key download, docs/keys.md; default "
      "purchase)" },
    { "terminal", AT_SET_STR, O(terminal), NULL, 0, AT_SET_MINLEN(8),
      "the terminal, DE 41 (default TERM0001)" },
    { "pan", AT_SET_STR, O(pan), NULL, 0, AT_SET_MINLEN(12) | AT_SET_DIGITS,
      "the card, DE 2 (default 4890010000000012, the MAD demo card)" },
    { "pin", AT_SET_STR, O(pin), NULL, 0, AT_SET_MINLEN(4) | AT_SET_DIGITS,
      "the PIN (default: a demo card's, for the types that debit)" },
    { "no-pin", AT_SET_BOOL, O(no_pin), "no", 0, 0, "send no PIN block" },
    { "expiry", AT_SET_STR, O(expiry), NULL, 0, AT_SET_MINLEN(4) | AT_SET_DIGITS,
      "YYMM, DE 14 (default: a demo card's)" },
    { "amount", AT_SET_STR, O(amount), NULL, 0, AT_SET_MINLEN(1),
      "the amount in major units (12.50), no more decimals than the currency has" },
    { "amount-minor", AT_SET_U64, O(amount_minor), NULL, 999999999999ull, 0,
      "the amount in minor units, as is (instead of --amount)" },
    { "currency", AT_SET_STR, O(currency), NULL, 0, AT_SET_MINLEN(3),
      "ISO 4217, alphabetic or numeric: MAD/504, XOF/952, XAF/950, MRU/929 ... (default: a "
      "demo card's, else the terminal's)" },
    { "cashback", AT_SET_STR, O(cashback), NULL, 0, AT_SET_MINLEN(1),
      "the cash-back part in major units (DE 54)" },
    { "stan", AT_SET_U64, O(stan), NULL, 999999, AT_SET_NONZERO,
      "DE 11 (default: the terminal's next, from its state file)" },
    { "rrn", AT_SET_STR, O(rrn), NULL, 0, AT_SET_MINLEN(12),
      "DE 37 (default: from the date and the STAN)" },
    { "to", AT_SET_STR, O(to), NULL, 0, AT_SET_MINLEN(12) | AT_SET_DIGITS,
      "a transfer's recipient: its PAN (DE 103)" },
    { "to-msisdn", AT_SET_STR, O(to_msisdn), NULL, 0, AT_SET_MINLEN(9),
      "a transfer's recipient: its mobile number, E.164 as typed (+22236123456; DE 103)" },
    { "entry-mode", AT_SET_STR, O(entry_mode), NULL, 0, AT_SET_MINLEN(3) | AT_SET_DIGITS,
      "DE 22 (default 011 with a PIN, 012 without)" },
    { "mti", AT_SET_STR, O(mti), NULL, 0, AT_SET_MINLEN(4) | AT_SET_DIGITS,
      "the MTI (default: the type's)" },
    { "proc", AT_SET_STR, O(proc), NULL, 0, AT_SET_MINLEN(6) | AT_SET_DIGITS,
      "the processing code, DE 3 (default: the type's)" },
    { "original-mti", AT_SET_STR, O(orig_mti), NULL, 0, AT_SET_MINLEN(4) | AT_SET_DIGITS,
      "DE 90: the original's MTI (default 0200 for a reversal, 0100 for a completion or an "
      "increment)" },
    { "original-stan", AT_SET_U64, O(orig_stan), NULL, 999999, 0,
      "DE 90 of a reversal, completion or increment: the original's STAN (with --original-time)" },
    { "original-time", AT_SET_STR, O(orig_time), NULL, 0, AT_SET_MINLEN(10) | AT_SET_DIGITS,
      "DE 90 of a reversal, completion or increment: the original's DE 7, MMDDhhmmss" },
    { "bad-mac", AT_SET_BOOL, O(bad_mac), "no", 0, 0,
      "spoil the request MAC (the switch must answer 63)" },
    { "chip", AT_SET_BOOL, O(chip), "no", 0, 0,
      "a chip read: DE 22 051 and DE 55 with an ARQC from the card's key (demo IMK-AC of its BIN); "
      "the answer's ARPC is checked (arpc=ok|bad|absent)" },
    { "cvn", AT_SET_U64, O(cvn), NULL, 18, 0,
      "the chip's cryptogram version: 10 or 18 (default 18; implies --chip)" },
    { "bad-arqc", AT_SET_BOOL, O(bad_arqc), "no", 0, 0,
      "spoil the ARQC (the switch must answer 82; implies --chip)" },
    { "cvv2", AT_SET_STR, O(cvv2), NULL, 0, AT_SET_MINLEN(3) | AT_SET_DIGITS,
      "card not present (e-commerce): the CVV2, 3 digits, in DE 126 tag C2; DE 22 812" },
    { "host", AT_SET_STR, O(host), NULL, 0, AT_SET_MINLEN(3),
      "send to this ADDR:PORT instead of the terminal's address (on the command line: for every "
      "transaction)" },
    { "timeout-ms", AT_SET_U64, O(timeout_ms), NULL, 600000, AT_SET_NONZERO,
      "how long to wait for the connection and for the answer (default 10000)" },
};

/* The keys only scenario lines have. */
static const struct at_setting scn_table[] = {
    { "id", AT_SET_STR, O(id), NULL, 0, AT_SET_MINLEN(1), "this line's name, for original=" },
    { "original", AT_SET_STR, O(original), NULL, 0, AT_SET_MINLEN(1),
      "a reversal of the line with this id: its DE 90, and the defaults of terminal, PAN, "
      "amount, currency and processing code" },
    { "expect", AT_SET_STR, O(expect), NULL, 0, AT_SET_MINLEN(2),
      "the DE 39 the line must get (needed)" },
    { "mac", AT_SET_STR, O(mac), NULL, 0, AT_SET_MINLEN(2),
      "ok (default): the response MAC must verify; any: it need not" },
    { "balances", AT_SET_STR, O(balances), NULL, 0, AT_SET_MINLEN(12),
      "PAN[,PAN]: one or two demo cards whose balances (inquiries with their own PIN, on the "
      "line's terminal) are shown before -> after the line" },
};
#undef O

#define N(t) (sizeof(t) / sizeof((t)[0]))

/* Splits balances=PAN[,PAN] into pans (may be NULL: only checking) and *n (may be NULL): one or
 * two PANs of the demo cards (acquirer-sim knows their PINs, which a balance inquiry needs), not
 * the same one twice. Returns 0, or -1 with a sentence in err that never repeats a PAN. */
static int balances_split(const char *value, char pans[SIM_BALANCES_MAX][20], unsigned *n,
                          char *err, size_t errcap)
{
    char got[SIM_BALANCES_MAX][20];
    unsigned k = 0;
    for (const char *p = value;; p++) {
        size_t len = strcspn(p, ",");
        if (k == SIM_BALANCES_MAX) {
            snprintf(err, errcap, "balances: at most %d cards", SIM_BALANCES_MAX);
            return -1;
        }
        bool fits = len < sizeof got[k];
        if (fits) {
            memcpy(got[k], p, len);
            got[k][len] = '\0';
        }
        if (!fits || !sim_demo_card_find(got[k])) {
            snprintf(err, errcap,
                     "balances: card %u is not a demo card (PAN[,PAN] of the demo cards, whose "
                     "PINs acquirer-sim knows)",
                     k + 1);
            return -1;
        }
        if (k > 0 && strcmp(got[0], got[k]) == 0) {
            snprintf(err, errcap, "balances: the same card twice");
            return -1;
        }
        k++;
        p += len;
        if (*p == '\0')
            break;
    }
    if (pans)
        memcpy(pans, got, k * sizeof got[0]);
    if (n)
        *n = k;
    return 0;
}

/* The options whose value is a name to look up or an address: checked as typed, before the
 * row stores it (so that the sentence says what is wrong, whatever its length). Keyed by the
 * field the row fills. */
static int opt_check(const struct at_setting *row, const char *value, char *err, size_t errcap)
{
    enum sim_type type;
    const char *why = NULL;
    struct sockaddr_storage ss;
    socklen_t sl;
    switch (row->offset) {
    case offsetof(struct sim_opts, type_name):
        if (sim_type_parse(value, &type) != 0) {
            snprintf(err, errcap,
                     "type: unknown (purchase, cash, cashback, refund, balance, aft, oct, "
                     "transfer, auth, reversal, echo, preauth, completion, incremental)");
            return -1;
        }
        return 0;
    case offsetof(struct sim_opts, currency):
        if (!at_currency_find(value)) {
            snprintf(err, errcap,
                     "currency: unknown code (MAD/504, XOF/952, XAF/950, MRU/929, ...)");
            return -1;
        }
        return 0;
    case offsetof(struct sim_opts, host):
        if (!at_parse_hostport(value, &ss, &sl, &why)) {
            snprintf(err, errcap, "host: %s", why ? why : "expected HOST:PORT");
            return -1;
        }
        return 0;
    case offsetof(struct sim_opts, to):
        if (!sim_recipient_pan_ok(value)) {
            snprintf(err, errcap,
                     "to: expected the recipient's PAN, 12..19 digits passing the "
                     "Luhn check");
            return -1;
        }
        return 0;
    case offsetof(struct sim_opts, to_msisdn):
        if (!sim_recipient_msisdn_ok(value)) {
            snprintf(err, errcap,
                     "to-msisdn: expected '+' and 8..15 digits (E.164, e.g. +22236123456)");
            return -1;
        }
        return 0;
    case offsetof(struct sim_opts, mac):
        if (strcmp(value, "any") != 0 && strcmp(value, "ok") != 0) {
            snprintf(err, errcap, "mac: expected ok or any");
            return -1;
        }
        return 0;
    case offsetof(struct sim_opts, balances):
        return balances_split(value, NULL, NULL, err, errcap);
    }
    return 0;
}

/* What a stored option means for the fields derived from it, and the option it undoes (the
 * last of amount and amount-minor counts). */
static void opt_effects(struct sim_opts *o, const struct at_setting *row)
{
    switch (row->offset) {
    case offsetof(struct sim_opts, type_name):
        o->has_type = sim_type_parse(o->type_name, &o->type) == 0; /* checked: true */
        break;
    case offsetof(struct sim_opts, mac):
        o->mac_any = strcmp(o->mac, "any") == 0;
        break;
    case offsetof(struct sim_opts, balances): /* checked: cannot fail */
        (void)balances_split(o->balances, o->balance_pan, &o->n_balances, NULL, 0);
        break;
    case offsetof(struct sim_opts, pin):
        o->has_pin = true;
        break;
    case offsetof(struct sim_opts, amount):
        o->has_amount_minor = false;
        break;
    case offsetof(struct sim_opts, amount_minor):
        o->has_amount_minor = true;
        o->amount[0] = '\0';
        break;
    }
}

int sim_opts_set(struct sim_opts *o, const char *key, const char *value, bool scenario, char *err,
                 size_t errcap)
{
    const struct at_setting *row = at_settings_find(txn_table, N(txn_table), key);
    if (!row && scenario)
        row = at_settings_find(scn_table, N(scn_table), key);
    if (!row) {
        snprintf(err, errcap, "unknown option '%.40s'", key);
        return -1;
    }
    if (!value && row->type != AT_SET_BOOL) {
        snprintf(err, errcap, "%s: needs a value", key);
        return -1;
    }
    if (value && opt_check(row, value, err, errcap) != 0)
        return -1;
    char why[160], what[96];
    if (at_setting_store(row, o, value, why, sizeof why) != 0) {
        snprintf(err, errcap, "%s: expected %s", key, at_setting_describe(row, what, sizeof what));
        return -1;
    }
    opt_effects(o, row);
    return 0;
}

int sim_opts_arg(struct sim_opts *o, int argc, char **argv, int *i, char *err, size_t errcap)
{
    const struct at_setting *row;
    const char *value;
    int found = at_settings_arg(txn_table, N(txn_table), argc, argv, i, &row, &value, err, errcap);
    if (found <= 0)
        return found;
    return sim_opts_set(o, row->name, value, false, err, errcap) == 0 ? 1 : -1;
}

void sim_opts_usage(FILE *f)
{
    at_settings_print_options(txn_table, N(txn_table), "--", f);
    fprintf(f, "scenario lines only:\n");
    at_settings_print_options(scn_table, N(scn_table), "", f);
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

    const struct at_currency *c = NULL;
    if (o->currency[0])
        c = at_currency_find(o->currency);
    else if (card)
        c = at_currency_find(card->currency);
    else
        c = at_currency_find(t->currency);
    if (!c) {
        snprintf(err, errcap, "currency: unknown code");
        return -1;
    }
    memcpy(x->currency, c->numeric, 4);

    bool needs_amount = x->type != SIM_T_BALANCE && x->type != SIM_T_ECHO && x->type != SIM_T_KEYS;
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

    if (o->no_pin || x->type == SIM_T_REVERSAL || x->type == SIM_T_ECHO || x->type == SIM_T_KEYS)
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
    snprintf(x->recipient, sizeof x->recipient, "%s", o->to[0] ? o->to : o->to_msisdn);
    snprintf(x->entry_mode, sizeof x->entry_mode, "%s", o->entry_mode);
    snprintf(x->orig_mti, sizeof x->orig_mti, "%s", o->orig_mti);
    x->orig_stan = o->orig_stan;
    snprintf(x->orig_time, sizeof x->orig_time, "%s", o->orig_time);
    x->bad_mac = o->bad_mac;
    if (o->chip || o->cvn || o->bad_arqc) {
        if (o->cvn && o->cvn != 10 && o->cvn != 18) {
            snprintf(err, errcap, "cvn: 10 or 18");
            return -1;
        }
        x->chip_cvn = o->cvn ? (unsigned)o->cvn : 18;
        x->bad_arqc = o->bad_arqc;
    }
    snprintf(x->cvv2, sizeof x->cvv2, "%s", o->cvv2);
    if (x->type == SIM_T_REVERSAL && (x->orig_stan != 0) != (x->orig_time[0] != '\0')) {
        snprintf(err, errcap, "reversal: original-stan and original-time go together (DE 90)");
        return -1;
    }
    if ((x->type == SIM_T_COMPLETION || x->type == SIM_T_INCREMENTAL) &&
        (x->orig_stan == 0 || x->orig_time[0] == '\0')) {
        snprintf(err, errcap,
                 "%s: name the pre-auth (DE 90): original-stan and original-time, or original=",
                 sim_type_name(x->type));
        return -1;
    }
    if (o->to[0] && o->to_msisdn[0]) {
        snprintf(err, errcap, "transfer: to and to-msisdn exclude each other (one recipient)");
        return -1;
    }
    if (x->type == SIM_T_TRANSFER && !x->recipient[0]) {
        snprintf(err, errcap, "transfer: the recipient is missing (to or to-msisdn, DE 103)");
        return -1;
    }
    if (x->type != SIM_T_TRANSFER && x->recipient[0]) {
        snprintf(err, errcap, "to and to-msisdn are for type transfer only");
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
    if (at_grow((void **)&s->lines, &s->cap, s->n, sizeof *s->lines, 32) != 0)
        return -1;
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
            if (l.o.type != SIM_T_REVERSAL && l.o.type != SIM_T_COMPLETION &&
                l.o.type != SIM_T_INCREMENTAL) {
                snprintf(err, errcap,
                         "%s:%u: original= is only for type=reversal, completion or incremental",
                         name, lineno);
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
