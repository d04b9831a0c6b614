/* atlas-fx: the operator's tool for the conversion rate table. `load FILE` checks every line of
 * a rate file (libatlas_fx) and writes them all or none (db_fx_rates_write); `show` prints the
 * rates in force with their DE 10 and an example; `convert` answers what a request would carry.
 * Connects with --db CONNINFO or libpq's PG* environment, like atlas-db. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "db.h"
#include "fx.h"
#include "grow.h"

#define LINE_MAX_BYTES 512
#define MAX_RATES      10000 /* a rate file is a few dozen lines; this bounds a wrong file */
#define FIRST_CAP      64

static void usage(FILE *f)
{
    fprintf(f,
            "usage: atlas-fx [--db CONNINFO] COMMAND\n"
            "commands:\n"
            "  load FILE              check every line of a rate file, then load all of it in\n"
            "                         one transaction, or nothing if any line is refused\n"
            "  show [--at TIME|--all] the rates in force now (or at TIME, or every period\n"
            "                         ever loaded), with DE 10 and an example conversion\n"
            "  convert AMOUNT FROM TO [--at TIME]\n"
            "                         what a request of AMOUNT (major units, e.g. 12.50) in FROM\n"
            "                         carries for a card billed in TO: DE 6, DE 10, DE 51\n"
            "A rate file is CSV: the header line\n"
            "  " FX_CSV_HEADER "\n"
            "then one period of one pair per line; currencies alphabetic (MAD) or numeric (504),\n"
            "rate = units of TO per one unit of FROM, spread_pct = markup in percent (1.0),\n"
            "times ISO 8601 UTC (2026-12-06T00:00:00Z or 2026-12-06), empty valid_to = open.\n"
            "Blank lines and lines starting with # are ignored. See docs/fx.md.\n");
}

static void db_fail(const char *what, const struct db_error *err)
{
    fprintf(stderr, "atlas-fx: %s: %s%s%s%s\n", what, err->message, err->sqlstate[0] ? " (" : "",
            err->sqlstate, err->sqlstate[0] ? ")" : "");
}

/* ---- the rate file ------------------------------------------------------------------------ */

/* A rate file read into memory: each rate with the line it came from. */
struct file_rate {
    struct fx_rate r;
    unsigned line;
};
struct rate_file {
    struct file_rate *v;
    size_t n, cap;
};

static void rate_file_free(struct rate_file *f)
{
    free(f->v);
    f->v = NULL;
}

static bool blank_or_comment(const char *s)
{
    s += strspn(s, " \t\r\n");
    return *s == '\0' || *s == '#';
}

static bool is_header(const char *s)
{
    size_t n = strlen(FX_CSV_HEADER);
    return strncmp(s, FX_CSV_HEADER, n) == 0 && s[n + strspn(s + n, " \t\r\n")] == '\0';
}

/* Reads and checks every line of path; prints each bad line with its number. 0, or -1 when the
 * file cannot be read or any line is bad (nothing is to be loaded then). */
static int read_rate_file(const char *path, struct rate_file *out)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "atlas-fx: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct rate_file f = { 0 };
    char line[LINE_MAX_BYTES];
    unsigned no = 0, bad = 0;
    bool header = false, oom = false;
    while (!oom && fgets(line, sizeof line, fp)) {
        no++;
        struct fx_error e = { 0 };
        if (!strchr(line, '\n') && !feof(fp)) {
            fprintf(stderr, "atlas-fx: %s:%u: line longer than %d bytes\n", path, no,
                    LINE_MAX_BYTES - 2);
            bad++;
            break;
        }
        if (blank_or_comment(line))
            continue;
        if (!header) {
            header = is_header(line);
            if (!header) {
                fprintf(stderr, "atlas-fx: %s:%u: the first line must be the header %s\n", path, no,
                        FX_CSV_HEADER);
                bad++;
                break;
            }
        } else if (f.n == MAX_RATES) {
            fprintf(stderr, "atlas-fx: %s:%u: more than %d rates\n", path, no, MAX_RATES);
            bad++;
            break;
        } else if ((oom = at_grow((void **)&f.v, &f.cap, f.n, sizeof *f.v, FIRST_CAP) != 0)) {
            break;
        } else if (fx_csv_line(line, &f.v[f.n].r, &e) != FX_OK) {
            fprintf(stderr, "atlas-fx: %s:%u: %s\n", path, no, e.message);
            bad++;
        } else {
            f.v[f.n++].line = no;
        }
    }
    if (oom) {
        fprintf(stderr, "atlas-fx: out of memory\n");
        bad++;
    } else if (ferror(fp)) {
        fprintf(stderr, "atlas-fx: %s: read error\n", path);
        bad++;
    } else if (!header && bad == 0) {
        fprintf(stderr, "atlas-fx: %s: no header line (%s)\n", path, FX_CSV_HEADER);
        bad++;
    }
    fclose(fp);
    if (bad) {
        rate_file_free(&f);
        return -1;
    }
    *out = f;
    return 0;
}

/* Two periods of one pair in one file must not overlap: each pair of lines is compared, so
 * that the message names both lines (a file is small). 0 or -1. */
static int check_overlaps(const char *path, const struct rate_file *f)
{
    int rc = 0;
    for (size_t i = 0; i < f->n; i++)
        for (size_t j = i + 1; j < f->n; j++) {
            const struct fx_rate *a = &f->v[i].r, *b = &f->v[j].r;
            if (a->from == b->from && a->to == b->to && a->valid_from < b->valid_to &&
                b->valid_from < a->valid_to) {
                fprintf(stderr, "atlas-fx: %s:%u: %s->%s overlaps the period of line %u\n", path,
                        f->v[j].line, fx_alpha(a->from), fx_alpha(a->to), f->v[i].line);
                rc = -1;
            }
        }
    return rc;
}

/* A parsed rate as a row of switch.fx_rates. */
static void to_row(const struct fx_rate *r, struct db_fx_rate *row)
{
    memset(row, 0, sizeof *row);
    row->from_currency = r->from;
    row->to_currency = r->to;
    fx_decimal_format(r->rate, row->rate, sizeof row->rate);
    fx_decimal_format(r->spread, row->spread_pct, sizeof row->spread_pct);
    row->valid_from = r->valid_from;
    row->valid_to = r->valid_to == FX_OPEN ? -1 : r->valid_to;
}

/* A row of switch.fx_rates as a rate (DE 10 computed), or false with err filled. */
static bool from_row(const struct db_fx_rate *row, struct fx_rate *r, struct fx_error *err)
{
    char from[8], to[8];
    snprintf(from, sizeof from, "%03d", row->from_currency);
    snprintf(to, sizeof to, "%03d", row->to_currency);
    return fx_rate_make(from, to, row->rate, row->spread_pct, row->valid_from,
                        row->valid_to < 0 ? FX_OPEN : row->valid_to, r, err) == FX_OK;
}

/* ---- printing ----------------------------------------------------------------------------- */

/* minor units as "1234.50 MAD". */
static void format_amount(uint64_t minor, int ccy, char *out, size_t cap)
{
    char num[40];
    int exp = fx_exponent(ccy);
    fx_decimal_format((struct fx_decimal){ minor, exp < 0 ? 0 : (unsigned)exp }, num, sizeof num);
    snprintf(out, cap, "%s %s", num, fx_alpha(ccy));
}

static void print_table_head(void)
{
    printf("%-9s %-12s %-7s %-10s %-9s %-21s %-21s %s\n", "pair", "rate", "spread%", "effective",
           "DE10", "valid_from", "valid_to", "example");
}

/* One line: the pair, the rate as loaded, its effective DE 10 value, its period and what 100
 * units of the transaction currency become. */
static void print_rate(const struct fx_rate *r)
{
    char pair[12], rate[40], spread[40], eff[24], de10[9], vf[21], vt[21], a[48], b[48];
    snprintf(pair, sizeof pair, "%s->%s", fx_alpha(r->from), fx_alpha(r->to));
    fx_decimal_format(r->rate, rate, sizeof rate);
    fx_decimal_format(r->spread, spread, sizeof spread);
    fx_de10_format(r->de10, eff, sizeof eff);
    fx_de10_encode(r->de10, de10);
    fx_time_format(r->valid_from, vf);
    fx_time_format(r->valid_to, vt);
    uint64_t txn = 100, billed = 0;
    for (int i = 0; i < fx_exponent(r->from); i++)
        txn *= 10;
    format_amount(txn, r->from, a, sizeof a);
    if (fx_convert_minor(txn, fx_exponent(r->from), r->de10, fx_exponent(r->to), &billed, NULL) ==
        FX_OK)
        format_amount(billed, r->to, b, sizeof b);
    else
        snprintf(b, sizeof b, "(out of range)");
    printf("%-9s %-12s %-7s %-10s %-9s %-21s %-21s %s = %s\n", pair, rate, spread, eff, de10, vf,
           vt, a, b);
}

/* ---- the commands ------------------------------------------------------------------------- */

static int cmd_load(const char *conninfo, const char *path)
{
    struct rate_file f;
    if (read_rate_file(path, &f) != 0) {
        fprintf(stderr, "atlas-fx: %s: nothing loaded\n", path);
        return 1;
    }
    if (check_overlaps(path, &f) != 0) {
        rate_file_free(&f);
        fprintf(stderr, "atlas-fx: %s: nothing loaded\n", path);
        return 1;
    }
    struct db_fx_rate *rows = calloc(f.n ? f.n : 1, sizeof *rows);
    if (!rows) {
        rate_file_free(&f);
        fprintf(stderr, "atlas-fx: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < f.n; i++)
        to_row(&f.v[i].r, &rows[i]);
    struct db_fx_write_report rep;
    struct db_error err = { 0 };
    int rc = db_fx_rates_write(conninfo, rows, f.n, path, &rep, &err);
    if (rc != 0) {
        if (rep.failed < f.n)
            fprintf(stderr, "atlas-fx: %s:%u: refused: %s\n", path, f.v[rep.failed].line,
                    err.message);
        else
            db_fail("load", &err);
        fprintf(stderr, "atlas-fx: %s: nothing loaded\n", path);
    } else {
        printf("atlas-fx: loaded %s: %zu new, %zu unchanged, %zu open period(s) ended\n", path,
               rep.inserted, rep.unchanged, rep.closed);
        print_table_head();
        for (size_t i = 0; i < f.n; i++)
            print_rate(&f.v[i].r);
    }
    free(rows);
    rate_file_free(&f);
    return rc == 0 ? 0 : 1;
}

/* Reads rates of a scope and builds the set. 0 or 1 (printed). */
static int load_set(const char *conninfo, enum db_fx_scope scope, int64_t at, struct fx_set **out)
{
    struct db_fx_rate *rows;
    size_t n;
    struct db_error err = { 0 };
    if (db_fx_rates_read(conninfo, scope, at, &rows, &n, &err) != 0) {
        db_fail("reading rates", &err);
        return 1;
    }
    struct fx_rate *rates = calloc(n ? n : 1, sizeof *rates);
    struct fx_error e = { 0 };
    int rc = rates ? 0 : 1;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (!from_row(&rows[i], &rates[i], &e)) {
            fprintf(stderr, "atlas-fx: a stored rate is unusable: %s\n", e.message);
            rc = 1;
        }
    if (rc == 0 && fx_set_new(rates, n, out, &e) != FX_OK) {
        fprintf(stderr, "atlas-fx: %s\n", e.message);
        rc = 1;
    }
    free(rates);
    free(rows);
    return rc;
}

static int cmd_show(const char *conninfo, int64_t at, bool all)
{
    struct fx_set *s;
    if (load_set(conninfo, all ? DB_FX_ALL : DB_FX_IN_FORCE, at, &s) != 0)
        return 1;
    char when[21];
    fx_time_format(at, when);
    if (all)
        printf("every rate period loaded (%zu):\n", fx_set_count(s));
    else
        printf("rates in force at %s (%zu):\n", when, fx_set_count(s));
    print_table_head();
    for (size_t i = 0; i < fx_set_count(s); i++)
        print_rate(fx_set_at(s, i));
    fx_set_free(s);
    return 0;
}

/* An amount in major units ("12.50") in minor units of a currency of exponent exp. */
static bool parse_amount(const char *text, int exp, uint64_t *minor)
{
    struct fx_decimal d;
    if (exp < 0 || fx_decimal_parse(text, &d, NULL) != FX_OK || d.scale > (unsigned)exp)
        return false;
    uint64_t v = d.mantissa;
    for (unsigned i = d.scale; i < (unsigned)exp; i++) {
        if (v > FX_AMOUNT_MAX / 10)
            return false;
        v *= 10;
    }
    *minor = v;
    return v <= FX_AMOUNT_MAX;
}

static int cmd_convert(const char *conninfo, const char *amount, const char *from, const char *to,
                       int64_t at)
{
    int f = fx_currency(from), t = fx_currency(to);
    uint64_t minor;
    if (f < 0 || t < 0) {
        fprintf(stderr, "atlas-fx: unknown currency '%s'\n", f < 0 ? from : to);
        return 2;
    }
    if (!parse_amount(amount, fx_exponent(f), &minor)) {
        fprintf(stderr, "atlas-fx: '%s' is not an amount in %s (%d decimals, 12 digits at most)\n",
                amount, fx_alpha(f), fx_exponent(f));
        return 2;
    }
    struct fx_set *s;
    if (load_set(conninfo, DB_FX_ALL, at, &s) != 0)
        return 1;
    struct fx_result res;
    struct fx_error e = { 0 };
    int rc = fx_apply(s, minor, f, t, at, &res, &e);
    char a[48], b[48];
    format_amount(minor, f, a, sizeof a);
    if (rc == FX_OK && !res.converted) {
        printf("%s: same currency, no conversion (DE 6, DE 10, DE 51 not sent)\n", a);
    } else if (rc == FX_OK) {
        char vf[21], vt[21];
        format_amount(res.billing_minor, t, b, sizeof b);
        fx_time_format(res.rate->valid_from, vf);
        fx_time_format(res.rate->valid_to, vt);
        printf("%s = %s\n  DE 4 %012llu  DE 49 %03d  ->  DE 6 %012llu  DE 10 %s  DE 51 %s\n"
               "  rate in force from %s to %s\n",
               a, b, (unsigned long long)minor, f, (unsigned long long)res.billing_minor, res.de10,
               res.billing_ccy, vf, vt);
    } else {
        fprintf(stderr, "atlas-fx: %s (%s): would be declined\n", e.message,
                rc == FX_NO_RATE ? fx_why_name(e.why) : "out of range");
    }
    fx_set_free(s);
    return rc == FX_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *conninfo = "";
    int64_t at = (int64_t)time(NULL);
    bool all = false, at_given = false;
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "at", required_argument, NULL, 'a' },
        { "all", no_argument, NULL, 'A' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    struct fx_error e;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            conninfo = optarg;
            break;
        case 'a':
            if (fx_time_parse(optarg, &at, &e) != FX_OK) {
                fprintf(stderr, "atlas-fx: --at: %s\n", e.message);
                return 2;
            }
            at_given = true;
            break;
        case 'A':
            all = true;
            break;
        case 'h':
        default:
            return at_usage(usage, c == 'h');
        }
    }
    int nargs = argc - optind;
    const char *cmd = nargs > 0 ? argv[optind] : "";
    char **args = argv + optind + 1;
    if (strcmp(cmd, "load") == 0 && nargs == 2 && !at_given && !all)
        return cmd_load(conninfo, args[0]);
    if (strcmp(cmd, "show") == 0 && nargs == 1 && !(all && at_given))
        return cmd_show(conninfo, at, all);
    if (strcmp(cmd, "convert") == 0 && nargs == 4 && !all)
        return cmd_convert(conninfo, args[0], args[1], args[2], at);
    if (nargs > 0 && strcmp(cmd, "load") && strcmp(cmd, "show") && strcmp(cmd, "convert"))
        fprintf(stderr, "atlas-fx: unknown command '%s'\n", cmd);
    return at_usage(usage, false);
}
