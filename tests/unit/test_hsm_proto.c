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

#include "proto.h"
#include "proto_int.h"

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
    assert_string_equal(runs(p, "9999B20003PING"), "9999B380");
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

/* payshield.md §11.1 (ThalesCore HostCommandTests, Thales test LMK). */
static const struct {
    const char *cmd, *req, *resp;
} published[] = {
    { "BU", "0200406FBB23A5214DF", "000035BBE340A4B763" },
    { "BU", "001U93CB819F8FEE4F78BF9C4CDD84750DB1", "00B70AD25C94548822" },
    { "A6", "0024ED06495741C280C35ED0C0EA7F7D0FAZ", "000406FBB23A5214DF0035BB" },
    { "CA", "0406FBB23A5214DFBAB32D775A38E4AB12DC80B186C30902B00303550000025321",
      "0004F7808F2CBEC6316803" },
    { "CA",
      "U8463435FC4B4DAA0C49025272C29B12CU1EF828AA8F6B80EB83E19FBC373F3A85126428EB94035AF53B01"
      "01550000025321",
      "000491DDDA0A7C12CFAA01" },
    { "CW", "U9B4934384B19946B040CD702B4D581454123456789012345;8701101", "00561" },
    { "DC", "0406FBB23A5214DFX367930344805B1FAD6146EF4ED7502B3AE7A708F877571A90155000002532114402",
      "00" },
    { "M6",
      "01032003U19D25F349FD03CC3556BB05F65283CA1004072C29C2371CC9BDB65B779B8E8D37B29ECC154AA56A8"
      "799FAE2F498F76ED92F2",
      "0000085F1448EE" },
};

static char resp_code(char c)
{
    return c == '9' ? 'A' : (char)(c + 1);
}

static void test_published_pairs(void **state)
{
    (void)state;
    struct hsm_proto *p = mk(4);
    for (size_t i = 0; i < sizeof published / sizeof published[0]; i++) {
        char req[512], want[512];
        snprintf(req, sizeof req, "HDR%zu%s%s", i % 10, published[i].cmd, published[i].req);
        snprintf(want, sizeof want, "HDR%zu%c%c%s", i % 10, published[i].cmd[0],
                 resp_code(published[i].cmd[1]), published[i].resp);
        print_message("%s\n", published[i].cmd);
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
    /* a TMK-encrypted export is not simulated */
    assert_string_equal(runs(p, "0000A01001U;14ED06495741C280CX"), "0000A129");
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
