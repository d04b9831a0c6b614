/* atlas-reconcile's pure parts: the record-file reader against golden lines (the contract's
 * example in docs/acquirer-sim.md) and against what the writer itself produces
 * (load_record_format), malformed lines refused with their line numbers and without quoting a
 * PAN; and the reconciliation rules on hand-made data (no database). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"
#include "record_cases.h"
#include "fmt.h"
#include "recon.h"
#include "record.h"

/* ------------------------------------------------------------------ the record reader */

/* The example of docs/acquirer-sim.md, "The record file". */
static const char golden[] =
    "# atlas-load-record 1\n"
    "req terminal=LOAD0001 stan=000123 de7=1206011530 mti=0200 proc=000000 amount=2500 "
    "currency=504 pan=489001******0012 answered=yes rc=00 auth=123456 rev=no\n"
    "req terminal=LOAD0001 stan=000124 de7=1206011531 mti=0200 proc=010000 amount=700 "
    "currency=504 pan=489001******0053 answered=no rev=yes rev_stan=000125 rev_de7=1206011545 "
    "rev_tries=2 rev_rc=00\n"
    "req terminal=LOAD0002 stan=000090 de7=1206011533 mti=0401 proc=000000 amount=13 "
    "currency=952 pan=489002******0144 orig_mti=0200 orig_stan=000088 orig_de7=1206011532 "
    "answered=yes rc=12 auth=- rev=no\n"
    "req terminal=LOAD0002 stan=000091 de7=1206011533 mti=0100 proc=300000 amount=- "
    "currency=952 pan=489002******0508 answered=no rev=no\n";

static void test_golden_lines(void **state)
{
    (void)state;
    struct rec_file f;
    char err[256] = "";
    assert_int_equal(rec_parse_text(golden, strlen(golden), &f, err, sizeof err), 0);
    assert_int_equal(f.n, 4);
    assert_false(f.torn_tail);

    const struct rec_line *l = &f.lines[0];
    assert_int_equal(l->lineno, 2);
    assert_string_equal(l->terminal, "LOAD0001");
    assert_string_equal(l->stan, "000123");
    assert_string_equal(l->de7, "1206011530");
    assert_string_equal(l->mti, "0200");
    assert_string_equal(l->proc, "000000");
    assert_true(l->has_amount);
    assert_int_equal(l->amount, 2500);
    assert_string_equal(l->currency, "504");
    assert_string_equal(l->pan, "489001******0012");
    assert_false(l->has_orig);
    assert_true(l->answered);
    assert_string_equal(l->rc, "00");
    assert_string_equal(l->auth, "123456");
    assert_false(l->rev);
    assert_string_equal(rec_mti_class(l), "020");

    l = &f.lines[1];
    assert_int_equal(l->lineno, 3);
    assert_false(l->answered);
    assert_true(l->rev);
    assert_string_equal(l->rev_stan, "000125");
    assert_string_equal(l->rev_de7, "1206011545");
    assert_int_equal(l->rev_tries, 2);
    assert_true(l->rev_answered);
    assert_string_equal(l->rev_rc, "00");

    l = &f.lines[2];
    assert_true(l->has_orig);
    assert_string_equal(l->mti, "0401");
    assert_string_equal(rec_mti_class(l), "040");
    assert_string_equal(l->orig_mti, "0200");
    assert_string_equal(l->orig_stan, "000088");
    assert_string_equal(l->orig_de7, "1206011532");
    assert_string_equal(l->rc, "12");
    assert_string_equal(l->auth, ""); /* '-' */

    l = &f.lines[3];
    assert_false(l->has_amount);
    assert_string_equal(rec_mti_class(l), "010");
    assert_false(l->answered);
    assert_false(l->rev);
    rec_file_free(&f);
}

/* What the harness writes, read back: every field survives. */
static void roundtrip(const struct load_record *r)
{
    char line[LOAD_RECORD_LINE_MAX], err[256] = "";
    int n = load_record_format(r, line, sizeof line);
    assert_true(n > 1 && line[n - 1] == '\n');
    struct rec_line l;
    memset(&l, 0, sizeof l);
    if (rec_parse_line(line, (size_t)n - 1, 2, &l, err, sizeof err) != 0)
        fail_msg("%s: %s", line, err);
    assert_string_equal(l.terminal, r->terminal);
    assert_string_equal(l.stan, r->stan);
    assert_string_equal(l.de7, r->de7);
    assert_string_equal(l.mti, r->mti);
    assert_string_equal(l.proc, r->proc);
    assert_int_equal(l.has_amount, r->has_amount);
    if (r->has_amount)
        assert_int_equal(l.amount, r->amount);
    assert_string_equal(l.currency, r->currency);
    char masked[20];
    load_pan_mask(r->pan, masked);
    assert_string_equal(l.pan, masked);
    assert_int_equal(l.has_orig, r->has_orig);
    if (r->has_orig) {
        assert_string_equal(l.orig_mti, r->orig_mti);
        assert_string_equal(l.orig_stan, r->orig_stan);
        assert_string_equal(l.orig_de7, r->orig_de7);
    }
    assert_int_equal(l.answered, r->answered);
    if (r->answered) {
        assert_string_equal(l.rc, r->rc);
        assert_string_equal(l.auth, r->auth);
    }
    assert_int_equal(l.rev, r->rev);
    if (r->rev) {
        assert_string_equal(l.rev_stan, r->rev_stan);
        assert_string_equal(l.rev_de7, r->rev_de7);
        assert_int_equal(l.rev_tries, r->rev_tries);
        assert_int_equal(l.rev_answered, r->rev_answered);
        if (r->rev_answered)
            assert_string_equal(l.rev_rc, r->rev_rc);
    }
}

static void test_writer_roundtrip(void **state)
{
    (void)state;
    /* Every outcome of a request the harness writes (record_cases.h) but those with a value
     * written as '?'. */
    struct load_record r;
    for (size_t i = 0; i < sizeof record_cases / sizeof record_cases[0]; i++) {
        if (record_cases[i].lossy)
            continue;
        r = record_base();
        record_cases[i].make(&r);
        roundtrip(&r);
    }
    /* Values the switch sent that are not alphanumeric come back as '?'. */
    r = record_base();
    record_answered_odd(&r);
    char line[LOAD_RECORD_LINE_MAX], err[128];
    struct rec_line l;
    int n = load_record_format(&r, line, sizeof line);
    assert_true(n > 0);
    assert_int_equal(rec_parse_line(line, (size_t)n - 1, 2, &l, err, sizeof err), 0);
    assert_string_equal(l.rc, "9?");
    assert_string_equal(l.auth, "");
}

/* A file whose line `bad` is broken: the read stops there, naming that line and the field. */
static void expect_bad(const char *bad, unsigned want_line, const char *want)
{
    char text[2048], err[256] = "";
    struct rec_file f;
    snprintf(text, sizeof text,
             "# atlas-load-record 1\n"
             "req terminal=TERM0001 stan=000001 de7=1206011530 mti=0200 proc=000000 amount=1 "
             "currency=504 pan=489001******0012 answered=yes rc=00 auth=123456 rev=no\n"
             "%s\n",
             bad);
    int rc = rec_parse_text(text, strlen(text), &f, err, sizeof err);
    if (rc == 0)
        fail_msg("accepted: %s", bad);
    char line_no[32];
    snprintf(line_no, sizeof line_no, "line %u: ", want_line);
    if (strncmp(err, line_no, strlen(line_no)) != 0 || !strstr(err, want))
        fail_msg("line '%s': got '%s', want '%s...%s'", bad, err, line_no, want);
    assert_null(strstr(err, "4890010000000012")); /* never a PAN in a message */
}

#define OK_HEAD "req terminal=TERM0001 stan=000002 de7=1206011530 mti=0200 proc=000000 "
#define OK_MID  "amount=1 currency=504 pan=489001******0012 "

static void test_malformed_lines(void **state)
{
    (void)state;
    expect_bad("", 3, "start with 'req'");
    expect_bad("rec terminal=TERM0001", 3, "start with 'req'");
    expect_bad("req", 3, "terminal missing");
    expect_bad(OK_HEAD OK_MID "answered=yes rc=00 auth=123456", 3, "rev missing");
    expect_bad(OK_HEAD OK_MID "answered=yes rc=00 auth=123456 rev=no extra=1", 3,
               "unexpected text after the last field");
    expect_bad(OK_HEAD OK_MID "answered=yes rc=00 auth=123456 rev=no ", 3, "unexpected text");
    expect_bad(OK_HEAD OK_MID " answered=yes rc=00 auth=123456 rev=no", 3, "exactly one space");
    expect_bad(OK_HEAD OK_MID "answered=yes rc=00 auth=123456 rev=no\r", 3, "control character");
    expect_bad("req stan=000002 terminal=TERM0001", 3, "expected field terminal=");
    expect_bad("req terminal=TERM001 stan=000002", 3, "terminal: expected 8");
    expect_bad("req terminal=TERM0001 stan=00002 de7=1206011530", 3, "stan: expected 6 digits");
    expect_bad("req terminal=TERM0001 stan=000002 de7=1306011530", 3, "de7: expected");
    expect_bad("req terminal=TERM0001 stan=000002 de7=1206016130", 3, "de7: expected");
    expect_bad("req terminal=TERM0001 stan=000002 de7=1206011530 mti=0800", 3,
               "mti: 0800 is not a request");
    expect_bad(OK_HEAD "amount=0100 currency=504", 3, "amount: expected");
    expect_bad(OK_HEAD "amount=1000000000000 currency=504", 3, "amount: expected");
    expect_bad(OK_HEAD "amount= currency=504", 3, "amount: empty value");
    expect_bad(OK_HEAD "amount=1 currency=MAD", 3, "currency: expected 3 digits");
    /* A full PAN is refused, and the message does not repeat it. */
    expect_bad(OK_HEAD "amount=1 currency=504 pan=4890010000000012 answered=no rev=no", 3,
               "pan: not a masked PAN");
    expect_bad(OK_HEAD "amount=1 currency=504 pan=48900100000*0012 answered=no rev=no", 3,
               "pan: not a masked PAN");
    expect_bad(OK_HEAD OK_MID "answered=maybe rev=no", 3, "answered: expected yes or no");
    expect_bad(OK_HEAD OK_MID "answered=yes rc=000 auth=- rev=no", 3, "rc: expected 2");
    expect_bad(OK_HEAD OK_MID "answered=yes rc=00 auth=1234567 rev=no", 3, "auth: expected");
    expect_bad(OK_HEAD OK_MID "answered=yes rc=00 auth=1 2 rev=no", 3, "expected field rev=");
    expect_bad(OK_HEAD OK_MID
               "answered=yes rc=00 auth=- rev=yes rev_stan=000003 rev_de7=1206011531 "
               "rev_tries=1 rev_rc=00",
               3, "an answered request is never reversed");
    expect_bad(OK_HEAD OK_MID
               "answered=no rev=yes rev_stan=- rev_de7=1206011531 rev_tries=1 rev_rc=none",
               3, "rev_de7: '-' exactly when");
    expect_bad(OK_HEAD OK_MID "answered=no rev=yes rev_stan=- rev_de7=- rev_tries=1 rev_rc=none", 3,
               "rev_tries: 0 exactly when");
    expect_bad(OK_HEAD OK_MID "answered=no rev=yes rev_stan=- rev_de7=- rev_tries=0 rev_rc=00", 3,
               "never left has no answer");
    expect_bad(OK_HEAD OK_MID
               "answered=no rev=yes rev_stan=000003 rev_de7=1206011531 rev_tries=1 rev_rc=0",
               3, "rev_rc: expected");
    expect_bad("req terminal=TERM0001 stan=000002 de7=1206011530 mti=0400 proc=000000 " OK_MID
               "answered=yes rc=00 auth=- rev=no",
               3, "expected field orig_mti=");
    expect_bad("req terminal=TERM0001 stan=000002 de7=1206011530 mti=0400 proc=000000 " OK_MID
               "orig_mti=0400 orig_stan=000001 orig_de7=1206011530 answered=yes rc=00 auth=- "
               "rev=no",
               3, "orig_mti: 0400 cannot be reversed");
    expect_bad("req terminal=TERM0001 stan=000002 de7=1206011530 mti=0400 proc=000000 " OK_MID
               "orig_mti=0200 orig_stan=000001 orig_de7=1206011530 answered=no rev=yes "
               "rev_stan=- rev_de7=- rev_tries=0 rev_rc=none",
               3, "a load-mix reversal is repeated");
    char longline[600];
    memset(longline, 'x', sizeof longline - 1);
    memcpy(longline, "req ", 4);
    longline[sizeof longline - 1] = '\0';
    expect_bad(longline, 3, "longer than 400");
}

static void test_headers_and_torn_tail(void **state)
{
    (void)state;
    char err[256];
    struct rec_file f;
    static const char v3[] = "# atlas-load-record 3\n";
    assert_int_equal(rec_parse_text(v3, strlen(v3), &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 1: record format version 3 is not supported"));
    static const char v2[] = "# atlas-load-record 2\n";
    assert_int_equal(rec_parse_text(v2, strlen(v2), &f, err, sizeof err), 0);
    assert_int_equal(f.version, 2);
    rec_file_free(&f);
    static const char other[] = "terminal,stan\n";
    assert_int_equal(rec_parse_text(other, strlen(other), &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 1: not a record file"));
    assert_int_equal(rec_parse_text("", 0, &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 1: empty file"));
    /* Only the header: no request. */
    static const char empty[] = "# atlas-load-record 1\n";
    assert_int_equal(rec_parse_text(empty, strlen(empty), &f, err, sizeof err), 0);
    assert_int_equal(f.n, 0);
    rec_file_free(&f);
    /* A harness that died mid-line: the last line without its newline is ignored, even when
     * what is there would not parse. */
    char text[1024];
    snprintf(text, sizeof text, "%sreq terminal=TERM00", golden);
    assert_int_equal(rec_parse_text(text, strlen(text), &f, err, sizeof err), 0);
    assert_int_equal(f.n, 4);
    assert_true(f.torn_tail);
    rec_file_free(&f);
    /* A file that does not exist. */
    assert_int_equal(rec_read_file("/nonexistent/record", &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/record: "));
}

/* The version 2 example of docs/acquirer-sim.md: an approved MAD -> XOF transfer with its fee,
 * and one declined at its OCT leg. */
static const char golden_v2[] =
    "# atlas-load-record 2\n"
    "req terminal=LOAD0003 stan=000201 de7=1206011540 mti=0200 proc=400000 amount=1000 "
    "currency=504 pan=489001******0017 to=489002******0144 to_currency=952 answered=yes rc=00 "
    "auth=654321 de6=656 de51=952 de28=D00000100 rev=no\n"
    "req terminal=LOAD0003 stan=000202 de7=1206011541 mti=0200 proc=400000 amount=40 "
    "currency=950 pan=489003******0027 to=489001******0013 to_currency=504 answered=yes rc=57 "
    "auth=- de6=- de51=- de28=- rev=no\n"
    /* a purchase in a version 2 file has no transfer fields */
    "req terminal=LOAD0001 stan=000123 de7=1206011530 mti=0200 proc=000000 amount=2500 "
    "currency=504 pan=489001******0012 answered=yes rc=00 auth=123456 rev=no\n";

static void test_transfer_lines(void **state)
{
    (void)state;
    struct rec_file f;
    char err[256] = "";
    assert_int_equal(rec_parse_text(golden_v2, strlen(golden_v2), &f, err, sizeof err), 0);
    assert_int_equal(f.version, 2);
    assert_int_equal(f.n, 3);
    const struct rec_line *l = &f.lines[0];
    assert_true(l->transfer);
    assert_string_equal(l->to, "489002******0144");
    assert_string_equal(l->to_currency, "952");
    assert_string_equal(l->rc, "00");
    assert_string_equal(l->auth, "654321");
    assert_true(l->has_de6);
    assert_int_equal(l->de6_amount, 656);
    assert_string_equal(l->de51, "952");
    assert_true(l->has_fee);
    assert_int_equal(l->fee, 100);
    l = &f.lines[1];
    assert_true(l->transfer);
    assert_string_equal(l->rc, "57");
    assert_false(l->has_de6);
    assert_false(l->has_fee);
    assert_string_equal(l->de28, "");
    assert_false(f.lines[2].transfer);
    rec_file_free(&f);

    /* What the writer makes of a transfer reads back: answered (a 'C' fee too), declined,
     * reversed. */
    struct load_record r = record_base();
    strcpy(r.proc, "400000");
    r.transfer = true;
    strcpy(r.to_pan, "4890020000000029");
    strcpy(r.to_currency, "952");
    record_answered(&r);
    strcpy(r.de6, "606");
    strcpy(r.de51, "952");
    strcpy(r.de28, "C00000007");
    char line[LOAD_RECORD_LINE_MAX];
    struct rec_line rl;
    int n = load_record_format(&r, line, sizeof line);
    assert_true(n > 0);
    assert_int_equal(rec_parse_line(line, (size_t)n - 1, 2, &rl, err, sizeof err), 0);
    assert_true(rl.transfer);
    assert_string_equal(rl.to, "489002******0029");
    assert_int_equal(rl.fee, -7);
    assert_int_equal(rl.de6_amount, 606);
    roundtrip(&r);
    r.answered = false;
    record_reversed(&r);
    n = load_record_format(&r, line, sizeof line);
    assert_int_equal(rec_parse_line(line, (size_t)n - 1, 2, &rl, err, sizeof err), 0);
    assert_true(rl.transfer && rl.rev && rl.rev_answered);
    /* The same line is not version 1: its fields are unknown there. */
    assert_int_equal(rec_parse_line(line, (size_t)n - 1, 1, &rl, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected field answered="));
}

/* A version 2 file whose line `bad` is broken. */
static void expect_bad_v2(const char *bad, const char *want)
{
    char text[2048], err[256] = "";
    struct rec_file f;
    snprintf(text, sizeof text, "# atlas-load-record 2\n%s\n", bad);
    if (rec_parse_text(text, strlen(text), &f, err, sizeof err) == 0)
        fail_msg("accepted: %s", bad);
    if (strncmp(err, "line 2: ", 8) != 0 || !strstr(err, want))
        fail_msg("line '%s': got '%s', want '%s'", bad, err, want);
    assert_null(strstr(err, "4890020000000029"));
}

#define XFER_HEAD                                                                                  \
    "req terminal=TERM0001 stan=000002 de7=1206011530 mti=0200 proc=400000 amount=1000 "           \
    "currency=504 pan=489001******0012 "

static void test_transfer_lines_malformed(void **state)
{
    (void)state;
    expect_bad_v2(XFER_HEAD "answered=yes rc=00 auth=123456 rev=no", "expected field to=");
    expect_bad_v2(XFER_HEAD "to=4890020000000029 to_currency=952 answered=no rev=no",
                  "to: not a masked PAN");
    expect_bad_v2(XFER_HEAD "to=489002******0029 to_currency=XOF answered=no rev=no",
                  "to_currency: expected 3 digits");
    expect_bad_v2(XFER_HEAD "to=489002******0029 to_currency=952 answered=yes rc=00 auth=1 "
                            "rev=no",
                  "expected field de6=");
    expect_bad_v2(XFER_HEAD "to=489002******0029 to_currency=952 answered=yes rc=00 auth=1 "
                            "de6=1 de51=9520 de28=- rev=no",
                  "de51: expected up to 3");
    expect_bad_v2(XFER_HEAD "to=489002******0029 to_currency=952 answered=yes rc=00 auth=1 "
                            "de6=1 de51=952 de28=D000000001 rev=no",
                  "de28: expected up to 9");
}

/* ------------------------------------------------------------------ the rules */

static void test_full_effect(void **state)
{
    (void)state;
    assert_int_equal(rc_full_effect("020", "000000", 2500), -2500); /* purchase */
    assert_int_equal(rc_full_effect("020", "010000", 700), -700);   /* cash-out */
    assert_int_equal(rc_full_effect("020", "090000", 10), -10);     /* cash-back */
    assert_int_equal(rc_full_effect("020", "100000", 10), -10);     /* AFT */
    assert_int_equal(rc_full_effect("020", "200000", 10), 10);      /* refund */
    assert_int_equal(rc_full_effect("020", "260000", 10), 10);      /* OCT */
    assert_int_equal(rc_full_effect("020", "300000", 10), 0);       /* balance inquiry */
    assert_int_equal(rc_full_effect("020", "400000", 10), 0);       /* transfer: declined 12 */
    assert_int_equal(rc_full_effect("010", "000000", 900), -900);   /* a hold */
    assert_int_equal(rc_full_effect("010", "300000", -1), 0);
    assert_int_equal(rc_full_effect("010", "200000", 5), 0);        /* a credit as 0100: declined */
    assert_int_equal(rc_full_effect("022", "000000", 7350), -7350); /* a completion */
    assert_int_equal(rc_full_effect("040", "000000", 5), 0);
    assert_int_equal(rc_full_effect("020", "x0", 5), 0);
}

/* A journal row of TERM0001 that reached the issuer under issuer STAN istan. */
static struct rc_sw journal_row(const char *stan, const char *istan, const char *outcome,
                                enum rc_rev rev)
{
    struct rc_sw s;
    memset(&s, 0, sizeof s);
    s.src = RC_SRC_JOURNAL;
    s.in_window = true;
    strcpy(s.request_date, "2026-12-06");
    strcpy(s.acquirer, "100001");
    strcpy(s.terminal, "TERM0001");
    strcpy(s.stan, stan);
    strcpy(s.de7, "1206011530");
    strcpy(s.mti, "0200");
    strcpy(s.cls, "020");
    strcpy(s.issuer_id, "WALLET1");
    strcpy(s.issuer_stan, istan);
    strcpy(s.issuer_de7, "1206011531");
    strcpy(s.proc, "000000");
    s.amount = 2500;
    s.currency = 504;
    strcpy(s.outcome, outcome);
    strcpy(s.rc, strcmp(outcome, "approved") == 0 ? "00" : "51");
    strcpy(s.auth, strcmp(outcome, "approved") == 0 ? "123456" : "");
    strcpy(s.pan_masked, "489001******0012");
    s.rev = rev;
    return s;
}

static void book(struct rc_ctx *c, const char *istan, int64_t ledger, int64_t rev_ledger)
{
    char key[64];
    snprintf(key, sizeof key, "00000100001:TERM0001:%s:1206011531", istan);
    struct rc_iss *i = rc_iss_get(c, key);
    assert_non_null(i);
    i->in_slack = true;
    i->req = true;
    strcpy(i->rc, "00");
    i->wallet_id = 1;
    i->ledger += ledger;
    i->rev_ledger += rev_ledger;
}

static unsigned count(const struct rc_ctx *c, enum rc_check k, const char *problem)
{
    unsigned n = 0;
    for (size_t i = 0; i < c->nmm; i++)
        if (c->mm[i].check == k && (!problem || strstr(c->mm[i].problem, problem)))
            n++;
    return n;
}

static void test_rules(void **state)
{
    (void)state;
    struct rc_ctx c;
    /* Nothing at all: reconciled (and no sort of an empty, NULL array: UBSan caught that). */
    assert_int_equal(rc_ctx_init(&c), 0);
    assert_int_equal(rc_attribute(&c, NULL, NULL), 0);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(c.nmm, 0);
    assert_int_equal(c.nccy, 0);
    rc_ctx_free(&c);

    assert_int_equal(rc_ctx_init(&c), 0);
    struct rc_wallet *w = rc_wallet_get(&c, 1);
    assert_non_null(w);
    w->currency = 504;
    strcpy(w->pan_masked, "489001******0012");

    struct rc_sw s = journal_row("000001", "000101", "approved", RC_REV_NONE); /* matches */
    assert_true(rc_add_sw(&c, &s) >= 0);
    assert_true(c.sw[0].has_key);
    assert_string_equal(c.sw[0].key, "00000100001:TERM0001:000101:1206011531");
    book(&c, "000101", -2500, 0);
    s = journal_row("000002", "000102", "approved", RC_REV_ACKED); /* reversed on both sides */
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000102", -2500, 2500);
    s = journal_row("000003", "000103", "approved", RC_REV_NONE); /* issuer has nothing */
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = journal_row("000004", "000104", "approved", RC_REV_ACKED); /* issuer kept the debit */
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000104", -2500, 0);
    s = journal_row("000005", "000105", "timeout", RC_REV_PENDING); /* not yet acknowledged */
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000105", -2500, 0);
    s = journal_row("000006", "000106", "declined", RC_REV_NONE);
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000106", 0, 0);
    s = journal_row("000007", "000107", "lost", RC_REV_NONE); /* lost without its reversal */
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = journal_row("000008", "000108", "approved", RC_REV_NONE); /* no auth code */
    s.auth[0] = '\0';
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000108", -2500, 0);
    s = journal_row("000009", "000109", "timeout", RC_REV_NONE); /* in flight */
    s.src = RC_SRC_INFLIGHT;
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000199", -300, 0);   /* the switch never named it */
    book(&c, "000198", -300, 300); /* nor this one, but it moved nothing in the end */
    assert_int_equal(rc_attribute(&c, NULL, NULL), 2);
    assert_int_equal(rc_run(&c), 0);

    assert_int_equal(c.st.reached_issuer, 8);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, NULL), 3);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, "issuer does not have the approval's"), 1);
    assert_int_equal(
        count(&c, RC_CHK_JOURNAL_ISSUER, "issuer still has the effect of an approval the switch"),
        1);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, "reversal not yet acknowledged"), 1);
    assert_int_equal(count(&c, RC_CHK_JOURNAL, "lost request without a reversal"), 1);
    assert_int_equal(count(&c, RC_CHK_JOURNAL, "approval without an auth code"), 1);
    assert_int_equal(count(&c, RC_CHK_INFLIGHT, NULL), 1);
    assert_int_equal(count(&c, RC_CHK_ISSUER_UNKNOWN, "no record of"), 1);
    assert_int_equal(c.st.issuer_unknown_nomoney, 1);
    /* MAD: the switch says three approvals stand (000001, 000003, 000008: -7500); the issuer
     * booked 000001, 000008, the kept debit 000104, the pending 000105 and the unknown 000199:
     * the missing and the kept debits cancel out in the currency total, the unknown one does
     * not. Per wallet they do not cancel: wallet 1 holds the kept debit and the unknown one, and
     * the approval the issuer does not have has no wallet of its own (a line by masked PAN). */
    assert_int_equal(c.nccy, 1);
    assert_int_equal(c.ccy[0].currency, 504);
    assert_int_equal(c.ccy[0].m.sw, -7500);
    assert_int_equal(c.ccy[0].m.pending, -2500);
    assert_int_equal(c.ccy[0].m.iss - c.ccy[0].m.sw - c.ccy[0].m.pending, -300);
    assert_int_equal(rc_money_difference(&c.ccy[0].m), -300);
    assert_int_equal(count(&c, RC_CHK_TOTALS, "currency total"), 1);
    assert_int_equal(count(&c, RC_CHK_TOTALS, "wallet: issuer -10300, switch -5000, pending -2500"),
                     1);
    assert_int_equal(count(&c, RC_CHK_TOTALS, "wallet: issuer 0, switch -2500"), 1);
    assert_int_equal(count(&c, RC_CHK_TOTALS, NULL), 3);
    rc_ctx_free(&c);

    /* --allow-pending: a pending reversal is no mismatch, whichever side the issuer is on. */
    assert_int_equal(rc_ctx_init(&c), 0);
    c.allow_pending = true;
    s = journal_row("000005", "000105", "timeout", RC_REV_PENDING);
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000105", -2500, 0);
    s = journal_row("000006", "000106", "approved", RC_REV_PENDING);
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000106", -2500, 2500);
    s = journal_row("000007", "000107", "approved", RC_REV_PENDING); /* but not -1000 */
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000107", -1000, 0);
    rc_attribute(&c, NULL, NULL);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, NULL), 1);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, "neither the request's nor zero"), 1);
    assert_int_equal(count(&c, RC_CHK_TOTALS, NULL), 0);
    rc_ctx_free(&c);
}

/* Stand-in approvals (auth code S + 5 digits) stand at the issuer through their advices: an
 * acknowledged advice is checked like any approval, a missing, refused or pending one is named;
 * a stand-in reversed through the advice queue nets to zero; an advice with no journal row must
 * be reversed. */
static void test_stand_in_rules(void **state)
{
    (void)state;
    struct rc_ctx c;
    assert_int_equal(rc_ctx_init(&c), 0);
    struct rc_wallet *w = rc_wallet_get(&c, 1);
    assert_non_null(w);
    w->currency = 504;
    struct rc_sw s = journal_row("000011", "000111", "approved", RC_REV_NONE); /* advice acked */
    strcpy(s.auth, "S00011");
    s.advice = RC_REV_ACKED;
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000111", -2500, 0);
    s = journal_row("000012", "000112", "approved", RC_REV_NONE); /* no advice at all */
    strcpy(s.auth, "S00012");
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = journal_row("000013", "000113", "approved", RC_REV_NONE); /* refused: 14 */
    strcpy(s.auth, "S00013");
    s.advice = RC_REV_FAILED;
    strcpy(s.advice_rc, "14");
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = journal_row("000014", "000114", "approved", RC_REV_NONE); /* pending, not applied yet */
    strcpy(s.auth, "S00014");
    s.advice = RC_REV_PENDING;
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = journal_row("000015", "000115", "approved", RC_REV_ACKED); /* withdrawn: nets to zero */
    strcpy(s.auth, "S00015");
    s.advice = RC_REV_ACKED;
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000115", -2500, 2500);
    s = journal_row("000016", "000116", "approved", RC_REV_NONE); /* no journal row, reversed */
    s.src = RC_SRC_ADVICE;
    strcpy(s.auth, "S00016");
    s.advice = RC_REV_ACKED;
    s.rev = RC_REV_ACKED;
    strcpy(s.rev_reason, "recovery");
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000116", -2500, 2500);
    s = journal_row("000017", "000117", "approved", RC_REV_NONE); /* no journal row, applied */
    s.src = RC_SRC_ADVICE;
    strcpy(s.auth, "S00017");
    s.advice = RC_REV_ACKED;
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000117", -2500, 0);
    /* a stand-in after a timeout: the forwarded request (another issuer STAN) was applied and
     * reversed — nothing stands of it, and the journal row it shares is the stand-in's */
    s = journal_row("000011", "000118", "approved", RC_REV_ACKED);
    s.src = RC_SRC_REVERSAL;
    s.replaced = true;
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000118", -2500, 2500);
    assert_int_equal(rc_attribute(&c, NULL, NULL), 0);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(c.st.stand_ins, 5);
    assert_int_equal(c.st.orphan_advices, 2);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, "stand-in approval without an advice"), 1);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER,
                           "advice of a stand-in approval refused by the issuer "
                           "(last rc 14)"),
                     1);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, "advice not yet acknowledged"), 1);
    assert_int_equal(count(&c, RC_CHK_JOURNAL,
                           "advice of a stand-in approval the journal does "
                           "not have, not reversed"),
                     1);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, "did not approve"), 1); /* 000017 */
    /* 000012 (no advice) is also "issuer does not have the approval's effect" */
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, "issuer does not have"), 1);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, NULL), 5);
    assert_int_equal(c.st.replaced_reversals, 1);
    assert_int_equal(count(&c, RC_CHK_JOURNAL, "reversal queued for a request the journal"), 0);
    assert_int_equal(count(&c, RC_CHK_ISSUER_UNKNOWN, NULL), 0);
    /* The pending advice leaves its whole effect open (the issuer has yet to move -2500:
     * issuer - switch = +2500 pending), not as a difference. */
    assert_int_equal(c.ccy[0].m.pending, 2500);
    rc_ctx_free(&c);

    /* --allow-pending: a pending advice, applied or not yet, is no mismatch. */
    assert_int_equal(rc_ctx_init(&c), 0);
    c.allow_pending = true;
    s = journal_row("000021", "000121", "approved", RC_REV_NONE);
    strcpy(s.auth, "S00021");
    s.advice = RC_REV_PENDING;
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000121", -2500, 0);
    s = journal_row("000022", "000122", "approved", RC_REV_NONE);
    strcpy(s.auth, "S00022");
    s.advice = RC_REV_PENDING;
    assert_true(rc_add_sw(&c, &s) >= 0);
    rc_attribute(&c, NULL, NULL);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(c.nmm, 0);
    rc_ctx_free(&c);
}

/* A pre-auth's row (class 010) or a completion's (022) naming the pre-auth of STAN orig. */
static struct rc_sw preauth_row(const char *stan, const char *istan, const char *cls,
                                const char *orig, int64_t amount, enum rc_rev rev)
{
    struct rc_sw s = journal_row(stan, istan, "approved", rev);
    strcpy(s.cls, cls);
    strcpy(s.mti, strcmp(cls, "022") == 0 ? "0220" : "0100");
    s.amount = amount;
    s.created_us = 1796519731ull * 1000000ull; /* 2026-12-06 01:15:31 UTC: DE 7's date */
    if (orig) {
        strcpy(s.orig_stan, orig);
        strcpy(s.orig_de7, s.de7);
    }
    return s;
}

static void hold(struct rc_ctx *c, const char *istan, int64_t amount, const char *status)
{
    char key[64];
    book(c, istan, 0, 0);
    snprintf(key, sizeof key, "00000100001:TERM0001:%s:1206011531", istan);
    struct rc_iss *i = rc_iss_get(c, key);
    i->hold_amount = amount;
    strcpy(i->hold_status, status);
    i->hold_currency = 504;
}

/* Pre-authorization: a pre-auth and its increment captured by a standing completion stand for
 * nothing (their holds are 'captured' at the issuer), the completion for its capture; a
 * pre-auth whose completion was reversed stands as a hold again; an expired hold stands for
 * nothing; a captured hold whose completion the switch does not have is a mismatch. */
static void test_preauth_rules(void **state)
{
    (void)state;
    struct rc_ctx c;
    assert_int_equal(rc_ctx_init(&c), 0);
    struct rc_wallet *w = rc_wallet_get(&c, 1);
    w->currency = 504;
    strcpy(w->pan_masked, "489001******0012");
    struct rc_sw s = preauth_row("000011", "000111", "010", NULL, 10000, RC_REV_NONE);
    assert_true(rc_add_sw(&c, &s) >= 0);
    hold(&c, "000111", 10000, "captured");
    s = preauth_row("000012", "000112", "022", "000011", 7350, RC_REV_NONE);
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000112", -7350, 0);
    s = preauth_row("000013", "000113", "010", "000011", 5000, RC_REV_NONE); /* an increment */
    assert_true(rc_add_sw(&c, &s) >= 0);
    hold(&c, "000113", 5000, "captured");
    s = preauth_row("000021", "000121", "010", NULL, 10000, RC_REV_NONE);
    assert_true(rc_add_sw(&c, &s) >= 0);
    hold(&c, "000121", 10000, "active"); /* restored */
    s = preauth_row("000022", "000122", "022", "000021", 5000, RC_REV_ACKED);
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000122", -5000, 5000);
    s = preauth_row("000031", "000131", "010", NULL, 10000, RC_REV_NONE);
    assert_true(rc_add_sw(&c, &s) >= 0);
    hold(&c, "000131", 10000, "expired");
    rc_attribute(&c, NULL, NULL);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(c.nmm, 0);
    assert_int_equal(c.ccy[0].m.sw, -7350 - 10000);
    assert_int_equal(rc_money_difference(&c.ccy[0].m), 0);
    rc_ctx_free(&c);

    assert_int_equal(rc_ctx_init(&c), 0);
    s = preauth_row("000041", "000141", "010", NULL, 10000, RC_REV_NONE);
    assert_true(rc_add_sw(&c, &s) >= 0);
    hold(&c, "000141", 10000, "captured");
    rc_attribute(&c, NULL, NULL);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, "issuer does not have the approval's"), 1);
    rc_ctx_free(&c);
}

/* The record's lines against the switch's rows: the categories and the mismatches. */
static void test_record_rules(void **state)
{
    (void)state;
    static const char text[] =
        "# atlas-load-record 1\n"
        /* an approval the terminal holds, booked: fine */
        "req terminal=TERM0001 stan=000001 de7=1206011530 mti=0200 proc=000000 amount=2500 "
        "currency=504 pan=489001******0012 answered=yes rc=00 auth=123456 rev=no\n"
        /* an approval the switch reversed behind the terminal's back */
        "req terminal=TERM0001 stan=000002 de7=1206011530 mti=0200 proc=000000 amount=2500 "
        "currency=504 pan=489001******0012 answered=yes rc=00 auth=123456 rev=no\n"
        /* unanswered, reversal abandoned */
        "req terminal=TERM0001 stan=000003 de7=1206011530 mti=0200 proc=000000 amount=2500 "
        "currency=504 pan=489001******0012 answered=no rev=yes rev_stan=000010 "
        "rev_de7=1206011540 rev_tries=3 rev_rc=none\n"
        /* an auth code that differs */
        "req terminal=TERM0001 stan=000004 de7=1206011530 mti=0200 proc=000000 amount=2500 "
        "currency=504 pan=489001******0012 answered=yes rc=00 auth=654321 rev=no\n"
        /* an unanswered balance inquiry: nothing to reverse */
        "req terminal=TERM0001 stan=000005 de7=1206011530 mti=0100 proc=300000 amount=- "
        "currency=504 pan=489001******0012 answered=no rev=no\n";
    struct rec_file f;
    char err[256];
    assert_int_equal(rec_parse_text(text, strlen(text), &f, err, sizeof err), 0);
    struct rc_ctx c;
    assert_int_equal(rc_ctx_init(&c), 0);
    c.record = &f;
    c.record_now_us = 1796558400ull * 1000000ull; /* 2026-12-06T12:00:00Z */
    struct rc_wallet *w = rc_wallet_get(&c, 1);
    w->currency = 504;
    struct rc_sw s = journal_row("000001", "000101", "approved", RC_REV_NONE);
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000101", -2500, 0);
    s = journal_row("000002", "000102", "approved", RC_REV_ACKED);
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000102", -2500, 2500);
    s = journal_row("000003", "000103", "timeout", RC_REV_ACKED);
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000103", -2500, 2500);
    s = journal_row("000004", "000104", "approved", RC_REV_NONE);
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000104", -2500, 0);
    rc_attribute(&c, NULL, NULL);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(c.st.rec_lines, 5);
    assert_int_equal(c.st.rec_approved_held, 3);
    assert_int_equal(c.st.rec_unanswered_gave_up, 1);
    assert_int_equal(c.st.rec_unanswered_nothing, 1);
    assert_int_equal(count(&c, RC_CHK_RECORD, "terminal holds an approval the issuer reversed"), 1);
    assert_int_equal(count(&c, RC_CHK_RECORD, "terminal gave up on a reversal"), 1);
    assert_int_equal(count(&c, RC_CHK_RECORD, "auth code differs: terminal 654321, journal 123456"),
                     1);
    /* The terminals hold three approvals (-7500); the issuer kept two (-5000). */
    assert_int_equal(count(&c, RC_CHK_RECORD, "terminals hold -7500, issuer -5000"), 1);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, NULL), 0);
    rc_ctx_free(&c);
    rec_file_free(&f);
}

/* A transfer of 10.00 MAD (fee 1.00) from TERM0001's sender (stan) to a XOF wallet, in state,
 * its sender journaled sender_outcome (NULL: no row), both legs journaled approvals with no
 * reversal. */
static struct rc_xfer xfer(long long id, const char *stan, const char *state,
                           const char *sender_outcome)
{
    struct rc_xfer x;
    memset(&x, 0, sizeof x);
    x.id = id;
    x.in_window = true;
    strcpy(x.state, state);
    strcpy(x.request_date, "2026-12-06");
    strcpy(x.acquirer, "100001");
    strcpy(x.terminal, "TERM0001");
    strcpy(x.stan, stan);
    strcpy(x.de7, "1206011530");
    strcpy(x.sender_issuer, "WALLET1");
    strcpy(x.recipient_issuer, "WALLET2");
    strcpy(x.pan_masked, "489001******0012");
    strcpy(x.to_masked, "489002******0029");
    x.amount = 1000;
    x.fee = 100;
    x.currency = 504;
    x.recipient_amount = 606;
    if (sender_outcome) {
        x.sender_row = true;
        strcpy(x.sender_outcome, sender_outcome);
        strcpy(x.sender_rc, strcmp(sender_outcome, "approved") == 0 ? "00" : "96");
    }
    struct rc_leg *legs[] = { &x.aft, &x.oct };
    for (int i = 0; i < 2; i++) {
        struct rc_leg *g = legs[i];
        snprintf(g->terminal, sizeof g->terminal, "%s", i == 0 ? "XA000000" : "XO000000");
        at_put_digits(g->stan, 6, (uint64_t)id);
        g->row = true;
        strcpy(g->outcome, "approved");
        strcpy(g->rc, "00");
        at_put_digits(g->issuer_stan, 6, (uint64_t)(500 + id * 2 + i));
        strcpy(g->issuer_de7, "1206011531");
        g->amount = i == 0 ? 1100 : 1000;
        g->rev = RC_REV_NONE;
    }
    return x;
}

/* The sender's journal row of a transfer: processing code 40, never at an issuer. */
static struct rc_sw sender_row(const char *stan, const char *outcome)
{
    struct rc_sw s = journal_row(stan, "", outcome, RC_REV_NONE);
    strcpy(s.proc, "400000");
    s.issuer_stan[0] = s.issuer_de7[0] = '\0';
    s.amount = 1000;
    if (strcmp(outcome, "lost") == 0)
        strcpy(s.rc, "96");
    return s;
}

/* The mismatch of check k whose problem contains want, or NULL. */
static const struct rc_mismatch *find_mm(const struct rc_ctx *c, enum rc_check k, const char *want)
{
    for (size_t i = 0; i < c->nmm; i++)
        if (c->mm[i].check == k && strstr(c->mm[i].problem, want))
            return &c->mm[i];
    return NULL;
}

/* Check 5 on hand-made transfers, and check 4 leaving their senders' rows to it. */
static void test_transfer_rules(void **state)
{
    (void)state;
    struct rc_ctx c;
    assert_int_equal(rc_ctx_init(&c), 0);
    struct rc_xfer x;
    struct rc_sw s;
    /* 1: completed, its sender approved, both legs stand: fine. */
    x = xfer(1, "000001", "completed", "approved");
    assert_true(rc_add_xfer(&c, &x) >= 0);
    s = sender_row("000001", "approved");
    assert_true(rc_add_sw(&c, &s) >= 0);
    /* 2: completed, but its OCT leg was reversed behind the sender's back. */
    x = xfer(2, "000002", "completed", "approved");
    x.oct.rev = RC_REV_ACKED;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    /* 3: the sender approved, the AFT leg not journaled. */
    x = xfer(3, "000003", "completed", "approved");
    x.aft.row = false;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    /* 4: failed (its sender declined), the AFT approved and never reversed. */
    x = xfer(4, "000004", "failed", "declined");
    x.oct.row = false;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    /* 5: failed after a restart (sender 'lost'), the AFT's reversal parked failed; the OCT's
     * acknowledged. */
    x = xfer(5, "000005", "failed", "lost");
    x.aft.rev = RC_REV_FAILED;
    strcpy(x.aft.rev_rc, "05");
    x.oct.rev = RC_REV_ACKED;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    s = sender_row("000005", "lost");
    assert_true(rc_add_sw(&c, &s) >= 0);
    /* 6: no sender row, the AFT journaled lost, its reversal pending; the OCT never left. */
    x = xfer(6, "000006", "failed", NULL);
    strcpy(x.aft.outcome, "lost");
    x.aft.rev = RC_REV_PENDING;
    x.oct.row = false;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    /* 7: still at its AFT. */
    x = xfer(7, "000007", "aft", NULL);
    x.oct.row = false;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    /* 8: an AFT that did not take the fee. */
    x = xfer(8, "000008", "completed", "approved");
    x.aft.amount = 1000;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    /* 9: reversed by its terminal (approved sender, a 0400 acknowledged): both legs back. */
    x = xfer(9, "000009", "reversed", "approved");
    x.term_rev_acked = true;
    x.aft.rev = x.oct.rev = RC_REV_ACKED;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    /* 10: the terminal's reversal acknowledged, the transfer still completed. */
    x = xfer(10, "000010", "completed", "approved");
    x.term_rev_acked = true;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    /* 11: completed while its sender was answered 96. */
    x = xfer(11, "000011", "completed", "error");
    assert_true(rc_add_xfer(&c, &x) >= 0);
    /* 12: outside the window, broken: only a lookup, not checked. */
    x = xfer(12, "000012", "failed", "declined");
    x.in_window = false;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    /* 13: failed at the OCT: the AFT reversed, the OCT declined. Fine. */
    x = xfer(13, "000013", "failed", "declined");
    x.aft.rev = RC_REV_ACKED;
    strcpy(x.oct.outcome, "declined");
    strcpy(x.oct.rc, "05");
    assert_true(rc_add_xfer(&c, &x) >= 0);
    /* Senders' rows without a transfer row, and a plain approval no issuer saw. */
    s = sender_row("000020", "approved");
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = sender_row("000021", "lost");
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = journal_row("000022", "", "approved", RC_REV_NONE);
    assert_true(rc_add_sw(&c, &s) >= 0);
    rc_attribute(&c, NULL, NULL);
    assert_int_equal(rc_run(&c), 0);

    assert_int_equal(c.st.xfers, 12);
    assert_int_equal(c.st.checked[RC_CHK_TRANSFERS], 14);
    assert_int_equal(c.st.transfer_senders, 4);
    const struct rc_mismatch *m =
        find_mm(&c, RC_CHK_TRANSFERS, "sender approved but the OCT leg was reversed");
    assert_non_null(m);
    assert_int_equal(m->transfer_id, 2);
    assert_string_equal(m->leg, "oct");
    assert_string_equal(m->terminal, "TERM0001");
    assert_string_equal(m->stan, "000002");
    assert_string_equal(m->de7, "1206011530");
    assert_string_equal(m->pan, "489001******0012");
    assert_string_equal(m->issuer_stan, "000505");
    assert_int_equal(m->rev, RC_REV_ACKED);
    m = find_mm(&c, RC_CHK_TRANSFERS, "sender approved but the AFT leg is not journaled");
    assert_true(m && m->transfer_id == 3 && strcmp(m->leg, "aft") == 0);
    m = find_mm(&c, RC_CHK_TRANSFERS, "AFT leg approved but never reversed");
    assert_true(m && m->transfer_id == 4 && strcmp(m->outcome, "declined") == 0);
    m = find_mm(&c, RC_CHK_TRANSFERS, "AFT leg reversal failed: money still moved (last rc 05)");
    assert_true(m && m->transfer_id == 5 && strcmp(m->outcome, "lost") == 0);
    m = find_mm(&c, RC_CHK_TRANSFERS, "AFT leg reversal not yet acknowledged");
    assert_true(m && m->transfer_id == 6 && strcmp(m->outcome, "no-journal-row") == 0);
    m = find_mm(&c, RC_CHK_TRANSFERS, "transfer unfinished (state aft)");
    assert_true(m && m->transfer_id == 7 && m->leg[0] == '\0');
    m = find_mm(&c, RC_CHK_TRANSFERS,
                "AFT amount 1000 is not the transfer's amount + fee (1000 + 100)");
    assert_true(m && m->transfer_id == 8);
    m = find_mm(&c, RC_CHK_TRANSFERS,
                "terminal reversal acknowledged but the transfer was not reversed");
    assert_true(m && m->transfer_id == 10);
    m = find_mm(&c, RC_CHK_TRANSFERS,
                "transfer completed but the sender's request is not journaled an approval");
    assert_true(m && m->transfer_id == 11);
    assert_int_equal(
        count(&c, RC_CHK_TRANSFERS, "sender journaled approved but the switch has no transfer"), 1);
    assert_int_equal(
        count(&c, RC_CHK_TRANSFERS, "sender journaled lost but the switch has no transfer row"), 1);
    /* 11's legs stand for a sender who does not hold the transfer. */
    assert_int_equal(count(&c, RC_CHK_TRANSFERS, "leg approved but never reversed"), 3);
    /* Exactly those: 1, 9, 12 and 13 are fine. */
    assert_int_equal(count(&c, RC_CHK_TRANSFERS, NULL), 13);
    for (size_t i = 0; i < c.nmm; i++)
        assert_true(c.mm[i].transfer_id < 0 ||
                    (c.mm[i].transfer_id != 1 && c.mm[i].transfer_id != 9 &&
                     c.mm[i].transfer_id != 12 && c.mm[i].transfer_id != 13));
    /* Check 4 leaves the senders to check 5, and keeps its rule for any other request. */
    assert_int_equal(count(&c, RC_CHK_JOURNAL, NULL), 1);
    m = find_mm(&c, RC_CHK_JOURNAL, "approval that never reached an issuer");
    assert_true(m && strcmp(m->stan, "000022") == 0);
    rc_ctx_free(&c);

    /* --allow-pending: a leg's pending reversal and an unfinished transfer are not mismatches;
     * a failed leg reversal still is. */
    assert_int_equal(rc_ctx_init(&c), 0);
    c.allow_pending = true;
    x = xfer(6, "000006", "failed", NULL);
    strcpy(x.aft.outcome, "lost");
    x.aft.rev = RC_REV_PENDING;
    x.oct.row = false;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    x = xfer(7, "000007", "started", NULL);
    x.aft.row = x.oct.row = false;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    x = xfer(5, "000005", "failed", "lost");
    x.aft.rev = RC_REV_FAILED;
    x.oct.rev = RC_REV_ACKED;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(c.st.xfer_unfinished, 1);
    assert_int_equal(c.st.xfer_leg_rev_pending, 1);
    assert_int_equal(count(&c, RC_CHK_TRANSFERS, NULL), 1);
    assert_int_equal(count(&c, RC_CHK_TRANSFERS, "AFT leg reversal failed"), 1);
    rc_ctx_free(&c);

    /* A terminal's reversal of a transfer, acknowledged: its original (the sender's row) has no
     * reversal of its own, its legs do — not check 4's "no reversal". */
    assert_int_equal(rc_ctx_init(&c), 0);
    s = sender_row("000009", "approved");
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = journal_row("000030", "", "approved", RC_REV_NONE);
    strcpy(s.mti, "0400");
    strcpy(s.cls, "040");
    strcpy(s.proc, "400000");
    s.issuer_stan[0] = s.issuer_de7[0] = '\0';
    strcpy(s.orig_stan, "000009");
    strcpy(s.orig_de7, "1206011530");
    s.created_us = 1796558400ull * 1000000ull;
    assert_true(rc_add_sw(&c, &s) >= 0);
    x = xfer(9, "000009", "reversed", "approved");
    x.term_rev_acked = true;
    x.aft.rev = x.oct.rev = RC_REV_ACKED;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(c.st.terminal_reversals, 1);
    assert_int_equal(c.nmm, 0);
    /* The same with a purchase as the original: check 4 reports it. */
    c.sw[0].proc[0] = '0';
    c.sw[0].proc[1] = '0';
    c.nmm = 0;
    memset(&c.st, 0, sizeof c.st);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(count(&c, RC_CHK_JOURNAL, "its approved original has no reversal"), 1);
    rc_ctx_free(&c);
}

/* A converted request (DE 6 in DE 51, migration 0009; fetch.c reads it so): the issuer moves
 * DE 6, not DE 4, and the totals are in DE 51. */
static void test_converted_request(void **state)
{
    (void)state;
    struct rc_ctx c;
    assert_int_equal(rc_ctx_init(&c), 0);
    struct rc_wallet *w = rc_wallet_get(&c, 1);
    w->currency = 952;
    struct rc_sw s = journal_row("000001", "000101", "approved", RC_REV_NONE);
    strcpy(s.proc, "260000"); /* an OCT of 10.00 MAD credited as 606 XOF: the loader gives */
    s.amount = 606;           /* what the issuer moves, DE 6 in DE 51 */
    s.currency = 952;
    s.converted = true;
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000101", 606, 0);
    rc_attribute(&c, NULL, NULL);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(c.nmm, 0);
    assert_int_equal(c.nccy, 1);
    assert_int_equal(c.ccy[0].currency, 952);
    assert_int_equal(c.ccy[0].m.sw, 606);
    rc_ctx_free(&c);
    /* The issuer credited DE 4's figure instead: reported. */
    assert_int_equal(rc_ctx_init(&c), 0);
    w = rc_wallet_get(&c, 1);
    w->currency = 952;
    assert_true(rc_add_sw(&c, &s) >= 0);
    book(&c, "000101", 1000, 0);
    rc_attribute(&c, NULL, NULL);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(count(&c, RC_CHK_JOURNAL_ISSUER, "issuer's effect differs"), 1);
    rc_ctx_free(&c);
}

/* A version 2 record's transfer lines against the journal and the transfers. */
static void test_record_transfer_rules(void **state)
{
    (void)state;
    static const char text[] =
        "# atlas-load-record 2\n"
        /* approved, as the switch has it: fine */
        "req terminal=TERM0001 stan=000001 de7=1206011530 mti=0200 proc=400000 amount=1000 "
        "currency=504 pan=489001******0012 to=489002******0029 to_currency=952 answered=yes "
        "rc=00 auth=123456 de6=606 de51=952 de28=D00000100 rev=no\n"
        /* approved, but the journal says declined */
        "req terminal=TERM0001 stan=000002 de7=1206011530 mti=0200 proc=400000 amount=1000 "
        "currency=504 pan=489001******0012 to=489002******0029 to_currency=952 answered=yes "
        "rc=00 auth=123456 de6=606 de51=952 de28=D00000100 rev=no\n"
        /* approved, the transfer reversed by the switch, and another fee */
        "req terminal=TERM0001 stan=000003 de7=1206011530 mti=0200 proc=400000 amount=1000 "
        "currency=504 pan=489001******0012 to=489002******0029 to_currency=952 answered=yes "
        "rc=00 auth=123456 de6=606 de51=952 de28=D00000200 rev=no\n"
        /* declined 05 at the OCT: fine */
        "req terminal=TERM0001 stan=000004 de7=1206011530 mti=0200 proc=400000 amount=1000 "
        "currency=504 pan=489001******0012 to=489002******0029 to_currency=952 answered=yes "
        "rc=05 auth=- de6=- de51=- de28=- rev=no\n"
        /* unanswered, reversed as a whole (0400 journaled): fine */
        "req terminal=TERM0001 stan=000005 de7=1206011530 mti=0200 proc=400000 amount=1000 "
        "currency=504 pan=489001******0012 to=489002******0029 to_currency=952 answered=no "
        "rev=yes rev_stan=000006 rev_de7=1206011540 rev_tries=1 rev_rc=00\n"
        /* declined, yet the transfer completed */
        "req terminal=TERM0001 stan=000007 de7=1206011530 mti=0200 proc=400000 amount=1000 "
        "currency=504 pan=489001******0012 to=489002******0029 to_currency=952 answered=yes "
        "rc=91 auth=- de6=- de51=- de28=- rev=no\n";
    struct rec_file f;
    char err[256];
    assert_int_equal(rec_parse_text(text, strlen(text), &f, err, sizeof err), 0);
    struct rc_ctx c;
    assert_int_equal(rc_ctx_init(&c), 0);
    c.record = &f;
    c.record_now_us = 1796558400ull * 1000000ull; /* 2026-12-06T12:00:00Z */
    struct rc_sw s = sender_row("000001", "approved");
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = sender_row("000002", "declined");
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = sender_row("000003", "approved");
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = sender_row("000004", "declined");
    strcpy(s.rc, "05");
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = sender_row("000005", "approved");
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = journal_row("000006", "", "approved", RC_REV_NONE);
    strcpy(s.mti, "0400");
    strcpy(s.cls, "040");
    s.de7[0] = '\0';
    strcpy(s.de7, "1206011540");
    s.issuer_stan[0] = s.issuer_de7[0] = '\0';
    strcpy(s.orig_stan, "000005");
    strcpy(s.orig_de7, "1206011530");
    s.created_us = c.record_now_us;
    assert_true(rc_add_sw(&c, &s) >= 0);
    s = sender_row("000007", "declined");
    strcpy(s.rc, "91");
    assert_true(rc_add_sw(&c, &s) >= 0);
    struct rc_xfer x = xfer(1, "000001", "completed", "approved");
    assert_true(rc_add_xfer(&c, &x) >= 0);
    x = xfer(2, "000002", "failed", "declined");
    x.aft.rev = RC_REV_ACKED;
    x.oct.row = false;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    x = xfer(3, "000003", "reversed", "approved");
    x.aft.rev = x.oct.rev = RC_REV_ACKED;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    x = xfer(4, "000004", "failed", "declined");
    x.aft.rev = RC_REV_ACKED;
    strcpy(x.oct.outcome, "declined");
    assert_true(rc_add_xfer(&c, &x) >= 0);
    x = xfer(5, "000005", "reversed", "approved");
    x.term_rev_acked = true;
    x.aft.rev = x.oct.rev = RC_REV_ACKED;
    assert_true(rc_add_xfer(&c, &x) >= 0);
    x = xfer(7, "000007", "completed", "declined");
    assert_true(rc_add_xfer(&c, &x) >= 0);
    rc_attribute(&c, NULL, NULL);
    assert_int_equal(rc_run(&c), 0);
    assert_int_equal(c.st.rec_lines, 6);
    assert_int_equal(c.st.rec_not_journaled, 0);
    assert_int_equal(count(&c, RC_CHK_RECORD,
                           "terminal holds an approval the journal records as "
                           "declined"),
                     1);
    const struct rc_mismatch *m =
        find_mm(&c, RC_CHK_RECORD, "terminal holds a transfer the switch reversed");
    assert_true(m && m->transfer_id == 3 && m->record_line == 4);
    m = find_mm(&c, RC_CHK_RECORD, "fee differs: terminal 200, transfer 100");
    assert_true(m && m->transfer_id == 3);
    m = find_mm(&c, RC_CHK_RECORD, "a transfer the terminal saw declined (rc 91) completed");
    assert_true(m && m->transfer_id == 7 && m->record_line == 7);
    m = find_mm(&c, RC_CHK_RECORD, "terminal holds a transfer that failed");
    assert_true(m && m->transfer_id == 2);
    assert_int_equal(count(&c, RC_CHK_RECORD, NULL), 5);
    /* Transfer 7 is also the transfers check's: completed, its sender not approved, its two
     * legs standing. */
    assert_int_equal(count(&c, RC_CHK_TRANSFERS, NULL), 3);
    assert_int_equal(count(&c, RC_CHK_JOURNAL, NULL), 0);
    assert_int_equal(count(&c, RC_CHK_TOTALS, NULL), 0);
    rc_ctx_free(&c);
    rec_file_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_lines),
        cmocka_unit_test(test_writer_roundtrip),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_headers_and_torn_tail),
        cmocka_unit_test(test_full_effect),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_preauth_rules),
        cmocka_unit_test(test_stand_in_rules),
        cmocka_unit_test(test_record_rules),
        cmocka_unit_test(test_transfer_lines),
        cmocka_unit_test(test_transfer_lines_malformed),
        cmocka_unit_test(test_transfer_rules),
        cmocka_unit_test(test_converted_request),
        cmocka_unit_test(test_record_transfer_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
