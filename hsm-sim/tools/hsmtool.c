/* hsmtool: offline CLI over libhsm for operators, test setups and scripts. Each
 * subcommand prints exactly its result on one line (dukpt: name=value lines);
 * bad input exits 2 with one line on stderr. Clear keys on a command line are
 * for test and lab use only. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "hex.h"
#include "hsm.h"
#include "parse.h"

#define LAB_WARNING                                                                                \
    "Clear keys and PINs on a command line are for test and lab use only: they end up in\n"        \
    "shell history and process listings. Never type a production key here.\n"

/* ---------------------------------------------------------------- options */

#define MAX_OPTS 16

struct opts {
    const char *name[MAX_OPTS];
    const char *value[MAX_OPTS]; /* NULL for a flag */
    bool used[MAX_OPTS];
    int n;
    const char *positional;
    bool help;
};

static const char *g_cmd = "hsmtool";

/* One stderr line and exit 2. Never echoes a key or PIN value. */
__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* Parses "--name value" pairs and the flags listed in flags (space separated,
 * e.g. " aes full "). At most one positional argument. */
static void parse_opts(int argc, char **argv, const char *flags, struct opts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (o->positional)
                die("unexpected argument (one positional argument at most)");
            o->positional = a;
            continue;
        }
        if (o->n == MAX_OPTS)
            die("too many options");
        char pat[64];
        snprintf(pat, sizeof pat, " %s ", a + 2);
        o->name[o->n] = a + 2;
        if (strstr(flags, pat)) {
            o->value[o->n++] = NULL;
        } else {
            if (i + 1 >= argc)
                die("option --%s needs a value", a + 2);
            o->value[o->n++] = argv[++i];
        }
    }
}

static const char *opt(struct opts *o, const char *name)
{
    for (int i = 0; i < o->n; i++) {
        if (strcmp(o->name[i], name) == 0) {
            o->used[i] = true;
            return o->value[i] ? o->value[i] : "";
        }
    }
    return NULL;
}

static const char *need(struct opts *o, const char *name)
{
    const char *v = opt(o, name);
    if (!v || (!*v && name[0]))
        die("missing --%s (see --help)", name);
    return v;
}

/* Every option given must have been consumed: catches typos like --pann. */
static void check_all_used(const struct opts *o)
{
    for (int i = 0; i < o->n; i++) {
        if (!o->used[i])
            die("unknown option --%s for this subcommand (see --help)", o->name[i]);
    }
}

static size_t hex_arg(const char *what, const char *s, uint8_t *out, size_t cap)
{
    int n = at_hex_decode(s, strlen(s), out, cap);
    if (n <= 0)
        die("--%s must be hex (an even number of 0-9A-F characters, at most %zu bytes)", what, cap);
    return (size_t)n;
}

static void digits_arg(const char *what, const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max || strspn(s, "0123456789") != n)
        die("--%s must be %zu to %zu decimal digits", what, min, max);
}

/* A clear key of type from hex (DES 8/16/24 bytes; AES 16/24/32 if aes). */
static struct hsm_key *key_arg(const char *what, const char *hex, enum hsm_keytype type, bool aes)
{
    uint8_t k[32];
    size_t n = hex_arg(what, hex, k, sizeof k);
    struct hsm_key *key = NULL;
    int rc = aes ? hsm_key_from_clear_aes(type, k, n, &key) : hsm_key_from_clear(type, k, n, &key);
    OPENSSL_cleanse(k, sizeof k);
    if (rc != 0)
        die("--%s: %s (%s keys are %s bytes)", what, hsm_strerror(rc), aes ? "AES" : "DES",
            aes ? "16, 24 or 32" : "8, 16 or 24");
    return key;
}

static void print_hex(const uint8_t *b, size_t n)
{
    char out[2 * 64 + 1];
    at_hex_encode(b, n, out);
    puts(out);
}

static void fail(const char *what, int rc)
{
    die("%s: %s (payShield error %s)", what, hsm_strerror(rc), hsm_err_code(rc));
}

static int pinfmt_arg(const char *s)
{
    uint64_t v;
    enum hsm_pinfmt f;
    if (!at_parse_u64(s, 9, &v) || hsm_pinfmt_from_iso((int)v, &f) != 0)
        die("--format must be 0, 1, 3 or 4");
    return (int)f;
}

/* ---------------------------------------------------------------- kcv */

static const char help_kcv[] =
    "usage: hsmtool kcv KEYHEX [--full] [--aes]\n"
    "Prints the key check value of a clear key: the first 3 bytes (6 hex) of the\n"
    "key's encryption of a zero block (TDES for 8/16/24-byte keys; --aes for AES).\n"
    "--full prints 8 bytes (16 hex), as payShield BU with a 16H check value.\n" LAB_WARNING;

static int cmd_kcv(struct opts *o)
{
    bool full = opt(o, "full") != NULL, aes = opt(o, "aes") != NULL;
    check_all_used(o);
    if (!o->positional)
        die("missing KEYHEX (see --help)");
    uint8_t k[32], kcv[8];
    size_t n = hex_arg("key", o->positional, k, sizeof k);
    int rc = hsm_kcv_clear(k, n, aes, kcv);
    OPENSSL_cleanse(k, sizeof k);
    if (rc != 0)
        fail("key", rc);
    print_hex(kcv, full ? 8 : 3);
    return 0;
}

/* ---------------------------------------------------------------- pinblock */

static const char help_pinblock[] =
    "usage: hsmtool pinblock encode --format 0|1|3|4 --pin PIN --pan PAN [--fill HEX16]\n"
    "                               [--key KEYHEX]\n"
    "       hsmtool pinblock decode --format 0|1|3|4 --block HEX --pan PAN [--key KEYHEX]\n"
    "       hsmtool pinblock panfield --pan PAN\n"
    "encode prints the clear ISO 9564-1 PIN block (format 4: the 16-byte clear PIN field);\n"
    "with --key, the block encrypted under that key (format 4: AES, C = E(E(PIN field) xor\n"
    "PAN field); other formats: DES/TDES). The fill of formats 1, 3 and 4 is random unless\n"
    "--fill gives 8 bytes for it. decode prints the PIN of a clear block (format 4: the\n"
    "clear PIN field) or, with --key, of an encrypted block. panfield prints the ISO 4 PAN\n"
    "field. PAN: the full PAN (the 12 right-most digits before the check digit are used\n"
    "by formats 0 and 3) or that 12-digit account number itself; format 1 needs "
    "none.\n" LAB_WARNING;

static int cmd_pinblock(struct opts *o)
{
    const char *sub = o->positional;
    if (!sub)
        die("missing encode, decode or panfield (see --help)");
    if (strcmp(sub, "panfield") == 0) {
        const char *pan = need(o, "pan");
        check_all_used(o);
        uint8_t f[16];
        int rc = hsm_iso4_pan_field(pan, f);
        if (rc != 0)
            fail("--pan", rc);
        print_hex(f, 16);
        return 0;
    }
    enum hsm_pinfmt fmt = (enum hsm_pinfmt)pinfmt_arg(need(o, "format"));
    const char *pan = fmt == HSM_PINFMT_ISO1 ? opt(o, "pan") : need(o, "pan");
    const char *keyhex = opt(o, "key");
    bool aes = fmt == HSM_PINFMT_ISO4;
    struct hsm_key *key = keyhex ? key_arg("key", keyhex, HSM_KT_ZPK, aes) : NULL;
    uint8_t blk[16];
    size_t n = 0;
    int rc;
    if (strcmp(sub, "encode") == 0) {
        const char *pin = need(o, "pin");
        const char *fillhex = opt(o, "fill");
        check_all_used(o);
        uint8_t fill[8];
        if (fillhex && hex_arg("fill", fillhex, fill, sizeof fill) != 8)
            die("--fill must be 16 hex characters");
        if (key)
            rc = fillhex ? hsm_pin_encrypt_fill(key, fmt, pin, pan, fill, blk, &n)
                         : hsm_pin_encrypt(key, fmt, pin, pan, blk, &n);
        else
            rc = fillhex ? hsm_pinblock_encode_fill(fmt, pin, pan, fill, blk, &n)
                         : hsm_pinblock_encode(fmt, pin, pan, blk, &n);
        hsm_key_release(key);
        if (rc != 0)
            fail("encode", rc);
        print_hex(blk, n);
        OPENSSL_cleanse(blk, sizeof blk);
        return 0;
    }
    if (strcmp(sub, "decode") == 0) {
        n = hex_arg("block", need(o, "block"), blk, sizeof blk);
        check_all_used(o);
        if (n != hsm_pinfmt_block_len(fmt))
            die("--block must be %zu hex characters for this format",
                2 * hsm_pinfmt_block_len(fmt));
        char pin[13];
        rc = key ? hsm_pin_decrypt(key, fmt, blk, n, pan, pin)
                 : hsm_pinblock_decode(fmt, blk, n, pan, pin);
        hsm_key_release(key);
        if (rc != 0)
            fail("decode", rc);
        puts(pin);
        OPENSSL_cleanse(pin, sizeof pin);
        return 0;
    }
    die("unknown pinblock subcommand (encode, decode, panfield)");
}

/* ---------------------------------------------------------------- pvv, ibm3624, cvv */

static const char help_pvv[] =
    "usage: hsmtool pvv --pvk KEYHEX --pan PAN --pvki N --pin PIN\n"
    "Prints the Visa PIN verification value (4 digits): TSP = 11 right-most PAN digits\n"
    "before the check digit || PVKI || 4 left-most PIN digits, encrypted under the\n"
    "double-length PVK and decimalised.\n" LAB_WARNING;

static int cmd_pvv(struct opts *o)
{
    struct hsm_key *pvk = key_arg("pvk", need(o, "pvk"), HSM_KT_PVK, false);
    const char *pan = need(o, "pan"), *pin = need(o, "pin");
    uint64_t pvki;
    if (!at_parse_u64(need(o, "pvki"), 9, &pvki))
        die("--pvki must be one digit 0-9");
    check_all_used(o);
    char pvv[5];
    int rc = hsm_pvv_generate(pvk, pan, (int)pvki, pin, pvv);
    hsm_key_release(pvk);
    if (rc != 0)
        fail("pvv", rc);
    puts(pvv);
    return 0;
}

static const char help_ibm[] =
    "usage: hsmtool ibm3624 --pvk KEYHEX --vdata HEX16 --pin PIN [--dectab 16DIGITS]\n"
    "       hsmtool ibm3624 --pvk KEYHEX --vdata HEX16 --offset OFFSET [--dectab 16DIGITS]\n"
    "IBM 3624: the natural PIN is TDES(PVK, validation data) decimalised through the\n"
    "table (default 0123456789012345). With --pin prints the offset (PIN - natural PIN,\n"
    "digit by digit mod 10, as many digits as the PIN); with --offset prints the "
    "PIN.\n" LAB_WARNING;

static int cmd_ibm(struct opts *o)
{
    struct hsm_key *pvk = key_arg("pvk", need(o, "pvk"), HSM_KT_PVK, false);
    const char *vdata = need(o, "vdata");
    const char *dectab = opt(o, "dectab");
    const char *pin = opt(o, "pin"), *offset = opt(o, "offset");
    check_all_used(o);
    if (!dectab)
        dectab = "0123456789012345";
    if (strlen(vdata) != 16 || !at_is_hex(vdata, 16))
        die("--vdata must be 16 hex characters");
    if (strlen(dectab) != 16)
        die("--dectab must be 16 decimal digits");
    if (!pin == !offset)
        die("give exactly one of --pin and --offset");
    char out[13];
    int rc = pin ? hsm_ibm_offset(pvk, pin, dectab, vdata, out)
                 : hsm_ibm_pin_from_offset(pvk, offset, dectab, vdata, out);
    hsm_key_release(pvk);
    if (rc != 0)
        fail("ibm3624", rc);
    puts(out);
    return 0;
}

static const char help_cvv[] =
    "usage: hsmtool cvv --cvk KEYHEX --pan PAN --exp YYMM --service SSS\n"
    "Prints the Visa CVV (3 digits) for a double-length CVK (CVK A || CVK B). CVV2 uses\n"
    "service code 000 and iCVV 999 by convention.\n" LAB_WARNING;

static int cmd_cvv(struct opts *o)
{
    struct hsm_key *cvk = key_arg("cvk", need(o, "cvk"), HSM_KT_CVK, false);
    const char *pan = need(o, "pan"), *exp = need(o, "exp"), *svc = need(o, "service");
    check_all_used(o);
    digits_arg("exp", exp, 4, 4);
    digits_arg("service", svc, 3, 3);
    char cvv[4];
    int rc = hsm_cvv_generate(cvk, pan, exp, svc, cvv);
    hsm_key_release(cvk);
    if (rc != 0)
        fail("cvv", rc);
    puts(cvv);
    return 0;
}

/* ---------------------------------------------------------------- dukpt */

static const char help_dukpt[] =
    "usage: hsmtool dukpt --bdk KEYHEX --ksn KSNHEX [--aes]\n"
    "TDES (ANSI X9.24-1:2009): KSN of 20 hex (shorter KSNs are left-padded with F);\n"
    "prints ipek=, txn_key= (current key register), pin_key=, mac_req_key=,\n"
    "mac_resp_key=, data_req_key=, data_resp_key=.\n"
    "AES (--aes, ANSI X9.24-3:2017, AES-128 BDK): KSN of 24 hex (initial key ID ||\n"
    "counter); prints initial_key=, txn_key= (derivation key for the counter), pin_key=\n"
    "(usage 1000), mac_key= (2000), data_key= (3000). One name=value per line.\n" LAB_WARNING;

static void kv(const char *name, const uint8_t *b, size_t n)
{
    char out[2 * 32 + 1];
    at_hex_encode(b, n, out);
    printf("%s=%s\n", name, out);
}

static int cmd_dukpt(struct opts *o)
{
    bool aes = opt(o, "aes") != NULL;
    const char *bdkhex = need(o, "bdk"), *ksnhex = need(o, "ksn");
    check_all_used(o);
    uint8_t bdk[32], ksn[12], k[16], w[16];
    if (hex_arg("bdk", bdkhex, bdk, sizeof bdk) != 16)
        die("--bdk must be 32 hex characters (double-length TDES or AES-128 key)");
    size_t kl = strlen(ksnhex);
    int rc;
    if (!aes) {
        char padded[21];
        if (kl > 20 || kl < 16)
            die("--ksn must be 16 to 20 hex characters");
        memset(padded, 'F', 20);
        memcpy(padded + 20 - kl, ksnhex, kl);
        padded[20] = '\0';
        hex_arg("ksn", padded, ksn, 10);
        if ((rc = hsm_dukpt_ipek_clear(bdk, ksn, k)) != 0)
            fail("dukpt", rc);
        kv("ipek", k, 16);
        if ((rc = hsm_dukpt_txn_key_clear(bdk, ksn, k)) != 0)
            fail("dukpt", rc);
        kv("txn_key", k, 16);
        static const struct {
            const char *name;
            enum hsm_dukpt_usage u;
        } v[] = {
            { "pin_key", HSM_DUKPT_PIN },
            { "mac_req_key", HSM_DUKPT_MAC_REQ },
            { "mac_resp_key", HSM_DUKPT_MAC_RESP },
            { "data_req_key", HSM_DUKPT_DATA_REQ },
            { "data_resp_key", HSM_DUKPT_DATA_RESP },
        };
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            if ((rc = hsm_dukpt_variant_clear(k, v[i].u, w)) != 0)
                fail("dukpt", rc);
            kv(v[i].name, w, 16);
        }
    } else {
        if (kl != 24 || hex_arg("ksn", ksnhex, ksn, sizeof ksn) != 12)
            die("--ksn must be 24 hex characters with --aes");
        if ((rc = hsm_dukpt_aes_initial_key_clear(bdk, ksn, k)) != 0)
            fail("dukpt", rc);
        kv("initial_key", k, 16);
        if ((rc = hsm_dukpt_aes_txn_key_clear(bdk, ksn, k)) != 0)
            fail("dukpt", rc);
        kv("txn_key", k, 16);
        static const struct {
            const char *name;
            enum hsm_dukpt_aes_usage u;
        } v[] = {
            { "pin_key", HSM_AESDUKPT_PIN },
            { "mac_key", HSM_AESDUKPT_MAC_GEN },
            { "data_key", HSM_AESDUKPT_DATA_ENC },
        };
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            if ((rc = hsm_dukpt_aes_working_key_clear(k, ksn, v[i].u, w)) != 0)
                fail("dukpt", rc);
            kv(v[i].name, w, 16);
        }
    }
    OPENSSL_cleanse(bdk, sizeof bdk);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(w, sizeof w);
    return 0;
}

/* ---------------------------------------------------------------- mac */

static const char help_mac[] =
    "usage: hsmtool mac --alg 1|3|tcmac|acmac --key KEYHEX (--data HEX | --text STRING)\n"
    "                   [--pad 1|2|3]\n"
    "Prints the full MAC in hex: ISO 9797-1 algorithm 1 (CBC-MAC with the key's cipher)\n"
    "or 3 (ANSI X9.19 retail MAC, double-length key) with padding 1 (zeros, default),\n"
    "2 (80 then zeros) or 3 (bit-length block first); TDES-CMAC or AES-CMAC (SP 800-38B).\n"
    "Truncate the output for 4-byte MACs.\n" LAB_WARNING;

static int cmd_mac(struct opts *o)
{
    const char *alg = need(o, "alg"), *keyhex = need(o, "key");
    const char *datahex = opt(o, "data"), *text = opt(o, "text"), *pad = opt(o, "pad");
    check_all_used(o);
    enum hsm_macalg a;
    if (strcmp(alg, "1") == 0)
        a = HSM_MAC_ISO9797_1;
    else if (strcmp(alg, "3") == 0)
        a = HSM_MAC_ISO9797_3;
    else if (strcmp(alg, "tcmac") == 0)
        a = HSM_MAC_TDES_CMAC;
    else if (strcmp(alg, "acmac") == 0)
        a = HSM_MAC_AES_CMAC;
    else
        die("--alg must be 1, 3, tcmac or acmac");
    uint64_t p = 1;
    if (pad && (!at_parse_u64(pad, 3, &p) || p == 0))
        die("--pad must be 1, 2 or 3");
    if (!datahex == !text)
        die("give exactly one of --data and --text");
    static uint8_t data[65536];
    size_t n;
    if (text) {
        n = strlen(text);
        if (n > sizeof data)
            die("--text is longer than %zu bytes", sizeof data);
        memcpy(data, text, n);
    } else {
        n = strlen(datahex) == 0 ? 0 : hex_arg("data", datahex, data, sizeof data);
    }
    struct hsm_key *key = key_arg("key", keyhex, HSM_KT_TAK, a == HSM_MAC_AES_CMAC);
    uint8_t mac[16];
    size_t ml;
    int rc = hsm_mac_generate(key, a, (enum hsm_macpad)p, data, n, mac, &ml);
    hsm_key_release(key);
    if (rc != 0)
        fail("mac", rc);
    print_hex(mac, ml);
    return 0;
}

/* ---------------------------------------------------------------- emv */

static const char help_emv[] =
    "usage: hsmtool emv mk --imk KEYHEX --pan PAN [--psn NN]\n"
    "       hsmtool emv sk --mk KEYHEX --r HEX16\n"
    "       hsmtool emv arqc --imk KEYHEX --pan PAN [--psn NN] [--r HEX16] --data HEX\n"
    "                        [--pad 1|2]\n"
    "       hsmtool emv arpc --imk KEYHEX --pan PAN [--psn NN] [--r HEX16] --arqc HEX16\n"
    "                        [--arc HEX4]\n"
    "mk: ICC master key, option A (right-most 16 digits of PAN || PSN). sk: EMV common\n"
    "session key from R (e.g. ATC || 000000000000). arqc: ISO 9797-1 alg 3 with EMV\n"
    "padding over the data, under the session key when --r is given, else under the\n"
    "ICC master key; --pad 1 pads with zeros instead (Visa CVN 10). arpc: method 1, TDES(key, ARQC "
    "xor ARC||00..) with the same key\n"
    "choice (ARC default 0000). PSN default 00.\n" LAB_WARNING;

static int cmd_emv(struct opts *o)
{
    const char *sub = o->positional;
    if (!sub)
        die("missing mk, sk, arqc or arpc (see --help)");
    uint8_t r[8], out[16];
    int rc;
    if (strcmp(sub, "sk") == 0) {
        uint8_t mk[16];
        if (hex_arg("mk", need(o, "mk"), mk, sizeof mk) != 16)
            die("--mk must be 32 hex characters");
        if (hex_arg("r", need(o, "r"), r, sizeof r) != 8)
            die("--r must be 16 hex characters");
        check_all_used(o);
        rc = hsm_emv_session_key_clear(mk, r, out);
        OPENSSL_cleanse(mk, sizeof mk);
        if (rc != 0)
            fail("sk", rc);
        print_hex(out, 16);
        return 0;
    }
    const char *imkhex = need(o, "imk"), *pan = need(o, "pan"), *psn = opt(o, "psn");
    const char *rhex = opt(o, "r");
    if (!psn)
        psn = "00";
    if (rhex && hex_arg("r", rhex, r, sizeof r) != 8)
        die("--r must be 16 hex characters");
    enum hsm_emv_skd skd = rhex ? HSM_EMV_SKD_COMMON : HSM_EMV_SKD_NONE;
    if (strcmp(sub, "mk") == 0) {
        check_all_used(o);
        uint8_t imk[16];
        if (hex_arg("imk", imkhex, imk, sizeof imk) != 16)
            die("--imk must be 32 hex characters");
        rc = hsm_emv_icc_mk_clear(imk, pan, psn, out);
        OPENSSL_cleanse(imk, sizeof imk);
        if (rc != 0)
            fail("mk", rc);
        print_hex(out, 16);
        return 0;
    }
    struct hsm_key *imk = key_arg("imk", imkhex, HSM_KT_MK_AC, false);
    if (strcmp(sub, "arqc") == 0) {
        static uint8_t data[4096];
        const char *datahex = need(o, "data"), *pad = opt(o, "pad");
        if (pad && strcmp(pad, "1") != 0 && strcmp(pad, "2") != 0)
            die("--pad must be 1 (zeros) or 2 (80 00..)");
        check_all_used(o);
        size_t n = hex_arg("data", datahex, data, sizeof data);
        rc = hsm_emv_arqc_generate_pad(imk, pan, psn, skd, rhex ? r : NULL,
                                       pad && pad[0] == '1' ? HSM_PAD_1 : HSM_PAD_2, data, n, out);
    } else if (strcmp(sub, "arpc") == 0) {
        uint8_t arqc[8], arc[2] = { 0, 0 };
        if (hex_arg("arqc", need(o, "arqc"), arqc, sizeof arqc) != 8)
            die("--arqc must be 16 hex characters");
        const char *archex = opt(o, "arc");
        if (archex && hex_arg("arc", archex, arc, sizeof arc) != 2)
            die("--arc must be 4 hex characters");
        check_all_used(o);
        rc = hsm_emv_arpc1(imk, pan, psn, skd, rhex ? r : NULL, arqc, arc, out);
    } else {
        die("unknown emv subcommand (mk, sk, arqc, arpc)");
    }
    hsm_key_release(imk);
    if (rc != 0)
        fail(sub, rc);
    print_hex(out, 8);
    return 0;
}

/* ---------------------------------------------------------------- tr31 */

static const char help_tr31[] =
    "usage: hsmtool tr31 --kbpk KEYHEX --block KEYBLOCK\n"
    "       hsmtool tr31 --kbpk KEYHEX --header HEADER --key KEYHEX [--pad HEX]\n"
    "Unwraps a TR-31 / ANSI X9.143 key block (versions A, C: TDES variant binding; B: TDES\n"
    "derivation binding; D: AES derivation binding) under the clear key block protection\n"
    "key, verifies its MAC and prints the clear key in hex. With --header, wraps the clear\n"
    "key instead and prints the block: HEADER is the header with its optional blocks (its\n"
    "version letter chooses the binding, its length field is filled in); --pad gives the\n"
    "padding after the key (default: random, masking the key length).\n" LAB_WARNING;

static int cmd_tr31(struct opts *o)
{
    const char *kbpkhex = need(o, "kbpk"), *header = opt(o, "header");
    uint8_t kbpk[32], key[32];
    size_t kl = hex_arg("kbpk", kbpkhex, kbpk, sizeof kbpk), n = 0;
    if (header) {
        const char *keyhex = need(o, "key"), *padhex = opt(o, "pad");
        check_all_used(o);
        uint8_t pad[64];
        size_t padlen = padhex ? hex_arg("pad", padhex, pad, sizeof pad) : 0;
        n = hex_arg("key", keyhex, key, sizeof key);
        char out[10000];
        int rc = hsm_tr31_wrap_clear(kbpk, kl, header, strlen(header), key, n, padhex ? pad : NULL,
                                     padlen, out, sizeof out);
        OPENSSL_cleanse(kbpk, sizeof kbpk);
        OPENSSL_cleanse(key, sizeof key);
        if (rc != 0)
            fail("tr31", rc);
        printf("%s\n", out);
        return 0;
    }
    const char *block = need(o, "block");
    check_all_used(o);
    char hdr[17];
    int rc = hsm_tr31_unwrap_clear(kbpk, kl, block, strlen(block), hdr, key, sizeof key, &n);
    OPENSSL_cleanse(kbpk, sizeof kbpk);
    if (rc == HSM_ERR_VERIFY)
        die("key block MAC does not verify (wrong KBPK or altered block)");
    if (rc != 0)
        fail("tr31", rc);
    print_hex(key, n);
    OPENSSL_cleanse(key, sizeof key);
    return 0;
}

/* ---------------------------------------------------------------- key */

static const char help_key[] =
    "usage: hsmtool key --type TYPE [--clear KEYHEX] [--scheme Z|U|T|X|Y|A|S] [--lmk FILE]\n"
    "                   [--lmk-keyblock FILE] [--aes]\n"
    "Prints the key encrypted under the LMK (payShield variant LMK; default the Thales\n"
    "test LMK, or the LMK file of --lmk) and its 6-hex KCV, separated by a space.\n"
    "TYPE: ZMK ZPK TMK TPK PVK CVK TAK ZAK BDK MK-AC ZEK BDK-AES. Without --clear a\n"
    "random key is generated (default scheme U; A for BDK-AES). With --clear the key\n"
    "must have odd parity (DES) and the scheme defaults to its length (Z, U, T). Scheme A\n"
    "(AES-128) is an Atlas extension for BDK-AES and AES ZPK/TPK/TAK/ZAK/ZEK. Scheme S\n"
    "writes the key as 'S' + a TR-31 version D block under the AES key-block LMK of\n"
    "--lmk-keyblock (hsm-sim's option of that name), with its type's default usage and\n"
    "mode; --aes says a --clear key for scheme S is an AES key.\n" LAB_WARNING;

static int cmd_key(struct opts *o)
{
    enum hsm_keytype t;
    const char *type = need(o, "type");
    if (hsm_keytype_from_name(type, &t) != 0)
        die("--type must be one of ZMK ZPK TMK TPK PVK CVK TAK ZAK BDK MK-AC ZEK BDK-AES");
    const char *clearhex = opt(o, "clear"), *scheme = opt(o, "scheme"), *lmk = opt(o, "lmk");
    const char *kblmk = opt(o, "lmk-keyblock");
    bool aes_flag = opt(o, "aes") != NULL;
    check_all_used(o);
    if (scheme && (strlen(scheme) != 1 || !strchr("ZUTXYAS", scheme[0])))
        die("--scheme must be Z, U, T, X, Y, A or S");
    if (scheme && scheme[0] == 'S' && !kblmk)
        die("--scheme S needs --lmk-keyblock FILE");
    struct hsm *h = NULL;
    if (hsm_new(&h, 8) != 0)
        die("cannot initialise the HSM library");
    char err[256] = "";
    if (lmk && hsm_lmk_load(h, lmk, err, sizeof err) != 0)
        die("%s", err);
    if (kblmk && hsm_lmk_keyblock_load(h, kblmk, err, sizeof err) != 0)
        die("%s", err);
    char text[256];
    uint8_t kcv[8];
    int rc;
    if (!clearhex) {
        enum hsm_scheme s = scheme                ? (enum hsm_scheme)scheme[0]
                            : t == HSM_KT_BDK_AES ? HSM_SCHEME_A
                                                  : HSM_SCHEME_U;
        rc = hsm_key_generate(h, t, s, text, sizeof text, kcv);
    } else {
        uint8_t k[32];
        size_t n = hex_arg("clear", clearhex, k, sizeof k);
        bool aes = (scheme && scheme[0] == 'A') || t == HSM_KT_BDK_AES || aes_flag;
        if (!aes && !hsm_parity_check(k, n))
            die("--clear: the key does not have odd parity");
        enum hsm_scheme s = scheme    ? (enum hsm_scheme)scheme[0]
                            : aes     ? HSM_SCHEME_A
                            : n == 8  ? HSM_SCHEME_Z
                            : n == 16 ? HSM_SCHEME_U
                                      : HSM_SCHEME_T;
        struct hsm_key *key = NULL;
        rc = aes ? hsm_key_from_clear_aes(t, k, n, &key) : hsm_key_from_clear(t, k, n, &key);
        OPENSSL_cleanse(k, sizeof k);
        if (rc == 0) {
            rc = hsm_key_to_lmk(h, key, s, text, sizeof text);
            hsm_key_kcv(key, kcv);
            hsm_key_release(key);
        }
    }
    hsm_free(h);
    if (rc != 0)
        fail("key", rc);
    char kcvhex[7];
    at_hex_encode(kcv, 3, kcvhex);
    printf("%s %s\n", text, kcvhex);
    return 0;
}

/* ---------------------------------------------------------------- main */

static const struct {
    const char *name;
    const char *flags;
    const char *help;
    int (*run)(struct opts *o);
} cmds[] = {
    { "kcv", " full aes ", help_kcv, cmd_kcv }, { "pinblock", " ", help_pinblock, cmd_pinblock },
    { "pvv", " ", help_pvv, cmd_pvv },          { "ibm3624", " ", help_ibm, cmd_ibm },
    { "cvv", " ", help_cvv, cmd_cvv },          { "dukpt", " aes ", help_dukpt, cmd_dukpt },
    { "mac", " ", help_mac, cmd_mac },          { "emv", " ", help_emv, cmd_emv },
    { "key", " aes ", help_key, cmd_key },      { "tr31", " ", help_tr31, cmd_tr31 },
};

static void usage(FILE *f)
{
    fputs("usage: hsmtool COMMAND [options]   (hsmtool COMMAND --help for details)\n"
          "commands: kcv, pinblock, pvv, ibm3624, cvv, dukpt, mac, emv, key, tr31\n"
          "Offline payment cryptography from libhsm; each command prints one result "
          "line.\n" LAB_WARNING,
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(argv[1], cmds[i].name) != 0)
            continue;
        static char cmdname[64];
        snprintf(cmdname, sizeof cmdname, "hsmtool %s", cmds[i].name);
        g_cmd = cmdname;
        struct opts o;
        parse_opts(argc - 2, argv + 2, cmds[i].flags, &o);
        if (o.help) {
            fputs(cmds[i].help, stdout);
            return 0;
        }
        return cmds[i].run(&o);
    }
    fprintf(stderr, "hsmtool: unknown command '%.32s' (hsmtool --help)\n", argv[1]);
    return 2;
}
