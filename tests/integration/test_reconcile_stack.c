/* atlas-reconcile against the real stack (sw_stack: PostgreSQL, hsm-sim, issuer-sim, switchd
 * as processes on loopback). Real traffic of every kind, then a recorded `acquirer-sim load`,
 * must reconcile (exit 0). Then each kind of break is made by hand — the switch's tables or the
 * issuer's tampered with, a reversal held up by a stalled issuer, a record that says what the
 * terminals did not get — and atlas-reconcile must exit 1 naming the right check and problem;
 * each test undoes its break and the next run is clean again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;

/* The recorded loads run on load terminals (LOAD0001...) of their own: a terminal has one STAN
 * counter, and TERM0001 is the tests' own (stack_rc) — sharing it, the load's first request once
 * had the identity (terminal, STAN, DE 7) of a purchase sent the same second, was refused 94,
 * and its record line was then matched with that purchase. */
static int setup(void **state)
{
    struct stack_opts o = {
        .issuer = true, .issuer_timeout_ms = 1500, .wallets = 200, .fx_rates = "fx/demo-rates.csv"
    };
    if (stack_setup(state, &S, &o) != 0)
        return -1;
    return stack_seed_load_terminals(&S, 4);
}

/* ------------------------------------------------------------------ helpers */

/* Runs the SQL that fmt and its arguments make on the stack's database. */
static void sql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sql(const char *fmt, ...)
{
    char q[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof q);
    assert_int_equal(stack_exec(&S, q), 0);
}

/* Waits until the switch owes nothing: no reversal pending, nothing in flight. */
static void settle(void)
{
    assert_int_equal(stack_settle(&S, 20000), 0);
}

/* Runs atlas-reconcile on the stack's database with extra (NULL-terminated) and --json; returns
 * its exit status, *out the parsed report (exit 0 or 1). On an unexpected status the text report
 * is printed to help whoever reads the failure. */
static int reconcile(json_t **out, const char *const extra[])
{
    static unsigned seq;
    char path[400];
    snprintf(path, sizeof path, "%s/reconcile.%u.json", S.dir, seq++);
    const char *args[32];
    size_t n = 0;
    args[n++] = "--json";
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    int code = stack_reconcile(&S, path, args);
    *out = NULL;
    if (code == 0 || code == 1) {
        json_error_t je;
        *out = json_load_file(path, 0, &je);
        if (!*out)
            fprintf(stderr, "report %s: %s (line %d)\n", path, je.text, je.line);
        assert_non_null(*out);
    } else {
        fprintf(stderr, "atlas-reconcile exited %d, see %s\n", code, path);
    }
    return code;
}

/* How many mismatches of check whose problem contains want (NULL: any). */
static size_t mismatches(json_t *o, const char *check, const char *want)
{
    size_t n = 0, i;
    json_t *m;
    json_array_foreach(json_object_get(o, "mismatches"), i, m)
    {
        const char *c = json_string_value(json_object_get(m, "check"));
        const char *p = json_string_value(json_object_get(m, "problem"));
        if ((!check || (c && strcmp(c, check) == 0)) && (!want || (p && strstr(p, want))))
            n++;
    }
    return n;
}

static void dump(json_t *o)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(o, "mismatches"), i, m)
    {
        char *s = json_dumps(m, JSON_COMPACT);
        fprintf(stderr, "  %s\n", s ? s : "?");
        free(s);
    }
}

static long long stat_of(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(json_object_get(o, "stats"), k));
}

/* Prints the stats named in keys (NULL-terminated) after label, for whoever reads the run. */
static void print_stats(const char *label, json_t *o, const char *const keys[])
{
    char line[512];
    size_t n = (size_t)snprintf(line, sizeof line, "%s:", label);
    for (size_t i = 0; keys[i] && n < sizeof line; i++)
        n += (size_t)snprintf(line + n, sizeof line - n, " %s=%lld", keys[i], stat_of(o, keys[i]));
    print_message("%s\n", line);
}

/* The one mismatch of check with problem want; its fields for further checks. */
static json_t *the_mismatch(json_t *o, const char *check, const char *want)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(o, "mismatches"), i, m)
    {
        const char *c = json_string_value(json_object_get(m, "check"));
        const char *p = json_string_value(json_object_get(m, "problem"));
        if (c && strcmp(c, check) == 0 && p && strstr(p, want))
            return m;
    }
    dump(o);
    fail_msg("no %s mismatch '%s'", check, want);
    return NULL;
}

static const char *field(json_t *m, const char *k)
{
    const char *v = json_string_value(json_object_get(m, k));
    return v ? v : "";
}

static long long field_int(json_t *m, const char *k)
{
    return (long long)json_integer_value(json_object_get(m, k));
}

/* After a break was made: atlas-reconcile with extra must exit 1 with a mismatch of check whose
 * problem says want. *o is the report (the caller frees it); returns that mismatch. */
static json_t *broken(json_t **o, const char *const extra[], const char *check, const char *want)
{
    assert_int_equal(reconcile(o, extra), 1);
    return the_mismatch(*o, check, want);
}

/* The string fields of mismatch m are as kv says: key, value, ..., NULL. */
static void expect_fields(json_t *m, const char *const kv[])
{
    for (size_t i = 0; kv[i]; i += 2)
        assert_string_equal(field(m, kv[i]), kv[i + 1]);
}

/* Writes a load record (the harness's format) of the lines in body to <dir>/name; its path in
 * path, and the extra arguments that name it in extra. */
static void write_record(const char *name, const char *body, char path[400], const char *extra[3])
{
    char text[1100];
    snprintf(path, 400, "%s/%s", S.dir, name);
    snprintf(text, sizeof text, "# atlas-load-record 1\n%s", body);
    assert_int_equal(ts_write_file(path, text), 0);
    extra[0] = "--record";
    extra[1] = path;
    extra[2] = NULL;
}

/* atlas-reconcile with extra must find nothing (the mismatches printed when it does); its
 * report. */
static json_t *reconciled(const char *const extra[])
{
    json_t *o;
    int code = reconcile(&o, extra);
    if (code != 0 && o)
        dump(o);
    assert_int_equal(code, 0);
    assert_true(json_is_true(json_object_get(o, "reconciled")));
    return o;
}

static void expect_clean(const char *const extra[])
{
    json_decref(reconciled(extra));
}

/* reconciled() with the record of the load run l; prints the stats named in keys
 * (NULL-terminated) after label, for whoever reads the run. */
static json_t *reconciled_with(const struct stack_load *l, const char *label,
                               const char *const keys[])
{
    const char *extra[] = { "--record", l->record, NULL };
    json_t *o = reconciled(extra);
    print_stats(label, o, keys);
    return o;
}

/* Sends x on term and asserts the answer's DE 39. */
static void send_expect(const char *term, const struct sim_txn *x, const char *rc,
                        struct sim_resp *r, struct sim_sent *sent)
{
    assert_string_equal(stack_rc(&S, term, x, r, sent), rc);
}

/* An approved purchase on TERM0001 with the MAD card; its identity and auth code. */
static void approved_purchase(uint64_t amount, struct sim_sent *sent, struct sim_resp *r)
{
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", amount);
    send_expect("TERM0001", &x, "00", r, sent);
}

/* DE 7 and the journal date of now, as the switch would write them. */
static void now_de7(char de7[11], char date[11])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(de7, 11, "%m%d%H%M%S", &tm);
    strftime(date, 11, "%Y-%m-%d", &tm);
}

/* A recorded load of 6 s on 4 connections (tag names its files) with a fault made 2 s into it
 * and undone hold_ms later: requests time out after 1 s, reversals are owed for 60 s, any error
 * rate is accepted. Returns when the harness has exited 0. */
static void load_under_fault(struct stack_load *l, const char *tag, void (*fault)(void),
                             unsigned hold_ms, void (*undo)(void))
{
    struct stack_load_opts o = stack_load_under_faults(tag);
    o.load_terminals = true;
    assert_int_equal(stack_load_start(&S, &o, l), 0);
    usleep(2000000);
    fault();
    usleep(hold_ms * 1000);
    undo();
    assert_int_equal(stack_load_wait(l, -1), 0);
}

static void stall_switch(void)
{
    assert_int_equal(stack_kill(S.sw, SIGSTOP), 0);
}

static void kill_and_restart_switch(void)
{
    assert_int_not_equal(stack_restart_switch(&S, SIGKILL), -1);
}

static void cut_switch_db(void)
{
    assert_int_equal(stack_switch_db(&S, false), 0);
}

static void restore_switch_db(void)
{
    assert_int_equal(stack_switch_db(&S, true), 0);
}

static void stall_issuer(void)
{
    assert_int_equal(stack_kill(S.issuer, SIGSTOP), 0);
}

static void wake_issuer(void)
{
    assert_int_equal(stack_kill(S.issuer, SIGCONT), 0);
}

/* ------------------------------------------------------------------ clean runs */

/* Every kind of request the stack handles, then a reconciliation without a mismatch. */
static void test_real_traffic_reconciles(void **state)
{
    (void)state;
    const char *mad = "4890010000000012";
    static const struct {
        const char *term, *pan;
        enum sim_type type;
        uint64_t amount;
        const char *rc;
    } sends[] = {
        { "TERM0001", "4890010000000012", SIM_T_PURCHASE, 1250, "00" },
        { "TERM0003", "4890040000000043", SIM_T_CASH, 5000, "00" },
        { "TERM0001", "4890010000000012", SIM_T_REFUND, 300, "00" },
        { "TERM0002", "4890020000000029", SIM_T_OCT, 700, "00" },
        { "TERM0001", "4890010000000012", SIM_T_BALANCE, 0, "00" },
        { "TERM0001", "4890010000000012", SIM_T_AUTH, 900, "00" },      /* a hold */
        { "TERM0001", "4890030000000036", SIM_T_PURCHASE, 5000, "51" }, /* 1,000 XAF */
    };
    struct sim_txn x, rev;
    struct sim_sent sent;
    for (size_t i = 0; i < sizeof sends / sizeof sends[0]; i++) {
        stack_card_txn(&x, sends[i].type, sends[i].pan, sends[i].amount);
        send_expect(sends[i].term, &x, sends[i].rc, NULL, NULL);
    }
    stack_card_txn(&x, SIM_T_PURCHASE, mad, 100);
    snprintf(x.pin, sizeof x.pin, "9999"); /* 55 */
    send_expect("TERM0001", &x, "55", NULL, NULL);
    stack_card_txn(&x, SIM_T_PURCHASE, mad, 100);
    x.bad_mac = true; /* 63: refused by the switch, never at the issuer */
    send_expect("TERM0001", &x, "63", NULL, NULL);
    stack_card_txn(&x, SIM_T_PURCHASE, mad, 444); /* approved, then reversed by the terminal */
    send_expect("TERM0001", &x, "00", NULL, &sent);
    stack_reversal_of(&rev, mad, 444, &sent);
    send_expect("TERM0001", &rev, "00", NULL, NULL);
    settle();

    json_t *o = reconciled(NULL);
    assert_true(stat_of(o, "approvals") >= 7);
    assert_true(stat_of(o, "reached_issuer") >= 9);
    assert_true(stat_of(o, "terminal_reversals") >= 1);
    assert_true(stat_of(o, "rev_acked") >= 1);
    assert_true(stat_of(o, "refused_by_switch") >= 1);
    /* Every currency of the demo moved, and each total is zero difference. */
    size_t i;
    json_t *c;
    int seen = 0;
    json_array_foreach(json_object_get(o, "currencies"), i, c)
    {
        assert_int_equal(field_int(c, "difference"), 0);
        seen++;
    }
    assert_true(seen >= 3);
    json_decref(o);
}

/* A recorded load (purchases, cash-outs, refunds, balance inquiries, load-mix reversals)
 * reconciles, its record included: the terminals' view equals the journal and the issuer. */
static void test_recorded_load_reconciles(void **state)
{
    (void)state;
    const struct stack_load_opts lo = { .tag = "load",
                                        .rate = 100,
                                        .seconds = 3,
                                        .connections = 2,
                                        .record = true,
                                        .load_terminals = true };
    struct stack_load l;
    assert_int_equal(stack_load_run(&S, &lo, &l), 0);
    settle();

    json_t *r = json_load_file(l.report, 0, NULL);
    assert_non_null(r);
    long long lines = field_int(r, "record_lines");
    json_decref(r);
    assert_true(lines >= 300);

    json_t *o = reconciled_with(
        &l, "record",
        (const char *const[]){ "rec_lines", "rec_approved_held", "rec_approved_reversed",
                               "rec_reversal_acked", "rec_declined", NULL });
    assert_int_equal(stat_of(o, "rec_lines"), lines);
    assert_true(stat_of(o, "rec_approved_held") > 0);
    assert_int_equal(stat_of(o, "rec_not_journaled"), 0);
    json_decref(o);
}

/* A recorded load with transfers among its wallets (record version 2): the transfer lines
 * reconcile with their sender's journal rows and their transfer rows, and every transfer's legs
 * with the issuer (the one issuer-sim holds every BIN, so --record and the legs' money meet in
 * one ledger). */
static void test_recorded_load_with_transfers_reconciles(void **state)
{
    (void)state;
    const struct stack_load_opts lo = { .tag = "load-xfer",
                                        .rate = 60,
                                        .seconds = 3,
                                        .connections = 2,
                                        .record = true,
                                        .load_terminals = true,
                                        .mix = "purchase=4,cash=1,refund=1,transfer=4",
                                        /* this stack has no conversion rates: a transfer
                                         * between currencies is declined 91 before its
                                         * row (fx_no_rate), one within a currency runs */
                                        .any_error_rate = true };
    struct stack_load l;
    assert_int_equal(stack_load_run(&S, &lo, &l), 0);
    settle();
    assert_true(ts_file_contains(l.record, "# atlas-load-record 2\n"));
    int xfer_lines = ts_file_lines_with(l.record, " proc=400000 ");
    assert_true(xfer_lines >= 30);
    /* Some ran: approved, with their fee. */
    int xfer_approved = 0;
    size_t len;
    char *text = ts_read_file(l.record, 0, &len);
    assert_non_null(text);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        xfer_approved +=
            strstr(line, " proc=400000 ") && strstr(line, " rc=00 ") && strstr(line, " de28=D");
    free(text);
    assert_true(xfer_approved > 0);

    json_t *o = reconciled_with(&l, "record-xfer",
                                (const char *const[]){ "rec_lines", "rec_approved_held",
                                                       "rec_declined", "xfers", "xfer_completed",
                                                       "xfer_failed", "transfer_senders", NULL });
    assert_int_equal(stat_of(o, "rec_not_journaled"), 0);
    /* Every transfer line's sender is journaled (the switch made a row of each it began). */
    assert_true(stat_of(o, "transfer_senders") >= xfer_lines);
    assert_true(stat_of(o, "xfers") > 0);
    assert_true(stat_of(o, "xfer_completed") >= xfer_approved);
    json_decref(o);
}

/* The same under faults: switchd stalled (SIGSTOP: requests and their 0400s time out), then
 * killed (-9) and restarted in the middle of the run. Whatever the terminals, the journal, the
 * recovery and the reversal queue did, once the switch has settled everything reconciles. */
static void test_recorded_load_under_faults_reconciles(void **state)
{
    (void)state;
    struct stack_load l;
    load_under_fault(&l, "chaos", stall_switch, 3000, kill_and_restart_switch);
    settle();

    json_t *o = reconciled_with(&l, "under faults",
                                (const char *const[]){ "rec_lines", "rec_approved_held",
                                                       "rec_unanswered_reversed", "lost",
                                                       "rev_acked", NULL });
    assert_true(stat_of(o, "rec_unanswered_reversed") >= 1);
    json_decref(o);
}

/* And with switchd cut off its database for a while in the middle of a recorded run: journal
 * rows and write-ahead records go to the spool and are replayed once it is back. (This run
 * found the journal writer racing its own replay: a live answer could settle a write-ahead row
 * before the replay inserted it. Records now reach PostgreSQL in the order they became
 * durable; test_db_journal has the deterministic test.) */
static void test_recorded_load_database_outage_reconciles(void **state)
{
    (void)state;
    struct stack_load l;
    sleep(2);
    load_under_fault(&l, "outage", cut_switch_db, 3000, restore_switch_db);
    assert_int_equal(stack_wait_journal_up(&S, 10000), 0);
    /* Not settle(): a leftover in-flight row is what the reconciliation is to report. */
    assert_int_equal(stack_wait_scalar(&S,
                                       "SELECT count(*) FROM switch.reversal_queue"
                                       " WHERE state = 'pending'",
                                       0, 20000),
                     0);
    sleep(2); /* the last answers' rows commit */
    json_t *o =
        reconciled_with(&l, "outage",
                        (const char *const[]){ "rec_lines", "rec_approved_held", "rec_declined",
                                               "rec_unanswered_reversed", NULL });
    json_decref(o);
}

/* And with the issuer stalled (SIGSTOP) for a while: requests time out at the switch (91) and
 * at the terminals, the switch reverses them, and the issuer applies both once it wakes up. */
static void test_recorded_load_issuer_stall_reconciles(void **state)
{
    (void)state;
    struct stack_load l;
    load_under_fault(&l, "stall", stall_issuer, 2500, wake_issuer);
    settle();
    json_t *o =
        reconciled_with(&l, "issuer stall",
                        (const char *const[]){ "rec_lines", "rec_approved_held", "rec_declined",
                                               "rec_unanswered_reversed", "rev_acked", NULL });
    json_decref(o);
}

/* ------------------------------------------------------------------ breaks, one at a time */

/* The journal holds an approval the issuer never booked. */
static void test_approval_the_issuer_does_not_have(void **state)
{
    (void)state;
    char de7[11], date[11];
    now_de7(de7, date);
    sql("INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,"
        " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time,"
        " processing_code, amount_minor, currency, response_code, auth_code, pan_masked,"
        " outcome, created_at) VALUES ('%s', '100001', 'TERM0002', '900001', '%s', '0200',"
        " 'WALLET1', '900001', '%s', '000000', 4200, 504, '00', '424242',"
        " '489001******0012', 'approved', now())",
        date, de7, de7);
    json_t *o;
    json_t *m = broken(&o, NULL, "journal-vs-issuer", "issuer does not have the approval's effect");
    expect_fields(m, (const char *const[]){ "terminal", "TERM0002", "stan", "900001", "issuer_stan",
                                            "900001", "pan", "489001******0012", "outcome",
                                            "approved", NULL });
    assert_int_equal(field_int(m, "issuer_net"), 0);
    assert_int_equal(field_int(m, "expected"), -4200);
    assert_int_equal(mismatches(o, "journal-vs-issuer", NULL), 1);
    assert_true(mismatches(o, "totals", "currency total") == 1);
    json_decref(o);
    sql("DELETE FROM switch.authorizations WHERE terminal_id = 'TERM0002' AND stan = '900001'");
    expect_clean(NULL);
}

/* A converted approval (1,000 XOF on the MAD card: DE 6 = 16.83 MAD, docs/fx.md) is held to DE 6
 * in DE 51, what the issuer moved, not to DE 4: the day reconciles, and its reversal by the
 * terminal too; a journal row whose DE 6 says a cent more is a mismatch naming that amount. */
static void test_converted_approval_held_to_de6(void **state)
{
    (void)state;
    const char *mad = "4890010000000012";
    struct sim_txn x, rev;
    struct sim_sent sent, kept;
    stack_card_txn(&x, SIM_T_PURCHASE, mad, 1000);
    snprintf(x.currency, sizeof x.currency, "952");
    send_expect("TERM0001", &x, "00", NULL, &kept);
    stack_card_txn(&x, SIM_T_PURCHASE, mad, 500);
    snprintf(x.currency, sizeof x.currency, "952");
    send_expect("TERM0001", &x, "00", NULL, &sent);
    stack_reversal_of(&rev, mad, 500, &sent);
    snprintf(rev.currency, sizeof rev.currency, "952");
    send_expect("TERM0001", &rev, "00", NULL, NULL);
    settle();
    expect_clean(NULL);

    sql("UPDATE switch.authorizations SET billing_amount_minor = 1684"
        " WHERE terminal_id = 'TERM0001' AND stan = '%s' AND transmission_time = '%s'",
        kept.stan, kept.de7);
    json_t *o;
    json_t *m = broken(&o, NULL, "journal-vs-issuer", "issuer's effect differs from the approval");
    assert_int_equal(field_int(m, "issuer_net"), -1683);
    assert_int_equal(field_int(m, "expected"), -1684);
    json_decref(o);
    sql("UPDATE switch.authorizations SET billing_amount_minor = 1683"
        " WHERE terminal_id = 'TERM0001' AND stan = '%s' AND transmission_time = '%s'",
        kept.stan, kept.de7);
    expect_clean(NULL);
}

/* The switch says it reversed a debit (an acknowledged reversal row) the issuer still has. */
static void test_reversed_debit_the_issuer_kept(void **state)
{
    (void)state;
    struct sim_sent sent;
    struct sim_resp r;
    approved_purchase(777, &sent, &r);
    sql("INSERT INTO switch.reversal_queue (request_date, acquirer_id, terminal_id, stan,"
        " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time, rrn,"
        " processing_code, amount_minor, currency, auth_code, pan_masked, pan_hmac,"
        " pan_sealed, reason, state, attempts, acked_at)"
        " SELECT request_date, acquirer_id, terminal_id, stan, transmission_time, mti,"
        " issuer_id, issuer_stan, issuer_transmission_time, rrn, processing_code,"
        " amount_minor, currency, auth_code, pan_masked, pan_hmac, '\\x00'::bytea, 'error',"
        " 'acked', 1, now() FROM switch.authorizations WHERE terminal_id = 'TERM0001'"
        " AND stan = '%s' AND transmission_time = '%s' AND mti_class = '020'",
        sent.stan, sent.de7);
    json_t *o;
    json_t *m = broken(&o, NULL, "journal-vs-issuer",
                       "issuer still has the effect of an approval the switch reversed");
    expect_fields(
        m, (const char *const[]){ "stan", sent.stan, "de7", sent.de7, "reversal", "acked", NULL });
    assert_int_equal(field_int(m, "issuer_net"), -777);
    assert_int_equal(field_int(m, "expected"), 0);
    json_decref(o);
    sql("DELETE FROM switch.reversal_queue WHERE terminal_id = 'TERM0001' AND stan = '%s'"
        " AND transmission_time = '%s'",
        sent.stan, sent.de7);
    expect_clean(NULL);
}

/* The issuer booked a debit under a key no row of the switch names. */
static void test_issuer_debit_without_switch_record(void **state)
{
    (void)state;
    char de7[11], date[11];
    now_de7(de7, date);
    sql("INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor, mti,"
        " processing_code) VALUES (9, '00000100001:TERM0002:990001:%s', 'purchase', -1500,"
        " '0200', '000000')",
        de7);
    json_t *o;
    json_t *m = broken(&o, NULL, "issuer-without-switch",
                       "issuer applied a request the switch has no record of");
    expect_fields(m, (const char *const[]){ "terminal", "TERM0002", "issuer_stan", "990001", "pan",
                                            "489001******0095", /* wallet 9, masked */
                                            NULL });
    assert_int_equal(field_int(m, "issuer_net"), -1500);
    assert_int_equal(field_int(m, "wallet_id"), 9);
    assert_int_equal(mismatches(o, "issuer-without-switch", NULL), 1);
    json_decref(o);
    /* Given back (the ledger is append-only): it moved nothing in the end, which is no
     * mismatch. */
    sql("INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor)"
        " VALUES (9, 'rev:00000100001:TERM0002:990001:%s', 'reversal', 1500)",
        de7);
    expect_clean(NULL);
}

/* A request times out while the issuer is stalled: its reversal waits, unacknowledged. */
static void test_pending_reversal(void **state)
{
    (void)state;
    const char *pan = "4890040000000043";
    struct sim_txn x;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 321);
    assert_int_equal(stack_kill(S.issuer, SIGSTOP), 0);
    int fd = stack_send_nowait(&S, stack_term(&S, "TERM0001"), &x, &sent);
    assert_true(fd >= 0);
    char q[400];
    snprintf(q, sizeof q,
             "SELECT count(*) FROM switch.reversal_queue WHERE state = 'pending'"
             " AND terminal_id = 'TERM0001' AND stan = '%s' AND transmission_time = '%s'",
             sent.stan, sent.de7);
    int waited = stack_wait_scalar(&S, q, 1, 10000);
    json_t *o = NULL;
    int code = -1, code_allowed = -1;
    if (waited == 0) {
        code = reconcile(&o, NULL);
        const char *allow[] = { "--allow-pending", NULL };
        json_t *o2;
        code_allowed = reconcile(&o2, allow);
        if (code_allowed != 0 && o2)
            dump(o2);
        json_decref(o2);
    }
    stack_kill(S.issuer, SIGCONT); /* before any assertion can leave it stopped */
    close(fd);
    assert_int_equal(waited, 0);
    assert_int_equal(code, 1);
    json_t *m = the_mismatch(o, "journal-vs-issuer", "reversal not yet acknowledged");
    expect_fields(m, (const char *const[]){ "stan", sent.stan, "reversal", "pending", NULL });
    /* Answered 91 at its timeout — or when the link's echo went unanswered first (the issuer is
     * stopped), which drops the link: "unavailable". Either way reversed, and still pending. */
    const char *outcome = field(m, "outcome");
    assert_true(strcmp(outcome, "timeout") == 0 || strcmp(outcome, "unavailable") == 0);
    json_decref(o);
    assert_int_equal(code_allowed, 0);
    /* The issuer wakes up, applies the debit, then its reversal: all square again. */
    settle();
    assert_true(stack_wait_balance(&S, pan, before, 10000));
    expect_clean(NULL);
}

/* A write-ahead row nobody settled. */
static void test_leftover_inflight_row(void **state)
{
    (void)state;
    char de7[11], date[11];
    now_de7(de7, date);
    sql("INSERT INTO switch.inflight (request_date, acquirer_id, terminal_id, stan,"
        " transmission_time, mti_class, mti, owner, issuer_id, issuer_stan,"
        " issuer_transmission_time, processing_code, amount_minor, currency, pan_masked,"
        " pan_hmac, pan_sealed, created_at) VALUES ('%s', '100001', 'TERM0002', '980001',"
        " '%s', '020', '0200', 'gone-instance', 'WALLET1', '980001', '%s', '000000', 100,"
        " 504, '489001******0012', decode(repeat('00', 32), 'hex'), '\\x00'::bytea, now())",
        date, de7, de7);
    json_t *o;
    json_t *m = broken(&o, NULL, "inflight-left", "never settled");
    expect_fields(m, (const char *const[]){ "terminal", "TERM0002", "stan", "980001", NULL });
    assert_int_equal(mismatches(o, NULL, NULL), 1); /* the issuer has nothing: no money open */
    json_decref(o);
    sql("DELETE FROM switch.inflight WHERE owner = 'gone-instance'");
    expect_clean(NULL);
}

/* The record says a terminal holds an approval which the issuer no longer has: the terminal
 * reversed it (its reversal is not in this record), so what it "holds" is not there. */
static void test_record_approval_the_issuer_reversed(void **state)
{
    (void)state;
    const char *mad = "4890010000000012";
    struct sim_sent kept, undone;
    struct sim_resp rk, ru;
    struct sim_txn rev;
    approved_purchase(610, &kept, &rk);
    approved_purchase(620, &undone, &ru);
    stack_reversal_of(&rev, mad, 620, &undone);
    send_expect("TERM0001", &rev, "00", NULL, NULL);
    settle();
    char body[1024], path[400];
    const char *extra[3];
    snprintf(body, sizeof body,
             "req terminal=TERM0001 stan=%s de7=%s mti=0200 proc=000000 amount=610 currency=504"
             " pan=489001******0012 answered=yes rc=00 auth=%s rev=no\n"
             "req terminal=TERM0001 stan=%s de7=%s mti=0200 proc=000000 amount=620 currency=504"
             " pan=489001******0012 answered=yes rc=00 auth=%s rev=no\n",
             kept.stan, kept.de7, rk.auth, undone.stan, undone.de7, ru.auth);
    write_record("reversed.record", body, path, extra);
    json_t *o;
    json_t *m =
        broken(&o, extra, "record-vs-switch", "terminal holds an approval the issuer reversed");
    assert_string_equal(field(m, "stan"), undone.stan);
    assert_int_equal(field_int(m, "record_line"), 3);
    assert_int_equal(mismatches(o, "record-vs-switch", "terminal holds an approval"), 1);
    /* The switch and the issuer agree with each other: only the record disagrees. */
    assert_int_equal(mismatches(o, "journal-vs-issuer", NULL), 0);
    assert_int_equal(mismatches(o, "totals", NULL), 0);
    json_decref(o);
    expect_clean(NULL);
}

/* The record says terminals gave up reversing requests they got no answer for. */
static void test_record_unanswered_without_answered_reversal(void **state)
{
    (void)state;
    char de7[11], date[11], body[1024], path[400];
    const char *extra[3];
    now_de7(de7, date);
    snprintf(body, sizeof body,
             "req terminal=TERM0001 stan=970001 de7=%s mti=0200 proc=000000 amount=100"
             " currency=504 pan=489001******0012 answered=no rev=yes rev_stan=970002 rev_de7=%s"
             " rev_tries=5 rev_rc=none\n"
             "req terminal=TERM0001 stan=970003 de7=%s mti=0200 proc=010000 amount=200"
             " currency=504 pan=489001******0012 answered=no rev=no\n"
             "req terminal=TERM0001 stan=970004 de7=%s mti=0100 proc=300000 amount=-"
             " currency=504 pan=489001******0012 answered=no rev=no\n",
             de7, de7, de7, de7);
    write_record("gave-up.record", body, path, extra);
    json_t *o;
    json_t *m = broken(&o, extra, "record-vs-switch", "terminal gave up on a reversal");
    assert_int_equal(mismatches(o, "record-vs-switch", "terminal gave up on a reversal"), 2);
    assert_int_equal(mismatches(o, NULL, NULL), 2); /* the balance inquiry needs none */
    assert_string_equal(field(m, "stan"), "970001");
    assert_int_equal(field_int(m, "record_line"), 2);
    assert_int_equal(stat_of(o, "rec_unanswered_gave_up"), 2);
    assert_int_equal(stat_of(o, "rec_unanswered_nothing"), 1);
    json_decref(o);
}

/* Usage and input errors exit 2, before any conclusion. */
static void test_errors_exit_2(void **state)
{
    (void)state;
    json_t *o;
    char path[400], out[420];
    const char *bad_from[] = { "--from", "yesterday-ish", NULL };
    assert_int_equal(reconcile(&o, bad_from), 2);
    const char *reversed[] = { "--from", "2026-12-02", "--to", "2026-12-01", NULL };
    assert_int_equal(reconcile(&o, reversed), 2);
    const char *bad_record[3];
    write_record("bad.record", "req terminal=TERM0001 stan=1\n", path, bad_record);
    assert_int_equal(reconcile(&o, bad_record), 2);
    snprintf(out, sizeof out, "%s/reconcile.%s", S.dir, "badrec.out");
    const char *args[] = { "--record", path, NULL };
    assert_int_equal(ts_run("atlas-reconcile", args, out), 2);
    assert_int_equal(ts_file_contains(out, "bad.record: line 2: stan: expected 6 digits"), 1);
    const char *nodb[] = { "--switch-db", "host=/nonexistent-socket-dir", NULL };
    assert_int_equal(ts_run("atlas-reconcile", nodb, out), 2);
    const char *unknown[] = { "--frobnicate", NULL };
    assert_int_equal(ts_run("atlas-reconcile", unknown, out), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_traffic_reconciles),
        cmocka_unit_test(test_converted_approval_held_to_de6),
        cmocka_unit_test(test_recorded_load_reconciles),
        cmocka_unit_test(test_recorded_load_with_transfers_reconciles),
        cmocka_unit_test(test_recorded_load_under_faults_reconciles),
        cmocka_unit_test(test_recorded_load_database_outage_reconciles),
        cmocka_unit_test(test_recorded_load_issuer_stall_reconciles),
        cmocka_unit_test(test_approval_the_issuer_does_not_have),
        cmocka_unit_test(test_reversed_debit_the_issuer_kept),
        cmocka_unit_test(test_issuer_debit_without_switch_record),
        cmocka_unit_test(test_pending_reversal),
        cmocka_unit_test(test_leftover_inflight_row),
        cmocka_unit_test(test_record_approval_the_issuer_reversed),
        cmocka_unit_test(test_record_unanswered_without_answered_reversal),
        cmocka_unit_test(test_errors_exit_2),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
