/* libhsm PINs: ISO 9564-1 PIN blocks (formats 0, 1, 3, 4) and IBM 3624, PIN
 * translation between keys and formats, IBM 3624 offsets, Visa PVV and Visa
 * CVV/CVV2/iCVV. Every clear PIN and PIN block is wiped before returning. */
#include <string.h>

#include <openssl/crypto.h>

#include "hsm_internal.h"

/* ---------------------------------------------------------------- formats */

static const struct {
    enum hsm_pinfmt fmt;
    const char *code;
} fmt_codes[] = {
    { HSM_PINFMT_ISO0, "01" }, { HSM_PINFMT_IBM3624, "03" }, { HSM_PINFMT_ISO1, "05" },
    { HSM_PINFMT_ISO3, "47" }, { HSM_PINFMT_ISO4, "48" },
};

int hsm_pinfmt_from_code(const char code[2], enum hsm_pinfmt *out)
{
    for (size_t i = 0; i < sizeof fmt_codes / sizeof fmt_codes[0]; i++) {
        if (code[0] == fmt_codes[i].code[0] && code[1] == fmt_codes[i].code[1]) {
            *out = fmt_codes[i].fmt;
            return HSM_OK;
        }
    }
    return HSM_ERR_PIN_FORMAT;
}

const char *hsm_pinfmt_code(enum hsm_pinfmt f)
{
    for (size_t i = 0; i < sizeof fmt_codes / sizeof fmt_codes[0]; i++) {
        if (fmt_codes[i].fmt == f)
            return fmt_codes[i].code;
    }
    return NULL;
}

int hsm_pinfmt_from_iso(int n, enum hsm_pinfmt *out)
{
    switch (n) {
    case 0:
    case 1:
    case 3:
    case 4:
        *out = (enum hsm_pinfmt)n;
        return HSM_OK;
    default:
        return HSM_ERR_PIN_FORMAT;
    }
}

static bool fmt_valid(enum hsm_pinfmt f)
{
    return f == HSM_PINFMT_ISO0 || f == HSM_PINFMT_ISO1 || f == HSM_PINFMT_ISO3 ||
           f == HSM_PINFMT_ISO4 || f == HSM_PINFMT_IBM3624;
}

size_t hsm_pinfmt_block_len(enum hsm_pinfmt f)
{
    return f == HSM_PINFMT_ISO4 ? 16 : 8;
}

/* ---------------------------------------------------------------- PAN fields */

int hsm_pan_account12(const char *pan, char out[13])
{
    size_t n = hsm_pan_len(pan, 2);
    if (!n)
        return HSM_ERR_ACCOUNT;
    if (n == 12) {
        memcpy(out, pan, 12);
    } else if (n > 12) {
        memcpy(out, pan + n - 13, 12);
    } else {
        /* short PAN: the digits before the check digit, zero-filled on the left */
        memset(out, '0', 12);
        memcpy(out + 12 - (n - 1), pan, n - 1);
    }
    out[12] = '\0';
    return HSM_OK;
}

/* ISO 0 / ISO 3 PAN field: 0000 || 12 account digits. */
static int pan_field8(const char *pan, uint8_t out[8])
{
    char acct[13];
    int rc = hsm_pan_account12(pan, acct);
    if (rc != HSM_OK)
        return rc;
    out[0] = out[1] = 0;
    return hsm_hex_decode(acct, 12, out + 2);
}

int hsm_iso4_pan_field(const char *pan, uint8_t out[16])
{
    size_t n = hsm_pan_len(pan, 1);
    if (!n || n > 19) /* never above 19; said for the compiler's bounds check */
        return HSM_ERR_ACCOUNT;
    uint8_t nib[32] = { 0 };
    size_t lead = n < 12 ? 12 - n : 0; /* PANs shorter than 12 are zero-filled left */
    nib[0] = (uint8_t)(n > 12 ? n - 12 : 0);
    for (size_t i = 0; i < n; i++)
        nib[1 + lead + i] = (uint8_t)(pan[i] - '0');
    for (int i = 0; i < 16; i++)
        out[i] = (uint8_t)(nib[2 * i] << 4 | nib[2 * i + 1]);
    return HSM_OK;
}

static int check_pin(const char *pin, size_t *len)
{
    if (!pin)
        return HSM_ERR_INPUT;
    size_t n = strnlen(pin, 13);
    if (n < 4 || n > 12)
        return HSM_ERR_PIN_LENGTH;
    if (!hsm_is_digits(pin, n))
        return HSM_ERR_INPUT;
    *len = n;
    return HSM_OK;
}

/* ---------------------------------------------------------------- encode / decode */

int hsm_pinblock_encode_fill(enum hsm_pinfmt f, const char *pin, const char *pan,
                             const uint8_t fill[8], uint8_t out[16], size_t *outlen)
{
    size_t n;
    if (!fmt_valid(f))
        return HSM_ERR_PIN_FORMAT;
    int rc = check_pin(pin, &n);
    if (rc != HSM_OK)
        return rc;
    uint8_t nib[16];
    uint8_t panf[16];
    size_t pos = 0;
    if (f != HSM_PINFMT_IBM3624) {
        nib[pos++] = f == HSM_PINFMT_ISO4 ? 4 : (uint8_t)f;
        nib[pos++] = (uint8_t)n;
    }
    for (size_t i = 0; i < n; i++)
        nib[pos++] = (uint8_t)(pin[i] - '0');
    for (size_t i = 0; pos < 16; i++, pos++) {
        uint8_t r = (uint8_t)(i % 2 ? fill[(i / 2) % 8] & 15 : fill[(i / 2) % 8] >> 4);
        switch (f) {
        case HSM_PINFMT_ISO0:
        case HSM_PINFMT_IBM3624:
            nib[pos] = 0xF;
            break;
        case HSM_PINFMT_ISO1:
            nib[pos] = r;
            break;
        case HSM_PINFMT_ISO3:
            /* A..F from a random nibble; the slight bias (A-D 3/16, E-F 2/16) does not
             * matter for a fill that only has to be unpredictable enough to vary */
            nib[pos] = (uint8_t)(10 + r % 6);
            break;
        case HSM_PINFMT_ISO4:
            nib[pos] = 0xA;
            break;
        }
    }
    for (size_t i = 0; i < 8; i++)
        out[i] = (uint8_t)(nib[2 * i] << 4 | nib[2 * i + 1]);
    if (f == HSM_PINFMT_ISO4)
        memcpy(out + 8, fill, 8);
    rc = HSM_OK;
    if (f == HSM_PINFMT_ISO0 || f == HSM_PINFMT_ISO3) {
        rc = pan_field8(pan, panf);
        for (int i = 0; rc == HSM_OK && i < 8; i++)
            out[i] ^= panf[i];
    } else if (f == HSM_PINFMT_ISO4) {
        rc = hsm_iso4_pan_field(pan, panf); /* validated here, used by encryption */
    }
    OPENSSL_cleanse(nib, sizeof nib);
    if (rc != HSM_OK) {
        OPENSSL_cleanse(out, 16);
        return rc;
    }
    *outlen = hsm_pinfmt_block_len(f);
    return HSM_OK;
}

int hsm_pinblock_encode(enum hsm_pinfmt f, const char *pin, const char *pan, uint8_t out[16],
                        size_t *outlen)
{
    uint8_t fill[8] = { 0 };
    if (f == HSM_PINFMT_ISO1 || f == HSM_PINFMT_ISO3 || f == HSM_PINFMT_ISO4) {
        int rc = hsm_random(fill, sizeof fill);
        if (rc != HSM_OK)
            return rc;
    }
    return hsm_pinblock_encode_fill(f, pin, pan, fill, out, outlen);
}

int hsm_pinblock_decode(enum hsm_pinfmt f, const uint8_t *blk, size_t len, const char *pan,
                        char pin[13])
{
    if (!fmt_valid(f))
        return HSM_ERR_PIN_FORMAT;
    if (len != hsm_pinfmt_block_len(f))
        return HSM_ERR_DATA_LENGTH;
    uint8_t b[8], panf[16];
    int rc = HSM_OK;
    memcpy(b, blk, 8);
    if (f == HSM_PINFMT_ISO0 || f == HSM_PINFMT_ISO3) {
        rc = pan_field8(pan, panf);
        if (rc != HSM_OK)
            return rc;
        for (int i = 0; i < 8; i++)
            b[i] ^= panf[i];
    }
    uint8_t nib[16];
    for (int i = 0; i < 8; i++) {
        nib[2 * i] = b[i] >> 4;
        nib[2 * i + 1] = b[i] & 15;
    }
    size_t n, start;
    if (f == HSM_PINFMT_IBM3624) {
        start = 0;
        for (n = 0; n < 16 && nib[n] <= 9; n++)
            ;
        if (n < 4 || n > 12)
            rc = HSM_ERR_PIN_LENGTH;
    } else {
        start = 2;
        n = nib[1];
        if (nib[0] != (f == HSM_PINFMT_ISO4 ? 4 : (uint8_t)f))
            rc = HSM_ERR_PIN_BLOCK;
        else if (n < 4 || n > 12)
            rc = HSM_ERR_PIN_LENGTH;
    }
    for (size_t i = 0; rc == HSM_OK && i < 16; i++) {
        uint8_t v = nib[i];
        if (i < start)
            continue;
        bool ok;
        if (i < start + n) {
            ok = v <= 9;
        } else {
            switch (f) {
            case HSM_PINFMT_ISO0:
            case HSM_PINFMT_IBM3624:
                ok = v == 0xF;
                break;
            case HSM_PINFMT_ISO3:
                ok = v >= 0xA;
                break;
            case HSM_PINFMT_ISO4:
                ok = v == 0xA;
                break;
            default: /* ISO 1: transaction / random fill, any value */
                ok = true;
                break;
            }
        }
        if (!ok)
            rc = HSM_ERR_PIN_BLOCK;
    }
    if (rc == HSM_OK) {
        for (size_t i = 0; i < n; i++)
            pin[i] = (char)('0' + nib[start + i]);
        pin[n] = '\0';
    }
    OPENSSL_cleanse(b, sizeof b);
    OPENSSL_cleanse(nib, sizeof nib);
    return rc;
}

/* ---------------------------------------------------------------- encrypted blocks */

static int key_fits_format(const struct hsm_key *key, enum hsm_pinfmt f)
{
    if (!fmt_valid(f))
        return HSM_ERR_PIN_FORMAT;
    if ((f == HSM_PINFMT_ISO4) != key->aes)
        return HSM_ERR_KEY_INCOMPAT;
    return HSM_OK;
}

/* The ISO 4 block cipher over the PAN field of pan: C = E(E(P) xor A) when encrypt, else
 * P = D(D(C) xor A). 16 bytes from in to out. */
static int iso4_crypt(struct hsm_key *key, bool encrypt, const char *pan, const uint8_t in[16],
                      uint8_t out[16])
{
    uint8_t panf[16], tmp[16];
    int rc = hsm_iso4_pan_field(pan, panf);
    if (rc == HSM_OK)
        rc = hsm_key_ecb(key, encrypt, in, tmp, 16);
    for (int i = 0; i < 16; i++)
        tmp[i] ^= panf[i];
    if (rc == HSM_OK)
        rc = hsm_key_ecb(key, encrypt, tmp, out, 16);
    OPENSSL_cleanse(tmp, sizeof tmp);
    return rc;
}

/* Encrypts with the given fill (NULL: random fill from RAND_bytes). */
static int encrypt_fill(struct hsm_key *key, enum hsm_pinfmt f, const char *pin, const char *pan,
                        const uint8_t *fill, uint8_t out[16], size_t *outlen)
{
    int rc = key_fits_format(key, f);
    if (rc != HSM_OK)
        return rc;
    uint8_t clear[16];
    size_t n;
    rc = fill ? hsm_pinblock_encode_fill(f, pin, pan, fill, clear, &n)
              : hsm_pinblock_encode(f, pin, pan, clear, &n);
    if (rc == HSM_OK)
        rc = f == HSM_PINFMT_ISO4 ? iso4_crypt(key, true, pan, clear, out)
                                  : hsm_key_ecb(key, true, clear, out, 8);
    OPENSSL_cleanse(clear, sizeof clear);
    if (rc == HSM_OK)
        *outlen = n;
    return rc;
}

int hsm_pin_encrypt_any(struct hsm_key *key, enum hsm_pinfmt f, const char *pin, const char *pan,
                        uint8_t out[16], size_t *outlen)
{
    return encrypt_fill(key, f, pin, pan, NULL, out, outlen);
}

int hsm_pin_decrypt_any(struct hsm_key *key, enum hsm_pinfmt f, const uint8_t *blk, size_t len,
                        const char *pan, char pin[13])
{
    int rc = key_fits_format(key, f);
    if (rc != HSM_OK)
        return rc;
    if (len != hsm_pinfmt_block_len(f))
        return HSM_ERR_DATA_LENGTH;
    uint8_t clear[16];
    rc = f == HSM_PINFMT_ISO4 ? iso4_crypt(key, false, pan, blk, clear)
                              : hsm_key_ecb(key, false, blk, clear, 8);
    if (rc == HSM_OK)
        rc = hsm_pinblock_decode(f, clear, len, pan, pin);
    OPENSSL_cleanse(clear, sizeof clear);
    return rc;
}

static bool is_pin_key(const struct hsm_key *k)
{
    return k->type == HSM_KT_TPK || k->type == HSM_KT_ZPK;
}

int hsm_pin_encrypt(struct hsm_key *key, enum hsm_pinfmt f, const char *pin, const char *pan,
                    uint8_t out[16], size_t *outlen)
{
    if (!is_pin_key(key))
        return HSM_ERR_KEY_TYPE;
    return hsm_pin_encrypt_any(key, f, pin, pan, out, outlen);
}

int hsm_pin_encrypt_fill(struct hsm_key *key, enum hsm_pinfmt f, const char *pin, const char *pan,
                         const uint8_t fill[8], uint8_t out[16], size_t *outlen)
{
    if (!is_pin_key(key))
        return HSM_ERR_KEY_TYPE;
    return encrypt_fill(key, f, pin, pan, fill, out, outlen);
}

int hsm_pin_decrypt(struct hsm_key *key, enum hsm_pinfmt f, const uint8_t *blk, size_t len,
                    const char *pan, char pin[13])
{
    if (!is_pin_key(key))
        return HSM_ERR_KEY_TYPE;
    return hsm_pin_decrypt_any(key, f, blk, len, pan, pin);
}

/* Shared tail of every translation: the PIN is already in clear in pin. */
static int reencrypt(char pin[13], int max_pin_len, struct hsm_key *dst, enum hsm_pinfmt dst_fmt,
                     const char *pan, uint8_t out[16], size_t *outlen, int *pin_len)
{
    int n = (int)strlen(pin);
    int rc = HSM_OK;
    if (max_pin_len < 0 || max_pin_len > 12 || (max_pin_len > 0 && max_pin_len < 4))
        rc = HSM_ERR_INPUT;
    else if (max_pin_len > 0 && n > max_pin_len)
        rc = HSM_ERR_PIN_LENGTH;
    if (rc == HSM_OK)
        rc = hsm_pin_encrypt_any(dst, dst_fmt, pin, pan, out, outlen);
    if (rc == HSM_OK)
        *pin_len = n;
    return rc;
}

int hsm_pin_translate_any(struct hsm_key *src, enum hsm_pinfmt src_fmt, const uint8_t *blk,
                          size_t len, struct hsm_key *dst, enum hsm_pinfmt dst_fmt, const char *pan,
                          int max_pin_len, uint8_t out[16], size_t *outlen, int *pin_len)
{
    if (dst->type != HSM_KT_ZPK)
        return HSM_ERR_KEY_TYPE;
    int rc = key_fits_format(dst, dst_fmt);
    if (rc != HSM_OK)
        return rc;
    char pin[13];
    rc = hsm_pin_decrypt_any(src, src_fmt, blk, len, pan, pin);
    if (rc == HSM_OK)
        rc = reencrypt(pin, max_pin_len, dst, dst_fmt, pan, out, outlen, pin_len);
    OPENSSL_cleanse(pin, sizeof pin);
    return rc;
}

int hsm_pin_translate(struct hsm_key *src, enum hsm_pinfmt src_fmt, const uint8_t *blk, size_t len,
                      struct hsm_key *dst, enum hsm_pinfmt dst_fmt, const char *pan,
                      int max_pin_len, uint8_t out[16], size_t *outlen, int *pin_len)
{
    if (!is_pin_key(src))
        return HSM_ERR_KEY_TYPE;
    return hsm_pin_translate_any(src, src_fmt, blk, len, dst, dst_fmt, pan, max_pin_len, out,
                                 outlen, pin_len);
}

/* ---------------------------------------------------------------- IBM 3624 */

static int check_dectab(const char dectab[16])
{
    return hsm_is_digits(dectab, 16) ? HSM_OK : HSM_ERR_DECTAB;
}

/* Natural PIN digits (values 0..9) of the validation data: 16 of them. */
static int ibm_natural(struct hsm_key *pvk, const char dectab[16], const char vdata[16],
                       uint8_t nat[16])
{
    if (pvk->type != HSM_KT_PVK)
        return HSM_ERR_KEY_TYPE;
    if (pvk->aes)
        return HSM_ERR_KEY_INCOMPAT;
    int rc = check_dectab(dectab);
    if (rc != HSM_OK)
        return rc;
    uint8_t in[8], out[8];
    if (hsm_hex_decode(vdata, 16, in) != HSM_OK)
        return HSM_ERR_INPUT;
    rc = hsm_key_ecb(pvk, true, in, out, 8);
    for (int i = 0; rc == HSM_OK && i < 8; i++) {
        nat[2 * i] = (uint8_t)(dectab[out[i] >> 4] - '0');
        nat[2 * i + 1] = (uint8_t)(dectab[out[i] & 15] - '0');
    }
    OPENSSL_cleanse(out, sizeof out);
    return rc;
}

/* IBM 3624 digit by digit against the natural PIN: out = digits - natural (an offset from a
 * PIN) when subtract, else digits + natural (a PIN from an offset), each mod 10. digits has
 * the PIN's length and digits either way. */
static int ibm_apply(struct hsm_key *pvk, const char *digits, const char dectab[16],
                     const char vdata[16], bool subtract, char out[13])
{
    size_t n;
    int rc = check_pin(digits, &n);
    if (rc != HSM_OK)
        return rc;
    uint8_t nat[16];
    rc = ibm_natural(pvk, dectab, vdata, nat);
    if (rc == HSM_OK) {
        for (size_t i = 0; i < n; i++)
            out[i] = (char)('0' + (digits[i] - '0' + (subtract ? 10 - nat[i] : nat[i])) % 10);
        out[n] = '\0';
    }
    OPENSSL_cleanse(nat, sizeof nat);
    return rc;
}

int hsm_ibm_offset(struct hsm_key *pvk, const char *pin, const char dectab[16],
                   const char vdata[16], char offset[13])
{
    return ibm_apply(pvk, pin, dectab, vdata, true, offset);
}

int hsm_ibm_pin_from_offset(struct hsm_key *pvk, const char *offset, const char dectab[16],
                            const char vdata[16], char pin[13])
{
    return ibm_apply(pvk, offset, dectab, vdata, false, pin);
}

int hsm_ibm_vdata(const char *vdata12, const char *acct12, char out[17])
{
    if (!vdata12 || !acct12)
        return HSM_ERR_INPUT;
    if (strnlen(vdata12, 13) != 12 || strnlen(acct12, 13) != 12 || !hsm_is_digits(acct12, 12))
        return HSM_ERR_INPUT;
    size_t o = 0;
    bool n_seen = false;
    for (size_t i = 0; i < 12; i++) {
        char c = vdata12[i];
        if ((c == 'N' || c == 'n') && !n_seen) {
            memcpy(out + o, acct12 + 7, 5);
            o += 5;
            n_seen = true;
        } else if (hsm_hexval(c) >= 0) {
            out[o++] = c;
        } else {
            return HSM_ERR_INPUT;
        }
    }
    while (o < 16)
        out[o++] = 'F';
    out[16] = '\0';
    return HSM_OK;
}

int hsm_pin_verify_ibm(struct hsm_key *pin_key, enum hsm_pinfmt f, const uint8_t *blk, size_t len,
                       const char *pan, struct hsm_key *pvk, int check_len, const char dectab[16],
                       const char vdata[16], const char *offset)
{
    if (!is_pin_key(pin_key))
        return HSM_ERR_KEY_TYPE;
    if (pvk->type != HSM_KT_PVK)
        return HSM_ERR_KEY_TYPE;
    if (check_len < 4 || check_len > 12)
        return HSM_ERR_INPUT;
    if (strnlen(offset, 13) < (size_t)check_len || !hsm_is_digits(offset, (size_t)check_len))
        return HSM_ERR_INPUT;
    char pin[13];
    uint8_t nat[16];
    char want[12];
    int rc = hsm_pin_decrypt_any(pin_key, f, blk, len, pan, pin);
    if (rc == HSM_OK)
        rc = ibm_natural(pvk, dectab, vdata, nat);
    if (rc == HSM_OK) {
        if (strlen(pin) < (size_t)check_len) {
            rc = HSM_ERR_VERIFY;
        } else {
            for (int i = 0; i < check_len; i++)
                want[i] = (char)('0' + (nat[i] + offset[i] - '0') % 10);
            if (CRYPTO_memcmp(want, pin, (size_t)check_len) != 0)
                rc = HSM_ERR_VERIFY;
        }
    }
    OPENSSL_cleanse(pin, sizeof pin);
    OPENSSL_cleanse(nat, sizeof nat);
    OPENSSL_cleanse(want, sizeof want);
    return rc;
}

/* ---------------------------------------------------------------- Visa PVV */

/* Decimalises the 16 hex digits of r: decimal digits left to right, then the
 * letters A..F as 0..5, until want digits are written. */
static void visa_decimalise(const uint8_t r[8], size_t want, char *out)
{
    size_t o = 0;
    for (int pass = 0; pass < 2 && o < want; pass++) {
        for (int i = 0; i < 16 && o < want; i++) {
            uint8_t v = i % 2 ? r[i / 2] & 15 : r[i / 2] >> 4;
            if (pass == 0 && v <= 9)
                out[o++] = (char)('0' + v);
            else if (pass == 1 && v > 9)
                out[o++] = (char)('0' + v - 10);
        }
    }
    out[o] = '\0';
}

int hsm_pvv_generate(struct hsm_key *pvk, const char *pan, int pvki, const char *pin, char pvv[5])
{
    if (pvk->type != HSM_KT_PVK)
        return HSM_ERR_KEY_TYPE;
    if (pvk->aes)
        return HSM_ERR_KEY_INCOMPAT;
    if (pvki < 0 || pvki > 9)
        return HSM_ERR_INDEX;
    size_t n;
    int rc = check_pin(pin, &n);
    if (rc != HSM_OK)
        return rc;
    char acct[13], tsp[16];
    rc = hsm_pan_account12(pan, acct);
    if (rc != HSM_OK)
        return rc;
    memcpy(tsp, acct + 1, 11);
    tsp[11] = (char)('0' + pvki);
    memcpy(tsp + 12, pin, 4);
    uint8_t in[8], out[8];
    rc = hsm_hex_decode(tsp, 16, in);
    if (rc == HSM_OK)
        rc = hsm_key_ecb(pvk, true, in, out, 8);
    if (rc == HSM_OK)
        visa_decimalise(out, 4, pvv);
    OPENSSL_cleanse(tsp, sizeof tsp);
    OPENSSL_cleanse(in, sizeof in);
    OPENSSL_cleanse(out, sizeof out);
    return rc;
}

int hsm_pin_verify_pvv(struct hsm_key *pin_key, enum hsm_pinfmt f, const uint8_t *blk, size_t len,
                       const char *pan, struct hsm_key *pvk, int pvki, const char pvv[4])
{
    if (!is_pin_key(pin_key) || pvk->type != HSM_KT_PVK)
        return HSM_ERR_KEY_TYPE;
    if (!hsm_is_digits(pvv, 4))
        return HSM_ERR_INPUT;
    char pin[13], want[5];
    int rc = hsm_pin_decrypt_any(pin_key, f, blk, len, pan, pin);
    if (rc == HSM_OK)
        rc = hsm_pvv_generate(pvk, pan, pvki, pin, want);
    if (rc == HSM_OK && CRYPTO_memcmp(want, pvv, 4) != 0)
        rc = HSM_ERR_VERIFY;
    OPENSSL_cleanse(pin, sizeof pin);
    OPENSSL_cleanse(want, sizeof want);
    return rc;
}

/* ---------------------------------------------------------------- CVV */

int hsm_cvv_generate(struct hsm_key *cvk, const char *pan, const char exp[4], const char svc[3],
                     char cvv[4])
{
    if (cvk->type != HSM_KT_CVK)
        return HSM_ERR_KEY_TYPE;
    if (cvk->aes || cvk->len != 16)
        return HSM_ERR_KEY_LENGTH;
    if (!pan || !exp || !svc)
        return HSM_ERR_INPUT;
    size_t n = hsm_pan_len(pan, 1);
    if (!n)
        return HSM_ERR_ACCOUNT;
    if (!hsm_is_digits(exp, 4) || !hsm_is_digits(svc, 3))
        return HSM_ERR_INPUT;
    char digits[32];
    memset(digits, '0', sizeof digits);
    memcpy(digits, pan, n);
    memcpy(digits + n, exp, 4);
    memcpy(digits + n + 4, svc, 3);
    uint8_t block[16], mac[16];
    size_t maclen;
    int rc = hsm_hex_decode(digits, 32, block);
    /* DES(A, B1) xor B2, then TDES(A||B) = ISO 9797-1 alg 3 over B1||B2, no padding */
    if (rc == HSM_OK)
        rc = hsm_mac_compute(cvk, HSM_MAC_ISO9797_3, HSM_PAD_1, block, 16, mac, &maclen);
    if (rc == HSM_OK)
        visa_decimalise(mac, 3, cvv);
    OPENSSL_cleanse(digits, sizeof digits);
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(mac, sizeof mac);
    return rc;
}

int hsm_cvv_verify(struct hsm_key *cvk, const char *pan, const char exp[4], const char svc[3],
                   const char cvv[3])
{
    if (!hsm_is_digits(cvv, 3))
        return HSM_ERR_INPUT;
    char want[4];
    int rc = hsm_cvv_generate(cvk, pan, exp, svc, want);
    if (rc == HSM_OK && CRYPTO_memcmp(want, cvv, 3) != 0)
        rc = HSM_ERR_VERIFY;
    OPENSSL_cleanse(want, sizeof want);
    return rc;
}
