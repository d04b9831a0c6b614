/* Unit tests of the hsm-sim protocol layer (no sockets): deframing, header
 * echo, dispatch, error codes for bad input, the field parsers, and the
 * published payShield command/response pairs of payshield.md §11.1 run
 * through hsm_proto_execute() byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hsm.h"
#include "proto.h"
#include "proto_int.h"
#include "test_hex.h"
#include "test_keys.h"

/* TDES of 8 zero bytes under the Thales test LMK pair 00-01 (openssl). */
#define TEST_LMK_KCV "7D22274C5745C5A1"

static struct hsm_proto *mk(unsigned header_len)
{
    struct hsm_proto *p = NULL;
    char err[200];
    struct hsm_proto_config cfg = { .header_len = header_len, .lmk_path = NULL };
    assert_int_equal(hsm_proto_new(&cfg, &p, err, sizeof err), 0);
    return p;
}

/* Runs request (header included) and returns the response as a string. */
static const char *run(struct hsm_proto *p, const char *req, size_t len,
                       struct hsm_proto_result *res)
{
    static char out[HSM_PROTO_FRAME_LIMIT + HSM_PROTO_RESP_SLACK + 1];
    struct hsm_proto_result r;
    size_t n = hsm_proto_execute(p, (const uint8_t *)req, len, (uint8_t *)out, sizeof out - 1,
                                 res ? res : &r);
    out[n] = '\0';
    return out;
}

static const char *runs(struct hsm_proto *p, const char *req)
{
    return run(p, req, strlen(req), NULL);
}

static void test_deframe(void **state)
{
    (void)state;
    size_t len = 0;
    const uint8_t a[] = { 0x00 };
    const uint8_t b[] = { 0x00, 0x03, 'A', 'B' };
    const uint8_t c[] = { 0x00, 0x03, 'A', 'B', 'C', 'D' };
    const uint8_t d[] = { 0x20, 0x01 };
    const uint8_t e[] = { 0x00, 0x00 };
    assert_int_equal(hsm_proto_deframe(a, 0, 100, &len), 0);
    assert_int_equal(hsm_proto_deframe(a, 1, 100, &len), 0);
    assert_int_equal(hsm_proto_deframe(b, sizeof b, 100, &len), 0);
    assert_int_equal(hsm_proto_deframe(c, sizeof c, 100, &len), 1);
    assert_int_equal(len, 3);
    assert_int_equal(hsm_proto_deframe(d, sizeof d, 8192, &len), -1); /* 8193 > max */
    assert_int_equal(hsm_proto_deframe(e, sizeof e, 100, &len), 1);
    assert_int_equal(len, 0);
}

static void test_nc_and_header_echo(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    struct hsm_proto_result res;
    assert_string_equal(hsm_proto_lmk_kcv(p), TEST_LMK_KCV);
    assert_string_equal(run(p, "SSSSNC", 6, &res), "SSSSND00" TEST_LMK_KCV "0007-E000");
    assert_string_equal(res.cmd, "NC");
    assert_string_equal(res.resp, "ND");
    assert_string_equal(res.err, "00");
    /* the header is echoed whatever its bytes */
    assert_string_equal(runs(p, "a\x01zZNC"), "a\x01zZND00" TEST_LMK_KCV "0007-E000");
    assert_string_equal(runs(p, "SSSSNC%00"), "SSSSND00" TEST_LMK_KCV "0007-E000");
    assert_string_equal(runs(p, "SSSSNC%01"), "SSSSND13");
    assert_string_equal(runs(p, "SSSSNCX"), "SSSSND52");
    hsm_proto_free(p);

    p = mk(0);
    assert_string_equal(runs(p, "NC"), "ND00" TEST_LMK_KCV "0007-E000");
    hsm_proto_free(p);
    p = mk(8);
    assert_string_equal(runs(p, "12345678B20002hi"), "12345678B300hi");
    hsm_proto_free(p);
}

static void test_b2_echo(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    /* ut-codec-payshield: header 9999, B2, length 0004, PING */
    assert_string_equal(runs(p, "9999B20004PING"), "9999B300PING");
    assert_string_equal(runs(p, "9999B20000"), "9999B300");
    assert_string_equal(runs(p, "9999B20005PING"), "9999B380"); /* declared 5, sent 4 */
    assert_string_equal(runs(p, "9999B20003PING"), "9999B315"); /* more data than declared */
    assert_string_equal(runs(p, "9999B200G4PING"), "9999B315"); /* not hex */
    assert_string_equal(runs(p, "9999B2"), "9999B315");
    /* binary data is echoed as is */
    assert_memory_equal(run(p, "9999B20003\0\xff\n", 13, NULL), "9999B300\0\xff\n", 11);
    hsm_proto_free(p);
}

static void test_unknown_and_short(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    struct hsm_proto_result res;
    assert_string_equal(run(p, "0001ZQ123", 9, &res), "0001ZZ00");
    assert_string_equal(res.cmd, "ZQ");
    assert_string_equal(res.resp, "ZZ");
    assert_string_equal(runs(p, "0001a0"), "0001ZZ00"); /* lower case is not a command */
    assert_string_equal(runs(p, "0001\x01\x02"), "0001ZZ00");
    /* too short for header + command code: 51, header space-padded */
    assert_string_equal(run(p, "00", 2, &res), "00  ZZ51");
    assert_string_equal(res.err, "51");
    assert_string_equal(run(p, "", 0, NULL), "    ZZ51");
    assert_string_equal(runs(p, "0001N"), "0001ZZ51");
    hsm_proto_free(p);
}

#include "hsm_sim_pairs.inc"

static char resp_code(char c)
{
    return c == '9' ? 'A' : (char)(c + 1);
}

static void test_published_pairs(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    for (size_t i = 0; i < sizeof hsm_sim_pairs / sizeof hsm_sim_pairs[0]; i++) {
        char req[512], want[512];
        snprintf(req, sizeof req, "HDR%zu%s%s", i % 10, hsm_sim_pairs[i].cmd, hsm_sim_pairs[i].req);
        snprintf(want, sizeof want, "HDR%zu%c%c%s", i % 10, hsm_sim_pairs[i].cmd[0],
                 resp_code(hsm_sim_pairs[i].cmd[1]), hsm_sim_pairs[i].resp);
        print_message("%s %s\n", hsm_sim_pairs[i].src, hsm_sim_pairs[i].cmd);
        assert_string_equal(runs(p, req), want);
    }
    hsm_proto_free(p);
}

static void test_bad_fields(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    /* BU: a non-hex key character, a wrong key length flag, an unknown key
     * type code, a scheme letter that is not one, trailing garbage, too short */
    assert_string_equal(runs(p, "0000BU0200406FBB23A5214DZ"), "0000BV15");
    assert_string_equal(runs(p, "0000BU0210406FBB23A5214DF"), "0000BV05");
    assert_string_equal(runs(p, "0000BU7700406FBB23A5214DF"), "0000BV04");
    assert_string_equal(runs(p, "0000BU001Q93CB819F8FEE4F78BF9C4CDD84750DB1"), "0000BV26");
    assert_string_equal(runs(p, "0000BU0200406FBB23A5214DFAB"), "0000BV52");
    /* an explicit 'Z' (single length) prefix is the same key */
    assert_string_equal(runs(p, "0000BU020Z0406FBB23A5214DF"), "0000BV000035BBE340A4B763");
    assert_string_equal(runs(p, "0000BU020"), "0000BV15");
    /* CA: PIN block not hex, bad format code, account not digits, max PIN
     * length out of range */
    assert_string_equal(
        runs(p, "0000CA0406FBB23A5214DFBAB32D775A38E4AB12DC80B186C30902BX0303550000025321"),
        "0000CB15");
    assert_string_equal(
        runs(p, "0000CA0406FBB23A5214DFBAB32D775A38E4AB12DC80B186C30902B09903550000025321"),
        "0000CB23");
    assert_string_equal(
        runs(p, "0000CA0406FBB23A5214DFBAB32D775A38E4AB12DC80B186C30902B0030355000002532A"),
        "0000CB15");
    assert_string_equal(
        runs(p, "0000CA0406FBB23A5214DFBAB32D775A38E4AB03DC80B186C30902B00303550000025321"),
        "0000CB24");
    /* a ZPK where a TPK belongs: key separation (the TPK field under LMK 06-07
     * decrypts to a different key; libhsm refuses by type or parity) */
    const char *r = runs(p, "0000CABAB32D775A38E4AB0406FBB23A5214DF12DC80B186C30902B00303"
                            "550000025321");
    assert_true(strncmp(r, "0000CB00", 8) != 0);
    /* A6 with an unknown key type */
    assert_string_equal(runs(p, "0000A6ZZZ4ED06495741C280C35ED0C0EA7F7D0FAZ"), "0000A704");
    /* A0 bad mode / bad scheme */
    assert_string_equal(runs(p, "0000A07001U"), "0000A115");
    assert_string_equal(runs(p, "0000A00001Q"), "0000A126");
    hsm_proto_free(p);
}

static void test_a0_generates_usable_keys(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    char req[256], key[64];
    const char *r = runs(p, "0000A00002U");
    /* A100 ‖ U + 32H ‖ KCV 6H */
    assert_int_equal(strlen(r), 8 + 33 + 6);
    assert_memory_equal(r, "0000A100U", 9);
    memcpy(key, r + 8, 33);
    key[33] = '\0';
    char kcv[7];
    memcpy(kcv, r + 8 + 33, 6);
    kcv[6] = '\0';
    /* BU of the generated TPK gives the same KCV */
    snprintf(req, sizeof req, "0000BU021%s", key);
    r = runs(p, req);
    assert_memory_equal(r, "0000BV00", 8);
    assert_memory_equal(r + 8, kcv, 6);
    /* mode 1: also under the ZMK of the A6 vector (single length 4ED06495741C280C) */
    r = runs(p, "0000A01001U4ED06495741C280CX");
    assert_memory_equal(r, "0000A100U", 9);
    assert_int_equal(strlen(r), 8 + 33 + 33 + 6);
    assert_int_equal(r[8 + 33], 'X');
    /* a double-length key cannot travel as a single-length (Z) one: 27 */
    assert_string_equal(runs(p, "0000A01001U4ED06495741C280CZ"), "0000A127");
    /* ';1': under a TMK (terminal key download, docs/keys.md); a ZMK is not one (its text does
     * not decrypt to a key of odd parity under the TMK's LMK pair): 10 */
    assert_string_equal(runs(p, "0000A01001U;14ED06495741C280CX"), "0000A110");
    r = runs(p, "0000A00002U"); /* a TMK */
    assert_memory_equal(r, "0000A100U", 9);
    char tmk[34];
    memcpy(tmk, r + 8, 33);
    tmk[33] = '\0';
    snprintf(req, sizeof req, "0000A01003U;1%sU", tmk); /* a TAK under it */
    r = runs(p, req);
    assert_memory_equal(r, "0000A100U", 9);
    assert_int_equal(strlen(r), 8 + 33 + 33 + 6);
    assert_int_equal(r[8 + 33], 'U');
    hsm_proto_free(p);
}

static void test_cursor(void **state)
{
    (void)state;
    struct hsm_keyf k;
    const char *s;
    size_t n;
    unsigned v;
    struct hsm_cur c = { .p = "U0123456789ABCDEF0123456789ABCDEF0123456789abcdefT", .n = 50 };
    assert_int_equal(hsm_cur_key(&c, HSM_KEY_ANY, &k), 0);
    assert_int_equal(k.scheme, 'U');
    assert_int_equal(k.hexlen, 32);
    assert_int_equal(hsm_cur_key(&c, HSM_KEY_ANY, &k), 0); /* unprefixed: 16H */
    assert_int_equal(k.scheme, 0);
    assert_int_equal(k.hexlen, 16);
    assert_int_equal(hsm_cur_key(&c, HSM_KEY_ANY, &k), HSM_E_INPUT); /* T needs 48H */
    assert_int_equal(c.off, 49);

    struct hsm_cur c2 = { .p = "0123456789ABCDEF0123456789ABCDEF", .n = 32 };
    assert_int_equal(hsm_cur_key(&c2, HSM_KEY_PAIR, &k), 0);
    assert_int_equal(k.hexlen, 32);
    assert_int_equal(hsm_cur_end(&c2), 0);

    struct hsm_cur c3 = { .p = "4123;8701x", .n = 10 };
    assert_int_equal(hsm_cur_digits_until(&c3, ';', 1, 19, &s, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(hsm_cur_num(&c3, 4, &v), 0);
    assert_int_equal(v, 8701);
    assert_int_equal(hsm_cur_end(&c3), HSM_E_NFIELDS);
    struct hsm_cur c4 = { .p = "41a3;", .n = 5 };
    assert_int_equal(hsm_cur_digits_until(&c4, ';', 1, 19, &s, &n), HSM_E_INPUT);
    struct hsm_cur c5 = { .p = "4123", .n = 4 };
    assert_int_equal(hsm_cur_digits_until(&c5, ';', 1, 19, &s, &n), HSM_E_INPUT);
    struct hsm_cur c6 = { .p = "0aF", .n = 3 };
    assert_int_equal(hsm_cur_hexnum(&c6, 3, &v), 0);
    assert_int_equal(v, 0xaf);
    assert_int_equal(hsm_cur_take(&c6, 1, &s), HSM_E_INPUT);
}

static void test_output_never_overflows(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    /* the largest echo the cap allows; cap checks are per byte */
    static char req[4 + 2 + 4 + 60000];
    memcpy(req, "0000B2EA60", 10);
    memset(req + 10, 'x', 60000);
    static uint8_t out[60000 + 8 + HSM_PROTO_RESP_SLACK];
    struct hsm_proto_result res;
    size_t n = hsm_proto_execute(p, (uint8_t *)req, sizeof req, out, sizeof out, &res);
    assert_int_equal(n, 8 + 60000);
    assert_memory_equal(out, "0000B300", 8);
    hsm_proto_free(p);
}

/* ---- every command with keys prepared by libhsm (the library's own vectors
 * are tested in test_hsm; here the command layouts and the wiring) ---- */

static struct hsm *g_h;

/* The clear key (hex) of type written under the test LMK in scheme. */
static const char *under_lmk(enum hsm_keytype t, const char *clear_hex, enum hsm_scheme scheme,
                             char out[64])
{
    struct hsm_key *k = ck(t, clear_hex);
    assert_int_equal(hsm_key_to_lmk(g_h, k, scheme, out, 64), 0);
    hsm_key_release(k);
    return out;
}

#define ZPK_CLEAR "1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C"
#define KEY_0123  "0123456789ABCDEFFEDCBA9876543210"

static void test_dukpt_commands(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    char bdk[64], zpk[64], abdk[64], req[512], want[512];
    assert_int_equal(hsm_new(&g_h, 0), 0);
    under_lmk(HSM_KT_BDK, KEY_0123, HSM_SCHEME_U, bdk);
    under_lmk(HSM_KT_ZPK, ZPK_CLEAR, HSM_SCHEME_U, zpk);
    /* X9.24-1 A.4 KSN E00001, PIN 1234 / PAN 4012345678909 → payshield.md CI walk-through */
    snprintf(req, sizeof req, "0000CI%s%s605FFFF9876543210E000011B9C1845EB993A7A01401234567890",
             bdk, zpk);
    assert_string_equal(runs(p, req), "0000CJ00047D26134E85E7DADF01");
    snprintf(req, sizeof req, "0000G0%s%s605FFFF9876543210E000011B9C1845EB993A7A0101401234567890",
             bdk, zpk);
    assert_string_equal(runs(p, req), "0000G100047D26134E85E7DADF01");
    /* a wrong KSN gives a PIN block that does not decode */
    snprintf(req, sizeof req, "0000G0%s%s605FFFF9876543210E000021B9C1845EB993A7A0101401234567890",
             bdk, zpk);
    assert_string_not_equal(runs(p, req), "0000G100047D26134E85E7DADF01");
    /* a ZPK in the BDK field: key separation */
    snprintf(req, sizeof req, "0000CI%s%s605FFFF9876543210E000011B9C1845EB993A7A01401234567890",
             zpk, zpk);
    assert_memory_not_equal(runs(p, req), "0000CJ00", 8);

    /* X9.24-3 AES-128 supplement, counter 1: PIN 1234, PAN 4111111111111111 */
    under_lmk(HSM_KT_BDK_AES, "FEDCBA9876543210F1F1F1F1F1F1F1F1", HSM_SCHEME_A, abdk);
    struct hsm_key *zk = ck(HSM_KT_ZPK, ZPK_CLEAR);
    uint8_t blk[16];
    size_t blen;
    char blkhex[40];
    assert_int_equal(hsm_pin_encrypt(zk, HSM_PINFMT_ISO0, "1234", "4111111111111111", blk, &blen),
                     0);
    tohex(blk, blen, blkhex);
    hsm_key_release(zk);
    snprintf(
        req, sizeof req,
        "0000X0%s%s123456789012345600000001A912150391AB65A67E52883D81CE2D1501164111111111111111",
        abdk, zpk);
    snprintf(want, sizeof want, "0000X10004%s01", blkhex);
    assert_string_equal(runs(p, req), want);
    /* counter 2's block under counter 1's KSN is refused */
    snprintf(
        req, sizeof req,
        "0000X0%s%s12345678901234560000000152A00503BD34BA1383F6A7EE9FE2547F01164111111111111111",
        abdk, zpk);
    assert_memory_not_equal(runs(p, req), "0000X100", 8);
    hsm_free(g_h);
    hsm_proto_free(p);
}

static void test_pin_verify_commands(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    char zpk[64], tpk[64], pvk[64], req[512], blkhex[40];
    uint8_t blk[16];
    size_t blen;
    assert_int_equal(hsm_new(&g_h, 0), 0);
    under_lmk(HSM_KT_ZPK, ZPK_CLEAR, HSM_SCHEME_U, zpk);
    under_lmk(HSM_KT_TPK, "0B681FC20E62C7340B681FC20E62C734", HSM_SCHEME_X, tpk);
    under_lmk(HSM_KT_PVK, KEY_0123, HSM_SCHEME_U, pvk);
    /* Visa PVV vector: PAN 1122334455667788, PVKI 1, PIN 4524 → PVV 8523 */
    struct hsm_key *zk = ck(HSM_KT_ZPK, ZPK_CLEAR);
    assert_int_equal(hsm_pin_encrypt(zk, HSM_PINFMT_ISO0, "4524", "233445566778", blk, &blen), 0);
    hsm_key_release(zk);
    tohex(blk, blen, blkhex);
    snprintf(req, sizeof req, "0000EC%s%s%s0123344556677818523", zpk, pvk, blkhex);
    assert_string_equal(runs(p, req), "0000ED00");
    snprintf(req, sizeof req, "0000EC%s%s%s0123344556677818524", zpk, pvk, blkhex);
    assert_string_equal(runs(p, req), "0000ED01");
    snprintf(req, sizeof req, "0000EC%s%s%s0123344556677828523", zpk, pvk, blkhex);
    assert_string_equal(runs(p, req), "0000ED01"); /* other PVKI */
    /* the same block under a TPK for DC */
    struct hsm_key *tk = ck(HSM_KT_TPK, "0B681FC20E62C7340B681FC20E62C734");
    assert_int_equal(hsm_pin_encrypt(tk, HSM_PINFMT_ISO0, "4524", "233445566778", blk, &blen), 0);
    tohex(blk, blen, blkhex);
    snprintf(req, sizeof req, "0000DC%s%s%s0123344556677818523", tpk, pvk, blkhex);
    assert_string_equal(runs(p, req), "0000DD00");

    /* IBM 3624 offset: offset computed by libhsm for PIN 1234, verified by DA / EA */
    struct hsm_key *pk = ck(HSM_KT_PVK, KEY_0123);
    char vdata[17], offset[13], off12[13];
    assert_int_equal(hsm_ibm_vdata("55000002N321", "550000025321", vdata), 0);
    assert_int_equal(hsm_ibm_offset(pk, "1234", "0123456789012345", vdata, offset), 0);
    hsm_key_release(pk);
    assert_int_equal(strlen(offset), 4);
    memcpy(off12, offset, 4);
    memcpy(off12 + 4, "FFFFFFFF", 9);
    assert_int_equal(hsm_pin_encrypt(tk, HSM_PINFMT_ISO0, "1234", "550000025321", blk, &blen), 0);
    hsm_key_release(tk);
    tohex(blk, blen, blkhex);
    snprintf(req, sizeof req, "0000DA%s%s12%s0104550000025321012345678901234555000002N321%s", tpk,
             pvk, blkhex, off12);
    assert_string_equal(runs(p, req), "0000DB00");
    off12[0] = off12[0] == '9' ? '0' : (char)(off12[0] + 1);
    snprintf(req, sizeof req, "0000DA%s%s12%s0104550000025321012345678901234555000002N321%s", tpk,
             pvk, blkhex, off12);
    assert_string_equal(runs(p, req), "0000DB01");
    /* a bad decimalisation table */
    snprintf(req, sizeof req, "0000EA%s%s12%s0104550000025321A12345678901234555000002N321%s", zpk,
             pvk, blkhex, off12);
    assert_memory_not_equal(runs(p, req), "0000EB0", 7);
    hsm_free(g_h);
    hsm_proto_free(p);
}

static void test_cvv_mac_cc(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    char cvk[64], zpk[64], zpk2[64], req[512], want[256];
    assert_int_equal(hsm_new(&g_h, 0), 0);
    under_lmk(HSM_KT_CVK, KEY_0123, HSM_SCHEME_U, cvk);
    snprintf(req, sizeof req, "0000CY%s5614123456789012345;8701101", cvk);
    assert_string_equal(runs(p, req), "0000CZ00");
    snprintf(req, sizeof req, "0000CY%s5624123456789012345;8701101", cvk);
    assert_string_equal(runs(p, req), "0000CZ01");
    snprintf(req, sizeof req, "0000CW%s4999988887777;9105111", cvk);
    assert_string_equal(runs(p, req), "0000CX00649");
    snprintf(req, sizeof req, "0000CW%s4999988887777;910511", cvk);
    assert_string_equal(runs(p, req), "0000CX15");

    /* M8 on the published M6 pair */
    const char *m =
        "01032003U19D25F349FD03CC3556BB05F65283CA1004072C29C2371CC9BDB65B779B8E8D37B29ECC1"
        "54AA56A8799FAE2F498F76ED92F2";
    snprintf(req, sizeof req, "0000M8%s5F1448EE", m);
    assert_string_equal(runs(p, req), "0000M900");
    snprintf(req, sizeof req, "0000M8%s5F1448EF", m);
    assert_string_equal(runs(p, req), "0000M901");
    snprintf(req, sizeof req, "0000M8%s5F1448", m);
    assert_string_equal(runs(p, req), "0000M980");
    /* text input, 16H MAC, a ZPK where a TAK belongs */
    assert_memory_equal(runs(p, "0000M602131003U19D25F349FD03CC3556BB05F65283CA10005hello"),
                        "0000M7000016", 12);
    assert_string_equal(runs(p, "0000M602031001U19D25F349FD03CC3556BB05F65283CA10005hello"),
                        "0000M704");

    /* CC: ZPK → ZPK with a format change, checked by translating back */
    under_lmk(HSM_KT_ZPK, ZPK_CLEAR, HSM_SCHEME_U, zpk);
    under_lmk(HSM_KT_ZPK, "0B681FC20E62C7340B681FC20E62C734", HSM_SCHEME_U, zpk2);
    struct hsm_key *zk = ck(HSM_KT_ZPK, ZPK_CLEAR);
    uint8_t blk[16];
    size_t blen;
    char blkhex[40];
    assert_int_equal(hsm_pin_encrypt(zk, HSM_PINFMT_ISO0, "98765", "550000025321", blk, &blen), 0);
    hsm_key_release(zk);
    tohex(blk, blen, blkhex);
    snprintf(req, sizeof req, "0000CC%s%s12%s0103550000025321", zpk, zpk2, blkhex);
    const char *r = runs(p, req);
    assert_memory_equal(r, "0000CD0005", 10);
    char mid[17];
    memcpy(mid, r + 10, 16);
    mid[16] = '\0';
    assert_string_equal(r + 26, "03");
    snprintf(req, sizeof req, "0000CC%s%s12%s0301550000025321", zpk2, zpk, mid);
    snprintf(want, sizeof want, "0000CD0005%s01", blkhex);
    assert_string_equal(runs(p, req), want);
    /* max PIN length 04 refuses the 5-digit PIN */
    snprintf(req, sizeof req, "0000CC%s%s04%s0103550000025321", zpk, zpk2, blkhex);
    assert_string_equal(runs(p, req), "0000CD24");
    hsm_free(g_h);
    hsm_proto_free(p);
}

/* KQ's padding flag ('#' 1N, hsm-sim option): pyemv's published Visa CVN 10 ARQC (zero padding,
 * the ICC MK itself; tests/vectors/emv_cvn.txt) verifies with '#1' and not without, and its ARPC
 * (ARC "00") is the published one. */
static void test_kq_padding_flag(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    char imk[64];
    uint8_t data[64];
    assert_int_equal(hsm_new(&g_h, 0), 0);
    under_lmk(HSM_KT_MK_AC, KEY_0123, HSM_SCHEME_U, imk);
    size_t dlen =
        unhex("0000000040000000000000000124800004800001241911050152BF45851800001C03A06010", data);
    uint8_t req[256], arqc[8], arpc[8];
    size_t n = 0;
    unhex("29CCA15AE665FA2E", arqc);
    unhex("28993816AFAE4AEB", arpc);
    memcpy(req, "0000KQ10", 8);
    n = 8;
    memcpy(req + n, imk, 33);
    n += 33;
    const uint8_t panpsn[8] = { 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56, 0x00 };
    memcpy(req + n, panpsn, 8);
    n += 8;
    req[n++] = 0x00;
    req[n++] = 0x1C;
    memcpy(req + n, "\x52\xBF\x45\x85", 4);
    n += 4;
    char ll[3];
    snprintf(ll, sizeof ll, "%02zX", dlen);
    memcpy(req + n, ll, 2);
    n += 2;
    memcpy(req + n, data, dlen);
    n += dlen;
    req[n++] = ';';
    memcpy(req + n, arqc, 8);
    n += 8;
    memcpy(req + n, "00", 2);
    n += 2;
    /* default padding (80 00..): the CVN 10 ARQC does not verify */
    assert_string_equal(run(p, (const char *)req, n, NULL), "0000KR01");
    memcpy(req + n, "#1", 2);
    const char *out = run(p, (const char *)req, n + 2, NULL);
    assert_memory_equal(out, "0000KR00", 8);
    assert_memory_equal(out + 8, arpc, 8);
    /* '#2' is the default, any other flag 15 */
    memcpy(req + n, "#2", 2);
    assert_string_equal(run(p, (const char *)req, n + 2, NULL), "0000KR01");
    memcpy(req + n, "#3", 2);
    assert_string_equal(run(p, (const char *)req, n + 2, NULL), "0000KR15");
    /* mode 0 with the flag and no ARC */
    req[6] = '0';
    memcpy(req + n - 2, "#1", 2);
    assert_string_equal(run(p, (const char *)req, n, NULL), "0000KR00");
    hsm_free(g_h);
    hsm_proto_free(p);
}

static void test_kq(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    char imk[64];
    uint8_t arqc[8], arpc[8], r[8] = { 0x00, 0x1C };
    const uint8_t data[16] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                               0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF };
    const uint8_t arc[2] = { '0', '0' };
    assert_int_equal(hsm_new(&g_h, 0), 0);
    under_lmk(HSM_KT_MK_AC, KEY_0123, HSM_SCHEME_U, imk);
    struct hsm_key *k = ck(HSM_KT_MK_AC, KEY_0123);
    assert_int_equal(hsm_emv_arqc_generate(k, "12345678901234567", "00", HSM_EMV_SKD_COMMON, r,
                                           data, sizeof data, arqc),
                     0);
    assert_int_equal(
        hsm_emv_arpc1(k, "12345678901234567", "00", HSM_EMV_SKD_COMMON, r, arqc, arc, arpc), 0);
    hsm_key_release(k);
    /* mode 1, scheme 2 ‖ MK-AC ‖ PAN/PSN 4567890123456700 ‖ ATC 001C ‖ UN ‖ len 10 ‖ data ‖ ; ‖
     * ARQC ‖ ARC */
    uint8_t req[256];
    size_t n = 0;
    memcpy(req, "0000KQ12", 8);
    n = 8;
    memcpy(req + n, imk, 33);
    n += 33;
    const uint8_t panpsn[8] = { 0x45, 0x67, 0x89, 0x01, 0x23, 0x45, 0x67, 0x00 };
    memcpy(req + n, panpsn, 8);
    n += 8;
    req[n++] = 0x00;
    req[n++] = 0x1C;
    memcpy(req + n, "\x11\x22\x33\x44", 4);
    n += 4;
    memcpy(req + n, "10", 2);
    n += 2;
    memcpy(req + n, data, 16);
    n += 16;
    req[n++] = ';';
    memcpy(req + n, arqc, 8);
    n += 8;
    memcpy(req + n, arc, 2);
    n += 2;
    struct hsm_proto_result res;
    const char *out = run(p, (const char *)req, n, &res);
    assert_memory_equal(out, "0000KR00", 8);
    assert_memory_equal(out + 8, arpc, 8);
    /* a flipped ARQC bit: 01 and no ARPC */
    req[n - 3] ^= 1;
    assert_string_equal(run(p, (const char *)req, n, NULL), "0000KR01");
    /* mode 0 verifies only: no ARPC; the ARC may be present or not */
    req[6] = '0';
    req[n - 3] ^= 1;
    assert_string_equal(run(p, (const char *)req, n, NULL), "0000KR00");
    assert_string_equal(run(p, (const char *)req, n - 2, NULL), "0000KR00");
    req[n - 3] ^= 1;
    /* mode 2 (ARPC only) does not verify */
    req[6] = '2';
    out = run(p, (const char *)req, n, NULL);
    assert_memory_equal(out, "0000KR00", 8);
    /* scheme 1 (MasterCard SKD): R = ATC ‖ 00 00 ‖ UN */
    {
        uint8_t r1[8] = { 0x00, 0x1C, 0, 0, 0x11, 0x22, 0x33, 0x44 }, arqc1[8], arpc1[8];
        struct hsm_key *k1 = ck(HSM_KT_MK_AC, KEY_0123);
        assert_int_equal(hsm_emv_arqc_generate(k1, "12345678901234567", "00", HSM_EMV_SKD_COMMON,
                                               r1, data, sizeof data, arqc1),
                         0);
        assert_int_equal(
            hsm_emv_arpc1(k1, "12345678901234567", "00", HSM_EMV_SKD_COMMON, r1, arqc1, arc, arpc1),
            0);
        hsm_key_release(k1);
        uint8_t req1[256];
        memcpy(req1, req, n);
        req1[6] = '1';
        req1[7] = '1';
        memcpy(req1 + n - 10, arqc1, 8);
        out = run(p, (const char *)req1, n, NULL);
        assert_memory_equal(out, "0000KR00", 8);
        assert_memory_equal(out + 8, arpc1, 8);
        /* the scheme-2 (R = ATC ‖ 00×6) ARQC does not verify under scheme 1 */
        memcpy(req1 + n - 10, arqc, 8);
        assert_string_equal(run(p, (const char *)req1, n, NULL), "0000KR01");
        req1[7] = '3';
        assert_string_equal(run(p, (const char *)req1, n, NULL), "0000KR15");
    }
    /* a PAN/PSN that is not BCD */
    req[6] = '1';
    req[8 + 33] = 0x4A;
    assert_string_equal(run(p, (const char *)req, n, NULL), "0000KR22");
    hsm_free(g_h);
    hsm_proto_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deframe),
        cmocka_unit_test(test_nc_and_header_echo),
        cmocka_unit_test(test_b2_echo),
        cmocka_unit_test(test_unknown_and_short),
        cmocka_unit_test(test_published_pairs),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_a0_generates_usable_keys),
        cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_output_never_overflows),
        cmocka_unit_test(test_dukpt_commands),
        cmocka_unit_test(test_pin_verify_commands),
        cmocka_unit_test(test_cvv_mac_cc),
        cmocka_unit_test(test_kq),
        cmocka_unit_test(test_kq_padding_flag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
