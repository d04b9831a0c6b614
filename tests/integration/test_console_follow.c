/* atlas-console as a follower, driven by a log the test writes itself the way
 * switchd does (O_APPEND, one write per line): start at the end, lines split
 * across writes, malformed and over-long lines, rename rotation with the
 * writer still on the old file, copytruncate, delete + recreate; then
 * --from-start --no-follow with filters, and `summary` over both files.
 * The real program; its output is a file (so: no colour, no status line). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testsupport.h"

static char dir[256], logp[320], outp[320];
static int wfd = -1; /* the "switchd" side */

/* One txn line as switch/txn.c writes it, for terminal id `term`. */
static void txn_line(char *buf, size_t cap, const char *term, const char *rc)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap,
             "{\"ts\":\"%s.%06ldZ\",\"level\":\"info\",\"prog\":\"switchd\",\"event\":\"txn\","
             "\"listener\":\"acq\",\"acquirer\":\"100001\",\"terminal\":\"%s\",\"mti\":\"0200\","
             "\"proc\":\"000000\",\"amount\":\"000000001250\",\"currency\":\"504\","
             "\"pan\":\"489001******0012\",\"stan\":\"000001\",\"rrn\":\"\",\"issuer\":\"WALLET1\","
             "\"issuer_stan\":1,\"rc\":\"%s\",\"auth_code\":\"\",\"outcome\":\"%s\","
             "\"lat_us\":2500,\"lat_mac_us\":0,\"lat_pin_us\":0,\"lat_issuer_us\":0,"
             "\"lat_journal_us\":0}\n",
             when, ts.tv_nsec / 1000, term, rc, strcmp(rc, "00") == 0 ? "approved" : "declined");
}

static void write_str(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void write_txn(const char *term, const char *rc)
{
    char line[1024];
    txn_line(line, sizeof line, term, rc);
    write_str(wfd, line);
}

static int open_log(void)
{
    int fd = open(logp, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    assert_true(fd >= 0);
    return fd;
}

/* The whole output file ("" while there is none); valid until the next call. */
static const char *output(void)
{
    static char *text;
    free(text);
    text = ts_read_file(outp, 0, NULL);
    return text ? text : "";
}

/* Polls the output until needle shows up (hang guard only: 30 s). */
static int wait_out(const char *needle)
{
    for (int t = 0; t < 30000; t += 20) {
        if (strstr(output(), needle))
            return 0;
        usleep(20000);
    }
    fprintf(stderr, "no \"%s\" in the console's output:\n%s\n", needle, output());
    return -1;
}

static void test_follow(void **state)
{
    const char *d = ts_tmpdir("console");
    assert_non_null(d);
    snprintf(dir, sizeof dir, "%s", d);
    snprintf(logp, sizeof logp, "%s/switchd.log", dir);
    snprintf(outp, sizeof outp, "%s/console.out", dir);

    /* Lines before the console starts are not shown (it starts at the end,
     * after the last complete line). */
    wfd = open_log();
    write_txn("PRE00001", "00");
    write_txn("PRE00002", "00");
    write_str(wfd, "{\"ts\":\"2026-11-26T15:44:41Z\",\"event\":\"half"); /* no newline */

    /* A long grace: the old-file drain below must not depend on speed. */
    const char *args[] = { "--no-color", "--rotate-grace", "600000", logp, NULL };
    pid_t con = ts_spawn("atlas-console", args, outp);
    assert_true(con > 0);
    assert_int_equal(wait_out("following from its end"), 0);
    write_str(wfd, " line\"}\n"); /* ends the half line the console skipped */

    for (int i = 1; i <= 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "TRM%05d", i);
        write_txn(id, i == 3 ? "51" : "00");
    }
    assert_int_equal(wait_out("TRM00005"), 0);
    const char *o = output();
    assert_int_equal(ts_count(o, "PRE0000"), 0);
    /* The line being written when it started is shown once, whole. */
    assert_int_equal(ts_count(o, "half line"), 1);
    assert_int_equal(ts_count(o, "MALFORMED"), 0);
    assert_non_null(strstr(o, " 0200 purchase TRM00001 489001******0012"));
    assert_non_null(strstr(o, "12.50 MAD 00 approved"));
    assert_non_null(strstr(o, "TRM00003 489001******0012        12.50 MAD 51 insufficient funds"));

    /* A line written in two pieces is shown once, whole. */
    char line[1024];
    txn_line(line, sizeof line, "TRM00006", "00");
    assert_int_equal(write(wfd, line, 100), 100);
    usleep(300000); /* let the console see the first half (either way, same result) */
    write_str(wfd, line + 100);
    /* Malformed, truncated and over-long lines are reported and skipped. */
    write_str(wfd, "this is not json\n");
    write_str(wfd, "{\"ts\":\"2026-11-26T15:44:41Z\",\"event\":\"txn\",\"pan\":\"4890\n");
    static char big[20001];
    memset(big, 'x', sizeof big - 1);
    write_str(wfd, big);
    write_str(wfd, "\n");
    write_txn("TRM00007", "00");
    assert_int_equal(wait_out("TRM00007"), 0);
    o = output();
    assert_int_equal(ts_count(o, "TRM00006"), 1);
    assert_int_equal(ts_count(o, "MALFORMED"), 3);
    assert_non_null(strstr(o, "not valid JSON"));
    assert_non_null(strstr(o, "truncated line"));
    assert_non_null(strstr(o, "line too long"));
    assert_null(strstr(o, "xxxxxxxx"));
    assert_null(strstr(o, "\"pan\":\"4890")); /* never echoes the raw line */

    /* Rename rotation: the writer keeps appending to the renamed file until
     * it reopens; the console must read those lines before the new file's. */
    char rotated[340];
    snprintf(rotated, sizeof rotated, "%s.1", logp);
    assert_int_equal(rename(logp, rotated), 0);
    write_txn("TRM00008", "00"); /* to the old (renamed) file */
    usleep(300000);
    write_txn("TRM00009", "00");
    int slow = wfd;   /* a second writer that has not reopened yet */
    wfd = open_log(); /* the writer's reopen (switchd: SIGHUP) */
    write_txn("TRM00010", "00");
    write_txn("TRM00011", "05");
    assert_int_equal(wait_out("TRM00011"), 0);
    /* The console follows the new file now; the old one is still read. */
    char late[1024];
    txn_line(late, sizeof late, "OLD00001", "00");
    write_str(slow, late);
    close(slow);
    assert_int_equal(wait_out("OLD00001"), 0);
    o = output();
    for (int i = 8; i <= 11; i++) {
        char id[16];
        snprintf(id, sizeof id, "TRM%05d", i);
        assert_int_equal(ts_count(o, id), 1);
    }
    assert_true(strstr(o, "TRM00008") < strstr(o, "TRM00009"));
    assert_true(strstr(o, "TRM00009") < strstr(o, "TRM00010"));
    assert_non_null(strstr(o, "was rotated"));

    /* copytruncate: copy, then truncate in place; the writer (O_APPEND)
     * carries on at the new end. */
    char copy[340], cmd[1024];
    snprintf(copy, sizeof copy, "%s.2", logp);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", logp, copy);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(truncate(logp, 0), 0);
    write_txn("TRM00012", "00");
    assert_int_equal(wait_out("TRM00012"), 0);
    assert_non_null(strstr(output(), "was truncated"));
    assert_int_equal(ts_count(output(), "TRM00010"), 1); /* nothing re-read */

    /* copytruncate again, the file refilled past the console's offset at
     * once (probably before its next poll): every line still shown once. */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s.3'", logp, logp);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(truncate(logp, 0), 0);
    for (int i = 0; i < 40; i++) {
        char id[16];
        snprintf(id, sizeof id, "BLK%05d", i);
        write_txn(id, "00");
    }
    assert_int_equal(wait_out("BLK00039"), 0);
    o = output();
    for (int i = 0; i < 40; i++) {
        char id[16];
        snprintf(id, sizeof id, "BLK%05d", i);
        assert_int_equal(ts_count(o, id), 1);
    }
    assert_int_equal(ts_count(o, "MALFORMED"), 3);
    assert_int_equal(ts_count(o, "TRM00012"), 1);

    /* Deleted, then created again later. */
    close(wfd);
    assert_int_equal(unlink(logp), 0);
    usleep(300000);
    wfd = open_log();
    write_txn("TRM00013", "00");
    assert_int_equal(wait_out("TRM00013"), 0);

    /* A TERM stops it cleanly. */
    int st = ts_stop(con, SIGTERM, 10000);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    close(wfd);
    wfd = -1;
    assert_int_equal(ts_count(output(), "TRM000"), 13);
    assert_null(strstr(output(), "Sanitizer")); /* an ASan build reports here */
    assert_null(strstr(output(), "runtime error"));
}

/* --from-start --no-follow with filters, and the summary of the rotated set. */
static void test_filters_and_summary(void **state)
{
    char out2[340];
    snprintf(out2, sizeof out2, "%s/filtered.out", dir);
    char rotated[340];
    snprintf(rotated, sizeof rotated, "%s.1", logp);

    /* The rotated file holds PRE1..2, the completed half line (valid JSON),
     * TRM1..9, the three bad lines and OLD00001. */
    const char *a1[] = { "--from-start", "--no-follow", "--rc", "51", rotated, NULL };
    pid_t p = ts_spawn("atlas-console", a1, out2);
    int st = ts_stop(p, 0, 30000); /* signal 0: only waits for it to end */
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *buf = ts_read_file(out2, 0, NULL);
    assert_non_null(buf);
    assert_int_equal(ts_count(buf, " 0200 purchase "), 1);
    assert_non_null(strstr(buf, "TRM00003"));
    assert_int_equal(ts_count(buf, "MALFORMED"), 3); /* always shown, whatever the filters */
    free(buf);

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' summary '%s' '%s.2' > '%s/summary.out'",
             ts_bin("atlas-console"), rotated, logp, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(out2, sizeof out2, "%s/summary.out", dir);
    assert_true(ts_file_contains(out2, "Transactions: 14 answered"));
    /* TRM00003 (51) and TRM00011 (05) declined: 12 of 14 approved. */
    assert_true(ts_file_contains(out2, "approval rate 85.7% (12 of 14 0100/0200 requests)"));
    assert_true(ts_file_contains(out2, "lines 18 (malformed 3)"));
    /* A missing file is an error, the others are still summarised. */
    snprintf(cmd, sizeof cmd, "'%s' summary '%s/nope' '%s' > /dev/null 2>&1",
             ts_bin("atlas-console"), dir, rotated);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_follow),
        cmocka_unit_test(test_filters_and_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
