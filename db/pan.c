/* PAN helpers: the keyed HMAC-SHA256 used as the PAN's lookup key (journal, wallets), the
 * AES-256-GCM seal for the one place a PAN must be kept (the reversal queue's DE 2), and the
 * journal's partition date derived from DE 7. */
#include "db.h"

#include "clock.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

static bool pan_ok(const char *pan, size_t len)
{
    if (!pan || len < 12 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++)
        if (pan[i] < '0' || pan[i] > '9')
            return false;
    return true;
}

int db_pan_hmac(const uint8_t *key, size_t key_len, const char *pan, size_t pan_len,
                uint8_t out[32])
{
    unsigned int n = 0;
    if (!key || key_len < 16 || key_len > 1024 || !pan_ok(pan, pan_len))
        return DB_E_INVALID;
    if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)pan, pan_len, out, &n) ||
        n != 32)
        return DB_E_SYS;
    return 0;
}

struct db_pan_hasher {
    EVP_MD_CTX *inner, *outer, *scratch;
};

void db_pan_hasher_free(struct db_pan_hasher *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->inner);
    EVP_MD_CTX_free(h->outer);
    EVP_MD_CTX_free(h->scratch);
    free(h);
}

int db_pan_hasher_new(const uint8_t *key, size_t key_len, struct db_pan_hasher **out)
{
    uint8_t k[64] = { 0 }, ipad[64], opad[64];
    unsigned int n = 0;
    int rc = DB_E_SYS;
    if (!key || key_len < 16 || key_len > 1024 || !out)
        return DB_E_INVALID;
    struct db_pan_hasher *h = calloc(1, sizeof *h);
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!h || !md)
        goto done;
    if (key_len > 64) { /* RFC 2104: a key longer than the block is hashed first */
        if (!EVP_Digest(key, key_len, k, &n, md, NULL))
            goto done;
    } else {
        memcpy(k, key, key_len);
    }
    for (int i = 0; i < 64; i++) {
        ipad[i] = k[i] ^ 0x36;
        opad[i] = k[i] ^ 0x5c;
    }
    h->inner = EVP_MD_CTX_new();
    h->outer = EVP_MD_CTX_new();
    h->scratch = EVP_MD_CTX_new();
    if (h->inner && h->outer && h->scratch && EVP_DigestInit_ex(h->inner, md, NULL) == 1 &&
        EVP_DigestUpdate(h->inner, ipad, 64) == 1 && EVP_DigestInit_ex(h->outer, md, NULL) == 1 &&
        EVP_DigestUpdate(h->outer, opad, 64) == 1)
        rc = 0;
done:
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(ipad, sizeof ipad);
    OPENSSL_cleanse(opad, sizeof opad);
    EVP_MD_free(md);
    if (rc != 0) {
        db_pan_hasher_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int db_pan_hasher_mac(struct db_pan_hasher *h, const char *pan, size_t pan_len, uint8_t out[32])
{
    uint8_t inner[32];
    if (!h || !pan_ok(pan, pan_len))
        return DB_E_INVALID;
    int ok = EVP_MD_CTX_copy_ex(h->scratch, h->inner) == 1 &&
             EVP_DigestUpdate(h->scratch, pan, pan_len) == 1 &&
             EVP_DigestFinal_ex(h->scratch, inner, NULL) == 1 &&
             EVP_MD_CTX_copy_ex(h->scratch, h->outer) == 1 &&
             EVP_DigestUpdate(h->scratch, inner, sizeof inner) == 1 &&
             EVP_DigestFinal_ex(h->scratch, out, NULL) == 1;
    OPENSSL_cleanse(inner, sizeof inner);
    return ok ? 0 : DB_E_SYS;
}

int db_pan_seal(const uint8_t key[32], const char *pan, size_t pan_len, uint8_t *out, size_t cap)
{
    if (!key || !pan_ok(pan, pan_len) || !out || cap < pan_len + 28)
        return DB_E_INVALID;
    if (RAND_bytes(out, 12) != 1)
        return DB_E_SYS;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, fin = 0, rc = DB_E_SYS;
    if (ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, out) == 1 &&
        EVP_EncryptUpdate(ctx, out + 12, &len, (const unsigned char *)pan, (int)pan_len) == 1 &&
        EVP_EncryptFinal_ex(ctx, out + 12 + len, &fin) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + len + fin) == 1)
        rc = 12 + len + fin + 16;
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int db_pan_open(const uint8_t key[32], const uint8_t *in, size_t in_len, char *pan, size_t cap)
{
    if (!key || !in || in_len < 12 + 16 + 12 || in_len > 12 + 16 + 19 || !pan || cap < 20)
        return DB_E_INVALID;
    size_t ct_len = in_len - 28;
    uint8_t tag[16];
    memcpy(tag, in + in_len - 16, 16);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, fin = 0, rc = DB_E_INVALID;
    unsigned char buf[32];
    if (ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, in) == 1 &&
        EVP_DecryptUpdate(ctx, buf, &len, in + 12, (int)ct_len) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
        EVP_DecryptFinal_ex(ctx, buf + len, &fin) == 1 &&
        pan_ok((char *)buf, (size_t)(len + fin))) {
        memcpy(pan, buf, (size_t)(len + fin));
        pan[len + fin] = '\0';
        rc = len + fin;
    }
    OPENSSL_cleanse(buf, sizeof buf);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

static int days_in_month(int y, int m)
{
    static const int d[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return (m == 2 && leap) ? 29 : d[m - 1];
}

void db_request_date(const char *de7, uint64_t now_us, char out[11])
{
    int64_t now_days = (int64_t)(now_us / 1000000 / 86400), y;
    unsigned today_m, today_d;
    at_civil_from_days(now_days, &y, &today_m, &today_d);
    int month = 0, day = 0;
    bool ok = de7 && strlen(de7) == 10;
    for (int i = 0; ok && i < 10; i++)
        ok = de7[i] >= '0' && de7[i] <= '9';
    if (ok) {
        month = (de7[0] - '0') * 10 + (de7[1] - '0');
        day = (de7[2] - '0') * 10 + (de7[3] - '0');
        ok = month >= 1 && month <= 12 && day >= 1;
    }
    if (ok) {
        /* The year of the three candidates (last, this, next) nearest to now. */
        int64_t best_y = y, best = -1;
        for (int64_t cy = y - 1; cy <= y + 1; cy++) {
            if (day > days_in_month((int)cy, month))
                continue;
            int64_t cd = at_days_from_civil(cy, (unsigned)month, (unsigned)day);
            int64_t dist = cd > now_days ? cd - now_days : now_days - cd;
            if (best < 0 || dist < best) {
                best = dist;
                best_y = cy;
            }
        }
        if (best >= 0) {
            at_put_date(out, best_y, (unsigned)month, (unsigned)day);
            return;
        }
    }
    at_put_date(out, y, today_m, today_d);
}
