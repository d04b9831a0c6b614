/* atlas-settle against the real stack (sw_stack: PostgreSQL, hsm-sim, issuer-sim, switchd as
 * processes on loopback). Hand-made traffic — a purchase, a refund, a purchase reversed by its
 * terminal, a purchase timed out and reversed by the switch — gives the hand-computed nets; after
 * a recorded load with reversals the tool's totals per participant and currency equal sums made
 * over the journal by independent SQL, the nets sum to zero, two runs write the same bytes and
 * the reconciliation of the day passes; rows inserted on either side of a cutover land on the
 * right business day.
 *
 * The business day: every request of these tests is received within minutes of now, so the
 * tests settle with a cutover twelve hours away from now (at_business_day of now under it):
 * all their traffic is in one business day whatever the time of the run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bizday.h"
#include "clock.h"
#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;
static char Date[11], Cut[6]; /* the business day of now, and its cutover */
static char From[32], To[32]; /* its window, ISO UTC */
static char *Last;            /* what the last run printed */

static int setup(void **state)
{
    struct stack_opts o = {
        .issuer = true, .issuer_timeout_ms = 1500, .wallets = 64, .fx_rates = "fx/demo-rates.csv"
    };
    if (stack_setup(state, &S, &o) != 0)
        return -1;
    int64_t now = (int64_t)at_wall_us();
    unsigned hour = (unsigned)((now / 3600000000) % 24), cut = ((hour + 12) % 24) * 60;
    snprintf(Cut, sizeof Cut, "%02u:00", cut / 60);
    int64_t day = at_business_day(now, cut), s, e, y;
    unsigned m, d;
    at_civil_from_days(day, &y, &m, &d);
    at_put_date(Date, y, m, d);
    at_business_window(day, cut, &s, &e);
    at_format_utc((uint64_t)s, From, sizeof From);
    at_format_utc((uint64_t)e, To, sizeof To);
    return stack_seed_load_terminals(&S, 2);
}

/* ------------------------------------------------------------------ helpers */

/* Runs atlas-settle for date under cutover with the CSV into csv (a path in the stack's
 * directory) and extra arguments (NULL-terminated, or NULL); its exit code. The report goes to
 * S.dir/settle.N.out. */
static int run_settle(const char *date, const char *cutover, const char *csv,
                      const char *const extra[])
{
    static unsigned seq;
    char out[400];
    snprintf(out, sizeof out, "%s/settle.%u.out", S.dir, seq++);
    const char *args[16] = { "--date", date, "--cutover",   cutover,
                             "--csv",  csv,  "--switch-db", S.conninfo };
    size_t n = 8;
    for (size_t i = 0; extra && extra[i] && n < 15; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    unlink(out);
    int code = ts_run("atlas-settle", args, out);
    free(Last);
    Last = ts_read_file(out, 0, NULL);
    fputs(Last ? Last : "(no output)\n", stderr);
    return code;
}

#define F_HOLDS          6
#define F_DEBITS         7
#define F_DEBIT_AMT      8
#define F_CREDITS        9
#define F_CREDIT_AMT     10
#define F_REV_DEBITS     11
#define F_REV_DEBIT_AMT  12
#define F_REV_CREDITS    13
#define F_REV_CREDIT_AMT 14
#define F_FEES           15
#define F_NET            16
#define F_PENDING        17
#define F_FAILED         19
#define F_FAILED_AMT     20
#define N_FIELDS         21

/* The numeric fields of the CSV line of (role, who, ccy) into f (text fields are 0); false when
 * the CSV has no such line. */
static bool csv_row(const char *csv, const char *role, const char *who, const char *ccy,
                    int64_t f[N_FIELDS])
{
    char key[128];
    snprintf(key, sizeof key, "\n%s,%s,%s,%s,%s,", Date, Cut, role, who, ccy);
    const char *p = strstr(csv, key);
    if (!p)
        return false;
    p++;
    for (int i = 0; i < N_FIELDS; i++) {
        f[i] = i >= F_HOLDS ? strtoll(p, NULL, 10) : 0;
        p = strpbrk(p, ",\n");
        assert_non_null(p);
        p++;
    }
    return true;
}

/* The sum of column col over every CSV line of role. */
static int64_t csv_sum(const char *csv, const char *role, int col)
{
    int64_t sum = 0;
    char key[64];
    snprintf(key, sizeof key, "\n%s,%s,%s,", Date, Cut, role);
    for (const char *p = strstr(csv, key); p; p = strstr(p + 1, key)) {
        const char *q = p + 1;
        for (int i = 0; i < col; i++)
            q = strchr(q, ',') + 1;
        sum += strtoll(q, NULL, 10);
    }
    return sum;
}

static char *read_csv(const char *path)
{
    char *text = ts_read_file(path, 0, NULL);
    assert_non_null(text);
    return text;
}

/* The day's approved financial rows of the journal (independent of db/settle.c's SQL): where
 * selects a participant ("acquirer_id = '100001'"), kind the processing codes. */
static long long journal_sum(const char *where, const char *kind, bool amount, bool reversed)
{
    char q[1600];
    snprintf(q, sizeof q,
             "SELECT %s FROM switch.authorizations a WHERE %s AND a.outcome = 'approved'"
             " AND a.mti IN ('0200', '0201', '0220', '0221')"
             " AND substr(a.processing_code, 1, 2) IN %s"
             " AND a.created_at >= '%s' AND a.created_at < '%s'"
             " AND %s EXISTS (SELECT 1 FROM switch.reversal_queue q WHERE q.state = 'acked'"
             " AND q.request_date = a.request_date AND q.acquirer_id = a.acquirer_id"
             " AND q.terminal_id = a.terminal_id AND q.stan = a.stan"
             " AND q.transmission_time = a.transmission_time)",
             amount ? "coalesce(sum(a.amount_minor), 0)" : "count(*)", where, kind, From, To,
             reversed ? "" : "NOT");
    long long v = stack_scalar(&S, q);
    assert_true(v >= 0);
    return v;
}

#define DEBIT  "('00', '01', '09', '10')"
#define CREDIT "('20', '26')"

/* The CSV line of (role, who, ccy) against the journal: approved and reversed, debits and
 * credits, counts and amounts. Approved counts include the reversed originals. */
static void expect_journal(const char *csv, const char *role, const char *who, const char *ccy)
{
    int64_t f[N_FIELDS];
    assert_true(csv_row(csv, role, who, ccy, f));
    char where[160];
    snprintf(where, sizeof where, "a.%s_id = '%s' AND a.currency = %s", role, who, ccy);
    long long dn = journal_sum(where, DEBIT, false, false) + journal_sum(where, DEBIT, false, true);
    long long da = journal_sum(where, DEBIT, true, false) + journal_sum(where, DEBIT, true, true);
    long long cn =
        journal_sum(where, CREDIT, false, false) + journal_sum(where, CREDIT, false, true);
    long long ca = journal_sum(where, CREDIT, true, false) + journal_sum(where, CREDIT, true, true);
    assert_int_equal(f[F_DEBITS], dn);
    assert_int_equal(f[F_DEBIT_AMT], da);
    assert_int_equal(f[F_CREDITS], cn);
    assert_int_equal(f[F_CREDIT_AMT], ca);
    assert_int_equal(f[F_REV_DEBITS], journal_sum(where, DEBIT, false, true));
    assert_int_equal(f[F_REV_DEBIT_AMT], -journal_sum(where, DEBIT, true, true));
    assert_int_equal(f[F_REV_CREDITS], journal_sum(where, CREDIT, false, true));
    assert_int_equal(f[F_REV_CREDIT_AMT], -journal_sum(where, CREDIT, true, true));
    long long flows = (da - journal_sum(where, DEBIT, true, true)) -
                      (ca - journal_sum(where, CREDIT, true, true));
    assert_int_equal(f[F_NET], strcmp(role, "acquirer") == 0 ? flows : -flows);
    assert_int_equal(f[F_FEES], 0);
}

static void send_expect(const char *term, struct sim_txn *x, const char *rc, struct sim_sent *sent)
{
    struct sim_resp r;
    const char *got = stack_rc(&S, term, x, &r, sent);
    assert_string_equal(got, rc);
}

/* ------------------------------------------------------------------ tests */

/* MAD on card 489001…: a purchase of 12.50, a refund of 3.00, a purchase of 4.44 reversed by
 * its terminal, a purchase of 3.21 timed out (issuer stopped) and reversed by the switch. The
 * acquirer is owed 12.50 − 3.00 + 4.44 − 4.44 = 9.50; the issuer owes it; the timeout moves
 * nothing (it was never approved). */
static void test_hand_made_nets(void **state)
{
    (void)state;
    const char *pan = "4890010000000012";
    struct sim_txn x, rev;
    struct sim_sent sent;
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 1250);
    send_expect("TERM0001", &x, "00", NULL);
    stack_card_txn(&x, SIM_T_REFUND, pan, 300);
    send_expect("TERM0001", &x, "00", NULL);
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 444);
    send_expect("TERM0001", &x, "00", &sent);
    stack_reversal_of(&rev, pan, 444, &sent);
    send_expect("TERM0001", &rev, "00", NULL);

    stack_card_txn(&x, SIM_T_PURCHASE, pan, 321);
    assert_int_equal(stack_kill(S.issuer, SIGSTOP), 0);
    int fd = stack_send_nowait(&S, stack_term(&S, "TERM0001"), &x, &sent);
    int queued = stack_wait_scalar(
        &S, stack_rows_sql("switch.reversal_queue", "TERM0001", &sent, NULL), 1, 20000);
    stack_kill(S.issuer, SIGCONT); /* before any assertion can leave it stopped */
    if (fd >= 0)
        close(fd);
    assert_true(fd >= 0);
    assert_int_equal(queued, 0);
    assert_int_equal(stack_settle(&S, 20000), 0);
    assert_int_equal(stack_scalar(&S, stack_rows_sql("switch.authorizations", "TERM0001", &sent,
                                                     "outcome <> 'approved'")),
                     1);

    char csv[400];
    snprintf(csv, sizeof csv, "%s/hand.csv", S.dir);
    assert_int_equal(run_settle(Date, Cut, csv, NULL), 0);
    char *text = read_csv(csv);
    int64_t a[N_FIELDS], i[N_FIELDS];
    assert_true(csv_row(text, "acquirer", "100001", "504", a));
    assert_true(csv_row(text, "issuer", "WALLET1", "504", i));
    assert_int_equal(a[F_DEBITS], 2);
    assert_int_equal(a[F_DEBIT_AMT], 1694);
    assert_int_equal(a[F_CREDITS], 1);
    assert_int_equal(a[F_CREDIT_AMT], 300);
    assert_int_equal(a[F_REV_DEBITS], 1); /* the terminal's 0400 and the queue row: one reversal */
    assert_int_equal(a[F_REV_DEBIT_AMT], -444);
    assert_int_equal(a[F_REV_CREDITS], 0);
    assert_int_equal(a[F_NET], 950);
    assert_int_equal(i[F_NET], -950);
    assert_int_equal(a[F_PENDING], 0);
    assert_non_null(strstr(text, ",acquirer,100001,504,MAD,"));
    free(text);
}

/* A recorded load with reversals (and a few hand-made kinds more): every participant's line
 * equals the journal's sums, the nets of each currency sum to zero, a second run writes the same
 * bytes, and the day reconciles with the issuer's ledger (exit 0 with --issuer-db). */
static void test_totals_equal_journal(void **state)
{
    (void)state;
    static const struct {
        const char *pan;
        enum sim_type type;
        uint64_t amount;
    } more[] = {
        { "4890040000000043", SIM_T_CASH, 5000 },  { "4890020000000029", SIM_T_OCT, 700 },
        { "4890010000000012", SIM_T_AUTH, 900 },   { "4890030000000036", SIM_T_PURCHASE, 100 },
        { "4890020000000029", SIM_T_REFUND, 200 },
    };
    struct sim_txn x;
    for (size_t k = 0; k < sizeof more / sizeof more[0]; k++) {
        stack_card_txn(&x, more[k].type, more[k].pan, more[k].amount);
        send_expect("TERM0002", &x, "00", NULL);
    }
    const struct stack_load_opts lo = {
        .tag = "load", .rate = 100, .seconds = 3, .connections = 2, .load_terminals = true
    };
    struct stack_load l;
    assert_int_equal(stack_load_run(&S, &lo, &l), 0);
    assert_int_equal(stack_settle(&S, 20000), 0);

    char csv1[400], csv2[400];
    snprintf(csv1, sizeof csv1, "%s/day.1.csv", S.dir);
    snprintf(csv2, sizeof csv2, "%s/day.2.csv", S.dir);
    const char *const rec[] = { "--issuer-db", S.conninfo, NULL };
    assert_int_equal(run_settle(Date, Cut, csv1, rec), 0);
    assert_non_null(Last);
    assert_non_null(strstr(Last, "RECONCILED: no mismatch"));
    assert_null(strstr(Last, "NOT BALANCED"));
    assert_int_equal(run_settle(Date, Cut, csv2, NULL), 0);
    char *one = read_csv(csv1), *two = read_csv(csv2);
    assert_string_equal(one, two);

    /* Every line that can exist, against the journal. */
    static const char *const ccys[] = { "504", "929", "950", "952" };
    int lines = 0;
    for (size_t c = 0; c < 4; c++) {
        int64_t f[N_FIELDS];
        if (csv_row(one, "acquirer", "100001", ccys[c], f)) {
            expect_journal(one, "acquirer", "100001", ccys[c]);
            expect_journal(one, "issuer", "WALLET1", ccys[c]);
            lines += 2;
        }
    }
    assert_true(lines >= 6);                          /* MAD, XAF and a third currency at least */
    assert_int_equal(ts_count(one, "\n") - 1, lines); /* no participant the checks did not see */
    /* The load reversed some of its approvals. */
    assert_true(csv_sum(one, "acquirer", F_REV_DEBITS) + csv_sum(one, "acquirer", F_REV_CREDITS) >
                1);
    assert_true(csv_sum(one, "acquirer", F_HOLDS) >= 1);
    /* Per currency the nets sum to zero (two participants per currency here). */
    for (size_t c = 0; c < 4; c++) {
        int64_t a[N_FIELDS], i[N_FIELDS];
        if (csv_row(one, "acquirer", "100001", ccys[c], a)) {
            assert_true(csv_row(one, "issuer", "WALLET1", ccys[c], i));
            assert_int_equal(a[F_NET] + i[F_NET], 0);
        }
    }
    free(one);
    free(two);
}

/* csv_row, with zeros when the CSV has no such line (yet). */
static void row_or_zero(const char *csv, const char *role, const char *who, const char *ccy,
                        int64_t f[N_FIELDS])
{
    if (!csv_row(csv, role, who, ccy, f))
        memset(f, 0, N_FIELDS * sizeof f[0]);
}

/* A converted purchase — 1,000 XOF on the MAD card, billed 16.83 MAD (DE 6; docs/fx.md) —
 * settles on two sides: the acquirer is owed 1,000 XOF, the issuer owes 16.83 MAD, and the
 * switch's conversion position "(conversion)" stands between them (the acquirer's issuer in XOF,
 * the issuer's acquirer in MAD), so that each currency still nets to zero; the day reconciles
 * with the issuer's ledger, which moved 16.83 MAD. */
static void test_converted_purchase_settles_on_two_sides(void **state)
{
    (void)state;
    char csv[400];
    snprintf(csv, sizeof csv, "%s/fx.csv", S.dir);
    int64_t acq0[N_FIELDS], conv_iss0[N_FIELDS], conv_acq0[N_FIELDS], iss0[N_FIELDS];
    int64_t acq1[N_FIELDS], conv_iss1[N_FIELDS], conv_acq1[N_FIELDS], iss1[N_FIELDS];
    assert_int_equal(run_settle(Date, Cut, csv, NULL), 0);
    char *text = read_csv(csv);
    row_or_zero(text, "acquirer", "100001", "952", acq0);
    row_or_zero(text, "issuer", "(conversion)", "952", conv_iss0);
    row_or_zero(text, "acquirer", "(conversion)", "504", conv_acq0);
    row_or_zero(text, "issuer", "WALLET1", "504", iss0);
    free(text);

    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 1000);
    snprintf(x.currency, sizeof x.currency, "952");
    send_expect("TERM0001", &x, "00", NULL);

    const char *const rec[] = { "--issuer-db", S.conninfo, NULL };
    assert_int_equal(run_settle(Date, Cut, csv, rec), 0);
    assert_non_null(strstr(Last, "RECONCILED: no mismatch"));
    assert_null(strstr(Last, "NOT BALANCED"));
    text = read_csv(csv);
    row_or_zero(text, "acquirer", "100001", "952", acq1);
    assert_true(csv_row(text, "issuer", "(conversion)", "952", conv_iss1));
    assert_true(csv_row(text, "acquirer", "(conversion)", "504", conv_acq1));
    row_or_zero(text, "issuer", "WALLET1", "504", iss1);
    free(text);
    assert_int_equal(acq1[F_DEBIT_AMT] - acq0[F_DEBIT_AMT], 1000);
    assert_int_equal(acq1[F_NET] - acq0[F_NET], 1000);
    assert_int_equal(conv_iss1[F_NET] - conv_iss0[F_NET], -1000);
    assert_int_equal(conv_acq1[F_NET] - conv_acq0[F_NET], 1683);
    assert_int_equal(iss1[F_DEBIT_AMT] - iss0[F_DEBIT_AMT], 1683);
    assert_int_equal(iss1[F_NET] - iss0[F_NET], -1683);
}

/* The state of a reversal decides where its money goes. A terminal reversal acknowledged while
 * the issuer is stopped is reversed money at once (the switch promised it; its queue row is still
 * pending); a reversal the issuer refused (made `failed` by hand) leaves its approval in the net
 * and shows in the failed columns. Measured as differences from a run before. */
static void test_reversal_states(void **state)
{
    (void)state;
    char csv[400];
    snprintf(csv, sizeof csv, "%s/states.csv", S.dir);
    int64_t before[N_FIELDS], mid[N_FIELDS], after[N_FIELDS];
    assert_int_equal(run_settle(Date, Cut, csv, NULL), 0);
    char *text = read_csv(csv);
    assert_true(csv_row(text, "acquirer", "100001", "504", before));
    free(text);

    const char *pan = "4890010000000012";
    struct sim_txn x, rev;
    struct sim_sent sent;
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 555);
    send_expect("TERM0001", &x, "00", &sent);
    stack_reversal_of(&rev, pan, 555, &sent);
    assert_int_equal(stack_kill(S.issuer, SIGSTOP), 0);
    struct sim_resp r;
    const char *rc = stack_rc(&S, "TERM0001", &rev, &r, NULL);
    long long pending = stack_scalar(
        &S, stack_rows_sql("switch.reversal_queue", "TERM0001", &sent, "state = 'pending'"));
    int code = run_settle(Date, Cut, csv, NULL);
    stack_kill(S.issuer, SIGCONT); /* before any assertion can leave it stopped */
    assert_string_equal(rc, "00");
    assert_int_equal(pending, 1);
    assert_int_equal(code, 0);
    text = read_csv(csv);
    assert_true(csv_row(text, "acquirer", "100001", "504", mid));
    free(text);
    assert_int_equal(mid[F_DEBITS] - before[F_DEBITS], 1);
    assert_int_equal(mid[F_REV_DEBITS] - before[F_REV_DEBITS], 1);
    assert_int_equal(mid[F_REV_DEBIT_AMT] - before[F_REV_DEBIT_AMT], -555);
    assert_int_equal(mid[F_NET], before[F_NET]);
    assert_int_equal(mid[F_PENDING], 0); /* a terminal's reversal is never "pending" here */
    assert_int_equal(stack_settle(&S, 20000), 0);

    /* The same reversal refused by the issuer: the approval stands. */
    const char *where = stack_rows_sql("switch.reversal_queue", "TERM0001", &sent, NULL);
    const char *from = strstr(where, " FROM ");
    assert_non_null(from);
    char upd[1200];
    snprintf(upd, sizeof upd, "UPDATE switch.reversal_queue SET state = 'failed' %s",
             strstr(from, "WHERE"));
    assert_int_equal(stack_exec(&S, upd), 0);
    code = run_settle(Date, Cut, csv, NULL);
    snprintf(upd, sizeof upd, "UPDATE switch.reversal_queue SET state = 'acked' %s",
             strstr(from, "WHERE"));
    assert_int_equal(stack_exec(&S, upd), 0);
    assert_int_equal(code, 0);
    text = read_csv(csv);
    assert_true(csv_row(text, "acquirer", "100001", "504", after));
    free(text);
    assert_int_equal(after[F_REV_DEBITS], before[F_REV_DEBITS]);
    assert_int_equal(after[F_NET] - before[F_NET], 555);
    assert_int_equal(after[F_FAILED] - before[F_FAILED], 1);
    assert_int_equal(after[F_FAILED_AMT] - before[F_FAILED_AMT], 555);
}

/* The reconciliation step: an approval in the journal that the issuer never booked is listed
 * with its identifiers and makes the run exit 1, while the day's own nets still balance; once
 * it is gone the day reconciles again. */
static void test_reconciliation_lists_differences(void **state)
{
    (void)state;
    static const char ins[] =
        "INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,"
        " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time,"
        " processing_code, amount_minor, currency, response_code, auth_code, pan_masked,"
        " outcome, created_at)"
        " SELECT (now() AT TIME ZONE 'UTC')::date, '100001', 'TERM0002', '900001', d, '0200',"
        " 'WALLET1', '900001', d, '000000', 4200, 504, '00', '424242', '489001******0012',"
        " 'approved', now() FROM (SELECT to_char(now() AT TIME ZONE 'UTC', 'MMDDHH24MISS') d) x";
    assert_int_equal(stack_exec(&S, ins), 0);
    char csv[400];
    snprintf(csv, sizeof csv, "%s/recon.csv", S.dir);
    const char *const rec[] = { "--issuer-db", S.conninfo, NULL };
    int code = run_settle(Date, Cut, csv, rec);
    char *out = Last ? strdup(Last) : NULL;
    assert_int_equal(stack_exec(&S, "DELETE FROM switch.authorizations"
                                    " WHERE terminal_id = 'TERM0002' AND stan = '900001'"),
                     0);
    assert_int_equal(code, 1);
    assert_non_null(out);
    assert_non_null(strstr(out, "MISMATCH check=journal-vs-issuer"));
    assert_non_null(strstr(out, "stan=900001"));
    assert_non_null(strstr(out, "NOT RECONCILED"));
    assert_null(strstr(out, "NOT BALANCED"));
    free(out);
    assert_int_equal(run_settle(Date, Cut, csv, rec), 0);
}

/* Two journal rows a microsecond apart around the cutover 22:00 of 2030-01-15: the first belongs
 * to that day, the second to the 16th. */
static void test_cutover_boundary(void **state)
{
    (void)state;
    static const char ins[] =
        "INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,"
        " transmission_time, mti, issuer_id, issuer_stan, processing_code, amount_minor,"
        " currency, response_code, auth_code, outcome, created_at) VALUES"
        " ('2030-01-15', 'CUT1', 'TERMCUT1', '000001', '0115215959', '0200', 'CUTISS', '000001',"
        "  '000000', 111, 504, '00', 'A00001', 'approved', '2030-01-15 21:59:59.999999+00'),"
        " ('2030-01-15', 'CUT1', 'TERMCUT1', '000002', '0115220000', '0200', 'CUTISS', '000002',"
        "  '000000', 222, 504, '00', 'A00002', 'approved', '2030-01-15 22:00:00+00'),"
        " ('2030-01-15', 'CUT1', 'TERMCUT1', '000003', '0115000000', '0200', 'CUTISS', '000003',"
        "  '000000', 400, 504, '00', 'A00003', 'approved', '2030-01-15 00:00:00+00')";
    assert_int_equal(stack_exec(&S, ins), 0);
    char csv[400];
    snprintf(csv, sizeof csv, "%s/cut.csv", S.dir);
    /* The 15th under 22:00: [14th 22:00, 15th 22:00) holds the 00:00 and the 21:59:59.999999. */
    assert_int_equal(run_settle("2030-01-15", "22:00", csv, NULL), 0);
    char *text = read_csv(csv);
    assert_non_null(strstr(text, "\n2030-01-15,22:00,acquirer,CUT1,504,MAD,0,2,511,"));
    assert_non_null(strstr(text, "\n2030-01-15,22:00,issuer,CUTISS,504,MAD,0,2,511,"));
    free(text);
    assert_int_equal(run_settle("2030-01-16", "22:00", csv, NULL), 0);
    text = read_csv(csv);
    assert_non_null(strstr(text, "\n2030-01-16,22:00,acquirer,CUT1,504,MAD,0,1,222,"));
    free(text);
    /* Cutover 00:00: the calendar day holds all three. */
    assert_int_equal(run_settle("2030-01-15", "00:00", csv, NULL), 0);
    text = read_csv(csv);
    assert_non_null(strstr(text, "\n2030-01-15,00:00,acquirer,CUT1,504,MAD,0,3,733,"));
    free(text);
    assert_int_equal(stack_exec(&S, "DELETE FROM switch.authorizations WHERE acquirer_id = 'CUT1'"),
                     0);
}

/* Usage errors exit 2 and write nothing. */
static void test_usage(void **state)
{
    (void)state;
    char csv[400];
    snprintf(csv, sizeof csv, "%s/bad.csv", S.dir);
    assert_int_equal(run_settle("2030-02-30", "00:00", csv, NULL), 2);
    assert_int_equal(run_settle("2030-01-15", "24:00", csv, NULL), 2);
    assert_int_not_equal(access(csv, F_OK), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_made_nets),
        cmocka_unit_test(test_totals_equal_journal),
        cmocka_unit_test(test_converted_purchase_settles_on_two_sides),
        cmocka_unit_test(test_reversal_states),
        cmocka_unit_test(test_reconciliation_lists_differences),
        cmocka_unit_test(test_cutover_boundary),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
