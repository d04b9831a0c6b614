/* libatlas_acquirer unit tests: requests checked against published vectors and
 * independent libhsm computations (the PIN block decrypts back with the TPK or the
 * DUKPT key derived host-side; the MAC verifies with the TAK over the exact bytes the
 * acquirer interface names), response checking, amounts and currencies, terminal
 * files, the state file, and the scenario parser's good and malformed lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acquirer.h"
#include "hex.h"
#include "hsm.h"

/* 2026-11-26 15:06:15 UTC */
#define FIXED_NOW_US 1795705575000000ull

static struct sim_terms terms;

static int setup(void **state)
{
    char err[200];
    if (sim_terms_builtin(&terms, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    sim_terms_free(&terms);
    return 0;
}

static struct hsm_key *clear_key(enum hsm_keytype type, const char *hex)
{
    uint8_t k[16];
    struct hsm_key *key = NULL;
    assert_int_equal(at_hex_decode(hex, strlen(hex), k, sizeof k), 16);
    assert_int_equal(hsm_key_from_clear(type, k, 16, &key), HSM_OK);
    return key;
}

static struct sim_txn purchase(const char *pan, const char *pin, uint64_t amount)
{
    struct sim_txn x;
    memset(&x, 0, sizeof x);
    x.type = SIM_T_PURCHASE;
    snprintf(x.pan, sizeof x.pan, "%s", pan);
    snprintf(x.pin, sizeof x.pin, "%s", pin);
    x.amount = amount;
    snprintf(x.currency, sizeof x.currency, "504");
    snprintf(x.expiry, sizeof x.expiry, "2812");
    x.now_us = FIXED_NOW_US;
    return x;
}

static void field_eq(const struct iso_msg *m, int f, const char *want)
{
    size_t n = 0;
    const uint8_t *p = iso_get(m, f, &n);
    assert_non_null(p);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

static void field_hex_eq(const struct iso_msg *m, int f, const char *want_hex)
{
    size_t n = 0;
    const uint8_t *p = iso_get(m, f, &n);
    assert_non_null(p);
    char hex[64];
    at_hex_encode(p, n, hex);
    assert_string_equal(hex, want_hex);
}

/* The MAC at the end of msg verifies with tak_hex over msg[0..len-wire), independently
 * of the library (libhsm directly). */
static void mac_verifies(const uint8_t *msg, size_t len, size_t wire, const char *tak_hex)
{
    struct hsm_key *tak = clear_key(HSM_KT_TAK, tak_hex);
    uint8_t mac[16];
    size_t ml = 0;
    assert_int_equal(hsm_mac_generate(tak, HSM_MAC_ISO9797_3, HSM_PAD_1, msg, len - wire, mac, &ml),
                     HSM_OK);
    assert_int_equal(ml, 8);
    if (wire == 16) {
        char hex[17];
        at_hex_encode(mac, 8, hex);
        assert_memory_equal(msg + len - 16, hex, 16);
    } else {
        assert_memory_equal(msg + len - 8, mac, 8);
    }
    hsm_key_release(tak);
}

static void unpack(const struct sim_term *t, const uint8_t *msg, size_t len, struct iso_msg *m,
                   uint8_t *arena, size_t cap)
{
    struct iso_err ie;
    iso_msg_init(m, arena, cap);
    assert_int_equal(iso_unpack(t->dialect, msg, len, m, &ie), 0);
}

/* A request as a terminal built it: its bytes, what it says was sent, and its fields. */
struct built {
    uint8_t msg[SIM_MSG_MAX];
    size_t len;
    struct sim_sent sent;
    uint8_t arena[4096];
    struct iso_msg m;
};

/* The built-in terminal id, its STAN and key counters set to stan and counter. */
static struct sim_term *term_at(const char *id, uint32_t stan, uint32_t counter)
{
    struct sim_term *t = sim_terms_find(&terms, id);
    assert_non_null(t);
    sim_term_set_counters(t, stan, counter);
    return t;
}

/* Builds x on t, which must succeed, and unpacks it into b. */
static void build(struct sim_term *t, const struct sim_txn *x, struct built *b)
{
    char err[200];
    assert_int_equal(
        sim_term_build_request(t, x, b->msg, sizeof b->msg, &b->len, &b->sent, err, sizeof err), 0);
    unpack(t, b->msg, b->len, &b->m, b->arena, sizeof b->arena);
}

/* Building x on t is refused with a reason that names want. */
static void build_refused(struct sim_term *t, const struct sim_txn *x, const char *want)
{
    uint8_t msg[SIM_MSG_MAX];
    size_t len;
    char err[200] = "";
    assert_int_equal(sim_term_build_request(t, x, msg, sizeof msg, &len, NULL, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, want));
}

/* The PIN block blk (ISO 0) of pan decrypts under the clear TPK tpk_hex to want. */
static void tpk_pin_is(const char *tpk_hex, const uint8_t *blk, size_t bl, const char *pan,
                       const char *want)
{
    struct hsm_key *tpk = clear_key(HSM_KT_TPK, tpk_hex);
    char pin[13];
    assert_int_equal(hsm_pin_decrypt(tpk, HSM_PINFMT_ISO0, blk, bl, pan, pin), HSM_OK);
    assert_string_equal(pin, want);
    hsm_key_release(tpk);
}

/* The DUKPT PIN block blk (format fmt) of pan, sent with the KSN ksn_hex, translates host-side
 * (BDK + KSN, the switch's path) under bdk (which it releases) to a ZPK block that decrypts to
 * want. */
static void dukpt_pin_is(struct hsm_key *bdk, const char *ksn_hex, int fmt, const uint8_t *blk,
                         size_t bl, const char *pan, const char *want)
{
    struct hsm_key *zpk = clear_key(HSM_KT_ZPK, "1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C");
    uint8_t ksn[12], out[16];
    size_t kl = strlen(ksn_hex) / 2, ol = 0;
    int pl = 0;
    assert_int_equal(at_hex_decode(ksn_hex, strlen(ksn_hex), ksn, sizeof ksn), kl);
    assert_int_equal(hsm_dukpt_pin_translate(bdk, ksn, kl, fmt, blk, bl, zpk, HSM_PINFMT_ISO0, pan,
                                             0, out, &ol, &pl),
                     HSM_OK);
    char pin[13];
    assert_int_equal(hsm_pin_decrypt(zpk, HSM_PINFMT_ISO0, out, ol, pan, pin), HSM_OK);
    assert_string_equal(pin, want);
    hsm_key_release(zpk);
    hsm_key_release(bdk);
}

static void test_tpk_purchase(void **state)
{
    struct sim_term *t = term_at("TERM0001", 1, 1);
    struct sim_txn x = purchase("4890010000000012", "1234", 1250);
    struct built b;
    build(t, &x, &b);
    assert_memory_equal(b.m.mti, "0200", 4);
    static const struct {
        int f;
        const char *v;
    } fields[] = {
        { 2, "4890010000000012" }, { 3, "000000" }, { 4, "000000001250" }, { 7, "1126150615" },
        { 11, "000001" },          { 14, "2812" },  { 22, "011" },         { 37, "633015000001" },
        { 41, "TERM0001" },        { 49, "504" },
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        field_eq(&b.m, fields[i].f, fields[i].v);
    assert_false(iso_has(&b.m, 62));
    assert_false(iso_has(&b.m, 128));
    assert_string_equal(b.sent.stan, "000001");
    assert_string_equal(b.sent.de7, "1126150615");
    assert_string_equal(b.sent.mti, "0200");
    assert_false(b.sent.mac_128);

    /* DE 64 is the last field and verifies over everything before its 16 hex chars. */
    assert_int_equal(iso_next(&b.m, 64), 0);
    mac_verifies(b.msg, b.len, 16, "3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C");

    /* The PIN block decrypts back to the PIN under the TPK. */
    size_t bl = 0;
    const uint8_t *blk = iso_get(&b.m, 52, &bl);
    assert_int_equal(bl, 8);
    tpk_pin_is("0E0E0E0E0E0E0E0E1F1F1F1F1F1F1F1F", blk, bl, "4890010000000012", "1234");

    /* The next request takes the next STAN. */
    build(t, &x, &b);
    assert_string_equal(b.sent.stan, "000002");
}

static void test_bad_mac_and_no_pin(void **state)
{
    struct sim_term *t = term_at("TERM0001", 7, 1);
    struct sim_txn x = purchase("4890010000000012", "", 500);
    x.bad_mac = true;
    struct built b;
    build(t, &x, &b);
    assert_false(iso_has(&b.m, 52));
    field_eq(&b.m, 22, "012");
    /* The MAC must NOT verify. */
    struct hsm_key *tak = clear_key(HSM_KT_TAK, "3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C");
    uint8_t mac[8];
    assert_int_equal(at_hex_decode((const char *)b.msg + b.len - 16, 16, mac, sizeof mac), 8);
    assert_int_equal(hsm_mac_verify(tak, HSM_MAC_ISO9797_3, HSM_PAD_1, b.msg, b.len - 16, mac, 8),
                     HSM_ERR_VERIFY);
    hsm_key_release(tak);
}

/* ANSI X9.24-1 published vector: BDK 0123456789ABCDEFFEDCBA9876543210, KSN
 * FFFF9876543210E00001, PIN 1234, PAN 4012345678909 -> 1B9C1845EB993A7A. */
static void test_dukpt_tdes_vector(void **state)
{
    struct sim_term *t = term_at("TERM0002", 100, 1);
    struct sim_txn x = purchase("4012345678909", "1234", 1000);
    snprintf(x.currency, sizeof x.currency, "952");
    struct built b;
    build(t, &x, &b);
    field_hex_eq(&b.m, 52, "1B9C1845EB993A7A");
    field_eq(&b.m, 62, "FFFF9876543210E00001");
    assert_string_equal(b.sent.ksn, "FFFF9876543210E00001");
    assert_true(iso_has(&b.m, 64));
    mac_verifies(b.msg, b.len, 16, "5E5E5E5E5E5E5E5E6D6D6D6D6D6D6D6D");

    /* The next transaction uses counter 2, and its block translates host-side (BDK +
     * KSN, the switch's path) to the PIN. */
    struct sim_txn y = purchase("4890020000000029", "4321", 1000);
    build(t, &y, &b);
    field_eq(&b.m, 62, "FFFF9876543210E00002");
    size_t bl = 0;
    const uint8_t *blk = iso_get(&b.m, 52, &bl);
    dukpt_pin_is(clear_key(HSM_KT_BDK, "0123456789ABCDEFFEDCBA9876543210"), b.sent.ksn,
                 HSM_PINFMT_ISO0, blk, bl, "4890020000000029", "4321");
}

/* ANSI X9.24-3:2017 supplement (AES-128 BDK FEDCBA9876543210F1F1F1F1F1F1F1F1, initial
 * key id 1234567890123456, counter 1): PIN 1234, PAN 4111111111111111, ISO 4 fill
 * 2F69ADDE2E9E7ACE -> encrypted block A912150391AB65A67E52883D81CE2D15. */
static void test_dukpt_aes_vector(void **state)
{
    struct sim_term *t = term_at("TERM0003", 1, 1);
    static const uint8_t fill[8] = { 0x2F, 0x69, 0xAD, 0xDE, 0x2E, 0x9E, 0x7A, 0xCE };
    struct sim_txn x = purchase("4111111111111111", "1234", 5000);
    x.iso4_fill = fill;
    struct built b;
    build(t, &x, &b);
    assert_false(iso_has(&b.m, 52));
    field_eq(&b.m, 110, "A912150391AB65A67E52883D81CE2D15");
    field_eq(&b.m, 62, "123456789012345600000001");
    /* DE 110 needs the secondary bitmap: the MAC moves to DE 128, the last field. */
    assert_false(iso_has(&b.m, 64));
    assert_true(iso_has(&b.m, 128));
    assert_true(b.sent.mac_128);
    mac_verifies(b.msg, b.len, 16, "7A7A7A7A7A7A7A7A8F8F8F8F8F8F8F8F");

    /* A random-fill block for counter 2 translates host-side back to the PIN. */
    struct sim_txn y = purchase("4890040000000043", "2222", 5000);
    build(t, &y, &b);
    field_eq(&b.m, 62, "123456789012345600000002");
    uint8_t blk[16];
    size_t n = 0;
    const uint8_t *hex = iso_get(&b.m, 110, &n);
    assert_int_equal(n, 32);
    assert_int_equal(at_hex_decode((const char *)hex, 32, blk, sizeof blk), 16);
    dukpt_pin_is(clear_key(HSM_KT_BDK_AES, "FEDCBA9876543210F1F1F1F1F1F1F1F1"), b.sent.ksn,
                 HSM_PINFMT_ISO4, blk, 16, "4890040000000043", "2222");
}

static void test_bcd87_tpdu(void **state)
{
    struct sim_term *t = term_at("TERM0004", 42, 1);
    struct sim_txn x = purchase("4890010000000012", "1234", 2000);
    struct built b;
    build(t, &x, &b);
    /* BCD MTI 02 00, binary bitmap, MAC as 8 raw bytes at the end. */
    assert_int_equal(b.msg[0], 0x02);
    assert_int_equal(b.msg[1], 0x00);
    field_eq(&b.m, 11, "000042");
    mac_verifies(b.msg, b.len, 8, "2C2C2C2C2C2C2C2C3B3B3B3B3B3B3B3B");
    size_t bl = 0;
    const uint8_t *blk = iso_get(&b.m, 52, &bl);
    tpk_pin_is("0B0B0B0B0B0B0B0B1A1A1A1A1A1A1A1A", blk, bl, "4890010000000012", "1234");
    /* Frame header: 2-byte length of TPDU + message, then TPDU 6000010000. */
    uint8_t hdr[ISO_FRAME_MAX_HEADER];
    assert_int_equal(sim_frame_header(t, b.len, hdr), 7);
    assert_int_equal((hdr[0] << 8) | hdr[1], (int)b.len + 5);
    static const uint8_t tpdu[5] = { 0x60, 0x00, 0x01, 0x00, 0x00 };
    assert_memory_equal(hdr + 2, tpdu, 5);

    /* The whole frame in one call parses back with the TPDU framing. */
    uint8_t frame[SIM_MSG_MAX + 8];
    size_t flen = 0;
    char err[200];
    assert_int_equal(sim_term_build_frame(t, &x, frame, sizeof frame, &flen, NULL, err, sizeof err),
                     0);
    struct iso_frame fr;
    struct iso_err ie;
    assert_int_equal(iso_frame_parse(ISO_FRAME_TPDU, 0, frame, flen, &fr, &ie), ISO_FRAME_READY);
    assert_int_equal(fr.consume, flen);
    assert_memory_equal(frame + fr.tpdu_off, tpdu, 5);
    unpack(t, frame + fr.msg_off, fr.msg_len, &b.m, b.arena, sizeof b.arena);
    field_eq(&b.m, 11, "000043");
    mac_verifies(frame + fr.msg_off, fr.msg_len, 8, "2C2C2C2C2C2C2C2C3B3B3B3B3B3B3B3B");
}

static void test_reversal_and_echo(void **state)
{
    struct sim_term *t = term_at("TERM0001", 200, 1);
    struct sim_txn x = purchase("4890010000000012", "1234", 1250);
    x.type = SIM_T_REVERSAL;
    x.orig_stan = 123;
    snprintf(x.orig_time, sizeof x.orig_time, "1126150000");
    struct built b;
    build(t, &x, &b);
    assert_memory_equal(b.m.mti, "0400", 4);
    field_eq(&b.m, 90,
             "0200000123112615000000000100001"
             "00000000000");
    assert_false(iso_has(&b.m, 52)); /* a reversal carries no PIN */
    assert_true(iso_has(&b.m, 128));
    mac_verifies(b.msg, b.len, 16, "3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C");

    struct sim_txn e;
    memset(&e, 0, sizeof e);
    e.type = SIM_T_ECHO;
    build(t, &e, &b);
    assert_memory_equal(b.m.mti, "0800", 4);
    field_eq(&b.m, 70, "301");
    assert_false(iso_has(&b.m, 2));
    mac_verifies(b.msg, b.len, 16, "3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C");

    /* Bad inputs are refused with a reason, not packed. */
    struct sim_txn bad = purchase("48900100", "1234", 1);
    build_refused(t, &bad, "PAN");
    bad = purchase("4890010000000012", "12", 1);
    build_refused(t, &bad, "PIN");
}

/* A field of a response: number and value. */
struct fv {
    int f;
    const char *v;
};

/* Builds a response the way a switch would (libhsm MAC over the exact bytes), with the extra
 * fields extra[0..n_extra). */
static size_t make_response_with(const char *mti, const char *rc, const char *de54,
                                 const struct fv *extra, size_t n_extra, bool mac, bool tamper,
                                 uint8_t *out, size_t cap)
{
    uint8_t arena[2048];
    struct iso_msg m;
    struct iso_err ie;
    iso_msg_init(&m, arena, sizeof arena);
    assert_int_equal(iso_set_mti(&m, mti), 0);
    assert_int_equal(iso_set_str(&m, 11, "000001"), 0);
    assert_int_equal(iso_set_str(&m, 38, "A1B2C3"), 0);
    assert_int_equal(iso_set_str(&m, 39, rc), 0);
    assert_int_equal(iso_set_str(&m, 41, "TERM0001"), 0);
    if (de54)
        assert_int_equal(iso_set_str(&m, 54, de54), 0);
    for (size_t i = 0; i < n_extra; i++)
        assert_int_equal(iso_set_str(&m, extra[i].f, extra[i].v), 0);
    static const uint8_t zero[8];
    if (mac)
        assert_int_equal(iso_set(&m, 64, zero, 8), 0);
    size_t n = 0;
    assert_int_equal(iso_pack(iso_dialect_find("ascii87"), &m, out, cap, &n, &ie), 0);
    if (mac) {
        struct hsm_key *tak = clear_key(HSM_KT_TAK, "3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C");
        uint8_t v[16];
        size_t vl;
        assert_int_equal(hsm_mac_generate(tak, HSM_MAC_ISO9797_3, HSM_PAD_1, out, n - 16, v, &vl),
                         HSM_OK);
        at_hex_encode(v, 8, (char *)out + n - 16); /* writes a NUL past the end: cap > n */
        hsm_key_release(tak);
        if (tamper)
            out[n - 17] ^= 1; /* a byte inside DE 54 / DE 41 */
    }
    return n;
}

static size_t make_response(const char *mti, const char *rc, const char *de54, bool mac,
                            bool tamper, uint8_t *out, size_t cap)
{
    return make_response_with(mti, rc, de54, NULL, 0, mac, tamper, out, cap);
}

/* A wallet-to-wallet transfer (docs/acquirer-interface.md): 0200, processing code 40, the
 * sender's PAN, PIN and currency, the recipient in DE 103 (a PAN, or '+' and a mobile number),
 * which needs the secondary bitmap: the MAC goes in DE 128 (test_iso8583 checks that every
 * dialect defines DE 103). */
static void test_transfer_build(void **state)
{
    struct sim_term *t = term_at("TERM0001", 300, 1);
    struct sim_txn x = purchase("4890010000000012", "1234", 1000);
    x.type = SIM_T_TRANSFER;
    snprintf(x.recipient, sizeof x.recipient, "4890020000000029");
    struct built b;
    build(t, &x, &b);
    assert_memory_equal(b.m.mti, "0200", 4);
    field_eq(&b.m, 2, "4890010000000012");
    field_eq(&b.m, 3, "400000");
    field_eq(&b.m, 4, "000000001000");
    field_eq(&b.m, 49, "504");
    field_eq(&b.m, 103, "4890020000000029");
    size_t bl = 0;
    const uint8_t *blk = iso_get(&b.m, 52, &bl);
    assert_int_equal(bl, 8);
    tpk_pin_is("0E0E0E0E0E0E0E0E1F1F1F1F1F1F1F1F", blk, bl, "4890010000000012", "1234");
    assert_true(b.sent.mac_128);
    assert_int_equal(iso_next(&b.m, 103), 128);
    mac_verifies(b.msg, b.len, 16, "3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C");

    /* A mobile number, as typed, on the bcd87 POS terminal (binary MAC in DE 128). */
    t = term_at("TERM0004", 300, 1);
    snprintf(x.recipient, sizeof x.recipient, "+22236123456");
    build(t, &x, &b);
    field_eq(&b.m, 103, "+22236123456");
    assert_true(b.sent.mac_128);
    mac_verifies(b.msg, b.len, 8, "2C2C2C2C2C2C2C2C3B3B3B3B3B3B3B3B");

    /* A recipient that is neither is refused, not sent. */
    static const char *const bad[] = {
        "4890020000000028",     /* Luhn fails */
        "48900200029",          /* 11 digits */
        "48900200000000000299", /* 20 digits */
        "22236123456",          /* no '+' and not a valid PAN */
        "+2223612",             /* 7 digits */
        "+2223612345678901",    /* 16 digits */
        "+222 36123456",        /* a space */
    };
    t = term_at("TERM0001", 310, 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(x.recipient, sizeof x.recipient, "%s", bad[i]);
        build_refused(t, &x, "DE 103");
    }
}

static void test_response_check(void **state)
{
    struct sim_term *t = sim_terms_find(&terms, "TERM0001");
    uint8_t msg[1024], arena[4096];
    struct iso_msg m;
    struct sim_resp r;
    char err[200];
    iso_msg_init(&m, arena, sizeof arena);

    size_t n = make_response("0110", "00", "0001504C0000001000000002504C000000098750", true, false,
                             msg, sizeof msg);
    assert_int_equal(sim_term_check_response(t, msg, n, &m, &r, err, sizeof err), 0);
    assert_int_equal(r.mac, SIM_MAC_OK);
    assert_string_equal(r.mti, "0110");
    assert_string_equal(r.rc, "00");
    assert_string_equal(r.auth, "A1B2C3");
    assert_true(r.has_balance);
    assert_int_equal(r.balance, 98750); /* available (02) wins over ledger (01) */
    assert_string_equal(r.balance_ccy, "504");
    assert_true(sim_mac_acceptable(&r));

    n = make_response("0210", "51", NULL, true, true, msg, sizeof msg);
    assert_int_equal(sim_term_check_response(t, msg, n, &m, &r, err, sizeof err), 0);
    assert_int_equal(r.mac, SIM_MAC_BAD);
    assert_string_equal(r.rc, "51");
    assert_false(sim_mac_acceptable(&r));

    n = make_response("0210", "05", NULL, false, false, msg, sizeof msg);
    assert_int_equal(sim_term_check_response(t, msg, n, &m, &r, err, sizeof err), 0);
    assert_int_equal(r.mac, SIM_MAC_ABSENT);
    assert_false(sim_mac_acceptable(&r));
    n = make_response("0810", "00", NULL, false, false, msg, sizeof msg);
    assert_int_equal(sim_term_check_response(t, msg, n, &m, &r, err, sizeof err), 0);
    assert_true(sim_mac_acceptable(&r)); /* network management may come unMACed */

    /* A transfer's answer: what the recipient got (DE 6/51), the rate, the fee, DE 15; a
     * decline names its failed leg in DE 44. */
    static const struct fv xfer[] = { { 6, "000000000656" },
                                      { 10, "40655957" },
                                      { 15, "1206" },
                                      { 28, "D00000100" },
                                      { 51, "952" } };
    n = make_response_with("0210", "00", NULL, xfer, 5, true, false, msg, sizeof msg);
    assert_int_equal(sim_term_check_response(t, msg, n, &m, &r, err, sizeof err), 0);
    assert_int_equal(r.mac, SIM_MAC_OK);
    assert_true(r.has_billing);
    assert_int_equal(r.billing, 656);
    assert_string_equal(r.billing_ccy, "952");
    assert_string_equal(r.rate, "40655957");
    assert_true(r.has_fee);
    assert_int_equal(r.fee, 100);
    assert_string_equal(r.settle_date, "1206");
    assert_string_equal(r.info, "");
    static const struct fv declined[] = { { 44, "OCT57" }, { 28, "C00000005" } };
    n = make_response_with("0210", "57", NULL, declined, 2, true, false, msg, sizeof msg);
    assert_int_equal(sim_term_check_response(t, msg, n, &m, &r, err, sizeof err), 0);
    assert_string_equal(r.info, "OCT57");
    assert_false(r.has_billing);
    assert_int_equal(r.fee, -5);
    assert_string_equal(r.rate, "");
    assert_string_equal(r.settle_date, "");
    /* A rate with more than 7 decimals is left out, not shown wrong (the codec itself refuses
     * a DE 28 that is not 'C'/'D' and digits). */
    static const struct fv odd[] = { { 10, "90000001" } };
    n = make_response_with("0210", "00", NULL, odd, 1, true, false, msg, sizeof msg);
    assert_int_equal(sim_term_check_response(t, msg, n, &m, &r, err, sizeof err), 0);
    assert_string_equal(r.rate, "");

    /* Garbage does not decode. */
    assert_int_equal(
        sim_term_check_response(t, (const uint8_t *)"02X0", 4, &m, &r, err, sizeof err), -1);
}

static void test_amounts(void **state)
{
    const struct at_currency *mad = at_currency_find("MAD"), *xof = at_currency_find("952"),
                             *xaf = at_currency_find("xaf"), *mru = at_currency_find("929");
    assert_non_null(mad);
    assert_non_null(xof);
    assert_non_null(xaf);
    assert_non_null(mru);
    assert_int_equal(mad->exponent, 2);
    assert_int_equal(xof->exponent, 0);
    assert_int_equal(xaf->exponent, 0);
    assert_int_equal(mru->exponent, 2);
    assert_string_equal(xaf->numeric, "950");
    assert_string_equal(mru->alpha, "MRU");
    assert_null(at_currency_find("ZZZ"));
    assert_null(at_currency_find("999"));

    uint64_t v = 0;
    char err[120];
    const struct {
        const char *text;
        const struct at_currency *cur;
        uint64_t minor;
    } good[] = {
        { "12.50", mad, 1250 },
        { "12.5", mad, 1250 },
        { "12", mad, 1200 },
        { "0.01", mru, 1 },
        { "5000.00", mru, 500000 },
        { "1000", xof, 1000 },
        { "0", xaf, 0 },
        { "9999999999.99", mad, 999999999999ull },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(sim_amount_parse(good[i].text, good[i].cur, &v, err, sizeof err), 0);
        assert_int_equal(v, good[i].minor);
    }

    const char *bad_mad[] = { "12.505",
                              "",
                              ".5",
                              "5.",
                              "1.2.3",
                              "-5",
                              "+5",
                              "abc",
                              "1 000",
                              "10000000000.00",
                              "99999999999999999999999" };
    for (size_t i = 0; i < sizeof bad_mad / sizeof bad_mad[0]; i++) {
        v = 777;
        assert_int_equal(sim_amount_parse(bad_mad[i], mad, &v, err, sizeof err), -1);
        assert_int_equal(v, 777);
    }
    assert_int_equal(sim_amount_parse("10.5", xof, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "XOF has 0 decimals"));
    assert_int_equal(sim_amount_parse("1000.0", xaf, &v, err, sizeof err), -1);

    char out[48];
    assert_string_equal(sim_amount_format(1250, mad, out, sizeof out), "12.50 MAD");
    assert_string_equal(sim_amount_format(5, mru, out, sizeof out), "0.05 MRU");
    assert_string_equal(sim_amount_format(500000, xof, out, sizeof out), "500000 XOF");
    assert_string_equal(sim_rc_text("51"), "insufficient funds");
    assert_string_equal(sim_rc_text("Z9"), "unknown code");
}

static void test_opts_resolve(void **state)
{
    struct sim_opts o;
    struct sim_txn x;
    struct sim_term *t = NULL;
    char err[200];
    memset(&o, 0, sizeof o);
    assert_int_equal(sim_opts_set(&o, "type", "purchase", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_set(&o, "pan", "4890020000000029", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_set(&o, "amount", "1500", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_set(&o, "terminal", "TERM0002", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_resolve(&o, &terms, &x, &t, err, sizeof err), 0);
    /* Demo-card defaults: the XOF card's PIN, expiry and currency. */
    assert_string_equal(t->id, "TERM0002");
    assert_string_equal(x.pin, "4321");
    assert_string_equal(x.expiry, "2812");
    assert_string_equal(x.currency, "952");
    assert_int_equal(x.amount, 1500);

    assert_int_equal(sim_opts_set(&o, "no-pin", NULL, false, err, sizeof err), 0);
    assert_int_equal(sim_opts_set(&o, "currency", "MAD", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_resolve(&o, &terms, &x, &t, err, sizeof err), 0);
    assert_string_equal(x.pin, "");
    assert_int_equal(x.amount, 150000);

    assert_int_equal(sim_opts_set(&o, "amount", "1.5", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_set(&o, "currency", "XOF", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_resolve(&o, &terms, &x, &t, err, sizeof err), -1);

    assert_int_equal(sim_opts_set(&o, "terminal", "NOPE0001", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_resolve(&o, &terms, &x, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "NOPE0001"));

    assert_int_equal(sim_opts_set(&o, "expect", "00", false, err, sizeof err), -1);
    assert_int_equal(sim_opts_set(&o, "pan", "12ab", false, err, sizeof err), -1);
    assert_int_equal(sim_opts_set(&o, "stan", "1000000", false, err, sizeof err), -1);
    assert_int_equal(sim_opts_set(&o, "type", "steal", false, err, sizeof err), -1);
    assert_int_equal(sim_opts_set(&o, "currency", "ZZZ", false, err, sizeof err), -1);
    assert_int_equal(sim_opts_set(&o, "colour", "red", false, err, sizeof err), -1);
    assert_non_null(strstr(err, "colour"));
}

/* --type transfer: the recipient is --to (a PAN passing Luhn) or --to-msisdn ('+' and 8..15
 * digits), exactly one of them and only on a transfer; the sender's PIN and currency as for a
 * purchase. */
static void test_opts_transfer(void **state)
{
    struct sim_opts o;
    struct sim_txn x;
    struct sim_term *t = NULL;
    char err[200];
    static const struct {
        const char *key, *value, *why;
    } bad[] = {
        { "to", "4890020000000028",
          "to: expected the recipient's PAN, 12..19 digits passing the Luhn check" },
        { "to", "48900200029", "to: expected the recipient's PAN" },
        { "to", "+4890020000000029", "to: expected the recipient's PAN" },
        { "to-msisdn", "22236123456", "to-msisdn: expected '+' and 8..15 digits" },
        { "to-msisdn", "+2223612", "to-msisdn: expected '+' and 8..15 digits" },
        { "to-msisdn", "+2223612345678901", "to-msisdn: expected" },
        { "to-msisdn", "+2223612345a", "to-msisdn: expected" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&o, 0, sizeof o);
        err[0] = '\0';
        assert_int_equal(sim_opts_set(&o, bad[i].key, bad[i].value, false, err, sizeof err), -1);
        if (!strstr(err, bad[i].why)) {
            fprintf(stderr, "%s=%s: '%s' lacks '%s'\n", bad[i].key, bad[i].value, err, bad[i].why);
            fail();
        }
    }

    memset(&o, 0, sizeof o);
    assert_int_equal(sim_opts_set(&o, "type", "transfer", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_set(&o, "amount", "10.00", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_resolve(&o, &terms, &x, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "transfer: the recipient is missing (to or to-msisdn, DE 103)"));
    assert_int_equal(sim_opts_set(&o, "to", "4890020000000029", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_resolve(&o, &terms, &x, &t, err, sizeof err), 0);
    assert_int_equal(x.type, SIM_T_TRANSFER);
    assert_string_equal(x.recipient, "4890020000000029");
    assert_string_equal(x.pan, "4890010000000012"); /* the sender: the MAD demo card */
    assert_string_equal(x.pin, "1234");
    assert_string_equal(x.currency, "504");
    assert_int_equal(x.amount, 1000);
    assert_int_equal(sim_opts_set(&o, "to-msisdn", "+22236123456", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_resolve(&o, &terms, &x, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "to and to-msisdn exclude each other"));
    o.to[0] = '\0';
    assert_int_equal(sim_opts_resolve(&o, &terms, &x, &t, err, sizeof err), 0);
    assert_string_equal(x.recipient, "+22236123456");
    assert_int_equal(sim_opts_set(&o, "type", "purchase", false, err, sizeof err), 0);
    assert_int_equal(sim_opts_resolve(&o, &terms, &x, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "to and to-msisdn are for type transfer only"));
}

/* The options are rows of a table: what each accepts, in the sentences `send` and scenario
 * files print; the last of amount and amount-minor counts; flags bare or yes/no; the command
 * line reads the same rows. */
static void test_opts_table(void **state)
{
    struct sim_opts o;
    char err[200];
    memset(&o, 0, sizeof o);
    static const struct {
        const char *key, *value, *why;
    } bad[] = {
        { "pan", "12ab", "pan: expected 12 to 19 digits" },
        { "pan", "48900100000", "pan: expected 12 to 19 digits" },
        { "pin", "12", "pin: expected 4 to 12 digits" },
        { "expiry", "281", "expiry: expected 4 digits" },
        { "terminal", "TERM01", "terminal: expected 8 characters" },
        { "rrn", "123", "rrn: expected 12 characters" },
        { "amount", "123456789012345678901", "amount: expected 1 to 20 characters" },
        { "stan", "0", "stan: expected an integer in 1..999999" },
        { "timeout-ms", "600001", "timeout-ms: expected an integer in 1..600000" },
        { "amount-minor", "12x", "amount-minor: expected an integer in 0..999999999999" },
        { "type", "steal", "type: unknown (purchase," },
        { "currency", "ZZZ", "currency: unknown code" },
        { "host", "nohost", "host: expected HOST:PORT" },
        { "no-pin", "maybe", "no-pin: expected yes/no" },
        { "mti", NULL, "mti: needs a value" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(sim_opts_set(&o, bad[i].key, bad[i].value, false, err, sizeof err), -1);
        if (!strstr(err, bad[i].why)) {
            fprintf(stderr, "%s=%s: '%s' lacks '%s'\n", bad[i].key, bad[i].value, err, bad[i].why);
            fail();
        }
    }
    assert_int_equal(sim_opts_set(&o, "mac", "maybe", true, err, sizeof err), -1);
    assert_string_equal(err, "mac: expected ok or any");
    assert_int_equal(sim_opts_set(&o, "mac", "any", false, err, sizeof err),
                     -1); /* scenario only */
    assert_int_equal(sim_opts_set(&o, "mac", "any", true, err, sizeof err), 0);
    assert_true(o.mac_any);

    assert_int_equal(sim_opts_set(&o, "amount-minor", "1250", false, err, sizeof err), 0);
    assert_true(o.has_amount_minor);
    assert_int_equal(sim_opts_set(&o, "amount", "3.00", false, err, sizeof err), 0);
    assert_false(o.has_amount_minor);
    assert_string_equal(o.amount, "3.00");
    assert_int_equal(sim_opts_set(&o, "amount-minor", "7", false, err, sizeof err), 0);
    assert_true(o.has_amount_minor);
    assert_string_equal(o.amount, "");
    assert_int_equal(sim_opts_set(&o, "bad-mac", "yes", true, err, sizeof err), 0);
    assert_true(o.bad_mac);
    assert_int_equal(sim_opts_set(&o, "bad-mac", "no", true, err, sizeof err), 0);
    assert_false(o.bad_mac);
    assert_int_equal(sim_opts_set(&o, "type", "balance", false, err, sizeof err), 0);
    assert_true(o.has_type);
    assert_int_equal(o.type, SIM_T_BALANCE);

    char *argv[] = { "acquirer-sim", "--no-pin", "--stan", "42", "--json", "--pin", NULL };
    int i = 1;
    memset(&o, 0, sizeof o);
    assert_int_equal(sim_opts_arg(&o, 6, argv, &i, err, sizeof err), 1);
    assert_true(o.no_pin);
    assert_int_equal(i, 1); /* a flag takes no value */
    i = 2;
    assert_int_equal(sim_opts_arg(&o, 6, argv, &i, err, sizeof err), 1);
    assert_int_equal(o.stan, 42);
    assert_int_equal(i, 3);
    i = 4;
    assert_int_equal(sim_opts_arg(&o, 6, argv, &i, err, sizeof err), 0); /* not ours */
    i = 5;
    assert_int_equal(sim_opts_arg(&o, 6, argv, &i, err, sizeof err), -1);
    assert_string_equal(err, "--pin needs a value");

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    sim_opts_usage(f);
    fclose(f);
    assert_non_null(strstr(text, "  --pan TEXT                   12 to 19 digits\n"));
    assert_non_null(strstr(text, "  --bad-mac                    a flag\n"));
    assert_non_null(strstr(text, "  expect=TEXT                  2 characters\n"));
    free(text);
}

static void test_scenario_good(void **state)
{
    static const char text[] = "# demo\n"
                               "\n"
                               "defaults terminal=TERM0002 timeout-ms=3000\n"
                               "type=purchase pan=4890010000000012 amount=12.50 id=p1 expect=00\n"
                               "  type=reversal original=p1 expect=00   # comment\n"
                               "type=echo terminal=TERM0001 expect=00\r\n"
                               "type=purchase amount=1 bad-mac mac=any expect=63\n";
    struct sim_scn s;
    char err[200];
    assert_int_equal(sim_scn_parse(text, sizeof text - 1, "t.scn", &s, err, sizeof err), 0);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.lines[0].lineno, 4);
    assert_string_equal(s.lines[0].o.terminal, "TERM0002");
    assert_int_equal(s.lines[0].o.timeout_ms, 3000);
    assert_string_equal(s.lines[0].o.id, "p1");
    assert_int_equal(s.lines[1].original_index, 0);
    assert_int_equal(s.lines[1].o.type, SIM_T_REVERSAL);
    assert_string_equal(s.lines[2].o.terminal, "TERM0001");
    assert_string_equal(s.lines[2].o.expect, "00");
    assert_true(s.lines[3].o.bad_mac);
    assert_true(s.lines[3].o.mac_any);
    assert_string_equal(s.lines[3].o.terminal, "TERM0002");
    sim_scn_free(&s);
}

/* Scenario lines take the recipient as to= or to-msisdn=; a bad one names its line. */
static void test_scenario_transfer(void **state)
{
    static const char text[] = "type=transfer pan=4890010000000012 to=4890020000000029 "
                               "amount=10.00 expect=00\n"
                               "type=transfer pan=4890020000000029 to-msisdn=+22236123456 "
                               "amount=2500 expect=00\n";
    struct sim_scn s;
    struct sim_txn x;
    struct sim_term *t;
    char err[200];
    assert_int_equal(sim_scn_parse(text, sizeof text - 1, "t.scn", &s, err, sizeof err), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.lines[0].o.to, "4890020000000029");
    assert_string_equal(s.lines[1].o.to_msisdn, "+22236123456");
    assert_int_equal(sim_opts_resolve(&s.lines[0].o, &terms, &x, &t, err, sizeof err), 0);
    assert_string_equal(x.recipient, "4890020000000029");
    assert_int_equal(sim_opts_resolve(&s.lines[1].o, &terms, &x, &t, err, sizeof err), 0);
    assert_string_equal(x.recipient, "+22236123456");
    assert_string_equal(x.currency, "952"); /* the sender's: the XOF demo card */
    assert_int_equal(x.amount, 2500);
    sim_scn_free(&s);

    static const char bad[] = "type=transfer to=4890020000000029 amount=1 expect=00\n"
                              "type=transfer to-msisdn=0022236123456 amount=1 expect=00\n";
    assert_int_equal(sim_scn_parse(bad, sizeof bad - 1, "x.scn", &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "x.scn:2: to-msisdn: expected '+' and 8..15 digits"));
}

static void expect_scn_error(const char *text, const char *want)
{
    struct sim_scn s;
    char err[200] = "";
    assert_int_equal(sim_scn_parse(text, strlen(text), "bad.scn", &s, err, sizeof err), -1);
    if (!strstr(err, want)) {
        fprintf(stderr, "error '%s' lacks '%s'\n", err, want);
        fail();
    }
    assert_null(s.lines);
}

static void test_scenario_errors(void **state)
{
    expect_scn_error("type=purchase amount=1 expect=00\ntype=purchase amout=1 expect=00\n",
                     "bad.scn:2: unknown option 'amout'");
    expect_scn_error("# c\ntype=purchase amount=1\n", "bad.scn:2: expect= missing");
    expect_scn_error("amount=1 expect=00\n", "bad.scn:1: type= missing");
    expect_scn_error("type=purchase amount=1 amount=2 expect=00\n", "bad.scn:1: 'amount' given");
    expect_scn_error("type=reversal original=x expect=00\n", "bad.scn:1: original 'x'");
    expect_scn_error("type=purchase amount=1 id=a expect=00\ntype=purchase original=a expect=00\n",
                     "bad.scn:2: original= is only for type=reversal");
    expect_scn_error("type=purchase amount=1 id=a expect=00\ntype=cash amount=1 id=a expect=00\n",
                     "bad.scn:2: id 'a' already used on line 1");
    expect_scn_error("type=purchase amount-minor=12x expect=00\n", "bad.scn:1: amount-minor");
    expect_scn_error("type=purchase pin=12 amount=1 expect=00\n", "bad.scn:1: pin");
    expect_scn_error("defaults expect=00\n", "bad.scn:1: 'expect' cannot be a default");
    expect_scn_error("type=purchase amount=1 expect=00 mac=maybe\n", "bad.scn:1: mac");
    expect_scn_error("# only comments\n\n", "no transaction lines");
    expect_scn_error("type=purchase amount=1 expect=000\n", "bad.scn:1: expect");
    char big[1200];
    memset(big, 'a', sizeof big);
    big[sizeof big - 1] = '\0';
    expect_scn_error(big, "bad.scn:1: line longer");
}

/* balances=PAN[,PAN]: one or two demo cards, kept in order (sender first); a default like any
 * key, which a line may replace; never a `send` option. */
static void test_scenario_balances(void **state)
{
    static const char text[] = "defaults balances=4890020000000029\n"
                               "type=transfer pan=4890010000000012 to=4890010000000087 "
                               "amount=10.00 balances=4890010000000012,4890010000000087 "
                               "expect=00\n"
                               "type=balance pan=4890020000000029 expect=00\n"
                               "type=purchase amount=1 balances=4890010000000012 expect=00\n";
    struct sim_scn s;
    char err[200];
    assert_int_equal(sim_scn_parse(text, sizeof text - 1, "t.scn", &s, err, sizeof err), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.lines[0].o.n_balances, 2);
    assert_string_equal(s.lines[0].o.balance_pan[0], "4890010000000012");
    assert_string_equal(s.lines[0].o.balance_pan[1], "4890010000000087");
    assert_int_equal(s.lines[1].o.n_balances, 1); /* the default */
    assert_string_equal(s.lines[1].o.balance_pan[0], "4890020000000029");
    assert_int_equal(s.lines[2].o.n_balances, 1);
    assert_string_equal(s.lines[2].o.balance_pan[0], "4890010000000012");
    sim_scn_free(&s);

    struct sim_opts o;
    memset(&o, 0, sizeof o);
    assert_int_equal(sim_opts_set(&o, "balances", "4890010000000012", false, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown option 'balances'"));
    assert_int_equal(o.n_balances, 0);

    static const struct {
        const char *value, *why;
    } bad[] = {
        { "4890010000000013", "bad.scn:1: balances: card 1 is not a demo card" }, /* Luhn */
        { "4890010000000012,4999990000000098", "bad.scn:1: balances: card 2 is not a demo card" },
        { "4890010000000012,", "bad.scn:1: balances: card 2 is not a demo card" },
        { ",4890010000000012", "bad.scn:1: balances: card 1 is not a demo card" },
        { "48900100000000120000", "bad.scn:1: balances: card 1 is not a demo card" },
        { "4890010000000012,4890010000000012", "bad.scn:1: balances: the same card twice" },
        { "4890010000000012,4890020000000029,4890030000000036", "bad.scn:1: balances: at most 2" },
        { "", "bad.scn:1: balances: card 1 is not a demo card" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[200];
        snprintf(line, sizeof line, "type=purchase amount=1 balances=%s expect=00\n", bad[i].value);
        expect_scn_error(line, bad[i].why);
        assert_int_equal(sim_scn_parse(line, strlen(line), "bad.scn", &s, err, sizeof err), -1);
        assert_null(strstr(err, "489")); /* a sentence that never repeats a PAN */
    }
}

static void test_state_file(void **state)
{
    char dir[] = "/tmp/atlas-acq-state-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char err[300];
    struct sim_term *t = sim_terms_find(&terms, "TERM0002");
    assert_int_equal(sim_term_reserve(t, dir, 3, err, sizeof err), 0);
    assert_int_equal(t->stan_next, 1);
    assert_int_equal(t->ksn_next, 1);
    /* A second process reserving now gets the block after ours. */
    struct sim_terms other;
    assert_int_equal(sim_terms_builtin(&other, err, sizeof err), 0);
    struct sim_term *t2 = sim_terms_find(&other, "TERM0002");
    assert_int_equal(sim_term_reserve(t2, dir, 2, err, sizeof err), 0);
    assert_int_equal(t2->stan_next, 4);
    assert_int_equal(t2->ksn_next, 4);

    /* Counters with more than 10 one bits are skipped (X9.24-1). */
    char path[512];
    snprintf(path, sizeof path, "%s/TERM0002.state", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "stan=999999\nksn_counter=%u\n", 0x7FFu);
    fclose(f);
    assert_int_equal(sim_term_reserve(t2, dir, 1, err, sizeof err), 0);
    struct sim_txn x = purchase("4890020000000029", "4321", 100);
    uint8_t msg[SIM_MSG_MAX];
    size_t len;
    struct sim_sent sent;
    assert_int_equal(sim_term_build_request(t2, &x, msg, sizeof msg, &len, &sent, err, sizeof err),
                     0);
    assert_string_equal(sent.ksn, "FFFF9876543210E00800");
    assert_string_equal(sent.stan, "999999");
    /* The reservation ran out: the next request reserves a new block, STAN wraps to 1. */
    assert_int_equal(sim_term_build_request(t2, &x, msg, sizeof msg, &len, &sent, err, sizeof err),
                     0);
    assert_string_equal(sent.stan, "000001");
    assert_string_equal(sent.ksn, "FFFF9876543210E00801");

    /* Past the last usable TDES counter (0x1FF800: the top 10 bits) the terminal refuses. */
    f = fopen(path, "w");
    fprintf(f, "stan=5\nksn_counter=%u\n", 0x1FF801u);
    fclose(f);
    assert_int_equal(sim_term_reserve(t2, dir, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "exhausted"));

    /* A damaged state file is refused, never silently reset. */
    f = fopen(path, "w");
    fprintf(f, "stan=12\nksn_counter=banana\n");
    fclose(f);
    assert_int_equal(sim_term_reserve(t2, dir, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "unreadable state"));
    sim_terms_free(&other);
    sim_term_set_counters(t, 1, 1);
    unlink(path);
    snprintf(path, sizeof path, "%s", dir);
    rmdir(path);
}

static void test_terminal_file(void **state)
{
    char path[] = "/tmp/atlas-acq-terms-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char good[] = "# lab terminal\n[terminal TERM0009]\naddress = 127.0.0.1:9999\n"
                        "dialect = ascii87\nframing = 2b\nkey_scheme = tpk\n"
                        "tpk = 0E0E0E0E0E0E0E0E1F1F1F1F1F1F1F1F\n"
                        "tak = 3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C\ncurrency = XOF\n"
                        "merchant = SHOP42\n";
    assert_int_equal(write(fd, good, sizeof good - 1), (ssize_t)(sizeof good - 1));
    close(fd);
    struct sim_terms set;
    char err[300];
    assert_int_equal(sim_terms_builtin(&set, err, sizeof err), 0);
    assert_int_equal(sim_terms_load(&set, path, err, sizeof err), 0);
    struct sim_term *t = sim_terms_find(&set, "TERM0009");
    assert_non_null(t);
    assert_string_equal(t->address, "127.0.0.1:9999");
    assert_string_equal(t->currency, "952");
    assert_string_equal(t->merchant, "SHOP42         ");
    assert_int_equal(set.n, 5);

    FILE *f = fopen(path, "w");
    fprintf(f, "[terminal TERM0010]\nkey_scheme = tpk\ntak = 3D3D\n");
    fclose(f);
    assert_int_equal(sim_terms_load(&set, path, err, sizeof err), -1);
    assert_non_null(strstr(err, ":3:"));
    assert_non_null(strstr(err, "tak"));
    assert_null(strstr(err, "3D3D"));

    f = fopen(path, "w");
    fprintf(f, "[terminal TERM0010]\nkey_scheme = tpk\ntak = 3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C\n");
    fclose(f);
    assert_int_equal(sim_terms_load(&set, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "tpk missing"));

    f = fopen(path, "w");
    fprintf(f, "[terminal TERM0011]\ncolour = red\n");
    fclose(f);
    assert_int_equal(sim_terms_load(&set, path, err, sizeof err), -1);
    assert_non_null(strstr(err, ":2:"));
    sim_terms_free(&set);
    unlink(path);

    /* Programmatic terminals (the load harness's), same keys and checks. */
    const char *kv[] = { "key_scheme", "tpk",
                         "tpk",        "0E0E0E0E0E0E0E0E1F1F1F1F1F1F1F1F",
                         "tak",        "3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C",
                         NULL };
    struct sim_term *lt = sim_term_create("LOAD0001", kv, err, sizeof err);
    assert_non_null(lt);
    assert_string_equal(lt->id, "LOAD0001");
    sim_term_free(lt);
    const char *bad[] = { "key_scheme", "dukpt-aes", "tak", "3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C",
                          NULL };
    assert_null(sim_term_create("LOAD0002", bad, err, sizeof err));
    assert_non_null(strstr(err, "bdk missing"));
    assert_null(sim_term_create("LOAD2", kv, err, sizeof err));
}

/* The shipped demo script parses, every line resolves against the built-in terminals,
 * and it covers what the demo promises: each terminal kind and each decline reason. */
static void test_demo_scenario(void **state)
{
    const char *src = getenv("ATLAS_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/sim/scenarios/demo.scn", src ? src : ".");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[65536];
    size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    struct sim_scn s;
    char err[300];
    if (sim_scn_parse(text, n, "demo.scn", &s, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        fail();
    }
    static const char *const rcs[] = { "00", "05", "13", "14", "15", "51",
                                       "54", "55", "57", "61", "62", "63" };
    bool seen_rc[sizeof rcs / sizeof rcs[0]] = { false };
    bool seen_term[4] = { false }, reversal = false, balance = false, aft = false, oct = false,
         echo = false;
    unsigned transfers = 0, foreign = 0;
    for (size_t i = 0; i < s.n; i++) {
        struct sim_opts o = s.lines[i].o;
        if (s.lines[i].original_index >= 0) {
            reversal = true;
            o.has_amount_minor = true;
            o.orig_stan = 1; /* DE 90 comes from the original at run time */
            snprintf(o.orig_time, sizeof o.orig_time, "0101000000");
            snprintf(o.terminal, sizeof o.terminal, "%s",
                     s.lines[s.lines[i].original_index].o.terminal);
        }
        struct sim_txn x;
        struct sim_term *t;
        if (sim_opts_resolve(&o, &terms, &x, &t, err, sizeof err) != 0) {
            fprintf(stderr, "line %u: %s\n", s.lines[i].lineno, err);
            fail();
        }
        for (size_t k = 0; k < sizeof rcs / sizeof rcs[0]; k++)
            if (strcmp(o.expect, rcs[k]) == 0)
                seen_rc[k] = true;
        if (strcmp(o.expect, "00") == 0 && t->id[7] >= '1' && t->id[7] <= '4')
            seen_term[t->id[7] - '1'] = true;
        /* Each transfer shows its sender's and its recipient's balances (the mobile number's
         * card: the XAF one), a purchase in another currency its card's. */
        if (x.type == SIM_T_TRANSFER) {
            transfers++;
            assert_int_equal(o.n_balances, 2);
            assert_string_equal(o.balance_pan[0], x.pan);
            assert_string_equal(o.balance_pan[1], o.to[0] ? o.to : "4890030000000036");
        }
        const struct sim_demo_card *card = sim_demo_card_find(x.pan);
        if (x.type == SIM_T_PURCHASE && card && strcmp(x.currency, card->currency) != 0) {
            foreign++;
            assert_int_equal(o.n_balances, 1);
            assert_string_equal(o.balance_pan[0], x.pan);
        }
        balance |= x.type == SIM_T_BALANCE;
        aft |= x.type == SIM_T_AFT;
        oct |= x.type == SIM_T_OCT;
        echo |= x.type == SIM_T_ECHO;
    }
    for (size_t k = 0; k < sizeof rcs / sizeof rcs[0]; k++)
        assert_true(seen_rc[k]);
    for (int k = 0; k < 4; k++)
        assert_true(seen_term[k]);
    assert_true(reversal && balance && aft && oct && echo);
    assert_int_equal(transfers, 4);
    assert_int_equal(foreign, 2); /* XOF approved and converted, EUR declined for want of a rate */
    sim_scn_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tpk_purchase),      cmocka_unit_test(test_bad_mac_and_no_pin),
        cmocka_unit_test(test_dukpt_tdes_vector), cmocka_unit_test(test_dukpt_aes_vector),
        cmocka_unit_test(test_bcd87_tpdu),        cmocka_unit_test(test_reversal_and_echo),
        cmocka_unit_test(test_response_check),    cmocka_unit_test(test_amounts),
        cmocka_unit_test(test_opts_resolve),      cmocka_unit_test(test_opts_table),
        cmocka_unit_test(test_scenario_good),     cmocka_unit_test(test_scenario_errors),
        cmocka_unit_test(test_state_file),        cmocka_unit_test(test_terminal_file),
        cmocka_unit_test(test_demo_scenario),     cmocka_unit_test(test_transfer_build),
        cmocka_unit_test(test_opts_transfer),     cmocka_unit_test(test_scenario_transfer),
        cmocka_unit_test(test_scenario_balances),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
