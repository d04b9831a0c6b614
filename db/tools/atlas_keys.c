/* atlas-keys: the operator's tool for the switch's keys (switch.keys, docs/keys.md). `list`
 * shows every key by name with its KCV and validity (never a key, not even under the LMK);
 * `rotate --issuer NAME` asks the running switchd for an issuer ZPK/ZAK change through a
 * switch.key_change_requests row and waits for its outcome; `import` loads a TR-31 key block
 * from a file through the HSM into switch.keys under the LMK. Blocking libpq and one blocking
 * TCP connection to the HSM (a CLI, not a daemon). Never prints or logs key material: KCVs
 * only. Commands are rows of one table: add one there. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "cli.h"
#include "db_internal.h" /* db_connect_at: the blocking connection of the db tools */
#include "hsm.h"         /* hsm_tr31_header_parse: the block is checked before it is sent */
#include "parse.h"

#define HSM_TIMEOUT_MS 5000

struct globals {
    const char *conninfo; /* "" = PG* environment */
    const char *hsm;      /* ADDR:PORT */
    unsigned header_len;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: atlas-keys [--db CONNINFO] [--hsm ADDR:PORT] [--header-len N] COMMAND ...\n"
            "commands:\n"
            "  list\n"
            "      every key: name, type, scheme, KCV, status, validity and who uses it\n"
            "  rotate --issuer NAME [--wait S]\n"
            "      change the issuer's ZPK/ZAK now (the switchd holding its link does it; waits\n"
            "      up to S seconds, default 30, 0 = do not wait)\n"
            "  import FILE --id KEY_ID --type TYPE (--kbpk KEY_ID | --kbpk-lmk KEY) [--replace]\n"
            "      load the TR-31 key block in FILE (wrapped under a ZMK acting as key block\n"
            "      protection key: the ZMK KEY_ID of switch.keys, or a ZMK under the LMK given\n"
            "      on the command line) through the HSM (A6 with an R block) into switch.keys\n"
            "      under the LMK as KEY_ID. TYPE: ZPK ZAK TPK TAK BDK PVK CVK MK-AC ZMK; the\n"
            "      block's key usage must fit it (the HSM answers 04 otherwise). --replace\n"
            "      overwrites an existing KEY_ID. Prints the key id, type and KCV.\n"
            "--hsm defaults to 127.0.0.1:1500, --header-len to 4; the database is --db or\n"
            "libpq's PG* environment.\n"
            "Exit: 0 done, 1 failed, 2 usage, 3 not finished in time (rotate).\n");
}

/* ---------------------------------------------------------------- the HSM, blocking */

/* Sends header ‖ body to the HSM and reads one answer into ans (NUL-terminated, the header
 * stripped). 0, or -1 with the reason printed. */
static int hsm_call(const struct globals *g, const char *body, char *ans, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    const char *why = NULL;
    if (!at_parse_hostport(g->hsm, &ss, &sslen, &why)) {
        fprintf(stderr, "atlas-keys: --hsm %s: %s\n", g->hsm, why ? why : "invalid");
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = { HSM_TIMEOUT_MS / 1000, 0 };
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (struct sockaddr *)&ss, sslen) != 0) {
        fprintf(stderr, "atlas-keys: cannot connect to the HSM at %s: %s\n", g->hsm,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t blen = strlen(body), len = g->header_len + blen;
    uint8_t req[12000];
    int rc = -1;
    if (len > 65535 || len + 2 > sizeof req) {
        fprintf(stderr, "atlas-keys: HSM command too long\n");
        goto out;
    }
    req[0] = (uint8_t)(len >> 8);
    req[1] = (uint8_t)len;
    for (unsigned i = 0; i < g->header_len; i++)
        req[2 + i] = (uint8_t)('0' + i % 10);
    memcpy(req + 2 + g->header_len, body, blen);
    for (size_t off = 0; off < len + 2;) {
        ssize_t n = send(fd, req + off, len + 2 - off, MSG_NOSIGNAL);
        if (n <= 0) {
            fprintf(stderr, "atlas-keys: HSM send failed: %s\n", strerror(errno));
            goto out;
        }
        off += (size_t)n;
    }
    uint8_t hdr[2];
    size_t got = 0, want = 2;
    uint8_t *dst = hdr;
    for (int part = 0; part < 2; part++) {
        while (got < want) {
            ssize_t n = recv(fd, dst + got, want - got, 0);
            if (n <= 0) {
                fprintf(stderr, "atlas-keys: no answer from the HSM (%s)\n",
                        n == 0 ? "connection closed" : strerror(errno));
                goto out;
            }
            got += (size_t)n;
        }
        if (part == 0) {
            want = (size_t)hdr[0] << 8 | hdr[1];
            if (want < g->header_len + 4 || want >= sizeof req) {
                fprintf(stderr, "atlas-keys: malformed HSM answer\n");
                goto out;
            }
            dst = req;
            got = 0;
        }
    }
    if (want - g->header_len >= cap) {
        fprintf(stderr, "atlas-keys: HSM answer too long\n");
        goto out;
    }
    memcpy(ans, req + g->header_len, want - g->header_len);
    ans[want - g->header_len] = '\0';
    rc = 0;
out:
    OPENSSL_cleanse(req, sizeof req);
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------- import */

static const struct {
    const char *name; /* switch.keys.key_type */
    const char *code; /* payShield key type code */
} key_types[] = {
    { "ZMK", "000" }, { "ZPK", "001" }, { "TPK", "002" }, { "PVK", "002" },   { "TAK", "003" },
    { "ZAK", "008" }, { "BDK", "009" }, { "CVK", "402" }, { "MK-AC", "109" },
};

/* The key block in the file at path: its first line that is not blank or a '#' comment,
 * trimmed, into out. 0 or -1 with the reason printed. */
static int read_block(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "atlas-keys: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[10100];
    int rc = -1;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, "\r\n");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == 0 || *p == '#')
            continue;
        if (n >= cap) {
            fprintf(stderr, "atlas-keys: %s: key block too long\n", path);
            break;
        }
        memcpy(out, p, n);
        out[n] = '\0';
        rc = 0;
        break;
    }
    if (rc != 0 && feof(f))
        fprintf(stderr, "atlas-keys: %s: no key block in the file\n", path);
    fclose(f);
    return rc;
}

/* switch.keys.scheme for a key written under the LMK as text. */
static const char *scheme_of_text(const char *text)
{
    switch (text[0]) {
    case 'T':
    case 'Y':
        return "TDES-3KEY";
    case 'A':
        return strlen(text) == 33 ? "AES-128" : "TDES-2KEY";
    default:
        return "TDES-2KEY";
    }
}

static int cmd_import(int argc, char **argv, const struct globals *g)
{
    const char *id = NULL, *type = NULL, *kbpk_id = NULL, *kbpk_lmk = NULL;
    bool replace = false;
    static const struct option opts[] = {
        { "id", required_argument, NULL, 'i' },
        { "type", required_argument, NULL, 't' },
        { "kbpk", required_argument, NULL, 'k' },
        { "kbpk-lmk", required_argument, NULL, 'l' },
        { "replace", no_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    optind = 0; /* glibc: 0 re-initializes getopt (the "+" of the first scan included) */
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            id = optarg;
            break;
        case 't':
            type = optarg;
            break;
        case 'k':
            kbpk_id = optarg;
            break;
        case 'l':
            kbpk_lmk = optarg;
            break;
        case 'r':
            replace = true;
            break;
        case 'h':
        default:
            return at_usage(usage, c == 'h');
        }
    }
    if (optind + 1 != argc || !id || !type || (!kbpk_id == !kbpk_lmk)) {
        fprintf(stderr, "atlas-keys import: FILE, --id, --type and one of --kbpk / --kbpk-lmk "
                        "are required\n");
        return 2;
    }
    const char *code = NULL;
    for (size_t i = 0; i < sizeof key_types / sizeof key_types[0]; i++)
        if (strcmp(type, key_types[i].name) == 0)
            code = key_types[i].code;
    if (!code) {
        fprintf(stderr, "atlas-keys import: unknown --type %s\n", type);
        return 2;
    }
    char block[10000];
    if (read_block(argv[optind], block, sizeof block) != 0)
        return 1;
    struct hsm_tr31_header hd;
    if (hsm_tr31_header_parse(block, strlen(block), &hd) != HSM_OK) {
        fprintf(stderr, "atlas-keys import: %s does not hold a valid TR-31 key block header\n",
                argv[optind]);
        return 1;
    }

    struct db_error err = { 0 };
    PGconn *conn = db_connect_at(g->conninfo, &err);
    if (!conn) {
        fprintf(stderr, "atlas-keys: cannot connect to the database: %s\n", err.message);
        return 1;
    }
    int rc = 1;
    PGresult *r = NULL;
    char kbpk[256];
    if (kbpk_id) {
        const char *p[1] = { kbpk_id };
        r = PQexecParams(conn,
                         "SELECT key_under_lmk, key_type FROM switch.keys WHERE key_id = $1 AND "
                         "status = 'active'",
                         1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            fprintf(stderr, "atlas-keys import: no active key %s in switch.keys\n", kbpk_id);
            goto out;
        }
        if (strcmp(PQgetvalue(r, 0, 1), "ZMK") != 0) {
            fprintf(stderr, "atlas-keys import: %s is a %s, not a ZMK\n", kbpk_id,
                    PQgetvalue(r, 0, 1));
            goto out;
        }
        snprintf(kbpk, sizeof kbpk, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        r = NULL;
    } else {
        snprintf(kbpk, sizeof kbpk, "%s", kbpk_lmk);
    }

    /* A6 ‖ type ‖ ZMK ‖ R + block ‖ LMK scheme: U for a DES key, A for AES; a triple-length
     * DES key does not fit U (27), then T */
    static char body[11000], ans[1024];
    const char *schemes = hd.algorithm == 'A' ? "A" : "UT";
    int ec = -1;
    for (const char *s = schemes; *s; s++) {
        snprintf(body, sizeof body, "A6%s%sR%s%c", code, kbpk, block, *s);
        if (hsm_call(g, body, ans, sizeof ans) != 0)
            goto out;
        if (strncmp(ans, "A7", 2) != 0) {
            fprintf(stderr, "atlas-keys import: unexpected HSM answer %.2s\n", ans);
            goto out;
        }
        ec = (ans[2] - '0') * 10 + (ans[3] - '0');
        if (ec != 27)
            break;
    }
    OPENSSL_cleanse(body, sizeof body);
    if (ec != 0) {
        const char *what = ec == 1    ? "the block does not authenticate under the KBPK"
                           : ec == 4  ? "the block's key usage does not fit the key type"
                           : ec == 29 ? "the KBPK's mode of use does not allow unwrapping"
                           : ec == 10 ? "the KBPK under the LMK is corrupt"
                           : ec == 11 ? "the imported key has a parity error"
                                      : "refused";
        fprintf(stderr, "atlas-keys import: HSM error %02d: %s\n", ec, what);
        goto out;
    }
    size_t alen = strlen(ans);
    if (alen < 4 + 16 + 6) {
        fprintf(stderr, "atlas-keys import: short HSM answer\n");
        goto out;
    }
    char key[256], kcv[7];
    memcpy(kcv, ans + alen - 6, 6);
    kcv[6] = '\0';
    snprintf(key, sizeof key, "%.*s", (int)(alen - 4 - 6), ans + 4);
    const char *p[5] = { id, type, scheme_of_text(key), key, kcv };
    r = PQexecParams(conn,
                     replace ? "INSERT INTO switch.keys (key_id, key_type, scheme, key_under_lmk, "
                               "kcv) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id) DO UPDATE "
                               "SET key_type = $2, scheme = $3, key_under_lmk = $4, kcv = $5, "
                               "status = 'active'"
                             : "INSERT INTO switch.keys (key_id, key_type, scheme, key_under_lmk, "
                               "kcv) VALUES ($1, $2, $3, $4, $5)",
                     5, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        fprintf(stderr, "atlas-keys import: cannot store %s: %s\n", id,
                state && strcmp(state, "23505") == 0 ? "the key id exists (use --replace)"
                                                     : PQresultErrorMessage(r));
        goto out;
    }
    printf("imported %s %s kcv=%s usage=%s mode=%c\n", id, type, kcv, hd.usage, hd.mode);
    rc = 0;
out:
    PQclear(r);
    PQfinish(conn);
    OPENSSL_cleanse(block, sizeof block);
    return rc;
}

/* ---------------------------------------------------------------- list */

static int cmd_list_on(PGconn *conn)
{
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

static int cmd_rotate_on(PGconn *conn, const char *issuer, uint64_t wait_s)
{
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

/* Runs fn on a blocking connection to the database. */
static int with_db(const struct globals *g, int (*fn)(PGconn *, const char *, uint64_t),
                   const char *issuer, uint64_t wait_s)
{
    struct db_error err = { 0 };
    PGconn *conn = db_connect_at(g->conninfo, &err);
    if (!conn) {
        fprintf(stderr, "atlas-keys: cannot connect to the database: %s\n", err.message);
        return 1;
    }
    int rc = fn(conn, issuer, wait_s);
    PQfinish(conn);
    return rc;
}

static int list_fn(PGconn *conn, const char *issuer, uint64_t wait_s)
{
    (void)issuer;
    (void)wait_s;
    return cmd_list_on(conn);
}

static int cmd_list(int argc, char **argv, const struct globals *g)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "atlas-keys list: no argument expected\n");
        return 2;
    }
    return with_db(g, list_fn, NULL, 0);
}

static int cmd_rotate(int argc, char **argv, const struct globals *g)
{
    static const struct option lo[] = {
        { "issuer", required_argument, NULL, 'i' },
        { "wait", required_argument, NULL, 'w' },
        { NULL, 0, NULL, 0 },
    };
    const char *issuer = NULL;
    uint64_t wait_s = 30;
    int ch;
    optind = 0; /* glibc: 0 re-initializes getopt (the "+" of the first scan included) */
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (ch == 'i')
            issuer = optarg;
        else if (ch == 'w' && at_parse_u64(optarg, 3600, &wait_s))
            continue;
        else {
            fprintf(stderr, "usage: atlas-keys rotate --issuer NAME [--wait S]\n");
            return 2;
        }
    }
    if (!issuer || optind != argc) {
        fprintf(stderr, "usage: atlas-keys rotate --issuer NAME [--wait S]\n");
        return 2;
    }
    return with_db(g, cmd_rotate_on, issuer, wait_s);
}

/* ---------------------------------------------------------------- dispatch */

/* One row per subcommand. */
static const struct {
    const char *name;
    int (*run)(int argc, char **argv, const struct globals *g);
} commands[] = {
    { "list", cmd_list },
    { "rotate", cmd_rotate },
    { "import", cmd_import },
};

int main(int argc, char **argv)
{
    struct globals g = { .conninfo = "", .hsm = "127.0.0.1:1500", .header_len = 4 };
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "hsm", required_argument, NULL, 's' },
        { "header-len", required_argument, NULL, 'H' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    uint64_t hl;
    /* '+': stop at the subcommand, whose options are its own */
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            g.conninfo = optarg;
            break;
        case 's':
            g.hsm = optarg;
            break;
        case 'H':
            if (!at_parse_u64(optarg, 64, &hl)) {
                fprintf(stderr, "atlas-keys: --header-len must be 0..64\n");
                return 2;
            }
            g.header_len = (unsigned)hl;
            break;
        case 'h':
        default:
            return at_usage(usage, c == 'h');
        }
    }
    if (optind >= argc)
        return at_usage(usage, false);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[optind], commands[i].name) == 0)
            return commands[i].run(argc - optind, argv + optind, &g);
    fprintf(stderr, "atlas-keys: unknown command %s\n", argv[optind]);
    return at_usage(usage, false);
}
