/* The chaos suite: the whole stack (switchd, hsm-sim, issuer-sim, PostgreSQL, as
 * processes) under load from `acquirer-sim load --record`, with the faults of issue 11
 * injected while money moves — switchd killed (-9) and restarted, PostgreSQL stopped
 * and started, the issuer stalled while switchd's database is cut off and switchd gets
 * SIGTERM, issuer-sim and hsm-sim killed, repeats and resends across a restart, and
 * thousands of idle and dribbling connections while a fresh terminal is served. Every
 * run ends with `atlas-reconcile`: the terminals' record, the switch's journal and
 * reversal queue and the issuer's ledger must agree — zero mismatches, zero money
 * difference per wallet.
 *
 * Short mode (the default, run by ./test.sh through ctest): each scenario once, fault
 * times fixed, a few minutes in all. Long mode (--long): rounds of heavier load with
 * faults drawn at random times from --seed, reconciled after each round; docs/
 * RELIABILITY.md says how to run it and records its last figures.
 *
 * The suite runs its own PostgreSQL cluster (db/pg.sh with ATLAS_PGDATA/ATLAS_PGPORT
 * under a temporary directory), since it stops and starts it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libpq-fe.h>

#include "db_testlib.h"
#include "log.h" /* at_mask_pan */
#include "sw_stack.h"
#include "testsupport.h"

#define LOAD_CARDS 200

struct chaos {
    bool long_mode;
    uint64_t seed, rng;
    unsigned rate;       /* arrivals per second */
    unsigned duration_s; /* load per scenario (short) or per round (long) */
    unsigned rounds;     /* long mode */
    const char *only;    /* --scenario NAME */
    bool stand_in;       /* --stand-in: WALLET1 decides in stand-in (docs/switchd.md) */
    char dir[256];
    struct dbt_cluster pg; /* the suite's own */
    unsigned ran, failed;
    /* figures of the whole run */
    unsigned long long requests, answered, reversals, faults;
    unsigned long long by_kind[6]; /* long mode: faults of each kind (long_round's names) */
};

static struct chaos C;

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "chaos: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static uint64_t rnd(void)
{
    uint64_t x = C.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    C.rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps until `at` seconds after t0. */
static void until(double t0, double at)
{
    double left = t0 + at - now_s();
    if (left > 0)
        usleep((useconds_t)(left * 1e6));
}

/* ---------------------------------------------------------------- the stack */

static char flood_conf[640];

static uint16_t flood_port;

static int stack_up(struct stack *s)
{
    flood_port = ts_free_port();
    snprintf(flood_conf, sizeof flood_conf,
             "%s[listener flood]\naddress = 127.0.0.1:%u\nmax_connections = 4000\n"
             "max_connections_per_address = 0\nframe_timeout_ms = 60000\n",
             C.stand_in ? "stand_in = on\n" : "", flood_port); /* into [issuer WALLET1] */
    struct stack_opts o = { .issuer = true,
                            .issuer_timeout_ms = 1500,
                            .wallets = LOAD_CARDS,
                            .extra_conf = flood_conf,
                            .fx_rates = "fx/demo-rates.csv" };
    if (stack_start(s, &o) != 0 || stack_seed_load_terminals(s, 4) != 0)
        return -1;
    /* --stand-in: rules generous enough that stand-in approves what the issuer would. */
    if (C.stand_in && stack_stand_in_rules(s, "{00,01,09}", 1000000, 100000000) != 0)
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- load and reconciliation */

struct load {
    struct stack_load run;
    double t0;
};

/* The harness's default mix with a share of wallet-to-wallet transfers (any BIN to any BIN, so
 * converted ones too): each is a saga of two legs that every fault below may cut. */
#define CHAOS_MIX "purchase=45,purchase-nopin=15,cash=10,balance=10,refund=5,reversal=10,transfer=5"

/* Harness timeout above the issuer timeout (1.5 s): a healthy switch always answers before the
 * terminal gives up; during faults the terminal reverses. */
static int load_start(struct stack *s, struct load *l, const char *tag, unsigned rate,
                      unsigned secs)
{
    char state[64];
    snprintf(state, sizeof state, "acq-%s", tag);
    const struct stack_load_opts o = { .tag = tag,
                                       .rate = rate,
                                       .seconds = secs,
                                       .warmup = "0",
                                       .connections = 4,
                                       .load_terminals = true,
                                       .record = true,
                                       .timeout_ms = 2500,
                                       .reversal_deadline_s = 90,
                                       .any_error_rate = true,
                                       .state = state,
                                       .mix = CHAOS_MIX };
    l->t0 = now_s();
    return stack_load_start(s, &o, &l->run);
}

/* Waits for the harness (its duration, then every reversal it owes). 0 when it exited 0. */
static int load_wait(struct load *l, unsigned secs)
{
    int left_ms = (int)((l->t0 + secs + 150 - now_s()) * 1000);
    int code = stack_load_wait(&l->run, left_ms > 0 ? left_ms : 0);
    char *report = ts_read_file(l->run.report, 0, NULL);
    if (code != -1 && report) { /* a few figures for the summary; the report is JSON */
        const char *p;
        if ((p = strstr(report, "\"all_requests\":")))
            C.requests += strtoull(p + 15, NULL, 10);
        if ((p = strstr(report, "\"all_answered\":")))
            C.answered += strtoull(p + 15, NULL, 10);
        if ((p = strstr(report, "\"reversals\":")))
            C.reversals += strtoull(p + 12, NULL, 10);
    }
    free(report);
    return code == 0 ? 0 : -1;
}

/* Every process up, and nothing left to settle: no reversal pending, nothing in flight, and no
 * transfer still running — a row switchd could not move on while PostgreSQL was away is written
 * once it is back (switch/xfer_rows.c, retried every second), reconciliation must not race it. */
static int settle(struct stack *s)
{
    if (stack_settle(s, 90000) != 0)
        return -1;
    if (stack_wait_scalar(s,
                          "SELECT count(*) FROM switch.transfers WHERE state IN ('started', 'aft')",
                          0, 15000) != 0) {
        say("transfers still unfinished after 15 s: %lld",
            stack_scalar(s, "SELECT count(*) FROM switch.transfers"
                            " WHERE state IN ('started', 'aft')"));
        return -1;
    }
    return 0;
}

/* atlas-reconcile over what this stack did, with the terminals' record. */
static int reconcile(struct stack *s, const char *tag, const char *record)
{
    char out[400];
    snprintf(out, sizeof out, "%s/%s.reconcile", s->dir, tag);
    const char *extra[] = { "--from", "2000-01-01T00:00:00Z", record ? "--record" : NULL, record,
                            NULL };
    int code = stack_reconcile(s, out, extra);
    if (code != 0) {
        say("atlas-reconcile found mismatches (exit %d):", code);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "head -80 '%s' >&2", out);
        if (system(cmd) != 0)
            say("(cannot show %s)", out);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- faults */

static int switch_kill_restart(struct stack *s)
{
    C.faults++;
    return stack_restart_switch(s, SIGKILL) == -1 ? -1 : 0;
}

static int pg_stop_start(double pause_s)
{
    C.faults++;
    if (dbt_cluster_ctl(&C.pg, "stop") != 0)
        return -1;
    usleep((useconds_t)(pause_s * 1e6));
    return dbt_cluster_ctl(&C.pg, "start");
}

/* The issuer stalls, switchd loses its database, and switchd is told to stop while
 * requests time out: everything it decided must be in its spool. Then all comes back. */
static int outage_sigterm(struct stack *s)
{
    C.faults++;
    if (stack_switch_db(s, false) != 0 || stack_kill(s->issuer, SIGSTOP) != 0)
        return -1;
    sleep(3); /* requests time out: 91s and reversals, database away */
    int st = ts_stop(s->sw, SIGTERM, 20000);
    stack_kill(s->issuer, SIGCONT);
    if (stack_switch_db(s, true) != 0)
        return -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        say("switchd did not stop cleanly on SIGTERM (status %d)", st);
        return -1;
    }
    return stack_start_switch(s);
}

static int issuer_kill_restart(struct stack *s)
{
    C.faults++;
    ts_stop(s->issuer, SIGKILL, 5000);
    usleep(300000);
    return stack_start_issuer(s);
}

static int hsm_kill_restart(struct stack *s)
{
    C.faults++;
    ts_stop(s->hsm, SIGKILL, 5000);
    usleep(300000);
    return stack_start_hsm(s, NULL);
}

/* ---------------------------------------------------------------- scenarios */

typedef int (*faults_fn)(struct stack *s, double t0);

static int faults_switch_kill(struct stack *s, double t0)
{
    until(t0, 3);
    if (switch_kill_restart(s) != 0)
        return -1;
    until(t0, 7);
    return switch_kill_restart(s);
}

static int faults_pg_restart(struct stack *s, double t0)
{
    (void)s;
    until(t0, 3);
    return pg_stop_start(3);
}

static int faults_outage_sigterm(struct stack *s, double t0)
{
    until(t0, 3);
    return outage_sigterm(s);
}

static int faults_issuer_hsm_kill(struct stack *s, double t0)
{
    until(t0, 3);
    if (issuer_kill_restart(s) != 0)
        return -1;
    until(t0, 7);
    return hsm_kill_restart(s);
}

/* Runs the load with the faults, then settles and reconciles. */
static int loaded_scenario(struct stack *s, const char *tag, faults_fn faults)
{
    struct load l;
    if (load_start(s, &l, tag, C.rate, C.duration_s) != 0)
        return -1;
    int rc = faults ? faults(s, l.t0) : 0;
    if (rc != 0)
        say("%s: injecting the fault failed", tag);
    if (load_wait(&l, C.duration_s) != 0)
        rc = -1;
    if (!ts_alive(s->sw) && stack_start_switch(s) != 0)
        rc = -1;
    if (settle(s) != 0)
        rc = -1;
    if (reconcile(s, tag, l.run.record) != 0)
        rc = -1;
    return rc;
}

/* Repeats and resends across a restart, request by request: the answers a terminal gets
 * and the money the issuer holds must both be right. Writes its own record (the harness
 * format) so that atlas-reconcile checks these terminals' view too. */
static int scenario_repeats(struct stack *s)
{
    enum { N = 6 };
    static const char *const pans[N] = {
        "4890010000000012", "4890020000000029", "4890030000000036",
        "4890040000000043", "4890010000000012", "4890020000000029"
    };
    struct sim_txn x[N];
    struct sim_resp r[N], again;
    struct sim_sent sent[N];
    char record[400];
    const char *rc_got;
    int rc = 0;
    snprintf(record, sizeof record, "%s/repeats.record", s->dir);
    FILE *f = fopen(record, "w");
    if (!f)
        return -1;
    fprintf(f, "# atlas-load-record 1\n");
    for (int i = 0; i < N; i++) {
        stack_card_txn(&x[i], SIM_T_PURCHASE, pans[i], 100 + (uint64_t)i);
        stack_fix_time(&x[i]);
        if (strcmp(rc_got = stack_rc(s, "TERM0001", &x[i], &r[i], &sent[i]), "00") != 0) {
            say("repeats: purchase %d not approved (%s)", i, rc_got);
            rc = -1;
        }
        x[i].stan = (uint32_t)atoi(sent[i].stan);
    }
    /* Crash, then every request again: repeats (0201) get their answer, resends (0200)
     * are duplicates; the even ones are then reversed (0420), repeated (0421) and
     * reversed again (0401) — one reversal at the issuer. */
    if (switch_kill_restart(s) != 0)
        return -1;
    for (int i = 0; i < N; i++) {
        struct sim_txn rep = x[i];
        stack_repeat_of(&rep, "0201", &sent[i]);
        /* 91 until the issuer link is back */
        rc_got = stack_rc_linked(s, "TERM0001", &rep, &again, 6000);
        if (strcmp(rc_got, "00") != 0 || strcmp(again.auth, r[i].auth) != 0) {
            say("repeats: 0201 of %d answered %s/%s, original %s/%s", i, rc_got, again.auth,
                r[i].rc, r[i].auth);
            rc = -1;
        }
        if (strcmp(rc_got = stack_rc(s, "TERM0001", &x[i], &again, NULL), "94") != 0) {
            say("repeats: resend of %d answered %s, not 94", i, rc_got);
            rc = -1;
        }
    }
    for (int i = 0; i < N; i++) {
        char masked[20];
        at_mask_pan(pans[i], strlen(pans[i]), masked);
        fprintf(f,
                "req terminal=TERM0001 stan=%s de7=%s mti=0200 proc=%s amount=%u currency=%s"
                " pan=%s answered=yes rc=00 auth=%s rev=no\n",
                sent[i].stan, sent[i].de7, sent[i].proc, 100 + i, x[i].currency, masked, r[i].auth);
        if (i % 2)
            continue;
        struct sim_txn rev;
        struct sim_sent rsent;
        stack_reversal_of(&rev, pans[i], 100 + (uint64_t)i, &sent[i]);
        stack_fix_time(&rev); /* its repeats carry the same DE 7 */
        const char *mtis[] = { "0420", "0421", "0401" };
        for (int k = 0; k < 3; k++) {
            if (k > 0)
                stack_repeat_of(&rev, mtis[k], &rsent); /* and the same DE 11 */
            if (strcmp(rc_got = stack_rc(s, "TERM0001", &rev, &again, k == 0 ? &rsent : NULL),
                       "00") != 0) {
                say("repeats: %s of %d answered %s", mtis[k], i, rc_got);
                rc = -1;
            }
        }
        fprintf(f,
                "req terminal=TERM0001 stan=%s de7=%s mti=0401 proc=%s amount=%u currency=%s"
                " pan=%s orig_mti=0200 orig_stan=%s orig_de7=%s answered=yes rc=00 auth=- rev=no\n",
                rsent.stan, rsent.de7, sent[i].proc, 100 + i, x[i].currency, masked, sent[i].stan,
                sent[i].de7);
    }
    fclose(f);
    if (settle(s) != 0 || reconcile(s, "repeats", record) != 0)
        rc = -1;
    return rc;
}

/* Opens a connection to port from source address src (another loopback address). */
static int connect_from(const char *src, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET }, to = { .sin_family = AF_INET };
    inet_pton(AF_INET, src, &a.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    to.sin_port = htons(port);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* 3,000 connections that say nothing and 50 that dribble a frame a byte a second hold
 * their slots while the load runs and a fresh terminal is answered promptly. */
static int scenario_flood(struct stack *s)
{
    enum { IDLE = 3000, DRIBBLE = 50 };
    static int fds[IDLE + DRIBBLE];
    int n = 0, rc = 0;
    for (; n < IDLE + DRIBBLE; n++) {
        char src[32];
        snprintf(src, sizeof src, "127.0.%d.%d", 1 + n / 250, 2 + n % 250);
        fds[n] = connect_from(src, flood_port);
        if (fds[n] < 0) {
            say("flood: connection %d failed: %s", n, strerror(errno));
            rc = -1;
            break;
        }
    }
    struct load l;
    if (rc == 0 && load_start(s, &l, "flood", C.rate, C.duration_s) != 0)
        rc = -1;
    double worst = 0;
    for (unsigned sec = 0; rc == 0 && sec < C.duration_s; sec++) {
        for (int i = IDLE; i < n; i++) /* a frame's length prefix, one byte at a time */
            if (send(fds[i], "\x01", 1, MSG_NOSIGNAL) != 1)
                break;
        struct sim_txn x;
        struct sim_resp r;
        stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 1);
        double t = now_s();
        if (stack_send(s, stack_term(s, "TERM0002"), &x, &r, NULL) != 0 ||
            strcmp(r.rc, "00") != 0) {
            say("flood: the fresh terminal was not served (%s)", r.rc);
            rc = -1;
        }
        if (now_s() - t > worst)
            worst = now_s() - t;
        usleep(700000);
    }
    long long open = stack_metric(s, "atlas_terminal_connections");
    say("flood: %d connections held, the fresh terminal's slowest answer %.3f s (%lld open)", n,
        worst, open);
    if (worst > 3.0) {
        say("flood: the fresh terminal waited %.1f s", worst);
        rc = -1;
    }
    if (rc == 0 && load_wait(&l, C.duration_s) != 0)
        rc = -1;
    for (int i = 0; i < n; i++)
        close(fds[i]);
    if (rc == 0 && (settle(s) != 0 || reconcile(s, "flood", l.run.record) != 0))
        rc = -1;
    return rc;
}

/* ---------------------------------------------------------------- long mode */

/* One round: load for duration_s with faults at random times (at least one, one every
 * 20 s on average), each of a kind drawn from the seed. */
static int long_round(struct stack *s, unsigned round)
{
    char tag[32];
    snprintf(tag, sizeof tag, "round%u", round);
    struct load l;
    if (load_start(s, &l, tag, C.rate, C.duration_s) != 0)
        return -1;
    enum { MAX_FAULTS = 64 };
    unsigned nfaults = 1 + (unsigned)(rnd() % (C.duration_s / 20 + 1));
    double at[MAX_FAULTS];
    if (nfaults > MAX_FAULTS)
        nfaults = MAX_FAULTS;
    for (unsigned i = 0; i < nfaults; i++) { /* drawn, then injected in time order */
        at[i] = 2 + (double)(rnd() % (uint64_t)(C.duration_s > 12 ? C.duration_s - 10 : 2));
        for (unsigned k = i; k > 0 && at[k] < at[k - 1]; k--) {
            double x = at[k];
            at[k] = at[k - 1];
            at[k - 1] = x;
        }
    }
    int rc = 0;
    for (unsigned i = 0; i < nfaults && rc == 0; i++) {
        until(l.t0, at[i]);
        unsigned kind = (unsigned)(rnd() % 6);
        static const char *const names[] = { "switchd kill -9",       "switchd SIGTERM",
                                             "PostgreSQL stop/start", "outage + SIGTERM",
                                             "issuer-sim kill -9",    "hsm-sim kill -9" };
        say("%s: fault %u at %.1f s: %s", tag, i + 1, now_s() - l.t0, names[kind]);
        C.by_kind[kind]++;
        switch (kind) {
        case 0:
            rc = switch_kill_restart(s);
            break;
        case 1:
            C.faults++;
            rc = ts_stop(s->sw, SIGTERM, 20000) == -1 ? -1 : stack_start_switch(s);
            break;
        case 2:
            rc = pg_stop_start(1 + (double)(rnd() % 5));
            break;
        case 3:
            rc = outage_sigterm(s);
            break;
        case 4:
            rc = issuer_kill_restart(s);
            break;
        default:
            rc = hsm_kill_restart(s);
            break;
        }
    }
    if (load_wait(&l, C.duration_s) != 0)
        rc = -1;
    if (!ts_alive(s->sw) && stack_start_switch(s) != 0)
        rc = -1;
    if (settle(s) != 0 || reconcile(s, tag, l.run.record) != 0)
        rc = -1;
    return rc;
}

/* ---------------------------------------------------------------- main */

struct scenario {
    const char *name;
    faults_fn faults; /* a loaded scenario */
    int (*run)(struct stack *s);
};

static const struct scenario scenarios[] = {
    { "switch_kill", faults_switch_kill, NULL },
    { "pg_restart", faults_pg_restart, NULL },
    { "outage_sigterm", faults_outage_sigterm, NULL },
    { "issuer_hsm_kill", faults_issuer_hsm_kill, NULL },
    { "repeats", NULL, scenario_repeats },
    { "flood", NULL, scenario_flood },
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chaos [--long] [--seed N] [--rounds N] [--duration S] [--rate R]\n"
            "             [--scenario NAME] [--stand-in]\n"
            "Short mode: every scenario once (switch_kill, pg_restart, outage_sigterm,\n"
            "issuer_hsm_kill, repeats, flood), each reconciled. Long mode: --rounds rounds of\n"
            "--duration seconds of load with faults at random times drawn from --seed.\n"
            "--stand-in: the issuer's outages are decided in stand-in (WALLET1 stand_in = on).\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "long", no_argument, NULL, 'l' },
        { "seed", required_argument, NULL, 's' },
        { "rounds", required_argument, NULL, 'r' },
        { "duration", required_argument, NULL, 'd' },
        { "rate", required_argument, NULL, 'R' },
        { "scenario", required_argument, NULL, 'S' },
        { "stand-in", no_argument, NULL, 'I' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    C.seed = (uint64_t)time(NULL);
    C.rate = 80;
    C.duration_s = 10;
    C.rounds = 3;
    bool dur_set = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            C.long_mode = true;
            break;
        case 's':
            C.seed = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            C.rounds = (unsigned)atoi(optarg);
            break;
        case 'd':
            C.duration_s = (unsigned)atoi(optarg);
            dur_set = true;
            break;
        case 'R':
            C.rate = (unsigned)atoi(optarg);
            break;
        case 'S':
            C.only = optarg;
            break;
        case 'I':
            C.stand_in = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (C.long_mode && !dur_set)
        C.duration_s = 120;
    C.rng = C.seed ? C.seed : 1;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { /* the flood holds 3,000 sockets */
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const char *dir = ts_tmpdir("chaos");
    if (!dir)
        return 1;
    snprintf(C.dir, sizeof C.dir, "%s", dir);
    if (dbt_cluster_start(&C.pg, C.dir, true) != 0) {
        say("cannot start the suite's PostgreSQL cluster");
        return 1;
    }
    double t_start = now_s();
    say("%s mode, seed %llu, %u/s for %u s%s", C.long_mode ? "long" : "short",
        (unsigned long long)C.seed, C.rate, C.duration_s, C.long_mode ? " per round" : "");
    if (C.long_mode) {
        struct stack s;
        C.ran++;
        if (stack_up(&s) != 0) {
            C.failed++;
        } else {
            for (unsigned r = 1; r <= C.rounds; r++) {
                int rc = long_round(&s, r);
                say("round %u: %s", r, rc == 0 ? "reconciled" : "FAILED");
                if (rc != 0) {
                    C.failed++;
                    break;
                }
            }
        }
        stack_stop(&s);
    } else {
        for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
            const struct scenario *sc = &scenarios[i];
            if (C.only && strcmp(C.only, sc->name) != 0)
                continue;
            struct stack s;
            double t = now_s();
            C.ran++;
            int rc = stack_up(&s);
            if (rc == 0)
                rc = sc->run ? sc->run(&s) : loaded_scenario(&s, sc->name, sc->faults);
            stack_stop(&s);
            say("%-16s %s (%.0f s)", sc->name, rc == 0 ? "reconciled" : "FAILED", now_s() - t);
            if (rc != 0)
                C.failed++;
        }
    }
    dbt_cluster_ctl(&C.pg, "stop");
    if (C.long_mode)
        say("faults: %llu switchd kill -9, %llu switchd SIGTERM, %llu PostgreSQL stop/start, "
            "%llu outage + SIGTERM, %llu issuer-sim kill -9, %llu hsm-sim kill -9",
            C.by_kind[0], C.by_kind[1], C.by_kind[2], C.by_kind[3], C.by_kind[4], C.by_kind[5]);
    say("%u of %u %s reconciled; %llu requests, %llu answered, %llu reversals by terminals, "
        "%llu faults injected; %.0f s",
        C.ran - C.failed, C.ran, C.long_mode ? "runs" : "scenarios", C.requests, C.answered,
        C.reversals, C.faults, now_s() - t_start);
    if (C.failed == 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", C.dir);
        if (system(cmd) != 0)
            say("could not remove %s", C.dir);
    } else {
        say("kept %s for a look", C.dir);
    }
    return C.failed == 0 ? 0 : 1;
}
