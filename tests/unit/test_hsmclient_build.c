/* Unit tests of the HSM client's command builders and answer parsers: exact bytes for the
 * published CA/DC/M6 layouts, refusal of fields with the wrong shape, and the answers switchd
 * and issuer-sim read (CB, G1, X1, M7, M9). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hsmclient.h"

static void test_account12(void **state)
{
    (void)state;
    char a[13];
    assert_int_equal(hsm_client_account12("4012345678909", a), 0);
    assert_string_equal(a, "401234567890");
    assert_int_equal(hsm_client_account12("5555555551234567", a), 0);
    assert_string_equal(a, "555555123456");
    assert_int_equal(hsm_client_account12("401234567890", a), -1); /* 12 digits */
    assert_int_equal(hsm_client_account12("40123456789O9", a), -1);
}

static void test_ca_matches_published_layout(void **state)
{
    (void)state;
    char buf[256];
    int n = hsm_client_build_ca(buf, sizeof buf, "0406FBB23A5214DF", "BAB32D775A38E4AB",
                                "DC80B186C30902B0", "03", "03", "550000025321");
    assert_int_equal(n, 68);
    assert_memory_equal(buf, "CA0406FBB23A5214DFBAB32D775A38E4AB12DC80B186C30902B00303550000025321",
                        68);
    n = hsm_client_build_cc(buf, sizeof buf, "U8463435FC4B4DAA0C49025272C29B12C",
                            "U1EF828AA8F6B80EB83E19FBC373F3A85", "6428EB94035AF53B", "01", "01",
                            "550000025321");
    assert_int_equal(n, 2 + 33 + 33 + 2 + 16 + 2 + 2 + 12);
    /* refusals: short PIN block, lowercase-free scheme, bad account, tiny buffer */
    assert_int_equal(hsm_client_build_ca(buf, sizeof buf, "0406FBB23A5214DF", "BAB32D775A38E4AB",
                                         "DC80B186C30902B", "03", "03", "550000025321"),
                     -1);
    assert_int_equal(hsm_client_build_ca(buf, sizeof buf, "Q406FBB23A5214DF0406FBB23A5214DF0",
                                         "BAB32D775A38E4AB", "DC80B186C30902B0", "03", "03",
                                         "550000025321"),
                     -1);
    assert_int_equal(hsm_client_build_ca(buf, sizeof buf, "0406FBB23A5214DF", "BAB32D775A38E4AB",
                                         "DC80B186C30902B0", "03", "03", "55000002532X"),
                     -1);
    assert_int_equal(hsm_client_build_ca(buf, 20, "0406FBB23A5214DF", "BAB32D775A38E4AB",
                                         "DC80B186C30902B0", "03", "03", "550000025321"),
                     -1);
}

static void test_dc_and_dukpt(void **state)
{
    (void)state;
    char buf[256];
    int n = hsm_client_build_pvv_verify(buf, sizeof buf, false, "0406FBB23A5214DF",
                                        "X367930344805B1FAD6146EF4ED7502B3", "AE7A708F877571A9",
                                        "01", "550000025321", 1, "4402");
    const char *want =
        "DC0406FBB23A5214DFX367930344805B1FAD6146EF4ED7502B3AE7A708F877571A90155000002532114402";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(buf, want, strlen(want));
    assert_int_equal(hsm_client_build_pvv_verify(buf, sizeof buf, true, "0406FBB23A5214DF",
                                                 "X367930344805B1FAD6146EF4ED7502B3",
                                                 "AE7A708F877571A9", "01", "550000025321", 10,
                                                 "4402"),
                     -1);
    n = hsm_client_build_dukpt(buf, sizeof buf, true, "U0123456789ABCDEF0123456789ABCDEF",
                               "BAB32D775A38E4AB", "FFFF9876543210E00001", "1B9C1845EB993A7A", "01",
                               "401234567890");
    want = "G0U0123456789ABCDEF0123456789ABCDEFBAB32D775A38E4AB605FFFF9876543210E000011B9C1845EB9"
           "93A7A0101401234567890";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(buf, want, strlen(want));
    n = hsm_client_build_x0(buf, sizeof buf, "A0123456789ABCDEF0123456789ABCDEF",
                            "BAB32D775A38E4AB", "123456789012345600000001",
                            "A912150391AB65A67E52883D81CE2D15", "01", "4111111111111111");
    assert_int_equal(n, 2 + 33 + 16 + 24 + 32 + 2 + 2 + 16);
    assert_memory_equal(buf + n - 20, "01164111111111111111", 20);
}

static void test_mac_and_ibm(void **state)
{
    (void)state;
    char buf[256];
    const uint8_t data[] = { 0x72, 0xC2, 0x9C, 0x23 };
    int n = hsm_client_build_m6(buf, sizeof buf, "003", "U19D25F349FD03CC3556BB05F65283CA1", data,
                                sizeof data);
    const char *want = "M600131003U19D25F349FD03CC3556BB05F65283CA10004\x72\xC2\x9C\x23";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(buf, want, strlen(want));
    n = hsm_client_build_m8(buf, sizeof buf, "008", "U19D25F349FD03CC3556BB05F65283CA1", data,
                            sizeof data, "5F1448EEA8AD90A7");
    assert_int_equal(n, (int)strlen(want) + 16);
    assert_memory_equal(buf + n - 16, "5F1448EEA8AD90A7", 16);
    assert_int_equal(hsm_client_build_m8(buf, sizeof buf, "008",
                                         "U19D25F349FD03CC3556BB05F65283CA1", data, sizeof data,
                                         "5F1448EE"),
                     -1); /* an 8H MAC is not ours */
    assert_int_equal(hsm_client_build_m6(buf, sizeof buf, "001",
                                         "U19D25F349FD03CC3556BB05F65283CA1", data, sizeof data),
                     -1);
    /* The daemons' form: the MAC they hold as 8 bytes; M6 without one, M8 with it in hex. */
    char buf2[256];
    static const uint8_t raw[8] = { 0x5F, 0x14, 0x48, 0xEE, 0xA8, 0xAD, 0x90, 0xA7 };
    n = hsm_client_build_mac(buf2, sizeof buf2, "008", "U19D25F349FD03CC3556BB05F65283CA1", data,
                             sizeof data, raw);
    assert_int_equal(n, hsm_client_build_m8(buf, sizeof buf, "008",
                                            "U19D25F349FD03CC3556BB05F65283CA1", data, sizeof data,
                                            "5F1448EEA8AD90A7"));
    assert_memory_equal(buf2, buf, (size_t)n);
    n = hsm_client_build_mac(buf2, sizeof buf2, "003", "U19D25F349FD03CC3556BB05F65283CA1", data,
                             sizeof data, NULL);
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(buf2, want, strlen(want));
    assert_int_equal(hsm_client_build_mac(buf2, sizeof buf2, "009",
                                          "U19D25F349FD03CC3556BB05F65283CA1", data, sizeof data,
                                          raw),
                     -1);
    n = hsm_client_build_ibm_verify(buf, sizeof buf, true, "BAB32D775A38E4AB", "0123456789ABCDEF",
                                    "DC80B186C30902B0", "01", 4, "550000025321", "0123456789012345",
                                    "55000002N321", "7710");
    want = "EABAB32D775A38E4AB0123456789ABCDEF12DC80B186C30902B00104550000025321012345678901234555"
           "000002N3217710FFFFFFFF";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(buf, want, strlen(want));
}

static void test_answer_parsers(void **state)
{
    (void)state;
    char blk[17], fmt[3], mac[17];
    const char *cb = "CB0004F7808F2CBEC6316803";
    assert_int_equal(hsm_client_resp_error("CA", cb, strlen(cb)), 0);
    assert_int_equal(hsm_client_resp_error("CC", cb, strlen(cb)), -1); /* CD expected */
    assert_int_equal(hsm_client_resp_error("CA", "CB24", 4), 24);
    assert_int_equal(hsm_client_resp_error("CA", "ZZ00", 4), -1);
    assert_int_equal(hsm_client_resp_error("CA", "CB0", 3), -1);
    assert_int_equal(hsm_client_resp_error("B9", "BA00", 4), 0);
    assert_int_equal(hsm_client_parse_pin("CA", cb, strlen(cb), blk, fmt), 4);
    assert_string_equal(blk, "F7808F2CBEC63168");
    assert_string_equal(fmt, "03");
    assert_int_equal(hsm_client_parse_pin("CA", "CB01", 4, blk, fmt), -1);
    assert_int_equal(hsm_client_parse_pin("CA", "CB0099F7808F2CBEC6316803", 24, blk, fmt), -1);
    assert_int_equal(hsm_client_parse_mac("M7000008"
                                          "5F1448EE",
                                          16, mac),
                     8);
    assert_string_equal(mac, "5F1448EE");
    assert_int_equal(hsm_client_parse_mac("M7000008"
                                          "5F1448E",
                                          15, mac),
                     -1);
    assert_int_equal(hsm_client_parse_mac("M715", 4, mac), -1);

    /* The full MAC as bytes: 16H only. */
    uint8_t m8[8];
    static const uint8_t want8[8] = { 0x5F, 0x14, 0x48, 0xEE, 0xA8, 0xAD, 0x90, 0xA7 };
    const char *m7 = "M7000016"
                     "5F1448EEA8AD90A7";
    assert_int_equal(hsm_client_parse_mac8(m7, strlen(m7), m8), 0);
    assert_memory_equal(m8, want8, 8);
    assert_int_equal(hsm_client_parse_mac8("M7000008"
                                           "5F1448EE",
                                           16, m8),
                     -1);
    assert_int_equal(hsm_client_parse_mac8("M7000016"
                                           "5F1448EEA8AD90AZ",
                                           24, m8),
                     -1);
    assert_int_equal(hsm_client_parse_mac8("M710", 4, m8), -1);
    assert_int_equal(hsm_client_parse_mac8("M9000016"
                                           "5F1448EEA8AD90A7",
                                           24, m8),
                     -1);

    /* The answers switchd reads: M9 (MAC verified or not), G1 and X1 (DUKPT PIN translations). */
    assert_int_equal(hsm_client_resp_error("M8", "M900", 4), 0);
    assert_int_equal(hsm_client_resp_error("M8", "M901", 4), 1);
    assert_int_equal(hsm_client_resp_error("M8", "M701", 4), -1);
    const char *g1 = "G10004F7808F2CBEC6316801";
    assert_int_equal(hsm_client_parse_pin("G0", g1, strlen(g1), blk, fmt), 4);
    assert_string_equal(blk, "F7808F2CBEC63168");
    assert_int_equal(hsm_client_resp_error("G0", "G120", 4), 20);
    const char *x1 = "X10006F7808F2CBEC6316801";
    assert_int_equal(hsm_client_parse_pin("X0", x1, strlen(x1), blk, fmt), 6);
    assert_int_equal(hsm_client_parse_pin("X0", cb, strlen(cb), blk, fmt), -1); /* a CB */
    assert_int_equal(hsm_client_parse_pin("CA", "CB0004F7808F2CBEC631680", 23, blk, fmt), -1);
}

/* CY (CVV2: service code 000) and KQ (the layout hsm-sim's test_kq_padding_flag sends, with the
 * '#' padding flag only when it is not the default). */
static void test_cy_and_kq(void **state)
{
    (void)state;
    char buf[512];
    int n = hsm_client_build_cy(buf, sizeof buf, "U0123456789ABCDEF0123456789ABCDEF", "636",
                                "4123456789012345", "8701", "000");
    assert_int_equal(n, 2 + 33 + 3 + 16 + 1 + 4 + 3);
    assert_memory_equal(buf, "CYU0123456789ABCDEF0123456789ABCDEF6364123456789012345;8701000",
                        (size_t)n);
    assert_int_equal(hsm_client_build_cy(buf, sizeof buf, "U0123456789ABCDEF0123456789ABCDEF", "63",
                                         "4123456789012345", "8701", "000"),
                     -1);
    assert_int_equal(hsm_client_build_cy(buf, sizeof buf, "U0123456789ABCDEF0123456789ABCDEF",
                                         "636", "41234567890X2345", "8701", "000"),
                     -1);
    const uint8_t atc[2] = { 0x00, 0x1C }, un[4] = { 0x52, 0xBF, 0x45, 0x85 },
                  data[3] = { 1, 2, 3 },
                  arqc[8] = { 0x29, 0xCC, 0xA1, 0x5A, 0xE6, 0x65, 0xFA, 0x2E };
    const char *imk = "U0123456789ABCDEF0123456789ABCDEF";
    n = hsm_client_build_kq(buf, sizeof buf, '0', '0', '1', imk, "1234567890123456", "00", atc, un,
                            data, 3, arqc, NULL);
    assert_int_equal(n, 4 + 33 + 8 + 2 + 4 + 2 + 3 + 1 + 8 + 2);
    assert_memory_equal(buf, "KQ00", 4);
    assert_memory_equal(buf + 37, "\x34\x56\x78\x90\x12\x34\x56\x00", 8);
    assert_memory_equal(buf + 45,
                        "\x00\x1C\x52\xBF\x45\x85"
                        "03\x01\x02\x03;",
                        12);
    assert_memory_equal(buf + 57, arqc, 8);
    assert_memory_equal(buf + 65, "#1", 2);
    /* mode 2 with the ARC, default padding: no flag; a 13-digit PAN is zero-filled on the left */
    n = hsm_client_build_kq(buf, sizeof buf, '2', '2', '2', imk, "4012345678909", "01", atc, un,
                            data, 3, arqc, "05");
    assert_int_equal(n, 4 + 33 + 8 + 2 + 4 + 2 + 3 + 1 + 8 + 2);
    assert_memory_equal(buf + 37, "\x04\x01\x23\x45\x67\x89\x09\x01", 8);
    assert_memory_equal(buf + 65, "05", 2);
    /* refusals: a mode 1 without ARC, a bad PSN, an unknown padding */
    assert_int_equal(hsm_client_build_kq(buf, sizeof buf, '1', '2', '2', imk, "4012345678909", "01",
                                         atc, un, data, 3, arqc, NULL),
                     -1);
    assert_int_equal(hsm_client_build_kq(buf, sizeof buf, '0', '2', '2', imk, "4012345678909", "1",
                                         atc, un, data, 3, arqc, NULL),
                     -1);
    assert_int_equal(hsm_client_build_kq(buf, sizeof buf, '0', '2', '3', imk, "4012345678909", "01",
                                         atc, un, data, 3, arqc, NULL),
                     -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_account12),      cmocka_unit_test(test_ca_matches_published_layout),
        cmocka_unit_test(test_dc_and_dukpt),   cmocka_unit_test(test_mac_and_ibm),
        cmocka_unit_test(test_answer_parsers), cmocka_unit_test(test_cy_and_kq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
