/* `acquirer-sim load` against the real stack (sw_stack: PostgreSQL, hsm-sim, issuer-sim,
 * switchd as processes on loopback): a few seconds at a low open-loop rate, first on the
 * demo terminal TERM0001, then on load terminals registered by `acquirer-sim load-seed`
 * (switchd reloads its reference data on SIGHUP). Asserts the JSON report's fields,
 * answered == sent, no error, and that every approval the harness counted is a row with
 * DE 39 00 in switch.authorizations. No timing assertion: latencies are only required
 * to be present and ordered. Last, the harness under faults: switchd is stalled (SIGSTOP)
 * and then killed (-9) and restarted in the middle of a run with --record; the harness
 * must reconnect, reverse every unanswered money-moving request until an 0410 comes, and
 * write one well-formed record line per request sent. (What the switch and the issuer
 * did with the money is the reconciliation tool's business, not asserted here.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <signal.h>
#include <stdbool.h>
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
    struct stack_opts o = { .issuer = true, .issuer_timeout_ms = 3000, .wallets = 200 };
    return stack_setup(state, &S, &o);
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
    const struct stack_load_opts lo = {
        .tag = "demo", .rate = 200, .seconds = 3, .connections = 2
    };
    struct stack_load l;
    assert_int_equal(stack_load_run(&S, &lo, &l), 0);
    json_t *o = load_report(l.report);
    check_run(o, "TERM0001", 200, 3);
    json_decref(o);
    assert_int_equal(ts_file_contains(l.out, "throughput"), 1);
}

static void test_load_seeded_terminals(void **state)
{
    (void)state;
    /* switchd picks the new terminals up on SIGHUP (4 demo + 4 load terminals). */
    assert_int_equal(stack_seed_load_terminals(&S, 4), 0);
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.terminals WHERE terminal_id "
                                      "LIKE 'LOAD%'"),
                     4);
    const struct stack_load_opts lo = {
        .tag = "load", .rate = 200, .seconds = 2, .connections = 4, .load_terminals = true
    };
    struct stack_load l;
    assert_int_equal(stack_load_run(&S, &lo, &l), 0);
    json_t *o = load_report(l.report);
    check_run(o, "LOAD%", 200, 2);
    assert_int_equal(jint(o, "connections_up"), 4);
    json_decref(o);
    /* Every load terminal carried traffic. */
    assert_int_equal(stack_scalar(&S, "SELECT count(DISTINCT terminal_id) FROM "
                                      "switch.authorizations WHERE terminal_id LIKE 'LOAD%'"),
                     4);
}

/* ------------------------------------------------------------------ faults and the record */

static bool digits(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* The next space-separated token of a record line, which must be key=VALUE; returns VALUE
 * (NULL when the token is missing or has another key). */
static const char *kv(char **save, const char *key)
{
    char *tok = strtok_r(NULL, " ", save);
    size_t kl = strlen(key);
    if (!tok || strncmp(tok, key, kl) != 0 || tok[kl] != '=') {
        fprintf(stderr, "record: expected %s=, got '%s'\n", key, tok ? tok : "(end)");
        return NULL;
    }
    return tok + kl + 1;
}

struct recline {
    char mti[5];
    bool answered, rev, rev_answered;
    unsigned rev_tries;
};

/* Checks one "req ..." line (newline stripped) against the documented format, field by
 * field and in order. 0 when well-formed. */
static int check_line(char *line, struct recline *out)
{
    char *save = NULL;
    const char *v;
    memset(out, 0, sizeof *out);
    char *first = strtok_r(line, " ", &save);
    if (!first || strcmp(first, "req") != 0)
        return -1;
    if (!(v = kv(&save, "terminal")) || strlen(v) != 8)
        return -1;
    if (!(v = kv(&save, "stan")) || !digits(v, 6))
        return -1;
    if (!(v = kv(&save, "de7")) || !digits(v, 10))
        return -1;
    if (!(v = kv(&save, "mti")) || !digits(v, 4))
        return -1;
    snprintf(out->mti, sizeof out->mti, "%s", v);
    bool balance = strcmp(out->mti, "0100") == 0, reversal = out->mti[1] == '4';
    if (!(v = kv(&save, "proc")) || !digits(v, 6))
        return -1;
    if (!(v = kv(&save, "amount")) || (balance ? strcmp(v, "-") != 0 : !digits(v, strlen(v))))
        return -1;
    if (!(v = kv(&save, "currency")) || !digits(v, 3))
        return -1;
    /* Masked: 6 digits, stars, 4 digits (the load cards have 16). */
    if (!(v = kv(&save, "pan")) || strlen(v) != 16 || strspn(v, "0123456789") != 6 ||
        strspn(v + 6, "*") != 6 || !digits(v + 12, 4))
        return -1;
    if (reversal) {
        if (!(v = kv(&save, "orig_mti")) || strcmp(v, "0200") != 0)
            return -1;
        if (!(v = kv(&save, "orig_stan")) || !digits(v, 6))
            return -1;
        if (!(v = kv(&save, "orig_de7")) || !digits(v, 10))
            return -1;
    }
    if (!(v = kv(&save, "answered")) || (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0))
        return -1;
    out->answered = strcmp(v, "yes") == 0;
    if (out->answered) {
        if (!(v = kv(&save, "rc")) || strlen(v) != 2)
            return -1;
        if (!(v = kv(&save, "auth")) || (strcmp(v, "-") != 0 && strlen(v) != 6))
            return -1;
    }
    if (!(v = kv(&save, "rev")) || (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0))
        return -1;
    out->rev = strcmp(v, "yes") == 0;
    if (out->rev) {
        if (!(v = kv(&save, "rev_stan")) || !(digits(v, 6) || strcmp(v, "-") == 0))
            return -1;
        if (!(v = kv(&save, "rev_de7")) || !(digits(v, 10) || strcmp(v, "-") == 0))
            return -1;
        if (!(v = kv(&save, "rev_tries")) || !digits(v, strlen(v)) || !*v)
            return -1;
        out->rev_tries = (unsigned)atoi(v);
        if (!(v = kv(&save, "rev_rc")) || (strlen(v) != 2 && strcmp(v, "none") != 0))
            return -1;
        out->rev_answered = strcmp(v, "none") != 0;
    }
    return strtok_r(NULL, " ", &save) == NULL ? 0 : -1;
}

static void test_load_survives_switch_kill(void **state)
{
    (void)state;
    /* Timeout 1 s: requests sent into the stalled switch time out, their 0400s too (0401
     * follows); the kill then ends every connection with tries in flight. Errors are the
     * point here, so any error rate is accepted; an abandoned reversal (exit 5) is not. */
    struct stack_load_opts lo = stack_load_under_faults("kill");
    lo.verbose = true;
    struct stack_load l;
    assert_int_equal(stack_load_start(&S, &lo, &l), 0);
    usleep(2000000);
    assert_int_equal(stack_kill(S.sw, SIGSTOP), 0); /* a stalled switch: requests time out */
    usleep(3000000);
    /* then it dies: connections end */
    assert_int_not_equal(stack_restart_switch(&S, SIGKILL), -1);
    assert_int_equal(stack_load_wait(&l, -1), 0);

    json_t *o = load_report(l.report);
    long long requests = jint(o, "all_requests"), lines = jint(o, "record_lines");
    assert_true(jint(o, "connection_losses") >= 1);
    assert_true(jint(o, "reconnects") >= 1); /* the harness came back to the new switchd */
    long long revs = jint(o, "reversals");
    assert_true(revs >= 1);
    assert_int_equal(jint(o, "reversals_answered"), revs);
    assert_int_equal(jint(o, "reversals_abandoned"), 0);
    assert_true(jint(o, "reversal_tries") > jint(o, "reversals_sent")); /* 0401s went out */
    assert_string_equal(json_string_value(json_object_get(o, "record_file")), l.record);
    assert_int_equal(lines, requests);
    json_decref(o);
    assert_int_equal(ts_file_contains(l.out, "reversals of unanswered requests"), 1);

    FILE *f = fopen(l.record, "r");
    assert_non_null(f);
    static char line[1024];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "# atlas-load-record 1\n");
    long long n = 0, reversed = 0, repeated = 0, unanswered_money = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        assert_true(len > 0 && line[len - 1] == '\n');
        line[len - 1] = '\0';
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", line);
        struct recline rl;
        if (check_line(line, &rl) != 0)
            fprintf(stderr, "malformed record line: %s\n", copy);
        assert_int_equal(check_line(copy, &rl), 0);
        n++;
        if (strcmp(rl.mti, "0200") == 0 && !rl.answered) {
            /* Money may have moved: reversed, and the reversal answered. */
            unanswered_money++;
            assert_true(rl.rev);
            assert_true(rl.rev_answered);
            assert_true(rl.rev_tries >= 1);
        }
        if (rl.mti[1] == '4')
            assert_true(rl.answered); /* a load-mix reversal is repeated until answered */
        if (rl.answered)
            assert_false(rl.rev);
        reversed += rl.rev;
        repeated += rl.rev && rl.rev_tries >= 2;
    }
    fclose(f);
    print_message("%lld record lines, %lld unanswered 0200s, %lld reversed (%lld repeated as "
                  "0401)\n",
                  n, unanswered_money, reversed, repeated);
    assert_int_equal(n, requests);
    assert_true(reversed >= 1);
    assert_true(repeated >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_demo_terminal), cmocka_unit_test(test_load_seeded_terminals),
        cmocka_unit_test(test_load_survives_switch_kill), /* last: it restarts switchd */
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
