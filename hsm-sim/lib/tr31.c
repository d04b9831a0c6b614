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
        if (l == 0) {
            /* extended length: "00", the length of the length in bytes (2H), then the length
             * in that many bytes (2 hex characters each), e.g. KS 00 02 010A: 266 characters
             * with the id and the length fields */
            if (pos + 6 > len)
                return HSM_ERR_DATA_LENGTH;
            int ll = hexval2(b + pos + 4);
            size_t nd = 2 * (size_t)(ll > 0 ? ll : 0);
            if (ll <= 0 || ll > 2 || pos + 6 + nd > len)
                return HSM_ERR_INPUT;
            blen = 0;
            for (size_t j = 0; j < nd; j++) {
                int v = hsm_hexval(b[pos + 6 + j]);
                if (v < 0)
                    return HSM_ERR_INPUT;
                blen = blen * 16 + (size_t)v;
            }
            if (blen < 6 + nd)
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

static void cbc_encrypt_blocks(bool aes, const uint8_t *key, size_t kl, const uint8_t *iv,
                               const uint8_t *in, uint8_t *out, size_t n, int *rcp)
{
    size_t bs = aes ? 16 : 8;
    EVP_CIPHER_CTX *ctx = NULL;
    uint8_t prev[16], x[16];
    memcpy(prev, iv, bs);
    for (size_t off = 0; off < n && *rcp == HSM_OK; off += bs) {
        for (size_t i = 0; i < bs; i++)
            x[i] = in[off + i] ^ prev[i];
        *rcp = hsm_ecb_oneshot(&ctx, aes, key, kl, true, x, out + off, bs);
        memcpy(prev, out + off, bs);
    }
    OPENSSL_cleanse(x, sizeof x);
    EVP_CIPHER_CTX_free(ctx);
}

/* ---------------------------------------------------------------- header */

static bool in_set(char c, const char *set)
{
    return c != '\0' && strchr(set, c) != NULL;
}

static bool is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Key usages of ANSI X9.143 / TR-31:2018 table 6 (numeric usages are proprietary and accepted). */
static const char *const known_usages[] = {
    "B0", "B1", "B2", "C0", "D0", "D1", "D2", "E0", "E1", "E2", "E3", "E4", "E5",
    "E6", "I0", "K0", "K1", "K2", "K3", "M0", "M1", "M2", "M3", "M4", "M5", "M6",
    "M7", "M8", "P0", "S0", "S1", "S2", "V0", "V1", "V2", "V3", "V4",
};

int hsm_tr31_header_parse(const char *block, size_t len, struct hsm_tr31_header *hdr)
{
    if (!block || !hdr)
        return HSM_ERR_INPUT;
    memset(hdr, 0, sizeof *hdr);
    if (len < 16)
        return HSM_ERR_DATA_LENGTH;
    if (!in_set(block[0], "ABCD"))
        return HSM_ERR_INPUT;
    if (!hsm_is_digits(block + 1, 4))
        return HSM_ERR_INPUT;
    size_t total = (size_t)((block[1] - '0') * 1000 + (block[2] - '0') * 100 +
                            (block[3] - '0') * 10 + (block[4] - '0'));
    if (total != len)
        return HSM_ERR_DATA_LENGTH;
    bool usage_ok = hsm_is_digits(block + 5, 2);
    for (size_t i = 0; !usage_ok && i < sizeof known_usages / sizeof known_usages[0]; i++)
        usage_ok = memcmp(block + 5, known_usages[i], 2) == 0;
    if (!usage_ok)
        return HSM_ERR_INPUT;
    if (!in_set(block[7], "ADEHRST0123456789") || !in_set(block[8], "BCDEGNSTVXY0123456789"))
        return HSM_ERR_INPUT;
    if (!is_alnum(block[9]) || !is_alnum(block[10]) || !in_set(block[11], "ENS"))
        return HSM_ERR_INPUT;
    if (block[14] != '0' || block[15] != '0') /* reserved */
        return HSM_ERR_INPUT;
    size_t hlen;
    int rc = header_len(block, len, &hlen);
    if (rc != HSM_OK)
        return rc;
    hdr->version = block[0];
    hdr->length = total;
    memcpy(hdr->usage, block + 5, 2);
    hdr->algorithm = block[7];
    hdr->mode = block[8];
    memcpy(hdr->kvn, block + 9, 2);
    hdr->exportability = block[11];
    hdr->nopt = (block[12] - '0') * 10 + (block[13] - '0');
    hdr->hlen = hlen;
    return HSM_OK;
}

/* ---------------------------------------------------------------- wrap / unwrap */

static int kbpk_len_ok(char v, size_t kl)
{
    bool ok = v == 'D'   ? (kl == 16 || kl == 24 || kl == 32)
              : v == 'B' ? (kl == 16 || kl == 24)
                         : (kl == 8 || kl == 16 || kl == 24);
    return ok ? HSM_OK : HSM_ERR_KEY_LENGTH;
}

/* The two keys of a version: A/C variants of the KBPK, B/D the CMAC KDF. */
static int binding_keys(char v, const uint8_t *kbpk, size_t kl, uint8_t kbek[32], uint8_t kbak[32])
{
    if (v == 'A' || v == 'C') {
        for (size_t i = 0; i < kl; i++) {
            kbek[i] = kbpk[i] ^ 0x45;
            kbak[i] = kbpk[i] ^ 0x4D;
        }
        return HSM_OK;
    }
    return kdf(v == 'D', kbpk, kl, kbek, kbak);
}

/* The block's MAC (maclen bytes in mac) over the header and macdata. */
static int block_mac(char v, const uint8_t *kbak, size_t kl, const char *hdr, size_t hlen,
                     const uint8_t *macdata, size_t n, uint8_t mac[16])
{
    bool aes = v == 'D';
    uint8_t macin[9992 + TR31_MAX_KEYDATA];
    if (hlen + n > sizeof macin)
        return HSM_ERR_DATA_LENGTH;
    memcpy(macin, hdr, hlen);
    memcpy(macin + hlen, macdata, n);
    struct hsm_key *ak = NULL;
    size_t ml = 0;
    int rc = aes ? hsm_key_from_clear_aes(HSM_KT_TAK, kbak, kl, &ak)
                 : hsm_key_from_clear(HSM_KT_TAK, kbak, kl, &ak);
    if (rc == HSM_OK)
        rc = hsm_mac_compute(ak,
                             v == 'A' || v == 'C' ? HSM_MAC_ISO9797_1
                             : aes                ? HSM_MAC_AES_CMAC
                                                  : HSM_MAC_TDES_CMAC,
                             HSM_PAD_1, macin, hlen + n, mac, &ml);
    hsm_key_release(ak);
    OPENSSL_cleanse(macin + hlen, n);
    return rc;
}

static size_t mac_len_of(char v)
{
    return v == 'B' ? 8 : v == 'D' ? 16 : 4;
}

static void hex_upper(const uint8_t *in, size_t n, char *out)
{
    static const char hx[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
}

int hsm_tr31_wrap_clear(const uint8_t *kbpk, size_t kbpk_len, const char *header, size_t hlen,
                        const uint8_t *key, size_t keylen, const uint8_t *pad, size_t padlen,
                        char *out, size_t cap)
{
    if (!kbpk || !header || !key || !out || hlen < 16 || hlen > 9000 || hlen % 8)
        return HSM_ERR_INPUT;
    char v = header[0];
    if (!in_set(v, "ABCD"))
        return HSM_ERR_INPUT;
    int rc = kbpk_len_ok(v, kbpk_len);
    if (rc != HSM_OK)
        return rc;
    if (keylen == 0 || keylen > 32 || keylen % 8)
        return HSM_ERR_KEY_LENGTH;
    bool aes = v == 'D';
    size_t bs = aes ? 16 : 8;
    size_t enclen;
    if (pad) {
        enclen = 2 + keylen + padlen;
        if (enclen % bs)
            return HSM_ERR_DATA_LENGTH;
    } else { /* mask the key length: pad as if the key were the longest of its family */
        size_t masked = keylen > (aes ? 32u : 24u) ? keylen : (aes ? 32u : 24u);
        enclen = (2 + masked + bs - 1) / bs * bs;
        padlen = enclen - 2 - keylen;
    }
    if (enclen > TR31_MAX_KEYDATA)
        return HSM_ERR_DATA_LENGTH;
    size_t maclen = mac_len_of(v);
    size_t total = hlen + 2 * enclen + 2 * maclen;
    if (total > 9992 || cap < total + 1)
        return HSM_ERR_DATA_LENGTH;

    /* the header as given, with its length field set */
    char hdr[9000];
    memcpy(hdr, header, hlen);
    hdr[1] = (char)('0' + total / 1000);
    hdr[2] = (char)('0' + total / 100 % 10);
    hdr[3] = (char)('0' + total / 10 % 10);
    hdr[4] = (char)('0' + total % 10);
    struct hsm_tr31_header ph;
    char probe[9992];
    memcpy(probe, hdr, hlen);
    memset(probe + hlen, '0', total - hlen);
    rc = hsm_tr31_header_parse(probe, total, &ph);
    if (rc != HSM_OK)
        return rc;
    if (ph.hlen != hlen)
        return HSM_ERR_INPUT; /* optional blocks do not end where the header does */
    if (hlen % (aes ? 16 : 8))
        return HSM_ERR_INPUT; /* the header fills whole cipher blocks (a PB block pads it) */

    uint8_t clear[TR31_MAX_KEYDATA], enc[TR31_MAX_KEYDATA], mac[16], kbek[32], kbak[32];
    clear[0] = (uint8_t)((keylen * 8) >> 8);
    clear[1] = (uint8_t)(keylen * 8);
    memcpy(clear + 2, key, keylen);
    if (pad)
        memcpy(clear + 2 + keylen, pad, padlen);
    else
        rc = hsm_random(clear + 2 + keylen, padlen);
    if (rc == HSM_OK)
        rc = binding_keys(v, kbpk, kbpk_len, kbek, kbak);
    if (rc == HSM_OK) {
        if (v == 'A' || v == 'C') { /* encrypt (IV = first 8 header bytes), then MAC */
            cbc_encrypt_blocks(false, kbek, kbpk_len, (const uint8_t *)hdr, clear, enc, enclen,
                               &rc);
            if (rc == HSM_OK)
                rc = block_mac(v, kbak, kbpk_len, hdr, hlen, enc, enclen, mac);
        } else { /* MAC over the clear data, which is then the IV */
            rc = block_mac(v, kbak, kbpk_len, hdr, hlen, clear, enclen, mac);
            if (rc == HSM_OK)
                cbc_encrypt_blocks(aes, kbek, kbpk_len, mac, clear, enc, enclen, &rc);
        }
    }
    if (rc == HSM_OK) {
        memcpy(out, hdr, hlen);
        hex_upper(enc, enclen, out + hlen);
        hex_upper(mac, maclen, out + hlen + 2 * enclen);
        out[total] = '\0';
    }
    OPENSSL_cleanse(clear, sizeof clear);
    OPENSSL_cleanse(kbek, sizeof kbek);
    OPENSSL_cleanse(kbak, sizeof kbak);
    return rc;
}

int hsm_tr31_unwrap_clear_pad(const uint8_t *kbpk, size_t kbpk_len, const char *block, size_t len,
                              struct hsm_tr31_header *hdr, uint8_t *key, size_t cap, size_t *keylen,
                              uint8_t *pad, size_t padcap, size_t *padlen)
{
    if (!block || len < 16 || len > 9992)
        return HSM_ERR_DATA_LENGTH;
    struct hsm_tr31_header h;
    int rc = hsm_tr31_header_parse(block, len, &h);
    if (rc != HSM_OK)
        return rc;
    char v = h.version;
    bool aes = v == 'D';
    rc = kbpk_len_ok(v, kbpk_len);
    if (rc != HSM_OK)
        return rc;
    size_t hlen = h.hlen;
    size_t bs = aes ? 16 : 8;
    size_t maclen = mac_len_of(v);
    /* the header fills whole cipher blocks: 8 bytes for A-C, 16 for D (a PB block pads it) */
    if (hlen % bs || len < hlen + 2 * maclen || (len - hlen - 2 * maclen) % (2 * bs))
        return HSM_ERR_DATA_LENGTH;
    size_t enclen = (len - hlen - 2 * maclen) / 2;
    if (enclen == 0 || enclen > TR31_MAX_KEYDATA)
        return HSM_ERR_DATA_LENGTH;

    uint8_t enc[TR31_MAX_KEYDATA], clear[TR31_MAX_KEYDATA], mac[16], want[16];
    uint8_t kbek[32], kbak[32];
    if (hsm_hex_decode(block + hlen, 2 * enclen, enc) != HSM_OK ||
        hsm_hex_decode(block + hlen + 2 * enclen, 2 * maclen, mac) != HSM_OK)
        return HSM_ERR_INPUT;
    rc = binding_keys(v, kbpk, kbpk_len, kbek, kbak);
    if (v == 'A' || v == 'C') { /* MAC over the ciphertext first */
        if (rc == HSM_OK)
            rc = block_mac(v, kbak, kbpk_len, block, hlen, enc, enclen, want);
        if (rc == HSM_OK && CRYPTO_memcmp(want, mac, maclen) != 0)
            rc = HSM_ERR_VERIFY;
        uint8_t iv[8];
        memcpy(iv, block, 8);
        if (rc == HSM_OK)
            rc = cbc_decrypt(false, kbek, kbpk_len, iv, enc, clear, enclen);
    } else {
        if (rc == HSM_OK)
            rc = cbc_decrypt(aes, kbek, kbpk_len, mac, enc, clear, enclen);
        if (rc == HSM_OK)
            rc = block_mac(v, kbak, kbpk_len, block, hlen, clear, enclen, want);
        if (rc == HSM_OK && CRYPTO_memcmp(want, mac, maclen) != 0)
            rc = HSM_ERR_VERIFY;
    }
    if (rc == HSM_OK) {
        size_t bits = (size_t)clear[0] << 8 | clear[1];
        size_t kl = bits / 8;
        if (bits % 64 || kl == 0 || 2 + kl > enclen)
            rc = HSM_ERR_INPUT;
        else if (kl > cap || (pad && enclen - 2 - kl > padcap))
            rc = HSM_ERR_DATA_LENGTH;
        if (rc == HSM_OK) {
            memcpy(key, clear + 2, kl);
            *keylen = kl;
            if (pad) {
                memcpy(pad, clear + 2 + kl, enclen - 2 - kl);
                *padlen = enclen - 2 - kl;
            }
            if (hdr)
                *hdr = h;
        }
    }
    OPENSSL_cleanse(clear, sizeof clear);
    OPENSSL_cleanse(kbek, sizeof kbek);
    OPENSSL_cleanse(kbak, sizeof kbak);
    return rc;
}

int hsm_tr31_unwrap_clear(const uint8_t *kbpk, size_t kbpk_len, const char *block, size_t len,
                          char header[17], uint8_t *key, size_t cap, size_t *keylen)
{
    int rc = hsm_tr31_unwrap_clear_pad(kbpk, kbpk_len, block, len, NULL, key, cap, keylen, NULL, 0,
                                       NULL);
    if (rc == HSM_OK) {
        memcpy(header, block, 16);
        header[16] = '\0';
    }
    return rc;
}
