/* The whole stack for integration tests: a fresh database on the cluster named
 * by PG* (migrated, demo reference data and wallets seeded), real hsm-sim,
 * issuer-sim and switchd processes on free loopback ports, and demo terminals
 * (libatlas_acquirer) aimed at the switch. Everything is torn down by
 * stack_stop(). */
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
};

struct stack {
    char dir[256];
    char conninfo[256];        /* the test's database (superuser of the test cluster) */
    char switch_conninfo[400]; /* the same database as switchd's own role (stack_switch_db) */
    char switch_role[64];
    char switch_log[320], issuer_log[320], hsm_log[320], switch_conf[320];
    uint16_t hsm_port, acq_port, pos_port, metrics_port, issuer_port;
    pid_t hsm, issuer, sw;
    struct sim_terms terms;
    struct stack_opts opts;
};

/* Starts everything. 0, or -1 with the reason printed. */
int stack_start(struct stack *s, const struct stack_opts *o);
/* Stops the processes (SIGTERM; returns switchd's wait status) and drops the database. */
int stack_stop(struct stack *s);
/* (Re)starts switchd alone, e.g. after a crash test. */
int stack_start_switch(struct stack *s);
int stack_start_issuer(struct stack *s);
/* (Re)starts hsm-sim on its port; fail, when not NULL, is its --fail fault. */
int stack_start_hsm(struct stack *s, const char *fail);

/* Terminal by id (TERM0001…), counters from stan_base (unique per test). */
struct sim_term *stack_term(struct stack *s, const char *id);

/* Sends x on terminal t over a fresh connection and waits for the answer.
 * Returns 0 with r filled, -1 on transport error/timeout (reason printed). */
int stack_send(struct stack *s, struct sim_term *t, const struct sim_txn *x, struct sim_resp *r,
               struct sim_sent *sent);
/* Same with the exact message bytes (e.g. to send one twice). */
int stack_send_raw(struct stack *s, struct sim_term *t, const uint8_t *msg, size_t len,
                   struct sim_resp *r);

/* A purchase/whatever txn with sane defaults for a demo card. */
void stack_txn(struct sim_txn *x, enum sim_type type, const char *pan, const char *pin,
               uint64_t amount);

/* SELECT returning one integer on the stack's database; -1 on error. */
long long stack_scalar(struct stack *s, const char *sql);
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
/* Polls the balance of pan until it is want. true when it was. */
bool stack_wait_balance(struct stack *s, const char *pan, long long want, int timeout_ms);
/* Polls the file at path until it contains needle. */
bool stack_log_has(const char *path, const char *needle, int timeout_ms);

/* Sends x on a fresh connection to t's listener without waiting for the
 * answer. Returns the socket (the caller closes it) or -1. */
int stack_send_nowait(struct stack *s, struct sim_term *t, const struct sim_txn *x,
                      struct sim_sent *sent);

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
