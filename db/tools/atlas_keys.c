/* atlas-keys: the operator's view of switch.keys and the door to a key change (docs/keys.md).
 * `list` shows every key by name with its KCV and validity (never a key, not even under the
 * LMK); `rotate --issuer NAME` asks the running switchd for an issuer ZPK/ZAK change through a
 * switch.key_change_requests row and waits for its outcome. Blocking libpq (a CLI); --db CONNINFO
 * or libpq's PG* environment. Commands are rows of one table: add one there. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db_internal.h" /* libpq */
#include "parse.h"

struct keys_cmd {
    const char *name;
    int (*run)(PGconn *conn, int argc, char **argv); /* argv[0] is the command's name */
    const char *usage;
};

static const struct keys_cmd *find_cmd(const char *name);

/* ---------------------------------------------------------------- list */

static int cmd_list(PGconn *conn, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "atlas-keys list: no argument expected\n");
        return 2;
    }
    /* Who uses each key: the issuer or terminal row naming it (a retired generation has none). */
    PGresult *r = PQexec(
        conn,
        "SELECT k.key_id, k.key_type, k.scheme, k.kcv, k.status,"
        " to_char(k.valid_from AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
        " coalesce(to_char(k.valid_to AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '-'),"
        " coalesce((SELECT string_agg(u, ',') FROM ("
        "   SELECT i.issuer_id AS u FROM switch.issuers i"
        "    WHERE k.key_id IN (i.zpk_key_id, i.zak_key_id, i.zmk_key_id)"
        "   UNION SELECT t.acquirer_id || '/' || t.terminal_id FROM switch.terminals t"
        "    WHERE k.key_id IN (t.tpk_key_id, t.tak_key_id, t.bdk_key_id, t.tmk_key_id)"
        "   UNION SELECT 'route ' || b.prefix FROM switch.bin_routes b"
        "    WHERE k.key_id IN (b.imk_ac_key, b.cvk_key)) x), k.owner, '-')"
        " FROM switch.keys k ORDER BY k.key_id");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "atlas-keys list: %s", PQerrorMessage(conn));
        PQclear(r);
        return 1;
    }
    printf("%-28s %-5s %-9s %-6s %-7s %-20s %-20s %s\n", "KEY", "TYPE", "SCHEME", "KCV", "STATUS",
           "VALID_FROM", "VALID_TO", "USED_BY");
    for (int i = 0; i < PQntuples(r); i++)
        printf("%-28s %-5s %-9s %-6s %-7s %-20s %-20s %s\n", PQgetvalue(r, i, 0),
               PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
               PQgetvalue(r, i, 5), PQgetvalue(r, i, 6), PQgetvalue(r, i, 7));
    PQclear(r);
    return 0;
}

/* ---------------------------------------------------------------- rotate */

static int cmd_rotate(PGconn *conn, int argc, char **argv)
{
    static const struct option lo[] = {
        { "issuer", required_argument, NULL, 'i' },
        { "wait", required_argument, NULL, 'w' },
        { NULL, 0, NULL, 0 },
    };
    const char *issuer = NULL;
    uint64_t wait_s = 30;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (ch == 'i')
            issuer = optarg;
        else if (ch == 'w' && at_parse_u64(optarg, 3600, &wait_s))
            continue;
        else {
            fprintf(stderr, "usage: atlas-keys %s\n", find_cmd("rotate")->usage);
            return 2;
        }
    }
    if (!issuer || optind != argc) {
        fprintf(stderr, "usage: atlas-keys %s\n", find_cmd("rotate")->usage);
        return 2;
    }
    const char *v[] = { issuer };
    PGresult *r = PQexecParams(conn,
                               "INSERT INTO switch.key_change_requests (issuer_id, requested_by)"
                               " SELECT issuer_id, current_user || ' (atlas-keys)'"
                               " FROM switch.issuers WHERE issuer_id = $1 RETURNING request_id",
                               1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "atlas-keys rotate: %s", PQerrorMessage(conn));
        PQclear(r);
        return 1;
    }
    if (PQntuples(r) != 1) {
        fprintf(stderr, "atlas-keys rotate: no issuer %s in switch.issuers\n", issuer);
        PQclear(r);
        return 1;
    }
    char id[24];
    snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    printf("request %s: key change of %s asked for\n", id, issuer);
    fflush(stdout);
    if (wait_s == 0)
        return 0;
    const char *idv[] = { id };
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        r = PQexecParams(conn,
                         "SELECT status, coalesce(result, '') FROM switch.key_change_requests"
                         " WHERE request_id = $1::bigint",
                         1, NULL, idv, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            fprintf(stderr, "atlas-keys rotate: %s", PQerrorMessage(conn));
            PQclear(r);
            return 1;
        }
        const char *st = PQgetvalue(r, 0, 0);
        if (strcmp(st, "done") == 0 || strcmp(st, "failed") == 0) {
            bool ok = st[0] == 'd';
            printf("request %s: %s: %s\n", id, st, PQgetvalue(r, 0, 1));
            PQclear(r);
            return ok ? 0 : 1;
        }
        PQclear(r);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((uint64_t)(now.tv_sec - t0.tv_sec) >= wait_s)
            break;
        usleep(200 * 1000);
    }
    /* Not claimed in time: withdrawn, so that no switchd changes the keys later by surprise. A
     * claimed one is left to the switchd that has it (it ends done or failed on its own). */
    r = PQexecParams(conn,
                     "UPDATE switch.key_change_requests SET status = 'failed', finished_at = now(),"
                     " result = 'withdrawn: no switchd took it in time'"
                     " WHERE request_id = $1::bigint AND status = 'requested'",
                     1, NULL, idv, NULL, NULL, 0);
    bool withdrawn = PQresultStatus(r) == PGRES_COMMAND_OK && atoi(PQcmdTuples(r)) == 1;
    PQclear(r);
    fprintf(stderr,
            withdrawn ? "atlas-keys rotate: request %s withdrawn: no switchd with a link to %s"
                        " took it within %llu s\n"
                      : "atlas-keys rotate: request %s of %s still in progress after %llu s"
                        " (see switch.key_change_requests)\n",
            id, issuer, (unsigned long long)wait_s);
    return 3;
}

/* ---------------------------------------------------------------- dispatch */

static const struct keys_cmd cmds[] = {
    { "list", cmd_list, "list                      every key: name, type, KCV, validity, user" },
    { "rotate", cmd_rotate,
      "rotate --issuer NAME [--wait S]  change the issuer's ZPK/ZAK now (switchd does it; waits\n"
      "                                 up to S seconds, default 30, 0 = do not wait)" },
};

static const struct keys_cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmds[i].name, name) == 0)
            return &cmds[i];
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: atlas-keys [--db CONNINFO] COMMAND [options]\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %s\n", cmds[i].usage);
    fprintf(f, "Exit: 0 done, 1 failed, 2 usage, 3 not finished in time (docs/keys.md).\n");
}

int main(int argc, char **argv)
{
    const char *conninfo = "";
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            conninfo = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    const struct keys_cmd *c = i < argc ? find_cmd(argv[i]) : NULL;
    if (!c) {
        usage(stderr);
        return 2;
    }
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "atlas-keys: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }
    int rc = c->run(conn, argc - i, argv + i);
    PQfinish(conn);
    return rc;
}
