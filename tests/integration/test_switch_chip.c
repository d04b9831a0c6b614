/* Card authentication in switchd (docs/emv.md) through the whole stack — real switchd, hsm-sim
 * (KQ, CY), issuer-sim and PostgreSQL: a chip purchase with a Visa CVN 18 and a CVN 10 ARQC is
 * approved and its answer's ARPC (DE 55 tag 91) verifies with the card's key; a wrong ARQC is
 * declined 82 without reaching the issuer (the wallet unchanged); malformed chip data, missing
 * tags and an unknown CVN are refused; a route without an IMK-AC declines 57; a card-not-present
 * purchase with the right CVV2 is approved, a wrong one declined N7 (the wallet unchanged); the
 * switch's log, journal, write-ahead rows and spool never hold the CVV2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;

#define MAD_CARD  "4890010000000012" /* 1,000.00 MAD, CVV2 660 (README, demo world) */
#define XOF_CARD  "4890020000000029" /* CVV2 496 */
#define MAD_CVV2  "660"
#define WRONG_CVV "661"

static int setup(void **state)
{
    struct stack_opts o = { .issuer = true, .issuer_timeout_ms = 1500, .wallets = 16 };
    return stack_setup(state, &S, &o);
}

/* A purchase of amount on pan at TERM0001, chip (cvn 10/18, 0 = not) and/or CVV2. */
static const char *purchase(const char *pan, uint64_t amount, unsigned cvn, bool bad_arqc,
                            const char *cvv2, struct sim_resp *r, struct sim_sent *sent)
{
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, pan, amount);
    x.chip_cvn = cvn;
    x.bad_arqc = bad_arqc;
    if (cvv2) {
        snprintf(x.cvv2, sizeof x.cvv2, "%s", cvv2);
        x.pin[0] = '\0'; /* card not present: no PIN */
    }
    return stack_rc(&S, "TERM0001", &x, r, sent);
}

static void chip_cvn18_approved_with_arpc(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, MAD_CARD);
    assert_string_equal(purchase(MAD_CARD, 1250, 18, false, NULL, &r, &sent), "00");
    assert_true(r.has_arpc);
    assert_string_equal(sim_chip_arpc_status(&sent, &r), "ok");
    assert_memory_equal(r.arpc + 8, "00", 2); /* ARC = DE 39 */
    assert_true(stack_wait_balance(&S, MAD_CARD, before - 1250, 5000));
    assert_true(ts_wait_file_contains(S.switch_log, "\"method\":\"arqc\",\"cvn\":18", 5000));
}

static void chip_cvn10_approved_with_arpc(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, MAD_CARD);
    assert_string_equal(purchase(MAD_CARD, 700, 10, false, NULL, &r, &sent), "00");
    assert_string_equal(sim_chip_arpc_status(&sent, &r), "ok");
    assert_true(stack_wait_balance(&S, MAD_CARD, before - 700, 5000));
    /* the ARPC is the card's: a flipped bit in what the card checks does not verify */
    r.arpc[0] ^= 1;
    assert_string_equal(sim_chip_arpc_status(&sent, &r), "bad");
}

/* A decline by the issuer after a good ARQC still carries an ARPC, with the decline's ARC. */
static void chip_issuer_decline_gets_arpc(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    const char *rc = purchase(MAD_CARD, 99999999, 18, false, NULL, &r, &sent);
    assert_true(strcmp(rc, "00") != 0 && strcmp(rc, "--") != 0); /* 61, over the limit */
    assert_string_equal(sim_chip_arpc_status(&sent, &r), "ok");
    assert_memory_equal(r.arpc + 8, r.rc, 2);
}

/* SIGHUP, then waits for the reload's refdata_loaded line naming routes routes with card keys. */
static void reload(int routes)
{
    char want[64];
    snprintf(want, sizeof want, "\"routes_with_card_keys\":%d", routes);
    int lines = ts_file_lines_with(S.switch_log, "refdata_loaded");
    assert_int_equal(stack_kill(S.sw, SIGHUP), 0);
    for (int i = 0; i < 200 && ts_file_lines_with(S.switch_log, "refdata_loaded") == lines; i++)
        usleep(50 * 1000);
    assert_true(ts_file_lines_with(S.switch_log, "refdata_loaded") > lines);
    assert_true(ts_file_lines_with(S.switch_log, want) > 0);
}

/* A repeat (0201) of an answered chip purchase gets the stored answer again (same DE 38, no
 * second debit), with an ARPC made for that code from its own ARQC; a repeat whose ARQC fails
 * still gets the stored answer, without an ARPC. */
static void chip_repeat_gets_stored_answer_and_arpc(void **state)
{
    (void)state;
    struct sim_txn x;
    struct sim_resp r, r2;
    struct sim_sent sent, sent2;
    stack_card_txn(&x, SIM_T_PURCHASE, MAD_CARD, 400);
    x.chip_cvn = 18;
    stack_fix_time(&x);
    long long before = stack_balance(&S, MAD_CARD);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r, &sent), "00");
    assert_string_equal(sim_chip_arpc_status(&sent, &r), "ok");
    assert_true(stack_wait_balance(&S, MAD_CARD, before - 400, 5000));
    stack_repeat_of(&x, "0201", &sent);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r2, &sent2), "00");
    assert_string_equal(r2.auth, r.auth);
    assert_string_equal(sim_chip_arpc_status(&sent2, &r2), "ok");
    assert_true(ts_wait_file_contains(S.switch_log, "\"repeat_answered\"", 5000));
    /* the same repeat with a spoiled ARQC: the stored answer, no ARPC */
    x.bad_arqc = true;
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r2, &sent2), "00");
    assert_string_equal(r2.auth, r.auth);
    assert_string_equal(sim_chip_arpc_status(&sent2, &r2), "absent");
    usleep(300 * 1000);
    assert_int_equal(stack_balance(&S, MAD_CARD), before - 400);
}

static void wrong_arqc_declined_82(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, MAD_CARD);
    long long reqs = stack_scalar(&S, "SELECT count(*) FROM switch.inflight");
    assert_string_equal(purchase(MAD_CARD, 1000, 18, true, NULL, &r, &sent), "82");
    assert_string_equal(sim_chip_arpc_status(&sent, &r), "absent");
    /* never forwarded: no write-ahead row, the journal says 82, the wallet is as it was */
    assert_true(stack_scalar(&S, "SELECT count(*) FROM switch.inflight") <= reqs);
    assert_int_equal(
        stack_wait_scalar(&S,
                          stack_rows_sql("switch.authorizations", "TERM0001", &sent,
                                         "response_code = '82' AND issuer_stan IS NULL"),
                          1, 5000),
        0);
    usleep(300 * 1000);
    assert_int_equal(stack_balance(&S, MAD_CARD), before);
    /* the same with CVN 10 */
    assert_string_equal(purchase(MAD_CARD, 1000, 10, true, NULL, &r, &sent), "82");
    assert_int_equal(stack_balance(&S, MAD_CARD), before);
}

/* Sends DE 55 as given with chip entry mode 051. */
static const char *raw_chip(const uint8_t *de55, size_t len, const char *entry)
{
    struct sim_txn x;
    static struct sim_resp r;
    stack_card_txn(&x, SIM_T_PURCHASE, MAD_CARD, 1000);
    x.de55_raw = de55;
    x.de55_raw_len = len;
    snprintf(x.entry_mode, sizeof x.entry_mode, "%s", entry);
    return stack_rc(&S, "TERM0001", &x, &r, NULL);
}

static void malformed_chip_data_refused(void **state)
{
    (void)state;
    /* truncated: a length running past the end */
    const uint8_t truncated[] = { 0x9F, 0x26, 0x08, 0x01, 0x02 };
    assert_string_equal(raw_chip(truncated, sizeof truncated, "051"), "30");
    /* well-formed TLV without the ARQC's tags */
    const uint8_t few[] = { 0x9F, 0x26, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x9F, 0x27, 0x01, 0x80 };
    assert_string_equal(raw_chip(few, sizeof few, "051"), "30");
    /* chip entry mode without DE 55 */
    assert_string_equal(raw_chip(NULL, 0, "051"), "30");
    /* every tag, 9F02 = DE 4 (10.00), but CVN 0x16 (22): not supported → 12 */
    const uint8_t cvn22[] = {
        0x9F, 0x26, 0x08, 1,    2,    3,    4,    5,    6,    7,    8,    0x9F, 0x27, 0x01,
        0x80, 0x9F, 0x10, 0x07, 0x06, 0x01, 0x16, 0x03, 0xA0, 0x00, 0x00, 0x9F, 0x37, 0x04,
        1,    2,    3,    4,    0x9F, 0x36, 0x02, 0x00, 0x01, 0x95, 0x05, 0,    0,    0,
        0,    0,    0x9A, 0x03, 0x26, 0x12, 0x06, 0x9C, 0x01, 0x00, 0x9F, 0x02, 0x06, 0x00,
        0x00, 0x00, 0x00, 0x10, 0x00, 0x5F, 0x2A, 0x02, 0x05, 0x04, 0x82, 0x02, 0x18, 0x00,
        0x9F, 0x1A, 0x02, 0x05, 0x04, 0x9F, 0x03, 0x06, 0,    0,    0,    0,    0,    0,
    };
    assert_string_equal(raw_chip(cvn22, sizeof cvn22, "051"), "12");
    /* the same with 9F02 not DE 4's amount → 30 */
    uint8_t other[sizeof cvn22];
    memcpy(other, cvn22, sizeof other);
    for (size_t i = 0; i + 9 <= sizeof other; i++)
        if (other[i] == 0x9F && other[i + 1] == 0x02 && other[i + 2] == 0x06)
            other[i + 7] = 0x20; /* 20.00 */
    assert_string_equal(raw_chip(other, sizeof other, "051"), "30");
}

/* A route whose IMK-AC / CVK is taken away (SIGHUP reload) declines 57 chip and CVV2 requests. */
static void route_without_keys_declines_57(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    assert_int_equal(stack_exec(&S, "UPDATE switch.bin_routes SET imk_ac_key = NULL,"
                                    " cvk_key = NULL WHERE prefix = '489002'"),
                     0);
    reload(3);
    long long before = stack_balance(&S, XOF_CARD);
    assert_string_equal(purchase(XOF_CARD, 1000, 18, false, NULL, &r, &sent), "57");
    assert_string_equal(purchase(XOF_CARD, 1000, 0, false, "496", &r, &sent), "57");
    assert_int_equal(stack_balance(&S, XOF_CARD), before);
    assert_int_equal(stack_exec(&S, "UPDATE switch.bin_routes SET imk_ac_key = 'WALLET2.IMKAC',"
                                    " cvk_key = 'WALLET2.CVK' WHERE prefix = '489002'"),
                     0);
    reload(4);
    assert_string_equal(purchase(XOF_CARD, 1000, 18, false, NULL, &r, &sent), "00");
}

static void cvv2_right_approved_wrong_n7(void **state)
{
    (void)state;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, MAD_CARD);
    assert_string_equal(purchase(MAD_CARD, 500, 0, false, MAD_CVV2, &r, &sent), "00");
    assert_false(r.has_arpc);
    assert_true(stack_wait_balance(&S, MAD_CARD, before - 500, 5000));
    before -= 500;
    assert_string_equal(purchase(MAD_CARD, 500, 0, false, WRONG_CVV, &r, &sent), "N7");
    assert_int_equal(
        stack_wait_scalar(&S,
                          stack_rows_sql("switch.authorizations", "TERM0001", &sent,
                                         "response_code = 'N7' AND issuer_stan IS NULL"),
                          1, 5000),
        0);
    usleep(300 * 1000);
    assert_int_equal(stack_balance(&S, MAD_CARD), before);
    /* a CVV2 needs the expiry (DE 14) */
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, MAD_CARD, 500);
    x.pin[0] = '\0';
    x.expiry[0] = '\0';
    snprintf(x.cvv2, sizeof x.cvv2, "%s", MAD_CVV2);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r, NULL), "30");
}

/* Whether any file under dir holds needle (binary-safe). */
static bool tree_contains(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            found = tree_contains(path, needle);
            continue;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        static char buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        size_t nl = strlen(needle);
        for (size_t i = 0; n >= nl && i <= n - nl && !found; i++)
            found = memcmp(buf + i, needle, nl) == 0;
    }
    closedir(d);
    return found;
}

static void cvv2_never_kept(void **state)
{
    (void)state;
    /* what was sent (DE 126 "C203" + CVV2), in switchd's log, spool and every file of the stack
     * but the issuer's (the issuer never gets it either: the test checks its log too) */
    assert_false(tree_contains(S.dir, "C203" MAD_CVV2));
    assert_false(tree_contains(S.dir, "C203" WRONG_CVV));
    /* nor as the CY command carries it (CVV2 ‖ PAN), e.g. in hsm-sim's log */
    assert_false(tree_contains(S.dir, MAD_CVV2 MAD_CARD));
    assert_false(tree_contains(S.dir, WRONG_CVV MAD_CARD));
    assert_false(ts_wait_file_contains(S.switch_log, "\"cvv2\":\"", 10));
    /* the journal and the write-ahead rows: no column holds it */
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.authorizations a"
                                      " WHERE a::text LIKE '%C203" MAD_CVV2 "%'"
                                      " OR a::text LIKE '%C203" WRONG_CVV "%'"),
                     0);
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.inflight a"
                                      " WHERE a::text LIKE '%C203%'"),
                     0);
}

/* acquirer-sim as the chip card and the e-commerce terminal (docs/acquirer-sim.md): a scenario
 * of chip lines (CVN 18 and 10: arpc=ok, a line fails when the ARPC does not verify), a wrong
 * ARQC (82, arpc=absent) and CVV2 lines (00, N7), as demo.scn has them. */
static void acquirer_sim_chip_and_ecom_lines(void **state)
{
    (void)state;
    char scn[400], out[400], host[32], state_dir[400];
    snprintf(scn, sizeof scn, "%s/chip.scn", S.dir);
    snprintf(out, sizeof out, "%s/chip.out", S.dir);
    snprintf(state_dir, sizeof state_dir, "%s/acq-chip", S.dir);
    snprintf(host, sizeof host, "127.0.0.1:%u", S.acq_port);
    assert_int_equal(ts_write_file(scn,
                                   "defaults terminal=TERM0001 timeout-ms=10000\n"
                                   "type=purchase pan=" MAD_CARD " amount=3.00 chip expect=00\n"
                                   "type=purchase pan=" MAD_CARD " amount=3.00 cvn=10 expect=00\n"
                                   "type=purchase pan=" MAD_CARD " amount=3.00 bad-arqc expect=82\n"
                                   "type=purchase pan=" MAD_CARD
                                   " amount=3.00 no-pin cvv2=" MAD_CVV2 " expect=00\n"
                                   "type=purchase pan=" MAD_CARD
                                   " amount=3.00 no-pin cvv2=" WRONG_CVV " expect=N7\n"),
                     0);
    /* Its STANs from 600001: the stack's own terminals count from (pid % 500) * 1000 + 1, so a
     * fresh acquirer-sim state (STAN 1) could repeat an earlier test's request identity within
     * the same second (94, duplicate) whenever pid % 500 was 0. */
    char state_file[440];
    assert_int_equal(mkdir(state_dir, 0700), 0);
    snprintf(state_file, sizeof state_file, "%s/TERM0001.state", state_dir);
    assert_int_equal(ts_write_file(state_file, "stan=600001\nksn_counter=1\n"), 0);
    const char *args[] = { "--state-dir", state_dir, "--host", host, "run", scn, NULL };
    int code = ts_run("acquirer-sim", args, out);
    char *text = ts_read_file(out, 0, NULL);
    assert_non_null(text);
    printf("%s", text);
    assert_int_equal(code, 0);
    assert_non_null(strstr(text, "5 passed, 0 failed\n"));
    assert_int_equal(ts_count(text, "arpc=ok"), 2);
    assert_int_equal(ts_count(text, "arpc=absent"), 1);
    free(text);
}

/* `acquirer-sim load --mix chip=1,ecom=1`: chip purchases (CVN 18 and 10) and e-commerce ones
 * with each card's CVV2, on a load terminal of their own: the switch authenticates every card
 * (nothing declined 82, N7, 30, 12 or 57) and approves. */
static void load_mix_chip_and_ecom(void **state)
{
    (void)state;
    assert_int_equal(stack_seed_load_terminals(&S, 1), 0);
    const struct stack_load_opts lo = { .tag = "chip",
                                        .rate = 40,
                                        .seconds = 2,
                                        .connections = 1,
                                        .load_terminals = true,
                                        .mix = "chip=1,ecom=1" };
    struct stack_load l;
    assert_int_equal(stack_load_run(&S, &lo, &l), 0);
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.authorizations WHERE"
                                      " terminal_id LIKE 'LOAD%' AND response_code IN"
                                      " ('82', 'N7', '30', '12', '57')"),
                     0);
    assert_true(stack_scalar(&S, "SELECT count(*) FROM switch.authorizations WHERE"
                                 " terminal_id LIKE 'LOAD%' AND response_code = '00'") >= 40);
    assert_true(ts_file_lines_with(S.switch_log, "\"method\":\"cvv2\",\"result\":\"ok\"") >= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chip_cvn18_approved_with_arpc),
        cmocka_unit_test(chip_cvn10_approved_with_arpc),
        cmocka_unit_test(chip_issuer_decline_gets_arpc),
        cmocka_unit_test(chip_repeat_gets_stored_answer_and_arpc),
        cmocka_unit_test(wrong_arqc_declined_82),
        cmocka_unit_test(malformed_chip_data_refused),
        cmocka_unit_test(route_without_keys_declines_57),
        cmocka_unit_test(cvv2_right_approved_wrong_n7),
        cmocka_unit_test(acquirer_sim_chip_and_ecom_lines),
        cmocka_unit_test(load_mix_chip_and_ecom),
        cmocka_unit_test(cvv2_never_kept),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
