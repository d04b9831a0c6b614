/* atlas-db: the database administration tool — applies migrations, reports the schema status,
 * manages the journal's daily partitions. Blocking libpq (a CLI, not a daemon). Connects with
 * --db CONNINFO or libpq's PG* environment. */
#include <dirent.h>
#include <limits.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_internal.h" /* the blocking schema work, libpq */
#include "cli.h"
#include "parse.h"
#include "hex.h"
#include "log.h"

#include <openssl/crypto.h>

#ifndef ATLAS_SOURCE_DIR
#define ATLAS_SOURCE_DIR "."
#endif
/* Where the package puts the migrations, relative to the directory of atlas-db (the install
 * rules set it: ../share/atlas/migrations from bin). */
#ifndef ATLAS_INSTALLED_MIGRATIONS
#define ATLAS_INSTALLED_MIGRATIONS "../share/atlas/migrations"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "usage: atlas-db [--db CONNINFO] [--dir MIGRATIONS_DIR] COMMAND\n"
            "commands:\n"
            "  migrate                     apply pending migrations (safe to run twice)\n"
            "  status                      schema version, applied and pending migrations,\n"
            "                              journal partitions; exit 1 if the schema is older\n"
            "                              than this build's or the DEFAULT partition has rows\n"
            "  check [--version N]         exit 0 if the schema is at least N (default: %d)\n"
            "  partitions [--ahead N] [--detach-before YYYY-MM-DD | --retain-days N]\n"
            "                              the journal's upkeep (daily, and at switchd start):\n"
            "                              create daily partitions from yesterday to today + N\n"
            "                              days (UTC, default 7), make the DEFAULT partition\n"
            "                              refuse rows, detach the partitions of days before a\n"
            "                              date (or older than N days), build the card and RRN\n"
            "                              lookup indexes of closed days; exit 1 if the DEFAULT\n"
            "                              partition holds rows\n"
            "  alias MSISDN PAN            register a mobile number (+ and 8..15 digits) as the\n"
            "                              alias of a wallet card for transfers (DE 103); the\n"
            "                              PAN is stored sealed and hashed under the switch's\n"
            "                              keys ATLAS_PAN_SEAL_KEY and ATLAS_PAN_HMAC_KEY\n"
            "  negative add ISSUER PAN STATUS\n"
            "                              put a card on ISSUER's negative file for stand-in\n"
            "                              (blocked|lost|stolen|expired|closed|fraud; replaces\n"
            "                              its status); the PAN is kept only as its keyed hash\n"
            "                              (ATLAS_PAN_HMAC_KEY)\n"
            "  negative remove ISSUER PAN  take a card off the negative file\n"
            "  negative pvv ISSUER PAN PVKI PVV\n"
            "                              publish a card's Visa PVV so stand-in can verify its\n"
            "                              PIN (with the issuer's PVK held in switch.keys)\n"
            "  negative ibm ISSUER PAN OFFSET\n"
            "                              the same for an IBM 3624 card: its PIN offset (the\n"
            "                              decimalization table is the issuer's, in\n"
            "                              switch.stand_in_rules)\n"
            "The migrations directory is --dir, else $ATLAS_MIGRATIONS, else the installed\n"
            "one next to this program (%s from its directory, e.g.\n"
            "/usr/share/atlas/migrations), else db/migrations of the source tree this program\n"
            "was built from (%s/db/migrations).\n",
            DB_SCHEMA_VERSION, ATLAS_INSTALLED_MIGRATIONS, ATLAS_SOURCE_DIR);
}

/* The migrations of an installed atlas-db: ATLAS_INSTALLED_MIGRATIONS from the directory of
 * the running program (/proc/self/exe), so a package unpacked anywhere (dpkg -x, another
 * --prefix) finds its own. Whether that directory exists; its path in buf. */
static bool installed_migrations(char *buf, size_t cap)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = '\0';
    char path[4200], real[PATH_MAX];
    int len = snprintf(path, sizeof path, "%s/%s", exe, ATLAS_INSTALLED_MIGRATIONS);
    if (len < 0 || (size_t)len >= sizeof path || !realpath(path, real))
        return false;
    DIR *d = opendir(real);
    if (!d)
        return false;
    closedir(d);
    snprintf(buf, cap, "%s", real);
    return true;
}

static const char *migrations_dir(const char *opt)
{
    static char installed[PATH_MAX];
    if (opt)
        return opt;
    const char *env = getenv("ATLAS_MIGRATIONS");
    if (env && *env)
        return env;
    if (installed_migrations(installed, sizeof installed))
        return installed;
    return ATLAS_SOURCE_DIR "/db/migrations";
}

static void print_line(const char *line)
{
    printf("atlas-db: %s\n", line);
}

static int fail(const char *what, const struct db_error *err)
{
    fprintf(stderr, "atlas-db: %s: %s%s%s%s\n", what, err->message, err->sqlstate[0] ? " (" : "",
            err->sqlstate, err->sqlstate[0] ? ")" : "");
    return 1;
}

static PGresult *query(PGconn *conn, const char *sql, int n, const char *const *vals)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fprintf(stderr, "atlas-db: %s", PQerrorMessage(conn));
        PQclear(res);
        return NULL;
    }
    return res;
}

/* A key from the environment (hex), at least min bytes. */
static int env_key(const char *name, size_t min, uint8_t *out, size_t cap, size_t *len)
{
    const char *hex = getenv(name);
    int n = hex ? at_hex_decode(hex, strlen(hex), out, cap) : -1;
    if (n < (int)min) {
        fprintf(stderr, "atlas-db: %s must hold at least %zu bytes of hex\n", name, min);
        return -1;
    }
    *len = (size_t)n;
    return 0;
}

static int cmd_alias(const char *conninfo, const char *msisdn, const char *pan)
{
    uint8_t hkey[64], skey[32], hmac[32], sealed[DB_PAN_SEALED_MAX];
    size_t hlen, slen, n = strlen(pan);
    char masked[20];
    struct db_error err = { 0 };
    int rc = 1;
    if (!at_is_digits(pan, 12, 19) || !at_luhn_ok(pan, n)) {
        fprintf(stderr, "atlas-db: alias: the PAN must be 12..19 digits passing the Luhn check\n");
        return 2;
    }
    if (env_key("ATLAS_PAN_HMAC_KEY", 16, hkey, sizeof hkey, &hlen) != 0 ||
        env_key("ATLAS_PAN_SEAL_KEY", 32, skey, sizeof skey, &slen) != 0)
        goto out;
    int sl = db_pan_seal(skey, pan, n, sealed, sizeof sealed);
    if (sl <= 0 || db_pan_hmac(hkey, hlen, pan, n, hmac) != 0) {
        fprintf(stderr, "atlas-db: alias: the PAN cannot be sealed\n");
        goto out;
    }
    at_mask_pan(pan, n, masked);
    if (db_alias_put(conninfo, msisdn, masked, hmac, sealed, (size_t)sl, &err) != 0) {
        rc = fail("alias", &err);
        goto out;
    }
    printf("atlas-db: %s -> %s\n", msisdn, masked);
    rc = 0;
out:
    OPENSSL_cleanse(hkey, sizeof hkey);
    OPENSSL_cleanse(skey, sizeof skey);
    return rc;
}

/* The issuer's negative file and published PVVs (db/migrations/0013_stand_in.sql): what an
 * issuer maintains for the switch's stand-in. argv: add ISSUER PAN STATUS | remove ISSUER PAN |
 * pvv ISSUER PAN PVKI PVV. */
static int cmd_negative(const char *conninfo, int argc, char **argv)
{
    uint8_t hkey[64], hmac[32];
    size_t hlen;
    char hex[65], masked[20];
    int rc = 1;
    bool add = argc == 4 && strcmp(argv[0], "add") == 0;
    bool del = argc == 3 && strcmp(argv[0], "remove") == 0;
    bool pvv = argc == 5 && strcmp(argv[0], "pvv") == 0;
    bool ibm = argc == 4 && strcmp(argv[0], "ibm") == 0;
    if (!add && !del && !pvv && !ibm)
        return at_usage(usage, false);
    const char *pan = argv[2];
    size_t n = strlen(pan);
    if (!at_is_digits(pan, 12, 19) || !at_luhn_ok(pan, n)) {
        fprintf(stderr,
                "atlas-db: negative: the PAN must be 12..19 digits passing the Luhn check\n");
        return 2;
    }
    if (pvv && (!at_is_digits(argv[3], 1, 1) || !at_is_digits(argv[4], 4, 4))) {
        fprintf(stderr, "atlas-db: negative pvv: PVKI is one digit, PVV four\n");
        return 2;
    }
    if (ibm && !at_is_digits(argv[3], 4, 12)) {
        fprintf(stderr, "atlas-db: negative ibm: the offset is 4..12 digits\n");
        return 2;
    }
    if (env_key("ATLAS_PAN_HMAC_KEY", 16, hkey, sizeof hkey, &hlen) != 0)
        return 1;
    if (db_pan_hmac(hkey, hlen, pan, n, hmac) != 0) {
        fprintf(stderr, "atlas-db: negative: the PAN cannot be hashed\n");
        goto out;
    }
    at_hex_encode(hmac, 32, hex);
    at_mask_pan(pan, n, masked);
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "atlas-db: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        goto out;
    }
    const char *vals[] = { argv[1], hex, argc > 3 ? argv[3] : NULL, argc > 4 ? argv[4] : NULL };
    const char *sql;
    if (add)
        sql = "INSERT INTO switch.negative_file (issuer_id, pan_hmac, status)"
              " VALUES ($1, decode($2, 'hex'), $3) ON CONFLICT (issuer_id, pan_hmac)"
              " DO UPDATE SET status = EXCLUDED.status, updated_at = now()";
    else if (del)
        sql = "DELETE FROM switch.negative_file WHERE issuer_id = $1"
              " AND pan_hmac = decode($2, 'hex')";
    else if (pvv)
        sql = "INSERT INTO switch.stand_in_pvv (issuer_id, pan_hmac, pvki, pvv)"
              " VALUES ($1, decode($2, 'hex'), $3::smallint, $4) ON CONFLICT (issuer_id, pan_hmac)"
              " DO UPDATE SET pvki = EXCLUDED.pvki, pvv = EXCLUDED.pvv, updated_at = now()";
    else
        sql = "INSERT INTO switch.stand_in_pin_offset (issuer_id, pan_hmac, pin_offset)"
              " VALUES ($1, decode($2, 'hex'), $3) ON CONFLICT (issuer_id, pan_hmac)"
              " DO UPDATE SET pin_offset = EXCLUDED.pin_offset, updated_at = now()";
    PGresult *res = query(conn, sql, argc - 1, vals);
    if (res) {
        printf("atlas-db: %s %s %s%s%s\n", argv[0], argv[1], masked, add ? " " : "",
               add ? argv[3] : "");
        PQclear(res);
        rc = 0;
    }
    PQfinish(conn);
out:
    OPENSSL_cleanse(hkey, sizeof hkey);
    return rc;
}

/* The journal's DEFAULT partition must stay empty (docs/db.md "Journal upkeep"): a row there is
 * a day with no partition, and it blocks creating that day's partition later. Says whether it
 * refuses rows (the guard that `partitions` adds) and how many it holds: 0 when empty, 1 when it
 * holds rows (a warning printed), -1 when it cannot be read. */
static int default_partition(PGconn *conn)
{
    PGresult *res = query(conn,
                          "SELECT (SELECT count(*) FROM switch.authorizations_default),"
                          " EXISTS (SELECT 1 FROM pg_constraint WHERE conname ="
                          " 'authorizations_default_refuses' AND conrelid ="
                          " 'switch.authorizations_default'::regclass)",
                          0, NULL);
    if (!res || PQntuples(res) != 1) {
        PQclear(res);
        return -1;
    }
    bool rows = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
    printf("default partition: %s row(s), %s\n", PQgetvalue(res, 0, 0),
           strcmp(PQgetvalue(res, 0, 1), "t") == 0
               ? "refuses rows"
               : "accepts rows (run `atlas-db partitions` to make it refuse them)");
    if (rows)
        printf("WARNING: %s journal rows in the default partition: days without a partition;"
               " move them into their day's partition (docs/db.md \"Journal upkeep\")\n",
               PQgetvalue(res, 0, 0));
    PQclear(res);
    return rows ? 1 : 0;
}

static int cmd_status(PGconn *conn, const char *dir)
{
    PGresult *res = query(conn,
                          "SELECT version, name, applied_at FROM public.schema_migrations"
                          " ORDER BY version",
                          0, NULL);
    if (!res) {
        printf("schema: not initialised (run `atlas-db migrate`)\n");
        return 1;
    }
    int version = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        printf("applied  %s  %s\n", PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
        version = atoi(PQgetvalue(res, i, 0));
    }
    /* Files in the directory that are not recorded yet. */
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 9 || strcmp(e->d_name + len - 4, ".sql") != 0)
            continue;
        bool applied = false;
        for (int i = 0; i < PQntuples(res) && !applied; i++)
            applied = strcmp(PQgetvalue(res, i, 1), e->d_name) == 0;
        if (!applied)
            printf("pending  %s\n", e->d_name);
    }
    if (d)
        closedir(d);
    PQclear(res);
    printf("schema version: %d (this build needs %d)\n", version, DB_SCHEMA_VERSION);
    res = query(conn,
                "SELECT count(*), min(c.relname), max(c.relname) FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = to_regclass('switch.authorizations')"
                " AND c.relname ~ '^authorizations_[0-9]{8}$'",
                0, NULL);
    if (res && PQntuples(res) == 1)
        printf("journal partitions: %s (%s .. %s)\n", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
               PQgetvalue(res, 0, 2));
    PQclear(res);
    int dflt = default_partition(conn);
    return version >= DB_SCHEMA_VERSION && dflt == 0 ? 0 : 1;
}

/* The operators' lookup indexes (pan_hmac hash, rrn) of the closed days (before today, UTC),
 * built per partition once the day is over (migration 0018: off the writer's hot path).
 * CONCURRENTLY, so a late row of yesterday is never blocked; an invalid index left by an
 * interrupted build is dropped and built again. 0 or -1. */
static int lookup_indexes(PGconn *conn)
{
    PGresult *res =
        query(conn,
              "SELECT partition, index_name, method, col, invalid FROM"
              " switch.journal_lookup_indexes_missing((now() AT TIME ZONE 'UTC')::date)",
              0, NULL);
    if (!res)
        return -1;
    int rc = 0, built = 0;
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        char sql[512];
        const char *part = PQgetvalue(res, i, 0), *name = PQgetvalue(res, i, 1);
        if (strcmp(PQgetvalue(res, i, 4), "t") == 0) {
            snprintf(sql, sizeof sql, "DROP INDEX CONCURRENTLY IF EXISTS switch.\"%s\"", name);
            PGresult *r = query(conn, sql, 0, NULL);
            rc = r ? 0 : -1;
            PQclear(r);
        }
        if (rc != 0)
            break;
        /* Names come from pg_class (authorizations_YYYYMMDD, checked by the function's regex) and
         * from the function's constants: nothing from outside. */
        snprintf(sql, sizeof sql,
                 "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"%s\" ON switch.\"%s\" USING %s (%s)",
                 name, part, PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
        PGresult *r = query(conn, sql, 0, NULL);
        rc = r ? 0 : -1;
        PQclear(r);
        if (rc == 0)
            built++;
    }
    PQclear(res);
    printf("atlas-db: built %d lookup index(es) of closed days\n", built);
    return rc;
}

/* The journal's upkeep, idempotent (docs/db.md "Journal upkeep"): the day partitions from
 * yesterday (UTC: request_date is the UTC date of DE 7) to today + ahead; the DEFAULT partition
 * made to refuse rows (a CHECK (false) constraint, NOT VALID so that adding it never scans:
 * a row of a day without a partition then fails loudly — 23514 naming the constraint — instead
 * of landing there); the partitions of days before detach_before, or older than retain days
 * (-1: none), detached (not dropped: archive them, docs/db.md), and the finished reversals of those
 * days moved to switch.reversal_archive, their finished advices to switch.advice_archive. */
static int cmd_partitions(PGconn *conn, uint64_t ahead, const char *detach_before, int64_t retain)
{
    char n[24];
    snprintf(n, sizeof n, "%llu", (unsigned long long)ahead + 2);
    const char *v[] = { n };
    PGresult *res = query(conn,
                          "SELECT switch.create_authorization_partitions("
                          "(now() AT TIME ZONE 'UTC')::date - 1, $1::int)",
                          1, v);
    if (!res)
        return 1;
    printf("atlas-db: created %s partition(s)\n", PQgetvalue(res, 0, 0));
    PQclear(res);
    res = query(conn,
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname ="
                " 'authorizations_default_refuses' AND conrelid ="
                " 'switch.authorizations_default'::regclass) THEN"
                " ALTER TABLE switch.authorizations_default ADD CONSTRAINT"
                " authorizations_default_refuses CHECK (false) NOT VALID; END IF; END $$",
                0, NULL);
    if (!res)
        return 1;
    PQclear(res);
    char before[24] = "";
    if (detach_before) {
        snprintf(before, sizeof before, "%s", detach_before);
    } else if (retain >= 0) {
        char r[24];
        snprintf(r, sizeof r, "%lld", (long long)retain);
        const char *rv[] = { r };
        res = query(conn, "SELECT ((now() AT TIME ZONE 'UTC')::date - $1::int)::text", 1, rv);
        if (!res)
            return 1;
        snprintf(before, sizeof before, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
    }
    if (before[0]) {
        const char *d[] = { before };
        res = query(conn, "SELECT switch.detach_authorization_partitions($1::date)", 1, d);
        if (!res)
            return 1;
        for (int i = 0; i < PQntuples(res); i++)
            printf("atlas-db: detached switch.%s\n", PQgetvalue(res, i, 0));
        PQclear(res);
        /* The finished reversals and advices of those days leave their queues, their sealed
         * PAN with them (migrations 0021, 0022); a pending one stays. */
        static const char *const archive[][2] = {
            { "SELECT switch.archive_reversals($1::date)", "reversal" },
            { "SELECT switch.archive_advices($1::date)", "advice" },
        };
        for (size_t k = 0; k < sizeof archive / sizeof archive[0]; k++) {
            res = query(conn, archive[k][0], 1, d);
            if (!res)
                return 1;
            printf("atlas-db: archived %s finished %s(s) of days before %s\n",
                   PQgetvalue(res, 0, 0), archive[k][1], before);
            PQclear(res);
        }
    }
    if (lookup_indexes(conn) != 0)
        return 1;
    return default_partition(conn) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *conninfo = "", *dir = NULL, *detach = NULL;
    uint64_t ahead = 7, version = DB_SCHEMA_VERSION, retain_days = 0;
    bool retain = false;
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "dir", required_argument, NULL, 'm' },
        { "ahead", required_argument, NULL, 'a' },
        { "detach-before", required_argument, NULL, 'b' },
        { "retain-days", required_argument, NULL, 'r' },
        { "version", required_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            conninfo = optarg;
            break;
        case 'm':
            dir = optarg;
            break;
        case 'a':
            if (!at_parse_u64(optarg, 3660, &ahead)) {
                fprintf(stderr, "atlas-db: --ahead wants a number of days (0..3660)\n");
                return 2;
            }
            break;
        case 'b':
            detach = optarg;
            break;
        case 'r':
            if (!at_parse_u64(optarg, 36600, &retain_days)) {
                fprintf(stderr, "atlas-db: --retain-days wants a number of days (0..36600)\n");
                return 2;
            }
            retain = true;
            break;
        case 'v':
            if (!at_parse_u64(optarg, 9999, &version)) {
                fprintf(stderr, "atlas-db: --version wants a number\n");
                return 2;
            }
            break;
        case 'h':
        default:
            return at_usage(usage, c == 'h');
        }
    }
    if (optind < argc && strcmp(argv[optind], "alias") == 0) {
        if (optind + 3 != argc)
            return at_usage(usage, false);
        return cmd_alias(conninfo, argv[optind + 1], argv[optind + 2]);
    }
    if (optind < argc && strcmp(argv[optind], "negative") == 0)
        return cmd_negative(conninfo, argc - optind - 1, argv + optind + 1);
    if (optind != argc - 1)
        return at_usage(usage, false);
    const char *cmd = argv[optind];
    if (strcmp(cmd, "migrate") && strcmp(cmd, "status") && strcmp(cmd, "check") &&
        strcmp(cmd, "partitions")) {
        fprintf(stderr, "atlas-db: unknown command '%s'\n", cmd);
        return at_usage(usage, false);
    }
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "atlas-db: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }
    int rc = 0;
    struct db_error err = { 0 };
    if (strcmp(cmd, "migrate") == 0) {
        int applied = 0;
        const char *d = migrations_dir(dir);
        if (db_migrate(conn, d, &applied, print_line, &err) != 0)
            rc = fail("migrate", &err);
        else
            printf("atlas-db: schema up to date (%d migration(s) applied now, from %s)\n", applied,
                   d);
    } else if (strcmp(cmd, "status") == 0) {
        rc = cmd_status(conn, migrations_dir(dir));
    } else if (strcmp(cmd, "check") == 0) {
        if (db_schema_check(conn, (int)version, &err) != 0)
            rc = fail("check", &err);
        else
            printf("atlas-db: schema ok (>= %llu)\n", (unsigned long long)version);
    } else {
        rc = cmd_partitions(conn, ahead, detach, retain ? (int64_t)retain_days : -1);
    }
    PQfinish(conn);
    return rc;
}
