/* The host commands of hsm-sim: one handler per row of hsm_commands[]. Each
 * handler parses its fields with the strict cursor of proto.c, calls libhsm,
 * and writes its answer fields. Handlers return 0 or a payShield error code;
 * keys are pinned in libhsm's cache only for the duration of one command. */
#include "proto_int.h"

#include "hsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIRMWARE "0007-E000" /* NC "firmware number": same shape as pythales' example */
#define MAX_MSG  (HSM_PROTO_FRAME_LIMIT / 2 + 1)

struct hsm_crypto {
    struct hsm *h;
    uint8_t msg[MAX_MSG]; /* decoded M6/M8 message (hex input) */
};

int hsm_crypto_new(const char *lmk_path, const char *lmk_keyblock_path, struct hsm_crypto **out,
                   char *err, size_t errcap)
{
    struct hsm_crypto *c = calloc(1, sizeof *c);
    if (!c || hsm_new(&c->h, 4096) != 0) {
        snprintf(err, errcap, "cannot create the HSM state (out of memory)");
        free(c);
        return -1;
    }
    if (lmk_path) {
        char why[200] = "";
        if (hsm_lmk_load(c->h, lmk_path, why, sizeof why) != 0) {
            snprintf(err, errcap, "%s", why[0] ? why : "cannot load the LMK file");
            hsm_free(c->h);
            free(c);
            return -1;
        }
    }
    if (lmk_keyblock_path) {
        char why[200] = "";
        if (hsm_lmk_keyblock_load(c->h, lmk_keyblock_path, why, sizeof why) != 0) {
            snprintf(err, errcap, "%s", why[0] ? why : "cannot load the key-block LMK file");
            hsm_free(c->h);
            free(c);
            return -1;
        }
    }
    *out = c;
    return 0;
}

void hsm_crypto_free(struct hsm_crypto *c)
{
    if (!c)
        return;
    hsm_free(c->h);
    free(c);
}

void hsm_crypto_lmk_kcv(struct hsm_crypto *c, char out[17])
{
    hsm_lmk_check_value(c->h, out);
}

/* ---- helpers ---- */

/* Keys pinned by one command, released together at its end. */
struct keys {
    struct hsm_key *k[4];
    int n;
};

static void keys_release(struct keys *ks)
{
    for (int i = 0; i < ks->n; i++)
        hsm_key_release(ks->k[i]);
    ks->n = 0;
}

static int err_of(int rc)
{
    return rc < 0 ? -rc : rc;
}

/* What a command does with a key it loads (key_get): checked against the mode of use of a key
 * that came from a TR-31 block (libhsm hsm_key_permits); USE_ANY for BU (a check value). */
#define USE_ANY ((enum hsm_key_use) - 1)

/* Loads a key field as type t for use. A destination key with bad parity is
 * reported as 11, a source key as 10. A key block ('S') whose usage does not fit t is 04
 * (a PIN key cannot MAC), one whose mode of use does not allow use is 29. */
static int key_get(struct hsm_proto *p, struct keys *ks, enum hsm_keytype t,
                   const struct hsm_keyf *f, bool dst, enum hsm_key_use use, struct hsm_key **out)
{
    const char *text = f->scheme ? f->hex - 1 : f->hex;
    size_t len = f->hexlen + (f->scheme ? 1 : 0);
    int rc = hsm_key_load(hsm_proto_crypto(p)->h, t, text, len, out);
    if (rc == HSM_ERR_SRC_PARITY && dst)
        rc = HSM_ERR_DST_PARITY;
    if (rc != 0)
        return err_of(rc);
    ks->k[ks->n++] = *out;
    if (use != USE_ANY && (rc = hsm_key_permits(*out, use)) != 0)
        return err_of(rc);
    return 0;
}

static int pinfmt(const char code[2], enum hsm_pinfmt *f)
{
    return hsm_pinfmt_from_code(code, f) == 0 ? 0 : HSM_E_PIN_FMT;
}

static int scheme_of(char ch, enum hsm_scheme *s)
{
    switch (ch) {
    case 'Z':
    case 'U':
    case 'T':
    case 'X':
    case 'Y':
    case 'A':
    case 'S': /* key block under the key-block LMK (26 from libhsm when none is loaded) */
        *s = (enum hsm_scheme)ch;
        return 0;
    default:
        return HSM_E_SCHEME;
    }
}

/* A key scheme for a key under a ZMK: those of scheme_of except S, or R (a TR-31 block:
 * *tr31 set). */
static int zmk_scheme_of(char ch, enum hsm_scheme *s, bool *tr31)
{
    *tr31 = ch == 'R';
    if (*tr31)
        return 0;
    return ch == 'S' ? HSM_E_SCHEME : scheme_of(ch, s);
}

/* n hex characters (already checked by the cursor) → n/2 bytes. */
static void hexbytes(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n / 2; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char ch = s[2 * i + (size_t)j];
            int d = ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
            v = v * 16 + d;
        }
        out[i] = (uint8_t)v;
    }
}

/* 12-digit account field copied to a NUL-terminated string. */
static int account12(struct hsm_cur *in, char acct[13])
{
    const char *a;
    int e = hsm_cur_digits(in, 12, &a);
    if (e)
        return e;
    memcpy(acct, a, 12);
    acct[12] = '\0';
    return 0;
}

/* ---- diagnostics ---- */

/* NC: diagnostics. → LMK check value 16H ‖ firmware number. */
static int cmd_nc(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    int e = hsm_cur_end(in);
    if (e)
        return e;
    hsm_out_str(out, hsm_proto_lmk_kcv(p), 16);
    hsm_out_cstr(out, FIRMWARE);
    return 0;
}

/* B2: echo. Length 4H ‖ data → data. */
static int cmd_b2(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    unsigned n;
    const char *d;
    (void)p;
    int e = hsm_cur_hexnum(in, 4, &n);
    if (e)
        return e;
    /* ThalesCore's rule: data shorter than announced → 80, longer → 15 */
    if (hsm_cur_left(in) < n)
        return HSM_E_DATA_LEN;
    if (hsm_cur_left(in) > n)
        return HSM_E_INPUT;
    e = hsm_cur_take(in, n, &d);
    if (e)
        return e;
    hsm_out_str(out, d, n);
    return 0;
}

/* ---- keys ---- */

static int keytype3(struct hsm_cur *in, enum hsm_keytype *t)
{
    const char *code;
    char buf[4];
    int e = hsm_cur_take(in, 3, &code);
    if (e)
        return e;
    memcpy(buf, code, 3);
    buf[3] = '\0';
    return hsm_keytype_from_code(buf, t) == 0 ? 0 : HSM_E_KEY_TYPE;
}

/* A0: generate a key. Mode 1N (0: under LMK, 1: also under a ZMK) ‖ key type
 * 3H ‖ key scheme (LMK) 1A [‖ ';' ZMK/TMK flag 1N: 0 ZMK, 1 TMK] [‖ ZMK/TMK ‖ key scheme
 * (ZMK/TMK; 'R': a TR-31 block)] [‖ '#' ‖ mode of use 1A ‖ key version 2A ‖ exportability 1A:
 * LMK scheme S only]
 * → key under LMK ‖ [key under ZMK] ‖ KCV 6H. */
static int cmd_a0(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    struct hsm_crypto *cr = hsm_proto_crypto(p);
    struct keys ks = { .n = 0 };
    enum hsm_keytype t;
    enum hsm_scheme s_lmk, s_zmk = HSM_SCHEME_Z;
    struct hsm_keyf zf;
    struct hsm_key *zmk = NULL, *key = NULL;
    char mode, sch, lmk_text[256], zmk_text[256], kb_mode = 0, kb_exp = 0, kvn[3] = "";
    bool tr31 = false, kb_opts = false;
    bool tmk = false; /* ';1': the key goes out under a TMK (terminal key download) */
    uint8_t kcv[8];
    int e;

    if ((e = hsm_cur_char(in, &mode)) || (mode != '0' && mode != '1'))
        return e ? e : HSM_E_INPUT;
    if ((e = keytype3(in, &t)) || (e = hsm_cur_char(in, &sch)) || (e = scheme_of(sch, &s_lmk)))
        return e;
    if (mode == '1') {
        if (hsm_cur_peek(in, ';')) {
            char flag;
            in->off++;
            if ((e = hsm_cur_char(in, &flag)))
                return e;
            if (flag != '0' && flag != '1')
                return HSM_E_INPUT;
            tmk = flag == '1';
        }
        if ((e = hsm_cur_key(in, HSM_KEY_ANY, &zf)) || (e = hsm_cur_char(in, &sch)) ||
            (e = zmk_scheme_of(sch, &s_zmk, &tr31)))
            return e;
    }
    if (s_lmk == HSM_SCHEME_S && hsm_cur_peek(in, '#')) { /* the key block header's attributes */
        const char *v;
        in->off++;
        if ((e = hsm_cur_char(in, &kb_mode)) || (e = hsm_cur_take(in, 2, &v)) ||
            (e = hsm_cur_char(in, &kb_exp)))
            return e;
        memcpy(kvn, v, 2);
        kb_opts = true;
    }
    if ((e = hsm_cur_end(in)))
        return e;
    if (mode == '1' &&
        (e = key_get(p, &ks, tmk ? HSM_KT_TMK : HSM_KT_ZMK, &zf, false, HSM_USE_ENCRYPT, &zmk)))
        goto out;
    e = err_of(kb_opts ? hsm_key_generate_kb(cr->h, t, kb_mode, kvn, kb_exp, lmk_text,
                                             sizeof lmk_text, kcv)
                       : hsm_key_generate(cr->h, t, s_lmk, lmk_text, sizeof lmk_text, kcv));
    if (e)
        goto out;
    hsm_out_cstr(out, lmk_text);
    if (mode == '1') {
        e = err_of(hsm_key_load(cr->h, t, lmk_text, strlen(lmk_text), &key));
        if (e)
            goto out;
        ks.k[ks.n++] = key;
        e = err_of(tr31 ? hsm_tr31_export(zmk, key, 0, NULL, 0, zmk_text, sizeof zmk_text)
                        : hsm_key_export(zmk, key, s_zmk, zmk_text, sizeof zmk_text));
        if (e)
            goto out;
        hsm_out_cstr(out, zmk_text);
    }
    hsm_out_hex(out, kcv, 3);
out:
    keys_release(&ks);
    return e;
}

/* A6: import a key. Key type 3H ‖ ZMK ‖ key (under ZMK) ‖ key scheme (LMK) 1A
 * [‖ Atalla variant 1-2N] → key under LMK ‖ KCV 6H. The key under the ZMK may be 'R' + a
 * TR-31 block (the ZMK is then its KBPK; no Atalla variant): its header must fit the key
 * type (04 otherwise) and, with LMK scheme S, its attributes are kept under the LMK. */
static int cmd_a6(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    struct hsm_crypto *cr = hsm_proto_crypto(p);
    struct keys ks = { .n = 0 };
    enum hsm_keytype t;
    enum hsm_scheme s_lmk;
    struct hsm_keyf zf, kf;
    struct hsm_key *zmk;
    char sch, text[256];
    unsigned atalla = 0;
    uint8_t kcv[8];
    int e;

    if ((e = keytype3(in, &t)))
        return e;
    /* An AES ZMK under the variant LMK ('A' + 32H) as KBPK of an R block: told from a 16H key
     * starting with 'A' by the 'R' after it (in the 16H reading the 17th character would be
     * the 'R', which is not hex, so the two readings cannot both hold). */
    const char *z = in->p + in->off;
    bool aes_zmk = hsm_cur_left(in) > 34 && z[0] == 'A' && z[33] == 'R';
    for (int i = 1; aes_zmk && i <= 32; i++)
        aes_zmk = (z[i] >= '0' && z[i] <= '9') || (z[i] >= 'A' && z[i] <= 'F');
    if ((e = hsm_cur_key(in, aes_zmk ? HSM_KEY_AES : HSM_KEY_ANY, &zf)))
        return e;
    bool tr31 = hsm_cur_peek(in, 'R');
    if ((e = tr31 ? hsm_cur_keyblock(in, 'R', &kf)
                  : hsm_cur_key(in, t == HSM_KT_BDK_AES ? HSM_KEY_AES : HSM_KEY_ANY, &kf)) ||
        (e = hsm_cur_char(in, &sch)) || (e = scheme_of(sch, &s_lmk)))
        return e;
    size_t left = hsm_cur_left(in);
    if (!tr31 && left > 0 && in->p[in->off] != '%') {
        size_t nd = left >= 2 && in->p[in->off + 1] >= '0' && in->p[in->off + 1] <= '9' ? 2 : 1;
        if ((e = hsm_cur_num(in, nd, &atalla)))
            return e;
        if (atalla > 9)
            return HSM_E_INPUT;
    }
    if ((e = hsm_cur_end(in)))
        return e;
    if ((e = key_get(p, &ks, HSM_KT_ZMK, &zf, false, HSM_USE_DECRYPT, &zmk)))
        goto out;
    const char *ktext = kf.scheme ? kf.hex - 1 : kf.hex;
    e = err_of(
        tr31 ? hsm_tr31_import(cr->h, zmk, t, kf.hex, kf.hexlen, s_lmk, text, sizeof text, kcv)
             : hsm_key_import(cr->h, zmk, t, ktext, kf.hexlen + (kf.scheme ? 1 : 0), s_lmk,
                              (int)atalla, text, sizeof text, kcv));
    if (e)
        goto out;
    hsm_out_cstr(out, text);
    hsm_out_hex(out, kcv, 3);
out:
    keys_release(&ks);
    return e;
}

/* A8: export a key. Key type 3H ‖ ZMK (or TMK) ‖ key (under LMK) ‖ key scheme (ZMK) 1A
 * [‖ '#' ‖ mode of use 1A ‖ key version number 2A ‖ exportability 1A, with scheme R only]
 * → key under ZMK ‖ KCV 6H. Scheme R answers a TR-31 block (version B under a TDES ZMK, D
 * under an AES one) whose usage and mode come from the key (its key block header, or its
 * type); the optional fields may only narrow them. A key whose exportability is N: 29. */
static int cmd_a8(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    struct keys ks = { .n = 0 };
    enum hsm_keytype t;
    enum hsm_scheme s_zmk = HSM_SCHEME_Z;
    struct hsm_keyf zf, kf;
    struct hsm_key *zmk, *key;
    char sch, mode = 0, expo = 0, kvn[3] = "", text[256];
    bool tr31;
    uint8_t kcv[8];
    int e;

    if ((e = keytype3(in, &t)) || (e = hsm_cur_key(in, HSM_KEY_ANY, &zf)) ||
        (e = hsm_cur_key(in, t == HSM_KT_BDK_AES ? HSM_KEY_AES : HSM_KEY_ANY, &kf)) ||
        (e = hsm_cur_char(in, &sch)) || (e = zmk_scheme_of(sch, &s_zmk, &tr31)))
        return e;
    if (tr31 && hsm_cur_peek(in, '#')) {
        const char *v;
        in->off++;
        if ((e = hsm_cur_char(in, &mode)) || (e = hsm_cur_take(in, 2, &v)) ||
            (e = hsm_cur_char(in, &expo)))
            return e;
        memcpy(kvn, v, 2);
        kvn[2] = '\0';
        if (!strchr("BCDEGNSTVXY", mode) || !strchr("ENS", expo) || mode == '\0' || expo == '\0')
            return HSM_E_INPUT;
    }
    if ((e = hsm_cur_end(in)))
        return e;
    if ((e = key_get(p, &ks, HSM_KT_ZMK, &zf, false, HSM_USE_ENCRYPT, &zmk)) ||
        (e = key_get(p, &ks, t, &kf, false, HSM_USE_EXPORT, &key)))
        goto out;
    e = err_of(tr31 ? hsm_tr31_export(zmk, key, mode, kvn[0] ? kvn : NULL, expo, text, sizeof text)
                    : hsm_key_export(zmk, key, s_zmk, text, sizeof text));
    if (e)
        goto out;
    hsm_out_cstr(out, text);
    hsm_key_kcv(key, kcv);
    hsm_out_hex(out, kcv, 3);
out:
    keys_release(&ks);
    return e;
}

/* BU: key check value. Key type code 2N (00 ZMK, 01 ZPK, 02 TMK/TPK/PVK, 03 TAK,
 * 08 ZAK, 09 BDK, FF: the 3H key type follows the key after ';') ‖ key length
 * flag 1N (0 single, 1 double, 2 triple) ‖ key [‖ ';' key type 3H] → KCV 16H. */
static int cmd_bu(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    struct keys ks = { .n = 0 };
    static const struct {
        const char *code;
        enum hsm_keytype t;
    } map[] = { { "00", HSM_KT_ZMK }, { "01", HSM_KT_ZPK }, { "02", HSM_KT_TMK },
                { "03", HSM_KT_TAK }, { "08", HSM_KT_ZAK }, { "09", HSM_KT_BDK } };
    const char *code;
    unsigned lenflag;
    struct hsm_keyf kf;
    struct hsm_key *k;
    enum hsm_keytype t = HSM_KT_max;
    uint8_t kcv[8];
    int e;

    if ((e = hsm_cur_take(in, 2, &code)) || (e = hsm_cur_num(in, 1, &lenflag)))
        return e;
    if (lenflag > 2)
        return HSM_E_KEY_LEN_FLAG;
    if ((e = hsm_cur_key(in, HSM_KEY_ANY, &kf)))
        return e;
    if (memcmp(code, "FF", 2) == 0) {
        if ((e = hsm_cur_delim(in, ';')) || (e = keytype3(in, &t)))
            return e;
    } else {
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (memcmp(code, map[i].code, 2) == 0)
                t = map[i].t;
        if (t == HSM_KT_max)
            return HSM_E_KEY_TYPE;
    }
    if ((e = hsm_cur_end(in)))
        return e;
    if (kf.scheme != 'S' && kf.hexlen != (lenflag + 1) * 16) /* a key block has its own length */
        return HSM_E_KEY_LEN_FLAG;
    if ((e = key_get(p, &ks, t, &kf, false, USE_ANY, &k))) {
        keys_release(&ks);
        return e;
    }
    hsm_key_kcv(k, kcv);
    hsm_out_hex(out, kcv, 8);
    keys_release(&ks);
    return 0;
}

/* ---- PIN translation ---- */

static void out_pin_result(struct hsm_out *out, int pin_len, const uint8_t *blk, size_t n,
                           const char *fmt)
{
    hsm_out_num(out, (unsigned)pin_len, 2);
    hsm_out_hex(out, blk, n);
    hsm_out_str(out, fmt, 2);
}

/* CA / CC share a layout: source key ‖ destination ZPK ‖ max PIN length 2N ‖
 * source PIN block 16H ‖ source format 2N ‖ destination format 2N ‖ account
 * 12N → PIN length 2N ‖ destination PIN block 16H ‖ destination format 2N. */
static int pin_translate(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out,
                         enum hsm_keytype src_type)
{
    struct keys ks = { .n = 0 };
    struct hsm_keyf sf, df;
    struct hsm_key *src, *dst;
    const char *blkhex, *sfc, *dfc;
    unsigned maxlen;
    char acct[13];
    enum hsm_pinfmt sfmt, dfmt;
    uint8_t blk[8], res[16];
    size_t reslen;
    int pin_len, e;

    if ((e = hsm_cur_key(in, HSM_KEY_ANY, &sf)) || (e = hsm_cur_key(in, HSM_KEY_ANY, &df)) ||
        (e = hsm_cur_num(in, 2, &maxlen)) || (e = hsm_cur_hex(in, 16, &blkhex)) ||
        (e = hsm_cur_digits(in, 2, &sfc)) || (e = hsm_cur_digits(in, 2, &dfc)) ||
        (e = account12(in, acct)) || (e = hsm_cur_end(in)))
        return e;
    if (maxlen < 4 || maxlen > 12)
        return HSM_E_PIN_LEN;
    if ((e = pinfmt(sfc, &sfmt)) || (e = pinfmt(dfc, &dfmt)))
        return e;
    if (sfmt == HSM_PINFMT_ISO4 || dfmt == HSM_PINFMT_ISO4)
        return HSM_E_PIN_FMT; /* a 16H field cannot carry an AES PIN block */
    hexbytes(blkhex, 16, blk);
    if ((e = key_get(p, &ks, src_type, &sf, false, HSM_USE_DECRYPT, &src)) ||
        (e = key_get(p, &ks, HSM_KT_ZPK, &df, true, HSM_USE_ENCRYPT, &dst)))
        goto out;
    e = err_of(
        hsm_pin_translate(src, sfmt, blk, 8, dst, dfmt, acct, (int)maxlen, res, &reslen, &pin_len));
    if (e == 0)
        out_pin_result(out, pin_len, res, reslen, dfc);
out:
    keys_release(&ks);
    return e;
}

static int cmd_ca(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    return pin_translate(p, in, out, HSM_KT_TPK);
}

static int cmd_cc(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    return pin_translate(p, in, out, HSM_KT_ZPK);
}

/* CI / G0: BDK (32H or 1A+32H) ‖ ZPK ‖ KSN descriptor 3H ‖ KSN 20H ‖ source
 * PIN block 16H ‖ [G0: source format 2N] ‖ destination format 2N ‖ account
 * 12N → PIN length 2N ‖ destination PIN block 16H ‖ destination format 2N.
 * The source block is ISO 9564 format 0 under the TDES DUKPT PIN key. */
static int dukpt_translate(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out,
                           bool has_src_fmt)
{
    struct keys ks = { .n = 0 };
    struct hsm_keyf bf, zf;
    struct hsm_key *bdk, *zpk;
    const char *desc, *ksnhex, *blkhex, *sfc = "01", *dfc;
    char acct[13];
    enum hsm_pinfmt sfmt, dfmt;
    uint8_t ksn[10], blk[8], res[16];
    size_t reslen;
    int pin_len, e;

    if ((e = hsm_cur_key(in, HSM_KEY_PAIR, &bf)) || (e = hsm_cur_key(in, HSM_KEY_ANY, &zf)) ||
        (e = hsm_cur_hex(in, 3, &desc)) || (e = hsm_cur_hex(in, 20, &ksnhex)) ||
        (e = hsm_cur_hex(in, 16, &blkhex)) || (has_src_fmt && (e = hsm_cur_digits(in, 2, &sfc))) ||
        (e = hsm_cur_digits(in, 2, &dfc)) || (e = account12(in, acct)) || (e = hsm_cur_end(in)))
        return e;
    if ((e = pinfmt(sfc, &sfmt)) || (e = pinfmt(dfc, &dfmt)))
        return e;
    if (sfmt == HSM_PINFMT_ISO4 || dfmt == HSM_PINFMT_ISO4)
        return HSM_E_PIN_FMT;
    hexbytes(ksnhex, 20, ksn);
    hexbytes(blkhex, 16, blk);
    if ((e = key_get(p, &ks, HSM_KT_BDK, &bf, false, HSM_USE_DERIVE, &bdk)) ||
        (e = key_get(p, &ks, HSM_KT_ZPK, &zf, true, HSM_USE_ENCRYPT, &zpk)))
        goto out;
    e = err_of(hsm_dukpt_pin_translate(bdk, ksn, sizeof ksn, sfmt, blk, 8, zpk, dfmt, acct, 12, res,
                                       &reslen, &pin_len));
    if (e == 0)
        out_pin_result(out, pin_len, res, reslen, dfc);
out:
    keys_release(&ks);
    return e;
}

static int cmd_ci(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    return dukpt_translate(p, in, out, false);
}

static int cmd_g0(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    return dukpt_translate(p, in, out, true);
}

/* X0 (hsm-sim extension, no payShield variant-LMK equivalent): PIN from AES
 * DUKPT (X9.24-3, AES-128 BDK) to a ZPK. AES BDK ('A'+32H, key type 909) ‖
 * ZPK ‖ KSN 24H (initial key ID 16H ‖ counter 8H) ‖ source PIN block 32H (ISO
 * 9564 format 4 under the PIN working key) ‖ destination format 2N ‖ PAN
 * length 2N ‖ PAN (1..19N) → PIN length 2N ‖ destination PIN block 16H ‖
 * destination format 2N. The destination ZPK is a DES key: an unprefixed 16H
 * key may start with 'A', so an AES ZPK cannot be told apart in this field. */
static int cmd_x0(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    struct keys ks = { .n = 0 };
    struct hsm_keyf bf, zf;
    struct hsm_key *bdk, *zpk;
    const char *ksnhex, *blkhex, *dfc, *pan;
    unsigned panlen;
    char panz[20];
    enum hsm_pinfmt dfmt;
    uint8_t ksn[12], blk[16], res[16];
    size_t reslen;
    int pin_len, e;

    if ((e = hsm_cur_key(in, HSM_KEY_AES, &bf)) || (e = hsm_cur_key(in, HSM_KEY_ANY, &zf)) ||
        (e = hsm_cur_hex(in, 24, &ksnhex)) || (e = hsm_cur_hex(in, 32, &blkhex)) ||
        (e = hsm_cur_digits(in, 2, &dfc)) || (e = hsm_cur_num(in, 2, &panlen)))
        return e;
    if (panlen < 1 || panlen > 19)
        return HSM_E_ACCOUNT;
    if ((e = hsm_cur_digits(in, panlen, &pan)) || (e = hsm_cur_end(in)))
        return e;
    if ((e = pinfmt(dfc, &dfmt)))
        return e;
    memcpy(panz, pan, panlen);
    panz[panlen] = '\0';
    hexbytes(ksnhex, 24, ksn);
    hexbytes(blkhex, 32, blk);
    if ((e = key_get(p, &ks, HSM_KT_BDK_AES, &bf, false, HSM_USE_DERIVE, &bdk)) ||
        (e = key_get(p, &ks, HSM_KT_ZPK, &zf, true, HSM_USE_ENCRYPT, &zpk)))
        goto out;
    e = err_of(hsm_dukpt_pin_translate(bdk, ksn, sizeof ksn, HSM_PINFMT_ISO4, blk, 16, zpk, dfmt,
                                       panz, 12, res, &reslen, &pin_len));
    if (e == 0)
        out_pin_result(out, pin_len, res, reslen, dfc);
out:
    keys_release(&ks);
    return e;
}

/* ---- PIN verification ---- */

/* DA / EA (IBM 3624 offset): PIN key (TPK / ZPK) ‖ PVK ‖ max PIN length 2N ‖
 * PIN block 16H ‖ format 2N ‖ check length 2N ‖ account 12N ‖ decimalization
 * table 16N ‖ PIN validation data 12A ‖ offset 12H → error code only. */
static int ibm_verify(struct hsm_proto *p, struct hsm_cur *in, enum hsm_keytype pin_type)
{
    struct keys ks = { .n = 0 };
    struct hsm_keyf kf, vf;
    struct hsm_key *pk, *pvk;
    const char *blkhex, *fc, *dectab, *vd12, *offhex;
    unsigned maxlen, checklen;
    char acct[13], vdata[17], offset[13];
    enum hsm_pinfmt fmt;
    uint8_t blk[8];
    int e;

    if ((e = hsm_cur_key(in, HSM_KEY_ANY, &kf)) || (e = hsm_cur_key(in, HSM_KEY_ANY, &vf)) ||
        (e = hsm_cur_num(in, 2, &maxlen)) || (e = hsm_cur_hex(in, 16, &blkhex)) ||
        (e = hsm_cur_digits(in, 2, &fc)) || (e = hsm_cur_num(in, 2, &checklen)) ||
        (e = account12(in, acct)) || (e = hsm_cur_take(in, 16, &dectab)) ||
        (e = hsm_cur_take(in, 12, &vd12)) || (e = hsm_cur_hex(in, 12, &offhex)) ||
        (e = hsm_cur_end(in)))
        return e;
    if (maxlen < 4 || maxlen > 12 || checklen < 4 || checklen > maxlen)
        return HSM_E_PIN_LEN;
    if ((e = pinfmt(fc, &fmt)))
        return e;
    if (fmt == HSM_PINFMT_ISO4)
        return HSM_E_PIN_FMT;
    char vd[13];
    memcpy(vd, vd12, 12);
    vd[12] = '\0';
    if ((e = err_of(hsm_ibm_vdata(vd, acct, vdata))))
        return e;
    memcpy(offset, offhex, 12);
    offset[12] = '\0';
    hexbytes(blkhex, 16, blk);
    if ((e = key_get(p, &ks, pin_type, &kf, false, HSM_USE_DECRYPT, &pk)) ||
        (e = key_get(p, &ks, HSM_KT_PVK, &vf, false, HSM_USE_VERIFY, &pvk)))
        goto out;
    e = err_of(
        hsm_pin_verify_ibm(pk, fmt, blk, 8, acct, pvk, (int)checklen, dectab, vdata, offset));
out:
    keys_release(&ks);
    return e;
}

static int cmd_da(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    (void)out;
    return ibm_verify(p, in, HSM_KT_TPK);
}

static int cmd_ea(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    (void)out;
    return ibm_verify(p, in, HSM_KT_ZPK);
}

/* DC / EC (Visa PVV): PIN key (TPK / ZPK) ‖ PVK pair (32H or 1A+32H) ‖ PIN
 * block 16H ‖ format 2N ‖ account 12N ‖ PVKI 1N ‖ PVV 4N → error code only. */
static int pvv_verify(struct hsm_proto *p, struct hsm_cur *in, enum hsm_keytype pin_type)
{
    struct keys ks = { .n = 0 };
    struct hsm_keyf kf, vf;
    struct hsm_key *pk, *pvk;
    const char *blkhex, *fc, *pvv;
    unsigned pvki;
    char acct[13];
    enum hsm_pinfmt fmt;
    uint8_t blk[8];
    int e;

    if ((e = hsm_cur_key(in, HSM_KEY_ANY, &kf)) || (e = hsm_cur_key(in, HSM_KEY_PAIR, &vf)) ||
        (e = hsm_cur_hex(in, 16, &blkhex)) || (e = hsm_cur_digits(in, 2, &fc)) ||
        (e = account12(in, acct)) || (e = hsm_cur_num(in, 1, &pvki)) ||
        (e = hsm_cur_digits(in, 4, &pvv)) || (e = hsm_cur_end(in)))
        return e;
    if ((e = pinfmt(fc, &fmt)))
        return e;
    if (fmt == HSM_PINFMT_ISO4)
        return HSM_E_PIN_FMT;
    hexbytes(blkhex, 16, blk);
    if ((e = key_get(p, &ks, pin_type, &kf, false, HSM_USE_DECRYPT, &pk)) ||
        (e = key_get(p, &ks, HSM_KT_PVK, &vf, false, HSM_USE_VERIFY, &pvk)))
        goto out;
    e = err_of(hsm_pin_verify_pvv(pk, fmt, blk, 8, acct, pvk, (int)pvki, pvv));
out:
    keys_release(&ks);
    return e;
}

static int cmd_dc(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    (void)out;
    return pvv_verify(p, in, HSM_KT_TPK);
}

static int cmd_ec(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    (void)out;
    return pvv_verify(p, in, HSM_KT_ZPK);
}

/* ---- CVV ---- */

/* CW / CY: CVK pair (32H or 1A+32H) ‖ [CY: CVV 3N] ‖ PAN (up to 19N) ‖ ';' ‖
 * expiry YYMM 4N ‖ service code 3N → CW: CVV 3N; CY: error code only. */
static int cvv_cmd(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out, bool verify)
{
    struct keys ks = { .n = 0 };
    struct hsm_keyf kf;
    struct hsm_key *cvk;
    const char *cvv_in = NULL, *pan, *exp, *svc;
    size_t panlen;
    char panz[20], cvv[4];
    int e;

    if ((e = hsm_cur_key(in, HSM_KEY_PAIR, &kf)) ||
        (verify && (e = hsm_cur_digits(in, 3, &cvv_in))) ||
        (e = hsm_cur_digits_until(in, ';', 1, 19, &pan, &panlen)) ||
        (e = hsm_cur_digits(in, 4, &exp)) || (e = hsm_cur_digits(in, 3, &svc)) ||
        (e = hsm_cur_end(in)))
        return e;
    memcpy(panz, pan, panlen);
    panz[panlen] = '\0';
    if ((e = key_get(p, &ks, HSM_KT_CVK, &kf, false, verify ? HSM_USE_VERIFY : HSM_USE_GENERATE,
                     &cvk)))
        goto out;
    if (verify) {
        e = err_of(hsm_cvv_verify(cvk, panz, exp, svc, cvv_in));
    } else {
        e = err_of(hsm_cvv_generate(cvk, panz, exp, svc, cvv));
        if (e == 0)
            hsm_out_str(out, cvv, 3);
    }
out:
    keys_release(&ks);
    return e;
}

static int cmd_cw(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    return cvv_cmd(p, in, out, false);
}

static int cmd_cy(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    return cvv_cmd(p, in, out, true);
}

/* ---- MAC ---- */

/* M6 / M8: mode flag 1N (0: single-block message; 1-3 multi-block chaining is
 * not simulated → 15) ‖ input format 1N (0 binary, 1 hex, 2 text) ‖ MAC size
 * 1N (0: 8H, 1: 16H) ‖ MAC algorithm 1N (1: ISO 9797-1 alg 1, 3: alg 3) ‖
 * padding 1N (0 none, 1-3 ISO 9797-1 methods) ‖ key type 3H (003 TAK, 008 ZAK)
 * ‖ key ‖ message length 4H (characters as sent) ‖ message [‖ M8: MAC].
 * M7 answer: MAC length 4N ("0008"/"0016", as the published ThalesCore pair
 * has it) ‖ MAC. M9: error code only. */
static int mac_cmd(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out, bool verify)
{
    struct hsm_crypto *cr = hsm_proto_crypto(p);
    struct keys ks = { .n = 0 };
    struct hsm_keyf kf;
    struct hsm_key *key;
    char mode, infmt, size, alg, pad;
    enum hsm_keytype t;
    const char *msg, *machex = NULL;
    unsigned mlen;
    size_t dlen;
    const uint8_t *data;
    uint8_t mac[16], want[8];
    size_t maclen;
    int e;

    if ((e = hsm_cur_char(in, &mode)) || (e = hsm_cur_char(in, &infmt)) ||
        (e = hsm_cur_char(in, &size)) || (e = hsm_cur_char(in, &alg)) ||
        (e = hsm_cur_char(in, &pad)) || (e = keytype3(in, &t)))
        return e;
    if (mode != '0' || infmt < '0' || infmt > '2' || (size != '0' && size != '1') ||
        (alg != '1' && alg != '3') || pad < '0' || pad > '3')
        return HSM_E_INPUT;
    if (t != HSM_KT_TAK && t != HSM_KT_ZAK)
        return HSM_E_KEY_TYPE;
    if ((e = hsm_cur_key(in, HSM_KEY_ANY, &kf)) || (e = hsm_cur_hexnum(in, 4, &mlen)))
        return e;
    size_t mac_chars = size == '0' ? 8 : 16;
    if (hsm_cur_left(in) < mlen + (verify ? mac_chars : 0))
        return HSM_E_DATA_LEN;
    if ((e = hsm_cur_take(in, mlen, &msg)) ||
        (verify && (e = hsm_cur_hex(in, mac_chars, &machex))) || (e = hsm_cur_end(in)))
        return e;
    if (infmt == '1') {
        if (mlen % 2 != 0)
            return HSM_E_DATA_LEN;
        struct hsm_cur hc = { .p = msg, .n = mlen, .off = 0 };
        const char *h;
        if ((e = hsm_cur_hex(&hc, mlen, &h)))
            return e;
        hexbytes(h, mlen, cr->msg);
        data = cr->msg;
        dlen = mlen / 2;
    } else {
        data = (const uint8_t *)msg;
        dlen = mlen;
    }
    if (pad == '0' && (dlen == 0 || dlen % 8 != 0))
        return HSM_E_DATA_LEN;
    enum hsm_macpad mp = pad == '0' ? HSM_PAD_1 : (enum hsm_macpad)(pad - '0');
    enum hsm_macalg ma = alg == '1' ? HSM_MAC_ISO9797_1 : HSM_MAC_ISO9797_3;
    if ((e = key_get(p, &ks, t, &kf, false, verify ? HSM_USE_VERIFY : HSM_USE_GENERATE, &key)))
        goto out;
    if (verify) {
        hexbytes(machex, mac_chars, want);
        e = err_of(hsm_mac_verify(key, ma, mp, data, dlen, want, mac_chars / 2));
    } else {
        e = err_of(hsm_mac_generate(key, ma, mp, data, dlen, mac, &maclen));
        if (e == 0) {
            hsm_out_num(out, (unsigned)mac_chars, 4);
            hsm_out_hex(out, mac, mac_chars / 2);
        }
    }
out:
    keys_release(&ks);
    return e;
}

static int cmd_m6(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    return mac_cmd(p, in, out, false);
}

static int cmd_m8(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    return mac_cmd(p, in, out, true);
}

/* ---- EMV ---- */

/* KQ: mode flag 1N (0 verify ARQC, 1 verify ARQC and generate ARPC, 2 ARPC
 * only) ‖ scheme ID 1N (0: AC key = ICC master key, as Visa CVN 10;
 * 1: MasterCard session key, R = ATC ‖ 00 00 ‖ UN; 2: EMV common session key,
 * R = ATC ‖ 00×6 — payShield's 2 is the EMV2000 tree, not simulated) ‖ MK-AC
 * (32H or 1A+32H) ‖ PAN/PSN
 * 8B (right-most 16 digits of PAN ‖ PSN, packed BCD) ‖ ATC 2B ‖ UN 4B ‖
 * transaction data length 2H (bytes) ‖ transaction data ‖ ';' ‖ ARQC 8B ‖
 * ARC 2B (required in modes 1-2, optional and ignored in mode 0) [‖ '#' ‖
 * padding flag 1N: 2 (default) EMV 80 00.. padding, 1 zeros — Visa CVN 10; an
 * hsm-sim option field, the payShield way of adding one: a delimiter and a flag]
 * → [ARPC 8B, modes 1-2]. */
static int cmd_kq(struct hsm_proto *p, struct hsm_cur *in, struct hsm_out *out)
{
    struct keys ks = { .n = 0 };
    struct hsm_keyf kf;
    struct hsm_key *imk;
    char mode, scheme, padf = '2';
    const char *panpsn, *atc, *un, *data, *arqc, *arc = NULL;
    unsigned dlen;
    char digits[17], pan[15], psn[3];
    uint8_t r[8] = { 0 }, arpc[8];
    int e;

    if ((e = hsm_cur_char(in, &mode)) || (e = hsm_cur_char(in, &scheme)))
        return e;
    if (mode < '0' || mode > '2' || scheme < '0' || scheme > '2')
        return HSM_E_INPUT;
    if ((e = hsm_cur_key(in, HSM_KEY_PAIR, &kf)) || (e = hsm_cur_take(in, 8, &panpsn)) ||
        (e = hsm_cur_take(in, 2, &atc)) || (e = hsm_cur_take(in, 4, &un)) ||
        (e = hsm_cur_hexnum(in, 2, &dlen)) || (e = hsm_cur_take(in, dlen, &data)) ||
        (e = hsm_cur_delim(in, ';')) || (e = hsm_cur_take(in, 8, &arqc)) ||
        (mode != '0' && (e = hsm_cur_take(in, 2, &arc))))
        return e;
    /* mode 0 does not use an ARC, but ThalesCore's layout always carries one */
    if (mode == '0' && hsm_cur_left(in) >= 2 && !hsm_cur_peek(in, '%') && !hsm_cur_peek(in, '#') &&
        (e = hsm_cur_take(in, 2, &arc)))
        return e;
    if (hsm_cur_peek(in, '#') && ((e = hsm_cur_delim(in, '#')) || (e = hsm_cur_char(in, &padf))))
        return e;
    if (padf != '1' && padf != '2')
        return HSM_E_INPUT;
    if ((e = hsm_cur_end(in)))
        return e;
    for (int i = 0; i < 8; i++) {
        unsigned hi = (uint8_t)panpsn[i] >> 4, lo = (uint8_t)panpsn[i] & 15;
        if (hi > 9 || lo > 9)
            return HSM_E_ACCOUNT;
        digits[2 * i] = (char)('0' + hi);
        digits[2 * i + 1] = (char)('0' + lo);
    }
    memcpy(pan, digits, 14);
    pan[14] = '\0';
    memcpy(psn, digits + 14, 2);
    psn[2] = '\0';
    r[0] = (uint8_t)atc[0];
    r[1] = (uint8_t)atc[1];
    if (scheme == '1')
        memcpy(r + 4, un, 4);
    enum hsm_emv_skd skd = scheme == '0' ? HSM_EMV_SKD_NONE : HSM_EMV_SKD_COMMON;
    if ((e = key_get(p, &ks, HSM_KT_MK_AC, &kf, false, HSM_USE_DERIVE, &imk)))
        goto out;
    enum hsm_macpad pad = padf == '1' ? HSM_PAD_1 : HSM_PAD_2;
    if (mode != '2' &&
        (e = err_of(hsm_emv_arqc_verify_pad(imk, pan, psn, skd, r, pad, (const uint8_t *)data, dlen,
                                            (const uint8_t *)arqc))))
        goto out;
    if (mode != '0') {
        e = err_of(hsm_emv_arpc1(imk, pan, psn, skd, r, (const uint8_t *)arqc, (const uint8_t *)arc,
                                 arpc));
        if (e == 0)
            hsm_out_str(out, (const char *)arpc, 8);
    }
out:
    keys_release(&ks);
    return e;
}

/* One row per command: code, response code, handler, min/max field bytes (the maxima leave
 * room for keys written as 'S' + key block, up to ~200 characters each). */
const struct hsm_cmd_def hsm_commands[] = {
    { "A0", "A1", cmd_a0, 5, 600, "generate a key" },
    { "A6", "A7", cmd_a6, 36, 600, "import a key from ZMK (or a TR-31 block)" },
    { "A8", "A9", cmd_a8, 21, 600, "export a key under ZMK (or as a TR-31 block)" },
    { "B2", "B3", cmd_b2, 4, HSM_PROTO_FRAME_LIMIT, "echo" },
    { "BU", "BV", cmd_bu, 19, 300, "key check value" },
    { "CA", "CB", cmd_ca, 64, 600, "translate PIN TPK to ZPK" },
    { "CC", "CD", cmd_cc, 64, 600, "translate PIN ZPK to ZPK" },
    { "CI", "CJ", cmd_ci, 85, 600, "translate PIN DUKPT to ZPK" },
    { "CW", "CX", cmd_cw, 41, 400, "generate CVV" },
    { "CY", "CZ", cmd_cy, 44, 400, "verify CVV" },
    { "DA", "DB", cmd_da, 102, 600, "verify PIN IBM offset (TPK)" },
    { "DC", "DD", cmd_dc, 67, 600, "verify PIN Visa PVV (TPK)" },
    { "EA", "EB", cmd_ea, 102, 600, "verify PIN IBM offset (ZPK)" },
    { "EC", "ED", cmd_ec, 67, 600, "verify PIN Visa PVV (ZPK)" },
    { "G0", "G1", cmd_g0, 87, 600, "translate PIN TDES DUKPT to ZPK" },
    { "KQ", "KR", cmd_kq, 59, 800, "verify ARQC / generate ARPC" },
    { "M6", "M7", cmd_m6, 28, HSM_PROTO_FRAME_LIMIT, "generate MAC" },
    { "M8", "M9", cmd_m8, 36, HSM_PROTO_FRAME_LIMIT, "verify MAC" },
    { "NC", "ND", cmd_nc, 0, 3, "diagnostics" },
    { "X0", "X1", cmd_x0, 110, 600, "translate PIN AES DUKPT to ZPK (extension)" },
};
const size_t hsm_n_commands = sizeof hsm_commands / sizeof hsm_commands[0];
