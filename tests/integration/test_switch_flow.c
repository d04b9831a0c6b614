/* The whole authorization path with the wallet issuer behind the switch:
 * approvals on every kind of terminal, each decline reason, PIN tries, the
 * issuer going silent (91, then the reversal reaches the issuer and the money
 * comes back), late answers never forwarded, terminal reversals, duplicates,
 * balance inquiries, and no card secret in any log. Real processes: switchd,
 * hsm-sim, issuer-sim, PostgreSQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "db_testlib.h"
#include "hex.h"
#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;

static int setup(void **state)
{
    struct stack_opts o = { .issuer = true, .issuer_timeout_ms = 1500, .wallets = 64 };
    return stack_setup(state, &S, &o);
}

/* Sends x on term: the answer's DE 39; the answer was authentic (a MAC that verifies) unless
 * it is a network-management one. r and sent may be NULL. */
static const char *send_rc(const char *term, const struct sim_txn *x, struct sim_resp *r,
                           struct sim_sent *sent)
{
    static struct sim_resp local;
    if (!r)
        r = &local;
    const char *rc = stack_rc(&S, term, x, r, sent);
    assert_string_not_equal(rc, "--");
    assert_int_equal(r->mac, r->mti[1] == '8' ? r->mac : SIM_MAC_OK);
    return rc;
}

/* A purchase of amount with pan's card on term, approved; what was sent in sent. */
static void approved(const char *term, const char *pan, uint64_t amount, struct sim_txn *x,
                     struct sim_resp *r, struct sim_sent *sent)
{
    assert_string_equal(stack_purchase(&S, term, pan, amount, x, r, sent), "00");
    assert_int_equal(r->mac, SIM_MAC_OK);
}

static long long available_of(const char *pan)
{
    return stack_wallet_scalar(&S, pan, "balance_minor - held_minor");
}

static void test_approvals_on_every_terminal_kind(void **state)
{
    const char *pan = "4890010000000012";
    const char *terms[] = { "TERM0001", "TERM0002", "TERM0003", "TERM0004" };
    const char *wa = "atlas_request_duration_seconds_count{hop=\"write_ahead\"}";
    long long before = stack_balance(&S, pan);
    long long wa_before = stack_metric(&S, wa);
    assert_int_equal(before, 100000);
    assert_true(wa_before >= 0);
    for (size_t i = 0; i < 4; i++) {
        struct sim_txn x;
        struct sim_resp r;
        stack_card_txn(&x, SIM_T_PURCHASE, pan, 1000);
        assert_string_equal(send_rc(terms[i], &x, &r, NULL), "00");
        assert_int_equal(strlen(r.auth), 6);
    }
    assert_int_equal(stack_balance(&S, pan), before - 4000);
    /* Each request's write-ahead commit is a hop of its own on /metrics. */
    assert_int_equal(stack_metric(&S, wa), wa_before + 4);
    /* Every approval is in the journal, masked, with its issuer STAN. */
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.authorizations"
                                      " WHERE response_code = '00' AND outcome = 'approved'"
                                      " AND pan_masked = '489001******0012'"
                                      " AND issuer_stan IS NOT NULL AND auth_code IS NOT NULL"),
                     4);
}

static void test_answer_only_after_commit(void **state)
{
    /* The moment the terminal holds its answer, the row is already committed:
     * query at once, no polling. */
    struct sim_txn x;
    struct sim_resp r;
    struct sim_sent sent;
    approved("TERM0001", "4890010000000012", 111, &x, &r, &sent);
    assert_int_equal(stack_scalar(&S, stack_rows_sql("switch.authorizations", "TERM0001", &sent,
                                                     "response_code = '00'")),
                     1);
}

static void test_each_decline_reason(void **state)
{
    static const struct {
        const char *pan;
        uint64_t amount;
        const char *pin; /* NULL = the card's */
        const char *rc;
    } cases[] = {
        { "4890030000000036", 5000, NULL, "51" },  /* 1,000 XAF wallet */
        { "4890010000000079", 100, NULL, "54" },   /* expired */
        { "4890010000000053", 100, NULL, "05" },   /* blocked */
        { "4890010000000061", 100, NULL, "62" },   /* lost */
        { "4890010000000087", 6000, NULL, "61" },  /* daily limit 5000 */
        { "4890010000000012", 100, "9999", "55" }, /* wrong PIN */
        { "4890019999999997", 100, "1234", "14" }, /* in a known BIN, no such wallet */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sim_txn x;
        stack_card_txn(&x, SIM_T_PURCHASE, cases[i].pan, cases[i].amount);
        if (cases[i].pin)
            snprintf(x.pin, sizeof x.pin, "%s", cases[i].pin);
        const char *rc = send_rc("TERM0001", &x, NULL, NULL);
        if (strcmp(rc, cases[i].rc) != 0)
            fail_msg("%s: got %s, want %s", cases[i].pan, rc, cases[i].rc);
    }
}

static void test_three_wrong_pins_is_75(void **state)
{
    const char *pan = "4890040000000043";
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 100);
    snprintf(x.pin, sizeof x.pin, "0000");
    assert_string_equal(send_rc("TERM0001", &x, NULL, NULL), "55");
    assert_string_equal(send_rc("TERM0001", &x, NULL, NULL), "55");
    assert_string_equal(send_rc("TERM0001", &x, NULL, NULL), "75");
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 100); /* even the right PIN now */
    assert_string_equal(send_rc("TERM0001", &x, NULL, NULL), "75");
}

static void test_balance_inquiry(void **state)
{
    const char *pan = "4890020000000029";
    struct sim_txn x;
    struct sim_resp r;
    stack_card_txn(&x, SIM_T_BALANCE, pan, 0);
    assert_string_equal(send_rc("TERM0002", &x, &r, NULL), "00");
    assert_true(r.has_balance);
    assert_int_equal(r.balance, available_of(pan));
    assert_string_equal(r.balance_ccy, "952");
}

static void test_duplicate_no_second_debit(void **state)
{
    const char *pan = "4890010000000012";
    struct sim_term *t = stack_term(&S, "TERM0001");
    struct sim_txn x;
    struct sim_resp r1, r2;
    uint8_t msg[SIM_MSG_MAX];
    size_t len;
    char err[128];
    long long before = stack_balance(&S, pan);
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 333);
    assert_int_equal(sim_term_build_request(t, &x, msg, sizeof msg, &len, NULL, err, sizeof err),
                     0);
    assert_int_equal(stack_send_raw(&S, t, msg, len, &r1), 0);
    assert_int_equal(stack_send_raw(&S, t, msg, len, &r2), 0);
    assert_string_equal(r1.rc, "00");
    assert_string_equal(r2.rc, "94");
    assert_int_equal(stack_balance(&S, pan), before - 333);
}

static void test_repeat_gets_the_same_answer(void **state)
{
    const char *pan = "4890010000000012";
    struct sim_txn x;
    struct sim_resp r1, r2;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    approved("TERM0001", pan, 444, &x, &r1, &sent);
    stack_repeat_of(&x, "0201", &sent); /* the terminal repeats it */
    assert_string_equal(send_rc("TERM0001", &x, &r2, NULL), "00");
    assert_string_equal(r2.mti, "0210");
    assert_string_equal(r2.auth, r1.auth);
    assert_int_equal(stack_balance(&S, pan), before - 444);
}

static void test_terminal_reversal_restores_balance(void **state)
{
    const char *pan = "4890010000000012";
    struct sim_txn x, rev;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    approved("TERM0001", pan, 2500, &x, &r, &sent);
    assert_int_equal(stack_balance(&S, pan), before - 2500);

    stack_reversal_of(&rev, pan, 2500, &sent);
    /* A reversal for another amount (a partial one) is refused, not forwarded. */
    struct sim_txn partial = rev;
    partial.amount = 1000;
    assert_string_equal(send_rc("TERM0001", &partial, &r, NULL), "12");
    assert_string_equal(send_rc("TERM0001", &rev, &r, NULL), "00");
    assert_string_equal(r.mti, "0430");
    /* Store-and-forward delivers it to the issuer: the money comes back once. */
    assert_true(stack_wait_balance(&S, pan, before, 5000));
    assert_int_equal(stack_wait_scalar(&S,
                                       "SELECT count(*) FROM switch.reversal_queue"
                                       " WHERE reason = 'terminal' AND state = 'acked'",
                                       1, 5000),
                     0);
    /* The same reversal again changes nothing. */
    assert_string_equal(send_rc("TERM0001", &rev, &r, NULL), "00");
    usleep(700000);
    assert_int_equal(stack_balance(&S, pan), before);
}

static void test_reversal_by_own_stan_and_time(void **state)
{
    /* Without DE 90 a reversal names its original by carrying the same
     * DE 11, DE 41 and DE 7. */
    const char *pan = "4890020000000029";
    struct sim_txn x, rev;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    stack_card_txn(&x, SIM_T_CASH, pan, 1500);
    stack_fix_time(&x);
    assert_string_equal(send_rc("TERM0003", &x, &r, &sent), "00");
    stack_card_txn(&rev, SIM_T_REVERSAL, pan, 1500);
    stack_repeat_of(&rev, "0420", &sent);
    rev.now_us = x.now_us;
    rev.orig_stan = 0; /* no DE 90 */
    assert_string_equal(send_rc("TERM0003", &rev, &r, NULL), "00");
    assert_true(stack_wait_balance(&S, pan, before, 5000));
}

static void test_issuer_restart_link_comes_back(void **state)
{
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 50);
    assert_int_equal(ts_stop(S.issuer, SIGTERM, 5000) >= 0, 1);
    S.issuer = 0;
    assert_true(ts_wait_file_contains(S.switch_log, "\"to\":\"down\"", 5000));
    assert_string_equal(send_rc("TERM0001", &x, NULL, NULL), "91");
    assert_int_equal(stack_start_issuer(&S), 0);
    /* Reconnect with backoff, sign-on, then requests flow again. */
    assert_string_equal(stack_rc_linked(&S, "TERM0001", &x, NULL, 10000), "00");
}

static void test_reload_without_dropping_connections(void **state)
{
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 20);
    assert_string_equal(send_rc("TERM0004", &x, NULL, NULL), "00");
    /* Disable the terminal in the database; SIGHUP reloads the reference data. */
    assert_int_equal(
        stack_exec(&S,
                   "UPDATE switch.terminals SET enabled = false WHERE terminal_id = 'TERM0004'"),
        0);
    int fd = ts_connect(S.acq_port, 5000); /* a session opened before the reload */
    assert_true(fd >= 0);
    stack_kill(S.sw, SIGHUP);
    assert_true(ts_wait_file_contains(S.switch_log, "\"event\":\"reload\"", 5000));
    const char *rc = "";
    for (int i = 0; i < 50 && strcmp(rc, "58") != 0; i++) {
        usleep(100000);
        rc = send_rc("TERM0004", &x, NULL, NULL);
    }
    assert_string_equal(rc, "58");
    /* The older session is still open and served. */
    struct sim_txn echo;
    struct sim_resp r;
    stack_txn(&echo, SIM_T_ECHO, "", NULL, 0);
    assert_int_equal(stack_send_on(fd, stack_term(&S, "TERM0001"), &echo, &r), 0);
    assert_string_equal(r.rc, "00");
    close(fd);
    assert_int_equal(
        stack_exec(&S, "UPDATE switch.terminals SET enabled = true WHERE terminal_id = 'TERM0004'"),
        0);
    stack_kill(S.sw, SIGHUP);
}

static void test_issuer_silent_then_reversal_releases(void **state)
{
    const char *pan = "4890020000000029";
    long long before = stack_balance(&S, pan);
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 700);
    stack_kill(S.issuer, SIGSTOP);
    const char *rc = send_rc("TERM0002", &x, NULL, NULL);
    stack_kill(S.issuer, SIGCONT);
    assert_string_equal(rc, "91");
    /* The issuer wakes up, approves the original late (never forwarded) and
     * then gets the store-and-forward reversal: the balance is whole again. */
    assert_true(ts_wait_file_contains(S.switch_log, "\"event\":\"late_response\"", 5000));
    assert_true(stack_wait_balance(&S, pan, before, 8000));
    assert_int_equal(stack_wait_scalar(&S,
                                       "SELECT count(*) FROM switch.reversal_queue"
                                       " WHERE reason = 'timeout' AND state = 'acked'",
                                       1, 8000),
                     0);
    /* 'unavailable' when an unanswered link echo (the issuer is stopped) drops the link before
     * the request's own timer fires: the same 91 and reversal. */
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.authorizations"
                                      " WHERE outcome IN ('timeout', 'unavailable')"
                                      " AND response_code = '91'"),
                     1);
}

/* Writes x on a new connection of t without reading the answer; returns the fd. */
static int send_nowait(struct sim_term *t, const struct sim_txn *x, struct sim_sent *sent)
{
    int fd = stack_send_nowait(&S, t, x, sent);
    assert_true(fd >= 0);
    return fd;
}

/* Stops the issuer (it stays stopped), and n purchases of 100 with pan's card on term time out:
 * each is answered 91 on its own connection. */
static void time_out(const char *term, const char *pan, int n)
{
    struct sim_term *t = stack_term(&S, term);
    int fds[64];
    assert_true(n <= 64);
    stack_kill(S.issuer, SIGSTOP);
    for (int i = 0; i < n; i++) {
        struct sim_txn x;
        stack_card_txn(&x, SIM_T_PURCHASE, pan, 100);
        fds[i] = send_nowait(t, &x, NULL);
    }
    for (int i = 0; i < n; i++) {
        struct sim_resp r;
        assert_int_equal(stack_recv(fds[i], t, &r), 0);
        assert_string_equal(r.rc, "91");
        close(fds[i]);
    }
}

static void test_terminal_gone_before_approval_is_reversed(void **state)
{
    const char *pan = "4890010000000012";
    struct sim_txn x;
    long long before = stack_balance(&S, pan);
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 900);
    stack_kill(S.issuer, SIGSTOP); /* hold the answer back long enough to hang up */
    int fd = send_nowait(stack_term(&S, "TERM0001"), &x, NULL);
    usleep(300000);
    close(fd);
    stack_kill(S.issuer, SIGCONT);
    /* The issuer approves; the switch cannot deliver it and reverses it. */
    assert_true(ts_wait_file_contains(S.switch_log, "\"event\":\"answer_undeliverable\"", 5000));
    assert_true(stack_wait_balance(&S, pan, before, 8000));
}

static void test_reversal_while_original_in_flight(void **state)
{
    const char *pan = "4890010000000012";
    struct sim_term *t = stack_term(&S, "TERM0001");
    struct sim_txn x, rev;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    stack_card_txn(&x, SIM_T_PURCHASE, pan, 1100);
    stack_kill(S.issuer, SIGSTOP);
    int fd = send_nowait(t, &x, &sent);
    usleep(200000);
    stack_reversal_of(&rev, pan, 1100, &sent);
    const char *rc = send_rc("TERM0001", &rev, NULL, NULL);
    stack_kill(S.issuer, SIGCONT);
    close(fd);
    assert_string_equal(rc, "00");
    /* The reversal waited for its original's outcome (a timeout here: the
     * issuer was stopped), and the wallet ends where it started. */
    assert_true(ts_wait_file_contains(S.switch_log, "\"event\":\"reversal_parked\"", 5000));
    assert_true(stack_wait_balance(&S, pan, before, 8000));
}

static void test_timeout_storm_reversals_batched(void **state)
{
    /* Twenty requests time out together: their reversals are queued in a
     * batch, and every one of them reaches the issuer. */
    enum { N = 20 };
    const char *pan = "4890020000000029";
    char sql[256];
    const char *acked = "SELECT count(*) FROM switch.reversal_queue WHERE terminal_id = 'TERM0002'"
                        " AND reason = 'timeout' AND state = 'acked'";
    long long acked_before = stack_scalar(&S, acked);
    long long before = stack_balance(&S, pan);
    time_out("TERM0002", pan, N);
    stack_kill(S.issuer, SIGCONT);
    snprintf(sql, sizeof sql, "%s", acked);
    assert_int_equal(stack_wait_scalar(&S, sql, acked_before + N, 15000), 0);
    assert_true(stack_wait_balance(&S, pan, before, 8000));
    /* The sends (0420, then an 0421 every reversal_retry_ms while the issuer
     * was stopped) and the acks were recorded by fewer UPDATE transactions
     * than rows they updated. */
    print_message("%d acks committed by %lld transactions (distinct acked_at)\n", N,
                  stack_scalar(&S,
                               "SELECT count(DISTINCT acked_at) FROM (SELECT acked_at"
                               " FROM switch.reversal_queue WHERE terminal_id = 'TERM0002'"
                               " AND reason = 'timeout' ORDER BY reversal_id DESC LIMIT 20) s"));
    long long stmts = stack_metric(&S, "atlas_reversal_queue_updates_total");
    long long rows = stack_metric(&S, "atlas_reversal_queue_updated_rows_total");
    print_message("reversal_queue: %lld rows updated by %lld statements\n", rows, stmts);
    assert_true(rows >= N);
    assert_true(stmts >= 1 && stmts < rows);
}

/* Bytes of path from offset off (a fresh allocation, NUL-terminated). */
static char *read_from(const char *path, long off)
{
    char *buf = ts_read_file(path, off, NULL);
    assert_non_null(buf);
    return buf;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Waits until the switch log holds want occurrences of needle after off. */
static bool log_count_from(long off, const char *needle, int want, int timeout_ms)
{
    for (int t = 0; t <= timeout_ms; t += 50) {
        char *text = read_from(S.switch_log, off);
        int n = ts_count(text, needle);
        free(text);
        if (n >= want)
            return true;
        usleep(50000);
    }
    return false;
}

static void test_reversal_acks_durable_across_drain_and_restart(void **state)
{
    /* Acks are written in batches, a moment after they are decided. While
     * the rows are locked (a slow database), the acks wait in memory; a
     * SIGTERM then waits for them to commit before switchd exits, and the
     * next switchd sends none of them again. */
    enum { N = 12 };
    const char *pan = "4890020000000029";
    char sql[256];
    assert_int_equal(stack_wait_scalar(&S,
                                       "SELECT count(*) FROM switch.reversal_queue"
                                       " WHERE state NOT IN ('acked', 'failed')",
                                       0, 15000),
                     0);
    long long first = stack_scalar(&S, "SELECT coalesce(max(reversal_id), 0)"
                                       " FROM switch.reversal_queue");
    long long before = stack_balance(&S, pan);
    long off = file_size(S.switch_log);
    time_out("TERM0002", pan, N); /* each 91 leaves after its reversal's row committed */
    /* Hold the rows: every UPDATE of them blocks until this transaction ends. */
    PGconn *lock = dbt_connect(S.conninfo);
    assert_non_null(lock);
    PGresult *res = PQexec(lock, "BEGIN");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT 1 FROM switch.reversal_queue"
             " WHERE reversal_id > %lld FOR UPDATE) s",
             first);
    assert_int_equal(dbt_scalar(lock, sql), N);
    stack_kill(S.issuer, SIGCONT);
    /* The acks of these very reversals (an earlier test's late ones must not count). */
    snprintf(sql, sizeof sql,
             "SELECT issuer_stan FROM switch.reversal_queue WHERE reversal_id > %lld", first);
    res = PQexec(lock, sql);
    assert_int_equal(PQntuples(res), N);
    for (int i = 0; i < N; i++) {
        char ack[64];
        snprintf(ack, sizeof ack, "\"issuer_stan\":\"%s\",\"rc\":\"00\"", PQgetvalue(res, i, 0));
        assert_true(log_count_from(off, ack, 1, 15000));
    }
    PQclear(res);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.reversal_queue WHERE reversal_id > %lld"
             " AND state = 'acked'",
             first);
    assert_int_equal(stack_scalar(&S, sql), 0); /* decided, not yet durable */

    stack_kill(S.sw, SIGTERM);
    usleep(500000);
    int st;
    assert_int_equal(waitpid(S.sw, &st, WNOHANG), 0); /* still waiting for the acks */
    res = PQexec(lock, "COMMIT");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(lock);
    st = ts_stop(S.sw, SIGTERM, 10000);
    S.sw = 0;
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(stack_scalar(&S, sql), N); /* durable when switchd was gone */
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT acked_at) FROM switch.reversal_queue"
             " WHERE reversal_id > %lld",
             first);
    long long txns = stack_scalar(&S, sql);
    print_message("%d acks committed by %lld transactions\n", N, txns);
    assert_true(txns >= 1 && txns < N);

    /* A new switchd loads only pending rows: none of these is sent again. */
    off = file_size(S.switch_log);
    assert_int_equal(stack_start_switch(&S), 0);
    assert_true(log_count_from(off, "\"event\":\"reversal_queue_loaded\",\"pending\":0", 1, 10000));
    usleep(1000000); /* several ticks and reversal_retry_ms */
    char *text = read_from(S.switch_log, off);
    assert_int_equal(ts_count(text, "\"event\":\"reversal_sent\""), 0);
    free(text);
    assert_true(stack_wait_balance(&S, pan, before, 8000));
}

static void test_reversal_after_switch_restart_uses_journal(void **state)
{
    const char *pan = "4890010000000012";
    struct sim_txn x, rev;
    struct sim_resp r;
    struct sim_sent sent;
    long long before = stack_balance(&S, pan);
    approved("TERM0001", pan, 1300, &x, &r, &sent);
    /* A restart forgets every request: the journal still knows the original. */
    assert_int_equal(stack_restart_switch(&S, SIGTERM), 0); /* a drain exits 0 */
    stack_reversal_of(&rev, pan, 1300, &sent);
    /* until the issuer link is up */
    assert_string_equal(stack_rc_linked(&S, "TERM0001", &rev, &r, 5000), "00");
    assert_true(stack_wait_balance(&S, pan, before, 8000));
}

static void test_no_card_secrets_in_logs(void **state)
{
    const char *logs[] = { S.switch_log, S.issuer_log, S.hsm_log };
    const char *pans[] = { "4890010000000012", "4890020000000029", "4890030000000036" };
    /* The PIN block of a request we send now must appear nowhere either. */
    struct sim_term *t = stack_term(&S, "TERM0001");
    struct sim_txn x;
    struct sim_resp r;
    uint8_t msg[SIM_MSG_MAX], arena[ISO_ARENA_FOR(SIM_MSG_MAX)];
    size_t len, n;
    char err[128], pb_hex[17];
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 10);
    assert_int_equal(sim_term_build_request(t, &x, msg, sizeof msg, &len, NULL, err, sizeof err),
                     0);
    struct iso_msg m;
    iso_msg_init(&m, arena, sizeof arena);
    struct iso_err e;
    assert_int_equal(iso_unpack(t->dialect, msg, len, &m, &e), 0);
    const uint8_t *pb = iso_get(&m, 52, &n);
    assert_non_null(pb);
    at_hex_encode(pb, 8, pb_hex);
    assert_int_equal(stack_send_raw(&S, t, msg, len, &r), 0);
    stack_kill(S.sw, SIGHUP);
    usleep(300000);
    for (size_t i = 0; i < 3; i++) {
        for (size_t j = 0; j < 3; j++)
            if (ts_file_contains(logs[i], pans[j]))
                fail_msg("full PAN %zu found in %s", j, logs[i]);
        if (ts_file_contains(logs[i], pb_hex))
            fail_msg("PIN block found in %s", logs[i]);
    }
    /* Nor in the journal or the reversal queue (masked + HMAC + sealed only). */
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.authorizations"
                                      " WHERE pan_masked ~ '^[0-9]{13,}$'"),
                     0);
    assert_int_equal(stack_scalar(&S, "SELECT count(*) FROM switch.reversal_queue"
                                      " WHERE pan_masked ~ '^[0-9]{13,}$'"
                                      " OR position('4890' in encode(pan_sealed, 'escape')) > 0"),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_approvals_on_every_terminal_kind),
        cmocka_unit_test(test_answer_only_after_commit),
        cmocka_unit_test(test_each_decline_reason),
        cmocka_unit_test(test_three_wrong_pins_is_75),
        cmocka_unit_test(test_balance_inquiry),
        cmocka_unit_test(test_duplicate_no_second_debit),
        cmocka_unit_test(test_repeat_gets_the_same_answer),
        cmocka_unit_test(test_terminal_reversal_restores_balance),
        cmocka_unit_test(test_reversal_by_own_stan_and_time),
        cmocka_unit_test(test_issuer_silent_then_reversal_releases),
        cmocka_unit_test(test_issuer_restart_link_comes_back),
        cmocka_unit_test(test_terminal_gone_before_approval_is_reversed),
        cmocka_unit_test(test_reversal_while_original_in_flight),
        cmocka_unit_test(test_timeout_storm_reversals_batched),
        cmocka_unit_test(test_reversal_acks_durable_across_drain_and_restart),
        cmocka_unit_test(test_reversal_after_switch_restart_uses_journal),
        cmocka_unit_test(test_reload_without_dropping_connections),
        cmocka_unit_test(test_no_card_secrets_in_logs),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
