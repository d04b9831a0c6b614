/* Unit tests of libhsm's TR-31 / ANSI X9.143 key blocks: wrapping reproduces every published
 * block of tests/vectors/tr31.txt byte for byte (with the pad the unwrap recovers), wrap then
 * unwrap round trips for versions A-D, header parsing and validation, the key-block LMK
 * (keys under the LMK as 'S' + version D block), the enforcement of usage, mode of use and
 * exportability, and import / export under a ZMK acting as key block protection key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hsm.h"
#include "test_hex.h"
#include "test_vectors.h"

#define KBLMK "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"

static const char *hx(const uint8_t *in, size_t n)
{
    static char buf[2 * 64 + 1];
    assert_true(n <= 64);
    tohex(in, n, buf);
    return buf;
}

/* Every published block re-made by wrap with its KBPK, key, header and the pad its unwrap
 * recovers: A and C (IV = header), B and D (IV = the CMAC of the clear data). */
static void test_wrap_published(void **state)
{
    (void)state;
    static struct tv_row table[32];
    size_t rows = read_rows(HSM_VECTORS_DIR "/tr31.txt", table, 32, 3, 19);
    assert_int_equal(rows, 19);
    int versions[4] = { 0 };
    for (size_t i = 0; i < rows; i++) {
        const char *kb = table[i].f[2];
        uint8_t kbpk[32], key[32], pad[64];
        size_t kl = unhex(table[i].f[0], kbpk), n = 0, padlen = 0;
        struct hsm_tr31_header h;
        assert_int_equal(hsm_tr31_unwrap_clear_pad(kbpk, kl, kb, strlen(kb), &h, key, sizeof key,
                                                   &n, pad, sizeof pad, &padlen),
                         HSM_OK);
        assert_string_equal(hx(key, n), table[i].f[1]);
        char out[400];
        int rc = hsm_tr31_wrap_clear(kbpk, kl, kb, h.hlen, key, n, pad, padlen, out, sizeof out);
        if (rc != HSM_OK)
            fail_msg("%.16s: wrap %d", kb, rc);
        assert_string_equal(out, kb);
        versions[kb[0] - 'A']++;
    }
    for (int v = 0; v < 4; v++)
        assert_true(versions[v] > 0);
}

/* Wrap with a random pad, then unwrap: every version, KBPK and key length; the key length is
 * masked (the block is as long for a single as for a triple DES key). */
static void test_roundtrip(void **state)
{
    (void)state;
    static const struct {
        char v;
        size_t kbpk, key;
        const char *hdr;
    } cases[] = {
        { 'A', 16, 16, "A0000P0TE00E0000" },
        { 'A', 24, 8, "A0000D0DB00N0000" },
        { 'B', 16, 16, "B0000M3TC01E0000" },
        { 'B', 24, 24, "B0000K0TB00S0000" },
        { 'C', 8, 16, "C0000P0TD00E0000" },
        { 'D', 16, 16, "D0000P0AE00E0000" },
        { 'D', 32, 32, "D0000B0AX00N0000" },
        { 'D', 24, 16, "D0000M6AG99E0000" },
        /* an optional block (KS, 16 characters with its id and length) and a PB to pad */
        { 'B', 16, 16, "B0000B0TX00E0200KS1000604B120F92PB080000" },
        { 'D', 16, 16, "D0000B0AX00E0200KS1000604B120F92PB10000000000000" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t kbpk[32], key[32], back[32];
        for (size_t j = 0; j < 32; j++) {
            kbpk[j] = (uint8_t)(0x11 * (j + 1) + i);
            key[j] = (uint8_t)(0x23 * j + 7 * i);
        }
        char out[400], hdr[17];
        size_t hl = strlen(cases[i].hdr), n = 0;
        int rc = hsm_tr31_wrap_clear(kbpk, cases[i].kbpk, cases[i].hdr, hl, key, cases[i].key, NULL,
                                     0, out, sizeof out);
        if (rc != HSM_OK)
            fail_msg("case %zu: wrap %d", i, rc);
        assert_int_equal(out[0], cases[i].v);
        assert_memory_equal(out + 5, cases[i].hdr + 5, hl - 5);
        assert_int_equal(hsm_tr31_unwrap_clear(kbpk, cases[i].kbpk, out, strlen(out), hdr, back,
                                               sizeof back, &n),
                         HSM_OK);
        assert_int_equal(n, cases[i].key);
        assert_memory_equal(back, key, n);
        /* masked length: 24 bytes of key room for DES, 32 for version D */
        size_t bs = cases[i].v == 'D' ? 16 : 8, room = cases[i].v == 'D' ? 32 : 24;
        size_t enclen = (2 + room + bs - 1) / bs * bs;
        size_t maclen = cases[i].v == 'B' ? 8 : cases[i].v == 'D' ? 16 : 4;
        assert_int_equal(strlen(out), hl + 2 * enclen + 2 * maclen);
        /* two wraps of the same key differ (random pad) */
        char again[400];
        assert_int_equal(hsm_tr31_wrap_clear(kbpk, cases[i].kbpk, cases[i].hdr, hl, key,
                                             cases[i].key, NULL, 0, again, sizeof again),
                         HSM_OK);
        assert_string_not_equal(again, out);
    }
    /* refusals: KBPK length for the version, key length, pad not filling a block */
    uint8_t k[32] = { 0 };
    char out[400];
    assert_int_equal(hsm_tr31_wrap_clear(k, 8, "B0000P0TE00E0000", 16, k, 16, NULL, 0, out, 400),
                     HSM_ERR_KEY_LENGTH);
    assert_int_equal(hsm_tr31_wrap_clear(k, 8, "D0000P0AE00E0000", 16, k, 16, NULL, 0, out, 400),
                     HSM_ERR_KEY_LENGTH);
    assert_int_equal(hsm_tr31_wrap_clear(k, 16, "B0000P0TE00E0000", 16, k, 12, NULL, 0, out, 400),
                     HSM_ERR_KEY_LENGTH);
    assert_int_equal(hsm_tr31_wrap_clear(k, 16, "B0000P0TE00E0000", 16, k, 16, k, 3, out, 400),
                     HSM_ERR_DATA_LENGTH);
    assert_int_equal(hsm_tr31_wrap_clear(k, 16, "B0000P0TE00E0000", 16, k, 16, NULL, 0, out, 20),
                     HSM_ERR_DATA_LENGTH);
    /* version D: the header must fill 16-byte blocks (24 characters do not) */
    assert_int_equal(
        hsm_tr31_wrap_clear(k, 16, "D0000P0AE00E0100KS0800PB", 24, k, 16, NULL, 0, out, 400),
        HSM_ERR_INPUT);
    /* a header whose optional blocks do not fill it */
    assert_int_equal(
        hsm_tr31_wrap_clear(k, 16, "B0000P0TE00E0100KS0600PB", 24, k, 16, NULL, 0, out, 400),
        HSM_ERR_INPUT);
}

/* The header fields, and a refusal for each one that is not valid. */
static void test_header(void **state)
{
    (void)state;
    const char *kb = "B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C"
                     "4738A52190E248719E24B433627";
    struct hsm_tr31_header h;
    assert_int_equal(hsm_tr31_header_parse(kb, strlen(kb), &h), HSM_OK);
    assert_int_equal(h.version, 'B');
    assert_int_equal(h.length, 104);
    assert_string_equal(h.usage, "B0");
    assert_int_equal(h.algorithm, 'T');
    assert_int_equal(h.mode, 'X');
    assert_string_equal(h.kvn, "12");
    assert_int_equal(h.exportability, 'S');
    assert_int_equal(h.nopt, 1);
    assert_int_equal(h.hlen, 40); /* 16 + the 24-character KS block */

    /* one field changed at a time in a valid 16-character header (no optional block) */
    static const struct {
        size_t pos;
        char c;
    } bad[] = {
        { 0, 'E' },  /* version */
        { 5, 'Z' },  /* usage "Z0" */
        { 6, 'Q' },  /* usage "PQ" */
        { 7, 'Q' },  /* algorithm */
        { 8, 'A' },  /* mode of use */
        { 9, '-' },  /* key version number */
        { 11, 'X' }, /* exportability */
        { 13, '1' }, /* one optional block that is not there */
        { 14, '1' }, /* reserved */
        { 3, '9' },  /* length field not the block's */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char b[17];
        memcpy(b, "B0016P0TE00E0000", 17);
        b[bad[i].pos] = bad[i].c;
        if (hsm_tr31_header_parse(b, 16, &h) == HSM_OK)
            fail_msg("bad header %zu (%s) accepted", i, b);
    }
    /* optional blocks as psec's tests/test_tr31.py loads them (header lengths 48, 288, 56):
     * the extended length form (length of the length in bytes), a 256-character block, an
     * empty one; each wrapped and unwrapped */
    static char big[400];
    snprintf(big, sizeof big, "B0000P0TE00N0200KS0002010A%0256dPB0600", 0);
    const char *const good[] = { "B0000P0TE00N0200KS00011600604B120F9292PB0A000000", big,
                                 "B0000P0TE00N0400KS1800604B120F9292800000T104T20600PB0600",
                                 "B0000P0TE00N0200KS1200604B120F9292PB0600" };
    const size_t good_hlen[] = { 48, 288, 56, 40 };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint8_t kbpk[16] = { 1, 2, 3 }, key[16] = { 4, 5, 6 }, back[32];
        char out[800], h16[17];
        size_t n = 0;
        int rc = hsm_tr31_wrap_clear(kbpk, 16, good[i], strlen(good[i]), key, 16, NULL, 0, out,
                                     sizeof out);
        if (rc != HSM_OK)
            fail_msg("good header %zu: wrap %d", i, rc);
        assert_int_equal(hsm_tr31_header_parse(out, strlen(out), &h), HSM_OK);
        assert_int_equal(h.hlen, good_hlen[i]);
        assert_int_equal(
            hsm_tr31_unwrap_clear(kbpk, 16, out, strlen(out), h16, back, sizeof back, &n), HSM_OK);
        assert_memory_equal(back, key, 16);
    }
    /* malformed optional blocks (psec's test_header_block_load_exceptions), the block's length
     * field set to the string's own length so that only the optional block is at fault */
    const char *const badopt[] = {
        "B0000P0TE00N0100",
        "B0000P0TE00N0100K",
        "B0000P0TE00N0100KS",
        "B0000P0TE00N0100KS1",
        "B0000P0TE00N0100KS1Y",
        "B0000P0TE00N0100KS02",
        "B0000P0TE00N0100KS071",
        "B0000P0TE00N0100KS00",
        "B0000P0TE00N0100KS001",
        "B0000P0TE00N0100KS001S",
        "B0000P0TE00N0100KS0000",
        "B0000P0TE00N0100KS0001",
        "B0000P0TE00N0100KS00010",
        "B0000P0TE00N0100KS00010H",
        "B0000P0TE00N0100KS000101",
        "B0000P0TE00N0100KS0001FF",
        "B0000P0TE00N0200KS07000T",
        "B0000P0TE00N0200KS0600TT",
        "B0000P0TE00N0200KS050TT1",
        "B0000P0TE00N0200KS04TT1X",
        "B0000P0TE00N0200KS04TT03",
        "B0000P0TE00N0200KS04TT05",
        "B0000P0TE00N0200KS04TT00",
        "B0000P0TE00N0200KS04TT001",
        "B0000P0TE00N0200KS04TT0000",
        "B0000P0TE00N0200KS04TT000101",
        "B0000P0TE00N0200KS04TT00011F",
        "B0000P0TE00N0100KS05\x03",
        "B0000P0TE00N0000_",
    };
    for (size_t i = 0; i < sizeof badopt / sizeof badopt[0]; i++) {
        char b[64];
        size_t l = strlen(badopt[i]);
        memcpy(b, badopt[i], l + 1);
        b[1] = (char)('0' + l / 1000);
        b[2] = (char)('0' + l / 100 % 10);
        b[3] = (char)('0' + l / 10 % 10);
        b[4] = (char)('0' + l % 10);
        int rc = hsm_tr31_header_parse(b, l, &h);
        /* the last one is a valid header followed by data: only that one parses */
        if (i + 1 == sizeof badopt / sizeof badopt[0])
            assert_int_equal(rc, HSM_OK);
        else if (rc == HSM_OK)
            fail_msg("malformed optional block %zu (%s) accepted", i, badopt[i]);
    }
    /* proprietary numeric usage and mode are accepted */
    assert_int_equal(hsm_tr31_header_parse("B001645T500E0000", 16, &h), HSM_OK);
    /* an optional block longer than the block */
    assert_int_not_equal(hsm_tr31_header_parse("B0024P0TE00E0100KS990000", 24, &h), HSM_OK);
}

/* ---------------------------------------------------------------- with keys */

static struct hsm *g_h;
static char g_lmkfile[64];

static int setup(void **state)
{
    (void)state;
    strcpy(g_lmkfile, "/tmp/test_tr31_lmk.XXXXXX");
    int fd = mkstemp(g_lmkfile);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# AES-256 key-block LMK (test)\n%s\n", KBLMK);
    fclose(f);
    if (hsm_new(&g_h, 64) != HSM_OK)
        return -1;
    char err[200] = "";
    return hsm_lmk_keyblock_load(g_h, g_lmkfile, err, sizeof err) == HSM_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    hsm_free(g_h);
    unlink(g_lmkfile);
    return 0;
}

static struct hsm_key *load(enum hsm_keytype t, const char *text)
{
    struct hsm_key *k = NULL;
    int rc = hsm_key_load(g_h, t, text, strlen(text), &k);
    if (rc != HSM_OK)
        fail_msg("load %s: %d", hsm_keytype_name(t), rc);
    return k;
}

/* A key block under the LMK with a chosen header and clear key. */
static void lmk_block(const char *hdr, const char *keyhex, char *out, size_t cap)
{
    uint8_t lmk[32], key[32];
    unhex(KBLMK, lmk);
    size_t n = unhex(keyhex, key);
    out[0] = 'S';
    assert_int_equal(
        hsm_tr31_wrap_clear(lmk, 32, hdr, strlen(hdr), key, n, NULL, 0, out + 1, cap - 1), HSM_OK);
}

static void test_lmk_file(void **state)
{
    (void)state;
    struct hsm *h;
    char err[200] = "", path[64];
    assert_int_equal(hsm_new(&h, 16), HSM_OK);
    assert_false(hsm_has_keyblock_lmk(h));
    /* without a key-block LMK, scheme S is refused */
    char out[300];
    uint8_t kcv[8];
    assert_int_equal(hsm_key_generate(h, HSM_KT_ZPK, HSM_SCHEME_S, out, sizeof out, kcv),
                     HSM_ERR_KEY_SCHEME);
    strcpy(path, "/tmp/test_tr31_bad.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(write(fd, "0011223344\n", 11) == 11);
    close(fd);
    assert_int_equal(hsm_lmk_keyblock_load(h, path, err, sizeof err), HSM_ERR_INPUT);
    assert_non_null(strstr(err, ":1:"));
    assert_null(strstr(err, "0011223344")); /* never key material in the message */
    unlink(path);
    assert_int_equal(hsm_lmk_keyblock_load(h, "/nonexistent/lmk", err, sizeof err), HSM_ERR_INPUT);
    assert_false(hsm_has_keyblock_lmk(h));
    hsm_free(h);
    assert_true(hsm_has_keyblock_lmk(g_h));
}

/* Keys generated under the key-block LMK carry the usage of their type; a block whose usage
 * does not fit the type asked for is refused (04) — a PIN key cannot be loaded as a MAC key. */
static void test_lmk_keys(void **state)
{
    (void)state;
    static const struct {
        enum hsm_keytype t;
        const char *usage;
        char mode;
    } types[] = {
        { HSM_KT_ZMK, "K0", 'B' },     { HSM_KT_ZPK, "P0", 'B' }, { HSM_KT_TPK, "P0", 'B' },
        { HSM_KT_PVK, "V0", 'C' },     { HSM_KT_CVK, "C0", 'C' }, { HSM_KT_TAK, "M3", 'C' },
        { HSM_KT_ZAK, "M3", 'C' },     { HSM_KT_BDK, "B0", 'X' }, { HSM_KT_MK_AC, "E0", 'X' },
        { HSM_KT_BDK_AES, "B0", 'X' },
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char text[300];
        uint8_t kcv[8], kcv2[8];
        assert_int_equal(hsm_key_generate(g_h, types[i].t, HSM_SCHEME_S, text, sizeof text, kcv),
                         HSM_OK);
        assert_int_equal(text[0], 'S');
        assert_int_equal(text[1], 'D');
        assert_memory_equal(text + 6, types[i].usage, 2);
        assert_int_equal(text[9], types[i].mode);
        struct hsm_key *k = load(types[i].t, text);
        hsm_key_kcv(k, kcv2);
        assert_memory_equal(kcv, kcv2, 3);
        char u[3], m, e;
        hsm_key_usage(k, u, &m, &e);
        assert_string_equal(u, types[i].usage);
        hsm_key_release(k);
    }
    /* a P0 block loaded as a TAK or ZAK: 04 */
    char zpk[300];
    uint8_t kcv[8];
    struct hsm_key *k = NULL;
    assert_int_equal(hsm_key_generate(g_h, HSM_KT_ZPK, HSM_SCHEME_S, zpk, sizeof zpk, kcv), HSM_OK);
    assert_int_equal(hsm_key_load(g_h, HSM_KT_TAK, zpk, strlen(zpk), &k), HSM_ERR_KEY_TYPE_CODE);
    assert_int_equal(hsm_key_load(g_h, HSM_KT_ZAK, zpk, strlen(zpk), &k), HSM_ERR_KEY_TYPE_CODE);
    assert_int_equal(hsm_key_load(g_h, HSM_KT_PVK, zpk, strlen(zpk), &k), HSM_ERR_KEY_TYPE_CODE);
    /* an M3 block cannot be a ZPK */
    char tak[300];
    assert_int_equal(hsm_key_generate(g_h, HSM_KT_TAK, HSM_SCHEME_S, tak, sizeof tak, kcv), HSM_OK);
    assert_int_equal(hsm_key_load(g_h, HSM_KT_ZPK, tak, strlen(tak), &k), HSM_ERR_KEY_TYPE_CODE);
    /* a block that does not authenticate under the LMK is a corrupt key (10) */
    zpk[strlen(zpk) - 1] = zpk[strlen(zpk) - 1] == '0' ? '1' : '0';
    assert_int_equal(hsm_key_load(g_h, HSM_KT_ZPK, zpk, strlen(zpk), &k), HSM_ERR_SRC_PARITY);
    /* an AES algorithm for a DES-only type; bad parity of a DES key */
    char blk[300];
    lmk_block("D0000C0AC00E0000", "00112233445566778899AABBCCDDEEFF", blk, sizeof blk);
    assert_int_equal(hsm_key_load(g_h, HSM_KT_CVK, blk, strlen(blk), &k), HSM_ERR_KEY_INCOMPAT);
    lmk_block("D0000C0TC00E0000", "00112233445566778899AABBCCDDEEFF", blk, sizeof blk);
    assert_int_equal(hsm_key_load(g_h, HSM_KT_CVK, blk, strlen(blk), &k), HSM_ERR_SRC_PARITY);
    /* generated with chosen attributes: a verify-only CVK, version 12, sensitive */
    char cvk[300];
    assert_int_equal(hsm_key_generate_kb(g_h, HSM_KT_CVK, 'V', "12", 'S', cvk, sizeof cvk, kcv),
                     HSM_OK);
    assert_memory_equal(cvk + 6, "C0TV12S", 7);
    k = load(HSM_KT_CVK, cvk);
    assert_int_equal(hsm_key_permits(k, HSM_USE_GENERATE), HSM_ERR_NOT_PERMITTED);
    assert_int_equal(hsm_key_permits(k, HSM_USE_VERIFY), HSM_OK);
    assert_int_equal(hsm_key_permits(k, HSM_USE_EXPORT), HSM_OK);
    hsm_key_release(k);
    assert_int_equal(hsm_key_generate_kb(g_h, HSM_KT_ZPK, 'C', NULL, 0, cvk, sizeof cvk, kcv),
                     HSM_ERR_NOT_PERMITTED); /* B cannot become C */
    assert_int_equal(hsm_key_generate_kb(g_h, HSM_KT_ZPK, 0, "1", 0, cvk, sizeof cvk, kcv),
                     HSM_ERR_INPUT);
    assert_int_equal(hsm_key_generate_kb(g_h, HSM_KT_ZPK, 0, NULL, 'X', cvk, sizeof cvk, kcv),
                     HSM_ERR_INPUT);
    /* variant-LMK keys still load next to key blocks */
    char u[60];
    assert_int_equal(hsm_key_generate(g_h, HSM_KT_ZPK, HSM_SCHEME_U, u, sizeof u, kcv), HSM_OK);
    hsm_key_release(load(HSM_KT_ZPK, u));
}

/* Mode of use: generate-only, verify-only, encrypt-only, decrypt-only, derive. */
static void test_modes(void **state)
{
    (void)state;
    static const struct {
        const char *hdr;
        enum hsm_keytype t;
        const char *allowed, *refused; /* letters: G V E D X */
    } cases[] = {
        { "D0000M3TG00E0000", HSM_KT_TAK, "G", "VEDX" },
        { "D0000M3TV00E0000", HSM_KT_TAK, "V", "GEDX" },
        { "D0000M3TC00E0000", HSM_KT_ZAK, "GV", "EDX" },
        { "D0000P0TE00E0000", HSM_KT_ZPK, "E", "DGVX" },
        { "D0000P0TD00E0000", HSM_KT_TPK, "D", "EGVX" },
        { "D0000P0TB00E0000", HSM_KT_ZPK, "ED", "GVX" },
        { "D0000C0TV00E0000", HSM_KT_CVK, "V", "GEDX" },
        { "D0000B0TX00E0000", HSM_KT_BDK, "X", "GVED" },
        { "D0000P0TN00E0000", HSM_KT_ZPK, "GVEDX", "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char blk[300];
        lmk_block(cases[i].hdr, "0123456789ABCDEFFEDCBA9876543210", blk, sizeof blk);
        struct hsm_key *k = load(cases[i].t, blk);
        for (const char *p = "GVEDX"; *p; p++) {
            enum hsm_key_use use = *p == 'G'   ? HSM_USE_GENERATE
                                   : *p == 'V' ? HSM_USE_VERIFY
                                   : *p == 'E' ? HSM_USE_ENCRYPT
                                   : *p == 'D' ? HSM_USE_DECRYPT
                                               : HSM_USE_DERIVE;
            int want = strchr(cases[i].allowed, *p) ? HSM_OK : HSM_ERR_NOT_PERMITTED;
            if (hsm_key_permits(k, use) != want)
                fail_msg("%s use %c: want %d", cases[i].hdr, *p, want);
        }
        hsm_key_release(k);
    }
    /* a key under the variant LMK has no mode: everything its type allows */
    char u[60];
    uint8_t kcv[8];
    assert_int_equal(hsm_key_generate(g_h, HSM_KT_TAK, HSM_SCHEME_U, u, sizeof u, kcv), HSM_OK);
    struct hsm_key *k = load(HSM_KT_TAK, u);
    assert_int_equal(hsm_key_permits(k, HSM_USE_GENERATE), HSM_OK);
    assert_int_equal(hsm_key_permits(k, HSM_USE_EXPORT), HSM_OK);
    hsm_key_release(k);
}

/* Export as TR-31 under a ZMK and import back; exportability; narrowing the mode. */
static void test_import_export(void **state)
{
    (void)state;
    char zmk_t[300], zpk_t[300], blk[400], back[300];
    uint8_t kcv[8], kcv2[8];
    /* a TDES ZMK under the variant LMK: version B */
    assert_int_equal(hsm_key_generate(g_h, HSM_KT_ZMK, HSM_SCHEME_U, zmk_t, sizeof zmk_t, kcv),
                     HSM_OK);
    assert_int_equal(hsm_key_generate(g_h, HSM_KT_ZPK, HSM_SCHEME_S, zpk_t, sizeof zpk_t, kcv),
                     HSM_OK);
    struct hsm_key *zmk = load(HSM_KT_ZMK, zmk_t), *zpk = load(HSM_KT_ZPK, zpk_t);
    assert_int_equal(hsm_tr31_export(zmk, zpk, 'E', "07", 0, blk, sizeof blk), HSM_OK);
    assert_memory_equal(blk, "B0", 2);
    assert_memory_equal(blk + 5, "P0TE07E0000", 11);
    /* the block unwraps under the clear ZMK... */
    /* ...and imports back as a ZPK under the variant LMK and under the key-block LMK */
    assert_int_equal(hsm_tr31_import(g_h, zmk, HSM_KT_ZPK, blk, strlen(blk), HSM_SCHEME_U, back,
                                     sizeof back, kcv2),
                     HSM_OK);
    assert_memory_equal(kcv, kcv2, 3);
    assert_int_equal(back[0], 'U');
    assert_int_equal(hsm_tr31_import(g_h, zmk, HSM_KT_ZPK, blk, strlen(blk), HSM_SCHEME_S, back,
                                     sizeof back, kcv2),
                     HSM_OK);
    assert_memory_equal(kcv, kcv2, 3);
    assert_memory_equal(back + 6, "P0TE07E", 7); /* the header's attributes are kept */
    struct hsm_key *imp = load(HSM_KT_ZPK, back);
    assert_int_equal(hsm_key_permits(imp, HSM_USE_ENCRYPT), HSM_OK);
    assert_int_equal(hsm_key_permits(imp, HSM_USE_DECRYPT), HSM_ERR_NOT_PERMITTED);
    hsm_key_release(imp);
    /* a P0 block cannot be imported as a TAK (04); a tampered block fails (01) */
    assert_int_equal(hsm_tr31_import(g_h, zmk, HSM_KT_TAK, blk, strlen(blk), HSM_SCHEME_U, back,
                                     sizeof back, kcv2),
                     HSM_ERR_KEY_TYPE_CODE);
    blk[20] = blk[20] == '0' ? '1' : '0';
    assert_int_equal(hsm_tr31_import(g_h, zmk, HSM_KT_ZPK, blk, strlen(blk), HSM_SCHEME_U, back,
                                     sizeof back, kcv2),
                     HSM_ERR_VERIFY);
    /* widening the mode (B key exported as ... fine; an E-only key cannot become B) */
    assert_int_equal(hsm_tr31_export(zmk, zpk, 'G', NULL, 0, blk, sizeof blk),
                     HSM_ERR_NOT_PERMITTED);
    /* a ZPK (not a KEK) cannot serve as KBPK */
    assert_int_equal(hsm_tr31_export(zpk, zpk, 0, NULL, 0, blk, sizeof blk), HSM_ERR_KEY_TYPE);

    /* a non-exportable key is refused, as TR-31 and as a variant export */
    char ne[300];
    lmk_block("D0000P0TB00N0000", "0123456789ABCDEFFEDCBA9876543210", ne, sizeof ne);
    struct hsm_key *nek = load(HSM_KT_ZPK, ne);
    assert_int_equal(hsm_tr31_export(zmk, nek, 0, NULL, 0, blk, sizeof blk), HSM_ERR_NOT_PERMITTED);
    assert_int_equal(hsm_key_export(zmk, nek, HSM_SCHEME_U, blk, sizeof blk),
                     HSM_ERR_NOT_PERMITTED);
    /* exportability cannot widen either: S -> E refused, E -> N allowed */
    assert_int_equal(hsm_tr31_export(zmk, zpk, 0, NULL, 'N', blk, sizeof blk), HSM_OK);
    assert_int_equal(blk[11], 'N');
    char se[300];
    lmk_block("D0000P0TB00S0000", "0123456789ABCDEFFEDCBA9876543210", se, sizeof se);
    struct hsm_key *sek = load(HSM_KT_ZPK, se);
    assert_int_equal(hsm_tr31_export(zmk, sek, 0, NULL, 'E', blk, sizeof blk),
                     HSM_ERR_NOT_PERMITTED);
    assert_int_equal(hsm_tr31_export(zmk, sek, 0, NULL, 0, blk, sizeof blk), HSM_OK);
    hsm_key_release(sek);
    hsm_key_release(nek);

    /* an AES ZMK (key block, alg A): version D */
    char azmk[300];
    lmk_block("D0000K0AB00E0000", "000102030405060708090A0B0C0D0E0F", azmk, sizeof azmk);
    struct hsm_key *az = load(HSM_KT_ZMK, azmk);
    assert_int_equal(hsm_tr31_export(az, zpk, 0, NULL, 0, blk, sizeof blk), HSM_OK);
    assert_int_equal(blk[0], 'D');
    assert_int_equal(hsm_tr31_import(g_h, az, HSM_KT_ZPK, blk, strlen(blk), HSM_SCHEME_S, back,
                                     sizeof back, kcv2),
                     HSM_OK);
    assert_memory_equal(kcv, kcv2, 3);
    /* an encrypt-only KBPK cannot unwrap */
    char ezmk[300];
    lmk_block("D0000K0AE00E0000", "000102030405060708090A0B0C0D0E0F", ezmk, sizeof ezmk);
    struct hsm_key *ez = load(HSM_KT_ZMK, ezmk);
    assert_int_equal(hsm_tr31_import(g_h, ez, HSM_KT_ZPK, blk, strlen(blk), HSM_SCHEME_S, back,
                                     sizeof back, kcv2),
                     HSM_ERR_NOT_PERMITTED);
    hsm_key_release(ez);
    hsm_key_release(az);
    hsm_key_release(zpk);
    hsm_key_release(zmk);
}

/* The published version D block (TR-31:2018 A.7.4) imported under its KBPK as an AES ZMK. */
static void test_import_published(void **state)
{
    (void)state;
    char zmk[300], out[300];
    uint8_t kcv[8], want[8], key[16];
    lmk_block("D0000K0AB00E0000",
              "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6", zmk, sizeof zmk);
    struct hsm_key *z = load(HSM_KT_ZMK, zmk);
    const char *blk = "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07"
                      "156A27E8E31DA05F7425509593D03A457DC34";
    assert_int_equal(
        hsm_tr31_import(g_h, z, HSM_KT_ZPK, blk, strlen(blk), HSM_SCHEME_S, out, sizeof out, kcv),
        HSM_OK);
    unhex("3F419E1CB7079442AA37474C2EFBF8B8", key);
    assert_int_equal(hsm_kcv_clear(key, 16, true, want), HSM_OK);
    assert_memory_equal(kcv, want, 3);
    hsm_key_release(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrap_published), cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_header),         cmocka_unit_test(test_lmk_file),
        cmocka_unit_test(test_lmk_keys),       cmocka_unit_test(test_modes),
        cmocka_unit_test(test_import_export),  cmocka_unit_test(test_import_published),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
