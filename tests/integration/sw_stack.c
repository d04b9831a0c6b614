/* Integration stack: real processes, real PostgreSQL, real TCP on loopback. */
#include "sw_stack.h"

#include "db.h"
#include "db_testlib.h"
#include "hex.h"
#include "testsupport.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <sys/socket.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HMAC_KEY "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
#define SEAL_KEY "A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF"

/* The issuers of the demo world (db/seed/demo_switch.sql) and the BIN each is routed. */
static const char *const demo_issuers[STACK_ISSUERS_MAX][2] = {
    { "WALLET1", "489001" },
    { "WALLET2", "489002" },
    { "WALLET3", "489003" },
    { "WALLET4", "489004" },
};

static uint16_t port_of(const char *address)
{
    const char *c = strrchr(address, ':');
    return c ? (uint16_t)atoi(c + 1) : 0;
}

/* The listeners say how many connections they take: switchd refuses to
 * start when RLIMIT_NOFILE cannot hold them all, and the default (20000 per
 * listener) is more than a test machine's hard limit may allow. */
static int write_conf(struct stack *s)
{
    FILE *f = fopen(s->switch_conf, "w");
    if (!f)
        return -1;
    fprintf(f,
            "log_file = %s\nlog_level = info\nmetrics_address = 127.0.0.1:%u\n"
            "spool_dir = %s/spool\ndb = \"%s\"\ndrain_timeout_ms = 3000\n"
            "reversal_retry_ms = 300\nclock_skew_s = 1\n"
            "[hsm]\naddress = 127.0.0.1:%u\nconnections = 2\n"
            "[listener acq]\naddress = 127.0.0.1:%u\ndialect = ascii87\nframing = 2b\n"
            "max_inflight = 16\nmax_connections = 1000\n"
            "[listener pos]\naddress = 127.0.0.1:%u\ndialect = bcd87\nframing = tpdu\n"
            "max_connections = 1000\n"
            "[issuer WALLET1]\naddress = 127.0.0.1:%u\ndialect = ascii87\nframing = 2b\n"
            "timeout_ms = %u\nreconnect_min_ms = 50\nreconnect_max_ms = 200\n"
            "echo_interval_ms = 2000\n",
            s->switch_log, s->metrics_port, s->dir, s->switch_conninfo, s->hsm_port, s->acq_port,
            s->pos_port, s->issuer_port, s->opts.issuer_timeout_ms);
    for (unsigned i = 0; i < s->n_more; i++)
        fprintf(f,
                "[issuer %s]\naddress = 127.0.0.1:%u\ndialect = ascii87\nframing = 2b\n"
                "timeout_ms = %u\nreconnect_min_ms = 50\nreconnect_max_ms = 200\n"
                "echo_interval_ms = 2000\n",
                s->more[i].id, s->more[i].port, s->opts.issuer_timeout_ms);
    fputs(s->opts.extra_conf ? s->opts.extra_conf : "", f);
    return fclose(f);
}

int stack_start_switch(struct stack *s)
{
    const char *args[] = { "--config", s->switch_conf, NULL };
    s->sw = ts_spawn("switchd", args, s->switch_log);
    if (s->sw <= 0 || ts_wait_port(s->acq_port, 15000) != 0) {
        fprintf(stderr, "stack: switchd did not come up (log %s)\n", s->switch_log);
        return -1;
    }
    /* The port answering is not proof enough: make sure it is this switchd,
     * ready, and still alive (not one that failed to bind and exited). */
    for (int i = 0; i < 300; i++) {
        int st;
        if (waitpid(s->sw, &st, WNOHANG) == s->sw) {
            fprintf(stderr, "stack: switchd exited at start (log %s)\n", s->switch_log);
            s->sw = 0;
            return -1;
        }
        if (ts_file_contains(s->switch_log, "\"event\":\"ready\""))
            return 0;
        usleep(50000);
    }
    fprintf(stderr, "stack: switchd never logged ready (log %s)\n", s->switch_log);
    return -1;
}

int stack_restart_switch(struct stack *s, int sig)
{
    int st = ts_stop(s->sw, sig, 10000);
    s->sw = 0;
    usleep(300000);
    return stack_start_switch(s) == 0 ? st : -1;
}

int stack_start_hsm(struct stack *s, const char *fail)
{
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", s->hsm_port);
    const char *args[16] = { "--listen", listen };
    size_t n = 2;
    if (fail) {
        args[n++] = "--fail";
        args[n++] = fail;
    }
    for (size_t i = 0; s->opts.hsm_args && s->opts.hsm_args[i] && n < 15; i++)
        args[n++] = s->opts.hsm_args[i]; /* test_switch_tls: --tls-cert... */
    s->hsm = ts_spawn("hsm-sim", args, s->hsm_log);
    if (s->hsm <= 0 || ts_wait_port(s->hsm_port, 10000) != 0) {
        fprintf(stderr, "stack: hsm-sim did not come up (log %s)\n", s->hsm_log);
        return -1;
    }
    return 0;
}

/* What the stack holds of issuer id, WALLET1's fields or one of more[]. false when it has none. */
struct issuer_ref {
    pid_t *pid;
    uint16_t port;
    const char *conninfo, *log;
};

static bool issuer_ref(struct stack *s, const char *id, struct issuer_ref *r)
{
    if (strcmp(id, "WALLET1") == 0) {
        *r = (struct issuer_ref){ &s->issuer, s->issuer_port, s->issuer_conninfo, s->issuer_log };
        return true;
    }
    for (unsigned i = 0; i < s->n_more; i++)
        if (strcmp(id, s->more[i].id) == 0) {
            struct stack_issuer *m = &s->more[i];
            *r = (struct issuer_ref){ &m->pid, m->port, m->conninfo, m->log };
            return true;
        }
    return false;
}

pid_t *stack_issuer_pid(struct stack *s, const char *id)
{
    struct issuer_ref r;
    return issuer_ref(s, id, &r) ? r.pid : NULL;
}

const char *stack_issuer_db(struct stack *s, const char *id)
{
    struct issuer_ref r;
    return issuer_ref(s, id, &r) ? r.conninfo : NULL;
}

const char *stack_issuer_log(struct stack *s, const char *id)
{
    struct issuer_ref r;
    return issuer_ref(s, id, &r) ? r.log : NULL;
}

/* The key the issuer's row names in column (zpk_key_id, zak_key_id, zmk_key_id), under the LMK,
 * into out: the current generation after a key change (docs/keys.md). 0, or -1 with the reason
 * printed. */
static int issuer_key(struct stack *s, const char *issuer, const char *column, char *out,
                      size_t cap)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT k.key_under_lmk FROM switch.issuers i JOIN switch.keys k"
             " ON k.key_id = i.%s WHERE i.issuer_id = $1",
             column);
    PGconn *c = dbt_connect(s->conninfo);
    const char *v[] = { issuer };
    PGresult *r = c ? PQexecParams(c, sql, 1, NULL, v, NULL, NULL, 0) : NULL;
    int rc = -1;
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
        snprintf(out, cap, "%s", PQgetvalue(r, 0, 0)) < (int)cap)
        rc = 0;
    else
        fprintf(stderr, "stack: no %s key of %s in switch.keys\n", column, issuer);
    PQclear(r);
    PQfinish(c);
    return rc;
}

/* With several issuers each issuer-sim gets its issuer's ZPK, ZAK and ZMK as switchd has them;
 * the one issuer of the default stack keeps issuer-sim's defaults (WALLET1's lab keys) until a
 * key change has replaced them (the issuer row names another generation). */
int stack_start_issuer_id(struct stack *s, const char *id)
{
    char listen[32], hsm[32], zpk[80], zak[80], zmk[80], grace[16];
    struct issuer_ref r;
    if (!issuer_ref(s, id, &r))
        return -1;
    snprintf(listen, sizeof listen, "127.0.0.1:%u", r.port);
    snprintf(hsm, sizeof hsm, "127.0.0.1:%u", s->hsm_port);
    const char *args[28] = { "--listen", listen, "--hsm", hsm, "--db", r.conninfo, "--log", r.log };
    size_t n = 8;
    if (issuer_key(s, id, "zpk_key_id", zpk, sizeof zpk) != 0 ||
        issuer_key(s, id, "zak_key_id", zak, sizeof zak) != 0 ||
        issuer_key(s, id, "zmk_key_id", zmk, sizeof zmk) != 0)
        return -1;
    const char *keys[] = { "--zpk", zpk, "--zak", zak, "--zmk", zmk };
    memcpy(args + n, keys, sizeof keys);
    n += 6;
    if (s->opts.issuer_key_grace_s) {
        snprintf(grace, sizeof grace, "%u", s->opts.issuer_key_grace_s);
        args[n++] = "--key-grace";
        args[n++] = grace;
    }
    for (size_t i = 0; s->opts.issuer_args && s->opts.issuer_args[i] && n < 27; i++)
        args[n++] = s->opts.issuer_args[i]; /* test_switch_tls: --tls-cert... */
    args[n] = NULL;
    *r.pid = ts_spawn("issuer-sim", args, r.log);
    if (*r.pid <= 0 || ts_wait_port(r.port, 15000) != 0) {
        fprintf(stderr, "stack: issuer-sim %s did not come up (log %s)\n", id, r.log);
        return -1;
    }
    return 0;
}

int stack_start_issuer(struct stack *s)
{
    return stack_start_issuer_id(s, "WALLET1");
}

/* Seeds each issuer's wallets into its database (plan_issuers chose them): only its BIN's with
 * several issuers, every BIN's in the stack's database otherwise; then starts its issuer-sim.
 * 0 or -1. */
static int start_issuers(struct stack *s)
{
    char n[16];
    snprintf(n, sizeof n, "%u", s->opts.wallets);
    for (unsigned i = 0; i <= s->n_more; i++) {
        const char *id = demo_issuers[i][0];
        struct issuer_ref r;
        if (!issuer_ref(s, id, &r))
            return -1;
        const char *args[] = { "seed",  "--wallets",        n,   "--db", r.conninfo,
                               "--bin", demo_issuers[i][1], NULL };
        if (s->n_more == 0)
            args[5] = NULL; /* every BIN */
        if (ts_run("issuer-sim", args, r.log) != 0) {
            fprintf(stderr, "stack: issuer-sim seed failed (log %s)\n", r.log);
            return -1;
        }
        if (stack_start_issuer_id(s, id) != 0)
            return -1;
    }
    return 0;
}

/* The stack's issuers: .issuers = 1 (the default) routes every BIN of demo_switch.sql to
 * WALLET1 and forgets the others, as the one-issuer world had it; with four, each of WALLET2..4
 * gets a port, a log and a database of its own, and so does WALLET1. 0 or -1. */
static int plan_issuers(struct stack *s)
{
    s->issuer_port = ts_free_port();
    if (s->opts.issuers <= 1) {
        snprintf(s->issuer_conninfo, sizeof s->issuer_conninfo, "%s", s->conninfo);
        return stack_exec(s, "UPDATE switch.bin_routes SET issuer_id = 'WALLET1';"
                             " DELETE FROM switch.issuers WHERE issuer_id <> 'WALLET1'");
    }
    if (s->opts.issuers != STACK_ISSUERS_MAX) {
        fprintf(stderr, "stack: .issuers is 1 or %d\n", STACK_ISSUERS_MAX);
        return -1;
    }
    const char *ci = dbt_create("wallet1");
    if (!ci)
        return -1;
    snprintf(s->issuer_conninfo, sizeof s->issuer_conninfo, "%s", ci);
    for (unsigned i = 1; i < STACK_ISSUERS_MAX; i++) {
        char tag[16], log[320];
        snprintf(tag, sizeof tag, "wallet%u", i + 1);
        snprintf(log, sizeof log, "%s/issuer-sim-%s.log", s->dir, demo_issuers[i][0]);
        if (!(ci = dbt_create(tag)))
            return -1;
        struct stack_issuer *m = &s->more[s->n_more];
        snprintf(m->id, sizeof m->id, "%s", demo_issuers[i][0]);
        snprintf(m->bin, sizeof m->bin, "%s", demo_issuers[i][1]);
        snprintf(m->log, sizeof m->log, "%s", log);
        snprintf(m->conninfo, sizeof m->conninfo, "%s", ci);
        m->port = ts_free_port();
        s->n_more++; /* from here on stack_stop drops its database */
    }
    return 0;
}

int stack_start(struct stack *s, const struct stack_opts *o)
{
    char err[256], path[512];
    memset(s, 0, sizeof *s);
    s->opts = *o;
    if (!s->opts.issuer_timeout_ms)
        s->opts.issuer_timeout_ms = 1500;
    if (!s->opts.wallets)
        s->opts.wallets = 16;
    const char *dir = ts_tmpdir("stack");
    if (!dir)
        return -1;
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->switch_log, sizeof s->switch_log, "%s/switchd.log", s->dir);
    snprintf(s->issuer_log, sizeof s->issuer_log, "%s/issuer-sim.log", s->dir);
    snprintf(s->hsm_log, sizeof s->hsm_log, "%s/hsm-sim.log", s->dir);
    snprintf(s->switch_conf, sizeof s->switch_conf, "%s/switchd.conf", s->dir);
    setenv("ATLAS_PAN_HMAC_KEY", HMAC_KEY, 1);
    setenv("ATLAS_PAN_SEAL_KEY", SEAL_KEY, 1);

    const char *ci = dbt_create("stack");
    if (!ci)
        return -1;
    snprintf(s->conninfo, sizeof s->conninfo, "%s", ci);
    /* switchd logs in as a role of its own, so that a test can cut switchd
     * off its database while issuer-sim and the test keep theirs. */
    snprintf(s->switch_role, sizeof s->switch_role, "atlas_sw_%d", (int)getpid());
    snprintf(s->switch_conninfo, sizeof s->switch_conninfo, "%s user=%s", s->conninfo,
             s->switch_role);
    char sql[256];
    snprintf(sql, sizeof sql, "DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN SUPERUSER",
             s->switch_role, s->switch_role);
    snprintf(path, sizeof path, "%s/db/seed/demo_switch.sql", dbt_src());
    if (stack_exec_file(s, path) != 0 || stack_exec(s, sql) != 0)
        return -1;

    s->hsm_port = ts_free_port();
    s->acq_port = ts_free_port();
    s->pos_port = ts_free_port();
    s->metrics_port = ts_free_port();
    if (plan_issuers(s) != 0 || stack_start_hsm(s, NULL) != 0)
        return -1;
    if (s->opts.issuer && start_issuers(s) != 0)
        return -1;
    if (s->opts.fx_rates) {
        snprintf(path, sizeof path, "%s/%s", dbt_src(), s->opts.fx_rates);
        char log[300];
        snprintf(log, sizeof log, "%s/atlas-fx.log", s->dir);
        const char *fargs[] = { "--db", s->conninfo, "load", path, NULL };
        if (ts_run("atlas-fx", fargs, log) != 0) {
            fprintf(stderr, "stack: atlas-fx load %s failed (log %s)\n", path, log);
            return -1;
        }
    }
    if (write_conf(s) != 0 || stack_start_switch(s) != 0)
        return -1;
    if (sim_terms_builtin(&s->terms, err, sizeof err) != 0) {
        fprintf(stderr, "stack: %s\n", err);
        return -1;
    }
    /* STANs unique per process run: tests may restart switchd, which keeps
     * nothing, but the journal's unique key spans runs of the same day. */
    uint32_t base = (uint32_t)(getpid() % 500) * 1000 + 1;
    for (size_t i = 0; i < s->terms.n; i++) {
        struct sim_term *t = s->terms.t[i];
        sim_term_set_counters(t, base, base);
        snprintf(t->address, sizeof t->address, "127.0.0.1:%u",
                 t->framing == ISO_FRAME_TPDU ? s->pos_port : s->acq_port);
    }
    return 0;
}

int stack_stop(struct stack *s)
{
    int st = -1;
    if (s->sw > 0)
        st = ts_stop(s->sw, SIGTERM, 10000);
    if (s->issuer > 0)
        ts_stop(s->issuer, SIGTERM, 5000);
    for (unsigned i = 0; i < s->n_more; i++) {
        if (s->more[i].pid > 0)
            ts_stop(s->more[i].pid, SIGTERM, 5000);
        dbt_drop(s->more[i].conninfo);
    }
    if (s->issuer_conninfo[0] && strcmp(s->issuer_conninfo, s->conninfo) != 0)
        dbt_drop(s->issuer_conninfo);
    if (s->hsm > 0)
        ts_stop(s->hsm, SIGTERM, 5000);
    sim_terms_free(&s->terms);
    if (s->conninfo[0])
        dbt_drop(s->conninfo);
    if (s->switch_role[0]) {
        PGconn *c = dbt_connect("dbname=postgres");
        char sql[128];
        snprintf(sql, sizeof sql, "DROP ROLE IF EXISTS %s", s->switch_role);
        if (c)
            PQclear(PQexec(c, sql));
        PQfinish(c);
    }
    return st;
}

int stack_setup(void **state, struct stack *s, const struct stack_opts *o)
{
    *state = s;
    return stack_start(s, o);
}

int stack_kill(pid_t pid, int sig)
{
    if (pid <= 0) {
        errno = ESRCH;
        return -1;
    }
    return kill(pid, sig);
}

int stack_setup_demo_world(void **state, struct stack *s)
{
    struct stack_opts o = { .issuer = true,
                            .issuer_timeout_ms = 3000,
                            .wallets = 16,
                            .issuers = STACK_ISSUERS_MAX,
                            .fx_rates = "fx/demo-rates.csv" };
    int rc = stack_setup(state, s, &o);
    if (rc != 0)
        return rc;
    char log[320];
    snprintf(log, sizeof log, "%s/atlas-db-alias.log", s->dir);
    const char *args[] = {
        "--db", s->conninfo, "alias", "+237690000036", "4890030000000036", NULL
    };
    return ts_run("atlas-db", args, log) == 0 ? 0 : -1;
}

int stack_teardown(void **state)
{
    int st = stack_stop(*state);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int stack_wait_journal_up(struct stack *s, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        if (stack_metric(s, "atlas_journal_database_up") == 1)
            return 0;
        usleep(50000);
    }
    return -1;
}

int stack_switch_db(struct stack *s, bool up)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "ALTER ROLE %s %s; SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE usename = '%s' AND %s",
             s->switch_role, up ? "LOGIN" : "NOLOGIN", s->switch_role, up ? "false" : "true");
    return stack_exec(s, sql);
}

void stack_card_txn(struct sim_txn *x, enum sim_type type, const char *pan, uint64_t amount)
{
    const struct sim_demo_card *c = sim_demo_card_find(pan);
    stack_txn(x, type, pan, c ? c->pin : "1234", amount);
    if (c) {
        const struct at_currency *cur = at_currency_find(c->currency);
        snprintf(x->expiry, sizeof x->expiry, "%s", c->expiry);
        snprintf(x->currency, sizeof x->currency, "%s", cur ? cur->numeric : c->currency);
    }
    if (!sim_type_wants_pin(type))
        x->pin[0] = '\0';
}

void stack_reversal_of(struct sim_txn *rev, const char *pan, uint64_t amount,
                       const struct sim_sent *sent)
{
    stack_card_txn(rev, SIM_T_REVERSAL, pan, amount);
    snprintf(rev->mti, sizeof rev->mti, "0420");
    snprintf(rev->orig_mti, sizeof rev->orig_mti, "0200");
    rev->orig_stan = (uint32_t)atoi(sent->stan);
    snprintf(rev->orig_time, sizeof rev->orig_time, "%s", sent->de7);
}

/* SELECT expr FROM wallet.wallets for pan's wallet, on the database conninfo. */
static long long wallet_scalar(const char *conninfo, const char *pan, const char *expr)
{
    char sql[300], hex[65];
    uint8_t h[32], key[32];
    const char *k = getenv("ATLAS_PAN_HMAC_KEY");
    if (!k || at_hex_decode(k, 64, key, sizeof key) != 32 ||
        db_pan_hmac(key, 32, pan, strlen(pan), h) != 0)
        return -1;
    at_hex_encode(h, 32, hex);
    snprintf(sql, sizeof sql, "SELECT %s FROM wallet.wallets WHERE pan_hmac = '\\x%s'::bytea", expr,
             hex);
    PGconn *c = dbt_connect(conninfo);
    long long v = c ? dbt_scalar(c, sql) : -1;
    PQfinish(c);
    return v;
}

long long stack_wallet_scalar(struct stack *s, const char *pan, const char *expr)
{
    return wallet_scalar(s->issuer_conninfo, pan, expr);
}

long long stack_issuer_wallet_scalar(struct stack *s, const char *id, const char *pan,
                                     const char *expr)
{
    const char *db = stack_issuer_db(s, id);
    return db ? wallet_scalar(db, pan, expr) : -1;
}

long long stack_issuer_balance(struct stack *s, const char *id, const char *pan)
{
    return stack_issuer_wallet_scalar(s, id, pan, "balance_minor");
}

long long stack_balance(struct stack *s, const char *pan)
{
    return stack_wallet_scalar(s, pan, "balance_minor");
}

bool stack_wait_balance(struct stack *s, const char *pan, long long want, int timeout_ms)
{
    return stack_wait_balance_at(s, NULL, pan, want, timeout_ms);
}

bool stack_wait_balance_at(struct stack *s, const char *issuer, const char *pan, long long want,
                           int timeout_ms)
{
    for (int t = 0; t <= timeout_ms; t += 50) {
        if ((issuer ? stack_issuer_balance(s, issuer, pan) : stack_balance(s, pan)) == want)
            return true;
        usleep(50000);
    }
    return false;
}

/* Writes msg with t's framing on fd. 0 or -1. */
static int write_framed(int fd, struct sim_term *t, const uint8_t *msg, size_t len)
{
    uint8_t hdr[ISO_FRAME_MAX_HEADER];
    int h = sim_frame_header(t, len, hdr);
    return h >= 0 && ts_send_all(fd, hdr, (size_t)h) == 0 && ts_send_all(fd, msg, len) == 0 ? 0
                                                                                            : -1;
}

/* Builds x as t sends it. 0, or -1 with the reason printed. */
static int build(struct sim_term *t, const struct sim_txn *x, uint8_t *msg, size_t *len,
                 struct sim_sent *sent)
{
    char err[256];
    if (sim_term_build_request(t, x, msg, SIM_MSG_MAX, len, sent, err, sizeof err) == 0)
        return 0;
    fprintf(stderr, "stack: build: %s\n", err);
    return -1;
}

int stack_send_nowait(struct stack *s, struct sim_term *t, const struct sim_txn *x,
                      struct sim_sent *sent)
{
    uint8_t msg[SIM_MSG_MAX];
    size_t len;
    if (build(t, x, msg, &len, sent) != 0)
        return -1;
    int fd = ts_connect(port_of(t->address), 5000);
    if (fd >= 0 && write_framed(fd, t, msg, len) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void fx_field(const struct iso_msg *m, int f, char *out, size_t cap)
{
    size_t n = 0;
    const uint8_t *p = iso_get(m, f, &n);
    if (!p || n >= cap)
        n = 0;
    memcpy(out, p ? (const char *)p : "", n);
    out[n] = '\0';
}

/* Reads one answer into r (and its DE 6/10/51 into fx, when not NULL). */
static int recv_answer(int fd, struct sim_term *t, struct sim_resp *r, struct stack_fx_fields *fx)
{
    uint8_t buf[4096], arena[ISO_ARENA_FOR(4096)];
    char err[256] = "";
    ssize_t n = ts_recv_frame2(fd, buf, sizeof buf);
    size_t off = t->framing == ISO_FRAME_TPDU ? ISO_TPDU_LEN : 0;
    struct iso_msg m;
    iso_msg_init(&m, arena, sizeof arena);
    if (n > (ssize_t)off &&
        sim_term_check_response(t, buf + off, (size_t)n - off, &m, r, err, sizeof err) == 0) {
        if (fx) {
            fx_field(&m, 6, fx->de6, sizeof fx->de6);
            fx_field(&m, 10, fx->de10, sizeof fx->de10);
            fx_field(&m, 51, fx->de51, sizeof fx->de51);
        }
        return 0;
    }
    fprintf(stderr, "stack: no valid answer (%zd bytes) %s\n", n, err);
    return -1;
}

int stack_recv(int fd, struct sim_term *t, struct sim_resp *r)
{
    return recv_answer(fd, t, r, NULL);
}

int stack_send_fx(struct stack *s, struct sim_term *t, const struct sim_txn *x, struct sim_resp *r,
                  struct sim_sent *sent, struct stack_fx_fields *fx)
{
    int fd = stack_send_nowait(s, t, x, sent);
    if (fd < 0)
        return -1;
    int rc = recv_answer(fd, t, r, fx);
    close(fd);
    return rc;
}

int stack_send_on(int fd, struct sim_term *t, const struct sim_txn *x, struct sim_resp *r)
{
    uint8_t msg[SIM_MSG_MAX];
    size_t len;
    if (build(t, x, msg, &len, NULL) != 0 || write_framed(fd, t, msg, len) != 0)
        return -1;
    return stack_recv(fd, t, r);
}

struct sim_term *stack_term(struct stack *s, const char *id)
{
    return sim_terms_find(&s->terms, id);
}

void stack_txn(struct sim_txn *x, enum sim_type type, const char *pan, const char *pin,
               uint64_t amount)
{
    memset(x, 0, sizeof *x);
    x->type = type;
    snprintf(x->pan, sizeof x->pan, "%s", pan);
    snprintf(x->pin, sizeof x->pin, "%s", pin ? pin : "");
    x->amount = amount;
    snprintf(x->expiry, sizeof x->expiry, "2812");
}

int stack_send_raw(struct stack *s, struct sim_term *t, const uint8_t *msg, size_t len,
                   struct sim_resp *r)
{
    int fd = ts_connect(port_of(t->address), 10000);
    if (fd < 0)
        return -1;
    int rc = write_framed(fd, t, msg, len) == 0 ? stack_recv(fd, t, r) : -1;
    close(fd);
    return rc;
}

int stack_send(struct stack *s, struct sim_term *t, const struct sim_txn *x, struct sim_resp *r,
               struct sim_sent *sent)
{
    uint8_t msg[SIM_MSG_MAX];
    size_t len;
    if (build(t, x, msg, &len, sent) != 0)
        return -1;
    return stack_send_raw(s, t, msg, len, r);
}

const char *stack_rc(struct stack *s, const char *term, const struct sim_txn *x, struct sim_resp *r,
                     struct sim_sent *sent)
{
    static struct sim_resp local;
    if (!r)
        r = &local;
    struct sim_term *t = stack_term(s, term);
    if (!t) {
        fprintf(stderr, "stack: no terminal %s\n", term);
        return "--";
    }
    return stack_send(s, t, x, r, sent) == 0 ? r->rc : "--";
}

const char *stack_rc_linked(struct stack *s, const char *term, const struct sim_txn *x,
                            struct sim_resp *r, int timeout_ms)
{
    const char *rc = stack_rc(s, term, x, r, NULL);
    for (int waited = 0; strcmp(rc, "91") == 0 && waited < timeout_ms; waited += 100) {
        usleep(100000);
        rc = stack_rc(s, term, x, r, NULL);
    }
    return rc;
}

const char *stack_purchase(struct stack *s, const char *term, const char *pan, uint64_t amount,
                           struct sim_txn *x, struct sim_resp *r, struct sim_sent *sent)
{
    stack_card_txn(x, SIM_T_PURCHASE, pan, amount);
    stack_fix_time(x);
    return stack_rc(s, term, x, r, sent);
}

void stack_fix_time(struct sim_txn *x)
{
    x->now_us = (uint64_t)time(NULL) * 1000000u;
}

void stack_repeat_of(struct sim_txn *x, const char *mti, const struct sim_sent *sent)
{
    snprintf(x->mti, sizeof x->mti, "%s", mti);
    x->stan = (uint32_t)atoi(sent->stan);
}

long long stack_scalar(struct stack *s, const char *sql)
{
    PGconn *c = dbt_connect(s->conninfo);
    long long v = c ? dbt_scalar(c, sql) : -1;
    PQfinish(c);
    return v;
}

int stack_wait_scalar(struct stack *s, const char *sql, long long want, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        if (stack_scalar(s, sql) == want)
            return 0;
        usleep(50000);
    }
    return -1;
}

const char *stack_rows_sql(const char *table, const char *term, const struct sim_sent *sent,
                           const char *where)
{
    static char sql[600];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM %s WHERE terminal_id = '%s' AND stan = '%s'"
             " AND transmission_time = '%s' AND (%s)",
             table, term, sent->stan, sent->de7, where ? where : "true");
    return sql;
}

int stack_exec(struct stack *s, const char *sql)
{
    PGconn *c = dbt_connect(s->conninfo);
    int rc = c ? dbt_exec(c, sql) : -1;
    PQfinish(c);
    return rc;
}

int stack_stand_in_rules(struct stack *s, const char *pcodes, long long max_txn, long long max_day)
{
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO switch.keys (key_id, key_type, scheme, key_under_lmk, kcv) VALUES"
             " ('WALLET1.PVK', 'PVK', 'TDES-2KEY', '%s', '08D7B4') ON CONFLICT DO NOTHING;"
             "INSERT INTO switch.stand_in_rules (issuer_id, processing_codes, max_amount_minor,"
             " max_daily_minor, verify_pin, pvk_key_id, decimalization_table) VALUES ('WALLET1',"
             " '%s', %lld, %lld, true, 'WALLET1.PVK', '0123456789012345');"
             "INSERT INTO switch.negative_file (issuer_id, pan_hmac, status)"
             " SELECT 'WALLET1', pan_hmac, status FROM wallet.wallets WHERE status <> 'active';"
             "INSERT INTO switch.stand_in_pvv (issuer_id, pan_hmac, pvki, pvv)"
             " SELECT 'WALLET1', pan_hmac, pvki, pvv FROM wallet.wallets WHERE pin_method = 'pvv';"
             "INSERT INTO switch.stand_in_pin_offset (issuer_id, pan_hmac, pin_offset)"
             " SELECT 'WALLET1', pan_hmac, pin_offset FROM wallet.wallets"
             " WHERE pin_method = 'ibm3624';",
             "U1750CDFB0757D3B3994430636DBB281B" /* issuer-sim's SIM_LAB_PVK_LMK */, pcodes,
             max_txn, max_day);
    return stack_exec(s, sql);
}

int stack_exec_file(struct stack *s, const char *path)
{
    char *sql = ts_read_file(path, 0, NULL);
    if (!sql) {
        fprintf(stderr, "stack: cannot read %s\n", path);
        return -1;
    }
    int rc = stack_exec(s, sql);
    free(sql);
    return rc;
}

int stack_settle(struct stack *s, int timeout_ms)
{
    /* Reversals, and stand-in advices and their reversals (docs/switchd.md "Advices"). */
    static const char pending[] = "SELECT (SELECT count(*) FROM switch.reversal_queue"
                                  " WHERE state = 'pending') + (SELECT count(*) FROM"
                                  " switch.advice_queue WHERE state = 'pending')",
                      inflight[] = "SELECT count(*) FROM switch.inflight";
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        if (stack_scalar(s, pending) == 0 && stack_scalar(s, inflight) == 0)
            return 0;
        usleep(100000);
    }
    fprintf(stderr,
            "stack: not settled after %d ms: %lld reversals and advices pending, %lld requests in"
            " flight\n",
            timeout_ms, stack_scalar(s, pending), stack_scalar(s, inflight));
    return -1;
}

int stack_http_get(uint16_t port, const char *path, char *out, size_t cap)
{
    char req[128];
    int fd = ts_connect(port, 5000);
    if (fd < 0)
        return -1;
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
    size_t got = 0;
    ssize_t r;
    if (ts_send_all(fd, req, (size_t)n) == 0)
        while (got < cap - 1 && (r = recv(fd, out + got, cap - 1 - got, 0)) > 0)
            got += (size_t)r;
    close(fd);
    out[got] = '\0';
    return (int)got;
}

long long stack_metric(struct stack *s, const char *name)
{
    static char body[65536];
    char line[128];
    if (stack_http_get(s->metrics_port, "/metrics", body, sizeof body) < 0)
        return -1;
    snprintf(line, sizeof line, "\n%s ", name);
    const char *p = strstr(body, line);
    return p ? atoll(p + strlen(line)) : -1;
}

struct stack_load_opts stack_load_under_faults(const char *tag)
{
    return (struct stack_load_opts){ .tag = tag,
                                     .rate = 100,
                                     .seconds = 6,
                                     .connections = 4,
                                     .record = true,
                                     .timeout_ms = 1000,
                                     .slots = 2048,
                                     .reversal_deadline_s = 60,
                                     .any_error_rate = true };
}

int stack_load_start(struct stack *s, const struct stack_load_opts *o, struct stack_load *l)
{
    char host[32], rate[16], seconds[16], conns[16], cards[16], state[400], timeout[16], slots[16],
        deadline[16];
    const char *args[56];
    size_t n = 0;
    snprintf(l->report, sizeof l->report, "%s/%s.json", s->dir, o->tag);
    snprintf(l->out, sizeof l->out, "%s/%s.out", s->dir, o->tag);
    snprintf(l->record, sizeof l->record, "%s/%s.record", s->dir, o->tag);
    snprintf(state, sizeof state, "%s/%s", s->dir, o->state ? o->state : "acq-state");
    snprintf(host, sizeof host, "127.0.0.1:%u", o->port ? o->port : s->acq_port);
    snprintf(rate, sizeof rate, "%u", o->rate);
    snprintf(seconds, sizeof seconds, "%u", o->seconds);
    snprintf(conns, sizeof conns, "%u", o->connections);
    snprintf(cards, sizeof cards, "%u", s->opts.wallets);
    args[n++] = "load";
    args[n++] = "--host";
    args[n++] = host;
    args[n++] = "--rate";
    args[n++] = rate;
    args[n++] = "--duration";
    args[n++] = seconds;
    args[n++] = "--warmup";
    args[n++] = o->warmup ? o->warmup : "0.5";
    args[n++] = "--connections";
    args[n++] = conns;
    args[n++] = "--cards";
    args[n++] = cards;
    args[n++] = "--report";
    args[n++] = l->report;
    args[n++] = "--state-dir";
    args[n++] = state;
    if (o->load_terminals)
        args[n++] = "--load-terminals";
    if (o->record) {
        args[n++] = "--record";
        args[n++] = l->record;
    }
    if (o->timeout_ms) {
        snprintf(timeout, sizeof timeout, "%u", o->timeout_ms);
        args[n++] = "--timeout-ms";
        args[n++] = timeout;
    }
    if (o->slots) {
        snprintf(slots, sizeof slots, "%u", o->slots);
        args[n++] = "--slots";
        args[n++] = slots;
    }
    if (o->reversal_deadline_s) {
        snprintf(deadline, sizeof deadline, "%u", o->reversal_deadline_s);
        args[n++] = "--reversal-deadline";
        args[n++] = deadline;
    }
    if (o->any_error_rate) {
        args[n++] = "--max-error-rate";
        args[n++] = "1";
    }
    if (o->mix) {
        args[n++] = "--mix";
        args[n++] = o->mix;
    }
    if (!o->verbose)
        args[n++] = "--quiet";
    for (size_t i = 0; o->extra_args && o->extra_args[i] && i < 12; i++)
        args[n++] = o->extra_args[i];
    args[n] = NULL;
    l->pid = ts_spawn("acquirer-sim", args, l->out);
    return l->pid > 0 ? 0 : -1;
}

int stack_load_wait(struct stack_load *l, int timeout_ms)
{
    int st = ts_wait(l->pid, timeout_ms);
    if (st == -1 && timeout_ms >= 0) {
        fprintf(stderr, "stack: acquirer-sim load did not finish in time (see %s)\n", l->out);
        ts_stop(l->pid, SIGKILL, 5000);
        return -1;
    }
    int code = ts_exit_code(st);
    if (code != 0)
        fprintf(stderr, "stack: acquirer-sim load exited %d (see %s)\n", code, l->out);
    return code;
}

int stack_load_run(struct stack *s, const struct stack_load_opts *o, struct stack_load *l)
{
    return stack_load_start(s, o, l) == 0 ? stack_load_wait(l, -1) : -1;
}

int stack_seed_load_terminals(struct stack *s, unsigned n)
{
    char path[400], count[16], loaded[32];
    snprintf(path, sizeof path, "%s/load-seed.sql", s->dir);
    snprintf(count, sizeof count, "%u", n);
    snprintf(loaded, sizeof loaded, "\"terminals\":%u", 4 + n);
    const char *args[] = { "load-seed", "--terminals", count, NULL };
    unlink(path);
    if (ts_run("acquirer-sim", args, path) != 0 || stack_exec_file(s, path) != 0 ||
        stack_kill(s->sw, SIGHUP) != 0)
        return -1;
    return ts_wait_file_contains(s->switch_log, loaded, 10000) ? 0 : -1;
}

/* atlas-reconcile on the stack's journal and the database of issuer id, only its rows with
 * only_it (--issuer id). */
static int reconcile(struct stack *s, const char *id, bool only_it, const char *out,
                     const char *const extra[])
{
    const char *args[32];
    size_t n = 0;
    const char *db = stack_issuer_db(s, id);
    if (!db)
        return -1;
    args[n++] = "--switch-db";
    args[n++] = s->conninfo;
    args[n++] = "--issuer-db";
    args[n++] = db;
    if (only_it) {
        args[n++] = "--issuer";
        args[n++] = id;
    }
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    unlink(out);
    return ts_run("atlas-reconcile", args, out);
}

int stack_reconcile(struct stack *s, const char *out, const char *const extra[])
{
    return reconcile(s, "WALLET1", false, out, extra);
}

int stack_reconcile_issuer(struct stack *s, const char *id, const char *out,
                           const char *const extra[])
{
    return reconcile(s, id, true, out, extra);
}
