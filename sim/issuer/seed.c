/* issuer-sim's offline tools: `seed` creates the deterministic demo wallets (sim_seed_spec) in
 * schema wallet with blocking libpq and COPY in large batches, computing each wallet's PVV / IBM
 * offset with libhsm from the CLEAR lab PVK (a lab tool: the daemon never sees a clear key);
 * `keys` prints the lab keys under the LMK. PANs are stored only as HMAC + masked form. */
#include "issuer.h"
#include "issuer_tools.h"

#include "clock.h"
#include "db.h"
#include "hex.h"
#include "hsm.h"
#include "log.h"
#include "parse.h"

#include <getopt.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t LAB_PVK[16] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                                     0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10 };
static const uint8_t LAB_ZPK[16] = { 0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C,
                                     0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C };
static const uint8_t LAB_ZAK[16] = { 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A,
                                     0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A };

int sim_pan_hmac_key(uint8_t *key, size_t cap, size_t *len)
{
    const char *hex = getenv("ATLAS_PAN_HMAC_KEY");
    if (!hex || !*hex)
        hex = SIM_LAB_PAN_HMAC_KEY;
    size_t n = strlen(hex);
    int r = -1;
    if (n >= 32 && n <= 2 * cap)
        r = at_hex_decode(hex, n, key, cap);
    if (r < 16) {
        fprintf(stderr, "issuer-sim: ATLAS_PAN_HMAC_KEY must be 32..%zu hex characters\n", 2 * cap);
        return -1;
    }
    *len = (size_t)r;
    return 0;
}

/* ---------------------------------------------------------------- keys */

static int print_key(struct hsm *h, enum hsm_keytype t, const uint8_t clear[16])
{
    struct hsm_key *k = NULL;
    char text[64];
    uint8_t kcv[8];
    if (hsm_key_from_clear(t, clear, 16, &k) != 0 ||
        hsm_key_to_lmk(h, k, HSM_SCHEME_U, text, sizeof text) != 0) {
        hsm_key_release(k);
        return -1;
    }
    hsm_key_kcv(k, kcv);
    printf("%s %s KCV %02X%02X%02X\n", hsm_keytype_name(t), text, kcv[0], kcv[1], kcv[2]);
    hsm_key_release(k);
    return 0;
}

int sim_keys_main(int argc, char **argv)
{
    (void)argv;
    struct hsm *h = NULL;
    if (argc != 1) {
        fprintf(stderr, "usage: issuer-sim keys\n");
        return 2;
    }
    if (hsm_new(&h, 0) != 0)
        return 1;
    int rc = print_key(h, HSM_KT_ZPK, LAB_ZPK) | print_key(h, HSM_KT_ZAK, LAB_ZAK) |
             print_key(h, HSM_KT_PVK, LAB_PVK);
    hsm_free(h);
    return rc ? 1 : 0;
}

/* ---------------------------------------------------------------- seed */

static int exec_ok(PGconn *pc, const char *sql, bool quiet)
{
    PGresult *r = PQexec(pc, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : -1;
    if (rc != 0 && !quiet)
        fprintf(stderr, "issuer-sim seed: %s", PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

/* Appends one COPY text line for wallet index to buf (cap >= 512). Returns its length or -1. */
static int seed_line(uint64_t index, struct hsm_key *pvk, const uint8_t *hkey, size_t hkey_len,
                     char *buf, size_t cap)
{
    struct sim_seed_spec sp;
    uint8_t h[32];
    char hx[65], masked[20], acct[13], pvv[5] = "", off[13] = "", vdata[17], limit[24];
    if (sim_seed_spec(index, &sp) != 0 || db_pan_hmac(hkey, hkey_len, sp.pan, 16, h) != 0)
        return -1;
    at_hex_encode(h, 32, hx);
    at_mask_pan(sp.pan, 16, masked);
    memcpy(acct, sp.pan + 16 - 13, 12);
    acct[12] = '\0';
    if (sp.ibm) {
        char vd12[13];
        memcpy(vd12, acct, 11);
        vd12[11] = 'N';
        vd12[12] = '\0';
        if (hsm_ibm_vdata(vd12, acct, vdata) != 0 ||
            hsm_ibm_offset(pvk, sp.pin, SIM_IBM_DECTAB, vdata, off) != 0)
            return -1;
    } else if (hsm_pvv_generate(pvk, sp.pan, 1, sp.pin, pvv) != 0) {
        return -1;
    }
    if (sp.daily_limit_minor >= 0)
        snprintf(limit, sizeof limit, "%lld", (long long)sp.daily_limit_minor);
    else
        strcpy(limit, "\\N");
    int n = snprintf(buf, cap, "\\\\x%s\t%s\t%s\t%d\t%lld\t%s\t%s\t%s\t%s\t%s\t%s\n", hx, masked,
                     sp.expiry, sp.currency, (long long)sp.balance_minor, sp.status,
                     sp.ibm ? "ibm3624" : "pvv", sp.ibm ? "\\N" : "1", sp.ibm ? "\\N" : pvv,
                     sp.ibm ? off : "\\N", limit);
    memset(&sp, 0, sizeof sp); /* the clear PIN */
    return n > 0 && (size_t)n < cap ? n : -1;
}

/* Fast mode (triggers off): the wallets and their opening entries in one statement, the ledger
 * rows taking the new wallet ids from RETURNING (no join against the growing wallets table). */
static const char *const SQL_WALLETS_FAST =
    "WITH ins AS (INSERT INTO wallet.wallets (pan_hmac, pan_masked, expiry, currency, "
    "balance_minor, status, pin_method, pvki, pvv, pin_offset, daily_limit_minor) SELECT "
    "pan_hmac, pan_masked, expiry, currency, balance, status, pin_method, pvki, pvv, pin_offset, "
    "daily_limit FROM seed ON CONFLICT (pan_hmac) DO NOTHING RETURNING wallet_id, balance_minor) "
    "INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor, balance_after_minor) "
    "SELECT wallet_id, 'opening:' || wallet_id, 'opening', balance_minor, balance_minor FROM ins "
    "WHERE balance_minor > 0";
static const char *const SQL_WALLETS_SLOW =
    "INSERT INTO wallet.wallets (pan_hmac, pan_masked, expiry, currency, status, "
    "pin_method, pvki, pvv, pin_offset, daily_limit_minor) SELECT pan_hmac, pan_masked, expiry, "
    "currency, status, pin_method, pvki, pvv, pin_offset, daily_limit FROM seed "
    "ON CONFLICT (pan_hmac) DO NOTHING";
/* Trigger mode: opening balances, one 'opening' ledger row per new wallet; the ledger trigger
 * applies each row to its wallet (and overwrites balance_after_minor). */
static const char *const SQL_OPENING =
    "INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor, balance_after_minor) "
    "SELECT w.wallet_id, 'opening:' || w.wallet_id, 'opening', s.balance, s.balance "
    "FROM seed s JOIN wallet.wallets w USING (pan_hmac) WHERE s.balance > 0 AND NOT EXISTS "
    "(SELECT 1 FROM wallet.ledger l WHERE l.request_key = 'opening:' || w.wallet_id)";

int sim_seed_main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "wallets", required_argument, NULL, 'n' },
        { "db", required_argument, NULL, 'd' },
        { "batch", required_argument, NULL, 'b' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t n = 0, batch = 50000;
    const char *conninfo = "";
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (ch == 'n' && at_parse_u64(optarg, 999999999, &n) && n > 0)
            continue;
        if (ch == 'b' && at_parse_u64(optarg, 10000000, &batch) && batch > 0)
            continue;
        if (ch == 'd') {
            conninfo = optarg;
            continue;
        }
        n = 0;
        break;
    }
    if (n == 0 || optind != argc) {
        fprintf(stderr, "usage: issuer-sim seed --wallets N (1..999999999) [--db CONNINFO] "
                        "[--batch ROWS]\n");
        return 2;
    }
    uint8_t hkey[64];
    size_t hkey_len;
    if (sim_pan_hmac_key(hkey, sizeof hkey, &hkey_len) != 0)
        return 2;

    uint64_t t0 = at_mono_ns();
    PGconn *pc = PQconnectdb(conninfo);
    struct hsm_key *pvk = NULL;
    char *buf = NULL;
    int ret = 1;
    struct db_error err = { 0 };
    if (PQstatus(pc) != CONNECTION_OK) {
        fprintf(stderr, "issuer-sim seed: %s", PQerrorMessage(pc));
        goto out;
    }
    if (db_schema_check(pc, SIM_SCHEMA_VERSION, &err) != 0) {
        fprintf(stderr, "issuer-sim seed: database schema: %s\n", err.message);
        goto out;
    }
    if (hsm_key_from_clear(HSM_KT_PVK, LAB_PVK, sizeof LAB_PVK, &pvk) != 0)
        goto out;
    /* Fast mode needs a superuser (the throwaway cluster's owner): triggers off for this session,
     * so balances and opening entries are written together instead of one UPDATE per wallet. */
    bool fast = exec_ok(pc, "SET session_replication_role = replica", true) == 0;
    if (exec_ok(pc,
                "CREATE TEMP TABLE seed (pan_hmac bytea, pan_masked text, expiry text, currency "
                "smallint, balance bigint, status text, pin_method text, pvki smallint, pvv text, "
                "pin_offset text, daily_limit bigint)",
                false) != 0)
        goto out;
    size_t cap = 1 << 20;
    buf = malloc(cap);
    if (!buf)
        goto out;
    uint64_t done = 0, inserted = 0;
    while (done < n) {
        uint64_t end = done + batch < n ? done + batch : n;
        if (exec_ok(pc, "BEGIN", false) != 0 || exec_ok(pc, "TRUNCATE seed", false) != 0)
            goto out;
        PGresult *r = PQexec(pc, "COPY seed FROM STDIN");
        if (PQresultStatus(r) != PGRES_COPY_IN) {
            fprintf(stderr, "issuer-sim seed: COPY: %s", PQresultErrorMessage(r));
            PQclear(r);
            goto out;
        }
        PQclear(r);
        size_t used = 0;
        for (uint64_t i = done + 1; i <= end; i++) {
            int l = seed_line(i, pvk, hkey, hkey_len, buf + used, cap - used);
            if (l < 0) {
                fprintf(stderr, "issuer-sim seed: cannot build wallet %llu\n",
                        (unsigned long long)i);
                goto out;
            }
            used += (size_t)l;
            if (cap - used < 1024 || i == end) {
                if (PQputCopyData(pc, buf, (int)used) != 1) {
                    fprintf(stderr, "issuer-sim seed: %s", PQerrorMessage(pc));
                    goto out;
                }
                used = 0;
            }
        }
        if (PQputCopyEnd(pc, NULL) != 1)
            goto out;
        r = PQgetResult(pc);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "issuer-sim seed: COPY: %s", PQresultErrorMessage(r));
            PQclear(r);
            goto out;
        }
        PQclear(r);
        while ((r = PQgetResult(pc)))
            PQclear(r);
        if (exec_ok(pc, "ANALYZE seed", false) != 0)
            goto out;
        /* new wallets: fast mode counts their opening entries (every seeded balance is > 0) */
        r = PQexec(pc, fast ? SQL_WALLETS_FAST : SQL_WALLETS_SLOW);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "issuer-sim seed: %s", PQresultErrorMessage(r));
            PQclear(r);
            goto out;
        }
        inserted += strtoull(PQcmdTuples(r), NULL, 10);
        PQclear(r);
        if ((!fast && exec_ok(pc, SQL_OPENING, false) != 0) || exec_ok(pc, "COMMIT", false) != 0)
            goto out;
        done = end;
    }
    double secs = (double)(at_mono_ns() - t0) / 1e9;
    printf("issuer-sim seed: %llu wallets (%llu new) in %.1f s (%s mode)\n", (unsigned long long)n,
           (unsigned long long)inserted, secs, fast ? "bulk" : "trigger");
    ret = 0;
out:
    if (ret != 0)
        (void)exec_ok(pc, "ROLLBACK", true);
    free(buf);
    hsm_key_release(pvk);
    PQfinish(pc);
    memset(hkey, 0, sizeof hkey);
    return ret;
}
