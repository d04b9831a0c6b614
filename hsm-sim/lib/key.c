/* libhsm key handling: error codes, key types, cipher contexts, the variant LMK
 * (Thales test LMK or a file), the key cache, key generation, ZMK export/import,
 * parity and check values. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "hsm_internal.h"

/* ---------------------------------------------------------------- errors */

static const struct {
    int rc;
    const char *code;
    const char *text;
} err_table[] = {
    { HSM_OK, "00", "no error" },
    { HSM_ERR_VERIFY, "01", "verification failure" },
    { HSM_ERR_KEY_LENGTH, "02", "inappropriate key length" },
    { HSM_ERR_KEY_TYPE_CODE, "04", "invalid key type code" },
    { HSM_ERR_KEY_LEN_FLAG, "05", "invalid key length flag" },
    { HSM_ERR_SRC_PARITY, "10", "source key parity error" },
    { HSM_ERR_DST_PARITY, "11", "destination key parity error" },
    { HSM_ERR_LMK_PARITY, "13", "master key parity error" },
    { HSM_ERR_INPUT, "15", "invalid input data" },
    { HSM_ERR_PIN_BLOCK, "20", "PIN block does not contain valid values" },
    { HSM_ERR_INDEX, "21", "invalid index value" },
    { HSM_ERR_ACCOUNT, "22", "invalid account number" },
    { HSM_ERR_PIN_FORMAT, "23", "invalid PIN block format code" },
    { HSM_ERR_PIN_LENGTH, "24", "PIN is fewer than 4 or more than 12 digits" },
    { HSM_ERR_DECTAB, "25", "decimalization table error" },
    { HSM_ERR_KEY_SCHEME, "26", "invalid key scheme" },
    { HSM_ERR_KEY_INCOMPAT, "27", "incompatible key length" },
    { HSM_ERR_KEY_TYPE, "28", "invalid key type" },
    { HSM_ERR_NOT_PERMITTED, "29", "function not permitted" },
    { HSM_ERR_INTERNAL, "41", "internal error" },
    { HSM_ERR_CRYPTO, "42", "cipher failure" },
    { HSM_ERR_DATA_LENGTH, "80", "data length error" },
};

const char *hsm_err_code(int rc)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++) {
        if (err_table[i].rc == rc)
            return err_table[i].code;
    }
    return "41";
}

const char *hsm_strerror(int rc)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++) {
        if (err_table[i].rc == rc)
            return err_table[i].text;
    }
    return "internal error";
}

/* ---------------------------------------------------------------- small helpers */

bool hsm_is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

int hsm_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int hsm_hex_decode(const char *s, size_t n, uint8_t *out)
{
    if (n % 2)
        return HSM_ERR_INPUT;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hsm_hexval(s[2 * i]), lo = hsm_hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return HSM_ERR_INPUT;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return HSM_OK;
}

size_t hsm_pan_len(const char *pan, size_t min)
{
    size_t n = pan ? strnlen(pan, 20) : 0;
    return n >= min && n <= 19 && hsm_is_digits(pan, n) ? n : 0;
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

bool hsm_parity_check(const uint8_t *key, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (__builtin_parity(key[i]) == 0)
            return false;
    }
    return true;
}

void hsm_parity_fix(uint8_t *key, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (__builtin_parity(key[i]) == 0)
            key[i] ^= 1;
    }
}

int hsm_random(uint8_t *buf, size_t n)
{
    if (n == 0)
        return HSM_OK;
    return RAND_bytes(buf, (int)n) == 1 ? HSM_OK : HSM_ERR_CRYPTO;
}

/* ---------------------------------------------------------------- key types */

/* LMK pair indexes: 00-01 -> 0, 02-03 -> 1, ... 38-39 -> 19. */
static const struct hsm_kt_info kt_table[HSM_KT_max] = {
    /* ZMK and TMK may be AES to serve as TR-31 version D key block protection keys (Atlas) */
    [HSM_KT_ZMK] = { "ZMK", "000", 2, 0, false, true },
    [HSM_KT_ZPK] = { "ZPK", "001", 3, 0, false, true },
    [HSM_KT_TMK] = { "TMK", "002", 7, 0, false, true },
    [HSM_KT_TPK] = { "TPK", "002", 7, 0, false, true },
    [HSM_KT_PVK] = { "PVK", "002", 7, 0, false, false },
    [HSM_KT_CVK] = { "CVK", "402", 7, 4, false, false },
    [HSM_KT_TAK] = { "TAK", "003", 8, 0, false, true },
    [HSM_KT_ZAK] = { "ZAK", "008", 13, 0, false, true },
    [HSM_KT_BDK] = { "BDK", "009", 14, 0, false, false },
    [HSM_KT_MK_AC] = { "MK-AC", "109", 14, 1, false, false },
    [HSM_KT_ZEK] = { "ZEK", "00A", 15, 0, false, true },
    [HSM_KT_BDK_AES] = { "BDK-AES", "909", 14, 9, true, true },
};

const struct hsm_kt_info *hsm_kt(enum hsm_keytype t)
{
    if ((unsigned)t >= HSM_KT_max)
        return NULL;
    return &kt_table[t];
}

const char *hsm_keytype_name(enum hsm_keytype t)
{
    const struct hsm_kt_info *i = hsm_kt(t);
    return i ? i->name : NULL;
}

const char *hsm_keytype_code(enum hsm_keytype t)
{
    const struct hsm_kt_info *i = hsm_kt(t);
    return i ? i->code : NULL;
}

int hsm_keytype_from_name(const char *name, enum hsm_keytype *out)
{
    for (int t = 0; t < HSM_KT_max; t++) {
        if (strcasecmp(name, kt_table[t].name) == 0) {
            *out = (enum hsm_keytype)t;
            return HSM_OK;
        }
    }
    return HSM_ERR_KEY_TYPE_CODE;
}

int hsm_keytype_from_code(const char *code3, enum hsm_keytype *out)
{
    for (int t = 0; t < HSM_KT_max; t++) {
        if (strncasecmp(code3, kt_table[t].code, 3) == 0) {
            *out = (enum hsm_keytype)t;
            return HSM_OK;
        }
    }
    return HSM_ERR_KEY_TYPE_CODE;
}

/* Bytes of key material a scheme carries. */
static size_t scheme_keylen(char scheme)
{
    switch (scheme) {
    case 'Z':
        return 8;
    case 'U':
    case 'X':
    case 'A':
        return 16;
    case 'T':
    case 'Y':
        return 24;
    default:
        return 0;
    }
}

int hsm_keytext_len(const char *s, size_t avail, size_t *len)
{
    if (avail == 0)
        return HSM_ERR_INPUT;
    size_t prefix = 1, hexlen;
    if (hsm_hexval(s[0]) >= 0) {
        prefix = 0;
        hexlen = 16;
    } else {
        size_t kl = scheme_keylen(s[0]);
        if (kl == 0)
            return HSM_ERR_KEY_SCHEME;
        hexlen = 2 * kl;
    }
    if (avail < prefix + hexlen)
        return HSM_ERR_INPUT;
    for (size_t i = prefix; i < prefix + hexlen; i++) {
        if (hsm_hexval(s[i]) < 0)
            return HSM_ERR_INPUT;
    }
    *len = prefix + hexlen;
    return HSM_OK;
}

/* Parses a key text of exactly len characters into scheme + encrypted bytes.
 * Unprefixed: 16H = Z, 32H = X, 48H = Y. */
static int keytext_parse(const char *s, size_t len, char *scheme, uint8_t *bytes, size_t *n)
{
    if (len == 0)
        return HSM_ERR_INPUT;
    char sc;
    const char *hex = s;
    size_t hexlen = len;
    if ((s[0] == 'A' || s[0] == 'a') && len == 33) {
        sc = 'A'; /* 'A' is also a hex digit: the length decides */
        hex++;
        hexlen--;
    } else if (hsm_hexval(s[0]) >= 0) {
        sc = len == 16 ? 'Z' : len == 32 ? 'X' : len == 48 ? 'Y' : 0;
        if (sc == 0)
            return HSM_ERR_INPUT;
    } else {
        sc = s[0];
        if (sc == 'z')
            sc = 'Z';
        if (scheme_keylen(sc) == 0)
            return HSM_ERR_KEY_SCHEME;
        hex++;
        hexlen--;
    }
    if (hexlen != 2 * scheme_keylen(sc))
        return HSM_ERR_INPUT;
    if (hsm_hex_decode(hex, hexlen, bytes) != HSM_OK)
        return HSM_ERR_INPUT;
    *scheme = sc;
    *n = hexlen / 2;
    return HSM_OK;
}

/* ---------------------------------------------------------------- ciphers */

static struct hsm_ciphers g_ciphers;
static pthread_once_t g_ciphers_once = PTHREAD_ONCE_INIT;
static bool g_ciphers_ok;

static void ciphers_init(void)
{
    g_ciphers.ede3_ecb = EVP_CIPHER_fetch(NULL, "DES-EDE3-ECB", NULL);
    g_ciphers.ede3_cbc = EVP_CIPHER_fetch(NULL, "DES-EDE3-CBC", NULL);
    g_ciphers.aes128_ecb = EVP_CIPHER_fetch(NULL, "AES-128-ECB", NULL);
    g_ciphers.aes192_ecb = EVP_CIPHER_fetch(NULL, "AES-192-ECB", NULL);
    g_ciphers.aes256_ecb = EVP_CIPHER_fetch(NULL, "AES-256-ECB", NULL);
    g_ciphers.aes128_cbc = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
    g_ciphers.aes192_cbc = EVP_CIPHER_fetch(NULL, "AES-192-CBC", NULL);
    g_ciphers.aes256_cbc = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    g_ciphers.cmac = EVP_MAC_fetch(NULL, "CMAC", NULL);
    g_ciphers_ok = g_ciphers.ede3_ecb && g_ciphers.ede3_cbc && g_ciphers.aes128_ecb &&
                   g_ciphers.aes192_ecb && g_ciphers.aes256_ecb && g_ciphers.aes128_cbc &&
                   g_ciphers.aes192_cbc && g_ciphers.aes256_cbc && g_ciphers.cmac;
}

const struct hsm_ciphers *hsm_ciphers(void)
{
    pthread_once(&g_ciphers_once, ciphers_init);
    return g_ciphers_ok ? &g_ciphers : NULL;
}

static const EVP_CIPHER *ecb_cipher(bool aes, size_t keylen)
{
    const struct hsm_ciphers *c = hsm_ciphers();
    if (!c)
        return NULL;
    if (!aes)
        return c->ede3_ecb;
    return keylen == 16 ? c->aes128_ecb : keylen == 24 ? c->aes192_ecb : c->aes256_ecb;
}

void hsm_des_expand(const uint8_t *key, size_t len, uint8_t out[24])
{
    if (len == 8) {
        memcpy(out, key, 8);
        memcpy(out + 8, key, 8);
        memcpy(out + 16, key, 8);
    } else if (len == 16) {
        memcpy(out, key, 16);
        memcpy(out + 16, key, 8);
    } else {
        memcpy(out, key, 24);
    }
}

/* ---------------------------------------------------------------- single DES */

/* OpenSSL 3's default provider has no single-DES cipher (DES-ECB and DES-CBC live
 * in the legacy provider, which a deployment may not ship or load), and DES-EDE3
 * keyed K||K||K costs three DES operations per block for the result of one. The
 * low-level DES_* functions are deprecated in OpenSSL 3 but still built by default,
 * and they are single DES. These wrappers are libhsm's only calls to them, so the
 * deprecation warning is silenced here and nowhere else. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

void hsm_des1_set_key(DES_key_schedule *ks, const uint8_t key[8])
{
    /* unchecked, like OpenSSL's DES-EDE3: parity is checked where keys are loaded */
    DES_set_key_unchecked((const_DES_cblock *)key, ks);
}

void hsm_des1_cbc_encrypt(DES_key_schedule *ks, const uint8_t *in, uint8_t *out, size_t n,
                          uint8_t iv[8])
{
    DES_ncbc_encrypt(in, out, (long)n, ks, (DES_cblock *)iv, DES_ENCRYPT);
}

void hsm_des1_ecb(DES_key_schedule *ks, bool encrypt, const uint8_t *in, uint8_t *out, size_t n)
{
    for (size_t off = 0; off + 8 <= n; off += 8)
        DES_ecb_encrypt((const_DES_cblock *)(in + off), (DES_cblock *)(out + off), ks,
                        encrypt ? DES_ENCRYPT : DES_DECRYPT);
}

#pragma GCC diagnostic pop

/* Keys ctx (allocating it if *ctxp is NULL) for ECB in the given direction. */
static int ctx_init(EVP_CIPHER_CTX **ctxp, const EVP_CIPHER *cipher, const uint8_t *key,
                    bool encrypt)
{
    if (!cipher)
        return HSM_ERR_CRYPTO;
    if (*ctxp == NULL) {
        *ctxp = EVP_CIPHER_CTX_new();
        if (*ctxp == NULL)
            return HSM_ERR_INTERNAL;
    }
    /* Passing the cipher again makes OpenSSL free and rebuild the provider
     * context; with NULL it only runs the key schedule (no allocation). */
    const EVP_CIPHER *again = EVP_CIPHER_CTX_get0_cipher(*ctxp) == cipher ? NULL : cipher;
    if (EVP_CipherInit_ex(*ctxp, again, NULL, key, NULL, encrypt ? 1 : 0) != 1)
        return HSM_ERR_CRYPTO;
    /* Padding off (else decryption holds back the last block for Final); the
     * setting lives in the provider context, so only a new one needs it. */
    if (again)
        EVP_CIPHER_CTX_set_padding(*ctxp, 0);
    return HSM_OK;
}

static int ctx_update(EVP_CIPHER_CTX *ctx, const uint8_t *in, uint8_t *out, size_t n)
{
    int outl = 0;
    if (EVP_CipherUpdate(ctx, out, &outl, in, (int)n) != 1 || (size_t)outl != n)
        return HSM_ERR_CRYPTO;
    return HSM_OK;
}

int hsm_ecb_oneshot(EVP_CIPHER_CTX **ctxp, bool aes, const uint8_t *key, size_t keylen,
                    bool encrypt, const uint8_t *in, uint8_t *out, size_t n)
{
    uint8_t k24[24];
    const uint8_t *k = key;
    if (!aes && keylen == 8) {
        if (n % 8 != 0)
            return HSM_ERR_CRYPTO; /* as EVP refuses a partial block without padding */
        DES_key_schedule ks;
        hsm_des1_set_key(&ks, key);
        hsm_des1_ecb(&ks, encrypt, in, out, n);
        OPENSSL_cleanse(&ks, sizeof ks);
        return HSM_OK;
    }
    if (!aes) {
        if (keylen != 16 && keylen != 24)
            return HSM_ERR_KEY_LENGTH;
        hsm_des_expand(key, keylen, k24);
        k = k24;
    } else if (keylen != 16 && keylen != 24 && keylen != 32) {
        return HSM_ERR_KEY_LENGTH;
    }
    EVP_CIPHER_CTX *tmp = NULL;
    EVP_CIPHER_CTX **cp = ctxp ? ctxp : &tmp;
    int rc = ctx_init(cp, ecb_cipher(aes, keylen), k, encrypt);
    if (rc == HSM_OK)
        rc = ctx_update(*cp, in, out, n);
    OPENSSL_cleanse(k24, sizeof k24);
    EVP_CIPHER_CTX_free(tmp);
    return rc;
}

/* ---------------------------------------------------------------- key objects */

/* Overwrites the key schedule held by ctx (a schedule is as secret as the key)
 * by re-keying it with zeros: no allocation, the context stays reusable. */
static void scrub_ctx(EVP_CIPHER_CTX *ctx)
{
    static const uint8_t zero[32];
    if (ctx && EVP_CIPHER_CTX_get0_cipher(ctx))
        (void)EVP_CipherInit_ex(ctx, NULL, NULL, zero, NULL, -1);
}

/* Scrubs the schedules made from k's key, which the ready flags name, and marks
 * them unmade. A schedule never made costs nothing to wipe: scrubbing an EVP
 * context is a full key schedule (three for DES-EDE3). */
static void drop_schedules(struct hsm_key *k)
{
    static const uint8_t zero[32];
    if (k->enc_ready)
        scrub_ctx(k->enc);
    if (k->dec_ready)
        scrub_ctx(k->dec);
    if (k->cbc_ready)
        scrub_ctx(k->cbc);
    if (k->cmac_ready)
        (void)EVP_MAC_init(k->cmac, zero, k->aes ? k->len : 24, NULL);
    if (k->k1_ready)
        OPENSSL_cleanse(&k->k1, sizeof k->k1);
    k->enc_ready = k->dec_ready = k->cbc_ready = k->k1_ready = k->cmac_ready = false;
}

/* (Re)keys k without making any schedule: each is made on first use. */
static int key_set(struct hsm_key *k, enum hsm_keytype type, bool aes, const uint8_t *clear,
                   size_t len)
{
    if (aes ? (len != 16 && len != 24 && len != 32) : (len != 8 && len != 16 && len != 24))
        return HSM_ERR_KEY_LENGTH;
    drop_schedules(k); /* a key object re-keyed in place keeps no old schedule */
    k->type = type;
    k->aes = aes;
    k->len = (uint8_t)len;
    memcpy(k->clear, clear, len);
    if (!aes)
        hsm_des_expand(clear, len, k->ede);
    return HSM_OK;
}

/* Makes k's ECB schedule for one direction unless it is made already. */
static int key_schedule(struct hsm_key *k, bool encrypt)
{
    EVP_CIPHER_CTX **ctxp = encrypt ? &k->enc : &k->dec;
    bool *ready = encrypt ? &k->enc_ready : &k->dec_ready;
    if (*ready)
        return HSM_OK;
    int rc = ctx_init(ctxp, ecb_cipher(k->aes, k->len), k->aes ? k->clear : k->ede, encrypt);
    if (rc != HSM_OK) {
        scrub_ctx(*ctxp); /* whatever a failed init left in it */
        return rc;
    }
    *ready = true;
    return HSM_OK;
}

/* Keys loaded, generated or imported get their encryption schedule here, so that
 * a key that cannot be scheduled fails where it is set up; decryption, CBC and
 * CMAC schedules are made on first use (MAC and AC keys never decrypt). */
int hsm_key_setup(struct hsm_key *k, enum hsm_keytype type, bool aes, const uint8_t *clear,
                  size_t len)
{
    int rc = key_set(k, type, aes, clear, len);
    if (rc == HSM_OK)
        rc = key_schedule(k, true);
    return rc;
}

void hsm_key_wipe(struct hsm_key *k)
{
    if (k->derived)
        hsm_key_wipe(k->derived);
    drop_schedules(k);
    scrub_ctx(k->aux);
    OPENSSL_cleanse(k->clear, sizeof k->clear);
    OPENSSL_cleanse(k->ede, sizeof k->ede);
    memset(&k->kb, 0, sizeof k->kb);
}

void hsm_key_destroy(struct hsm_key *k)
{
    hsm_key_wipe(k);
    /* EVP_CIPHER_CTX_free / EVP_MAC_CTX_free cleanse the key schedules. */
    EVP_CIPHER_CTX_free(k->enc);
    EVP_CIPHER_CTX_free(k->dec);
    EVP_CIPHER_CTX_free(k->cbc);
    EVP_CIPHER_CTX_free(k->aux);
    EVP_MAC_CTX_free(k->cmac);
    if (k->derived) {
        hsm_key_destroy(k->derived);
        free(k->derived);
        k->derived = NULL;
    }
    k->enc = k->dec = k->cbc = k->aux = NULL;
    k->cmac = NULL;
}

int hsm_key_derived(struct hsm_key *k, enum hsm_keytype type, bool aes, const uint8_t *clear,
                    size_t len, struct hsm_key **out)
{
    if (!k->derived) {
        k->derived = calloc(1, sizeof *k->derived);
        if (!k->derived)
            return HSM_ERR_INTERNAL;
    }
    /* no schedule up front: a derived PIN key only decrypts, and each one made
     * costs a key schedule now and another to scrub when the caller wipes it */
    int rc = key_set(k->derived, type, aes, clear, len);
    if (rc == HSM_OK)
        *out = k->derived;
    return rc;
}

int hsm_key_ecb(struct hsm_key *k, bool encrypt, const uint8_t *in, uint8_t *out, size_t n)
{
    int rc = key_schedule(k, encrypt);
    if (rc != HSM_OK)
        return rc;
    return ctx_update(encrypt ? k->enc : k->dec, in, out, n);
}

static int key_from_clear(enum hsm_keytype type, bool aes, const uint8_t *clear, size_t len,
                          struct hsm_key **out)
{
    struct hsm_key *k = calloc(1, sizeof *k);
    if (!k)
        return HSM_ERR_INTERNAL;
    int rc = hsm_key_setup(k, type, aes, clear, len);
    if (rc != HSM_OK) {
        hsm_key_destroy(k);
        free(k);
        return rc;
    }
    *out = k;
    return HSM_OK;
}

int hsm_key_from_clear(enum hsm_keytype type, const uint8_t *clear, size_t len,
                       struct hsm_key **out)
{
    const struct hsm_kt_info *info = hsm_kt(type);
    if (!info)
        return HSM_ERR_KEY_TYPE_CODE;
    return key_from_clear(type, info->aes_only, clear, len, out);
}

int hsm_key_from_clear_aes(enum hsm_keytype type, const uint8_t *clear, size_t len,
                           struct hsm_key **out)
{
    const struct hsm_kt_info *info = hsm_kt(type);
    if (!info)
        return HSM_ERR_KEY_TYPE_CODE;
    if (!info->aes_ok)
        return HSM_ERR_KEY_TYPE;
    return key_from_clear(type, true, clear, len, out);
}

/* Whether scheme (an LMK / ZMK key scheme letter) may carry a key of type. */
static int scheme_allowed(const struct hsm_kt_info *info, char scheme)
{
    if (scheme == 'A')
        return info->aes_ok ? HSM_OK : HSM_ERR_KEY_INCOMPAT;
    return info->aes_only ? HSM_ERR_KEY_INCOMPAT : HSM_OK;
}

/* Parses text (a key as written under the LMK or a ZMK) for a key of info's type: its scheme,
 * its encrypted bytes and their count. HSM_OK, keytext_parse's errors, or HSM_ERR_KEY_INCOMPAT
 * when the scheme does not fit the type. */
static int keytext_for(const struct hsm_kt_info *info, const char *text, size_t len, char *scheme,
                       uint8_t enc[24], size_t *n)
{
    int rc = keytext_parse(text, len, scheme, enc, n);
    return rc == HSM_OK ? scheme_allowed(info, *scheme) : rc;
}

enum hsm_keytype hsm_key_type(const struct hsm_key *k)
{
    return k->type;
}

size_t hsm_key_length(const struct hsm_key *k)
{
    return k->len;
}

bool hsm_key_is_aes(const struct hsm_key *k)
{
    return k->aes;
}

void hsm_key_kcv(struct hsm_key *k, uint8_t kcv[8])
{
    uint8_t zero[16] = { 0 }, out[16];
    if (hsm_key_ecb(k, true, zero, out, k->aes ? 16 : 8) != HSM_OK)
        memset(out, 0, sizeof out);
    memcpy(kcv, out, 8);
}

int hsm_kcv_clear(const uint8_t *key, size_t len, bool aes, uint8_t kcv[8])
{
    uint8_t zero[16] = { 0 }, out[16];
    int rc = hsm_ecb_oneshot(NULL, aes, key, len, true, zero, out, aes ? 16 : 8);
    if (rc == HSM_OK)
        memcpy(kcv, out, 8);
    return rc;
}

/* ---------------------------------------------------------------- variant LMK */

/* payShield Thales test LMK set (payshield.md section 11). */
const char *const hsm_test_lmk[HSM_LMK_PAIRS] = {
    "01010101010101017902CD1FD36EF8BA", "20202020202020203131313131313131",
    "40404040404040405151515151515151", "61616161616161617070707070707070",
    "80808080808080809191919191919191", "A1A1A1A1A1A1A1A1B0B0B0B0B0B0B0B0",
    "C1C1010101010101D0D0010101010101", "E0E0010101010101F1F1010101010101",
    "1C587F1C13924FEF0101010101010101", "01010101010101010101010101010101",
    "02020202020202020404040404040404", "07070707070707071010101010101010",
    "13131313131313131515151515151515", "16161616161616161919191919191919",
    "1A1A1A1A1A1A1A1A1C1C1C1C1C1C1C1C", "23232323232323232525252525252525",
    "26262626262626262929292929292929", "2A2A2A2A2A2A2A2A2C2C2C2C2C2C2C2C",
    "2F2F2F2F2F2F2F2F3131313131313131", "01010101010101010101010101010101",
};

/* Key-type variants 1..9 (XORed into byte 0 of the LMK pair) and key-scheme
 * variants (XORed into byte 8: double A6,5A; triple 6A,DE,2B). */
static const uint8_t type_variant[10] = {
    0x00, 0xA6, 0x5A, 0x6A, 0xDE, 0x2B, 0x50, 0x74, 0x9C, 0xFA
};
static const uint8_t scheme_variant_2[2] = { 0xA6, 0x5A };
static const uint8_t scheme_variant_3[3] = { 0x6A, 0xDE, 0x2B };
/* Atlas extension 'A' (AES-128 under the variant LMK): two variants used by no
 * payShield scheme, so a 'U' or 'T' cryptogram relabelled 'A' decrypts to garbage. */
static const uint8_t scheme_variant_aes[2] = { 0x3C, 0xC3 };

static uint8_t scheme_variant(char scheme, size_t block)
{
    switch (scheme) {
    case 'U':
        return scheme_variant_2[block];
    case 'A':
        return scheme_variant_aes[block];
    case 'T':
        return scheme_variant_3[block];
    default:
        return 0; /* Z, X, Y: plain ECB per block */
    }
}

/* Encrypts / decrypts the n-byte key (n = 8 blocks) under the 16-byte key
 * encryption key kek (an LMK pair or a ZMK in natural form; kek_len 8/16/24) with
 * byte 0 ^= v0 and, per 8-byte block i, byte 8 ^= the scheme variant of block i. */
static int variant_crypt(EVP_CIPHER_CTX **ctxp, const uint8_t *kek, size_t kek_len, uint8_t v0,
                         char scheme, bool encrypt, const uint8_t *in, uint8_t *out, size_t n)
{
    uint8_t base[24], k[24];
    size_t blen = kek_len == 8 ? 16 : kek_len;
    if (kek_len == 8) {
        memcpy(base, kek, 8);
        memcpy(base + 8, kek, 8);
    } else {
        memcpy(base, kek, kek_len);
    }
    base[0] ^= v0;
    int rc = HSM_OK;
    for (size_t b = 0; b < n / 8 && rc == HSM_OK; b++) {
        memcpy(k, base, blen);
        k[8] ^= scheme_variant(scheme, b);
        rc = hsm_ecb_oneshot(ctxp, false, k, blen, encrypt, in + 8 * b, out + 8 * b, 8);
    }
    OPENSSL_cleanse(base, sizeof base);
    OPENSSL_cleanse(k, sizeof k);
    return rc;
}

static int lmk_crypt(struct hsm *h, const struct hsm_kt_info *info, char scheme, bool encrypt,
                     const uint8_t *in, uint8_t *out, size_t n)
{
    return variant_crypt(&h->lmk_ctx, h->lmk[info->pair], 16, type_variant[info->variant], scheme,
                         encrypt, in, out, n);
}

void hsm_lmk_check_value(const struct hsm *h, char out[17])
{
    uint8_t zero[8] = { 0 }, kcv[8];
    if (hsm_ecb_oneshot(NULL, false, h->lmk[0], 16, true, zero, kcv, 8) != HSM_OK)
        memset(kcv, 0, sizeof kcv);
    hex_encode(kcv, 8, out);
}

/* ---------------------------------------------------------------- the cache */

static void cache_flush(struct hsm *h)
{
    for (size_t i = 0; i < h->nslots; i++) {
        hsm_key_wipe(&h->slots[i]);
        h->slots[i].in_use = false;
        h->slots[i].refs = 0;
        h->slots[i].hnext = i + 1 < h->nslots ? (int32_t)(i + 1) : -1;
        h->slots[i].lru_prev = h->slots[i].lru_next = -1;
    }
    for (size_t i = 0; i < h->nbuckets; i++)
        h->buckets[i] = -1;
    h->free_head = h->nslots ? 0 : -1;
    h->lru_head = h->lru_tail = -1;
}

int hsm_new(struct hsm **out, size_t cache_entries)
{
    if (cache_entries == 0)
        cache_entries = 1024;
    if (cache_entries < 8)
        cache_entries = 8;
    if (cache_entries > (1u << 20))
        return HSM_ERR_INPUT;
    if (!hsm_ciphers())
        return HSM_ERR_CRYPTO;
    struct hsm *h = calloc(1, sizeof *h);
    if (!h)
        return HSM_ERR_INTERNAL;
    h->nslots = cache_entries;
    h->nbuckets = 16;
    while (h->nbuckets < 2 * cache_entries)
        h->nbuckets <<= 1;
    h->slots = calloc(h->nslots, sizeof *h->slots);
    h->buckets = calloc(h->nbuckets, sizeof *h->buckets);
    if (!h->slots || !h->buckets) {
        hsm_free(h);
        return HSM_ERR_INTERNAL;
    }
    for (size_t i = 0; i < HSM_LMK_PAIRS; i++) {
        if (hsm_hex_decode(hsm_test_lmk[i], 32, h->lmk[i]) != HSM_OK) {
            hsm_free(h);
            return HSM_ERR_INTERNAL;
        }
    }
    cache_flush(h);
    *out = h;
    return HSM_OK;
}

void hsm_free(struct hsm *h)
{
    if (!h)
        return;
    if (h->slots) {
        for (size_t i = 0; i < h->nslots; i++)
            hsm_key_destroy(&h->slots[i]);
    }
    OPENSSL_cleanse(h->lmk, sizeof h->lmk);
    OPENSSL_cleanse(h->kb_lmk, sizeof h->kb_lmk);
    EVP_CIPHER_CTX_free(h->lmk_ctx);
    free(h->slots);
    free(h->buckets);
    free(h);
}

static uint32_t text_hash(enum hsm_keytype type, const char *s, size_t n)
{
    uint32_t x = 2166136261u ^ (uint32_t)type;
    for (size_t i = 0; i < n; i++) {
        x ^= (uint8_t)s[i];
        x *= 16777619u;
    }
    return x;
}

static void lru_unlink(struct hsm *h, int32_t i)
{
    struct hsm_key *k = &h->slots[i];
    if (k->lru_prev >= 0)
        h->slots[k->lru_prev].lru_next = k->lru_next;
    else
        h->lru_head = k->lru_next;
    if (k->lru_next >= 0)
        h->slots[k->lru_next].lru_prev = k->lru_prev;
    else
        h->lru_tail = k->lru_prev;
    k->lru_prev = k->lru_next = -1;
}

static void lru_push_head(struct hsm *h, int32_t i)
{
    struct hsm_key *k = &h->slots[i];
    k->lru_prev = -1;
    k->lru_next = h->lru_head;
    if (h->lru_head >= 0)
        h->slots[h->lru_head].lru_prev = i;
    h->lru_head = i;
    if (h->lru_tail < 0)
        h->lru_tail = i;
}

static void hash_unlink(struct hsm *h, int32_t i)
{
    struct hsm_key *k = &h->slots[i];
    int32_t *pp = &h->buckets[k->hash & (h->nbuckets - 1)];
    while (*pp >= 0 && *pp != i)
        pp = &h->slots[*pp].hnext;
    if (*pp == i)
        *pp = k->hnext;
    k->hnext = -1;
}

/* Takes a slot for a new key: a free one, else the least recently used unpinned
 * one (wiped, unlinked). -1 if every slot is pinned. */
static int32_t slot_take(struct hsm *h)
{
    int32_t i = h->free_head;
    if (i >= 0) {
        h->free_head = h->slots[i].hnext;
        h->slots[i].hnext = -1;
        return i;
    }
    i = h->lru_tail;
    if (i < 0)
        return -1;
    lru_unlink(h, i);
    hash_unlink(h, i);
    hsm_key_wipe(&h->slots[i]);
    h->slots[i].in_use = false;
    return i;
}

static void slot_free(struct hsm *h, int32_t i)
{
    hsm_key_wipe(&h->slots[i]);
    h->slots[i].in_use = false;
    h->slots[i].hnext = h->free_head;
    h->free_head = i;
}

int hsm_key_load(struct hsm *h, enum hsm_keytype type, const char *text, size_t len,
                 struct hsm_key **out)
{
    const struct hsm_kt_info *info = hsm_kt(type);
    if (!info)
        return HSM_ERR_KEY_TYPE_CODE;
    if (len == 0 || len > HSM_KEYTEXT_MAX)
        return HSM_ERR_INPUT;
    uint32_t hv = text_hash(type, text, len);
    for (int32_t i = h->buckets[hv & (h->nbuckets - 1)]; i >= 0; i = h->slots[i].hnext) {
        struct hsm_key *k = &h->slots[i];
        if (k->hash == hv && k->type == type && k->textlen == len &&
            memcmp(k->text, text, len) == 0) {
            if (k->refs++ == 0)
                lru_unlink(h, i);
            *out = k;
            return HSM_OK;
        }
    }

    char scheme;
    uint8_t enc[24], clear[32];
    size_t n;
    bool aes;
    struct hsm_kb_attrs kb = { .set = false };
    int rc;
    if (text[0] == 'S') { /* a key block under the key-block LMK (keyblock.c) */
        rc = hsm_kb_lmk_unwrap(h, type, text, len, clear, &n, &aes, &kb);
    } else {
        rc = len <= 49 ? keytext_for(info, text, len, &scheme, enc, &n) : HSM_ERR_INPUT;
        if (rc != HSM_OK)
            return rc;
        aes = scheme == 'A';
        rc = lmk_crypt(h, info, scheme, false, enc, clear, n);
        if (rc == HSM_OK && !aes && !hsm_parity_check(clear, n))
            rc = HSM_ERR_SRC_PARITY;
    }
    if (rc != HSM_OK) {
        OPENSSL_cleanse(clear, sizeof clear);
        return rc;
    }
    int32_t i = slot_take(h);
    if (i < 0) {
        OPENSSL_cleanse(clear, sizeof clear);
        return HSM_ERR_INTERNAL;
    }
    struct hsm_key *k = &h->slots[i];
    rc = hsm_key_setup(k, type, aes, clear, n);
    OPENSSL_cleanse(clear, sizeof clear);
    if (rc != HSM_OK) {
        slot_free(h, i);
        return rc;
    }
    k->kb = kb;
    k->owner = h;
    k->in_use = true;
    k->refs = 1;
    k->hash = hv;
    k->textlen = (uint8_t)len;
    memcpy(k->text, text, len);
    k->text[len] = '\0';
    int32_t *b = &h->buckets[hv & (h->nbuckets - 1)];
    k->hnext = *b;
    *b = i;
    *out = k;
    return HSM_OK;
}

void hsm_key_release(struct hsm_key *k)
{
    if (!k)
        return;
    struct hsm *h = k->owner;
    if (!h) {
        hsm_key_destroy(k);
        free(k);
        return;
    }
    if (k->refs > 0 && --k->refs == 0)
        lru_push_head(h, (int32_t)(k - h->slots));
}

/* ---------------------------------------------------------------- LMK file */

int hsm_lmk_load(struct hsm *h, const char *path, char *err, size_t errlen)
{
    uint8_t lmk[HSM_LMK_PAIRS][16];
    bool seen[HSM_LMK_PAIRS] = { false };
    char line[256];
    int lineno = 0, rc = HSM_OK;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (err)
            snprintf(err, errlen, "cannot open LMK file %s", path);
        return HSM_ERR_INPUT;
    }
    while (rc == HSM_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0')
            continue;
        unsigned a, b;
        char hex[64];
        int used = 0;
        if (sscanf(p, "%2u-%2u %63s %n", &a, &b, hex, &used) != 3 || p[used] != '\0' ||
            p[2] != '-' || a % 2 || b != a + 1 || a / 2 >= HSM_LMK_PAIRS) {
            if (err)
                snprintf(err, errlen, "%s:%d: expected \"NN-MM <32 hex>\" for a pair 00-01..38-39",
                         path, lineno);
            rc = HSM_ERR_INPUT;
            break;
        }
        unsigned idx = a / 2;
        if (strlen(hex) != 32 || hsm_hex_decode(hex, 32, lmk[idx]) != HSM_OK) {
            if (err)
                snprintf(err, errlen, "%s:%d: LMK pair %02u-%02u is not 32 hex characters", path,
                         lineno, a, b);
            rc = HSM_ERR_INPUT;
        } else if (!hsm_parity_check(lmk[idx], 16)) {
            if (err)
                snprintf(err, errlen, "%s:%d: LMK pair %02u-%02u does not have odd parity", path,
                         lineno, a, b);
            rc = HSM_ERR_LMK_PARITY;
        } else if (seen[idx]) {
            if (err)
                snprintf(err, errlen, "%s:%d: LMK pair %02u-%02u given twice", path, lineno, a, b);
            rc = HSM_ERR_INPUT;
        }
        seen[idx] = true;
        OPENSSL_cleanse(line, sizeof line);
        OPENSSL_cleanse(hex, sizeof hex);
    }
    fclose(f);
    for (unsigned i = 0; rc == HSM_OK && i < HSM_LMK_PAIRS; i++) {
        if (!seen[i]) {
            if (err)
                snprintf(err, errlen, "%s: LMK pair %02u-%02u missing", path, 2 * i, 2 * i + 1);
            rc = HSM_ERR_INPUT;
        }
    }
    if (rc == HSM_OK) {
        bool pinned = false;
        for (size_t i = 0; i < h->nslots; i++)
            pinned |= h->slots[i].in_use && h->slots[i].refs > 0;
        if (pinned) {
            if (err)
                snprintf(err, errlen, "keys are still in use; LMK not replaced");
            rc = HSM_ERR_NOT_PERMITTED;
        } else {
            memcpy(h->lmk, lmk, sizeof lmk);
            cache_flush(h);
        }
    }
    OPENSSL_cleanse(lmk, sizeof lmk);
    OPENSSL_cleanse(line, sizeof line);
    return rc;
}

bool hsm_has_keyblock_lmk(const struct hsm *h)
{
    return h && h->kb_lmk_len > 0;
}

int hsm_lmk_keyblock_load(struct hsm *h, const char *path, char *err, size_t errlen)
{
    char line[256];
    uint8_t key[32];
    size_t klen = 0;
    int lineno = 0, rc = HSM_OK;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (err)
            snprintf(err, errlen, "cannot open key-block LMK file %s", path);
        return HSM_ERR_INPUT;
    }
    while (rc == HSM_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, " \t\r\n");
        if (*p == '#' || n == 0) {
            OPENSSL_cleanse(line, sizeof line);
            continue;
        }
        if (klen || (n != 32 && n != 48 && n != 64) || p[n + strspn(p + n, " \t\r\n")] != '\0' ||
            hsm_hex_decode(p, n, key) != HSM_OK) {
            if (err)
                snprintf(err, errlen,
                         "%s:%d: expected one line of 32, 48 or 64 hex characters "
                         "(an AES-128/192/256 key-block LMK)",
                         path, lineno);
            rc = HSM_ERR_INPUT;
        } else {
            klen = n / 2;
        }
        OPENSSL_cleanse(line, sizeof line);
    }
    fclose(f);
    if (rc == HSM_OK && klen == 0) {
        if (err)
            snprintf(err, errlen, "%s: no key in the key-block LMK file", path);
        rc = HSM_ERR_INPUT;
    }
    if (rc == HSM_OK) {
        bool pinned = false;
        for (size_t i = 0; i < h->nslots; i++)
            pinned |= h->slots[i].in_use && h->slots[i].refs > 0;
        if (pinned) {
            if (err)
                snprintf(err, errlen, "keys are still in use; key-block LMK not replaced");
            rc = HSM_ERR_NOT_PERMITTED;
        } else {
            memcpy(h->kb_lmk, key, klen);
            h->kb_lmk_len = klen;
            cache_flush(h);
        }
    }
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

/* ---------------------------------------------------------------- generate, export, import */

/* Writes scheme prefix (none for Z) + hex of n encrypted bytes. */
static int write_text(char scheme, const uint8_t *enc, size_t n, char *out, size_t cap)
{
    size_t need = (scheme == 'Z' ? 0 : 1) + 2 * n + 1;
    if (cap < need)
        return HSM_ERR_INPUT;
    char *p = out;
    if (scheme != 'Z')
        *p++ = scheme;
    hex_encode(enc, n, p);
    return HSM_OK;
}

static int check_scheme_for(bool aes, size_t keylen, enum hsm_scheme scheme)
{
    size_t kl = scheme_keylen((char)scheme);
    if (kl == 0)
        return HSM_ERR_KEY_SCHEME;
    if (aes != (scheme == HSM_SCHEME_A))
        return HSM_ERR_KEY_SCHEME;
    if (kl != keylen)
        return HSM_ERR_KEY_INCOMPAT;
    return HSM_OK;
}

int hsm_key_to_lmk(struct hsm *h, struct hsm_key *k, enum hsm_scheme scheme, char *out, size_t cap)
{
    const struct hsm_kt_info *info = hsm_kt(k->type);
    if (scheme == HSM_SCHEME_S)
        return hsm_kb_lmk_wrap(h, k, out, cap);
    int rc = check_scheme_for(k->aes, k->len, scheme);
    if (rc != HSM_OK)
        return rc;
    uint8_t enc[32];
    rc = lmk_crypt(h, info, (char)scheme, true, k->clear, enc, k->len);
    if (rc == HSM_OK)
        rc = write_text((char)scheme, enc, k->len, out, cap);
    return rc;
}

/* What hsm_key_generate and hsm_key_import answer for a new key of type whose clear value is
 * clear (n bytes; the 24-byte buffer is cleansed here): the key under the LMK (scheme) in out
 * and its check value in kcv. */
static int new_key_answer(struct hsm *h, enum hsm_keytype type, bool aes, uint8_t clear[24],
                          size_t n, enum hsm_scheme scheme, const struct hsm_kb_attrs *kb,
                          char *out, size_t cap, uint8_t kcv[8])
{
    struct hsm_key k = { 0 };
    /* n is a scheme's length (at most 24); the bound is said for the compiler's bounds check */
    int rc = n <= 24 ? hsm_key_setup(&k, type, aes, clear, n) : HSM_ERR_KEY_LENGTH;
    OPENSSL_cleanse(clear, 24);
    if (kb)
        k.kb = *kb;
    if (rc == HSM_OK)
        rc = hsm_key_to_lmk(h, &k, scheme, out, cap);
    if (rc == HSM_OK)
        hsm_key_kcv(&k, kcv);
    hsm_key_destroy(&k);
    return rc;
}

/* n random key bytes into clear: odd parity and halves that differ for DES. */
static int random_key(bool aes, size_t n, uint8_t clear[24])
{
    int rc;
    do {
        rc = hsm_random(clear, n);
        if (rc != HSM_OK)
            return rc;
        if (!aes)
            hsm_parity_fix(clear, n);
        /* a multi-length DES key with equal halves is a single-length key */
    } while (!aes && n >= 16 && CRYPTO_memcmp(clear, clear + 8, 8) == 0);
    return HSM_OK;
}

int hsm_key_generate_kb(struct hsm *h, enum hsm_keytype type, char mode, const char *kvn,
                        char exportability, char *out, size_t cap, uint8_t kcv[8])
{
    const struct hsm_kt_info *info = hsm_kt(type);
    if (!info)
        return HSM_ERR_KEY_TYPE_CODE;
    if (h->kb_lmk_len == 0)
        return HSM_ERR_KEY_SCHEME;
    bool aes = info->aes_only;
    struct hsm_kb_attrs a;
    hsm_kb_defaults(type, aes, 16, &a);
    a.set = true;
    int rc = hsm_kb_narrow(&a, mode, kvn, exportability);
    if (rc != HSM_OK)
        return rc;
    uint8_t clear[24];
    if ((rc = random_key(aes, 16, clear)) != HSM_OK)
        return rc;
    return new_key_answer(h, type, aes, clear, 16, HSM_SCHEME_S, &a, out, cap, kcv);
}

int hsm_key_generate(struct hsm *h, enum hsm_keytype type, enum hsm_scheme scheme, char *out,
                     size_t cap, uint8_t kcv[8])
{
    const struct hsm_kt_info *info = hsm_kt(type);
    if (!info)
        return HSM_ERR_KEY_TYPE_CODE;
    size_t n = scheme_keylen((char)scheme);
    bool aes = scheme == HSM_SCHEME_A;
    if (scheme == HSM_SCHEME_S) { /* key block: a double-length DES key, AES-128 if AES only */
        if (h->kb_lmk_len == 0)
            return HSM_ERR_KEY_SCHEME;
        n = 16;
        aes = info->aes_only;
    } else if (n == 0 || scheme_allowed(info, (char)scheme) != HSM_OK) {
        return HSM_ERR_KEY_SCHEME;
    }
    uint8_t clear[24];
    int rc = random_key(aes, n, clear);
    if (rc != HSM_OK)
        return rc;
    return new_key_answer(h, type, aes, clear, n, scheme, NULL, out, cap, kcv);
}

int hsm_key_export(struct hsm_key *zmk, struct hsm_key *k, enum hsm_scheme scheme, char *out,
                   size_t cap)
{
    if (zmk->type != HSM_KT_ZMK && zmk->type != HSM_KT_TMK) /* a TMK wraps like a ZMK */
        return HSM_ERR_KEY_TYPE;
    if (zmk->aes)
        return HSM_ERR_KEY_INCOMPAT;
    int rc = hsm_key_permits(k, HSM_USE_EXPORT); /* key-block exportability N */
    if (rc == HSM_OK)
        rc = hsm_key_permits(zmk, HSM_USE_ENCRYPT);
    if (rc != HSM_OK)
        return rc;
    rc = check_scheme_for(k->aes, k->len, scheme);
    if (rc != HSM_OK)
        return rc;
    uint8_t enc[32];
    rc = variant_crypt(&zmk->aux, zmk->clear, zmk->len, 0, (char)scheme, true, k->clear, enc,
                       k->len);
    if (rc == HSM_OK)
        rc = write_text((char)scheme, enc, k->len, out, cap);
    return rc;
}

int hsm_key_import(struct hsm *h, struct hsm_key *zmk, enum hsm_keytype type, const char *text,
                   size_t len, enum hsm_scheme lmk_scheme, int atalla_variant, char *out,
                   size_t cap, uint8_t kcv[8])
{
    const struct hsm_kt_info *info = hsm_kt(type);
    if (!info)
        return HSM_ERR_KEY_TYPE_CODE;
    if (zmk->type != HSM_KT_ZMK && zmk->type != HSM_KT_TMK)
        return HSM_ERR_KEY_TYPE;
    if (zmk->aes)
        return HSM_ERR_KEY_INCOMPAT;
    if (atalla_variant < 0 || atalla_variant > 9)
        return HSM_ERR_INPUT;
    char scheme;
    uint8_t enc[24], clear[24];
    size_t n;
    int rc = keytext_for(info, text, len, &scheme, enc, &n);
    if (rc != HSM_OK) /* a scheme that does not fit is a scheme error here */
        return rc == HSM_ERR_KEY_INCOMPAT ? HSM_ERR_KEY_SCHEME : rc;
    bool aes = scheme == 'A';
    rc = variant_crypt(&zmk->aux, zmk->clear, zmk->len, (uint8_t)(atalla_variant * 8), scheme,
                       false, enc, clear, n);
    if (rc == HSM_OK && !aes && !hsm_parity_check(clear, n))
        rc = HSM_ERR_DST_PARITY;
    if (rc != HSM_OK) {
        OPENSSL_cleanse(clear, sizeof clear);
        return rc;
    }
    return new_key_answer(h, type, aes, clear, n, lmk_scheme, NULL, out, cap, kcv);
}

/* The device side of a key download (docs/keys.md): a terminal holds its keys in clear. */
int hsm_key_unwrap(struct hsm_key *kek, enum hsm_keytype type, const char *text, size_t len,
                   struct hsm_key **out)
{
    const struct hsm_kt_info *info = hsm_kt(type);
    if (!info)
        return HSM_ERR_KEY_TYPE_CODE;
    if (kek->type != HSM_KT_ZMK && kek->type != HSM_KT_TMK)
        return HSM_ERR_KEY_TYPE;
    if (kek->aes)
        return HSM_ERR_KEY_INCOMPAT;
    char scheme;
    uint8_t enc[24], clear[24];
    size_t n;
    int rc = keytext_for(info, text, len, &scheme, enc, &n);
    if (rc != HSM_OK)
        return rc == HSM_ERR_KEY_INCOMPAT ? HSM_ERR_KEY_SCHEME : rc;
    if (scheme == 'A')
        return HSM_ERR_KEY_SCHEME;
    rc = variant_crypt(&kek->aux, kek->clear, kek->len, 0, scheme, false, enc, clear, n);
    if (rc == HSM_OK && !hsm_parity_check(clear, n))
        rc = HSM_ERR_DST_PARITY;
    if (rc == HSM_OK)
        rc = hsm_key_from_clear(type, clear, n, out);
    OPENSSL_cleanse(clear, sizeof clear);
    return rc;
}
