/* Issuer key change (docs/keys.md) with real processes: switchd, hsm-sim, issuer-sim, PostgreSQL,
 * acquirer-sim's load and atlas-keys. Proved here: a change on demand (atlas-keys rotate) and by
 * the schedule (key_change_interval_s), both under a running load with no failed transaction;
 * the issuer's grace window (a message under the previous ZAK accepted while the switch has not
 * switched over and for the window after, refused 63 once it is over); a change the issuer
 * refuses (keys wrapped under another ZMK; a KCV that does not match) leaves the keys unchanged
 * on both sides; a change the issuer never answered leaves both sides on the pair they share; a
 * restart of switchd serves with the keys of the last change; no key, clear or under the LMK,
 * in any log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hex.h"
#include "hsm.h"
#include "sw_stack.h"
#include "testsupport.h"

#include <libpq-fe.h>

static struct stack S;
static struct hsm_key *lab_zak;
static const struct iso_dialect *ascii87;

#define CARD "4890010000000012"
/* issuer-sim --key-grace, seconds: 1, the least above 0 (0 means its default). Nine waits here
 * outlast it (GRACE s + 0.5 s, each); the one check inside the window (test_grace_window) is a
 * log poll and one request after it starts. */
#define GRACE 1

/* WALLET1's lab ZAK in clear (db/seed/demo_switch.sql holds it under the LMK, KCV 30825B): the
 * key generation every change here starts from. */
static const uint8_t LAB_ZAK[16] = { 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A,
                                     0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A, 0x2A };

static int setup(void **state)
{
    struct stack_opts o = { .issuer = true, .issuer_key_grace_s = GRACE };
    ascii87 = iso_dialect_find("ascii87");
    if (!ascii87 || hsm_key_from_clear(HSM_KT_ZAK, LAB_ZAK, 16, &lab_zak) != HSM_OK)
        return -1;
    int rc = stack_setup(state, &S, &o);
    if (rc == 0)
        rc = stack_seed_load_terminals(&S, 4);
    return rc;
}

static int teardown(void **state)
{
    hsm_key_release(lab_zak);
    return stack_teardown(state);
}

/* atlas-keys with args (NULL-terminated) on the stack's database: its exit code; what it printed
 * in out (a file of the stack's directory named for tag). */
static int atlas_keys(const char *tag, const char *const *args, char *out, size_t cap)
{
    const char *argv[12] = { "--db", S.conninfo };
    size_t n = 2;
    for (; *args && n < 11; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    snprintf(out, cap, "%s/%s.out", S.dir, tag);
    return ts_run("atlas-keys", argv, out);
}

static int rotate(const char *tag)
{
    char out[400];
    const char *args[] = { "rotate", "--issuer", "WALLET1", "--wait", "20", NULL };
    int rc = atlas_keys(tag, args, out, sizeof out);
    char *text = ts_read_file(out, 0, NULL);
    printf("atlas-keys rotate (%s): exit %d: %s", tag, rc, text ? text : "?");
    free(text);
    return rc;
}

static long long n_rows(const char *sql)
{
    return stack_scalar(&S, sql);
}

/* A purchase on TERM0001: its DE 39. */
static const char *buy(void)
{
    static struct sim_resp r;
    struct sim_txn x;
    return stack_purchase(&S, "TERM0001", CARD, 100, &x, &r, NULL);
}

/* buy() again every 100 ms while the answer is 91 (the issuer link not up yet after a restart),
 * for up to 5 s. */
static const char *purchase(void)
{
    const char *rc = buy();
    for (int i = 0; i < 50 && strcmp(rc, "91") == 0; i++) {
        usleep(100 * 1000);
        rc = buy();
    }
    return rc;
}

/* A balance inquiry straight to issuer-sim, as a second switch link would send it, MACed with
 * key: the answer's DE 39, "--" when none came; *mac_ok whether the answer's MAC is key's. */
static const char *direct_inquiry(struct hsm_key *key, bool *mac_ok)
{
    static char rc[3];
    static unsigned stan = 500000;
    uint8_t arena[2048], buf[2048], in[2048], arena2[ISO_ARENA_FOR(2048)];
    struct iso_msg m, a;
    struct iso_err e;
    size_t len = 0;
    char de11[7], de7[11];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(de7, sizeof de7, "%m%d%H%M%S", &tm);
    snprintf(de11, sizeof de11, "%06u", ++stan);
    static const uint8_t zero[8];
    iso_msg_init(&m, arena, sizeof arena);
    strcpy(rc, "--");
    *mac_ok = false;
    if (iso_set_mti(&m, "0100") || iso_set_str(&m, 2, CARD) || iso_set_str(&m, 3, "310000") ||
        iso_set_str(&m, 7, de7) || iso_set_str(&m, 11, de11) || iso_set_str(&m, 14, "2812") ||
        iso_set_str(&m, 32, "100001") || iso_set_str(&m, 41, "KEYXTEST") ||
        iso_set_str(&m, 49, "504") || iso_set(&m, 64, zero, 8) ||
        iso_pack(ascii87, &m, buf + 2, sizeof buf - 2, &len, &e))
        return rc;
    uint8_t mac[16];
    size_t ml = 0;
    char hex[17];
    if (hsm_mac_generate(key, HSM_MAC_ISO9797_3, HSM_PAD_1, buf + 2, len - 16, mac, &ml) != HSM_OK)
        return rc;
    at_hex_encode(mac, 8, hex);
    memcpy(buf + 2 + len - 16, hex, 16);
    buf[0] = (uint8_t)(len >> 8);
    buf[1] = (uint8_t)len;
    int fd = ts_connect(S.issuer_port, 5000);
    if (fd < 0)
        return rc;
    ssize_t n = -1;
    if (ts_send_all(fd, buf, len + 2) == 0)
        n = ts_recv_frame2(fd, in, sizeof in);
    close(fd);
    iso_msg_init(&a, arena2, sizeof arena2);
    if (n <= 16 || iso_unpack(ascii87, in, (size_t)n, &a, &e) != 0)
        return rc;
    size_t rl = 0, al = 0;
    const uint8_t *p = iso_get(&a, 39, &rl);
    const uint8_t *am = iso_get(&a, 64, &al);
    if (p && rl == 2)
        memcpy(rc, p, 2);
    *mac_ok =
        am && al == 8 &&
        hsm_mac_verify(key, HSM_MAC_ISO9797_3, HSM_PAD_1, in, (size_t)n - 16, am, 8) == HSM_OK;
    return rc;
}

/* ---------------------------------------------------------------- the grace window */

/* One change on demand, then the previous (lab) ZAK straight to the issuer: accepted while the
 * switch has not sent under the new keys, and for GRACE s after it has; refused 63 after that. */
static void test_grace_window(void **state)
{
    (void)state;
    bool mac_ok = false;
    assert_string_equal(buy(), "00");
    assert_int_equal(rotate("grace"), 0);
    assert_int_equal(n_rows("SELECT count(*) FROM switch.issuers WHERE issuer_id = 'WALLET1'"
                            " AND zak_key_id LIKE 'WALLET1.ZAK.r%'"),
                     1);
    /* the issuer has the new keys; nothing has come under them yet: the old ones still work */
    usleep(GRACE * 1000 * 1000 + 500 * 1000);
    const char *rc = direct_inquiry(lab_zak, &mac_ok);
    assert_string_not_equal(rc, "63");
    assert_string_not_equal(rc, "--");
    assert_true(mac_ok); /* answered under the generation it came with */
    /* the switch sends under the new keys: the grace window starts */
    assert_string_equal(buy(), "00");
    assert_true(ts_wait_file_contains(S.issuer_log, "key_grace_started", 5000));
    rc = direct_inquiry(lab_zak, &mac_ok);
    assert_string_not_equal(rc, "63");
    assert_true(mac_ok);
    usleep(GRACE * 1000 * 1000 + 500 * 1000);
    rc = direct_inquiry(lab_zak, &mac_ok);
    assert_string_equal(rc, "63"); /* security violation: the MAC verifies under no key held */
    assert_string_equal(buy(), "00");
    /* the validity in switch.keys: the lab generation retired, valid until the grace's end */
    assert_int_equal(n_rows("SELECT count(*) FROM switch.keys WHERE key_id IN ('WALLET1.ZPK',"
                            " 'WALLET1.ZAK') AND status = 'retired' AND valid_to IS NOT NULL"
                            " AND valid_to > valid_from"),
                     2);
    assert_int_equal(n_rows("SELECT count(*) FROM switch.keys WHERE owner = 'WALLET1'"
                            " AND status = 'active' AND valid_to IS NULL"),
                     2);
}

/* ---------------------------------------------------------------- under load */

static void assert_load_clean(const struct stack_load *l)
{
    char *rep = ts_read_file(l->report, 0, NULL);
    assert_non_null(rep);
    /* no MAC failure, no timeout, no system error among the answers */
    assert_null(strstr(rep, "\"63\":"));
    assert_null(strstr(rep, "\"91\":"));
    assert_null(strstr(rep, "\"96\":"));
    assert_non_null(strstr(rep, "\"00\":"));
    free(rep);
}

/* Two changes on demand while acquirer-sim sends 100 requests a second: every one answered,
 * none failed (acquirer-sim's error threshold is 0). */
static void test_rotate_on_demand_under_load(void **state)
{
    (void)state;
    struct stack_load l;
    struct stack_load_opts o = {
        .tag = "ondemand", .rate = 100, .seconds = 8, .connections = 4, .load_terminals = true
    };
    long long before = n_rows("SELECT count(*) FROM switch.key_change_requests"
                              " WHERE status = 'done'");
    assert_int_equal(stack_load_start(&S, &o, &l), 0);
    usleep(2500 * 1000);
    assert_int_equal(rotate("ondemand1"), 0);
    usleep(2000 * 1000);
    assert_int_equal(rotate("ondemand2"), 0);
    assert_int_equal(stack_load_wait(&l, 60000), 0);
    assert_load_clean(&l);
    assert_int_equal(n_rows("SELECT count(*) FROM switch.key_change_requests"
                            " WHERE status = 'done'"),
                     before + 2);
    assert_true(ts_file_lines_with(S.switch_log, "key_change_done") >= 3);
    assert_string_equal(buy(), "00");
}

/* ---------------------------------------------------------------- scheduled, restart */

/* Rewrites switchd's configuration with extra appended to its [issuer WALLET1] section (the last
 * one of the one-issuer stack) and restarts it (SIGTERM: a drain). */
static void restart_with(const char *extra)
{
    static char *orig;
    if (!orig)
        orig = ts_read_file(S.switch_conf, 0, NULL);
    assert_non_null(orig);
    char *text = malloc(strlen(orig) + strlen(extra) + 1);
    assert_non_null(text);
    strcpy(text, orig);
    strcat(text, extra);
    assert_int_equal(ts_write_file(S.switch_conf, text), 0);
    free(text);
    int st = stack_restart_switch(&S, SIGTERM);
    assert_int_equal(ts_exit_code(st), 0);
}

/* key_change_interval_s = 2 while the load runs: several changes by the schedule, none failed. */
static void test_rotate_scheduled_under_load(void **state)
{
    (void)state;
    restart_with("key_change_interval_s = 2\n");
    struct stack_load l;
    struct stack_load_opts o = {
        .tag = "scheduled", .rate = 100, .seconds = 8, .connections = 4, .load_terminals = true
    };
    assert_int_equal(stack_load_run(&S, &o, &l), 0);
    assert_load_clean(&l);
    assert_true(n_rows("SELECT count(*) FROM switch.key_change_requests"
                       " WHERE requested_by = 'switchd schedule' AND status = 'done'") >= 2);
    assert_int_equal(n_rows("SELECT count(*) FROM switch.key_change_requests"
                            " WHERE status = 'failed'"),
                     0);
}

/* switchd restarted (no schedule): it serves with the keys of the last change, also once the
 * issuer's grace for the previous ones is over. */
static void test_restart_uses_new_keys(void **state)
{
    (void)state;
    restart_with("");
    usleep(500 * 1000);
    assert_string_equal(purchase(), "00");
    usleep(GRACE * 1000 * 1000 + 500 * 1000);
    assert_string_equal(buy(), "00");
    assert_string_equal(buy(), "00");
}

/* ---------------------------------------------------------------- refusals */

static long long key_rows(void)
{
    return n_rows("SELECT count(*) FROM switch.keys");
}

/* The keys wrapped under another issuer's ZMK: issuer-sim cannot import them (63), switchd keeps
 * its keys and so does the issuer (purchases go on, also after the grace window). */
static void test_refused_keys_unchanged(void **state)
{
    (void)state;
    long long keys = key_rows();
    char zak_before[64];
    PGconn *c = PQconnectdb(S.conninfo);
    PGresult *r = PQexec(c, "SELECT zak_key_id FROM switch.issuers WHERE issuer_id = 'WALLET1'");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(zak_before, sizeof zak_before, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    assert_int_equal(stack_exec(&S, "UPDATE switch.issuers SET zmk_key_id = 'WALLET2.ZMK'"
                                    " WHERE issuer_id = 'WALLET1'"),
                     0);
    assert_int_equal(rotate("refused"), 1);
    assert_int_equal(stack_exec(&S, "UPDATE switch.issuers SET zmk_key_id = 'WALLET1.ZMK'"
                                    " WHERE issuer_id = 'WALLET1'"),
                     0);
    assert_int_equal(n_rows("SELECT count(*) FROM switch.key_change_requests WHERE status ="
                            " 'failed' AND result LIKE 'the issuer refused the key change: 63%'"),
                     1);
    assert_true(ts_wait_file_contains(S.issuer_log, "key_change_refused", 5000));
    assert_int_equal(key_rows(), keys);
    char sql[200];
    snprintf(
        sql, sizeof sql,
        "SELECT count(*) FROM switch.issuers WHERE issuer_id = 'WALLET1' AND zak_key_id = '%s'",
        zak_before);
    assert_int_equal(n_rows(sql), 1);
    assert_string_equal(buy(), "00");
    usleep(GRACE * 1000 * 1000 + 500 * 1000);
    assert_string_equal(buy(), "00");
}

/* One hsm-sim command over TCP (2-byte length, 4-character header): the answer after the header
 * into out. Its length or -1. */
static int hsm_cmd(const char *cmd, char *out, size_t cap)
{
    uint8_t buf[512];
    size_t n = strlen(cmd) + 4;
    buf[0] = (uint8_t)(n >> 8);
    buf[1] = (uint8_t)n;
    memcpy(buf + 2, "KXT1", 4);
    memcpy(buf + 6, cmd, n - 4);
    int fd = ts_connect(S.hsm_port, 5000);
    if (fd < 0)
        return -1;
    ssize_t got = ts_send_all(fd, buf, n + 2) == 0 ? ts_recv_frame2(fd, buf, sizeof buf) : -1;
    close(fd);
    if (got < 4 || (size_t)got - 4 >= cap)
        return -1;
    memcpy(out, buf + 4, (size_t)got - 4);
    out[got - 4] = '\0';
    return (int)got - 4;
}

/* Sends an 0800 key change with de48 straight to issuer-sim: its 0810's DE 39 into rc and DE 44
 * into why; whether DE 48 came back. */
static bool direct_change(const char *de48, char rc[3], char why[26])
{
    uint8_t arena[1024], buf[1024], in[1024], arena2[ISO_ARENA_FOR(1024)];
    struct iso_msg m, a;
    struct iso_err e;
    size_t len = 0, n39 = 0, n44 = 0;
    iso_msg_init(&m, arena, sizeof arena);
    assert_int_equal(iso_set_mti(&m, "0800"), 0);
    assert_int_equal(iso_set_str(&m, 7, "1206120000"), 0);
    assert_int_equal(iso_set_str(&m, 11, "777778"), 0);
    assert_int_equal(iso_set_str(&m, 48, de48), 0);
    assert_int_equal(iso_set_str(&m, 70, "161"), 0);
    assert_int_equal(iso_pack(ascii87, &m, buf + 2, sizeof buf - 2, &len, &e), 0);
    buf[0] = (uint8_t)(len >> 8);
    buf[1] = (uint8_t)len;
    int fd = ts_connect(S.issuer_port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_send_all(fd, buf, len + 2), 0);
    ssize_t got = ts_recv_frame2(fd, in, sizeof in);
    close(fd);
    assert_true(got > 0);
    iso_msg_init(&a, arena2, sizeof arena2);
    assert_int_equal(iso_unpack(ascii87, in, (size_t)got, &a, &e), 0);
    assert_memory_equal(a.mti, "0810", 4);
    const uint8_t *p39 = iso_get(&a, 39, &n39), *p44 = iso_get(&a, 44, &n44);
    assert_true(p39 && n39 == 2);
    memcpy(rc, p39, 2);
    rc[2] = '\0';
    snprintf(why, 26, "%.*s", p44 ? (int)n44 : 0, p44 ? (const char *)p44 : "");
    return iso_has(&a, 48);
}

/* DE 48 that is not the four elements: 30, keys unchanged. */
static void test_malformed_change_refused(void **state)
{
    (void)state;
    char rc[3], why[26];
    assert_false(direct_change("0133XYZ", rc, why));
    assert_string_equal(rc, "30");
    assert_string_equal(why, "DE 48 malformed");
    assert_false(direct_change("0206ABCDEF0406ABCDEF", rc, why)); /* KCVs without keys */
    assert_string_equal(rc, "30");
    assert_string_equal(buy(), "00");
}

/* An 0800 key change straight to issuer-sim whose ZAK KCV does not match the key: 0810 63 with
 * the reason in DE 44, and the issuer's keys unchanged (the switch's purchases go on). */
static void test_kcv_mismatch_refused(void **state)
{
    (void)state;
    char zmk[64], a1[160], a2[160], de48[200];
    PGconn *c = PQconnectdb(S.conninfo);
    PGresult *r = PQexec(c, "SELECT key_under_lmk FROM switch.keys WHERE key_id = 'WALLET1.ZMK'");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(zmk, sizeof zmk, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "A01001U;0%sU", zmk);
    assert_int_equal(hsm_cmd(cmd, a1, sizeof a1), 4 + 33 + 33 + 6);
    snprintf(cmd, sizeof cmd, "A01008U;0%sU", zmk);
    assert_int_equal(hsm_cmd(cmd, a2, sizeof a2), 4 + 33 + 33 + 6);
    assert_memory_equal(a1, "A100", 4);
    assert_memory_equal(a2, "A100", 4);
    /* the ZAK's KCV with its first digit changed */
    char bad_kcv[7];
    memcpy(bad_kcv, a2 + 70, 6);
    bad_kcv[6] = '\0';
    bad_kcv[0] = bad_kcv[0] == '0' ? '1' : '0';
    snprintf(de48, sizeof de48, "0133%.33s0206%.6s0333%.33s0406%s", a1 + 37, a1 + 70, a2 + 37,
             bad_kcv);
    char rc[3], why[26];
    assert_false(direct_change(de48, rc, why)); /* no KCVs back: nothing was installed */
    assert_string_equal(rc, "63");
    assert_string_equal(why, "ZAK KCV mismatch");
    assert_string_equal(buy(), "00");
    usleep(GRACE * 1000 * 1000 + 500 * 1000);
    assert_string_equal(buy(), "00");
}

/* ---------------------------------------------------------------- interrupted */

/* issuer-sim stopped (SIGSTOP) while a change is asked for: switchd gives it up (no answer, or
 * the link down), keeps its keys; issuer-sim, resumed, may import the keys of that 0800 still in
 * its socket — it keeps accepting the ones the switch has, before and after its grace window. A
 * next change then succeeds. */
static void test_unanswered_change_keeps_shared_pair(void **state)
{
    (void)state;
    assert_int_equal(stack_kill(S.issuer, SIGSTOP), 0);
    assert_int_equal(rotate("unanswered"), 1);
    assert_int_equal(stack_kill(S.issuer, SIGCONT), 0);
    assert_int_equal(n_rows("SELECT count(*) FROM switch.key_change_requests WHERE status ="
                            " 'failed' AND result LIKE '%issuer%'"),
                     2);
    assert_string_equal(purchase(), "00");
    usleep(GRACE * 1000 * 1000 + 500 * 1000);
    assert_string_equal(buy(), "00");
    assert_int_equal(rotate("after_unanswered"), 0);
    assert_string_equal(buy(), "00");
    usleep(GRACE * 1000 * 1000 + 500 * 1000);
    assert_string_equal(buy(), "00");
}

/* switchd killed (SIGKILL) after its 0800/161 went out, before the 0810 (issuer-sim stopped
 * meanwhile): the new switchd serves with the keys of the database — the old ones — and
 * issuer-sim, which imported the new keys once resumed but never saw them used, accepts them,
 * also after its grace window. The next change succeeds. */
static void test_switchd_killed_mid_change(void **state)
{
    (void)state;
    char out[400], sql[200], zak_before[64];
    PGconn *c = PQconnectdb(S.conninfo);
    PGresult *r = PQexec(c, "SELECT zak_key_id FROM switch.issuers WHERE issuer_id = 'WALLET1'");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(zak_before, sizeof zak_before, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    int sent_before = ts_file_lines_with(S.switch_log, "key_change_sent");
    int applied_before = ts_file_lines_with(S.issuer_log, "key_change_applied");
    assert_int_equal(stack_kill(S.issuer, SIGSTOP), 0);
    const char *args[] = { "rotate", "--issuer", "WALLET1", "--wait", "0", NULL };
    assert_int_equal(atlas_keys("killed", args, out, sizeof out), 0);
    for (int i = 0; i < 50 && ts_file_lines_with(S.switch_log, "key_change_sent") == sent_before;
         i++)
        usleep(100 * 1000);
    assert_int_equal(ts_file_lines_with(S.switch_log, "key_change_sent"), sent_before + 1);
    int st = stack_restart_switch(&S, SIGKILL);
    assert_int_equal(ts_exit_code(st), 128 + SIGKILL);
    assert_int_equal(stack_kill(S.issuer, SIGCONT), 0);
    /* issuer-sim imports the keys of the 0800 it had not read yet */
    for (int i = 0;
         i < 50 && ts_file_lines_with(S.issuer_log, "key_change_applied") == applied_before; i++)
        usleep(100 * 1000);
    assert_int_equal(ts_file_lines_with(S.issuer_log, "key_change_applied"), applied_before + 1);
    snprintf(
        sql, sizeof sql,
        "SELECT count(*) FROM switch.issuers WHERE issuer_id = 'WALLET1' AND zak_key_id = '%s'",
        zak_before);
    assert_int_equal(n_rows(sql), 1);
    assert_string_equal(purchase(), "00");
    usleep(GRACE * 1000 * 1000 + 500 * 1000);
    assert_string_equal(buy(), "00");
    assert_int_equal(rotate("after_killed"), 0);
    assert_string_equal(buy(), "00");
    usleep(GRACE * 1000 * 1000 + 500 * 1000);
    assert_string_equal(buy(), "00");
}

/* ---------------------------------------------------------------- terminal key download */

/* A terminal's key download through the library (in process): 0810 00 with the keys under its
 * TMK; taken (KCVs checked); the switch and the terminal then purchase with them. */
static void download(const char *term, bool tpk)
{
    struct sim_term *t = stack_term(&S, term);
    assert_non_null(t);
    struct sim_txn x;
    struct sim_resp r;
    struct sim_sent sent;
    char err[160], sql[256];
    stack_txn(&x, SIM_T_KEYS, "", NULL, 0);
    assert_int_equal(stack_send(&S, t, &x, &r, &sent), 0);
    assert_string_equal(r.mti, "0810");
    assert_string_equal(r.rc, "00");
    assert_non_null(strstr(r.keys, "0333U")); /* the TAK under the TMK */
    assert_true(tpk == (strstr(r.keys, "0133U") == r.keys));
    assert_int_equal(sim_term_apply_keys(t, r.keys, err, sizeof err), 0);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.terminals t JOIN switch.keys k ON k.key_id ="
             " t.tak_key_id WHERE t.terminal_id = '%s' AND k.key_id LIKE '%s.TAK.d%%'"
             " AND k.status = 'active' AND k.valid_to IS NULL",
             term, term);
    assert_int_equal(n_rows(sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.keys WHERE key_id = '%s.TAK' AND status = 'retired'"
             " AND valid_to IS NOT NULL",
             term);
    assert_int_equal(n_rows(sql), 1);
}

static void test_terminal_key_download(void **state)
{
    (void)state;
    struct sim_txn x;
    struct sim_resp r;
    download("TERM0001", true);       /* TPK terminal: a TPK and a TAK */
    assert_string_equal(buy(), "00"); /* PIN under the new TPK, MAC under the new TAK */
    assert_true(ts_wait_file_contains(S.switch_log, "key_download_done", 5000));
    download("TERM0002", false); /* DUKPT terminal: a TAK (its PIN keys come from its BDK) */
    stack_card_txn(&x, SIM_T_PURCHASE, CARD, 100);
    assert_string_equal(stack_rc(&S, "TERM0002", &x, &r, NULL), "00");
    assert_int_equal(r.mac, SIM_MAC_OK);
    /* a second download: keys change again, purchases go on */
    download("TERM0001", true);
    assert_string_equal(buy(), "00");
}

/* The terminal's old TAK after a download: its 0800 asking again is refused 63 (the MAC does
 * not verify), and so is a purchase; the terminal's keys stay the switch's. */
static void test_download_needs_current_tak(void **state)
{
    (void)state;
    char err[160];
    static const char *const kv[] = { "key_scheme", "tpk",
                                      "tpk",        "0E0E0E0E0E0E0E0E1F1F1F1F1F1F1F1F",
                                      "tak",        "3D3D3D3D3D3D3D3D4C4C4C4C4C4C4C4C",
                                      "tmk",        "1A1A1A1A1A1A1A1A2C2C2C2C2C2C2C2C",
                                      NULL };
    struct sim_term *old = sim_term_create("TERM0001", kv, err, sizeof err);
    assert_non_null(old);
    snprintf(old->address, sizeof old->address, "127.0.0.1:%u", S.acq_port);
    sim_term_set_counters(old, 900000, 1);
    struct sim_txn x;
    struct sim_resp r;
    stack_txn(&x, SIM_T_KEYS, "", NULL, 0);
    assert_int_equal(stack_send(&S, old, &x, &r, NULL), 0);
    assert_string_equal(r.rc, "63");
    assert_string_equal(r.keys, "");
    sim_term_free(old);
    assert_string_equal(buy(), "00"); /* the terminal with its downloaded keys */
}

/* The terminal side as a program: `acquirer-sim send --type keychange` keeps the new keys in
 * its state directory (under the TMK), and the next process purchases with them. */
static void test_acquirer_sim_keychange(void **state)
{
    (void)state;
    char host[32], dir[300], out[400];
    snprintf(host, sizeof host, "127.0.0.1:%u", S.pos_port);
    snprintf(dir, sizeof dir, "%s/acq-keys", S.dir);
    snprintf(out, sizeof out, "%s/acq-keys.out", S.dir);
    const char *dl[] = { "--state-dir", dir,         "send",   "--terminal", "TERM0004",
                         "--type",      "keychange", "--host", host,         NULL };
    assert_int_equal(ts_run("acquirer-sim", dl, out), 0);
    char path[400];
    snprintf(path, sizeof path, "%s/TERM0004.keys", dir);
    char *keys = ts_read_file(path, 0, NULL);
    assert_non_null(keys);
    assert_true(strncmp(keys, "0133U", 5) == 0);
    free(keys);
    const char *buy4[] = { "--state-dir", dir,      "send",  "--terminal", "TERM0004",
                           "--host",      host,     "--pan", CARD,         "--amount",
                           "1.00",        "--json", NULL };
    assert_int_equal(ts_run("acquirer-sim", buy4, out), 0);
    char *text = ts_read_file(out, 0, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"rc\":\"00\""));
    free(text);
    assert_int_equal(n_rows("SELECT count(*) FROM switch.terminals WHERE terminal_id = 'TERM0004'"
                            " AND tpk_key_id LIKE 'TERM0004.TPK.d%' AND tak_key_id LIKE"
                            " 'TERM0004.TAK.d%'"),
                     1);
}

/* ---------------------------------------------------------------- atlas-keys */

/* atlas-keys' exits: an unknown issuer (1); an issuer no running switchd has a link to (WALLET2:
 * this stack's switchd links WALLET1 only) withdrawn after --wait (3), its row failed; usage (2).
 */
static void test_atlas_keys_exits(void **state)
{
    (void)state;
    char out[400];
    const char *unknown[] = { "rotate", "--issuer", "NOPE", NULL };
    assert_int_equal(atlas_keys("unknown", unknown, out, sizeof out), 1);
    assert_int_equal(stack_exec(&S, "INSERT INTO switch.issuers (issuer_id, name, link)"
                                    " VALUES ('NOLINK', 'no link here', 'NOLINK')"),
                     0);
    const char *nolink[] = { "rotate", "--issuer", "NOLINK", "--wait", "2", NULL };
    assert_int_equal(atlas_keys("nolink", nolink, out, sizeof out), 3);
    assert_int_equal(n_rows("SELECT count(*) FROM switch.key_change_requests WHERE issuer_id ="
                            " 'NOLINK' AND status = 'failed' AND result LIKE 'withdrawn%'"),
                     1);
    const char *usage[] = { "rotate", NULL };
    assert_int_equal(atlas_keys("usage", usage, out, sizeof out), 2);
    const char *bad[] = { "frobnicate", NULL };
    assert_int_equal(atlas_keys("bad", bad, out, sizeof out), 2);
}

/* ---------------------------------------------------------------- no key in clear */

/* No key appears in any log: neither a lab key in clear nor any key as switch.keys holds it
 * (under the LMK); the key rows are all under the LMK (a scheme letter and hex), and the KCVs
 * the switch logged are those of its rows. atlas-keys list prints no key either. */
static void test_no_key_in_logs_or_db(void **state)
{
    (void)state;
    const char *logs[] = { S.switch_log, S.issuer_log, S.hsm_log };
    char out[400];
    const char *args[] = { "list", NULL };
    assert_int_equal(atlas_keys("list", args, out, sizeof out), 0);
    char *list = ts_read_file(out, 0, NULL);
    assert_non_null(list);
    assert_non_null(strstr(list, "WALLET1.ZAK.r"));
    for (size_t i = 0; i < 3; i++) {
        char *text = ts_read_file(logs[i], 0, NULL);
        assert_non_null(text);
        assert_null(strstr(text, "2A2A2A2A2A2A2A2A")); /* the lab ZAK in clear */
        assert_null(strstr(text, "2a2a2a2a2a2a2a2a"));
        free(text);
    }
    PGconn *c = PQconnectdb(S.conninfo);
    PGresult *r = PQexec(c, "SELECT key_under_lmk, kcv, key_id FROM switch.keys");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    char *swlog = ts_read_file(S.switch_log, 0, NULL),
         *isslog = ts_read_file(S.issuer_log, 0, NULL);
    assert_non_null(swlog);
    assert_non_null(isslog);
    for (int i = 0; i < PQntuples(r); i++) {
        const char *k = PQgetvalue(r, i, 0), *id = PQgetvalue(r, i, 2);
        assert_true(strlen(k) == 33 && (k[0] == 'U' || k[0] == 'A'));
        /* the key's hex, without the scheme letter: in no log, no listing */
        assert_null(strstr(swlog, k + 1));
        assert_null(strstr(isslog, k + 1));
        assert_null(strstr(list, k + 1));
        if (strstr(id, ".r")) { /* a generation of a change: its KCV logged by switchd */
            char needle[40];
            snprintf(needle, sizeof needle, "\"%s\"", PQgetvalue(r, i, 1));
            assert_non_null(strstr(swlog, needle));
        }
    }
    free(swlog);
    free(isslog);
    free(list);
    PQclear(r);
    PQfinish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grace_window),
        cmocka_unit_test(test_rotate_on_demand_under_load),
        cmocka_unit_test(test_rotate_scheduled_under_load),
        cmocka_unit_test(test_restart_uses_new_keys),
        cmocka_unit_test(test_refused_keys_unchanged),
        cmocka_unit_test(test_kcv_mismatch_refused),
        cmocka_unit_test(test_malformed_change_refused),
        cmocka_unit_test(test_unanswered_change_keeps_shared_pair),
        cmocka_unit_test(test_switchd_killed_mid_change),
        cmocka_unit_test(test_terminal_key_download),
        cmocka_unit_test(test_download_needs_current_tak),
        cmocka_unit_test(test_acquirer_sim_keychange),
        cmocka_unit_test(test_atlas_keys_exits),
        cmocka_unit_test(test_no_key_in_logs_or_db),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
