/* issuer-sim end to end: a fresh PostgreSQL database (migrated, seeded by `issuer-sim seed`), a
 * real hsm-sim and a real issuer-sim process; the test plays the switch over TCP (ascii87, 2-byte
 * framing), building requests with libiso8583 and computing PIN blocks and MACs itself with
 * libhsm's clear-key functions, then checks both the wire and the database. */
#include "db_testlib.h"
#include "hsm.h"
#include "iso8583.h"
#include "issuer.h"
#include "testsupport.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static const uint8_t ZPK[16] = { 0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C,
                                 0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C, 0x1C };
static const uint8_t ZAK[16] = { 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A,
                                 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A };

#define N_WALLETS 48 /* 23..40: the batch tests; 41..46: the advices; 47, 48: a row lock */

static struct {
    bool skip;
    char conninfo[128];
    PGconn *pg;
    pid_t hsm_pid, iss_pid;
    uint16_t iss_port, hsm_port;
    char log_path[256];
    struct hsm_key *zpk, *zak;
    const struct iso_dialect *d;
    unsigned stan;
} F;

/* ---------------------------------------------------------------- the switch's side */

struct req {
    const char *mti;   /* "0200" */
    const char *pcode; /* "000000" */
    const char *pan;
    const char *pin;               /* NULL: no DE 52 */
    long long amount;              /* < 0: no DE 4 */
    const char *ccy;               /* "504" */
    const char *expiry;            /* DE 14 or NULL */
    const char *tid;               /* NULL: TERM0001 */
    const char *de90;              /* reversals */
    char stan[7];                  /* "" = next STAN */
    const char *de7;               /* NULL: 1126153000 */
    const char *de6, *de10, *de51; /* a converted request (docs/fx.md); NULL: absent */
    const char *de38, *de39;       /* a stand-in advice's approval code and decision */
    bool bad_mac;
};

struct resp {
    char mti[5], rc[3], auth[7], de54[41], stan[7];
    char de6[13], de10[9], de51[4];
};

static void next_stan(struct req *r)
{
    if (!r->stan[0])
        snprintf(r->stan, sizeof r->stan, "%06u", ++F.stan);
}

/* Packs r (MAC in DE 64, or DE 128 with DE 90) into out; returns the length or -1. */
static int build(struct req *r, uint8_t *out, size_t cap)
{
    struct iso_msg m;
    struct iso_err e;
    static uint8_t arena[4096];
    char amt[24];
    uint8_t blk[16];
    size_t bl, n;
    const uint8_t zero[8] = { 0 };
    next_stan(r);
    iso_msg_init(&m, arena, sizeof arena);
    int rc = iso_set_mti(&m, r->mti);
    rc |= iso_set_str(&m, 2, r->pan);
    rc |= iso_set_str(&m, 3, r->pcode);
    if (r->amount >= 0) {
        snprintf(amt, sizeof amt, "%012lld", r->amount);
        rc |= iso_set_str(&m, 4, amt);
    }
    if (r->de6)
        rc |= iso_set_str(&m, 6, r->de6);
    rc |= iso_set_str(&m, 7, r->de7 ? r->de7 : "1126153000");
    if (r->de10)
        rc |= iso_set_str(&m, 10, r->de10);
    rc |= iso_set_str(&m, 11, r->stan);
    if (r->expiry)
        rc |= iso_set_str(&m, 14, r->expiry);
    rc |= iso_set_str(&m, 32, "100001");
    rc |= iso_set_str(&m, 37, "633012345678");
    if (r->de38)
        rc |= iso_set_str(&m, 38, r->de38);
    if (r->de39)
        rc |= iso_set_str(&m, 39, r->de39);
    rc |= iso_set_str(&m, 41, r->tid ? r->tid : "TERM0001");
    rc |= iso_set_str(&m, 49, r->ccy ? r->ccy : "504");
    if (r->de51)
        rc |= iso_set_str(&m, 51, r->de51);
    if (r->pin) {
        if (hsm_pin_encrypt(F.zpk, HSM_PINFMT_ISO0, r->pin, r->pan, blk, &bl) != 0)
            return -1;
        rc |= iso_set_copy(&m, 52, blk, bl);
    }
    int mf = 64;
    if (r->de90) {
        rc |= iso_set_str(&m, 90, r->de90);
        mf = 128;
    }
    rc |= iso_set(&m, mf, zero, 8);
    if (rc != 0 || iso_pack(F.d, &m, out, cap, &n, &e) != 0)
        return -1;
    uint8_t mac[16];
    size_t ml;
    if (hsm_mac_generate(F.zak, HSM_MAC_ISO9797_3, HSM_PAD_1, out, n - 16, mac, &ml) != 0)
        return -1;
    if (r->bad_mac)
        mac[7] ^= 1;
    for (int i = 0; i < 8; i++)
        snprintf((char *)out + n - 16 + 2 * i, 3, "%02X", mac[i]);
    return (int)n;
}

static int send_req(int fd, struct req *r)
{
    uint8_t buf[2048];
    int n = build(r, buf + 2, sizeof buf - 2);
    if (n < 0)
        return -1;
    buf[0] = (uint8_t)(n >> 8);
    buf[1] = (uint8_t)n;
    return ts_send_all(fd, buf, (size_t)n + 2);
}

static void copy_field(const struct iso_msg *m, int f, char *out, size_t cap)
{
    size_t n;
    const uint8_t *v = iso_get(m, f, &n);
    if (!v || n >= cap)
        n = 0;
    if (v)
        memcpy(out, v, n);
    out[n] = '\0';
}

/* Reads one response, checks its MAC with the ZAK (for non-0810), fills out. 0 or -1. */
static int recv_resp(int fd, struct resp *out)
{
    uint8_t buf[4096], arena[8192];
    struct iso_msg m;
    struct iso_err e;
    ssize_t n = ts_recv_frame2(fd, buf, sizeof buf);
    if (n <= 0)
        return -1;
    iso_msg_init(&m, arena, sizeof arena);
    if (iso_unpack(F.d, buf, (size_t)n, &m, &e) != 0)
        return -1;
    memcpy(out->mti, m.mti, 4);
    out->mti[4] = '\0';
    copy_field(&m, 39, out->rc, sizeof out->rc);
    copy_field(&m, 38, out->auth, sizeof out->auth);
    copy_field(&m, 54, out->de54, sizeof out->de54);
    copy_field(&m, 11, out->stan, sizeof out->stan);
    copy_field(&m, 6, out->de6, sizeof out->de6);
    copy_field(&m, 10, out->de10, sizeof out->de10);
    copy_field(&m, 51, out->de51, sizeof out->de51);
    if (strcmp(out->mti, "0810") != 0) {
        int mf = iso_has(&m, 128) ? 128 : 64;
        size_t ml;
        const uint8_t *mac = iso_get(&m, mf, &ml);
        if (!mac || ml != 8 || iso_next(&m, mf) != 0)
            return -1;
        /* Pinned: DE 128 exactly when a field of 65..127 is present, else DE 64 and no
         * secondary bitmap at all (bit 1 of the first hex character after the MTI). */
        bool secondary = false;
        for (int f = 65; f < 128; f++)
            secondary = secondary || iso_has(&m, f);
        if (mf != (secondary ? 128 : 64) || (buf[4] >= '8') != secondary)
            return -1;
        if (hsm_mac_verify(F.zak, HSM_MAC_ISO9797_3, HSM_PAD_1, buf, (size_t)n - 16, mac, 8) != 0)
            return -1;
    }
    return 0;
}

static int connect_issuer(void)
{
    return ts_connect(F.iss_port, 20000);
}

/* One request, one response on a fresh connection. */
static void xact(struct req *r, struct resp *out)
{
    int fd = connect_issuer();
    assert_true(fd >= 0);
    assert_int_equal(send_req(fd, r), 0);
    assert_int_equal(recv_resp(fd, out), 0);
    assert_string_equal(out->stan, r->stan);
    close(fd);
}

static const char *pan_of(unsigned index)
{
    static char pans[N_WALLETS + 1][20];
    struct sim_seed_spec sp;
    if (sim_seed_spec(index, &sp) != 0)
        return NULL;
    memcpy(pans[index], sp.pan, sizeof sp.pan);
    return pans[index];
}

static const char *pin_of(unsigned index)
{
    static char pins[N_WALLETS + 1][5];
    struct sim_seed_spec sp;
    if (sim_seed_spec(index, &sp) != 0)
        return NULL;
    memcpy(pins[index], sp.pin, sizeof sp.pin);
    return pins[index];
}

static long long q(const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return dbt_scalar(F.pg, sql);
}

static long long balance(unsigned w)
{
    return q("SELECT balance_minor FROM wallet.wallets WHERE wallet_id = %u", w);
}

static long long held(unsigned w)
{
    return q("SELECT held_minor FROM wallet.wallets WHERE wallet_id = %u", w);
}

static void assert_invariants(void)
{
    assert_int_equal(q("SELECT count(*) FROM wallet.invariant_violations"), 0);
}

/* The switch's reversal (0420) of r, which was sent (its STAN set) with the default DE 7: the
 * same processing code, card, amount and currency, and a DE 90 naming r, written into de90. */
static struct req reversal_of(const struct req *r, char de90[43])
{
    snprintf(de90, 43, "%s%s1126153000%011d%011d", r->mti, r->stan, 100001, 0);
    return (struct req){ .mti = "0420",
                         .pcode = r->pcode,
                         .pan = r->pan,
                         .amount = r->amount,
                         .ccy = r->ccy,
                         .de6 = r->de6,
                         .de10 = r->de10,
                         .de51 = r->de51,
                         .de90 = de90 };
}

/* ---------------------------------------------------------------- fixture */

static int setup(void **st)
{
    (void)st;
    if (!dbt_env_names_cluster("test_issuer_sim")) {
        F.skip = true;
        return 0;
    }
    const char *ci = dbt_create("issuer");
    if (!ci)
        return -1;
    snprintf(F.conninfo, sizeof F.conninfo, "%s", ci);
    F.pg = dbt_connect(F.conninfo);
    if (!F.pg)
        return -1;
    F.d = iso_dialect_find("ascii87");
    if (hsm_key_from_clear(HSM_KT_ZPK, ZPK, 16, &F.zpk) != 0 ||
        hsm_key_from_clear(HSM_KT_ZAK, ZAK, 16, &F.zak) != 0)
        return -1;
    const char *dir = ts_tmpdir("issuer");
    char seed_out[300];
    snprintf(seed_out, sizeof seed_out, "%s/seed.out", dir);
    const char *sargs[] = { "seed", "--wallets", "48", "--db", F.conninfo, NULL };
    pid_t sp = ts_spawn("issuer-sim", sargs, seed_out);
    int status;
    if (sp < 0 || waitpid(sp, &status, 0) != sp || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;

    uint16_t hsm_port = F.hsm_port = ts_free_port();
    char hsm_addr[32], iss_addr[32];
    snprintf(hsm_addr, sizeof hsm_addr, "127.0.0.1:%u", hsm_port);
    const char *hargs[] = { "--listen", hsm_addr, "--log-level", "warn", NULL };
    F.hsm_pid = ts_spawn("hsm-sim", hargs, "/dev/null");
    if (F.hsm_pid < 0 || ts_wait_port(hsm_port, 20000) != 0)
        return -1;
    F.iss_port = ts_free_port();
    snprintf(iss_addr, sizeof iss_addr, "127.0.0.1:%u", F.iss_port);
    snprintf(F.log_path, sizeof F.log_path, "%s/issuer.log", dir);
    char out_path[300];
    snprintf(out_path, sizeof out_path, "%s/issuer.out", dir);
    const char *iargs[] = { "--listen", iss_addr, "--hsm",    hsm_addr, "--db",
                            F.conninfo, "--log",  F.log_path, NULL };
    F.iss_pid = ts_spawn("issuer-sim", iargs, out_path);
    if (F.iss_pid < 0 || ts_wait_port(F.iss_port, 20000) != 0)
        return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    if (F.skip)
        return 0;
    int rc = 0;
    if (F.iss_pid > 0) {
        int s = ts_stop(F.iss_pid, SIGTERM, 10000);
        if (!WIFEXITED(s) || WEXITSTATUS(s) != 0) {
            fprintf(stderr, "issuer-sim did not exit cleanly (status %d)\n", s);
            rc = -1;
        }
    }
    if (F.hsm_pid > 0)
        ts_stop(F.hsm_pid, SIGTERM, 10000);
    if (F.pg)
        PQfinish(F.pg);
    hsm_key_release(F.zpk);
    hsm_key_release(F.zak);
    dbt_drop(F.conninfo);
    return rc;
}

#define SKIP_IF_NO_DB()                                                                            \
    do {                                                                                           \
        if (F.skip)                                                                                \
            skip();                                                                                \
    } while (0)

/* ---------------------------------------------------------------- tests */

static void test_network_management(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    static const char *const codes[] = { "001", "301", "002" };
    for (int i = 0; i < 3; i++) {
        uint8_t arena[512], buf[512];
        struct iso_msg m;
        struct iso_err e;
        size_t n;
        char stan[7];
        snprintf(stan, sizeof stan, "%06u", ++F.stan);
        iso_msg_init(&m, arena, sizeof arena);
        assert_int_equal(iso_set_mti(&m, "0800"), 0);
        assert_int_equal(iso_set_str(&m, 7, "1126153000"), 0);
        assert_int_equal(iso_set_str(&m, 11, stan), 0);
        assert_int_equal(iso_set_str(&m, 70, codes[i]), 0);
        assert_int_equal(iso_pack(F.d, &m, buf + 2, sizeof buf - 2, &n, &e), 0);
        buf[0] = (uint8_t)(n >> 8);
        buf[1] = (uint8_t)n;
        int fd = connect_issuer();
        assert_true(fd >= 0);
        assert_int_equal(ts_send_all(fd, buf, n + 2), 0);
        struct resp r;
        assert_int_equal(recv_resp(fd, &r), 0);
        assert_string_equal(r.mti, "0810");
        assert_string_equal(r.rc, "00");
        assert_string_equal(r.stan, stan);
        close(fd);
    }
}

static void test_purchase_approved(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long before = balance(1);
    struct req r = { .mti = "0200",
                     .pcode = "000000",
                     .pan = pan_of(1),
                     .pin = "1234",
                     .amount = 2500,
                     .expiry = "2812" };
    struct resp s;
    xact(&r, &s);
    assert_string_equal(s.mti, "0210");
    assert_string_equal(s.rc, "00");
    assert_int_equal(strlen(s.auth), 6);
    char want[41];
    assert_int_equal(sim_format_de54(504, before - 2500, before - 2500, want), 0);
    assert_string_equal(s.de54, want);
    assert_int_equal(balance(1), before - 2500);
    assert_int_equal(q("SELECT count(*) FROM wallet.ledger WHERE wallet_id = 1 AND kind = "
                       "'purchase' AND amount_minor = -2500"),
                     1);
    assert_int_equal(q("SELECT sum(amount_minor) FROM wallet.ledger WHERE wallet_id = 1"),
                     balance(1));
    assert_invariants();
}

static void test_auth_hold_and_reversal(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(4);
    struct req r = { .mti = "0100",
                     .pcode = "000000",
                     .pan = pan_of(4),
                     .pin = "2222",
                     .amount = 10000,
                     .ccy = "929" };
    struct resp s;
    xact(&r, &s);
    assert_string_equal(s.mti, "0110");
    assert_string_equal(s.rc, "00");
    assert_int_equal(balance(4), b); /* ledger balance unchanged */
    assert_int_equal(held(4), 10000);
    char want[41];
    assert_int_equal(sim_format_de54(929, b, b - 10000, want), 0);
    assert_string_equal(s.de54, want);
    /* the switch's reversal, by DE 90 */
    char de90[43];
    struct req v = reversal_of(&r, de90);
    xact(&v, &s);
    assert_string_equal(s.mti, "0430");
    assert_string_equal(s.rc, "00");
    assert_int_equal(held(4), 0);
    assert_int_equal(balance(4), b);
    assert_invariants();
}

static void test_reversal_exactly_once(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(11);
    struct req r = { .mti = "0200",
                     .pcode = "010000",
                     .pan = pan_of(11),
                     .pin = pin_of(11),
                     .amount = 3000,
                     .ccy = "950" };
    struct resp s;
    xact(&r, &s);
    assert_string_equal(s.rc, "00");
    assert_int_equal(balance(11), b - 3000);
    char de90[43];
    struct req v = reversal_of(&r, de90);
    xact(&v, &s);
    assert_string_equal(s.rc, "00");
    assert_int_equal(balance(11), b);
    /* the 0421 repeat (new STAN), and the very same 0420 again */
    struct req v2 = v;
    v2.mti = "0421";
    v2.stan[0] = '\0';
    xact(&v2, &s);
    assert_string_equal(s.mti, "0430");
    assert_string_equal(s.rc, "00");
    xact(&v, &s);
    assert_string_equal(s.rc, "00");
    assert_int_equal(balance(11), b);
    assert_int_equal(
        q("SELECT count(*) FROM wallet.ledger WHERE wallet_id = 11 AND kind = 'reversal'"), 1);
    assert_invariants();
}

static void test_reversal_before_original(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(13);
    struct req r = {
        .mti = "0200", .pcode = "000000", .pan = pan_of(13), .amount = 1000, .ccy = "504"
    };
    next_stan(&r);
    char de90[43];
    struct req v = reversal_of(&r, de90);
    struct resp s;
    xact(&v, &s);
    assert_string_equal(s.rc, "00"); /* acknowledged: nothing to reverse */
    xact(&r, &s);                    /* the late original must not move money */
    assert_string_not_equal(s.rc, "00");
    assert_int_equal(balance(13), b);
    assert_invariants();
}

static void test_duplicate_same_answer(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(17);
    struct req r = {
        .mti = "0200", .pcode = "000000", .pan = pan_of(17), .amount = 1500, .ccy = "504"
    };
    struct resp s1, s2;
    xact(&r, &s1);
    assert_string_equal(s1.rc, "00");
    xact(&r, &s2); /* same STAN, DE 7, DE 41 */
    assert_string_equal(s2.rc, "00");
    assert_string_equal(s2.auth, s1.auth);
    assert_string_equal(s2.de54, s1.de54);
    assert_int_equal(balance(17), b - 1500);
    assert_int_equal(
        q("SELECT count(*) FROM wallet.ledger WHERE wallet_id = 17 AND kind = 'purchase'"), 1);
    /* a decline is repeated identically too, without a second PIN try */
    struct req w = { .mti = "0200",
                     .pcode = "000000",
                     .pan = pan_of(21),
                     .pin = "9999",
                     .amount = 100,
                     .ccy = "504" };
    if (strcmp(pin_of(21), "9999") == 0)
        w.pin = "9998";
    xact(&w, &s1);
    assert_string_equal(s1.rc, "55");
    xact(&w, &s2);
    assert_string_equal(s2.rc, "55");
    assert_int_equal(q("SELECT pin_tries FROM wallet.wallets WHERE wallet_id = 21"), 1);
}

static void expect_rc(struct req *r, const char *rc)
{
    struct resp s;
    xact(r, &s);
    if (strcmp(s.rc, rc) != 0)
        fail_msg("%s %s: expected rc %s, got %s", r->mti, r->pcode, rc, s.rc);
}

/* A request the switch converted (1,000 XOF on the MAD wallet 1, billed DE 6 = 16.83 MAD in
 * DE 51): the wallet moves DE 6, the answer echoes DE 6/10/51, and the reversal (with the
 * original's DE 6) gives back exactly that. DE 51 not the wallet's currency → 57; DE 6 without
 * DE 51 → 30. */
static void test_converted_request(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(1);
    struct resp s;
    struct req bad = { .mti = "0200",
                       .pcode = "000000",
                       .pan = pan_of(1),
                       .amount = 1000,
                       .ccy = "952",
                       .de6 = "000000001683",
                       .de10 = "70168277",
                       .de51 = "952" };
    expect_rc(&bad, "57");
    bad = (struct req){
        .mti = "0200", .pcode = "000000", .pan = pan_of(1), .amount = 1000, .de6 = "000000001683"
    };
    expect_rc(&bad, "30");
    assert_int_equal(balance(1), b);

    struct req r = { .mti = "0200",
                     .pcode = "000000",
                     .pan = pan_of(1),
                     .pin = "1234",
                     .amount = 1000,
                     .ccy = "952",
                     .de6 = "000000001683",
                     .de10 = "70168277",
                     .de51 = "504" };
    xact(&r, &s);
    assert_string_equal(s.rc, "00");
    assert_string_equal(s.de6, "000000001683");
    assert_string_equal(s.de10, "70168277");
    assert_string_equal(s.de51, "504");
    assert_int_equal(balance(1), b - 1683);
    char de90[43];
    struct req v = reversal_of(&r, de90);
    xact(&v, &s);
    assert_string_equal(s.rc, "00");
    assert_int_equal(balance(1), b);
    assert_int_equal(q("SELECT count(*) FROM wallet.requests WHERE request_key LIKE 'rev:%%'"
                       " AND amount_minor = 1683"),
                     1);
    assert_invariants();
}

static void test_declines(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b1 = balance(1);
    const struct {
        struct req r;
        const char *rc;
    } declines[] = {
        /* a Luhn-valid PAN in the BIN that no wallet has */
        { { .mti = "0200", .pcode = "000000", .pan = "4890019999999997", .amount = 100 }, "14" },
        { { .mti = "0200", .pcode = "000000", .pan = pan_of(5), .pin = "1234", .amount = 100 },
          "05" },
        { { .mti = "0200", .pcode = "000000", .pan = pan_of(6), .pin = "1234", .amount = 100 },
          "62" },
        { { .mti = "0200", .pcode = "000000", .pan = pan_of(7), .pin = "1234", .amount = 100 },
          "54" },
        { { .mti = "0200", .pcode = "000000", .pan = pan_of(8), .pin = "1234", .amount = 6000 },
          "61" },
        { { .mti = "0200",
            .pcode = "000000",
            .pan = pan_of(3),
            .pin = "1111",
            .amount = 2000,
            .ccy = "950" },
          "51" },
        { { .mti = "0200",
            .pcode = "000000",
            .pan = pan_of(1),
            .pin = "1234",
            .amount = 100,
            .ccy = "952" },
          "57" },
        { { .mti = "0200", .pcode = "000000", .pan = pan_of(1), .amount = 0 }, "13" },
        { { .mti = "0200", .pcode = "400000", .pan = pan_of(1), .amount = 100 }, "12" },
        { { .mti = "0200", .pcode = "000000", .pan = pan_of(1), .amount = -1 },
          "30" }, /* no DE 4 */
        /* an IBM 3624 offset card */
        { { .mti = "0200",
            .pcode = "000000",
            .pan = pan_of(2),
            .pin = "4322",
            .amount = 100,
            .ccy = "952" },
          "55" },
        /* DE 14 does not match the card */
        { { .mti = "0200",
            .pcode = "000000",
            .pan = pan_of(1),
            .pin = "1234",
            .amount = 100,
            .expiry = "2712" },
          "54" },
    };
    for (size_t i = 0; i < sizeof declines / sizeof declines[0]; i++) {
        struct req r = declines[i].r;
        expect_rc(&r, declines[i].rc);
    }
    /* 65: a daily count limit of 2 */
    assert_int_equal(
        q("WITH x AS (UPDATE wallet.wallets SET daily_count_limit = 2 WHERE wallet_id = 19 "
          "RETURNING 1) SELECT count(*) FROM x"),
        1);
    struct req r;
    for (int i = 0; i < 2; i++) {
        r = (struct req){
            .mti = "0200", .pcode = "000000", .pan = pan_of(19), .amount = 10, .ccy = "950"
        };
        expect_rc(&r, "00");
    }
    r = (struct req){
        .mti = "0200", .pcode = "000000", .pan = pan_of(19), .amount = 10, .ccy = "950"
    };
    expect_rc(&r, "65");
    assert_int_equal(balance(1), b1);
    assert_invariants();
}

static void test_pin_tries(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    const char *right = pin_of(9);
    char wrong[16];
    snprintf(wrong, sizeof wrong, "%04d", (atoi(right) + 1) % 10000);
    /* three wrong PINs block the card; it stays PIN-blocked for the right one */
    const struct {
        const char *pin, *rc;
    } tries[] = { { wrong, "55" }, { wrong, "55" }, { wrong, "75" }, { right, "75" } };
    struct req r;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        r = (struct req){
            .mti = "0200", .pcode = "010000", .pan = pan_of(9), .pin = tries[i].pin, .amount = 100
        };
        expect_rc(&r, tries[i].rc);
    }
    assert_int_equal(q("SELECT pin_tries FROM wallet.wallets WHERE wallet_id = 9"), 3);
    /* a right PIN resets the counter */
    const char *right10 = pin_of(10);
    snprintf(wrong, sizeof wrong, "%04d", (atoi(right10) + 1) % 10000);
    r = (struct req){ .mti = "0200",
                      .pcode = "000000",
                      .pan = pan_of(10),
                      .pin = wrong,
                      .amount = 100,
                      .ccy = "952" };
    expect_rc(&r, "55");
    r = (struct req){ .mti = "0200",
                      .pcode = "000000",
                      .pan = pan_of(10),
                      .pin = right10,
                      .amount = 100,
                      .ccy = "952" };
    expect_rc(&r, "00");
    assert_int_equal(q("SELECT pin_tries FROM wallet.wallets WHERE wallet_id = 10"), 0);
}

static void test_balance_inquiry_and_credits(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    struct req r = { .mti = "0100",
                     .pcode = "310000",
                     .pan = pan_of(2),
                     .pin = "4321",
                     .amount = -1,
                     .ccy = "952" };
    struct resp s;
    long long b = balance(2);
    xact(&r, &s);
    assert_string_equal(s.rc, "00");
    char want[41];
    assert_int_equal(sim_format_de54(952, b, b - held(2), want), 0);
    assert_string_equal(s.de54, want);
    /* AFT from wallet 14 then OCT to wallet 18: a wallet-to-wallet transfer (XOF) */
    long long b14 = balance(14), b18 = balance(18);
    r = (struct req){
        .mti = "0200", .pcode = "100000", .pan = pan_of(14), .amount = 777, .ccy = "952"
    };
    expect_rc(&r, "00");
    r = (struct req){
        .mti = "0200", .pcode = "260000", .pan = pan_of(18), .amount = 777, .ccy = "952"
    };
    expect_rc(&r, "00");
    r = (struct req){
        .mti = "0200", .pcode = "200000", .pan = pan_of(18), .amount = 23, .ccy = "952"
    };
    expect_rc(&r, "00");
    assert_int_equal(balance(14), b14 - 777);
    assert_int_equal(balance(18), b18 + 800);
    assert_invariants();
}

static void test_bad_mac(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(15);
    struct req r = { .mti = "0200",
                     .pcode = "000000",
                     .pan = pan_of(15),
                     .amount = 100,
                     .ccy = "950",
                     .bad_mac = true };
    struct resp s;
    xact(&r, &s); /* the answer itself carries a valid MAC (checked by recv_resp) */
    assert_string_equal(s.rc, "63");
    assert_int_equal(balance(15), b);
    assert_int_equal(q("SELECT count(*) FROM wallet.requests WHERE wallet_id = 15"), 0);
}

static void test_concurrent_debits_never_overdraw(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    enum { CONNS = 16, PER = 3, AMOUNT = 10000 };
    long long b = balance(12);
    long long hb = held(12);
    int fds[CONNS];
    struct req reqs[CONNS][PER];
    for (int c = 0; c < CONNS; c++) {
        fds[c] = connect_issuer();
        assert_true(fds[c] >= 0);
    }
    for (int i = 0; i < PER; i++)
        for (int c = 0; c < CONNS; c++) {
            reqs[c][i] = (struct req){ .mti = i == 1 ? "0100" : "0200",
                                       .pcode = "000000",
                                       .pan = pan_of(12),
                                       .amount = AMOUNT,
                                       .ccy = "929" };
            assert_int_equal(send_req(fds[c], &reqs[c][i]), 0);
        }
    int approved = 0, nsf = 0, holds = 0;
    for (int c = 0; c < CONNS; c++) {
        for (int i = 0; i < PER; i++) {
            struct resp s;
            assert_int_equal(recv_resp(fds[c], &s), 0);
            if (strcmp(s.rc, "00") == 0) {
                approved++;
                if (strcmp(s.mti, "0110") == 0)
                    holds++;
            } else if (strcmp(s.rc, "51") == 0) {
                nsf++;
            } else {
                fail_msg("unexpected rc %s", s.rc);
            }
        }
        close(fds[c]);
    }
    /* every request was decided on the wallet's latest state: exactly as many fit as the funds
     * allow, the rest are 51, and nothing is overdrawn */
    assert_int_equal(approved + nsf, CONNS * PER);
    assert_int_equal(approved, (int)((b - hb) / AMOUNT));
    assert_int_equal(balance(12), b - (long long)(approved - holds) * AMOUNT);
    assert_int_equal(held(12), hb + (long long)holds * AMOUNT);
    assert_true(balance(12) >= held(12));
    assert_invariants();
}

static void test_malformed_frame_closes_only_that_link(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    int good = connect_issuer(), bad = connect_issuer();
    assert_true(good >= 0 && bad >= 0);
    const uint8_t junk[] = { 0x00, 0x06, '0', '2', '0', '0', 'Z', 'Z' };
    assert_int_equal(ts_send_all(bad, junk, sizeof junk), 0);
    uint8_t b[16];
    assert_int_equal(ts_recv_exact(bad, b, 1), 0); /* closed by the issuer */
    close(bad);
    struct req r = {
        .mti = "0200", .pcode = "310000", .pan = pan_of(16), .amount = -1, .ccy = "929"
    };
    assert_int_equal(send_req(good, &r), 0);
    struct resp s;
    assert_int_equal(recv_resp(good, &s), 0);
    assert_string_equal(s.rc, "00");
    close(good);
}

/* A second issuer-sim with room for only 2 requests in progress: its links are paused and resumed
 * over and over (backpressure), and every request is still answered, in full. */
static void test_backpressure_small_pool(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    enum { CONNS = 8, PER = 5 };
    uint16_t port = ts_free_port();
    char addr[32], hsm_addr[32], log_path[300];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    snprintf(hsm_addr, sizeof hsm_addr, "127.0.0.1:%u", F.hsm_port);
    snprintf(log_path, sizeof log_path, "%s.small", F.log_path);
    const char *args[] = { "--listen", addr,     "--hsm",          hsm_addr, "--db", F.conninfo,
                           "--log",    log_path, "--max-inflight", "2",      NULL };
    pid_t pid = ts_spawn("issuer-sim", args, "/dev/null");
    assert_true(pid > 0);
    assert_int_equal(ts_wait_port(port, 20000), 0);
    long long b = balance(20);
    int fds[CONNS];
    for (int c = 0; c < CONNS; c++) {
        fds[c] = ts_connect(port, 20000);
        assert_true(fds[c] >= 0);
        for (int i = 0; i < PER; i++) {
            struct req r = {
                .mti = "0200", .pcode = "000000", .pan = pan_of(20), .amount = 1, .ccy = "929"
            };
            assert_int_equal(send_req(fds[c], &r), 0);
        }
    }
    for (int c = 0; c < CONNS; c++) {
        for (int i = 0; i < PER; i++) {
            struct resp s;
            assert_int_equal(recv_resp(fds[c], &s), 0);
            assert_string_equal(s.rc, "00");
        }
        close(fds[c]);
    }
    assert_int_equal(balance(20), b - CONNS * PER);
    int status = ts_stop(pid, SIGTERM, 10000);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(ts_file_contains(log_path, "\"backpressure_on\""));
    assert_invariants();
}

/* The figure named key ("key":N) of the first line of path holding event, or -1. */
static long long log_figure(const char *path, const char *event, const char *key)
{
    FILE *fp = fopen(path, "r");
    char line[4096], pat[64];
    long long v = -1;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    while (fp && fgets(line, sizeof line, fp)) {
        const char *k;
        if (strstr(line, event) && (k = strstr(line, pat))) {
            v = strtoll(k + strlen(pat) + (k[strlen(pat)] == '"'), NULL, 10);
            break;
        }
    }
    if (fp)
        fclose(fp);
    return v;
}

/* Snapshot loads that arrive while one is in flight go together (load.c): a burst of purchases
 * on one wallet from many links, through one database connection, is read by fewer load
 * statements than loads (the stop line's counters; the decisions that met on the wallet answer
 * retry and are loaded again), and every one is approved exactly once. */
static void test_loads_batched(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    enum { CONNS = 16 };
    uint16_t port = ts_free_port();
    char addr[32], hsm_addr[32], log_path[300];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    snprintf(hsm_addr, sizeof hsm_addr, "127.0.0.1:%u", F.hsm_port);
    snprintf(log_path, sizeof log_path, "%s.loads", F.log_path);
    const char *args[] = { "--listen", addr,    "--hsm",  hsm_addr,           "--db",
                           F.conninfo, "--log", log_path, "--db-connections", "1",
                           NULL };
    pid_t pid = ts_spawn("issuer-sim", args, "/dev/null");
    assert_true(pid > 0);
    assert_int_equal(ts_wait_port(port, 20000), 0);
    long long b = balance(20);
    int fds[CONNS];
    struct req r[CONNS];
    for (int c = 0; c < CONNS; c++) {
        fds[c] = ts_connect(port, 20000);
        assert_true(fds[c] >= 0);
        r[c] = (struct req){
            .mti = "0200", .pcode = "000000", .pan = pan_of(20), .amount = 1, .ccy = "929"
        };
    }
    for (int c = 0; c < CONNS; c++)
        assert_int_equal(send_req(fds[c], &r[c]), 0);
    for (int c = 0; c < CONNS; c++) {
        struct resp s;
        assert_int_equal(recv_resp(fds[c], &s), 0);
        assert_string_equal(s.stan, r[c].stan);
        assert_string_equal(s.rc, "00");
        close(fds[c]);
    }
    assert_int_equal(balance(20), b - CONNS);
    int status = ts_stop(pid, SIGTERM, 10000);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    long long loads = log_figure(log_path, "\"stop\"", "loads");
    long long stmts = log_figure(log_path, "\"stop\"", "load_statements");
    print_message("%lld loads in %lld statements\n", loads, stmts);
    assert_true(loads >= CONNS);
    assert_true(stmts >= 1 && stmts < loads);
    assert_invariants();
}

/* Holds past their expiry are released by wallet.sim_expire_holds() (run by issuer-sim every
 * minute): the available balance comes back, the ledger balance never moved. */
static void test_hold_expiry(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(22);
    struct req r = {
        .mti = "0100", .pcode = "000000", .pan = pan_of(22), .amount = 4000, .ccy = "952"
    };
    expect_rc(&r, "00");
    assert_int_equal(held(22), 4000);
    assert_int_equal(q("WITH x AS (UPDATE wallet.holds SET expires_at = now() - interval '1 s' "
                       "WHERE wallet_id = 22 RETURNING 1) SELECT count(*) FROM x"),
                     1);
    assert_int_equal(q("SELECT wallet.sim_expire_holds()"), 1);
    assert_int_equal(held(22), 0);
    assert_int_equal(balance(22), b);
    assert_int_equal(q("SELECT count(*) FROM wallet.holds WHERE wallet_id = 22 AND status = "
                       "'expired'"),
                     1);
    assert_invariants();
}

static const char *ccy_of(unsigned index)
{
    static const char *const ccys[] = { "504", "952", "950", "929" };
    return ccys[(index - 1) % 4];
}

static void exec_ok(const char *sql)
{
    PGresult *r = PQexec(F.pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

static void expect_sqlstate(const char *sql, const char *state)
{
    PGresult *r = PQexec(F.pg, sql);
    const char *got = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (!got || strcmp(got, state) != 0)
        fail_msg("%s: expected SQLSTATE %s, got %s (%s)", sql, state, got ? got : "none",
                 PQresultErrorMessage(r));
    PQclear(r);
}

enum { BATCH_FIRST = 23, BATCH_N = 18 }; /* wallets 23..40: no other test uses them */

/* Sends one 0200 per wallet BATCH_FIRST.., all at once on links of their own, and reads every
 * answer into rcs. The request for wallet fail_index (0: none) carries STAN 777777. */
static void purchase_burst(long long amount, unsigned fail_index, char rcs[][3])
{
    int fds[BATCH_N];
    struct req r[BATCH_N];
    for (unsigned i = 0; i < BATCH_N; i++) {
        unsigned w = BATCH_FIRST + i;
        fds[i] = connect_issuer();
        assert_true(fds[i] >= 0);
        r[i] = (struct req){
            .mti = "0200", .pcode = "000000", .pan = pan_of(w), .amount = amount, .ccy = ccy_of(w)
        };
        if (w == fail_index)
            strcpy(r[i].stan, "777777");
    }
    for (unsigned i = 0; i < BATCH_N; i++)
        assert_int_equal(send_req(fds[i], &r[i]), 0);
    for (unsigned i = 0; i < BATCH_N; i++) {
        struct resp s;
        assert_int_equal(recv_resp(fds[i], &s), 0);
        assert_string_equal(s.stan, r[i].stan);
        memcpy(rcs[i], s.rc, 3);
        close(fds[i]);
    }
}

/* Decisions that reach the database in the same loop turn are committed by one transaction (one
 * WAL flush for all): requests sent at once on separate wallets are all applied, and some of
 * them share a transaction — the same xmin on their wallet.requests rows. Whether two decisions
 * meet in one loop turn depends on how the burst is scheduled (an idle database commits a lone
 * decision at once, which is right), so a burst whose every decision happened to come alone is
 * sent again, up to five times: batching must show in one of them. */
static void test_decisions_committed_in_batches(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long txns = BATCH_N;
    for (int attempt = 0; attempt < 5 && txns >= BATCH_N; attempt++) {
        long long b[BATCH_N];
        char rcs[BATCH_N][3];
        for (unsigned i = 0; i < BATCH_N; i++)
            b[i] = balance(BATCH_FIRST + i);
        long long before = q("SELECT count(*) FROM wallet.requests WHERE wallet_id BETWEEN %d"
                             " AND %d",
                             BATCH_FIRST, BATCH_FIRST + BATCH_N - 1);
        purchase_burst(100, 0, rcs);
        for (unsigned i = 0; i < BATCH_N; i++) {
            assert_string_equal(rcs[i], "00");
            assert_int_equal(balance(BATCH_FIRST + i), b[i] - 100);
        }
        assert_int_equal(q("SELECT count(*) FROM wallet.requests WHERE wallet_id BETWEEN %d"
                           " AND %d",
                           BATCH_FIRST, BATCH_FIRST + BATCH_N - 1),
                         before + BATCH_N);
        /* this burst's rows: the newest BATCH_N of these wallets */
        txns = q("SELECT count(DISTINCT x) FROM (SELECT xmin::text AS x FROM wallet.requests"
                 " WHERE wallet_id BETWEEN %d AND %d ORDER BY created_at DESC, request_key DESC"
                 " LIMIT %d) r",
                 BATCH_FIRST, BATCH_FIRST + BATCH_N - 1, BATCH_N);
        print_message("%d requests applied by %lld transactions\n", BATCH_N, txns);
    }
    assert_true(txns >= 1 && txns < BATCH_N);
    assert_invariants();
}

/* One decision the database refuses does not decline the others of its batch: the batch is
 * rolled back and each request applied again on its own; only the refused one answers 96. The
 * refusal is injected by a trigger of this test database. */
static void test_refused_decision_spares_its_batch(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    const unsigned bad = BATCH_FIRST + 5;
    long long b[BATCH_N];
    char rcs[BATCH_N][3];
    for (unsigned i = 0; i < BATCH_N; i++)
        b[i] = balance(BATCH_FIRST + i);
    exec_ok("CREATE FUNCTION wallet.test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.request_key LIKE '%:777777:%' THEN RAISE EXCEPTION 'injected'; END IF; "
            "RETURN NEW; END $$");
    exec_ok("CREATE TRIGGER test_refuse BEFORE INSERT ON wallet.requests FOR EACH ROW "
            "EXECUTE FUNCTION wallet.test_refuse()");
    purchase_burst(50, bad, rcs);
    print_message("the refused request %s\n", ts_file_contains(F.log_path, "\"apply_batch_split\"")
                                                  ? "was in a batch (split)"
                                                  : "was applied alone");
    exec_ok("DROP TRIGGER test_refuse ON wallet.requests");
    exec_ok("DROP FUNCTION wallet.test_refuse()");
    for (unsigned i = 0; i < BATCH_N; i++) {
        unsigned w = BATCH_FIRST + i;
        assert_string_equal(rcs[i], w == bad ? "96" : "00");
        assert_int_equal(balance(w), w == bad ? b[i] : b[i] - 50);
    }
    assert_int_equal(
        q("SELECT count(*) FROM wallet.requests WHERE request_key LIKE '%%:777777:%%'"), 0);
    assert_invariants();
}

/* A decision waiting for a row lock holds up no other wallet's decision. issuer-sim sends a
 * second transaction while one is in flight only when enough requests queue up for it, or
 * when the one in flight has waited a while (apply.c apply_may_start): a lone request behind
 * a batch stuck on a lock (here an operator's transaction holding wallet 47) must still go
 * on another connection and be answered while the lock is held; the locked wallet's request
 * is answered once the lock goes. */
static void test_locked_wallet_holds_up_no_other(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    const unsigned locked = 47, other = 48;
    long long b_locked = balance(locked), b_other = balance(other);
    PGconn *op = dbt_connect(F.conninfo);
    assert_non_null(op);
    assert_int_equal(dbt_exec(op, "BEGIN"), 0);
    assert_int_equal(
        dbt_scalar(op, "SELECT count(*) FROM (SELECT 1 FROM wallet.wallets WHERE wallet_id = 47"
                       " FOR UPDATE) x"),
        1);

    struct req r1 = { .mti = "0200",
                      .pcode = "000000",
                      .pan = pan_of(locked),
                      .amount = 100,
                      .ccy = ccy_of(locked) };
    int fd1 = connect_issuer();
    assert_true(fd1 >= 0);
    assert_int_equal(send_req(fd1, &r1), 0);
    /* its batch is in flight, waiting for the lock */
    long long waiting = 0;
    for (int i = 0; i < 200 && waiting == 0; i++) {
        usleep(50000);
        waiting = q("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE '%%sim_apply_batch%%'");
    }
    assert_int_equal(waiting, 1);

    struct req r2 = {
        .mti = "0200", .pcode = "000000", .pan = pan_of(other), .amount = 100, .ccy = ccy_of(other)
    };
    struct resp s;
    xact(&r2, &s); /* fails on the link's 20 s timeout if it waits for the lock */
    assert_string_equal(s.rc, "00");
    assert_int_equal(balance(other), b_other - 100);
    assert_int_equal(balance(locked), b_locked); /* still waiting */

    assert_int_equal(dbt_exec(op, "COMMIT"), 0);
    PQfinish(op);
    assert_int_equal(recv_resp(fd1, &s), 0);
    assert_string_equal(s.stan, r1.stan);
    assert_string_equal(s.rc, "00");
    close(fd1);
    assert_int_equal(balance(locked), b_locked - 100);
    assert_invariants();
}

/* The wallet's rules hold for any client, not only issuer-sim: balances move only through the
 * ledger and holds, card data keeps its format, counters never go negative, and the ledger
 * still moves the balance (its trigger's UPDATE is allowed). */
static void test_wallet_rules_enforced(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    const unsigned w = BATCH_FIRST;
    long long b = balance(w);
    char sql[256];
    snprintf(sql, sizeof sql,
             "UPDATE wallet.wallets SET balance_minor = balance_minor + 1 WHERE wallet_id = %u", w);
    expect_sqlstate(sql, "42501");
    snprintf(sql, sizeof sql, "UPDATE wallet.wallets SET held_minor = 1 WHERE wallet_id = %u", w);
    expect_sqlstate(sql, "42501");
    snprintf(sql, sizeof sql, "UPDATE wallet.wallets SET pvv = '12x4' WHERE wallet_id = %u", w);
    expect_sqlstate(sql, "23514");
    snprintf(sql, sizeof sql, "UPDATE wallet.wallets SET status = 'frozen' WHERE wallet_id = %u",
             w);
    expect_sqlstate(sql, "23514");
    snprintf(sql, sizeof sql, "UPDATE wallet.wallets SET usage_minor = -1 WHERE wallet_id = %u", w);
    expect_sqlstate(sql, "23514");
    snprintf(sql, sizeof sql,
             "UPDATE wallet.wallets SET usage_count = usage_count + 1 WHERE wallet_id = %u", w);
    exec_ok(sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor) "
             "VALUES (%u, 'test:adjust', 'adjustment', 7)",
             w);
    exec_ok(sql);
    assert_int_equal(balance(w), b + 7);
    snprintf(sql, sizeof sql,
             "INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor) "
             "VALUES (%u, 'test:overdraft', 'adjustment', %lld)",
             w, -(b + 8));
    expect_sqlstate(sql, "23514");
    assert_int_equal(balance(w), b + 7);
    assert_invariants();
}

/* The KYC tier's rules through issuer-sim: demo card 1 (MAD, tier 1 "basic": cap 5,000.00, debits
 * 2,000.00 a day). The OCT of 900,000.00 is declined 57 with no effect; a credit exactly
 * to the cap is approved and one minor unit more is then declined; a debit above the tier's daily
 * limit is declined 61. The log names each rule, with the masked PAN only. */
static void test_kyc_tier_limits(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(1);
    struct req r = {
        .mti = "0200", .pcode = "260000", .pan = pan_of(1), .amount = 90000000, .ccy = "504"
    };
    expect_rc(&r, "57");
    assert_int_equal(balance(1), b);
    assert_true(ts_file_contains(F.log_path, "\"tier_max_balance\""));
    r.amount = 500000 - b;
    r.stan[0] = '\0'; /* a new request, not a repeat */
    expect_rc(&r, "00");
    assert_int_equal(balance(1), 500000);
    r = (struct req){
        .mti = "0200", .pcode = "200000", .pan = pan_of(1), .amount = 1, .ccy = "504"
    };
    expect_rc(&r, "57");
    assert_int_equal(balance(1), 500000);
    assert_int_equal(q("SELECT day_credit_minor FROM wallet.wallets WHERE wallet_id = 1"),
                     500000 - b);
    r = (struct req){ .mti = "0200",
                      .pcode = "000000",
                      .pan = pan_of(1),
                      .pin = "1234",
                      .amount = 200001,
                      .expiry = "2812" };
    expect_rc(&r, "61");
    assert_true(ts_file_contains(F.log_path, "\"tier_debit_daily\""));
    assert_int_equal(balance(1), 500000);
    assert_invariants();
}

static void test_log_masked(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    /* every request above is logged with its masked PAN, never the PAN itself */
    assert_true(ts_file_contains(F.log_path, "\"issuer_txn\""));
    assert_true(ts_file_contains(F.log_path, "489001******0012"));
    for (unsigned i = 1; i <= 21; i++)
        assert_false(ts_file_contains(F.log_path, pan_of(i)));
    assert_false(ts_file_contains(F.log_path, "4890019999999997"));
}

/* ---------------------------------------------------------------- stand-in advices */

/* The switch's advice of a stand-in approval of wallet w: an 0120 (auth) or 0220, DE 38 its
 * approval code, DE 39 00, no DE 90. */
static struct req advice_of(unsigned w, const char *mti, long long amount, const char *code)
{
    return (struct req){ .mti = mti,
                         .pcode = "000000",
                         .pan = pan_of(w),
                         .amount = amount,
                         .ccy = ccy_of(w),
                         .de38 = code,
                         .de39 = "00" };
}

/* A forced post: applied whatever the funds (the wallet goes below zero only this way, and it is
 * recorded), exactly once (the 0221 repeat is acknowledged again, nothing applied again), and
 * the wallet then refuses ordinary debits until it is covered; the advice's reversal restores it
 * all. */
static void test_advice_forced_post_exactly_once(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(41);
    struct req a = advice_of(41, "0220", b + 500, "S00041");
    struct resp s;
    xact(&a, &s);
    assert_string_equal(s.mti, "0230");
    assert_string_equal(s.rc, "00");
    assert_string_equal(s.auth, "S00041");
    assert_int_equal(balance(41), -500);
    assert_int_equal(q("SELECT forced_minor FROM wallet.wallets WHERE wallet_id = 41"), 500);
    assert_int_equal(q("SELECT shortfall_minor FROM wallet.advices WHERE wallet_id = 41"
                       " AND kind = 'debit' AND auth_code = 'S00041'"),
                     500);
    assert_invariants();
    /* the repeat: same STAN and DE 7, MTI 0221 */
    struct req rep = a;
    rep.mti = "0221";
    xact(&rep, &s);
    assert_string_equal(s.mti, "0230");
    assert_string_equal(s.rc, "00");
    assert_int_equal(balance(41), -500);
    assert_int_equal(q("SELECT count(*) FROM wallet.ledger WHERE wallet_id = 41 AND"
                       " kind <> 'opening'"),
                     1);
    /* an ordinary debit cannot take it lower */
    struct req p = {
        .mti = "0200", .pcode = "000000", .pan = pan_of(41), .amount = 1, .ccy = ccy_of(41)
    };
    xact(&p, &s);
    assert_string_equal(s.rc, "51");
    assert_int_equal(balance(41), -500);
    /* the advice's reversal (a withdrawn stand-in approval) nets it to zero */
    char de90[43];
    struct req v = reversal_of(&a, de90);
    xact(&v, &s);
    assert_string_equal(s.rc, "00");
    assert_int_equal(balance(41), b);
    assert_int_equal(q("SELECT forced_minor FROM wallet.wallets WHERE wallet_id = 41"), 0);
    assert_invariants();
}

/* An 0120 (the advice of an 0100) places a hold, even beyond the available funds; its reversal
 * releases it. */
static void test_advice_hold(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(42);
    struct req a = advice_of(42, "0120", b + 100, "S00042");
    struct resp s;
    xact(&a, &s);
    assert_string_equal(s.mti, "0130");
    assert_string_equal(s.rc, "00");
    assert_int_equal(balance(42), b);
    assert_int_equal(held(42), b + 100);
    assert_invariants();
    char de90[43];
    struct req v = reversal_of(&a, de90);
    xact(&v, &s);
    assert_string_equal(s.rc, "00");
    assert_int_equal(held(42), 0);
    assert_int_equal(q("SELECT forced_minor FROM wallet.wallets WHERE wallet_id = 42"), 0);
    assert_invariants();
}

/* The reversal of an advice that reached the issuer first: the advice is acknowledged (00) and
 * not applied, also when repeated. Whatever the order, a withdrawn stand-in nets to zero. */
static void test_advice_after_its_reversal(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(43);
    struct req a = advice_of(43, "0220", 700, "S00043");
    next_stan(&a);
    char de90[43];
    struct req v = reversal_of(&a, de90);
    struct resp s;
    xact(&v, &s);
    assert_string_equal(s.rc, "00");
    xact(&a, &s);
    assert_string_equal(s.mti, "0230");
    assert_string_equal(s.rc, "00");
    a.mti = "0221";
    xact(&a, &s);
    assert_string_equal(s.rc, "00");
    assert_int_equal(balance(43), b);
    assert_int_equal(q("SELECT count(*) FROM wallet.advices WHERE wallet_id = 43"), 0);
    assert_invariants();
}

/* An advice must name its stand-in approval (DE 38) and decision (DE 39): 30 without; one for a
 * card the issuer does not know is refused for good (14). */
static void test_advice_refusals(void **st)
{
    (void)st;
    SKIP_IF_NO_DB();
    long long b = balance(44);
    struct req a = advice_of(44, "0220", 100, NULL);
    struct resp s;
    xact(&a, &s);
    assert_string_equal(s.mti, "0230");
    assert_string_equal(s.rc, "30");
    struct req u = advice_of(44, "0220", 100, "S00044");
    u.pan = "4000009999999999";
    xact(&u, &s);
    assert_string_equal(s.rc, "14");
    assert_int_equal(balance(44), b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_network_management),
        cmocka_unit_test(test_purchase_approved),
        cmocka_unit_test(test_auth_hold_and_reversal),
        cmocka_unit_test(test_reversal_exactly_once),
        cmocka_unit_test(test_converted_request),
        cmocka_unit_test(test_reversal_before_original),
        cmocka_unit_test(test_duplicate_same_answer),
        cmocka_unit_test(test_declines),
        cmocka_unit_test(test_pin_tries),
        cmocka_unit_test(test_balance_inquiry_and_credits),
        cmocka_unit_test(test_bad_mac),
        cmocka_unit_test(test_concurrent_debits_never_overdraw),
        cmocka_unit_test(test_malformed_frame_closes_only_that_link),
        cmocka_unit_test(test_backpressure_small_pool),
        cmocka_unit_test(test_loads_batched),
        cmocka_unit_test(test_hold_expiry),
        cmocka_unit_test(test_decisions_committed_in_batches),
        cmocka_unit_test(test_refused_decision_spares_its_batch),
        cmocka_unit_test(test_locked_wallet_holds_up_no_other),
        cmocka_unit_test(test_wallet_rules_enforced),
        cmocka_unit_test(test_kyc_tier_limits),
        cmocka_unit_test(test_log_masked),
        cmocka_unit_test(test_advice_forced_post_exactly_once),
        cmocka_unit_test(test_advice_hold),
        cmocka_unit_test(test_advice_after_its_reversal),
        cmocka_unit_test(test_advice_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
