/* atlas-reconcile: the proof that no money was lost or moved twice (docs/reconcile.md; the
 * invariant it checks: docs/ARCHITECTURE.md). For a time window it compares the switch's
 * journal, reversal queue and in-flight table with the wallet issuer's requests, ledger and
 * holds — and, with --record, with what the load harness's terminals saw — and prints
 * per-currency totals and every mismatch.
 *
 * Why a folder of its own (reconcile/), like console/: it reads two parties' schemas (`switch`
 * and `wallet`, possibly in two databases) and belongs to neither daemon. It links libatlas_db
 * (schema check, db_request_date: the journal's partition date, derived exactly as switchd
 * derives it), libatlas_common, and sim/issuer's pure library for sim_request_key and the
 * processing-code classes — the issuer's own definitions of its request key and of what a
 * request does, so the two cannot drift apart. Exit: 0 reconciled, 1 mismatches, 2 usage,
 * connection, schema, query or record-file errors. docs/reconcile.md is the manual. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "db.h"
#include "fetch.h"
#include "recon.h"
#include "record.h"
#include "report.h"

#define SWITCH_SCHEMA 14 /* conversion columns (0009), transfers (0010), advice_queue (0014) */
#define ISSUER_SCHEMA 3  /* wallet.* and the functions that fill them (0002, 0003) */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: atlas-reconcile [--from TS] [--to TS] [--slack SECONDS]\n"
            "                       [--switch-db CONNINFO] [--issuer-db CONNINFO]\n"
            "                       [--issuer ID | --record FILE [--acquirer ID]]\n"
            "                       [--allow-pending] [--json]\n"
            "\n"
            "  --from, --to       the window, ISO timestamps (UTC unless they carry an offset);\n"
            "                     default: the 24 hours before now. The switch's rows are those\n"
            "                     created in [from, to); the issuer's bookings are read in\n"
            "                     [from - slack, to + slack) and under every key the window names\n"
            "  --slack SECONDS    issuer-side slack (default 600)\n"
            "  --switch-db, --issuer-db  libpq conninfo (default: the PG* environment)\n"
            "  --issuer ID        only the switch's rows of issuer ID (switch.issuers), against\n"
            "                     that issuer's ledger (--issuer-db): one run per issuer\n"
            "  --record FILE      acquirer-sim load's --record file: check what the terminals saw\n"
            "  --acquirer ID      the acquirer the record's terminals are journaled under\n"
            "                     (default 100001)\n"
            "  --allow-pending    a reversal not yet acknowledged is not a mismatch (live system)\n"
            "  --json             one JSON object instead of the text report\n"
            "\n"
            "exit status: 0 reconciled, 1 mismatches, 2 usage, connection or input errors\n");
}

static PGconn *connect_db(const char *what, const char *conninfo, int schema)
{
    struct db_error err;
    memset(&err, 0, sizeof err);
    if (db_schema_check_at(conninfo, schema, &err) != 0) {
        fprintf(stderr, "atlas-reconcile: %s database: %s\n", what, err.message);
        return NULL;
    }
    PGconn *c = PQconnectdb(conninfo ? conninfo : "");
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "atlas-reconcile: %s database: %s", what, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    char e[512];
    if (rc_fetch_begin(c, e, sizeof e) != 0) {
        fprintf(stderr, "atlas-reconcile: %s database: %s\n", what, e);
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* As switch.issuers' CHECK has it. */
static bool issuer_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= 'a' && s[i] <= 'z') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static bool acquirer_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 11)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= 'a' && s[i] <= 'z')))
            return false;
    return true;
}

int main(int argc, char **argv)
{
    enum {
        O_FROM = 1,
        O_TO,
        O_SLACK,
        O_SWDB,
        O_ISSDB,
        O_ISSUER,
        O_RECORD,
        O_ACQ,
        O_PENDING,
        O_JSON
    };
    static const struct option opts[] = {
        { "from", required_argument, NULL, O_FROM },
        { "to", required_argument, NULL, O_TO },
        { "slack", required_argument, NULL, O_SLACK },
        { "switch-db", required_argument, NULL, O_SWDB },
        { "issuer-db", required_argument, NULL, O_ISSDB },
        { "issuer", required_argument, NULL, O_ISSUER },
        { "record", required_argument, NULL, O_RECORD },
        { "acquirer", required_argument, NULL, O_ACQ },
        { "allow-pending", no_argument, NULL, O_PENDING },
        { "json", no_argument, NULL, O_JSON },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *from = NULL, *to = NULL, *swdb = NULL, *issdb = NULL, *record = NULL;
    const char *issuer = NULL;
    const char *acquirer = "100001";
    unsigned slack = 600;
    bool pending = false, json = false;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case O_FROM:
            from = optarg;
            break;
        case O_TO:
            to = optarg;
            break;
        case O_SLACK: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (!*optarg || *end || optarg[0] == '-' || v > 7 * 86400) {
                fprintf(stderr, "atlas-reconcile: --slack: seconds, 0..604800\n");
                return 2;
            }
            slack = (unsigned)v;
            break;
        }
        case O_SWDB:
            swdb = optarg;
            break;
        case O_ISSDB:
            issdb = optarg;
            break;
        case O_ISSUER:
            issuer = optarg;
            if (!issuer_ok(issuer)) {
                fprintf(stderr, "atlas-reconcile: --issuer: 1 to 32 letters, digits, '_' or '-'"
                                " (switch.issuers)\n");
                return 2;
            }
            break;
        case O_RECORD:
            record = optarg;
            break;
        case O_ACQ:
            acquirer = optarg;
            if (!acquirer_ok(acquirer)) {
                fprintf(stderr, "atlas-reconcile: --acquirer: 1 to 11 letters or digits (DE 32)\n");
                return 2;
            }
            break;
        case O_PENDING:
            pending = true;
            break;
        case O_JSON:
            json = true;
            break;
        case 'h':
        default:
            return at_usage(usage, o == 'h');
        }
    }
    if (optind != argc) {
        fprintf(stderr, "atlas-reconcile: unexpected argument '%s'\n", argv[optind]);
        return at_usage(usage, false);
    }
    /* The record's lines name terminals, not issuers: the switch rows they need are every
     * issuer's, and a line of another issuer's card would be reported as not journaled. */
    if (issuer && record) {
        fprintf(stderr, "atlas-reconcile: --issuer and --record do not go together (a record"
                        " holds every issuer's requests)\n");
        return at_usage(usage, false);
    }

    char err[512];
    struct rec_file rf;
    memset(&rf, 0, sizeof rf);
    if (record && rec_read_file(record, &rf, err, sizeof err) != 0) {
        fprintf(stderr, "atlas-reconcile: record %s\n", err);
        return 2;
    }
    int status = 2;
    struct rc_ctx c;
    struct rc_window w;
    PGconn *sw = NULL, *iss = NULL;
    bool ctx = false;
    if (rc_ctx_init(&c) != 0) {
        fprintf(stderr, "atlas-reconcile: out of memory\n");
        goto out;
    }
    ctx = true;
    sw = connect_db("switch", swdb, SWITCH_SCHEMA);
    if (!sw)
        goto out;
    iss = connect_db("issuer", issdb, ISSUER_SCHEMA);
    if (!iss)
        goto out;
    if (rc_fetch_window(sw, from, to, slack, issuer, &w, err, sizeof err) != 0)
        goto fail;
    c.allow_pending = pending;
    snprintf(c.acquirer, sizeof c.acquirer, "%s", acquirer);
    c.record_now_us = w.to_us;
    c.record = record ? &rf : NULL;
    if (rc_fetch_switch(sw, &w, &c, err, sizeof err) != 0 ||
        rc_fetch_switch_idents(sw, &w, &c, err, sizeof err) != 0 ||
        rc_fetch_transfers(sw, &w, &c, err, sizeof err) != 0 ||
        rc_fetch_issuer(iss, &w, &c, err, sizeof err) != 0 ||
        rc_fetch_named(sw, &w, &c, err, sizeof err) != 0 ||
        rc_fetch_wallets(iss, &c, err, sizeof err) != 0)
        goto fail;
    if (rc_run(&c) != 0) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    const struct rc_report_info info = { &w, record, pending };
    if (json) {
        if (rc_report_json(stdout, &c, &info) != 0) {
            snprintf(err, sizeof err, "the JSON report could not be built");
            goto fail;
        }
    } else {
        rc_report_text(stdout, &c, &info);
    }
    if (fflush(stdout) != 0) {
        snprintf(err, sizeof err, "writing the report failed");
        goto fail;
    }
    status = c.nmm == 0 ? 0 : 1;
    goto out;
fail:
    fprintf(stderr, "atlas-reconcile: %s\n", err);
    status = 2;
out:
    if (ctx)
        rc_ctx_free(&c);
    rec_file_free(&rf);
    PQfinish(sw);
    PQfinish(iss);
    return status;
}
