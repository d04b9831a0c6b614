/* Unit tests of atlas_console: the log line parser (real switchd lines,
 * malformed and hostile ones), the display tables and formatting, filters,
 * the rolling 10-second statistics, the status line and the summary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "con.h"

/* A line exactly as switchd writes it (common/log.c, switch/txn.c). */
static const char TXN_LINE[] =
    "{\"ts\":\"2026-11-26T15:44:41.956772Z\",\"level\":\"info\",\"prog\":\"switchd\","
    "\"event\":\"txn\",\"listener\":\"acq\",\"acquirer\":\"ACQ001\",\"terminal\":\"TERM0001\","
    "\"mti\":\"0200\",\"proc\":\"000000\",\"amount\":\"000000002500\",\"currency\":\"504\","
    "\"pan\":\"489001******0012\",\"stan\":\"000123\",\"rrn\":\"633015000123\","
    "\"issuer\":\"WALLET1\",\"issuer_stan\":17,\"rc\":\"00\",\"auth_code\":\"A1B2C3\","
    "\"outcome\":\"approved\",\"lat_us\":4123,\"lat_mac_us\":310,\"lat_pin_us\":280,"
    "\"lat_issuer_us\":2500,\"lat_journal_us\":900,\"lat_write_ahead_us\":650}";

static struct con_event parse_ok(const char *line)
{
    struct con_event ev;
    char err[160];
    int rc = con_parse_line(line, strlen(line), &ev, err, sizeof err);
    if (rc != 0)
        fail_msg("parse failed: %s", err);
    return ev;
}

static void test_parse_txn(void **state)
{
    struct con_event ev = parse_ok(TXN_LINE);
    assert_int_equal(ev.kind, CON_EV_TXN);
    assert_int_equal(ev.level, CON_LVL_INFO);
    assert_string_equal(ev.event, "txn");
    assert_string_equal(ev.prog, "switchd");
    assert_string_equal(ev.terminal, "TERM0001");
    assert_string_equal(ev.mti, "0200");
    assert_string_equal(ev.proc, "000000");
    assert_string_equal(ev.amount, "000000002500");
    assert_string_equal(ev.currency, "504");
    assert_string_equal(ev.pan, "489001******0012");
    assert_string_equal(ev.issuer, "WALLET1");
    assert_string_equal(ev.rc, "00");
    assert_int_equal(ev.outcome, CON_OUT_APPROVED);
    assert_true(ev.has_lat);
    assert_int_equal(ev.lat_us, 4123);
    assert_int_equal(ev.lat_issuer_us, 2500);
    assert_int_equal(ev.lat_journal_us, 900);
    assert_int_equal(ev.lat_write_ahead_us, 650);
    /* 2026-11-26T15:44:41.956772Z, checked against `date -u -d ... +%s`. */
    assert_int_equal(ev.ts_us, 1795707881956772LL);
    /* Every field of a txn has its column or is deliberately not shown. */
    assert_string_equal(ev.extra, "");

    char line[1024];
    con_format_event(&ev, line, sizeof line);
    assert_non_null(strstr(line, "15:44:41.956 0200 purchase TERM0001 489001******0012"));
    assert_non_null(strstr(line, "25.00 MAD 00 approved"));
    assert_non_null(strstr(line, "4.1ms"));
}

/* A stand-in decision (switchd's "stand_in": true) is marked STIP before its MTI; other lines
 * are not. */
static void test_stand_in_marked(void **state)
{
    (void)state;
    struct con_event ev =
        parse_ok("{\"ts\":\"2026-11-26T15:44:41.956772Z\",\"level\":\"info\",\"prog\":\"switchd\","
                 "\"event\":\"txn\",\"terminal\":\"TERM0001\",\"mti\":\"0200\",\"proc\":\"000000\","
                 "\"amount\":\"000000002500\",\"currency\":\"504\",\"pan\":\"489001******0012\","
                 "\"rc\":\"00\",\"auth_code\":\"S00042\",\"outcome\":\"approved\",\"lat_us\":4123,"
                 "\"stand_in\":true}");
    assert_true(ev.stand_in);
    assert_string_equal(ev.extra, "");
    char line[1024];
    con_format_event(&ev, line, sizeof line);
    assert_non_null(strstr(line, "15:44:41.956 STIP 0200 purchase TERM0001"));
    ev = parse_ok(TXN_LINE);
    assert_false(ev.stand_in);
    con_format_event(&ev, line, sizeof line);
    assert_null(strstr(line, "STIP"));
}

static void test_parse_other_events(void **state)
{
    struct con_event ev =
        parse_ok("{\"ts\":\"2026-11-26T15:44:42.000001Z\",\"level\":\"warn\",\"prog\":\"switchd\","
                 "\"event\":\"link_state\",\"issuer\":\"WALLET1\",\"from\":\"up\",\"to\":\"down\","
                 "\"reason\":\"peer closed\"}");
    assert_int_equal(ev.kind, CON_EV_LINK_STATE);
    assert_int_equal(ev.level, CON_LVL_WARN);
    assert_string_equal(ev.from, "up");
    assert_string_equal(ev.to, "down");
    char line[512];
    con_format_event(&ev, line, sizeof line);
    assert_string_equal(line, "15:44:42.000 LINK WALLET1 up -> down (peer closed)");

    ev = parse_ok("{\"ts\":\"2026-11-26T15:44:43Z\",\"level\":\"info\",\"prog\":\"switchd\","
                  "\"event\":\"txn_refused\",\"rc\":\"30\",\"reason\":\"missing field\","
                  "\"field\":41}");
    assert_int_equal(ev.kind, CON_EV_TXN_REFUSED);
    assert_string_equal(ev.rc, "30");
    assert_string_equal(ev.extra, "reason=missing field field=41");

    ev = parse_ok("{\"ts\":\"2026-11-26T15:44:43Z\",\"level\":\"error\",\"prog\":\"switchd\","
                  "\"event\":\"journal_failed\",\"error\":\"connection lost\",\"rows\":3,"
                  "\"truncated\":true}");
    assert_int_equal(ev.kind, CON_EV_OTHER);
    assert_int_equal(ev.level, CON_LVL_ERROR);
    assert_string_equal(ev.extra, "error=connection lost rows=3 truncated=true");
    con_format_event(&ev, line, sizeof line);
    assert_non_null(strstr(line, "ERROR journal_failed  error=connection lost"));
}

static void test_parse_malformed(void **state)
{
    /* Empty; not JSON; cut in the middle; not an object; no ts; bad ts; no
     * event; event not a string; duplicate key; month 13. */
    static const char *const bad[] = {
        "",
        "not json at all",
        "{\"ts\":\"2026-11-26T15:44:41Z\",\"level\":\"info\",\"event\":\"txn\",\"pan\":\"48900",
        "[1,2,3]",
        "{\"level\":\"info\",\"event\":\"txn\"}",
        "{\"ts\":\"yesterday\",\"event\":\"txn\"}",
        "{\"ts\":\"2026-11-26T15:44:41Z\",\"level\":\"info\"}",
        "{\"ts\":\"2026-11-26T15:44:41Z\",\"event\":42}",
        "{\"ts\":\"2026-11-26T15:44:41Z\",\"event\":\"a\",\"event\":\"b\"}",
        "{\"ts\":\"2026-13-26T15:44:41Z\",\"event\":\"txn\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct con_event ev;
        char err[160] = "";
        assert_int_equal(con_parse_line(bad[i], strlen(bad[i]), &ev, err, sizeof err), -1);
        assert_true(strlen(err) > 0);
    }
    /* The error never echoes content (a PAN could be in it). */
    struct con_event ev;
    char err[160];
    const char *cut = bad[2]; /* the one holding a PAN prefix */
    assert_int_equal(con_parse_line(cut, strlen(cut), &ev, err, sizeof err), -1);
    assert_null(strstr(err, "48900"));
    /* A NUL in the middle of the buffer is not JSON either. */
    assert_int_equal(con_parse_line("{\"ts\0\":1}", 10, &ev, err, sizeof err), -1);
    /* Too long. */
    char *big = malloc(CON_LINE_MAX + 2);
    memset(big, ' ', CON_LINE_MAX + 1);
    big[CON_LINE_MAX + 1] = '\0';
    assert_int_equal(con_parse_line(big, CON_LINE_MAX + 1, &ev, err, sizeof err), -1);
    free(big);
}

/* Escape sequences and control bytes in the log never reach the terminal;
 * over-long values are cut to their buffer. */
static void test_parse_hostile_strings(void **state)
{
    struct con_event ev = parse_ok(
        "{\"ts\":\"2026-11-26T15:44:41Z\",\"event\":\"txn\",\"terminal\":\"T\\u001b[2J\\n\","
        "\"mti\":\"0200\",\"reason\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"x\":{\"nested\":1},"
        "\"\\u00ff\":\"\\u00e9\"}");
    assert_string_equal(ev.terminal, "T?[2J?");
    assert_int_equal(strlen(ev.reason), sizeof ev.reason - 1);
    for (const char *p = ev.extra; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    assert_non_null(strstr(ev.extra, "x={..}"));
    /* A string where a number belongs is ignored, not misread. */
    ev = parse_ok("{\"ts\":\"2026-11-26T15:44:41Z\",\"event\":\"txn\",\"lat_us\":\"12\"}");
    assert_false(ev.has_lat);
    ev = parse_ok("{\"ts\":\"2026-11-26T15:44:41Z\",\"event\":\"txn\",\"lat_us\":-5}");
    assert_false(ev.has_lat);
}

static void test_parse_time(void **state)
{
    int64_t us;
    assert_int_equal(con_parse_time("1970-01-01T00:00:00Z", &us), 0);
    assert_int_equal(us, 0);
    assert_int_equal(con_parse_time("2000-03-01T00:00:00.5Z", &us), 0);
    assert_int_equal(us, 951868800500000LL);
    assert_int_equal(con_parse_time("2026-11-26", &us), 0);
    assert_int_equal(us, 1795651200000000LL);
    assert_int_equal(con_parse_time("2026-11-26T15:44", &us), 0);
    assert_int_equal(us, 1795651200000000LL + (15 * 3600 + 44 * 60) * 1000000LL);
    assert_int_equal(con_parse_time("2026-11-26 15:44:41.956772123Z", &us), 0);
    assert_int_equal(us % 1000000, 956772);
    assert_int_equal(con_parse_time("2026-11-26T15:44:41.Z", &us), -1);
    assert_int_equal(con_parse_time("2026-11-26T25:00", &us), -1);
    assert_int_equal(con_parse_time("2026-11-26T15:44:41+01:00", &us), -1);
}

static void test_tables_and_formats(void **state)
{
    char out[64];
    assert_string_equal(con_format_amount("000000002500", "504", out, sizeof out), "25.00 MAD");
    assert_string_equal(con_format_amount("000000002500", "952", out, sizeof out), "2500 XOF");
    assert_string_equal(con_format_amount("000000000005", "950", out, sizeof out), "5 XAF");
    assert_string_equal(con_format_amount("000000000005", "929", out, sizeof out), "0.05 MRU");
    assert_string_equal(con_format_amount("000000012345", "999", out, sizeof out), "123.45 999");
    assert_string_equal(con_format_amount("", "504", out, sizeof out), "-");
    assert_string_equal(con_format_amount("12AB", "504", out, sizeof out), "?12AB MAD");
    assert_string_equal(con_rc_text("51"), "insufficient funds");
    assert_string_equal(con_rc_text("63"), "security violation");
    assert_string_equal(con_rc_text("XY"), "?");
    assert_string_equal(con_proc_type("010000"), "cash-out");
    assert_string_equal(con_proc_type("310000"), "balance");
    assert_string_equal(con_proc_type("260000"), "oct");
    assert_string_equal(con_proc_type("990000"), "?");
    assert_string_equal(con_proc_type(""), "-");
    assert_string_equal(con_format_latency(850, out, sizeof out), "850us");
    assert_string_equal(con_format_latency(4123, out, sizeof out), "4.1ms");
    assert_string_equal(con_format_latency(12400, out, sizeof out), "12ms");
    assert_string_equal(con_format_latency(1200000, out, sizeof out), "1.20s");
    uint64_t us;
    assert_int_equal(con_parse_latency("250", &us), 0);
    assert_int_equal(us, 250000);
    assert_int_equal(con_parse_latency("900us", &us), 0);
    assert_int_equal(us, 900);
    assert_int_equal(con_parse_latency("1.5s", &us), 0);
    assert_int_equal(us, 1500000);
    assert_int_equal(con_parse_latency("5 ms", &us), -1);
    assert_int_equal(con_parse_latency("-3", &us), -1);
    assert_int_equal(con_parse_latency("", &us), -1);
    assert_true(con_mti_is_request("0200"));
    assert_true(con_mti_is_request("0101"));
    assert_false(con_mti_is_request("0400"));
}

static void test_filters(void **state)
{
    struct con_event txn = parse_ok(TXN_LINE);
    struct con_event link =
        parse_ok("{\"ts\":\"2026-11-26T15:44:42Z\",\"level\":\"warn\",\"event\":\"link_state\","
                 "\"issuer\":\"WALLET1\",\"from\":\"up\",\"to\":\"down\",\"reason\":\"x\"}");
    struct con_filter f = { 0 };
    assert_true(con_filter_match(&f, &txn));
    assert_true(con_filter_match(&f, &link));
    snprintf(f.rc, sizeof f.rc, "05");
    assert_false(con_filter_match(&f, &txn));
    snprintf(f.rc, sizeof f.rc, "00");
    assert_true(con_filter_match(&f, &txn));
    assert_false(con_filter_match(&f, &link)); /* no rc on a link_state */
    memset(&f, 0, sizeof f);
    snprintf(f.issuer, sizeof f.issuer, "WALLET1");
    assert_true(con_filter_match(&f, &txn));
    assert_true(con_filter_match(&f, &link));
    f.txn_only = true;
    assert_false(con_filter_match(&f, &link));
    memset(&f, 0, sizeof f);
    snprintf(f.pan_last4, sizeof f.pan_last4, "0012");
    assert_true(con_filter_match(&f, &txn));
    snprintf(f.pan_last4, sizeof f.pan_last4, "0013");
    assert_false(con_filter_match(&f, &txn));
    memset(&f, 0, sizeof f);
    f.min_lat_us = 4123;
    assert_true(con_filter_match(&f, &txn));
    f.min_lat_us = 4124;
    assert_false(con_filter_match(&f, &txn));
    memset(&f, 0, sizeof f);
    f.since_us = txn.ts_us + 1;
    assert_false(con_filter_match(&f, &txn));
    assert_true(con_filter_match(&f, &link));
    memset(&f, 0, sizeof f);
    snprintf(f.terminal, sizeof f.terminal, "TERM0002");
    assert_false(con_filter_match(&f, &txn));
    snprintf(f.mti, sizeof f.mti, "0200");
    f.terminal[0] = '\0';
    assert_true(con_filter_match(&f, &txn));
}

/* A txn event at second sec (+ frac us) with the given outcome and latency. */
static struct con_event txn_at(int64_t sec, int64_t frac, const char *mti, enum con_outcome o,
                               uint64_t lat)
{
    struct con_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = CON_EV_TXN;
    ev.level = CON_LVL_INFO;
    ev.ts_us = sec * 1000000 + frac;
    snprintf(ev.mti, sizeof ev.mti, "%s", mti);
    ev.outcome = o;
    ev.has_lat = true;
    ev.lat_us = lat;
    return ev;
}

static void test_rolling_window(void **state)
{
    struct con_roll *r = malloc(sizeof *r);
    struct con_roll_snap s;
    const int64_t T = 1795707880; /* any second */
    con_roll_init(r);
    con_roll_snapshot(r, T * 1000000, &s);
    assert_int_equal(s.txn, 0);
    assert_true(s.approval_pct < 0);
    assert_int_equal(s.p99_us, 0);

    /* 10 txn per second for 10 seconds, T-9 .. T: 90 approved 0200, 10
     * declined 0200 at T; latencies 1000 us, but two at T take 50 ms. */
    for (int64_t sec = T - 9; sec <= T; sec++)
        for (int i = 0; i < 10; i++) {
            bool slow = sec == T && i < 2;
            struct con_event ev =
                txn_at(sec, i * 1000, "0200", sec == T ? CON_OUT_DECLINED : CON_OUT_APPROVED,
                       slow ? 50000 : 1000);
            con_roll_add(r, &ev);
        }
    /* A reversal: counted in TPS, not in the approval rate. */
    struct con_event rev = txn_at(T, 5, "0400", CON_OUT_APPROVED, 1000);
    con_roll_add(r, &rev);
    /* A warn line and a malformed line are errors. */
    struct con_event warn = { .kind = CON_EV_OTHER, .level = CON_LVL_WARN, .ts_us = T * 1000000 };
    con_roll_add(r, &warn);
    con_roll_add_error(r, T * 1000000 + 1);
    /* A link change at warn is shown with the links, not as an error. */
    struct con_event link = { .kind = CON_EV_LINK_STATE,
                              .level = CON_LVL_WARN,
                              .ts_us = T * 1000000 };
    con_roll_add(r, &link);

    /* At T + 0.5 s the window is 9.5 s long and holds all 101 txn. */
    con_roll_snapshot(r, T * 1000000 + 500000, &s);
    assert_int_equal(s.txn, 101);
    assert_true(s.tps > 101 / 9.5 - 0.01 && s.tps < 101 / 9.5 + 0.01);
    assert_true(s.approval_pct > 89.99 && s.approval_pct < 90.01);
    assert_int_equal(s.errors, 2);
    /* p50 within the histogram's 1/128 of 1000 us; p99 is rank 100 of 101
     * (at_hist rounds q * n), one of the two slow ones. */
    assert_true(s.p50_us >= 1000 && s.p50_us <= 1008);
    assert_true(s.p99_us >= 50000 && s.p99_us <= 50400);
    /* Five seconds later the oldest five seconds have left the window. */
    con_roll_snapshot(r, (T + 5) * 1000000, &s);
    assert_int_equal(s.txn, 51);
    assert_true(s.approval_pct > 79.99 && s.approval_pct < 80.01); /* 40 of 50 */
    /* p99 of 51 values: rank 50, the first of the two slow ones. */
    assert_true(s.p99_us >= 50000 && s.p99_us <= 50400);
    /* Ten seconds after T nothing is left. */
    con_roll_snapshot(r, (T + 10) * 1000000, &s);
    assert_int_equal(s.txn, 0);
    assert_true(s.approval_pct < 0);

    /* An event older than what its slot holds is dropped, not mixed in. */
    struct con_event newer = txn_at(T + 20, 0, "0200", CON_OUT_APPROVED, 7);
    struct con_event old = txn_at(T + 10, 0, "0200", CON_OUT_DECLINED, 7);
    con_roll_add(r, &newer);
    con_roll_add(r, &old);
    con_roll_snapshot(r, (T + 20) * 1000000, &s);
    assert_int_equal(s.txn, 1);
    assert_true(s.approval_pct > 99.9);
    free(r);
}

static void test_status_line(void **state)
{
    struct con_roll_snap s = {
        .tps = 123.45, .approval_pct = 97.5, .txn = 10, .errors = 2, .p50_us = 4123, .p99_us = 12400
    };
    struct con_links k = { 0 };
    char out[256];
    con_status_line(&s, &k, NULL, 80, out, sizeof out);
    assert_string_equal(out, "123.5 tps | appr 97.5% | p50 4.1ms p99 12ms | err 2 | links: ?");

    struct con_event up = parse_ok("{\"ts\":\"2026-11-26T15:44:42Z\",\"event\":\"link_state\","
                                   "\"issuer\":\"WALLET1\",\"from\":\"signon\",\"to\":\"up\"}");
    con_links_update(&k, &up);
    con_status_line(&s, &k, NULL, 80, out, sizeof out);
    assert_string_equal(out, "123.5 tps | appr 97.5% | p50 4.1ms p99 12ms | err 2 | WALLET1:up");

    /* Many issuers: never wider than 79 columns, the rest counted. */
    for (int i = 0; i < 12; i++) {
        char line[256];
        snprintf(line, sizeof line,
                 "{\"ts\":\"2026-11-26T15:44:42Z\",\"event\":\"link_state\","
                 "\"issuer\":\"ISSUER%02d\",\"from\":\"up\",\"to\":\"connecting\"}",
                 i);
        struct con_event ev = parse_ok(line);
        con_links_update(&k, &ev);
    }
    assert_int_equal(k.n, 13);
    con_status_line(&s, &k, NULL, 80, out, sizeof out);
    assert_true(strlen(out) <= 79);
    assert_non_null(strstr(out, "WALLET1:up"));
    assert_non_null(strstr(out, " +"));
    /* Extreme figures still fit. */
    struct con_roll_snap big = { .tps = 99999.9,
                                 .approval_pct = 100,
                                 .txn = 1,
                                 .errors = 99999999,
                                 .p50_us = 2000000,
                                 .p99_us = 90000000 };
    con_status_line(&big, &k, NULL, 80, out, sizeof out);
    assert_true(strlen(out) <= 79);
    con_status_line(&big, &k, NULL, 40, out, sizeof out);
    assert_true(strlen(out) <= 39);
    /* A second update of the same issuer replaces its state. */
    struct con_event down = parse_ok("{\"ts\":\"2026-11-26T15:44:43Z\",\"event\":\"link_state\","
                                     "\"issuer\":\"WALLET1\",\"from\":\"up\",\"to\":\"down\"}");
    con_links_update(&k, &down);
    assert_int_equal(k.n, 13);
    assert_string_equal(k.l[0].state, "down");
}

/* Reads the summary report of a list of lines into a buffer. */
static char *summary_of(const char *const *lines, size_t n, int malformed)
{
    struct con_summary *s = con_summary_new();
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) {
        struct con_event ev = parse_ok(lines[i]);
        con_summary_add(s, &ev);
    }
    for (int i = 0; i < malformed; i++)
        con_summary_add_malformed(s);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    con_summary_print(s, f);
    fclose(f);
    con_summary_free(s);
    return buf;
}

#define TXN(ts, term, mti, proc, rc, outcome, lat)                                                 \
    "{\"ts\":\"2026-11-26T" ts "Z\",\"level\":\"info\",\"event\":\"txn\",\"terminal\":\"" term     \
    "\",\"mti\":\"" mti "\",\"proc\":\"" proc "\",\"amount\":\"000000001000\","                    \
    "\"currency\":\"504\",\"rc\":\"" rc "\",\"outcome\":\"" outcome "\",\"lat_us\":" lat "}"
#define LINK(ts, from, to)                                                                         \
    "{\"ts\":\"2026-11-26T" ts "Z\",\"level\":\"warn\",\"event\":\"link_state\","                  \
    "\"issuer\":\"WALLET1\",\"from\":\"" from "\",\"to\":\"" to "\",\"reason\":\"r\"}"

static void test_summary(void **state)
{
    static const char *const lines[] = {
        LINK("10:00:00", "down", "connecting"),
        LINK("10:00:01", "signon", "up"),
        TXN("10:00:02", "TERM0001", "0200", "000000", "00", "approved", "1000"),
        TXN("10:00:03", "TERM0001", "0200", "000000", "51", "declined", "2000"),
        TXN("10:00:04", "TERM0002", "0200", "010000", "55", "declined", "3000"),
        TXN("10:00:05", "TERM0002", "0100", "000000", "05", "declined", "4000"),
        TXN("10:00:06", "TERM0003", "0400", "000000", "00", "approved", "5000"),
        LINK("10:01:00", "up", "down"),
        LINK("10:01:00", "down", "connecting"),
        LINK("10:01:30", "signon", "up"),
        LINK("10:02:00", "up", "down"),
        ("{\"ts\":\"2026-11-26T10:02:10Z\",\"level\":\"info\",\"event\":\"txn_refused\","
         "\"rc\":\"30\",\"reason\":\"x\",\"field\":3}"),
        "{\"ts\":\"2026-11-26T10:02:30Z\",\"level\":\"error\",\"event\":\"journal_failed\"}",
    };
    char *r = summary_of(lines, sizeof lines / sizeof lines[0], 2);
    /* Print it: a reviewer sees what an operator sees. */
    fputs(r, stdout);
    assert_non_null(strstr(r, "lines 15 (malformed 2)"));
    assert_non_null(strstr(r, "Transactions: 5 answered, 1 refused before routing"));
    assert_non_null(strstr(r, "approval rate 25.0% (1 of 4 0100/0200 requests)"));
    assert_non_null(strstr(r, "  purchase                              4   80.0%"));
    assert_non_null(strstr(r, "  cash-out                              1   20.0%"));
    assert_non_null(strstr(r, "  51 insufficient funds                 1   20.0%"));
    assert_non_null(strstr(r, "  declined                              3   60.0%"));
    /* Percentiles of 1..5 ms (within the histogram's 1/128). */
    assert_non_null(strstr(r, "total       p50 3.0ms   p90 5.0ms   p99 5.0ms"));
    assert_non_null(strstr(r, "  TERM0002                2 declined of        2 (100.0%)"));
    assert_non_null(strstr(r, "  TERM0001                1 declined of        2 (50.0%)"));
    assert_null(strstr(r, "TERM0003       ")); /* no decline there */
    /* One outage of 30 s (10:01:00 -> 10:01:30), one open at the end (30 s). */
    assert_non_null(strstr(r, "WALLET1          down at 10:01:00 for 30.0s"));
    assert_non_null(strstr(r, "WALLET1          down at 10:02:00 for 30.0s     (still down"));
    assert_non_null(strstr(r, "last state down       outages 2, down 1m00s"));
    assert_non_null(strstr(r, "error journal_failed"));
    assert_non_null(strstr(r, "warn  link_state"));
    free(r);
}

/* A /metrics body as switch/http.c renders it (abridged). */
static void test_metrics_parse(void **state)
{
    static const char body[] =
        "# HELP atlas_transactions_total Answered transactions by MTI and response code.\n"
        "# TYPE atlas_transactions_total counter\n"
        "atlas_transactions_total{mti=\"0200\",rc=\"00\"} 12\n"
        "# TYPE atlas_issuer_link_up gauge\n"
        "atlas_issuer_link_up{issuer=\"WALLET1\",state=\"up\"} 1\n"
        "atlas_issuer_link_up{state=\"connecting\",issuer=\"BANK\\\"2\"} 0\n"
        "atlas_issuer_link_up{issuer=\"BROKEN} 0\n"
        "atlas_backpressure 0\n"
        "atlas_journal_database_up 0\n"
        "atlas_journal_queue 7\n";
    struct con_metrics m;
    assert_int_equal(con_metrics_parse(body, strlen(body), &m), 0);
    assert_int_equal(m.links.n, 2);
    assert_string_equal(m.links.l[0].issuer, "WALLET1");
    assert_string_equal(m.links.l[0].state, "up");
    assert_string_equal(m.links.l[1].issuer, "BANK\"2"); /* label order and escapes */
    assert_string_equal(m.links.l[1].state, "connecting");
    assert_int_equal(m.db_up, 0);
    assert_int_equal(m.backpressure, 0);
    /* Not a switch (or an error page): refused. */
    assert_int_equal(con_metrics_parse("<html>nope</html>", 17, &m), -1);
    /* Not NUL-terminated: only len bytes are read. */
    assert_int_equal(con_metrics_parse("atlas_backpressure 1\natlas_x", 21, &m), 0);
    assert_int_equal(m.backpressure, 1);
    assert_int_equal(m.db_up, -1);

    /* The status line shows the alarms before the links. */
    struct con_roll_snap snap = {
        .tps = 1, .approval_pct = 100, .txn = 1, .p50_us = 900, .p99_us = 900
    };
    struct con_metrics alarm;
    static const char bad[] = "atlas_journal_database_up 0\natlas_backpressure 1\n"
                              "atlas_issuer_link_up{issuer=\"WALLET1\",state=\"down\"} 0\n";
    assert_int_equal(con_metrics_parse(bad, strlen(bad), &alarm), 0);
    char out[256];
    con_status_line(&snap, &alarm.links, &alarm, 100, out, sizeof out);
    assert_string_equal(
        out, "1.0 tps | appr 100.0% | p50 900us p99 900us | err 0 | DB DOWN | BACKPRESSURE | "
             "WALLET1:down");
    /* In 80 columns the alarms stay; the link list gives way. */
    con_status_line(&snap, &alarm.links, &alarm, 80, out, sizeof out);
    assert_true(strlen(out) <= 79);
    assert_non_null(strstr(out, "| DB DOWN | BACKPRESSURE |"));
}

/* Lines collected by the splitter tests. */
struct got {
    int n;
    char line[8][64];
    int64_t off[8];
    const char *err[8];
};

static void got_line(void *arg, const char *line, size_t len, int64_t off, const char *err)
{
    struct got *g = arg;
    assert_true(g->n < 8);
    snprintf(g->line[g->n], sizeof g->line[g->n], "%.*s", (int)(len < 63 ? len : 63), line);
    g->off[g->n] = off;
    g->err[g->n] = err;
    g->n++;
}

static void test_line_splitter(void **state)
{
    static const char text[] = "alpha\n\nbravo charlie\ndelta";
    static struct con_lines l;
    /* Every way of cutting the input in two gives the same lines. */
    for (size_t cut = 0; cut <= sizeof text - 1; cut++) {
        struct got g = { 0 };
        con_lines_reset(&l);
        con_lines_feed(&l, text, cut, 0, got_line, &g);
        con_lines_feed(&l, text + cut, sizeof text - 1 - cut, (int64_t)cut, got_line, &g);
        assert_int_equal(g.n, 3);
        assert_string_equal(g.line[0], "alpha");
        assert_int_equal(g.off[0], 0);
        assert_string_equal(g.line[1], "");
        assert_int_equal(g.off[1], 6);
        assert_string_equal(g.line[2], "bravo charlie");
        assert_int_equal(g.off[2], 7);
        assert_null(g.err[2]);
        assert_int_equal(l.head_off, 7);
        assert_int_equal(l.head_len, 13);
        /* The unfinished "delta" is reported as cut when the input ends. */
        con_lines_finish(&l, "cut", got_line, &g);
        assert_int_equal(g.n, 4);
        assert_string_equal(g.line[3], "delta");
        assert_int_equal(g.off[3], 21);
        assert_string_equal(g.err[3], "cut");
    }
    /* An over-long line is reported once, its rest skipped, the next kept. */
    static char big[CON_LINE_MAX + 100];
    memset(big, 'x', sizeof big);
    struct got g = { 0 };
    con_lines_reset(&l);
    con_lines_feed(&l, big, 1000, 0, got_line, &g);
    con_lines_feed(&l, big, sizeof big, 1000, got_line, &g); /* past the limit */
    con_lines_feed(&l, big, 5000, 1000 + sizeof big, got_line, &g);
    con_lines_feed(&l, "\nok\n", 4, 6000 + sizeof big, got_line, &g);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.err[0], "line too long");
    assert_int_equal(g.off[0], 0);
    assert_string_equal(g.line[1], "ok");
    assert_null(g.err[1]);
    assert_int_equal(g.off[1], 6001 + (int64_t)sizeof big);
    con_lines_finish(&l, "cut", got_line, &g);
    assert_int_equal(g.n, 2); /* nothing pending */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_txn),
        cmocka_unit_test(test_stand_in_marked),
        cmocka_unit_test(test_parse_other_events),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_hostile_strings),
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_tables_and_formats),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_rolling_window),
        cmocka_unit_test(test_status_line),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_line_splitter),
        cmocka_unit_test(test_metrics_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
