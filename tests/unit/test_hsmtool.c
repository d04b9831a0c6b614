/* hsmtool end to end: runs build/bin/hsmtool (HSMTOOL_PATH) and checks that it
 * reproduces every vector of tests/vectors/crypto.md sections 1-9 (and the DUKPT
 * tables of tests/vectors/dukpt_*.txt) through the command line, prints one
 * result line, and exits 2 with one stderr line on bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_vectors.h"

#define MAXOUT 4096

struct result {
    int status; /* exit code, or -1 if killed */
    char out[MAXOUT];
    char err[MAXOUT];
};

/* Reads fd to EOF into buf (NUL-terminated, truncated at cap-1). */
static void slurp(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap - 1)
            break;
    }
    buf[n] = '\0';
}

/* Runs hsmtool with the NULL-terminated argument list (argv[0] excluded). */
static void run(struct result *r, const char *const *args)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = HSMTOOL_PATH;
    while (*args && n < 31)
        argv[n++] = *args++;
    argv[n] = NULL;
    int out[2], err[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        execv(HSMTOOL_PATH, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    /* outputs are small: stdout then stderr cannot deadlock below the pipe size */
    slurp(out[0], r->out, sizeof r->out);
    slurp(err[0], r->err, sizeof r->err);
    close(out[0]);
    close(err[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs and expects exit 0 and exactly one line equal to want. */
#define EXPECT(want, ...)                                                                          \
    do {                                                                                           \
        struct result r_;                                                                          \
        run(&r_, (const char *const[]){ __VA_ARGS__, NULL });                                      \
        if (r_.status != 0)                                                                        \
            fail_msg("exit %d: %s", r_.status, r_.err);                                            \
        assert_string_equal(r_.out, want "\n");                                                    \
    } while (0)

/* Runs and returns the single output line (without newline) in a static buffer. */
static const char *line_of(const char *const *args)
{
    static struct result r;
    run(&r, args);
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    size_t n = strlen(r.out);
    assert_true(n > 0 && r.out[n - 1] == '\n');
    assert_null(memchr(r.out, '\n', n - 1));
    r.out[n - 1] = '\0';
    return r.out;
}
#define LINE(...) line_of((const char *const[]){ __VA_ARGS__, NULL })

/* Value of name= in dukpt's output. */
static void kv_get(const char *out, const char *name, char *val, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%s=", name);
    const char *p = out;
    while ((p = strstr(p, pat)) && p != out && p[-1] != '\n')
        p++;
    assert_non_null(p);
    p += strlen(pat);
    size_t n = strcspn(p, "\n");
    assert_true(n < cap);
    memcpy(val, p, n);
    val[n] = '\0';
}

static const char *const PVK = "0123456789ABCDEFFEDCBA9876543210";

/* The value of name= in the output of `hsmtool dukpt` with args (after "dukpt"). */
static void dukpt_value(const char *const *args, const char *name, char *val, size_t cap)
{
    const char *argv[16] = { "dukpt" };
    size_t n = 1;
    while (*args && n < 15)
        argv[n++] = *args++;
    argv[n] = NULL;
    struct result r;
    run(&r, argv);
    assert_int_equal(r.status, 0);
    kv_get(r.out, name, val, cap);
}

/* ---------------------------------------------------------------- sections 1-5 */

static void test_cli_kcv(void **state)
{
    EXPECT("08D7B4", "kcv", "0123456789ABCDEFFEDCBA9876543210");
    EXPECT("08D7B4FB629D0885", "kcv", "--full", "0123456789ABCDEFFEDCBA9876543210");
    EXPECT("D5D44F", "kcv", "0123456789ABCDEF");
    EXPECT("A68CDC", "kcv", "FEDCBA9876543210");
}

static void test_cli_pinblock(void **state)
{
    EXPECT("041261AAAAEDCBA9", "pinblock", "encode", "--format", "0", "--pin", "1234", "--pan",
           "5555555551234567");
    EXPECT("0C1261032D8226A9", "pinblock", "encode", "--format", "0", "--pin", "123456789012",
           "--pan", "5555555551234567");
    EXPECT("041274EDCBA9876F", "pinblock", "encode", "--format", "0", "--pin", "1234", "--pan",
           "4012345678909");
    EXPECT("1234", "pinblock", "decode", "--format", "3", "--block", "341261AAAAEDCBA9", "--pan",
           "5555555551234567");
    /* the decoded clear field: encode with F fill against an all-zero account */
    EXPECT("341234FFFFFFFFFF", "pinblock", "encode", "--format", "3", "--pin", "1234", "--pan",
           "000000000000", "--fill", "5555555555555555");
    EXPECT("123456789012", "pinblock", "decode", "--format", "3", "--block", "3C1261032D8226A9",
           "--pan", "5555555551234567");
    EXPECT("12345", "pinblock", "decode", "--format", "1", "--block", "1512345EDCBA9876");
    EXPECT("1234", "pinblock", "decode", "--format", "1", "--block", "141234FFFFFFFFFF");
    EXPECT("123456789012", "pinblock", "decode", "--format", "1", "--block", "1C123456789012FF");
    /* ISO 4: ep2 8.4 */
    EXPECT("441234AAAAAAAAAA146C6601F4A8035C", "pinblock", "encode", "--format", "4", "--pin",
           "1234", "--pan", "432198765432109870", "--fill", "146C6601F4A8035C");
    EXPECT("CC17F65586BFD0953010226C4FC5B3CA", "pinblock", "encode", "--format", "4", "--pin",
           "1234", "--pan", "432198765432109870", "--fill", "146C6601F4A8035C", "--key",
           "C1D0F8FB4958670DBA40AB1F3752EF0D");
    EXPECT("1234", "pinblock", "decode", "--format", "4", "--block",
           "CC17F65586BFD0953010226C4FC5B3CA", "--pan", "432198765432109870", "--key",
           "C1D0F8FB4958670DBA40AB1F3752EF0D");
    EXPECT("1234", "pinblock", "decode", "--format", "4", "--block",
           "441234AAAAAAAAAA146C6601F4A8035C", "--pan", "432198765432109870");
    EXPECT("28B41FDDD29B743E93124BD8E32D921E", "pinblock", "encode", "--format", "4", "--pin",
           "1234", "--pan", "1234567890123456789", "--fill", "FFFFFFFFFFFFFFFF", "--key",
           "00112233445566778899AABBCCDDEEFF");
    EXPECT("44111111111111111000000000000000", "pinblock", "panfield", "--pan", "4111111111111111");
    EXPECT("61122334455667788990000000000000", "pinblock", "panfield", "--pan",
           "112233445566778899");
    EXPECT("123456", "pinblock", "decode", "--format", "4", "--block",
           "39B69B1B91FE05D48F7EF0D68EB2CBD6", "--pan", "1", "--key",
           "00112233445566778899AABBCCDDEEFF");
    /* a random fill: the block decodes back */
    char blk[40];
    strcpy(blk, LINE("pinblock", "encode", "--format", "3", "--pin", "98765", "--pan",
                     "4111111111111111"));
    EXPECT("98765", "pinblock", "decode", "--format", "3", "--block", blk, "--pan",
           "4111111111111111");
}

static void test_cli_ibm_pvv_cvv(void **state)
{
    static struct tv_row table[16];
    size_t n = read_rows(HSM_VECTORS_DIR "/ibm3624.txt", table, 16, 3, 8); /* offset, vdata, PIN */
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(LINE("ibm3624", "--pvk", PVK, "--vdata", table[i].f[1], "--offset",
                                 table[i].f[0], "--dectab", "1234567890123456"),
                            table[i].f[2]);
    }
    EXPECT("7710", "ibm3624", "--pvk", PVK, "--vdata", "1122334455667788", "--pin", "1234",
           "--dectab", "1234567890123456");
    /* the intermediate TDES(PVK, vdata) is the CBC-MAC of one block */
    EXPECT("3EB3B72576BBBE83", "mac", "--alg", "1", "--key", PVK, "--data", "1122334455667788");
    EXPECT("3413", "ibm3624", "--pvk", PVK, "--vdata", "1122334455667788", "--offset", "0000");

    n = read_rows(HSM_VECTORS_DIR "/pvv.txt", table, 16, 4, 5); /* PVKI, PIN, PAN, PVV */
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(LINE("pvv", "--pvk", PVK, "--pan", table[i].f[2], "--pvki",
                                 table[i].f[0], "--pin", table[i].f[1]),
                            table[i].f[3]);
    }

    n = read_rows(HSM_VECTORS_DIR "/cvv.txt", table, 16, 5, 6); /* CVK, PAN, expiry, service, CVV */
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(LINE("cvv", "--cvk", table[i].f[0], "--pan", table[i].f[1], "--exp",
                                 table[i].f[2], "--service", table[i].f[3]),
                            table[i].f[4]);
    }
}

/* ---------------------------------------------------------------- section 6-7 */

static void test_cli_dukpt_tdes(void **state)
{
    /* the whole A.4 table (initial and rollover sequences): KSN, key, PIN block */
    static struct tv_row table[64], macs[8];
    size_t n = read_rows(HSM_VECTORS_DIR "/dukpt_tdes.txt", table, 64, 3, 34);
    /* its first 4 rows with their PIN key and MACs: KSN, PIN key, request MAC, response MAC,
     * request CMAC */
    size_t nm = read_rows(HSM_VECTORS_DIR "/dukpt_tdes_mac.txt", macs, 8, 5, 4);
    for (size_t i = 0; i < nm; i++) {
        const char(*w)[TV_FIELD_MAX] = macs[i].f;
        assert_string_equal(w[0], table[i].f[0]);
        struct result r;
        run(&r, (const char *const[]){ "dukpt", "--bdk", "0123456789ABCDEFFEDCBA9876543210",
                                       "--ksn", w[0], NULL });
        assert_int_equal(r.status, 0);
        char v[64], pin[64], req[64], resp[64];
        kv_get(r.out, "ipek", v, sizeof v);
        assert_string_equal(v, "6AC292FAA1315B4D858AB3A3D7D5933A");
        kv_get(r.out, "txn_key", v, sizeof v);
        assert_string_equal(v, table[i].f[1]);
        kv_get(r.out, "pin_key", pin, sizeof pin);
        assert_string_equal(pin, w[1]);
        kv_get(r.out, "mac_req_key", req, sizeof req);
        kv_get(r.out, "mac_resp_key", resp, sizeof resp);
        assert_string_equal(LINE("pinblock", "encode", "--format", "0", "--pin", "1234", "--pan",
                                 "4012345678909", "--key", pin),
                            table[i].f[2]);
        const char *m = LINE("mac", "--alg", "3", "--key", req, "--text", "4012345678909D987");
        assert_int_equal(strncmp(m, w[2], 8), 0);
        m = LINE("mac", "--alg", "3", "--key", resp, "--text", "4012345678909D987");
        assert_int_equal(strncmp(m, w[3], 8), 0);
        assert_string_equal(
            LINE("mac", "--alg", "tcmac", "--key", req, "--text", "4012345678909D987"), w[4]);
    }
    for (size_t i = 0; i < n; i++) {
        const char *const args[] = { "--bdk", "0123456789ABCDEFFEDCBA9876543210", "--ksn",
                                     table[i].f[0], NULL };
        char v[64], pin[64];
        dukpt_value(args, "txn_key", v, sizeof v);
        assert_string_equal(v, table[i].f[1]);
        dukpt_value(args, "pin_key", pin, sizeof pin);
        assert_string_equal(LINE("pinblock", "encode", "--format", "0", "--pin", "1234", "--pan",
                                 "4012345678909", "--key", pin),
                            table[i].f[2]);
    }
    /* a KSN without the FFFF prefix is left-padded */
    struct result r;
    run(&r, (const char *const[]){ "dukpt", "--bdk", "0123456789ABCDEFFEDCBA9876543210", "--ksn",
                                   "9876543210E00001", NULL });
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "txn_key=042666B49184CFA368DE9628D0397BC9\n"));
}

static void test_cli_dukpt_aes(void **state)
{
    /* KSN, transaction key, PIN, MAC and data keys, PIN block */
    static struct tv_row table[4];
    size_t n = read_rows(HSM_VECTORS_DIR "/dukpt_aes128_keys.txt", table, 4, 6, 2);
    for (size_t i = 0; i < n; i++) {
        const char(*rows_i)[TV_FIELD_MAX] = table[i].f;
        struct result r;
        run(&r,
            (const char *const[]){ "dukpt", "--aes", "--bdk", "FEDCBA9876543210F1F1F1F1F1F1F1F1",
                                   "--ksn", rows_i[0], NULL });
        assert_int_equal(r.status, 0);
        char v[64], pin[64];
        kv_get(r.out, "initial_key", v, sizeof v);
        assert_string_equal(v, "1273671EA26AC29AFA4D1084127652A1");
        kv_get(r.out, "txn_key", v, sizeof v);
        assert_string_equal(v, rows_i[1]);
        kv_get(r.out, "pin_key", pin, sizeof pin);
        assert_string_equal(pin, rows_i[2]);
        kv_get(r.out, "mac_key", v, sizeof v);
        assert_string_equal(v, rows_i[3]);
        kv_get(r.out, "data_key", v, sizeof v);
        assert_string_equal(v, rows_i[4]);
        assert_string_equal(LINE("pinblock", "encode", "--format", "4", "--pin", "1234", "--pan",
                                 "4111111111111111", "--fill", "2F69ADDE2E9E7ACE", "--key", pin),
                            rows_i[5]);
    }
    /* the whole table: KSN, key */
    static struct tv_row keys[64];
    n = read_rows(HSM_VECTORS_DIR "/dukpt_aes128.txt", keys, 64, 2, 16);
    for (size_t i = 0; i < n; i++) {
        char v[64];
        dukpt_value((const char *const[]){ "--aes", "--bdk", "FEDCBA9876543210F1F1F1F1F1F1F1F1",
                                           "--ksn", keys[i].f[0], NULL },
                    "txn_key", v, sizeof v);
        assert_string_equal(v, keys[i].f[1]);
    }
    assert_int_equal(n, 16);
}

/* ---------------------------------------------------------------- section 8-9 */

static void test_cli_mac(void **state)
{
    const char *msg1 = "Now is the time for all ";
    static const char *const rows[][4] = {
        { "1", "1", "0123456789ABCDEF", "70A30640CC76DD8B" },
        { "3", "1", "0123456789ABCDEFFEDCBA9876543210", "A1C72E74EA3FA9B6" },
        { "1", "2", "0123456789ABCDEF", "10E1F0F108341B6D" },
        { "3", "2", "0123456789ABCDEFFEDCBA9876543210", "E9086230CA3BE796" },
        { "1", "3", "0123456789ABCDEF", "2C58FB8FF12AAEAC" },
        { "3", "3", "0123456789ABCDEFFEDCBA9876543210", "AB059463D7A7D170" },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_string_equal(LINE("mac", "--alg", rows[i][0], "--pad", rows[i][1], "--key",
                                 rows[i][2], "--text", msg1),
                            rows[i][3]);
    }
    const char *m = LINE("mac", "--alg", "1", "--key", "0123456789ABCDEF", "--text",
                         "7654321 Now is the time for ");
    assert_int_equal(strncmp(m, "F1D30F68", 8), 0);
    EXPECT("F09B856213BAB83B", "mac", "--alg", "3", "--key", "7CA110454A1A6E570131D9619DC1376E",
           "--text", "Hello World !!!!");
    EXPECT("78DA3D3DEB48FD4D", "mac", "--alg", "3", "--key", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB",
           "--text", "hello world");

    const char *full = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E5130C81C46A3"
                       "5CE411E5FBC1191A0A52EFF69F2445DF4F9B17AD2B417BE66C3710";
    static struct tv_row cm[16];
    size_t n = read_rows(HSM_VECTORS_DIR "/cmac.txt", cm, 16, 4, 7);
    for (size_t i = 0; i < n; i++) {
        const char(*w)[TV_FIELD_MAX] = cm[i].f;
        char data[160];
        size_t len = (size_t)atoi(w[2]);
        memcpy(data, full, 2 * len);
        data[2 * len] = '\0';
        assert_string_equal(LINE("mac", "--alg", strcmp(w[0], "aes") == 0 ? "acmac" : "tcmac",
                                 "--key", w[1], "--data", data),
                            w[3]);
    }
}

static void test_cli_emv(void **state)
{
    const char *imk = "0123456789ABCDEFFEDCBA9876543210";
    const char *pan = "12345678901234567";
    assert_int_equal(strncmp(LINE("kcv", imk), "08D7", 4), 0);
    EXPECT("73AD54688CEF2934B0979857E3C719F1", "emv", "mk", "--imk", imk, "--pan", pan, "--psn",
           "01");
    char mk[40];
    strcpy(mk, LINE("emv", "mk", "--imk", imk, "--pan", pan, "--psn", "45"));
    assert_string_equal(mk, "946DC1A8C78A624519BC4645CB073737");
    assert_int_equal(strncmp(LINE("kcv", mk), "FF08", 4), 0);
    char sk[40];
    strcpy(sk, LINE("emv", "sk", "--mk", mk, "--r", "1234567890123456"));
    assert_string_equal(sk, "C7AEDF49AEF2F146D692400E0B851A8F");
    assert_int_equal(strncmp(LINE("kcv", sk), "DF82", 4), 0);
    EXPECT("19C1FBC83EBDC0D5", "emv", "arqc", "--imk", imk, "--pan", pan, "--psn", "45", "--r",
           "1234567890123456", "--data", "0123456789ABCDEF0123456789ABCDEF");
    EXPECT("78A372523FA35A03", "emv", "arpc", "--imk", imk, "--pan", pan, "--psn", "45", "--arqc",
           "19C1FBC83EBDC0D5", "--arc", "0000");
    EXPECT("C3620580668E5B65", "emv", "arpc", "--imk", imk, "--pan", pan, "--psn", "45", "--r",
           "1234567890123456", "--arqc", "19C1FBC83EBDC0D5");
    strcpy(mk, LINE("emv", "mk", "--imk", imk, "--pan", pan, "--psn", "00"));
    strcpy(sk, LINE("emv", "sk", "--mk", mk, "--r", "1234567890123456"));
    assert_int_equal(strncmp(LINE("kcv", sk), "3F4F", 4), 0);
    EXPECT("8698A7319324FD93", "emv", "arqc", "--imk", imk, "--pan", pan, "--r", "1234567890123456",
           "--data", "0123456789ABCDEF0123456789ABCDEF");
    EXPECT("BEA11C8F4A47EF6F", "emv", "arpc", "--imk", imk, "--pan", pan, "--psn", "00", "--arqc",
           "8698A7319324FD93");
    EXPECT("E9FB384AF807B940FEDCEA613461B0C4", "emv", "sk", "--mk", imk, "--r", "001C000000000000");
    /* pyemv's Visa CVN 10 (zero padding) and CVN 18 (R = ATC 001C ‖ 0..) vectors, emv_cvn.txt */
    EXPECT("29CCA15AE665FA2E", "emv", "arqc", "--imk", imk, "--pan", "1234567890123456", "--pad",
           "1", "--data",
           "0000000040000000000000000124800004800001241911050152BF45851800001C03A06010");
    EXPECT("7A788EA6B8A3E733", "emv", "arqc", "--imk", imk, "--pan", "1234567890123456", "--r",
           "001C000000000000", "--data",
           "0000000040000000000000000124800004800001241911050152BF45851800001C06011203A0B800");
    EXPECT("28993816AFAE4AEB", "emv", "arpc", "--imk", imk, "--pan", "1234567890123456", "--arqc",
           "29CCA15AE665FA2E", "--arc", "3030");
}

/* ---------------------------------------------------------------- section 10 */

static void test_cli_tr31(void **state)
{
    EXPECT("F039121BEC83D26B169BDCD5B22AAF8F", "tr31", "--kbpk", "89E88CF7931444F334BD7547FC3F380C",
           "--block", "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701");
    EXPECT("F039121BEC83D26B169BDCD5B22AAF8F", "tr31", "--kbpk", "89E88CF7931444F334BD7547FC3F380C",
           "--block", "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24D52C8D44AAEDA6D81752022B");
    EXPECT("3F419E1CB7079442AA37474C2EFBF8B8", "tr31", "--kbpk", "DD7515F2BFC17F85CE48F3CA25CB21F6",
           "--block",
           "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E");
    EXPECT("CCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD", "tr31", "--kbpk", "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB",
           "--block",
           "C0088M3TC00E00009BC6306FC31891BF87B3148463627B1D68C603D9FAB9074E4A0D2E78D40B29905A8"
           "26F5C");
    EXPECT("E8BC63E5479455E26577F715D587FE68", "tr31", "--kbpk", "1D22BF32387C600AD97F9B97A51311AC",
           "--block",
           "B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A5"
           "2190E248719E24B433627");
    EXPECT("3F419E1CB7079442AA37474C2EFBF8B8", "tr31", "--kbpk",
           "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6", "--block",
           "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8"
           "E31DA05F7425509593D03A457DC34");
    /* wrapping with the published pad re-makes the published blocks (B and D) */
    EXPECT("B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E",
           "tr31", "--kbpk", "DD7515F2BFC17F85CE48F3CA25CB21F6", "--header", "B0000P0TE00E0000",
           "--key", "3F419E1CB7079442AA37474C2EFBF8B8", "--pad", "1C2965473CE2");
    EXPECT("D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8"
           "E31DA05F7425509593D03A457DC34",
           "tr31", "--kbpk", "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
           "--header", "D0000P0AE00E0000", "--key", "3F419E1CB7079442AA37474C2EFBF8B8", "--pad",
           "1C2965473CE206BB855B01533782");
}

/* ---------------------------------------------------------------- key, help, errors */

static void test_cli_key(void **state)
{
    EXPECT("0406FBB23A5214DF 0035BB", "key", "--type", "TPK", "--clear", "0B681FC20E62C734");
    const char *l = LINE("key", "--type", "ZPK");
    assert_int_equal(strlen(l), 33 + 1 + 6);
    assert_int_equal(l[0], 'U');
    l = LINE("key", "--type", "BDK-AES");
    assert_int_equal(l[0], 'A');
    l = LINE("key", "--type", "ZMK", "--scheme", "T");
    assert_int_equal(l[0], 'T');
    assert_int_equal(strlen(l), 49 + 1 + 6);
    /* scheme S: a TR-31 version D block under a key-block LMK; the TPK of payShield's BU pair
     * keeps its KCV (0035BB); an AES TAK gets usage M6 */
    char lmk[] = "/tmp/test_hsmtool_kblmk.XXXXXX";
    int fd = mkstemp(lmk);
    assert_true(fd >= 0);
    const char *line = "000102030405060708090A0B0C0D0E0F\n";
    assert_true(write(fd, line, strlen(line)) == (ssize_t)strlen(line));
    close(fd);
    l = LINE("key", "--type", "TPK", "--clear", "0B681FC20E62C7340B681FC20E62C734", "--scheme", "S",
             "--lmk-keyblock", lmk);
    assert_memory_equal(l, "SD", 2);
    assert_memory_equal(l + 6, "P0TB00E0000", 11);
    assert_string_equal(l + strlen(l) - 6, "0035BB");
    l = LINE("key", "--type", "TAK", "--clear", "000102030405060708090A0B0C0D0E0F", "--aes",
             "--scheme", "S", "--lmk-keyblock", lmk);
    assert_memory_equal(l + 6, "M6AC00E0000", 11);
    unlink(lmk);
}

static void expect_bad(const char *const *args)
{
    struct result r;
    run(&r, args);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.out, "");
    size_t n = strlen(r.err);
    assert_true(n > 0 && r.err[n - 1] == '\n');
    assert_null(memchr(r.err, '\n', n - 1)); /* one line */
}
#define BAD(...) expect_bad((const char *const[]){ __VA_ARGS__, NULL })

static void test_cli_errors(void **state)
{
    BAD("nosuch");
    BAD("kcv", "0123456789ABCDEG");
    BAD("kcv", "0123456789ABCDE");
    BAD("kcv");
    BAD("key", "--type", "ZPK", "--scheme", "S"); /* S needs --lmk-keyblock */
    BAD("tr31", "--kbpk", "DD7515F2BFC17F85CE48F3CA25CB21F6", "--header", "B0000Z9TE00E0000",
        "--key", "3F419E1CB7079442AA37474C2EFBF8B8");
    BAD("tr31", "--kbpk", "DD7515F2BFC17F85CE48F3CA25CB21F6", "--header", "B0000P0TE00E0000");
    BAD("pinblock", "encode", "--format", "2", "--pin", "1234", "--pan", "4111111111111111");
    BAD("pinblock", "encode", "--format", "0", "--pin", "123", "--pan", "4111111111111111");
    BAD("pinblock", "encode", "--format", "0", "--pin", "1234567890123", "--pan",
        "4111111111111111");
    BAD("pinblock", "decode", "--format", "0", "--block", "0F1261AAAAEDCBA9", "--pan",
        "5555555551234567");
    BAD("pinblock", "encode", "--format", "0", "--pin", "1234");
    BAD("pinblock", "encode", "--format", "4", "--pin", "1234", "--pan", "4111111111111111",
        "--key", "0123456789ABCDEF");
    BAD("pvv", "--pvk", PVK, "--pan", "1122334455667788", "--pvki", "12", "--pin", "4524");
    BAD("ibm3624", "--pvk", PVK, "--vdata", "1122334455667788", "--pin", "1234", "--dectab",
        "123456789012345A");
    BAD("cvv", "--cvk", "0123456789ABCDEF", "--pan", "4123456789012345", "--exp", "8701",
        "--service", "101");
    BAD("mac", "--alg", "9", "--key", PVK, "--data", "00");
    BAD("mac", "--alg", "3", "--key", PVK, "--data", "00", "--pad", "4");
    BAD("mac", "--alg", "3", "--key", PVK, "--data", "00", "--typo", "1");
    BAD("dukpt", "--bdk", PVK, "--ksn", "FFFF");
    BAD("key", "--type", "XYZ");
    BAD("key", "--type", "TPK", "--clear", "0B681FC20E62C735");
    BAD("emv", "arqc", "--imk", PVK, "--pan", "1234", "--data", "00", "--r", "12");
    BAD("tr31", "--kbpk", "89E88CF7931444F334BD7547FC3F381C", "--block",
        "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701");

    /* every subcommand explains itself and warns about clear keys */
    static const char *const cmds[] = { "kcv",   "pinblock", "pvv", "ibm3624", "cvv",
                                        "dukpt", "mac",      "emv", "key" };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        struct result r;
        run(&r, (const char *const[]){ cmds[i], "--help", NULL });
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, "usage: hsmtool "));
        assert_non_null(strstr(r.out, "test and lab use"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_kcv),         cmocka_unit_test(test_cli_pinblock),
        cmocka_unit_test(test_cli_ibm_pvv_cvv), cmocka_unit_test(test_cli_dukpt_tdes),
        cmocka_unit_test(test_cli_dukpt_aes),   cmocka_unit_test(test_cli_mac),
        cmocka_unit_test(test_cli_emv),         cmocka_unit_test(test_cli_tr31),
        cmocka_unit_test(test_cli_key),         cmocka_unit_test(test_cli_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
