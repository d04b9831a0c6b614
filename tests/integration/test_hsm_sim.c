/* Integration test of the real hsm-sim over loopback TCP: the published
 * payShield pairs byte for byte (header echo included), the NC wire example,
 * pipelining on one connection, many connections, malformed / unknown /
 * oversize input, the log's content, and a clean SIGTERM exit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_data_segs_in */
#include <netinet/in.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "hsm.h" /* hsm_test_lmk */
#include "testsupport.h"

#define TEST_LMK_KCV "7D22274C5745C5A1"
#define MAX_FRAME    1024

struct ctx {
    pid_t pid;
    uint16_t port;
    char log[512];
};

static int setup(void **state)
{
    static struct ctx c;
    char port[16], listen[64], maxf[16];
    c.port = ts_free_port();
    snprintf(port, sizeof port, "%u", c.port);
    snprintf(listen, sizeof listen, "127.0.0.1:%u", c.port);
    snprintf(maxf, sizeof maxf, "%d", MAX_FRAME);
    snprintf(c.log, sizeof c.log, "%s/hsm-sim.log", ts_tmpdir("hsm_sim"));
    const char *args[] = { "--listen", listen,        "--log", c.log, "--log-level",
                           "debug",    "--max-frame", maxf,    NULL };
    c.pid = ts_spawn("hsm-sim", args, NULL);
    if (c.pid <= 0 || ts_wait_port(c.port, 10000) != 0)
        return -1;
    *state = &c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    int st = ts_stop(c->pid, SIGTERM, 10000);
    /* a clean exit on SIGTERM is part of the contract */
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    return 0;
}

static uint8_t *got_sink(void)
{
    static uint8_t sink[64];
    return sink;
}

static int send_frame(int fd, const void *body, size_t len)
{
    uint8_t buf[70000];
    buf[0] = (uint8_t)(len >> 8);
    buf[1] = (uint8_t)len;
    memcpy(buf + 2, body, len);
    return ts_send_all(fd, buf, len + 2);
}

/* Sends body, reads one answer into out (NUL-terminated), returns its length. */
static ssize_t roundtrip(int fd, const char *body, char *out, size_t cap)
{
    if (send_frame(fd, body, strlen(body)) != 0)
        return -1;
    ssize_t n = ts_recv_frame2(fd, (uint8_t *)out, cap - 1);
    if (n >= 0)
        out[n] = '\0';
    return n;
}

#include "../unit/hsm_sim_pairs.inc"

static void test_published_pairs(void **state)
{
    struct ctx *c = *state;
    int fd = ts_connect(c->port, 10000);
    assert_true(fd >= 0);
    for (size_t i = 0; i < sizeof hsm_sim_pairs / sizeof hsm_sim_pairs[0]; i++) {
        char req[512], want[512], got[512];
        char hdr[5];
        snprintf(hdr, sizeof hdr, "H%03zu", i);
        snprintf(req, sizeof req, "%s%s%s", hdr, hsm_sim_pairs[i].cmd, hsm_sim_pairs[i].req);
        snprintf(want, sizeof want, "%s%c%c%s", hdr, hsm_sim_pairs[i].cmd[0],
                 (char)(hsm_sim_pairs[i].cmd[1] + 1), hsm_sim_pairs[i].resp);
        print_message("%s %s\n", hsm_sim_pairs[i].src, hsm_sim_pairs[i].cmd);
        assert_true(roundtrip(fd, req, got, sizeof got) > 0);
        assert_string_equal(got, want);
    }
    close(fd);
}

static void test_nc_wire_example(void **state)
{
    struct ctx *c = *state;
    int fd = ts_connect(c->port, 10000);
    assert_true(fd >= 0);
    /* pythales README: 00 06 "SSSSNC" → 00 21 "SSSSND00" ‖ LMK KCV 16H ‖ firmware */
    const uint8_t req[] = { 0x00, 0x06, 0x53, 0x53, 0x53, 0x53, 0x4E, 0x43 };
    assert_int_equal(ts_send_all(fd, req, sizeof req), 0);
    uint8_t resp[2 + 0x21];
    assert_int_equal(ts_recv_exact(fd, resp, sizeof resp), (ssize_t)sizeof resp);
    assert_int_equal(resp[0], 0x00);
    assert_int_equal(resp[1], 0x21);
    assert_memory_equal(resp + 2, "SSSSND00" TEST_LMK_KCV "0007-E000", 0x21);
    close(fd);
}

static void test_pipelined_in_order(void **state)
{
    struct ctx *c = *state;
    int fd = ts_connect(c->port, 10000);
    assert_true(fd >= 0);
    /* 200 frames in one write: echoes and translations interleaved */
    static uint8_t buf[200 * 100];
    size_t off = 0;
    for (int i = 0; i < 200; i++) {
        char body[128];
        int n;
        if (i % 2)
            n = snprintf(body, sizeof body, "%04dB20008ECHO%04d", i, i);
        else
            n = snprintf(body, sizeof body,
                         "%04dCA0406FBB23A5214DFBAB32D775A38E4AB12DC80B186C30902B00303550000025321",
                         i);
        buf[off++] = 0;
        buf[off++] = (uint8_t)n;
        memcpy(buf + off, body, (size_t)n);
        off += (size_t)n;
    }
    assert_int_equal(ts_send_all(fd, buf, off), 0);
    for (int i = 0; i < 200; i++) {
        char got[256], want[256];
        ssize_t n = ts_recv_frame2(fd, (uint8_t *)got, sizeof got - 1);
        assert_true(n > 0);
        got[n] = '\0';
        if (i % 2)
            snprintf(want, sizeof want, "%04dB300ECHO%04d", i, i);
        else
            snprintf(want, sizeof want, "%04dCB0004F7808F2CBEC6316803", i);
        assert_string_equal(got, want);
    }
    close(fd);
}

/* A burst of commands that arrives in one read is answered in one write: the answers to all
 * of them leave together once the last is computed (one data segment on the loopback, counted
 * by the kernel in tcpi_data_segs_in), complete and in order. */
static void test_burst_answered_in_one_write(void **state)
{
    struct ctx *c = *state;
    int fd = ts_connect(c->port, 10000);
    assert_true(fd >= 0);
    enum { N = 40 };
    static uint8_t buf[N * 100];
    size_t off = 0;
    for (int i = 0; i < N; i++) {
        char body[128];
        int n =
            i % 2 ? snprintf(body, sizeof body, "%04dB20008BURST%03d", i, i)
                  : snprintf(
                        body, sizeof body,
                        "%04dCA0406FBB23A5214DFBAB32D775A38E4AB12DC80B186C30902B00303550000025321",
                        i);
        buf[off++] = 0;
        buf[off++] = (uint8_t)n;
        memcpy(buf + off, body, (size_t)n);
        off += (size_t)n;
    }
    struct tcp_info ti0, ti1;
    socklen_t tl = sizeof ti0;
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti0, &tl), 0);
    assert_int_equal(ts_send_all(fd, buf, off), 0);
    for (int i = 0; i < N; i++) {
        char got[256], want[256];
        ssize_t n = ts_recv_frame2(fd, (uint8_t *)got, sizeof got - 1);
        assert_true(n > 0);
        got[n] = '\0';
        if (i % 2)
            snprintf(want, sizeof want, "%04dB300BURST%03d", i, i);
        else
            snprintf(want, sizeof want, "%04dCB0004F7808F2CBEC6316803", i);
        assert_string_equal(got, want);
    }
    tl = sizeof ti1;
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti1, &tl), 0);
    assert_int_equal(ti1.tcpi_data_segs_in - ti0.tcpi_data_segs_in, 1);
    close(fd);
}

static void test_many_connections(void **state)
{
    struct ctx *c = *state;
    enum { N = 64 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = ts_connect(c->port, 10000);
        assert_true(fds[i] >= 0);
    }
    /* all send first, then all read: the daemon holds them concurrently */
    for (int i = 0; i < N; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "C%03dB20003%03d", i, i);
        assert_int_equal(send_frame(fds[i], body, (size_t)n), 0);
    }
    for (int i = N; i-- > 0;) {
        char got[64], want[64];
        ssize_t n = ts_recv_frame2(fds[i], (uint8_t *)got, sizeof got - 1);
        assert_true(n > 0);
        got[n] = '\0';
        snprintf(want, sizeof want, "C%03dB300%03d", i, i);
        assert_string_equal(got, want);
        close(fds[i]);
    }
}

static void test_malformed_and_unknown(void **state)
{
    struct ctx *c = *state;
    int fd = ts_connect(c->port, 10000);
    assert_true(fd >= 0);
    char got[512];
    static const struct {
        const char *req, *resp;
    } cases[] = {
        { "0001ZQ1234", "0001ZZ00" },                  /* unknown command */
        { "0002BU0200406FBB23A5214DZ", "0002BV15" },   /* not hex */
        { "0003BU0200406FBB23A5214DF99", "0003BV52" }, /* trailing field */
        { "0004BU020", "0004BV15" },                   /* short */
        { "0005B20009PING", "0005B380" },              /* length mismatch */
        { "0006CA0406FBB23A5214DFBAB32D775A38E4AB12DC80B186C30902B09903550000025321",
          "0006CB23" },                                    /* bad PIN block format */
        { "00", "00  ZZ51" },                              /* no room for a command */
        { "0007NC", "0007ND00" TEST_LMK_KCV "0007-E000" }, /* still serving */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_true(roundtrip(fd, cases[i].req, got, sizeof got) > 0);
        assert_string_equal(got, cases[i].resp);
    }
    /* an empty frame and a binary one */
    assert_int_equal(send_frame(fd, "", 0), 0);
    ssize_t n = ts_recv_frame2(fd, (uint8_t *)got, sizeof got);
    assert_int_equal(n, 8);
    assert_memory_equal(got, "    ZZ51", 8);
    assert_int_equal(send_frame(fd, "\xff\x00\x01\x02\x80\x81", 6), 0);
    n = ts_recv_frame2(fd, (uint8_t *)got, sizeof got);
    assert_int_equal(n, 8);
    assert_memory_equal(got, "\xff\x00\x01\x02ZZ00", 8);
    close(fd);
}

static void test_oversize_closes_only_that_connection(void **state)
{
    struct ctx *c = *state;
    int good = ts_connect(c->port, 10000), bad = ts_connect(c->port, 10000);
    assert_true(good >= 0 && bad >= 0);
    char got[512];
    assert_true(roundtrip(good, "GOODNC", got, sizeof got) > 0);
    /* one valid request, then a length prefix over --max-frame */
    /* Only the prefix of the oversize frame is sent (in the same write as the
     * valid frame): bytes left unread at close would make the kernel answer
     * with a reset, which could discard the answer before we read it. */
    const uint8_t two[] = { 0,
                            12,
                            'B',
                            'A',
                            'D',
                            '1',
                            'B',
                            '2',
                            '0',
                            '0',
                            '0',
                            '2',
                            'o',
                            'k',
                            (uint8_t)((MAX_FRAME + 1) >> 8),
                            (uint8_t)(MAX_FRAME + 1) };
    assert_int_equal(ts_send_all(bad, two, sizeof two), 0);
    /* the answer to the valid request still arrives, then the close */
    ssize_t n = ts_recv_frame2(bad, (uint8_t *)got, sizeof got - 1);
    assert_int_equal(n, 10);
    assert_memory_equal(got, "BAD1B300ok", 10);
    assert_int_equal(ts_recv_frame2(bad, (uint8_t *)got, sizeof got), 0);
    close(bad);
    /* the other connection is unaffected */
    assert_true(roundtrip(good, "GOODB20002hi", got, sizeof got) > 0);
    assert_string_equal(got, "GOODB300hi");
    close(good);
    /* a frame of exactly the maximum is fine */
    int fd = ts_connect(c->port, 10000);
    static char body[MAX_FRAME + 1];
    memcpy(body, "MAXXB2", 6);
    snprintf(body + 6, 5, "%04X", MAX_FRAME - 10);
    memset(body + 10, 'y', MAX_FRAME - 10);
    assert_int_equal(send_frame(fd, body, MAX_FRAME), 0);
    static uint8_t resp[MAX_FRAME + 16];
    n = ts_recv_frame2(fd, resp, sizeof resp);
    assert_int_equal(n, 8 + MAX_FRAME - 10);
    assert_memory_equal(resp, "MAXXB300", 8);
    close(fd);
}

static void test_log_has_codes_not_secrets(void **state)
{
    struct ctx *c = *state;
    /* the last event of the earlier tests; everything before it is flushed too */
    assert_true(ts_wait_file_contains(c->log, "frame over the maximum", 10000));
    assert_true(ts_file_contains(c->log, "\"cmd\":\"CA\""));
    assert_true(ts_file_contains(c->log, "\"err\":\"23\""));
    assert_true(ts_file_contains(c->log, "latency_us"));
    assert_true(ts_file_contains(c->log, "frame over the maximum"));
    /* never a key, a PIN block, a CVV request's PAN, or an answer's PIN block */
    assert_false(ts_file_contains(c->log, "0406FBB23A5214DF"));
    assert_false(ts_file_contains(c->log, "BAB32D775A38E4AB"));
    assert_false(ts_file_contains(c->log, "DC80B186C30902B0"));
    assert_false(ts_file_contains(c->log, "F7808F2CBEC63168"));
    assert_false(ts_file_contains(c->log, "4123456789012345"));
}

/* A peer that half-closes after its requests still gets every answer. */
static void test_half_close_gets_answers(void **state)
{
    struct ctx *c = *state;
    int fd = ts_connect(c->port, 10000);
    assert_true(fd >= 0);
    for (int i = 0; i < 3; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "HC%02dB20001%d", i, i);
        assert_int_equal(send_frame(fd, body, (size_t)n), 0);
    }
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    for (int i = 0; i < 3; i++) {
        char got[64], want[64];
        ssize_t n = ts_recv_frame2(fd, (uint8_t *)got, sizeof got - 1);
        assert_true(n > 0);
        got[n] = '\0';
        snprintf(want, sizeof want, "HC%02dB300%d", i, i);
        assert_string_equal(got, want);
    }
    assert_int_equal(ts_recv_frame2(fd, (uint8_t *)got_sink(), 16), 0);
    close(fd);
}

/* A client that writes without reading its answers is throttled (the daemon
 * stops reading it) while other clients are served; once it reads, every
 * answer arrives, in order. */
struct flood {
    int fd;
    int frames;
    int rc;
};

static void *flood_writer(void *arg)
{
    struct flood *fl = arg;
    static char body[1100];
    memcpy(body, "FLDDB2", 6);
    snprintf(body + 6, 5, "%04X", 1000);
    memset(body + 10, 'z', 1000);
    fl->rc = 0;
    for (int i = 0; i < fl->frames && fl->rc == 0; i++) {
        memcpy(body + 10, &"0123456789"[i % 10], 1);
        fl->rc = send_frame(fl->fd, body, 1010);
    }
    return NULL;
}

static void test_slow_reader_is_throttled(void **state)
{
    struct ctx *c = *state;
    struct flood fl = { .fd = ts_connect(c->port, 30000), .frames = 6000 }; /* ~6 MB of answers */
    assert_true(fl.fd >= 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, flood_writer, &fl), 0);
    usleep(300000);
    /* meanwhile another client is served */
    int other = ts_connect(c->port, 10000);
    char got[2048];
    assert_true(roundtrip(other, "OTHRB20003abc", got, sizeof got) > 0);
    assert_string_equal(got, "OTHRB300abc");
    close(other);
    /* now read everything */
    for (int i = 0; i < fl.frames; i++) {
        ssize_t n = ts_recv_frame2(fl.fd, (uint8_t *)got, sizeof got);
        assert_int_equal(n, 1008);
        assert_memory_equal(got, "FLDDB300", 8);
        assert_int_equal(got[8], "0123456789"[i % 10]);
    }
    pthread_join(th, NULL);
    assert_int_equal(fl.rc, 0);
    close(fl.fd);
}

/* SIGHUP reopens the log file (logrotate renames it first). */
static void test_sighup_reopens_log(void **state)
{
    struct ctx *c = *state;
    char rotated[600];
    snprintf(rotated, sizeof rotated, "%s.1", c->log);
    assert_int_equal(rename(c->log, rotated), 0);
    assert_int_equal(kill(c->pid, SIGHUP), 0);
    /* the reopen creates the file again */
    int reopened = 0;
    for (int i = 0; i < 200 && !reopened; i++) {
        reopened = access(c->log, F_OK) == 0;
        if (!reopened)
            usleep(50000);
    }
    assert_true(reopened);
    int fd = ts_connect(c->port, 10000);
    char got[128];
    assert_true(roundtrip(fd, "HUP1YQ", got, sizeof got) > 0); /* logged at info */
    close(fd);
    assert_true(ts_wait_file_contains(c->log, "\"cmd\":\"YQ\"", 10000));
    assert_false(ts_file_contains(rotated, "\"cmd\":\"YQ\""));
}

/* --lmk: an LMK file replaces the test LMK (NC shows its check value); a bad
 * file or bad options stop the daemon at start with a message. */
static void test_lmk_file_and_bad_options(void **state)
{
    (void)state;
    /* The test LMK but for pair 00-01 (which NC's check value shows). */
    const char *pairs[HSM_LMK_PAIRS];
    memcpy(pairs, hsm_test_lmk, sizeof pairs);
    pairs[0] = "0123456789ABCDEFFEDCBA9876543210";
    const char *dir = ts_tmpdir("hsm_sim_lmk");
    char path[512], bad[512], out[512], listen[64];
    snprintf(path, sizeof path, "%s/lmk.txt", dir);
    snprintf(bad, sizeof bad, "%s/bad.txt", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# test LMK with pair 00-01 replaced\n");
    for (int i = 0; i < 20; i++)
        fprintf(f, "%02d-%02d %s\n", 2 * i, 2 * i + 1, pairs[i]);
    fclose(f);
    f = fopen(bad, "w");
    assert_non_null(f);
    fprintf(f, "00-01 0000000000000000000000000000000\n");
    fclose(f);

    uint16_t port = ts_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
    const char *args[] = { "--listen", listen, "--lmk", path, "--header-len", "2", NULL };
    pid_t pid = ts_spawn("hsm-sim", args, out);
    assert_true(pid > 0);
    assert_int_equal(ts_wait_port(port, 10000), 0);
    int fd = ts_connect(port, 10000);
    char got[128];
    /* KCV of 2TDEA 0123456789ABCDEFFEDCBA9876543210 (crypto.md §1) */
    assert_true(roundtrip(fd, "ABNC", got, sizeof got) > 0);
    assert_string_equal(got, "ABND0008D7B4FB629D08850007-E000");
    close(fd);
    int st = ts_stop(pid, SIGINT, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    const char *args_bad[] = { "--listen", listen, "--lmk", bad, NULL };
    pid = ts_spawn("hsm-sim", args_bad, out);
    st = ts_stop(pid, 0, 10000); /* signal 0: just wait for it to exit */
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    assert_true(ts_file_contains(out, "bad.txt:1"));
    assert_false(ts_file_contains(out, "0000000000000000000000000000000"));

    const char *const bad_args[][4] = { { "--header-len", "65", NULL },
                                        { "--max-frame", "70000", NULL },
                                        { "--listen", "example.com:1500", NULL },
                                        { "--bogus", NULL } };
    for (size_t i = 0; i < sizeof bad_args / sizeof bad_args[0]; i++) {
        pid = ts_spawn("hsm-sim", bad_args[i], out);
        st = ts_stop(pid, 0, 10000);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_pairs),
        cmocka_unit_test(test_nc_wire_example),
        cmocka_unit_test(test_pipelined_in_order),
        cmocka_unit_test(test_burst_answered_in_one_write),
        cmocka_unit_test(test_many_connections),
        cmocka_unit_test(test_malformed_and_unknown),
        cmocka_unit_test(test_oversize_closes_only_that_connection),
        cmocka_unit_test(test_log_has_codes_not_secrets),
        cmocka_unit_test(test_half_close_gets_answers),
        cmocka_unit_test(test_slow_reader_is_throttled),
        cmocka_unit_test(test_sighup_reopens_log),
        cmocka_unit_test(test_lmk_file_and_bad_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
