/* issuer-sim's offline tools: `seed` creates the deterministic demo wallets (sim_seed_spec)
 * through db/'s wallet seeder (COPY in large batches), computing each wallet's PVV / IBM offset
 * with libhsm from the CLEAR lab PVK (a lab tool: the daemon never sees a clear key); `keys`
 * prints the lab keys under the LMK. PANs are stored only as HMAC + masked form. */
#include "issuer.h"
#include "issuer_tools.h"

#include "clock.h"
#include "db.h"
#include "hex.h"
#include "hsm.h"
#include "log.h"
#include "parse.h"
#include "wallet.h"

#include <getopt.h>
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

/* The wallet row of wallet index: its PAN's HMAC and mask, and its PVV or IBM offset computed
 * from the clear PIN. bin (NULL: every BIN) keeps only the wallets of one issuer: 1 when the
 * wallet's PAN is of another BIN (w is not filled). Returns 0, 1 or -1. */
static int seed_row(uint64_t index, const char *bin, struct hsm_key *pvk, const uint8_t *hkey,
                    size_t hkey_len, struct db_wallet_seed_row *w)
{
    struct sim_seed_spec sp;
    char acct[13], vdata[17];
    int rc = -1;
    memset(w, 0, sizeof *w);
    if (sim_seed_spec(index, &sp) != 0)
        goto out;
    if (bin && memcmp(sp.pan, bin, 6) != 0) {
        rc = 1;
        goto out;
    }
    if (db_pan_hmac(hkey, hkey_len, sp.pan, 16, w->pan_hmac) != 0)
        goto out;
    at_mask_pan(sp.pan, 16, w->pan_masked);
    memcpy(acct, sp.pan + 16 - 13, 12);
    acct[12] = '\0';
    if (sp.ibm) {
        char vd12[13];
        memcpy(vd12, acct, 11);
        vd12[11] = 'N';
        vd12[12] = '\0';
        w->pin_method = DB_WALLET_PIN_IBM3624;
        if (hsm_ibm_vdata(vd12, acct, vdata) != 0 ||
            hsm_ibm_offset(pvk, sp.pin, SIM_IBM_DECTAB, vdata, w->pin_offset) != 0)
            goto out;
    } else {
        w->pin_method = DB_WALLET_PIN_PVV;
        w->pvki = 1;
        if (hsm_pvv_generate(pvk, sp.pan, 1, sp.pin, w->pvv) != 0)
            goto out;
    }
    memcpy(w->expiry, sp.expiry, sizeof w->expiry);
    w->currency = sp.currency;
    w->balance_minor = sp.balance_minor;
    w->status = strcmp(sp.status, "lost") == 0      ? DB_WALLET_LOST
                : strcmp(sp.status, "blocked") == 0 ? DB_WALLET_BLOCKED
                                                    : DB_WALLET_ACTIVE;
    w->daily_limit_minor = sp.daily_limit_minor;
    w->kyc_tier = sp.kyc_tier;
    rc = 0;
out:
    memset(&sp, 0, sizeof sp); /* the clear PIN */
    return rc;
}

/* Whether any of wallets 1..n has BIN bin. Wallets 1..8 hold the four BINs and 9..12 take them
 * in turn, so looking at the first 12 answers for any n. */
static bool bin_seeded(const char *bin, uint64_t n)
{
    for (uint64_t i = 1; i <= n && i <= 12; i++) {
        struct sim_seed_spec sp;
        bool same = sim_seed_spec(i, &sp) == 0 && memcmp(sp.pan, bin, 6) == 0;
        memset(&sp, 0, sizeof sp); /* the clear PIN */
        if (same)
            return true;
    }
    return false;
}

int sim_seed_main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "wallets", required_argument, NULL, 'n' },
        { "db", required_argument, NULL, 'd' },
        { "batch", required_argument, NULL, 'b' },
        { "bin", required_argument, NULL, 'B' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t n = 0, batch = 50000;
    const char *conninfo = "", *bin = NULL;
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
        if (ch == 'B') {
            bin = optarg;
            if (at_is_digits(bin, 6, 6))
                continue;
            fprintf(stderr, "issuer-sim seed: --bin wants a BIN of six digits\n");
        }
        n = 0;
        break;
    }
    if (n == 0 || optind != argc) {
        fprintf(stderr, "usage: issuer-sim seed --wallets N (1..999999999) [--bin BIN] "
                        "[--db CONNINFO] [--batch ROWS]\n");
        return 2;
    }
    if (bin && !bin_seeded(bin, n)) {
        fprintf(stderr, "issuer-sim seed: none of wallets 1..%llu has BIN %s\n",
                (unsigned long long)n, bin);
        return 2;
    }
    uint8_t hkey[64];
    size_t hkey_len;
    if (sim_pan_hmac_key(hkey, sizeof hkey, &hkey_len) != 0)
        return 2;

    uint64_t t0 = at_mono_ns();
    struct db_wallet_seeder *sd = NULL;
    struct hsm_key *pvk = NULL;
    struct db_error err = { 0 };
    int ret = 1;
    if (db_wallet_seeder_open(conninfo, &sd, &err) != 0) {
        fprintf(stderr, "issuer-sim seed: %s%s\n",
                err.code == DB_E_SCHEMA ? "database schema: " : "", err.message);
        goto out;
    }
    if (hsm_key_from_clear(HSM_KT_PVK, LAB_PVK, sizeof LAB_PVK, &pvk) != 0)
        goto out;
    uint64_t done = 0, inserted = 0, kept = 0;
    while (done < n) {
        uint64_t end = done + batch < n ? done + batch : n, added = 0;
        if (db_wallet_seed_begin(sd, &err) != 0)
            goto failed;
        for (uint64_t i = done + 1; i <= end; i++) {
            struct db_wallet_seed_row w;
            int r = seed_row(i, bin, pvk, hkey, hkey_len, &w);
            if (r < 0) {
                fprintf(stderr, "issuer-sim seed: cannot build wallet %llu\n",
                        (unsigned long long)i);
                goto out;
            }
            if (r == 0 && db_wallet_seed_add(sd, &w, &err) != 0)
                goto failed;
            kept += r == 0;
        }
        if (db_wallet_seed_commit(sd, &added, &err) != 0)
            goto failed;
        inserted += added;
        done = end;
    }
    double secs = (double)(at_mono_ns() - t0) / 1e9;
    printf("issuer-sim seed: %llu wallets", (unsigned long long)kept);
    if (bin)
        printf(" of BIN %s (among wallets 1..%llu)", bin, (unsigned long long)n);
    printf(" (%llu new) in %.1f s (%s mode)\n", (unsigned long long)inserted, secs,
           db_wallet_seeder_bulk(sd) ? "bulk" : "trigger");
    ret = 0;
    goto out;
failed:
    fprintf(stderr, "issuer-sim seed: %s\n", err.message);
out:
    db_wallet_seeder_close(sd); /* rolls back a batch not committed */
    hsm_key_release(pvk);
    memset(hkey, 0, sizeof hkey);
    return ret;
}
