/* `acquirer-sim load` against the real stack (sw_stack: PostgreSQL, hsm-sim, issuer-sim,
 * switchd as processes on loopback): a few seconds at a low open-loop rate, first on the
 * demo terminal TERM0001, then on load terminals registered by `acquirer-sim load-seed`
 * (switchd reloads its reference data on SIGHUP). Asserts the JSON report's fields,
 * answered == sent, no error, and that every approval the harness counted is a row with
 * DE 39 00 in switch.authorizations. No timing assertion: latencies are only required
 * to be present and ordered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;

static int setup(void **state)
{
    (void)state;
    struct stack_opts o = { .issuer = true, .issuer_timeout_ms = 3000, .wallets = 200 };
    return stack_start(&S, &o);
}

static int teardown(void **state)
{
    (void)state;
    stack_stop(&S);
    return 0;
}

/* Runs acquirer-sim with args (NULL-terminated), output to out; returns its exit status. */
static int run_sim(const char *const args[], const char *out)
{
    pid_t p = ts_spawn("acquirer-sim", args, out);
    assert_true(p > 0);
    int st = 0;
    /* The child ends on its own (its duration plus the drain); waitpid is the hang guard's
     * business (ctest TIMEOUT). */
    assert_int_equal(waitpid(p, &st, 0), p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static json_t *load_report(const char *path)
{
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o)
        fprintf(stderr, "report %s: %s (line %d)\n", path, je.text, je.line);
    assert_non_null(o);
    static const char *const fields[] = {
        "requested_tps", "achieved_tps", "sent",   "answered", "errors", "timeouts",
        "p50_ms",        "p90_ms",       "p99_ms", "p999_ms",  "max_ms", "all_approved"
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *v = json_object_get(o, fields[i]);
        if (!v || !json_is_number(v))
            fprintf(stderr, "report field %s missing\n", fields[i]);
        assert_true(v && json_is_number(v));
    }
    assert_true(json_is_object(json_object_get(o, "rc")));
    return o;
}

static long long jint(json_t *o, const char *k)
{
    return (long long)json_number_value(json_object_get(o, k));
}

static void check_run(json_t *o, const char *term_like, long long rate, double seconds)
{
    long long sent = jint(o, "sent"), answered = jint(o, "answered");
    assert_int_equal(jint(o, "requested_tps"), rate);
    assert_int_equal(sent, (long long)(rate * seconds)); /* every arrival was sent */
    assert_int_equal(answered, sent);
    assert_int_equal(jint(o, "errors"), 0);
    assert_int_equal(jint(o, "timeouts"), 0);
    assert_int_equal(jint(o, "unsent"), 0);
    json_t *rc = json_object_get(o, "rc");
    long long ok = (long long)json_integer_value(json_object_get(rc, "00"));
    assert_int_equal(ok, answered); /* the load cards are active, funded, right PINs */
    double p50 = json_number_value(json_object_get(o, "p50_ms"));
    double p99 = json_number_value(json_object_get(o, "p99_ms"));
    double mx = json_number_value(json_object_get(o, "max_ms"));
    assert_true(p50 > 0 && p50 <= p99 && p99 <= mx);
    /* Every approval of the whole run (warm-up included) is in the journal, and no more. */
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.authorizations WHERE terminal_id LIKE '%s' AND "
             "response_code = '00'",
             term_like);
    long long all = jint(o, "all_approved");
    assert_true(all >= answered);
    assert_int_equal(stack_scalar(&S, sql), all);
    json_t *types = json_object_get(o, "types");
    assert_non_null(json_object_get(types, "purchase"));
}

static void test_load_demo_terminal(void **state)
{
    (void)state;
    char host[32], report[320], out[320], state_dir[320];
    snprintf(host, sizeof host, "127.0.0.1:%u", S.acq_port);
    snprintf(report, sizeof report, "%s/demo.json", S.dir);
    snprintf(out, sizeof out, "%s/demo.out", S.dir);
    snprintf(state_dir, sizeof state_dir, "%s/acq-state", S.dir);
    const char *args[] = { "load",        "--host",  host,       "--rate",   "200",
                           "--duration",  "3",       "--warmup", "0.5",      "--connections",
                           "2",           "--cards", "200",      "--report", report,
                           "--state-dir", state_dir, "--quiet",  NULL };
    int st = run_sim(args, out);
    if (st != 0)
        fprintf(stderr, "acquirer-sim load exited %d; see %s\n", st, out);
    assert_int_equal(st, 0);
    json_t *o = load_report(report);
    check_run(o, "TERM0001", 200, 3);
    json_decref(o);
    assert_int_equal(ts_file_contains(out, "throughput"), 1);
}

static void test_load_seeded_terminals(void **state)
{
    (void)state;
    char sqlf[320], out[320], host[32], report[320];
    snprintf(sqlf, sizeof sqlf, "%s/load-seed.sql", S.dir);
    const char *sargs[] = { "load-seed", "--terminals", "4", NULL };
    assert_int_equal(run_sim(sargs, sqlf), 0);
    FILE *f = fopen(sqlf, "r");
    assert_non_null(f);
    static char sql[1 << 16];
    size_t n = fread(sql, 1, sizeof sql - 1, f);
    fclose(f);
    sql[n] = '\0';
    PGconn *c = PQconnectdb(S.conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fprintf(stderr, "load-seed SQL: %s", PQerrorMessage(c));
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.terminals WHERE terminal_id "
                                      "LIKE 'LOAD%'"),
                     4);
    /* switchd picks the new terminals up on SIGHUP (4 demo + 4 load terminals). */
    assert_int_equal(kill(S.sw, SIGHUP), 0);
    int loaded = 0;
    for (int i = 0; i < 200 && !loaded; i++) {
        loaded = ts_file_contains(S.switch_log, "\"terminals\":8");
        if (!loaded)
            usleep(50000);
    }
    assert_int_equal(loaded, 1);

    snprintf(host, sizeof host, "127.0.0.1:%u", S.acq_port);
    snprintf(report, sizeof report, "%s/load.json", S.dir);
    snprintf(out, sizeof out, "%s/load.out", S.dir);
    const char *args[] = {
        "load",    "--host",   host,       "--rate",        "200",     "--duration",
        "2",       "--warmup", "0.5",      "--connections", "4",       "--load-terminals",
        "--cards", "200",      "--report", report,          "--quiet", NULL
    };
    int st = run_sim(args, out);
    if (st != 0)
        fprintf(stderr, "acquirer-sim load exited %d; see %s\n", st, out);
    assert_int_equal(st, 0);
    json_t *o = load_report(report);
    check_run(o, "LOAD%", 200, 2);
    assert_int_equal(jint(o, "connections_up"), 4);
    json_decref(o);
    /* Every load terminal carried traffic. */
    assert_int_equal(stack_scalar(&S, "SELECT count(DISTINCT terminal_id) FROM "
                                      "switch.authorizations WHERE terminal_id LIKE 'LOAD%'"),
                     4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_demo_terminal),
        cmocka_unit_test(test_load_seeded_terminals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
