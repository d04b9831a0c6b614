/* acquirer-sim over real loopback TCP against a tiny fake switch that runs in a thread
 * of this test process: it verifies each request's MAC with libhsm and answers with
 * responses MACed with libhsm (or stays silent, breaks the framing, spoils the MAC).
 * Proves the sending core's pipelining and matching (answers come back in reverse
 * order), timeouts, and the CLI's framing, MAC checking, output and exit codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "acquirer.h"
#include "hex.h"
#include "hsm.h"
#include "testsupport.h"

/* ------------------------------------------------------------------ the fake switch */

enum fake_mode { F_ANSWER, F_SILENT, F_BAD_FRAME, F_BAD_MAC, F_REVERSE };

/* A wallet of the fake's ledger, for tests that follow balances (ledger()). */
struct fake_wallet {
    char pan[20];
    char ccy[4]; /* numeric */
    long long bal;
    const char *inquiry_rc; /* NULL: inquiries approved with the balance; else this code */
};

struct fake {
    int lfd;
    uint16_t port;
    enum fake_mode mode;
    int batch; /* F_REVERSE: answer after this many requests, last first */
    bool pos;  /* bcd87 with 2-byte length + TPDU framing (TERM0004), else ascii87 / 2b */
    volatile int stop;
    pthread_t th;
    volatile int requests, reversals_with_de90, bad_request_macs;
    char de103[29]; /* DE 103 of the last transfer */
    /* The ledger (empty unless a test fills it before sending) and the reversal it owes: the
     * declined transfer's debit, given back just before the sender's reverse_after-th balance
     * inquiry after it (never when reverse_after is 0). */
    struct fake_wallet w[4];
    int nw, reverse_after, owed_left, owed_w;
    long long owed;
    volatile int inquiries; /* balance inquiries (processing code 30) answered */
};

static const char *tak_of(const uint8_t *tid, size_t n)
{
    if (n == 8 && memcmp(tid, "TERM0002", 8) == 0)
        return "5E5E5E5E5E5E5E5E6D6D6D6D6D6D6D6D";
    if (n == 8 && memcmp(tid, "TERM0003", 8) == 0)
        return "7A7A7A7A7A7A7A7A8F8F8F8F8F8F8F8F";
    if (n == 8 && memcmp(tid, "TERM0004", 8) == 0)
        return "2C2C2C2C2C2C2C2C3B3B3B3B3B3B3B3B";
    return "3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C";
}

static struct hsm_key *tak_key(const char *hex)
{
    uint8_t k[16];
    struct hsm_key *key = NULL;
    if (at_hex_decode(hex, 32, k, sizeof k) != 16 ||
        hsm_key_from_clear(HSM_KT_TAK, k, 16, &key) != HSM_OK)
        return NULL;
    return key;
}

/* Reads exactly n bytes, giving up when the fake is stopped or the peer closes. */
static int read_n(struct fake *f, int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, 100);
        if (f->stop)
            return -1;
        if (r <= 0)
            continue;
        ssize_t k = read(fd, buf + got, n - got);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

static struct fake_wallet *wallet_of(struct fake *f, const uint8_t *pan, size_t n)
{
    for (int i = 0; pan && i < f->nw; i++)
        if (strlen(f->w[i].pan) == n && memcmp(f->w[i].pan, pan, n) == 0)
            return &f->w[i];
    return NULL;
}

/* What request m (answered rc so far) does to the ledger, as an issuer behind a switch would:
 * a balance inquiry answers the wallet's balance (into de54: 20 characters) or its
 * inquiry_rc; an approved purchase debits the amount; a transfer debits the amount and the fee
 * (1.00) and credits 656 to a recipient in the ledger — except the declined one (57.00), whose
 * debit (the AFT) is given back later (the switch's reversal). Returns the answer's code;
 * de54 is "" when the answer carries the fake's fixed balance or none. */
static const char *ledger(struct fake *f, const struct iso_msg *m, const char *rc, char de54[48])
{
    size_t n = 0, pl = 0, al = 0, tl = 0;
    const uint8_t *proc = iso_get(m, 3, &n), *pan = iso_get(m, 2, &pl), *amt = iso_get(m, 4, &al);
    struct fake_wallet *w = wallet_of(f, pan, pl);
    de54[0] = '\0';
    if (proc && proc[0] == '3')
        f->inquiries++;
    if (!w || !proc || strcmp(rc, "00") != 0)
        return rc;
    char digits[13] = "0";
    if (amt && al == 12)
        memcpy(digits, amt, 12);
    long long a = strtoll(digits, NULL, 10);
    if (proc[0] == '3') {
        if (f->owed_w == (int)(w - f->w) && f->owed_left > 0 && --f->owed_left == 0) {
            w->bal += f->owed;
            f->owed = 0;
        }
        if (w->inquiry_rc)
            return w->inquiry_rc;
        snprintf(de54, 48, "0002%.3s%c%012lld", w->ccy, w->bal < 0 ? 'D' : 'C', llabs(w->bal));
    } else if (proc[0] == '0' && proc[1] == '0') {
        w->bal -= a;
    } else if (proc[0] == '4' && proc[1] == '0' && a == 5700) {
        w->bal -= a;
        f->owed = a;
        f->owed_w = (int)(w - f->w);
        f->owed_left = f->reverse_after;
    } else if (proc[0] == '4' && proc[1] == '0') {
        w->bal -= a + 100;
        const uint8_t *to = iso_get(m, 103, &tl);
        struct fake_wallet *r = wallet_of(f, to, tl);
        if (r)
            r->bal += 656;
    }
    return rc;
}

/* Builds the answer to req (ascii87) into out; returns its length (0 = none). */
static size_t answer(struct fake *f, const uint8_t *req, size_t len, uint8_t *out, size_t cap)
{
    const struct iso_dialect *d = iso_dialect_find(f->pos ? "bcd87" : "ascii87");
    size_t wire = f->pos ? 8 : 16; /* the MAC: 8 raw bytes or 16 hex characters */
    uint8_t arena[4096], arena2[2048];
    struct iso_msg m, r;
    struct iso_err ie;
    iso_msg_init(&m, arena, sizeof arena);
    if (iso_unpack(d, req, len, &m, &ie) != 0)
        return 0;
    size_t tl = 0, n = 0;
    const uint8_t *tid = iso_get(&m, 41, &tl);
    struct hsm_key *tak = tak_key(tak_of(tid, tl));
    const char *rc = "00";
    int mf = iso_has(&m, 128) ? 128 : 64;
    uint8_t mac[8];
    if (wire == 8 && len >= 8)
        memcpy(mac, req + len - 8, 8);
    if (!iso_has(&m, mf) || len < wire ||
        (wire == 16 && at_hex_decode((const char *)req + len - 16, 16, mac, 8) != 8) ||
        hsm_mac_verify(tak, HSM_MAC_ISO9797_3, HSM_PAD_1, req, len - wire, mac, 8) != HSM_OK) {
        rc = "63";
        f->bad_request_macs++;
    } else {
        const uint8_t *amt = iso_get(&m, 4, &n);
        if (amt && n == 12 && memcmp(amt, "000000005100", 12) == 0)
            rc = "51";
    }
    if (m.mti[1] == '4' && iso_has(&m, 90))
        f->reversals_with_de90++;
    char de54[48];
    rc = ledger(f, &m, rc, de54);

    iso_msg_init(&r, arena2, sizeof arena2);
    char mti[5];
    memcpy(mti, m.mti, 4);
    mti[2] = (char)(mti[2] + 1);
    mti[4] = '\0';
    if (iso_set_mti(&r, mti) != 0)
        return 0;
    static const int echo[] = { 2, 3, 4, 7, 11, 37, 41, 49, 70, 90 };
    for (size_t i = 0; i < sizeof echo / sizeof echo[0]; i++) {
        const uint8_t *p = iso_get(&m, echo[i], &n);
        if (p && iso_set(&r, echo[i], p, n) != 0)
            return 0;
    }
    if (iso_set_str(&r, 39, rc) != 0)
        return 0;
    if (strcmp(rc, "00") == 0 && iso_set_str(&r, 38, "AB12CD") != 0)
        return 0;
    const uint8_t *proc = iso_get(&m, 3, &n);
    if (proc && proc[0] == '3' && strcmp(rc, "00") == 0 &&
        iso_set_str(&r, 54, de54[0] ? de54 : "0002504C000000098750") != 0)
        return 0;
    /* A transfer answered as docs/acquirer-interface.md says the switch will: 00 with what the
     * recipient got, the rate, the fee and DE 15; a declined leg in DE 44 (amount 57.00). */
    const uint8_t *to = iso_get(&m, 103, &n);
    if (proc && proc[0] == '4' && proc[1] == '0' && to && n < sizeof f->de103) {
        memcpy(f->de103, to, n);
        f->de103[n] = '\0';
        const uint8_t *amt = iso_get(&m, 4, &n);
        bool leg_declined = amt && n == 12 && memcmp(amt, "000000005700", 12) == 0;
        if (leg_declined
                ? iso_set_str(&r, 39, "57") != 0 || iso_set_str(&r, 44, "OCT57") != 0
                : iso_set_str(&r, 6, "000000000656") != 0 || iso_set_str(&r, 10, "40655957") != 0 ||
                      iso_set_str(&r, 28, "D00000100") != 0 || iso_set_str(&r, 51, "952") != 0)
            return 0;
        if (iso_set_str(&r, 15, "1206") != 0)
            return 0;
        if (leg_declined)
            iso_unset(&r, 38);
    }
    static const uint8_t zero[8];
    int rmf = iso_next(&r, 64) ? 128 : 64;
    if (iso_set(&r, rmf, zero, 8) != 0 || iso_pack(d, &r, out, cap, &n, &ie) != 0)
        return 0;
    uint8_t v[16];
    size_t vl = 0;
    char hex[17];
    if (hsm_mac_generate(tak, HSM_MAC_ISO9797_3, HSM_PAD_1, out, n - wire, v, &vl) != HSM_OK)
        return 0;
    at_hex_encode(v, 8, hex);
    if (wire == 16)
        memcpy(out + n - 16, hex, 16);
    else
        memcpy(out + n - 8, v, 8);
    if (f->mode == F_BAD_MAC)
        out[n - 1] = out[n - 1] == '0' ? '1' : '0';
    hsm_key_release(tak);
    return n;
}

/* One write per frame (header + message), as a real peer with Nagle in mind does. With
 * tpdu (POS framing) the length covers the TPDU, whose addresses are swapped back. */
static void send_frame(int fd, const uint8_t *msg, size_t n, const uint8_t *tpdu)
{
    uint8_t buf[2048];
    size_t h = tpdu ? 7 : 2;
    if (n + h > sizeof buf)
        return;
    buf[0] = (uint8_t)((n + h - 2) >> 8);
    buf[1] = (uint8_t)(n + h - 2);
    if (tpdu) {
        memcpy(buf + 2, tpdu, 5);
        iso_tpdu_swap(buf + 2);
    }
    memcpy(buf + h, msg, n);
    (void)ts_send_all(fd, buf, n + h);
}

static void serve(struct fake *f, int fd)
{
    static uint8_t held[64][1024];
    static size_t held_len[64];
    int nheld = 0;
    for (;;) {
        uint8_t hdr[2], req[4096], resp[1024];
        if (read_n(f, fd, hdr, 2) != 0)
            return;
        size_t len = (size_t)hdr[0] << 8 | hdr[1];
        if (len == 0 || len > sizeof req || read_n(f, fd, req, len) != 0)
            return;
        uint8_t tpdu[5], *tp = NULL;
        if (f->pos) {
            if (len <= 5)
                return;
            memcpy(tpdu, req, 5);
            tp = tpdu;
            memmove(req, req + 5, len - 5);
            len -= 5;
        }
        f->requests++;
        if (f->mode == F_SILENT)
            continue;
        if (f->mode == F_BAD_FRAME) {
            static const uint8_t zero_len[2] = { 0, 0 };
            (void)ts_send_all(fd, zero_len, 2);
            continue;
        }
        size_t n = answer(f, req, len, resp, sizeof resp);
        if (n == 0)
            return;
        if (f->mode != F_REVERSE) {
            send_frame(fd, resp, n, tp);
            continue;
        }
        memcpy(held[nheld], resp, n);
        held_len[nheld++] = n;
        if (nheld == f->batch || nheld == 64) {
            while (nheld > 0) {
                nheld--;
                send_frame(fd, held[nheld], held_len[nheld], NULL);
            }
        }
    }
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    while (!f->stop) {
        struct pollfd p = { .fd = f->lfd, .events = POLLIN };
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        serve(f, fd);
        close(fd);
    }
    return NULL;
}

static void fake_start_pos(struct fake *f, enum fake_mode mode, bool pos)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    f->pos = pos;
    f->lfd = ts_listen(0, 16, &f->port);
    assert_true(f->lfd >= 0);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_start(struct fake *f, enum fake_mode mode)
{
    fake_start_pos(f, mode, false);
}

static void fake_stop(struct fake *f)
{
    f->stop = 1;
    pthread_join(f->th, NULL);
    close(f->lfd);
}

/* ------------------------------------------------------------------ running the CLI */

static char tmpdir[512];

/* Runs acquirer-sim with args; returns its exit code (-1 on a hang, after killing it).
 * Its stdout+stderr land in out (NUL-terminated). */
static int run_cli(const char *const args[], char *out, size_t cap)
{
    char path[600];
    snprintf(path, sizeof path, "%s/out.txt", tmpdir);
    unlink(path);
    pid_t pid = ts_spawn("acquirer-sim", args, path);
    assert_true(pid > 0);
    int status = -1;
    for (int i = 0; i < 6000; i++) { /* 60 s hang guard */
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        usleep(10000);
        if (i == 5999) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
    }
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(out, 1, cap - 1, f) : 0;
    out[n] = '\0';
    if (f)
        fclose(f);
    printf("%s", out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void hostarg(char *buf, size_t cap, uint16_t port)
{
    snprintf(buf, cap, "127.0.0.1:%u", port);
}

static char state_dir[600];

static void test_cli_send_approve_and_decline(void **state)
{
    struct fake f;
    fake_start(&f, F_ANSWER);
    char host[32], out[8192];
    hostarg(host, sizeof host, f.port);
    const char *a1[] = { "--state-dir", state_dir,  "--host",   host,    "send",
                         "--type",      "purchase", "--amount", "12.50", NULL };
    assert_int_equal(run_cli(a1, out, sizeof out), 0);
    assert_non_null(strstr(out, "rc 00 (approved)"));
    assert_non_null(strstr(out, "MAC ok"));
    assert_non_null(strstr(out, "489001******0012"));
    assert_non_null(strstr(out, "12.50 MAD"));
    assert_non_null(strstr(out, "auth AB12CD"));
    assert_null(strstr(out, "4890010000000012"));

    /* A decline is still exit 0. */
    const char *a2[] = { "--state-dir", state_dir,        "--host", host,     "send", "--type",
                         "purchase",    "--amount-minor", "5100",   "--json", NULL };
    assert_int_equal(run_cli(a2, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"rc\":\"51\""));
    assert_non_null(strstr(out, "\"mac\":\"ok\""));

    /* A wrong request MAC: the switch answers 63; still an answer. */
    const char *a3[] = { "--state-dir", state_dir,  "--host", host,        "send",   "--type",
                         "purchase",    "--amount", "1",      "--bad-mac", "--dump", NULL };
    assert_int_equal(run_cli(a3, out, sizeof out), 0);
    assert_non_null(strstr(out, "rc 63"));
    assert_non_null(strstr(out, "--- request"));
    assert_non_null(strstr(out, "--- response"));
    assert_null(strstr(out, "4890010000000012"));
    assert_int_equal(f.bad_request_macs, 1);

    /* DUKPT-AES terminal: the fake verifies its MAC (DE 128) with TERM0003's TAK. */
    const char *a4[] = { "--state-dir", state_dir, "--host",           host,
                         "send",        "--type",  "balance",          "--terminal",
                         "TERM0003",    "--pan",   "4890040000000043", NULL };
    assert_int_equal(run_cli(a4, out, sizeof out), 0);
    assert_non_null(strstr(out, "rc 00"));
    assert_non_null(strstr(out, "balance 987.50 MAD"));
    assert_int_equal(f.bad_request_macs, 1);
    fake_stop(&f);
}

/* --type transfer: the recipient reaches the switch in DE 103 (a PAN or a mobile number as
 * typed), the answer's DE 6/51, 10, 28, 15 and DE 44 are on the readable line and in --json; a
 * recipient acquirer-sim cannot send is refused before anything leaves (exit 1). */
static void test_cli_transfer(void **state)
{
    struct fake f;
    fake_start(&f, F_ANSWER);
    char host[32], out[8192];
    hostarg(host, sizeof host, f.port);
    const char *a1[] = { "--state-dir", state_dir, "--host",
                         host,          "send",    "--type",
                         "transfer",    "--to",    "4890020000000029",
                         "--amount",    "10.00",   NULL };
    assert_int_equal(run_cli(a1, out, sizeof out), 0);
    assert_string_equal(f.de103, "4890020000000029");
    assert_non_null(strstr(out, "0200 transfer 489001******0012 10.00 MAD to 489002******0029 "));
    assert_non_null(strstr(out, "rc 00 (approved) auth AB12CD recipient gets 656 XOF rate "
                                "65.5957 fee 1.00 MAD settlement 1206 MAC ok"));
    assert_null(strstr(out, "4890020000000029"));

    const char *a2[] = { "--state-dir", state_dir,  "--host",      host,           "send",
                         "--type",      "transfer", "--to-msisdn", "+22236123456", "--amount",
                         "57.00",       "--json",   NULL };
    assert_int_equal(run_cli(a2, out, sizeof out), 0);
    assert_string_equal(f.de103, "+22236123456");
    assert_non_null(strstr(out, "\"rc\":\"57\""));
    assert_non_null(strstr(out, "\"info\":\"OCT57\""));
    assert_non_null(strstr(out, "\"settlement_date\":\"1206\""));
    assert_null(strstr(out, "billing_minor"));

    int before = f.requests;
    const char *a3[] = { "--state-dir", state_dir, "--host",           host,       "send", "--type",
                         "transfer",    "--to",    "4890020000000028", "--amount", "1",    NULL };
    assert_int_equal(run_cli(a3, out, sizeof out), 1);
    assert_non_null(strstr(out, "to: expected the recipient's PAN"));
    const char *a4[] = { "--state-dir", state_dir,  "--host",   host, "send",
                         "--type",      "transfer", "--amount", "1",  NULL };
    assert_int_equal(run_cli(a4, out, sizeof out), 1);
    assert_non_null(strstr(out, "recipient is missing"));
    assert_int_equal(f.requests, before);
    fake_stop(&f);
}

/* TERM0004: bcd87 with the 2-byte length + TPDU framing, binary MAC. */
static void test_cli_pos_terminal(void **state)
{
    struct fake f;
    fake_start_pos(&f, F_ANSWER, true);
    char host[32], out[8192];
    hostarg(host, sizeof host, f.port);
    const char *a1[] = { "--state-dir", state_dir,    "--host",   host,       "send", "--type",
                         "purchase",    "--terminal", "TERM0004", "--amount", "7.00", NULL };
    assert_int_equal(run_cli(a1, out, sizeof out), 0);
    assert_non_null(strstr(out, "TERM0004 0200 purchase"));
    assert_non_null(strstr(out, "rc 00 (approved)"));
    assert_non_null(strstr(out, "MAC ok"));
    const char *a2[] = { "--state-dir", state_dir,  "--host",     host,       "send",
                         "--type",      "purchase", "--terminal", "TERM0004", "--amount",
                         "51.00",       "--json",   NULL };
    assert_int_equal(run_cli(a2, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"rc\":\"51\""));
    assert_int_equal(f.bad_request_macs, 0);
    fake_stop(&f);
}

static void test_cli_transport_errors(void **state)
{
    char host[32], out[8192];
    struct fake f;

    /* Nothing listens. */
    hostarg(host, sizeof host, ts_free_port());
    const char *a1[] = { "--state-dir", state_dir, "--host", host, "send", "--type", "echo", NULL };
    assert_int_equal(run_cli(a1, out, sizeof out), 2);
    assert_non_null(strstr(out, "ERROR"));

    /* A silent switch: timeout. */
    fake_start(&f, F_SILENT);
    hostarg(host, sizeof host, f.port);
    const char *a2[] = { "--state-dir", state_dir,  "--host", host,           "send", "--type",
                         "purchase",    "--amount", "3",      "--timeout-ms", "300",  NULL };
    assert_int_equal(run_cli(a2, out, sizeof out), 2);
    assert_non_null(strstr(out, "timeout")); /* response timeout, or connect timeout */
    fake_stop(&f);

    /* Bad framing (a zero-length frame). A generous timeout: only a hang guard. */
    const char *a3[] = { "--state-dir", state_dir,  "--host", host,           "send",  "--type",
                         "purchase",    "--amount", "3",      "--timeout-ms", "30000", NULL };
    fake_start(&f, F_BAD_FRAME);
    hostarg(host, sizeof host, f.port);
    assert_int_equal(run_cli(a3, out, sizeof out), 2);
    assert_non_null(strstr(out, "framing"));
    fake_stop(&f);

    /* A response whose MAC does not verify. */
    fake_start(&f, F_BAD_MAC);
    hostarg(host, sizeof host, f.port);
    assert_int_equal(run_cli(a3, out, sizeof out), 3);
    assert_non_null(strstr(out, "MAC BAD"));
    fake_stop(&f);
}

static void write_file(const char *path, const char *text)
{
    assert_int_equal(ts_write_file(path, text), 0);
}

static void test_cli_run(void **state)
{
    struct fake f;
    fake_start(&f, F_ANSWER);
    char host[32], out[16384], scn[600];
    hostarg(host, sizeof host, f.port);
    snprintf(scn, sizeof scn, "%s/good.scn", tmpdir);
    write_file(scn, "# certification-style script\n"
                    "type=purchase amount=12.50 id=p1 expect=00\n"
                    "type=purchase amount=51.00 expect=51\n"
                    "type=reversal original=p1 expect=00\n"
                    "type=purchase terminal=TERM0002 pan=4890020000000029 amount=500 expect=00\n"
                    "type=cash terminal=TERM0003 pan=4890040000000043 amount=50 expect=00\n"
                    "type=balance pan=4890020000000029 expect=00\n"
                    "type=purchase amount=1 bad-mac expect=63\n"
                    "type=echo expect=00\n");
    const char *a1[] = { "--state-dir", state_dir, "--host", host, "run", scn, NULL };
    assert_int_equal(run_cli(a1, out, sizeof out), 0);
    assert_non_null(strstr(out, "8 passed, 0 failed"));
    assert_non_null(strstr(out, "PASS line 2"));
    assert_int_equal(f.reversals_with_de90, 1);

    /* A mismatch fails the run with the line named. */
    snprintf(scn, sizeof scn, "%s/fail.scn", tmpdir);
    write_file(scn, "type=purchase amount=1 expect=00\n"
                    "type=purchase amount=2 expect=05\n");
    assert_int_equal(run_cli(a1, out, sizeof out), 1);
    assert_non_null(strstr(out, "FAIL line 2"));
    assert_non_null(strstr(out, "expected 05"));
    assert_non_null(strstr(out, "1 passed, 1 failed"));
    fake_stop(&f);

    /* A malformed file: nothing is sent, the line is named. */
    snprintf(scn, sizeof scn, "%s/bad.scn", tmpdir);
    write_file(scn, "type=purchase amount=1 expect=00\ntype=purchase amount=1.234 expect=00\n");
    assert_int_equal(run_cli(a1, out, sizeof out), 2);
    assert_non_null(strstr(out, "bad.scn:2:"));
}

/* The fake's ledger of demo cards: the MAD card (1,000.00), the XOF card (500,000) and the
 * blocked MAD card (its inquiries declined 05). */
static void fake_ledger(struct fake *f, int reverse_after)
{
    static const struct fake_wallet w[] = {
        { "4890010000000012", "504", 100000, NULL },
        { "4890020000000029", "952", 500000, NULL },
        { "4890010000000053", "504", 100000, "05" },
    };
    memcpy(f->w, w, sizeof w);
    f->nw = 3;
    f->reverse_after = reverse_after;
}

/* balances=: each card's balance is asked (0100 processing code 30, on the line's terminal)
 * before the line and after its answer, and shown before -> after on the line; after an answer
 * that is not 00 they are asked again until they are back (the value polling saw in between
 * shown too), or 2 s have passed. The inquiries are not lines: not counted, and one that is
 * declined shows "?" without failing its line. */
static void test_cli_run_balances(void **state)
{
    struct fake f;
    fake_start(&f, F_ANSWER);
    fake_ledger(&f, 2); /* the reversal lands before the sender's second inquiry after it */
    char host[32], out[16384], scn[600];
    hostarg(host, sizeof host, f.port);
    snprintf(scn, sizeof scn, "%s/balances.scn", tmpdir);
    write_file(scn, "type=transfer pan=4890010000000012 to=4890020000000029 amount=10.00 "
                    "balances=4890010000000012,4890020000000029 expect=00\n"
                    "type=transfer pan=4890010000000012 to=4890010000000053 amount=57.00 "
                    "balances=4890010000000012,4890010000000053 expect=57\n"
                    "type=purchase amount=1.00 balances=4890010000000012 expect=00\n"
                    "type=purchase amount=1.00 expect=00\n");
    const char *a1[] = { "--state-dir", state_dir, "--host", host, "run", scn, NULL };
    assert_int_equal(run_cli(a1, out, sizeof out), 0);
    assert_non_null(strstr(out, "4 passed, 0 failed"));
    /* 10.00 MAD + the fake's fee 1.00 out, 656 XOF in. */
    assert_non_null(strstr(out, "MAC ok"));
    assert_non_null(strstr(out, " | 489001******0012 1000.00 -> 989.00 MAD"
                                " | 489002******0029 500000 -> 500656 XOF\n"));
    /* The declined transfer: the sender's debit seen, then given back; the blocked card "?". */
    assert_non_null(strstr(out, "info OCT57"));
    assert_non_null(strstr(out, " | 489001******0012 989.00 -> 932.00 -> 989.00 MAD"
                                " | 489001******0053 ? -> ? MAD | back after "));
    assert_non_null(strstr(out, " | 489001******0012 989.00 -> 988.00 MAD\n"));
    /* Two cards around line 1 (4), around line 2 before (2) and in two rounds after (4), one
     * card around line 3 (2), none for line 4. */
    assert_int_equal(f.inquiries, 12);
    assert_int_equal(f.requests, 16);
    assert_null(strstr(out, "4890010000000012"));
    assert_null(strstr(out, "4890020000000029"));
    assert_null(strstr(out, "4890010000000053"));

    /* --json: the balances as fields; a reversal that never comes ends the polling after 2 s. */
    fake_ledger(&f, 0);
    snprintf(scn, sizeof scn, "%s/balances2.scn", tmpdir);
    write_file(scn, "type=transfer pan=4890010000000012 to=4890020000000029 amount=57.00 "
                    "balances=4890010000000012,4890010000000053 expect=57\n");
    const char *a2[] = { "--state-dir", state_dir, "--host", host, "--json", "run", scn, NULL };
    int before = f.inquiries;
    assert_int_equal(run_cli(a2, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"balances\":[{\"pan\":\"489001******0012\",\"currency\":"
                                "\"MAD\",\"before_minor\":100000,\"after_minor\":94300},"
                                "{\"pan\":\"489001******0053\",\"currency\":\"MAD\","
                                "\"before_minor\":null,\"after_minor\":null}]"));
    assert_non_null(strstr(out, "\"balances_back\":false"));
    const char *polled = strstr(out, "\"balances_polled_ms\":");
    assert_non_null(polled);
    long ms = strtol(polled + strlen("\"balances_polled_ms\":"), NULL, 10);
    assert_true(ms >= 1800 && ms < 2500);
    assert_true(f.inquiries - before >= 2 * 10); /* rounds every 100 ms, two cards each */
    assert_non_null(strstr(out, "{\"passed\":1,\"failed\":0"));
    fake_stop(&f);
}

/* ------------------------------------------------------------------ the engine in-process */

struct pipe_ctx {
    int done, answered, ok_match;
    char stans[32][7];
    struct event_base *base;
    bool up, down;
};

static void pipe_conn(void *arg, struct sim_conn *c, bool up, const char *reason)
{
    struct pipe_ctx *p = arg;
    if (up)
        p->up = true;
    else
        p->down = true;
    event_base_loopbreak(p->base);
}

/* An engine of `slots` requests on its own loop with one connection, as TERM0001, to a fake
 * switch in mode (its answers batched by `batch` when not 0), up (p->up) when engine_open
 * returns; engine_close frees it all. */
struct engine_fx {
    struct fake f;
    struct sim_terms terms;
    struct sim_term *t;
    struct event_base *base;
    struct sim_engine *e;
    struct sockaddr_in a; /* the fake's address */
    struct sim_conn *c;
};

static void engine_open(struct engine_fx *x, enum fake_mode mode, int batch, size_t slots,
                        struct pipe_ctx *p)
{
    char err[200];
    fake_start(&x->f, mode);
    x->f.batch = batch;
    assert_int_equal(sim_terms_builtin(&x->terms, err, sizeof err), 0);
    x->t = sim_terms_find(&x->terms, "TERM0001");
    x->base = event_base_new();
    x->e = NULL;
    assert_int_equal(sim_engine_new(x->base, slots, &x->e), 0);
    p->base = x->base;
    x->a = (struct sockaddr_in){ .sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                 .sin_port = htons(x->f.port) };
    x->c = sim_conn_open(x->e, (struct sockaddr *)&x->a, sizeof x->a, x->t, pipe_conn, p);
    assert_non_null(x->c);
    event_base_dispatch(x->base);
    assert_true(p->up);
}

static void engine_close(struct engine_fx *x)
{
    sim_engine_free(x->e);
    event_base_free(x->base);
    sim_terms_free(&x->terms);
    fake_stop(&x->f);
}

static struct pipe_ctx *g_pipe;

static void pipe_done(void *arg, struct sim_req *r, const struct sim_outcome *o)
{
    struct pipe_ctx *p = g_pipe;
    int i = (int)(intptr_t)arg;
    p->done++;
    if (o->status == SIM_ANSWERED) {
        p->answered++;
        bool rc_ok = strcmp(o->resp.rc, i % 2 ? "51" : "00") == 0;
        if (rc_ok && strcmp(o->resp.stan, p->stans[i]) == 0 && o->resp.mac == SIM_MAC_OK)
            p->ok_match++;
    }
    if (p->done == 20)
        event_base_loopbreak(p->base);
}

static void test_engine_pipelined_reverse_order(void **state)
{
    struct engine_fx fx;
    struct pipe_ctx p = { 0 };
    engine_open(&fx, F_REVERSE, 20, 32, &p);
    g_pipe = &p;
    char err[200];
    for (int i = 0; i < 20; i++) {
        uint8_t *buf;
        size_t cap, len;
        struct sim_req *r = sim_req_get(fx.e, &buf, &cap);
        assert_non_null(r);
        struct sim_txn txn;
        memset(&txn, 0, sizeof txn);
        txn.type = SIM_T_PURCHASE;
        snprintf(txn.pan, sizeof txn.pan, "4890010000000012");
        txn.amount = i % 2 ? 5100 : 100 + (uint64_t)i;
        struct sim_sent sent;
        assert_int_equal(sim_term_build_request(fx.t, &txn, buf, cap, &len, &sent, err, sizeof err),
                         0);
        memcpy(p.stans[i], sent.stan, 7);
        assert_int_equal(
            sim_req_send(fx.c, r, len, &sent, fx.t, 30000, 0, pipe_done, (void *)(intptr_t)i), 0);
    }
    assert_int_equal(sim_engine_inflight(fx.e), 20);
    assert_int_equal(sim_conn_inflight(fx.c), 20);
    event_base_dispatch(fx.base);
    assert_int_equal(sim_conn_inflight(fx.c), 0);
    assert_int_equal(p.done, 20);
    assert_int_equal(p.answered, 20);
    assert_int_equal(p.ok_match, 20);
    assert_int_equal(sim_engine_inflight(fx.e), 0);
    assert_int_equal(sim_engine_unmatched(fx.e), 0);
    engine_close(&fx);
}

static int timeout_status = 1;

static void timeout_done(void *arg, struct sim_req *r, const struct sim_outcome *o)
{
    timeout_status = o->status;
    event_base_loopbreak(arg);
}

static void test_engine_timeout_and_refused(void **state)
{
    struct engine_fx fx;
    struct pipe_ctx p = { 0 };
    engine_open(&fx, F_SILENT, 0, 4, &p);
    struct sim_engine *e = fx.e;
    struct sim_term *t = fx.t;
    struct event_base *base = fx.base;
    char err[200];
    uint8_t *buf;
    size_t cap, len;
    struct sim_req *r = sim_req_get(e, &buf, &cap);
    struct sim_txn x;
    memset(&x, 0, sizeof x);
    x.type = SIM_T_ECHO;
    struct sim_sent sent;
    assert_int_equal(sim_term_build_request(t, &x, buf, cap, &len, &sent, err, sizeof err), 0);
    assert_int_equal(sim_req_send(fx.c, r, len, &sent, t, 200, 0, timeout_done, base), 0);
    event_base_dispatch(base);
    assert_int_equal(timeout_status, SIM_E_TIMEOUT);
    assert_int_equal(sim_engine_inflight(e), 0);

    /* The pool is bounded: 4 slots, then NULL. */
    struct sim_req *rs[4];
    for (int i = 0; i < 4; i++)
        assert_non_null(rs[i] = sim_req_get(e, &buf, &cap));
    assert_null(sim_req_get(e, &buf, &cap));
    for (int i = 0; i < 4; i++)
        sim_req_put(e, rs[i]);

    /* The switch closes the connection with a request in flight: SIM_E_CONN, not a hang. */
    r = sim_req_get(e, &buf, &cap);
    assert_int_equal(sim_term_build_request(t, &x, buf, cap, &len, &sent, err, sizeof err), 0);
    assert_int_equal(sim_req_send(fx.c, r, len, &sent, t, 30000, 0, timeout_done, base), 0);
    fx.f.stop = 1; /* the fake closes its side */
    timeout_status = 1;
    while (timeout_status == 1)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(timeout_status, SIM_E_CONN);
    assert_true(sim_conn_closed(fx.c));
    assert_int_equal(sim_engine_inflight(e), 0);

    /* A refused connection reports down. */
    struct pipe_ctx q = { .base = base };
    struct sockaddr_in a = fx.a;
    a.sin_port = htons(ts_free_port());
    struct sim_conn *c2 = sim_conn_open(e, (struct sockaddr *)&a, sizeof a, t, pipe_conn, &q);
    assert_non_null(c2);
    event_base_dispatch(base);
    assert_true(q.down);
    assert_true(sim_conn_closed(c2));
    sim_conn_free(c2);
    engine_close(&fx);
}

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    const char *d = ts_tmpdir("acq");
    if (!d)
        return -1;
    snprintf(tmpdir, sizeof tmpdir, "%s", d);
    snprintf(state_dir, sizeof state_dir, "%s/state", tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_pipelined_reverse_order),
        cmocka_unit_test(test_engine_timeout_and_refused),
        cmocka_unit_test(test_cli_send_approve_and_decline),
        cmocka_unit_test(test_cli_pos_terminal),
        cmocka_unit_test(test_cli_transfer),
        cmocka_unit_test(test_cli_transport_errors),
        cmocka_unit_test(test_cli_run),
        cmocka_unit_test(test_cli_run_balances),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
