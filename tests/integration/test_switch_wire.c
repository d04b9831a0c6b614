/* What switchd puts on the wire, pinned byte by byte: this test plays the
 * issuer itself (a socket on the issuer link's port, the lab ZAK in clear)
 * and reads the terminal's answers raw, so that a change on both ends of a
 * link cannot hide a change of the bytes. Pinned: the MAC field (DE 64 for a
 * message without a secondary bitmap, DE 128 with one) and the MAC over the
 * bytes before it, on the request to the issuer, on the terminal's answers
 * and on the store-and-forward reversal; the reversal's DE 90 layout (original
 * MTI, the issuer-side STAN and DE 7, the acquirer zero-filled to 11 digits,
 * 11 zeros); the response MTIs; the 0420 then 0421; and the 0810 switchd
 * answers to an issuer's 0800 (every field echoed, DE 39 00, no MAC); a chip purchase with a
 * CVV2: DE 55 to the issuer as sent, DE 126 CR01M instead of the CVV2, the answer's tag 91.
 * Real processes: switchd, hsm-sim, PostgreSQL; no issuer-sim. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "hex.h"
#include "hsm.h"
#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;
static int listen_fd = -1, issuer_fd = -1;
static struct hsm_key *zak;
static const struct iso_dialect *ascii87;

/* The demo issuer's ZAK in clear (db/seed/demo_switch.sql holds it under the LMK, KCV 30825B). */
static const uint8_t LAB_ZAK[16] = { 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A,
                                     0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A };

/* One message as read off a socket: the raw bytes and their unpacked view. */
struct wire {
    uint8_t raw[4096];
    size_t len;
    uint8_t arena[ISO_ARENA_FOR(4096)];
    struct iso_msg m;
};

static void set_timeout(int fd, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* Reads one frame (2-byte length) from fd and unpacks it in ascii87. 0 or -1. */
static int read_msg(int fd, struct wire *w)
{
    struct iso_err e;
    ssize_t n = ts_recv_frame2(fd, w->raw, sizeof w->raw);
    if (n <= 0)
        return -1;
    w->len = (size_t)n;
    iso_msg_init(&w->m, w->arena, sizeof w->arena);
    return iso_unpack(ascii87, w->raw, w->len, &w->m, &e) == 0 ? 0 : -1;
}

static int send_msg(int fd, const struct iso_msg *m, uint8_t *buf, size_t cap, size_t *len)
{
    struct iso_err e;
    if (iso_pack(ascii87, m, buf + 2, cap - 2, len, &e) != 0)
        return -1;
    buf[0] = (uint8_t)(*len >> 8);
    buf[1] = (uint8_t)*len;
    return ts_send_all(fd, buf, *len + 2);
}

/* The field's value as a string ("" when absent). */
static const char *field(const struct wire *w, int f)
{
    static char out[4][128];
    static int next;
    char *s = out[next++ % 4];
    size_t n = 0;
    const uint8_t *p = iso_get(&w->m, f, &n);
    if (!p || n >= 128)
        n = 0;
    memcpy(s, p ? (const char *)p : "", n);
    s[n] = '\0';
    return s;
}

/* The primary bitmap of an ascii87 message announces a secondary one (bit 1 of its first hex
 * character, right after the 4-character MTI). */
static bool has_secondary_bitmap(const struct wire *w)
{
    return w->raw[4] >= '8';
}

/* The MAC is field mf, the last field, 16 hex characters at the very end, and key's X9.19 MAC
 * over every byte before them. */
static void assert_mac(const struct wire *w, int mf, struct hsm_key *key)
{
    size_t n = 0;
    const uint8_t *mac = iso_get(&w->m, mf, &n);
    assert_non_null(mac);
    assert_int_equal(n, 8);
    assert_int_equal(iso_next(&w->m, mf), 0);
    assert_false(iso_has(&w->m, mf == 64 ? 128 : 64));
    char hex[17];
    at_hex_encode(mac, 8, hex);
    assert_memory_equal(w->raw + w->len - 16, hex, 16);
    assert_int_equal(hsm_mac_verify(key, HSM_MAC_ISO9797_3, HSM_PAD_1, w->raw, w->len - 16, mac, 8),
                     HSM_OK);
}

/* Writes the ZAK's MAC over msg[0..len-16) into its last 16 bytes (the MAC field, in hex). */
static void mac_in_place(uint8_t *msg, size_t len)
{
    uint8_t mac[16];
    size_t ml = 0;
    assert_int_equal(hsm_mac_generate(zak, HSM_MAC_ISO9797_3, HSM_PAD_1, msg, len - 16, mac, &ml),
                     HSM_OK);
    char hex[17];
    at_hex_encode(mac, 8, hex);
    memcpy(msg + len - 16, hex, 16);
}

/* Set: issuer_answer's MAC is wrong (its last hex digit changed). */
static bool corrupt_answer_mac;

/* The issuer's answer to req: the fields echoed, DE 39, DE 38 when given, the MAC in mf. */
static void issuer_answer(const struct wire *req, const char *mti, const char *rc, const char *auth,
                          int mf)
{
    static const int echo[] = { 2, 3, 4, 7, 11, 32, 37, 41, 49, 90 };
    static const uint8_t zero[8];
    uint8_t arena[2048], buf[2048];
    struct iso_msg m;
    size_t len = 0;
    iso_msg_init(&m, arena, sizeof arena);
    assert_int_equal(iso_set_mti(&m, mti), 0);
    for (size_t i = 0; i < sizeof echo / sizeof echo[0]; i++) {
        size_t n;
        const uint8_t *p = iso_get(&req->m, echo[i], &n);
        if (p)
            assert_int_equal(iso_set(&m, echo[i], p, n), 0);
    }
    assert_int_equal(iso_set_str(&m, 39, rc), 0);
    if (auth)
        assert_int_equal(iso_set_str(&m, 38, auth), 0);
    assert_int_equal(iso_set(&m, mf, zero, 8), 0);
    struct iso_err e;
    assert_int_equal(iso_pack(ascii87, &m, buf + 2, sizeof buf - 2, &len, &e), 0);
    mac_in_place(buf + 2, len);
    if (corrupt_answer_mac)
        buf[2 + len - 1] = buf[2 + len - 1] == '0' ? '1' : '0';
    buf[0] = (uint8_t)(len >> 8);
    buf[1] = (uint8_t)len;
    assert_int_equal(ts_send_all(issuer_fd, buf, len + 2), 0);
}

/* The issuer's answer to the network management request w (an 0800): the same fields as an
 * 0810 with DE 39 00, sent on the issuer link. 0, or -1 when it could not be built or sent. */
static int answer_0800(const struct wire *w)
{
    uint8_t arena[256], buf[512];
    struct iso_msg r;
    size_t len;
    iso_msg_init(&r, arena, sizeof arena);
    iso_msg_copy(&r, &w->m);
    if (iso_set_mti(&r, "0810") != 0 || iso_set_str(&r, 39, "00") != 0)
        return -1;
    return send_msg(issuer_fd, &r, buf, sizeof buf, &len);
}

/* The next message switchd sends on the issuer link other than an echo (0800 301, answered). */
static void issuer_read(struct wire *w)
{
    for (;;) {
        assert_int_equal(read_msg(issuer_fd, w), 0);
        if (memcmp(w->m.mti, "0800", 4) != 0)
            return;
        assert_int_equal(answer_0800(w), 0);
    }
}

static int setup(void **state)
{
    struct stack_opts o = { .issuer = false, .issuer_timeout_ms = 3000 };
    ascii87 = iso_dialect_find("ascii87");
    if (!ascii87 || hsm_key_from_clear(HSM_KT_ZAK, LAB_ZAK, 16, &zak) != HSM_OK ||
        stack_start(&S, &o) != 0)
        return -1;
    /* switchd retries the link every 200 ms at most: it connects soon after we listen. */
    listen_fd = ts_listen(S.issuer_port, 4, NULL);
    struct pollfd p = { .fd = listen_fd, .events = POLLIN };
    if (listen_fd < 0 || poll(&p, 1, 10000) != 1)
        return -1;
    issuer_fd = accept(listen_fd, NULL, NULL);
    if (issuer_fd < 0)
        return -1;
    set_timeout(issuer_fd, 10000);
    struct wire *w = calloc(1, sizeof *w);
    int rc = w ? read_msg(issuer_fd, w) : -1;
    /* The sign-on: 0800 DE 70 001, answered 0810 00. */
    if (rc == 0 && memcmp(w->m.mti, "0800", 4) == 0 && strcmp(field(w, 70), "001") == 0)
        rc = answer_0800(w);
    else
        rc = -1;
    free(w);
    if (rc != 0 || !ts_wait_file_contains(S.switch_log, "signed on", 10000))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    stack_stop(&S);
    if (issuer_fd >= 0)
        close(issuer_fd);
    if (listen_fd >= 0)
        close(listen_fd);
    hsm_key_release(zak);
    return 0;
}

/* write(2)-family syscalls pid has made (/proc/PID/io syscw: writev counts), -1 if unknown. */
static long long proc_syscw(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long long v = -1;
    while (fgets(buf, sizeof buf, f))
        if (sscanf(buf, "syscw: %lld", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* The purchase this file's tests share: what the issuer received and what the terminal got. */
static struct wire to_issuer, to_terminal;
static struct sim_sent purchase_sent;

static void test_purchase_request_and_answer(void **state)
{
    struct sim_term *t = stack_term(&S, "TERM0001");
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 1234);
    long long hsm_writes = proc_syscw(S.hsm);
    int fd = stack_send_nowait(&S, t, &x, &purchase_sent);
    assert_true(fd >= 0);
    set_timeout(fd, 10000);

    /* To the issuer: an 0200 without a secondary bitmap, the MAC in DE 64 with the ZAK. */
    issuer_read(&to_issuer);
    assert_memory_equal(to_issuer.m.mti, "0200", 4);
    assert_false(has_secondary_bitmap(&to_issuer));
    assert_mac(&to_issuer, 64, zak);
    assert_string_equal(field(&to_issuer, 2), "4890010000000012");
    assert_string_equal(field(&to_issuer, 4), "000000001234");
    assert_string_equal(field(&to_issuer, 32), "100001");
    assert_string_equal(field(&to_issuer, 41), "TERM0001");
    assert_true(iso_has(&to_issuer.m, 52)); /* the PIN block, now under the ZPK */
    assert_int_equal(strlen(field(&to_issuer, 11)), 6);
    assert_int_equal(strlen(field(&to_issuer, 7)), 10);
    issuer_answer(&to_issuer, "0210", "00", "WIRE01", 64);

    /* To the terminal: 0210, no secondary bitmap, the MAC in DE 64 with its TAK. */
    assert_int_equal(read_msg(fd, &to_terminal), 0);
    close(fd);
    assert_memory_equal(to_terminal.m.mti, "0210", 4);
    assert_false(has_secondary_bitmap(&to_terminal));
    assert_mac(&to_terminal, 64, t->tak);
    assert_string_equal(field(&to_terminal, 39), "00");
    assert_string_equal(field(&to_terminal, 38), "WIRE01");
    assert_string_equal(field(&to_terminal, 11), purchase_sent.stan);
    /* Its five HSM commands took three round trips, hsm-sim answering each in one write
     * (docs/switchd.md "HSM commands"): {M8 of the request, CA}, {M6 of the issuer request},
     * {M8 of the issuer's answer, M6 of the terminal's answer}. switchd is hsm-sim's only
     * client here and sends nothing else meanwhile; hsm-sim may flush its log once (its
     * periodic stats line): 3 or 4, where one write per command made 5 or 6. */
    if (hsm_writes >= 0)
        assert_in_range(proc_syscw(S.hsm) - hsm_writes, 3, 4);
}

static void test_reversal_0410_then_0420_0421(void **state)
{
    struct sim_term *t = stack_term(&S, "TERM0001");
    assert_true(to_issuer.len > 0); /* runs after the purchase */
    struct sim_txn rev;
    struct sim_sent sent;
    stack_reversal_of(&rev, "4890010000000012", 1234, &purchase_sent);
    snprintf(rev.mti, sizeof rev.mti, "0400");
    int fd = stack_send_nowait(&S, t, &rev, &sent);
    assert_true(fd >= 0);
    set_timeout(fd, 10000);

    /* The terminal's 0410 echoes its DE 90, so it has a secondary bitmap: the MAC in DE 128. */
    struct wire ack;
    assert_int_equal(read_msg(fd, &ack), 0);
    close(fd);
    assert_memory_equal(ack.m.mti, "0410", 4);
    assert_string_equal(field(&ack, 39), "00");
    assert_true(has_secondary_bitmap(&ack));
    assert_true(iso_has(&ack.m, 90));
    assert_mac(&ack, 128, t->tak);

    /* The store-and-forward reversal: 0420 naming the 0200 as the issuer saw it. */
    char de90[43];
    snprintf(de90, sizeof de90, "0200%s%s%011d%011d", field(&to_issuer, 11), field(&to_issuer, 7),
             100001, 0);
    struct wire r;
    issuer_read(&r);
    assert_memory_equal(r.m.mti, "0420", 4);
    assert_true(has_secondary_bitmap(&r));
    assert_mac(&r, 128, zak);
    assert_string_equal(field(&r, 90), de90);
    assert_string_equal(field(&r, 2), "4890010000000012");
    assert_string_equal(field(&r, 3), field(&to_issuer, 3));
    assert_string_equal(field(&r, 4), "000000001234");
    assert_string_equal(field(&r, 32), "100001");
    assert_string_equal(field(&r, 37), field(&to_issuer, 37));
    assert_string_equal(field(&r, 38), "WIRE01");
    assert_string_equal(field(&r, 41), "TERM0001");
    assert_string_equal(field(&r, 49), field(&to_issuer, 49));
    char first_stan[7];
    snprintf(first_stan, sizeof first_stan, "%s", field(&r, 11));

    /* Not answered: it comes again as 0421 with a new STAN and the same DE 90. */
    issuer_read(&r);
    assert_memory_equal(r.m.mti, "0421", 4);
    assert_mac(&r, 128, zak);
    assert_string_equal(field(&r, 90), de90);
    assert_string_not_equal(field(&r, 11), first_stan);

    /* Acknowledged with an 0430 MACed in DE 128: the row is settled. */
    issuer_answer(&r, "0430", "00", NULL, 128);
    assert_int_equal(stack_wait_scalar(&S,
                                       "SELECT count(*) FROM switch.reversal_queue"
                                       " WHERE state = 'acked'",
                                       1, 10000),
                     0);
}

/* An issuer's 0800 gets an 0810: every field echoed, DE 39 00, no MAC. */
static void test_issuer_echo_answered(void **state)
{
    uint8_t arena[256], buf[512];
    struct iso_msg m;
    size_t len;
    iso_msg_init(&m, arena, sizeof arena);
    assert_int_equal(iso_set_mti(&m, "0800") | iso_set_str(&m, 7, "0102030405") |
                         iso_set_str(&m, 11, "424242") | iso_set_str(&m, 70, "301"),
                     0);
    assert_int_equal(send_msg(issuer_fd, &m, buf, sizeof buf, &len), 0);
    struct wire w;
    issuer_read(&w); /* switchd's own echoes are answered on the way */
    assert_memory_equal(w.m.mti, "0810", 4);
    assert_string_equal(field(&w, 7), "0102030405");
    assert_string_equal(field(&w, 11), "424242");
    assert_string_equal(field(&w, 70), "301");
    assert_string_equal(field(&w, 39), "00");
    assert_false(iso_has(&w.m, 64));
    assert_false(iso_has(&w.m, 128));
    assert_int_equal(iso_next(&w.m, 0), 7);
    assert_int_equal(iso_next(&w.m, 11), 39);
    assert_int_equal(iso_next(&w.m, 39), 70);
    assert_int_equal(iso_next(&w.m, 70), 0);
}

/* Card authentication on the wire (docs/emv.md): a chip purchase that also carries a CVV2 reaches
 * the issuer with DE 55 as the terminal sent it (its ARQC, its ATC) and DE 126 = CR01M — the CVV2
 * gone, its result in its place — and the terminal's answer carries DE 55 = tag 91, the ARPC
 * followed by the ARC "00", which verifies with the card's key. */
static void test_chip_and_cvv2_on_the_wire(void **state)
{
    (void)state;
    struct sim_term *t = stack_term(&S, "TERM0001");
    struct sim_txn x;
    struct sim_sent sent;
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 2500);
    x.chip_cvn = 18;
    snprintf(x.cvv2, sizeof x.cvv2, "660"); /* the demo card's (README) */
    int fd = stack_send_nowait(&S, t, &x, &sent);
    assert_true(fd >= 0);
    set_timeout(fd, 10000);
    struct wire *req = calloc(1, sizeof *req), *ans = calloc(1, sizeof *ans);
    assert_non_null(req);
    assert_non_null(ans);
    issuer_read(req);
    assert_memory_equal(req->m.mti, "0200", 4);
    assert_string_equal(field(req, 22), "051");
    assert_string_equal(field(req, 126), "CR01M");
    size_t n = 0, count = 0;
    const uint8_t *de55 = iso_get(&req->m, 55, &n);
    assert_non_null(de55);
    struct iso_tlv items[32];
    struct iso_err e;
    assert_int_equal(iso_tlv_parse(de55, n, items, 32, &count, &e), 0);
    const struct iso_tlv *ac = iso_tlv_find(items, count, 0x9F26),
                         *atc = iso_tlv_find(items, count, 0x9F36);
    assert_non_null(ac);
    assert_non_null(atc);
    assert_memory_equal(ac->value, sent.arqc, 8);
    assert_memory_equal(atc->value, sent.atc, 2);
    /* nowhere on the issuer's wire: the CVV2 as the terminal sent it */
    for (size_t i = 0; i + 7 <= req->len; i++)
        assert_memory_not_equal(req->raw + i, "C203660", 7);
    issuer_answer(req, "0210", "00", "CHIP01", 64);

    assert_int_equal(read_msg(fd, ans), 0);
    close(fd);
    assert_string_equal(field(ans, 39), "00");
    assert_false(iso_has(&ans->m, 126));
    de55 = iso_get(&ans->m, 55, &n);
    assert_non_null(de55);
    assert_int_equal(n, 12);
    assert_int_equal(de55[0], 0x91);
    assert_int_equal(de55[1], 10);
    assert_memory_equal(de55 + 10, "00", 2);
    struct sim_resp r;
    memset(&r, 0, sizeof r);
    memcpy(r.rc, "00", 3);
    r.has_arpc = true;
    memcpy(r.arpc, de55 + 2, 10);
    assert_string_equal(sim_chip_arpc_status(&sent, &r), "ok");
    free(req);
    free(ans);
}

/* The M8 of the issuer's answer and the M6 of the terminal's answer go to the HSM together
 * (docs/switchd.md "HSM commands"): an authentic answer is answered with the MAC asked for
 * early; one whose MAC does not verify is answered 96 — never the approval the early MAC was
 * made for — with a MAC of its own that verifies, and the approval is reversed (0420). */
static void test_answer_mac_pipelined_and_discarded(void **state)
{
    struct sim_term *t = stack_term(&S, "TERM0001");
    long long used0 = stack_metric(&S, "atlas_hsm_early_macs_used_total");
    long long disc0 = stack_metric(&S, "atlas_hsm_early_macs_discarded_total");
    assert_true(used0 >= 1); /* the purchase of the first test */
    struct wire *req = calloc(1, sizeof *req), *ans = calloc(1, sizeof *ans);
    assert_non_null(req);
    assert_non_null(ans);

    struct sim_txn x;
    struct sim_sent sent;
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 4321);
    int fd = stack_send_nowait(&S, t, &x, &sent);
    assert_true(fd >= 0);
    set_timeout(fd, 10000);
    issuer_read(req);
    assert_memory_equal(req->m.mti, "0200", 4);
    issuer_answer(req, "0210", "00", "EARLY1", 64);
    assert_int_equal(read_msg(fd, ans), 0);
    close(fd);
    assert_string_equal(field(ans, 39), "00");
    assert_string_equal(field(ans, 38), "EARLY1");
    assert_mac(ans, 64, t->tak);
    assert_int_equal(stack_metric(&S, "atlas_hsm_early_macs_used_total"), used0 + 1);
    assert_int_equal(stack_metric(&S, "atlas_hsm_early_macs_discarded_total"), disc0);

    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 4322);
    fd = stack_send_nowait(&S, t, &x, &sent);
    assert_true(fd >= 0);
    set_timeout(fd, 10000);
    issuer_read(req);
    corrupt_answer_mac = true;
    issuer_answer(req, "0210", "00", "EARLY2", 64);
    corrupt_answer_mac = false;
    assert_int_equal(read_msg(fd, ans), 0);
    close(fd);
    assert_string_equal(field(ans, 39), "96");
    assert_false(iso_has(&ans->m, 38));
    assert_mac(ans, 64, t->tak);
    assert_int_equal(stack_metric(&S, "atlas_hsm_early_macs_used_total"), used0 + 1);
    assert_int_equal(stack_metric(&S, "atlas_hsm_early_macs_discarded_total"), disc0 + 1);
    issuer_read(req); /* what the issuer may have applied is reversed */
    assert_memory_equal(req->m.mti, "0420", 4);
    assert_string_equal(field(req, 4), "000000004322");
    free(req);
    free(ans);
}

/* The PIN translation goes to the HSM in the same write as the M8 of the request's MAC: used
 * once the MAC verified (the PIN block reaches the issuer under its ZPK: the first test's
 * purchase and the two above); a request whose MAC is wrong is refused (63) and its early
 * translation is wiped unused. */
static void test_pin_translation_pipelined(void **state)
{
    (void)state;
    long long used = stack_metric(&S, "atlas_hsm_early_pins_used_total");
    long long disc0 = stack_metric(&S, "atlas_hsm_early_pins_discarded_total");
    assert_true(used >= 3);
    assert_true(disc0 >= 0);
    struct sim_txn x;
    struct sim_sent sent;
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 4323);
    x.bad_mac = true;
    int fd = stack_send_nowait(&S, stack_term(&S, "TERM0001"), &x, &sent);
    assert_true(fd >= 0);
    struct wire *ans = calloc(1, sizeof *ans);
    assert_non_null(ans);
    set_timeout(fd, 10000);
    assert_int_equal(read_msg(fd, ans), 0);
    close(fd);
    assert_string_equal(field(ans, 39), "63");
    free(ans);
    assert_int_equal(stack_metric(&S, "atlas_hsm_early_pins_used_total"), used);
    assert_int_equal(stack_metric(&S, "atlas_hsm_early_pins_discarded_total"), disc0 + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purchase_request_and_answer),
        cmocka_unit_test(test_reversal_0410_then_0420_0421),
        cmocka_unit_test(test_issuer_echo_answered),
        cmocka_unit_test(test_chip_and_cvv2_on_the_wire),
        cmocka_unit_test(test_answer_mac_pipelined_and_discarded),
        cmocka_unit_test(test_pin_translation_pipelined),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
