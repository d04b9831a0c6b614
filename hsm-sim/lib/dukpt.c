/* libhsm DUKPT: ANSI X9.24-1:2009 TDES (IPEK, key register walk from the KSN,
 * PIN/MAC/data variants) and ANSI X9.24-3:2017 AES-128 (initial key, derivation
 * data, intermediate and working keys), host side: every key is derived from the
 * BDK and the KSN of the transaction. PIN translation and MAC verification from
 * either flavour. */
#include <string.h>

#include <openssl/crypto.h>

#include "hsm_internal.h"

/* ---------------------------------------------------------------- TDES */

static const uint8_t c0_mask[16] = { 0xC0, 0xC0, 0xC0, 0xC0, 0, 0, 0, 0,
                                     0xC0, 0xC0, 0xC0, 0xC0, 0, 0, 0, 0 };

/* IPEK = TDES(BDK, KSN') || TDES(BDK ^ C0C0C0C000000000.., KSN'), KSN' = left 8
 * bytes of the KSN with the 21-bit counter cleared. */
static int tdes_ipek(EVP_CIPHER_CTX **ctxp, const uint8_t bdk[16], const uint8_t ksn[10],
                     uint8_t ipek[16])
{
    uint8_t reg[8], k[16];
    memcpy(reg, ksn, 8);
    reg[7] &= 0xE0;
    int rc = hsm_ecb_oneshot(ctxp, false, bdk, 16, true, reg, ipek, 8);
    for (int i = 0; i < 16; i++)
        k[i] = bdk[i] ^ c0_mask[i];
    if (rc == HSM_OK)
        rc = hsm_ecb_oneshot(ctxp, false, k, 16, true, reg, ipek + 8, 8);
    OPENSSL_cleanse(k, sizeof k);
    return rc;
}

/* Non-reversible key generation: half = DES(K_L, reg ^ K_R) ^ K_R, right half with
 * the key, left half with the key ^ C0C0C0C0 00000000 C0C0C0C0 00000000. */
static int tdes_nrkg(EVP_CIPHER_CTX **ctxp, uint8_t key[16], const uint8_t reg[8])
{
    uint8_t k2[16], t[8], left[8], right[8];
    int rc = HSM_OK;
    for (int pass = 0; pass < 2 && rc == HSM_OK; pass++) {
        const uint8_t *kk = key;
        if (pass == 1) {
            for (int i = 0; i < 16; i++)
                k2[i] = key[i] ^ c0_mask[i];
            kk = k2;
        }
        uint8_t *dst = pass == 0 ? right : left;
        for (int i = 0; i < 8; i++)
            t[i] = reg[i] ^ kk[8 + i];
        rc = hsm_ecb_oneshot(ctxp, false, kk, 8, true, t, dst, 8);
        for (int i = 0; i < 8; i++)
            dst[i] ^= kk[8 + i];
    }
    if (rc == HSM_OK) {
        memcpy(key, left, 8);
        memcpy(key + 8, right, 8);
    }
    OPENSSL_cleanse(k2, sizeof k2);
    OPENSSL_cleanse(left, sizeof left);
    OPENSSL_cleanse(right, sizeof right);
    return rc;
}

/* Current (transaction) key for the KSN: walks the counter bits from the top,
 * applying the non-reversible key generation for each set bit. */
static int tdes_txn(EVP_CIPHER_CTX **ctxp, const uint8_t bdk[16], const uint8_t ksn[10],
                    uint8_t key[16])
{
    int rc = tdes_ipek(ctxp, bdk, ksn, key);
    if (rc != HSM_OK)
        return rc;
    uint8_t reg[8];
    memcpy(reg, ksn + 2, 8);
    uint32_t counter = (uint32_t)(ksn[7] & 0x1F) << 16 | (uint32_t)ksn[8] << 8 | ksn[9];
    reg[5] &= 0xE0;
    reg[6] = reg[7] = 0;
    uint32_t acc = 0;
    for (uint32_t bit = 1u << 20; bit && rc == HSM_OK; bit >>= 1) {
        if (!(counter & bit))
            continue;
        acc |= bit;
        reg[5] = (uint8_t)((reg[5] & 0xE0) | (acc >> 16));
        reg[6] = (uint8_t)(acc >> 8);
        reg[7] = (uint8_t)acc;
        rc = tdes_nrkg(ctxp, key, reg);
    }
    if (rc != HSM_OK)
        OPENSSL_cleanse(key, 16);
    return rc;
}

static int tdes_variant(EVP_CIPHER_CTX **ctxp, const uint8_t txn[16], enum hsm_dukpt_usage u,
                        uint8_t out[16])
{
    int byte;
    switch (u) {
    case HSM_DUKPT_PIN:
        byte = 7;
        break;
    case HSM_DUKPT_MAC_REQ:
        byte = 6;
        break;
    case HSM_DUKPT_MAC_RESP:
        byte = 4;
        break;
    case HSM_DUKPT_DATA_REQ:
        byte = 5;
        break;
    case HSM_DUKPT_DATA_RESP:
        byte = 3;
        break;
    default:
        return HSM_ERR_INPUT;
    }
    memcpy(out, txn, 16);
    out[byte] ^= 0xFF;
    out[8 + byte] ^= 0xFF;
    if (u == HSM_DUKPT_DATA_REQ || u == HSM_DUKPT_DATA_RESP) {
        /* X9.24-1:2009 data keys: each half encrypted under the variant key */
        uint8_t v[16];
        memcpy(v, out, 16);
        int rc = hsm_ecb_oneshot(ctxp, false, v, 16, true, v, out, 16);
        OPENSSL_cleanse(v, sizeof v);
        return rc;
    }
    return HSM_OK;
}

int hsm_dukpt_ipek_clear(const uint8_t bdk[16], const uint8_t ksn[10], uint8_t ipek[16])
{
    return tdes_ipek(NULL, bdk, ksn, ipek); /* a temporary context: lab use */
}

int hsm_dukpt_txn_key_clear(const uint8_t bdk[16], const uint8_t ksn[10], uint8_t key[16])
{
    return tdes_txn(NULL, bdk, ksn, key); /* a temporary context: lab use */
}

int hsm_dukpt_variant_clear(const uint8_t txn_key[16], enum hsm_dukpt_usage u, uint8_t out[16])
{
    return tdes_variant(NULL, txn_key, u, out); /* a temporary context: lab use */
}

/* ---------------------------------------------------------------- AES */

/* X9.24-3 derivation data for an AES-128 key: version 01, block counter 01, key
 * usage, algorithm 0002 (AES-128), length 0080, then 8 context bytes. */
static void aes_dd(uint16_t usage, const uint8_t ctx8[8], uint8_t dd[16])
{
    dd[0] = 0x01;
    dd[1] = 0x01;
    dd[2] = (uint8_t)(usage >> 8);
    dd[3] = (uint8_t)usage;
    dd[4] = 0x00;
    dd[5] = 0x02;
    dd[6] = 0x00;
    dd[7] = 0x80;
    memcpy(dd + 8, ctx8, 8);
}

static int aes_initial(EVP_CIPHER_CTX **ctxp, const uint8_t bdk[16], const uint8_t ikid[8],
                       uint8_t key[16])
{
    uint8_t dd[16];
    aes_dd(0x8001, ikid, dd);
    return hsm_ecb_oneshot(ctxp, true, bdk, 16, true, dd, key, 16);
}

static int aes_txn(EVP_CIPHER_CTX **ctxp, const uint8_t bdk[16], const uint8_t ksn[12],
                   uint8_t key[16])
{
    int rc = aes_initial(ctxp, bdk, ksn, key);
    uint32_t counter =
        (uint32_t)ksn[8] << 24 | (uint32_t)ksn[9] << 16 | (uint32_t)ksn[10] << 8 | ksn[11];
    uint32_t acc = 0;
    uint8_t ctx8[8], dd[16], next[16];
    memcpy(ctx8, ksn + 4, 4);
    for (uint32_t bit = 1u << 31; bit && rc == HSM_OK; bit >>= 1) {
        if (!(counter & bit))
            continue;
        acc |= bit;
        ctx8[4] = (uint8_t)(acc >> 24);
        ctx8[5] = (uint8_t)(acc >> 16);
        ctx8[6] = (uint8_t)(acc >> 8);
        ctx8[7] = (uint8_t)acc;
        aes_dd(0x8000, ctx8, dd);
        rc = hsm_ecb_oneshot(ctxp, true, key, 16, true, dd, next, 16);
        memcpy(key, next, 16);
    }
    OPENSSL_cleanse(next, sizeof next);
    if (rc != HSM_OK)
        OPENSSL_cleanse(key, 16);
    return rc;
}

static int aes_working(EVP_CIPHER_CTX **ctxp, const uint8_t txn[16], const uint8_t ksn[12],
                       enum hsm_dukpt_aes_usage u, uint8_t key[16])
{
    switch (u) {
    case HSM_AESDUKPT_PIN:
    case HSM_AESDUKPT_MAC_GEN:
    case HSM_AESDUKPT_MAC_VER:
    case HSM_AESDUKPT_MAC_BOTH:
    case HSM_AESDUKPT_DATA_ENC:
    case HSM_AESDUKPT_DATA_DEC:
    case HSM_AESDUKPT_DATA_BOTH:
        break;
    default:
        return HSM_ERR_INPUT;
    }
    uint8_t dd[16];
    aes_dd((uint16_t)u, ksn + 4, dd);
    return hsm_ecb_oneshot(ctxp, true, txn, 16, true, dd, key, 16);
}

int hsm_dukpt_aes_initial_key_clear(const uint8_t bdk[16], const uint8_t ikid[8], uint8_t key[16])
{
    return aes_initial(NULL, bdk, ikid, key); /* a temporary context: lab use */
}

int hsm_dukpt_aes_txn_key_clear(const uint8_t bdk[16], const uint8_t ksn[12], uint8_t key[16])
{
    return aes_txn(NULL, bdk, ksn, key); /* a temporary context: lab use */
}

int hsm_dukpt_aes_working_key_clear(const uint8_t txn_key[16], const uint8_t ksn[12],
                                    enum hsm_dukpt_aes_usage u, uint8_t key[16])
{
    return aes_working(NULL, txn_key, ksn, u, key); /* a temporary context: lab use */
}

/* ---------------------------------------------------------------- with a BDK object */

/* Derives the working key for (bdk, ksn, PIN or MAC) into bdk->derived. For TDES
 * the derived key is typed TPK (PIN) or TAK (MAC) internally; the key never leaves
 * libhsm. */
static int dukpt_working(struct hsm_key *bdk, const uint8_t *ksn, size_t ksnlen, bool mac,
                         struct hsm_key **out)
{
    uint8_t txn[16], wk[16];
    int rc;
    if (bdk->type == HSM_KT_BDK) {
        if (bdk->aes || bdk->len != 16)
            return HSM_ERR_KEY_LENGTH;
        if (ksnlen != 10)
            return HSM_ERR_INPUT;
        rc = tdes_txn(&bdk->aux, bdk->clear, ksn, txn);
        if (rc == HSM_OK)
            rc = tdes_variant(&bdk->aux, txn, mac ? HSM_DUKPT_MAC_REQ : HSM_DUKPT_PIN, wk);
        if (rc == HSM_OK)
            rc = hsm_key_derived(bdk, mac ? HSM_KT_TAK : HSM_KT_TPK, false, wk, 16, out);
    } else if (bdk->type == HSM_KT_BDK_AES) {
        if (!bdk->aes || bdk->len != 16)
            return HSM_ERR_KEY_LENGTH;
        if (ksnlen != 12)
            return HSM_ERR_INPUT;
        rc = aes_txn(&bdk->aux, bdk->clear, ksn, txn);
        if (rc == HSM_OK)
            rc =
                aes_working(&bdk->aux, txn, ksn, mac ? HSM_AESDUKPT_MAC_GEN : HSM_AESDUKPT_PIN, wk);
        if (rc == HSM_OK)
            rc = hsm_key_derived(bdk, mac ? HSM_KT_TAK : HSM_KT_TPK, true, wk, 16, out);
    } else {
        return HSM_ERR_KEY_TYPE;
    }
    OPENSSL_cleanse(txn, sizeof txn);
    OPENSSL_cleanse(wk, sizeof wk);
    return rc;
}

int hsm_dukpt_pin_translate(struct hsm_key *bdk, const uint8_t *ksn, size_t ksnlen,
                            enum hsm_pinfmt src_fmt, const uint8_t *blk, size_t len,
                            struct hsm_key *dst, enum hsm_pinfmt dst_fmt, const char *pan,
                            int max_pin_len, uint8_t out[16], size_t *outlen, int *pin_len)
{
    if (dst->type != HSM_KT_ZPK)
        return HSM_ERR_KEY_TYPE;
    struct hsm_key *pk = NULL;
    int rc = dukpt_working(bdk, ksn, ksnlen, false, &pk);
    if (rc == HSM_OK)
        rc = hsm_pin_translate_any(pk, src_fmt, blk, len, dst, dst_fmt, pan, max_pin_len, out,
                                   outlen, pin_len);
    if (pk)
        hsm_key_wipe(pk);
    return rc;
}

int hsm_dukpt_mac_verify(struct hsm_key *bdk, const uint8_t *ksn, size_t ksnlen,
                         const uint8_t *data, size_t len, const uint8_t *mac, size_t maclen)
{
    struct hsm_key *mk = NULL;
    uint8_t want[16];
    size_t full = 0;
    int rc = dukpt_working(bdk, ksn, ksnlen, true, &mk);
    if (rc == HSM_OK)
        rc = hsm_mac_compute(mk, mk->aes ? HSM_MAC_AES_CMAC : HSM_MAC_ISO9797_3, HSM_PAD_1, data,
                             len, want, &full);
    if (rc == HSM_OK && (maclen < 4 || maclen > full))
        rc = HSM_ERR_INPUT;
    if (rc == HSM_OK && CRYPTO_memcmp(want, mac, maclen) != 0)
        rc = HSM_ERR_VERIFY;
    if (mk)
        hsm_key_wipe(mk);
    OPENSSL_cleanse(want, sizeof want);
    return rc;
}
