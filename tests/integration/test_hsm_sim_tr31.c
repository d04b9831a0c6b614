/* Integration test of TR-31 key blocks in the real hsm-sim over loopback TCP, started with a
 * key-block LMK (--lmk-keyblock): keys generated under it as 'S' blocks, A6 import of a TR-31
 * block under a ZMK (header checked against the key type, attributes kept), A8 export as a
 * TR-31 block, and the enforcement rules, one test per rule: a PIN key cannot MAC (M6/M8 →
 * 04), a verify-only key cannot generate (M6 → 29, CW → 29), a generate-only key cannot
 * verify, a non-exportable key cannot be exported (A8 / A0 mode 1 → 29), a tampered block is
 * refused (01 on import, 10 under the LMK). Also: without --lmk-keyblock, scheme S is 26; a
 * bad key-block LMK file stops the daemon (exit 1); the log carries no key block. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "hsm.h"
#include "testsupport.h"

#define KBLMK "F0E1D2C3B4A5968778695A4B3C2D1E0F00112233445566778899AABBCCDDEEFF"

struct ctx {
    pid_t pid;
    uint16_t port;
    int fd;
    char log[512], lmkfile[512];
    struct hsm *h; /* in-process libhsm with the same (Thales test) variant LMK */
};
static struct ctx g;

static int setup(void **state)
{
    (void)state;
    const char *dir = ts_tmpdir("hsm_sim_tr31");
    snprintf(g.log, sizeof g.log, "%s/hsm-sim.log", dir);
    snprintf(g.lmkfile, sizeof g.lmkfile, "%s/kb.lmk", dir);
    FILE *f = fopen(g.lmkfile, "w");
    if (!f)
        return -1;
    fprintf(f, "# test key-block LMK (AES-256)\n%s\n", KBLMK);
    fclose(f);
    char listen[64];
    g.port = ts_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%u", g.port);
    const char *args[] = { "--listen", listen,           "--log",   g.log, "--log-level",
                           "debug",    "--lmk-keyblock", g.lmkfile, NULL };
    g.pid = ts_spawn("hsm-sim", args, NULL);
    if (g.pid <= 0 || ts_wait_port(g.port, 10000) != 0)
        return -1;
    g.fd = ts_connect(g.port, 5000);
    if (g.fd < 0 || hsm_new(&g.h, 64) != HSM_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close(g.fd);
    hsm_free(g.h);
    int st = ts_stop(g.pid, SIGTERM, 10000);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* Sends "0000" ‖ body to fd and returns the answer after the header and response code: the
 * two-digit error code then the fields, in a static buffer. */
static const char *cmd_on(int fd, const char *body)
{
    static char ans[4096];
    uint8_t buf[4096];
    size_t len = 4 + strlen(body);
    assert_true(len < sizeof buf - 2);
    buf[0] = (uint8_t)(len >> 8);
    buf[1] = (uint8_t)len;
    memcpy(buf + 2, "0000", 4);
    memcpy(buf + 6, body, strlen(body));
    assert_int_equal(ts_send_all(fd, buf, len + 2), 0);
    ssize_t n = ts_recv_frame2(fd, (uint8_t *)ans, sizeof ans - 1);
    assert_true(n >= 8);
    ans[n] = '\0';
    /* response code = command code with the second character + 1 */
    assert_int_equal(ans[4], body[0]);
    assert_int_equal(ans[5], body[1] + 1);
    return ans + 6;
}

static const char *cmd(const char *fmt, ...)
{
    char body[4000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    return cmd_on(g.fd, body);
}

/* The error code of an answer. */
static void expect_err(const char *ans, const char *ec)
{
    if (strncmp(ans, ec, 2) != 0)
        fail_msg("expected error %s, got %.2s", ec, ans);
}

/* A0 mode 0: a new key of type code under the LMK in scheme sch, into out. */
static void gen(const char *code, char sch, char *out, size_t cap)
{
    const char *a = cmd("A00%s%c", code, sch);
    expect_err(a, "00");
    size_t n = strlen(a + 2);
    assert_true(n > 6 && n - 6 < cap);
    memcpy(out, a + 2, n - 6);
    out[n - 6] = '\0';
}

/* A TR-31 block of a fresh key of type t (clear in this process) under the ZMK zmk_text (a
 * variant-LMK key the daemon knows too), with mode and exportability; its KCV in kcv6. */
static void block_for(const char *zmk_text, enum hsm_keytype t, char mode, char expo, char *out,
                      size_t cap, char kcv6[7])
{
    uint8_t clear[16], kcv[8];
    assert_int_equal(hsm_random(clear, sizeof clear), HSM_OK);
    hsm_parity_fix(clear, sizeof clear);
    struct hsm_key *zmk = NULL, *k = NULL;
    assert_int_equal(hsm_key_load(g.h, HSM_KT_ZMK, zmk_text, strlen(zmk_text), &zmk), HSM_OK);
    assert_int_equal(hsm_key_from_clear(t, clear, sizeof clear, &k), HSM_OK);
    assert_int_equal(hsm_tr31_export(zmk, k, mode, NULL, expo, out, cap), HSM_OK);
    hsm_key_kcv(k, kcv);
    snprintf(kcv6, 7, "%02X%02X%02X", kcv[0], kcv[1], kcv[2]);
    hsm_key_release(k);
    hsm_key_release(zmk);
}

/* A6 with an R block: the key under the LMK (scheme sch) into out, its KCV checked. */
static void import(const char *code, const char *zmk, const char *blk, char sch, const char *kcv6,
                   char *out, size_t cap)
{
    const char *a = cmd("A6%s%sR%s%c", code, zmk, blk, sch);
    expect_err(a, "00");
    size_t n = strlen(a + 2);
    assert_true(n > 6 && n - 6 < cap);
    assert_string_equal(a + 2 + n - 6, kcv6);
    memcpy(out, a + 2, n - 6);
    out[n - 6] = '\0';
}

static char g_zmk[64]; /* a ZMK under the variant LMK */

static void test_generate_under_keyblock_lmk(void **state)
{
    (void)state;
    char zpk[300], tak[300];
    gen("000", 'U', g_zmk, sizeof g_zmk);
    gen("001", 'S', zpk, sizeof zpk);
    assert_memory_equal(zpk, "SD", 2);
    assert_memory_equal(zpk + 6, "P0TB00E0000", 11);
    gen("003", 'S', tak, sizeof tak);
    assert_memory_equal(tak + 6, "M3TC00E0000", 11);
    /* BU accepts the block (key type code 01 / FF) and answers its KCV */
    const char *a = cmd("BU011%s", zpk);
    expect_err(a, "00");
    a = cmd("BUFF1%s;001", zpk);
    expect_err(a, "00");
    /* a key block is still refused as a key of another type */
    expect_err(cmd("BU031%s", zpk), "04");
    /* A0 with the header's attributes: a verify-only TAK, version 07, not exportable */
    char takv[300];
    a = cmd("A00003S#V07N");
    expect_err(a, "00");
    assert_memory_equal(a + 2 + 6, "M3TV07N0000", 11);
    size_t n = strlen(a + 2);
    memcpy(takv, a + 2, n - 6);
    takv[n - 6] = '\0';
    expect_err(cmd("M600131003%s0008ABCDEFGH", takv), "29");
    expect_err(cmd("A8003%s%sR", g_zmk, takv), "29");
    /* widening the type's default (C) to B, an unknown mode, attributes without scheme S */
    expect_err(cmd("A00003S#B00E"), "29");
    expect_err(cmd("A00003S#Q00E"), "15");
    assert_true(strncmp(cmd("A00003U#V00E"), "00", 2) != 0);
}

/* Rule: a PIN key cannot be used to MAC (M6 / M8 with a P0 key as TAK or ZAK → 04). */
static void test_pin_key_cannot_mac(void **state)
{
    (void)state;
    char zpk[300];
    gen("001", 'S', zpk, sizeof zpk);
    expect_err(cmd("M600131003%s0008ABCDEFGH", zpk), "04");
    expect_err(cmd("M600131008%s0008ABCDEFGH", zpk), "04");
    expect_err(cmd("M800131003%s0008ABCDEFGH%s", zpk, "0000000000000000"), "04");
    /* the same message with a real TAK block works */
    char tak[300];
    gen("003", 'S', tak, sizeof tak);
    expect_err(cmd("M600131003%s0008ABCDEFGH", tak), "00");
}

/* Rule: a verify-only key cannot generate; a generate-only key cannot verify. */
static void test_mode_of_use(void **state)
{
    (void)state;
    char blk[400], kcv[7], tak_v[300], tak_g[300], tak_c[300];
    const char *msg = "0008ABCDEFGH";
    block_for(g_zmk, HSM_KT_TAK, 'V', 0, blk, sizeof blk, kcv);
    assert_int_equal(blk[8], 'V');
    import("003", g_zmk, blk, 'S', kcv, tak_v, sizeof tak_v);
    assert_int_equal(tak_v[9], 'V'); /* the header's mode is kept under the LMK */
    /* the same key, mode C under the variant LMK ('U': no attributes) to make the MAC */
    import("003", g_zmk, blk, 'U', kcv, tak_c, sizeof tak_c);
    const char *a = cmd("M600131003%s%s", tak_c, msg);
    expect_err(a, "00");
    char mac[17];
    assert_int_equal(strlen(a), 2 + 4 + 16);
    memcpy(mac, a + 6, 16);
    mac[16] = '\0';
    expect_err(cmd("M600131003%s%s", tak_v, msg), "29");
    expect_err(cmd("M800131003%s%s%s", tak_v, msg, mac), "00");
    /* generate-only */
    block_for(g_zmk, HSM_KT_TAK, 'G', 0, blk, sizeof blk, kcv);
    import("003", g_zmk, blk, 'S', kcv, tak_g, sizeof tak_g);
    expect_err(cmd("M600131003%s%s", tak_g, msg), "00");
    expect_err(cmd("M800131003%s%s%s", tak_g, msg, mac), "29");
    /* a verify-only CVK cannot generate a CVV (CW) but verifies one (CY: 00 or 01) */
    char cvk[300];
    block_for(g_zmk, HSM_KT_CVK, 'V', 0, blk, sizeof blk, kcv);
    import("402", g_zmk, blk, 'S', kcv, cvk, sizeof cvk);
    expect_err(cmd("CW%s4123456789012345;2512101", cvk), "29");
    a = cmd("CY%s1234123456789012345;2512101", cvk);
    assert_true(strncmp(a, "00", 2) == 0 || strncmp(a, "01", 2) == 0);
}

/* Rule: a non-exportable key cannot be exported, as a TR-31 block or as a variant key. */
static void test_export(void **state)
{
    (void)state;
    char blk[400], kcv[7], zpk_n[300], zpk_e[300];
    block_for(g_zmk, HSM_KT_ZPK, 0, 'N', blk, sizeof blk, kcv);
    import("001", g_zmk, blk, 'S', kcv, zpk_n, sizeof zpk_n);
    assert_int_equal(zpk_n[12], 'N');
    expect_err(cmd("A8001%s%sR", g_zmk, zpk_n), "29");
    expect_err(cmd("A8001%s%sU", g_zmk, zpk_n), "29");
    /* an exportable one leaves as a version B block (TDES ZMK) that imports back */
    block_for(g_zmk, HSM_KT_ZPK, 0, 'E', blk, sizeof blk, kcv);
    import("001", g_zmk, blk, 'S', kcv, zpk_e, sizeof zpk_e);
    const char *a = cmd("A8001%s%sR#E07E", g_zmk, zpk_e);
    expect_err(a, "00");
    assert_memory_equal(a + 2, "B0", 2);
    assert_memory_equal(a + 2 + 5, "P0TE07E0000", 11);
    char out[400], back[300];
    size_t n = strlen(a + 2);
    memcpy(out, a + 2, n - 6);
    out[n - 6] = '\0';
    assert_string_equal(a + 2 + n - 6, kcv);
    import("001", g_zmk, out, 'U', kcv, back, sizeof back);
    /* widening the mode on export: 29 */
    expect_err(cmd("A8001%s%sR#G00E", g_zmk, zpk_e), "29");
    /* the variant export of the exportable key works (A8 with scheme U) */
    a = cmd("A8001%s%sU", g_zmk, zpk_e);
    expect_err(a, "00");
    /* ... which A6 (variant form) imports back with the same KCV */
    char under_zmk[64];
    assert_int_equal(strlen(a), 2 + 33 + 6);
    memcpy(under_zmk, a + 2, 33);
    under_zmk[33] = '\0';
    assert_string_equal(a + 2 + 33, kcv);
    a = cmd("A6001%s%sU", g_zmk, under_zmk);
    expect_err(a, "00");
    assert_string_equal(a + 2 + 33, kcv);
    /* A0 mode 1 with ZMK scheme R: a new key under the LMK and as a TR-31 block */
    a = cmd("A01001S%sR", g_zmk);
    expect_err(a, "00");
    assert_non_null(strstr(a, "B0"));
}

/* Import refusals: usage not fitting the type (04), a tampered block (01), an R block with an
 * Atalla variant (fields left over: 15/52). */
static void test_import_refusals(void **state)
{
    (void)state;
    char blk[400], kcv[7];
    block_for(g_zmk, HSM_KT_ZPK, 0, 0, blk, sizeof blk, kcv);
    expect_err(cmd("A6003%sR%sU", g_zmk, blk), "04");
    expect_err(cmd("A6008%sR%sS", g_zmk, blk), "04");
    char bad[400];
    strcpy(bad, blk);
    bad[30] = bad[30] == '0' ? '1' : '0';
    expect_err(cmd("A6001%sR%sU", g_zmk, bad), "01");
    /* a key block under the LMK that does not authenticate: 10 */
    char zpk[300];
    gen("001", 'S', zpk, sizeof zpk);
    zpk[40] = zpk[40] == '0' ? '1' : '0';
    expect_err(cmd("BU011%s", zpk), "10");
    /* a block shorter than its length field */
    blk[strlen(blk) - 4] = '\0';
    const char *a = cmd("A6001%sR%sU", g_zmk, blk);
    assert_true(strncmp(a, "00", 2) != 0);
}

/* Without --lmk-keyblock, scheme S is 26; a bad key-block LMK file: exit 1, reason logged. */
static void test_without_keyblock_lmk(void **state)
{
    (void)state;
    char listen[64];
    uint16_t port = ts_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
    const char *args[] = { "--listen", listen, NULL };
    pid_t pid = ts_spawn("hsm-sim", args, NULL);
    assert_true(pid > 0);
    assert_int_equal(ts_wait_port(port, 10000), 0);
    int fd = ts_connect(port, 5000);
    assert_true(fd >= 0);
    expect_err(cmd_on(fd, "A00001S"), "26");
    close(fd);
    int st = ts_stop(pid, SIGTERM, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    char badfile[600], out[600];
    snprintf(badfile, sizeof badfile, "%s/bad.lmk", ts_tmpdir("hsm_sim_tr31"));
    snprintf(out, sizeof out, "%s/bad.out", ts_tmpdir("hsm_sim_tr31"));
    FILE *f = fopen(badfile, "w");
    assert_non_null(f);
    fprintf(f, "ABCDEF\n");
    fclose(f);
    const char *bargs[] = { "--listen", listen, "--lmk-keyblock", badfile, NULL };
    assert_int_equal(ts_run("hsm-sim", bargs, out), 1);
    assert_true(ts_file_contains(out, "32, 48 or 64 hex"));
    assert_false(ts_file_contains(out, "ABCDEF"));
}

/* The log has codes, never a key block or the key-block LMK. */
static void test_log(void **state)
{
    (void)state;
    char zpk[300];
    gen("001", 'S', zpk, sizeof zpk);
    expect_err(cmd("BU011%s", zpk), "00");
    assert_true(ts_wait_file_contains(g.log, "\"BU\"", 5000));
    assert_false(ts_file_contains(g.log, zpk + 17)); /* the encrypted part of the block */
    assert_false(ts_file_contains(g.log, KBLMK));
    assert_true(ts_file_contains(g.log, "lmk_keyblock"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_under_keyblock_lmk),
        cmocka_unit_test(test_pin_key_cannot_mac),
        cmocka_unit_test(test_mode_of_use),
        cmocka_unit_test(test_export),
        cmocka_unit_test(test_import_refusals),
        cmocka_unit_test(test_without_keyblock_lmk),
        cmocka_unit_test(test_log),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
