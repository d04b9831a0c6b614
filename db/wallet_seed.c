/* The wallet schema's bulk loader for `issuer-sim seed` (blocking libpq, an offline tool):
 * wallets streamed with COPY into a temporary table, then one INSERT ... SELECT per batch —
 * wallets and opening entries together in bulk mode (triggers off, as a superuser), or through
 * the 0002 triggers otherwise. */
#include "db_internal.h"
#include "wallet.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"

#define COPY_BUF  (1 << 20) /* COPY data is sent in chunks of about this size */
#define COPY_LINE 512       /* longest line seed_line writes */

/* Bulk mode (triggers off): the wallets and their opening entries in one statement, the ledger
 * rows taking the new wallet ids from RETURNING (no join against the growing wallets table). */
static const char *const SQL_WALLETS_FAST =
    "WITH ins AS (INSERT INTO wallet.wallets (pan_hmac, pan_masked, expiry, currency, "
    "balance_minor, status, pin_method, pvki, pvv, pin_offset, daily_limit_minor, kyc_tier) "
    "SELECT pan_hmac, pan_masked, expiry, currency, balance, status, pin_method, pvki, pvv, "
    "pin_offset, daily_limit, coalesce(kyc_tier, 1) FROM seed ON CONFLICT (pan_hmac) DO NOTHING "
    "RETURNING wallet_id, balance_minor) "
    "INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor, balance_after_minor) "
    "SELECT wallet_id, 'opening:' || wallet_id, 'opening', balance_minor, balance_minor FROM ins "
    "WHERE balance_minor > 0";
static const char *const SQL_WALLETS_SLOW =
    "INSERT INTO wallet.wallets (pan_hmac, pan_masked, expiry, currency, status, "
    "pin_method, pvki, pvv, pin_offset, daily_limit_minor, kyc_tier) SELECT pan_hmac, "
    "pan_masked, expiry, currency, status, pin_method, pvki, pvv, pin_offset, daily_limit, "
    "coalesce(kyc_tier, 1) FROM seed "
    "ON CONFLICT (pan_hmac) DO NOTHING";
/* Trigger mode: opening balances, one 'opening' ledger row per new wallet; the ledger trigger
 * applies each row to its wallet (and overwrites balance_after_minor). */
static const char *const SQL_OPENING =
    "INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor, balance_after_minor) "
    "SELECT w.wallet_id, 'opening:' || w.wallet_id, 'opening', s.balance, s.balance "
    "FROM seed s JOIN wallet.wallets w USING (pan_hmac) WHERE s.balance > 0 AND NOT EXISTS "
    "(SELECT 1 FROM wallet.ledger l WHERE l.request_key = 'opening:' || w.wallet_id)";
static const char *const SQL_STAGING =
    "CREATE TEMP TABLE seed (pan_hmac bytea, pan_masked text, expiry text, currency "
    "smallint, balance bigint, status text, pin_method text, pvki smallint, pvv text, "
    "pin_offset text, daily_limit bigint, kyc_tier smallint)";

struct db_wallet_seeder {
    PGconn *pc;
    bool bulk;
    bool in_batch; /* BEGIN sent, COMMIT not yet */
    bool copying;  /* COPY FROM STDIN in progress */
    char *buf;     /* COPY lines not yet sent */
    size_t used;
};

/* err from a failed result (or the connection when res is NULL). */
static int seed_error(struct db_wallet_seeder *s, const PGresult *res, const char *what,
                      struct db_error *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char buf[512];
    snprintf(buf, sizeof buf, "%s: %s", what, msg ? msg : PQerrorMessage(s->pc));
    int code = (PQstatus(s->pc) == CONNECTION_BAD || !state) ? DB_E_CONN : DB_E_SQL;
    dbc_set_error(err, code, state, buf);
    return err->code;
}

/* Runs sql without parameters. 0, or an error (err filled unless NULL: an expected refusal). */
static int seed_exec(struct db_wallet_seeder *s, const char *sql, const char *what,
                     struct db_error *err)
{
    PGresult *r = PQexec(s->pc, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = err ? seed_error(s, r, what, err) : DB_E_SQL;
    PQclear(r);
    return rc;
}

int db_wallet_seeder_open(const char *conninfo, struct db_wallet_seeder **out, struct db_error *err)
{
    struct db_wallet_seeder *s = calloc(1, sizeof *s);
    if (s)
        s->buf = malloc(COPY_BUF);
    if (!s || !s->buf) {
        free(s);
        dbc_set_error(err, DB_E_SYS, NULL, "out of memory");
        return DB_E_SYS;
    }
    s->pc = PQconnectdb(conninfo ? conninfo : "");
    int rc = 0;
    if (PQstatus(s->pc) != CONNECTION_OK) {
        dbc_set_error(err, DB_E_CONN, NULL, PQerrorMessage(s->pc));
        rc = DB_E_CONN;
    }
    if (rc == 0)
        rc = db_schema_check(s->pc, DB_WALLET_SCHEMA_VERSION, err);
    /* Bulk mode needs a superuser (the throwaway cluster's owner): triggers off for this session,
     * so balances and opening entries are written together instead of one UPDATE per wallet. */
    if (rc == 0)
        s->bulk = seed_exec(s, "SET session_replication_role = replica", NULL, NULL) == 0;
    if (rc == 0)
        rc = seed_exec(s, SQL_STAGING, "staging table", err);
    if (rc != 0) {
        db_wallet_seeder_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

bool db_wallet_seeder_bulk(const struct db_wallet_seeder *s)
{
    return s->bulk;
}

int db_wallet_seed_begin(struct db_wallet_seeder *s, struct db_error *err)
{
    if (s->in_batch) {
        dbc_set_error(err, DB_E_INVALID, NULL, "a batch is already open");
        return DB_E_INVALID;
    }
    int rc = seed_exec(s, "BEGIN", "BEGIN", err);
    if (rc != 0)
        return rc;
    s->in_batch = true;
    rc = seed_exec(s, "TRUNCATE seed", "TRUNCATE", err);
    if (rc != 0)
        return rc;
    PGresult *r = PQexec(s->pc, "COPY seed FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN)
        rc = seed_error(s, r, "COPY", err);
    PQclear(r);
    s->copying = rc == 0;
    s->used = 0;
    return rc;
}

/* Sends the COPY lines gathered so far. */
static int seed_flush(struct db_wallet_seeder *s, struct db_error *err)
{
    if (s->used > 0 && PQputCopyData(s->pc, s->buf, (int)s->used) != 1)
        return seed_error(s, NULL, "COPY", err);
    s->used = 0;
    return 0;
}

/* True when s may go into a COPY text field as it is (no escaping needed). */
static bool copy_safe(const char *v, size_t cap)
{
    size_t n = strnlen(v, cap);
    if (n == cap)
        return false;
    return strcspn(v, "\t\n\r\\") == n;
}

/* Writes row as one COPY text line (the staging table's columns) at the end of the buffer. */
static int seed_line(struct db_wallet_seeder *s, const struct db_wallet_seed_row *w)
{
    char hx[65], pvki[12] = "\\N", limit[24] = "\\N", tier[12] = "\\N";
    const char *pvv = "\\N", *off = "\\N", *method = "ibm3624";
    static const char *const status[] = { "active", "blocked", "lost" };
    if ((unsigned)w->status > DB_WALLET_LOST || !copy_safe(w->pan_masked, sizeof w->pan_masked) ||
        !copy_safe(w->expiry, sizeof w->expiry) || !copy_safe(w->pvv, sizeof w->pvv) ||
        !copy_safe(w->pin_offset, sizeof w->pin_offset))
        return -1;
    at_hex_encode(w->pan_hmac, 32, hx);
    if (w->pin_method == DB_WALLET_PIN_PVV) {
        method = "pvv";
        snprintf(pvki, sizeof pvki, "%d", w->pvki);
        pvv = w->pvv;
    } else {
        off = w->pin_offset;
    }
    if (w->daily_limit_minor >= 0)
        snprintf(limit, sizeof limit, "%lld", (long long)w->daily_limit_minor);
    if (w->kyc_tier > 0)
        snprintf(tier, sizeof tier, "%d", w->kyc_tier);
    int n = snprintf(s->buf + s->used, COPY_BUF - s->used,
                     "\\\\x%s\t%s\t%s\t%d\t%lld\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", hx, w->pan_masked,
                     w->expiry, w->currency, (long long)w->balance_minor, status[w->status], method,
                     pvki, pvv, off, limit, tier);
    if (n <= 0 || (size_t)n >= COPY_BUF - s->used)
        return -1;
    s->used += (size_t)n;
    return 0;
}

int db_wallet_seed_add(struct db_wallet_seeder *s, const struct db_wallet_seed_row *row,
                       struct db_error *err)
{
    if (!s->copying) {
        dbc_set_error(err, DB_E_INVALID, NULL, "no batch open");
        return DB_E_INVALID;
    }
    if (seed_line(s, row) != 0) {
        dbc_set_error(err, DB_E_INVALID, NULL, "a wallet row that COPY text cannot carry");
        return DB_E_INVALID;
    }
    return COPY_BUF - s->used < 2 * COPY_LINE ? seed_flush(s, err) : 0;
}

/* Ends the COPY of the batch's lines. */
static int seed_copy_end(struct db_wallet_seeder *s, struct db_error *err)
{
    int rc = seed_flush(s, err);
    s->copying = false;
    if (rc != 0)
        return rc;
    if (PQputCopyEnd(s->pc, NULL) != 1)
        return seed_error(s, NULL, "COPY", err);
    PGresult *r = PQgetResult(s->pc);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = seed_error(s, r, "COPY", err);
    PQclear(r);
    while ((r = PQgetResult(s->pc)))
        PQclear(r);
    return rc;
}

int db_wallet_seed_commit(struct db_wallet_seeder *s, uint64_t *inserted, struct db_error *err)
{
    if (!s->copying) {
        dbc_set_error(err, DB_E_INVALID, NULL, "no batch open");
        return DB_E_INVALID;
    }
    int rc = seed_copy_end(s, err);
    if (rc == 0)
        rc = seed_exec(s, "ANALYZE seed", "ANALYZE", err);
    if (rc != 0)
        return rc;
    /* new wallets: bulk mode counts their opening entries (every seeded balance is > 0) */
    PGresult *r = PQexec(s->pc, s->bulk ? SQL_WALLETS_FAST : SQL_WALLETS_SLOW);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = seed_error(s, r, "wallets", err);
        PQclear(r);
        return rc;
    }
    if (inserted)
        *inserted = strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    if (!s->bulk && (rc = seed_exec(s, SQL_OPENING, "opening entries", err)) != 0)
        return rc;
    if ((rc = seed_exec(s, "COMMIT", "COMMIT", err)) != 0)
        return rc;
    s->in_batch = false;
    return 0;
}

void db_wallet_seeder_close(struct db_wallet_seeder *s)
{
    if (!s)
        return;
    if (s->in_batch && PQstatus(s->pc) == CONNECTION_OK) {
        if (s->copying)
            (void)PQputCopyEnd(s->pc, "seeding stopped");
        PGresult *r;
        while ((r = PQgetResult(s->pc)))
            PQclear(r);
        (void)seed_exec(s, "ROLLBACK", NULL, NULL);
    }
    PQfinish(s->pc);
    free(s->buf);
    free(s);
}
