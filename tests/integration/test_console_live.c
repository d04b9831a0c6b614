/* The ops console as an operator uses it: atlas-console in a tmux pane
 * following a live switchd (real hsm-sim, issuer-sim, PostgreSQL) while
 * transactions flow; the pane is captured and its txn lines and status line
 * checked, then the log is rotated (mv + SIGHUP) under traffic and the
 * console must keep following without losing or repeating a line. A second
 * test proves on switchd's side that SIGHUP loses no log line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;
static char sock[64]; /* private tmux server */
static char pane_file[400];

static int setup(void **state)
{
    if (system("tmux -V > /dev/null 2>&1") != 0) {
        fprintf(stderr, "tmux is missing (scripts/ensure-deps.sh installs it)\n");
        return -1;
    }
    snprintf(sock, sizeof sock, "atlas-con-%d", (int)getpid());
    struct stack_opts o = { .issuer = true, .issuer_timeout_ms = 1500, .wallets = 16 };
    if (stack_setup(state, &S, &o) != 0)
        return -1;
    snprintf(pane_file, sizeof pane_file, "%s/pane.txt", S.dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[200];
    snprintf(cmd, sizeof cmd, "tmux -L %s kill-server > /dev/null 2>&1", sock);
    if (system(cmd) != 0) {
        /* already gone */
    }
    return stack_teardown(state);
}

/* The text of the tmux pane target as `capture-pane -p` with flags writes it, "" when it cannot
 * be captured; valid until the next call. */
static const char *capture(const char *target, const char *flags)
{
    static char *text;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tmux -L %s capture-pane -p %s -t %s > '%s' 2>/dev/null", sock, flags,
             target, pane_file);
    free(text);
    text = system(cmd) == 0 ? ts_read_file(pane_file, 0, NULL) : NULL;
    return text ? text : "";
}

/* The console's pane (wrapped lines joined, with its scrollback); valid until the next
 * capture. */
static const char *pane(void)
{
    return capture("con", "-J -S -5000");
}

/* The last non-empty line of the pane: where the status line lives. */
static void last_line(const char *p, char *out, size_t cap)
{
    const char *end = p + strlen(p);
    while (end > p && (end[-1] == '\n' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > p && start[-1] != '\n')
        start--;
    size_t n = (size_t)(end - start) < cap - 1 ? (size_t)(end - start) : cap - 1;
    memcpy(out, start, n);
    out[n] = '\0';
}

/* Polls the pane until needle appears `want` times (hang guard only). */
static int wait_pane(const char *needle, int want)
{
    for (int t = 0; t < 60000; t += 100) {
        if (ts_count(pane(), needle) >= want)
            return 0;
        usleep(100000);
    }
    fprintf(stderr, "pane never showed %d x \"%s\":\n%s\n", want, needle, pane());
    return -1;
}

/* One purchase with a demo card; amount in minor units is the txn's tag. */
static int purchase(const char *term, const char *pan, const char *pin, const char *ccy,
                    uint64_t amount, char rc[3])
{
    struct sim_txn x;
    struct sim_resp r;
    stack_txn(&x, SIM_T_PURCHASE, pan, pin, amount);
    snprintf(x.currency, sizeof x.currency, "%s", ccy);
    if (stack_send(&S, stack_term(&S, term), &x, &r, NULL) != 0)
        return -1;
    memcpy(rc, r.rc, 3);
    return 0;
}

/* Background traffic on TERM0002 (XOF card: whole amounts, tag 1000 + k). */
static atomic_int bg_sent, bg_failed;
static atomic_bool bg_stop;

static void *background(void *arg)
{
    for (int k = 1; !atomic_load(&bg_stop) && k < 900; k++) {
        char rc[3];
        if (purchase("TERM0002", "4890020000000029", "4321", "952", 1000 + (uint64_t)k, rc) == 0 &&
            strcmp(rc, "00") == 0)
            atomic_fetch_add(&bg_sent, 1);
        else
            atomic_fetch_add(&bg_failed, 1);
    }
    return NULL;
}

static void wait_bg(int n)
{
    for (int t = 0; t < 60000 && atomic_load(&bg_sent) < n; t += 10)
        usleep(10000);
    assert_true(atomic_load(&bg_sent) >= n);
}

static void hup_switch(void)
{
    assert_int_equal(stack_kill(S.sw, SIGHUP), 0);
}

/* Waits until a file holds at least one line with needle (hang guard only). */
static void wait_file(const char *path, const char *needle)
{
    for (int t = 0; t < 30000 && ts_file_lines_with(path, needle) == 0; t += 20)
        usleep(20000);
    assert_true(ts_file_lines_with(path, needle) > 0);
}

static void test_console_under_tmux(void **state)
{
    char cmd[1200], status[512];
    snprintf(cmd, sizeof cmd,
             "tmux -L %s -f /dev/null start-server \\; set-option -g history-limit 50000 "
             "\\; new-session -d -s con -x 160 -y 40 \"exec '%s' '%s'\" "
             "\\; set-option -t con remain-on-exit on",
             sock, ts_bin("atlas-console"), S.switch_log);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(wait_pane("following from its end", 1), 0);

    /* Twelve purchases on TERM0001 (MAD: 2 decimals), the 6th with a wrong PIN. */
    int sent = 0;
    for (int k = 1; k <= 12; k++) {
        char rc[3];
        assert_int_equal(purchase("TERM0001", "4890010000000012", k == 6 ? "9999" : "1234", "504",
                                  100 + (uint64_t)k, rc),
                         0);
        assert_string_equal(rc, k == 6 ? "55" : "00");
        sent++;
    }
    assert_int_equal(wait_pane(" 0200 purchase TERM0001 489001******0012 ", sent), 0);
    const char *p = pane();
    for (int k = 1; k <= 12; k++) {
        char want[96];
        snprintf(want, sizeof want, "        1.%02d MAD %s", k,
                 k == 6 ? "55 incorrect PIN" : "00 approved");
        assert_int_equal(ts_count(p, want), 1);
    }
    assert_null(strstr(p, "4890010000000012")); /* only masked PANs, as logged */
    assert_null(strstr(p, "MALFORMED"));

    /* The status line: bottom of the pane, within 80 columns, with the
     * issuer's link (learnt from the log written before the console
     * started) and figures. Traffic keeps flowing while we look, so the
     * 10-second window is never empty however slow the machine. */
    bool ok = false;
    for (int i = 0; i < 120 && !ok; i++) {
        char rc[3];
        assert_int_equal(
            purchase("TERM0001", "4890010000000012", "1234", "504", 100 + (uint64_t)(13 + i), rc),
            0);
        sent++;
        usleep(200000);
        last_line(pane(), status, sizeof status);
        ok = strlen(status) <= 79 && strstr(status, " tps | appr ") && strstr(status, "% | p50 ") &&
             strstr(status, " p99 ") && strstr(status, " | err ") && strstr(status, "WALLET1:up") &&
             strncmp(status, "0.0 tps", 7) != 0;
    }
    if (!ok)
        fail_msg("status line not as expected: \"%s\"", status);

    /* Rotation under traffic: mv, lines still land in the renamed file until
     * SIGHUP, then in the new one. */
    char rotated[400];
    snprintf(rotated, sizeof rotated, "%s.1", S.switch_log);
    atomic_store(&bg_sent, 0);
    atomic_store(&bg_failed, 0);
    atomic_store(&bg_stop, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, background, NULL), 0);
    wait_bg(5);
    assert_int_equal(rename(S.switch_log, rotated), 0);
    int at_mv = atomic_load(&bg_sent);
    wait_bg(at_mv + 5);
    hup_switch();
    wait_file(S.switch_log, "\"event\":\"reload\"");
    int at_hup = atomic_load(&bg_sent);
    wait_bg(at_hup + 5);
    atomic_store(&bg_stop, true);
    pthread_join(th, NULL);
    int bg = atomic_load(&bg_sent);
    assert_int_equal(atomic_load(&bg_failed), 0);

    /* switchd: every answered transaction is in exactly one of the files. */
    const char *needle = "\"terminal\":\"TERM0002\"";
    for (int t = 0;
         t < 30000 &&
         ts_file_lines_with(rotated, needle) + ts_file_lines_with(S.switch_log, needle) < bg;
         t += 50)
        usleep(50000);
    assert_int_equal(ts_file_lines_with(rotated, needle) + ts_file_lines_with(S.switch_log, needle),
                     bg);
    assert_true(ts_file_lines_with(rotated, needle) >= at_mv + 5); /* written after the mv too */
    assert_true(ts_file_lines_with(S.switch_log, needle) >= 5);

    /* The console: each of them exactly once, TERM0001's lines untouched. */
    assert_int_equal(wait_pane(" 0200 purchase TERM0002 489002******0029 ", bg), 0);
    p = pane();
    assert_int_equal(ts_count(p, " 0200 purchase TERM0002 "), bg);
    for (int k = 1; k <= bg; k++) {
        char want[64];
        snprintf(want, sizeof want, " %d XOF 00 approved", 1000 + k);
        if (ts_count(p, want) != 1)
            fail_msg("txn %d of TERM0002 shown %d times", k, ts_count(p, want));
    }
    assert_int_equal(ts_count(p, " 0200 purchase TERM0001 "), sent);
    assert_non_null(strstr(p, "was rotated: following the new file"));
    assert_null(strstr(p, "MALFORMED"));
    last_line(p, status, sizeof status);
    assert_true(strlen(status) <= 79);
    assert_non_null(strstr(status, " tps | appr "));
}

/* switchd alone: several rotations while a terminal keeps sending; the lines
 * across all the files are exactly the transactions answered. */
static void test_sighup_loses_no_line(void **state)
{
    const char *needle = "\"terminal\":\"TERM0002\"";
    char paths[4][400];
    int before = ts_file_lines_with(S.switch_log, needle);
    atomic_store(&bg_sent, 0);
    atomic_store(&bg_failed, 0);
    atomic_store(&bg_stop, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, background, NULL), 0);
    for (int i = 0; i < 3; i++) {
        wait_bg(atomic_load(&bg_sent) + 3);
        snprintf(paths[i], sizeof paths[i], "%s.r%d", S.switch_log, i);
        assert_int_equal(rename(S.switch_log, paths[i]), 0);
        wait_bg(atomic_load(&bg_sent) + 2);
        hup_switch();
        wait_file(S.switch_log, "\"event\":\"reload\"");
    }
    wait_bg(atomic_load(&bg_sent) + 3);
    atomic_store(&bg_stop, true);
    pthread_join(th, NULL);
    int bg = atomic_load(&bg_sent);
    assert_int_equal(atomic_load(&bg_failed), 0);
    snprintf(paths[3], sizeof paths[3], "%s", S.switch_log);
    int total = -before;
    for (int t = 0; t < 30000; t += 50) {
        total = -before;
        for (int i = 0; i < 4; i++)
            total += ts_file_lines_with(paths[i], needle);
        if (total >= bg)
            break;
        usleep(50000);
    }
    assert_int_equal(total, bg);
    for (int i = 1; i < 4; i++) /* every file got lines of its own period */
        assert_true(ts_file_lines_with(paths[i], needle) > 0);
}

/* The last line of a given tmux session's pane. */
static void status_of(const char *session, char *out, size_t cap)
{
    last_line(capture(session, ""), out, cap);
}

/* Polls a session's status line until it holds want (hang guard only). */
static int wait_status(const char *session, const char *want)
{
    char st[512] = "";
    for (int t = 0; t < 60000; t += 100) {
        status_of(session, st, sizeof st);
        if (strstr(st, want))
            return 0;
        usleep(100000);
    }
    fprintf(stderr, "%s: status never showed \"%s\": \"%s\"\n", session, want, st);
    return -1;
}

static void new_session(const char *name, const char *args)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "tmux -L %s new-session -d -s %s -x 120 -y 20 \"exec '%s' %s\" "
             "\\; set-option -t %s remain-on-exit on",
             sock, name, ts_bin("atlas-console"), args, name);
    assert_int_equal(system(cmd), 0);
}

/* --metrics: link states from switchd's /metrics, even with no log to read
 * (the console waits for a file that does not exist), and a change of state
 * (issuer-sim stopped) seen there. A dead metrics address is reported. */
static void test_metrics(void **state)
{
    char args[800];
    snprintf(args, sizeof args, "--metrics http://127.0.0.1:%u/metrics '%s/no-such.log'",
             S.metrics_port, S.dir);
    new_session("met", args);
    assert_int_equal(wait_status("met", "WALLET1:up"), 0);

    snprintf(args, sizeof args, "--metrics http://127.0.0.1:%u/metrics '%s'", ts_free_port(),
             S.switch_log);
    new_session("dead", args);
    char cmd[600];
    for (int t = 0; t < 60000; t += 100) {
        snprintf(cmd, sizeof cmd, "tmux -L %s capture-pane -p -t dead > '%s'", sock, pane_file);
        if (system(cmd) == 0 && ts_file_contains(pane_file, "--- metrics: no answer ---"))
            break;
        usleep(100000);
    }
    assert_true(ts_file_contains(pane_file, "--- metrics: no answer ---"));

    /* The issuer goes away: the switch's link leaves "up". */
    ts_stop(S.issuer, SIGTERM, 10000);
    S.issuer = 0;
    char st[512] = "";
    bool left_up = false;
    for (int t = 0; t < 60000 && !left_up; t += 100) {
        status_of("met", st, sizeof st);
        left_up = strstr(st, "WALLET1:") && !strstr(st, "WALLET1:up");
        usleep(100000);
    }
    if (!left_up)
        fail_msg("link still up in \"%s\"", st);
    assert_true(strlen(st) <= 79);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_console_under_tmux),
        cmocka_unit_test(test_sighup_loses_no_line),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
