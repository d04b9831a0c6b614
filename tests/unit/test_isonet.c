/* Unit tests of libatlas_isonet: the MAC field rule with golden bytes for a DE 64 and a DE 128
 * message (hex and binary dialects), the MAC found again in what was received and refused where
 * the rule does not put it; DE 90 pack/parse round trips, the acquirer's zero fill and malformed
 * values refused; the response MTI; the framing adapter over a real at_stream pair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "isonet.h"
#include "stream.h"

static const uint8_t MAC[8] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF };

/* An 0210 with DE 11, 39, 41: a primary bitmap only. */
static void answer_0210(struct iso_msg *m, uint8_t *arena, size_t cap)
{
    iso_msg_init(m, arena, cap);
    assert_int_equal(iso_set_mti(m, "0210"), 0);
    assert_int_equal(iso_set_str(m, 11, "000001"), 0);
    assert_int_equal(iso_set_str(m, 39, "00"), 0);
    assert_int_equal(iso_set_str(m, 41, "TERM0001"), 0);
}

static const char DE90[] = "0200"
                           "000123"
                           "1126150000"
                           "00000100001"
                           "00000000000";

/* An 0420 with DE 11 and DE 90: a secondary bitmap. */
static void reversal_0420(struct iso_msg *m, uint8_t *arena, size_t cap)
{
    iso_msg_init(m, arena, cap);
    assert_int_equal(iso_set_mti(m, "0420"), 0);
    assert_int_equal(iso_set_str(m, 11, "123456"), 0);
    assert_int_equal(iso_set_str(m, 90, DE90), 0);
}

static void test_mac_field_rule(void **state)
{
    (void)state;
    uint8_t arena[512];
    struct iso_msg m;
    answer_0210(&m, arena, sizeof arena);
    assert_int_equal(isonet_mac_field(&m), 64);
    assert_int_equal(iso_set_str(&m, 70, "301"), 0); /* any field of the secondary bitmap */
    assert_int_equal(isonet_mac_field(&m), 128);
    iso_unset(&m, 70);
    m.flags |= ISO_MSG_SECONDARY; /* a secondary bitmap present, all zero */
    assert_int_equal(isonet_mac_field(&m), 128);
    m.flags = 0;
    assert_int_equal(iso_set(&m, 128, MAC, 8), 0); /* DE 128 alone makes a secondary bitmap */
    assert_int_equal(isonet_mac_field(&m), 128);
    iso_unset(&m, 128);
    assert_int_equal(iso_set_str(&m, 130, "X"), 0); /* a tertiary bitmap: no MAC placement */
    assert_int_equal(isonet_mac_field(&m), ISO_E_UNDEFINED);
    assert_int_equal(isonet_mac_reserve(&m), ISO_E_UNDEFINED);
}

/* Packs m in ascii87 with its MAC field reserved and expects the bytes want (the MAC there as
 * 16 zero hex digits, the last of the message, in field `field`); patches the MAC in, which
 * changes those 16 digits only, and finds the field, its offset and its 8 bytes again in what a
 * receiver unpacks. */
static void check_golden_mac(struct iso_msg *m, const char *want, int field)
{
    const struct iso_dialect *d = iso_dialect_find("ascii87");
    uint8_t out[512];
    struct isonet_mac at;
    struct iso_err e;
    size_t n = 0;
    assert_int_equal(isonet_pack_mac(d, m, out, sizeof out, &n, &at, &e), 0);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    assert_int_equal(at.field, field);
    assert_int_equal(at.wire, 16);
    assert_int_equal(at.off, n - 16); /* the MAC input: everything before the field */
    isonet_mac_patch(out, &at, MAC);
    assert_memory_equal(out + n - 16, "0123456789ABCDEF", 16);
    assert_memory_equal(out, want, n - 16);

    /* Received: the same field, the same offset, and the 8 bytes it carries. */
    uint8_t rarena[ISO_ARENA_FOR(512)];
    struct iso_msg r;
    struct isonet_mac got;
    iso_msg_init(&r, rarena, sizeof rarena);
    assert_int_equal(iso_unpack(d, out, n, &r, &e), 0);
    assert_int_equal(isonet_mac_locate(d, &r, n, &got), 0);
    assert_int_equal(got.field, field);
    assert_int_equal(got.off, at.off);
    assert_memory_equal(got.value, MAC, 8);
}

static void test_mac_de64_golden_ascii87(void **state)
{
    (void)state;
    uint8_t arena[512];
    struct iso_msg m;
    answer_0210(&m, arena, sizeof arena);
    /* Fields 11, 39, 41, 64: 00 20 00 00 02 80 00 01. */
    check_golden_mac(&m,
                     "0210"
                     "0020000002800001"
                     "000001"
                     "00"
                     "TERM0001"
                     "0000000000000000",
                     64);
}

static void test_mac_de128_golden_ascii87(void **state)
{
    (void)state;
    uint8_t arena[512];
    struct iso_msg m;
    reversal_0420(&m, arena, sizeof arena);
    /* Primary: 1 (secondary bitmap), 11. Secondary: 90, 128. */
    char want[128];
    snprintf(want, sizeof want, "0420%s%s%s%s%s", "8020000000000000", "0000004000000001", "123456",
             DE90, "0000000000000000");
    check_golden_mac(&m, want, 128);
}

/* Binary dialects carry the 8 raw bytes at the very end. */
static void test_mac_binary_dialects(void **state)
{
    (void)state;
    static const char *const names[] = { "ascii87b", "bcd87", "ebcdic87" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const struct iso_dialect *d = iso_dialect_find(names[i]);
        assert_non_null(d);
        uint8_t arena[512], out[512];
        struct iso_msg m;
        struct isonet_mac at;
        struct iso_err e;
        size_t n = 0;
        for (int k = 0; k < 2; k++) {
            if (k == 0)
                answer_0210(&m, arena, sizeof arena);
            else
                reversal_0420(&m, arena, sizeof arena);
            assert_int_equal(isonet_pack_mac(d, &m, out, sizeof out, &n, &at, &e), 0);
            assert_int_equal(at.field, k == 0 ? 64 : 128);
            assert_int_equal(at.wire, 8);
            assert_int_equal(at.off, n - 8);
            isonet_mac_patch(out, &at, MAC);
            assert_memory_equal(out + n - 8, MAC, 8);
        }
    }
}

/* A copied request's MAC goes; the rule decides again for what the message now holds. */
static void test_mac_reserve_replaces(void **state)
{
    (void)state;
    uint8_t arena[512];
    struct iso_msg m;
    answer_0210(&m, arena, sizeof arena);
    assert_int_equal(iso_set(&m, 64, MAC, 8), 0);
    assert_int_equal(iso_set_str(&m, 90, DE90), 0);
    assert_int_equal(isonet_mac_reserve(&m), 128);
    assert_false(iso_has(&m, 64));
    size_t n = 0;
    const uint8_t *p = iso_get(&m, 128, &n);
    assert_int_equal(n, 8);
    assert_memory_equal(p, "\0\0\0\0\0\0\0\0", 8);
    iso_unset(&m, 90);
    assert_int_equal(isonet_mac_reserve(&m), 64);
    assert_false(iso_has(&m, 128));
}

/* Where the rule does not find the MAC, there is none to verify. */
static void test_mac_locate_refusals(void **state)
{
    (void)state;
    const struct iso_dialect *d = iso_dialect_find("ascii87");
    uint8_t arena[ISO_ARENA_FOR(512)], out[512];
    struct iso_msg m;
    struct isonet_mac at;
    struct iso_err e;
    size_t n = 0;

    /* No MAC at all. */
    answer_0210(&m, arena, sizeof arena);
    assert_int_equal(iso_pack(d, &m, out, sizeof out, &n, &e), 0);
    assert_int_equal(isonet_mac_locate(d, &m, n, &at), ISO_E_UNDEFINED);
    assert_int_equal(at.field, 64);

    /* DE 64 in a message with a secondary bitmap: not the last field, and not DE 128. */
    answer_0210(&m, arena, sizeof arena);
    assert_int_equal(iso_set(&m, 64, MAC, 8), 0);
    assert_int_equal(iso_set_str(&m, 90, DE90), 0);
    assert_int_equal(iso_pack(d, &m, out, sizeof out, &n, &e), 0);
    iso_msg_init(&m, arena, sizeof arena);
    assert_int_equal(iso_unpack(d, out, n, &m, &e), 0);
    assert_int_equal(isonet_mac_locate(d, &m, n, &at), ISO_E_UNDEFINED);
    assert_int_equal(at.field, 128);

    /* DE 64 behind an all-zero secondary bitmap: the bitmap is there, so the MAC is DE 128. */
    answer_0210(&m, arena, sizeof arena);
    assert_int_equal(iso_set(&m, 64, MAC, 8), 0);
    m.flags |= ISO_MSG_SECONDARY;
    assert_int_equal(iso_pack(d, &m, out, sizeof out, &n, &e), 0);
    iso_msg_init(&m, arena, sizeof arena);
    assert_int_equal(iso_unpack(d, out, n, &m, &e), 0);
    assert_int_equal(isonet_mac_locate(d, &m, n, &at), ISO_E_UNDEFINED);

    /* A MAC field of another length, and a dialect that does not define it as b 8. */
    answer_0210(&m, arena, sizeof arena);
    assert_int_equal(iso_set(&m, 64, MAC, 4), 0);
    assert_int_equal(isonet_mac_locate(d, &m, 100, &at), ISO_E_UNDEFINED);
    struct iso_dialect odd = *d;
    odd.field[64].max_len = 16;
    assert_int_equal(isonet_pack_mac(&odd, &m, out, sizeof out, &n, &at, &e), ISO_E_FIXED_LENGTH);
    odd.field[64].max_len = 8;
    odd.field[64].len_kind = ISO_LEN_LL;
    assert_int_equal(isonet_pack_mac(&odd, &m, out, sizeof out, &n, &at, &e), ISO_E_SPEC);
    assert_int_equal(e.field, 64);
    assert_int_equal(isonet_mac_locate(d, &m, 15, &at), ISO_E_TRUNCATED);
}

static void test_de90_round_trip(void **state)
{
    (void)state;
    struct isonet_de90 o, back;
    memset(&o, 0, sizeof o);
    memcpy(o.mti, "0200", 5);
    memcpy(o.stan, "000123", 7);
    memcpy(o.de7, "1126150000", 11);
    isonet_de90_set_acquirer(&o, "100001");
    isonet_de90_set_acquirer(&back, NULL);
    memcpy(o.forwarder, back.acquirer, 12); /* 11 zeros */
    char v[ISONET_DE90_LEN + 1];
    assert_int_equal(isonet_de90_pack(&o, v), 0);
    assert_string_equal(v, DE90);
    assert_int_equal(isonet_de90_parse((const uint8_t *)v, 42, &back), 0);
    assert_memory_equal(&back, &o, sizeof o);
    assert_string_equal(back.stan, "000123");
    assert_string_equal(back.de7, "1126150000");
    assert_string_equal(back.acquirer, "00000100001");
    /* What the switch and the acquirer simulator send. */
    struct isonet_de90 made;
    isonet_de90_make(&made, "0200", "000123", "1126150000", "100001");
    assert_memory_equal(&made, &o, sizeof o);
    isonet_de90_make(&made, "0200", "123", "1126150000", "100001"); /* a STAN of 3 digits */
    assert_int_equal(isonet_de90_pack(&made, v), -1);
    isonet_de90_make(&made, "0200", "0001234", "1126150000", "100001"); /* not cut to 6 */
    assert_int_equal(isonet_de90_pack(&made, v), -1);
    isonet_de90_make(&made, NULL, "000123", "1126150000", "100001");
    assert_int_equal(isonet_de90_pack(&made, v), -1);

    /* Through a message, packed and unpacked in two dialects. */
    static const char *const names[] = { "ascii87", "bcd87" };
    for (size_t i = 0; i < 2; i++) {
        const struct iso_dialect *d = iso_dialect_find(names[i]);
        uint8_t arena[512], rarena[ISO_ARENA_FOR(512)], out[512];
        struct iso_msg m, r;
        struct iso_err e;
        size_t n;
        iso_msg_init(&m, arena, sizeof arena);
        assert_int_equal(iso_set_mti(&m, "0420"), 0);
        assert_int_equal(isonet_de90_set(&m, &o), 0);
        assert_int_equal(iso_pack(d, &m, out, sizeof out, &n, &e), 0);
        iso_msg_init(&r, rarena, sizeof rarena);
        assert_int_equal(iso_unpack(d, out, n, &r, &e), 0);
        memset(&back, 0, sizeof back);
        assert_int_equal(isonet_de90_get(&r, &back), 1);
        assert_memory_equal(&back, &o, sizeof o);
    }
}

static void test_de90_acquirer_zero_fill(void **state)
{
    (void)state;
    struct isonet_de90 o;
    isonet_de90_set_acquirer(&o, "7");
    assert_string_equal(o.acquirer, "00000000007");
    isonet_de90_set_acquirer(&o, "12345678901");
    assert_string_equal(o.acquirer, "12345678901");
    /* Not an id DE 32 can hold: zeros. */
    isonet_de90_set_acquirer(&o, "123456789012");
    assert_string_equal(o.acquirer, "00000000000");
    isonet_de90_set_acquirer(&o, "ACQ1");
    assert_string_equal(o.acquirer, "00000000000");
    isonet_de90_set_acquirer(&o, "");
    assert_string_equal(o.acquirer, "00000000000");
}

static void test_de90_malformed(void **state)
{
    (void)state;
    struct isonet_de90 o;
    char v[64];
    snprintf(v, sizeof v, "%s", DE90);
    assert_int_equal(isonet_de90_parse((const uint8_t *)v, 41, &o), -1);
    assert_int_equal(isonet_de90_parse((const uint8_t *)v, 0, &o), -1);
    assert_int_equal(isonet_de90_parse(NULL, 42, &o), -1);
    snprintf(v, sizeof v, "%s0", DE90);
    assert_int_equal(isonet_de90_parse((const uint8_t *)v, 43, &o), -1);
    for (size_t pos = 0; pos < 42; pos += 7) {
        snprintf(v, sizeof v, "%s", DE90);
        v[pos] = pos % 2 ? ' ' : 'A';
        assert_int_equal(isonet_de90_parse((const uint8_t *)v, 42, &o), -1);
    }

    /* A struct whose parts are not digits of their length does not pack. */
    assert_int_equal(isonet_de90_parse((const uint8_t *)DE90, 42, &o), 0);
    char out[ISONET_DE90_LEN + 1];
    struct isonet_de90 bad = o;
    memcpy(bad.stan, "12345", 6); /* 5 digits */
    assert_int_equal(isonet_de90_pack(&bad, out), -1);
    assert_string_equal(out, "");
    bad = o;
    bad.de7[3] = 'x';
    assert_int_equal(isonet_de90_pack(&bad, out), -1);
    bad = o;
    bad.forwarder[11] = '1'; /* not NUL-terminated at its length */
    assert_int_equal(isonet_de90_pack(&bad, out), -1);

    /* In a message: absent, present, present but malformed (a dialect would refuse it; a
     * message built by hand need not). */
    uint8_t arena[256];
    struct iso_msg m;
    iso_msg_init(&m, arena, sizeof arena);
    assert_int_equal(isonet_de90_get(&m, &o), 0);
    assert_int_equal(iso_set(&m, 90, DE90, 42), 0);
    assert_int_equal(isonet_de90_get(&m, &o), 1);
    assert_int_equal(iso_set(&m, 90, "02000001231126", 14), 0);
    assert_int_equal(isonet_de90_get(&m, &o), -1);
    assert_int_equal(isonet_de90_set(&m, &bad), -1);
}

static void test_response_mti(void **state)
{
    (void)state;
    static const char *const pairs[][2] = {
        { "0100", "0110" }, { "0101", "0110" }, { "0200", "0210" }, { "0201", "0210" },
        { "0400", "0410" }, { "0420", "0430" }, { "0421", "0430" }, { "0800", "0810" },
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char out[5];
        isonet_response_mti(pairs[i][0], out);
        assert_string_equal(out, pairs[i][1]);
    }
}

/* ---------------------------------------------------------------- framing over at_stream */

struct got {
    char msg[8][64];
    uint8_t tpdu[8][ISO_TPDU_LEN];
    int n;
    char reason[128];
    int closes;
};

static void got_frame(void *arg, struct at_stream *s, const uint8_t *frame, size_t frame_len,
                      const uint8_t *msg, size_t msg_len)
{
    struct got *g = arg;
    if (g->n < 8) {
        snprintf(g->msg[g->n], sizeof g->msg[0], "%.*s", (int)msg_len, (const char *)msg);
        if (frame_len >= 2 + ISO_TPDU_LEN)
            memcpy(g->tpdu[g->n], frame + 2, ISO_TPDU_LEN);
    }
    g->n++;
}

static void got_close(void *arg, struct at_stream *s, const char *reason)
{
    struct got *g = arg;
    g->closes++;
    snprintf(g->reason, sizeof g->reason, "%s", reason);
}

static void pump(struct event_base *base)
{
    for (int i = 0; i < 20; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

/* Frames written with isonet_send on one stream arrive whole through isonet_frame_fn on the
 * other, in each framing. */
static void test_framing_round_trip(void **state)
{
    (void)state;
    static const enum iso_frame_kind kinds[] = { ISO_FRAME_2B, ISO_FRAME_4A, ISO_FRAME_TPDU };
    static const uint8_t tpdu[ISO_TPDU_LEN] = { 0x60, 0x00, 0x01, 0x00, 0x02 };
    for (size_t k = 0; k < 3; k++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        struct event_base *base = event_base_new();
        struct isonet_framing fa = { .kind = kinds[k], .max = 64 }, fb = fa;
        struct got ga = { .n = 0 }, gb = { .n = 0 };
        struct at_stream_ops oa = {
            .frame = isonet_frame_fn, .frame_arg = &fa, .on_frame = got_frame, .on_close = got_close
        };
        struct at_stream_ops ob = oa;
        ob.frame_arg = &fb;
        struct at_stream_limits lim = { .max_frame = 64 + ISO_FRAME_MAX_HEADER };
        struct at_stream *a = at_stream_new(base, sv[0], &oa, &ga, &lim);
        struct at_stream *b = at_stream_new(base, sv[1], &ob, &gb, &lim);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(isonet_send(a, &fa, tpdu, (const uint8_t *)"0800A", 5), 0);
        assert_int_equal(isonet_send(a, &fa, tpdu, (const uint8_t *)"0810BB", 6), 0);
        /* Above the link's maximum: no header, nothing written. */
        static const uint8_t big[70];
        assert_int_equal(isonet_send(a, &fa, tpdu, big, sizeof big), -1);
        assert_int_equal(isonet_send(a, &fa, tpdu, big, 0), -1);
        pump(base);
        assert_int_equal(gb.n, 2);
        assert_string_equal(gb.msg[0], "0800A");
        assert_string_equal(gb.msg[1], "0810BB");
        if (kinds[k] == ISO_FRAME_TPDU)
            assert_memory_equal(gb.tpdu[1], tpdu, ISO_TPDU_LEN);
        assert_int_equal(fb.refused, 0);
        at_stream_close(a, "done", false);
        at_stream_close(b, "done", false);
        pump(base);
        event_base_free(base);
    }
    assert_int_equal(isonet_send(NULL, &(struct isonet_framing){ .kind = ISO_FRAME_2B }, NULL,
                                 (const uint8_t *)"x", 1),
                     -1);
}

/* A header the codec refuses ends the stream, says why, and is counted. */
static void test_framing_refused(void **state)
{
    (void)state;
    static const struct {
        enum iso_frame_kind kind;
        const char *bytes;
        size_t len;
        const char *why;
    } cases[] = {
        { ISO_FRAME_2B, "\xFF\xFF", 2, "framing: frame of 65535 bytes above maximum 64" },
        { ISO_FRAME_2B, "\x00\x00", 2, "framing: zero-length frame" },
        { ISO_FRAME_4A, "00X1", 4, "framing: non-digit in the 4-digit length header" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        struct event_base *base = event_base_new();
        struct isonet_framing f = { .kind = cases[i].kind, .max = 64 };
        struct got g = { .n = 0 };
        struct at_stream_ops o = {
            .frame = isonet_frame_fn, .frame_arg = &f, .on_frame = got_frame, .on_close = got_close
        };
        struct at_stream_limits lim = { .max_frame = 64 + ISO_FRAME_MAX_HEADER };
        assert_non_null(at_stream_new(base, sv[0], &o, &g, &lim));
        assert_int_equal(write(sv[1], cases[i].bytes, cases[i].len), (ssize_t)cases[i].len);
        pump(base);
        assert_int_equal(g.closes, 1);
        assert_int_equal(g.n, 0);
        assert_string_equal(g.reason, cases[i].why);
        assert_int_equal(f.refused, 1);
        close(sv[1]);
        event_base_free(base);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mac_field_rule),
        cmocka_unit_test(test_mac_de64_golden_ascii87),
        cmocka_unit_test(test_mac_de128_golden_ascii87),
        cmocka_unit_test(test_mac_binary_dialects),
        cmocka_unit_test(test_mac_reserve_replaces),
        cmocka_unit_test(test_mac_locate_refusals),
        cmocka_unit_test(test_de90_round_trip),
        cmocka_unit_test(test_de90_acquirer_zero_fill),
        cmocka_unit_test(test_de90_malformed),
        cmocka_unit_test(test_response_mti),
        cmocka_unit_test(test_framing_round_trip),
        cmocka_unit_test(test_framing_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
