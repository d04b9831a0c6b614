/* Two switchd instances on one database behind HAProxy (docs/switchd.md "Instances"): a
 * duplicate sent to one after its original went through the other; issuer STANs in disjoint
 * slots; a reference-data NOTIFY reaching both; a reversal claimed by a killed instance
 * delivered by the other once its lease expired; and a load through HAProxy with one instance
 * killed -9, every terminal reconnected and served, reconciled without a mismatch. Real
 * processes: PostgreSQL, hsm-sim, issuer-sim, two switchd, HAProxy (Debian's haproxy, which
 * scripts/ensure-deps.sh installs: its absence fails the test, it is not skipped). */
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
#include <unistd.h>

#include "sw_stack.h"
#include "testsupport.h"

#define HAPROXY "/usr/sbin/haproxy"
#define LEASE   "lease_ms = 1500\ntakeover_inflight_ms = 3000\n"

static struct stack S; /* instance A: the stack's own switchd */
static struct stack B; /* instance B: the same stack, its own switchd, ports, log and spool */
static uint16_t Ha_port, Ha_pos_port;
static pid_t Ha_pid;
static uint16_t Shared_port; /* [listener shared]: both instances on it with reuseport = on */
static char Extra[600];
static char Ha_log[400];

/* B's configuration: A's, with B's log, metrics address, spool, listener ports and instance. */
static int write_b_conf(void)
{
    FILE *in = fopen(S.switch_conf, "r"), *out = fopen(B.switch_conf, "w");
    if (!in || !out)
        return -1;
    char line[1024], section[64] = "";
    while (fgets(line, sizeof line, in)) {
        if (line[0] == '[')
            snprintf(section, sizeof section, "%.*s", (int)strcspn(line, "\n"), line);
        if (strncmp(line, "log_file =", 10) == 0)
            fprintf(out, "log_file = %s\n", B.switch_log);
        else if (strncmp(line, "metrics_address =", 17) == 0)
            fprintf(out, "metrics_address = 127.0.0.1:%u\n", B.metrics_port);
        else if (strncmp(line, "spool_dir =", 11) == 0)
            fprintf(out, "spool_dir = %s/spool-b\n", B.dir);
        else if (strncmp(line, "instance_id =", 13) == 0)
            fprintf(out, "instance_id = ha-b\n");
        else if (strncmp(line, "stan_slot =", 11) == 0)
            fprintf(out, "stan_slot = 1\n");
        else if (strncmp(line, "address =", 9) == 0 && strcmp(section, "[listener acq]") == 0)
            fprintf(out, "address = 127.0.0.1:%u\n", B.acq_port);
        else if (strncmp(line, "address =", 9) == 0 && strcmp(section, "[listener pos]") == 0)
            fprintf(out, "address = 127.0.0.1:%u\n", B.pos_port);
        else
            fputs(line, out);
    }
    fclose(in);
    return fclose(out);
}

/* B's terminals: the demo terminals again (objects of their own: the copy of S shares S's),
 * aimed at B's listeners, their STANs 500 after A's so that the two never send one identity
 * unless a test means it. */
static int aim_terms(struct stack *s)
{
    char err[256];
    memset(&s->terms, 0, sizeof s->terms);
    if (sim_terms_builtin(&s->terms, err, sizeof err) != 0) {
        fprintf(stderr, "test_ha: %s\n", err);
        return -1;
    }
    uint32_t base = (uint32_t)(getpid() % 500) * 1000 + 501;
    for (size_t i = 0; i < s->terms.n; i++) {
        sim_term_set_counters(s->terms.t[i], base, base);
        struct sim_term *t = s->terms.t[i];
        snprintf(t->address, sizeof t->address, "127.0.0.1:%u",
                 t->framing == ISO_FRAME_TPDU ? s->pos_port : s->acq_port);
    }
    return 0;
}

static int start_b(void)
{
    return stack_start_switch(&B);
}

/* HAProxy in TCP mode in front of both, each checked on its /health (as scripts/instances.sh
 * writes it for ./run.sh --instances). */
static int start_haproxy(void)
{
    char cfg[400];
    snprintf(cfg, sizeof cfg, "%s/haproxy.cfg", S.dir);
    FILE *f = fopen(cfg, "w");
    if (!f)
        return -1;
    fprintf(f,
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 1h\n"
            "    timeout server 1h\n    option redispatch\n    retries 2\n"
            "    option httpchk GET /health\n    http-check expect status 200\n"
            "    default-server inter 300ms fall 2 rise 2\n"
            "frontend acq\n    bind 127.0.0.1:%u\n    default_backend acq\n"
            "backend acq\n    balance roundrobin\n"
            "    server a 127.0.0.1:%u check port %u\n    server b 127.0.0.1:%u check port %u\n"
            "frontend pos\n    bind 127.0.0.1:%u\n    default_backend pos\n"
            "backend pos\n    balance roundrobin\n"
            "    server a 127.0.0.1:%u check port %u\n    server b 127.0.0.1:%u check port %u\n",
            Ha_port, S.acq_port, S.metrics_port, B.acq_port, B.metrics_port, Ha_pos_port,
            S.pos_port, S.metrics_port, B.pos_port, B.metrics_port);
    if (fclose(f) != 0)
        return -1;
    const char *args[] = { "-db", "-f", cfg, NULL };
    Ha_pid = ts_spawn(HAPROXY, args, Ha_log);
    if (Ha_pid <= 0 || ts_wait_port(Ha_port, 10000) != 0) {
        fprintf(stderr, "test_ha: haproxy did not start (log %s)\n", Ha_log);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    if (access(HAPROXY, X_OK) != 0) {
        fprintf(stderr,
                "test_ha: %s is missing: install Debian's haproxy package"
                " (scripts/ensure-deps.sh does)\n",
                HAPROXY);
        return -1;
    }
    Shared_port = ts_free_port();
    /* stand_in = on lands in [issuer WALLET1], the section extra_conf follows; B's
     * configuration copies [listener shared] as it is: the same port */
    snprintf(Extra, sizeof Extra,
             "stand_in = on\n[listener shared]\naddress = 127.0.0.1:%u\ndialect = ascii87\n"
             "framing = 2b\nmax_connections = 100\nreuseport = on\n"
             "[switch]\ninstance_id = ha-a\nstan_slot = 0\nstan_slots = 2\n" LEASE,
             Shared_port);
    struct stack_opts o = {
        .issuer = true, .issuer_timeout_ms = 1000, .wallets = 64, .extra_conf = Extra
    };
    if (stack_setup(state, &S, &o) != 0 || stack_stand_in_rules(&S, "{00,01}", 50000, 80000) != 0)
        return -1;
    B = S;
    snprintf(B.switch_conf, sizeof B.switch_conf, "%s/switchd-b.conf", S.dir);
    snprintf(B.switch_log, sizeof B.switch_log, "%s/switchd-b.log", S.dir);
    snprintf(Ha_log, sizeof Ha_log, "%s/haproxy.log", S.dir);
    B.acq_port = ts_free_port();
    B.pos_port = ts_free_port();
    B.metrics_port = ts_free_port();
    Ha_port = ts_free_port();
    Ha_pos_port = ts_free_port();
    if (aim_terms(&B) != 0 || write_b_conf() != 0 || start_b() != 0 || start_haproxy() != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    if (Ha_pid > 0)
        ts_stop(Ha_pid, SIGTERM, 5000);
    if (B.sw > 0)
        ts_stop(B.sw, SIGTERM, 10000);
    sim_terms_free(&B.terms);
    return stack_teardown(state);
}

/* Each test starts with both instances and the issuer up. */
static int alive(void **state)
{
    (void)state;
    if (S.issuer > 0)
        stack_kill(S.issuer, SIGCONT); /* a test that failed while it was stopped */
    if (!ts_alive(S.sw) && stack_start_switch(&S) != 0)
        return -1;
    if (!ts_alive(B.sw) && start_b() != 0)
        return -1;
    if (S.issuer <= 0 && stack_start_issuer(&S) != 0)
        return -1;
    return stack_wait_journal_up(&S, 10000) == 0 && stack_wait_journal_up(&B, 10000) == 0 ? 0 : -1;
}

/* A copy of a request that went through A, sent to B: 94; its repeat (0201) at B: the
 * original's answer. The journal's unique identity and switch.inflight, not memory, decide. */
static void test_duplicate_across_instances(void **state)
{
    (void)state;
    struct sim_txn x;
    struct sim_resp r;
    struct sim_sent sent;
    const char *pan = "4890010000000012";
    assert_string_equal(stack_purchase(&S, "TERM0001", pan, 1234, &x, &r, &sent), "00");
    char auth[7];
    snprintf(auth, sizeof auth, "%s", r.auth);
    /* the same request (DE 11, DE 7) again, to B */
    struct sim_term *tb = stack_term(&B, "TERM0001");
    uint32_t st = (uint32_t)atoi(sent.stan);
    sim_term_set_counters(tb, st, st);
    assert_string_equal(stack_rc(&B, "TERM0001", &x, &r, NULL), "94");
    /* its repeat: the original's answer and approval code */
    stack_repeat_of(&x, "0201", &sent);
    assert_string_equal(stack_rc(&B, "TERM0001", &x, &r, NULL), "00");
    assert_string_equal(r.auth, auth);
    /* one journal row approved, the wallet debited once */
    assert_int_equal(stack_scalar(&S, stack_rows_sql("switch.authorizations", "TERM0001", &sent,
                                                     "outcome = 'approved'")),
                     1);
}

/* An approval through A, reversed by its terminal through B: a repeat (0201) at A — which
 * remembers the approval — is not approved again: A asks the journal, which knows the reversal. */
static void test_repeat_after_a_reversal_elsewhere(void **state)
{
    (void)state;
    const char *pan = "4890010000000012";
    struct sim_txn x, rev;
    struct sim_resp r;
    struct sim_sent sent;
    assert_string_equal(stack_purchase(&S, "TERM0002", pan, 321, &x, &r, &sent), "00");
    stack_reversal_of(&rev, pan, 321, &sent);
    assert_string_equal(stack_rc(&B, "TERM0002", &rev, &r, NULL), "00");
    stack_repeat_of(&x, "0201", &sent);
    assert_string_not_equal(stack_rc(&S, "TERM0002", &x, &r, NULL), "00");
}

/* A's issuer STANs are odd (slot 0 of 2), B's even (slot 1). */
static void test_stan_slots(void **state)
{
    (void)state;
    struct sim_sent sa, sb;
    struct sim_txn x;
    struct sim_resp r;
    for (int i = 0; i < 3; i++) {
        assert_string_equal(stack_purchase(&S, "TERM0002", "4890010000000012", 100, &x, &r, &sa),
                            "00");
        assert_int_equal(stack_scalar(&S, stack_rows_sql("switch.authorizations", "TERM0002", &sa,
                                                         "issuer_stan::int % 2 = 1")),
                         1);
        uint32_t next = (uint32_t)atoi(sa.stan) + 1;
        sim_term_set_counters(stack_term(&B, "TERM0002"), next, next);
        assert_string_equal(stack_purchase(&B, "TERM0002", "4890010000000012", 100, &x, &r, &sb),
                            "00");
        assert_int_equal(stack_scalar(&S, stack_rows_sql("switch.authorizations", "TERM0002", &sb,
                                                         "issuer_stan::int % 2 = 0")),
                         1);
        next = (uint32_t)atoi(sb.stan) + 1;
        sim_term_set_counters(stack_term(&S, "TERM0002"), next, next);
    }
}

/* A change of reference data reaches both instances by NOTIFY, without SIGHUP. */
static void test_refdata_notify(void **state)
{
    (void)state;
    long long a0 = ts_file_lines_with(S.switch_log, "NOTIFY atlas_refdata");
    long long b0 = ts_file_lines_with(B.switch_log, "NOTIFY atlas_refdata");
    assert_int_equal(stack_exec(&S, "UPDATE switch.issuers SET name = name"), 0);
    for (int i = 0; i < 100; i++) {
        if (ts_file_lines_with(S.switch_log, "NOTIFY atlas_refdata") > a0 &&
            ts_file_lines_with(B.switch_log, "NOTIFY atlas_refdata") > b0)
            break;
        usleep(50000);
    }
    assert_true(ts_file_lines_with(S.switch_log, "NOTIFY atlas_refdata") > a0);
    assert_true(ts_file_lines_with(B.switch_log, "NOTIFY atlas_refdata") > b0);
}

/* A terminal's reversal durable at A, which cannot deliver it (the issuer is down), A killed -9:
 * B takes the row over once A's lease has expired and delivers it when the issuer is back. */
static void test_reversal_taken_over(void **state)
{
    (void)state;
    const char *pan = "4890020000000029";
    struct sim_txn x, rev;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    assert_string_equal(stack_purchase(&S, "TERM0003", pan, 777, &x, &r, &sent), "00");
    assert_true(stack_wait_balance(&S, pan, before - 777, 5000));
    ts_stop(S.issuer, SIGKILL, 5000);
    S.issuer = 0;
    B.issuer = 0;
    stack_reversal_of(&rev, pan, 777, &sent);
    assert_string_equal(stack_rc(&S, "TERM0003", &rev, &r, NULL), "00");
    const char *owned = stack_rows_sql("switch.reversal_queue", "TERM0003", &sent,
                                       "state = 'pending' AND claimed_by = 'ha-a'");
    assert_int_equal(stack_wait_scalar(&S, owned, 1, 5000), 0);
    ts_stop(S.sw, SIGKILL, 5000);
    S.sw = 0;
    assert_int_equal(stack_start_issuer(&S), 0);
    B.issuer = S.issuer;
    /* lease 1.5 s, B claims every 0.5 s: taken over and acknowledged */
    const char *acked = stack_rows_sql("switch.reversal_queue", "TERM0003", &sent,
                                       "state = 'acked' AND claimed_by = 'ha-b'");
    assert_int_equal(stack_wait_scalar(&S, acked, 1, 15000), 0);
    assert_true(stack_wait_balance(&S, pan, before, 5000));
    assert_true(ts_file_contains(B.switch_log, "reversals_taken_over"));
    assert_int_equal(stack_start_switch(&S), 0);
}

/* Stand-in advices stored by the instance holding WALLET1's advice lease while the issuer is
 * down, that instance killed -9: the other takes the issuer over once the lease expired and
 * delivers them when the issuer returns, in queue order, each applied once. */
static void test_advices_taken_over_in_order(void **state)
{
    (void)state;
    const char *pan = "4890010000000012";
    struct stack *h = stack_scalar(&S, "SELECT count(*) FROM switch.advice_leases"
                                       " WHERE issuer_id = 'WALLET1' AND claimed_by = 'ha-a'") == 1
                          ? &S
                          : &B;
    struct stack *o = h == &S ? &B : &S;
    long long before = stack_balance(&S, pan);
    ts_stop(S.issuer, SIGKILL, 5000);
    S.issuer = 0;
    B.issuer = 0;
    struct sim_txn x;
    struct sim_resp r;
    struct sim_sent s1, s2;
    assert_string_equal(stack_purchase(h, "TERM0001", pan, 111, &x, &r, &s1), "00");
    assert_int_equal(r.auth[0], 'S'); /* a stand-in approval */
    assert_string_equal(stack_purchase(h, "TERM0001", pan, 222, &x, &r, &s2), "00");
    const char *pending = "SELECT count(*) FROM switch.advice_queue WHERE kind = 'advice'"
                          " AND state = 'pending' AND amount_minor IN (111, 222)";
    assert_int_equal(stack_wait_scalar(&S, pending, 2, 5000), 0);
    ts_stop(h->sw, SIGKILL, 5000);
    h->sw = 0;
    assert_int_equal(stack_start_issuer(&S), 0);
    B.issuer = S.issuer;
    const char *acked = "SELECT count(*) FROM switch.advice_queue WHERE kind = 'advice'"
                        " AND state = 'acked' AND amount_minor IN (111, 222)";
    assert_int_equal(stack_wait_scalar(&S, acked, 2, 20000), 0);
    /* in queue order: no pair acknowledged the other way round */
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.advice_queue x"
                                      " JOIN switch.advice_queue y ON x.queued_at < y.queued_at"
                                      " AND x.acked_at > y.acked_at WHERE x.amount_minor IN"
                                      " (111, 222) AND y.amount_minor IN (111, 222)"),
                     0);
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.advice_leases WHERE issuer_id = 'WALLET1'"
             " AND claimed_by = '%s'",
             o == &S ? "ha-a" : "ha-b");
    assert_int_equal(stack_scalar(&S, sql), 1);
    assert_true(stack_wait_balance(&S, pan, before - 333, 5000));
    if (h == &S)
        assert_int_equal(stack_start_switch(&S), 0);
    else
        assert_int_equal(start_b(), 0);
}

/* reuseport = on: both instances listen on one port and the kernel spreads the connections. */
static void test_reuseport_shares_a_port(void **state)
{
    (void)state;
    struct sim_term *t = stack_term(&B, "TERM0001"); /* an ascii87 terminal, as the listener */
    char saved[sizeof t->address];
    memcpy(saved, t->address, sizeof saved);
    snprintf(t->address, sizeof t->address, "127.0.0.1:%u", Shared_port);
    int approved = 0;
    for (int i = 0; i < 16; i++) {
        struct sim_txn x;
        stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 100);
        approved += strcmp(stack_rc(&B, "TERM0001", &x, NULL, NULL), "00") == 0;
    }
    memcpy(t->address, saved, sizeof saved);
    assert_int_equal(approved, 16);
    assert_true(ts_wait_file_contains(S.switch_log, "\"listener\":\"shared\"", 3000));
    assert_true(ts_wait_file_contains(B.switch_log, "\"listener\":\"shared\"", 3000));
}

/* Draining for maintenance: SIGTERM with a request in flight (the issuer stalled); /health
 * answers 503 "draining" while it finishes — what takes the instance out of HAProxy's rotation —
 * then the request is answered on its connection and the instance exits 0. */
static void test_health_503_while_draining(void **state)
{
    (void)state;
    struct sim_txn x;
    struct sim_sent sent;
    struct sim_resp r;
    char buf[2048];
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 150);
    assert_int_equal(stack_kill(S.issuer, SIGSTOP), 0);
    struct sim_term *t = stack_term(&B, "TERM0004");
    int fd = stack_send_nowait(&B, t, &x, &sent);
    assert_true(fd >= 0);
    usleep(300000);
    assert_int_equal(kill(B.sw, SIGTERM), 0);
    usleep(300000);
    assert_true(stack_http_get(B.metrics_port, "/health", buf, sizeof buf) > 0);
    assert_non_null(strstr(buf, " 503 "));
    assert_non_null(strstr(buf, "\"draining\":true"));
    assert_int_equal(stack_kill(S.issuer, SIGCONT), 0);
    assert_int_equal(stack_recv(fd, t, &r), 0); /* answered before it exits (00, or 91 on time) */
    close(fd);
    int st = ts_wait(B.sw, 15000);
    B.sw = 0;
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* drained: its claims given up at once (the others take its rows at their next claim) */
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.instances WHERE instance_id"
                                      " = 'ha-b' AND lease_until <= now()"),
                     1);
}

/* A recorded load through HAProxy, B killed -9 two seconds in: the harness reconnects through
 * HAProxy to A, reverses what went unanswered; B restarted settles what it left in flight, and
 * atlas-reconcile finds no mismatch. */
static void test_kill_one_under_load(void **state)
{
    (void)state;
    struct stack H = S; /* the harness aims at HAProxy */
    H.acq_port = Ha_port;
    struct stack_load_opts o = stack_load_under_faults("ha-kill");
    o.load_terminals = true;
    struct stack_load l;
    /* load terminals: SIGHUP reloads A, the NOTIFY of their insert reloads B */
    assert_int_equal(stack_seed_load_terminals(&S, 4), 0);
    assert_true(ts_wait_file_contains(B.switch_log, "\"terminals\":8", 5000));
    assert_int_equal(stack_load_start(&H, &o, &l), 0);
    usleep(2000000);
    assert_int_equal(ts_stop(B.sw, SIGKILL, 5000) != -1, 1);
    B.sw = 0;
    assert_int_equal(stack_load_wait(&l, -1), 0);
    assert_int_equal(start_b(), 0); /* recover_inflight for ha-b */
    assert_int_equal(stack_settle(&S, 20000), 0);
    char out[400];
    snprintf(out, sizeof out, "%s/reconcile-ha.txt", S.dir);
    const char *extra[] = { "--record", l.record, NULL };
    int code = stack_reconcile(&S, out, extra);
    if (code != 0)
        fprintf(stderr, "atlas-reconcile exited %d: see %s\n", code, out);
    assert_int_equal(code, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_duplicate_across_instances, alive),
        cmocka_unit_test_setup(test_repeat_after_a_reversal_elsewhere, alive),
        cmocka_unit_test_setup(test_stan_slots, alive),
        cmocka_unit_test_setup(test_refdata_notify, alive),
        cmocka_unit_test_setup(test_reversal_taken_over, alive),
        cmocka_unit_test_setup(test_advices_taken_over_in_order, alive),
        cmocka_unit_test_setup(test_reuseport_shares_a_port, alive),
        cmocka_unit_test_setup(test_health_503_while_draining, alive),
        cmocka_unit_test_setup(test_kill_one_under_load, alive),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
