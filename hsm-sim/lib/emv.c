/* libhsm EMV: ICC master key derivation (option A), the EMV 4.x common session
 * key, ARQC generation/verification (ISO 9797-1 alg 3; EMV 80 00.. padding, or zeros
 * for Visa CVN 10) and ARPC
 * method 1. The derived keys live in the issuer master key's scratch key object
 * and are wiped after each call. */
#include <string.h>

#include <openssl/crypto.h>

#include "hsm_internal.h"

/* Y = right-most 16 digits of PAN || PSN (zero-filled on the left), as 8 bytes. */
static int icc_y(const char *pan, const char *psn, uint8_t y[8])
{
    size_t n = hsm_pan_len(pan, 1);
    if (!n)
        return HSM_ERR_ACCOUNT;
    if (!psn || !*psn)
        psn = "00";
    if (strnlen(psn, 3) != 2 || !hsm_is_digits(psn, 2))
        return HSM_ERR_INPUT;
    char d[21 + 16];
    memset(d, '0', 16);
    memcpy(d + 16, pan, n);
    memcpy(d + 16 + n, psn, 2);
    int rc = hsm_hex_decode(d + 16 + n + 2 - 16, 16, y);
    OPENSSL_cleanse(d, sizeof d);
    return rc;
}

/* MK = TDES(IMK, Y) || TDES(IMK, Y xor FF..FF), odd parity. */
static int icc_mk(EVP_CIPHER_CTX **ctxp, const uint8_t imk[16], const char *pan, const char *psn,
                  uint8_t mk[16])
{
    uint8_t y[16];
    int rc = icc_y(pan, psn, y);
    if (rc != HSM_OK)
        return rc;
    for (int i = 0; i < 8; i++)
        y[8 + i] = (uint8_t)~y[i];
    rc = hsm_ecb_oneshot(ctxp, false, imk, 16, true, y, mk, 16);
    if (rc == HSM_OK)
        hsm_parity_fix(mk, 16);
    return rc;
}

/* SK = TDES(MK, R with byte 2 = F0) || TDES(MK, R with byte 2 = 0F), odd parity. */
static int session_key(EVP_CIPHER_CTX **ctxp, const uint8_t mk[16], const uint8_t r[8],
                       uint8_t sk[16])
{
    uint8_t in[16];
    memcpy(in, r, 8);
    memcpy(in + 8, r, 8);
    in[2] = 0xF0;
    in[10] = 0x0F;
    int rc = hsm_ecb_oneshot(ctxp, false, mk, 16, true, in, sk, 16);
    if (rc == HSM_OK)
        hsm_parity_fix(sk, 16);
    return rc;
}

int hsm_emv_icc_mk_clear(const uint8_t imk[16], const char *pan, const char *psn, uint8_t mk[16])
{
    return icc_mk(NULL, imk, pan, psn, mk); /* a temporary context: lab use */
}

int hsm_emv_session_key_clear(const uint8_t mk[16], const uint8_t r[8], uint8_t sk[16])
{
    return session_key(NULL, mk, r, sk); /* a temporary context: lab use */
}

/* The AC key (ICC MK or session key) for these inputs, keyed into imk->derived. */
static int ac_key(struct hsm_key *imk, const char *pan, const char *psn, enum hsm_emv_skd skd,
                  const uint8_t r[8], struct hsm_key **out)
{
    if (imk->type != HSM_KT_MK_AC)
        return HSM_ERR_KEY_TYPE;
    if (imk->aes || imk->len != 16)
        return HSM_ERR_KEY_LENGTH;
    if (skd != HSM_EMV_SKD_NONE && skd != HSM_EMV_SKD_COMMON)
        return HSM_ERR_INPUT;
    if (skd == HSM_EMV_SKD_COMMON && !r)
        return HSM_ERR_INPUT;
    uint8_t mk[16], sk[16];
    int rc = icc_mk(&imk->aux, imk->clear, pan, psn, mk);
    if (rc == HSM_OK && skd == HSM_EMV_SKD_COMMON) {
        rc = session_key(&imk->aux, mk, r, sk);
        memcpy(mk, sk, 16);
    }
    if (rc == HSM_OK)
        rc = hsm_key_derived(imk, HSM_KT_MK_AC, false, mk, 16, out);
    OPENSSL_cleanse(mk, sizeof mk);
    OPENSSL_cleanse(sk, sizeof sk);
    return rc;
}

int hsm_emv_arqc_generate_pad(struct hsm_key *imk, const char *pan, const char *psn,
                              enum hsm_emv_skd skd, const uint8_t r[8], enum hsm_macpad pad,
                              const uint8_t *data, size_t len, uint8_t arqc[8])
{
    struct hsm_key *k = NULL;
    uint8_t mac[16];
    size_t maclen;
    /* Visa CVN 10 pads with zeros (ISO 9797-1 method 1), EMV 4.x / CVN 18 with 80 00.. */
    if (pad != HSM_PAD_1 && pad != HSM_PAD_2)
        return HSM_ERR_INPUT;
    if (pad == HSM_PAD_1 && len == 0)
        return HSM_ERR_INPUT;
    int rc = ac_key(imk, pan, psn, skd, r, &k);
    if (rc == HSM_OK)
        rc = hsm_mac_compute(k, HSM_MAC_ISO9797_3, pad, data, len, mac, &maclen);
    if (rc == HSM_OK)
        memcpy(arqc, mac, 8);
    if (k)
        hsm_key_wipe(k);
    return rc;
}

int hsm_emv_arqc_generate(struct hsm_key *imk, const char *pan, const char *psn,
                          enum hsm_emv_skd skd, const uint8_t r[8], const uint8_t *data, size_t len,
                          uint8_t arqc[8])
{
    return hsm_emv_arqc_generate_pad(imk, pan, psn, skd, r, HSM_PAD_2, data, len, arqc);
}

int hsm_emv_arqc_verify_pad(struct hsm_key *imk, const char *pan, const char *psn,
                            enum hsm_emv_skd skd, const uint8_t r[8], enum hsm_macpad pad,
                            const uint8_t *data, size_t len, const uint8_t arqc[8])
{
    uint8_t want[8];
    int rc = hsm_emv_arqc_generate_pad(imk, pan, psn, skd, r, pad, data, len, want);
    if (rc == HSM_OK && CRYPTO_memcmp(want, arqc, 8) != 0)
        rc = HSM_ERR_VERIFY;
    OPENSSL_cleanse(want, sizeof want);
    return rc;
}

int hsm_emv_arqc_verify(struct hsm_key *imk, const char *pan, const char *psn, enum hsm_emv_skd skd,
                        const uint8_t r[8], const uint8_t *data, size_t len, const uint8_t arqc[8])
{
    return hsm_emv_arqc_verify_pad(imk, pan, psn, skd, r, HSM_PAD_2, data, len, arqc);
}

int hsm_emv_arpc1(struct hsm_key *imk, const char *pan, const char *psn, enum hsm_emv_skd skd,
                  const uint8_t r[8], const uint8_t arqc[8], const uint8_t arc[2], uint8_t arpc[8])
{
    struct hsm_key *k = NULL;
    int rc = ac_key(imk, pan, psn, skd, r, &k);
    uint8_t x[8];
    memcpy(x, arqc, 8);
    x[0] ^= arc[0];
    x[1] ^= arc[1];
    if (rc == HSM_OK)
        rc = hsm_key_ecb(k, true, x, arpc, 8);
    if (k)
        hsm_key_wipe(k);
    return rc;
}
