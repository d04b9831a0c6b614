/* libhsm MACs: ISO/IEC 9797-1 algorithm 1 (CBC-MAC) and algorithm 3 (ANSI X9.19
 * retail MAC) with padding methods 1-3, and CMAC (SP 800-38B) with TDES or AES.
 * Each key keeps its CBC / CMAC contexts and, for the single-DES chain of algorithm
 * 3, its K1 schedule, so a MAC costs no allocation and no key schedule once the key
 * is hot: the message is streamed through them in stack-sized chunks. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>

#include "hsm_internal.h"

#define CHUNK 512

/* The padded message as a stream: optional length block, data, padding. */
struct mstream {
    uint8_t head[8];
    size_t headlen;
    const uint8_t *data;
    size_t len;
    uint8_t first_pad; /* 0x80 for method 2, else 0 */
    size_t padlen;
    size_t pos; /* bytes consumed */
};

static size_t mstream_total(const struct mstream *m)
{
    return m->headlen + m->len + m->padlen;
}

static void mstream_read(struct mstream *m, uint8_t *out, size_t n)
{
    while (n > 0) {
        size_t p = m->pos, take;
        if (p < m->headlen) {
            take = m->headlen - p < n ? m->headlen - p : n;
            memcpy(out, m->head + p, take);
        } else if (p < m->headlen + m->len) {
            size_t off = p - m->headlen;
            take = m->len - off < n ? m->len - off : n;
            memcpy(out, m->data + off, take);
        } else {
            size_t off = p - m->headlen - m->len;
            take = m->padlen - off < n ? m->padlen - off : n;
            memset(out, 0, take);
            if (off == 0 && take > 0)
                out[0] = m->first_pad;
        }
        out += take;
        n -= take;
        m->pos += take;
    }
}

static int mstream_init(struct mstream *m, enum hsm_macpad pad, const uint8_t *data, size_t len)
{
    memset(m, 0, sizeof *m);
    m->data = data;
    m->len = len;
    switch (pad) {
    case HSM_PAD_1:
        m->padlen = len == 0 ? 8 : (8 - len % 8) % 8;
        break;
    case HSM_PAD_2:
        m->padlen = 8 - len % 8;
        m->first_pad = 0x80;
        break;
    case HSM_PAD_3: {
        uint64_t bits = (uint64_t)len * 8;
        for (int i = 7; i >= 0; i--, bits >>= 8)
            m->head[i] = (uint8_t)bits;
        m->headlen = 8;
        m->padlen = (8 - len % 8) % 8;
        break;
    }
    default:
        return HSM_ERR_INPUT;
    }
    return HSM_OK;
}

/* CBC-encrypts the next nblocks blocks of m through ctx (IV zero at the start),
 * leaving the last ciphertext block in h (unchanged if nblocks is 0). */
static int cbc_chain(EVP_CIPHER_CTX *ctx, struct mstream *m, size_t nblocks, uint8_t h[8])
{
    static const uint8_t zero_iv[8];
    uint8_t in[CHUNK], out[CHUNK];
    int rc = HSM_OK;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, zero_iv, 1) != 1)
        return HSM_ERR_CRYPTO;
    size_t left = nblocks * 8;
    while (left > 0 && rc == HSM_OK) {
        size_t n = left < CHUNK ? left : CHUNK;
        int outl = 0;
        mstream_read(m, in, n);
        if (EVP_CipherUpdate(ctx, out, &outl, in, (int)n) != 1 || (size_t)outl != n)
            rc = HSM_ERR_CRYPTO;
        else
            memcpy(h, out + n - 8, 8);
        left -= n;
    }
    OPENSSL_cleanse(in, sizeof in);
    return rc;
}

/* The same chain in single DES with schedule ks: h is the chaining value on entry
 * (zero at the start of a message) and the last ciphertext block on return. */
static void des1_chain(DES_key_schedule *ks, struct mstream *m, size_t nblocks, uint8_t h[8])
{
    uint8_t buf[CHUNK];
    size_t left = nblocks * 8;
    while (left > 0) {
        size_t n = left < CHUNK ? left : CHUNK;
        mstream_read(m, buf, n);
        hsm_des1_cbc_encrypt(ks, buf, buf, n, h);
        left -= n;
    }
    OPENSSL_cleanse(buf, sizeof buf);
}

/* Lazily creates and keys a CBC context for key bytes k24 (EDE3 form). */
static int cbc_ctx(EVP_CIPHER_CTX **ctxp, bool *ready, const uint8_t k24[24])
{
    if (*ready)
        return HSM_OK;
    const struct hsm_ciphers *c = hsm_ciphers();
    if (!c)
        return HSM_ERR_CRYPTO;
    if (!*ctxp && !(*ctxp = EVP_CIPHER_CTX_new()))
        return HSM_ERR_INTERNAL;
    const EVP_CIPHER *again = EVP_CIPHER_CTX_get0_cipher(*ctxp) == c->ede3_cbc ? NULL : c->ede3_cbc;
    if (EVP_CipherInit_ex(*ctxp, again, NULL, k24, NULL, 1) != 1)
        return HSM_ERR_CRYPTO;
    if (again)
        EVP_CIPHER_CTX_set_padding(*ctxp, 0);
    *ready = true;
    return HSM_OK;
}

static int iso9797(struct hsm_key *key, enum hsm_macalg alg, enum hsm_macpad pad,
                   const uint8_t *data, size_t len, uint8_t mac[8])
{
    if (key->aes)
        return HSM_ERR_KEY_INCOMPAT;
    struct mstream m;
    int rc = mstream_init(&m, pad, data, len);
    if (rc != HSM_OK)
        return rc;
    size_t nblocks = mstream_total(&m) / 8;
    uint8_t h[8] = { 0 };
    if (alg == HSM_MAC_ISO9797_1) {
        rc = cbc_ctx(&key->cbc, &key->cbc_ready, key->ede);
        if (rc == HSM_OK)
            rc = cbc_chain(key->cbc, &m, nblocks, h);
        if (rc == HSM_OK)
            memcpy(mac, h, 8);
        OPENSSL_cleanse(h, sizeof h);
        return rc;
    }
    /* alg 3: single-DES chain with K1 over all but the last block, then
     * TDES(K1,K2,K1) of the last block xor the chain = E_K1(D_K2(H_q)). A
     * triple-length key ends with E_K3 instead (as Bouncy Castle does). The
     * chain is most of the work, so it runs in genuine single DES with K1's
     * schedule, made once per key. */
    if (key->len == 8)
        return HSM_ERR_KEY_INCOMPAT;
    if (!key->k1_ready) {
        hsm_des1_set_key(&key->k1, key->clear);
        key->k1_ready = true;
    }
    uint8_t last[8];
    if (nblocks > 1)
        des1_chain(&key->k1, &m, nblocks - 1, h);
    mstream_read(&m, last, 8);
    for (int i = 0; i < 8; i++)
        last[i] ^= h[i];
    rc = hsm_key_ecb(key, true, last, mac, 8);
    OPENSSL_cleanse(h, sizeof h);
    OPENSSL_cleanse(last, sizeof last);
    return rc;
}

static int cmac(struct hsm_key *key, const uint8_t *data, size_t len, uint8_t mac[16],
                size_t *maclen)
{
    const struct hsm_ciphers *c = hsm_ciphers();
    if (!c)
        return HSM_ERR_CRYPTO;
    if (!key->cmac && !(key->cmac = EVP_MAC_CTX_new(c->cmac)))
        return HSM_ERR_INTERNAL;
    if (!key->cmac_ready) {
        const char *cipher = !key->aes        ? "DES-EDE3-CBC"
                             : key->len == 16 ? "AES-128-CBC"
                             : key->len == 24 ? "AES-192-CBC"
                                              : "AES-256-CBC";
        OSSL_PARAM params[2];
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, (char *)cipher, 0);
        params[1] = OSSL_PARAM_construct_end();
        const uint8_t *k = key->aes ? key->clear : key->ede;
        size_t kl = key->aes ? key->len : 24;
        if (EVP_MAC_init(key->cmac, k, kl, params) != 1)
            return HSM_ERR_CRYPTO;
        key->cmac_ready = true;
    } else if (EVP_MAC_init(key->cmac, NULL, 0, NULL) != 1) {
        return HSM_ERR_CRYPTO;
    }
    size_t out = 0, bs = key->aes ? 16 : 8;
    if (EVP_MAC_update(key->cmac, data, len) != 1 || EVP_MAC_final(key->cmac, mac, &out, 16) != 1 ||
        out != bs)
        return HSM_ERR_CRYPTO;
    *maclen = out;
    return HSM_OK;
}

int hsm_mac_compute(struct hsm_key *key, enum hsm_macalg alg, enum hsm_macpad pad,
                    const uint8_t *data, size_t len, uint8_t mac[16], size_t *maclen)
{
    if (len > 0 && !data)
        return HSM_ERR_INPUT;
    switch (alg) {
    case HSM_MAC_ISO9797_1:
    case HSM_MAC_ISO9797_3: {
        int rc = iso9797(key, alg, pad, data, len, mac);
        if (rc == HSM_OK)
            *maclen = 8;
        return rc;
    }
    case HSM_MAC_TDES_CMAC:
        if (key->aes)
            return HSM_ERR_KEY_INCOMPAT;
        return cmac(key, data, len, mac, maclen);
    case HSM_MAC_AES_CMAC:
        if (!key->aes)
            return HSM_ERR_KEY_INCOMPAT;
        return cmac(key, data, len, mac, maclen);
    default:
        return HSM_ERR_INPUT;
    }
}

static bool is_mac_key(const struct hsm_key *k)
{
    return k->type == HSM_KT_TAK || k->type == HSM_KT_ZAK;
}

int hsm_mac_generate(struct hsm_key *key, enum hsm_macalg alg, enum hsm_macpad pad,
                     const uint8_t *data, size_t len, uint8_t mac[16], size_t *maclen)
{
    if (!is_mac_key(key))
        return HSM_ERR_KEY_TYPE;
    return hsm_mac_compute(key, alg, pad, data, len, mac, maclen);
}

int hsm_mac_verify(struct hsm_key *key, enum hsm_macalg alg, enum hsm_macpad pad,
                   const uint8_t *data, size_t len, const uint8_t *mac, size_t maclen)
{
    if (!is_mac_key(key))
        return HSM_ERR_KEY_TYPE;
    uint8_t want[16];
    size_t full;
    int rc = hsm_mac_compute(key, alg, pad, data, len, want, &full);
    if (rc == HSM_OK && (maclen < 4 || maclen > full))
        rc = HSM_ERR_INPUT;
    if (rc == HSM_OK && CRYPTO_memcmp(want, mac, maclen) != 0)
        rc = HSM_ERR_VERIFY;
    OPENSSL_cleanse(want, sizeof want);
    return rc;
}
