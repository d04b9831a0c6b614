/* Unit tests of the load harness's pure parts (sim/acquirer/load.h): the latency
 * histogram's error bound, the open-loop schedule arithmetic, the mix parser and
 * picker, the JSON report (parsed back with jansson), load terminal ids and keys, the
 * card population against issuer-sim's own seed function, the reversal state machine
 * (0400, then 0401 repeats, and when each is due), the record file's line format and the
 * options (defaults, ranges, unknown options, the rules between them). No network, no
 * timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "hist.h"
#include "load.h"
#include "record_cases.h"
#include "test_hex.h"

/* issuer-sim's sim_seed_spec (test_load_issuer.c). */
int tl_seed_card(uint64_t index, char pan[20], char pin[5], int *currency);

/* ------------------------------------------------------------------ histogram */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Quantiles of 200,000 log-uniform values between 1 µs and 10 s (in ns) are within 1 %
 * of the exact order statistic, never below it, and max/min/count are exact. */
static void test_hist_error(void **state)
{
    (void)state;
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof *v);
    assert_non_null(v);
    static struct at_hist h;
    at_hist_reset(&h);
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < N; i++) {
        double u = (double)(next_rand(&s) >> 11) / 9007199254740992.0; /* [0,1) */
        v[i] = (uint64_t)(1000.0 * pow(10.0, 7.0 * u));
        at_hist_record(&h, v[i]);
    }
    qsort(v, N, sizeof *v, cmp_u64);
    const double qs[] = { 0.0001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999 };
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        size_t rank = (size_t)ceil(qs[i] * N);
        uint64_t exact = v[rank ? rank - 1 : 0];
        uint64_t got = at_hist_quantile(&h, qs[i]);
        double rel = ((double)got - (double)exact) / (double)exact;
        assert_true(got >= exact);
        assert_true(rel <= 0.01);
    }
    assert_int_equal(h.count, N);
    assert_int_equal(h.max, v[N - 1]);
    assert_int_equal(h.min, v[0]);
    assert_true(at_hist_quantile(&h, 1.0) >= v[N - 1]);
    free(v);
}

/* Small exact values (below the sub-bucket count) are reproduced exactly. */
static void test_hist_small_exact(void **state)
{
    (void)state;
    static struct at_hist h;
    at_hist_reset(&h);
    for (uint64_t i = 1; i <= 100; i++)
        at_hist_record(&h, i);
    assert_int_equal(at_hist_quantile(&h, 0.5), 50);
    assert_int_equal(at_hist_quantile(&h, 0.99), 99);
    assert_int_equal(at_hist_quantile(&h, 1.0), 100);
}

/* ------------------------------------------------------------------ schedule */

static void test_sched_math(void **state)
{
    (void)state;
    const uint64_t rates[] = { 1, 3, 7, 999, 1000, 10000, 20000, 999983 };
    const uint64_t t0 = 123456789;
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        uint64_t r = rates[i];
        assert_int_equal(load_sched_due(t0, t0 - 1, r), 0);
        assert_int_equal(load_sched_due(t0, t0, r), 1); /* arrival 0 is due at t0 */
        /* Exactly r arrivals in every whole second, 60 s gives 60 r. */
        assert_int_equal(load_sched_due(t0, t0 + 1000000000ull - 1, r), r);
        assert_int_equal(load_sched_due(t0, t0 + 60000000000ull - 1, r), 60 * r);
        uint64_t prev = 0;
        for (uint64_t k = 0; k < 5000; k++) {
            uint64_t kk = k * (r / 1000 + 1) * 3 + (k % 3); /* sample across the run */
            uint64_t t = load_sched_time(t0, kk, r);
            assert_true(t >= prev);
            prev = t;
            /* Arrival kk is due at its time and not a nanosecond before. */
            assert_int_equal(load_sched_due(t0, t, r) > kk, 1);
            if (t > t0)
                assert_int_equal(load_sched_due(t0, t - 1, r) <= kk, 1);
            /* Inter-arrival gap is floor or ceil of 1e9 / r. */
            uint64_t gap = load_sched_time(t0, kk + 1, r) - t;
            assert_true(gap == 1000000000ull / r || gap == 1000000000ull / r + 1);
        }
    }
}

/* ------------------------------------------------------------------ mix */

static void test_mix_parse(void **state)
{
    (void)state;
    struct load_mix m;
    char err[200];
    assert_int_equal(load_mix_parse(LOAD_MIX_DEFAULT, &m, err, sizeof err), 0);
    assert_int_equal(m.total, 100);
    assert_int_equal(m.weight[LOAD_K_PURCHASE], 50);
    assert_int_equal(m.weight[LOAD_K_REVERSAL], 10);
    assert_int_equal(m.weight[LOAD_K_TRANSFER], 0); /* no transfers unless asked */
    assert_int_equal(load_mix_parse("purchase=9,transfer=1", &m, err, sizeof err), 0);
    assert_int_equal(m.weight[LOAD_K_TRANSFER], 1);
    assert_string_equal(load_kind_name(LOAD_K_TRANSFER), "transfer");
    assert_int_equal(load_mix_parse("refund=3", &m, err, sizeof err), 0);
    assert_int_equal(m.total, 3);
    assert_int_equal(m.weight[LOAD_K_PURCHASE], 0);
    assert_int_equal(load_mix_parse("purchase-nopin=1,balance=0", &m, err, sizeof err), 0);
    assert_int_equal(m.weight[LOAD_K_PURCHASE_NOPIN], 1);

    const char *bad[] = { "",
                          "purchase",
                          "purchase=",
                          "purchase=x",
                          "purchase=-1",
                          "purchase=1000001",
                          "purchse=1",
                          "purchase=1,purchase=2",
                          "purchase=0,cash=0",
                          "purchase=1,",
                          ",purchase=1",
                          "purchase=1,,cash=1",
                          "purchase =1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(load_mix_parse(bad[i], &m, err, sizeof err), -1);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(load_mix_parse("cash=1,cash=1", &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(load_mix_parse("foo=1", &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "foo"));
}

/* Over one full cycle of r % total, every kind is picked exactly weight times. */
static void test_mix_pick(void **state)
{
    (void)state;
    struct load_mix m;
    char err[200];
    assert_int_equal(
        load_mix_parse("purchase=5,purchase-nopin=0,cash=3,balance=1,refund=2,reversal=7", &m, err,
                       sizeof err),
        0);
    unsigned got[LOAD_K_max] = { 0 };
    for (uint64_t r = 1000; r < 1000 + m.total; r++)
        got[load_mix_pick(&m, r)]++;
    for (int k = 0; k < LOAD_K_max; k++)
        assert_int_equal(got[k], m.weight[k]);
    assert_string_equal(load_kind_name(LOAD_K_PURCHASE_NOPIN), "purchase-nopin");
}

/* ------------------------------------------------------------------ report */

static double jnum(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_non_null(v);
    assert_true(json_is_number(v));
    return json_number_value(v);
}

static void test_report_json(void **state)
{
    (void)state;
    static struct load_result r;
    memset(&r, 0, sizeof r);
    at_hist_reset(&r.total);
    for (int k = 0; k < LOAD_K_max; k++)
        at_hist_reset(&r.kind[k]);
    r.requested = 1000;
    r.connections = 10;
    r.conns_up = 10;
    r.duration_s = r.elapsed_s = 10;
    r.warmup_s = 1;
    r.scheduled = 10000;
    r.sent = 10000;
    r.answered = 9990;
    r.timeouts = 7;
    r.errors = 3;
    r.rc[0] = 9980;
    r.rc[51] = 10;
    r.unexpected = 10;
    r.per_kind_sent[LOAD_K_PURCHASE] = 10000;
    r.rate_kept = true;
    r.all_approved = 11000;
    r.all_requests = 11500;
    r.conn_losses = 2;
    r.reconnects = 3;
    r.reversals = 9;
    r.reversals_sent = 8;
    r.reversal_tries = 20;
    r.reversals_answered = 7;
    r.reversals_abandoned = 2;
    r.record_file = "run \"1\".record";
    r.record_lines = 11500;
    for (uint64_t i = 1; i <= 9990; i++) {
        at_hist_record(&r.total, i * 1000); /* 1 µs .. 9.99 ms */
        at_hist_record(&r.kind[LOAD_K_PURCHASE], i * 1000);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(load_report_json(f, &r), 0);
    fclose(f);
    json_error_t je;
    json_t *o = json_loads(buf, 0, &je);
    assert_non_null(o);
    assert_int_equal((int)jnum(o, "requested_tps"), 1000);
    assert_true(fabs(jnum(o, "achieved_tps") - 999.0) < 0.01);
    assert_int_equal((int)jnum(o, "sent"), 10000);
    assert_int_equal((int)jnum(o, "answered"), 9990);
    assert_int_equal((int)jnum(o, "errors"), 3);
    assert_int_equal((int)jnum(o, "timeouts"), 7);
    assert_int_equal((int)jnum(o, "all_approved"), 11000);
    /* 20 bad of 10000: errors + timeouts + unexpected codes */
    assert_true(fabs(jnum(o, "error_rate") - 0.002) < 1e-9);
    double p50 = jnum(o, "p50_ms"), p90 = jnum(o, "p90_ms"), p99 = jnum(o, "p99_ms"),
           p999 = jnum(o, "p999_ms"), mx = jnum(o, "max_ms");
    assert_true(fabs(p50 - 4.995) / 4.995 < 0.01);
    assert_true(fabs(p99 - 9.890) / 9.890 < 0.01);
    assert_true(p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= mx);
    assert_true(fabs(mx - 9.99) < 0.001);
    json_t *rc = json_object_get(o, "rc");
    assert_true(json_is_object(rc));
    assert_int_equal(json_integer_value(json_object_get(rc, "00")), 9980);
    assert_int_equal(json_integer_value(json_object_get(rc, "51")), 10);
    assert_int_equal(json_object_size(rc), 2);
    json_t *types = json_object_get(o, "types");
    assert_non_null(json_object_get(types, "purchase"));
    assert_null(json_object_get(types, "refund"));
    assert_true(json_is_true(json_object_get(o, "rate_kept")));
    assert_string_equal(json_string_value(json_object_get(o, "mode")), "open");
    assert_int_equal((int)jnum(o, "all_requests"), 11500);
    assert_int_equal((int)jnum(o, "connection_losses"), 2);
    assert_int_equal((int)jnum(o, "reconnects"), 3);
    assert_int_equal((int)jnum(o, "reversals"), 9);
    assert_int_equal((int)jnum(o, "reversals_sent"), 8);
    assert_int_equal((int)jnum(o, "reversal_tries"), 20);
    assert_int_equal((int)jnum(o, "reversals_answered"), 7);
    assert_int_equal((int)jnum(o, "reversals_abandoned"), 2);
    assert_int_equal((int)jnum(o, "record_lines"), 11500);
    assert_string_equal(json_string_value(json_object_get(o, "record_file")), "run \"1\".record");
    json_decref(o);
    free(buf);

    /* The text report names the rate as not kept when it was not. */
    r.rate_kept = false;
    buf = NULL;
    f = open_memstream(&buf, &len);
    load_report_text(f, &r);
    fclose(f);
    assert_non_null(strstr(buf, "NOT kept"));
    assert_non_null(strstr(buf, "51 10 (insufficient funds)"));
    assert_non_null(strstr(buf, "9 owed, 8 sent (20 messages, 0400 + 0401), 7 answered, 2 "
                                "abandoned at the deadline"));
    assert_non_null(strstr(buf, "connections: 2 lost, 3 connected again"));
    assert_non_null(strstr(buf, "record: run \"1\".record, 11500 lines for 11500 requests"));
    free(buf);

    /* Without a record file the JSON says null; without faults the text says nothing. */
    r.record_file = NULL;
    r.reversals = r.conn_losses = r.reconnects = 0;
    buf = NULL;
    f = open_memstream(&buf, &len);
    assert_int_equal(load_report_json(f, &r), 0);
    fclose(f);
    o = json_loads(buf, 0, &je);
    assert_non_null(o);
    assert_true(json_is_null(json_object_get(o, "record_file")));
    json_decref(o);
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    load_report_text(f, &r);
    fclose(f);
    assert_null(strstr(buf, "reversals"));
    assert_null(strstr(buf, "record:"));
    free(buf);
}

/* ------------------------------------------------------------------ terminals and cards */

static void test_term_ids_keys(void **state)
{
    (void)state;
    char id[9];
    assert_int_equal(load_term_id(1, id), 0);
    assert_string_equal(id, "LOAD0001");
    assert_int_equal(load_term_id(9999, id), 0);
    assert_string_equal(id, "LOAD9999");
    assert_int_equal(load_term_id(10000, id), 0);
    assert_string_equal(id, "LD010000");
    assert_int_equal(load_term_id(999999, id), 0);
    assert_string_equal(id, "LD999999");
    assert_int_equal(load_term_id(0, id), -1);
    assert_int_equal(load_term_id(1000000, id), -1);

    uint8_t a1[16], a2[16], b1[16], b2[16];
    assert_int_equal(load_term_keys(7, a1, a2), 0);
    assert_int_equal(load_term_keys(7, b1, b2), 0);
    assert_memory_equal(a1, b1, 16); /* deterministic */
    assert_memory_equal(a2, b2, 16);
    assert_memory_not_equal(a1, a2, 16); /* TPK != TAK */
    assert_int_equal(load_term_keys(8, b1, b2), 0);
    assert_memory_not_equal(a1, b1, 16);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(__builtin_popcount(a1[i]) % 2, 1); /* odd parity */
        assert_int_equal(__builtin_popcount(a2[i]) % 2, 1);
    }

    /* A load terminal builds a request whose MAC verifies under its own TAK. */
    struct sim_term *t = load_term_new(42, "127.0.0.1:8583", 1);
    assert_non_null(t);
    assert_string_equal(t->id, "LOAD0042");
    struct sim_txn x;
    memset(&x, 0, sizeof x);
    x.type = SIM_T_PURCHASE;
    strcpy(x.pan, "4890010000000012");
    strcpy(x.pin, "1234");
    strcpy(x.currency, "504");
    x.amount = 100;
    uint8_t msg[SIM_MSG_MAX], mac[8];
    size_t len = 0;
    struct sim_sent sent;
    char err[200];
    assert_int_equal(sim_term_build_request(t, &x, msg, sizeof msg, &len, &sent, err, sizeof err),
                     0);
    assert_string_equal(sent.tid, "LOAD0042");
    assert_string_equal(sent.stan, "000001");
    assert_true(len > 16);
    assert_int_equal(sim_term_mac(t, msg, len - 16, mac), 0);
    char hex[17];
    tohex(mac, 8, hex);
    assert_memory_equal(hex, msg + len - 16, 16);
    load_term_free(t);
}

/* The harness's card derivation equals issuer-sim's seed for every index it may use. */
static void test_cards_match_issuer_seed(void **state)
{
    (void)state;
    for (uint64_t i = 1; i <= 3000; i++) {
        struct load_card c;
        char pan[20], pin[5];
        int ccy = 0;
        assert_int_equal(load_card_of(i, &c), 0);
        assert_int_equal(tl_seed_card(i, pan, pin, &ccy), 0);
        assert_string_equal(c.pan, pan);
        assert_string_equal(c.pin, pin);
        assert_int_equal(atoi(c.currency), ccy);
    }
    const uint64_t big[] = { 99991, 100000, 123456789, 999999999 };
    for (size_t i = 0; i < 4; i++) {
        struct load_card c;
        char pan[20], pin[5];
        int ccy = 0;
        assert_int_equal(load_card_of(big[i], &c), 0);
        assert_int_equal(tl_seed_card(big[i], pan, pin, &ccy), 0);
        assert_string_equal(c.pan, pan);
        assert_string_equal(c.pin, pin);
    }
    struct load_card c;
    assert_int_equal(load_card_of(0, &c), -1);
    assert_int_equal(load_card_of(1000000000, &c), -1);
    assert_int_equal(load_card_of(1, &c), 0);
    assert_string_equal(c.pan, "4890010000000012"); /* the README's first demo card */
}

/* ------------------------------------------------------------------ reversals */

#define MS 1000000ull

/* A request's reversal: 0400 at once; a timeout makes the next try an 0401, due at once
 * (the try waited the whole interval); a lost connection makes it due at once too (it leaves
 * when a connection is up); a response with a bad MAC makes it wait for the rest of the
 * interval; an answer ends it. */
static void test_rev_machine(void **state)
{
    (void)state;
    const uint64_t iv = 1000 * MS, t = 5000 * MS;
    struct load_rev_core c = { .state = LOAD_REV_FREE };
    load_rev_begin(&c, 0, 0, LOAD_TRY_TIMEOUT, t, iv);
    assert_int_equal(c.state, LOAD_REV_WAITING);
    assert_int_equal(c.tries, 0);
    assert_string_equal(load_rev_next_mti(&c), "0400");
    assert_true(load_rev_due(&c, t));

    load_rev_sent(&c, t);
    assert_int_equal(c.state, LOAD_REV_IN_FLIGHT);
    assert_int_equal(c.tries, 1);
    assert_false(load_rev_due(&c, t + 10 * iv)); /* in flight: never due */

    load_rev_try_done(&c, LOAD_TRY_TIMEOUT, t + iv, iv);
    assert_int_equal(c.state, LOAD_REV_WAITING);
    assert_string_equal(load_rev_next_mti(&c), "0401");
    assert_true(load_rev_due(&c, t + iv));

    load_rev_sent(&c, t + iv);
    load_rev_try_done(&c, LOAD_TRY_CONN, t + iv + 100 * MS, iv);
    assert_string_equal(load_rev_next_mti(&c), "0401");
    assert_true(load_rev_due(&c, t + iv + 100 * MS));

    load_rev_sent(&c, t + 2 * iv);
    assert_int_equal(c.tries, 3);
    load_rev_try_done(&c, LOAD_TRY_BAD_MAC, t + 2 * iv + 50 * MS, iv);
    assert_false(load_rev_due(&c, t + 2 * iv + 50 * MS));
    assert_false(load_rev_due(&c, t + 3 * iv - 1));
    assert_true(load_rev_due(&c, t + 3 * iv));

    /* An 0410 saying 91/96 (the switch could not take it now) is repeated like a bad MAC:
     * one interval after the try. */
    load_rev_sent(&c, t + 3 * iv);
    load_rev_try_done(&c, LOAD_TRY_NOT_NOW, t + 3 * iv + 5 * MS, iv);
    assert_int_equal(c.state, LOAD_REV_WAITING);
    assert_false(load_rev_due(&c, t + 4 * iv - 1));
    assert_true(load_rev_due(&c, t + 4 * iv));

    load_rev_sent(&c, t + 4 * iv);
    load_rev_try_done(&c, LOAD_TRY_ANSWERED, t + 4 * iv + 7 * MS, iv);
    assert_int_equal(c.state, LOAD_REV_ANSWERED);
    assert_int_equal(c.tries, 5);
    assert_false(load_rev_due(&c, t + 10 * iv));
    load_rev_set_state(&c, LOAD_REV_FREE);

    /* A load-mix reversal that went unanswered: its first try was the request itself, so
     * the harness continues with 0401, due one interval after that request was sent (at once
     * when its connection was lost). */
    load_rev_begin(&c, 1, t, LOAD_TRY_BAD_MAC, t + 20 * MS, iv);
    assert_string_equal(load_rev_next_mti(&c), "0401");
    assert_false(load_rev_due(&c, t + 20 * MS));
    assert_true(load_rev_due(&c, t + iv));
    load_rev_abandon(&c);
    assert_int_equal(c.state, LOAD_REV_ABANDONED);
    load_rev_set_state(&c, LOAD_REV_FREE);
    load_rev_begin(&c, 1, t, LOAD_TRY_CONN, t + 20 * MS, iv);
    assert_true(load_rev_due(&c, t + 20 * MS));
}

/* The transition table, and the door aborting on a move the table forbids. */
static void test_rev_transitions(void **state)
{
    (void)state;
    enum {
        F = LOAD_REV_FREE,
        W = LOAD_REV_WAITING,
        I = LOAD_REV_IN_FLIGHT,
        A = LOAD_REV_ANSWERED,
        X = LOAD_REV_ABANDONED
    };
    const bool want[LOAD_REV_max][LOAD_REV_max] = {
        [F] = { [W] = true },
        [W] = { [I] = true, [X] = true },
        [I] = { [W] = true, [A] = true }, /* not [X]: a try in flight ends first */
        [A] = { [F] = true },
        [X] = { [F] = true },
    };
    for (int a = 0; a < LOAD_REV_max; a++)
        for (int b = 0; b < LOAD_REV_max; b++)
            assert_int_equal(load_rev_move_allowed((enum load_rev_state)a, (enum load_rev_state)b),
                             want[a][b]);
    assert_false(load_rev_move_allowed(LOAD_REV_max, LOAD_REV_FREE));
    assert_string_equal(load_rev_state_name(LOAD_REV_IN_FLIGHT), "in_flight");

    /* Abandoning a reversal with a try in flight would lose an answer: the process aborts. */
    fflush(NULL);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        freopen("/dev/null", "w", stderr);
        struct load_rev_core c = { .state = LOAD_REV_FREE };
        load_rev_begin(&c, 0, 0, LOAD_TRY_CONN, 0, 1);
        load_rev_sent(&c, 1);
        load_rev_abandon(&c);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(p, &st, 0), p);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
}

/* ------------------------------------------------------------------ the record file */

static void check_format(const struct load_record *r, const char *want)
{
    char line[LOAD_RECORD_LINE_MAX];
    int n = load_record_format(r, line, sizeof line);
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(line, want);
}

/* record_base() made a transfer to to_pan, a wallet in to_currency. */
static struct load_record transfer_base(const char *to_pan, const char *to_currency)
{
    struct load_record r = record_base();
    strcpy(r.proc, "400000");
    r.transfer = true;
    strcpy(r.to_pan, to_pan);
    strcpy(r.to_currency, to_currency);
    return r;
}

static void test_record_format(void **state)
{
    (void)state;
    assert_string_equal(LOAD_RECORD_HEADER, "# atlas-load-record 1\n");
    /* Every outcome of a request (record_cases.h). */
    struct load_record r;
    for (size_t i = 0; i < sizeof record_cases / sizeof record_cases[0]; i++) {
        r = record_base();
        record_cases[i].make(&r);
        check_format(&r, record_cases[i].line);
    }

    /* A value with a space or '=' cannot break the line's key=value structure. */
    r = record_base();
    strcpy(r.terminal, "T M=0001");
    r.answered = true;
    strcpy(r.rc, "00");
    strcpy(r.auth, "A B=C ");
    char line[LOAD_RECORD_LINE_MAX];
    assert_true(load_record_format(&r, line, sizeof line) > 0);
    assert_non_null(strstr(line, "terminal=T?M?0001 "));
    assert_non_null(strstr(line, " auth=A?B?C? "));

    /* The longest line fits LOAD_RECORD_LINE_MAX; a buffer one byte short is refused. */
    r = record_base();
    r.amount = 999999999999ull;
    strcpy(r.pan, "4890010000000000012");
    strcpy(r.mti, "0401");
    r.has_orig = true;
    strcpy(r.orig_mti, "0200");
    strcpy(r.orig_stan, "999999");
    strcpy(r.orig_de7, "1231235959");
    r.transfer = true;
    strcpy(r.to_pan, "4890020000000000029");
    strcpy(r.to_currency, "952");
    r.answered = true;
    strcpy(r.rc, "00");
    strcpy(r.auth, "ABCDEF");
    strcpy(r.de6, "999999999999");
    strcpy(r.de51, "952");
    strcpy(r.de28, "D99999999");
    r.rev = true; /* not a combination the harness writes, but the widest */
    strcpy(r.rev_stan, "999999");
    strcpy(r.rev_de7, "1231235959");
    r.rev_tries = 4000000000u;
    r.rev_answered = true;
    strcpy(r.rev_rc, "00");
    int n = load_record_format(&r, line, sizeof line);
    assert_true(n > 0 && n < LOAD_RECORD_LINE_MAX);
    assert_int_equal(load_record_format(&r, line, (size_t)n), -1);
    assert_int_equal(load_record_format(&r, line, (size_t)n + 1), n);

    /* A transfer (record version 2): its recipient's masked PAN and currency after the sender's
     * PAN; answered, the answer's DE 6, 51 and 28 after auth ('-' when absent). */
    assert_string_equal(LOAD_RECORD_HEADER_V2, "# atlas-load-record 2\n");
    r = transfer_base("4890020000000029", "952");
    record_answered(&r);
    strcpy(r.de6, "656");
    strcpy(r.de51, "952");
    strcpy(r.de28, "D00000100");
    check_format(&r, "req terminal=TERM0001 stan=000123 de7=1206011530 mti=0200 proc=400000 "
                     "amount=2500 currency=504 pan=489001******0012 to=489002******0029 "
                     "to_currency=952 answered=yes rc=00 auth=123456 de6=656 de51=952 "
                     "de28=D00000100 rev=no\n");
    r = transfer_base("4890030000000036", "950");
    record_answered_odd(&r); /* a decline without DE 6/51/28 */
    check_format(&r, "req terminal=TERM0001 stan=000123 de7=1206011530 mti=0200 proc=400000 "
                     "amount=2500 currency=504 pan=489001******0012 to=489003******0036 "
                     "to_currency=950 answered=yes rc=9? auth=- de6=- de51=- de28=- rev=no\n");
    r = transfer_base("4890030000000036", "950");
    record_reversed(&r);
    check_format(&r, "req terminal=TERM0001 stan=000123 de7=1206011530 mti=0200 proc=400000 "
                     "amount=2500 currency=504 pan=489001******0012 to=489003******0036 "
                     "to_currency=950 answered=no rev=yes rev_stan=000125 rev_de7=1206011545 "
                     "rev_tries=3 rev_rc=00\n");
    /* Masking. */
    char m[20];
    load_pan_mask("4890010000000012", m);
    assert_string_equal(m, "489001******0012");
    load_pan_mask("48900100012", m);
    assert_string_equal(m, "489001*0012");
    load_pan_mask("4890010001", m); /* too short to show anything */
    assert_string_equal(m, "**********");
}

/* ------------------------------------------------------------------ options */

/* Parses "load" + args (NULL-terminated); returns load_opts_parse's result. */
static int parse_load(struct load_opts *o, char *err, size_t errcap, ...)
{
    char *argv[40] = { "acquirer-sim", "load" };
    int argc = 2;
    va_list ap;
    va_start(ap, errcap);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 39;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    return load_opts_parse(argc, argv, o, err, errcap);
}

/* Option lists load refuses, each with a part of the sentence it refuses them with. Ranges come
 * from the table of options; an explicit 0 where 0 stands for "not given" is refused. */
static const struct {
    const char *says;
    const char *args[4]; /* up to 4, the rest NULL */
} refused_options[] = {
    { "bad value for --rate: expected an integer in 1..10000000", { "--rate", "0" } },
    { "--rate: expected", { "--rate", "10000001" } },
    { "--duration: expected a number above 0, up to 86400", { "--duration", "0" } },
    { "--warmup: expected a number in 0..3600", { "--warmup", "3601" } },
    { "--closed: expected an integer in 1..100000", { "--closed", "0" } },
    { "--slots: expected", { "--slots", "0" } },
    { "--reversal-interval-ms: expected", { "--reversal-interval-ms", "0" } },
    { "--max-error-rate: expected a number in 0..1", { "--max-error-rate", "1.5" } },
    { "--record: expected 1 to", { "--record", "" } },
    { "--seed: expected", { "--seed", "0" } },
    { "unknown option --bogus (try --help)", { "--bogus", "1" } },
    { "unexpected argument 'yes'", { "--quiet", "yes" } },
    { "--rate needs a value", { "--rate" } },
    /* What the rows cannot say. */
    { "--mix: unknown kind 'bogus'", { "--mix", "bogus=1" } },
    { "--card-first 1001 is above --cards 1000", { "--card-first", "1001" } },
    { "load terminal indices above 999999", { "--load-terminals", "--terminal-first", "999999" } },
    { "a transfer needs two wallets: --cards above --card-first",
      { "--mix", "transfer=1", "--card-first", "1000" } },
};

static void test_options_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof refused_options / sizeof refused_options[0]; i++) {
        const char *const *a = refused_options[i].args;
        struct load_opts o;
        char err[300];
        assert_int_equal(parse_load(&o, err, sizeof err, a[0], a[1], a[2], a[3], NULL), -1);
        if (!strstr(err, refused_options[i].says)) {
            fprintf(stderr, "'%s' lacks '%s'\n", err, refused_options[i].says);
            fail();
        }
    }
}

static void test_options(void **state)
{
    (void)state;
    struct load_opts o;
    char err[300];
    unsetenv("ATLAS_ACQ_STATE_DIR");
    /* The defaults docs/BENCHMARKS.md lists. */
    assert_int_equal(parse_load(&o, err, sizeof err, NULL), 0);
    assert_int_equal(o.rate, 100);
    assert_true(o.duration == 10.0 && o.warmup == 1.0);
    assert_int_equal(o.connections, 4);
    assert_int_equal(o.closed_k, 0); /* open loop */
    assert_int_equal(o.mix.total, 100);
    assert_int_equal(o.mix.weight[LOAD_K_PURCHASE], 50);
    assert_string_equal(o.report, "");
    assert_int_equal(o.cards, 1000);
    assert_int_equal(o.card_first, 9);
    assert_true(o.max_error_rate == 0.0);
    assert_string_equal(o.host, "127.0.0.1:8583");
    assert_false(o.load_terms || o.quiet || o.strict_rate);
    assert_int_equal(o.term_first, 1);
    assert_int_equal(o.timeout_ms, 5000);
    assert_int_equal(o.amount_max, 50);
    assert_true(o.seed == 0x9E3779B97F4A7C15ull);
    assert_string_equal(o.state_dir, "var/acquirer-sim");
    assert_string_equal(o.record, "");
    assert_int_equal(o.rev_interval_ms, 5000); /* the --timeout-ms */
    assert_true(o.rev_deadline == 120.0);
    assert_int_equal(o.slots, 256); /* a quarter second of 100/s, at least 256 */

    setenv("ATLAS_ACQ_STATE_DIR", "/tmp/acq-state", 1);
    assert_int_equal(parse_load(&o, err, sizeof err, "--rate", "4000", "--closed", "8",
                                "--connections", "100", "--quiet", "--load-terminals", "--duration",
                                "0.5", "--warmup", "0", "--timeout-ms", "900", "--mix", "refund=1",
                                "--record", "r.txt", NULL),
                     0);
    unsetenv("ATLAS_ACQ_STATE_DIR");
    assert_string_equal(o.state_dir, "/tmp/acq-state");
    assert_int_equal(o.rate, 4000);
    assert_int_equal(o.closed_k, 8);
    assert_true(o.quiet && o.load_terms && !o.strict_rate);
    assert_true(o.duration == 0.5 && o.warmup == 0.0);
    assert_int_equal(o.rev_interval_ms, 900);
    assert_int_equal(o.mix.total, 1);
    assert_string_equal(o.record, "r.txt");
    assert_int_equal(o.slots, 800); /* K per connection */
    assert_int_equal(parse_load(&o, err, sizeof err, "--rate", "10000000", NULL), 0);
    assert_int_equal(o.slots, 262144);
    assert_int_equal(
        parse_load(&o, err, sizeof err, "--slots", "7", "--reversal-interval-ms", "3", NULL), 0);
    assert_int_equal(o.slots, 7);
    assert_int_equal(o.rev_interval_ms, 3);

    assert_int_equal(parse_load(&o, err, sizeof err, "--rate", "5", "--help", "--bogus", NULL), 1);

    /* load-seed */
    char *seed_ok[] = { "acquirer-sim", "load-seed", "--terminals", "10", "--first", "5", NULL };
    uint64_t n = 0, first = 0;
    assert_int_equal(load_seed_opts_parse(6, seed_ok, &n, &first, err, sizeof err), 0);
    assert_int_equal(n, 10);
    assert_int_equal(first, 5);
    char *seed_none[] = { "acquirer-sim", "load-seed", NULL };
    assert_int_equal(load_seed_opts_parse(2, seed_none, &n, &first, err, sizeof err), -1);
    assert_non_null(strstr(err, "--terminals 1..999999"));
    char *seed_far[] = {
        "acquirer-sim", "load-seed", "--terminals", "5", "--first", "999999", NULL
    };
    assert_int_equal(load_seed_opts_parse(6, seed_far, &n, &first, err, sizeof err), -1);

    /* The usage text is the table. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    load_usage(f);
    fclose(f);
    assert_non_null(strstr(text, "--rate N"));
    assert_non_null(strstr(text, "default 100\n"));
    assert_non_null(strstr(text, "--reversal-deadline X"));
    assert_non_null(strstr(text, "--terminals N"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_error),      cmocka_unit_test(test_hist_small_exact),
        cmocka_unit_test(test_sched_math),      cmocka_unit_test(test_mix_parse),
        cmocka_unit_test(test_mix_pick),        cmocka_unit_test(test_report_json),
        cmocka_unit_test(test_term_ids_keys),   cmocka_unit_test(test_cards_match_issuer_seed),
        cmocka_unit_test(test_rev_machine),     cmocka_unit_test(test_rev_transitions),
        cmocka_unit_test(test_record_format),   cmocka_unit_test(test_options),
        cmocka_unit_test(test_options_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
