/* libhsm TR-31 / ANSI X9.143 key block unwrapping: versions A and C (TDES key
 * variant binding), B (TDES key derivation binding) and D (AES key derivation
 * binding). The MAC is checked in constant time before the key is returned. */
#include <string.h>

#include <openssl/crypto.h>

#include "hsm_internal.h"

#define TR31_MAX_KEYDATA 64 /* 2-byte length + up to 32 key bytes + padding */

static int hexval2(const char *s)
{
    int hi = hsm_hexval(s[0]), lo = hsm_hexval(s[1]);
    return hi < 0 || lo < 0 ? -1 : hi << 4 | lo;
}

/* Length of the header including optional blocks, or a negative error. */
static int header_len(const char *b, size_t len, size_t *out)
{
    if (len < 16)
        return HSM_ERR_DATA_LENGTH;
    for (size_t i = 0; i < 16; i++) {
        if (b[i] < 0x20 || b[i] > 0x7E)
            return HSM_ERR_INPUT;
    }
    if (!hsm_is_digits(b + 12, 2))
        return HSM_ERR_INPUT;
    int nblocks = (b[12] - '0') * 10 + (b[13] - '0');
    size_t pos = 16;
    for (int i = 0; i < nblocks; i++) {
        if (pos + 4 > len)
            return HSM_ERR_DATA_LENGTH;
        int l = hexval2(b + pos + 2);
        size_t blen;
        if (l < 0)
            return HSM_ERR_INPUT;
        if (l == 0) { /* extended length: length of length, then the length */
            if (pos + 6 > len)
                return HSM_ERR_DATA_LENGTH;
            int ll = hexval2(b + pos + 4);
            if (ll <= 0 || ll > 4 || pos + 6 + (size_t)ll > len)
                return HSM_ERR_INPUT;
            blen = 0;
            for (int j = 0; j < ll; j++) {
                int v = hsm_hexval(b[pos + 6 + (size_t)j]);
                if (v < 0)
                    return HSM_ERR_INPUT;
                blen = blen * 16 + (size_t)v;
            }
            if (blen < 6 + (size_t)ll)
                return HSM_ERR_INPUT;
        } else {
            blen = (size_t)l;
            if (blen < 4)
                return HSM_ERR_INPUT;
        }
        if (pos + blen > len)
            return HSM_ERR_DATA_LENGTH;
        for (size_t j = pos; j < pos + blen; j++) {
            if (b[j] < 0x20 || b[j] > 0x7E)
                return HSM_ERR_INPUT;
        }
        pos += blen;
    }
    *out = pos;
    return HSM_OK;
}

/* SP 800-108 counter-mode KDF with CMAC (TR-31 B and D): derives kbek (usage
 * 0000) and kbak (0001), each as long as the KBPK. */
static int kdf(bool aes, const uint8_t *kbpk, size_t kl, uint8_t *kbek, uint8_t *kbak)
{
    struct hsm_key *k = NULL;
    int rc = aes ? hsm_key_from_clear_aes(HSM_KT_TAK, kbpk, kl, &k)
                 : hsm_key_from_clear(HSM_KT_TAK, kbpk, kl, &k);
    if (rc != HSM_OK)
        return rc;
    uint16_t alg = aes ? (kl == 16 ? 2 : kl == 24 ? 3 : 4) : (kl == 16 ? 0 : 1);
    uint16_t bits = (uint16_t)(kl * 8);
    size_t bs = aes ? 16 : 8;
    for (int usage = 0; usage < 2 && rc == HSM_OK; usage++) {
        uint8_t *dst = usage == 0 ? kbek : kbak;
        for (size_t off = 0, ctr = 1; off < kl && rc == HSM_OK; off += bs, ctr++) {
            uint8_t in[8] = { (uint8_t)ctr,         0,
                              (uint8_t)usage,       0,
                              (uint8_t)(alg >> 8),  (uint8_t)alg,
                              (uint8_t)(bits >> 8), (uint8_t)bits };
            uint8_t mac[16];
            size_t ml;
            rc = hsm_mac_compute(k, aes ? HSM_MAC_AES_CMAC : HSM_MAC_TDES_CMAC, HSM_PAD_1, in,
                                 sizeof in, mac, &ml);
            memcpy(dst + off, mac, kl - off < bs ? kl - off : bs);
            OPENSSL_cleanse(mac, sizeof mac);
        }
    }
    hsm_key_release(k);
    return rc;
}

/* CBC decryption of n bytes under key (ECB + xor, so no separate context). */
static int cbc_decrypt(bool aes, const uint8_t *key, size_t kl, const uint8_t *iv,
                       const uint8_t *in, uint8_t *out, size_t n)
{
    size_t bs = aes ? 16 : 8;
    EVP_CIPHER_CTX *ctx = NULL;
    int rc = HSM_OK;
    uint8_t prev[16];
    memcpy(prev, iv, bs);
    for (size_t off = 0; off < n && rc == HSM_OK; off += bs) {
        rc = hsm_ecb_oneshot(&ctx, aes, key, kl, false, in + off, out + off, bs);
        for (size_t i = 0; i < bs; i++)
            out[off + i] ^= prev[i];
        memcpy(prev, in + off, bs);
    }
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int hsm_tr31_unwrap_clear(const uint8_t *kbpk, size_t kbpk_len, const char *block, size_t len,
                          char header[17], uint8_t *key, size_t cap, size_t *keylen)
{
    if (!block || len < 16 || len > 9992)
        return HSM_ERR_DATA_LENGTH;
    char v = block[0];
    bool aes = v == 'D';
    if (v != 'A' && v != 'B' && v != 'C' && v != 'D')
        return HSM_ERR_INPUT;
    if (aes ? (kbpk_len != 16 && kbpk_len != 24 && kbpk_len != 32)
            : (v == 'B' ? (kbpk_len != 16 && kbpk_len != 24)
                        : (kbpk_len != 8 && kbpk_len != 16 && kbpk_len != 24)))
        return HSM_ERR_KEY_LENGTH;
    if (!hsm_is_digits(block + 1, 4))
        return HSM_ERR_INPUT;
    size_t total = (size_t)((block[1] - '0') * 1000 + (block[2] - '0') * 100 +
                            (block[3] - '0') * 10 + (block[4] - '0'));
    if (total != len)
        return HSM_ERR_DATA_LENGTH;
    size_t hlen;
    int rc = header_len(block, len, &hlen);
    if (rc != HSM_OK)
        return rc;
    size_t bs = aes ? 16 : 8;
    size_t maclen = v == 'B' ? 8 : aes ? 16 : 4;
    if (hlen % 8 || len < hlen + 2 * maclen || (len - hlen - 2 * maclen) % (2 * bs))
        return HSM_ERR_DATA_LENGTH;
    size_t enclen = (len - hlen - 2 * maclen) / 2;
    if (enclen == 0 || enclen > TR31_MAX_KEYDATA)
        return HSM_ERR_DATA_LENGTH;

    uint8_t enc[TR31_MAX_KEYDATA], clear[TR31_MAX_KEYDATA], mac[16], want[16];
    uint8_t kbek[32], kbak[32];
    if (hsm_hex_decode(block + hlen, 2 * enclen, enc) != HSM_OK ||
        hsm_hex_decode(block + hlen + 2 * enclen, 2 * maclen, mac) != HSM_OK)
        return HSM_ERR_INPUT;

    /* MAC input: ASCII header, then (A/C) the ciphertext or (B/D) the clear key data */
    uint8_t macin[9992 + TR31_MAX_KEYDATA];
    memcpy(macin, block, hlen);
    struct hsm_key *ak = NULL;
    size_t ml = 0;
    if (v == 'A' || v == 'C') {
        for (size_t i = 0; i < kbpk_len; i++) {
            kbek[i] = kbpk[i] ^ 0x45;
            kbak[i] = kbpk[i] ^ 0x4D;
        }
        memcpy(macin + hlen, enc, enclen);
        rc = hsm_key_from_clear(HSM_KT_TAK, kbak, kbpk_len, &ak);
        if (rc == HSM_OK)
            rc = hsm_mac_compute(ak, HSM_MAC_ISO9797_1, HSM_PAD_1, macin, hlen + enclen, want, &ml);
        if (rc == HSM_OK && CRYPTO_memcmp(want, mac, maclen) != 0)
            rc = HSM_ERR_VERIFY;
        uint8_t iv[8];
        memcpy(iv, block, 8);
        if (rc == HSM_OK)
            rc = cbc_decrypt(false, kbek, kbpk_len, iv, enc, clear, enclen);
    } else {
        rc = kdf(aes, kbpk, kbpk_len, kbek, kbak);
        if (rc == HSM_OK)
            rc = cbc_decrypt(aes, kbek, kbpk_len, mac, enc, clear, enclen);
        memcpy(macin + hlen, clear, enclen);
        if (rc == HSM_OK)
            rc = aes ? hsm_key_from_clear_aes(HSM_KT_TAK, kbak, kbpk_len, &ak)
                     : hsm_key_from_clear(HSM_KT_TAK, kbak, kbpk_len, &ak);
        if (rc == HSM_OK)
            rc = hsm_mac_compute(ak, aes ? HSM_MAC_AES_CMAC : HSM_MAC_TDES_CMAC, HSM_PAD_1, macin,
                                 hlen + enclen, want, &ml);
        if (rc == HSM_OK && CRYPTO_memcmp(want, mac, maclen) != 0)
            rc = HSM_ERR_VERIFY;
    }
    hsm_key_release(ak);
    if (rc == HSM_OK) {
        size_t bits = (size_t)clear[0] << 8 | clear[1];
        size_t kl = bits / 8;
        if (bits % 64 || kl == 0 || 2 + kl > enclen)
            rc = HSM_ERR_INPUT;
        else if (kl > cap)
            rc = HSM_ERR_DATA_LENGTH;
        if (rc == HSM_OK) {
            memcpy(key, clear + 2, kl);
            *keylen = kl;
            memcpy(header, block, 16);
            header[16] = '\0';
        }
    }
    OPENSSL_cleanse(clear, sizeof clear);
    OPENSSL_cleanse(macin + hlen, enclen);
    OPENSSL_cleanse(kbek, sizeof kbek);
    OPENSSL_cleanse(kbak, sizeof kbak);
    return rc;
}
