/* The whole stack for integration tests: a fresh database on the cluster named
 * by PG* (migrated, demo reference data and wallets seeded), real hsm-sim,
 * issuer-sim and switchd processes on free loopback ports, and demo terminals
 * (libatlas_acquirer) aimed at the switch. Everything is torn down by
 * stack_stop(). By default one issuer-sim, WALLET1, holds the wallets of every
 * BIN in the stack's database; .issuers = 4 starts the demo world's four
 * issuers instead, each with its own port, BIN and database. */
#ifndef ATLAS_SW_STACK_H
#define ATLAS_SW_STACK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "acquirer.h"

struct stack_opts {
    bool issuer;                /* start issuer-sim (else the issuer link stays down) */
    unsigned issuer_timeout_ms; /* switch → issuer timeout (default 1500) */
    unsigned wallets;           /* wallets seeded (default 16) */
    const char *extra_conf;     /* appended to switchd.conf (more [listener] sections...) */
    const char *fx_rates;       /* a rate file (relative to the source tree) atlas-fx loads
                                   before switchd starts; NULL = no conversion rates */
    /* 0 or 1: issuer-sim WALLET1 holds the wallets of the four BINs in the stack's database
     * and every BIN route names it. STACK_ISSUERS_MAX: the demo world of db/seed/demo_switch.sql
     * — WALLET1..4, each routed its own BIN, an issuer-sim of its own with its issuer's keys
     * and its own database holding that BIN's wallets (the same index space: issuer-sim seed
     * --bin). */
    unsigned issuers;
    /* issuer-sim --key-grace: how long the previous ZPK/ZAK stay accepted after a key change's
     * keys are first used (docs/keys.md); 0 = issuer-sim's default (60 s). */
    unsigned issuer_key_grace_s;
    /* More arguments (NULL-terminated, at most 8) for hsm-sim and for every issuer-sim, e.g.
     * their TLS files (test_switch_tls); NULL = none. */
    const char *const *hsm_args;
    const char *const *issuer_args;
};

#define STACK_ISSUERS_MAX 4

/* An issuer-sim of the four-issuer world besides WALLET1 (whose are struct stack's issuer,
 * issuer_port, issuer_log and issuer_conninfo, as in the one-issuer stack). */
struct stack_issuer {
    char id[16];        /* WALLET2…: its switch.issuers row and its [issuer] link */
    char bin[8];        /* the BIN routed to it, whose wallets it holds */
    char conninfo[256]; /* its own database */
    char log[320];
    uint16_t port;
    pid_t pid;
};

struct stack {
    char dir[256];
    char conninfo[256];        /* the test's database (superuser of the test cluster) */
    char switch_conninfo[400]; /* the same database as switchd's own role (stack_switch_db) */
    char switch_role[64];
    char switch_log[320], issuer_log[320], hsm_log[320], switch_conf[320];
    uint16_t hsm_port, acq_port, pos_port, metrics_port, issuer_port;
    pid_t hsm, issuer, sw;
    char issuer_conninfo[256]; /* WALLET1's wallets: conninfo, or its own database (.issuers) */
    struct stack_issuer more[STACK_ISSUERS_MAX - 1]; /* WALLET2.. with .issuers > 1 */
    unsigned n_more;
    struct sim_terms terms;
    struct stack_opts opts;
};

/* Starts everything. 0, or -1 with the reason printed. */
int stack_start(struct stack *s, const struct stack_opts *o);
/* Stops the processes (SIGTERM; returns switchd's wait status) and drops the database. */
int stack_stop(struct stack *s);
/* cmocka group fixtures for a test program whose tests share the stack s. The program's own
 * group setup calls stack_setup with its options: it starts s and makes it the group's state;
 * stack_teardown, its group teardown, stops it and fails the group (-1) unless switchd was
 * still there at the end and stopped cleanly (its drain exits 0). */
int stack_setup(void **state, struct stack *s, const struct stack_opts *o);
int stack_teardown(void **state);

/* (Re)starts switchd alone, e.g. after a crash test. */
int stack_start_switch(struct stack *s);
/* Ends switchd with sig (SIGKILL when it is still there 10 s later), then starts a new one:
 * the wait status of the one that ended, or -1 when the new one did not come up. */
int stack_restart_switch(struct stack *s, int sig);
int stack_start_issuer(struct stack *s);
/* The issuer-sim of issuer id (WALLET1…): (re)starts it; its pid, 0 when it is not running (the
 * caller may stop it and set it to 0); its database. -1 / NULL for an issuer the stack has not. */
int stack_start_issuer_id(struct stack *s, const char *id);
pid_t *stack_issuer_pid(struct stack *s, const char *id);
const char *stack_issuer_db(struct stack *s, const char *id);
const char *stack_issuer_log(struct stack *s, const char *id);
/* (Re)starts hsm-sim on its port; fail, when not NULL, is its --fail fault. */
int stack_start_hsm(struct stack *s, const char *fail);

/* The demo world as ./run.sh has it, for a test program's group setup: the four issuers, the
 * demo conversion rates and the mobile number +237690000036 registered for the XAF demo card
 * 4890030000000036 (atlas-db alias). stack_setup's return. */
int stack_setup_demo_world(void **state, struct stack *s);

/* kill(pid, sig) for a process of the stack, refused (-1, ESRCH) when pid is not one (0 or
 * less): kill(0, SIGSTOP) would stop the test's whole process group, ctest included. */
int stack_kill(pid_t pid, int sig);

/* Terminal by id (TERM0001…), counters from stan_base (unique per test). */
struct sim_term *stack_term(struct stack *s, const char *id);

/* Sends x on terminal t over a fresh connection and waits for the answer.
 * Returns 0 with r filled, -1 on transport error/timeout (reason printed). */
int stack_send(struct stack *s, struct sim_term *t, const struct sim_txn *x, struct sim_resp *r,
               struct sim_sent *sent);
/* The conversion an answer carried back: DE 6, DE 10, DE 51 ("" when absent). */
struct stack_fx_fields {
    char de6[13], de10[9], de51[4];
};
/* stack_send that also reads the answer's DE 6/10/51 into fx. */
int stack_send_fx(struct stack *s, struct sim_term *t, const struct sim_txn *x, struct sim_resp *r,
                  struct sim_sent *sent, struct stack_fx_fields *fx);
/* Same with the exact message bytes (e.g. to send one twice). */
int stack_send_raw(struct stack *s, struct sim_term *t, const uint8_t *msg, size_t len,
                   struct sim_resp *r);

/* A purchase/whatever txn with sane defaults for a demo card. */
void stack_txn(struct sim_txn *x, enum sim_type type, const char *pan, const char *pin,
               uint64_t amount);

/* SELECT returning one integer on the stack's database; -1 on error. */
long long stack_scalar(struct stack *s, const char *sql);
/* SQL counting the rows of table (switch.authorizations, switch.reversal_queue...) of the
 * request terminal term sent as sent (its DE 11 and DE 7) that also match where (NULL: all),
 * for stack_scalar and stack_wait_scalar. A static buffer, valid until the next call. */
const char *stack_rows_sql(const char *table, const char *term, const struct sim_sent *sent,
                           const char *where);
/* Runs sql (one or more statements) on the stack's database. 0, or -1 with the error
 * printed. */
int stack_exec(struct stack *s, const char *sql);
/* stack_exec of the contents of the file at path. */
int stack_exec_file(struct stack *s, const char *path);
/* WALLET1's stand-in rules (docs/switchd.md "Stand-in"; its [issuer] section also needs
 * stand_in = on, e.g. in .extra_conf): processing codes pcodes (e.g. "{00,01}"), at most max_txn
 * a transaction and max_day a card a business day (billing currency), the PIN verified with the
 * lab PVK issuer-sim holds (under the LMK); the issuer's non-active cards (negative file), PVVs
 * and IBM 3624 offsets published from the stack's wallets (the one-issuer stack: one database,
 * one PAN key). 0, or -1 with the error printed. */
int stack_stand_in_rules(struct stack *s, const char *pcodes, long long max_txn, long long max_day);
/* Polls sql until it returns want (or timeout_ms passes). 0 when it did. */
int stack_wait_scalar(struct stack *s, const char *sql, long long want, int timeout_ms);

/* A demo card's transaction with its own PIN, expiry and currency. */
void stack_card_txn(struct sim_txn *x, enum sim_type type, const char *pan, uint64_t amount);
/* The 0420 reversing the 0200 that was sent as sent (DE 90 names it). */
void stack_reversal_of(struct sim_txn *rev, const char *pan, uint64_t amount,
                       const struct sim_sent *sent);

/* expr (a column expression of wallet.wallets) for the wallet of pan, found by
 * the keyed hash of the PAN as issuer-sim finds it; -1 on error. */
long long stack_wallet_scalar(struct stack *s, const char *pan, const char *expr);
long long stack_balance(struct stack *s, const char *pan);
/* stack_wallet_scalar in the database of issuer id (WALLET1…); its balance_minor (-1 also
 * when that database has no wallet for pan). */
long long stack_issuer_wallet_scalar(struct stack *s, const char *id, const char *pan,
                                     const char *expr);
long long stack_issuer_balance(struct stack *s, const char *id, const char *pan);
/* Polls the balance of pan until it is want. true when it was. */
bool stack_wait_balance(struct stack *s, const char *pan, long long want, int timeout_ms);
/* The same in the database of issuer (WALLET1…; NULL: the stack's issuer_conninfo). */
bool stack_wait_balance_at(struct stack *s, const char *issuer, const char *pan, long long want,
                           int timeout_ms);

/* Sends x on a fresh connection to t's listener without waiting for the
 * answer. Returns the socket (the caller closes it) or -1. */
int stack_send_nowait(struct stack *s, struct sim_term *t, const struct sim_txn *x,
                      struct sim_sent *sent);
/* Reads one answer of t on the connection fd and checks it (framing, MAC, fields) into r.
 * 0, or -1 with the reason printed. */
int stack_recv(int fd, struct sim_term *t, struct sim_resp *r);
/* Sends x on the open connection fd of t and reads its answer: stack_send on a connection
 * the caller holds. */
int stack_send_on(int fd, struct sim_term *t, const struct sim_txn *x, struct sim_resp *r);

/* stack_send on terminal term (by id): the answer's DE 39, or "--" when no valid answer
 * came (the reason printed), so that a test can compare it with the code it wants. r and
 * sent may be NULL; the string lives in r (or a static answer when r is NULL). */
const char *stack_rc(struct stack *s, const char *term, const struct sim_txn *x, struct sim_resp *r,
                     struct sim_sent *sent);
/* stack_rc again every 100 ms while the answer is 91 (the issuer link is not up again yet,
 * after a restart), for up to timeout_ms: the last answer's DE 39. */
const char *stack_rc_linked(struct stack *s, const char *term, const struct sim_txn *x,
                            struct sim_resp *r, int timeout_ms);
/* A purchase of amount with pan's card (stack_card_txn) on term, its DE 7 fixed
 * (stack_fix_time) so that it can be repeated: stack_rc's answer. The request in x, its answer
 * in r, what was sent in sent (r and sent may be NULL). */
const char *stack_purchase(struct stack *s, const char *term, const char *pan, uint64_t amount,
                           struct sim_txn *x, struct sim_resp *r, struct sim_sent *sent);
/* Gives x a fixed DE 7 (now), so that its repeats and resends carry the same. */
void stack_fix_time(struct sim_txn *x);
/* Makes x, which was sent as sent, its own repeat: MTI mti (0201, 0421...), the same
 * DE 11 (and the same DE 7 when stack_fix_time fixed it). */
void stack_repeat_of(struct sim_txn *x, const char *mti, const struct sim_sent *sent);

/* Waits up to timeout_ms until the switch owes nothing: no reversal, advice or advice reversal
 * pending and nothing in flight. 0, or -1 with what is left printed. */
int stack_settle(struct stack *s, int timeout_ms);

/* GET path from 127.0.0.1:port over HTTP/1.0; the whole answer (status line, headers,
 * body) into out, NUL-terminated. Its length, or -1 when nothing could be asked. */
int stack_http_get(uint16_t port, const char *path, char *out, size_t cap);

/* A run of `acquirer-sim load` against the stack's ascii87 listener, on as many cards as the
 * stack seeded wallets. Its files are in the stack's directory, named for tag: tag.json (the
 * report), tag.out (what it printed) and, with record, tag.record. */
struct stack_load_opts {
    const char *tag;
    unsigned rate;      /* arrivals per second */
    unsigned seconds;   /* --duration */
    const char *warmup; /* seconds (NULL: 0.5) */
    unsigned connections;
    bool load_terminals; /* on the terminals stack_seed_load_terminals registered */
    bool record;         /* --record tag.record */
    unsigned timeout_ms, slots, reversal_deadline_s; /* 0: acquirer-sim's defaults */
    bool any_error_rate; /* --max-error-rate 1: errors are the point of the run */
    bool verbose;        /* without --quiet */
    const char *state;   /* the terminals' state directory, in the stack's (NULL: acq-state) */
    const char *mix;     /* --mix (NULL: acquirer-sim's default) */
    uint16_t port;       /* another listener (0: the ascii87 one) */
    const char *const *extra_args; /* more arguments, NULL-terminated, at most 12 (--tls...) */
};

struct stack_load {
    pid_t pid;
    char report[400], out[400], record[400];
};

/* The options of a recorded run (tag names its files) of 6 s at 100/s on 4 connections that is
 * to meet faults: requests time out after 1 s, reversals are owed for 60 s, and any error rate
 * is accepted (errors are the point). */
struct stack_load_opts stack_load_under_faults(const char *tag);

/* Starts the run; l says where its files are. 0 or -1. */
int stack_load_start(struct stack *s, const struct stack_load_opts *o, struct stack_load *l);
/* Waits up to timeout_ms (-1: as long as it takes) for the run to end: its exit code,
 * printed with the name of its output file when it is not 0; -1 when it had to be killed
 * at the deadline. */
int stack_load_wait(struct stack_load *l, int timeout_ms);
/* stack_load_start, then stack_load_wait without a deadline. */
int stack_load_run(struct stack *s, const struct stack_load_opts *o, struct stack_load *l);

/* Registers n load terminals (`acquirer-sim load-seed`) and has switchd load them (SIGHUP):
 * 0 once it serves them besides the 4 demo terminals, -1 otherwise. */
int stack_seed_load_terminals(struct stack *s, unsigned n);

/* Runs atlas-reconcile on the stack's database (--switch-db) and WALLET1's (--issuer-db: the
 * same database in the one-issuer stack) with extra arguments (NULL-terminated; NULL for none), its
 * output to out: its exit code, or -1 when it could not be started. */
int stack_reconcile(struct stack *s, const char *out, const char *const extra[]);
/* The same for one issuer: atlas-reconcile --issuer id with that issuer's database. */
int stack_reconcile_issuer(struct stack *s, const char *id, const char *out,
                           const char *const extra[]);

/* Cuts (up = false) or restores switchd's access to its database: its role
 * may no longer log in and its sessions are terminated, while issuer-sim and
 * the test keep theirs. 0 or -1. */
int stack_switch_db(struct stack *s, bool up);
/* Waits until switchd's journal writer reaches PostgreSQL again. 0 or -1. */
int stack_wait_journal_up(struct stack *s, int timeout_ms);

/* The value of an unlabelled counter or gauge on switchd's /metrics; -1 when
 * switchd does not answer or has no such line. */
long long stack_metric(struct stack *s, const char *name);

#endif
