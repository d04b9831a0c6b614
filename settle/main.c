/* atlas-settle: end-of-day settlement of one business day (docs/settle.md). From the switch's
 * journal and reversal queue (db_settle_read: aggregated in PostgreSQL) it prints, per
 * participant (acquirer, issuer) and currency, the approved debits and credits, the reversals,
 * the fees (none yet) and the net position, checks that the nets of each currency sum to zero,
 * and with --csv writes the same as the CSV a back office imports. With --issuer-db it then runs
 * the reconciliation of the same window (atlas-reconcile, installed beside this program) against
 * the issuer's ledger — or, with --issuer ID before each --issuer-db, against each issuer's own
 * ledger, only that issuer's journal rows. Read-only: nothing is written to any database, and
 * switchd is untouched. Exit: 0 balanced (and reconciled), 1 a currency that does not balance or a
 * reconciliation mismatch, 2 usage, connection, schema or query errors. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bizday.h"
#include "cli.h"
#include "clock.h"
#include "db.h"
#include "settle.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: atlas-settle --date YYYY-MM-DD [--cutover HH:MM] [--csv FILE]\n"
            "                    [--switch-db CONNINFO] [[--issuer ID] --issuer-db CONNINFO]...\n"
            "\n"
            "  --date         the business day to settle\n"
            "  --cutover      the time of day (UTC) a business day ends; default 00:00. With\n"
            "                 HH:MM > 00:00, day D holds the requests received in\n"
            "                 [D-1 HH:MM, D HH:MM)\n"
            "  --csv FILE     also write the totals as CSV (one line per participant and\n"
            "                 currency; the same bytes on every run over the same journal)\n"
            "  --switch-db    libpq conninfo of the switch's database (default: PG* environment)\n"
            "  --issuer-db    reconcile the day against the issuer's ledger too (atlas-reconcile)\n"
            "  --issuer ID    the issuer whose ledger the next --issuer-db is: only its journal\n"
            "                 rows are reconciled with it. Repeat the pair once per issuer\n"
            "\n"
            "exit status: 0 balanced (and reconciled), 1 unbalanced or mismatches, 2 errors\n");
}

/* The directory this program runs from, where atlas-reconcile is installed too. */
static int sibling(const char *name, char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return snprintf(out, cap, "%s/%s", exe, name) < (int)cap ? 0 : -1;
}

/* An issuer ledger to reconcile the day with: its database, and the issuer whose journal rows
 * are compared with it (NULL: every row, the one-issuer form). */
struct ledger {
    const char *issuer, *db;
};
#define MAX_LEDGERS 16

/* atlas-reconcile --from START --to END on the day's window, its report on our stdout: its exit
 * status (0 reconciled, 1 mismatches), or 2 when it could not run. */
static int reconcile(const struct st_day *day, const char *swdb, const struct ledger *l)
{
    char path[PATH_MAX + 32], from[32], to[32];
    if (sibling("atlas-reconcile", path, sizeof path) != 0) {
        fprintf(stderr, "atlas-settle: cannot find atlas-reconcile beside this program\n");
        return 2;
    }
    at_format_utc((uint64_t)day->start_us, from, sizeof from);
    at_format_utc((uint64_t)day->end_us, to, sizeof to);
    const char *argv[12] = { path, "--from", from, "--to", to, "--issuer-db", l->db };
    size_t n = 7;
    if (swdb) {
        argv[n++] = "--switch-db";
        argv[n++] = swdb;
    }
    if (l->issuer) {
        argv[n++] = "--issuer";
        argv[n++] = l->issuer;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == -1) {
        fprintf(stderr, "atlas-settle: fork: %s\n", strerror(errno));
        return 2;
    }
    if (pid == 0) {
        execv(path, (char *const *)argv);
        fprintf(stderr, "atlas-settle: %s: %s\n", path, strerror(errno));
        _exit(2);
    }
    int st;
    while (waitpid(pid, &st, 0) == -1)
        if (errno != EINTR)
            return 2;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 2;
}

/* The CSV into path through path.tmp and a rename, so that a back office never imports half a
 * file (a run that fails leaves the previous file as it was). 0, or -1 with the reason printed. */
static int write_csv(const char *path, const struct st_day *day, const struct st_total *t, size_t n)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        fprintf(stderr, "atlas-settle: %s: path too long\n", path);
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "atlas-settle: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    int rc = st_write_csv(f, day, t, n);
    if (fclose(f) != 0 || rc != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "atlas-settle: %s: writing failed\n", path);
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* The day's totals: read, rolled up, reported (and written as CSV). 0 balanced, 1 a currency
 * that does not balance, 2 an error. */
static int settle(const struct st_day *day, const char *swdb, const char *csv)
{
    struct db_settle_pair *pairs;
    size_t np;
    struct db_error err = { 0 };
    if (db_settle_read(swdb, day->start_us, day->end_us, &pairs, &np, &err) != 0) {
        fprintf(stderr, "atlas-settle: switch database: %s\n", err.message);
        return 2;
    }
    struct st_total *t;
    size_t n;
    int rc = st_rollup(pairs, np, &t, &n);
    free(pairs);
    if (rc != 0) {
        fprintf(stderr, "atlas-settle: out of memory\n");
        return 2;
    }
    if (csv && write_csv(csv, day, t, n) != 0) {
        free(t);
        return 2;
    }
    int unbalanced = st_write_report(stdout, day, t, n);
    free(t);
    if (unbalanced < 0) {
        fprintf(stderr, "atlas-settle: out of memory\n");
        return 2;
    }
    return unbalanced ? 1 : 0;
}

int main(int argc, char **argv)
{
    enum { O_DATE = 1, O_CUTOVER, O_CSV, O_SWDB, O_ISSDB, O_ISSUER };
    static const struct option opts[] = {
        { "date", required_argument, NULL, O_DATE },
        { "cutover", required_argument, NULL, O_CUTOVER },
        { "csv", required_argument, NULL, O_CSV },
        { "switch-db", required_argument, NULL, O_SWDB },
        { "issuer-db", required_argument, NULL, O_ISSDB },
        { "issuer", required_argument, NULL, O_ISSUER },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *date = NULL, *cutover = "00:00", *csv = NULL, *swdb = NULL, *issuer = NULL;
    struct ledger ledgers[MAX_LEDGERS];
    size_t nl = 0;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case O_DATE:
            date = optarg;
            break;
        case O_CUTOVER:
            cutover = optarg;
            break;
        case O_CSV:
            csv = optarg;
            break;
        case O_SWDB:
            swdb = optarg;
            break;
        case O_ISSUER:
            if (issuer) {
                fprintf(stderr, "atlas-settle: --issuer %s has no --issuer-db\n", issuer);
                return at_usage(usage, false);
            }
            issuer = optarg;
            break;
        case O_ISSDB: /* the ledger of the --issuer before it, if any */
            if (nl == MAX_LEDGERS) {
                fprintf(stderr, "atlas-settle: at most %d --issuer-db\n", MAX_LEDGERS);
                return at_usage(usage, false);
            }
            ledgers[nl++] = (struct ledger){ issuer, optarg };
            issuer = NULL;
            break;
        case 'h':
        default:
            return at_usage(usage, o == 'h');
        }
    }
    if (optind != argc) {
        fprintf(stderr, "atlas-settle: unexpected argument '%s'\n", argv[optind]);
        return at_usage(usage, false);
    }
    if (issuer) {
        fprintf(stderr, "atlas-settle: --issuer %s has no --issuer-db\n", issuer);
        return at_usage(usage, false);
    }
    struct st_day day;
    int64_t d;
    unsigned cut;
    /* From 2000 on: a business day's window then never starts before the epoch. */
    if (!date || !at_date_parse(date, &d) || d < at_days_from_civil(2000, 1, 1)) {
        fprintf(stderr, "atlas-settle: --date: a date YYYY-MM-DD (2000 or later) is required\n");
        return at_usage(usage, false);
    }
    if (!at_cutover_parse(cutover, &cut)) {
        fprintf(stderr, "atlas-settle: --cutover: HH:MM, 00:00 to 23:59 (UTC)\n");
        return at_usage(usage, false);
    }
    snprintf(day.date, sizeof day.date, "%s", date);
    snprintf(day.cutover, sizeof day.cutover, "%s", cutover);
    at_business_window(d, cut, &day.start_us, &day.end_us);
    int rc = settle(&day, swdb, csv);
    for (size_t i = 0; i < nl && rc != 2; i++) {
        if (ledgers[i].issuer)
            printf("\nReconciliation of the same window with issuer %s's ledger"
                   " (atlas-reconcile --issuer %s):\n",
                   ledgers[i].issuer, ledgers[i].issuer);
        else
            printf("\nReconciliation of the same window with the issuer's ledger"
                   " (atlas-reconcile):\n");
        int rrc = reconcile(&day, swdb, &ledgers[i]);
        rc = rrc == 2 ? 2 : (rc || rrc) ? 1 : 0;
    }
    return rc;
}
