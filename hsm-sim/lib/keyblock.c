/* libhsm key blocks with keys: the key-block LMK (keys under the LMK as 'S' + a TR-31
 * version D block), the attributes a key block gives a key (usage, mode of use,
 * exportability) and their enforcement, and payShield-style TR-31 import and export under a
 * ZMK/TMK acting as key block protection key. The block format itself is tr31.c. */
#include <string.h>

#include <openssl/crypto.h>

#include "hsm_internal.h"

/* Usages a key of each type may carry, and the one (with its mode) it gets by default. */
static const struct {
    const char *usages; /* "P0" pairs, concatenated */
    const char *def;
    char mode;
} kb_type[HSM_KT_max] = {
    [HSM_KT_ZMK] = { "K0K1", "K0", 'B' },       [HSM_KT_ZPK] = { "P0", "P0", 'B' },
    [HSM_KT_TMK] = { "K0K1", "K0", 'B' },       [HSM_KT_TPK] = { "P0", "P0", 'B' },
    [HSM_KT_PVK] = { "V0V1V2", "V0", 'C' },     [HSM_KT_CVK] = { "C0", "C0", 'C' },
    [HSM_KT_TAK] = { "M0M1M3M5M6", "M3", 'C' }, [HSM_KT_ZAK] = { "M0M1M3M5M6", "M3", 'C' },
    [HSM_KT_BDK] = { "B0", "B0", 'X' },         [HSM_KT_MK_AC] = { "E0", "E0", 'X' },
    [HSM_KT_ZEK] = { "D0", "D0", 'B' },         [HSM_KT_BDK_AES] = { "B0", "B0", 'X' },
};

static bool usage_fits(enum hsm_keytype type, const char usage[2])
{
    const char *u = kb_type[type].usages;
    for (; u && *u; u += 2)
        if (u[0] == usage[0] && u[1] == usage[1])
            return true;
    return false;
}

void hsm_kb_defaults(enum hsm_keytype type, bool aes, size_t len, struct hsm_kb_attrs *a)
{
    memset(a, 0, sizeof *a);
    a->set = false;
    memcpy(a->usage, (unsigned)type < HSM_KT_max ? kb_type[type].def : "00", 2);
    a->mode = (unsigned)type < HSM_KT_max ? kb_type[type].mode : 'N';
    /* an AES MAC key is a CMAC key (ISO 9797-1 algorithm 5) */
    if (aes && a->usage[0] == 'M')
        memcpy(a->usage, "M6", 2);
    a->alg = aes ? 'A' : len == 8 ? 'D' : 'T';
    memcpy(a->kvn, "00", 2);
    a->exp = 'E';
}

int hsm_key_permits(const struct hsm_key *k, enum hsm_key_use use)
{
    if (!k || !k->kb.set)
        return HSM_OK;
    const char *modes;
    switch (use) {
    case HSM_USE_GENERATE:
        modes = "CGN";
        break;
    case HSM_USE_VERIFY:
        modes = "CVN";
        break;
    case HSM_USE_ENCRYPT:
        modes = "BEN";
        break;
    case HSM_USE_DECRYPT:
        modes = "BDN";
        break;
    case HSM_USE_DERIVE:
        modes = "XN";
        break;
    case HSM_USE_EXPORT:
        return k->kb.exp == 'E' || k->kb.exp == 'S' ? HSM_OK : HSM_ERR_NOT_PERMITTED;
    default:
        return HSM_ERR_NOT_PERMITTED;
    }
    return strchr(modes, k->kb.mode) ? HSM_OK : HSM_ERR_NOT_PERMITTED;
}

void hsm_key_usage(const struct hsm_key *k, char usage[3], char *mode, char *exportability)
{
    struct hsm_kb_attrs a = k->kb;
    if (!a.set)
        hsm_kb_defaults(k->type, k->aes, k->len, &a);
    memcpy(usage, a.usage, 3);
    *mode = a.mode;
    *exportability = a.exp;
}

/* Checks a parsed header against type and the clear key: usage, algorithm (AES or DES) and,
 * for DES keys, parity. */
static int header_fits(enum hsm_keytype type, const struct hsm_tr31_header *hd, const uint8_t *key,
                       size_t n, bool *aes)
{
    const struct hsm_kt_info *info = hsm_kt(type);
    if (!info)
        return HSM_ERR_KEY_TYPE_CODE;
    if (!usage_fits(type, hd->usage))
        return HSM_ERR_KEY_TYPE_CODE;
    if (hd->algorithm == 'A') {
        if (!info->aes_ok || (n != 16 && n != 24 && n != 32))
            return HSM_ERR_KEY_INCOMPAT;
        *aes = true;
    } else if (hd->algorithm == 'T' || hd->algorithm == 'D') {
        if (info->aes_only || (n != 8 && n != 16 && n != 24))
            return HSM_ERR_KEY_INCOMPAT;
        *aes = false;
        if (!hsm_parity_check(key, n))
            return HSM_ERR_SRC_PARITY;
    } else {
        return HSM_ERR_KEY_INCOMPAT;
    }
    return HSM_OK;
}

static void attrs_of(const struct hsm_tr31_header *hd, struct hsm_kb_attrs *a)
{
    a->set = true;
    memcpy(a->usage, hd->usage, 3);
    a->alg = hd->algorithm;
    a->mode = hd->mode;
    memcpy(a->kvn, hd->kvn, 3);
    a->exp = hd->exportability;
}

int hsm_kb_lmk_unwrap(struct hsm *h, enum hsm_keytype type, const char *text, size_t len,
                      uint8_t clear[32], size_t *n, bool *aes, struct hsm_kb_attrs *a)
{
    if (h->kb_lmk_len == 0)
        return HSM_ERR_KEY_SCHEME;
    if (len < 2 || text[0] != 'S' || text[1] != 'D')
        return HSM_ERR_KEY_SCHEME;
    struct hsm_tr31_header hd;
    int rc = hsm_tr31_unwrap_clear_pad(h->kb_lmk, h->kb_lmk_len, text + 1, len - 1, &hd, clear, 32,
                                       n, NULL, 0, NULL);
    if (rc == HSM_ERR_VERIFY)
        return HSM_ERR_SRC_PARITY;
    if (rc != HSM_OK)
        return rc;
    rc = header_fits(type, &hd, clear, *n, aes);
    if (rc == HSM_OK)
        attrs_of(&hd, a);
    else
        OPENSSL_cleanse(clear, 32);
    return rc;
}

/* The 16-character header for k with attributes a, in version v. */
static void make_header(char v, const struct hsm_kb_attrs *a, char hdr[17])
{
    memcpy(hdr, "D0000P0TB00E0000", 17);
    hdr[0] = v;
    memcpy(hdr + 5, a->usage, 2);
    hdr[7] = a->alg;
    hdr[8] = a->mode;
    memcpy(hdr + 9, a->kvn, 2);
    hdr[11] = a->exp;
}

int hsm_kb_lmk_wrap(struct hsm *h, const struct hsm_key *k, char *out, size_t cap)
{
    if (h->kb_lmk_len == 0)
        return HSM_ERR_KEY_SCHEME;
    struct hsm_kb_attrs a = k->kb;
    if (!a.set)
        hsm_kb_defaults(k->type, k->aes, k->len, &a);
    char hdr[17];
    make_header('D', &a, hdr);
    if (cap < 2)
        return HSM_ERR_INPUT;
    out[0] = 'S';
    return hsm_tr31_wrap_clear(h->kb_lmk, h->kb_lmk_len, hdr, 16, k->clear, k->len, NULL, 0,
                               out + 1, cap - 1);
}

/* A ZMK or TMK as key block protection key, and the version its length implies. */
static int kbpk_version(const struct hsm_key *kbpk, char *v)
{
    if (kbpk->type != HSM_KT_ZMK && kbpk->type != HSM_KT_TMK)
        return HSM_ERR_KEY_TYPE;
    if (kbpk->aes)
        *v = 'D';
    else if (kbpk->len == 16 || kbpk->len == 24)
        *v = 'B';
    else
        return HSM_ERR_KEY_LENGTH;
    return HSM_OK;
}

int hsm_tr31_import(struct hsm *h, struct hsm_key *kbpk, enum hsm_keytype type, const char *block,
                    size_t len, enum hsm_scheme lmk_scheme, char *out, size_t cap, uint8_t kcv[8])
{
    if (!hsm_kt(type))
        return HSM_ERR_KEY_TYPE_CODE;
    char v;
    int rc = kbpk_version(kbpk, &v);
    if (rc != HSM_OK)
        return rc;
    if ((rc = hsm_key_permits(kbpk, HSM_USE_DECRYPT)) != HSM_OK)
        return rc;
    struct hsm_tr31_header hd;
    uint8_t clear[32];
    size_t n = 0;
    bool aes = false;
    rc = hsm_tr31_unwrap_clear_pad(kbpk->clear, kbpk->len, block, len, &hd, clear, sizeof clear, &n,
                                   NULL, 0, NULL);
    if (rc == HSM_OK)
        rc = header_fits(type, &hd, clear, n, &aes);
    if (rc == HSM_ERR_SRC_PARITY)
        rc = HSM_ERR_DST_PARITY; /* the imported key is the destination, as A6 answers */
    struct hsm_key k = { 0 };
    if (rc == HSM_OK)
        rc = hsm_key_setup(&k, type, aes, clear, n);
    OPENSSL_cleanse(clear, sizeof clear);
    if (rc == HSM_OK && lmk_scheme == HSM_SCHEME_S)
        attrs_of(&hd, &k.kb);
    if (rc == HSM_OK)
        rc = hsm_key_to_lmk(h, &k, lmk_scheme, out, cap);
    if (rc == HSM_OK)
        hsm_key_kcv(&k, kcv);
    hsm_key_destroy(&k);
    return rc;
}

static bool is_alnum2(const char *s)
{
    for (int i = 0; i < 2; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= 'a' && s[i] <= 'z')))
            return false;
    return true;
}

/* Whether mode `to` is mode `from` or a narrowing of it. */
static bool mode_within(char from, char to)
{
    if (from == to || from == 'N')
        return true;
    return (from == 'C' && (to == 'G' || to == 'V')) || (from == 'B' && (to == 'E' || to == 'D'));
}

int hsm_kb_narrow(struct hsm_kb_attrs *a, char mode, const char *kvn, char exportability)
{
    if (mode) {
        if (!strchr("BCDEGNSTVXY", mode))
            return HSM_ERR_INPUT;
        if (!mode_within(a->mode, mode))
            return HSM_ERR_NOT_PERMITTED;
        a->mode = mode;
    }
    if (kvn) {
        if (strlen(kvn) != 2 || !is_alnum2(kvn))
            return HSM_ERR_INPUT;
        memcpy(a->kvn, kvn, 3);
    }
    if (exportability) {
        /* N is narrower than S, which is narrower than E */
        int want = exportability == 'E'   ? 2
                   : exportability == 'S' ? 1
                   : exportability == 'N' ? 0
                                          : -1;
        int have = a->exp == 'E' ? 2 : a->exp == 'S' ? 1 : 0;
        if (want < 0)
            return HSM_ERR_INPUT;
        if (want > have)
            return HSM_ERR_NOT_PERMITTED;
        a->exp = exportability;
    }
    return HSM_OK;
}

int hsm_tr31_export(struct hsm_key *kbpk, struct hsm_key *k, char mode, const char *kvn,
                    char exportability, char *out, size_t cap)
{
    char v;
    int rc = kbpk_version(kbpk, &v);
    if (rc != HSM_OK)
        return rc;
    if ((rc = hsm_key_permits(kbpk, HSM_USE_ENCRYPT)) != HSM_OK ||
        (rc = hsm_key_permits(k, HSM_USE_EXPORT)) != HSM_OK)
        return rc;
    struct hsm_kb_attrs a = k->kb;
    if (!a.set)
        hsm_kb_defaults(k->type, k->aes, k->len, &a);
    if ((rc = hsm_kb_narrow(&a, mode, kvn, exportability)) != HSM_OK)
        return rc;
    char hdr[17];
    make_header(v, &a, hdr);
    return hsm_tr31_wrap_clear(kbpk->clear, kbpk->len, hdr, 16, k->clear, k->len, NULL, 0, out,
                               cap);
}
