/* bench-hsm, in-process cases: libhsm operations on one core, keys loaded from
 * their LMK form through the key cache on every operation (as the daemon does),
 * one line per case: case=<name> ops_per_s=<n> p99_us=<n> (ops per CPU-second of
 * the benchmark thread; p99 of wall-clock latency).
 * Usage: bench-hsm [--seconds S] [--case NAME]   (default 0.25 s per case) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsm.h"

/* Latency histogram: 10 ns buckets up to 100 us, then one overflow bucket. */
#define HBUCKETS 10001

struct bench {
    struct hsm *h;
    char tpk[64], zpk[64], zpk_aes[64], tak[64], zak_aes[64], pvk[64], cvk[64], bdk[64], imk[64];
    uint8_t pinblock[16];
    uint8_t pinblock_iso4[16];
    uint8_t dukpt_block[16];
    uint8_t msg[300];
    uint8_t mac[16], mac64[16], cmac[16];
    uint8_t arqc[8];
    uint32_t hist[HBUCKETS];
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* CPU time of this thread: throughput is counted per CPU-second of the one core
 * the benchmark runs on, so other processes on a shared machine do not count
 * against it (the p99 latency is wall-clock and does include preemption). */
static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench-hsm: %s failed: %s (%s)\n", what, hsm_strerror(rc), hsm_err_code(rc));
    exit(1);
}

static struct hsm_key *load(struct bench *b, enum hsm_keytype t, const char *text)
{
    struct hsm_key *k = NULL;
    int rc = hsm_key_load(b->h, t, text, strlen(text), &k);
    if (rc != 0)
        die("hsm_key_load", rc);
    return k;
}

/* ---------------------------------------------------------------- cases */

/* A PIN block of format src_fmt under the key (type, LMK text) translated to
 * ISO 0 under the ZPK; both keys are loaded and released on every call. */
static int pin_translate_to_zpk(struct bench *b, enum hsm_keytype type, const char *key,
                                enum hsm_pinfmt src_fmt, const uint8_t *blk, size_t len,
                                const char *pan)
{
    struct hsm_key *src = load(b, type, key), *dst = load(b, HSM_KT_ZPK, b->zpk);
    uint8_t out[16];
    size_t n;
    int pin_len;
    int rc =
        hsm_pin_translate(src, src_fmt, blk, len, dst, HSM_PINFMT_ISO0, pan, 12, out, &n, &pin_len);
    hsm_key_release(dst);
    hsm_key_release(src);
    return rc;
}

/* CA: TPK -> ZPK, ISO 0 -> ISO 0, double-length keys. */
static int op_pin_translate(struct bench *b)
{
    return pin_translate_to_zpk(b, HSM_KT_TPK, b->tpk, HSM_PINFMT_ISO0, b->pinblock, 8,
                                "401234567890");
}

/* CC with format change: AES ZPK (ISO 4) -> TDES ZPK (ISO 0). */
static int op_pin_translate_iso4(struct bench *b)
{
    return pin_translate_to_zpk(b, HSM_KT_ZPK, b->zpk_aes, HSM_PINFMT_ISO4, b->pinblock_iso4, 16,
                                "4012345678909");
}

/* The first len bytes of the message's MAC under the key (type, LMK text)
 * verified; the key is loaded and released on every call. */
static int mac_verify(struct bench *b, enum hsm_keytype type, const char *key, enum hsm_macalg alg,
                      size_t len, const uint8_t *mac, size_t maclen)
{
    struct hsm_key *k = load(b, type, key);
    int rc = hsm_mac_verify(k, alg, HSM_PAD_1, b->msg, len, mac, maclen);
    hsm_key_release(k);
    return rc;
}

/* M8: ANSI X9.19 (ISO 9797-1 alg 3, padding 1) over 300 bytes, 4-byte MAC. */
static int op_mac_verify(struct bench *b)
{
    return mac_verify(b, HSM_KT_TAK, b->tak, HSM_MAC_ISO9797_3, sizeof b->msg, b->mac, 4);
}

/* The same over 64 bytes (a short ISO 8583 message). */
static int op_mac_verify_64(struct bench *b)
{
    return mac_verify(b, HSM_KT_TAK, b->tak, HSM_MAC_ISO9797_3, 64, b->mac64, 4);
}

/* AES-CMAC over 300 bytes, 8-byte MAC. */
static int op_cmac_verify(struct bench *b)
{
    return mac_verify(b, HSM_KT_ZAK, b->zak_aes, HSM_MAC_AES_CMAC, sizeof b->msg, b->cmac, 8);
}

/* DC: PIN under TPK verified against a Visa PVV. */
static int op_pvv_verify(struct bench *b)
{
    struct hsm_key *tpk = load(b, HSM_KT_TPK, b->tpk), *pvk = load(b, HSM_KT_PVK, b->pvk);
    char pvv[5];
    int rc = hsm_pvv_generate(pvk, "4012345678909", 1, "1234", pvv);
    if (rc == 0)
        rc = hsm_pin_verify_pvv(tpk, HSM_PINFMT_ISO0, b->pinblock, 8, "4012345678909", pvk, 1, pvv);
    hsm_key_release(pvk);
    hsm_key_release(tpk);
    return rc;
}

/* CY: CVV verification. */
static int op_cvv_verify(struct bench *b)
{
    struct hsm_key *k = load(b, HSM_KT_CVK, b->cvk);
    int rc = hsm_cvv_verify(k, "4123456789012345", "8701", "101", "561");
    hsm_key_release(k);
    return rc;
}

/* CI: TDES DUKPT (KSN with 3 counter bits set) -> ZPK. */
static int op_dukpt_translate(struct bench *b)
{
    static const uint8_t ksn[10] = { 0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x07 };
    struct hsm_key *bdk = load(b, HSM_KT_BDK, b->bdk), *dst = load(b, HSM_KT_ZPK, b->zpk);
    uint8_t out[16];
    size_t n;
    int len;
    int rc = hsm_dukpt_pin_translate(bdk, ksn, 10, HSM_PINFMT_ISO0, b->dukpt_block, 8, dst,
                                     HSM_PINFMT_ISO0, "401234567890", 12, out, &n, &len);
    hsm_key_release(dst);
    hsm_key_release(bdk);
    return rc;
}

/* KQ: ARQC verification with the EMV common session key. */
static int op_arqc_verify(struct bench *b)
{
    static const uint8_t r[8] = { 0x00, 0x1C, 0, 0, 0, 0, 0, 0 };
    struct hsm_key *k = load(b, HSM_KT_MK_AC, b->imk);
    int rc =
        hsm_emv_arqc_verify(k, "4012345678909", "00", HSM_EMV_SKD_COMMON, r, b->msg, 29, b->arqc);
    hsm_key_release(k);
    return rc;
}

static const struct {
    const char *name;
    int (*op)(struct bench *b);
} cases[] = {
    { "pin_translate_tpk_zpk_iso0", op_pin_translate },
    { "mac_verify_x919_300B", op_mac_verify },
    { "pin_translate_aes_iso4_to_iso0", op_pin_translate_iso4 },
    { "mac_verify_aes_cmac_300B", op_cmac_verify },
    { "pin_verify_pvv", op_pvv_verify },
    { "cvv_verify", op_cvv_verify },
    { "mac_verify_x919_64B", op_mac_verify_64 },
    { "dukpt_tdes_pin_translate", op_dukpt_translate },
    { "arqc_verify", op_arqc_verify },
};

/* ---------------------------------------------------------------- setup / run */

static void gen(struct bench *b, enum hsm_keytype t, enum hsm_scheme s, char *out)
{
    uint8_t kcv[8];
    int rc = hsm_key_generate(b->h, t, s, out, 64, kcv);
    if (rc != 0)
        die("hsm_key_generate", rc);
}

/* Writes the clear test key hex of type t under the LMK into out. */
static void from_clear(struct bench *b, enum hsm_keytype t, const uint8_t *clear, char *out)
{
    struct hsm_key *k = NULL;
    int rc = hsm_key_from_clear(t, clear, 16, &k);
    if (rc == 0)
        rc = hsm_key_to_lmk(b->h, k, HSM_SCHEME_U, out, 64);
    hsm_key_release(k);
    if (rc != 0)
        die("hsm_key_to_lmk", rc);
}

/* The PIN 1234 of card 4012345678909 as a block of format fmt under the key (type, LMK text). */
static void pin_block(struct bench *b, enum hsm_keytype type, const char *key, enum hsm_pinfmt fmt,
                      uint8_t out[16])
{
    struct hsm_key *k = load(b, type, key);
    size_t n;
    int rc = hsm_pin_encrypt(k, fmt, "1234", "4012345678909", out, &n);
    hsm_key_release(k);
    if (rc != 0)
        die("hsm_pin_encrypt", rc);
}

/* The MAC of the message's first len bytes under the key (type, LMK text) into out. */
static void mac_of(struct bench *b, enum hsm_keytype type, const char *key, enum hsm_macalg alg,
                   size_t len, uint8_t out[16])
{
    struct hsm_key *k = load(b, type, key);
    size_t n;
    int rc = hsm_mac_generate(k, alg, HSM_PAD_1, b->msg, len, out, &n);
    hsm_key_release(k);
    if (rc != 0)
        die("hsm_mac_generate", rc);
}

static void setup(struct bench *b)
{
    int rc = hsm_new(&b->h, 1024);
    if (rc != 0)
        die("hsm_new", rc);
    gen(b, HSM_KT_TPK, HSM_SCHEME_U, b->tpk);
    gen(b, HSM_KT_ZPK, HSM_SCHEME_U, b->zpk);
    gen(b, HSM_KT_ZPK, HSM_SCHEME_A, b->zpk_aes);
    gen(b, HSM_KT_TAK, HSM_SCHEME_U, b->tak);
    gen(b, HSM_KT_ZAK, HSM_SCHEME_A, b->zak_aes);
    gen(b, HSM_KT_PVK, HSM_SCHEME_U, b->pvk);
    /* the published test keys (crypto.md 5 and 6), so that verifications succeed */
    static const uint8_t test_key[16] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                                          0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10 };
    from_clear(b, HSM_KT_CVK, test_key, b->cvk);
    from_clear(b, HSM_KT_BDK, test_key, b->bdk);
    gen(b, HSM_KT_MK_AC, HSM_SCHEME_U, b->imk);
    for (size_t i = 0; i < sizeof b->msg; i++)
        b->msg[i] = (uint8_t)(i * 31 + 7);
    pin_block(b, HSM_KT_TPK, b->tpk, HSM_PINFMT_ISO0, b->pinblock);
    pin_block(b, HSM_KT_ZPK, b->zpk_aes, HSM_PINFMT_ISO4, b->pinblock_iso4);
    mac_of(b, HSM_KT_TAK, b->tak, HSM_MAC_ISO9797_3, sizeof b->msg, b->mac);
    mac_of(b, HSM_KT_TAK, b->tak, HSM_MAC_ISO9797_3, 64, b->mac64);
    mac_of(b, HSM_KT_ZAK, b->zak_aes, HSM_MAC_AES_CMAC, sizeof b->msg, b->cmac);
    size_t n;
    static const uint8_t r[8] = { 0x00, 0x1C, 0, 0, 0, 0, 0, 0 };
    struct hsm_key *k = load(b, HSM_KT_MK_AC, b->imk);
    if ((rc = hsm_emv_arqc_generate(k, "4012345678909", "00", HSM_EMV_SKD_COMMON, r, b->msg, 29,
                                    b->arqc)))
        die("hsm_emv_arqc_generate", rc);
    hsm_key_release(k);
    /* the device side of DUKPT: PIN block under the PIN variant of KSN ...E00007 */
    static const uint8_t ksn[10] = { 0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x07 };
    uint8_t txn[16], pinkey[16];
    if ((rc = hsm_dukpt_txn_key_clear(test_key, ksn, txn)) ||
        (rc = hsm_dukpt_variant_clear(txn, HSM_DUKPT_PIN, pinkey)) ||
        (rc = hsm_key_from_clear(HSM_KT_TPK, pinkey, 16, &k)))
        die("dukpt setup", rc);
    if ((rc = hsm_pin_encrypt(k, HSM_PINFMT_ISO0, "1234", "401234567890", b->dukpt_block, &n)))
        die("hsm_pin_encrypt", rc);
    hsm_key_release(k);
}

static void run_case(struct bench *b, const char *name, int (*op)(struct bench *), double secs)
{
    memset(b->hist, 0, sizeof b->hist);
    for (int i = 0; i < 1000; i++) { /* warm the cache and the contexts */
        int rc = op(b);
        if (rc != 0)
            die(name, rc);
    }
    uint64_t count = 0;
    double cpu0 = cpu_ns();
    double start = now_ns(), end = start + secs * 1e9, t = start;
    while (t < end) {
        double t0 = t;
        int rc = op(b);
        t = now_ns();
        if (rc != 0)
            die(name, rc);
        size_t bucket = (size_t)((t - t0) / 10.0);
        b->hist[bucket < HBUCKETS - 1 ? bucket : HBUCKETS - 1]++;
        count++;
    }
    double elapsed = (cpu_ns() - cpu0) / 1e9;
    uint64_t want = count - count / 100, seen = 0;
    size_t i = 0;
    for (; i < HBUCKETS; i++) {
        seen += b->hist[i];
        if (seen >= want)
            break;
    }
    printf("case=%s ops_per_s=%.0f p99_us=%.2f\n", name, (double)count / elapsed,
           (double)(i + 1) * 10.0 / 1000.0);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    double secs = 0.25;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            secs = atof(argv[++i]);
            if (secs <= 0 || secs > 60) {
                fprintf(stderr, "bench-hsm: --seconds must be in (0, 60]\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: bench-hsm [--seconds S] [--case NAME]\n");
            return 2;
        }
    }
    static struct bench b;
    setup(&b);
    int ran = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (only && strcmp(only, cases[i].name) != 0)
            continue;
        run_case(&b, cases[i].name, cases[i].op, secs);
        ran++;
    }
    hsm_free(b.h);
    if (only && !ran) {
        fprintf(stderr, "bench-hsm: no case named %s\n", only);
        return 2;
    }
    return 0;
}
