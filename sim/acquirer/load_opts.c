/* The options of `acquirer-sim load` and `acquirer-sim load-seed`: one row each in a settings
 * table (common/conf.h) with its type, default, range and help, from which come the defaults,
 * the parsing and range checks, and the usage text. What a row cannot say (the mix's grammar,
 * rules between options, defaults computed from other options) is load_opts_parse's last
 * step. */
#include "load.h"

#include <stdlib.h>
#include <string.h>

#include "conf.h"

#define O(f) offsetof(struct load_opts, f), sizeof(((struct load_opts *)0)->f)
static const struct at_setting load_table[] = {
    { "rate", AT_SET_U64, O(rate), "100", 10000000, AT_SET_NONZERO,
      "arrivals per second (open loop)" },
    { "duration", AT_SET_DOUBLE, O(duration), "10", 86400, AT_SET_NONZERO,
      "seconds measured, after the warm-up" },
    { "connections", AT_SET_U64, O(connections), "4", 200000, AT_SET_NONZERO,
      "connections to the switch, each one terminal" },
    { "closed", AT_SET_U64, O(closed_k), NULL, 100000, AT_SET_NONZERO,
      "closed loop: this many requests in flight on each connection, each answer sending the "
      "next (default: open loop at --rate)" },
    { "mix", AT_SET_STR, O(mix_spec), LOAD_MIX_DEFAULT, 0, 0,
      "the transaction mix: name=weight,... over purchase, purchase-nopin, cash, balance, "
      "refund, reversal, transfer (to another load wallet, any BIN), chip (purchase with a chip "
      "ARQC, CVN 18 or 10), ecom (purchase with the card's CVV2)" },
    { "warmup", AT_SET_DOUBLE, O(warmup), "1", 3600, 0,
      "seconds of load before the measurement starts" },
    { "report", AT_SET_STR, O(report), NULL, 0, AT_SET_MINLEN(1),
      "write the JSON report to this file" },
    { "cards", AT_SET_U64, O(cards), "1000", 999999999, AT_SET_NONZERO,
      "the last wallet index used (issuer-sim's deterministic seed)" },
    { "card-first", AT_SET_U64, O(card_first), "9", 999999999, AT_SET_NONZERO,
      "the first wallet index used (1..8 are the demo cards)" },
    { "max-error-rate", AT_SET_DOUBLE, O(max_error_rate), "0", 1, 0,
      "exit 3 when (errors + timeouts + unsent + DE 39 other than 00) / sent is above this" },
    { "host", AT_SET_STR, O(host), "127.0.0.1:8583", 0, AT_SET_MINLEN(1),
      "switchd's terminal listener, ADDR:PORT" },
    { "tls", AT_SET_BOOL, O(tls), "no", 0, 0,
      "connect over TLS 1.2/1.3 (switchd's TLS listener, e.g. 8585 in the demo)" },
    { "ca", AT_SET_STR, O(ca), NULL, 0, AT_SET_MINLEN(1),
      "with --tls: CA file verifying the switch's certificate" },
    { "cert", AT_SET_STR, O(cert), NULL, 0, AT_SET_MINLEN(1),
      "with --tls: the terminals' client certificate (mutual authentication)" },
    { "key", AT_SET_STR, O(key), NULL, 0, AT_SET_MINLEN(1), "with --tls: the key of --cert" },
    { "server-name", AT_SET_STR, O(server_name), NULL, 0, AT_SET_MINLEN(1),
      "with --tls: the name the switch's certificate must carry (default: the IP address "
      "connected to)" },
    { "load-terminals", AT_SET_BOOL, O(load_terms), "no", 0, 0,
      "connection i is load terminal --terminal-first + i (LOAD0001...: acquirer-sim load-seed "
      "registers them) instead of the demo terminal TERM0001" },
    { "terminal-first", AT_SET_U64, O(term_first), "1", 999999, AT_SET_NONZERO,
      "the index of the first load terminal" },
    { "timeout-ms", AT_SET_U64, O(timeout_ms), "5000", 600000, AT_SET_NONZERO,
      "how long a request waits for its answer" },
    { "amount-max", AT_SET_U64, O(amount_max), "50", 999999999999ull, AT_SET_NONZERO,
      "amounts are drawn from 1..this, in minor units" },
    { "seed", AT_SET_U64, O(seed), "11400714819323198485", 0, AT_SET_NONZERO,
      "the seed of the draws (kinds, cards, amounts)" },
    { "slots", AT_SET_U64, O(slots), NULL, 1000000, AT_SET_NONZERO,
      "request slots, the most in flight (default: a quarter second of arrivals, or K per "
      "connection; 256..262144)" },
    { "state-dir", AT_SET_STR, O(state_dir), SIM_STATE_DIR_DEFAULT, 0, 0,
      "where TERM0001's STAN state file is (default $" SIM_STATE_DIR_ENV " when set)" },
    { "quiet", AT_SET_BOOL, O(quiet), "no", 0, 0, "no progress line on stderr" },
    { "strict-rate", AT_SET_BOOL, O(strict_rate), "no", 0, 0,
      "exit 4 when the rate asked was not kept" },
    { "record", AT_SET_STR, O(record), NULL, 0, AT_SET_MINLEN(1),
      "write one line per request to this file (the record file, docs/acquirer-sim.md)" },
    { "reversal-interval-ms", AT_SET_U64, O(rev_interval_ms), NULL, 600000, AT_SET_NONZERO,
      "how long a reversal try waits for its 0410, and the least time between two tries "
      "(default: the --timeout-ms)" },
    { "reversal-deadline", AT_SET_DOUBLE, O(rev_deadline), "120", 86400, 0,
      "seconds after the last arrival before reversals still owed are abandoned (exit 5; 0: "
      "no longer than the requests' own timeout)" },
};
#undef O

struct seed_opts {
    uint64_t terminals, first;
};

#define O(f) offsetof(struct seed_opts, f), sizeof(((struct seed_opts *)0)->f)
static const struct at_setting seed_table[] = {
    { "terminals", AT_SET_U64, O(terminals), NULL, 999999, AT_SET_NONZERO,
      "how many load terminals (needed)" },
    { "first", AT_SET_U64, O(first), "1", 999999, AT_SET_NONZERO,
      "the index of the first (first + C - 1 <= 999999)" },
};
#undef O

#define N(t) (sizeof(t) / sizeof((t)[0]))

void load_usage(FILE *f)
{
    fprintf(f, "usage: acquirer-sim load [options]\n"
               "       acquirer-sim load-seed --terminals C [--first I]   (SQL on stdout)\n"
               "load options:\n");
    at_settings_print_options(load_table, N(load_table), "--", f);
    fprintf(f,
            "Connections that end are opened again; unanswered purchases, cash-outs and refunds\n"
            "are reversed (0400, then 0401 until an 0410); --record writes one line per "
            "request.\n"
            "load-seed options:\n");
    at_settings_print_options(seed_table, N(seed_table), "--", f);
}

/* Reads argv[2..] (argv[1] is the command) as options of table into base, which holds the
 * defaults. 0; 1 when help was asked; -1 with a sentence in err. */
static int parse_args(const struct at_setting *table, size_t n, void *base, int argc, char **argv,
                      char *err, size_t errcap)
{
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errcap, "unexpected argument '%s' (try --help)", a);
            return -1;
        }
        const struct at_setting *row;
        const char *value;
        char why[160], what[96];
        int found = at_settings_arg(table, n, argc, argv, &i, &row, &value, why, sizeof why);
        if (found == 0) {
            snprintf(err, errcap, "unknown option %s (try --help)", a);
            return -1;
        }
        if (found < 0) {
            snprintf(err, errcap, "%s (try --help)", why);
            return -1;
        }
        if (at_setting_store(row, base, value, why, sizeof why) != 0) {
            snprintf(err, errcap, "bad value for --%s: expected %s", row->name,
                     at_setting_describe(row, what, sizeof what));
            return -1;
        }
    }
    return 0;
}

/* What the rows cannot say: the mix's grammar, rules between options, and the defaults that
 * depend on other options. */
static int finish_opts(struct load_opts *o, char *err, size_t errcap)
{
    char why[160];
    if (load_mix_parse(o->mix_spec, &o->mix, why, sizeof why) != 0) {
        snprintf(err, errcap, "--mix: %s", why);
        return -1;
    }
    if (o->card_first > o->cards) {
        snprintf(err, errcap, "--card-first %llu is above --cards %llu",
                 (unsigned long long)o->card_first, (unsigned long long)o->cards);
        return -1;
    }
    if (o->mix.weight[LOAD_K_TRANSFER] && o->card_first == o->cards) {
        snprintf(err, errcap, "a transfer needs two wallets: --cards above --card-first");
        return -1;
    }
    if (o->load_terms && o->term_first + o->connections - 1 > 999999) {
        snprintf(err, errcap, "load terminal indices above 999999");
        return -1;
    }
    if (!o->rev_interval_ms)
        o->rev_interval_ms = o->timeout_ms;
    if (!o->slots) {
        /* Enough for 250 ms of arrivals (or K per connection), at least 256. */
        uint64_t s = o->closed_k ? o->closed_k * o->connections : o->rate / 4;
        o->slots = s < 256 ? 256 : s > 262144 ? 262144 : s;
    }
    return 0;
}

int load_opts_parse(int argc, char **argv, struct load_opts *o, char *err, size_t errcap)
{
    memset(o, 0, sizeof *o);
    if (at_settings_defaults(load_table, N(load_table), o, err, errcap) != 0)
        return -1;
    const char *env_dir = getenv(SIM_STATE_DIR_ENV);
    char why[160];
    if (env_dir && env_dir[0] &&
        at_settings_set(load_table, N(load_table), o, "state-dir", env_dir, why, sizeof why) != 0) {
        snprintf(err, errcap, "$%s: %s", SIM_STATE_DIR_ENV, why);
        return -1;
    }
    int rc = parse_args(load_table, N(load_table), o, argc, argv, err, errcap);
    if (rc != 0)
        return rc;
    return finish_opts(o, err, errcap);
}

int load_seed_opts_parse(int argc, char **argv, uint64_t *terminals, uint64_t *first, char *err,
                         size_t errcap)
{
    struct seed_opts o;
    memset(&o, 0, sizeof o);
    if (at_settings_defaults(seed_table, N(seed_table), &o, err, errcap) != 0)
        return -1;
    int rc = parse_args(seed_table, N(seed_table), &o, argc, argv, err, errcap);
    if (rc != 0)
        return rc;
    if (o.terminals == 0 || o.first + o.terminals - 1 > 999999) {
        snprintf(err, errcap, "--terminals 1..999999 (first + C - 1 <= 999999) is needed");
        return -1;
    }
    *terminals = o.terminals;
    *first = o.first;
    return 0;
}
